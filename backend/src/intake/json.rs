//! JSON submissions (`POST /api/messages` as JSON): the fields checked one by
//! one (naming the field), the message built with lettre, then the same
//! [`super::check`] every raw message passes.

use std::str::FromStr;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use mailroom_shared::sending::{FromPolicy, MessageRequest, MAX_RECIPIENTS};
use mailroom_shared::FieldMessages;

use super::{check, Checked, Envelope, Rules, MAX_SUBJECT};

/// Headers a submission may not set: the builder writes them.
const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "sender",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
    "return-path",
];

/// Headers mail servers add on the way, never the sender: the path a
/// message took (`Received`) and what servers found checking it (DKIM, ARC,
/// `Authentication-Results`). Mailroom builds a JSON submission's body, so
/// no signature of the app's can hold over it; a forged trace or result
/// misleads whoever reads the message's path or its checks.
const ADDED_ON_THE_WAY: &[&str] = &[
    "received",
    "authentication-results",
    "dkim-signature",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
];

/// An app's own Message-ID, trimmed, when it is one (RFC 5322 3.6.4):
/// `<left@right>`, each side a dot-atom, the right one a domain literal
/// (`[10.0.0.1]`) too.
pub(crate) fn message_id(value: &str) -> Option<&str> {
    let id = value.trim();
    let (left, right) = id.strip_prefix('<')?.strip_suffix('>')?.split_once('@')?;
    let dot_atom = |s: &str| {
        s.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        })
    };
    let literal = |s: &str| {
        s.strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .is_some_and(|d| {
                d.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"[]\\".contains(&b))
            })
    };
    (dot_atom(left) && (dot_atom(right) || literal(right))).then_some(id)
}

/// The most extra headers a JSON submission may set, and their bytes (names
/// and values) in all. lettre replaces a header by name with a search of
/// those before it, so each one costs more than the last: 40,000 took 23
/// seconds of a core (debug build), and a 25 MiB body could hold millions.
pub const MAX_HEADERS: usize = 100;
/// See [`MAX_HEADERS`].
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The longest line a message may have, CRLF not counted (RFC 5322 2.1.1).
const MAX_LINE: usize = 998;
/// Where a long header line is folded when it can be (RFC 5322's "should").
const FOLD_AT: usize = 78;

/// The field of a submission that a header of the built message comes from.
fn field_of(header: &str) -> &'static str {
    match header.to_ascii_lowercase().as_str() {
        "from" | "sender" => "from",
        "to" => "to",
        "cc" => "cc",
        "reply-to" => "reply_to",
        "subject" => "subject",
        _ => "headers",
    }
}

/// Folds the header lines lettre writes whole (an address list, a long
/// display name, a custom header's long value) at their spaces, to lines of
/// about 78 characters: a CRLF before a space, which readers remove when they
/// unfold (RFC 5322 2.2.3). Without it a To of 60 recipients is one line of
/// 1,600 characters, over the 998 a line may have, which Gmail refuses as
/// not RFC 5322 compliant and Exim freezes. A run of more than 998
/// characters without a space cannot be folded and is refused, naming the
/// field it came from.
fn fold_headers(formatted: Vec<u8>) -> Result<Vec<u8>, FieldMessages> {
    let Some(end) = super::head_end(&formatted) else {
        return Ok(formatted);
    };
    let head = &formatted[..end + 2];
    if head
        .split(|&b| b == b'\n')
        .all(|line| line.len() <= FOLD_AT + 1)
    {
        return Ok(formatted);
    }
    let mut out = Vec::with_capacity(formatted.len() + formatted.len() / 32);
    let mut name = String::new();
    for line in head.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\r\n").unwrap_or(line);
        if !text.starts_with(b" ") && !text.starts_with(b"\t") {
            name = String::from_utf8_lossy(text.split(|&b| b == b':').next().unwrap_or_default())
                .into_owned();
        }
        let mut start = 0;
        while text.len() - start > FOLD_AT {
            // The last space that leaves a line of at most FOLD_AT, else the
            // first one after it; never the one a line starts with.
            let cut = text[start + 1..=start + FOLD_AT]
                .iter()
                .rposition(|&b| b == b' ')
                .map(|i| start + 1 + i)
                .or_else(|| {
                    let from = start + FOLD_AT + 1;
                    text[from..]
                        .iter()
                        .position(|&b| b == b' ')
                        .map(|i| from + i)
                });
            let longest = cut.unwrap_or(text.len()) - start;
            if longest > MAX_LINE {
                return Err(FieldMessages::from([(
                    field_of(&name).to_string(),
                    vec![format!("The {name} header has a run of {longest} characters without a space, and a line of mail holds at most {MAX_LINE} (RFC 5322). Shorten it, or put spaces in it.")],
                )]));
            }
            let Some(cut) = cut else { break };
            out.extend_from_slice(&text[start..cut]);
            out.extend_from_slice(b"\r\n");
            start = cut;
        }
        out.extend_from_slice(&text[start..]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&formatted[end + 2..]);
    Ok(out)
}

/// A body as lettre should get it: a CR not before an LF is a line end
/// too (lettre turns LF into CRLF, but would keep a bare CR, which SMTP
/// servers refuse or read differently).
fn body_text(text: &str) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text.to_string()
    }
}

/// Why `text` (an address, or `Name <address>`) is not a mailbox lettre
/// takes, said the way the settings form says it, with the address
/// repeated only in part; `label` names it ("address 2 of cc").
/// `in_a_list`: the field is a list (`to`, `cc`, `bcc`), not one address.
fn not_a_mailbox(
    label: &str,
    text: &str,
    lettre: &lettre::address::AddressError,
    in_a_list: bool,
) -> String {
    if text.is_empty() {
        return format!(
            "The {label} is empty. Enter an address, like name@example.com, or leave it out."
        );
    }
    // Several addresses joined in one string, as Outlook's To line or a
    // script's join writes them: each goes in its own string.
    let parts: Vec<&str> = text
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() > 1 && parts.iter().all(|p| Mailbox::from_str(p).is_ok()) {
        let mut shown: Vec<String> = parts
            .iter()
            .take(3)
            .map(|p| serde_json::Value::from(*p).to_string())
            .collect();
        if parts.len() > 3 {
            shown.push("…".into());
        }
        let shown = format!("[{}]", shown.join(", "));
        return match in_a_list {
            true => format!(
                "The {label} holds {} addresses in one string; give each as its own string in the list: {shown}.",
                parts.len()
            ),
            false => format!(
                "The {label} holds {} addresses ({shown}); it takes one.",
                parts.len()
            ),
        };
    }
    let label = format!("{label} (“{}”)", crate::error::short(text));
    // The address inside `Name <…>`, where there is one.
    let address = match text.rsplit_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or_default(),
        None => text,
    };
    super::check_address(&label, address).unwrap_or_else(|| {
        format!("The {label} cannot be read as an address ({lettre}). Write it as name@example.com or as Name <name@example.com>.")
    })
}

/// One mailbox as JSON gives it. Each string is one mailbox, so a name
/// with a comma or parentheses and no quotes (`Doe, John <j@contoso.com>`,
/// as address books write it) can only mean that name: it is taken as if
/// quoted, where RFC 5322 would read a list or a comment.
fn mailbox(text: &str) -> Result<Mailbox, lettre::address::AddressError> {
    Mailbox::from_str(text).or_else(|e| {
        let unquoted = text
            .strip_suffix('>')
            .and_then(|t| t.split_once('<'))
            .filter(|(name, address)| {
                !name.trim().is_empty() && !name.contains(['"', '<', '>']) && !address.contains('<')
            });
        match unquoted {
            Some((name, address)) => Ok(Mailbox::new(
                Some(name.trim().to_string()),
                address.trim().parse()?,
            )),
            None => Err(e),
        }
    })
}

fn mailboxes(field: &str, list: &[String], errors: &mut FieldMessages) -> Vec<Mailbox> {
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        if a.contains(['\r', '\n']) {
            errors.push(
                field,
                format!("Address {} of {field} contains a line break.", i + 1),
            );
            continue;
        }
        match mailbox(a.trim()) {
            Ok(m) => out.push(m),
            Err(e) => errors.push(
                field,
                not_a_mailbox(
                    &format!("address {} of {field}", i + 1),
                    a.trim(),
                    &e,
                    field != "reply_to",
                ),
            ),
        }
    }
    out
}

/// A JSON submission (docs/API.md §7) as a checked message: built with
/// lettre, then through [`super::check`] like any other.
pub fn build(
    req: &MessageRequest,
    policy: &FromPolicy,
    settings: Option<&mailroom_shared::Settings>,
    rewrite_from: bool,
) -> Result<Checked, FieldMessages> {
    let mut errors = FieldMessages::new();
    let from = match req.from.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) if f.contains(['\r', '\n']) => {
            errors.push("from", "The From address contains a line break.");
            None
        }
        Some(f) => match mailbox(f) {
            Ok(m) => Some(m),
            Err(e) => {
                errors.push("from", not_a_mailbox("From address", f, &e, false));
                None
            }
        },
        None => match settings {
            Some(s) => match super::settings_sender(s) {
                Some(m) => Some(m),
                None => {
                    errors.push("from", format!("Give a From address: the saved sender (“{}”) is not an address Mailroom can write.", crate::error::short(&s.sender_email)));
                    None
                }
            },
            None => {
                errors.push("from", "Give a From address: no settings are saved yet, so there is no default sender.");
                None
            }
        },
    };
    // The count first: past the limit, it is the line that matters, and
    // the list of unreadable addresses after it may be cut short.
    let count = req.to.len() + req.cc.len() + req.bcc.len();
    if count == 0 {
        errors.push("to", "Give at least one recipient in to, cc or bcc.");
    } else if count > MAX_RECIPIENTS {
        errors.push("to",
            format!("The message has {count} recipients; the limit is {MAX_RECIPIENTS}. Split it into several messages."),
        );
    }
    let to = mailboxes("to", &req.to, &mut errors);
    let cc = mailboxes("cc", &req.cc, &mut errors);
    let bcc = mailboxes("bcc", &req.bcc, &mut errors);
    let reply_to = match req
        .reply_to
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        Some(r) => mailboxes("reply_to", &[r.to_string()], &mut errors).pop(),
        None => None,
    };
    let subject_chars = req.subject.chars().count();
    if subject_chars > MAX_SUBJECT {
        errors.push(
            "subject",
            format!(
                "The subject is {subject_chars} characters long; the limit is {}. Put the rest in the body.",
                MAX_SUBJECT
            ),
        );
    }
    if req.subject.contains(['\r', '\n']) {
        errors.push(
            "subject",
            "The subject must be one line, without line breaks.",
        );
    }
    if req.text.is_none() && req.html.is_none() {
        errors.push("text", "Give the body as text, html, or both.");
    }
    for (field, body) in [("text", &req.text), ("html", &req.html)] {
        if body.as_deref().is_some_and(|b| b.contains('\0')) {
            errors.push(
                field,
                format!("The {field} holds a NUL character (U+0000), which mail cannot carry. Remove it."),
            );
        }
    }
    let mut extra = Vec::new();
    let header_bytes: usize = req.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    let past_limits = if req.headers.len() > MAX_HEADERS {
        Some(format!(
            "{} headers were given; at most {MAX_HEADERS} are taken. Send the others' content in the body, or the whole message as message/rfc822.",
            req.headers.len()
        ))
    } else if header_bytes > MAX_HEADER_BYTES {
        Some(format!(
            "The headers hold {header_bytes} bytes; at most {MAX_HEADER_BYTES} are taken. Send long content in the body."
        ))
    } else {
        None
    };
    let mut own_message_id = None;
    match past_limits {
        // Each header is not judged: that could make a message for each of
        // thousands.
        Some(m) => errors.push("headers", m),
        None => {
            let mut seen = std::collections::HashSet::new();
            for (name, value) in &req.headers {
                let valid_name =
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                if !valid_name || value.contains(['\r', '\n']) {
                    errors.push("headers", format!("The header “{}” must be a name without spaces or colons, and a value on one line.", crate::error::short(name)));
                } else if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                    errors.push("headers", format!("The header {name} is set from the message's own fields; remove it from headers."));
                } else if ADDED_ON_THE_WAY.contains(&name.to_ascii_lowercase().as_str()) {
                    errors.push("headers", format!("The header {name} is added by mail servers on the way (the message's path, or what they found checking it), never by the sender; remove it from headers."));
                } else if !seen.insert(name.to_ascii_lowercase()) {
                    // Names differ only in case: one header, which the
                    // builder would keep one value of, dropping the other.
                    errors.push("headers", format!("The header {name} is given twice (header names ignore case); give it once, its values joined if it may hold several."));
                } else if name.eq_ignore_ascii_case("message-id") {
                    // The app's own, to thread its replies (In-Reply-To).
                    match message_id(value) {
                        Some(id) => own_message_id = Some(id.to_string()),
                        None => errors.push("headers", format!("The Message-ID header (“{}”) must be one id in angle brackets, with an @ and no spaces, like <ticket-42@helpdesk.contoso.com> (RFC 5322 3.6.4); leave it out to have one made.", crate::error::short(value))),
                    }
                } else if let Ok(n) = HeaderName::new_from_ascii(name.clone()) {
                    extra.push(HeaderValue::new(n, value.clone()));
                }
            }
        }
    }
    let Some(from) = from else {
        return Err(errors);
    };
    if !rewrite_from && !policy.allows(from.email.as_ref()) {
        errors.push("from", policy.refusal(from.email.as_ref()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // With rewrite_from, the settings' sender sends; the original From
    // becomes the Reply-To when the message has none.
    let (header_from, reply_to) = match (rewrite_from, settings) {
        (true, Some(s)) => {
            let sender = super::settings_sender(s).ok_or_else(|| {
                FieldMessages::from([(
                    "from".to_string(),
                    vec![format!(
                        "The saved sender (“{}”) is not an address Mailroom can write.",
                        crate::error::short(&s.sender_email)
                    )],
                )])
            })?;
            (sender, reply_to.or(Some(from.clone())))
        }
        _ => (from.clone(), reply_to),
    };
    let mut b = Message::builder()
        .from(header_from.clone())
        .subject(req.subject.clone())
        .date_now()
        // lettre's own would be on this machine's name (`<…@vm>`).
        .message_id(Some(own_message_id.unwrap_or_else(|| {
            crate::apps::header_message_id(header_from.email.as_ref())
        })));
    for m in &to {
        b = b.to(m.clone());
    }
    for m in &cc {
        b = b.cc(m.clone());
    }
    for m in &bcc {
        b = b.bcc(m.clone());
    }
    if let Some(r) = reply_to {
        b = b.reply_to(r);
    }
    for h in extra {
        b = b.raw_header(h);
    }
    let text = req.text.as_deref().map(body_text);
    let html = req.html.as_deref().map(body_text);
    let message = match (text, html) {
        (Some(t), Some(h)) => b.multipart(MultiPart::alternative_plain_html(t, h)),
        (None, Some(h)) => b.header(ContentType::TEXT_HTML).body(h),
        (Some(t), None) => b.header(ContentType::TEXT_PLAIN).body(t),
        (None, None) => unreachable!("checked above"),
    }
    .map_err(|e| {
        FieldMessages::from([(
            "to".to_string(),
            vec![format!("The message could not be built: {e}.")],
        )])
    })?;
    let recipients: Vec<String> = to
        .iter()
        .chain(&cc)
        .chain(&bcc)
        .map(|m| m.email.to_string())
        .collect();
    // lettre leaves Bcc out of the formatted message; the intake checks
    // what it wrote like any other message (extra headers included).
    check(
        &fold_headers(message.formatted())?,
        Envelope {
            from: Some(header_from.email.to_string()),
            to: recipients,
        },
        &Rules {
            policy,
            settings,
            rewrite_from: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(user: &str, domain: &str) -> String {
        format!("{user}@{domain}")
    }

    fn request() -> MessageRequest {
        MessageRequest {
            from: Some(format!("Helpdesk <{}>", at("helpdesk", "contoso.com"))),
            to: vec![at("a", "example.org")],
            subject: "Ticket 42".into(),
            text: Some("Hello".into()),
            ..MessageRequest::default()
        }
    }

    fn built(req: &MessageRequest) -> Result<Checked, FieldMessages> {
        let policy = FromPolicy {
            allowed: vec![at("helpdesk", "contoso.com")],
            network: false,
        };
        build(req, &policy, None, false)
    }

    fn head(c: &Checked) -> String {
        let text = String::from_utf8_lossy(&c.body);
        text.split("\r\n\r\n").next().unwrap().to_string()
    }

    /// The field `name`'s value, unfolded (RFC 5322 2.2.3).
    fn unfolded(head: &str, name: &str) -> String {
        let values = mailroom_fakes::graph::header_values(head.as_bytes(), name);
        values
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    }

    #[test]
    fn several_addresses_in_one_string_are_told_to_go_one_to_a_string() {
        // As they are typed in Outlook's To line, or joined by a script.
        let (ann, bob) = (at("ann", "example.org"), at("bob", "example.org"));
        for (joined, n) in [
            (format!("{ann}, {bob}"), 2),
            (format!("{ann};{bob}; "), 2),
            (format!("Ann <{ann}>, {bob},{}", at("cy", "example.org")), 3),
        ] {
            let mut req = request();
            req.cc = vec![joined.clone()];
            let said = built(&req).unwrap_err()["cc"].join(" ");
            assert!(
                said.contains(&format!("holds {n} addresses"))
                    && said.contains(&ann)
                    && said.contains(&format!(", \"{bob}\"")),
                "{joined}: {said}"
            );
        }
        // From and Reply-To take one address.
        for field in ["reply_to", "from"] {
            let mut req = request();
            let joined = Some(format!("{ann}; {bob}"));
            match field {
                "from" => req.from = joined,
                _ => req.reply_to = joined,
            }
            let said = built(&req).unwrap_err()[field].join(" ");
            assert!(
                said.contains("holds 2 addresses") && said.contains("it takes one"),
                "{field}: {said}"
            );
        }
        // Nested quotes by the hundred thousand are refused, not read with
        // a stack frame each (which ended the process).
        let mut req = request();
        req.to = vec![format!(
            "{}{ann}{}",
            "\"".repeat(200_000),
            "\"".repeat(200_000)
        )];
        assert!(built(&req).unwrap_err().contains_key("to"));
        // A name with a comma is still one mailbox.
        let mut req = request();
        req.cc = vec![format!("Doe, Ann <{ann}>")];
        assert!(built(&req).is_ok());
    }

    #[test]
    fn a_header_given_twice_in_two_cases_is_refused_not_half_dropped() {
        let mut req = request();
        req.headers.insert("X-Ticket".into(), "42".into());
        req.headers.insert("x-ticket".into(), "43".into());
        let errors = built(&req).unwrap_err();
        let said = errors["headers"].join(" ");
        assert!(said.contains("given twice"), "{said}");
        req.headers.remove("x-ticket");
        req.headers.insert("X-Other".into(), "1".into());
        let head = head(&built(&req).unwrap());
        assert_eq!(unfolded(&head, "X-Ticket"), "42");
        assert_eq!(unfolded(&head, "X-Other"), "1");
    }

    /// A trace or an authentication result is the servers' on the way:
    /// one an app sets (in any case) is refused, naming it, where it was
    /// added to the message as given.
    #[test]
    fn headers_servers_add_on_the_way_are_refused_naming_them() {
        for name in [
            "Received",
            "authentication-results",
            "DKIM-Signature",
            "ARC-Seal",
            "ARC-Message-Signature",
            "ARC-Authentication-Results",
        ] {
            let mut req = request();
            req.headers
                .insert(name.into(), "from a by b; dkim=pass".into());
            req.headers.insert("X-Ticket".into(), "42".into());
            let errors = built(&req).unwrap_err();
            let said = errors["headers"].join(" ");
            assert!(
                said.contains(&format!("The header {name} is added by mail servers")),
                "{said}"
            );
            assert_eq!(errors["headers"].len(), 1, "{said}");
        }
        // Their kin that an app may well set still go.
        let mut req = request();
        req.headers
            .insert("X-Received-By".into(), "helpdesk".into());
        req.headers
            .insert("List-Unsubscribe".into(), "<https://contoso.com/u>".into());
        let head = head(&built(&req).unwrap());
        assert_eq!(unfolded(&head, "X-Received-By"), "helpdesk");
    }

    /// A helpdesk threads its replies by its own Message-ID; the header was
    /// refused as "set from the message's own fields", which have none.
    #[test]
    fn an_apps_message_id_is_kept_for_threading_and_a_malformed_one_is_named() {
        for id in [
            format!("<ticket-42.reply-3@{}>", "helpdesk.contoso.com"),
            format!("<{}>", at("a+b!#$%&'*/=?^_`{|}~-1", "[10.0.0.1]")),
        ] {
            let mut req = request();
            req.headers.insert("Message-ID".into(), format!(" {id} "));
            req.headers.insert(
                "In-Reply-To".into(),
                format!("<ticket-42@{}>", "helpdesk.contoso.com"),
            );
            let head = head(&built(&req).unwrap());
            let ids = mailroom_fakes::graph::header_values(head.as_bytes(), "Message-ID");
            assert_eq!(ids, [id], "{head}");
        }
        for bad in [
            "ticket-42".to_string(),
            "<ticket 42@contoso.com>".to_string(),
            "<ticket-42>".to_string(),
            format!("<{}>", at("ticket..42", "contoso.com")),
            format!("<{}> <{}>", at("a", "contoso.com"), at("b", "contoso.com")),
            "<@contoso.com>".to_string(),
            String::new(),
        ] {
            let mut req = request();
            req.headers.insert("message-id".into(), bad.clone());
            let errors = built(&req).unwrap_err();
            let said = errors["headers"].join(" ");
            assert!(
                said.contains("Message-ID") && said.contains("<ticket-42@helpdesk.contoso.com>"),
                "{bad}: {said}"
            );
        }
        // One Message-ID, in either case.
        let mut req = request();
        req.headers
            .insert("Message-ID".into(), format!("<a@{}>", "contoso.com"));
        req.headers
            .insert("message-id".into(), format!("<b@{}>", "contoso.com"));
        let said = built(&req).unwrap_err()["headers"].join(" ");
        assert!(said.contains("given twice"), "{said}");
        // None of its own: one made on the From's domain, as for a raw
        // message, not on this machine's name.
        let c = built(&request()).unwrap();
        let ids = mailroom_fakes::graph::header_values(head(&c).as_bytes(), "Message-ID");
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert!(
            ids[0].starts_with("<msg_") && ids[0].ends_with("@contoso.com>"),
            "{ids:?}"
        );
        assert_eq!(c.message_id.as_ref(), Some(&ids[0]));
    }

    #[test]
    fn long_address_lists_and_values_are_folded_to_short_lines_that_unfold_whole() {
        let mut req = request();
        req.to = (0..60)
            .map(|i| at(&format!("recipient-{i:03}"), "example.com"))
            .collect();
        req.cc = (0..30)
            .map(|i| format!("Person {i} <{}>", at(&format!("p{i}"), "example.net")))
            .collect();
        let name = "Contoso Helpdesk of the Northern Region ".repeat(10);
        req.from = Some(format!(
            "{} <{}>",
            name.trim(),
            at("helpdesk", "contoso.com")
        ));
        req.headers
            .insert("X-Tags".into(), "tag ".repeat(300).trim().into());
        let c = built(&req).unwrap();
        let head = head(&c);
        for line in head.split("\r\n") {
            assert!(line.len() <= FOLD_AT, "{} characters: {line}", line.len());
        }
        assert_eq!(unfolded(&head, "To"), req.to.join(", "));
        assert_eq!(unfolded(&head, "X-Tags"), req.headers["X-Tags"]);
        assert!(unfolded(&head, "From").contains(name.trim()), "{head}");
        assert_eq!(c.recipients.len(), 90);
    }

    #[test]
    fn a_run_too_long_to_fold_is_refused_naming_its_field() {
        for (field, req) in [
            ("headers", {
                let mut r = request();
                r.headers.insert("X-Long".into(), "y".repeat(5000));
                r
            }),
            ("from", {
                let mut r = request();
                r.from = Some(format!(
                    "{} <{}>",
                    "N".repeat(2000),
                    at("helpdesk", "contoso.com")
                ));
                r
            }),
            ("subject", {
                let mut r = request();
                r.subject = "s".repeat(998);
                r
            }),
        ] {
            let e = built(&req).expect_err(field);
            let m = e.get(field).unwrap_or_else(|| panic!("{field}: {e:?}"));
            assert!(m[0].contains("at most 998"), "{m:?}");
        }
        // 900 characters fit on one line.
        let mut r = request();
        r.headers.insert("X-Token".into(), "t".repeat(900));
        let c = built(&r).unwrap();
        assert_eq!(unfolded(&head(&c), "X-Token"), "t".repeat(900));
    }

    #[test]
    fn a_refused_address_is_explained_with_its_fix_and_shown_in_part() {
        let long = "x".repeat(100_000);
        let local65 = format!("{}@{}", "x".repeat(65), "example.org");
        for (to, says) in [
            ("", "The address 1 of to is empty. Enter an address"),
            ("<script>", "needs an @ between the name and the domain"),
            ("a@@example.org", "has more than one @"),
            ("someone@localhost", "needs a domain with a dot"),
            // "needs a domain with a dot" was said of each of these too.
            ("a@exa_mple.org", "has “_” in the domain after the @"),
            ("a@-example.org", "has a dot at either end or two in a row, or a part that starts or ends with a hyphen"),
            ("a@10.0.0.1", "has an IP address after the @"),
            // lettre's "Invalid input" was all these got.
            ("a.@example.org", "has a dot at the start or end of the name before the @"),
            ("a@example.org.", "has a dot at either end or two in a row"),
            (local65.as_str(), "is 65 bytes long; a mailbox name holds at most 64"),
            // Not an international domain name: a label starts with a combining mark.
            ("a@\u{301}x.de", "not a valid international domain name"),
            (long.as_str(), "longer than 254 characters"),
            ("Name <a@example.org", "cannot be read as an address"),
        ] {
            let mut req = request();
            req.to = vec![to.into()];
            let e = built(&req).expect_err(to);
            let m = &e.get("to").unwrap_or_else(|| panic!("{e:?}"))[0];
            assert!(m.contains(says), "{to:.40}: {m}");
            assert!(m.len() < 400, "{} bytes", m.len());
        }
        let mut req = request();
        req.from = Some(long);
        let e = built(&req).expect_err("from");
        let m = &e.get("from").unwrap()[0];
        assert!(
            m.starts_with("The From address (“xxx") && m.contains("…”)"),
            "{m:.200}"
        );
        assert!(m.len() < 400, "{} bytes", m.len());
    }

    #[test]
    fn a_name_with_a_comma_or_parentheses_is_taken_as_written() {
        let mut req = request();
        req.from = Some(format!(
            "Helpdesk, Contoso <{}>",
            at("helpdesk", "contoso.com")
        ));
        req.to = vec![
            format!("Doe, John <{}>", at("john", "example.org")),
            format!("Anna (Sales) <{}>", at("anna", "example.org")),
        ];
        req.reply_to = Some(format!("Smith, Bo <{}>", at("bo", "example.org")));
        let c = built(&req).unwrap();
        assert_eq!(
            c.recipients,
            [at("john", "example.org"), at("anna", "example.org")]
        );
        // As a reader sees them (lettre writes such a name as an encoded word).
        let parsed = mail_parser::MessageParser::default()
            .parse(&c.body)
            .unwrap();
        let names = |list: Option<&mail_parser::Address>| -> Vec<(String, String)> {
            list.unwrap()
                .iter()
                .map(|a| {
                    (
                        a.name().unwrap_or_default().to_string(),
                        a.address().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(
            names(parsed.from()),
            [(
                "Helpdesk, Contoso".to_string(),
                at("helpdesk", "contoso.com")
            )]
        );
        assert_eq!(
            names(parsed.to()),
            [
                ("Doe, John".to_string(), at("john", "example.org")),
                ("Anna (Sales)".to_string(), at("anna", "example.org"))
            ]
        );
        assert_eq!(names(parsed.reply_to())[0].0, "Smith, Bo");
        // Still refused: two addresses in one string, a bad address.
        for to in [
            format!("{}, {}", at("a", "example.org"), at("b", "example.org")),
            "Doe, John <not an address>".to_string(),
        ] {
            let mut req = request();
            req.to = vec![to.clone()];
            assert!(built(&req).is_err(), "{to}");
        }
    }

    #[test]
    fn a_from_name_showing_another_address_is_refused_on_from() {
        let mut req = request();
        req.from = Some(format!(
            "\"{}\" <{}>",
            at("ceo", "contoso.com"),
            at("helpdesk", "contoso.com")
        ));
        let e = built(&req).expect_err("refused");
        let text = e.get("from").expect("on from").join(" ");
        assert!(
            text.contains(&format!("shows the address {}", at("ceo", "contoso.com"))),
            "{text}"
        );
        // The mailbox's own address in its name is no other.
        req.from = Some(format!(
            "\"Helpdesk ({0})\" <{0}>",
            at("helpdesk", "contoso.com")
        ));
        assert!(built(&req).is_ok());
    }

    #[test]
    fn a_saved_sender_name_with_a_comma_is_the_from_of_messages_without_one() {
        let mut settings = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
        settings.sender_name = "Contoso, IT Department".into();
        let policy = FromPolicy::new(Some(&settings), &[]);
        let mut req = request();
        req.from = None;
        for rewrite in [false, true] {
            let c = build(&req, &policy, Some(&settings), rewrite).unwrap();
            let parsed = mail_parser::MessageParser::default()
                .parse(&c.body)
                .unwrap();
            let from = parsed.from().unwrap().first().unwrap();
            assert_eq!(
                from.name(),
                Some("Contoso, IT Department"),
                "rewrite {rewrite}"
            );
            assert_eq!(from.address(), Some(settings.sender_email.as_str()));
        }
        // And a raw message of an app that sends as the settings' sender.
        let raw = format!(
            "From: {}\r\nTo: {}\r\nSubject: hi\r\n\r\nbody\r\n",
            at("someone", "example.net"),
            at("a", "example.org")
        );
        let c = super::super::check(
            raw.as_bytes(),
            super::super::Envelope::default(),
            &super::super::Rules {
                policy: &policy,
                settings: Some(&settings),
                rewrite_from: true,
            },
        )
        .unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(&c.body)
            .unwrap();
        assert_eq!(
            parsed.from().unwrap().first().unwrap().name(),
            Some("Contoso, IT Department")
        );
    }

    #[test]
    fn a_bare_cr_in_a_body_is_a_line_end_and_a_nul_is_refused() {
        let mut req = request();
        req.text = Some("one\rtwo\r\nthree\nfour".into());
        req.html = Some("<p>a</p>\r<p>b</p>".into());
        let c = built(&req).unwrap();
        let body = &c.body;
        for (i, &b) in body.iter().enumerate() {
            if b == b'\r' {
                assert_eq!(body.get(i + 1), Some(&b'\n'), "a bare CR at {i}");
            } else if b == b'\n' {
                assert_eq!(body[i - 1], b'\r', "a bare LF at {i}");
            }
        }
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("one\r\ntwo\r\nthree\r\nfour"), "{text}");
        for field in ["text", "html"] {
            let mut req = request();
            let with_nul = Some("a\0b".to_string());
            if field == "text" {
                req.text = with_nul;
            } else {
                req.html = with_nul;
            }
            let e = built(&req).expect_err(field);
            assert!(e.get(field).is_some_and(|m| m[0].contains("NUL")), "{e:?}");
        }
    }
}
