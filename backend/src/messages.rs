//! Submitting mail over HTTP (docs/API.md §7) and the activity routes (§9):
//! `POST /api/messages` with an app key; the queue, the message list and
//! details, retry and cancel, and the settings history for administrators.

use mailroom_shared::FieldMessages;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use mailroom_shared::sending::{
    Change, Details, FromPolicy, History, MessageList, MessageRequest, QueueState, Status,
    Submitted, Summary, MAX_RECIPIENTS,
};
use serde::Deserialize;

use crate::apps::{self, AppsState};
use crate::auth::client_ip;
use crate::error::{is_json, parse_json, AppError};
use crate::intake;
use crate::queue::{ChangeError, Enqueued, ListFilter, NewMessage};
use crate::settings::SettingsRepo;

/// What submission needs.
#[derive(Clone)]
pub struct Sending {
    /// The queue and the apps.
    pub apps: AppsState,
    /// The saved settings (the default From, the From policy).
    pub settings: SettingsRepo,
    /// The largest message accepted, in bytes.
    pub max_message_size: u64,
    /// Counts accepted messages.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Sending {
    /// Stores a built message (committed before this returns), wakes the
    /// delivery engine and counts it. `source` names a sender without an app
    /// (`trusted network ADDR`).
    pub(crate) async fn accept(
        &self,
        app: Option<&mailroom_shared::sending::App>,
        source: Option<String>,
        built: Built,
        idempotency_key: Option<String>,
    ) -> Result<Enqueued, crate::store::StoreError> {
        let app_id = app.map(|a| a.id.as_str());
        let clock = &self.apps.clock;
        let enqueued = self
            .apps
            .queue
            .enqueue(NewMessage {
                id: apps::new_message_id(),
                app_id: app_id.map(str::to_string),
                source,
                mail_from: built.envelope_from,
                recipients: built.recipients,
                subject: built.subject,
                body: built.body,
                idempotency_key,
                limits: app.map(|a| a.limits),
                now: clock.rfc3339(),
                now_unix: clock.wall().unix_timestamp(),
            })
            .await?;
        if let Enqueued::New(_) = &enqueued {
            self.settings.wake.notify_waiters();
            self.metrics
                .accepted
                .get_or_create(&crate::metrics::Metrics::app(app_id))
                .inc();
        }
        Ok(enqueued)
    }
}

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

/// A JSON submission as a message, its envelope and its subject.
pub(crate) struct Built {
    pub(crate) envelope_from: String,
    pub(crate) recipients: Vec<String>,
    pub(crate) subject: String,
    pub(crate) body: Vec<u8>,
}

fn build(
    req: &MessageRequest,
    policy: &FromPolicy,
    settings: Option<&mailroom_shared::Settings>,
    rewrite_from: bool,
) -> Result<Built, FieldMessages> {
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
    if subject_chars > intake::MAX_SUBJECT {
        errors.push(
            "subject",
            format!(
                "The subject is {subject_chars} characters long; the limit is {}. Put the rest in the body.",
                intake::MAX_SUBJECT
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
    build_raw(
        &message.formatted(),
        (Some(header_from.email.to_string()), recipients),
        policy,
        settings,
        false,
    )
}

/// Whether a `Content-Type` is `message/rfc822`.
fn is_rfc822(content_type: Option<&axum::http::HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("message/rfc822"))
}

/// The envelope given in the query of a raw submission: `from`, and `to`
/// repeated.
fn envelope_query(query: Option<&str>) -> (Option<String>, Vec<String>) {
    let (mut from, mut to) = (None, Vec::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "from" => from = Some(v.trim().to_string()),
            "to" => to.push(v.trim().to_string()),
            _ => {}
        }
    }
    (from, to)
}

/// A whole message (`message/rfc822`), checked by the one intake.
pub(crate) fn build_raw(
    raw: &[u8],
    (query_from, query_to): (Option<String>, Vec<String>),
    policy: &FromPolicy,
    settings: Option<&mailroom_shared::Settings>,
    rewrite_from: bool,
) -> Result<Built, FieldMessages> {
    let checked = intake::check(
        raw,
        intake::Envelope {
            from: query_from,
            to: query_to,
        },
        &intake::Rules {
            policy,
            settings,
            rewrite_from,
        },
    )?;
    Ok(Built {
        envelope_from: checked.envelope_from,
        recipients: checked.recipients,
        subject: checked.subject,
        body: checked.body,
    })
}

fn invalid(errors: FieldMessages) -> AppError {
    AppError::Unprocessable("The message is not valid.".into(), errors)
}

async fn submit(
    State(s): State<Sending>,
    req: Request,
) -> Result<(StatusCode, Json<Submitted>), AppError> {
    let ip = client_ip(&req);
    let app = apps::authenticate(&s.apps, req.headers(), ip).await?;
    let headers: HeaderMap = req.headers().clone();
    let query = req.uri().query().map(str::to_string);
    let content_type = headers.get(header::CONTENT_TYPE);
    let raw = is_rfc822(content_type);
    if !raw && !is_json(content_type) {
        return Err(AppError::UnsupportedMediaType);
    }
    let idempotency_key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.trim().is_empty() && k.len() <= 200 => Some(k.trim().to_string()),
        Some(_) => {
            return Err(invalid(FieldMessages::from([(
                "idempotency_key",
                vec!["The Idempotency-Key header must be 1 to 200 visible characters.".to_string()],
            )])));
        }
    };
    let bytes = Bytes::from_request(req, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::MessageTooLarge(s.max_message_size)
        } else {
            AppError::BadRequest(
                "The request body could not be read.".into(),
                FieldMessages::new(),
            )
        }
    })?;
    let current = s.settings.load_current().await?;
    let policy = FromPolicy::new(current.settings.as_ref(), &app.allowed_from);
    let settings = current.settings.as_ref();
    let built = if raw {
        build_raw(
            &bytes,
            envelope_query(query.as_deref()),
            &policy,
            settings,
            app.rewrite_from,
        )
    } else {
        let body: MessageRequest = parse_json(&bytes)?;
        build(&body, &policy, settings, app.rewrite_from)
    }
    .map_err(invalid)?;
    if built.body.len() as u64 > s.max_message_size {
        return Err(AppError::MessageTooLarge(s.max_message_size));
    }
    let enqueued = s.accept(Some(&app), None, built, idempotency_key).await?;
    match enqueued {
        Enqueued::New(id) => {
            tracing::info!(%id, app = %app.id, "message queued");
            Ok((
                StatusCode::ACCEPTED,
                Json(Submitted {
                    id,
                    status: Status::Queued,
                }),
            ))
        }
        Enqueued::Repeat(id, status) => Ok((StatusCode::OK, Json(Submitted { id, status }))),
        Enqueued::Limited(hit) => {
            tracing::info!(app = %app.id, limit = hit.name, "submission refused at a limit");
            s.metrics
                .quota_reached
                .get_or_create(&crate::metrics::Metrics::app(Some(&app.id)))
                .inc();
            Err(AppError::Limited(hit.text(), hit.retry_after))
        }
    }
}

async fn queue_state(State(s): State<Sending>) -> Result<Json<QueueState>, AppError> {
    let q = &s.apps.queue;
    Ok(Json(QueueState {
        counts: q.counts().await?,
        paused: q.pause_state().await?,
    }))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    app: Option<String>,
    q: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

async fn list(
    State(s): State<Sending>,
    Query(q): Query<ListQuery>,
) -> Result<Json<MessageList>, AppError> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => Some(Status::from_name(name).ok_or_else(|| {
            AppError::field("status", format!("“{name}” is not a status: use queued, sending, sent, deferred, failed or cancelled."))
        })?),
    };
    let (messages, next) = s
        .apps
        .queue
        .list(ListFilter {
            status,
            app: q.app.filter(|a| !a.is_empty()),
            q: q.q,
            limit: q.limit.unwrap_or(50),
            before: q.before.filter(|b| !b.is_empty()),
        })
        .await?;
    Ok(Json(MessageList { messages, next }))
}

async fn details(
    State(s): State<Sending>,
    Path(id): Path<String>,
) -> Result<Json<Details>, AppError> {
    s.apps
        .queue
        .details(&id)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::Missing(format!("There is no message {id}.")))
}

fn change_error(id: &str, e: ChangeError, allowed: &str) -> AppError {
    match e {
        ChangeError::NotFound => AppError::Missing(format!("There is no message {id}.")),
        ChangeError::Status(status) => AppError::Conflict(format!(
            "The message is {}; only a {allowed} message can be changed this way.",
            status.as_str()
        )),
        // Full disk, database away: the same answers as everywhere else.
        ChangeError::Store(e) => AppError::from(e),
    }
}

async fn retry(
    State(s): State<Sending>,
    Path(id): Path<String>,
) -> Result<Json<Summary>, AppError> {
    let clock = &s.apps.clock;
    let summary = s
        .apps
        .queue
        .retry(&id, &clock.rfc3339(), clock.wall().unix_timestamp())
        .await
        .map_err(|e| change_error(&id, e, "failed or deferred"))?;
    s.settings.wake.notify_waiters();
    Ok(Json(summary))
}

async fn cancel(
    State(s): State<Sending>,
    Path(id): Path<String>,
) -> Result<Json<Summary>, AppError> {
    let summary = s
        .apps
        .queue
        .cancel(&id, &s.apps.clock.rfc3339())
        .await
        .map_err(|e| change_error(&id, e, "queued or deferred"))?;
    Ok(Json(summary))
}

async fn history(State(s): State<Sending>) -> Result<Json<History>, AppError> {
    let entries = s.settings.store.history().await?;
    Ok(Json(History {
        changes: entries
            .into_iter()
            .map(|e| Change {
                version: e.version,
                at: e.changed_at,
                fields: e.changed_fields,
            })
            .collect(),
    }))
}

/// `POST /api/messages`, authenticated by an app key.
pub fn submit_routes<S>(max_message_size: u64) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Sending: FromRef<S>,
{
    let limit = usize::try_from(max_message_size)
        .unwrap_or(usize::MAX)
        // Room for the JSON around the message.
        .saturating_add(64 * 1024);
    Router::new().route(
        "/api/messages",
        post(submit).layer(DefaultBodyLimit::max(limit)),
    )
}

/// The activity routes (administrators only).
pub fn admin_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Sending: FromRef<S>,
{
    Router::new()
        .route("/api/queue", get(queue_state))
        .route("/api/messages", get(list))
        .route("/api/messages/{id}", get(details))
        .route("/api/messages/{id}/retry", post(retry))
        .route("/api/messages/{id}/cancel", post(cancel))
        .route("/api/settings/history", get(history))
}
