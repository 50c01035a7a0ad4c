//! The "Send test email" dialog, a native `<dialog>` opened with `showModal()`
//! (it traps the focus and makes the page behind it inert; the focus goes back
//! to the button that opened it): recipient, the stages the test will run, and
//! the result with each real stage's outcome, the failed stage, code, message,
//! hint (commands copyable), claims and transcript.

use gloo_net::http::Method;
use mailroom_shared::api::{Direction, TestRequest, TestResult};
use mailroom_shared::validate::check_recipient;
use mailroom_shared::Settings;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::code::Hint;
use super::field::field_messages;
use crate::api::{call, ApiError};

/// The stages a test runs, in order, as the result's `stages` names them.
pub fn progress_steps(oauth: bool) -> Vec<&'static str> {
    let mut steps = vec!["connect", "tls", "auth", "send"];
    if oauth {
        steps.insert(0, "token");
    }
    steps
}

#[derive(Properties, PartialEq)]
pub struct TestDialogProps {
    /// The unsaved settings to test.
    pub settings: Settings,
    /// A first guess for the recipient.
    #[prop_or_default]
    pub default_recipient: AttrValue,
    /// Closes the dialog.
    pub on_close: Callback<()>,
    /// A 401 happened.
    pub on_unauthorized: Callback<()>,
    /// The test succeeded, for exactly these settings.
    #[prop_or_default]
    pub on_passed: Callback<Settings>,
}

/// The dialog.
#[function_component(TestDialog)]
pub fn test_dialog(p: &TestDialogProps) -> Html {
    let recipient = use_state(|| p.default_recipient.to_string());
    let touched = use_state(|| false);
    let running = use_state(|| false);
    let result = use_state(|| None::<TestResult>);
    let error = use_state(|| None::<String>);
    let dialog = use_node_ref();
    let oauth = p.settings.auth_method == mailroom_shared::AuthMethod::OAuth2ClientCredentials;
    let steps = progress_steps(oauth);
    let recipient_error = check_recipient(&recipient);
    crate::hooks::use_modal(dialog.clone(), AttrValue::Static("recipient"));

    let send = {
        let (recipient, touched, running, result, error) = (
            recipient.clone(),
            touched.clone(),
            running.clone(),
            result.clone(),
            error.clone(),
        );
        let settings = p.settings.clone();
        let on_unauthorized = p.on_unauthorized.clone();
        let on_passed = p.on_passed.clone();
        Callback::from(move |()| {
            touched.set(true);
            if *running || check_recipient(&recipient).is_some() {
                return;
            }
            running.set(true);
            result.set(None);
            error.set(None);
            let body = TestRequest {
                settings: settings.clone(),
                recipient: recipient.trim().to_string(),
            };
            let (running, result, error, on_unauthorized, on_passed, tested) = (
                running.clone(),
                result.clone(),
                error.clone(),
                on_unauthorized.clone(),
                on_passed.clone(),
                settings.clone(),
            );
            crate::spawn(async move {
                let r: Result<TestResult, ApiError> =
                    call(Method::POST, "/api/settings/test", Some(&body)).await;
                running.set(false);
                match r {
                    Ok(r) => {
                        if r.ok {
                            on_passed.emit(tested);
                        }
                        result.set(Some(r));
                    }
                    Err(ApiError::Unauthorized(_)) => on_unauthorized.emit(()),
                    Err(ApiError::Invalid(m, errors)) => {
                        let details: Vec<String> = errors.into_values().flatten().collect();
                        error.set(Some([m, details.join(" ")].join(" ")));
                    }
                    Err(e) => error.set(Some(e.message().to_string())),
                }
            });
        })
    };
    let onsubmit = {
        let send = send.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            send.emit(());
        })
    };
    let oninput = {
        let (recipient, touched) = (recipient.clone(), touched.clone());
        Callback::from(move |e: InputEvent| {
            recipient.set(e.target_unchecked_into::<HtmlInputElement>().value());
            touched.set(true);
        })
    };
    let close = {
        let cb = p.on_close.clone();
        Callback::from(move |_: MouseEvent| cb.emit(()))
    };
    let onkeydown = {
        let cb = p.on_close.clone();
        let running = running.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" {
                e.prevent_default();
                if !*running {
                    cb.emit(());
                }
            }
        })
    };
    // The browser's own Escape handling closes a modal dialog: keep it in step.
    let oncancel = {
        let cb = p.on_close.clone();
        let running = running.clone();
        Callback::from(move |e: Event| {
            e.prevent_default();
            if !*running {
                cb.emit(());
            }
        })
    };
    let show_error = *touched && recipient_error.is_some();

    html! {
            <dialog class="dialog" id="test-dialog" ref={dialog} aria-labelledby="test-heading" {onkeydown} {oncancel}>
                <h2 id="test-heading">{ "Send a test email" }</h2>
                <form onsubmit={onsubmit} novalidate=true>
                    <div class={classes!("field", show_error.then_some("invalid"))}>
                        <label for="recipient">{ "Recipient" }</label>
                        <input id="recipient" type="email" autocomplete="email" value={(*recipient).clone()}
                            aria-invalid={if show_error { "true" } else { "false" }}
                            aria-describedby={show_error.then_some("recipient-error")}
                            disabled={*running} {oninput} />
                        { field_messages("recipient", &show_error.then(|| recipient_error.clone()).flatten().into_iter().collect::<Vec<_>>(), &[]) }
                    </div>
                    if *running {
                        <p class="progress" role="status" aria-live="polite">
                            <span class="spinner" aria-hidden="true"></span>{ "Testing… each stage's outcome shows when the server answers." }
                        </p>
                        <ol class="planned" aria-label="Stages to run">
                            { for steps.iter().map(|s| html! { <li>{ format!("○ {s}") }</li> }) }
                        </ol>
                    }
                    if let Some(e) = &*error {
                        <div class="banner error" role="alert">{ e.clone() }</div>
                    }
                    if let Some(r) = &*result {
                        <ResultPanel result={r.clone()} />
                    }
                    <div class="actions">
                        <button type="submit" class="primary" disabled={*running}>
                            { if result.is_some() || error.is_some() { "Retry" } else { "Send test email" } }
                        </button>
                        <button type="button" onclick={close} disabled={*running}>{ "Close" }</button>
                    </div>
                </form>
            </dialog>
    }
}

#[derive(Properties, PartialEq)]
pub struct ResultPanelProps {
    /// The outcome.
    pub result: TestResult,
}

/// The outcome of a test.
#[function_component(ResultPanel)]
pub fn result_panel(p: &ResultPanelProps) -> Html {
    let r = &p.result;
    let transcript: String = r
        .transcript
        .iter()
        .map(|l| {
            format!(
                "{} {}\n",
                if l.dir == Direction::Client {
                    "C:"
                } else {
                    "S:"
                },
                l.line
            )
        })
        .collect();
    html! {
        <div class={classes!("result", if r.ok { "ok" } else { "failed" })} role="status" aria-live="polite">
            <h3>{ if r.ok { "Success: the test email was accepted" } else { "The test failed" } }</h3>
            if let Some(stage) = r.stage {
                <p class="stage">
                    { "Stage: " }<strong>{ stage.as_str() }</strong>
                    if let Some(code) = &r.code { { " · Code: " }<strong class="code">{ code.clone() }</strong> }
                </p>
            }
            <p class="message">{ r.message.clone() }</p>
            if let Some(h) = &r.hint {
                <h4>{ "How to fix it" }</h4>
                <Hint text={AttrValue::from(h.clone())} />
            }
            <ul class="stages">
                { for r.stages.iter().map(|s| html! {
                    <li class={if s.ok { "ok" } else { "failed" }}>{ format!("{} {} · {} ms", if s.ok { "✓" } else { "✗" }, s.name.as_str(), s.ms) }</li>
                }) }
            </ul>
            if let Some(c) = &r.token_claims {
                <details class="claims">
                    <summary>{ "Token claims" }</summary>
                    <dl>
                        <dt>{ "aud" }</dt><dd>{ c.aud.clone().unwrap_or_default() }</dd>
                        <dt>{ "tid" }</dt><dd>{ c.tid.clone().unwrap_or_default() }</dd>
                        <dt>{ "appid" }</dt><dd>{ c.appid.clone().unwrap_or_default() }</dd>
                        <dt>{ "roles" }</dt><dd>{ c.roles.join(", ") }</dd>
                        <dt>{ "exp" }</dt><dd>{ c.exp.map(|e| e.to_string()).unwrap_or_default() }</dd>
                    </dl>
                </details>
            }
            if !r.transcript.is_empty() {
                <details class="transcript">
                    <summary>{ format!("SMTP transcript ({} lines, secrets masked)", r.transcript.len()) }</summary>
                    <pre>{ transcript }</pre>
                </details>
            }
        </div>
    }
}
