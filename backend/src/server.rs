//! The router, the listener and shutdown. The handlers live in their areas
//! (`auth`, `settings`, `test_email`), each with its own `routes()`; the
//! shared state is in [`crate::state`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use axum::{Json, Router};
use mailroom_shared::sending::{Connection, RelayInfo};
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

use crate::auth;
use crate::config::ServeArgs;
use crate::error::{AppError, BODY_LIMIT};
pub use crate::state::{AppState, StartError};

/// The built page's `index.html`, as embedded by `build.rs`.
const EMBEDDED_INDEX: &str = include_str!(concat!(env!("OUT_DIR"), "/ui_index.html"));

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

/// Security headers on every answer (docs/API.md §2); `/api` is never cached,
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

/// `GET /api/connection`: where the relay listens, for the Apps view.
async fn connection(State(state): State<AppState>) -> Json<Connection> {
    Json((*state.connection).clone())
}

/// `GET /api/connection/certificate`: the relay's TLS certificate in use,
/// as PEM, for devices that must be given it to trust the relay.
async fn relay_certificate(
    State(state): State<AppState>,
) -> Result<axum::response::Response, crate::error::AppError> {
    use axum::response::IntoResponse;
    let Some(certs) = &state.relay_certs else {
        return Err(crate::error::AppError::NotFound(
            "The SMTP relay is off (--smtp-listen off, and no --smtps-listen), so it has no certificate.".into(),
        ));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"mailroom-relay.pem\"",
            ),
        ],
        certs.pem(),
    )
        .into_response())
}

/// The whole application; tests drive it with `oneshot`. The page comes from
/// `static_dir` when given (development), else from the binary itself.
/// The API's layers, inside out: a handler that panics answers the API's
/// JSON 500 (tower-http's `CatchPanicLayer`) instead of dropping the
/// connection without a word; failures of ours are logged with the request;
/// axum's own errors that are not JSON become JSON.
fn api_layers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            crate::error::panic_answer,
        ))
        .layer(middleware::from_fn(crate::error::log_errors))
        .layer(middleware::from_fn(crate::error::no_nul_bytes))
        .layer(middleware::from_fn(crate::error::json_errors))
}

pub fn app(state: AppState, static_dir: Option<PathBuf>) -> Router {
    let trusted_proxies = state.trusted_proxies.clone();
    let protected = Router::new()
        .merge(crate::settings::routes())
        .merge(crate::test_email::routes())
        .merge(crate::http::certificate::routes())
        .merge(crate::http::profiles::routes())
        .merge(crate::webhooks::routes::routes())
        .merge(crate::apps::routes())
        .merge(crate::http::activity::routes())
        .merge(crate::metrics::routes())
        .merge(auth::protected_routes())
        .route("/api/connection", get(connection))
        .route("/api/connection/certificate", get(relay_certificate))
        .route_layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_admin,
        ));
    let api = Router::new()
        .route("/api/health", get(health))
        .merge(auth::routes())
        .merge(crate::http::submit::routes(state.sending.max_message_size))
        .merge(protected)
        .route("/api", any(|| async { AppError::no_route() }))
        .route("/api/{*rest}", any(|| async { AppError::no_route() }));
    let api = api_layers(api).with_state(state);
    let static_dir = static_dir.filter(|d| d.join("index.html").is_file());
    let index_html = match &static_dir {
        Some(dir) => std::fs::read_to_string(dir.join("index.html")).unwrap_or_default(),
        None => EMBEDDED_INDEX.to_string(),
    };
    let csp = HeaderValue::from_str(&content_security_policy(&inline_script_hashes(&index_html)))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    let page = match static_dir {
        Some(dir) => {
            let index = ServeFile::new(dir.join("index.html"));
            Router::new().fallback_service(ServeDir::new(dir).fallback(index))
        }
        None => memory_serve::load!()
            .index_file(Some("/index.html"))
            .fallback(Some("/index.html"))
            .fallback_status(StatusCode::OK)
            .into_router(),
    };
    let router = api.merge(page.layer(middleware::from_fn(page_methods)));
    router
        .layer(middleware::from_fn_with_state(
            Arc::new(csp),
            response_headers,
        ))
        .layer(CompressionLayer::new().gzip(true).br(true))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            trusted_proxies,
            auth::client_addr,
        ))
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

/// The page's addresses only show it (GET and HEAD): anything else is a
/// `405` naming where mail goes. The page answered every method with its
/// `200` and HTML, so a `POST` of a message to a mistyped address
/// (`MAILROOM_URL=http://host/mailroom`, a proxy's prefix) looked accepted
/// to a client that trusts the status, and the message was nowhere.
async fn page_methods(req: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    if matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return next.run(req).await;
    }
    let body = mailroom_shared::api::ErrorBody {
        message: format!(
            "{} is an address of the settings page, which only shows pages (GET and HEAD); {} is not taken here. Mail is sent with POST /api/messages.",
            crate::error::short(req.uri().path()),
            req.method()
        ),
        ..Default::default()
    };
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static("GET, HEAD"))],
        Json(body),
    )
        .into_response()
}

/// A server bound to its port, ready to run.
pub struct Server {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The SMTP relay's address, unless it is off.
    pub smtp_addr: Option<SocketAddr>,
    /// The relay's implicit TLS address, unless it is off.
    pub smtps_addr: Option<SocketAddr>,
    listener: tokio::net::TcpListener,
    router: Router,
    engine: crate::delivery::Engine,
    /// The SMTP relay, unless `--smtp-listen off`.
    relay: Option<crate::relay::Relay>,
    /// The admin token's file and the token, when it was generated at this
    /// start (printed once, docs/API.md §1).
    pub generated_token: Option<(PathBuf, crate::crypto::Secret)>,
    limits: HttpLimits,
    signals: Signals,
}

/// SIGTERM, SIGINT and SIGHUP, taken over when the server is bound, before
/// it says it listens: until a signal is taken over its default action
/// ends the process, so a `systemctl stop` or `reload` right after the
/// `listening on` line ended the server without its orderly stop.
struct Signals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn take_over() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            terminate: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
            hangup: signal(SignalKind::hangup()).ok(),
        }
    }
}

/// The largest request header block taken, in bytes (a 16 KiB cookie and
/// more fit; browsers send a few KiB).
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// The HTTP server's limits (docs/API.md §2).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Time to send a request's whole body, from its first read.
    pub request_timeout: Duration,
    /// Time a client may take no part of an answer before it is let go.
    pub write_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Connections at once from one address (IPv6: one /64); more are
    /// answered 429 and closed.
    pub max_per_address: usize,
    /// Peers exempt from `max_per_address`: reverse proxies carry many
    /// clients' connections.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
}

/// Connections answered 429 for their address's share at once, each for at
/// most [`REFUSAL_TIME`]; past that, such a connection is just closed.
const REFUSALS: usize = 64;
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// How long in-flight deliveries get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Server {
    /// Opens the state and binds the listener.
    pub async fn bind(args: &ServeArgs) -> Result<Server, StartError> {
        Self::bind_with_clock(args, Arc::new(crate::clock::SystemClock)).await
    }

    /// As [`Server::bind`], with another clock (tests).
    pub async fn bind_with_clock(
        args: &ServeArgs,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Server, StartError> {
        let (mut state, token) = AppState::open_with_clock(args, clock).await?;
        let engine = state.engine().await;
        let sending = <crate::intake::Sending as axum::extract::FromRef<_>>::from_ref(&state);
        let relay = crate::relay::Relay::bind(&args.relay, &args.data_dir, sending).await?;
        let info = |addr: Option<SocketAddr>| {
            addr.map(|a| RelayInfo {
                // Empty (`MAILROOM_SMTP_HOSTNAME=`) is not given: `null`.
                hostname: args.relay.smtp_hostname.clone().filter(|h| !h.is_empty()),
                ip: a.ip().to_string(),
                port: a.port(),
                loopback_only: a.ip().is_loopback(),
            })
        };
        let smtp_addr = relay.as_ref().and_then(|r| r.addr);
        let smtps_addr = relay.as_ref().and_then(|r| r.smtps_addr);
        state.relay_certs = relay.as_ref().map(crate::relay::Relay::certs);
        state.connection = Arc::new(Connection {
            smtp: info(smtp_addr),
            smtps: info(smtps_addr),
        });
        let trusted_proxies = state.trusted_proxies.clone();
        let router = app(state, args.static_dir.clone());
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                StartError(crate::relay::listen_error(
                    &e,
                    args.listen,
                    None,
                    "--listen",
                ))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let generated_token = token.generated_into.map(|path| (path, token.token));
        let limits = HttpLimits {
            header_timeout: args.http_header_timeout,
            request_timeout: args.http_request_timeout,
            write_timeout: args.http_write_timeout,
            max_connections: args.http_max_connections.max(1),
            max_per_address: args.http_max_connections_per_ip.max(1),
            trusted_proxies,
        };
        Ok(Server {
            limits,
            addr,
            smtp_addr,
            smtps_addr,
            listener,
            router,
            engine,
            relay,
            generated_token,
            signals: Signals::take_over(),
        })
    }

    /// Starts delivery and serves until SIGINT or SIGTERM; then finishes open
    /// requests and gives in-flight deliveries [`SHUTDOWN_GRACE`] to end (a
    /// message still `sending` after that is queued again at the next start).
    pub async fn run(self) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let workers = self.engine.start(stop_rx.clone()).await;
        let reload = self.relay.as_ref().map(crate::relay::Relay::reload_now);
        let Signals {
            terminate,
            interrupt,
            hangup,
        } = self.signals;
        tokio::spawn(on_hangup(hangup, reload));
        let relay = self.relay.map(|r| tokio::spawn(r.run(stop_rx)));
        let stop = shutdown_signal(terminate, interrupt);
        let served = serve(self.listener, self.router, self.limits, stop).await;
        let _ = stop_tx.send(true);
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        let all = futures_util::future::join_all(workers);
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!(
                "deliveries still running at shutdown are queued again at the next start"
            );
        }
        served
    }
}

/// Serves HTTP/1.1 with hyper's own limits: request headers within
/// `header_timeout`, a whole body within `request_timeout` ([`WholeBody`]),
/// each write of an answer within `write_timeout`, and at most
/// `max_connections` at once (the next waits to be accepted, in the kernel's
/// backlog), `max_per_address` of them from one client address (the next is
/// answered 429). On `shutdown`, stops accepting and lets open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;
    let limit = limits.request_timeout;
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |req: axum::extract::Request| {
            req.map(|body| axum::body::Body::new(WholeBody::new(body, limit)))
        },
    ));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_address = Arc::new(auth::PerAddress::default());
    let refusals = Arc::new(tokio::sync::Semaphore::new(REFUSALS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A header block is held whole until it ends, on every connection:
        // past this, 431 and the connection closed (hyper's default takes
        // whatever fits its ~400 KB buffer).
        .max_header_size(MAX_REQUEST_HEAD);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, never crash.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        // One client (a script that leaks connections) gets a share of the
        // places, never all of them. A reverse proxy carries everyone's.
        let ip = peer.ip().to_canonical();
        let slot = if limits.trusted_proxies.iter().any(|n| n.contains(&ip)) {
            None
        } else {
            match per_address.take(ip, limits.max_per_address) {
                Some(slot) => Some(slot),
                None => {
                    // The 429 takes none of the places.
                    drop(permit);
                    let Ok(refusal) = refusals.clone().try_acquire_owned() else {
                        continue;
                    };
                    let conn = builder.serve_connection(
                        TokioIo::new(tcp),
                        hyper::service::service_fn(|_| async {
                            Ok::<_, std::convert::Infallible>(too_many_connections())
                        }),
                    );
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_TIME, conn).await;
                        drop(refusal);
                    });
                    continue;
                }
            }
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
        // A client that takes no part of an answer for the write timeout
        // (it never reads, or pipelines requests without reading) is let go,
        // so it cannot hold its place among max_connections for ever.
        let mut io = tokio_io_timeout::TimeoutStream::new(tcp);
        io.set_write_timeout(Some(limits.write_timeout));
        let conn = builder.serve_connection(TokioIo::new(Box::pin(io)), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open HTTP connections were closed at shutdown");
    }
    Ok(())
}

/// A request body that must arrive whole within its time, counted from its
/// first read (docs/API.md §2: a whole request within 60 seconds).
/// tower-http's body timeout starts again at each part, so a client sending
/// a byte a minute held its connection, and its message's room in the
/// intake's memory, for ever.
struct WholeBody {
    inner: axum::body::Body,
    limit: Duration,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl WholeBody {
    fn new(inner: axum::body::Body, limit: Duration) -> Self {
        WholeBody {
            inner,
            limit,
            deadline: None,
        }
    }
}

/// The error of a body past its time.
#[derive(Debug)]
struct BodyTooSlow(Duration);

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} seconds",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyTooSlow {}

/// The time a body had, when reading it failed because it did not arrive
/// in that time (`--http-request-timeout`).
pub(crate) fn body_too_slow(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut at = Some(error);
    while let Some(e) = at {
        if let Some(slow) = e.downcast_ref::<BodyTooSlow>() {
            return Some(slow.0);
        }
        at = e.source();
    }
    None
}

impl hyper::body::Body for WholeBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if std::future::Future::poll(deadline.as_mut(), cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(Box::new(BodyTooSlow(limit)))));
        }
        std::pin::Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// What to say at start when the page is served over plain HTTP to other
/// machines: the admin token and the session cookie would cross the
/// network in clear. Nothing when it listens on loopback only, or when an
/// `https` `--public-url` says a TLS proxy is in front.
pub fn plain_http_warning(
    listen: std::net::SocketAddr,
    public_url: Option<&str>,
) -> Option<String> {
    // The origin as sign-in reads it (scheme in lower case).
    let behind_tls = public_url
        .and_then(|u| crate::auth::parse_public_url(u).ok())
        .is_some_and(|origin| origin.starts_with("https://"));
    if listen.ip().to_canonical().is_loopback() || behind_tls {
        return None;
    }
    Some(format!(
        "the page and API listen on {listen} over plain HTTP, and no https --public-url is set: the admin token and the session cookie would cross the network in clear. Put a TLS reverse proxy in front and set --public-url https://… (its address), or listen on 127.0.0.1"
    ))
}

/// Files the server may hold open besides its connections: the database
/// (three a SQLite connection, with its journal), the listeners, and the
/// outgoing connections of delivery, tokens and webhooks.
const FILES_BESIDES_CONNECTIONS: u64 = 256;

/// How many files the server may need open at once: each HTTP connection
/// and refusal, each relay connection (two handles: one to ACK at once),
/// and the rest.
pub fn files_needed(http_max_connections: usize) -> u64 {
    (http_max_connections + REFUSALS + 2 * crate::relay::MAX_CONNECTIONS) as u64
        + FILES_BESIDES_CONNECTIONS
}

/// Raises the soft limit of open files to the hard one, as Go programs do:
/// systemd and most shells start a program at 1,024, fewer than the HTTP
/// server's connections alone, and past it every new connection fails,
/// the relay's and delivery's to Microsoft too. Says what to do at start
/// when even the hard limit is below `needed`.
pub fn raise_open_files(needed: u64) -> Option<String> {
    // glibc's setrlimit is the prlimit64 system call, which the systemd
    // unit's @system-service filter allows.
    let raised = rlimit::increase_nofile_limit(u64::MAX);
    let hard = rlimit::Resource::NOFILE.get().map(|(_, hard)| hard);
    match (raised, hard) {
        (Ok(soft), Ok(hard)) => open_files_warning(soft, hard, needed),
        (Err(e), _) | (_, Err(e)) => Some(format!(
            "cannot read or raise the limit of open files ({e}); if it is the usual 1,024, connections past it will fail: set LimitNOFILE=65536 in the systemd unit, or run ulimit -n 65536 before starting"
        )),
    }
}

/// The warning for a limit of `soft` open files (of at most `hard`) when the
/// server may need `needed`.
pub fn open_files_warning(soft: u64, hard: u64, needed: u64) -> Option<String> {
    (soft < needed).then(|| format!(
        "only {soft} files may be open at once (RLIMIT_NOFILE; hard limit {hard}), fewer than the {needed} the HTTP and relay connections may need: past it, new connections wait and delivery cannot connect to the upstream. Raise it: LimitNOFILE=65536 in the systemd unit, or ulimit -n 65536 before starting"
    ))
}

/// The answer on a connection past its address's share: the API's `429`
/// (`Retry-After: 1`), and the connection closes. It is served outside the
/// router, so the headers its middleware would add are set here.
fn too_many_connections() -> Response {
    let mut r = axum::response::IntoResponse::into_response(AppError::TooMany {
        message: "Too many connections from your address at once: close some (reuse one connection for many requests) and try again.".into(),
        retry_after: 1,
        errors: Default::default(),
    });
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// SIGHUP (`systemctl reload mailroom`, a certbot hook, an admin's habit)
/// reads the relay's certificate files again at once; it used to end the
/// server without a word. Options are read only at start, and the log
/// says so.
async fn on_hangup(
    hangups: Option<tokio::signal::unix::Signal>,
    relay: Option<Arc<tokio::sync::Notify>>,
) {
    let Some(mut hangups) = hangups else {
        return;
    };
    while hangups.recv().await.is_some() {
        match &relay {
            Some(now) => {
                tracing::info!("SIGHUP: reading the relay's TLS certificate files again now; other options take effect at a restart");
                now.notify_one();
            }
            None => {
                tracing::info!("SIGHUP: nothing to read again (the relay is off); options take effect at a restart");
            }
        }
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal(
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
) {
    async fn received(signal: Option<tokio::signal::unix::Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! { _ = received(terminate) => {}, _ = received(interrupt) => {} }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::is_hashed_asset;

    #[test]
    fn too_few_open_files_for_the_connections_is_warned_about() {
        let needed = super::files_needed(1024);
        // 1,024 HTTP connections, 64 refusals, the relay's 100 (two
        // handles each), and the rest.
        assert_eq!(needed, 1024 + 64 + 200 + 256);
        assert!(super::files_needed(2048) > needed);
        let w = super::open_files_warning(1024, 1024, needed).unwrap();
        assert!(
            w.contains("only 1024 files") && w.contains("hard limit 1024"),
            "{w}"
        );
        assert!(w.contains(&format!("fewer than the {needed}")), "{w}");
        assert!(
            w.contains("LimitNOFILE=65536") && w.contains("ulimit -n 65536"),
            "{w}"
        );
        assert_eq!(super::open_files_warning(needed, needed, needed), None);
        assert_eq!(super::open_files_warning(524_288, 524_288, needed), None);
    }

    #[test]
    fn plain_http_to_other_machines_is_warned_about() {
        let warn = |listen: &str, url: Option<&str>| {
            super::plain_http_warning(listen.parse().unwrap(), url)
        };
        for quiet in [
            ("127.0.0.1:8080", None),
            ("[::1]:8080", None),
            ("[::ffff:127.0.0.1]:8080", None),
            ("0.0.0.0:8080", Some("https://mail.contoso.com")),
            ("192.0.2.10:8080", Some(" HTTPS://mail.contoso.com/ ")),
        ] {
            assert_eq!(warn(quiet.0, quiet.1), None, "{quiet:?}");
        }
        for loud in [
            ("0.0.0.0:8080", None),
            ("[::]:8080", None),
            ("192.0.2.10:8080", Some("http://mail.contoso.com")),
        ] {
            let w = warn(loud.0, loud.1).unwrap_or_default();
            assert!(
                w.contains(loud.0) && w.contains("in clear") && w.contains("--public-url https://"),
                "{loud:?}: {w}"
            );
        }
    }

    #[tokio::test]
    async fn a_handler_that_panics_answers_the_apis_json_500() {
        use tower::ServiceExt as _;
        async fn boom() -> &'static str {
            panic!("boom at {}", 42)
        }
        let router = super::api_layers(
            axum::Router::new()
                .route("/api/boom", axum::routing::get(boom))
                .route("/api/fine", axum::routing::get(|| async { "fine" })),
        );
        let call = |path: &'static str| {
            let router = router.clone();
            async move {
                let r = router
                    .oneshot(
                        axum::http::Request::get(path)
                            .body(axum::body::Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let status = r.status();
                let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let (status, body) = call("/api/boom").await;
        assert_eq!(status, 500);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["message"].as_str().unwrap().contains("internal error"),
            "{v}"
        );
        assert!(
            !body.contains("boom"),
            "the panic's words stay in the log: {body}"
        );
        // The router goes on serving.
        assert_eq!(
            call("/api/fine").await,
            (axum::http::StatusCode::OK, "fine".into())
        );
    }

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
