//! The one HTTP helper: every call to the API goes through [`fetch`].

use mailroom_shared::FieldMessages;

use gloo_net::http::{Method, RequestBuilder};
use mailroom_shared::api::{ErrorBody, SettingsResponse};
use serde::Serialize;

/// Why a call failed, sorted by what the page does about it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 401: show the sign-in screen.
    Unauthorized(String),
    /// 409: someone else saved.
    Conflict(String),
    /// 422 (or 400 naming fields): show next to the fields.
    Invalid(String, FieldMessages),
    /// Anything else: show as a banner.
    Other(String),
}

impl ApiError {
    /// The sentence to show.
    pub fn message(&self) -> &str {
        match self {
            ApiError::Unauthorized(m)
            | ApiError::Conflict(m)
            | ApiError::Other(m)
            | ApiError::Invalid(m, _) => m,
        }
    }
}

/// A request body as JSON text (serde_json's writer: smaller in the bundle
/// than building a JavaScript object to stringify).
pub fn encode<B: Serialize>(body: &B) -> Option<String> {
    serde_json::to_string(body).ok()
}

/// The JSON answer as the browser parsed it (for views that read a few
/// fields with [`crate::markup`] instead of a typed decoder).
pub async fn json(method: Method, path: &str) -> Result<wasm_bindgen::JsValue, ApiError> {
    json_body(method, path, None).await
}

/// [`json`] read with one of [`crate::read`]'s readers; an answer of
/// another shape is an error that says so.
pub async fn typed<T>(
    method: Method,
    path: &str,
    read: fn(&wasm_bindgen::JsValue) -> Option<T>,
) -> Result<T, ApiError> {
    let v = json(method, path).await?;
    read(&v).ok_or_else(|| {
        ApiError::Other(
            "The server's answer was not understood. Reload the page: the server may be newer than it."
                .into(),
        )
    })
}

/// [`json`] with a request body, already encoded.
pub async fn json_body(
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<wasm_bindgen::JsValue, ApiError> {
    let text = fetch(method, path, body).await?;
    js_sys::JSON::parse(&text).map_err(|_| {
        ApiError::Other("The server's answer was not understood; reload the page.".into())
    })
}

thread_local! {
    /// The sending profile the Settings view edits (docs/API.md §15).
    static PROFILE: std::cell::RefCell<String> =
        std::cell::RefCell::new(mailroom_shared::profiles::DEFAULT_PROFILE.into());
}

thread_local! {
    /// The name of the profile being made: the next save adds it.
    static NEW_PROFILE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The next save makes a new profile with this name (`None`: it saves the
/// edited one).
pub fn set_new_profile(name: Option<String>) {
    NEW_PROFILE.with(|p| *p.borrow_mut() = name);
}

/// The name of the profile being made, if one is.
pub fn new_profile() -> Option<String> {
    NEW_PROFILE.with(|p| p.borrow().clone())
}

/// Edits another profile's settings from now on.
pub fn set_profile(id: &str) {
    PROFILE.with(|p| *p.borrow_mut() = id.to_string());
}

/// The profile the Settings view edits.
pub fn profile() -> String {
    PROFILE.with(|p| p.borrow().clone())
}

/// The route of the edited profile's `part` (`""`, `/test`, `/history`,
/// `/certificate`, `/certificate.pem?which=`): `/api/settings…` for the
/// default profile, `/api/profiles/{id}/…` for the others.
pub fn profile_path(part: &str) -> String {
    let id = profile();
    if id == mailroom_shared::profiles::DEFAULT_PROFILE {
        return ["/api/settings", part].concat();
    }
    let part = if part.is_empty() { "/settings" } else { part };
    ["/api/profiles/", &id, part].concat()
}

/// `GET /api/settings` (of the edited profile).
pub async fn settings() -> Result<SettingsResponse, ApiError> {
    let v = json(Method::GET, &profile_path("")).await?;
    crate::read::settings_response(&v).ok_or_else(|| {
        ApiError::Other("The server's answer was not understood; reload the page.".into())
    })
}

/// An API path (`/api/…`) relative to the page (`api/…`): behind a reverse
/// proxy under a path (`https://contoso.com/mailroom/`) the page's own
/// address leads to the API, the site's root does not.
pub fn relative(path: &str) -> &str {
    path.strip_prefix('/').unwrap_or(path)
}

/// The page's address without its fragment and file: where `api/…` is,
/// for commands to copy (`https://contoso.com/mailroom`).
pub fn page_url() -> String {
    let location = web_sys::window().map(|w| w.location());
    let origin = location
        .as_ref()
        .and_then(|l| l.origin().ok())
        .unwrap_or_default();
    let path = location
        .as_ref()
        .and_then(|l| l.pathname().ok())
        .unwrap_or_default();
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    [origin.as_str(), dir].concat()
}

/// Sends the request and returns the text of a 2xx answer; anything else
/// becomes the [`ApiError`] the page acts on.
pub async fn fetch(method: Method, path: &str, body: Option<String>) -> Result<String, ApiError> {
    let builder = RequestBuilder::new(relative(path))
        .method(method)
        .header("Accept", "application/json");
    let request = match body {
        Some(text) => builder
            .header("Content-Type", "application/json")
            .body(text),
        None => builder.build(),
    }
    .map_err(|_| ApiError::Other("The request could not be built.".into()))?;
    let response = request.send().await.map_err(|_| {
        ApiError::Other(
            "Mailroom's server could not be reached. Check that it is running and reload the page."
                .into(),
        )
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(text);
    }
    let parsed = js_sys::JSON::parse(&text).ok();
    let body = parsed
        .as_ref()
        .and_then(crate::read::error_body)
        .unwrap_or_else(|| {
            let mut message = String::from("The server answered HTTP ");
            message.push_str(&status.to_string());
            message.push('.');
            ErrorBody {
                message,
                ..ErrorBody::default()
            }
        });
    Err(match status {
        401 => ApiError::Unauthorized(body.message),
        409 => ApiError::Conflict(body.message),
        400 | 422 if !body.errors.is_empty() => ApiError::Invalid(body.message, body.errors),
        _ => ApiError::Other(body.message),
    })
}
