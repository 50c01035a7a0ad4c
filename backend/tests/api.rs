//! The settings API, storage and sign-in, through `oneshot` and a real server.

mod common;

use std::time::Duration;

use axum::http::{header, StatusCode};
use common::*;
use mailroom_backend::config::TestArgs;
use mailroom_backend::server::Server;
use mailroom_shared::{AuthMethod, Provider, Settings};

#[tokio::test]
async fn health_is_open_and_everything_else_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let health = call(&router, request("GET", "/api/health", None, false)).await;
    assert_eq!(
        (health.status, health.json["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let body = Some(r#"{"settings": {}, "version": 0}"#.to_string());
    for (method, uri, body) in [
        ("GET", "/api/settings", None),
        ("PUT", "/api/settings", body.clone()),
        (
            "POST",
            "/api/settings/test",
            Some(r#"{"settings": {}, "recipient": "x"}"#.to_string()),
        ),
        ("POST", "/api/logout", None),
    ] {
        let r = call(&router, request(method, uri, body, false)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert!(
            r.json["message"].as_str().unwrap().contains("Sign in"),
            "{method} {uri}"
        );
    }
    let mut wrong = request("GET", "/api/settings", None, false);
    wrong
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
    assert_eq!(call(&router, wrong).await.status, StatusCode::UNAUTHORIZED);
    let ok = call(&router, request("GET", "/api/settings", None, true)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.json,
        serde_json::json!({"settings": null, "version": 0, "updated_at": null})
    );
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let bad = login(&router, "wrong").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    // A token copied with its header's scheme, as the docs write it, is
    // the token; with a wrong one it is still wrong.
    // So is one copied from a chat or a web page with a character that shows
    // as nothing (Teams and Slack put U+200B in long words; it was "not
    // correct", and counted as a guess).
    for pasted in [
        format!("Bearer {TOKEN}"),
        format!(" bearer  {TOKEN} "),
        format!("{TOKEN}\u{200B}"),
        format!("\u{FEFF}{}\u{AD}{}", &TOKEN[..10], &TOKEN[10..]),
        // Copied from the environment file or a script, quotes and all.
        format!("\"{TOKEN}\""),
        format!("'{TOKEN}'"),
        format!("MAILROOM_ADMIN_TOKEN={TOKEN}"),
        format!("MAILROOM_ADMIN_TOKEN=\"{TOKEN}\"\n"),
    ] {
        assert_eq!(
            login(&router, &pasted).await.status,
            StatusCode::NO_CONTENT,
            "{pasted}"
        );
    }
    for wrong in ["Bearer wrong", "\"wrong\"", "MAILROOM_ADMIN_TOKEN=wrong"] {
        assert_eq!(
            login(&router, wrong).await.status,
            StatusCode::UNAUTHORIZED,
            "{wrong}"
        );
    }
    let good = login(&router, TOKEN).await;
    assert_eq!(good.status, StatusCode::NO_CONTENT);
    let cookie = good.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "no Secure flag on plain HTTP");
    let pair = cookie.split(';').next().unwrap().to_string();
    let with_cookie = |method: &str, uri: &str| {
        let mut r = request(method, uri, None, false);
        r.headers_mut()
            .insert(header::COOKIE, pair.parse().unwrap());
        r.headers_mut()
            .insert("sec-fetch-site", "same-origin".parse().unwrap());
        r
    };
    assert_eq!(
        call(&router, with_cookie("GET", "/api/settings"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&router, with_cookie("POST", "/api/logout"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&router, with_cookie("GET", "/api/settings"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let mut tls = request(
        "POST",
        "/api/login",
        Some(format!(r#"{{"token":"{TOKEN}"}}"#)),
        false,
    );
    tls.headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    let secure = call(&router, tls).await;
    assert!(secure.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("; Secure"));
}

#[tokio::test]
async fn repeated_failed_logins_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    for _ in 0..5 {
        let r = login(&router, "guess").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = login(&router, "guess").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.headers.contains_key(header::RETRY_AFTER));
    assert!(blocked.json["message"]
        .as_str()
        .unwrap()
        .contains("Too many failed sign-in attempts"));
    // Nobody can lock the administrator out by guessing: the right token
    // still signs in, during the lockout, and a bearer request works too.
    let right = login(&router, TOKEN).await;
    assert_eq!(right.status, StatusCode::NO_CONTENT);
    let bearer = call(&router, request("GET", "/api/settings", None, true)).await;
    assert_eq!(bearer.status, StatusCode::OK);
    let again = login(&router, "guess").await;
    assert_eq!(
        again.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a success does not reset the guesser's count"
    );
}

#[tokio::test]
async fn save_read_back_without_secrets_and_keep_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let (router, state) = router(dir.path(), TestArgs::default()).await;
    let settings = oauth_settings("smtp.office365.com", 587);
    let saved = put(&router, &settings, 0).await;
    assert_eq!(saved.status, StatusCode::OK, "{:?}", saved.json);
    assert_eq!(
        saved.json["message"],
        "The SMTP settings have been saved successfully"
    );
    assert_eq!(saved.json["version"], 1);

    let got = call(&router, request("GET", "/api/settings", None, true)).await;
    assert_eq!(got.json["version"], 1);
    assert!(got.json["updated_at"].as_str().unwrap().contains('T'));
    let s = &got.json["settings"];
    assert_eq!(s["tenant_id"], TENANT);
    assert_eq!(s["client_secret_set"], true);
    assert_eq!(s["password_set"], false);
    assert!(s.get("client_secret").is_none() && s.get("password").is_none());
    assert!(!got.json.to_string().contains(SECRET));

    // Absent secret keeps the stored one.
    let mut keep = settings.clone();
    keep.client_secret = None;
    keep.sender_name = "Renamed".into();
    assert_eq!(put(&router, &keep, 1).await.status, StatusCode::OK);
    let current = state.settings.load_current().await.unwrap();
    assert_eq!(current.client_secret.unwrap().expose(), SECRET);
    assert_eq!(current.settings.unwrap().sender_name, "Renamed");

    // An empty string is a validation error, and changes nothing.
    let mut empty = settings.clone();
    empty.client_secret = Some(String::new());
    let r = put(&router, &empty, 2).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json["errors"]["client_secret"][0]
        .as_str()
        .unwrap()
        .contains("client secret's Value"));

    // A new value replaces it.
    let mut replaced = settings.clone();
    replaced.client_secret = Some("new-secret-value".into());
    assert_eq!(put(&router, &replaced, 2).await.status, StatusCode::OK);
    let current = state.settings.load_current().await.unwrap();
    assert_eq!(current.client_secret.unwrap().expose(), "new-secret-value");

    let history = state.settings.store.history("default").await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(
        history[0].changed_fields,
        vec!["client_secret", "sender_name"]
    );
    assert_eq!(history[1].changed_fields, vec!["sender_name"]);
}

#[tokio::test]
async fn a_misspelt_settings_field_is_refused_by_name_and_a_read_answer_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (router, state) = router(dir.path(), TestArgs::default()).await;
    let settings = oauth_settings("smtp.office365.com", 587);
    assert_eq!(put(&router, &settings, 0).await.status, StatusCode::OK);
    // Sent back as GET answered it (`client_secret_set` and `password_set`
    // in the secrets' place), edited: taken.
    let got = call(&router, request("GET", "/api/settings", None, true)).await;
    let mut answer = got.json["settings"].clone();
    answer["client_secret_expires"] = serde_json::json!("2027-06-30");
    let body = serde_json::json!({"settings": answer, "version": 1});
    let r = call(
        &router,
        request("PUT", "/api/settings", Some(body.to_string()), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    // The expiry misspelt would have left the secret to expire unwarned.
    let mut typo = answer.clone();
    typo.as_object_mut()
        .unwrap()
        .remove("client_secret_expires");
    typo["client_secret_expiry"] = serde_json::json!("2027-12-31");
    let recipient = format!("{}@{}", "admin", "contoso.com");
    for (method, path, body) in [
        (
            "PUT",
            "/api/settings",
            serde_json::json!({"settings": typo, "version": 2}),
        ),
        (
            "POST",
            "/api/settings/test",
            serde_json::json!({"settings": typo, "recipient": recipient}),
        ),
        (
            "POST",
            "/api/profiles",
            serde_json::json!({"name": "Second", "settings": typo}),
        ),
        (
            "PUT",
            "/api/profiles/default",
            serde_json::json!({"settings": typo, "version": 2}),
        ),
    ] {
        let r = call(&router, request(method, path, Some(body.to_string()), true)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {:?}", r.json);
        let said = r.json["errors"]["client_secret_expiry"][0]
            .as_str()
            .unwrap_or_default();
        assert!(
            said.starts_with("This request has no field client_secret_expiry: expected one of")
                && said.contains("`client_secret_expires`")
                && !said.contains("client_secret_set"),
            "{path}: {:?}",
            r.json
        );
    }
    let current = state.settings.load_current().await.unwrap();
    assert_eq!(current.version, 2, "nothing saved");
    assert_eq!(
        current.settings.unwrap().client_secret_expires.as_deref(),
        Some("2027-06-30")
    );
}

#[tokio::test]
async fn invalid_settings_get_422_with_the_shared_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let mut settings = oauth_settings("smtp.office365.com", 587);
    settings.tenant_id = Some("0b4f1c2a-1234-4abc-9def-0123456789a".into());
    settings.sender_email = format!("{}@{}", "other", "contoso.com");
    let expected = settings.validate();
    let r = put(&router, &settings, 0).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["message"], "The settings are not valid.");
    assert_eq!(
        r.json["errors"]["tenant_id"][0],
        expected.errors_for(mailroom_shared::Field::TenantId)[0]
    );
    assert_eq!(
        r.json["errors"]["sender_email"][0],
        expected.errors_for(mailroom_shared::Field::SenderEmail)[0]
    );
    let got = call(&router, request("GET", "/api/settings", None, true)).await;
    assert_eq!(
        got.json["settings"],
        serde_json::Value::Null,
        "nothing was saved"
    );
}

#[tokio::test]
async fn stale_version_gets_409_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let settings = oauth_settings("smtp.office365.com", 587);
    assert_eq!(put(&router, &settings, 0).await.status, StatusCode::OK);
    let mut other = settings.clone();
    other.sender_name = "Someone else".into();
    let r = put(&router, &other, 0).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json["message"]
        .as_str()
        .unwrap()
        .contains("Someone else saved"));
    let got = call(&router, request("GET", "/api/settings", None, true)).await;
    assert_eq!(got.json["settings"]["sender_name"], "Contoso notifications");
    assert_eq!(got.json["version"], 1);
}

#[tokio::test]
async fn two_concurrent_saves_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let mut a = oauth_settings("smtp.office365.com", 587);
    a.sender_name = "A".into();
    let mut b = a.clone();
    b.sender_name = "B".into();
    let (ra, rb) = tokio::join!(put(&router, &a, 0), put(&router, &b, 0));
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let got = call(&router, request("GET", "/api/settings", None, true)).await;
    let winner = if ra.status == StatusCode::OK {
        "A"
    } else {
        "B"
    };
    assert_eq!(got.json["settings"]["sender_name"], winner);
}

#[tokio::test]
async fn bad_bodies_get_4xx_json_never_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    // One SETTINGS field of the wrong type: a 400 that names it.
    let wrong = |field: &'static str, value: &str| {
        (
            format!(r#"{{"settings": {{"{field}": {value}}}, "version": 0}}"#),
            StatusCode::BAD_REQUEST,
            Some(field),
        )
    };
    let cases: Vec<(String, StatusCode, Option<&str>)> = vec![
        ("{not json".into(), StatusCode::BAD_REQUEST, None),
        ("".into(), StatusCode::BAD_REQUEST, None),
        wrong("port", r#""587""#),
        wrong("port", "70000"),
        wrong("provider", r#""yahoo""#),
        wrong("security", r#""ssl""#),
        (
            r#"{"settings": {}, "version": "one"}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("version"),
        ),
        (r#"[1, 2]"#.into(), StatusCode::BAD_REQUEST, None),
        // A choice given as something other than a string is valid JSON of
        // the wrong type: named, not called a syntax error.
        wrong("provider", "1"),
        wrong("security", "true"),
        wrong("transport", "null"),
        wrong("auth_method", r#"["oauth2_client_credentials"]"#),
        wrong("port", &format!(r#""{}""#, "9".repeat(60 * 1024))),
        (
            format!(
                r#"{{"settings": {{"sender_name": "{}"}}, "version": 0}}"#,
                "x".repeat(70 * 1024)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            r#"{"settings": {}, "version": 0}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("host"),
        ),
    ];
    for (body, status, field) in cases {
        let r = call(
            &router,
            request("PUT", "/api/settings", Some(body.clone()), true),
        )
        .await;
        let short = &body[..body.len().min(60)];
        assert_eq!(r.status, status, "{short}: {:?}", r.json);
        let message = r.json["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{short}: JSON message");
        // What the client sent is repeated only in part.
        assert!(message.len() < 400, "{short}: {} bytes", message.len());
        assert_eq!(
            message.contains("not valid JSON"),
            serde_json::from_str::<serde_json::Value>(&body).is_err(),
            "{short}: {message}"
        );
        assert!(r.json["errors"].is_object(), "{short}: JSON errors object");
        if let Some(f) = field {
            assert!(
                r.json["errors"][f].is_array(),
                "{short}: names {f}: {:?}",
                r.json
            );
        }
    }
    let unknown = call(&router, request("GET", "/api/nothing", None, true)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.json["message"].is_string());
}

/// What axum would answer in plain text (a query parameter of the wrong type
/// or given twice, a path that is not UTF-8, a method a route does not take)
/// is the API's JSON, naming the parameter where there is one.
#[tokio::test]
async fn bad_urls_and_methods_get_4xx_json_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let cases: [(&str, &str, StatusCode, Option<&str>); 11] = [
        // A misspelt filter would list every message (for a script to
        // retry or cancel): named, with the ones taken.
        (
            "GET",
            "/api/messages?stauts=failed",
            StatusCode::BAD_REQUEST,
            Some("stauts"),
        ),
        (
            "GET",
            "/api/settings/certificate.pem?whcih=active",
            StatusCode::BAD_REQUEST,
            Some("whcih"),
        ),
        (
            "GET",
            "/api/messages?limit=-5",
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        (
            "GET",
            "/api/messages?limit=ten",
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        (
            "GET",
            "/api/messages?limit=5&limit=6",
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        (
            "GET",
            "/api/messages?status=sent&status=failed",
            StatusCode::BAD_REQUEST,
            Some("status"),
        ),
        (
            "GET",
            "/api/settings/certificate.pem?which=a&which=b",
            StatusCode::BAD_REQUEST,
            Some("which"),
        ),
        ("GET", "/api/messages/%FF%FE", StatusCode::BAD_REQUEST, None),
        (
            "POST",
            "/api/messages/%FF/retry",
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "DELETE",
            "/api/health",
            StatusCode::METHOD_NOT_ALLOWED,
            None,
        ),
        ("PUT", "/api/messages", StatusCode::METHOD_NOT_ALLOWED, None),
    ];
    for (method, uri, status, field) in cases {
        let r = call(&router, request(method, uri, None, true)).await;
        assert_eq!(r.status, status, "{method} {uri}: {:?}", r.json);
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/json",
            "{method} {uri}"
        );
        let message = r.json["message"].as_str().unwrap_or_default();
        assert!(
            message.ends_with('.'),
            "{method} {uri}: a sentence: {:?}",
            r.json
        );
        assert!(r.json["errors"].is_object(), "{method} {uri}: {:?}", r.json);
        if let Some(f) = field {
            assert!(
                r.json["errors"][f].is_array(),
                "{method} {uri}: names {f}: {:?}",
                r.json
            );
            assert!(message.contains(f), "{method} {uri}: {message}");
            if ["stauts", "whcih"].contains(&f) {
                assert!(
                    message.starts_with(&format!(
                        "This request has no query parameter {f}: it takes `"
                    )) && message.contains(if f == "stauts" { "`status`" } else { "`which`" }),
                    "{message}"
                );
            }
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(message.contains(method), "{message}");
            assert!(r.headers.contains_key(header::ALLOW), "{method} {uri}");
        }
    }
    // A number the list clamps is not an error, and a good limit is used.
    let ok = call(
        &router,
        request("GET", "/api/messages?limit=500", None, true),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.json);
    // Without a token, sign-in fails first: nothing is said about the query.
    let anonymous = call(
        &router,
        request("GET", "/api/messages?limit=ten", None, false),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

fn db_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["mailroom.db", "mailroom.db-wal", "mailroom.db-shm"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            all.extend(b);
        }
    }
    all
}

#[tokio::test]
async fn real_server_survives_a_restart_and_keeps_secrets_encrypted() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let args = args(dir.path(), TestArgs::default());
    let server = Server::bind(&args).await.unwrap();
    let base = format!("http://{}", server.addr);
    assert_ne!(server.addr.port(), 0);
    let handle = tokio::spawn(server.run());
    let http = reqwest::Client::new();
    let mut settings = oauth_settings("smtp.office365.com", 587);
    settings.auth_method = AuthMethod::OAuth2ClientCredentials;
    let r = http
        .put(format!("{base}/api/settings"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"settings": settings, "version": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    handle.abort();
    let _ = handle.await;

    let raw = db_bytes(dir.path());
    assert!(!raw.is_empty());
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    for needle in [SECRET.as_bytes(), b64.as_bytes(), &b64.as_bytes()[..20]] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "secret found in the database file"
        );
    }

    let server = Server::bind(&args).await.unwrap();
    let base = format!("http://{}", server.addr);
    let handle = tokio::spawn(server.run());
    let got: serde_json::Value = http
        .get(format!("{base}/api/settings"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["version"], 1);
    assert_eq!(got["settings"]["client_id"], CLIENT);
    assert_eq!(got["settings"]["client_secret_set"], true);
    assert!(!got.to_string().contains(SECRET));
    handle.abort();
}

#[tokio::test]
async fn missing_or_wrong_key_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    assert_eq!(
        put(&router, &oauth_settings("smtp.office365.com", 587), 0)
            .await
            .status,
        StatusCode::OK
    );
    drop(router);
    let key = dir.path().join("secret.key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    let err = Server::bind(&args(dir.path(), TestArgs::default()))
        .await
        .err()
        .unwrap();
    assert!(
        err.0.contains("does not decrypt the stored secrets"),
        "{}",
        err.0
    );
    std::fs::remove_file(&key).unwrap();
    let err = Server::bind(&args(dir.path(), TestArgs::default()))
        .await
        .err()
        .unwrap();
    assert!(err.0.contains("is missing"), "{}", err.0);
    assert!(!key.exists(), "a missing key is not silently replaced");
}

#[tokio::test]
async fn generated_admin_token_and_data_dir_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut a = args(&data, TestArgs::default());
    a.admin_token = None;
    let server = Server::bind(&a).await.unwrap();
    let (path, printed) = server.generated_token.clone().unwrap();
    let token = std::fs::read_to_string(&path).unwrap();
    assert_eq!(token.len(), 48, "24 random bytes in hex");
    assert_eq!(printed.expose(), token);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    drop(server);
    let again = Server::bind(&a).await.unwrap();
    assert!(again.generated_token.is_none(), "printed only once");
}

/// The lines a start without a configured admin token prints before it
/// listens.
async fn lines_of_a_start_without_a_token(data: &std::path::Path) -> Vec<String> {
    let (mut child, mut lines, _) =
        spawn_serve(serve_command(data).env_remove("MAILROOM_ADMIN_TOKEN"));
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the server prints its lines")
            .unwrap()
            .unwrap_or_else(|| panic!("the server stopped before it listened: {seen:?}"));
        if line.starts_with("listening on") {
            break;
        }
        seen.push(line);
    }
    child.kill().await.unwrap();
    seen
}

/// Contract section 1: a generated admin token is printed once, by the
/// start that makes it (with its file, so the admin knows where it is
/// kept), and never again.
#[tokio::test]
async fn the_binary_prints_a_generated_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = lines_of_a_start_without_a_token(&data).await;
    let file = data.join("admin-token");
    let token = std::fs::read_to_string(&file).unwrap();
    let printed: Vec<&String> = first.iter().filter(|l| l.contains(&token)).collect();
    assert_eq!(printed.len(), 1, "printed once: {first:?}");
    assert!(
        printed[0].contains(&file.display().to_string()),
        "{printed:?}"
    );
    let again = lines_of_a_start_without_a_token(&data).await;
    assert!(
        again.iter().all(|l| !l.contains(&token)),
        "never again: {again:?}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token, "kept");
}

/// The real binary as `mailroom serve`, given `command`'s options, its
/// stdout read a line at a time, and all its stderr once it ends.
type Spawned = (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    tokio::task::JoinHandle<Vec<u8>>,
);

fn spawn_serve(command: &mut tokio::process::Command) -> Spawned {
    use tokio::io::AsyncBufReadExt;
    // The test's token, unless the command sets (or removes) its own.
    if !command
        .as_std()
        .get_envs()
        .any(|(k, _)| k == "MAILROOM_ADMIN_TOKEN")
    {
        command.env("MAILROOM_ADMIN_TOKEN", TOKEN);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all).await;
        all
    });
    (child, lines, log)
}

/// Stops a [`spawn_serve`]d server with SIGTERM, wants a clean exit, and
/// returns its stderr.
async fn stop_with_sigterm(
    mut child: tokio::process::Child,
    log: tokio::task::JoinHandle<Vec<u8>>,
) -> Vec<u8> {
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
    log.await.unwrap()
}

/// The URL of a [`spawn_serve`]d server's `listening on` line, the lines
/// before it skipped.
async fn listening_url(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("a listening line");
        if let Some(url) = line.strip_prefix("listening on ") {
            return url.to_string();
        }
    }
}

/// `mailroom serve` on port 0 for HTTP and the relay, in `data`.
fn serve_command(data: &std::path::Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"));
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--smtp-listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(data);
    c
}

#[tokio::test]
async fn binary_prints_listening_lines_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, mut lines, log) = spawn_serve(
        serve_command(dir.path())
            .env("MAILROOM_SMTPS_LISTEN", "127.0.0.1:0")
            .env_remove("NO_COLOR"),
    );
    let smtp = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let smtp = smtp.strip_prefix("smtp listening on ").expect("smtp line");
    let smtp: std::net::SocketAddr = smtp.parse().expect("ADDR:PORT");
    assert_ne!(smtp.port(), 0);
    let greeting = {
        use tokio::io::AsyncReadExt;
        let mut c = tokio::net::TcpStream::connect(smtp).await.unwrap();
        let mut buf = [0u8; 256];
        let n = c.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert!(greeting.starts_with("220 "), "{greeting}");
    // The implicit TLS listener (MAILROOM_SMTPS_LISTEN), printed the same way.
    let smtps = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let smtps = smtps
        .strip_prefix("smtps listening on ")
        .expect("smtps line");
    let smtps: std::net::SocketAddr = smtps.parse().expect("ADDR:PORT");
    assert!(smtps.port() != 0 && smtps.port() != smtp.port(), "{smtps}");
    tokio::net::TcpStream::connect(smtps).await.unwrap();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line.strip_prefix("listening on ").expect("listening line");
    assert!(!url.ends_with(":0"));
    let health: serde_json::Value = reqwest::get(format!("{url}/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let log = stop_with_sigterm(child, log).await;
    // The log, when it is not a terminal (systemd's journal, a file, docker),
    // has no colour codes: journalctl shows a line holding one as "[blob data]".
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("INFO"), "{text}");
    assert!(!log.contains(&0x1b), "escape codes in the log: {text:?}");
}

/// The server takes over SIGTERM and SIGHUP before it says it listens:
/// a `systemctl stop` right after the `listening on` line is an orderly
/// stop, and a `reload` there leaves it running (before, either could
/// arrive while the signal's default action still ended the process).
#[tokio::test]
async fn a_stop_or_a_reload_right_after_the_listening_line_is_handled() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (child, mut lines, log) = spawn_serve(&mut serve_command(dir.path()));
        listening_url(&mut lines).await;
        stop_with_sigterm(child, log).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (child, mut lines, log) = spawn_serve(&mut serve_command(dir.path()));
    let url = listening_url(&mut lines).await;
    std::process::Command::new("kill")
        .args(["-HUP", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let health = reqwest::get(format!("{url}/api/health")).await.unwrap();
    assert_eq!(health.status(), 200, "running after SIGHUP");
    stop_with_sigterm(child, log).await;
}

/// A misspelt `MAILROOM_` variable does nothing; the server says so at
/// start, naming the option it meant, and starts as before.
#[tokio::test]
async fn a_misspelt_variable_is_warned_of_at_start_with_the_option_meant() {
    let dir = tempfile::tempdir().unwrap();
    let (child, mut lines, log) = spawn_serve(
        serve_command(dir.path())
            .env("MAILROOM_SMTP_TRUSTED_NETWORK", "192.0.2.0/24")
            .env("MAILROOM_URL", "http://127.0.0.1:9"),
    );
    listening_url(&mut lines).await;
    let log = String::from_utf8_lossy(&stop_with_sigterm(child, log).await).into_owned();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warned.iter().any(|l| l.contains(
            "MAILROOM_SMTP_TRUSTED_NETWORK is set, but no option of mailroom serve reads it, so it does nothing: did you mean MAILROOM_SMTP_TRUSTED_NETWORKS?"
        )),
        "{log}"
    );
    // The sendmail drop-in's own variable is no mistake.
    assert!(!warned.iter().any(|l| l.contains("MAILROOM_URL")), "{log}");
}

/// Docker's `--env-file` passes `MAILROOM_PUBLIC_URL="https://…"` on with
/// its quotes: such a value was refused ("must start with https://"), and a
/// quoted MAILROOM_DATA_DIR was a directory named `"` under the working
/// directory. The server takes what the quotes hold, and says so.
#[tokio::test]
async fn a_variable_in_quotes_as_docker_passes_it_is_taken_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let (child, mut lines, log) = spawn_serve(
        serve_command(dir.path())
            .env("MAILROOM_PUBLIC_URL", "\"https://mail.contoso.com\"")
            .env("MAILROOM_MAX_QUEUE_TIME", "'36h'")
            .env("MAILROOM_RETENTION", "7d"),
    );
    let url = listening_url(&mut lines).await;
    // An https --public-url makes the session cookie Secure.
    let signed_in = reqwest::Client::new()
        .post(format!("{url}/api/login"))
        .header("origin", "https://mail.contoso.com")
        .json(&serde_json::json!({"token": TOKEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 204);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("Secure"), "{cookie}");
    let log = String::from_utf8_lossy(&stop_with_sigterm(child, log).await).into_owned();
    for name in ["MAILROOM_PUBLIC_URL", "MAILROOM_MAX_QUEUE_TIME"] {
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains(&format!("{name} is in quotes"))),
            "{name}: {log}"
        );
    }
    assert!(!log.contains("MAILROOM_RETENTION is in quotes"), "{log}");
}

/// A second `mailroom serve` on the same SQLite database (a manual run
/// beside the service) is refused at start, naming the fix: two delivery
/// engines over one SQLite file were never meant to share it (PostgreSQL
/// is how several servers do). Once the first is gone, even killed, the
/// next starts.
#[tokio::test]
async fn a_second_server_on_the_same_sqlite_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (first, mut lines, log) = spawn_serve(&mut serve_command(dir.path()));
    listening_url(&mut lines).await;
    let second = serve_command(dir.path())
        .env("MAILROOM_ADMIN_TOKEN", TOKEN)
        .kill_on_drop(true)
        .output();
    let second = tokio::time::timeout(std::time::Duration::from_secs(20), second)
        .await
        .expect("the second server stops at start, as it did not before")
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(78), "{said}");
    assert!(
        said.contains("another Mailroom server uses the database") && said.contains("PostgreSQL"),
        "{said}"
    );
    // SIGKILL: the lock goes with the process.
    let pid = first.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    let _ = log.await;
    let (third, mut lines, log) = spawn_serve(&mut serve_command(dir.path()));
    listening_url(&mut lines).await;
    stop_with_sigterm(third, log).await;
}

/// A self-signed pair for localhost ending on 1 January of `year`, written
/// to `cert` and `key`.
fn write_pair(cert: &std::path::Path, key: &std::path::Path, year: i32) {
    write_localhost_pair(cert, key, Some(rcgen::date_time_ymd(year, 1, 1)));
}

/// SIGHUP (`systemctl reload mailroom`, a certbot hook) reads the relay's
/// certificate files again at once, and the server goes on; before, it
/// ended the server.
#[tokio::test]
async fn sighup_reads_the_relays_certificate_again_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("relay.crt"), dir.path().join("relay.key"));
    write_pair(&cert, &key, 2031);
    let (child, mut lines, log) = spawn_serve(
        serve_command(&dir.path().join("data"))
            .arg("--smtp-tls-cert")
            .arg(&cert)
            .arg("--smtp-tls-key")
            .arg(&key),
    );
    let url = listening_url(&mut lines).await;
    let http = reqwest::Client::new();
    let metrics = || async {
        http.get(format!("{url}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .ok()?
            .text()
            .await
            .ok()
    };
    let series = |year: i32| {
        let end = time::Date::from_calendar_date(year, time::Month::January, 1)
            .unwrap()
            .midnight()
            .assume_utc()
            .unix_timestamp();
        format!(
            "mailroom_relay_certificate_expiry_timestamp_seconds{{cert=\"{}\"}} {end}",
            cert.display()
        )
    };
    let started = std::time::Instant::now();
    while !metrics().await.unwrap_or_default().contains(&series(2031)) {
        assert!(started.elapsed() < Duration::from_secs(20), "no series");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Renewed on disk; read again on SIGHUP, not a minute later.
    write_pair(&cert, &key, 2032);
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let now = metrics().await.expect("the server goes on after SIGHUP");
        if now.contains(&series(2032)) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = String::from_utf8_lossy(&stop_with_sigterm(child, log).await).into_owned();
    assert!(
        text.contains("SIGHUP: reading the relay's TLS certificate files again now"),
        "{text}"
    );
}

#[tokio::test]
async fn serves_the_ui_with_fallback_cache_headers_and_compression() {
    use mailroom_backend::server::{app, AppState};
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let index = format!(
        "<!doctype html><title>Mailroom</title>{}",
        "<p>padding</p>".repeat(50)
    );
    std::fs::write(dist.join("index.html"), &index).unwrap();
    std::fs::write(dist.join("app-0123456789abcdef_bg.wasm"), vec![0u8; 4096]).unwrap();
    let (state, _) = AppState::open(&args(&dir.path().join("data"), TestArgs::default()))
        .await
        .unwrap();
    let router = app(state, Some(dist));

    let page = call(&router, request("GET", "/settings/anything", None, false)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-cache");
    assert!(
        page.json
            .as_str()
            .unwrap()
            .contains("<title>Mailroom</title>"),
        "falls back to index.html"
    );

    let asset = call(
        &router,
        request("GET", "/app-0123456789abcdef_bg.wasm", None, false),
    )
    .await;
    assert_eq!(
        asset.headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );

    for encoding in ["gzip", "br"] {
        let mut req = request("GET", "/", None, false);
        req.headers_mut()
            .insert(header::ACCEPT_ENCODING, encoding.parse().unwrap());
        let r = call(&router, req).await;
        assert_eq!(r.headers[header::CONTENT_ENCODING], encoding);
    }
    let api = call(&router, request("GET", "/api/health", None, false)).await;
    assert_eq!(
        api.headers[header::CACHE_CONTROL],
        "no-store",
        "API answers are never cached"
    );
}

#[tokio::test]
async fn a_data_dir_that_is_a_file_is_a_start_error_and_the_file_is_left_alone() {
    use mailroom_backend::server::AppState;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = AppState::open(&args(&file, TestArgs::default()))
        .await
        .err()
        .expect("refused");
    assert!(
        err.0.contains("--data-dir") && err.0.contains("not a directory"),
        "{}",
        err.0
    );
    // It was made 0700, executable, before the database failed to open.
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
}

#[tokio::test]
async fn a_static_dir_without_the_page_is_a_start_error() {
    use mailroom_backend::server::AppState;
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("dist");
    std::fs::create_dir_all(&empty).unwrap();
    // An empty directory (Trunk not run yet) and one that is not there
    // (a typing error) served the page built into the binary, silently.
    for static_dir in [empty.clone(), dir.path().join("dsit")] {
        let mut a = args(&dir.path().join("data"), TestArgs::default());
        a.static_dir = Some(static_dir.clone());
        let err = AppState::open(&a).await.err().expect("refused");
        assert!(
            err.0.contains("--static-dir") && err.0.contains("index.html"),
            "{}",
            err.0
        );
    }
    std::fs::write(
        empty.join("index.html"),
        "<!doctype html><title>Mailroom</title>",
    )
    .unwrap();
    let mut a = args(&dir.path().join("data"), TestArgs::default());
    a.static_dir = Some(empty);
    assert!(AppState::open(&a).await.is_ok());
}

#[test]
fn settings_type_round_trips_provider_defaults() {
    let s = Settings::for_provider(Provider::Gmail);
    assert_eq!(s.host, "smtp.gmail.com");
}

/// An id that names nothing, or a query value that is none of its choices,
/// is repeated only in its first 80 characters, as every other echo is: a
/// 20,000-character id or `?status=` came back whole (twice, for a field).
#[tokio::test]
async fn an_unknown_id_is_repeated_only_in_part() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), TestArgs::default()).await;
    let long = "x".repeat(20_000);
    for (method, uri, body) in [
        ("GET", format!("/api/messages/{long}"), None),
        ("POST", format!("/api/messages/{long}/retry"), None),
        ("POST", format!("/api/messages/{long}/cancel"), None),
        ("GET", format!("/api/messages?before={long}"), None),
        (
            "PATCH",
            format!("/api/apps/{long}"),
            Some(r#"{"name": "x"}"#),
        ),
        ("DELETE", format!("/api/apps/{long}"), None),
        ("DELETE", format!("/api/webhooks/{long}"), None),
        ("POST", format!("/api/webhooks/{long}/test"), None),
        ("GET", format!("/api/webhooks/{long}/deliveries"), None),
        ("GET", format!("/api/profiles/{long}/history"), None),
        // A query value that is not one of its choices.
        ("GET", format!("/api/messages?status={long}"), None),
        ("GET", format!("/api/messages?limit={long}"), None),
        ("GET", format!("/api/messages?app={long}"), None),
        ("GET", format!("/api/messages?profile={long}"), None),
        (
            "GET",
            format!("/api/settings/certificate.pem?which={long}"),
            None,
        ),
        (
            "DELETE",
            format!("/api/settings/certificate?which={long}"),
            None,
        ),
    ] {
        let got = call(&router, request(method, &uri, body.map(String::from), true)).await;
        // The whole answer: its message and its field's message.
        let text = got.json.to_string();
        assert!(
            got.status.is_client_error() && text.contains("xxx…"),
            "{method} {:.40}: {} {text:.200}",
            uri,
            got.status
        );
        assert!(text.len() < 600, "{method} {uri:.40}: {} bytes", text.len());
    }
}
