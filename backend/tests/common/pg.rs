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
            rt.block_on(async {
                let _ = admin()
                    .await
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await;
            });
        })
        .join();
    }
}
