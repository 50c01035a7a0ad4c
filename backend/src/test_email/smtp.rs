//! The SMTP session, driven step by step with lettre's `AsyncSmtpConnection`
//! over a stream of ours that does TLS with rustls and records every line in
//! plain text, so the transcript shows the real conversation.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Auth, Data, Ehlo, Mail, Quit, Rcpt, Starttls};
use lettre::transport::smtp::extension::{ClientId, Extension, ServerInfo};
use lettre::transport::smtp::response::Response;
use lettre::Address;
use mailroom_shared::api::{Direction, Stage, StageTiming, TranscriptLine};
use mailroom_shared::Security;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::crypto::Secret;

/// Time allowed to open the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the whole SMTP session.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// How to sign in.
#[derive(Debug, Clone)]
pub enum SmtpAuth {
    /// No AUTH.
    None,
    /// AUTH PLAIN with the username and an empty password, when the server offers AUTH.
    UsernameOnly(String),
    /// PLAIN, else LOGIN.
    Password(String, Secret),
    /// XOAUTH2 with the mailbox and the access token.
    Xoauth2(String, Secret),
}

/// One SMTP test to run.
#[derive(Debug, Clone)]
pub struct SmtpPlan {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// STARTTLS, implicit TLS or none.
    pub security: Security,
    /// The EHLO name.
    pub hello: ClientId,
    /// How to sign in.
    pub auth: SmtpAuth,
    /// Envelope sender.
    pub from: Address,
    /// Envelope recipient.
    pub to: Address,
    /// The formatted message.
    pub message: Vec<u8>,
    /// Time allowed to open the TCP connection, normally [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Time allowed for the whole session, normally [`SESSION_TIMEOUT`].
    pub session_timeout: Duration,
}

/// How an SMTP session failed.
#[derive(Debug, Clone)]
pub enum SmtpFailure {
    /// A negative reply; the reply's lines are in `reply`.
    Reply {
        /// The stage it happened in.
        stage: Stage,
        /// The reply's code.
        code: u16,
        /// The reply text, lines joined with spaces.
        text: String,
    },
    /// The host name did not resolve.
    Dns(String),
    /// Nothing listens there.
    Refused,
    /// No answer in time.
    Timeout(Stage),
    /// The TCP connection could not be opened in time.
    ConnectTimeout,
    /// STARTTLS was required but not offered.
    NoStarttls,
    /// The TLS handshake failed; with the certificate's subject and issuer when seen.
    Tls {
        /// What rustls said.
        detail: String,
        /// Subject of the presented certificate.
        subject: Option<String>,
        /// Issuer of the presented certificate.
        issuer: Option<String>,
    },
    /// The server closed the connection.
    Dropped(Stage),
    /// The server offered no mechanism we can use.
    NoMechanism(String),
    /// Anything else on the network.
    Network(Stage, String),
}

/// The outcome of a session: timings, transcript, and the failure if any.
#[derive(Debug, Clone)]
pub struct SmtpOutcome {
    /// Each stage run.
    pub stages: Vec<StageTiming>,
    /// Every line, unmasked (the caller masks secrets).
    pub transcript: Vec<TranscriptLine>,
    /// `None` when the message was accepted.
    pub failure: Option<SmtpFailure>,
}

/// The most lines a transcript keeps.
pub const TRANSCRIPT_MAX_LINES: usize = 1_000;
/// The most bytes a transcript keeps, all lines together.
pub const TRANSCRIPT_MAX_BYTES: usize = 256 * 1024;
/// The longest line the server may send (RFC 5321 allows 512 bytes); a longer
/// one ends the session, so a hostile server cannot fill our memory.
pub const MAX_LINE: usize = 8 * 1024;
/// The most bytes the server may send in answer to one command.
pub const MAX_REPLY: usize = 64 * 1024;

/// Records both directions, line by line, in the order they happen, within
/// [`TRANSCRIPT_MAX_LINES`] and [`TRANSCRIPT_MAX_BYTES`], each line cut at [`MAX_LINE`].
#[derive(Default)]
struct Recorder {
    lines: Vec<TranscriptLine>,
    bytes: usize,
    cut: bool,
    partial_client: Vec<u8>,
    partial_server: Vec<u8>,
    /// Complete server lines seen, kept or not.
    server_lines: usize,
}

impl Recorder {
    fn push(&mut self, dir: Direction, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let buf = match dir {
                Direction::Client => &mut self.partial_client,
                Direction::Server => &mut self.partial_server,
            };
            let room = (MAX_LINE + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.ends_with(b"\n") {
                let line = std::mem::take(buf);
                if dir == Direction::Server {
                    self.server_lines += 1;
                }
                self.keep(dir, &line);
            }
        }
    }

    fn keep(&mut self, dir: Direction, raw: &[u8]) {
        if self.cut {
            return;
        }
        let mut text = String::from_utf8_lossy(raw)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if text.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str(" … (line cut at 8 KiB)");
        }
        if self.lines.len() + 1 >= TRANSCRIPT_MAX_LINES
            || self.bytes + text.len() > TRANSCRIPT_MAX_BYTES
        {
            self.cut = true;
            self.lines.push(TranscriptLine {
                dir,
                line: "… (transcript cut: it is limited to 1,000 lines and 256 KiB)".into(),
            });
            return;
        }
        self.bytes += text.len();
        self.lines.push(TranscriptLine { dir, line: text });
    }

    fn finish(&mut self) -> Vec<TranscriptLine> {
        for dir in [Direction::Client, Direction::Server] {
            let buf = match dir {
                Direction::Client => std::mem::take(&mut self.partial_client),
                Direction::Server => std::mem::take(&mut self.partial_server),
            };
            if !buf.is_empty() {
                self.keep(dir, &buf);
            }
        }
        std::mem::take(&mut self.lines)
    }

    /// The last reply from the server: its code and text.
    fn last_reply(&self) -> Option<(u16, String)> {
        let mut lines: Vec<&str> = Vec::new();
        for l in self.lines.iter().rev() {
            if l.dir != Direction::Server {
                break;
            }
            lines.push(&l.line);
        }
        lines.reverse();
        let first = lines.first()?;
        let code: u16 = first.get(..3)?.parse().ok()?;
        let text = lines
            .iter()
            .map(|l| l.get(4..).unwrap_or_default().trim())
            .collect::<Vec<_>>()
            .join(" ");
        Some((code, text))
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// How much the server has sent: since its last line end, and since our last command.
#[derive(Default)]
struct Inbound {
    line: usize,
    reply: usize,
}

impl Inbound {
    /// Counts bytes from the server; an error once a line or a reply is too long.
    fn count(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reply += bytes.len();
        match bytes.iter().rposition(|b| *b == b'\n') {
            Some(pos) => self.line = bytes.len() - pos - 1,
            None => self.line += bytes.len(),
        }
        if self.line > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the server sent a line longer than {} KiB", MAX_LINE / 1024),
            ));
        }
        if self.reply > MAX_REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the server sent more than {} KiB in one reply",
                    MAX_REPLY / 1024
                ),
            ));
        }
        Ok(())
    }
}

/// The stream lettre talks through; shares its connection with the session so
/// STARTTLS can be done here, with our verifier, while lettre waits. It bounds
/// what the server may send ([`MAX_LINE`], [`MAX_REPLY`]) before lettre buffers it.
#[derive(Clone)]
struct RecStream {
    conn: Arc<Mutex<Conn>>,
    log: Arc<Mutex<Recorder>>,
    inbound: Arc<Mutex<Inbound>>,
    peer: SocketAddr,
}

impl fmt::Debug for RecStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecStream")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for RecStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let result = match &mut *conn {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        };
        if let Poll::Ready(Ok(())) = result {
            let new = &buf.filled()[before..];
            self.log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Direction::Server, new);
            let counted = self
                .inbound
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .count(new);
            if let Err(e) = counted {
                *conn = Conn::Gone;
                return Poll::Ready(Err(e));
            }
        }
        result
    }
}

impl AsyncWrite for RecStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let result = match &mut *conn {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, data),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            Conn::Gone => Poll::Ready(Err(gone())),
        };
        if let Poll::Ready(Ok(n)) = result {
            self.log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Direction::Client, &data[..n]);
            self.inbound.lock().unwrap_or_else(|e| e.into_inner()).reply = 0;
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *conn {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *conn {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncTokioStream for RecStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

/// Delegates every check to webpki, remembering the end-entity certificate so
/// a failure can name its subject and issuer. Nothing is skipped.
#[derive(Debug)]
struct CapturingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: SeenCert,
}

impl ServerCertVerifier for CapturingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.to_vec());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Where the verifier leaves the certificate the server presented.
type SeenCert = Arc<Mutex<Option<Vec<u8>>>>;

/// The roots SMTP TLS trusts: the system's plus the extra CA file.
#[derive(Clone)]
pub struct TlsTrust {
    roots: usize,
    /// Built once; `Err` when no root is available at all (every TLS test then
    /// fails at stage `tls` with this message).
    verifier: Result<Arc<WebPkiServerVerifier>, String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsTrust({} roots)", self.roots)
    }
}

impl TlsTrust {
    /// Loads the system roots and, when given, a PEM file of extra roots.
    pub fn load(extra_ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --extra-ca-file {}: {e}", path.display()))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| {
                    format!("--extra-ca-file {} is not valid PEM: {e}", path.display())
                })?;
                roots.add(cert).map_err(|e| {
                    format!(
                        "--extra-ca-file {} holds an unusable certificate: {e}",
                        path.display()
                    )
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(format!(
                    "--extra-ca-file {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let count = roots.len();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("no trusted root certificates are available: {e}"));
        Ok(TlsTrust {
            roots: count,
            verifier,
            provider,
        })
    }

    fn connector(&self) -> Result<(TlsConnector, SeenCert), String> {
        let inner = self.verifier.clone()?;
        let seen = Arc::new(Mutex::new(None));
        let verifier = CapturingVerifier {
            inner,
            seen: seen.clone(),
        };
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok((TlsConnector::from(Arc::new(config)), seen))
    }
}

fn describe_cert(der: &[u8]) -> (Option<String>, Option<String>) {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => (
            Some(cert.subject().to_string()),
            Some(cert.issuer().to_string()),
        ),
        Err(_) => (None, None),
    }
}

struct Session {
    stages: Vec<StageTiming>,
    log: Arc<Mutex<Recorder>>,
}

impl Session {
    fn record(&mut self, name: Stage, ok: bool, started: Instant) {
        self.stages.push(StageTiming {
            name,
            ok,
            ms: started.elapsed().as_millis() as u64,
        });
    }

    /// Turns a lettre error into a failure, using the recorded reply for its text.
    fn failure(&self, stage: Stage, err: &lettre::transport::smtp::Error) -> SmtpFailure {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(code) = err.status() {
            if let Some((c, text)) = log.last_reply().filter(|(c, _)| *c == u16::from(code)) {
                return SmtpFailure::Reply {
                    stage,
                    code: c,
                    text,
                };
            }
            return SmtpFailure::Reply {
                stage,
                code: u16::from(code),
                text: err.to_string(),
            };
        }
        if err.is_timeout() {
            return SmtpFailure::Timeout(stage);
        }
        let text = err.to_string();
        if text.contains("incomplete response")
            || text.contains("closed")
            || text.contains("reset")
            || text.contains("broken pipe")
        {
            return SmtpFailure::Dropped(stage);
        }
        SmtpFailure::Network(stage, text)
    }
}

fn tls_failure(detail: String, seen: &SeenCert) -> SmtpFailure {
    let cert = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (subject, issuer) = cert.as_deref().map(describe_cert).unwrap_or((None, None));
    SmtpFailure::Tls {
        detail,
        subject,
        issuer,
    }
}

async fn handshake(
    tcp: TcpStream,
    trust: &TlsTrust,
    host: &str,
) -> Result<TlsStream<TcpStream>, SmtpFailure> {
    let (connector, seen) = trust.connector().map_err(|detail| SmtpFailure::Tls {
        detail,
        subject: None,
        issuer: None,
    })?;
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| SmtpFailure::Tls {
        detail: e.to_string(),
        subject: None,
        issuer: None,
    })?;
    connector.connect(name, tcp).await.map_err(|e| {
        let detail = match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls_err) => rustls_err.to_string(),
            None => e.to_string(),
        };
        tls_failure(detail, &seen)
    })
}

/// Runs the session within the plan's session timeout.
pub async fn run(plan: &SmtpPlan, trust: &TlsTrust) -> SmtpOutcome {
    let log = Arc::new(Mutex::new(Recorder::default()));
    let mut session = Session {
        stages: Vec::new(),
        log: log.clone(),
    };
    let started = Instant::now();
    let result = tokio::time::timeout(plan.session_timeout, drive(plan, trust, &mut session)).await;
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(_) => {
            let stage = next_stage(&session.stages);
            session.stages.push(StageTiming {
                name: stage,
                ok: false,
                ms: started.elapsed().as_millis() as u64,
            });
            Some(SmtpFailure::Timeout(stage))
        }
    };
    let transcript = log.lock().unwrap_or_else(|e| e.into_inner()).finish();
    SmtpOutcome {
        stages: session.stages,
        transcript,
        failure,
    }
}

fn next_stage(done: &[StageTiming]) -> Stage {
    match done.last().map(|s| (s.name, s.ok)) {
        None => Stage::Connect,
        Some((stage, false)) => stage,
        Some((Stage::Connect, true)) => Stage::Tls,
        Some((Stage::Tls, true)) => Stage::Auth,
        Some((_, true)) => Stage::Send,
    }
}

async fn drive(plan: &SmtpPlan, trust: &TlsTrust, s: &mut Session) -> Result<(), SmtpFailure> {
    // connect: TCP
    let t = Instant::now();
    let tcp = match tokio::time::timeout(
        plan.connect_timeout,
        TcpStream::connect((plan.host.as_str(), plan.port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            s.record(Stage::Connect, false, t);
            let text = e.to_string();
            return Err(if e.kind() == io::ErrorKind::ConnectionRefused {
                SmtpFailure::Refused
            } else if super::token::is_dns_failure(&text) {
                SmtpFailure::Dns(text)
            } else {
                SmtpFailure::Network(Stage::Connect, text)
            });
        }
        Err(_) => {
            s.record(Stage::Connect, false, t);
            return Err(SmtpFailure::ConnectTimeout);
        }
    };
    // Deliberately no TCP_NODELAY (every command is one write followed by a
    // read, so Nagle never delays us). With it, the EHLO after STARTTLS leaves
    // before the server's TLS 1.3 session tickets arrive; their ACK is then
    // delayed, and a server with Nagle on holds its EHLO reply for it: 40 ms
    // per session, measured against the loopback fake.
    let peer = tcp
        .peer_addr()
        .map_err(|e| SmtpFailure::Network(Stage::Connect, e.to_string()))?;

    let conn_slot = if plan.security == Security::Tls {
        s.record(Stage::Connect, true, t);
        let t = Instant::now();
        match handshake(tcp, trust, &plan.host).await {
            Ok(tls) => {
                s.record(Stage::Tls, true, t);
                Conn::Tls(Box::new(tls))
            }
            Err(f) => {
                s.record(Stage::Tls, false, t);
                return Err(f);
            }
        }
    } else {
        Conn::Plain(tcp)
    };
    let stream = RecStream {
        conn: Arc::new(Mutex::new(conn_slot)),
        log: s.log.clone(),
        inbound: Arc::default(),
        peer,
    };
    let shared_conn = stream.conn.clone();

    // connect: greeting and EHLO
    let t = Instant::now();
    let mut conn =
        match AsyncSmtpConnection::connect_with_transport(Box::new(stream), &plan.hello).await {
            Ok(c) => c,
            Err(e) => {
                let stage = if plan.security == Security::Tls {
                    Stage::Tls
                } else {
                    Stage::Connect
                };
                s.record(stage, false, t);
                return Err(s.failure(stage, &e));
            }
        };
    let mut info: ServerInfo = conn.server_info().clone();
    if plan.security != Security::Tls {
        s.record(Stage::Connect, true, t);
    }

    // tls: STARTTLS, handshake, EHLO again
    if plan.security == Security::Starttls {
        let t = Instant::now();
        if !info.supports_feature(Extension::StartTls) {
            s.record(Stage::Tls, false, t);
            let _ = conn.command(Quit).await;
            return Err(SmtpFailure::NoStarttls);
        }
        let lines_before = s.log.lock().unwrap_or_else(|e| e.into_inner()).server_lines;
        let reply = match conn.command(Starttls).await {
            Ok(reply) => reply,
            Err(e) => {
                s.record(Stage::Tls, false, t);
                return Err(s.failure(Stage::Tls, &e));
            }
        };
        // Anything the server sent after its 220, before TLS began, would be
        // read as if it came over TLS (the STARTTLS injection attack).
        let injected = {
            let log = s.log.lock().unwrap_or_else(|e| e.into_inner());
            log.server_lines - lines_before > reply.message().count().max(1)
                || !log.partial_server.is_empty()
        };
        if injected {
            s.record(Stage::Tls, false, t);
            return Err(SmtpFailure::Tls {
                detail: "the server sent more data after its 220 reply to STARTTLS, before TLS began; Mailroom stops there, because such data could be injected by an attacker on the network".into(),
                subject: None,
                issuer: None,
            });
        }
        let plain = std::mem::replace(
            &mut *shared_conn.lock().unwrap_or_else(|e| e.into_inner()),
            Conn::Gone,
        );
        let Conn::Plain(tcp) = plain else {
            s.record(Stage::Tls, false, t);
            return Err(SmtpFailure::Network(
                Stage::Tls,
                "the connection was not plain before STARTTLS".into(),
            ));
        };
        match handshake(tcp, trust, &plan.host).await {
            Ok(tls) => {
                *shared_conn.lock().unwrap_or_else(|e| e.into_inner()) = Conn::Tls(Box::new(tls))
            }
            Err(f) => {
                s.record(Stage::Tls, false, t);
                return Err(f);
            }
        }
        match conn.command(Ehlo::new(plan.hello.clone())).await {
            Ok(response) => {
                info = ServerInfo::from_response(&response)
                    .map_err(|e| SmtpFailure::Network(Stage::Tls, e.to_string()))?;
            }
            Err(e) => {
                s.record(Stage::Tls, false, t);
                return Err(s.failure(Stage::Tls, &e));
            }
        }
        s.record(Stage::Tls, true, t);
    }

    // auth
    let creds = match &plan.auth {
        SmtpAuth::None => None,
        SmtpAuth::UsernameOnly(user) => {
            let offers_auth = [Mechanism::Plain, Mechanism::Login]
                .iter()
                .any(|m| info.supports_auth_mechanism(*m));
            offers_auth.then(|| {
                (
                    vec![Mechanism::Plain, Mechanism::Login],
                    Credentials::new(user.clone(), String::new()),
                )
            })
        }
        SmtpAuth::Password(user, pass) => Some((
            vec![Mechanism::Plain, Mechanism::Login],
            Credentials::new(user.clone(), pass.expose().to_string()),
        )),
        SmtpAuth::Xoauth2(user, token) => Some((
            vec![Mechanism::Xoauth2],
            Credentials::new(user.clone(), token.expose().to_string()),
        )),
    };
    if let Some((mechanisms, creds)) = creds {
        let t = Instant::now();
        let Some(mechanism) = mechanisms
            .iter()
            .copied()
            .find(|m| info.supports_auth_mechanism(*m))
        else {
            s.record(Stage::Auth, false, t);
            let wanted = mechanisms
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(" or ");
            let _ = conn.command(Quit).await;
            return Err(SmtpFailure::NoMechanism(wanted));
        };
        if let Err(e) = authenticate(&mut conn, mechanism, &creds).await {
            s.record(Stage::Auth, false, t);
            return Err(s.failure(Stage::Auth, &e));
        }
        s.record(Stage::Auth, true, t);
    }

    // send
    let t = Instant::now();
    let sent: Result<Response, lettre::transport::smtp::Error> = async {
        conn.command(Mail::new(Some(plan.from.clone()), vec![]))
            .await?;
        conn.command(Rcpt::new(plan.to.clone(), vec![])).await?;
        conn.command(Data).await?;
        // One write for the body and its terminator (lettre's `message()` makes
        // two, and the second waits 40 ms for a delayed ACK under Nagle).
        conn.command(dot_stuffed(&plan.message)).await
    }
    .await;
    match sent {
        Ok(_) => {
            s.record(Stage::Send, true, t);
            let _ = conn.command(Quit).await;
            Ok(())
        }
        Err(e) => {
            s.record(Stage::Send, false, t);
            let f = s.failure(Stage::Send, &e);
            let _ = conn.command(Quit).await;
            Err(f)
        }
    }
}

/// The DATA section as sent: CRLF line ends, lines starting with "." doubled
/// (RFC 5321 4.5.2), and the terminating "." line.
pub fn dot_stuffed(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.trim_end_matches('\n').split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// AUTH with challenges; an XOAUTH2 challenge (an error report) gets the empty
/// line the protocol asks for, then the final reply.
async fn authenticate(
    conn: &mut AsyncSmtpConnection,
    mechanism: Mechanism,
    creds: &Credentials,
) -> Result<Response, lettre::transport::smtp::Error> {
    let mut response = conn
        .command(Auth::new(mechanism, creds.clone(), None)?)
        .await?;
    let mut rounds = 0;
    while response.has_code(334) && rounds < 5 {
        rounds += 1;
        response = if mechanism == Mechanism::Xoauth2 {
            conn.command("\r\n").await?
        } else {
            conn.command(Auth::new_from_response(
                mechanism,
                creds.clone(),
                &response,
            )?)
            .await?
        };
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transcript_is_capped() {
        let mut r = Recorder::default();
        r.push(Direction::Server, &vec![b'x'; 20_000]);
        r.push(Direction::Server, b"\r\n250 ok\r\n");
        for _ in 0..2_000 {
            r.push(Direction::Client, b"NOOP\r\n");
        }
        let lines = r.finish();
        assert!(
            lines[0].line.len() < MAX_LINE + 64 && lines[0].line.ends_with("(line cut at 8 KiB)")
        );
        assert_eq!(lines[1].line, "250 ok");
        assert_eq!(lines.len(), TRANSCRIPT_MAX_LINES);
        assert!(lines.last().unwrap().line.contains("transcript cut"));
        let mut big = Recorder::default();
        for _ in 0..100 {
            big.push(
                Direction::Server,
                &[vec![b'y'; 8_000], b"\n".to_vec()].concat(),
            );
        }
        let total: usize = big.finish().iter().map(|l| l.line.len()).sum();
        assert!(total <= TRANSCRIPT_MAX_BYTES + 128, "{total}");
    }

    #[test]
    fn long_lines_and_replies_are_refused() {
        let mut i = Inbound::default();
        assert!(i.count(&vec![b'a'; MAX_LINE]).is_ok());
        assert!(i.count(b"a").is_err());
        let mut i = Inbound::default();
        let line = [vec![b'b'; 1000], b"\r\n".to_vec()].concat();
        let results: Vec<bool> = (0..70).map(|_| i.count(&line).is_ok()).collect();
        assert!(results[..60].iter().all(|ok| *ok) && !results[69]);
    }

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        assert_eq!(
            dot_stuffed(b"Subject: x\r\n\r\n.hidden\r\nok\r\n"),
            "Subject: x\r\n\r\n..hidden\r\nok\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(b".\nlone"), "..\r\nlone\r\n.\r\n");
    }
}
