//! The few typed answers the page needs, read from the JSON as the browser
//! parsed it: `GET /api/settings`, apps and error bodies. Reading them by hand
//! keeps every serde `Deserialize` out of the bundle (about 13 KB gzipped
//! together with the decoder); `frontend/tests/page.rs` checks each reader
//! against what serde_json writes, so they cannot drift from the schema.

use mailroom_shared::FieldMessages;

use mailroom_shared::api::{ErrorBody, PublicSettings, SettingsResponse};
use mailroom_shared::EnumId;
use wasm_bindgen::JsValue;

use crate::markup::get;

fn absent(v: &JsValue) -> bool {
    v.is_null() || v.is_undefined()
}

/// A string field: `default` when absent, `None` when of another type.
fn string_or(o: &JsValue, key: &str, default: String) -> Option<String> {
    let v = get(o, key);
    if absent(&v) {
        return Some(default);
    }
    v.as_string()
}

/// An optional string field: `Some(None)` when absent or null.
fn opt_string(o: &JsValue, key: &str) -> Option<Option<String>> {
    let v = get(o, key);
    if absent(&v) {
        return Some(None);
    }
    v.as_string().map(Some)
}

/// A whole number field in `0..=max`: `default` when absent.
fn whole_or(o: &JsValue, key: &str, default: u64, max: f64) -> Option<u64> {
    let v = get(o, key);
    if absent(&v) {
        return Some(default);
    }
    let n = v.as_f64()?;
    (n.fract() == 0.0 && (0.0..=max).contains(&n)).then_some(n as u64)
}

fn bool_or(o: &JsValue, key: &str, default: bool) -> Option<bool> {
    let v = get(o, key);
    if absent(&v) {
        return Some(default);
    }
    v.as_bool()
}

/// An enum written as its JSON id.
fn enum_or<E: EnumId>(o: &JsValue, key: &str, default: E) -> Option<E> {
    let v = get(o, key);
    if absent(&v) {
        return Some(default);
    }
    E::from_id(&v.as_string()?)
}

/// `{"settings": SETTINGS or null, "version", "updated_at"}`; `None` when it
/// does not have that shape. Absent settings fields take their defaults, as
/// the server's `#[serde(default)]` does.
pub fn settings_response(v: &JsValue) -> Option<SettingsResponse> {
    if !v.is_object() {
        return None;
    }
    let p = get(v, "settings");
    let settings = if absent(&p) {
        None
    } else if p.is_object() {
        let d = PublicSettings::default();
        Some(PublicSettings {
            provider: enum_or(&p, "provider", d.provider)?,
            auth_method: enum_or(&p, "auth_method", d.auth_method)?,
            cloud: enum_or(&p, "cloud", d.cloud)?,
            tenant_id: opt_string(&p, "tenant_id")?,
            client_id: opt_string(&p, "client_id")?,
            username: opt_string(&p, "username")?,
            host: string_or(&p, "host", d.host)?,
            port: whole_or(&p, "port", 0, 65535.0)? as u16,
            security: enum_or(&p, "security", d.security)?,
            client_hostname: opt_string(&p, "client_hostname")?,
            sender_name: string_or(&p, "sender_name", d.sender_name)?,
            sender_email: string_or(&p, "sender_email", d.sender_email)?,
            send_as_confirmed: bool_or(&p, "send_as_confirmed", false)?,
            client_secret_set: bool_or(&p, "client_secret_set", false)?,
            password_set: bool_or(&p, "password_set", false)?,
        })
    } else {
        return None;
    };
    if absent(&get(v, "version")) {
        return None;
    }
    Some(SettingsResponse {
        settings,
        version: whole_or(v, "version", 0, 9.0e15)?,
        updated_at: opt_string(v, "updated_at")?,
    })
}

/// An optional whole number: `Some(None)` when absent or null.
fn opt_whole(o: &JsValue, key: &str, max: f64) -> Option<Option<u64>> {
    let v = get(o, key);
    if absent(&v) {
        return Some(None);
    }
    let n = v.as_f64()?;
    (n.fract() == 0.0 && (0.0..=max).contains(&n)).then_some(Some(n as u64))
}

/// An APP (docs/API.md §6) with its limits and usage; `None` when a field
/// has the wrong type.
pub fn app(v: &JsValue) -> Option<mailroom_shared::sending::App> {
    use mailroom_shared::sending::{AppLimits, AppUsage};
    let l = get(v, "limits");
    let limit = |k: &str| -> Option<Option<u32>> {
        if absent(&l) {
            return Some(
                AppLimits::default()
                    .named()
                    .iter()
                    .find(|(n, _)| *n == k)?
                    .1,
            );
        }
        opt_whole(&l, k, u32::MAX as f64).map(|n| n.map(|n| n as u32))
    };
    let u = get(v, "usage");
    let used = |k: &str| whole_or(&u, k, 0, 9.0e15);
    let allowed = get(v, "allowed_from");
    let allowed_from = if absent(&allowed) {
        Vec::new()
    } else {
        if !js_sys::Array::is_array(&allowed) {
            return None;
        }
        js_sys::Array::from(&allowed)
            .iter()
            .map(|a| a.as_string())
            .collect::<Option<Vec<_>>>()?
    };
    Some(mailroom_shared::sending::App {
        id: get(v, "id").as_string()?,
        name: get(v, "name").as_string()?,
        created_at: get(v, "created_at").as_string()?,
        last_used_at: opt_string(v, "last_used_at")?,
        messages: whole_or(v, "messages", 0, 9.0e15)?,
        allowed_from,
        rewrite_from: bool_or(v, "rewrite_from", false)?,
        limits: AppLimits {
            messages_per_hour: limit("messages_per_hour")?,
            messages_per_day: limit("messages_per_day")?,
            recipients_per_day: limit("recipients_per_day")?,
            queued_max: limit("queued_max")?,
        },
        usage: if absent(&u) {
            AppUsage::default()
        } else {
            AppUsage {
                messages_last_hour: used("messages_last_hour")?,
                messages_today: used("messages_today")?,
                recipients_today: used("recipients_today")?,
                queued: used("queued")?,
            }
        },
    })
}

/// `{"message", "errors": {field: [text]}}`; `None` without a message.
pub fn error_body(v: &JsValue) -> Option<ErrorBody> {
    let message = get(v, "message").as_string()?;
    let mut errors = FieldMessages::new();
    let e = get(v, "errors");
    if e.is_object() {
        for key in js_sys::Object::keys(&js_sys::Object::from(e.clone())).iter() {
            let Some(name) = key.as_string() else {
                continue;
            };
            let texts: Vec<String> = crate::markup::items(&e, &name)
                .iter()
                .filter_map(JsValue::as_string)
                .collect();
            errors.insert(name, texts);
        }
    }
    Some(ErrorBody { message, errors })
}
