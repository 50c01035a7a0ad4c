//! The SMTP submission relay (docs/API.md §7): printers, line-of-business
//! apps and cron jobs that only speak SMTP with a password hand their mail to
//! Mailroom's durable queue here.
//!
//! Requests are parsed by Stalwart's `smtp-proto`. [`session`] reads the
//! connection (commands, DATA, deadlines, replies; limits checked as bytes
//! arrive), [`commands`] answers each command and holds the mail
//! transaction, [`auth`] checks app keys, [`tls`] makes STARTTLS's config.
//! This file listens, caps connections and reads PROXY headers.

mod auth;
pub(crate) mod commands;
pub(crate) mod session;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::{RelayArgs, SmtpListen};
use crate::intake::Sending;
use crate::state::StartError;

/// Connections served at once; more are told `421 4.7.0` at the greeting.
pub const MAX_CONNECTIONS: usize = 100;

/// What every session shares.
pub(crate) struct Shared {
    pub sending: Sending,
    pub hostname: String,
    pub tls: TlsAcceptor,
    pub trusted: Vec<ipnet::IpNet>,
    pub idle: Duration,
    /// Time from the greeting to a finished AUTH (or a trusted MAIL FROM).
    pub auth_timeout: Duration,
    /// The longest session, from the greeting.
    pub session_limit: Duration,
    /// Time to write one reply.
    pub write_timeout: Duration,
}

/// Commands a client may send before AUTH (docs/API.md §11).
pub const MAX_COMMANDS_BEFORE_AUTH: u32 = 20;
/// Time a load balancer has to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a PROXY header was not taken.
#[derive(Debug)]
pub enum ProxyError {
    /// Nothing usable arrived in time, or the connection closed.
    Io(std::io::Error),
    /// The bytes are not a PROXY protocol header.
    Malformed,
}

/// Reads exactly one PROXY protocol header (v1 text or v2 binary), byte for
/// byte so nothing the client sends after it is consumed, and returns the
/// client address it names (none for `UNKNOWN`, `LOCAL` or a Unix socket:
/// the balancer's own health checks).
pub async fn read_proxy_header<S: tokio::io::AsyncRead + Unpin>(
    io: &mut S,
) -> Result<Option<IpAddr>, ProxyError> {
    const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
    let mut buf = vec![0u8; 12];
    io.read_exact(&mut buf).await.map_err(ProxyError::Io)?;
    if buf.as_slice() == V2_SIGNATURE {
        let mut rest = [0u8; 4];
        io.read_exact(&mut rest).await.map_err(ProxyError::Io)?;
        buf.extend_from_slice(&rest);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if len > 1024 {
            return Err(ProxyError::Malformed);
        }
        let start = buf.len();
        buf.resize(start + len, 0);
        io.read_exact(&mut buf[start..])
            .await
            .map_err(ProxyError::Io)?;
        let header =
            ppp::v2::Header::try_from(buf.as_slice()).map_err(|_| ProxyError::Malformed)?;
        if header.command == ppp::v2::Command::Local {
            return Ok(None);
        }
        return Ok(match header.addresses {
            ppp::v2::Addresses::IPv4(a) => Some(IpAddr::V4(a.source_address)),
            ppp::v2::Addresses::IPv6(a) => Some(IpAddr::V6(a.source_address)),
            _ => None,
        });
    }
    if !buf.starts_with(b"PROXY ") {
        return Err(ProxyError::Malformed);
    }
    // v1: one line of at most 107 bytes.
    while !buf.ends_with(b"\r\n") {
        if buf.len() >= 107 {
            return Err(ProxyError::Malformed);
        }
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await.map_err(ProxyError::Io)?;
        buf.push(b[0]);
    }
    let text = std::str::from_utf8(&buf).map_err(|_| ProxyError::Malformed)?;
    let header = ppp::v1::Header::try_from(text).map_err(|_| ProxyError::Malformed)?;
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
        ppp::v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
        ppp::v1::Addresses::Unknown => None,
    })
}

/// A bound relay, ready to run.
pub struct Relay {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    per_address: Arc<crate::auth::PerAddress>,
    max_per_address: usize,
    proxies: Vec<ipnet::IpNet>,
}

/// Whether AUTH is offered: after STARTTLS, or to a client on loopback.
pub fn may_auth(tls: bool, peer: std::net::IpAddr) -> bool {
    tls || peer.to_canonical().is_loopback()
}

/// This machine's name, for the greeting when `--smtp-hostname` is not set.
/// This machine's name, if it is a host name the greeting can carry (a
/// container's may not be), else `localhost`.
fn machine_hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .and_then(|h| crate::config::parse_hostname(&h).ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Relay {
    /// Binds `--smtp-listen` (none when `off`) and prepares its certificate.
    pub async fn bind(
        args: &RelayArgs,
        data_dir: &std::path::Path,
        sending: Sending,
    ) -> Result<Option<Relay>, StartError> {
        let SmtpListen::On(listen) = args.smtp_listen else {
            return Ok(None);
        };
        let hostname = args
            .smtp_hostname
            .clone()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(machine_hostname);
        let tls = tls::acceptor(args, data_dir, &hostname).map_err(StartError)?;
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            StartError(format!(
                "cannot listen for SMTP on {listen}: {e} (choose another --smtp-listen, or `off`)"
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        Ok(Some(Relay {
            addr,
            listener,
            shared: Arc::new(Shared {
                sending,
                hostname,
                tls,
                trusted: args.smtp_trusted_networks.clone(),
                idle: args.smtp_idle_timeout,
                auth_timeout: args.smtp_auth_timeout,
                session_limit: args.smtp_session_limit,
                write_timeout: args.smtp_write_timeout,
            }),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            per_address: Arc::default(),
            max_per_address: args.smtp_max_connections_per_ip.max(1) as usize,
            proxies: args.smtp_proxy_protocol.clone(),
        }))
    }

    /// Accepts connections until `stop` turns true; open sessions are told
    /// `421 4.3.2` at their next command.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "SMTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            self.shared.sending.metrics.relay_connections.inc();
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let stop = stop.clone();
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let per_address = self.per_address.clone();
                    let max = self.max_per_address;
                    let behind_proxy = self
                        .proxies
                        .iter()
                        .any(|n| n.contains(&peer.ip().to_canonical()));
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let client = if behind_proxy {
                            let header = tokio::time::timeout(
                                PROXY_HEADER_TIMEOUT,
                                read_proxy_header(&mut stream),
                            )
                            .await;
                            match header {
                                Ok(Ok(client)) => client.unwrap_or(peer.ip()),
                                Ok(Err(ProxyError::Malformed)) => {
                                    tracing::warn!(%peer, "relay: malformed PROXY header from a load balancer");
                                    refuse(
                                        &shared,
                                        stream,
                                        "421 4.7.0",
                                        "Malformed PROXY protocol header",
                                    )
                                    .await;
                                    return;
                                }
                                _ => return,
                            }
                        } else {
                            peer.ip()
                        };
                        let client = client.to_canonical();
                        let trusted = shared.trusted.iter().any(|n| n.contains(&client));
                        let slot = if trusted {
                            None
                        } else {
                            match per_address.take(client, max) {
                                Some(slot) => Some(slot),
                                None => {
                                    refuse(
                                        &shared,
                                        stream,
                                        "421 4.7.0",
                                        "Too many connections from your address; try again later",
                                    )
                                    .await;
                                    return;
                                }
                            }
                        };
                        session::serve(shared, stream, client, stop).await;
                        drop(slot);
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(async move {
                        refuse(
                            &shared,
                            stream,
                            "421 4.7.0",
                            "Too many connections; try again later",
                        )
                        .await;
                    });
                }
            }
        }
    }
}

/// Answers a connection that will not be served with one reply, and closes it.
async fn refuse(shared: &Shared, mut stream: TcpStream, code: &str, text: &str) {
    let line = format!("{code} {} {text}\r\n", shared.hostname);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
