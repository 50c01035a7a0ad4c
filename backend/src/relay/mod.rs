//! The SMTP submission relay (docs/API.md §7): printers, line-of-business
//! apps and cron jobs that only speak SMTP with a password hand their mail to
//! Mailroom's durable queue here.
//!
//! Requests are parsed by Stalwart's `smtp-proto`; [`session`] is the state
//! machine, one handler per command. Limits are checked as bytes arrive.

mod session;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::{RelayArgs, SmtpListen};
use crate::messages::Sending;
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
}

/// A bound relay, ready to run.
pub struct Relay {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
}

/// Whether AUTH is offered: after STARTTLS, or to a client on loopback.
pub fn may_auth(tls: bool, peer: std::net::IpAddr) -> bool {
    tls || peer.to_canonical().is_loopback()
}

/// This machine's name, for the greeting when `--smtp-hostname` is not set.
fn machine_hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.trim().is_empty())
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
            }),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
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
                    tokio::spawn(async move {
                        session::serve(shared, stream, peer, stop).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let line = format!(
                            "421 4.7.0 {} Too many connections; try again later\r\n",
                            shared.hostname
                        );
                        let _ = tokio::time::timeout(Duration::from_secs(5), async {
                            let _ = stream.write_all(line.as_bytes()).await;
                            let _ = stream.shutdown().await;
                        })
                        .await;
                    });
                }
            }
        }
    }
}
