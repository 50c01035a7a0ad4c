//! The SMTP transport: success, masking, STARTTLS, certificates, dropped and silent servers, and every authentication method.

use super::*;

#[tokio::test]
async fn oauth_success_delivers_the_email_with_proper_headers() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let r = rig.tester().run(&rig.settings(), None, &recipient()).await;
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
    // Its Message-ID is on the sender's domain, and the result names it,
    // so a test email that never arrives can be found in message trace.
    let id = m
        .data
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap();
    assert!(
        id.starts_with("<msg_") && id.ends_with("@contoso.com>"),
        "{id}"
    );
    assert_eq!(
        r.message,
        format!(
            "The server accepted the test email for {} (Message-ID {id}).",
            recipient()
        )
    );
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
    let rig = Rig::start(SmtpConfig::default()).await;
    let log = CapturedLog::start();
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
    let log_text = log.text();
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
        .run(
            &oauth_settings("localhost", other.port()),
            None,
            &recipient(),
        )
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
    let closed = common::ClosedPort::new();
    let port = closed.port;
    let rig = Rig::start(SmtpConfig::default()).await;
    let r = rig
        .tester()
        .run(&oauth_settings("127.0.0.1", port), None, &recipient())
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
    let tester = Upstream::with_timeouts(&rig.args, timeouts).unwrap();
    let started = std::time::Instant::now();
    let r = tester
        .run(&oauth_settings("127.0.0.1", port), None, &recipient())
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
async fn one_session_sends_several_messages_with_rset_between() {
    use lettre::transport::smtp::extension::ClientId;
    use mailroom_backend::crypto::Secret;
    use mailroom_backend::upstream::smtp::{Progress, SmtpAuth, SmtpSession, Target, TlsTrust};
    let mut config = SmtpConfig::default();
    config.passwords.insert(mailer(), "pw-4711".into());
    let rig = Loopback::start(config).await;
    let trust = TlsTrust::load(Some(&rig.ca_file)).unwrap();
    let target = Target {
        host: "localhost".into(),
        port: rig.smtp.port(),
        security: Security::Starttls,
        hello: ClientId::Domain("mailroom.test".into()),
        connect_timeout: Duration::from_secs(5),
    };
    let auth = SmtpAuth::Password(mailer(), Secret::new("pw-4711"));
    let mut p = Progress::default();
    let mut session = SmtpSession::open(&target, &auth, &trust, &mut p)
        .await
        .unwrap();
    let from: lettre::Address = mailer().parse().unwrap();
    let a: lettre::Address = addr("a", "example.org").parse().unwrap();
    let b: lettre::Address = addr("b", "example.org").parse().unwrap();
    session
        .send(
            &from,
            std::slice::from_ref(&a),
            b"Subject: one\r\n\r\nfirst\r\n",
            &mut p,
        )
        .await
        .unwrap();
    // A refusal of one message leaves the session usable after RSET.
    let other: lettre::Address = addr("notifications", "contoso.com").parse().unwrap();
    let refused = session
        .send(
            &other,
            std::slice::from_ref(&a),
            b"Subject: x\r\n\r\nx\r\n",
            &mut p,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            mailroom_backend::upstream::smtp::SmtpFailure::Reply { code: 550, .. }
        ),
        "{refused:?}"
    );
    session.reset(&mut p).await.unwrap();
    session
        .send(
            &from,
            &[a.clone(), b.clone()],
            b"Subject: two\r\n\r\nsecond\r\n",
            &mut p,
        )
        .await
        .unwrap();
    session.quit().await;
    let got = rig.smtp.messages();
    assert_eq!(rig.smtp.connections(), 1, "one connection, one sign-in");
    assert_eq!(got.len(), 2);
    assert!(got[0].data.contains("first") && got[1].data.contains("second"));
    assert_eq!(got[1].rcpt_to, vec![a.to_string(), b.to_string()]);
    let transcript = p.take_transcript();
    assert_eq!(
        transcript
            .iter()
            .filter(|l| l.line.starts_with("AUTH"))
            .count(),
        1,
        "signed in once"
    );
}

#[tokio::test]
async fn a_host_written_with_its_final_dot_is_that_host_for_tls() {
    // `smtp.office365.com.` is the same host, and the form takes it; the
    // certificate for `localhost` must match `localhost.` too.
    let (r, rig) = scripted(SmtpConfig::default(), |s| s.host = "localhost.".into()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(rig.smtp.messages().len(), 1);
}
