//! Accepting a checked message: stored (committed before this returns, and
//! within the app's limits), delivery woken, and counted. HTTP, the relay and
//! sendmail (over HTTP) all end here.

use crate::apps::{self, AppsState};
use crate::queue::{Enqueued, NewMessage};
use crate::settings::SettingsRepo;

use super::Checked;

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
}

impl Sending {
    /// Stores a built message (committed before this returns), wakes the
    /// delivery engine and counts it. `source` names a sender without an app
    /// (`trusted network ADDR`).
    pub(crate) async fn accept(
        &self,
        app: Option<&mailroom_shared::sending::App>,
        source: Option<String>,
        built: Checked,
        idempotency_key: Option<String>,
    ) -> Result<Enqueued, crate::store::StoreError> {
        let app_id = app.map(|a| a.id.as_str());
        let clock = &self.apps.clock;
        let enqueued = self
            .apps
            .queue
            .enqueue(NewMessage {
                id: apps::new_message_id(),
                app_id: app_id.map(str::to_string),
                source,
                mail_from: built.envelope_from,
                recipients: built.recipients,
                subject: built.subject,
                body: built.body,
                idempotency_key,
                limits: app.map(|a| a.limits),
                now: clock.rfc3339(),
                now_unix: clock.wall().unix_timestamp(),
                profile: app
                    .map(|a| a.profile.clone())
                    .unwrap_or_else(|| crate::store::DEFAULT_PROFILE.to_string()),
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
