//! The sending side (docs/API.md §6 to §9): apps, submitted messages, the
//! queue's view, and the From policy, shared so the page can explain it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::Stage;
use crate::messages::FieldMessages;
use crate::parse;
use crate::settings::Settings;

/// The most recipients one message may have.
pub const MAX_RECIPIENTS: usize = 500;

/// The longest Activity search (`GET /api/messages?q=`), in characters: more
/// than any address (254) or subject (998), and far under SQLite's 50,000
/// bytes for a LIKE pattern, past which the query failed with a 500. The
/// page's search box stops there too.
pub const MAX_SEARCH: usize = 1000;

/// `POST /api/apps`. A field it does not take is refused, naming it: a
/// misspelt `allowed_from` or `limits` would otherwise make an app with other
/// rights than the admin meant, and say nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NewApp {
    /// What the admin calls it ("Scanner, 3rd floor").
    pub name: String,
    /// Addresses it may send as, besides the settings' username and sender.
    pub allowed_from: Vec<String>,
    /// Rewrite the header From to the settings' sender.
    pub rewrite_from: bool,
    /// Its limits; absent: the defaults.
    pub limits: AppLimits,
    /// The profile that sends its mail (docs/API.md §15).
    #[serde(default = "default_profile")]
    pub profile: String,
}

fn default_profile() -> String {
    crate::profiles::DEFAULT_PROFILE.to_string()
}

/// The largest limit that can be set: higher means no limit in practice.
pub const MAX_LIMIT: u32 = 1_000_000_000;

/// An app's limits (docs/API.md §6). Windows are rolling; `None` is no limit.
/// A field it does not take is refused, naming it: the limits given replace
/// the whole set, so a misspelt one would leave the app with no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppLimits {
    /// Messages in any 60 minutes.
    pub messages_per_hour: Option<u32>,
    /// Messages in any 24 hours.
    pub messages_per_day: Option<u32>,
    /// Recipients in any 24 hours (Exchange allows a mailbox 10,000).
    pub recipients_per_day: Option<u32>,
    /// Messages waiting at once (queued, deferred or sending).
    pub queued_max: Option<u32>,
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits {
            messages_per_hour: None,
            messages_per_day: None,
            recipients_per_day: None,
            queued_max: Some(10_000),
        }
    }
}

impl AppLimits {
    /// Whether a limit over a time window is set (not only `queued_max`).
    pub fn has_windows(&self) -> bool {
        self.messages_per_hour.is_some()
            || self.messages_per_day.is_some()
            || self.recipients_per_day.is_some()
    }

    /// Each limit with its name, in the order the page shows them.
    pub fn named(&self) -> [(&'static str, Option<u32>); 4] {
        [
            ("messages_per_hour", self.messages_per_hour),
            ("messages_per_day", self.messages_per_day),
            ("recipients_per_day", self.recipients_per_day),
            ("queued_max", self.queued_max),
        ]
    }
}

/// What an app has used of its limits now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AppUsage {
    /// Messages submitted in the last 60 minutes.
    pub messages_last_hour: u64,
    /// Messages submitted in the last 24 hours.
    pub messages_today: u64,
    /// Their recipients.
    pub recipients_today: u64,
    /// Messages waiting (queued, deferred or sending).
    pub queued: u64,
}

/// `PATCH /api/apps/{id}`: what to change; absent fields stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AppChange {
    /// A new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New extra From addresses (the whole list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_from: Option<Vec<String>>,
    /// Rewrite the header From, or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite_from: Option<bool>,
    /// New limits (the whole set; a limit left out takes its default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<AppLimits>,
    /// Another profile to send its mail (its waiting messages keep theirs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// Checks limits: each at least 1 and at most [`MAX_LIMIT`], or null.
pub fn validate_limits(limits: &AppLimits, errors: &mut FieldMessages) {
    for (name, value) in limits.named() {
        if let Some(v) = value {
            if v == 0 || v > MAX_LIMIT {
                errors.push(
                    "limits",
                    format!("{name} must be a whole number from 1 to {MAX_LIMIT}, or empty for no limit."),
                );
            }
        }
    }
}

/// An app, never with its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// `app_…`
    pub id: String,
    /// Its name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when its key was last used.
    pub last_used_at: Option<String>,
    /// How many messages it submitted.
    pub messages: u64,
    /// Extra addresses it may send as.
    pub allowed_from: Vec<String>,
    /// Whether the header From is rewritten.
    pub rewrite_from: bool,
    /// Its limits.
    #[serde(default)]
    pub limits: AppLimits,
    /// What it has used of them.
    #[serde(default)]
    pub usage: AppUsage,
    /// The profile that sends its mail (docs/API.md §15).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Beyond the contract: until when (RFC 3339) the key before its last
    /// *New key* still works beside the new one; left out when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key_until: Option<String>,
    /// Beyond the contract: the last use of that key since the new one,
    /// while it still works, or refused in the last week; left out
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key_used: Option<OldKeyUse>,
    /// Beyond the contract: each client's last use of that key since the
    /// new one (newest first, at most [`OLD_KEY_CLIENTS`]), shown as
    /// `old_key_used` is: the devices still to be given the new key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub old_key_clients: Vec<OldKeyUse>,
}

/// How many clients of an app's old key are kept (the newest).
pub const OLD_KEY_CLIENTS: usize = 32;

/// A use of an app's key from before its last *New key*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldKeyUse {
    /// When (RFC 3339).
    pub at: String,
    /// The client: its address, and `(relay)` or `(HTTP)`.
    pub from: String,
    /// Whether it was refused (its time over, or ended).
    pub refused: bool,
}

/// The answer to `POST /api/apps`: the app and its key, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedApp {
    /// The app.
    pub app: App,
    /// `mr_…`, stored only as a hash.
    pub key: String,
}

/// The body of `POST /api/apps/{id}/key` (beyond the contract; none is the
/// default): how long the old key goes on working beside the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    /// Hours, up to [`MAX_KEEP_OLD_KEY_HOURS`]; 0 (a leaked key): it stops at once.
    #[serde(default)]
    pub keep_old_key_hours: u32,
}

/// The longest an old key may go on working after *New key*: a week.
pub const MAX_KEEP_OLD_KEY_HOURS: u32 = 168;

/// The answer to `POST /api/apps/{id}/key`: the app, its new key shown this
/// once, and until when the old one works (RFC 3339; `None`: it stopped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    /// The app.
    pub app: App,
    /// `mr_…`, stored only as a hash.
    pub key: String,
    /// Until when the key before it still works, if it does.
    pub old_key_until: Option<String>,
}

/// `GET /api/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppList {
    /// Every app that is not revoked.
    pub apps: Vec<App>,
}

/// Checks a new app: a name, and valid, distinct allowed addresses.
pub fn validate_new_app(app: &NewApp) -> FieldMessages {
    let mut errors = FieldMessages::new();
    let name = app.name.trim();
    if name.is_empty() {
        errors.push(
            "name",
            "Enter a name for the app, like “Scanner, 3rd floor”.",
        );
    } else if name.chars().count() > 100 || parse::has_line_break(name) {
        errors.push(
            "name",
            "The name must be one line of at most 100 characters.",
        );
    } else if name.chars().any(char::is_control) {
        errors.push(
            "name",
            "The name may not hold control characters (a tab, NUL or escape code); type it as plain text.",
        );
    } else if let Some(m) =
        parse::reordering_mark("name", name).or_else(|| parse::invisible_mark("name", name))
    {
        errors.push("name", m);
    }
    validate_allowed_from(&app.allowed_from, &mut errors);
    validate_limits(&app.limits, &mut errors);
    errors
}

/// Checks a change to an app as [`validate_new_app`] checks a new one.
pub fn validate_app_change(change: &AppChange) -> FieldMessages {
    let mut errors = FieldMessages::new();
    if let Some(name) = &change.name {
        let probe = NewApp {
            name: name.clone(),
            ..NewApp::default()
        };
        for m in validate_new_app(&probe).get("name").into_iter().flatten() {
            errors.push("name", m.clone());
        }
    }
    if let Some(list) = &change.allowed_from {
        validate_allowed_from(list, &mut errors);
    }
    if let Some(limits) = &change.limits {
        validate_limits(limits, &mut errors);
    }
    errors
}

fn validate_allowed_from(list: &[String], errors: &mut FieldMessages) {
    for (i, a) in list.iter().enumerate() {
        let a = a.trim();
        if a.starts_with('*') || a.starts_with('@') {
            // `*@contoso.com` is a valid address (`*` is an atom
            // character), but meant as a pattern it would be accepted here
            // and then refuse every message.
            errors.push(
                "allowed_from",
                format!(
                    "Address {} (“{a}”) is a pattern; allowed_from takes whole addresses, as Exchange grants Send As mailbox by mailbox. List each address the app sends from, like scans@contoso.com, or turn on rewrite_from to send everything as the settings' sender.",
                    i + 1
                ),
            );
        } else if let Err(e) = parse::check_email(a) {
            let said = match e {
                parse::EmailError::Invisible(c) => format!(
                    "Address {} holds U+{:04X}, a character that shows as nothing, which came along when it was copied; type the address again.",
                    i + 1,
                    c as u32
                ),
                parse::EmailError::Wrapped(address) => format!(
                    "Address {} (“{a}”) has more around it than the address: list only {address}.",
                    i + 1
                ),
                _ => format!(
                    "Address {} (“{a}”) is not an email address, like scans@contoso.com.",
                    i + 1
                ),
            };
            errors.push("allowed_from", said);
        } else if list[..i].iter().any(|b| b.trim().eq_ignore_ascii_case(a)) {
            errors.push(
                "allowed_from",
                format!(
                    "Address {} (“{a}”) is listed already; give each address once.",
                    i + 1
                ),
            );
        }
    }
}

/// Who may appear as the sender of an app's messages (docs/API.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromPolicy {
    /// The settings' username and sender, then the app's `allowed_from`.
    pub allowed: Vec<String>,
    /// For a trusted network's client, which has no app: only the settings'
    /// addresses, and a refusal that says so.
    pub network: bool,
}

impl FromPolicy {
    /// The policy for an app under these settings.
    pub fn new(settings: Option<&Settings>, allowed_from: &[String]) -> Self {
        let mut allowed: Vec<String> = Vec::new();
        if let Some(s) = settings {
            allowed.extend(s.username.iter().map(|u| u.trim().to_string()));
            allowed.push(s.sender_email.trim().to_string());
        }
        allowed.extend(allowed_from.iter().map(|a| a.trim().to_string()));
        allowed.retain(|a| !a.is_empty());
        let mut seen: Vec<String> = Vec::new();
        allowed.retain(|a| {
            let lower = a.to_ascii_lowercase();
            let new = !seen.contains(&lower);
            seen.push(lower);
            new
        });
        FromPolicy {
            allowed,
            network: false,
        }
    }

    /// The policy for a trusted network's client: the settings' addresses.
    pub fn for_trusted_network(settings: Option<&Settings>) -> Self {
        FromPolicy {
            network: true,
            ..FromPolicy::new(settings, &[])
        }
    }

    /// Whether `address` may send.
    pub fn allows(&self, address: &str) -> bool {
        let address = address.trim();
        self.allowed.iter().any(|a| a.eq_ignore_ascii_case(address))
    }

    /// Why `address` is refused, naming the allowed ones and the fix.
    pub fn refusal(&self, address: &str) -> String {
        let allowed = if self.allowed.is_empty() {
            "none yet (save the settings first)".to_string()
        } else {
            self.allowed.join(", ")
        };
        if self.network {
            format!("{address} may not send from a trusted network, whose devices send only as the saved settings' addresses. Allowed: {allowed}. Send as one of them, or give the device an app of its own (AUTH with the app's id and key) with this address in its allowed_from.")
        } else {
            format!("{address} may not send through Mailroom for this app. Allowed: {allowed}. Add it to the app's allowed From addresses (allowed_from) if the mailbox may send as it, or turn on rewrite_from.")
        }
    }
}

/// `POST /api/messages` as JSON (docs/API.md §7). A field it does not take
/// is refused, naming it: a `Cc` for `cc` or an `attachments` list would
/// otherwise be dropped and the message sent without them. A field given
/// as `null` is as one left out: C#, Java and TypeScript clients write
/// every field of their class, `"cc": null` for a list they did not fill,
/// and each such message was refused (400, "expected a list").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MessageRequest {
    /// `Name <address>` or an address; the settings' sender when absent.
    pub from: Option<String>,
    /// Recipients.
    #[serde(deserialize_with = "null_as_empty")]
    pub to: Vec<String>,
    /// Copies.
    #[serde(deserialize_with = "null_as_empty")]
    pub cc: Vec<String>,
    /// Blind copies: delivered, never shown.
    #[serde(deserialize_with = "null_as_empty")]
    pub bcc: Vec<String>,
    /// Where replies go.
    pub reply_to: Option<String>,
    /// The subject.
    #[serde(deserialize_with = "null_as_empty")]
    pub subject: String,
    /// The plain-text body.
    pub text: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
    /// Extra headers.
    #[serde(deserialize_with = "null_as_empty")]
    pub headers: BTreeMap<String, String>,
}

/// `null` read as the field's empty value, as if it were left out.
fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Message status (docs/API.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting to be sent.
    Queued,
    /// Being sent now.
    Sending,
    /// Accepted upstream for at least one recipient.
    Sent,
    /// Waiting to retry after a temporary failure.
    Deferred,
    /// Given up on.
    Failed,
    /// Cancelled by an administrator.
    Cancelled,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Sending,
        Status::Sent,
        Status::Deferred,
        Status::Failed,
        Status::Cancelled,
    ];

    /// Its JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Deferred => "deferred",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// The status with this name.
    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Sent | Status::Failed | Status::Cancelled)
    }
}

/// The answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// `msg_…`
    pub id: String,
    /// Its status now.
    pub status: Status,
}

/// Why delivery is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// RFC 3339.
    pub since: String,
    /// Where it failed.
    pub stage: Stage,
    /// The code, as in a test result.
    pub code: Option<String>,
    /// One sentence.
    pub message: String,
    /// The fix.
    pub hint: Option<String>,
}

/// `GET /api/queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// Messages by status.
    pub counts: BTreeMap<Status, u64>,
    /// Why delivery waits, when it does.
    pub paused: Option<Paused>,
    /// What will stop delivery soon unless someone acts (an expiring credential).
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Every profile's pause, usage and limits (docs/API.md §15).
    #[serde(default)]
    pub profiles: Vec<crate::profiles::ProfileState>,
}

/// A warning of `GET /api/queue` (docs/API.md §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// [`CREDENTIAL_EXPIRING`], [`MAILBOX_SHARED`], [`BASIC_AUTH_RETIRING`]
    /// or [`OLD_KEY_REFUSED`].
    pub code: String,
    /// One sentence for a person.
    pub message: String,
    /// What to do.
    pub hint: String,
    /// When it happens (the credential's expiry), RFC 3339.
    pub at: String,
    /// The profile whose credential it is (beyond the contract, as in the
    /// `credential.expiring` event), so the page's link opens its settings;
    /// absent for a warning about several profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// The code of the warning about a secret or certificate that expires soon.
pub const CREDENTIAL_EXPIRING: &str = "credential_expiring";

/// The code of the warning about profiles that sign in as one Exchange
/// mailbox and, together, could pass its limits.
pub const MAILBOX_SHARED: &str = "mailbox_shared";

/// The code of the warning about a profile that signs in to Exchange Online
/// with a password, which Microsoft is retiring.
pub const BASIC_AUTH_RETIRING: &str = "basic_auth_retiring";

/// The code of the warning (beyond the contract) about a device refused in
/// the last day for signing in with an app's key from before its last *New
/// key*: its mail never reaches Mailroom.
pub const OLD_KEY_REFUSED: &str = "old_key_refused";

/// The last error of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// Where.
    pub stage: Stage,
    /// The code.
    pub code: Option<String>,
    /// One sentence.
    pub message: String,
}

/// One message in lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// `msg_…`
    pub id: String,
    /// The app's id, or `trusted network ADDR`.
    pub app: Option<String>,
    /// The envelope sender.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// The subject.
    pub subject: String,
    /// Bytes.
    pub size: u64,
    /// Its status.
    pub status: Status,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Delivery attempts so far.
    pub attempt_count: u32,
    /// The last failure.
    pub last_error: Option<LastError>,
    /// The profile it goes out through (docs/API.md §15).
    #[serde(default = "default_profile")]
    pub profile: String,
}

/// `GET /api/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageList {
    /// Newest first.
    pub messages: Vec<Summary>,
    /// The cursor for the next page (`before=`).
    pub next: Option<String>,
}

/// `POST /api/messages/retry`: how many matching messages were queued
/// again, how many could not be (their body is gone, or another change came
/// first), and whether more match than one call retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retried {
    /// Queued again.
    pub retried: u64,
    /// Matched but not queued again.
    pub skipped: u64,
    /// More match than [`MAX_BULK_RETRY`]: call again.
    pub more: bool,
}

/// The most messages one `POST /api/messages/retry` queues again: each is
/// its own durable commit, so a call stays within seconds.
pub const MAX_BULK_RETRY: usize = 1_000;

/// One recipient's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    /// The address.
    pub address: String,
    /// queued, sent, deferred or failed.
    pub status: Status,
    /// The reply's code.
    pub code: Option<String>,
    /// The reply or its explanation.
    pub message: Option<String>,
}

/// One delivery attempt (docs/API.md §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// RFC 3339.
    pub at: String,
    /// Accepted upstream.
    pub ok: bool,
    /// Where it stopped.
    pub stage: Option<Stage>,
    /// The code.
    pub code: Option<String>,
    /// One sentence.
    pub message: String,
    /// The fix.
    pub hint: Option<String>,
    /// The way out it took (docs/API.md §12, §15); null for attempts made
    /// before there were two.
    #[serde(default)]
    pub transport: Option<crate::Transport>,
}

/// `GET /api/messages/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    /// The summary fields.
    #[serde(flatten)]
    pub summary: Summary,
    /// Each recipient.
    pub recipients: Vec<RecipientState>,
    /// Each attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// RFC 3339: when a `deferred` message is tried next (after a failed
    /// attempt's wait, or a quota's); null for any other status (beyond
    /// the contract, docs/API.md §9).
    #[serde(default)]
    pub next_attempt_at: Option<String>,
    /// The message's Message-ID header (`<…@…>`), which Exchange's message
    /// trace and the recipients' mail know it by; left out for a message
    /// stored before Mailroom kept it (beyond the contract, docs/API.md §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// One saved version in `GET /api/settings/history`: names, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The version the save produced.
    pub version: u64,
    /// RFC 3339.
    pub at: String,
    /// The names of the fields that changed.
    pub fields: Vec<String>,
}

/// `GET /api/settings/history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Each save.
    pub changes: Vec<Change>,
}

/// How the relay is reached, for the page's connection instructions
/// (`GET /api/connection`, an addition for the page beside the contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Connection {
    /// The relay, or `None` when it runs with `--smtp-listen off`.
    pub smtp: Option<RelayInfo>,
    /// The relay with implicit TLS (`--smtps-listen`), or `None` when off.
    #[serde(default)]
    pub smtps: Option<RelayInfo>,
}

/// Where one of the relay's listeners listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// `--smtp-hostname` when it was given: the name in the relay's certificate.
    pub hostname: Option<String>,
    /// The address it listens on; `0.0.0.0` or `::` for every address.
    pub ip: String,
    /// The port.
    pub port: u16,
    /// It listens only on a loopback address: other machines cannot reach it.
    pub loopback_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn the_from_policy_allows_the_mailbox_the_sender_and_the_apps_list() {
        let mut s = crate::fixtures::office365_oauth("smtp.office365.com", 587);
        s.sender_email = format!("{}@{}", "notifications", "contoso.com");
        let scans = format!("{}@{}", "scans", "contoso.com");
        let policy = FromPolicy::new(Some(&s), std::slice::from_ref(&scans));
        assert!(policy.allows(&crate::fixtures::mailer().to_uppercase()));
        assert!(policy.allows(&s.sender_email));
        assert!(policy.allows(&scans));
        let other = format!("{}@{}", "ceo", "contoso.com");
        assert!(!policy.allows(&other));
        let why = policy.refusal(&other);
        assert!(
            why.contains(&scans) && why.contains("allowed_from"),
            "{why}"
        );
        assert_eq!(policy.allowed.len(), 3);
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn new_apps_need_a_name_and_real_addresses() {
        let bad = NewApp {
            name: " ".into(),
            allowed_from: vec!["not an address".into()],
            rewrite_from: false,
            limits: AppLimits {
                messages_per_hour: Some(0),
                ..AppLimits::default()
            },
            ..NewApp::default()
        };
        let errors = validate_new_app(&bad);
        assert!(errors["limits"][0].starts_with("messages_per_hour must be"));
        assert!(errors["name"][0].starts_with("Enter a name"));
        assert!(errors["allowed_from"][0].contains("not an address"));
        // Patterns are named as such, not taken as an address (`*@…` is
        // one, and would refuse every message) nor called "not an address".
        for pattern in ["*@contoso.com", "@contoso.com", "*"] {
            let e = validate_new_app(&NewApp {
                allowed_from: vec![crate::fixtures::mailer(), format!(" {pattern}")],
                ..NewApp::default()
            });
            assert_eq!(e["allowed_from"].len(), 1, "{pattern}: {e:?}");
            assert!(
                e["allowed_from"][0].starts_with(&format!("Address 2 (“{pattern}”) is a pattern")),
                "{pattern}: {e:?}"
            );
            let change = validate_app_change(&AppChange {
                allowed_from: Some(vec![pattern.into()]),
                ..AppChange::default()
            });
            assert!(
                change["allowed_from"][0].contains("is a pattern"),
                "{change:?}"
            );
        }
        // An address pasted from an address book is named alone.
        let e = validate_new_app(&NewApp {
            allowed_from: vec![format!("Scans <{}>", crate::fixtures::mailer())],
            ..NewApp::default()
        });
        assert!(
            e["allowed_from"][0].ends_with(&format!("list only {}.", crate::fixtures::mailer())),
            "{e:?}"
        );
        let good = NewApp {
            name: "Scanner".into(),
            allowed_from: vec![format!("{}@{}", "scans", "contoso.com")],
            rewrite_from: true,
            limits: AppLimits::default(),
            ..NewApp::default()
        };
        assert!(validate_new_app(&good).is_empty());
        let twice = NewApp {
            allowed_from: vec![
                format!("{}@{}", "scans", "contoso.com"),
                format!("{}@{}", "Scans", "Contoso.com "),
            ],
            ..good.clone()
        };
        let e = validate_new_app(&twice);
        assert_eq!(e["allowed_from"].len(), 1, "{e:?}");
        assert!(e["allowed_from"][0].starts_with("Address 2 ("), "{e:?}");
        assert!(e["allowed_from"][0].contains("listed already"), "{e:?}");
        // Names show in the page, the Activity list and the log: no control
        // characters (an escape code could repaint a terminal reading the log).
        for name in ["a\u{0}b", "Scan\tner", "\u{1b}[31mred", "x\u{7f}"] {
            let e = validate_new_app(&NewApp {
                name: name.into(),
                ..good.clone()
            });
            assert!(
                e["name"][0].contains("control characters"),
                "{name:?}: {e:?}"
            );
            let change = validate_app_change(&AppChange {
                name: Some(name.into()),
                ..AppChange::default()
            });
            assert!(change["name"][0].contains("control characters"), "{name:?}");
        }
        // The first words of the refusal for each name, none for a name.
        let said = |name: &str| {
            let e = validate_new_app(&NewApp {
                name: name.into(),
                ..good.clone()
            });
            e.get("name").map(|m| m[0].clone()).unwrap_or_default()
        };
        // Nor marks that show the text after them in another order (the
        // Activity list would show "Invoice\u{202E}fdp.exe" as
        // "Invoiceexe.pdf"), nor characters that show as nothing
        // ("Scanner\u{200B}" looked like "Scanner", past the rule that names
        // differ, and "\u{200B}" alone was a name nobody could see).
        for (name, says) in [
            ("Invoice\u{202E}fdp.exe", "in another order"),
            ("a\u{2066}b", "in another order"),
            ("\u{202A}x", "in another order"),
            ("\u{200B}", "shows as nothing"),
            ("Scanner\u{200B}", "shows as nothing"),
            ("Scan\u{AD}ner", "shows as nothing"),
            ("\u{FEFF}x", "shows as nothing"),
            ("a\u{2060}b", "shows as nothing"),
            ("\u{3164}", "shows as nothing"),
            // Joiners that scripts and emoji need stay allowed.
            ("\u{928}\u{94d}\u{200d}", ""),
            ("Dev \u{1F469}\u{200D}\u{1F4BB}", ""),
            ("\u{645}\u{6cc}\u{200c}\u{62e}", ""),
        ] {
            let got = said(name);
            assert!(
                got.contains(says) && (says.is_empty() == got.is_empty()),
                "{name:?}: {got}"
            );
        }
        // Right-to-left names, with their ordinary marks, are names.
        assert!(validate_new_app(&NewApp {
            name: "\u{5e1}\u{5d5}\u{5e8}\u{5e7} 3\u{200f}".into(),
            ..good.clone()
        })
        .is_empty());
        assert!(validate_new_app(&NewApp {
            name: "Scanner, 3rd floor – Zürich".into(),
            ..good.clone()
        })
        .is_empty());
        // Limits come with their defaults; null is no limit.
        let parsed: NewApp = serde_json::from_str(
            r#"{"name": "x", "limits": {"messages_per_hour": 5, "queued_max": null}}"#,
        )
        .unwrap();
        assert_eq!(parsed.limits.messages_per_hour, Some(5));
        assert_eq!(parsed.limits.queued_max, None);
        let plain: NewApp = serde_json::from_str(r#"{"name": "x"}"#).unwrap();
        assert_eq!(plain.limits.queued_max, Some(10_000));
        let change = AppChange {
            name: Some(String::new()),
            limits: Some(AppLimits {
                recipients_per_day: Some(MAX_LIMIT + 1),
                ..AppLimits::default()
            }),
            ..AppChange::default()
        };
        let errors = validate_app_change(&change);
        assert!(errors.contains_key("name") && errors.contains_key("limits"));
        assert_eq!(Status::from_name("deferred"), Some(Status::Deferred));
        assert!(Status::Sent.is_final() && !Status::Deferred.is_final());
    }
}
