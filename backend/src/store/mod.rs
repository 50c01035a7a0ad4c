//! Where everything lives. The traits ([`SettingsStore`], [`SessionStore`],
//! [`FailureStore`], and [`crate::queue::Queue`]) keep the server independent
//! of the database; [`SqliteStore`] is the embedded default and
//! [`postgres::PgStore`] the one several servers share. Both hold the one
//! schema of [`schema`].

pub mod postgres;
pub mod queue;
pub mod schema;
pub(crate) mod sql;
pub mod sqlite;

pub use schema::{transcript_without_content, SCHEMA, TRANSCRIPTS_WITHOUT_CONTENT};
pub use sqlite::SqliteStore;

use async_trait::async_trait;

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
    /// The pending certificate (its DER) that this save makes active, in
    /// the same transaction (docs/API.md §13).
    pub activate_certificate: Option<Vec<u8>>,
}

/// A webhook with its encrypted signing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    /// What the API shows.
    pub webhook: mailroom_shared::webhooks::Webhook,
    /// The encrypted `whsec_…`.
    pub secret: Vec<u8>,
    /// The encrypted secret it had before a new one, and until when (Unix
    /// seconds) requests are signed with it too.
    pub previous: Option<(Vec<u8>, i64)>,
}

impl WebhookRow {
    /// The secret before its last new one with until when it signs, while
    /// it still does at `now` (Unix seconds); lapsed, it only awaits
    /// housekeeping.
    pub fn previous_at(&self, now: i64) -> Option<&(Vec<u8>, i64)> {
        self.previous.as_ref().filter(|(_, until)| now < *until)
    }
}

/// One event for one webhook, to store before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The `webhook-id`.
    pub id: String,
    /// Which webhook.
    pub webhook_id: String,
    /// The event type.
    pub event: String,
    /// The Standard Webhooks body, fixed at the event.
    pub body: String,
    /// When the event happened, RFC 3339.
    pub at: String,
    /// The same, Unix seconds (first due then).
    pub at_unix: i64,
    /// The message a message event is about (not stored): the event is
    /// stored only with its attempt's hold on the message
    /// ([`Queue::record_many`]).
    pub message: Option<String>,
}

/// The events of a batch of attempts, less those about the `lapsed`
/// messages, whose attempts no longer held their claim.
pub(crate) fn held_events<'a>(
    events: &'a [NewDelivery],
    lapsed: &[&str],
) -> std::borrow::Cow<'a, [NewDelivery]> {
    if lapsed.is_empty() {
        return events.into();
    }
    let about_lapsed = |d: &NewDelivery| d.message.as_deref().is_some_and(|m| lapsed.contains(&m));
    events
        .iter()
        .filter(|d| !about_lapsed(d))
        .cloned()
        .collect::<Vec<_>>()
        .into()
}

/// A claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// Its row.
    pub seq: i64,
    /// The `webhook-id`.
    pub id: String,
    /// Which webhook.
    pub webhook_id: String,
    /// The event type.
    pub event: String,
    /// The Standard Webhooks body.
    pub body: String,
    /// Requests made before this one.
    pub attempts: u32,
    /// When the event happened.
    pub created_at: String,
    /// Whom it was claimed for: only that claim records its outcome.
    pub owner: String,
}

/// What one request of a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryResult {
    /// Requests made, this one included.
    pub attempts: u32,
    /// `delivered`, `pending` (another try at `next_unix`) or `failed`.
    pub status: &'static str,
    /// When the next try is due.
    pub next_unix: i64,
    /// The HTTP status, if one came.
    pub last_status: Option<u16>,
    /// What went wrong.
    pub last_error: Option<String>,
    /// Now, RFC 3339 (the webhook's last success or failure).
    pub at: String,
}

/// Webhooks and their durable outbox.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Adds one.
    async fn add_webhook(&self, row: WebhookRow) -> Result<(), StoreError>;
    /// Every webhook, oldest first.
    async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError>;
    /// Changes url, events and format; `false` when there is no such webhook.
    async fn update_webhook(
        &self,
        w: mailroom_shared::webhooks::Webhook,
    ) -> Result<bool, StoreError>;
    /// Deletes one and its deliveries; `false` when there was none.
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError>;
    /// Gives one a new (encrypted) secret; its current one signs too until
    /// `previous_until` (Unix seconds). `false` when there is no such webhook.
    async fn replace_webhook_secret(
        &self,
        id: &str,
        secret: Vec<u8>,
        previous_until: i64,
    ) -> Result<bool, StoreError>;
    /// Drops each replaced secret whose time to sign ended by `now_unix`:
    /// it is not kept (even encrypted) past its use.
    async fn forget_old_webhook_secrets(&self, now_unix: i64) -> Result<u64, StoreError>;
    /// Drops a webhook's replaced secret now (*End old secret*): only its
    /// current one signs. `false` when there is no such webhook.
    async fn end_old_webhook_secret(&self, id: &str) -> Result<bool, StoreError>;
    /// Stores events to send (committed before this returns).
    async fn enqueue_deliveries(&self, rows: Vec<NewDelivery>) -> Result<(), StoreError>;
    /// Claims up to `limit` due deliveries for `owner` until `now + lease`.
    async fn claim_deliveries(
        &self,
        now: i64,
        owner: &str,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Records a request's outcome (and the webhook's last success or
    /// failure) while the claim is still `due.owner`'s; one that lapsed and
    /// was taken by another server is left to it (its outcome decides).
    async fn finish_delivery(
        &self,
        due: &DueDelivery,
        result: DeliveryResult,
    ) -> Result<(), StoreError>;
    /// A webhook's recent deliveries, newest first.
    async fn deliveries(
        &self,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Vec<mailroom_shared::webhooks::Delivery>, StoreError>;
    /// When an event of this type was last stored about `about`, Unix
    /// seconds.
    async fn last_event_unix(
        &self,
        event: &str,
        about: EventAbout<'_>,
    ) -> Result<Option<i64>, StoreError>;
    /// Fixes a delivery's body (its data read at the first try), or drops
    /// the delivery (`None`: an event that turned out not to apply).
    async fn settle_delivery(&self, seq: i64, body: Option<String>) -> Result<(), StoreError>;
    /// Deletes delivered and failed deliveries of events before `cutoff`
    /// (RFC 3339, `--retention`); answers how many.
    async fn purge_deliveries(&self, cutoff: &str) -> Result<u64, StoreError>;
}

/// The profile whose settings `/api/settings` edits.
pub use mailroom_shared::profiles::DEFAULT_PROFILE;

/// Which certificate of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSlot {
    /// The one delivery uses.
    Active,
    /// A new one: tests use it until a save makes it active.
    Pending,
}

impl CertSlot {
    /// Its name in the store and in `?which=`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertSlot::Active => "active",
            CertSlot::Pending => "pending",
        }
    }
}

/// A stored certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// Active or pending.
    pub slot: CertSlot,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The encrypted key.
    pub private_key: Vec<u8>,
    /// Made by Mailroom.
    pub generated: bool,
    /// When it was made or brought, RFC 3339.
    pub created_at: String,
    /// Active: the settings JSON it was saved with (its binding).
    pub bound_settings: Option<String>,
    /// Pending: the settings JSON of its last passing test.
    pub passed_settings: Option<String>,
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

/// What an event kept to once a day is about, by a field of its data.
#[derive(Debug, Clone, Copy)]
pub enum EventAbout<'a> {
    /// `data.profile`; an event without one is the default profile's.
    Profile(&'a str),
    /// `data.app`.
    App(&'a str),
}

impl EventAbout<'_> {
    /// The data's field and the value it must hold.
    pub(crate) fn field(&self) -> (&'static str, &str) {
        match self {
            EventAbout::Profile(id) => ("profile", id),
            EventAbout::App(id) => ("app", id),
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

/// Rows a retention purge deletes per batch, in both stores.
pub(crate) const PURGE_BATCH: i64 = 2_000;

/// Runs `once` (one purge batch: a `DELETE` of at most `batch` rows, each
/// its own transaction) until it deletes fewer than `batch`: after a shorter
/// `--retention`, or days down, millions of rows may be due at once, and one
/// statement for them all would hold SQLite's one writer (2,000,000 messages
/// took 16 s) or be one long PostgreSQL transaction holding back vacuum.
/// Returns the rows deleted and the batches run.
pub(crate) async fn purge_in_batches<F, Fut>(
    batch: i64,
    mut once: F,
) -> Result<(u64, u32), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let (mut deleted, mut batches) = (0u64, 0u32);
    loop {
        let n = once().await?;
        deleted += n;
        batches += 1;
        if (n as i64) < batch {
            return Ok((deleted, batches));
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

/// A stored profile (docs/API.md §15), without its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRow {
    /// `default` or `prf_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its limits as set.
    pub limits: mailroom_shared::profiles::ProfileLimits,
    /// RFC 3339.
    pub created_at: String,
}

/// Why a profile was not deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileDelete {
    /// Gone, with its settings, history, certificates and usage.
    Deleted,
    /// There is no such profile.
    NotFound,
    /// Apps send through it (how many).
    Apps(u64),
    /// Messages of it still wait (how many).
    Waiting(u64),
}

/// Persistence for the profiles: each one's settings row and history.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// A profile's current record, or `None` before its first save.
    async fn load(&self, profile: &str) -> Result<Option<Record>, StoreError>;
    /// Saves atomically if `expected_version` is the stored version (0 when
    /// nothing is stored); returns the new version.
    async fn save(
        &self,
        profile: &str,
        expected_version: u64,
        record: Record,
        changed_fields: Vec<String>,
    ) -> Result<u64, StoreError>;
    /// A profile's change history, newest first.
    async fn history(&self, profile: &str) -> Result<Vec<HistoryEntry>, StoreError>;
    /// A profile's certificates (at most one per slot).
    async fn certificates(&self, profile: &str) -> Result<Vec<CertRow>, StoreError>;
    /// Stores a new pending certificate, replacing an earlier pending one.
    async fn put_pending_certificate(&self, profile: &str, row: CertRow) -> Result<(), StoreError>;
    /// Deletes one; `false` when there was none.
    async fn delete_certificate(&self, profile: &str, slot: CertSlot) -> Result<bool, StoreError>;
    /// Records that a test with the pending certificate `cert_der` passed
    /// with these settings (JSON), for every server to see.
    async fn pending_passed(
        &self,
        profile: &str,
        cert_der: Vec<u8>,
        settings_json: String,
    ) -> Result<(), StoreError>;
    /// Every profile, `default` first.
    async fn profiles(&self) -> Result<Vec<ProfileRow>, StoreError>;
    /// The profile with this name (case-blind), if one has it.
    async fn profile_named(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Adds a profile with its first settings (version 1), in one transaction.
    async fn create_profile(
        &self,
        row: ProfileRow,
        record: Record,
        changed_fields: Vec<String>,
    ) -> Result<(), StoreError>;
    /// Changes a profile's name and limits; `false` when there is none.
    async fn update_profile(&self, row: ProfileRow) -> Result<bool, StoreError>;
    /// Deletes a profile unless an app uses it or its messages wait.
    async fn delete_profile(&self, id: &str) -> Result<ProfileDelete, StoreError>;
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
