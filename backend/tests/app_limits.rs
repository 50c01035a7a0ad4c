//! Isolation, the fairness part: per-app limits (docs/API.md §6) refused
//! before anything is stored, over HTTP, the relay and sendmail; `PATCH
//! /api/apps/{id}`; and delivery that takes apps in turn.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::wire::Wire;
use common::*;
use mailroom_backend::config::SmtpListen;
use mailroom_fakes::{addr, Loopback};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

fn mail(subject: &str) -> Value {
    json!({"to": [addr("ops", "example.org")], "subject": subject, "text": "t"})
}

async fn patch(server: &Running, id: &str, body: Value) -> (u16, Value) {
    server
        .admin(
            reqwest::Method::PATCH,
            &format!("/api/apps/{id}"),
            Some(body),
        )
        .await
}

async fn app_json(server: &Running, id: &str) -> Value {
    let (_, list) = server.admin(reqwest::Method::GET, "/api/apps", None).await;
    list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .expect("the app is listed")
}

#[tokio::test]
async fn a_submission_past_a_limit_gets_429_and_nothing_is_stored() {
    let (_rig, server) = saved_rig(|_| {}).await;
    let (id, key) = server
        .new_app(json!({"name": "Reports", "limits": {"messages_per_hour": 2}}))
        .await;
    for i in 0..2 {
        let (status, body) = server.submit(&key, &mail(&format!("m{i}"))).await;
        assert_eq!(status, 202, "{body}");
    }
    let resp = server
        .http
        .post(format!("{}/api/messages", server.url))
        .bearer_auth(&key)
        .json(&mail("third"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 3500 && wait <= 3600, "{wait}");
    let body: Value = resp.json().await.unwrap();
    let text = body["errors"]["limits"][0].as_str().unwrap();
    assert!(text.contains("messages_per_hour (2)"), "{body}");
    let app = app_json(&server, &id).await;
    assert_eq!(app["limits"]["messages_per_hour"], 2);
    assert_eq!(app["limits"]["queued_max"], 10000, "the default");
    assert_eq!(app["usage"]["messages_last_hour"], 2, "{app}");
    assert_eq!(app["usage"]["recipients_today"], 2, "{app}");
    let (_, list) = server
        .admin(reqwest::Method::GET, "/api/messages", None)
        .await;
    assert_eq!(
        list["messages"].as_array().unwrap().len(),
        2,
        "the third was not stored"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(&format!("mailroom_quota_reached_total{{app=\"{id}\"}} 1")),
        "{metrics}"
    );
    // Raised: the next one goes in, with the same key.
    let (status, changed) =
        patch(&server, &id, json!({"limits": {"messages_per_hour": null}})).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["limits"]["messages_per_hour"], Value::Null);
    let (status, body) = server.submit(&key, &mail("after")).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn apps_are_changed_with_patch_and_bad_changes_are_refused_first() {
    let (_rig, server) = saved_rig(|_| {}).await;
    let (id, key) = server.new_app(json!({"name": "Scanner"})).await;
    server.new_app(json!({"name": "Printer"})).await;
    let cases = [
        (json!({"limits": {"recipients_per_day": 0}}), "limits"),
        (json!({"name": " "}), "name"),
        (json!({"name": "printer"}), "name"),
        (json!({"allowed_from": ["not an address"]}), "allowed_from"),
    ];
    for (body, field) in cases {
        let (status, reply) = patch(&server, &id, body.clone()).await;
        assert_eq!(status, 422, "{body}: {reply}");
        assert!(reply["errors"][field].is_array(), "{body}: {reply}");
    }
    let (status, _) = patch(&server, "app_nope", json!({"name": "x"})).await;
    assert_eq!(status, 404);
    let scans = addr("scans", "contoso.com");
    let (status, app) = patch(
        &server,
        &id,
        json!({"name": "Scanner, 3rd floor", "allowed_from": [scans], "rewrite_from": true}),
    )
    .await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["name"], "Scanner, 3rd floor");
    assert_eq!(app["allowed_from"][0], scans);
    assert_eq!(app["rewrite_from"], true);
    assert_eq!(app["limits"]["queued_max"], 10000, "untouched");
    let (status, body) = server.submit(&key, &mail("still works")).await;
    assert_eq!(status, 202, "the key stays: {body}");
}

#[tokio::test]
async fn the_relay_refuses_past_a_limit_with_451_at_mail_and_rcpt() {
    let (_rig, server) = saved_rig(|a| {
        a.relay.smtp_listen = SmtpListen::On("127.0.0.1:0".parse().unwrap());
        a.relay.smtp_hostname = Some("localhost".into());
    })
    .await;
    let (app, key) = server
        .new_app(
            json!({"name": "Relay", "limits": {"messages_per_day": 1, "recipients_per_day": 2}}),
        )
        .await;
    let (mut w, _) = Wire::connect(server.smtp.unwrap()).await;
    w.command("EHLO t").await;
    assert!(w.auth_plain(&app, &key).await.starts_with("235"));
    assert!(w
        .command(&format!("MAIL FROM:<{}>", mailer()))
        .await
        .starts_with("250"));
    // A repeated recipient (in another case) is taken once and not counted
    // again: the third RCPT is still within 2 recipients.
    for who in ["a", "A", "b"] {
        let r = w
            .command(&format!("RCPT TO:<{}>", addr(who, "example.org")))
            .await;
        assert!(r.starts_with("250"), "{who}: {r}");
    }
    let r = w
        .command(&format!("RCPT TO:<{}>", addr("c", "example.org")))
        .await;
    assert!(
        r.starts_with("451 4.7.1") && r.contains("recipients_per_day (2)"),
        "{r}"
    );
    assert!(w.command("DATA").await.starts_with("354"));
    w.send(&format!(
        "From: {}\r\nSubject: one\r\n\r\nx\r\n.\r\n",
        mailer()
    ))
    .await;
    assert!(w.reply().await.starts_with("250 2.0.0"));
    let r = w.command(&format!("MAIL FROM:<{}>", mailer())).await;
    assert!(
        r.starts_with("451 4.7.1") && r.contains("messages_per_day (1)"),
        "{r}"
    );
}

#[tokio::test]
async fn a_full_backlog_is_refused_at_mail_from() {
    // Paused (nothing listens upstream), so the first message stays waiting.
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |a| {
        a.relay.smtp_listen = SmtpListen::On("127.0.0.1:0".parse().unwrap());
        a.relay.smtp_hostname = Some("localhost".into());
    })
    .await;
    let me = mailer();
    let (app, key) = server
        .new_app(json!({"name": "Backlog", "allowed_from": [me], "limits": {"queued_max": 1}}))
        .await;
    let (mut w, _) = Wire::connect(server.smtp.unwrap()).await;
    w.command("EHLO t").await;
    assert!(w.auth_plain(&app, &key).await.starts_with("235"));
    assert!(w
        .command(&format!("MAIL FROM:<{me}>"))
        .await
        .starts_with("250"));
    assert!(w
        .command(&format!("RCPT TO:<{}>", addr("a", "example.org")))
        .await
        .starts_with("250"));
    assert!(w.command("DATA").await.starts_with("354"));
    w.send(&format!("From: {me}\r\nSubject: one\r\n\r\nx\r\n.\r\n"))
        .await;
    assert!(w.reply().await.starts_with("250 2.0.0"));
    let r = w.command(&format!("MAIL FROM:<{me}>")).await;
    assert!(
        r.starts_with("451 4.7.1") && r.contains("queued_max (1)"),
        "{r}"
    );
}

#[tokio::test]
async fn sendmail_exits_75_past_a_limit_so_cron_tries_again() {
    let (_rig, server) = saved_rig(|_| {}).await;
    let (_, key) = server
        .new_app(json!({"name": "Cron", "limits": {"messages_per_hour": 1}}))
        .await;
    let message = format!(
        "From: {}\nTo: {}\nSubject: nightly\n\nok\n",
        mailer(),
        addr("ops", "example.org")
    );
    let mut codes = Vec::new();
    for _ in 0..2 {
        let mut child = tokio::process::Command::new(Path::new(env!("CARGO_BIN_EXE_mailroom")))
            .args(["sendmail", "-t"])
            .env("MAILROOM_URL", &server.url)
            .env("MAILROOM_APP_KEY", &key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(message.as_bytes()).await.unwrap();
        drop(stdin);
        codes.push(child.wait().await.unwrap().code());
    }
    assert_eq!(codes, vec![Some(0), Some(75)]);
}

#[tokio::test]
async fn one_apps_backlog_does_not_hold_back_another_apps_message() {
    // No settings yet: delivery is paused while both apps queue. One
    // connection, so the order sent is the order claimed.
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |a| a.sending.delivery_connections = Some(1)).await;
    let me = mailer();
    let (_, busy) = server
        .new_app(json!({"name": "Bulk", "allowed_from": [me]}))
        .await;
    let (_, quiet) = server
        .new_app(json!({"name": "Alerts", "allowed_from": [me]}))
        .await;
    for i in 0..300 {
        let mut m = mail(&format!("bulk {i:03}"));
        m["from"] = json!(me);
        let (status, body) = server.submit(&busy, &m).await;
        assert_eq!(status, 202, "{body}");
    }
    let mut m = mail("the alert");
    m["from"] = json!(me);
    let (status, body) = server.submit(&quiet, &m).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        rig.smtp.messages().is_empty(),
        "paused until settings are saved"
    );
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    wait_received(&rig, 10).await;
    let subjects: Vec<String> = rig
        .smtp
        .messages()
        .iter()
        .map(|r| r.subject().unwrap_or_default().to_string())
        .collect();
    let at = subjects
        .iter()
        .position(|s| s == "the alert")
        .expect("the alert is among the first ten sent");
    // Taken in turn: Bulk's oldest, then the alert (oldest first, it would
    // be number 301).
    assert_eq!(at, 1, "the alert was number {} of {subjects:?}", at + 1);
}
