//! One error type for every handler, and the JSON extractor that turns bad
//! bodies into 400/413 answers naming the field, never a 5xx.

use mailroom_shared::FieldMessages;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mailroom_shared::api::ErrorBody;
use serde::de::DeserializeOwned;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Everything a handler can answer besides success: one variant per status,
/// each with what the client can act on.
#[derive(Debug)]
pub enum AppError {
    /// Malformed JSON, wrong types or a bad query: 400.
    BadRequest(String, FieldMessages),
    /// No valid token, session or key: 401.
    Unauthorized(String),
    /// A cookie request from another origin: 403.
    Forbidden(String),
    /// No such route or thing: 404.
    NotFound(String),
    /// Stale version, or a message not in a state for this: 409.
    Conflict(String),
    /// A body over a limit, the message naming which: 413.
    TooLarge(String),
    /// A body that did not arrive within `--http-request-timeout`: 408 and
    /// the connection closed; nothing was done, so the client sends again.
    TooSlow(String),
    /// A body of a type or a content coding the route does not take: 415,
    /// saying which it takes.
    UnsupportedMediaType(String),
    /// Input that is not valid: 422 with per-field messages.
    Invalid(String, FieldMessages),
    /// Too many at once, a lockout or an app's limit: 429 with `Retry-After`.
    TooMany {
        /// What to do.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
        /// Per-field messages (`limits`), if any.
        errors: FieldMessages,
    },
    /// The disk is full: 507; nothing was stored.
    Storage,
    /// A failure of ours: 500, logged by [`log_errors`]; the client gets a
    /// short message.
    Internal(String),
    /// The database cannot be reached: 503, try again; logged too.
    Unavailable(String),
}

impl AppError {
    /// A 400 with one field's message.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        AppError::BadRequest(
            message.clone(),
            FieldMessages::from([(field.to_string(), vec![message])]),
        )
    }

    /// Settings (or a test's recipient) that are not valid: 422.
    pub fn invalid_settings(errors: FieldMessages) -> Self {
        AppError::Invalid("The settings are not valid.".into(), errors)
    }

    /// A 404 for an id that names no `kind` (message, app, webhook): the id is
    /// repeated in its first characters only, as every echo is.
    pub fn no_such(kind: &str, id: &str) -> Self {
        AppError::NotFound(format!("There is no {kind} “{}”.", short(id)))
    }

    /// A body that could not be read: 400, or 408 when it was too slow (a
    /// slow link, not a bad request: `mailroom sendmail` exits 75 on it, so
    /// its caller tries again, where a 400 is 65 and the message is given up).
    pub fn unreadable_body(rejection: &axum::extract::rejection::BytesRejection) -> Self {
        match crate::server::body_too_slow(rejection) {
            Some(limit) => {
                let secs = limit.as_secs();
                let unit = if secs == 1 { "second" } else { "seconds" };
                AppError::TooSlow(format!("The request body did not arrive within {secs} {unit} (--http-request-timeout); nothing was done. Send it again, or raise the timeout for slow links."))
            }
            None => AppError::BadRequest(
                "The request body could not be read.".into(),
                FieldMessages::new(),
            ),
        }
    }

    /// An unknown API route: 404.
    pub fn no_route() -> Self {
        AppError::NotFound("There is no such API route.".into())
    }

    /// A request body over [`BODY_LIMIT`]: 413.
    pub fn body_too_large() -> Self {
        AppError::TooLarge(format!(
            "The request body is larger than {} KiB.",
            BODY_LIMIT / 1024
        ))
    }

    /// A message over `--max-message-size`: 413.
    pub fn message_too_large(limit: u64) -> Self {
        AppError::TooLarge(format!(
            "The message is larger than the limit of {limit} bytes (--max-message-size)."
        ))
    }

    /// Wrong credentials past the limit: 429 until the window ends.
    pub fn locked_out(secs: u64) -> Self {
        AppError::TooMany {
            message: format!(
                "Too many failed sign-in attempts from your address. Wait {} and try again.",
                wait_text(secs)
            ),
            retry_after: secs,
            errors: FieldMessages::new(),
        }
    }

    /// Too many at once: 429.
    pub fn busy(message: String, secs: u64) -> Self {
        AppError::TooMany {
            message,
            retry_after: secs,
            errors: FieldMessages::new(),
        }
    }

    /// An app at one of its limits: 429 with `errors.limits`.
    pub fn limited(text: String, secs: u64) -> Self {
        let mut errors = FieldMessages::new();
        errors.push("limits", text.clone());
        AppError::TooMany {
            message: text,
            retry_after: secs,
            errors,
        }
    }

    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(..) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Storage => StatusCode::INSUFFICIENT_STORAGE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// What a failure of ours was, carried on the response for [`log_errors`]
/// (never sent to the client).
#[derive(Debug, Clone)]
pub struct LoggedError(pub String);

/// The answer of a handler that panicked (tower-http's `CatchPanicLayer`):
/// the API's JSON 500, its panic message logged by [`log_errors`], never
/// shown to the client.
pub fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let said = panic_words(&*panic);
    AppError::Internal(format!("a handler panicked: {said}")).into_response()
}

/// What a panic said: its message, or "no message".
pub fn panic_words(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message")
}

/// Runs `work`, catching a panic in it: a long-running task (a delivery
/// worker, housekeeping, the recorder, the webhook sender) loses the one
/// piece of work that panicked, never itself. `Err` holds what it said.
pub async fn caught<F: std::future::Future>(work: F) -> Result<F::Output, String> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|panic| panic_words(&*panic).to_string())
}

/// Middleware: logs the failures of ours that handlers answered (axum's
/// error-handling example), once, with the request's method and path.
pub async fn log_errors(req: Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let response = next.run(req).await;
    if let Some(LoggedError(detail)) = response.extensions().get::<LoggedError>() {
        tracing::error!(%method, %path, status = response.status().as_u16(), %detail, "request failed");
    }
    response
}

/// A NUL byte (`%00`) in an API request's path is a `404`, and in its query
/// a `400` keyed by the parameter that holds it, before any route reads
/// them. No id, name or search holds one: PostgreSQL refuses a NUL in text,
/// so such a request was a `500`, and SQLite ended a search at it and listed
/// every message.
pub async fn no_nul_bytes(req: Request, next: axum::middleware::Next) -> Response {
    match nul_in(req.uri()) {
        Some(refusal) => refusal.into_response(),
        None => next.run(req).await,
    }
}

fn nul_in(uri: &axum::http::Uri) -> Option<AppError> {
    const NUL: &str = "%00";
    if uri.path().contains(NUL) {
        return Some(AppError::NotFound(
            "Nothing is found at an address that holds %00, a NUL byte: no id or name holds one. Remove it.".into(),
        ));
    }
    let query = uri.query().filter(|q| q.contains(NUL))?;
    let name = form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        .map(|(k, _)| short(&k.replace('\0', "")))?;
    Some(AppError::field(
        &name,
        format!("The query parameter {name} holds %00, a NUL byte, which no id, name or search holds; remove it."),
    ))
}

/// Middleware: an answer of the API's that is an error but not JSON (axum's
/// own: a path that is not UTF-8, a method the route does not take) becomes
/// the API's `{"message", "errors"}`, with its status and headers kept.
pub async fn json_errors(req: Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(response.headers().get(header::CONTENT_TYPE))
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's texts are short; a body over 1 KiB is not read, and the
    // status's reason stands in for it.
    let text = axum::body::to_bytes(body, 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        // axum adds `Allow` outside this layer, so the text points to it.
        format!("This route does not take {method}; the Allow header names the methods it takes.")
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_string() + "."
    } else if text.ends_with('.') {
        text
    } else {
        text + "."
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = ErrorBody {
        message,
        ..ErrorBody::default()
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(json))
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let plain = |message: String| ErrorBody {
            message,
            ..ErrorBody::default()
        };
        let mut logged = None;
        let mut retry = None;
        let body = match self {
            AppError::BadRequest(message, errors) | AppError::Invalid(message, errors) => {
                ErrorBody { message, errors }
            }
            AppError::Unauthorized(m)
            | AppError::Forbidden(m)
            | AppError::NotFound(m)
            | AppError::Conflict(m)
            | AppError::TooLarge(m)
            | AppError::TooSlow(m) => plain(m),
            AppError::UnsupportedMediaType(m) => plain(m),
            AppError::TooMany {
                message,
                retry_after,
                errors,
            } => {
                retry = Some(retry_after);
                ErrorBody { message, errors }
            }
            AppError::Storage => plain("Mailroom's disk is full, so the message was not stored. Free some space and send it again.".into()),
            AppError::Unavailable(detail) => {
                logged = Some(format!("database unavailable: {detail}"));
                plain("Mailroom cannot reach its database right now; nothing was stored. Try again shortly.".into())
            }
            AppError::Internal(detail) => {
                logged = Some(detail);
                plain("Mailroom hit an internal error; the server log has the details.".into())
            }
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::REQUEST_TIMEOUT {
            // RFC 9110 15.5.9: the rest of the body may still come; the
            // connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            // RFC 9110 12.5.3: the content codings a body may have.
            response.headers_mut().insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        if let Some(secs) = retry {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let Some(detail) = logged {
            response.extensions_mut().insert(LoggedError(detail));
        }
        response
    }
}

/// Whether a `Content-Type` value is `application/json` (parameters allowed).
pub fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Checks the headers that say how to read a body, before it is read:
/// - more than one `Content-Type` is a 400: the first was used, so a body
///   labelled both JSON and `message/rfc822` was read by whichever came
///   first;
/// - a `Content-Encoding` other than `identity` is a 415: the body would be
///   read as it came, so a gzipped message was called "not valid JSON" or a
///   raw message with a NUL byte, and a plain body labelled `br` was taken
///   as if unlabelled.
pub fn check_body_headers(headers: &HeaderMap) -> Result<(), AppError> {
    if sent_twice(headers, header::CONTENT_TYPE) {
        return Err(header_twice("Content-Type", "naming the body's one type"));
    }
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Err(AppError::UnsupportedMediaType(
                "The Content-Encoding header is not readable text; send the request body as it is, without a Content-Encoding header.".into(),
            ));
        };
        let coding = text
            .split(',')
            .map(str::trim)
            .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
        if let Some(coding) = coding {
            return Err(AppError::UnsupportedMediaType(format!(
                "Mailroom takes request bodies as they are, not with Content-Encoding: {}; send the body uncompressed, without a Content-Encoding header.",
                short(coding)
            )));
        }
    }
    Ok(())
}

/// Whether the request carries the header `name` more than once, where it
/// may hold one value: which of them counts would be the order's choice.
pub fn sent_twice(headers: &HeaderMap, name: impl header::AsHeaderName) -> bool {
    headers.get_all(name).iter().nth(1).is_some()
}

/// The `400` for a header `name` sent more than once: "send one, {how}".
pub fn header_twice(name: &str, how: &str) -> AppError {
    AppError::BadRequest(
        format!("This request has more than one {name} header; send one, {how}."),
        FieldMessages::new(),
    )
}

fn wait_text(secs: u64) -> String {
    if secs >= 120 {
        format!("{} minutes", secs.div_ceil(60))
    } else {
        format!("{secs} seconds")
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict { stored } => AppError::Conflict(format!(
                "Someone else saved the settings while you were editing (version {stored} is stored now). Reload them to see their changes; what you typed stays in the form."
            )),
            crate::store::StoreError::Full => AppError::Storage,
            crate::store::StoreError::Db(detail) => AppError::Internal(detail),
            crate::store::StoreError::Unavailable(detail) => AppError::Unavailable(detail),
        }
    }
}

/// Why a JSON body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON at all.
    #[error("The request body is not valid JSON: {0}.")]
    Syntax(String),
    /// JSON of the wrong shape, not tied to one field.
    #[error("The request body has the wrong shape: {0}.")]
    Shape(String),
    /// Text in another encoding than UTF-8, which JSON must be (RFC 8259).
    #[error("The request body is not UTF-8: {0}.")]
    Encoding(String),
    /// A field the request does not take (a typing mistake in its name).
    #[error("This request has no field {field}: {expected}.")]
    Unknown {
        /// The name as sent (its first 80 characters).
        field: String,
        /// The fields it takes, as serde lists them.
        expected: String,
    },
    /// A field given twice in one object (JSON allows it; which one would
    /// count is up to the reader).
    #[error("The field {field} is given twice; give it once.")]
    Twice {
        /// Its path, like `to` or `limits.messages_per_hour`.
        field: String,
    },
    /// A field the request needs is not there.
    #[error("The field {field} is missing; this request needs it.")]
    Missing {
        /// Its path, like `url` or `settings.version`.
        field: String,
    },
    /// One field has a value of the wrong type.
    #[error("The field {field} has a wrong value: {detail}.")]
    Field {
        /// The SETTINGS field name (without the `settings.` envelope).
        field: String,
        /// What serde said, without its position.
        detail: String,
    },
}

impl From<BodyError> for AppError {
    fn from(e: BodyError) -> Self {
        match &e {
            BodyError::Field { field, .. }
            | BodyError::Unknown { field, .. }
            | BodyError::Twice { field }
            | BodyError::Missing { field } => AppError::field(field, e.to_string()),
            _ => AppError::BadRequest(e.to_string(), FieldMessages::new()),
        }
    }
}

/// A JSON body, with errors that name the field; any Content-Type other than
/// `application/json` is a 415, so a cross-site form or `text/plain` POST can
/// never pass for an API call.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + serde::Serialize,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_body_headers(req.headers())?;
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(AppError::UnsupportedMediaType(
                "Send the request body as JSON, with `Content-Type: application/json`.".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::body_too_large()
            } else {
                AppError::unreadable_body(&rejection)
            }
        })?;
        let body = parse_json(&bytes)?;
        if let Some(sent) = json_tree(&bytes) {
            unknown_settings_field(&sent, Some("settings"))?;
            positional_field(&sent, &body)?;
        }
        Ok(ApiJson(body))
    }
}

/// A UTF-8 byte order mark, as Windows PowerShell 5.1's `Out-File` and
/// Notepad write one, is not JSON but says nothing either (RFC 8259 8.1 lets
/// a parser ignore it): `bytes` without it.
pub(crate) fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// The JSON in `bytes` as a tree, for the checks serde's own reading does
/// not make ([`unknown_settings_field`], [`positional_field`]).
pub fn json_tree(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(without_bom(bytes)).ok()
}

/// A field given as an array where the request takes an object, as
/// [`BodyError::Field`]: serde reads a struct from an array too, field by
/// field in order, so `"limits": [10, 100]` set the first two limits. The
/// body as `sent` is laid beside `read` (what it was read as, written out
/// again): an array in the one where the other has an object is one.
fn positional_field<T: serde::Serialize>(
    sent: &serde_json::Value,
    read: &T,
) -> Result<(), BodyError> {
    fn walk(sent: &serde_json::Value, read: &serde_json::Value, path: &str) -> Option<String> {
        use serde_json::Value::{Array, Object};
        match (sent, read) {
            (Array(_), Object(_)) => Some(path.to_string()),
            (Object(sent), Object(read)) => sent.iter().find_map(|(key, value)| {
                let inner = if path.is_empty() {
                    key.clone()
                } else {
                    [path, ".", key].concat()
                };
                walk(value, read.get(key)?, &inner)
            }),
            (Array(sent), Array(read)) => sent
                .iter()
                .zip(read)
                .enumerate()
                .find_map(|(i, (s, r))| walk(s, r, &format!("{path}[{i}]"))),
            _ => None,
        }
    }
    let Ok(read) = serde_json::to_value(read) else {
        return Ok(());
    };
    match walk(sent, &read, "") {
        None => Ok(()),
        Some(path) => Err(BodyError::Field {
            field: clip(path.strip_prefix("settings.").unwrap_or(&path)),
            detail: "it must be an object, { … } with named fields, not an array".into(),
        }),
    }
}

/// A field of a SETTINGS object that SETTINGS does not take, as
/// [`BodyError::Unknown`]: the object under `key` in a request body's
/// [`json_tree`] (`settings`), or the whole of `mailroom check`'s file
/// (`None`). A
/// misspelt `client_secret_expires` would leave the secret to expire
/// unwarned. SETTINGS itself reads leniently, as it reads the stored
/// settings too; `client_secret_set` and `password_set`, which `GET` answers
/// in the secrets' place, are taken and ignored, so an edited answer can be
/// sent back.
pub fn unknown_settings_field(
    tree: &serde_json::Value,
    key: Option<&str>,
) -> Result<(), BodyError> {
    let given = match key {
        None => Some(tree),
        Some(key) => tree.get(key),
    };
    let Some(given) = given.and_then(serde_json::Value::as_object) else {
        return Ok(());
    };
    let every = mailroom_shared::Settings {
        client_secret: Some(String::new()),
        password: Some(String::new()),
        ..Default::default()
    };
    let Ok(serde_json::Value::Object(known)) = serde_json::to_value(every) else {
        return Ok(());
    };
    let answered = ["client_secret_set", "password_set"];
    match given
        .keys()
        .find(|k| !known.contains_key(*k) && !answered.contains(&k.as_str()))
    {
        None => Ok(()),
        Some(field) => Err(BodyError::Unknown {
            field: short(field),
            expected: format!(
                "expected one of {}",
                known
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// A query string, with errors that name the parameter (axum's own `Query`
/// answers a bad one in plain text, not the API's JSON).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Parses a query string: a parameter of the wrong type or given twice is a
/// 400 keyed by its name.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, AppError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = clip(&err.path().to_string());
        let detail = clip(&err.into_inner().to_string());
        // A repeated parameter is reported by serde without a path.
        let repeated = detail
            .strip_prefix("duplicate field `")
            .and_then(|rest| rest.strip_suffix('`'));
        // One the route does not take (a misspelt `status` would list every
        // message, for a script to retry or cancel), with those it takes.
        if let Some((name, expected)) = unknown_field(&detail) {
            let takes = expected.trim_start_matches("expected ");
            let takes = takes.trim_start_matches("one of ");
            return AppError::field(
                name,
                format!("This request has no query parameter {name}: it takes {takes}."),
            );
        }
        match repeated {
            Some(name) => AppError::field(
                name,
                format!("The query parameter {name} is given more than once; give it once."),
            ),
            None if field.is_empty() || field == "." => AppError::BadRequest(
                format!("The query string cannot be read: {detail}."),
                FieldMessages::new(),
            ),
            None => AppError::field(
                &field,
                format!("The query parameter {field} has a wrong value: {detail}."),
            ),
        }
    })
}

/// Parses JSON, telling syntax errors (400) from type errors (400, keyed by the
/// field's name without the `settings.` envelope prefix).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let bytes = without_bom(bytes);
    if let Some(what) = not_an_object(bytes) {
        return Err(BodyError::Shape(format!(
            "it must be a JSON object, {{ … }} with named fields, not {what}"
        )));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        // Looked for only once reading failed: a wrong encoding explains
        // every other error, and valid bodies pay for no second pass.
        if let Some(why) = not_utf8(bytes) {
            return BodyError::Encoding(why);
        }
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            // serde_json reports a choice (`provider`, `security`, `format`…)
            // given as a number, `true`, `null` or a list as "expected value",
            // a syntax error. When the body is valid JSON, reading it again
            // from its parsed tree tells which field holds what.
            return match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(tree) => match serde_path_to_error::deserialize::<_, T>(tree) {
                    Err(err) => {
                        let path = err.path().to_string();
                        let detail = err
                            .into_inner()
                            .to_string()
                            .replace(", expected string or map", ", expected a string");
                        wrong_value(&path, detail)
                    }
                    Ok(_) => BodyError::Syntax(inner.to_string()),
                },
                Err(_) => BodyError::Syntax(inner.to_string()),
            };
        }
        let detail = inner.to_string();
        let detail = detail
            .split(" at line ")
            .next()
            .unwrap_or(&detail)
            .to_string();
        wrong_value(&path, detail)
    })
}

/// What the JSON in `bytes` is when it is not an object: serde reads a
/// struct from an array too, field by field in order, so `["Billing"]`
/// made an app named Billing and a list of messages was read as one
/// message's fields. Every request body is an object.
fn not_an_object(bytes: &[u8]) -> Option<&'static str> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    Some(match first {
        b'[' => "an array (send one at a time, each in its own request)",
        b'"' => "a string",
        b'0'..=b'9' | b'-' => "a number",
        b't' | b'f' => "true or false",
        b'n' => "null",
        _ => return None,
    })
}

/// Why `bytes` are not UTF-8 text, with the fix, or `None` when they are.
/// Windows writes JSON in two other encodings that look right on screen:
/// UTF-16, from Windows PowerShell's `Out-File` and `>`, and Latin-1, which
/// Windows PowerShell 5.1's `Invoke-RestMethod` sends a text body in unless
/// the content type names a charset. serde_json's own words for them
/// ("expected value at line 1 column 1", "invalid unicode code point")
/// name neither the cause nor the fix. A gzipped body sent without its
/// `Content-Encoding` (with one it is a 415, [`check_body_headers`]) is named too.
fn not_utf8(bytes: &[u8]) -> Option<String> {
    const SAVE: &str = "JSON must be UTF-8 (RFC 8259): save the file as UTF-8 (in PowerShell, Out-File -Encoding utf8), or send the text with Invoke-RestMethod -ContentType 'application/json; charset=utf-8'";
    if bytes.starts_with(b"\x1F\x8B") {
        return Some(
            "it is gzip-compressed data, not text; send the JSON itself, uncompressed".into(),
        );
    }
    let utf16 = bytes.starts_with(b"\xFF\xFE")
        || bytes.starts_with(b"\xFE\xFF")
        || matches!(bytes, [0, b, ..] | [b, 0, ..] if b.is_ascii() && *b != 0);
    if utf16 {
        return Some(format!(
            "it is UTF-16 text, as Windows PowerShell's Out-File and > write it; {SAVE}"
        ));
    }
    let valid = std::str::from_utf8(bytes).err()?.valid_up_to();
    let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    Some(format!(
        "byte 0x{:02X} at line {line}, column {column} is not UTF-8, so the text is in another encoding (Windows PowerShell 5.1's Invoke-RestMethod sends Latin-1 unless the content type names a charset); {SAVE}",
        bytes[valid]
    ))
}

/// How much of a value the client sent an error message repeats.
const ECHO: usize = 80;

/// The first [`ECHO`] characters of what a client sent, for a message that
/// repeats it (with `…` when there was more). A control character shows
/// escaped (`\r`, `\n`, `\u{1b}`), so an echoed value cannot break a
/// message or a log line into lines of its own choosing.
pub fn short(text: &str) -> String {
    let mut shown = String::new();
    for c in text.chars().take(ECHO) {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    if text.chars().count() > ECHO {
        shown.push('…');
    }
    shown
}

/// Shortens what serde repeats of the client's value (a wrong string, an
/// unknown field's name), which may be as long as the body, with [`short`];
/// what was expected stays whole.
fn clip(text: &str) -> String {
    let (said, expected) = text.split_at(text.rfind(", expected ").unwrap_or(text.len()));
    format!("{}{expected}", short(said))
}

/// serde's "unknown field `NAME`, expected …": the name and the
/// "expected …" part.
fn unknown_field(detail: &str) -> Option<(&str, &str)> {
    let rest = detail.strip_prefix("unknown field `")?;
    let i = rest.rfind("`, expected ")?;
    Some((&rest[..i], &rest[i + "`, ".len()..]))
}

/// The error for the value at `path` (the body itself when empty).
fn wrong_value(path: &str, detail: String) -> BodyError {
    let field = clip(path.strip_prefix("settings.").unwrap_or(path));
    let body = field.is_empty() || field == ".";
    // Twice or missing, serde names the field inside the object the path
    // ends at; SETTINGS' own fields are named without their envelope.
    let inside = |name: &str| {
        if body || path == "settings" {
            short(name)
        } else {
            format!("{field}.{}", short(name))
        }
    };
    let named = |prefix: &str| {
        detail
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix('`'))
            .map(inside)
    };
    if let Some(field) = named("duplicate field `") {
        return BodyError::Twice { field };
    }
    // A body without a field it needs said "wrong shape: missing field
    // `url`", with nothing under errors.
    if let Some(field) = named("missing field `") {
        return BodyError::Missing { field };
    }
    if body {
        return BodyError::Shape(clip(&detail));
    }
    match unknown_field(&detail) {
        Some((_, expected)) => BodyError::Unknown {
            field,
            expected: expected.to_string(),
        },
        None => BodyError::Field {
            field,
            detail: clip(&in_words(&detail)),
        },
    }
}

/// serde's "expected …" in words a client knows: `u32` and its kin are a
/// whole number of 0 or more (so `-1` is told what is wrong with it), `i64`
/// and its kin a whole number, `struct AppLimits` an object, `a sequence` a
/// list. The rest ("a string", "a boolean") says it already.
fn in_words(detail: &str) -> String {
    let Some((said, expected)) = detail.rsplit_once(", expected ") else {
        return detail.to_string();
    };
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        // One address where a list belongs (`"to": "a@example.org"`): the
        // list to write instead.
        "a sequence" => match said.strip_prefix("invalid type: string ") {
            Some(text) => return format!("{said}, expected a list: write [{text}]"),
            None => "a list, [ … ]",
        },
        "a map" => "an object, { … } with named fields",
        // A list where one text belongs (`"reply_to": ["a@…", "b@…"]`).
        "a string" if said == "invalid type: sequence" => {
            "one text in quotes, not a list: give one value"
        }
        e if e.starts_with("struct ") => "an object, { … } with named fields",
        _ => return detail.to_string(),
    };
    format!("{said}, expected {words}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client sent comes back cut to 80 characters, with its
    /// control characters escaped: it cannot start lines of its own.
    #[test]
    fn an_echoed_value_is_short_and_on_one_line() {
        assert_eq!(
            short("app_\r\ninjected\u{1b}[2J"),
            "app_\\r\\ninjected\\u{1b}[2J"
        );
        assert_eq!(short("Scanner “3rd” floor"), "Scanner “3rd” floor");
        let long = short(&"x".repeat(200));
        assert_eq!((long.chars().count(), long.ends_with('…')), (81, true));
    }

    #[tokio::test]
    async fn failures_of_ours_are_logged_not_shown_and_limits_say_when() {
        let r = AppError::Internal("disk I/O error at /var/lib/x".into()).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let logged = r.extensions().get::<LoggedError>().cloned();
        assert_eq!(
            logged.map(|l| l.0).as_deref(),
            Some("disk I/O error at /var/lib/x")
        );
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("/var/lib/x"));
        let r = AppError::limited("at its limit".into(), 42).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "42");
        assert!(r.extensions().get::<LoggedError>().is_none());
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"]["limits"][0], "at its limit");
        for (e, status) in [
            (AppError::no_route(), 404),
            (AppError::body_too_large(), 413),
            (AppError::message_too_large(10), 413),
            (AppError::invalid_settings(FieldMessages::new()), 422),
            (AppError::locked_out(5), 429),
            (AppError::Storage, 507),
            (AppError::Unavailable("x".into()), 503),
        ] {
            assert_eq!(e.status().as_u16(), status);
        }
    }

    use mailroom_shared::api::PutSettings;

    #[test]
    fn syntax_and_type_errors_are_told_apart() {
        let err = parse_json::<PutSettings>(b"{nope").unwrap_err();
        assert!(matches!(err, BodyError::Syntax(_)));
        let AppError::BadRequest(m, errors) = AppError::from(err) else {
            panic!()
        };
        assert!(m.starts_with("The request body is not valid JSON"), "{m}");
        assert!(errors.is_empty());
        let e =
            parse_json::<PutSettings>(br#"{"settings": {"port": "x"}, "version": 0}"#).unwrap_err();
        let AppError::BadRequest(_, errors) = AppError::from(e) else {
            panic!()
        };
        assert!(errors["port"][0].contains("wrong value"), "{errors:?}");
        let e = parse_json::<PutSettings>(br#"{"settings": {"provider": "yahoo"}, "version": 0}"#)
            .unwrap_err();
        let AppError::BadRequest(_, errors) = AppError::from(e) else {
            panic!()
        };
        assert!(
            errors["provider"][0].contains("unknown variant"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_choice_of_the_wrong_json_type_is_a_wrong_value_not_a_syntax_error() {
        for (value, says) in [
            ("1", "integer `1`, expected a string"),
            ("true", "boolean `true`, expected a string"),
            ("null", "null, expected a string"),
            (
                "[]",
                "sequence, expected one text in quotes, not a list: give one value",
            ),
        ] {
            let body = format!(r#"{{"settings": {{"provider": {value}}}, "version": 0}}"#);
            let err = parse_json::<PutSettings>(body.as_bytes()).unwrap_err();
            let BodyError::Field { field, detail } = &err else {
                panic!("{value}: {err:?}")
            };
            assert_eq!(field, "provider");
            assert_eq!(detail, &format!("invalid type: {says}"), "{value}");
        }
        // Real syntax errors stay syntax errors, a cut-off body too.
        for body in [
            &br#"{"settings": {"security": 1}"#[..],
            br#"{"settings": {"security": tru}, "version": 0}"#,
            &[b'{'; 1000][..],
            b"settings",
        ] {
            let err = parse_json::<PutSettings>(body).unwrap_err();
            assert!(matches!(err, BodyError::Syntax(_)), "{err:?}");
        }
    }

    #[test]
    fn text_in_another_encoding_is_named_with_where_it_breaks() {
        let encoding = |body: &[u8]| match parse_json::<PutSettings>(body) {
            Err(BodyError::Encoding(why)) => Some(why),
            _ => None,
        };
        // Not UTF-8: the first bad byte, by line and character (é is one
        // character before it), a multi-byte sequence cut at the end too.
        let why = encoding(b"{\n  \"settings\": {\"sender_name\": \"\xC3\xA9\xE9\"}}").unwrap();
        assert!(
            why.starts_with("byte 0xE9 at line 2, column 33 is not UTF-8"),
            "{why}"
        );
        let why = encoding(b"{\"version\": 1, \"x\": \"\xE2\x82").unwrap();
        assert!(why.starts_with("byte 0xE2 at line 1, column 22 "), "{why}");
        // UTF-16 with or without its byte order mark, either byte order.
        for body in [
            &b"\xFF\xFE{\0}\0"[..],
            b"\xFE\xFF\0{\0}",
            b"{\0}\0",
            b"\0{\0}",
        ] {
            let why = encoding(body).unwrap();
            assert!(why.starts_with("it is UTF-16 text"), "{why}");
        }
        // Compressed without saying so.
        let why = encoding(b"\x1F\x8B\x08\0\0\0\0\0\0\x03").unwrap();
        assert!(why.starts_with("it is gzip-compressed data"), "{why}");
        // UTF-8 beyond ASCII is read as it is, and a syntax error in
        // UTF-8 stays a syntax error.
        let ok = "{\"settings\": null, \"version\": 1, \"note\": \"é ü 日本\"}";
        assert!(!matches!(
            parse_json::<PutSettings>(ok.as_bytes()),
            Err(BodyError::Encoding(_))
        ));
        assert!(matches!(
            parse_json::<PutSettings>("{\"é\" 1}".as_bytes()),
            Err(BodyError::Syntax(_))
        ));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_before_serde_reads_a_struct_from_it() {
        // serde reads a struct from an array, field by field in order.
        let positional = br#"[{"settings": null}, 3]"#;
        for (body, what) in [
            (&positional[..], "an array (send one at a time"),
            (&[b'['; 1000][..], "an array"),
            (b" \r\n\t\"x\"", "a string"),
            (b"-1", "a number"),
            (b"false", "true or false"),
            (b"null", "null"),
            (b"\xEF\xBB\xBF[]", "an array"),
        ] {
            let err = parse_json::<PutSettings>(body).unwrap_err();
            assert!(
                matches!(&err, BodyError::Shape(d) if d.starts_with("it must be a JSON object, { … } with named fields, not ") && d.contains(what)),
                "{err:?}"
            );
        }
        assert!(parse_json::<PutSettings>(b" \n{\"settings\": {}, \"version\": 0}").is_ok());
    }

    #[test]
    fn a_byte_order_mark_before_the_json_is_ignored() {
        let body = b"\xEF\xBB\xBF{\"settings\": {\"port\": \"x\"}, \"version\": 0}";
        let err = parse_json::<PutSettings>(body).unwrap_err();
        assert!(
            matches!(&err, BodyError::Field { field, .. } if field == "port"),
            "{err:?}"
        );
        let ok = parse_json::<mailroom_shared::webhooks::NewWebhook>(
            b"\xEF\xBB\xBF{\"url\": \"https://example.com/\", \"events\": []}",
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    /// A missing field is named, at the top and nested; it was a 400
    /// "wrong shape: missing field `url`" with nothing under errors.
    #[test]
    fn a_missing_field_is_named() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            inner: Inner,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            needed: u32,
        }
        fn missing<T: std::fmt::Debug>(err: Result<T, BodyError>) -> String {
            match err {
                Err(e @ BodyError::Missing { .. }) => e.to_string(),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            missing(parse_json::<mailroom_shared::webhooks::NewWebhook>(
                br#"{"events": ["message.failed"], "format": "slack"}"#
            )),
            "The field url is missing; this request needs it."
        );
        assert_eq!(
            missing(parse_json::<PutSettings>(br#"{"settings": {}}"#)),
            "The field version is missing; this request needs it."
        );
        assert_eq!(
            missing(parse_json::<Outer>(br#"{"inner": {}}"#)),
            "The field inner.needed is missing; this request needs it."
        );
        match AppError::from(parse_json::<Outer>(br#"{}"#).unwrap_err()) {
            AppError::BadRequest(message, errors) => {
                assert_eq!(
                    message,
                    "The field inner is missing; this request needs it."
                );
                assert_eq!(errors.get("inner"), Some(&vec![message]));
            }
            other => panic!("{other:?}"),
        }
    }

    /// A field given twice is named, at the top, in SETTINGS and nested;
    /// it was a 400 "wrong shape: duplicate field `to`" with no field.
    #[test]
    fn a_field_given_twice_is_named() {
        fn twice<T>(err: Result<T, BodyError>) -> String {
            match err {
                Err(e @ BodyError::Twice { .. }) => e.to_string(),
                other => panic!("{:?}", other.map(|_| ())),
            }
        }
        let message = br#"{"to": ["a@example.org"], "to": ["b@example.org"], "subject": "s"}"#;
        assert_eq!(
            twice(parse_json::<mailroom_shared::sending::MessageRequest>(
                message
            )),
            "The field to is given twice; give it once."
        );
        let settings = br#"{"settings": {"host": "a", "host": "b"}, "version": 0}"#;
        assert_eq!(
            twice(parse_json::<PutSettings>(settings)),
            "The field host is given twice; give it once."
        );
        let nested = br#"{"limits": {"queued_max": 1, "queued_max": 2}}"#;
        assert_eq!(
            twice(parse_json::<mailroom_shared::sending::AppChange>(nested)),
            "The field limits.queued_max is given twice; give it once."
        );
        let error: AppError = parse_json::<PutSettings>(settings).unwrap_err().into();
        let AppError::BadRequest(_, errors) = error else {
            panic!("{error:?}")
        };
        assert_eq!(
            errors["host"],
            ["The field host is given twice; give it once."]
        );
    }

    #[test]
    fn serdes_type_names_are_said_in_words() {
        let said =
            |body: &str| match parse_json::<mailroom_shared::sending::AppChange>(body.as_bytes()) {
                Err(BodyError::Field { field, detail }) => format!("{field}: {detail}"),
                other => panic!("{other:?}"),
            };
        assert_eq!(
            said(r#"{"limits": {"messages_per_hour": 1e3}}"#),
            "limits.messages_per_hour: invalid type: floating point `1000.0`, expected a whole number, 0 or more"
        );
        assert_eq!(
            said(r#"{"limits": {"messages_per_hour": -1}}"#),
            "limits.messages_per_hour: invalid value: integer `-1`, expected a whole number, 0 or more"
        );
        assert_eq!(
            said(r#"{"limits": "none"}"#),
            "limits: invalid type: string \"none\", expected an object, { … } with named fields"
        );
        assert_eq!(
            said(r#"{"allowed_from": "a@example.org"}"#),
            "allowed_from: invalid type: string \"a@example.org\", expected a list: write [\"a@example.org\"]"
        );
        assert_eq!(
            said(r#"{"allowed_from": 5}"#),
            "allowed_from: invalid type: integer `5`, expected a list, [ … ]"
        );
    }

    /// Fields a typed client writes as `null` (C#, Java and TypeScript
    /// write every field of their class) are as ones left out; a list
    /// where one text belongs is told so.
    #[test]
    fn a_message_with_null_fields_is_read_as_without_them() {
        use mailroom_shared::sending::MessageRequest;
        let to = format!("{}@{}", "ann", "example.org");
        let nulls = format!(
            r#"{{"from": null, "to": ["{to}"], "cc": null, "bcc": null, "reply_to": null,
                "subject": null, "text": "x", "html": null, "headers": null}}"#
        );
        let read = parse_json::<MessageRequest>(nulls.as_bytes()).unwrap();
        let plain = format!(r#"{{"to": ["{to}"], "text": "x"}}"#);
        assert_eq!(
            read,
            parse_json::<MessageRequest>(plain.as_bytes()).unwrap()
        );
        // Still given twice when given twice, and still typed.
        let twice = br#"{"cc": null, "cc": ["a@example.org"]}"#;
        assert!(matches!(
            parse_json::<MessageRequest>(twice),
            Err(BodyError::Twice { .. })
        ));
        let said = |body: &str| match parse_json::<MessageRequest>(body.as_bytes()) {
            Err(BodyError::Field { field, detail }) => format!("{field}: {detail}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            said(r#"{"cc": 5}"#),
            "cc: invalid type: integer `5`, expected a list, [ … ]"
        );
        assert_eq!(
            said(r#"{"reply_to": ["a@example.org", "b@example.org"]}"#),
            "reply_to: invalid type: sequence, expected one text in quotes, not a list: give one value"
        );
    }

    #[test]
    fn a_long_value_or_name_is_repeated_only_in_part() {
        let long = "z".repeat(50_000);
        let body = format!(r#"{{"settings": {{"port": "{long}"}}, "version": 0}}"#);
        let err = parse_json::<PutSettings>(body.as_bytes()).unwrap_err();
        let BodyError::Field { field, detail } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(field, "port");
        let ending = "…, expected a whole number, 0 or more";
        assert!(detail.ends_with(ending), "{detail}");
        assert_eq!(detail.chars().count(), ECHO + ending.chars().count());
        let body = format!(r#"{{"url": "https://example.com/", "events": [], "{long}": 1}}"#);
        let err = parse_json::<mailroom_shared::webhooks::NewWebhook>(body.as_bytes()).unwrap_err();
        let BodyError::Unknown { field, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(field.chars().count(), ECHO + 1, "{field}");
        let query = format!("limit={long}");
        let AppError::BadRequest(m, errors) =
            parse_query::<std::collections::HashMap<String, u32>>(&query).unwrap_err()
        else {
            panic!()
        };
        assert!(m.len() < 200, "{m}");
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn an_unknown_field_is_named_with_the_fields_the_request_takes() {
        let body = br#"{"url": "https://example.com/", "events": [], "fromat": "slack"}"#;
        let err = parse_json::<mailroom_shared::webhooks::NewWebhook>(body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "This request has no field fromat: expected one of `url`, `events`, `format`."
        );
        let AppError::BadRequest(_, errors) = AppError::from(err) else {
            panic!()
        };
        assert!(errors.contains_key("fromat"), "{errors:?}");
    }

    /// A misspelt limit was dropped, and the limits given replace the whole
    /// set: `{"limits": {"messages_per_hr": 5}}` made an app (or a profile)
    /// with no limit at all, and said nothing.
    #[test]
    fn a_misspelt_limit_is_named_not_dropped() {
        let said = |r: Result<(), BodyError>| match r {
            Err(e) => {
                let text = e.to_string();
                let AppError::BadRequest(_, errors) = AppError::from(e) else {
                    panic!()
                };
                (text, errors.keys().cloned().collect::<Vec<_>>())
            }
            Ok(()) => panic!("taken"),
        };
        let app = br#"{"name": "x", "limits": {"messages_per_hr": 5}}"#;
        let (text, keys) = said(parse_json::<mailroom_shared::sending::NewApp>(app).map(|_| ()));
        assert!(
            text.starts_with("This request has no field limits.messages_per_hr: expected one of `messages_per_hour`"),
            "{text}"
        );
        assert_eq!(keys, ["limits.messages_per_hr"]);
        let change = br#"{"limits": {"queued": 5}}"#;
        let (text, _) = said(parse_json::<mailroom_shared::sending::AppChange>(change).map(|_| ()));
        assert!(text.contains("no field limits.queued:"), "{text}");
        let profile = br#"{"limits": {"recipients_per_dya": 5}}"#;
        let (text, keys) =
            said(parse_json::<mailroom_shared::profiles::ProfileChange>(profile).map(|_| ()));
        assert!(
            text.contains(
                "no field limits.recipients_per_dya: expected one of `recipients_per_day`"
            ),
            "{text}"
        );
        assert_eq!(keys, ["limits.recipients_per_dya"]);
    }
}
