//! `GET /metrics` (docs/API.md §9): Prometheus text from the
//! `prometheus-client` crate — messages accepted, sent and failed by app,
//! the recipients a sent message did not reach,
//! queue depth by status, delivery latency, token requests, relay connections,
//! delivery attempts by transport.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::error::AppError;
use crate::queue::Queue;

/// A metric per app.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    /// The app's id (empty for other sources).
    pub app: String,
}

/// `quota_reached`'s one label: `app` or `profile`.
pub type QuotaLabel = Vec<(String, String)>;

/// The relay's certificate, by its file.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    /// The certificate file (`--smtp-tls-cert`, or the generated one).
    pub cert: LabelText,
}

/// A label value the administrator wrote (a file's path), written as the
/// text format asks: `\`, `"` and a line feed escaped. prometheus-client
/// writes label values as they are (client_rust issue 151), so one `"` in
/// a path ended the value early and Prometheus refused the whole scrape,
/// every metric with it. Ids Mailroom makes itself need none of this.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct LabelText(pub String);

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A metric per sending profile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProfileLabel {
    /// The profile's id (`default` until there are several).
    pub profile: String,
}

/// A metric per webhook.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    /// The webhook's id.
    pub webhook: String,
}

/// A metric per status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The message status.
    pub status: String,
}

/// A delivery attempt: the way out it took and what came of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `smtp`, `graph`, or `none` (no settings to send with).
    pub transport: String,
    /// `sent`, `deferred`, `failed`, `paused` or `quota`.
    pub outcome: String,
}

/// A sign-in check while idle (docs/API.md §1, `--sign-in-check`): its
/// profile and what it found.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignInCheckLabels {
    /// The profile checked.
    pub profile: String,
    /// `passed`, `refused` (the credential or mailbox), `failed` (trouble
    /// on the way), or `other` (nothing saved to check with, a temporary
    /// answer).
    pub outcome: String,
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    /// Messages acknowledged (HTTP 202, SMTP 250).
    pub accepted: Family<AppLabel, Counter>,
    /// Messages accepted upstream.
    pub sent: Family<AppLabel, Counter>,
    /// Messages failed for good.
    pub failed: Family<AppLabel, Counter>,
    /// Recipients a sent message did not reach.
    pub recipients_failed: Family<AppLabel, Counter>,
    /// Messages by status, read from the queue at each scrape.
    pub depth: Family<StatusLabel, Gauge>,
    /// Seconds from submission to delivery.
    pub latency: Histogram,
    /// Token requests sent to Entra.
    pub token_requests: Counter,
    /// When the saved secret or active certificate expires (Unix seconds),
    /// per profile; absent when unknown.
    pub credential_expiry: Family<ProfileLabel, Gauge>,
    /// When Microsoft turns off by default the password (basic
    /// authentication) a profile signs in to Exchange Online with (Unix
    /// seconds); absent for every other profile.
    pub basic_auth_retirement: Family<ProfileLabel, Gauge>,
    /// Failed webhook requests, per webhook.
    pub webhook_failures: Family<WebhookLabel, Counter>,
    /// 1 while the profile's delivery is paused.
    pub delivery_paused: Family<ProfileLabel, Gauge>,
    /// Seconds the oldest waiting (queued or deferred) message has waited.
    pub oldest_queued_age: Family<ProfileLabel, Gauge>,
    /// Connections to the SMTP relay.
    pub relay_connections: Counter,
    /// When the relay's TLS certificate in use expires (Unix seconds);
    /// absent while the relay is off.
    pub relay_certificate_expiry: Family<CertLabel, Gauge>,
    /// Failed AUTH attempts at the relay.
    pub relay_auth_failures: Counter,
    /// Sign-ins (HTTP and relay) with an app's key from before its last
    /// *New key*, while it still works, per app.
    pub old_key_sign_ins: Family<AppLabel, Counter>,
    /// Sign-ins refused with an app's key from before its last *New key*,
    /// its time over or ended, per app: a device still to be given it.
    pub old_key_refusals: Family<AppLabel, Counter>,
    /// Messages the relay acknowledged with 250.
    pub relay_accepted: Counter,
    /// Limits reached: an app's (`app`) or a profile's daily recipients (`profile`).
    pub quota_reached: Family<QuotaLabel, Counter>,
    /// Recipients counted toward a profile's rolling day.
    pub recipients_today: Family<ProfileLabel, Gauge>,
    /// Delivery attempts by way out and outcome.
    pub attempts: Family<AttemptLabels, Counter>,
    /// Sign-in checks while idle, by profile and outcome.
    pub sign_in_checks: Family<SignInCheckLabels, Counter>,
    /// Bytes of messages being received now, read from the intake's budget
    /// at each scrape.
    pub intake_bytes: Gauge,
    /// The intake's budget in bytes.
    pub intake_budget_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

impl Metrics {
    /// The metrics, registered; `token_requests` is shared with the token client.
    pub fn new(token_requests: Counter) -> Self {
        let mut registry = Registry::with_prefix("mailroom");
        let accepted = Family::<AppLabel, Counter>::default();
        let sent = Family::<AppLabel, Counter>::default();
        let failed = Family::<AppLabel, Counter>::default();
        let recipients_failed = Family::<AppLabel, Counter>::default();
        let depth = Family::<StatusLabel, Gauge>::default();
        let latency = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        let relay_connections = Counter::default();
        let relay_auth_failures = Counter::default();
        let old_key_sign_ins = Family::<AppLabel, Counter>::default();
        let old_key_refusals = Family::<AppLabel, Counter>::default();
        let relay_accepted = Counter::default();
        let quota_reached = Family::<QuotaLabel, Counter>::default();
        let recipients_today = Family::<ProfileLabel, Gauge>::default();
        let intake_bytes = Gauge::default();
        let intake_budget_bytes = Gauge::default();
        registry.register(
            "intake_bytes",
            "Bytes of messages being received now (HTTP bodies and the relay's DATA); at intake_budget_bytes, more wait",
            intake_bytes.clone(),
        );
        registry.register(
            "intake_budget_bytes",
            "The most bytes of messages received at once, over HTTP and the relay together",
            intake_budget_bytes.clone(),
        );
        registry.register(
            "profile_recipients_today",
            "Recipients of messages sent in the last 24 hours, per profile (its recipients_per_day counts these)",
            recipients_today.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        let sign_in_checks = Family::<SignInCheckLabels, Counter>::default();
        registry.register(
            "sign_in_checks",
            "Sign-ins upstream while no message of the profile waited (--sign-in-check), by outcome: passed, refused (the credential or mailbox), failed (trouble on the way) or other",
            sign_in_checks.clone(),
        );
        let credential_expiry = Family::<ProfileLabel, Gauge>::default();
        let basic_auth_retirement = Family::<ProfileLabel, Gauge>::default();
        let webhook_failures = Family::<WebhookLabel, Counter>::default();
        let delivery_paused = Family::<ProfileLabel, Gauge>::default();
        let oldest_queued_age = Family::<ProfileLabel, Gauge>::default();
        registry.register(
            "webhook_failures",
            "Webhook requests that got no 2xx answer (each retry counts)",
            webhook_failures.clone(),
        );
        registry.register(
            "delivery_paused",
            "1 while delivery is paused (a configuration or credential problem), per profile",
            delivery_paused.clone(),
        );
        registry.register(
            "oldest_queued_age_seconds",
            "How long the oldest queued or deferred message has waited, per profile",
            oldest_queued_age.clone(),
        );
        registry.register(
            "credential_expiry_timestamp_seconds",
            "When the client secret (its Expires date) or the active certificate expires, Unix seconds",
            credential_expiry.clone(),
        );
        registry.register(
            "basic_auth_retirement_timestamp_seconds",
            "When Microsoft turns off by default the basic authentication (a password) this profile signs in to Exchange Online with, Unix seconds; only for such profiles",
            basic_auth_retirement.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Delivery attempts, by way out (transport) and outcome",
            attempts.clone(),
        );
        registry.register(
            "quota_reached",
            "Limits reached: submissions refused at an app's limit (app), or messages waiting for a profile's daily recipients (profile)",
            quota_reached.clone(),
        );
        registry.register(
            "messages_accepted",
            "Messages acknowledged, by app",
            accepted.clone(),
        );
        registry.register(
            "messages_sent",
            "Messages accepted upstream, by app",
            sent.clone(),
        );
        registry.register(
            "messages_failed",
            "Messages failed for good, by app",
            failed.clone(),
        );
        registry.register(
            "recipients_failed",
            "Recipients a sent message did not reach (refused for good, or still waiting at --max-queue-time), by app; a message no recipient had counts in messages_failed",
            recipients_failed.clone(),
        );
        registry.register("queue_depth", "Messages by status", depth.clone());
        registry.register(
            "delivery_latency_seconds",
            "Seconds from submission to delivery",
            latency.clone(),
        );
        registry.register(
            "token_requests",
            "Token requests to Microsoft Entra ID",
            token_requests.clone(),
        );
        registry.register(
            "relay_connections",
            "Connections to the SMTP relay",
            relay_connections.clone(),
        );
        let relay_certificate_expiry = Family::<CertLabel, Gauge>::default();
        registry.register(
            "relay_certificate_expiry_timestamp_seconds",
            "When the SMTP relay's TLS certificate in use expires, Unix seconds (read again from its file every minute)",
            relay_certificate_expiry.clone(),
        );
        registry.register(
            "relay_auth_failures",
            "Failed AUTH attempts at the SMTP relay",
            relay_auth_failures.clone(),
        );
        registry.register(
            "app_old_key_sign_ins",
            "Sign-ins (HTTP requests and relay AUTH) with an app's key from before its last New key, while it still works: when it stops growing, every device has the new key",
            old_key_sign_ins.clone(),
        );
        registry.register(
            "app_old_key_refusals",
            "Sign-ins refused (HTTP requests and relay AUTH) with an app's key from before its last New key, its time over or ended: a device still to be given the new key, whose mail never reaches Mailroom",
            old_key_refusals.clone(),
        );
        registry.register(
            "relay_messages_accepted",
            "Messages the SMTP relay acknowledged",
            relay_accepted.clone(),
        );
        Metrics {
            registry,
            accepted,
            sent,
            failed,
            recipients_failed,
            depth,
            latency,
            token_requests,
            relay_connections,
            relay_certificate_expiry,
            relay_auth_failures,
            old_key_sign_ins,
            old_key_refusals,
            relay_accepted,
            quota_reached,
            recipients_today,
            attempts,
            sign_in_checks,
            credential_expiry,
            basic_auth_retirement,
            webhook_failures,
            delivery_paused,
            oldest_queued_age,
            intake_bytes,
            intake_budget_bytes,
        }
    }

    /// The label of `quota_reached`: `("app", id)` or `("profile", id)`.
    pub fn quota(kind: &str, id: &str) -> QuotaLabel {
        vec![(kind.to_string(), id.to_string())]
    }

    /// Counts one message of `app`.
    pub fn app(app: Option<&str>) -> AppLabel {
        AppLabel {
            app: app.unwrap_or_default().to_string(),
        }
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What the route needs.
#[derive(Clone)]
pub struct MetricsState {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The queue, for its depth.
    pub queue: Arc<dyn Queue>,
    /// The saved settings, for the credential's expiry.
    pub settings: crate::settings::SettingsRepo,
    /// The intake's budget, for what it holds.
    pub intake: crate::intake::Budget,
}

async fn scrape(State(s): State<MetricsState>) -> Result<impl IntoResponse, AppError> {
    let budget = i64::try_from(s.intake.bytes()).unwrap_or(i64::MAX);
    s.metrics.intake_budget_bytes.set(budget);
    s.metrics
        .intake_bytes
        .set(i64::try_from(s.intake.held()).unwrap_or(i64::MAX));
    for (status, n) in s.queue.counts().await? {
        s.metrics
            .depth
            .get_or_create(&StatusLabel {
                status: status.as_str().to_string(),
            })
            .set(n as i64);
    }
    let now = s.settings.clock.wall().unix_timestamp();
    let pauses = s.queue.pauses().await?;
    let profiles = s.settings.store.profiles().await?;
    // Written afresh for the profiles there are: a deleted one's series go.
    for family in [
        &s.metrics.delivery_paused,
        &s.metrics.oldest_queued_age,
        &s.metrics.recipients_today,
        &s.metrics.credential_expiry,
        &s.metrics.basic_auth_retirement,
    ] {
        family.clear();
    }
    for profile in profiles.iter() {
        let current = s.settings.for_profile(&profile.id).load_current().await?;
        let label = ProfileLabel {
            profile: profile.id.clone(),
        };
        s.metrics
            .delivery_paused
            .get_or_create(&label)
            .set(i64::from(pauses.contains_key(&profile.id)));
        let oldest = s.queue.oldest_waiting_unix(&profile.id).await?;
        s.metrics
            .oldest_queued_age
            .get_or_create(&label)
            .set(oldest.map_or(0, |t| (now - t).max(0)));
        let usage = s.queue.profile_usage(&profile.id, now).await?;
        s.metrics
            .recipients_today
            .get_or_create(&label)
            .set(usage.recipients_today as i64);
        match crate::expiry::credential_expiry(&current) {
            Some(e) => {
                s.metrics
                    .credential_expiry
                    .get_or_create(&label)
                    .set(e.at_unix);
            }
            None => {
                s.metrics.credential_expiry.remove(&label);
            }
        }
        let retiring = current
            .settings
            .as_ref()
            .and_then(crate::expiry::basic_auth_deadline);
        if let Some(at) = retiring {
            s.metrics
                .basic_auth_retirement
                .get_or_create(&label)
                .set(at);
        }
    }
    let text = s
        .metrics
        .encode()
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// `GET /metrics` (administrators only).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    MetricsState: FromRef<S>,
{
    Router::new().route("/metrics", get(scrape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_path_with_quotes_a_backslash_and_a_line_feed_keeps_the_scrape_readable() {
        let metrics = Metrics::new(Counter::default());
        let cert = LabelText("/etc/mail \"relay\"\\new\nline.pem".into());
        metrics
            .relay_certificate_expiry
            .get_or_create(&CertLabel { cert })
            .set(42);
        let text = metrics.encode().unwrap();
        let line = r#"mailroom_relay_certificate_expiry_timestamp_seconds{cert="/etc/mail \"relay\"\\new\nline.pem"} 42"#;
        assert!(text.lines().any(|l| l == line), "{text}");
    }
}
