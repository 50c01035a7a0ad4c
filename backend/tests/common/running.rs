//! A real server in this process, started on port 0 against the loopback
//! rig, with a real HTTP client: the delivery and relay tests drive it.

use std::time::{Duration, Instant};

use mailroom_backend::config::ServeArgs;
use mailroom_backend::server::Server;
use mailroom_fakes::Loopback;
use mailroom_shared::Settings;
use serde_json::{json, Value};

use super::{args, test_args, TOKEN};

/// A server started in this process on port 0 (HTTP, and SMTP when asked).
pub struct Running {
    pub url: String,
    pub http: reqwest::Client,
    /// The relay's address, when it runs.
    pub smtp: Option<std::net::SocketAddr>,
    /// The relay's implicit TLS address, when it runs (`--smtps-listen`).
    pub smtps: Option<std::net::SocketAddr>,
    /// The data dir (the relay's generated certificate is here).
    pub data: std::path::PathBuf,
    pub _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(rig: &Loopback, tweak: impl FnOnce(&mut ServeArgs)) -> Running {
    start_with_clock(
        rig,
        tweak,
        std::sync::Arc::new(mailroom_backend::clock::SystemClock),
    )
    .await
}

/// [`start`] with another clock.
pub async fn start_with_clock(
    rig: &Loopback,
    tweak: impl FnOnce(&mut ServeArgs),
    clock: std::sync::Arc<dyn mailroom_backend::clock::Clock>,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path(), test_args(rig));
    a.sending.delivery_rate = Some(0);
    tweak(&mut a);
    let server = Server::bind_with_clock(&a, clock).await.unwrap();
    let url = format!("http://{}", server.addr);
    let (smtp, smtps) = (server.smtp_addr, server.smtps_addr);
    let data = a.data_dir.clone();
    let task = tokio::spawn(async move {
        let _ = server.run().await;
    });
    Running {
        url,
        http: reqwest::Client::new(),
        smtp,
        smtps,
        data,
        _dir: dir,
        task,
    }
}

impl Running {
    /// A client for a server that runs elsewhere (the real binary) at `url`.
    pub fn client(url: String) -> Running {
        let dir = tempfile::tempdir().unwrap();
        Running {
            url,
            http: reqwest::Client::new(),
            smtp: None,
            smtps: None,
            data: dir.path().to_path_buf(),
            _dir: dir,
            task: tokio::spawn(async {}),
        }
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The status of `method path` sent with `key` (an app's) instead of
    /// the admin token: an admin route must refuse it.
    pub async fn status_with_key(&self, method: reqwest::Method, path: &str, key: &str) -> u16 {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `GET path` as the admin, for an answer that is not JSON: its
    /// status, the value of `header` ("" without it) and its text.
    pub async fn admin_text(&self, path: &str, header: &str) -> (u16, String, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let value = r
            .headers()
            .get(header)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, value, r.text().await.unwrap())
    }

    pub async fn save(&self, settings: &Settings) {
        let (_, current) = self
            .admin(reqwest::Method::GET, "/api/settings", None)
            .await;
        let version = current["version"].as_u64().unwrap();
        let (status, body) = self
            .admin(
                reqwest::Method::PUT,
                "/api/settings",
                Some(json!({"settings": settings, "version": version})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn new_app(&self, body: Value) -> (String, String) {
        let (status, created) = self
            .admin(reqwest::Method::POST, "/api/apps", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        (
            created["app"]["id"].as_str().unwrap().to_string(),
            created["key"].as_str().unwrap().to_string(),
        )
    }

    /// Subscribes a webhook (`{"url", "events", "format"}`); answers the
    /// `201`'s body, with its secret.
    pub async fn add_webhook(&self, body: Value) -> Value {
        let (status, created) = self
            .admin(reqwest::Method::POST, "/api/webhooks", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        created
    }

    pub async fn submit(&self, key: &str, body: &Value) -> (u16, Value) {
        self.post_message(
            key,
            "",
            "application/json",
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// `POST /api/messages{query}` with a whole message (`message/rfc822`).
    #[allow(dead_code)]
    pub async fn submit_raw(
        &self,
        key: &str,
        query: &str,
        raw: impl Into<Vec<u8>>,
    ) -> (u16, Value) {
        self.post_message(key, query, "message/rfc822", raw.into())
            .await
    }

    /// POSTs `body` to `/api/messages` with this `Content-Type`.
    pub async fn post_message(
        &self,
        key: &str,
        query: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let (status, _, answer) = self
            .post_bytes(
                &format!("/api/messages{query}"),
                key,
                &[("content-type", content_type)],
                body,
            )
            .await;
        (status, answer)
    }

    /// POSTs `body` as it is to `path` with the bearer token `bearer` and
    /// these headers: the status, the answer's headers and its JSON.
    pub async fn post_bytes(
        &self,
        path: &str,
        bearer: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(bearer);
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        let resp = r.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn message(&self, id: &str) -> Value {
        self.admin(reqwest::Method::GET, &format!("/api/messages/{id}"), None)
            .await
            .1
    }

    /// `POST /api/messages/{id}/retry`, which must answer `200`; the summary.
    #[allow(dead_code)]
    pub async fn retry(&self, id: &str) -> Value {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/messages/{id}/retry"),
                None,
            )
            .await;
        assert_eq!(status, 200, "retry {id}: {body}");
        body
    }

    /// Waits until the message has this status.
    pub async fn wait_status(&self, id: &str, want: &str) -> Value {
        let started = Instant::now();
        loop {
            let m = self.message(id).await;
            if m["status"] == want {
                return m;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{id} is not {want}: {m}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn queue(&self) -> Value {
        self.admin(reqwest::Method::GET, "/api/queue", None).await.1
    }

    /// Waits until delivery is paused and `queued` messages wait (none in flight).
    /// Waits until the default profile's pause has ended.
    #[allow(dead_code)]
    pub async fn wait_unpaused(&self) {
        let started = Instant::now();
        loop {
            let q = self.queue().await;
            if q["paused"].is_null() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the pause never ended: {q}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_paused(&self, queued: u64) -> Value {
        let started = Instant::now();
        loop {
            let q = self.queue().await;
            if !q["paused"].is_null() && q["counts"]["queued"] == queued {
                return q;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never paused: {q}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A server against a fresh rig, with settings saved for its fake upstream.
pub async fn saved_rig(tweak: impl FnOnce(&mut ServeArgs)) -> (Loopback, Running) {
    saved_rig_with(mailroom_fakes::SmtpConfig::default(), tweak).await
}

/// [`saved_rig`] with a fake upstream that behaves as `config` says.
pub async fn saved_rig_with(
    config: mailroom_fakes::SmtpConfig,
    tweak: impl FnOnce(&mut ServeArgs),
) -> (Loopback, Running) {
    let clock = std::sync::Arc::new(mailroom_backend::clock::SystemClock);
    saved_rig_clocked(config, tweak, clock).await
}

/// [`saved_rig_with`] on another clock.
pub async fn saved_rig_clocked(
    config: mailroom_fakes::SmtpConfig,
    tweak: impl FnOnce(&mut ServeArgs),
    clock: std::sync::Arc<dyn mailroom_backend::clock::Clock>,
) -> (Loopback, Running) {
    let rig = Loopback::start(config).await;
    let server = start_with_clock(&rig, tweak, clock).await;
    server
        .save(&super::oauth_settings("localhost", rig.smtp.port()))
        .await;
    (rig, server)
}

/// The real binary on `data` (delivering at `rate` a minute), with settings
/// saved for the rig's fake upstream: the process and a client for it.
#[allow(dead_code)]
pub async fn spawn_saved(
    rig: &Loopback,
    data: &std::path::Path,
    rate: &str,
) -> (tokio::process::Child, Running) {
    let (child, url) = super::spawn_mailroom(rig, data, rate).await;
    let server = Running::client(url);
    server
        .save(&super::oauth_settings("localhost", rig.smtp.port()))
        .await;
    (child, server)
}

/// [`saved_rig`] with the relay on port 0, named `localhost`.
#[allow(dead_code)]
pub async fn relay_rig(tweak: impl FnOnce(&mut ServeArgs)) -> (Loopback, Running) {
    saved_rig(|a| {
        relay_on(a);
        tweak(a);
    })
    .await
}

/// The relay on port 0, named `localhost` (for its generated certificate).
pub fn relay_on(a: &mut ServeArgs) {
    a.relay.smtp_listen = mailroom_backend::config::SmtpListen::On("127.0.0.1:0".parse().unwrap());
    a.relay.smtp_hostname = Some("localhost".into());
}

/// Idle profiles sign in every second (`--sign-in-check`'s test form); a
/// paused one, or one counting failures before a pause, each 700 ms. The
/// tests that watch a failure not pause act between two checks: 700 ms
/// leaves a loaded CI machine room to do so.
#[allow(dead_code)]
pub fn checking(a: &mut ServeArgs) {
    a.sending.sign_in_check_for_tests = Some(Duration::from_secs(1));
    a.sending.pause_retry = Duration::from_millis(700);
}

/// Waits (20 s at most) until `done` holds, saying `what` did not happen.
#[allow(dead_code)]
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`saved_rig`] with an app: the rig, the server and the app's key.
pub async fn sending_rig() -> (Loopback, Running, String) {
    let (rig, server) = saved_rig(|_| {}).await;
    let (_, key) = server.new_app(json!({"name": "Scanner"})).await;
    (rig, server, key)
}

/// Entra refuses the secret as expired (`AADSTS7000222`); one message is
/// submitted and delivery pauses. Answers `GET /api/queue`.
#[allow(dead_code)]
pub async fn paused_by_expired_secret(rig: &Loopback, server: &Running, key: &str) -> Value {
    rig.entra.set_mode(mailroom_fakes::EntraMode::Error {
        status: 401,
        error: "invalid_client",
        code: 7000222,
    });
    rig.entra.revoke_all();
    let (status, _) = server
        .submit(
            key,
            &json!({"to": [mailroom_fakes::addr("a", "example.org")], "subject": "s", "text": "x"}),
        )
        .await;
    assert_eq!(status, 202);
    server.wait_paused(1).await
}

/// Waits until the fake upstream has `n` messages.
pub async fn wait_received(rig: &Loopback, n: usize) {
    let started = Instant::now();
    while rig.smtp.messages().len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} of {n} messages arrived",
            rig.smtp.messages().len()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}
