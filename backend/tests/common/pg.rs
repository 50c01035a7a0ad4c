//! A PostgreSQL schema of its own for one test, at the server the test
//! command's setup started (`MAILROOM_TEST_DATABASE_URL`), dropped afterwards.
//! No database is a failure, never a skip.

/// The server the tests use.
pub fn base_url() -> String {
    std::env::var("MAILROOM_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The test server's URL with `schema` first on the search path and this
/// `sslmode` (the tests that are not about TLS leave it off).
pub fn schema_url(schema: &str, sslmode: &str) -> String {
    let base = base_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}sslmode={sslmode}&options=-c%20search_path%3D{schema}")
}

/// The certificate the test server's TLS uses (written by scripts/postgres.sh).
pub fn ca_file() -> std::path::PathBuf {
    std::env::var("MAILROOM_TEST_PG_CA")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "/var/tmp/mailroom-pg-ca.crt".into())
        .into()
}

/// A TLS client configuration trusting the system's roots, plus `ca` when given.
pub fn tls(ca: Option<&std::path::Path>) -> rustls::ClientConfig {
    mailroom_backend::upstream::smtp::tls::TlsTrust::load(ca)
        .unwrap()
        .client_config()
        .unwrap()
}

/// A fresh schema; [`PgSchema::url`] puts it first on the search path.
pub struct PgSchema {
    pub name: String,
    pub url: String,
}

async fn admin() -> tokio_postgres::Client {
    let base = base_url();
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("no PostgreSQL at {base} ({e}): run the tests with `cargo xtask test`, whose setup starts one (scripts/postgres.sh)")
        });
    tokio::spawn(connection);
    client
}

impl PgSchema {
    pub async fn new() -> PgSchema {
        use rand::RngCore;
        let mut bytes = [0u8; 6];
        rand::thread_rng().fill_bytes(&mut bytes);
        let name = format!("t_{}", hex::encode(bytes));
        admin()
            .await
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        PgSchema {
            url: schema_url(&name, "disable"),
            name,
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime: do it on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // Bounded: a server of the test may still hold a transaction on
            // the schema, on the very runtime this join blocks, so an
            // unbounded DROP waited on it for ever (a CI run hung here). A
            // schema left behind is only a test database's leftover.
            rt.block_on(async {
                let _ = admin()
                    .await
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await;
            });
        })
        .join();
    }
}

/// What [`CommitCutter`] does to the next COMMIT it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// PostgreSQL gets the COMMIT; its answer never reaches the client.
    AnswerLost,
    /// The COMMIT never reaches PostgreSQL.
    NeverArrives,
    /// As [`Cut::AnswerLost`], and then, as while a server restarts, every
    /// connection of the proxy breaks and new ones are refused for a second.
    AnswerLostThenDown,
}

/// A loopback proxy to the test's PostgreSQL that can take one COMMIT's
/// fate out of the client's hands ([`Cut`]); either way the client's
/// connection then breaks, as when a network or a server fails mid-COMMIT.
/// Everything else passes through unchanged.
pub struct CommitCutter {
    addr: std::net::SocketAddr,
    state: CutState,
}

/// The proxy's state shared by its connections.
#[derive(Clone, Default)]
struct CutState {
    armed: std::sync::Arc<std::sync::Mutex<Option<Cut>>>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections are refused until then, and those open are broken.
    down_until: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Bumped when every connection must break.
    outage: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl CutState {
    fn is_down(&self) -> bool {
        matches!(*self.down_until.lock().unwrap(), Some(t) if std::time::Instant::now() < t)
    }
}

impl CommitCutter {
    pub async fn start() -> CommitCutter {
        let base = reqwest::Url::parse(&base_url()).unwrap();
        let upstream = format!(
            "{}:{}",
            base.host_str().unwrap_or("127.0.0.1"),
            base.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = CutState::default();
        let cutter = CommitCutter {
            addr: listener.local_addr().unwrap(),
            state: state.clone(),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if state.is_down() {
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, state.clone()));
            }
        });
        cutter
    }

    /// `url` (a [`PgSchema::url`]) through this proxy.
    pub fn url(&self, url: &str) -> String {
        let mut u = reqwest::Url::parse(url).unwrap();
        u.set_host(Some("127.0.0.1")).unwrap();
        u.set_port(Some(self.addr.port())).unwrap();
        u.to_string()
    }

    /// The next COMMIT on any connection gets `cut`.
    pub fn arm(&self, cut: Cut) {
        *self.state.armed.lock().unwrap() = Some(cut);
    }

    /// How many COMMITs were cut so far.
    pub fn cuts(&self) -> usize {
        self.state.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One client connection: the server's bytes pass as they come; the
/// client's are read message by message (the untyped start-up messages,
/// then tag, length, body) so an armed proxy can find `Q` `COMMIT`.
async fn relay(client: tokio::net::TcpStream, server: tokio::net::TcpStream, state: CutState) {
    let mut outage = state.outage.subscribe();
    tokio::select! {
        () = relay_until_cut(client, server, &state) => {}
        _ = outage.changed() => {}
    }
}

async fn relay_until_cut(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    state: &CutState,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let muted = std::sync::Arc::new(AtomicBool::new(false));
    /// Ends the server's side too when this connection's relay ends (or is
    /// dropped, at an outage).
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let answers = {
        let muted = muted.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match from_server.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if muted.load(Ordering::SeqCst) {
                    continue;
                }
                if to_client.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        })
    };
    let _guard = AbortOnDrop(answers.abort_handle());
    let mut buf: Vec<u8> = Vec::new();
    let mut started = false;
    loop {
        let mut chunk = [0u8; 16 * 1024];
        let n = match from_client.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let head = if started { 5 } else { 4 };
            if buf.len() < head {
                break;
            }
            let len = u32::from_be_bytes(buf[head - 4..head].try_into().unwrap()) as usize;
            let total = if started { 1 + len } else { len };
            if buf.len() < total {
                break;
            }
            let frame: Vec<u8> = buf.drain(..total).collect();
            if !started && frame.len() >= 8 {
                // The start-up message (protocol 3.0); SSLRequest and the
                // like come before it.
                started = u32::from_be_bytes(frame[4..8].try_into().unwrap()) == 196_608;
            } else if started && frame[0] == b'Q' && &frame[5..] == b"COMMIT\0" {
                let cut = state.armed.lock().unwrap().take();
                if let Some(cut) = cut {
                    state.cuts.fetch_add(1, Ordering::SeqCst);
                    if cut != Cut::NeverArrives {
                        muted.store(true, Ordering::SeqCst);
                        let _ = to_server.write_all(&frame).await;
                        // Time for the server to commit before both ends close.
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    }
                    if cut == Cut::AnswerLostThenDown {
                        *state.down_until.lock().unwrap() =
                            Some(std::time::Instant::now() + std::time::Duration::from_secs(1));
                        state.outage.send_modify(|n| *n += 1);
                    }
                    answers.abort();
                    return;
                }
            }
            if to_server.write_all(&frame).await.is_err() {
                answers.abort();
                return;
            }
        }
    }
    let _ = to_server.shutdown().await;
    let _ = answers.await;
}
