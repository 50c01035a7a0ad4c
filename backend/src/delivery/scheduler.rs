//! Pacing and upkeep: the shared delivery rate, and the housekeeping that
//! requeues, expires and purges.

use super::*;

impl Engine {
    /// Holds every worker for `wait` (or longer, if already held longer).
    pub(super) async fn hold(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        let mut hold = self.hold_until.lock().await;
        *hold = Some(hold.map_or(until, |h| h.max(until)));
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

    /// `credential.expiring` once a day per profile while its warning lasts
    /// (docs/API.md §13).
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
            let Some(warning) = crate::expiry::warnings(&current, now).into_iter().next() else {
                continue;
            };
            // Once a day per profile; after a restart, the profile's last
            // stored event counts for the first check.
            let key = format!("{EVENT}|{}", profile.id);
            let last = self
                .webhooks
                .store()
                .last_event_unix(EVENT, &profile.id)
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
        while !*stop.borrow() {
            let now = self.clock.wall();
            let cutoff = now.unix_timestamp() - self.options.max_queue_time.as_secs() as i64;
            if let Ok(n) = self.queue.expire(cutoff, &self.clock.rfc3339()).await {
                if n > 0 {
                    tracing::warn!(n, "messages failed after --max-queue-time");
                }
            }
            self.credential_events().await;
            let _ = self.queue.purge_usage(now.unix_timestamp()).await;
            let keep_from = now - self.options.retention;
            if let Ok(keep_from) = keep_from.format(&time::format_description::well_known::Rfc3339)
            {
                let _ = self.queue.purge(&keep_from).await;
                let _ = self.webhooks.store().purge_deliveries(&keep_from).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
