//! A fake Microsoft Graph `sendMail`: `POST /v1.0/users/{user}/sendMail`
//! with a bearer token and the MIME message in base64 (`text/plain`),
//! answering as Graph does: `202` with `request-id`, `client-request-id` and
//! `Date`, or Graph's JSON error body. It checks what Graph checks: the
//! token was issued by the fake Entra and its audience is Graph's, the
//! mailbox exists, the body is base64 of a MIME message with recipients, and
//! the request is under 4 MB, and no more than four requests for one mailbox
//! are answered at once (a fifth gets `429`, over the MailboxConcurrency limit). Errors of
//! REFERENCE.md's table can be scripted, `429` with `Retry-After` included.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use rand::Rng;

/// Graph's request limit for `sendMail` (4 MB).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Graph's limit of requests at once per app and mailbox; one more is
/// answered `429 ApplicationThrottled`, "over its MailboxConcurrency limit"
/// (REFERENCE: throttling).
pub const MAX_CONCURRENT: usize = 4;

/// A scripted answer: Graph's status, `error.code` and `error.message`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    /// HTTP status.
    pub status: u16,
    /// `error.code`.
    pub code: &'static str,
    /// `error.message`.
    pub message: &'static str,
    /// `Retry-After` in seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl GraphError {
    /// Graph's throttling answer: `429 ApplicationThrottled`, over the
    /// MailboxConcurrency limit, with `Retry-After: secs`.
    pub fn throttled(secs: u64) -> Self {
        GraphError {
            retry_after: Some(secs),
            ..GraphError::new(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            )
        }
    }

    /// `403 ErrorAccessDenied`: the app may not send as the mailbox, which
    /// pauses delivery (tests fill a queue behind it).
    pub fn access_denied() -> Self {
        GraphError::new(403, "ErrorAccessDenied", "Access is denied.")
    }

    /// An error without `Retry-After`.
    pub fn new(status: u16, code: &'static str, message: &'static str) -> Self {
        GraphError {
            status,
            code,
            message,
            retry_after: None,
        }
    }
}

/// One accepted `sendMail`.
#[derive(Debug, Clone)]
pub struct GraphReceived {
    /// The `{user}` of the path.
    pub mailbox: String,
    /// The decoded MIME message, exactly as sent.
    pub mime: Vec<u8>,
    /// The `client-request-id` header, when sent.
    pub client_request_id: Option<String>,
    /// When it came.
    pub at: Instant,
}

impl GraphReceived {
    /// The value of the first header `name` (case-blind), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        header_values(&self.mime, name).into_iter().next()
    }
}

/// Every value of header `name` in a MIME message's header block, unfolded.
pub fn header_values(mime: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(mime);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push_str(line);
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields
        .iter()
        .filter_map(|f| f.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

struct Inner {
    issued: Arc<Mutex<HashSet<String>>>,
    audience: Mutex<String>,
    mailboxes: Mutex<HashSet<String>>,
    /// Answers for the next requests, in order; then normal service.
    scripted: Mutex<VecDeque<GraphError>>,
    /// An answer for every request while set.
    always: Mutex<Option<GraphError>>,
    received: Mutex<Vec<GraphReceived>>,
    requests: AtomicUsize,
    request_times: Mutex<Vec<Instant>>,
    /// While set, every request is answered with this status and a body
    /// that never ends.
    endless: Mutex<Option<u16>>,
    /// How long each answer takes (Graph's own latency).
    delay: Mutex<std::time::Duration>,
    /// Requests being answered now, per mailbox (lowercase).
    in_flight: Mutex<HashMap<String, usize>>,
    /// The most requests for one mailbox answered at once so far.
    most_at_once: AtomicUsize,
    /// While set, Graph's throttling limits per mailbox ([`FakeGraph::set_limits`]).
    limits: Mutex<Option<Limits>>,
    /// Requests answered `429` for being over those limits.
    throttled: AtomicUsize,
    /// Per mailbox (lowercase): when each request was taken, and its bytes.
    taken: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
}

/// Graph's throttling limits for one app and mailbox: `requests` in
/// `requests_span`, request bytes `bytes` in `bytes_span` (REFERENCE.md:
/// 10,000 in 10 minutes, 150 MB in 5 minutes).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub requests: usize,
    pub requests_span: std::time::Duration,
    pub bytes: u64,
    pub bytes_span: std::time::Duration,
}

/// Whether a request of `bytes` for `mailbox` fits in the limits; it counts
/// if it does. Else the seconds until enough has left the windows, as
/// Graph's `Retry-After`.
fn within(inner: &Inner, mailbox: &str, bytes: u64) -> Result<(), u64> {
    let Some(l) = *inner.limits.lock().unwrap() else {
        return Ok(());
    };
    let now = Instant::now();
    let mut taken = inner.taken.lock().unwrap();
    let log = taken.entry(mailbox.to_ascii_lowercase()).or_default();
    let longest = l.requests_span.max(l.bytes_span);
    while log.front().is_some_and(|(at, _)| now - *at >= longest) {
        log.pop_front();
    }
    let recent = |span| log.iter().filter(move |(at, _)| now - *at < span);
    let requests = recent(l.requests_span).count();
    let used: u64 = recent(l.bytes_span).map(|(_, b)| b).sum();
    if requests < l.requests && used + bytes <= l.bytes {
        log.push_back((now, bytes));
        return Ok(());
    }
    // Until the oldest request of a full window leaves it; Graph's own
    // answer is a whole number of seconds, at least 1.
    let full = if requests >= l.requests {
        l.requests_span
    } else {
        l.bytes_span
    };
    let oldest = recent(full).next().map_or(now, |(at, _)| *at);
    let wait = (oldest + full).saturating_duration_since(now);
    Err(wait.as_secs_f64().ceil().max(1.0) as u64)
}

/// One request counted in [`Inner::in_flight`] while it is answered.
struct InFlight<'a> {
    inner: &'a Inner,
    mailbox: String,
    /// How many (this one included) were being answered when it came.
    at_once: usize,
}

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner, mailbox: &str) -> Self {
        let mailbox = mailbox.to_ascii_lowercase();
        let at_once = {
            let mut map = inner.in_flight.lock().unwrap();
            let n = map.entry(mailbox.clone()).or_insert(0);
            *n += 1;
            *n
        };
        inner.most_at_once.fetch_max(at_once, Ordering::SeqCst);
        InFlight {
            inner,
            mailbox,
            at_once,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.inner.in_flight.lock().unwrap().get_mut(&self.mailbox) {
            *n -= 1;
        }
    }
}

/// The running fake.
#[derive(Clone)]
pub struct FakeGraph {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

fn request_id() -> String {
    let n: u128 = rand::thread_rng().gen();
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

fn date() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

fn with_ids(mut r: Response, client_request_id: &Option<String>) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("request-id", v);
    }
    if let Some(Ok(v)) = client_request_id.as_deref().map(HeaderValue::from_str) {
        h.insert("client-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&date()) {
        h.insert("date", v);
    }
    r
}

fn error(e: &GraphError, client_request_id: &Option<String>) -> Response {
    let body = serde_json::json!({
        "error": {
            "code": e.code,
            "message": e.message,
            "innerError": {
                "date": date(),
                "request-id": request_id(),
                "client-request-id": client_request_id,
            }
        }
    });
    let mut r = (
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response();
    if let Some(Ok(v)) = e.retry_after.map(|s| HeaderValue::from_str(&s.to_string())) {
        r.headers_mut().insert("retry-after", v);
    }
    with_ids(r, client_request_id)
}

/// The audience of a JWT, read without checking its signature (the fake
/// Entra signs nothing).
fn audience(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["aud"].as_str().map(str::to_string)
}

async fn send_mail(
    State(inner): State<Arc<Inner>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    inner.request_times.lock().unwrap().push(Instant::now());
    let in_flight = InFlight::enter(&inner, &user);
    let delay = *inner.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let crid = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let endless = *inner.endless.lock().unwrap();
    if let Some(status) = endless {
        return with_ids(crate::endless_answer(status), &crid);
    }
    if let Some(e) = inner.always.lock().unwrap().clone() {
        return error(&e, &crid);
    }
    if let Some(e) = inner.scripted.lock().unwrap().pop_front() {
        return error(&e, &crid);
    }
    if in_flight.at_once > MAX_CONCURRENT {
        let e = GraphError::throttled(1);
        return error(&e, &crid);
    }
    if let Err(wait) = within(&inner, &user, body.len() as u64) {
        inner.throttled.fetch_add(1, Ordering::SeqCst);
        return error(&GraphError::throttled(wait), &crid);
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let known = inner.issued.lock().unwrap().contains(&token);
    if !known {
        let e = GraphError::new(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        );
        return error(&e, &crid);
    }
    let want = inner.audience.lock().unwrap().clone();
    if audience(&token).as_deref() != Some(want.as_str()) {
        let e = GraphError::new(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        );
        return error(&e, &crid);
    }
    let known_mailbox = inner
        .mailboxes
        .lock()
        .unwrap()
        .contains(&user.to_ascii_lowercase());
    if !known_mailbox {
        let e = GraphError::new(404, "ErrorInvalidUser", "The requested user is invalid.");
        return error(&e, &crid);
    }
    if body.len() > MAX_REQUEST_BYTES {
        let e = GraphError::new(
            413,
            "RequestEntityTooLarge",
            "The request is larger than the 4 MB limit.",
        );
        return error(&e, &crid);
    }
    let text_plain = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let decoded = base64::engine::general_purpose::STANDARD.decode(body.as_ref());
    let Ok(mime) = decoded.ok().filter(|_| text_plain).ok_or(()) else {
        let e = GraphError::new(
            400,
            "ErrorMimeContentInvalidBase64String",
            "Invalid base64 string for MIME content.",
        );
        return error(&e, &crid);
    };
    let recipients = ["to", "cc", "bcc"]
        .iter()
        .flat_map(|h| header_values(&mime, h))
        .filter(|v| v.contains('@'))
        .count();
    if recipients == 0 || header_values(&mime, "from").is_empty() {
        let e = GraphError::new(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid.",
        );
        return error(&e, &crid);
    }
    inner.received.lock().unwrap().push(GraphReceived {
        mailbox: user,
        mime,
        client_request_id: crid.clone(),
        at: Instant::now(),
    });
    with_ids(StatusCode::ACCEPTED.into_response(), &crid)
}

impl FakeGraph {
    /// Starts on 127.0.0.1 with a free port, accepting the tokens in
    /// `issued` (the fake Entra's) whose audience is the Global cloud's Graph.
    pub async fn start(issued: Arc<Mutex<HashSet<String>>>) -> Self {
        let inner = Arc::new(Inner {
            issued,
            audience: Mutex::new("https://graph.microsoft.com".into()),
            mailboxes: Mutex::new(HashSet::new()),
            scripted: Mutex::new(VecDeque::new()),
            always: Mutex::new(None),
            received: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            request_times: Mutex::new(Vec::new()),
            delay: Mutex::new(std::time::Duration::ZERO),
            endless: Mutex::new(None),
            in_flight: Mutex::new(HashMap::new()),
            most_at_once: AtomicUsize::new(0),
            limits: Mutex::new(None),
            taken: Mutex::new(HashMap::new()),
            throttled: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/v1.0/users/{user}/sendMail", post(send_mail))
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
            .with_state(inner.clone());
        let addr = crate::serve_loopback(app, "fake Graph").await;
        FakeGraph { addr, inner }
    }

    /// The value for `--graph-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A mailbox that may send.
    pub fn add_mailbox(&self, address: &str) {
        self.inner
            .mailboxes
            .lock()
            .unwrap()
            .insert(address.to_ascii_lowercase());
    }

    /// The audience tokens must have (another cloud's Graph).
    pub fn set_audience(&self, aud: &str) {
        *self.inner.audience.lock().unwrap() = aud.into();
    }

    /// Answers the next request with `e`, then serves normally.
    pub fn fail_next(&self, e: GraphError) {
        self.inner.scripted.lock().unwrap().push_back(e);
    }

    /// Answers every request with `e` until [`FakeGraph::recover`].
    pub fn fail_always(&self, e: GraphError) {
        *self.inner.always.lock().unwrap() = Some(e);
    }

    /// Answers each request after `d`, as the real service takes its time.
    pub fn set_delay(&self, d: std::time::Duration) {
        *self.inner.delay.lock().unwrap() = d;
    }

    /// Answers every request with `status` and a body that never ends (a
    /// broken proxy's page), until [`FakeGraph::recover`].
    pub fn fail_endless(&self, status: u16) {
        *self.inner.endless.lock().unwrap() = Some(status);
    }

    /// Serves normally again, and counts [`FakeGraph::most_at_once`] anew.
    pub fn recover(&self) {
        self.inner.most_at_once.store(0, Ordering::SeqCst);
        *self.inner.always.lock().unwrap() = None;
        *self.inner.endless.lock().unwrap() = None;
        self.inner.scripted.lock().unwrap().clear();
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<GraphReceived> {
        self.inner.received.lock().unwrap().clone()
    }

    /// How many messages were accepted, without copying them (benchmarks
    /// poll it while the fake is under load).
    pub fn accepted(&self) -> usize {
        self.inner.received.lock().unwrap().len()
    }

    /// How many requests arrived, accepted or not.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// When each request arrived.
    pub fn request_times(&self) -> Vec<Instant> {
        self.inner.request_times.lock().unwrap().clone()
    }

    /// Throttles each mailbox past `limits`, as Graph does, answering `429
    /// ApplicationThrottled` with a `Retry-After`.
    pub fn set_limits(&self, limits: Limits) {
        *self.inner.limits.lock().unwrap() = Some(limits);
    }

    /// How many requests were throttled for being over [`FakeGraph::set_limits`].
    pub fn throttled(&self) -> usize {
        self.inner.throttled.load(Ordering::SeqCst)
    }

    /// The most requests for one mailbox that were answered at once (since
    /// the last [`FakeGraph::recover`]).
    pub fn most_at_once(&self) -> usize {
        self.inner.most_at_once.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_are_read_unfolded_and_case_blind() {
        let mime = b"From: a@b.c\r\nTO: x@y.z,\r\n w@y.z\r\nSubject: s\r\n\r\nTo: not a header\r\n";
        assert_eq!(super::header_values(mime, "to"), vec!["x@y.z, w@y.z"]);
    }
}
