//! The sign-in screen: the admin token, exchanged for a session cookie.

use gloo_net::http::Method;
use mailroom_shared::api::LoginRequest;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::api::{encode, fetch};

#[derive(Properties, PartialEq)]
pub struct SignInProps {
    /// Called once the session cookie is set.
    pub on_signed_in: Callback<()>,
    /// Why the screen is shown, if not the first visit.
    #[prop_or_default]
    pub notice: Option<AttrValue>,
}

/// Asks for the admin token.
#[function_component(SignIn)]
pub fn sign_in(props: &SignInProps) -> Html {
    let token = use_state(String::new);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    let onsubmit = {
        let (token, error, busy, done) = (
            token.clone(),
            error.clone(),
            busy.clone(),
            props.on_signed_in.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if token.trim().is_empty() {
                error.set(Some("Enter the admin token.".into()));
                return;
            }
            let body = LoginRequest {
                token: token.trim().to_string(),
            };
            let (error, busy, done) = (error.clone(), busy.clone(), done.clone());
            busy.set(true);
            crate::spawn(async move {
                let result = fetch(Method::POST, "/api/login", encode(&body)).await;
                busy.set(false);
                match result {
                    Ok(_) => done.emit(()),
                    Err(e) => error.set(Some(e.message().to_string())),
                }
            });
        })
    };
    let oninput = {
        let token = token.clone();
        Callback::from(move |e: InputEvent| {
            token.set(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    html! {
        <main class="sign-in">
            <form {onsubmit} novalidate=true>
                <h1>{ "Mailroom" }</h1>
                <p>{ "Sign in to configure the organisation's outgoing email server." }</p>
                if let Some(n) = &props.notice {
                    <p class="notice" role="status">{ n.clone() }</p>
                }
                <div class={classes!("field", error.is_some().then_some("invalid"))}>
                    <label for="admin-token">{ "Admin token" }</label>
                    <input id="admin-token" type="password" autocomplete="current-password" value={(*token).clone()}
                        aria-invalid={if error.is_some() { "true" } else { "false" }}
                        aria-describedby="admin-token-help admin-token-error" {oninput} />
                    <p class="help" id="admin-token-help">
                        { "Printed once when Mailroom first started, and kept in the data dir's admin-token file (or set with --admin-token)." }
                    </p>
                    if let Some(e) = &*error {
                        <div class="error" id="admin-token-error" role="alert"><p>{ e.clone() }</p></div>
                    }
                </div>
                <button type="submit" class="primary" disabled={*busy}>{ if *busy { "Signing in…" } else { "Sign in" } }</button>
            </form>
        </main>
    }
}
