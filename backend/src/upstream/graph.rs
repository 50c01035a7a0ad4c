//! Microsoft Graph as the way out (docs/API.md §12): `POST
//! {graph}/v1.0/users/{username}/sendMail` with the MIME message in base64,
//! under an app token for `{graph}/.default`. Used where SMTP AUTH is
//! switched off for the tenant or the mailbox.
//!
//! Graph reads the recipients from the MIME headers, not from an envelope, so
//! each request carries the stored bytes with a `Bcc:` header for the
//! envelope recipients that To and Cc do not name ([`prepare`]); a message
//! whose To or Cc name someone outside its envelope is refused before any
//! request, as Graph would mail them too.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mail_parser::{HeaderName, HeaderValue as MimeValue, MessageParser};
use mailroom_shared::api::{Direction, TranscriptLine};
use mailroom_shared::{catalogue, Cloud};
use reqwest::header::HeaderValue;

use crate::crypto::Secret;

/// The largest request body `sendMail` takes: the message in base64.
pub const MAX_BASE64_BYTES: usize = 4_000_000;
/// One `sendMail` request's time limit (its answer read), unless
/// [`super::Timeouts`] says otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Graph's endpoint for a cloud, or `--graph-endpoint`.
pub fn endpoint(cloud: Cloud, override_endpoint: Option<&str>) -> String {
    override_endpoint
        .unwrap_or(catalogue::cloud(cloud).graph)
        .trim_end_matches('/')
        .to_string()
}

/// The token scope for Graph in a cloud: always the cloud's real one, even
/// when `--graph-endpoint` sends the requests elsewhere.
pub fn scope(cloud: Cloud) -> String {
    format!("{}/.default", catalogue::cloud(cloud).graph)
}

/// Why a message cannot go through `sendMail` as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsendable {
    /// To or Cc name addresses outside the envelope: Graph would mail them.
    OutsideEnvelope(Vec<String>),
    /// The base64 form is over [`MAX_BASE64_BYTES`] (its size given).
    TooLarge(usize),
    /// The header block cannot be read.
    Unreadable,
}

/// The base64 size of `n` bytes.
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The request body for a stored message and its envelope recipients: the
/// stored bytes, with `Bcc:` naming the envelope recipients that To and Cc
/// do not (for this request only), in base64.
pub fn prepare(body: &[u8], envelope: &[String]) -> Result<Bytes, Unsendable> {
    use base64::Engine;
    use std::collections::HashSet;
    // Too large already without a Bcc line: refused before its headers are
    // read (they could hold hundreds of thousands of addresses).
    let least = base64_len(body.len());
    if least > MAX_BASE64_BYTES {
        return Err(Unsendable::TooLarge(least));
    }
    let head_end = crate::intake::head_end(body).map_or(body.len(), |i| i + 4);
    let parsed = MessageParser::default()
        .parse_headers(&body[..head_end])
        .ok_or(Unsendable::Unreadable)?;
    let mut named: Vec<String> = Vec::new();
    for h in parsed.headers() {
        if matches!(h.name, HeaderName::To | HeaderName::Cc) {
            if let MimeValue::Address(a) = &h.value {
                named.extend(
                    a.iter()
                        .filter_map(|x| x.address())
                        .map(|x| x.trim().to_ascii_lowercase()),
                );
            }
        }
    }
    // Sets, so a header naming many addresses costs one lookup each.
    let envelope_lower: Vec<String> = envelope.iter().map(|a| a.to_ascii_lowercase()).collect();
    let in_envelope: HashSet<&str> = envelope_lower.iter().map(String::as_str).collect();
    let outside: Vec<String> = named
        .iter()
        .filter(|a| !in_envelope.contains(a.as_str()))
        .cloned()
        .collect();
    if !outside.is_empty() {
        return Err(Unsendable::OutsideEnvelope(outside));
    }
    let in_headers: HashSet<&str> = named.iter().map(String::as_str).collect();
    let hidden: Vec<&String> = envelope
        .iter()
        .zip(&envelope_lower)
        .filter(|(_, lower)| !in_headers.contains(lower.as_str()))
        .map(|(a, _)| a)
        .collect();
    let mut request = Vec::with_capacity(body.len() + 64);
    if !hidden.is_empty() {
        request.extend_from_slice(b"Bcc: ");
        for (i, a) in hidden.iter().enumerate() {
            if i > 0 {
                request.extend_from_slice(b",\r\n ");
            }
            request.extend_from_slice(a.as_bytes());
        }
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(body);
    let size = base64_len(request.len());
    if size > MAX_BASE64_BYTES {
        return Err(Unsendable::TooLarge(size));
    }
    Ok(base64::engine::general_purpose::STANDARD
        .encode(request)
        .into())
}

/// What Graph said when it accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// `request-id`, which Microsoft support and message trace use.
    pub request_id: Option<String>,
}

/// Why `sendMail` did not accept.
#[derive(Debug, Clone)]
pub enum GraphFailure {
    /// Graph answered with an error.
    Reply {
        /// HTTP status.
        status: u16,
        /// `error.code`, when the body has one.
        code: Option<String>,
        /// `error.message`, or the body's start.
        message: String,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// A redirect, never followed: the token goes to one host only.
    Redirect(u16),
    /// No whole answer within the time limit (given).
    Timeout(Duration),
    /// The connection failed (DNS, refused, TLS).
    Connect(String),
}

/// Where one mailbox's `sendMail` requests go: worked out once for a
/// session, not for every message.
#[derive(Debug, Clone)]
pub struct SendTarget {
    /// The request's path, for the transcript.
    path: String,
    /// The whole URL, or why the endpoint cannot be one.
    url: Result<reqwest::Url, String>,
}

impl SendTarget {
    /// `{base}/v1.0/users/{mailbox}/sendMail`, the mailbox percent-encoded.
    pub fn new(base: &str, mailbox: &str) -> Self {
        let path = format!(
            "/v1.0/users/{}/sendMail",
            form_urlencoded::byte_serialize(mailbox.as_bytes()).collect::<String>()
        );
        let url = reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| format!("the Graph endpoint {base} is not a usable URL ({e})"));
        SendTarget { path, url }
    }
}

/// `Authorization: Bearer …` for a token, marked sensitive (kept out of
/// debug output), or why the token cannot go in a header.
pub fn authorization(token: &Secret) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose()))
        .map_err(|_| "the access token has characters a header cannot carry".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The Graph client: one HTTP connection pool, no redirects.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    /// Each request's time limit, from the connection to its answer's end.
    timeout: Duration,
}

impl GraphClient {
    /// Builds the client; each request, its answer read, takes at most `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .pool_max_idle_per_host(4)
            .user_agent(concat!("Mailroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(GraphClient { http, timeout })
    }

    /// Sends one message: `body_b64` from [`prepare`], to `target` with
    /// `authorization` ([`authorization`]). The transcript gets the request
    /// line, the status and Graph's `request-id`, `client-request-id` and
    /// `Date` (never the token or the message).
    pub async fn send_mail(
        &self,
        target: &SendTarget,
        authorization: &Result<HeaderValue, String>,
        body_b64: Bytes,
        transcript: &mut Vec<TranscriptLine>,
    ) -> Result<Accepted, GraphFailure> {
        let client_request_id = client_request_id();
        let line = |dir, line: String| TranscriptLine { dir, line };
        transcript.push(line(
            Direction::Client,
            format!(
                "POST {} ({} bytes of base64 MIME, Authorization: Bearer *****, client-request-id: {client_request_id})",
                target.path,
                body_b64.len()
            ),
        ));
        let (url, authorization) = match (&target.url, authorization) {
            (Ok(url), Ok(a)) => (url.clone(), a.clone()),
            (Err(e), _) | (_, Err(e)) => {
                transcript.push(line(Direction::Server, format!("(not sent: {e})")));
                return Err(GraphFailure::Connect(e.clone()));
            }
        };
        let started = Instant::now();
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .header("client-request-id", &client_request_id)
            .header("return-client-request-id", "true")
            .body(body_b64)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let failure = if e.is_timeout() {
                    GraphFailure::Timeout(self.timeout)
                } else {
                    GraphFailure::Connect(super::entra::error_chain(&e))
                };
                transcript.push(line(
                    Direction::Server,
                    format!(
                        "(no answer after {} ms: {e})",
                        started.elapsed().as_millis()
                    ),
                ));
                return Err(failure);
            }
        };
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(header_text);
        let (request_id, echoed, date) = (
            header("request-id"),
            header("client-request-id"),
            header("date"),
        );
        let retry_after = header("retry-after").and_then(|v| retry_after(&v));
        transcript.push(line(
            Direction::Server,
            format!(
                "{status} {} (request-id: {}, client-request-id: {}, Date: {})",
                response.status().canonical_reason().unwrap_or_default(),
                request_id.as_deref().unwrap_or("none"),
                echoed.as_deref().unwrap_or("none"),
                date.as_deref().unwrap_or("none"),
            ),
        ));
        if status == 202 || status == 200 {
            return Ok(Accepted { request_id });
        }
        if (300..400).contains(&status) {
            return Err(GraphFailure::Redirect(status));
        }
        // Graph's error JSON is small; a long body (a proxy's page) is cut.
        let (body, whole) = super::read_capped(response, super::MAX_ANSWER_BYTES)
            .await
            .unwrap_or_else(|_| (Vec::new(), true));
        if !whole {
            transcript.push(line(
                Direction::Server,
                format!(
                    "(the answer's body is over {} KB: Mailroom read no further)",
                    super::MAX_ANSWER_BYTES / 1024
                ),
            ));
        }
        let (code, message) = error_of(&String::from_utf8_lossy(&body));
        if let Some(c) = &code {
            transcript.push(line(
                Direction::Server,
                format!("error.code: {c}: {message}"),
            ));
        }
        Err(GraphFailure::Reply {
            status,
            code,
            message,
            retry_after,
        })
    }
}

/// Graph's `{"error": {"code", "message"}}`, or the body's start.
fn error_of(body: &str) -> (Option<String>, String) {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let e = v.as_ref().map(|v| &v["error"]);
    let code = e
        .and_then(|e| e["code"].as_str())
        .map(|c| super::cut_text(c.to_string()));
    let message = e
        .and_then(|e| e["message"].as_str())
        .map(|m| super::cut_text(m.to_string()))
        .unwrap_or_else(|| {
            body.chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string()
        });
    (code, message)
}

/// The most of one answer header kept: Graph's ids are GUIDs and its
/// `Date` is 29 characters; the request-id is stored with every recipient.
pub const MAX_HEADER_CHARS: usize = 128;

/// An answer header as text, cut at [`MAX_HEADER_CHARS`]; `None` when it
/// is not visible ASCII.
fn header_text(value: &reqwest::header::HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    Some(text.chars().take(MAX_HEADER_CHARS).collect())
}

/// The longest wait a `Retry-After` is taken for: Graph asks for seconds
/// to minutes, and a mailbox's quota frees within its rolling day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// A `Retry-After` in seconds, as Graph sends it, kept within
/// [`MAX_RETRY_AFTER`] so no answer can hold mail for ever (or overflow a
/// clock); anything else is no `Retry-After`.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        // The other form HTTP allows (a proxy's, an older gateway's): a date.
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn client_request_id() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_headers_are_kept_short() {
        use reqwest::header::HeaderValue;
        let id = "0d5e5d68-8a2b-4bd0-9c4f-6a1f1b0d8c11";
        assert_eq!(
            header_text(&HeaderValue::from_static(id)).as_deref(),
            Some(id)
        );
        let long = HeaderValue::from_str(&"a".repeat(60_000)).unwrap();
        assert_eq!(header_text(&long).unwrap().len(), MAX_HEADER_CHARS);
        let binary = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert_eq!(header_text(&binary), None);
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_kept_within_a_day() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("86401"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&u64::MAX.to_string()), Some(MAX_RETRY_AFTER));
        for odd in ["", "-1", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(retry_after(odd), None, "{odd}");
        }
        // An HTTP date: the time until then, none when it has passed.
        let at = |offset: i64| {
            let now = std::time::SystemTime::now();
            let t = if offset >= 0 {
                now + Duration::from_secs(offset as u64)
            } else {
                now - Duration::from_secs(offset.unsigned_abs())
            };
            httpdate::fmt_http_date(t)
        };
        let soon = retry_after(&at(120)).unwrap();
        assert!(
            (Duration::from_secs(118)..=Duration::from_secs(120)).contains(&soon),
            "{soon:?}"
        );
        assert_eq!(retry_after(&at(-60)), Some(Duration::ZERO));
        assert_eq!(retry_after(&at(3 * 86_400)), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("Wed, 31 Feb 2026 25:00:00 GMT"), None);
    }
    use base64::Engine;

    fn decoded(b64: &[u8]) -> String {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn envelope_only_recipients_become_a_bcc_for_the_request_only() {
        let to = format!("{}@{}", "a", "example.org");
        let hidden = format!("{}@{}", "b", "example.org");
        let body = format!("From: x@contoso.com\r\nTo: \"A\" <{to}>\r\nSubject: s\r\n\r\nhi\r\n");
        let out = decoded(&prepare(body.as_bytes(), &[to.clone(), hidden.clone()]).unwrap());
        assert_eq!(out, format!("Bcc: {hidden}\r\n{body}"));
        // Everyone named: the stored bytes exactly.
        let out = decoded(&prepare(body.as_bytes(), &[to.to_uppercase()]).unwrap());
        assert_eq!(out, body);
    }

    #[test]
    fn to_or_cc_outside_the_envelope_is_refused() {
        let body = b"From: x@contoso.com\r\nTo: a@example.org\r\nCc: c@example.org\r\n\r\nhi\r\n";
        assert_eq!(
            prepare(body, &["a@example.org".to_string()]),
            Err(Unsendable::OutsideEnvelope(vec!["c@example.org".into()]))
        );
    }

    #[test]
    fn every_to_and_cc_counts_groups_repeats_and_folded_lines_included() {
        let a = format!("{}@{}", "a", "example.org");
        let b = format!("{}@{}", "b", "example.org");
        let c = format!("{}@{}", "c", "example.org");
        let outside = |head: String| match prepare(
            format!("From: x@contoso.com\r\n{head}\r\nhi\r\n").as_bytes(),
            std::slice::from_ref(&a),
        ) {
            Err(Unsendable::OutsideEnvelope(v)) => v,
            other => panic!("{head}: {other:?}"),
        };
        // A group's members, two To headers, a folded Cc, an encoded name.
        assert_eq!(outside(format!("To: Team: {a}, <{b}>;\r\n")), [b.as_str()]);
        assert_eq!(outside(format!("To: {a}\r\nTo: {c}\r\n")), [c.as_str()]);
        assert_eq!(
            outside(format!(
                "To: {a}\r\nCc: =?utf-8?q?B=C3=A9?= <{b}>,\r\n  {c}\r\n"
            )),
            [b.as_str(), c.as_str()]
        );
        // An empty group names nobody: the envelope goes as Bcc.
        let ok = prepare(
            b"From: x@contoso.com\r\nTo: undisclosed-recipients:;\r\n\r\nhi\r\n",
            std::slice::from_ref(&a),
        )
        .unwrap();
        assert!(decoded(&ok).starts_with(&format!("Bcc: {a}\r\n")));
    }

    #[test]
    fn the_limit_is_on_the_base64_form() {
        let head = b"From: x@contoso.com\r\nTo: a@example.org\r\n\r\n".to_vec();
        let fits = 3_000_000 - head.len();
        let mut body = head.clone();
        body.resize(head.len() + fits, b'x');
        assert_eq!(base64_len(body.len()), 4_000_000);
        assert!(prepare(&body, &["a@example.org".into()]).is_ok());
        body.push(b'x');
        assert_eq!(
            prepare(&body, &["a@example.org".into()]),
            Err(Unsendable::TooLarge(4_000_004))
        );
        // Too large is found before the headers are read: a To outside
        // the envelope in a message that size is not looked at.
        let envelope = ["someone@example.org".to_string()];
        assert_eq!(
            prepare(&body, &envelope),
            Err(Unsendable::TooLarge(4_000_004))
        );
    }

    #[test]
    fn graph_errors_are_read_from_their_body() {
        let (code, message) =
            error_of(r#"{"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}"#);
        assert_eq!(code.as_deref(), Some("ErrorAccessDenied"));
        assert_eq!(message, "Access is denied.");
        assert_eq!(error_of("<html>bad gateway</html>").0, None);
        // A code and message of 60,000 characters each are kept short.
        let long = "x".repeat(60_000);
        let body = serde_json::json!({"error": {"code": long, "message": long}}).to_string();
        let (code, message) = error_of(&body);
        assert_eq!(
            code.unwrap().chars().count(),
            super::super::MAX_ANSWER_TEXT + 1
        );
        assert_eq!(message.chars().count(), super::super::MAX_ANSWER_TEXT + 1);
    }

    #[test]
    fn a_sessions_target_and_authorization_are_worked_out_once_and_checked() {
        let mailbox = format!("{}@{}", "mail er+x", "contoso.com");
        let t = SendTarget::new("https://graph.microsoft.com", &mailbox);
        assert_eq!(t.path, "/v1.0/users/mail+er%2Bx%40contoso.com/sendMail");
        assert_eq!(
            t.url.as_ref().unwrap().as_str(),
            "https://graph.microsoft.com/v1.0/users/mail+er%2Bx%40contoso.com/sendMail"
        );
        let bad = SendTarget::new("graph.example", &mailbox);
        let e = bad.url.unwrap_err();
        assert!(e.contains("graph.example is not a usable URL"), "{e}");
        let a = authorization(&Secret::new("eyJ0eXAi.e30.sig")).unwrap();
        assert_eq!(a.to_str().unwrap(), "Bearer eyJ0eXAi.e30.sig");
        assert!(a.is_sensitive());
        let e = authorization(&Secret::new("bad\ntoken")).unwrap_err();
        assert!(e.contains("cannot carry"), "{e}");
    }

    #[tokio::test]
    async fn an_unusable_endpoint_or_token_sends_nothing_and_says_why() {
        let client = GraphClient::new(REQUEST_TIMEOUT).unwrap();
        let good = SendTarget::new("http://127.0.0.1:9", "m");
        let bad = SendTarget::new("127.0.0.1:9", "m");
        for (target, auth, why) in [
            (&bad, authorization(&Secret::new("t")), "not a usable URL"),
            (&good, authorization(&Secret::new("t\r")), "cannot carry"),
        ] {
            let mut lines = Vec::new();
            let r = client
                .send_mail(target, &auth, Bytes::from_static(b"aGk="), &mut lines)
                .await;
            let Err(GraphFailure::Connect(e)) = r else {
                panic!("{r:?}");
            };
            assert!(e.contains(why), "{e}");
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert!(lines[1].line.starts_with("(not sent: "), "{lines:?}");
        }
    }

    #[test]
    fn scopes_stay_the_clouds_own() {
        assert_eq!(scope(Cloud::Global), "https://graph.microsoft.com/.default");
        assert_eq!(
            endpoint(Cloud::Usgov, Some("http://127.0.0.1:9/")),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            endpoint(Cloud::China, None),
            "https://microsoftgraph.chinacloudapi.cn"
        );
    }
}
