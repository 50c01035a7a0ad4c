//! `GET` and `PUT /api/settings`: stored settings without their secrets, and
//! validated, atomic, version-checked saves.

use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::get;
use axum::{Json, Router};
use mailroom_shared::api::{PublicSettings, PutSettings, Saved, SettingsResponse, SAVED_MESSAGE};
use mailroom_shared::{AuthMethod, Settings, StoredSecrets};

use crate::clock::Clock;
use crate::crypto::{Cipher, KeyError, Secret};
use crate::error::{ApiJson, AppError};
use crate::store::{CertRow, CertSlot, Record, SettingsStore, StoreError};
use crate::upstream::certificate::CertKey;

/// The settings with their secrets: the store, the key that opens the
/// secrets, and the clock that stamps saves.
#[derive(Clone)]
pub struct SettingsRepo {
    /// Where the settings live.
    pub store: Arc<dyn SettingsStore>,
    /// Encrypts secrets at rest.
    pub cipher: Arc<Cipher>,
    /// Stamps saves.
    pub clock: Arc<dyn Clock>,
    /// Notified (one permit) after every save, so delivery tries the new settings.
    pub saved: Arc<tokio::sync::Notify>,
    /// Wakes the delivery workers (a new message, a save).
    pub wake: Arc<tokio::sync::Notify>,
    /// Which profile's settings (docs/API.md §15); `default` for `/api/settings`.
    pub profile: Arc<str>,
}

impl SettingsRepo {
    /// The same store, for another profile's settings.
    pub fn for_profile(&self, profile: &str) -> SettingsRepo {
        SettingsRepo {
            profile: Arc::from(profile),
            ..self.clone()
        }
    }
}

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The settings JSON does not parse.
    #[error("the stored settings do not parse: {0}")]
    Settings(#[from] serde_json::Error),
    /// A secret does not decrypt with this key.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record could not be read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl From<DecodeError> for AppError {
    fn from(e: DecodeError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<LoadError> for AppError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Store(e) => e.into(),
            LoadError::Decode(e) => e.into(),
        }
    }
}

/// The stored settings with their secrets decrypted, for the test email.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// The stored settings, without secrets.
    pub settings: Option<Settings>,
    /// The stored client secret.
    pub client_secret: Option<Secret>,
    /// The stored password.
    pub password: Option<Secret>,
    /// The stored version, 0 before the first save.
    pub version: u64,
    /// When it was saved.
    pub updated_at: Option<String>,
    /// The stored certificates (docs/API.md §13), keys still encrypted.
    pub certificates: Vec<CertRow>,
}

/// The settings a certificate row names (its binding, or its passing test).
fn row_settings(json: Option<&str>) -> Option<Settings> {
    json.and_then(|j| serde_json::from_str(j).ok())
}

impl Current {
    /// Which secrets are stored (what `GET` reports).
    pub fn stored(&self) -> StoredSecrets {
        StoredSecrets {
            client_secret: self.client_secret.is_some(),
            password: self.password.is_some(),
            certificate: !self.certificates.is_empty(),
            ..StoredSecrets::default()
        }
    }

    /// Which stored secrets `new` may use: none when it points somewhere other
    /// than where they were saved for (docs/API.md §3). A pending certificate
    /// is new and may be tried anywhere; the active one only where it was saved.
    pub fn stored_for(&self, new: &Settings) -> StoredSecrets {
        let mut stored = self.stored().towards(self.settings.as_ref(), new);
        let active = self.certificate(CertSlot::Active);
        let bound = active.is_some_and(|row| {
            row_settings(row.bound_settings.as_deref())
                .is_some_and(|bound| new.same_secret_destination(&bound))
        });
        stored.certificate = self.certificate(CertSlot::Pending).is_some() || bound;
        stored.certificate_elsewhere = active.is_some() && !bound;
        stored
    }

    /// The stored certificate in a slot.
    pub fn certificate(&self, slot: CertSlot) -> Option<&CertRow> {
        self.certificates.iter().find(|c| c.slot == slot)
    }

    /// Which certificate a test of `new` uses: the pending one when there is
    /// one, else the active one where it is bound (docs/API.md §13).
    pub fn certificate_for_test(&self, new: &Settings) -> Option<&CertRow> {
        if !new.uses_certificate() {
            return None;
        }
        self.certificate(CertSlot::Pending)
            .or_else(|| self.certificate_for_delivery(new))
    }

    /// The active certificate, when `new` is where it was saved for.
    pub fn certificate_for_delivery(&self, new: &Settings) -> Option<&CertRow> {
        if !new.uses_certificate() {
            return None;
        }
        self.certificate(CertSlot::Active).filter(|row| {
            row_settings(row.bound_settings.as_deref())
                .is_some_and(|bound| new.same_secret_destination(&bound))
        })
    }

    /// The stored client secret, when `new` may use it.
    fn client_secret_for(&self, new: &Settings) -> Option<&Secret> {
        self.client_secret
            .as_ref()
            .filter(|_| self.stored_for(new).client_secret_usable())
    }

    /// The stored password, when `new` may use it.
    fn password_for(&self, new: &Settings) -> Option<&Secret> {
        self.password
            .as_ref()
            .filter(|_| self.stored_for(new).password_usable())
    }

    /// The saved settings with their stored secrets, as delivery signs in
    /// with them; `None` before the first save.
    pub fn secret_complete(&self) -> Option<Settings> {
        let mut settings = self.settings.clone()?;
        self.fill_secrets(&mut settings);
        Some(settings)
    }

    /// Fills absent secrets of `settings` with the stored ones, only where
    /// the secret is bound to this destination.
    pub fn fill_secrets(&self, settings: &mut Settings) {
        if settings.client_secret.is_none() {
            settings.client_secret = self
                .client_secret_for(settings)
                .map(|s| s.expose().to_string());
        }
        if settings.password.is_none() {
            settings.password = self.password_for(settings).map(|s| s.expose().to_string());
        }
    }
}

impl SettingsRepo {
    /// Loads and decrypts the current record, with the stored certificates.
    pub async fn load_current(&self) -> Result<Current, LoadError> {
        let certificates = self.store.certificates(&self.profile).await?;
        let Some(record) = self.store.load(&self.profile).await? else {
            return Ok(Current {
                certificates,
                ..Current::default()
            });
        };
        let mut current = decode(&self.cipher, record)?;
        current.certificates = certificates;
        Ok(current)
    }

    /// A stored certificate with its key decrypted, ready to sign.
    pub fn open_certificate(&self, row: &CertRow) -> Result<Arc<CertKey>, String> {
        let key = self
            .cipher
            .decrypt("certificate_key", &row.private_key)
            .map_err(|e| e.to_string())?;
        CertKey::from_stored(row.cert_der.clone(), &key, row.generated)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

impl SettingsRepo {
    /// The saved settings without their secrets (nothing decrypted): what
    /// submission needs for the From rule and the default sender.
    pub async fn load_settings(&self) -> Result<Option<Settings>, LoadError> {
        let Some(record) = self.store.load(&self.profile).await? else {
            return Ok(None);
        };
        Ok(Some(
            serde_json::from_str(&record.settings_json).map_err(DecodeError::from)?,
        ))
    }
}

/// Turns a stored record into settings and secrets.
pub fn decode(cipher: &Cipher, record: Record) -> Result<Current, DecodeError> {
    let settings: Settings = serde_json::from_str(&record.settings_json)?;
    let decrypt = |field: &str, blob: &Option<Vec<u8>>| {
        blob.as_ref().map(|b| cipher.decrypt(field, b)).transpose()
    };
    Ok(Current {
        client_secret: decrypt("client_secret", &record.client_secret)?,
        password: decrypt("password", &record.password)?,
        settings: Some(settings),
        version: record.version,
        updated_at: Some(record.updated_at),
        certificates: Vec::new(),
    })
}

async fn get_settings(
    crate::http::profiles::ProfileRepo(repo): crate::http::profiles::ProfileRepo,
) -> Result<Json<SettingsResponse>, AppError> {
    settings_of(&repo).await.map(Json)
}

/// A profile's settings as `GET /api/settings` shows them.
pub(crate) async fn settings_of(repo: &SettingsRepo) -> Result<SettingsResponse, AppError> {
    let current = repo.load_current().await?;
    let stored = current.stored();
    Ok(SettingsResponse {
        settings: current
            .settings
            .map(|settings| PublicSettings::new(settings, stored)),
        version: current.version,
        updated_at: current.updated_at,
    })
}

/// The names of the fields that differ; a secret counts as changed when the
/// value to store differs from the stored one (or is deleted). Values are
/// never recorded.
fn changed_fields(
    old: Option<&Settings>,
    new: &Settings,
    current: &Current,
    secrets: (Option<&Secret>, Option<&Secret>),
) -> Vec<String> {
    let to_map = |s: &Settings| match serde_json::to_value(Settings {
        client_secret: None,
        password: None,
        ..s.clone()
    }) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let new_map = to_map(new);
    let old_map = old.map(to_map).unwrap_or_default();
    let mut changed: Vec<String> = new_map
        .iter()
        .filter(|(k, v)| old_map.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    if secrets.0 != current.client_secret.as_ref() {
        changed.push("client_secret".into());
    }
    if secrets.1 != current.password.as_ref() {
        changed.push("password".into());
    }
    changed.sort();
    changed.dedup();
    changed
}

async fn put_settings(
    crate::http::profiles::ProfileRepo(repo): crate::http::profiles::ProfileRepo,
    ApiJson(body): ApiJson<PutSettings>,
) -> Result<Json<Saved>, AppError> {
    save_settings(&repo, body).await.map(Json)
}

/// `PUT /api/settings` for the repo's profile.
pub(crate) async fn save_settings(
    repo: &SettingsRepo,
    body: PutSettings,
) -> Result<Saved, AppError> {
    let current = repo.load_current().await?;
    let (record, changed) = record_to_save(repo, &current, body.settings, body.version)?;
    let version = repo
        .store
        .save(&repo.profile, body.version, record, changed.clone())
        .await?;
    tracing::info!(profile = %repo.profile, version, changed = %changed.join(","), "settings saved");
    repo.saved.notify_one();
    Ok(Saved {
        message: SAVED_MESSAGE.into(),
        version,
    })
}

/// Checks settings to save over `current` and makes the stored record
/// (secrets encrypted, the certificate to activate) and the changed fields.
pub(crate) fn record_to_save(
    repo: &SettingsRepo,
    current: &Current,
    settings: Settings,
    version: u64,
) -> Result<(Record, Vec<String>), AppError> {
    let report = settings.validate_with(current.stored_for(&settings));
    if !report.is_valid() {
        return Err(AppError::invalid_settings(report.errors));
    }
    let mut new = settings.normalized();
    let activate_certificate = certificate_to_activate(current, &new)?;
    // Only the secret of the method in use is kept: switching methods deletes
    // the other one, and a stored one is kept only for its own destination.
    let client_secret = match new.auth_method {
        AuthMethod::OAuth2ClientCredentials if new.uses_certificate() => None,
        AuthMethod::OAuth2ClientCredentials => new
            .client_secret
            .take()
            .map(Secret::new)
            .or_else(|| current.client_secret_for(&new).cloned()),
        _ => None,
    };
    let password = match new.auth_method {
        AuthMethod::Password => new
            .password
            .take()
            .map(Secret::new)
            .or_else(|| current.password_for(&new).cloned()),
        _ => None,
    };
    new.client_secret = None;
    new.password = None;
    let changed = changed_fields(
        current.settings.as_ref(),
        &new,
        current,
        (client_secret.as_ref(), password.as_ref()),
    );
    let client_secret = client_secret.map(|s| repo.cipher.encrypt("client_secret", &s));
    let password = password.map(|s| repo.cipher.encrypt("password", &s));
    let settings_json =
        serde_json::to_string(&new).map_err(|e| AppError::Internal(e.to_string()))?;
    let record = Record {
        settings_json,
        client_secret,
        password,
        version,
        updated_at: repo.clock.rfc3339(),
        activate_certificate,
    };
    Ok((record, changed))
}

/// With `client_credential: certificate`, which pending certificate this
/// save makes active: one whose test passed with these settings. Without
/// one, the active certificate must be bound here (docs/API.md §13).
fn certificate_to_activate(current: &Current, new: &Settings) -> Result<Option<Vec<u8>>, AppError> {
    if !new.uses_certificate() {
        return Ok(None);
    }
    if let Some(pending) = current.certificate(CertSlot::Pending) {
        let passed = row_settings(pending.passed_settings.as_deref())
            .is_some_and(|tested| new.same_secret_destination(&tested));
        if passed {
            return Ok(Some(pending.cert_der.clone()));
        }
    }
    if current.certificate_for_delivery(new).is_some() {
        return Ok(None);
    }
    let message = if current.certificate(CertSlot::Pending).is_some() {
        "Send a test email with the new certificate first: it becomes active when a test with it passes, so delivery never switches to a certificate Entra does not accept yet."
    } else if current.certificate(CertSlot::Active).is_some() {
        mailroom_shared::validate::CERTIFICATE_AGAIN
    } else {
        mailroom_shared::validate::CERTIFICATE_NEEDED
    };
    Err(AppError::invalid_settings(
        [("client_credential", vec![message.to_string()])].into(),
    ))
}

/// `GET` and `PUT /api/settings` (administrators only).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    SettingsRepo: FromRef<S>,
{
    Router::new()
        .route("/api/settings", get(get_settings).put(put_settings))
        .route(
            "/api/profiles/{id}/settings",
            get(get_settings).put(put_settings),
        )
}
