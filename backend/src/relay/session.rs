//! One relay connection: a state machine over `smtp-proto`'s receivers.
//!
//! Replies are gathered while buffered commands are handled and written when
//! the buffer is used up, which is what PIPELINING asks of a server. Bytes
//! after a STARTTLS command are thrown away, never handled inside TLS.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroom_shared::sending::App;
use smtp_proto::request::receiver::{
    DataReceiver, DummyDataReceiver, LineReceiver, RequestReceiver,
};
use smtp_proto::Error as ProtoError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::auth::decode_line;
use super::Shared;

/// Protocol errors allowed in one session before it is closed.
pub(super) const MAX_ERRORS: u32 = 10;
/// smtp-proto's longest command line.
const LONG_LINE: usize = smtp_proto::request::receiver::MAX_LINE_LENGTH;
/// Bytes read at a time.
pub(super) const READ_CHUNK: usize = 8192;

/// Who may send in this session.
#[derive(Clone)]
pub(super) enum Sender {
    App(Box<App>),
    Trusted(IpAddr),
}

/// The open mail transaction.
pub(super) struct Transaction {
    pub(super) sender: Sender,
    pub(super) from: String,
    pub(super) rcpts: Vec<String>,
    /// MAIL FROM carried `SMTPUTF8` (RFC 6531).
    pub(super) utf8: bool,
}

/// What the session is reading.
pub(super) enum Mode {
    Command,
    /// DATA, kept while within `--max-message-size`.
    Data(DataReceiver, Vec<u8>),
    /// DATA past the limit, or with no room to hold it: read to its end and
    /// dropped.
    Skip(DummyDataReceiver, Skipped),
    /// AUTH PLAIN's response line.
    AuthPlain(LineReceiver<()>),
    /// AUTH LOGIN's user name line.
    AuthUser(LineReceiver<()>),
    /// AUTH LOGIN's password line, after the user name.
    AuthPass(LineReceiver<String>),
    /// The rest of a command line over smtp-proto's [`LONG_LINE`], dropped
    /// up to its line end: answered once, not once for each 4,096 bytes (a
    /// pipelining client would read those as the replies to its next
    /// commands). The bytes dropped so far.
    LongLine(usize),
}

/// Why DATA is being dropped.
#[derive(Debug, Clone, Copy)]
pub(super) enum Skipped {
    /// Past `--max-message-size`: `552 5.3.4`.
    TooBig,
    /// The intake's memory budget stayed full: `451 4.3.1`, send it again.
    NoRoom,
}

/// The intake's budget is taken in steps of this many bytes, so most
/// messages take it once.
const ROOM_STEP: usize = 256 * 1024;

/// What ended a wait for the client.
#[derive(Debug, Clone, Copy)]
pub(super) enum Deadline {
    Idle,
    Auth,
    Session,
}

/// What to do after a handler.
pub(super) enum Flow {
    Go,
    Close,
    StartTls,
}

pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) peer: IpAddr,
    pub(super) tls: bool,
    /// The name the client gave in EHLO or HELO, and whether it was EHLO.
    pub(super) helo: Option<(String, bool)>,
    pub(super) app: Option<App>,
    /// The hash of the key `app` signed in with: once the app's key is
    /// replaced, the session's next transaction is refused.
    pub(super) key: [u8; 32],
    pub(super) tx: Option<Transaction>,
    pub(super) mode: Mode,
    pub(super) errors: u32,
    pub(super) out: Vec<u8>,
    /// When the greeting was sent: AUTH and the session's length count from here.
    pub(super) started: Instant,
    /// Commands before AUTH (or a trusted MAIL FROM).
    pub(super) commands: u32,
    /// A trusted-network client sent MAIL FROM: it needs no AUTH.
    pub(super) trusted_mail: bool,
    /// The connection's socket (a duplicate handle), to ACK at once after
    /// each read: a client whose final `.` waits behind Nagle's algorithm
    /// would otherwise wait for the delayed-ACK timer (40 ms) per message.
    pub(super) socket: Option<socket2::Socket>,
    /// The intake's memory held for the message in DATA.
    pub(super) room: crate::intake::budget::Reservation,
}

/// Serves one connection to its end: in plain text until STARTTLS, or
/// (`implicit`, `--smtps-listen`) in TLS from the first byte.
pub(super) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: IpAddr,
    stop: watch::Receiver<bool>,
    implicit: bool,
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
        helo: None,
        app: None,
        key: [0; 32],
        tx: None,
        mode: Mode::Command,
        errors: 0,
        out: Vec::new(),
        started: Instant::now(),
        commands: 0,
        trusted_mail: false,
        room: Default::default(),
    };
    let stream = if implicit {
        stream
    } else {
        let mut stream = stream;
        s.greet();
        let next = s.run(&mut stream, stop.clone()).await;
        if !matches!(next, Flow::StartTls) {
            let _ = stream.shutdown().await;
            return;
        }
        stream
    };
    let handshake = tokio::time::timeout(s.read_deadline().0, shared.tls.accept(stream)).await;
    let what = if implicit { "TLS" } else { "STARTTLS" };
    let mut tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            // A device seldom says why its TLS failed: the log does.
            let reason = ascii_line(&handshake_failure(&e, implicit));
            tracing::warn!(%peer, %reason, "relay {what} handshake failed");
            return;
        }
        Err(_) if implicit => {
            // A client that waits for a greeting in plain text sends nothing.
            tracing::warn!(%peer, reason = PLAIN_ON_SMTPS, "relay TLS handshake not begun in time");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "relay STARTTLS handshake not finished in time");
            return;
        }
    };
    // RFC 3207: forget what was said before TLS.
    s.tls = true;
    s.helo = None;
    s.app = None;
    s.tx = None;
    s.mode = Mode::Command;
    if implicit {
        s.greet();
    }
    let _ = s.run(&mut tls, stop).await;
    let _ = tls.shutdown().await;
}

/// What to do about a client that expects plain SMTP on the implicit TLS port.
const PLAIN_ON_SMTPS: &str = "the client sent no TLS handshake: it may expect plain SMTP with STARTTLS, which the relay takes on --smtp-listen. Point it at that port, or set its security to SSL/TLS for this one";

/// What to do about a client that begins TLS at once on the STARTTLS port.
const TLS_ON_STARTTLS: &str = "the client began TLS at once (implicit TLS, often called SSL/TLS or SMTPS), but this port takes plain SMTP with STARTTLS. Set the client's security to STARTTLS, or point it at the relay's --smtps-listen port (usually 465)";

/// What to do about a client whose TLS is too old for the relay.
const OLD_TLS_FIX: &str = "the relay takes TLS 1.2 and 1.3 only. Update the device's firmware, or add its network to --smtp-trusted-network and turn its TLS off";

/// What a failed TLS handshake (STARTTLS, or implicit TLS when `implicit`)
/// means, in words a device's admin can act on: old TLS versions and an
/// untrusted certificate are the usual two.
fn handshake_failure(e: &std::io::Error, implicit: bool) -> String {
    use tokio_rustls::rustls::{AlertDescription as Alert, Error as TlsError};
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>())
    else {
        return format!("the connection ended during the handshake ({e})");
    };
    match tls {
        TlsError::PeerIncompatible(why) => format!(
            "the client offers no TLS version or cipher suite the relay takes ({why:?}): {OLD_TLS_FIX}"
        ),
        TlsError::AlertReceived(
            alert @ (Alert::UnknownCA
            | Alert::BadCertificate
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::UnsupportedCertificate),
        ) => format!(
            "the client does not trust the relay's certificate ({alert:?}): give --smtp-tls-cert a certificate for this host name from a CA the device trusts, or load the relay's own into the device (a new app's panel under Apps downloads it; smtp-tls-cert.pem in the data dir)"
        ),
        TlsError::AlertReceived(Alert::ProtocolVersion) => {
            format!("the client refused the TLS version (ProtocolVersion): {OLD_TLS_FIX}")
        }
        // Plain SMTP where TLS was expected: a client's EHLO, or its QUIT.
        TlsError::InvalidMessage(_) if implicit => format!("{tls}: {PLAIN_ON_SMTPS}"),
        other => format!("{other}"),
    }
}

/// An SMTP reply text: one line of printable ASCII.
pub(crate) fn ascii_line(text: &str) -> String {
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

/// A command line smtp-proto refused with `e`, read again where Postfix is
/// lenient by default: `MAIL FROM:a@b` or `RCPT TO:a@b` without the angle
/// brackets, which some devices and scripts send (`strict_rfc821_envelopes
/// = no`). Anything else stays `e`. The relay's and `sendmail -bs`'s.
fn read_leniently(e: ProtoError, line: &[u8]) -> Result<smtp_proto::Request<String>, ProtoError> {
    match e {
        ProtoError::SyntaxError { .. } => unbracketed(line).ok_or(e),
        ProtoError::InvalidParameter { param: "SIZE" } => sized_past_usize(line).ok_or(e),
        ProtoError::InvalidSenderAddress | ProtoError::InvalidRecipientAddress => {
            with_refused_address(e, line)
        }
        e => Err(e),
    }
}

/// What is wrong with a MAIL FROM address, in the words the page and the
/// HTTP API use; none for the null sender `<>`. The relay's and
/// `sendmail -bs`'s.
pub(crate) fn sender_syntax(address: &str) -> Option<String> {
    if address.is_empty() {
        return None;
    }
    mailroom_shared::validate::check_address("sender", address)
}

/// A MAIL or RCPT whose address smtp-proto refused, as that command with the
/// address as written, when the shared rules (which the command's handler
/// applies first) can name what is wrong with it: `ann..lee@example.org`,
/// `ann@[10.0.0.1]`. "Bad recipient address syntax" named no cause, while the
/// same address over HTTP or in the page was told why. Otherwise stays `e`.
fn with_refused_address(
    e: ProtoError,
    line: &[u8],
) -> Result<smtp_proto::Request<String>, ProtoError> {
    let address = std::str::from_utf8(line).ok().and_then(|text| {
        let start = text.find('<')? + 1;
        text.get(start..start + text[start..].rfind('>')?)
    });
    let Some(address) = address.filter(|a| {
        !a.is_empty() && mailroom_shared::validate::check_address("address", a).is_some()
    }) else {
        return Err(e);
    };
    let address = address.to_string();
    Ok(match e {
        ProtoError::InvalidSenderAddress => smtp_proto::Request::Mail {
            from: smtp_proto::MailFrom {
                address,
                ..Default::default()
            },
        },
        _ => smtp_proto::Request::Rcpt {
            to: smtp_proto::RcptTo {
                address,
                ..Default::default()
            },
        },
    })
}

/// The next command in `bytes` for `receiver`: smtp-proto's reading, or,
/// when it refuses the line, [`read_leniently`]'s, over the whole line even
/// when it came in several reads (smtp-proto keeps the start of a line
/// until its end arrives). The relay's and `mailroom sendmail -bs`'s.
pub(crate) fn next_command(
    receiver: &mut RequestReceiver,
    bytes: &mut std::slice::Iter<'_, u8>,
) -> Result<smtp_proto::Request<String>, ProtoError> {
    let pending = match receiver.buf() {
        b if b.is_empty() => None,
        b => Some(b.clone()),
    };
    let start = bytes.as_slice();
    let result = receiver.ingest(bytes).map(smtp_proto::Request::into_owned);
    let read = &start[..start.len() - bytes.as_slice().len()];
    let line = || match &pending {
        Some(p) => [p.as_slice(), read].concat(),
        None => read.to_vec(),
    };
    match result {
        Ok(mut request) => {
            if let smtp_proto::Request::Mail { from } = &mut request {
                if size_past_usize(&line()) {
                    from.size = usize::MAX;
                }
            }
            match no_parameters(&request) {
                Some(syntax) if has_parameters(&line()) => Err(ProtoError::SyntaxError { syntax }),
                _ => Ok(request),
            }
        }
        Err(e @ (ProtoError::NeedsMoreData { .. } | ProtoError::ResponseTooLong)) => Err(e),
        Err(e) => read_leniently(e, &line()),
    }
}

/// The syntax to answer with when `request` is a command RFC 5321 and
/// RFC 3207 give no parameters. smtp-proto 0.2.5 reads `STARTTLS foo` or
/// `DATA foo` as the bare command; Postfix and Exchange answer `501`.
fn no_parameters(request: &smtp_proto::Request<String>) -> Option<&'static str> {
    use smtp_proto::Request;
    match request {
        Request::StartTls => Some("STARTTLS (it takes no parameters)"),
        Request::Data => Some("DATA (it takes no parameters)"),
        Request::Rset => Some("RSET (it takes no parameters)"),
        Request::Quit => Some("QUIT (it takes no parameters)"),
        _ => None,
    }
}

/// Whether a command line holds anything after its verb but spaces.
fn has_parameters(line: &[u8]) -> bool {
    let text = line.trim_ascii();
    text.iter()
        .position(|b| b.is_ascii_whitespace())
        .is_some_and(|at| !text[at..].trim_ascii().is_empty())
}

/// Whether a MAIL line declares a `SIZE=` of more digits than a `usize`
/// holds. smtp-proto 0.2.5 reads such a size as its last few digits (its
/// saturating read starts again after it saturates), so a client could
/// declare any size and be taken; such a size is over every limit.
fn size_past_usize(line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    text.split_ascii_whitespace().skip(1).any(|param| {
        param
            .get(..5)
            .is_some_and(|key| key.eq_ignore_ascii_case("SIZE="))
            && param[5..].bytes().all(|b| b.is_ascii_digit())
            && param[5..].parse::<usize>().is_err()
    })
}

/// The MAIL line read with its `SIZE=` past what a `usize` holds as
/// `usize::MAX`, over every limit, when smtp-proto refused it as not a size:
/// it refuses one that saturates exactly (`SIZE=18446744073709551616`), while
/// RFC 1870 allows up to 20 digits, so the answer is `552`, not `501`.
fn sized_past_usize(line: &[u8]) -> Option<smtp_proto::Request<String>> {
    if !size_past_usize(line) {
        return None;
    }
    let text = std::str::from_utf8(line)
        .ok()?
        .trim_end_matches(['\r', '\n']);
    let fixed: Vec<&str> = text
        .split(' ')
        .map(|word| match word.get(..5) {
            Some(key) if key.eq_ignore_ascii_case("SIZE=") => "SIZE=0",
            _ => word,
        })
        .collect();
    let fixed = fixed.join(" ") + "\r\n";
    match smtp_proto::Request::parse(&mut fixed.as_bytes().iter()).ok()? {
        smtp_proto::Request::Mail { mut from } => {
            from.size = usize::MAX;
            Some(smtp_proto::Request::Mail { from }.into_owned())
        }
        _ => None,
    }
}

/// The request read with the address bracketed, when the line is `MAIL
/// FROM:` or `RCPT TO:` with an address without brackets and then reads.
fn unbracketed(line: &[u8]) -> Option<smtp_proto::Request<String>> {
    let text = std::str::from_utf8(line)
        .ok()?
        .trim_end_matches(['\r', '\n']);
    let (verb, rest) = text.split_once(':')?;
    let known = ["MAIL FROM", "RCPT TO"]
        .iter()
        .any(|v| verb.eq_ignore_ascii_case(v));
    let rest = rest.trim_start();
    if !known || rest.is_empty() || rest.starts_with('<') {
        return None;
    }
    let (address, params) = rest.split_once(' ').unwrap_or((rest, ""));
    let fixed = format!("{verb}:<{address}> {params}")
        .trim_end()
        .to_string()
        + "\r\n";
    match smtp_proto::Request::parse(&mut fixed.as_bytes().iter()) {
        Ok(request) => Some(request.into_owned()),
        Err(e @ (ProtoError::InvalidSenderAddress | ProtoError::InvalidRecipientAddress)) => {
            with_refused_address(e, fixed.as_bytes()).ok()
        }
        Err(_) => None,
    }
}

/// The reply to a command smtp-proto could not read (the relay's, and
/// `mailroom sendmail -bs`'s).
pub(crate) fn protocol_reply(e: ProtoError) -> (u16, &'static str, String) {
    match e {
        ProtoError::UnknownCommand => (500, "5.5.1", "Unknown command".into()),
        ProtoError::InvalidSenderAddress => (501, "5.1.7", "Bad sender address syntax".into()),
        ProtoError::InvalidRecipientAddress => {
            (501, "5.1.3", "Bad recipient address syntax".into())
        }
        // A device's name missing or past smtp-proto's 255 characters.
        ProtoError::SyntaxError {
            syntax: syntax @ ("EHLO domain" | "HELO domain" | "LHLO domain"),
        } => (
            501,
            "5.5.4",
            format!("Syntax: {syntax}: give this device's name, at most 255 characters, like {} scanner.contoso.com", &syntax[..4]),
        ),
        ProtoError::SyntaxError { syntax } => (501, "5.5.4", format!("Syntax: {syntax}")),
        ProtoError::InvalidParameter { param } => {
            (501, "5.5.4", format!("Invalid parameter {param}"))
        }
        ProtoError::UnsupportedParameter { param } => {
            let param: String = param.chars().take(64).collect();
            (504, "5.5.4", format!("Unsupported parameter {param}"))
        }
        ProtoError::ResponseTooLong => (
            500,
            "5.5.2",
            "Line too long: a command is at most 512 bytes; the rest of the line is ignored".into(),
        ),
        ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
            (500, "5.5.1", "Unknown command".into())
        }
    }
}

/// One reply line: code, enhanced status and text as printable ASCII.
pub(crate) fn reply_line(code: u16, status: &str, text: &str) -> String {
    format!("{code} {status} {}\r\n", ascii_line(text))
}

impl Session {
    /// The greeting names the host first (RFC 5321 4.3.1), without a status code.
    fn greet(&mut self) {
        let line = format!("220 {} ESMTP Mailroom ready\r\n", self.shared.hostname);
        self.out.extend_from_slice(line.as_bytes());
    }

    pub(super) fn reply(&mut self, code: u16, status: &str, text: &str) {
        self.out
            .extend_from_slice(reply_line(code, status, text).as_bytes());
    }

    pub(super) fn hostname(&self) -> String {
        self.shared.hostname.clone()
    }

    /// How this session's message came (`utf8`: its MAIL FROM said
    /// `SMTPUTF8`), for its `Received` field.
    pub(super) fn trace(&self, utf8: bool) -> crate::intake::Trace {
        let (name, extended) = self.helo.clone().unzip();
        crate::intake::Trace {
            peer: self.peer,
            via: crate::intake::Via::Smtp {
                name,
                extended: extended.unwrap_or(false),
                tls: self.tls,
                auth: self.app.is_some(),
                utf8,
            },
        }
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
    pub(super) fn past_auth(&self) -> bool {
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
            if matches!(self.mode, Mode::Command | Mode::LongLine(_))
                && self.started.elapsed() >= self.shared.session_limit
            {
                return self.close_at(io, Deadline::Session).await;
            }
            // Room for what the next read may add to the message in DATA;
            // without it the client waits, and then the message is refused
            // (451) instead of the server running out of memory.
            if let Mode::Data(receiver, body) = &mut self.mode {
                // Each sender (an app, or a trusted network's client) has its share.
                let sender = match self.tx.as_ref().map(|t| &t.sender) {
                    Some(Sender::App(app)) => app.id.clone(),
                    Some(Sender::Trusted(ip)) => format!("{} {ip}", crate::apps::TRUSTED_SOURCE),
                    None => format!("peer {}", self.peer),
                };
                let want = (body.len() + READ_CHUNK).next_multiple_of(ROOM_STEP) as u64;
                let budget = &self.shared.sending.budget;
                let covered = tokio::select! {
                    ok = self.room.cover(budget, &sender, want) => ok,
                    _ = stop.changed() => {
                        self.reply(421, "4.3.2", &format!("{} Mailroom is shutting down; try again shortly", self.hostname()));
                        self.flush(io).await;
                        return Flow::Close;
                    }
                };
                if !covered {
                    tracing::warn!(peer = %self.peer, bytes = budget.bytes(), "relay: the intake's memory stayed full; a message is refused for now");
                    *body = Vec::new();
                    self.room.release();
                    self.mode = Mode::Skip(DummyDataReceiver::new_data(receiver), Skipped::NoRoom);
                }
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
            if !self.tls && self.helo.is_none() && self.commands == 0 && is_tls_hello(&buf[..n]) {
                // No reply: the client reads only TLS now, and would call
                // any text a bad TLS record. The log says what to change.
                tracing::warn!(peer = %self.peer, reason = TLS_ON_STARTTLS, "relay: TLS without STARTTLS");
                return Flow::Close;
            }
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
                let line_start = bytes.as_slice();
                let flow = match &mut self.mode {
                    Mode::Command => match next_command(&mut requests, &mut bytes) {
                        Ok(request) => self.command(request).await,
                        Err(ProtoError::NeedsMoreData { .. }) => break,
                        Err(ProtoError::UnknownCommand) if is_http_request(line_start) => {
                            self.not_a_web_server()
                        }
                        Err(ProtoError::ResponseTooLong) => {
                            self.mode = Mode::LongLine(0);
                            self.protocol_error(ProtoError::ResponseTooLong)
                        }
                        Err(e) => self.protocol_error(e),
                    },
                    Mode::LongLine(dropped) => {
                        let rest = bytes.as_slice();
                        match memchr::memchr(b'\n', rest) {
                            Some(end) => {
                                bytes = rest[end + 1..].iter();
                                self.mode = Mode::Command;
                                Flow::Go
                            }
                            None => {
                                bytes = [].iter();
                                // Each further LONG_LINE bytes counts as an error,
                                // unanswered, so an endless line still ends
                                // the session as ten long lines would.
                                let before = *dropped / LONG_LINE;
                                *dropped += rest.len();
                                let errors = (*dropped / LONG_LINE - before) as u32;
                                self.errors += errors;
                                self.too_many_errors()
                            }
                        }
                    }
                    Mode::Data(receiver, body) => {
                        let done = receiver.ingest(&mut bytes, body);
                        if done {
                            let body = std::mem::take(body);
                            self.mode = Mode::Command;
                            let flow = self.end_of_data(body).await;
                            self.room.release();
                            flow
                        } else {
                            if body.len() as u64 > self.shared.sending.max_message_size {
                                self.mode = Mode::Skip(
                                    DummyDataReceiver::new_data(receiver),
                                    Skipped::TooBig,
                                );
                                self.room.release();
                            }
                            Flow::Go
                        }
                    }
                    Mode::Skip(receiver, why) => {
                        if receiver.ingest(&mut bytes) {
                            let why = *why;
                            self.mode = Mode::Command;
                            self.tx = None;
                            match why {
                                Skipped::TooBig => {
                                    let max = self.shared.sending.max_message_size;
                                    self.reply(
                                        552,
                                        "5.3.4",
                                        &format!("Message too big: the limit is {max} bytes"),
                                    );
                                }
                                Skipped::NoRoom => {
                                    let text = self.shared.sending.budget.full_text();
                                    self.reply(451, "4.3.1", &text);
                                }
                            }
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

    pub(super) fn protocol_error(&mut self, e: ProtoError) -> Flow {
        self.errors += 1;
        let (code, status, text) = protocol_reply(e);
        self.reply(code, status, &text);
        self.too_many_errors()
    }

    /// An HTTP request line: answered once, then the connection closes, so
    /// nothing in the request's body is read as a command.
    fn not_a_web_server(&mut self) -> Flow {
        tracing::warn!(peer = %self.peer, "relay: an HTTP request on the SMTP port (a web page may have sent a browser here); connection closed");
        let text = format!(
            "{} This is an SMTP server, not a web server; closing the connection",
            self.hostname()
        );
        self.reply(554, "5.7.0", &text);
        Flow::Close
    }

    pub(super) fn too_many_errors(&mut self) -> Flow {
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

    /// A refused command: its reply, counted as one of the session's errors.
    /// A refusal the admin may need to see, since a printer or a script
    /// seldom shows the reply: answered, and logged with the client's
    /// address and app (docs/API.md §11).
    pub(super) fn refuse(&mut self, code: u16, status: &str, text: &str) {
        let app = self.app.as_ref().map_or("none", |a| a.id.as_str());
        tracing::warn!(peer = %self.peer, app = %app, reply = %format!("{code} {status} {}", ascii_line(text)), "relay refused a client");
        self.reply(code, status, text);
    }

    pub(super) fn error(&mut self, code: u16, status: &str, text: &str) -> Flow {
        self.errors += 1;
        self.reply(code, status, text);
        self.too_many_errors()
    }

    pub(super) fn out_of_sequence(&mut self, text: &str) -> Flow {
        self.error(503, "5.5.1", text)
    }

    pub(super) fn may_auth(&self) -> bool {
        super::may_auth(self.tls, self.peer)
    }

    pub(super) fn trusted(&self) -> bool {
        self.shared.trusted.iter().any(|n| n.contains(&self.peer))
    }
}

/// Whether a line is an HTTP request line: a browser on a trusted network,
/// sent to the relay's port by a web page, whose body would otherwise be
/// read as SMTP commands (as Postfix's `smtpd_forbidden_commands`). HTTP
/// methods are upper case; no SMTP verb is one of them.
fn is_http_request(line: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"HEAD ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    METHODS.iter().any(|m| line.starts_with(m))
}

/// Whether bytes start like a PROXY protocol header (v1 text or v2 binary).
/// A TLS handshake record (a ClientHello): type 22, version 3.x. No SMTP
/// command begins with that byte.
fn is_tls_hello(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16, 0x03, ..])
}

fn is_proxy_header(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PROXY ") || bytes.starts_with(b"\r\n\r\n\0\r\nQUIT\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_one_line_of_ascii() {
        assert_eq!(ascii_line("“a” — b\r\nc"), "\"a\" - b??c");
    }

    #[test]
    fn envelope_addresses_without_angle_brackets_are_read() {
        let a = format!("{}@{}", "a", "contoso.test");
        let Some(smtp_proto::Request::Mail { from }) =
            unbracketed(format!("MAIL FROM:{a} SIZE=100\r\n").as_bytes())
        else {
            panic!("MAIL FROM without brackets");
        };
        assert_eq!((from.address.as_str(), from.size), (a.as_str(), 100));
        let Some(smtp_proto::Request::Rcpt { to }) =
            unbracketed(format!("rcpt to: {a}\r\n").as_bytes())
        else {
            panic!("RCPT TO without brackets");
        };
        assert_eq!(to.address, a);
        // Anything else stays an error.
        for line in [
            "MAIL FROM:\r\n",
            "MAIL FROM:<a@b\r\n",
            "HELO x\r\n",
            "MAIL FROM:a@b BOGUS=1\r\n",
        ] {
            assert!(unbracketed(line.as_bytes()).is_none(), "{line}");
        }
    }
}
