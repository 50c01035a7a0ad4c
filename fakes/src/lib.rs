//! Test fakes on 127.0.0.1 that speak the real wire protocols, so the backend's
//! token, SMTP and Graph code is tested end to end without the internet.

pub mod entra;
pub mod graph;
pub mod pki;
pub mod rig;
pub mod smtp;
pub mod webhook;

pub use entra::{EntraMode, FakeEntra};
pub use graph::{FakeGraph, GraphError, GraphReceived};
pub use pki::TestPki;
pub use rig::Loopback;
pub use smtp::{FakeSmtp, Received, SmtpConfig, TlsMode};
pub use webhook::{Answer, FakeReceiver, Hook};

/// Builds an address from parts, so no editor or scraper mangles it.
pub fn addr(local: &str, domain: &str) -> String {
    format!("{local}@{domain}")
}

/// Serves an HTTP fake on 127.0.0.1 with a free port; answers the address.
pub(crate) async fn serve_loopback(app: axum::Router, what: &str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind {what}: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{what} address: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
