//! Every typed answer the page reads, from the JSON as the browser parsed
//! it: settings, apps, message summaries and details, the queue's state, test
//! results and error bodies. Reading them by hand
//! keeps every serde `Deserialize` out of the bundle (about 13 KB gzipped
//! together with the decoder); `frontend/tests/page.rs` checks each reader
//! against what serde_json writes, so they cannot drift from the schema.

use mailroom_shared::profiles::{
    Profile, ProfileLimits, ProfileState, ProfileUsage, DEFAULT_PROFILE,
};
use mailroom_shared::FieldMessages;

use mailroom_shared::api::{
    CertInfo, Certificates, Direction, ErrorBody, PublicSettings, SettingsResponse, Stage,
    StageTiming, TestResult, TokenClaims, TranscriptLine,
};
use mailroom_shared::sending::{
    Attempt, Details, LastError, Paused, QueueState, RecipientState, Status, Summary, Warning,
};
use mailroom_shared::{EnumId, Transport};
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
            client_credential: enum_or(&p, "client_credential", d.client_credential)?,
            client_secret_expires: opt_string(&p, "client_secret_expires")?,
            username: opt_string(&p, "username")?,
            transport: enum_or(&p, "transport", d.transport)?,
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
        profile: string_or(v, "profile", DEFAULT_PROFILE.into())?,
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
        old_key_until: opt_string(v, "old_key_until")?,
        old_key_used: {
            let u = get(v, "old_key_used");
            if absent(&u) {
                None
            } else {
                Some(old_key_use(&u)?)
            }
        },
        old_key_clients: list(v, "old_key_clients", old_key_use)?,
    })
}

/// One use of an app's old key.
fn old_key_use(u: &JsValue) -> Option<mailroom_shared::sending::OldKeyUse> {
    Some(mailroom_shared::sending::OldKeyUse {
        at: get(u, "at").as_string()?,
        from: get(u, "from").as_string()?,
        refused: bool_or(u, "refused", false)?,
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

/// A required string field.
fn string(o: &JsValue, key: &str) -> Option<String> {
    get(o, key).as_string()
}

/// A required whole number field in `0..=max`.
fn whole(o: &JsValue, key: &str, max: f64) -> Option<u64> {
    let n = get(o, key).as_f64()?;
    (n.fract() == 0.0 && (0.0..=max).contains(&n)).then_some(n as u64)
}

/// The largest whole number a JSON number holds exactly.
const EXACT: f64 = 9.0e15;

/// An array field, each item read with `each`; absent is empty.
fn list<T>(o: &JsValue, key: &str, each: impl Fn(&JsValue) -> Option<T>) -> Option<Vec<T>> {
    let v = get(o, key);
    if absent(&v) {
        return Some(Vec::new());
    }
    if !js_sys::Array::is_array(&v) {
        return None;
    }
    js_sys::Array::from(&v).iter().map(|i| each(&i)).collect()
}

/// An object field read with `each`; `Some(None)` when absent or null.
fn opt_object<T>(
    o: &JsValue,
    key: &str,
    each: impl Fn(&JsValue) -> Option<T>,
) -> Option<Option<T>> {
    let v = get(o, key);
    if absent(&v) {
        return Some(None);
    }
    if !v.is_object() {
        return None;
    }
    each(&v).map(Some)
}

fn stage(o: &JsValue, key: &str) -> Option<Stage> {
    Stage::from_name(&get(o, key).as_string()?)
}

fn opt_stage(o: &JsValue, key: &str) -> Option<Option<Stage>> {
    match opt_string(o, key)? {
        None => Some(None),
        Some(name) => Stage::from_name(&name).map(Some),
    }
}

fn status(o: &JsValue, key: &str) -> Option<Status> {
    Status::from_name(&get(o, key).as_string()?)
}

/// A SUMMARY (docs/API.md §9), as lists show a message.
pub fn summary(v: &JsValue) -> Option<Summary> {
    if !v.is_object() {
        return None;
    }
    Some(Summary {
        id: string(v, "id")?,
        app: opt_string(v, "app")?,
        from: string(v, "from")?,
        to: list(v, "to", JsValue::as_string)?,
        subject: string_or(v, "subject", String::new())?,
        size: whole(v, "size", EXACT)?,
        status: status(v, "status")?,
        created_at: string(v, "created_at")?,
        updated_at: string(v, "updated_at")?,
        attempt_count: whole(v, "attempt_count", u32::MAX as f64)? as u32,
        profile: string_or(v, "profile", DEFAULT_PROFILE.into())?,
        last_error: opt_object(v, "last_error", |e| {
            Some(LastError {
                stage: stage(e, "stage")?,
                code: opt_string(e, "code")?,
                message: string(e, "message")?,
            })
        })?,
    })
}

/// `GET /api/messages/{id}`: the summary with recipients and attempts.
pub fn details(v: &JsValue) -> Option<Details> {
    Some(Details {
        summary: summary(v)?,
        recipients: list(v, "recipients", |r| {
            Some(RecipientState {
                address: string(r, "address")?,
                status: status(r, "status")?,
                code: opt_string(r, "code")?,
                message: opt_string(r, "message")?,
            })
        })?,
        attempts: list(v, "attempts", |a| {
            Some(Attempt {
                at: string(a, "at")?,
                ok: get(a, "ok").as_bool()?,
                stage: opt_stage(a, "stage")?,
                code: opt_string(a, "code")?,
                message: string(a, "message")?,
                hint: opt_string(a, "hint")?,
                transport: match opt_string(a, "transport")? {
                    None => None,
                    Some(t) => Some(Transport::from_id(&t)?),
                },
            })
        })?,
        next_attempt_at: opt_string(v, "next_attempt_at")?,
        message_id: opt_string(v, "message_id")?,
    })
}

/// A pause (docs/API.md §9).
fn paused(p: &JsValue) -> Option<Paused> {
    Some(Paused {
        since: string(p, "since")?,
        stage: stage(p, "stage")?,
        code: opt_string(p, "code")?,
        message: string(p, "message")?,
        hint: opt_string(p, "hint")?,
    })
}

/// `GET /api/queue`: the counts by status (a missing one is 0) and the pause.
pub fn queue_state(v: &JsValue) -> Option<QueueState> {
    let c = get(v, "counts");
    if !c.is_object() {
        return None;
    }
    let mut counts = std::collections::BTreeMap::new();
    for s in Status::ALL {
        counts.insert(s, whole_or(&c, s.as_str(), 0, EXACT)?);
    }
    Some(QueueState {
        counts,
        paused: opt_object(v, "paused", paused)?,
        warnings: if absent(&get(v, "warnings")) {
            Vec::new()
        } else {
            list(v, "warnings", |w| {
                Some(Warning {
                    code: string(w, "code")?,
                    message: string(w, "message")?,
                    hint: string(w, "hint")?,
                    at: string(w, "at")?,
                    profile: opt_string(w, "profile")?,
                })
            })?
        },
        profiles: if absent(&get(v, "profiles")) {
            Vec::new()
        } else {
            list(v, "profiles", profile_state)?
        },
    })
}

/// A profile's limits (docs/API.md §15): each a whole number or null.
fn profile_limits(l: &JsValue) -> Option<ProfileLimits> {
    if absent(l) {
        return Some(ProfileLimits::default());
    }
    let one = |k: &str| opt_whole(l, k, u32::MAX as f64).map(|n| n.map(|n| n as u32));
    Some(ProfileLimits {
        recipients_per_day: one("recipients_per_day")?,
        messages_per_minute: one("messages_per_minute")?,
        connections: one("connections")?,
    })
}

/// `GET /api/profiles/{id}`'s limits, as set (`null`: the default).
pub fn limits_of_profile(v: &JsValue) -> Option<ProfileLimits> {
    profile_limits(&get(v, "limits"))
}

/// What a profile used.
fn profile_usage(u: &JsValue) -> Option<ProfileUsage> {
    if absent(u) {
        return Some(ProfileUsage::default());
    }
    Some(ProfileUsage {
        recipients_today: whole_or(u, "recipients_today", 0, EXACT)?,
        messages_last_minute: whole_or(u, "messages_last_minute", 0, EXACT)?,
    })
}

/// A profile in `GET /api/queue`.
fn profile_state(p: &JsValue) -> Option<ProfileState> {
    Some(ProfileState {
        id: string(p, "id")?,
        name: string(p, "name")?,
        paused: opt_object(p, "paused", paused)?,
        usage: profile_usage(&get(p, "usage"))?,
        limits: profile_limits(&get(p, "limits"))?,
    })
}

/// `GET /api/profiles`: each profile's id, name, version, limits and usage
/// (its settings are read with [`settings_response`] when it is chosen).
pub fn profile_list(v: &JsValue) -> Option<Vec<Profile>> {
    list(v, "profiles", |p| {
        Some(Profile {
            id: string(p, "id")?,
            name: string(p, "name")?,
            settings: None,
            version: whole_or(p, "version", 0, EXACT)?,
            limits: profile_limits(&get(p, "limits"))?,
            usage: profile_usage(&get(p, "usage"))?,
            paused: opt_object(p, "paused", paused)?,
        })
    })
}

/// CERT (docs/API.md §13).
fn cert(c: &JsValue) -> Option<CertInfo> {
    Some(CertInfo {
        subject: string(c, "subject")?,
        thumbprint_sha1: string(c, "thumbprint_sha1")?,
        thumbprint_sha256: string(c, "thumbprint_sha256")?,
        not_before: string(c, "not_before")?,
        not_after: string(c, "not_after")?,
        generated: get(c, "generated").as_bool()?,
    })
}

/// `GET /api/settings/certificate`: the active and the pending certificate.
pub fn certificates(v: &JsValue) -> Option<Certificates> {
    if !v.is_object() {
        return None;
    }
    Some(Certificates {
        active: opt_object(v, "active", cert)?,
        pending: opt_object(v, "pending", cert)?,
    })
}

/// One CERT (the answer of `POST /api/settings/certificate`).
pub fn one_certificate(v: &JsValue) -> Option<CertInfo> {
    cert(v)
}

/// A test email's outcome (docs/API.md §5).
pub fn test_result(v: &JsValue) -> Option<TestResult> {
    if !v.is_object() {
        return None;
    }
    Some(TestResult {
        ok: get(v, "ok").as_bool()?,
        stage: opt_stage(v, "stage")?,
        code: opt_string(v, "code")?,
        message: string(v, "message")?,
        hint: opt_string(v, "hint")?,
        stages: list(v, "stages", |s| {
            Some(StageTiming {
                name: stage(s, "name")?,
                ok: get(s, "ok").as_bool()?,
                ms: whole(s, "ms", EXACT)?,
            })
        })?,
        transcript: list(v, "transcript", |l| {
            Some(TranscriptLine {
                dir: match string(l, "dir")?.as_str() {
                    "client" => Direction::Client,
                    "server" => Direction::Server,
                    _ => return None,
                },
                line: string(l, "line")?,
            })
        })?,
        token_claims: opt_object(v, "token_claims", |c| {
            Some(TokenClaims {
                aud: opt_string(c, "aud")?,
                tid: opt_string(c, "tid")?,
                appid: opt_string(c, "appid")?,
                roles: list(c, "roles", JsValue::as_string)?,
                exp: opt_whole(c, "exp", EXACT)?.map(|n| n as i64),
            })
        })?,
    })
}

/// WEBHOOK (docs/API.md §14).
fn webhook(v: &JsValue) -> Option<mailroom_shared::webhooks::Webhook> {
    Some(mailroom_shared::webhooks::Webhook {
        id: string(v, "id")?,
        url: string(v, "url")?,
        events: list(v, "events", |e| e.as_string())?,
        format: mailroom_shared::webhooks::Format::from_id(&string(v, "format")?)?,
        created_at: string(v, "created_at")?,
        last_success_at: opt_string(v, "last_success_at")?,
        last_failure_at: opt_string(v, "last_failure_at")?,
        old_secret_until: opt_string(v, "old_secret_until")?,
    })
}

/// `GET /api/webhooks`.
pub fn webhook_list(v: &JsValue) -> Option<Vec<mailroom_shared::webhooks::Webhook>> {
    if !v.is_object() {
        return None;
    }
    list(v, "webhooks", webhook)
}

/// `201` of `POST /api/webhooks`: the new webhook's id and its secret.
pub fn webhook_created(v: &JsValue) -> Option<(String, String)> {
    Some((webhook(&get(v, "webhook"))?.id, string(v, "secret")?))
}

/// `POST /api/webhooks/{id}/secret`: the webhook's id, the new secret, and
/// until when the old one signs too.
pub fn webhook_secret_replaced(v: &JsValue) -> Option<(String, String, String)> {
    let (id, secret) = webhook_created(v)?;
    Some((id, secret, string(v, "previous_until")?))
}

/// `POST /api/webhooks/{id}/test`: whether it worked, and what happened.
pub fn webhook_test(v: &JsValue) -> Option<(bool, String)> {
    Some((get(v, "ok").as_bool()?, string(v, "message")?))
}

/// `POST /api/messages/retry`.
pub fn retried(v: &JsValue) -> Option<mailroom_shared::sending::Retried> {
    let whole = |key: &str| {
        let n = get(v, key).as_f64()?;
        (n.fract() == 0.0 && (0.0..=9e15).contains(&n)).then_some(n as u64)
    };
    Some(mailroom_shared::sending::Retried {
        retried: whole("retried")?,
        skipped: whole("skipped")?,
        more: get(v, "more").as_bool()?,
    })
}

/// `GET /api/webhooks/{id}/deliveries`.
pub fn delivery_list(v: &JsValue) -> Option<Vec<mailroom_shared::webhooks::Delivery>> {
    if !v.is_object() {
        return None;
    }
    list(v, "deliveries", |d| {
        Some(mailroom_shared::webhooks::Delivery {
            id: string(d, "id")?,
            event: string(d, "event")?,
            at: string(d, "at")?,
            attempts: whole_or(d, "attempts", 0, u32::MAX as f64)? as u32,
            status: string(d, "status")?,
            last_status: opt_whole(d, "last_status", 999.0)?.map(|n| n as u16),
            last_error: opt_string(d, "last_error")?,
        })
    })
}
