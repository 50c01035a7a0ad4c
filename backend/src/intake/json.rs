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
    "message-id",
    "sender",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
    "return-path",
];

/// The most extra headers a JSON submission may set, and their bytes (names
/// and values) in all. lettre replaces a header by name with a search of
/// those before it, so each one costs more than the last: 40,000 took 23
/// seconds of a core (debug build), and a 25 MiB body could hold millions.
pub const MAX_HEADERS: usize = 100;
/// See [`MAX_HEADERS`].
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

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
        match Mailbox::from_str(a.trim()) {
            Ok(m) => out.push(m),
            Err(e) => errors.push(
                field,
                format!(
                    "Address {} of {field} (“{}”) is not an email address: {e}.",
                    i + 1,
                    a.trim()
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
        Some(f) => match Mailbox::from_str(f) {
            Ok(m) => Some(m),
            Err(e) => {
                errors.push("from", format!("“{f}” is not an email address: {e}."));
                None
            }
        },
        None => match settings {
            Some(s) => Mailbox::from_str(&format!("{} <{}>", s.sender_name, s.sender_email)).ok(),
            None => {
                errors.push("from", "Give a From address: no settings are saved yet, so there is no default sender.");
                None
            }
        },
    };
    let to = mailboxes("to", &req.to, &mut errors);
    let cc = mailboxes("cc", &req.cc, &mut errors);
    let bcc = mailboxes("bcc", &req.bcc, &mut errors);
    let count = req.to.len() + req.cc.len() + req.bcc.len();
    if count == 0 {
        errors.push("to", "Give at least one recipient in to, cc or bcc.");
    } else if count > MAX_RECIPIENTS {
        errors.push("to",
            format!("The message has {count} recipients; the limit is {MAX_RECIPIENTS}. Split it into several messages."),
        );
    }
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
    match past_limits {
        // Each header is not judged: that could make a message for each of
        // thousands.
        Some(m) => errors.push("headers", m),
        None => {
            for (name, value) in &req.headers {
                let valid_name =
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                if !valid_name || value.contains(['\r', '\n']) {
                    errors.push("headers", format!("The header “{name}” must be a name without spaces or colons, and a value on one line."));
                } else if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                    errors.push("headers", format!("The header {name} is set from the message's own fields; remove it from headers."));
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
            let sender = Mailbox::from_str(&format!("{} <{}>", s.sender_name, s.sender_email))
                .map_err(|e| {
                    let mut errors = FieldMessages::new();
                    errors.push("from", format!("The saved sender is not usable: {e}."));
                    errors
                })?;
            (sender, reply_to.or(Some(from.clone())))
        }
        _ => (from.clone(), reply_to),
    };
    let mut b = Message::builder()
        .from(header_from.clone())
        .subject(req.subject.clone())
        .date_now()
        .message_id(None);
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
    let message = match (&req.text, &req.html) {
        (Some(t), Some(h)) => b.multipart(MultiPart::alternative_plain_html(t.clone(), h.clone())),
        (None, Some(h)) => b.header(ContentType::TEXT_HTML).body(h.clone()),
        (Some(t), None) => b.header(ContentType::TEXT_PLAIN).body(t.clone()),
        (None, None) => unreachable!("checked above"),
    }
    .map_err(|e| {
        let mut errors = FieldMessages::new();
        errors.push("to", format!("The message could not be built: {e}."));
        errors
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
        &message.formatted(),
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
