//! The embedded store: SQLite in `<data-dir>/mailroom.db`, one writing
//! connection behind a mutex on the blocking pool, and one read-only
//! connection beside it for the administrator's reads over the whole queue
//! ([`SqliteStore::with_read`]). WAL with `synchronous=FULL`, so a
//! committed transaction survives a crash; foreign keys on, so deleting a
//! message takes its recipients and attempts. The statements are
//! [`super::sql`]'s, shared with PostgreSQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use mailroom_shared::sending::{App, Details, Paused, Status, Summary};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::queue::{
    limits_json, page_end, profile_limits_json, status_of, AttemptRecord, ChangeError, Claimed,
    Committer, Enqueued, Expired, ExpiryEvents, GroupFn, Lease, ListFilter, NewMessage, Queue,
    Recent, ReplacedKey, Usage, Waiting,
};
use super::schema::migrations;
use super::sql::{self, Cols};
#[cfg(test)]
use super::DEFAULT_PROFILE;
use super::{
    CertRow, CertSlot, DeliveryResult, DueDelivery, FailureStore, HistoryEntry, NewDelivery,
    ProfileDelete, ProfileRow, Record, SessionStore, SettingsStore, StoreError, WebhookRow,
    WebhookStore,
};

use super::PURGE_BATCH;
const DAY: i64 = 24 * 3600;

/// `sql::PURGE` through its partial index (without statistics SQLite
/// prefers the status index, which reads every final row), at most `?2`
/// messages at a time: see [`SqliteStore::purge_in_batches`].
const PURGE: &str = "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages INDEXED BY messages_final_age WHERE status IN ('sent', 'failed', 'cancelled') AND updated_at < ?1 LIMIT ?2)";
/// `sql::PURGE_DELIVERIES` likewise.
const PURGE_DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries INDEXED BY webhook_deliveries_final_age WHERE status IN ('delivered', 'failed') AND created_at < ?1 LIMIT ?2)";

/// SQLite in `<data-dir>/mailroom.db`.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) conn: Arc<Mutex<Connection>>,
    /// A read-only connection for the administrator's reads that may cover
    /// the whole retained queue (counts, searches, details): with WAL they
    /// read a committed snapshot beside the writer, so a search through
    /// months of mail never holds up a submission, a claim or a record.
    read: Arc<Mutex<Connection>>,
    /// A read-only connection for the point lookups of every submission (the
    /// app by its key, or by its id for each relay transaction, and its
    /// profile's settings): on the writer they waited for each group
    /// commit's fsync, and on `read` for a search.
    lookup: Arc<Mutex<Connection>>,
    /// The group committer of submissions, started at the first one
    /// ([`Committer`]).
    committer: Arc<std::sync::OnceLock<Committer>>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Created private (0600) before SQLite opens it; SQLite gives its WAL
        // and shared-memory files the database file's mode.
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let io = |e: std::io::Error| StoreError::Db(format!("{}: {e}", path.display()));
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Said, not left to the build's default: without it `ON DELETE
        // CASCADE` does nothing (the bundled SQLite has it on; a system one may not).
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "cache_size", -16384)?;
        // A large transaction (an upgrade's migration, a big purge) grows the
        // WAL; after the next checkpoint it goes back to at most 64 MiB
        // instead of keeping that size on disk.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Db(migration_failed(path, &e)))?;
        let reader = |cache_kib: i64| -> Result<Connection, StoreError> {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.pragma_update(None, "cache_size", -cache_kib)?;
            Ok(c)
        };
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            read: Arc::new(Mutex::new(reader(8192)?)),
            lookup: Arc::new(Mutex::new(reader(2048)?)),
            committer: Arc::default(),
        })
    }

    /// Runs `f` on the connection, on the blocking pool.
    pub(crate) async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        on(self.conn.clone(), f).await
    }

    /// Runs `f` on the read-only connection, on the blocking pool: it sees
    /// every commit made before it starts, and never waits for the writer.
    pub(crate) async fn with_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        on(self.read.clone(), f).await
    }

    /// Runs `f` on the lookup connection ([`SqliteStore::lookup`]), on the
    /// blocking pool: it sees every commit made before it starts.
    pub(crate) async fn with_lookup<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        on(self.lookup.clone(), f).await
    }

    /// [`SqliteStore::purge_in_batches`] of final messages, as housekeeping
    /// runs it with [`PURGE_BATCH`], for tests that choose the batch.
    pub async fn purge_messages_in_batches(
        &self,
        cutoff: &str,
        batch: i64,
    ) -> Result<(u64, u32), StoreError> {
        self.purge_in_batches(PURGE, cutoff, batch).await
    }

    /// [`super::purge_in_batches`] of `sql` (`?1` the cutoff, `?2` the
    /// batch), letting go of the writing connection between batches, so
    /// submissions, claims and records wait for one batch at most.
    async fn purge_in_batches(
        &self,
        sql: &'static str,
        cutoff: &str,
        batch: i64,
    ) -> Result<(u64, u32), StoreError> {
        super::purge_in_batches(batch, || {
            let cutoff = cutoff.to_string();
            self.with_conn(move |c| Ok(c.execute(sql, params![cutoff, batch])? as u64))
        })
        .await
    }

    /// Like [`SqliteStore::with_conn`], for a write that may be lost in a
    /// crash without harm: committed without waiting for the disk
    /// (`synchronous=NORMAL`). The next durable commit writes it to disk
    /// with its own (the WAL is one file, written in order).
    pub(crate) async fn with_conn_relaxed<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_conn(move |c| {
            c.pragma_update(None, "synchronous", "NORMAL")?;
            let r = f(c);
            // Whatever `f` did, every later commit is durable again; should
            // that fail, the connection refuses to go on rather than commit
            // an acknowledgement without waiting for the disk.
            if let Err(e) = c.pragma_update(None, "synchronous", "FULL") {
                tracing::error!(error = %e, "cannot make SQLite durable again");
                return Err(e.into());
            }
            r
        })
        .await
    }
}

/// Runs `f` on `conn`, on the blocking pool.
async fn on<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&mut *lock(&conn)?))
        .await
        .map_err(|e| StoreError::Db(e.to_string()))?
}

/// Locks a connection. A call that panicked while holding it (a bug)
/// leaves the mutex poisoned and may leave a transaction open or (the
/// writer's) commits relaxed ([`SqliteStore::with_conn_relaxed`]); the
/// connection itself is sound, so that is undone here and the store goes
/// on. Refusing every later call instead would stop intake, delivery and
/// the API until a restart.
fn lock(conn: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, StoreError> {
    let guard = match conn.lock() {
        Ok(guard) => return Ok(guard),
        Err(poisoned) => poisoned.into_inner(),
    };
    tracing::error!(
        "a database call panicked; its transaction is rolled back and the store goes on"
    );
    if !guard.is_autocommit() {
        guard.execute_batch("ROLLBACK")?;
    }
    guard.pragma_update(None, "synchronous", "FULL")?;
    conn.clear_poison();
    Ok(guard)
}

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn load(&self, profile: &str) -> Result<Option<Record>, StoreError> {
        let profile = profile.to_string();
        self.with_lookup(move |c| {
            Ok(c.prepare_cached(sql::LOAD_SETTINGS)?
                .query_row([profile], |r| sql::record_from(r))
                .optional()?)
        })
        .await
    }

    async fn save(
        &self,
        profile: &str,
        expected_version: u64,
        record: Record,
        changed_fields: Vec<String>,
    ) -> Result<u64, StoreError> {
        let profile = profile.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version = save_in(&tx, &profile, expected_version, &record, &changed_fields)?;
            tx.commit()?;
            Ok(version)
        })
        .await
    }

    async fn history(&self, profile: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let profile = profile.to_string();
        self.with_conn(move |c| {
            let mut stmt = c.prepare(sql::HISTORY)?;
            let rows = stmt.query_map([profile], |r| sql::history_from(r))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn certificates(&self, profile: &str) -> Result<Vec<CertRow>, StoreError> {
        let profile = profile.to_string();
        self.with_lookup(move |c| {
            let mut stmt = c.prepare_cached(sql::CERTIFICATES)?;
            let rows = stmt.query_map([profile], |r| sql::certificate_from(r))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn put_pending_certificate(&self, profile: &str, row: CertRow) -> Result<(), StoreError> {
        let profile = profile.to_string();
        self.with_conn(move |c| {
            c.execute(
                sql::PUT_PENDING,
                params![
                    profile,
                    row.cert_der,
                    row.private_key,
                    row.generated as i64,
                    row.created_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_certificate(&self, profile: &str, slot: CertSlot) -> Result<bool, StoreError> {
        let profile = profile.to_string();
        self.with_conn(move |c| {
            Ok(c.execute(sql::DELETE_CERTIFICATE, params![profile, slot.as_str()])? > 0)
        })
        .await
    }

    async fn pending_passed(
        &self,
        profile: &str,
        cert_der: Vec<u8>,
        settings_json: String,
    ) -> Result<(), StoreError> {
        let profile = profile.to_string();
        self.with_conn(move |c| {
            c.execute(
                sql::PENDING_PASSED,
                params![profile, cert_der, settings_json],
            )?;
            Ok(())
        })
        .await
    }

    async fn profiles(&self) -> Result<Vec<ProfileRow>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(sql::PROFILES)?;
            let rows = stmt.query_map([], |r| sql::profile_from(r))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn profile_named(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.trim().to_string();
        self.with_conn(move |c| {
            Ok(c.query_row(sql::PROFILE_NAME_TAKEN, [name], |r| r.text(0))
                .optional()?)
        })
        .await
    }

    async fn create_profile(
        &self,
        row: ProfileRow,
        record: Record,
        changed_fields: Vec<String>,
    ) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                sql::ADD_PROFILE,
                params![
                    row.id,
                    row.name,
                    profile_limits_json(&row.limits),
                    row.created_at
                ],
            )?;
            save_in(&tx, &row.id, 0, &record, &changed_fields)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn update_profile(&self, row: ProfileRow) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.execute(
                sql::UPDATE_PROFILE,
                params![row.id, row.name, profile_limits_json(&row.limits)],
            )? > 0)
        })
        .await
    }

    async fn delete_profile(&self, id: &str) -> Result<ProfileDelete, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let exists = tx
                .query_row(sql::PROFILE_EXISTS, [&id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(ProfileDelete::NotFound);
            }
            let (apps, waiting) =
                tx.query_row(sql::PROFILE_IN_USE, [&id], |r| Ok((r.int(0)?, r.int(1)?)))?;
            if let Err(refused) = super::queue::may_delete_profile(apps, waiting) {
                return Ok(refused);
            }
            for stmt in sql::DELETE_PROFILE {
                tx.execute(stmt, [&id])?;
            }
            tx.commit()?;
            Ok(ProfileDelete::Deleted)
        })
        .await
    }
}

/// A version-checked save of a profile's settings, its history line and
/// its certificate's activation or binding, inside `tx`.
fn save_in(
    tx: &rusqlite::Transaction<'_>,
    profile: &str,
    expected_version: u64,
    record: &Record,
    changed_fields: &[String],
) -> Result<u64, StoreError> {
    let stored = tx
        .query_row(sql::SETTINGS_VERSION, [profile], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64;
    if stored != expected_version {
        return Err(StoreError::Conflict { stored });
    }
    let version = (stored + 1) as i64;
    tx.execute(
        sql::SAVE_SETTINGS,
        params![
            version,
            record.settings_json,
            record.client_secret,
            record.password,
            record.updated_at,
            profile
        ],
    )?;
    tx.execute(
        sql::ADD_HISTORY,
        params![
            version,
            record.updated_at,
            changed_fields.join(","),
            profile
        ],
    )?;
    if let Some(der) = &record.activate_certificate {
        tx.execute(sql::DELETE_CERTIFICATE, params![profile, "active"])?;
        let n = tx.execute(
            sql::ACTIVATE_PENDING,
            params![profile, der, record.settings_json],
        )?;
        if n != 1 {
            // The pending certificate changed since the save was checked.
            return Err(StoreError::Conflict { stored });
        }
    } else {
        tx.execute(sql::BIND_ACTIVE, params![profile, record.settings_json])?;
    }
    Ok(version as u64)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        digest: [u8; 32],
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(sql::DELETE_EXPIRED_SESSIONS, [now_unix])?;
            c.execute(sql::ADD_SESSION, params![digest.to_vec(), expires_unix])?;
            Ok(())
        })
        .await
    }

    async fn session_valid(&self, digest: [u8; 32], now_unix: i64) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.query_row(
                sql::SESSION_VALID,
                params![digest.to_vec(), now_unix],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
        .await
    }

    async fn end_session(&self, digest: [u8; 32]) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(sql::END_SESSION, [digest.to_vec()])?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl FailureStore for SqliteStore {
    async fn add_failure(
        &self,
        key: &str,
        now_unix: i64,
        window: i64,
    ) -> Result<(u32, i64), StoreError> {
        let key = key.to_string();
        self.with_conn(move |c| {
            c.execute(sql::DELETE_OLD_FAILURES, [now_unix - window])?;
            Ok(
                c.query_row(sql::ADD_FAILURE, params![key, now_unix, window], |r| {
                    Ok((r.int(0)? as u32, r.int(1)?))
                })?,
            )
        })
        .await
    }

    async fn failures(
        &self,
        key: &str,
        now_unix: i64,
        window: i64,
    ) -> Result<Option<(u32, i64)>, StoreError> {
        let key = key.to_string();
        self.with_conn(move |c| {
            Ok(
                c.query_row(sql::FAILURES, params![key, now_unix - window], |r| {
                    Ok((r.int(0)? as u32, r.int(1)?))
                })
                .optional()?,
            )
        })
        .await
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        self.with_conn(move |c| {
            c.execute(sql::CLEAR_FAILURES, [key])?;
            Ok(())
        })
        .await
    }
}

fn summary_by_id(c: &Connection, id: &str) -> rusqlite::Result<Option<Summary>> {
    c.prepare_cached(&sql::summary_by_id(sql::SQLITE_TO))?
        .query_row([id], |r| sql::summary_from(r))
        .optional()
}

/// Reads an app's recent and waiting messages.
fn recent_in(
    c: &Connection,
    app_id: &str,
    now_unix: i64,
    rows: bool,
    count: Waiting,
) -> rusqlite::Result<Recent> {
    let messages = if !rows {
        Vec::new()
    } else {
        c.prepare_cached(sql::RECENT)?
            .query_map(params![app_id, now_unix - DAY], |r| {
                Ok((r.int(0)?, r.int(1)? as u64, r.int(2)? as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let waiting: i64 = match count {
        Waiting::All => c
            .prepare_cached(sql::WAITING)?
            .query_row([app_id], |r| r.get(0))?,
        Waiting::UpTo(max) => c
            .prepare_cached(sql::WAITING_UP_TO)?
            .query_row(params![app_id, max], |r| r.get(0))?,
        Waiting::Skip => 0,
    };
    Ok(Recent {
        messages,
        waiting: waiting as u64,
    })
}

/// What a batch knows of each app's usage: read at its first message, then
/// kept up to date as the batch stores more (one writer, in one immediate
/// transaction, so nothing else changes it meanwhile).
type Usages = BTreeMap<String, Usage>;

/// The usage of message `m`'s app, read on its first message in the batch,
/// and again if an earlier message needed less ([`Usage::answers`]): the
/// batch's own messages (and their `app_usage`) are in the transaction by
/// then, so they are counted.
fn usage_of<'u>(
    c: &Connection,
    usages: &'u mut Usages,
    m: &NewMessage,
) -> rusqlite::Result<Option<&'u Recent>> {
    let (Some(app), Some(_)) = (&m.app_id, &m.limits) else {
        return Ok(None);
    };
    if usages.get(app).is_none_or(|u| !u.answers(m)) {
        let (rows, count) = Usage::reading(usages.get(app), m);
        let recent = recent_in(c, app, m.now_unix, rows, count)?;
        usages.insert(
            app.clone(),
            Usage {
                recent,
                read: (rows, count),
            },
        );
    }
    Ok(usages.get(app).map(|u| &u.recent))
}

/// Stores one message inside the batch's transaction (its own savepoint):
/// a repeat or a limit leaves nothing behind, as the savepoint is dropped.
/// `recent` is its app's usage before it, when the app has limits.
fn enqueue_in(
    tx: &Connection,
    m: &NewMessage,
    recent: Option<&Recent>,
) -> rusqlite::Result<Enqueued> {
    if let (Some(app), Some(key)) = (&m.app_id, &m.idempotency_key) {
        // Wins the key, or finds who did.
        let taken = tx
            .prepare_cached(sql::TAKE_IDEMPOTENCY_KEY)?
            .execute(params![app, key.key, m.id, m.now_unix, key.request])?;
        if taken == 0 {
            return tx.query_row(sql::IDEMPOTENT_TWIN, params![app, key.key], |r| {
                let status = r.opt_text(1)?;
                Ok(key.answer(
                    r.text(0)?,
                    status.as_deref().map(status_of).unwrap_or(Status::Sent),
                    r.opt_text(2)?.as_deref(),
                ))
            });
        }
    }
    // The limits are read and the message stored in one immediate
    // transaction: parallel submissions cannot both take the last place.
    if let (Some(recent), Some(limits)) = (recent, &m.limits) {
        if let Some(hit) = recent.hit(limits, m.now_unix, m.recipients.len() as u32) {
            return Ok(Enqueued::Limited(hit));
        }
    }
    let seq: i64 = tx.prepare_cached(sql::INSERT_MESSAGE)?.query_row(
        params![
            m.id,
            m.app_id,
            m.source,
            m.mail_from,
            m.subject,
            m.body.len() as i64,
            // The flag of a kept body; the bytes go in `message_bodies`.
            &[] as &[u8],
            m.now,
            m.now_unix,
            m.recipients.len() as i64,
            m.profile,
            m.message_id_header
        ],
        |r| r.get(0),
    )?;
    tx.prepare_cached(INSERT_BODY)?
        .execute(params![seq, m.body])?;
    let mut stmt = tx.prepare_cached(sql::INSERT_RECIPIENT)?;
    for (i, r) in m.recipients.iter().enumerate() {
        stmt.execute(params![seq, i as i64, r])?;
    }
    // In its savepoint, so that a usage read again later in the batch
    // ([`usage_of`]) counts it.
    if let Some(app) = &m.app_id {
        tx.prepare_cached(sql::ADD_APP_USAGE)?.execute(params![
            app,
            m.now_unix,
            1,
            m.recipients.len() as i64
        ])?;
    }
    Ok(Enqueued::New(m.id.clone()))
}

/// Stores a batch of submissions in one transaction, one savepoint each, and
/// commits once: one fsync for all of them. Each gets its own outcome; if the
/// commit fails, none is stored and every one gets the error.
pub(crate) fn enqueue_batch(
    c: &mut Connection,
    batch: Vec<NewMessage>,
) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
    let mut tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(m) = batch.iter().find(|m| m.idempotency_key.is_some()) {
        tx.execute(sql::DELETE_OLD_IDEMPOTENCY, [m.now_unix - DAY])?;
    }
    let mut out = Vec::with_capacity(batch.len());
    // Per app: (messages stored, the last one's time).
    let mut stored: BTreeMap<&str, (i64, &str)> = BTreeMap::new();
    let mut usages = Usages::new();
    for m in &batch {
        let recent = usage_of(&tx, &mut usages, m)?;
        let sp = tx.savepoint()?;
        match enqueue_in(&sp, m, recent) {
            Ok(done @ Enqueued::New(_)) => {
                sp.commit()?;
                if let Some(app) = &m.app_id {
                    let entry = stored.entry(app).or_insert((0, &m.now));
                    *entry = (entry.0 + 1, &m.now);
                    if let Some(usage) = usages.get_mut(app.as_str()) {
                        usage.add(m.now_unix, m.recipients.len() as u32);
                    }
                }
                out.push(Ok(done));
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
    for (app, (n, now)) in stored {
        tx.prepare_cached(sql::COUNT_APP_MESSAGES)?
            .execute(params![app, n, now])?;
    }
    tx.commit()?;
    Ok(out)
}

/// SQLite's group: [`enqueue_batch`] on the blocking pool.
fn sqlite_group(conn: Arc<Mutex<Connection>>) -> GroupFn {
    Arc::new(move |messages| Box::pin(on(conn.clone(), move |c| enqueue_batch(c, messages))))
}

/// Stores webhook deliveries in the caller's transaction.
fn insert_deliveries(
    tx: &rusqlite::Transaction<'_>,
    rows: &[NewDelivery],
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(sql::ENQUEUE_DELIVERY)?;
    for d in rows {
        stmt.execute(params![
            d.id,
            d.webhook_id,
            d.event,
            d.body,
            d.at,
            d.at_unix
        ])?;
    }
    Ok(())
}

/// Why the schema could not be brought up to date, in words an operator can
/// act on. Every pending step runs in one transaction, so a failure leaves
/// the file as it was.
fn migration_failed(path: &Path, e: &rusqlite_migration::Error) -> String {
    use rusqlite_migration::{Error, MigrationDefinitionError};
    let shown = path.display();
    match e {
        Error::RusqliteError {
            err: rusqlite::Error::SqliteFailure(f, _),
            ..
        } if f.code == rusqlite::ErrorCode::DiskFull => {
            let mb = std::fs::metadata(path)
                .map(|m| m.len().div_ceil(1_000_000))
                .unwrap_or(0);
            format!(
                "upgrading {shown}: the disk is full. The upgrade keeps a second copy of the waiting messages until it commits: free about {mb} MB (the database's size) and start again. The database was not changed."
            )
        }
        Error::MigrationDefinition(MigrationDefinitionError::DatabaseTooFarAhead) => format!(
            "{shown} was made by a newer Mailroom (its schema has steps this one does not know): run that version or a newer one, or restore a backup made by this one."
        ),
        Error::RusqliteError { err, .. } => format!("upgrading {shown}: {err}"),
        other => format!("upgrading {shown}: {other}"),
    }
}

/// The one-row writes that the delivery engine's transactions repeat for
/// every message (a day's count, an attempt; a claim is [`CLAIM_ONE`]), as
/// `OR FAIL`: a failing one fails its whole transaction anyway, so SQLite
/// need not keep a statement journal to undo it alone, which it otherwise
/// does for every page each of them touches.
struct OneRow {
    add_attempt: String,
    set_recipient: String,
    after_attempt: String,
    add_usage: String,
}

static ONE_ROW: std::sync::LazyLock<OneRow> = std::sync::LazyLock::new(|| {
    let or_fail = |sql: &str| {
        sql.replacen("INSERT INTO", "INSERT OR FAIL INTO", 1)
            .replacen("UPDATE ", "UPDATE OR FAIL ", 1)
    };
    OneRow {
        add_attempt: or_fail(sql::ADD_ATTEMPT),
        set_recipient: or_fail(sql::SET_RECIPIENT),
        after_attempt: or_fail(sql::AFTER_ATTEMPT),
        add_usage: or_fail(sql::ADD_USAGE),
    }
});

/// A submitted message's body, kept apart from its row
/// ([`crate::store::schema::MIGRATION_BODIES_APART`]).
const INSERT_BODY: &str = "INSERT INTO message_bodies (seq, body) VALUES (?1, ?2)";
/// Claims one message (`OR FAIL`, like [`ONE_ROW`]'s); its body is read
/// apart ([`BODY`]).
const CLAIM_ONE: &str = "UPDATE OR FAIL messages SET status = 'sending', locked_by = ?2, locked_until = ?3 WHERE seq = ?1
     RETURNING id, mail_from, attempt_count, created_unix, app_id";
/// The body of a message being claimed.
const BODY: &str = "SELECT body FROM message_bodies WHERE seq = ?1";
/// A due message whose body row is gone (a hand edit of the file) fails.
const BODY_MISSING: &str = "UPDATE messages SET status = 'failed', body = NULL,
        updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', ?2, 'unixepoch'),
        last_stage = 'send', last_code = NULL,
        last_message = 'Its content is missing from the database (table message_bodies), so it cannot be sent. Submit it again.'
     WHERE seq = ?1";
/// Its recipients, with it.
const BODY_MISSING_RECIPIENTS: &str =
    "UPDATE recipients SET status = 'failed' WHERE message_seq = ?1 AND status IN ('queued', 'deferred')";

/// Records one attempt; `false` when its claim is no longer held, and only
/// the attempt itself was kept ([`Queue::record_many`]).
fn record_in(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    r: &AttemptRecord,
    now: &str,
) -> Result<bool, StoreError> {
    let Some((seq, count, held)) = tx
        .prepare_cached(sql::MESSAGE_FOR_ATTEMPT)?
        .query_row(params![id, r.owner], |row| {
            Ok((row.int(0)?, row.int(1)?, row.int(2)? == 1))
        })
        .optional()?
    else {
        return Ok(false);
    };
    let a = &r.attempt;
    tx.prepare_cached(&ONE_ROW.add_attempt)?.execute(params![
        seq,
        a.at,
        a.ok as i64,
        a.stage.map(|s| s.as_str()),
        a.code,
        a.message,
        a.hint,
        r.transcript,
        a.transport.map(mailroom_shared::EnumId::id)
    ])?;
    if !held {
        return Ok(false);
    }
    let mut stmt = tx.prepare_cached(&ONE_ROW.set_recipient)?;
    for o in &r.recipients {
        stmt.execute(params![
            seq,
            o.idx as i64,
            o.status.as_str(),
            o.code,
            o.message
        ])?;
    }
    let (last_stage, last_code, last_message) = r.last_error();
    tx.prepare_cached(&ONE_ROW.after_attempt)?.execute(params![
        seq,
        r.status.as_str(),
        now,
        r.next_attempt_unix,
        if r.counts { count + 1 } else { count },
        last_stage,
        last_code,
        last_message,
        r.keeps_body() as i64
    ])?;
    // Its claim's count keeps the recipients the server took; an earlier
    // attempt's stay counted.
    match r.counted_recipients() {
        None => {}
        Some(0) => {
            tx.prepare_cached(sql::DROP_USAGE)?.execute([id])?;
        }
        Some(n) => {
            tx.prepare_cached(sql::SETTLE_USAGE)?
                .execute(params![id, n as i64])?;
        }
    }
    Ok(true)
}

fn app_json(app: &App) -> String {
    serde_json::to_string(&app.allowed_from).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl Queue for SqliteStore {
    async fn create_app(&self, app: App, key_hash: [u8; 32]) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                sql::CREATE_APP,
                params![
                    app.id,
                    app.name,
                    key_hash.to_vec(),
                    app_json(&app),
                    app.rewrite_from as i64,
                    app.created_at,
                    limits_json(&app.limits),
                    app.profile
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn app_name_taken(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.trim().to_string();
        self.with_conn(move |c| {
            Ok(c.query_row(sql::APP_NAME_TAKEN, [name], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(sql::LIST_APPS)?;
            let mut apps = stmt
                .query_map([], |r| sql::app_from(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let clients = c
                .prepare_cached(sql::OLD_KEY_CLIENTS)?
                .query_map([], |r| sql::old_key_client_from(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            sql::with_old_key_clients(&mut apps, clients);
            Ok(apps)
        })
        .await
    }

    async fn revoke_app(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| Ok(c.execute(sql::REVOKE_APP, [id])? > 0))
            .await
    }

    async fn end_old_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| Ok(c.execute(sql::END_OLD_KEY, [id])? > 0))
            .await
    }

    async fn note_old_key_use(
        &self,
        id: &str,
        at: i64,
        from: &str,
        refused: bool,
    ) -> Result<(), StoreError> {
        let (id, from) = (id.to_string(), from.to_string());
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            let use_ = rusqlite::params![id, at, from, i64::from(refused)];
            tx.execute(sql::NOTE_OLD_KEY_USE, use_)?;
            tx.execute(sql::NOTE_OLD_KEY_CLIENT, use_)?;
            tx.execute(
                sql::TRIM_OLD_KEY_CLIENTS,
                params![id, mailroom_shared::sending::OLD_KEY_CLIENTS as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn replace_app_key(
        &self,
        id: &str,
        key_hash: [u8; 32],
        replaced_at: &str,
        old_until: Option<i64>,
    ) -> Result<Option<App>, StoreError> {
        let (id, at) = (id.to_string(), replaced_at.to_string());
        self.with_conn(move |c| {
            Ok(c.query_row(
                sql::REPLACE_APP_KEY,
                params![id, key_hash.to_vec(), at, old_until],
                |r| sql::app_from(r),
            )
            .optional()?)
        })
        .await
    }

    async fn app_of_replaced_key(
        &self,
        key_hash: [u8; 32],
    ) -> Result<Option<ReplacedKey>, StoreError> {
        self.with_lookup(move |c| {
            Ok(c.prepare_cached(sql::APP_BY_REPLACED_KEY)?
                .query_row([key_hash.to_vec()], |r| sql::replaced_key_from(r))
                .optional()?)
        })
        .await
    }

    async fn update_app(&self, app: App) -> Result<Option<App>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.query_row(
                sql::UPDATE_APP,
                params![
                    app.id,
                    app.name,
                    app_json(&app),
                    app.rewrite_from as i64,
                    limits_json(&app.limits),
                    app.profile
                ],
                |r| sql::app_from(r),
            )
            .optional()?)
        })
        .await
    }

    async fn recent(&self, app_id: &str, now_unix: i64, rows: bool) -> Result<Recent, StoreError> {
        let app_id = app_id.to_string();
        self.with_conn(move |c| Ok(recent_in(c, &app_id, now_unix, rows, Waiting::All)?))
            .await
    }

    async fn app_by_key(&self, key_hash: [u8; 32]) -> Result<Option<App>, StoreError> {
        self.with_lookup(move |c| {
            Ok(c.prepare_cached(sql::APP_BY_KEY)?
                .query_row([key_hash.to_vec()], |r| sql::app_from(r))
                .optional()?)
        })
        .await
    }

    async fn app_by_id(&self, id: &str) -> Result<Option<(App, [u8; 32])>, StoreError> {
        let id = id.to_string();
        self.with_lookup(move |c| {
            Ok(c.prepare_cached(sql::APP_BY_ID)?
                .query_row([id], |row| {
                    let app = sql::app_from(row)?;
                    let hash: Vec<u8> = row.get(sql::APP_COLUMN_COUNT)?;
                    Ok((app, hash.try_into().unwrap_or([0u8; 32])))
                })
                .optional()?)
        })
        .await
    }

    async fn enqueue(&self, m: NewMessage) -> Result<Enqueued, StoreError> {
        Committer::enqueue(&self.committer, || sqlite_group(self.conn.clone()), m).await
    }

    async fn claim(
        &self,
        profile: &str,
        now_unix: i64,
        limit: u32,
        lease: &Lease,
    ) -> Result<Vec<Claimed>, StoreError> {
        let (owner, until) = (lease.owner.clone(), now_unix + lease.seconds);
        let profile = profile.to_string();
        self.with_conn_relaxed(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Due messages in turn per app, then lapsed leases.
            let mut seqs: Vec<i64> = due_in_turn(&tx, &profile, now_unix, limit as usize)?
                .into_iter()
                .map(|(seq, _)| seq)
                .collect();
            let left = limit as i64 - seqs.len() as i64;
            if left > 0 {
                let mut stmt = tx.prepare_cached(sql::LAPSED)?;
                seqs.extend(
                    stmt.query_map(params![now_unix, left, profile], |r| r.int(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?,
                );
            }
            let mut out = Vec::new();
            let mut bytes = 0u64;
            for seq in seqs {
                let Some(body) = tx
                    .prepare_cached(BODY)?
                    .query_row([seq], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                else {
                    // Only an edit of the file by hand can do this: never
                    // send an empty message in its place, and never let it
                    // hold up the queue; it fails, saying why.
                    tracing::error!(seq, "a queued message has no stored body; it fails");
                    tx.prepare_cached(BODY_MISSING)?
                        .execute(params![seq, now_unix])?;
                    tx.prepare_cached(BODY_MISSING_RECIPIENTS)?.execute([seq])?;
                    continue;
                };
                // The rest stay due for the next claim.
                bytes += body.len() as u64;
                if bytes > crate::queue::CLAIM_BYTES && !out.is_empty() {
                    break;
                }
                let claimed =
                    tx.prepare_cached(CLAIM_ONE)?
                        .query_row(params![seq, owner, until], |r| {
                            Ok(Claimed {
                                id: r.text(0)?,
                                mail_from: r.text(1)?,
                                body,
                                attempt_count: r.int(2)? as u32,
                                created_unix: r.int(3)?,
                                app_id: r.opt_text(4)?,
                                recipients: Vec::new(),
                                transport: None,
                                owner: owner.clone(),
                            })
                        })?;
                let recipients = tx
                    .prepare_cached(sql::TO_DELIVER)?
                    .query_map([seq], |r| Ok((r.int(0)? as u32, r.text(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                out.push(Claimed {
                    recipients,
                    ..claimed
                });
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn release(&self, ids: Vec<String>, owner: &str) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let owner = owner.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(sql::RELEASE)?;
                let mut give_back = tx.prepare_cached(sql::DROP_USAGE)?;
                for id in &ids {
                    if stmt.execute(params![id, owner])? > 0 {
                        give_back.execute([id])?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn record_many(
        &self,
        batch: Arc<[(String, AttemptRecord)]>,
        now: &str,
        events: Arc<[NewDelivery]>,
    ) -> Result<(), StoreError> {
        let now = now.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut lapsed = Vec::new();
            for (id, r) in batch.iter() {
                if !record_in(&tx, id, r, &now)? {
                    lapsed.push(id.as_str());
                }
            }
            insert_deliveries(&tx, &super::held_events(&events, &lapsed))?;
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
        self.with_conn(move |c| Ok(c.execute(sql::RENEW, params![id, owner, until])? > 0))
            .await
    }

    async fn requeue_sending(&self, _now_unix: i64) -> Result<u64, StoreError> {
        // One process: whatever is `sending` at start was left by a crash.
        self.with_conn(|c| {
            Ok(c.execute(
                "UPDATE messages SET status = 'queued', locked_by = NULL, locked_until = NULL WHERE status = 'sending'",
                [],
            )? as u64)
        })
        .await
    }

    async fn expire_some(
        &self,
        cutoff_unix: i64,
        now: &str,
        limit: u32,
        events: ExpiryEvents,
    ) -> Result<Vec<Expired>, StoreError> {
        let now = now.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let due = tx
                .prepare_cached(sql::EXPIRING)?
                .query_map(params![cutoff_unix, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut ended = Vec::with_capacity(due.len());
            let mut rows = Vec::new();
            for (seq, id, app, partly, missed) in due {
                let status = if partly { Status::Sent } else { Status::Failed };
                tx.prepare_cached(sql::END_EXPIRED)?
                    .execute(params![seq, status.as_str(), now])?;
                tx.prepare_cached(sql::EXPIRED_RECIPIENTS)?.execute([seq])?;
                rows.extend(events(&id, status));
                let missed = missed as u64;
                ended.push(Expired {
                    id,
                    app,
                    status,
                    missed,
                });
            }
            insert_deliveries(&tx, &rows)?;
            tx.commit()?;
            Ok(ended)
        })
        .await
    }

    async fn purge(&self, cutoff: &str) -> Result<u64, StoreError> {
        Ok(self.purge_in_batches(PURGE, cutoff, PURGE_BATCH).await?.0)
    }

    async fn oldest_waiting_unix(&self, profile: &str) -> Result<Option<i64>, StoreError> {
        let profile = profile.to_string();
        self.with_read(move |c| {
            Ok(c.query_row(sql::OLDEST_WAITING, [profile], |r| {
                r.get::<_, Option<i64>>(0)
            })?)
        })
        .await
    }

    async fn counts(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        self.with_read(|c| {
            let mut counts: BTreeMap<Status, u64> = Status::ALL.iter().map(|s| (*s, 0)).collect();
            let mut stmt = c.prepare(sql::COUNTS)?;
            for row in stmt.query_map([], |r| Ok((r.text(0)?, r.int(1)?)))? {
                let (status, n) = row?;
                counts.insert(status_of(&status), n as u64);
            }
            Ok(counts)
        })
        .await
    }

    async fn list(&self, f: ListFilter) -> Result<(Vec<Summary>, Option<String>), StoreError> {
        self.with_read(move |c| {
            let limit = f.limit.clamp(1, 200);
            let like = f.search_pattern();
            let mut stmt = c.prepare_cached(&sql::list(sql::SQLITE_TO))?;
            let mut rows = stmt
                .query_map(
                    params![
                        f.status.map(|s| s.as_str()),
                        f.app,
                        like,
                        f.before,
                        limit as i64 + 1,
                        f.profile,
                        f.search_id()
                    ],
                    |r| sql::summary_from(r),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next = page_end(&mut rows, limit);
            Ok((rows, next))
        })
        .await
    }

    async fn details(&self, id: &str) -> Result<Option<Details>, StoreError> {
        let id = id.to_string();
        self.with_read(move |c| {
            let Some(summary) = summary_by_id(c, &id)? else {
                return Ok(None);
            };
            let recipients = c
                .prepare_cached(sql::RECIPIENTS_OF)?
                .query_map([&id], |r| sql::recipient_from(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let attempts = c
                .prepare_cached(sql::ATTEMPTS_OF)?
                .query_map([&id], |r| sql::attempt_from(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // Gone since the summary was read (a purge): no id, no next try.
            let (message_id, next) = c
                .prepare_cached(sql::HEADER_ID_AND_NEXT_ATTEMPT_OF)?
                .query_row([&id], |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<i64>>(1)?))
                })
                .optional()?
                .unwrap_or_default();
            Ok(Some(Details {
                summary,
                recipients,
                attempts,
                next_attempt_at: next.and_then(crate::clock::rfc3339_at),
                message_id,
            }))
        })
        .await
    }

    async fn retry(&self, id: &str, now: &str, now_unix: i64) -> Result<Summary, ChangeError> {
        let (id, now) = (id.to_string(), now.to_string());
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((status, has_body)) = status_and_body(&tx, &id)? else {
                return Ok(Err(ChangeError::NotFound));
            };
            if let Err(e) = super::queue::may_retry(status, has_body) {
                return Ok(Err(e));
            }
            tx.execute(sql::RETRY, params![id, now, now_unix])?;
            tx.execute(sql::RETRY_RECIPIENTS, [&id])?;
            let s = summary_by_id(&tx, &id)?;
            tx.commit()?;
            Ok(s.ok_or(ChangeError::NotFound))
        })
        .await?
    }

    async fn cancel(&self, id: &str, now: &str) -> Result<Summary, ChangeError> {
        let (id, now) = (id.to_string(), now.to_string());
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((status, _)) = status_and_body(&tx, &id)? else {
                return Ok(Err(ChangeError::NotFound));
            };
            if let Err(e) = super::queue::may_cancel(status) {
                return Ok(Err(e));
            }
            tx.execute(sql::CANCEL, params![id, now])?;
            tx.execute(sql::CANCEL_RECIPIENTS, [&id])?;
            let s = summary_by_id(&tx, &id)?;
            tx.commit()?;
            Ok(s.ok_or(ChangeError::NotFound))
        })
        .await?
    }

    async fn pause_state(&self, profile: &str) -> Result<Option<Paused>, StoreError> {
        let profile = profile.to_string();
        self.with_lookup(move |c| {
            Ok(c.prepare_cached(sql::PAUSE)?
                .query_row([profile], |r| sql::paused_from(r))
                .optional()?)
        })
        .await
    }

    async fn pauses(&self) -> Result<BTreeMap<String, Paused>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(sql::PAUSES)?;
            let rows = stmt.query_map([], |r| Ok((r.text(5)?, sql::paused_from(r)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_pause(&self, profile: &str, p: Option<Paused>) -> Result<(), StoreError> {
        let profile = profile.to_string();
        self.with_conn(move |c| {
            match p {
                None => {
                    c.execute(sql::RESUME, [profile])?;
                }
                Some(p) => {
                    c.execute(
                        sql::SET_PAUSE,
                        params![
                            p.since,
                            p.stage.as_str(),
                            p.code,
                            p.message,
                            p.hint,
                            profile
                        ],
                    )?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn profile_usage(
        &self,
        profile: &str,
        now_unix: i64,
    ) -> Result<mailroom_shared::profiles::ProfileUsage, StoreError> {
        let profile = profile.to_string();
        self.with_conn(move |c| {
            Ok(c.prepare_cached(sql::PROFILE_USAGE)?
                .query_row(params![profile, now_unix - DAY, now_unix - 60], |r| {
                    sql::usage_from(r)
                })?)
        })
        .await
    }

    async fn take_quota(
        &self,
        profile: &str,
        messages: Vec<(String, u32)>,
        limit: Option<u32>,
        now_unix: i64,
    ) -> Result<(usize, Option<i64>), StoreError> {
        let profile = profile.to_string();
        let recipients: Vec<u32> = messages.iter().map(|(_, r)| *r).collect();
        self.with_conn_relaxed(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let since = now_unix - DAY;
            let used = match limit {
                None => 0,
                Some(_) => tx
                    .prepare_cached(sql::PROFILE_USED)?
                    .query_row(params![profile, since], |r| r.int(0))?,
            };
            let sends = if super::queue::quota_fits_all(used, &recipients, limit) {
                Vec::new()
            } else {
                tx.prepare_cached(sql::PROFILE_SENDS)?
                    .query_map(params![profile, since], |r| Ok((r.int(0)?, r.int(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            let (n, next) = super::queue::quota_fits(&sends, &recipients, limit, now_unix);
            {
                let mut add = tx.prepare_cached(&ONE_ROW.add_usage)?;
                for (id, r) in &messages[..n] {
                    add.execute(params![profile, now_unix, *r as i64, id])?;
                }
            }
            tx.commit()?;
            Ok((n, next))
        })
        .await
    }

    async fn quota_wait(
        &self,
        id: &str,
        until_unix: i64,
        message: &str,
        now: &str,
        now_unix: i64,
        reserved: bool,
    ) -> Result<(), StoreError> {
        let (id, message, now) = (id.to_string(), message.to_string(), now.to_string());
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let waits = tx.execute(
                sql::QUOTA_WAIT,
                params![id, now, until_unix, message, now_unix],
            )?;
            if waits > 0 && reserved {
                tx.execute(sql::DROP_USAGE, [&id])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn take_connection_slot(
        &self,
        profile: &str,
        slot: u32,
        owner: &str,
        now_unix: i64,
        until_unix: i64,
    ) -> Result<bool, StoreError> {
        let (profile, owner) = (profile.to_string(), owner.to_string());
        self.with_conn(move |c| {
            Ok(c.prepare_cached(sql::TAKE_SLOT)?.execute(params![
                profile,
                slot as i64,
                owner,
                until_unix,
                now_unix
            ])? > 0)
        })
        .await
    }

    async fn free_connection_slot(
        &self,
        profile: &str,
        slot: u32,
        owner: &str,
    ) -> Result<(), StoreError> {
        let (profile, owner) = (profile.to_string(), owner.to_string());
        self.with_conn(move |c| {
            c.execute(sql::FREE_SLOT, params![profile, slot as i64, owner])?;
            Ok(())
        })
        .await
    }

    async fn purge_usage(&self, now_unix: i64) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(sql::PURGE_USAGE, [now_unix - DAY])?;
            c.execute(sql::PURGE_APP_USAGE, [now_unix - DAY])?;
            Ok(())
        })
        .await
    }
}

/// The first `limit` due messages in turn per app ([`crate::queue::in_turn`]).
fn due_in_turn(
    c: &Connection,
    profile: &str,
    now: i64,
    limit: usize,
) -> rusqlite::Result<Vec<(i64, i64)>> {
    let n = limit as i64;
    let rows = |stmt: &mut rusqlite::CachedStatement<'_>, p: &[&dyn rusqlite::ToSql]| {
        stmt.query_map(p, |r| Ok((r.int(0)?, r.int(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()
    };
    let mut groups = Vec::new();
    let mut last = String::new();
    loop {
        let next: Option<String> = c
            .prepare_cached(sql::NEXT_APP)?
            .query_row([&last, profile], |r| r.opt_text(0))?;
        let Some(app) = next else { break };
        let mut stmt = c.prepare_cached(sql::DUE_OF_APP)?;
        let queued = rows(&mut stmt, &[&app, &"queued", &now, &n, &profile])?;
        let deferred = rows(&mut stmt, &[&app, &"deferred", &now, &n, &profile])?;
        groups.push(crate::queue::merged(queued, deferred));
        last = app;
    }
    let mut stmt = c.prepare_cached(sql::DUE_WITHOUT_APP)?;
    let queued = rows(&mut stmt, &[&"queued", &now, &n, &profile])?;
    let deferred = rows(&mut stmt, &[&"deferred", &now, &n, &profile])?;
    groups.push(crate::queue::merged(queued, deferred));
    Ok(crate::queue::in_turn(groups, limit))
}

/// A message's status and whether it still has its body.
fn status_and_body(c: &Connection, id: &str) -> rusqlite::Result<Option<(Status, bool)>> {
    c.query_row(sql::STATUS_AND_BODY, [id], |r| {
        Ok((status_of(&r.text(0)?), r.int(1)? != 0))
    })
    .optional()
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn add_webhook(&self, row: WebhookRow) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            let w = &row.webhook;
            c.execute(
                sql::ADD_WEBHOOK,
                params![
                    w.id,
                    w.url,
                    serde_json::to_string(&w.events).unwrap_or_default(),
                    w.format.id(),
                    row.secret,
                    w.created_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(sql::WEBHOOKS)?;
            let rows = stmt.query_map([], |r| sql::webhook_from(r))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn update_webhook(
        &self,
        w: mailroom_shared::webhooks::Webhook,
    ) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            let events = serde_json::to_string(&w.events).unwrap_or_default();
            Ok(c.execute(
                sql::UPDATE_WEBHOOK,
                params![w.id, w.url, events, w.format.id()],
            )? > 0)
        })
        .await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| Ok(c.execute(sql::DELETE_WEBHOOK, params![id])? > 0))
            .await
    }

    async fn replace_webhook_secret(
        &self,
        id: &str,
        secret: Vec<u8>,
        previous_until: i64,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            Ok(c.execute(
                sql::REPLACE_WEBHOOK_SECRET,
                params![id, secret, previous_until],
            )? > 0)
        })
        .await
    }

    async fn forget_old_webhook_secrets(&self, now_unix: i64) -> Result<u64, StoreError> {
        self.with_conn(move |c| {
            Ok(c.execute(sql::FORGET_OLD_WEBHOOK_SECRETS, params![now_unix])? as u64)
        })
        .await
    }

    async fn end_old_webhook_secret(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| Ok(c.execute(sql::END_OLD_WEBHOOK_SECRET, [id])? > 0))
            .await
    }

    async fn enqueue_deliveries(&self, rows: Vec<NewDelivery>) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            insert_deliveries(&tx, &rows)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        owner: &str,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let owner = owner.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let due = {
                let mut stmt = tx.prepare_cached(sql::CLAIM_DELIVERIES)?;
                let rows = stmt.query_map(params![now, limit, owner, now + lease], |r| {
                    sql::due_delivery_from(r)
                })?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            tx.commit()?;
            Ok(due)
        })
        .await
    }

    async fn finish_delivery(
        &self,
        due: &DueDelivery,
        r: DeliveryResult,
    ) -> Result<(), StoreError> {
        let (seq, webhook, owner) = (due.seq, due.webhook_id.clone(), due.owner.clone());
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let finished = tx.execute(
                sql::FINISH_DELIVERY,
                params![
                    seq,
                    r.attempts,
                    r.status,
                    r.next_unix,
                    r.last_status,
                    r.last_error,
                    owner
                ],
            )?;
            if finished == 0 {
                return Ok(());
            }
            let mark = if r.status == "delivered" {
                sql::WEBHOOK_SUCCEEDED
            } else {
                sql::WEBHOOK_FAILED
            };
            tx.execute(mark, params![webhook, r.at])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn deliveries(
        &self,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Vec<mailroom_shared::webhooks::Delivery>, StoreError> {
        let id = webhook_id.to_string();
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(sql::DELIVERIES)?;
            let rows = stmt.query_map(params![id, limit], |r| sql::delivery_from(r))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn purge_deliveries(&self, cutoff: &str) -> Result<u64, StoreError> {
        Ok(self
            .purge_in_batches(PURGE_DELIVERIES, cutoff, PURGE_BATCH)
            .await?
            .0)
    }

    async fn settle_delivery(&self, seq: i64, body: Option<String>) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            match body {
                Some(body) => c.execute(sql::SET_DELIVERY_BODY, params![seq, body])?,
                None => c.execute(sql::DROP_DELIVERY, params![seq])?,
            };
            Ok(())
        })
        .await
    }

    async fn last_event_unix(
        &self,
        event: &str,
        about: super::EventAbout<'_>,
    ) -> Result<Option<i64>, StoreError> {
        let (field, value) = about.field();
        let (event, value) = (event.to_string(), value.to_string());
        self.with_conn(move |c| {
            Ok(
                c.query_row(sql::LAST_EVENT, params![event, value, field], |r| {
                    r.get::<_, Option<i64>>(0)
                })?,
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::IdempotencyKey;
    use crate::store::{transcript_without_content, SCHEMA};
    use rusqlite_migration::{Migrations, M};

    #[test]
    fn the_database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        SqliteStore::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn transcripts_lose_the_content_and_keep_the_replies() {
        let t = "C: MAIL FROM:<a@b.c>\nS: 250 ok\nC: DATA\nS: 354 go ahead\nC: Subject: secret\nC: \nC: the body\nC: .\nS: 250 2.0.0 OK queued\nC: QUIT\n";
        let stripped = transcript_without_content(t);
        assert_eq!(stripped, "C: MAIL FROM:<a@b.c>\nS: 250 ok\nC: DATA\nS: 354 go ahead\nC: (message content, not kept)\nC: .\nS: 250 2.0.0 OK queued\nC: QUIT\n");
        assert_eq!(
            transcript_without_content(&stripped),
            stripped,
            "idempotent"
        );
        let cut = "S: 354 go\nC: body line\n";
        assert!(!transcript_without_content(cut).contains("body line"));
    }

    #[tokio::test]
    async fn a_key_taken_before_requests_had_digests_answers_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        store
            .enqueue(message("msg_old", b"x".to_vec()))
            .await
            .unwrap();
        // As step 20 left a key taken by an earlier release: no digest.
        store
            .with_conn(|c| {
                c.execute(
                    "INSERT INTO idempotency (app_id, key, message_id, created_unix) VALUES ('app_1', 'k', 'msg_old', 1795000000)",
                    [],
                )
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        let mut again = message("msg_new", b"y".to_vec());
        again.idempotency_key = Some(IdempotencyKey {
            key: "k".into(),
            request: "any".into(),
        });
        assert_eq!(
            store.enqueue(again).await.unwrap(),
            Enqueued::Repeat("msg_old".into(), Status::Queued)
        );
        assert_eq!(store.counts().await.unwrap()[&Status::Queued], 1);
    }

    /// Claims up to eight due messages of the default profile.
    async fn claim_due(store: &SqliteStore) -> Vec<Claimed> {
        let lease = Lease {
            owner: "srv_test".into(),
            seconds: 60,
        };
        store
            .claim(DEFAULT_PROFILE, 1_795_000_100, 8, &lease)
            .await
            .unwrap()
    }

    /// A database file with the first `steps` shared schema steps only, as
    /// an earlier release left it.
    fn database_at(steps: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailroom.db");
        let mut c = Connection::open(&path).unwrap();
        Migrations::new(SCHEMA[..steps].iter().map(|sql| M::up(sql)).collect())
            .to_latest(&mut c)
            .unwrap();
        (dir, path)
    }

    #[test]
    fn recipients_of_messages_cancelled_before_are_cancelled_at_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailroom.db");
        let step = SCHEMA
            .iter()
            .position(|s| *s == crate::store::schema::MIGRATION_CANCELLED_RECIPIENTS)
            .unwrap();
        {
            // The release before: every step but this one (and SQLite's own).
            let mut c = Connection::open(&path).unwrap();
            migrations().to_version(&mut c, step + 1).unwrap();
            c.execute_batch(
                "INSERT INTO messages (id, mail_from, subject, size, status, created_at, created_unix, updated_at, next_attempt_unix)
                   VALUES ('msg_c', 'a@b.c', 'gone', 5, 'cancelled', 't', 1, 't', 0),
                          ('msg_q', 'a@b.c', 'waits', 5, 'queued', 't', 1, 't', 0);
                 INSERT INTO recipients (message_seq, idx, address, status) VALUES
                   (1, 0, 'x@y.z', 'queued'), (1, 1, 'w@y.z', 'sent'), (1, 2, 'v@y.z', 'deferred'),
                   (2, 0, 'x@y.z', 'queued');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let c = store.conn.lock().unwrap();
        let statuses: Vec<String> = c
            .prepare("SELECT status FROM recipients ORDER BY message_seq, idx")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(statuses, ["cancelled", "sent", "cancelled", "queued"]);
    }

    #[test]
    fn a_release_database_opens_with_its_data_and_orphans_go() {
        // A database as the last release left it: its six schema steps, a
        // message with a recipient and an attempt, and an orphan recipient.
        let (_dir, path) = database_at(6);
        {
            let c = Connection::open(&path).unwrap();
            // An orphan can only come from a SQLite built without foreign
            // keys (the bundled one turns them on by default).
            c.pragma_update(None, "foreign_keys", "OFF").unwrap();
            c.execute_batch(
                "INSERT INTO apps (id, name, key_hash, allowed_from, rewrite_from, created_at)
                   VALUES ('app_old', 'Old', x'00', '[]', 0, '2026-11-01T00:00:00Z');
                 INSERT INTO messages (id, app_id, mail_from, subject, size, body, status, created_at, created_unix, updated_at, next_attempt_unix)
                   VALUES ('msg_old', 'app_old', 'a@b.c', 'kept', 5, x'41', 'queued', '2026-11-01T00:00:00Z', 1790000000, '2026-11-01T00:00:00Z', 0);
                 INSERT INTO recipients (message_seq, idx, address, status) VALUES (1, 0, 'x@y.z', 'queued'), (1, 1, 'w@y.z', 'queued');
                 INSERT INTO attempts (message_seq, n, at, ok, message, transcript)
                   VALUES (1, 1, '2026-11-01T00:00:00Z', 0, 'deferred', 'S: 354 go\nC: secret body\nC: .\nS: 451 later\n');
                 INSERT INTO recipients (message_seq, idx, address, status) VALUES (99, 0, 'orphan@y.z', 'queued');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let c = store.conn.lock().unwrap();
        let (subject, rcpts): (String, i64) = c
            .query_row(
                "SELECT subject, rcpt_count FROM messages WHERE id = 'msg_old'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (subject.as_str(), rcpts),
            ("kept", 2),
            "data kept, new column filled"
        );
        let limits: Option<String> = c
            .query_row("SELECT limits FROM apps", [], |r| r.get(0))
            .unwrap();
        assert_eq!(limits, None, "an old app gets the default limits");
        let orphans: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM recipients WHERE message_seq = 99",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
        let t: String = c
            .query_row("SELECT transcript FROM attempts", [], |r| r.get(0))
            .unwrap();
        assert!(!t.contains("secret body") && t.contains("451 later"), "{t}");
        // And the cascade works now.
        c.execute("DELETE FROM messages WHERE id = 'msg_old'", [])
            .unwrap();
        let left: i64 = c
            .query_row("SELECT COUNT(*) FROM recipients", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "ON DELETE CASCADE");
    }

    /// Bodies live apart from their message's row (the row changes on every
    /// claim and attempt): a database from before moves them there, a claim
    /// reads them, and a sent, cancelled or deleted message takes its body
    /// with it.
    #[tokio::test]
    async fn bodies_are_kept_apart_and_go_with_their_message() {
        // As the release before this step left it: bodies in the row.
        let (_dir, path) = database_at(15);
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "INSERT INTO messages (id, mail_from, subject, size, body, status, created_at, created_unix, updated_at, next_attempt_unix, rcpt_count)
                   VALUES ('msg_old', 'a@b.c', 'kept', 9, CAST('old body!' AS BLOB), 'queued', '2026-11-01T00:00:00Z', 1790000000, '2026-11-01T00:00:00Z', 0, 1);
                 INSERT INTO recipients (message_seq, idx, address, status) VALUES (1, 0, 'x@y.z', 'queued');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let count = |store: &SqliteStore, sql: &'static str| {
            let store = store.clone();
            async move {
                store
                    .with_conn(move |c| Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))?))
                    .await
                    .unwrap()
            }
        };
        let in_rows = "SELECT COUNT(*) FROM messages WHERE length(body) > 0";
        let apart = "SELECT COUNT(*) FROM message_bodies";
        assert_eq!(count(&store, in_rows).await, 0, "moved out of the rows");
        assert_eq!(count(&store, apart).await, 1);
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for (id, body) in [("msg_new", big.clone()), ("msg_cancel", b"c".to_vec())] {
            let mut m = message(id, body);
            m.app_id = None;
            store.enqueue(m).await.unwrap();
        }
        assert_eq!(count(&store, in_rows).await, 0, "new bodies too");
        assert_eq!(count(&store, apart).await, 3);
        store
            .cancel("msg_cancel", "2026-11-26T00:00:01Z")
            .await
            .unwrap();
        assert_eq!(count(&store, apart).await, 2, "a cancel drops the body");
        let claimed = claim_due(&store).await;
        let body_of = |id: &str| claimed.iter().find(|m| m.id == id).unwrap().body.clone();
        assert_eq!(claimed.len(), 2);
        assert_eq!(body_of("msg_old"), b"old body!");
        assert_eq!(body_of("msg_new"), big);
        let sent = AttemptRecord {
            attempt: mailroom_shared::sending::Attempt {
                at: "2026-11-26T00:00:02Z".into(),
                ok: true,
                stage: None,
                code: None,
                message: "accepted".into(),
                hint: None,
                transport: None,
            },
            transcript: None,
            recipients: vec![crate::store::queue::RecipientOutcome {
                idx: 0,
                status: Status::Sent,
                code: None,
                message: None,
            }],
            status: Status::Sent,
            next_attempt_unix: 1_795_000_100,
            counts: true,
            owner: "srv_test".into(),
        };
        store
            .record("msg_new", sent, "2026-11-26T00:00:02Z")
            .await
            .unwrap();
        assert_eq!(
            count(&store, apart).await,
            1,
            "a sent message drops its body"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM messages WHERE body IS NULL").await,
            2
        );
        store
            .with_conn(|c| Ok(c.execute("DELETE FROM messages WHERE id = 'msg_old'", [])?))
            .await
            .unwrap();
        assert_eq!(
            count(&store, apart).await,
            0,
            "a deleted message drops its body"
        );
        // A body row removed by hand: that message fails with the reason,
        // and the claim goes on to the next.
        for id in ["msg_lost", "msg_next"] {
            let mut m = message(id, b"x".to_vec());
            m.app_id = None;
            store.enqueue(m).await.unwrap();
        }
        store
            .with_conn(|c| {
                Ok(c.execute(
                    "DELETE FROM message_bodies WHERE seq = (SELECT seq FROM messages WHERE id = 'msg_lost')",
                    [],
                )?)
            })
            .await
            .unwrap();
        let claimed = claim_due(&store).await;
        let ids: Vec<&str> = claimed.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["msg_next"]);
        let lost = store.details("msg_lost").await.unwrap().unwrap();
        assert_eq!(lost.summary.status, Status::Failed);
        let said = lost
            .summary
            .last_error
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(said.contains("content is missing"), "{said}");
        assert!(lost.recipients.iter().all(|r| r.status == Status::Failed));
    }

    #[test]
    fn the_writes_repeated_per_message_keep_no_statement_journal() {
        let all = [
            &ONE_ROW.add_attempt,
            &ONE_ROW.set_recipient,
            &ONE_ROW.after_attempt,
            &ONE_ROW.add_usage,
        ];
        let mut c = Connection::open_in_memory().unwrap();
        migrations().to_latest(&mut c).unwrap();
        for sql in all {
            assert!(
                sql.starts_with("INSERT OR FAIL INTO ") || sql.starts_with("UPDATE OR FAIL "),
                "{sql}"
            );
            c.prepare(sql).unwrap();
        }
    }

    /// Claims find each app's due messages in the profile's index, and an
    /// app's limits read its own indexes: none of them scans the queue.
    #[test]
    fn claims_and_counts_read_their_indexes() {
        let mut c = Connection::open_in_memory().unwrap();
        migrations().to_latest(&mut c).unwrap();
        let plan = |sql: &str, n: usize| {
            let params: Vec<&dyn rusqlite::ToSql> = vec![&"x"; n];
            c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params.as_slice(), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap()
                .join("; ")
        };
        for (sql, n) in [
            (sql::NEXT_APP, 2),
            (sql::DUE_OF_APP, 5),
            (sql::DUE_WITHOUT_APP, 4),
        ] {
            let p = plan(sql, n);
            assert!(p.contains("INDEX messages_profile_due"), "{sql}: {p}");
        }
        for (sql, n) in [(sql::WAITING, 1), (sql::WAITING_UP_TO, 2)] {
            let p = plan(sql, n);
            assert!(p.contains("INDEX messages_app_status"), "{sql}: {p}");
        }
        let p = plan(sql::RECENT, 2);
        assert!(
            p.contains("app_usage USING PRIMARY KEY")
                || p.contains("INDEX sqlite_autoindex_app_usage"),
            "{p}"
        );
        assert!(!p.contains("messages"), "{p}");
        // Each failed sign-in or wrong key first deletes the expired ones.
        let p = plan(sql::DELETE_OLD_FAILURES, 1);
        assert!(p.contains("INDEX sign_in_failures_first"), "{p}");
        // Housekeeping's purges, every minute, through their partial indexes.
        for (ours, shared, index) in [
            (PURGE, sql::PURGE, "messages_final_age"),
            (
                PURGE_DELIVERIES,
                sql::PURGE_DELIVERIES,
                "webhook_deliveries_final_age",
            ),
        ] {
            let (_, condition) = shared.split_once(" WHERE ").unwrap();
            assert!(
                ours.contains(&format!("INDEXED BY {index} WHERE {condition} LIMIT ?2)")),
                "{ours}"
            );
            let p = plan(ours, 2);
            assert!(p.contains(&format!("INDEX {index} (")), "{p}");
        }
        // Each group commit with a keyed submission deletes a day's old keys.
        let p = plan(sql::DELETE_OLD_IDEMPOTENCY, 1);
        assert!(p.contains("INDEX idempotency_created"), "{p}");
    }

    #[test]
    fn an_upgrade_that_cannot_run_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailroom.db");
        std::fs::write(&path, vec![0u8; 2_500_000]).unwrap();
        let full = rusqlite_migration::Error::RusqliteError {
            query: String::new(),
            err: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full".into()),
            ),
        };
        let said = migration_failed(&path, &full);
        assert!(said.contains("the disk is full"), "{said}");
        assert!(said.contains("free about 3 MB"), "{said}");
        assert!(said.contains("was not changed"), "{said}");
        // A database a newer release made: the real store refuses it.
        std::fs::remove_file(&path).unwrap();
        {
            let mut c = Connection::open(&path).unwrap();
            migrations().to_latest(&mut c).unwrap();
            c.pragma_update(None, "user_version", 999).unwrap();
        }
        let err = SqliteStore::open(&path).err().expect("refused").to_string();
        assert!(err.contains("made by a newer Mailroom"), "{err}");
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

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
            profile: DEFAULT_PROFILE.into(),
            message_id_header: None,
        }
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
        let with = |id: &str, key: Option<(&str, &str)>| {
            let mut m = message(id, b"x".to_vec());
            m.limits = Some(limits);
            m.idempotency_key = key.map(|(key, request)| IdempotencyKey {
                key: key.into(),
                request: request.into(),
            });
            m
        };
        let batch = vec![
            with("msg_1", Some(("k", "first"))),
            with("msg_twin", Some(("k", "first"))),
            with("msg_2", None),
            with("msg_3", None),
            with("msg_other", Some(("k", "another request"))),
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
        assert_eq!(
            out[4].as_ref().unwrap(),
            &Enqueued::KeyReused("msg_1".into()),
            "the key with another request"
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

    /// Claims and daily counts commit without waiting for the disk; every
    /// other write after them (acknowledgements above all) is durable
    /// again, also after one of them failed.
    #[tokio::test]
    async fn relaxed_writes_leave_the_connection_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        let level = |store: &SqliteStore| {
            let store = store.clone();
            async move {
                store
                    .with_conn(|c| {
                        Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?)
                    })
                    .await
                    .unwrap()
            }
        };
        const FULL: i64 = 2;
        assert_eq!(level(&store).await, FULL);
        store
            .enqueue(message("msg_1", b"x".to_vec()))
            .await
            .unwrap();
        let claimed = claim_due(&store).await;
        assert_eq!(claimed.len(), 1);
        let seen = store
            .with_conn_relaxed(|c| {
                Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?)
            })
            .await
            .unwrap();
        assert_eq!(seen, 1, "NORMAL inside");
        assert_eq!(level(&store).await, FULL);
        let failed: Result<(), _> = store
            .with_conn_relaxed(|c| Ok(c.execute_batch("INSERT INTO no_such_table VALUES (1)")?))
            .await;
        assert!(failed.is_err());
        assert_eq!(level(&store).await, FULL);
    }

    /// A bug that panics while it holds the one connection (inside a
    /// transaction, with commits relaxed) costs that call only: the store
    /// rolls the half-done transaction back, is durable again, and serves
    /// every later call, instead of refusing them all as "poisoned".
    #[tokio::test]
    async fn a_panic_holding_the_connection_costs_that_call_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        let panicked: Result<(), _> = store
            .with_conn_relaxed(|c| {
                let tx = c.transaction()?;
                tx.execute_batch("CREATE TABLE half_done (x)")?;
                panic!("a bug inside a transaction");
            })
            .await;
        assert!(panicked.is_err());
        // A transaction begun by hand, with no guard to roll it back.
        let panicked: Result<(), _> = store
            .with_conn(|c| {
                c.execute_batch("BEGIN IMMEDIATE; CREATE TABLE by_hand (x)")?;
                panic!("a bug after BEGIN");
            })
            .await;
        assert!(panicked.is_err());
        store
            .enqueue(message("msg_1", b"x".to_vec()))
            .await
            .expect("the store serves on");
        assert_eq!(claim_due(&store).await.len(), 1);
        let (level, tables, autocommit) = store
            .with_conn(|c| {
                let level: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                let tables: i64 = c.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name IN ('half_done', 'by_hand')",
                    [],
                    |r| r.get(0),
                )?;
                Ok((level, tables, c.is_autocommit()))
            })
            .await
            .unwrap();
        assert_eq!(level, 2, "commits wait for the disk again (FULL)");
        assert_eq!(tables, 0, "both half-done transactions rolled back");
        assert!(autocommit, "no transaction left open");
    }

    /// The administrator's reads that may cover the whole retained queue
    /// (counts, a search, a message's details, the oldest waiting) and the
    /// writes do not wait for each other: each answers while the other
    /// connection is held, and a read sees what was committed before it.
    #[tokio::test]
    // Holding one connection's lock while the other answers is the test.
    #[allow(clippy::await_holding_lock)]
    async fn reads_and_writes_never_wait_for_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        let soon = std::time::Duration::from_secs(10);
        store
            .enqueue(message("msg_1", b"x".to_vec()))
            .await
            .unwrap();
        {
            // The writer is busy (a long claim or commit, say).
            let _writing = store.conn.lock().unwrap();
            let counts = tokio::time::timeout(soon, store.counts())
                .await
                .expect("counts answer while the writer is busy")
                .unwrap();
            assert_eq!(counts[&Status::Queued], 1);
            let filter = ListFilter {
                q: Some("c@d".into()),
                limit: 50,
                ..ListFilter::default()
            };
            let (found, _) = tokio::time::timeout(soon, store.list(filter))
                .await
                .expect("a search answers while the writer is busy")
                .unwrap();
            assert_eq!(found.len(), 1);
            let details = tokio::time::timeout(soon, store.details("msg_1"))
                .await
                .expect("details answer while the writer is busy")
                .unwrap();
            assert!(details.is_some());
            let oldest = tokio::time::timeout(soon, store.oldest_waiting_unix(DEFAULT_PROFILE))
                .await
                .expect("the oldest waiting answers while the writer is busy")
                .unwrap();
            assert_eq!(oldest, Some(1_795_000_000));
        }
        {
            // A slow search holds the reader.
            let _reading = store.read.lock().unwrap();
            tokio::time::timeout(soon, store.enqueue(message("msg_2", b"y".to_vec())))
                .await
                .expect("a submission is stored during a slow search")
                .unwrap();
            assert_eq!(
                tokio::time::timeout(soon, claim_due(&store))
                    .await
                    .unwrap()
                    .len(),
                2
            );
        }
        let counts = store.counts().await.unwrap();
        assert_eq!(counts[&Status::Sending], 2, "the reader sees the claim");
    }

    /// A submission's lookups (its app by key, its profile's settings) wait
    /// neither for the writer (a group commit's fsync) nor for a slow search,
    /// and see what was committed before them: a revoked key fails at once.
    #[tokio::test]
    // Holding the other connections' locks while the lookups answer is the test.
    #[allow(clippy::await_holding_lock)]
    async fn lookups_wait_for_neither_the_writer_nor_a_search() {
        use crate::store::SettingsStore;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        let soon = std::time::Duration::from_secs(10);
        let app = App {
            id: "app_1".into(),
            name: "Billing".into(),
            created_at: "2026-11-26T00:00:00Z".into(),
            last_used_at: None,
            messages: 0,
            allowed_from: vec![],
            rewrite_from: false,
            profile: DEFAULT_PROFILE.into(),
            limits: Default::default(),
            usage: Default::default(),
            old_key_until: None,
            old_key_used: None,
            old_key_clients: Vec::new(),
        };
        store.create_app(app, [7u8; 32]).await.unwrap();
        {
            let _writing = store.conn.lock().unwrap();
            let _reading = store.read.lock().unwrap();
            let found = tokio::time::timeout(soon, store.app_by_key([7u8; 32]))
                .await
                .expect("the key is looked up while the writer and the reader are busy")
                .unwrap();
            assert_eq!(found.map(|a| a.id).as_deref(), Some("app_1"));
            let by_id = tokio::time::timeout(soon, store.app_by_id("app_1"))
                .await
                .expect("the relay's lookup by id too")
                .unwrap();
            assert_eq!(by_id.map(|(_, hash)| hash), Some([7u8; 32]));
            assert!(tokio::time::timeout(soon, store.app_by_key([8u8; 32]))
                .await
                .expect("a wrong key too")
                .unwrap()
                .is_none());
            tokio::time::timeout(soon, store.load(DEFAULT_PROFILE))
                .await
                .expect("the settings are read while the writer and the reader are busy")
                .unwrap();
            // What each delivery worker reads before each batch.
            tokio::time::timeout(soon, store.certificates(DEFAULT_PROFILE))
                .await
                .expect("the certificates, read with the settings")
                .unwrap();
            let pause = tokio::time::timeout(soon, store.pause_state(DEFAULT_PROFILE))
                .await
                .expect("the pause")
                .unwrap();
            assert!(pause.is_none());
        }
        let paused = Paused {
            since: "2026-11-26T00:00:00Z".into(),
            stage: mailroom_shared::api::Stage::Auth,
            code: Some("535".into()),
            message: "refused".into(),
            hint: None,
        };
        store
            .set_pause(DEFAULT_PROFILE, Some(paused.clone()))
            .await
            .unwrap();
        assert_eq!(
            store.pause_state(DEFAULT_PROFILE).await.unwrap(),
            Some(paused),
            "a pause is seen at once"
        );
        assert!(store.revoke_app("app_1").await.unwrap());
        assert!(
            store.app_by_key([7u8; 32]).await.unwrap().is_none(),
            "a revoked key is refused at once"
        );
        assert!(store.app_by_id("app_1").await.unwrap().is_none());
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
