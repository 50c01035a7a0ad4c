//! What the handlers share: [`AppState`], built once at start by
//! [`AppState::open`], and the parts handlers take through `FromRef`
//! ([`SettingsRepo`], `Arc<AdminAuth>`, `Arc<Upstream>`), plus the [`Clock`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::FromRef;

use crate::apps::AppsState;
use crate::auth::{self, AdminAuth, AdminToken, FailureLimit};
pub use crate::clock::{Clock, ManualClock, SystemClock};
use crate::config::{SendingArgs, ServeArgs};
use crate::crypto::{Cipher, KeyError};
use crate::delivery::{DeliveryOptions, Engine};
use crate::intake::Sending;
use crate::metrics::{Metrics, MetricsState};
use crate::queue::Queue;
use crate::settings::SettingsRepo;
use crate::store::postgres::PgStore;
use crate::store::{FailureStore, SessionStore, SettingsStore, SqliteStore};
use crate::upstream::Upstream;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The settings with their encrypted secrets.
    pub settings: SettingsRepo,
    /// Administrator sign-in.
    pub auth: Arc<AdminAuth>,
    /// Runs test emails (token cache included).
    pub tester: Arc<Upstream>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The queue and the apps.
    pub queue: Arc<dyn Queue>,
    /// Wrong app keys per address.
    pub key_failures: Arc<FailureLimit>,
    /// The last use of each app's old key kept lately, so a device using it
    /// many times a minute costs one write a minute.
    pub old_key_uses: Arc<crate::apps::OldKeyUses>,
    /// The sending options.
    pub sending: SendingArgs,
    /// `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where the relay listens, for the page's instructions.
    pub connection: Arc<mailroom_shared::sending::Connection>,
    /// The relay's certificate, unless the relay is off.
    pub relay_certs: Option<Arc<crate::relay::tls::Reloading>>,
    /// `--trusted-proxy`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Events, their outbox and the sender.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Room for messages being received (HTTP and the relay together).
    pub intake: crate::intake::Budget,
    /// This server's name (`--smtp-hostname`, else the machine's), in the
    /// relay's greeting and every message's `Received` field.
    pub hostname: Arc<str>,
}

impl FromRef<AppState> for MetricsState {
    fn from_ref(state: &AppState) -> Self {
        MetricsState {
            metrics: state.metrics.clone(),
            queue: state.queue.clone(),
            settings: SettingsRepo::from_ref(state),
            intake: state.intake.clone(),
        }
    }
}

impl FromRef<AppState> for AppsState {
    fn from_ref(state: &AppState) -> Self {
        AppsState {
            profiles: state.settings.store.clone(),
            queue: state.queue.clone(),
            key_failures: state.key_failures.clone(),
            old_key_uses: state.old_key_uses.clone(),
            webhooks: state.webhooks.clone(),
            clock: state.clock.clone(),
            metrics: state.metrics.clone(),
        }
    }
}

impl FromRef<AppState> for Sending {
    fn from_ref(state: &AppState) -> Self {
        Sending {
            apps: AppsState::from_ref(state),
            settings: state.settings.clone(),
            max_message_size: state.sending.max_message_size,
            budget: state.intake.clone(),
            metrics: state.metrics.clone(),
            webhooks: state.webhooks.clone(),
            hostname: state.hostname.clone(),
        }
    }
}

impl AppState {
    /// The delivery engine over this state's queue, settings and tester; the
    /// command line's delivery options are every profile's defaults.
    pub async fn engine(&self) -> Engine {
        Engine::new(
            self.queue.clone(),
            self.settings.clone(),
            self.tester.clone(),
            self.metrics.clone(),
            self.clock.clone(),
            self.webhooks.clone(),
            // This engine keeps house; the supervisor gives every profile's
            // engine its own connections, rate and daily limit (docs/API.md §15).
            DeliveryOptions {
                connections: 0,
                rate_per_minute: 0,
                max_queue_time: self.sending.max_queue_time,
                retention: self.sending.retention,
                pause_retry: self.sending.pause_retry,
                sign_in_check: self.sending.sign_in_check_every(),
                lease: self.sending.delivery_lease,
                recipients_per_day: None,
                graph_limits: crate::delivery::pace::GraphLimits {
                    requests: self.sending.graph_request_limit.0,
                    requests_span: self.sending.graph_request_limit.1,
                    bytes: self.sending.graph_upload_limit.0,
                    bytes_span: self.sending.graph_upload_limit.1,
                },
            },
            crate::delivery::Defaults {
                rate_per_minute: self.sending.delivery_rate,
                connections: self.sending.delivery_connections,
            },
        )
    }
}

impl FromRef<AppState> for Arc<dyn Queue> {
    fn from_ref(state: &AppState) -> Self {
        state.queue.clone()
    }
}

impl FromRef<AppState> for SettingsRepo {
    fn from_ref(state: &AppState) -> Self {
        state.settings.clone()
    }
}

impl FromRef<AppState> for Arc<AdminAuth> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for Arc<crate::webhooks::Webhooks> {
    fn from_ref(state: &AppState) -> Self {
        state.webhooks.clone()
    }
}

impl FromRef<AppState> for Arc<Upstream> {
    fn from_ref(state: &AppState) -> Self {
        state.tester.clone()
    }
}

/// Why the server could not start; each names the fix. Exit code 78 (EX_CONFIG).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Where everything is kept.
enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

/// `--database-url-file`: the URL, from a file only its owner may read.
fn database_url(args: &ServeArgs) -> Result<Option<String>, StartError> {
    let Some(path) = &args.database_url_file else {
        return Ok(args.database_url.clone());
    };
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| StartError(format!("cannot read --database-url-file {shown}: {e}")))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(StartError(format!(
            "--database-url-file {shown} may be read by other users (mode {:o}); it holds the database password: chmod 600 {shown}",
            meta.permissions().mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError(format!("cannot read --database-url-file {shown}: {e}")))?;
    let url = text.trim().to_string();
    if url.is_empty() {
        return Err(StartError(format!(
            "--database-url-file {shown} is empty; write the postgres:// URL into it"
        )));
    }
    Ok(Some(url))
}

fn database(args: &ServeArgs) -> Result<Database, StartError> {
    let url = database_url(args)?;
    match url.as_deref().map(str::trim) {
        None | Some("") => Ok(Database::Sqlite(args.data_dir.join("mailroom.db"))),
        Some(url) if url.starts_with("sqlite://") => {
            Ok(Database::Sqlite(PathBuf::from(&url["sqlite://".len()..])))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Database::Postgres(url.to_string()))
        }
        // libpq's key=value form (`host=db user=mailroom password=…`).
        Some(url) if !url.contains("://") && url.contains('=') => {
            Ok(Database::Postgres(url.to_string()))
        }
        Some(url) => Err(StartError(format!(
            "--database-url must start with sqlite:// or postgres:// (it starts with “{}”)",
            url.split("://")
                .next()
                .unwrap_or_default()
                .chars()
                .take(20)
                .collect::<String>()
        ))),
    }
}

/// The stores over one database, the PostgreSQL store for its settings
/// listener, and the database's name for messages (without a password).
struct Stores {
    settings: Arc<dyn SettingsStore>,
    queue: Arc<dyn Queue>,
    sessions: Arc<dyn SessionStore>,
    failures: Arc<dyn FailureStore>,
    webhooks: Arc<dyn crate::store::WebhookStore>,
    pg: Option<Arc<PgStore>>,
    shown: String,
}

impl Stores {
    fn of<S>(store: Arc<S>, pg: Option<Arc<PgStore>>, shown: String) -> Stores
    where
        S: SettingsStore
            + Queue
            + SessionStore
            + FailureStore
            + crate::store::WebhookStore
            + 'static,
    {
        Stores {
            settings: store.clone(),
            queue: store.clone(),
            sessions: store.clone(),
            failures: store.clone(),
            webhooks: store,
            pg,
            shown,
        }
    }
}

async fn open_stores(args: &ServeArgs) -> Result<Stores, StartError> {
    match database(args)? {
        Database::Sqlite(path) => {
            let store = Arc::new(SqliteStore::open(&path).map_err(|e| {
                StartError(format!("cannot open the database {}: {e}", path.display()))
            })?);
            Ok(Stores::of(store, None, path.display().to_string()))
        }
        Database::Postgres(url) => {
            let trust =
                crate::upstream::smtp::tls::TlsTrust::load(args.test.extra_ca_file.as_deref())
                    .map_err(|e| StartError(e.to_string()))?;
            let tls = trust.client_config().map_err(StartError)?;
            let store = Arc::new(PgStore::connect(&url, tls).await.map_err(StartError)?);
            Ok(Stores::of(
                store.clone(),
                Some(store),
                crate::store::postgres::describe(&url),
            ))
        }
    }
}

/// Holds `<database>.lock` (an advisory `flock`, released when the process
/// ends, however it ends) while this process serves an SQLite database: a
/// second `mailroom serve` on the same file, such as a manual run beside
/// the service, is refused at start. Several servers share one queue only
/// on PostgreSQL, which needs no lock here. `None` for PostgreSQL, and
/// where the file system takes no locks.
pub fn lock_sqlite(args: &ServeArgs) -> Result<Option<std::fs::File>, StartError> {
    use std::os::unix::fs::OpenOptionsExt;
    let Database::Sqlite(path) = database(args)? else {
        return Ok(None);
    };
    if path.parent() == Some(args.data_dir.as_path()) {
        create_data_dir(&args.data_dir)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock = path.with_file_name(name);
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock)
    else {
        // The database's own opening says what is wrong with its place.
        return Ok(None);
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError(format!(
            "another Mailroom server uses the database {} (it holds {}): stop that one first (systemctl stop mailroom), or give this one another --data-dir; several servers share one queue only on PostgreSQL (--database-url postgres://…)",
            path.display(),
            lock.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(lock = %lock.display(), error = %e, "cannot lock the database file; a second server on it would not be refused");
            Ok(None)
        }
    }
}

fn create_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                StartError(format!("cannot create the data dir {}: {e}", dir.display()))
            })?;
    } else if let Ok(meta) = std::fs::metadata(dir) {
        // A file given as the data dir was made 0700 (executable) before
        // the database failed to open under it.
        if !meta.is_dir() {
            return Err(StartError(format!(
                "--data-dir {} is a file, not a directory: give a directory for Mailroom's database and keys (it is made when missing)",
                dir.display()
            )));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    Ok(())
}

impl AppState {
    /// Prepares the data dir, the store, the key and the admin token.
    pub async fn open(args: &ServeArgs) -> Result<(AppState, AdminToken), StartError> {
        Self::open_with_clock(args, Arc::new(SystemClock)).await
    }

    /// As [`AppState::open`], with another clock (tests).
    pub async fn open_with_clock(
        args: &ServeArgs,
        clock: Arc<dyn Clock>,
    ) -> Result<(AppState, AdminToken), StartError> {
        create_data_dir(&args.data_dir)?;
        let public_origin = args
            .public_url
            .as_deref()
            .map(auth::parse_public_url)
            .transpose()
            .map_err(StartError)?;
        // Without its index.html the directory was passed over for the page
        // built into the binary, without a word: a typing error or a Trunk
        // build not run yet showed an older page.
        if let Some(dir) = &args.static_dir {
            if !dir.join("index.html").is_file() {
                return Err(StartError(format!(
                    "--static-dir {}: there is no index.html in it; give the directory Trunk built (dist), or leave the option out to serve the page built into mailroom",
                    dir.display()
                )));
            }
        }
        let stores = open_stores(args).await?;
        let shown = &stores.shown;
        // Every profile's secrets must open with the key.
        let read = |e: crate::store::StoreError| {
            StartError(format!("cannot read the database {shown}: {e}"))
        };
        let mut records = Vec::new();
        for p in stores.settings.profiles().await.map_err(read)? {
            records.extend(stores.settings.load(&p.id).await.map_err(read)?);
        }
        let has_secrets = records
            .iter()
            .any(|r| r.client_secret.is_some() || r.password.is_some());
        let key_file = args
            .secret_key_file
            .clone()
            .unwrap_or_else(|| args.data_dir.join("secret.key"));
        let cipher = Cipher::load_or_create_at(&key_file, !has_secrets)
            .map_err(|e| StartError(e.to_string()))?;
        for record in records {
            crate::settings::decode(&cipher, record)
                .map_err(|_| StartError(KeyError::Mismatch(key_file.clone()).to_string()))?;
        }
        let token = auth::resolve_admin_token(&args.data_dir, args.admin_token.clone()).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::InvalidInput => StartError(e.to_string()),
                _ => StartError(format!(
                    "cannot create the admin token file in {}: {e}",
                    args.data_dir.display()
                )),
            },
        )?;
        let tester = Upstream::new(&args.test).map_err(|e| StartError(e.to_string()))?;
        let metrics = Arc::new(Metrics::new(tester.token_requests()));
        let cipher = Arc::new(cipher);
        let webhooks = crate::webhooks::Webhooks::new(
            stores.webhooks,
            cipher.clone(),
            clock.clone(),
            metrics.clone(),
            args.public_url.clone(),
            args.sending.webhook_timeout,
        )
        .and_then(|w| match args.test.extra_ca_file.as_deref() {
            // A receiver inside the organisation, with its own CA.
            Some(extra) => crate::upstream::smtp::tls::TlsTrust::load(Some(extra))
                .map_err(|e| e.to_string())
                .and_then(|trust| trust.client_config())
                .and_then(|tls| w.trusting(tls)),
            None => Ok(w),
        })
        .map_err(|e| StartError(format!("cannot build the webhook client: {e}")))?;
        webhooks.set_queue(stores.queue.clone());
        let state = AppState {
            webhooks: Arc::new(webhooks),
            settings: SettingsRepo {
                store: stores.settings,
                cipher,
                clock: clock.clone(),
                saved: Arc::default(),
                wake: Arc::default(),
                profile: Arc::from(crate::store::DEFAULT_PROFILE),
            },
            queue: stores.queue,
            key_failures: Arc::new(FailureLimit::shared(
                clock.clone(),
                stores.failures.clone(),
                "app",
            )),
            old_key_uses: Arc::default(),
            sending: args.sending.clone(),
            intake: crate::intake::Budget::new(
                args.sending.intake_memory,
                crate::http::submit::body_limit(args.sending.max_message_size),
                args.sending.intake_wait,
            ),
            metrics,
            connection: Arc::default(),
            relay_certs: None,
            trusted_proxies: Arc::new(args.trusted_proxies.clone()),
            hostname: crate::relay::hostname(&args.relay).into(),
            auth: Arc::new(AdminAuth::new(
                &token.token,
                public_origin,
                stores.sessions,
                FailureLimit::shared(clock.clone(), stores.failures, "admin"),
                clock.clone(),
            )),
            tester: Arc::new(tester),
            clock,
        };
        if let Some(pg) = stores.pg {
            // A save on any server wakes this one's delivery.
            pg.listen(state.settings.saved.clone(), state.settings.wake.clone());
        }
        Ok((state, token))
    }
}
