//! `GET` and `PUT /api/settings`: stored settings without their secrets, and
//! validated, atomic, version-checked saves.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use mailroom_shared::api::{PublicSettings, PutSettings, Saved, SettingsResponse, SAVED_MESSAGE};
use mailroom_shared::{AuthMethod, Settings, StoredSecrets};

use crate::crypto::{Cipher, Secret};
use crate::error::{ApiJson, AppError};
use crate::server::AppState;
use crate::store::{Record, StoreError};

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { stored } => AppError::Conflict(format!(
                "Someone else saved the settings while you were editing (version {stored} is stored now). Reload them to see their changes; what you typed stays in the form."
            )),
            StoreError::Db(detail) => AppError::Internal(detail),
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
    /// than where they were saved for (CONTRACT §3).
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

/// Loads and decrypts the current record.
pub async fn load_current(state: &AppState) -> Result<Current, AppError> {
    let Some(record) = state.store.load().await? else {
        return Ok(Current::default());
    };
    decode(&state.cipher, record)
}

/// Turns a stored record into settings and secrets.
pub fn decode(cipher: &Cipher, record: Record) -> Result<Current, AppError> {
    let settings: Settings = serde_json::from_str(&record.settings_json)
        .map_err(|e| AppError::Internal(format!("stored settings do not parse: {e}")))?;
    let decrypt = |field: &str, blob: &Option<Vec<u8>>| {
        blob.as_ref()
            .map(|b| cipher.decrypt(field, b))
            .transpose()
            .map_err(|e| AppError::Internal(e.to_string()))
    };
    Ok(Current {
        client_secret: decrypt("client_secret", &record.client_secret)?,
        password: decrypt("password", &record.password)?,
        settings: Some(settings),
        version: record.version,
        updated_at: Some(record.updated_at),
    })
}

async fn get_settings(State(state): State<AppState>) -> Result<Json<SettingsResponse>, AppError> {
    let current = load_current(&state).await?;
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
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PutSettings>,
) -> Result<Json<Saved>, AppError> {
    let current = load_current(&state).await?;
    let report = body
        .settings
        .validate_with(current.stored_for(&body.settings));
    if !report.is_valid() {
        return Err(AppError::Invalid(report.errors));
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
    let client_secret = client_secret.map(|s| state.cipher.encrypt("client_secret", &s));
    let password = password.map(|s| state.cipher.encrypt("password", &s));
    let settings_json =
        serde_json::to_string(&new).map_err(|e| AppError::Internal(e.to_string()))?;
    let record = Record {
        settings_json,
        client_secret,
        password,
        version: body.version,
        updated_at: crate::server::now_rfc3339(),
    };
    let version = state
        .store
        .save(body.version, record, changed.clone())
        .await?;
    tracing::info!(version, changed = %changed.join(","), "settings saved");
    Ok(Json(Saved {
        message: SAVED_MESSAGE.into(),
        version,
    }))
}

/// `GET` and `PUT /api/settings` (administrators only).
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/settings", get(get_settings).put(put_settings))
}
