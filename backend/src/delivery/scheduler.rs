//! Pacing and upkeep: the shared delivery rate, and the housekeeping that
//! requeues, expires and purges.

use super::*;

impl Engine {
    /// Holds every worker for `wait` (or longer, if already held longer);
    /// with a pace shared by several servers, theirs too.
    pub(super) async fn hold(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        {
            let mut hold = self.hold_until.lock().await;
            *hold = Some(hold.map_or(until, |h| h.max(until)));
        }
        // The other servers' workers take their slots from the shared pace:
        // it starts again only after the wait, for them too.
        if self.options.rate_per_minute > 0 && self.queue.shared() {
            let now_ms = (self.clock.wall().unix_timestamp_nanos() / 1_000_000) as i64;
            let until_ms = now_ms.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
            if let Err(e) = self.queue.hold_slots(&self.profile, until_ms).await {
                tracing::warn!(error = %e, "cannot hold the shared send slots; the other servers go on");
            }
        }
    }

    /// Waits for a hold to pass and for the rate limit's next slot.
    pub(super) async fn take_slot(&self) {
        // The upstream asked every message to wait (a 429's Retry-After).
        let hold = *self.hold_until.lock().await;
        if let Some(until) = hold {
            tokio::time::sleep_until(until).await;
        }
        if self.options.rate_per_minute == 0 {
            return;
        }
        let gap = Duration::from_secs(60) / self.options.rate_per_minute;
        // Shared by all servers when the store keeps the slot (PostgreSQL).
        let now_ms = (self.clock.wall().unix_timestamp_nanos() / 1_000_000) as i64;
        match self
            .queue
            .reserve_slot(&self.profile, gap.as_millis() as i64, now_ms)
            .await
        {
            Ok(Some(at_ms)) => {
                let wait = Duration::from_millis(at_ms.saturating_sub(now_ms).max(0) as u64);
                tokio::time::sleep(wait).await;
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot reserve a shared send slot; using this server's own")
            }
        }
        let at = {
            let mut next = self.next_slot.lock().await;
            let now = tokio::time::Instant::now();
            let at = (*next).max(now);
            *next = at + gap;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// Over Microsoft Graph, takes this message's room in Graph's windows
    /// ([`pace`]): `None` when it may go now, else when it may go.
    pub(super) fn graph_room(
        &self,
        m: &Claimed,
        current: &Result<Current, String>,
    ) -> Option<tokio::time::Instant> {
        let graph = matches!(current, Ok(c) if c.settings.as_ref().is_some_and(|s| s.transport == mailroom_shared::Transport::Graph));
        if !graph {
            return None;
        }
        let bytes = pace::request_bytes(m.body.len(), m.recipients.len());
        let now = tokio::time::Instant::now();
        let at = self
            .graph_pace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(now, bytes);
        (at > now).then(|| {
            let l = self.options.graph_limits;
            tracing::info!(
                profile = %self.profile,
                wait_ms = (at - now).as_millis() as u64,
                "the next message waits for room in Microsoft Graph's limits ({} requests in {}, {} MB uploaded in {} per mailbox), so that Graph does not throttle the profile",
                l.requests,
                humantime::format_duration(l.requests_span),
                l.bytes / 1_000_000,
                humantime::format_duration(l.bytes_span),
            );
            at
        })
    }

    /// Runs `attempt` (or a wait) on message `id`, renewing its claim at
    /// half the lease while it lasts: an upstream may take longer than the
    /// lease (an SMTP session may open for a minute, then send for two), and
    /// a claim that lapsed mid-attempt let another worker or server send the
    /// message too. Once the attempt is recorded, a renewal changes nothing.
    pub(super) async fn renewing<T>(
        &self,
        id: &str,
        lease: &Lease,
        attempt: impl std::future::Future<Output = T>,
    ) -> T {
        let step = Duration::from_secs(lease.seconds.max(1) as u64) / 2;
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                out = &mut attempt => return out,
                _ = tokio::time::sleep(step) => {
                    if let Err(e) = self.queue.renew(id, unix(&*self.clock), lease).await {
                        tracing::warn!(error = %e, "cannot renew the lease of a message being sent");
                    }
                }
            }
        }
    }

    /// `credential.expiring` once a day per profile while its warning lasts
    /// (docs/API.md §13), or in the 30 days before its password for
    /// Exchange Online is turned off by default.
    async fn credential_events(&self) {
        const EVENT: &str = "credential.expiring";
        let Ok(profiles) = self.settings.store.profiles().await else {
            return;
        };
        if !self.webhooks.wants(EVENT).await {
            return;
        }
        let now = self.clock.wall();
        for profile in profiles {
            let repo = self.settings.for_profile(&profile.id);
            let Ok(current) = repo.load_current().await else {
                continue;
            };
            let Some(warning) = crate::expiry::event_warning(&current, now) else {
                continue;
            };
            // Once a day per profile; after a restart, the profile's last
            // stored event counts for the first check.
            let key = format!("{EVENT}|{}", profile.id);
            let last = self
                .webhooks
                .store()
                .last_event_unix(EVENT, crate::store::EventAbout::Profile(&profile.id))
                .await
                .ok()
                .flatten();
            if !self.webhooks.once_a_day(&key, now.unix_timestamp(), last) {
                continue;
            }
            let mut data = serde_json::to_value(&warning).unwrap_or_default();
            data["profile"] = profile.id.clone().into();
            self.webhooks.emit(EVENT, data).await;
        }
    }

    pub(super) async fn housekeeping(self, mut stop: watch::Receiver<bool>) {
        while !stopping(&stop) {
            // A bug in one pass costs that pass, not every later one (a
            // panic would end the task: nothing would expire, purge or warn
            // again until a restart).
            if let Err(what) = crate::error::caught(self.housekeep_once()).await {
                tracing::error!(panic = %what, "a housekeeping pass panicked; the next runs in a minute");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Ends the messages past `--max-queue-time`, a batch at a time, each
    /// with its `message.failed` (or, when a recipient had it, its
    /// `message.sent`) event committed with it, and counts them in
    /// `/metrics` as the attempts that end messages do.
    async fn expire(&self, cutoff: i64) {
        loop {
            let events = self.webhooks.expiry_rows().await;
            let batch = crate::store::queue::EXPIRE_BATCH;
            let ended = match self
                .queue
                .expire_some(cutoff, &self.clock.rfc3339(), batch, events)
                .await
            {
                Ok(ended) => ended,
                Err(e) => {
                    tracing::error!(error = %e, "cannot end the messages past --max-queue-time");
                    return;
                }
            };
            for m in &ended {
                let label = Metrics::app(m.app.as_deref());
                match m.status {
                    Status::Sent => {
                        self.metrics.sent.get_or_create(&label).inc();
                        let missed = self.metrics.recipients_failed.get_or_create(&label);
                        missed.inc_by(m.missed);
                    }
                    _ => {
                        self.metrics.failed.get_or_create(&label).inc();
                    }
                }
            }
            if !ended.is_empty() {
                let sent = ended.iter().filter(|m| m.status == Status::Sent).count();
                tracing::warn!(
                    n = ended.len(),
                    partly_sent = sent,
                    "messages ended after --max-queue-time"
                );
                self.webhooks.wake();
            }
            if ended.len() < batch as usize {
                return;
            }
        }
    }

    /// One pass: fails messages past `--max-queue-time`, warns of expiring
    /// credentials, and purges what `--retention` no longer keeps. Each
    /// step's error is logged and the others still run.
    pub(super) async fn housekeep_once(&self) {
        let now = self.clock.wall();
        let cutoff = now.unix_timestamp() - self.options.max_queue_time.as_secs() as i64;
        self.expire(cutoff).await;
        self.credential_events().await;
        if let Err(e) = self.queue.purge_usage(now.unix_timestamp()).await {
            tracing::error!(error = %e, "cannot purge old usage counts");
        }
        if let Err(e) = self
            .webhooks
            .store()
            .forget_old_webhook_secrets(now.unix_timestamp())
            .await
        {
            tracing::error!(error = %e, "cannot drop replaced webhook secrets past their day");
        }
        let keep_from = now - self.options.retention;
        if let Ok(keep_from) = keep_from.format(&time::format_description::well_known::Rfc3339) {
            if let Err(e) = self.queue.purge(&keep_from).await {
                tracing::error!(error = %e, "cannot purge messages past --retention");
            }
            if let Err(e) = self.webhooks.store().purge_deliveries(&keep_from).await {
                tracing::error!(error = %e, "cannot purge webhook deliveries past --retention");
            }
        }
    }
}
