//! The test email against loopback fakes: the Entra token endpoint and an SMTP
//! server with STARTTLS, XOAUTH2, PLAIN and LOGIN and scripted Exchange replies.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use common::*;
use mailroom_backend::config::TestArgs;
use mailroom_backend::test_email::{Tester, Timeouts};
use mailroom_fakes::{
    addr, EntraMode, FakeEntra, FakeSmtp, Loopback, SmtpConfig, TestPki, TlsMode,
};
use mailroom_shared::api::{Stage, TestResult};
use mailroom_shared::{AuthMethod, Security, Settings};

struct Rig {
    entra: FakeEntra,
    smtp: FakeSmtp,
    args: TestArgs,
    _rig: Loopback,
}

impl Rig {
    async fn start(config: SmtpConfig) -> Rig {
        let rig = Loopback::start(config).await;
        Rig {
            entra: rig.entra.clone(),
            smtp: rig.smtp.clone(),
            args: test_args(&rig),
            _rig: rig,
        }
    }

    fn tester(&self) -> Tester {
        Tester::new(&self.args).unwrap()
    }

    fn settings(&self) -> Settings {
        oauth_settings("localhost", self.smtp.port())
    }
}

fn recipient() -> String {
    addr("admin", "contoso.com")
}

fn assert_fails(r: &TestResult, stage: Stage, code: Option<&str>) {
    assert!(!r.ok, "{r:?}");
    assert_eq!(r.stage, Some(stage), "{r:?}");
    assert_eq!(r.code.as_deref(), code, "{r:?}");
    assert!(
        !r.message.is_empty() && r.hint.as_deref().is_some_and(|h| !h.is_empty()),
        "{r:?}"
    );
}

fn transcript_text(r: &TestResult) -> String {
    r.transcript
        .iter()
        .map(|l| format!("{:?} {}\n", l.dir, l.line))
        .collect()
}

#[tokio::test]
async fn oauth_success_delivers_the_email_with_proper_headers() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let r = rig.tester().run(&rig.settings(), &recipient()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        (r.stage, r.code.as_deref(), r.hint.as_deref()),
        (None, None, None)
    );
    let names: Vec<&str> = r.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["token", "connect", "tls", "auth", "send"]);
    assert!(r.stages.iter().all(|s| s.ok));
    let claims = r.token_claims.clone().unwrap();
    assert_eq!(
        (claims.tid.as_deref(), claims.appid.as_deref()),
        (Some(TENANT), Some(CLIENT))
    );
    assert_eq!(claims.roles, vec!["SMTP.SendAsApp"]);

    let form = rig.entra.last_form().unwrap();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "https://outlook.office365.com/.default");
    assert_eq!(form["client_id"], CLIENT);

    let messages = rig.smtp.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.mail_from, mailer());
    assert_eq!(m.rcpt_to, vec![recipient()]);
    assert_eq!(m.user.as_deref(), Some(mailer().as_str()));
    assert!(
        m.data
            .contains(&format!("From: \"Contoso notifications\" <{}>", mailer())),
        "{}",
        m.data
    );
    assert!(
        m.data.contains(&format!("To: {}", recipient())),
        "{}",
        m.data
    );
    assert!(
        m.data
            .contains("Subject: Mailroom test email: Office 365, OAuth 2.0"),
        "{}",
        m.data
    );
    assert!(m.data.contains("\r\nDate: "), "{}", m.data);
    assert!(m.data.contains("\r\nMessage-ID: <"), "{}", m.data);
    assert!(m.data.contains("SMTP server: localhost:"), "{}", m.data);

    let t = transcript_text(&r);
    assert!(t.contains("Server 220 fake.outlook.test"), "{t}");
    assert!(t.contains("Client STARTTLS"), "{t}");
    assert!(t.contains("Client AUTH XOAUTH2 *****"), "{t}");
    assert!(t.contains("Server 235 2.7.0"), "{t}");
    assert!(
        t.contains(&format!("Client MAIL FROM:<{}>", mailer())),
        "{t}"
    );
}

#[tokio::test]
async fn transcript_and_logs_never_hold_a_secret() {
    use tracing_subscriber::layer::SubscriberExt;
    let rig = Rig::start(SmtpConfig::default()).await;
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = logs.clone();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(move || LogWriter(sink.clone()))
            .with_ansi(false),
    );
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), rig.args.clone()).await;
    let body =
        serde_json::json!({"settings": rig.settings(), "recipient": recipient()}).to_string();
    let reply = call(
        &router,
        request("POST", "/api/settings/test", Some(body), true),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json["ok"], true, "{:?}", reply.json);
    let issued: Vec<String> = rig
        .entra
        .issued_tokens()
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    assert_eq!(issued.len(), 1);
    let token = &issued[0];
    let b64 = base64::engine::general_purpose::STANDARD;
    let blob = b64.encode(format!("user={}\x01auth=Bearer {token}\x01\x01", mailer()));
    let response_text = reply.json.to_string();
    let log_text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(
        log_text.contains("test email"),
        "the subscriber captured the backend's logs"
    );
    for needle in [
        SECRET.to_string(),
        b64.encode(SECRET),
        token.clone(),
        b64.encode(token),
        blob,
    ] {
        assert!(!response_text.contains(&needle), "response leaks {needle}");
        assert!(!log_text.contains(&needle), "logs leak {needle}");
    }
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn token_errors_name_the_code_the_ids_and_the_fix() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let tester = rig.tester();

    let mut wrong_secret = rig.settings();
    wrong_secret.client_secret = Some("9a8b7c6d-1111-4222-8333-444455556666".into());
    let r = tester.run(&wrong_secret, &recipient()).await;
    assert_fails(&r, Stage::Token, Some("AADSTS7000215"));
    assert!(
        r.hint
            .as_deref()
            .unwrap()
            .contains("Value, not its Secret ID"),
        "{r:?}"
    );
    assert!(
        r.message.contains("0000aaaa-1111-bbbb-2222-cccc3333dddd"),
        "trace ID shown: {}",
        r.message
    );
    assert!(
        r.message.contains("4444eeee-5555-ffff-6666-777788889999"),
        "correlation ID shown"
    );
    assert!(
        r.transcript.is_empty() && rig.smtp.connections() == 0,
        "no SMTP after a token failure"
    );

    let mut wrong_tenant = rig.settings();
    wrong_tenant.tenant_id = Some("11111111-2222-4333-8444-555555555555".into());
    assert_fails(
        &tester.run(&wrong_tenant, &recipient()).await,
        Stage::Token,
        Some("AADSTS90002"),
    );

    let mut wrong_client = rig.settings();
    wrong_client.client_id = Some("11111111-2222-4333-8444-555555555555".into());
    assert_fails(
        &tester.run(&wrong_client, &recipient()).await,
        Stage::Token,
        Some("AADSTS700016"),
    );

    let table: [(u16, &str, u64, &str); 10] = [
        (400, "invalid_request", 900023, "malformed"),
        (401, "invalid_client", 7000222, "expired"),
        (400, "unauthorized_client", 7000112, "disabled"),
        (400, "invalid_scope", 1002012, "scope"),
        (400, "invalid_scope", 70011, "scope"),
        (400, "invalid_resource", 500011, "Cloud"),
        (400, "invalid_grant", 53003, "Conditional Access"),
        (400, "invalid_request", 900382, "cloud"),
        (400, "invalid_request", 90038, "cloud"),
        (400, "temporarily_unavailable", 50196, "loop"),
    ];
    for (status, error, code, word) in table {
        rig.entra.set_mode(EntraMode::Error {
            status,
            error,
            code,
        });
        let r = tester.run(&rig.settings(), &recipient()).await;
        let expected = format!("AADSTS{code}");
        assert_fails(&r, Stage::Token, Some(expected.as_str()));
        let text = format!("{} {}", r.message, r.hint.clone().unwrap());
        assert!(
            text.to_lowercase().contains(&word.to_lowercase()),
            "{code}: {text}"
        );
    }

    rig.entra.set_mode(EntraMode::BadGateway);
    let r = tester.run(&rig.settings(), &recipient()).await;
    assert_fails(&r, Stage::Token, Some("502"));
    assert!(r.message.contains("server error"), "{r:?}");

    rig.entra.set_mode(EntraMode::NotJson);
    let r = tester.run(&rig.settings(), &recipient()).await;
    assert_fails(&r, Stage::Token, Some("200"));
    assert!(
        r.message.contains("something other than Entra's JSON"),
        "{r:?}"
    );
}

#[tokio::test]
async fn unreachable_and_slow_token_endpoints() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let rig = Rig::start(SmtpConfig::default()).await;
    let args = TestArgs {
        entra_authority: Some(format!("http://127.0.0.1:{port}")),
        ..rig.args.clone()
    };
    let r = Tester::new(&args)
        .unwrap()
        .run(&rig.settings(), &recipient())
        .await;
    assert_fails(&r, Stage::Token, None);
    assert!(r.message.contains("Could not connect"), "{r:?}");
    assert!(
        r.message.to_lowercase().contains("refused"),
        "{}",
        r.message
    );
    assert!(
        !r.message.contains("error sending request"),
        "{}",
        r.message
    );

    rig.entra.set_mode(EntraMode::Delay(Duration::from_secs(5)));
    let timeouts = Timeouts {
        token: Duration::from_millis(500),
        ..Timeouts::default()
    };
    let tester = Tester::with_timeouts(&rig.args, timeouts).unwrap();
    let started = std::time::Instant::now();
    let r = tester.run(&rig.settings(), &recipient()).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "gave up at the timeout"
    );
    assert_fails(&r, Stage::Token, None);
    assert!(r.message.contains("did not answer"), "{r:?}");
}

#[tokio::test]
async fn token_cache_hits_shares_and_keys_by_secret() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let tester = Arc::new(rig.tester());
    assert!(tester.run(&rig.settings(), &recipient()).await.ok);
    assert!(tester.run(&rig.settings(), &recipient()).await.ok);
    assert_eq!(
        rig.entra.requests(),
        1,
        "the second test used the cached token"
    );

    // Concurrent tests with a new key share one request.
    let mut other = rig.settings();
    other.client_secret = Some("second-secret".into());
    rig.entra.register(TENANT, CLIENT, "second-secret");
    let runs = (0..3).map(|_| {
        let (t, s) = (tester.clone(), other.clone());
        tokio::spawn(async move { t.run(&s, &recipient()).await })
    });
    for r in futures_util::future::join_all(runs).await {
        assert!(r.unwrap().ok);
    }
    assert_eq!(
        rig.entra.requests(),
        2,
        "three concurrent tests, one token request"
    );

    // A changed secret never reuses a token fetched with another one.
    let mut wrong = rig.settings();
    wrong.client_secret = Some("not-the-secret".into());
    let r = tester.run(&wrong, &recipient()).await;
    assert_fails(&r, Stage::Token, Some("AADSTS7000215"));
    assert_eq!(rig.entra.requests(), 3);

    // A token that expires within 5 minutes is not cached.
    rig.entra.set_expires_in(120);
    let mut short = rig.settings();
    short.client_secret = Some("third".into());
    rig.entra.register(TENANT, CLIENT, "third");
    assert!(tester.run(&short, &recipient()).await.ok);
    assert!(tester.run(&short, &recipient()).await.ok);
    assert_eq!(rig.entra.requests(), 5);
}

#[tokio::test]
async fn a_535_with_a_cached_token_retries_once_with_a_fresh_one() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let tester = rig.tester();
    assert!(tester.run(&rig.settings(), &recipient()).await.ok);
    rig.entra.revoke_all();
    let r = tester.run(&rig.settings(), &recipient()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(rig.entra.requests(), 2, "one fresh token after the 535");
    let tokens = r.stages.iter().filter(|s| s.name == Stage::Token).count();
    assert_eq!(tokens, 2);
    assert!(r.stages.iter().any(|s| s.name == Stage::Auth && !s.ok));
}

async fn scripted(config: SmtpConfig, change: impl FnOnce(&mut Settings)) -> (TestResult, Rig) {
    let rig = Rig::start(config).await;
    let mut s = rig.settings();
    change(&mut s);
    (rig.tester().run(&s, &recipient()).await, rig)
}

#[tokio::test]
async fn exchange_replies_map_to_stage_code_and_powershell_fix() {
    let cfg = |f: fn(&mut SmtpConfig)| {
        let mut c = SmtpConfig::default();
        f(&mut c);
        c
    };
    let (r, _) = scripted(
        cfg(|c| c.auth_reply = Some("535 5.7.3 Authentication unsuccessful [X]".into())),
        |_| {},
    )
    .await;
    assert_fails(&r, Stage::Auth, Some("5.7.3"));
    let hint = r.hint.unwrap();
    assert!(
        hint.contains(&format!("New-ServicePrincipal -AppId {CLIENT}")),
        "{hint}"
    );
    assert!(
        hint.contains(&format!("Add-MailboxPermission -Identity \"{}\"", mailer())),
        "{hint}"
    );
    assert!(
        hint.contains("Enterprise application's Object ID"),
        "{hint}"
    );

    let (r, _) = scripted(
        cfg(|c| c.auth_reply = Some("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled".into())),
        |_| {},
    )
    .await;
    assert_fails(&r, Stage::Auth, Some("5.7.139"));
    assert!(r
        .hint
        .unwrap()
        .contains("Set-TransportConfig -SmtpClientAuthenticationDisabled $false"));

    let (r, _) = scripted(
        cfg(|c| c.auth_reply = Some("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.".into())),
        |_| {},
    )
    .await;
    assert_fails(&r, Stage::Auth, Some("5.7.139"));
    assert!(r.hint.unwrap().contains(&format!(
        "Set-CASMailbox -Identity \"{}\" -SmtpClientAuthenticationDisabled $false",
        mailer()
    )));

    let (r, _) = scripted(
        cfg(|c| {
            c.auth_reply = Some(
                "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.".into(),
            )
        }),
        |s| {
            s.auth_method = AuthMethod::Password;
            s.password = Some("app-password".into());
        },
    )
    .await;
    assert_fails(&r, Stage::Auth, Some("5.7.139"));
    assert!(r.hint.unwrap().contains("Move to OAuth"));

    let (r, _) = scripted(
        cfg(|c| c.auth_reply = Some("501 5.5.124 Invalid XOAUTH2 auth data".into())),
        |_| {},
    )
    .await;
    assert_fails(&r, Stage::Auth, Some("5.5.124"));

    let (r, _) = scripted(
        cfg(|c| c.mail_reply = Some("530 5.7.57 Client not authenticated to send mail.".into())),
        |_| {},
    )
    .await;
    assert_fails(&r, Stage::Send, Some("5.7.57"));
    assert!(r.hint.unwrap().contains("authentication method"));

    let shared = addr("notifications", "contoso.com");
    let sender = shared.clone();
    let (r, _) = scripted(SmtpConfig::default(), move |s| {
        s.sender_email = sender;
        s.send_as_confirmed = true;
    })
    .await;
    assert_fails(&r, Stage::Send, Some("5.7.60"));
    let hint = r.hint.unwrap();
    assert!(
        hint.contains(&format!(
            "Add-RecipientPermission -Identity \"{shared}\" -Trustee \"{}\" -AccessRights SendAs",
            mailer()
        )),
        "{hint}"
    );

    let (r, _) = scripted(
        cfg(|c| c.data_reply = Some("554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message".into())),
        |_| {},
    )
    .await;
    assert_fails(&r, Stage::Send, Some("5.2.0"));
    assert!(r.hint.unwrap().contains("Add-RecipientPermission"));

    let (r, _) = scripted(
        cfg(|c| c.data_reply = Some("430 4.2.0 STOREDRV; mailbox logon failure".into())),
        |_| {},
    )
    .await;
    assert_fails(&r, Stage::Send, Some("4.2.0"));
    assert!(r.hint.unwrap().contains("licensed mailbox"));
}

#[tokio::test]
async fn send_as_granted_sender_is_delivered() {
    let shared = addr("notifications", "contoso.com");
    let mut config = SmtpConfig::default();
    config.send_as.insert((mailer(), shared.clone()));
    let sender = shared.clone();
    let (r, rig) = scripted(config, move |s| {
        s.sender_email = sender;
        s.send_as_confirmed = true;
    })
    .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(rig.smtp.messages()[0].mail_from, shared);
}

#[tokio::test]
async fn no_starttls_means_no_credentials_are_sent() {
    let (r, rig) = scripted(
        SmtpConfig {
            tls: TlsMode::PlainWithAuth,
            ..SmtpConfig::default()
        },
        |_| {},
    )
    .await;
    assert_fails(&r, Stage::Tls, None);
    assert!(r.message.contains("does not offer STARTTLS"), "{r:?}");
    assert!(
        rig.smtp.auth_attempts().is_empty(),
        "credentials were sent in clear"
    );
    assert!(
        !transcript_text(&r).contains("Client AUTH"),
        "{}",
        transcript_text(&r)
    );
    assert!(
        transcript_text(&r).contains("Server 250-AUTH"),
        "the server did offer AUTH in clear"
    );
}

#[tokio::test]
async fn untrusted_certificate_fails_at_tls_naming_subject_and_issuer() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let rogue = TestPki::new("Rogue CA");
    let other = FakeSmtp::start(SmtpConfig::default(), &rogue, rig.entra.issued_tokens()).await;
    let r = rig
        .tester()
        .run(&oauth_settings("localhost", other.port()), &recipient())
        .await;
    assert_fails(&r, Stage::Tls, None);
    assert!(
        r.message.contains("fake-smtp.localhost") && r.message.contains("Rogue CA"),
        "{}",
        r.message
    );
    assert!(r.hint.unwrap().contains("--extra-ca-file"));
    assert!(other.auth_attempts().is_empty());
}

#[tokio::test]
async fn refused_and_dropped_connections() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let rig = Rig::start(SmtpConfig::default()).await;
    let r = rig
        .tester()
        .run(&oauth_settings("127.0.0.1", port), &recipient())
        .await;
    assert_fails(&r, Stage::Connect, None);
    assert!(r.message.contains("connection refused"), "{r:?}");

    let (r, _) = scripted(
        SmtpConfig {
            drop_on: Some("AUTH".into()),
            ..SmtpConfig::default()
        },
        |_| {},
    )
    .await;
    assert_fails(&r, Stage::Auth, None);
    assert!(r.message.contains("closed the connection"), "{r:?}");
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_session_limit() {
    let rig = Rig::start(SmtpConfig::default()).await;
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            open.push(tcp);
        }
    });
    let timeouts = Timeouts {
        session: Duration::from_millis(400),
        ..Timeouts::default()
    };
    let tester = Tester::with_timeouts(&rig.args, timeouts).unwrap();
    let started = std::time::Instant::now();
    let r = tester
        .run(&oauth_settings("127.0.0.1", port), &recipient())
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_fails(&r, Stage::Connect, None);
    assert!(
        r.message
            .contains("accepted the connection but sent no greeting"),
        "{r:?}"
    );
    assert!(r.hint.unwrap().contains("check the host and port"));
    held.abort();
}

#[tokio::test]
async fn legacy_password_over_starttls_and_implicit_tls() {
    let mut config = SmtpConfig::default();
    config.passwords.insert(mailer(), "app-password".into());
    let (r, rig) = scripted(config.clone(), |s| {
        s.auth_method = AuthMethod::Password;
        s.password = Some("app-password".into());
    })
    .await;
    assert!(r.ok, "{r:?}");
    assert!(r.token_claims.is_none());
    assert_eq!(rig.entra.requests(), 0);
    let t = transcript_text(&r);
    assert!(t.contains("Client AUTH PLAIN *****"), "{t}");
    assert!(!t.contains(&base64::engine::general_purpose::STANDARD.encode("app-password")));

    config.tls = TlsMode::Implicit;
    let (r, _) = scripted(config.clone(), |s| {
        s.auth_method = AuthMethod::Password;
        s.password = Some("app-password".into());
        s.security = Security::Tls;
    })
    .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        r.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["connect", "tls", "auth", "send"]
    );

    let (r, _) = scripted(config, |s| {
        s.auth_method = AuthMethod::Password;
        s.password = Some("wrong".into());
        s.security = Security::Tls;
    })
    .await;
    assert_fails(&r, Stage::Auth, Some("5.7.3"));
    assert!(r.message.contains("username or password"), "{r:?}");
}

#[tokio::test]
async fn login_mechanism_client_hostname_and_plain_relay_on_loopback() {
    let mut config = SmtpConfig {
        mechanisms: "LOGIN".into(),
        ..SmtpConfig::default()
    };
    config.passwords.insert(mailer(), "app-password".into());
    let (r, _) = scripted(config.clone(), |s| {
        s.auth_method = AuthMethod::Password;
        s.password = Some("app-password".into());
        s.client_hostname = Some("mailroom.contoso.com".into());
    })
    .await;
    assert!(r.ok, "{r:?}");
    let t = transcript_text(&r);
    assert!(t.contains("Client EHLO mailroom.contoso.com"), "{t}");
    assert!(t.contains("Client AUTH LOGIN\n"), "{t}");
    assert!(
        t.contains("Server 334 VXNlcm5hbWU6") && t.contains("Client *****"),
        "{t}"
    );
    assert!(
        !t.contains(&base64::engine::general_purpose::STANDARD.encode("app-password")),
        "{t}"
    );

    config.tls = TlsMode::PlainWithAuth;
    let (r, rig) = scripted(config, |s| {
        s.auth_method = AuthMethod::Password;
        s.password = Some("app-password".into());
        s.security = Security::None;
        s.host = "127.0.0.1".into();
    })
    .await;
    assert!(r.ok, "a plain relay on loopback: {r:?}");
    assert_eq!(
        r.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["connect", "auth", "send"]
    );
    assert!(rig.smtp.auth_attempts().iter().all(|(tls, _)| !tls));
}

#[tokio::test]
async fn no_auth_and_username_only() {
    let config = SmtpConfig {
        require_auth: false,
        ..SmtpConfig::default()
    };
    let (r, rig) = scripted(config.clone(), |s| {
        s.provider = mailroom_shared::Provider::Other;
        s.auth_method = AuthMethod::None;
    })
    .await;
    assert!(r.ok, "{r:?}");
    assert!(rig.smtp.auth_attempts().is_empty(), "no AUTH for `none`");
    assert!(!r.stages.iter().any(|s| s.name == Stage::Auth));

    // Username only: AUTH PLAIN with an empty password, which this server refuses.
    let (r, rig) = scripted(config, |s| {
        s.provider = mailroom_shared::Provider::Other;
        s.auth_method = AuthMethod::Username;
    })
    .await;
    assert_fails(&r, Stage::Auth, Some("5.7.3"));
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        rig.smtp.auth_attempts()[0].1,
        format!("AUTH PLAIN {}", b64.encode(format!("\0{}\0", mailer())))
    );
}

#[tokio::test]
async fn claims_hints_for_a_missing_role() {
    let rig = Rig::start(SmtpConfig {
        auth_reply: Some("535 5.7.3 Authentication unsuccessful".into()),
        ..SmtpConfig::default()
    })
    .await;
    rig.entra.set_mode(EntraMode::NoRole);
    let r = rig.tester().run(&rig.settings(), &recipient()).await;
    assert_fails(&r, Stage::Auth, Some("5.7.3"));
    assert!(r.hint.unwrap().contains("no SMTP.SendAsApp role"));
    assert!(r.token_claims.unwrap().roles.is_empty());
}

#[tokio::test]
async fn test_route_validates_and_uses_stored_secrets() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), rig.args.clone()).await;
    let bad = serde_json::json!({"settings": rig.settings(), "recipient": "nobody"}).to_string();
    let r = call(
        &router,
        request("POST", "/api/settings/test", Some(bad), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json["errors"]["recipient"][0]
        .as_str()
        .unwrap()
        .contains("recipient address"));

    let mut no_secret = rig.settings();
    no_secret.client_secret = None;
    let body = serde_json::json!({"settings": no_secret, "recipient": recipient()}).to_string();
    let r = call(
        &router,
        request("POST", "/api/settings/test", Some(body.clone()), true),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no secret stored yet"
    );

    assert_eq!(
        put(&router, &rig.settings(), 0).await.status,
        StatusCode::OK
    );
    let r = call(
        &router,
        request("POST", "/api/settings/test", Some(body), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["ok"], true, "{:?}", r.json);
}

#[tokio::test]
async fn check_command_exit_codes() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.json");
    let run = |settings: serde_json::Value, to: String| {
        std::fs::write(&file, settings.to_string()).unwrap();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .arg("check")
            .arg("--settings")
            .arg(&file)
            .args(["--to", &to])
            .arg("--entra-authority")
            .arg(rig.args.entra_authority.clone().unwrap())
            .arg("--extra-ca-file")
            .arg(rig.args.extra_ca_file.clone().unwrap())
            .output()
    };
    let ok = run(serde_json::to_value(rig.settings()).unwrap(), recipient())
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{out}");
    assert!(out.contains("token") && out.contains("ok:"), "{out}");
    assert!(!out.contains(SECRET));

    let mut failing = rig.settings();
    failing.client_secret = Some("wrong-secret".into());
    let failed = run(serde_json::to_value(failing).unwrap(), recipient())
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{out}");
    assert!(out.contains("AADSTS7000215"), "{out}");

    let mut invalid = rig.settings();
    invalid.tenant_id = Some("nope".into());
    let bad = run(serde_json::to_value(invalid).unwrap(), recipient())
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tenant_id"));

    let wrong_type = run(serde_json::json!({"port": "587"}), recipient())
        .await
        .unwrap();
    assert_eq!(wrong_type.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong_type.stderr);
    assert!(
        stderr.contains("The field port has a wrong value"),
        "{stderr}"
    );

    let usage = run(
        serde_json::to_value(rig.settings()).unwrap(),
        "not-an-address".into(),
    )
    .await
    .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let garbage = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["check", "--settings", "/nonexistent/file.json", "--to"])
        .arg(recipient())
        .output()
        .await
        .unwrap();
    assert_eq!(garbage.status.code(), Some(2));
    assert_eq!(rig.smtp.messages().len(), 1, "only the valid run sent mail");
}
