//! Every statement both stores run, written once in SQLite's `?N` form, and
//! the row readers both use. PostgreSQL runs them through [`pg`], which turns
//! `?N` into `$N`; nothing else is rewritten, so each statement here is
//! standard SQL that both databases read the same way:
//!
//! - A nullable filter parameter is `CAST(?N AS TEXT) IS NULL`, which both
//!   accept (PostgreSQL must be told the type of a parameter compared only
//!   with NULL).
//! - A flag is bound as an integer and tested with `CAST(?N AS BIGINT) = 1`.
//! - Search is `lower(column) LIKE lower(pattern) ESCAPE '\'` (SQLite's LIKE
//!   is case-blind for ASCII only, PostgreSQL's not at all).
//! - New rows give their key back with `RETURNING`.
//!
//! What stays each store's own, and why:
//!
//! - Claiming (PostgreSQL locks rows `FOR UPDATE SKIP LOCKED` so servers
//!   never take the same message; SQLite has one writer and takes them in an
//!   immediate transaction), the shared delivery slot and advisory locks
//!   (PostgreSQL only), and which `sending` messages a start puts back (all
//!   of them with one process, those whose lease ran out with several).
//! - The recipients' addresses as one JSON column ([`SQLITE_TO`], [`PG_TO`]):
//!   the aggregate functions have other names.
//! - Batch forms that only PostgreSQL has (`UNNEST`, `= ANY`): a group of
//!   submissions goes in with one statement for the messages and one for
//!   their recipients, and a release with one, which saves a round trip per
//!   row over the network; SQLite runs the one-row statement ([`INSERT_MESSAGE`],
//!   [`INSERT_RECIPIENT`], [`RELEASE`]) in a loop, as a round trip there is a
//!   function call.

use mailroom_shared::api::Stage;
use mailroom_shared::sending::{
    App, Attempt, LastError, OldKeyUse, Paused, RecipientState, Summary,
};

use super::queue::{limits_of, stage_of, status_of, ReplacedKey};
use super::{CertRow, CertSlot, DueDelivery, HistoryEntry, Record, WebhookRow};

/// A statement of this file in PostgreSQL's placeholders.
pub(crate) fn pg(sql: &str) -> String {
    sql.replace('?', "$")
}

// ---- settings, sessions and sign-in failures ----

/// Profile `?1`'s settings.
pub(crate) const LOAD_SETTINGS: &str =
    "SELECT settings, client_secret, password, version, updated_at FROM profile_settings WHERE profile = ?1";
pub(crate) const SETTINGS_VERSION: &str = "SELECT version FROM profile_settings WHERE profile = ?1";
pub(crate) const SAVE_SETTINGS: &str =
    "INSERT INTO profile_settings (profile, version, settings, client_secret, password, updated_at)
     VALUES (?6, ?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (profile) DO UPDATE SET version = ?1, settings = ?2, client_secret = ?3,
        password = ?4, updated_at = ?5";
pub(crate) const ADD_HISTORY: &str =
    "INSERT INTO profile_history (version, changed_at, changed_fields, profile) VALUES (?1, ?2, ?3, ?4)";
pub(crate) const HISTORY: &str =
    "SELECT version, changed_at, changed_fields FROM profile_history WHERE profile = ?1 ORDER BY version DESC";

// ---- profiles (docs/API.md §15) ----

pub(crate) const PROFILES: &str =
    "SELECT id, name, limits, created_at FROM profiles ORDER BY CASE WHEN id = 'default' THEN 0 ELSE 1 END, created_at, id";
pub(crate) const PROFILE_NAME_TAKEN: &str = "SELECT id FROM profiles WHERE lower(name) = lower(?1)";
pub(crate) const ADD_PROFILE: &str =
    "INSERT INTO profiles (id, name, limits, created_at) VALUES (?1, ?2, ?3, ?4)";
pub(crate) const UPDATE_PROFILE: &str = "UPDATE profiles SET name = ?2, limits = ?3 WHERE id = ?1";
/// Whether profile `?1` exists (PostgreSQL adds `FOR UPDATE`).
pub(crate) const PROFILE_EXISTS: &str = "SELECT 1 FROM profiles WHERE id = ?1";
/// What keeps profile `?1` from being deleted: its live apps and its
/// waiting messages ([`crate::queue::may_delete_profile`]).
pub(crate) const PROFILE_IN_USE: &str = "SELECT
    (SELECT COUNT(*) FROM apps WHERE profile = ?1 AND revoked = 0),
    (SELECT COUNT(*) FROM messages WHERE profile = ?1 AND status IN ('queued', 'deferred', 'sending'))";
/// Everything of profile `?1`, the profile last (`default` never).
pub(crate) const DELETE_PROFILE: &[&str] = &[
    "DELETE FROM certificates WHERE profile = ?1",
    "DELETE FROM profile_pause WHERE profile = ?1",
    "DELETE FROM profile_usage WHERE profile = ?1",
    "DELETE FROM profile_slots WHERE profile = ?1",
    "DELETE FROM profile_rate WHERE profile = ?1",
    "DELETE FROM profile_settings WHERE profile = ?1",
    "DELETE FROM profile_history WHERE profile = ?1",
    "DELETE FROM profiles WHERE id = ?1 AND id <> 'default'",
];
/// Profile `?1`'s recipients since `?2` and messages since `?3`.
pub(crate) const PROFILE_USAGE: &str = "SELECT
    CAST(COALESCE(SUM(CASE WHEN at_unix > ?2 THEN recipients ELSE 0 END), 0) AS BIGINT),
    CAST(COALESCE(SUM(CASE WHEN at_unix > ?3 THEN 1 ELSE 0 END), 0) AS BIGINT)
    FROM profile_usage WHERE profile = ?1 AND at_unix > ?2";
/// The recipients counted toward profile `?1`'s rolling day since `?2`:
/// one index range summed in the database, so a batch that fits beside
/// them never reads the window's rows ([`PROFILE_SENDS`]).
pub(crate) const PROFILE_USED: &str =
    "SELECT CAST(COALESCE(SUM(recipients), 0) AS BIGINT) FROM profile_usage WHERE profile = ?1 AND at_unix > ?2";
/// Profile `?1`'s sends since `?2`, oldest first (when a full window frees).
pub(crate) const PROFILE_SENDS: &str =
    "SELECT at_unix, recipients FROM profile_usage WHERE profile = ?1 AND at_unix > ?2 ORDER BY at_unix";
pub(crate) const ADD_USAGE: &str =
    "INSERT INTO profile_usage (profile, at_unix, recipients, message_id) VALUES (?1, ?2, ?3, ?4)";
/// The newest reservation of message `?1` (its claim's; an older one is an
/// earlier attempt's, or a lapsed claim's whose outcome is unknown) keeps
/// `?2` recipients, those the server took ([`crate::queue::AttemptRecord::counted_recipients`]).
pub(crate) const SETTLE_USAGE: &str = "UPDATE profile_usage SET recipients = ?2
    WHERE message_id = ?1 AND at_unix = (SELECT MAX(at_unix) FROM profile_usage WHERE message_id = ?1)";
/// [`SETTLE_USAGE`] when the server took none, or the claim was released
/// unattempted: the reservation goes.
pub(crate) const DROP_USAGE: &str = "DELETE FROM profile_usage
    WHERE message_id = ?1 AND at_unix = (SELECT MAX(at_unix) FROM profile_usage WHERE message_id = ?1)";
pub(crate) const PURGE_USAGE: &str = "DELETE FROM profile_usage WHERE at_unix <= ?1";
/// Takes connection slot `?2` of profile `?1` for owner `?3` until `?4`
/// when it is free, lapsed (`?5` now) or already this owner's.
pub(crate) const TAKE_SLOT: &str =
    "INSERT INTO profile_slots (profile, slot, owner, until_unix) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (profile, slot) DO UPDATE SET owner = ?3, until_unix = ?4
    WHERE profile_slots.owner IS NULL OR profile_slots.until_unix < ?5 OR profile_slots.owner = ?3";
pub(crate) const FREE_SLOT: &str =
    "UPDATE profile_slots SET owner = NULL WHERE profile = ?1 AND slot = ?2 AND owner = ?3";
/// A message waits for its profile's daily window: no attempt is added, and
/// the wait (from `?5`, now, to `?3`) is kept apart from its age for [`EXPIRING`].
pub(crate) const QUOTA_WAIT: &str = "UPDATE messages SET status = 'deferred', updated_at = ?2,
        next_attempt_unix = ?3, last_stage = 'send', last_code = 'quota', last_message = ?4,
        locked_by = NULL, locked_until = NULL,
        quota_waited = quota_waited + CASE WHEN ?3 > CAST(?5 AS BIGINT) THEN ?3 - CAST(?5 AS BIGINT) ELSE 0 END
     WHERE id = ?1 AND status = 'sending'";

// ---- certificates (docs/API.md §13) ----

pub(crate) const CERTIFICATES: &str = "SELECT slot, cert_der, private_key, generated, created_at,
    bound_settings, passed_settings FROM certificates WHERE profile = ?1";
/// A new pending certificate replaces any earlier pending one.
pub(crate) const PUT_PENDING: &str = "INSERT INTO certificates
    (profile, slot, cert_der, private_key, generated, created_at) VALUES (?1, 'pending', ?2, ?3, ?4, ?5)
    ON CONFLICT (profile, slot) DO UPDATE SET cert_der = ?2, private_key = ?3, generated = ?4,
        created_at = ?5, bound_settings = NULL, passed_settings = NULL";
pub(crate) const DELETE_CERTIFICATE: &str =
    "DELETE FROM certificates WHERE profile = ?1 AND slot = ?2";
/// Records a passing test of the pending certificate, if it is still that one.
pub(crate) const PENDING_PASSED: &str = "UPDATE certificates SET passed_settings = ?3
    WHERE profile = ?1 AND slot = 'pending' AND cert_der = ?2";
/// The pending certificate becomes the active one (after [`DELETE_CERTIFICATE`] of the active).
pub(crate) const ACTIVATE_PENDING: &str = "UPDATE certificates
    SET slot = 'active', bound_settings = ?3, passed_settings = NULL
    WHERE profile = ?1 AND slot = 'pending' AND cert_der = ?2";
/// The active certificate is bound to the settings saved with it.
pub(crate) const BIND_ACTIVE: &str =
    "UPDATE certificates SET bound_settings = ?2 WHERE profile = ?1 AND slot = 'active'";

// ---- webhooks and their outbox (docs/API.md §14) ----

pub(crate) const ADD_WEBHOOK: &str =
    "INSERT INTO webhooks (id, url, events, format, secret, created_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
pub(crate) const WEBHOOKS: &str = "SELECT id, url, events, format, created_at, last_success_at,
    last_failure_at, secret, previous_secret, previous_until FROM webhooks ORDER BY created_at, id";
/// The current secret becomes the previous one, until `?3`; `?2` is the new
/// one. (The right-hand sides read the row as it was.)
pub(crate) const REPLACE_WEBHOOK_SECRET: &str = "UPDATE webhooks
    SET previous_secret = secret, previous_until = ?3, secret = ?2 WHERE id = ?1";
pub(crate) const FORGET_OLD_WEBHOOK_SECRETS: &str = "UPDATE webhooks
    SET previous_secret = NULL, previous_until = NULL WHERE previous_until <= ?1";
/// *End old secret*: the replaced secret signs no more, and is not kept.
/// Counts the webhook whether or not it had one.
pub(crate) const END_OLD_WEBHOOK_SECRET: &str = "UPDATE webhooks
    SET previous_secret = NULL, previous_until = NULL WHERE id = ?1";
pub(crate) const UPDATE_WEBHOOK: &str =
    "UPDATE webhooks SET url = ?2, events = ?3, format = ?4 WHERE id = ?1";
pub(crate) const DELETE_WEBHOOK: &str = "DELETE FROM webhooks WHERE id = ?1";
pub(crate) const ENQUEUE_DELIVERY: &str = "INSERT INTO webhook_deliveries
    (id, webhook_id, event, body, created_at, created_unix, status, next_attempt_unix)
    SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS TEXT), CAST(?5 AS TEXT),
        CAST(?6 AS BIGINT), 'pending', CAST(?6 AS BIGINT)
    WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = CAST(?2 AS TEXT))";
/// Takes up to `?2` due deliveries for `?3` until `?4`; the outer condition
/// is checked again on each row, so two servers never take the same one.
pub(crate) const CLAIM_DELIVERIES: &str =
    "UPDATE webhook_deliveries SET locked_by = ?3, locked_until = ?4
    WHERE status = 'pending' AND (locked_until IS NULL OR locked_until < ?1)
      AND seq IN (SELECT seq FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_unix <= ?1
          AND (locked_until IS NULL OR locked_until < ?1)
        ORDER BY next_attempt_unix, seq LIMIT ?2)
    RETURNING seq, id, webhook_id, event, body, attempts, created_at, locked_by";
/// A request's outcome, by the claim's owner `?7` only: a server stalled
/// past its lease finds the delivery another's (sent by it, or being sent).
pub(crate) const FINISH_DELIVERY: &str = "UPDATE webhook_deliveries SET attempts = ?2, status = ?3,
    next_attempt_unix = ?4, last_status = ?5, last_error = ?6, locked_by = NULL, locked_until = NULL
    WHERE seq = ?1 AND locked_by = ?7";
pub(crate) const SET_DELIVERY_BODY: &str = "UPDATE webhook_deliveries SET body = ?2 WHERE seq = ?1";
pub(crate) const DROP_DELIVERY: &str = "DELETE FROM webhook_deliveries WHERE seq = ?1";
/// Final deliveries older than the retention (`?1`, RFC 3339) go; in
/// batches, like [`PURGE`].
#[cfg(test)]
pub(crate) const PURGE_DELIVERIES: &str =
    "DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'failed') AND created_at < ?1";
pub(crate) const WEBHOOK_SUCCEEDED: &str = "UPDATE webhooks SET last_success_at = ?2 WHERE id = ?1";
pub(crate) const WEBHOOK_FAILED: &str = "UPDATE webhooks SET last_failure_at = ?2 WHERE id = ?1";
pub(crate) const DELIVERIES: &str = "SELECT id, event, created_at, attempts, status, last_status,
    last_error FROM webhook_deliveries WHERE webhook_id = ?1 ORDER BY seq DESC LIMIT ?2";
/// SQLite's words (?3 names the field of the data, like `app`);
/// PostgreSQL reads the body as `jsonb` (its own `LAST_EVENT`).
pub(crate) const LAST_EVENT: &str = "SELECT MAX(created_unix) FROM webhook_deliveries
    WHERE event = ?1 AND COALESCE(json_extract(body, '$.data.' || ?3), 'default') = ?2";

pub(crate) const DELETE_EXPIRED_SESSIONS: &str = "DELETE FROM sessions WHERE expires_unix <= ?1";
pub(crate) const ADD_SESSION: &str = "INSERT INTO sessions (digest, expires_unix) VALUES (?1, ?2)";
pub(crate) const SESSION_VALID: &str =
    "SELECT 1 FROM sessions WHERE digest = ?1 AND expires_unix > ?2";
pub(crate) const END_SESSION: &str = "DELETE FROM sessions WHERE digest = ?1";

pub(crate) const DELETE_OLD_FAILURES: &str = "DELETE FROM sign_in_failures WHERE first_unix <= ?1";
/// One more failure for `?1` at `?2`, counted within a window of `?3` seconds.
pub(crate) const ADD_FAILURE: &str = "INSERT INTO sign_in_failures (key, count, first_unix) VALUES (?1, 1, ?2)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN sign_in_failures.first_unix <= CAST(?2 AS BIGINT) - CAST(?3 AS BIGINT) THEN 1 ELSE sign_in_failures.count + 1 END,
    first_unix = CASE WHEN sign_in_failures.first_unix <= CAST(?2 AS BIGINT) - CAST(?3 AS BIGINT) THEN ?2 ELSE sign_in_failures.first_unix END
RETURNING count, first_unix";
pub(crate) const FAILURES: &str =
    "SELECT count, first_unix FROM sign_in_failures WHERE key = ?1 AND first_unix > ?2";
pub(crate) const CLEAR_FAILURES: &str = "DELETE FROM sign_in_failures WHERE key = ?1";

// ---- apps ----

/// The columns [`app_from`] reads, in its order.
macro_rules! app_columns {
    () => {
        "id, name, created_at, last_used_at, allowed_from, rewrite_from, messages, limits, profile,
         previous_key_until, previous_key_used_at, previous_key_used_from, previous_key_refused"
    };
}
/// How many columns `app_columns!` names (the key hash follows in [`APP_BY_ID`]).
pub(crate) const APP_COLUMN_COUNT: usize = 13;

pub(crate) const CREATE_APP: &str =
    "INSERT INTO apps (id, name, key_hash, allowed_from, rewrite_from, created_at, limits, profile)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
pub(crate) const APP_NAME_TAKEN: &str =
    "SELECT 1 FROM apps WHERE revoked = 0 AND lower(name) = lower(?1)";
pub(crate) const LIST_APPS: &str = concat!(
    "SELECT ",
    app_columns!(),
    " FROM apps WHERE revoked = 0 ORDER BY created_at, id"
);
pub(crate) const REVOKE_APP: &str = "UPDATE apps SET revoked = 1 WHERE id = ?1 AND revoked = 0";
/// A live app's key from before its last new key stops now (it is still
/// recognised as a replaced key, to say so).
pub(crate) const END_OLD_KEY: &str =
    "UPDATE apps SET previous_key_until = NULL WHERE id = ?1 AND revoked = 0";
/// A use of a live app's old key: `?2` when (Unix seconds), `?3` the
/// client, `?4` 1 when it was refused.
pub(crate) const NOTE_OLD_KEY_USE: &str = "UPDATE apps SET previous_key_used_at = ?2,
     previous_key_used_from = ?3, previous_key_refused = ?4 WHERE id = ?1 AND revoked = 0";
/// The same use, as that client's last ([`NOTE_OLD_KEY_USE`]'s
/// parameters), under the app's current new key.
pub(crate) const NOTE_OLD_KEY_CLIENT: &str = "INSERT INTO old_key_clients
     (app_id, client, at, refused, since)
     SELECT id, CAST(?3 AS TEXT), CAST(?2 AS BIGINT), CAST(?4 AS BIGINT), key_replaced_at
     FROM apps WHERE id = ?1 AND revoked = 0 AND key_replaced_at IS NOT NULL
     ON CONFLICT (app_id, client) DO UPDATE
     SET at = excluded.at, refused = excluded.refused, since = excluded.since";
/// An app's clients of its old key beyond the newest `?2`.
pub(crate) const TRIM_OLD_KEY_CLIENTS: &str = "DELETE FROM old_key_clients
     WHERE app_id = ?1 AND client NOT IN (SELECT client FROM old_key_clients
         WHERE app_id = ?1 ORDER BY at DESC, client LIMIT ?2)";
/// Each live app's clients of its key from before its current one,
/// newest first: `app_id, client, at, refused`.
pub(crate) const OLD_KEY_CLIENTS: &str = "SELECT c.app_id, c.client, c.at, c.refused
     FROM old_key_clients c JOIN apps a ON a.id = c.app_id
     WHERE a.revoked = 0 AND a.key_replaced_at = c.since
     ORDER BY c.app_id, c.at DESC, c.client";
pub(crate) const UPDATE_APP: &str = concat!(
    "UPDATE apps SET name = ?2, allowed_from = ?3, rewrite_from = ?4, limits = ?5, profile = ?6
     WHERE id = ?1 AND revoked = 0
     RETURNING ",
    app_columns!()
);
/// A live app's key replaced: `?2` is the new key's hash, `?3` the time,
/// `?4` until when the old key still works (Unix seconds; NULL: it stops
/// now); the old hash is kept to recognise it (the right-hand sides read
/// the row as it was).
pub(crate) const REPLACE_APP_KEY: &str = concat!(
    "UPDATE apps SET previous_key_hash = key_hash, key_replaced_at = ?3,
     previous_key_until = ?4, key_hash = ?2, previous_key_used_at = NULL,
     previous_key_used_from = NULL, previous_key_refused = NULL
     WHERE id = ?1 AND revoked = 0 RETURNING ",
    app_columns!()
);
/// The live app whose key before its last new key hashes to `?1`.
pub(crate) const APP_BY_REPLACED_KEY: &str = "SELECT id, name, key_replaced_at,
    previous_key_until FROM apps WHERE revoked = 0 AND previous_key_hash = ?1";
pub(crate) const APP_BY_KEY: &str = concat!(
    "SELECT ",
    app_columns!(),
    " FROM apps WHERE revoked = 0 AND key_hash = ?1"
);
pub(crate) const APP_BY_ID: &str = concat!(
    "SELECT ",
    app_columns!(),
    ", key_hash FROM apps WHERE revoked = 0 AND id = ?1"
);
/// `?2` more messages for app `?1`, last used at `?3`.
pub(crate) const COUNT_APP_MESSAGES: &str =
    "UPDATE apps SET messages = messages + ?2, last_used_at = ?3 WHERE id = ?1";

// ---- submissions ----

/// An app's submissions of the last 24 hours (`?1` app, `?2` since), a
/// second at a time, oldest first: how many messages and recipients.
pub(crate) const RECENT: &str = "SELECT at_unix, messages, recipients FROM app_usage WHERE app_id = ?1 AND at_unix > ?2 ORDER BY at_unix";
/// Adds `?3` messages of `?4` recipients to app `?1`'s second `?2`.
pub(crate) const ADD_APP_USAGE: &str =
    "INSERT INTO app_usage (app_id, at_unix, messages, recipients) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (app_id, at_unix) DO UPDATE SET messages = app_usage.messages + excluded.messages,
     recipients = app_usage.recipients + excluded.recipients";
/// Forgets what apps submitted before `?1`.
pub(crate) const PURGE_APP_USAGE: &str = "DELETE FROM app_usage WHERE at_unix <= ?1";
/// An app's waiting messages (`?1` app).
pub(crate) const WAITING: &str = "SELECT COUNT(*) FROM messages WHERE app_id = ?1 AND status IN ('queued', 'deferred', 'sending')";
/// An app's waiting messages, up to `?2` of them (`?1` app): a submission's
/// `queued_max` check needs no more.
pub(crate) const WAITING_UP_TO: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM messages
     WHERE app_id = ?1 AND status IN ('queued', 'deferred', 'sending') LIMIT ?2) w";
pub(crate) const DELETE_OLD_IDEMPOTENCY: &str = "DELETE FROM idempotency WHERE created_unix < ?1";
/// Takes an idempotency key for request digest `?5`; no row changed when it
/// was taken before.
pub(crate) const TAKE_IDEMPOTENCY_KEY: &str =
    "INSERT INTO idempotency (app_id, key, message_id, created_unix, request_digest)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (app_id, key) DO NOTHING";
/// The message that took key `?2` of app `?1`, its status, and the digest of
/// the request that took it (`NULL` for keys taken before there were digests).
pub(crate) const IDEMPOTENT_TWIN: &str =
    "SELECT i.message_id, m.status, i.request_digest FROM idempotency i
     LEFT JOIN messages m ON m.id = i.message_id
     WHERE i.app_id = ?1 AND i.key = ?2";
pub(crate) const INSERT_MESSAGE: &str = "INSERT INTO messages (id, app_id, source, mail_from, subject, size, body, status, created_at, created_unix, updated_at, next_attempt_unix, rcpt_count, profile, message_id_header)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?8, ?9, ?10, ?11, ?12) RETURNING seq";
/// One recipient (SQLite's loop; PostgreSQL inserts a batch's with `UNNEST`).
pub(crate) const INSERT_RECIPIENT: &str =
    "INSERT INTO recipients (message_seq, idx, address, status) VALUES (?1, ?2, ?3, 'queued')";

// ---- delivery ----

/// Due messages are taken in turn per app (round robin, docs/API.md §6):
/// each app's oldest due message first, then each app's second, and so on,
/// so one app's backlog never holds back another app's next message. The
/// groups are found with a loose index scan ([`NEXT_APP`]) and each one's
/// oldest due messages read from the index ([`DUE_OF_APP`],
/// [`DUE_WITHOUT_APP`]), so a claim costs a few index lookups per app
/// however long the queue is; [`crate::queue::in_turn`] interleaves them.
///
/// The app after `?1` that has messages of profile `?2` (`''` for the first).
pub(crate) const NEXT_APP: &str =
    "SELECT MIN(app_id) FROM messages WHERE profile = ?2 AND app_id > ?1";
/// App `?1`'s oldest due messages of status `?2` (`?3` now, `?4` how many,
/// `?5` the profile).
pub(crate) const DUE_OF_APP: &str = "SELECT seq, next_attempt_unix FROM messages
   WHERE profile = ?5 AND app_id = ?1 AND status = ?2 AND next_attempt_unix <= ?3 AND body IS NOT NULL
   ORDER BY next_attempt_unix, seq LIMIT ?4";
/// The oldest due messages of status `?1` without an app (trusted networks;
/// `?2` now, `?3` how many, `?4` the profile).
pub(crate) const DUE_WITHOUT_APP: &str = "SELECT seq, next_attempt_unix FROM messages
   WHERE profile = ?4 AND app_id IS NULL AND status = ?1 AND next_attempt_unix <= ?2 AND body IS NOT NULL
   ORDER BY next_attempt_unix, seq LIMIT ?3";
/// Messages of profile `?3` whose server died while sending them (`?1` now,
/// `?2` how many).
pub(crate) const LAPSED: &str = "SELECT seq, next_attempt_unix, 0 AS turn FROM messages
   WHERE profile = ?3 AND status = 'sending' AND locked_until < ?1 AND body IS NOT NULL
   ORDER BY seq LIMIT ?2";
/// A claimed message's recipients still to deliver (SQLite; PostgreSQL
/// reads them in its claim's `RETURNING`).
pub(crate) const TO_DELIVER: &str = "SELECT idx, address FROM recipients WHERE message_seq = ?1 AND status IN ('queued', 'deferred') ORDER BY idx";
pub(crate) const RENEW: &str =
    "UPDATE messages SET locked_until = ?3 WHERE id = ?1 AND status = 'sending' AND locked_by = ?2";
/// A claimed message back to the queue (SQLite's loop; PostgreSQL's `= ANY`).
pub(crate) const RELEASE: &str = "UPDATE messages SET status = 'queued', locked_by = NULL, locked_until = NULL WHERE id = ?1 AND status = 'sending' AND locked_by = ?2";
/// The message an attempt is recorded on (PostgreSQL adds `FOR UPDATE`),
/// and 1 when the attempt may still decide it: the attempt's owner `?2`
/// still holds its claim, or the claim lapsed and was put back to wait
/// (a server starting requeues lapsed claims) with nobody holding it since.
pub(crate) const MESSAGE_FOR_ATTEMPT: &str = "SELECT seq, attempt_count,
       CASE WHEN (status = 'sending' AND locked_by = ?2)
              OR (status IN ('queued', 'deferred') AND locked_by IS NULL) THEN 1 ELSE 0 END
     FROM messages WHERE id = ?1";
pub(crate) const ADD_ATTEMPT: &str =
    "INSERT INTO attempts (message_seq, n, at, ok, stage, code, message, hint, transcript, transport)
     VALUES (?1, (SELECT COALESCE(MAX(n), 0) + 1 FROM attempts WHERE message_seq = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
pub(crate) const SET_RECIPIENT: &str = "UPDATE recipients SET status = ?3, code = ?4, message = ?5 WHERE message_seq = ?1 AND idx = ?2";
/// A message after an attempt; `?9` is 1 when it keeps its body.
pub(crate) const AFTER_ATTEMPT: &str =
    "UPDATE messages SET status = ?2, updated_at = ?3, next_attempt_unix = ?4,
        attempt_count = ?5, last_stage = ?6, last_code = ?7, last_message = ?8,
        body = CASE WHEN CAST(?9 AS BIGINT) = 1 THEN body ELSE NULL END, locked_by = NULL, locked_until = NULL
     WHERE seq = ?1";
/// What waited longer than `--max-queue-time` (created before `?1`), not
/// counting the time it waited for its profile's daily limit, `?2` at most
/// in no order (an order could make SQLite walk every row by `seq` instead
/// of the few waiting ones by `messages_due`), whether a recipient has it
/// already, and how many recipients have not (for `/metrics`).
pub(crate) const EXPIRING: &str = "SELECT m.seq, m.id, m.app_id,
        EXISTS (SELECT 1 FROM recipients r WHERE r.message_seq = m.seq AND r.status = 'sent'),
        (SELECT COUNT(*) FROM recipients r WHERE r.message_seq = m.seq AND r.status <> 'sent')
     FROM messages m
     WHERE m.status IN ('queued', 'deferred') AND m.created_unix < ?1
       AND m.created_unix + m.quota_waited < ?1
       AND (m.last_code IS NULL OR m.last_code <> 'quota')
     LIMIT ?2";
/// Ends an [`EXPIRING`] message as `?2`: `sent` (a recipient has it: its
/// body goes, as a sent message's does) or `failed` (its body stays for a retry).
pub(crate) const END_EXPIRED: &str = "UPDATE messages SET status = ?2, updated_at = ?3,
        last_stage = COALESCE(last_stage, 'send'),
        last_message = CASE WHEN CAST(?2 AS TEXT) = 'sent'
            THEN 'The message waited longer than --max-queue-time without reaching every recipient; the ones left failed.'
            ELSE 'The message waited longer than --max-queue-time without being delivered.' END,
        body = CASE WHEN CAST(?2 AS TEXT) = 'sent' THEN NULL ELSE body END
     WHERE seq = ?1";
/// The recipients an expired message had left fail with it.
pub(crate) const EXPIRED_RECIPIENTS: &str = "UPDATE recipients SET status = 'failed',
        message = COALESCE(message, 'Not delivered within --max-queue-time.')
     WHERE message_seq = ?1 AND status IN ('queued', 'deferred')";
/// Recipients and attempts go with their message (`ON DELETE CASCADE`, on in both).
/// What the purge deletes: each store runs it a batch at a time in its own
/// words (SQLite through its partial index, PostgreSQL skipping locked
/// rows), and its tests check that their statements keep this condition.
#[cfg(test)]
pub(crate) const PURGE: &str =
    "DELETE FROM messages WHERE status IN ('sent', 'failed', 'cancelled') AND updated_at < ?1";
pub(crate) const COUNTS: &str = "SELECT status, COUNT(*) FROM messages GROUP BY status";
/// When profile `?1`'s oldest message still waiting to go out was submitted.
pub(crate) const OLDEST_WAITING: &str =
    "SELECT MIN(created_unix) FROM messages WHERE status IN ('queued', 'deferred', 'sending') AND profile = ?1";

// ---- activity ----

/// The columns of [`summary_from`] but the last, the recipients as a JSON
/// array, which each store writes with its own aggregate ([`SQLITE_TO`],
/// [`PG_TO`]).
const SUMMARY_COLUMNS: &str = "m.seq, m.id, COALESCE(m.app_id, m.source), m.mail_from, m.subject, m.size, m.status, m.created_at, m.updated_at, m.attempt_count, m.last_stage, m.last_code, m.last_message, m.profile";
pub(crate) const SQLITE_TO: &str = "(SELECT json_group_array(address) FROM (SELECT r.address FROM recipients r WHERE r.message_seq = m.seq ORDER BY r.idx))";
pub(crate) const PG_TO: &str = "(SELECT COALESCE(json_agg(r.address ORDER BY r.idx), '[]')::TEXT FROM recipients r WHERE r.message_seq = m.seq)";

/// One message's summary (`?1` id), with the store's recipients aggregate.
pub(crate) fn summary_by_id(to: &str) -> String {
    format!("SELECT {SUMMARY_COLUMNS}, {to} FROM messages m WHERE m.id = ?1")
}

/// A page of summaries, newest first: `?1` status, `?2` app, `?3` a
/// [`crate::queue::like_pattern`] (lower case), `?4` the cursor, `?5` how
/// many, `?6` the profile, `?7` the search as typed, which also finds the
/// message of that id (the relay's "queued as msg_…", the API's `id`) and
/// the one of that Message-ID, with or without its angle brackets;
/// each filter off when NULL.
pub(crate) fn list(to: &str) -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS}, {to} FROM messages m
         WHERE (CAST(?1 AS TEXT) IS NULL OR m.status = ?1)
           AND (CAST(?2 AS TEXT) IS NULL OR m.app_id = ?2 OR (m.app_id IS NULL AND m.source = ?2))
           AND (CAST(?3 AS TEXT) IS NULL OR lower(m.subject) LIKE ?3 ESCAPE '\\' OR lower(m.mail_from) LIKE ?3 ESCAPE '\\'
                OR lower(m.last_code) LIKE ?3 ESCAPE '\\' OR lower(m.last_message) LIKE ?3 ESCAPE '\\'
                OR EXISTS (SELECT 1 FROM recipients r WHERE r.message_seq = m.seq AND lower(r.address) LIKE ?3 ESCAPE '\\')
                OR m.id = ?7 OR m.message_id_header IN (?7, '<' || ?7 || '>'))
           AND (CAST(?4 AS TEXT) IS NULL OR m.seq < (SELECT seq FROM messages WHERE id = ?4))
           AND (CAST(?6 AS TEXT) IS NULL OR m.profile = ?6)
         ORDER BY m.seq DESC LIMIT ?5"
    )
}

pub(crate) const RECIPIENTS_OF: &str =
    "SELECT r.address, r.status, r.code, r.message FROM recipients r
     JOIN messages m ON m.seq = r.message_seq WHERE m.id = ?1 ORDER BY r.idx";
/// A message's Message-ID header, and when it is tried next if it is
/// deferred (else NULL).
pub(crate) const HEADER_ID_AND_NEXT_ATTEMPT_OF: &str =
    "SELECT message_id_header, CASE WHEN status = 'deferred' THEN next_attempt_unix END FROM messages WHERE id = ?1";
pub(crate) const ATTEMPTS_OF: &str =
    "SELECT a.at, a.ok, a.stage, a.code, a.message, a.hint, a.transport FROM attempts a
     JOIN messages m ON m.seq = a.message_seq WHERE m.id = ?1 ORDER BY a.n";
/// A message's status and whether it has its body (PostgreSQL adds `FOR UPDATE`).
pub(crate) const STATUS_AND_BODY: &str =
    "SELECT status, CAST(CASE WHEN body IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM messages WHERE id = ?1";
pub(crate) const RETRY: &str = "UPDATE messages SET status = 'queued', updated_at = ?2, next_attempt_unix = ?3, created_unix = ?3 WHERE id = ?1";
pub(crate) const RETRY_RECIPIENTS: &str = "UPDATE recipients SET status = 'queued' WHERE message_seq = (SELECT seq FROM messages WHERE id = ?1) AND status IN ('failed', 'deferred')";
pub(crate) const CANCEL: &str =
    "UPDATE messages SET status = 'cancelled', updated_at = ?2, body = NULL WHERE id = ?1";
/// The recipients a cancelled message had left: cancelled with it, not
/// shown as still waiting (one that has the message stays `sent`).
pub(crate) const CANCEL_RECIPIENTS: &str = "UPDATE recipients SET status = 'cancelled' WHERE message_seq = (SELECT seq FROM messages WHERE id = ?1) AND status IN ('queued', 'deferred')";

// ---- the pause ----

pub(crate) const PAUSE: &str =
    "SELECT since, stage, code, message, hint FROM profile_pause WHERE profile = ?1";
pub(crate) const PAUSES: &str =
    "SELECT since, stage, code, message, hint, profile FROM profile_pause";
pub(crate) const RESUME: &str = "DELETE FROM profile_pause WHERE profile = ?1";
/// Pauses profile `?6`, or changes the reason while keeping the first `since`.
pub(crate) const SET_PAUSE: &str = "INSERT INTO profile_pause (profile, since, stage, code, message, hint) VALUES (?6, ?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (profile) DO UPDATE SET stage = ?2, code = ?3, message = ?4, hint = ?5";

// ---- rows ----

/// A result row of either database, read by column position.
pub(crate) trait Cols {
    /// The database's error.
    type E;
    fn int(&self, i: usize) -> Result<i64, Self::E>;
    fn text(&self, i: usize) -> Result<String, Self::E>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::E>;
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, Self::E>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::E>;
}

impl Cols for rusqlite::Row<'_> {
    type E = rusqlite::Error;
    fn int(&self, i: usize) -> Result<i64, Self::E> {
        self.get(i)
    }
    fn text(&self, i: usize) -> Result<String, Self::E> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::E> {
        self.get(i)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, Self::E> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::E> {
        self.get(i)
    }
}

impl Cols for tokio_postgres::Row {
    type E = tokio_postgres::Error;
    /// A `BIGINT`, or an `INT` that an expression made (`COUNT` is `BIGINT`,
    /// a literal `0` is `INT`).
    fn int(&self, i: usize) -> Result<i64, Self::E> {
        self.try_get::<_, i64>(i)
            .or_else(|_| self.try_get::<_, i32>(i).map(i64::from))
    }
    fn text(&self, i: usize) -> Result<String, Self::E> {
        self.try_get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::E> {
        self.try_get(i)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, Self::E> {
        self.try_get(i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::E> {
        self.try_get::<_, Option<i64>>(i)
            .or_else(|_| self.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from)))
    }
}

/// A row of [`LOAD_SETTINGS`].
pub(crate) fn record_from<R: Cols>(r: &R) -> Result<Record, R::E> {
    Ok(Record {
        settings_json: r.text(0)?,
        client_secret: r.opt_bytes(1)?,
        password: r.opt_bytes(2)?,
        version: r.int(3)? as u64,
        updated_at: r.text(4)?,
        activate_certificate: None,
    })
}

/// A row of [`PROFILES`].
pub(crate) fn profile_from<R: Cols>(r: &R) -> Result<super::ProfileRow, R::E> {
    Ok(super::ProfileRow {
        id: r.text(0)?,
        name: r.text(1)?,
        limits: r
            .opt_text(2)?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
        created_at: r.text(3)?,
    })
}

/// A row of [`PROFILE_USAGE`].
pub(crate) fn usage_from<R: Cols>(r: &R) -> Result<mailroom_shared::profiles::ProfileUsage, R::E> {
    Ok(mailroom_shared::profiles::ProfileUsage {
        recipients_today: r.int(0)?.max(0) as u64,
        messages_last_minute: r.int(1)?.max(0) as u64,
    })
}

/// A row of [`CERTIFICATES`].
pub(crate) fn certificate_from<R: Cols>(r: &R) -> Result<CertRow, R::E> {
    Ok(CertRow {
        slot: if r.text(0)? == "active" {
            CertSlot::Active
        } else {
            CertSlot::Pending
        },
        cert_der: r.opt_bytes(1)?.unwrap_or_default(),
        private_key: r.opt_bytes(2)?.unwrap_or_default(),
        generated: r.int(3)? != 0,
        created_at: r.text(4)?,
        bound_settings: r.opt_text(5)?,
        passed_settings: r.opt_text(6)?,
    })
}

/// A row of [`WEBHOOKS`].
pub(crate) fn webhook_from<R: Cols>(r: &R) -> Result<WebhookRow, R::E> {
    Ok(WebhookRow {
        webhook: mailroom_shared::webhooks::Webhook {
            id: r.text(0)?,
            url: r.text(1)?,
            events: serde_json::from_str(&r.text(2)?).unwrap_or_default(),
            format: mailroom_shared::webhooks::Format::from_id(&r.text(3)?).unwrap_or_default(),
            created_at: r.text(4)?,
            last_success_at: r.opt_text(5)?,
            last_failure_at: r.opt_text(6)?,
            old_secret_until: None,
        },
        secret: r.opt_bytes(7)?.unwrap_or_default(),
        previous: match (r.opt_bytes(8)?, r.opt_int(9)?) {
            (Some(secret), Some(until)) => Some((secret, until)),
            _ => None,
        },
    })
}

/// A row of [`CLAIM_DELIVERIES`].
pub(crate) fn due_delivery_from<R: Cols>(r: &R) -> Result<DueDelivery, R::E> {
    Ok(DueDelivery {
        seq: r.int(0)?,
        id: r.text(1)?,
        webhook_id: r.text(2)?,
        event: r.text(3)?,
        body: r.text(4)?,
        attempts: r.int(5)? as u32,
        created_at: r.text(6)?,
        owner: r.text(7)?,
    })
}

/// A row of [`DELIVERIES`].
pub(crate) fn delivery_from<R: Cols>(r: &R) -> Result<mailroom_shared::webhooks::Delivery, R::E> {
    Ok(mailroom_shared::webhooks::Delivery {
        id: r.text(0)?,
        event: r.text(1)?,
        at: r.text(2)?,
        attempts: r.int(3)? as u32,
        status: r.text(4)?,
        last_status: r.opt_int(5)?.map(|s| s as u16),
        last_error: r.opt_text(6)?,
    })
}

/// A row of [`HISTORY`].
pub(crate) fn history_from<R: Cols>(r: &R) -> Result<HistoryEntry, R::E> {
    Ok(HistoryEntry::from_row(r.int(0)?, r.text(1)?, &r.text(2)?))
}

/// A row of `app_columns!`.
pub(crate) fn app_from<R: Cols>(r: &R) -> Result<App, R::E> {
    Ok(App {
        id: r.text(0)?,
        name: r.text(1)?,
        created_at: r.text(2)?,
        last_used_at: r.opt_text(3)?,
        allowed_from: serde_json::from_str(&r.text(4)?).unwrap_or_default(),
        rewrite_from: r.int(5)? != 0,
        messages: r.int(6)? as u64,
        limits: limits_of(r.opt_text(7)?.as_deref()),
        usage: Default::default(),
        profile: r.text(8)?,
        // Until when the key before the last new one works, passed or not:
        // the API shows it only while it does (`AppsState::shown`).
        old_key_until: r.opt_int(9)?.and_then(crate::clock::rfc3339_at),
        old_key_used: match (r.opt_int(10)?, r.opt_text(11)?, r.opt_int(12)?) {
            (Some(at), Some(from), refused) => crate::clock::rfc3339_at(at).map(|at| OldKeyUse {
                at,
                from,
                refused: refused.unwrap_or_default() != 0,
            }),
            _ => None,
        },
        old_key_clients: Vec::new(),
    })
}

/// A row of [`OLD_KEY_CLIENTS`]: the app's id and the use.
pub(crate) fn old_key_client_from<R: Cols>(r: &R) -> Result<(String, OldKeyUse), R::E> {
    Ok((
        r.text(0)?,
        OldKeyUse {
            at: crate::clock::rfc3339_at(r.int(2)?).unwrap_or_default(),
            from: r.text(1)?,
            refused: r.int(3)? != 0,
        },
    ))
}

/// Gives each app of `apps` its rows of [`OLD_KEY_CLIENTS`] (in order).
pub(crate) fn with_old_key_clients(apps: &mut [App], clients: Vec<(String, OldKeyUse)>) {
    for (app, used) in clients {
        if let Some(a) = apps.iter_mut().find(|a| a.id == app) {
            a.old_key_clients.push(used);
        }
    }
}

/// A row of [`APP_BY_REPLACED_KEY`].
pub(crate) fn replaced_key_from<R: Cols>(r: &R) -> Result<ReplacedKey, R::E> {
    Ok(ReplacedKey {
        app: r.text(0)?,
        name: r.text(1)?,
        replaced_at: r.opt_text(2)?.unwrap_or_default(),
        until: r.opt_int(3)?,
    })
}

/// A row of [`summary_by_id`] or [`list`].
pub(crate) fn summary_from<R: Cols>(r: &R) -> Result<Summary, R::E> {
    let last_stage = r.opt_text(10)?;
    let last_message = r.opt_text(12)?;
    Ok(Summary {
        id: r.text(1)?,
        app: r.opt_text(2)?,
        from: r.text(3)?,
        to: serde_json::from_str(&r.text(14)?).unwrap_or_default(),
        profile: r.text(13)?,
        subject: r.text(4)?,
        size: r.int(5)? as u64,
        status: status_of(&r.text(6)?),
        created_at: r.text(7)?,
        updated_at: r.text(8)?,
        attempt_count: r.int(9)? as u32,
        last_error: match (last_stage.as_deref().and_then(stage_of), last_message) {
            (Some(stage), Some(message)) => Some(LastError {
                stage,
                code: r.opt_text(11)?,
                message,
            }),
            _ => None,
        },
    })
}

/// A row of [`RECIPIENTS_OF`].
pub(crate) fn recipient_from<R: Cols>(r: &R) -> Result<RecipientState, R::E> {
    Ok(RecipientState {
        address: r.text(0)?,
        status: status_of(&r.text(1)?),
        code: r.opt_text(2)?,
        message: r.opt_text(3)?,
    })
}

/// A row of [`ATTEMPTS_OF`].
pub(crate) fn attempt_from<R: Cols>(r: &R) -> Result<Attempt, R::E> {
    Ok(Attempt {
        at: r.text(0)?,
        ok: r.int(1)? != 0,
        stage: r.opt_text(2)?.as_deref().and_then(stage_of),
        code: r.opt_text(3)?,
        message: r.text(4)?,
        hint: r.opt_text(5)?,
        transport: r
            .opt_text(6)?
            .and_then(|t| <mailroom_shared::Transport as mailroom_shared::EnumId>::from_id(&t)),
    })
}

/// A row of [`PAUSE`].
pub(crate) fn paused_from<R: Cols>(r: &R) -> Result<Paused, R::E> {
    Ok(Paused {
        since: r.text(0)?,
        stage: stage_of(&r.text(1)?).unwrap_or(Stage::Connect),
        code: r.opt_text(2)?,
        message: r.text(3)?,
        hint: r.opt_text(4)?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_become_postgres_ones_and_nothing_else_changes() {
        assert_eq!(
            super::pg(super::RENEW),
            "UPDATE messages SET locked_until = $3 WHERE id = $1 AND status = 'sending' AND locked_by = $2"
        );
        // No statement may hold a `?` other than a placeholder.
        for sql in [
            super::ADD_FAILURE,
            super::AFTER_ATTEMPT,
            &super::list(super::SQLITE_TO),
            super::EXPIRING,
            super::END_EXPIRED,
            super::EXPIRED_RECIPIENTS,
        ] {
            for (i, _) in sql.match_indices('?') {
                assert!(
                    sql[i + 1..].starts_with(|c: char| c.is_ascii_digit()),
                    "{sql}"
                );
            }
        }
    }
}
