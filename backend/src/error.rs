//! One error type for every handler, and the JSON extractor that turns bad
//! bodies into 400/413 answers naming the field, never a 5xx.

use mailroom_shared::FieldMessages;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mailroom_shared::api::ErrorBody;
use serde::de::DeserializeOwned;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Everything a handler can answer besides success.
#[derive(Debug)]
pub enum AppError {
    /// Malformed JSON or wrong types: 400.
    BadRequest(String, FieldMessages),
    /// No valid token or session: 401.
    Unauthorized(String),
    /// Invalid settings or recipient: 422 with per-field messages.
    Invalid(FieldMessages),
    /// Stale version: 409.
    Conflict(String),
    /// Body over [`BODY_LIMIT`]: 413.
    TooLarge,
    /// Too many failed sign-ins: 429, retry after the given seconds.
    TooManyRequests(u64),
    /// Unknown route: 404.
    NotFound,
    /// Another request that is not valid: 422 with this message and per-field messages.
    Unprocessable(String, FieldMessages),
    /// No such thing: 404 with this message.
    Missing(String),
    /// A message over `--max-message-size` (bytes): 413.
    MessageTooLarge(u64),
    /// The disk is full: 507; nothing was stored.
    Storage,
    /// A cookie request from another origin: 403.
    Forbidden(String),
    /// A body that is not JSON: 415.
    UnsupportedMediaType,
    /// Too many test emails at once: 429, retry after the given seconds.
    Busy(String, u64),
    /// An app at one of its limits: 429 with `errors.limits`, retry after
    /// the given seconds.
    Limited(String, u64),
    /// A failure of ours; logged, and the client gets a short message.
    Internal(String),
    /// The database cannot be reached: 503, try again.
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
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            AppError::BadRequest(message, errors) => {
                (StatusCode::BAD_REQUEST, ErrorBody { message, errors })
            }
            AppError::Unauthorized(message) => (
                StatusCode::UNAUTHORIZED,
                ErrorBody {
                    message,
                    ..ErrorBody::default()
                },
            ),
            AppError::Invalid(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorBody {
                    message: "The settings are not valid.".into(),
                    errors,
                },
            ),
            AppError::Conflict(message) => (
                StatusCode::CONFLICT,
                ErrorBody {
                    message,
                    ..ErrorBody::default()
                },
            ),
            AppError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody {
                    message: format!("The request body is larger than {} KiB.", BODY_LIMIT / 1024),
                    ..ErrorBody::default()
                },
            ),
            AppError::TooManyRequests(secs) => {
                return too_many(
                    format!(
                        "Too many failed sign-in attempts from your address. Wait {} and try again.",
                        wait_text(secs)
                    ),
                    secs,
                    FieldMessages::new(),
                );
            }
            AppError::Busy(message, secs) => return too_many(message, secs, FieldMessages::new()),
            AppError::Limited(text, secs) => {
                let mut errors = FieldMessages::new();
                errors.push("limits", text.clone());
                return too_many(text, secs, errors);
            }
            AppError::Unprocessable(message, errors) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorBody { message, errors })
            }
            AppError::Missing(message) => (
                StatusCode::NOT_FOUND,
                ErrorBody {
                    message,
                    ..ErrorBody::default()
                },
            ),
            AppError::MessageTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody {
                    message: format!("The message is larger than the limit of {limit} bytes (--max-message-size)."),
                    ..ErrorBody::default()
                },
            ),
            AppError::Storage => (
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorBody {
                    message: "Mailroom's disk is full, so the message was not stored. Free some space and send it again.".into(),
                    ..ErrorBody::default()
                },
            ),
            AppError::Forbidden(message) => (
                StatusCode::FORBIDDEN,
                ErrorBody {
                    message,
                    ..ErrorBody::default()
                },
            ),
            AppError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorBody {
                    message:
                        "Send the request body as JSON, with `Content-Type: application/json`."
                            .into(),
                    ..ErrorBody::default()
                },
            ),
            AppError::NotFound => (
                StatusCode::NOT_FOUND,
                ErrorBody {
                    message: "There is no such API route.".into(),
                    ..ErrorBody::default()
                },
            ),
            AppError::Unavailable(detail) => {
                tracing::error!(%detail, "database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorBody {
                        message: "Mailroom cannot reach its database right now; nothing was stored. Try again shortly.".into(),
                        ..ErrorBody::default()
                    },
                )
            }
            AppError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorBody {
                        message: "Mailroom hit an internal error; the server log has the details."
                            .into(),
                        ..ErrorBody::default()
                    },
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

fn too_many(message: String, secs: u64, errors: FieldMessages) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(ErrorBody { message, errors }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Whether a `Content-Type` value is `application/json` (parameters allowed).
pub fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
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
            BodyError::Field { field, .. } => AppError::field(field, e.to_string()),
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
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::TooLarge
            } else {
                AppError::BadRequest(
                    "The request body could not be read.".into(),
                    FieldMessages::new(),
                )
            }
        })?;
        Ok(ApiJson(parse_json(&bytes)?))
    }
}

/// Parses JSON, telling syntax errors (400) from type errors (400, keyed by the
/// field's name without the `settings.` envelope prefix).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return BodyError::Syntax(inner.to_string());
        }
        let field = path.strip_prefix("settings.").unwrap_or(&path).to_string();
        let detail = inner.to_string();
        let detail = detail
            .split(" at line ")
            .next()
            .unwrap_or(&detail)
            .to_string();
        if field.is_empty() || field == "." {
            BodyError::Shape(detail)
        } else {
            BodyError::Field { field, detail }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
