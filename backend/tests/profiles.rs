//! Sending profiles (docs/API.md §15): the routes, two profiles on two
//! tenants where one is broken and the other delivers, a Graph throttle that
//! holds one profile only, the rolling daily limit with the manual clock, and
//! the From rule of an app's profile.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mailroom_backend::clock::ManualClock;
use mailroom_fakes::{addr, Loopback, SmtpConfig};
use mailroom_shared::Settings;
use reqwest::Method;
use serde_json::{json, Value};

/// Profile B's settings: another tenant, app and mailbox on the same fakes.
fn settings_b(rig: &Loopback, secret: &str) -> Settings {
    mailroom_shared::fixtures::office365_second_tenant("localhost", rig.smtp.port(), secret)
}

/// `GET /api/queue`'s warnings of one code.
fn coded(queue: &Value, code: &str) -> Vec<Value> {
    queue["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == code)
        .cloned()
        .collect()
}

async fn add_profile(server: &Running, name: &str, settings: &Settings, limits: Value) -> Value {
    let (status, body) = server
        .admin(
            Method::POST,
            "/api/profiles",
            Some(json!({"name": name, "settings": settings, "limits": limits})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Sets the default profile's `recipients_per_day`.
async fn daily_limit(server: &Running, n: u32) {
    let (s, body) = server
        .admin(
            Method::PATCH,
            "/api/profiles/default",
            Some(json!({"limits": {"recipients_per_day": n}})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
}

fn mail(to: &str, subject: &str) -> Value {
    json!({"to": [to], "subject": subject, "text": "hello"})
}

#[tokio::test]
async fn profiles_are_listed_added_changed_and_deleted_with_clear_refusals() {
    let (rig, server) = saved_rig(|_| {}).await;
    let (status, list) = server.admin(Method::GET, "/api/profiles", None).await;
    assert_eq!(status, 200);
    let profiles = list["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 1, "{list}");
    assert_eq!(profiles[0]["id"], "default");
    assert_eq!(profiles[0]["version"], 1);
    assert!(
        profiles[0]["settings"]["client_secret_set"] == true,
        "{list}"
    );
    assert!(profiles[0]["settings"]["client_secret"].is_null());

    // Refusals name the field.
    let bad = |body: Value| {
        let server = &server;
        async move {
            server
                .admin(Method::POST, "/api/profiles", Some(body))
                .await
        }
    };
    let b = settings_b(&rig, SECRET_B);
    let (s, e) = bad(json!({"name": "  ", "settings": b})).await;
    assert_eq!(s, 422, "{e}");
    assert!(e["errors"]["name"].is_array(), "{e}");
    for name in [
        "x".repeat(10_000),
        "two\nlines".to_string(),
        "tab\there".to_string(),
    ] {
        let (s, e) = bad(json!({"name": name, "settings": b})).await;
        assert_eq!(s, 422, "{e}");
        assert!(e["errors"]["name"].is_array(), "{e}");
    }
    let (s, e) =
        bad(json!({"name": "X", "settings": b, "limits": {"recipients_per_day": -1}})).await;
    assert!(s == 400 || s == 422, "{s} {e}");
    let (s, e) = bad(json!({"name": "X"})).await;
    assert!(s == 400 || s == 422, "settings are required: {s} {e}");
    // A body past the limit is a 413; nothing is stored.
    let (s, _) = bad(json!({"name": "x".repeat(100_000), "settings": b})).await;
    assert_eq!(s, 413);
    let (_, still) = server.admin(Method::GET, "/api/profiles", None).await;
    assert_eq!(still["profiles"].as_array().unwrap().len(), 1);
    // The list filter is a value, never SQL: it names no profile, and is
    // refused as such (it was an empty list).
    let (s, none) = server
        .admin(
            Method::GET,
            "/api/messages?profile=%27%20OR%201%3D1%20--",
            None,
        )
        .await;
    assert_eq!(s, 400, "{none}");
    assert!(
        none["errors"]["profile"][0]
            .as_str()
            .is_some_and(|m| m.starts_with("There is no profile “' OR 1=1 --”")),
        "{none}"
    );
    let (s, e) = bad(json!({"name": "X", "settings": b, "limits": {"connections": 0}})).await;
    assert_eq!(s, 422, "{e}");
    assert!(e["errors"]["limits"][0]
        .as_str()
        .unwrap()
        .contains("connections"));
    let mut wrong = b.clone();
    wrong.tenant_id = Some("not-a-guid".into());
    let (s, e) = bad(json!({"name": "X", "settings": wrong})).await;
    assert_eq!(s, 422, "{e}");
    assert!(e["errors"]["tenant_id"].is_array(), "{e}");
    // A new profile has no stored secret to fall back on.
    let mut no_secret = b.clone();
    no_secret.client_secret = None;
    let (s, e) = bad(json!({"name": "X", "settings": no_secret})).await;
    assert_eq!(s, 422, "{e}");
    assert!(e["errors"]["client_secret"].is_array(), "{e}");

    let created = add_profile(
        &server,
        "Fabrikam billing",
        &b,
        json!({"recipients_per_day": 500}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("prf_"), "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["limits"]["recipients_per_day"], 500);
    assert_eq!(created["usage"]["recipients_today"], 0);
    assert!(created["paused"].is_null());
    assert!(
        created["settings"]["client_secret"].is_null(),
        "never the secret"
    );
    // Names are unique, case-blind.
    let (s, e) = bad(json!({"name": "FABRIKAM billing", "settings": b})).await;
    assert_eq!(s, 422, "{e}");
    assert!(e["errors"]["name"][0].as_str().unwrap().contains("exists"));

    // Its own settings, history and version.
    let (s, got) = server
        .admin(Method::GET, &format!("/api/profiles/{id}/settings"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(got["settings"]["tenant_id"], TENANT_B);
    let (_, default) = server.admin(Method::GET, "/api/settings", None).await;
    assert_eq!(default["settings"]["tenant_id"], TENANT);
    let (_, same) = server
        .admin(Method::GET, "/api/profiles/default/settings", None)
        .await;
    assert_eq!(same, default);
    let mut renamed = b.clone();
    renamed.sender_name = "Fabrikam Billing".into();
    renamed.client_secret = None;
    let (s, saved) = server
        .admin(
            Method::PUT,
            &format!("/api/profiles/{id}"),
            Some(json!({"settings": renamed, "version": 1})),
        )
        .await;
    assert_eq!(s, 200, "{saved}");
    assert_eq!(saved["version"], 2);
    let (s, stale) = server
        .admin(
            Method::PUT,
            &format!("/api/profiles/{id}"),
            Some(json!({"settings": renamed, "version": 1})),
        )
        .await;
    assert_eq!(s, 409, "{stale}");
    let (_, history) = server
        .admin(Method::GET, &format!("/api/profiles/{id}/history"), None)
        .await;
    assert_eq!(history["changes"].as_array().unwrap().len(), 2, "{history}");
    assert_eq!(history["changes"][0]["fields"], json!(["sender_name"]));
    let (_, default_history) = server
        .admin(Method::GET, "/api/settings/history", None)
        .await;
    assert_eq!(default_history["changes"].as_array().unwrap().len(), 1);

    // PATCH: name and limits.
    let (s, patched) = server
        .admin(
            Method::PATCH,
            &format!("/api/profiles/{id}"),
            Some(json!({"name": "Billing", "limits": {"messages_per_minute": 10}})),
        )
        .await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["name"], "Billing");
    assert_eq!(patched["limits"]["messages_per_minute"], 10);
    assert!(patched["limits"]["recipients_per_day"].is_null());
    let (s, e) = server
        .admin(
            Method::PATCH,
            &format!("/api/profiles/{id}"),
            Some(json!({"name": "default"})),
        )
        .await;
    assert_eq!(s, 422, "{e}");

    // Unknown profiles are 404 on every route, with the id named.
    for path in [
        "/api/profiles/prf_nope",
        "/api/profiles/prf_nope/settings",
        "/api/profiles/prf_nope/history",
        "/api/profiles/prf_nope/certificate",
    ] {
        let (s, e) = server.admin(Method::GET, path, None).await;
        assert_eq!(s, 404, "{path}: {e}");
        assert!(e["message"].as_str().unwrap().contains("prf_nope"), "{e}");
    }

    // An app names a profile that exists.
    let (s, e) = server
        .admin(
            Method::POST,
            "/api/apps",
            Some(json!({"name": "Ghost", "profile": "prf_nope"})),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(e["errors"]["profile"].is_array(), "{e}");
    // A profile's name (as the page shows it), or its id in other case, is
    // told to be given as the id, which is named.
    for given in ["billing", " Billing ", "DEFAULT"] {
        let (s, e) = server
            .admin(
                Method::POST,
                "/api/apps",
                Some(json!({"name": "By name", "profile": given})),
            )
            .await;
        assert_eq!(s, 422, "{given}: {e}");
        let said = e["errors"]["profile"][0].as_str().unwrap();
        let want = if given == "DEFAULT" {
            "default"
        } else {
            id.as_str()
        };
        assert!(
            said.contains(&format!("\"profile\": \"{want}\"")),
            "{given}: {said}"
        );
    }
    let (app, _) = server
        .new_app(json!({"name": "Billing app", "profile": id}))
        .await;
    let (s, e) = server
        .admin(
            Method::PATCH,
            &format!("/api/apps/{app}"),
            Some(json!({"profile": "prf_nope"})),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(e["errors"]["profile"].is_array(), "{e}");
    // Ids that are not a profile's, however written, are a 404; an encoded
    // one is decoded alike on every route.
    for path in [
        "/api/profiles/default%00",
        "/api/profiles/default%00/settings",
        "/api/profiles/DEFAULT/history",
        "/api/profiles/%2Fdefault/test",
    ] {
        let (s, _) = server.admin(Method::GET, path, None).await;
        assert!(s == 404 || s == 405, "{path}: {s}");
    }
    for path in [
        "/api/profiles/%64efault",
        "/api/profiles/%64efault/settings",
    ] {
        let (s, got) = server.admin(Method::GET, path, None).await;
        assert_eq!(s, 200, "{path}: {got}");
    }

    // Delete: never default, not while an app uses it.
    let (s, e) = server
        .admin(Method::DELETE, "/api/profiles/default", None)
        .await;
    assert_eq!(s, 409, "{e}");
    let (s, e) = server
        .admin(Method::DELETE, &format!("/api/profiles/{id}"), None)
        .await;
    assert_eq!(s, 409, "{e}");
    assert!(e["message"].as_str().unwrap().contains("app"), "{e}");
    let (s, moved) = server
        .admin(
            Method::PATCH,
            &format!("/api/apps/{app}"),
            Some(json!({"profile": "default"})),
        )
        .await;
    assert_eq!(s, 200, "{moved}");
    assert_eq!(moved["profile"], "default");
    let (s, _) = server
        .admin(Method::DELETE, &format!("/api/profiles/{id}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = server
        .admin(Method::GET, &format!("/api/profiles/{id}"), None)
        .await;
    assert_eq!(s, 404);
}

/// `profile`'s entry in an answer of `GET /api/queue`.
fn profile_in(q: &Value, profile: &str) -> Value {
    let profiles = q["profiles"].as_array().unwrap();
    profiles
        .iter()
        .find(|p| p["id"] == profile)
        .cloned()
        .unwrap()
}

/// Waits until `GET /api/queue` says `profile` is paused.
async fn wait_profile_paused(server: &Running, profile: &str) -> Value {
    let started = Instant::now();
    loop {
        let q = server.queue().await;
        let p = profile_in(&q, profile);
        if !p["paused"].is_null() {
            return q;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{q}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Profile B, "Fabrikam", saved with a secret Entra does not know (its
/// tenant and app registered with another): its id.
async fn fabrikam_with_an_unknown_secret(rig: &Loopback, server: &Running) -> String {
    rig.entra.register(TENANT_B, CLIENT_B, SECRET_B);
    let b = add_profile(
        server,
        "Fabrikam",
        &settings_b(rig, "Zz9Z~wrongSecretValue0123456789abcdefgh"),
        json!({}),
    )
    .await;
    b["id"].as_str().unwrap().to_string()
}

/// The sign-in check while idle runs per profile: the one whose secret
/// Entra does not know pauses before any message, the other stays as it is.
#[tokio::test]
async fn an_idle_profiles_refused_secret_pauses_only_that_profile() {
    let (rig, server) = saved_rig(checking).await;
    let id = fabrikam_with_an_unknown_secret(&rig, &server).await;
    let q = wait_profile_paused(&server, &id).await;
    let p = profile_in(&q, &id);
    assert_eq!(p["paused"]["code"], "AADSTS7000215", "{p}");
    // The default profile's checks keep passing meanwhile.
    let before = rig.smtp.auth_attempts().len();
    wait_for("no check of the default profile", || {
        rig.smtp.auth_attempts().len() >= before + 2
    })
    .await;
    let q = server.queue().await;
    assert!(q["paused"].is_null(), "{q}");
    assert!(profile_in(&q, "default")["paused"].is_null(), "{q}");
    assert!(rig.smtp.messages().is_empty(), "a check sends nothing");
}

#[tokio::test]
async fn a_broken_profile_pauses_only_its_own_mail_and_the_other_goes_on() {
    let (rig, server) = saved_rig(|_| {}).await;
    let id = fabrikam_with_an_unknown_secret(&rig, &server).await;
    let (_, key_a) = server.new_app(json!({"name": "A"})).await;
    let (app_b, key_b) = server.new_app(json!({"name": "B", "profile": id})).await;

    // B's From rule is B's sender, not the default profile's.
    let (s, e) = server
        .submit(
            &key_b,
            &json!({"from": mailer(), "to": [addr("x", "example.org")], "subject": "s", "text": "t"}),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    let (s, sent_b) = server
        .submit(&key_b, &mail(&addr("x", "example.org"), "from B"))
        .await;
    assert_eq!(s, 202, "{sent_b}");
    let id_b = sent_b["id"].as_str().unwrap().to_string();
    let q = wait_profile_paused(&server, &id).await;
    // The default profile is not paused, and its mail still goes out.
    assert!(q["paused"].is_null(), "{q}");
    let (s, sent_a) = server
        .submit(&key_a, &mail(&addr("y", "example.org"), "from A"))
        .await;
    assert_eq!(s, 202);
    let a = server
        .wait_status(sent_a["id"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(a["profile"], "default");
    let m = server.message(&id_b).await;
    assert_eq!(m["status"], "queued", "{m}");
    assert_eq!(m["profile"], id);
    assert_eq!(m["app"], app_b);
    let p = profile_in(&wait_profile_paused(&server, &id).await, &id);
    assert_eq!(p["paused"]["stage"], "token", "{p}");
    // The paused attempt's record, which uncounts it, commits just after
    // the pause shows.
    let started = Instant::now();
    let mut usage = p["usage"].clone();
    while usage["recipients_today"] != 0 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        usage = profile_in(&server.queue().await, &id)["usage"].clone();
    }
    assert_eq!(
        usage["recipients_today"], 0,
        "a message that did not go out does not count toward the day: {usage}"
    );
    assert!(
        p["paused"]["code"].as_str().unwrap().contains("7000215"),
        "{p}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(&format!("mailroom_delivery_paused{{profile=\"{id}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("mailroom_delivery_paused{profile=\"default\"} 0"),
        "{metrics}"
    );
    // ?profile= lists only that profile's messages.
    let (_, listed) = server
        .admin(Method::GET, &format!("/api/messages?profile={id}"), None)
        .await;
    let listed = listed["messages"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id_b.as_str());

    // The right secret, saved to B: B's message goes out, signed in as B's mailbox.
    let (s, saved) = server
        .admin(
            Method::PUT,
            &format!("/api/profiles/{id}"),
            Some(json!({"settings": settings_b(&rig, SECRET_B), "version": 1})),
        )
        .await;
    assert_eq!(s, 200, "{saved}");
    server.wait_status(&id_b, "sent").await;
    let received = rig.smtp.messages();
    let from_b = received
        .iter()
        .find(|m| m.data.contains("Subject: from B"))
        .unwrap();
    assert_eq!(from_b.user.as_deref(), Some(billing().as_str()));
    let from_a = received
        .iter()
        .find(|m| m.data.contains("Subject: from A"))
        .unwrap();
    assert_eq!(from_a.user.as_deref(), Some(mailer().as_str()));
    let q = server.queue().await;
    assert!(q["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["paused"].is_null()));
    // A profile with waiting messages cannot be deleted; sent ones do not hold it.
    server
        .admin(Method::DELETE, &format!("/api/apps/{app_b}"), None)
        .await;
    let (s, e) = server
        .admin(Method::DELETE, &format!("/api/profiles/{id}"), None)
        .await;
    assert_eq!(s, 204, "{e}");
    let metrics = server.metrics().await;
    assert!(
        !metrics.contains(&id),
        "a deleted profile's series go: {metrics}"
    );
    assert!(metrics.contains("mailroom_delivery_paused{profile=\"default\"} 0"));
}

/// Graph's throttling is per mailbox, so a `429` with `Retry-After` holds
/// the workers of the profile that got it and no other: profile B's message
/// goes out at once while profile A's next one waits for the half minute.
#[tokio::test]
async fn a_graph_throttle_holds_only_the_profile_that_got_it() {
    use mailroom_fakes::GraphError;
    let graph = |mut s: Settings| {
        s.transport = mailroom_shared::Transport::Graph;
        s.host = String::new();
        s.port = 0;
        s
    };
    let rig = Loopback::start(SmtpConfig::default()).await;
    rig.entra.register(TENANT_B, CLIENT_B, SECRET_B);
    rig.graph.add_mailbox(&billing());
    let server = start(&rig, |_| {}).await;
    server.save(&graph(oauth_settings("", 0))).await;
    let b = add_profile(
        &server,
        "Fabrikam",
        &graph(settings_b(&rig, SECRET_B)),
        json!({}),
    )
    .await;
    let id = b["id"].as_str().unwrap().to_string();
    let (_, key_a) = server.new_app(json!({"name": "A"})).await;
    let (_, key_b) = server.new_app(json!({"name": "B", "profile": id})).await;

    rig.graph.fail_next(GraphError::throttled(30));
    let (_, first) = server
        .submit(&key_a, &mail(&addr("x", "example.org"), "A first"))
        .await;
    let first = server
        .wait_status(first["id"].as_str().unwrap(), "deferred")
        .await;
    assert_eq!(
        first["last_error"]["code"], "ApplicationThrottled",
        "{first}"
    );
    let (_, second) = server
        .submit(&key_a, &mail(&addr("y", "example.org"), "A second"))
        .await;
    let started = Instant::now();
    let (_, from_b) = server
        .submit(&key_b, &mail(&addr("z", "example.org"), "from B"))
        .await;
    server
        .wait_status(from_b["id"].as_str().unwrap(), "sent")
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "B was not held by A's Retry-After: {:?}",
        started.elapsed()
    );
    let second = server.message(second["id"].as_str().unwrap()).await;
    // Claimed and held, or not claimed yet: either way not tried.
    assert!(
        ["sending", "queued"].contains(&second["status"].as_str().unwrap()),
        "A's next message waits: {second}"
    );
    assert_eq!(second["attempt_count"], 0, "{second}");
    let mailboxes: Vec<String> = rig
        .graph
        .messages()
        .into_iter()
        .map(|m| m.mailbox)
        .collect();
    assert_eq!(mailboxes, [billing()], "only B's message reached Graph");
}

#[tokio::test]
async fn the_daily_limit_makes_messages_wait_then_go_when_the_window_frees() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let clock = Arc::new(ManualClock::default());
    let server = start_with_clock(&rig, |_| {}, clock.clone()).await;
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    daily_limit(&server, 3).await;
    let (_, key) = server.new_app(json!({"name": "Daily"})).await;
    let receiver = mailroom_fakes::FakeReceiver::start().await;
    server
        .add_webhook(json!({"url": receiver.url("/quota"), "events": ["quota.reached"]}))
        .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, m) = server
            .submit(
                &key,
                &mail(&addr(&format!("r{i}"), "example.org"), &format!("m{i}")),
            )
            .await;
        assert_eq!(s, 202);
        let id = m["id"].as_str().unwrap().to_string();
        server.wait_status(&id, "sent").await;
        ids.push(id);
    }
    // The fourth passes the limit: it waits, deferred with code quota, no attempt.
    let (_, m) = server
        .submit(&key, &mail(&addr("r3", "example.org"), "m3"))
        .await;
    let late = m["id"].as_str().unwrap().to_string();
    let waiting = server.wait_status(&late, "deferred").await;
    assert_eq!(waiting["last_error"]["code"], "quota", "{waiting}");
    assert!(waiting["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("3 recipients"));
    assert_eq!(waiting["attempt_count"], 0);
    assert_eq!(waiting["attempts"], json!([]), "no attempt is added");
    let q = server.queue().await;
    let p = &q["profiles"][0];
    assert_eq!(p["usage"]["recipients_today"], 3, "{q}");
    assert_eq!(p["limits"]["recipients_per_day"], 3, "{q}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("mailroom_quota_reached_total{profile=\"default\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mailroom_profile_recipients_today{profile=\"default\"} 3"),
        "{metrics}"
    );
    assert_eq!(rig.smtp.messages().len(), 3);
    // quota.reached names the profile, the limit and when it allows again.
    let hooks = receiver.wait_for(1).await;
    let event = hooks[0].json();
    assert_eq!(event["type"], "quota.reached", "{event}");
    assert_eq!(event["data"]["profile"], "default", "{event}");
    assert_eq!(event["data"]["limit"], "recipients_per_day");
    assert_eq!(event["data"]["value"], 3);
    assert!(event["data"]["until"].is_string(), "{event}");
    // Hours later, still inside the window: it still waits and never fails,
    // however long --max-queue-time is exceeded meanwhile.
    clock.advance(Duration::from_secs(20 * 3600));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = server.message(&late).await;
    assert_eq!(m["status"], "deferred", "{m}");
    assert_eq!(rig.smtp.messages().len(), 3);
    // A day after the first sends, the window frees and it goes.
    clock.advance(Duration::from_secs(4 * 3600 + 5));
    server.wait_status(&late, "sent").await;
    assert_eq!(rig.smtp.messages().len(), 4);
    assert_eq!(
        receiver.hooks().len(),
        1,
        "quota.reached once per crossing, not once per try"
    );
}

/// The profile's day counts the recipients the server took, as Exchange
/// does: an attempt the server put off (a busy `451` to DATA) counts none,
/// so its retry is not held back by a quota its own failed try used up; a
/// partly delivered one counts the recipients that had it.
#[tokio::test]
async fn the_day_counts_only_recipients_the_server_took() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    daily_limit(&server, 3).await;
    let (_, key) = server.new_app(json!({"name": "Daily"})).await;
    let today = || async {
        let q = server.queue().await;
        q["profiles"][0]["usage"]["recipients_today"].clone()
    };
    rig.smtp.configure(|c| {
        c.data_reply = Some("451 4.7.500 Server busy. Please try again later".into())
    });
    let two = json!({"to": [addr("a", "example.org"), addr("b", "example.org")], "subject": "busy", "text": "x"});
    let (s, m) = server.submit(&key, &two).await;
    assert_eq!(s, 202, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let m = server.wait_status(&id, "deferred").await;
    assert_eq!(m["last_error"]["code"], "4.7.500", "{m}");
    assert_eq!(today().await, 0, "the server took no recipient");
    rig.smtp.configure(|c| c.data_reply = None);
    server.retry(&id).await;
    let m = server.wait_status(&id, "sent").await;
    assert_eq!(m["attempt_count"], 2, "{m}");
    assert_eq!(today().await, 2);
    // One recipient put off at RCPT beside one taken: one counts.
    daily_limit(&server, 10).await;
    let busy = addr("busy", "example.org");
    rig.smtp.configure(|c| {
        c.rcpt_replies.insert(
            busy.clone(),
            "450 4.2.1 Mailbox busy, try again later".into(),
        );
    });
    let (_, m) = server
        .submit(
            &key,
            &json!({"to": [busy.clone(), addr("c", "example.org")], "subject": "partly", "text": "x"}),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    let m = server.wait_status(&id, "deferred").await;
    assert_eq!(m["last_error"]["code"], "4.2.1", "{m}");
    assert_eq!(today().await, 3);
    // Exchange's own daily limit takes nothing either: the message waits,
    // and Mailroom's count does not grow with each hour's try.
    rig.smtp.configure(|c| {
        c.data_reply =
            Some("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException".into())
    });
    let (_, m) = server
        .submit(&key, &mail(&addr("d", "example.org"), "over"))
        .await;
    let m = server
        .wait_status(m["id"].as_str().unwrap(), "deferred")
        .await;
    assert_eq!(m["last_error"]["code"], "quota", "{m}");
    assert_eq!(today().await, 3, "Exchange took nothing");
}

#[tokio::test]
async fn a_message_keeps_its_profile_when_its_app_moves() {
    let (rig, server) = saved_rig(|_| {}).await;
    rig.entra.register(TENANT_B, CLIENT_B, SECRET_B);
    let b = add_profile(&server, "B", &settings_b(&rig, SECRET_B), json!({})).await;
    let id = b["id"].as_str().unwrap().to_string();
    // Pause B by refusing its tenant's tokens, so its message waits.
    rig.entra.register(
        TENANT_B,
        CLIENT_B,
        "Qq1Q~anotherSecretNowValid0123456789abcd",
    );
    let (app, key) = server
        .new_app(json!({"name": "Mover", "profile": id}))
        .await;
    let (_, m) = server
        .submit(&key, &mail(&addr("z", "example.org"), "moving"))
        .await;
    let msg = m["id"].as_str().unwrap().to_string();
    let (s, _) = server
        .admin(
            Method::PATCH,
            &format!("/api/apps/{app}"),
            Some(json!({"profile": "default"})),
        )
        .await;
    assert_eq!(s, 200);
    let m = server.message(&msg).await;
    assert_eq!(m["profile"], id, "{m}");
    // The next one goes out through the default profile.
    let (_, m2) = server
        .submit(&key, &mail(&addr("z", "example.org"), "moved"))
        .await;
    let m2 = server.wait_status(m2["id"].as_str().unwrap(), "sent").await;
    assert_eq!(m2["profile"], "default");
}

#[tokio::test]
async fn a_database_from_the_release_before_profiles_becomes_the_default_profile() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Loopback::start(SmtpConfig::default()).await;
    let data = tempfile::tempdir().unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/before-profiles");
    for f in ["mailroom.db", "secret.key"] {
        let to = data.path().join(f);
        std::fs::copy(fixture.join(f), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = data.path().to_path_buf();
    // The fixture's messages were queued on 2026-12-02: with the default
    // 24 hours they would fail as too old on any later day.
    let server = start(&rig, move |a| {
        a.data_dir = dir;
        a.sending.max_queue_time = std::time::Duration::from_secs(3650 * 86_400);
    })
    .await;

    // The old settings, history and pause are the default profile's.
    let (_, list) = server.admin(Method::GET, "/api/profiles", None).await;
    let p = &list["profiles"][0];
    assert_eq!(list["profiles"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(p["id"], "default");
    assert_eq!(p["version"], 2);
    assert_eq!(p["settings"]["sender_name"], "Contoso");
    assert_eq!(p["settings"]["client_secret_set"], true, "{p}");
    // The pause made before the upgrade (its first `since` is kept while
    // the reason may change at the next try, now against the fakes).
    const SINCE: &str = "2026-12-02T00:08:04.731731105Z";
    assert_eq!(p["paused"]["since"], SINCE, "{p}");
    let (_, history) = server
        .admin(Method::GET, "/api/settings/history", None)
        .await;
    assert_eq!(history["changes"].as_array().unwrap().len(), 2, "{history}");
    let (_, same) = server
        .admin(Method::GET, "/api/profiles/default/history", None)
        .await;
    assert_eq!(same, history);
    let q = server.queue().await;
    // All three wait (one may be in a probe of the paused delivery).
    let waiting =
        q["counts"]["queued"].as_u64().unwrap() + q["counts"]["sending"].as_u64().unwrap();
    assert_eq!(waiting, 3, "{q}");
    assert_eq!(q["paused"]["since"], SINCE, "{q}");
    // The app and its messages belong to the default profile, its limits kept.
    let (_, apps) = server.admin(Method::GET, "/api/apps", None).await;
    assert_eq!(apps["apps"][0]["profile"], "default", "{apps}");
    assert_eq!(apps["apps"][0]["limits"]["messages_per_day"], 500);
    let (_, msgs) = server.admin(Method::GET, "/api/messages", None).await;
    let msgs = msgs["messages"].as_array().unwrap().clone();
    assert_eq!(msgs.len(), 3);
    assert!(msgs.iter().all(|m| m["profile"] == "default"));

    // The stored secret still opens: a test with the stored settings gets
    // its token from Entra with it and fails only at the closed port after.
    let mut old = oauth_settings("127.0.0.1", 9);
    old.client_secret = None;
    old.sender_name = "Contoso".into();
    let (status, tested) = server
        .admin(
            Method::POST,
            "/api/settings/test",
            Some(json!({"settings": old, "recipient": addr("admin", "contoso.com")})),
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["ok"], false, "{tested}");
    assert_eq!(tested["stage"], "connect", "past the token: {tested}");
    assert!(rig.entra.requests() >= 1);
    // Settings pointed at the fakes deliver the messages made before the upgrade.
    let mut s = oauth_settings("localhost", rig.smtp.port());
    s.sender_name = "Contoso".into();
    let (status, saved) = server
        .admin(
            Method::PUT,
            "/api/settings",
            Some(json!({"settings": s, "version": 2})),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    for m in &msgs {
        server.wait_status(m["id"].as_str().unwrap(), "sent").await;
    }
    assert!(rig
        .smtp
        .messages()
        .iter()
        .all(|m| m.data.contains("before the upgrade")));
}

/// SIGKILL while two profiles deliver: after a restart every acknowledged
/// message of each goes out through its own profile, and only those in
/// flight at the kill may go twice.
#[tokio::test]
async fn sigkill_while_two_profiles_deliver_loses_nothing_acknowledged() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    rig.entra.register(TENANT_B, CLIENT_B, SECRET_B);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut first, mut server) = spawn_saved(&rig, &data, "0").await;
    // Five a second each: the kill lands with messages queued and sending.
    let pace = json!({"messages_per_minute": 300});
    let (s, _) = server
        .admin(
            Method::PATCH,
            "/api/profiles/default",
            Some(json!({"limits": pace})),
        )
        .await;
    assert_eq!(s, 200);
    let b = add_profile(&server, "B", &settings_b(&rig, SECRET_B), pace).await;
    let (_, key_a) = server.new_app(json!({"name": "A"})).await;
    let (_, key_b) = server
        .new_app(json!({"name": "B", "profile": b["id"]}))
        .await;
    let mut ids = Vec::new();
    for i in 0..20 {
        for (key, who) in [(&key_a, "a"), (&key_b, "b")] {
            let (s, m) = server
                .submit(key, &mail(&addr("r", "example.org"), &format!("{who} {i}")))
                .await;
            assert_eq!(s, 202, "{m}");
            ids.push(m["id"].as_str().unwrap().to_string());
        }
    }
    wait_received(&rig, 4).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    assert!(rig.smtp.messages().len() < 40, "the kill came mid-delivery");

    let (_second, url) = spawn_mailroom(&rig, &data, "0").await;
    server.url = url;
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    let mut per_subject = std::collections::BTreeMap::<String, (usize, Option<String>)>::new();
    for m in rig.smtp.messages() {
        let subject = m.subject().unwrap_or_default().to_string();
        let e = per_subject.entry(subject).or_default();
        e.0 += 1;
        e.1 = m.user.clone();
    }
    for i in 0..20 {
        let a = &per_subject[&format!("a {i}")];
        assert_eq!(a.1.as_deref(), Some(mailer().as_str()), "a {i}");
        let b = &per_subject[&format!("b {i}")];
        assert_eq!(b.1.as_deref(), Some(billing().as_str()), "b {i}");
    }
    let twice = per_subject.values().filter(|(n, _)| *n > 1).count();
    assert!(
        twice <= 6,
        "only messages in flight at the kill may go twice: {twice}"
    );
}

#[tokio::test]
async fn credential_expiring_goes_out_once_a_day_per_profile_across_restarts() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    rig.entra.register(TENANT_B, CLIENT_B, SECRET_B);
    let receiver = mailroom_fakes::FakeReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let today = time::OffsetDateTime::now_utc().date();
    let in_days = |n: i64| (today + time::Duration::days(n)).to_string();

    // The default profile's secret ends in 10 days; a receiver subscribes.
    let (mut first, url) = spawn_mailroom(&rig, &data, "0").await;
    let server = Running::client(url);
    let mut s = oauth_settings("localhost", rig.smtp.port());
    s.client_secret_expires = Some(in_days(10));
    server.save(&s).await;
    server
        .add_webhook(json!({"url": receiver.url("/expiring"), "events": ["credential.expiring"]}))
        .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();

    // The next start's check announces it, naming the profile.
    let (mut second, url) = spawn_mailroom(&rig, &data, "0").await;
    let server = Running::client(url);
    let hooks = receiver.wait_for(1).await;
    let event = hooks[0].json();
    assert_eq!(event["type"], "credential.expiring", "{event}");
    assert_eq!(event["data"]["profile"], "default", "{event}");
    // A second profile whose secret ends in 20 days is added.
    let mut b = settings_b(&rig, SECRET_B);
    b.client_secret_expires = Some(in_days(20));
    let b = add_profile(&server, "Billing", &b, json!({})).await;
    second.start_kill().unwrap();
    second.wait().await.unwrap();

    // After another restart the new profile has its own warning at once,
    // and the default profile's, sent less than a day ago, is not repeated.
    let (_third, url) = spawn_mailroom(&rig, &data, "0").await;
    // The page's warnings name their profile too, so each links to its own
    // settings.
    let (_, q) = Running::client(url)
        .admin(Method::GET, "/api/queue", None)
        .await;
    let named: Vec<Value> = coded(&q, "credential_expiring")
        .iter()
        .map(|w| w["profile"].clone())
        .collect();
    assert_eq!(named, vec![json!("default"), b["id"].clone()], "{q}");
    let hooks = receiver.wait_for(2).await;
    let event = hooks[1].json();
    assert_eq!(event["data"]["profile"], b["id"], "{event}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let profiles: Vec<Value> = receiver
        .hooks()
        .iter()
        .map(|h| h.json()["data"]["profile"].clone())
        .collect();
    assert_eq!(profiles, vec![json!("default"), b["id"].clone()]);
}

/// A profile copied from another whose mailbox was not changed: Exchange's
/// limits are the mailbox's, each profile counts only its own, so
/// `GET /api/queue` warns until the two profiles' limits fit together.
#[tokio::test]
async fn profiles_that_sign_in_as_one_mailbox_are_warned_of_until_their_limits_fit() {
    let (rig, server) = saved_rig(|_| {}).await;
    let shared = |q: &Value| coded(q, "mailbox_shared");
    let queue = || async { server.admin(Method::GET, "/api/queue", None).await.1 };
    assert!(shared(&queue().await).is_empty());
    let copy = oauth_settings("localhost", rig.smtp.port());
    let made = add_profile(&server, "Copy of default", &copy, json!({})).await;
    let id = made["id"].as_str().unwrap().to_string();
    // Another tenant's mailbox shares nothing.
    add_profile(&server, "Other tenant", &settings_b(&rig, "x"), json!({})).await;
    let q = queue().await;
    let w = shared(&q);
    assert_eq!(w.len(), 1, "{q}");
    assert!(w[0].get("profile").is_none(), "about several: {q}");
    let said = w[0]["message"].as_str().unwrap();
    let mailbox = copy.username.clone().unwrap();
    assert!(
        said.contains("“Default” and “Copy of default” both sign in as")
            && said.contains(&mailbox)
            && said.contains("together 20000 recipients a day and 60 messages a minute")
            && !said.contains("Other tenant"),
        "{said}"
    );
    assert!(w[0]["hint"]
        .as_str()
        .unwrap()
        .contains("own licensed mailbox"));
    // Limits that fit the mailbox together: no warning.
    let limits = |path: String, day: u32, minute: Option<u32>| {
        let server = &server;
        async move {
            let body =
                json!({"limits": {"recipients_per_day": day, "messages_per_minute": minute}});
            let (s, e) = server.admin(Method::PATCH, &path, Some(body)).await;
            assert_eq!(s, 200, "{e}");
        }
    };
    limits("/api/profiles/default".into(), 6000, Some(20)).await;
    limits(format!("/api/profiles/{id}"), 4000, Some(10)).await;
    assert!(shared(&queue().await).is_empty());
    // Back to the provider's rate on one: 20 + 30 a minute pass 30.
    limits(format!("/api/profiles/{id}"), 4000, None).await;
    let q = queue().await;
    assert_eq!(shared(&q).len(), 1, "{q}");
}

/// A profile that signs in to Exchange Online with a password is warned of
/// on every view (Microsoft turns basic authentication off by default at
/// the end of December 2026), naming the profile so the page links to its
/// settings; switching it to OAuth ends the warning.
#[tokio::test]
async fn a_profile_signing_in_to_office_365_with_a_password_is_warned_of_until_it_uses_oauth() {
    let (rig, server) = saved_rig(|_| {}).await;
    let retiring = |q: &Value| coded(q, "basic_auth_retiring");
    let queue = || async { server.admin(Method::GET, "/api/queue", None).await.1 };
    assert!(retiring(&queue().await).is_empty(), "OAuth");
    let mut basic = settings_b(&rig, "x");
    basic.auth_method = mailroom_shared::AuthMethod::Password;
    basic.password = Some("app-password".into());
    let made = add_profile(&server, "Old printer", &basic, json!({})).await;
    let id = made["id"].as_str().unwrap().to_string();
    let q = queue().await;
    let w = retiring(&q);
    assert_eq!(w.len(), 1, "{q}");
    assert_eq!(w[0]["profile"], id.as_str(), "{q}");
    assert_eq!(w[0]["at"], "2026-12-31T00:00:00Z", "{q}");
    let said = w[0]["message"].as_str().unwrap();
    assert!(
        said.starts_with("Profile “Old printer”: Mailroom signs in to Office 365 with a password")
            && said.contains("535 5.7.139"),
        "{said}"
    );
    assert!(w[0]["hint"].as_str().unwrap().contains("SMTP.SendAsApp"));
    // For alerting, the date (the OAuth profile has none).
    let series = "mailroom_basic_auth_retirement_timestamp_seconds";
    let metrics = server.metrics().await;
    let dated: Vec<&str> = metrics.lines().filter(|l| l.starts_with(series)).collect();
    assert_eq!(
        dated,
        [format!("{series}{{profile=\"{id}\"}} 1798675200")],
        "{metrics}"
    );
    // The same profile on OAuth: nothing left to retire.
    let (s, saved) = server
        .admin(
            Method::PUT,
            &format!("/api/profiles/{id}"),
            Some(json!({"settings": settings_b(&rig, "x"), "version": 1})),
        )
        .await;
    assert_eq!(s, 200, "{saved}");
    let q = queue().await;
    assert!(retiring(&q).is_empty(), "{q}");
    assert!(!server.metrics().await.contains(&format!("{series}{{")));
}
