//! Sending through Mailroom (docs/API.md §6 to §9): apps, `POST
//! /api/messages`, the durable queue and the delivery engine, against a real
//! server on port 0 and the loopback fakes, with a real HTTP client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mailroom_fakes::{addr, EntraMode, Loopback, SmtpConfig};
use serde_json::{json, Value};

/// Each recipient's status, in order.
fn statuses(m: &Value) -> Vec<&Value> {
    m["recipients"]
        .as_array()
        .map(|r| r.iter().map(|r| &r["status"]).collect())
        .unwrap_or_default()
}

fn mail(to: &[String], subject: &str) -> Value {
    json!({"to": to, "subject": subject, "text": "Hello from the tests."})
}

/// Submits one message to `{to}@example.org` for each `i` in `range`,
/// named `{prefix}{i}`, each acknowledged; answers their ids.
async fn submit_each(
    server: &Running,
    key: &str,
    range: std::ops::Range<usize>,
    prefix: &str,
    to: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in range {
        let (status, q) = server
            .submit(
                key,
                &mail(&[addr(to, "example.org")], &format!("{prefix}{i}")),
            )
            .await;
        assert_eq!(status, 202, "{q}");
        ids.push(q["id"].as_str().unwrap().to_string());
    }
    ids
}

/// The real binary (at `rate` a minute) with saved settings, an app, and `n`
/// acknowledged messages named `{prefix}{i}`: the binary, a client for it, and the ids.
async fn binary_with_queue(
    rig: &Loopback,
    data: &std::path::Path,
    rate: &str,
    n: usize,
    prefix: &str,
) -> (tokio::process::Child, Running, Vec<String>) {
    let (child, server) = spawn_saved(rig, data, rate).await;
    let (_, key) = server.new_app(json!({"name": "Batch"})).await;
    let ids = submit_each(&server, &key, 0..n, prefix, "a").await;
    (child, server, ids)
}

#[tokio::test]
async fn sigkill_mid_delivery_loses_nothing_acknowledged() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Five a second: the kill lands with messages queued and sending.
    let (mut first, server, ids) = binary_with_queue(&rig, &data, "300", 50, "batch ").await;
    wait_received(&rig, 3).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let before_restart = rig.smtp.messages().len();
    assert!(
        before_restart < 50,
        "the kill came mid-delivery ({before_restart} delivered)"
    );

    let (_second, url) = spawn_mailroom(&rig, &data, "0").await;
    let mut server = server;
    server.url = url;
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    let per_subject = count_each(
        rig.smtp
            .messages()
            .iter()
            .map(|m| m.subject().unwrap_or_default().to_string()),
    );
    for i in 0..50 {
        assert!(
            per_subject.contains_key(&format!("batch {i}")),
            "batch {i} was lost"
        );
    }
    let twice = per_subject.values().filter(|n| **n > 1).count();
    assert!(
        twice <= 3,
        "only messages in flight at the kill may arrive twice: {twice}"
    );
}

/// A message that one recipient already has, killed while its retry to
/// the other is in flight: after the restart the other gets it, and the
/// one who has it never gets it again.
#[tokio::test]
async fn sigkill_during_the_retry_of_a_partly_delivered_message_sends_only_the_rest() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (busy, ok) = (addr("busy", "example.org"), addr("ok", "example.org"));
    rig.smtp.configure(|c| {
        c.rcpt_replies.insert(
            busy.clone(),
            "450 4.2.1 Mailbox busy, try again later".into(),
        );
    });
    let (mut first, server) = spawn_saved(&rig, &data, "0").await;
    let (_, key) = server.new_app(json!({"name": "Batch"})).await;
    let (status, q) = server
        .submit(&key, &mail(&[busy.clone(), ok.clone()], "partly"))
        .await;
    assert_eq!(status, 202, "{q}");
    let id = q["id"].as_str().unwrap().to_string();
    let m = server.wait_status(&id, "deferred").await;
    assert_eq!(statuses(&m), ["deferred", "sent"], "{m}");

    // The busy mailbox takes it now, but the server holds its reply to
    // DATA: the kill lands while the retry is in flight.
    rig.smtp.configure(|c| {
        c.rcpt_replies.remove(&busy);
        c.data_delay = Duration::from_secs(30);
    });
    let connections = rig.smtp.connections();
    server.retry(&id).await;
    server.wait_status(&id, "sending").await;
    let started = Instant::now();
    while rig.smtp.connections() == connections {
        assert!(started.elapsed() < Duration::from_secs(20), "no retry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    assert_eq!(
        rig.smtp.messages().len(),
        1,
        "only ok's copy before the kill"
    );

    rig.smtp.configure(|c| c.data_delay = Duration::ZERO);
    let (_second, url) = spawn_mailroom(&rig, &data, "0").await;
    let mut server = server;
    server.url = url;
    let m = server.wait_status(&id, "sent").await;
    assert_eq!(statuses(&m), ["sent", "sent"], "{m}");
    let got = rig.smtp.messages();
    let to = |who: &String| got.iter().filter(|g| g.rcpt_to.contains(who)).count();
    assert_eq!(to(&ok), 1, "ok had it before the kill: {got:?}");
    assert!(to(&busy) >= 1, "busy never got it: {got:?}");
    assert!(
        got.iter().all(|g| g.data == got[0].data),
        "every copy is the one stored message"
    );
}

#[tokio::test]
async fn an_app_sends_json_mail_that_is_delivered_with_xoauth2() {
    let (rig, server, key) = sending_rig().await;
    let to = addr("a", "example.org");
    let bcc = addr("hidden", "example.org");
    let body = json!({"to": [to], "bcc": [bcc], "subject": "Ticket 42", "text": "Hello", "headers": {"X-Ticket": "42"}});
    let (status, queued) = server.submit(&key, &body).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["status"], "queued");
    let id = queued["id"].as_str().unwrap();
    assert!(id.starts_with("msg_"));
    let sent = server.wait_status(id, "sent").await;
    assert_eq!(sent["attempt_count"], 1);
    assert_eq!(sent["recipients"].as_array().unwrap().len(), 2);
    let got = rig.smtp.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].user.as_deref(),
        Some(mailer().as_str()),
        "signed in with XOAUTH2 as the mailbox"
    );
    assert_eq!(
        got[0].rcpt_to,
        vec![to.clone(), bcc.clone()],
        "Bcc is a recipient"
    );
    assert!(
        !got[0].data.contains("hidden@"),
        "but not a header: {}",
        got[0].data
    );
    assert!(got[0].data.contains("Message-ID:") && got[0].data.contains("Date:"));
    assert!(got[0].data.contains("X-Ticket: 42") && got[0].data.contains("Subject: Ticket 42"));
    let q = server.queue().await;
    assert_eq!(q["counts"]["sent"], 1, "{q}");
    assert!(q["paused"].is_null());
    let (_, apps) = server.admin(reqwest::Method::GET, "/api/apps", None).await;
    assert_eq!(apps["apps"][0]["messages"], 1);
    assert!(
        apps["apps"][0].get("key").is_none(),
        "the key is never listed"
    );
}

#[tokio::test]
async fn bad_submissions_get_a_4xx_naming_the_field_and_queue_nothing() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |a| a.sending.max_message_size = 4096).await;
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    let (app_id, key) = server.new_app(json!({"name": "Scripts"})).await;
    let to = vec![addr("a", "example.org")];
    let many: Vec<String> = (0..501)
        .map(|i| addr(&format!("r{i}"), "example.org"))
        .collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"to": to, "subject": "x\r\nBcc: victim@example.org", "text": "x"}),
            422,
            "subject",
        ),
        (
            json!({"to": ["a@example.org\r\nBcc: x@example.org"], "subject": "x", "text": "x"}),
            422,
            "to",
        ),
        (json!({"to": many, "subject": "x", "text": "x"}), 422, "to"),
        (json!({"to": to, "subject": "x"}), 422, "text"),
        (json!({"to": [], "subject": "x", "text": "x"}), 422, "to"),
        (
            json!({"from": addr("ceo", "contoso.com"), "to": to, "subject": "x", "text": "x"}),
            422,
            "from",
        ),
        (
            json!({"to": to, "subject": "x", "text": "x", "headers": {"Bcc": "x"}}),
            422,
            "headers",
        ),
        (
            json!({"to": to, "subject": "x", "text": "x", "headers": {"Authentication-Results": "mx.contoso.com; dkim=pass"}}),
            422,
            "headers",
        ),
        (
            json!({"to": to, "subject": "x", "text": "x".repeat(5000)}),
            413,
            "",
        ),
        (
            json!({"to": "not a list", "subject": "x", "text": "x"}),
            400,
            "to",
        ),
    ];
    for (body, status, field) in cases {
        let (got, answer) = server.submit(&key, &body).await;
        assert_eq!(got, status, "{body} -> {answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        if !field.is_empty() {
            assert!(answer["errors"][field].is_array(), "{field}: {answer}");
        }
    }
    let (status, answer) = server
        .submit(
            &key,
            &json!({"from": addr("ceo", "contoso.com"), "to": to, "subject": "x", "text": "x"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        answer["errors"]["from"][0]
            .as_str()
            .unwrap()
            .contains(&mailer()),
        "names the allowed: {answer}"
    );
    let raw = server
        .http
        .post(format!("{}/api/messages", server.url))
        .bearer_auth(&key)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    // Another type is a 415 that names both types this route takes.
    for content_type in ["text/plain", "message/rfc8222", "multipart/form-data"] {
        let (status, answer) = server
            .post_message(&key, "", content_type, b"x".to_vec())
            .await;
        assert_eq!(status, 415, "{content_type}: {answer}");
        let said = answer["message"].as_str().unwrap();
        assert!(
            said.contains("application/json") && said.contains("message/rfc822"),
            "{said}"
        );
    }
    // curl's -d and --data-binary send a form's type unless told: said so,
    // with the header to add.
    let (status, answer) = server
        .post_message(&key, "", "application/x-www-form-urlencoded", b"x".to_vec())
        .await;
    assert_eq!(status, 415, "{answer}");
    let said = answer["message"].as_str().unwrap();
    assert!(
        said.contains("curl") && said.contains("-H 'Content-Type: message/rfc822'"),
        "{said}"
    );
    let (status, _) = server.submit("mr_wrong", &mail(&to, "x")).await;
    assert_eq!(status, 401);
    let (status, _) = server
        .admin(
            reqwest::Method::DELETE,
            &format!("/api/apps/{app_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = server.submit(&key, &mail(&to, "x")).await;
    assert_eq!(status, 401, "a revoked key stops working at once");
    let q = server.queue().await;
    for s in [
        "queued",
        "sending",
        "sent",
        "deferred",
        "failed",
        "cancelled",
    ] {
        assert_eq!(q["counts"][s], 0, "{s}: {q}");
    }
    assert!(rig.smtp.messages().is_empty());
}

#[tokio::test]
async fn the_same_idempotency_key_queues_one_message() {
    let (rig, server, key) = sending_rig().await;
    let body = mail(&[addr("a", "example.org")], "once");
    let send = || {
        server
            .http
            .post(format!("{}/api/messages", server.url))
            .bearer_auth(&key)
            .header("idempotency-key", "order-4711")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status().as_u16(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    // The same JSON with other spacing and its fields in another order is
    // the same request.
    let mut fields: Vec<(String, Value)> = body.as_object().unwrap().clone().into_iter().collect();
    fields.reverse();
    let reordered = format!(
        "{{ {} }}",
        fields
            .iter()
            .map(|(k, v)| format!("{k:?} :  {v}"))
            .collect::<Vec<_>>()
            .join(",\n ")
    );
    let key_of_app = key.clone();
    let keyed = |key: &str, content_type: &str, body: Vec<u8>, query: &str| {
        server
            .http
            .post(format!("{}/api/messages{query}", server.url))
            .bearer_auth(&key_of_app)
            .header("idempotency-key", key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let same = keyed("order-4711", "application/json", reordered.into_bytes(), "")
        .await
        .unwrap();
    assert_eq!(same.status().as_u16(), 200);
    assert_eq!(same.json::<Value>().await.unwrap()["id"], first["id"]);
    // The key with another message: refused, naming the first; nothing queued.
    let mut other = body.clone();
    other["subject"] = "twice".into();
    let reused = keyed(
        "order-4711",
        "application/json",
        other.to_string().into_bytes(),
        "",
    )
    .await
    .unwrap();
    assert_eq!(reused.status().as_u16(), 422);
    let reused: Value = reused.json().await.unwrap();
    let said = reused["errors"]["idempotency_key"][0].as_str().unwrap();
    assert!(
        said.contains(first["id"].as_str().unwrap()) && said.contains("new key"),
        "{reused}"
    );
    // A whole message: the same bytes to another envelope is another request.
    let raw = format!(
        "From: {}\r\nTo: {}\r\nSubject: raw\r\n\r\nbody\r\n",
        mailroom_shared::fixtures::mailer(),
        addr("a", "example.org")
    );
    let raw_to = |who: &str| {
        let query = format!("?to={}", addr(who, "example.org"));
        keyed("raw-1", "message/rfc822", raw.clone().into_bytes(), &query)
    };
    let raw_first = raw_to("a").await.unwrap();
    assert_eq!(raw_first.status().as_u16(), 202);
    let raw_id = raw_first.json::<Value>().await.unwrap()["id"].clone();
    let raw_again = raw_to("a").await.unwrap();
    assert_eq!(raw_again.status().as_u16(), 200);
    assert_eq!(raw_again.json::<Value>().await.unwrap()["id"], raw_id);
    let raw_elsewhere = raw_to("b").await.unwrap();
    assert_eq!(raw_elsewhere.status().as_u16(), 422);
    // Two keys: refused, whichever comes first, and nothing queued.
    for keys in [["order-4711", "order-4712"], ["order-4713", "order-4711"]] {
        let mut headers = reqwest::header::HeaderMap::new();
        for k in keys {
            headers.append("idempotency-key", k.parse().unwrap());
        }
        let two = server
            .http
            .post(format!("{}/api/messages", server.url))
            .bearer_auth(&key)
            .headers(headers)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(two.status().as_u16(), 422);
        let two: Value = two.json().await.unwrap();
        assert!(
            two["errors"]["idempotency_key"][0]
                .as_str()
                .unwrap()
                .contains("more than one"),
            "{two}"
        );
    }
    server
        .wait_status(first["id"].as_str().unwrap(), "sent")
        .await;
    server.wait_status(raw_id.as_str().unwrap(), "sent").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.smtp.messages().len(), 2);
}

#[tokio::test]
async fn a_refused_recipient_fails_alone_and_the_message_is_sent() {
    let (rig, server, key) = sending_rig().await;
    let gone = addr("gone", "example.org");
    rig.smtp.configure(|c| {
        c.rcpt_replies.insert(
            gone.clone(),
            "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found".into(),
        );
    });
    let ok = addr("ok", "example.org");
    let (_, queued) = server
        .submit(&key, &mail(&[gone.clone(), ok.clone()], "two"))
        .await;
    let m = server
        .wait_status(queued["id"].as_str().unwrap(), "sent")
        .await;
    let recipients = m["recipients"].as_array().unwrap();
    assert_eq!(recipients[0]["status"], "failed", "{m}");
    assert_eq!(recipients[0]["code"], "5.1.1");
    assert_eq!(recipients[1]["status"], "sent");
    // A sent recipient keeps the upstream's own reply to DATA, for message trace.
    assert_eq!(recipients[1]["code"], "2.0.0", "{m}");
    assert_eq!(
        recipients[1]["message"], "250 2.0.0 OK queued as fake",
        "{m}"
    );
    assert_eq!(rig.smtp.messages()[0].rcpt_to, vec![ok]);
    // Its summary says who did not get it, where the list and the
    // message.sent event read it; it said nothing (last_error null).
    let said = &m["last_error"];
    assert_eq!(
        (&said["stage"], &said["code"]),
        (&json!("send"), &json!("5.1.1")),
        "{m}"
    );
    let text = said["message"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(&format!(
            "Sent, but not to {gone} (5.1.1). The server has no such recipient."
        )),
        "{m}"
    );
    let listed = server
        .admin(reqwest::Method::GET, "/api/messages?status=sent", None)
        .await
        .1;
    assert_eq!(
        listed["messages"][0]["last_error"], m["last_error"],
        "{listed}"
    );
    // The attempt was a success, with the refusal's code and fix.
    let attempt = &m["attempts"][0];
    assert_eq!(
        (&attempt["ok"], &attempt["code"]),
        (&json!(true), &json!("5.1.1")),
        "{m}"
    );
    assert!(attempt["hint"].is_string(), "{m}");
    // And /metrics counts the recipient it did not reach, for an alert
    // (mailroom_messages_failed_total counts only messages no one had).
    let app = m["app"].as_str().unwrap_or_default();
    let text = server.metrics().await;
    let line = format!("mailroom_recipients_failed_total{{app=\"{app}\"}} 1");
    assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
}

/// A recipient refused for now (a 4xx to its RCPT) while another is
/// accepted: the message is not done. It stays `deferred`, its body kept,
/// and the next attempt goes to that recipient alone; before, the message
/// was `sent`, its body deleted, and that recipient never had it.
#[tokio::test]
async fn a_recipient_deferred_beside_a_sent_one_is_tried_again_alone() {
    let (rig, server, key) = sending_rig().await;
    let (busy, ok) = (addr("busy", "example.org"), addr("ok", "example.org"));
    let gone = addr("gone", "example.org");
    // What the busy recipient's RCPT is answered.
    let busy_says = |reply: &str| {
        rig.smtp.configure(|c| {
            c.rcpt_replies.insert(busy.clone(), reply.into());
        })
    };
    rig.smtp.configure(|c| {
        c.rcpt_replies.insert(
            busy.clone(),
            "450 4.2.1 Mailbox busy, try again later".into(),
        );
        c.rcpt_replies.insert(
            gone.clone(),
            "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found".into(),
        );
    });
    let (_, q) = server
        .submit(
            &key,
            &mail(&[busy.clone(), ok.clone(), gone.clone()], "two"),
        )
        .await;
    let id = q["id"].as_str().unwrap().to_string();
    let m = server.wait_status(&id, "deferred").await;
    let recipients = m["recipients"].as_array().unwrap();
    assert_eq!(recipients[0]["status"], "deferred", "{m}");
    assert_eq!(recipients[1]["status"], "sent", "{m}");
    assert_eq!(recipients[2]["status"], "failed", "{m}");
    // Why it waits: the busy recipient's reply, not the missing one's.
    assert_eq!(m["last_error"]["code"], "4.2.1", "{m}");
    // The busy mailbox takes it now: the next attempt is for it alone.
    rig.smtp.configure(|c| {
        c.rcpt_replies.remove(&busy);
    });
    server.retry(&id).await;
    let m = server.wait_status(&id, "sent").await;
    let statuses = statuses(&m);
    assert_eq!(statuses, ["sent", "sent", "failed"], "{m}");
    // The recipient an earlier attempt failed is still named once the
    // last one is sent.
    assert_eq!(m["last_error"]["code"], "5.1.1", "{m}");
    let said = m["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        said.starts_with(&format!("Sent, but not to {gone} (5.1.1). ")),
        "{m}"
    );
    let got = rig.smtp.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].rcpt_to, vec![ok.clone()]);
    assert_eq!(got[1].rcpt_to, vec![busy.clone()], "ok is not sent twice");
    assert_eq!(got[0].data, got[1].data, "the same message, kept whole");
    // Counted once, when the message was sent, not again at each attempt.
    let app = m["app"].as_str().unwrap_or_default().to_string();
    let counted = |n: u32| format!("mailroom_recipients_failed_total{{app=\"{app}\"}} {n}");
    let text = server.metrics().await;
    assert!(text.lines().any(|l| l == counted(1)), "{text}");

    // When the one left later fails for good, the message is still sent:
    // someone had it.
    busy_says("450 4.2.1 Mailbox busy, try again later");
    let (_, q) = server
        .submit(&key, &mail(&[busy.clone(), ok.clone()], "again"))
        .await;
    let id = q["id"].as_str().unwrap().to_string();
    server.wait_status(&id, "deferred").await;
    busy_says("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found");
    server.retry(&id).await;
    let m = server.wait_status(&id, "sent").await;
    let recipients = m["recipients"].as_array().unwrap();
    assert_eq!(recipients[0]["status"], "failed", "{m}");
    assert_eq!(recipients[1]["status"], "sent", "{m}");
    let said = m["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        said.starts_with(&format!("Sent, but not to {busy} (5.1.1). ")),
        "{m}"
    );
    let text = server.metrics().await;
    assert!(text.lines().any(|l| l == counted(2)), "{text}");

    // A recipient refused for who sends (the daily quota) beside one the
    // server took waits too: it never fails for the sender's trouble.
    busy_says("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException");
    let (_, q) = server
        .submit(&key, &mail(&[busy.clone(), ok.clone()], "quota"))
        .await;
    let m = server
        .wait_status(q["id"].as_str().unwrap(), "deferred")
        .await;
    assert_eq!(m["recipients"][0]["status"], "deferred", "{m}");
    assert_eq!(m["recipients"][1]["status"], "sent", "{m}");
}

#[tokio::test]
async fn a_temporary_refusal_defers_then_a_retry_sends() {
    let (rig, server, key) = sending_rig().await;
    rig.smtp.configure(|c| {
        c.mail_reply = Some("451 4.7.500 Server busy. Please try again later".into())
    });
    let (_, queued) = server
        .submit(&key, &mail(&[addr("a", "example.org")], "later"))
        .await;
    let id = queued["id"].as_str().unwrap();
    let m = server.wait_status(id, "deferred").await;
    assert_eq!(m["last_error"]["code"], "4.7.500", "{m}");
    assert_eq!(m["attempts"][0]["ok"], false);
    assert!(
        server.queue().await["paused"].is_null(),
        "one message's trouble does not pause"
    );
    rig.smtp.configure(|c| c.mail_reply = None);
    server.retry(id).await;
    let sent = server.wait_status(id, "sent").await;
    assert_eq!(sent["attempt_count"], 2);
    let (status, _) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/messages/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 409, "a sent message cannot be cancelled");
}

#[tokio::test]
async fn an_unreachable_server_pauses_and_nothing_fails_until_it_is_back() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    let closed = common::ClosedPort::new();
    let closed_port = closed.port;
    let mut settings = oauth_settings("localhost", closed_port);
    server.save(&settings).await;
    let (_, key) = server.new_app(json!({"name": "Cron"})).await;
    let ids = submit_each(&server, &key, 0..3, "m", "a").await;
    let q = server.wait_paused(3).await;
    assert_eq!(q["paused"]["stage"], "connect", "{q}");
    assert!(q["paused"]["hint"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(q["counts"]["failed"], 0);
    assert_eq!(q["counts"]["queued"], 3, "{q}");
    // The server is back (here: the settings point at it); saving wakes delivery.
    settings.port = rig.smtp.port();
    settings.client_secret = Some(SECRET.into());
    server.save(&settings).await;
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    assert!(server.queue().await["paused"].is_null());
    assert_eq!(rig.smtp.messages().len(), 3);
}

/// Forwards every connection at `port` to the fake SMTP server: the upstream
/// coming back at the address the settings already name.
fn forward(port: common::ClosedPort, to: u16) -> tokio::task::JoinHandle<()> {
    let listener = port.listen();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut up).await;
                }
            });
        }
    })
}

#[tokio::test]
async fn a_paused_queue_resumes_by_itself_when_the_server_comes_back() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |a| {
        a.sending.pause_retry = std::time::Duration::from_millis(300)
    })
    .await;
    let closed = common::ClosedPort::new();
    let port = closed.port;
    server.save(&oauth_settings("localhost", port)).await;
    let (_, key) = server.new_app(json!({"name": "Printer"})).await;
    let ids = submit_each(&server, &key, 0..4, "p", "scan").await;
    let q = server.wait_paused(4).await;
    assert_eq!(q["paused"]["stage"], "connect", "{q}");
    // Several probes fail while it stays down; nothing fails and nothing is counted.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // (A probe may hold one message `sending` at the moment of looking.)
    let q = server.queue().await;
    let waiting =
        q["counts"]["queued"].as_u64().unwrap() + q["counts"]["sending"].as_u64().unwrap();
    assert_eq!(waiting, 4, "{q}");
    assert_eq!(q["counts"]["failed"], 0, "{q}");
    assert_eq!(q["counts"]["deferred"], 0, "{q}");
    for id in &ids {
        let d = server.message(id).await;
        assert_eq!(d["attempt_count"], 0, "a pause is not an attempt: {d}");
    }
    // The upstream comes back at the same address; no settings are saved.
    let _up = forward(closed, rig.smtp.port());
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    assert!(server.queue().await["paused"].is_null());
    assert_eq!(rig.smtp.messages().len(), 4);
}

#[tokio::test]
async fn a_rejected_secret_pauses_with_the_aadsts_fix_until_a_good_one_is_saved() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    rig.entra.set_mode(EntraMode::Error {
        status: 401,
        error: "invalid_client",
        code: 7000215,
    });
    let (_, key) = server.new_app(json!({"name": "Monitoring"})).await;
    let ids = submit_each(&server, &key, 0..2, "m", "a").await;
    let q = server.wait_paused(2).await;
    assert_eq!(q["paused"]["stage"], "token", "{q}");
    assert_eq!(q["paused"]["code"], "AADSTS7000215");
    assert!(
        q["paused"]["hint"].as_str().unwrap().contains("Value"),
        "{q}"
    );
    assert_eq!(q["counts"]["queued"], 2);
    let m = server.message(&ids[0]).await;
    assert_eq!(m["status"], "queued", "a pause never fails a message: {m}");
    assert_eq!(
        m["attempts"][0]["code"], "AADSTS7000215",
        "the attempt is on record: {m}"
    );
    rig.entra.set_mode(EntraMode::Normal);
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    assert!(server.queue().await["paused"].is_null());
}

#[tokio::test]
async fn an_idle_profile_whose_secret_was_deleted_pauses_before_any_message_and_resumes_by_itself()
{
    let (rig, server) = saved_rig(checking).await;
    // The check signs in with fresh tokens and sends nothing.
    wait_for("no sign-in check", || rig.smtp.auth_attempts().len() >= 2).await;
    assert!(rig.entra.requests() >= 2, "a fresh token each time");
    assert!(rig.smtp.auth_attempts().iter().all(|(ok, _)| *ok));
    assert!(rig.smtp.messages().is_empty(), "a check sends nothing");
    assert!(server.queue().await["paused"].is_null());
    // The secret is deleted in Entra; no message is sent meanwhile.
    rig.entra.set_mode(EntraMode::Error {
        status: 401,
        error: "invalid_client",
        code: 7000215,
    });
    let q = server.wait_paused(0).await;
    assert_eq!(q["paused"]["stage"], "token", "{q}");
    assert_eq!(q["paused"]["code"], "AADSTS7000215", "{q}");
    let message = q["paused"]["message"].as_str().unwrap();
    assert!(
        message.contains("sign-in check while no message was waiting"),
        "{q}"
    );
    assert!(
        q["paused"]["hint"].as_str().unwrap().contains("Value"),
        "{q}"
    );
    let metrics = server.metrics().await;
    assert!(metrics.contains("mailroom_delivery_paused{profile=\"default\"} 1"));
    // Counted by outcome: at least the two that passed and the two refused.
    for outcome in ["passed", "refused"] {
        let series =
            format!("mailroom_sign_in_checks_total{{profile=\"default\",outcome=\"{outcome}\"}} ");
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series}: {metrics}"));
        assert!(count >= 2, "{series}{count}");
    }
    // A message handed in meanwhile waits: it is not bounced.
    let (_, key) = server.new_app(json!({"name": "Reports"})).await;
    let ids = submit_each(&server, &key, 0..1, "r", "boss").await;
    server.wait_paused(1).await;
    // A good secret again in Entra (consent granted again, say): the pause
    // ends without saving the settings, and the message goes.
    rig.entra.set_mode(EntraMode::Normal);
    server.wait_status(&ids[0], "sent").await;
    server.wait_unpaused().await;
    // Nothing waits now: the check alone ends a pause it found.
    rig.entra.set_mode(EntraMode::Error {
        status: 400,
        error: "unauthorized_client",
        code: 700016,
    });
    server.wait_paused(0).await;
    rig.entra.set_mode(EntraMode::Normal);
    server.wait_unpaused().await;
    assert_eq!(rig.smtp.messages().len(), 1, "only the message was sent");
}

/// The first check comes soon after the start (a start often follows a
/// change of machine, proxy or firewall), then not again for the
/// option's 6 hours; a check before any settings are saved counts as none.
#[tokio::test]
async fn the_first_sign_in_check_comes_at_the_start_then_every_six_hours() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |a| {
        a.sending.pause_retry = Duration::from_millis(300);
    })
    .await;
    // Nothing saved for a few turns: nothing to check with yet.
    tokio::time::sleep(Duration::from_millis(700)).await;
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    wait_for("no first check", || rig.smtp.auth_attempts().len() == 1).await;
    let tokens = rig.entra.requests();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rig.smtp.auth_attempts().len(),
        1,
        "checked again before 6 h"
    );
    assert_eq!(rig.entra.requests(), tokens);
    let metrics = server.metrics().await;
    assert!(
        metrics
            .contains("mailroom_sign_in_checks_total{profile=\"default\",outcome=\"passed\"} 1\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("outcome=\"other\""), "{metrics}");
}

/// A server that only takes mail (`--delivery-connections 0`, beside
/// others that deliver) signs in nowhere: checks are the delivering
/// servers' work.
#[tokio::test]
async fn a_server_that_delivers_nothing_checks_nothing() {
    let (rig, _server) = saved_rig(|a| {
        checking(a);
        a.sending.delivery_connections = Some(0);
    })
    .await;
    // Two of the check's turns (700 ms each).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rig.entra.requests(), 0);
    assert_eq!(rig.smtp.connections(), 0);
}

/// Entra refuses one check (`AADSTS50196`, a hiccup), then takes the
/// secret again; watched every 20 ms for a second and three checks,
/// nothing pauses (`what` says what did).
async fn refused_once(rig: &Loopback, server: &Running, what: &str) {
    rig.entra.set_mode(EntraMode::Error {
        status: 400,
        error: "invalid_request",
        code: 50196,
    });
    let refused_at = rig.entra.requests();
    wait_for("no refused check", || rig.entra.requests() > refused_at).await;
    rig.entra.set_mode(EntraMode::Normal);
    let watched = Instant::now();
    while rig.entra.requests() < refused_at + 3 || watched.elapsed() < Duration::from_secs(1) {
        let q = server.queue().await;
        assert!(q["paused"].is_null(), "{what}: {q}");
        assert!(
            watched.elapsed() < Duration::from_secs(20),
            "no check after the refusal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_outage_at_idle_pauses_only_once_it_lasts_five_checks() {
    let (rig, server) = saved_rig(checking).await;
    // Entra down (a 502 page) for three checks: nothing pauses.
    rig.entra.set_mode(EntraMode::BadGateway);
    let before = rig.entra.requests();
    wait_for("no sign-in check", || rig.entra.requests() >= before + 3).await;
    assert!(
        server.queue().await["paused"].is_null(),
        "a short outage at idle is not announced"
    );
    // One refusal (a hiccup with an AADSTS code) right after an outage is
    // a first refusal, not the outage's fourth strike.
    refused_once(&rig, &server, "a refusal after an outage paused").await;
    // Down again, and it lasts: paused after five checks in a row.
    let down_at = rig.entra.requests();
    rig.entra.set_mode(EntraMode::BadGateway);
    let q = server.wait_paused(0).await;
    assert!(rig.entra.requests() >= down_at + 5, "{q}");
    assert_eq!(q["paused"]["stage"], "token", "{q}");
    assert_eq!(q["paused"]["code"], "502", "{q}");
    assert!(
        q["paused"]["message"]
            .as_str()
            .unwrap()
            .ends_with("new messages wait until it is fixed."),
        "{q}"
    );
    rig.entra.set_mode(EntraMode::Normal);
    server.wait_unpaused().await;
}

#[tokio::test]
async fn an_idle_check_pauses_when_smtp_auth_is_switched_off_and_not_for_one_refusal() {
    let (rig, server) = saved_rig(checking).await;
    wait_for("no sign-in check", || rig.entra.requests() >= 1).await;
    // Entra refuses once (a hiccup with an AADSTS code), then takes the
    // secret again: checked again before pausing, so nothing pauses.
    refused_once(&rig, &server, "one refusal paused").await;
    // SMTP AUTH switched off for the tenant.
    rig.entra.set_mode(EntraMode::Normal);
    rig.smtp.configure(|c| {
        c.auth_reply = Some(
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."
                .into(),
        )
    });
    let q = server.wait_paused(0).await;
    assert_eq!(q["paused"]["stage"], "auth", "{q}");
    assert_eq!(q["paused"]["code"], "5.7.139", "{q}");
    assert!(
        q["paused"]["hint"]
            .as_str()
            .unwrap()
            .contains("Set-CASMailbox"),
        "{q}"
    );
    rig.smtp.configure(|c| c.auth_reply = None);
    server.wait_unpaused().await;
    assert!(rig.smtp.messages().is_empty(), "a check sends nothing");
}

#[tokio::test]
async fn activity_lists_newest_first_with_filters_and_a_cursor() {
    let (_rig, server, key) = sending_rig().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, q) = server
            .submit(
                &key,
                &mail(
                    &[addr(&format!("user{i}"), "example.org")],
                    &format!("report {i}"),
                ),
            )
            .await;
        ids.push(q["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    let (_, page) = server
        .admin(reqwest::Method::GET, "/api/messages?limit=2", None)
        .await;
    let got: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let next = page["next"].as_str().unwrap();
    let (_, page2) = server
        .admin(
            reqwest::Method::GET,
            &format!("/api/messages?limit=2&before={next}"),
            None,
        )
        .await;
    assert_eq!(page2["messages"][0]["id"], ids[2].as_str());
    // The oldest message's page is empty and ends the list; a message id
    // that is not there is an error, never an empty page.
    let (status, last) = server
        .admin(
            reqwest::Method::GET,
            &format!("/api/messages?before={}", ids[0]),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{last}");
    assert!(last["messages"].as_array().unwrap().is_empty());
    assert!(last["next"].is_null());
    let (status, unknown) = server
        .admin(reqwest::Method::GET, "/api/messages?before=msg_gone", None)
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{unknown}");
    assert!(
        unknown["errors"]["before"][0]
            .as_str()
            .is_some_and(|m| m.contains("msg_gone")),
        "{unknown}"
    );
    let (_, found) = server
        .admin(reqwest::Method::GET, "/api/messages?q=user3", None)
        .await;
    assert_eq!(found["messages"].as_array().unwrap().len(), 1);
    assert_eq!(found["messages"][0]["subject"], "report 3");
    // A search past SQLite's 50,000 bytes for a pattern was a 500; one over
    // 1,000 characters is refused naming q, and wildcards up to it are
    // searched for literally.
    let max = mailroom_shared::sending::MAX_SEARCH;
    let (status, long) = server
        .admin(
            reqwest::Method::GET,
            &format!("/api/messages?q={}", "a".repeat(60_000)),
            None,
        )
        .await;
    assert_eq!(status, 400, "{long}");
    assert!(long["errors"]["q"][0]
        .as_str()
        .unwrap()
        .contains("60000 characters"));
    let (status, at_most) = server
        .admin(
            reqwest::Method::GET,
            &format!("/api/messages?q={}", "%25".repeat(max)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{at_most}");
    assert!(at_most["messages"].as_array().unwrap().is_empty());
    let (_, none) = server
        .admin(reqwest::Method::GET, "/api/messages?status=failed", None)
        .await;
    assert!(none["messages"].as_array().unwrap().is_empty());
    let (status, bad) = server
        .admin(reqwest::Method::GET, "/api/messages?status=lost", None)
        .await;
    assert_eq!(status, 400, "{bad}");
    let (_, history) = server
        .admin(reqwest::Method::GET, "/api/settings/history", None)
        .await;
    assert!(history["changes"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "client_secret"));
    assert!(
        !history.to_string().contains(SECRET),
        "names only, never values"
    );
    let anonymous = reqwest::get(format!("{}/api/queue", server.url))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

/// A list filtered by an app or profile that names none was an empty list,
/// which told a script checking `?status=failed&app=Billing` (the app's
/// name, as the page shows it) that nothing failed. It is a 400 naming the
/// field, with the id when the name or another case of it was given; a
/// known one with nothing to list stays an empty list.
#[tokio::test]
async fn a_filter_by_an_app_or_profile_that_names_none_is_refused() {
    let (_rig, server, _key) = sending_rig().await;
    let (billing, _) = server.new_app(json!({"name": "Billing"})).await;
    let get = |path: String| {
        let server = &server;
        async move { server.admin(reqwest::Method::GET, &path, None).await }
    };
    for (path, field, says) in [
        (
            "/api/messages?status=failed&app=Billing".to_string(),
            "app",
            format!("app={billing}"),
        ),
        (
            format!("/api/messages?app={}", billing.to_uppercase()),
            "app",
            format!("app={billing}"),
        ),
        (
            "/api/messages?app=app_0000".to_string(),
            "app",
            "There is no app “app_0000”".to_string(),
        ),
        (
            "/api/messages?profile=Default".to_string(),
            "profile",
            "profile=default".to_string(),
        ),
        (
            "/api/messages?profile=prf_gone".to_string(),
            "profile",
            "There is no profile “prf_gone”".to_string(),
        ),
        (
            // A trusted network's source, mistyped.
            "/api/messages?app=trusted%20network%2010.0.0".to_string(),
            "app",
            "“trusted network 10.0.0” names no address".to_string(),
        ),
    ] {
        let (status, r) = get(path.clone()).await;
        assert_eq!(status, 400, "{path}: {r}");
        let said = r["errors"][field][0].as_str().unwrap_or_default();
        assert!(said.contains(&says), "{path}: {r}");
    }
    // Known, with nothing to list: an empty list, as before.
    for path in [
        format!("/api/messages?status=failed&app={billing}"),
        "/api/messages?status=failed&profile=default".to_string(),
        // A trusted network's source, as a message from it shows in `app`.
        "/api/messages?app=trusted%20network%2010.0.0.5".to_string(),
    ] {
        let (status, r) = get(path.clone()).await;
        assert_eq!(status, 200, "{path}: {r}");
        assert_eq!(r["messages"], json!([]), "{path}: {r}");
    }
    // The bulk retry reads its filter the same way.
    let (status, r) = server
        .admin(
            reqwest::Method::POST,
            "/api/messages/retry?status=failed&app=Billing",
            None,
        )
        .await;
    assert_eq!(status, 400, "{r}");
    assert!(
        r["errors"]["app"][0]
            .as_str()
            .unwrap_or_default()
            .contains(&billing),
        "{r}"
    );
    let (status, r) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/messages/retry?status=failed&app={billing}"),
            None,
        )
        .await;
    assert_eq!(
        (status, r),
        (200, json!({"retried": 0, "skipped": 0, "more": false}))
    );
}

/// SMTP smuggling (2023): an upstream that takes a bare CR as a line end
/// read `CR . CR` in a body as the end of the data, and what followed as
/// commands: a second message, sent as an address the app's From policy
/// refuses. Mailroom sends a bare CR only as CRLF, so that dot line goes
/// stuffed and the upstream gets the one message it was given.
#[tokio::test]
async fn a_body_cannot_smuggle_a_second_message_past_the_from_policy() {
    let (rig, server, key) = sending_rig().await;
    let (ceo, victim) = (addr("ceo", "contoso.com"), addr("victim", "example.org"));
    rig.smtp.configure(|c| {
        c.bare_cr_ends_lines = true;
        // The mailbox may send as the CEO; the app may not.
        c.send_as.insert((mailer(), ceo.clone()));
    });
    let raw = format!(
        "From: {}\r\nTo: {}\r\nSubject: hello\r\n\r\nhello\r.\rMAIL FROM:<{ceo}>\r\nRCPT TO:<{victim}>\r\nDATA\r\nFrom: {ceo}\r\nTo: {victim}\r\nSubject: urgent\r\n\r\nwire the money\r\n",
        mailer(),
        addr("a", "example.org")
    );
    let (status, q) = server.submit_raw(&key, "", raw).await;
    assert_eq!(status, 202, "{q}");
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = rig.smtp.messages();
    let senders: Vec<&str> = got.iter().map(|m| m.mail_from.as_str()).collect();
    assert_eq!(
        senders,
        vec![mailer().as_str()],
        "one message, from the app's sender"
    );
    assert!(
        got[0].data.contains(&format!("MAIL FROM:<{ceo}>")),
        "the lines arrive as the text they are: {}",
        got[0].data
    );
    assert!(
        !got[0]
            .raw
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'\r' && got[0].raw.get(i + 1) != Some(&b'\n')),
        "no bare CR reaches the upstream"
    );
    // A receiver that drops NUL bytes reads a line of NUL and dot as the
    // end: a body holding a NUL is refused, as JSON text with one is.
    let nul = format!(
        "From: {}\r\nTo: {victim}\r\nSubject: nul\r\n\r\nhello\r\n\0.\r\nMAIL FROM:<{ceo}>\r\n",
        mailer()
    );
    let (status, answer) = server.submit_raw(&key, "", nul).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["errors"]["message"][0]
            .as_str()
            .unwrap()
            .contains("NUL byte (on its line 2)"),
        "{answer}"
    );
    assert_eq!(rig.smtp.messages().len(), 1);
}

#[tokio::test]
async fn a_raw_message_keeps_its_headers_loses_bcc_and_gains_a_message_id() {
    let (rig, server, key) = sending_rig().await;
    let (to, bcc) = (addr("a", "example.org"), addr("secret", "example.org"));
    let raw = format!(
        "From: Cron <{}>\r\nTo: {to}\r\nBcc: {bcc}\r\nSubject: nightly\r\nX-Job: backup\r\n\r\n.leading dot\r\nAll good.\r\n",
        mailer()
    );
    let (status, q) = server.submit_raw(&key, "", raw).await;
    assert_eq!(status, 202, "{q}");
    let id = q["id"].as_str().unwrap();
    let details = server.wait_status(id, "sent").await;
    let got = &rig.smtp.messages()[0];
    // The details name the Message-ID the upstream got, and a search by
    // it, with or without its angle brackets, finds the message (and only
    // the whole id does).
    let header = got
        .data
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap();
    assert_eq!(details["message_id"], header, "{details}");
    let bare = header.trim_matches(|c| c == '<' || c == '>');
    for (q, found) in [(header, 1), (bare, 1), (&header[1..header.len() / 2], 0)] {
        let path = format!("/api/messages?q={q}");
        let (_, list) = server.admin(reqwest::Method::GET, &path, None).await;
        let ids: Vec<&Value> = list["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["id"])
            .collect();
        assert_eq!(ids, vec![&json!(id); found], "{q}: {list}");
    }
    assert_eq!(
        got.rcpt_to,
        vec![to.clone(), bcc.clone()],
        "Bcc from the headers is a recipient"
    );
    assert!(
        !got.data.contains("Bcc:") && !got.data.contains("secret@"),
        "{}",
        got.data
    );
    assert!(
        got.data.contains("X-Job: backup") && got.data.contains("Message-ID: <msg_"),
        "{}",
        got.data
    );
    assert!(
        got.data.contains("Date: ") && got.data.contains(".leading dot"),
        "{}",
        got.data
    );
    // The query's envelope wins over the headers.
    let only = addr("only", "example.org");
    let raw = format!(
        "From: {}\r\nTo: {to}\r\nSubject: env\r\n\r\nx\r\n",
        mailer()
    );
    let (status, q) = server.submit_raw(&key, &format!("?to={only}"), raw).await;
    assert_eq!(status, 202, "{q}");
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    assert_eq!(rig.smtp.messages()[1].rcpt_to, vec![only.clone()]);
    // Several in one to=, as sendmail's arguments take them.
    let also = addr("also", "example.org");
    let query = format!("?to={only},%20{also}&to={to}");
    let raw = format!(
        "From: {}\r\nTo: {to}\r\nSubject: env\r\n\r\nx\r\n",
        mailer()
    );
    let (status, q) = server.submit_raw(&key, &query, raw).await;
    assert_eq!(status, 202, "{q}");
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    assert_eq!(rig.smtp.messages()[2].rcpt_to, vec![only, also, to.clone()]);
    let (status, bad) = server.submit_raw(&key, "", "no headers at all").await;
    assert_eq!(status, 422, "{bad}");
    assert!(bad["errors"]["message"].is_array(), "{bad}");
    let raw = format!(
        "From: {}\r\nTo: {to}\r\nSubject: x\r\n\r\nx\r\n",
        addr("ceo", "contoso.com")
    );
    let (status, refused) = server.submit_raw(&key, "", raw).await;
    assert_eq!(status, 422);
    assert!(refused["errors"]["from"][0]
        .as_str()
        .unwrap()
        .contains("allowed_from"));
}

/// RFC 5321 4.4: a message sent over HTTP (JSON or whole) gets a
/// `Received` field at its top naming the client's address (behind a
/// trusted proxy, the one it vouched for), this server, `HTTP` and the id.
#[tokio::test]
async fn a_message_over_http_gets_a_received_field_naming_the_client_and_its_id() {
    let (rig, server) = saved_rig(|a| {
        a.relay.smtp_hostname = Some("mailroom.contoso.test".into());
        a.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (_, key) = server.new_app(json!({"name": "Billing"})).await;
    let to = addr("a", "example.org");
    let (status, q) = server
        .submit(&key, &mail(std::slice::from_ref(&to), "json"))
        .await;
    assert_eq!(status, 202, "{q}");
    let id = q["id"].as_str().unwrap().to_string();
    server.wait_status(&id, "sent").await;
    let got = rig.smtp.messages()[0].data.clone();
    assert_eq!(
        received_of(&got),
        format!("Received: from [127.0.0.1] ([127.0.0.1])\r\n\tby mailroom.contoso.test (Mailroom) with HTTP id {id}")
    );
    assert_eq!(got.matches("Received: ").count(), 1, "{got}");
    // Behind the trusted proxy: the client it names.
    let raw = format!(
        "From: {}\r\nTo: {to}\r\nSubject: raw\r\n\r\nx\r\n",
        mailer()
    );
    let r = reqwest::Client::new()
        .post(format!("{}/api/messages", server.url))
        .bearer_auth(&key)
        .header("content-type", "message/rfc822")
        .header("x-forwarded-for", "2001:db8::7")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    server.wait_status(&id, "sent").await;
    let got = rig.smtp.messages()[1].data.clone();
    assert_eq!(
        received_of(&got),
        format!("Received: from [IPv6:2001:db8::7] ([IPv6:2001:db8::7])\r\n\tby mailroom.contoso.test (Mailroom) with HTTP id {id}")
    );
}

#[tokio::test]
async fn rewrite_from_sends_as_the_settings_sender_with_the_original_in_reply_to() {
    let (rig, server, _) = sending_rig().await;
    let (_, key) = server
        .new_app(json!({"name": "Legacy app", "rewrite_from": true}))
        .await;
    let original = addr("app", "legacy.example");
    let (status, q) = server
        .submit(&key, &json!({"from": original, "to": [addr("a", "example.org")], "subject": "hi", "text": "x"}))
        .await;
    assert_eq!(status, 202, "{q}");
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    let got = &rig.smtp.messages()[0];
    assert_eq!(
        got.mail_from,
        mailer(),
        "the envelope is the settings' sender"
    );
    assert!(
        got.data.contains(&format!("Reply-To: {original}")),
        "{}",
        got.data
    );
    assert!(
        got.data.contains(&format!("<{}>", mailer())),
        "{}",
        got.data
    );
}

#[tokio::test]
async fn a_connection_dropped_mid_transaction_defers_the_message() {
    let (rig, server, key) = sending_rig().await;
    rig.smtp.configure(|c| c.drop_on = Some("RCPT".into()));
    let (_, q) = server
        .submit(&key, &mail(&[addr("a", "example.org")], "dropped"))
        .await;
    let id = q["id"].as_str().unwrap();
    let m = server.wait_status(id, "deferred").await;
    assert_eq!(m["last_error"]["stage"], "send", "{m}");
    assert!(server.queue().await["paused"].is_null());
    rig.smtp.configure(|c| c.drop_on = None);
    server.retry(id).await;
    server.wait_status(id, "sent").await;
    assert_eq!(rig.smtp.messages().len(), 1);
}

#[tokio::test]
async fn metrics_count_accepted_sent_depth_and_token_requests() {
    let (_rig, server, key) = sending_rig().await;
    let (_, q) = server
        .submit(&key, &mail(&[addr("a", "example.org")], "counted"))
        .await;
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    let (_, apps) = server.admin(reqwest::Method::GET, "/api/apps", None).await;
    let app = apps["apps"][0]["id"].as_str().unwrap().to_string();
    let text = server.metrics().await;
    for line in [
        format!("mailroom_messages_accepted_total{{app=\"{app}\"}} 1"),
        format!("mailroom_messages_sent_total{{app=\"{app}\"}} 1"),
        "mailroom_queue_depth{status=\"sent\"} 1".to_string(),
        "mailroom_queue_depth{status=\"queued\"} 0".to_string(),
        "mailroom_token_requests_total 1".to_string(),
        "mailroom_delivery_latency_seconds_count 1".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    let anonymous = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[tokio::test]
async fn sigterm_stops_within_ten_seconds_and_a_restart_delivers_the_rest() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut first, mut server, ids) = binary_with_queue(&rig, &data, "120", 20, "t").await;
    wait_received(&rig, 2).await;
    let pid = first.id().unwrap().to_string();
    let stopped_at = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(12), first.wait())
        .await
        .expect("stopped within the grace period")
        .unwrap();
    assert!(status.success(), "a clean exit: {status}");
    assert!(stopped_at.elapsed() < Duration::from_secs(11));
    let (_second, url) = spawn_mailroom(&rig, &data, "0").await;
    server.url = url;
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    let subjects: std::collections::BTreeSet<String> = rig
        .smtp
        .messages()
        .iter()
        .filter_map(|m| m.subject().map(str::to_string))
        .collect();
    assert_eq!(subjects.len(), 20, "every message arrived");
    assert_eq!(
        rig.smtp.messages().len(),
        20,
        "and none twice after a clean stop"
    );
}

/// A burst waiting in the queue is shared by the profile's connections
/// (three for Office 365), not claimed whole by the first worker: claims
/// are sized by the upstream's measured pace, and start small.
#[tokio::test]
async fn a_waiting_burst_goes_out_over_every_connection() {
    let (rig, server, key) = sending_rig().await;
    paused_by_expired_secret(&rig, &server, &key).await;
    submit_each(&server, &key, 1..45, "burst ", "a").await;
    server.wait_paused(45).await;
    rig.smtp
        .configure(|c| c.data_delay = Duration::from_millis(20));
    rig.entra.set_mode(EntraMode::Normal);
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    wait_received(&rig, 45).await;
    assert_eq!(
        rig.smtp.peak_connections(),
        3,
        "every connection carried part of the burst"
    );
}

/// Exchange's own daily-limit reply over SMTP (docs/API.md §15: "SMTP
/// `5.2.2`/`SubmissionQuotaExceeded` … treated the same way" as a profile's
/// `recipients_per_day`): the message waits (deferred, code `quota`, no
/// attempt added), `quota.reached` is counted, and delivery is not paused.
/// A sender-level refusal of every recipient at RCPT (Exchange's `5.1.8`
/// for a mailbox it blocked) pauses delivery, as at MAIL FROM; before, it
/// failed the message.
#[tokio::test]
async fn exchanges_daily_limit_over_smtp_is_a_quota_wait_and_a_blocked_sender_pauses() {
    let (rig, server, key) = sending_rig().await;
    let to = addr("a", "example.org");
    rig.smtp.configure(|c| {
        c.data_reply = Some("554 5.2.2 mailbox full; STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message.".into())
    });
    let (_, q) = server
        .submit(&key, &mail(std::slice::from_ref(&to), "quota"))
        .await;
    let waiting = server
        .wait_status(q["id"].as_str().unwrap(), "deferred")
        .await;
    assert_eq!(waiting["last_error"]["code"], "quota", "{waiting}");
    assert_eq!(waiting["attempt_count"], 0, "{waiting}");
    let said = waiting["last_error"]["message"].as_str().unwrap();
    assert!(
        said.contains("SubmissionQuotaExceeded") && said.contains("daily sending limit"),
        "{waiting}"
    );
    // It says when it is tried again (an hour on, Exchange naming no time).
    let when = said
        .split("tried again at ")
        .nth(1)
        .and_then(|w| w.strip_suffix('.'))
        .unwrap_or_else(|| panic!("no time in {said}"));
    // The details say the same time as their own field.
    assert_eq!(waiting["next_attempt_at"].as_str(), Some(when), "{waiting}");
    let when =
        time::OffsetDateTime::parse(when, &time::format_description::well_known::Rfc3339).unwrap();
    let ahead = when - time::OffsetDateTime::now_utc();
    assert!(
        ahead > time::Duration::minutes(55) && ahead <= time::Duration::minutes(60),
        "{when}"
    );
    assert!(server.queue().await["paused"].is_null(), "not a pause");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("mailroom_quota_reached_total{profile=\"default\"} 1"),
        "{metrics}"
    );

    // Every recipient refused at RCPT for who sends: a pause with the fix,
    // and the message kept.
    rig.smtp.configure(|c| {
        c.data_reply = None;
        c.rcpt_replies.insert(
            addr("b", "example.org"),
            "550 5.1.8 Access denied, bad outbound sender".into(),
        );
    });
    let (_, q) = server
        .submit(&key, &mail(&[addr("b", "example.org")], "blocked"))
        .await;
    let paused = server.wait_paused(1).await;
    assert_eq!(paused["paused"]["code"], "5.1.8", "{paused}");
    assert!(
        paused["paused"]["hint"]
            .as_str()
            .unwrap()
            .contains("Restricted entities"),
        "{paused}"
    );
    assert_eq!(
        server.message(q["id"].as_str().unwrap()).await["status"],
        "queued"
    );
}

/// The sending mailbox full (Exchange keeps a copy of each message sent in
/// its Sent Items; Microsoft's "554 5.2.2 mailbox full;
/// STOREDRV.Submission.Exception:QuotaExceededException…"): every message
/// would get the same, so delivery pauses with the fix (free space, a
/// retention policy on Sent Items) and the message waits. Before, each
/// message failed for good, bounced for a full mailbox.
#[tokio::test]
async fn a_full_sending_mailbox_pauses_delivery_with_the_sent_items_fix() {
    let (rig, server, key) = sending_rig().await;
    rig.smtp.configure(|c| {
        c.data_reply = Some("554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent exception with message Cannot save changes made to an item to store.".into())
    });
    let to = addr("a", "example.org");
    let (_, q) = server
        .submit(&key, &mail(std::slice::from_ref(&to), "full"))
        .await;
    let id = q["id"].as_str().unwrap();
    let paused = server.wait_paused(1).await;
    assert_eq!(paused["paused"]["code"], "5.2.2", "{paused}");
    let message = paused["paused"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("The mailbox {} is full", mailer())),
        "{paused}"
    );
    let hint = paused["paused"]["hint"].as_str().unwrap();
    assert!(
        hint.contains(&format!(
            "`Set-Mailbox -Identity \"{}\" -RetentionPolicy \"Mailroom sending mailbox\"`",
            mailer()
        )),
        "{paused}"
    );
    assert_eq!(server.message(id).await["status"], "queued");
    // Room made: saving the settings sends it at once.
    rig.smtp.configure(|c| c.data_reply = None);
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    server.wait_status(id, "sent").await;
    assert!(server.queue().await["paused"].is_null());
}

/// REFERENCE.md: a Send-As refusal is permanent for the message, "a pause
/// if every message fails it". When Exchange refuses the settings' own
/// sender (its Send-As right was taken away after the settings were
/// saved), every message sent as it would fail: delivery pauses with the
/// fix, and resumes once the right is back and the settings are saved. An
/// app's `allowed_from` address refused the same way still fails only that
/// message (docs/API.md §6).
#[tokio::test]
async fn a_send_as_refusal_of_the_settings_sender_pauses_and_an_apps_own_address_fails() {
    let (rig, server) = saved_rig(|_| {}).await;
    let helpdesk = addr("helpdesk", "contoso.com");
    let mut settings = oauth_settings("localhost", rig.smtp.port());
    settings.sender_email = helpdesk.clone();
    settings.send_as_confirmed = true;
    server.save(&settings).await;
    let other = addr("billing", "contoso.com");
    let (_, key) = server
        .new_app(json!({"name": "Billing", "allowed_from": [other]}))
        .await;
    let to = addr("a", "example.org");
    let (_, q) = server
        .submit(&key, &mail(std::slice::from_ref(&to), "as helpdesk"))
        .await;
    let paused = server.wait_paused(1).await;
    assert_eq!(paused["paused"]["code"], "5.7.60", "{paused}");
    let hint = paused["paused"]["hint"].as_str().unwrap();
    assert!(hint.contains("Add-RecipientPermission"), "{paused}");
    let id = q["id"].as_str().unwrap();
    assert_eq!(server.message(id).await["status"], "queued");
    // The right given back, the settings saved: it goes.
    rig.smtp.configure(|c| {
        c.send_as.insert((mailer(), helpdesk.clone()));
    });
    server.save(&settings).await;
    server.wait_status(id, "sent").await;
    assert!(server.queue().await["paused"].is_null());
    // An app's own address that Exchange refuses fails that message alone.
    let (_, q) = server
        .submit(
            &key,
            &json!({"from": other, "to": [to], "subject": "as billing", "text": "x"}),
        )
        .await;
    let failed = server
        .wait_status(q["id"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(failed["last_error"]["code"], "5.7.60", "{failed}");
    assert!(server.queue().await["paused"].is_null());
    // Its words and fix name the address refused, not the settings' sender
    // (whose right was given back above).
    let said = failed["last_error"]["message"].as_str().unwrap();
    assert!(
        said.starts_with(&format!("{} may not send as {other}.", mailer())),
        "{failed}"
    );
    let hint = failed["attempts"][0]["hint"].as_str().unwrap();
    assert!(
        hint.contains(&format!(
            "`Add-RecipientPermission -Identity \"{other}\" -Trustee \"{}\" -AccessRights SendAs`",
            mailer()
        )),
        "{failed}"
    );
    // Its other way is the app's, not the settings': sending as the
    // settings' sender (whose right is back) would be to use the mailbox.
    assert!(
        hint.contains(&format!("If the app should not send as {other}, take it out of the app's allowed_from, or turn on the app's rewrite_from so that its mail goes as {helpdesk}.")),
        "{failed}"
    );
    assert!(!hint.contains("as the sender email"), "{failed}");
}

/// An address beyond ASCII (RFC 6531) goes with MAIL FROM's `SMTPUTF8` where
/// the server offers it, as Exchange Online does; where it does not, a
/// domain beyond ASCII goes in its xn-- form, and a local part beyond ASCII
/// fails that recipient (or, for the sender, the message) with the reason,
/// while the others are sent. 8-bit content goes with `BODY=8BITMIME`.
#[tokio::test]
async fn an_address_beyond_ascii_goes_with_smtputf8_or_fails_with_the_reason() {
    let (jorg, ok) = (addr("j\u{f6}rg", "example.org"), addr("ok", "example.org"));
    let (rig, server, key) = sending_rig().await;
    let (_, q) = server
        .submit(&key, &mail(&[jorg.clone(), ok.clone()], "utf8"))
        .await;
    let m = server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    let statuses = statuses(&m);
    assert_eq!(statuses, ["sent", "sent"], "{m}");
    let got = &rig.smtp.messages()[0];
    assert_eq!(got.rcpt_to, vec![jorg.clone(), ok.clone()]);
    assert!(
        got.mail_params.iter().any(|p| p == "SMTPUTF8"),
        "{:?}",
        got.mail_params
    );
    // An ASCII message carries no parameter; an 8-bit body carries BODY=8BITMIME.
    let (_, q) = server
        .submit(&key, &mail(std::slice::from_ref(&ok), "ascii"))
        .await;
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    assert_eq!(rig.smtp.messages()[1].mail_params, Vec::<String>::new());
    let mut raw = format!("From: {}\r\nTo: {ok}\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n", addr("mailer", "contoso.com")).into_bytes();
    raw.extend_from_slice(b"caf\xe9\r\n");
    let (status, q) = server.submit_raw(&key, "", raw).await;
    assert_eq!(status, 202, "{q}");
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    assert_eq!(rig.smtp.messages()[2].mail_params, ["BODY=8BITMIME"]);
    // A domain beyond ASCII goes as it is, with SMTPUTF8.
    let idn = addr("ok", "m\u{fc}nchen.de");
    let (_, q) = server
        .submit(&key, &mail(std::slice::from_ref(&idn), "idn"))
        .await;
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    assert_eq!(rig.smtp.messages()[3].rcpt_to, vec![idn.clone()]);
    // Its To header holds it in UTF-8 (RFC 6532): 8-bit content too.
    assert_eq!(
        rig.smtp.messages()[3].mail_params,
        ["SMTPUTF8", "BODY=8BITMIME"]
    );

    // A server without SMTPUTF8.
    let config = mailroom_fakes::SmtpConfig {
        smtputf8: false,
        enforce_send_as: false,
        ..Default::default()
    };
    let (rig, server) = saved_rig_with(config, |_| {}).await;
    let (_, key) = server.new_app(json!({"name": "Scanner"})).await;
    let (_, q) = server
        .submit(
            &key,
            &mail(&[jorg.clone(), ok.clone(), idn.clone()], "utf8"),
        )
        .await;
    let m = server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    let r = &m["recipients"][0];
    assert_eq!(
        (&r["status"], &r["code"]),
        (&json!("failed"), &json!("5.6.7")),
        "{m}"
    );
    assert!(r["message"].as_str().unwrap().contains("SMTPUTF8"), "{m}");
    assert_eq!(m["recipients"][1]["status"], "sent", "{m}");
    // Where only the domain is beyond ASCII, it goes in its xn-- form, and
    // the recipient keeps its own spelling in Activity.
    assert_eq!(m["recipients"][2]["status"], "sent", "{m}");
    assert_eq!(m["recipients"][2]["address"], json!(idn), "{m}");
    assert_eq!(
        rig.smtp.messages()[0].rcpt_to,
        vec![ok.clone(), addr("ok", "xn--mnchen-3ya.de")]
    );
    // A sender beyond ASCII fails the message, with the fix, and sends nothing.
    let sender = addr("j\u{f6}rg", "contoso.com");
    let (_, key) = server
        .new_app(json!({"name": "Jorg", "allowed_from": [sender.clone()]}))
        .await;
    let (_, q) = server
        .submit(
            &key,
            &json!({"from": sender, "to": [ok], "subject": "s", "text": "x"}),
        )
        .await;
    let m = server
        .wait_status(q["id"].as_str().unwrap(), "failed")
        .await;
    let last = &m["attempts"][0];
    assert_eq!(last["code"], "5.6.7", "{m}");
    assert!(last["hint"].as_str().unwrap().contains("SMTPUTF8"), "{m}");
    assert_eq!(rig.smtp.messages().len(), 1);
}

/// After a fix (here: the recipient's mailbox made), the messages it failed
/// go again with one request, `POST /api/messages/retry` with the filter of
/// `GET /api/messages`; messages outside the filter stay as they are.
/// `q` matches a message's last error too, its code and its words: after
/// fixing what refused them (a Send-As right, a mailbox), the admin finds
/// and retries exactly the messages it refused (`q=5.7.60`); a search
/// matched only addresses and the subject.
#[tokio::test]
async fn a_search_finds_messages_by_their_last_error_and_retries_them() {
    let (rig, server, key) = sending_rig().await;
    let (gone, ok) = (addr("gone", "example.org"), addr("ok", "example.org"));
    rig.smtp.configure(|c| {
        c.rcpt_replies.insert(
            gone.clone(),
            "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found".into(),
        );
    });
    let (_, failing) = server
        .submit(&key, &mail(std::slice::from_ref(&gone), "f"))
        .await;
    let failing = failing["id"].as_str().unwrap().to_string();
    let (_, fine) = server
        .submit(&key, &mail(std::slice::from_ref(&ok), "s"))
        .await;
    let fine = fine["id"].as_str().unwrap().to_string();
    server.wait_status(&failing, "failed").await;
    server.wait_status(&fine, "sent").await;
    let said = server
        .admin(
            reqwest::Method::GET,
            &format!("/api/messages/{failing}"),
            None,
        )
        .await
        .1;
    let words = said["last_error"]["message"].as_str().unwrap().to_string();
    // A few words from the middle of its last error, in another case.
    let middle: String = words
        .split(' ')
        .skip(1)
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    for q in ["5.1.1".to_string(), middle.to_uppercase()] {
        let q_value: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let path = format!("/api/messages?q={q_value}");
        let (status, r) = server.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{r}");
        let ids: Vec<&str> = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [failing.as_str()], "q={q}: {r}");
    }
    // The mailbox exists now: the messages it refused are retried.
    rig.smtp.configure(|c| {
        c.rcpt_replies.clear();
    });
    let (status, r) = server
        .admin(
            reqwest::Method::POST,
            "/api/messages/retry?status=failed&q=5.1.1",
            None,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!({"retried": 1, "skipped": 0, "more": false}));
    server.wait_status(&failing, "sent").await;
}

/// More failed messages match than one bulk retry takes: the first call
/// retries [`MAX_BULK_RETRY`] and says `more`, and the next call takes the
/// rest, so a script that calls again until `more` is false retries every
/// one.
#[tokio::test]
async fn a_bulk_retry_past_its_limit_says_more_and_the_next_call_takes_the_rest() {
    use mailroom_shared::sending::MAX_BULK_RETRY;
    let (rig, server, key) = sending_rig().await;
    let gone = addr("gone", "example.org");
    let says = |reply: &str| {
        rig.smtp.configure(|c| {
            c.rcpt_replies.insert(gone.clone(), reply.into());
        })
    };
    says("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found");
    let n = MAX_BULK_RETRY + 1;
    for i in 0..n {
        let (status, q) = server
            .submit(&key, &mail(std::slice::from_ref(&gone), &format!("m{i}")))
            .await;
        assert_eq!(status, 202, "{q}");
    }
    let started = std::time::Instant::now();
    loop {
        let (_, q) = server.admin(reqwest::Method::GET, "/api/queue", None).await;
        if q["counts"]["failed"] == json!(n) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{q}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Retried, they wait (a 4xx defers): none is failed again meanwhile.
    says("450 4.2.1 Mailbox busy, try again later");
    let retry = || async {
        server
            .admin(
                reqwest::Method::POST,
                "/api/messages/retry?status=failed",
                None,
            )
            .await
    };
    let (status, r) = retry().await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r,
        json!({"retried": MAX_BULK_RETRY, "skipped": 0, "more": true})
    );
    let (_, r) = retry().await;
    assert_eq!(r, json!({"retried": 1, "skipped": 0, "more": false}));
    let (_, q) = server.admin(reqwest::Method::GET, "/api/queue", None).await;
    assert_eq!(q["counts"]["failed"], 0, "{q}");
}

#[tokio::test]
async fn the_failed_messages_a_filter_matches_are_retried_at_once() {
    let (rig, server, _) = sending_rig().await;
    let gone = addr("gone", "example.org");
    rig.smtp.configure(|c| {
        c.rcpt_replies.insert(
            gone.clone(),
            "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found".into(),
        );
    });
    let (reports, reports_key) = server.new_app(json!({"name": "Reports"})).await;
    let (_, other_key) = server.new_app(json!({"name": "Other"})).await;
    let mut ids = Vec::new();
    for (key, subject) in [
        (&reports_key, "r1"),
        (&reports_key, "r2"),
        (&reports_key, "r3"),
        (&other_key, "o1"),
    ] {
        let (status, q) = server
            .submit(key, &mail(std::slice::from_ref(&gone), subject))
            .await;
        assert_eq!(status, 202, "{q}");
        ids.push(q["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        server.wait_status(id, "failed").await;
    }
    let retry = |query: String| {
        let server = &server;
        async move {
            server
                .admin(
                    reqwest::Method::POST,
                    &format!("/api/messages/retry{query}"),
                    None,
                )
                .await
        }
    };
    // Only failed or deferred messages, and a status is always given.
    for (query, says) in [
        ("".to_string(), "status=failed or status=deferred"),
        ("?status=sent".to_string(), "not “sent”"),
        ("?status=failed&apps=x".to_string(), "apps"),
        ("?status=failed&limit=5".to_string(), "not limit"),
        (
            format!("?status=failed&q={}", "x".repeat(1001)),
            "1001 characters",
        ),
    ] {
        let (status, r) = retry(query.clone()).await;
        assert_eq!(status, 400, "{query}: {r}");
        assert!(r.to_string().contains(says), "{query}: {r}");
    }
    // The mailbox exists now.
    rig.smtp.configure(|c| {
        c.rcpt_replies.clear();
    });
    let (status, r) = retry(format!("?status=failed&app={reports}")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!({"retried": 3, "skipped": 0, "more": false}));
    for id in &ids[..3] {
        server.wait_status(id, "sent").await;
    }
    let other = server
        .admin(
            reqwest::Method::GET,
            &format!("/api/messages/{}", ids[3]),
            None,
        )
        .await
        .1;
    assert_eq!(other["status"], "failed", "outside the filter: {other}");
    // Nothing of Reports is failed now: nothing to retry.
    let (_, r) = retry(format!("?status=failed&app={reports}")).await;
    assert_eq!(r, json!({"retried": 0, "skipped": 0, "more": false}));
}
