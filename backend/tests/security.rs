//! The security rules (docs/API.md §2 and §3): secrets bound to their
//! destination, request rules, and hostile SMTP or token servers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use common::*;
use mailroom_backend::config::TestArgs;
use mailroom_backend::crypto::Secret;
use mailroom_backend::upstream::entra::{TokenClient, TokenRequest};
use mailroom_backend::upstream::Upstream;
use mailroom_fakes::{addr, EntraMode, Loopback, SmtpConfig};
use mailroom_shared::api::Stage;
use mailroom_shared::{AuthMethod, Settings};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AGAIN_PASSWORD: &str =
    "Enter the password again: a stored secret is only sent to the server it was saved for.";
const AGAIN_SECRET: &str =
    "Enter the client secret again: a stored secret is only sent to the server it was saved for.";
const PASSWORD: &str = "app-password-4711";

fn recipient() -> String {
    addr("admin", "contoso.com")
}

/// Office 365 with an app password against the rig's SMTP server.
fn password_settings(host: &str, port: u16) -> Settings {
    Settings {
        auth_method: AuthMethod::Password,
        client_secret: None,
        tenant_id: None,
        client_id: None,
        password: Some(PASSWORD.into()),
        ..oauth_settings(host, port)
    }
}

fn test_body(settings: &Settings) -> String {
    serde_json::json!({"settings": settings, "recipient": recipient()}).to_string()
}

async fn password_rig() -> Loopback {
    let mut config = SmtpConfig::default();
    config.passwords.insert(mailer(), PASSWORD.into());
    Loopback::start(config).await
}

#[tokio::test]
async fn a_stored_password_only_goes_to_the_server_it_was_saved_for() {
    let rig = password_rig().await;
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), test_args(&rig)).await;
    let port = rig.smtp.port();
    assert_eq!(
        put(&router, &password_settings("localhost", port), 0)
            .await
            .status,
        StatusCode::OK
    );

    // Same destination, secret left out: the stored one is used and works.
    let mut same = password_settings("localhost", port);
    same.password = None;
    let r = call(
        &router,
        request("POST", "/api/settings/test", Some(test_body(&same)), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.json["ok"], true, "{:?}", r.json);
    let attempts = rig.smtp.auth_attempts().len();

    // Another host (even the same machine by another name), port or username: 422.
    let mut moved: Vec<Settings> = Vec::new();
    let changes: [fn(&mut Settings); 4] = [
        |s| s.host = "127.0.0.1".into(),
        |s| s.port += 1,
        |s| s.username = Some(addr("other", "contoso.com")),
        |s| s.security = mailroom_shared::Security::Tls,
    ];
    for change in changes {
        let mut s = same.clone();
        change(&mut s);
        moved.push(s);
    }
    for s in &moved {
        let r = call(
            &router,
            request("POST", "/api/settings/test", Some(test_body(s)), true),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.json);
        assert_eq!(
            r.json["errors"]["password"][0], AGAIN_PASSWORD,
            "{:?}",
            r.json
        );
        let r = put(&router, s, 1).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.json);
        assert_eq!(r.json["errors"]["password"][0], AGAIN_PASSWORD);
    }
    assert_eq!(
        rig.smtp.auth_attempts().len(),
        attempts,
        "nothing was sent anywhere"
    );

    // Typed again, the new destination is fine.
    let mut retyped = moved[0].clone();
    retyped.password = Some(PASSWORD.into());
    let r = call(
        &router,
        request(
            "POST",
            "/api/settings/test",
            Some(test_body(&retyped)),
            true,
        ),
    )
    .await;
    assert_eq!(r.json["ok"], true, "{:?}", r.json);
}

#[tokio::test]
async fn a_stored_client_secret_is_bound_to_tenant_and_client_too() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), test_args(&rig)).await;
    let saved = oauth_settings("localhost", rig.smtp.port());
    assert_eq!(put(&router, &saved, 0).await.status, StatusCode::OK);
    let mut other = saved.clone();
    other.client_secret = None;
    other.tenant_id = Some("11111111-2222-4333-8444-555555555555".into());
    let before = rig.entra.requests();
    let r = call(
        &router,
        request("POST", "/api/settings/test", Some(test_body(&other)), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["errors"]["client_secret"][0], AGAIN_SECRET);
    assert_eq!(
        rig.entra.requests(),
        before,
        "no token request with the stored secret"
    );
}

#[tokio::test]
async fn changing_the_auth_method_deletes_the_unused_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let oauth = oauth_settings("smtp.office365.com", 587);
    assert_eq!(put(&router, &oauth, 0).await.status, StatusCode::OK);
    let legacy = password_settings("smtp.office365.com", 587);
    assert_eq!(put(&router, &legacy, 1).await.status, StatusCode::OK);
    let got = call(&router, request("GET", "/api/settings", None, true)).await;
    assert_eq!(
        got.json["settings"]["client_secret_set"], false,
        "{:?}",
        got.json
    );
    assert_eq!(got.json["settings"]["password_set"], true);
    let history = mailroom_backend::store::SettingsStore::history(
        &mailroom_backend::store::SqliteStore::open(&dir.path().join("mailroom.db")).unwrap(),
        "default",
    )
    .await
    .unwrap();
    assert!(history[0]
        .changed_fields
        .contains(&"client_secret".to_string()));
    // And back: the password goes, and OAuth needs its secret typed again.
    let mut back = oauth.clone();
    back.client_secret = None;
    let r = put(&router, &back, 2).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(put(&router, &oauth, 2).await.status.is_success());
    let got = call(&router, request("GET", "/api/settings", None, true)).await;
    assert_eq!(got.json["settings"]["password_set"], false);
}

#[tokio::test]
async fn bodies_that_are_not_json_get_415() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let body = test_body(&oauth_settings("smtp.office365.com", 587));
    for (uri, method) in [
        ("/api/settings/test", "POST"),
        ("/api/settings", "PUT"),
        ("/api/login", "POST"),
    ] {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let mut req = request(method, uri, Some(body.clone()), true);
            match content_type {
                Some(ct) => req
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, ct.parse().unwrap()),
                None => req.headers_mut().remove(header::CONTENT_TYPE),
            };
            let r = call(&router, req).await;
            assert_eq!(
                r.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{method} {uri} {content_type:?}"
            );
            assert!(r.json["message"]
                .as_str()
                .unwrap()
                .contains("application/json"));
        }
    }
    let mut charset = request(
        "POST",
        "/api/login",
        Some(format!(r#"{{"token":"{TOKEN}"}}"#)),
        false,
    );
    charset.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json; charset=utf-8".parse().unwrap(),
    );
    assert_eq!(call(&router, charset).await.status, StatusCode::NO_CONTENT);
}

async fn session_cookie(router: &axum::Router) -> String {
    let r = login(router, TOKEN).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    cookie.split(';').next().unwrap().to_string()
}

fn cookie_put(
    cookie: &str,
    headers: &[(&'static str, &str)],
) -> axum::http::Request<axum::body::Body> {
    let body =
        serde_json::json!({"settings": oauth_settings("smtp.office365.com", 587), "version": 0});
    let mut req = request("PUT", "/api/settings", Some(body.to_string()), false);
    req.headers_mut()
        .insert(header::COOKIE, cookie.parse().unwrap());
    req.headers_mut()
        .insert(header::HOST, "mail.contoso.test:8080".parse().unwrap());
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    req
}

#[tokio::test]
async fn cookie_requests_must_come_from_the_same_origin() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let cookie = session_cookie(&router).await;
    for headers in [
        vec![],
        vec![("origin", "http://evil.example:8080")],
        vec![("origin", "http://mail.contoso.test:8081")],
        vec![("origin", "https://mail.contoso.test:8080")],
        vec![("origin", "null")],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", "http://sub.mail.contoso.test:8080"),
        ],
    ] {
        let r = call(&router, cookie_put(&cookie, &headers)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(r.json["message"].as_str().unwrap().contains("another site"));
    }
    let same = call(
        &router,
        cookie_put(&cookie, &[("origin", "http://mail.contoso.test:8080")]),
    )
    .await;
    assert_eq!(same.status, StatusCode::OK, "{:?}", same.json);
    let fetch = call(
        &router,
        cookie_put(&cookie, &[("sec-fetch-site", "same-origin")]),
    )
    .await;
    assert_eq!(
        fetch.status,
        StatusCode::CONFLICT,
        "allowed through to the version check"
    );
    // Reading with the cookie needs no origin; bearer requests are exempt.
    let mut get = request("GET", "/api/settings", None, false);
    get.headers_mut()
        .insert(header::COOKIE, cookie.parse().unwrap());
    assert_eq!(call(&router, get).await.status, StatusCode::OK);
    let mut bearer = cookie_put(&cookie, &[("origin", "http://evil.example")]);
    bearer.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().unwrap(),
    );
    assert_eq!(call(&router, bearer).await.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn public_url_sets_the_origin_and_the_secure_cookie() {
    use mailroom_backend::server::{app, AppState};
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path(), TestArgs::default());
    a.public_url = Some("https://mail.contoso.test/".into());
    let (state, _) = AppState::open(&a).await.unwrap();
    let router = app(state, None);
    let r = login(&router, TOKEN).await;
    let set_cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set_cookie.contains("Secure") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let host_only = call(
        &router,
        cookie_put(&cookie, &[("origin", "http://mail.contoso.test:8080")]),
    )
    .await;
    assert_eq!(
        host_only.status,
        StatusCode::FORBIDDEN,
        "the Host header no longer decides"
    );
    let public = call(
        &router,
        cookie_put(&cookie, &[("origin", "https://mail.contoso.test")]),
    )
    .await;
    assert_eq!(public.status, StatusCode::OK);
    a.public_url = Some("mail.contoso.test".into());
    let err = AppState::open(&a)
        .await
        .err()
        .expect("a URL without scheme is refused");
    assert!(err.0.contains("--public-url"), "{}", err.0);
}

#[tokio::test]
async fn wrong_bearer_tokens_are_limited_like_sign_ins() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let with = |token: &str| {
        let mut r = request("GET", "/api/settings", None, false);
        r.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        r
    };
    assert_eq!(call(&router, with(TOKEN)).await.status, StatusCode::OK);
    for i in 0..5 {
        assert_eq!(
            call(&router, with("guess")).await.status,
            StatusCode::UNAUTHORIZED,
            "try {i}"
        );
    }
    let sixth = call(&router, with("guess")).await;
    assert_eq!(sixth.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = sixth.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 800 && wait <= 900, "{wait}");
    assert_eq!(
        call(&router, with(TOKEN)).await.status,
        StatusCode::OK,
        "the right token is never locked out"
    );
    assert_eq!(
        login(&router, "guess").await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "one shared limit for sign-ins and bearer tokens"
    );
    assert_eq!(login(&router, TOKEN).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn app_keys_on_admin_routes_are_not_admin_failures_and_wrong_keys_stay_401() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let with = |path: &str, token: &str| {
        let mut r = request("GET", path, None, false);
        r.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        r
    };
    // An app key sent to an admin route, many times: 401 naming the mistake,
    // and the admin's limit untouched.
    for _ in 0..8 {
        let r = call(&router, with("/api/settings", "mr_not-the-admin-token")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(
            r.json["message"].as_str().unwrap().contains("app key"),
            "{:?}",
            r.json
        );
    }
    assert_eq!(
        call(&router, with("/api/settings", "guess")).await.status,
        StatusCode::UNAUTHORIZED,
        "a first wrong admin token is only wrong"
    );
}

#[tokio::test]
async fn security_headers_on_the_api_and_the_page() {
    use mailroom_backend::server::{app, AppState};
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let loader = "import init from '/app.js'; await init();";
    std::fs::write(
        dist.join("index.html"),
        format!("<!doctype html><title>Mailroom</title><script type=\"module\">{loader}</script>"),
    )
    .unwrap();
    let (state, _) = AppState::open(&args(&dir.path().join("data"), TestArgs::default()))
        .await
        .unwrap();
    let router = app(state, Some(dist));
    let page = call(&router, request("GET", "/", None, false)).await;
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(loader));
    assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
    assert!(
        csp.contains("'wasm-unsafe-eval'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    for r in [
        &page,
        &call(&router, request("GET", "/api/health", None, false)).await,
    ] {
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
    }
    let api = call(&router, request("GET", "/api/settings", None, true)).await;
    assert_eq!(api.headers[header::CACHE_CONTROL], "no-store");
    let unauthorized = call(&router, request("GET", "/api/settings", None, false)).await;
    assert_eq!(unauthorized.headers[header::CACHE_CONTROL], "no-store");
    // The page's addresses only show it: its 200 and HTML answered a POST
    // of a message to a mistyped address, which looked queued.
    for (method, path) in [
        ("POST", "/"),
        ("POST", "/mailroom/api/messages"),
        ("PUT", "/index.html"),
        ("DELETE", "/apps"),
    ] {
        let r = call(&router, request(method, path, None, false)).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(r.headers[header::ALLOW], "GET, HEAD");
        assert!(
            r.json["message"]
                .as_str()
                .is_some_and(|m| m.contains("Mail is sent with POST /api/messages")),
            "{:?}",
            r.json
        );
    }
    for method in ["GET", "HEAD"] {
        let r = call(&router, request(method, "/apps", None, false)).await;
        assert_eq!(r.status, StatusCode::OK, "{method}");
    }
}

#[tokio::test]
async fn at_most_four_tests_run_at_once() {
    // A server that accepts and never greets keeps each test busy.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let mut s = password_settings("127.0.0.1", port);
    s.provider = mailroom_shared::Provider::Other;
    s.security = mailroom_shared::Security::None;
    s.auth_method = AuthMethod::None;
    s.password = None;
    let invalid = s.validate();
    assert!(invalid.is_valid(), "{invalid:?}");
    let mut running = Vec::new();
    for _ in 0..4 {
        let (router, body) = (router.clone(), test_body(&s));
        running.push(tokio::spawn(async move {
            call(
                &router,
                request("POST", "/api/settings/test", Some(body), true),
            )
            .await
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while accepted.load(Ordering::SeqCst) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "four tests never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fifth = call(
        &router,
        request("POST", "/api/settings/test", Some(test_body(&s)), true),
    )
    .await;
    assert_eq!(
        fifth.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        fifth.json
    );
    assert!(fifth.headers.contains_key(header::RETRY_AFTER));
    assert!(fifth.json["message"]
        .as_str()
        .unwrap()
        .contains("already running"));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        4,
        "the fifth never connected"
    );
    for task in running {
        task.abort();
    }
}

#[tokio::test]
async fn plaintext_after_the_starttls_reply_ends_the_test_at_tls() {
    let config = SmtpConfig {
        starttls_reply: Some("220 2.0.0 SMTP server ready\r\n250 injected\r\n".into()),
        ..SmtpConfig::default()
    };
    let rig = Loopback::start(config).await;
    let r = Upstream::new(&test_args(&rig))
        .unwrap()
        .run(
            &oauth_settings("localhost", rig.smtp.port()),
            None,
            &recipient(),
        )
        .await;
    assert!(!r.ok);
    assert_eq!(r.stage, Some(Stage::Tls), "{r:?}");
    assert!(
        r.message.contains("after its 220 reply to STARTTLS"),
        "{r:?}"
    );
    assert!(rig.smtp.auth_attempts().is_empty(), "no AUTH was sent");
    // The same server without the extra line works.
    rig.smtp.configure(|c| c.starttls_reply = None);
    let ok = Upstream::new(&test_args(&rig))
        .unwrap()
        .run(
            &oauth_settings("localhost", rig.smtp.port()),
            None,
            &recipient(),
        )
        .await;
    assert!(ok.ok, "{ok:?}");
}

/// A server that sends `prefix`, then `chunk` over and over until the client
/// hangs up (or 64 MiB, whichever comes first); returns how much it wrote.
async fn streaming_server(
    prefix: &'static [u8],
    chunk: &'static [u8],
) -> (u16, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut written = 0;
        if tcp.write_all(prefix).await.is_err() {
            return written;
        }
        while written < 64 << 20 {
            match tcp.write_all(chunk).await {
                Ok(()) => written += chunk.len(),
                Err(_) => break,
            }
        }
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        written
    });
    (port, task)
}

#[tokio::test]
async fn an_endless_line_or_reply_stays_within_the_caps() {
    for (prefix, chunk, what) in [
        (&b"220-"[..], &[b'A'; 4096][..], "line longer than 8 KiB"),
        (
            &b"220-hello\r\n"[..],
            &b"220-more and more and more lines\r\n"[..],
            "more than 64 KiB in one reply",
        ),
    ] {
        let (port, server) = streaming_server(prefix, chunk).await;
        let mut s = password_settings("127.0.0.1", port);
        s.security = mailroom_shared::Security::None;
        s.auth_method = AuthMethod::None;
        let r = Upstream::new(&TestArgs::default())
            .unwrap()
            .run(&s, None, &recipient())
            .await;
        assert!(!r.ok);
        assert_eq!(r.stage, Some(Stage::Connect), "{:?}", r.message);
        assert!(r.message.contains(what), "{}", r.message);
        assert!(r.transcript.len() <= 1_000);
        assert!(r.transcript.iter().all(|l| l.line.len() <= 8 * 1024 + 64));
        let total: usize = r.transcript.iter().map(|l| l.line.len()).sum();
        assert!(total <= 256 * 1024 + 128, "{total}");
        let written = tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .unwrap()
            .unwrap();
        assert!(
            written < 16 << 20,
            "the client stopped reading early: {written} bytes"
        );
    }
}

#[tokio::test]
async fn a_redirecting_token_endpoint_gets_the_secret_once() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    rig.entra.set_mode(EntraMode::Redirect);
    let r = Upstream::new(&test_args(&rig))
        .unwrap()
        .run(
            &oauth_settings("localhost", rig.smtp.port()),
            None,
            &recipient(),
        )
        .await;
    assert_eq!(r.stage, Some(Stage::Token), "{r:?}");
    assert_eq!(r.code.as_deref(), Some("307"));
    assert!(r.message.contains("redirect"), "{}", r.message);
    assert_eq!(rig.entra.requests(), 1, "the redirect was not followed");
}

#[tokio::test]
async fn secrets_echoed_by_the_server_are_masked_everywhere() {
    let config = SmtpConfig {
        auth_reply: Some(format!(
            "535 5.7.8 Authentication failed for password {PASSWORD}"
        )),
        ..SmtpConfig::default()
    };
    let rig = Loopback::start(config).await;
    let r = Upstream::new(&test_args(&rig))
        .unwrap()
        .run(
            &password_settings("localhost", rig.smtp.port()),
            None,
            &recipient(),
        )
        .await;
    assert_eq!(r.stage, Some(Stage::Auth), "{r:?}");
    let everything = serde_json::to_string(&r).unwrap();
    assert!(!everything.contains(PASSWORD), "{everything}");
    assert!(everything.contains("*****"));
}

#[tokio::test]
async fn expired_tokens_are_evicted_from_the_cache() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    // A lifetime shorter than the early refresh: expired as soon as it is cached.
    rig.entra.set_expires_in(60);
    let client = TokenClient::new(Duration::from_secs(5)).unwrap();
    let request = |scope: &str| TokenRequest {
        authority: rig.authority(),
        tenant: TENANT.into(),
        client_id: CLIENT.into(),
        credential: mailroom_backend::upstream::entra::Credential::Secret(Secret::new(SECRET)),
        scope: scope.into(),
    };
    client
        .get(&request("https://outlook.office365.com/.default"))
        .await
        .unwrap();
    assert_eq!(client.cached_entries(), 1);
    client
        .get(&request("https://outlook.office.com/.default"))
        .await
        .unwrap();
    assert_eq!(client.cached_entries(), 1, "the expired entry was evicted");
    rig.entra.set_expires_in(3599);
    client
        .get(&request("https://outlook.office365.com/.default"))
        .await
        .unwrap();
    client
        .get(&request("https://outlook.office.com/.default"))
        .await
        .unwrap();
    assert_eq!(client.cached_entries(), 2, "fresh tokens stay");
}

#[tokio::test]
async fn a_log_filter_that_cannot_be_read_is_named_and_info_is_used() {
    // A typo in MAILROOM_LOG silently logged at info. A short token then
    // ends the start, so the process ends on its own.
    let (code, stderr) =
        serve_refused_with_env(&[], "short-token", &[("MAILROOM_LOG", "mailroom=[[[")]).await;
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("MAILROOM_LOG “mailroom=[[[” is not a log filter")
            && stderr.contains("logging at info"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_short_admin_token_is_refused_at_start() {
    let (code, stderr) = serve_refused(&[], "short-token").await;
    assert_eq!(code, Some(78));
    assert!(stderr.contains("at least 24"), "{stderr}");
}

/// Starts the binary with each option and value; each must be refused
/// with clap's usage exit (2), naming the option and `says`.
async fn refused_at_start(cases: &[(&str, &str)], says: &str) {
    for (option, value) in cases {
        let (code, stderr) =
            serve_refused(&[option, value], "a-long-enough-admin-token-0123").await;
        assert_eq!(code, Some(2), "{option} {value}: {stderr}");
        assert!(stderr.contains(option) && stderr.contains(says), "{stderr}");
    }
}

#[tokio::test]
async fn a_duration_past_a_hundred_years_is_refused_at_start() {
    // 290000y overflowed the retention cutoff's date (housekeeping panicked);
    // 300000000000y wrapped --max-queue-time negative (every message failed).
    refused_at_start(
        &[
            ("--retention", "290000y"),
            ("--max-queue-time", "300000000000y"),
        ],
        "at most 36500d",
    )
    .await;
}

#[tokio::test]
async fn a_zero_or_sub_second_duration_is_refused_at_start() {
    // `--max-queue-time 0` (read as "no limit" by some) failed every message
    // not sent at once, and all of them while delivery was paused; a lease
    // under a second was 0 s, so another server could claim a message
    // being sent.
    refused_at_start(
        &[
            ("--max-queue-time", "0"),
            ("--retention", "0s"),
            ("--delivery-lease", "500ms"),
        ],
        "write at least 1s",
    )
    .await;
}

#[tokio::test]
async fn a_max_message_size_under_a_kibibyte_is_refused_at_start() {
    // 0 refused every message, while the relay's EHLO said `SIZE 0`: no limit.
    refused_at_start(
        &[("--max-message-size", "0"), ("--max-message-size", "100")],
        "write at least 1024",
    )
    .await;
}

#[tokio::test]
async fn a_max_message_size_past_a_gibibyte_is_refused_at_start() {
    // u64::MAX was taken: the intake's room had no bound, and the relay
    // offered SIZE 18446744073709551615.
    refused_at_start(
        &[
            ("--max-message-size", "1073741825"),
            ("--max-message-size", "18446744073709551615"),
        ],
        "write at most 1073741824 (1 GiB)",
    )
    .await;
}

#[tokio::test]
async fn zero_connections_per_address_is_refused_at_start() {
    // 0 was taken as 1: meant as "no limit", each address (a NAT of
    // printers) could hold one connection at a time.
    refused_at_start(
        &[
            ("--smtp-max-connections-per-ip", "0"),
            ("--http-max-connections-per-ip", "0"),
        ],
        "0 does not mean unlimited",
    )
    .await;
}

#[tokio::test]
async fn an_intake_memory_that_is_not_a_size_is_refused_naming_its_own_default() {
    // It took --max-message-size's words, which name another default.
    refused_at_start(
        &[("--intake-memory", "100"), ("--intake-memory", "lots")],
        "four times --max-message-size, at least 268435456",
    )
    .await;
}

#[tokio::test]
async fn a_network_too_wide_to_trust_is_refused_at_start() {
    // `--smtp-trusted-network 0.0.0.0/0` made the relay send as the mailbox
    // for anyone on the internet without AUTH; a proxy range that wide let
    // any client name itself any address.
    refused_at_start(
        &[
            ("--smtp-trusted-network", "0.0.0.0/0"),
            ("--smtp-trusted-network", "::/0"),
            ("--trusted-proxy", "0.0.0.0/1"),
            ("--smtp-proxy-protocol", "::ffff:0.0.0.0/96"),
        ],
        "too wide to trust",
    )
    .await;
}

#[tokio::test]
async fn a_relay_host_name_that_is_not_one_is_refused_at_start() {
    // The name went into every greeting as written: a line break in it
    // ended the reply early and the rest read as another reply.
    refused_at_start(
        &[
            ("--smtp-hostname", "mail\r\n250 fake"),
            ("--smtp-hostname", "a..b"),
        ],
        "is not a host name like mail.contoso.com",
    )
    .await;
}

#[tokio::test]
async fn delivery_connections_past_a_profiles_highest_are_refused_at_start() {
    // 100,000 started 100,000 workers, each claiming once a second when idle.
    refused_at_start(
        &[
            ("--delivery-connections", "33"),
            ("--delivery-connections", "100000"),
        ],
        "to 32",
    )
    .await;
}

/// A NUL byte (`%00`) in an API address or query parameter names no id,
/// name or search: a `404` in the address and a `400` in the query, on both
/// stores. PostgreSQL refuses a NUL
/// in text, so each such request was a `500`; SQLite read `q=%00` as an
/// empty search and listed every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_byte_in_an_address_or_a_query_is_refused_on_both_stores() {
    let schema = common::pg::PgSchema::new().await;
    for pg in [false, true] {
        let (_rig, server) = saved_rig(|a| {
            if pg {
                a.database_url = Some(schema.url.clone());
            }
        })
        .await;
        let (_, key) = server.new_app(json!({"name": "Scanner"})).await;
        let (status, queued) = server
            .submit(
                &key,
                &json!({"to": [addr("a", "example.org")], "subject": "s", "text": "t"}),
            )
            .await;
        assert_eq!(status, 202);
        // Delivered, so no transaction is open when the schema is dropped.
        server
            .wait_status(queued["id"].as_str().unwrap(), "sent")
            .await;
        use reqwest::Method;
        for (method, path, field) in [
            (Method::GET, "/api/messages?q=%00", Some("q")),
            (Method::GET, "/api/messages?q=a%00b&limit=5", Some("q")),
            (Method::GET, "/api/messages?app=app_%00", Some("app")),
            (Method::GET, "/api/messages?before=msg_%00", Some("before")),
            (Method::GET, "/api/messages/msg_%00", None),
            (Method::POST, "/api/messages/msg_%00/retry", None),
            (Method::POST, "/api/messages/msg_%00/cancel", None),
            (Method::DELETE, "/api/apps/app_%00", None),
            (Method::PATCH, "/api/apps/app_%00", None),
            (Method::POST, "/api/apps/app_%00/key", None),
            (Method::DELETE, "/api/webhooks/wh_%00", None),
            (Method::DELETE, "/api/profiles/p%00", None),
            (Method::GET, "/api/profiles/p%00/settings", None),
        ] {
            let body = (method == Method::PATCH).then(|| json!({"name": "x"}));
            let (status, answer) = server.admin(method.clone(), path, body).await;
            let want = if field.is_some() { 400 } else { 404 };
            assert_eq!(status, want, "pg {pg}: {method} {path}: {answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(message.contains("%00"), "{path}: {answer}");
            if let Some(field) = field {
                assert!(answer["errors"][field].is_array(), "{path}: {answer}");
            }
        }
        // The search and the message still work.
        let (status, list) = server
            .admin(Method::GET, "/api/messages?q=example", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(list["messages"].as_array().unwrap().len(), 1, "{list}");
    }
}

/// A key or token sent with a character that shows as nothing in it (a key
/// file's byte order mark, as `curl -H "Authorization: Bearer $(cat key)"`
/// sends it, or a chat's U+200B) is that key: it was `401`, counted as a
/// wrong key.
#[tokio::test]
async fn a_bearer_credential_with_a_character_that_shows_as_nothing_is_taken() {
    let (_rig, server) = saved_rig(|_| {}).await;
    let (_, key) = server.new_app(json!({"name": "Script"})).await;
    let message = json!({"to": [addr("a", "example.org")], "subject": "s", "text": "t"});
    let (status, _, answer) = server
        .post_bytes(
            "/api/messages",
            &format!("\u{FEFF}{key}"),
            &[("content-type", "application/json")],
            message.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let r = server
        .http
        .get(format!("{}/api/queue", server.url))
        .bearer_auth(format!("{TOKEN}\u{200B}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A leaked admin token is replaced by restarting with a new one: every
/// session signed in with the old one ends with it (the real binary, its
/// data dir kept across the restart). Sessions were kept for up to 12 hours.
#[tokio::test]
async fn restarting_with_a_new_admin_token_ends_the_old_ones_sessions() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let status_with = |url: String, cookie: String| async move {
        reqwest::Client::new()
            .get(format!("{url}/api/settings"))
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let mut first = spawn_mailroom_with(&rig, &data, &["--smtp-listen", "off"]).await;
    let login = reqwest::Client::new()
        .post(format!("{}/api/login", first.url))
        .json(&json!({ "token": TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 204);
    let cookie = login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(status_with(first.url.clone(), cookie.clone()).await, 200);
    first.child.kill().await.unwrap();
    let fresh = "fresh-admin-token-0123456789abcdef";
    let second = spawn_mailroom_with(
        &rig,
        &data,
        &["--smtp-listen", "off", "--admin-token", fresh],
    )
    .await;
    assert_eq!(
        status_with(second.url.clone(), cookie.clone()).await,
        401,
        "the old token's session ended with it"
    );
}
