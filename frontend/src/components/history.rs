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

/// The history as loaded: `None` while loading, or the answer, or why not.
pub type History = UseStateHandle<Option<Result<JsValue, String>>>;

/// Loads the history, and again whenever `saves` changes (each save made in
/// this page counts one). A hook and a view function rather than a component:
/// one component type less in the bundle.
#[hook]
pub fn use_history(saves: u32, new_profile: bool, on_unauthorized: Callback<()>) -> History {
    let history = use_state(|| None::<Result<JsValue, String>>);
    {
        let history = history.clone();
        use_effect_with(saves, move |_| {
            // A new profile: nothing saved yet (an empty listing).
            if new_profile {
                history.set(Some(Ok(JsValue::NULL)));
                return;
            }
            crate::spawn(async move {
                match json(Method::GET, &crate::api::profile_path("/history")).await {
                    Ok(h) => history.set(Some(Ok(h))),
                    Err(ApiError::Unauthorized(_)) => on_unauthorized.emit(()),
                    Err(e) => history.set(Some(Err(e.message().to_string()))),
                }
            });
        });
    }
    history
}

/// The table of saves.
pub fn settings_history(history: &History) -> Html {
    html! {
        <section class="card history" aria-labelledby="history-title">
            <h2 id="history-title">{ "History of saves" }</h2>
            { match &**history {
                None => html! { <p class="progress" role="status">{ "Loading…" }</p> },
                Some(Err(m)) => html! { <p class="error" role="alert">{ m.clone() }</p> },
                Some(Ok(h)) => changes(h),
            } }
        </section>
    }
}
