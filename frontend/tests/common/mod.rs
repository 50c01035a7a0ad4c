//! Helpers the browser test files share.

use mailroom_shared::api::{PublicSettings, SettingsResponse};
use mailroom_shared::StoredSecrets;
use web_sys::Element;

/// A new, empty root for one test's component. Earlier tests' roots go, so
/// ids stay unique; the runner's own nodes stay.
pub fn fresh_root() -> Element {
    // No hash left by a test before (Activity writes its filter there, and
    // the page opens the view a hash names).
    let window = web_sys::window().unwrap();
    let location = window.location();
    let plain = [location.pathname().unwrap(), location.search().unwrap()].concat();
    window
        .history()
        .unwrap()
        .replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&plain))
        .unwrap();
    // The page edits the default profile again (a test that switched
    // profiles left its own there, and the form's calls would go to it).
    mailroom_frontend::api::set_profile(mailroom_shared::profiles::DEFAULT_PROFILE);
    mailroom_frontend::api::set_new_profile(None);
    let doc = window.document().unwrap();
    let body = doc.body().unwrap();
    let old = doc.query_selector_all(".test-root").unwrap();
    for i in 0..old.length() {
        if let Some(node) = old.item(i) {
            body.remove_child(&node).unwrap();
        }
    }
    let root = doc.create_element("div").unwrap();
    root.set_class_name("test-root");
    body.append_child(&root).unwrap();
    root
}

/// Saved Office 365 OAuth settings with a stored client secret, version 1.
pub fn valid_initial() -> SettingsResponse {
    saved(
        mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587),
        StoredSecrets {
            client_secret: true,
            ..StoredSecrets::default()
        },
    )
}

/// `settings` as saved at version 1, with the secrets `stored` names (the
/// page tests'; the views tests start from [`valid_initial`]).
#[allow(dead_code)]
pub fn saved(settings: mailroom_shared::Settings, stored: StoredSecrets) -> SettingsResponse {
    SettingsResponse {
        settings: Some(PublicSettings::new(settings, stored)),
        version: 1,
        updated_at: None,
    }
}
