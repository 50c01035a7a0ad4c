//! Webhooks (docs/API.md §14): the routes against a real server, events
//! from real deliveries, and the outbox's schedule, restarts and several
//! servers driven directly with a manual clock. The receiver is a loopback
//! fake; signatures are checked with the Standard Webhooks library.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mailroom_backend::clock::{Clock, ManualClock};
use mailroom_backend::crypto::Cipher;
use mailroom_backend::metrics::Metrics;
use mailroom_backend::store::{SqliteStore, WebhookRow};
use mailroom_backend::webhooks::{new_webhook, Webhooks};
use mailroom_fakes::{addr, Answer, FakeReceiver, Hook};
use mailroom_shared::webhooks::Format;
use reqwest::Method;
use serde_json::{json, Value};

async fn add_hook(server: &Running, url: &str, events: &[&str], format: &str) -> (String, String) {
    let r = server
        .add_webhook(json!({"url": url, "events": events, "format": format}))
        .await;
    (
        r["webhook"]["id"].as_str().unwrap().to_string(),
        r["secret"].as_str().unwrap().to_string(),
    )
}

/// A server with saved settings, a receiver, and a Standard webhook to its
/// `/hook` for `message.sent`: the rig, the server, the receiver, the
/// webhook's id and its secret.
async fn one_standard_hook() -> (
    mailroom_fakes::Loopback,
    Running,
    FakeReceiver,
    String,
    String,
) {
    let (rig, server) = saved_rig(|_| {}).await;
    let receiver = FakeReceiver::start().await;
    let (id, secret) = add_hook(
        &server,
        &receiver.url("/hook"),
        &["message.sent"],
        "standard",
    )
    .await;
    (rig, server, receiver, id, secret)
}

fn verified(secret: &str, hook: &Hook) -> Value {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(hook.body.as_bytes(), &hook.header_map())
        .unwrap_or_else(|e| panic!("signature: {e:?} {hook:?}"));
    hook.json()
}

#[tokio::test]
async fn routes_check_what_they_take_and_show_the_secret_once() {
    let (_rig, server) = saved_rig(|_| {}).await;
    let bad = [
        (
            json!({"url": "http://hooks.example.com/x", "events": ["message.sent"]}),
            "url",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": ["message.lost"]}),
            "events",
        ),
        (
            json!({"url": "https://u:p@hooks.example.com/", "events": ["message.sent"]}),
            "url",
        ),
        // A Slack incoming webhook takes Slack's body only: every event
        // would have failed with 400 no_text.
        (
            json!({"url": "https://hooks.slack.com/services/T0/B0/X", "events": ["message.sent"]}),
            "format",
        ),
        (
            json!({"url": "https://hooks.slack.com/services/T0/B0/X", "events": ["message.sent"], "format": "teams"}),
            "format",
        ),
    ];
    for (body, field) in bad {
        let (status, r) = server
            .admin(Method::POST, "/api/webhooks", Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body}: {r}");
        assert!(r["errors"][field][0].is_string(), "{body}: {r}");
    }
    let (status, _) = server
        .admin(
            Method::POST,
            "/api/webhooks",
            Some(json!({"url": "https://x.example", "events": ["message.sent"], "format": "fax"})),
        )
        .await;
    assert_eq!(status, 400, "an unknown format is a wrong type");
    let long = format!("https://hooks.example.com/{}", "a".repeat(3000));
    let (status, r) = server
        .admin(
            Method::POST,
            "/api/webhooks",
            Some(json!({"url": long, "events": ["message.sent"]})),
        )
        .await;
    assert_eq!(status, 422, "{r}");
    assert!(
        r["errors"]["url"][0].as_str().unwrap().contains("2,048"),
        "{r}"
    );
    let (_, none) = server.admin(Method::GET, "/api/webhooks", None).await;
    assert_eq!(none["webhooks"], json!([]), "nothing refused was stored");
    let (id, secret) = add_hook(
        &server,
        "https://hooks.example.com/mailroom",
        &["delivery.paused"],
        "teams",
    )
    .await;
    assert!(secret.starts_with("whsec_") && secret.len() > 30);
    let (_, list) = server.admin(Method::GET, "/api/webhooks", None).await;
    assert_eq!(list["webhooks"][0]["id"], id.as_str());
    assert_eq!(list["webhooks"][0]["format"], "teams");
    assert!(!list.to_string().contains(&secret), "never shown again");
    let path = format!("/api/webhooks/{id}");
    let (status, w) = server
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"events": ["delivery.paused", "delivery.resumed"]})),
        )
        .await;
    assert_eq!(
        (status, w["events"].as_array().unwrap().len()),
        (200, 2),
        "{w}"
    );
    let (status, _) = server
        .admin(Method::PATCH, &path, Some(json!({"url": "ftp://x"})))
        .await;
    assert_eq!(status, 422);
    // Moved to a Slack incoming webhook, it must say Slack's format too.
    let slack = json!({"url": "https://hooks.slack.com/services/T0/B0/X"});
    let (status, r) = server.admin(Method::PATCH, &path, Some(slack)).await;
    assert_eq!(status, 422, "{r}");
    assert!(r["errors"]["format"][0].is_string(), "{r}");
    let both = json!({"url": "https://hooks.slack.com/services/T0/B0/X", "format": "slack"});
    let (status, r) = server.admin(Method::PATCH, &path, Some(both)).await;
    assert_eq!((status, &r["format"]), (200, &json!("slack")), "{r}");
    assert_eq!(server.admin(Method::DELETE, &path, None).await.0, 204);
    assert_eq!(server.admin(Method::DELETE, &path, None).await.0, 404);
    assert_eq!(
        server
            .admin(Method::POST, &format!("{path}/test"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn a_test_sends_one_signed_request_and_a_redirect_is_not_followed() {
    let (_rig, server, receiver, id, secret) = one_standard_hook().await;
    let test = format!("/api/webhooks/{id}/test");
    let (status, r) = server.admin(Method::POST, &test, None).await;
    assert_eq!(
        (status, &r["ok"], &r["status"]),
        (200, &json!(true), &json!(200)),
        "{r}"
    );
    let hooks = receiver.wait_for(1).await;
    let body = verified(&secret, &hooks[0]);
    assert_eq!(
        (body["type"].as_str(), &body["data"]),
        (Some("webhook.test"), &json!({}))
    );
    assert!(hooks[0].header("webhook-id").starts_with("msg_"));
    receiver.script([Answer::Redirect("/elsewhere")]);
    let (_, r) = server.admin(Method::POST, &test, None).await;
    assert_eq!(
        (&r["ok"], &r["status"]),
        (&json!(false), &json!(302)),
        "{r}"
    );
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("does not follow redirects"),
        "{r}"
    );
    receiver.script([Answer::Status(500)]);
    let (_, r) = server.admin(Method::POST, &test, None).await;
    assert_eq!(
        (&r["ok"], &r["status"]),
        (&json!(false), &json!(500)),
        "{r}"
    );
    let paths: Vec<String> = receiver.hooks().iter().map(|h| h.path.clone()).collect();
    assert_eq!(
        paths,
        ["/hook", "/hook", "/hook"],
        "the redirect was not followed"
    );
}

/// A chat webhook's test says when its posts will carry no link to
/// Mailroom (no `--public-url`), and how to give them one; a Standard
/// Webhooks receiver, or a server with the option, is told nothing of it.
#[tokio::test]
async fn a_chat_webhooks_test_says_when_its_posts_have_no_link() {
    async fn said(server: &Running, format: &str) -> String {
        let receiver = FakeReceiver::start().await;
        let (id, _) = add_hook(server, &receiver.url("/chat"), &["message.failed"], format).await;
        let (status, r) = server
            .admin(Method::POST, &format!("/api/webhooks/{id}/test"), None)
            .await;
        assert_eq!((status, &r["ok"]), (200, &json!(true)), "{r}");
        r["message"].as_str().unwrap().to_string()
    }
    let (_rig, server) = saved_rig(|_| {}).await;
    for format in ["slack", "teams"] {
        let message = said(&server, format).await;
        assert!(
            message.ends_with(mailroom_backend::webhooks::NO_LINK)
                && message.contains("--public-url"),
            "{format}: {message}"
        );
    }
    let message = said(&server, "standard").await;
    assert!(!message.contains("--public-url"), "{message}");
    let (_rig, server) =
        saved_rig(|a| a.public_url = Some("https://mail.contoso.com".into())).await;
    let message = said(&server, "slack").await;
    assert!(!message.contains("--public-url"), "{message}");
}

/// A refusal is told in the receiver's own words, with the fix for Slack's:
/// the test said "HTTP 404" for a Slack webhook that was removed, and the
/// admin had to guess.
#[tokio::test]
async fn a_refusal_is_told_in_the_receivers_words_with_slacks_fix() {
    let (_rig, server) = saved_rig(|_| {}).await;
    let receiver = FakeReceiver::start().await;
    let test = async |id: &str, answer: Answer| {
        receiver.script([answer]);
        let (status, r) = server
            .admin(Method::POST, &format!("/api/webhooks/{id}/test"), None)
            .await;
        assert_eq!((status, &r["ok"]), (200, &json!(false)), "{r}");
        r["message"].as_str().unwrap().to_string()
    };
    let (slack, _) = add_hook(
        &server,
        &receiver.url("/services/T0/B0/k3y"),
        &["message.sent"],
        "slack",
    )
    .await;
    for (status, word, fix) in [
        (404, "no_service", "add a new incoming webhook"),
        (403, "invalid_token", "copy the whole webhook URL"),
        (410, "channel_is_archived", "unarchive"),
        (404, "channel_not_found", "channel was deleted"),
        (403, "action_prohibited", "Slack admin"),
    ] {
        let said = test(&slack, Answer::Said(status, word.into())).await;
        assert!(
            said.contains(&format!("HTTP {status}")) && said.contains(word) && said.contains(fix),
            "{word}: {said}"
        );
    }
    let (standard, _) = add_hook(
        &server,
        &receiver.url("/flow"),
        &["message.sent"],
        "standard",
    )
    .await;
    let refusal = json!({"error": {"code": "WorkflowTriggerIsNotEnabled", "message": "The workflow trigger is not enabled."}});
    let said = test(&standard, Answer::Said(400, refusal.to_string())).await;
    assert!(
        said.contains("HTTP 400")
            && said.contains("WorkflowTriggerIsNotEnabled")
            && said.contains("The workflow trigger is not enabled"),
        "{said}"
    );
    // What the Standard Webhooks libraries answer, with the fix.
    for (words, fix) in [
        ("Message timestamp too old", "this server's clock"),
        ("No matching signature found", "whsec_"),
    ] {
        let said = test(&standard, Answer::Said(400, words.into())).await;
        assert!(said.contains(words) && said.contains(fix), "{said}");
    }
    // A web page is not words; a long answer is cut; control characters go.
    let said = test(
        &standard,
        Answer::Said(502, "<html><body>Bad gateway</body></html>".into()),
    )
    .await;
    assert!(said.contains("HTTP 502") && !said.contains('<'), "{said}");
    let said = test(
        &standard,
        Answer::Said(400, format!("bad\u{1b}[31m {}", "x".repeat(10_000))),
    )
    .await;
    assert!(said.contains("bad") && !said.contains('\u{1b}'), "{said}");
    assert!(said.len() < 1_000, "{} bytes: {said}", said.len());
}

#[tokio::test]
async fn deliveries_raise_sent_failed_and_first_deferred_events_in_each_format() {
    let (rig, server) = saved_rig(|a| a.public_url = Some("https://mail.contoso.com".into())).await;
    let (_, key) = server.new_app(json!({"name": "Scanner"})).await;
    let receiver = FakeReceiver::start().await;
    let events = ["message.sent", "message.failed", "message.deferred"];
    let (_, secret) = add_hook(&server, &receiver.url("/std"), &events, "standard").await;
    add_hook(
        &server,
        &receiver.url("/slack"),
        &["message.failed"],
        "slack",
    )
    .await;
    let (bad, later) = (addr("nobody", "example.org"), addr("later", "example.org"));
    rig.smtp.configure(|c| {
        c.rcpt_replies
            .insert(bad.clone(), "550 5.1.1 User unknown".into());
        c.rcpt_replies
            .insert(later.clone(), "451 4.7.500 Try again later".into());
    });
    let submit = |to: String| {
        let (server, key) = (&server, key.clone());
        async move {
            let (status, q) = server
                .submit(
                    &key,
                    // Whoever sends a message writes its subject: in
                    // Slack, <!channel> notified the whole channel.
                    &json!({"to": [to], "subject": "<!channel> Invoice", "text": "x"}),
                )
                .await;
            assert_eq!(status, 202, "{q}");
            q["id"].as_str().unwrap().to_string()
        }
    };
    let sent = submit(addr("a", "example.org")).await;
    server.wait_status(&sent, "sent").await;
    let failed = submit(bad).await;
    server.wait_status(&failed, "failed").await;
    let deferred = submit(later).await;
    server.wait_status(&deferred, "deferred").await;
    let hooks = receiver.wait_for(4).await;
    let standard: Vec<Value> = hooks
        .iter()
        .filter(|h| h.path == "/std")
        .map(|h| verified(&secret, h))
        .collect();
    let seen: Vec<(String, String)> = standard
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap().into(),
                b["data"]["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        seen.contains(&("message.sent".into(), sent.clone())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("message.failed".into(), failed.clone())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("message.deferred".into(), deferred.clone())),
        "{seen:?}"
    );
    let failed_event = standard
        .iter()
        .find(|b| b["type"] == "message.failed")
        .unwrap();
    assert_eq!(
        failed_event["data"]["status"], "failed",
        "the SUMMARY: {failed_event}"
    );
    assert_eq!(failed_event["data"]["last_error"]["code"], "5.1.1");
    let slack = hooks.iter().find(|h| h.path == "/slack").unwrap().json();
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("*Mailroom: a message failed*"),
        "{slack}"
    );
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("“&lt;!channel&gt; Invoice”") && !text.contains("<!channel>"),
        "{slack}"
    );
    // Its link opens that message in Activity (the page reads `message=`).
    assert!(
        text.ends_with(&format!(
            "\n<https://mail.contoso.com/#/activity?message={failed}|Open the message in Mailroom>"
        )),
        "{slack}"
    );
    // A second deferral of the same message says nothing new.
    server.retry(&deferred).await;
    let started = std::time::Instant::now();
    loop {
        let m = server.message(&deferred).await;
        if m["attempt_count"] == 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let deferrals = receiver
        .hooks()
        .iter()
        .filter(|h| h.path == "/std" && h.json()["type"] == "message.deferred")
        .count();
    assert_eq!(deferrals, 1, "the first deferral only");
}

/// A message sent to some of its recipients, another refused for good:
/// `message.sent`'s SUMMARY names the one it did not reach, and a chat
/// post says so with the fix. Both said a plain "sent" (its last_error
/// was null), so the app and the channel never heard of the refusal.
/// A device refused for an app's replaced key: its mail never reaches
/// Mailroom, so the webhooks hear of it (`app.old_key_refused`, with the
/// page's warning as data), once a day per app, a restart included; a
/// Slack post says the fix and links to Apps.
#[tokio::test]
async fn a_device_refused_for_an_apps_replaced_key_is_announced_once_a_day() {
    let clock = Arc::new(ManualClock::default());
    let (rig, mut server) = saved_rig_clocked(
        Default::default(),
        |a| a.public_url = Some("https://mail.contoso.com".into()),
        clock.clone(),
    )
    .await;
    let receiver = FakeReceiver::start().await;
    let (_, secret) = add_hook(
        &server,
        &receiver.url("/std"),
        &["app.old_key_refused"],
        "standard",
    )
    .await;
    add_hook(
        &server,
        &receiver.url("/slack"),
        &["app.old_key_refused"],
        "slack",
    )
    .await;
    let (app, old) = server.new_app(json!({"name": "Scanner"})).await;
    let path = format!("/api/apps/{app}/key");
    assert_eq!(server.admin(Method::POST, &path, None).await.0, 200);
    let mail = json!({"to": [addr("a", "example.org")], "subject": "s", "text": "x"});
    assert_eq!(server.submit(&old, &mail).await.0, 401);
    let hooks = receiver.wait_for(2).await;
    let std: Vec<Value> = hooks
        .iter()
        .filter(|h| h.path == "/std")
        .map(|h| verified(&secret, h))
        .collect();
    assert_eq!(std.len(), 1, "{hooks:?}");
    assert_eq!(std[0]["type"], "app.old_key_refused");
    let data = &std[0]["data"];
    assert_eq!(
        (&data["app"], &data["code"]),
        (&json!(app), &json!("old_key_refused"))
    );
    assert!(
        data["message"]
            .as_str()
            .unwrap()
            .contains("App “Scanner” was given a new key")
            && data["message"]
                .as_str()
                .unwrap()
                .contains("127.0.0.1 (HTTP)"),
        "{data}"
    );
    let slack = hooks.iter().find(|h| h.path == "/slack").unwrap().json();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("a device still uses an app's replaced key")
            && text.contains("Give that device the app's new key")
            && text.contains("https://mail.contoso.com/#/apps"),
        "{text}"
    );
    // Again the same day (the try itself kept, minutes later): nothing
    // more; a day on, once more.
    clock.advance(Duration::from_secs(120));
    assert_eq!(server.submit(&old, &mail).await.0, 401);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.hooks().len(), 2, "once a day per app");
    // A restart on the same data the same day: still nothing more (the
    // count was the process's own, so the device was announced again at
    // each start).
    let (_data, dir) = (
        std::mem::replace(&mut server._dir, tempfile::tempdir().unwrap()),
        server.data.clone(),
    );
    drop(server);
    let server = start_with_clock(&rig, move |a| a.data_dir = dir, clock.clone()).await;
    clock.advance(Duration::from_secs(120));
    assert_eq!(server.submit(&old, &mail).await.0, 401);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.hooks().len(),
        2,
        "once a day per app, restarts too"
    );
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(server.submit(&old, &mail).await.0, 401);
    assert_eq!(receiver.wait_for(4).await.len(), 4);
}

#[tokio::test]
async fn a_message_sent_to_some_recipients_is_announced_as_such() {
    let (rig, server, key) = sending_rig().await;
    let receiver = FakeReceiver::start().await;
    let (_, secret) = add_hook(
        &server,
        &receiver.url("/std"),
        &["message.sent"],
        "standard",
    )
    .await;
    add_hook(&server, &receiver.url("/slack"), &["message.sent"], "slack").await;
    let bad = addr("nobody", "example.org");
    rig.smtp.configure(|c| {
        c.rcpt_replies
            .insert(bad.clone(), "550 5.1.1 User unknown".into());
    });
    let (status, q) = server
        .submit(
            &key,
            &json!({"to": [addr("a", "example.org"), bad.clone()], "subject": "Invoice", "text": "x"}),
        )
        .await;
    assert_eq!(status, 202, "{q}");
    let id = q["id"].as_str().unwrap();
    server.wait_status(id, "sent").await;
    let hooks = receiver.wait_for(2).await;
    let std = hooks.iter().find(|h| h.path == "/std").unwrap();
    let event = verified(&secret, std);
    assert_eq!(
        (&event["type"], &event["data"]["id"]),
        (&json!("message.sent"), &json!(id)),
        "{event}"
    );
    assert_eq!(event["data"]["last_error"]["code"], "5.1.1", "{event}");
    // The Message-ID the upstream got, beside the SUMMARY.
    let header = rig.smtp.messages()[0]
        .data
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .map(str::to_string)
        .unwrap();
    assert_eq!(event["data"]["message_id"], header, "{event}");
    let said = event["data"]["last_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(said.contains(&format!("not to {bad} (5.1.1)")), "{event}");
    let slack = hooks.iter().find(|h| h.path == "/slack").unwrap().json();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.starts_with("*Mailroom: a message was sent, but not to every recipient*"),
        "{slack}"
    );
    assert!(text.contains(&bad) && text.contains("*Fix:*"), "{slack}");
}

#[tokio::test]
async fn a_pause_and_its_end_are_announced_and_mail_never_waits_for_a_receiver() {
    let (rig, server, key) = sending_rig().await;
    let receiver = FakeReceiver::start().await;
    let (_, secret) = add_hook(
        &server,
        &receiver.url("/ops"),
        &["delivery.paused", "delivery.resumed", "message.sent"],
        "standard",
    )
    .await;
    paused_by_expired_secret(&rig, &server, &key).await;
    let paused = verified(&secret, &receiver.wait_for(1).await[0]);
    assert_eq!(paused["type"], "delivery.paused");
    assert_eq!(
        (
            paused["data"]["code"].as_str(),
            paused["data"]["profile"].as_str()
        ),
        (Some("AADSTS7000222"), Some("default"))
    );
    // From now on the receiver hangs: mail must not wait for it.
    receiver.always(Answer::Hang);
    rig.entra.set_mode(mailroom_fakes::EntraMode::Normal);
    server
        .save(&oauth_settings("localhost", rig.smtp.port()))
        .await;
    wait_received(&rig, 1).await;
    let (status, q) = server
        .submit(
            &key,
            &json!({"to": [addr("b", "example.org")], "subject": "s2", "text": "x"}),
        )
        .await;
    assert_eq!(status, 202);
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    receiver.release();
    let hooks = receiver.wait_for(3).await;
    let resumed = hooks
        .iter()
        .map(|h| verified(&secret, h))
        .find(|b| b["type"] == "delivery.resumed")
        .expect("resumed");
    assert_eq!(resumed["data"]["since"], paused["data"]["since"]);
    assert!(resumed["data"]["until"].is_string());
}

/// The outbox on its own, over SQLite, with a manual clock.
struct Outbox {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<ManualClock>,
}

impl Outbox {
    fn new() -> Outbox {
        let dir = tempfile::tempdir().unwrap();
        Outbox {
            path: dir.path().to_path_buf(),
            _dir: dir,
            clock: Arc::new(ManualClock::default()),
        }
    }

    /// A "server": the store and the sender, opened afresh each time.
    fn open(&self, timeout: Duration) -> (Arc<Webhooks>, Arc<Metrics>) {
        let store = Arc::new(SqliteStore::open(&self.path.join("m.db")).unwrap());
        let cipher =
            Arc::new(Cipher::load_or_create_at(&self.path.join("secret.key"), true).unwrap());
        let metrics = Arc::new(Metrics::new(Default::default()));
        let hooks = Webhooks::new(
            store,
            cipher,
            self.clock.clone(),
            metrics.clone(),
            None,
            timeout,
        )
        .unwrap();
        (Arc::new(hooks), metrics)
    }
}

async fn subscribe(hooks: &Webhooks, url: String, events: &[&str]) -> (String, String) {
    subscribe_as(hooks, url, events, Format::Standard).await
}

async fn subscribe_as(
    hooks: &Webhooks,
    url: String,
    events: &[&str],
    format: Format,
) -> (String, String) {
    let w = new_webhook(
        url,
        events.iter().map(|e| e.to_string()).collect(),
        format,
        "2026-12-01T00:00:00Z".into(),
    );
    let secret = mailroom_backend::webhooks::new_secret();
    let sealed = hooks.cipher().encrypt(
        "webhook_secret",
        &mailroom_backend::crypto::Secret::new(secret.clone()),
    );
    hooks
        .store()
        .add_webhook(WebhookRow {
            webhook: w.clone(),
            secret: sealed,
            previous: None,
        })
        .await
        .unwrap();
    hooks.changed();
    (w.id, secret)
}

/// `webhook_failures_total` as the text format writes it.
fn failures_counted(metrics: &Metrics) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &{
        let mut r = prometheus_client::registry::Registry::default();
        r.register("webhook_failures", "", metrics.webhook_failures.clone());
        r
    })
    .unwrap();
    out
}

#[tokio::test]
async fn a_failing_receiver_is_retried_on_schedule_with_one_id_and_fresh_signatures() {
    let receiver = FakeReceiver::start().await;
    receiver.always(Answer::Status(500));
    let outbox = Outbox::new();
    let (hooks, metrics) = outbox.open(Duration::from_secs(5));
    let (id, secret) = subscribe(&hooks, receiver.url("/h"), &["message.sent"]).await;
    hooks.emit("message.sent", json!({"id": "msg_1"})).await;
    assert_eq!(hooks.send_due().await, 1);
    let waits = [5u64, 30, 120, 600, 3600, 4 * 3600, 8 * 3600];
    for (n, wait) in waits.iter().enumerate() {
        assert_eq!(hooks.send_due().await, 0, "not due before its wait ({n})");
        outbox.clock.advance(Duration::from_secs(wait - 1));
        assert_eq!(hooks.send_due().await, 0, "not due a second early ({n})");
        outbox.clock.advance(Duration::from_secs(1));
        assert_eq!(hooks.send_due().await, 1, "due after {wait} s");
    }
    outbox.clock.advance(Duration::from_secs(48 * 3600));
    assert_eq!(hooks.send_due().await, 0, "failed after the last retry");
    let got = receiver.hooks();
    assert_eq!(got.len(), 8);
    let ids: std::collections::HashSet<&str> = got.iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "one webhook-id for every retry");
    let stamps: std::collections::HashSet<&str> =
        got.iter().map(|h| h.header("webhook-timestamp")).collect();
    assert_eq!(stamps.len(), 8, "each retry signed anew");
    for h in &got {
        assert_eq!(h.header("webhook-signature"), signature(&secret, h));
    }
    let log = hooks.store().deliveries(&id, 10).await.unwrap();
    assert_eq!(
        (log[0].attempts, log[0].status.as_str(), log[0].last_status),
        (8, "failed", Some(500))
    );
    let text = failures_counted(&metrics);
    assert!(
        text.contains(&format!("webhook_failures_total{{webhook=\"{id}\"}} 8")),
        "{text}"
    );
}

/// The events one chat post stands for: "Mailroom: 22 events", or one.
fn events_in(title: &str) -> usize {
    title
        .strip_prefix("Mailroom: ")
        .and_then(|t| t.strip_suffix(" events"))
        .map_or(1, |n| n.parse().unwrap())
}

/// The posts the receiver got at `path`.
fn posts(receiver: &FakeReceiver, path: &str) -> Vec<Hook> {
    receiver
        .hooks()
        .into_iter()
        .filter(|h| h.path == path)
        .collect()
}

#[tokio::test]
async fn a_burst_goes_to_a_chat_channel_in_a_few_posts_and_to_a_receiver_one_by_one() {
    let receiver = FakeReceiver::start().await;
    let outbox = Outbox::new();
    let (hooks, _) = outbox.open(Duration::from_secs(5));
    let paused = ["delivery.paused"];
    let (slack, _) = subscribe_as(&hooks, receiver.url("/slack"), &paused, Format::Slack).await;
    let (teams, _) = subscribe_as(&hooks, receiver.url("/teams"), &paused, Format::Teams).await;
    let (standard, secret) = subscribe(&hooks, receiver.url("/standard"), &paused).await;
    for i in 0..40 {
        let data = json!({"profile": format!("p{i}"), "message": format!("pause {i}")});
        hooks.emit("delivery.paused", data).await;
    }
    while hooks.send_due().await > 0 {}
    let to_slack = posts(&receiver, "/slack");
    let to_teams = posts(&receiver, "/teams");
    // 120 deliveries claimed 64 at a time: two rounds, a post each.
    assert!(
        to_slack.len() <= 2 && to_teams.len() <= 2,
        "{} Slack and {} Teams posts for 40 events",
        to_slack.len(),
        to_teams.len()
    );
    let in_slack: usize = to_slack
        .iter()
        .map(|h| {
            events_in(
                h.json()["text"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap()
                    .trim_matches('*'),
            )
        })
        .sum();
    let in_teams: usize = to_teams
        .iter()
        .map(|h| {
            let card = &h.json()["attachments"][0]["content"];
            events_in(card["body"][0]["text"].as_str().unwrap())
        })
        .sum();
    assert_eq!((in_slack, in_teams), (40, 40));
    let one_by_one = posts(&receiver, "/standard");
    assert_eq!(one_by_one.len(), 40, "one request per event");
    for h in &one_by_one {
        assert_eq!(verified(&secret, h)["type"], "delivery.paused");
    }
    for id in [&slack, &teams, &standard] {
        let log = hooks.store().deliveries(id, 100).await.unwrap();
        assert_eq!(log.len(), 40);
        assert!(log.iter().all(|d| d.status == "delivered"), "{log:?}");
    }
}

#[tokio::test]
async fn a_refused_post_is_retried_for_every_event_it_held() {
    let receiver = FakeReceiver::start().await;
    receiver.always(Answer::Status(429));
    let outbox = Outbox::new();
    let (hooks, metrics) = outbox.open(Duration::from_secs(5));
    let (id, _) = subscribe_as(
        &hooks,
        receiver.url("/slack"),
        &["delivery.paused"],
        Format::Slack,
    )
    .await;
    for i in 0..40 {
        let data = json!({"profile": format!("p{i}"), "message": format!("pause {i}")});
        hooks.emit("delivery.paused", data).await;
    }
    assert_eq!(hooks.send_due().await, 40);
    assert_eq!(receiver.hooks().len(), 1);
    let log = hooks.store().deliveries(&id, 100).await.unwrap();
    assert!(
        log.iter()
            .all(|d| (d.status.as_str(), d.attempts, d.last_status) == ("pending", 1, Some(429))),
        "{log:?}"
    );
    // One refused request is one failure counted, whatever it held.
    let text = failures_counted(&metrics);
    assert!(
        text.contains(&format!("webhook_failures_total{{webhook=\"{id}\"}} 1")),
        "{text}"
    );
    receiver.release();
    outbox.clock.advance(Duration::from_secs(5));
    assert_eq!(hooks.send_due().await, 40);
    let got = receiver.hooks();
    assert_eq!(got.len(), 2);
    assert!(got[1].json()["text"]
        .as_str()
        .unwrap()
        .starts_with("*Mailroom: 40 events*"));
    let log = hooks.store().deliveries(&id, 100).await.unwrap();
    assert!(
        log.iter()
            .all(|d| (d.status.as_str(), d.attempts) == ("delivered", 2)),
        "{log:?}"
    );
}

/// A failed read of the webhooks (a database error on that one query) made
/// the event go nowhere: the list last read stands in.
#[tokio::test]
async fn an_event_goes_to_the_webhooks_last_read_when_they_cannot_be_read() {
    let outbox = Outbox::new();
    let (hooks, _) = outbox.open(Duration::from_secs(5));
    let url = format!("http://127.0.0.1:{}/h", 9);
    let (id, _) = subscribe(&hooks, url, &["delivery.paused"]).await;
    hooks
        .emit("delivery.paused", json!({"profile": "first"}))
        .await;
    let db = rusqlite::Connection::open(outbox.path.join("m.db")).unwrap();
    // A row the read cannot take: the query fails, and writes still work.
    let secret: Vec<u8> = db
        .query_row("SELECT secret FROM webhooks", [], |r| r.get(0))
        .unwrap();
    db.execute("UPDATE webhooks SET secret = 'text'", [])
        .unwrap();
    assert!(hooks.store().webhooks().await.is_err(), "the read fails");
    // A change here has the list read again before its next use.
    hooks.changed();
    hooks
        .emit("delivery.paused", json!({"profile": "second"}))
        .await;
    db.execute("UPDATE webhooks SET secret = ?1", [secret])
        .unwrap();
    let log = hooks.store().deliveries(&id, 10).await.unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
}

#[tokio::test]
async fn an_event_stored_before_a_restart_is_sent_after_it_and_a_timeout_is_a_failure() {
    let receiver = FakeReceiver::start().await;
    let outbox = Outbox::new();
    {
        let (hooks, _) = outbox.open(Duration::from_secs(5));
        subscribe(&hooks, receiver.url("/h"), &["delivery.paused"]).await;
        hooks
            .emit("delivery.paused", json!({"profile": "default"}))
            .await;
        // The server stops here, before its sender ran.
    }
    let (hooks, _) = outbox.open(Duration::from_millis(300));
    receiver.script([Answer::Delay(Duration::from_secs(2))]);
    assert_eq!(hooks.send_due().await, 1);
    let id = hooks.store().webhooks().await.unwrap()[0]
        .webhook
        .id
        .clone();
    let log = hooks.store().deliveries(&id, 10).await.unwrap();
    assert_eq!(log[0].status, "pending");
    assert!(
        log[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("no answer within 300ms"),
        "{log:?}"
    );
    outbox.clock.advance(Duration::from_secs(5));
    assert_eq!(hooks.send_due().await, 1);
    let log = hooks.store().deliveries(&id, 10).await.unwrap();
    assert_eq!((log[0].status.as_str(), log[0].attempts), ("delivered", 2));
    let got = receiver.hooks();
    assert_eq!(got[1].json()["type"], "delivery.paused");
    let w = &hooks.store().webhooks().await.unwrap()[0].webhook;
    assert!(w.last_success_at.is_some() && w.last_failure_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_postgres_send_each_event_once() {
    let schema = common::pg::PgSchema::new().await;
    let receiver = FakeReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(mailroom_backend::clock::SystemClock);
    let server = |clock: Arc<dyn Clock>| {
        let (url, key) = (schema.url.clone(), dir.path().join("secret.key"));
        async move {
            let store = Arc::new(
                mailroom_backend::pg::PgStore::connect(&url, common::pg::tls(None))
                    .await
                    .unwrap(),
            );
            let cipher = Arc::new(Cipher::load_or_create_at(&key, true).unwrap());
            let metrics = Arc::new(Metrics::new(Default::default()));
            Arc::new(
                Webhooks::new(store, cipher, clock, metrics, None, Duration::from_secs(5)).unwrap(),
            )
        }
    };
    let a = server(clock.clone()).await;
    let b = server(clock).await;
    subscribe(&a, receiver.url("/h"), &["message.sent"]).await;
    b.changed();
    const EVENTS: usize = 40;
    for i in 0..EVENTS {
        let emitter = if i % 2 == 0 { &a } else { &b };
        emitter
            .emit("message.sent", json!({"id": format!("msg_{i}")}))
            .await;
    }
    let (x, y) = tokio::join!(
        async {
            let mut n = 0;
            for _ in 0..20 {
                n += a.send_due().await;
            }
            n
        },
        async {
            let mut n = 0;
            for _ in 0..20 {
                n += b.send_due().await;
            }
            n
        }
    );
    assert_eq!(x + y, EVENTS, "each claimed once: {x} + {y}");
    let got = receiver.wait_for(EVENTS).await;
    let ids: std::collections::HashSet<&str> = got.iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!((got.len(), ids.len()), (EVENTS, EVENTS), "each sent once");
}

/// SIGKILL with message events in the outbox: after a restart every event
/// of every acknowledged message goes out, each once more and no more (the
/// kill lands after the first tries were recorded, outside any request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_stored_event_and_sends_none_twice() {
    let rig = mailroom_fakes::Loopback::start(mailroom_fakes::SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut first, mut server) = spawn_saved(&rig, &data, "0").await;
    let receiver = FakeReceiver::start().await;
    receiver.always(Answer::Status(500));
    let (hook, _) = add_hook(&server, &receiver.url("/h"), &["message.sent"], "standard").await;
    let (_, key) = server.new_app(json!({"name": "Batch"})).await;
    const N: usize = 20;
    let mut ids = Vec::new();
    for i in 0..N {
        let (status, q) = server
            .submit(
                &key,
                &json!({"to": [addr("a", "example.org")], "subject": format!("m{i}"), "text": "x"}),
            )
            .await;
        assert_eq!(status, 202, "{q}");
        ids.push(q["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    // Every first try answered 500 and recorded: the kill lands between tries.
    let started = std::time::Instant::now();
    loop {
        let (_, log) = server
            .admin(
                Method::GET,
                &format!("/api/webhooks/{hook}/deliveries"),
                None,
            )
            .await;
        let tried = log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["attempts"] == 1 && d["status"] == "pending")
            .count();
        if tried == N {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    assert_eq!(receiver.hooks().len(), N);
    receiver.release();

    let (_second, url) = spawn_mailroom(&rig, &data, "0").await;
    server.url = url;
    let got = receiver.wait_for(2 * N).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = if receiver.hooks().len() > got.len() {
        receiver.hooks()
    } else {
        got
    };
    let per_id = count_each(got.iter().map(|h| h.header("webhook-id").to_string()));
    assert_eq!(per_id.len(), N, "one event per message");
    assert!(
        per_id.values().all(|n| *n == 2),
        "a failed try and one retry each: {per_id:?}"
    );
    let mut reported: Vec<String> = got[N..]
        .iter()
        .map(|h| {
            h.json()["data"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    reported.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(
        reported, want,
        "every acknowledged message's event went out"
    );
}

#[tokio::test]
async fn a_webhooks_url_never_reaches_the_log() {
    // A Slack or Teams incoming-webhook URL is the credential that posts to
    // the channel: "webhook added" logged it whole.
    let log = CapturedLog::start();
    let (_rig, server) = saved_rig(|_| {}).await;
    let key = "B0SECRET0KEY0OF0THE0CHANNEL";
    let receiver = FakeReceiver::start().await;
    // One that answers, and one at a port nothing listens on, each tested.
    let closed = common::ClosedPort::new();
    let closed_url = format!("http://{}/services/T0/{key}", closed.addr());
    for url in [receiver.url(&format!("/services/T0/{key}")), closed_url] {
        let (id, _) = add_hook(&server, &url, &["message.sent"], "slack").await;
        let (status, r) = server
            .admin(Method::POST, &format!("/api/webhooks/{id}/test"), None)
            .await;
        // The answer to the admin who typed it may name it; the log may not.
        assert_eq!(status, 200, "{r}");
    }
    let log = log.text();
    assert!(
        log.contains("webhook added") && log.contains("127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains(key), "{log}");
}

/// A receiver inside the organisation, its certificate from the
/// organisation's own CA: trusted with `--extra-ca-file`, as a private SMTP
/// relay is; one from a CA nobody gave is told so, with that option (it was
/// rustls's words alone, "invalid peer certificate: UnknownIssuer").
#[tokio::test]
async fn a_receiver_with_the_organisations_own_ca_is_trusted_with_extra_ca_file() {
    // The rig's CA is the server's --extra-ca-file.
    let (rig, server) = saved_rig(|_| {}).await;
    let test = async |url: String| {
        let (id, _) = add_hook(&server, &url, &["message.sent"], "standard").await;
        let (status, r) = server
            .admin(Method::POST, &format!("/api/webhooks/{id}/test"), None)
            .await;
        assert_eq!(status, 200, "{r}");
        r
    };
    let inside = mailroom_fakes::serve_tls_not_found(&rig.pki).await;
    let r = test(format!("https://localhost:{}/hook", inside.port())).await;
    assert_eq!(r["status"], 404, "the handshake passed: {r}");
    let unknown = mailroom_fakes::TestPki::new("Nobody's CA");
    let outside = mailroom_fakes::serve_tls_not_found(&unknown).await;
    let r = test(format!("https://localhost:{}/hook", outside.port())).await;
    assert!(r["status"].is_null(), "{r}");
    let said = r["message"].as_str().unwrap();
    assert!(
        said.contains("its TLS certificate is not trusted") && said.contains("--extra-ca-file"),
        "{said}"
    );
}

/// The signature `secret` makes for `hook`'s id, timestamp and body.
fn signature(secret: &str, hook: &Hook) -> String {
    let ts: i64 = hook.header("webhook-timestamp").parse().unwrap();
    mailroom_backend::webhooks::sign(secret, hook.header("webhook-id"), ts, &hook.body).unwrap()
}

/// Whether `secret` verifies `hook`'s signature.
fn verifies(secret: &str, hook: &Hook) -> bool {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(hook.body.as_bytes(), &hook.header_map())
        .is_ok()
}

/// `POST /api/webhooks/{id}/secret` (beyond the contract): a new secret,
/// shown once; the old one signs beside it meanwhile, so a receiver that
/// knows either takes each request, and a second new secret ends the
/// oldest at once. A chat webhook has no secret; no webhook, no secret.
#[tokio::test]
async fn a_new_secret_signs_beside_the_old_one_and_a_chat_webhook_has_none() {
    let (_rig, server, receiver, id, first) = one_standard_hook().await;
    let replace = format!("/api/webhooks/{id}/secret");
    let test = format!("/api/webhooks/{id}/test");
    let (status, r) = server.admin(Method::POST, &replace, None).await;
    assert_eq!(status, 200, "{r}");
    let second = r["secret"].as_str().unwrap().to_string();
    assert!(second.starts_with("whsec_") && second != first, "{r}");
    assert_eq!(r["webhook"]["id"], json!(id));
    let until = time::OffsetDateTime::parse(
        r["previous_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let hours = (until - time::OffsetDateTime::now_utc()).whole_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours} hours");
    // Never shown again.
    let (_, listed) = server.admin(Method::GET, "/api/webhooks", None).await;
    assert!(!listed.to_string().contains(&second), "{listed}");
    server.admin(Method::POST, &test, None).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].header("webhook-signature").matches("v1,").count(), 2);
    assert!(verifies(&second, &got[0]) && verifies(&first, &got[0]));
    // A second new secret: the first one signs no more.
    let (_, r) = server.admin(Method::POST, &replace, None).await;
    let third = r["secret"].as_str().unwrap().to_string();
    server.admin(Method::POST, &test, None).await;
    let got = receiver.wait_for(2).await;
    assert!(verifies(&third, &got[1]) && verifies(&second, &got[1]));
    assert!(!verifies(&first, &got[1]), "the oldest ended at once");
    // A chat webhook's URL is its credential.
    let (teams, _) = add_hook(&server, &receiver.url("/teams"), &["message.sent"], "teams").await;
    let (status, r) = server
        .admin(Method::POST, &format!("/api/webhooks/{teams}/secret"), None)
        .await;
    assert_eq!(status, 422, "{r}");
    assert!(
        r["errors"]["format"][0]
            .as_str()
            .unwrap()
            .contains("make a new URL"),
        "{r}"
    );
    for missing in ["wh_none", "wh%00x"] {
        let (status, _) = server
            .admin(
                Method::POST,
                &format!("/api/webhooks/{missing}/secret"),
                None,
            )
            .await;
        assert_eq!(status, 404, "{missing}");
    }
}

/// `DELETE /api/webhooks/{id}/old-secret` (beyond the contract): the list
/// shows until when the old secret signs beside the new one; ended early,
/// only the new one signs, so a test shows whether the receiver has it.
/// Twice is fine; an app's key, no such webhook or a hostile id is refused.
#[tokio::test]
async fn ending_the_old_secret_early_leaves_only_the_new_one_signing() {
    let (_rig, server, receiver, id, first) = one_standard_hook().await;
    let listed = || {
        let server = &server;
        async move {
            let (_, list) = server.admin(Method::GET, "/api/webhooks", None).await;
            list["webhooks"][0].clone()
        }
    };
    let shown = listed().await;
    assert_eq!(shown["id"], json!(id));
    assert!(shown.get("old_secret_until").is_none(), "{shown}");
    let (status, r) = server
        .admin(Method::POST, &format!("/api/webhooks/{id}/secret"), None)
        .await;
    assert_eq!(status, 200, "{r}");
    let second = r["secret"].as_str().unwrap().to_string();
    assert!(r["previous_until"].is_string(), "{r}");
    assert_eq!(r["webhook"]["old_secret_until"], r["previous_until"]);
    assert_eq!(listed().await["old_secret_until"], r["previous_until"]);

    let end = format!("/api/webhooks/{id}/old-secret");
    // Only the admin ends it.
    let (_, key) = server.new_app(json!({"name": "Scanner"})).await;
    assert_eq!(
        server.status_with_key(Method::DELETE, &end, &key).await,
        401
    );
    assert_eq!(listed().await["old_secret_until"], r["previous_until"]);
    let (status, body) = server.admin(Method::DELETE, &end, None).await;
    assert_eq!(status, 204, "{body}");
    let shown = listed().await;
    assert!(shown.get("old_secret_until").is_none(), "{shown}");
    server
        .admin(Method::POST, &format!("/api/webhooks/{id}/test"), None)
        .await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].header("webhook-signature").matches("v1,").count(), 1);
    assert!(verifies(&second, &got[0]), "the new secret signs");
    assert!(!verifies(&first, &got[0]), "the old one no more");
    // Again, with none left: still there, still 204.
    assert_eq!(server.admin(Method::DELETE, &end, None).await.0, 204);
    // No such webhook, a huge id, one with CR LF: a short one-line 404.
    for missing in [
        "wh_none".to_string(),
        "x".repeat(4000),
        "wh_%0D%0Ainjected".to_string(),
    ] {
        let (status, body) = server
            .admin(
                Method::DELETE,
                &format!("/api/webhooks/{missing}/old-secret"),
                None,
            )
            .await;
        let said = body["message"].as_str().unwrap_or_default();
        assert_eq!(status, 404, "{body}");
        assert!(
            said.starts_with("There is no webhook")
                && said.len() < 300
                && !said.contains(['\r', '\n']),
            "{said}"
        );
    }
    let (_, r) = server
        .admin(Method::POST, &format!("/api/webhooks/{id}/secret"), None)
        .await;
    assert!(r["webhook"]["old_secret_until"].is_string(), "{r}");
}

/// The old secret signs for 24 hours after a new one, then no more.
#[tokio::test]
async fn a_replaced_secret_stops_signing_after_its_day() {
    let receiver = FakeReceiver::start().await;
    let outbox = Outbox::new();
    let (hooks, _) = outbox.open(Duration::from_secs(5));
    let (id, old) = subscribe(&hooks, receiver.url("/h"), &["message.sent"]).await;
    let new = mailroom_backend::webhooks::new_secret();
    let sealed = hooks.cipher().encrypt(
        "webhook_secret",
        &mailroom_backend::crypto::Secret::new(new.clone()),
    );
    let until = outbox.clock.wall().unix_timestamp()
        + mailroom_shared::webhooks::PREVIOUS_SECRET_HOURS * 3600;
    assert!(hooks
        .store()
        .replace_webhook_secret(&id, sealed, until)
        .await
        .unwrap());
    hooks.changed();
    hooks.emit("message.sent", json!({"id": "msg_1"})).await;
    assert_eq!(hooks.send_due().await, 1);
    outbox.clock.advance(Duration::from_secs(24 * 3600 - 1));
    hooks.emit("message.sent", json!({"id": "msg_2"})).await;
    assert_eq!(hooks.send_due().await, 1);
    outbox.clock.advance(Duration::from_secs(1));
    hooks.emit("message.sent", json!({"id": "msg_3"})).await;
    assert_eq!(hooks.send_due().await, 1);
    // The manual clock is a day ahead of the library's own: the signatures
    // are compared as it makes them.
    let signed_by = |secret: &str, h: &Hook| {
        let want = signature(secret, h);
        h.header("webhook-signature").split(' ').any(|s| s == want)
    };
    let got = receiver.hooks();
    let by_old: Vec<bool> = got.iter().map(|h| signed_by(&old, h)).collect();
    let by_new: Vec<bool> = got.iter().map(|h| signed_by(&new, h)).collect();
    assert_eq!(
        (by_old, by_new),
        (vec![true, true, false], vec![true, true, true])
    );
}
