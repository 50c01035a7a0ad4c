//! The product as a user meets it: the real binary, its release UI, the
//! loopback fakes, and headless Chromium over WebDriver.

use mailroom_e2e::*;
use mailroom_fakes::{addr, SmtpConfig};

/// One Chromium at a time: the machine has two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One scenario's parts: Chromium to itself, the fakes, the real binary
/// against them, and a browser signed in to it.
async fn signed_in() -> (
    tokio::sync::MutexGuard<'static, ()>,
    Fakes,
    Mailroom,
    Browser,
) {
    let serial = SERIAL.lock().await;
    let fakes = Fakes::start(SmtpConfig::default()).await;
    let app = Mailroom::start(&fakes).await;
    let b = Browser::start().await;
    b.sign_in(&app.url).await;
    (serial, fakes, app, b)
}

/// Fills the Office 365 OAuth form, pointing the server at the fake SMTP.
async fn fill_oauth(b: &Browser, fakes: &Fakes, secret: &str, sender: &str) {
    fill_app_ids(b).await;
    b.type_in("#client_secret", secret).await;
    fill_mailbox(b, sender).await;
    point_at_fake_smtp(b, fakes).await;
}

/// The app registration's tenant and client IDs.
async fn fill_app_ids(b: &Browser) {
    b.type_in("#tenant_id", TENANT).await;
    b.type_in("#client_id", CLIENT).await;
}

/// The mailbox that sends, and the From it sends as.
async fn fill_mailbox(b: &Browser, sender: &str) {
    b.type_in("#username", &mailer()).await;
    b.type_in("#sender_name", "Contoso notifications").await;
    b.type_in("#sender_email", sender).await;
}

async fn point_at_fake_smtp(b: &Browser, fakes: &Fakes) {
    if b.find("#advanced")
        .await
        .attr("open")
        .await
        .expect("attr")
        .is_none()
    {
        b.click("#advanced summary").await;
    }
    b.type_in("#host", "localhost").await;
    b.type_in("#port", &fakes.smtp.port().to_string()).await;
}

async fn run_test_email(b: &Browser) -> String {
    b.click("#test-button").await;
    b.find("#recipient").await;
    b.type_in("#recipient", &addr("admin", "contoso.com")).await;
    b.click(".dialog button[type=submit]").await;
    b.find(".dialog .result")
        .await
        .text()
        .await
        .expect("result text")
}

#[tokio::test]
async fn first_run_test_save_and_reload() {
    let (_serial, fakes, _app, b) = signed_in().await;

    b.find("#provider")
        .await
        .select_by_value("office365")
        .await
        .expect("choose Office 365");
    let oauth = b.find("#auth-oauth2_client_credentials").await;
    assert!(oauth.is_selected().await.unwrap(), "OAuth is the default");

    // A malformed tenant ID is caught while typing, before any request.
    b.type_in("#tenant_id", "0b4f1c2a-1234-4abc-9def-0123456789a")
        .await;
    let msg = b
        .wait_text("#tenant_id-error", "Tenant ID must be a GUID")
        .await;
    assert!(msg.contains("31 hex digits"), "{msg}");
    assert_eq!(
        b.find("#tenant_id")
            .await
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    assert_eq!(fakes.entra.requests(), 0, "no request for validation");
    b.type_in("#tenant_id", TENANT).await;
    b.wait_gone("#tenant_id-error.error").await;

    fill_oauth(&b, &fakes, SECRET, &mailer()).await;
    b.screenshot("filled-form").await;
    b.scroll_to(".checklist").await;
    b.screenshot("checklist").await;
    b.window_size(390, 1400).await;
    b.client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .expect("scroll");
    b.screenshot("phone-form").await;
    // At a phone's width the day's count reads on a line or two, under its
    // meter, not squeezed into a narrow column beside it; nothing is wider
    // than the screen.
    let fit = b
        .client
        .execute(
            "const c = document.querySelector('#profile-usage .count');\
             const lh = parseFloat(getComputedStyle(c).lineHeight);\
             return [c.getBoundingClientRect().height / lh,\
                     document.documentElement.scrollWidth - window.innerWidth];",
            vec![],
        )
        .await
        .expect("measure the day's count");
    let (lines, overflow) = (fit[0].as_f64().unwrap(), fit[1].as_f64().unwrap());
    assert!(
        lines < 2.5,
        "the day's count takes {lines:.1} lines at a phone's width"
    );
    assert!(
        overflow <= 0.0,
        "the page is {overflow} px wider than a phone"
    );
    b.window_size(1280, 1800).await;
    let result = run_test_email(&b).await;
    assert!(result.contains("Success"), "{result}");
    b.screenshot("test-result").await;
    let messages = fakes.smtp.messages();
    assert_eq!(messages.len(), 1);
    // The result names the Message-ID the server got, and where a test
    // email that was accepted but never arrives is found.
    let id = messages[0]
        .data
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap();
    assert!(
        result.contains(id) && result.contains("Junk Email"),
        "{id}: {result}"
    );
    assert_eq!(messages[0].mail_from, mailer());
    assert_eq!(messages[0].rcpt_to, vec![addr("admin", "contoso.com")]);
    assert!(messages[0]
        .data
        .contains(&format!("From: \"Contoso notifications\" <{}>", mailer())));
    assert!(messages[0]
        .data
        .contains(&format!("To: {}", addr("admin", "contoso.com"))));

    // The passed test's next step, in its dialog: saving what was tested.
    b.click("#test-save").await;
    b.wait_gone(".dialog").await;
    b.wait_text(
        ".banner.success",
        "Success: The SMTP settings have been saved successfully",
    )
    .await;

    b.client.refresh().await.expect("reload");
    b.find("#tenant_id").await;
    assert_eq!(b.value("#tenant_id").await, TENANT);
    assert_eq!(b.value("#client_id").await, CLIENT);
    assert_eq!(b.value("#username").await, mailer());
    assert_eq!(
        b.value("#client_secret").await,
        "",
        "the secret is never revealed"
    );
    let placeholder = b
        .find("#client_secret")
        .await
        .attr("placeholder")
        .await
        .unwrap();
    assert_eq!(placeholder.as_deref(), Some("stored — leave empty to keep"));
    let page = b.client.source().await.unwrap();
    assert!(!page.contains(SECRET), "the secret never reaches the page");
    // The history of saves, at a phone's width: its table fits the screen.
    b.wait_text(".history", "Which fields each save changed")
        .await;
    b.window_size(390, 1400).await;
    b.scroll_to(".history").await;
    b.screenshot("history-phone").await;
    let wider = b.wider_than_the_window(".history").await;
    assert_eq!(wider, serde_json::json!([]), "wider than a phone's screen");
    b.close().await;
}

/// Where SMTP AUTH is off: the admin picks Microsoft Graph, the form drops
/// the SMTP server, the checklist shows how to grant Mail.Send for one
/// mailbox, the test email goes through the fake Graph, and the saved
/// settings deliver an app's mail over Graph.
#[tokio::test]
async fn graph_is_chosen_tested_saved_and_delivers() {
    let (_serial, fakes, app, b) = signed_in().await;
    fill_app_ids(&b).await;
    b.type_in("#client_secret", SECRET).await;
    fill_mailbox(&b, &mailer()).await;
    b.click("#transport-graph").await;
    b.wait_text("#advanced-unused", "not used").await;
    b.scroll_to("#transport").await;
    b.screenshot("graph-way-out").await;
    let rbac = b
        .wait_text("#graph-way-rbac", "New-ManagementRoleAssignment")
        .await;
    assert!(rbac.contains(CLIENT) && rbac.contains(&mailer()), "{rbac}");
    b.wait_text("#consent-warning", "every mailbox").await;
    b.scroll_to(".checklist").await;
    b.screenshot("graph-checklist").await;
    let result = run_test_email(&b).await;
    assert!(result.contains("Success"), "{result}");
    assert!(
        result.contains("Graph request and answer (2 lines"),
        "the transcript shows the request and the answer: {result}"
    );
    b.screenshot("graph-test-result").await;
    let got = fakes.graph.messages();
    assert_eq!(got.len(), 1, "the test went through Graph");
    assert_eq!(fakes.smtp.messages().len(), 0, "not through SMTP");
    b.click("#test-close").await;
    b.wait_gone(".dialog").await;
    b.click("#save-button").await;
    b.wait_text(".banner.success", "saved successfully").await;
    let saved = settings_via_api(&app.url).await;
    assert_eq!(saved["settings"]["transport"], "graph", "{saved}");
    // An app's mail goes out the same way.
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{}/api/apps", app.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "Billing"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    let to = addr("customer", "example.org");
    let status = http
        .post(format!("{}/api/messages", app.url))
        .bearer_auth(key)
        .json(&serde_json::json!({"to": [to], "subject": "Invoice 7", "text": "Attached."}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 202);
    let started = std::time::Instant::now();
    while fakes.graph.messages().len() < 2 {
        assert!(
            started.elapsed() < WAIT,
            "the app's message never reached Graph"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        fakes.graph.messages()[1].header("to").as_deref(),
        Some(to.as_str())
    );
    b.close().await;
}

/// The certificate way: the page generates one, the admin downloads the
/// public part and uploads it (here: to the fake Entra), tests, saves, and
/// the pending certificate becomes the active one.
#[tokio::test]
async fn a_certificate_is_generated_uploaded_tested_and_saved_from_the_page() {
    let (_serial, fakes, app, b) = signed_in().await;
    fill_app_ids(&b).await;
    b.click("#client_credential-certificate").await;
    b.wait_text("#cert-none", "No certificate yet").await;
    fill_mailbox(&b, &mailer()).await;
    point_at_fake_smtp(&b, &fakes).await;
    b.click("#cert-generate").await;
    let pending = b.wait_text("#cert-pending", "made by Mailroom").await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}{path}", app.url))
            .bearer_auth(TOKEN)
            .send()
    };
    let listing: serde_json::Value = get("/api/settings/certificate")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sha1 = listing["pending"]["thumbprint_sha1"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        pending.contains(&sha1),
        "the page shows the portal's thumbprint: {pending}"
    );
    b.wait_text("#checklist-certificate", "Upload certificate")
        .await;
    b.scroll_to("#client_credential").await;
    b.screenshot("certificate-panel").await;
    // The admin downloads the public certificate and uploads it in Entra.
    let pem = get("/api/settings/certificate.pem?which=pending")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!pem.contains("PRIVATE"), "{pem}");
    fakes
        .entra
        .register_certificate(TENANT, CLIENT, &der_of_pem(&pem));
    let result = run_test_email(&b).await;
    assert!(result.contains("Success"), "{result}");
    let form = fakes.entra.last_form().unwrap();
    assert!(form.contains_key("client_assertion") && !form.contains_key("client_secret"));
    b.click("#test-close").await;
    b.wait_gone(".dialog").await;
    b.click("#save-button").await;
    b.wait_text(".banner.success", "saved successfully").await;
    let active = b.wait_text("#cert-active", "Active certificate").await;
    assert!(active.contains(&sha1), "{active}");
    let listing: serde_json::Value = get("/api/settings/certificate")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["active"]["thumbprint_sha1"], sha1.as_str());
    assert!(listing["pending"].is_null(), "{listing}");
    let saved = settings_via_api(&app.url).await;
    assert_eq!(
        saved["settings"]["client_credential"], "certificate",
        "{saved}"
    );
    b.close().await;
}

/// A PEM certificate's DER.
fn der_of_pem(text: &str) -> Vec<u8> {
    pem::parse(text).expect("a PEM certificate").into_contents()
}

#[tokio::test]
async fn wrong_secret_fails_at_the_token_stage_with_the_fix() {
    let (_serial, fakes, _app, b) = signed_in().await;
    fill_oauth(
        &b,
        &fakes,
        "9a8b7c6d-1111-4222-8333-444455556666",
        &mailer(),
    )
    .await;
    b.wait_text("#client_secret-warning", "looks like the Secret ID")
        .await;
    let result = run_test_email(&b).await;
    assert!(result.contains("The test failed"), "{result}");
    assert!(
        result.contains("token") && result.contains("AADSTS7000215"),
        "{result}"
    );
    assert!(result.contains("Value, not its Secret ID"), "{result}");
    assert!(fakes.smtp.messages().is_empty());
    b.close().await;
}

#[tokio::test]
async fn send_as_refusal_shows_the_add_recipient_permission_fix() {
    let (_serial, fakes, _app, b) = signed_in().await;
    let shared = addr("notifications", "contoso.com");
    fill_oauth(&b, &fakes, SECRET, &shared).await;
    b.wait_text("#send-as", "has Send-As rights on this mailbox")
        .await;
    b.click("#send_as_confirmed").await;
    let result = run_test_email(&b).await;
    assert!(result.contains("5.7.60"), "{result}");
    b.screenshot("send-as-failure").await;
    let command = b
        .find(".dialog .result .command code")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        command,
        format!(
            "Add-RecipientPermission -Identity \"{shared}\" -Trustee \"{}\" -AccessRights SendAs",
            mailer()
        )
    );
    b.close().await;
}

#[tokio::test]
async fn legacy_app_password_shows_the_notice_and_succeeds_over_starttls() {
    let _serial = SERIAL.lock().await;
    let mut config = SmtpConfig::default();
    config.passwords.insert(mailer(), "app-password-123".into());
    let fakes = Fakes::start(config).await;
    let app = Mailroom::start(&fakes).await;
    let b = Browser::start().await;
    b.sign_in(&app.url).await;
    b.click("#auth-password").await;
    let notice = b
        .wait_text("#retirement-notice", "End of December 2026")
        .await;
    assert!(notice.contains("Second half of 2027"), "{notice}");
    b.type_in("#username", &mailer()).await;
    b.type_in("#password", "app-password-123").await;
    b.type_in("#sender_name", "Contoso").await;
    b.type_in("#sender_email", &mailer()).await;
    point_at_fake_smtp(&b, &fakes).await;
    let result = run_test_email(&b).await;
    assert!(result.contains("Success"), "{result}");
    b.click(".dialog .transcript summary").await;
    let transcript = b
        .find(".dialog .transcript pre")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        transcript.contains("C: STARTTLS") && transcript.contains("C: AUTH PLAIN *****"),
        "{transcript}"
    );
    assert_eq!(fakes.entra.requests(), 0);
    b.close().await;
}

#[tokio::test]
async fn concurrent_edits_get_the_409_message_and_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let fakes = Fakes::start(SmtpConfig::default()).await;
    let app = Mailroom::start(&fakes).await;
    let a = Browser::start().await;
    let b = Browser::start().await;
    a.sign_in(&app.url).await;
    b.sign_in(&app.url).await;
    fill_oauth(&a, &fakes, SECRET, &mailer()).await;
    fill_oauth(&b, &fakes, SECRET, &mailer()).await;
    a.type_in("#sender_name", "Saved by A").await;
    b.type_in("#sender_name", "Typed by B").await;
    save_untested(&a).await;
    a.wait_text(".banner.success", "saved successfully").await;
    save_untested(&b).await;
    let banner = b.wait_text(".banner.conflict", "Someone else saved").await;
    assert!(
        banner.contains("what you typed stays in the form"),
        "{banner}"
    );
    assert_eq!(
        b.value("#sender_name").await,
        "Typed by B",
        "B's typing is kept"
    );

    let stored = settings_via_api(&app.url).await;
    assert_eq!(
        stored["settings"]["sender_name"], "Saved by A",
        "A's save is intact"
    );

    b.click(".banner.conflict button").await;
    b.wait_text(".banner.success", "Your edits are kept").await;
    assert_eq!(b.value("#sender_name").await, "Typed by B");
    save_untested(&b).await;
    b.wait_text(".banner.success", "saved successfully").await;
    let stored = settings_via_api(&app.url).await;
    assert_eq!(stored["settings"]["sender_name"], "Typed by B");
    assert_eq!(stored["version"], 2);
    a.close().await;
    b.close().await;
}

/// Save with values that were never tested: the page asks first, and is
/// told to save anyway.
async fn save_untested(b: &Browser) {
    b.click("#save-button").await;
    b.wait_text("#save-prompt-title", "Save without a successful test?")
        .await;
    b.audit("the question before saving untested values").await;
    b.click("#save-prompt-other").await;
}

async fn settings_via_api(url: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{url}/api/settings"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET /api/settings")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn signed_out_the_api_refuses_and_the_ui_asks_to_sign_in() {
    let _serial = SERIAL.lock().await;
    let fakes = Fakes::start(SmtpConfig::default()).await;
    let app = Mailroom::start(&fakes).await;
    let http = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/api/settings"),
        ("PUT", "/api/settings"),
        ("POST", "/api/settings/test"),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{}{path}", app.url))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
    }
    let b = Browser::start().await;
    b.client.goto(&app.url).await.unwrap();
    b.find("#admin-token").await;
    b.type_in("#admin-token", "not-the-token").await;
    b.click("button[type=submit]").await;
    b.wait_text("#admin-token-error", "not correct").await;
    b.type_in("#admin-token", TOKEN).await;
    b.click("button[type=submit]").await;
    b.find("#provider").await;
    // The session ends with the page open (its cookie gone): the next poll
    // finds out, the page stays under a dialog, and signing in there again
    // keeps what was typed.
    let typed = "11111111-2222-3333-4444-555555555555";
    b.type_in("#tenant_id", typed).await;
    b.client.delete_all_cookies().await.unwrap();
    b.wait_text("#session-dialog[open]", "Your session has ended")
        .await;
    b.screenshot("session-ended").await;
    b.type_in("#session-dialog #admin-token", TOKEN).await;
    b.click("#session-dialog button[type=submit]").await;
    b.wait_gone("#session-dialog").await;
    assert_eq!(b.value("#tenant_id").await, typed, "nothing was lost");
    let r = b
        .client
        .execute_async(
            "fetch('/api/settings').then(r => arguments[0](r.status))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r, serde_json::json!(200), "signed in again for real");
    b.click("header button.link").await;
    // What was typed is not saved: signing out asks first.
    b.wait_text("#sign-out-prompt", "Sign out and discard")
        .await;
    b.audit("the question before signing out").await;
    b.click("#sign-out-prompt-other").await;
    b.wait_text(".sign-in", "You are signed out").await;
    // The earlier wrong token's error does not come back with the screen.
    b.wait_gone("#admin-token-error").await;
    assert_eq!(b.value("#admin-token").await, "", "the token is not kept");
    b.client.refresh().await.unwrap();
    b.find("#admin-token").await;
    b.close().await;
}

/// The accessibility audit every screenshot runs can fail: the sign-in
/// screen passes it, and the same screen with an input nobody labelled
/// does not.
#[tokio::test]
async fn the_accessibility_audit_finds_what_breaks_wcag() {
    let _serial = SERIAL.lock().await;
    let fakes = Fakes::start(SmtpConfig::default()).await;
    let app = Mailroom::start(&fakes).await;
    let b = Browser::start().await;
    b.client.goto(&app.url).await.unwrap();
    b.find("#admin-token").await;
    b.audit("the sign-in screen").await;
    b.client
        .execute(
            "document.querySelector('form').append(document.createElement('input')); return true;",
            vec![],
        )
        .await
        .unwrap();
    let found = b.violations().await;
    assert!(
        found.iter().any(|v| v.starts_with("label (critical)")),
        "{found:?}"
    );
    b.close().await;
}

/// Keystroke to message, for `cargo xtask bench`: the time from an input event
/// to the error text in the DOM, in headless Chromium. It reports; it never
/// fails on speed.
#[tokio::test]
#[ignore = "benchmark; run by cargo xtask bench"]
async fn bench_keystroke_to_message() {
    let (_serial, _fakes, _app, b) = signed_in().await;
    b.find("#tenant_id").await;
    let script = r#"
        const done = arguments[arguments.length - 1];
        const input = document.getElementById('tenant_id');
        const samples = [];
        let i = 0;
        function once() {
            if (i >= 60) { done(samples); return; }
            const bad = (i % 2 === 0);
            input.value = bad ? '0b4f1c2a-1234-4abc-9def-0123456789a' : '0b4f1c2a-1234-4abc-9def-0123456789ab';
            const want = bad;
            const t0 = performance.now();
            const check = () => (document.querySelector('#tenant_id-error.error') !== null) === want;
            const obs = new MutationObserver(() => {
                if (check()) { obs.disconnect(); samples.push(performance.now() - t0); i++; setTimeout(once, 0); }
            });
            obs.observe(document.body, { childList: true, subtree: true, characterData: true, attributes: true });
            input.dispatchEvent(new Event('input', { bubbles: true }));
            if (check()) { obs.disconnect(); samples.push(performance.now() - t0); i++; setTimeout(once, 0); }
        }
        once();
    "#;
    let result = b
        .client
        .execute_async(script, vec![])
        .await
        .expect("measure in the page");
    let mut samples: Vec<f64> = result
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    assert_eq!(samples.len(), 60);
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let json = serde_json::json!({
        "samples": samples.len(), "median_ms": samples[samples.len() / 2],
        "p95_ms": samples[(samples.len() * 95) / 100], "max_ms": samples[samples.len() - 1],
    });
    println!("BENCH keystroke {json}");
    let dir = workspace().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keystroke.json"), json.to_string()).unwrap();
    b.close().await;
}

#[tokio::test]
async fn the_page_loads_and_works_under_its_content_security_policy() {
    let _serial = SERIAL.lock().await;
    let fakes = Fakes::start(SmtpConfig::default()).await;
    let app = Mailroom::start(&fakes).await;
    let page = reqwest::get(&app.url).await.expect("GET /");
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let csp = header("content-security-policy");
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-"),
        "{csp}"
    );
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");

    // The wasm app starts under that policy: it renders, signs in and loads the settings.
    let b = Browser::start().await;
    b.sign_in(&app.url).await;
    b.find("#tenant_id").await;
    b.type_in("#tenant_id", "not-a-guid").await;
    b.wait_text("#tenant_id-error", "Tenant ID must be a GUID")
        .await;
    b.close().await;
}

/// The webhooks panel against the real server and a loopback receiver: a
/// webhook is added from the page, its secret shown once, and "Send a test"
/// reaches the receiver with a valid Standard Webhooks signature under the
/// secret the page showed; edited from the page, it keeps that secret.
#[tokio::test]
async fn a_webhook_is_added_and_tested_from_the_page() {
    let (_serial, _fakes, app, b) = signed_in().await;
    let receiver = mailroom_fakes::FakeReceiver::start().await;
    b.type_in("#webhook-url", &receiver.url("/ops")).await;
    b.click("#webhook-add").await;
    let shown = b.wait_text("#webhook-secret", "whsec_").await;
    let secret = shown
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .expect("the secret")
        .to_string();
    b.wait_text(".webhook", &receiver.url("/ops")).await;
    b.scroll_to("#webhooks").await;
    b.screenshot("webhooks").await;
    // At a phone's width the panel, its long URL and its buttons fit the
    // screen, with nothing to scroll sideways.
    b.window_size(390, 1400).await;
    b.scroll_to("#webhooks").await;
    b.screenshot("webhooks-phone").await;
    let wider = b.wider_than_the_window("#webhooks").await;
    assert_eq!(wider, serde_json::json!([]), "wider than a phone's screen");
    // Words break between them, not inside ("mes" and "sage.failed"); only
    // what does not fit a line (a long URL) breaks anywhere.
    let split = b
        .client
        .execute(
            "return [...document.querySelectorAll('.webhook p')].flatMap(p => {\
               const t = p.firstChild; if (!t || t.nodeType !== 3) return [];\
               return [...t.data.matchAll(/[^\\s,]+/g)].filter(m => {\
                 const r = document.createRange();\
                 r.setStart(t, m.index); r.setEnd(t, m.index + m[0].length);\
                 return r.getClientRects().length > 1;\
               }).map(m => m[0]);\
             });",
            vec![],
        )
        .await
        .expect("find split words");
    assert_eq!(split, serde_json::json!([]), "words split across lines");
    b.window_size(1280, 1800).await;
    // Each event's box stands apart from its words, as the form's other
    // boxes do (they touched: 3 px, the box's own margin).
    let gap = b
        .client
        .execute(
            "const l = document.querySelector('#webhook-events label'); \
             const r = document.createRange(); r.selectNodeContents(l.lastChild); \
             return r.getBoundingClientRect().left - l.querySelector('input').getBoundingClientRect().right;",
            vec![],
        )
        .await
        .expect("the gap");
    assert!(gap.as_f64().unwrap_or_default() >= 6.0, "{gap}");
    b.click(".webhook-test").await;
    b.wait_text(".webhook-result", "answered 200").await;
    let hooks = receiver.wait_for(1).await;
    let body = hooks[0].json();
    assert_eq!(body["type"], "webhook.test", "{body}");
    // The Standard Webhooks library checks the signature (and the
    // timestamp) with the secret the page showed once.
    let verifier = standardwebhooks::Webhook::new(&secret).expect("a whsec_ secret");
    verifier
        .verify(hooks[0].body.as_bytes(), &hooks[0].header_map())
        .unwrap_or_else(|e| panic!("{e:?}: {:?}", hooks[0].headers));
    b.click(".webhook-deliveries").await;
    b.wait_text(".webhook", "No deliveries yet").await;

    // Edited from the page: one more event ticked and saved; the server has
    // it, and a second test is still signed with the secret shown at first.
    b.click(".webhook-edit").await;
    b.wait_text("#webhook-editing", "signing secret stays the same")
        .await;
    b.click("#webhook-event-message-sent").await;
    b.click("#webhook-save").await;
    b.wait_text("#webhook-saved", "is saved").await;
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/webhooks", app.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET /api/webhooks")
        .json()
        .await
        .expect("json");
    let events = &listed["webhooks"][0]["events"];
    assert!(
        events
            .as_array()
            .is_some_and(|e| e.contains(&"message.sent".into())),
        "{listed}"
    );
    assert_eq!(
        listed["webhooks"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    b.click(".webhook-test").await;
    let hooks = receiver.wait_for(2).await;
    verifier
        .verify(hooks[1].body.as_bytes(), &hooks[1].header_map())
        .unwrap_or_else(|e| panic!("{e:?}: {:?}", hooks[1].headers));

    // New secret, asked first: the page shows the new one once, and the
    // next request verifies under either secret.
    b.click("#webhook-secret-done").await;
    b.wait_gone("#webhook-secret").await;
    b.click(".webhook-new-secret").await;
    b.find("#webhook-secret-prompt[open]").await;
    b.audit("webhook-secret-prompt").await;
    b.click("#webhook-secret-prompt-other").await;
    let shown = b
        .wait_text("#webhook-secret", "has a new signing secret")
        .await;
    // The edit's notice said the secret stays: no longer so.
    b.wait_gone("#webhook-saved").await;
    let new_secret = shown
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .expect("the new secret")
        .to_string();
    assert_ne!(new_secret, secret);
    b.click(".webhook-test").await;
    let hooks = receiver.wait_for(3).await;
    for s in [&secret, &new_secret] {
        standardwebhooks::Webhook::new(s)
            .expect("a whsec_ secret")
            .verify(hooks[2].body.as_bytes(), &hooks[2].header_map())
            .unwrap_or_else(|e| panic!("{e:?}: {:?}", hooks[2].headers));
    }

    // The receiver has the new secret: End old secret (asked first), and
    // the next test is signed with the new one alone.
    b.click("#webhook-secret-done").await;
    b.wait_text(".webhook .old-secret", "also signs each request until")
        .await;
    b.screenshot("webhooks-old-secret").await;
    b.click(".webhook-end-old-secret").await;
    b.find("#webhook-end-old-secret-prompt[open]").await;
    b.audit("webhook-end-old-secret-prompt").await;
    b.click("#webhook-end-old-secret-prompt-other").await;
    b.wait_text("#webhook-saved", "new secret only").await;
    b.wait_gone(".webhook-end-old-secret").await;
    b.click(".webhook-test").await;
    let hooks = receiver.wait_for(4).await;
    assert_eq!(
        hooks[3].header("webhook-signature").matches("v1,").count(),
        1,
        "{:?}",
        hooks[3].headers
    );
    standardwebhooks::Webhook::new(&new_secret)
        .expect("a whsec_ secret")
        .verify(hooks[3].body.as_bytes(), &hooks[3].header_map())
        .unwrap_or_else(|e| panic!("{e:?}: {:?}", hooks[3].headers));
    assert!(
        standardwebhooks::Webhook::new(&secret)
            .expect("a whsec_ secret")
            .verify(hooks[3].body.as_bytes(), &hooks[3].header_map())
            .is_err(),
        "the old secret signs no more"
    );
    b.close().await;
}

/// Waits until the form's field `css` holds `want`. The form is made
/// afresh for each profile, so the value is read in one script each time
/// (an element found before a switch is gone after it).
async fn wait_form_value(b: &Browser, css: &str, want: &str) {
    let started = std::time::Instant::now();
    loop {
        let shown = b
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.value : '';",
                vec![serde_json::json!(css)],
            )
            .await
            .expect("script");
        if shown == want {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{css}: {shown}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Two sending profiles (docs/API.md §15): the page draws each one's day,
/// switches the form to the second one, tests and saves it there, and the
/// default profile's settings stay as they were.
#[tokio::test]
async fn a_second_profile_is_chosen_tested_and_saved_and_its_day_is_drawn() {
    let (_serial, fakes, app, b) = signed_in().await;
    fakes.entra.register(TENANT_B, CLIENT_B, SECRET_B);
    let billing = billing();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("{}{path}", app.url))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let a = mailroom_shared::fixtures::office365_oauth("localhost", fakes.smtp.port());
    let r = call(
        reqwest::Method::PUT,
        "/api/settings",
        serde_json::json!({"settings": a, "version": 0}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let a = mailroom_shared::fixtures::office365_second_tenant(
        "localhost",
        fakes.smtp.port(),
        SECRET_B,
    );
    let made: serde_json::Value = call(
        reqwest::Method::POST,
        "/api/profiles",
        serde_json::json!({"name": "Fabrikam billing", "settings": a, "limits": {"recipients_per_day": 50}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = made["id"].as_str().expect("a profile id").to_string();
    let read_profile = || async {
        let r = call(
            reqwest::Method::GET,
            &format!("/api/profiles/{id}"),
            serde_json::json!({}),
        );
        r.await.unwrap().json::<serde_json::Value>().await.unwrap()
    };
    let created: serde_json::Value = call(
        reqwest::Method::POST,
        "/api/apps",
        serde_json::json!({"name": "Invoices", "profile": id}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = created["key"].as_str().unwrap();
    let sent = http
        .post(format!("{}/api/messages", app.url))
        .bearer_auth(key)
        .json(&serde_json::json!({"to": [addr("a", "example.org"), addr("b", "example.org")], "subject": "Invoice", "text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);

    // The page: B's day drawn against its limit once the message went out.
    b.client.refresh().await.expect("reload");
    // The bar is written again at each poll: wait on its text, then read the
    // meter in one script (an element found earlier may be replaced by then).
    b.wait_text(&format!("#usage-{id}"), "2 of 50 recipients in 24 hours")
        .await;
    let meter = b
        .client
        .execute(
            "const m = document.querySelector(arguments[0]); return [m.getAttribute('value'), m.getAttribute('max')];",
            vec![serde_json::json!(format!("#usage-{id} meter"))],
        )
        .await
        .expect("the meter");
    assert_eq!(
        meter,
        serde_json::json!(["2", "50"]),
        "drawn against the limit"
    );
    // Every profile's bar starts at the same place and is as long as the
    // others, whatever its name and numbers (the default's limit is 10,000).
    let bars = b
        .client
        .execute(
            "return [...document.querySelectorAll('#profile-usage meter')].map(m => { const r = m.getBoundingClientRect(); return [Math.round(r.left), Math.round(r.width)]; });",
            vec![],
        )
        .await
        .expect("the meters");
    let bars = bars.as_array().unwrap();
    assert_eq!(bars.len(), 2, "{bars:?}");
    assert!(bars[0][1].as_i64().unwrap() > 50, "{bars:?}");
    assert_eq!(bars[0], bars[1], "aligned and alike: {bars:?}");
    b.wait_text("#usage-default", "0 of 10,000 recipients in 24 hours")
        .await;
    b.screenshot("profiles").await;

    // Switch the form to B: its own settings; a test goes out as B's mailbox.
    b.find("#profile-select")
        .await
        .select_by_value(&id)
        .await
        .expect("choose the profile");
    wait_form_value(&b, "#tenant_id", TENANT_B).await;
    assert_eq!(b.value("#username").await, billing);
    let result = run_test_email(&b).await;
    assert!(result.contains("Success"), "{result}");
    let last = fakes.smtp.messages().pop().unwrap();
    assert_eq!(last.user.as_deref(), Some(billing.as_str()));
    b.click("#test-close").await;
    b.wait_gone(".dialog").await;
    b.type_in("#sender_name", "Fabrikam Billing").await;
    save_untested(&b).await;
    b.wait_text(
        ".banner.success",
        "Success: The SMTP settings have been saved successfully",
    )
    .await;
    let profile = read_profile().await;
    assert_eq!(profile["version"], 2, "{profile}");
    assert_eq!(profile["settings"]["sender_name"], "Fabrikam Billing");
    let default = settings_via_api(&app.url).await;
    assert_eq!(default["settings"]["sender_name"], "Contoso notifications");
    assert_eq!(default["version"], 1);
    // The address names the profile edited, so a reload (or the link of a
    // webhook post about it) shows B's settings again, not the default's.
    let url = b.client.current_url().await.expect("url").to_string();
    assert!(url.ends_with(&format!("#/settings?profile={id}")), "{url}");
    b.client.refresh().await.expect("reload");
    wait_form_value(&b, "#sender_name", "Fabrikam Billing").await;
    assert_eq!(b.value("#username").await, billing);

    // B's limits: read as set, explained while typing, saved, and its day
    // drawn against the new limit.
    b.click("#profile-limits-button").await;
    b.wait_text("#profile-limits-title", "Limits of “Fabrikam billing”")
        .await;
    assert_eq!(b.value("#profile-limit-recipients_per_day").await, "50");
    assert_eq!(b.value("#profile-limit-connections").await, "");
    b.type_in("#profile-limit-connections", "6").await;
    b.wait_text("#profile-limit-connections-warning", "432 4.3.2")
        .await;
    b.type_in("#profile-limit-connections", "2").await;
    b.wait_gone("#profile-limit-connections-warning").await;
    b.type_in("#profile-limit-recipients_per_day", "1,000")
        .await;
    b.click("#profile-limits-save").await;
    b.wait_text("#profile-limits-notice", "are saved").await;
    b.wait_text(&format!("#usage-{id}"), "2 of 1,000 recipients in 24 hours")
        .await;
    let profile = read_profile().await;
    assert_eq!(
        profile["limits"],
        serde_json::json!({"recipients_per_day": 1000, "messages_per_minute": null, "connections": 2}),
        "{profile}"
    );
    b.close().await;
}
