//! The page for sending, end to end: the real binary with its release UI,
//! the loopback fakes, headless Chromium over WebDriver, and a real HTTP
//! client submitting mail with the key the page showed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mailroom_e2e::*;
use mailroom_fakes::{addr, SmtpConfig};
use serde_json::{json, Value};

/// One Chromium at a time: the machine has two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DESKTOP: (u32, u32) = (1280, 1000);
const PHONE: (u32, u32) = (390, 1400);
/// How long a queued message may take to reach the fake upstream.
const WAIT_SENT: Duration = Duration::from_secs(30);

/// Screenshots at desktop and phone widths, named `{name}` and `{name}-phone`,
/// each scrolled to the element `at`.
async fn screenshots(b: &Browser, name: &str, at: &str) {
    let scroll = |b: &Browser| {
        let script = [
            "document.querySelector('",
            at,
            "').scrollIntoView({block: 'start'}); window.scrollBy(0, -12);",
        ]
        .concat();
        let client = b.client.clone();
        async move { client.execute(&script, vec![]).await.expect("scroll") }
    };
    // Every table fits the screen, with nothing to scroll sideways (an
    // open message's details too, an app's buttons too): on a desktop in
    // full, and at a phone's width with each row read as a card.
    let sideways = |b: &Browser, width: &'static str| {
        let client = b.client.clone();
        async move {
            let wider = client
                .execute(
                    "return [...document.querySelectorAll('.table-wrap, html')]\
                       .filter(e => e.scrollWidth > e.clientWidth + 1)\
                       .map(e => (e.querySelector('table') || e).id || e.tagName);",
                    vec![],
                )
                .await
                .expect("measure the tables");
            assert_eq!(
                wider,
                json!([]),
                "{name}: wider than {width}, to scroll sideways"
            );
        }
    };
    scroll(b).await;
    b.screenshot(name).await;
    sideways(b, "a desktop's window").await;
    b.client
        .set_window_size(PHONE.0, PHONE.1)
        .await
        .expect("phone width");
    tokio::time::sleep(Duration::from_millis(300)).await;
    scroll(b).await;
    b.screenshot(&[name, "-phone"].concat()).await;
    sideways(b, "a phone's screen").await;
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .expect("desktop width");
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Saves settings pointing at the fake SMTP through the API.
async fn save_settings_via_api(app: &Mailroom, fakes: &Fakes) {
    let current: Value = http()
        .get(format!("{}/api/settings", app.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET settings")
        .json()
        .await
        .expect("json");
    let settings = mailroom_shared::fixtures::office365_oauth("localhost", fakes.smtp.port());
    let r = http()
        .put(format!("{}/api/settings", app.url))
        .bearer_auth(TOKEN)
        .json(&json!({"settings": settings, "version": current["version"]}))
        .send()
        .await
        .expect("PUT settings");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// Submits one JSON message with an app key; returns its id.
async fn submit(app: &Mailroom, key: &str, to: &str, subject: &str) -> String {
    let r = http()
        .post(format!("{}/api/messages", app.url))
        .bearer_auth(key)
        .json(&json!({"to": [to], "subject": subject, "text": "Hello from the end-to-end test."}))
        .send()
        .await
        .expect("POST /api/messages");
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    let body: Value = r.json().await.expect("json");
    body["id"].as_str().expect("id").to_string()
}

async fn new_app_via_api(app: &Mailroom, name: &str) -> String {
    let r: Value = http()
        .post(format!("{}/api/apps", app.url))
        .bearer_auth(TOKEN)
        .json(&json!({"name": name, "allowed_from": [], "rewrite_from": false}))
        .send()
        .await
        .expect("POST /api/apps")
        .json()
        .await
        .expect("json");
    r["key"].as_str().expect("key").to_string()
}

async fn message(app: &Mailroom, id: &str) -> Value {
    http()
        .get(format!("{}/api/messages/{id}", app.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET message")
        .json()
        .await
        .expect("json")
}

/// Fills the OAuth form for the fake SMTP, tests it, and saves (no prompt:
/// the values just passed their test).
async fn configure_through_the_page(b: &Browser, fakes: &Fakes) {
    b.type_in("#tenant_id", TENANT).await;
    b.type_in("#client_id", CLIENT).await;
    b.type_in("#client_secret", SECRET).await;
    b.type_in("#username", &mailer()).await;
    b.type_in("#sender_name", "Contoso notifications").await;
    b.type_in("#sender_email", &mailer()).await;
    b.click("#advanced summary").await;
    b.type_in("#host", "localhost").await;
    b.type_in("#port", &fakes.smtp.port().to_string()).await;
    b.click("#test-button").await;
    b.type_in("#recipient", &addr("admin", "contoso.com")).await;
    b.click(".dialog button[type=submit]").await;
    let result = b.wait_text(".dialog .result", "Success").await;
    assert!(result.contains("accepted"), "{result}");
    b.click("#test-close").await;
    b.wait_gone(".dialog").await;
    b.click("#save-button").await;
    b.wait_text(".banner.success", "saved successfully").await;
    assert!(
        b.client
            .find(fantoccini::Locator::Css("#save-prompt"))
            .await
            .is_err(),
        "tested values save without the question"
    );
}

/// The fakes, a server, and a browser signed in that configured, tested and
/// saved the settings through the page.
async fn configured() -> (Fakes, Mailroom, Browser) {
    let fakes = Fakes::start(SmtpConfig::default()).await;
    let app = Mailroom::start(&fakes).await;
    let b = Browser::start().await;
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .expect("size");
    b.sign_in(&app.url).await;
    configure_through_the_page(&b, &fakes).await;
    (fakes, app, b)
}

/// The commands the new key's panel shows, as their text.
async fn panel_commands(b: &Browser) -> Vec<String> {
    let commands = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#key-panel .command code'), c => c.textContent);",
            vec![],
        )
        .await
        .expect("the commands");
    serde_json::from_value(commands).unwrap()
}

/// Waits until the message's `field` is `want`; returns the message.
async fn wait_field(app: &Mailroom, id: &str, field: &str, want: Value) -> Value {
    let started = Instant::now();
    loop {
        let m = message(app, id).await;
        if m[field] == want || started.elapsed() > WAIT {
            assert_eq!(m[field], want, "{id}: {m}");
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_app_made_in_the_page_sends_over_http_and_activity_shows_it_sent() {
    let _serial = SERIAL.lock().await;
    let (fakes, app, b) = configured().await;
    b.wait_text(".history tbody", "tenant_id").await;

    b.click("#nav-apps").await;
    b.find("#app-name").await;
    assert!(b
        .client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .ends_with("#/apps"));
    b.type_in("#app-name", "Build server").await;
    b.click("#create-app").await;
    let key = b.wait_text("#new-key code", "mr_").await;
    let port = app.smtp.rsplit(':').next().unwrap().to_string();
    assert_eq!(
        b.wait_text("#smtp-port", &port).await,
        port,
        "the relay's real port"
    );
    let username = b.wait_text("#smtp-username", "app_").await;
    b.wait_text("#key-panel", "you will not see this key again")
        .await;
    // The relay's certificate for devices, as the panel's link fetches it
    // with the page's session.
    let pem = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(document.querySelector('#relay-certificate').href)
               .then(r => r.text().then(t => done(r.status + ' ' + t)), e => done(String(e)));",
            vec![],
        )
        .await
        .expect("fetch in the page");
    let pem = pem.as_str().unwrap_or_default();
    assert!(pem.starts_with("200 -----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(!pem.contains("PRIVATE KEY"), "{pem}");
    // The panel's commands run as shown, in a shell, with this server's
    // address and the key filled in: each queues a message.
    let commands = panel_commands(&b).await;
    let bin = mailroom_binary();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for command in commands
        .iter()
        .filter(|c| c.starts_with("curl ") || c.contains("mailroom sendmail"))
    {
        let out = tokio::process::Command::new("sh")
            .args(["-c", command])
            .env("PATH", &path)
            .output()
            .await
            .expect("sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if command.starts_with("curl ") {
            assert!(stdout.contains(r#""status":"queued""#), "{stdout}");
        }
        ran += 1;
    }
    assert_eq!(ran, 2, "{commands:?}");
    let deadline = Instant::now() + WAIT_SENT;
    while fakes.smtp.messages().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the commands' messages were not sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    screenshots(&b, "apps-new-key", "#apps-title").await;
    b.click("#key-done").await;
    b.wait_gone("#key-panel").await;
    let row = b.wait_text("#apps-table tbody", "Build server").await;
    assert!(row.contains(&username), "{row}");
    assert!(
        !b.client.source().await.unwrap().contains(&key),
        "the key is gone"
    );
    screenshots(&b, "apps", "#apps-title").await;

    let to = addr("someone", "example.org");
    let id = submit(&app, &key, &to, "Build 1234 passed").await;
    b.click("#nav-activity").await;
    let row_css = ["#row-", &id].concat();
    let row = b.wait_text(&row_css, "sent").await;
    assert!(
        row.contains("Build 1234 passed") && row.contains(&to),
        "{row}"
    );
    b.wait_text("#count-sent", "3").await;
    let delivered = fakes.smtp.messages();
    assert_eq!(
        delivered.len(),
        4,
        "the test email, the panel's two commands' and the app's message"
    );
    assert_eq!(delivered[3].rcpt_to, vec![to.clone()]);
    screenshots(&b, "activity", "#activity-title").await;

    b.click(&[row_css.as_str(), " button.open"].concat()).await;
    let details = b.wait_text(&["#details-", &id].concat(), "Accepted").await;
    assert!(
        details.contains(&to) && details.contains("Recipients"),
        "{details}"
    );
    // The Message-ID the upstream got, which message trace finds it by.
    let header = delivered[3]
        .data
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap();
    assert!(details.contains(header), "{header}: {details}");
    screenshots(&b, "message-details", &row_css).await;

    // Edited in place on Apps: an address added to what it may send as,
    // taken by the server at once with the same key.
    let builds = addr("builds", "contoso.com");
    let as_builds = || async {
        http()
            .post(format!("{}/api/messages", app.url))
            .bearer_auth(&key)
            .json(&json!({"from": builds, "to": [to], "subject": "as builds", "text": "x"}))
            .send()
            .await
            .expect("POST /api/messages")
            .status()
    };
    assert_eq!(as_builds().await, 422, "not yet allowed");
    b.click("#nav-apps").await;
    b.click("#apps-table tbody button[data-act=edit]").await;
    b.wait_text("#new-app-title", "Edit “Build server”").await;
    b.type_in("#app-allowed", &builds).await;
    // The Send-As right it needs, for the mailbox the server's profile has.
    let line = b.wait_text("#app-send-as", &builds).await;
    assert_eq!(
        b.value("#app-allowed").await,
        builds,
        "typed whole: the field kept its focus as the Send-As line appeared"
    );
    assert!(
        line.contains(&format!(
            "Add-RecipientPermission -Identity \"{builds}\" -Trustee \"{}\" -AccessRights SendAs",
            mailroom_shared::fixtures::mailer()
        )),
        "{line}"
    );
    screenshots(&b, "apps-edit", "#new-app").await;
    b.click("#save-app").await;
    // (The settings view, hidden, has a success banner of its own.)
    b.wait_text("#apps-title ~ .banner.success", "its key stays the same")
        .await;
    b.wait_text("#apps-table tbody", &builds).await;
    assert_eq!(as_builds().await, 202, "allowed after the edit, same key");
    // A lost key: a new one from the app's row, after a question. The old
    // key stops at once; the new one sends as the same app.
    b.click("#apps-table tbody button[data-act=rekey]").await;
    b.wait_text("#rekey-prompt", "a new key?").await;
    b.audit("the question before a new key").await;
    b.click("#rekey-prompt-other").await;
    let renewed = b.wait_text("#new-key code", "mr_").await;
    assert_ne!(renewed, key);
    assert_eq!(as_builds().await, 401, "the old key no longer works");
    submit(&app, &renewed, &to, "after a new key").await;
    b.click("#key-done").await;
    b.wait_gone("#key-panel").await;
    // Moving devices one by one: with the question's box ticked, the key
    // before goes on working beside the new one, and the page says until
    // when.
    b.click("#apps-table tbody button[data-act=rekey]").await;
    b.wait_text("#rekey-prompt", "a new key?").await;
    b.click("#rekey-keep-old").await;
    b.click("#rekey-prompt-other").await;
    let third = b.wait_text("#new-key code", "mr_").await;
    assert_ne!(third, renewed);
    b.wait_text("#apps-title ~ .banner.success", "goes on working until")
        .await;
    submit(&app, &renewed, &to, "the key before, for a day").await;
    submit(&app, &third, &to, "the newest key").await;
    b.click("#key-done").await;
    b.wait_gone("#key-panel").await;
    // The list says so until then; the last device moved, the old key is
    // ended from its row, after a question, and only the newest sends.
    b.wait_text("#apps-table tbody .old-key", "Old key also works until")
        .await;
    // Its line and one more button still fit, on a phone too.
    screenshots(&b, "apps-old-key", "#apps-title").await;
    b.click("#apps-table tbody button[data-act=end-old-key]")
        .await;
    b.wait_text("#end-old-key-prompt", "now?").await;
    b.audit("the question before ending an old key").await;
    b.click("#end-old-key-prompt-other").await;
    b.wait_text("#apps-title ~ .banner.success", "no longer works")
        .await;
    b.wait_gone("#apps-table tbody .old-key").await;
    let with_renewed = http()
        .post(format!("{}/api/messages", app.url))
        .bearer_auth(&renewed)
        .json(&json!({"to": [to], "subject": "ended", "text": "x"}))
        .send()
        .await
        .expect("POST /api/messages");
    assert_eq!(with_renewed.status(), 401, "the old key was ended");
    submit(&app, &third, &to, "the newest key, after").await;
    // The list, read again, names the client still using the ended key.
    b.click("#nav-activity").await;
    b.find("#activity-title").await;
    b.click("#nav-apps").await;
    let said = b
        .wait_text("#apps-table tbody .old-key", "Old key refused")
        .await;
    assert!(
        said.contains("Old key refused from 127.0.0.1 (HTTP) at ")
            && said.ends_with(": give that device the new key"),
        "{said}"
    );
    // And on every view, as a warning that links to Apps.
    let warned = b
        .wait_text(
            "#old-key-warning",
            "A device still uses an app's replaced key",
        )
        .await;
    assert!(warned.contains("(last from 127.0.0.1 (HTTP))"), "{warned}");
    // Its message count opens Activity filtered to it.
    b.click(&format!("#apps-table a[href='#/activity?app={username}']"))
        .await;
    b.find("#activity-title").await;
    b.wait_text(&row_css, "Build 1234 passed").await;
    assert_eq!(b.value("#app-filter").await, username);
    let url = b.client.current_url().await.unwrap();
    assert!(
        url.as_str()
            .ends_with(&format!("#/activity?app={username}")),
        "{url}"
    );

    // Back and reload keep the view.
    b.client.back().await.expect("back");
    b.find("#app-name").await;
    b.client.refresh().await.expect("reload");
    b.find("#apps-table").await;
    b.close().await;
}

#[tokio::test]
async fn a_broken_secret_pauses_delivery_with_a_banner_and_fixing_it_sends_the_waiting_mail() {
    let _serial = SERIAL.lock().await;
    let (fakes, app, b) = configured().await;
    let key = new_app_via_api(&app, "Scanner, 3rd floor").await;

    // Break the secret. Untested values: the page asks, and is told to save.
    b.type_in("#client_secret", "Wrong~secret-value-0123456789abcdefgh")
        .await;
    b.click("#save-button").await;
    b.wait_text("#save-prompt-title", "Save without a successful test?")
        .await;
    b.click("#save-prompt-other").await;
    b.wait_gone("#save-prompt").await;
    b.wait_text(".banner.success", "saved successfully").await;

    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(
            submit(
                &app,
                &key,
                &addr("someone", "example.org"),
                &["Scan ", &n.to_string()].concat(),
            )
            .await,
        );
    }
    let banner = b.wait_text("#paused", "3 messages are waiting").await;
    assert!(banner.contains("Delivery is paused"), "{banner}");
    assert!(
        banner.contains("token") && banner.contains("AADSTS7000215"),
        "stage and code: {banner}"
    );
    assert!(banner.contains("Nothing is lost"), "{banner}");
    screenshots(&b, "paused-banner", "#paused").await;
    b.click("#nav-activity").await;
    b.find("#activity-title").await;
    b.wait_text("#paused", "Delivery is paused").await;
    b.wait_text("#count-queued", "3").await;
    screenshots(&b, "activity-paused", "#paused").await;
    assert_eq!(
        fakes.smtp.messages().len(),
        1,
        "only the test email went out"
    );
    for id in &ids {
        assert_eq!(
            message(&app, id).await["status"],
            "queued",
            "paused, never failed"
        );
    }

    // The banner's button leads to the settings; fixing the secret sends them.
    b.click("#paused a.button").await;
    b.find("#settings-title").await;
    b.type_in("#client_secret", SECRET).await;
    b.click("#save-button").await;
    // These exact values passed the first test: no question this time.
    b.wait_text(".banner.success", "saved successfully").await;
    assert!(b
        .client
        .find(fantoccini::Locator::Css("#save-prompt"))
        .await
        .is_err());
    b.wait_gone("#paused").await;
    let started = Instant::now();
    while fakes.smtp.messages().len() < 4 && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fakes.smtp.messages().len(),
        4,
        "the three waiting messages went out"
    );
    for id in &ids {
        wait_field(&app, id, "status", json!("sent")).await;
    }
    b.close().await;
}

#[tokio::test]
async fn a_failed_message_is_retried_from_its_details() {
    let _serial = SERIAL.lock().await;
    let nobody = addr("nobody", "example.org");
    let fakes = Fakes::start(SmtpConfig {
        rcpt_replies: HashMap::from([(nobody.clone(), "550 5.1.1 User unknown".to_string())]),
        ..SmtpConfig::default()
    })
    .await;
    let app = Mailroom::start(&fakes).await;
    save_settings_via_api(&app, &fakes).await;
    let key = new_app_via_api(&app, "Helpdesk").await;
    let id = submit(&app, &key, &nobody, "Ticket 42").await;
    wait_field(&app, &id, "status", json!("failed")).await;
    // Another app's message failed the same way.
    let other_key = new_app_via_api(&app, "Reports").await;
    let other = submit(&app, &other_key, &nobody, "Weekly report").await;
    wait_field(&app, &other, "status", json!("failed")).await;

    let b = Browser::start().await;
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .expect("size");
    // A webhook post's link opens the message it is about (docs/API.md
    // §14); one the link's filter leaves out shows above the list.
    b.client
        .goto(&[app.url.as_str(), "/#/activity?status=sent&message=", &other].concat())
        .await
        .expect("open");
    b.type_in("#admin-token", TOKEN).await;
    b.click("button[type=submit]").await;
    let card = b
        .wait_text("#linked-message", "550 5.1.1 User unknown")
        .await;
    assert!(card.contains("Weekly report"), "{card}");
    b.wait_text("#no-messages", "No messages match").await;
    // On a phone too, it fits the screen (checked by the helper).
    screenshots(&b, "activity-linked", "#linked-message").await;
    // Another link followed in the same tab: that message, in its row.
    b.client
        .goto(&[app.url.as_str(), "/#/activity?message=", &id].concat())
        .await
        .expect("follow");
    b.wait_gone("#linked-message").await;
    let row_css = ["#row-", &id].concat();
    let row = b.wait_text(&row_css, "failed").await;
    assert!(row.contains("5.1.1"), "the last error in the row: {row}");
    let details_css = ["#details-", &id].concat();
    let details = b.wait_text(&details_css, "550 5.1.1 User unknown").await;
    assert!(details.contains("Stage: send"), "{details}");
    b.click("#retry-message").await;
    b.wait_text(".banner.success", "Queued again").await;
    wait_field(&app, &id, "attempt_count", json!(2)).await;
    b.wait_text(&details_css, "Retry now").await;
    // The retry failed the same way as the first attempt: one entry, "2 times".
    let details = b.wait_text(&details_css, "2 times").await;
    assert!(
        details.contains("Failed · 2 times, from"),
        "the details refresh in place and show both attempts: {details}"
    );
    let entries = b
        .client
        .find_all(fantoccini::Locator::Css(
            &[details_css.as_str(), " .attempts li"].concat(),
        ))
        .await
        .map(|v| v.len())
        .unwrap_or(0);
    assert_eq!(entries, 1, "the same failure twice is said once");

    // The mailbox exists now: every failed message of the helpdesk goes
    // again at once, from the list filtered to its failed ones; the other
    // app's stays as it was.
    fakes.smtp.configure(|c| c.rcpt_replies.clear());
    b.find("#status-filter")
        .await
        .select_by_value("failed")
        .await
        .expect("filter on failed");
    b.find("#app-filter")
        .await
        .select_by_label("Helpdesk")
        .await
        .expect("filter on the helpdesk app");
    b.wait_gone(&["#row-", &other].concat()).await;
    b.wait_text("#retry-all", "Retry all failed of “Helpdesk”")
        .await;
    b.click("#retry-all").await;
    b.wait_text(".banner.success", "Queued again: 1 message.")
        .await;
    wait_field(&app, &id, "status", json!("sent")).await;
    assert_eq!(message(&app, &other).await["status"], "failed");
    b.close().await;
}

/// Behind a reverse proxy that serves Mailroom under a path
/// (`https://contoso.com/mailroom/`, nginx's `location /mailroom/`): the
/// page loads its files and calls the API there, not at the site's root,
/// and the commands the Apps page shows name that path and queue mail.
#[tokio::test]
async fn the_page_and_its_commands_work_behind_a_proxy_under_a_path() {
    let _serial = SERIAL.lock().await;
    let fakes = Fakes::start(SmtpConfig::default()).await;
    let app = Mailroom::start(&fakes).await;
    save_settings_via_api(&app, &fakes).await;
    let page = proxy_under_path(&app.url).await;
    let b = Browser::start().await;
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .expect("size");
    // Signed in and the settings read through the proxy's path.
    b.sign_in(&page).await;
    b.wait_text(".history tbody", "tenant_id").await;
    b.click("#nav-apps").await;
    b.type_in("#app-name", "Intranet").await;
    b.click("#create-app").await;
    b.wait_text("#new-key code", "mr_").await;
    let commands = panel_commands(&b).await;
    let curl = commands
        .iter()
        .find(|c| c.starts_with("curl "))
        .expect("a curl command");
    assert!(curl.contains(&format!("{page}api/messages")), "{curl}");
    let out = tokio::process::Command::new("sh")
        .args(["-c", curl])
        .output()
        .await
        .expect("sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""status":"queued""#), "{curl}: {stdout}");
    // Activity through the proxy shows it.
    b.click("#nav-activity").await;
    b.wait_text(
        "section[aria-labelledby=activity-title] .table-wrap",
        "Hello from Intranet",
    )
    .await;
    b.close().await;
}
