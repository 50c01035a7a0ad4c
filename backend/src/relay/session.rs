//! One relay connection: a state machine over `smtp-proto`'s receivers.
//!
//! Replies are gathered while buffered commands are handled and written when
//! the buffer is used up, which is what PIPELINING asks of a server. Bytes
//! after a STARTTLS command are thrown away, never handled inside TLS.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroom_shared::sending::{App, FromPolicy, MAX_RECIPIENTS};
use smtp_proto::request::receiver::{
    DataReceiver, DummyDataReceiver, LineReceiver, RequestReceiver,
};
use smtp_proto::{EhloResponse, Error as ProtoError, Request};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Shared;
use crate::apps::key_hash;
use crate::auth::Refused;
use crate::queue::Enqueued;
use crate::store::StoreError;

/// Protocol errors allowed in one session before it is closed.
const MAX_ERRORS: u32 = 10;
/// Bytes read at a time.
const READ_CHUNK: usize = 8192;

/// Who may send in this session.
#[derive(Clone)]
enum Sender {
    App(App),
    Trusted(IpAddr),
}

/// The open mail transaction.
struct Transaction {
    sender: Sender,
    from: String,
    rcpts: Vec<String>,
}

/// What the session is reading.
enum Mode {
    Command,
    /// DATA, kept while within `--max-message-size`.
    Data(DataReceiver, Vec<u8>),
    /// DATA past the limit: read to its end and dropped.
    Skip(DummyDataReceiver),
    /// AUTH PLAIN's response line.
    AuthPlain(LineReceiver<()>),
    /// AUTH LOGIN's user name line.
    AuthUser(LineReceiver<()>),
    /// AUTH LOGIN's password line, after the user name.
    AuthPass(LineReceiver<String>),
}

/// What ended a wait for the client.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    Idle,
    Auth,
    Session,
}

/// What to do after a handler.
enum Flow {
    Go,
    Close,
    StartTls,
}

struct Session {
    shared: Arc<Shared>,
    peer: IpAddr,
    tls: bool,
    helo: bool,
    app: Option<App>,
    tx: Option<Transaction>,
    mode: Mode,
    errors: u32,
    out: Vec<u8>,
    /// When the greeting was sent: AUTH and the session's length count from here.
    started: Instant,
    /// Commands before AUTH (or a trusted MAIL FROM).
    commands: u32,
    /// A trusted-network client sent MAIL FROM: it needs no AUTH.
    trusted_mail: bool,
    /// The connection's socket (a duplicate handle), to ACK at once after
    /// each read: a client whose final `.` waits behind Nagle's algorithm
    /// would otherwise wait for the delayed-ACK timer (40 ms) per message.
    socket: Option<socket2::Socket>,
}

/// Serves one connection to its end.
pub(super) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: IpAddr,
    stop: watch::Receiver<bool>,
) {
    let peer = peer.to_canonical();
    let socket = {
        use std::os::fd::AsFd;
        stream
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(socket2::Socket::from)
    };
    let mut s = Session {
        socket,
        shared: shared.clone(),
        peer,
        tls: false,
        helo: false,
        app: None,
        tx: None,
        mode: Mode::Command,
        errors: 0,
        out: Vec::new(),
        started: Instant::now(),
        commands: 0,
        trusted_mail: false,
    };
    let mut stream = stream;
    // The greeting names the host first (RFC 5321 4.3.1), without a status code.
    s.out
        .extend_from_slice(format!("220 {} ESMTP Mailroom ready\r\n", shared.hostname).as_bytes());
    let next = s.run(&mut stream, stop.clone()).await;
    if !matches!(next, Flow::StartTls) {
        let _ = stream.shutdown().await;
        return;
    }
    let handshake = tokio::time::timeout(s.read_deadline().0, shared.tls.accept(stream)).await;
    let Ok(Ok(mut tls)) = handshake else {
        tracing::debug!(%peer, "relay TLS handshake failed");
        return;
    };
    // RFC 3207: forget what was said before TLS.
    s.tls = true;
    s.helo = false;
    s.app = None;
    s.tx = None;
    s.mode = Mode::Command;
    let _ = s.run(&mut tls, stop).await;
    let _ = tls.shutdown().await;
}

/// An SMTP reply text: one line of printable ASCII.
fn ascii_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '“' | '”' => '"',
            '‘' | '’' => '\'',
            '–' | '—' => '-',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

impl Session {
    fn reply(&mut self, code: u16, status: &str, text: &str) {
        self.out
            .extend_from_slice(format!("{code} {status} {}\r\n", ascii_line(text)).as_bytes());
    }

    fn hostname(&self) -> String {
        self.shared.hostname.clone()
    }

    /// Writes the gathered replies; a client that does not read them within
    /// the write timeout loses the connection (docs/API.md §11).
    async fn flush<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let written = tokio::time::timeout(self.shared.write_timeout, async {
            io.write_all(&self.out).await.is_ok() && io.flush().await.is_ok()
        })
        .await;
        self.out.clear();
        if written.is_err() {
            tracing::info!(peer = %self.peer, "relay client does not read its replies; closing");
        }
        written.unwrap_or(false)
    }

    /// Past AUTH, or a trusted client that began a transaction.
    fn past_auth(&self) -> bool {
        self.app.is_some() || self.trusted_mail
    }

    /// How long the next read may wait, and what ends it: the idle timeout,
    /// the AUTH deadline, or the session's length (between messages only).
    fn read_deadline(&self) -> (Duration, Deadline) {
        let elapsed = self.started.elapsed();
        let mut wait = (self.shared.idle, Deadline::Idle);
        if !self.past_auth() {
            let left = self.shared.auth_timeout.saturating_sub(elapsed);
            if left <= wait.0 {
                wait = (left, Deadline::Auth);
            }
        }
        if matches!(self.mode, Mode::Command) {
            let left = self.shared.session_limit.saturating_sub(elapsed);
            if left <= wait.0 {
                wait = (left, Deadline::Session);
            }
        }
        wait
    }

    /// Reads and answers until the client quits, the session must close, or
    /// STARTTLS was accepted.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        mut stop: watch::Receiver<bool>,
    ) -> Flow {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut requests = RequestReceiver::default();
        loop {
            if !self.flush(io).await {
                return Flow::Close;
            }
            if matches!(self.mode, Mode::Command)
                && self.started.elapsed() >= self.shared.session_limit
            {
                return self.close_at(io, Deadline::Session).await;
            }
            let (wait, deadline) = self.read_deadline();
            let read = tokio::select! {
                r = tokio::time::timeout(wait, io.read(&mut buf)) => r,
                _ = stop.changed() => {
                    self.reply(421, "4.3.2", &format!("{} Mailroom is shutting down; try again shortly", self.hostname()));
                    self.flush(io).await;
                    return Flow::Close;
                }
            };
            let n = match read {
                Err(_) => return self.close_at(io, deadline).await,
                Ok(Err(_)) | Ok(Ok(0)) => return Flow::Close,
                Ok(Ok(n)) => n,
            };
            if let Some(socket) = &self.socket {
                let _ = socket.set_tcp_quickack(true);
            }
            let mut bytes = buf[..n].iter();
            if self.commands == 0
                && matches!(self.mode, Mode::Command)
                && is_proxy_header(&buf[..n])
            {
                // A PROXY header counts only from a --smtp-proxy-protocol
                // balancer, and only before the greeting (read in mod.rs).
                tracing::warn!(peer = %self.peer, "relay: PROXY header from an address that is not a load balancer");
                self.reply(
                    554,
                    "5.7.1",
                    "PROXY protocol headers are accepted only from the load balancers named in --smtp-proxy-protocol",
                );
                self.flush(io).await;
                return Flow::Close;
            }
            while !bytes.as_slice().is_empty() {
                let flow = match &mut self.mode {
                    Mode::Command => match requests.ingest(&mut bytes) {
                        Ok(request) => {
                            let request = request.into_owned();
                            self.command(request).await
                        }
                        Err(ProtoError::NeedsMoreData { .. }) => break,
                        Err(e) => self.protocol_error(e),
                    },
                    Mode::Data(receiver, body) => {
                        let done = receiver.ingest(&mut bytes, body);
                        if done {
                            let body = std::mem::take(body);
                            self.mode = Mode::Command;
                            self.end_of_data(body).await
                        } else {
                            if body.len() as u64 > self.shared.sending.max_message_size {
                                self.mode = Mode::Skip(DummyDataReceiver::new_data(receiver));
                            }
                            Flow::Go
                        }
                    }
                    Mode::Skip(receiver) => {
                        if receiver.ingest(&mut bytes) {
                            self.mode = Mode::Command;
                            self.tx = None;
                            let max = self.shared.sending.max_message_size;
                            self.reply(
                                552,
                                "5.3.4",
                                &format!("Message too big: the limit is {max} bytes"),
                            );
                        }
                        Flow::Go
                    }
                    Mode::AuthPlain(line) => {
                        if line.ingest(&mut bytes) {
                            let text = std::mem::take(&mut line.buf);
                            self.mode = Mode::Command;
                            self.auth_plain(&text).await
                        } else {
                            Flow::Go
                        }
                    }
                    Mode::AuthUser(line) => {
                        if line.ingest(&mut bytes) {
                            let text = std::mem::take(&mut line.buf);
                            match decode_line(&text) {
                                Some(user) => {
                                    self.mode = Mode::AuthPass(LineReceiver::new(user));
                                    // "Password:"
                                    self.out.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
                                    Flow::Go
                                }
                                None => {
                                    self.mode = Mode::Command;
                                    self.auth_cancelled(&text)
                                }
                            }
                        } else {
                            Flow::Go
                        }
                    }
                    Mode::AuthPass(line) => {
                        if line.ingest(&mut bytes) {
                            let text = std::mem::take(&mut line.buf);
                            let user = std::mem::take(&mut line.state);
                            self.mode = Mode::Command;
                            match decode_line(&text) {
                                Some(pass) => self.verify(&user, &pass).await,
                                None => self.auth_cancelled(&text),
                            }
                        } else {
                            Flow::Go
                        }
                    }
                };
                match flow {
                    Flow::Go => {}
                    Flow::Close => {
                        self.flush(io).await;
                        return Flow::Close;
                    }
                    Flow::StartTls => {
                        // Anything pipelined after STARTTLS is dropped.
                        if !self.flush(io).await {
                            return Flow::Close;
                        }
                        return Flow::StartTls;
                    }
                }
            }
        }
    }

    async fn close_at<S: AsyncWrite + Unpin>(&mut self, io: &mut S, deadline: Deadline) -> Flow {
        let host = self.hostname();
        match deadline {
            Deadline::Idle => self.reply(
                421,
                "4.4.2",
                &format!("{host} Idle for too long; closing the connection"),
            ),
            Deadline::Auth => self.reply(
                421,
                "4.7.0",
                &format!(
                    "{host} AUTH was not finished within {} seconds of the greeting; closing the connection",
                    self.shared.auth_timeout.as_secs()
                ),
            ),
            Deadline::Session => self.reply(
                421,
                "4.4.2",
                &format!(
                    "{host} Session time limit ({} minutes) reached; connect again to send more",
                    self.shared.session_limit.as_secs() / 60
                ),
            ),
        }
        self.flush(io).await;
        Flow::Close
    }

    fn protocol_error(&mut self, e: ProtoError) -> Flow {
        self.errors += 1;
        match e {
            ProtoError::UnknownCommand => self.reply(500, "5.5.1", "Unknown command"),
            ProtoError::InvalidSenderAddress => {
                self.reply(501, "5.1.7", "Bad sender address syntax")
            }
            ProtoError::InvalidRecipientAddress => {
                self.reply(501, "5.1.3", "Bad recipient address syntax")
            }
            ProtoError::SyntaxError { syntax } => {
                self.reply(501, "5.5.4", &format!("Syntax: {syntax}"))
            }
            ProtoError::InvalidParameter { param } => {
                self.reply(501, "5.5.4", &format!("Invalid parameter {param}"))
            }
            ProtoError::UnsupportedParameter { param } => {
                let param: String = param.chars().take(64).collect();
                self.reply(504, "5.5.4", &format!("Unsupported parameter {param}"))
            }
            ProtoError::ResponseTooLong => self.reply(500, "5.5.2", "Line too long"),
            ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
                self.reply(500, "5.5.1", "Unknown command")
            }
        }
        self.too_many_errors()
    }

    fn too_many_errors(&mut self) -> Flow {
        if self.errors >= MAX_ERRORS {
            self.reply(
                421,
                "4.7.0",
                &format!(
                    "{} Too many errors; closing the connection",
                    self.hostname()
                ),
            );
            return Flow::Close;
        }
        Flow::Go
    }

    fn out_of_sequence(&mut self, text: &str) -> Flow {
        self.errors += 1;
        self.reply(503, "5.5.1", text);
        self.too_many_errors()
    }

    fn may_auth(&self) -> bool {
        super::may_auth(self.tls, self.peer)
    }

    fn trusted(&self) -> bool {
        self.shared.trusted.iter().any(|n| n.contains(&self.peer))
    }

    async fn command(&mut self, request: Request<String>) -> Flow {
        if !self.past_auth() {
            self.commands += 1;
            if self.commands > super::MAX_COMMANDS_BEFORE_AUTH {
                self.reply(
                    421,
                    "4.7.0",
                    &format!(
                        "{} Too many commands before AUTH; closing the connection",
                        self.hostname()
                    ),
                );
                return Flow::Close;
            }
        } else {
            self.commands = self.commands.saturating_add(1);
        }
        match request {
            Request::Ehlo { .. } => {
                self.helo = true;
                self.tx = None;
                let mut ehlo = EhloResponse::new(self.hostname());
                ehlo.capabilities = smtp_proto::EXT_PIPELINING
                    | smtp_proto::EXT_SIZE
                    | smtp_proto::EXT_8BIT_MIME
                    | smtp_proto::EXT_ENHANCED_STATUS_CODES;
                ehlo.size = self.shared.sending.max_message_size as usize;
                if !self.tls {
                    ehlo.capabilities |= smtp_proto::EXT_START_TLS;
                }
                if self.may_auth() && self.app.is_none() {
                    ehlo.capabilities |= smtp_proto::EXT_AUTH;
                    ehlo.auth_mechanisms = smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN;
                }
                let _ = ehlo.write(&mut self.out);
                Flow::Go
            }
            Request::Helo { .. } | Request::Lhlo { .. } => {
                self.helo = true;
                self.tx = None;
                let text = format!("250 {}\r\n", self.hostname());
                self.out.extend_from_slice(text.as_bytes());
                Flow::Go
            }
            Request::StartTls => {
                if self.tls {
                    return self.out_of_sequence("TLS is already active");
                }
                if self.tx.is_some() {
                    return self.out_of_sequence("Finish or reset the mail transaction first");
                }
                self.reply(220, "2.0.0", "Ready to start TLS");
                Flow::StartTls
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => self.rcpt(to.address).await,
            Request::Data => {
                let Some(tx) = &self.tx else {
                    return self.out_of_sequence("Send MAIL FROM first");
                };
                if tx.rcpts.is_empty() {
                    self.errors += 1;
                    self.reply(554, "5.5.1", "No valid recipients");
                    return self.too_many_errors();
                }
                self.mode = Mode::Data(DataReceiver::new(), Vec::new());
                self.out
                    .extend_from_slice(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
                Flow::Go
            }
            Request::Rset => {
                self.tx = None;
                self.reply(250, "2.0.0", "Ok");
                Flow::Go
            }
            Request::Noop { .. } => {
                self.reply(250, "2.0.0", "Ok");
                Flow::Go
            }
            Request::Quit => {
                self.reply(221, "2.0.0", "Bye");
                Flow::Close
            }
            Request::Vrfy { .. } => {
                self.reply(
                    252,
                    "2.5.0",
                    "Cannot verify; send the message and it will be tried",
                );
                Flow::Go
            }
            Request::Help { .. } => {
                self.reply(
                    214,
                    "2.0.0",
                    "See the Mailroom README, section Sending mail through Mailroom",
                );
                Flow::Go
            }
            Request::Bdat { .. } => {
                // CHUNKING is not offered, so its data cannot be framed: close.
                self.reply(502, "5.5.1", "BDAT is not offered; use DATA");
                Flow::Close
            }
            _ => {
                self.errors += 1;
                self.reply(502, "5.5.1", "Command not implemented");
                self.too_many_errors()
            }
        }
    }

    async fn auth(&mut self, mechanism: u64, initial: String) -> Flow {
        if self.app.is_some() {
            return self.out_of_sequence("Already authenticated");
        }
        if self.tx.is_some() {
            return self.out_of_sequence("AUTH is not allowed during a mail transaction");
        }
        if !self.may_auth() {
            self.reply(
                538,
                "5.7.11",
                "Encryption required: send STARTTLS, then AUTH",
            );
            return Flow::Go;
        }
        match mechanism {
            smtp_proto::AUTH_PLAIN if initial.is_empty() => {
                self.out.extend_from_slice(b"334 \r\n");
                self.mode = Mode::AuthPlain(LineReceiver::new(()));
                Flow::Go
            }
            smtp_proto::AUTH_PLAIN => self.auth_plain(initial.as_bytes()).await,
            smtp_proto::AUTH_LOGIN if initial.is_empty() => {
                // "Username:"
                self.out.extend_from_slice(b"334 VXNlcm5hbWU6\r\n");
                self.mode = Mode::AuthUser(LineReceiver::new(()));
                Flow::Go
            }
            smtp_proto::AUTH_LOGIN => match decode_line(initial.as_bytes()) {
                Some(user) => {
                    self.out.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
                    self.mode = Mode::AuthPass(LineReceiver::new(user));
                    Flow::Go
                }
                None => self.auth_cancelled(initial.as_bytes()),
            },
            _ => {
                self.reply(
                    504,
                    "5.5.4",
                    "Unrecognized authentication type; use PLAIN or LOGIN",
                );
                Flow::Go
            }
        }
    }

    fn auth_cancelled(&mut self, line: &[u8]) -> Flow {
        self.errors += 1;
        if line.trim_ascii() == b"*" {
            self.reply(501, "5.7.0", "Authentication cancelled");
        } else {
            self.reply(501, "5.5.2", "Cannot decode the response as base64");
        }
        self.too_many_errors()
    }

    async fn auth_plain(&mut self, line: &[u8]) -> Flow {
        let Some(decoded) = decode_bytes(line) else {
            return self.auth_cancelled(line);
        };
        // authzid NUL authcid NUL passwd
        let mut parts = decoded.split(|b| *b == 0);
        let (Some(_), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.errors += 1;
            self.reply(
                501,
                "5.5.2",
                "AUTH PLAIN needs authzid NUL username NUL password",
            );
            return self.too_many_errors();
        };
        let user = String::from_utf8_lossy(user).into_owned();
        let pass = String::from_utf8_lossy(pass).into_owned();
        self.verify(&user, &pass).await
    }

    fn locked_out(&mut self, seconds: u64) -> Flow {
        let minutes = seconds.div_ceil(60);
        self.reply(
            421,
            "4.7.0",
            &format!("Too many failed sign-ins from this address; try again in {minutes} minutes"),
        );
        Flow::Close
    }

    /// Checks an app id and key: the key's hash is compared in constant time.
    /// A right key is always accepted; wrong ones count towards the
    /// address's limit, past which each is answered after a delay and the
    /// connection closed (docs/API.md §2).
    async fn verify(&mut self, user: &str, pass: &str) -> Flow {
        let limit = self.shared.sending.apps.key_failures.clone();
        let found = match self.shared.sending.apps.queue.app_by_id(user.trim()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot read apps for an SMTP sign-in");
                self.reply(
                    454,
                    "4.3.0",
                    "Temporary authentication failure: Mailroom cannot reach its database; try again shortly",
                );
                return Flow::Go;
            }
        };
        let hash = key_hash(pass.trim());
        let app = found.and_then(|(app, stored)| bool::from(stored.ct_eq(&hash)).then_some(app));
        let verdict = limit.check(self.peer, app.is_some()).await;
        if let (Ok(()), Some(app)) = (verdict, app) {
            tracing::info!(app = %app.id, peer = %self.peer, "relay sign-in");
            self.app = Some(app);
            self.reply(235, "2.7.0", "Authentication successful");
            return Flow::Go;
        }
        self.shared.sending.metrics.relay_auth_failures.inc();
        self.reply(
            535,
            "5.7.8",
            "Authentication credentials invalid: the username is the app's id (app_...) and the password its key (mr_...)",
        );
        match verdict {
            Err(Refused::LockedOut(wait)) => {
                tokio::time::sleep(crate::apps::WRONG_KEY_DELAY).await;
                self.locked_out(wait)
            }
            _ => Flow::Go,
        }
    }

    /// The session's sender, checked again now: a revoked app stops here.
    async fn sender(&mut self) -> Result<Sender, Flow> {
        if let Some(app) = &self.app {
            match self.shared.sending.apps.queue.app_by_id(&app.id).await {
                Ok(Some((app, _))) => {
                    self.app = Some(app.clone());
                    return Ok(Sender::App(app));
                }
                Ok(None) => {
                    self.app = None;
                    self.reply(
                        530,
                        "5.7.0",
                        "Authentication required: this app was revoked, so its key no longer works",
                    );
                    return Err(Flow::Go);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read apps");
                    self.reply(451, "4.3.0", "Temporary failure reading apps; try again");
                    return Err(Flow::Go);
                }
            }
        }
        if self.trusted() {
            return Ok(Sender::Trusted(self.peer));
        }
        self.reply(
            530,
            "5.7.0",
            if self.may_auth() {
                "Authentication required: AUTH with the app's id as username and its key as password"
            } else {
                "Authentication required: send STARTTLS, then AUTH with the app's id and key"
            },
        );
        Err(Flow::Go)
    }

    async fn policy(
        &mut self,
        sender: &Sender,
    ) -> Result<(FromPolicy, Option<mailroom_shared::Settings>), Flow> {
        let current = match self.shared.sending.settings.load_settings().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the settings");
                self.reply(
                    451,
                    "4.3.0",
                    "Temporary failure reading the settings; try again",
                );
                return Err(Flow::Go);
            }
        };
        let allowed: &[String] = match sender {
            Sender::App(app) => &app.allowed_from,
            Sender::Trusted(_) => &[],
        };
        Ok((FromPolicy::new(current.as_ref(), allowed), current))
    }

    async fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Flow {
        if !self.helo {
            return self.out_of_sequence("Send EHLO first");
        }
        if self.tx.is_some() {
            return self.out_of_sequence("A mail transaction is already open; send RSET first");
        }
        let max = self.shared.sending.max_message_size;
        let sender = match self.sender().await {
            Ok(s) => s,
            Err(flow) => return flow,
        };
        if from.size as u64 > max {
            self.reply(
                552,
                "5.3.4",
                &format!("Message too big: the limit is {max} bytes"),
            );
            return Flow::Go;
        }
        let rewrite = matches!(&sender, Sender::App(a) if a.rewrite_from);
        if !rewrite {
            let (policy, _) = match self.policy(&sender).await {
                Ok(p) => p,
                Err(flow) => return flow,
            };
            if !policy.allows(&from.address) {
                let who = if from.address.is_empty() {
                    "<>"
                } else {
                    from.address.as_str()
                };
                self.reply(550, "5.7.1", &policy.refusal(who));
                return Flow::Go;
            }
        }
        if let Sender::App(app) = &sender {
            if let Some(hit) = self.limit_hit(app, 0).await {
                self.reply(451, "4.7.1", &hit.text());
                return Flow::Go;
            }
        }
        if matches!(sender, Sender::Trusted(_)) {
            self.trusted_mail = true;
        }
        self.tx = Some(Transaction {
            sender,
            from: from.address,
            rcpts: Vec::new(),
        });
        self.reply(250, "2.1.0", "Ok");
        Flow::Go
    }

    /// The limit the app's next message would pass with `rcpts` recipients
    /// (0: only the message limits), if any. A database that cannot be read
    /// leaves the decision to the store at the end of DATA.
    async fn limit_hit(&self, app: &App, rcpts: u32) -> Option<crate::queue::LimitHit> {
        if !app.limits.has_windows() && app.limits.queued_max.is_none() {
            return None;
        }
        let now = self.shared.sending.apps.clock.wall().unix_timestamp();
        // The recent rows only for a limit over a window; queued_max needs a count.
        let rows = app.limits.has_windows();
        let recent = self
            .shared
            .sending
            .apps
            .queue
            .recent(&app.id, now, rows)
            .await
            .ok()?;
        let mut limits = app.limits;
        if rcpts == 0 {
            limits.recipients_per_day = None;
        }
        recent.hit(&limits, now, rcpts.max(1))
    }

    async fn rcpt(&mut self, to: String) -> Flow {
        let app = match &self.tx {
            Some(Transaction {
                sender: Sender::App(app),
                rcpts,
                ..
            }) if app.limits.recipients_per_day.is_some() => {
                Some((app.clone(), rcpts.len() as u32))
            }
            _ => None,
        };
        if let Some((app, count)) = app {
            if let Some(hit) = self.limit_hit(&app, count + 1).await {
                self.reply(451, "4.7.1", &hit.text());
                return Flow::Go;
            }
        }
        let Some(tx) = &mut self.tx else {
            return self.out_of_sequence("Send MAIL FROM first");
        };
        if tx.rcpts.len() >= MAX_RECIPIENTS {
            self.reply(
                452,
                "4.5.3",
                &format!("Too many recipients: at most {MAX_RECIPIENTS} a message; send the rest in another"),
            );
            return Flow::Go;
        }
        if mailroom_shared::parse::check_email(&to).is_err() {
            self.reply(501, "5.1.3", "Bad recipient address syntax");
            return Flow::Go;
        }
        tx.rcpts.push(to);
        self.reply(250, "2.1.5", "Ok");
        Flow::Go
    }

    /// The whole message arrived: check it, store it, and only then say 250.
    async fn end_of_data(&mut self, body: Vec<u8>) -> Flow {
        let Some(tx) = self.tx.take() else {
            return self.out_of_sequence("Send MAIL FROM first");
        };
        let max = self.shared.sending.max_message_size;
        if body.len() as u64 > max {
            self.reply(
                552,
                "5.3.4",
                &format!("Message too big: the limit is {max} bytes"),
            );
            return Flow::Go;
        }
        // The app may have been revoked while the message arrived.
        let sender = match &tx.sender {
            Sender::App(_) => match self.sender().await {
                Ok(s) => s,
                Err(flow) => return flow,
            },
            trusted => trusted.clone(),
        };
        let (policy, settings) = match self.policy(&sender).await {
            Ok(p) => p,
            Err(flow) => return flow,
        };
        let (app, source, rewrite) = match &sender {
            Sender::App(app) => (Some(app.clone()), None, app.rewrite_from),
            Sender::Trusted(ip) => (None, Some(format!("trusted network {ip}")), false),
        };
        let app_id = app.as_ref().map(|a| a.id.clone());
        let built = match crate::intake::check(
            &body,
            crate::intake::Envelope {
                from: Some(tx.from.clone()),
                to: tx.rcpts.clone(),
            },
            &crate::intake::Rules {
                policy: &policy,
                settings: settings.as_ref(),
                rewrite_from: rewrite,
            },
        ) {
            Ok(b) => b,
            Err(errors) => {
                let from = errors.get("from").and_then(|m| m.first());
                match from {
                    Some(m) => self.reply(550, "5.7.1", m),
                    None => {
                        let first = errors
                            .values()
                            .flatten()
                            .next()
                            .cloned()
                            .unwrap_or_else(|| "The message is not valid".into());
                        self.reply(550, "5.6.0", &first);
                    }
                }
                return Flow::Go;
            }
        };
        if built.body.len() as u64 > max {
            self.reply(
                552,
                "5.3.4",
                &format!("Message too big: the limit is {max} bytes"),
            );
            return Flow::Go;
        }
        match self
            .shared
            .sending
            .accept(app.as_ref(), source, built, None)
            .await
        {
            Ok(Enqueued::Limited(hit)) => {
                self.shared
                    .sending
                    .metrics
                    .quota_reached
                    .get_or_create(&crate::metrics::Metrics::app(app_id.as_deref()))
                    .inc();
                self.reply(451, "4.7.1", &hit.text());
            }
            Ok(Enqueued::New(id)) | Ok(Enqueued::Repeat(id, _)) => {
                tracing::info!(%id, app = ?app_id, peer = %self.peer, "message queued over SMTP");
                self.shared.sending.metrics.relay_accepted.inc();
                self.reply(250, "2.0.0", &format!("Ok: queued as {id}"));
            }
            Err(StoreError::Full) => {
                self.reply(452, "4.3.1", "Insufficient system storage; try again later");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store a message from the relay");
                self.reply(
                    451,
                    "4.3.0",
                    "Temporary failure storing the message; try again",
                );
            }
        }
        Flow::Go
    }
}

/// Whether bytes start like a PROXY protocol header (v1 text or v2 binary).
fn is_proxy_header(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PROXY ") || bytes.starts_with(b"\r\n\r\n\0\r\nQUIT\n")
}

fn decode_bytes(line: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let line = line.trim_ascii();
    if line == b"*" {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(line).ok()
}

fn decode_line(line: &[u8]) -> Option<String> {
    decode_bytes(line).and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_one_line_of_ascii() {
        assert_eq!(ascii_line("“a” — b\r\nc"), "\"a\" - b??c");
    }

    #[test]
    fn auth_responses_decode_and_a_star_cancels() {
        assert_eq!(decode_line(b"dXNlcg==").as_deref(), Some("user"));
        assert_eq!(decode_line(b"*"), None);
        assert_eq!(decode_line(b"not base64!"), None);
    }
}
