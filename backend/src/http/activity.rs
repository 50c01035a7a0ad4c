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
    if let Some(n) = q.q.as_ref().map(|t| t.chars().count()) {
        if n > MAX_SEARCH {
            return Err(AppError::field(
                "q",
                format!("The search is {n} characters long; search for at most {MAX_SEARCH}, such as part of an address or the subject."),
            ));
        }
    }
    let (messages, next) = s
        .apps
        .queue
        .list(ListFilter {
            status,
            app: q.app.filter(|a| !a.is_empty()),
            q: q.q,
            limit,
            before: before.clone(),
            profile: q.profile.filter(|p| !p.is_empty()),
        })
        .await?;
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
        .route("/api/messages/{id}/retry", post(retry))
        .route("/api/messages/{id}/cancel", post(cancel))
        .route("/api/settings/history", get(history))
        .route("/api/profiles/{id}/history", get(history))
}
