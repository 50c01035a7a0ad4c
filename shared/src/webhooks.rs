//! Webhooks (docs/API.md §14): the JSON of the routes, the events and the
//! formats, and the rule for a receiver's URL, shared by the server and the page.

use serde::{Deserialize, Serialize};

/// Every event a webhook may subscribe to, in the order the page lists them.
pub const EVENTS: &[(&str, &str)] = &[
    (
        "delivery.paused",
        "Delivery paused (a wrong setting, an expired credential, the upstream down)",
    ),
    ("delivery.resumed", "Delivery resumed"),
    ("message.failed", "A message failed for good"),
    (
        "message.deferred",
        "A message was deferred (its first deferral only)",
    ),
    ("message.sent", "A message was sent"),
    (
        "credential.expiring",
        "The client secret or certificate expires within 30 days (once a day)",
    ),
    (
        "quota.reached",
        "An app's limit or a profile's daily recipients reached",
    ),
    (
        "app.old_key_refused",
        "A device was refused for an app's replaced key (once a day per app)",
    ),
];

/// The event `POST /api/webhooks/{id}/test` sends.
pub const TEST_EVENT: &str = "webhook.test";

/// How the body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Standard Webhooks: `{"type", "timestamp", "data"}`, signed.
    #[default]
    Standard,
    /// A Slack incoming webhook: `{"text"}`.
    Slack,
    /// A Microsoft Teams workflow: a message with one Adaptive Card.
    Teams,
}

impl Format {
    /// Every format.
    pub const ALL: &'static [Format] = &[Format::Standard, Format::Slack, Format::Teams];

    /// The JSON id.
    pub fn id(self) -> &'static str {
        match self {
            Format::Standard => "standard",
            Format::Slack => "slack",
            Format::Teams => "teams",
        }
    }

    /// The format with this id.
    pub fn from_id(id: &str) -> Option<Format> {
        Format::ALL.iter().copied().find(|f| f.id() == id)
    }
}

/// WEBHOOK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// `wh_…`.
    pub id: String,
    /// Where events go.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// The body's format.
    pub format: Format,
    /// RFC 3339.
    pub created_at: String,
    /// The last 2xx answer, RFC 3339.
    pub last_success_at: Option<String>,
    /// The last other answer or error, RFC 3339.
    pub last_failure_at: Option<String>,
    /// Beyond the contract: until when (RFC 3339) the secret before its
    /// last *New secret* still signs each request beside the current one;
    /// left out when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_secret_until: Option<String>,
}

/// `POST /api/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where events go.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// The body's format (default `standard`).
    #[serde(default)]
    pub format: Format,
}

/// `PATCH /api/webhooks/{id}`: what changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookChange {
    /// A new URL.
    pub url: Option<String>,
    /// New events.
    pub events: Option<Vec<String>>,
    /// A new format.
    pub format: Option<Format>,
}

/// `201` of `POST /api/webhooks`: the secret, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookCreated {
    /// The webhook.
    pub webhook: Webhook,
    /// `whsec_…`: the Standard Webhooks signing secret.
    pub secret: String,
}

/// `200` of `POST /api/webhooks/{id}/secret` (beyond the contract): the
/// new secret, shown once, and until when the old one signs as well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecretReplaced {
    /// The webhook.
    pub webhook: Webhook,
    /// The new `whsec_…`.
    pub secret: String,
    /// RFC 3339: until then each request carries a signature with the old
    /// secret too.
    pub previous_until: String,
}

/// How long a replaced secret goes on signing, beside the new one.
pub const PREVIOUS_SECRET_HOURS: i64 = 24;

/// `GET /api/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WebhookList {
    /// Every webhook, oldest first.
    pub webhooks: Vec<Webhook>,
}

/// `POST /api/webhooks/{id}/test`: the one real request's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTest {
    /// A 2xx came back.
    pub ok: bool,
    /// The HTTP status, when one came.
    pub status: Option<u16>,
    /// What happened, for a person.
    pub message: String,
}

/// One delivery of one event to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The `webhook-id` header: the same on every retry.
    pub id: String,
    /// The event type.
    pub event: String,
    /// When the event happened, RFC 3339.
    pub at: String,
    /// Requests made so far.
    pub attempts: u32,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// The last HTTP status, if any.
    pub last_status: Option<u16>,
    /// The last error (a non-2xx answer, a timeout, a refused connection).
    pub last_error: Option<String>,
}

/// `GET /api/webhooks/{id}/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<Delivery>,
}

/// Checks a receiver URL: `https`, or `http` to a loopback address; no
/// user name or password in it. The error says what to change.
pub fn check_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    // Slack's and Markdown's `<url>`, or a URL copied from JSON in quotes.
    for pair @ (open, close) in [('<', '>')].into_iter().chain(crate::parse::QUOTES) {
        if let Some(inner) = crate::parse::inside(url, &[pair]) {
            if check_bare_url(inner.trim()).is_ok() {
                // Not repeated: the URL is the receiver's credential.
                return Err(format!(
                    "Enter the URL without the {open} {close} around it."
                ));
            }
        }
    }
    check_bare_url(url)
}

/// [`check_url`] without looking for brackets or quotes around the URL: it
/// never calls itself, whatever the input.
fn check_bare_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("Enter the receiver's full URL, starting with https://.")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(
            "The URL has no host: enter it like https://hooks.example.com/mailroom.".into(),
        );
    }
    if authority.contains('@') {
        return Err("Leave the user name and password out of the URL; use the signing secret to authenticate Mailroom.".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("The URL must not contain spaces or line breaks.".into());
    }
    if let Some(c) = crate::parse::invisible_char(url) {
        return Err(format!(
            "The URL holds U+{:04X}, a character that shows as nothing, which came along when it was copied; paste the URL again.",
            c as u32
        ));
    }
    check_authority(authority)?;
    let host = crate::parse::authority_host(authority);
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if crate::parse::is_loopback_address(host) || host.eq_ignore_ascii_case("localhost") => Ok(()),
        "http" => Err("Use https: events leave this server signed but readable, so plain http is allowed only to a loopback address.".into()),
        _ => Err("The URL must start with https://.".into()),
    }
}

/// Checks a URL's host and port, which would otherwise fail only when the
/// first event is sent: a name of labels (letters of any script, digits,
/// hyphens, underscores), an IPv4 address or a bracketed IPv6 one, and a
/// port from 1 to 65535 when one is given.
pub fn check_authority(authority: &str) -> Result<(), String> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']').ok_or(
                "The URL's IPv6 address has no closing ]: write it like https://[2001:db8::1]/hook.",
            )?;
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("“{v6}” in the URL is not an IPv6 address."));
            }
            match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None if after.is_empty() => (None, None),
                None => return Err("After the URL's closing ], put only a :port, like https://[2001:db8::1]:8443/hook.".into()),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority), None),
        },
    };
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        if !port.bytes().all(|b| b.is_ascii_digit())
            || !matches!(port.parse::<u32>(), Ok(1..=65535))
        {
            return Err(format!(
                "The URL's port “{port}” is not a port: use 1 to 65535, or leave it out for https's 443."
            ));
        }
    }
    let Some(host) = host else { return Ok(()) };
    let labels = host.strip_suffix('.').unwrap_or(host);
    let bad_label = labels.split('.').any(|label| {
        label.is_empty()
            || label.chars().count() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            // Any letter beyond ASCII (an IDN label); not `is_alphanumeric`,
            // whose Unicode tables cost the page KBs.
            || !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii())
    });
    if bad_label {
        return Err(format!(
            "“{host}” in the URL is not a host name: write it like hooks.example.com, with letters, digits and hyphens between single dots."
        ));
    }
    Ok(())
}

/// A URL's host, lower case and without a final dot or a port, and its path
/// without the leading `/` (what the format rules read).
fn host_and_path(url: &str) -> Option<(String, &str)> {
    let (_, rest) = url.trim().split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = crate::parse::authority_host(authority).trim_end_matches('.');
    Some((
        host.to_ascii_lowercase(),
        path.strip_prefix('/').unwrap_or(path),
    ))
}

/// Checks that the format suits a receiver its URL names: a Slack incoming
/// webhook (`https://hooks.slack.com/services/…`) takes only Slack's
/// `{"text"}` and answers any other body `400` (`no_text`,
/// `invalid_payload`), so every event would fail, found only when the first
/// is sent. Other URLs take any format: Slack's workflow webhooks take any
/// JSON, Mattermost and Rocket.Chat take Slack's, and a Power Automate flow
/// may be built for Standard Webhooks.
pub fn check_format(url: &str, format: Format) -> Result<(), String> {
    if format == Format::Slack {
        return Ok(());
    }
    let Some((host, path)) = host_and_path(url) else {
        return Ok(());
    };
    let slack = ["hooks.slack.com", "hooks.slack-gov.com"]
        .iter()
        .any(|h| host == *h);
    if slack && path.starts_with("services/") {
        return Err("This is a Slack incoming webhook URL: choose the Slack format. Slack refuses any other body, so every event would fail.".into());
    }
    Ok(())
}

/// Advice on a format that a Microsoft Teams URL (a Workflows or Logic Apps
/// trigger, or an older Office 365 connector) most likely does not take: the
/// Teams template "post to a channel when a webhook request is received"
/// reads an Adaptive Card, and answers `202` to any body, so a Slack or
/// Standard body is taken and never shown. Allowed, since a flow may be
/// built to read Standard Webhooks.
pub fn format_advice(url: &str, format: Format) -> Option<String> {
    if format == Format::Teams {
        return None;
    }
    let (host, _) = host_and_path(url)?;
    let teams = [
        ".webhook.office.com",
        ".logic.azure.com",
        ".powerplatform.com",
    ]
    .iter()
    .any(|suffix| host.ends_with(suffix));
    teams.then(|| "This looks like a Microsoft Teams workflow URL: its template “post to a channel when a webhook request is received” takes the Teams format and shows nothing of another. Keep this format only for a flow built to read it.".to_string())
}

/// Checks the event list: at least one, each known, none twice.
pub fn check_events(events: &[String]) -> Result<(), String> {
    if events.is_empty() {
        return Err("Choose at least one event.".into());
    }
    for (i, e) in events.iter().enumerate() {
        if !EVENTS.iter().any(|(id, _)| id == e) {
            let known: Vec<&str> = EVENTS.iter().map(|(id, _)| *id).collect();
            return Err(format!("“{e}” is not an event; use {}.", known.join(", ")));
        }
        if events[..i].contains(e) {
            return Err(format!("“{e}” is listed twice."));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_pasted_in_brackets_or_quotes_is_named_without_them() {
        let url = "https://hooks.slack.com/services/T0/B0/x";
        for pasted in [
            format!("<{url}>"),
            format!("\"{url}\""),
            format!(" “{url}” "),
        ] {
            let e = check_url(&pasted).unwrap_err();
            assert!(
                e.starts_with("Enter the URL without") && !e.contains(url),
                "{pasted}: {e}"
            );
        }
        // Brackets around something that is no URL are not the mistake.
        assert_eq!(
            check_url("<hooks>").unwrap_err(),
            "Enter the receiver's full URL, starting with https://."
        );
    }

    #[test]
    fn a_url_pasted_with_a_character_that_shows_as_nothing_is_refused() {
        for url in [
            "https://hooks.slack.com/services/T0/B0/x\u{200B}",
            "https://hooks.slack.com\u{200B}/services/T0/B0/x",
            "https://exa\u{AD}mple.com/x",
        ] {
            let e = check_url(url).unwrap_err();
            assert!(e.contains("shows as nothing"), "{url:?}: {e}");
        }
        assert_eq!(
            check_url("https://hooks.slack.com/services/T0/B0/x"),
            Ok(())
        );
    }

    #[test]
    fn a_teams_url_with_another_format_gets_advice() {
        for teams in [
            "https://contoso.webhook.office.com/webhookb2/x",
            "https://prod-01.westeurope.logic.azure.com:443/workflows/1/triggers/manual",
            "https://default1.environment.api.powerplatform.com/powerautomate/x",
        ] {
            for other in [Format::Standard, Format::Slack] {
                let a = format_advice(teams, other).unwrap_or_default();
                assert!(a.contains("takes the Teams format"), "{teams}: {a}");
            }
            assert_eq!(format_advice(teams, Format::Teams), None);
        }
        for other in [
            "https://hooks.example.com/x",
            "https://logic.azure.com.evil.example/x",
            "https://evilwebhook.office.com/x",
            "nonsense",
        ] {
            assert_eq!(format_advice(other, Format::Standard), None, "{other}");
        }
    }

    #[test]
    fn a_slack_incoming_webhook_takes_the_slack_format_only() {
        let slack = "https://hooks.slack.com/services/T0/B0/XYZ";
        assert_eq!(check_format(slack, Format::Slack), Ok(()));
        for other in [Format::Standard, Format::Teams] {
            let e = check_format(slack, other).unwrap_err();
            assert!(e.contains("choose the Slack format"), "{e}");
        }
        for also in [
            "https://HOOKS.SLACK.COM./services/T0/B0/XYZ",
            "https://hooks.slack.com:443/services/T0/B0/XYZ",
            "  https://hooks.slack-gov.com/services/T0/B0/XYZ",
        ] {
            assert!(check_format(also, Format::Standard).is_err(), "{also}");
        }
        // Any JSON: workflow webhooks, other hosts, Teams' own.
        for any in [
            "https://hooks.slack.com/workflows/T0/A0/1/x",
            "https://hooks.slack.com.evil.example/services/T0",
            "https://chat.contoso.com/hooks/xyz",
            "https://prod-01.westeurope.logic.azure.com/workflows/1",
            "not a url",
        ] {
            assert_eq!(check_format(any, Format::Standard), Ok(()), "{any}");
            assert_eq!(check_format(any, Format::Teams), Ok(()), "{any}");
        }
    }

    #[test]
    fn urls_must_be_https_unless_loopback() {
        for good in [
            "https://hooks.slack.com/services/T/B/X",
            "http://127.0.0.1:9000/hook",
            "http://[::1]:80/",
            "http://localhost:8080/x",
            "https://例え.jp/hook",
            "https://my_service.internal:8443/x",
            "https://[2001:db8::1]:8443/h",
            "https://hooks.example.com./x?a=b#c",
            "https://10.0.0.5/hook",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("http://hooks.example.com/x", "Use https"),
            ("ftp://x", "https://"),
            ("hooks.example.com", "full URL"),
            ("https://user:pw@x.example/", "user name"),
            ("https:///path", "no host"),
            ("https://x.example/a b", "spaces"),
            ("http://127.0.0.1.evil.example/", "Use https"),
            ("https://example.com:99999/x", "port “99999” is not a port"),
            ("https://example.com:0/", "port “0”"),
            ("https://example.com:44a/", "port “44a”"),
            ("https://exa_mple..com/", "not a host name"),
            ("https://-bad.example/", "not a host name"),
            ("https://%00/x", "not a host name"),
            ("https://[::1/x", "no closing ]"),
            ("https://[::g]/x", "not an IPv6 address"),
            ("https://[::1]x/", "put only a :port"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn events_are_known_and_listed_once() {
        let ev = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_events(&ev(&["delivery.paused", "message.sent"])).is_ok());
        assert!(check_events(&[]).unwrap_err().contains("at least one"));
        assert!(check_events(&ev(&["message.lost"]))
            .unwrap_err()
            .contains("not an event"));
        assert!(check_events(&ev(&["message.sent", "message.sent"]))
            .unwrap_err()
            .contains("twice"));
    }
}
