//! `/api/webhooks` (docs/API.md §14, administrators only).

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mailroom_shared::webhooks::{
    check_events, check_format, check_url, DeliveryList, Format, NewWebhook, Webhook,
    WebhookChange, WebhookCreated, WebhookList, WebhookSecretReplaced, WebhookTest,
    PREVIOUS_SECRET_HOURS,
};
use mailroom_shared::FieldMessages;

use super::{new_secret, new_webhook, Webhooks};
use crate::crypto::Secret;
use crate::error::{ApiJson, AppError};
use crate::store::WebhookRow;

/// At most this many webhooks (each event is stored once per webhook).
pub const MAX_WEBHOOKS: usize = 20;

fn checked(url: &str, events: &[String], format: Format) -> Result<(), AppError> {
    let mut errors = FieldMessages::new();
    if let Err(e) = check_url(url) {
        errors.push("url", e);
    } else if let Err(e) = check_format(url, format) {
        errors.push("format", e);
    }
    if url.len() > 2048 {
        errors.push("url", "The URL is longer than 2,048 characters.");
    }
    if let Err(e) = check_events(events) {
        errors.push("events", e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Invalid(
            "The webhook is not valid.".into(),
            errors,
        ))
    }
}

async fn row(hooks: &Webhooks, id: &str) -> Result<WebhookRow, AppError> {
    hooks
        .store()
        .webhooks()
        .await?
        .into_iter()
        .find(|r| r.webhook.id == id)
        .ok_or_else(|| AppError::no_such("webhook", id))
}

async fn create(
    State(hooks): State<Arc<Webhooks>>,
    ApiJson(body): ApiJson<NewWebhook>,
) -> Result<(StatusCode, Json<WebhookCreated>), AppError> {
    let url = body.url.trim().to_string();
    checked(&url, &body.events, body.format)?;
    if hooks.store().webhooks().await?.len() >= MAX_WEBHOOKS {
        return Err(AppError::field(
            "url",
            format!("Mailroom keeps at most {MAX_WEBHOOKS} webhooks; delete one first."),
        ));
    }
    let webhook = new_webhook(url, body.events, body.format, hooks.clock().rfc3339());
    let secret = new_secret();
    hooks
        .store()
        .add_webhook(WebhookRow {
            webhook: webhook.clone(),
            secret: hooks
                .cipher()
                .encrypt("webhook_secret", &Secret::new(secret.clone())),
            previous: None,
        })
        .await?;
    hooks.changed();
    // The host only: a Slack or Teams incoming-webhook URL is itself the
    // credential that posts to the channel, and logs are read more widely.
    let host = reqwest::Url::parse(&webhook.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    tracing::info!(id = %webhook.id, %host, "webhook added");
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated { webhook, secret }),
    ))
}

/// A webhook as the API shows it: with `old_secret_until` (beyond the
/// contract) while the secret before its last *New secret* still signs.
fn shown(hooks: &Webhooks, row: WebhookRow) -> Webhook {
    let now = hooks.clock().wall().unix_timestamp();
    let until = row.previous_at(now).map(|(_, until)| *until);
    let mut w = row.webhook;
    w.old_secret_until = until.and_then(crate::clock::rfc3339_at);
    w
}

async fn list(State(hooks): State<Arc<Webhooks>>) -> Result<Json<WebhookList>, AppError> {
    let webhooks = hooks
        .store()
        .webhooks()
        .await?
        .into_iter()
        .map(|r| shown(&hooks, r))
        .collect();
    Ok(Json(WebhookList { webhooks }))
}

async fn change(
    State(hooks): State<Arc<Webhooks>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WebhookChange>,
) -> Result<Json<Webhook>, AppError> {
    let mut w = shown(&hooks, row(&hooks, &id).await?);
    if let Some(url) = body.url {
        w.url = url.trim().to_string();
    }
    if let Some(events) = body.events {
        w.events = events;
    }
    if let Some(format) = body.format {
        w.format = format;
    }
    checked(&w.url, &w.events, w.format)?;
    changed(&hooks, &id, hooks.store().update_webhook(w.clone()).await?)?;
    Ok(Json(w))
}

/// After a change to webhook `id` that the store made (`found`): the
/// senders read the webhooks again; `404` naming it when there was none.
fn changed(hooks: &Webhooks, id: &str, found: bool) -> Result<(), AppError> {
    if !found {
        return Err(AppError::no_such("webhook", id));
    }
    hooks.changed();
    Ok(())
}

async fn delete(
    State(hooks): State<Arc<Webhooks>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    changed(&hooks, &id, hooks.store().delete_webhook(&id).await?)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/webhooks/{id}/secret` (beyond the contract): a new signing
/// secret, shown once. The old one goes on signing each request beside it
/// for [`PREVIOUS_SECRET_HOURS`], so the receiver can be given the new one
/// without refusing anything meanwhile; a second new secret in that time
/// ends the oldest at once. A Slack or Teams webhook has none: its URL is
/// the credential.
async fn replace_secret(
    State(hooks): State<Arc<Webhooks>>,
    Path(id): Path<String>,
) -> Result<Json<WebhookSecretReplaced>, AppError> {
    let mut webhook = row(&hooks, &id).await?.webhook;
    if webhook.format != Format::Standard {
        let mut errors = FieldMessages::new();
        errors.push("format", "A Slack or Teams webhook is not signed: its URL is what lets it post. To replace that, make a new URL in the channel (Teams: a new Workflows webhook; Slack: a new incoming webhook) and edit the webhook to use it.");
        return Err(AppError::Invalid(
            "This webhook has no signing secret.".into(),
            errors,
        ));
    }
    let secret = new_secret();
    let until = hooks.clock().wall().unix_timestamp() + PREVIOUS_SECRET_HOURS * 3600;
    let stored = hooks
        .cipher()
        .encrypt("webhook_secret", &Secret::new(secret.clone()));
    let found = hooks
        .store()
        .replace_webhook_secret(&id, stored, until)
        .await?;
    changed(&hooks, &id, found)?;
    tracing::info!(id = %webhook.id, "webhook signing secret replaced; the old one signs too for {PREVIOUS_SECRET_HOURS} hours");
    let previous_until = crate::clock::rfc3339_at(until).unwrap_or_default();
    webhook.old_secret_until = Some(previous_until.clone());
    Ok(Json(WebhookSecretReplaced {
        webhook,
        secret,
        previous_until,
    }))
}

/// `DELETE /api/webhooks/{id}/old-secret` (beyond the contract): the secret
/// before the last *New secret* signs no more, before its day is up. Once
/// the receiver has the new one, a test then shows that it takes that one
/// alone (while both sign, a receiver that knows only the old one passes).
/// `204` whether or not one was signing; `404` for no such webhook.
async fn end_old_secret(
    State(hooks): State<Arc<Webhooks>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    changed(
        &hooks,
        &id,
        hooks.store().end_old_webhook_secret(&id).await?,
    )?;
    tracing::info!(id = %id, "webhook's old signing secret ended: only its current one signs");
    Ok(StatusCode::NO_CONTENT)
}

async fn test(
    State(hooks): State<Arc<Webhooks>>,
    Path(id): Path<String>,
) -> Result<Json<WebhookTest>, AppError> {
    let row = row(&hooks, &id).await?;
    Ok(Json(hooks.test(&row).await))
}

async fn deliveries(
    State(hooks): State<Arc<Webhooks>>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryList>, AppError> {
    row(&hooks, &id).await?;
    Ok(Json(DeliveryList {
        deliveries: hooks.store().deliveries(&id, 50).await?,
    }))
}

/// The webhook routes.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Webhooks>: FromRef<S>,
{
    Router::new()
        .route("/api/webhooks", get(list).post(create))
        .route(
            "/api/webhooks/{id}",
            axum::routing::patch(change).delete(delete),
        )
        .route("/api/webhooks/{id}/test", post(test))
        .route("/api/webhooks/{id}/secret", post(replace_secret))
        .route(
            "/api/webhooks/{id}/old-secret",
            axum::routing::delete(end_old_secret),
        )
        .route("/api/webhooks/{id}/deliveries", get(deliveries))
}
