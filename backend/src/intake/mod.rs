//! The one intake every way in ends in (docs/API.md §7, "What a raw message
//! must be"), as Postfix's cleanup(8) is for smtpd and pickup: HTTP (raw and
//! JSON), the relay and `mailroom sendmail` hand their bytes to [`check`],
//! which normalises and checks them once. What it returns is exactly what is
//! stored and, later, exactly what is sent: delivery never re-encodes.
//!
//! The rules, on the bytes themselves (never on a lossy UTF-8 copy):
//! - bare LF becomes CRLF before anything is checked; a bare CR or a NUL in
//!   the header block is refused (a bare CR would end the header block early
//!   at the upstream, past a From nobody checked); in the body a bare CR
//!   becomes CRLF and a NUL is refused, so no upstream finds the end of the
//!   data inside it (SMTP smuggling);
//! - exactly one From holding exactly one mailbox; at most one Sender, To,
//!   Cc, Reply-To, Subject, Date, Message-ID, In-Reply-To and References
//!   (two From headers are read differently by different parsers, two To
//!   headers lose recipients, and Gmail refuses two of any of them);
//! - the From policy of §6 on the envelope sender, From, Sender, and every
//!   Resent-From and Resent-Sender;
//! - Bcc and Resent-Bcc removed; the Subject at most [`MAX_SUBJECT`]
//!   characters; a Message-ID and a Date added when missing.

pub mod accept;
pub mod budget;
pub mod json;
pub mod trace;

pub use accept::Sending;
pub use budget::Budget;
use lettre::message::Mailbox;
pub use trace::{Trace, Via};

use crate::error::short;
use mail_parser::{Address, HeaderName, HeaderValue, MessageParser};
use mailroom_shared::sending::{FromPolicy, MAX_RECIPIENTS};
use mailroom_shared::{FieldMessages, Settings};

/// The longest Subject, in characters (RFC 5322's line limit).
pub const MAX_SUBJECT: usize = 998;

/// The largest header block a raw message may have, in bytes (256 KiB).
/// Mail that a program submits has a few KB of headers; without a bound,
/// one message of 20 MB of short header lines held about 400 MB of memory
/// while it was read (its fields and their parse), far past the intake's
/// budget, which counts the message's bytes. Postfix keeps 100 KB
/// (`header_size_limit`).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Headers of which a message may carry at most one (From exactly one). The
/// last four are beyond §7's list: RFC 5322 3.6 allows each once too, and
/// Gmail refuses a message with two as "not RFC 5322 compliant".
const SINGLE: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
];

/// The headers of [`SINGLE`] that hold lists of addresses: two are merged.
const ADDRESS_HEADERS: &[&str] = &["to", "cc", "reply-to"];

/// Why `address` cannot be sent to or from: the shared rule (the settings
/// form's words), then, for a domain beyond ASCII, IDNA's, as lettre checks
/// it when the message is sent.
pub(crate) fn check_address(label: &str, address: &str) -> Option<String> {
    if let Some(m) = mailroom_shared::validate::check_address(label, address) {
        return Some(m);
    }
    let domain = address.trim().rsplit_once('@')?.1;
    if domain.is_ascii() || address.trim().parse::<lettre::Address>().is_ok() {
        return None;
    }
    Some(format!(
        "The {label} has a domain that is not a valid international domain name (“{}”); check its spelling.",
        short(domain)
    ))
}

/// The envelope a way in gives along with the bytes.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// MAIL FROM, `?from=`, or `-f`; the header From when absent.
    pub from: Option<String>,
    /// RCPT TO or `?to=`; To, Cc and Bcc when empty.
    pub to: Vec<String>,
}

/// Who is sending, and under which settings.
pub struct Rules<'a> {
    /// The addresses this sender may use.
    pub policy: &'a FromPolicy,
    /// The saved settings (the default sender, and the sender of `rewrite_from`).
    pub settings: Option<&'a Settings>,
    /// The app's `rewrite_from`.
    pub rewrite_from: bool,
}

/// A checked message: its envelope, its subject for the summary, and the
/// bytes to store and send.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The envelope sender upstream: the final From address.
    pub envelope_from: String,
    /// Every recipient.
    pub recipients: Vec<String>,
    /// The decoded Subject.
    pub subject: String,
    /// The message, CRLF throughout.
    pub body: Vec<u8>,
    /// Its Message-ID (`<…@…>`): its own, or the one added.
    pub message_id: Option<String>,
}

/// `text` on one line: each run of line breaks, tabs, other control
/// characters and spaces is one space.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bare LF line ends become CRLF; CRLF (and everything else) stays. The
/// runs between line ends are copied whole (a 25 MB message is copied once,
/// not byte by byte).
pub fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', raw) {
        if i == 0 || raw[i - 1] != b'\r' {
            out.extend_from_slice(&raw[start..i]);
            out.extend_from_slice(b"\r\n");
            start = i + 1;
        }
    }
    out.extend_from_slice(&raw[start..]);
    out
}

/// Copies a body with each bare CR (one not followed by LF) turned into
/// CRLF. RFC 5321 (2.3.8) forbids a client to send a CR or LF but as CRLF,
/// and an upstream that takes a bare CR as a line end (SMTP smuggling,
/// 2023) reads `CR . CR` as the end of the data: what followed it in a body
/// was read as commands, a second message with a From no policy checked. As
/// line ends, such a dot line is dot-stuffed on the way out like any other.
fn cr_as_line_end(body: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for i in memchr::memchr_iter(b'\r', body) {
        if body.get(i + 1) != Some(&b'\n') {
            out.extend_from_slice(&body[start..=i]);
            out.push(b'\n');
            start = i + 1;
        }
    }
    out.extend_from_slice(&body[start..]);
}

/// Where the header block ends: the index of the first empty line's CRLF
/// pair (`\r\n\r\n`), if there is one.
pub fn head_end(raw: &[u8]) -> Option<usize> {
    memchr::memmem::find(raw, b"\r\n\r\n")
}

/// One header field: its name in lower case and its lines, CRLF included.
struct Field {
    name: String,
    raw: Vec<u8>,
}

impl Field {
    /// Keeps the field's line under `name` (`X-Original-Date`), its value
    /// as written, so the message can be given one of Mailroom's own.
    fn set_aside(&mut self, name: &str) {
        let colon = self.raw.iter().position(|b| *b == b':').unwrap_or(0);
        self.raw = [name.as_bytes(), &self.raw[colon..]].concat();
        self.name = name.to_ascii_lowercase();
    }

    /// The value, unfolded, without the name.
    fn value(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let value = text.split_once(':').map(|(_, v)| v).unwrap_or_default();
        value.replace("\r\n", "").trim().to_string()
    }
}

/// Splits the header block into fields, refusing what an upstream could read
/// differently from us: a bare CR, a NUL, a line that is not a field.
fn fields(head: &[u8]) -> Result<Vec<Field>, String> {
    let mut out: Vec<Field> = Vec::new();
    let lines: Vec<&[u8]> = head
        .split_inclusive(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let content = line.strip_suffix(b"\r\n").unwrap_or(line);
        if content.contains(&b'\r') {
            return Err(format!("Header line {n} holds a bare carriage return (CR without LF); end every line with CRLF."));
        }
        if content.contains(&0) {
            return Err(format!("Header line {n} holds a NUL byte."));
        }
        if content.starts_with(b" ") || content.starts_with(b"\t") {
            match out.last_mut() {
                Some(f) => f.raw.extend_from_slice(line),
                None => {
                    return Err(
                        "The message starts with a continuation line instead of a header field."
                            .into(),
                    )
                }
            }
            continue;
        }
        let Some(name) = field_name(content) else {
            let shown: String = String::from_utf8_lossy(content).chars().take(40).collect();
            if let Some(name) = spaced_field_name(content) {
                let name = String::from_utf8_lossy(name);
                return Err(format!("Header line {n} (“{shown}”) has a space before its colon, which RFC 5322 no longer allows and servers read differently: write {name}: value."));
            }
            if out.is_empty() {
                return Err(NOT_A_MESSAGE.into());
            }
            return Err(format!("Header line {n} (“{shown}”) is not a header field: write Name: value, and leave an empty line before the body."));
        };
        let mut raw = line.to_vec();
        if !raw.ends_with(b"\r\n") {
            raw.extend_from_slice(b"\r\n");
        }
        out.push(Field {
            name: String::from_utf8_lossy(name).to_ascii_lowercase(),
            raw,
        });
    }
    Ok(out)
}

/// The name of a header line (`Name: value`, without its line end): printable
/// ASCII up to the first colon; `None` for a line that is not a field.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    line.iter()
        .position(|b| *b == b':')
        .map(|colon| &line[..colon])
        .filter(|name| is_field_name(name))
}

/// A field name: printable ASCII without spaces, at least one character.
fn is_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| (33..=126).contains(b))
}

/// Whether a raw message's first line that holds anything is a header
/// field (`Name: value`, `Name : value`, or an mbox `From ` line): what
/// `sendmail` reads as a message with headers, where anything else is a
/// body alone.
pub fn has_headers(raw: &[u8]) -> bool {
    let first = crate::error::without_bom(raw)
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find(|l| !l.trim_ascii().is_empty())
        .unwrap_or_default();
    field_name(first).is_some() || spaced_field_name(first).is_some() || first.starts_with(b"From ")
}

/// The name of a line written `Name : value`, with spaces or tabs before
/// the colon (RFC 5322 4.5's obsolete syntax); `None` for any other line.
fn spaced_field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = &line[..colon];
    let trimmed = name.trim_ascii_end();
    (trimmed.len() < name.len() && is_field_name(trimmed)).then_some(trimmed)
}

/// The marks of an address field outside quoted strings and comments.
#[derive(Debug, Default, PartialEq, Eq)]
struct Marks {
    /// `@` signs: one per address a parser may find, so a value that hides
    /// a second address is noticed.
    at: usize,
    /// Commas, which part mailboxes.
    commas: usize,
    /// `<` and `>`.
    opened: usize,
    closed: usize,
    /// Whether a `<` came inside another, or a `>` before its `<`.
    misnested: bool,
}

fn bare_marks(value: &str) -> Marks {
    let (mut quoted, mut depth, mut escaped, mut angle) = (false, 0u32, false, 0u32);
    let mut m = Marks::default();
    for c in value.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if quoted || depth > 0 => {}
            '@' => m.at += 1,
            ',' => m.commas += 1,
            '<' => {
                m.opened += 1;
                m.misnested |= angle > 0;
                angle += 1;
            }
            '>' => {
                m.closed += 1;
                m.misnested |= angle == 0;
                angle = angle.saturating_sub(1);
            }
            _ => {}
        }
    }
    m
}

/// What is wrong with the shape of a sender field (From, Sender, …) that a
/// lenient parser would read past, in words with the fix: a name holding a
/// comma outside quotes (`Smith, John <…>`, as directories write names),
/// which makes two mailboxes of one; an angle bracket left open or one
/// inside another; a name before an address without brackets.
fn sender_shape(label: &str, value: &str, found: &[String]) -> Option<String> {
    let m = bare_marks(value);
    let shown = short(value);
    if m.opened != m.closed || m.misnested {
        return Some(format!("The {label} header (“{shown}”) has an angle bracket without its pair, or one inside another: write the sender as Name <address>, with one < before the address and one > after it."));
    }
    let addressed = found.iter().filter(|a| !a.is_empty()).count();
    if m.commas > 0 && m.at == 1 && addressed == 1 && found.len() > 1 {
        return Some(format!("The {label} header (“{shown}”) has a comma in its name outside quotes, which makes two mailboxes of it: put the name in double quotes, like \"Smith, John\" <address>."));
    }
    if m.opened == 0 && m.at == 1 && found.iter().any(|a| a.trim().contains(char::is_whitespace)) {
        return Some(format!("The {label} header (“{shown}”) has a name and an address without angle brackets: write it as Name <address>."));
    }
    None
}

/// What ends an address-like token in a display name: brackets, quotes
/// and list marks.
const NOT_IN_AN_ADDRESS: [char; 10] = ['<', '>', '(', ')', '[', ']', '"', ',', ';', ':'];

/// Addresses written in a display name (`"ceo@contoso.com" <app@…>`): mail
/// programs show the name, often alone, so a name holding another address
/// shows the message as from that address. Lookalike at signs (fullwidth
/// `＠`, small `﹫`) count as `@` and lookalike dots as `.`. Characters that
/// show as nothing (the settings' rule,
/// [`mailroom_shared::parse::is_invisible`]) are not there, since
/// `ceo\u{200B}@contoso.com` reads as `ceo@contoso.com`. A token counts when
/// it has a local part and a domain with a dot, so `Sales @ Contoso` or
/// `Support@Contoso` do not.
pub(crate) fn addresses_in_name(name: &str) -> Vec<String> {
    let name: String = name
        .chars()
        .filter(|c| !mailroom_shared::parse::is_invisible(*c))
        .map(|c| match c {
            '\u{FF20}' | '\u{FE6B}' => '@',
            '\u{FF0E}' | '\u{2024}' | '\u{FE52}' => '.',
            _ => c,
        })
        .collect();
    name.split(|c: char| c.is_whitespace() || c.is_control() || NOT_IN_AN_ADDRESS.contains(&c))
        .filter_map(|token| {
            // A sentence's full stop, or single quotes around it ('a@b.c'); an
            // apostrophe inside is part of many a local part (o'brien@…).
            let token = token.trim_matches(['.', '\'']);
            let (local, domain) = token.rsplit_once('@')?;
            let labels: Vec<&str> = domain.split('.').collect();
            let shaped = !local.is_empty()
                && labels.len() > 1
                && labels.iter().all(|l| !l.is_empty())
                && labels.last().is_some_and(|l| l.chars().count() > 1);
            shaped.then(|| token.to_string())
        })
        .collect()
}

/// The display names of an address header's mailboxes.
fn names(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Address(a) => a
            .iter()
            .filter_map(|x| x.name())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn addresses(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Address(a) => a
            .iter()
            .map(|x| x.address().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// The settings' sender as a mailbox: built from its parts, not parsed
/// from `Name <address>` text, which a name with a comma or parentheses
/// ("Contoso, Inc.") would make a list or a comment.
pub(crate) fn settings_sender(s: &Settings) -> Option<Mailbox> {
    let name = s.sender_name.trim();
    let email = s.sender_email.trim().parse().ok()?;
    Some(Mailbox::new(
        (!name.is_empty()).then(|| name.to_string()),
        email,
    ))
}

fn sender_mailbox(s: &Settings) -> String {
    settings_sender(s).map_or_else(|| s.sender_email.clone(), |m| m.to_string())
}

const NOT_A_MESSAGE: &str = "The body is not an RFC 5322 message: it needs header lines (From:, To:, Subject:), an empty line, then the text.";

/// The field name each refusal goes under, for HTTP's `errors`.
const HEADERS: &str = "headers";

/// Checks and normalises a whole message. The refusal names the field
/// (`from`, `to`, `subject`, `headers`, `message`); a `from` one is the From
/// policy's or about the From header.
pub fn check(raw: &[u8], envelope: Envelope, rules: &Rules<'_>) -> Result<Checked, FieldMessages> {
    let mut errors = FieldMessages::new();
    // A byte order mark (Notepad's, PowerShell 5.1's) is no part of a
    // message: before the first header it made that header no header.
    let raw = crlf(crate::error::without_bom(raw));
    // A script's here-document often starts with an empty line, which ends
    // the header block before it began.
    if raw.starts_with(b"\r\n") {
        let after = raw.trim_ascii_start();
        let first = after.split(|b| *b == b'\r').next().unwrap_or_default();
        if field_name(first).is_some() {
            errors.push("message", "The message starts with an empty line, which ends the headers before the first one: remove the empty line(s) before the first header.");
            return Err(errors);
        }
    }
    // The header block ends at the first empty line; what follows (that
    // empty line included) is the body, kept byte for byte.
    let (head, body) = match head_end(&raw) {
        Some(i) => (&raw[..i + 2], &raw[i + 2..]),
        None if raw.starts_with(b"\r\n") => (&raw[..0], &raw[..]),
        None => (&raw[..], &raw[raw.len()..]),
    };
    // An mbox "From " line (some scripts write one) is not a header; a
    // `From : …` field is.
    let first = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let head = if head.starts_with(b"From ") && spaced_field_name(first).is_none() {
        let end = head
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(head.len(), |i| i + 2);
        &head[end..]
    } else {
        head
    };
    if head.is_empty() {
        errors.push("message", NOT_A_MESSAGE);
        return Err(errors);
    }
    if head.len() > MAX_HEADER_BLOCK {
        // Plain text with no header at all is that, whatever its size.
        let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
        if field_name(first).is_none() {
            errors.push("message", NOT_A_MESSAGE);
            return Err(errors);
        }
        errors.push(HEADERS, format!("The header block (everything before the first empty line) is {} bytes; the limit is {MAX_HEADER_BLOCK} (256 KiB). Put long content in the body, and check that an empty line separates the headers from it.", head.len()));
        return Err(errors);
    }
    let mut fields = match fields(head) {
        Ok(f) => f,
        Err(e) => {
            let key = if e == NOT_A_MESSAGE {
                "message"
            } else {
                HEADERS
            };
            errors.push(key, e);
            return Err(errors);
        }
    };
    for name in SINGLE {
        let count = fields.iter().filter(|f| f.name == *name).count();
        if count > 1 {
            let field = match *name {
                "from" => "from",
                "subject" => "subject",
                _ => HEADERS,
            };
            let shown = display_name(name);
            let fix = if ADDRESS_HEADERS.contains(name) {
                format!("Merge them into one {shown} header.")
            } else {
                format!("Keep one {shown} header and remove the others.")
            };
            errors.push(
                field,
                format!("The message has {count} {shown} headers; it may have only one. {fix}"),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // A Message-ID that is not one (RFC 5322 3.6.4: `<left@right>`, no
    // brackets or a colon in it): Gmail refuses such mail ("Messages
    // missing a valid Message-ID header are not accepted") after Exchange
    // took it, so Mailroom said sent for mail no one got. A printer cannot
    // be told to write another, so the field keeps its line under
    // X-Original-Message-ID and the message gets a Message-ID of its own.
    for f in fields.iter_mut().filter(|f| f.name == "message-id") {
        if json::message_id(&f.value()).is_none() {
            f.set_aside("X-Original-Message-ID");
        }
    }
    // A Date that is not one (a script's `Date: $(date)`, `Sun Dec  6
    // 19:55:11 UTC 2026`; a zone left out; `yesterday`): mail clients show
    // no date or sort it apart, and spam filters count it against the
    // message (SpamAssassin's INVALID_DATE). The same as a Message-ID that
    // is not one: the line is kept under X-Original-Date and the message
    // gets Mailroom's Date (RFC 6409 8.2).
    for f in fields.iter_mut().filter(|f| f.name == "date") {
        let date = mail_parser::DateTime::parse_rfc822(f.value().trim());
        if !date.is_some_and(|d| d.is_valid()) {
            f.set_aside("X-Original-Date");
        }
    }
    let mut head_bytes: Vec<u8> = fields.iter().flat_map(|f| f.raw.clone()).collect();
    head_bytes.extend_from_slice(b"\r\n");
    let Some(parsed) = MessageParser::default().parse_headers(&head_bytes) else {
        errors.push("message", "The message's header block cannot be read.");
        return Err(errors);
    };
    // The addresses of each identity header, checked for a hidden second one.
    let mut from_addresses: Vec<String> = Vec::new();
    let mut identities: Vec<(&'static str, String)> = Vec::new();
    // Addresses shown in the names of those headers, other than their own.
    let mut shown_in_names: Vec<(&'static str, String, String)> = Vec::new();
    let mut header_rcpts: Vec<String> = Vec::new();
    for (field, h) in fields.iter().zip(parsed.headers()) {
        let label = match h.name {
            HeaderName::From => "From",
            HeaderName::Sender => "Sender",
            HeaderName::ResentFrom => "Resent-From",
            HeaderName::ResentSender => "Resent-Sender",
            HeaderName::To | HeaderName::Cc | HeaderName::Bcc => {
                header_rcpts.extend(addresses(&h.value).into_iter().filter(|a| !a.is_empty()));
                continue;
            }
            _ => continue,
        };
        let found = addresses(&h.value);
        let value = field.value();
        let key = if label == "From" { "from" } else { HEADERS };
        // RFC 5322 3.6.2: From and Sender are mailboxes, never a group
        // (`Team: a@b;`), which is for To and Cc.
        if matches!(h.value, HeaderValue::Address(Address::Group(_))) {
            errors.push(
                key,
                format!(
                    "The {label} header (“{}”) reads as a group (a name, a colon, addresses), which only To and Cc may hold: write the sender as Name <address>, with a name that has a colon in quotes (\"IT: Alerts\" <address>).",
                    short(&value)
                ),
            );
            continue;
        }
        if let Some(why) = sender_shape(label, &value, &found) {
            errors.push(key, why);
            continue;
        }
        if found.is_empty() || found.iter().any(String::is_empty) {
            errors.push(
                key,
                format!(
                    "The {label} header (“{}”) holds no email address it can be sent from.",
                    short(&value)
                ),
            );
            continue;
        }
        if bare_marks(&value).at != found.len() {
            errors.push(key, format!("The {label} header (“{}”) is ambiguous: write each address once, as Name <address>.", short(&value)));
            continue;
        }
        if label == "From" {
            from_addresses = found.clone();
        }
        for name in names(&h.value) {
            for shown in addresses_in_name(&name) {
                if !found.iter().any(|a| a.eq_ignore_ascii_case(&shown)) {
                    shown_in_names.push((label, name.clone(), shown));
                }
            }
        }
        for a in found {
            identities.push((label, a));
        }
    }
    if from_addresses.len() > 1 {
        errors.push("from", format!("The From header names {} mailboxes; it must name exactly one. Put the others in Reply-To.", from_addresses.len()));
    }
    // A message without From (cron, PHP mail()) is from its envelope sender,
    // or else from the settings' sender, as sendmail would write it.
    let query_from = envelope.from.clone().filter(|f| !f.trim().is_empty());
    let from_query = query_from.is_some();
    let added_from = match from_addresses.first() {
        Some(_) => None,
        None if fields.iter().any(|f| f.name == "from") => None,
        None => query_from
            .clone()
            .or_else(|| rules.settings.map(|s| s.sender_email.clone())),
    };
    let header_from = from_addresses.first().cloned().or(added_from.clone());
    let envelope_from = query_from.or_else(|| header_from.clone());
    let decoded_subject = parsed.subject().unwrap_or_default();
    let subject_chars = decoded_subject.chars().count();
    if subject_chars > MAX_SUBJECT {
        errors.push("subject", format!("The subject is {subject_chars} characters long; the limit is {MAX_SUBJECT}. Put the rest in the body."));
    }
    // The summary's subject is one line: an encoded subject may decode to
    // line breaks, which in a Slack or Teams post made lines of their own
    // under Mailroom's name. The message keeps its bytes.
    let subject = one_line(decoded_subject);
    let mut recipients = if envelope.to.is_empty() {
        header_rcpts
    } else {
        envelope.to
    };
    // Each address once (case aside, as Exchange reads them): a second RCPT
    // for the same mailbox would count twice against the limits and show
    // twice in Activity, for one delivery.
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|r| !r.trim().is_empty() && seen.insert(r.trim().to_lowercase()));
    match (&header_from, &envelope_from) {
        (None, _) if !errors.contains_key("from") => errors.push(
            "from",
            "The message has no From header, and no settings are saved to take the sender from.",
        ),
        (_, Some(f)) => {
            // Named as where it came from: the query's `from`, or the From header.
            let label = match from_query {
                true => format!("envelope sender (“{}”)", short(f)),
                false => format!("From header's address (“{}”)", short(f)),
            };
            if let Some(m) = check_address(&label, f) {
                errors.push("from", m);
            }
        }
        _ => {}
    }
    // The count first: past the limit, it is the line that matters, and
    // the list of unreadable addresses after it may be cut short.
    if recipients.is_empty() {
        errors.push(
            "to",
            "Give at least one recipient: in To, Cc or Bcc, or as to= in the query.",
        );
    } else if recipients.len() > MAX_RECIPIENTS {
        errors.push("to", format!("The message has {} recipients; the limit is {MAX_RECIPIENTS}. Split it into several messages.", recipients.len()));
    }
    for r in &recipients {
        let label = format!("recipient (“{}”)", short(r));
        if let Some(m) = check_address(&label, r) {
            errors.push("to", m);
        }
    }
    // As a JSON text or html with one is refused. A receiver that drops NUL
    // bytes reads a line of NUL and dot as the end of the data (SMTP
    // smuggling; such servers were found), and dot-stuffing leaves it alone.
    if let Some(at) = memchr::memchr(0, body) {
        let line = memchr::memchr_iter(b'\n', &body[..at]).count();
        errors.push(
            "message",
            format!("The body holds a NUL byte (on its line {line}), which mail cannot carry (RFC 5321). Remove it, or attach binary content base64-encoded."),
        );
    }
    if !rules.rewrite_from && !errors.contains_key("from") {
        let envelope_identity = envelope_from.iter().map(|a| ("envelope", a.clone()));
        let added = added_from.iter().map(|a| ("From", a.clone()));
        for (label, a) in envelope_identity.chain(added).chain(identities.clone()) {
            if !rules.policy.allows(&a) {
                let mut text = rules.policy.refusal(&a);
                if label != "From" && label != "envelope" {
                    text = format!("{label}: {text}");
                }
                errors.push("from", text);
                break;
            }
        }
        // The name the admin gave the settings' sender is theirs to word.
        let own_name = rules.settings.map(|s| s.sender_name.trim());
        let spoofed = shown_in_names
            .iter()
            .filter(|(_, name, _)| own_name != Some(name.trim()))
            .find(|(_, _, shown)| !rules.policy.allows(shown));
        if let (Some((label, name, shown)), false) = (spoofed, errors.contains_key("from")) {
            errors.push(
                "from",
                format!(
                    "The {label} header's name (“{}”) shows the address {shown}, so mail programs would show the message as from {shown}. Remove the address from the name. {}",
                    short(name),
                    rules.policy.refusal(shown)
                ),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    fields.retain(|f| f.name != "bcc" && f.name != "resent-bcc");
    if let Some(from) = &added_from {
        fields.insert(
            0,
            Field {
                name: "from".into(),
                raw: format!("From: {from}\r\n").into_bytes(),
            },
        );
    }
    let mut envelope_from = envelope_from.unwrap_or_default();
    if rules.rewrite_from {
        if let Some(s) = rules.settings {
            // The settings' sender sends: who the message named as its
            // sender no longer holds, and the original From becomes the
            // Reply-To when there is none.
            let original = fields
                .iter()
                .position(|f| f.name == "from")
                .map(|i| fields[i].value());
            let has_reply_to = fields.iter().any(|f| f.name == "reply-to");
            fields.retain(|f| {
                !matches!(
                    f.name.as_str(),
                    "from" | "sender" | "resent-from" | "resent-sender"
                )
            });
            fields.insert(
                0,
                Field {
                    name: "from".into(),
                    raw: format!("From: {}\r\n", sender_mailbox(s)).into_bytes(),
                },
            );
            if let (Some(original), false) = (original, has_reply_to) {
                fields.push(Field {
                    name: "reply-to".into(),
                    raw: format!("Reply-To: {original}\r\n").into_bytes(),
                });
            }
            envelope_from = s.sender_email.clone();
        }
    }
    if !fields.iter().any(|f| f.name == "message-id") {
        fields.push(Field {
            name: "message-id".into(),
            raw: format!(
                "Message-ID: {}\r\n",
                crate::apps::header_message_id(&envelope_from)
            )
            .into_bytes(),
        });
    }
    if !fields.iter().any(|f| f.name == "date") {
        fields.push(Field {
            name: "date".into(),
            raw: format!("Date: {}\r\n", date_now()).into_bytes(),
        });
    }
    let message_id = fields
        .iter()
        .find(|f| f.name == "message-id")
        .and_then(|f| json::message_id(&f.value()).map(str::to_string));
    let mut out: Vec<u8> = Vec::with_capacity(raw.len() + 128);
    for f in &fields {
        out.extend_from_slice(&f.raw);
    }
    if body.is_empty() {
        out.extend_from_slice(b"\r\n");
    } else {
        cr_as_line_end(body, &mut out);
    }
    Ok(Checked {
        envelope_from,
        recipients,
        subject,
        body: out,
        message_id,
    })
}

/// A Date header's value for now (RFC 5322 3.3), as the intake adds it to a
/// message without one.
pub fn date_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

fn display_name(lower: &str) -> &'static str {
    match lower {
        "from" => "From",
        "sender" => "Sender",
        "to" => "To",
        "cc" => "Cc",
        "reply-to" => "Reply-To",
        "date" => "Date",
        "message-id" => "Message-ID",
        "in-reply-to" => "In-Reply-To",
        "references" => "References",
        _ => "Subject",
    }
}

/// The DATA section as sent, on bytes: lines starting with "." doubled
/// (RFC 5321 4.5.2), a final CRLF when the message lacks one, and the
/// terminating ".". Nothing else changes, so 8-bit content and signatures
/// survive.
pub fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        if out.ends_with(b"\r") {
            out.push(b'\n');
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rule, byte by byte: an LF not after a CR gets one.
    fn crlf_by_byte(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut previous = 0u8;
        for &b in raw {
            if b == b'\n' && previous != b'\r' {
                out.push(b'\r');
            }
            out.push(b);
            previous = b;
        }
        out
    }

    proptest! {
        /// Line ends come out as the byte-by-byte rule has them, for any
        /// mix of LF, CR, CRLF and other bytes (a bare CR stays bare, for
        /// the check to refuse), and the header block ends where a search
        /// byte by byte finds the first empty line.
        #[test]
        fn line_ends_and_the_header_end_follow_the_byte_rule(
            raw in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(0u8), any::<u8>()],
                0..300,
            )
        ) {
            let fixed = crlf(&raw);
            prop_assert_eq!(&fixed, &crlf_by_byte(&raw));
            prop_assert_eq!(crlf(&fixed), fixed.clone(), "CRLF text is left as it is");
            prop_assert_eq!(
                head_end(&fixed),
                fixed.windows(4).position(|w| w == b"\r\n\r\n")
            );
        }
    }

    /// Pieces of header blocks for [`any_header_soup_is_checked_without_a_panic`].
    const SOUP: &[&str] = &[
        "From: ",
        "To: ",
        "Cc: ",
        "Bcc: ",
        "Sender: ",
        "Resent-From: ",
        "Reply-To: ",
        "Subject: ",
        "Date: ",
        "Message-ID: ",
        "From ",
        "\r\n",
        "\n",
        "\r\n ",
        "\r\n\r\n",
        concat!("allowed", "@", "contoso.com"),
        "<",
        ">",
        "\"",
        "(",
        ")",
        ",",
        ";",
        ":",
        "@",
        ".",
        "\\",
        " ",
        "group:",
        "=?utf-8?b?w6k=?=",
        "=?x?q?",
        "é",
        "\u{202e}",
    ];

    proptest! {
        // Ran with 20,000 cases once (no failure); a few hundred each run.
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Any soup of header names, addresses, quotes, comments, groups,
        /// encoded words, line ends and other characters is checked without
        /// a panic (which would drop the submitter's connection unanswered),
        /// with and without an envelope and rewrite_from.
        #[test]
        fn any_header_soup_is_checked_without_a_panic(
            parts in proptest::collection::vec(
                prop_oneof![
                    proptest::sample::select(SOUP).prop_map(str::to_string),
                    "[a-z]{1,5}",
                    any::<char>().prop_map(String::from),
                ],
                0..60,
            )
        ) {
            let raw = parts.concat();
            let policy = policy();
            for (to, rewrite_from) in [(vec![], false), (vec![at("x", "example.org")], false), (vec![], true)] {
                let rules = Rules { policy: &policy, settings: None, rewrite_from };
                let _ = check(raw.as_bytes(), Envelope { from: None, to }, &rules);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// Any JSON submission's strings are built and checked without a panic.
        #[test]
        fn any_json_submission_is_built_without_a_panic(
            from in proptest::option::of("[\\PC\\s<>\"@(),;:.\\\\]{0,30}"),
            to in proptest::collection::vec("[\\PC\\s<>\"@(),;:.\\\\]{0,30}", 0..4),
            subject in "[\\PC\\s]{0,40}",
            text in proptest::option::of("[\\PC\\s.]{0,40}"),
            html in proptest::option::of("[\\PC\\s<>]{0,40}"),
            headers in proptest::collection::btree_map("[\\PC\\s:]{0,12}", "[\\PC\\s]{0,20}", 0..3),
        ) {
            let req = mailroom_shared::sending::MessageRequest {
                from, to, cc: vec![], bcc: vec![], reply_to: None, subject, text, html, headers,
            };
            let policy = policy();
            let settings = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
            let _ = json::build(&req, &policy, None, false);
            let _ = json::build(&req, &policy, Some(&settings), true);
        }
    }

    #[test]
    fn line_ends_at_the_edges() {
        assert_eq!(crlf(b"\n"), b"\r\n");
        assert_eq!(crlf(b"\n\n"), b"\r\n\r\n");
        assert_eq!(crlf(b"a\r\nb\nc"), b"a\r\nb\r\nc");
        assert_eq!(crlf(b"\r\r\n\r"), b"\r\r\n\r");
        assert_eq!(crlf(b""), b"");
        assert_eq!(head_end(b"A: b\r\n\r\nbody"), Some(4));
        assert_eq!(head_end(b"A: b\r\n"), None);
    }

    fn at(user: &str, domain: &str) -> String {
        format!("{user}@{domain}")
    }

    fn policy() -> FromPolicy {
        FromPolicy {
            allowed: vec![at("allowed", "contoso.com")],
            network: false,
        }
    }

    fn run(raw: &str) -> Result<Checked, FieldMessages> {
        let policy = policy();
        check(
            raw.as_bytes(),
            Envelope::default(),
            &Rules {
                policy: &policy,
                settings: None,
                rewrite_from: false,
            },
        )
    }

    fn refused(raw: &str, field: &str) -> String {
        let e = run(raw).expect_err("refused");
        let texts = e
            .get(field)
            .unwrap_or_else(|| panic!("no {field} error in {e:?}"));
        texts.join(" ")
    }

    fn msg(headers: &str) -> String {
        format!(
            "{headers}To: {}\r\nSubject: hi\r\n\r\nbody\r\n",
            at("to", "example.org")
        )
    }

    #[test]
    fn an_allowed_message_is_kept_byte_for_byte_with_id_and_date_added() {
        let raw = format!(
            "From: Allowed <{}>\r\nTo: {}\r\nSubject: hi\r\n\r\n\u{e9}t\u{e9}\r\n\u{ff}",
            at("allowed", "contoso.com"),
            at("to", "example.org")
        );
        let c = run(&raw).unwrap();
        assert!(c
            .body
            .starts_with(raw.split("\r\n\r\n").next().unwrap().as_bytes()));
        let text = String::from_utf8_lossy(&c.body);
        assert!(text.contains("\r\nMessage-ID: <") && text.contains("\r\nDate: "));
        assert!(c
            .body
            .ends_with("\r\n\r\n\u{e9}t\u{e9}\r\n\u{ff}".as_bytes()));
        assert_eq!(c.envelope_from, at("allowed", "contoso.com"));
        assert_eq!(c.recipients, vec![at("to", "example.org")]);
    }

    /// A From whose shape a lenient parser reads past is refused with the
    /// fix: a comma in the name outside quotes (directories write `Smith,
    /// John`), an angle bracket left open or doubled, a name and an address
    /// without brackets. Right ones, with the comma quoted, in a comment or
    /// encoded, are taken.
    #[test]
    fn a_from_of_the_wrong_shape_is_told_how_to_write_it() {
        let a = at("allowed", "contoso.com");
        for (from, says) in [
            (
                format!("Smith, John <{a}>"),
                "has a comma in its name outside quotes",
            ),
            (format!("Mailer <{a}"), "an angle bracket without its pair"),
            (format!("Mailer {a}>"), "an angle bracket without its pair"),
            (format!("<<{a}>>"), "an angle bracket without its pair"),
            (
                format!("Mailer {a}"),
                "a name and an address without angle brackets",
            ),
        ] {
            let said = refused(&msg(&format!("From: {from}\r\n")), "from");
            assert!(
                said.contains(says) && said.contains(&from),
                "{from}: {said}"
            );
            assert!(!said.contains("envelope"), "{from}: {said}");
        }
        for from in [
            format!("\"Smith, John\" <{a}>"),
            format!("{a} (Smith, John)"),
            format!("=?utf-8?q?Smith=2C_John?= <{a}>"),
            format!("Mailer<{a}>"),
            format!("<{a}> (Mailer)"),
            format!("\"Mailer <at> contoso\" <{a}>"),
        ] {
            let c =
                run(&msg(&format!("From: {from}\r\n"))).unwrap_or_else(|e| panic!("{from}: {e:?}"));
            assert_eq!(c.envelope_from, a, "{from}");
        }
        // An address of the wrong shape from the From header is named as
        // the From header's, not as an envelope sender the client never gave.
        let said = refused(&msg("From: mailer@\r\n"), "from");
        assert!(!said.contains("envelope sender"), "{said}");
    }

    /// A Date that is not one (the shell's `date`, no zone, a word) is kept
    /// as X-Original-Date and the message gets Mailroom's; a right one, in
    /// any zone or with a comment, is kept as it is.
    #[test]
    fn a_date_that_is_not_one_is_replaced_and_kept_aside() {
        for bad in [
            "Sun Dec  6 19:55:11 UTC 2026",
            "Sun, 06 Dec 2026 19:55:11",
            "2026-12-06T19:55:11Z",
            "06/12/2026 19:55",
            "Sun, 06 Dec 2026 25:55:11 +0000",
            "yesterday",
            "",
        ] {
            let raw = msg(&format!(
                "From: {}\r\nDate: {bad}\r\n",
                at("allowed", "contoso.com")
            ));
            let c = run(&raw).unwrap();
            let text = String::from_utf8_lossy(&c.body);
            let kept = format!("\r\nX-Original-Date: {bad}\r\n");
            assert!(text.contains(&kept), "{bad}: {text}");
            let dates: Vec<&str> = text
                .split("\r\n")
                .filter_map(|l| l.strip_prefix("Date: "))
                .collect();
            assert_eq!(dates.len(), 1, "{bad}: {text}");
            let date = mail_parser::DateTime::parse_rfc822(dates[0]).expect("a date");
            assert!(date.is_valid() && date.year >= 2026, "{bad}: {}", dates[0]);
        }
        for good in [
            "Sun, 06 Dec 2026 19:55:11 +0000",
            "6 Dec 2026 19:55 +0100",
            "Sun, 6 Dec 2026 19:55:11 GMT",
            "Sun, 06 Dec 2026 19:55:11 -0000 (UTC)",
        ] {
            let raw = msg(&format!(
                "From: {}\r\nDate: {good}\r\n",
                at("allowed", "contoso.com")
            ));
            let text = String::from_utf8_lossy(&run(&raw).unwrap().body).into_owned();
            assert!(
                text.contains(&format!("\r\nDate: {good}\r\n")),
                "{good}: {text}"
            );
            assert!(!text.contains("X-Original-Date"), "{good}: {text}");
            assert_eq!(text.matches("\r\nDate: ").count(), 1, "{good}: {text}");
        }
    }

    /// Gmail refuses a message whose Message-ID is not `<left@right>`
    /// after Exchange took it: such a one is kept as X-Original-Message-ID
    /// and the message gets its own; a right one is kept as it is.
    #[test]
    fn a_message_id_that_is_not_one_is_replaced_and_kept_aside() {
        let from = format!("From: {}\r\n", at("allowed", "contoso.com"));
        for bad in [
            "1234.scanner",
            "scan@printer.local",
            "<platform:EMAIL:42@contoso.com>",
            "<a b@contoso.com>",
            "<>",
            "",
        ] {
            let raw = msg(&format!("{from}Message-ID: {bad}\r\n"));
            let c = run(&raw).unwrap();
            let text = String::from_utf8_lossy(&c.body);
            assert!(
                text.contains(&format!("\r\nX-Original-Message-ID: {bad}\r\n")),
                "{bad}: {text}"
            );
            let ids: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("Message-ID: "))
                .collect();
            assert_eq!(ids.len(), 1, "{bad}: {text}");
            assert!(json::message_id(ids[0]).is_some(), "{bad}: {text}");
            assert_eq!(c.message_id.as_deref(), Some(ids[0]), "the one added");
        }
        // Folded, in another case, and right: kept byte for byte.
        let good = format!("message-id:\r\n <ticket-42@{}>\r\n", "helpdesk.contoso.com");
        let c = run(&msg(&format!("{from}{good}"))).unwrap();
        let text = String::from_utf8_lossy(&c.body);
        assert!(text.contains(&good) && !text.contains("Original"), "{text}");
        assert!(!text.contains("\r\nMessage-ID: <"), "{text}");
        assert_eq!(
            c.message_id,
            Some(format!("<ticket-42@{}>", "helpdesk.contoso.com")),
            "its own, unfolded"
        );
    }

    #[test]
    fn non_utf8_bodies_survive() {
        let mut raw = format!(
            "From: {}\r\nTo: {}\r\n\r\n",
            at("allowed", "contoso.com"),
            at("to", "example.org")
        )
        .into_bytes();
        raw.extend_from_slice(&[0xe9, 0x01, 0xff, b'\r', b'\n']);
        let p = policy();
        let c = check(
            &raw,
            Envelope::default(),
            &Rules {
                policy: &p,
                settings: None,
                rewrite_from: false,
            },
        )
        .unwrap();
        assert!(c
            .body
            .ends_with(&[b'\r', b'\n', 0xe9, 0x01, 0xff, b'\r', b'\n']));
    }

    #[test]
    fn two_from_headers_are_refused_in_either_order() {
        let ceo = at("ceo", "contoso.com");
        let ok = at("allowed", "contoso.com");
        for (a, b) in [(&ceo, &ok), (&ok, &ceo)] {
            let text = refused(&msg(&format!("From: {a}\r\nFrom: {b}\r\n")), "from");
            assert!(text.contains("2 From headers"), "{text}");
        }
    }

    #[test]
    fn a_group_is_no_from_or_sender() {
        // RFC 5322 3.6.2: From and Sender are mailboxes; a group (`Team:
        // a@b;`) is for To and Cc. Exchange reads such a From its own way.
        let ok = at("allowed", "contoso.com");
        for (header, key) in [
            (format!("From: Team: {ok};\r\n"), "from"),
            (format!("From: Team: <{ok}>;\r\n"), "from"),
            (format!("From: {ok}\r\nSender: Team: {ok};\r\n"), "headers"),
            (format!("From: IT: Alerts <{ok}>\r\n"), "from"),
        ] {
            let text = refused(&msg(&header), key);
            assert!(
                text.contains("group") && text.contains("Name <address>"),
                "{header}: {text}"
            );
        }
        // A name with a colon, quoted, is a name.
        assert!(run(&msg(&format!("From: \"IT: Alerts\" <{ok}>\r\n"))).is_ok());
        // In To and Cc, a group is what it is for.
        let c = run(&format!(
            "From: {ok}\r\nTo: Team: {}, {};\r\nCc: Undisclosed recipients:;\r\nSubject: hi\r\n\r\nbody\r\n",
            at("ann", "example.org"),
            at("bob", "example.org")
        ))
        .unwrap();
        assert_eq!(
            c.recipients,
            vec![at("ann", "example.org"), at("bob", "example.org")]
        );
    }

    #[test]
    fn a_from_with_two_mailboxes_or_a_hidden_address_is_refused() {
        let text = refused(
            &msg(&format!(
                "From: {}, {}\r\n",
                at("allowed", "contoso.com"),
                at("ceo", "contoso.com")
            )),
            "from",
        );
        assert!(
            text.contains("2 mailboxes") || text.contains("ambiguous"),
            "{text}"
        );
        let text = refused(
            &msg(&format!(
                "From: {} <{}>\r\n",
                at("ceo", "contoso.com"),
                at("allowed", "contoso.com")
            )),
            "from",
        );
        assert!(text.contains("ambiguous"), "{text}");
        // A quoted display name may hold an @, and its own address.
        for name in [
            "Sales @ Contoso",
            "Support@Contoso",
            &at("allowed", "contoso.com"),
        ] {
            assert!(
                run(&msg(&format!(
                    "From: \"{name}\" <{}>\r\n",
                    at("allowed", "contoso.com")
                )))
                .is_ok(),
                "{name}"
            );
        }
    }

    /// A display name is what mail programs show, often alone: a name
    /// holding another address would show an app's message as from that
    /// address, past the From policy.
    #[test]
    fn a_name_that_shows_another_address_is_refused_unless_that_one_is_allowed() {
        let ceo = at("ceo", "contoso.com");
        let allowed = at("allowed", "contoso.com");
        for (header, shown) in [
            (format!("From: \"{ceo}\" <{allowed}>\r\n"), ceo.clone()),
            (
                format!("From: \"CEO ({ceo})\" <{allowed}>\r\n"),
                ceo.clone(),
            ),
            // Encoded as RFC 2047, as mail programs decode it.
            (
                format!("From: =?utf-8?q?ceo=40contoso=2Ecom?= <{allowed}>\r\n"),
                ceo.clone(),
            ),
            // A fullwidth at sign looks the same.
            (
                format!("From: \"ceo\u{FF20}contoso.com\" <{allowed}>\r\n"),
                "ceo@contoso.com".into(),
            ),
            // Sender and Resent-From as From.
            (
                format!("From: {allowed}\r\nSender: \"{ceo}\" <{allowed}>\r\n"),
                ceo.clone(),
            ),
            (
                format!("From: {allowed}\r\nResent-From: \"{ceo}\" <{allowed}>\r\n"),
                ceo.clone(),
            ),
        ] {
            let text = refused(&msg(&header), "from");
            assert!(
                text.contains(&format!("shows the address {shown}"))
                    && text.contains("Remove the address from the name")
                    && text.contains("allowed_from"),
                "{header}: {text}"
            );
        }
        // An address the app may send as may be shown.
        let policy = FromPolicy {
            allowed: vec![allowed.clone(), ceo.clone()],
            network: false,
        };
        let rules = Rules {
            policy: &policy,
            settings: None,
            rewrite_from: false,
        };
        let raw = msg(&format!("From: \"{ceo}\" <{allowed}>\r\n"));
        assert!(check(raw.as_bytes(), Envelope::default(), &rules).is_ok());
        // With rewrite_from the From is the settings' sender's anyway.
        let policy = self::policy();
        let settings = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
        let raw = msg(&format!("From: \"{ceo}\" <{allowed}>\r\n"));
        let rewritten = check(
            raw.as_bytes(),
            Envelope::default(),
            &Rules {
                policy: &policy,
                settings: Some(&settings),
                rewrite_from: true,
            },
        )
        .expect("rewritten");
        let parsed = MessageParser::default().parse(&rewritten.body).unwrap();
        let from = parsed.from().unwrap().first().unwrap();
        assert_eq!(from.address(), Some(settings.sender_email.as_str()));
        assert!(!from.name().unwrap_or_default().contains(&ceo));
        // The name the admin saved for the sender is theirs to word.
        let mut settings = settings;
        settings.sender_name = format!("Helpdesk ({})", at("help", "contoso.com"));
        let policy = FromPolicy::new(Some(&settings), &[]);
        let raw = msg(&format!(
            "From: \"{}\" <{}>\r\n",
            settings.sender_name, settings.sender_email
        ));
        let rules = Rules {
            policy: &policy,
            settings: Some(&settings),
            rewrite_from: false,
        };
        assert!(check(raw.as_bytes(), Envelope::default(), &rules).is_ok());
    }

    #[test]
    fn addresses_in_a_name_are_found_as_a_reader_would_see_them() {
        let found = |name: &str| addresses_in_name(name);
        assert_eq!(found("CEO <ceo@contoso.com>."), ["ceo@contoso.com"]);
        assert_eq!(found("ceo\u{FE6B}contoso.com"), ["ceo@contoso.com"]);
        assert_eq!(found("a@b.co, c@d.org"), ["a@b.co", "c@d.org"]);
        // An apostrophe is part of many a local part; quotes around are not.
        assert_eq!(found("o'brien@contoso.com"), ["o'brien@contoso.com"]);
        assert_eq!(found("'ceo@contoso.com'"), ["ceo@contoso.com"]);
        // What shows as nothing is not there.
        assert_eq!(
            found("ceo\u{200B}@contoso\u{00AD}.com"),
            ["ceo@contoso.com"]
        );
        assert_eq!(found("ceo@contoso\u{FF0E}com"), ["ceo@contoso.com"]);
        for none in [
            "Sales @ Contoso",
            "Support@Contoso",
            "@contoso.com",
            "x@y.",
            "x@y.z",
            "",
        ] {
            assert!(found(none).is_empty(), "{none}");
        }
    }

    #[test]
    fn a_bare_cr_or_nul_in_the_headers_is_refused() {
        let from = format!("From: {}\r\n", at("allowed", "contoso.com"));
        let text = refused(
            &msg(&format!(
                "X-Note: b\r\r\nFrom: {}\r\n{from}",
                at("ceo", "contoso.com")
            )),
            "headers",
        );
        assert!(text.contains("bare carriage return"), "{text}");
        let text = refused(&msg(&format!("{from}X-Note: a\0b\r\n")), "headers");
        assert!(text.contains("NUL"), "{text}");
        // In the body, a lone CR is a line end (next test).
        assert!(run(&format!(
            "{from}To: {}\r\n\r\na\rb\r\n",
            at("t", "example.org")
        ))
        .is_ok());
    }

    #[test]
    fn a_nul_in_the_body_is_refused_with_its_line() {
        let from = format!("From: {}\r\n", at("allowed", "contoso.com"));
        let head = format!("{from}To: {}\r\n\r\n", at("t", "example.org"));
        let text = refused(&format!("{head}hi\r\n\0.\r\nmore\r\n"), "message");
        assert!(text.contains("NUL byte (on its line 2)"), "{text}");
        assert!(run(&format!("{head}hi\r\n.\r\n")).is_ok());
    }

    #[test]
    fn a_bare_cr_in_the_body_becomes_a_line_end_and_its_dot_line_is_stuffed() {
        let from = format!("From: {}\r\n", at("allowed", "contoso.com"));
        // What SMTP smuggling sends: CR . CR, then commands of its own.
        let smuggled = format!(
            "MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\nFrom: {}\r\n\r\nwire the money\r\n",
            at("ceo", "contoso.com"),
            at("victim", "example.org"),
            at("ceo", "contoso.com")
        );
        for (end, body) in [
            ("CR . CR", format!("hello\r.\r{smuggled}")),
            ("CR . CRLF", format!("hello\r.\r\n{smuggled}")),
            ("CR . LF", format!("hello\r.\n{smuggled}")),
            ("a CR last", "hello\r".to_string()),
        ] {
            let c = run(&format!(
                "{from}To: {}\r\n\r\n{body}",
                at("t", "example.org")
            ))
            .unwrap_or_else(|e| panic!("{end}: {e:?}"));
            let bare = c
                .body
                .iter()
                .enumerate()
                .any(|(i, b)| *b == b'\r' && c.body.get(i + 1) != Some(&b'\n'));
            assert!(!bare, "{end}: {:?}", String::from_utf8_lossy(&c.body));
            let wire = dot_stuffed(&c.body);
            if end != "a CR last" {
                assert!(
                    memchr::memmem::find(&wire, b"hello\r\n..\r\nMAIL FROM").is_some(),
                    "{end}: {:?}",
                    String::from_utf8_lossy(&wire)
                );
            }
            // The data ends once, at its end.
            assert_eq!(
                memchr::memmem::find_iter(&wire, b"\r\n.\r\n").count(),
                1,
                "{end}"
            );
        }
        // CRLF stays as it is.
        let c = run(&format!(
            "{from}To: {}\r\n\r\na\r\nb\r\n",
            at("t", "example.org")
        ))
        .unwrap();
        assert!(c.body.ends_with(b"\r\n\r\na\r\nb\r\n"));
    }

    #[test]
    fn sender_and_resent_headers_follow_the_from_policy() {
        let from = format!("From: {}\r\n", at("allowed", "contoso.com"));
        for h in ["Sender", "Resent-From", "Resent-Sender"] {
            let text = refused(
                &msg(&format!("{from}{h}: {}\r\n", at("ceo", "contoso.com"))),
                "from",
            );
            assert!(
                text.starts_with(h) && text.contains("may not send"),
                "{text}"
            );
        }
        assert!(run(&msg(&format!(
            "{from}Sender: {}\r\n",
            at("allowed", "contoso.com")
        )))
        .is_ok());
    }

    #[test]
    fn two_to_cc_reply_to_or_subject_headers_are_refused() {
        let from = format!("From: {}\r\n", at("allowed", "contoso.com"));
        let text = refused(
            &format!(
                "{from}To: {}\r\nTo: {}\r\n\r\nx",
                at("a", "b.c"),
                at("d", "e.f")
            ),
            "headers",
        );
        assert!(text.contains("2 To headers"), "{text}");
        for h in ["Cc", "Reply-To"] {
            let text = refused(
                &msg(&format!(
                    "{from}{h}: {}\r\n{h}: {}\r\n",
                    at("a", "b.c"),
                    at("d", "e.f")
                )),
                "headers",
            );
            assert!(text.contains(&format!("2 {h} headers")), "{text}");
        }
        let text = refused(
            &format!(
                "{from}To: {}\r\nSubject: a\r\nSubject: b\r\n\r\nx",
                at("a", "b.c")
            ),
            "subject",
        );
        assert!(text.contains("2 Subject headers"), "{text}");
    }

    #[test]
    fn two_date_message_id_in_reply_to_or_references_headers_are_refused() {
        // RFC 5322 3.6 allows each once; Gmail refuses a message with two
        // as "not RFC 5322 compliant", long after Mailroom said 250.
        let from = format!("From: {}\r\n", at("allowed", "contoso.com"));
        for (h, a, b) in [
            (
                "Date",
                "Tue, 1 Dec 2026 10:00:00 +0000",
                "Tue, 1 Dec 2026 10:00:01 +0000",
            ),
            ("Message-ID", "<1@contoso.com>", "<2@contoso.com>"),
            ("In-Reply-To", "<1@contoso.com>", "<2@contoso.com>"),
            ("References", "<1@contoso.com>", "<2@contoso.com>"),
        ] {
            let text = refused(&msg(&format!("{from}{h}: {a}\r\n{h}: {b}\r\n")), "headers");
            assert!(
                text.contains(&format!("2 {h} headers")) && text.contains("Keep one"),
                "{text}"
            );
            // One of each is taken as it is.
            let c = run(&msg(&format!("{from}{h}: {a}\r\n"))).unwrap();
            let kept = String::from_utf8_lossy(&c.body)
                .matches(&format!("\r\n{h}: "))
                .count()
                + usize::from(c.body.starts_with(format!("{h}: ").as_bytes()));
            assert_eq!(kept, 1, "{h}");
        }
    }

    #[test]
    fn a_recipient_given_twice_is_kept_once() {
        let (a, b) = (at("a", "example.org"), at("b", "example.org"));
        let raw = format!(
            "From: {}\r\nTo: {a}, {}\r\nCc: {b}, {a}\r\nSubject: hi\r\n\r\nbody\r\n",
            at("allowed", "contoso.com"),
            a.to_uppercase()
        );
        assert_eq!(run(&raw).unwrap().recipients, [a.clone(), b.clone()]);
        let policy = policy();
        let c = check(
            raw.as_bytes(),
            Envelope {
                from: None,
                to: vec![b.clone(), a.clone(), b.to_uppercase()],
            },
            &Rules {
                policy: &policy,
                settings: None,
                rewrite_from: false,
            },
        )
        .unwrap();
        assert_eq!(c.recipients, [b, a]);
    }

    #[test]
    fn bcc_and_resent_bcc_are_removed_and_bcc_still_receives() {
        let raw = format!(
            "From: {}\r\nTo: {}\r\nBcc: {}\r\nResent-Bcc: {}\r\n\r\nx\r\n",
            at("allowed", "contoso.com"),
            at("a", "b.c"),
            at("hidden", "b.c"),
            at("hidden2", "b.c")
        );
        let c = run(&raw).unwrap();
        let text = String::from_utf8_lossy(&c.body).to_ascii_lowercase();
        // Header names, not any "bcc" in the text: a generated Message-ID
        // (hex) may contain those letters.
        let names: Vec<&str> = text
            .lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with("bcc")) && !text.contains("hidden"),
            "{text}"
        );
        assert_eq!(c.recipients, vec![at("a", "b.c"), at("hidden", "b.c")]);
    }

    #[test]
    fn the_subject_is_limited_to_998_characters() {
        let from = format!(
            "From: {}\r\nTo: {}\r\n",
            at("allowed", "contoso.com"),
            at("a", "b.c")
        );
        let long = "x".repeat(MAX_SUBJECT + 1);
        let text = refused(&format!("{from}Subject: {long}\r\n\r\nx"), "subject");
        assert!(text.contains("999 characters"), "{text}");
        let fine = "x".repeat(MAX_SUBJECT);
        assert_eq!(
            run(&format!("{from}Subject: {fine}\r\n\r\nx"))
                .unwrap()
                .subject,
            fine
        );
    }

    /// The summary's subject (Activity, the search, webhook posts) is one
    /// line: an encoded subject decoded to line breaks, and in a Slack or
    /// Teams post it added lines of its own under Mailroom's name ("Fix:
    /// run this…"). The message itself keeps its bytes.
    #[test]
    fn the_summarys_subject_is_one_line_whatever_it_decodes_to() {
        use base64::Engine as _;
        let sneaky = "Invoice\r\n\r\n*Fix:* run this\ttoo\u{2028}and\u{85}this";
        let encoded = base64::engine::general_purpose::STANDARD.encode(sneaky);
        let raw = format!(
            "From: {}\r\nTo: {}\r\nSubject: =?UTF-8?B?{encoded}?=\r\n\r\nx",
            at("allowed", "contoso.com"),
            at("a", "b.c")
        );
        let c = run(&raw).unwrap();
        assert_eq!(c.subject, "Invoice *Fix:* run this too and this");
        assert!(String::from_utf8_lossy(&c.body).contains(&encoded));
    }

    #[test]
    fn a_header_block_past_256_kib_is_refused_before_it_is_parsed() {
        let from = format!("From: <{}>\r\n", at("allowed", "contoso.com"));
        // The bytes of From, To and Subject; X-Pad lines make up the rest.
        let fixed = from.len() + msg("").find("\r\n\r\n").unwrap() + 2;
        let padded = |pad: usize| {
            let line = format!("X-Pad: {}\r\n", "p".repeat(91));
            let mut headers = from.clone() + &line.repeat(pad / line.len());
            headers += &format!("X-Pad: {}\r\n", "p".repeat(pad % line.len() - 9));
            msg(&headers)
        };
        let at_limit = padded(MAX_HEADER_BLOCK - fixed);
        assert_eq!(head_end(at_limit.as_bytes()), Some(MAX_HEADER_BLOCK - 2));
        assert!(run(&at_limit).is_ok(), "256 KiB of headers pass");
        let said = refused(&padded(MAX_HEADER_BLOCK - fixed + 1), "headers");
        assert!(
            said.contains("is 262145 bytes; the limit is 262144 (256 KiB)"),
            "{said}"
        );
        // Plain text of that size, with no header and no empty line, is
        // called what it is.
        let text = "Hello, this is a report.\r\n".repeat(MAX_HEADER_BLOCK / 20);
        assert_eq!(refused(&text, "message"), NOT_A_MESSAGE);
    }

    #[test]
    fn a_line_that_is_not_a_field_is_refused_and_an_mbox_line_is_dropped() {
        let from = format!(
            "From: {}\r\nTo: {}\r\n",
            at("allowed", "contoso.com"),
            at("a", "b.c")
        );
        let text = refused(&format!("{from}not a header\r\n\r\nx"), "headers");
        assert!(text.contains("not a header field"), "{text}");
        let c = run(&format!(
            "From someone Mon Dec  1 00:00:00 2026\r\n{from}\r\nx"
        ))
        .unwrap();
        assert!(c.body.starts_with(b"From: "));
    }

    #[test]
    fn a_field_name_with_a_space_before_its_colon_is_named_not_dropped() {
        // `From : …` (RFC 5322's obsolete syntax) was taken for an mbox
        // "From " line and dropped, so the settings' sender took its place.
        let ok = at("allowed", "contoso.com");
        for (raw, line) in [
            (format!("From : {ok}\r\nTo: {}\r\n\r\nx", at("a", "b.c")), 1),
            (
                format!("From\t: {ok}\r\nTo: {}\r\n\r\nx", at("a", "b.c")),
                1,
            ),
            (
                format!(
                    "From: {ok}\r\nSubject : hi\r\nTo: {}\r\n\r\nx",
                    at("a", "b.c")
                ),
                2,
            ),
        ] {
            let text = refused(&raw, "headers");
            assert!(
                text.contains(&format!("Header line {line}")) && text.contains("before its colon"),
                "{raw:?}: {text}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_before_the_first_header_is_dropped() {
        // Notepad and PowerShell 5.1 save a message file with one; the
        // first header was no header, and sendmail took the whole file
        // for a body.
        let raw = msg(&format!("From: {}\r\n", at("allowed", "contoso.com")));
        let with_bom = format!("\u{FEFF}{raw}");
        assert!(has_headers(with_bom.as_bytes()));
        let c = run(&with_bom).unwrap();
        assert!(
            c.body.starts_with(b"From: "),
            "{:?}",
            String::from_utf8_lossy(&c.body)
        );
        assert!(!has_headers("\u{FEFF}just words".as_bytes()));
    }

    #[test]
    fn a_message_that_starts_with_an_empty_line_is_told_so() {
        let raw = msg(&format!("From: {}\r\n", at("allowed", "contoso.com")));
        for lead in ["\r\n", "\n", "\r\n \r\n"] {
            let text = refused(&format!("{lead}{raw}"), "message");
            assert!(
                text.contains("starts with an empty line"),
                "{lead:?}: {text}"
            );
        }
        // Plain text is not a message either way.
        assert_eq!(refused("\r\nhello\r\n", "message"), NOT_A_MESSAGE);
    }

    #[test]
    fn dot_stuffing_works_on_bytes() {
        assert_eq!(
            dot_stuffed(b"Subject: x\r\n\r\n.hidden\r\nok\r\n"),
            b"Subject: x\r\n\r\n..hidden\r\nok\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(b".\r\nlone"), b"..\r\nlone\r\n.\r\n");
        assert_eq!(
            dot_stuffed(&[0xff, b'\r', b'\n']),
            vec![0xff, b'\r', b'\n', b'.', b'\r', b'\n']
        );
    }
}
