//! The delivery engine (docs/API.md §8): workers inside `mailroom serve` that
//! claim due messages and send them with the saved settings through the same
//! SMTP session code as the test email, one signed-in connection reused for
//! consecutive messages.
//!
//! Every failure is sorted into one of three kinds ([`Kind`]): temporary for
//! one message (deferred, retried with backoff), permanent for a message or a
//! recipient (failed, with the diagnosis), or not about any one message
//! (delivery pauses; nothing fails for it but `--max-queue-time`).

use std::sync::atomic::{AtomicBool, Ordering};
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
use crate::upstream::client::OpenSession;
use crate::upstream::diagnose::{self, Diagnosis, Kind};
use crate::upstream::mask::mask_transcript;
use crate::upstream::smtp::SmtpFailure;
use crate::upstream::Upstream;

/// How many due messages a worker claims at once when no rate limit applies:
/// one transaction for several messages, each still recorded on its own.
pub const CLAIM_BATCH: u32 = 8;
/// At most this many attempts share one commit.
const RECORD_BATCH: usize = 64;
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
    /// When a paused queue was last tried, shared so one worker probes at a time.
    last_probe: Arc<Mutex<Option<tokio::time::Instant>>>,
    /// Set when a pause was seen or made, so a success checks whether to end it.
    maybe_paused: Arc<AtomicBool>,
    /// Group commit: attempts from all workers are written together.
    recorder: mpsc::UnboundedSender<Pending>,
    /// This process's claims.
    lease: Lease,
}

/// An attempt waiting for the recorder, and who waits for its commit.
type Pending = (String, AttemptRecord, oneshot::Sender<()>);

/// Writes the attempts that arrive while a commit is in progress in the next
/// transaction, so the workers share one fsync instead of queueing for one each.
async fn recorder(
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < RECORD_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (records, acks): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|(id, r, ack)| ((id, r), ack)).unzip();
        if let Err(e) = queue.record_many(records, &clock.rfc3339()).await {
            tracing::error!(error = %e, "cannot record delivery attempts");
        }
        for ack in acks {
            let _ = ack.send(());
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
    pub fn new(
        queue: Arc<dyn Queue>,
        settings: SettingsRepo,
        tester: Arc<Upstream>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        options: DeliveryOptions,
    ) -> Self {
        let (recorder_tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(recorder(queue.clone(), clock.clone(), rx));
        Engine {
            recorder: recorder_tx,
            lease: Lease {
                owner: crate::apps::new_server_id(),
                seconds: options.lease.as_secs().max(1) as i64,
            },
            maybe_paused: Arc::new(AtomicBool::new(false)),
            queue,
            wake: settings.wake.clone(),
            settings_saved: settings.saved.clone(),
            settings,
            tester,
            metrics,
            clock,
            options,
            next_slot: Arc::new(Mutex::new(tokio::time::Instant::now())),
            last_probe: Arc::new(Mutex::new(None)),
        }
    }

    /// Puts messages left `sending` by a crash back in the queue, then starts
    /// the workers and the housekeeping. They stop when `stop` turns true.
    pub async fn start(self, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        match self.queue.requeue_sending(unix(&*self.clock)).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(n, "messages left sending by a crash are queued again"),
            Err(e) => tracing::error!(error = %e, "cannot requeue messages left sending"),
        }
        let mut handles = Vec::new();
        // `--delivery-connections 0`: this server takes mail; others deliver it.
        for worker in 0..self.options.connections {
            let (engine, stop) = (self.clone(), stop.clone());
            handles.push(tokio::spawn(async move { engine.work(worker, stop).await }));
        }
        let (engine, keeping) = (self.clone(), stop.clone());
        handles.push(tokio::spawn(
            async move { engine.housekeeping(keeping).await },
        ));
        let (engine, mut stop) = (self.clone(), stop);
        handles.push(tokio::spawn(async move {
            // Saving the settings ends a pause at once: the next message tries them.
            loop {
                tokio::select! {
                    _ = engine.settings_saved.notified() => {}
                    _ = stop.changed() => return,
                }
                *engine.last_probe.lock().await = None;
                let _ = engine.queue.set_pause(None).await;
                engine.wake.notify_waiters();
            }
        }));
        handles
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

    async fn work(self, worker: u32, mut stop: watch::Receiver<bool>) {
        let mut conn: Option<Connection> = None;
        while !*stop.borrow() {
            let paused = self.queue.pause_state().await.ok().flatten().is_some();
            if paused {
                self.maybe_paused.store(true, Ordering::Relaxed);
                if let Err(wait) = self.probe_due().await {
                    conn = None;
                    self.wait(&mut stop, wait).await;
                    continue;
                }
            }
            // With a rate limit, claim one at a time: a claimed message shows as
            // `sending`, and it should not wait for a slot while it does.
            let batch = if self.options.rate_per_minute == 0 && !paused {
                CLAIM_BATCH
            } else {
                1
            };
            let claimed = match self
                .queue
                .claim(unix(&*self.clock), batch, &self.lease)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(worker, error = %e, "cannot claim messages");
                    self.wait(&mut stop, Duration::from_secs(1)).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                if let Some(c) = conn.take() {
                    c.open.session.quit().await;
                }
                self.wait(&mut stop, Duration::from_secs(1)).await;
                continue;
            }
            // The settings are read once per batch; a save in between shows
            // as a new version, and the next batch opens a new connection.
            let current = self
                .settings
                .load_current()
                .await
                .map_err(|e| e.to_string());
            let claimed_at = tokio::time::Instant::now();
            let half_lease = Duration::from_secs(self.lease.seconds.max(0) as u64) / 2;
            let mut rest = claimed.into_iter();
            while let Some(message) = rest.next() {
                self.take_slot().await;
                // Late in a slow batch (a rate limit, a slow server), the lease
                // is renewed before the attempt; one that ran out may be
                // another server's now: leave that message to it.
                let renewed = if claimed_at.elapsed() < half_lease {
                    Ok(true)
                } else {
                    self.queue
                        .renew(&message.id, unix(&*self.clock), &self.lease)
                        .await
                };
                match renewed {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!(worker, error = %e, "cannot renew a lease");
                        let ids = std::iter::once(message.id)
                            .chain(rest.by_ref().map(|m| m.id))
                            .collect();
                        let _ = self.queue.release(ids).await;
                        break;
                    }
                }
                conn = self.deliver(message, &current, conn).await;
                // A pause or a stop ends the batch: the others go back unattempted.
                let paused =
                    conn.is_none() && self.queue.pause_state().await.ok().flatten().is_some();
                if paused || *stop.borrow() {
                    let ids = rest.by_ref().map(|m| m.id).collect();
                    if let Err(e) = self.queue.release(ids).await {
                        tracing::error!(worker, error = %e, "cannot release claimed messages");
                    }
                }
            }
        }
        if let Some(c) = conn {
            c.open.session.quit().await;
        }
    }

    /// Waits for the rate limit's next slot.
    async fn take_slot(&self) {
        if self.options.rate_per_minute == 0 {
            return;
        }
        let gap = Duration::from_secs(60) / self.options.rate_per_minute;
        // Shared by all servers when the store keeps the slot (PostgreSQL).
        let now_ms = (self.clock.wall().unix_timestamp_nanos() / 1_000_000) as i64;
        match self
            .queue
            .reserve_slot(gap.as_millis() as i64, now_ms)
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

    async fn pause(&self, d: &Diagnosis) {
        let paused = Paused {
            since: self.clock.rfc3339(),
            stage: d.stage,
            code: d.code.clone(),
            message: d.message.clone(),
            hint: Some(d.hint.clone()),
        };
        tracing::warn!(stage = d.stage.as_str(), code = ?d.code, "delivery paused: {}", d.message);
        *self.last_probe.lock().await = Some(tokio::time::Instant::now());
        self.maybe_paused.store(true, Ordering::Relaxed);
        if let Err(e) = self.queue.set_pause(Some(paused)).await {
            tracing::error!(error = %e, "cannot record the pause");
        }
    }

    /// Records an attempt; returns once it is committed.
    async fn record(&self, id: &str, r: AttemptRecord) {
        let (ack, done) = oneshot::channel();
        if self.recorder.send((id.to_string(), r, ack)).is_err() {
            tracing::error!(id, "the recorder has stopped; the attempt is not recorded");
            return;
        }
        let _ = done.await;
    }

    fn attempt(&self, ok: bool, d: Option<&Diagnosis>, message: String) -> Attempt {
        Attempt {
            at: self.clock.rfc3339(),
            ok,
            stage: d.map(|d| d.stage),
            code: d.and_then(|d| d.code.clone()),
            message: d.map(|d| d.message.clone()).unwrap_or(message),
            hint: d.map(|d| d.hint.clone()),
        }
    }

    /// The message goes back to `queued` (not counted as an attempt) and the
    /// queue pauses, with the diagnosis and transcript kept on the message.
    async fn release_and_pause(&self, m: &Claimed, d: &Diagnosis, transcript: Option<String>) {
        self.pause(d).await;
        let record = AttemptRecord {
            attempt: self.attempt(false, Some(d), String::new()),
            transcript,
            recipients: Vec::new(),
            status: Status::Queued,
            next_attempt_unix: unix(&*self.clock),
            counts: false,
        };
        self.record(&m.id, record).await;
    }

    async fn deliver(
        &self,
        m: Claimed,
        current: &Result<Current, String>,
        conn: Option<Connection>,
    ) -> Option<Connection> {
        let current = match current {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot load the settings");
                let d = Diagnosis {
                    kind: Kind::Pause,
                    stage: Stage::Connect,
                    code: None,
                    message: "Mailroom could not read its saved settings.".into(),
                    hint: "Check the server log and the database, then save the settings again."
                        .into(),
                };
                self.release_and_pause(&m, &d, None).await;
                return None;
            }
        };
        let Some(mut settings) = current.settings.clone() else {
            let d = Diagnosis {
                kind: Kind::Pause,
                stage: Stage::Connect,
                code: None,
                message: "No outgoing email settings are saved yet, so nothing can be delivered."
                    .into(),
                hint: "Configure the email server in Mailroom, test it, and save it: waiting messages go out at once."
                    .into(),
            };
            self.release_and_pause(&m, &d, None).await;
            return None;
        };
        current.fill_secrets(&mut settings);
        // A connection opened with older settings is not reused.
        let mut conn =
            conn.filter(|c| c.version == current.version && c.sent < MESSAGES_PER_CONNECTION);
        if conn.is_none() {
            match self.tester.open_session(&settings).await {
                Ok(open) => {
                    conn = Some(Connection {
                        open,
                        version: current.version,
                        sent: 0,
                    })
                }
                Err(f) => {
                    let transcript = transcript_text(&f.transcript);
                    self.release_and_pause(&m, &f.diagnosis, Some(transcript))
                        .await;
                    return None;
                }
            }
        }
        let mut c = conn?;
        c.sent += 1;
        let from: Address = match m.mail_from.parse() {
            Ok(a) => a,
            Err(e) => {
                let d = Diagnosis {
                    kind: Kind::Permanent,
                    stage: Stage::Send,
                    code: None,
                    message: format!("The envelope sender {} is not usable: {e}.", m.mail_from),
                    hint: "Submit the message again with a valid From address.".into(),
                };
                self.finish_failed(&m, &d, None).await;
                return Some(c);
            }
        };
        let to: Vec<Address> = m
            .recipients
            .iter()
            .filter_map(|(_, a)| a.parse().ok())
            .collect();
        let result = tokio::time::timeout(
            Duration::from_secs(120),
            c.open
                .session
                .send_each(&from, &to, &m.body, &mut c.open.progress),
        )
        .await
        .unwrap_or(Err(SmtpFailure::Timeout(Stage::Send)));
        match result {
            Ok(outcomes) => {
                let reusable = self.finish_sent(&m, &settings, outcomes, &mut c).await;
                reusable.then_some(c)
            }
            Err(f) => {
                let d = diagnose::smtp_failure(&f, &settings, &self.tester.timeouts());
                let transcript = Some(self.masked_transcript(&mut c));
                match d.kind {
                    Kind::Pause => {
                        self.release_and_pause(&m, &d, transcript).await;
                        None
                    }
                    Kind::Temporary => {
                        self.defer(&m, &d, transcript).await;
                        // A dropped connection is gone; a 4xx leaves it usable after RSET.
                        let alive = matches!(f, SmtpFailure::Reply { code, .. } if code != 421);
                        self.reset_or_drop(c, alive).await
                    }
                    Kind::Permanent => {
                        self.finish_failed(&m, &d, transcript).await;
                        self.reset_or_drop(c, true).await
                    }
                }
            }
        }
    }

    async fn reset_or_drop(&self, mut c: Connection, alive: bool) -> Option<Connection> {
        if alive && c.open.session.reset(&mut c.open.progress).await.is_ok() {
            Some(c)
        } else {
            None
        }
    }

    fn masked_transcript(&self, c: &mut Connection) -> String {
        let mut lines = c.open.progress.take_transcript();
        let refs: Vec<&str> = c.open.secrets.iter().map(String::as_str).collect();
        mask_transcript(&mut lines, &refs);
        transcript_text(&lines)
    }

    async fn defer(&self, m: &Claimed, d: &Diagnosis, transcript: Option<String>) {
        let attempts = m.attempt_count + 1;
        let record = AttemptRecord {
            attempt: self.attempt(false, Some(d), String::new()),
            transcript,
            recipients: Vec::new(),
            status: Status::Deferred,
            next_attempt_unix: unix(&*self.clock) + backoff(attempts).as_secs() as i64,
            counts: true,
        };
        self.record(&m.id, record).await;
    }

    async fn finish_failed(&self, m: &Claimed, d: &Diagnosis, transcript: Option<String>) {
        self.metrics
            .failed
            .get_or_create(&Metrics::app(m.app_id.as_deref()))
            .inc();
        let recipients = m
            .recipients
            .iter()
            .map(|(idx, _)| RecipientOutcome {
                idx: *idx,
                status: Status::Failed,
                code: d.code.clone(),
                message: Some(d.message.clone()),
            })
            .collect();
        let record = AttemptRecord {
            attempt: self.attempt(false, Some(d), String::new()),
            transcript,
            recipients,
            status: Status::Failed,
            next_attempt_unix: unix(&*self.clock),
            counts: true,
        };
        self.record(&m.id, record).await;
    }

    /// Records per-recipient outcomes; returns whether the connection can be
    /// used for the next message.
    async fn finish_sent(
        &self,
        m: &Claimed,
        settings: &mailroom_shared::Settings,
        outcomes: Vec<Result<(), SmtpFailure>>,
        c: &mut Connection,
    ) -> bool {
        let mut recipients = Vec::new();
        let (mut sent, mut deferred) = (0, 0);
        let mut last_failure: Option<Diagnosis> = None;
        let timeouts = self.tester.timeouts();
        for ((idx, _), outcome) in m.recipients.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    sent += 1;
                    // The upstream's own words about it: the reply to DATA.
                    let reply = c.open.progress.data_reply.clone();
                    recipients.push(RecipientOutcome {
                        idx: *idx,
                        status: Status::Sent,
                        code: reply.as_ref().map(|r| r.0.clone()),
                        message: reply.map(|r| r.1),
                    });
                }
                Err(f) => {
                    let d = diagnose::smtp_failure(&f, settings, &timeouts);
                    let status = if d.kind == Kind::Temporary {
                        deferred += 1;
                        Status::Deferred
                    } else {
                        Status::Failed
                    };
                    recipients.push(RecipientOutcome {
                        idx: *idx,
                        status,
                        code: d.code.clone(),
                        message: Some(d.message.clone()),
                    });
                    last_failure = Some(d);
                }
            }
        }
        // Sent once the server took DATA for at least one recipient.
        let (status, next) = if sent > 0 {
            (Status::Sent, unix(&*self.clock))
        } else if deferred > 0 {
            let attempts = m.attempt_count + 1;
            (
                Status::Deferred,
                unix(&*self.clock) + backoff(attempts).as_secs() as i64,
            )
        } else {
            (Status::Failed, unix(&*self.clock))
        };
        let transcript = last_failure.as_ref().map(|_| self.masked_transcript(c));
        if last_failure.is_none() {
            // Keep memory flat over a long-lived connection.
            let _ = c.open.progress.take_transcript();
        }
        let record = AttemptRecord {
            attempt: self.attempt(
                sent > 0,
                if sent > 0 {
                    None
                } else {
                    last_failure.as_ref()
                },
                format!(
                    "The server accepted the message for {sent} of {} recipients.",
                    m.recipients.len()
                ),
            ),
            transcript,
            recipients,
            status,
            next_attempt_unix: next,
            counts: true,
        };
        self.record(&m.id, record).await;
        let label = Metrics::app(m.app_id.as_deref());
        match status {
            Status::Sent => {
                self.metrics.sent.get_or_create(&label).inc();
                let waited = unix(&*self.clock) - m.created_unix;
                self.metrics.latency.observe(waited.max(0) as f64);
            }
            Status::Failed => {
                self.metrics.failed.get_or_create(&label).inc();
            }
            _ => {}
        }
        if sent > 0 && self.maybe_paused.swap(false, Ordering::Relaxed) {
            // A success ends a pause.
            if let Ok(Some(_)) = self.queue.pause_state().await {
                tracing::info!("delivery resumed");
                let _ = self.queue.set_pause(None).await;
            }
        }
        if sent == 0 {
            return c.open.session.reset(&mut c.open.progress).await.is_ok();
        }
        true
    }

    async fn housekeeping(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let now = self.clock.wall();
            let cutoff = now.unix_timestamp() - self.options.max_queue_time.as_secs() as i64;
            if let Ok(n) = self.queue.expire(cutoff, &self.clock.rfc3339()).await {
                if n > 0 {
                    tracing::warn!(n, "messages failed after --max-queue-time");
                }
            }
            let keep_from = now - self.options.retention;
            if let Ok(keep_from) = keep_from.format(&time::format_description::well_known::Rfc3339)
            {
                let _ = self.queue.purge(&keep_from).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

fn transcript_text(lines: &[TranscriptLine]) -> String {
    lines
        .iter()
        .map(|l| {
            format!(
                "{} {}\n",
                match l.dir {
                    mailroom_shared::api::Direction::Client => "C:",
                    mailroom_shared::api::Direction::Server => "S:",
                },
                l.line
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let minutes: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
