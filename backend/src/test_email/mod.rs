//! The test email: `POST /api/settings/test` here, and `mailroom check`
//! ([`check`]); both run [`Upstream::run`] (in [`crate::upstream`]), the
//! same client the delivery engine sends with.

pub mod check;

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::post;
use axum::{Json, Router};
use mailroom_shared::api::{TestRequest, TestResult};

use crate::error::{ApiJson, AppError};
use crate::settings::SettingsRepo;
use crate::store::CertSlot;
use crate::upstream::{Upstream, MAX_CONCURRENT_TESTS};

async fn test_settings(
    crate::http::profiles::ProfileRepo(repo): crate::http::profiles::ProfileRepo,
    State(tester): State<Arc<Upstream>>,
    ApiJson(body): ApiJson<TestRequest>,
) -> Result<Json<TestResult>, AppError> {
    let current = repo.load_current().await?;
    let mut report = body
        .settings
        .validate_with(current.stored_for(&body.settings));
    if let Some(msg) = mailroom_shared::validate::check_recipient(&body.recipient) {
        report.error(mailroom_shared::Field::Recipient, msg);
    }
    if !report.is_valid() {
        return Err(AppError::invalid_settings(report.errors));
    }
    let Ok(_slot) = tester.slots.try_acquire() else {
        return Err(AppError::busy(
            format!("{MAX_CONCURRENT_TESTS} test emails are already running. Wait a few seconds for one to finish, then try again."),
            5,
        ));
    };
    let mut settings = body.settings;
    current.fill_secrets(&mut settings);
    let row = current.certificate_for_test(&settings);
    let cert = row
        .map(|row| repo.open_certificate(row))
        .transpose()
        .map_err(|e| {
            AppError::field(
                "client_credential",
                format!("The stored certificate cannot be used ({e}). Make or upload the certificate again."),
            )
        })?;
    let result = tester.run(&settings, cert.as_ref(), &body.recipient).await;
    tracing::info!(ok = result.ok, stage = ?result.stage, code = ?result.code, "test email");
    // A pass with the pending certificate is recorded for every server: the
    // next save with these settings makes it active (docs/API.md §13).
    if let Some(row) = row.filter(|r| result.ok && r.slot == CertSlot::Pending) {
        let json = serde_json::to_string(&settings.normalized().without_secrets())
            .map_err(|e| AppError::Internal(e.to_string()))?;
        repo.store
            .pending_passed(&repo.profile, row.cert_der.clone(), json)
            .await?;
    }
    Ok(Json(result))
}

/// `POST /api/settings/test` (administrators only).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    SettingsRepo: FromRef<S>,
    Arc<Upstream>: FromRef<S>,
{
    Router::new()
        .route("/api/settings/test", post(test_settings))
        .route("/api/profiles/{id}/test", post(test_settings))
}
