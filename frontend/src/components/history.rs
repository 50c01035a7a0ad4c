//! The history of saves under the settings form: version, time, and the
//! names of the fields that changed, never their values.

use gloo_net::http::Method;
use wasm_bindgen::JsValue;
use yew::prelude::*;

use crate::api::{json, ApiError};
use crate::markup::{items, number, text, Markup};

/// The table of saves, newest first, as HTML text.
fn changes(history: &JsValue) -> Html {
    let changes = items(history, "changes");
    let mut m = Markup::default();
    if changes.is_empty() {
        m.el("p", &[("class", "help")], "Nothing saved yet.");
        return m.html();
    }
    m.open("table", &[])
        .el(
            "caption",
            &[("class", "help")],
            "Which fields each save changed. Values, secrets above all, are never kept here.",
        )
        .head(&["Version", "Saved", "Changed fields"])
        .open("tbody", &[]);
    for c in changes {
        let fields: Vec<String> = items(&c, "fields")
            .iter()
            .filter_map(JsValue::as_string)
            .collect();
        m.open("tr", &[])
            .el("td", &[], &number(&c, "version"))
            .open("td", &[])
            .time(&text(&c, "at"))
            .close("td")
            .el(
                "td",
                &[],
                &if fields.is_empty() {
                    "none".to_string()
                } else {
                    fields.join(", ")
                },
            )
            .close("tr");
    }
    m.close("tbody").close("table");
    m.html()
}

#[derive(Properties, PartialEq)]
pub struct SettingsHistoryProps {
    /// Counts saves made in this page: each one loads the history again.
    pub saves: u32,
    /// A call answered 401.
    pub on_unauthorized: Callback<()>,
}

/// The table of saves.
#[function_component(SettingsHistory)]
pub fn settings_history(p: &SettingsHistoryProps) -> Html {
    let history = use_state(|| None::<Result<JsValue, String>>);
    {
        let (history, unauthorized) = (history.clone(), p.on_unauthorized.clone());
        use_effect_with(p.saves, move |_| {
            crate::spawn(async move {
                match json(Method::GET, "/api/settings/history").await {
                    Ok(h) => history.set(Some(Ok(h))),
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => history.set(Some(Err(e.message().to_string()))),
                }
            });
        });
    }
    html! {
        <section class="card history" aria-labelledby="history-title">
            <h2 id="history-title">{ "History of saves" }</h2>
            { match &*history {
                None => html! { <p class="progress" role="status">{ "Loading…" }</p> },
                Some(Err(m)) => html! { <p class="error" role="alert">{ m.clone() }</p> },
                Some(Ok(h)) => changes(h),
            } }
        </section>
    }
}
