//! Mailroom's settings page: a Yew app that runs the shared validation on every
//! keystroke, tests the settings with a real email, and saves them.

pub mod api;
pub mod components;
pub mod hooks;
pub mod state;

use gloo_net::http::Method;
use mailroom_shared::api::SettingsResponse;
use yew::prelude::*;

use api::{call, ApiError};
use components::settings_form::SettingsForm;
use components::sign_in::SignIn;

#[derive(Clone, PartialEq)]
enum Screen {
    Loading,
    SignIn(Option<AttrValue>),
    Ready(SettingsResponse),
    Failed(String),
}

/// The whole page: sign-in gate, then the settings form.
#[function_component(App)]
pub fn app() -> Html {
    let screen = use_state(|| Screen::Loading);
    let load = {
        let screen = screen.clone();
        Callback::from(move |()| {
            let screen = screen.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match call::<SettingsResponse, ()>(Method::GET, "/api/settings", None).await {
                    Ok(r) => screen.set(Screen::Ready(r)),
                    Err(ApiError::Unauthorized(_)) => screen.set(Screen::SignIn(None)),
                    Err(e) => screen.set(Screen::Failed(e.message().to_string())),
                }
            });
        })
    };
    {
        let load = load.clone();
        use_effect_with((), move |()| load.emit(()));
    }
    let unauthorized = {
        let screen = screen.clone();
        Callback::from(move |()| {
            screen.set(Screen::SignIn(Some(AttrValue::Static(
                "Your session has ended. Sign in again to continue.",
            ))))
        })
    };
    let signed_out = {
        let screen = screen.clone();
        Callback::from(move |()| {
            screen.set(Screen::SignIn(Some(AttrValue::Static(
                "You are signed out.",
            ))))
        })
    };
    match &*screen {
        Screen::Loading => {
            html! { <main class="page"><p class="progress" role="status">{ "Loading…" }</p></main> }
        }
        Screen::SignIn(notice) => html! { <SignIn on_signed_in={load} notice={notice.clone()} /> },
        Screen::Ready(r) => {
            html! { <SettingsForm initial={r.clone()} on_unauthorized={unauthorized} on_sign_out={signed_out} /> }
        }
        Screen::Failed(m) => html! {
            <main class="page"><div class="banner error" role="alert">{ m.clone() }</div></main>
        },
    }
}
