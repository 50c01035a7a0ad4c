//! The schema both stores hold, as numbered, append-only steps in SQLite's
//! words (PostgreSQL applies them translated, [`crate::store::postgres`]).
//! A released step is never edited or moved: a change is a new step at the
//! end. SQLite numbers them with `user_version` (rusqlite_migration),
//! PostgreSQL in `mailroom_migrations`.

use rusqlite::params;
use rusqlite_migration::{Migrations, M};

/// The settings row and its history.
pub const SETTINGS_MIGRATION: &str = "CREATE TABLE settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    settings TEXT NOT NULL,
    client_secret BLOB,
    password BLOB,
    updated_at TEXT NOT NULL
);
CREATE TABLE settings_history (
    version INTEGER PRIMARY KEY,
    changed_at TEXT NOT NULL,
    changed_fields TEXT NOT NULL
);";

/// Administrator sessions.
pub const SESSIONS_MIGRATION: &str =
    "CREATE TABLE sessions (digest BLOB PRIMARY KEY, expires_unix INTEGER NOT NULL);";

/// Failed sign-ins and wrong app keys, per scope and address.
pub const FAILURES_MIGRATION: &str = "CREATE TABLE sign_in_failures (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    first_unix INTEGER NOT NULL
);";

/// Recipients and attempts left behind by deletes made by a SQLite built
/// with foreign keys off (its `ON DELETE CASCADE` did nothing); the bundled
/// one has them on, so this finds nothing there.
pub const MIGRATION_ORPHANS: &str =
    "DELETE FROM recipients WHERE message_seq NOT IN (SELECT seq FROM messages);
DELETE FROM attempts WHERE message_seq NOT IN (SELECT seq FROM messages);";

/// Per-app limits and what counts toward them: each message's recipient
/// count, and indexes for an app's recent and waiting messages.
pub const MIGRATION_LIMITS: &str = "ALTER TABLE apps ADD COLUMN limits TEXT;
ALTER TABLE messages ADD COLUMN rcpt_count INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET rcpt_count = (SELECT COUNT(*) FROM recipients r WHERE r.message_seq = messages.seq);
CREATE INDEX messages_app_created ON messages(app_id, created_unix);
CREATE INDEX messages_app_status ON messages(app_id, status);";

/// The sender of a message without an app (the relay's trusted networks).
pub const MIGRATION_SOURCE: &str = "ALTER TABLE messages ADD COLUMN source TEXT;";

/// Leases on claimed messages.
pub const MIGRATION_LEASE: &str = "ALTER TABLE messages ADD COLUMN locked_by TEXT;
ALTER TABLE messages ADD COLUMN locked_until INTEGER;";

/// The tables of the sending side.
pub const QUEUE_MIGRATION: &str = "
CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    allowed_from TEXT NOT NULL,
    rewrite_from INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    messages INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX apps_live_name ON apps(name) WHERE revoked = 0;
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    app_id TEXT,
    mail_from TEXT NOT NULL,
    subject TEXT NOT NULL,
    size INTEGER NOT NULL,
    body BLOB,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    next_attempt_unix INTEGER NOT NULL,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    last_stage TEXT,
    last_code TEXT,
    last_message TEXT
);
CREATE INDEX messages_due ON messages(status, next_attempt_unix);
CREATE TABLE recipients (
    message_seq INTEGER NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    code TEXT,
    message TEXT,
    PRIMARY KEY (message_seq, idx)
);
CREATE TABLE attempts (
    message_seq INTEGER NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    stage TEXT,
    code TEXT,
    message TEXT NOT NULL,
    hint TEXT,
    transcript TEXT,
    PRIMARY KEY (message_seq, n)
);
CREATE TABLE idempotency (
    app_id TEXT NOT NULL,
    key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    PRIMARY KEY (app_id, key)
);
CREATE TABLE delivery_pause (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    since TEXT NOT NULL,
    stage TEXT NOT NULL,
    code TEXT,
    message TEXT NOT NULL,
    hint TEXT
);
";

/// Every schema step, in order, in SQLite's words; PostgreSQL applies the
/// same steps translated ([`crate::store::postgres`]), so both stores hold one schema.
pub const SCHEMA: &[&str] = &[
    SETTINGS_MIGRATION,
    QUEUE_MIGRATION,
    MIGRATION_SOURCE,
    MIGRATION_LEASE,
    SESSIONS_MIGRATION,
    FAILURES_MIGRATION,
    TRANSCRIPTS_WITHOUT_CONTENT,
    MIGRATION_LIMITS,
    MIGRATION_ORPHANS,
    MIGRATION_TRANSPORT,
    MIGRATION_DUE_PER_APP,
    MIGRATION_CERTIFICATES,
    MIGRATION_WEBHOOKS,
    MIGRATION_PROFILES,
    MIGRATION_QUOTA_WAITED,
    MIGRATION_APP_USAGE,
    MIGRATION_EXPIRY_INDEXES,
    MIGRATION_FINAL_BY_AGE,
    MIGRATION_CANCELLED_RECIPIENTS,
    MIGRATION_IDEMPOTENT_REQUEST,
    MIGRATION_WEBHOOK_PREVIOUS_SECRET,
    MIGRATION_REPLACED_APP_KEY,
    MIGRATION_OLD_APP_KEY_UNTIL,
    MIGRATION_OLD_APP_KEY_USED,
    MIGRATION_OLD_APP_KEY_CLIENTS,
    MIGRATION_MESSAGE_ID_HEADER,
];

/// Step 26: each message's Message-ID header (`<…@…>`, as sent upstream),
/// so Activity shows the id Exchange's message trace and the recipients'
/// mail know it by, and a search by it finds the message. Messages stored
/// before this step have none.
pub const MIGRATION_MESSAGE_ID_HEADER: &str =
    "ALTER TABLE messages ADD COLUMN message_id_header TEXT;";

/// Step 25: each client's last use of an app's key from before its last
/// *New key* (Unix seconds, refused or not), not only the last one's, so
/// the Apps list names every device still to move. `since` is the app's
/// `key_replaced_at` then: a later new key leaves these rows unshown.
pub const MIGRATION_OLD_APP_KEY_CLIENTS: &str = "CREATE TABLE old_key_clients (
    app_id TEXT NOT NULL,
    client TEXT NOT NULL,
    at INTEGER NOT NULL,
    refused INTEGER NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (app_id, client)
);";

/// Step 24: the last use of an app's key from before its last *New key*
/// (Unix seconds, the client, and whether it was refused), so the Apps
/// list names the device still to move without a look at the log.
pub const MIGRATION_OLD_APP_KEY_USED: &str =
    "ALTER TABLE apps ADD COLUMN previous_key_used_at INTEGER;
ALTER TABLE apps ADD COLUMN previous_key_used_from TEXT;
ALTER TABLE apps ADD COLUMN previous_key_refused INTEGER;";

/// Step 23: an app given a new key may keep its old one working for a
/// while (`previous_key_until`, Unix seconds; none: it stopped at once), so
/// devices can be moved to the new key one by one without refusing mail.
pub const MIGRATION_OLD_APP_KEY_UNTIL: &str =
    "ALTER TABLE apps ADD COLUMN previous_key_until INTEGER;";

/// Step 22: an app given a new key keeps the hash of the one before and
/// when it was replaced, so a device still signing in with it is logged as
/// such (with what to do), not as a typo or another app's key. The old
/// hash signs nothing in: it is only compared after a refusal.
pub const MIGRATION_REPLACED_APP_KEY: &str = "ALTER TABLE apps ADD COLUMN previous_key_hash BLOB;
ALTER TABLE apps ADD COLUMN key_replaced_at TEXT;";

/// Step 21: a webhook given a new signing secret keeps its old one for a
/// while (`previous_until`, Unix seconds), and each request is signed
/// with both meanwhile, so its receiver can move to the new one without
/// refusing a request (Standard Webhooks: several signatures, any one valid).
pub const MIGRATION_WEBHOOK_PREVIOUS_SECRET: &str =
    "ALTER TABLE webhooks ADD COLUMN previous_secret BLOB;
ALTER TABLE webhooks ADD COLUMN previous_until INTEGER;";

/// Step 20: each idempotency key keeps a digest of the request it came with,
/// so a later request with the key and another body is refused rather than
/// answered with the first message (which lost the second without a word).
/// Keys taken before have none, and answer as they did.
pub const MIGRATION_IDEMPOTENT_REQUEST: &str =
    "ALTER TABLE idempotency ADD COLUMN request_digest TEXT;";

/// Step 19: a cancelled message's recipients still waiting are cancelled
/// with it, as `cancel` now does; those of messages cancelled before kept
/// `queued` or `deferred`, as if they were still to be tried.
pub const MIGRATION_CANCELLED_RECIPIENTS: &str = "UPDATE recipients SET status = 'cancelled'
    WHERE status IN ('queued', 'deferred')
      AND message_seq IN (SELECT seq FROM messages WHERE status = 'cancelled');";

/// Step 18: final messages and webhook deliveries by age, for the purge
/// that housekeeping runs every minute. It found them through the status
/// index and read every final row for its time: with 2,000,000 messages
/// kept (30 days of a busy gateway), 0.4 s a minute holding the database's
/// one writer. Partial indexes: a row enters once, when it becomes final.
pub const MIGRATION_FINAL_BY_AGE: &str = "CREATE INDEX messages_final_age ON messages(updated_at)
    WHERE status IN ('sent', 'failed', 'cancelled');
CREATE INDEX webhook_deliveries_final_age ON webhook_deliveries(created_at)
    WHERE status IN ('delivered', 'failed');";

/// Step 17: failed sign-ins and wrong keys, and idempotency keys, by age.
/// Each new failure, and each group commit with a keyed submission, first
/// deletes the expired rows; without these indexes that read the whole
/// table. Guesses from many addresses (an IPv6 range, say) grow the first
/// to hundreds of thousands of rows within its 15-minute window, and an app
/// that sends every message with an `Idempotency-Key` grows the second by
/// a row per message for a day: every further guess or submission, and all
/// waiting for the same connection, paid for a scan.
pub const MIGRATION_EXPIRY_INDEXES: &str =
    "CREATE INDEX sign_in_failures_first ON sign_in_failures(first_unix);
CREATE INDEX idempotency_created ON idempotency(created_unix);";

/// Step 16: what each app submitted per second (messages and recipients),
/// written once per group commit, so its window limits read at most a day
/// of busy seconds instead of every message of the day; filled from the
/// messages already stored. Pruned a day after.
pub const MIGRATION_APP_USAGE: &str = "CREATE TABLE app_usage (
    app_id TEXT NOT NULL,
    at_unix INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    recipients INTEGER NOT NULL,
    PRIMARY KEY (app_id, at_unix)
);
INSERT INTO app_usage (app_id, at_unix, messages, recipients)
    SELECT app_id, created_unix, COUNT(*), SUM(rcpt_count) FROM messages
    WHERE app_id IS NOT NULL GROUP BY app_id, created_unix;";

/// Step 15: how long each message has waited for its profile's daily limit
/// (seconds), so `--max-queue-time` counts only the rest of its age.
pub const MIGRATION_QUOTA_WAITED: &str =
    "ALTER TABLE messages ADD COLUMN quota_waited INTEGER NOT NULL DEFAULT 0;";

/// Step 14: sending profiles (docs/API.md §15). The one settings row, its
/// history and its pause become the profile `default`'s; apps and messages
/// name their profile (`default` for everything before); what each profile
/// sent is counted for its rolling daily limit; and connection slots are
/// leased so a profile's connections hold for all servers together.
pub const MIGRATION_PROFILES: &str = "CREATE TABLE profiles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    limits TEXT,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX profiles_name ON profiles(lower(name));
INSERT INTO profiles (id, name, limits, created_at) VALUES ('default', 'Default', NULL, '');
CREATE TABLE profile_settings (
    profile TEXT PRIMARY KEY REFERENCES profiles(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    settings TEXT NOT NULL,
    client_secret BLOB,
    password BLOB,
    updated_at TEXT NOT NULL
);
INSERT INTO profile_settings (profile, version, settings, client_secret, password, updated_at)
    SELECT 'default', version, settings, client_secret, password, updated_at FROM settings;
CREATE TABLE profile_history (
    profile TEXT NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    changed_at TEXT NOT NULL,
    changed_fields TEXT NOT NULL,
    PRIMARY KEY (profile, version)
);
INSERT INTO profile_history (profile, version, changed_at, changed_fields)
    SELECT 'default', version, changed_at, changed_fields FROM settings_history;
CREATE TABLE profile_pause (
    profile TEXT PRIMARY KEY,
    since TEXT NOT NULL,
    stage TEXT NOT NULL,
    code TEXT,
    message TEXT NOT NULL,
    hint TEXT
);
INSERT INTO profile_pause (profile, since, stage, code, message, hint)
    SELECT 'default', since, stage, code, message, hint FROM delivery_pause;
DROP TABLE settings;
DROP TABLE settings_history;
DROP TABLE delivery_pause;
CREATE TABLE profile_usage (
    profile TEXT NOT NULL,
    at_unix INTEGER NOT NULL,
    recipients INTEGER NOT NULL,
    message_id TEXT
);
CREATE INDEX profile_usage_at ON profile_usage(profile, at_unix, recipients);
CREATE INDEX profile_usage_message ON profile_usage(message_id);
CREATE TABLE profile_slots (
    profile TEXT NOT NULL,
    slot INTEGER NOT NULL,
    owner TEXT,
    until_unix INTEGER NOT NULL,
    PRIMARY KEY (profile, slot)
);
CREATE TABLE profile_rate (
    profile TEXT PRIMARY KEY,
    next_slot_ms INTEGER NOT NULL
);
ALTER TABLE apps ADD COLUMN profile TEXT NOT NULL DEFAULT 'default';
ALTER TABLE messages ADD COLUMN profile TEXT NOT NULL DEFAULT 'default';
DROP INDEX messages_app_due;
CREATE INDEX messages_profile_due ON messages(profile, app_id, status, next_attempt_unix, seq);";

/// Step 13: webhooks and their durable outbox (docs/API.md §14): one row
/// per event and webhook, stored before it is sent, claimed with a lease
/// like a message so that with several servers each is sent once.
pub const MIGRATION_WEBHOOKS: &str = "CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    format TEXT NOT NULL,
    secret BLOB NOT NULL,
    created_at TEXT NOT NULL,
    last_success_at TEXT,
    last_failure_at TEXT
);
CREATE TABLE webhook_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    next_attempt_unix INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    locked_by TEXT,
    locked_until INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_unix);
CREATE INDEX webhook_deliveries_of ON webhook_deliveries(webhook_id, seq);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries(event, created_unix);";

/// Step 12: certificate credentials (docs/API.md §13), per profile: the
/// `active` one delivery uses, bound to the settings it was saved with, and a
/// `pending` one that tests use, with the settings of its last passing test.
/// The key is encrypted like the secrets.
pub const MIGRATION_CERTIFICATES: &str = "CREATE TABLE certificates (
    profile TEXT NOT NULL,
    slot TEXT NOT NULL CHECK (slot IN ('active', 'pending')),
    cert_der BLOB NOT NULL,
    private_key BLOB NOT NULL,
    generated INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    bound_settings TEXT,
    passed_settings TEXT,
    PRIMARY KEY (profile, slot)
);";

/// Step 11: each app's due messages in order, for claims in turn per app
/// that read a few index entries per app, not the whole queue.
pub const MIGRATION_DUE_PER_APP: &str =
    "CREATE INDEX messages_app_due ON messages(app_id, status, next_attempt_unix, seq);";

/// Step 10: each attempt says which way out it took (`smtp` or `graph`;
/// NULL for attempts made before there were two).
pub const MIGRATION_TRANSPORT: &str = "ALTER TABLE attempts ADD COLUMN transport TEXT;";

/// Step 7: stored transcripts lose the message content they recorded (the
/// statement does nothing; the work is [`strip_stored_transcripts`], run in
/// the same transaction by both stores).
pub const TRANSCRIPTS_WITHOUT_CONTENT: &str =
    "UPDATE attempts SET transcript = transcript WHERE 0 = 1;";

/// A stored transcript without the message content between the server's
/// `354` and the client's lone `.` (docs/API.md §11): one line says it was
/// there. Everything else, the replies after it included, is kept.
pub fn transcript_without_content(transcript: &str) -> String {
    let mut out = String::with_capacity(transcript.len().min(4096));
    let mut in_content = false;
    for line in transcript.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if in_content {
            if let Some(rest) = bare.strip_prefix("C:") {
                if rest.trim() == "." {
                    in_content = false;
                    out.push_str("C: (message content, not kept)\n");
                    out.push_str(line);
                }
                continue;
            }
            in_content = false;
            out.push_str("C: (message content, not kept)\n");
        }
        out.push_str(line);
        if bare.starts_with("S: 354") {
            in_content = true;
        }
    }
    if in_content {
        out.push_str("C: (message content, not kept)\n");
    }
    out
}

/// Rewrites every stored transcript that holds message content.
fn strip_stored_transcripts(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let rows: Vec<(i64, i64, String)> = tx
        .prepare(
            "SELECT message_seq, n, transcript FROM attempts WHERE transcript LIKE '%S: 354%'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update =
        tx.prepare("UPDATE attempts SET transcript = ?3 WHERE message_seq = ?1 AND n = ?2")?;
    for (seq, n, t) in rows {
        update.execute(params![seq, n, transcript_without_content(&t)])?;
    }
    Ok(())
}

/// Step 16, SQLite's only: message bodies live in their own table, so that
/// the frequent small changes to a message's row (claimed, leased, attempted)
/// do not rewrite its body each time (SQLite writes a changed row whole,
/// overflow pages included). `messages.body` stays the flag every statement
/// of both stores reads (`NULL` once the body is dropped) and holds an empty
/// blob; setting it to `NULL` or deleting the message drops the body too.
/// PostgreSQL keeps a large body out of the row already (TOAST) and an
/// update that leaves it alone does not copy it.
pub const MIGRATION_BODIES_APART: &str = "CREATE TABLE message_bodies (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
INSERT INTO message_bodies (seq, body) SELECT seq, body FROM messages WHERE body IS NOT NULL;
UPDATE messages SET body = x'' WHERE body IS NOT NULL;
CREATE TRIGGER message_body_dropped AFTER UPDATE OF body ON messages WHEN NEW.body IS NULL
BEGIN
    DELETE FROM message_bodies WHERE seq = NEW.seq;
END;
CREATE TRIGGER message_deleted AFTER DELETE ON messages
BEGIN
    DELETE FROM message_bodies WHERE seq = OLD.seq;
END;";

/// Steps only SQLite takes, after the first [`SHARED_BEFORE_SQLITE_ONLY`]
/// shared ones; shared steps added later go after them, and nothing here
/// ever moves (SQLite's `user_version` is a position in this order).
const SQLITE_ONLY: &[&str] = &[MIGRATION_BODIES_APART];

/// How many of the shared steps came before [`SQLITE_ONLY`]'s.
const SHARED_BEFORE_SQLITE_ONLY: usize = 15;

pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(
        SCHEMA[..SHARED_BEFORE_SQLITE_ONLY]
            .iter()
            .chain(SQLITE_ONLY)
            .chain(&SCHEMA[SHARED_BEFORE_SQLITE_ONLY..])
            .map(|sql| {
                if *sql == TRANSCRIPTS_WITHOUT_CONTENT {
                    M::up_with_hook(sql, |tx: &rusqlite::Transaction<'_>| {
                        strip_stored_transcripts(tx)?;
                        Ok(())
                    })
                } else {
                    M::up(sql)
                }
            })
            .collect(),
    )
}
