//! One engine per sending profile (docs/API.md §15): each with its own
//! workers (its connections), pause, pace, daily count and token cache, so
//! a broken profile pauses only its own messages. The supervisor starts an
//! engine for each profile, restarts one whose limits changed, stops one
//! whose profile was deleted, and tells one whose settings were saved.

use std::collections::HashMap;

use mailroom_shared::profiles::Effective;

use super::*;

/// A profile's running engine.
struct Running {
    engine: Engine,
    effective: Effective,
    version: u64,
    stop: watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Engine {
    /// The same engine for another profile, with its own limits and its own
    /// pause, pace and probe state; the recorder and the lease are shared.
    pub(super) fn for_profile(&self, profile: &str, e: Effective) -> Engine {
        let connections = if self.defaults.connections == Some(0) {
            0
        } else {
            e.connections
        };
        Engine {
            profile: Arc::from(profile),
            settings: self.settings.for_profile(profile),
            options: DeliveryOptions {
                connections,
                rate_per_minute: e.messages_per_minute,
                recipients_per_day: e.recipients_per_day,
                ..self.options
            },
            next_slot: Arc::new(Mutex::new(tokio::time::Instant::now())),
            hold_until: Arc::new(Mutex::new(None)),
            last_probe: Arc::new(Mutex::new(None)),
            maybe_paused: Arc::new(AtomicBool::new(false)),
            ..self.clone()
        }
    }

    /// The limits in force for a profile and its settings' version.
    async fn effective(&self, row: &crate::store::ProfileRow) -> Option<(Effective, u64)> {
        let current = self.settings.for_profile(&row.id).load_current().await;
        let current = match current {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(profile = %row.id, error = %e, "cannot load a profile's settings");
                return None;
            }
        };
        let provider = current
            .settings
            .as_ref()
            .map(|s| s.provider)
            .unwrap_or_default();
        let e = row.limits.effective(
            provider,
            self.defaults.rate_per_minute,
            self.defaults.connections,
        );
        Some((e, current.version))
    }

    /// Runs every profile's engine until `stop`; then waits for them.
    pub(super) async fn supervise(self, mut stop: watch::Receiver<bool>) {
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut retired = Vec::new();
        loop {
            self.reconcile(&mut running, &mut retired).await;
            tokio::select! {
                _ = self.settings_saved.notified() => {}
                // Profiles added or changed on another server without a
                // notice that reached this one.
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = stop.changed() => break,
            }
        }
        for (_, r) in running.drain() {
            let _ = r.stop.send(true);
            retired.extend(r.handles);
        }
        for h in retired {
            let _ = h.await;
        }
    }

    async fn reconcile(
        &self,
        running: &mut HashMap<String, Running>,
        retired: &mut Vec<tokio::task::JoinHandle<()>>,
    ) {
        // Workers already stopped need no waiting for at shutdown.
        retired.retain(|h| !h.is_finished());
        let profiles = match self.settings.store.profiles().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the sending profiles");
                return;
            }
        };
        let gone: Vec<String> = running
            .keys()
            .filter(|id| !profiles.iter().any(|p| &p.id == *id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(r) = running.remove(&id) {
                tracing::info!(profile = %id, "profile deleted: its workers stop");
                let _ = r.stop.send(true);
                retired.extend(r.handles);
            }
        }
        for row in &profiles {
            let Some((effective, version)) = self.effective(row).await else {
                continue;
            };
            if let Some(r) = running.get_mut(&row.id) {
                if r.effective == effective {
                    if r.version != version {
                        r.version = version;
                        r.engine.settings_changed().await;
                    }
                    continue;
                }
                // New limits: the old workers finish their message and stop.
                let r = running.remove(&row.id).expect("present");
                let _ = r.stop.send(true);
                retired.extend(r.handles);
            }
            let engine = self.for_profile(&row.id, effective);
            let (stop, rx) = watch::channel(false);
            let handles = engine.start_workers(&rx);
            tracing::info!(
                profile = %row.id,
                connections = engine.options.connections,
                rate = engine.options.rate_per_minute,
                recipients_per_day = ?engine.options.recipients_per_day,
                "profile delivering"
            );
            engine.wake.notify_waiters();
            running.insert(
                row.id.clone(),
                Running {
                    engine,
                    effective,
                    version,
                    stop,
                    handles,
                },
            );
        }
        retired.retain(|h| !h.is_finished());
    }
}
