//! The activity routes (docs/API.md §9, administrators only): the queue,
//! the message list and details, retry and cancel, and the settings history.

use axum::extract::{FromRef, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use mailroom_shared::sending::{
    Change, Details, History, MessageList, QueueState, Status, Summary,
};
use serde::Deserialize;

use crate::error::{short, ApiQuery, AppError};
use crate::intake::Sending;
use crate::queue::{ChangeError, ListFilter};

async fn queue_state(State(s): State<Sending>) -> Result<Json<QueueState>, AppError> {
    let q = &s.apps.queue;
    let (profiles, warnings) = crate::http::profiles::states(&s).await?;
    Ok(Json(QueueState {
        counts: q.counts().await?,
        paused: profiles
            .iter()
            .find(|p| p.id == crate::store::DEFAULT_PROFILE)
            .and_then(|p| p.paused.clone()),
        warnings,
        profiles,
    }))
}

use mailroom_shared::sending::MAX_SEARCH;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    app: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    before: Option<String>,
    profile: Option<String>,
}

/// A search of at most [`MAX_SEARCH`] characters.
fn check_search(q: Option<&str>) -> Result<(), AppError> {
    match q.map(|t| t.chars().count()) {
        Some(n) if n > MAX_SEARCH => Err(AppError::field(
            "q",
            format!("The search is {n} characters long; search for at most {MAX_SEARCH}, such as part of an address or the subject."),
        )),
        _ => Ok(()),
    }
}

/// A filter's value, when one is given (`app=` alone is none).
fn given(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// When a filtered list came back empty: an `app` or `profile` that names
/// none is refused, where an empty list said "nothing failed" to a script
/// that gave an app's name (`app=Billing`, as the page shows it) or a
/// mistyped id; one given by name, or its id in another case, is told the
/// id. An id of a deleted app whose messages are left still lists them.
async fn check_names(
    s: &Sending,
    app: Option<&str>,
    profile: Option<&str>,
) -> Result<(), AppError> {
    if let Some(given) = app {
        // A message from a trusted network shows its source in `app`
        // (`trusted network 10.0.0.5`): one with nothing to list is none,
        // when it names the address it came from; one mistyped
        // (`trusted network 10.0.0`) listed nothing without a word.
        match given
            .strip_prefix(crate::apps::TRUSTED_SOURCE)
            .map(str::trim)
        {
            Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => {}
            Some(_) => {
                return Err(AppError::field(
                    "app",
                    format!("“{}” names no address: write it as a message from a trusted network shows it, like app=trusted network 10.0.0.5.", short(given)),
                ));
            }
            None => {
                let apps = s.apps.queue.list_apps().await?;
                names_one(&apps, given, |a| (&a.id, &a.name), ("app", "an", "app_…"))?;
            }
        }
    }
    if let Some(given) = profile {
        let profiles = s.apps.profiles.profiles().await?;
        let ids = ("profile", "a", "default or prf_…");
        names_one(&profiles, given, |p| (&p.id, &p.name), ids)?;
    }
    Ok(())
}

/// `given` is the id of one of `all` (`id_name` gives each one's id and
/// name), or the refusal on the field `kind` (with its article and the
/// shape of its ids), telling the id of the one it names by its name or
/// by its id in another case.
fn names_one<T>(
    all: &[T],
    given: &str,
    id_name: impl Fn(&T) -> (&String, &String),
    (kind, article, ids): (&str, &str, &str),
) -> Result<(), AppError> {
    if all.iter().any(|t| id_name(t).0 == given) {
        return Ok(());
    }
    Err(AppError::field(
        kind,
        match crate::apps::meant_by(all, given, &id_name).map(id_name) {
            Some((id, name)) => format!("Filter by the {kind}'s id: {kind}={id} (“{}” is its name).", short(name)),
            None => format!("There is no {kind} “{}”, and no message of one by that id: give {article} {kind}'s id ({ids}) from GET /api/{kind}s.", short(given)),
        },
    ))
}

async fn list(
    State(s): State<Sending>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<MessageList>, AppError> {
    let limit = match q.limit.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        None => 50,
        Some(l) => l.parse::<u32>().map_err(|_| {
            AppError::field(
                "limit",
                format!("“{}” is not a number of messages: give a whole number from 1 to 200, like limit=50.", short(l)),
            )
        })?,
    };
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => Some(Status::from_name(name).ok_or_else(|| {
            AppError::field("status", format!("“{}” is not a status: use queued, sending, sent, deferred, failed or cancelled.", short(name)))
        })?),
    };
    let before = q.before.filter(|b| !b.is_empty());
    check_search(q.q.as_deref())?;
    let (messages, next) = s
        .apps
        .queue
        .list(ListFilter {
            status,
            app: given(&q.app),
            q: q.q.clone(),
            limit,
            before: before.clone(),
            profile: given(&q.profile),
        })
        .await?;
    if messages.is_empty() {
        check_names(&s, given(&q.app).as_deref(), given(&q.profile).as_deref()).await?;
    }
    // An empty page after a message that is not there (mistyped, or removed
    // by retention since the last page) would look like the list's end.
    if let (true, Some(id)) = (messages.is_empty(), &before) {
        if s.apps.queue.details(id).await?.is_none() {
            return Err(AppError::field(
                "before",
                format!("There is no message “{}” to list from (retention may have removed it); list again without before.", short(id)),
            ));
        }
    }
    Ok(Json(MessageList { messages, next }))
}

async fn details(
    State(s): State<Sending>,
    Path(id): Path<String>,
) -> Result<Json<Details>, AppError> {
    s.apps
        .queue
        .details(&id)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::no_such("message", &id))
}

fn change_error(id: &str, e: ChangeError, allowed: &str) -> AppError {
    match e {
        ChangeError::NotFound => AppError::no_such("message", id),
        ChangeError::Status(status) => AppError::Conflict(format!(
            "The message is {}; only a {allowed} message can be changed this way.",
            status.as_str()
        )),
        // Full disk, database away: the same answers as everywhere else.
        ChangeError::Store(e) => AppError::from(e),
    }
}

async fn retry(
    State(s): State<Sending>,
    Path(id): Path<String>,
) -> Result<Json<Summary>, AppError> {
    let clock = &s.apps.clock;
    let summary = s
        .apps
        .queue
        .retry(&id, &clock.rfc3339(), clock.wall().unix_timestamp())
        .await
        .map_err(|e| change_error(&id, e, "failed or deferred"))?;
    s.settings.wake.notify_waiters();
    Ok(Json(summary))
}

/// `POST /api/messages/retry?status=failed&app=&profile=&q=` (beyond the
/// contract): every message the filter of `GET /api/messages` matches,
/// failed or deferred, queued again as `POST /api/messages/{id}/retry`
/// does one. After a fix (a Send-As right granted, a mailbox enabled), the
/// messages it failed go again without a request each.
async fn retry_all(
    State(s): State<Sending>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<mailroom_shared::sending::Retried>, AppError> {
    use mailroom_shared::sending::{Retried, MAX_BULK_RETRY};
    // The list's filter, not its pages: every match is retried.
    for (name, given) in [("limit", &q.limit), ("before", &q.before)] {
        if given.is_some() {
            return Err(AppError::field(
                name,
                format!("Retrying takes status, app, profile and q, not {name}: every message they match is queued again."),
            ));
        }
    }
    let status = match q.status.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        Some("failed") => Status::Failed,
        Some("deferred") => Status::Deferred,
        Some(other) => {
            return Err(AppError::field(
                "status",
                format!("Only failed or deferred messages can be retried, not “{}”: give status=failed or status=deferred.", short(other)),
            ))
        }
        None => {
            return Err(AppError::field(
                "status",
                "Say which messages to retry: status=failed or status=deferred, and app=, profile= or q= to narrow them as GET /api/messages does.",
            ))
        }
    };
    check_search(q.q.as_deref())?;
    // The matching ids first, then each retried: a retried message leaves
    // the status the pages are read by.
    let mut ids = Vec::new();
    let mut before = None;
    let more = loop {
        let (page, next) = s
            .apps
            .queue
            .list(ListFilter {
                status: Some(status),
                app: given(&q.app),
                q: given(&q.q),
                limit: 200,
                before: before.take(),
                profile: given(&q.profile),
            })
            .await?;
        ids.extend(page.into_iter().map(|m| m.id));
        if ids.len() >= MAX_BULK_RETRY {
            let more = ids.len() > MAX_BULK_RETRY || next.is_some();
            ids.truncate(MAX_BULK_RETRY);
            break more;
        }
        match next {
            Some(id) => before = Some(id),
            None => break false,
        }
    };
    if ids.is_empty() {
        check_names(&s, given(&q.app).as_deref(), given(&q.profile).as_deref()).await?;
    }
    let clock = &s.apps.clock;
    let (mut retried, mut skipped) = (0, 0);
    for id in &ids {
        match s
            .apps
            .queue
            .retry(id, &clock.rfc3339(), clock.wall().unix_timestamp())
            .await
        {
            Ok(_) => retried += 1,
            // Its body is gone, or it changed meanwhile.
            Err(ChangeError::NotFound | ChangeError::Status(_)) => skipped += 1,
            Err(ChangeError::Store(e)) => return Err(e.into()),
        }
    }
    if retried > 0 {
        s.settings.wake.notify_waiters();
    }
    tracing::info!(
        retried,
        skipped,
        more,
        status = status.as_str(),
        "messages retried"
    );
    Ok(Json(Retried {
        retried,
        skipped,
        more,
    }))
}

async fn cancel(
    State(s): State<Sending>,
    Path(id): Path<String>,
) -> Result<Json<Summary>, AppError> {
    let summary = s
        .apps
        .queue
        .cancel(&id, &s.apps.clock.rfc3339())
        .await
        .map_err(|e| change_error(&id, e, "queued or deferred"))?;
    Ok(Json(summary))
}

async fn history(
    crate::http::profiles::ProfileRepo(repo): crate::http::profiles::ProfileRepo,
) -> Result<Json<History>, AppError> {
    let entries = repo.store.history(&repo.profile).await?;
    Ok(Json(History {
        changes: entries
            .into_iter()
            .map(|e| Change {
                version: e.version,
                at: e.changed_at,
                fields: e.changed_fields,
            })
            .collect(),
    }))
}

/// The activity routes (administrators only).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Sending: FromRef<S>,
    crate::settings::SettingsRepo: FromRef<S>,
{
    Router::new()
        .route("/api/queue", get(queue_state))
        .route("/api/messages", get(list))
        .route("/api/messages/{id}", get(details))
        .route("/api/messages/retry", post(retry_all))
        .route("/api/messages/{id}/retry", post(retry))
        .route("/api/messages/{id}/cancel", post(cancel))
        .route("/api/settings/history", get(history))
        .route("/api/profiles/{id}/history", get(history))
}
