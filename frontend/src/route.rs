//! The page's three views, chosen by the URL hash (`#/settings`, `#/apps`,
//! `#/activity`), so reload, back and forward work without a server route.

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

    /// The view a hash names; anything else is the settings.
    pub fn from_hash(hash: &str) -> View {
        match hash.trim_start_matches('#').trim_matches('/') {
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

fn current_hash() -> String {
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default()
}

/// The view the URL names now, following `hashchange` (links, back, forward).
#[hook]
pub fn use_view() -> View {
    let view = use_state(|| View::from_hash(&current_hash()));
    {
        let view = view.clone();
        use_effect_with((), move |()| {
            let listener = Closure::<dyn Fn()>::new(move || {
                view.set(View::from_hash(&current_hash()));
            });
            let window = web_sys::window();
            if let Some(w) = &window {
                let _ = w.add_event_listener_with_callback(
                    "hashchange",
                    listener.as_ref().unchecked_ref(),
                );
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
    *view
}
