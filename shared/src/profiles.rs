//! Sending profiles (docs/API.md §15): several ways out (mailboxes, tenants),
//! each with its own settings, pause, pace and daily recipients. The JSON of
//! the routes and the rules the page checks while typing.

use serde::{Deserialize, Serialize};

use crate::api::PublicSettings;
use crate::messages::FieldMessages;
use crate::sending::Paused;
use crate::settings::{Provider, Settings, Transport};

/// The profile `/api/settings` edits; it always exists and cannot be deleted.
pub const DEFAULT_PROFILE: &str = "default";

/// The longest profile name.
pub const MAX_NAME: usize = 64;

/// The most connections one profile may hold open at once.
pub const MAX_CONNECTIONS: u32 = 32;

/// The highest per-minute rate and daily recipient count that can be set.
pub const MAX_PER_MINUTE: u32 = 100_000;
/// See [`MAX_PER_MINUTE`].
pub const MAX_PER_DAY: u32 = 10_000_000;

/// A profile's limits; `None` takes the provider's default (Office 365:
/// 10,000 recipients a day, 30 messages a minute, 3 connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProfileLimits {
    /// Recipients in any 24 hours.
    pub recipients_per_day: Option<u32>,
    /// Messages a minute.
    pub messages_per_minute: Option<u32>,
    /// Connections at once, for all servers together.
    pub connections: Option<u32>,
}

/// The limits that apply: each set one, else the provider's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// `None`: no daily limit.
    pub recipients_per_day: Option<u32>,
    /// 0: no limit.
    pub messages_per_minute: u32,
    /// At least 1.
    pub connections: u32,
}

/// Exchange Online's recipient rate limit per mailbox (REFERENCE: sending limits).
pub const EXCHANGE_RECIPIENTS_PER_DAY: u32 = 10_000;

/// Microsoft Graph's limit of requests at once per app and mailbox
/// (REFERENCE: Graph's throttling); a fifth is refused with `429
/// MailboxConcurrency`.
pub const GRAPH_MAX_CONCURRENT: u32 = 4;

impl Effective {
    /// The limits as a transport can use them: over Graph, at most
    /// [`GRAPH_MAX_CONCURRENT`] connections (requests at once), since more
    /// would only be throttled and hold the whole profile back.
    pub fn for_transport(self, transport: Transport) -> Effective {
        match transport {
            Transport::Graph => Effective {
                connections: self.connections.min(GRAPH_MAX_CONCURRENT),
                ..self
            },
            Transport::Smtp => self,
        }
    }
}

impl ProfileLimits {
    /// The limits in force for a provider, with `rate` and `connections` the
    /// command line's defaults when given.
    pub fn effective(
        &self,
        provider: Provider,
        rate: Option<u32>,
        connections: Option<u32>,
    ) -> Effective {
        let info = crate::catalogue::provider(provider);
        let daily = match provider {
            Provider::Office365 => Some(EXCHANGE_RECIPIENTS_PER_DAY),
            _ => None,
        };
        Effective {
            recipients_per_day: self.recipients_per_day.or(daily),
            messages_per_minute: self
                .messages_per_minute
                .or(rate)
                .unwrap_or(info.rate_per_minute),
            connections: self.connections.or(connections).unwrap_or(info.connections),
        }
    }

    /// Each limit with its name and its highest value.
    pub fn named(&self) -> [(&'static str, Option<u32>, u32); 3] {
        [
            ("recipients_per_day", self.recipients_per_day, MAX_PER_DAY),
            (
                "messages_per_minute",
                self.messages_per_minute,
                MAX_PER_MINUTE,
            ),
            ("connections", self.connections, MAX_CONNECTIONS),
        ]
    }
}

/// What a profile has used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProfileUsage {
    /// Recipients of messages sent (or being sent) in the last 24 hours.
    pub recipients_today: u64,
    /// Messages sent (or being sent) in the last 60 seconds.
    pub messages_last_minute: u64,
}

/// `PROFILE` (docs/API.md §15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// `default`, or `prf_…`.
    pub id: String,
    /// What the admin calls it.
    pub name: String,
    /// Its settings without secrets; `null` before the first save.
    pub settings: Option<PublicSettings>,
    /// The version to send back with the next `PUT`.
    pub version: u64,
    /// Its limits as set (`null`: the provider's default).
    pub limits: ProfileLimits,
    /// What it has used.
    pub usage: ProfileUsage,
    /// Why its delivery waits, when it does.
    pub paused: Option<Paused>,
}

/// `GET /api/profiles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProfileList {
    /// Every profile, `default` first.
    pub profiles: Vec<Profile>,
}

/// `POST /api/profiles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProfile {
    /// Its name.
    pub name: String,
    /// Its settings, with their secrets.
    pub settings: Settings,
    /// Its limits.
    #[serde(default)]
    pub limits: ProfileLimits,
}

/// `PATCH /api/profiles/{id}`: absent fields stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProfileChange {
    /// A new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New limits (the whole set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<ProfileLimits>,
}

/// A profile in `GET /api/queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileState {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Why its delivery waits, when it does.
    pub paused: Option<Paused>,
    /// What it has used.
    pub usage: ProfileUsage,
    /// The daily limit in force (`null`: none), for the usage bar.
    pub limits: ProfileLimits,
}

/// Checks a profile's name: 1 to [`MAX_NAME`] characters, no control characters.
pub fn validate_name(name: &str, errors: &mut FieldMessages) {
    let name = name.trim();
    if name.is_empty() {
        errors.push(
            "name",
            "Give the profile a name, for example the mailbox or the customer it sends for.",
        );
    } else if name.chars().count() > MAX_NAME {
        errors.push(
            "name",
            format!("The name is too long: at most {MAX_NAME} characters."),
        );
    } else if name.chars().any(char::is_control) {
        errors.push(
            "name",
            "The name may not hold control characters (line breaks, tabs).",
        );
    }
}

/// Checks limits: each a whole number from 1 to its highest, or null.
pub fn validate_limits(limits: &ProfileLimits, errors: &mut FieldMessages) {
    for (name, value, max) in limits.named() {
        if let Some(v) = value {
            if v == 0 || v > max {
                errors.push(
                    "limits",
                    format!("{name} must be a whole number from 1 to {max}, or empty for the provider's default."),
                );
            }
        }
    }
}

/// Checks a `PATCH`.
pub fn validate_change(change: &ProfileChange) -> FieldMessages {
    let mut errors = FieldMessages::default();
    if let Some(name) = &change.name {
        validate_name(name, &mut errors);
    }
    if let Some(limits) = &change.limits {
        validate_limits(limits, &mut errors);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn office365_defaults_are_exchanges_limits() {
        let e = ProfileLimits::default().effective(Provider::Office365, None, None);
        assert_eq!(e.recipients_per_day, Some(10_000));
        assert_eq!(e.messages_per_minute, 30);
        assert_eq!(e.connections, 3);
        let set = ProfileLimits {
            recipients_per_day: Some(5),
            messages_per_minute: Some(7),
            connections: Some(1),
        };
        let e = set.effective(Provider::Office365, Some(100), Some(9));
        assert_eq!(
            (e.recipients_per_day, e.messages_per_minute, e.connections),
            (Some(5), 7, 1)
        );
        let e = ProfileLimits::default().effective(Provider::Gmail, Some(100), Some(9));
        assert_eq!(
            (e.recipients_per_day, e.messages_per_minute, e.connections),
            (None, 100, 9)
        );
    }

    #[test]
    fn graph_takes_at_most_four_connections_and_keeps_the_rest() {
        let many = ProfileLimits {
            connections: Some(20),
            ..ProfileLimits::default()
        }
        .effective(Provider::Office365, Some(100), None);
        assert_eq!(many.for_transport(Transport::Smtp), many);
        let graph = many.for_transport(Transport::Graph);
        assert_eq!(
            (
                graph.connections,
                graph.messages_per_minute,
                graph.recipients_per_day
            ),
            (GRAPH_MAX_CONCURRENT, 100, Some(10_000))
        );
        let few = ProfileLimits::default().effective(Provider::Office365, None, None);
        assert_eq!(few.for_transport(Transport::Graph).connections, 3);
    }

    #[test]
    fn names_and_limits_are_checked() {
        let check = |name: &str| {
            let mut e = FieldMessages::default();
            validate_name(name, &mut e);
            e.is_empty()
        };
        assert!(check("Billing mailbox"));
        assert!(!check("  "));
        assert!(!check("a\nb"));
        assert!(!check(&"x".repeat(MAX_NAME + 1)));
        let mut e = FieldMessages::default();
        validate_limits(
            &ProfileLimits {
                connections: Some(0),
                ..Default::default()
            },
            &mut e,
        );
        assert!(!e.is_empty());
        let mut e = FieldMessages::default();
        validate_limits(
            &ProfileLimits {
                connections: Some(MAX_CONNECTIONS + 1),
                ..Default::default()
            },
            &mut e,
        );
        assert!(!e.is_empty());
    }
}
