//! Accepting a checked message: stored (committed before this returns, and
//! within the app's limits), delivery woken, and counted. HTTP, the relay and
//! sendmail (over HTTP) all end here.

use crate::apps::{self, AppsState};
use crate::queue::{Enqueued, IdempotencyKey, NewMessage};
use crate::settings::SettingsRepo;

use time::format_description::well_known::{Rfc2822, Rfc3339};

use super::{Checked, Trace};

/// What submission needs.
#[derive(Clone)]
pub struct Sending {
    /// The queue and the apps.
    pub apps: AppsState,
    /// The saved settings (the default From, the From policy).
    pub settings: SettingsRepo,
    /// The largest message accepted, in bytes.
    pub max_message_size: u64,
    /// Room for messages being received, shared by HTTP and the relay.
    pub budget: super::Budget,
    /// Counts accepted messages.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// `quota.reached` when an app's limit refuses a submission.
    pub webhooks: std::sync::Arc<crate::webhooks::Webhooks>,
    /// This server's name, in each message's `Received` field.
    pub hostname: std::sync::Arc<str>,
}

impl Sending {
    /// Stores a built message (committed before this returns), wakes the
    /// delivery engine and counts it. `source` names a sender without an app
    /// (`trusted network ADDR`); `trace` is how it came, written at its top
    /// as its `Received` field.
    pub(crate) async fn accept(
        &self,
        app: Option<&mailroom_shared::sending::App>,
        source: Option<String>,
        built: Checked,
        idempotency_key: Option<IdempotencyKey>,
        trace: &Trace,
    ) -> Result<Enqueued, crate::store::StoreError> {
        let app_id = app.map(|a| a.id.as_str());
        let clock = &self.apps.clock;
        let id = apps::new_message_id();
        let wall = clock.wall();
        let date = wall.format(&Rfc2822).unwrap_or_default();
        let received = trace.field(&id, &self.hostname, &date);
        let mut body = Vec::with_capacity(received.len() + built.body.len());
        body.extend_from_slice(received.as_bytes());
        body.extend_from_slice(&built.body);
        let enqueued = self
            .apps
            .queue
            .enqueue(NewMessage {
                id,
                app_id: app_id.map(str::to_string),
                source,
                mail_from: built.envelope_from,
                recipients: built.recipients,
                subject: built.subject,
                body,
                idempotency_key,
                limits: app.map(|a| a.limits),
                now: wall.format(&Rfc3339).unwrap_or_default(),
                now_unix: wall.unix_timestamp(),
                profile: app
                    .map(|a| a.profile.clone())
                    .unwrap_or_else(|| crate::store::DEFAULT_PROFILE.to_string()),
                message_id_header: built.message_id,
            })
            .await?;
        if let Enqueued::New(_) = &enqueued {
            self.settings.wake.notify_waiters();
            self.metrics
                .accepted
                .get_or_create(&crate::metrics::Metrics::app(app_id))
                .inc();
        }
        if let (Enqueued::Limited(hit), Some(app)) = (&enqueued, app_id) {
            let until = clock.wall().unix_timestamp() + hit.retry_after as i64;
            self.webhooks
                .quota_reached(("app", app), hit.name, u64::from(hit.value), until)
                .await;
        }
        Ok(enqueued)
    }
}
