//! The Activity view: the queue's counts, the messages newest first with a
//! status filter, search and "load more", and each message's details
//! (recipients with their replies, attempts with stage, code, message and
//! hint) with Retry and Cancel. It refreshes while open, in place: rows are
//! keyed, so the scroll position and an open message stay.

use std::cell::Cell;
use std::rc::Rc;

use gloo_net::http::Method;
use mailroom_shared::sending::{
    AppList, Attempt, MessageList, QueueState, RecipientState, Status, Summary,
};
use serde::Deserialize;
use yew::prelude::*;

use super::code::Hint;
use super::common::{stage_line, status_badge, time};
use crate::api::{decode, fetch, get, ApiError};
use crate::hooks::use_interval;

/// The most rows one refresh asks for (the API's own limit).
const MAX_PAGE: usize = 200;
/// Rows per page.
const PAGE: usize = 50;

/// What the details add to a summary; read from the same answer, so the
/// summary's decoder serves both (no `#[serde(flatten)]` in the bundle).
#[derive(Clone, PartialEq, Deserialize)]
pub struct Extra {
    /// Each recipient.
    pub recipients: Vec<RecipientState>,
    /// Each attempt, oldest first.
    pub attempts: Vec<Attempt>,
}

/// `GET /api/messages?…` for a filter, a search, a page size and a cursor.
pub fn list_path(status: &str, q: &str, limit: usize, before: Option<&str>) -> String {
    let mut path = String::from("/api/messages?limit=");
    path.push_str(&limit.to_string());
    for (key, value) in [
        ("status", status),
        ("q", q.trim()),
        ("before", before.unwrap_or("")),
    ] {
        if !value.is_empty() {
            path.push('&');
            path.push_str(key);
            path.push('=');
            path.push_str(&String::from(js_sys::encode_uri_component(value)));
        }
    }
    path
}

/// Puts a refreshed first page over the rows already shown: rows it covers
/// are replaced, older rows beyond it stay.
pub fn merge(fresh: Vec<Summary>, shown: &[Summary], covered_all: bool) -> Vec<Summary> {
    if covered_all {
        return fresh;
    }
    let mut out = fresh;
    let skip = out.len();
    for s in shown.iter().skip(skip) {
        if !out.iter().any(|o| o.id == s.id) {
            out.push(s.clone());
        }
    }
    out
}

#[derive(Properties, PartialEq)]
pub struct ActivityProps {
    /// The queue's state, polled by the page.
    pub queue: Option<QueueState>,
    /// A call answered 401.
    pub on_unauthorized: Callback<()>,
    /// A retry or cancel changed the queue.
    #[prop_or_default]
    pub on_changed: Callback<()>,
}

#[derive(Clone, PartialEq, Default)]
struct Rows {
    messages: Vec<Summary>,
    next: Option<String>,
    loaded: bool,
}

/// The view.
#[function_component(Activity)]
pub fn activity(p: &ActivityProps) -> Html {
    let status = use_state(String::new);
    let query = use_state(String::new);
    let rows = use_state(Rows::default);
    let error = use_state(|| None::<String>);
    let open = use_state(|| None::<String>);
    let details = use_state(|| None::<(Summary, Extra)>);
    let action = use_state(|| None::<String>);
    // App names by id, for the App column (a revoked app shows its id).
    let apps = use_state(Vec::<(String, String)>::new);
    // Answers to older requests are dropped: typing fast never shows a stale list.
    let generation = use_mut_ref(|| Rc::new(Cell::new(0u32)));
    let generation = generation.borrow().clone();

    // Loads the list: `append` adds the page before `before`; otherwise the
    // first `limit` rows replace (or, past the API's limit, refresh) the list.
    let load = {
        let (rows, error, unauthorized, generation) = (
            rows.clone(),
            error.clone(),
            p.on_unauthorized.clone(),
            generation.clone(),
        );
        Callback::from(
            move |(status, q, limit, before): (String, String, usize, Option<String>)| {
                let (rows, error, unauthorized) =
                    (rows.clone(), error.clone(), unauthorized.clone());
                let append = before.is_some();
                let mine = generation.get() + u32::from(!append);
                generation.set(mine);
                let generation = generation.clone();
                let path = list_path(&status, &q, limit, before.as_deref());
                crate::spawn(async move {
                    let r = match fetch(Method::GET, &path, None).await {
                        Ok(text) => decode::<MessageList>(&text).ok_or_else(|| {
                            ApiError::Other(
                                "The server's answer was not understood; reload the page.".into(),
                            )
                        }),
                        Err(e) => Err(e),
                    };
                    if generation.get() != mine {
                        return;
                    }
                    match r {
                        Ok(list) => {
                            let mut now = (*rows).clone();
                            if append {
                                for m in list.messages {
                                    if !now.messages.iter().any(|s| s.id == m.id) {
                                        now.messages.push(m);
                                    }
                                }
                                now.next = list.next;
                            } else {
                                let covered_all = now.messages.len() <= limit;
                                if covered_all {
                                    now.next = list.next;
                                }
                                now.messages = merge(list.messages, &now.messages, covered_all);
                            }
                            now.loaded = true;
                            rows.set(now);
                            error.set(None);
                        }
                        Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                        Err(e) => error.set(Some(e.message().to_string())),
                    }
                });
            },
        )
    };
    let load_details = {
        let (details, unauthorized) = (details.clone(), p.on_unauthorized.clone());
        Callback::from(move |id: String| {
            let (details, unauthorized) = (details.clone(), unauthorized.clone());
            crate::spawn(async move {
                match fetch(Method::GET, &["/api/messages/", &id].concat(), None).await {
                    Ok(text) => {
                        if let (Some(s), Some(e)) =
                            (decode::<Summary>(&text), decode::<Extra>(&text))
                        {
                            details.set(Some((s, e)));
                        }
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(_) => {}
                }
            });
        })
    };
    {
        let (load, apps) = (load.clone(), apps.clone());
        use_effect_with((), move |()| {
            load.emit((String::new(), String::new(), PAGE, None));
            crate::spawn(async move {
                if let Ok(list) = get::<AppList>("/api/apps").await {
                    apps.set(list.apps.into_iter().map(|a| (a.id, a.name)).collect());
                }
            });
        });
    }
    let app_name = |id: &Option<String>| -> String {
        let id = id.clone().unwrap_or_default();
        apps.iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| n.clone())
            .unwrap_or(id)
    };
    // The refresh while the view is open: the rows shown, and the open message.
    {
        let (load, load_details) = (load.clone(), load_details.clone());
        let (s, q, shown, open) = (
            (*status).clone(),
            (*query).clone(),
            rows.messages.len(),
            (*open).clone(),
        );
        use_interval(
            crate::POLL_MS,
            Callback::from(move |()| {
                load.emit((s.clone(), q.clone(), shown.clamp(PAGE, MAX_PAGE), None));
                if let Some(id) = &open {
                    load_details.emit(id.clone());
                }
            }),
        );
    }

    let on_status = {
        let (status, query, load) = (status.clone(), query.clone(), load.clone());
        Callback::from(move |e: Event| {
            let v = e
                .target_unchecked_into::<web_sys::HtmlSelectElement>()
                .value();
            status.set(v.clone());
            load.emit((v, (*query).clone(), PAGE, None));
        })
    };
    let on_search = {
        let (status, query, load) = (status.clone(), query.clone(), load.clone());
        Callback::from(move |e: InputEvent| {
            let v = e
                .target_unchecked_into::<web_sys::HtmlInputElement>()
                .value();
            query.set(v.clone());
            load.emit(((*status).clone(), v, PAGE, None));
        })
    };
    let more = {
        let (status, query, load, next) = (
            status.clone(),
            query.clone(),
            load.clone(),
            rows.next.clone(),
        );
        Callback::from(move |_: MouseEvent| {
            load.emit(((*status).clone(), (*query).clone(), PAGE, next.clone()));
        })
    };
    let toggle = |id: &str| {
        let (open, details, load_details, id) = (
            open.clone(),
            details.clone(),
            load_details.clone(),
            id.to_string(),
        );
        Callback::from(move |_: MouseEvent| {
            if open.as_deref() == Some(id.as_str()) {
                open.set(None);
            } else {
                open.set(Some(id.clone()));
                details.set(None);
                load_details.emit(id.clone());
            }
        })
    };
    let act = |id: &str, verb: &'static str| {
        let (rows, action, load_details, changed, unauthorized, id) = (
            rows.clone(),
            action.clone(),
            load_details.clone(),
            p.on_changed.clone(),
            p.on_unauthorized.clone(),
            id.to_string(),
        );
        Callback::from(move |_: MouseEvent| {
            let (rows, action, load_details, changed, unauthorized, id) = (
                rows.clone(),
                action.clone(),
                load_details.clone(),
                changed.clone(),
                unauthorized.clone(),
                id.clone(),
            );
            crate::spawn(async move {
                let path = ["/api/messages/", &id, "/", verb].concat();
                match fetch(Method::POST, &path, None).await {
                    Ok(text) => {
                        if let Some(s) = decode::<Summary>(&text) {
                            let mut now = (*rows).clone();
                            if let Some(row) = now.messages.iter_mut().find(|r| r.id == s.id) {
                                *row = s.clone();
                            }
                            rows.set(now);
                            action.set(Some(
                                [
                                    if verb == "retry" {
                                        "Queued again: "
                                    } else {
                                        "Cancelled: "
                                    },
                                    &s.id,
                                ]
                                .concat(),
                            ));
                        }
                        changed.emit(());
                        load_details.emit(id);
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => action.set(Some(e.message().to_string())),
                }
            });
        })
    };

    let count = |s: Status| {
        p.queue
            .as_ref()
            .and_then(|q| q.counts.get(&s).copied())
            .unwrap_or(0)
    };
    html! {
        <section class="view" aria-labelledby="activity-title">
            <h2 id="activity-title" class="view-title" tabindex="-1">{ "Activity" }</h2>
            <ul class="counts" aria-label="Messages by status" id="counts">
                { for Status::ALL.iter().map(|&s| html! {
                    <li>{ status_badge(s) }<strong id={["count-", s.as_str()].concat()}>{ count(s) }</strong></li>
                }) }
            </ul>
            <div class="card">
                <div class="filters">
                    <div class="field">
                        <label for="status-filter">{ "Status" }</label>
                        <select id="status-filter" onchange={on_status}>
                            <option value="" selected={status.is_empty()}>{ "All" }</option>
                            { for Status::ALL.iter().map(|s| html! {
                                <option value={s.as_str()} selected={*status == s.as_str()}>{ s.as_str() }</option>
                            }) }
                        </select>
                    </div>
                    <div class="field grow">
                        <label for="search">{ "Search addresses and subject" }</label>
                        <input id="search" type="search" value={(*query).clone()} oninput={on_search} autocomplete="off" />
                    </div>
                </div>
                if let Some(a) = &*action {
                    <p class="banner success" role="status">{ a.clone() }</p>
                }
                if let Some(e) = &*error {
                    <p class="error" role="alert">{ e.clone() }</p>
                }
                if !rows.loaded {
                    <p class="progress" role="status">{ "Loading…" }</p>
                } else if rows.messages.is_empty() {
                    <p class="help" id="no-messages">{ "No messages match. Messages that apps send show here as soon as they are queued." }</p>
                } else {
                    <div class="table-wrap">
                    <table id="messages">
                        <thead><tr>
                            <th scope="col">{ "Status" }</th><th scope="col">{ "Time" }</th><th scope="col">{ "App" }</th>
                            <th scope="col">{ "From" }</th><th scope="col">{ "To" }</th><th scope="col">{ "Subject" }</th>
                            <th scope="col">{ "Last error" }</th>
                        </tr></thead>
                        <tbody>
                            { for rows.messages.iter().map(|m| {
                                let is_open = open.as_deref() == Some(m.id.as_str());
                                html! {
                                <>
                                <tr key={m.id.clone()} id={["row-", &m.id].concat()} class={m.status.as_str()}>
                                    <td>{ status_badge(m.status) }</td>
                                    <td>{ time(&m.created_at) }</td>
                                    <td title={m.app.clone()}>{ app_name(&m.app) }</td>
                                    <td>{ m.from.clone() }</td>
                                    <td>{ m.to.first().cloned().unwrap_or_default() }
                                        if m.to.len() > 1 { <span class="muted">{ " +" }{ m.to.len() - 1 }</span> }</td>
                                    <td><button type="button" class="link open" aria-expanded={if is_open { "true" } else { "false" }}
                                        aria-controls={["details-", &m.id].concat()} onclick={toggle(&m.id)}>
                                        { if m.subject.is_empty() { "(no subject)".to_string() } else { m.subject.clone() } }</button></td>
                                    <td class="last-error">{ m.last_error.as_ref().map(|e| {
                                        let mut t = e.code.clone().map(|c| [c.as_str(), " "].concat()).unwrap_or_default();
                                        t.push_str(&e.message);
                                        t
                                    }).unwrap_or_default() }</td>
                                </tr>
                                if is_open {
                                    <tr key={["d-", &m.id].concat()} class="details-row">
                                        <td colspan="7" id={["details-", &m.id].concat()}>
                                            { match &*details {
                                                Some((s, e)) if s.id == m.id => details_panel(s, e, act(&s.id, "retry"), act(&s.id, "cancel")),
                                                _ => html! { <p class="progress" role="status">{ "Loading…" }</p> },
                                            } }
                                        </td>
                                    </tr>
                                }
                                </>
                            }}) }
                        </tbody>
                    </table>
                    </div>
                    if rows.next.is_some() {
                        <div class="actions"><button type="button" id="load-more" onclick={more}>{ "Load more" }</button></div>
                    }
                }
            </div>
        </section>
    }
}

/// One message's details, laid out like the test dialog's result.
pub fn details_panel(
    s: &Summary,
    e: &Extra,
    retry: Callback<MouseEvent>,
    cancel: Callback<MouseEvent>,
) -> Html {
    let can_retry = matches!(s.status, Status::Failed | Status::Deferred);
    let can_cancel = matches!(s.status, Status::Queued | Status::Deferred);
    html! {
        <div class="message-details">
            <dl class="pairs">
                <dt>{ "Message" }</dt><dd><code>{ s.id.clone() }</code></dd>
                <dt>{ "Status" }</dt><dd>{ status_badge(s.status) }</dd>
                <dt>{ "Subject" }</dt><dd>{ s.subject.clone() }</dd>
                <dt>{ "From" }</dt><dd>{ s.from.clone() }</dd>
                <dt>{ "Size" }</dt><dd>{ s.size }{ " bytes" }</dd>
                <dt>{ "Queued" }</dt><dd>{ time(&s.created_at) }</dd>
                <dt>{ "Updated" }</dt><dd>{ time(&s.updated_at) }</dd>
            </dl>
            <h4>{ "Recipients" }</h4>
            <table class="recipients">
                <thead><tr><th scope="col">{ "Address" }</th><th scope="col">{ "Status" }</th><th scope="col">{ "Code" }</th><th scope="col">{ "Reply" }</th></tr></thead>
                <tbody>
                    { for e.recipients.iter().map(|r| html! {
                        <tr><td>{ r.address.clone() }</td><td>{ status_badge(r.status) }</td>
                            <td><code>{ r.code.clone().unwrap_or_default() }</code></td><td>{ r.message.clone().unwrap_or_default() }</td></tr>
                    }) }
                </tbody>
            </table>
            <h4>{ "Attempts" }</h4>
            if e.attempts.is_empty() {
                <p class="help">{ "None yet." }</p>
            }
            <ol class="attempts">
                { for e.attempts.iter().map(|a| html! {
                    <li class={classes!("result", if a.ok { "ok" } else { "failed" })}>
                        <p><strong>{ if a.ok { "Accepted" } else { "Failed" } }</strong>{ " · " }{ time(&a.at) }</p>
                        if a.stage.is_some() || a.code.is_some() {
                            { stage_line(a.stage.map(|s| s.as_str()), a.code.as_deref()) }
                        }
                        <p class="message">{ a.message.clone() }</p>
                        if let Some(h) = &a.hint {
                            <h5>{ "How to fix it" }</h5>
                            <Hint text={AttrValue::from(h.clone())} />
                        }
                    </li>
                }) }
            </ol>
            if can_retry || can_cancel {
                <div class="actions">
                    if can_cancel { <button type="button" class="danger" id="cancel-message" onclick={cancel}>{ "Cancel this message" }</button> }
                    if can_retry { <button type="button" class="primary" id="retry-message" onclick={retry}>{ "Retry now" }</button> }
                </div>
            }
        </div>
    }
}
