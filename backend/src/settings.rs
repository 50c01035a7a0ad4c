//! `GET` and `PUT /api/settings`: stored settings without their secrets, and
//! validated, atomic, version-checked saves.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use mailroom_shared::api::{PublicSettings, PutSettings, Saved, SettingsResponse, SAVED_MESSAGE};
use mailroom_shared::{Settings, StoredSecrets};

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
    /// Which secrets are stored, for validation.
    pub fn stored(&self) -> StoredSecrets {
        StoredSecrets {
            client_secret: self.client_secret.is_some(),
            password: self.password.is_some(),
        }
    }

    /// Fills absent secrets of `settings` with the stored ones.
    pub fn fill_secrets(&self, settings: &mut Settings) {
        if settings.client_secret.is_none() {
            settings.client_secret = self.client_secret.as_ref().map(|s| s.expose().to_string());
        }
        if settings.password.is_none() {
            settings.password = self.password.as_ref().map(|s| s.expose().to_string());
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

/// The names of the fields that differ; secrets count as changed when a new
/// value differs from the stored one. Values are never recorded.
fn changed_fields(old: Option<&Settings>, new: &Settings, current: &Current) -> Vec<String> {
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
    if let Some(s) = &new.client_secret {
        if current.client_secret.as_ref().map(Secret::expose) != Some(s.as_str()) {
            changed.push("client_secret".into());
        }
    }
    if let Some(p) = &new.password {
        if current.password.as_ref().map(Secret::expose) != Some(p.as_str()) {
            changed.push("password".into());
        }
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
    let report = body.settings.validate_with(current.stored());
    if !report.is_valid() {
        return Err(AppError::Invalid(report.errors));
    }
    let mut new = body.settings.normalized();
    let changed = changed_fields(current.settings.as_ref(), &new, &current);
    let client_secret = new
        .client_secret
        .take()
        .map(Secret::new)
        .or(current.client_secret.clone())
        .map(|s| state.cipher.encrypt("client_secret", &s));
    let password = new
        .password
        .take()
        .map(Secret::new)
        .or(current.password.clone())
        .map(|s| state.cipher.encrypt("password", &s));
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
