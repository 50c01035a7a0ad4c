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
        let profile: Arc<str> = Arc::from(profile);
        let graph_pace = self
            .graph_paces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(profile.clone())
            .or_insert_with(|| {
                Arc::new(std::sync::Mutex::new(pace::GraphPace::new(
                    self.options.graph_limits,
                )))
            })
            .clone();
        Engine {
            settings: self.settings.for_profile(&profile),
            profile,
            graph_pace,
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
        let (provider, transport) = current
            .settings
            .as_ref()
            .map(|s| (s.provider, s.transport))
            .unwrap_or_default();
        // Over Graph, no more requests at once than Graph takes per mailbox.
        let e = row
            .limits
            .effective(
                provider,
                self.defaults.rate_per_minute,
                self.defaults.connections,
            )
            .for_transport(transport);
        Some((e, current.version))
    }

    /// Runs every profile's engine until `stop`; then waits for them.
    ///
    /// A look that panics (a bug) is logged and tried again soon: the
    /// supervisor holds every worker's stop signal, so if it ended, every
    /// profile's workers would stop with it and delivery would stay silent
    /// until a restart.
    pub(super) async fn supervise(self, mut stop: watch::Receiver<bool>) {
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut retired = Vec::new();
        loop {
            let next_look = match crate::error::caught(self.reconcile(&mut running, &mut retired))
                .await
            {
                // Profiles added or changed on another server without a
                // notice that reached this one.
                Ok(()) => Duration::from_secs(30),
                Err(what) => {
                    tracing::error!(panic = %what, "the delivery supervisor's look at the profiles panicked; it looks again in a second");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.settings_saved.notified() => {}
                _ = tokio::time::sleep(next_look) => {}
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
        #[cfg(test)]
        if tests::PANIC_NEXT_LOOK.with(|p| p.replace(false)) {
            panic!("a bug in the supervisor's look");
        }
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
                // A worker is never told to stop while its profile runs: one
                // that ended anyway died of a bug outside an attempt (those
                // inside are caught: [`Engine::guarded`]).
                let died = r.handles.iter().any(|h| h.is_finished());
                if r.effective == effective && !died {
                    if r.version != version {
                        r.version = version;
                        r.engine.settings_changed().await;
                    }
                    continue;
                }
                if died {
                    tracing::error!(profile = %row.id, "a delivery worker stopped by itself; the profile's workers start again");
                }
                // New limits, or a worker gone: the old workers finish
                // their message and stop, and new ones start.
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
        #[cfg(test)]
        tests::LOOKS.with(|n| n.set(n.get() + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{claimed_40, engine_over};
    use super::*;
    use crate::store::DEFAULT_PROFILE;

    thread_local! {
        /// The supervisor's next look panics (on this test's thread).
        pub(super) static PANIC_NEXT_LOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        /// Looks that ran to their end (on this test's thread).
        pub(super) static LOOKS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    /// What a profile sent over Graph in the last minutes still counts when
    /// its workers start again with new limits: a fresh window would let a
    /// burst through that Graph then throttles.
    #[tokio::test]
    async fn a_profiles_use_of_graphs_limits_outlives_its_workers() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, clock, webhooks, _) = claimed_40(dir.path()).await;
        let engine = engine_over(dir.path(), store, clock, webhooks);
        let limits = |messages_per_minute| Effective {
            recipients_per_day: None,
            messages_per_minute,
            connections: 3,
        };
        let first = engine.for_profile("sales", limits(30));
        let now = tokio::time::Instant::now();
        let big = first.options.graph_limits.bytes;
        assert_eq!(first.graph_pace.lock().unwrap().take(now, big), now);
        let again = engine.for_profile("sales", limits(60));
        assert!(
            again.graph_pace.lock().unwrap().take(now, 1) > now,
            "the window is the one the first workers filled"
        );
        let other = engine.for_profile("support", limits(30));
        assert_eq!(
            other.graph_pace.lock().unwrap().take(now, 1),
            now,
            "another profile has its own"
        );
    }

    /// The supervisor outlives a look that panics: it holds every worker's
    /// stop signal, so its end would stop all delivery without a word.
    #[tokio::test]
    async fn the_supervisor_outlives_a_look_that_panics() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, clock, webhooks, _) = claimed_40(dir.path()).await;
        let engine = engine_over(dir.path(), store, clock, webhooks);
        PANIC_NEXT_LOOK.with(|p| p.set(true));
        let (stop, rx) = watch::channel(false);
        let supervisor = tokio::spawn(engine.supervise(rx));
        let started = std::time::Instant::now();
        while LOOKS.with(|n| n.get()) == 0 {
            assert!(
                !supervisor.is_finished(),
                "the supervisor ended with its look"
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no look after the one that panicked"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !PANIC_NEXT_LOOK.with(|p| p.get()),
            "the first look panicked"
        );
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), supervisor)
            .await
            .expect("the supervisor stops when told")
            .expect("and ends without a panic");
    }

    /// A profile whose worker ended without being told to (a bug outside
    /// an attempt) gets new workers at the supervisor's next look, instead
    /// of delivering nothing, and saying nothing, until a restart.
    #[tokio::test]
    async fn a_worker_that_died_is_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, clock, webhooks, _) = claimed_40(dir.path()).await;
        let engine = engine_over(dir.path(), store, clock, webhooks);
        let (mut running, mut retired) = (HashMap::new(), Vec::new());
        engine.reconcile(&mut running, &mut retired).await;
        let ids = |running: &HashMap<String, Running>| -> Vec<tokio::task::Id> {
            running[DEFAULT_PROFILE]
                .handles
                .iter()
                .map(|h| h.id())
                .collect()
        };
        let first = ids(&running);
        assert!(!first.is_empty());
        // Nothing changed: the same workers go on.
        engine.reconcile(&mut running, &mut retired).await;
        assert_eq!(ids(&running), first);
        assert!(retired.is_empty());
        // One dies.
        let dying = &running[DEFAULT_PROFILE].handles[0];
        dying.abort();
        while !dying.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        engine.reconcile(&mut running, &mut retired).await;
        let now = ids(&running);
        assert_eq!(now.len(), first.len(), "as many workers as before");
        assert!(now.iter().all(|id| !first.contains(id)), "all new");
        assert!(running[DEFAULT_PROFILE]
            .handles
            .iter()
            .all(|h| !h.is_finished()));
        // The others were told to stop, and do.
        for h in retired.drain(..) {
            tokio::time::timeout(Duration::from_secs(10), h)
                .await
                .expect("a retired worker stops")
                .unwrap();
        }
        let r = running.remove(DEFAULT_PROFILE).unwrap();
        r.stop.send(true).unwrap();
        for h in r.handles {
            tokio::time::timeout(Duration::from_secs(10), h)
                .await
                .expect("a worker stops")
                .unwrap();
        }
    }
}
