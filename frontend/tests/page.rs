//! Component tests in headless Chromium: render into the DOM, type, flush the
//! scheduler, and assert on the DOM. No test sleeps.
#![cfg(target_arch = "wasm32")]

use mailroom_frontend::components::settings_form::{SettingsForm, SettingsFormProps};
use mailroom_frontend::components::test_dialog::{progress_steps, ResultPanel, ResultPanelProps};
use mailroom_frontend::hooks::before_unload::holders;
use mailroom_shared::api::{
    Direction, PublicSettings, SettingsResponse, Stage, StageTiming, TestResult, TranscriptLine,
};
use mailroom_shared::{Provider, Settings, StoredSecrets};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{Element, HtmlElement, HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::{fresh_root, valid_initial};

async fn mount_form(initial: SettingsResponse) -> Element {
    let root = fresh_root();
    yew::Renderer::<SettingsForm>::with_root_and_props(
        root.clone(),
        SettingsFormProps {
            initial,
            on_unauthorized: Callback::noop(),
            on_saved: Callback::noop(),
            on_dirty: Callback::noop(),
        },
    )
    .render();
    yew::scheduler::flush().await;
    root
}

fn find(root: &Element, selector: &str) -> Element {
    root.query_selector(selector)
        .unwrap()
        .unwrap_or_else(|| panic!("no {selector} in {}", root.inner_html()))
}

fn bubbling(kind: &str) -> web_sys::Event {
    let init = web_sys::EventInit::new();
    init.set_bubbles(true);
    web_sys::Event::new_with_event_init_dict(kind, &init).unwrap()
}

async fn type_into(root: &Element, id: &str, value: &str) {
    let input: HtmlInputElement = find(root, &format!("#{id}")).dyn_into().unwrap();
    input.set_value(value);
    input.dispatch_event(&bubbling("input")).unwrap();
    yew::scheduler::flush().await;
}

async fn choose(root: &Element, id: &str, value: &str) {
    let select: HtmlSelectElement = find(root, &format!("#{id}")).dyn_into().unwrap();
    select.set_value(value);
    select.dispatch_event(&bubbling("change")).unwrap();
    yew::scheduler::flush().await;
}

async fn click(root: &Element, selector: &str) {
    let el: HtmlElement = find(root, selector).dyn_into().unwrap();
    el.click();
    yew::scheduler::flush().await;
}

/// The id of the element that has the focus.
fn active_id() -> String {
    let doc = web_sys::window().unwrap().document().unwrap();
    doc.active_element().map(|e| e.id()).unwrap_or_default()
}

/// The text of a field's error region (always in the page, empty when valid).
fn error_text(root: &Element, id: &str) -> String {
    text_of(root, &format!("#{id}-error")).unwrap_or_default()
}

fn text_of(root: &Element, selector: &str) -> Option<String> {
    root.query_selector(selector)
        .unwrap()
        .and_then(|e| e.text_content())
}

#[wasm_bindgen_test]
async fn invalid_tenant_id_shows_its_message_and_fixing_clears_it() {
    let root = mount_form(SettingsResponse::default()).await;
    assert!(
        error_text(&root, "tenant_id").is_empty(),
        "untouched fields show nothing"
    );
    type_into(&root, "tenant_id", "0b4f1c2a-1234-4abc-9def-0123456789a").await;
    let input = find(&root, "#tenant_id");
    assert_eq!(input.get_attribute("aria-invalid").as_deref(), Some("true"));
    let described = input.get_attribute("aria-describedby").unwrap();
    assert!(
        described.split(' ').any(|d| d == "tenant_id-error"),
        "{described}"
    );
    let message = text_of(&root, "#tenant_id-error").unwrap();
    assert!(
        message.contains("Tenant ID must be a GUID") && message.contains("31 hex digits"),
        "{message}"
    );

    type_into(
        &root,
        "tenant_id",
        " {0B4F1C2A-1234-4ABC-9DEF-0123456789AB} ",
    )
    .await;
    assert_eq!(
        find(&root, "#tenant_id")
            .get_attribute("aria-invalid")
            .as_deref(),
        Some("false")
    );
    assert!(error_text(&root, "tenant_id").is_empty());
}

#[wasm_bindgen_test]
async fn an_id_or_address_pasted_with_more_around_it_is_named_alone_while_typing() {
    let root = mount_form(SettingsResponse::default()).await;
    let tenant = "0b4f1c2a-1234-4abc-9def-0123456789ab";
    type_into(
        &root,
        "tenant_id",
        &format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
    )
    .await;
    let message = error_text(&root, "tenant_id");
    assert!(
        message.contains(tenant) && message.contains("enter only it"),
        "{message}"
    );
    let address = format!("{}@{}", "mailer", "contoso.com");
    type_into(&root, "sender_email", &format!("Mailer <{address}>")).await;
    let message = error_text(&root, "sender_email");
    assert!(
        message.starts_with("Enter only the address") && message.contains(&address),
        "{message}"
    );
    type_into(&root, "sender_email", &address).await;
    assert!(error_text(&root, "sender_email").is_empty());
}

/// The secret's Expires date is told while typing when it has passed (a
/// slip of the year) or is near; it never blocks the save.
#[wasm_bindgen_test]
async fn a_passed_or_near_secret_expiry_date_warns_while_typing() {
    let root = mount_form(SettingsResponse::default()).await;
    let warning =
        |root: &Element| text_of(root, "#client_secret_expires-warning").unwrap_or_default();
    type_into(&root, "client_secret_expires", "2020-01-01").await;
    let w = warning(&root);
    assert!(w.contains("2020-01-01 has passed"), "{w}");
    assert!(error_text(&root, "client_secret_expires").is_empty());
    // Ten days from the browser's today.
    let near = js_sys::Date::new_0();
    near.set_date(near.get_date() + 10);
    let near = format!(
        "{:04}-{:02}-{:02}",
        near.get_full_year(),
        near.get_month() + 1,
        near.get_date()
    );
    type_into(&root, "client_secret_expires", &near).await;
    let w = warning(&root);
    assert!(w.contains("expires in 10 days"), "{near}: {w}");
    type_into(&root, "client_secret_expires", "2199-12-31").await;
    assert_eq!(warning(&root), "");
}

#[wasm_bindgen_test]
async fn guid_shaped_secret_warns_about_the_secret_id() {
    let root = mount_form(SettingsResponse::default()).await;
    type_into(
        &root,
        "client_secret",
        "9a8b7c6d-1111-4222-8333-444455556666",
    )
    .await;
    let w = text_of(&root, "#client_secret-warning").unwrap();
    assert!(w.contains("looks like the Secret ID"), "{w}");
    assert_eq!(
        find(&root, "#client_secret")
            .get_attribute("type")
            .as_deref(),
        Some("password")
    );
    click(&root, "button.toggle").await;
    assert_eq!(
        find(&root, "#client_secret")
            .get_attribute("type")
            .as_deref(),
        Some("text")
    );
}

#[wasm_bindgen_test]
async fn switching_the_provider_fills_host_and_port() {
    let root = mount_form(SettingsResponse::default()).await;
    let host = |root: &Element| {
        find(root, "#host")
            .dyn_into::<HtmlInputElement>()
            .unwrap()
            .value()
    };
    let port = |root: &Element| {
        find(root, "#port")
            .dyn_into::<HtmlInputElement>()
            .unwrap()
            .value()
    };
    assert_eq!(
        (host(&root), port(&root)),
        ("smtp.office365.com".to_string(), "587".to_string())
    );
    assert!(
        !find(&root, "#advanced").has_attribute("open"),
        "advanced is collapsed for Office 365"
    );
    choose(&root, "provider", "sendgrid").await;
    assert_eq!(
        (host(&root), port(&root)),
        ("smtp.sendgrid.net".to_string(), "587".to_string())
    );
    assert!(
        root.query_selector("#tenant_id").unwrap().is_none(),
        "no OAuth fields for SendGrid"
    );
    assert!(root
        .query_selector("#auth-oauth2_client_credentials")
        .unwrap()
        .is_none());
    choose(&root, "provider", "other").await;
    assert_eq!(host(&root), "");
    assert!(
        find(&root, "#advanced").has_attribute("open"),
        "advanced opens for Other"
    );
}

#[wasm_bindgen_test]
async fn legacy_auth_shows_the_retirement_notice() {
    let root = mount_form(SettingsResponse::default()).await;
    let oauth_label = find(&root, "label[for='auth-oauth2_client_credentials']")
        .text_content()
        .unwrap();
    assert_eq!(oauth_label, "OAuth 2.0 (Client Credentials) — recommended");
    assert!(find(&root, "#auth-oauth2_client_credentials")
        .dyn_into::<HtmlInputElement>()
        .unwrap()
        .checked());
    assert!(root.query_selector("#retirement-notice").unwrap().is_none());
    click(&root, "#auth-password").await;
    let notice = text_of(&root, "#retirement-notice").unwrap();
    assert!(
        notice.contains("End of December 2026") && notice.contains("Second half of 2027"),
        "{notice}"
    );
    assert!(root.query_selector("#password").unwrap().is_some());
    assert!(root.query_selector("#tenant_id").unwrap().is_none());
    // Exchange Online's host typed under another provider is the same
    // password sign-in (the server warns of it on every view).
    let mut settings = Settings::for_provider(Provider::Other);
    settings.username = Some(format!("{}@{}", "mailer", "contoso.com"));
    settings.password = None;
    settings.host = "smtp.office365.com".into();
    let root = mount_form(common::saved(
        settings,
        StoredSecrets {
            password: true,
            ..StoredSecrets::default()
        },
    ))
    .await;
    assert!(
        text_of(&root, "#retirement-notice")
            .unwrap_or_default()
            .contains("End of December 2026"),
        "Office 365's host under another provider"
    );
}

#[wasm_bindgen_test]
async fn a_sender_other_than_the_username_asks_for_send_as() {
    let root = mount_form(SettingsResponse::default()).await;
    let user = format!("{}@{}", "mailer", "contoso.com");
    let shared = format!("{}@{}", "notifications", "contoso.com");
    type_into(&root, "username", &user).await;
    type_into(&root, "sender_email", &user).await;
    assert!(root.query_selector("#send-as").unwrap().is_none());
    type_into(&root, "sender_email", &shared).await;
    let block = text_of(&root, "#send-as").unwrap();
    assert!(
        block.contains("has Send-As rights on this mailbox"),
        "{block}"
    );
    assert!(
        block.contains(&format!(
            "Add-RecipientPermission -Identity \"{shared}\" -Trustee \"{user}\""
        )),
        "{block}"
    );
    assert!(text_of(&root, "#sender_email-error")
        .unwrap()
        .contains("differs from the username"));
    click(&root, "#send_as_confirmed").await;
    assert!(
        error_text(&root, "sender_email").is_empty(),
        "confirmed Send-As clears the error"
    );
}

#[wasm_bindgen_test]
async fn submit_shows_every_error_and_focuses_the_first() {
    let root = mount_form(SettingsResponse::default()).await;
    type_into(&root, "sender_name", "Contoso").await;
    click(&root, "#save-button").await;
    yew::scheduler::flush().await;
    assert_eq!(active_id(), "tenant_id");
    for id in [
        "tenant_id",
        "client_id",
        "client_secret",
        "username",
        "sender_email",
    ] {
        assert!(
            text_of(&root, &format!("#{id}-error")).is_some(),
            "{id} shows its error"
        );
    }
    assert!(
        root.query_selector(".banner").unwrap().is_none(),
        "nothing was sent to the server"
    );
}

#[wasm_bindgen_test]
async fn submit_opens_advanced_to_focus_a_host_error() {
    let mut settings = Settings::for_provider(Provider::Gmail);
    settings.username = Some("relay".into());
    settings.sender_name = "Relay".into();
    settings.sender_email = format!("{}@{}", "relay", "contoso.com");
    settings.host = "smtp.gmail.com:587".into();
    let initial = SettingsResponse {
        settings: Some(PublicSettings::new(
            settings,
            StoredSecrets {
                client_secret: false,
                password: true,
                ..StoredSecrets::default()
            },
        )),
        version: 3,
        updated_at: None,
    };
    let root = mount_form(initial).await;
    assert_eq!(
        find(&root, "#password")
            .get_attribute("placeholder")
            .as_deref(),
        Some("stored — leave empty to keep")
    );
    click(&root, "#save-button").await;
    yew::scheduler::flush().await;
    assert!(find(&root, "#advanced").has_attribute("open"));
    assert_eq!(active_id(), "host");
    assert!(text_of(&root, "#host-error")
        .unwrap()
        .contains("without the port"));
}

#[wasm_bindgen_test]
async fn checklist_fills_in_the_powershell_lines() {
    let root = mount_form(SettingsResponse::default()).await;
    type_into(&root, "client_id", "6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab").await;
    type_into(
        &root,
        "sp_object_id",
        "11111111-2222-4333-8444-555555555555",
    )
    .await;
    let text = find(&root, ".checklist").text_content().unwrap();
    assert!(text.contains("New-ServicePrincipal -AppId 6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab -ServiceId 11111111-2222-4333-8444-555555555555"), "{text}");
    assert!(text.contains("not the App registration's"), "{text}");
    assert!(text.contains("Connect-ExchangeOnline"));
    // Last, Sent Items kept from filling the sending mailbox, for it.
    let mailbox = format!("{}@{}", "mailer", "contoso.com");
    type_into(&root, "username", &mailbox).await;
    let step = find(&root, "#checklist-sent-items");
    let said = step.text_content().unwrap();
    assert!(said.contains("a full mailbox sends nothing"), "{said}");
    let codes = step.query_selector_all(".command code").unwrap();
    let commands: Vec<String> = (0..codes.length())
        .filter_map(|i| codes.item(i)?.text_content())
        .collect();
    assert_eq!(
        commands,
        mailroom_shared::powershell::sent_items_retention(&mailbox),
        "{said}"
    );
    assert!(
        commands[2].contains(&format!("-Identity \"{mailbox}\"")),
        "{commands:?}"
    );
    // The field comes before the commands it fills in, read top down.
    let field = find(&root, "#sp_object_id");
    let first = find(&root, ".checklist .command");
    assert!(
        field.compare_document_position(&first) & web_sys::Node::DOCUMENT_POSITION_FOLLOWING != 0,
        "the object ID field is below the commands"
    );
}

#[wasm_bindgen_test]
async fn result_panel_shows_stage_code_hint_commands_and_transcript() {
    let root = fresh_root();
    let result = TestResult {
        ok: false,
        stage: Some(Stage::Send),
        code: Some("5.7.60".into()),
        message: "mailer may not send as notifications.".into(),
        hint: Some("Give the username Send-As rights: `Add-RecipientPermission -Identity \"n\" -Trustee \"m\" -AccessRights SendAs`, or use it as the sender.".into()),
        stages: vec![StageTiming { name: Stage::Send, ok: false, ms: 12 }],
        transcript: vec![TranscriptLine { dir: Direction::Client, line: "AUTH XOAUTH2 *****".into() }],
        token_claims: None,
    };
    yew::Renderer::<ResultPanel>::with_root_and_props(root.clone(), ResultPanelProps { result })
        .render();
    yew::scheduler::flush().await;
    let html = root.text_content().unwrap();
    assert!(html.contains("The test failed"), "{html}");
    assert_eq!(text_of(&root, ".stage strong").as_deref(), Some("send"));
    assert_eq!(text_of(&root, ".stage .code").as_deref(), Some("5.7.60"));
    assert_eq!(
        text_of(&root, ".stages li.failed").as_deref(),
        Some("✗ send · 12 ms"),
        "each real stage with its outcome"
    );
    let command = text_of(&root, ".command code").unwrap();
    assert!(command.starts_with("Add-RecipientPermission"), "{command}");
    assert_eq!(
        find(&root, ".command button.copy")
            .get_attribute("aria-label")
            .as_deref(),
        Some("Copy the Add-RecipientPermission command"),
        "the label names what it copies"
    );
    assert!(text_of(&root, ".transcript pre")
        .unwrap()
        .contains("C: AUTH XOAUTH2 *****"));
    assert_eq!(
        progress_steps(true),
        ["token", "connect", "tls", "auth", "send"],
        "the stage names of the result"
    );
    assert!(
        root.query_selector(".not-arrived").unwrap().is_none(),
        "a failed test has nothing to look for"
    );
    assert_eq!(progress_steps(false), ["connect", "tls", "auth", "send"]);
    for stage in progress_steps(true) {
        assert!(
            [
                Stage::Token,
                Stage::Connect,
                Stage::Tls,
                Stage::Auth,
                Stage::Send
            ]
            .iter()
            .any(|s| s.as_str() == stage),
            "{stage}"
        );
    }
}

/// A passed test names its Message-ID and says where an email that never
/// arrives is found: accepted is not delivered.
#[wasm_bindgen_test]
async fn a_passed_test_says_where_an_email_that_never_arrives_is_found() {
    let root = fresh_root();
    let id = format!("<msg_1@{}>", "contoso.com");
    let result = TestResult {
        ok: true,
        stage: None,
        code: None,
        message: format!("The server accepted the test email (Message-ID {id})."),
        hint: None,
        stages: vec![StageTiming {
            name: Stage::Send,
            ok: true,
            ms: 12,
        }],
        transcript: Vec::new(),
        token_claims: None,
    };
    yew::Renderer::<ResultPanel>::with_root_and_props(root.clone(), ResultPanelProps { result })
        .render();
    yew::scheduler::flush().await;
    assert!(text_of(&root, ".message").unwrap().contains(&id));
    let help = text_of(&root, ".not-arrived").unwrap_or_default();
    assert!(
        help.contains("Junk Email")
            && help.contains("Message trace")
            && help.contains("Quarantine"),
        "{help}"
    );
}

/// `markup::hint(text)`, rendered in a fresh root.
async fn rendered_hint(text: &str) -> Element {
    #[derive(Properties, PartialEq)]
    struct P {
        text: String,
    }
    #[function_component(Wrap)]
    fn wrap(p: &P) -> Html {
        let mut m = mailroom_frontend::markup::Markup::default();
        mailroom_frontend::markup::hint(&mut m, &p.text);
        m.html()
    }
    let root = fresh_root();
    yew::Renderer::<Wrap>::with_root_and_props(root.clone(), P { text: text.into() }).render();
    yew::scheduler::flush().await;
    root
}

#[wasm_bindgen_test]
async fn hint_without_commands_is_plain_text() {
    let root = rendered_hint("Check the host and port.").await;
    assert_eq!(text_of(&root, ".hint").unwrap(), "Check the host and port.");
    assert!(root.query_selector(".command").unwrap().is_none());
}

/// Commands each on a line of their own, without the commas and the stop
/// that stood alone between them; prose around them stays.
#[wasm_bindgen_test]
async fn a_hints_commands_stand_without_the_commas_between_them() {
    let root = rendered_hint("Free space, then: `New-RetentionPolicy a`, `Set-Mailbox b`, `Start-ManagedFolderAssistant c` (it replaces the policy). Then save.").await;
    let hint = root.query_selector(".hint").unwrap().unwrap();
    let children = hint.children();
    let parts: Vec<(String, String)> = (0..children.length())
        .filter_map(|i| children.item(i))
        .map(|c| {
            (
                c.tag_name().to_lowercase(),
                c.text_content().unwrap_or_default(),
            )
        })
        .collect();
    let kinds: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(kinds, ["span", "div", "div", "div", "span"], "{parts:?}");
    assert_eq!(parts[0].1, "Free space, then: ");
    assert_eq!(parts[4].1, " (it replaces the policy). Then save.");
}

fn parsed(text: &str) -> wasm_bindgen::JsValue {
    js_sys::JSON::parse(text).unwrap()
}

#[wasm_bindgen_test]
fn request_bodies_are_the_contract_shapes() {
    use mailroom_frontend::api::encode;
    use mailroom_shared::api::PutSettings;
    let mut settings = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
    settings.password = None;
    let text = encode(&PutSettings {
        settings: settings.clone(),
        version: 7,
    })
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], 7);
    assert_eq!(v["settings"]["port"], 587);
    assert_eq!(v["settings"]["auth_method"], "oauth2_client_credentials");
    assert_eq!(v["settings"]["client_hostname"], serde_json::Value::Null);
    assert!(
        v["settings"].get("password").is_none(),
        "absent secrets stay absent"
    );
    let back: PutSettings = serde_json::from_str(&text).unwrap();
    assert_eq!(back.settings, settings);
}

/// The Apps view reads APP by hand too: what serde_json writes for the
/// shared type comes back the same, and a wrong type is refused.
#[wasm_bindgen_test]
fn the_app_reader_takes_what_serde_json_writes() {
    use mailroom_frontend::read::app;
    use mailroom_shared::sending::{App, AppLimits, AppUsage};
    let mut a = App {
        id: "app_1".into(),
        name: "Scanner “3rd” \\ floor".into(),
        created_at: "2026-11-20T09:00:00Z".into(),
        last_used_at: None,
        messages: 12_345_678_901,
        allowed_from: vec![mailroom_shared::fixtures::mailer()],
        rewrite_from: true,
        limits: AppLimits::default(),
        usage: AppUsage::default(),
        profile: "prf_billing".into(),
        old_key_until: None,
        old_key_used: None,
        old_key_clients: Vec::new(),
    };
    let same = |a: &App| {
        let text = serde_json::to_string(a).unwrap();
        assert_eq!(app(&parsed(&text)).as_ref(), Some(a), "{text}");
    };
    same(&a);
    a.last_used_at = Some("2026-11-30T23:59:59Z".into());
    a.limits = AppLimits {
        messages_per_hour: Some(1),
        messages_per_day: None,
        recipients_per_day: Some(u32::MAX),
        queued_max: None,
    };
    a.usage = AppUsage {
        messages_last_hour: 1,
        messages_today: 2,
        recipients_today: 3,
        queued: 4,
    };
    a.old_key_until = Some("2026-12-08T15:00:00Z".into());
    a.old_key_used = Some(mailroom_shared::sending::OldKeyUse {
        at: "2026-12-07T15:30:00Z".into(),
        from: "10.0.0.5 (relay)".into(),
        refused: true,
    });
    same(&a);
    a.old_key_clients = vec![
        a.old_key_used.clone().unwrap(),
        mailroom_shared::sending::OldKeyUse {
            at: "2026-12-07T14:00:00Z".into(),
            from: "10.0.0.7 (HTTP)".into(),
            refused: false,
        },
    ];
    same(&a);
    // An app from before limits: the defaults, as the server's serde reads it.
    let old = r#"{"id": "app_2", "name": "Old", "created_at": "2026-11-01T00:00:00Z", "last_used_at": null, "messages": 0, "allowed_from": [], "rewrite_from": false}"#;
    let read = app(&parsed(old)).unwrap();
    let serde: App = serde_json::from_str(old).unwrap();
    assert_eq!(read, serde);
    assert_eq!(read.limits.queued_max, Some(10_000));
    for bad in [
        r#"{"id": 1, "name": "x", "created_at": "t"}"#,
        r#"{"id": "a", "name": "x", "created_at": "t", "messages": -1}"#,
        r#"{"id": "a", "name": "x", "created_at": "t", "limits": {"queued_max": "many"}}"#,
        r#"{"id": "a", "name": "x", "created_at": "t", "allowed_from": [3]}"#,
        r#"{"id": "a", "name": "x", "created_at": "t", "old_key_until": 1}"#,
        r#"{"id": "a", "name": "x", "created_at": "t", "old_key_used": {"at": "t"}}"#,
        r#"{"id": "a", "name": "x", "created_at": "t", "old_key_clients": [{"at": "t"}]}"#,
        r#"{"id": "a", "name": "x", "created_at": "t", "old_key_clients": {}}"#,
    ] {
        assert_eq!(app(&parsed(bad)), None, "{bad}");
    }
}

/// Activity, the banner and the test dialog read SUMMARY, DETAILS, the
/// queue's state and TEST_RESULT by hand: what serde_json writes for each
/// shared type comes back the same, every status and stage included, and a
/// wrong type is refused rather than shown as empty.
#[wasm_bindgen_test]
fn the_activity_and_test_readers_take_what_serde_json_writes() {
    use mailroom_frontend::read::{details, queue_state, summary, test_result};
    use mailroom_shared::api::TokenClaims;
    use mailroom_shared::sending::{
        Attempt, Details, LastError, Paused, QueueState, RecipientState, Status, Summary,
    };
    let mut n = 0;
    for status in Status::ALL {
        for stage in Stage::ALL {
            n += 1;
            let s = Summary {
                id: format!("msg_{n}"),
                app: (n % 2 == 0).then(|| "app_1".to_string()),
                from: mailroom_shared::fixtures::mailer(),
                to: (0..n % 3).map(|i| format!("r{i}@example.org")).collect(),
                subject: "Quoted “subject” \\ and \"more\"".into(),
                size: 9_007_199_254_740 + n,
                status,
                created_at: "2026-11-26T10:00:00Z".into(),
                updated_at: "2026-11-26T10:01:00Z".into(),
                attempt_count: n as u32,
                profile: if n % 2 == 0 {
                    "default".into()
                } else {
                    format!("prf_{n}")
                },
                last_error: (n % 2 == 1).then(|| LastError {
                    stage,
                    code: (n % 3 == 0).then(|| "5.1.1".to_string()),
                    message: "The recipient does not exist.".into(),
                }),
            };
            let text = serde_json::to_string(&s).unwrap();
            assert_eq!(summary(&parsed(&text)).as_ref(), Some(&s), "{text}");
            let d = Details {
                summary: s.clone(),
                recipients: vec![RecipientState {
                    address: "r0@example.org".into(),
                    status,
                    code: (n % 2 == 0).then(|| "250".to_string()),
                    message: Some("250 2.0.0 OK <id> [Hostname=X]".into()),
                }],
                attempts: vec![Attempt {
                    at: "2026-11-26T10:01:00Z".into(),
                    ok: n % 2 == 0,
                    stage: (n % 2 == 1).then_some(stage),
                    code: None,
                    message: "m".into(),
                    hint: Some("h".into()),
                    transport: match n % 3 {
                        0 => None,
                        1 => Some(mailroom_shared::Transport::Smtp),
                        _ => Some(mailroom_shared::Transport::Graph),
                    },
                }],
                next_attempt_at: (n % 2 == 1).then(|| "2026-11-26T10:05:00Z".to_string()),
                message_id: (n % 2 == 0).then(|| format!("<a{n}@{}>", "contoso.com")),
            };
            let text = serde_json::to_string(&d).unwrap();
            assert_eq!(details(&parsed(&text)).as_ref(), Some(&d), "{text}");
            let q = QueueState {
                counts: Status::ALL.iter().map(|s| (*s, n)).collect(),
                paused: (n % 2 == 0).then(|| Paused {
                    since: "2026-11-26T10:00:00Z".into(),
                    stage,
                    code: None,
                    message: "paused".into(),
                    hint: Some("fix".into()),
                }),
                warnings: (n % 3 == 0)
                    .then(|| mailroom_shared::sending::Warning {
                        code: mailroom_shared::sending::CREDENTIAL_EXPIRING.into(),
                        message: "expires".into(),
                        hint: "renew".into(),
                        at: "2027-01-01T00:00:00Z".into(),
                        // Absent for one in two (a warning about several profiles).
                        profile: (n % 2 == 0).then(|| "prf_b".into()),
                    })
                    .into_iter()
                    .collect(),
                profiles: (0..(n % 3) as u8)
                    .map(|i| mailroom_shared::profiles::ProfileState {
                        id: format!("prf_{i}"),
                        name: format!("Tenant “{i}”"),
                        paused: (i == 1).then(|| Paused {
                            since: "2026-11-26T10:00:00Z".into(),
                            stage,
                            code: Some("535".into()),
                            message: "paused".into(),
                            hint: None,
                        }),
                        usage: mailroom_shared::profiles::ProfileUsage {
                            recipients_today: 9_000 + u64::from(i),
                            messages_last_minute: u64::from(i),
                        },
                        limits: mailroom_shared::profiles::ProfileLimits {
                            recipients_per_day: (i == 0).then_some(10_000),
                            messages_per_minute: Some(30),
                            connections: None,
                        },
                    })
                    .collect(),
            };
            let text = serde_json::to_string(&q).unwrap();
            assert_eq!(queue_state(&parsed(&text)).as_ref(), Some(&q), "{text}");
            // `GET /api/profiles/{id}`: its limits as set, each null or a number.
            let limits = mailroom_shared::profiles::ProfileLimits {
                recipients_per_day: (n % 2 == 0).then_some(9_999_999),
                messages_per_minute: (n % 3 == 0).then_some(100_000),
                connections: (n % 4 != 0).then_some(32),
            };
            let profile = mailroom_shared::profiles::Profile {
                id: "prf_1".into(),
                name: "Tenant".into(),
                settings: None,
                version: n,
                limits,
                usage: Default::default(),
                paused: None,
            };
            let text = serde_json::to_string(&profile).unwrap();
            assert_eq!(
                mailroom_frontend::read::limits_of_profile(&parsed(&text)),
                Some(limits),
                "{text}"
            );
            let certs = mailroom_shared::api::Certificates {
                active: (n % 2 == 0).then(|| mailroom_shared::api::CertInfo {
                    subject: "CN=Mailroom".into(),
                    thumbprint_sha1: "AB".repeat(20),
                    thumbprint_sha256: "CD".repeat(32),
                    not_before: "2026-12-01T00:00:00Z".into(),
                    not_after: "2027-12-01T00:00:00Z".into(),
                    generated: n % 4 == 0,
                }),
                pending: None,
            };
            let text = serde_json::to_string(&certs).unwrap();
            assert_eq!(
                mailroom_frontend::read::certificates(&parsed(&text)).as_ref(),
                Some(&certs),
                "{text}"
            );
            let r = TestResult {
                ok: n % 2 == 0,
                stage: (n % 2 == 1).then_some(stage),
                code: Some("AADSTS7000215".into()),
                message: "m".into(),
                hint: None,
                stages: vec![StageTiming {
                    name: stage,
                    ok: true,
                    ms: n,
                }],
                transcript: vec![
                    TranscriptLine {
                        dir: Direction::Client,
                        line: "EHLO x".into(),
                    },
                    TranscriptLine {
                        dir: Direction::Server,
                        line: "250 ok".into(),
                    },
                ],
                token_claims: (n % 2 == 0).then(|| TokenClaims {
                    aud: Some("https://outlook.office365.com".into()),
                    tid: None,
                    appid: Some("a".into()),
                    roles: vec!["SMTP.SendAsApp".into()],
                    exp: Some(1_795_000_000),
                }),
            };
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(test_result(&parsed(&text)).as_ref(), Some(&r), "{text}");
        }
    }
    assert_eq!(n as usize, Status::ALL.len() * Stage::ALL.len());
    for bad in [
        r#"{"id": "m", "from": "f", "status": "lost", "size": 1, "created_at": "t", "updated_at": "t", "attempt_count": 0}"#,
        r#"{"id": "m", "from": "f", "status": "sent", "size": -1, "created_at": "t", "updated_at": "t", "attempt_count": 0}"#,
        r#"{"id": "m", "from": "f", "status": "sent", "size": 1, "created_at": "t", "updated_at": "t", "attempt_count": 0, "to": "x"}"#,
        r#"{"id": "m", "from": "f", "status": "sent", "size": 1, "created_at": "t", "updated_at": "t", "attempt_count": 0, "last_error": {"stage": "mars", "message": "m"}}"#,
    ] {
        assert_eq!(summary(&parsed(bad)), None, "{bad}");
    }
    assert_eq!(queue_state(&parsed(r#"{"counts": {"queued": "4"}}"#)), None);
    assert_eq!(queue_state(&parsed(r#"{"paused": null}"#)), None);
    assert_eq!(
        test_result(&parsed(
            r#"{"ok": true, "message": "m", "transcript": [{"dir": "up", "line": "x"}]}"#
        )),
        None
    );
}

/// Activity's reducer: a refresh replaces the rows it covers and keeps
/// older pages, "Load more" appends without twins, details only land on the
/// open message, and Retry replaces its row and says so.
#[wasm_bindgen_test]
fn the_activity_reducer_merges_pages_and_keeps_the_open_message() {
    use mailroom_frontend::hooks::activity::{Filter, Page};
    use mailroom_frontend::hooks::{ActivityAction, ActivityState};
    use mailroom_shared::sending::{Details, Status, Summary};
    use std::rc::Rc;
    use yew::functional::Reducible;
    let row = |i: u32, status: Status| Summary {
        id: format!("msg_{i}"),
        app: None,
        from: "f".into(),
        to: Vec::new(),
        subject: format!("s{i}"),
        size: 1,
        status,
        created_at: "t".into(),
        updated_at: "t".into(),
        attempt_count: 0,
        last_error: None,
        profile: "default".into(),
    };
    let ids = |s: &ActivityState| s.messages.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    let page = |from: u32, to: u32, next: Option<&str>| Page {
        messages: (from..to).rev().map(|i| row(i, Status::Queued)).collect(),
        next: next.map(str::to_string),
    };
    let s = Rc::new(ActivityState::default());
    // msg_9..msg_7, then "Load more" msg_6..msg_4 (msg_7 again is no twin).
    let s = s.reduce(ActivityAction::First {
        page: page(7, 10, Some("msg_7")),
        limit: 3,
    });
    assert!(s.loaded);
    let s = s.reduce(ActivityAction::More(page(4, 8, Some("msg_4"))));
    assert_eq!(
        ids(&s),
        ["msg_9", "msg_8", "msg_7", "msg_6", "msg_5", "msg_4"]
    );
    // A refresh of the first 3 (a new message came): older rows stay, the cursor too.
    let s = s.reduce(ActivityAction::First {
        page: page(8, 11, Some("msg_8")),
        limit: 3,
    });
    assert_eq!(
        ids(&s),
        ["msg_10", "msg_9", "msg_8", "msg_6", "msg_5", "msg_4"]
    );
    assert_eq!(s.next.as_deref(), Some("msg_4"));
    // Details land only on the open message.
    let s = s.reduce(ActivityAction::Toggle("msg_9".into()));
    let d = |i| Details {
        summary: row(i, Status::Failed),
        recipients: Vec::new(),
        attempts: Vec::new(),
        next_attempt_at: None,
        message_id: None,
    };
    let s = s.reduce(ActivityAction::Details(d(8)));
    assert_eq!(s.details, None, "not the open one");
    let s = s.reduce(ActivityAction::Details(d(9)));
    assert_eq!(
        s.details.as_ref().map(|d| d.summary.id.as_str()),
        Some("msg_9")
    );
    // Retry replaces the row and says so.
    let s = s.reduce(ActivityAction::Changed {
        summary: row(9, Status::Queued),
        retried: true,
    });
    assert_eq!(s.notice.as_deref(), Some("Queued again: msg_9"));
    assert_eq!(s.messages[1].status, Status::Queued);
    // Closing forgets the details; a failure keeps the rows.
    let s = s.reduce(ActivityAction::Toggle("msg_9".into()));
    assert_eq!((s.open.as_deref(), s.details.as_ref()), (None, None));
    let s = s.reduce(ActivityAction::Failed("offline".into()));
    assert_eq!((s.error.as_deref(), s.messages.len()), (Some("offline"), 6));

    // A link opens a message to bring into sight; why its details did not
    // come lands only on it, and only while it has none.
    let failed = Filter {
        status: "failed".into(),
        ..Filter::default()
    };
    let s = s.reduce(ActivityAction::Linked {
        filter: failed.clone(),
        open: Some("msg_3".into()),
    });
    assert_eq!(
        (&s.filter, s.open.as_deref(), s.reveal),
        (&failed, Some("msg_3"), true)
    );
    let s = s.reduce(ActivityAction::DetailsFailed("msg_9".into(), "gone".into()));
    assert_eq!(s.details_error, None, "not the open one");
    let s = s.reduce(ActivityAction::DetailsFailed("msg_3".into(), "gone".into()));
    assert_eq!(s.details_error.as_deref(), Some("gone"));
    let s = s.reduce(ActivityAction::Revealed);
    assert!(!s.reveal);
    let mut three = d(9);
    three.summary.id = "msg_3".into();
    let s = s.reduce(ActivityAction::Details(three));
    assert_eq!(s.details_error, None, "the details came after all");
    let s = s.reduce(ActivityAction::DetailsFailed(
        "msg_3".into(),
        "offline".into(),
    ));
    assert_eq!(
        s.details_error, None,
        "a failed refresh keeps the details shown"
    );
    // Another filter closes the open message.
    let s = s.reduce(ActivityAction::Filter(Filter::default()));
    assert_eq!((s.open.as_deref(), s.details.as_ref()), (None, None));
}

/// Activity's address names its filter (`#/activity?status=…&q=…&app=…`),
/// decoded; a status the queue has not, or a search longer than the server
/// takes, is no filter, and the address written back is the one read.
#[wasm_bindgen_test]
fn activity_reads_and_writes_its_filter_in_the_address() {
    use mailroom_frontend::hooks::activity::Filter;
    let hash = "#/activity?status=failed&q=Invoice%207%20%26%20co&app=trusted%20network%2010.0.0.5&profile=billing&message=msg_1";
    let f = Filter::from_hash(hash);
    assert_eq!(
        f,
        Filter {
            status: "failed".into(),
            query: "Invoice 7 & co".into(),
            app: "trusted network 10.0.0.5".into(),
            profile: "billing".into(),
        }
    );
    assert_eq!(f.hash(Some("msg_1")), hash);
    assert_eq!(Filter::from_hash("#/activity?status=bogus").status, "");
    let long = ["#/activity?q=", &"x".repeat(1001)].concat();
    assert_eq!(Filter::from_hash(&long).query, "");
    let most = ["#/activity?q=", &"x".repeat(1000)].concat();
    assert_eq!(Filter::from_hash(&most).query.len(), 1000);
    // Characters, as the server counts them, not bytes.
    let wide = ["#/activity?q=", &"%C3%A9".repeat(1000)].concat();
    assert_eq!(Filter::from_hash(&wide).query.chars().count(), 1000);
    assert_eq!(Filter::default().hash(None), "#/activity");
}

/// The page reads `GET /api/settings` and error bodies by hand
/// (`mailroom_frontend::read`): each reader gives back exactly what
/// serde_json wrote on the server side, for every enum value, and refuses
/// what serde would refuse.
#[wasm_bindgen_test]
fn the_readers_take_what_serde_json_writes() {
    use mailroom_frontend::read::{error_body, settings_response};
    use mailroom_shared::api::ErrorBody;
    use mailroom_shared::FieldMessages;
    use mailroom_shared::{AuthMethod, Cloud, EnumId, Security};

    let same = |r: SettingsResponse| {
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(settings_response(&parsed(&text)), Some(r), "{text}");
    };
    same(SettingsResponse::default());
    let mut n = 0u64;
    for &provider in Provider::ALL {
        for &auth in AuthMethod::ALL {
            for &cloud in Cloud::ALL {
                for &security in Security::ALL {
                    n += 1;
                    let mut s = Settings::for_provider(provider);
                    s.auth_method = auth;
                    s.cloud = cloud;
                    s.security = security;
                    s.port = (n * 997 % 65535) as u16;
                    s.tenant_id = n
                        .is_multiple_of(2)
                        .then(|| mailroom_shared::fixtures::TENANT.into());
                    s.client_hostname = n.is_multiple_of(3).then(|| "relay.contoso.com".into());
                    s.username = Some(mailroom_shared::fixtures::mailer());
                    s.sender_name = "“Quoted” \\ \"name\"".into();
                    s.send_as_confirmed = !n.is_multiple_of(2);
                    s.transport = if n.is_multiple_of(7) {
                        mailroom_shared::Transport::Graph
                    } else {
                        mailroom_shared::Transport::Smtp
                    };
                    if n.is_multiple_of(3) {
                        s.client_credential = mailroom_shared::ClientCredential::Certificate;
                    } else {
                        s.client_secret_expires = Some("2027-06-30".into());
                    }
                    same(SettingsResponse {
                        settings: Some(PublicSettings::new(
                            s,
                            StoredSecrets {
                                client_secret: n.is_multiple_of(2),
                                password: n.is_multiple_of(5),
                                ..StoredSecrets::default()
                            },
                        )),
                        version: n * 1_000_003,
                        updated_at: Some("2026-11-26T10:00:00Z".into()),
                    });
                }
            }
        }
    }
    assert!(n >= 2 * 3 * 2 * 3, "every enum value was read: {n}");

    // Absent settings fields take their defaults, as the server's do.
    let r = settings_response(&parsed(r#"{"settings": {"host": "h"}, "version": 2}"#)).unwrap();
    assert_eq!(r.settings.unwrap().host, "h");
    for bad in [
        r#"{"settings": null}"#,
        r#"{"settings": null, "version": "2"}"#,
        r#"{"settings": null, "version": 1.5}"#,
        r#"{"settings": {"provider": "aol"}, "version": 1}"#,
        r#"{"settings": {"port": 70000}, "version": 1}"#,
        r#"{"settings": {"tenant_id": 7}, "version": 1}"#,
        r#"{"settings": "yes", "version": 1}"#,
        r#"[1, 2]"#,
    ] {
        assert_eq!(settings_response(&parsed(bad)), None, "{bad}");
    }

    let body = ErrorBody {
        message: "The settings are not valid.".into(),
        errors: FieldMessages::from([
            ("port".to_string(), vec!["a".to_string(), "b".to_string()]),
            ("tenant_id".to_string(), vec!["c".to_string()]),
        ]),
    };
    let text = serde_json::to_string(&body).unwrap();
    assert_eq!(error_body(&parsed(&text)), Some(body));
    assert_eq!(
        error_body(&parsed(r#"{"message": "Not found."}"#)).map(|b| b.errors.len()),
        Some(0)
    );
    assert_eq!(error_body(&parsed(r#"{"errors": {}}"#)), None);
}

#[wasm_bindgen_test]
async fn unsaved_changes_guard_the_page() {
    let root = mount_form(valid_initial()).await;
    let window = web_sys::window().unwrap();
    // Earlier tests' pages stay mounted: count this form's part only.
    let before = holders();
    type_into(&root, "sender_name", "Renamed").await;
    assert_eq!(holders(), before + 1, "leaving now asks first");
    assert!(window.onbeforeunload().is_some());
}

#[wasm_bindgen_test]
async fn test_dialog_validates_the_recipient_and_closes_with_escape() {
    let root = mount_form(valid_initial()).await;
    let opener: HtmlElement = find(&root, "#test-button").dyn_into().unwrap();
    opener.focus().unwrap();
    opener.click();
    yew::scheduler::flush().await;
    let dialog: web_sys::HtmlDialogElement = find(&root, "dialog#test-dialog").dyn_into().unwrap();
    assert!(dialog.open(), "opened with showModal");
    assert!(
        dialog.matches(":modal").unwrap(),
        "modal: the page behind it is inert"
    );
    assert_eq!(active_id(), "recipient", "focus moves into the dialog");
    let user = format!("{}@{}", "mailer", "contoso.com");
    let recipient: HtmlInputElement = find(&root, "#recipient").dyn_into().unwrap();
    assert_eq!(recipient.value(), user, "prefilled with the username");
    type_into(&root, "recipient", "not-an-address").await;
    assert!(text_of(&root, "#recipient-error")
        .unwrap()
        .contains("recipient address"));
    assert_eq!(
        find(&root, "#recipient")
            .get_attribute("aria-invalid")
            .as_deref(),
        Some("true")
    );
    type_into(&root, "recipient", &user).await;
    assert!(error_text(&root, "recipient").is_empty());
    let init = web_sys::KeyboardEventInit::new();
    init.set_key("Escape");
    init.set_bubbles(true);
    let escape =
        web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap();
    find(&root, ".dialog").dispatch_event(&escape).unwrap();
    yew::scheduler::flush().await;
    assert!(
        root.query_selector(".dialog").unwrap().is_none(),
        "Escape closes the dialog"
    );
    assert_eq!(active_id(), "test-button", "focus returns to the opener");

    // Opened again, it starts afresh: the username again, nothing touched.
    opener.click();
    yew::scheduler::flush().await;
    type_into(&root, "recipient", "half-typed").await;
    find(&root, ".dialog").dispatch_event(&escape).unwrap();
    yew::scheduler::flush().await;
    opener.click();
    yew::scheduler::flush().await;
    let recipient: HtmlInputElement = find(&root, "#recipient").dyn_into().unwrap();
    assert_eq!(recipient.value(), user, "the recipient is guessed afresh");
    assert!(error_text(&root, "recipient").is_empty(), "and not marked");
    assert_eq!(active_id(), "recipient");
}

#[wasm_bindgen_test]
async fn a_stored_secret_turns_required_when_its_destination_changes() {
    // Office 365 OAuth with a stored client secret.
    let root = mount_form(valid_initial()).await;
    let placeholder = |root: &Element| find(root, "#client_secret").get_attribute("placeholder");
    assert_eq!(
        placeholder(&root).as_deref(),
        Some("stored — leave empty to keep")
    );
    assert!(error_text(&root, "client_secret").is_empty());

    click(&root, "#advanced summary").await;
    type_into(&root, "host", "smtp.attacker.example").await;
    assert_eq!(placeholder(&root), None, "no longer offered as stored");
    let message = text_of(&root, "#client_secret-error").unwrap_or_default();
    assert!(
        message.contains(
            "Enter the client secret again: a stored secret is only sent to the server it was saved for."
        ),
        "{message}"
    );
    assert_eq!(
        find(&root, "#client_secret")
            .get_attribute("aria-invalid")
            .as_deref(),
        Some("true")
    );

    // Back to the saved host: the stored secret may be used again.
    type_into(&root, "host", "smtp.office365.com").await;
    assert_eq!(
        placeholder(&root).as_deref(),
        Some("stored — leave empty to keep")
    );
    assert!(error_text(&root, "client_secret").is_empty());
}

#[wasm_bindgen_test]
fn form_state_debug_masks_typed_secrets() {
    use mailroom_frontend::state::{Action, Field, FormState};
    use std::rc::Rc;
    use yew::Reducible;
    let st = Rc::new(FormState::default())
        .reduce(Action::Set(
            Field::ClientSecret,
            "typed-secret-value".into(),
        ))
        .reduce(Action::Set(Field::Password, "typed-password".into()));
    let shown = format!("{st:?}");
    assert!(
        !shown.contains("typed-secret-value") && !shown.contains("typed-password"),
        "{shown}"
    );
    assert!(shown.contains("*****"), "{shown}");
}

#[wasm_bindgen_test]
async fn messages_are_polite_and_every_description_exists() {
    let root = mount_form(valid_initial()).await;
    let region = find(&root, "#tenant_id-error");
    assert_eq!(
        region.get_attribute("aria-live").as_deref(),
        Some("polite"),
        "in the page before any error"
    );
    type_into(&root, "tenant_id", "nope").await;
    let region = find(&root, "#tenant_id-error");
    assert!(
        region.get_attribute("role").is_none(),
        "no alert on every keystroke"
    );
    assert!(!error_text(&root, "tenant_id").is_empty());
    for id in [
        "cloud",
        "security",
        "tenant_id",
        "client_secret",
        "provider",
    ] {
        let described = find(&root, &format!("#{id}"))
            .get_attribute("aria-describedby")
            .unwrap_or_default();
        for target in described.split_whitespace() {
            assert!(
                root.query_selector(&format!("#{target}"))
                    .unwrap()
                    .is_some(),
                "#{id} is described by a missing #{target}"
            );
        }
    }
}

/// The bulk retry's answer as serde_json writes it.
#[wasm_bindgen_test]
fn the_bulk_retry_reader_matches_the_shared_type() {
    let r = mailroom_shared::sending::Retried {
        retried: 3,
        skipped: 1,
        more: true,
    };
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(mailroom_frontend::read::retried(&parsed(&text)), Some(r));
    assert_eq!(mailroom_frontend::read::retried(&parsed("[]")), None);
}

/// The webhook readers against serde_json's output of the shared types.
#[wasm_bindgen_test]
fn webhook_readers_match_the_shared_types() {
    use mailroom_frontend::read::{delivery_list, webhook_created, webhook_list, webhook_test};
    use mailroom_shared::webhooks::*;
    let parsed = |text: &str| js_sys::JSON::parse(text).unwrap();
    for format in Format::ALL {
        let w = Webhook {
            id: "wh_1".into(),
            url: "https://x.example/h".into(),
            events: vec!["message.sent".into()],
            format: *format,
            created_at: "2026-12-01T00:00:00Z".into(),
            last_success_at: Some("2026-12-01T01:00:00Z".into()),
            last_failure_at: None,
            old_secret_until: None,
        };
        // With a replaced secret still signing, and without (left out).
        let signing = Webhook {
            old_secret_until: Some("2026-12-02T00:00:00Z".into()),
            ..w.clone()
        };
        let list = WebhookList {
            webhooks: vec![w.clone(), signing],
        };
        let text = serde_json::to_string(&list).unwrap();
        assert_eq!(
            webhook_list(&parsed(&text)),
            Some(list.webhooks.clone()),
            "{text}"
        );
        let made = WebhookCreated {
            webhook: w,
            secret: "whsec_x".into(),
        };
        let text = serde_json::to_string(&made).unwrap();
        assert_eq!(
            webhook_created(&parsed(&text)),
            Some(("wh_1".into(), "whsec_x".into()))
        );
    }
    let t = WebhookTest {
        ok: true,
        status: Some(204),
        message: "ok".into(),
    };
    assert_eq!(
        webhook_test(&parsed(&serde_json::to_string(&t).unwrap())),
        Some((true, "ok".into()))
    );
    let d = DeliveryList {
        deliveries: vec![Delivery {
            id: "msg_1".into(),
            event: "message.sent".into(),
            at: "2026-12-01T00:00:00Z".into(),
            attempts: 2,
            status: "delivered".into(),
            last_status: None,
            last_error: Some("HTTP 500".into()),
        }],
    };
    let text = serde_json::to_string(&d).unwrap();
    assert_eq!(delivery_list(&parsed(&text)), Some(d.deliveries), "{text}");
    assert_eq!(webhook_list(&parsed(r#"{"webhooks": [{"id": 1}]}"#)), None);
}
