//! Helpers shared by the backend's integration tests.
#![allow(dead_code, unused_imports)]

use std::path::Path;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use mailroom_backend::config::{ServeArgs, TestArgs};
use mailroom_backend::server::{app, AppState};
use mailroom_shared::Settings;
use tower::ServiceExt;

pub mod pg;
mod running;
pub mod wire;
pub use running::{
    checking, paused_by_expired_secret, relay_on, relay_rig, saved_rig, saved_rig_clocked,
    saved_rig_with, sending_rig, spawn_saved, start, start_with_clock, wait_for, wait_received,
    Running,
};

pub const TOKEN: &str = "test-admin-token-0123456789";
pub use mailroom_shared::fixtures::{
    billing, mailer, CLIENT, CLIENT_B, SECRET, SECRET_B, TENANT, TENANT_B,
};

/// A self-signed pair for localhost, as a relay certificate: (cert PEM,
/// key PEM), ending at `end` (rcgen's default when `None`).
pub fn localhost_pair(end: Option<time::OffsetDateTime>) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    if let Some(end) = end {
        params.not_after = end;
    }
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// A [`localhost_pair`] written to `cert` and `key`; returns the cert PEM.
pub fn write_localhost_pair(cert: &Path, key: &Path, end: Option<time::OffsetDateTime>) -> String {
    let (pem, private) = localhost_pair(end);
    std::fs::write(cert, &pem).unwrap();
    std::fs::write(key, private).unwrap();
    pem
}

pub fn args(dir: &Path, test: TestArgs) -> ServeArgs {
    ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        database_url: None,
        database_url_file: None,
        trusted_proxies: Vec::new(),
        http_header_timeout: std::time::Duration::from_secs(10),
        http_request_timeout: std::time::Duration::from_secs(60),
        http_write_timeout: std::time::Duration::from_secs(30),
        http_max_connections: 1024,
        http_max_connections_per_ip: 256,
        secret_key_file: None,
        admin_token: Some(TOKEN.into()),
        static_dir: None,
        public_url: None,
        sending: Default::default(),
        relay: mailroom_backend::config::RelayArgs {
            smtp_listen: mailroom_backend::config::SmtpListen::Off,
            ..Default::default()
        },
        test,
    }
}

/// The test options pointing at a loopback rig's Entra and CA.
pub fn test_args(rig: &mailroom_fakes::Loopback) -> TestArgs {
    TestArgs {
        entra_authority: Some(rig.authority()),
        graph_endpoint: Some(rig.graph_endpoint()),
        extra_ca_file: Some(rig.ca_file.clone()),
    }
}

pub async fn router(dir: &Path, test: TestArgs) -> (Router, AppState) {
    let (state, _) = AppState::open(&args(dir, test)).await.unwrap();
    (app(state.clone(), None), state)
}

/// The `Received` field Mailroom writes at the top of a delivered message,
/// up to its date.
pub fn received_of(data: &str) -> &str {
    assert!(data.starts_with("Received: from "), "{data}");
    let end = data.find(";\r\n\t").expect("the field's date");
    &data[..end]
}

/// How many times each key arrived (a subject, a webhook id): what the
/// crash tests read for lost and twice-delivered messages.
#[allow(dead_code)]
pub fn count_each(
    keys: impl IntoIterator<Item = String>,
) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for k in keys {
        *counts.entry(k).or_default() += 1;
    }
    counts
}

/// Valid Office 365 OAuth settings pointing at `host:port`.
pub fn oauth_settings(host: &str, port: u16) -> Settings {
    mailroom_shared::fixtures::office365_oauth(host, port)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: serde_json::Value,
}

pub fn request(method: &str, uri: &str, body: Option<String>, bearer: bool) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    match body {
        Some(body) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

pub async fn call(router: &Router, req: Request<Body>) -> Reply {
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Reply {
        status,
        headers,
        json,
    }
}

pub async fn put(router: &Router, settings: &Settings, version: u64) -> Reply {
    let body = serde_json::json!({"settings": settings, "version": version}).to_string();
    call(router, request("PUT", "/api/settings", Some(body), true)).await
}

pub async fn login(router: &Router, token: &str) -> Reply {
    let body = serde_json::json!({ "token": token }).to_string();
    call(router, request("POST", "/api/login", Some(body), false)).await
}

/// The real binary on port 0 against a loopback rig, delivering at `rate` a
/// minute (`"0"`: no limit), as a supervisor would start it; returns it and its URL.
pub async fn spawn_mailroom(
    rig: &mailroom_fakes::Loopback,
    data: &std::path::Path,
    rate: &str,
) -> (tokio::process::Child, String) {
    let s = spawn_mailroom_with(
        rig,
        data,
        &["--delivery-rate", rate, "--smtp-listen", "off"],
    )
    .await;
    (s.child, s.url)
}

/// Options for a binary whose relay listens (port 0, named `localhost` for
/// its generated certificate) and whose delivery has no rate limit.
pub const WITH_RELAY: &[&str] = &[
    "--delivery-rate",
    "0",
    "--smtp-listen",
    "127.0.0.1:0",
    "--smtp-hostname",
    "localhost",
];

/// A started binary: the process, its URL and its relay's address.
pub struct Spawned {
    pub child: tokio::process::Child,
    pub url: String,
    pub smtp: Option<std::net::SocketAddr>,
}

/// The real binary on port 0 against a loopback rig, with `extra` options.
pub async fn spawn_mailroom_with(
    rig: &mailroom_fakes::Loopback,
    data: &std::path::Path,
    extra: &[&str],
) -> Spawned {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--entra-authority", &rig.authority()])
        .args(["--graph-endpoint", &rig.graph_endpoint()])
        .arg("--extra-ca-file")
        .arg(&rig.ca_file)
        .args(extra)
        .env("MAILROOM_ADMIN_TOKEN", TOKEN)
        .env("MAILROOM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut smtp = None;
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("mailroom exited before listening");
        if let Some(addr) = line.strip_prefix("smtp listening on ") {
            smtp = addr.parse().ok();
        }
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_string();
        }
    };
    Spawned { child, url, smtp }
}

/// Runs `mailroom serve` (port 0, relay off) with `extra` options and this
/// admin token, expecting it to refuse to start: its exit code and stderr.
pub async fn serve_refused(extra: &[&str], admin_token: &str) -> (Option<i32>, String) {
    serve_refused_with_env(extra, admin_token, &[]).await
}

/// [`serve_refused`] with these environment variables set as well.
pub async fn serve_refused_with_env(
    extra: &[&str],
    admin_token: &str,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--smtp-listen", "off"])
        .args(extra)
        .arg("--data-dir")
        .arg(dir.path())
        .env("MAILROOM_ADMIN_TOKEN", admin_token)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("mailroom should refuse to start, not run")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Everything logged on this thread from `start` until it is dropped, at
/// every level. A `#[tokio::test]` runtime has one thread, so a server
/// started in the test logs here too.
#[allow(dead_code)]
pub struct CapturedLog {
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
    /// A second live dispatcher. tracing caches each callsite's interest for
    /// the whole process, and while one dispatcher is registered it asks
    /// only the default of the thread that reaches the callsite first: a
    /// test on another thread, with no subscriber, cached `never`, and the
    /// event was lost here too (tracing-core 0.1 `Rebuilder::JustOne`).
    /// With two, every live one is asked.
    _anchor: tracing::Dispatch,
}

#[allow(dead_code)]
impl CapturedLog {
    pub fn start() -> CapturedLog {
        use tracing_subscriber::layer::SubscriberExt;
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = LogSink(bytes.clone());
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || sink.clone())
                .with_ansi(false),
        );
        let _anchor = tracing::Dispatch::new(tracing_subscriber::registry());
        let _guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        CapturedLog {
            bytes,
            _guard,
            _anchor,
        }
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

#[derive(Clone)]
struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A loopback port that nothing listens on, held for the test: bound but not
/// listening, so a connection to it is refused, and no other test (nor a
/// server a test starts on port 0) is handed it meanwhile. A port that was
/// only bound and dropped could be, and then a test that expected "refused"
/// reached a stranger's listener.
pub struct ClosedPort {
    socket: socket2::Socket,
    /// The port.
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&loopback.into()).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        ClosedPort { socket, port }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts listening at the port: the service "comes back" there.
    pub fn listen(self) -> tokio::net::TcpListener {
        self.socket.listen(128).unwrap();
        self.socket.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(self.socket.into()).unwrap()
    }
}
