//! The page's three views, chosen by the URL hash (`#/settings`, `#/apps`,
//! `#/activity`), so reload, back and forward work without a server route.
//! Activity's hash may carry its filter and an open message:
//! `#/activity?status=failed&q=…&app=app_…&profile=…&message=msg_…` (the
//! links of Apps and of webhook posts, and the address while it shows them).

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use yew::prelude::*;

/// A view of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The email server settings form.
    Settings,
    /// The apps that may send, and their keys.
    Apps,
    /// The queue and the messages.
    Activity,
}

impl View {
    /// Every view, in the navigation's order.
    pub const ALL: [View; 3] = [View::Settings, View::Apps, View::Activity];

    /// The view a hash names (its `?…` aside); anything else is the settings.
    pub fn from_hash(hash: &str) -> View {
        let path = hash.trim_start_matches('#');
        match path.split('?').next().unwrap_or(path).trim_matches('/') {
            "apps" => View::Apps,
            "activity" => View::Activity,
            _ => View::Settings,
        }
    }

    /// Its hash.
    pub fn hash(self) -> &'static str {
        match self {
            View::Settings => "#/settings",
            View::Apps => "#/apps",
            View::Activity => "#/activity",
        }
    }

    /// Its name in the navigation.
    pub fn label(self) -> &'static str {
        match self {
            View::Settings => "Settings",
            View::Apps => "Apps",
            View::Activity => "Activity",
        }
    }

    /// The id of its heading, which takes the focus when the view opens.
    pub fn heading_id(self) -> &'static str {
        match self {
            View::Settings => "settings-title",
            View::Apps => "apps-title",
            View::Activity => "activity-title",
        }
    }

    /// The document title while it shows.
    pub fn title(self) -> &'static str {
        match self {
            View::Settings => "Mailroom · Email server settings",
            View::Apps => "Mailroom · Apps",
            View::Activity => "Mailroom · Activity",
        }
    }
}

/// The URL's hash now (`#/activity?app=…`).
pub fn current_hash() -> String {
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default()
}

/// A value of the hash's `?name=value&…`, decoded; `""` when absent.
pub fn hash_value(hash: &str, name: &str) -> String {
    let Some((_, query)) = hash.split_once('?') else {
        return String::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| js_sys::decode_uri_component(value).ok())
        .map(String::from)
        .unwrap_or_default()
}

/// Whether an address's value is shaped like Mailroom's ids (`msg_…`,
/// `prf_…`, `default`): only such a value goes into a request's path, where
/// `..` or `/` would name another route.
pub fn id_like(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A link to a profile's settings (`#/settings?profile=prf_…`): followed,
/// the form edits that profile (the default one too).
pub fn settings_link(profile: &str) -> String {
    let mut query = String::new();
    push_query(&mut query, &[("profile", profile)]);
    ["#/settings?", query.trim_start_matches('&')].concat()
}

/// The address while the form edits `profile`: the default one (or a new
/// one) is plain `#/settings`, so a reload shows the same.
pub fn settings_hash(profile: &str) -> String {
    if profile == mailroom_shared::profiles::DEFAULT_PROFILE || profile.is_empty() {
        "#/settings".into()
    } else {
        settings_link(profile)
    }
}

/// Each pair with a value as `&key=value`, the value encoded (an API
/// path's query, or the address's).
pub fn push_query(path: &mut String, pairs: &[(&str, &str)]) {
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        path.push('&');
        path.push_str(key);
        path.push('=');
        path.push_str(&String::from(js_sys::encode_uri_component(value)));
    }
}

/// Puts `hash` in the address bar without a new history entry or a
/// `hashchange` (the view already shows it).
pub fn replace_hash(hash: &str) {
    if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(hash));
    }
}

/// Calls `on_change` with the URL's hash at each `hashchange` (a link, back,
/// forward, an address typed) while the caller is mounted. The first
/// callback is kept: give it state handles, which always reach the latest.
#[hook]
pub fn use_hashchange(on_change: Callback<String>) {
    use_effect_with((), move |()| {
        let listener = Closure::<dyn Fn()>::new(move || on_change.emit(current_hash()));
        let window = web_sys::window();
        if let Some(w) = &window {
            let _ =
                w.add_event_listener_with_callback("hashchange", listener.as_ref().unchecked_ref());
        }
        move || {
            if let Some(w) = window {
                let _ = w.remove_event_listener_with_callback(
                    "hashchange",
                    listener.as_ref().unchecked_ref(),
                );
            }
        }
    });
}

/// The view the URL names now, following `hashchange` (links, back, forward).
#[hook]
pub fn use_view() -> View {
    let view = use_state(|| View::from_hash(&current_hash()));
    {
        let view = view.clone();
        use_hashchange(Callback::from(move |hash: String| {
            view.set(View::from_hash(&hash))
        }));
    }
    *view
}
