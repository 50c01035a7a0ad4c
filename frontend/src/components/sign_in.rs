//! The sign-in screen: the admin token, exchanged for a session cookie.
//!
//! A view function over state the `App` holds (one component type less in
//! the bundle); `use_sign_in` is that state.

use gloo_net::http::Method;
use mailroom_shared::api::LoginRequest;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::api::{encode, fetch};

/// The sign-in form's state: the token input, the last error, a request in flight.
pub struct SignIn {
    /// The token input (read on submit, not on every keystroke).
    pub input: NodeRef,
    /// Why the last attempt failed.
    pub error: UseStateHandle<Option<String>>,
    /// A login request is in flight.
    pub busy: UseStateHandle<bool>,
}

/// The state of the sign-in form.
#[hook]
pub fn use_sign_in() -> SignIn {
    SignIn {
        input: use_node_ref(),
        error: use_state(|| None::<String>),
        busy: use_state(|| false),
    }
}

/// Asks for the admin token; `notice` says why, if not the first visit.
pub fn sign_in(st: &SignIn, notice: Option<&AttrValue>, on_signed_in: Callback<()>) -> Html {
    let onsubmit = {
        let (input, error, busy) = (st.input.clone(), st.error.clone(), st.busy.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let token = input
                .cast::<HtmlInputElement>()
                .map(|i| i.value())
                .unwrap_or_default();
            if token.trim().is_empty() {
                error.set(Some("Enter the admin token.".into()));
                return;
            }
            let body = LoginRequest {
                token: token.trim().to_string(),
            };
            let (error, busy, done) = (error.clone(), busy.clone(), on_signed_in.clone());
            busy.set(true);
            crate::spawn(async move {
                let result = fetch(Method::POST, "/api/login", encode(&body)).await;
                busy.set(false);
                match result {
                    Ok(_) => {
                        // The screen comes back when the session ends: fresh.
                        error.set(None);
                        done.emit(());
                    }
                    Err(e) => error.set(Some(e.message().to_string())),
                }
            });
        })
    };
    let error = &*st.error;
    let busy = *st.busy;
    html! {
        <main class="sign-in">
            <form {onsubmit} novalidate=true>
                <h1>{ "Mailroom" }</h1>
                <p>{ "Sign in to configure the organisation's outgoing email server." }</p>
                if let Some(n) = notice {
                    <p class="notice" role="status">{ n.clone() }</p>
                }
                <div class={if error.is_some() { "field invalid" } else { "field" }}>
                    <label for="admin-token">{ "Admin token" }</label>
                    <input id="admin-token" type="password" autocomplete="current-password" ref={st.input.clone()}
                        aria-invalid={if error.is_some() { "true" } else { "false" }}
                        aria-describedby="admin-token-help admin-token-error" />
                    <p class="help" id="admin-token-help">
                        { "Printed once when Mailroom first started, and kept in the data dir's admin-token file (or set with --admin-token)." }
                    </p>
                    if let Some(e) = error {
                        <div class="error" id="admin-token-error" role="alert"><p>{ e.clone() }</p></div>
                    }
                </div>
                <button type="submit" class="primary" disabled={busy}>{ if busy { "Signing in…" } else { "Sign in" } }</button>
            </form>
        </main>
    }
}
