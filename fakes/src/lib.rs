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

/// An HTTPS server on 127.0.0.1 presenting `pki`'s leaf (for `localhost`)
/// and answering every request `404` (a TLS proxy in front of nothing that
/// takes mail); answers its address. A client that does not trust `pki`'s
/// CA fails the handshake.
pub async fn serve_tls_not_found(pki: &TestPki) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the TLS page");
    let addr = listener.local_addr().expect("TLS page address");
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // The request's head, then the answer; the body is not read.
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// A body that never ends (spaces, 8 KB at a time), as a broken proxy or a
/// hostile server might send: a client must stop reading on its own.
fn endless_body() -> axum::body::Body {
    static CHUNK: [u8; 8192] = [b' '; 8192];
    axum::body::Body::from_stream(futures_util::stream::repeat_with(|| {
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(&CHUNK))
    }))
}

/// An answer with `status` (502 if it is not one) and a body that never ends.
pub(crate) fn endless_answer(status: u16) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    (status, endless_body()).into_response()
}

/// An HTTP server on 127.0.0.1 answering every request, whatever its method
/// and path, with `200` and a small HTML page, as a web server's catch-all
/// page or a proxy's sign-in page does; answers its address.
pub async fn serve_any_page() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|| async {
        axum::response::Html("<!doctype html><title>Welcome</title><p>It works!</p>")
    });
    serve_loopback(app, "catch-all page").await
}

/// An HTTP server on 127.0.0.1 answering every request with `status` and a
/// body that never ends; answers its address.
pub async fn serve_endless(status: u16) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move || async move { endless_answer(status) });
    serve_loopback(app, "endless server").await
}
