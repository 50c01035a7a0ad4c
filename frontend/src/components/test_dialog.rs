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

use super::field::field_messages;
use crate::api::{encode, json_body, ApiError};
use crate::markup::{copy_click, hint, stage_line, Markup};

/// Under a passed test: accepted is not yet in the inbox, and where a test
/// email that never arrives is found (by the Message-ID the result names).
const NOT_ARRIVED: &str = "Accepted is not yet in the inbox: if the email has not arrived within a few minutes, look in the Junk Email folder. On Office 365, quarantine (Microsoft Defender portal › Email & collaboration › Review › Quarantine) and message trace (Exchange admin center › Mail flow › Message trace) find it by its Message-ID.";

/// The stages a test runs, in order, as the result's `stages` names them.
pub fn progress_steps(oauth: bool) -> Vec<&'static str> {
    let mut steps = vec!["connect", "tls", "auth", "send"];
    if oauth {
        steps.insert(0, "token");
    }
    steps
}

/// The dialog's state, held by the settings form (a hook and a view function
/// rather than a component: one component type less in the bundle).
#[derive(Clone)]
pub struct TestState {
    /// The dialog shows.
    pub open: UseStateHandle<bool>,
    recipient: UseStateHandle<String>,
    touched: UseStateHandle<bool>,
    running: UseStateHandle<bool>,
    result: UseStateHandle<Option<TestResult>>,
    error: UseStateHandle<Option<String>>,
    dialog: NodeRef,
}

impl TestState {
    /// Opens the dialog afresh, the recipient guessed as `recipient`.
    pub fn show(&self, recipient: String) {
        self.recipient.set(recipient);
        self.touched.set(false);
        self.result.set(None);
        self.error.set(None);
        self.open.set(true);
    }
}

/// The dialog's state; while open, it is a modal with the recipient focused.
#[hook]
pub fn use_test_dialog() -> TestState {
    let st = TestState {
        open: use_state(|| false),
        recipient: use_state(String::new),
        touched: use_state(|| false),
        running: use_state(|| false),
        result: use_state(|| None::<TestResult>),
        error: use_state(|| None::<String>),
        dialog: use_node_ref(),
    };
    crate::hooks::use_modal(*st.open, st.dialog.clone(), AttrValue::Static("recipient"));
    st
}

/// What the dialog tests and whom it tells.
pub struct TestDialogProps {
    /// The unsaved settings to test.
    pub settings: Settings,
    /// A 401 happened.
    pub on_unauthorized: Callback<()>,
    /// The test succeeded, for exactly these settings.
    pub on_passed: Callback<Settings>,
    /// Saves the settings tested (offered once the test passed).
    pub on_save: Callback<()>,
}

/// The dialog, while `st.open`.
pub fn test_dialog(st: &TestState, p: TestDialogProps) -> Html {
    if !*st.open {
        return Html::default();
    }
    let TestState {
        recipient,
        touched,
        running,
        result,
        error,
        dialog,
        ..
    } = st.clone();
    let oauth = p.settings.auth_method == mailroom_shared::AuthMethod::OAuth2ClientCredentials;
    let steps = progress_steps(oauth);
    let recipient_error = check_recipient(&recipient);
    let on_close = {
        let open = st.open.clone();
        Callback::from(move |()| open.set(false))
    };

    let send = {
        let (recipient, touched, running, result, error) = (
            recipient.clone(),
            touched.clone(),
            running.clone(),
            result.clone(),
            error.clone(),
        );
        let settings = p.settings;
        let on_unauthorized = p.on_unauthorized;
        let on_passed = p.on_passed;
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
                let r = json_body(
                    Method::POST,
                    &crate::api::profile_path("/test"),
                    encode(&body),
                )
                .await;
                running.set(false);
                match r {
                    Ok(r) => match crate::read::test_result(&r) {
                        Some(r) => {
                            if r.ok {
                                on_passed.emit(tested);
                            }
                            result.set(Some(r));
                        }
                        None => error.set(Some(
                            "The server's answer was not understood. Reload the page: the server may be newer than it."
                                .into(),
                        )),
                    },
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
        let cb = on_close.clone();
        Callback::from(move |_: MouseEvent| cb.emit(()))
    };
    // A passed test's next step is the save: offered here, first.
    let save_now = {
        let (cb, save) = (on_close.clone(), p.on_save);
        Callback::from(move |_: MouseEvent| {
            cb.emit(());
            save.emit(());
        })
    };
    let passed = result.as_ref().is_some_and(|r| r.ok);
    let onkeydown = {
        let cb = on_close.clone();
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
        let cb = on_close;
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
                        { result_html(r) }
                    }
                    <div class="actions">
                        if passed {
                            <button type="button" id="test-save" class="primary" onclick={save_now}>{ "Save these settings" }</button>
                            <button type="submit" disabled={*running}>{ "Send again" }</button>
                        } else {
                            <button type="submit" class="primary" disabled={*running}>
                                { if result.is_some() || error.is_some() { "Retry" } else { "Send test email" } }
                            </button>
                        }
                        <button type="button" id="test-close" onclick={close} disabled={*running}>{ "Close" }</button>
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

/// The outcome of a test: each real stage's outcome, the failed stage, code,
/// message, hint (commands copyable), token claims and transcript, written as
/// HTML text from the JSON.
#[function_component(ResultPanel)]
pub fn result_panel(p: &ResultPanelProps) -> Html {
    result_html(&p.result)
}

/// The outcome of a test as HTML, for the dialog (a function, not a
/// component: one component type less in the bundle).
pub fn result_html(r: &TestResult) -> Html {
    let ok = r.ok;
    let mut m = Markup::default();
    m.open(
        "div",
        &[
            ("class", if ok { "result ok" } else { "result failed" }),
            ("role", "status"),
            ("aria-live", "polite"),
        ],
    )
    .el(
        "h3",
        &[],
        if ok {
            "Success: the test email was accepted"
        } else {
            "The test failed"
        },
    );
    if let Some(stage) = r.stage {
        stage_line(
            &mut m,
            stage.as_str(),
            r.code.as_deref().unwrap_or_default(),
        );
    }
    m.el("p", &[("class", "message")], &r.message);
    if ok {
        m.el("p", &[("class", "help not-arrived")], NOT_ARRIVED);
    }
    if let Some(h) = r.hint.as_deref().filter(|h| !h.is_empty()) {
        m.el("h4", &[], "How to fix it");
        hint(&mut m, h);
    }
    m.open("ul", &[("class", "stages")]);
    for s in &r.stages {
        m.el(
            "li",
            &[("class", if s.ok { "ok" } else { "failed" })],
            &[
                if s.ok { "✓ " } else { "✗ " },
                s.name.as_str(),
                " · ",
                &s.ms.to_string(),
                " ms",
            ]
            .concat(),
        );
    }
    m.close("ul");
    if let Some(claims) = &r.token_claims {
        m.open("details", &[("class", "claims")])
            .el("summary", &[], "Token claims")
            .open("dl", &[]);
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        for (name, value) in [
            ("aud", text(&claims.aud)),
            ("tid", text(&claims.tid)),
            ("appid", text(&claims.appid)),
            ("roles", claims.roles.join(", ")),
            ("exp", claims.exp.map(|e| e.to_string()).unwrap_or_default()),
        ] {
            m.el("dt", &[], name).el("dd", &[], &value);
        }
        m.close("dl").close("details");
    }
    if !r.transcript.is_empty() {
        let mut transcript = String::new();
        for l in &r.transcript {
            transcript.push_str(match l.dir {
                Direction::Client => "C: ",
                Direction::Server => "S: ",
            });
            transcript.push_str(&l.line);
            transcript.push('\n');
        }
        m.open("details", &[("class", "transcript")])
            .el(
                "summary",
                &[],
                &[
                    // A Graph test's transcript starts with its request line.
                    if r.transcript[0].line.starts_with("POST ") {
                        "Graph request and answer ("
                    } else {
                        "SMTP transcript ("
                    },
                    &r.transcript.len().to_string(),
                    " lines, secrets masked)",
                ]
                .concat(),
            )
            .el("pre", &[], &transcript)
            .close("details");
    }
    m.close("div");
    let copy = Callback::from(|e: MouseEvent| {
        copy_click(&e);
    });
    html! { <div onclick={copy}>{ m.html() }</div> }
}
