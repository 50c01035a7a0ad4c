//! Microsoft Graph as the way out (docs/API.md §12), against a real server on
//! port 0, the fake Entra and the fake Graph `sendMail` on loopback: the test
//! email, delivery with a request-only Bcc, refusals before any request, each
//! reply's kind, `Retry-After`, and the attempts labelled by transport.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use mailroom_fakes::{addr, EntraMode, GraphError, Loopback, SmtpConfig};
use mailroom_shared::Transport;
use serde_json::json;

fn graph_settings() -> mailroom_shared::Settings {
    let mut s = oauth_settings("", 0);
    s.transport = Transport::Graph;
    s.host = String::new();
    s.port = 0;
    s
}

/// A server with Graph settings saved and an app: the rig, the server, the key.
async fn graph_rig() -> (Loopback, Running, String) {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    server.save(&graph_settings()).await;
    let (_, key) = server.new_app(json!({"name": "Billing"})).await;
    (rig, server, key)
}

/// A server with nothing saved, and Graph settings with their secret for the
/// test email: the rig, the server, the settings.
async fn test_email_rig() -> (Loopback, Running, mailroom_shared::Settings) {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    let mut settings = graph_settings();
    settings.client_secret = Some(mailroom_shared::fixtures::SECRET.into());
    (rig, server, settings)
}

#[tokio::test]
async fn the_test_email_goes_through_graph_with_token_and_send_stages() {
    let (rig, server, settings) = test_email_rig().await;
    let to = addr("admin", "contoso.com");
    let (status, r) = server
        .admin(
            reqwest::Method::POST,
            "/api/settings/test",
            Some(json!({"settings": settings, "recipient": to})),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    let stages: Vec<&str> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["token", "send"], "no connect, tls or auth: {r}");
    let transcript = r["transcript"].to_string();
    assert!(
        transcript.contains("POST /v1.0/users/") && transcript.contains("/sendMail"),
        "{transcript}"
    );
    assert!(
        transcript.contains("202")
            && transcript.contains("request-id: ")
            && transcript.contains("Date: "),
        "{transcript}"
    );
    assert!(transcript.contains("Bearer *****"), "{transcript}");
    // The token was for Graph: the fake checked its audience.
    let form = rig.entra.last_form().unwrap();
    assert_eq!(form["scope"], "https://graph.microsoft.com/.default");
    assert!(!transcript.contains(form["client_secret"].as_str()));
    let got = rig.graph.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mailbox, mailroom_shared::fixtures::mailer());
    assert_eq!(got[0].header("to").as_deref(), Some(to.as_str()));
    assert!(String::from_utf8_lossy(&got[0].mime).contains("Microsoft Graph (sendMail)"));
    assert_eq!(r["token_claims"]["roles"][0], "Mail.Send");
}

#[tokio::test]
async fn the_test_email_explains_graph_refusals_with_the_fix() {
    let (rig, server, settings) = test_email_rig().await;
    let test = |settings: mailroom_shared::Settings| {
        let server = &server;
        async move {
            let (status, r) = server
                .admin(
                    reqwest::Method::POST,
                    "/api/settings/test",
                    Some(json!({"settings": settings, "recipient": addr("admin", "contoso.com")})),
                )
                .await;
            assert_eq!(status, 200, "{r}");
            r
        }
    };
    rig.graph.fail_next(GraphError::new(
        403,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    ));
    let r = test(settings.clone()).await;
    assert_eq!(
        (r["ok"].as_bool(), r["stage"].as_str()),
        (Some(false), Some("send"))
    );
    assert_eq!(r["code"], "ErrorAccessDenied");
    let hint = r["hint"].as_str().unwrap();
    assert!(
        hint.contains("New-ManagementRoleAssignment")
            && hint.contains("Application Mail.Send")
            && hint.contains("New-ApplicationAccessPolicy")
            && hint.contains(mailroom_shared::fixtures::CLIENT),
        "{hint}"
    );
    assert!(
        r["transcript"].to_string().contains("ErrorAccessDenied"),
        "{r}"
    );
    // A mailbox Graph does not know.
    let mut unknown = settings.clone();
    unknown.username = Some(addr("nobody", "contoso.com"));
    unknown.sender_email = addr("nobody", "contoso.com");
    let r = test(unknown).await;
    assert_eq!(r["code"], "ErrorInvalidUser", "{r}");
    assert!(
        r["hint"].as_str().unwrap().contains("user principal name"),
        "{r}"
    );
    // A proxy answers 502 with a page that never ends: Mailroom reads 64 KB
    // of it, says so in the transcript, and explains the status.
    rig.graph.fail_endless(502);
    let r = test(settings.clone()).await;
    assert_eq!(
        (r["ok"].as_bool(), r["stage"].as_str(), r["code"].as_str()),
        (Some(false), Some("send"), Some("502")),
        "{r}"
    );
    let transcript = r["transcript"].to_string();
    assert!(
        transcript.contains("over 64 KB: Mailroom read no further"),
        "{transcript}"
    );
    assert!(
        r.to_string().len() < 20_000,
        "nothing of the page is kept whole"
    );
    rig.graph.recover();
    // A token for another audience (the fake now wants GCC High's Graph).
    rig.graph.set_audience("https://graph.microsoft.us");
    let r = test(settings.clone()).await;
    assert_eq!(r["code"], "InvalidAuthenticationToken", "{r}");
    assert!(
        r["hint"]
            .as_str()
            .unwrap()
            .contains("graph.microsoft.com/.default"),
        "{r}"
    );
}

#[tokio::test]
async fn a_cached_token_graph_refuses_is_fetched_again_once_and_the_email_sent() {
    let (rig, server, settings) = test_email_rig().await;
    let body = json!({"settings": settings, "recipient": addr("admin", "contoso.com")});
    let test = || {
        server.admin(
            reqwest::Method::POST,
            "/api/settings/test",
            Some(body.clone()),
        )
    };
    let (status, r) = test().await;
    assert_eq!((status, &r["ok"]), (200, &json!(true)), "{r}");
    assert_eq!(rig.entra.requests(), 1);
    // The cached token no longer works (Graph answers 401).
    rig.entra.revoke_all();
    let (status, r) = test().await;
    assert_eq!((status, &r["ok"]), (200, &json!(true)), "{r}");
    assert_eq!(rig.entra.requests(), 2, "one fresh token after the 401");
    assert_eq!(rig.graph.requests(), 3, "the refused request and one again");
    assert_eq!(rig.graph.accepted(), 2);
    let transcript = r["transcript"].to_string();
    // The status lines themselves: a random client-request-id or a byte
    // count may hold "401" or "202" too.
    assert!(
        transcript.find("401 Unauthorized (").unwrap() < transcript.find("202 Accepted (").unwrap(),
        "{transcript}"
    );
    assert_eq!(
        transcript.matches("Bearer *****").count(),
        2,
        "{transcript}"
    );
}

#[tokio::test]
async fn delivery_over_graph_adds_a_bcc_only_to_the_request_and_records_graphs_answer() {
    let (rig, server, key) = graph_rig().await;
    let (to, hidden) = (addr("a", "example.org"), addr("hidden", "example.org"));
    let (status, q) = server
        .submit(
            &key,
            &json!({"to": [to], "bcc": [hidden], "subject": "Invoice 7", "text": "Hello"}),
        )
        .await;
    assert_eq!(status, 202, "{q}");
    let id = q["id"].as_str().unwrap();
    let sent = server.wait_status(id, "sent").await;
    let got = rig.graph.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("bcc").as_deref(),
        Some(hidden.as_str()),
        "only the envelope-only recipient"
    );
    assert_eq!(got[0].header("to").as_deref(), Some(to.as_str()));
    let mime = String::from_utf8_lossy(&got[0].mime).to_string();
    assert!(
        mime.starts_with("Bcc: "),
        "prepended to the stored bytes: {mime}"
    );
    assert_eq!(mime.matches("Bcc:").count(), 1, "{mime}");
    for r in sent["recipients"].as_array().unwrap() {
        assert_eq!(r["status"], "sent");
        assert_eq!(r["code"], "202");
        assert!(
            r["message"].as_str().unwrap().contains("request-id "),
            "{r}"
        );
    }
    assert_eq!(sent["attempts"][0]["transport"], "graph", "{sent}");
    let metrics = server.metrics().await;
    assert!(
        metrics
            .contains("mailroom_delivery_attempts_total{transport=\"graph\",outcome=\"sent\"} 1"),
        "{metrics}"
    );
    // Nothing went over SMTP.
    assert_eq!(rig.smtp.messages().len(), 0);
}

#[tokio::test]
async fn messages_graph_cannot_send_as_submitted_fail_before_any_request() {
    let (rig, server, key) = graph_rig().await;
    let to = addr("a", "example.org");
    // Over 4,000,000 bytes in base64.
    let big = format!(
        "From: {}\r\nTo: {to}\r\nSubject: big\r\n\r\n{}\r\n",
        mailroom_shared::fixtures::mailer(),
        format!("{}\r\n", "x".repeat(76)).repeat(40_000)
    );
    let (status, q) = server.submit_raw(&key, "", big).await;
    assert_eq!(status, 202, "{q}");
    let failed = server
        .wait_status(q["id"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(failed["last_error"]["code"], "413", "{failed}");
    assert!(
        failed["attempts"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("SMTP"),
        "{failed}"
    );
    // To names someone outside the envelope (`?to=` sets it): Graph would mail them.
    let only = addr("only", "example.org");
    let raw = format!(
        "From: {}\r\nTo: {to}\r\nSubject: env\r\n\r\nx\r\n",
        mailroom_shared::fixtures::mailer()
    );
    let (status, q) = server.submit_raw(&key, &format!("?to={only}"), raw).await;
    assert_eq!(status, 202, "{q}");
    let failed = server
        .wait_status(q["id"].as_str().unwrap(), "failed")
        .await;
    let message = failed["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&to) && message.contains("outside its envelope"),
        "{failed}"
    );
    assert_eq!(rig.graph.requests(), 0, "neither was sent in part or whole");
}

#[tokio::test]
async fn each_graph_reply_has_its_kind_in_delivery() {
    let (rig, server, key) = graph_rig().await;
    let mail =
        |subject: &str| json!({"to": [addr("a", "example.org")], "subject": subject, "text": "x"});
    // About this message: failed, and the next one goes on.
    rig.graph.fail_next(GraphError::new(
        400,
        "ErrorInvalidRecipients",
        "At least one recipient isn't valid.",
    ));
    let (_, q) = server.submit(&key, &mail("bad")).await;
    let failed = server
        .wait_status(q["id"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(failed["last_error"]["code"], "ErrorInvalidRecipients");
    rig.graph.fail_next(GraphError::new(403, "ErrorSendAsDenied", "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account."));
    let (_, q) = server.submit(&key, &mail("send as")).await;
    let failed = server
        .wait_status(q["id"].as_str().unwrap(), "failed")
        .await;
    assert!(
        failed["attempts"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("Add-RecipientPermission"),
        "{failed}"
    );
    // Sent as an app's own address, the words and the fix name that address.
    let billing = addr("billing", "contoso.com");
    let (_, own) = server
        .new_app(json!({"name": "Invoices", "allowed_from": [billing]}))
        .await;
    rig.graph.fail_next(GraphError::new(403, "ErrorSendAsDenied", "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account."));
    let (_, q) = server
        .submit(
            &own,
            &json!({"from": billing, "to": [addr("a", "example.org")], "subject": "own", "text": "x"}),
        )
        .await;
    let failed = server
        .wait_status(q["id"].as_str().unwrap(), "failed")
        .await;
    let said = failed["last_error"]["message"].as_str().unwrap();
    assert!(
        said.starts_with(&format!("{} may not send as {billing}.", mailer())),
        "{failed}"
    );
    let hint = failed["attempts"][0]["hint"].as_str().unwrap();
    assert!(
        hint.contains(&format!(
            "`Add-RecipientPermission -Identity \"{billing}\" -Trustee \"{}\" -AccessRights SendAs`",
            mailer()
        )),
        "{failed}"
    );
    // Or the app sends as the settings' sender, not "send from the mailbox".
    assert!(
        hint.contains("take it out of the app's allowed_from, or turn on the app's rewrite_from"),
        "{failed}"
    );
    assert!(!hint.contains("or send from"), "{failed}");
    // Busy: deferred, tried again later.
    rig.graph.fail_next(GraphError::new(
        503,
        "ServiceUnavailable",
        "Service unavailable.",
    ));
    let (_, q) = server.submit(&key, &mail("busy")).await;
    let deferred = server
        .wait_status(q["id"].as_str().unwrap(), "deferred")
        .await;
    assert_eq!(deferred["last_error"]["code"], "ServiceUnavailable");
    // Not about one message: delivery pauses with the fix and nothing fails.
    rig.graph.fail_always(GraphError::new(
        403,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    ));
    let (_, q) = server.submit(&key, &mail("denied")).await;
    let paused = server.wait_paused(1).await;
    assert_eq!(paused["paused"]["code"], "ErrorAccessDenied", "{paused}");
    assert!(paused["paused"]["hint"]
        .as_str()
        .unwrap()
        .contains("New-ManagementScope"));
    assert_eq!(
        server.message(q["id"].as_str().unwrap()).await["status"],
        "queued"
    );
    // Fixed and saved again: it goes, and the pause ends.
    rig.graph.recover();
    server.save(&graph_settings()).await;
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    assert!(server.queue().await["paused"].is_null());
    // The daily quota: a wait, not an attempt.
    rig.graph.fail_next(GraphError::new(
        403,
        "SubmissionQuotaExceeded",
        "Message submission quota exceeded for this mailbox.",
    ));
    let (_, q) = server.submit(&key, &mail("quota")).await;
    let waiting = server
        .wait_status(q["id"].as_str().unwrap(), "deferred")
        .await;
    assert_eq!(
        waiting["attempt_count"], 0,
        "a quota wait adds no attempt: {waiting}"
    );
    // Waiting like a profile's own daily limit (docs/API.md §15): code
    // quota, no attempt row, Graph's code kept in the message.
    assert_eq!(waiting["last_error"]["code"], "quota", "{waiting}");
    assert!(
        waiting["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("SubmissionQuotaExceeded"),
        "{waiting}"
    );
    assert_eq!(waiting["attempts"], json!([]), "{waiting}");
}

/// The sign-in check while idle (`--sign-in-check`) of a Graph profile is
/// the token alone: no request to Graph (it would have to send mail), no
/// SMTP connection.
#[tokio::test]
async fn an_idle_graph_profile_checks_its_token_alone_and_pauses_on_an_expired_secret() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, checking).await;
    server.save(&graph_settings()).await;
    wait_for("no sign-in check", || rig.entra.requests() >= 2).await;
    assert_eq!(rig.graph.requests(), 0, "a check sends nothing");
    assert_eq!(
        rig.smtp.connections(),
        0,
        "Graph's check is no SMTP sign-in"
    );
    assert!(server.queue().await["paused"].is_null());
    rig.entra.set_mode(EntraMode::Error {
        status: 401,
        error: "invalid_client",
        code: 7000222,
    });
    let q = server.wait_paused(0).await;
    assert_eq!(q["paused"]["stage"], "token", "{q}");
    assert_eq!(q["paused"]["code"], "AADSTS7000222", "{q}");
    rig.entra.set_mode(EntraMode::Normal);
    server.wait_unpaused().await;
    assert_eq!(rig.graph.requests(), 0, "a check sends nothing");
}

#[tokio::test]
async fn a_retry_after_of_the_largest_number_defers_and_delivery_lives_on() {
    // Taken as a day at most: before, the sum overflowed the clock and the
    // worker panicked with the message still claimed.
    let (rig, server, key) = graph_rig().await;
    rig.graph.fail_next(GraphError::throttled(u64::MAX));
    let mail = json!({"to": [addr("a", "example.org")], "subject": "s", "text": "x"});
    let (_, first) = server.submit(&key, &mail).await;
    let deferred = server
        .wait_status(first["id"].as_str().unwrap(), "deferred")
        .await;
    assert_eq!(deferred["last_error"]["code"], "ApplicationThrottled");
    assert_eq!(deferred["attempt_count"], 1, "{deferred}");
    let (status, queue) = server.admin(reqwest::Method::GET, "/api/queue", None).await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(
        queue["counts"]["sending"], 0,
        "nothing is left claimed: {queue}"
    );
}

#[tokio::test]
async fn a_429_holds_every_message_for_its_retry_after() {
    let (rig, server, key) = graph_rig().await;
    rig.graph.fail_next(GraphError::throttled(2));
    let mail =
        |subject: &str| json!({"to": [addr("a", "example.org")], "subject": subject, "text": "x"});
    let (_, first) = server.submit(&key, &mail("first")).await;
    let deferred = server
        .wait_status(first["id"].as_str().unwrap(), "deferred")
        .await;
    assert_eq!(deferred["last_error"]["code"], "ApplicationThrottled");
    let (_, second) = server.submit(&key, &mail("second")).await;
    server
        .wait_status(second["id"].as_str().unwrap(), "sent")
        .await;
    let times = rig.graph.request_times();
    assert_eq!(times.len(), 2, "the throttled one and the next");
    assert!(
        times[1] - times[0] >= Duration::from_millis(1900),
        "the next request waited for Retry-After: {:?}",
        times[1] - times[0]
    );
}

/// Saves Graph settings while Graph refuses the mailbox (delivery pauses)
/// and queues `n` messages of a new app, so that every worker has work at
/// once when it resumes: their ids, and the requests made so far.
async fn queued_while_paused(rig: &Loopback, server: &Running, n: usize) -> (Vec<String>, usize) {
    rig.graph.fail_always(GraphError::access_denied());
    server.save(&graph_settings()).await;
    let (_, key) = server.new_app(json!({"name": "Billing"})).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let mail =
            json!({"to": [addr("a", "example.org")], "subject": format!("m{i}"), "text": "x"});
        let (status, m) = server.submit(&key, &mail).await;
        assert_eq!(status, 202, "{m}");
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    server.wait_paused(n as u64).await;
    (ids, rig.graph.requests())
}

#[tokio::test]
async fn graph_gets_no_more_requests_at_once_than_it_takes_per_mailbox() {
    // Eight connections asked for; Graph answers a fifth request at once for
    // a mailbox with 429 (its MailboxConcurrency limit), which would defer
    // messages and hold the whole profile back.
    let rig = Loopback::start(SmtpConfig::default()).await;
    rig.graph.set_delay(Duration::from_millis(50));
    let server = start(&rig, |a| a.sending.delivery_connections = Some(8)).await;
    // Paused (Graph refuses the mailbox) while the queue fills, so every
    // worker has work at once when it resumes; the fake counts from then.
    // Enough that each of eight workers' first claims (16) finds messages.
    const N: usize = 150;
    let (ids, refused) = queued_while_paused(&rig, &server, N).await;
    rig.graph.recover();
    server.save(&graph_settings()).await;
    for id in &ids {
        let sent = server.wait_status(id, "sent").await;
        let attempts = sent["attempts"].as_array().unwrap();
        assert!(
            attempts.iter().all(|a| a["code"] != "ApplicationThrottled"),
            "never throttled: {sent}"
        );
    }
    assert_eq!(rig.graph.requests() - refused, N, "one request each");
    let most = rig.graph.most_at_once();
    assert!(
        (2..=mailroom_fakes::graph::MAX_CONCURRENT).contains(&most),
        "requests at once for the mailbox: {most}"
    );
}

/// Graph's limits per mailbox (150 MB uploaded in 5 minutes, 10,000
/// requests in 10), scaled down in Mailroom and in the fake alike: messages
/// past them wait for room instead of being throttled (a `429` would hold
/// the whole profile for its `Retry-After` and add an attempt).
async fn paced_rig(bytes: u64, requests: u64, span: Duration) -> (Loopback, Running, String) {
    paced_rig_with(bytes, requests, span, |_| {}).await
}

async fn paced_rig_with(
    bytes: u64,
    requests: u64,
    span: Duration,
    tweak: impl FnOnce(&mut mailroom_backend::config::ServeArgs),
) -> (Loopback, Running, String) {
    let rig = Loopback::start(SmtpConfig::default()).await;
    rig.graph.set_limits(mailroom_fakes::graph::Limits {
        requests: requests as usize,
        requests_span: span,
        bytes,
        bytes_span: span,
    });
    let server = start(&rig, |a| {
        a.sending.graph_upload_limit = (bytes, span);
        a.sending.graph_request_limit = (requests, span);
        tweak(a);
    })
    .await;
    server.save(&graph_settings()).await;
    let (_, key) = server.new_app(json!({"name": "Scanner"})).await;
    (rig, server, key)
}

/// Submits `n` messages of `text` and waits until all are sent, each at
/// its first attempt; returns when each request reached the fake.
async fn send_paced(
    rig: &Loopback,
    server: &Running,
    key: &str,
    n: usize,
    text: &str,
) -> Vec<std::time::Instant> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mail =
            json!({"to": [addr("a", "example.org")], "subject": format!("scan {i}"), "text": text});
        let (status, m) = server.submit(key, &mail).await;
        assert_eq!(status, 202, "{m}");
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let sent = server.wait_status(id, "sent").await;
        assert_eq!(
            sent["attempt_count"], 1,
            "sent at its first attempt: {sent}"
        );
    }
    assert_eq!(
        rig.graph.throttled(),
        0,
        "Graph never throttled the mailbox"
    );
    let mut times: Vec<_> = rig.graph.messages().iter().map(|m| m.at).collect();
    times.sort();
    assert_eq!(times.len(), n);
    times
}

#[tokio::test]
async fn uploads_past_graphs_byte_limit_wait_for_room_instead_of_a_429() {
    // About 27 KB a request: two fit in 60 KB, a third waits for the window.
    let span = Duration::from_secs(3);
    let (rig, server, key) = paced_rig(60_000, 1000, span).await;
    let text = "Scanned page, 300 dpi, one of many in this document.\n".repeat(380);
    let times = send_paced(&rig, &server, &key, 5, &text).await;
    assert!(
        times[2] - times[0] >= span - Duration::from_millis(100),
        "the third request waited until the first left the window: {:?}",
        times[2] - times[0]
    );
    assert!(
        times[4] - times[0] >= 2 * span - Duration::from_millis(200),
        "the fifth waited for a second window: {:?}",
        times[4] - times[0]
    );
}

#[tokio::test]
async fn requests_past_graphs_request_limit_wait_for_room_instead_of_a_429() {
    let span = Duration::from_secs(2);
    let (rig, server, key) = paced_rig(150_000_000, 2, span).await;
    let times = send_paced(&rig, &server, &key, 5, "x").await;
    for (a, b) in [(0, 2), (2, 4)] {
        assert!(
            times[b] - times[a] >= span - Duration::from_millis(100),
            "request {b} waited until request {a} left the window: {:?}",
            times[b] - times[a]
        );
    }
}

/// On PostgreSQL (several servers' store), a wait for Graph's windows
/// longer than the claim's lease keeps the message: its claim is renewed
/// meanwhile and the connection slot, lapsed, is taken again before it goes.
#[tokio::test]
async fn a_wait_for_graphs_windows_longer_than_the_lease_keeps_the_claim_on_postgresql() {
    let schema = common::pg::PgSchema::new().await;
    let span = Duration::from_secs(3);
    let (rig, server, key) = paced_rig_with(60_000, 1000, span, |a| {
        a.database_url = Some(schema.url.clone());
        a.sending.delivery_lease = Duration::from_secs(1);
    })
    .await;
    let text = "Scanned page, 300 dpi, one of many in this document.\n".repeat(380);
    let times = send_paced(&rig, &server, &key, 3, &text).await;
    assert!(times[2] - times[0] >= span - Duration::from_millis(100));
    // A lapsed claim would be claimed again by another worker, which would
    // wait its turn and then send the message a second time.
    tokio::time::sleep(2 * span).await;
    assert_eq!(rig.graph.requests(), 3, "each message went once");
}

/// A batch claimed by one worker that outlasts its lease (an upstream that
/// became slow): another worker of the same server takes the lapsed
/// messages, and the first must then leave them, not renew its claim over
/// the other's and send them a second time.
#[tokio::test]
async fn a_lapsed_claim_taken_by_another_worker_is_not_sent_twice() {
    // Six requests take longer than the lease, each one less: the first
    // worker's batch lapses behind it while it sends, each message's claim
    // renewed just before its request.
    lapsed_claims_go_once(6, Duration::from_millis(600)).await;
}

/// A request that takes longer than the lease (a slow upstream): the
/// message's claim is renewed while it is sent, so no other worker takes it
/// and sends it at the same time.
#[tokio::test]
async fn a_request_longer_than_the_lease_keeps_its_claim() {
    lapsed_claims_go_once(2, Duration::from_millis(2500)).await;
}

/// `n` messages claimed together by one of two workers, each request taking
/// `each` against a lease of a second: every message goes exactly once.
async fn lapsed_claims_go_once(n: usize, each: Duration) {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |a| {
        a.sending.delivery_lease = Duration::from_secs(1);
        a.sending.delivery_connections = Some(2);
    })
    .await;
    let (ids, refused) = queued_while_paused(&rig, &server, n).await;
    rig.graph.set_delay(each);
    rig.graph.recover();
    server.save(&graph_settings()).await;
    for id in &ids {
        let sent = server.wait_status(id, "sent").await;
        assert_eq!(sent["attempt_count"], 1, "sent once: {sent}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.graph.requests() - refused, n, "one request each");
}

/// SIGKILL at full speed: no rate limit and Graph answering at once, so
/// claims are large and attempts are committed together every few
/// milliseconds, and the kill lands with messages sent whose attempt is not
/// committed yet. After a restart every acknowledged message goes out; only
/// the last uncommitted group (at most one commit's worth, 256) and the one
/// request in flight per connection may go twice.
#[tokio::test]
async fn sigkill_at_full_speed_loses_nothing_acknowledged() {
    const N: usize = 1000;
    let rig = Loopback::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut first, url) = spawn_mailroom(&rig, &data, "0").await;
    let mut server = Running::client(url);
    // Paused (Graph refuses the mailbox) while the queue fills.
    rig.graph.fail_always(GraphError::access_denied());
    server.save(&graph_settings()).await;
    let (_, key) = server.new_app(json!({"name": "Batch"})).await;
    let text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(90);
    let submits = (0..N).map(|i| {
        let (server, key, text) = (&server, &key, &text);
        async move {
            let body = json!({"to": [addr("a", "example.org")], "subject": format!("fast {i}"), "text": text});
            let (status, q) = server.submit(key, &body).await;
            assert_eq!(status, 202, "{q}");
            q["id"].as_str().unwrap().to_string()
        }
    });
    let ids: Vec<String> = futures_util::stream::iter(submits)
        .buffer_unordered(16)
        .collect()
        .await;
    server.wait_paused(N as u64).await;
    rig.graph.recover();
    server.save(&graph_settings()).await;
    let started = std::time::Instant::now();
    while rig.graph.accepted() < N / 10 {
        assert!(started.elapsed() < Duration::from_secs(60), "never resumed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let before_restart = rig.graph.accepted();
    assert!(
        before_restart < N,
        "the kill came mid-delivery ({before_restart} delivered)"
    );

    let (_second, url) = spawn_mailroom(&rig, &data, "0").await;
    server.url = url;
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    let per_subject = count_each(
        rig.graph
            .messages()
            .iter()
            .map(|m| m.header("subject").unwrap_or_default()),
    );
    for i in 0..N {
        assert!(
            per_subject.contains_key(&format!("fast {i}")),
            "fast {i} was lost"
        );
    }
    let twice = per_subject.values().filter(|n| **n > 1).count();
    assert!(
        twice <= 256 + 3,
        "only the attempts not yet committed at the kill may go twice: {twice}"
    );
    assert_eq!(per_subject.len(), N, "nothing else was sent");
}
