//! `mailroom sendmail -bs`: SMTP on stdin and stdout, as sendmail's own
//! `-bs`. Symfony Mailer and Laravel run `/usr/sbin/sendmail -bs` by
//! default, so their apps send through Mailroom unchanged.
//!
//! Each message is submitted as `mailroom sendmail` submits one (`POST
//! /api/messages` as `message/rfc822`, its envelope from MAIL and RCPT in the
//! query), and the server's answer is the reply to its end of DATA: `250`
//! only once Mailroom has committed the message, `451` to try again, a `5xx`
//! with the server's reason. Commands are read by smtp-proto, as the relay's.

use std::io::{Read, Write};
use std::process::ExitCode;

use mailroom_shared::sending::MAX_RECIPIENTS;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, RequestReceiver};
use smtp_proto::Request;

use super::{exit, Answer, Options};
use crate::relay::commands::printable;
use crate::relay::session::{ascii_line, next_command, protocol_reply, reply_line, sender_syntax};

/// The name the session gives itself: it runs on this machine only.
const HOST: &str = "localhost";

/// What the session is reading.
enum Mode {
    Command(RequestReceiver),
    Data(DataReceiver, Vec<u8>),
    /// A message past the size limit: read to its end, then refused.
    TooBig(DummyDataReceiver),
}

/// One mail transaction: MAIL's sender and RCPT's recipients.
struct Transaction {
    from: String,
    to: Vec<String>,
}

/// Whether the session goes on.
#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    Quit,
}

/// One `-bs` session over any reader and writer.
pub struct Session<'a> {
    out: Vec<u8>,
    tx: Option<Transaction>,
    max: u64,
    /// Why nothing can be sent (no app key): said in the greeting, and every
    /// command but QUIT is refused, as RFC 5321 4.3.1 has it for `554`.
    unusable: Option<String>,
    submit: &'a mut dyn FnMut(&str, Vec<u8>) -> Answer,
}

impl<'a> Session<'a> {
    /// A session taking messages of at most `max` bytes and handing each to
    /// `submit` with its envelope's query; `unusable` says why none can be.
    pub fn new(
        max: u64,
        unusable: Option<String>,
        submit: &'a mut dyn FnMut(&str, Vec<u8>) -> Answer,
    ) -> Session<'a> {
        Session {
            out: Vec::new(),
            tx: None,
            max,
            unusable,
            submit,
        }
    }

    fn reply(&mut self, code: u16, status: &str, text: &str) {
        self.out
            .extend_from_slice(reply_line(code, status, text).as_bytes());
    }

    /// Speaks SMTP until QUIT or the end of `input`. True when it ended
    /// cleanly: by QUIT, or at the end of input with no message half given.
    pub fn serve(&mut self, input: &mut impl Read, output: &mut impl Write) -> bool {
        // The greeting names the host first, without an enhanced status
        // code (RFC 5321 4.3.1, RFC 2034), as the relay's does.
        let greeting = match &self.unusable {
            Some(why) => format!("554 {HOST} Mailroom sendmail cannot send: {why}"),
            None => format!("220 {HOST} ESMTP Mailroom sendmail -bs ready"),
        };
        self.out.extend_from_slice(ascii_line(&greeting).as_bytes());
        self.out.extend_from_slice(b"\r\n");
        let mut mode = Mode::Command(RequestReceiver::default());
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if !self.flush(output) {
                return false;
            }
            let n = match input.read(&mut chunk) {
                Ok(0) | Err(_) => {
                    // The end of input: a message not yet ended was not sent.
                    return matches!(mode, Mode::Command(_)) && self.tx.is_none();
                }
                Ok(n) => n,
            };
            let mut bytes = chunk[..n].iter();
            while !bytes.as_slice().is_empty() {
                let flow = match &mut mode {
                    Mode::Command(receiver) => match next_command(receiver, &mut bytes) {
                        Ok(request) => {
                            if matches!(request, Request::Data) && self.data_may_start() {
                                mode = Mode::Data(DataReceiver::new(), Vec::new());
                                Flow::Go
                            } else {
                                self.command(request)
                            }
                        }
                        Err(smtp_proto::Error::NeedsMoreData { .. }) => Flow::Go,
                        Err(e) => {
                            let (code, status, text) = protocol_reply(e);
                            self.reply(code, status, &text);
                            Flow::Go
                        }
                    },
                    Mode::Data(receiver, body) => {
                        if receiver.ingest(&mut bytes, body) {
                            let body = std::mem::take(body);
                            mode = Mode::Command(RequestReceiver::default());
                            if body.len() as u64 > self.max {
                                self.too_big();
                            } else {
                                self.end_of_data(body);
                            }
                        } else if body.len() as u64 > self.max {
                            mode = Mode::TooBig(DummyDataReceiver::new_data(receiver));
                        }
                        Flow::Go
                    }
                    Mode::TooBig(receiver) => {
                        if receiver.ingest(&mut bytes) {
                            mode = Mode::Command(RequestReceiver::default());
                            self.too_big();
                        }
                        Flow::Go
                    }
                };
                if flow == Flow::Quit {
                    return self.flush(output);
                }
            }
        }
    }

    fn flush(&mut self, output: &mut impl Write) -> bool {
        let written = output.write_all(&self.out).and_then(|()| output.flush());
        self.out.clear();
        written.is_ok()
    }

    /// A message past the limit, read to its end: refused, nothing sent.
    fn too_big(&mut self) {
        self.tx = None;
        let text = format!(
            "Message too big: the limit is {} bytes (MAILROOM_MAX_MESSAGE_SIZE); nothing was sent",
            self.max
        );
        self.reply(552, "5.3.4", &text);
    }

    /// DATA with a sender and a recipient: `354`, and the message follows.
    fn data_may_start(&mut self) -> bool {
        if self.unusable.is_some() {
            return false;
        }
        match &self.tx {
            Some(tx) if !tx.to.is_empty() => {
                self.out
                    .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                true
            }
            _ => false,
        }
    }

    fn command(&mut self, request: Request<String>) -> Flow {
        if let Some(why) = &self.unusable {
            if matches!(request, Request::Quit) {
                self.reply(221, "2.0.0", &format!("{HOST} Bye"));
                return Flow::Quit;
            }
            let text = format!("Mailroom sendmail cannot send: {why}");
            self.reply(503, "5.5.1", &text);
            return Flow::Go;
        }
        match request {
            Request::Ehlo { host } => {
                self.tx = None;
                let max = self.max;
                let greeting = format!(
                    "250-{HOST} Hello {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE {max}\r\n",
                    printable(&host, 64)
                );
                self.out.extend_from_slice(greeting.as_bytes());
            }
            Request::Helo { host } => {
                self.tx = None;
                self.reply(
                    250,
                    "2.0.0",
                    &format!("{HOST} Hello {}", printable(&host, 64)),
                );
            }
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to.address),
            Request::Data => match &self.tx {
                None => self.reply(503, "5.5.1", "Send MAIL FROM first"),
                Some(_) => self.reply(554, "5.5.1", "No valid recipients: send RCPT TO first"),
            },
            Request::Rset => {
                self.tx = None;
                self.reply(250, "2.0.0", "Ok");
            }
            Request::Noop { .. } => self.reply(250, "2.0.0", "Ok"),
            Request::Vrfy { .. } => self.reply(
                252,
                "2.5.0",
                "Cannot VRFY; send the message and Mailroom will try to deliver it",
            ),
            Request::Help { .. } => self.reply(
                214,
                "2.0.0",
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT",
            ),
            Request::Quit => {
                self.reply(221, "2.0.0", &format!("{HOST} Bye"));
                return Flow::Quit;
            }
            other => {
                let text = format!(
                    "{} is not offered: this is SMTP on a local pipe to Mailroom",
                    other.name()
                );
                self.reply(502, "5.5.1", &text);
            }
        }
        Flow::Go
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>) {
        if self.tx.is_some() {
            return self.reply(
                503,
                "5.5.1",
                "A mail transaction is already open; send RSET first",
            );
        }
        if let Some(why) = sender_syntax(&from.address) {
            return self.reply(501, "5.1.7", &why);
        }
        if from.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
            return self.reply(
                555,
                "5.5.4",
                "BODY=BINARYMIME needs BDAT, which is not offered; send the message as 8BITMIME or 7BIT with DATA",
            );
        }
        if from.size as u64 > self.max {
            let text = format!(
                "Message too big: the limit is {} bytes (MAILROOM_MAX_MESSAGE_SIZE)",
                self.max
            );
            return self.reply(552, "5.3.4", &text);
        }
        self.tx = Some(Transaction {
            from: from.address,
            to: Vec::new(),
        });
        self.reply(250, "2.1.0", "Ok");
    }

    fn rcpt(&mut self, address: String) {
        let Some(tx) = &mut self.tx else {
            return self.reply(503, "5.5.1", "Send MAIL FROM first");
        };
        if address.trim().is_empty() {
            return self.reply(501, "5.1.3", "Bad recipient address syntax");
        }
        if let Some(why) = mailroom_shared::validate::check_address("recipient", &address) {
            return self.reply(501, "5.1.3", &why);
        }
        let known = tx.to.iter().any(|t| t.eq_ignore_ascii_case(&address));
        if !known && tx.to.len() >= MAX_RECIPIENTS {
            let text = format!(
                "Too many recipients: at most {MAX_RECIPIENTS} a message; send the rest in another"
            );
            return self.reply(452, "4.5.3", &text);
        }
        if !known {
            tx.to.push(address);
        }
        self.reply(250, "2.1.5", "Ok");
    }

    /// Submits the message; the server's answer is the reply.
    fn end_of_data(&mut self, body: Vec<u8>) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let options = Options {
            sender: Some(tx.from).filter(|f| !f.is_empty()),
            recipients: tx.to,
            ..Options::default()
        };
        let (code, status, text) = match super::envelope_query(&options, &body) {
            Ok(query) => reply_to(&(self.submit)(&query, body)),
            Err(e) => (554, "5.5.1", e),
        };
        self.reply(code, status, &text);
    }
}

/// The reply to the end of DATA for the server's answer: `250` only for its
/// `202`; `451` where `mailroom sendmail` would exit 75 (try again).
pub fn reply_to(answer: &Answer) -> (u16, &'static str, String) {
    let (code, says) = answer.outcome();
    match (code, answer) {
        (exit::OK, Answer::Http(_, body)) => {
            let id = super::queued_id(body).unwrap_or_default();
            (250, "2.0.0", format!("Ok: queued as {id}"))
        }
        (exit::TEMPFAIL, _) => (451, "4.3.0", says),
        (exit::NOPERM, _) => (554, "5.7.8", says),
        (_, Answer::Http(413, _)) => (552, "5.3.4", says),
        (exit::UNAVAILABLE, _) => (550, "5.7.1", says),
        _ => (554, "5.6.0", says),
    }
}

/// Runs `mailroom sendmail -bs` on stdin and stdout.
pub fn run() -> ExitCode {
    let (key, unusable) = match super::app_key() {
        Ok(k) => (k, None),
        Err(e) => (String::new(), Some(e)),
    };
    let url = super::server_url();
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sendmail: cannot start: {e}");
            return ExitCode::from(exit::TEMPFAIL);
        }
    };
    let mut submit =
        |query: &str, raw: Vec<u8>| runtime.block_on(super::submit(&url, &key, query, raw));
    let no_key = unusable.is_some();
    let mut session = Session::new(super::max_message_size(), unusable, &mut submit);
    let clean = session.serve(&mut std::io::stdin().lock(), &mut std::io::stdout().lock());
    ExitCode::from(match (no_key, clean) {
        (true, _) => exit::NOPERM,
        (false, true) => exit::OK,
        (false, false) => exit::TEMPFAIL,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a session over `input`; returns its output and what it submitted.
    fn talk(input: &[u8], answer: Answer, max: u64) -> (String, Vec<(String, Vec<u8>)>, bool) {
        talk_from(&mut &input[..], answer, max)
    }

    /// [`talk`], reading `input` as it gives its bytes.
    fn talk_from(
        input: &mut impl Read,
        answer: Answer,
        max: u64,
    ) -> (String, Vec<(String, Vec<u8>)>, bool) {
        let mut got = Vec::new();
        let mut submit = |query: &str, raw: Vec<u8>| {
            got.push((query.to_string(), raw));
            answer.clone()
        };
        let mut out = Vec::new();
        let clean = Session::new(max, None, &mut submit).serve(input, &mut out);
        (String::from_utf8(out).unwrap(), got, clean)
    }

    fn queued() -> Answer {
        Answer::Http(202, r#"{"id":"msg_1","status":"queued"}"#.into())
    }

    fn codes(out: &str) -> Vec<&str> {
        out.lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| &l[..3])
            .collect()
    }

    #[test]
    fn two_messages_in_one_session_each_with_its_envelope_and_dots_unstuffed() {
        let from = format!("{}@{}", "app", "contoso.test");
        let (a, b) = (
            format!("{}@{}", "a", "contoso.test"),
            format!("{}@{}", "b", "contoso.test"),
        );
        let input = format!(
            "EHLO client\r\nMAIL FROM:<{from}> BODY=8BITMIME SIZE=100\r\nRCPT TO:<{a}>\r\nRCPT TO:<{b}>\r\nRCPT TO:<{}>\r\nDATA\r\nSubject: one\r\n\r\n..leading dot\r\n.\r\n\
             MAIL FROM:<>\r\nRCPT TO:<{a}>\r\nDATA\r\nSubject: two\r\n\r\nx\r\n.\r\nQUIT\r\n",
            b.to_uppercase()
        );
        let (out, got, clean) = talk(input.as_bytes(), queued(), 1 << 20);
        assert!(clean);
        assert!(out.starts_with("220 localhost ESMTP"), "{out}");
        assert!(
            out.contains("250-SMTPUTF8\r\n") && out.contains("250 SIZE 1048576\r\n"),
            "{out}"
        );
        assert_eq!(
            codes(&out),
            [
                "220", "250", "250", "250", "250", "250", "354", "250", "250", "250", "354", "250",
                "221"
            ]
        );
        assert!(out.contains("250 2.0.0 Ok: queued as msg_1"), "{out}");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].0,
            "from=app%40contoso.test&to=a%40contoso.test&to=b%40contoso.test"
        );
        assert_eq!(got[0].1, b"Subject: one\r\n\r\n.leading dot\r\n");
        // A null sender leaves the sender to the server.
        assert_eq!(got[1].0, "to=a%40contoso.test");
    }

    /// Input that arrives a few bytes per read, as from a slow pipe.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(5);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Without brackets, in one read or a few bytes at a time (a command
    /// split across reads is read whole).
    #[test]
    fn envelope_addresses_without_angle_brackets_are_read() {
        let (a, b) = (
            format!("{}@{}", "a", "contoso.test"),
            format!("{}@{}", "b", "contoso.test"),
        );
        let input = format!("HELO x\r\nMAIL FROM:{a}\r\nRCPT TO: {b}\r\nDATA\r\nSubject: s\r\n\r\nx\r\n.\r\nQUIT\r\n");
        for (out, got, clean) in [
            talk(input.as_bytes(), queued(), 1000),
            talk_from(&mut Trickle(input.as_bytes()), queued(), 1000),
        ] {
            assert!(clean, "{out}");
            assert_eq!(
                codes(&out),
                ["220", "250", "250", "250", "354", "250", "221"],
                "{out}"
            );
            assert_eq!(got[0].0, "from=a%40contoso.test&to=b%40contoso.test");
        }
    }

    /// Each refused address is told why, in the page's words, whether
    /// smtp-proto refused it (`ann..lee@`, an address literal) or not.
    #[test]
    fn a_malformed_address_is_refused_naming_what_is_wrong() {
        let at = |local: &str, domain: &str| format!("{local}@{domain}");
        let good = at("a", "contoso.test");
        let (spaced, dotted) = (at("a b", "contoso.test"), at("a.", "contoso.test"));
        let (doubled, literal, underscore) = (
            at("ann..lee", "contoso.test"),
            at("ann", "[10.0.0.1]"),
            at("ann", "exa_mple.org"),
        );
        let input = format!(
            "EHLO x\r\nMAIL FROM:<{spaced}>\r\nMAIL FROM:<{dotted}>\r\nMAIL FROM:<{good}>\r\n\
             RCPT TO:<{doubled}>\r\nRCPT TO:<{literal}>\r\nRCPT TO:<{underscore}>\r\nRCPT TO:<{good}>\r\n\
             DATA\r\nSubject: s\r\n\r\nx\r\n.\r\nQUIT\r\n"
        );
        let (out, got, clean) = talk(input.as_bytes(), queued(), 1000);
        assert!(clean, "{out}");
        let replies: Vec<&str> = out.lines().collect();
        let says = [
            "501 5.1.7 The sender must not contain spaces",
            "501 5.1.7 The sender has a dot at the start or end of the name",
            "501 5.1.3 The recipient has a dot at the start or end of the name",
            "501 5.1.3 The recipient has an IP address after the @",
            "501 5.1.3 The recipient has \"_\" in the domain",
        ];
        for says in says {
            assert!(replies.iter().any(|r| r.starts_with(says)), "{says}: {out}");
        }
        assert_eq!(got.len(), 1, "{out}");
        assert_eq!(got[0].0, "from=a%40contoso.test&to=a%40contoso.test");
    }

    #[test]
    fn out_of_order_and_unknown_commands_are_refused_and_nothing_is_sent() {
        let to = format!("{}@{}", "a", "contoso.test");
        let input = format!(
            "RCPT TO:<{to}>\r\nDATA\r\nMAIL FROM:<>\r\nDATA\r\nMAIL FROM:<>\r\nSTARTTLS\r\nAUTH PLAIN AAAA\r\nBOGUS\r\nRSET\r\nMAIL FROM:<> BODY=BINARYMIME\r\nMAIL FROM:<> SIZE=999999\r\nRSET\r\nNOOP\r\nQUIT\r\n"
        );
        let (out, got, clean) = talk(input.as_bytes(), queued(), 1000);
        assert!(clean);
        assert!(got.is_empty());
        assert_eq!(
            codes(&out),
            [
                "220", "503", "503", "250", "554", "503", "502", "502", "500", "250", "555", "552",
                "250", "250", "221"
            ],
            "{out}"
        );
        assert!(out.contains("STARTTLS is not offered"), "{out}");
    }

    #[test]
    fn the_servers_answer_is_the_reply_to_the_end_of_data() {
        let to = format!("{}@{}", "a", "contoso.test");
        let input = format!("HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<{to}>\r\nDATA\r\nSubject: s\r\n\r\nx\r\n.\r\nQUIT\r\n");
        let cases = [
            (
                Answer::Unreachable("cannot reach Mailroom".into()),
                "451 4.3.0 cannot reach Mailroom",
            ),
            (
                Answer::Http(503, r#"{"message":"busy"}"#.into()),
                "451 4.3.0 the server is busy",
            ),
            (
                Answer::Http(429, r#"{"message":"limit"}"#.into()),
                "451 4.3.0",
            ),
            (
                Answer::Http(401, r#"{"message":"bad key"}"#.into()),
                "554 5.7.8 the app key was refused: bad key",
            ),
            (
                Answer::Http(413, r#"{"message":"too big"}"#.into()),
                "552 5.3.4",
            ),
            (
                Answer::Http(
                    422,
                    r#"{"message":"m","errors":{"from":["not yours"]}}"#.into(),
                ),
                "550 5.7.1 m from: not yours",
            ),
            (
                Answer::Http(
                    422,
                    r#"{"message":"m","errors":{"headers":["two Date\r\nheaders"]}}"#.into(),
                ),
                "554 5.6.0 m headers: two Date??headers",
            ),
        ];
        for (answer, want) in cases {
            let (out, got, _) = talk(input.as_bytes(), answer, 1000);
            assert_eq!(got.len(), 1);
            assert!(out.contains(want), "{want}: {out}");
            assert!(!out.contains("queued as"), "{out}");
        }
    }

    #[test]
    fn a_message_past_the_limit_is_read_to_its_end_and_refused() {
        let to = format!("{}@{}", "a", "contoso.test");
        let big = "x".repeat(5000);
        let input = format!(
            "EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<{to}>\r\nDATA\r\n{big}\r\n{big}\r\n.\r\nNOOP\r\nQUIT\r\n"
        );
        let (out, got, clean) = talk(input.as_bytes(), queued(), 4096);
        assert!(clean);
        assert!(got.is_empty());
        assert!(
            out.contains("552 5.3.4 Message too big: the limit is 4096 bytes"),
            "{out}"
        );
        // The session goes on after it.
        assert!(
            out.ends_with("250 2.0.0 Ok\r\n221 2.0.0 localhost Bye\r\n"),
            "{out}"
        );
    }

    #[test]
    fn input_ending_inside_a_message_sends_nothing_and_is_not_clean() {
        let to = format!("{}@{}", "a", "contoso.test");
        let input =
            format!("EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<{to}>\r\nDATA\r\nSubject: s\r\n\r\nhalf");
        let (_, got, clean) = talk(input.as_bytes(), queued(), 1000);
        assert!(got.is_empty());
        assert!(!clean);
        // Input that ends between messages is clean.
        let (_, _, clean) = talk(b"EHLO x\r\nNOOP\r\n", queued(), 1000);
        assert!(clean);
    }

    #[test]
    fn an_endless_line_and_binary_garbage_get_errors_and_the_session_goes_on() {
        let mut input = "X".repeat(100_000).into_bytes();
        input.extend_from_slice(b"\r\n\x00\xff\x1b[2J\r\nNOOP\r\nQUIT\r\n");
        let (out, got, clean) = talk(&input, queued(), 1000);
        assert!(clean && got.is_empty());
        assert!(out.contains("500 5.5.2 Line too long"), "{out}");
        assert!(
            out.ends_with("250 2.0.0 Ok\r\n221 2.0.0 localhost Bye\r\n"),
            "{out}"
        );
        // One line of reply per problem, never the input echoed back.
        assert!(out.len() < 1_000, "{out}");
    }

    #[test]
    fn without_a_key_the_greeting_says_why_and_only_quit_is_taken() {
        let mut submit = |_: &str, _: Vec<u8>| -> Answer { unreachable!("nothing is submitted") };
        let mut out = Vec::new();
        let why = "no app key: set MAILROOM_APP_KEY".to_string();
        Session::new(1000, Some(why), &mut submit)
            .serve(&mut &b"EHLO x\r\nMAIL FROM:<>\r\nQUIT\r\n"[..], &mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("554 localhost Mailroom sendmail cannot send: no app key"),
            "{out}"
        );
        assert_eq!(codes(&out), ["554", "503", "503", "221"]);
    }

    #[test]
    fn too_many_recipients_are_refused_past_the_limit_and_repeats_count_once() {
        let mut input = String::from("EHLO x\r\nMAIL FROM:<>\r\n");
        for i in 0..=MAX_RECIPIENTS {
            input.push_str(&format!("RCPT TO:<r{i}@contoso.test>\r\n"));
        }
        input.push_str("RCPT TO:<R0@contoso.test>\r\nQUIT\r\n");
        let (out, _, _) = talk(input.as_bytes(), queued(), 1000);
        assert_eq!(
            out.matches("452 4.5.3 Too many recipients").count(),
            1,
            "{out}"
        );
        assert!(
            out.ends_with("250 2.1.5 Ok\r\n221 2.0.0 localhost Bye\r\n"),
            "{out}"
        );
    }
}
