//! The SMTP submission relay (docs/API.md §7): printers, line-of-business
//! apps and cron jobs that only speak SMTP with a password hand their mail to
//! Mailroom's durable queue here.
//!
//! Requests are parsed by Stalwart's `smtp-proto`. [`session`] reads the
//! connection (commands, DATA, deadlines, replies; limits checked as bytes
//! arrive), [`commands`] answers each command and holds the mail
//! transaction, [`auth`] checks app keys, [`tls`] makes the TLS config of
//! STARTTLS and of implicit TLS (`--smtps-listen`). This file listens on
//! both ports, caps connections and reads PROXY headers.

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
/// Refusals answered inside TLS at once on the implicit TLS port.
const TLS_REFUSALS: usize = 16;

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
    /// Refusals on the implicit TLS port being answered (each a handshake).
    pub tls_refusals: Arc<Semaphore>,
    /// Lines about refused connections, at most one a minute.
    pub refusals_logged: Throttle,
}

/// Lets a line through at most once a minute, counting what it held back:
/// a device refused for want of room is worth a line in the log, and a
/// flood of them is worth one line a minute.
#[derive(Default)]
pub(crate) struct Throttle {
    last: std::sync::Mutex<Option<std::time::Instant>>,
    held: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// `Some(n)` when a line may go now, `n` being those held back since
    /// the last; `None` when one went less than a minute ago.
    pub fn pass(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(std::time::Instant::now());
        Some(self.held.swap(0, Ordering::Relaxed))
    }
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
    /// The address it listens on for STARTTLS (the real port when 0 was
    /// asked for), unless `--smtp-listen off`.
    pub addr: Option<SocketAddr>,
    /// The address it listens on with implicit TLS, unless `--smtps-listen off`.
    pub smtps_addr: Option<SocketAddr>,
    listener: Option<TcpListener>,
    smtps_listener: Option<TcpListener>,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    per_address: Arc<crate::auth::PerAddress>,
    /// The certificate, read again every `reload_every`, or at once when
    /// `reload_now` is notified (SIGHUP).
    certs: Arc<tls::Reloading>,
    reload_every: Duration,
    reload_now: Arc<tokio::sync::Notify>,
    max_per_address: usize,
    proxies: Vec<ipnet::IpNet>,
}

/// Whether AUTH is offered: after STARTTLS, or to a client on loopback.
pub fn may_auth(tls: bool, peer: std::net::IpAddr) -> bool {
    tls || peer.to_canonical().is_loopback()
}

/// The relay's name, and this server's in every message's `Received`
/// field: `--smtp-hostname`, else the machine's.
pub fn hostname(args: &RelayArgs) -> String {
    args.smtp_hostname
        .clone()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(machine_hostname)
}

/// This machine's name, for the greeting when `--smtp-hostname` is not set,
/// if it is a host name the greeting can carry (a container's may not be),
/// else `localhost`.
fn machine_hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .and_then(|h| crate::config::parse_hostname(&h).ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Relay {
    /// Its TLS certificate.
    pub fn certs(&self) -> Arc<tls::Reloading> {
        self.certs.clone()
    }

    /// Notified to read the certificate files again at once.
    pub fn reload_now(&self) -> Arc<tokio::sync::Notify> {
        self.reload_now.clone()
    }

    /// Binds `--smtp-listen` and `--smtps-listen` (none when both are
    /// `off`) and prepares their certificate.
    pub async fn bind(
        args: &RelayArgs,
        data_dir: &std::path::Path,
        sending: Sending,
    ) -> Result<Option<Relay>, StartError> {
        if args.smtp_listen == SmtpListen::Off && args.smtps_listen == SmtpListen::Off {
            return Ok(None);
        }
        // The name the state found once (`--smtp-hostname`, else the machine's).
        let hostname = sending.hostname.to_string();
        let (tls, certs) = tls::acceptor(args, data_dir, &hostname).map_err(StartError)?;
        let listener = listen(args.smtp_listen, "SMTP", "--smtp-listen").await?;
        let smtps_listener = listen(args.smtps_listen, "SMTPS", "--smtps-listen").await?;
        let addr_of = |l: &Option<TcpListener>| {
            l.as_ref()
                .map(|l| l.local_addr().map_err(|e| StartError(e.to_string())))
                .transpose()
        };
        Ok(Some(Relay {
            addr: addr_of(&listener)?,
            smtps_addr: addr_of(&smtps_listener)?,
            listener,
            smtps_listener,
            shared: Arc::new(Shared {
                sending,
                hostname,
                tls,
                trusted: args.smtp_trusted_networks.clone(),
                idle: args.smtp_idle_timeout,
                auth_timeout: args.smtp_auth_timeout,
                session_limit: args.smtp_session_limit,
                write_timeout: args.smtp_write_timeout,
                tls_refusals: Arc::new(Semaphore::new(TLS_REFUSALS)),
                refusals_logged: Throttle::default(),
            }),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            per_address: Arc::default(),
            certs,
            reload_every: args.smtp_tls_reload_interval,
            reload_now: Arc::default(),
            max_per_address: args.smtp_max_connections_per_ip.max(1) as usize,
            proxies: args.smtp_proxy_protocol.clone(),
        }))
    }

    /// Accepts connections until `stop` turns true; open sessions are told
    /// `421 4.3.2` at their next command.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tokio::spawn(tls::watch(
            self.certs.clone(),
            self.reload_every,
            self.reload_now.clone(),
            self.shared.sending.metrics.clone(),
            stop.clone(),
        ));
        loop {
            let (accepted, implicit) = tokio::select! {
                a = accept(&self.listener) => (a, false),
                a = accept(&self.smtps_listener) => (a, true),
                _ = stop.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, implicit_tls = implicit, "SMTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
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
                                    // A refusal holds none of the places.
                                    drop(permit);
                                    refuse(
                                        &shared,
                                        stream,
                                        implicit,
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
                                    if let Some(held) = shared.refusals_logged.pass() {
                                        tracing::warn!(peer = %client, limit = max, more_refused = held, "relay: a connection refused, as its address already holds --smtp-max-connections-per-ip connections; devices behind one address (NAT) need a higher limit, or their network in --smtp-trusted-network");
                                    }
                                    // A refusal holds none of the places: with
                                    // implicit TLS it takes a handshake, which a
                                    // client past its limit could otherwise
                                    // stall to hold them all.
                                    drop(permit);
                                    refuse(
                                        &shared,
                                        stream,
                                        implicit,
                                        "421 4.7.0",
                                        "Too many connections from your address; try again later",
                                    )
                                    .await;
                                    return;
                                }
                            }
                        };
                        session::serve(shared, stream, client, stop, implicit).await;
                        drop(slot);
                        drop(permit);
                    });
                }
                Err(_) => {
                    if let Some(held) = shared.refusals_logged.pass() {
                        tracing::warn!(%peer, more_refused = held, "relay: a connection refused, as the relay serves {MAX_CONNECTIONS} at once; if these are real devices, spread them over time, or look for a client that holds connections open");
                    }
                    tokio::spawn(async move {
                        refuse(
                            &shared,
                            stream,
                            implicit,
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

/// Answers a connection that will not be served with one reply, and closes
/// it; with implicit TLS, inside TLS, so that the client can read it. Those
/// handshakes are [`TLS_REFUSALS`] at most at once; past that, the
/// connection closes without a word.
async fn refuse(shared: &Shared, stream: TcpStream, implicit: bool, code: &str, text: &str) {
    let line = format!("{code} {} {text}\r\n", shared.hostname);
    let said = async {
        if !implicit {
            return say(stream, &line).await;
        }
        let Ok(_turn) = shared.tls_refusals.clone().try_acquire_owned() else {
            return;
        };
        if let Ok(tls) = shared.tls.accept(stream).await {
            say(tls, &line).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), said).await;
}

/// Writes `line` and closes.
async fn say(mut io: impl tokio::io::AsyncWrite + Unpin, line: &str) {
    let _ = io.write_all(line.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// Binds one of the relay's listeners, unless it is `off`.
async fn listen(
    listen: SmtpListen,
    what: &str,
    option: &str,
) -> Result<Option<TcpListener>, StartError> {
    let SmtpListen::On(at) = listen else {
        return Ok(None);
    };
    TcpListener::bind(at)
        .await
        .map(Some)
        .map_err(|e| StartError(listen_error(&e, at, Some(what), option)))
}

/// Why a listener could not be bound, and what to do: a port below 1024
/// (25, 465, 587, 80) needs a capability the packaged unit does not grant;
/// a port in use is another program's. `what` names a relay's listener
/// (which may be `off`); `None` is the web page's, `--listen`.
pub(crate) fn listen_error(
    e: &std::io::Error,
    at: SocketAddr,
    what: Option<&str>,
    option: &str,
) -> String {
    let other = match what {
        Some(_) => format!("choose another {option}, or `off`"),
        None => format!("choose another {option}"),
    };
    let fix = match e.kind() {
        std::io::ErrorKind::PermissionDenied if at.port() < 1024 => format!("ports below 1024 need CAP_NET_BIND_SERVICE: under systemd, run `systemctl edit mailroom` and add AmbientCapabilities=CAP_NET_BIND_SERVICE and CapabilityBoundingSet=CAP_NET_BIND_SERVICE under [Service]; or give {option} a port from 1024 up"),
        std::io::ErrorKind::AddrInUse => format!(
            "another program listens there (`ss -ltnp 'sport = :{}'` names it): stop it, or {other}",
            at.port()
        ),
        _ => other,
    };
    match what {
        Some(what) => format!("cannot listen for {what} on {at}: {e} ({fix})"),
        None => format!("cannot listen on {at}: {e} ({fix})"),
    }
}

/// The next connection on `listener`; never, when it is off.
async fn accept(listener: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_low_port_names_the_capability_and_another_port_does_not() {
        use std::io::ErrorKind::{AddrInUse, PermissionDenied};
        let error = |kind, at: &str, what, option| {
            listen_error(
                &std::io::Error::from(kind),
                at.parse().unwrap(),
                what,
                option,
            )
        };
        let low = error(
            PermissionDenied,
            "0.0.0.0:465",
            Some("SMTPS"),
            "--smtps-listen",
        );
        assert!(
            low.starts_with("cannot listen for SMTPS on 0.0.0.0:465: "),
            "{low}"
        );
        assert!(
            low.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"),
            "{low}"
        );
        assert!(
            low.contains("give --smtps-listen a port from 1024 up"),
            "{low}"
        );
        let high = error(
            PermissionDenied,
            "0.0.0.0:2525",
            Some("SMTP"),
            "--smtp-listen",
        );
        assert!(!high.contains("CAP_NET_BIND_SERVICE"), "{high}");
        let busy = error(AddrInUse, "0.0.0.0:465", Some("SMTPS"), "--smtps-listen");
        assert!(
            busy.ends_with("another program listens there (`ss -ltnp 'sport = :465'` names it): stop it, or choose another --smtps-listen, or `off`)"),
            "{busy}"
        );
        // The web page's own, --listen: the same fixes, and no `off`.
        let page = error(PermissionDenied, "0.0.0.0:80", None, "--listen");
        assert!(
            page.starts_with("cannot listen on 0.0.0.0:80: ")
                && page.contains("give --listen a port from 1024 up"),
            "{page}"
        );
        let busy = error(AddrInUse, "127.0.0.1:8080", None, "--listen");
        assert!(
            busy.ends_with("stop it, or choose another --listen)"),
            "{busy}"
        );
    }
}
