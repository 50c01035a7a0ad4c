//! What ships next to the binary, checked with the real tools: the
//! Prometheus alert rules with Debian's `promtool` (installed by the test
//! setup, `scripts/debian-tools.sh`; missing is a failure, never a skip),
//! and every metric they use against a running server's `/metrics`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .unwrap_or_else(|e| panic!("promtool ({e}): run the tests with `cargo xtask test`, whose setup installs Debian's prometheus package"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_and_their_own_unit_tests() {
    let checked = promtool(&["check", "rules", "mailroom-alerts.yml"]);
    assert!(checked.contains("SUCCESS: 13 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "mailroom-alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    let rules = std::fs::read_to_string(rules_dir().join("mailroom-alerts.yml")).unwrap();
    for alert in [
        "MailroomDeliveryPaused",
        "MailroomCredentialExpiring",
        "MailroomBasicAuthRetiring",
        "MailroomAppOldKeyRefused",
        "MailroomRelayCertificateExpiring",
        "MailroomOldestQueuedMessage",
        "MailroomWebhookFailing",
        "MailroomQuotaReached",
        "MailroomProfileDailyLimitReached",
        "MailroomIntakeFull",
        "MailroomDown",
        "MailroomMessagesFailed",
        "MailroomRecipientsFailed",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert}");
    }
    assert_eq!(rules.matches("Fix:").count(), 13, "each alert says the fix");
}

#[tokio::test]
async fn every_metric_the_alert_rules_use_is_exported() {
    let (rig, server) = relay_rig(|_| {}).await;
    let mut s = oauth_settings("localhost", rig.smtp.port());
    s.client_secret_expires = Some("2027-06-30".into());
    server.save(&s).await;
    // A profile that still signs in to Exchange Online with a password.
    let mut basic =
        mailroom_shared::fixtures::office365_second_tenant("localhost", rig.smtp.port(), "x");
    basic.auth_method = mailroom_shared::AuthMethod::Password;
    basic.password = Some("app-password".into());
    let (status, made) = server
        .admin(
            reqwest::Method::POST,
            "/api/profiles",
            Some(serde_json::json!({"name": "Old printer", "settings": basic})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    // Drive every series once: an app past its limit, a webhook that fails.
    let receiver = mailroom_fakes::FakeReceiver::start().await;
    receiver.always(mailroom_fakes::Answer::Status(500));
    server
        .add_webhook(serde_json::json!({"url": receiver.url("/h"), "events": ["message.sent"]}))
        .await;
    let (_, key) = server
        .new_app(serde_json::json!({"name": "Busy", "limits": {"messages_per_hour": 1}}))
        .await;
    let mail = serde_json::json!({"to": [mailroom_fakes::addr("a", "example.org")], "subject": "s", "text": "x"});
    let (first, q) = server.submit(&key, &mail).await;
    assert_eq!(first, 202, "{q}");
    assert_eq!(server.submit(&key, &mail).await.0, 429);
    // A device still using an app's replaced key.
    let (moved, old) = server.new_app(serde_json::json!({"name": "Moved"})).await;
    let path = format!("/api/apps/{moved}/key");
    assert_eq!(
        server.admin(reqwest::Method::POST, &path, None).await.0,
        200
    );
    assert_eq!(server.submit(&old, &mail).await.0, 401);
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    // And a message that fails for good: its only recipient is refused.
    let gone = mailroom_fakes::addr("gone", "example.org");
    rig.smtp.configure(|c| {
        c.rcpt_replies
            .insert(gone.clone(), "550 5.1.1 RESOLVER.ADR.RecipNotFound".into());
    });
    let (_, other) = server.new_app(serde_json::json!({"name": "Other"})).await;
    let to_gone = serde_json::json!({"to": [gone], "subject": "s", "text": "x"});
    let (status, q) = server.submit(&other, &to_gone).await;
    assert_eq!(status, 202, "{q}");
    server
        .wait_status(q["id"].as_str().unwrap(), "failed")
        .await;
    // And one sent, but not to every recipient.
    let some = mailroom_fakes::addr("some", "example.org");
    let to_some = serde_json::json!({"to": [some, gone], "subject": "s", "text": "x"});
    let (status, q) = server.submit(&other, &to_some).await;
    assert_eq!(status, 202, "{q}");
    server.wait_status(q["id"].as_str().unwrap(), "sent").await;
    receiver.wait_for(1).await;
    let started = std::time::Instant::now();
    let metrics = loop {
        let m = server.metrics().await;
        if m.contains("mailroom_webhook_failures_total") {
            break m;
        }
        assert!(
            started.elapsed().as_secs() < 20,
            "no webhook failure counted:\n{m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let rules = std::fs::read_to_string(rules_dir().join("mailroom-alerts.yml")).unwrap();
    let mut used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("mailroom_"))
        .collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 12, "{used:?}");
    for name in used {
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{name} is not exported:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("mailroom_delivery_paused{profile=\"default\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("mailroom_oldest_queued_age_seconds{profile=\"default\"} 0"));
    assert!(
        metrics.contains("mailroom_recipients_failed_total{app=\"app_"),
        "{metrics}"
    );
    // The relay's generated certificate, good until 4096.
    let cert = server.data.join("smtp-tls-cert.pem").display().to_string();
    let line = format!("mailroom_relay_certificate_expiry_timestamp_seconds{{cert=\"{cert}\"}} ");
    let end: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("{line}:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(end > 4_000_000_000, "{end}");
}

/// A relay certificate in a directory whose name holds a `"`, a `\` and a
/// line feed is named in its label as the text format asks: the whole scrape
/// passes `promtool check metrics`. Before, the `"` ended the label's value
/// early and Prometheus refused the scrape, every metric with it.
#[tokio::test]
async fn the_scrape_stays_readable_with_an_odd_certificate_path() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("relay \"tls\"\\new\nline");
    std::fs::create_dir(&odd).unwrap();
    let (cert, key) = (odd.join("relay.crt"), odd.join("relay.key"));
    write_localhost_pair(&cert, &key, None);
    let (_rig, server) = relay_rig(|a| {
        a.relay.smtp_tls_cert = Some(cert.clone());
        a.relay.smtp_tls_key = Some(key.clone());
    })
    .await;
    let started = std::time::Instant::now();
    let metrics = loop {
        let m = server.metrics().await;
        if m.contains("mailroom_relay_certificate_expiry_timestamp_seconds{") {
            break m;
        }
        assert!(started.elapsed().as_secs() < 20, "no certificate:\n{m}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let escaped = odd
        .join("relay.crt")
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    assert!(
        metrics.contains(&format!("{{cert=\"{escaped}\"}} ")),
        "{metrics}"
    );
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool: run the tests with `cargo xtask test`");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool reads the classic text format, where the HELP of an
    // OpenMetrics counter (named without `_total`) is not its sample's: it
    // lints "no help text" for those and exits 3. A scrape it cannot read
    // exits 1 with "error while linting: text format parsing error".
    assert!(
        matches!(out.status.code(), Some(0 | 3)) && !said.contains("error"),
        "promtool check metrics ({}):\n{said}\n{metrics}",
        out.status
    );
}
