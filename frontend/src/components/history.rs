//! The history of saves under the settings form: version, time, and the
//! names of the fields that changed, never their values.

use mailroom_shared::sending::History;
use yew::prelude::*;

use super::common::time;
use crate::api::{get, ApiError};

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
    let history = use_state(|| None::<Result<History, String>>);
    {
        let (history, unauthorized) = (history.clone(), p.on_unauthorized.clone());
        use_effect_with(p.saves, move |_| {
            crate::spawn(async move {
                match get::<History>("/api/settings/history").await {
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
                Some(Ok(h)) if h.changes.is_empty() => html! { <p class="help">{ "Nothing saved yet." }</p> },
                Some(Ok(h)) => html! {
                    <table>
                        <caption class="help">{ "Which fields each save changed. Values, secrets above all, are never kept here." }</caption>
                        <thead><tr><th scope="col">{ "Version" }</th><th scope="col">{ "Saved" }</th><th scope="col">{ "Changed fields" }</th></tr></thead>
                        <tbody>
                            { for h.changes.iter().map(|c| html! {
                                <tr key={c.version}>
                                    <td>{ c.version }</td>
                                    <td>{ time(&c.at) }</td>
                                    <td>{ if c.fields.is_empty() { "none".to_string() } else { c.fields.join(", ") } }</td>
                                </tr>
                            }) }
                        </tbody>
                    </table>
                },
            } }
        </section>
    }
}
