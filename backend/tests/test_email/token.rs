//! The Entra token: every error row, unreachable and slow endpoints, the cache, and the 535 retry.

use super::*;

#[tokio::test]
async fn token_errors_name_the_code_the_ids_and_the_fix() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let tester = rig.tester();

    let mut wrong_secret = rig.settings();
    wrong_secret.client_secret = Some("9a8b7c6d-1111-4222-8333-444455556666".into());
    let r = tester.run(&wrong_secret, None, &recipient()).await;
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
        &tester.run(&wrong_tenant, None, &recipient()).await,
        Stage::Token,
        Some("AADSTS90002"),
    );

    let mut wrong_client = rig.settings();
    wrong_client.client_id = Some("11111111-2222-4333-8444-555555555555".into());
    assert_fails(
        &tester.run(&wrong_client, None, &recipient()).await,
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
        let r = tester.run(&rig.settings(), None, &recipient()).await;
        let expected = format!("AADSTS{code}");
        assert_fails(&r, Stage::Token, Some(expected.as_str()));
        let text = format!("{} {}", r.message, r.hint.clone().unwrap());
        assert!(
            text.to_lowercase().contains(&word.to_lowercase()),
            "{code}: {text}"
        );
    }

    rig.entra.set_mode(EntraMode::BadGateway);
    let r = tester.run(&rig.settings(), None, &recipient()).await;
    assert_fails(&r, Stage::Token, Some("502"));
    assert!(r.message.contains("server error"), "{r:?}");

    rig.entra.set_mode(EntraMode::NotJson);
    let r = tester.run(&rig.settings(), None, &recipient()).await;
    assert_fails(&r, Stage::Token, Some("200"));
    assert!(
        r.message.contains("something other than Entra's JSON"),
        "{r:?}"
    );

    // An error whose words run to 60,000 characters: the message keeps
    // the first 1,000 of them.
    rig.entra.set_mode(EntraMode::Error {
        status: 400,
        error: Box::leak("e".repeat(60_000).into_boxed_str()),
        code: 9_999_999,
    });
    let r = tester.run(&rig.settings(), None, &recipient()).await;
    assert_fails(&r, Stage::Token, Some("AADSTS9999999"));
    assert!(
        r.message.contains('…') && r.message.len() < 3_000,
        "{} bytes",
        r.message.len()
    );

    // A body that never ends (a broken proxy): read to 64 KB, no further.
    rig.entra.set_mode(EntraMode::Endless);
    let r = tester.run(&rig.settings(), None, &recipient()).await;
    assert_fails(&r, Stage::Token, Some("200"));
    assert!(r.message.contains("more than 64 KB"), "{r:?}");
    assert!(r.hint.as_deref().unwrap().contains("proxy"), "{r:?}");
}

#[tokio::test]
async fn unreachable_and_slow_token_endpoints() {
    let closed = common::ClosedPort::new();
    let port = closed.port;
    let rig = Rig::start(SmtpConfig::default()).await;
    let args = TestArgs {
        entra_authority: Some(format!("http://127.0.0.1:{port}")),
        ..rig.args.clone()
    };
    let r = Upstream::new(&args)
        .unwrap()
        .run(&rig.settings(), None, &recipient())
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
    let tester = Upstream::with_timeouts(&rig.args, timeouts).unwrap();
    let started = std::time::Instant::now();
    let r = tester.run(&rig.settings(), None, &recipient()).await;
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
    assert!(tester.run(&rig.settings(), None, &recipient()).await.ok);
    assert!(tester.run(&rig.settings(), None, &recipient()).await.ok);
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
        tokio::spawn(async move { t.run(&s, None, &recipient()).await })
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
    let r = tester.run(&wrong, None, &recipient()).await;
    assert_fails(&r, Stage::Token, Some("AADSTS7000215"));
    assert_eq!(rig.entra.requests(), 3);

    // A token that expires within 5 minutes is not cached.
    rig.entra.set_expires_in(120);
    let mut short = rig.settings();
    short.client_secret = Some("third".into());
    rig.entra.register(TENANT, CLIENT, "third");
    assert!(tester.run(&short, None, &recipient()).await.ok);
    assert!(tester.run(&short, None, &recipient()).await.ok);
    assert_eq!(rig.entra.requests(), 5);
}

#[tokio::test]
async fn a_535_with_a_cached_token_retries_once_with_a_fresh_one() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let tester = rig.tester();
    assert!(tester.run(&rig.settings(), None, &recipient()).await.ok);
    rig.entra.revoke_all();
    let r = tester.run(&rig.settings(), None, &recipient()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(rig.entra.requests(), 2, "one fresh token after the 535");
    let tokens = r.stages.iter().filter(|s| s.name == Stage::Token).count();
    assert_eq!(tokens, 2);
    assert!(r.stages.iter().any(|s| s.name == Stage::Auth && !s.ok));
}

#[tokio::test]
async fn claims_hints_for_a_missing_role() {
    let rig = Rig::start(SmtpConfig {
        auth_reply: Some("535 5.7.3 Authentication unsuccessful".into()),
        ..SmtpConfig::default()
    })
    .await;
    rig.entra.set_mode(EntraMode::NoRole);
    let r = rig.tester().run(&rig.settings(), None, &recipient()).await;
    assert_fails(&r, Stage::Auth, Some("5.7.3"));
    assert!(r.hint.unwrap().contains("no SMTP.SendAsApp role"));
    assert!(r.token_claims.unwrap().roles.is_empty());
}

#[tokio::test]
async fn a_token_said_to_live_for_ever_is_kept_a_day_at_most() {
    // An answer whose expires_in is the largest number there is: Mailroom
    // keeps the token (a day at most) instead of failing on the sum.
    let rig = Rig::start(SmtpConfig::default()).await;
    rig.entra.set_expires_in(u64::MAX);
    let tester = rig.tester();
    for _ in 0..2 {
        let r = tester.run(&rig.settings(), None, &recipient()).await;
        assert!(r.ok, "{r:?}");
    }
    assert_eq!(
        rig.entra.requests(),
        1,
        "the second test used the cached token"
    );
}
