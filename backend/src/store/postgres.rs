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
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use mailroom_shared::api::Stage;
use mailroom_shared::sending::{
    App, Attempt, Details, LastError, Paused, RecipientState, Status, Summary,
};
use tokio::sync::Notify;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::queue::{
    page_end, stage_of, status_of, AttemptRecord, ChangeError, Claimed, Committer, Enqueued, Lease,
    ListFilter, NewMessage, Queue, APP_COLUMNS,
};
use crate::store::{
    FailureStore, HistoryEntry, Record, SessionStore, SettingsStore, StoreError, ADD_FAILURE_SQL,
};

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

fn app_row(row: &Row) -> App {
    let allowed: String = row.get(4);
    App {
        id: row.get(0),
        name: row.get(1),
        created_at: row.get(2),
        last_used_at: row.get(3),
        allowed_from: serde_json::from_str(&allowed).unwrap_or_default(),
        rewrite_from: row.get::<_, i64>(5) != 0,
        messages: row.get::<_, i64>(6) as u64,
        limits: crate::queue::limits_of(row.get::<_, Option<String>>(7).as_deref()),
        usage: Default::default(),
    }
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N`.
fn numbered(sql: &str) -> String {
    sql.replace('?', "$")
}

/// An app's recent and waiting messages (PostgreSQL).
async fn recent_in<C: deadpool_postgres::GenericClient>(
    c: &C,
    app_id: &str,
    now_unix: i64,
    with_rows: bool,
) -> Result<crate::queue::Recent, tokio_postgres::Error> {
    let since = now_unix - 24 * 3600;
    let rows = if with_rows {
        c.query(&numbered(crate::queue::RECENT_SQL), &[&app_id, &since])
            .await?
    } else {
        Vec::new()
    };
    let waiting: i64 = c
        .query_one(&numbered(crate::queue::WAITING_SQL), &[&app_id])
        .await?
        .get(0);
    Ok(crate::queue::Recent {
        messages: rows
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1) as u32))
            .collect(),
        waiting: waiting as u64,
    })
}

const SUMMARY_COLUMNS: &str = "m.seq, m.id, COALESCE(m.app_id, m.source), m.mail_from, m.subject, m.size, m.status, m.created_at, m.updated_at, m.attempt_count, m.last_stage, m.last_code, m.last_message, \
     ARRAY(SELECT r.address FROM recipients r WHERE r.message_seq = m.seq ORDER BY r.idx)";

fn summary_row(row: &Row) -> Summary {
    let last_stage: Option<String> = row.get(10);
    let last_message: Option<String> = row.get(12);
    Summary {
        id: row.get(1),
        app: row.get(2),
        from: row.get(3),
        to: row.get(13),
        subject: row.get(4),
        size: row.get::<_, i64>(5) as u64,
        status: status_of(row.get(6)),
        created_at: row.get(7),
        updated_at: row.get(8),
        attempt_count: row.get::<_, i64>(9) as u32,
        last_error: match (last_stage.as_deref().and_then(stage_of), last_message) {
            (Some(stage), Some(message)) => Some(LastError {
                stage,
                code: row.get(11),
                message,
            }),
            _ => None,
        },
    }
}

async fn summary_by_id(
    c: &impl deadpool_postgres::GenericClient,
    id: &str,
) -> Result<Option<Summary>, StoreError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM messages m WHERE m.id = $1");
    Ok(c.query_opt(&sql, &[&id]).await?.as_ref().map(summary_row))
}

impl PgStore {
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
    async fn load(&self) -> Result<Option<Record>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT settings, client_secret, password, version, updated_at FROM settings WHERE id = 1",
                &[],
            )
            .await?;
        Ok(row.map(|r| Record {
            settings_json: r.get(0),
            client_secret: r.get(1),
            password: r.get(2),
            version: r.get::<_, i64>(3) as u64,
            updated_at: r.get(4),
        }))
    }

    async fn save(
        &self,
        expected_version: u64,
        record: Record,
        changed_fields: Vec<String>,
    ) -> Result<u64, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // The row lock makes concurrent saves wait, then see the new version.
        tx.execute("LOCK TABLE settings IN EXCLUSIVE MODE", &[])
            .await?;
        let stored = tx
            .query_opt("SELECT version FROM settings WHERE id = 1", &[])
            .await?
            .map(|r| r.get::<_, i64>(0) as u64)
            .unwrap_or(0);
        if stored != expected_version {
            return Err(StoreError::Conflict { stored });
        }
        let version = (stored + 1) as i64;
        tx.execute(
            "INSERT INTO settings (id, version, settings, client_secret, password, updated_at)
             VALUES (1, $1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET version = $1, settings = $2, client_secret = $3,
                password = $4, updated_at = $5",
            &[
                &version,
                &record.settings_json,
                &record.client_secret,
                &record.password,
                &record.updated_at,
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO settings_history (version, changed_at, changed_fields) VALUES ($1, $2, $3)",
            &[&version, &record.updated_at, &changed_fields.join(",")],
        )
        .await?;
        tx.execute("SELECT pg_notify($1, 'settings')", &[&self.channel])
            .await?;
        tx.commit().await?;
        Ok(version as u64)
    }

    async fn history(&self) -> Result<Vec<HistoryEntry>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT version, changed_at, changed_fields FROM settings_history ORDER BY version DESC",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| HistoryEntry::from_row(r.get(0), r.get(1), r.get(2)))
            .collect())
    }
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
            "DELETE FROM sessions WHERE expires_unix <= $1",
            &[&now_unix],
        )
        .await?;
        c.execute(
            "INSERT INTO sessions (digest, expires_unix) VALUES ($1, $2)",
            &[&digest.as_slice(), &expires_unix],
        )
        .await?;
        Ok(())
    }

    async fn session_valid(&self, digest: [u8; 32], now_unix: i64) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT 1 FROM sessions WHERE digest = $1 AND expires_unix > $2",
            &[&digest.as_slice(), &now_unix],
        )
        .await?
        .is_some())
    }

    async fn end_session(&self, digest: [u8; 32]) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(
            "DELETE FROM sessions WHERE digest = $1",
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
        let cutoff = now_unix - window;
        c.execute(
            "DELETE FROM sign_in_failures WHERE first_unix <= $1",
            &[&cutoff],
        )
        .await?;
        let sql = ADD_FAILURE_SQL
            .replace('?', "$")
            .replace("$2 - $3", "$2::BIGINT - $3::BIGINT");
        let row = c.query_one(&sql, &[&key, &now_unix, &window]).await?;
        Ok((row.get::<_, i64>(0) as u32, row.get(1)))
    }

    async fn failures(
        &self,
        key: &str,
        now_unix: i64,
        window: i64,
    ) -> Result<Option<(u32, i64)>, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT count, first_unix FROM sign_in_failures WHERE key = $1 AND first_unix > $2",
            &[&key, &(now_unix - window)],
        )
        .await?
        .map(|r| (r.get::<_, i64>(0) as u32, r.get(1))))
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute("DELETE FROM sign_in_failures WHERE key = $1", &[&key])
            .await?;
        Ok(())
    }
}

/// A message's status and whether it still has its body, locked for a change.
async fn locked_status(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
) -> Result<(Status, bool), ChangeError> {
    let row = tx
        .query_opt(
            "SELECT status, body IS NOT NULL FROM messages WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(StoreError::from)?
        .ok_or(ChangeError::NotFound)?;
    Ok((status_of(row.get(0)), row.get(1)))
}

/// Records one attempt inside a transaction.
async fn record_in(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
    r: &AttemptRecord,
    now: &str,
) -> Result<(), StoreError> {
    let Some(row) = tx
        .query_opt(
            "SELECT seq, attempt_count FROM messages WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
    else {
        return Ok(());
    };
    let (seq, count): (i64, i64) = (row.get(0), row.get(1));
    let a = &r.attempt;
    tx.execute(
        "INSERT INTO attempts (message_seq, n, at, ok, stage, code, message, hint, transcript)
         VALUES ($1, (SELECT COALESCE(MAX(n), 0) + 1 FROM attempts WHERE message_seq = $1), $2, $3, $4, $5, $6, $7, $8)",
        &[
            &seq,
            &a.at,
            &(a.ok as i64),
            &a.stage.map(|s| s.as_str()),
            &a.code,
            &a.message,
            &a.hint,
            &r.transcript,
        ],
    )
    .await?;
    for o in &r.recipients {
        tx.execute(
            "UPDATE recipients SET status = $3, code = $4, message = $5 WHERE message_seq = $1 AND idx = $2",
            &[&seq, &(o.idx as i64), &o.status.as_str(), &o.code, &o.message],
        )
        .await?;
    }
    let (last_stage, last_code, last_message) = r.last_error();
    let keep_body = r.keeps_body();
    tx.execute(
        "UPDATE messages SET status = $2, updated_at = $3, next_attempt_unix = $4,
            attempt_count = $5, last_stage = $6, last_code = $7, last_message = $8,
            body = CASE WHEN $9 THEN body ELSE NULL END, locked_by = NULL, locked_until = NULL
         WHERE seq = $1",
        &[
            &seq,
            &r.status.as_str(),
            &now,
            &r.next_attempt_unix,
            &if r.counts { count + 1 } else { count },
            &last_stage,
            &last_code,
            &last_message,
            &keep_body,
        ],
    )
    .await?;
    Ok(())
}

/// What one batch's transaction already holds: the apps whose lock it
/// took, and their waiting counts when no window limit needs rows.
#[derive(Default)]
struct Batch {
    locked: std::collections::HashSet<String>,
    waiting: std::collections::HashMap<String, u64>,
}

/// Stores one message inside the batch's transaction (its own savepoint);
/// returns the outcome and, when it counted them, the app's waiting messages.
async fn enqueue_in(
    tx: &deadpool_postgres::Transaction<'_>,
    m: &NewMessage,
    batch: &Batch,
) -> Result<(Enqueued, Option<u64>), tokio_postgres::Error> {
    // A lock per app for this transaction, so one app's parallel
    // submissions (on any server) check its limits one at a time.
    if let (Some(app), Some(_)) = (&m.app_id, &m.limits) {
        if !batch.locked.contains(app) {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
                &[app],
            )
            .await?;
        }
    }
    if let (Some(app), Some(key)) = (&m.app_id, &m.idempotency_key) {
        // Wins the key, or finds who did (a concurrent twin waits for it).
        let inserted = tx
            .execute(
                "INSERT INTO idempotency (app_id, key, message_id, created_unix) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (app_id, key) DO NOTHING",
                &[app, key, &m.id, &m.now_unix],
            )
            .await?;
        if inserted == 0 {
            let row = tx
                .query_one(
                    "SELECT i.message_id, m.status FROM idempotency i
                     LEFT JOIN messages m ON m.id = i.message_id
                     WHERE i.app_id = $1 AND i.key = $2",
                    &[app, key],
                )
                .await?;
            let status: Option<String> = row.get(1);
            return Ok((
                Enqueued::Repeat(
                    row.get(0),
                    status.as_deref().map(status_of).unwrap_or(Status::Sent),
                ),
                None,
            ));
        }
    }
    let mut waiting = None;
    if let (Some(app), Some(limits)) = (&m.app_id, &m.limits) {
        let recent = match batch.waiting.get(app) {
            Some(n) if !limits.has_windows() => crate::queue::Recent {
                messages: Vec::new(),
                waiting: *n,
            },
            _ => recent_in(tx, app, m.now_unix, limits.has_windows()).await?,
        };
        waiting = Some(recent.waiting);
        if let Some(hit) = recent.hit(limits, m.now_unix, m.recipients.len() as u32) {
            // Rolled back: the idempotency key is not taken either.
            return Ok((Enqueued::Limited(hit), waiting));
        }
    }
    let seq: i64 = tx
        .query_one(
            "INSERT INTO messages (id, app_id, source, mail_from, subject, size, body, status, created_at, created_unix, updated_at, next_attempt_unix, rcpt_count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $8, $9, $10) RETURNING seq",
            &[
                &m.id,
                &m.app_id,
                &m.source,
                &m.mail_from,
                &m.subject,
                &(m.body.len() as i64),
                &m.body,
                &m.now,
                &m.now_unix,
                &(m.recipients.len() as i64),
            ],
        )
        .await?
        .get(0);
    // Every recipient in one statement.
    let idx: Vec<i64> = (0..m.recipients.len() as i64).collect();
    tx.execute(
        "INSERT INTO recipients (message_seq, idx, address, status)
         SELECT $1, i, a, 'queued' FROM UNNEST($2::BIGINT[], $3::TEXT[]) AS r(i, a)",
        &[&seq, &idx, &m.recipients],
    )
    .await?;
    Ok((Enqueued::New(m.id.clone()), waiting))
}

impl PgStore {
    /// Stores a batch of submissions in one transaction, one savepoint each,
    /// and commits once. The apps' locks are taken in the order of their ids,
    /// so two servers' batches never wait for each other in a circle; each
    /// app's lock, waiting count and message count cost one statement a
    /// batch, not one a message.
    async fn enqueue_batch(
        &self,
        batch: Vec<NewMessage>,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let mut c = self.pool.get().await?;
        let mut tx = c.transaction().await?;
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|a, b| batch[*a].app_id.cmp(&batch[*b].app_id));
        if let Some(m) = batch.iter().find(|m| m.idempotency_key.is_some()) {
            tx.execute(
                "DELETE FROM idempotency WHERE created_unix < $1",
                &[&(m.now_unix - 24 * 3600)],
            )
            .await?;
        }
        let mut state = Batch::default();
        let mut stored: std::collections::BTreeMap<String, (i64, String)> = Default::default();
        let mut out: Vec<Option<Result<Enqueued, StoreError>>> = vec![None; batch.len()];
        for i in order {
            let m = &batch[i];
            let sp = tx.transaction().await?;
            let outcome = match enqueue_in(&sp, m, &state).await {
                Ok((done @ Enqueued::New(_), waiting)) => {
                    sp.commit().await?;
                    if let Some(app) = &m.app_id {
                        if m.limits.is_some() {
                            state.locked.insert(app.clone());
                        }
                        if let Some(n) = waiting {
                            state.waiting.insert(app.clone(), n + 1);
                        }
                        let entry = stored.entry(app.clone()).or_insert((0, m.now.clone()));
                        entry.0 += 1;
                        entry.1 = m.now.clone();
                    }
                    Ok(done)
                }
                Ok((other, _)) => {
                    sp.rollback().await?;
                    Ok(other)
                }
                Err(e) => {
                    sp.rollback().await?;
                    Err(db_error(e))
                }
            };
            out[i] = Some(outcome);
        }
        for (app, (n, now)) in &stored {
            tx.execute(
                "UPDATE apps SET messages = messages + $2, last_used_at = $3 WHERE id = $1",
                &[app, n, now],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Err(StoreError::Db("not stored".into()))))
            .collect())
    }
}

#[async_trait]
impl Queue for PgStore {
    async fn create_app(&self, app: App, key_hash: [u8; 32]) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.execute(
            "INSERT INTO apps (id, name, key_hash, allowed_from, rewrite_from, created_at, limits)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &app.id,
                &app.name,
                &key_hash.as_slice(),
                &serde_json::to_string(&app.allowed_from).unwrap_or_else(|_| "[]".into()),
                &(app.rewrite_from as i64),
                &app.created_at,
                &crate::queue::limits_json(&app.limits),
            ],
        )
        .await?;
        Ok(())
    }

    async fn app_name_taken(&self, name: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT 1 FROM apps WHERE revoked = 0 AND lower(name) = lower($1)",
            &[&name.trim()],
        )
        .await?
        .is_some())
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        let c = self.pool.get().await?;
        let sql =
            format!("SELECT {APP_COLUMNS} FROM apps WHERE revoked = 0 ORDER BY created_at, id");
        Ok(c.query(&sql, &[]).await?.iter().map(app_row).collect())
    }

    async fn revoke_app(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.execute(
            "UPDATE apps SET revoked = 1 WHERE id = $1 AND revoked = 0",
            &[&id],
        )
        .await?
            > 0)
    }

    async fn update_app(&self, app: App) -> Result<Option<App>, StoreError> {
        let c = self.pool.get().await?;
        let sql = format!(
            "UPDATE apps SET name = $2, allowed_from = $3, rewrite_from = $4, limits = $5
             WHERE id = $1 AND revoked = 0 RETURNING {APP_COLUMNS}"
        );
        Ok(c.query_opt(
            &sql,
            &[
                &app.id,
                &app.name,
                &serde_json::to_string(&app.allowed_from).unwrap_or_else(|_| "[]".into()),
                &(app.rewrite_from as i64),
                &crate::queue::limits_json(&app.limits),
            ],
        )
        .await?
        .as_ref()
        .map(app_row))
    }

    async fn recent(
        &self,
        app_id: &str,
        now_unix: i64,
        rows: bool,
    ) -> Result<crate::queue::Recent, StoreError> {
        let c = self.pool.get().await?;
        Ok(recent_in(&c, app_id, now_unix, rows).await?)
    }

    async fn app_by_key(&self, key_hash: [u8; 32]) -> Result<Option<App>, StoreError> {
        let c = self.pool.get().await?;
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE revoked = 0 AND key_hash = $1");
        Ok(c.query_opt(&sql, &[&key_hash.as_slice()])
            .await?
            .as_ref()
            .map(app_row))
    }

    async fn app_by_id(&self, id: &str) -> Result<Option<(App, [u8; 32])>, StoreError> {
        let c = self.pool.get().await?;
        let sql = format!("SELECT {APP_COLUMNS}, key_hash FROM apps WHERE revoked = 0 AND id = $1");
        Ok(c.query_opt(&sql, &[&id]).await?.map(|row| {
            let hash: Vec<u8> = row.get(7);
            (app_row(&row), hash.try_into().unwrap_or([0u8; 32]))
        }))
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
        now_unix: i64,
        limit: u32,
        lease: &Lease,
    ) -> Result<Vec<Claimed>, StoreError> {
        let c = self.pool.get().await?;
        let until = now_unix + lease.seconds;
        // Two indexed claims rather than one with OR: due messages first,
        // then lapsed leases.
        // Due messages in turn per app (round robin, as SQLite's
        // FAIR_DUE_SQL), then lapsed leases; each pick locked SKIP LOCKED.
        let mut out: Vec<((i64, i64, i64), Claimed)> = Vec::new();
        for (round, pick) in [
            "SELECT m2.seq, due.turn, due.next_attempt_unix FROM messages m2 JOIN (
                 SELECT seq, next_attempt_unix,
                        ROW_NUMBER() OVER (PARTITION BY COALESCE(app_id, source, '') ORDER BY next_attempt_unix, seq) AS turn
                 FROM messages
                 WHERE status IN ('queued', 'deferred') AND next_attempt_unix <= $1 AND body IS NOT NULL
                 ORDER BY turn, next_attempt_unix, seq LIMIT $2
             ) due ON due.seq = m2.seq
             -- Checked again on the row as locked: another server may have
             -- claimed it since the ranking was read.
             WHERE m2.status IN ('queued', 'deferred') AND m2.next_attempt_unix <= $1 AND m2.body IS NOT NULL
             FOR UPDATE OF m2 SKIP LOCKED",
            "SELECT seq, 0::BIGINT AS turn, next_attempt_unix FROM messages
             WHERE status = 'sending' AND locked_until < $1 AND body IS NOT NULL
             ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED",
        ]
        .into_iter()
        .enumerate()
        {
            let left = limit as i64 - out.len() as i64;
            if left <= 0 {
                break;
            }
            let sql = format!(
                "UPDATE messages m SET status = 'sending', locked_by = $3, locked_until = $4
                 FROM ({pick}) due
                 WHERE m.seq = due.seq
                 RETURNING m.seq, m.id, m.mail_from, m.body, m.attempt_count, m.created_unix, m.app_id,
                    ARRAY(SELECT r.idx FROM recipients r WHERE r.message_seq = m.seq AND r.status IN ('queued', 'deferred') ORDER BY r.idx),
                    ARRAY(SELECT r.address FROM recipients r WHERE r.message_seq = m.seq AND r.status IN ('queued', 'deferred') ORDER BY r.idx),
                    due.turn"
            );
            let rows = c
                .query(&sql, &[&now_unix, &left, &lease.owner, &until])
                .await?;
            out.extend(rows.iter().map(|r| {
                let idx: Vec<i64> = r.get(7);
                let addresses: Vec<String> = r.get(8);
                let seq = r.get::<_, i64>(0);
                (
                    (round as i64, r.get::<_, i64>(9), seq),
                    Claimed {
                        id: r.get(1),
                        mail_from: r.get(2),
                        body: r.get(3),
                        attempt_count: r.get::<_, i64>(4) as u32,
                        created_unix: r.get(5),
                        app_id: r.get(6),
                        recipients: idx.into_iter().map(|i| i as u32).zip(addresses).collect(),
                    },
                )
            }));
        }
        // In turn order: round robin between apps, then oldest first.
        out.sort_by_key(|(order, _)| *order);
        Ok(out.into_iter().map(|(_, m)| m).collect())
    }

    async fn renew(&self, id: &str, now_unix: i64, lease: &Lease) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.execute(
            "UPDATE messages SET locked_until = $3 WHERE id = $1 AND status = 'sending' AND locked_by = $2",
            &[&id, &lease.owner, &(now_unix + lease.seconds)],
        )
        .await?
            > 0)
    }

    async fn reserve_slot(&self, gap_ms: i64, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_one(
                "INSERT INTO delivery_rate (id, next_slot_ms) VALUES (1, $1::BIGINT + $2::BIGINT)
                 ON CONFLICT (id) DO UPDATE SET next_slot_ms = GREATEST(delivery_rate.next_slot_ms, $1::BIGINT) + $2::BIGINT
                 RETURNING next_slot_ms - $2::BIGINT",
                &[&now_ms, &gap_ms],
            )
            .await?;
        Ok(Some(row.get(0)))
    }

    async fn release(&self, ids: Vec<String>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let c = self.pool.get().await?;
        c.execute(
            "UPDATE messages SET status = 'queued', locked_by = NULL, locked_until = NULL
             WHERE id = ANY($1) AND status = 'sending'",
            &[&ids],
        )
        .await?;
        Ok(())
    }

    async fn record_many(
        &self,
        batch: Vec<(String, AttemptRecord)>,
        now: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        for (id, r) in &batch {
            record_in(&tx, id, r, now).await?;
        }
        tx.commit().await?;
        Ok(())
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

    async fn expire(&self, cutoff_unix: i64, now: &str) -> Result<u64, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.execute(
            "UPDATE messages SET status = 'failed', updated_at = $2,
                last_stage = COALESCE(last_stage, 'send'),
                last_message = 'The message waited longer than --max-queue-time without being delivered.'
             WHERE status IN ('queued', 'deferred') AND created_unix < $1",
            &[&cutoff_unix, &now],
        )
        .await?)
    }

    async fn purge(&self, cutoff: &str) -> Result<u64, StoreError> {
        let c = self.pool.get().await?;
        // Recipients and attempts go with their message (ON DELETE CASCADE).
        Ok(c.execute(
            "DELETE FROM messages WHERE status IN ('sent', 'failed', 'cancelled') AND updated_at < $1",
            &[&cutoff],
        )
        .await?)
    }

    async fn counts(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        let c = self.pool.get().await?;
        let mut counts: BTreeMap<Status, u64> = Status::ALL.iter().map(|s| (*s, 0)).collect();
        for r in c
            .query("SELECT status, COUNT(*) FROM messages GROUP BY status", &[])
            .await?
        {
            counts.insert(status_of(r.get(0)), r.get::<_, i64>(1) as u64);
        }
        Ok(counts)
    }

    async fn list(&self, f: ListFilter) -> Result<(Vec<Summary>, Option<String>), StoreError> {
        let c = self.pool.get().await?;
        let status = f.status.map(|s| s.as_str().to_string());
        let like =
            f.q.as_deref()
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(crate::queue::like_pattern);
        let limit = f.limit.clamp(1, 200) as i64;
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM messages m
             WHERE ($1::TEXT IS NULL OR m.status = $1)
               AND ($2::TEXT IS NULL OR m.app_id = $2)
               AND ($3::TEXT IS NULL OR m.subject ILIKE $3 OR m.mail_from ILIKE $3
                    OR EXISTS (SELECT 1 FROM recipients r WHERE r.message_seq = m.seq AND r.address ILIKE $3))
               AND ($4::TEXT IS NULL OR m.seq < (SELECT seq FROM messages WHERE id = $4))
             ORDER BY m.seq DESC LIMIT $5"
        );
        let mut rows: Vec<Summary> = c
            .query(&sql, &[&status, &f.app, &like, &f.before, &(limit + 1)])
            .await?
            .iter()
            .map(summary_row)
            .collect();
        let next = page_end(&mut rows, limit as u32);
        Ok((rows, next))
    }

    async fn details(&self, id: &str) -> Result<Option<Details>, StoreError> {
        let c = self.pool.get().await?;
        let Some(summary) = summary_by_id(&c, id).await? else {
            return Ok(None);
        };
        let recipients = c
            .query(
                "SELECT r.address, r.status, r.code, r.message FROM recipients r
                 JOIN messages m ON m.seq = r.message_seq WHERE m.id = $1 ORDER BY r.idx",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| RecipientState {
                address: r.get(0),
                status: status_of(r.get(1)),
                code: r.get(2),
                message: r.get(3),
            })
            .collect();
        let attempts = c
            .query(
                "SELECT a.at, a.ok, a.stage, a.code, a.message, a.hint FROM attempts a
                 JOIN messages m ON m.seq = a.message_seq WHERE m.id = $1 ORDER BY a.n",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| Attempt {
                at: r.get(0),
                ok: r.get::<_, i64>(1) != 0,
                stage: r.get::<_, Option<&str>>(2).and_then(stage_of),
                code: r.get(3),
                message: r.get(4),
                hint: r.get(5),
            })
            .collect();
        Ok(Some(Details {
            summary,
            recipients,
            attempts,
        }))
    }

    async fn retry(&self, id: &str, now: &str, now_unix: i64) -> Result<Summary, ChangeError> {
        let mut c = self.pool.get().await.map_err(StoreError::from)?;
        let tx = c.transaction().await.map_err(StoreError::from)?;
        let (status, has_body) = locked_status(&tx, id).await?;
        if !matches!(status, Status::Failed | Status::Deferred) || !has_body {
            return Err(ChangeError::Status(status));
        }
        tx.execute(
            "UPDATE messages SET status = 'queued', updated_at = $2, next_attempt_unix = $3, created_unix = $3 WHERE id = $1",
            &[&id, &now, &now_unix],
        )
        .await
        .map_err(StoreError::from)?;
        tx.execute(
            "UPDATE recipients SET status = 'queued' WHERE message_seq = (SELECT seq FROM messages WHERE id = $1) AND status IN ('failed', 'deferred')",
            &[&id],
        )
        .await
        .map_err(StoreError::from)?;
        let s = summary_by_id(&tx, id).await?;
        tx.commit().await.map_err(StoreError::from)?;
        s.ok_or(ChangeError::NotFound)
    }

    async fn cancel(&self, id: &str, now: &str) -> Result<Summary, ChangeError> {
        let mut c = self.pool.get().await.map_err(StoreError::from)?;
        let tx = c.transaction().await.map_err(StoreError::from)?;
        let row = tx
            .query_opt(
                "SELECT status FROM messages WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(StoreError::from)?;
        let Some(row) = row else {
            return Err(ChangeError::NotFound);
        };
        let status = status_of(row.get(0));
        if !matches!(status, Status::Queued | Status::Deferred) {
            return Err(ChangeError::Status(status));
        }
        tx.execute(
            "UPDATE messages SET status = 'cancelled', updated_at = $2, body = NULL WHERE id = $1",
            &[&id, &now],
        )
        .await
        .map_err(StoreError::from)?;
        let s = summary_by_id(&tx, id).await?;
        tx.commit().await.map_err(StoreError::from)?;
        s.ok_or(ChangeError::NotFound)
    }

    async fn pause_state(&self) -> Result<Option<Paused>, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT since, stage, code, message, hint FROM delivery_pause WHERE id = 1",
            &[],
        )
        .await?
        .map(|r| Paused {
            since: r.get(0),
            stage: stage_of(r.get(1)).unwrap_or(Stage::Connect),
            code: r.get(2),
            message: r.get(3),
            hint: r.get(4),
        }))
    }

    async fn set_pause(&self, p: Option<Paused>) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        match p {
            None => {
                c.execute("DELETE FROM delivery_pause", &[]).await?;
            }
            Some(p) => {
                c.execute(
                    "INSERT INTO delivery_pause (id, since, stage, code, message, hint) VALUES (1, $1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO UPDATE SET stage = $2, code = $3, message = $4, hint = $5",
                    &[&p.since, &p.stage.as_str(), &p.code, &p.message, &p.hint],
                )
                .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

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
