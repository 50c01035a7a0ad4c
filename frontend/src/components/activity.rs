//! The Activity view: the queue's counts, the messages newest first with a
//! status filter, search and "load more", and each message's details
//! (recipients with their replies, attempts with stage, code, message and
//! hint, a run of the same outcome once) with Retry and Cancel. It refreshes
//! while open, in place, keeping the scroll position, an open message and
//! the focus.
//!
//! The state and the requests are [`crate::hooks::use_activity`]'s; this
//! file draws them. The table is written as HTML text ([`crate::markup`]):
//! the biggest view costs little of the bundle.

use gloo_net::http::Method;
use mailroom_shared::sending::{Attempt, Details, QueueState, Status, Summary, MAX_SEARCH};
use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::hooks::activity::Filter;
use crate::hooks::use_activity;
use crate::markup::{command, copy_click, hint, items, stage_line, Markup};

/// Under a message's Message-ID: where the admin finds the message by it.
const MESSAGE_ID_HELP: &str = "The same in every attempt. Message trace (Exchange admin center › Mail flow) and the recipient's headers know the message by it.";

pub use crate::hooks::activity::list_path;

/// Whether two attempts ended the same way, all but their time. A run of
/// such attempts is shown once, with its count and span: a paused profile
/// tries one message a minute, so one message can gather hundreds of the
/// same failure before `--max-queue-time` ends it.
fn same_outcome(a: &Attempt, b: &Attempt) -> bool {
    a.ok == b.ok
        && a.stage == b.stage
        && a.code == b.code
        && a.message == b.message
        && a.hint == b.hint
        && a.transport == b.transport
}

/// One message's details, laid out like the test dialog's result.
fn details(m: &mut Markup, d: &Details, heading: &str) {
    let s = &d.summary;
    let status = s.status.as_str();
    m.open("div", &[("class", "message-details")])
        .open("dl", &[("class", "pairs")]);
    m.el("dt", &[], "Message")
        .open("dd", &[])
        .el("code", &[], &s.id)
        .close("dd");
    if let Some(header) = &d.message_id {
        // Copied into message trace's search: a copy button, as commands have.
        m.el("dt", &[], "Message-ID")
            .open("dd", &[("class", "message-id")]);
        command(m, header, "Message-ID");
        m.el("p", &[("class", "help")], MESSAGE_ID_HELP).close("dd");
    }
    m.el("dt", &[], "Status")
        .open("dd", &[])
        .badge(status)
        .close("dd");
    for (label, value) in [("Subject", &s.subject), ("From", &s.from)] {
        m.el("dt", &[], label).el("dd", &[], value);
    }
    m.el("dt", &[], "Size")
        .el("dd", &[], &[s.size.to_string().as_str(), " bytes"].concat());
    let next = d.next_attempt_at.as_ref().map(|at| ("Next try", at));
    for (label, value) in [("Queued", &s.created_at), ("Updated", &s.updated_at)]
        .into_iter()
        .chain(next)
    {
        m.el("dt", &[], label)
            .open("dd", &[])
            .time(value)
            .close("dd");
    }
    m.close("dl").el(heading, &[], "Recipients");
    m.open("table", &[("class", "recipients")])
        .head(&["Address", "Status", "Code", "Reply"])
        .open("tbody", &[]);
    for r in &d.recipients {
        m.open("tr", &[])
            .el("td", &[], &r.address)
            .open("td", &[])
            .badge(r.status.as_str())
            .close("td")
            .open("td", &[])
            .el("code", &[], r.code.as_deref().unwrap_or_default())
            .close("td")
            .el("td", &[], r.message.as_deref().unwrap_or_default())
            .close("tr");
    }
    m.close("tbody").close("table").el(heading, &[], "Attempts");
    if d.attempts.is_empty() {
        m.el("p", &[("class", "help")], "None yet.");
    }
    m.open("ol", &[("class", "attempts")]);
    for run in d.attempts.chunk_by(same_outcome) {
        let (a, last) = (&run[0], &run[run.len() - 1]);
        m.open(
            "li",
            &[("class", if a.ok { "result ok" } else { "result failed" })],
        )
        .open("p", &[])
        .el("strong", &[], if a.ok { "Accepted" } else { "Failed" })
        .text(" · ");
        if run.len() > 1 {
            m.el(
                "span",
                &[("class", "times")],
                &[&run.len().to_string(), " times"].concat(),
            )
            .text(", from ")
            .time(&a.at)
            .text(" to ")
            .time(&last.at);
        } else {
            m.time(&a.at);
        }
        if let Some(t) = a.transport {
            m.text(" · via ").el(
                "span",
                &[("class", "transport")],
                mailroom_shared::catalogue::transport_label(t).0,
            );
        }
        m.close("p");
        let code = a.code.as_deref().unwrap_or_default();
        if a.stage.is_some() || !code.is_empty() {
            stage_line(m, a.stage.map(|s| s.as_str()).unwrap_or_default(), code);
        }
        m.el("p", &[("class", "message")], &a.message);
        if let Some(h) = a.hint.as_deref().filter(|h| !h.is_empty()) {
            m.el("h5", &[], "How to fix it");
            hint(m, h);
        }
        m.close("li");
    }
    m.close("ol");
    let can_retry = matches!(s.status, Status::Failed | Status::Deferred);
    let can_cancel = matches!(s.status, Status::Queued | Status::Deferred);
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
                    ("data-id", &s.id),
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
                    ("data-id", &s.id),
                ],
                "Retry now",
            );
        }
        m.close("div");
    }
    m.close("div");
}

/// The open message's details, or why they are not there (yet). Their
/// headings are `heading`s: one level below what they sit under (the view's
/// title in the list, the card's own above the list).
fn open_details(
    m: &mut Markup,
    (id, heading): (&str, &str),
    details_of: Option<&Details>,
    error: Option<&str>,
) {
    match (details_of, error) {
        (Some(d), _) if d.summary.id == id => details(m, d, heading),
        (_, Some(why)) => {
            m.el(
                "p",
                &[("class", "error"), ("role", "alert")],
                &[
                    why,
                    " A message's record is kept for the server's --retention (30 days by default) after it ends.",
                ]
                .concat(),
            );
        }
        _ => {
            m.el(
                "p",
                &[("class", "progress"), ("role", "status")],
                "Loading…",
            );
        }
    }
}

/// The open message when the list does not show it (a link to an older
/// message, or one the filter leaves out), above the list.
fn linked_card(id: &str, details_of: Option<&Details>, error: Option<&str>) -> Markup {
    let mut m = Markup::default();
    // Its subject once known (the details list its id), else its id.
    m.open(
        "section",
        &[
            ("id", "linked-message"),
            ("class", "linked"),
            ("aria-labelledby", "linked-title"),
        ],
    )
    .open("h3", &[("id", "linked-title"), ("tabindex", "-1")]);
    match details_of.filter(|d| d.summary.id == id) {
        Some(d) if !d.summary.subject.is_empty() => {
            m.text(&["“", &d.summary.subject, "”"].concat());
        }
        _ => {
            m.text("Message ").el("code", &[], id);
        }
    }
    m.close("h3");
    open_details(&mut m, (id, "h4"), details_of, error);
    m.open("div", &[("class", "actions")])
        .el(
            "button",
            &[
                ("type", "button"),
                ("id", "close-linked"),
                ("data-act", "open"),
                ("data-id", id),
            ],
            "Close",
        )
        .close("div")
        .close("section");
    m
}

/// The name of the app or profile `id` in `list` (`(id, name)` pairs), else
/// the id itself (a revoked app, a trusted network's address).
fn name_in<'a>(list: &'a [(String, String)], id: &'a str) -> &'a str {
    list.iter()
        .find(|(x, _)| x == id)
        .map_or(id, |(_, name)| name.as_str())
}

/// A filter's select: "All …", each of `list`, and the value in force when
/// the list does not hold it (an address naming a revoked app, a trusted
/// network's address, a profile not yet known), shown as it is filtered.
fn choice(
    id: &'static str,
    label: &'static str,
    all: &'static str,
    list: &[(String, String)],
    current: &str,
    onchange: Callback<Event>,
) -> Html {
    html! {
        <div class="field">
            <label for={id}>{ label }</label>
            <select {id} {onchange}>
                <option value="" selected={current.is_empty()}>{ all }</option>
                { for list.iter().map(|(value, name)| html! {
                    <option value={value.clone()} selected={current == value}>{ name.clone() }</option>
                }) }
                if !current.is_empty() && !list.iter().any(|(value, _)| value == current) {
                    <option value={current.to_string()} selected=true>{ current.to_string() }</option>
                }
            </select>
        </div>
    }
}

/// The table of messages, with the open message's details under its row.
fn table(
    rows: &[Summary],
    filter: &Filter,
    open: Option<&str>,
    (details_of, error): (Option<&Details>, Option<&str>),
    apps: &[(String, String)],
    profiles: &[(String, String)],
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
        let id = r.id.as_str();
        let status = r.status.as_str();
        let is_open = open == Some(id);
        let app = r.app.as_deref().unwrap_or_default();
        let app_name = name_in(apps, app);
        let details_id = ["details-", id].concat();
        m.open("tr", &[("id", &["row-", id].concat()), ("class", status)])
            .open("td", &[])
            .badge(status)
            .close("td")
            .open("td", &[])
            .time(&r.created_at)
            .close("td")
            .open("td", &[("title", app)]);
        // Every app's name filters the list to it (a trusted network's
        // address too, which the app filter does not list).
        if app.is_empty() || filter.app == app {
            m.text(app_name);
        } else {
            let only = Filter {
                app: app.to_string(),
                ..filter.clone()
            };
            m.el(
                "a",
                &[
                    ("href", &only.hash(None)),
                    ("class", "app-link"),
                    ("aria-label", &["Only the messages of ", app_name].concat()),
                ],
                app_name,
            );
        }
        // Which profile it goes out through, when there are several.
        if profiles.len() > 1 {
            let name = name_in(profiles, &r.profile);
            m.open("br", &[])
                .el("span", &[("class", "profile")], &["via ", name].concat());
        }
        m.close("td")
            .el("td", &[], &r.from)
            .open("td", &[])
            .text(r.to.first().map(String::as_str).unwrap_or_default());
        if r.to.len() > 1 {
            m.el(
                "span",
                &[("class", "muted")],
                &[" +", &(r.to.len() - 1).to_string()].concat(),
            );
        }
        m.close("td").open("td", &[]).el(
            "button",
            &[
                ("type", "button"),
                ("class", "link open"),
                ("id", &["open-", id].concat()),
                ("data-act", "open"),
                ("data-id", id),
                ("aria-expanded", if is_open { "true" } else { "false" }),
                ("aria-controls", &details_id),
            ],
            if r.subject.is_empty() {
                "(no subject)"
            } else {
                &r.subject
            },
        );
        let last = r
            .last_error
            .as_ref()
            .map(|e| match &e.code {
                Some(code) => [code.as_str(), " ", &e.message].concat(),
                None => e.message.clone(),
            })
            .unwrap_or_default();
        m.close("td")
            .el("td", &[("class", "last-error")], &last)
            .close("tr");
        if is_open {
            m.open("tr", &[("class", "details-row")])
                .open("td", &[("colspan", "7"), ("id", &details_id)]);
            open_details(&mut m, (id, "h3"), details_of, error);
            m.close("td").close("tr");
        }
    }
    m.close("tbody").close("table");
    m
}

#[derive(Properties, PartialEq)]
pub struct ActivityProps {
    /// The queue's state (`GET /api/queue`), polled by the page.
    pub queue: Option<QueueState>,
    /// A call answered 401.
    pub on_unauthorized: Callback<()>,
    /// A retry or cancel changed the queue.
    #[prop_or_default]
    pub on_changed: Callback<()>,
}

/// The view.
#[function_component(Activity)]
pub fn activity(p: &ActivityProps) -> Html {
    let a = use_activity(p.on_unauthorized.clone(), p.on_changed.clone());
    let apps = use_state(Vec::<(String, String)>::new);
    let profile_names: Vec<(String, String)> = p
        .queue
        .iter()
        .flat_map(|q| q.profiles.iter())
        .map(|x| (x.id.clone(), x.name.clone()))
        .collect();
    // The element that had the focus inside the table, given it back after a refresh.
    let focused = use_mut_ref(String::new);
    let table_ref = use_node_ref();
    {
        let apps = apps.clone();
        use_effect_with((), move |()| {
            crate::spawn(async move {
                if let Ok(list) = crate::api::json(Method::GET, "/api/apps").await {
                    apps.set(
                        items(&list, "apps")
                            .iter()
                            .filter_map(crate::read::app)
                            .map(|a| (a.id, a.name))
                            .collect(),
                    );
                }
            });
        });
    }
    // A refresh replaces the table's HTML: give the focus back to the same control.
    {
        let (focused, open) = (focused.clone(), a.state.open.clone());
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
    // A link opened a message: once its details (or why they are not
    // there) show, it takes the focus and comes into sight, in its row or
    // in the card above the list.
    {
        let state = a.state.clone();
        use_effect(move || {
            let s = &*state;
            let shown = s.loaded && (s.details.is_some() || s.details_error.is_some());
            if let (true, true, Some(id)) = (s.reveal, shown, s.open.as_deref()) {
                let doc = web_sys::window().and_then(|w| w.document());
                match doc.and_then(|d| d.get_element_by_id(&["row-", id].concat())) {
                    Some(row) => {
                        crate::hooks::focus::focus(&["open-", id].concat());
                        row.scroll_into_view();
                    }
                    None => crate::hooks::focus::focus("linked-title"),
                }
                state.dispatch(crate::hooks::activity::ActivityAction::Revealed);
            }
        });
    }
    let s = &*a.state;
    let f = &s.filter;
    // The filter with one part changed, from a select.
    let choose = |part: fn(&mut Filter, String)| {
        let (filter, current) = (a.filter.clone(), f.clone());
        Callback::from(move |e: Event| {
            let mut next = current.clone();
            part(
                &mut next,
                e.target_unchecked_into::<web_sys::HtmlSelectElement>()
                    .value(),
            );
            filter.emit(next);
        })
    };
    let on_status = choose(|f, v| f.status = v);
    let on_app = choose(|f, v| f.app = v);
    let on_profile = choose(|f, v| f.profile = v);
    let on_search = {
        let (filter, current) = (a.filter.clone(), f.clone());
        Callback::from(move |e: InputEvent| {
            filter.emit(Filter {
                query: e
                    .target_unchecked_into::<web_sys::HtmlInputElement>()
                    .value(),
                ..current.clone()
            });
        })
    };
    let more = a.more.reform(|_: MouseEvent| ());
    // Failed or deferred messages shown: all of them can go again at once
    // (after a fix, such as a Send-As right granted).
    let retry_all = matches!(f.status.as_str(), "failed" | "deferred").then(|| {
        let mut label = ["Retry all ", &f.status].concat();
        if !f.app.is_empty() {
            label.push_str(&[" of “", name_in(&apps, &f.app), "”"].concat());
        }
        if !f.profile.is_empty() {
            label.push_str(&[" via “", name_in(&profile_names, &f.profile), "”"].concat());
        }
        if !f.query.trim().is_empty() {
            label.push_str(" matching the search");
        }
        (label, a.retry_all.reform(|_: MouseEvent| ()))
    });
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
        let (toggle, change) = (a.toggle.clone(), a.change.clone());
        Callback::from(move |e: MouseEvent| {
            let Some((act, id)) = copy_click(&e) else {
                return;
            };
            match act.as_str() {
                "open" => toggle.emit(id),
                "retry" => change.emit((id, true)),
                "cancel" => change.emit((id, false)),
                _ => {}
            }
        })
    };

    // The open message, when the list does not show it.
    let linked = s
        .open
        .as_deref()
        .filter(|id| s.loaded && !s.messages.iter().any(|r| r.id == *id));

    let mut counts = Markup::default();
    counts.open(
        "ul",
        &[
            ("class", "counts"),
            ("aria-label", "Messages by status"),
            ("id", "counts"),
        ],
    );
    for st in Status::ALL {
        let n = p
            .queue
            .as_ref()
            .and_then(|q| q.counts.get(&st).copied())
            .unwrap_or(0);
        counts
            .open("li", &[])
            .badge(st.as_str())
            .el(
                "strong",
                &[("id", &["count-", st.as_str()].concat())],
                &n.to_string(),
            )
            .close("li");
    }
    counts.close("ul");
    html! {
        <section class="view" aria-labelledby="activity-title">
            <h2 id="activity-title" class="view-title" tabindex="-1">{ "Activity" }</h2>
            { counts.html() }
            <div class="card">
                <div class="filters">
                    <div class="field">
                        <label for="status-filter">{ "Status" }</label>
                        <select id="status-filter" onchange={on_status}>
                            <option value="" selected={f.status.is_empty()}>{ "All" }</option>
                            { for Status::ALL.iter().map(|st| html! {
                                <option value={st.as_str()} selected={f.status == st.as_str()}>{ st.as_str() }</option>
                            }) }
                        </select>
                    </div>
                    { choice("app-filter", "App", "All apps", &apps, &f.app, on_app) }
                    <div class="field grow">
                        <label for="search">{ "Search addresses, subject, errors or a message id" }</label>
                        <input id="search" type="search" value={f.query.clone()} oninput={on_search} autocomplete="off" maxlength={MAX_SEARCH.to_string()} />
                    </div>
                    // Last: appearing when the profiles come, it moves no field.
                    // (Also while a link filters by a profile, with one profile.)
                    if profile_names.len() > 1 || !f.profile.is_empty() {
                        { choice("profile-filter", "Profile", "All profiles", &profile_names, &f.profile, on_profile) }
                    }
                </div>
                if let Some(n) = &s.notice {
                    <p class="banner success" role="status">{ n.clone() }</p>
                }
                if let Some(e) = &s.error {
                    <p class="error" role="alert">{ e.clone() }</p>
                }
                if let Some(id) = linked {
                    <div onclick={on_click.clone()} onfocusin={on_focus.clone()}>
                        { linked_card(id, s.details.as_ref(), s.details_error.as_deref()).html() }
                    </div>
                }
                if !s.loaded {
                    <p class="progress" role="status">{ "Loading…" }</p>
                } else if s.messages.is_empty() {
                    <p class="help" id="no-messages">{ "No messages match. Messages that apps send show here as soon as they are queued." }</p>
                } else {
                    <div class="table-wrap" ref={table_ref} onclick={on_click} onfocusin={on_focus}>
                        { table(&s.messages, f, s.open.as_deref(), (s.details.as_ref(), s.details_error.as_deref()), &apps, &profile_names).html() }
                    </div>
                    if s.next.is_some() {
                        <div class="actions"><button type="button" id="load-more" onclick={more}>{ "Load more" }</button></div>
                    }
                    if let Some((label, onclick)) = retry_all {
                        <div class="actions"><button type="button" id="retry-all" {onclick}>{ label }</button></div>
                    }
                }
            </div>
        </section>
    }
}
