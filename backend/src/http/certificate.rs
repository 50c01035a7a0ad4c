//! `/api/settings/certificate` (docs/API.md §13, administrators only): make
//! or bring a certificate (it starts *pending*), list the active and pending
//! ones, download the public part for Entra, delete one.

use axum::extract::FromRef;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mailroom_shared::api::{CertInfo, Certificates, NewCertificate};
use serde::Deserialize;

use crate::error::{ApiJson, ApiQuery, AppError};
use crate::settings::{Current, SettingsRepo};
use crate::store::{CertRow, CertSlot};
use crate::upstream::certificate::{CertError, CertKey};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Which {
    which: Option<String>,
}

impl Which {
    fn slot(&self, default: CertSlot) -> Result<CertSlot, AppError> {
        match self
            .which
            .as_deref()
            .map(str::trim)
            .filter(|w| !w.is_empty())
        {
            None => Ok(default),
            Some("active") => Ok(CertSlot::Active),
            Some("pending") => Ok(CertSlot::Pending),
            Some(other) => Err(AppError::Invalid(
                "The query is not valid.".into(),
                [(
                    "which",
                    vec![format!(
                        "“{}” is not a certificate: use active or pending.",
                        crate::error::short(other)
                    )],
                )]
                .into(),
            )),
        }
    }
}

fn info(row: &CertRow) -> Option<CertInfo> {
    crate::upstream::certificate::info_of(&row.cert_der, row.generated).ok()
}

fn listing(current: &Current) -> Certificates {
    Certificates {
        active: current.certificate(CertSlot::Active).and_then(info),
        pending: current.certificate(CertSlot::Pending).and_then(info),
    }
}

fn cert_error(e: CertError) -> AppError {
    match e {
        CertError::Generate(m) => AppError::Internal(m),
        e => AppError::Invalid(
            "The certificate is not usable.".into(),
            [(e.field(), vec![e.to_string()])].into(),
        ),
    }
}

/// Whether a pasted text holds a certificate and a private key.
fn holds_both(text: Option<&str>) -> bool {
    text.is_some_and(|t| {
        t.contains("-----BEGIN CERTIFICATE-----") && t.contains("PRIVATE KEY-----")
    })
}

async fn create(
    crate::http::profiles::ProfileRepo(repo): crate::http::profiles::ProfileRepo,
    ApiJson(body): ApiJson<NewCertificate>,
) -> Result<(StatusCode, Json<CertInfo>), AppError> {
    let now = repo.clock.wall();
    let present = |v: &Option<String>| v.as_deref().is_some_and(|t| !t.trim().is_empty());
    let (cert_present, key_present) = (
        present(&body.certificate_pem),
        present(&body.private_key_pem),
    );
    let made = match (cert_present, key_present) {
        (false, false) => {
            let name = format!("Mailroom {}", now.date());
            // RSA key generation takes a while: off the async workers.
            tokio::task::spawn_blocking(move || CertKey::generate(&name, now))
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?
        }
        (true, true) => CertKey::bring(
            body.certificate_pem.as_deref().unwrap_or_default(),
            body.private_key_pem.as_deref().unwrap_or_default(),
            now,
        ),
        // One text holding both, as `openssl pkcs12 -nodes` writes a .pfx
        // out (its key, then its certificate), pasted in either box.
        (true, false) if holds_both(body.certificate_pem.as_deref()) => {
            let both = body.certificate_pem.as_deref().unwrap_or_default();
            CertKey::bring(both, both, now)
        }
        (false, true) if holds_both(body.private_key_pem.as_deref()) => {
            let both = body.private_key_pem.as_deref().unwrap_or_default();
            CertKey::bring(both, both, now)
        }
        (true, false) => Err(CertError::Key(
            "Paste the private key that belongs to this certificate, or send {} to let Mailroom generate both.".into(),
        )),
        (false, true) => Err(CertError::Certificate(
            "Paste the certificate that belongs to this key, or send {} to let Mailroom generate both.".into(),
        )),
    };
    let (cert, key) = made.map_err(cert_error)?;
    let row = CertRow {
        slot: CertSlot::Pending,
        cert_der: cert.der().to_vec(),
        private_key: repo.cipher.encrypt("certificate_key", &key),
        generated: cert.generated,
        created_at: repo.clock.rfc3339(),
        bound_settings: None,
        passed_settings: None,
    };
    repo.store
        .put_pending_certificate(&repo.profile, row)
        .await?;
    tracing::info!(thumbprint = %cert.info.thumbprint_sha1, generated = cert.generated, "certificate pending");
    Ok((StatusCode::CREATED, Json(cert.info.clone())))
}

async fn list(
    crate::http::profiles::ProfileRepo(repo): crate::http::profiles::ProfileRepo,
) -> Result<Json<Certificates>, AppError> {
    Ok(Json(listing(&repo.load_current().await?)))
}

async fn download(repo: SettingsRepo, which: Which, ext: &str) -> Result<Response, AppError> {
    let current = repo.load_current().await?;
    let newest = if current.certificate(CertSlot::Pending).is_some() {
        CertSlot::Pending
    } else {
        CertSlot::Active
    };
    let slot = which.slot(newest)?;
    let row = current.certificate(slot).ok_or_else(|| {
        AppError::NotFound(format!(
            "There is no {} certificate. Generate one or bring your own first.",
            slot.as_str()
        ))
    })?;
    let info =
        info(row).ok_or_else(|| AppError::Internal("stored certificate unreadable".into()))?;
    let pem = crate::upstream::certificate::pem_of(&row.cert_der);
    let name = format!(
        "mailroom-{}.{ext}",
        info.thumbprint_sha1
            .get(..8)
            .unwrap_or_default()
            .to_ascii_lowercase()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        pem,
    )
        .into_response())
}

async fn download_pem(
    crate::http::profiles::ProfileRepo(repo): crate::http::profiles::ProfileRepo,
    ApiQuery(which): ApiQuery<Which>,
) -> Result<Response, AppError> {
    download(repo, which, "pem").await
}

async fn download_cer(
    crate::http::profiles::ProfileRepo(repo): crate::http::profiles::ProfileRepo,
    ApiQuery(which): ApiQuery<Which>,
) -> Result<Response, AppError> {
    download(repo, which, "cer").await
}

async fn delete(
    crate::http::profiles::ProfileRepo(repo): crate::http::profiles::ProfileRepo,
    ApiQuery(which): ApiQuery<Which>,
) -> Result<StatusCode, AppError> {
    let slot = which.slot(CertSlot::Pending)?;
    let current = repo.load_current().await?;
    if slot == CertSlot::Active
        && current
            .settings
            .as_ref()
            .is_some_and(|s| s.uses_certificate())
    {
        return Err(AppError::Conflict(
            "The saved settings sign in with the active certificate. Switch them to a client secret, or make a new certificate active (test and save with it), before deleting it.".into(),
        ));
    }
    if !repo.store.delete_certificate(&repo.profile, slot).await? {
        return Err(AppError::NotFound(format!(
            "There is no {} certificate.",
            slot.as_str()
        )));
    }
    tracing::info!(slot = slot.as_str(), "certificate deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The certificate routes.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    SettingsRepo: FromRef<S>,
{
    Router::new()
        .route(
            "/api/settings/certificate",
            get(list).post(create).delete(delete),
        )
        .route("/api/settings/certificate.pem", get(download_pem))
        .route("/api/settings/certificate.cer", get(download_cer))
        .route(
            "/api/profiles/{id}/certificate",
            get(list).post(create).delete(delete),
        )
        .route("/api/profiles/{id}/certificate.pem", get(download_pem))
        .route("/api/profiles/{id}/certificate.cer", get(download_cer))
}
