//! Certificate credentials and expiry (docs/API.md §13), against a real
//! server on port 0 and the fake Entra, which verifies each client assertion
//! against the uploaded certificate like Entra does. Keys are made once per
//! test binary (RSA generation is slow), not once per test.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use common::*;
use mailroom_backend::crypto::Secret;
use mailroom_backend::upstream::certificate::CertKey;
use mailroom_fakes::{addr, Loopback, SmtpConfig};
use mailroom_shared::fixtures::{CLIENT, TENANT};
use mailroom_shared::ClientCredential;
use reqwest::Method;
use serde_json::{json, Value};

/// Two RSA 2048 pairs as PEM (certificate, PKCS#8 key), made once.
fn pairs() -> &'static [(String, String, Vec<u8>); 2] {
    static PAIRS: OnceLock<[(String, String, Vec<u8>); 2]> = OnceLock::new();
    PAIRS.get_or_init(|| {
        let make = |name: &str| {
            let (k, key) = CertKey::generate(name, time::OffsetDateTime::now_utc()).unwrap();
            (k.pem(), key_pem(&key), k.der().to_vec())
        };
        [make("Brought A"), make("Brought B")]
    })
}

fn key_pem(stored: &Secret) -> String {
    let der = base64::engine::general_purpose::STANDARD
        .decode(stored.expose())
        .unwrap();
    pem::encode(&pem::Pem::new("PRIVATE KEY", der))
}

fn cert_settings(host: &str, port: u16) -> mailroom_shared::Settings {
    let mut s = oauth_settings(host, port);
    s.client_credential = ClientCredential::Certificate;
    s.client_secret = None;
    s
}

async fn test_email(server: &Running, settings: &mailroom_shared::Settings) -> (u16, Value) {
    server
        .admin(
            Method::POST,
            "/api/settings/test",
            Some(json!({"settings": settings, "recipient": addr("admin", "contoso.com")})),
        )
        .await
}

async fn put(server: &Running, settings: &mailroom_shared::Settings) -> (u16, Value) {
    let (_, current) = server.admin(Method::GET, "/api/settings", None).await;
    server
        .admin(
            Method::PUT,
            "/api/settings",
            Some(json!({"settings": settings, "version": current["version"]})),
        )
        .await
}

async fn download(server: &Running, which: &str) -> (u16, String, String) {
    let path = format!("/api/settings/certificate.pem?which={which}");
    server.admin_text(&path, "content-disposition").await
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Generates a certificate on the server, uploads it to the fake Entra (as
/// the admin does in the portal), and answers its CERT.
async fn generate_and_upload(server: &Running, rig: &Loopback) -> Value {
    let (status, cert) = server
        .admin(Method::POST, "/api/settings/certificate", Some(json!({})))
        .await;
    assert_eq!(status, 201, "{cert}");
    let (status, _, pem) = download(server, "pending").await;
    assert_eq!(status, 200);
    rig.entra
        .register_certificate(TENANT, CLIENT, &der_of(&pem));
    cert
}

fn x5t(der: &[u8]) -> String {
    mailroom_backend::upstream::certificate::x5t_s256(der)
}

#[tokio::test]
async fn a_generated_certificate_is_tested_saved_and_delivers_without_any_secret() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    let settings = cert_settings("localhost", rig.smtp.port());
    // Before any certificate: the form's field says what to do.
    let (status, r) = test_email(&server, &settings).await;
    assert_eq!(status, 422, "{r}");
    assert!(r["errors"]["client_credential"][0]
        .as_str()
        .unwrap()
        .contains("Generate a certificate"));
    let cert = generate_and_upload(&server, &rig).await;
    assert_eq!(cert["generated"], true);
    let sha1 = cert["thumbprint_sha1"].as_str().unwrap();
    assert!(
        sha1.len() == 40
            && sha1
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    assert_eq!(cert["thumbprint_sha256"].as_str().unwrap().len(), 64);
    assert!(cert["subject"]
        .as_str()
        .unwrap()
        .starts_with("CN=Mailroom "));
    let (_, listing) = server
        .admin(Method::GET, "/api/settings/certificate", None)
        .await;
    assert_eq!(
        (listing["active"].is_null(), &listing["pending"]),
        (true, &cert)
    );
    let (status, disposition, pem) = download(&server, "pending").await;
    assert_eq!(status, 200);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----") && !pem.contains("PRIVATE"));
    assert!(
        disposition.contains(&sha1[..8].to_ascii_lowercase()),
        "{disposition}"
    );

    // Saving before a passing test does not switch to an untried certificate.
    let (status, r) = put(&server, &settings).await;
    assert_eq!(status, 422, "{r}");
    assert!(r["errors"]["client_credential"][0]
        .as_str()
        .unwrap()
        .contains("test email"));

    let (status, r) = test_email(&server, &settings).await;
    assert_eq!((status, &r["ok"]), (200, &json!(true)), "{r}");
    let form = rig.entra.last_form().unwrap();
    assert!(
        !form.contains_key("client_secret"),
        "never a secret alongside"
    );
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    // aud is the cloud's real token URL though the request went to the fake.
    let payload = form["client_assertion"]
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["aud"],
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    );
    assert!(!rig.authority().contains("microsoftonline"));
    assert!(
        !r.to_string().contains(&form["client_assertion"]),
        "assertion never shown"
    );

    let (status, r) = put(&server, &settings).await;
    assert_eq!(status, 200, "{r}");
    let (_, listing) = server
        .admin(Method::GET, "/api/settings/certificate", None)
        .await;
    assert_eq!(
        (&listing["active"], listing["pending"].is_null()),
        (&cert, true)
    );
    let (_, history) = server
        .admin(Method::GET, "/api/settings/history", None)
        .await;
    assert!(history["changes"][0]["fields"]
        .as_array()
        .unwrap()
        .contains(&json!("client_credential")));
    // The active certificate cannot be deleted while the settings use it.
    let (status, r) = server
        .admin(
            Method::DELETE,
            "/api/settings/certificate?which=active",
            None,
        )
        .await;
    assert_eq!(status, 409, "{r}");
    let (status, _) = server
        .admin(
            Method::DELETE,
            "/api/settings/certificate?which=nonsense",
            None,
        )
        .await;
    assert_eq!(status, 422);

    let (_, key) = server.new_app(json!({"name": "Billing"})).await;
    let (status, queued) = server
        .submit(
            &key,
            &json!({"to": [addr("a", "example.org")], "subject": "hi", "text": "x"}),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    server
        .wait_status(queued["id"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(rig.smtp.messages().len(), 2, "the test email and this one");
}

#[tokio::test]
async fn rotation_keeps_the_active_certificate_until_a_tested_save() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    let settings = cert_settings("localhost", rig.smtp.port());
    let first = generate_and_upload(&server, &rig).await;
    assert_eq!(test_email(&server, &settings).await.1["ok"], true);
    assert_eq!(put(&server, &settings).await.0, 200);
    let (_, _, pem) = download(&server, "active").await;
    let first_der = der_of(&pem);
    let (_, key) = server.new_app(json!({"name": "Billing"})).await;
    let send = |subject: &'static str| {
        let (server, key) = (&server, key.clone());
        async move {
            let (status, q) = server
                .submit(
                    &key,
                    &json!({"to": [addr("a", "example.org")], "subject": subject, "text": "x"}),
                )
                .await;
            assert_eq!(status, 202, "{q}");
            server.wait_status(q["id"].as_str().unwrap(), "sent").await;
        }
    };
    send("one").await;
    let second = generate_and_upload(&server, &rig).await;
    assert_ne!(first["thumbprint_sha256"], second["thumbprint_sha256"]);
    let (_, _, pem) = download(&server, "pending").await;
    let second_der = der_of(&pem);
    // Tests use the pending one …
    let r = test_email(&server, &settings).await.1;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        rig.entra.last_assertion_header().unwrap()["x5t#S256"],
        x5t(&second_der)
    );
    // … while delivery keeps the active one (a fresh token proves it).
    rig.entra.revoke_all();
    rig.entra.set_expires_in(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = rig.entra.requests();
    send("two").await;
    assert!(rig.entra.requests() > before, "a new token was needed");
    assert_eq!(
        rig.entra.last_assertion_header().unwrap()["x5t#S256"],
        x5t(&first_der)
    );
    let (_, listing) = server
        .admin(Method::GET, "/api/settings/certificate", None)
        .await;
    assert_eq!(listing["active"], first);
    // The save after the pass makes it active; the old one is gone.
    assert_eq!(put(&server, &settings).await.0, 200);
    let (_, listing) = server
        .admin(Method::GET, "/api/settings/certificate", None)
        .await;
    assert_eq!(
        (&listing["active"], listing["pending"].is_null()),
        (&second, true)
    );
    send("three").await;
    assert_eq!(
        rig.entra.last_assertion_header().unwrap()["x5t#S256"],
        x5t(&second_der),
        "delivery signs with the new certificate"
    );
    // Another tenant may not use the stored certificate.
    let mut elsewhere = settings.clone();
    elsewhere.tenant_id = Some("11111111-2222-4333-8444-555555555555".into());
    let (status, r) = test_email(&server, &elsewhere).await;
    assert_eq!(status, 422, "{r}");
    assert!(r["errors"]["client_credential"][0]
        .as_str()
        .unwrap()
        .starts_with("Make or upload the certificate again"));
}

#[tokio::test]
async fn brought_certificates_are_checked_with_a_clear_error_for_each_problem() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    let [(cert_a, key_a, _), (_, key_b, _)] = pairs();
    let bring = |cert: String, key: String| {
        let server = &server;
        async move {
            server
                .admin(
                    Method::POST,
                    "/api/settings/certificate",
                    Some(json!({"certificate_pem": cert, "private_key_pem": key})),
                )
                .await
        }
    };
    let (status, good) = bring(cert_a.clone(), key_a.clone()).await;
    assert_eq!((status, &good["generated"]), (201, &json!(false)), "{good}");

    let weak_cert = include_str!("fixtures/weak-rsa-1024.crt.pem").to_string();
    let weak_key = include_str!("fixtures/weak-rsa-1024.key.pem").to_string();
    let expired = {
        // A's key in a certificate that ended yesterday.
        let pkcs8 = pem::parse(key_a.as_str()).unwrap().into_contents();
        let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8),
            &rcgen::PKCS_RSA_SHA256,
        )
        .unwrap();
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(400);
        p.not_after = now - time::Duration::days(1);
        p.self_signed(&signer).unwrap().pem()
    };
    let ec_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let cases: Vec<(String, String, &str, &str)> = vec![
        (
            cert_a.clone(),
            key_b.clone(),
            "private_key_pem",
            "does not belong to the certificate",
        ),
        (
            weak_cert.clone(),
            weak_key,
            "private_key_pem",
            "RSA 1024 bits",
        ),
        (expired, key_a.clone(), "certificate_pem", "expired on"),
        (
            "garbage".into(),
            key_a.clone(),
            "certificate_pem",
            "not a PEM certificate",
        ),
        // The two pasted in each other's box.
        (
            key_a.clone(),
            cert_a.clone(),
            "certificate_pem",
            "This is a private key, not the certificate",
        ),
        (
            cert_a.clone(),
            "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n".into(),
            "private_key_pem",
            "not usable",
        ),
        (
            cert_a.clone(),
            "garbage".into(),
            "private_key_pem",
            "not a PEM private key",
        ),
        (cert_a.clone(), ec_key, "private_key_pem", "not an RSA key"),
        (
            cert_a.clone(),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                .into(),
            "private_key_pem",
            "encrypted with a passphrase",
        ),
        (
            cert_a.clone(),
            String::new(),
            "private_key_pem",
            "Paste the private key",
        ),
        (
            String::new(),
            key_a.clone(),
            "certificate_pem",
            "Paste the certificate",
        ),
    ];
    for (cert, key, field, says) in cases {
        let (status, r) = bring(cert, key).await;
        assert_eq!(status, 422, "{field} {says}: {r}");
        let msg = r["errors"][field][0].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{field}: want “{says}”, got {r}");
    }
    // One text holding both, as `openssl pkcs12 -in x.pfx -nodes` writes
    // it (attribute lines, the key, then the certificate), pasted in either
    // box with the other left empty, is taken: it was "Paste the private key".
    let both = format!(
        "Bag Attributes\n    localKeyID: 01 00 00 00\n{key_a}Bag Attributes\n    friendlyName: mailroom\nsubject=CN = Mailroom\n{cert_a}"
    );
    for (cert, key) in [(both.clone(), String::new()), (String::new(), both)] {
        let (status, r) = bring(cert, key).await;
        assert_eq!(status, 201, "{r}");
        assert_eq!(r["thumbprint_sha1"], good["thumbprint_sha1"], "{r}");
    }
    let (status, good) = bring(cert_a.clone(), key_a.clone()).await;
    assert_eq!(status, 201, "{good}");
    // A paste over the 64 KiB body limit is refused before it is read.
    let (status, _) = bring("x".repeat(70 * 1024), key_a.clone()).await;
    assert_eq!(status, 413);
    // A refused one never replaced the good pending one.
    let (_, listing) = server
        .admin(Method::GET, "/api/settings/certificate", None)
        .await;
    assert_eq!(listing["pending"], good);
    let (status, _) = server
        .admin(
            Method::POST,
            "/api/settings/certificate",
            Some(json!({"extra": 1})),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused");
}

#[tokio::test]
async fn each_refusal_of_the_assertion_is_diagnosed_with_its_fix() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    let settings = cert_settings("localhost", rig.smtp.port());
    // Made but not uploaded: AADSTS700027 says upload it, with its thumbprint.
    let (_, cert) = server
        .admin(Method::POST, "/api/settings/certificate", Some(json!({})))
        .await;
    let r = test_email(&server, &settings).await.1;
    assert_eq!(
        (r["stage"].as_str(), r["code"].as_str()),
        (Some("token"), Some("AADSTS700027")),
        "{r}"
    );
    let sha1 = cert["thumbprint_sha1"].as_str().unwrap();
    assert!(r["message"].as_str().unwrap().contains(sha1), "{r}");
    assert!(r["hint"].as_str().unwrap().contains("Upload"), "{r}");
    let (_, _, pem) = download(&server, "pending").await;
    rig.entra
        .register_certificate(TENANT, CLIENT, &der_of(&pem));
    // Registered but expired there: the expired fix.
    rig.entra.set_certificates_expired(true);
    let r = test_email(&server, &settings).await.1;
    assert_eq!(r["code"], "AADSTS700027");
    assert!(r["message"].as_str().unwrap().contains("expired"), "{r}");
    assert!(
        r["hint"]
            .as_str()
            .unwrap()
            .contains("Generate a new certificate"),
        "{r}"
    );
    rig.entra.set_certificates_expired(false);
    // The server's clock 20 minutes off: AADSTS700024, set the clock.
    rig.entra.set_clock_offset(20 * 60);
    let r = test_email(&server, &settings).await.1;
    assert_eq!(r["code"], "AADSTS700024", "{r}");
    assert!(r["hint"].as_str().unwrap().contains("clock"), "{r}");
    rig.entra.set_clock_offset(0);
    assert_eq!(test_email(&server, &settings).await.1["ok"], true);
}

/// The fake refuses what Entra refuses, so a pass above means something:
/// assertions made by hand with one thing wrong each.
#[tokio::test]
async fn the_fake_entra_checks_signature_audience_issuer_and_times() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let [(cert_a, key_a, der_a), (_, _, der_b)] = pairs();
    let (a, _) = CertKey::bring(cert_a, key_a, time::OffsetDateTime::now_utc())
        .map(|(k, s)| (Arc::new(k), s))
        .unwrap();
    rig.entra.register_certificate(TENANT, CLIENT, der_a);
    let real = format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let post = |assertion: String| {
        let url = format!("{}/{TENANT}/oauth2/v2.0/token", rig.authority());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                    ("scope", "https://outlook.office365.com/.default"),
                ])
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            v["error_codes"][0].as_u64().unwrap_or(0)
        }
    };
    let sign = |aud: &str, client: &str, at: i64| {
        a.assertion(aud, client, at).unwrap().expose().to_string()
    };
    assert_eq!(
        post(sign(&real, CLIENT, now)).await,
        0,
        "a good one gets a token"
    );
    assert_eq!(
        post(sign("http://127.0.0.1/token", CLIENT, now)).await,
        50027
    );
    assert_eq!(
        post(sign(&real, "00000000-1111-4222-8333-444444444444", now)).await,
        700021
    );
    assert_eq!(post(sign(&real, CLIENT, now - 3600)).await, 700024);
    // A signature that does not verify.
    let good = sign(&real, CLIENT, now);
    let (head, _) = good.rsplit_once('.').unwrap();
    assert_eq!(post(format!("{head}.AAAA")).await, 700027);
    // B is not uploaded: its thumbprint is unknown.
    let header = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": x5t(der_b)});
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (_, rest) = good.split_once('.').unwrap();
    assert_eq!(
        post(format!("{}.{rest}", b64.encode(header.to_string()))).await,
        700027
    );
}

#[tokio::test]
async fn an_expiring_secret_warns_from_thirty_days_before_in_the_queue_and_metrics() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(mailroom_backend::state::ManualClock::default());
    let (state, _) = mailroom_backend::state::AppState::open_with_clock(
        &args(dir.path(), test_args(&rig)),
        clock.clone(),
    )
    .await
    .unwrap();
    let router = mailroom_backend::server::app(state, None);
    let today = time::OffsetDateTime::now_utc().date();
    let expires = today + time::Duration::days(40);
    let mut s = oauth_settings("localhost", rig.smtp.port());
    s.client_secret_expires = Some(expires.to_string());
    assert_eq!(common::put(&router, &s, 0).await.status, 200);
    let queue = |router| async move {
        call(router, request("GET", "/api/queue", None, true))
            .await
            .json
    };
    assert_eq!(queue(&router).await["warnings"], json!([]));
    let metrics = call(&router, request("GET", "/metrics", None, true)).await;
    let metrics = metrics
        .json
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| metrics.json.to_string());
    let at = expires.midnight().assume_utc().unix_timestamp();
    assert!(
        metrics.contains(&format!(
            "mailroom_credential_expiry_timestamp_seconds{{profile=\"default\"}} {at}"
        )),
        "{metrics}"
    );
    clock.advance(Duration::from_secs(11 * 86_400));
    let w = queue(&router).await["warnings"].clone();
    assert_eq!(w.as_array().unwrap().len(), 1, "{w}");
    assert_eq!(w[0]["code"], "credential_expiring");
    assert!(
        w[0]["message"].as_str().unwrap().contains("in 29 days"),
        "{w}"
    );
    assert!(
        w[0]["hint"].as_str().unwrap().contains("New client secret"),
        "{w}"
    );
    assert!(w[0]["at"]
        .as_str()
        .unwrap()
        .starts_with(&expires.to_string()));
    clock.advance(Duration::from_secs(40 * 86_400));
    let w = queue(&router).await["warnings"].clone();
    assert!(
        w[0]["message"].as_str().unwrap().contains("expired on"),
        "{w}"
    );
    // A bad date is refused while typing and on save, naming the field.
    s.client_secret_expires = Some("31/12/2027".into());
    let r = common::put(&router, &s, 1).await;
    assert_eq!(r.status, 422);
    assert!(
        r.json["errors"]["client_secret_expires"][0].is_string(),
        "{}",
        r.json
    );
}

#[tokio::test]
async fn an_expired_secret_pauses_delivery_with_the_fix() {
    let (rig, server, key) = sending_rig().await;
    let q = paused_by_expired_secret(&rig, &server, &key).await;
    assert_eq!(q["paused"]["code"], "AADSTS7000222", "{q}");
    assert!(
        q["paused"]["hint"]
            .as_str()
            .unwrap()
            .contains("New client secret")
            || q["paused"]["hint"]
                .as_str()
                .unwrap()
                .contains("Client secrets"),
        "{q}"
    );
}

/// The certificate signs the token request for Graph too: the assertion's
/// `aud` is the same real token URL, and the token is for Graph.
#[tokio::test]
async fn a_certificate_signs_in_for_microsoft_graph_as_well() {
    let rig = Loopback::start(SmtpConfig::default()).await;
    let server = start(&rig, |_| {}).await;
    let mut settings = cert_settings("", 0);
    settings.transport = mailroom_shared::Transport::Graph;
    generate_and_upload(&server, &rig).await;
    let (status, r) = test_email(&server, &settings).await;
    assert_eq!((status, &r["ok"]), (200, &json!(true)), "{r}");
    let form = rig.entra.last_form().unwrap();
    assert_eq!(form["scope"], "https://graph.microsoft.com/.default");
    assert!(form.contains_key("client_assertion") && !form.contains_key("client_secret"));
    assert_eq!(rig.graph.messages().len(), 1, "sent through Graph");
    assert_eq!(r["token_claims"]["roles"][0], "Mail.Send");
}
