//! A fake SMTP server that speaks real SMTP: STARTTLS (or implicit TLS) with a
//! test certificate, AUTH offered only after TLS, XOAUTH2 checked against the
//! fake Entra's tokens, PLAIN and LOGIN against a password table, Send-As
//! enforcement, and scripted replies for every Exchange error.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::pki::TestPki;

/// How the server protects connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Offers STARTTLS; AUTH only after it.
    Starttls,
    /// Implicit TLS from the first byte.
    Implicit,
    /// Plain, no STARTTLS, but still offers AUTH (a badly configured server,
    /// or a relay on this machine).
    PlainWithAuth,
}

/// What the server does; every `*_reply` replaces the normal answer.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// TLS mode.
    pub tls: TlsMode,
    /// Reply to AUTH instead of checking the credentials.
    pub auth_reply: Option<String>,
    /// Reply to MAIL FROM.
    pub mail_reply: Option<String>,
    /// Reply after the DATA body.
    pub data_reply: Option<String>,
    /// How long the server takes to accept a message (Exchange takes tens
    /// of milliseconds): the wait before the reply to the DATA body.
    pub data_delay: std::time::Duration,
    /// Close the connection when this verb arrives (for example "AUTH").
    pub drop_on: Option<String>,
    /// MAIL FROM must be the signed-in user unless in `send_as`; else 550 5.7.60.
    pub enforce_send_as: bool,
    /// (trustee, sender) pairs with Send-As rights, lower case.
    pub send_as: HashSet<(String, String)>,
    /// PLAIN/LOGIN users and passwords.
    pub passwords: HashMap<String, String>,
    /// AUTH is required before MAIL (530 5.7.57 otherwise).
    pub require_auth: bool,
    /// The mechanisms offered in EHLO after TLS.
    pub mechanisms: String,
    /// Replies to RCPT TO for particular addresses (lower case), instead of 250.
    pub rcpt_replies: HashMap<String, String>,
    /// Written, as is, as the reply to STARTTLS instead of `220 2.0.0 SMTP server
    /// ready\r\n` (a hostile server appends lines here in the same write).
    pub starttls_reply: Option<String>,
    /// Offer SMTPUTF8 (RFC 6531), as Exchange Online does. Either way an
    /// address beyond ASCII in MAIL FROM or RCPT TO, in a transaction whose
    /// MAIL FROM lacks the SMTPUTF8 parameter, is refused `553 5.6.7`, as
    /// real servers do.
    pub smtputf8: bool,
    /// Inside DATA, takes a bare CR as a line end, as some receivers did
    /// (SMTP smuggling, 2023): `CR . CR` ends the data, and what follows is
    /// read as commands.
    pub bare_cr_ends_lines: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            tls: TlsMode::Starttls,
            auth_reply: None,
            mail_reply: None,
            data_reply: None,
            data_delay: std::time::Duration::ZERO,
            drop_on: None,
            enforce_send_as: true,
            send_as: HashSet::new(),
            passwords: HashMap::new(),
            require_auth: true,
            mechanisms: "LOGIN PLAIN XOAUTH2".into(),
            starttls_reply: None,
            rcpt_replies: HashMap::new(),
            smtputf8: true,
            bare_cr_ends_lines: false,
        }
    }
}

/// A message the server accepted, or an AUTH attempt it saw.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// MAIL FROM address.
    pub mail_from: String,
    /// RCPT TO addresses.
    pub rcpt_to: Vec<String>,
    /// The DATA body, dot-unstuffed.
    pub data: String,
    /// The DATA body as bytes, exactly as sent (dot-unstuffed, CRLF line ends,
    /// without the final CRLF before the "."): for byte-for-byte checks.
    pub raw: Vec<u8>,
    /// The user that signed in, if any.
    pub user: Option<String>,
    /// MAIL FROM's parameters, upper case (`SMTPUTF8`, `BODY=8BITMIME`).
    pub mail_params: Vec<String>,
}

impl Received {
    /// The value of its `Subject:` header line, if it has one.
    pub fn subject(&self) -> Option<&str> {
        self.data.lines().find_map(|l| l.strip_prefix("Subject: "))
    }
}

#[derive(Default)]
struct Log {
    messages: Vec<Received>,
    /// When each of `messages` was accepted.
    accepted_at: Vec<std::time::Instant>,
    auth_attempts: Vec<(bool, String)>,
    connections: usize,
    /// Connections open now, and the most open at once.
    open: usize,
    peak: usize,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeSmtp {
    /// Where it listens.
    pub addr: SocketAddr,
    config: Arc<Mutex<SmtpConfig>>,
    log: Arc<Mutex<Log>>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Reads one line (up to LF), byte by byte so nothing is buffered past a STARTTLS.
async fn read_line(s: &mut Stream) -> Option<String> {
    read_bytes(s).await.map(|line| {
        String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string()
    })
}

/// One line as bytes, its line end included.
async fn read_bytes(s: &mut Stream) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' || line.len() > 1_000_000 {
                    break;
                }
            }
        }
    }
    Some(line)
}

/// A line split where a bare CR (one not followed by LF) ends a piece, each
/// piece keeping its line end.
fn bare_cr_lines(line: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, b) in line.iter().enumerate() {
        if *b == b'\r' && line.get(i + 1) != Some(&b'\n') {
            pieces.push(line[start..=i].to_vec());
            start = i + 1;
        }
    }
    if start < line.len() {
        pieces.push(line[start..].to_vec());
    }
    pieces
}

async fn send(s: &mut Stream, text: &str) -> bool {
    s.write_all(format!("{text}\r\n").as_bytes()).await.is_ok() && s.flush().await.is_ok()
}

fn b64d(s: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default()
}

fn angle(arg: &str) -> String {
    let start = arg.find('<').map(|i| i + 1).unwrap_or(0);
    let end = arg[start..]
        .find('>')
        .map(|i| i + start)
        .unwrap_or(arg.len());
    arg[start..end].trim().to_string()
}

struct Conn {
    config: SmtpConfig,
    tokens: Arc<Mutex<HashSet<String>>>,
    log: Arc<Mutex<Log>>,
    acceptor: TlsAcceptor,
}

impl Conn {
    fn check_xoauth2(&self, blob: &str) -> Result<String, &'static str> {
        let decoded = b64d(blob);
        let mut user = None;
        let mut token = None;
        for part in decoded.split('\x01') {
            if let Some(u) = part.strip_prefix("user=") {
                user = Some(u.to_string());
            } else if let Some(t) = part.strip_prefix("auth=Bearer ") {
                token = Some(t.to_string());
            }
        }
        let (Some(user), Some(token)) = (user, token) else {
            return Err("501 5.5.124 Invalid XOAUTH2 auth data");
        };
        if self.tokens.lock().unwrap().contains(&token) {
            Ok(user)
        } else {
            Err("535 5.7.3 Authentication unsuccessful [fake.outlook.test]")
        }
    }

    fn check_password(&self, user: &str, pass: &str) -> Result<String, &'static str> {
        match self.config.passwords.get(user) {
            Some(p) if p == pass => Ok(user.to_string()),
            _ => Err("535 5.7.3 Authentication unsuccessful [fake.outlook.test]"),
        }
    }

    async fn run(self, tcp: TcpStream) {
        let mut tls = self.config.tls == TlsMode::Implicit;
        let mut s = if tls {
            match self.acceptor.accept(tcp).await {
                Ok(t) => Stream::Tls(Box::new(t)),
                Err(_) => return,
            }
        } else {
            Stream::Plain(tcp)
        };
        if !send(
            &mut s,
            "220 fake.outlook.test Microsoft ESMTP MAIL Service ready",
        )
        .await
        {
            return;
        }
        let mut user: Option<String> = None;
        let mut current = Received::default();
        // Commands read as data's end (`bare_cr_ends_lines`) and not yet run.
        let mut pushed: std::collections::VecDeque<String> = Default::default();
        loop {
            let line = match pushed.pop_front() {
                Some(l) => l,
                None => match read_line(&mut s).await {
                    Some(l) => l,
                    None => break,
                },
            };
            let (verb, arg) = match line.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.to_string()),
                None => (line.to_ascii_uppercase(), String::new()),
            };
            if self
                .config
                .drop_on
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(&verb))
            {
                return;
            }
            let reply: String = match verb.as_str() {
                "EHLO" | "HELO" => {
                    let mut lines = vec![format!("250-fake.outlook.test Hello [{}]", arg)];
                    lines.push("250-SIZE 37748736".into());
                    lines.push("250-PIPELINING".into());
                    lines.push("250-ENHANCEDSTATUSCODES".into());
                    if !tls && self.config.tls == TlsMode::Starttls {
                        lines.push("250-STARTTLS".into());
                    }
                    if tls || self.config.tls == TlsMode::PlainWithAuth {
                        lines.push(format!("250-AUTH {}", self.config.mechanisms));
                    }
                    if self.config.smtputf8 {
                        lines.push("250-SMTPUTF8".into());
                    }
                    lines.push("250 8BITMIME".into());
                    lines.join("\r\n")
                }
                "STARTTLS" if !tls && self.config.tls == TlsMode::Starttls => {
                    let reply = self
                        .config
                        .starttls_reply
                        .clone()
                        .unwrap_or_else(|| "220 2.0.0 SMTP server ready\r\n".into());
                    if s.write_all(reply.as_bytes()).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                    let Stream::Plain(tcp) = s else { return };
                    match self.acceptor.accept(tcp).await {
                        Ok(t) => {
                            s = Stream::Tls(Box::new(t));
                            tls = true;
                            continue;
                        }
                        Err(_) => return,
                    }
                }
                "AUTH" => {
                    self.log
                        .lock()
                        .unwrap()
                        .auth_attempts
                        .push((tls, line.clone()));
                    let mut words = arg.split_whitespace();
                    let mech = words.next().unwrap_or_default().to_ascii_uppercase();
                    let initial = words.next().map(str::to_string);
                    if !tls && self.config.tls != TlsMode::PlainWithAuth {
                        "503 5.5.1 Send STARTTLS first".into()
                    } else {
                        let outcome = match mech.as_str() {
                            "XOAUTH2" => match initial {
                                Some(blob) => self.check_xoauth2(&blob),
                                None => Err("501 5.5.124 Invalid XOAUTH2 auth data"),
                            },
                            "PLAIN" => {
                                let blob = match initial {
                                    Some(b) => b,
                                    None => {
                                        send(&mut s, "334 ").await;
                                        read_line(&mut s).await.unwrap_or_default()
                                    }
                                };
                                let decoded = b64d(&blob);
                                let mut parts = decoded.split('\0').skip(1);
                                let (u, p) = (
                                    parts.next().unwrap_or_default(),
                                    parts.next().unwrap_or_default(),
                                );
                                self.check_password(u, p)
                            }
                            "LOGIN" => {
                                send(&mut s, "334 VXNlcm5hbWU6").await;
                                let u = b64d(&read_line(&mut s).await.unwrap_or_default());
                                send(&mut s, "334 UGFzc3dvcmQ6").await;
                                let p = b64d(&read_line(&mut s).await.unwrap_or_default());
                                self.check_password(&u, &p)
                            }
                            _ => Err("504 5.7.4 Unrecognized authentication type"),
                        };
                        match (&self.config.auth_reply, outcome) {
                            (Some(scripted), _) => scripted.clone(),
                            (None, Ok(u)) => {
                                user = Some(u);
                                "235 2.7.0 Authentication successful".into()
                            }
                            (None, Err(e)) => e.into(),
                        }
                    }
                }
                "MAIL" => {
                    let from = angle(&arg);
                    let params: Vec<String> = arg
                        .rsplit_once('>')
                        .map(|(_, p)| p.split_whitespace().map(str::to_ascii_uppercase).collect())
                        .unwrap_or_default();
                    let utf8 = params.iter().any(|p| p == "SMTPUTF8");
                    if let Some(r) = &self.config.mail_reply {
                        r.clone()
                    } else if utf8 && !self.config.smtputf8 {
                        "555 5.5.4 SMTPUTF8 is not offered here".into()
                    } else if !from.is_ascii() && !utf8 {
                        "553 5.6.7 Non-ASCII addresses need the SMTPUTF8 parameter".into()
                    } else if self.config.require_auth && user.is_none() {
                        "530 5.7.57 Client not authenticated to send mail. [fake.outlook.test]"
                            .into()
                    } else if self.config.enforce_send_as
                        && user.as_deref().is_some_and(|u| {
                            !u.eq_ignore_ascii_case(&from)
                                && !self
                                    .config
                                    .send_as
                                    .contains(&(u.to_ascii_lowercase(), from.to_ascii_lowercase()))
                        })
                    {
                        "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
                            .into()
                    } else {
                        current = Received {
                            mail_from: from,
                            user: user.clone(),
                            mail_params: params,
                            ..Received::default()
                        };
                        "250 2.1.0 Sender OK".into()
                    }
                }
                "RCPT" => {
                    let to = angle(&arg);
                    let utf8 = current.mail_params.iter().any(|p| p == "SMTPUTF8");
                    match self.config.rcpt_replies.get(&to.to_ascii_lowercase()) {
                        Some(reply) => reply.clone(),
                        None if !to.is_ascii() && !utf8 => {
                            "553 5.6.7 Non-ASCII addresses need the SMTPUTF8 parameter".into()
                        }
                        None => {
                            current.rcpt_to.push(to);
                            "250 2.1.5 Recipient OK".into()
                        }
                    }
                }
                "DATA" => {
                    if !send(&mut s, "354 Start mail input; end with <CRLF>.<CRLF>").await {
                        return;
                    }
                    let mut raw: Vec<u8> = Vec::new();
                    'data: while let Some(l) = read_bytes(&mut s).await {
                        let pieces = if self.config.bare_cr_ends_lines {
                            bare_cr_lines(&l)
                        } else {
                            vec![l]
                        };
                        for (k, piece) in pieces.iter().enumerate() {
                            let content: &[u8] = piece
                                .strip_suffix(b"\r\n")
                                .or_else(|| piece.strip_suffix(b"\n"))
                                .or_else(|| piece.strip_suffix(b"\r"))
                                .unwrap_or(piece);
                            if content == b"." {
                                for rest in &pieces[k + 1..] {
                                    let text = String::from_utf8_lossy(rest);
                                    pushed.push_back(text.trim_end_matches(['\r', '\n']).into());
                                }
                                break 'data;
                            }
                            raw.extend_from_slice(piece.strip_prefix(b".").unwrap_or(piece));
                        }
                    }
                    if raw.ends_with(b"\r\n") {
                        raw.truncate(raw.len() - 2);
                    }
                    current.data = String::from_utf8_lossy(&raw)
                        .split("\r\n")
                        .map(|l| l.trim_end_matches(['\r', '\n']))
                        .collect::<Vec<_>>()
                        .join("\r\n");
                    current.raw = raw;
                    if !self.config.data_delay.is_zero() {
                        tokio::time::sleep(self.config.data_delay).await;
                    }
                    match &self.config.data_reply {
                        Some(r) => r.clone(),
                        None => {
                            let mut log = self.log.lock().unwrap();
                            log.messages.push(std::mem::take(&mut current));
                            log.accepted_at.push(std::time::Instant::now());
                            "250 2.0.0 OK queued as fake".into()
                        }
                    }
                }
                "RSET" | "NOOP" => "250 2.0.0 OK".into(),
                "QUIT" => {
                    send(&mut s, "221 2.0.0 Service closing transmission channel").await;
                    return;
                }
                _ => "500 5.3.3 Unrecognized command".into(),
            };
            if !send(&mut s, &reply).await {
                return;
            }
        }
    }
}

impl FakeSmtp {
    /// Starts on 127.0.0.1 with a free port, presenting `pki`'s certificate and
    /// accepting the tokens in `tokens` for XOAUTH2.
    pub async fn start(
        config: SmtpConfig,
        pki: &TestPki,
        tokens: Arc<Mutex<HashSet<String>>>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake SMTP");
        let addr = listener.local_addr().expect("fake SMTP address");
        let config = Arc::new(Mutex::new(config));
        let log = Arc::new(Mutex::new(Log::default()));
        let acceptor = TlsAcceptor::from(pki.server_config());
        let (c, l) = (config.clone(), log.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                {
                    let mut log = l.lock().unwrap();
                    log.connections += 1;
                    log.open += 1;
                    log.peak = log.peak.max(log.open);
                }
                let conn = Conn {
                    config: c.lock().unwrap().clone(),
                    tokens: tokens.clone(),
                    log: l.clone(),
                    acceptor: acceptor.clone(),
                };
                let log = l.clone();
                tokio::spawn(async move {
                    conn.run(tcp).await;
                    log.lock().unwrap().open -= 1;
                });
            }
        });
        FakeSmtp { addr, config, log }
    }

    /// Changes the behaviour for the next connections.
    pub fn configure(&self, f: impl FnOnce(&mut SmtpConfig)) {
        f(&mut self.config.lock().unwrap());
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.log.lock().unwrap().messages.clone()
    }

    /// How many messages were accepted, without copying them (benchmarks
    /// poll it while the fake is under load).
    pub fn accepted(&self) -> usize {
        self.log.lock().unwrap().messages.len()
    }

    /// Every AUTH line seen, with whether TLS was on.
    pub fn auth_attempts(&self) -> Vec<(bool, String)> {
        self.log.lock().unwrap().auth_attempts.clone()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }

    /// The most connections that were open at once.
    pub fn peak_connections(&self) -> usize {
        self.log.lock().unwrap().peak
    }

    /// When each message of [`FakeSmtp::messages`] was accepted, in order.
    pub fn accepted_at(&self) -> Vec<std::time::Instant> {
        self.log.lock().unwrap().accepted_at.clone()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
