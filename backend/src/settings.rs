//! `GET` and `PUT /api/settings`: stored settings without their secrets, and
//! validated, atomic, version-checked saves.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use mailroom_shared::api::{PublicSettings, PutSettings, Saved, SettingsResponse, SAVED_MESSAGE};
use mailroom_shared::{AuthMethod, Settings, StoredSecrets};

use crate::clock::Clock;
use crate::crypto::{Cipher, KeyError, Secret};
use crate::error::{ApiJson, AppError};
use crate::store::{Record, SettingsStore, StoreError};

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
}

impl Current {
    /// Which secrets are stored (what `GET` reports).
    pub fn stored(&self) -> StoredSecrets {
        StoredSecrets {
            client_secret: self.client_secret.is_some(),
            password: self.password.is_some(),
            elsewhere: false,
        }
    }

    /// Which stored secrets `new` may use: none when it points somewhere other
    /// than where they were saved for (docs/API.md §3).
    pub fn stored_for(&self, new: &Settings) -> StoredSecrets {
        self.stored().towards(self.settings.as_ref(), new)
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
    /// Loads and decrypts the current record.
    pub async fn load_current(&self) -> Result<Current, LoadError> {
        let Some(record) = self.store.load().await? else {
            return Ok(Current::default());
        };
        Ok(decode(&self.cipher, record)?)
    }
}

impl SettingsRepo {
    /// The saved settings without their secrets (nothing decrypted): what
    /// submission needs for the From rule and the default sender.
    pub async fn load_settings(&self) -> Result<Option<Settings>, LoadError> {
        let Some(record) = self.store.load().await? else {
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
    })
}

async fn get_settings(
    State(repo): State<SettingsRepo>,
) -> Result<Json<SettingsResponse>, AppError> {
    let current = repo.load_current().await?;
    let stored = current.stored();
    Ok(Json(SettingsResponse {
        settings: current
            .settings
            .map(|settings| PublicSettings::new(settings, stored)),
        version: current.version,
        updated_at: current.updated_at,
    }))
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
    State(repo): State<SettingsRepo>,
    ApiJson(body): ApiJson<PutSettings>,
) -> Result<Json<Saved>, AppError> {
    let current = repo.load_current().await?;
    let report = body
        .settings
        .validate_with(current.stored_for(&body.settings));
    if !report.is_valid() {
        return Err(AppError::invalid_settings(report.errors));
    }
    let mut new = body.settings.normalized();
    // Only the secret of the method in use is kept: switching methods deletes
    // the other one, and a stored one is kept only for its own destination.
    let client_secret = match new.auth_method {
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
        &current,
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
        version: body.version,
        updated_at: repo.clock.rfc3339(),
    };
    let version = repo
        .store
        .save(body.version, record, changed.clone())
        .await?;
    tracing::info!(version, changed = %changed.join(","), "settings saved");
    repo.saved.notify_one();
    Ok(Json(Saved {
        message: SAVED_MESSAGE.into(),
        version,
    }))
}

/// `GET` and `PUT /api/settings` (administrators only).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    SettingsRepo: FromRef<S>,
{
    Router::new().route("/api/settings", get(get_settings).put(put_settings))
}
