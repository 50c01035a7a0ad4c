//! Apps (docs/API.md §6): the programs, devices and scripts allowed to send.
//! Each has a key, `mr_` and 43 random characters, shown once and stored only
//! as its SHA-256; a revoked key stops working at once.

use mailroom_shared::FieldMessages;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use mailroom_shared::sending::{
    validate_app_change, validate_new_app, App, AppChange, AppList, CreatedApp, NewApp, NewKey,
    NewKeyRequest, MAX_KEEP_OLD_KEY_HOURS,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::auth::{FailureLimit, Refused};
use crate::clock::Clock;
use crate::error::{ApiJson, AppError};
use crate::queue::Queue;
use crate::store::queue::ReplacedKey;

/// What the app routes need.
#[derive(Clone)]
pub struct AppsState {
    /// The profiles an app may send through.
    pub profiles: Arc<dyn crate::store::SettingsStore>,
    /// Where apps live.
    pub queue: Arc<dyn Queue>,
    /// Wrong keys per address (docs/API.md §2), apart from admin sign-ins.
    pub key_failures: Arc<FailureLimit>,
    /// The old keys' uses kept lately.
    pub old_key_uses: Arc<OldKeyUses>,
    /// Where a device refused for an old key is told of.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Where sign-ins with an old key are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// How a message from a trusted network names who sent it, in place of an
/// app: `trusted network 10.0.0.5`.
pub const TRUSTED_SOURCE: &str = "trusted network";

/// How many characters a key has: `mr_` and 43.
pub const KEY_CHARS: usize = 46;

/// A new key: `mr_` and 32 random bytes in URL-safe base64 (43 characters).
pub fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "mr_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a key. Keys are looked up by this digest, so the
/// comparison is of fixed-length hashes, not of the secret.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// This process's id for message leases: `srv_` and random characters.
pub fn new_server_id() -> String {
    new_id("srv")
}

/// `{prefix}_` and 12 random bytes in hex: the ids of messages, servers, webhooks.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// A message id, `msg_` and 24 hex digits.
pub fn new_message_id() -> String {
    new_id("msg")
}

/// A Message-ID header for a message from `sender` without one of its own:
/// unique, on the sender's domain, never on this machine's name (lettre's
/// own, `<…@vm>`, says nothing to the recipient, tells them the server's
/// name, and spam filters count a Message-ID without a domain against the
/// message).
pub fn header_message_id(sender: &str) -> String {
    // An international domain in its ASCII form (RFC 5322 3.6.4 has no
    // other): `münchen.de` is `xn--mnchen-3ya.de`.
    let domain = sender
        .rsplit_once('@')
        .and_then(|(_, domain)| idna::domain_to_ascii(domain).ok())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "mailroom.local".into());
    format!("<{}@{domain}>", new_message_id())
}

/// The app whose key the request carries (`Authorization: Bearer mr_…`).
/// Wrong keys count against the address's limit: 401, then 429.
pub async fn authenticate(
    state: &AppsState,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<App, AppError> {
    let (key, user) = match crate::auth::bearer(headers)? {
        Some(key) => (key, None),
        None => match crate::auth::basic(headers) {
            Some((user, key)) => (key, Some(user)),
            None => (String::new(), None),
        },
    };
    let hash = key_hash(&key);
    let mut app = if key.starts_with("mr_") {
        state.queue.app_by_key(hash).await?
    } else {
        None
    };
    // A key from before the app's last *New key*: its app's while the time
    // given for moving devices lasts, else only named in the log. Looked up
    // only below the failure limit: a flood of guesses past it costs the
    // database nothing more.
    let mut replaced = None;
    if app.is_none() && key.starts_with("mr_") && state.key_failures.locked(ip).await.is_none() {
        replaced = state.queue.app_of_replaced_key(hash).await.ok().flatten();
        if let Some(r) = &replaced {
            app = state.app_during_old_key(r).await?;
        }
    }
    // With Basic, the user name is the key's app, as in the relay's AUTH,
    // or none (tools that have only a token field send an empty one).
    let app = app.filter(|a| user.as_ref().is_none_or(|u| u.is_empty() || *u == a.id));
    let wrong = || {
        AppError::Unauthorized(
        "The app key is not valid: send `Authorization: Bearer mr_…` with the key shown when the app was created (or given its last new key), or Basic with the app's id as the user name and its key as the password (a revoked app's key, or one replaced by a new key, no longer works).".into(),
    )
    };
    match (state.key_failures.check(ip, app.is_some()).await, app) {
        (Ok(()), Some(app)) => {
            if let Some(r) = replaced.filter(|r| r.app == app.id) {
                state.old_key_signed_in(&r, &format!("{ip} (HTTP)")).await;
            }
            Ok(app)
        }
        // Looked up only below the failure limit: a flood of guesses past
        // it costs the database nothing more.
        (Ok(()), None) | (Err(Refused::Wrong), _) => {
            if let Some(r) = replaced {
                tracing::warn!(app = %r.app, peer = %ip, "app key refused: it is the key app {} (\"{}\") had until its new key of {}; give whatever still sends with it the new key", r.app, crate::error::short(&r.name), r.replaced_at);
                state
                    .old_key_use(&r.app, &format!("{ip} (HTTP)"), true)
                    .await;
            }
            Err(wrong())
        }
        // Past the limit a wrong key is still a 401 (so `mailroom sendmail`
        // exits 77, not "try again"), only slower (docs/API.md §2).
        (Err(Refused::LockedOut(_)), _) => {
            tokio::time::sleep(WRONG_KEY_DELAY).await;
            Err(wrong())
        }
    }
}

/// The log line for a key from before its app's last *New key* that still
/// works (over HTTP and at the relay's AUTH): which app, until when, and
/// what to do, so the admin finds each device still to move.
fn old_key_used(r: &ReplacedKey) -> String {
    let until = r
        .until
        .and_then(crate::clock::rfc3339_at)
        .unwrap_or_default();
    format!(
        "signed in with the key app {} (\"{}\") had until its new key of {}, which works until {until}: give whatever still sends with it the new key before then",
        r.app,
        crate::error::short(&r.name),
        r.replaced_at
    )
}

/// The warning on every view while a device was refused in the last day for
/// signing in with `app`'s key from before its last *New key* (its time
/// over, or ended): its mail never reaches Mailroom, so nothing else shows
/// it. `now` is Unix seconds.
pub fn old_key_refused_warning(app: &App, now: i64) -> Option<mailroom_shared::sending::Warning> {
    let today =
        |at: &str| crate::clock::unix_of(at).is_some_and(|t| t > now - crate::store::queue::DAY);
    let used = app
        .old_key_used
        .as_ref()
        .filter(|u| u.refused && today(&u.at))?;
    // Each device refused today (the last first), when the clients are read.
    let mut from: Vec<&str> = app
        .old_key_clients
        .iter()
        .filter(|u| u.refused && today(&u.at))
        .map(|u| u.from.as_str())
        .collect();
    if from.is_empty() {
        from.push(&used.from);
    }
    let name = crate::error::short(&app.name);
    let (message, give) = match from.as_slice() {
        [one] => (
            format!("App “{name}” was given a new key, but a device still signs in with its old key (last from {one}) and is refused: its mail never reaches Mailroom."),
            "Give that device the app's new key.",
        ),
        many => (
            format!("App “{name}” was given a new key, but {} devices still sign in with its old key (from {}) and are refused: their mail never reaches Mailroom.", many.len(), many.join(", ")),
            "Give each of those devices the app's new key.",
        ),
    };
    Some(mailroom_shared::sending::Warning {
        code: mailroom_shared::sending::OLD_KEY_REFUSED.into(),
        message,
        hint: [give, " If no one kept it, give the app another New key under Apps with “Keep the old key working for 24 hours” ticked, so the devices already moved go on sending meanwhile."].concat(),
        at: used.at.clone(),
        profile: None,
    })
}

/// How often the same use of an app's old key (the same client, refused
/// or not) is written again: a device sending many messages a minute with
/// it costs one write a minute, and the time shown is at most this old.
const OLD_KEY_USE_EVERY: i64 = 60;

/// How many (app, client) pairs [`OldKeyUses`] remembers; past that it
/// starts again (a few more writes, never a lost use).
const OLD_KEY_USES_KEPT: usize = 4096;

/// The last use of each app's old key written, per app and client: when
/// (Unix seconds), and whether it was refused.
#[derive(Debug, Default)]
pub struct OldKeyUses(std::sync::Mutex<std::collections::HashMap<(String, String), (i64, bool)>>);

impl OldKeyUses {
    /// Whether this use is worth writing: the first of the app's from this
    /// client, the other outcome, or a minute after the last written. So
    /// devices taking turns cost one write a minute each, not one a use.
    /// Taken as written when it is.
    fn take(&self, app: &str, at: i64, from: &str, refused: bool) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (app.to_string(), from.to_string());
        let same = last.get(&key).is_some_and(|(when, was)| {
            *was == refused && (0..OLD_KEY_USE_EVERY).contains(&(at - when))
        });
        if !same {
            if last.len() >= OLD_KEY_USES_KEPT {
                last.clear();
            }
            last.insert(key, (at, refused));
        }
        !same
    }
}

impl AppsState {
    /// A sign-in won with the key from before app `r.app`'s last *New
    /// key*: logged with the client (`peer`), counted, and kept for the
    /// Apps list.
    pub async fn old_key_signed_in(&self, r: &ReplacedKey, peer: &str) {
        tracing::warn!(app = %r.app, peer = %peer, "{}", old_key_used(r));
        let label = crate::metrics::Metrics::app(Some(&r.app));
        self.metrics.old_key_sign_ins.get_or_create(&label).inc();
        self.old_key_use(&r.app, peer, false).await;
    }

    /// Keeps the last use of app `app`'s old key by `peer` for the Apps
    /// list (at most one write a minute for the same use), and counts a
    /// refused one. A store error is logged: the sign-in's answer does not
    /// depend on it.
    pub async fn old_key_use(&self, app: &str, peer: &str, refused: bool) {
        if refused {
            let label = crate::metrics::Metrics::app(Some(app));
            self.metrics.old_key_refusals.get_or_create(&label).inc();
        }
        let at = self.clock.wall().unix_timestamp();
        if !self.old_key_uses.take(app, at, peer, refused) {
            return;
        }
        if let Err(e) = self.queue.note_old_key_use(app, at, peer, refused).await {
            tracing::warn!(app, error = %e, "cannot keep the old key's last use");
            return;
        }
        // A refused device's mail never reaches Mailroom: the webhooks
        // hear of it, once a day per app, with the warning the page shows.
        // After a restart, or on another server sharing the database, the
        // app's last stored event counts for the first check.
        const EVENT: &str = "app.old_key_refused";
        if !refused || !self.webhooks.wants(EVENT).await {
            return;
        }
        let last = self
            .webhooks
            .store()
            .last_event_unix(EVENT, crate::store::EventAbout::App(app))
            .await
            .ok()
            .flatten();
        if self
            .webhooks
            .once_a_day(&format!("{EVENT}|{app}"), at, last)
        {
            // The list reads each client, so every device refused is named.
            let apps = self.queue.list_apps().await.unwrap_or_default();
            if let Some(row) = apps.into_iter().find(|a| a.id == app) {
                if let Some(w) = old_key_refused_warning(&row, at) {
                    let mut data = serde_json::to_value(&w).unwrap_or_default();
                    data["app"] = serde_json::json!(app);
                    self.webhooks.emit(EVENT, data).await;
                }
            }
        }
    }

    /// The live app whose key from before its last *New key* hashes to
    /// `hash`, while that key still works.
    pub async fn app_of_old_key(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<(App, ReplacedKey)>, crate::store::StoreError> {
        let Some(r) = self.queue.app_of_replaced_key(hash).await? else {
            return Ok(None);
        };
        Ok(self.app_during_old_key(&r).await?.map(|app| (app, r)))
    }

    /// What the API shows of `app` at `now`: its usage, until when its old
    /// key works (while it does), and that key's last use (while it works,
    /// or refused in the last week).
    async fn shown(&self, mut app: App, now: i64) -> Result<App, crate::store::StoreError> {
        app.usage = self.queue.recent(&app.id, now, true).await?.usage(now);
        let unix = |at: &str| crate::clock::unix_of(at).unwrap_or(0);
        app.old_key_until = app.old_key_until.filter(|until| unix(until) > now);
        // A use while the old key works, until it stops; a refused one
        // for a week (the device still to be given the new key).
        let works = app.old_key_until.is_some();
        let shown = |u: &mailroom_shared::sending::OldKeyUse| {
            if u.refused {
                unix(&u.at) > now - 7 * crate::store::queue::DAY
            } else {
                works
            }
        };
        app.old_key_used = app.old_key_used.filter(shown);
        app.old_key_clients.retain(shown);
        Ok(app)
    }

    /// The live app a replaced key `r` still signs in, while it works.
    async fn app_during_old_key(
        &self,
        r: &ReplacedKey,
    ) -> Result<Option<App>, crate::store::StoreError> {
        if !r.works_at(self.clock.wall().unix_timestamp()) {
            return Ok(None);
        }
        Ok(self.queue.app_by_id(&r.app).await?.map(|(app, _)| app))
    }
}

/// How long a wrong app key waits for its answer once its address is past
/// the failure limit.
pub const WRONG_KEY_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

async fn create(
    State(state): State<AppsState>,
    ApiJson(body): ApiJson<NewApp>,
) -> Result<(StatusCode, Json<CreatedApp>), AppError> {
    let mut errors: FieldMessages = validate_new_app(&body);
    let name = body.name.trim().to_string();
    let profile = match body.profile.trim() {
        "" => crate::store::DEFAULT_PROFILE.to_string(),
        p => p.to_string(),
    };
    check_profile(&state, &profile, &mut errors).await?;
    if errors.is_empty() && state.queue.app_name_taken(&name).await? {
        errors.push(
            "name",
            format!("An app named “{name}” exists already. Choose another name, or revoke the old app first."),
        );
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid("The app is not valid.".into(), errors));
    }
    let key = new_key();
    let app = App {
        id: new_id("app"),
        name,
        created_at: state.clock.rfc3339(),
        last_used_at: None,
        messages: 0,
        allowed_from: body
            .allowed_from
            .iter()
            .map(|a| a.trim().to_string())
            .collect(),
        rewrite_from: body.rewrite_from,
        limits: body.limits,
        usage: Default::default(),
        profile,
        old_key_until: None,
        old_key_used: None,
        old_key_clients: Vec::new(),
    };
    state.queue.create_app(app.clone(), key_hash(&key)).await?;
    tracing::info!(app = %app.id, "app created");
    Ok((StatusCode::CREATED, Json(CreatedApp { app, key })))
}

/// The one of `all` that `given` names by its id in another case, or by
/// its name, as the page shows it: `id_name` gives each one's id and name.
pub(crate) fn meant_by<'a, T>(
    all: &'a [T],
    given: &str,
    id_name: impl Fn(&T) -> (&String, &String),
) -> Option<&'a T> {
    let given = given.trim();
    all.iter()
        .find(|t| id_name(t).0.eq_ignore_ascii_case(given))
        .or_else(|| {
            all.iter()
                .find(|t| id_name(t).1.trim().eq_ignore_ascii_case(given))
        })
}

/// An app's profile must exist (docs/API.md §15).
async fn check_profile(
    state: &AppsState,
    profile: &str,
    errors: &mut FieldMessages,
) -> Result<(), AppError> {
    let known = state.profiles.profiles().await?;
    if known.iter().any(|p| p.id == profile) {
        return Ok(());
    }
    let shown: String = profile.chars().take(80).collect();
    // The page shows profiles by name: one given by its name, or its id in
    // another case, is told the id to give.
    let meant = meant_by(&known, profile, |p| (&p.id, &p.name));
    errors.push(
        "profile",
        match meant {
            Some(p) => format!(
                "An app names its profile by id: for the profile “{}” give \"profile\": \"{}\".",
                p.name, p.id
            ),
            None => format!("There is no profile “{shown}”. Choose one of GET /api/profiles, or leave it out for the default profile."),
        },
    );
    Ok(())
}

async fn list(State(state): State<AppsState>) -> Result<Json<AppList>, AppError> {
    let now = state.clock.wall().unix_timestamp();
    let mut apps = Vec::new();
    for app in state.queue.list_apps().await? {
        apps.push(state.shown(app, now).await?);
    }
    Ok(Json(AppList { apps }))
}

/// `PATCH /api/apps/{id}`: name, From addresses, rewrite and limits; the key
/// stays. Checked like a new app, before anything is stored.
async fn change(
    State(state): State<AppsState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AppChange>,
) -> Result<Json<App>, AppError> {
    let mut errors = validate_app_change(&body);
    let Some((mut app, _)) = state.queue.app_by_id(&id).await? else {
        return Err(AppError::no_such("app", &id));
    };
    if let Some(name) = &body.name {
        let name = name.trim().to_string();
        if errors.is_empty()
            && !name.eq_ignore_ascii_case(&app.name)
            && state.queue.app_name_taken(&name).await?
        {
            errors.push(
                "name",
                format!("An app named “{name}” exists already. Choose another name."),
            );
        }
        app.name = name;
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid("The change is not valid.".into(), errors));
    }
    if let Some(list) = body.allowed_from {
        app.allowed_from = list.iter().map(|a| a.trim().to_string()).collect();
    }
    if let Some(rewrite) = body.rewrite_from {
        app.rewrite_from = rewrite;
    }
    if let Some(limits) = body.limits {
        app.limits = limits;
    }
    if let Some(profile) = body.profile {
        let mut errors = FieldMessages::new();
        check_profile(&state, profile.trim(), &mut errors).await?;
        if !errors.is_empty() {
            return Err(AppError::Invalid("The change is not valid.".into(), errors));
        }
        // Its waiting messages keep the profile they were submitted under.
        app.profile = profile.trim().to_string();
    }
    let app = state
        .queue
        .update_app(app)
        .await?
        .ok_or_else(|| AppError::no_such("app", &id))?;
    let now = state.clock.wall().unix_timestamp();
    let app = state.shown(app, now).await?;
    tracing::info!(app = %app.id, "app changed");
    Ok(Json(app))
}

async fn revoke(
    State(state): State<AppsState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    if state.queue.revoke_app(&id).await? {
        tracing::info!(app = %id, "app revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::no_such("app", &id))
    }
}

/// `DELETE /api/apps/{id}/old-key` (beyond the contract): the key from
/// before the app's last *New key*, left working for a while, stops now,
/// in open SMTP sessions too: once every device has the new one, or when
/// the old key turns out to have leaked after all. Without such a key it
/// is already so: `204` all the same.
async fn end_old_key(
    State(state): State<AppsState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    if state.queue.end_old_key(&id).await? {
        tracing::info!(app = %id, "app's old key ended");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::no_such("app", &id))
    }
}

/// `POST /api/apps/{id}/key` (beyond the contract): a new key for an app,
/// shown once. The old key stops working at once (a leaked key), in open
/// SMTP sessions too, or after `keep_old_key_hours` (moving devices one by
/// one); the app keeps its id, name, From addresses, limits, profile and
/// history.
async fn replace_key(
    State(state): State<AppsState>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<Json<NewKey>, AppError> {
    let body: NewKeyRequest = optional_json(request).await?;
    if body.keep_old_key_hours > MAX_KEEP_OLD_KEY_HOURS {
        let mut errors = FieldMessages::new();
        errors.push(
            "keep_old_key_hours",
            format!(
                "The old key can go on working for at most {MAX_KEEP_OLD_KEY_HOURS} hours (a week), not {}: give the hours the devices need to be moved, or 0 to stop it at once.",
                body.keep_old_key_hours
            ),
        );
        return Err(AppError::Invalid("The new key is not made.".into(), errors));
    }
    let key = new_key();
    let replaced_at = state.clock.rfc3339();
    let now = state.clock.wall().unix_timestamp();
    let old_until =
        (body.keep_old_key_hours > 0).then(|| now + i64::from(body.keep_old_key_hours) * 3600);
    let Some(app) = state
        .queue
        .replace_app_key(&id, key_hash(&key), &replaced_at, old_until)
        .await?
    else {
        return Err(AppError::no_such("app", &id));
    };
    let app = state.shown(app, now).await?;
    let old_key_until = app.old_key_until.clone();
    tracing::info!(app = %app.id, old_key_until = old_key_until.as_deref().unwrap_or("now"), "app key replaced");
    Ok(Json(NewKey {
        app,
        key,
        old_key_until,
    }))
}

/// A JSON body that may be left out: none at all (no bytes but white
/// space, whatever the `Content-Type`, as scripts that always set one send)
/// is `T`'s default; anything else is read as [`ApiJson`] reads it.
async fn optional_json<T>(request: axum::extract::Request) -> Result<T, AppError>
where
    T: Default + serde::de::DeserializeOwned + serde::Serialize,
{
    use axum::extract::FromRequest;
    const MOST: usize = 64 * 1024;
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MOST)
        .await
        .map_err(|_| AppError::body_too_large())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    Ok(ApiJson::<T>::from_request(request, &()).await?.0)
}

/// `POST`/`GET /api/apps`, `DELETE`/`PATCH /api/apps/{id}`, `POST
/// /api/apps/{id}/key` (administrators only).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppsState: FromRef<S>,
{
    Router::new()
        .route("/api/apps", get(list).post(create))
        .route("/api/apps/{id}", delete(revoke).patch(change))
        .route("/api/apps/{id}/key", post(replace_key))
        .route("/api/apps/{id}/old-key", delete(end_old_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same use of an old key is written once a minute; another
    /// client, the other outcome or another app is written at once.
    #[test]
    fn an_old_keys_same_use_is_written_once_a_minute() {
        let uses = OldKeyUses::default();
        let relay = "10.0.0.5 (relay)";
        assert!(uses.take("app_1", 1000, relay, false), "the first");
        assert!(!uses.take("app_1", 1030, relay, false), "the same, soon");
        assert!(!uses.take("app_1", 1059, relay, false));
        assert!(uses.take("app_1", 1060, relay, false), "a minute on");
        assert!(
            uses.take("app_1", 1061, "10.0.0.6 (relay)", false),
            "another client"
        );
        assert!(
            uses.take("app_1", 1062, "10.0.0.6 (relay)", true),
            "refused now"
        );
        assert!(
            uses.take("app_2", 1062, "10.0.0.6 (relay)", true),
            "another app"
        );
        // A clock set back writes at once rather than waiting.
        assert!(uses.take("app_2", 900, "10.0.0.6 (relay)", true));
        // Devices taking turns: each once a minute, not at every turn.
        assert!(uses.take("app_3", 2000, "10.0.0.7 (relay)", false));
        assert!(uses.take("app_3", 2001, "10.0.0.8 (relay)", false));
        assert!(!uses.take("app_3", 2002, "10.0.0.7 (relay)", false));
        assert!(!uses.take("app_3", 2003, "10.0.0.8 (relay)", false));
        assert!(uses.take("app_3", 2060, "10.0.0.7 (relay)", false));
    }

    #[test]
    fn keys_are_long_random_and_hashed() {
        let (a, b) = (new_key(), new_key());
        assert!(a.starts_with("mr_") && a.len() == 46, "{a}");
        assert_ne!(a, b);
        assert_eq!(key_hash(&a), key_hash(&a));
        assert_ne!(key_hash(&a), key_hash(&b));
        assert!(new_message_id().starts_with("msg_"));
    }

    /// A made Message-ID is one by RFC 5322 (what the intake itself takes
    /// as one), on the sender's domain: an international one in its ASCII
    /// form, and none a placeholder.
    #[test]
    fn a_made_message_id_is_valid_and_on_the_senders_domain() {
        let valid = |id: &str| crate::intake::json::message_id(id).is_some();
        let id = header_message_id(&format!("{}@{}", "ok", "contoso.com"));
        assert!(id.starts_with("<msg_") && id.ends_with("@contoso.com>") && valid(&id));
        let id = header_message_id(&format!("{}@{}", "jörg", "münchen.de"));
        assert!(id.ends_with("@xn--mnchen-3ya.de>") && valid(&id), "{id}");
        for sender in ["", "no-domain", "a@"] {
            let id = header_message_id(sender);
            assert!(
                id.ends_with("@mailroom.local>") && valid(&id),
                "{sender}: {id}"
            );
        }
    }
}
