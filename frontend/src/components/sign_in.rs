//! The sign-in screen: the admin token, exchanged for a session cookie;
//! and the same form in a dialog when the session ends with the page open.
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
    let intro = html! {
        <>
        <h1>{ "Mailroom" }</h1>
        <p>{ "Sign in to configure the organisation's outgoing email server." }</p>
        if let Some(n) = notice {
            <p class="notice" role="status">{ n.clone() }</p>
        }
        </>
    };
    html! { <main class="sign-in">{ form(st, intro, on_signed_in) }</main> }
}

/// When the session ends while the page is open: the same form in a modal
/// dialog over the page, which stays as it is (unsaved changes, a new key
/// not yet copied) and goes on once signed in again. Escape does not close
/// it: behind it, every call would be refused.
pub fn session_dialog(st: &SignIn, dialog: NodeRef, on_signed_in: Callback<()>) -> Html {
    let intro = html! {
        <>
        <h2 id="session-title">{ "Your session has ended" }</h2>
        <p>{ "Sign in again to continue. The page stays as it is, unsaved changes included." }</p>
        </>
    };
    let oncancel = Callback::from(|e: Event| e.prevent_default());
    // A browser may close it anyway (a second Escape): it opens again
    // while the session is still over.
    let onclose = {
        let dialog = dialog.clone();
        Callback::from(move |_: Event| {
            if let Some(d) = dialog.cast::<web_sys::HtmlDialogElement>() {
                if d.is_connected() {
                    let _ = d.show_modal();
                }
            }
        })
    };
    html! {
        <dialog class="dialog session" id="session-dialog" ref={dialog} aria-labelledby="session-title"
            {oncancel} {onclose}>
            { form(st, intro, on_signed_in) }
        </dialog>
    }
}

fn form(st: &SignIn, intro: Html, on_signed_in: Callback<()>) -> Html {
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
            <form {onsubmit} novalidate=true>
                { intro }
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
    }
}
