//! Sending profiles (docs/API.md §15): `/api/profiles` and the settings,
//! test, history and certificate routes of one profile. The routes of
//! `/api/settings` are the profile `default`'s: their handlers take a
//! [`ProfileRepo`], which reads the profile from the path.

use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mailroom_shared::api::{PublicSettings, PutSettings, Saved};
use mailroom_shared::profiles::{
    validate_change, validate_limits, validate_name, NewProfile, Profile, ProfileChange,
    ProfileList, ProfileState, DEFAULT_PROFILE,
};
use mailroom_shared::FieldMessages;

use crate::error::{ApiJson, AppError};
use crate::intake::Sending;
use crate::settings::{Current, SettingsRepo};
use crate::store::{ProfileDelete, ProfileRow};

/// The settings of the profile a route names: `/api/profiles/{id}/…`, else
/// `default` (`/api/settings…`). A profile that does not exist is a 404.
pub struct ProfileRepo(pub SettingsRepo);

/// The profile id in a path under `/api/profiles/`, if any.
fn profile_in_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/profiles/")?;
    Some(rest.split('/').next().unwrap_or_default())
}

impl<S> FromRequestParts<S> for ProfileRepo
where
    S: Send + Sync,
    SettingsRepo: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let repo = SettingsRepo::from_ref(state);
        if profile_in_path(parts.uri.path()).is_none() {
            return Ok(ProfileRepo(repo));
        }
        // The `{id}` of the route, percent-decoded as every route's is.
        let Path(params) =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|_| not_found("?"))?;
        let id = params.get("id").map(String::as_str).unwrap_or_default();
        find(&repo, id).await?;
        Ok(ProfileRepo(repo.for_profile(id)))
    }
}

/// The stored profile `id`, or a 404 naming it.
async fn find(repo: &SettingsRepo, id: &str) -> Result<ProfileRow, AppError> {
    repo.store
        .profiles()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!(
        "There is no profile “{}”. GET /api/profiles lists them.",
        crate::error::short(id)
    ))
}

/// `PROFILE` for a stored row.
async fn profile_json(s: &Sending, row: ProfileRow) -> Result<Profile, AppError> {
    let repo = s.settings.for_profile(&row.id);
    let current: Current = repo.load_current().await?;
    let stored = current.stored();
    let now = s.apps.clock.wall().unix_timestamp();
    Ok(Profile {
        usage: s.apps.queue.profile_usage(&row.id, now).await?,
        paused: s.apps.queue.pause_state(&row.id).await?,
        settings: current.settings.map(|c| PublicSettings::new(c, stored)),
        version: current.version,
        id: row.id,
        name: row.name,
        limits: row.limits,
    })
}

/// Every profile's pause, usage and limits, for `GET /api/queue`,
/// and their credential warnings, each read once per profile.
pub(crate) async fn states(
    s: &Sending,
) -> Result<(Vec<ProfileState>, Vec<mailroom_shared::sending::Warning>), AppError> {
    let wall = s.apps.clock.wall();
    let now = wall.unix_timestamp();
    let pauses = s.apps.queue.pauses().await?;
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    let mut signing_in = Vec::new();
    for row in s.settings.store.profiles().await? {
        let current = s.settings.for_profile(&row.id).load_current().await?;
        if let Some(st) = &current.settings {
            signing_in.push((row.name.clone(), st.clone(), row.limits));
        }
        let mut found = crate::expiry::warnings(&current, wall);
        found.extend(
            current
                .settings
                .as_ref()
                .and_then(|st| crate::expiry::basic_auth_warning(st, wall)),
        );
        // Which profile's credential, when there are several.
        for w in &mut found {
            if row.id != DEFAULT_PROFILE {
                w.message = format!("Profile “{}”: {}", row.name, w.message);
            }
            w.profile = Some(row.id.clone());
        }
        warnings.extend(found);
        let provider = current.settings.map(|st| st.provider).unwrap_or_default();
        // The daily limit in force, so the page draws the bar against it.
        let limits = mailroom_shared::profiles::ProfileLimits {
            recipients_per_day: row
                .limits
                .effective(provider, None, None)
                .recipients_per_day,
            ..row.limits
        };
        out.push(ProfileState {
            usage: s.apps.queue.profile_usage(&row.id, now).await?,
            paused: pauses.get(&row.id).cloned(),
            id: row.id,
            name: row.name,
            limits,
        });
    }
    let at = wall
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    warnings.extend(shared_mailboxes(&signing_in, &at));
    for app in s.apps.queue.list_apps().await? {
        warnings.extend(crate::apps::old_key_refused_warning(&app, now));
    }
    Ok((out, warnings))
}

/// Profiles that sign in as one Exchange Online mailbox share its limits
/// (REFERENCE: 10,000 recipients a day and 30 messages a minute per
/// mailbox), while each counts only its own: a copied profile whose
/// mailbox was not changed could pass them together, and Exchange refuses
/// the rest for a while. Warned of until the profiles' limits together fit.
fn shared_mailboxes(
    profiles: &[(
        String,
        mailroom_shared::Settings,
        mailroom_shared::profiles::ProfileLimits,
    )],
    at: &str,
) -> Vec<mailroom_shared::sending::Warning> {
    use mailroom_shared::{catalogue, AuthMethod, Provider};
    let mut by_mailbox: std::collections::BTreeMap<(&str, String), Vec<usize>> = Default::default();
    for (i, (_, st, _)) in profiles.iter().enumerate() {
        let Some(user) = st.username.as_deref().filter(|_| {
            st.provider == Provider::Office365
                && st.auth_method == AuthMethod::OAuth2ClientCredentials
        }) else {
            continue;
        };
        let key = (
            catalogue::cloud(st.cloud).name,
            user.trim().to_ascii_lowercase(),
        );
        by_mailbox.entry(key).or_default().push(i);
    }
    let mailbox = mailroom_shared::profiles::ProfileLimits::default().effective(
        Provider::Office365,
        None,
        None,
    );
    let (day_max, minute_max) = (
        u64::from(mailbox.recipients_per_day.unwrap_or_default()),
        u64::from(mailbox.messages_per_minute),
    );
    let mut out = Vec::new();
    for ((_, user), group) in by_mailbox.into_iter().filter(|(_, g)| g.len() > 1) {
        let each: Vec<_> = group
            .iter()
            .map(|&i| profiles[i].2.effective(Provider::Office365, None, None))
            .collect();
        // No limit (None, 0) passes any mailbox's.
        let day: Option<u64> = each
            .iter()
            .map(|e| e.recipients_per_day.map(u64::from))
            .sum();
        let minute: Option<u64> = each
            .iter()
            .map(|e| (e.messages_per_minute > 0).then_some(u64::from(e.messages_per_minute)))
            .sum();
        if day.is_some_and(|d| d <= day_max) && minute.is_some_and(|m| m <= minute_max) {
            continue;
        }
        let names: Vec<String> = group
            .iter()
            .map(|&i| format!("“{}”", profiles[i].0))
            .collect();
        let names = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        };
        let together = |n: Option<u64>, what: &str| {
            n.map_or(format!("no limit on {what}"), |n| format!("{n} {what}"))
        };
        out.push(mailroom_shared::sending::Warning {
            code: mailroom_shared::sending::MAILBOX_SHARED.into(),
            message: format!(
                "Profiles {names} {} sign in as {user}, and Exchange's sending limits are the mailbox's: {day_max} recipients a day and {minute_max} messages a minute for all of them together. Each profile counts only its own (together {} and {}), so past the mailbox's limits Exchange refuses mail for a while; it waits in the queue, none is lost.",
                if group.len() == 2 { "both" } else { "all" },
                together(day, "recipients a day"),
                together(minute, "messages a minute")
            ),
            hint: format!("Give each profile its own licensed mailbox as its username (each may still send as the same address with Send-As), or lower the profiles' limits under Settings → Change limits (PATCH /api/profiles/ID) so that together they stay within {day_max} recipients a day and {minute_max} messages a minute."),
            at: at.to_string(),
            profile: None,
        });
    }
    out
}

async fn list(State(s): State<Sending>) -> Result<Json<ProfileList>, AppError> {
    let mut profiles = Vec::new();
    for row in s.settings.store.profiles().await? {
        profiles.push(profile_json(&s, row).await?);
    }
    Ok(Json(ProfileList { profiles }))
}

/// A name no other profile has (case-blind), or the field's message.
async fn check_name(
    repo: &SettingsRepo,
    name: &str,
    own: Option<&str>,
    errors: &mut FieldMessages,
) -> Result<(), AppError> {
    if let Some(other) = repo.store.profile_named(name).await? {
        if Some(other.as_str()) != own {
            errors.push(
                "name",
                format!(
                    "A profile named “{}” exists already. Choose another name.",
                    name.trim()
                ),
            );
        }
    }
    Ok(())
}

async fn create(
    State(s): State<Sending>,
    ApiJson(body): ApiJson<NewProfile>,
) -> Result<(StatusCode, Json<Profile>), AppError> {
    let mut errors = FieldMessages::default();
    validate_name(&body.name, &mut errors);
    validate_limits(&body.limits, &mut errors);
    if errors.is_empty() {
        check_name(&s.settings, &body.name, None, &mut errors).await?;
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid(
            "The profile is not valid.".into(),
            errors,
        ));
    }
    let id = crate::apps::new_id("prf");
    let repo = s.settings.for_profile(&id);
    // A new profile has nothing stored: its settings bring their own secrets.
    let (record, changed) =
        crate::settings::record_to_save(&repo, &Current::default(), body.settings, 0)?;
    let row = ProfileRow {
        id: id.clone(),
        name: body.name.trim().to_string(),
        limits: body.limits,
        created_at: s.apps.clock.rfc3339(),
    };
    s.settings
        .store
        .create_profile(row.clone(), record, changed)
        .await?;
    tracing::info!(profile = %id, "profile created");
    s.settings.saved.notify_one();
    Ok((StatusCode::CREATED, Json(profile_json(&s, row).await?)))
}

async fn get_one(
    State(s): State<Sending>,
    Path(id): Path<String>,
) -> Result<Json<Profile>, AppError> {
    let row = find(&s.settings, &id).await?;
    Ok(Json(profile_json(&s, row).await?))
}

async fn put_one(
    State(s): State<Sending>,
    ProfileRepo(repo): ProfileRepo,
    ApiJson(body): ApiJson<PutSettings>,
) -> Result<Json<Profile>, AppError> {
    let _: Saved = crate::settings::save_settings(&repo, body).await?;
    let row = find(&s.settings, &repo.profile).await?;
    Ok(Json(profile_json(&s, row).await?))
}

async fn patch(
    State(s): State<Sending>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProfileChange>,
) -> Result<Json<Profile>, AppError> {
    let mut row = find(&s.settings, &id).await?;
    let mut errors = validate_change(&body);
    if let (Some(name), true) = (&body.name, errors.is_empty()) {
        check_name(&s.settings, name, Some(&id), &mut errors).await?;
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid("The change is not valid.".into(), errors));
    }
    if let Some(name) = body.name {
        row.name = name.trim().to_string();
    }
    if let Some(limits) = body.limits {
        row.limits = limits;
    }
    if !s.settings.store.update_profile(row.clone()).await? {
        return Err(not_found(&id));
    }
    tracing::info!(profile = %id, "profile changed");
    // New limits take effect at once: the engine restarts this profile's workers.
    s.settings.saved.notify_one();
    Ok(Json(profile_json(&s, row).await?))
}

async fn delete(State(s): State<Sending>, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    if id == DEFAULT_PROFILE {
        return Err(AppError::Conflict(
            "The default profile cannot be deleted: /api/settings and every app without another profile use it.".into(),
        ));
    }
    match s.settings.store.delete_profile(&id).await? {
        ProfileDelete::Deleted => {
            tracing::info!(profile = %id, "profile deleted");
            s.settings.saved.notify_one();
            Ok(StatusCode::NO_CONTENT)
        }
        ProfileDelete::NotFound => Err(not_found(&id)),
        ProfileDelete::Apps(n) => Err(AppError::Conflict(format!(
            "{n} app(s) send through this profile. Move them to another profile (PATCH /api/apps/{{id}} with \"profile\") first."
        ))),
        ProfileDelete::Waiting(n) => Err(AppError::Conflict(format!(
            "{n} message(s) of this profile are still waiting. Let them go out, or cancel them, first."
        ))),
    }
}

/// `/api/profiles` (administrators only); the per-profile settings, test,
/// history and certificate routes come from their own modules.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Sending: FromRef<S>,
    SettingsRepo: FromRef<S>,
{
    Router::new()
        .route("/api/profiles", get(list).post(create))
        .route(
            "/api/profiles/{id}",
            get(get_one).put(put_one).patch(patch).delete(delete),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_comes_from_the_path() {
        assert_eq!(profile_in_path("/api/settings/test"), None);
        assert_eq!(profile_in_path("/api/profiles/prf_1/test"), Some("prf_1"));
        assert_eq!(profile_in_path("/api/profiles/default"), Some("default"));
        assert_eq!(profile_in_path("/api/profiles/"), Some(""));
    }
}
