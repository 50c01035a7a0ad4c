//! The delivery engine (docs/API.md §8): workers inside `mailroom serve` that
//! claim due messages and send them with the saved settings through the same
//! SMTP session code as the test email, one signed-in connection reused for
//! consecutive messages.
//!
//! Every failure is sorted into one of three kinds ([`Kind`]): temporary for
//! one message (deferred, retried with backoff), permanent for a message or a
//! recipient (failed, with the diagnosis), or not about any one message
//! (delivery pauses; nothing fails for it but `--max-queue-time`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lettre::Address;
use mailroom_shared::api::{Stage, TranscriptLine};
use mailroom_shared::sending::{Attempt, Paused, Status};
use mailroom_shared::Settings;
use tokio::sync::{mpsc, oneshot, watch, Mutex, Notify};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::queue::{AttemptRecord, Claimed, Lease, Queue, RecipientOutcome};
use crate::settings::{Current, SettingsRepo};
use crate::upstream::certificate::CertKey;
use crate::upstream::client::{OpenSession, Way};
use crate::upstream::diagnose::{self, Diagnosis, Kind};
use crate::upstream::mask::mask_transcript;
use crate::upstream::smtp::SmtpFailure;
use crate::upstream::Upstream;

mod check;
mod graph;
mod outcome;
pub mod pace;
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
/// The waits before a batch of attempts that could not be committed is
/// tried again: about half a minute in all, well within a claim's lease
/// (2 minutes), so nobody claims those messages meanwhile.
const RECORD_RETRIES: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

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
    /// How often a profile with nothing waiting signs in ([`check`]);
    /// `None`: never.
    pub sign_in_check: Option<Duration>,
    /// How long a claim lasts before another server may take the message.
    pub lease: Duration,
    /// Recipients a rolling day; `None`: no limit (docs/API.md §15).
    pub recipients_per_day: Option<u32>,
    /// Graph's throttling limits, kept ahead of time ([`pace`]).
    pub graph_limits: pace::GraphLimits,
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
    /// This profile's use of Graph's limits, shared by its workers.
    graph_pace: pace::Shared,
    /// Every profile's, kept when a profile's workers start again with new
    /// limits, so that what went out in the last minutes still counts.
    graph_paces: Arc<std::sync::Mutex<HashMap<Arc<str>, pace::Shared>>>,
    /// When a paused queue was last tried, shared so one worker probes at a time.
    last_probe: Arc<Mutex<Option<tokio::time::Instant>>>,
    /// Set when a pause was seen or made, so a success checks whether to end it.
    maybe_paused: Arc<AtomicBool>,
    /// How long one message takes to send, in nanoseconds (a moving
    /// average of the workers' attempts; 0 before the first), for
    /// [`claim_size`].
    per_message_ns: Arc<AtomicU64>,
    /// Group commit: attempts from all workers are written together.
    recorder: mpsc::UnboundedSender<ToRecord>,
    /// This process's claims.
    lease: Lease,
    /// Events for the webhooks.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The profile this engine delivers (docs/API.md §15).
    pub profile: Arc<str>,
    /// The command line's defaults for every profile.
    pub defaults: Defaults,
}

/// What the recorder is handed: an attempt to commit, or a wait for the
/// commit of every attempt handed to it before. Nearly every item is an
/// attempt, moved once through the channel: boxing it would only add an
/// allocation to each.
#[allow(clippy::large_enum_variant)]
enum ToRecord {
    Attempt(String, AttemptRecord),
    Flush(oneshot::Sender<()>),
}

/// Writes the attempts that arrive while a commit is in progress in the next
/// transaction, so the workers share one fsync instead of queueing for one each.
/// It keeps nothing once a batch is committed: a flush is answered in turn,
/// after the attempts sent before it.
async fn recorder(
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    webhooks: Arc<crate::webhooks::Webhooks>,
    mut rx: mpsc::UnboundedReceiver<ToRecord>,
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
        let (mut records, mut acks) = (Vec::new(), Vec::new());
        for item in batch {
            match item {
                ToRecord::Attempt(id, r) => records.push((id, r)),
                ToRecord::Flush(ack) => acks.push(ack),
            }
        }
        if !records.is_empty() {
            // A bug in one batch costs that batch (its messages go again
            // when their lease lapses), not every later attempt's record:
            // a panic would end the recorder, and nothing would be recorded
            // again until a restart.
            let n = records.len();
            let batch = record_batch(&*queue, &*clock, &webhooks, records);
            if let Err(what) = crate::error::caught(batch).await {
                tracing::error!(n, panic = %what, "recording a batch of attempts panicked; its messages go again later");
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// Commits one batch of attempts with their webhook events, then wakes the
/// webhook sender. A batch that cannot be committed (the database briefly
/// away: a PostgreSQL restart, a lock held too long) is tried again after
/// each of [`RECORD_RETRIES`]: dropped, its messages would stay `sending`
/// until their lease lapsed and then go out a second time. Past the last,
/// each attempt is tried alone, so one that cannot be stored does not cost
/// the others their record.
async fn record_batch(
    queue: &dyn Queue,
    clock: &dyn Clock,
    webhooks: &crate::webhooks::Webhooks,
    records: Vec<(String, AttemptRecord)>,
) {
    let rows: Arc<[_]> = webhooks
        .message_rows(&message_events(&records))
        .await
        .into();
    let has_events = !rows.is_empty();
    let records: Arc<[_]> = records.into();
    let mut waits = RECORD_RETRIES.iter();
    loop {
        let tried = queue
            .record_many(records.clone(), &clock.rfc3339(), rows.clone())
            .await;
        match (tried, waits.next()) {
            (Ok(()), _) => {
                if has_events {
                    webhooks.wake();
                }
                return;
            }
            (Err(e), Some(wait)) => {
                tracing::warn!(error = %e, n = records.len(), retry_in = ?wait, "cannot record delivery attempts; trying again");
                tokio::time::sleep(*wait).await;
            }
            (Err(e), None) => {
                tracing::error!(error = %e, n = records.len(), "cannot record delivery attempts; trying each alone");
                break;
            }
        }
    }
    for record in records.iter() {
        let one = std::slice::from_ref(record);
        let rows = webhooks.message_rows(&message_events(one)).await;
        if let Err(e) = queue
            .record_many(one.into(), &clock.rfc3339(), rows.into())
            .await
        {
            tracing::error!(error = %e, id = record.0, "cannot record a delivery attempt");
        }
    }
    webhooks.wake();
}

/// The webhook event each attempt announces, if any: a final outcome, or a
/// deferral that counts as an attempt.
fn message_events(records: &[(String, AttemptRecord)]) -> Vec<(String, &'static str)> {
    records
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
        .collect()
}

/// A worker's open connection.
struct Connection {
    open: OpenSession,
    version: u64,
    sent: u32,
}

/// Whether a task that `stop` tells should end: it was told, or nobody is
/// left to tell it (the sender dropped without a word, as when the server's
/// future is dropped), after which every wait on `stop` returns at once and
/// the task would spin.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
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
        let graph_pace = Arc::new(std::sync::Mutex::new(pace::GraphPace::new(
            options.graph_limits,
        )));
        let graph_paces = HashMap::from([(settings.profile.clone(), graph_pace.clone())]);
        Engine {
            profile: settings.profile.clone(),
            defaults,
            graph_pace,
            graph_paces: Arc::new(std::sync::Mutex::new(graph_paces)),
            webhooks,
            recorder: recorder_tx,
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
        // A server that delivers nothing checks nothing.
        if let (Some(every), true) = (self.options.sign_in_check, self.options.connections > 0) {
            let (engine, stop) = (self.clone(), stop.clone());
            handles.push(tokio::spawn(async move {
                engine.check_while_idle(every, stop).await
            }));
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

    /// A fresh SQLite store holding 40 messages claimed by one lease, with
    /// the clock and the webhooks an engine needs: the store, the claims,
    /// the clock, the webhooks and the time.
    pub(super) async fn claimed_40(
        dir: &std::path::Path,
    ) -> (
        Arc<crate::store::sqlite::SqliteStore>,
        Vec<Claimed>,
        Arc<dyn Clock>,
        Arc<crate::webhooks::Webhooks>,
        i64,
    ) {
        use crate::store::queue::NewMessage;
        use crate::store::sqlite::SqliteStore;
        let store = Arc::new(SqliteStore::open(&dir.join("m.db")).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let cipher = crate::crypto::Cipher::load_or_create_at(&dir.join("key"), true).unwrap();
        let webhooks = crate::webhooks::Webhooks::new(
            store.clone(),
            Arc::new(cipher),
            clock.clone(),
            Arc::new(Metrics::new(Default::default())),
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        let now = clock.wall().unix_timestamp();
        for i in 0..40 {
            store
                .enqueue(NewMessage {
                    id: format!("msg_{i}"),
                    app_id: None,
                    source: None,
                    mail_from: "a@b.example".into(),
                    recipients: vec!["c@d.example".into()],
                    subject: "s".into(),
                    body: b"x".to_vec(),
                    idempotency_key: None,
                    limits: None,
                    now: clock.rfc3339(),
                    now_unix: now,
                    profile: crate::store::DEFAULT_PROFILE.into(),
                    message_id_header: None,
                })
                .await
                .unwrap();
        }
        let lease = Lease {
            owner: "srv_test".into(),
            seconds: 60,
        };
        let claimed = store
            .claim(crate::store::DEFAULT_PROFILE, now, 40, &lease)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 40);
        (store, claimed, clock, Arc::new(webhooks), now)
    }

    /// A recorder over [`claimed_40`]'s store: the store, the recorder's
    /// sender, the messages' ids and the time.
    async fn recording(
        dir: &std::path::Path,
    ) -> (
        Arc<crate::store::sqlite::SqliteStore>,
        mpsc::UnboundedSender<ToRecord>,
        Vec<String>,
        i64,
    ) {
        let (store, claimed, clock, webhooks, now) = claimed_40(dir).await;
        let (tx, rx) = mpsc::unbounded_channel();
        let queue: Arc<dyn Queue> = store.clone();
        tokio::spawn(recorder(queue, clock, webhooks, rx));
        (store, tx, claimed.into_iter().map(|m| m.id).collect(), now)
    }

    /// The bodies of the webhook events stored.
    async fn event_bodies(store: &crate::store::sqlite::SqliteStore) -> Vec<String> {
        store
            .with_conn(|c| {
                let mut stmt = c.prepare("SELECT body FROM webhook_deliveries")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .await
            .unwrap()
    }

    /// A webhook that takes `event`, in `store`, seen by `webhooks` at once.
    async fn subscribe(
        store: &crate::store::sqlite::SqliteStore,
        webhooks: &crate::webhooks::Webhooks,
        event: &str,
    ) {
        use crate::store::WebhookStore;
        let hook = crate::webhooks::new_webhook(
            "https://hooks.example.com/x".into(),
            vec![event.into()],
            Default::default(),
            "2026-12-01T00:00:00Z".into(),
        );
        store
            .add_webhook(crate::store::WebhookRow {
                webhook: hook,
                secret: vec![1],
                previous: None,
            })
            .await
            .unwrap();
        webhooks.changed();
    }

    /// An engine over [`claimed_40`]'s parts, the default profile's.
    pub(super) fn engine_over(
        dir: &std::path::Path,
        store: Arc<crate::store::sqlite::SqliteStore>,
        clock: Arc<dyn Clock>,
        webhooks: Arc<crate::webhooks::Webhooks>,
    ) -> Engine {
        let cipher = crate::crypto::Cipher::load_or_create_at(&dir.join("key"), true);
        let settings = SettingsRepo {
            store: store.clone(),
            cipher: Arc::new(cipher.unwrap()),
            clock: clock.clone(),
            saved: Arc::default(),
            wake: Arc::default(),
            profile: Arc::from(crate::store::DEFAULT_PROFILE),
        };
        let tester = Upstream::new(&crate::config::TestArgs::default()).unwrap();
        let options = DeliveryOptions {
            connections: 1,
            rate_per_minute: 0,
            max_queue_time: Duration::from_secs(86_400),
            retention: Duration::from_secs(86_400),
            pause_retry: Duration::from_secs(60),
            sign_in_check: None,
            lease: Duration::from_secs(60),
            recipients_per_day: None,
            graph_limits: Default::default(),
        };
        Engine::new(
            store.clone(),
            settings,
            Arc::new(tester),
            Arc::new(Metrics::new(Default::default())),
            clock,
            webhooks,
            options,
            Defaults::default(),
        )
    }

    /// Housekeeping and the workers end when nobody is left to stop them
    /// (the sender dropped without a word, as when the server's future is
    /// dropped). Before, every wait on the closed channel returned at once:
    /// housekeeping ran its passes back to back against the database and
    /// idle workers spun, for as long as the runtime lasted.
    #[tokio::test]
    async fn tasks_end_when_nobody_is_left_to_stop_them() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, clock, webhooks, _) = claimed_40(dir.path()).await;
        let engine = engine_over(dir.path(), store, clock, webhooks);
        let (stop, rx) = watch::channel(false);
        let mut handles = engine.start_workers(&rx);
        assert_eq!(handles.len(), 1);
        handles.push(tokio::spawn(engine.clone().housekeeping(rx)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(handles.iter().all(|h| !h.is_finished()), "running");
        drop(stop);
        for h in handles {
            tokio::time::timeout(Duration::from_secs(10), h)
                .await
                .expect("a task whose stop sender is gone ends")
                .unwrap();
        }
    }

    /// A housekeeping pass that panics (here a retention too long to
    /// subtract, standing in for any bug) costs that pass only: the steps
    /// before it ran, and the task waits for its next pass instead of
    /// ending, after which nothing would expire, warn or purge again until
    /// a restart.
    #[tokio::test]
    async fn a_housekeeping_pass_that_panics_costs_that_pass_only() {
        let dir = tempfile::tempdir().unwrap();
        let (store, claimed, _, webhooks, _) = claimed_40(dir.path()).await;
        let clock = Arc::new(crate::clock::ManualClock::default());
        let mut engine = engine_over(dir.path(), store.clone(), clock.clone(), webhooks);
        store
            .release(claimed.iter().map(|m| m.id.clone()).collect(), "srv_test")
            .await
            .unwrap();
        // Two days on, every message is past its day in the queue.
        clock.advance(Duration::from_secs(2 * 86_400));
        engine.options.retention = Duration::MAX;
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(engine.housekeeping(rx));
        let started = std::time::Instant::now();
        while store.counts().await.unwrap()[&Status::Failed] < 40 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nothing expired"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !task.is_finished(),
            "housekeeping goes on after a pass panicked"
        );
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("housekeeping stops when told")
            .expect("and did not panic");
    }

    /// Messages past `--max-queue-time` are announced to the webhooks that
    /// take `message.failed`, their events stored with them, and counted in
    /// `mailroom_messages_failed_total`, in batches: before, they failed
    /// without a word, in neither.
    #[tokio::test]
    async fn expired_messages_are_announced_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, claimed, _, webhooks, _) = claimed_40(dir.path()).await;
        let clock = Arc::new(crate::clock::ManualClock::default());
        subscribe(&store, &webhooks, "message.failed").await;
        let engine = engine_over(dir.path(), store.clone(), clock.clone(), webhooks);
        store
            .release(claimed.iter().map(|m| m.id.clone()).collect(), "srv_test")
            .await
            .unwrap();
        clock.advance(Duration::from_secs(2 * 86_400));
        engine.housekeep_once().await;
        assert_eq!(store.counts().await.unwrap()[&Status::Failed], 40);
        let failed = engine.metrics.failed.get_or_create(&Metrics::app(None));
        assert_eq!(failed.get(), 40);
        let events = event_bodies(&store).await;
        assert_eq!(events.len(), 40);
        for m in &claimed {
            let quoted = format!("\"{}\"", m.id);
            let about = events.iter().filter(|e| e.contains(&quoted)).count();
            assert_eq!(about, 1, "{}: {events:?}", m.id);
        }
        assert!(events.iter().all(|e| e.contains("\"message.failed\"")));
    }

    /// Housekeeping deletes a replaced webhook secret once its day is over,
    /// and not before.
    #[tokio::test]
    async fn housekeeping_deletes_a_replaced_webhook_secret_after_its_day() {
        use crate::clock::Clock;
        use crate::store::WebhookStore;
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _, webhooks, _) = claimed_40(dir.path()).await;
        let clock = Arc::new(crate::clock::ManualClock::default());
        subscribe(&store, &webhooks, "message.sent").await;
        let id = store.webhooks().await.unwrap()[0].webhook.id.clone();
        let until = clock.wall().unix_timestamp() + 60;
        assert!(store
            .replace_webhook_secret(&id, vec![2], until)
            .await
            .unwrap());
        let engine = engine_over(dir.path(), store.clone(), clock.clone(), webhooks);
        let previous = || async { store.webhooks().await.unwrap()[0].previous.clone() };
        engine.housekeep_once().await;
        assert_eq!(previous().await, Some((vec![1], until)), "still its day");
        clock.advance(Duration::from_secs(60));
        engine.housekeep_once().await;
        assert_eq!(previous().await, None);
    }

    /// In the 30 days before Microsoft turns basic authentication for SMTP
    /// AUTH off by default, a profile signing in to Exchange Online with a
    /// password gets the daily `credential.expiring` event saying so; not
    /// earlier, and not after (a refused password then pauses delivery,
    /// which `delivery.paused` tells).
    #[tokio::test]
    async fn a_password_for_exchange_online_is_announced_in_the_month_before_its_retirement() {
        use time::Month;
        let day = |y, m, d| {
            time::Date::from_calendar_date(y, m, d)
                .unwrap()
                .midnight()
                .assume_utc()
        };
        for (wall, announced) in [
            (day(2026, Month::November, 30), false),
            (day(2026, Month::December, 7), true),
            (day(2027, Month::January, 2), false),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (store, _, _, webhooks, _) = claimed_40(dir.path()).await;
            let clock = Arc::new(crate::clock::ManualClock::at(wall));
            subscribe(&store, &webhooks, "credential.expiring").await;
            let engine = engine_over(dir.path(), store.clone(), clock, webhooks);
            let mut s = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
            s.auth_method = mailroom_shared::AuthMethod::Password;
            s.password = Some("app-password".into());
            let put = mailroom_shared::api::PutSettings {
                settings: s,
                version: 0,
            };
            crate::settings::save_settings(&engine.settings, put)
                .await
                .unwrap();
            engine.housekeep_once().await;
            let events: Vec<serde_json::Value> = event_bodies(&store)
                .await
                .iter()
                .map(|b| serde_json::from_str(b).unwrap())
                .filter(|e: &serde_json::Value| e["type"] == "credential.expiring")
                .collect();
            if !announced {
                assert_eq!(events, Vec::<serde_json::Value>::new(), "{wall}");
                continue;
            }
            assert_eq!(events.len(), 1, "{wall}: {events:?}");
            let data = &events[0]["data"];
            assert_eq!(data["code"], "basic_auth_retiring", "{data}");
            assert_eq!(data["profile"], "default", "{data}");
            assert!(
                data["message"].as_str().unwrap().contains("in 24 days"),
                "{data}"
            );
        }
    }

    /// An attempt that panics (a bug, in Mailroom or a crate it uses, on an
    /// odd message) costs its message one attempt, deferred with the
    /// reason, and not the worker: the guard returns, so the worker goes on
    /// with the next message.
    #[tokio::test]
    async fn an_attempt_that_panics_defers_its_message_and_the_worker_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (store, claimed, clock, webhooks, now) = claimed_40(dir.path()).await;
        let engine = engine_over(dir.path(), store.clone(), clock, webhooks);
        let index = 7;
        let conn = engine
            .guarded(&claimed[0].without_body(), async move {
                let recipients: Vec<u32> = vec![1, 2, 3];
                Some(recipients[index]).map(|_| unreachable!())
            })
            .await;
        assert!(conn.is_none(), "the connection is not reused");
        // A panic with a plain text reason too, on another message.
        let conn = engine
            .guarded(&claimed[1].without_body(), async {
                panic!("a plain reason")
            })
            .await;
        assert!(conn.is_none());
        engine.flush_records().await;
        for (m, reason) in [
            (
                &claimed[0],
                "index out of bounds: the len is 3 but the index is 7",
            ),
            (&claimed[1], "a plain reason"),
        ] {
            let d = store.details(&m.id).await.unwrap().unwrap();
            assert_eq!(d.summary.status, Status::Deferred, "{d:?}");
            assert_eq!(d.attempts.len(), 1, "{d:?}");
            let a = &d.attempts[0];
            assert!(!a.ok);
            assert_eq!(
                a.message,
                format!("Mailroom stopped this attempt with an internal error ({reason})."),
            );
            assert!(
                a.hint.as_deref().unwrap().contains("tried again later"),
                "{a:?}"
            );
        }
        // Deferred with backoff: not due now, due within the first backoff.
        let later = |secs| {
            let store = store.clone();
            let lease = Lease {
                owner: "srv_other".into(),
                seconds: 60,
            };
            async move {
                store
                    .claim(crate::store::DEFAULT_PROFILE, now + secs, 40, &lease)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|m| m.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(later(0).await, Vec::<String>::new(), "not due at once");
        // (The others' lease has lapsed by then too.)
        let due = later(backoff(1).as_secs() as i64 + 5).await;
        assert!(
            due.contains(&claimed[0].id) && due.contains(&claimed[1].id),
            "{due:?}"
        );
    }

    /// A panic after the attempt's outcome went to the recorder keeps that
    /// outcome. Deferring on top of a `sent` made the message go out again
    /// at its next try.
    #[tokio::test]
    async fn an_attempt_that_panics_after_its_outcome_keeps_that_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let (store, claimed, clock, webhooks, now) = claimed_40(dir.path()).await;
        let engine = engine_over(dir.path(), store.clone(), clock, webhooks);
        let m = claimed[0].without_body();
        let sent = sent_record(engine.attempt(&m, true, None, "Sent.".into()), now);
        let conn = engine
            .guarded(&m, async {
                engine.record(&m.id, sent).await;
                panic!("after the outcome")
            })
            .await;
        assert!(conn.is_none(), "the connection is not reused");
        engine.flush_records().await;
        let d = store.details(&m.id).await.unwrap().unwrap();
        assert_eq!(d.summary.status, Status::Sent, "{d:?}");
        assert_eq!(d.attempts.len(), 1, "no deferral on top: {d:?}");
        assert!(d.attempts[0].ok);
    }

    /// `attempt` recorded as `sent` to the first recipient with a `250`.
    fn sent_record(attempt: Attempt, now: i64) -> AttemptRecord {
        AttemptRecord {
            attempt,
            transcript: None,
            recipients: vec![RecipientOutcome {
                idx: 0,
                status: Status::Sent,
                code: Some("250".into()),
                message: None,
            }],
            status: Status::Sent,
            next_attempt_unix: now,
            counts: true,
            // `claimed_40`'s claims.
            owner: "srv_test".into(),
        }
    }

    /// Hands the recorder a `sent` attempt for each message, its text
    /// `words` long, then a flush; returns the flush's answer.
    fn sent_each(
        tx: &mpsc::UnboundedSender<ToRecord>,
        ids: &[String],
        now: i64,
        words: usize,
    ) -> oneshot::Receiver<()> {
        for id in ids {
            let attempt = serde_json::from_value(
                serde_json::json!({"at": "t", "ok": true, "message": "sent ".repeat(words)}),
            )
            .unwrap();
            tx.send(ToRecord::Attempt(id.clone(), sent_record(attempt, now)))
                .unwrap();
        }
        let (ack, done) = oneshot::channel();
        tx.send(ToRecord::Flush(ack)).unwrap();
        done
    }

    /// A flush answers only once every attempt handed over before it is
    /// committed (a stopping worker relies on it: nothing it sent may be
    /// left `sending`, to go out twice after a restart), and the recorder
    /// keeps nothing per attempt once it is.
    #[tokio::test]
    async fn a_flush_waits_for_the_attempts_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tx, ids, now) = recording(dir.path()).await;
        sent_each(&tx, &ids, now, 1)
            .await
            .expect("the flush is answered");
        let counts = store.counts().await.unwrap();
        assert_eq!(counts[&Status::Sent], 40, "{counts:?}");
        assert_eq!(counts[&Status::Sending], 0, "{counts:?}");
        // A flush with nothing before it is answered too.
        let (ack, done) = oneshot::channel();
        tx.send(ToRecord::Flush(ack)).unwrap();
        done.await.expect("the flush is answered");
    }

    /// An attempt handed to the recorder after its claim lapsed and another
    /// worker or server took the message leaves the message, and the event,
    /// to the claim's holder ([`Queue::record_many`]); the batch's other
    /// attempts are recorded with their events as usual.
    #[tokio::test]
    async fn a_late_attempt_raises_no_event_and_leaves_its_message_sending() {
        let dir = tempfile::tempdir().unwrap();
        let (store, claimed, clock, webhooks, now) = claimed_40(dir.path()).await;
        subscribe(&store, &webhooks, "message.sent").await;
        let others = Lease {
            owner: "srv_other".into(),
            seconds: 60,
        };
        // The claims lapse, and another server takes the first one.
        let taken = store
            .claim(crate::store::DEFAULT_PROFILE, now + 61, 1, &others)
            .await
            .unwrap();
        let ids: Vec<String> = claimed.iter().map(|m| m.id.clone()).collect();
        assert_eq!(taken.len(), 1);
        assert!(ids[..2].contains(&taken[0].id), "{} taken", taken[0].id);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(recorder(store.clone(), clock, webhooks, rx));
        sent_each(&tx, &ids[..2], now, 1).await.unwrap();
        let late = store.details(&taken[0].id).await.unwrap().unwrap();
        assert_eq!(late.summary.status, Status::Sending, "{late:?}");
        let other = ids[..2].iter().find(|id| **id != taken[0].id).unwrap();
        let on_time = store.details(other).await.unwrap().unwrap();
        assert_eq!(on_time.summary.status, Status::Sent);
        let events = event_bodies(&store).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].contains(other.as_str()), "{events:?}");
    }

    /// A batch whose recording panics (a clock whose first reading panics
    /// stands in for any bug) costs that batch only: the recorder answers
    /// the flush after it and records the next batch.
    #[tokio::test]
    async fn a_batch_that_panics_costs_that_batch_only() {
        let dir = tempfile::tempdir().unwrap();
        let (store, claimed, _, webhooks, now) = claimed_40(dir.path()).await;
        let ids: Vec<String> = claimed.into_iter().map(|m| m.id).collect();
        let clock = Arc::new(crate::clock::FaultyClock {
            panics: 1,
            ..Default::default()
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(recorder(store.clone(), clock, webhooks, rx));
        let soon = Duration::from_secs(10);
        let answered = tokio::time::timeout(soon, sent_each(&tx, &ids[..20], now, 1)).await;
        answered
            .expect("the flush is answered")
            .expect("by a recorder still running");
        assert_eq!(store.counts().await.unwrap()[&Status::Sent], 0);
        let answered = tokio::time::timeout(soon, sent_each(&tx, &ids[20..], now, 1)).await;
        answered.unwrap().unwrap();
        let counts = store.counts().await.unwrap();
        assert_eq!(
            counts[&Status::Sent],
            20,
            "the next batch is recorded: {counts:?}"
        );
    }

    /// A batch the database refuses for a while (here it is full) is kept
    /// and committed once it can be, not dropped: dropped, its messages
    /// would stay `sending` and go out again when their lease lapsed.
    #[tokio::test]
    async fn attempts_the_database_refuses_for_a_while_are_recorded_later() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tx, ids, now) = recording(dir.path()).await;
        let cap = |more: i64| {
            store.with_conn(move |c| {
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let sql = format!("PRAGMA max_page_count = {}", pages + more);
                c.query_row(&sql, [], |_| Ok(()))?;
                Ok(())
            })
        };
        cap(0).await.unwrap();
        // 40 attempts of 10 KB each cannot fit in the pages there are.
        let mut done = sent_each(&tx, &ids, now, 2_000);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            done.try_recv().is_err(),
            "not recorded while the disk is full"
        );
        let counts = store.counts().await.unwrap();
        assert_eq!(counts[&Status::Sending], 40, "{counts:?}");
        cap(100_000).await.unwrap();
        done.await.expect("the flush is answered");
        let counts = store.counts().await.unwrap();
        assert_eq!(counts[&Status::Sent], 40, "{counts:?}");
        let details = store.details("msg_7").await.unwrap().unwrap();
        assert_eq!(details.attempts.len(), 1, "recorded once");
    }

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
