//! One SMTP client session, one function per stage: [`connect`] (TCP, the
//! implicit TLS handshake, greeting and EHLO), [`starttls`], [`authenticate`],
//! then any number of [`SmtpSession::send`]s, with [`SmtpSession::reset`]
//! between them, and [`SmtpSession::quit`]. The test email is one session
//! sending one message; a delivery engine can send several over one login.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Auth, Data, Ehlo, Mail, Quit, Rcpt, Rset, Starttls};
use lettre::transport::smtp::extension::{
    ClientId, Extension, MailBodyParameter, MailParameter, ServerInfo,
};
use lettre::transport::smtp::response::Response;
use lettre::Address;
use mailroom_shared::api::{Stage, StageTiming};
use mailroom_shared::Security;
use tokio::net::TcpStream;

use super::record::{Conn, RecStream, Recorder};
use super::tls::{handshake, TlsTrust};
use super::{SmtpAuth, SmtpFailure};

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// STARTTLS, implicit TLS or none.
    pub security: Security,
    /// The EHLO name.
    pub hello: ClientId,
    /// Time allowed to open the TCP connection.
    pub connect_timeout: Duration,
}

/// What a session has done so far: its stages and its recorded conversation.
pub struct Progress {
    /// Each stage run, in order.
    pub stages: Vec<StageTiming>,
    /// Both directions, line by line.
    pub(super) log: Arc<Mutex<Recorder>>,
    /// The server's reply to the last message's content: its code (the
    /// enhanced status when given, like `2.0.0`, else the basic one) and the
    /// whole reply, such as Exchange's `250 2.0.0 OK <…> [Hostname=…]`,
    /// which message trace finds.
    pub data_reply: Option<(String, String)>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            stages: Vec::new(),
            log: Arc::new(Mutex::new(Recorder::default())),
            data_reply: None,
        }
    }
}

/// The innermost I/O error behind an error, found through `source()`.
fn io_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

/// Whether an I/O error means the peer went away.
fn is_dropped(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

impl Progress {
    fn record(&mut self, name: Stage, ok: bool, started: Instant) {
        self.stages.push(StageTiming {
            name,
            ok,
            ms: started.elapsed().as_millis() as u64,
        });
    }

    /// The transcript so far (each line once; the recorder keeps its caps).
    pub fn take_transcript(&self) -> Vec<mailroom_shared::api::TranscriptLine> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).finish()
    }

    /// Turns a lettre error into a failure: a reply (with the recorded text),
    /// a timeout, a dropped connection, or another network error, told apart
    /// by lettre's classifiers and the I/O error kind, not by message text.
    fn failure(&self, stage: Stage, err: &lettre::transport::smtp::Error) -> SmtpFailure {
        if let Some(code) = err.status() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let code = u16::from(code);
            let text = log
                .last_reply()
                .filter(|(c, _)| *c == code)
                .map(|(_, text)| text)
                .unwrap_or_else(|| err.to_string());
            let text = crate::upstream::cut_text(text);
            return SmtpFailure::Reply { stage, code, text };
        }
        if err.is_timeout() {
            return SmtpFailure::Timeout(stage);
        }
        match io_error(err) {
            Some(io) if io.kind() == io::ErrorKind::TimedOut => SmtpFailure::Timeout(stage),
            Some(io) if is_dropped(io.kind()) => SmtpFailure::Dropped(stage),
            Some(io) => SmtpFailure::Network(stage, io.to_string()),
            // lettre reports a reply cut off by the end of the stream this way.
            None if err.is_response() => SmtpFailure::Dropped(stage),
            None => SmtpFailure::Network(stage, err.to_string()),
        }
    }
}

fn is_ascii(address: &Address) -> bool {
    AsRef::<str>::as_ref(address).is_ascii()
}

/// `address` as a server without SMTPUTF8 can take it: as it is when it is
/// ASCII, with its domain in the xn-- form when only the domain is beyond
/// ASCII (RFC 5890), and none when its local part is beyond ASCII.
fn ascii_form(address: &Address) -> Option<Address> {
    if is_ascii(address) {
        return Some(address.clone());
    }
    if !address.user().is_ascii() {
        return None;
    }
    let domain = idna::domain_to_ascii(address.domain()).ok()?;
    Address::new(address.user(), domain).ok()
}

/// An address beyond ASCII that the server cannot take, because it does not
/// offer SMTPUTF8: refused as such a server would (`553 5.6.7`), without
/// asking it, so the address is never sent mangled.
fn no_smtputf8(address: &Address) -> SmtpFailure {
    SmtpFailure::Reply {
        stage: Stage::Send,
        code: 553,
        text: format!(
            "5.6.7 Not sent by Mailroom: {} has characters beyond ASCII, which need the server's SMTPUTF8 extension, and the server does not offer it",
            crate::error::short(address.as_ref() as &str)
        ),
    }
}

/// A reply's code (enhanced when given) and its text on one line, cut at
/// [`crate::upstream::MAX_ANSWER_TEXT`].
fn reply_of(reply: &Response) -> (String, String) {
    let basic = u16::from(reply.code());
    let text = reply.message().collect::<Vec<_>>().join(" ");
    let enhanced = text.split_whitespace().next().filter(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    let code = enhanced.map_or_else(|| basic.to_string(), str::to_string);
    (
        code,
        crate::upstream::cut_text(format!("{basic} {text}").trim_end().to_string()),
    )
}

/// A signed-in session, ready to send.
pub struct SmtpSession {
    conn: AsyncSmtpConnection,
    /// The same stream lettre talks through, for the message's bytes, which
    /// lettre can only send as text or with its own line-end handling.
    raw: RecStream,
    /// What the server offered in its last EHLO (after STARTTLS, if any);
    /// lettre's own copy is the one from before STARTTLS.
    info: ServerInfo,
}

impl SmtpSession {
    /// Connects, secures and signs in, recording each stage in `p`.
    pub async fn open(
        target: &Target,
        auth: &SmtpAuth,
        trust: &TlsTrust,
        p: &mut Progress,
    ) -> Result<SmtpSession, SmtpFailure> {
        let (mut conn, raw, mut info) = connect(target, trust, p).await?;
        if target.security == Security::Starttls {
            info = starttls(&mut conn, &raw.conn, target, trust, p).await?;
        }
        authenticate(&mut conn, &info, auth, p).await?;
        Ok(SmtpSession { conn, raw, info })
    }

    /// Sends one message: MAIL FROM, RCPT TO for each recipient, DATA.
    pub async fn send(
        &mut self,
        from: &Address,
        to: &[Address],
        message: &[u8],
        p: &mut Progress,
    ) -> Result<(), SmtpFailure> {
        // The message fails with its first refused recipient.
        self.send_each(from, to, message, p)
            .await?
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }

    /// Sends one message, recipient by recipient: MAIL FROM (its failure is
    /// the message's), RCPT TO for each (a refusal is that recipient's), then
    /// DATA for the accepted ones (its failure is theirs). Returns each
    /// recipient's outcome, in order; after a failure the caller sends RSET.
    pub async fn send_each(
        &mut self,
        from: &Address,
        to: &[Address],
        message: &[u8],
        p: &mut Progress,
    ) -> Result<Vec<Result<(), SmtpFailure>>, SmtpFailure> {
        let t = Instant::now();
        let result = self.transaction(from, to, message, p).await;
        let all_ok = result.as_ref().is_ok_and(|o| o.iter().all(Result::is_ok));
        p.record(Stage::Send, all_ok, t);
        result
    }

    async fn transaction(
        &mut self,
        from: &Address,
        to: &[Address],
        message: &[u8],
        p: &mut Progress,
    ) -> Result<Vec<Result<(), SmtpFailure>>, SmtpFailure> {
        p.data_reply = None;
        // An address beyond ASCII (RFC 6531) needs the server's SMTPUTF8;
        // sent without it, servers refuse it (553 5.6.7) or mangle it.
        // Without it, a domain beyond ASCII goes in its xn-- form.
        let utf8 = self.info.supports_feature(Extension::SmtpUtfEight);
        let sendable = |a: &Address| if utf8 { Some(a.clone()) } else { ascii_form(a) };
        let Some(sent_from) = sendable(from) else {
            return Err(no_smtputf8(from));
        };
        let mut params = Vec::new();
        if utf8 && (!is_ascii(from) || to.iter().any(|a| !is_ascii(a))) {
            params.push(MailParameter::SmtpUtfEight);
        }
        // 8-bit content is declared where the server offers 8BITMIME (RFC 6152).
        if !message.is_ascii() && self.info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.conn
            .command(Mail::new(Some(sent_from), params))
            .await
            .map_err(|e| p.failure(Stage::Send, &e))?;
        let mut outcomes = Vec::with_capacity(to.len());
        for rcpt in to {
            let Some(sent) = sendable(rcpt) else {
                outcomes.push(Err(no_smtputf8(rcpt)));
                continue;
            };
            match self.conn.command(Rcpt::new(sent, vec![])).await {
                Ok(_) => outcomes.push(Ok(())),
                Err(e) => match p.failure(Stage::Send, &e) {
                    f @ SmtpFailure::Reply { .. } => outcomes.push(Err(f)),
                    other => return Err(other),
                },
            }
        }
        if outcomes.iter().all(Result::is_err) {
            return Ok(outcomes);
        }
        self.conn
            .command(Data)
            .await
            .map_err(|e| p.failure(Stage::Send, &e))?;
        // One write for the body and its terminator (lettre's `message()`
        // makes two, and the second waits 40 ms for a delayed ACK under
        // Nagle), of exactly the stored bytes, dot-stuffed; the transcript
        // records that content was sent, never the content itself.
        let data = crate::intake::dot_stuffed(message);
        p.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .content_begins(message.len());
        let written = async {
            use tokio::io::AsyncWriteExt;
            self.raw.write_all(&data).await?;
            self.raw.flush().await
        }
        .await;
        p.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .content_ends();
        if let Err(e) = written {
            return Err(match e.kind() {
                k if is_dropped(k) => SmtpFailure::Dropped(Stage::Send),
                io::ErrorKind::TimedOut => SmtpFailure::Timeout(Stage::Send),
                _ => SmtpFailure::Network(Stage::Send, e.to_string()),
            });
        }
        let reply = self
            .conn
            .read_response()
            .await
            .map_err(|e| p.failure(Stage::Send, &e))?;
        p.data_reply = Some(reply_of(&reply));
        Ok(outcomes)
    }

    /// RSET: clears a failed transaction so the next message can go.
    pub async fn reset(&mut self, p: &mut Progress) -> Result<(), SmtpFailure> {
        self.conn
            .command(Rset)
            .await
            .map(|_| ())
            .map_err(|e| p.failure(Stage::Send, &e))
    }

    /// QUIT, ignoring the answer.
    pub async fn quit(mut self) {
        let _ = self.conn.command(Quit).await;
    }
}

/// The connect stage: TCP (and, for implicit TLS, the handshake), then the
/// greeting and EHLO.
async fn connect(
    target: &Target,
    trust: &TlsTrust,
    p: &mut Progress,
) -> Result<(AsyncSmtpConnection, RecStream, ServerInfo), SmtpFailure> {
    let t = Instant::now();
    let tcp = match tokio::time::timeout(target.connect_timeout, open_tcp(target)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(f)) => {
            p.record(Stage::Connect, false, t);
            return Err(f);
        }
        Err(_) => {
            p.record(Stage::Connect, false, t);
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
    let conn_slot = if target.security == Security::Tls {
        p.record(Stage::Connect, true, t);
        let t = Instant::now();
        match handshake(tcp, trust, &target.host).await {
            Ok(tls) => {
                p.record(Stage::Tls, true, t);
                Conn::Tls(Box::new(tls))
            }
            Err(f) => {
                p.record(Stage::Tls, false, t);
                return Err(f);
            }
        }
    } else {
        Conn::Plain(tcp)
    };
    let stream = RecStream {
        conn: Arc::new(Mutex::new(conn_slot)),
        log: p.log.clone(),
        inbound: Arc::default(),
        peer,
    };
    let raw = stream.clone();
    let t = Instant::now();
    let stage = if target.security == Security::Tls {
        Stage::Tls
    } else {
        Stage::Connect
    };
    match AsyncSmtpConnection::connect_with_transport(Box::new(stream), &target.hello).await {
        Ok(conn) => {
            if stage == Stage::Connect {
                p.record(Stage::Connect, true, t);
            }
            let info = conn.server_info().clone();
            Ok((conn, raw, info))
        }
        Err(e) => {
            p.record(stage, false, t);
            Err(p.failure(stage, &e))
        }
    }
}

/// Resolves the host (a failure here is DNS), then connects to its addresses
/// in turn.
async fn open_tcp(target: &Target) -> Result<TcpStream, SmtpFailure> {
    let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| SmtpFailure::Dns(e.to_string()))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => SmtpFailure::Refused,
        Some(e) => SmtpFailure::Network(Stage::Connect, e.to_string()),
        None => SmtpFailure::Dns(format!("{} has no address", target.host)),
    })
}

/// The tls stage for STARTTLS: the command, a check that nothing was sent
/// after its reply, the handshake, and EHLO again.
async fn starttls(
    conn: &mut AsyncSmtpConnection,
    slot: &Arc<Mutex<Conn>>,
    target: &Target,
    trust: &TlsTrust,
    p: &mut Progress,
) -> Result<ServerInfo, SmtpFailure> {
    let t = Instant::now();
    if !conn.server_info().supports_feature(Extension::StartTls) {
        p.record(Stage::Tls, false, t);
        let _ = conn.command(Quit).await;
        return Err(SmtpFailure::NoStarttls);
    }
    let lines_before = p.log.lock().unwrap_or_else(|e| e.into_inner()).server_lines;
    let reply = match conn.command(Starttls).await {
        Ok(reply) => reply,
        Err(e) => {
            p.record(Stage::Tls, false, t);
            return Err(p.failure(Stage::Tls, &e));
        }
    };
    // Anything the server sent after its 220, before TLS began, would be
    // read as if it came over TLS (the STARTTLS injection attack).
    let injected = {
        let log = p.log.lock().unwrap_or_else(|e| e.into_inner());
        log.server_lines - lines_before > reply.message().count().max(1)
            || !log.partial_server.is_empty()
    };
    if injected {
        p.record(Stage::Tls, false, t);
        return Err(SmtpFailure::Tls {
            detail: "the server sent more data after its 220 reply to STARTTLS, before TLS began; Mailroom stops there, because such data could be injected by an attacker on the network".into(),
            subject: None,
            issuer: None,
        });
    }
    let plain = std::mem::replace(
        &mut *slot.lock().unwrap_or_else(|e| e.into_inner()),
        Conn::Gone,
    );
    let Conn::Plain(tcp) = plain else {
        p.record(Stage::Tls, false, t);
        return Err(SmtpFailure::Network(
            Stage::Tls,
            "the connection was not plain before STARTTLS".into(),
        ));
    };
    match handshake(tcp, trust, &target.host).await {
        Ok(tls) => *slot.lock().unwrap_or_else(|e| e.into_inner()) = Conn::Tls(Box::new(tls)),
        Err(f) => {
            p.record(Stage::Tls, false, t);
            return Err(f);
        }
    }
    let info = match conn.command(Ehlo::new(target.hello.clone())).await {
        Ok(response) => ServerInfo::from_response(&response)
            .map_err(|e| SmtpFailure::Network(Stage::Tls, e.to_string()))?,
        Err(e) => {
            p.record(Stage::Tls, false, t);
            return Err(p.failure(Stage::Tls, &e));
        }
    };
    p.record(Stage::Tls, true, t);
    Ok(info)
}

/// The mechanisms to try, in order, and the credentials; `None` for no AUTH.
fn credentials(auth: &SmtpAuth, info: &ServerInfo) -> Option<(Vec<Mechanism>, Credentials)> {
    match auth {
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
    }
}

/// The auth stage, when the method signs in at all.
async fn authenticate(
    conn: &mut AsyncSmtpConnection,
    info: &ServerInfo,
    auth: &SmtpAuth,
    p: &mut Progress,
) -> Result<(), SmtpFailure> {
    let Some((mechanisms, creds)) = credentials(auth, info) else {
        return Ok(());
    };
    let t = Instant::now();
    let Some(mechanism) = mechanisms
        .iter()
        .copied()
        .find(|m| info.supports_auth_mechanism(*m))
    else {
        p.record(Stage::Auth, false, t);
        let wanted = mechanisms
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(" or ");
        let _ = conn.command(Quit).await;
        return Err(SmtpFailure::NoMechanism(wanted));
    };
    match auth_exchange(conn, mechanism, &creds).await {
        Ok(_) => {
            p.record(Stage::Auth, true, t);
            Ok(())
        }
        Err(e) => {
            p.record(Stage::Auth, false, t);
            Err(p.failure(Stage::Auth, &e))
        }
    }
}

/// AUTH with challenges; an XOAUTH2 challenge (an error report) gets the empty
/// line the protocol asks for, then the final reply.
async fn auth_exchange(
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
    fn io_errors_are_found_through_the_source_chain() {
        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrapper(io::Error::from(io::ErrorKind::ConnectionReset));
        let found = io_error(&e).map(io::Error::kind);
        assert_eq!(found, Some(io::ErrorKind::ConnectionReset));
        assert!(
            is_dropped(io::ErrorKind::UnexpectedEof) && !is_dropped(io::ErrorKind::InvalidData)
        );
    }
}
