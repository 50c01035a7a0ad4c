//! The durable queue and the apps that fill it (docs/API.md §6 to §9): the
//! [`Queue`] trait, and its SQLite implementation on [`SqliteStore`]. Every
//! state change is one transaction; a message is acknowledged only after the
//! transaction that stores it commits (WAL, `synchronous=FULL`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use mailroom_shared::api::Stage;
use mailroom_shared::sending::{
    App, Attempt, Details, LastError, Paused, RecipientState, Status, Summary,
};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{SqliteStore, StoreError};

/// An app's messages of the last 24 hours (`?1` app, `?2` since), oldest
/// first: when each came and how many recipients it had.
pub(crate) const RECENT_SQL: &str = "SELECT created_unix, rcpt_count FROM messages WHERE app_id = ?1 AND created_unix > ?2 ORDER BY created_unix, seq";
/// An app's waiting messages (`?1` app).
pub(crate) const WAITING_SQL: &str = "SELECT COUNT(*) FROM messages WHERE app_id = ?1 AND status IN ('queued', 'deferred', 'sending')";

/// An app's recent submissions and waiting messages: what its limits and
/// usage are computed from, the same way for both stores. A submission reads
/// the recent rows only when the app has a limit over a window (with the
/// default, `queued_max` alone, it counts the waiting messages and nothing
/// else).
#[derive(Debug, Clone, Default)]
pub struct Recent {
    /// (submitted at, recipients) of the last 24 hours, oldest first.
    pub messages: Vec<(i64, u32)>,
    /// Messages queued, deferred or sending.
    pub waiting: u64,
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
const DAY: i64 = 24 * 3600;

impl Recent {
    /// What the app has used now.
    pub fn usage(&self, now: i64) -> mailroom_shared::sending::AppUsage {
        let hour: Vec<_> = self
            .messages
            .iter()
            .filter(|(t, _)| *t > now - HOUR)
            .collect();
        let day: Vec<_> = self
            .messages
            .iter()
            .filter(|(t, _)| *t > now - DAY)
            .collect();
        mailroom_shared::sending::AppUsage {
            messages_last_hour: hour.len() as u64,
            messages_today: day.len() as u64,
            recipients_today: day.iter().map(|(_, r)| *r as u64).sum(),
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
                .filter(|(t, _)| *t > now - window)
                .map(|(t, r)| (*t, weight.map_or(1, |_| *r as u64)))
                .collect();
            let this = weight.map_or(1, u64::from);
            let mut used: u64 = inside.iter().map(|(_, w)| w).sum();
            if used + this <= max as u64 {
                continue;
            }
            // Wait until enough of the oldest have left the window; a message
            // heavier than the limit itself waits a whole window.
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

/// Due messages taken in turn per app (round robin): each app's oldest due
/// message first, then each app's second, and so on, so one app's backlog
/// never holds back another app's next message (docs/API.md §6). The window
/// ranks only row numbers; bodies are read for the chosen rows alone.
pub(crate) const FAIR_DUE_SQL: &str = "SELECT m.seq, m.id, m.mail_from, m.body, m.attempt_count, m.created_unix, m.app_id
 FROM messages m JOIN (
   SELECT seq, next_attempt_unix,
          ROW_NUMBER() OVER (PARTITION BY COALESCE(app_id, source, '') ORDER BY next_attempt_unix, seq) AS turn
   FROM messages
   WHERE status IN ('queued', 'deferred') AND next_attempt_unix <= ?1 AND body IS NOT NULL
 ) due ON due.seq = m.seq
 ORDER BY due.turn, due.next_attempt_unix, due.seq LIMIT ?2";

/// A stored app with what the server needs to check its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApp {
    /// The public view.
    pub app: App,
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
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// The app's limits, checked in the same transaction that stores it.
    pub limits: Option<mailroom_shared::sending::AppLimits>,
    /// RFC 3339 now.
    pub now: String,
    /// Seconds since 1970 now.
    pub now_unix: i64,
}

/// What storing a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored now.
    New(String),
    /// The same idempotency key was used before: that message, untouched.
    Repeat(String, Status),
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
    /// The message's new status.
    pub status: Status,
    /// For `deferred` (and `queued` after a pause): when to try again.
    pub next_attempt_unix: i64,
    /// Whether this counts as an attempt (a pause does not).
    pub counts: bool,
}

impl AttemptRecord {
    /// The message's `last_error` columns after this attempt: cleared by a success.
    pub fn last_error(&self) -> (Option<&'static str>, Option<String>, Option<String>) {
        let a = &self.attempt;
        if a.ok {
            (None, None, None)
        } else {
            (
                a.stage.map(|s| s.as_str()),
                a.code.clone(),
                Some(a.message.clone()),
            )
        }
    }

    /// A sent or cancelled message keeps its record, not its body; a failed
    /// one keeps its body until retention, so it can be retried.
    pub fn keeps_body(&self) -> bool {
        !matches!(self.status, Status::Sent | Status::Cancelled)
    }
}

/// Filters of `GET /api/messages`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this app.
    pub app: Option<String>,
    /// Addresses or subject containing this.
    pub q: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// Older than this message.
    pub before: Option<String>,
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
    /// them. Due: `queued` or `deferred` and time, or `sending` under a lease
    /// that ran out (its server died).
    async fn claim(
        &self,
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
    async fn reserve_slot(&self, _gap_ms: i64, _now_ms: i64) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
    /// Puts claimed messages that were not attempted back to `queued`.
    async fn release(&self, ids: Vec<String>) -> Result<(), StoreError>;
    /// Records attempts and the messages' new states, in one transaction.
    async fn record_many(
        &self,
        batch: Vec<(String, AttemptRecord)>,
        now: &str,
    ) -> Result<(), StoreError>;
    /// Records an attempt and the message's new state.
    async fn record(&self, id: &str, r: AttemptRecord, now: &str) -> Result<(), StoreError> {
        self.record_many(vec![(id.to_string(), r)], now).await
    }
    /// Messages left `sending` by a crash go back to `queued`: all of them
    /// with one process (SQLite), those whose lease ran out with several.
    async fn requeue_sending(&self, now_unix: i64) -> Result<u64, StoreError>;
    /// Fails messages older than `cutoff_unix` that are still waiting.
    async fn expire(&self, cutoff_unix: i64, now: &str) -> Result<u64, StoreError>;
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
    /// Why delivery is paused, if it is.
    async fn pause_state(&self) -> Result<Option<Paused>, StoreError>;
    /// Pauses (or updates the reason); `None` resumes.
    async fn set_pause(&self, p: Option<Paused>) -> Result<(), StoreError>;
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

/// A stored status name as a [`Status`].
pub(crate) fn status_of(text: &str) -> Status {
    Status::from_name(text).unwrap_or(Status::Queued)
}

/// A stored stage name as a [`Stage`].
pub(crate) fn stage_of(text: &str) -> Option<Stage> {
    [
        Stage::Token,
        Stage::Connect,
        Stage::Tls,
        Stage::Auth,
        Stage::Send,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
}

const SUMMARY_COLUMNS: &str = "m.seq, m.id, COALESCE(m.app_id, m.source), m.mail_from, m.subject, m.size, m.status, m.created_at, m.updated_at, m.attempt_count, m.last_stage, m.last_code, m.last_message";

fn summary_row(tx: &rusqlite::Connection, row: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    let seq: i64 = row.get(0)?;
    let last_stage: Option<String> = row.get(10)?;
    let last_message: Option<String> = row.get(12)?;
    let mut stmt =
        tx.prepare_cached("SELECT address FROM recipients WHERE message_seq = ?1 ORDER BY idx")?;
    let to = stmt
        .query_map([seq], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Summary {
        id: row.get(1)?,
        app: row.get(2)?,
        from: row.get(3)?,
        to,
        subject: row.get(4)?,
        size: row.get::<_, i64>(5)? as u64,
        status: status_of(&row.get::<_, String>(6)?),
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        attempt_count: row.get::<_, i64>(9)? as u32,
        last_error: match (last_stage.as_deref().and_then(stage_of), last_message) {
            (Some(stage), Some(message)) => Some(LastError {
                stage,
                code: row.get(11)?,
                message,
            }),
            _ => None,
        },
    })
}

fn summary_by_id(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Summary>> {
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM messages m WHERE m.id = ?1");
    c.query_row(&sql, [id], |row| summary_row(c, row))
        .optional()
}

fn app_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<App> {
    let allowed: String = row.get(4)?;
    Ok(App {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at: row.get(2)?,
        last_used_at: row.get(3)?,
        allowed_from: serde_json::from_str(&allowed).unwrap_or_default(),
        rewrite_from: row.get::<_, i64>(5)? != 0,
        messages: row.get::<_, i64>(6)? as u64,
        limits: limits_of(row.get::<_, Option<String>>(7)?.as_deref()),
        usage: Default::default(),
    })
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

pub(crate) const APP_COLUMNS: &str =
    "id, name, created_at, last_used_at, allowed_from, rewrite_from, messages, limits";
/// How many columns [`APP_COLUMNS`] names.
const APP_COLUMN_COUNT: usize = 8;

/// Reads an app's recent and waiting messages (SQLite).
fn recent_in(
    c: &rusqlite::Connection,
    app_id: &str,
    now_unix: i64,
    rows: bool,
) -> rusqlite::Result<Recent> {
    let messages = if !rows {
        Vec::new()
    } else {
        c.prepare_cached(RECENT_SQL)?
            .query_map(params![app_id, now_unix - DAY], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u32))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let waiting: i64 = c.query_row(WAITING_SQL, [app_id], |r| r.get(0))?;
    Ok(Recent {
        messages,
        waiting: waiting as u64,
    })
}

/// Stores one message inside the batch's transaction (its own savepoint):
/// a repeat or a limit leaves nothing behind.
fn enqueue_in(tx: &rusqlite::Connection, m: &NewMessage) -> rusqlite::Result<Enqueued> {
    if let (Some(app), Some(key)) = (&m.app_id, &m.idempotency_key) {
        let day_ago = m.now_unix - 24 * 3600;
        tx.execute("DELETE FROM idempotency WHERE created_unix < ?1", [day_ago])?;
        let earlier: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT i.message_id, m.status FROM idempotency i
                 LEFT JOIN messages m ON m.id = i.message_id
                 WHERE i.app_id = ?1 AND i.key = ?2",
                params![app, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((id, status)) = earlier {
            let status = status.as_deref().map(status_of).unwrap_or(Status::Sent);
            return Ok(Enqueued::Repeat(id, status));
        }
    }
    // The limits are read and the message stored in one immediate
    // transaction: parallel submissions cannot both take the last place.
    if let (Some(app), Some(limits)) = (&m.app_id, &m.limits) {
        let recent = recent_in(tx, app, m.now_unix, limits.has_windows())?;
        if let Some(hit) = recent.hit(limits, m.now_unix, m.recipients.len() as u32) {
            return Ok(Enqueued::Limited(hit));
        }
    }
    if let (Some(app), Some(key)) = (&m.app_id, &m.idempotency_key) {
        tx.execute(
            "INSERT INTO idempotency (app_id, key, message_id, created_unix) VALUES (?1, ?2, ?3, ?4)",
            params![app, key, m.id, m.now_unix],
        )?;
    }
    tx.execute(
        "INSERT INTO messages (id, app_id, mail_from, subject, size, body, status, created_at, created_unix, updated_at, next_attempt_unix, source, rcpt_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?7, ?8, ?9, ?10)",
        params![
            m.id,
            m.app_id,
            m.mail_from,
            m.subject,
            m.body.len() as i64,
            m.body,
            m.now,
            m.now_unix,
            m.source,
            m.recipients.len() as i64
        ],
    )?;
    let seq = tx.last_insert_rowid();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO recipients (message_seq, idx, address, status) VALUES (?1, ?2, ?3, 'queued')",
        )?;
        for (i, r) in m.recipients.iter().enumerate() {
            stmt.execute(params![seq, i as i64, r])?;
        }
    }
    if let Some(app) = &m.app_id {
        tx.execute(
            "UPDATE apps SET messages = messages + 1, last_used_at = ?2 WHERE id = ?1",
            params![app, m.now],
        )?;
    }
    Ok(Enqueued::New(m.id.clone()))
}

/// Stores a batch of submissions in one transaction, one savepoint each, and
/// commits once: one fsync for all of them. Each gets its own outcome; if the
/// commit fails, none is stored and every one gets the error.
pub(crate) fn enqueue_batch(
    c: &mut rusqlite::Connection,
    batch: Vec<NewMessage>,
) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
    let mut tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(batch.len());
    for m in &batch {
        let sp = tx.savepoint()?;
        match enqueue_in(&sp, m) {
            Ok(stored @ Enqueued::New(_)) => {
                sp.commit()?;
                out.push(Ok(stored));
            }
            // Dropped, the savepoint rolls back.
            Ok(other) => out.push(Ok(other)),
            Err(e) => {
                // SQLite rolls the whole transaction back on some errors (a
                // full disk): then nothing of the batch is stored, and every
                // submission in it gets the error.
                if sp.is_autocommit() {
                    return Err(StoreError::from(e));
                }
                out.push(Err(StoreError::from(e)));
            }
        }
    }
    tx.commit()?;
    Ok(out)
}

/// One submission waiting for the group commit.
struct Pending {
    message: Box<NewMessage>,
    reply: tokio::sync::oneshot::Sender<Result<Enqueued, StoreError>>,
}

/// The most submissions in one transaction.
const MAX_GROUP: usize = 256;

/// What a store does with a group of submissions: store them in one
/// transaction, each with its own outcome ([`enqueue_batch`] for SQLite,
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

/// SQLite's group: [`enqueue_batch`] on the blocking pool.
fn sqlite_group(conn: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>) -> GroupFn {
    std::sync::Arc::new(move |messages| {
        let conn = conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut c = conn
                    .lock()
                    .map_err(|_| StoreError::Db("database lock poisoned".into()))?;
                enqueue_batch(&mut c, messages)
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Db(e.to_string())))
        })
    })
}

#[async_trait]
impl Queue for SqliteStore {
    async fn create_app(&self, app: App, key_hash: [u8; 32]) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO apps (id, name, key_hash, allowed_from, rewrite_from, created_at, limits)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    app.id,
                    app.name,
                    key_hash.to_vec(),
                    serde_json::to_string(&app.allowed_from).unwrap_or_else(|_| "[]".into()),
                    app.rewrite_from as i64,
                    app.created_at,
                    limits_json(&app.limits)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn app_name_taken(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.with_conn(move |c| {
            Ok(c.query_row(
                "SELECT 1 FROM apps WHERE revoked = 0 AND lower(name) = lower(?1)",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
        .await
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {APP_COLUMNS} FROM apps WHERE revoked = 0 ORDER BY created_at, id"
            ))?;
            let apps = stmt
                .query_map([], app_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(apps)
        })
        .await
    }

    async fn revoke_app(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            Ok(c.execute(
                "UPDATE apps SET revoked = 1 WHERE id = ?1 AND revoked = 0",
                [id],
            )? > 0)
        })
        .await
    }

    async fn update_app(&self, app: App) -> Result<Option<App>, StoreError> {
        self.with_conn(move |c| {
            let changed = c.execute(
                "UPDATE apps SET name = ?2, allowed_from = ?3, rewrite_from = ?4, limits = ?5
                 WHERE id = ?1 AND revoked = 0",
                params![
                    app.id,
                    app.name,
                    serde_json::to_string(&app.allowed_from).unwrap_or_else(|_| "[]".into()),
                    app.rewrite_from as i64,
                    limits_json(&app.limits)
                ],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            Ok(c.query_row(
                &format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?1"),
                [&app.id],
                app_row,
            )
            .optional()?)
        })
        .await
    }

    async fn recent(&self, app_id: &str, now_unix: i64, rows: bool) -> Result<Recent, StoreError> {
        let app_id = app_id.to_string();
        self.with_conn(move |c| Ok(recent_in(c, &app_id, now_unix, rows)?))
            .await
    }

    async fn app_by_key(&self, key_hash: [u8; 32]) -> Result<Option<App>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.query_row(
                &format!("SELECT {APP_COLUMNS} FROM apps WHERE revoked = 0 AND key_hash = ?1"),
                [key_hash.to_vec()],
                app_row,
            )
            .optional()?)
        })
        .await
    }

    async fn app_by_id(&self, id: &str) -> Result<Option<(App, [u8; 32])>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            Ok(c.query_row(
                &format!("SELECT {APP_COLUMNS}, key_hash FROM apps WHERE revoked = 0 AND id = ?1"),
                [id],
                |row| {
                    let app = app_row(row)?;
                    let hash: Vec<u8> = row.get(APP_COLUMN_COUNT)?;
                    Ok((app, hash.try_into().unwrap_or([0u8; 32])))
                },
            )
            .optional()?)
        })
        .await
    }

    async fn enqueue(&self, m: NewMessage) -> Result<Enqueued, StoreError> {
        Committer::enqueue(&self.committer, || sqlite_group(self.conn.clone()), m).await
    }

    async fn claim(
        &self,
        now_unix: i64,
        limit: u32,
        lease: &Lease,
    ) -> Result<Vec<Claimed>, StoreError> {
        let (owner, until) = (lease.owner.clone(), now_unix + lease.seconds);
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            type Row = (i64, String, String, Vec<u8>, i64, i64, Option<String>);
            // Two indexed queries rather than one with OR, which would scan
            // the table: due messages first, then lapsed leases.
            let mut rows: Vec<Row> = Vec::new();
            for sql in [
                FAIR_DUE_SQL,
                "SELECT seq, id, mail_from, body, attempt_count, created_unix, app_id FROM messages
                 WHERE status = 'sending' AND locked_until < ?1 AND body IS NOT NULL
                 ORDER BY seq LIMIT ?2",
            ] {
                let left = limit as i64 - rows.len() as i64;
                if left <= 0 {
                    break;
                }
                let mut stmt = tx.prepare_cached(sql)?;
                rows.extend(
                    stmt.query_map(params![now_unix, left], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
                );
            }
            let mut out = Vec::new();
            for (seq, id, mail_from, body, attempts, created, app_id) in rows {
                tx.execute(
                    "UPDATE messages SET status = 'sending', locked_by = ?2, locked_until = ?3 WHERE seq = ?1",
                    params![seq, owner, until],
                )?;
                let mut stmt = tx.prepare_cached(
                    "SELECT idx, address FROM recipients WHERE message_seq = ?1 AND status IN ('queued', 'deferred') ORDER BY idx",
                )?;
                let recipients = stmt
                    .query_map([seq], |r| Ok((r.get::<_, i64>(0)? as u32, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                out.push(Claimed {
                    id,
                    app_id,
                    mail_from,
                    recipients,
                    body,
                    attempt_count: attempts as u32,
                    created_unix: created,
                });
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn release(&self, ids: Vec<String>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE messages SET status = 'queued', locked_by = NULL, locked_until = NULL WHERE id = ?1 AND status = 'sending'",
                )?;
                for id in &ids {
                    stmt.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn record_many(
        &self,
        batch: Vec<(String, AttemptRecord)>,
        now: &str,
    ) -> Result<(), StoreError> {
        let now = now.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (id, r) in &batch {
                record_in(&tx, id, r, &now)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn renew(&self, id: &str, now_unix: i64, lease: &Lease) -> Result<bool, StoreError> {
        let (id, owner, until) = (
            id.to_string(),
            lease.owner.clone(),
            now_unix + lease.seconds,
        );
        self.with_conn(move |c| {
            Ok(c.execute(
                "UPDATE messages SET locked_until = ?3 WHERE id = ?1 AND status = 'sending' AND locked_by = ?2",
                params![id, owner, until],
            )? > 0)
        })
        .await
    }

    async fn requeue_sending(&self, _now_unix: i64) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            Ok(c.execute(
                "UPDATE messages SET status = 'queued', locked_by = NULL, locked_until = NULL WHERE status = 'sending'",
                [],
            )? as u64)
        })
        .await
    }

    async fn expire(&self, cutoff_unix: i64, now: &str) -> Result<u64, StoreError> {
        let now = now.to_string();
        self.with_conn(move |c| {
            Ok(c.execute(
                "UPDATE messages SET status = 'failed', updated_at = ?2,
                    last_stage = COALESCE(last_stage, 'send'),
                    last_message = 'The message waited longer than --max-queue-time without being delivered.'
                 WHERE status IN ('queued', 'deferred') AND created_unix < ?1",
                params![cutoff_unix, now],
            )? as u64)
        })
        .await
    }

    async fn purge(&self, cutoff: &str) -> Result<u64, StoreError> {
        let cutoff = cutoff.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            let seqs = "SELECT seq FROM messages WHERE status IN ('sent', 'failed', 'cancelled') AND updated_at < ?1";
            tx.execute(&format!("DELETE FROM recipients WHERE message_seq IN ({seqs})"), [&cutoff])?;
            tx.execute(&format!("DELETE FROM attempts WHERE message_seq IN ({seqs})"), [&cutoff])?;
            let n = tx.execute(
                "DELETE FROM messages WHERE status IN ('sent', 'failed', 'cancelled') AND updated_at < ?1",
                [&cutoff],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    async fn counts(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        self.with_conn(|c| {
            let mut counts: BTreeMap<Status, u64> = Status::ALL.iter().map(|s| (*s, 0)).collect();
            let mut stmt = c.prepare("SELECT status, COUNT(*) FROM messages GROUP BY status")?;
            for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (status, n) = row?;
                counts.insert(status_of(&status), n as u64);
            }
            Ok(counts)
        })
        .await
    }

    async fn list(&self, f: ListFilter) -> Result<(Vec<Summary>, Option<String>), StoreError> {
        self.with_conn(move |c| {
            let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM messages m WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(s) = f.status {
                sql.push_str(" AND m.status = ?");
                args.push(s.as_str().to_string().into());
            }
            if let Some(app) = &f.app {
                sql.push_str(" AND m.app_id = ?");
                args.push(app.clone().into());
            }
            if let Some(q) = f.q.as_deref().filter(|q| !q.trim().is_empty()) {
                let like = like_pattern(q);
                sql.push_str(" AND (m.subject LIKE ? ESCAPE '\\' OR m.mail_from LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM recipients r WHERE r.message_seq = m.seq AND r.address LIKE ? ESCAPE '\\'))");
                for _ in 0..3 {
                    args.push(like.clone().into());
                }
            }
            if let Some(before) = &f.before {
                sql.push_str(" AND m.seq < (SELECT seq FROM messages WHERE id = ?)");
                args.push(before.clone().into());
            }
            let limit = f.limit.clamp(1, 200);
            sql.push_str(&format!(" ORDER BY m.seq DESC LIMIT {}", limit + 1));
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt
                .query_map(rusqlite::params_from_iter(args), |row| summary_row(c, row))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next = page_end(&mut rows, limit);
            Ok((rows, next))
        })
        .await
    }

    async fn details(&self, id: &str) -> Result<Option<Details>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            let Some(summary) = summary_by_id(c, &id)? else {
                return Ok(None);
            };
            let seq: i64 = c.query_row("SELECT seq FROM messages WHERE id = ?1", [&id], |r| r.get(0))?;
            let mut stmt = c.prepare(
                "SELECT address, status, code, message FROM recipients WHERE message_seq = ?1 ORDER BY idx",
            )?;
            let recipients = stmt
                .query_map([seq], |r| {
                    Ok(RecipientState {
                        address: r.get(0)?,
                        status: status_of(&r.get::<_, String>(1)?),
                        code: r.get(2)?,
                        message: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = c.prepare(
                "SELECT at, ok, stage, code, message, hint FROM attempts WHERE message_seq = ?1 ORDER BY n",
            )?;
            let attempts = stmt
                .query_map([seq], |r| {
                    Ok(Attempt {
                        at: r.get(0)?,
                        ok: r.get::<_, i64>(1)? != 0,
                        stage: r.get::<_, Option<String>>(2)?.as_deref().and_then(stage_of),
                        code: r.get(3)?,
                        message: r.get(4)?,
                        hint: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(Details {
                summary,
                recipients,
                attempts,
            }))
        })
        .await
    }

    async fn retry(&self, id: &str, now: &str, now_unix: i64) -> Result<Summary, ChangeError> {
        let (id, now) = (id.to_string(), now.to_string());
        let result = self
            .with_conn(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some(current) = summary_by_id(&tx, &id)? else {
                    return Ok(Err(ChangeError::NotFound));
                };
                let has_body: bool = tx.query_row(
                    "SELECT body IS NOT NULL FROM messages WHERE id = ?1",
                    [&id],
                    |r| r.get(0),
                )?;
                if !matches!(current.status, Status::Failed | Status::Deferred) || !has_body {
                    return Ok(Err(ChangeError::Status(current.status)));
                }
                tx.execute(
                    "UPDATE messages SET status = 'queued', updated_at = ?2, next_attempt_unix = ?3, created_unix = ?3 WHERE id = ?1",
                    params![id, now, now_unix],
                )?;
                tx.execute(
                    "UPDATE recipients SET status = 'queued' WHERE message_seq = (SELECT seq FROM messages WHERE id = ?1) AND status IN ('failed', 'deferred')",
                    [&id],
                )?;
                let s = summary_by_id(&tx, &id)?;
                tx.commit()?;
                Ok(s.ok_or(ChangeError::NotFound))
            })
            .await?;
        result
    }

    async fn cancel(&self, id: &str, now: &str) -> Result<Summary, ChangeError> {
        let (id, now) = (id.to_string(), now.to_string());
        let result = self
            .with_conn(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some(current) = summary_by_id(&tx, &id)? else {
                    return Ok(Err(ChangeError::NotFound));
                };
                if !matches!(current.status, Status::Queued | Status::Deferred) {
                    return Ok(Err(ChangeError::Status(current.status)));
                }
                tx.execute(
                    "UPDATE messages SET status = 'cancelled', updated_at = ?2, body = NULL WHERE id = ?1",
                    params![id, now],
                )?;
                let s = summary_by_id(&tx, &id)?;
                tx.commit()?;
                Ok(s.ok_or(ChangeError::NotFound))
            })
            .await?;
        result
    }

    async fn pause_state(&self) -> Result<Option<Paused>, StoreError> {
        self.with_conn(|c| {
            Ok(c.query_row(
                "SELECT since, stage, code, message, hint FROM delivery_pause WHERE id = 1",
                [],
                |r| {
                    Ok(Paused {
                        since: r.get(0)?,
                        stage: stage_of(&r.get::<_, String>(1)?).unwrap_or(Stage::Connect),
                        code: r.get(2)?,
                        message: r.get(3)?,
                        hint: r.get(4)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn set_pause(&self, p: Option<Paused>) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            match p {
                None => {
                    c.execute("DELETE FROM delivery_pause", [])?;
                }
                Some(p) => {
                    // Keep the first `since` while the reason changes.
                    c.execute(
                        "INSERT INTO delivery_pause (id, since, stage, code, message, hint) VALUES (1, ?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(id) DO UPDATE SET stage = ?2, code = ?3, message = ?4, hint = ?5",
                        params![p.since, p.stage.as_str(), p.code, p.message, p.hint],
                    )?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// Records one attempt inside a transaction.
fn record_in(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    r: &AttemptRecord,
    now: &str,
) -> Result<(), StoreError> {
    let Some((seq, count)): Option<(i64, i64)> = tx
        .query_row(
            "SELECT seq, attempt_count FROM messages WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
    else {
        return Ok(());
    };
    let n = count + 1;
    let a = &r.attempt;
    let n_row: i64 = tx.query_row(
        "SELECT COALESCE(MAX(n), 0) + 1 FROM attempts WHERE message_seq = ?1",
        [seq],
        |row| row.get(0),
    )?;
    tx.execute(
        "INSERT INTO attempts (message_seq, n, at, ok, stage, code, message, hint, transcript)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq,
            n_row,
            a.at,
            a.ok as i64,
            a.stage.map(|s| s.as_str()),
            a.code,
            a.message,
            a.hint,
            r.transcript
        ],
    )?;
    for o in &r.recipients {
        tx.execute(
                "UPDATE recipients SET status = ?3, code = ?4, message = ?5 WHERE message_seq = ?1 AND idx = ?2",
                params![seq, o.idx as i64, o.status.as_str(), o.code, o.message],
            )?;
    }
    let (last_stage, last_code, last_message) = r.last_error();
    let keep_body = r.keeps_body();
    tx.execute(
        "UPDATE messages SET status = ?2, updated_at = ?3, next_attempt_unix = ?4,
                attempt_count = ?5, last_stage = ?6, last_code = ?7, last_message = ?8,
                body = CASE WHEN ?9 THEN body ELSE NULL END, locked_by = NULL, locked_until = NULL
             WHERE seq = ?1",
        params![
            seq,
            r.status.as_str(),
            now,
            r.next_attempt_unix,
            if r.counts { n } else { count },
            last_stage,
            last_code,
            last_message,
            keep_body
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, body: Vec<u8>) -> NewMessage {
        NewMessage {
            id: id.into(),
            app_id: Some("app_1".into()),
            source: None,
            mail_from: "a@b.example".into(),
            recipients: vec!["c@d.example".into()],
            subject: "s".into(),
            body,
            idempotency_key: None,
            limits: None,
            now: "2026-11-26T00:00:00Z".into(),
            now_unix: 1_795_000_000,
        }
    }

    #[test]
    fn limits_name_the_first_one_passed_and_when_it_allows_again() {
        use mailroom_shared::sending::AppLimits;
        let now = 1_000_000;
        // Three messages: 50 min, 30 min and 2 h ago, of 10, 20 and 5 recipients.
        let recent = Recent {
            messages: vec![(now - 7200, 5), (now - 3000, 10), (now - 1800, 20)],
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
    }

    #[tokio::test]
    async fn a_group_commit_gives_each_submission_its_own_outcome() {
        use mailroom_shared::sending::AppLimits;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        let limits = AppLimits {
            messages_per_hour: Some(2),
            ..AppLimits::default()
        };
        let with = |id: &str, key: Option<&str>| {
            let mut m = message(id, b"x".to_vec());
            m.limits = Some(limits);
            m.idempotency_key = key.map(str::to_string);
            m
        };
        let batch = vec![
            with("msg_1", Some("k")),
            with("msg_twin", Some("k")),
            with("msg_2", None),
            with("msg_3", None),
        ];
        let out = store
            .with_conn(move |c| enqueue_batch(c, batch))
            .await
            .unwrap();
        assert_eq!(out[0].as_ref().unwrap(), &Enqueued::New("msg_1".into()));
        assert!(
            matches!(out[1], Ok(Enqueued::Repeat(ref id, _)) if id == "msg_1"),
            "{:?}",
            out[1]
        );
        assert_eq!(out[2].as_ref().unwrap(), &Enqueued::New("msg_2".into()));
        assert!(
            matches!(out[3], Ok(Enqueued::Limited(_))),
            "the third within the hour: {:?}",
            out[3]
        );
        assert_eq!(store.counts().await.unwrap()[&Status::Queued], 2);
        // Through the committer: 64 at once, every one stored and answered.
        let store = std::sync::Arc::new(store);
        let tries = (0..64).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .enqueue(message(&format!("msg_p{i}"), b"y".to_vec()))
                    .await
            })
        });
        for t in futures_util::future::join_all(tries).await {
            assert!(matches!(t.unwrap(), Ok(Enqueued::New(_))));
        }
        assert_eq!(store.counts().await.unwrap()[&Status::Queued], 66);
    }

    #[tokio::test]
    async fn a_full_disk_is_a_typed_error_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        store
            .enqueue(message("msg_small", vec![b'x'; 100]))
            .await
            .unwrap();
        // Cap the database where it stands: the next large write finds the disk full.
        store
            .with_conn(|c| {
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                c.query_row(
                    &format!("PRAGMA max_page_count = {}", pages + 1),
                    [],
                    |_| Ok(()),
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let full = store
            .enqueue(message("msg_big", vec![b'y'; 64 * 1024]))
            .await;
        assert!(matches!(full, Err(StoreError::Full)), "{full:?}");
        let answer = axum::response::IntoResponse::into_response(crate::error::AppError::from(
            StoreError::Full,
        ));
        assert_eq!(
            answer.status(),
            axum::http::StatusCode::INSUFFICIENT_STORAGE
        );
        let counts = store.counts().await.unwrap();
        assert_eq!(
            counts[&Status::Queued],
            1,
            "the small one stays, nothing half-stored"
        );
        assert!(store.details("msg_big").await.unwrap().is_none());
    }
}
