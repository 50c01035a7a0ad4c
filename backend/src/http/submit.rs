//! `POST /api/messages` (docs/API.md §7): an app's key, then JSON or a whole
//! message through the one intake, then acceptance.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use mailroom_shared::sending::{FromPolicy, MessageRequest, Status, Submitted};
use mailroom_shared::FieldMessages;

use crate::apps;
use crate::auth::client_ip;
use crate::error::{check_body_headers, is_json, parse_json, sent_twice, AppError, BodyError};
use crate::intake::{self, Sending};
use crate::queue::{Enqueued, IdempotencyKey};

/// Whether a `Content-Type` is `message/rfc822`.
fn is_rfc822(content_type: Option<&axum::http::HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("message/rfc822"))
}

/// The envelope of a whole message in the query: `from` once, `to` any
/// number of times, each one address or several separated by commas. Any
/// other parameter, or any at all with JSON, is refused by name: ignored, a
/// misspelt `to` would send the message to the addresses in its headers
/// instead.
fn envelope_query(
    query: Option<&str>,
    raw: bool,
) -> Result<(Option<String>, Vec<String>), AppError> {
    let (mut from, mut to) = (None, Vec::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let name = crate::error::short(&k);
        match k.as_ref() {
            "from" | "to" if !raw => {
                return Err(AppError::field(
                    &name,
                    format!("The envelope in the query ({name}=) is for a whole message (Content-Type: message/rfc822); with JSON, give the sender in from and the recipients in to, cc and bcc."),
                ));
            }
            "from" if from.is_some() => {
                return Err(AppError::field(
                    "from",
                    "The query parameter from is given more than once; give the envelope sender once.",
                ));
            }
            "from" => from = Some(v.trim().to_string()),
            // Several in one, `to=a@…,b@…`, as sendmail's arguments take
            // them (no address holds a comma outside quotes, which the
            // intake refuses anyway): it was "has more than one @".
            "to" if v.contains(',') => to.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
            ),
            "to" => to.push(v.trim().to_string()),
            _ => {
                return Err(AppError::field(
                    &name,
                    format!("This request has no query parameter {name}: it takes from and to, the envelope of a whole message."),
                ));
            }
        }
    }
    Ok((from, to))
}

fn invalid(errors: FieldMessages) -> AppError {
    AppError::Invalid("The message is not valid.".into(), errors)
}

async fn submit(
    State(s): State<Sending>,
    req: Request,
) -> Result<(StatusCode, Json<Submitted>), AppError> {
    let ip = client_ip(&req);
    let app = apps::authenticate(&s.apps, req.headers(), ip).await?;
    let headers: HeaderMap = req.headers().clone();
    let query = req.uri().query().map(str::to_string);
    check_body_headers(&headers)?;
    let content_type = headers.get(header::CONTENT_TYPE);
    let raw = is_rfc822(content_type);
    if !raw && !is_json(content_type) {
        let both = "Send the message as JSON, with `Content-Type: application/json`, or as a whole RFC 5322 message, with `Content-Type: message/rfc822`.";
        // curl's -d and --data-binary send a form's type unless told.
        let form = content_type
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        return Err(AppError::UnsupportedMediaType(if form {
            format!("This request's Content-Type is application/x-www-form-urlencoded, which curl's -d and --data-binary send unless told otherwise. {both} With curl, add -H 'Content-Type: message/rfc822' (or -H 'Content-Type: application/json').")
        } else {
            both.into()
        }));
    }
    // Before the body is read: a wrong query wastes no room.
    let envelope = envelope_query(query.as_deref(), raw)?;
    // Two keys are refused, not one of them picked: retried with the other
    // first, the same message would be queued twice.
    if sent_twice(&headers, "idempotency-key") {
        return Err(invalid(FieldMessages::from([(
            "idempotency_key",
            vec!["Send one Idempotency-Key header; this request has more than one.".to_string()],
        )])));
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
    // Room for the body before it is read: its length as hyper read it from
    // Content-Length, or the most a body may be when it has none (chunked).
    // Without room it stays in the client's socket, and the client waits.
    let declared = axum::body::HttpBody::size_hint(req.body()).upper();
    let limit = body_limit(s.max_message_size);
    let mut room = intake::budget::Reservation::default();
    if !room
        .cover(&s.budget, &app.id, declared.unwrap_or(limit).min(limit))
        .await
    {
        return Err(AppError::busy(s.budget.full_text(), 5));
    }
    let bytes = Bytes::from_request(req, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::message_too_large(s.max_message_size)
        } else {
            AppError::unreadable_body(&rejection)
        }
    })?;
    // The From rule and the default sender are the app's profile's.
    let saved = s.settings.for_profile(&app.profile).load_settings().await?;
    let policy = FromPolicy::new(saved.as_ref(), &app.allowed_from);
    let settings = saved.as_ref();
    let keyed = idempotency_key.is_some();
    let (built, request) = if raw {
        let (from, to) = envelope;
        let request = keyed.then(|| {
            let mut parts = vec![
                &b"message/rfc822"[..],
                from.as_deref().unwrap_or("").as_bytes(),
            ];
            parts.extend(to.iter().map(String::as_bytes));
            parts.push(&bytes);
            request_digest(&parts)
        });
        if is_json_object(&bytes) {
            return Err(invalid(FieldMessages::from([(
                "message",
                vec!["This body is JSON, sent as Content-Type: message/rfc822, which is for a whole RFC 5322 message; send JSON with Content-Type: application/json.".to_string()],
            )])));
        }
        let rules = intake::Rules {
            policy: &policy,
            settings,
            rewrite_from: app.rewrite_from,
        };
        let built = intake::check(&bytes, intake::Envelope { from, to }, &rules);
        (built, request)
    } else {
        let body: MessageRequest = parse_json(&bytes).map_err(|e| match e {
            BodyError::Syntax(_) if starts_with_a_header(&bytes) => AppError::BadRequest(
                format!("{e} It is a whole message (its first line is a header field); send it with Content-Type: message/rfc822."),
                FieldMessages::new(),
            ),
            e => unknown_field(e),
        })?;
        // As serde_json writes it back: the same message with other spacing
        // or another order of its fields is the same request.
        let request = keyed.then(|| {
            let written = serde_json::to_vec(&body).unwrap_or_default();
            request_digest(&[b"application/json", &written])
        });
        let built = intake::json::build(&body, &policy, settings, app.rewrite_from);
        (built, request)
    };
    let built = built.map_err(invalid)?;
    let idempotency_key = idempotency_key
        .zip(request)
        .map(|(key, request)| IdempotencyKey { key, request });
    if built.body.len() as u64 > s.max_message_size {
        return Err(AppError::message_too_large(s.max_message_size));
    }
    let trace = intake::Trace {
        peer: ip,
        via: intake::Via::Http,
    };
    let enqueued = s
        .accept(Some(&app), None, built, idempotency_key, &trace)
        .await?;
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
        Enqueued::KeyReused(id) => Err(invalid(FieldMessages::from([(
            "idempotency_key",
            vec![format!(
                "This Idempotency-Key was used in the last 24 hours for another request, which queued {id}; nothing was queued now. A retry must send the same message as the first request; a new message needs a new key."
            )],
        )]))),
        Enqueued::Limited(hit) => {
            tracing::info!(app = %app.id, limit = hit.name, "submission refused at a limit");
            s.metrics
                .quota_reached
                .get_or_create(&crate::metrics::Metrics::quota("app", &app.id))
                .inc();
            Err(AppError::limited(hit.text(), hit.retry_after))
        }
    }
}

/// A digest of what a request asks to send, for its `Idempotency-Key`
/// (hex SHA-256 over each part, each prefixed by its length, so no two lists
/// of parts read alike).
fn request_digest(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// The largest request body of `POST /api/messages`: the largest message
/// and room for the JSON around it.
pub fn body_limit(max_message_size: u64) -> u64 {
    max_message_size.saturating_add(64 * 1024)
}

/// `POST /api/messages`, authenticated by an app key.
pub fn routes<S>(max_message_size: u64) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Sending: FromRef<S>,
{
    let limit = usize::try_from(body_limit(max_message_size)).unwrap_or(usize::MAX);
    Router::new().route(
        "/api/messages",
        post(submit).layer(DefaultBodyLimit::max(limit)),
    )
}

/// Whether a body sent as a whole message is a JSON object: JSON sent with
/// the other Content-Type was read as a message whose first header was
/// `{"to"`, and answered as one without recipients.
fn is_json_object(bytes: &[u8]) -> bool {
    crate::error::without_bom(bytes)
        .trim_ascii_start()
        .starts_with(b"{")
        && crate::error::json_tree(bytes).is_some_and(|v| v.is_object())
}

/// Whether a body that is not JSON starts with a header field (`From: …`,
/// `Return-Path: …`: letters, digits and hyphens, then a colon), as a whole
/// message sent with `Content-Type: application/json` does.
fn starts_with_a_header(bytes: &[u8]) -> bool {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    line.iter().position(|b| *b == b':').is_some_and(|colon| {
        colon > 0
            && line[..colon]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    })
}

/// A JSON message's field it does not take, with the way to send files when
/// the field meant them (other services' APIs have `attachments`).
fn unknown_field(e: BodyError) -> AppError {
    if let BodyError::Unknown { field, .. } = &e {
        let name = field.to_ascii_lowercase();
        if ["attachment", "file", "inline"]
            .iter()
            .any(|word| name.contains(word))
        {
            return AppError::field(
                field,
                format!(
                    "{e} To send files, send the whole message as Content-Type: message/rfc822 (any mail library builds one, attachments included), or through the SMTP relay."
                ),
            );
        }
    }
    e.into()
}
