//! Several real `mailroom` processes on one PostgreSQL (docs/API.md §10):
//! one queue, shared sessions and settings, leases that outlive a dead
//! server, clear start errors, and a database that goes away and returns.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::{base_url, PgSchema};
use common::*;
use mailroom_fakes::{addr, Loopback, SmtpConfig};
use serde_json::json;

/// Two servers' shared parts: the database schema and the key file.
struct Shared {
    schema: PgSchema,
    dir: tempfile::TempDir,
}

impl Shared {
    async fn new() -> Shared {
        Shared {
            schema: PgSchema::new().await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Servers A and B with no rate limit, clients of both, and settings
    /// for the rig saved on A.
    async fn two_saved(&self, rig: &Loopback) -> (Spawned, Spawned, Running, Running) {
        let a = self.server(rig, "a", &["--delivery-rate", "0"]).await;
        let b = self.server(rig, "b", &["--delivery-rate", "0"]).await;
        let (ca, cb) = (
            Running::client(a.url.clone()),
            Running::client(b.url.clone()),
        );
        ca.save(&oauth_settings("localhost", rig.smtp.port())).await;
        (a, b, ca, cb)
    }

    /// A server on this database, with its own data dir and the shared key.
    async fn server(&self, rig: &Loopback, name: &str, extra: &[&str]) -> Spawned {
        let key = self.dir.path().join("secret.key");
        let mut args = vec![
            "--database-url",
            &self.schema.url,
            "--secret-key-file",
            key.to_str().unwrap(),
            "--smtp-listen",
            "off",
        ];
        args.extend_from_slice(extra);
        spawn_mailroom_with(rig, &self.dir.path().join(name), &args).await
    }
}

fn subjects(rig: &Loopback) -> Vec<String> {
    rig.smtp
        .messages()
        .iter()
        .filter_map(|m| m.subject().map(str::to_string))
        .collect()
}

async fn wait_subjects(rig: &Loopback, n: usize, within: Duration) -> Vec<String> {
    let started = Instant::now();
    loop {
        let mut got = subjects(rig);
        got.sort();
        got.dedup();
        if got.len() >= n {
            return got;
        }
        assert!(
            started.elapsed() < within,
            "{} of {n} distinct messages arrived",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn submit_all(urls: &[String], key: &str, n: usize, prefix: &str) {
    let clients = 8;
    let tasks = (0..clients).map(|c| {
        let (urls, key, prefix) = (urls.to_vec(), key.to_string(), prefix.to_string());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in (c..n).step_by(clients) {
                let url = &urls[i % urls.len()];
                let body = json!({"to": [addr("ops", "example.org")], "subject": format!("{prefix}{i:04}"), "text": "hello"});
                let r = http
                    .post(format!("{url}/api/messages"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
            }
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_queue_and_deliver_each_message_once() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let shared = Shared::new().await;
    let (a, b, ca, cb) = shared.two_saved(&rig).await;
    // The app made on A is known to B.
    let (_, key) = ca.new_app(json!({"name": "Both"})).await;
    submit_all(&[a.url.clone(), b.url.clone()], &key, 1000, "m").await;
    let got = wait_subjects(&rig, 1000, Duration::from_secs(120)).await;
    assert_eq!(got.len(), 1000);
    // Exactly once: no subject twice.
    assert_eq!(subjects(&rig).len(), 1000, "a message went out twice");
    // The last record commits just after the upstream took the message.
    let started = Instant::now();
    loop {
        let q = cb.queue().await;
        if q["counts"]["sent"] == 1000 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{q}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_one_server_works_on_the_other() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let shared = Shared::new().await;
    let a = shared.server(&rig, "a", &[]).await;
    let b = shared.server(&rig, "b", &[]).await;
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{}/api/login", a.url))
        .json(&json!({ "token": TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 204);
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("mailroom_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    let on_b = http
        .get(format!("{}/api/settings", b.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(on_b.status(), 200, "{}", on_b.text().await.unwrap());
    // Signing out on B ends it on A too.
    let out = http
        .post(format!("{}/api/logout", b.url))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let on_a = http
        .get(format!("{}/api/settings", a.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(on_a.status(), 401);
    // Wrong admin tokens count on every server: five across both lock both.
    for (i, url) in [&a.url, &b.url, &a.url, &b.url, &a.url].iter().enumerate() {
        let r = http
            .get(format!("{url}/api/settings"))
            .bearer_auth(format!("wrong-token-{i}-0123456789abcdef"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {i}");
    }
    for url in [&a.url, &b.url] {
        let r = http
            .get(format!("{url}/api/settings"))
            .bearer_auth("wrong-token-again-0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "the next guess is slowed on {url}");
        let r = http
            .get(format!("{url}/api/settings"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the right token still works on {url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_save_on_one_server_wakes_delivery_on_the_other() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let shared = Shared::new().await;
    // A only takes mail; B delivers, and would retry a pause only after a minute.
    let a = shared
        .server(&rig, "a", &["--delivery-connections", "0"])
        .await;
    let b = shared.server(&rig, "b", &["--delivery-rate", "0"]).await;
    let (ca, cb) = (
        Running::client(a.url.clone()),
        Running::client(b.url.clone()),
    );
    let closed = common::ClosedPort::new();
    let closed_port = closed.port;
    ca.save(&oauth_settings("localhost", closed_port)).await;
    let (_, key) = ca.new_app(json!({"name": "Wake"})).await;
    submit_all(std::slice::from_ref(&a.url), &key, 3, "w").await;
    let q = cb.wait_paused(3).await;
    assert_eq!(q["paused"]["stage"], "connect", "{q}");
    let saved = Instant::now();
    ca.save(&oauth_settings("localhost", rig.smtp.port())).await;
    wait_subjects(&rig, 3, Duration::from_secs(20)).await;
    assert!(
        saved.elapsed() < Duration::from_secs(30),
        "B woke on the save, not on its once-a-minute retry"
    );
    assert!(cb.queue().await["paused"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_delivery_loses_its_lease_and_the_other_delivers() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let shared = Shared::new().await;
    // A sends two a second, so it always holds claimed messages.
    let mut a = shared
        .server(
            &rig,
            "a",
            &["--delivery-rate", "120", "--delivery-lease", "2s"],
        )
        .await;
    let ca = Running::client(a.url.clone());
    ca.save(&oauth_settings("localhost", rig.smtp.port())).await;
    let (_, key) = ca.new_app(json!({"name": "Lease"})).await;
    submit_all(std::slice::from_ref(&a.url), &key, 20, "l").await;
    wait_subjects(&rig, 2, Duration::from_secs(20)).await;
    a.child.start_kill().unwrap();
    a.child.wait().await.unwrap();
    let (client, connection) = tokio_postgres::connect(&shared.schema.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let held: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM messages WHERE status = 'sending'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(held >= 1, "A held no claimed messages when it died");
    let _b = shared
        .server(
            &rig,
            "b",
            &["--delivery-rate", "0", "--delivery-lease", "2s"],
        )
        .await;
    let got = wait_subjects(&rig, 20, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 20, "every message, A's claimed ones too");
    let twice = subjects(&rig).len() - 20;
    assert!(
        twice <= 3,
        "only messages mid-DATA at the kill may repeat: {twice}"
    );
}

/// The exit code and stderr of `mailroom serve` with this database URL.
async fn start_error(url: &str) -> (Option<i32>, String) {
    serve_refused(&["--database-url", url], TOKEN).await
}

#[tokio::test]
async fn a_bad_database_url_gives_a_clear_message_and_78() {
    let config: tokio_postgres::Config = base_url().parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    // A wrong password (this role must give one).
    let url = format!(
        "postgres://mailroom_pw_check:wrong-password@127.0.0.1:{port}/test?sslmode=disable"
    );
    let (code, err) = start_error(&url).await;
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        err.contains(&format!(
            "host 127.0.0.1, port {port}, database test, user mailroom_pw_check"
        )),
        "names the database from the parsed URL: {err}"
    );
    assert!(!err.contains("wrong-password"), "never the password: {err}");
    // A password holding the URL's own separators, typed as is, and libpq's
    // key=value form: the password never shows.
    for url in [
        format!("postgres://mailroom_pw_check:se/cr?et@127.0.0.1:{port}/test"),
        format!("postgres://mailroom_pw_check:p@ss-word@127.0.0.1:{port}/test"),
        format!("host=127.0.0.1 port={port} user=mailroom_pw_check password=kv-secret-pw dbname=test sslmode=disable"),
    ] {
        let (code, err) = start_error(&url).await;
        assert_eq!(code, Some(78), "{err}");
        for secret in ["se/cr", "cr?et", "p@ss", "ss-word", "kv-secret-pw"] {
            assert!(!err.contains(secret), "{secret} printed for {url}: {err}");
        }
    }
    // --database-url-file: only a file its owner alone may read.
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db-url");
        std::fs::write(
            &file,
            format!(
                "postgres://mailroom_pw_check:file-pw-123@127.0.0.1:{port}/test?sslmode=disable\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = file.to_str().unwrap();
        let (code, err) = serve_refused(&["--database-url-file", path], TOKEN).await;
        assert_eq!(code, Some(78), "{err}");
        assert!(
            err.contains("chmod 600") && !err.contains("file-pw-123"),
            "{err}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (code, err) = serve_refused(&["--database-url-file", path], TOKEN).await;
        assert_eq!(code, Some(78), "{err}");
        assert!(
            err.contains("password authentication failed")
                && err.contains("user mailroom_pw_check")
                && !err.contains("file-pw-123"),
            "read from the file: {err}"
        );
    }
    // Nothing listening.
    let closed = common::ClosedPort::new();
    let closed_port = closed.port;
    let (code, err) = start_error(&format!(
        "postgres://postgres:pw@127.0.0.1:{closed_port}/test"
    ))
    .await;
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("cannot connect")
            && err.contains(&format!("host 127.0.0.1, port {closed_port}")),
        "{err}"
    );
    // No such database.
    let (code, err) = start_error(&format!(
        "postgres://postgres@127.0.0.1:{port}/no_such_db?sslmode=disable"
    ))
    .await;
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("no_such_db") && err.contains("does not exist"),
        "{err}"
    );
    // TLS required, and the server's certificate not trusted: the fix is named.
    let (code, err) = start_error(&format!(
        "postgres://postgres@127.0.0.1:{port}/test?sslmode=require"
    ))
    .await;
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("--extra-ca-file") && err.contains("sslmode=disable"),
        "{err}"
    );
}

/// A TCP proxy to PostgreSQL that can be cut (every connection dropped,
/// nothing accepted) and restored on the same port.
struct Cut {
    port: u16,
    upstream: (String, u16),
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Cut {
    async fn start(upstream: (String, u16)) -> Cut {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cut = Cut {
            port,
            upstream,
            tasks: Arc::default(),
        };
        cut.restore().await;
        cut
    }

    async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (tasks, upstream) = (self.tasks.clone(), self.upstream.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut up) =
                        tokio::net::TcpStream::connect((upstream.0.as_str(), upstream.1)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut up).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_database_gives_503_and_4_3_0_and_nothing_acknowledged_is_lost() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let schema = PgSchema::new().await;
    let config: tokio_postgres::Config = base_url().parse().unwrap();
    let upstream = (
        "127.0.0.1".to_string(),
        config.get_ports().first().copied().unwrap_or(5432),
    );
    let proxy = Cut::start(upstream).await;
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or("test");
    let url = format!(
        "postgres://{user}@127.0.0.1:{}/{db}?sslmode=disable&options=-c%20search_path%3D{}",
        proxy.port, schema.name
    );
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_mailroom_with(
        &rig,
        &dir.path().join("data"),
        &[
            "--database-url",
            &url,
            "--delivery-connections",
            "0",
            "--smtp-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let c = Running::client(server.url.clone());
    c.save(&oauth_settings("localhost", rig.smtp.port())).await;
    let (app, key) = c.new_app(json!({"name": "Survivor"})).await;
    let mail = json!({"to": [addr("ops", "example.org")], "subject": "before", "text": "x"});
    assert_eq!(c.submit(&key, &mail).await.0, 202);

    proxy.cut();
    let (status, body) = c
        .submit(
            &key,
            &json!({"to": [addr("ops", "example.org")], "subject": "during", "text": "x"}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("database"),
        "{body}"
    );
    // The relay says try again later, with 4.3.0.
    let smtp = server.smtp.unwrap();
    let (mut w, greeting) = common::wire::Wire::connect(smtp).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    w.command("EHLO t").await;
    let r = w.auth_plain(&app, &key).await;
    assert!(r.starts_with("454 4.3.0"), "{r}");

    proxy.restore().await;
    let started = Instant::now();
    loop {
        let (status, _) = c
            .submit(
                &key,
                &json!({"to": [addr("ops", "example.org")], "subject": "after", "text": "x"}),
            )
            .await;
        if status == 202 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never recovered: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let list = c
        .admin(reqwest::Method::GET, "/api/messages?limit=50", None)
        .await
        .1;
    let subjects: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.contains(&"before") && subjects.contains(&"after"),
        "{subjects:?}"
    );
    assert!(
        !subjects.contains(&"during"),
        "a 503 stored nothing: {subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_a_profiles_daily_recipients() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let shared = Shared::new().await;
    let (a, b, ca, cb) = shared.two_saved(&rig).await;
    let (s, p) = ca
        .admin(
            reqwest::Method::PATCH,
            "/api/profiles/default",
            Some(json!({"limits": {"recipients_per_day": 5}})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let (_, key) = ca.new_app(json!({"name": "Both"})).await;
    submit_all(&[a.url.clone(), b.url.clone()], &key, 12, "q").await;
    // Both servers deliver, and together they send five: the rest wait.
    let started = Instant::now();
    loop {
        let q = cb.queue().await;
        if q["counts"]["sent"] == 5 && q["counts"]["deferred"] == 7 {
            assert_eq!(q["profiles"][0]["usage"]["recipients_today"], 5, "{q}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{q}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        subjects(&rig).len(),
        5,
        "no server sent past the shared limit"
    );
    let (_, waiting) = cb
        .admin(reqwest::Method::GET, "/api/messages?status=deferred", None)
        .await;
    for m in waiting["messages"].as_array().unwrap() {
        assert_eq!(m["last_error"]["code"], "quota", "{m}");
        assert_eq!(m["attempt_count"], 0, "{m}");
    }
}

/// Messages this server has sent, from its own `/metrics`.
async fn sent_by(server: &Running) -> u64 {
    server
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("mailroom_messages_sent_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A profile's connections and pace hold for both servers together
/// (docs/API.md §15), however many of them have messages to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_a_profiles_connections_and_pace() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let shared = Shared::new().await;
    let (a, b, ca, cb) = shared.two_saved(&rig).await;
    let (_, key) = ca.new_app(json!({"name": "Both"})).await;
    let limits = |limits: serde_json::Value| {
        let ca = &ca;
        async move {
            let (s, p) = ca
                .admin(
                    reqwest::Method::PATCH,
                    "/api/profiles/default",
                    Some(json!({"limits": limits})),
                )
                .await;
            assert_eq!(s, 200, "{p}");
            // Both servers restart the profile's engine with the new limits.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let urls = [a.url.clone(), b.url.clone()];

    // One connection for both: each message takes 300 ms upstream and each
    // server claims one at a time (a pace), so both would connect at once
    // if each counted only its own.
    rig.smtp
        .configure(|c| c.data_delay = Duration::from_millis(300));
    limits(json!({"connections": 1, "messages_per_minute": 600})).await;
    submit_all(&urls, &key, 6, "c").await;
    wait_subjects(&rig, 6, Duration::from_secs(30)).await;
    assert_eq!(
        rig.smtp.peak_connections(),
        1,
        "one connection upstream for both servers together"
    );

    // Two connections and 120 a minute for both: whichever servers hold the
    // connections, eight messages take at least 7 × 500 ms (two servers at
    // 120 a minute each would take about half as long). That the pace's slot
    // is one for all servers is the store suite's
    // `the_delivery_slot_is_shared_where_servers_share_a_store`.
    rig.smtp.configure(|c| c.data_delay = Duration::ZERO);
    limits(json!({"connections": 2, "messages_per_minute": 120})).await;
    let before = (sent_by(&ca).await, sent_by(&cb).await);
    submit_all(&urls, &key, 8, "p").await;
    wait_subjects(&rig, 14, Duration::from_secs(30)).await;
    let at = rig.smtp.accepted_at();
    let span = at[at.len() - 1] - at[at.len() - 8];
    assert!(
        span >= Duration::from_millis(3_150),
        "eight messages at 120 a minute for both servers together took only {span:?}"
    );
    let after = (sent_by(&ca).await, sent_by(&cb).await);
    assert_eq!(
        after.0 + after.1 - before.0 - before.1,
        8,
        "sent by A and B: {before:?} then {after:?}"
    );
}

/// Graph's `Retry-After` is for the app and mailbox, not for one server: the
/// server that got the `429` holds the profile's shared pace in the
/// database, where every server takes its slots
/// (`the_delivery_slot_is_shared_where_servers_share_a_store` shows the
/// other server waiting for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_retry_after_holds_the_profiles_shared_pace() {
    use mailroom_fakes::GraphError;
    let rig = Loopback::start(SmtpConfig::default()).await;
    let shared = Shared::new().await;
    let a = shared.server(&rig, "a", &["--delivery-rate", "600"]).await;
    let ca = Running::client(a.url.clone());
    let mut settings = oauth_settings("", 0);
    settings.transport = mailroom_shared::Transport::Graph;
    ca.save(&settings).await;
    let (_, key) = ca.new_app(json!({"name": "Held"})).await;
    rig.graph.fail_next(GraphError::throttled(30));
    let asked = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    submit_all(std::slice::from_ref(&a.url), &key, 1, "h").await;
    let (client, connection) = tokio_postgres::connect(&shared.schema.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let started = Instant::now();
    loop {
        let next: Option<i64> = client
            .query_opt(
                "SELECT next_slot_ms FROM profile_rate WHERE profile = 'default'",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        if rig.graph.requests() == 1 && next.is_some_and(|n| n >= asked + 29_000) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the shared pace was not held for the Retry-After: next slot {next:?}, asked at {asked}, {} requests",
            rig.graph.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
