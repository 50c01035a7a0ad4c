//! The PostgreSQL store (docs/API.md §10): the same traits as SQLite, so
//! several servers can share one database behind a load balancer.
//!
//! - Migrations run at start under an advisory lock, so servers may start
//!   together.
//! - Messages are claimed with `FOR UPDATE SKIP LOCKED` and a lease
//!   (`locked_by`, `locked_until`); a dead server's lease runs out and
//!   another server takes the message.
//! - The delivery rate is one slot row for all servers.
//! - A settings save is announced with `NOTIFY`, and every server's
//!   listener wakes its delivery engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use mailroom_shared::sending::{App, Details, Paused, Status, Summary};
use tokio::sync::Notify;
use tokio_postgres::{Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::queue::{
    page_end, status_of, AttemptRecord, ChangeError, Claimed, Committer, Enqueued, Expired,
    ExpiryEvents, Lease, ListFilter, NewMessage, Queue, ReplacedKey, Usage, Waiting, DAY,
};
use crate::store::sql::{self, Cols};
use crate::store::{
    CertRow, CertSlot, DeliveryResult, DueDelivery, FailureStore, HistoryEntry, NewDelivery,
    ProfileDelete, ProfileRow, Record, SessionStore, SettingsStore, StoreError, WebhookRow,
    WebhookStore,
};

use crate::store::PURGE_BATCH;
/// Held while migrating, so servers that start together migrate once.
const MIGRATION_LOCK: i64 = 0x6d61_696c_726f_6f6d;

/// The one schema of both stores ([`crate::store::SCHEMA`]) in PostgreSQL's
/// words: byte strings are `BYTEA`, integers `BIGINT`, the message sequence a
/// `BIGSERIAL`.
fn to_pg(sqlite: &str) -> String {
    sqlite
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
        .replace("BLOB", "BYTEA")
}

/// `sql::PURGE` at most `?2` messages at a time, each batch its own
/// statement (see [`PgStore::purge_in_batches`]). Rows another server's
/// purge holds are skipped, not waited for: each server deletes a batch of
/// its own.
const PURGE: &str = "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages WHERE status IN ('sent', 'failed', 'cancelled') AND updated_at < ?1 LIMIT ?2 FOR UPDATE SKIP LOCKED)";
/// `sql::PURGE_DELIVERIES` likewise.
const PURGE_DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries WHERE status IN ('delivered', 'failed') AND created_at < ?1 LIMIT ?2 FOR UPDATE SKIP LOCKED)";

/// Steps only PostgreSQL needs: the delivery slot all servers share.
const PG_ONLY: &[&str] =
    &["CREATE TABLE delivery_rate (id BIGINT PRIMARY KEY CHECK (id = 1), next_slot_ms BIGINT NOT NULL);"];

/// How many of the shared steps came before [`PG_ONLY`]'s when it was
/// released: PostgreSQL's version numbers are positions in this list, so the
/// shared steps added later go after it, and nothing here ever moves.
const SHARED_BEFORE_PG_ONLY: usize = 6;

/// Every migration in order: version N is the N-th (the number kept in
/// `mailroom_migrations`). Public so the upgrade test can build a database
/// as an earlier release left it.
pub fn migrations() -> Vec<String> {
    let shared = crate::store::SCHEMA;
    shared[..SHARED_BEFORE_PG_ONLY]
        .iter()
        .map(|sql| to_pg(sql))
        .chain(PG_ONLY.iter().map(|sql| sql.to_string()))
        .chain(shared[SHARED_BEFORE_PG_ONLY..].iter().map(|sql| to_pg(sql)))
        .collect()
}

/// PostgreSQL's side of [`crate::store::TRANSCRIPTS_WITHOUT_CONTENT`].
async fn strip_stored_transcripts(
    tx: &deadpool_postgres::Transaction<'_>,
) -> Result<(), tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT message_seq, n, transcript FROM attempts WHERE transcript LIKE '%S: 354%'",
            &[],
        )
        .await?;
    for row in rows {
        let (seq, n, t): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
        tx.execute(
            "UPDATE attempts SET transcript = $3 WHERE message_seq = $1 AND n = $2",
            &[&seq, &n, &crate::store::transcript_without_content(&t)],
        )
        .await?;
    }
    Ok(())
}

/// The database a URL names, for messages: host, port, database and user
/// taken from the parsed configuration, never the text as typed (a password
/// may hold `/`, `?` or `@`, and a key=value string is not a URL at all).
pub fn describe(url: &str) -> String {
    const UNREADABLE: &str = "(the database URL, not shown: it cannot be read; percent-encode a password's / ? @ # as %2F %3F %40 %23)";
    let config: tokio_postgres::Config = match url.parse() {
        Ok(c) => c,
        Err(_) => return UNREADABLE.into(),
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost".to_string()
    } else {
        hosts.join(",")
    };
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let port = if ports.is_empty() {
        "5432".to_string()
    } else {
        ports.join(",")
    };
    let user = config.get_user().unwrap_or("(none)");
    let db = config.get_dbname().unwrap_or(user);
    // A password with an unencoded separator spills into the parts after it.
    let spilled = |part: &str| part.contains(['/', '?', '@', '#', ':']);
    if spilled(&hosts) || spilled(db) || spilled(user) {
        return UNREADABLE.into();
    }
    format!("host {hosts}, port {port}, database {db}, user {user}")
}

/// An error with its causes, for a message that says what failed underneath
/// (a TLS handshake error names the certificate problem only in its source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn db_error(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::DISK_FULL {
            return StoreError::Full;
        }
        return StoreError::Db(db.to_string());
    }
    StoreError::Unavailable(e.to_string())
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        db_error(e)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => db_error(e),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// Settings, sessions, apps and the queue in PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    /// The group committer of submissions, started at the first one.
    committer: std::sync::Arc<std::sync::OnceLock<Committer>>,
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// The NOTIFY channel, one per database and schema.
    channel: String,
}

/// Prepares one of [`sql`]'s statements in PostgreSQL's placeholders, once
/// per connection (the cache saves a round trip on every later use).
async fn prepared<C: GenericClient>(c: &C, statement: &str) -> Result<Statement, StoreError> {
    Ok(c.prepare_cached(&sql::pg(statement)).await?)
}

/// How often, and how far apart, [`commit`] asks what became of a
/// transaction whose COMMIT lost its answer while the server still has it
/// in progress (writing its commit record, or waiting for a synchronous
/// standby): about five seconds in all.
const COMMIT_CHECKS: u32 = 50;
const COMMIT_CHECK_GAP: Duration = Duration::from_millis(100);

/// Commits `tx`, telling a COMMIT whose answer was lost from one that
/// failed. When the connection breaks after the COMMIT left, the transaction
/// may have committed or not: reporting a committed one as failed would make
/// its caller's retry do it twice (a submission stored and sent twice, an
/// attempt or a webhook event recorded twice), and reporting one that did not
/// commit as done would acknowledge what is not stored. So the transaction's
/// id is read first, and after a lost answer the server is asked on another
/// connection (`txid_status`, which PostgreSQL keeps for this): committed is
/// `Ok`; aborted, unknown or no answer is the original error.
async fn commit(pool: &Pool, tx: deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    let xid = xact_id(&tx).await?;
    commit_known(pool, tx, xid).await
}

/// The transaction's id, for [`commit_known`]. One simple query, sent when
/// first polled: run beside a transaction's first statements (`try_join!`),
/// it is pipelined with them and costs no round trip of its own.
async fn xact_id(tx: &deadpool_postgres::Transaction<'_>) -> Result<i64, StoreError> {
    let answer = tx.simple_query("SELECT txid_current()").await?;
    answer
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
            _ => None,
        })
        .ok_or_else(|| StoreError::Db("PostgreSQL gave no transaction id".into()))
}

/// [`commit`] for a transaction whose id `xid` was read already.
async fn commit_known(
    pool: &Pool,
    tx: deadpool_postgres::Transaction<'_>,
    xid: i64,
) -> Result<(), StoreError> {
    let lost = match tx.commit().await {
        Ok(()) => return Ok(()),
        // The server answered: it did not commit.
        Err(e) if e.as_db_error().is_some() => return Err(e.into()),
        Err(e) => e,
    };
    for _ in 0..COMMIT_CHECKS {
        match commit_status(pool, xid).await {
            Ok(Some(s)) if s == "committed" => {
                tracing::warn!(xid, error = %lost, "the connection broke during a COMMIT, which the server has committed");
                return Ok(());
            }
            // Still committing, or no answer yet (the server restarting, or
            // the pool handing out another connection that broke too).
            Ok(Some(s)) if s == "in progress" => {}
            Err(_) => {}
            // Aborted, or too old for the server to know.
            Ok(_) => break,
        }
        tokio::time::sleep(COMMIT_CHECK_GAP).await;
    }
    Err(lost.into())
}

/// `committed`, `aborted` or `in progress` for transaction `xid`, read on a
/// connection of its own; `None` when the server no longer knows.
async fn commit_status(pool: &Pool, xid: i64) -> Result<Option<String>, StoreError> {
    let c = pool.get().await?;
    let row = c.query_one("SELECT txid_status($1)", &[&xid]).await?;
    Ok(row.try_get::<_, Option<String>>(0)?)
}

/// Every row of `rows` read with `read`.
fn all<T>(
    rows: Vec<Row>,
    read: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, StoreError> {
    Ok(rows.iter().map(read).collect::<Result<Vec<_>, _>>()?)
}

/// An app's recent and waiting messages (PostgreSQL).
async fn recent_in<C: GenericClient>(
    c: &C,
    app_id: &str,
    now_unix: i64,
    with_rows: bool,
    count: Waiting,
) -> Result<crate::queue::Recent, StoreError> {
    let since = now_unix - 24 * 3600;
    let messages = if with_rows {
        let rows = c
            .query(&prepared(c, sql::RECENT).await?, &[&app_id, &since])
            .await?;
        all(rows, |r| {
            Ok((r.int(0)?, r.int(1)? as u64, r.int(2)? as u64))
        })?
    } else {
        Vec::new()
    };
    let waiting = match count {
        Waiting::All => c
            .query_one(&prepared(c, sql::WAITING).await?, &[&app_id])
            .await?
            .int(0)?,
        Waiting::UpTo(max) => c
            .query_one(
                &prepared(c, sql::WAITING_UP_TO).await?,
                &[&app_id, &i64::from(max)],
            )
            .await?
            .int(0)?,
        Waiting::Skip => 0,
    };
    Ok(crate::queue::Recent {
        messages,
        waiting: waiting as u64,
    })
}

/// The first `limit` due messages in turn per app ([`crate::queue::in_turn`]),
/// read without locks: [`Queue::claim`] locks them.
async fn due_in_turn<C: GenericClient>(
    c: &C,
    profile: &str,
    now: i64,
    limit: usize,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let n = limit as i64;
    let next_app = prepared(c, sql::NEXT_APP).await?;
    let of_app = prepared(c, sql::DUE_OF_APP).await?;
    let without = prepared(c, sql::DUE_WITHOUT_APP).await?;
    let pairs = |rows: Vec<Row>| all(rows, |r| Ok((r.int(0)?, r.int(1)?)));
    let mut groups = Vec::new();
    let mut last = String::new();
    while let Some(app) = c
        .query_one(&next_app, &[&last, &profile])
        .await?
        .opt_text(0)?
    {
        let queued = pairs(
            c.query(&of_app, &[&app, &"queued", &now, &n, &profile])
                .await?,
        )?;
        let deferred = pairs(
            c.query(&of_app, &[&app, &"deferred", &now, &n, &profile])
                .await?,
        )?;
        groups.push(crate::queue::merged(queued, deferred));
        last = app;
    }
    let queued = pairs(c.query(&without, &[&"queued", &now, &n, &profile]).await?)?;
    let deferred = pairs(
        c.query(&without, &[&"deferred", &now, &n, &profile])
            .await?,
    )?;
    groups.push(crate::queue::merged(queued, deferred));
    Ok(crate::queue::in_turn(groups, limit))
}

async fn summary_by_id<C: GenericClient>(c: &C, id: &str) -> Result<Option<Summary>, StoreError> {
    let stmt = prepared(c, &sql::summary_by_id(sql::PG_TO)).await?;
    Ok(c.query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(sql::summary_from)
        .transpose()?)
}

impl PgStore {
    /// The app an `UPDATE … RETURNING` of a live app gives back; `None`
    /// when it changed none.
    async fn app_returned(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<App>, StoreError> {
        let c = self.pool.get().await?;
        let row = c.query_opt(&prepared(&c, statement).await?, params).await?;
        Ok(row.as_ref().map(sql::app_from).transpose()?)
    }

    /// Housekeeping's purge of final messages with a batch of the test's
    /// choosing (it uses [`PURGE_BATCH`]): one statement per batch, rows
    /// other servers hold skipped. `(deleted, statements)`, for the tests.
    pub async fn purge_messages_in_batches(
        &self,
        cutoff: &str,
        batch: i64,
    ) -> Result<(u64, u32), StoreError> {
        self.purge_in_batches(PURGE, cutoff, batch).await
    }

    /// [`crate::store::purge_in_batches`] of `statement` (`?1` the cutoff,
    /// `?2` the batch) on one connection, each batch a statement committed
    /// on its own.
    async fn purge_in_batches(
        &self,
        statement: &'static str,
        cutoff: &str,
        batch: i64,
    ) -> Result<(u64, u32), StoreError> {
        let c = self.pool.get().await?;
        let statement = prepared(&c, statement).await?;
        crate::store::purge_in_batches(batch, || async {
            Ok(c.execute(&statement, &[&cutoff, &batch]).await?)
        })
        .await
    }

    /// Connects, checks the connection and migrates. TLS follows the URL's
    /// `sslmode` (`prefer` by default, `require` to insist) and trusts the
    /// system's roots plus `--extra-ca-file`. The error names the URL
    /// without its password.
    pub async fn connect(url: &str, tls: rustls::ClientConfig) -> Result<PgStore, String> {
        let tls = MakeRustlsConnect::new(tls);
        let shown = describe(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("--database-url is not a PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("cannot set up the connection pool for {shown}: {e}"))?;
        let client = pool.get().await.map_err(|e| {
            let why = match &e {
                deadpool_postgres::PoolError::Backend(b) => match b.as_db_error() {
                    Some(d) => d.message().to_string(),
                    None => error_chain(b),
                },
                other => other.to_string(),
            };
            let hint = if why.contains("certificate") || why.contains("Certificate") {
                " (its TLS certificate is not trusted: give its CA with --extra-ca-file, or put sslmode=disable in the URL on a trusted network)"
            } else {
                ""
            };
            format!("cannot connect to the database {shown}: {why}{hint}")
        })?;
        let row = client
            .query_one("SELECT current_database(), current_schema()", &[])
            .await
            .map_err(|e| format!("cannot use the database {shown}: {e}"))?;
        let (db, schema): (String, Option<String>) = (row.get(0), row.get(1));
        let schema = schema.ok_or_else(|| {
            format!("the database {shown} has no schema to create tables in (check search_path)")
        })?;
        let channel = {
            use sha2::Digest;
            let h = sha2::Sha256::digest(format!("{db}/{schema}").as_bytes());
            format!("mailroom_{}", hex::encode(&h[..8]))
        };
        drop(client);
        let store = PgStore {
            committer: Default::default(),
            pool,
            config,
            tls,
            channel,
        };
        store
            .migrate()
            .await
            .map_err(|e| format!("cannot migrate the database {shown}: {e}"))?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let result = async {
            let tx = client.transaction().await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS mailroom_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await?;
            let done: i32 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM mailroom_migrations",
                    &[],
                )
                .await?
                .get(0);
            for (i, sql) in migrations().iter().enumerate().skip(done as usize) {
                tx.batch_execute(sql).await?;
                if *sql == to_pg(crate::store::TRANSCRIPTS_WITHOUT_CONTENT) {
                    strip_stored_transcripts(&tx).await?;
                }
                tx.execute(
                    "INSERT INTO mailroom_migrations (version) VALUES ($1)",
                    &[&(i as i32 + 1)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        }
        .await;
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result
    }

    /// Listens for settings saves on any server; each wakes `saved` (one
    /// permit) and `wake`. Reconnects when the connection drops.
    pub fn listen(&self, saved: Arc<Notify>, wake: Arc<Notify>) -> tokio::task::JoinHandle<()> {
        let (config, channel, tls) = (self.config.clone(), self.channel.clone(), self.tls.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen_once(&config, tls.clone(), &channel, &saved, &wake).await {
                    tracing::warn!(error = %e, "the settings listener lost PostgreSQL; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    channel: &str,
    saved: &Notify,
    wake: &Notify,
) -> Result<(), tokio_postgres::Error> {
    use futures_util::StreamExt;
    let (client, mut connection) = config.connect(tls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    while let Some(payload) = rx.recv().await {
        if payload == "settings" {
            saved.notify_one();
        }
        wake.notify_waiters();
    }
    driver.abort();
    Ok(())
}

#[async_trait]
impl SettingsStore for PgStore {
    async fn load(&self, profile: &str) -> Result<Option<Record>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(&prepared(&c, sql::LOAD_SETTINGS).await?, &[&profile])
            .await?;
        Ok(row.as_ref().map(sql::record_from).transpose()?)
    }

    async fn save(
        &self,
        profile: &str,
        expected_version: u64,
        record: Record,
        changed_fields: Vec<String>,
    ) -> Result<u64, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let version = save_in(&tx, profile, expected_version, &record, &changed_fields).await?;
        tx.execute("SELECT pg_notify($1, 'settings')", &[&self.channel])
            .await?;
        commit(&self.pool, tx).await?;
        Ok(version)
    }

    async fn history(&self, profile: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c
            .query(&prepared(&c, sql::HISTORY).await?, &[&profile])
            .await?;
        all(rows, sql::history_from)
    }

    async fn certificates(&self, profile: &str) -> Result<Vec<CertRow>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c
            .query(&prepared(&c, sql::CERTIFICATES).await?, &[&profile])
            .await?;
        all(rows, sql::certificate_from)
    }

    async fn put_pending_certificate(&self, profile: &str, row: CertRow) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(
            &prepared(&c, sql::PUT_PENDING).await?,
            &[
                &profile,
                &row.cert_der,
                &row.private_key,
                &(row.generated as i64),
                &row.created_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn delete_certificate(&self, profile: &str, slot: CertSlot) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        let n = c
            .execute(
                &prepared(&c, sql::DELETE_CERTIFICATE).await?,
                &[&profile, &slot.as_str()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn pending_passed(
        &self,
        profile: &str,
        cert_der: Vec<u8>,
        settings_json: String,
    ) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(
            &prepared(&c, sql::PENDING_PASSED).await?,
            &[&profile, &cert_der, &settings_json],
        )
        .await?;
        Ok(())
    }

    async fn profiles(&self) -> Result<Vec<ProfileRow>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c.query(&prepared(&c, sql::PROFILES).await?, &[]).await?;
        all(rows, sql::profile_from)
    }

    async fn profile_named(&self, name: &str) -> Result<Option<String>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &prepared(&c, sql::PROFILE_NAME_TAKEN).await?,
                &[&name.trim()],
            )
            .await?;
        Ok(row.map(|r| r.text(0)).transpose()?)
    }

    async fn create_profile(
        &self,
        row: ProfileRow,
        record: Record,
        changed_fields: Vec<String>,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute(
            &prepared(&tx, sql::ADD_PROFILE).await?,
            &[
                &row.id,
                &row.name,
                &crate::queue::profile_limits_json(&row.limits),
                &row.created_at,
            ],
        )
        .await?;
        save_in(&tx, &row.id, 0, &record, &changed_fields).await?;
        tx.execute("SELECT pg_notify($1, 'settings')", &[&self.channel])
            .await?;
        commit(&self.pool, tx).await?;
        Ok(())
    }

    async fn update_profile(&self, row: ProfileRow) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        let n = c
            .execute(
                &prepared(&c, sql::UPDATE_PROFILE).await?,
                &[
                    &row.id,
                    &row.name,
                    &crate::queue::profile_limits_json(&row.limits),
                ],
            )
            .await?;
        if n > 0 {
            c.execute("SELECT pg_notify($1, 'settings')", &[&self.channel])
                .await?;
        }
        Ok(n > 0)
    }

    async fn delete_profile(&self, id: &str) -> Result<ProfileDelete, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        if !lock_profile(&tx, id).await? {
            return Ok(ProfileDelete::NotFound);
        }
        let in_use = tx
            .query_one(&prepared(&tx, sql::PROFILE_IN_USE).await?, &[&id])
            .await?;
        if let Err(refused) = crate::queue::may_delete_profile(in_use.int(0)?, in_use.int(1)?) {
            return Ok(refused);
        }
        for stmt in sql::DELETE_PROFILE {
            tx.execute(&prepared(&tx, stmt).await?, &[&id]).await?;
        }
        tx.execute("SELECT pg_notify($1, 'settings')", &[&self.channel])
            .await?;
        commit(&self.pool, tx).await?;
        Ok(ProfileDelete::Deleted)
    }
}

/// Locks a profile's row for the rest of the transaction: saves, quota
/// counts and deletes of one profile wait for each other on every server.
/// `false` when there is no such profile.
async fn lock_profile(
    tx: &deadpool_postgres::Transaction<'_>,
    profile: &str,
) -> Result<bool, StoreError> {
    let locked = tx
        .query_opt(
            &[&sql::pg(sql::PROFILE_EXISTS), " FOR UPDATE"].concat(),
            &[&profile],
        )
        .await?;
    Ok(locked.is_some())
}

/// A version-checked save of a profile's settings, its history line and its
/// certificate's activation or binding, inside `tx`.
async fn save_in(
    tx: &deadpool_postgres::Transaction<'_>,
    profile: &str,
    expected_version: u64,
    record: &Record,
    changed_fields: &[String],
) -> Result<u64, StoreError> {
    // The row lock makes concurrent saves wait, then see the new version.
    lock_profile(tx, profile).await?;
    let stored = tx
        .query_opt(&prepared(tx, sql::SETTINGS_VERSION).await?, &[&profile])
        .await?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0) as u64;
    if stored != expected_version {
        return Err(StoreError::Conflict { stored });
    }
    let version = (stored + 1) as i64;
    tx.execute(
        &prepared(tx, sql::SAVE_SETTINGS).await?,
        &[
            &version,
            &record.settings_json,
            &record.client_secret,
            &record.password,
            &record.updated_at,
            &profile,
        ],
    )
    .await?;
    tx.execute(
        &prepared(tx, sql::ADD_HISTORY).await?,
        &[
            &version,
            &record.updated_at,
            &changed_fields.join(","),
            &profile,
        ],
    )
    .await?;
    if let Some(der) = &record.activate_certificate {
        tx.execute(
            &prepared(tx, sql::DELETE_CERTIFICATE).await?,
            &[&profile, &"active"],
        )
        .await?;
        let n = tx
            .execute(
                &prepared(tx, sql::ACTIVATE_PENDING).await?,
                &[&profile, der, &record.settings_json],
            )
            .await?;
        if n != 1 {
            // The pending certificate changed since the save was checked.
            return Err(StoreError::Conflict { stored });
        }
    } else {
        tx.execute(
            &prepared(tx, sql::BIND_ACTIVE).await?,
            &[&profile, &record.settings_json],
        )
        .await?;
    }
    Ok(version as u64)
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(
        &self,
        digest: [u8; 32],
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(
            &prepared(&c, sql::DELETE_EXPIRED_SESSIONS).await?,
            &[&now_unix],
        )
        .await?;
        c.execute(
            &prepared(&c, sql::ADD_SESSION).await?,
            &[&digest.as_slice(), &expires_unix],
        )
        .await?;
        Ok(())
    }

    async fn session_valid(&self, digest: [u8; 32], now_unix: i64) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            &prepared(&c, sql::SESSION_VALID).await?,
            &[&digest.as_slice(), &now_unix],
        )
        .await?
        .is_some())
    }

    async fn end_session(&self, digest: [u8; 32]) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(
            &prepared(&c, sql::END_SESSION).await?,
            &[&digest.as_slice()],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl FailureStore for PgStore {
    async fn add_failure(
        &self,
        key: &str,
        now_unix: i64,
        window: i64,
    ) -> Result<(u32, i64), StoreError> {
        let c = self.pool.get().await?;
        c.execute(
            &prepared(&c, sql::DELETE_OLD_FAILURES).await?,
            &[&(now_unix - window)],
        )
        .await?;
        let row = c
            .query_one(
                &prepared(&c, sql::ADD_FAILURE).await?,
                &[&key, &now_unix, &window],
            )
            .await?;
        Ok((row.int(0)? as u32, row.int(1)?))
    }

    async fn failures(
        &self,
        key: &str,
        now_unix: i64,
        window: i64,
    ) -> Result<Option<(u32, i64)>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &prepared(&c, sql::FAILURES).await?,
                &[&key, &(now_unix - window)],
            )
            .await?;
        Ok(match row {
            Some(r) => Some((r.int(0)? as u32, r.int(1)?)),
            None => None,
        })
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(&prepared(&c, sql::CLEAR_FAILURES).await?, &[&key])
            .await?;
        Ok(())
    }
}

/// A message's status and whether it still has its body, locked for a change.
async fn locked_status(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
) -> Result<(Status, bool), ChangeError> {
    let stmt = prepared(tx, &format!("{} FOR UPDATE", sql::STATUS_AND_BODY)).await?;
    let row = tx
        .query_opt(&stmt, &[&id])
        .await
        .map_err(StoreError::from)?
        .ok_or(ChangeError::NotFound)?;
    let status = row.text(0).map_err(StoreError::from)?;
    let has_body = row.int(1).map_err(StoreError::from)? != 0;
    Ok((status_of(&status), has_body))
}

/// Records one attempt inside a transaction.
async fn record_in(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
    r: &AttemptRecord,
    now: &str,
) -> Result<bool, StoreError> {
    let stmt = prepared(tx, &format!("{} FOR UPDATE", sql::MESSAGE_FOR_ATTEMPT)).await?;
    let Some(row) = tx.query_opt(&stmt, &[&id, &r.owner]).await? else {
        return Ok(false);
    };
    let (seq, count, held) = (row.int(0)?, row.int(1)?, row.int(2)? == 1);
    let a = &r.attempt;
    tx.execute(
        &prepared(tx, sql::ADD_ATTEMPT).await?,
        &[
            &seq,
            &a.at,
            &(a.ok as i64),
            &a.stage.map(|s| s.as_str()),
            &a.code,
            &a.message,
            &a.hint,
            &r.transcript,
            &a.transport.map(mailroom_shared::EnumId::id),
        ],
    )
    .await?;
    if !held {
        return Ok(false);
    }
    let set = prepared(tx, sql::SET_RECIPIENT).await?;
    for o in &r.recipients {
        tx.execute(
            &set,
            &[
                &seq,
                &(o.idx as i64),
                &o.status.as_str(),
                &o.code,
                &o.message,
            ],
        )
        .await?;
    }
    let (last_stage, last_code, last_message) = r.last_error();
    tx.execute(
        &prepared(tx, sql::AFTER_ATTEMPT).await?,
        &[
            &seq,
            &r.status.as_str(),
            &now,
            &r.next_attempt_unix,
            &if r.counts { count + 1 } else { count },
            &last_stage,
            &last_code,
            &last_message,
            &(r.keeps_body() as i64),
        ],
    )
    .await?;
    // Its claim's count keeps the recipients the server took; an earlier
    // attempt's stay counted.
    match r.counted_recipients() {
        None => {}
        Some(0) => {
            tx.execute(&prepared(tx, sql::DROP_USAGE).await?, &[&id])
                .await?;
        }
        Some(n) => {
            tx.execute(
                &prepared(tx, sql::SETTLE_USAGE).await?,
                &[&id, &i64::from(n)],
            )
            .await?;
        }
    }
    Ok(true)
}

/// One app's side of a batch: its lock is held, and its recent and waiting
/// messages are read once and kept up to date as the batch accepts more.
struct AppTurn {
    usage: Usage,
    /// Messages accepted for it in this batch (time, recipients), stored
    /// when the batch ends, and the last one's time.
    added: Vec<(i64, u32)>,
    last: String,
}

/// Takes app `app`'s lock for this transaction and reads its usage once, so
/// one app's parallel submissions (on any server) check its limits one at a
/// time; locks are taken in the order of the apps' ids, so two servers'
/// batches never wait for each other in a circle.
async fn app_turn(
    tx: &deadpool_postgres::Transaction<'_>,
    app: &str,
    m: &NewMessage,
) -> Result<AppTurn, StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
        &[&app],
    )
    .await?;
    let read = Usage::needs(m);
    Ok(AppTurn {
        usage: Usage {
            recent: recent_in(tx, app, m.now_unix, read.0, read.1).await?,
            read,
        },
        added: Vec::new(),
        last: String::new(),
    })
}

/// Reads app `app`'s usage again, as message `m` needs it, with what this
/// batch has accepted for it so far (the lock is held already).
async fn reread(
    tx: &deadpool_postgres::Transaction<'_>,
    app: &str,
    m: &NewMessage,
    turn: &mut AppTurn,
) -> Result<(), StoreError> {
    let (rows, count) = Usage::reading(Some(&turn.usage), m);
    let mut recent = recent_in(tx, app, m.now_unix, rows, count).await?;
    if rows {
        for (at, rcpts) in &turn.added {
            recent.add(*at, *rcpts);
        }
    }
    recent.waiting += turn.added.len() as u64;
    turn.usage = Usage {
        recent,
        read: (rows, count),
    };
    Ok(())
}

impl PgStore {
    /// Stores a batch of submissions in one transaction and commits once.
    /// Limits are checked in memory against each app's usage read once; the
    /// accepted messages go in with one statement and their recipients with
    /// another (`UNNEST`), so a batch costs a few round trips, not a few per
    /// message. An idempotency key is taken per message; a twin gets the
    /// first message back.
    async fn enqueue_batch(
        &self,
        batch: Vec<NewMessage>,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let (xid, (accepted, mut out)) =
            tokio::try_join!(xact_id(&tx), Self::stage_batch(&tx, &batch))?;
        commit_known(&self.pool, tx, xid).await?;
        for i in accepted {
            out[i] = Some(Enqueued::New(batch[i].id.clone()));
        }
        Ok(out
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Db("not stored".into())))
            .collect())
    }

    /// [`PgStore::enqueue_batch`]'s statements before the commit: which
    /// messages are accepted (their positions in `batch`), and the answer
    /// for each of the others.
    async fn stage_batch(
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &[NewMessage],
    ) -> Result<(Vec<usize>, Vec<Option<Enqueued>>), StoreError> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|a, b| batch[*a].app_id.cmp(&batch[*b].app_id));
        if let Some(m) = batch.iter().find(|m| m.idempotency_key.is_some()) {
            tx.execute(
                &prepared(tx, sql::DELETE_OLD_IDEMPOTENCY).await?,
                &[&(m.now_unix - 24 * 3600)],
            )
            .await?;
        }
        let mut apps: BTreeMap<String, AppTurn> = BTreeMap::new();
        let mut out: Vec<Option<Enqueued>> = vec![None; batch.len()];
        let mut accepted: Vec<usize> = Vec::new();
        for i in order {
            let m = &batch[i];
            let Some(app) = &m.app_id else {
                accepted.push(i);
                continue;
            };
            if !apps.contains_key(app) {
                let turn = app_turn(tx, app, m).await?;
                apps.insert(app.clone(), turn);
            }
            if let Some(key) = &m.idempotency_key {
                // Wins the key, or finds who did (a concurrent twin waits for it).
                let taken = tx
                    .execute(
                        &prepared(tx, sql::TAKE_IDEMPOTENCY_KEY).await?,
                        &[app, &key.key, &m.id, &m.now_unix, &key.request],
                    )
                    .await?;
                if taken == 0 {
                    let row = tx
                        .query_one(&prepared(tx, sql::IDEMPOTENT_TWIN).await?, &[app, &key.key])
                        .await?;
                    let twin = row.text(0)?;
                    // A twin in this batch is not stored yet: it is queued.
                    let status = match row.opt_text(1)? {
                        Some(s) => status_of(&s),
                        None if accepted.iter().any(|a| batch[*a].id == twin) => Status::Queued,
                        None => Status::Sent,
                    };
                    let digest = row.opt_text(2)?;
                    out[i] = Some(key.answer(twin, status, digest.as_deref()));
                    continue;
                }
            }
            let turn = apps.get_mut(app).expect("read above");
            if !turn.usage.answers(m) {
                reread(tx, app, m, turn).await?;
            }
            if let Some(limits) = &m.limits {
                let rcpts = m.recipients.len() as u32;
                if let Some(hit) = turn.usage.recent.hit(limits, m.now_unix, rcpts) {
                    if let Some(key) = &m.idempotency_key {
                        // Refused: the key is not taken either.
                        tx.execute(
                            "DELETE FROM idempotency WHERE app_id = $1 AND key = $2",
                            &[app, &key.key],
                        )
                        .await?;
                    }
                    out[i] = Some(Enqueued::Limited(hit));
                    continue;
                }
            }
            let added = (m.now_unix, m.recipients.len() as u32);
            turn.usage.add(added.0, added.1);
            turn.added.push(added);
            turn.last = m.now.clone();
            accepted.push(i);
        }
        if !accepted.is_empty() {
            insert_messages(tx, accepted.iter().map(|i| &batch[*i])).await?;
        }
        let count = prepared(tx, sql::COUNT_APP_MESSAGES).await?;
        let spend = prepared(tx, sql::ADD_APP_USAGE).await?;
        for (app, turn) in apps.iter().filter(|(_, t)| !t.added.is_empty()) {
            tx.execute(&count, &[app, &(turn.added.len() as i64), &turn.last])
                .await?;
            // Per second: (messages, recipients).
            let mut spent: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            for (at, rcpts) in &turn.added {
                let second = spent.entry(*at).or_insert((0, 0));
                *second = (second.0 + 1, second.1 + i64::from(*rcpts));
            }
            for (at, (n, rcpts)) in spent {
                tx.execute(&spend, &[app, &at, &n, &rcpts]).await?;
            }
        }
        Ok((accepted, out))
    }
}

/// Stores messages and their recipients with one statement each.
async fn insert_messages<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    messages: impl Iterator<Item = &'a NewMessage>,
) -> Result<(), StoreError> {
    let messages: Vec<&NewMessage> = messages.collect();
    let col =
        |f: fn(&NewMessage) -> Option<String>| messages.iter().map(|m| f(m)).collect::<Vec<_>>();
    let ids = col(|m| Some(m.id.clone()));
    let apps = col(|m| m.app_id.clone());
    let sources = col(|m| m.source.clone());
    let froms = col(|m| Some(m.mail_from.clone()));
    let subjects = col(|m| Some(m.subject.clone()));
    let nows = col(|m| Some(m.now.clone()));
    let sizes: Vec<i64> = messages.iter().map(|m| m.body.len() as i64).collect();
    let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
    let units: Vec<i64> = messages.iter().map(|m| m.now_unix).collect();
    let rcpts: Vec<i64> = messages.iter().map(|m| m.recipients.len() as i64).collect();
    let profiles = col(|m| Some(m.profile.clone()));
    let header_ids = col(|m| m.message_id_header.clone());
    // [`sql::INSERT_MESSAGE`] for every message at once.
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (id, app_id, source, mail_from, subject, size, body, status, created_at, created_unix, updated_at, next_attempt_unix, rcpt_count, profile, message_id_header)
             SELECT id, app_id, source, mail_from, subject, size, body, 'queued', now, unix, now, unix, rcpts, profile, header_id
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BYTEA[], $8::TEXT[], $9::BIGINT[], $10::BIGINT[], $11::TEXT[], $12::TEXT[])
                 AS n(id, app_id, source, mail_from, subject, size, body, now, unix, rcpts, profile, header_id)
             RETURNING id, seq",
        )
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[
                &ids,
                &apps,
                &sources,
                &froms,
                &subjects,
                &sizes,
                &bodies,
                &nows,
                &units,
                &rcpts,
                &profiles,
                &header_ids,
            ],
        )
        .await?;
    let mut seq_of = std::collections::HashMap::new();
    for r in &rows {
        seq_of.insert(r.text(0)?, r.int(1)?);
    }
    let (mut seqs, mut idx, mut addresses) = (Vec::new(), Vec::new(), Vec::new());
    for m in &messages {
        let seq = *seq_of
            .get(&m.id)
            .ok_or_else(|| StoreError::Db(format!("{} was not stored", m.id)))?;
        for (i, a) in m.recipients.iter().enumerate() {
            seqs.push(seq);
            idx.push(i as i64);
            addresses.push(a.as_str());
        }
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO recipients (message_seq, idx, address, status)
             SELECT s, i, a, 'queued' FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[]) AS r(s, i, a)",
        )
        .await?;
    tx.execute(&stmt, &[&seqs, &idx, &addresses]).await?;
    Ok(())
}

fn allowed_json(app: &App) -> String {
    serde_json::to_string(&app.allowed_from).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl Queue for PgStore {
    async fn create_app(&self, app: App, key_hash: [u8; 32]) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(
            &prepared(&c, sql::CREATE_APP).await?,
            &[
                &app.id,
                &app.name,
                &key_hash.as_slice(),
                &allowed_json(&app),
                &(app.rewrite_from as i64),
                &app.created_at,
                &crate::queue::limits_json(&app.limits),
                &app.profile,
            ],
        )
        .await?;
        Ok(())
    }

    async fn app_name_taken(&self, name: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        Ok(
            c.query_opt(&prepared(&c, sql::APP_NAME_TAKEN).await?, &[&name.trim()])
                .await?
                .is_some(),
        )
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c.query(&prepared(&c, sql::LIST_APPS).await?, &[]).await?;
        let mut apps = all(rows, sql::app_from)?;
        let rows = c
            .query(&prepared(&c, sql::OLD_KEY_CLIENTS).await?, &[])
            .await?;
        sql::with_old_key_clients(&mut apps, all(rows, sql::old_key_client_from)?);
        Ok(apps)
    }

    async fn revoke_app(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.execute(&prepared(&c, sql::REVOKE_APP).await?, &[&id])
            .await?
            > 0)
    }

    async fn end_old_key(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.execute(&prepared(&c, sql::END_OLD_KEY).await?, &[&id])
            .await?
            > 0)
    }

    async fn note_old_key_use(
        &self,
        id: &str,
        at: i64,
        from: &str,
        refused: bool,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        let refused = i64::from(refused);
        let keep = mailroom_shared::sending::OLD_KEY_CLIENTS as i64;
        let tx = c.transaction().await?;
        for statement in [sql::NOTE_OLD_KEY_USE, sql::NOTE_OLD_KEY_CLIENT] {
            tx.execute(
                &prepared(&tx, statement).await?,
                &[&id, &at, &from, &refused],
            )
            .await?;
        }
        tx.execute(
            &prepared(&tx, sql::TRIM_OLD_KEY_CLIENTS).await?,
            &[&id, &keep],
        )
        .await?;
        commit(&self.pool, tx).await?;
        Ok(())
    }

    async fn replace_app_key(
        &self,
        id: &str,
        key_hash: [u8; 32],
        replaced_at: &str,
        old_until: Option<i64>,
    ) -> Result<Option<App>, StoreError> {
        self.app_returned(
            sql::REPLACE_APP_KEY,
            &[&id, &key_hash.as_slice(), &replaced_at, &old_until],
        )
        .await
    }

    async fn app_of_replaced_key(
        &self,
        key_hash: [u8; 32],
    ) -> Result<Option<ReplacedKey>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &prepared(&c, sql::APP_BY_REPLACED_KEY).await?,
                &[&key_hash.as_slice()],
            )
            .await?;
        Ok(row.as_ref().map(sql::replaced_key_from).transpose()?)
    }

    async fn update_app(&self, app: App) -> Result<Option<App>, StoreError> {
        self.app_returned(
            sql::UPDATE_APP,
            &[
                &app.id,
                &app.name,
                &allowed_json(&app),
                &(app.rewrite_from as i64),
                &crate::queue::limits_json(&app.limits),
                &app.profile,
            ],
        )
        .await
    }

    async fn recent(
        &self,
        app_id: &str,
        now_unix: i64,
        rows: bool,
    ) -> Result<crate::queue::Recent, StoreError> {
        let c = self.pool.get().await?;
        recent_in(&c, app_id, now_unix, rows, Waiting::All).await
    }

    async fn app_by_key(&self, key_hash: [u8; 32]) -> Result<Option<App>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &prepared(&c, sql::APP_BY_KEY).await?,
                &[&key_hash.as_slice()],
            )
            .await?;
        Ok(row.as_ref().map(sql::app_from).transpose()?)
    }

    async fn app_by_id(&self, id: &str) -> Result<Option<(App, [u8; 32])>, StoreError> {
        // A relay sign-in's username may hold any byte; PostgreSQL refuses
        // a NUL in text, and no id holds one.
        if id.contains('\0') {
            return Ok(None);
        }
        let c = self.pool.get().await?;
        let Some(row) = c
            .query_opt(&prepared(&c, sql::APP_BY_ID).await?, &[&id])
            .await?
        else {
            return Ok(None);
        };
        let hash: Vec<u8> = row.try_get(sql::APP_COLUMN_COUNT)?;
        Ok(Some((
            sql::app_from(&row)?,
            hash.try_into().unwrap_or([0u8; 32]),
        )))
    }

    async fn enqueue(&self, m: NewMessage) -> Result<Enqueued, StoreError> {
        let group = || -> crate::queue::GroupFn {
            let store = self.clone();
            std::sync::Arc::new(move |messages| {
                let store = store.clone();
                Box::pin(async move { store.enqueue_batch(messages).await })
            })
        };
        Committer::enqueue(&self.committer, group, m).await
    }

    async fn claim(
        &self,
        profile: &str,
        now_unix: i64,
        limit: u32,
        lease: &Lease,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut c = self.pool.get().await?;
        let until = now_unix + lease.seconds;
        // Due messages in turn per app (round robin), then lapsed leases.
        // Each pick is checked again on the row as locked (another server
        // may have claimed it since the candidates were read) and locked
        // SKIP LOCKED; twice the candidates are read, so two servers that
        // read the same ones still find enough each.
        let candidates: Vec<i64> = due_in_turn(&c, profile, now_unix, 2 * limit as usize)
            .await?
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        // Both picks are one transaction, committed with [`commit_known`]:
        // when the connection breaks before the COMMIT, nothing was claimed
        // and the messages are due again at once; when only its answer is
        // lost, what it committed is still handed out. (With each pick
        // committed on its own, a lost answer left its messages under this
        // server's lease, unsent, until the lease ran out.)
        let tx = c.transaction().await?;
        let returning = "RETURNING m.seq, m.id, m.mail_from, m.body, m.attempt_count, m.created_unix, m.app_id,
                ARRAY(SELECT r.idx FROM recipients r WHERE r.message_seq = m.seq AND r.status IN ('queued', 'deferred') ORDER BY r.idx),
                ARRAY(SELECT r.address FROM recipients r WHERE r.message_seq = m.seq AND r.status IN ('queued', 'deferred') ORDER BY r.idx),
                due.turn::BIGINT";
        let mut rows = Vec::new();
        if !candidates.is_empty() {
            // Candidates in turn while their bodies add up to CLAIM_BYTES
            // (the first one whatever its size); the rest stay due.
            let stmt = tx
                .prepare_cached(&format!(
                    "WITH fits AS (
                       SELECT seq, turn FROM (
                         SELECT m2.seq, array_position($5::BIGINT[], m2.seq) AS turn,
                                SUM(m2.size) OVER (ORDER BY array_position($5::BIGINT[], m2.seq)) AS upto,
                                ROW_NUMBER() OVER (ORDER BY array_position($5::BIGINT[], m2.seq)) AS n
                         FROM messages m2
                         WHERE m2.seq = ANY($5) AND m2.status IN ('queued', 'deferred')
                           AND m2.next_attempt_unix <= $1 AND m2.body IS NOT NULL) w
                       WHERE n = 1 OR upto <= $6::BIGINT)
                     UPDATE messages m SET status = 'sending', locked_by = $3, locked_until = $4
                     FROM (SELECT m2.seq, fits.turn FROM messages m2 JOIN fits ON fits.seq = m2.seq
                           WHERE m2.status IN ('queued', 'deferred')
                             AND m2.next_attempt_unix <= $1 AND m2.body IS NOT NULL
                           ORDER BY fits.turn LIMIT $2 FOR UPDATE OF m2 SKIP LOCKED) due
                     WHERE m.seq = due.seq {returning}"
                ))
                .await?;
            let limit = limit as i64;
            let max_bytes = crate::queue::CLAIM_BYTES as i64;
            rows.extend(
                tx.query(
                    &stmt,
                    &[
                        &now_unix,
                        &limit,
                        &lease.owner,
                        &until,
                        &candidates,
                        &max_bytes,
                    ],
                )
                .await?
                .into_iter()
                .map(|r| (0i64, r)),
            );
        }
        // Lapsed leases fill the batch while its bodies stay within
        // CLAIM_BYTES (the first one whatever its size, when none came before:
        // then all of CLAIM_BYTES is room).
        let claimed_bytes: u64 = rows
            .iter()
            .map(|(_, r)| r.try_get::<_, &[u8]>(3).map_or(0, |b| b.len() as u64))
            .sum();
        let room = crate::queue::CLAIM_BYTES.saturating_sub(claimed_bytes) as i64;
        let left = limit as i64 - rows.len() as i64;
        if left > 0 && room > 0 {
            let lapsed = sql::pg(sql::LAPSED);
            let stmt = tx
                .prepare_cached(&format!(
                    "WITH fits AS (
                       SELECT seq, turn FROM (
                         SELECT l.seq, l.turn, SUM(m2.size) OVER (ORDER BY l.seq) AS upto,
                                ROW_NUMBER() OVER (ORDER BY l.seq) AS n
                         FROM ({lapsed}) l JOIN messages m2 ON m2.seq = l.seq) w
                       WHERE upto <= $6::BIGINT OR (n = 1 AND $7::BOOLEAN))
                     UPDATE messages m SET status = 'sending', locked_by = $4, locked_until = $5
                     FROM (SELECT m2.seq, fits.turn FROM messages m2 JOIN fits ON fits.seq = m2.seq
                           WHERE m2.status = 'sending' AND m2.locked_until < $1 AND m2.body IS NOT NULL
                           FOR UPDATE OF m2 SKIP LOCKED) due
                     WHERE m.seq = due.seq {returning}"
                ))
                .await?;
            let first = rows.is_empty();
            rows.extend(
                tx.query(
                    &stmt,
                    &[
                        &now_unix,
                        &left,
                        &profile,
                        &lease.owner,
                        &until,
                        &room,
                        &first,
                    ],
                )
                .await?
                .into_iter()
                .map(|r| (1i64, r)),
            );
        }
        if rows.is_empty() {
            // Nothing claimed: no transaction id to spend (idle servers claim often).
            tx.rollback().await?;
        } else {
            let xid = xact_id(&tx).await?;
            commit_known(&self.pool, tx, xid).await?;
        }
        let mut out: Vec<((i64, i64, i64), Claimed)> = Vec::new();
        for (round, r) in &rows {
            let idx: Vec<i64> = r.try_get(7)?;
            let addresses: Vec<String> = r.try_get(8)?;
            let seq = r.int(0)?;
            out.push((
                (*round, r.int(9)?, seq),
                Claimed {
                    id: r.text(1)?,
                    mail_from: r.text(2)?,
                    body: r.try_get(3)?,
                    attempt_count: r.int(4)? as u32,
                    created_unix: r.int(5)?,
                    app_id: r.opt_text(6)?,
                    recipients: idx.into_iter().map(|i| i as u32).zip(addresses).collect(),
                    transport: None,
                    owner: lease.owner.clone(),
                },
            ));
        }
        // In turn order: round robin between apps, then lapsed leases.
        out.sort_by_key(|(order, _)| *order);
        Ok(out.into_iter().map(|(_, m)| m).collect())
    }

    async fn renew(&self, id: &str, now_unix: i64, lease: &Lease) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.execute(
            &prepared(&c, sql::RENEW).await?,
            &[&id, &lease.owner, &(now_unix + lease.seconds)],
        )
        .await?
            > 0)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn reserve_slot(
        &self,
        profile: &str,
        gap_ms: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(
                "INSERT INTO profile_rate (profile, next_slot_ms) VALUES ($3, $1::BIGINT + $2::BIGINT)
                 ON CONFLICT (profile) DO UPDATE SET next_slot_ms = GREATEST(profile_rate.next_slot_ms, $1::BIGINT) + $2::BIGINT
                 RETURNING next_slot_ms - $2::BIGINT",
            )
            .await?;
        let row = c.query_one(&stmt, &[&now_ms, &gap_ms, &profile]).await?;
        Ok(Some(row.int(0)?))
    }

    async fn hold_slots(&self, profile: &str, until_ms: i64) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(
                "INSERT INTO profile_rate (profile, next_slot_ms) VALUES ($1, $2)
                 ON CONFLICT (profile) DO UPDATE SET next_slot_ms = GREATEST(profile_rate.next_slot_ms, $2)",
            )
            .await?;
        c.execute(&stmt, &[&profile, &until_ms]).await?;
        Ok(true)
    }

    async fn release(&self, ids: Vec<String>, owner: &str) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let c = self.pool.get().await?;
        // [`sql::RELEASE`] for every id at once; those released, not sent,
        // give back their claim's count toward the profile's day (the
        // newest, [`sql::DROP_USAGE`]; an earlier attempt's stays).
        let stmt = c
            .prepare_cached(
                "WITH released AS (
                   UPDATE messages SET status = 'queued', locked_by = NULL, locked_until = NULL
                   WHERE id = ANY($1) AND status = 'sending' AND locked_by = $2
                   RETURNING id)
                 DELETE FROM profile_usage u WHERE u.message_id IN (SELECT id FROM released)
                   AND u.at_unix = (SELECT MAX(v.at_unix) FROM profile_usage v WHERE v.message_id = u.message_id)",
            )
            .await?;
        c.execute(&stmt, &[&ids, &owner]).await?;
        Ok(())
    }

    async fn record_many(
        &self,
        batch: Arc<[(String, AttemptRecord)]>,
        now: &str,
        events: Arc<[NewDelivery]>,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let (xid, ()) = tokio::try_join!(xact_id(&tx), async {
            let mut lapsed = Vec::new();
            for (id, r) in batch.iter() {
                if !record_in(&tx, id, r, now).await? {
                    lapsed.push(id.as_str());
                }
            }
            insert_deliveries(&tx, &super::held_events(&events, &lapsed)).await
        })?;
        commit_known(&self.pool, tx, xid).await
    }

    async fn requeue_sending(&self, now_unix: i64) -> Result<u64, StoreError> {
        // Other servers may be sending: only leases that ran out go back.
        let c = self.pool.get().await?;
        Ok(c.execute(
            "UPDATE messages SET status = 'queued', locked_by = NULL, locked_until = NULL
             WHERE status = 'sending' AND (locked_until IS NULL OR locked_until < $1)",
            &[&now_unix],
        )
        .await?)
    }

    async fn expire_some(
        &self,
        cutoff_unix: i64,
        now: &str,
        limit: u32,
        events: ExpiryEvents,
    ) -> Result<Vec<Expired>, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let (xid, ended) = tokio::try_join!(xact_id(&tx), async {
            // Another server's housekeeping skips what this one ends.
            let expiring = format!("{} FOR UPDATE OF m SKIP LOCKED", sql::EXPIRING);
            let due = tx
                .query(
                    &prepared(&tx, &expiring).await?,
                    &[&cutoff_unix, &(limit as i64)],
                )
                .await?;
            let (end, left) = tokio::try_join!(
                prepared(&tx, sql::END_EXPIRED),
                prepared(&tx, sql::EXPIRED_RECIPIENTS)
            )?;
            let mut ended = Vec::with_capacity(due.len());
            let mut rows = Vec::new();
            for row in due {
                let (seq, id, app): (i64, String, Option<String>) =
                    (row.get(0), row.get(1), row.get(2));
                let status = if row.get::<_, bool>(3) {
                    Status::Sent
                } else {
                    Status::Failed
                };
                tx.execute(&end, &[&seq, &status.as_str(), &now]).await?;
                tx.execute(&left, &[&seq]).await?;
                rows.extend(events(&id, status));
                let missed = row.get::<_, i64>(4) as u64;
                ended.push(Expired {
                    id,
                    app,
                    status,
                    missed,
                });
            }
            insert_deliveries(&tx, &rows).await?;
            Ok::<_, StoreError>(ended)
        })?;
        commit_known(&self.pool, tx, xid).await?;
        Ok(ended)
    }

    async fn purge(&self, cutoff: &str) -> Result<u64, StoreError> {
        Ok(self.purge_in_batches(PURGE, cutoff, PURGE_BATCH).await?.0)
    }

    async fn oldest_waiting_unix(&self, profile: &str) -> Result<Option<i64>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_one(&prepared(&c, sql::OLDEST_WAITING).await?, &[&profile])
            .await?;
        Ok(row.opt_int(0)?)
    }

    async fn counts(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        let c = self.pool.get().await?;
        let mut counts: BTreeMap<Status, u64> = Status::ALL.iter().map(|s| (*s, 0)).collect();
        for r in c.query(&prepared(&c, sql::COUNTS).await?, &[]).await? {
            counts.insert(status_of(&r.text(0)?), r.int(1)? as u64);
        }
        Ok(counts)
    }

    async fn list(&self, f: ListFilter) -> Result<(Vec<Summary>, Option<String>), StoreError> {
        let c = self.pool.get().await?;
        let status = f.status.map(|s| s.as_str());
        let like = f.search_pattern();
        let id = f.search_id();
        let limit = f.limit.clamp(1, 200);
        let rows = c
            .query(
                &prepared(&c, &sql::list(sql::PG_TO)).await?,
                &[
                    &status,
                    &f.app,
                    &like,
                    &f.before,
                    &(limit as i64 + 1),
                    &f.profile,
                    &id,
                ],
            )
            .await?;
        let mut rows = all(rows, sql::summary_from)?;
        let next = page_end(&mut rows, limit);
        Ok((rows, next))
    }

    async fn details(&self, id: &str) -> Result<Option<Details>, StoreError> {
        let c = self.pool.get().await?;
        let Some(summary) = summary_by_id(&c, id).await? else {
            return Ok(None);
        };
        let rows = c
            .query(&prepared(&c, sql::RECIPIENTS_OF).await?, &[&id])
            .await?;
        let recipients = all(rows, sql::recipient_from)?;
        let rows = c
            .query(&prepared(&c, sql::ATTEMPTS_OF).await?, &[&id])
            .await?;
        let attempts = all(rows, sql::attempt_from)?;
        // Gone since the summary was read (a purge): no id, no next try.
        let (message_id, next) = match c
            .query_opt(
                &prepared(&c, sql::HEADER_ID_AND_NEXT_ATTEMPT_OF).await?,
                &[&id],
            )
            .await?
        {
            Some(row) => (row.opt_text(0)?, row.opt_int(1)?),
            None => (None, None),
        };
        Ok(Some(Details {
            summary,
            recipients,
            attempts,
            next_attempt_at: next.and_then(crate::clock::rfc3339_at),
            message_id,
        }))
    }

    async fn retry(&self, id: &str, now: &str, now_unix: i64) -> Result<Summary, ChangeError> {
        let mut c = self.pool.get().await.map_err(StoreError::from)?;
        let tx = c.transaction().await.map_err(StoreError::from)?;
        let (status, has_body) = locked_status(&tx, id).await?;
        crate::queue::may_retry(status, has_body)?;
        tx.execute(&prepared(&tx, sql::RETRY).await?, &[&id, &now, &now_unix])
            .await
            .map_err(StoreError::from)?;
        tx.execute(&prepared(&tx, sql::RETRY_RECIPIENTS).await?, &[&id])
            .await
            .map_err(StoreError::from)?;
        let s = summary_by_id(&tx, id).await?;
        commit(&self.pool, tx).await?;
        s.ok_or(ChangeError::NotFound)
    }

    async fn cancel(&self, id: &str, now: &str) -> Result<Summary, ChangeError> {
        let mut c = self.pool.get().await.map_err(StoreError::from)?;
        let tx = c.transaction().await.map_err(StoreError::from)?;
        let (status, _) = locked_status(&tx, id).await?;
        crate::queue::may_cancel(status)?;
        tx.execute(&prepared(&tx, sql::CANCEL).await?, &[&id, &now])
            .await
            .map_err(StoreError::from)?;
        tx.execute(&prepared(&tx, sql::CANCEL_RECIPIENTS).await?, &[&id])
            .await
            .map_err(StoreError::from)?;
        let s = summary_by_id(&tx, id).await?;
        commit(&self.pool, tx).await?;
        s.ok_or(ChangeError::NotFound)
    }

    async fn pause_state(&self, profile: &str) -> Result<Option<Paused>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(&prepared(&c, sql::PAUSE).await?, &[&profile])
            .await?;
        Ok(row.as_ref().map(sql::paused_from).transpose()?)
    }

    async fn pauses(&self) -> Result<BTreeMap<String, Paused>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c.query(&prepared(&c, sql::PAUSES).await?, &[]).await?;
        Ok(all(rows, |r| Ok((r.text(5)?, sql::paused_from(r)?)))?
            .into_iter()
            .collect())
    }

    async fn set_pause(&self, profile: &str, p: Option<Paused>) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        match p {
            None => {
                c.execute(&prepared(&c, sql::RESUME).await?, &[&profile])
                    .await?;
            }
            Some(p) => {
                c.execute(
                    &prepared(&c, sql::SET_PAUSE).await?,
                    &[
                        &p.since,
                        &p.stage.as_str(),
                        &p.code,
                        &p.message,
                        &p.hint,
                        &profile,
                    ],
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn profile_usage(
        &self,
        profile: &str,
        now_unix: i64,
    ) -> Result<mailroom_shared::profiles::ProfileUsage, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_one(
                &prepared(&c, sql::PROFILE_USAGE).await?,
                &[&profile, &(now_unix - DAY), &(now_unix - 60)],
            )
            .await?;
        Ok(sql::usage_from(&row)?)
    }

    async fn take_quota(
        &self,
        profile: &str,
        messages: Vec<(String, u32)>,
        limit: Option<u32>,
        now_unix: i64,
    ) -> Result<(usize, Option<i64>), StoreError> {
        let recipients: Vec<u32> = messages.iter().map(|(_, r)| *r).collect();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let since = now_unix - DAY;
        let used = match limit {
            None => 0,
            Some(_) => {
                // Every server counts under the profile's row lock.
                lock_profile(&tx, profile).await?;
                tx.query_one(
                    &prepared(&tx, sql::PROFILE_USED).await?,
                    &[&profile, &since],
                )
                .await?
                .int(0)?
            }
        };
        let sends = if crate::queue::quota_fits_all(used, &recipients, limit) {
            Vec::new()
        } else {
            let rows = tx
                .query(
                    &prepared(&tx, sql::PROFILE_SENDS).await?,
                    &[&profile, &since],
                )
                .await?;
            all(rows, |r| Ok((r.int(0)?, r.int(1)?)))?
        };
        let (n, next) = crate::queue::quota_fits(&sends, &recipients, limit, now_unix);
        if n > 0 {
            let counts: Vec<i64> = recipients[..n].iter().map(|r| *r as i64).collect();
            let ids: Vec<&str> = messages[..n].iter().map(|(id, _)| id.as_str()).collect();
            tx.execute(
                "INSERT INTO profile_usage (profile, at_unix, recipients, message_id)
                 SELECT $1, $2, r, m FROM UNNEST($3::BIGINT[], $4::TEXT[]) AS u(r, m)",
                &[&profile, &now_unix, &counts, &ids],
            )
            .await?;
        }
        commit(&self.pool, tx).await?;
        Ok((n, next))
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
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let waits = tx
            .execute(
                &prepared(&tx, sql::QUOTA_WAIT).await?,
                &[&id, &now, &until_unix, &message, &now_unix],
            )
            .await?;
        if waits > 0 && reserved {
            tx.execute(&prepared(&tx, sql::DROP_USAGE).await?, &[&id])
                .await?;
        }
        commit(&self.pool, tx).await?;
        Ok(())
    }

    async fn take_connection_slot(
        &self,
        profile: &str,
        slot: u32,
        owner: &str,
        now_unix: i64,
        until_unix: i64,
    ) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        let n = c
            .execute(
                &prepared(&c, sql::TAKE_SLOT).await?,
                &[&profile, &(slot as i64), &owner, &until_unix, &now_unix],
            )
            .await?;
        Ok(n > 0)
    }

    async fn free_connection_slot(
        &self,
        profile: &str,
        slot: u32,
        owner: &str,
    ) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(
            &prepared(&c, sql::FREE_SLOT).await?,
            &[&profile, &(slot as i64), &owner],
        )
        .await?;
        Ok(())
    }

    async fn purge_usage(&self, now_unix: i64) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(&prepared(&c, sql::PURGE_USAGE).await?, &[&(now_unix - DAY)])
            .await?;
        c.execute(
            &prepared(&c, sql::PURGE_APP_USAGE).await?,
            &[&(now_unix - DAY)],
        )
        .await?;
        Ok(())
    }
}

/// Stores webhook deliveries in the caller's transaction.
async fn insert_deliveries(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[NewDelivery],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let stmt = prepared(tx, sql::ENQUEUE_DELIVERY).await?;
    for d in rows {
        tx.execute(
            &stmt,
            &[&d.id, &d.webhook_id, &d.event, &d.body, &d.at, &d.at_unix],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn add_webhook(&self, row: WebhookRow) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        let w = &row.webhook;
        let events = serde_json::to_string(&w.events).unwrap_or_default();
        c.execute(
            &prepared(&c, sql::ADD_WEBHOOK).await?,
            &[
                &w.id,
                &w.url,
                &events,
                &w.format.id(),
                &row.secret,
                &w.created_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c.query(&prepared(&c, sql::WEBHOOKS).await?, &[]).await?;
        all(rows, sql::webhook_from)
    }

    async fn update_webhook(
        &self,
        w: mailroom_shared::webhooks::Webhook,
    ) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        let events = serde_json::to_string(&w.events).unwrap_or_default();
        let n = c
            .execute(
                &prepared(&c, sql::UPDATE_WEBHOOK).await?,
                &[&w.id, &w.url, &events, &w.format.id()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        let n = c
            .execute(&prepared(&c, sql::DELETE_WEBHOOK).await?, &[&id])
            .await?;
        Ok(n > 0)
    }

    async fn replace_webhook_secret(
        &self,
        id: &str,
        secret: Vec<u8>,
        previous_until: i64,
    ) -> Result<bool, StoreError> {
        // PostgreSQL refuses a NUL in text, and no id holds one.
        if id.contains('\0') {
            return Ok(false);
        }
        let c = self.pool.get().await?;
        let n = c
            .execute(
                &prepared(&c, sql::REPLACE_WEBHOOK_SECRET).await?,
                &[&id, &secret, &previous_until],
            )
            .await?;
        Ok(n > 0)
    }

    async fn forget_old_webhook_secrets(&self, now_unix: i64) -> Result<u64, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.execute(
            &prepared(&c, sql::FORGET_OLD_WEBHOOK_SECRETS).await?,
            &[&now_unix],
        )
        .await?)
    }

    async fn end_old_webhook_secret(&self, id: &str) -> Result<bool, StoreError> {
        // PostgreSQL refuses a NUL in text, and no id holds one.
        if id.contains('\0') {
            return Ok(false);
        }
        let c = self.pool.get().await?;
        let n = c
            .execute(&prepared(&c, sql::END_OLD_WEBHOOK_SECRET).await?, &[&id])
            .await?;
        Ok(n > 0)
    }

    async fn enqueue_deliveries(&self, rows: Vec<NewDelivery>) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        insert_deliveries(&tx, &rows).await?;
        commit(&self.pool, tx).await?;
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        owner: &str,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let c = self.pool.get().await?;
        let until = now + lease;
        let rows = c
            .query(
                &prepared(&c, sql::CLAIM_DELIVERIES).await?,
                &[&now, &limit, &owner, &until],
            )
            .await?;
        all(rows, sql::due_delivery_from)
    }

    async fn finish_delivery(
        &self,
        due: &DueDelivery,
        r: DeliveryResult,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let attempts = i64::from(r.attempts);
        let last_status = r.last_status.map(i64::from);
        let finished = tx
            .execute(
                &prepared(&tx, sql::FINISH_DELIVERY).await?,
                &[
                    &due.seq,
                    &attempts,
                    &r.status,
                    &r.next_unix,
                    &last_status,
                    &r.last_error,
                    &due.owner,
                ],
            )
            .await?;
        if finished == 0 {
            return Ok(());
        }
        let mark = if r.status == "delivered" {
            sql::WEBHOOK_SUCCEEDED
        } else {
            sql::WEBHOOK_FAILED
        };
        tx.execute(&prepared(&tx, mark).await?, &[&due.webhook_id, &r.at])
            .await?;
        commit(&self.pool, tx).await?;
        Ok(())
    }

    async fn deliveries(
        &self,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Vec<mailroom_shared::webhooks::Delivery>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &prepared(&c, sql::DELIVERIES).await?,
                &[&webhook_id, &limit],
            )
            .await?;
        all(rows, sql::delivery_from)
    }

    async fn purge_deliveries(&self, cutoff: &str) -> Result<u64, StoreError> {
        Ok(self
            .purge_in_batches(PURGE_DELIVERIES, cutoff, PURGE_BATCH)
            .await?
            .0)
    }

    async fn settle_delivery(&self, seq: i64, body: Option<String>) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        match body {
            Some(body) => {
                c.execute(&prepared(&c, sql::SET_DELIVERY_BODY).await?, &[&seq, &body])
                    .await?
            }
            None => {
                c.execute(&prepared(&c, sql::DROP_DELIVERY).await?, &[&seq])
                    .await?
            }
        };
        Ok(())
    }

    async fn last_event_unix(
        &self,
        event: &str,
        about: super::EventAbout<'_>,
    ) -> Result<Option<i64>, StoreError> {
        /// [`sql::LAST_EVENT`] in PostgreSQL's words.
        const LAST_EVENT: &str = "SELECT MAX(created_unix) FROM webhook_deliveries
            WHERE event = $1 AND COALESCE(body::jsonb -> 'data' ->> $3, 'default') = $2";
        let (field, value) = about.field();
        let c = self.pool.get().await?;
        let row = c
            .query_one(&prepared(&c, LAST_EVENT).await?, &[&event, &value, &field])
            .await?;
        Ok(row.opt_int(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    /// The batched purges delete exactly what the shared statements name.
    #[test]
    fn the_batched_purges_keep_the_shared_conditions() {
        use crate::store::sql;
        for (ours, shared) in [
            (super::PURGE, sql::PURGE),
            (super::PURGE_DELIVERIES, sql::PURGE_DELIVERIES),
        ] {
            let (delete, condition) = shared.split_once(" WHERE ").unwrap();
            let table = delete.trim_start_matches("DELETE FROM ");
            assert_eq!(
                ours,
                format!("{delete} WHERE seq IN (SELECT seq FROM {table} WHERE {condition} LIMIT ?2 FOR UPDATE SKIP LOCKED)")
            );
        }
    }

    #[test]
    fn the_password_never_shows() {
        let pw = "s3cret";
        for (url, expected) in [
            (
                format!("postgres://mailroom:{pw}@db.internal:5432/mailroom"),
                "host db.internal, port 5432, database mailroom, user mailroom",
            ),
            (
                format!("postgres://db/mailroom?user=m&password={pw}"),
                "host db, port 5432, database mailroom, user m",
            ),
            (
                "postgresql://postgres@127.0.0.1/test".to_string(),
                "host 127.0.0.1, port 5432, database test, user postgres",
            ),
            (
                format!("host=db.internal user=mailroom password={pw} dbname=mail"),
                "host db.internal, port 5432, database mail, user mailroom",
            ),
        ] {
            assert_eq!(describe(&url), expected);
        }
        // Passwords holding the URL's own separators, not percent-encoded.
        for bad in ["pa/ss", "pa?ss", "p@ss", "pa#ss", "a/b?c@d"] {
            let url = format!("postgres://mailroom:{bad}{pw}@db.internal:5432/mailroom");
            let shown = describe(&url);
            assert!(!shown.contains(pw), "{url} shown as {shown}");
            if shown.starts_with("(the database URL") {
                continue;
            }
            for part in bad.split(['/', '?', '@', '#']).filter(|p| p.len() > 1) {
                assert!(!shown.contains(part), "{url} shown as {shown}");
            }
        }
    }
}
