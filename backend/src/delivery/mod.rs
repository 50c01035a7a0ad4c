//! The delivery engine (docs/API.md §8): workers inside `mailroom serve` that
//! claim due messages and send them with the saved settings through the same
//! SMTP session code as the test email, one signed-in connection reused for
//! consecutive messages.
//!
//! Every failure is sorted into one of three kinds ([`Kind`]): temporary for
//! one message (deferred, retried with backoff), permanent for a message or a
//! recipient (failed, with the diagnosis), or not about any one message
//! (delivery pauses; nothing fails for it but `--max-queue-time`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lettre::Address;
use mailroom_shared::api::{Stage, TranscriptLine};
use mailroom_shared::sending::{Attempt, Paused, Status};
use tokio::sync::{mpsc, oneshot, watch, Mutex, Notify};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::queue::{AttemptRecord, Claimed, Lease, Queue, RecipientOutcome};
use crate::settings::{Current, SettingsRepo};
use crate::upstream::client::{OpenSession, Way};
use crate::upstream::diagnose::{self, Diagnosis, Kind};
use crate::upstream::mask::mask_transcript;
use crate::upstream::smtp::SmtpFailure;
use crate::upstream::Upstream;

mod graph;
mod outcome;
mod profiles;
mod scheduler;
mod worker;

/// The most due messages a worker claims at once when no rate limit
/// applies: one transaction for several messages, each still recorded on
/// its own ([`claim_size`]).
pub const CLAIM_BATCH: u32 = 256;
/// What a worker claims before it knows how fast the upstream answers.
const FIRST_CLAIM: u32 = 16;
/// A claimed batch should take about this long to send: long enough that
/// claiming costs little against a fast upstream, short enough that the
/// messages of other apps submitted meanwhile get their turn soon (claims
/// take apps in turn) and that a burst is shared by all the workers
/// rather than claimed whole by the first.
const CLAIM_SPAN: Duration = Duration::from_millis(100);
/// At most this many attempts share one commit.
const RECORD_BATCH: usize = 256;
/// How long the first attempt of a commit waits for others to share its
/// fsync: against a fast upstream, a commit (and the database's one
/// writer, which claims also need) for every few messages costs more than
/// the sending; an attempt's record is never an acknowledgement, so a few
/// milliseconds later costs nothing.
const RECORD_LINGER: Duration = Duration::from_millis(5);

/// How many messages to claim at once when one takes `per_message` to
/// send (`None`: not measured yet): [`CLAIM_SPAN`]'s worth, from 1 to
/// [`CLAIM_BATCH`].
pub fn claim_size(per_message: Option<Duration>) -> u32 {
    let Some(each) = per_message else {
        return FIRST_CLAIM;
    };
    let n = CLAIM_SPAN.as_nanos() / each.as_nanos().max(1);
    n.clamp(1, u128::from(CLAIM_BATCH)) as u32
}
/// How many messages one connection carries before it is closed and opened again.
pub const MESSAGES_PER_CONNECTION: u32 = 100;
/// How often a paused queue tries again by itself.
pub use crate::config::PAUSE_RETRY;
/// The longest wait between two attempts of a deferred message.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The wait before attempt `n + 1` of a deferred message: 1, 2, 4 … minutes,
/// at most an hour.
pub fn backoff(attempts: u32) -> Duration {
    let minutes = 1u64 << attempts.saturating_sub(1).min(10);
    Duration::from_secs(minutes * 60).min(MAX_BACKOFF)
}

/// The engine's settings.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryOptions {
    /// Connections (workers) at once.
    pub connections: u32,
    /// Messages a minute; 0 means no limit.
    pub rate_per_minute: u32,
    /// How long a message may wait before it fails.
    pub max_queue_time: Duration,
    /// How long the record of a final message is kept.
    pub retention: Duration,
    /// How often a paused queue tries again by itself.
    pub pause_retry: Duration,
    /// How long a claim lasts before another server may take the message.
    pub lease: Duration,
    /// Recipients a rolling day; `None`: no limit (docs/API.md §15).
    pub recipients_per_day: Option<u32>,
}

/// The command line's delivery options, the defaults of every profile's
/// own limits (docs/API.md §15).
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults {
    /// `--delivery-rate`.
    pub rate_per_minute: Option<u32>,
    /// `--delivery-connections` (0: this server delivers nothing).
    pub connections: Option<u32>,
}

/// The delivery engine.
#[derive(Clone)]
pub struct Engine {
    /// The queue.
    pub queue: Arc<dyn Queue>,
    /// The saved settings.
    pub settings: SettingsRepo,
    /// The token cache and TLS trust of the test email.
    pub tester: Arc<Upstream>,
    /// Sent, failed, latency.
    pub metrics: Arc<Metrics>,
    /// Woken by a new message or a settings save.
    pub wake: Arc<Notify>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Limits.
    pub options: DeliveryOptions,
    /// Notified (one permit) when the settings are saved.
    pub settings_saved: Arc<Notify>,
    /// When the next message may go, for the rate limit.
    next_slot: Arc<Mutex<tokio::time::Instant>>,
    /// No message goes before this: the upstream asked to wait (`Retry-After`).
    hold_until: Arc<Mutex<Option<tokio::time::Instant>>>,
    /// When a paused queue was last tried, shared so one worker probes at a time.
    last_probe: Arc<Mutex<Option<tokio::time::Instant>>>,
    /// Set when a pause was seen or made, so a success checks whether to end it.
    maybe_paused: Arc<AtomicBool>,
    /// How long one message takes to send, in nanoseconds (a moving
    /// average of the workers' attempts; 0 before the first), for
    /// [`claim_size`].
    per_message_ns: Arc<AtomicU64>,
    /// Group commit: attempts from all workers are written together.
    recorder: mpsc::UnboundedSender<Pending>,
    /// Commits of attempts not yet confirmed.
    unrecorded: Arc<std::sync::Mutex<Vec<oneshot::Receiver<()>>>>,
    /// This process's claims.
    lease: Lease,
    /// Events for the webhooks.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The profile this engine delivers (docs/API.md §15).
    pub profile: Arc<str>,
    /// The command line's defaults for every profile.
    pub defaults: Defaults,
}

/// An attempt waiting for the recorder, and who waits for its commit.
type Pending = (String, AttemptRecord, oneshot::Sender<()>);

/// Writes the attempts that arrive while a commit is in progress in the next
/// transaction, so the workers share one fsync instead of queueing for one each.
async fn recorder(
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    webhooks: Arc<crate::webhooks::Webhooks>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Not woken by each attempt meanwhile: one wake-up for the batch.
        if !rx.is_closed() {
            tokio::time::sleep(RECORD_LINGER).await;
        }
        while batch.len() < RECORD_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (records, acks): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|(id, r, ack)| ((id, r), ack)).unzip();
        let events: Vec<(String, &'static str)> = records
            .iter()
            .filter_map(|(id, r)| {
                let event = match r.status {
                    Status::Sent => "message.sent",
                    Status::Failed => "message.failed",
                    Status::Deferred if r.counts => "message.deferred",
                    _ => return None,
                };
                Some((id.clone(), event))
            })
            .collect();
        let rows = webhooks.message_rows(&events).await;
        let has_events = !rows.is_empty();
        let recorded = queue.record_many(records, &clock.rfc3339(), rows).await;
        if let Err(e) = &recorded {
            tracing::error!(error = %e, "cannot record delivery attempts");
        }
        for ack in acks {
            let _ = ack.send(());
        }
        if recorded.is_ok() && has_events {
            webhooks.wake();
        }
    }
}

/// A worker's open connection.
struct Connection {
    open: OpenSession,
    version: u64,
    sent: u32,
}

fn unix(clock: &dyn Clock) -> i64 {
    clock.wall().unix_timestamp()
}

impl Engine {
    /// An engine over these parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: Arc<dyn Queue>,
        settings: SettingsRepo,
        tester: Arc<Upstream>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        webhooks: Arc<crate::webhooks::Webhooks>,
        options: DeliveryOptions,
        defaults: Defaults,
    ) -> Self {
        let (recorder_tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(recorder(queue.clone(), clock.clone(), webhooks.clone(), rx));
        Engine {
            profile: settings.profile.clone(),
            defaults,
            webhooks,
            recorder: recorder_tx,
            unrecorded: Arc::default(),
            lease: Lease {
                owner: crate::apps::new_server_id(),
                seconds: options.lease.as_secs().max(1) as i64,
            },
            maybe_paused: Arc::new(AtomicBool::new(false)),
            per_message_ns: Arc::default(),
            queue,
            wake: settings.wake.clone(),
            settings_saved: settings.saved.clone(),
            settings,
            tester,
            metrics,
            clock,
            options,
            next_slot: Arc::new(Mutex::new(tokio::time::Instant::now())),
            hold_until: Arc::new(Mutex::new(None)),
            last_probe: Arc::new(Mutex::new(None)),
        }
    }

    /// Puts messages left `sending` by a crash back in the queue, then starts
    /// the housekeeping, the webhook sender and the supervisor, which runs
    /// each profile's workers ([`Engine::supervise`]). They stop when `stop`
    /// turns true.
    pub async fn start(self, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        match self.queue.requeue_sending(unix(&*self.clock)).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(n, "messages left sending by a crash are queued again"),
            Err(e) => tracing::error!(error = %e, "cannot requeue messages left sending"),
        }
        let mut handles = Vec::new();
        let (engine, keeping) = (self.clone(), stop.clone());
        handles.push(tokio::spawn(
            async move { engine.housekeeping(keeping).await },
        ));
        // Webhooks go out on their own task: a slow receiver never holds mail.
        let (hooks, sending) = (self.webhooks.clone(), stop.clone());
        handles.push(tokio::spawn(async move { hooks.run(sending).await }));
        handles.push(tokio::spawn(async move { self.supervise(stop).await }));
        handles
    }

    /// This engine's workers, one per connection; they stop when `stop` turns true.
    pub(super) fn start_workers(
        &self,
        stop: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        // `--delivery-connections 0`: this server takes mail; others deliver it.
        for worker in 0..self.options.connections {
            let (engine, stop) = (self.clone(), stop.clone());
            handles.push(tokio::spawn(async move { engine.work(worker, stop).await }));
        }
        handles
    }

    /// The profile's settings were saved: a pause ends at once, and the next
    /// message tries the new settings.
    pub(super) async fn settings_changed(&self) {
        *self.last_probe.lock().await = None;
        self.resume().await;
        self.wake.notify_waiters();
    }

    /// While paused, whether this worker may try a message now (one at a
    /// time, once a minute); else how long to wait.
    async fn probe_due(&self) -> Result<(), Duration> {
        let mut last = self.last_probe.lock().await;
        match *last {
            Some(t) if t.elapsed() < self.options.pause_retry => {
                Err(self.options.pause_retry - t.elapsed())
            }
            _ => {
                *last = Some(tokio::time::Instant::now());
                Ok(())
            }
        }
    }

    async fn wait(&self, stop: &mut watch::Receiver<bool>, at_most: Duration) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(at_most) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let minutes: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn claims_about_a_tenth_of_a_second_of_sending() {
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(claim_size(None), FIRST_CLAIM);
        // A fast upstream: as many as allowed.
        assert_eq!(claim_size(Some(Duration::from_micros(50))), CLAIM_BATCH);
        assert_eq!(claim_size(Some(Duration::ZERO)), CLAIM_BATCH);
        // 1 ms a message: 100 of them; 20 ms: 5; Graph's few hundred: one.
        assert_eq!(claim_size(ms(1)), 100);
        assert_eq!(claim_size(ms(20)), 5);
        assert_eq!(claim_size(ms(300)), 1);
        assert_eq!(claim_size(ms(120_000)), 1);
    }
}
