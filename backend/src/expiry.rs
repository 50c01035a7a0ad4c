//! Credentials that never expire by surprise (docs/API.md §13): when the
//! saved client secret or the active certificate expires, and the warning
//! that `GET /api/queue`, the page and `/metrics` give from 30 days before.

use mailroom_shared::sending::{Warning, CREDENTIAL_EXPIRING};
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
