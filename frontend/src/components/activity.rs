//! The Activity view: the queue's counts, the messages newest first with a
//! status filter, search and "load more", and each message's details
//! (recipients with their replies, attempts with stage, code, message and
//! hint) with Retry and Cancel. It refreshes while open, in place, keeping
//! the scroll position, an open message and the focus.
//!
//! The table is written as HTML text ([`crate::markup`]) from the JSON as the
//! browser parsed it: the biggest view costs little of the bundle.

use gloo_net::http::Method;
use mailroom_shared::sending::Status;
use wasm_bindgen::{JsCast, JsValue};
use yew::prelude::*;

use crate::api::{json, ApiError};
use crate::hooks::use_interval;
use crate::markup::{copy_click, get, hint, items, number, stage_line, text, Markup};

/// The most rows one refresh asks for (the API's own limit).
const MAX_PAGE: usize = 200;
/// Rows per page.
const PAGE: usize = 50;

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
pub fn merge(fresh: Vec<JsValue>, shown: &[JsValue], covered_all: bool) -> Vec<JsValue> {
    if covered_all {
        return fresh;
    }
    let mut out = fresh;
    let skip = out.len();
    for s in shown.iter().skip(skip) {
        let id = text(s, "id");
        if !out.iter().any(|o| text(o, "id") == id) {
            out.push(s.clone());
        }
    }
    out
}

/// One message's details, laid out like the test dialog's result.
fn details(m: &mut Markup, d: &JsValue) {
    let id = text(d, "id");
    let status = text(d, "status");
    m.open("div", &[("class", "message-details")])
        .open("dl", &[("class", "pairs")]);
    m.el("dt", &[], "Message")
        .open("dd", &[])
        .el("code", &[], &id)
        .close("dd");
    m.el("dt", &[], "Status")
        .open("dd", &[])
        .badge(&status)
        .close("dd");
    for (label, key) in [("Subject", "subject"), ("From", "from")] {
        m.el("dt", &[], label).el("dd", &[], &text(d, key));
    }
    m.el("dt", &[], "Size")
        .el("dd", &[], &[number(d, "size").as_str(), " bytes"].concat());
    for (label, key) in [("Queued", "created_at"), ("Updated", "updated_at")] {
        m.el("dt", &[], label)
            .open("dd", &[])
            .time(&text(d, key))
            .close("dd");
    }
    m.close("dl").el("h4", &[], "Recipients");
    m.open("table", &[("class", "recipients")])
        .head(&["Address", "Status", "Code", "Reply"])
        .open("tbody", &[]);
    for r in items(d, "recipients") {
        m.open("tr", &[])
            .el("td", &[], &text(&r, "address"))
            .open("td", &[])
            .badge(&text(&r, "status"))
            .close("td")
            .open("td", &[])
            .el("code", &[], &text(&r, "code"))
            .close("td")
            .el("td", &[], &text(&r, "message"))
            .close("tr");
    }
    m.close("tbody").close("table").el("h4", &[], "Attempts");
    let attempts = items(d, "attempts");
    if attempts.is_empty() {
        m.el("p", &[("class", "help")], "None yet.");
    }
    m.open("ol", &[("class", "attempts")]);
    for a in attempts {
        let ok = get(&a, "ok").as_bool().unwrap_or(false);
        m.open(
            "li",
            &[("class", if ok { "result ok" } else { "result failed" })],
        )
        .open("p", &[])
        .el("strong", &[], if ok { "Accepted" } else { "Failed" })
        .text(" · ")
        .time(&text(&a, "at"))
        .close("p");
        let (stage, code) = (text(&a, "stage"), text(&a, "code"));
        if !stage.is_empty() || !code.is_empty() {
            stage_line(m, &stage, &code);
        }
        m.el("p", &[("class", "message")], &text(&a, "message"));
        let h = text(&a, "hint");
        if !h.is_empty() {
            m.el("h5", &[], "How to fix it");
            hint(m, &h);
        }
        m.close("li");
    }
    m.close("ol");
    let can_retry = status == "failed" || status == "deferred";
    let can_cancel = status == "queued" || status == "deferred";
    if can_retry || can_cancel {
        m.open("div", &[("class", "actions")]);
        if can_cancel {
            m.el(
                "button",
                &[
                    ("type", "button"),
                    ("class", "danger"),
                    ("id", "cancel-message"),
                    ("data-act", "cancel"),
                    ("data-id", &id),
                ],
                "Cancel this message",
            );
        }
        if can_retry {
            m.el(
                "button",
                &[
                    ("type", "button"),
                    ("class", "primary"),
                    ("id", "retry-message"),
                    ("data-act", "retry"),
                    ("data-id", &id),
                ],
                "Retry now",
            );
        }
        m.close("div");
    }
    m.close("div");
}

/// The table of messages, with the open message's details under its row.
fn table(
    rows: &[JsValue],
    open: Option<&str>,
    details_of: Option<&JsValue>,
    apps: &[(String, String)],
) -> Markup {
    let mut m = Markup::default();
    m.open("table", &[("id", "messages")]).head(&[
        "Status",
        "Time",
        "App",
        "From",
        "To",
        "Subject",
        "Last error",
    ]);
    m.open("tbody", &[]);
    for r in rows {
        let id = text(r, "id");
        let status = text(r, "status");
        let is_open = open == Some(id.as_str());
        let app = text(r, "app");
        let app_name = apps
            .iter()
            .find(|(i, _)| *i == app)
            .map(|(_, n)| n.as_str())
            .unwrap_or(&app);
        let to = items(r, "to");
        let subject = text(r, "subject");
        let details_id = ["details-", &id].concat();
        m.open("tr", &[("id", &["row-", &id].concat()), ("class", &status)])
            .open("td", &[])
            .badge(&status)
            .close("td")
            .open("td", &[])
            .time(&text(r, "created_at"))
            .close("td")
            .el("td", &[("title", &app)], app_name)
            .el("td", &[], &text(r, "from"))
            .open("td", &[])
            .text(&to.first().and_then(JsValue::as_string).unwrap_or_default());
        if to.len() > 1 {
            m.el(
                "span",
                &[("class", "muted")],
                &[" +", &(to.len() - 1).to_string()].concat(),
            );
        }
        m.close("td").open("td", &[]).el(
            "button",
            &[
                ("type", "button"),
                ("class", "link open"),
                ("id", &["open-", &id].concat()),
                ("data-act", "open"),
                ("data-id", &id),
                ("aria-expanded", if is_open { "true" } else { "false" }),
                ("aria-controls", &details_id),
            ],
            if subject.is_empty() {
                "(no subject)"
            } else {
                &subject
            },
        );
        let error = get(r, "last_error");
        let mut last = text(&error, "code");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(&text(&error, "message"));
        m.close("td")
            .el("td", &[("class", "last-error")], &last)
            .close("tr");
        if is_open {
            m.open("tr", &[("class", "details-row")])
                .open("td", &[("colspan", "7"), ("id", &details_id)]);
            match details_of {
                Some(d) if text(d, "id") == id => details(&mut m, d),
                _ => {
                    m.el(
                        "p",
                        &[("class", "progress"), ("role", "status")],
                        "Loading…",
                    );
                }
            }
            m.close("td").close("tr");
        }
    }
    m.close("tbody").close("table");
    m
}

#[derive(Properties, PartialEq)]
pub struct ActivityProps {
    /// The queue's state, polled by the page.
    /// `GET /api/queue` as parsed (`counts` by status).
    pub queue: Option<JsValue>,
    /// A call answered 401.
    pub on_unauthorized: Callback<()>,
    /// A retry or cancel changed the queue.
    #[prop_or_default]
    pub on_changed: Callback<()>,
}

#[derive(Clone, Default)]
struct Rows {
    messages: Vec<JsValue>,
    next: Option<String>,
    loaded: bool,
}

/// What one load asks for: filter, search, page size, and a cursor to append after.
type Ask = (String, String, usize, Option<String>);

/// The view.
#[function_component(Activity)]
pub fn activity(p: &ActivityProps) -> Html {
    let status = use_state(String::new);
    let query = use_state(String::new);
    let rows = use_mut_ref(Rows::default);
    let version = use_state(|| 0u32);
    let error = use_state(|| None::<String>);
    let open = use_state(|| None::<String>);
    let opened = use_mut_ref(|| None::<JsValue>);
    let action = use_state(|| None::<String>);
    let apps = use_state(Vec::<(String, String)>::new);
    // Answers to older requests are dropped: typing fast never shows a stale list.
    let generation = use_mut_ref(|| 0u32);
    // The element that had the focus inside the table, given it back after a refresh.
    let focused = use_mut_ref(String::new);
    let table_ref = use_node_ref();

    let bump = {
        let version = version.clone();
        move || version.set(version.wrapping_add(1))
    };
    let load = {
        let (rows, error, unauthorized, generation, bump) = (
            rows.clone(),
            error.clone(),
            p.on_unauthorized.clone(),
            generation.clone(),
            bump.clone(),
        );
        Callback::from(move |(status, q, limit, before): Ask| {
            let (rows, error, unauthorized, generation, bump) = (
                rows.clone(),
                error.clone(),
                unauthorized.clone(),
                generation.clone(),
                bump.clone(),
            );
            let append = before.is_some();
            let mine = *generation.borrow() + u32::from(!append);
            *generation.borrow_mut() = mine;
            let path = list_path(&status, &q, limit, before.as_deref());
            crate::spawn(async move {
                let r = json(Method::GET, &path).await;
                if *generation.borrow() != mine {
                    return;
                }
                match r {
                    Ok(list) => {
                        let fresh = items(&list, "messages");
                        let next = Some(text(&list, "next")).filter(|n| !n.is_empty());
                        let mut now = rows.borrow_mut();
                        if append {
                            for m in fresh {
                                let id = text(&m, "id");
                                if !now.messages.iter().any(|s| text(s, "id") == id) {
                                    now.messages.push(m);
                                }
                            }
                            now.next = next;
                        } else {
                            let covered_all = now.messages.len() <= limit;
                            if covered_all {
                                now.next = next;
                            }
                            now.messages = merge(fresh, &now.messages, covered_all);
                        }
                        now.loaded = true;
                        drop(now);
                        error.set(None);
                        bump();
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => error.set(Some(e.message().to_string())),
                }
            });
        })
    };
    let load_details = {
        let (opened, unauthorized, bump) =
            (opened.clone(), p.on_unauthorized.clone(), bump.clone());
        Callback::from(move |id: String| {
            let (opened, unauthorized, bump) = (opened.clone(), unauthorized.clone(), bump.clone());
            crate::spawn(async move {
                match json(Method::GET, &["/api/messages/", &id].concat()).await {
                    Ok(d) => {
                        *opened.borrow_mut() = Some(d);
                        bump();
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
                if let Ok(list) = json(Method::GET, "/api/apps").await {
                    apps.set(
                        items(&list, "apps")
                            .iter()
                            .map(|a| (text(a, "id"), text(a, "name")))
                            .collect(),
                    );
                }
            });
        });
    }
    // The refresh while the view is open: the rows shown, and the open message.
    {
        let (load, load_details) = (load.clone(), load_details.clone());
        let (s, q, shown, open) = (
            (*status).clone(),
            (*query).clone(),
            rows.borrow().messages.len(),
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
    // A refresh replaces the table's HTML: give the focus back to the same control.
    {
        let (focused, open) = (focused.clone(), (*open).clone());
        use_effect(move || {
            let lost = || {
                web_sys::window()
                    .and_then(|w| w.document())
                    .and_then(|d| d.active_element())
                    .is_none_or(|e| e.tag_name() == "BODY")
            };
            let id = focused.borrow().clone();
            if lost() && !id.is_empty() {
                crate::hooks::focus::focus(&id);
                // Its control is gone (Retry after retrying): the open message's row.
                if let (true, Some(open)) = (lost(), open) {
                    crate::hooks::focus::focus(&["open-", &open].concat());
                }
            }
        });
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
            rows.borrow().next.clone(),
        );
        Callback::from(move |_: MouseEvent| {
            load.emit(((*status).clone(), (*query).clone(), PAGE, next.clone()));
        })
    };
    let on_focus = {
        let focused = focused.clone();
        Callback::from(move |e: FocusEvent| {
            if let Some(el) = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            {
                *focused.borrow_mut() = el.id();
            }
        })
    };
    let on_click = {
        let (open, opened, load_details, rows, action, changed, unauthorized, bump) = (
            open.clone(),
            opened.clone(),
            load_details.clone(),
            rows.clone(),
            action.clone(),
            p.on_changed.clone(),
            p.on_unauthorized.clone(),
            bump.clone(),
        );
        Callback::from(move |e: MouseEvent| {
            let Some((act, id)) = copy_click(&e) else {
                return;
            };
            match act.as_str() {
                "open" if open.as_deref() == Some(id.as_str()) => open.set(None),
                "open" => {
                    *opened.borrow_mut() = None;
                    open.set(Some(id.clone()));
                    load_details.emit(id);
                }
                verb @ ("retry" | "cancel") => {
                    let (rows, action, load_details, changed, unauthorized, bump) = (
                        rows.clone(),
                        action.clone(),
                        load_details.clone(),
                        changed.clone(),
                        unauthorized.clone(),
                        bump.clone(),
                    );
                    let retry = verb == "retry";
                    let path = ["/api/messages/", &id, "/", verb].concat();
                    crate::spawn(async move {
                        match json(Method::POST, &path).await {
                            Ok(s) => {
                                let sid = text(&s, "id");
                                if let Some(row) = rows
                                    .borrow_mut()
                                    .messages
                                    .iter_mut()
                                    .find(|r| text(r, "id") == sid)
                                {
                                    *row = s;
                                }
                                action.set(Some(
                                    [
                                        if retry {
                                            "Queued again: "
                                        } else {
                                            "Cancelled: "
                                        },
                                        &sid,
                                    ]
                                    .concat(),
                                ));
                                bump();
                                changed.emit(());
                                load_details.emit(id);
                            }
                            Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                            Err(e) => action.set(Some(e.message().to_string())),
                        }
                    });
                }
                _ => {}
            }
        })
    };

    let mut counts = Markup::default();
    counts.open(
        "ul",
        &[
            ("class", "counts"),
            ("aria-label", "Messages by status"),
            ("id", "counts"),
        ],
    );
    let by_status = p.queue.as_ref().map(|q| get(q, "counts"));
    for s in Status::ALL {
        let n = by_status
            .as_ref()
            .map(|c| number(c, s.as_str()))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "0".into());
        counts
            .open("li", &[])
            .badge(s.as_str())
            .el("strong", &[("id", &["count-", s.as_str()].concat())], &n)
            .close("li");
    }
    counts.close("ul");
    let r = rows.borrow();
    html! {
        <section class="view" aria-labelledby="activity-title">
            <h2 id="activity-title" class="view-title" tabindex="-1">{ "Activity" }</h2>
            { counts.html() }
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
                if !r.loaded {
                    <p class="progress" role="status">{ "Loading…" }</p>
                } else if r.messages.is_empty() {
                    <p class="help" id="no-messages">{ "No messages match. Messages that apps send show here as soon as they are queued." }</p>
                } else {
                    <div class="table-wrap" ref={table_ref} onclick={on_click} onfocusin={on_focus}>
                        { table(&r.messages, open.as_deref(), opened.borrow().as_ref(), &apps).html() }
                    </div>
                    if r.next.is_some() {
                        <div class="actions"><button type="button" id="load-more" onclick={more}>{ "Load more" }</button></div>
                    }
                }
            </div>
        </section>
    }
}
