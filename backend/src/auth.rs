//! Administrator sign-in: the admin token (Bearer or session cookie), the
//! login/logout routes, and a limit on failed sign-ins per address.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use mailroom_shared::api::LoginRequest;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::crypto::Secret;
use crate::error::{ApiJson, AppError};
use crate::server::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "mailroom_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins allowed per address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// The window over which failures count, and how long a blocked address waits.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Where the admin token came from.
pub struct AdminToken {
    /// The token.
    pub token: Secret,
    /// Set when the token was generated now and must be printed once.
    pub generated_into: Option<std::path::PathBuf>,
}

/// Takes the configured token, else reads `<data-dir>/admin-token`, else
/// generates one there with mode 0600.
pub fn resolve_admin_token(
    data_dir: &Path,
    configured: Option<String>,
) -> std::io::Result<AdminToken> {
    if let Some(t) = configured.filter(|t| !t.trim().is_empty()) {
        return Ok(AdminToken {
            token: Secret::new(t.trim()),
            generated_into: None,
        });
    }
    let path = data_dir.join("admin-token");
    match fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => {
            return Ok(AdminToken {
                token: Secret::new(t.trim()),
                generated_into: None,
            });
        }
        // An empty file is replaced by a fresh token.
        Ok(_) => fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(AdminToken {
        token: Secret::new(token),
        generated_into: Some(path),
    })
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The sign-in state: the token's digest, live sessions, and failure counts.
pub struct AdminAuth {
    token_digest: [u8; 32],
    sessions: Mutex<HashMap<[u8; 32], Instant>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminAuth { .. }")
    }
}

impl AdminAuth {
    /// Sign-in for this token.
    pub fn new(token: &Secret) -> Self {
        AdminAuth {
            token_digest: digest(token.expose()),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Compares in constant time (over fixed-length digests).
    pub fn token_matches(&self, candidate: &str) -> bool {
        digest(candidate).ct_eq(&self.token_digest).into()
    }

    fn new_session(&self) -> String {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        sessions.retain(|_, exp| *exp > now);
        sessions.insert(digest(&id), now + SESSION_TTL);
        id
    }

    fn session_valid(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(&digest(id))
            .is_some_and(|exp| *exp > Instant::now())
    }

    fn end_session(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&digest(id));
    }

    /// Seconds to wait when this address is blocked.
    fn blocked_for(&self, ip: IpAddr) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (count, first) = failures.get(&ip)?;
        let elapsed = first.elapsed();
        (*count >= MAX_FAILURES && elapsed < FAILURE_WINDOW)
            .then(|| (FAILURE_WINDOW - elapsed).as_secs().max(1))
    }

    fn record_failure(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    fn clear_failures(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }

    /// Whether a request carries the token as a Bearer header or a live session cookie.
    pub fn is_authorized(&self, headers: &HeaderMap) -> bool {
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.token_matches(bearer.trim());
        }
        session_cookie(headers).is_some_and(|id| self.session_valid(&id))
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Middleware: 401 unless the request is from a signed-in administrator.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.auth.is_authorized(req.headers()) {
        next.run(req).await
    } else {
        AppError::Unauthorized("Sign in first: send the admin token as `Authorization: Bearer <token>` or sign in on the settings page.".into())
            .into_response()
    }
}

async fn login(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let ip = client_ip(&req);
    if let Some(wait) = state.auth.blocked_for(ip) {
        return Err(AppError::TooManyRequests(wait));
    }
    let secure = behind_tls(req.headers());
    let ApiJson(body): ApiJson<LoginRequest> = ApiJson::from_request(req, &state).await?;
    if !state.auth.token_matches(body.token.trim()) {
        state.auth.record_failure(ip);
        tracing::warn!(%ip, "failed sign-in");
        return Err(AppError::Unauthorized(
            "That admin token is not correct. Use the token from --admin-token, MAILROOM_ADMIN_TOKEN or the data dir's admin-token file.".into(),
        ));
    }
    state.auth.clear_failures(ip);
    let id = state.auth.new_session();
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// Ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.auth.end_session(&id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("mailroom_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// `/api/login`, open to everyone (`/api/logout` sits behind [`require_admin`]).
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/login", post(login))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_generated_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = resolve_admin_token(dir.path(), None).unwrap();
        assert!(first.generated_into.is_some());
        let mode = fs::metadata(dir.path().join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = resolve_admin_token(dir.path(), None).unwrap();
        assert!(second.generated_into.is_none());
        assert_eq!(first.token, second.token);
        let flag = resolve_admin_token(dir.path(), Some("from-flag".into())).unwrap();
        assert_eq!(flag.token.expose(), "from-flag");
    }

    #[test]
    fn failures_block_after_the_limit() {
        let auth = AdminAuth::new(&Secret::new("t"));
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..MAX_FAILURES {
            assert!(auth.blocked_for(ip).is_none());
            auth.record_failure(ip);
        }
        assert!(auth.blocked_for(ip).unwrap() > 800);
        assert!(auth.token_matches("t") && !auth.token_matches("T"));
    }
}
