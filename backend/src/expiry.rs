//! Credentials that never expire by surprise (docs/API.md §13): when the
//! saved client secret or the active certificate expires, and the warning
//! that `GET /api/queue`, the page and `/metrics` give from 30 days before;
//! and a password for Exchange Online, which Microsoft is retiring.

use mailroom_shared::sending::{Warning, BASIC_AUTH_RETIRING, CREDENTIAL_EXPIRING};
use mailroom_shared::{validate, Settings};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::settings::Current;
use crate::store::CertSlot;

/// How long before the expiry the warning starts (the page's while-typing
/// note uses the same).
pub const WARN_DAYS: i64 = validate::EXPIRY_WARN_DAYS;

/// What expires, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Unix seconds.
    pub at_unix: i64,
    /// A certificate (with its SHA-1 thumbprint), else the client secret.
    pub certificate: Option<String>,
}

/// When the saved credential expires: the active certificate's `not_after`,
/// or the secret's *Expires* date (its start, UTC, to be early rather than
/// late); `None` without OAuth or without a date.
pub fn credential_expiry(current: &Current) -> Option<Expiry> {
    let settings: &Settings = current.settings.as_ref()?;
    if settings.auth_method != mailroom_shared::AuthMethod::OAuth2ClientCredentials {
        return None;
    }
    if settings.uses_certificate() {
        let row = current.certificate(CertSlot::Active)?;
        let (at_unix, thumbprint) = crate::upstream::certificate::expiry_of(&row.cert_der)?;
        return Some(Expiry {
            at_unix,
            certificate: Some(thumbprint),
        });
    }
    let (y, m, d) = validate::check_date(settings.client_secret_expires.as_deref()?).ok()?;
    let month = time::Month::try_from(m).ok()?;
    let date = time::Date::from_calendar_date(y, month, d).ok()?;
    Some(Expiry {
        at_unix: date.midnight().assume_utc().unix_timestamp(),
        certificate: None,
    })
}

/// The warning, from [`WARN_DAYS`] before the expiry (and after it).
pub fn warnings(current: &Current, now: OffsetDateTime) -> Vec<Warning> {
    let Some(e) = credential_expiry(current) else {
        return Vec::new();
    };
    let now_unix = now.unix_timestamp();
    if e.at_unix - now_unix > WARN_DAYS * 86_400 {
        return Vec::new();
    }
    let at = OffsetDateTime::from_unix_timestamp(e.at_unix).unwrap_or(now);
    let day = at.format(&Rfc3339).unwrap_or_default();
    let date = day.get(..10).unwrap_or_default().to_string();
    let left = e.at_unix - now_unix;
    let when = if left <= 0 {
        format!("expired on {date}")
    } else {
        let days = (left + 86_399) / 86_400;
        format!(
            "expires on {date}, in {days} day{}",
            if days == 1 { "" } else { "s" }
        )
    };
    let (message, hint) = match &e.certificate {
        Some(thumb) => (
            format!("The certificate Mailroom signs in with (thumbprint {thumb}) {when}; after that, no mail goes out."),
            "Generate a new certificate under Settings, upload it in Entra (Certificates & secrets → Certificates → Upload), send a test email and save: the new one takes over without a pause. Then remove the old one from the app registration.".to_string(),
        ),
        None => (
            format!("The client secret {when}; after that, no mail goes out."),
            "Make a new secret in Entra (Certificates & secrets → Client secrets → New client secret), paste its Value and its Expires date under Settings, test and save; or switch to a certificate, which Mailroom can make for you and which Microsoft recommends.".to_string(),
        ),
    };
    vec![Warning {
        code: CREDENTIAL_EXPIRING.into(),
        message,
        hint,
        at: day,
        profile: None,
    }]
}

/// When Microsoft turns basic authentication for SMTP AUTH off by default
/// for existing tenants: the end of December 2026 (REFERENCE, "The legacy
/// path and its deadline"), its last day at 00:00 UTC to be early.
const BASIC_AUTH_OFF_UNIX: i64 = 1_798_675_200;

/// When the password these settings sign in to Exchange Online with is
/// turned off by default (Unix seconds), for `/metrics`; `None` for any
/// other settings.
pub fn basic_auth_deadline(settings: &Settings) -> Option<i64> {
    validate::uses_retiring_basic_auth(settings).then_some(BASIC_AUTH_OFF_UNIX)
}

/// What the daily `credential.expiring` event of a profile says, if
/// anything: its credential's warning; else, from [`WARN_DAYS`] before the
/// end of December 2026 until then, its password's retirement. After that
/// date a refused password pauses delivery, and `delivery.paused` says so.
pub fn event_warning(current: &Current, now: OffsetDateTime) -> Option<Warning> {
    if let Some(w) = warnings(current, now).into_iter().next() {
        return Some(w);
    }
    let settings = current.settings.as_ref()?;
    let left = basic_auth_deadline(settings)? - now.unix_timestamp();
    if left <= 0 || left > WARN_DAYS * 86_400 {
        return None;
    }
    basic_auth_warning(settings, now)
}

/// The warning for settings that sign in to Exchange Online with a
/// password, on every view for as long as they do (beyond the contract,
/// docs/API.md §13): before the end of December 2026 how long is left,
/// after it what has happened. The form says the same while typing.
pub fn basic_auth_warning(settings: &Settings, now: OffsetDateTime) -> Option<Warning> {
    let deadline = basic_auth_deadline(settings)?;
    let left = deadline - now.unix_timestamp();
    let who =
        "Mailroom signs in to Office 365 with a password (basic authentication for SMTP AUTH)";
    let message = if left > 0 {
        let days = (left + 86_399) / 86_400;
        format!(
            "{who}, which Microsoft turns off by default for existing tenants at the end of December 2026, in {days} day{}. After that Exchange refuses the password (535 5.7.139) and delivery pauses; no message is lost, but none goes out.",
            if days == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "{who}, which Microsoft has turned off by default for existing tenants since the end of December 2026. Unless the tenant turned it back on, Exchange refuses the password (535 5.7.139) and delivery pauses; a tenant that did keeps it only until Microsoft's final removal, to be announced in the second half of 2027."
        )
    };
    let at = OffsetDateTime::from_unix_timestamp(deadline)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    Some(Warning {
        code: BASIC_AUTH_RETIRING.into(),
        message,
        hint: "Switch to OAuth 2.0 (Client Credentials) under Settings: register an app in Entra ID with the SMTP.SendAsApp permission and access to the mailbox (or Mail.Send, to send through Microsoft Graph), enter its IDs and a secret or a certificate, send a test email and save. Until then messages go out with the password for as long as Exchange takes it.".into(),
        at,
        profile: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_shared::{AuthMethod, Provider};

    fn password(provider: Provider, host: &str) -> Settings {
        let mut s = mailroom_shared::fixtures::office365_oauth(host, 587);
        s.provider = provider;
        s.auth_method = AuthMethod::Password;
        s.password = Some("app-password".into());
        s
    }

    fn at(y: i32, m: time::Month, d: u8) -> OffsetDateTime {
        time::Date::from_calendar_date(y, m, d)
            .unwrap()
            .midnight()
            .assume_utc()
    }

    #[test]
    fn the_deadline_is_the_last_day_of_december_2026() {
        assert_eq!(
            OffsetDateTime::from_unix_timestamp(BASIC_AUTH_OFF_UNIX).unwrap(),
            at(2026, time::Month::December, 31)
        );
    }

    #[test]
    fn a_password_for_exchange_online_is_warned_of_before_and_after_the_deadline() {
        let s = password(Provider::Office365, "smtp.office365.com");
        let before = basic_auth_warning(&s, at(2026, time::Month::December, 7)).unwrap();
        assert_eq!(before.code, "basic_auth_retiring");
        assert_eq!(before.at, "2026-12-31T00:00:00Z");
        assert!(
            before
                .message
                .contains("at the end of December 2026, in 24 days.")
                && before.message.contains("535 5.7.139"),
            "{}",
            before.message
        );
        assert!(before.hint.starts_with("Switch to OAuth 2.0"));
        let last = basic_auth_warning(&s, at(2026, time::Month::December, 30)).unwrap();
        assert!(last.message.contains("in 1 day."), "{}", last.message);
        let after = basic_auth_warning(&s, at(2027, time::Month::January, 15)).unwrap();
        assert!(
            after.message.contains("has turned off by default")
                && after.message.contains("second half of 2027")
                && !after.message.contains(" day"),
            "{}",
            after.message
        );
        // The host typed under another provider is Exchange Online too.
        let typed = password(Provider::Other, "smtp.office365.com");
        assert!(basic_auth_warning(&typed, at(2026, time::Month::December, 7)).is_some());
    }

    #[test]
    fn oauth_or_another_server_has_nothing_to_retire() {
        let now = at(2026, time::Month::December, 7);
        let oauth = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
        assert_eq!(basic_auth_warning(&oauth, now), None);
        let gmail = password(Provider::Other, "smtp.gmail.com");
        assert_eq!(basic_auth_warning(&gmail, now), None);
    }
}
