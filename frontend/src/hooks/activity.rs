//! `use_activity`: the Activity view's state and what changes it. The
//! state is a reducer ([`ActivityState`] with [`ActivityAction`]s), so each
//! change is one pure step that the page's tests run without a server; the
//! hook does the requests (the list with its filter, search and pages, the
//! open message's details, Retry and Cancel) and the refresh while shown.

use std::rc::Rc;

use gloo_net::http::Method;
use mailroom_shared::sending::{Details, Status, Summary, MAX_SEARCH};
use yew::prelude::*;

use crate::api::{typed, ApiError};
use crate::hooks::use_interval;
use crate::read;
use crate::route::push_query;

/// Rows per page.
pub const PAGE: usize = 50;
/// The most rows one refresh asks for (the API's own limit).
pub const MAX_PAGE: usize = 200;

/// What the list shows: a status, a search, an app and a profile (each
/// `""` for all), as `GET /api/messages` and the bulk retry take them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// The status (`""` for all).
    pub status: String,
    /// The search.
    pub query: String,
    /// An app's id.
    pub app: String,
    /// A profile's id.
    pub profile: String,
}

impl Filter {
    /// The filter an address names (`#/activity?status=failed&q=…&app=…`).
    /// A status that is none of the queue's, or a search longer than the
    /// server takes, is no filter: the list shows what it would otherwise.
    pub fn from_hash(hash: &str) -> Filter {
        let value = |name| crate::route::hash_value(hash, name);
        let (status, query) = (value("status"), value("q"));
        Filter {
            status: if Status::ALL.iter().any(|s| s.as_str() == status) {
                status
            } else {
                String::new()
            },
            query: if query.chars().count() <= MAX_SEARCH {
                query
            } else {
                String::new()
            },
            app: value("app"),
            profile: value("profile"),
        }
    }

    /// Activity's address showing this filter and an open message (each
    /// part left out when empty): a link from Apps or a row, and the URL
    /// while Activity shows them.
    pub fn hash(&self, open: Option<&str>) -> String {
        let mut query = String::new();
        push_query(&mut query, &self.pairs());
        push_query(&mut query, &[("message", open.unwrap_or_default())]);
        match query.strip_prefix('&') {
            Some(query) => ["#/activity?", query].concat(),
            None => "#/activity".to_string(),
        }
    }

    /// The query pairs both routes take, and the page's address.
    pub fn pairs(&self) -> [(&str, &str); 4] {
        [
            ("status", self.status.as_str()),
            ("q", self.query.trim()),
            ("app", self.app.as_str()),
            ("profile", self.profile.as_str()),
        ]
    }
}

/// `GET /api/messages?…` for a filter, a page size and a cursor.
pub fn list_path(filter: &Filter, limit: usize, before: Option<&str>) -> String {
    let mut path = String::from("/api/messages?limit=");
    path.push_str(&limit.to_string());
    push_query(&mut path, &filter.pairs());
    push_query(&mut path, &[("before", before.unwrap_or(""))]);
    path
}

/// `GET /api/messages`: a page and the cursor after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub messages: Vec<Summary>,
    pub next: Option<String>,
}

/// Reads a page.
pub fn page(v: &wasm_bindgen::JsValue) -> Option<Page> {
    let list = crate::markup::get(v, "messages");
    if !js_sys::Array::is_array(&list) {
        return None;
    }
    let messages = js_sys::Array::from(&list)
        .iter()
        .map(|m| read::summary(&m))
        .collect::<Option<Vec<_>>>()?;
    let next = crate::markup::get(v, "next").as_string();
    Some(Page { messages, next })
}

/// What the Activity view shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityState {
    /// What the list shows.
    pub filter: Filter,
    /// The rows shown, newest first.
    pub messages: Vec<Summary>,
    /// The cursor for "Load more".
    pub next: Option<String>,
    /// A first page has come.
    pub loaded: bool,
    /// Why the list could not be loaded.
    pub error: Option<String>,
    /// The message whose details are open.
    pub open: Option<String>,
    /// Its details, once loaded.
    pub details: Option<Details>,
    /// Why its details could not be loaded (a link to a message whose record
    /// is gone); the next refresh tries again.
    pub details_error: Option<String>,
    /// A link opened the message: the view brings it into sight once shown.
    pub reveal: bool,
    /// What the last Retry or Cancel did, or why it failed.
    pub notice: Option<String>,
}

/// One change to [`ActivityState`].
#[derive(Debug, Clone, PartialEq)]
pub enum ActivityAction {
    /// A new filter or search: the rows stay until the new page comes, and
    /// an open message closes.
    Filter(Filter),
    /// An address (a link followed) names a filter and a message to open.
    Linked {
        filter: Filter,
        open: Option<String>,
    },
    /// The first page (`limit` rows asked), over the rows shown.
    First { page: Page, limit: usize },
    /// The page after the last row, appended.
    More(Page),
    /// The list could not be loaded.
    Failed(String),
    /// Opens a message's details, or closes them when open.
    Toggle(String),
    /// The open message's details came.
    Details(Details),
    /// The open message's details could not be loaded: (its id, why).
    DetailsFailed(String, String),
    /// The view brought the linked message into sight.
    Revealed,
    /// Retry or Cancel changed a message.
    Changed { summary: Summary, retried: bool },
    /// Retry or Cancel was refused.
    Refused(String),
    /// What a bulk retry did.
    Notice(String),
}

impl Reducible for ActivityState {
    type Action = ActivityAction;

    fn reduce(self: Rc<Self>, action: ActivityAction) -> Rc<Self> {
        let mut s = (*self).clone();
        match action {
            ActivityAction::Filter(filter) => {
                s.filter = filter;
                s.open = None;
                s.details = None;
                s.details_error = None;
            }
            ActivityAction::Linked { filter, open } => {
                s.filter = filter;
                s.reveal = open.is_some();
                s.open = open;
                s.details = None;
                s.details_error = None;
            }
            ActivityAction::First { page, limit } => {
                // A refreshed first page replaces the rows it covers; older
                // rows loaded with "Load more" stay below it.
                let covered_all = s.messages.len() <= limit;
                if covered_all {
                    s.next = page.next;
                    s.messages = page.messages;
                } else {
                    let mut rows = page.messages;
                    let skip = rows.len();
                    for old in s.messages.iter().skip(skip) {
                        if !rows.iter().any(|r| r.id == old.id) {
                            rows.push(old.clone());
                        }
                    }
                    s.messages = rows;
                }
                s.loaded = true;
                s.error = None;
            }
            ActivityAction::More(page) => {
                for m in page.messages {
                    if !s.messages.iter().any(|r| r.id == m.id) {
                        s.messages.push(m);
                    }
                }
                s.next = page.next;
                s.error = None;
            }
            ActivityAction::Failed(e) => s.error = Some(e),
            ActivityAction::Toggle(id) => {
                if s.open.as_deref() == Some(id.as_str()) {
                    s.open = None;
                } else {
                    s.open = Some(id);
                }
                s.details = None;
                s.details_error = None;
                s.reveal = false;
            }
            ActivityAction::Details(d) => {
                if s.open.as_deref() == Some(d.summary.id.as_str()) {
                    s.details = Some(d);
                    s.details_error = None;
                }
            }
            ActivityAction::Revealed => s.reveal = false,
            ActivityAction::DetailsFailed(id, why) => {
                if s.open.as_deref() == Some(id.as_str()) && s.details.is_none() {
                    s.details_error = Some(why);
                }
            }
            ActivityAction::Changed { summary, retried } => {
                s.notice = Some(
                    [
                        if retried {
                            "Queued again: "
                        } else {
                            "Cancelled: "
                        },
                        &summary.id,
                    ]
                    .concat(),
                );
                if let Some(row) = s.messages.iter_mut().find(|r| r.id == summary.id) {
                    *row = summary;
                }
            }
            ActivityAction::Refused(e) | ActivityAction::Notice(e) => s.notice = Some(e),
        }
        Rc::new(s)
    }
}

/// The filter and the message to open that an address names (`message=`).
/// Only a value shaped like Mailroom's ids (`msg_…`) is opened: the id
/// goes into the request's path, where `..` would name another route.
fn linked(hash: &str) -> (Filter, Option<String>) {
    let open = crate::route::hash_value(hash, "message");
    let id_like = crate::route::id_like(&open);
    (Filter::from_hash(hash), id_like.then_some(open))
}

/// The state and what the view can do with it.
pub struct UseActivity {
    pub state: UseReducerHandle<ActivityState>,
    /// A new filter and search.
    pub filter: Callback<Filter>,
    /// The next page.
    pub more: Callback<()>,
    /// Opens or closes a message's details.
    pub toggle: Callback<String>,
    /// Retry (`true`) or Cancel (`false`) a message.
    pub change: Callback<(String, bool)>,
    /// Retry every message the status filter and search match.
    pub retry_all: Callback<()>,
}

/// `POST /api/messages/retry` for the messages a filter shows (its app
/// and profile too: retrying all failed of one app retries no other's).
pub fn retry_path(filter: &Filter) -> String {
    let mut path = [
        "/api/messages/retry?status=",
        &String::from(js_sys::encode_uri_component(&filter.status)),
    ]
    .concat();
    // The rest of the filter: the search, the app, the profile.
    push_query(&mut path, &filter.pairs()[1..]);
    path
}

/// What a bulk retry did, in words.
pub fn retried_notice(r: &mailroom_shared::sending::Retried) -> String {
    let mut text = match r.retried {
        1 => "Queued again: 1 message.".to_string(),
        n => format!("Queued again: {n} messages."),
    };
    if r.skipped > 0 {
        text.push_str(&format!(
            " {} could not be (their content is gone, or they changed meanwhile).",
            r.skipped
        ));
    }
    if r.more {
        text.push_str(" More match: retry again for the rest.");
    }
    text
}

/// The Activity view's state, loaded at once and refreshed every
/// [`crate::POLL_MS`] while shown. Answers to older requests are dropped:
/// typing fast never shows a stale list.
#[hook]
pub fn use_activity(on_unauthorized: Callback<()>, on_changed: Callback<()>) -> UseActivity {
    // A link (from Apps, a webhook post, a copied address) names the
    // filter, and perhaps a message to open.
    let state = use_reducer(|| {
        let (filter, open) = linked(&crate::route::current_hash());
        ActivityState {
            filter,
            reveal: open.is_some(),
            open,
            ..ActivityState::default()
        }
    });
    let generation = use_mut_ref(|| 0u32);

    // (filter, limit, cursor): the first page when no cursor.
    let load = {
        let (state, generation, unauthorized) =
            (state.clone(), generation.clone(), on_unauthorized.clone());
        Callback::from(
            move |(filter, limit, before): (Filter, usize, Option<String>)| {
                let (state, generation, unauthorized) =
                    (state.clone(), generation.clone(), unauthorized.clone());
                let append = before.is_some();
                let mine = *generation.borrow() + u32::from(!append);
                *generation.borrow_mut() = mine;
                let path = list_path(&filter, limit, before.as_deref());
                crate::spawn(async move {
                    let r = typed(Method::GET, &path, page).await;
                    if *generation.borrow() != mine {
                        return;
                    }
                    state.dispatch(match r {
                        Ok(page) if append => ActivityAction::More(page),
                        Ok(page) => ActivityAction::First { page, limit },
                        Err(ApiError::Unauthorized(_)) => return unauthorized.emit(()),
                        Err(e) => ActivityAction::Failed(e.message().to_string()),
                    });
                });
            },
        )
    };
    let load_details = {
        let (state, unauthorized) = (state.clone(), on_unauthorized.clone());
        Callback::from(move |id: String| {
            let (state, unauthorized) = (state.clone(), unauthorized.clone());
            crate::spawn(async move {
                let path = ["/api/messages/", &id].concat();
                match typed(Method::GET, &path, read::details).await {
                    Ok(d) => state.dispatch(ActivityAction::Details(d)),
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    // Shown in place of the details; the next refresh tries again.
                    Err(e) => {
                        state.dispatch(ActivityAction::DetailsFailed(id, e.message().to_string()))
                    }
                }
            });
        })
    };
    {
        let (load, load_details) = (load.clone(), load_details.clone());
        let (first, open) = (state.filter.clone(), state.open.clone());
        use_effect_with((), move |()| {
            load.emit((first, PAGE, None));
            if let Some(id) = open {
                load_details.emit(id);
            }
        });
    }
    // Another address while Activity shows (a link pasted or followed in
    // this tab): its filter and message. The page's own changes replace the
    // address without a `hashchange`.
    {
        let (state, load, load_details) = (state.clone(), load.clone(), load_details.clone());
        crate::route::use_hashchange(Callback::from(move |hash: String| {
            if crate::route::View::from_hash(&hash) != crate::route::View::Activity {
                return;
            }
            let (filter, open) = linked(&hash);
            state.dispatch(ActivityAction::Linked {
                filter: filter.clone(),
                open: open.clone(),
            });
            load.emit((filter, PAGE, None));
            if let Some(id) = open {
                load_details.emit(id);
            }
        }));
    }
    {
        let (load, load_details) = (load.clone(), load_details.clone());
        let s = (*state).clone();
        use_interval(
            crate::POLL_MS,
            Callback::from(move |()| {
                let shown = s.messages.len().clamp(PAGE, MAX_PAGE);
                load.emit((s.filter.clone(), shown, None));
                if let Some(id) = &s.open {
                    load_details.emit(id.clone());
                }
            }),
        );
    }
    let filter = {
        let (state, load) = (state.clone(), load.clone());
        Callback::from(move |filter: Filter| {
            // The address says what is shown, so a reload or a copied link
            // shows the same.
            crate::route::replace_hash(&filter.hash(None));
            state.dispatch(ActivityAction::Filter(filter.clone()));
            load.emit((filter, PAGE, None));
        })
    };
    let more = {
        let (state, load) = (state.clone(), load.clone());
        Callback::from(move |()| load.emit((state.filter.clone(), PAGE, state.next.clone())))
    };
    let toggle = {
        let (state, load_details) = (state.clone(), load_details.clone());
        Callback::from(move |id: String| {
            let opening = state.open.as_deref() != Some(id.as_str());
            // A copied address opens the same message.
            crate::route::replace_hash(&state.filter.hash(opening.then_some(id.as_str())));
            state.dispatch(ActivityAction::Toggle(id.clone()));
            if opening {
                load_details.emit(id);
            }
        })
    };
    let (changed_all, unauthorized_all) = (on_changed.clone(), on_unauthorized.clone());
    let change = {
        let (state, load_details) = (state.clone(), load_details.clone());
        Callback::from(move |(id, retried): (String, bool)| {
            let (state, load_details, changed, unauthorized) = (
                state.clone(),
                load_details.clone(),
                on_changed.clone(),
                on_unauthorized.clone(),
            );
            let verb = if retried { "/retry" } else { "/cancel" };
            let path = ["/api/messages/", &id, verb].concat();
            crate::spawn(async move {
                match typed(Method::POST, &path, read::summary).await {
                    Ok(summary) => {
                        state.dispatch(ActivityAction::Changed { summary, retried });
                        changed.emit(());
                        load_details.emit(id);
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => state.dispatch(ActivityAction::Refused(e.message().to_string())),
                }
            });
        })
    };
    let retry_all = {
        let (state, load) = (state.clone(), load.clone());
        Callback::from(move |()| {
            let (state, load, changed, unauthorized) = (
                state.clone(),
                load.clone(),
                changed_all.clone(),
                unauthorized_all.clone(),
            );
            let filter = state.filter.clone();
            let path = retry_path(&filter);
            crate::spawn(async move {
                match typed(Method::POST, &path, read::retried).await {
                    Ok(r) => {
                        state.dispatch(ActivityAction::Notice(retried_notice(&r)));
                        changed.emit(());
                        load.emit((filter, PAGE, None));
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => state.dispatch(ActivityAction::Refused(e.message().to_string())),
                }
            });
        })
    };
    UseActivity {
        state,
        filter,
        more,
        toggle,
        change,
        retry_all,
    }
}
