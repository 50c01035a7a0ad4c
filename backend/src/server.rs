//! The axum application: state, router, static files, and start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{Html, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

use crate::auth::{self, AdminAuth};
use crate::config::ServeArgs;
use crate::crypto::Cipher;
use crate::error::{AppError, BODY_LIMIT};
use crate::store::{SettingsStore, SqliteStore};
use crate::test_email::Tester;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Where the settings live.
    pub store: Arc<dyn SettingsStore>,
    /// Encrypts secrets at rest.
    pub cipher: Arc<Cipher>,
    /// Administrator sign-in.
    pub auth: Arc<AdminAuth>,
    /// Runs test emails (token cache included).
    pub tester: Arc<Tester>,
}

/// The current time in RFC 3339, UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// The Content-Security-Policy of the page: only our own files, the wasm
/// (`'wasm-unsafe-eval'`), and Trunk's inline loader by its hash.
pub fn content_security_policy(inline_script_hashes: &[String]) -> String {
    let mut script = String::from("'self' 'wasm-unsafe-eval'");
    for h in inline_script_hashes {
        script.push_str(&format!(" 'sha256-{h}'"));
    }
    format!(
        "default-src 'none'; script-src {script}; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The SHA-256 (base64) of each inline `<script>` in a page, for the CSP.
pub fn inline_script_hashes(html: &str) -> Vec<String> {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        rest = &rest[start..];
        let Some(open_end) = rest.find('>') else {
            break;
        };
        let tag = &rest[..open_end];
        let body_and_more = &rest[open_end + 1..];
        let Some(close) = body_and_more.find("</script>") else {
            break;
        };
        if !tag.contains(" src=") {
            let body = &body_and_more[..close];
            hashes.push(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body)));
        }
        rest = &body_and_more[close..];
    }
    hashes
}

/// Security headers on every answer (CONTRACT §2); `/api` is never cached,
/// hashed Trunk assets are cached for good, and the page carries the CSP.
async fn response_headers(
    State(csp): State<Arc<HeaderValue>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let mut response = next.run(req).await;
    let success = response.status().is_success();
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if path == "/api" || path.starts_with("/api/") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, (*csp).clone());
    let value = if is_hashed_asset(&path) && success {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    response
}

/// `name-0123456789abcdef.ext` (Trunk's file hash) or `…_bg.wasm` next to it.
fn is_hashed_asset(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or_default();
    let stem = file
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches("_bg");
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() >= 16 && hash.chars().all(|c| c.is_ascii_hexdigit()))
}

async fn no_ui() -> Html<&'static str> {
    Html("<!doctype html><title>Mailroom</title><p>The settings page is not built. Run <code>cargo xtask build-ui</code>, or point <code>--static-dir</code> at a Trunk build.</p>")
}

/// The whole application; tests drive it with `oneshot`.
pub fn app(state: AppState, static_dir: Option<PathBuf>) -> Router {
    let protected = Router::new()
        .merge(crate::settings::routes())
        .merge(crate::test_email::routes())
        .route("/api/logout", axum::routing::post(auth::logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let api = Router::new()
        .route("/api/health", get(health))
        .merge(auth::routes())
        .merge(protected)
        .route("/api", any(|| async { AppError::NotFound }))
        .route("/api/{*rest}", any(|| async { AppError::NotFound }))
        .with_state(state);
    let static_dir = static_dir.filter(|d| d.join("index.html").is_file());
    let hashes = static_dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("index.html")).ok())
        .map(|html| inline_script_hashes(&html))
        .unwrap_or_default();
    let csp = HeaderValue::from_str(&content_security_policy(&hashes))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    let router = match static_dir {
        Some(dir) => {
            let index = ServeFile::new(dir.join("index.html"));
            api.fallback_service(ServeDir::new(dir).fallback(index))
        }
        None => api.fallback(no_ui),
    };
    router
        .layer(middleware::from_fn_with_state(
            Arc::new(csp),
            response_headers,
        ))
        .layer(CompressionLayer::new().gzip(true).br(true))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Logs method, path, status and time of each request; never headers or bodies.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                })
                .on_request(())
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), ms = latency.as_millis() as u64, "request");
                }),
        )
}

/// Why the server could not start; each names the fix. Exit code 78 (EX_CONFIG).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

fn sqlite_path(args: &ServeArgs) -> Result<PathBuf, StartError> {
    match args.database_url.as_deref() {
        None => Ok(args.data_dir.join("mailroom.db")),
        Some(url) if url.starts_with("sqlite://") => Ok(PathBuf::from(&url["sqlite://".len()..])),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Err(StartError(
            "PostgreSQL storage is not available in this build yet; leave --database-url unset to use SQLite in the data dir.".into(),
        )),
        Some(_) => Err(StartError(
            "--database-url must start with sqlite:// (or postgres:// once supported).".into(),
        )),
    }
}

/// The default static dir: `./dist` when present, else the workspace's `dist`.
fn default_static_dir() -> PathBuf {
    let local = PathBuf::from("dist");
    if local.join("index.html").is_file() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

fn create_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                StartError(format!("cannot create the data dir {}: {e}", dir.display()))
            })?;
    } else if let Ok(meta) = std::fs::metadata(dir) {
        if meta.permissions().mode() & 0o077 != 0 {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    Ok(())
}

/// A server bound to its port, ready to run.
pub struct Server {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    router: Router,
    /// The admin token's file, when the token was generated at this start.
    pub generated_token: Option<PathBuf>,
}

impl AppState {
    /// Prepares the data dir, the store, the key and the admin token.
    pub async fn open(args: &ServeArgs) -> Result<(AppState, auth::AdminToken), StartError> {
        create_data_dir(&args.data_dir)?;
        let db_path = sqlite_path(args)?;
        let public_origin = args
            .public_url
            .as_deref()
            .map(auth::parse_public_url)
            .transpose()
            .map_err(StartError)?;
        let store = SqliteStore::open(&db_path).map_err(|e| {
            StartError(format!(
                "cannot open the database {}: {e}",
                db_path.display()
            ))
        })?;
        let record = store.load().await.map_err(|e| {
            StartError(format!(
                "cannot read the database {}: {e}",
                db_path.display()
            ))
        })?;
        let has_secrets = record
            .as_ref()
            .is_some_and(|r| r.client_secret.is_some() || r.password.is_some());
        let cipher = Cipher::load_or_create(&args.data_dir, !has_secrets)
            .map_err(|e| StartError(e.to_string()))?;
        if let Some(record) = record {
            crate::settings::decode(&cipher, record).map_err(|_| {
                StartError(
                    crate::crypto::KeyError::Mismatch(args.data_dir.join("secret.key")).to_string(),
                )
            })?;
        }
        let token = auth::resolve_admin_token(&args.data_dir, args.admin_token.clone()).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::InvalidInput => StartError(e.to_string()),
                _ => StartError(format!(
                    "cannot create the admin token file in {}: {e}",
                    args.data_dir.display()
                )),
            },
        )?;
        let tester = Tester::new(&args.test).map_err(StartError)?;
        let state = AppState {
            store: Arc::new(store),
            cipher: Arc::new(cipher),
            auth: Arc::new(AdminAuth::new(&token.token, public_origin)),
            tester: Arc::new(tester),
        };
        Ok((state, token))
    }
}

impl Server {
    /// Opens the state and binds the listener.
    pub async fn bind(args: &ServeArgs) -> Result<Server, StartError> {
        let (state, token) = AppState::open(args).await?;
        let static_dir = args.static_dir.clone().unwrap_or_else(default_static_dir);
        let router = app(state, Some(static_dir));
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| StartError(format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let generated_token = token.generated_into;
        Ok(Server {
            addr,
            listener,
            router,
            generated_token,
        })
    }

    /// Serves until SIGINT or SIGTERM, then finishes open requests.
    pub async fn run(self) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::is_hashed_asset;

    #[test]
    fn inline_scripts_are_hashed_for_the_csp() {
        let html = r#"<html><head><script type="module" src="/a.js"></script><script type="module">import init from '/x.js';</script></head></html>"#;
        let hashes = super::inline_script_hashes(html);
        assert_eq!(hashes.len(), 1, "only the inline one");
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let expected = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest("import init from '/x.js';"));
        assert_eq!(hashes[0], expected);
        let csp = super::content_security_policy(&hashes);
        assert!(csp.contains(&format!("'sha256-{expected}'")));
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    }

    #[test]
    fn hashed_assets_are_recognised() {
        assert!(is_hashed_asset(
            "/mailroom-frontend-3f2a1b4c5d6e7f80_bg.wasm"
        ));
        assert!(is_hashed_asset("/style-0123456789abcdef.css"));
        assert!(!is_hashed_asset("/index.html"));
        assert!(!is_hashed_asset("/"));
    }
}
