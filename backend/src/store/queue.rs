//! The durable queue and the apps that fill it (docs/API.md §6 to §9): the
//! [`Queue`] trait both stores implement, and the rules they share (limits,
//! the group commit, pages). Every state change is one transaction; a
//! message is acknowledged only after the transaction that stores it commits.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use mailroom_shared::api::Stage;
use mailroom_shared::sending::{App, Attempt, Details, Paused, Status, Summary};

use super::StoreError;

/// An app's recent submissions and waiting messages: what its limits and
/// usage are computed from, the same way for both stores. A submission reads
/// the recent seconds only when the app has a limit over a window (with the
/// default, `queued_max` alone, it counts the waiting messages and nothing
/// else).
/// A key refused because the app was given a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedKey {
    /// The app's id.
    pub app: String,
    /// Its name.
    pub name: String,
    /// When the key was replaced (RFC 3339).
    pub replaced_at: String,
    /// Until when it still works (Unix seconds); `None`: it stopped then.
    pub until: Option<i64>,
}

impl ReplacedKey {
    /// Whether the old key still signs its app in at `now` (Unix seconds).
    pub fn works_at(&self, now: i64) -> bool {
        self.until.is_some_and(|until| now < until)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Recent {
    /// Each second of the last 24 hours in which the app submitted, oldest
    /// first: (the second, messages, their recipients), from `app_usage`.
    pub messages: Vec<(i64, u64, u64)>,
    /// Messages queued, deferred or sending.
    pub waiting: u64,
}

/// How far a store counts an app's waiting messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Every one (its usage, as Apps shows it).
    All,
    /// Up to `queued_max`, for a submission: that is all its check needs,
    /// so the count stops there however long the queue (it grew with every
    /// message before, and with a paused profile's queue of 60,000 slowed
    /// submissions from about 2,300 to 283 a second).
    UpTo(u32),
    /// Not at all: the app has no `queued_max`.
    Skip,
}

/// What a batch of submissions has read of one app's usage, kept up to date
/// as the batch accepts more of its messages.
#[derive(Debug, Clone)]
pub(crate) struct Usage {
    pub recent: Recent,
    /// The recent rows were read, and how far the waiting were counted.
    pub read: (bool, Waiting),
}

impl Usage {
    /// What message `m`'s limits need read of its app.
    pub fn needs(m: &NewMessage) -> (bool, Waiting) {
        let limits = m.limits.as_ref();
        let count = match limits.and_then(|l| l.queued_max) {
            Some(max) => Waiting::UpTo(max),
            None => Waiting::Skip,
        };
        (limits.is_some_and(|l| l.has_windows()), count)
    }

    /// What to read for message `m` when `before` (what was read for an
    /// earlier message of its app) does not answer it: what `m` needs, and
    /// the recent seconds again if they were read before.
    pub fn reading(before: Option<&Usage>, m: &NewMessage) -> (bool, Waiting) {
        let (rows, count) = Usage::needs(m);
        (rows || before.is_some_and(|u| u.read.0), count)
    }

    /// Whether what was read answers message `m`'s limits: an earlier
    /// message of the batch may have had other limits (changed between the
    /// two submissions), so that less was read than `m` needs.
    pub fn answers(&self, m: &NewMessage) -> bool {
        let Some(limits) = &m.limits else {
            return true;
        };
        let rows = self.read.0 || !limits.has_windows();
        let counted = match (self.read.1, limits.queued_max) {
            (_, None) | (Waiting::All, _) => true,
            // A count that stopped short of its cap is the whole count.
            (Waiting::UpTo(a), Some(b)) => b <= a || self.recent.waiting < u64::from(a),
            (Waiting::Skip, Some(_)) => false,
        };
        rows && counted
    }

    /// Counts one more message of `rcpts` recipients, accepted at `at`.
    pub fn add(&mut self, at: i64, rcpts: u32) {
        self.recent.add(at, rcpts);
        self.recent.waiting += 1;
    }
}

/// A limit a submission would go past (docs/API.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    /// The limit's name (`messages_per_hour`, …).
    pub name: &'static str,
    /// Its value.
    pub value: u32,
    /// Seconds until the window allows the submission.
    pub retry_after: u64,
}

impl LimitHit {
    /// What the refusal says, naming the limit and its value.
    pub fn text(&self) -> String {
        format!(
            "This app has reached its limit {} ({}); try again in {} seconds, or raise the limit in Apps.",
            self.name, self.value, self.retry_after
        )
    }
}

const HOUR: i64 = 3600;

/// The most bytes of message bodies one claim takes into memory, however
/// many messages its `limit` allows (one message larger than this is
/// claimed alone). A fast upstream makes batches of up to 256 messages: of
/// 25 MiB each (a burst of scans behind small notifications), that was
/// 6.4 GiB for one connection's batch.
pub const CLAIM_BYTES: u64 = 32 * 1024 * 1024;

impl Recent {
    /// Counts one more submission of `rcpts` recipients at second `at` (in
    /// its second, kept oldest first).
    pub fn add(&mut self, at: i64, rcpts: u32) {
        let rcpts = u64::from(rcpts);
        match self.messages.binary_search_by_key(&at, |(t, _, _)| *t) {
            Ok(i) => {
                self.messages[i].1 += 1;
                self.messages[i].2 += rcpts;
            }
            Err(i) => self.messages.insert(i, (at, 1, rcpts)),
        }
    }

    /// What the app has used now.
    pub fn usage(&self, now: i64) -> mailroom_shared::sending::AppUsage {
        let since = |window: i64| {
            self.messages
                .iter()
                .filter(move |(t, _, _)| *t > now - window)
        };
        mailroom_shared::sending::AppUsage {
            messages_last_hour: since(HOUR).map(|(_, m, _)| m).sum(),
            messages_today: since(DAY).map(|(_, m, _)| m).sum(),
            recipients_today: since(DAY).map(|(_, _, r)| r).sum(),
            queued: self.waiting,
        }
    }

    /// The first limit one more message of `rcpts` recipients would pass,
    /// with the time until the oldest messages in its window leave it.
    pub fn hit(
        &self,
        limits: &mailroom_shared::sending::AppLimits,
        now: i64,
        rcpts: u32,
    ) -> Option<LimitHit> {
        if let Some(max) = limits.queued_max {
            if self.waiting + 1 > max as u64 {
                return Some(LimitHit {
                    name: "queued_max",
                    value: max,
                    retry_after: 60,
                });
            }
        }
        // (name, limit, window, what one message weighs)
        let windows = [
            ("messages_per_hour", limits.messages_per_hour, HOUR, None),
            ("messages_per_day", limits.messages_per_day, DAY, None),
            (
                "recipients_per_day",
                limits.recipients_per_day,
                DAY,
                Some(rcpts),
            ),
        ];
        for (name, max, window, weight) in windows {
            let Some(max) = max else { continue };
            let inside: Vec<(i64, u64)> = self
                .messages
                .iter()
                .filter(|(t, _, _)| *t > now - window)
                .map(|(t, m, r)| (*t, if weight.is_some() { *r } else { *m }))
                .collect();
            let this = weight.map_or(1, u64::from);
            let mut used: u64 = inside.iter().map(|(_, w)| w).sum();
            if used + this <= max as u64 {
                continue;
            }
            // Wait until enough of the oldest have left the window (a second
            // at a time: its messages leave together); a message heavier than
            // the limit itself waits a whole window.
            let mut retry_after = window as u64;
            if this <= max as u64 {
                for (t, w) in &inside {
                    used -= w;
                    if used + this <= max as u64 {
                        retry_after = (t + window - now).max(1) as u64;
                        break;
                    }
                }
            }
            return Some(LimitHit {
                name,
                value: max,
                retry_after,
            });
        }
        None
    }
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// `msg_…`
    pub id: String,
    /// The submitting app.
    pub app_id: Option<String>,
    /// Who sent it when no app did: `trusted network ADDR`.
    pub source: Option<String>,
    /// The envelope sender.
    pub mail_from: String,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// For lists.
    pub subject: String,
    /// The whole message, Bcc removed, Message-ID and Date set.
    pub body: Vec<u8>,
    /// `Idempotency-Key`, with the request it came with.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The app's limits, checked in the same transaction that stores it.
    pub limits: Option<mailroom_shared::sending::AppLimits>,
    /// RFC 3339 now.
    pub now: String,
    /// Seconds since 1970 now.
    pub now_unix: i64,
    /// The profile it goes out through (docs/API.md §15).
    pub profile: String,
    /// Its Message-ID header (`<…@…>`), for Activity and its search.
    pub message_id_header: Option<String>,
}

/// An app's `Idempotency-Key` and a digest of the request that carried it:
/// a repeat must be the same request, or it is another message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The header's value.
    pub key: String,
    /// The request's digest (hex SHA-256; see `http::submit`).
    pub request: String,
}

impl IdempotencyKey {
    /// What this request gets when its key was taken by message `id` (now
    /// at `status`), with `taken_by` the digest of that request: the message
    /// when the request is the same (or the key was taken before requests
    /// had digests), else a refusal naming it.
    pub(crate) fn answer(&self, id: String, status: Status, taken_by: Option<&str>) -> Enqueued {
        match taken_by {
            Some(digest) if digest != self.request => Enqueued::KeyReused(id),
            _ => Enqueued::Repeat(id, status),
        }
    }
}

/// What storing a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored now.
    New(String),
    /// The same idempotency key was used before, with the same request: that
    /// message, untouched.
    Repeat(String, Status),
    /// The same idempotency key was used before with another request (that
    /// message's id): nothing was stored.
    KeyReused(String),
    /// Refused: the app is at one of its limits; nothing was stored.
    Limited(LimitHit),
}

/// Who holds claimed messages, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// This server's id (random per process).
    pub owner: String,
    /// Seconds a claim lasts without renewal.
    pub seconds: i64,
}

/// A message claimed for delivery.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// `msg_…`
    pub id: String,
    /// The submitting app.
    pub app_id: Option<String>,
    /// Envelope sender.
    pub mail_from: String,
    /// The recipients still to deliver: (index, address).
    pub recipients: Vec<(u32, String)>,
    /// The message.
    pub body: Vec<u8>,
    /// Attempts before this one.
    pub attempt_count: u32,
    /// When it was submitted.
    pub created_unix: i64,
    /// The way out its attempt takes, once the engine knows (not stored).
    pub transport: Option<mailroom_shared::Transport>,
    /// The lease owner it was claimed for: its attempt's record names it.
    pub owner: String,
}

impl Claimed {
    /// The same claim without its body: what recording an attempt needs.
    pub fn without_body(&self) -> Claimed {
        Claimed {
            id: self.id.clone(),
            app_id: self.app_id.clone(),
            mail_from: self.mail_from.clone(),
            recipients: self.recipients.clone(),
            body: Vec::new(),
            attempt_count: self.attempt_count,
            created_unix: self.created_unix,
            transport: self.transport,
            owner: self.owner.clone(),
        }
    }
}

/// The outcome of one recipient in an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientOutcome {
    /// Its index.
    pub idx: u32,
    /// sent, deferred or failed.
    pub status: Status,
    /// The reply's code.
    pub code: Option<String>,
    /// The reply or its explanation.
    pub message: Option<String>,
}

/// What an attempt did to a message.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The attempt as the API shows it.
    pub attempt: Attempt,
    /// The masked transcript of a failed attempt.
    pub transcript: Option<String>,
    /// Recipients whose state changed.
    pub recipients: Vec<RecipientOutcome>,
    /// The message's new status; `queued` (its attempt paused delivery,
    /// and nothing went out) also uncounts it from its profile's day.
    pub status: Status,
    /// For `deferred` (and `queued` after a pause): when to try again.
    pub next_attempt_unix: i64,
    /// Whether this counts as an attempt (a pause does not).
    pub counts: bool,
    /// The lease owner whose claim the attempt was made under
    /// ([`Claimed::owner`]). Only while that claim holds does the record
    /// change the message; see [`Queue::record_many`].
    pub owner: String,
}

impl AttemptRecord {
    /// The message's `last_error` columns after this attempt: cleared by a
    /// success, unless it names recipients that failed for good (a stage:
    /// the message was sent to the others).
    pub fn last_error(&self) -> (Option<&'static str>, Option<String>, Option<String>) {
        let a = &self.attempt;
        if a.ok && a.stage.is_none() {
            (None, None, None)
        } else {
            (
                a.stage.map(|s| s.as_str()),
                a.code.clone(),
                Some(a.message.clone()),
            )
        }
    }

    /// What this attempt leaves counted toward the profile's day, when that
    /// is less than its claim reserved: `Some(n)`, the recipients the
    /// server took (Exchange counts those, not the ones it refused or put
    /// off; none when it paused delivery); `None` when every recipient it
    /// tried was taken.
    pub fn counted_recipients(&self) -> Option<u32> {
        if self.status == Status::Queued {
            // Its attempt paused delivery: nothing went out.
            return Some(0);
        }
        let taken = self
            .recipients
            .iter()
            .filter(|o| o.status == Status::Sent)
            .count();
        // Without recipient outcomes, the message's status says it.
        let all_taken = if self.recipients.is_empty() {
            self.status == Status::Sent
        } else {
            taken == self.recipients.len()
        };
        (!all_taken).then_some(taken as u32)
    }

    /// A sent or cancelled message keeps its record, not its body; a failed
    /// one keeps its body until retention, so it can be retried.
    pub fn keeps_body(&self) -> bool {
        !matches!(self.status, Status::Sent | Status::Cancelled)
    }
}

/// A message [`Queue::expire_some`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The message.
    pub id: String,
    /// The app that sent it.
    pub app: Option<String>,
    /// `sent` when a recipient had it, else `failed`.
    pub status: Status,
    /// Its recipients that did not get it: those it ended, and those that
    /// failed for good before.
    pub missed: u64,
}

/// The webhook deliveries that announce an expired message, by its id and
/// final status, stored with it.
pub type ExpiryEvents = Arc<dyn Fn(&str, Status) -> Vec<super::NewDelivery> + Send + Sync>;

/// The most messages one [`Queue::expire_some`] ends.
pub const EXPIRE_BATCH: u32 = 500;

/// Filters of `GET /api/messages`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this app.
    pub app: Option<String>,
    /// Addresses, subject or last error containing this, or the message
    /// of this id.
    pub q: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// Older than this message.
    pub before: Option<String>,
    /// Only this profile's.
    pub profile: Option<String>,
}

impl ListFilter {
    /// The search as typed (trimmed), for the exact id it may be.
    pub(crate) fn search_id(&self) -> Option<String> {
        self.q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_string)
    }

    /// The search as both stores match it: lower case, `LIKE … ESCAPE '\'`.
    pub(crate) fn search_pattern(&self) -> Option<String> {
        self.search_id().map(|q| like_pattern(&q.to_lowercase()))
    }
}

/// Why a retry or cancel was refused.
#[derive(Debug)]
pub enum ChangeError {
    /// No such message.
    NotFound,
    /// Not in a status that allows it.
    Status(Status),
    /// The database failed: full, unavailable or otherwise, as it said.
    Store(StoreError),
}

/// Whether a message may be retried: only a failed or deferred one that
/// still has its body.
pub(crate) fn may_retry(status: Status, has_body: bool) -> Result<(), ChangeError> {
    if matches!(status, Status::Failed | Status::Deferred) && has_body {
        Ok(())
    } else {
        Err(ChangeError::Status(status))
    }
}

/// Whether a message may be cancelled: only one still waiting.
pub(crate) fn may_cancel(status: Status) -> Result<(), ChangeError> {
    if matches!(status, Status::Queued | Status::Deferred) {
        Ok(())
    } else {
        Err(ChangeError::Status(status))
    }
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> Self {
        ChangeError::Store(e)
    }
}

/// The queue and the apps.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Stores an app with its key's hash.
    async fn create_app(&self, app: App, key_hash: [u8; 32]) -> Result<(), StoreError>;
    /// Whether a live app has this name.
    async fn app_name_taken(&self, name: &str) -> Result<bool, StoreError>;
    /// Live apps.
    async fn list_apps(&self) -> Result<Vec<App>, StoreError>;
    /// Revokes an app; false when there was none.
    async fn revoke_app(&self, id: &str) -> Result<bool, StoreError>;
    /// Ends a live app's old key now, where its last new key left it
    /// working for a while; false when there is no such app.
    async fn end_old_key(&self, id: &str) -> Result<bool, StoreError>;
    /// Keeps the last use of a live app's old key: when (Unix seconds),
    /// by which client, and whether it was refused.
    async fn note_old_key_use(
        &self,
        id: &str,
        at: i64,
        from: &str,
        refused: bool,
    ) -> Result<(), StoreError>;
    /// Gives a live app a new key (its hash): the old one stops working,
    /// at once or at `old_until` (Unix seconds); `None` when there is no
    /// such app.
    async fn replace_app_key(
        &self,
        id: &str,
        key_hash: [u8; 32],
        replaced_at: &str,
        old_until: Option<i64>,
    ) -> Result<Option<App>, StoreError>;
    /// The live app whose key before its last new key has this hash: a
    /// key that is not the current one, recognised as a replaced one (and
    /// until when it still works, if it does).
    async fn app_of_replaced_key(
        &self,
        key_hash: [u8; 32],
    ) -> Result<Option<ReplacedKey>, StoreError>;
    /// Changes a live app's name, From addresses, rewrite and limits; `None`
    /// when there is no such app.
    async fn update_app(&self, app: App) -> Result<Option<App>, StoreError>;
    /// An app's waiting messages and, with `rows`, its recent ones (for its
    /// usage and limits).
    async fn recent(&self, app_id: &str, now_unix: i64, rows: bool) -> Result<Recent, StoreError>;
    /// The live app with this key hash.
    async fn app_by_key(&self, key_hash: [u8; 32]) -> Result<Option<App>, StoreError>;
    /// A live (not revoked) app by id, with its key's hash.
    async fn app_by_id(&self, id: &str) -> Result<Option<(App, [u8; 32])>, StoreError>;
    /// Stores a message (or finds its idempotent twin) in one transaction.
    async fn enqueue(&self, m: NewMessage) -> Result<Enqueued, StoreError>;
    /// Marks up to `limit` due messages `sending` under `lease` and returns
    /// them, with at most [`CLAIM_BYTES`] of bodies in all (or one message).
    /// Due: `queued` or `deferred` and time, or `sending` under a lease that
    /// ran out (its server died).
    async fn claim(
        &self,
        profile: &str,
        now_unix: i64,
        limit: u32,
        lease: &Lease,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Extends the lease on a claimed message before it is attempted; false
    /// when the lease was lost (another server has it now).
    async fn renew(&self, id: &str, now_unix: i64, lease: &Lease) -> Result<bool, StoreError>;
    /// For a delivery rate shared by all servers: reserves the next send
    /// slot `gap_ms` after the last one and returns when it is (ms since
    /// 1970). `None`: the store keeps no shared slot (one process).
    async fn reserve_slot(
        &self,
        _profile: &str,
        _gap_ms: i64,
        _now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
    /// For a delivery rate shared by all servers: no slot is handed out
    /// before `until_ms` (an upstream's `Retry-After`, which it says to
    /// the app and mailbox, not to one server). `false`: the store keeps no
    /// shared slot (one process), and the caller's own hold is all there is.
    async fn hold_slots(&self, _profile: &str, _until_ms: i64) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Whether several servers share this store (PostgreSQL): limits that
    /// hold for all of them are kept in it.
    fn shared(&self) -> bool {
        false
    }
    /// Puts claimed messages that were not attempted back to `queued`: only
    /// those `owner` still holds (a lapsed claim another worker or server
    /// took since is theirs, and stays `sending`).
    async fn release(&self, ids: Vec<String>, owner: &str) -> Result<(), StoreError>;
    /// Records attempts and the messages' new states, and the webhook
    /// events they raise, in one transaction (an event is never lost).
    /// Shared, so a caller that must try again keeps them without a copy.
    ///
    /// An attempt whose claim lapsed and was taken by another worker or
    /// server (its [`AttemptRecord::owner`] no longer holds the message) is
    /// kept in the message's history, but leaves its state, recipients,
    /// attempt count and events to the claim's holder: written over the
    /// holder's `sending`, it made the message claimable by a third while
    /// the holder sent it, or a `deferred` over the holder's `sent` sent it
    /// again later. A lapsed claim that was only put back to wait (nobody
    /// has claimed the message since) still decides it: its `sent` keeps
    /// the message from going again.
    async fn record_many(
        &self,
        batch: Arc<[(String, AttemptRecord)]>,
        now: &str,
        events: Arc<[super::NewDelivery]>,
    ) -> Result<(), StoreError>;
    /// Records an attempt and the message's new state.
    async fn record(&self, id: &str, r: AttemptRecord, now: &str) -> Result<(), StoreError> {
        self.record_many(Arc::new([(id.to_string(), r)]), now, Arc::new([]))
            .await
    }
    /// Messages left `sending` by a crash go back to `queued`: all of them
    /// with one process (SQLite), those whose lease ran out with several.
    async fn requeue_sending(&self, now_unix: i64) -> Result<u64, StoreError>;
    /// Ends at most `limit` messages older than `cutoff_unix` that are still
    /// waiting (their waits for the profile's daily limit not counted), in
    /// one transaction with the webhook deliveries `events` gives for each:
    /// `sent` where a recipient had it, the recipients left `failed` and its
    /// body dropped (a message is `sent` once the server took DATA for one
    /// recipient, docs/API.md §8), else `failed`.
    async fn expire_some(
        &self,
        cutoff_unix: i64,
        now: &str,
        limit: u32,
        events: ExpiryEvents,
    ) -> Result<Vec<Expired>, StoreError>;
    /// Deletes the records of final messages updated before `cutoff`.
    async fn purge(&self, cutoff: &str) -> Result<u64, StoreError>;
    /// Messages by status.
    async fn counts(&self) -> Result<BTreeMap<Status, u64>, StoreError>;
    /// A page of messages, newest first, and the cursor for the next.
    async fn list(&self, f: ListFilter) -> Result<(Vec<Summary>, Option<String>), StoreError>;
    /// One message with recipients and attempts.
    async fn details(&self, id: &str) -> Result<Option<Details>, StoreError>;
    /// `failed` or `deferred` back to `queued`.
    async fn retry(&self, id: &str, now: &str, now_unix: i64) -> Result<Summary, ChangeError>;
    /// `queued` or `deferred` to `cancelled`.
    async fn cancel(&self, id: &str, now: &str) -> Result<Summary, ChangeError>;
    /// Why a profile's delivery is paused, if it is.
    async fn pause_state(&self, profile: &str) -> Result<Option<Paused>, StoreError>;
    /// Every paused profile's pause.
    async fn pauses(&self) -> Result<BTreeMap<String, Paused>, StoreError>;
    /// When a profile's oldest message still waiting was submitted, Unix seconds.
    async fn oldest_waiting_unix(&self, profile: &str) -> Result<Option<i64>, StoreError>;
    /// Pauses a profile (or updates the reason); `None` resumes.
    async fn set_pause(&self, profile: &str, p: Option<Paused>) -> Result<(), StoreError>;
    /// A profile's recipients in the 24 hours and messages in the 60 seconds before `now_unix`.
    async fn profile_usage(
        &self,
        profile: &str,
        now_unix: i64,
    ) -> Result<mailroom_shared::profiles::ProfileUsage, StoreError>;
    /// Counts messages of `recipients` each (in order) toward their
    /// profile's rolling day while `limit` allows them (for all servers
    /// together, one commit for all); answers how many were counted and,
    /// when not all, when the next one fits (Unix seconds).
    async fn take_quota(
        &self,
        profile: &str,
        messages: Vec<(String, u32)>,
        limit: Option<u32>,
        now_unix: i64,
    ) -> Result<(usize, Option<i64>), StoreError>;
    /// A claimed message waits for its profile's window until `until_unix`
    /// (`deferred`, code `quota`), with no attempt added; the wait does not
    /// count toward `--max-queue-time` ([`Queue::expire`]). `reserved`: its
    /// claim counted it toward the day and the mailbox's own limit refused
    /// its attempt, so the server took nothing and the count goes back.
    async fn quota_wait(
        &self,
        id: &str,
        until_unix: i64,
        message: &str,
        now: &str,
        now_unix: i64,
        reserved: bool,
    ) -> Result<(), StoreError>;
    /// Takes connection slot `slot` of a profile for `owner` until
    /// `until_unix` (renewing it when it is already `owner`'s); false when
    /// another server holds it.
    async fn take_connection_slot(
        &self,
        profile: &str,
        slot: u32,
        owner: &str,
        now_unix: i64,
        until_unix: i64,
    ) -> Result<bool, StoreError>;
    /// Gives a connection slot back.
    async fn free_connection_slot(
        &self,
        profile: &str,
        slot: u32,
        owner: &str,
    ) -> Result<(), StoreError>;
    /// Forgets usage older than a day before `now_unix`.
    async fn purge_usage(&self, now_unix: i64) -> Result<(), StoreError>;
}

/// The day a profile's recipients are counted over.
pub const DAY: i64 = 86_400;

/// Whether every message of `sizes` fits beside the `used` recipients the
/// rolling day already holds: then [`quota_fits`] takes them all whatever
/// the window's sends, and the stores need not read them. A profile near
/// its limit reads them; one far from it (nearly always) sums an index.
pub fn quota_fits_all(used: i64, sizes: &[u32], limit: Option<u32>) -> bool {
    limit.is_none_or(|limit| {
        used + sizes.iter().map(|s| i64::from(*s)).sum::<i64>() <= i64::from(limit)
    })
}

/// How many of messages of `sizes` recipients (in order) fit a rolling day
/// of `limit` now, given the sends inside the window (`(at, recipients)`,
/// oldest first), and when the first that does not fit will. A message
/// larger than the limit goes alone, when nothing else is in the window.
pub fn quota_fits(
    sends: &[(i64, i64)],
    sizes: &[u32],
    limit: Option<u32>,
    now: i64,
) -> (usize, Option<i64>) {
    let Some(limit) = limit.map(i64::from) else {
        return (sizes.len(), None);
    };
    let mut window: Vec<(i64, i64)> = sends.to_vec();
    let mut used: i64 = window.iter().map(|(_, r)| r).sum();
    for (n, size) in sizes.iter().map(|s| i64::from(*s)).enumerate() {
        if used + size <= limit || used == 0 {
            used += size;
            window.push((now, size));
            continue;
        }
        let mut left = used;
        for (at, r) in &window {
            left -= r;
            if left + size <= limit || left == 0 {
                return (n, Some((at + DAY).max(now + 1)));
            }
        }
        return (n, Some(now + DAY));
    }
    (sizes.len(), None)
}
/// Cuts a page fetched with one row more than `limit`; the cursor for the
/// next page when there is one.
/// The `LIKE … ESCAPE '\'` pattern both stores search with: `q` matched
/// anywhere, its `\`, `%` and `_` taken literally.
pub(crate) fn like_pattern(q: &str) -> String {
    let escaped = q
        .trim()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

pub(crate) fn page_end(rows: &mut Vec<Summary>, limit: u32) -> Option<String> {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|s| s.id.clone())
    } else {
        None
    }
}

/// Round robin over groups of due messages (each app's, oldest first, as
/// `(seq, next_attempt_unix)`): the first `limit` in turn order, each with
/// its turn: every group's first, then every group's second, and so on;
/// within a turn, the oldest first.
pub(crate) fn in_turn(groups: Vec<Vec<(i64, i64)>>, limit: usize) -> Vec<(i64, i64)> {
    let mut all: Vec<(i64, i64, i64)> = groups
        .into_iter()
        .flat_map(|g| {
            g.into_iter()
                .take(limit)
                .enumerate()
                .map(|(turn, (seq, next))| (turn as i64, next, seq))
        })
        .collect();
    all.sort_unstable();
    all.into_iter()
        .take(limit)
        .map(|(turn, _, seq)| (seq, turn))
        .collect()
}

/// One group's due messages, oldest first, from its queued and its
/// deferred ones (each oldest first).
pub(crate) fn merged(mut queued: Vec<(i64, i64)>, deferred: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    queued.extend(deferred);
    queued.sort_unstable_by_key(|(seq, next)| (*next, *seq));
    queued
}

/// A stored status name as a [`Status`].
pub(crate) fn status_of(text: &str) -> Status {
    Status::from_name(text).unwrap_or(Status::Queued)
}

/// A stored stage name as a [`Stage`].
pub(crate) fn stage_of(text: &str) -> Option<Stage> {
    Stage::from_name(text)
}

/// Stored limits; apps made before limits existed get the defaults.
pub(crate) fn limits_of(json: Option<&str>) -> mailroom_shared::sending::AppLimits {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// Limits as stored.
pub(crate) fn limits_json(limits: &mailroom_shared::sending::AppLimits) -> String {
    serde_json::to_string(limits).unwrap_or_else(|_| "{}".into())
}

/// A profile's limits as stored.
pub(crate) fn profile_limits_json(limits: &mailroom_shared::profiles::ProfileLimits) -> String {
    serde_json::to_string(limits).unwrap_or_else(|_| "{}".into())
}

/// Whether a profile with these live apps and waiting messages may be
/// deleted (docs/API.md §15).
pub(crate) fn may_delete_profile(apps: i64, waiting: i64) -> Result<(), super::ProfileDelete> {
    if apps > 0 {
        Err(super::ProfileDelete::Apps(apps as u64))
    } else if waiting > 0 {
        Err(super::ProfileDelete::Waiting(waiting as u64))
    } else {
        Ok(())
    }
}

/// One submission waiting for the group commit.
struct Pending {
    message: Box<NewMessage>,
    reply: tokio::sync::oneshot::Sender<Result<Enqueued, StoreError>>,
}

/// The most submissions in one transaction.
const MAX_GROUP: usize = 256;

/// What a store does with a group of submissions: store them in one
/// transaction, each with its own outcome (`sqlite::enqueue_batch` for SQLite,
/// `PgStore::enqueue_batch` for PostgreSQL).
pub(crate) type GroupFn = std::sync::Arc<
    dyn Fn(
            Vec<NewMessage>,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<Vec<Result<Enqueued, StoreError>>, StoreError>,
                    > + Send,
            >,
        > + Send
        + Sync,
>;

/// Takes submissions as they come and stores all that wait in one
/// transaction, as Postfix's cleanup and PostgreSQL's commit_delay batch their
/// fsyncs: a lone submission is committed at once, a crowd shares commits.
pub(crate) struct Committer {
    tx: tokio::sync::mpsc::UnboundedSender<Pending>,
}

impl Committer {
    /// Starts the committer on this runtime.
    fn start(store: GroupFn) -> Committer {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(p) => group.push(p),
                        Err(_) => break,
                    }
                }
                let (messages, replies): (Vec<_>, Vec<_>) =
                    group.into_iter().map(|p| (*p.message, p.reply)).unzip();
                match store(messages).await {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(outcome);
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Committer { tx }
    }

    /// Stores `m` through the group committer in `cell`, started with
    /// `group` at the first submission; each is answered only after its
    /// transaction commits. When the committer's runtime is gone (a store
    /// kept across test runtimes), `m` is committed alone with `group`.
    pub(crate) async fn enqueue(
        cell: &std::sync::OnceLock<Committer>,
        group: impl Fn() -> GroupFn,
        m: NewMessage,
    ) -> Result<Enqueued, StoreError> {
        let committer = cell.get_or_init(|| Committer::start(group()));
        match committer.submit(m).await {
            Ok(result) => result,
            Err(m) => group()(vec![*m])
                .await?
                .pop()
                .unwrap_or(Err(StoreError::Db("nothing stored".into()))),
        }
    }

    /// Hands a message over and waits for its commit; gives it back when the
    /// committer is gone.
    async fn submit(&self, m: NewMessage) -> Result<Result<Enqueued, StoreError>, Box<NewMessage>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if let Err(e) = self.tx.send(Pending {
            message: Box::new(m),
            reply,
        }) {
            return Err(e.0.message);
        }
        Ok(answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Db("the committer stopped".into()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_leaves_counted_the_recipients_the_server_took() {
        let outcome = |idx, status| RecipientOutcome {
            idx,
            status,
            code: None,
            message: None,
        };
        let record = |status, recipients| AttemptRecord {
            attempt: Attempt {
                at: "t".into(),
                ok: status == Status::Sent,
                stage: None,
                code: None,
                message: String::new(),
                hint: None,
                transport: None,
            },
            transcript: None,
            recipients,
            status,
            next_attempt_unix: 0,
            counts: true,
            owner: "o".into(),
        };
        use Status::*;
        let all = vec![outcome(0, Sent), outcome(1, Sent)];
        assert_eq!(record(Sent, all).counted_recipients(), None);
        assert_eq!(record(Sent, vec![]).counted_recipients(), None);
        let partly = vec![outcome(0, Deferred), outcome(1, Sent)];
        assert_eq!(record(Deferred, partly).counted_recipients(), Some(1));
        assert_eq!(record(Deferred, vec![]).counted_recipients(), Some(0));
        assert_eq!(record(Failed, vec![]).counted_recipients(), Some(0));
        let refused = vec![outcome(0, Failed)];
        assert_eq!(record(Sent, refused).counted_recipients(), Some(0));
        // A pause: nothing went out.
        assert_eq!(record(Queued, vec![]).counted_recipients(), Some(0));
    }

    /// When the window's total and the batch fit the limit, the stores skip
    /// reading the window's sends: the answer must be the one reading them
    /// gives, and the limit itself still fits.
    #[test]
    fn a_batch_that_fits_beside_the_total_is_taken_whole() {
        assert!(quota_fits_all(9_990, &[5, 5], Some(10_000)));
        assert!(!quota_fits_all(9_990, &[5, 6], Some(10_000)));
        assert!(quota_fits_all(i64::from(u32::MAX), &[u32::MAX], None));
        // Over it, the sends are read: alone in an empty window, a message
        // larger than the limit still goes.
        assert!(!quota_fits_all(0, &[9], Some(5)));
        assert_eq!(quota_fits(&[], &[9], Some(5), 0), (1, None));
        proptest::proptest!(|(
            sends in proptest::collection::vec((0i64..86_400, 1i64..60), 0..40),
            sizes in proptest::collection::vec(1u32..60, 1..20),
            limit in 1u32..1_500,
        )| {
            let mut sends = sends;
            sends.sort();
            let used = sends.iter().map(|(_, r)| r).sum();
            let now = 86_400;
            if quota_fits_all(used, &sizes, Some(limit)) {
                proptest::prop_assert_eq!(
                    quota_fits(&sends, &sizes, Some(limit), now),
                    (sizes.len(), None)
                );
            }
        });
    }

    #[test]
    fn due_messages_are_taken_in_turn_per_group() {
        // Group A has a backlog of old messages; B and C one new message each.
        let a = vec![(1, 10), (2, 11), (3, 12), (4, 13)];
        let b = vec![(9, 50)];
        let c = merged(vec![(8, 60)], vec![(7, 40)]);
        assert_eq!(c, vec![(7, 40), (8, 60)], "oldest first across statuses");
        let picked = in_turn(vec![a, b, c], 5);
        assert_eq!(
            picked,
            vec![(1, 0), (7, 0), (9, 0), (2, 1), (8, 1)],
            "every group's first, oldest first, then the seconds"
        );
        assert!(in_turn(Vec::new(), 5).is_empty());
    }

    /// A batch reads an app's usage again only when a message needs more
    /// than was read for an earlier one of the same app.
    #[test]
    fn a_batch_reads_again_what_a_later_message_needs() {
        use mailroom_shared::sending::AppLimits;
        let with = |limits: Option<AppLimits>| NewMessage {
            id: "msg_1".into(),
            app_id: Some("app_1".into()),
            source: None,
            mail_from: String::new(),
            recipients: Vec::new(),
            subject: String::new(),
            body: Vec::new(),
            idempotency_key: None,
            limits,
            now: String::new(),
            now_unix: 0,
            profile: "default".into(),
            message_id_header: None,
        };
        let none = AppLimits {
            queued_max: None,
            ..AppLimits::default()
        };
        let queued = |n| AppLimits {
            queued_max: Some(n),
            ..none
        };
        let hourly = AppLimits {
            messages_per_hour: Some(5),
            ..none
        };
        assert_eq!(Usage::needs(&with(None)), (false, Waiting::Skip));
        assert_eq!(
            Usage::needs(&with(Some(queued(3)))),
            (false, Waiting::UpTo(3))
        );
        assert_eq!(Usage::needs(&with(Some(hourly))), (true, Waiting::Skip));
        let read = |rows, count, waiting| Usage {
            recent: Recent {
                messages: Vec::new(),
                waiting,
            },
            read: (rows, count),
        };
        // Counted up to 3 and stopped there: 3 or less is answered, 8 not.
        let stopped = read(false, Waiting::UpTo(3), 3);
        assert!(stopped.answers(&with(Some(queued(3)))));
        assert!(stopped.answers(&with(Some(queued(2)))));
        assert!(!stopped.answers(&with(Some(queued(8)))));
        // A count short of its cap is the whole count.
        assert!(read(false, Waiting::UpTo(3), 2).answers(&with(Some(queued(8)))));
        // Nothing counted, or no rows read, answers only what needs neither.
        let bare = read(false, Waiting::Skip, 0);
        assert!(bare.answers(&with(None)));
        assert!(bare.answers(&with(Some(none))));
        assert!(!bare.answers(&with(Some(queued(1)))));
        assert!(!bare.answers(&with(Some(hourly))));
        assert!(read(true, Waiting::All, 9).answers(&with(Some(queued(100)))));
    }

    #[test]
    fn limits_name_the_first_one_passed_and_when_it_allows_again() {
        use mailroom_shared::sending::AppLimits;
        let now = 1_000_000;
        // Three messages: 50 min, 30 min and 2 h ago, of 10, 20 and 5 recipients.
        let recent = Recent {
            messages: vec![(now - 7200, 1, 5), (now - 3000, 1, 10), (now - 1800, 1, 20)],
            waiting: 3,
        };
        let u = recent.usage(now);
        assert_eq!(
            (
                u.messages_last_hour,
                u.messages_today,
                u.recipients_today,
                u.queued
            ),
            (2, 3, 35, 3)
        );
        let none = AppLimits {
            queued_max: None,
            ..AppLimits::default()
        };
        assert_eq!(recent.hit(&none, now, 1), None);
        let hourly = AppLimits {
            messages_per_hour: Some(2),
            ..none
        };
        // The oldest of the hour leaves it in 600 s.
        assert_eq!(
            recent.hit(&hourly, now, 1),
            Some(LimitHit {
                name: "messages_per_hour",
                value: 2,
                retry_after: 600
            })
        );
        let rcpts = AppLimits {
            recipients_per_day: Some(40),
            ..none
        };
        assert_eq!(recent.hit(&rcpts, now, 5), None, "35 + 5 fits");
        // 35 + 10 > 40: the 5 of two hours ago must leave (in 22 h).
        assert_eq!(
            recent.hit(&rcpts, now, 10).unwrap().retry_after,
            86400 - 7200
        );
        // 35 + 30 > 40: all three must leave, the newest 30 min ago.
        assert_eq!(
            recent.hit(&rcpts, now, 30).unwrap().retry_after,
            86400 - 1800
        );
        // 35 + 15 > 40: the two oldest must leave.
        assert_eq!(
            recent.hit(&rcpts, now, 15).unwrap().retry_after,
            86400 - 3000
        );
        // Heavier than the limit itself: a whole window.
        assert_eq!(recent.hit(&rcpts, now, 41).unwrap().retry_after, 86400);
        let queued = AppLimits {
            queued_max: Some(3),
            ..AppLimits::default()
        };
        let hit = recent.hit(&queued, now, 1).unwrap();
        assert_eq!((hit.name, hit.retry_after), ("queued_max", 60));
        assert!(hit.text().contains("queued_max (3)"), "{}", hit.text());
        // A second with two submissions: they count and leave together.
        let mut two = recent.clone();
        two.add(now - 3000, 1);
        two.add(now - 10, 2);
        assert_eq!(two.messages.len(), 4);
        assert_eq!(two.messages[1], (now - 3000, 2, 11));
        let u = two.usage(now);
        assert_eq!((u.messages_last_hour, u.recipients_today), (4, 38));
        let three = AppLimits {
            messages_per_hour: Some(4),
            ..none
        };
        assert_eq!(two.hit(&three, now, 1).unwrap().retry_after, 600);
    }
}
