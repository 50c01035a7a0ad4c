//! Where everything lives. The traits ([`SettingsStore`], [`SessionStore`],
//! [`FailureStore`], and [`crate::queue::Queue`]) keep the server independent
//! of the database; [`SqliteStore`] is the embedded default and
//! [`postgres::PgStore`] the one several servers share. Both hold the one
//! schema of [`schema`].

pub mod postgres;
pub mod queue;
pub mod schema;

use schema::migrations;
pub use schema::{transcript_without_content, SCHEMA, TRANSCRIPTS_WITHOUT_CONTENT};

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// The stored row: settings JSON without secrets, and the encrypted secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The SETTINGS JSON, `client_secret` and `password` left out.
    pub settings_json: String,
    /// The encrypted client secret, if one is stored.
    pub client_secret: Option<Vec<u8>>,
    /// The encrypted password, if one is stored.
    pub password: Option<Vec<u8>>,
    /// The version, 1 after the first save.
    pub version: u64,
    /// RFC 3339 time of the save.
    pub updated_at: String,
}

/// One line of the change history: never a value, only which fields changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The version this save produced.
    pub version: u64,
    /// RFC 3339 time of the save.
    pub changed_at: String,
    /// The names of the fields that changed.
    pub changed_fields: Vec<String>,
}

impl HistoryEntry {
    /// A row as stored: the field names comma-separated.
    pub fn from_row(version: i64, changed_at: String, fields: &str) -> Self {
        HistoryEntry {
            version: version as u64,
            changed_at,
            changed_fields: fields
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Someone saved in between: the stored version is not the expected one.
    #[error("version conflict: {stored} is stored")]
    Conflict {
        /// The version currently stored.
        stored: u64,
    },
    /// The disk is full; nothing was written.
    #[error("the disk is full")]
    Full,
    /// The database failed.
    #[error("database error: {0}")]
    Db(String),
    /// The database cannot be reached (connection lost, server down).
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
                StoreError::Full
            }
            _ => StoreError::Db(e.to_string()),
        }
    }
}

/// Administrator sessions, by the digest of their id: in the store so that
/// every server sees them and they survive a restart.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a session until `expires_unix`; drops expired ones on the way.
    async fn create_session(
        &self,
        digest: [u8; 32],
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<(), StoreError>;
    /// Whether the session exists and has not expired.
    async fn session_valid(&self, digest: [u8; 32], now_unix: i64) -> Result<bool, StoreError>;
    /// Ends a session.
    async fn end_session(&self, digest: [u8; 32]) -> Result<(), StoreError>;
}

/// Persistence for the one current settings row and its history.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// The current record, or `None` before the first save.
    async fn load(&self) -> Result<Option<Record>, StoreError>;
    /// Saves atomically if `expected_version` is the stored version (0 when
    /// nothing is stored); returns the new version.
    async fn save(
        &self,
        expected_version: u64,
        record: Record,
        changed_fields: Vec<String>,
    ) -> Result<u64, StoreError>;
    /// The change history, newest first.
    async fn history(&self) -> Result<Vec<HistoryEntry>, StoreError>;
}

/// Counts of failed sign-ins, kept in the store so that every server sees
/// the same lockout and a restart does not reset it.
#[async_trait]
pub trait FailureStore: Send + Sync {
    /// Counts one failure for `key` at `now_unix` (a count older than
    /// `window` starts over); returns the count and when it began.
    async fn add_failure(
        &self,
        key: &str,
        now_unix: i64,
        window: i64,
    ) -> Result<(u32, i64), StoreError>;
    /// The count within the window and when it began, if any.
    async fn failures(
        &self,
        key: &str,
        now_unix: i64,
        window: i64,
    ) -> Result<Option<(u32, i64)>, StoreError>;
    /// Forgets `key`'s failures (after a success).
    async fn clear_failures(&self, key: &str) -> Result<(), StoreError>;
}

/// The upsert both stores use; `?1` key, `?2` now, `?3` window (SQLite's
/// placeholders; PostgreSQL's are numbered the same way).
pub(crate) const ADD_FAILURE_SQL: &str = "INSERT INTO sign_in_failures (key, count, first_unix) VALUES (?1, 1, ?2)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN sign_in_failures.first_unix <= ?2 - ?3 THEN 1 ELSE sign_in_failures.count + 1 END,
    first_unix = CASE WHEN sign_in_failures.first_unix <= ?2 - ?3 THEN ?2 ELSE sign_in_failures.first_unix END
RETURNING count, first_unix";

/// SQLite in `<data-dir>/mailroom.db`.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The group committer of submissions, started at the first one
    /// ([`queue::Committer`]).
    committer: Arc<std::sync::OnceLock<queue::Committer>>,
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
        migrations()
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Db(format!("migrating {}: {e}", path.display())))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            committer: Arc::default(),
        })
    }

    pub(crate) async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Db("database lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Db(e.to_string()))?
    }
}

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn load(&self) -> Result<Option<Record>, StoreError> {
        self.with_conn(|c| {
            Ok(c.query_row(
                "SELECT settings, client_secret, password, version, updated_at FROM settings WHERE id = 1",
                [],
                |row| {
                    Ok(Record {
                        settings_json: row.get(0)?,
                        client_secret: row.get(1)?,
                        password: row.get(2)?,
                        version: row.get::<_, i64>(3)? as u64,
                        updated_at: row.get(4)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn save(
        &self,
        expected_version: u64,
        record: Record,
        changed_fields: Vec<String>,
    ) -> Result<u64, StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored: u64 = tx
                .query_row("SELECT version FROM settings WHERE id = 1", [], |r| r.get::<_, i64>(0))
                .optional()?
                .unwrap_or(0) as u64;
            if stored != expected_version {
                return Err(StoreError::Conflict { stored });
            }
            let version = stored + 1;
            tx.execute(
                "INSERT INTO settings (id, version, settings, client_secret, password, updated_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET version = ?1, settings = ?2, client_secret = ?3,
                    password = ?4, updated_at = ?5",
                params![version as i64, record.settings_json, record.client_secret, record.password, record.updated_at],
            )?;
            let fields = changed_fields.join(",");
            tx.execute(
                "INSERT INTO settings_history (version, changed_at, changed_fields) VALUES (?1, ?2, ?3)",
                params![version as i64, record.updated_at, fields],
            )?;
            tx.commit()?;
            Ok(version)
        })
        .await
    }

    async fn history(&self) -> Result<Vec<HistoryEntry>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(
                "SELECT version, changed_at, changed_fields FROM settings_history ORDER BY version DESC",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(HistoryEntry::from_row(r.get(0)?, r.get(1)?, &r.get::<_, String>(2)?))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
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
            c.execute("DELETE FROM sessions WHERE expires_unix <= ?1", [now_unix])?;
            c.execute(
                "INSERT INTO sessions (digest, expires_unix) VALUES (?1, ?2)",
                params![digest.to_vec(), expires_unix],
            )?;
            Ok(())
        })
        .await
    }

    async fn session_valid(&self, digest: [u8; 32], now_unix: i64) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.query_row(
                "SELECT 1 FROM sessions WHERE digest = ?1 AND expires_unix > ?2",
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
            c.execute("DELETE FROM sessions WHERE digest = ?1", [digest.to_vec()])?;
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
            c.execute(
                "DELETE FROM sign_in_failures WHERE first_unix <= ?1",
                [now_unix - window],
            )?;
            Ok(
                c.query_row(ADD_FAILURE_SQL, params![key, now_unix, window], |r| {
                    Ok((r.get::<_, i64>(0)? as u32, r.get(1)?))
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
            Ok(c.query_row(
                "SELECT count, first_unix FROM sign_in_failures WHERE key = ?1 AND first_unix > ?2",
                params![key, now_unix - window],
                |r| Ok((r.get::<_, i64>(0)? as u32, r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        self.with_conn(move |c| {
            c.execute("DELETE FROM sign_in_failures WHERE key = ?1", [key])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn a_release_database_opens_with_its_data_and_orphans_go() {
        // A database as the last release left it: its six schema steps, a
        // message with a recipient and an attempt, and an orphan recipient.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailroom.db");
        {
            let mut c = Connection::open(&path).unwrap();
            Migrations::new(SCHEMA[..6].iter().map(|sql| M::up(sql)).collect())
                .to_latest(&mut c)
                .unwrap();
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

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }
}
