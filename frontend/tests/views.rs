//! The sending views in headless Chromium, against a fake `window.fetch` that
//! answers the API's routes with the contract's JSON and records every
//! request, so each test can also check what was (not) sent.
#![cfg(target_arch = "wasm32")]

use mailroom_frontend::components::activity::{Activity, ActivityProps};
use mailroom_frontend::components::apps::{Apps, AppsProps};
use mailroom_frontend::components::settings_form::{
    needs_test_prompt, SettingsForm, SettingsFormProps,
};
use mailroom_frontend::route::View;
use mailroom_frontend::{Signed, SignedProps};
use serde_json::{json, Value};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;
use web_sys::{Element, HtmlElement, HtmlInputElement};
use yew::prelude::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::{fresh_root, valid_initial};

const FAKE_FETCH: &str = r#"
window.__requests = [];
window.__routes = {};
window.fetch = function (input, init) {
  const req = (input instanceof Request) ? input : new Request(input, init);
  const url = new URL(req.url);
  return req.text().then(function (body) {
    window.__requests.push({ method: req.method, path: url.pathname + url.search, body: body });
    const r = window.__routes[req.method + " " + url.pathname] || [404, '{"message": "no such route"}'];
    return new Response(r[0] === 204 ? null : r[1], { status: r[0], headers: { "Content-Type": "application/json" } });
  });
};
"#;

/// Replaces `window.fetch` with the fake and forgets earlier routes and requests.
fn fake_api() {
    js_sys::Function::new_no_args(FAKE_FETCH)
        .call0(&JsValue::NULL)
        .unwrap();
}

/// Answers `METHOD /path` (query ignored) with this status and JSON.
fn route(key: &str, status: u16, body: &Value) {
    js_sys::Function::new_with_args("k, s, b", "window.__routes[k] = [s, b];")
        .call3(
            &JsValue::NULL,
            &JsValue::from_str(key),
            &JsValue::from(status),
            &JsValue::from_str(&body.to_string()),
        )
        .unwrap();
}

/// Every request so far, as `METHOD /path?query` and its body.
fn requests() -> Vec<(String, String)> {
    let list = js_sys::Reflect::get(&web_sys::window().unwrap(), &"__requests".into()).unwrap();
    js_sys::Array::from(&list)
        .iter()
        .map(|r| {
            let get = |k: &str| {
                js_sys::Reflect::get(&r, &k.into())
                    .unwrap()
                    .as_string()
                    .unwrap()
            };
            ([get("method"), get("path")].join(" "), get("body"))
        })
        .collect()
}

/// A macrotask `ms` from now, then a Yew render.
async fn tick(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
    yew::scheduler::flush().await;
}

/// Lets the fake's promises resolve and Yew render, a few macrotasks deep.
async fn settle() {
    for _ in 0..6 {
        tick(0).await;
    }
}

/// Waits, up to `ms`, until `check` holds (for the page's own polling).
async fn eventually(ms: u32, check: impl Fn() -> bool) -> bool {
    let mut waited = 0;
    while waited < ms {
        if check() {
            return true;
        }
        tick(100).await;
        waited += 100;
    }
    check()
}

fn find(root: &Element, selector: &str) -> Element {
    root.query_selector(selector)
        .unwrap()
        .unwrap_or_else(|| panic!("no {selector} in {}", root.inner_html()))
}

/// A destructive button asks first in a modal dialog `prompt` whose title
/// holds `about`, the safe answer focused: kept, nothing is deleted; asked
/// again and confirmed, the page goes on to delete.
async fn keep_then_confirm(root: &Element, button: &str, prompt: &str, about: &str) {
    click(root, button).await;
    asked(root, prompt);
    let title = text_of(root, &["#", prompt, "-title"].concat());
    assert!(title.contains(about), "{title}");
    click(root, &["#", prompt, "-default"].concat()).await;
    assert!(root
        .query_selector(&["#", prompt].concat())
        .unwrap()
        .is_none());
    assert!(
        !requests().iter().any(|(r, _)| r.starts_with("DELETE")),
        "kept"
    );
    click(root, button).await;
    click(root, &["#", prompt, "-other"].concat()).await;
}

/// The confirm dialog `prompt` is open, modal, with its safe answer
/// focused: its text.
fn asked(root: &Element, prompt: &str) -> String {
    let dialog: web_sys::HtmlDialogElement = find(root, &["dialog#", prompt].concat())
        .dyn_into()
        .unwrap();
    assert!(dialog.open() && dialog.matches(":modal").unwrap());
    assert_eq!(
        active_id(),
        [prompt, "-default"].concat(),
        "the safe answer has the focus"
    );
    text_of(root, &["#", prompt].concat())
}

/// Clicks `button`, reads the question `prompt` it asks, keeps (its default,
/// after which `posts` must still be 0), then clicks again and takes the
/// other answer; what the question said.
async fn asked_kept_then_taken(
    root: &Element,
    button: &str,
    prompt: &str,
    posts: impl Fn() -> usize,
) -> String {
    click(root, button).await;
    let said = asked(root, prompt);
    click(root, &["#", prompt, "-default"].concat()).await;
    assert_eq!(posts(), 0, "kept");
    click(root, button).await;
    click(root, &["#", prompt, "-other"].concat()).await;
    said
}

/// The value of the input with this id.
fn input_value(root: &Element, id: &str) -> String {
    find(root, &["#", id].concat())
        .dyn_into::<HtmlInputElement>()
        .unwrap()
        .value()
}

fn text_of(root: &Element, selector: &str) -> String {
    root.query_selector(selector)
        .unwrap()
        .and_then(|e| e.text_content())
        .unwrap_or_default()
}

async fn type_into(root: &Element, id: &str, value: &str) {
    let input: HtmlInputElement = find(root, &["#", id].concat()).dyn_into().unwrap();
    input.set_value(value);
    let init = web_sys::EventInit::new();
    init.set_bubbles(true);
    input
        .dispatch_event(&web_sys::Event::new_with_event_init_dict("input", &init).unwrap())
        .unwrap();
    yew::scheduler::flush().await;
}

async fn click(root: &Element, selector: &str) {
    let el: HtmlElement = find(root, selector).dyn_into().unwrap();
    el.click();
    settle().await;
}

fn active_id() -> String {
    let doc = web_sys::window().unwrap().document().unwrap();
    doc.active_element().map(|e| e.id()).unwrap_or_default()
}

fn scans() -> String {
    ["scans", "@", "contoso.com"].concat()
}

/// An APP as the server writes it (serde_json of the shared type).
fn app_json(id: &str, name: &str) -> Value {
    serde_json::to_value(mailroom_shared::sending::App {
        id: id.into(),
        name: name.into(),
        created_at: "2026-11-20T09:00:00Z".into(),
        last_used_at: None,
        messages: 3,
        allowed_from: vec![scans()],
        rewrite_from: false,
        limits: Default::default(),
        usage: Default::default(),
        profile: "default".into(),
        old_key_until: None,
        old_key_used: None,
        old_key_clients: Vec::new(),
    })
    .unwrap()
}

fn apps_routes(apps: Vec<Value>) {
    route("GET /api/apps", 200, &json!({ "apps": apps }));
    route(
        "GET /api/connection",
        200,
        &json!({"smtp": {"hostname": null, "ip": "127.0.0.1", "port": 2525, "loopback_only": true}}),
    );
}

async fn mount_apps() -> Element {
    mount_apps_with(Vec::new()).await
}

/// A fresh root, the page's address at `hash` (`""`: none).
fn fresh_root_at(hash: &str) -> Element {
    let root = fresh_root();
    if !hash.is_empty() {
        web_sys::window()
            .unwrap()
            .location()
            .set_hash(hash)
            .unwrap();
    }
    root
}

/// The Apps view with the sending profiles of the queue's answer.
async fn mount_apps_with(profiles: Vec<mailroom_shared::profiles::ProfileState>) -> Element {
    mount_apps_at("", profiles).await
}

/// The Apps view opened at `hash` (`""`: none).
async fn mount_apps_at(
    hash: &str,
    profiles: Vec<mailroom_shared::profiles::ProfileState>,
) -> Element {
    mount_apps_polling(hash, profiles, None).await
}

/// The Apps view opened at `hash`, reading its list every `poll_ms`.
async fn mount_apps_polling(
    hash: &str,
    profiles: Vec<mailroom_shared::profiles::ProfileState>,
    poll_ms: Option<i32>,
) -> Element {
    end_apps().await;
    let root = fresh_root_at(hash);
    let page = yew::Renderer::<Apps>::with_root_and_props(
        root.clone(),
        AppsProps {
            on_unauthorized: Callback::noop(),
            profiles,
            shown: true,
            poll_ms: poll_ms.unwrap_or(mailroom_frontend::components::apps::APPS_POLL_MS),
        },
    )
    .render();
    APPS.with(|a| *a.borrow_mut() = Some(page));
    settle().await;
    root
}

thread_local! {
    /// The Apps view these tests mounted last on its own: the next mount
    /// ends it, so a key it still shows is not held as unsaved for the
    /// next test's page.
    static APPS: std::cell::RefCell<Option<yew::AppHandle<Apps>>> =
        const { std::cell::RefCell::new(None) };
}

async fn end_apps() {
    if let Some(page) = APPS.with(|a| a.borrow_mut().take()) {
        page.destroy();
        settle().await;
    }
}

/// The Apps view when there are two profiles (`default` and `prf_b`).
async fn mount_apps_on_two_profiles() -> Element {
    let q: mailroom_shared::sending::QueueState =
        serde_json::from_value(two_profiles_queue()).unwrap();
    mount_apps_with(q.profiles).await
}

#[wasm_bindgen_test]
async fn a_new_apps_key_is_shown_once_with_its_connection_details_and_gone_after_closing() {
    fake_api();
    apps_routes(vec![]);
    let key = "mr_0123456789abcdefghijklmnopqrstuv";
    route(
        "POST /api/apps",
        201,
        &json!({"app": app_json("app_7k2", "Scanner, 3rd floor"), "key": key}),
    );
    let root = mount_apps().await;
    assert!(text_of(&root, "#no-apps").contains("No apps yet"));
    type_into(&root, "app-name", "Scanner, 3rd floor").await;
    type_into(&root, "app-allowed", &scans()).await;
    click(&root, "#create-app").await;

    let post = requests()
        .into_iter()
        .find(|(r, _)| r == "POST /api/apps")
        .expect("the app was created");
    let body: Value = serde_json::from_str(&post.1).unwrap();
    assert_eq!(body["name"], "Scanner, 3rd floor");
    assert_eq!(body["allowed_from"], json!([scans()]));
    assert_eq!(body["rewrite_from"], false);

    assert_eq!(text_of(&root, "#new-key code"), key, "the key shows");
    assert!(text_of(&root, "#key-panel").contains("you will not see this key again"));
    assert_eq!(active_id(), "key-title", "the focus moves to the key");
    assert_eq!(text_of(&root, "#smtp-username"), "app_7k2");
    assert_eq!(text_of(&root, "#smtp-port"), "2525");
    assert_eq!(text_of(&root, "#smtp-host"), "127.0.0.1");
    assert!(
        text_of(&root, "#key-panel").contains("--smtp-listen 0.0.0.0:2525"),
        "a loopback-only relay says how to open it"
    );
    let commands: Vec<String> = {
        let list = root.query_selector_all("#key-panel .command code").unwrap();
        (0..list.length())
            .map(|i| list.item(i).unwrap().text_content().unwrap())
            .collect()
    };
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("curl ") && c.contains(key) && c.contains("/api/messages")),
        "{commands:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.contains("mailroom sendmail") && c.contains(key)),
        "{commands:?}"
    );

    click(&root, "#new-key button.copy").await;
    assert_eq!(text_of(&root, "#new-key button.copy"), "Copied");
    assert_eq!(
        find(&root, "#new-key button.copy")
            .get_attribute("aria-label")
            .as_deref(),
        Some("Copy the key"),
        "the label does not read the key aloud"
    );
    click(&root, "#key-done").await;
    assert!(root.query_selector("#key-panel").unwrap().is_none());
    assert!(!root.inner_html().contains(key), "the key is gone for good");
    assert_eq!(active_id(), "app-name");
}

/// The curl command is one a shell runs as shown, whatever the app's name:
/// a `"` or `\` in it broke the command's JSON, and a `'` was dropped.
#[wasm_bindgen_test]
async fn the_key_panels_curl_command_sends_valid_json_for_any_app_name() {
    let key = "mr_0123456789abcdefghijklmnopqrstuv";
    let name = r#"Bob's "3rd" \ floor"#;
    fake_api();
    apps_routes(vec![]);
    route(
        "POST /api/apps",
        201,
        &json!({"app": app_json("app_7k2", name), "key": key}),
    );
    let root = mount_apps().await;
    type_into(&root, "app-name", name).await;
    click(&root, "#create-app").await;
    let list = root.query_selector_all("#key-panel .command code").unwrap();
    let curl = (0..list.length())
        .map(|i| list.item(i).unwrap().text_content().unwrap())
        .find(|c| c.starts_with("curl "))
        .expect("a curl command");
    // The argument after -d, read as a POSIX shell reads single quotes.
    let quoted = curl.split_once(" -d ").expect("-d").1;
    let mut body = String::new();
    for (i, part) in quoted.split("'\\''").enumerate() {
        if i > 0 {
            body.push('\'');
        }
        body.push_str(part);
    }
    let body = body
        .strip_prefix('\'')
        .and_then(|b| b.strip_suffix('\''))
        .unwrap_or_else(|| panic!("one quoted argument: {quoted}"));
    let sent: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(sent["subject"], format!("Hello from {name}"));
    assert_eq!(sent["to"][0], format!("{}@{}", "you", "example.org"));
    assert_eq!(sent["text"], "It works.");
}

/// The key panel's SMTP details for each way the relay may listen: both
/// ports, implicit TLS alone (`--smtps-listen`), and neither.
#[wasm_bindgen_test]
async fn the_key_panel_names_the_relays_ports_and_links_its_certificate() {
    let key = "mr_0123456789abcdefghijklmnopqrstuv";
    let listener = |port: u16| json!({"hostname": null, "ip": "127.0.0.1", "port": port, "loopback_only": true});
    for (connection, smtp, smtps, open) in [
        (
            json!({"smtp": listener(2525), "smtps": listener(4650)}),
            Some("2525"),
            Some("4650"),
            "--smtp-listen 0.0.0.0:2525",
        ),
        (
            json!({"smtp": null, "smtps": listener(4650)}),
            None,
            Some("4650"),
            "--smtps-listen 0.0.0.0:4650",
        ),
        (
            json!({"smtp": null, "smtps": null}),
            None,
            None,
            "The SMTP relay is off",
        ),
    ] {
        fake_api();
        apps_routes(vec![]);
        route("GET /api/connection", 200, &connection);
        route(
            "POST /api/apps",
            201,
            &json!({"app": app_json("app_7k2", "Scanner"), "key": key}),
        );
        let root = mount_apps().await;
        type_into(&root, "app-name", "Scanner").await;
        click(&root, "#create-app").await;
        assert_eq!(text_of(&root, "#new-key code"), key, "{connection}");
        let shown = |selector: &str| {
            root.query_selector(selector)
                .unwrap()
                .map(|e| e.text_content().unwrap_or_default())
        };
        assert_eq!(shown("#smtp-port").as_deref(), smtp, "{connection}");
        assert_eq!(shown("#smtps-port").as_deref(), smtps, "{connection}");
        // With a relay, a device keeping its mailbox's address is told it may.
        assert_eq!(
            shown("#smtp-username-address")
                .is_some_and(|t| t.contains("keep its mailbox's address")),
            smtp.is_some() || smtps.is_some(),
            "{connection}"
        );
        let panel = text_of(&root, "#key-panel");
        assert!(panel.contains(open), "{connection}: {panel}");
        assert_eq!(panel.contains("STARTTLS"), smtp.is_some(), "{panel}");
        assert_eq!(
            panel.contains("Port with SSL/TLS"),
            smtps.is_some(),
            "{panel}"
        );
        let link = root.query_selector("#relay-certificate").unwrap();
        assert_eq!(
            link.and_then(|a| a.get_attribute("href")).as_deref(),
            // Relative to the page, which may be behind a proxy's path.
            (smtp.is_some() || smtps.is_some()).then_some("api/connection/certificate"),
            "{connection}"
        );
    }
}

#[wasm_bindgen_test]
async fn allowed_from_addresses_are_checked_while_typing_and_nothing_invalid_is_sent() {
    fake_api();
    apps_routes(vec![]);
    let root = mount_apps().await;
    type_into(
        &root,
        "app-allowed",
        &[scans().as_str(), ", not-an-address"].concat(),
    )
    .await;
    let error = text_of(&root, "#app-allowed-error");
    assert!(
        error.contains("Address 2")
            && error.contains("not-an-address")
            && error.contains("is not an email address"),
        "{error}"
    );
    assert_eq!(
        find(&root, "#app-allowed")
            .get_attribute("aria-invalid")
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        text_of(&root, "#app-name-error"),
        "",
        "untouched fields stay quiet"
    );
    // A pattern is named as one while typing (`*@…` is a valid address).
    let domain = scans().split_once('@').unwrap().1.to_string();
    type_into(&root, "app-allowed", &format!("*@{domain}")).await;
    let error = text_of(&root, "#app-allowed-error");
    assert!(
        error.contains("is a pattern") && error.contains("whole addresses"),
        "{error}"
    );
    // A character that shows as nothing, pasted along, is named while typing:
    // in an address, and in a name, where it made a second "Scanner" that
    // looked like the first.
    type_into(&root, "app-allowed", &format!("{}\u{200B}", scans())).await;
    let error = text_of(&root, "#app-allowed-error");
    assert!(error.contains("U+200B"), "{error}");
    type_into(&root, "app-name", "Scanner\u{200B}").await;
    let error = text_of(&root, "#app-name-error");
    assert!(
        error.contains("U+200B") && error.contains("shows as nothing"),
        "{error}"
    );
    type_into(&root, "app-name", "").await;
    type_into(&root, "app-allowed", &scans()).await;
    assert_eq!(text_of(&root, "#app-allowed-error"), "");

    click(&root, "#create-app").await;
    assert!(text_of(&root, "#app-name-error").contains("Enter a name"));
    assert_eq!(
        active_id(),
        "app-name",
        "the first invalid field takes the focus"
    );
    assert!(
        !requests().iter().any(|(r, _)| r.starts_with("POST")),
        "nothing invalid reaches the server"
    );
}

#[wasm_bindgen_test]
async fn revoking_asks_first_naming_the_app() {
    fake_api();
    apps_routes(vec![app_json("app_1", "Scanner, 3rd floor")]);
    route("DELETE /api/apps/app_1", 204, &json!(null));
    let root = mount_apps().await;
    let row = text_of(&root, "#apps-table tbody tr");
    assert!(
        row.contains("Scanner, 3rd floor") && row.contains(&scans()) && row.contains("never"),
        "{row}"
    );
    assert_eq!(
        find(&root, "#apps-table tbody button[data-act=revoke]")
            .get_attribute("aria-label")
            .as_deref(),
        Some("Revoke Scanner, 3rd floor")
    );

    click(&root, "#apps-table tbody button[data-act=revoke]").await;
    let dialog: web_sys::HtmlDialogElement =
        find(&root, "dialog#revoke-prompt").dyn_into().unwrap();
    assert!(dialog.open() && dialog.matches(":modal").unwrap());
    assert!(text_of(&root, "#revoke-prompt-title").contains("Revoke “Scanner, 3rd floor”?"));
    assert_eq!(
        active_id(),
        "revoke-prompt-default",
        "the safe answer has the focus"
    );
    click(&root, "#revoke-prompt-default").await;
    assert!(root.query_selector("#revoke-prompt").unwrap().is_none());
    assert!(
        !requests().iter().any(|(r, _)| r.starts_with("DELETE")),
        "kept"
    );

    click(&root, "#apps-table tbody button[data-act=revoke]").await;
    click(&root, "#revoke-prompt-other").await;
    assert!(requests()
        .iter()
        .any(|(r, _)| r == "DELETE /api/apps/app_1"));
    assert!(text_of(&root, ".banner.success").contains("is revoked"));
}

#[wasm_bindgen_test]
async fn limits_and_their_use_show_drawn_and_are_edited_with_checks_while_typing() {
    fake_api();
    let mut app = app_json("app_1", "Bulk");
    app["limits"] = json!({"messages_per_hour": 100, "messages_per_day": null,
                           "recipients_per_day": 10000, "queued_max": 10000});
    app["usage"] = json!({"messages_last_hour": 100, "messages_today": 340,
                          "recipients_today": 2500, "queued": 12});
    apps_routes(vec![app.clone()]);
    let mut changed = app.clone();
    changed["limits"]["messages_per_hour"] = json!(500);
    route("PATCH /api/apps/app_1", 200, &changed);
    let root = mount_apps().await;
    let usage = text_of(&root, "#apps-table td.usage");
    assert!(
        usage.contains("100 of 100")
            && usage.contains("340 (no limit)")
            && usage.contains("2,500 of 10,000"),
        "{usage}"
    );
    // Drawn: a meter per limit set, and the full one marked.
    let meters = root
        .query_selector_all("#apps-table td.usage meter")
        .unwrap();
    assert_eq!(meters.length(), 3, "one per limit that is set");
    assert!(text_of(&root, ".use.full").contains("Messages, last hour"));
    click(&root, "#apps-table tbody button[data-act=limits]").await;
    assert!(text_of(&root, "#limits-title").contains("Bulk"));
    let value = |id: &str| input_value(&root, id);
    assert_eq!(value("limit-messages_per_hour"), "100");
    assert_eq!(value("limit-messages_per_day"), "", "no limit is empty");
    // Checked while typing, before anything is sent.
    type_into(&root, "limit-messages_per_hour", "0").await;
    assert!(
        text_of(&root, "#limits-form").contains("messages_per_hour must be"),
        "{}",
        root.inner_html()
    );
    type_into(&root, "limit-recipients_per_day", "lots").await;
    assert!(text_of(&root, "#limits-form").contains("Enter a whole number"));
    click(&root, "#save-limits").await;
    assert!(
        !requests().iter().any(|(r, _)| r.starts_with("PATCH")),
        "nothing invalid is sent"
    );
    type_into(&root, "limit-messages_per_hour", "500").await;
    type_into(&root, "limit-recipients_per_day", "10,000").await;
    assert!(!text_of(&root, "#limits-form").contains("must be"));
    click(&root, "#save-limits").await;
    let sent = last_body("PATCH /api/apps/app_1");
    assert_eq!(
        sent["limits"],
        json!({"messages_per_hour": 500, "messages_per_day": null, "recipients_per_day": 10000, "queued_max": 10000})
    );
    assert!(
        root.query_selector("#limits-form").unwrap().is_none(),
        "closed"
    );
    assert!(text_of(&root, ".banner.success").contains("limits of “Bulk” are saved"));
}

/// An app is edited in place: its name, From addresses and rewrite, checked
/// while typing with the new-app rules, sent as one `PATCH` (the key stays),
/// and the form is a new app's again once saved or cancelled.
#[wasm_bindgen_test]
async fn an_app_is_edited_in_place_with_checks_while_typing_and_keeps_its_key() {
    fake_api();
    let app = app_json("app_1", "Scanner");
    apps_routes(vec![app.clone()]);
    let billing = ["billing", "@", "contoso.com"].concat();
    let mut changed = app.clone();
    changed["name"] = json!("Scanner, 3rd floor");
    changed["allowed_from"] = json!([scans(), billing]);
    changed["rewrite_from"] = json!(true);
    route("PATCH /api/apps/app_1", 200, &changed);
    let root = mount_apps().await;
    assert_eq!(
        find(&root, "#apps-table tbody button[data-act=edit]")
            .get_attribute("aria-label")
            .as_deref(),
        Some("Edit Scanner")
    );
    click(&root, "#apps-table tbody button[data-act=edit]").await;
    assert_eq!(text_of(&root, "#new-app-title"), "Edit “Scanner”");
    assert_eq!(active_id(), "app-name", "the form takes the focus");
    assert!(text_of(&root, "#edit-app-help").contains("key stays the same"));
    assert!(root.query_selector("#create-app").unwrap().is_none());
    let value = |id: &str| input_value(&root, id);
    assert_eq!(value("app-name"), "Scanner");
    assert_eq!(value("app-allowed"), scans(), "filled in from the app");
    // The new-app rules, while typing, and nothing invalid is sent.
    type_into(
        &root,
        "app-allowed",
        &[scans().as_str(), ", billing@"].concat(),
    )
    .await;
    assert!(
        text_of(&root, "#new-app").contains("billing@"),
        "the bad address is named: {}",
        root.inner_html()
    );
    click(&root, "#save-app").await;
    assert!(!requests().iter().any(|(r, _)| r.starts_with("PATCH")));
    type_into(&root, "app-allowed", &[scans(), billing.clone()].join(", ")).await;
    type_into(&root, "app-name", "Scanner, 3rd floor").await;
    click(&root, "#app-rewrite").await;
    click(&root, "#save-app").await;
    let sent = last_body("PATCH /api/apps/app_1");
    assert_eq!(
        sent,
        json!({"name": "Scanner, 3rd floor", "allowed_from": [scans(), billing],
               "rewrite_from": true, "profile": "default"}),
        "everything but the limits, which keep theirs"
    );
    assert!(
        !requests().iter().any(|(r, _)| r.starts_with("POST")),
        "no new app"
    );
    assert!(text_of(&root, ".banner.success")
        .contains("“Scanner, 3rd floor” is saved; its key stays the same."));
    assert_eq!(text_of(&root, "#new-app-title"), "New app");
    assert_eq!(value("app-name"), "", "the form is a new app's again");

    // Cancelled, nothing is sent and the form is a new app's.
    click(&root, "#apps-table tbody button[data-act=edit]").await;
    type_into(&root, "app-name", "Other").await;
    click(&root, "#cancel-edit").await;
    assert_eq!(text_of(&root, "#new-app-title"), "New app");
    assert_eq!(
        requests()
            .iter()
            .filter(|(r, _)| r.starts_with("PATCH"))
            .count(),
        1
    );
    // Revoked while it is edited, the form is a new app's again.
    route("DELETE /api/apps/app_1", 204, &Value::Null);
    click(&root, "#apps-table tbody button[data-act=edit]").await;
    click(&root, "#apps-table tbody button[data-act=revoke]").await;
    click(&root, "#revoke-prompt-other").await;
    assert!(
        eventually(2000, || text_of(&root, "#new-app-title") == "New app").await,
        "{}",
        text_of(&root, "#new-app")
    );
}

/// The settings form with saved OAuth settings, where a test passes with `message`.
async fn form_with_passing_test(message: &str) -> Element {
    route_test_result(true, message);
    let root = fresh_root();
    yew::Renderer::<SettingsForm>::with_root_and_props(
        root.clone(),
        SettingsFormProps {
            initial: valid_initial(),
            on_unauthorized: Callback::noop(),
            on_saved: Callback::noop(),
            on_dirty: Callback::noop(),
        },
    )
    .render();
    settle().await;
    root
}

/// The JSON body of the last request of this kind (`METHOD /path`).
fn last_body(key: &str) -> Value {
    let (_, body) = requests()
        .into_iter()
        .rfind(|(r, _)| r == key)
        .unwrap_or_else(|| panic!("no {key}"));
    serde_json::from_str(&body).unwrap()
}

/// Sends a test email from the dialog (it passes), closes the dialog and
/// saves; answers the bodies of the last test and the last save.
async fn test_then_save(root: &Element) -> (Value, Value) {
    click(root, "#test-button").await;
    type_into(root, "recipient", &["admin", "@", "contoso.com"].concat()).await;
    click(root, "#test-dialog button[type=submit]").await;
    assert!(text_of(root, ".dialog .result").contains("Success"));
    // The passed test's next step, offered in the dialog.
    click(root, "#test-save").await;
    let last = |key: &str| -> Value {
        let (_, body) = requests().into_iter().rfind(|(r, _)| r == key).expect(key);
        serde_json::from_str(&body).unwrap()
    };
    (last("POST /api/settings/test"), last("PUT /api/settings"))
}

fn saved_routes() {
    route(
        "GET /api/settings/history",
        200,
        &json!({"changes": [
        {"version": 1, "at": "2026-11-20T09:00:00Z", "fields": ["tenant_id", "client_secret"]}]}),
    );
    route(
        "PUT /api/settings",
        200,
        &json!({"message": "The SMTP settings have been saved successfully", "version": 2}),
    );
}

#[wasm_bindgen_test]
async fn saving_untested_values_asks_first_and_a_passed_test_saves_straight_away() {
    fake_api();
    saved_routes();
    let root = form_with_passing_test("Accepted.").await;
    assert!(
        text_of(&root, ".history tbody").contains("tenant_id, client_secret"),
        "the history names fields: {}",
        text_of(&root, ".history")
    );

    click(&root, "#save-button").await;
    let dialog: web_sys::HtmlDialogElement = find(&root, "dialog#save-prompt").dyn_into().unwrap();
    assert!(dialog.open());
    assert!(text_of(&root, "#save-prompt-title").contains("Save without a successful test?"));
    assert_eq!(active_id(), "save-prompt-default", "Test is the default");
    assert!(
        !requests().iter().any(|(r, _)| r.starts_with("PUT")),
        "not saved yet"
    );

    // The default answer opens the test; a passed test makes Save go through.
    click(&root, "#save-prompt-default").await;
    assert!(root.query_selector("#save-prompt").unwrap().is_none());
    find(&root, "dialog#test-dialog");
    click(&root, "#test-dialog button[type=submit]").await;
    assert!(text_of(&root, ".dialog .result").contains("Success"));
    assert_eq!(text_of(&root, "#test-save"), "Save these settings");
    assert!(!requests().iter().any(|(r, _)| r.starts_with("PUT")));
    click(&root, "#test-close").await;
    click(&root, "#save-button").await;
    assert!(
        root.query_selector("#save-prompt").unwrap().is_none(),
        "tested: no question"
    );
    assert!(requests().iter().any(|(r, _)| r == "PUT /api/settings"));
    assert!(text_of(&root, ".banner.success").contains("saved successfully"));

    // Any change after the test asks again; "Save without testing" saves.
    type_into(&root, "sender_name", "Changed after the test").await;
    click(&root, "#save-button").await;
    find(&root, "dialog#save-prompt");
    let puts = || {
        requests()
            .iter()
            .filter(|(r, _)| r.starts_with("PUT"))
            .count()
    };
    assert_eq!(puts(), 1);
    click(&root, "#save-prompt-other").await;
    assert_eq!(puts(), 2, "saved without a test when asked to");

    let mut s = mailroom_shared::fixtures::office365_oauth("h", 587);
    assert!(needs_test_prompt(None, &s));
    let tested = s.clone();
    assert!(!needs_test_prompt(Some(&tested), &s));
    s.client_secret = Some("another".into());
    assert!(
        needs_test_prompt(Some(&tested), &s),
        "a new secret is untested"
    );
}

/// The test route answers a test that passed (or not) with `message`.
fn route_test_result(ok: bool, message: &str) {
    route(
        "POST /api/settings/test",
        200,
        &serde_json::to_value(mailroom_shared::api::TestResult {
            ok,
            stage: (!ok).then_some(mailroom_shared::api::Stage::Auth),
            code: (!ok).then(|| "535 5.7.3".into()),
            message: message.into(),
            hint: None,
            stages: Vec::new(),
            transcript: Vec::new(),
            token_claims: None,
        })
        .unwrap(),
    );
}

/// A passed test offers the save in its dialog, which closes and saves
/// what was tested; a failed one offers only to try again.
#[wasm_bindgen_test]
async fn a_passed_test_offers_the_save_and_a_failed_one_does_not() {
    fake_api();
    saved_routes();
    let root = form_with_passing_test("Accepted.").await;
    route_test_result(false, "Authentication unsuccessful.");
    click(&root, "#test-button").await;
    type_into(&root, "recipient", &["admin", "@", "contoso.com"].concat()).await;
    click(&root, "#test-dialog button[type=submit]").await;
    assert!(eventually(3000, || text_of(&root, ".dialog .result").contains("535")).await);
    assert!(root.query_selector("#test-save").unwrap().is_none());
    assert_eq!(text_of(&root, "#test-dialog button[type=submit]"), "Retry");
    click(&root, "#test-close").await;
    route_test_result(true, "Accepted.");
    let (test, save) = test_then_save(&root).await;
    assert_eq!(
        test["settings"], save["settings"],
        "what was tested is saved"
    );
    assert!(root
        .query_selector("dialog#test-dialog[open]")
        .unwrap()
        .is_none());
    assert!(text_of(&root, ".banner.success").contains("saved successfully"));
}

/// `GET /api/queue` as the server writes it (serde_json of the shared type).
/// The way out is a clear choice for Office 365 OAuth: Graph hides the SMTP
/// server, the checklist gives both correct ways to grant Mail.Send filled
/// in from the form (and warns that consent alone reaches every mailbox),
/// and the test and the save carry `"transport": "graph"`.
#[wasm_bindgen_test]
async fn choosing_graph_changes_the_form_and_the_checklist_and_tests_and_saves_it() {
    fake_api();
    saved_routes();
    let root = form_with_passing_test("Microsoft Graph accepted the test email.").await;
    assert!(text_of(&root, "#transport-graph-help").contains("535 5.7.139"));
    assert!(root.query_selector("#advanced").unwrap().is_some());
    click(&root, "#transport-graph").await;
    assert!(
        root.query_selector("#advanced").unwrap().is_none(),
        "no SMTP server with Graph"
    );
    assert!(text_of(&root, "#advanced-unused").contains("not used"));
    let client = mailroom_shared::fixtures::CLIENT;
    let rbac = text_of(&root, "#graph-way-rbac");
    assert!(
        rbac.contains(&format!(
            "New-ManagementRoleAssignment -App {client} -Role \"Application Mail.Send\""
        )) && rbac.contains(&mailroom_shared::fixtures::mailer()),
        "{rbac}"
    );
    assert!(text_of(&root, "#graph-way-policy")
        .contains(&format!("New-ApplicationAccessPolicy -AppId {client}")));
    assert!(text_of(&root, "#consent-warning").contains("every mailbox"));
    // The steps in the order they are done: the app and its credential,
    // then the choice between the two ways, right above them.
    let steps: Vec<String> = {
        let list = root
            .query_selector_all(".checklist > ol > li > h3")
            .unwrap();
        (0..list.length())
            .filter_map(|i| list.item(i)?.text_content())
            .collect()
    };
    assert_eq!(
        steps,
        [
            "Register the application",
            "Create a client secret",
            "Choose how the app may send: only as its mailbox",
            "Way 1 (recommended): RBAC for Applications, without Entra consent",
            "Way 2: Entra consent plus an Application Access Policy",
            "Keep the mailbox from filling up",
        ],
        "{steps:?}"
    );
    // The stored secret was saved for SMTP: it must be typed again for Graph.
    click(&root, "#save-button").await;
    assert!(
        text_of(&root, "#client_secret-error").contains("again"),
        "{}",
        text_of(&root, "#settings")
    );
    let secret = mailroom_shared::fixtures::SECRET;
    type_into(&root, "client_secret", secret).await;
    let (body, put) = test_then_save(&root).await;
    assert_eq!(body["settings"]["transport"], "graph", "{body}");
    assert_eq!(put["settings"]["transport"], "graph", "{put}");
    assert_eq!(put["settings"]["client_secret"], secret);
    // Back to another method: the way out goes back to SMTP by itself.
    click(&root, "#auth-password").await;
    assert!(root.query_selector("#transport").unwrap().is_none());
    assert!(root.query_selector("#advanced").unwrap().is_some());
}

fn cert_info(thumb: char) -> Value {
    serde_json::to_value(mailroom_shared::api::CertInfo {
        subject: "CN=Mailroom 2026-12-01".into(),
        thumbprint_sha1: thumb.to_string().repeat(40),
        thumbprint_sha256: thumb.to_string().repeat(64),
        not_before: "2026-12-01T00:00:00Z".into(),
        not_after: "2027-12-01T00:00:00Z".into(),
        generated: true,
    })
    .unwrap()
}

async fn type_into_area(root: &Element, id: &str, value: &str) {
    let area: web_sys::HtmlTextAreaElement = find(root, &["#", id].concat()).dyn_into().unwrap();
    area.set_value(value);
    let init = web_sys::EventInit::new();
    init.set_bubbles(true);
    area.dispatch_event(&web_sys::Event::new_with_event_init_dict("input", &init).unwrap())
        .unwrap();
    yew::scheduler::flush().await;
}

/// Choosing a certificate swaps the secret for the certificate panel:
/// generate one (its thumbprints, dates and download show), bring one with
/// the server's error next to the key, the checklist's upload step, and the
/// test and save carry `client_credential` without any secret.
#[wasm_bindgen_test]
async fn the_certificate_panel_generates_brings_and_the_form_tests_and_saves_with_it() {
    fake_api();
    saved_routes();
    route(
        "GET /api/settings/certificate",
        200,
        &json!({"active": null, "pending": null}),
    );
    let root = form_with_passing_test("Accepted with the certificate.").await;
    assert!(root.query_selector("#cert-panel").unwrap().is_none());
    assert!(root
        .query_selector("#client_secret_expires")
        .unwrap()
        .is_some());
    click(&root, "#client_credential-certificate").await;
    assert!(
        root.query_selector("#client_secret").unwrap().is_none(),
        "no secret with a certificate"
    );
    assert!(text_of(&root, "#cert-none").contains("No certificate yet"));
    assert!(text_of(&root, "#checklist-certificate").contains("Upload certificate"));
    // Save before any certificate: the field says what to do.
    click(&root, "#save-button").await;
    assert!(
        text_of(&root, "#client_credential-error").contains("Generate a certificate"),
        "{}",
        text_of(&root, "#settings")
    );
    route("POST /api/settings/certificate", 201, &cert_info('A'));
    route(
        "GET /api/settings/certificate",
        200,
        &json!({"active": null, "pending": cert_info('A')}),
    );
    click(&root, "#cert-generate").await;
    assert!(
        eventually(2000, || root
            .query_selector("#cert-pending")
            .unwrap()
            .is_some())
        .await,
        "{}",
        text_of(&root, "#cert-panel")
    );
    let pending = text_of(&root, "#cert-pending");
    assert!(
        pending.contains(&"A".repeat(40)) && pending.contains("made by Mailroom"),
        "{pending}"
    );
    assert_eq!(
        find(&root, "#cert-pending a")
            .get_attribute("href")
            .as_deref(),
        Some("api/settings/certificate.pem?which=pending")
    );
    assert!(text_of(&root, "#cert-pending-steps").contains("send a test email, then save"));
    // Discarding it asks first.
    route("DELETE /api/settings/certificate", 204, &Value::Null);
    keep_then_confirm(
        &root,
        "#cert-discard",
        "cert-discard-prompt",
        "Discard the new certificate?",
    )
    .await;
    assert!(
        requests()
            .iter()
            .any(|(r, _)| r == "DELETE /api/settings/certificate?which=pending"),
        "{:?}",
        requests()
    );
    assert!(
        text_of(&root, "#client_credential-error").is_empty(),
        "fixed by the new certificate"
    );
    // Bringing a mismatched pair: the server's words under the key.
    route(
        "POST /api/settings/certificate",
        422,
        &json!({"message": "The certificate is not usable.", "errors": {"private_key_pem": ["This private key does not belong to the certificate: their public keys differ."]}}),
    );
    click(&root, "#cert-own").await;
    // The key pasted in the certificate's box is named as it is pasted.
    type_into_area(&root, "certificate_pem", "-----BEGIN PRIVATE KEY-----\nMII").await;
    assert!(
        text_of(&root, "#certificate_pem-error")
            .starts_with("This is a private key, not the certificate"),
        "{}",
        text_of(&root, "#cert-panel")
    );
    type_into_area(&root, "certificate_pem", "-----BEGIN CERTIFICATE-----").await;
    assert!(text_of(&root, "#certificate_pem-error").is_empty());
    type_into_area(
        &root,
        "private_key_pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----",
    )
    .await;
    assert!(
        text_of(&root, "#private_key_pem-error").contains("encrypted with a passphrase"),
        "{}",
        text_of(&root, "#cert-panel")
    );
    type_into_area(&root, "private_key_pem", "-----BEGIN PRIVATE KEY-----").await;
    click(&root, "#cert-upload").await;
    assert!(
        eventually(2000, || text_of(&root, "#private_key_pem-error")
            .contains("does not belong"))
        .await,
        "{}",
        text_of(&root, "#cert-panel")
    );
    let body = last_body("POST /api/settings/certificate");
    assert_eq!(body["private_key_pem"], "-----BEGIN PRIVATE KEY-----");
    // The test and the save carry the certificate choice, never a secret.
    let (body, put) = test_then_save(&root).await;
    assert_eq!(
        body["settings"]["client_credential"], "certificate",
        "{body}"
    );
    assert!(body["settings"].get("client_secret").is_none(), "{body}");
    assert_eq!(put["settings"]["client_credential"], "certificate", "{put}");
    assert!(put["settings"].get("client_secret").is_none(), "{put}");
}

/// The secret's Expires date (a date picker, so only real dates) is saved
/// with the settings, for the warning 30 days before.
#[wasm_bindgen_test]
async fn the_secret_expiry_date_is_saved_with_the_settings() {
    fake_api();
    saved_routes();
    let root = form_with_passing_test("Accepted.").await;
    type_into(&root, "client_secret_expires", "2027-06-30").await;
    let (_, put) = test_then_save(&root).await;
    assert_eq!(
        put["settings"]["client_secret_expires"], "2027-06-30",
        "{put}"
    );
}

fn paused_queue(paused: bool) -> Value {
    use mailroom_shared::sending::{Paused, QueueState, Status};
    let q = QueueState {
        counts: [
            (Status::Queued, 4),
            (Status::Sending, 0),
            (Status::Sent, 10),
            (Status::Deferred, 1),
            (Status::Failed, 2),
            (Status::Cancelled, 0),
        ]
        .into(),
        paused: paused.then(|| Paused {
            since: "2026-11-26T10:00:00Z".into(),
            stage: mailroom_shared::api::Stage::Token,
            code: Some("AADSTS7000215".into()),
            message: "Microsoft refused the client secret.".into(),
            hint: Some("Paste the secret's Value, not its Secret ID: `New client secret` in Certificates & secrets.".into()),
        }),
        warnings: paused
            .then(|| {
                [
                    mailroom_shared::sending::Warning {
                        code: mailroom_shared::sending::CREDENTIAL_EXPIRING.into(),
                        message: "The client secret expires on 2026-12-20, in 19 days; after that, no mail goes out.".into(),
                        hint: "Make a new secret in Entra.".into(),
                        at: "2026-12-20T00:00:00Z".into(),
                        profile: Some("prf_b".into()),
                    },
                    mailroom_shared::sending::Warning {
                        code: mailroom_shared::sending::MAILBOX_SHARED.into(),
                        message: "Profiles “Default” and “Copy” both sign in as one mailbox.".into(),
                        hint: "Give each profile its own licensed mailbox.".into(),
                        at: "2026-12-01T00:00:00Z".into(),
                        profile: None,
                    },
                    mailroom_shared::sending::Warning {
                        code: mailroom_shared::sending::OLD_KEY_REFUSED.into(),
                        message: "App “Printers” was given a new key, but a device still signs in with its old key (last from 10.0.0.5 (relay)) and is refused: its mail never reaches Mailroom.".into(),
                        hint: "Give that device the app's new key.".into(),
                        at: "2026-12-07T15:00:00Z".into(),
                        profile: None,
                    },
                    mailroom_shared::sending::Warning {
                        code: mailroom_shared::sending::BASIC_AUTH_RETIRING.into(),
                        message: "Profile “Old printer”: Mailroom signs in to Office 365 with a password (basic authentication for SMTP AUTH), which Microsoft turns off by default for existing tenants at the end of December 2026, in 24 days.".into(),
                        hint: "Switch to OAuth 2.0 (Client Credentials) under Settings.".into(),
                        at: "2026-12-31T00:00:00Z".into(),
                        profile: Some("prf_old".into()),
                    },
                ]
            })
            .into_iter()
            .flatten()
            .collect(),
        profiles: Vec::new(),
    };
    serde_json::to_value(q).unwrap()
}

/// A profile that signs in with a password: its banner shows on every view
/// but the Settings of that profile, whose form's notice says the same with
/// Microsoft's dates (both showed, one above the other).
#[wasm_bindgen_test]
async fn the_password_banner_leaves_its_own_profiles_form_to_say_it() {
    let mut q = paused_queue(false);
    q["warnings"] = json!([mailroom_shared::sending::Warning {
        code: mailroom_shared::sending::BASIC_AUTH_RETIRING.into(),
        message: "Mailroom signs in to Office 365 with a password, which Microsoft turns off by default at the end of December 2026, in 24 days.".into(),
        hint: "Switch to OAuth 2.0 (Client Credentials) under Settings.".into(),
        at: "2026-12-31T00:00:00Z".into(),
        profile: Some("default".into()),
    }]);
    let root = mount_signed(&q).await;
    assert!(shows(&root, "#settings-title").await);
    assert!(
        root.query_selector("#basic-auth-warning")
            .unwrap()
            .is_none(),
        "the form of that profile says it"
    );
    web_sys::window()
        .unwrap()
        .location()
        .set_hash("#/activity")
        .unwrap();
    assert!(shows(&root, "#activity-title").await);
    assert!(
        shows(&root, "#basic-auth-warning").await,
        "elsewhere the banner says it"
    );
    assert!(text_of(&root, "#basic-auth-warning").contains("in 24 days"));
}

/// A pause that Mailroom's sign-in check found while idle: nothing waits,
/// and the banner says so instead of "0 messages are waiting".
#[wasm_bindgen_test]
async fn a_pause_with_nothing_waiting_says_new_messages_are_kept() {
    let mut q = paused_queue(true);
    q["warnings"] = json!([]);
    for status in ["queued", "deferred", "sending"] {
        q["counts"][status] = json!(0);
    }
    let root = mount_signed(&q).await;
    assert!(shows(&root, "#paused").await);
    let waiting = text_of(&root, "#paused .waiting");
    assert_eq!(
        waiting,
        "No message is waiting. New ones are kept, not bounced, and go out once the problem is fixed."
    );
}

#[wasm_bindgen_test]
async fn the_pause_banner_shows_on_every_view_and_clears_by_itself() {
    let root = mount_signed(&paused_queue(true)).await;
    let banner = text_of(&root, "#paused");
    assert!(banner.contains("Delivery is paused"), "{banner}");
    assert!(
        text_of(&root, "#credential-warning").contains("expires on 2026-12-20"),
        "the expiry warning shows on every view too"
    );
    // Each warning under its own heading: a shared mailbox is no expiring credential.
    assert!(text_of(&root, "#credential-warning h2").contains("credential expiring"));
    let shared = text_of(&root, "#mailbox-warning");
    assert!(
        shared.contains("Profiles share one mailbox") && shared.contains("both sign in as"),
        "{shared}"
    );
    assert!(!shared.contains("credential"), "{shared}");
    let retiring = text_of(&root, "#basic-auth-warning");
    assert!(
        retiring.contains("Password sign-in is being retired")
            && retiring.contains("in 24 days")
            && retiring.contains("Switch to OAuth 2.0"),
        "{retiring}"
    );
    assert!(
        banner.contains("token") && banner.contains("AADSTS7000215"),
        "{banner}"
    );
    assert!(
        banner.contains("Microsoft refused the client secret."),
        "{banner}"
    );
    assert!(
        banner.contains("5 messages are waiting"),
        "queued and deferred: {banner}"
    );
    assert!(text_of(&root, "#paused .command code").contains("New client secret"));
    assert!(
        root.query_selector("#paused a, #mailbox-warning a")
            .unwrap()
            .is_none(),
        "on the Settings view, no link to where the reader already is"
    );
    // A device on an app's replaced key: under its own heading, linking to
    // Apps (where the list names it), on the Settings view too.
    let old_key = text_of(&root, "#old-key-warning");
    assert!(
        old_key.contains("A device still uses an app's replaced key")
            && old_key.contains("last from 10.0.0.5 (relay)")
            && old_key.contains("Give that device the app's new key."),
        "{old_key}"
    );
    assert_eq!(
        find(&root, "#old-key-warning a")
            .get_attribute("href")
            .as_deref(),
        Some("#/apps")
    );
    // The credential is another profile's than the form edits: its link stays.
    assert_eq!(
        find(&root, "#credential-warning a")
            .get_attribute("href")
            .as_deref(),
        Some("#/settings?profile=prf_b")
    );

    // Other views: the banner stays; the navigation marks the view and moves the focus.
    web_sys::window()
        .unwrap()
        .location()
        .set_hash("#/activity")
        .unwrap();
    assert!(
        eventually(2000, || root
            .query_selector("#activity-title")
            .unwrap()
            .is_some())
        .await
    );
    assert!(root.query_selector("#paused").unwrap().is_some());
    // The pause is the default profile's: its link opens that profile's
    // settings, whichever profile the form edits.
    for (banner, link) in [
        ("#paused", "#/settings?profile=default"),
        // A credential's warning: its own profile's settings.
        ("#credential-warning", "#/settings?profile=prf_b"),
        ("#mailbox-warning", "#/settings"),
        ("#basic-auth-warning", "#/settings?profile=prf_old"),
    ] {
        assert_eq!(
            find(&root, &[banner, " a"].concat())
                .get_attribute("href")
                .as_deref(),
            Some(link),
            "elsewhere, each banner leads to the settings"
        );
    }
    assert_eq!(
        find(&root, "#nav-activity")
            .get_attribute("aria-current")
            .as_deref(),
        Some("page")
    );
    assert_eq!(
        find(&root, "#nav-settings").get_attribute("aria-current"),
        None
    );
    assert_eq!(active_id(), "activity-title");
    assert_eq!(text_of(&root, "#count-queued"), "4");
    assert_eq!(text_of(&root, "#count-failed"), "2");
    assert_eq!(
        web_sys::window().unwrap().document().unwrap().title(),
        "Mailroom · Activity"
    );
    let settings_hidden = find(&root, "#settings").closest("[hidden]").unwrap();
    assert!(
        settings_hidden.is_some(),
        "the form stays, hidden, keeping edits"
    );

    route("GET /api/queue", 200, &paused_queue(false));
    assert!(
        eventually(8000, || root.query_selector("#paused").unwrap().is_none()).await,
        "the next poll clears the banner"
    );
    assert!(root
        .query_selector("#credential-warning")
        .unwrap()
        .is_none());
    web_sys::window()
        .unwrap()
        .location()
        .set_hash("#/settings")
        .unwrap();
    settle().await;
}

/// The fake API answers `GET /api/messages/{id}` of `d`'s message with `d`.
fn route_details(d: &mailroom_shared::sending::Details) {
    route(
        &format!("GET /api/messages/{}", d.summary.id),
        200,
        &serde_json::to_value(d).unwrap(),
    );
}

async fn mount_activity() -> Element {
    mount_activity_with(None, "").await
}

/// Activity with the queue's state (its profiles, its counts), opened at
/// `hash` (`""`: none).
async fn mount_activity_with(
    queue: Option<mailroom_shared::sending::QueueState>,
    hash: &str,
) -> Element {
    let root = fresh_root_at(hash);
    yew::Renderer::<Activity>::with_root_and_props(
        root.clone(),
        ActivityProps {
            queue,
            on_unauthorized: Callback::noop(),
            on_changed: Callback::noop(),
        },
    )
    .render();
    settle().await;
    root
}

/// An app's message count links to Activity filtered to it
/// (`#/activity?app=…`); opened so, Activity lists that app's messages, and
/// the address follows the filter as it changes.
#[wasm_bindgen_test]
async fn an_apps_message_count_opens_activity_filtered_to_it() {
    fake_api();
    apps_routes(vec![
        app_json("app_1", "Scanner"),
        app_json("app_2", "Billing"),
    ]);
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [], "next": null}),
    );
    let root = mount_apps().await;
    let link = find(&root, "#apps-table a[href='#/activity?app=app_2']");
    assert_eq!(
        link.get_attribute("aria-label").as_deref(),
        Some("Messages of Billing: 3")
    );
    let root = mount_activity_with(None, "/activity?app=app_2").await;
    let location = web_sys::window().unwrap().location();
    assert!(
        requests()
            .iter()
            .any(|(r, _)| r == "GET /api/messages?limit=50&app=app_2"),
        "{:?}",
        requests()
    );
    let chosen = || -> String {
        find(&root, "#app-filter")
            .dyn_into::<web_sys::HtmlSelectElement>()
            .unwrap()
            .value()
    };
    assert_eq!(chosen(), "app_2");
    choose(&root, "app-filter", "app_1").await;
    assert_eq!(location.hash().unwrap(), "#/activity?app=app_1");
    choose(&root, "app-filter", "").await;
    assert_eq!(location.hash().unwrap(), "#/activity");
    // An app that is no longer listed (revoked, or a trusted network's
    // address) is shown as the filter, not as "All apps".
    let root = mount_activity_with(None, "/activity?app=trusted%20network%2010.0.0.5").await;
    assert!(
        requests()
            .iter()
            .any(|(r, _)| r == "GET /api/messages?limit=50&app=trusted%20network%2010.0.0.5"),
        "{:?}",
        requests()
    );
    let chosen = find(&root, "#app-filter")
        .dyn_into::<web_sys::HtmlSelectElement>()
        .unwrap();
    assert_eq!(chosen.value(), "trusted network 10.0.0.5");
}

/// Activity filters by app, and by profile when there are several; the bulk
/// retry takes the same filter, so it retries no other app's mail.
#[wasm_bindgen_test]
async fn activity_filters_by_app_and_profile_and_retries_only_what_it_shows() {
    fake_api();
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [summary("msg_2", "failed", "Invoice 7")], "next": null}),
    );
    apps_routes(vec![
        app_json("app_1", "Scanner"),
        app_json("app_2", "Billing"),
    ]);
    route(
        "POST /api/messages/retry",
        200,
        &json!({"retried": 1, "skipped": 0, "more": false}),
    );
    let root = mount_activity_with(serde_json::from_value(two_profiles_queue()).unwrap(), "").await;
    let options = text_of(&root, "#app-filter");
    assert!(
        options.contains("All apps") && options.contains("Scanner") && options.contains("Billing"),
        "{options}"
    );
    choose(&root, "status-filter", "failed").await;
    choose(&root, "app-filter", "app_2").await;
    choose(&root, "profile-filter", "prf_b").await;
    type_into(&root, "search", "Invoice").await;
    settle().await;
    let paths: Vec<String> = requests().into_iter().map(|(r, _)| r).collect();
    assert!(
        paths
            .iter()
            .any(|p| p
                == "GET /api/messages?limit=50&status=failed&q=Invoice&app=app_2&profile=prf_b"),
        "{paths:?}"
    );
    assert_eq!(
        text_of(&root, "#retry-all"),
        "Retry all failed of “Billing” via “Fabrikam” matching the search"
    );
    click(&root, "#retry-all").await;
    assert!(
        requests().iter().any(|(r, _)| r
            == "POST /api/messages/retry?status=failed&q=Invoice&app=app_2&profile=prf_b"),
        "{:?}",
        requests()
    );
    // Back to every app: the others stay as chosen.
    choose(&root, "app-filter", "").await;
    assert!(
        requests()
            .iter()
            .any(|(r, _)| r == "GET /api/messages?limit=50&status=failed&q=Invoice&profile=prf_b"),
        "{:?}",
        requests()
    );
    assert_eq!(
        text_of(&root, "#retry-all"),
        "Retry all failed via “Fabrikam” matching the search"
    );
}

/// A SUMMARY as the server writes it (serde_json of the shared type).
fn summary_of(id: &str, status: &str, subject: &str) -> mailroom_shared::sending::Summary {
    use mailroom_shared::sending::{LastError, Status, Summary};
    let status = Status::from_name(status).unwrap();
    Summary {
        id: id.into(),
        app: Some("app_1".into()),
        from: ["mailer", "@", "contoso.com"].concat(),
        to: vec![
            ["a", "@", "example.org"].concat(),
            ["b", "@", "example.org"].concat(),
        ],
        subject: subject.into(),
        size: 812,
        status,
        created_at: "2026-11-26T10:00:00Z".into(),
        updated_at: "2026-11-26T10:01:00Z".into(),
        attempt_count: 1,
        profile: "default".into(),
        last_error: (status == Status::Failed).then(|| LastError {
            stage: mailroom_shared::api::Stage::Send,
            code: Some("5.1.1".into()),
            message: "The recipient does not exist.".into(),
        }),
    }
}

fn summary(id: &str, status: &str, subject: &str) -> Value {
    serde_json::to_value(summary_of(id, status, subject)).unwrap()
}

#[wasm_bindgen_test]
async fn activity_filters_searches_pages_and_shows_details_with_retry() {
    fake_api();
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [summary("msg_2", "failed", "Invoice 7"), summary("msg_1", "sent", "Ticket 42")], "next": "msg_1"}),
    );
    let details = {
        use mailroom_shared::sending::{Attempt, Details, RecipientState, Status};
        serde_json::to_value(Details {
            summary: summary_of("msg_2", "failed", "Invoice 7"),
            recipients: vec![RecipientState {
                address: ["a", "@", "example.org"].concat(),
                status: Status::Failed,
                code: Some("5.1.1".into()),
                message: Some("550 5.1.1 User unknown".into()),
            }],
            attempts: vec![Attempt {
                at: "2026-11-26T10:01:00Z".into(),
                ok: false,
                stage: Some(mailroom_shared::api::Stage::Send),
                code: Some("5.1.1".into()),
                message: "The recipient does not exist.".into(),
                hint: Some("Check the address for typos.".into()),
                transport: Some(mailroom_shared::Transport::Graph),
            }],
            next_attempt_at: None,
            message_id: None,
        })
        .unwrap()
    };
    route("GET /api/messages/msg_2", 200, &details);
    route(
        "POST /api/messages/msg_2/retry",
        200,
        &summary("msg_2", "queued", "Invoice 7"),
    );
    let root = mount_activity().await;
    let first = text_of(&root, "#row-msg_2");
    assert!(
        first.contains("failed")
            && first.contains("Invoice 7")
            && first.contains("5.1.1 The recipient does not exist."),
        "{first}"
    );
    assert!(
        first.contains("+1"),
        "the first recipient and how many more: {first}"
    );
    assert!(text_of(&root, "#messages thead").contains("Last error"));

    let select: web_sys::HtmlSelectElement = find(&root, "#status-filter").dyn_into().unwrap();
    select.set_value("failed");
    let init = web_sys::EventInit::new();
    init.set_bubbles(true);
    select
        .dispatch_event(&web_sys::Event::new_with_event_init_dict("change", &init).unwrap())
        .unwrap();
    settle().await;
    // The box stops where the server would refuse the search (400 on `q`).
    assert_eq!(
        find(&root, "#search").get_attribute("maxlength").as_deref(),
        Some(mailroom_shared::sending::MAX_SEARCH.to_string().as_str())
    );
    type_into(&root, "search", "Invoice 7").await;
    settle().await;
    click(&root, "#load-more").await;
    let paths: Vec<String> = requests().into_iter().map(|(r, _)| r).collect();
    assert!(
        paths
            .iter()
            .any(|p| p == "GET /api/messages?limit=50&status=failed"),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p == "GET /api/messages?limit=50&status=failed&q=Invoice%207"),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p == "GET /api/messages?limit=50&status=failed&q=Invoice%207&before=msg_1"),
        "{paths:?}"
    );

    click(&root, "#row-msg_2 button.open").await;
    assert_eq!(
        find(&root, "#row-msg_2 button.open")
            .get_attribute("aria-expanded")
            .as_deref(),
        Some("true")
    );
    let panel = text_of(&root, "#details-msg_2");
    assert!(
        panel.contains("550 5.1.1 User unknown"),
        "each recipient's reply: {panel}"
    );
    assert!(
        panel.contains("Stage: send") && panel.contains("Check the address for typos."),
        "{panel}"
    );
    assert!(
        panel.contains("via Microsoft Graph (sendMail)"),
        "the attempt names its way out: {panel}"
    );
    assert!(
        root.query_selector("#cancel-message").unwrap().is_none(),
        "a failed message cannot be cancelled"
    );
    let retry: HtmlElement = find(&root, "#retry-message").dyn_into().unwrap();
    retry.focus().unwrap();
    assert_eq!(active_id(), "retry-message");
    click(&root, "#retry-message").await;
    assert!(requests()
        .iter()
        .any(|(r, _)| r == "POST /api/messages/msg_2/retry"));
    assert!(
        text_of(&root, "#row-msg_2").contains("queued"),
        "the row shows the new status"
    );
    assert_eq!(
        active_id(),
        "retry-message",
        "the table was written again, and the focus is back where it was"
    );
}

/// A link opens its message in Activity (a webhook post's, a copied
/// address): the filter it names, the message's details in its row or, when
/// the list does not show it, above the list, with the focus on it; the
/// address follows what is open. A message whose record is gone says so,
/// and a value that is no message id requests nothing.
#[wasm_bindgen_test]
async fn a_link_opens_its_message_with_the_filter_it_names() {
    use mailroom_shared::sending::Details;
    fake_api();
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [summary("msg_2", "failed", "Invoice 7")], "next": null}),
    );
    let details_of = |id: &str, subject: &str| Details {
        summary: summary_of(id, "failed", subject),
        recipients: vec![],
        attempts: vec![],
        next_attempt_at: None,
        message_id: None,
    };
    route_details(&details_of("msg_9", "Payslip 3"));
    route_details(&details_of("msg_2", "Invoice 7"));
    route(
        "POST /api/messages/msg_9/retry",
        200,
        &summary("msg_9", "queued", "Payslip 3"),
    );
    let location = web_sys::window().unwrap().location();

    // An older message, not in the list: shown above it, focused.
    let root = mount_activity_with(
        None,
        "/activity?status=failed&q=Invoice%207&app=app_1&message=msg_9",
    )
    .await;
    let paths: Vec<String> = requests().into_iter().map(|(r, _)| r).collect();
    assert!(
        paths
            .iter()
            .any(|p| p == "GET /api/messages?limit=50&status=failed&q=Invoice%207&app=app_1"),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p == "GET /api/messages/msg_9"),
        "{paths:?}"
    );
    assert_eq!(
        find(&root, "#status-filter")
            .dyn_into::<web_sys::HtmlSelectElement>()
            .unwrap()
            .value(),
        "failed"
    );
    assert_eq!(input_value(&root, "search"), "Invoice 7");
    let card = text_of(&root, "#linked-message");
    assert!(
        card.contains("msg_9") && card.contains("Payslip 3") && card.contains("Retry now"),
        "{card}"
    );
    assert_eq!(active_id(), "linked-title");
    assert_eq!(
        find(&root, "#linked-message")
            .get_attribute("aria-labelledby")
            .as_deref(),
        Some("linked-title"),
        "a region named by its title"
    );
    click(&root, "#linked-message #retry-message").await;
    assert!(requests()
        .iter()
        .any(|(r, _)| r == "POST /api/messages/msg_9/retry"));
    click(&root, "#close-linked").await;
    assert!(root.query_selector("#linked-message").unwrap().is_none());
    assert_eq!(
        location.hash().unwrap(),
        "#/activity?status=failed&q=Invoice%207&app=app_1",
        "a closed message leaves the address"
    );
    // Opening a row puts it in the address.
    click(&root, "#row-msg_2 button.open").await;
    assert_eq!(
        location.hash().unwrap(),
        "#/activity?status=failed&q=Invoice%207&app=app_1&message=msg_2"
    );

    // A message the list shows: in its row, focused; no card.
    let root = mount_activity_with(None, "/activity?message=msg_2").await;
    assert!(text_of(&root, "#details-msg_2").contains("Invoice 7"));
    assert!(root.query_selector("#linked-message").unwrap().is_none());
    assert_eq!(active_id(), "open-msg_2");

    // Followed in the same tab while Activity shows: that message opens.
    location.set_hash("#/activity?message=msg_9").unwrap();
    assert!(
        eventually(3000, || root
            .query_selector("#linked-message")
            .unwrap()
            .is_some_and(|c| c
                .text_content()
                .unwrap_or_default()
                .contains("Payslip 3")))
        .await,
        "{}",
        root.inner_html()
    );

    // A message whose record is gone: why, in its place.
    route(
        "GET /api/messages/msg_gone",
        404,
        &json!({"message": "There is no message “msg_gone”."}),
    );
    let root = mount_activity_with(None, "/activity?message=msg_gone").await;
    let why = text_of(&root, "#linked-message .error");
    assert!(
        why.contains("There is no message “msg_gone”.") && why.contains("--retention"),
        "{why}"
    );

    // A webhook post's link for one profile (`delivery.resumed`) filters by
    // it, and says so, though the profiles are not known yet.
    let root = mount_activity_with(None, "/activity?profile=prf_b").await;
    assert_eq!(
        find(&root, "#profile-filter")
            .dyn_into::<web_sys::HtmlSelectElement>()
            .unwrap()
            .value(),
        "prf_b"
    );

    // No request for what is no message id, nor for a status the queue has not.
    let before = requests().len();
    let root = mount_activity_with(None, "/activity?status=bogus&message=..%2Fsettings").await;
    let later: Vec<String> = requests()[before..]
        .iter()
        .map(|(r, _)| r.clone())
        .collect();
    // (Earlier mounts may poll meanwhile, each with its own filter.)
    assert!(
        later.iter().any(|r| r == "GET /api/messages?limit=50")
            && !later
                .iter()
                .any(|r| r.contains("bogus") || r.contains("settings") || r.contains("..")),
        "{later:?}"
    );
    assert!(root.query_selector("#linked-message").unwrap().is_none());
    location.set_hash("").unwrap();
}

/// An app's name in a row filters the list to that app, keeping the rest of
/// the filter: the way to a trusted network's messages (its address is no
/// app, so the app filter does not list it).
#[wasm_bindgen_test]
async fn an_apps_name_in_a_row_filters_the_list_to_it() {
    fake_api();
    let mut row = summary_of("msg_1", "failed", "Scan 12");
    row.app = Some("trusted network 10.0.0.5".into());
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [row], "next": null}),
    );
    let root = mount_activity_with(None, "/activity?status=failed").await;
    let link = find(&root, "#row-msg_1 a.app-link");
    assert_eq!(
        link.get_attribute("href").as_deref(),
        Some("#/activity?status=failed&app=trusted%20network%2010.0.0.5")
    );
    assert_eq!(
        link.text_content().as_deref(),
        Some("trusted network 10.0.0.5")
    );
    click(&root, "#row-msg_1 a.app-link").await;
    assert!(
        eventually(3000, || requests().iter().any(|(r, _)| {
            r == "GET /api/messages?limit=50&status=failed&app=trusted%20network%2010.0.0.5"
        }))
        .await,
        "{:?}",
        requests()
    );
    assert!(
        eventually(3000, || find(&root, "#app-filter")
            .dyn_into::<web_sys::HtmlSelectElement>()
            .unwrap()
            .value()
            == "trusted network 10.0.0.5")
        .await
    );
    assert!(
        root.query_selector("#row-msg_1 a.app-link")
            .unwrap()
            .is_none(),
        "filtered to it: its name is no link"
    );
    web_sys::window().unwrap().location().set_hash("").unwrap();
}

/// A webhook post about an app's limit links to Apps with that app's
/// limits open (`#/apps?limits=app_…`), focused; an id that names no app
/// opens nothing.
#[wasm_bindgen_test]
async fn a_link_opens_an_apps_limits() {
    fake_api();
    apps_routes(vec![
        app_json("app_1", "Scanner"),
        app_json("app_2", "Billing"),
    ]);
    let root = mount_apps_at("#/apps?limits=app_2", Vec::new()).await;
    assert!(
        text_of(&root, "#limits-title").contains("Limits of “Billing”"),
        "{}",
        text_of(&root, "#limits-title")
    );
    assert_eq!(active_id(), "limit-messages_per_hour");
    let root = mount_apps_at("#/apps?limits=app_9", Vec::new()).await;
    assert!(root.query_selector("#limits-form").unwrap().is_none());
    web_sys::window().unwrap().location().set_hash("").unwrap();
}

/// Hostile values where this page reads names and the address: an app's
/// name in the filter's options is text, never markup; an app in the hash
/// that smuggles another parameter goes to the server as one encoded value,
/// and one that is not valid percent-encoding is no filter at all.
#[wasm_bindgen_test]
async fn hostile_app_names_and_hashes_stay_values() {
    fake_api();
    let hostile = "<img src=x onerror=\"window.__owned=1\"> & Co";
    apps_routes(vec![app_json("app_1", hostile)]);
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [], "next": null}),
    );
    let root = mount_activity_with(None, "/activity?app=x%26status%3Dfailed").await;
    assert!(root.query_selector("#app-filter img").unwrap().is_none());
    assert!(
        text_of(&root, "#app-filter").contains(hostile),
        "shown as typed"
    );
    assert!(
        requests()
            .iter()
            .any(|(r, _)| r == "GET /api/messages?limit=50&app=x%26status%3Dfailed"),
        "{:?}",
        requests()
    );
    let owned = js_sys::Reflect::get(&web_sys::window().unwrap(), &"__owned".into()).unwrap();
    assert!(owned.is_undefined(), "nothing ran");
    mount_activity_with(None, "/activity?app=%E0%A4%A").await;
    assert!(
        requests()
            .iter()
            .rfind(|(r, _)| r.starts_with("GET /api/messages?"))
            .is_some_and(|(r, _)| r == "GET /api/messages?limit=50"),
        "{:?}",
        requests()
    );
}

#[wasm_bindgen_test]
async fn data_in_the_activity_table_is_text_never_markup() {
    fake_api();
    let hostile = "<img src=x onerror=\"window.__owned=1\"> & \"quoted\" 'single'";
    let mut row = summary("msg_9", "sent", hostile);
    row["from"] = json!(hostile);
    row["app"] = json!("\"><script>window.__owned=1</script>");
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [row], "next": null}),
    );
    let root = mount_activity().await;
    assert!(root
        .query_selector("#messages img, #messages script")
        .unwrap()
        .is_none());
    assert_eq!(
        text_of(&root, "#row-msg_9 button.open"),
        hostile,
        "shown as typed"
    );
    assert!(text_of(&root, "#row-msg_9").contains("\"><script>"));
    let owned = js_sys::Reflect::get(&web_sys::window().unwrap(), &"__owned".into()).unwrap();
    assert!(owned.is_undefined(), "nothing ran");
    assert_eq!(
        mailroom_frontend::markup::esc("<a href=\"x\">&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
    );
}

#[wasm_bindgen_test]
async fn a_run_of_the_same_failure_is_shown_once_with_its_count_and_span() {
    use mailroom_shared::api::Stage;
    use mailroom_shared::sending::{Attempt, Details};
    fake_api();
    let row = summary("msg_5", "queued", "Weekly report");
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [row], "next": null}),
    );
    let attempt = |at: &str, stage: Stage, message: &str| Attempt {
        at: at.into(),
        ok: false,
        stage: Some(stage),
        code: None,
        message: message.into(),
        hint: Some("Check this server's DNS.".into()),
        transport: Some(mailroom_shared::Transport::Smtp),
    };
    let unresolved = "The login host could not be resolved.";
    // A paused profile's probes: the same failure each minute, then another
    // one, then the first again (not merged across the other).
    let mut attempts: Vec<Attempt> = (0..40)
        .map(|i| {
            let at = format!("2026-11-28T10:{i:02}:00Z");
            attempt(&at, Stage::Token, unresolved)
        })
        .collect();
    attempts.push(attempt("2026-11-28T10:45:00Z", Stage::Connect, "Refused."));
    attempts.push(attempt("2026-11-28T10:46:00Z", Stage::Token, unresolved));
    attempts.push(attempt("2026-11-28T10:47:00Z", Stage::Token, unresolved));
    let details = Details {
        summary: summary_of("msg_5", "queued", "Weekly report"),
        recipients: Vec::new(),
        attempts,
        next_attempt_at: None,
        message_id: None,
    };
    route_details(&details);
    let root = mount_activity().await;
    click(&root, "#row-msg_5 button.open").await;
    let items = root
        .query_selector_all("#details-msg_5 .attempts li")
        .unwrap();
    assert_eq!(items.length(), 3, "40 of one, 1 of another, 2 of the first");
    let text = |i: u32| {
        items
            .get(i)
            .and_then(|n| n.text_content())
            .unwrap_or_default()
    };
    let first = text(0);
    assert!(
        first.contains("Failed · 40 times, from") && first.contains(unresolved),
        "{first}"
    );
    assert_eq!(first.matches(unresolved).count(), 1, "said once: {first}");
    let times = datetimes(&root, "#details-msg_5 .attempts li:first-child time");
    assert_eq!(
        times,
        ["2026-11-28T10:00:00Z", "2026-11-28T10:39:00Z"],
        "the run's first and last time"
    );
    let single = text(1);
    assert!(
        single.contains("Refused.") && !single.contains("times"),
        "{single}"
    );
    assert!(text(2).contains("2 times"), "{}", text(2));
}

/// The `datetime` of each `<time>` that `selector` finds, in order.
fn datetimes(root: &Element, selector: &str) -> Vec<String> {
    let t = root.query_selector_all(selector).unwrap();
    (0..t.length())
        .filter_map(|i| t.get(i))
        .filter_map(|n| n.dyn_into::<Element>().ok())
        .filter_map(|e| e.get_attribute("datetime"))
        .collect()
}

/// A deferred message's details say when it is tried next; other
/// messages' say nothing of it. A message's Message-ID shows with where it
/// finds the message; one stored before it was kept shows none.
#[wasm_bindgen_test]
async fn a_deferred_messages_details_say_when_it_is_tried_next() {
    use mailroom_shared::sending::Details;
    fake_api();
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [summary("msg_7", "deferred", "Invoice 9"), summary("msg_6", "sent", "Ticket 1")], "next": null}),
    );
    let header = format!("<invoice-9@{}>", "contoso.com");
    for (id, status, next, message_id) in [
        (
            "msg_7",
            "deferred",
            Some("2026-11-28T10:05:00Z"),
            Some(header.clone()),
        ),
        ("msg_6", "sent", None, None),
    ] {
        route_details(&Details {
            summary: summary_of(id, status, "x"),
            recipients: Vec::new(),
            attempts: Vec::new(),
            next_attempt_at: next.map(str::to_string),
            message_id,
        });
    }
    let root = mount_activity().await;
    click(&root, "#row-msg_7 button.open").await;
    let pairs = text_of(&root, "#details-msg_7 .pairs");
    assert!(pairs.contains("Next try"), "{pairs}");
    let times = datetimes(&root, "#details-msg_7 .pairs time");
    assert_eq!(
        times.last().map(String::as_str),
        Some("2026-11-28T10:05:00Z"),
        "{times:?}"
    );
    assert_eq!(
        text_of(&root, "#details-msg_7 .pairs .message-id code"),
        header
    );
    assert!(pairs.contains("Message trace"), "{pairs}");
    // Copied for message trace's search, as a command is.
    let copy = find(&root, "#details-msg_7 .message-id button.copy");
    assert_eq!(
        copy.get_attribute("aria-label").as_deref(),
        Some("Copy the Message-ID")
    );
    click(&root, "#details-msg_7 .message-id button.copy").await;
    assert_eq!(
        text_of(&root, "#details-msg_7 .message-id button.copy"),
        "Copied"
    );
    click(&root, "#row-msg_6 button.open").await;
    let pairs = text_of(&root, "#details-msg_6 .pairs");
    assert!(
        pairs.contains("Queued") && !pairs.contains("Next try") && !pairs.contains("Message-ID"),
        "{pairs}"
    );
}

#[wasm_bindgen_test]
fn views_follow_the_hash() {
    assert_eq!(View::from_hash("#/apps"), View::Apps);
    assert_eq!(View::from_hash("#/activity/"), View::Activity);
    assert_eq!(View::from_hash(""), View::Settings);
    assert_eq!(View::from_hash("#/nonsense"), View::Settings);
    assert_eq!(View::from_hash("#/activity?app=app_1"), View::Activity);
    for v in View::ALL {
        assert_eq!(View::from_hash(v.hash()), v);
    }
}

/// Adds `hook` from the panel as the server makes it, until its secret shows.
async fn add_webhook_until_its_secret_shows(
    root: &Element,
    hook: &mailroom_shared::webhooks::Webhook,
) {
    route(
        "POST /api/webhooks",
        201,
        &json!({"webhook": hook, "secret": "whsec_c2VjcmV0LXNob3duLW9uY2U="}),
    );
    type_into(root, "webhook-url", &hook.url).await;
    click(root, "#webhook-add").await;
    assert!(shows(root, "#webhook-secret").await);
}

/// Whether `css` is on the page within 3 s.
async fn shows(root: &Element, css: &str) -> bool {
    eventually(3000, || root.query_selector(css).unwrap().is_some()).await
}

/// The webhooks panel alone, as Settings shows it below the form.
async fn mount_webhooks() -> Element {
    use mailroom_frontend::components::webhooks::{Webhooks, WebhooksProps};
    let root = fresh_root();
    yew::Renderer::<Webhooks>::with_root_and_props(
        root.clone(),
        WebhooksProps {
            on_unauthorized: Callback::noop(),
        },
    )
    .render();
    settle().await;
    root
}

/// A Teams webhook `wh_1` as the server answers it once made; the list
/// of webhooks is empty until then.
fn teams_hook_and_no_webhooks() -> mailroom_shared::webhooks::Webhook {
    use mailroom_shared::webhooks::{Format, Webhook, WebhookList};
    route(
        "GET /api/webhooks",
        200,
        &serde_json::to_value(WebhookList::default()).unwrap(),
    );
    Webhook {
        id: "wh_1".into(),
        url: "https://contoso.webhook.office.com/hook".into(),
        events: vec!["delivery.paused".into(), "message.failed".into()],
        format: Format::Teams,
        created_at: "2026-12-01T10:00:00Z".into(),
        last_success_at: None,
        last_failure_at: None,
        old_secret_until: None,
    }
}

/// A signed (Standard) webhook `wh_2`, otherwise as `teams`.
fn standard_hook_beside(
    teams: &mailroom_shared::webhooks::Webhook,
) -> mailroom_shared::webhooks::Webhook {
    mailroom_shared::webhooks::Webhook {
        id: "wh_2".into(),
        url: "https://ops.contoso.com/hooks".into(),
        format: mailroom_shared::webhooks::Format::Standard,
        ..teams.clone()
    }
}

/// The Webhooks panel under Settings: a wrong URL is explained while typing,
/// adding one shows its secret once and lists it, a test shows the
/// receiver's answer, and the deliveries show each try.
#[wasm_bindgen_test]
async fn the_webhooks_panel_adds_tests_and_shows_deliveries() {
    use mailroom_shared::webhooks::{Delivery, DeliveryList, WebhookList};
    fake_api();
    let hook = teams_hook_and_no_webhooks();
    let root = mount_webhooks().await;
    assert!(text_of(&root, "#webhooks-heading").contains("webhooks"));
    type_into(&root, "webhook-url", "http://hooks.example.com/x").await;
    click(&root, "#webhook-add").await;
    assert!(
        text_of(&root, "#webhook-url-error").contains("Use https"),
        "{}",
        text_of(&root, "#webhooks")
    );
    assert!(
        !requests().iter().any(|(r, _)| r == "POST /api/webhooks"),
        "nothing sent"
    );
    route(
        "POST /api/webhooks",
        201,
        &json!({"webhook": hook, "secret": "whsec_c2VjcmV0LXNob3duLW9uY2U="}),
    );
    route(
        "GET /api/webhooks",
        200,
        &serde_json::to_value(WebhookList {
            webhooks: vec![hook.clone()],
        })
        .unwrap(),
    );
    // A Slack incoming webhook's URL with the default format: named as it
    // is typed, and nothing is sent.
    let slack = ["https://hooks.slack.com", "/services/T0/B0/XYZ"].concat();
    type_into(&root, "webhook-url", &slack).await;
    assert!(
        text_of(&root, "#webhook-format-error").contains("choose the Slack format"),
        "{}",
        text_of(&root, "#webhooks")
    );
    click(&root, "#webhook-add").await;
    assert!(
        !requests().iter().any(|(r, _)| r == "POST /api/webhooks"),
        "nothing sent"
    );
    type_into(&root, "webhook-url", &hook.url).await;
    assert_eq!(text_of(&root, "#webhook-format-error"), "");
    // A Teams URL with the Standard format: advice, not a refusal.
    assert!(
        text_of(&root, "#webhook-format-warning").contains("takes the Teams format"),
        "{}",
        text_of(&root, "#webhooks")
    );
    click(&root, "#webhook-event-delivery-resumed").await;
    let select: web_sys::HtmlSelectElement = find(&root, "#webhook-format").dyn_into().unwrap();
    select.set_value("teams");
    select
        .dispatch_event(&web_sys::Event::new("change").unwrap())
        .unwrap();
    settle().await;
    assert!(root
        .query_selector("#webhook-format-warning")
        .unwrap()
        .is_none());
    let holding = mailroom_frontend::hooks::before_unload::holders();
    click(&root, "#webhook-add").await;
    assert!(
        eventually(2000, || text_of(&root, "#webhook-secret")
            .contains("whsec_c2VjcmV0"))
        .await,
        "{}",
        text_of(&root, "#webhooks")
    );
    // Shown once: with a copy button, and leaving the page asks until it
    // is said copied.
    assert_eq!(
        find(&root, "#webhook-secret button.copy")
            .get_attribute("aria-label")
            .as_deref(),
        Some("Copy the signing secret")
    );
    assert_eq!(
        mailroom_frontend::hooks::before_unload::holders(),
        holding + 1
    );
    click(&root, "#webhook-secret-done").await;
    assert!(root.query_selector("#webhook-secret").unwrap().is_none());
    assert_eq!(mailroom_frontend::hooks::before_unload::holders(), holding);
    assert_eq!(active_id(), "webhook-url");
    let body = last_body("POST /api/webhooks");
    assert_eq!(body["url"], hook.url.as_str());
    assert_eq!(body["format"], "teams", "{body}");
    assert_eq!(
        body["events"],
        json!(["delivery.paused", "message.failed", "credential.expiring"]),
        "the defaults without the unticked one: {body}"
    );
    assert!(
        eventually(2000, || text_of(&root, ".webhook")
            .contains("contoso.webhook.office.com"))
        .await
    );
    route(
        "POST /api/webhooks/wh_1/test",
        200,
        &json!({"ok": false, "status": 500, "message": "https://contoso.webhook.office.com/hook did not take the test event: HTTP 500."}),
    );
    click(&root, ".webhook-test").await;
    assert!(
        eventually(2000, || text_of(&root, ".webhook-result")
            .contains("HTTP 500"))
        .await,
        "{}",
        text_of(&root, ".webhook")
    );
    let deliveries = DeliveryList {
        deliveries: vec![Delivery {
            id: "msg_1".into(),
            event: "delivery.paused".into(),
            at: "2026-12-01T10:05:00Z".into(),
            attempts: 3,
            status: "pending".into(),
            last_status: Some(502),
            last_error: Some("HTTP 502".into()),
        }],
    };
    route(
        "GET /api/webhooks/wh_1/deliveries",
        200,
        &serde_json::to_value(deliveries).unwrap(),
    );
    click(&root, ".webhook-deliveries").await;
    assert!(
        eventually(2000, || text_of(&root, ".deliveries").contains("HTTP 502")).await,
        "{}",
        text_of(&root, ".webhook")
    );
    assert!(text_of(&root, ".deliveries").contains("pending"));

    // Edited in the same form, filled in with its URL, events and format;
    // saved as one PATCH (its secret stays), then the form is a new one's.
    route(
        "PATCH /api/webhooks/wh_1",
        200,
        &serde_json::to_value(&hook).unwrap(),
    );
    click(&root, ".webhook-edit").await;
    assert!(text_of(&root, "#webhook-editing").contains("wh_1"));
    assert_eq!(active_id(), "webhook-url", "the form takes the focus");
    assert!(root.query_selector("#webhook-add").unwrap().is_none());
    assert_eq!(input_value(&root, "webhook-url"), hook.url);
    let checked = |id: &str| {
        find(&root, &["#webhook-event-", id].concat())
            .dyn_into::<HtmlInputElement>()
            .unwrap()
            .checked()
    };
    assert!(checked("delivery-paused") && checked("message-failed"));
    assert!(
        !checked("delivery-resumed") && !checked("credential-expiring"),
        "its events, not a new one's"
    );
    let format = || -> String {
        find(&root, "#webhook-format")
            .dyn_into::<web_sys::HtmlSelectElement>()
            .unwrap()
            .value()
    };
    assert_eq!(format(), "teams");
    click(&root, "#webhook-event-message-deferred").await;
    click(&root, "#webhook-save").await;
    let body = last_body("PATCH /api/webhooks/wh_1");
    assert_eq!(body["url"], hook.url.as_str(), "{body}");
    assert_eq!(body["format"], "teams", "{body}");
    let mut events: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    events.sort_unstable();
    assert_eq!(
        events,
        ["delivery.paused", "message.deferred", "message.failed"]
    );
    assert!(
        eventually(2000, || text_of(&root, "#webhook-saved")
            .contains("signing secret stays the same"))
        .await,
        "{}",
        text_of(&root, "#webhooks")
    );
    assert!(root.query_selector("#webhook-add").unwrap().is_some());
    assert_eq!(input_value(&root, "webhook-url"), "");
    assert!(
        root.query_selector(".webhook-result, .deliveries")
            .unwrap()
            .is_none(),
        "the last test and deliveries were the webhook's before the change: {}",
        text_of(&root, ".webhook")
    );
    assert!(checked("credential-expiring"), "a new one's again");
    assert_eq!(format(), "standard");
    assert!(
        !requests()
            .iter()
            .any(|(r, _)| r == "DELETE /api/webhooks/wh_1"),
        "edited, not made again"
    );
    // Delete asks first, naming the receiver; deleted while it is edited,
    // the form is a new one's again.
    route("DELETE /api/webhooks/wh_1", 204, &Value::Null);
    click(&root, ".webhook-edit").await;
    assert!(root.query_selector("#webhook-editing").unwrap().is_some());
    keep_then_confirm(&root, ".webhook-delete", "webhook-delete-prompt", &hook.url).await;
    assert!(requests()
        .iter()
        .any(|(r, _)| r == "DELETE /api/webhooks/wh_1"));
    assert!(
        eventually(2000, || root
            .query_selector("#webhook-editing")
            .unwrap()
            .is_none())
        .await,
        "{}",
        text_of(&root, "#webhooks")
    );
}

/// `GET /api/queue` with two profiles: the default one and "Fabrikam",
/// paused and near its daily limit (docs/API.md §15).
fn two_profiles_queue() -> Value {
    use mailroom_shared::profiles::{ProfileLimits, ProfileState, ProfileUsage};
    use mailroom_shared::sending::{Paused, QueueState};
    let profile = |id: &str, name: &str, used: u64, paused: bool| ProfileState {
        id: id.into(),
        name: name.into(),
        paused: paused.then(|| Paused {
            since: "2026-12-01T10:00:00Z".into(),
            stage: mailroom_shared::api::Stage::Token,
            code: Some("AADSTS7000215".into()),
            message: "Microsoft refused the client secret.".into(),
            hint: Some("Paste the secret's Value.".into()),
        }),
        usage: ProfileUsage {
            recipients_today: used,
            messages_last_minute: 0,
        },
        limits: ProfileLimits {
            recipients_per_day: Some(10_000),
            ..ProfileLimits::default()
        },
    };
    serde_json::to_value(QueueState {
        counts: Default::default(),
        paused: None,
        warnings: Vec::new(),
        profiles: vec![
            profile("default", "Default", 120, false),
            profile("prf_b", "Fabrikam", 9_500, true),
        ],
    })
    .unwrap()
}

/// What choosing "Fabrikam" reads: its settings (`settings`), an empty
/// history and no certificate.
fn profile_b_routes(settings: &Value) {
    route("GET /api/profiles/prf_b/settings", 200, settings);
    route(
        "GET /api/profiles/prf_b/history",
        200,
        &json!({"changes": []}),
    );
    route(
        "GET /api/profiles/prf_b/certificate",
        200,
        &json!({"active": null, "pending": null}),
    );
}

async fn mount_signed_with_profiles() -> Element {
    mount_signed(&two_profiles_queue()).await
}

/// The signed-in page on Settings, `GET /api/queue` answering `queue`.
async fn mount_signed(queue: &Value) -> Element {
    mount_signed_at(queue, "#/settings", &[]).await
}

thread_local! {
    /// The signed-in page these tests mounted last: the next mount ends it,
    /// so no page of an earlier test follows the address or polls.
    static SIGNED: std::cell::RefCell<Option<yew::AppHandle<Signed>>> =
        const { std::cell::RefCell::new(None) };
}

/// The signed-in page opened at `hash`, after `more` routes are set up.
async fn mount_signed_at(queue: &Value, hash: &str, more: &[fn()]) -> Element {
    if let Some(page) = SIGNED.with(|s| s.borrow_mut().take()) {
        page.destroy();
        settle().await;
    }
    end_apps().await;
    fake_api();
    for f in more {
        f();
    }
    saved_routes();
    apps_routes(vec![]);
    route("GET /api/queue", 200, queue);
    route(
        "GET /api/messages",
        200,
        &json!({"messages": [], "next": null}),
    );
    let root = fresh_root_at(hash);
    let page = yew::Renderer::<Signed>::with_root_and_props(
        root.clone(),
        SignedProps {
            initial: valid_initial(),
            on_unauthorized: Callback::noop(),
            on_signed_out: Callback::noop(),
        },
    )
    .render();
    SIGNED.with(|s| *s.borrow_mut() = Some(page));
    settle().await;
    root
}

async fn choose(root: &Element, id: &str, value: &str) {
    let select: web_sys::HtmlSelectElement = find(root, &["#", id].concat()).dyn_into().unwrap();
    select.set_value(value);
    let init = web_sys::EventInit::new();
    init.set_bubbles(true);
    select
        .dispatch_event(&web_sys::Event::new_with_event_init_dict("change", &init).unwrap())
        .unwrap();
    settle().await;
}

#[wasm_bindgen_test]
async fn the_profile_switcher_draws_each_profiles_day_and_edits_the_chosen_one() {
    let root = mount_signed_with_profiles().await;
    route(
        "GET /api/settings",
        200,
        &serde_json::to_value(valid_initial()).unwrap(),
    );
    let options = root.query_selector_all("#profile-select option").unwrap();
    assert_eq!(options.length(), 3, "two profiles and New profile…");
    // Drawn, not only written: a meter of recipients against the limit.
    let meter = find(&root, "#usage-prf_b meter");
    assert_eq!(meter.get_attribute("value").as_deref(), Some("9500"));
    assert_eq!(meter.get_attribute("max").as_deref(), Some("10000"));
    assert!(text_of(&root, "#usage-prf_b").contains("9,500 of 10,000 recipients in 24 hours"));
    assert!(text_of(&root, "#usage-prf_b").contains("paused"));
    assert_eq!(
        find(&root, "#usage-default meter")
            .get_attribute("value")
            .as_deref(),
        Some("120")
    );
    // The other profile's pause has its own banner, naming it; the default is not paused.
    assert!(root.query_selector("#paused").unwrap().is_none());
    assert!(root
        .text_content()
        .unwrap()
        .contains("Delivery is paused for the profile “Fabrikam”"));

    // Switching loads that profile's settings into the form.
    profile_b_settings();
    choose(&root, "profile-select", "prf_b").await;
    let tenant: HtmlInputElement = find(&root, "#tenant_id").dyn_into().unwrap();
    assert_eq!(tenant.value(), mailroom_shared::fixtures::TENANT_B);
    assert!(requests()
        .iter()
        .any(|(r, _)| r == "GET /api/profiles/prf_b/history"));

    // Rename: checked while typing, then PATCHed.
    type_into(&root, "profile-rename", &"x".repeat(65)).await;
    assert!(text_of(&root, "#profile-error").contains("too long"));
    assert!(find(&root, "#profile-rename-button").has_attribute("disabled"));
    route("PATCH /api/profiles/prf_b", 200, &json!({}));
    type_into(&root, "profile-rename", "Fabrikam billing").await;
    click(&root, "#profile-rename-button").await;
    let patched = requests()
        .into_iter()
        .find(|(r, _)| r == "PATCH /api/profiles/prf_b")
        .expect("a PATCH");
    assert!(
        patched.1.contains("\"name\":\"Fabrikam billing\""),
        "{}",
        patched.1
    );

    // Delete asks first, naming the profile.
    route("DELETE /api/profiles/prf_b", 204, &Value::Null);
    keep_then_confirm(
        &root,
        "#profile-delete",
        "profile-delete-prompt",
        "Delete the profile “Fabrikam”?",
    )
    .await;
    assert!(requests()
        .iter()
        .any(|(r, _)| r == "DELETE /api/profiles/prf_b"));

    // A new profile: a name checked while typing; the next save adds it.
    choose(&root, "profile-select", "").await;
    type_into(&root, "profile-name", "  ").await;
    assert!(text_of(&root, "#profile-name-error").contains("Give the profile a name"));
    type_into(&root, "profile-name", "Contoso sales").await;
    assert_eq!(text_of(&root, "#profile-name-error"), "");
    assert_eq!(
        mailroom_frontend::api::new_profile().as_deref(),
        Some("Contoso sales")
    );
    choose(&root, "profile-select", "default").await;
    assert_eq!(mailroom_frontend::api::new_profile(), None);
    assert_eq!(
        mailroom_frontend::api::profile_path("/test"),
        "/api/settings/test"
    );
}

/// The second profile's settings, as `GET /api/profiles/prf_b/settings`
/// answers them (Fabrikam's tenant).
fn profile_b_settings() {
    let mut b = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
    b.tenant_id = Some(mailroom_shared::fixtures::TENANT_B.into());
    let response = mailroom_shared::api::SettingsResponse {
        settings: Some(mailroom_shared::api::PublicSettings::new(
            b,
            mailroom_shared::StoredSecrets {
                client_secret: true,
                ..Default::default()
            },
        )),
        version: 4,
        updated_at: None,
    };
    profile_b_routes(&serde_json::to_value(&response).unwrap());
}

/// Unsaved edits are never dropped by choosing another profile: the page
/// asks first, and keeping them leaves the form, the switcher and the
/// address as they were. The address names the profile edited
/// (`#/settings?profile=…`), and a link naming one (a pause banner's, a
/// webhook post's, a reload) opens that profile's settings.
#[wasm_bindgen_test]
async fn unsaved_edits_ask_before_another_profile_and_links_name_the_profile() {
    let root = mount_signed_at(&two_profiles_queue(), "#/settings", &[profile_b_settings]).await;
    route(
        "GET /api/settings",
        200,
        &serde_json::to_value(valid_initial()).unwrap(),
    );
    let location = web_sys::window().unwrap().location();
    let tenant = || input_value(&root, "tenant_id");
    let typed = "11111111-2222-3333-4444-555555555555";
    type_into(&root, "tenant_id", typed).await;
    choose(&root, "profile-select", "prf_b").await;
    let said = asked(&root, "profile-switch-prompt");
    assert!(
        said.contains("Discard your unsaved changes?")
            && said.contains("The settings of “Default” have changes")
            && said.contains("Editing “Fabrikam” instead discards them."),
        "{said}"
    );
    assert!(!requests()
        .iter()
        .any(|(r, _)| r == "GET /api/profiles/prf_b/settings"));
    click(&root, "#profile-switch-prompt-default").await;
    assert!(root
        .query_selector("#profile-switch-prompt")
        .unwrap()
        .is_none());
    assert_eq!(tenant(), typed, "the edit is kept");
    let chosen = || {
        find(&root, "#profile-select")
            .dyn_into::<web_sys::HtmlSelectElement>()
            .unwrap()
            .value()
    };
    assert_eq!(chosen(), "default", "the switcher shows the profile edited");
    assert_eq!(location.hash().unwrap(), "#/settings");

    // Discarding them switches; the address names the profile.
    choose(&root, "profile-select", "prf_b").await;
    click(&root, "#profile-switch-prompt-other").await;
    assert_eq!(tenant(), mailroom_shared::fixtures::TENANT_B);
    assert_eq!(location.hash().unwrap(), "#/settings?profile=prf_b");
    // Its own pause banner has no link while its form shows.
    assert!(root
        .query_selector("a[href='#/settings?profile=prf_b']")
        .unwrap()
        .is_none());
    // Nothing unsaved: back to the default without a question.
    choose(&root, "profile-select", "default").await;
    assert!(root
        .query_selector("#profile-switch-prompt")
        .unwrap()
        .is_none());
    assert_eq!(tenant(), mailroom_shared::fixtures::TENANT);
    assert_eq!(location.hash().unwrap(), "#/settings");
    // Fabrikam's pause banner leads to Fabrikam's settings.
    click(&root, "a[href='#/settings?profile=prf_b']").await;
    assert!(
        eventually(3000, || tenant() == mailroom_shared::fixtures::TENANT_B).await,
        "{}",
        tenant()
    );
    // With unsaved edits, a link asks as the switcher does.
    type_into(&root, "tenant_id", typed).await;
    location.set_hash("#/settings?profile=default").unwrap();
    assert!(
        eventually(3000, || root
            .query_selector("#profile-switch-prompt")
            .unwrap()
            .is_some())
        .await
    );
    click(&root, "#profile-switch-prompt-default").await;
    assert_eq!(tenant(), typed);
    assert_eq!(location.hash().unwrap(), "#/settings?profile=prf_b");

    // Opened at a profile's address (a reload, a webhook post's link).
    let root = mount_signed_at(
        &two_profiles_queue(),
        "#/settings?profile=prf_b",
        &[profile_b_settings],
    )
    .await;
    assert!(
        eventually(3000, || input_value(&root, "tenant_id")
            == mailroom_shared::fixtures::TENANT_B)
        .await
    );
    assert_eq!(location.hash().unwrap(), "#/settings?profile=prf_b");

    // A link to a profile that is gone: the form keeps editing the default,
    // and its calls still go there. One whose value is no id asks nothing.
    let root = mount_signed_at(&two_profiles_queue(), "#/settings?profile=prf_gone", &[]).await;
    assert!(requests()
        .iter()
        .any(|(r, _)| r == "GET /api/profiles/prf_gone/settings"));
    assert_eq!(
        input_value(&root, "tenant_id"),
        mailroom_shared::fixtures::TENANT
    );
    assert_eq!(
        mailroom_frontend::api::profile_path("/test"),
        "/api/settings/test"
    );
    // (The mount starts the fake's record afresh.)
    mount_signed_at(&two_profiles_queue(), "#/settings?profile=..%2Fx", &[]).await;
    // `/api/profiles/../x/settings` would reach `/api/x/settings`.
    assert!(
        !requests()
            .iter()
            .any(|(r, _)| r.contains("/api/x/") || r.contains("/api/profiles/")),
        "{:?}",
        requests()
    );
    assert_eq!(mailroom_frontend::api::profile_path(""), "/api/settings");
    location.set_hash("#/settings").unwrap();
}

fn logouts() -> usize {
    requests()
        .iter()
        .filter(|(r, _)| r == "POST /api/logout")
        .count()
}

/// *Sign out* from Activity, answered *Keep editing*: nothing is sent, and
/// Settings shows again. Returns the question's words.
async fn sign_out_from_activity_then_keep(root: &Element) -> String {
    let location = web_sys::window().unwrap().location();
    location.set_hash("#/activity").unwrap();
    assert!(
        eventually(3000, || root
            .query_selector("#activity-title")
            .unwrap()
            .is_some())
        .await
    );
    click(root, "header.top button.link").await;
    let said = asked(root, "sign-out-prompt");
    click(root, "#sign-out-prompt-default").await;
    assert_eq!(logouts(), 0, "kept");
    assert!(
        eventually(3000, || location.hash().unwrap() == "#/settings").await,
        "{}",
        location.hash().unwrap()
    );
    said
}

/// Signing out with unsaved changes asks first (the form goes with the
/// page); keeping them shows the form that holds them, from any view.
#[wasm_bindgen_test]
async fn signing_out_with_unsaved_changes_asks_first() {
    let root = mount_signed(&two_profiles_queue()).await;
    route("POST /api/logout", 204, &Value::Null);
    let typed = "11111111-2222-3333-4444-555555555555";
    type_into(&root, "tenant_id", typed).await;
    let said = sign_out_from_activity_then_keep(&root).await;
    assert!(
        said.contains("The settings of “Default” have changes"),
        "{said}"
    );
    assert_eq!(input_value(&root, "tenant_id"), typed);
    click(&root, "header.top button.link").await;
    click(&root, "#sign-out-prompt-other").await;
    assert_eq!(logouts(), 1);
}

#[wasm_bindgen_test]
async fn a_profiles_limits_are_checked_and_explained_while_typing_then_patched() {
    let root = mount_signed_with_profiles().await;
    // The limits as set: the queue's daily limit is the one in force.
    route(
        "GET /api/profiles/default",
        200,
        &json!({"id": "default", "name": "Default", "settings": null, "version": 1,
            "limits": {"recipients_per_day": null, "messages_per_minute": 20, "connections": null},
            "usage": {"recipients_today": 0, "messages_last_minute": 0}, "paused": null}),
    );
    assert!(root
        .query_selector("#profile-limits-form")
        .unwrap()
        .is_none());
    click(&root, "#profile-limits-button").await;
    let value = |id: &str| {
        find(&root, &["#profile-limit-", id].concat())
            .dyn_into::<HtmlInputElement>()
            .unwrap()
    };
    assert_eq!(value("messages_per_minute").value(), "20");
    assert_eq!(value("recipients_per_day").value(), "");
    assert_eq!(
        value("recipients_per_day").placeholder(),
        "Default: 10,000",
        "the provider's default, as the saved settings are Office 365"
    );
    // Checked while typing: out of range, and not a number.
    type_into(&root, "profile-limit-connections", "0").await;
    assert!(
        text_of(&root, "#profile-limit-connections-error").contains("from 1 to 32"),
        "{}",
        text_of(&root, "#profile-limits-form")
    );
    assert!(find(&root, "#profile-limits-save").has_attribute("disabled"));
    type_into(&root, "profile-limit-recipients_per_day", "lots").await;
    assert!(text_of(&root, "#profile-limit-recipients_per_day-error").contains("whole number"));
    // Allowed, but past Exchange's: explained, not refused.
    type_into(&root, "profile-limit-connections", "8").await;
    type_into(&root, "profile-limit-recipients_per_day", "5,000").await;
    assert_eq!(text_of(&root, "#profile-limit-connections-error"), "");
    assert!(text_of(&root, "#profile-limit-connections-warning").contains("432 4.3.2"));
    assert!(!find(&root, "#profile-limits-save").has_attribute("disabled"));
    // The server's refusal is shown under the form, which stays open.
    route(
        "PATCH /api/profiles/default",
        422,
        &json!({"message": "The limits are not valid.",
            "errors": {"limits": ["connections must be a whole number from 1 to 32, or empty for the provider's default."]}}),
    );
    click(&root, "#profile-limits-save").await;
    settle().await;
    assert!(
        text_of(&root, "#profile-limits-error").contains("connections must be"),
        "{}",
        text_of(&root, "#profiles-title")
    );
    assert!(root
        .query_selector("#profile-limits-form")
        .unwrap()
        .is_some());
    route("PATCH /api/profiles/default", 200, &json!({}));
    let queue_reads = || {
        requests()
            .iter()
            .filter(|(r, _)| r == "GET /api/queue")
            .count()
    };
    let before = queue_reads();
    click(&root, "#profile-limits-save").await;
    settle().await;
    let patched = requests()
        .into_iter()
        .find(|(r, _)| r == "PATCH /api/profiles/default")
        .expect("a PATCH");
    let body: Value = serde_json::from_str(&patched.1).unwrap();
    assert_eq!(
        body,
        json!({"limits": {"recipients_per_day": 5000, "messages_per_minute": 20, "connections": 8}})
    );
    assert!(root
        .query_selector("#profile-limits-form")
        .unwrap()
        .is_none());
    assert!(text_of(&root, "#profile-limits-notice").contains("The limits of “Default” are saved."));
    assert!(queue_reads() > before, "the usage bars are read again");
    assert_eq!(
        text_of(&root, "#profile-limits-error"),
        "",
        "the refusal is gone"
    );
    // Cancel closes the form and sends nothing.
    click(&root, "#profile-limits-button").await;
    click(&root, "#profile-limits-cancel").await;
    assert!(root
        .query_selector("#profile-limits-form")
        .unwrap()
        .is_none());
    let patches = requests()
        .iter()
        .filter(|(r, _)| r == "PATCH /api/profiles/default")
        .count();
    assert_eq!(patches, 2, "the refused one and the saved one");
    // Open, then another profile chosen: the form was this profile's.
    click(&root, "#profile-limits-button").await;
    assert!(root
        .query_selector("#profile-limits-form")
        .unwrap()
        .is_some());
    profile_b_routes(&json!({"settings": null, "version": 0, "updated_at": null}));
    choose(&root, "profile-select", "prf_b").await;
    assert!(root
        .query_selector("#profile-limits-form")
        .unwrap()
        .is_none());
    assert_eq!(text_of(&root, "#profile-limits-notice"), "");
}

#[wasm_bindgen_test]
async fn a_new_app_chooses_its_profile_when_there_are_several() {
    fake_api();
    apps_routes(vec![]);
    let root = mount_apps_on_two_profiles().await;
    route(
        "POST /api/apps",
        201,
        &json!({"app": app_json("app_9", "Billing scanner"), "key": "mr_x"}),
    );
    type_into(&root, "app-name", "Billing scanner").await;
    choose(&root, "app-profile", "prf_b").await;
    click(&root, "#create-app").await;
    let created = requests()
        .into_iter()
        .find(|(r, _)| r == "POST /api/apps")
        .expect("a POST");
    assert!(created.1.contains("\"profile\":\"prf_b\""), "{}", created.1);
}

/// The From addresses an app may use besides the mailbox's own come with
/// the Send-As line each needs, filled in for the chosen profile's mailbox;
/// none for the mailbox's own address, an address not valid yet, or a
/// provider without Send-As.
#[wasm_bindgen_test]
async fn the_app_form_gives_the_send_as_line_each_other_from_address_needs() {
    fake_api();
    apps_routes(vec![]);
    let settings =
        serde_json::to_value(mailroom_shared::fixtures::office365_oauth("localhost", 587)).unwrap();
    let mailer = settings["username"].as_str().unwrap().to_string();
    let mut gmail = settings.clone();
    gmail["provider"] = json!("gmail");
    route(
        "GET /api/profiles",
        200,
        &json!({"profiles": [
            {"id": "default", "name": "Default", "settings": settings},
            {"id": "prf_b", "name": "Fabrikam", "settings": gmail},
        ]}),
    );
    let root = mount_apps_on_two_profiles().await;
    assert!(root.query_selector("#app-send-as").unwrap().is_none());
    let billing = ["billing", "@", "contoso.com"].concat();
    let typed = [mailer.as_str(), &billing, &scans()].join(", ");
    type_into(&root, "app-allowed", &typed).await;
    let lines = text_of(&root, "#app-send-as");
    assert!(
        lines.contains(&format!(
            "Add-RecipientPermission -Identity \"{billing}\" -Trustee \"{mailer}\" -AccessRights SendAs"
        )),
        "{lines}"
    );
    assert!(
        lines.contains(&format!("-Identity \"{}\"", scans())),
        "{lines}"
    );
    assert!(
        !lines.contains(&format!("-Identity \"{mailer}\"")),
        "the mailbox's own address needs none: {lines}"
    );
    type_into(&root, "app-allowed", "billing@").await;
    assert!(root.query_selector("#app-send-as").unwrap().is_none());
    type_into(&root, "app-allowed", &billing).await;
    assert!(root.query_selector("#app-send-as").unwrap().is_some());
    // The other profile sends through Gmail, which has no Send-As.
    choose(&root, "app-profile", "prf_b").await;
    assert!(root.query_selector("#app-send-as").unwrap().is_none());
}

/// Edited, an app shows the profile it is on and moves to another.
#[wasm_bindgen_test]
async fn an_edited_app_shows_its_profile_and_moves_to_another() {
    fake_api();
    let mut app = app_json("app_9", "Billing scanner");
    app["profile"] = json!("prf_b");
    apps_routes(vec![app.clone()]);
    route("PATCH /api/apps/app_9", 200, &app);
    let root = mount_apps_on_two_profiles().await;
    let select =
        || -> web_sys::HtmlSelectElement { find(&root, "#app-profile").dyn_into().unwrap() };
    assert_eq!(select().value(), "default", "a new app's");
    click(&root, "#apps-table tbody button[data-act=edit]").await;
    assert_eq!(select().value(), "prf_b", "the app's own");
    choose(&root, "app-profile", "default").await;
    click(&root, "#save-app").await;
    assert_eq!(last_body("PATCH /api/apps/app_9")["profile"], "default");
}

/// Types the second tenant's app and mailbox into the form (and `secret`).
async fn type_second_tenant(root: &Element, secret: Option<&str>) {
    type_into(root, "tenant_id", mailroom_shared::fixtures::TENANT_B).await;
    type_into(root, "client_id", mailroom_shared::fixtures::CLIENT_B).await;
    if let Some(secret) = secret {
        type_into(root, "client_secret", secret).await;
    }
    let billing = mailroom_shared::fixtures::billing();
    type_into(root, "username", &billing).await;
    type_into(root, "sender_name", "Fabrikam").await;
    type_into(root, "sender_email", &billing).await;
}

/// A new profile uses nothing of the profile chosen before it (whose
/// routes are still the page's until the first save): no history, no
/// certificate panel of its; a certificate is refused while typing with the
/// way to get one, so no test signs with the other profile's certificate.
#[wasm_bindgen_test]
async fn a_new_profile_uses_nothing_of_the_profile_before_it() {
    let root = mount_signed_with_profiles().await;
    route(
        "GET /api/settings/certificate",
        200,
        &json!({"active": cert_info('A'), "pending": cert_info('B')}),
    );
    let before = requests().len();
    choose(&root, "profile-select", "").await;
    settle().await;
    let read: Vec<String> = requests()[before..]
        .iter()
        .map(|(r, _)| r.clone())
        .collect();
    assert!(
        !read
            .iter()
            .any(|r| r.contains("/history") || r.contains("/certificate")),
        "{read:?}"
    );
    assert!(
        text_of(&root, ".history").contains("Nothing saved yet"),
        "{}",
        text_of(&root, ".history")
    );
    click(&root, "#client_credential-certificate").await;
    assert!(
        text_of(&root, "#cert-new-profile")
            .contains("save this new profile with a client secret first"),
        "{}",
        text_of(&root, "#cert-panel")
    );
    assert!(root.query_selector("#cert-generate").unwrap().is_none());
    assert!(root.query_selector("#cert-active").unwrap().is_none());
    type_into(&root, "profile-name", "Fabrikam").await;
    type_second_tenant(&root, None).await;
    click(&root, "#test-button").await;
    assert!(
        text_of(&root, "#client_credential-error").contains("client secret first"),
        "{}",
        text_of(&root, "#settings")
    );
    assert!(
        root.query_selector("#recipient").unwrap().is_none(),
        "no test dialog"
    );
    // With a secret instead, the form is valid again.
    click(&root, "#client_credential-secret").await;
    type_into(&root, "client_secret", mailroom_shared::fixtures::SECRET_B).await;
    assert_eq!(text_of(&root, "#client_credential-error"), "");
    choose(&root, "profile-select", "default").await;
}

#[wasm_bindgen_test]
async fn a_new_profile_is_added_by_its_first_save_and_then_edited() {
    let root = mount_signed_with_profiles().await;
    choose(&root, "profile-select", "").await;
    assert_eq!(
        input_value(&root, "tenant_id"),
        "",
        "a new profile starts from an empty form"
    );
    // A save without a name is refused by the server, naming the field.
    route(
        "POST /api/profiles",
        422,
        &json!({"message": "The profile is not valid.", "errors": {"name": ["Give the profile a name, for example the mailbox or the customer it sends for."]}}),
    );
    type_second_tenant(&root, Some(mailroom_shared::fixtures::SECRET_B)).await;
    click(&root, "#save-button").await;
    click(&root, "#save-prompt-other").await;
    assert!(
        text_of(&root, ".banner.error").contains("The new profile's name"),
        "{}",
        text_of(&root, ".banner.error")
    );
    // Named: the POST carries the name and the settings, then the form edits it.
    type_into(&root, "profile-name", "Fabrikam").await;
    route(
        "POST /api/profiles",
        201,
        &json!({"id": "prf_new", "name": "Fabrikam", "settings": null, "version": 1,
                "limits": {}, "usage": {}, "paused": null}),
    );
    let mut saved = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
    saved.tenant_id = Some(mailroom_shared::fixtures::TENANT_B.into());
    route(
        "GET /api/profiles/prf_new/settings",
        200,
        &json!({"settings": saved, "version": 1, "updated_at": null}),
    );
    route(
        "GET /api/profiles/prf_new/history",
        200,
        &json!({"changes": []}),
    );
    click(&root, "#save-button").await;
    if root.query_selector("#save-prompt-other").unwrap().is_some() {
        click(&root, "#save-prompt-other").await;
    }
    let posted = requests()
        .into_iter()
        .rfind(|(r, _)| r == "POST /api/profiles")
        .expect("a POST");
    let body: Value = serde_json::from_str(&posted.1).unwrap();
    assert_eq!(body["name"], "Fabrikam");
    assert_eq!(
        body["settings"]["tenant_id"],
        mailroom_shared::fixtures::TENANT_B
    );
    assert_eq!(
        body["settings"]["client_secret"],
        mailroom_shared::fixtures::SECRET_B
    );
    assert!(
        eventually(2000, || mailroom_frontend::api::profile() == "prf_new").await,
        "the saved profile is the edited one now"
    );
    assert_eq!(mailroom_frontend::api::new_profile(), None);
    assert!(
        eventually(2000, || requests()
            .iter()
            .any(|(r, _)| r == "GET /api/profiles/prf_new/settings"))
        .await
    );
    // Back to the default profile for the tests after this one.
    choose(&root, "profile-select", "default").await;
}

/// Apps stays mounted once opened: a new key not yet marked as copied and
/// what is typed in its forms are there on coming back from another view,
/// the apps are read again, leaving the page or signing out asks first, and
/// its passing notice does not wait hidden for another view.
#[wasm_bindgen_test]
async fn a_new_key_and_typing_in_apps_survive_a_view_change() {
    let root = mount_signed_at(&paused_queue(false), "#/activity", &[]).await;
    let key = "mr_0123456789abcdefghijklmnopqrstuv";
    apps_routes(vec![app_json("app_1", "Scanner")]);
    route(
        "POST /api/apps",
        201,
        &json!({"app": app_json("app_7k2", "Billing"), "key": key}),
    );
    route("POST /api/logout", 204, &Value::Null);
    let location = web_sys::window().unwrap().location();
    let go = |hash: &'static str, heading: &'static str| {
        let (root, location) = (root.clone(), location.clone());
        async move {
            location.set_hash(hash).unwrap();
            assert!(
                eventually(3000, || root
                    .query_selector(&["#", heading].concat())
                    .unwrap()
                    .and_then(|h| h.closest("[hidden]").ok())
                    .is_some_and(|hidden| hidden.is_none()))
                .await,
                "{hash} shows"
            );
            settle().await;
        }
    };
    let before = mailroom_frontend::hooks::before_unload::holders();
    go("#/apps", "apps-title").await;
    type_into(&root, "app-name", "Billing").await;
    click(&root, "#create-app").await;
    assert_eq!(text_of(&root, "#new-key code"), key);
    assert_eq!(
        mailroom_frontend::hooks::before_unload::holders(),
        before + 1,
        "closing the tab now asks first"
    );
    type_into(&root, "app-name", "Printer").await;

    go("#/activity", "activity-title").await;
    // Meanwhile another admin made an app.
    apps_routes(vec![
        app_json("app_1", "Scanner"),
        app_json("app_7k2", "Billing"),
        app_json("app_9", "Made elsewhere"),
    ]);
    go("#/apps", "apps-title").await;
    assert_eq!(
        text_of(&root, "#new-key code"),
        key,
        "the key is still there"
    );
    assert_eq!(input_value(&root, "app-name"), "Printer", "and the typing");
    assert!(
        eventually(3000, || text_of(&root, "#apps-table")
            .contains("Made elsewhere"))
        .await,
        "the apps are read again on return"
    );

    go("#/settings", "settings-title").await;
    click(&root, "header.top button.link").await;
    let said = asked(&root, "sign-out-prompt");
    assert!(
        said.contains("The key of “Billing” is shown only once, and it is not marked as copied.")
            && said.contains("The new app's form holds typing that is not saved.")
            && !said.contains("The settings of"),
        "{said}"
    );
    click(&root, "#sign-out-prompt-default").await;
    assert!(
        eventually(3000, || location.hash().unwrap() == "#/apps").await,
        "kept: Apps shows what would go ({})",
        location.hash().unwrap()
    );
    assert!(!requests().iter().any(|(r, _)| r == "POST /api/logout"));

    click(&root, "#key-done").await;
    type_into(&root, "app-name", "").await;
    assert_eq!(mailroom_frontend::hooks::before_unload::holders(), before);
    // Saved limits' notice goes with the view, so no other view shows it.
    route("PATCH /api/apps/app_1", 200, &app_json("app_1", "Scanner"));
    click(&root, "#apps-table tbody button[data-act=limits]").await;
    type_into(&root, "limit-messages_per_hour", "60").await;
    click(&root, "#save-limits").await;
    assert!(text_of(&root, ".banner.success").contains("The limits of “Scanner” are saved."));
    go("#/activity", "activity-title").await;
    assert!(root.query_selector(".banner.success").unwrap().is_none());
    click(&root, "header.top button.link").await;
    assert!(
        requests().iter().any(|(r, _)| r == "POST /api/logout"),
        "nothing is lost now: no question"
    );
}

/// A link to an app's limits followed while Apps is open or hidden opens
/// them, focused.
#[wasm_bindgen_test]
async fn a_link_to_an_apps_limits_opens_them_when_apps_is_already_mounted() {
    let root = mount_signed_at(&paused_queue(false), "#/activity", &[]).await;
    apps_routes(vec![
        app_json("app_1", "Scanner"),
        app_json("app_2", "Billing"),
    ]);
    let location = web_sys::window().unwrap().location();
    location.set_hash("#/apps").unwrap();
    assert!(
        eventually(3000, || root
            .query_selector("#apps-table")
            .unwrap()
            .is_some())
        .await
    );
    assert!(root.query_selector("#limits-form").unwrap().is_none());
    location.set_hash("#/activity").unwrap();
    settle().await;
    location.set_hash("#/apps?limits=app_2").unwrap();
    assert!(
        eventually(3000, || root
            .query_selector("#limits-title")
            .unwrap()
            .is_some())
        .await,
        "the limits open"
    );
    assert!(text_of(&root, "#limits-title").contains("Limits of “Billing”"));
    assert!(
        eventually(3000, || active_id() == "limit-messages_per_hour").await,
        "{}",
        active_id()
    );
    location.set_hash("#/apps?limits=app_1").unwrap();
    assert!(
        eventually(3000, || text_of(&root, "#limits-title").contains("Scanner")).await,
        "followed while Apps shows"
    );
    location.set_hash("").unwrap();
}

/// A session that ends with the page open leaves the page as it is, under
/// a dialog that signs in again: what was typed is still there after, and
/// the dialog does not go while the session is over.
#[wasm_bindgen_test]
async fn a_session_that_ends_keeps_the_page_and_signs_in_again_over_it() {
    if let Some(page) = SIGNED.with(|s| s.borrow_mut().take()) {
        page.destroy();
        settle().await;
    }
    fake_api();
    saved_routes();
    apps_routes(vec![]);
    route(
        "GET /api/settings",
        200,
        &serde_json::to_value(valid_initial()).unwrap(),
    );
    route("GET /api/queue", 200, &paused_queue(false));
    let root = fresh_root_at("#/settings");
    let page = yew::Renderer::<mailroom_frontend::App>::with_root(root.clone()).render();
    assert!(
        eventually(3000, || root
            .query_selector("#tenant_id")
            .unwrap()
            .is_some())
        .await
    );
    let typed = "11111111-2222-3333-4444-555555555555";
    type_into(&root, "tenant_id", typed).await;

    let ended = json!({"message": "Sign in first."});
    route("GET /api/queue", 401, &ended);
    let dialog = || {
        root.query_selector("dialog#session-dialog")
            .unwrap()
            .map(|d| d.dyn_into::<web_sys::HtmlDialogElement>().unwrap())
    };
    assert!(
        eventually(6000, || dialog().is_some_and(|d| d.open())).await,
        "the next poll finds the session over"
    );
    assert!(text_of(&root, "#session-dialog").contains("Your session has ended"));
    assert_eq!(active_id(), "admin-token");
    assert_eq!(input_value(&root, "tenant_id"), typed, "the page stays");
    // Closed by the browser (a second Escape), it opens again.
    dialog().unwrap().close();
    settle().await;
    assert!(dialog().unwrap().open(), "still over: it stays");

    route(
        "POST /api/login",
        401,
        &json!({"message": "The admin token is not correct."}),
    );
    type_into(&root, "admin-token", "wrong").await;
    click(&root, "#session-dialog button[type=submit]").await;
    assert!(
        eventually(3000, || text_of(&root, "#session-dialog")
            .contains("not correct"))
        .await
    );
    route("POST /api/login", 204, &Value::Null);
    route("GET /api/queue", 200, &paused_queue(false));
    type_into(&root, "admin-token", "right").await;
    click(&root, "#session-dialog button[type=submit]").await;
    assert!(
        eventually(3000, || dialog().is_none()).await,
        "signed in again"
    );
    assert_eq!(input_value(&root, "tenant_id"), typed, "nothing was lost");
    assert!(root.query_selector(".sign-in").unwrap().is_none());
    assert_eq!(last_body("POST /api/login")["token"], "right");
    page.destroy();
    settle().await;
}

/// An app whose key was lost or leaked gets a new one from its row: asked
/// first (keeping the current key is the default), then shown once like a
/// new app's, with the app's id the same.
#[wasm_bindgen_test]
async fn an_app_gets_a_new_key_after_a_question_and_sees_it_once() {
    fake_api();
    apps_routes(vec![app_json("app_1", "Scanner")]);
    let key = "mr_newnewnewnewnewnewnewnewnewnewnew";
    route(
        "POST /api/apps/app_1/key",
        200,
        &json!({"app": app_json("app_1", "Scanner"), "key": key}),
    );
    let root = mount_apps().await;
    let posts = || {
        requests()
            .iter()
            .filter(|(r, _)| r == "POST /api/apps/app_1/key")
            .count()
    };
    let button = "#apps-table tbody button[data-act=rekey]";
    assert_eq!(
        find(&root, button).get_attribute("aria-label").as_deref(),
        Some("Give a new key to Scanner")
    );
    let said = asked_kept_then_taken(&root, button, "rekey-prompt", posts).await;
    assert!(
        said.contains("Give “Scanner” a new key?") && said.contains("stops working at once"),
        "{said}"
    );
    assert_eq!(posts(), 1);
    assert!(
        eventually(3000, || root
            .query_selector("#key-panel")
            .unwrap()
            .is_some())
        .await
    );
    assert_eq!(text_of(&root, "#new-key code"), key);
    assert_eq!(text_of(&root, "#smtp-username"), "app_1", "the same id");
    assert!(
        text_of(&root, "#key-panel").contains("give the app a new key"),
        "{}",
        text_of(&root, "#key-panel")
    );
}

/// Ticking the question's box keeps the old key working for a day: the
/// request says so, and the notice says until when; unticked (the
/// default, and again after the question closes) the request has no body.
#[wasm_bindgen_test]
async fn a_new_key_can_leave_the_old_one_working_for_a_day() {
    fake_api();
    apps_routes(vec![app_json("app_1", "Printers")]);
    route(
        "POST /api/apps/app_1/key",
        200,
        &json!({"app": app_json("app_1", "Printers"), "key": "mr_new",
                "old_key_until": "2026-12-08T15:00:00Z"}),
    );
    let root = mount_apps().await;
    let button = "#apps-table tbody button[data-act=rekey]";
    let bodies = || {
        requests()
            .into_iter()
            .filter(|(r, _)| r == "POST /api/apps/app_1/key")
            .map(|(_, b)| b)
            .collect::<Vec<_>>()
    };
    click(&root, button).await;
    let tick = "#rekey-prompt #rekey-keep-old";
    let label = text_of(&root, "#rekey-prompt label.check");
    assert!(
        label.contains("24 hours") && label.contains("leaked"),
        "{label}"
    );
    click(&root, tick).await;
    // Kept: the box does not stay ticked for the next question.
    click(&root, "#rekey-prompt-default").await;
    click(&root, button).await;
    let input: HtmlInputElement = find(&root, tick).dyn_into().unwrap();
    assert!(!input.checked(), "a new question starts unticked");
    click(&root, tick).await;
    click(&root, "#rekey-prompt-other").await;
    assert!(eventually(3000, || bodies().len() == 1).await);
    let sent: Value = serde_json::from_str(&bodies()[0]).unwrap();
    assert_eq!(sent, json!({"keep_old_key_hours": 24}));
    assert!(
        eventually(3000, || text_of(&root, ".banner.success")
            .contains("The old key of “Printers” goes on working until"))
        .await,
        "{}",
        text_of(&root, ".banner.success")
    );
    click(&root, "#key-done").await;
    // Unticked: no body, the old key stops at once.
    click(&root, button).await;
    click(&root, "#rekey-prompt-other").await;
    assert!(eventually(3000, || bodies().len() == 2).await);
    assert_eq!(bodies()[1], "", "no body");
}

/// An app whose old key still works says until when in the list, and only
/// it has *End old key*: asked first (kept: nothing sent), then `DELETE
/// …/old-key`, a notice, and the list read again.
#[wasm_bindgen_test]
async fn an_old_key_still_working_shows_and_can_be_ended() {
    fake_api();
    let mut printers = app_json("app_1", "Printers");
    printers["old_key_until"] = json!("2026-12-08T15:00:00Z");
    printers["old_key_used"] =
        json!({"at": "2026-12-07T15:30:00Z", "from": "10.0.0.5 (relay)", "refused": false});
    // Each device that used it since, the last first.
    printers["old_key_clients"] = json!([
        {"at": "2026-12-07T15:30:00Z", "from": "10.0.0.5 (relay)", "refused": false},
        {"at": "2026-12-07T14:00:00Z", "from": "10.0.0.7 (relay)", "refused": false},
    ]);
    // Its time over, a device still tried it: named, with what to do (a
    // use kept before each client's was: the last one alone).
    let mut billing = app_json("app_2", "Billing");
    billing["old_key_used"] =
        json!({"at": "2026-12-07T16:00:00Z", "from": "10.0.0.9 (HTTP)", "refused": true});
    // Seven devices refused: five named in the line, the rest behind
    // "and 2 more".
    let mut scanners = app_json("app_4", "Scanners");
    scanners["old_key_clients"] = (11..18)
        .map(|n| json!({"at": format!("2026-12-07T16:{n}:00Z"), "from": format!("10.0.0.{n} (relay)"), "refused": true}))
        .collect();
    let mut copier = app_json("app_3", "Copier");
    copier["old_key_until"] = json!("2026-12-08T15:00:00Z");
    apps_routes(vec![printers, billing, copier, scanners]);
    route("DELETE /api/apps/app_1/old-key", 204, &Value::Null);
    let root = mount_apps().await;
    let rows = root.query_selector_all("#apps-table tbody tr").unwrap();
    let row = |i: u32| rows.item(i).unwrap().dyn_into::<Element>().unwrap();
    let line = |i: u32| {
        row(i)
            .query_selector(".old-key")
            .unwrap()
            .and_then(|e| e.text_content())
            .unwrap_or_default()
    };
    let first = line(0);
    assert!(
        first.starts_with("Old key also works until")
            && first.contains("; since the new key used by 10.0.0.5 (relay) at ")
            && first.contains(", 10.0.0.7 (relay) at "),
        "{first}"
    );
    let times: Vec<String> = (0..3)
        .map(|i| {
            let t = row(0).query_selector_all(".old-key time").unwrap().item(i);
            let t: Element = t.expect("a time element").dyn_into().unwrap();
            t.get_attribute("datetime").unwrap()
        })
        .collect();
    assert_eq!(
        times,
        [
            "2026-12-08T15:00:00Z",
            "2026-12-07T15:30:00Z",
            "2026-12-07T14:00:00Z"
        ]
    );
    let second = line(1);
    assert!(
        second.starts_with("Old key refused from 10.0.0.9 (HTTP) at ")
            && second.ends_with(": give that device the new key"),
        "{second}"
    );
    let fourth = line(3);
    assert!(
        fourth.starts_with("Old key refused from 10.0.0.11 (relay) at ")
            && fourth.contains(", 10.0.0.15 (relay) at ")
            && !fourth.contains("10.0.0.16")
            && fourth.ends_with(": give those devices the new key"),
        "{fourth}"
    );
    let more = row(3)
        .query_selector("details.old-key-more")
        .unwrap()
        .expect("the rest behind a details");
    assert_eq!(
        more.query_selector("summary")
            .unwrap()
            .and_then(|s| s.text_content())
            .as_deref(),
        Some("and 2 more")
    );
    let rest = more.text_content().unwrap_or_default();
    assert!(
        rest.contains("10.0.0.16 (relay) at ") && rest.contains("10.0.0.17 (relay) at "),
        "{rest}"
    );
    assert!(
        row(0).query_selector("details").unwrap().is_none(),
        "two devices need no more"
    );
    assert!(
        line(2).ends_with("; not used since the new key"),
        "{}",
        line(2)
    );
    assert!(
        row(1)
            .query_selector("button[data-act=end-old-key]")
            .unwrap()
            .is_none(),
        "only an app whose old key works has the button"
    );
    // Another new key meanwhile would end that old key at once: the
    // question says so, only for the app whose old key still works.
    click(
        &root,
        "#apps-table tbody tr:first-child button[data-act=rekey]",
    )
    .await;
    let said = text_of(&root, "#rekey-prompt");
    assert!(
        said.contains("Its old key, which still works until")
            && said.contains("stops at once either way"),
        "{said}"
    );
    click(&root, "#rekey-prompt-default").await;
    click(
        &root,
        "#apps-table tbody tr:nth-child(2) button[data-act=rekey]",
    )
    .await;
    assert!(
        root.query_selector("#rekey-old-key-ends")
            .unwrap()
            .is_none(),
        "{}",
        text_of(&root, "#rekey-prompt")
    );
    click(&root, "#rekey-prompt-default").await;
    let button = "#apps-table tbody tr:first-child button[data-act=end-old-key]";
    assert_eq!(
        find(&root, button).get_attribute("aria-label").unwrap(),
        "End old key of Printers"
    );
    let deletes = || {
        requests()
            .iter()
            .filter(|(r, _)| r == "DELETE /api/apps/app_1/old-key")
            .count()
    };
    let loads = || {
        requests()
            .iter()
            .filter(|(r, _)| r == "GET /api/apps")
            .count()
    };
    let loaded = loads();
    let said = asked_kept_then_taken(&root, button, "end-old-key-prompt", deletes).await;
    assert!(
        said.contains("End the old key of “Printers” now?")
            && said.contains("refused from now on")
            && said.contains("The new key goes on working"),
        "{said}"
    );
    assert!(eventually(3000, || deletes() == 1).await);
    assert!(
        eventually(3000, || text_of(&root, ".banner.success")
            .contains("The old key of “Printers” no longer works"))
        .await,
        "{}",
        text_of(&root, ".banner.success")
    );
    assert!(eventually(3000, || loads() > loaded).await, "read again");
}

/// While Apps shows, its list is read again now and then: a device refused
/// for an app's old key shows without a reload; a failed read keeps the
/// list as it was.
#[wasm_bindgen_test]
async fn the_apps_list_is_read_again_while_it_shows() {
    fake_api();
    apps_routes(vec![app_json("app_1", "Printers")]);
    let root = mount_apps_polling("", Vec::new(), Some(200)).await;
    assert!(!text_of(&root, "#apps-table").contains("Old key"));
    let mut printers = app_json("app_1", "Printers");
    printers["old_key_used"] =
        json!({"at": "2026-12-07T16:00:00Z", "from": "10.0.0.9 (relay)", "refused": true});
    apps_routes(vec![printers]);
    assert!(
        eventually(3000, || text_of(&root, "#apps-table .old-key")
            .contains("from 10.0.0.9 (relay)"))
        .await,
        "{}",
        text_of(&root, "#apps-table")
    );
    route(
        "GET /api/apps",
        500,
        &json!({"message": "The database is busy."}),
    );
    let loads = || {
        requests()
            .iter()
            .filter(|(r, _)| r == "GET /api/apps")
            .count()
    };
    let before = loads();
    assert!(eventually(3000, || loads() > before + 1).await);
    assert!(
        text_of(&root, "#apps-table .old-key").contains("from 10.0.0.9 (relay)"),
        "a failed read keeps the list"
    );
    end_apps().await;
}

/// A webhook's secret shown once counts as unsaved for signing out: the
/// question names it, keeping it shows Settings, and once it is said
/// copied signing out asks nothing.
#[wasm_bindgen_test]
async fn signing_out_while_a_webhooks_secret_shows_asks_first() {
    let root = mount_signed_at(&paused_queue(false), "#/settings", &[]).await;
    let hook = teams_hook_and_no_webhooks();
    route("POST /api/logout", 204, &Value::Null);
    add_webhook_until_its_secret_shows(&root, &hook).await;
    let said = sign_out_from_activity_then_keep(&root).await;
    assert!(
        said.contains("The signing secret of webhook wh_1 is shown only once"),
        "{said}"
    );
    click(&root, "#webhook-secret-done").await;
    click(&root, "header.top button.link").await;
    assert_eq!(logouts(), 1, "nothing held: no question");
}

/// Webhooks hear from every profile: their panel is outside the settings
/// form, which is remade for each profile, so choosing another profile
/// while a new webhook's secret shows switches at once and keeps the
/// secret where it is.
#[wasm_bindgen_test]
async fn a_webhooks_secret_stays_when_another_profile_is_chosen() {
    let root = mount_signed_at(&two_profiles_queue(), "#/settings", &[profile_b_settings]).await;
    let hook = teams_hook_and_no_webhooks();
    let switched = || {
        requests()
            .iter()
            .any(|(r, _)| r == "GET /api/profiles/prf_b/settings")
    };
    add_webhook_until_its_secret_shows(&root, &hook).await;
    choose(&root, "profile-select", "prf_b").await;
    assert!(eventually(3000, switched).await);
    assert!(
        root.query_selector("#profile-switch-prompt")
            .unwrap()
            .is_none_or(|d| !d.dyn_into::<web_sys::HtmlDialogElement>().unwrap().open()),
        "nothing of the profile's is lost: no question"
    );
    assert!(
        eventually(3000, || input_value(&root, "tenant_id")
            == mailroom_shared::fixtures::TENANT_B)
        .await,
        "the form edits Fabrikam"
    );
    assert!(text_of(&root, "#webhook-secret").contains("whsec_c2VjcmV0"));
    // Still held for signing out and closing the tab.
    assert!(mailroom_frontend::hooks::before_unload::unsaved()
        .iter()
        .any(|(_, what)| what.contains("webhook wh_1")));
}

/// A key shown once is not replaced by another before it is said copied:
/// making another app or giving one a new key says so, sends nothing,
/// and leaves the key where it is.
#[wasm_bindgen_test]
async fn a_key_not_yet_copied_is_not_replaced_by_another() {
    fake_api();
    apps_routes(vec![app_json("app_1", "Scanner")]);
    let key = "mr_0123456789abcdefghijklmnopqrstuv";
    route(
        "POST /api/apps",
        201,
        &json!({"app": app_json("app_7k2", "Billing"), "key": key}),
    );
    route(
        "POST /api/apps/app_1/key",
        200,
        &json!({"app": app_json("app_1", "Scanner"), "key": "mr_other"}),
    );
    let root = mount_apps().await;
    let posts = || {
        requests()
            .iter()
            .filter(|(r, _)| r.starts_with("POST /api/apps"))
            .count()
    };
    type_into(&root, "app-name", "Billing").await;
    click(&root, "#create-app").await;
    assert_eq!(text_of(&root, "#new-key code"), key);
    type_into(&root, "app-name", "Printer").await;
    click(&root, "#create-app").await;
    assert_eq!(posts(), 1, "no second app yet");
    assert!(
        text_of(&root, "#app-name-error").contains("The key of “Billing” above is shown only once"),
        "{}",
        text_of(&root, "#new-app")
    );
    assert_eq!(active_id(), "key-title");
    click(&root, "#apps-table tbody button[data-act=rekey]").await;
    assert!(root
        .query_selector("#rekey-prompt")
        .unwrap()
        .is_none_or(|d| !d.dyn_into::<web_sys::HtmlDialogElement>().unwrap().open()));
    assert!(text_of(&root, ".banner.success").contains("copy it and choose"));
    assert_eq!(posts(), 1);
    assert_eq!(text_of(&root, "#new-key code"), key, "the key stays");
    click(&root, "#key-done").await;
    click(&root, "#create-app").await;
    assert_eq!(posts(), 2, "once copied, the next app is made");
}

/// A webhook whose replaced secret still signs says until when, with *End
/// old secret*; that asks first (keeping both is the default), then calls
/// `DELETE …/old-secret`, reads the list again (the line and the button
/// go) and says to send a test. A webhook without one has no such button.
#[wasm_bindgen_test]
async fn a_webhooks_old_secret_shows_until_when_and_ends_after_a_question() {
    use mailroom_shared::webhooks::WebhookList;
    fake_api();
    let teams = teams_hook_and_no_webhooks();
    let ended = standard_hook_beside(&teams);
    let signing = mailroom_shared::webhooks::Webhook {
        old_secret_until: Some("2026-12-08T12:00:00Z".into()),
        ..ended.clone()
    };
    let list = |hooks: Vec<mailroom_shared::webhooks::Webhook>| {
        serde_json::to_value(WebhookList { webhooks: hooks }).unwrap()
    };
    route(
        "GET /api/webhooks",
        200,
        &list(vec![teams.clone(), signing]),
    );
    route("DELETE /api/webhooks/wh_2/old-secret", 204, &Value::Null);
    let root = mount_webhooks().await;
    let button = "li[data-id=wh_2] .webhook-end-old-secret";
    assert!(eventually(3000, || root.query_selector(button).unwrap().is_some()).await);
    assert!(
        root.query_selector("li[data-id=wh_1] .webhook-end-old-secret")
            .unwrap()
            .is_none(),
        "no old secret, no button"
    );
    let line = text_of(&root, "li[data-id=wh_2] .old-secret");
    assert!(
        line.contains("The old secret also signs each request until")
            && line.contains("send a test"),
        "{line}"
    );
    assert_eq!(
        find(&root, "li[data-id=wh_2] .old-secret time").get_attribute("datetime"),
        Some("2026-12-08T12:00:00Z".into())
    );
    let deletes = || {
        requests()
            .iter()
            .filter(|(r, _)| r == "DELETE /api/webhooks/wh_2/old-secret")
            .count()
    };
    // A test while both sign passes even at a receiver that has only the
    // old secret: its result goes with the old secret.
    route(
        "POST /api/webhooks/wh_2/test",
        200,
        &json!({"ok": true, "status": 200, "message": "https://ops.contoso.com/hooks answered 200."}),
    );
    click(&root, "li[data-id=wh_2] .webhook-test").await;
    assert!(
        eventually(2000, || text_of(&root, "li[data-id=wh_2] .webhook-result")
            .contains("answered 200"))
        .await
    );
    // Read again after the end: the server no longer has it.
    route("GET /api/webhooks", 200, &list(vec![teams, ended]));
    let said = asked_kept_then_taken(&root, button, "webhook-end-old-secret-prompt", deletes).await;
    assert!(
        said.contains("https://ops.contoso.com/hooks")
            && said.contains("give it the new one first"),
        "{said}"
    );
    assert!(eventually(3000, || root.query_selector(button).unwrap().is_none()).await);
    assert_eq!(deletes(), 1);
    assert!(root
        .query_selector("li[data-id=wh_2] .old-secret")
        .unwrap()
        .is_none());
    assert!(
        root.query_selector("li[data-id=wh_2] .webhook-result")
            .unwrap()
            .is_none(),
        "{}",
        text_of(&root, "li[data-id=wh_2]")
    );
    assert!(
        text_of(&root, "#webhook-saved")
            .contains("now signs with its new secret only. Send a test"),
        "{}",
        text_of(&root, "#webhook-saved")
    );
}

/// *New secret* on a Standard webhook asks first (keeping is the default),
/// then shows the new secret once, saying until when the old one signs
/// too; while it shows, another New secret sends nothing. A Teams
/// webhook, whose URL is its credential, has no such button.
#[wasm_bindgen_test]
async fn a_webhook_gets_a_new_secret_after_a_question_and_it_shows_once() {
    use mailroom_shared::webhooks::WebhookList;
    fake_api();
    let teams = teams_hook_and_no_webhooks();
    let standard = standard_hook_beside(&teams);
    route(
        "GET /api/webhooks",
        200,
        &serde_json::to_value(WebhookList {
            webhooks: vec![teams, standard.clone()],
        })
        .unwrap(),
    );
    route(
        "POST /api/webhooks/wh_2/secret",
        200,
        &json!({"webhook": standard, "secret": "whsec_bmV3LXNlY3JldC1zaG93bi1vbmNl",
                "previous_until": "2026-12-08T12:00:00Z"}),
    );
    let root = mount_webhooks().await;
    assert!(
        eventually(3000, || root
            .query_selector("li[data-id=wh_2]")
            .unwrap()
            .is_some())
        .await
    );
    assert!(
        root.query_selector("li[data-id=wh_1] .webhook-new-secret")
            .unwrap()
            .is_none(),
        "a Teams webhook has no secret"
    );
    let posts = || {
        requests()
            .iter()
            .filter(|(r, _)| r == "POST /api/webhooks/wh_2/secret")
            .count()
    };
    // Read again after the new secret: the server says until when the
    // old one signs.
    let signing = mailroom_shared::webhooks::Webhook {
        old_secret_until: Some("2026-12-08T12:00:00Z".into()),
        ..standard.clone()
    };
    route("GET /api/webhooks", 200, &json!({"webhooks": [signing]}));
    let said = asked_kept_then_taken(
        &root,
        "li[data-id=wh_2] .webhook-new-secret",
        "webhook-secret-prompt",
        posts,
    )
    .await;
    assert!(
        eventually(3000, || root
            .query_selector("li[data-id=wh_2] .old-secret")
            .unwrap()
            .is_some())
        .await,
        "the list is read again and says until when the old secret signs"
    );
    assert!(
        said.contains("https://ops.contoso.com/hooks") && said.contains("24 hours"),
        "{said}"
    );
    assert!(shows(&root, "#webhook-secret").await);
    let shown = text_of(&root, "#webhook-secret");
    assert!(
        shown.contains("whsec_bmV3LXNlY3JldC1zaG93bi1vbmNl")
            && shown.contains("has a new signing secret")
            && shown.contains("The old one still signs"),
        "{shown}"
    );
    assert_eq!(posts(), 1);
    // Not replaced before it is said copied.
    click(&root, "li[data-id=wh_2] .webhook-new-secret").await;
    assert_eq!(posts(), 1);
    assert!(text_of(&root, "#webhook-error").contains("Copy the signing secret shown above first"));
    assert_eq!(active_id(), "webhook-secret-done");
    assert!(mailroom_frontend::hooks::before_unload::unsaved()
        .iter()
        .any(|(_, what)| what.contains("webhook wh_2")));
    click(&root, "#webhook-secret-done").await;
    assert!(root.query_selector("#webhook-secret").unwrap().is_none());
    assert!(root.query_selector("#webhook-error").unwrap().is_none());
}
