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
/// 10,000 recipients a day, 30 messages a minute, 3 connections). A field
/// it does not take is refused, naming it (as [`crate::sending::AppLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
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

/// `POST /api/profiles`; a field it does not take is refused, naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(default, deny_unknown_fields)]
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
    } else if let Some(m) = crate::parse::reordering_mark("name", name)
        .or_else(|| crate::parse::invisible_mark("name", name))
    {
        errors.push("name", m);
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

/// The limit names in the page's order, with their labels.
pub const LIMIT_FIELDS: [(&str, &str); 3] = [
    ("recipients_per_day", "Recipients per 24 hours"),
    ("messages_per_minute", "Messages per minute"),
    ("connections", "Connections at once"),
];

/// Reads the limits form: each field as typed, in [`LIMIT_FIELDS`] order
/// (empty: the provider's default; `10,000` and `10 000` are read as
/// 10000). The messages are keyed by the limit's name.
pub fn parse_limits(typed: &[String; 3]) -> (ProfileLimits, FieldMessages) {
    let mut errors = FieldMessages::default();
    let mut parsed = [None; 3];
    let maxima = ProfileLimits::default().named().map(|(_, _, max)| max);
    for (i, v) in typed.iter().enumerate() {
        let v = v.trim().replace([',', '_', ' ', '\u{a0}'], "");
        if v.is_empty() {
            continue;
        }
        match v.parse::<u64>() {
            Ok(n) if (1..=u64::from(maxima[i])).contains(&n) => parsed[i] = Some(n as u32),
            _ => errors.push(
                LIMIT_FIELDS[i].0,
                format!(
                    "Enter a whole number from 1 to {}, or leave it empty for the provider's default.",
                    crate::group_thousands(u64::from(maxima[i]))
                ),
            ),
        }
    }
    let limits = ProfileLimits {
        recipients_per_day: parsed[0],
        messages_per_minute: parsed[1],
        connections: parsed[2],
    };
    (limits, errors)
}

/// Advice on limits set above what the provider takes for one mailbox
/// (REFERENCE: Exchange's sending limits, Graph's throttling), keyed by the
/// limit's name. They are allowed (a custom Exchange policy, several
/// mailboxes behind a connector) but say what will happen.
pub fn limit_warnings(
    limits: &ProfileLimits,
    provider: Provider,
    transport: Transport,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if provider != Provider::Office365 {
        return out;
    }
    if limits
        .recipients_per_day
        .is_some_and(|n| n > EXCHANGE_RECIPIENTS_PER_DAY)
    {
        out.push((
            "recipients_per_day",
            "Exchange Online stops a mailbox at 10,000 recipients a day: past that, its own refusals make the messages wait anyway.".to_string(),
        ));
    }
    // Exchange's pace and connections per mailbox, as the catalogue has them.
    let exchange = crate::catalogue::provider(Provider::Office365);
    if limits
        .messages_per_minute
        .is_some_and(|n| n > exchange.rate_per_minute)
    {
        out.push((
            "messages_per_minute",
            format!("Exchange Online takes {} messages a minute from one mailbox: faster, it refuses some, and they are tried again later.", exchange.rate_per_minute),
        ));
    }
    match (transport, limits.connections) {
        (Transport::Graph, Some(n)) if n > GRAPH_MAX_CONCURRENT => out.push((
            "connections",
            format!("Microsoft Graph takes {GRAPH_MAX_CONCURRENT} requests at once per app and mailbox: Mailroom uses {GRAPH_MAX_CONCURRENT}, not {n}."),
        )),
        (Transport::Smtp, Some(n)) if n > exchange.connections => out.push((
            "connections",
            format!("Exchange Online takes {} SMTP connections per mailbox: a fourth gets 432 4.3.2 and its message is tried again later.", exchange.connections),
        )),
        _ => {}
    }
    out
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
    fn the_limits_form_reads_numbers_with_separators_and_names_each_bad_one() {
        let typed = |a: &str, b: &str, c: &str| [a.to_string(), b.to_string(), c.to_string()];
        let (l, e) = parse_limits(&typed(" 5,000 ", "", "2"));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            l,
            ProfileLimits {
                recipients_per_day: Some(5000),
                messages_per_minute: None,
                connections: Some(2),
            }
        );
        let (l, e) = parse_limits(&typed("0", "ten", "33"));
        assert_eq!(l, ProfileLimits::default());
        for name in ["recipients_per_day", "messages_per_minute", "connections"] {
            assert!(e.get(name).is_some(), "{name}: {e:?}");
        }
        assert!(e.get("connections").unwrap()[0].contains("from 1 to 32"));
        assert!(e.get("recipients_per_day").unwrap()[0].contains("10,000,000"));
        let (_, e) = parse_limits(&typed("99999999999999999999999", "-1", "3.5"));
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn limits_past_exchanges_and_graphs_are_explained_not_refused() {
        let high = ProfileLimits {
            recipients_per_day: Some(20_000),
            messages_per_minute: Some(60),
            connections: Some(8),
        };
        let names =
            |w: Vec<(&'static str, String)>| w.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let smtp = limit_warnings(&high, Provider::Office365, Transport::Smtp);
        assert!(smtp[2].1.contains("432 4.3.2"), "{smtp:?}");
        assert_eq!(
            names(smtp),
            ["recipients_per_day", "messages_per_minute", "connections"]
        );
        let graph = limit_warnings(&high, Provider::Office365, Transport::Graph);
        assert!(graph[2].1.contains("uses 4, not 8"), "{graph:?}");
        let within = ProfileLimits {
            recipients_per_day: Some(10_000),
            messages_per_minute: Some(30),
            connections: Some(3),
        };
        assert!(limit_warnings(&within, Provider::Office365, Transport::Smtp).is_empty());
        let four = ProfileLimits {
            connections: Some(4),
            ..ProfileLimits::default()
        };
        assert!(limit_warnings(&four, Provider::Office365, Transport::Graph).is_empty());
        assert_eq!(
            names(limit_warnings(&four, Provider::Office365, Transport::Smtp)),
            ["connections"]
        );
        assert!(limit_warnings(&high, Provider::Gmail, Transport::Smtp).is_empty());
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
        assert!(!check("Billing\u{202E}xobliam"));
        assert!(!check("Billing\u{200B}"));
        assert!(check("\u{5d3}\u{5d5}\u{5d0}\u{5e8} \u{200f}2"));
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
