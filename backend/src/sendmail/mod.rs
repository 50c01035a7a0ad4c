//! `mailroom sendmail` (docs/API.md §1), also run when the binary is called
//! as `sendmail`: reads one message on stdin and submits it to a running
//! Mailroom over `POST /api/messages` as `message/rfc822`, with the envelope
//! in the query, so cron, PHP `mail()` and scripts work unchanged.
//!
//! The command line follows sendmail's own (single-dash options, values
//! attached or separate), which is why it is read here rather than by clap.
//! With `-bs` it speaks SMTP on stdin and stdout instead ([`smtp`]).

pub mod smtp;

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes from sysexits.h, as the contract lists them.
pub mod exit {
    /// Queued.
    pub const OK: u8 = 0;
    /// A usage error.
    pub const USAGE: u8 = 64;
    /// The message is malformed.
    pub const DATAERR: u8 = 65;
    /// The server refused it.
    pub const UNAVAILABLE: u8 = 69;
    /// The server is unreachable or busy: try again.
    pub const TEMPFAIL: u8 = 75;
    /// The key is missing or wrong.
    pub const NOPERM: u8 = 77;
}

/// Where the key lives when `MAILROOM_APP_KEY` is not set.
pub const KEY_FILE: &str = "/etc/mailroom/app-key";
/// The server when `MAILROOM_URL` is not set.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `-t`: recipients from To, Cc and Bcc as well.
    pub from_headers: bool,
    /// `-i` or `-oi`: a lone dot does not end the message.
    pub ignore_dots: bool,
    /// `-f` (or `-r`): the envelope sender.
    pub sender: Option<String>,
    /// `-v`: say what happened.
    pub verbose: bool,
    /// The recipient arguments.
    pub recipients: Vec<String>,
    /// `-bs`: SMTP on stdin and stdout, each message's envelope from its
    /// MAIL and RCPT commands.
    pub smtp: bool,
}

/// Options that take a value, attached (`-fX`) or as the next argument.
const WITH_VALUE: &[char] = &['f', 'r', 'F', 'N', 'R', 'V', 'X', 'L', 'h', 'C', 'O', 'p'];

/// Reads sendmail's command line (without the program name).
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            o.recipients.extend(args[i..].iter().cloned());
            break;
        }
        let Some(flag) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            o.recipients.push(a.clone());
            continue;
        };
        let mut chars = flag.chars();
        let c = chars.next().unwrap_or_default();
        let rest: String = chars.collect();
        match c {
            't' if rest.is_empty() => o.from_headers = true,
            'i' if rest.is_empty() => o.ignore_dots = true,
            'v' if rest.is_empty() => o.verbose = true,
            // -oi is the one -o option that matters; -oem, -odi, -oQ… are ignored.
            'o' => {
                if rest == "i" {
                    o.ignore_dots = true
                }
            }
            // -B8BITMIME, -B7BIT: the server takes either.
            'B' => {
                if rest.is_empty() {
                    i += 1;
                }
            }
            // -bm (deliver mail) is the default; -bs speaks SMTP on stdin and
            // stdout; other modes are not offered.
            'b' => match rest.as_str() {
                "m" => o.smtp = false,
                "s" => o.smtp = true,
                _ => {
                    return Err(format!(
                        "-b{rest} is not supported: mailroom sendmail submits a message read on stdin (-bm) or sent with SMTP on stdin and stdout (-bs)"
                    ))
                }
            },
            'G' | 'U' | 'n' | 'm' | 'e' | 's' | 'x' | 'A' => {}
            // `-q` alone runs the queue once, `-q15m` every 15 minutes: as
            // one option taking a value, bare `-q` (the usual cron line) was
            // told "-q needs a value", or took the next argument as one.
            'q' => {
                return Err("-q (run the queue) is not supported: Mailroom's server delivers its own queue".into())
            }
            c if WITH_VALUE.contains(&c) => {
                let value = if rest.is_empty() {
                    let v = args
                        .get(i)
                        .cloned()
                        .ok_or_else(|| format!("-{c} needs a value"))?;
                    i += 1;
                    v
                } else {
                    rest
                };
                match c {
                    'f' | 'r' => {
                        let value = value.trim();
                        // `<>` is the null sender; `Name <a@b>` is a@b.
                        o.sender = Some(if value == "<>" {
                            String::new()
                        } else {
                            addresses_in(value).swap_remove(0)
                        });
                    }
                    _ => {}
                }
            }
            _ => return Err(format!("unknown option -{flag}")),
        }
    }
    if o.sender.as_deref() == Some("") || o.sender.as_deref() == Some("<>") {
        o.sender = None;
    }
    Ok(o)
}

/// The largest message read from stdin: `MAILROOM_MAX_MESSAGE_SIZE` (the
/// server's `--max-message-size`) read as the server reads it, else its
/// default of 25 MiB (the server, which refuses a value it cannot take at
/// start, still has the last word).
pub fn max_message_size() -> u64 {
    std::env::var("MAILROOM_MAX_MESSAGE_SIZE")
        .ok()
        .and_then(|v| crate::config::parse_message_size(&v).ok())
        .unwrap_or(26_214_400)
}

/// Reads the message: to the end, or without `-i` to a line holding only a
/// dot; never more than `max` bytes (an error of kind `FileTooLarge` then).
pub fn read_message(
    input: &mut impl Read,
    ignore_dots: bool,
    max: u64,
) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    input.take(max.saturating_add(1)).read_to_end(&mut all)?;
    if all.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "the message is larger than the limit of {max} bytes (MAILROOM_MAX_MESSAGE_SIZE)"
            ),
        ));
    }
    if ignore_dots {
        return Ok(all);
    }
    let mut end = 0;
    for line in all.split_inclusive(|b| *b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare == b"." {
            break;
        }
        end += line.len();
    }
    all.truncate(end);
    Ok(all)
}

/// The message with a header block: a body alone (`echo "disk full" |
/// sendmail admin@…`) gets a Date header, as sendmail and Postfix give it
/// theirs; the server adds From and Message-ID as to any message without.
pub fn with_headers(raw: Vec<u8>) -> Vec<u8> {
    if crate::intake::has_headers(&raw) {
        return raw;
    }
    let mut out = format!("Date: {}\r\n", crate::intake::date_now()).into_bytes();
    if !raw.starts_with(b"\n") && !raw.starts_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&raw);
    out
}

/// The addresses of To, Cc and Bcc (for `-t`).
fn header_recipients(raw: &[u8]) -> Vec<String> {
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return Vec::new();
    };
    [parsed.to(), parsed.cc(), parsed.bcc()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter().filter_map(|x| x.address().map(str::to_string)))
        .collect()
}

/// The addresses in one command-line argument, read as sendmail and
/// Postfix read them: `a@b`, `<a@b>`, `Name <a@b>` (as `mail -r` passes
/// it) or several separated by commas. An argument that holds none, or a
/// line break, is kept as it is, for the server to refuse with its reason.
pub fn addresses_in(arg: &str) -> Vec<String> {
    let arg = arg.trim();
    if !arg.contains(['<', ',', '(', '"']) || arg.contains(['\r', '\n']) {
        return vec![arg.to_string()];
    }
    let header = format!("To: {arg}\r\n\r\n");
    let found: Vec<String> = mail_parser::MessageParser::default()
        .parse_headers(header.as_bytes())
        .and_then(|m| {
            m.to().map(|a| {
                a.iter()
                    .filter_map(|x| x.address().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default();
    if found.is_empty() {
        vec![arg.to_string()]
    } else {
        found
    }
}

/// The query of §7: `from=` and `to=` repeated.
pub fn envelope_query(o: &Options, raw: &[u8]) -> Result<String, String> {
    let mut to: Vec<String> = o.recipients.iter().flat_map(|r| addresses_in(r)).collect();
    if o.from_headers {
        to.extend(header_recipients(raw));
    }
    let mut seen = Vec::new();
    to.retain(|a| {
        let lower = a.trim().to_ascii_lowercase();
        let new = !lower.is_empty() && !seen.contains(&lower);
        seen.push(lower);
        new
    });
    if to.is_empty() {
        return Err(
            "no recipients: give them as arguments, or use -t to read To, Cc and Bcc".into(),
        );
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(from) = &o.sender {
        q.append_pair("from", from);
    }
    for t in &to {
        q.append_pair("to", t.trim());
    }
    Ok(q.finish())
}

/// A value as pasted into an environment variable or a file: without
/// characters that show as nothing (Notepad's byte order mark), without the
/// environment file's `NAME=`, and out of its quotes (Docker's `--env-file`
/// keeps them). Neither a key nor Mailroom's address holds a quote.
fn as_pasted(value: &str, line_start: &str) -> String {
    let value = mailroom_shared::parse::without_invisible(value);
    let value = value.trim();
    let value = value.strip_prefix(line_start).unwrap_or(value).trim();
    crate::auth::unquoted(value).trim().to_string()
}

/// The app key: `MAILROOM_APP_KEY`, else [`KEY_FILE`]; without the
/// characters that show as nothing, such as the byte order mark Notepad
/// writes first (a key holds none; with one it was refused, exit 77).
fn app_key() -> Result<String, String> {
    // As pasted: with a character that shows as nothing (Notepad's byte
    // order mark), in quotes (Docker's --env-file keeps them), or as the
    // environment file's line. No key holds a quote or an `=`.
    let visible = |k: &str| as_pasted(k, "MAILROOM_APP_KEY=");
    if let Ok(k) = std::env::var("MAILROOM_APP_KEY") {
        if !visible(&k).is_empty() {
            return Ok(visible(&k));
        }
    }
    match std::fs::read_to_string(KEY_FILE) {
        Ok(k) if !visible(&k).is_empty() => Ok(visible(&k)),
        Ok(_) => Err(format!(
            "{KEY_FILE} is empty: put the app's key (mr_…) in it"
        )),
        // PHP and cron jobs run as www-data or their own user, not root.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "{KEY_FILE} is there but this user may not read it ({e}): give the user that runs sendmail (PHP's www-data, a cron job's owner) read access, such as `chgrp www-data {KEY_FILE} && chmod 640 {KEY_FILE}`, or set MAILROOM_APP_KEY for it"
        )),
        Err(e) => Err(format!(
            "no app key: set MAILROOM_APP_KEY, or put the key in {KEY_FILE} ({e})"
        )),
    }
}

/// The server's `message` and field errors, on one line.
fn server_says(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.trim().chars().take(300).collect();
    };
    let mut text = v["message"].as_str().unwrap_or_default().to_string();
    if let Some(errors) = v["errors"].as_object() {
        for (field, list) in errors {
            for m in list.as_array().into_iter().flatten() {
                text.push_str(&format!(" {field}: {}", m.as_str().unwrap_or_default()));
            }
        }
    }
    text
}

/// Maps the server's answer to an exit code and a message.
pub fn outcome(status: u16, body: &str) -> (u8, String) {
    let says = server_says(body);
    match status {
        // The message's id (the answer has no `message`).
        200..=299 => (exit::OK, queued_id(body).unwrap_or(says)),
        401 => (exit::NOPERM, format!("the app key was refused: {says}")),
        400 => (exit::DATAERR, says),
        // Refused for who sends it: 69; for what the message is: 65.
        422 => {
            let about_from = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["errors"].as_object().map(|e| e.contains_key("from")))
                .unwrap_or(false);
            (
                if about_from {
                    exit::UNAVAILABLE
                } else {
                    exit::DATAERR
                },
                says,
            )
        }
        408 | 429 | 500..=599 => (
            exit::TEMPFAIL,
            format!("the server is busy or failing ({status}): {says}; try again"),
        ),
        _ => (
            exit::UNAVAILABLE,
            format!("the server refused the message ({status}): {says}"),
        ),
    }
}

/// What the server answered a submission, or why it could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Its HTTP status and body.
    Http(u16, String),
    /// It could not be reached: why, and what to do.
    Unreachable(String),
}

impl Answer {
    /// The exit code and message of `mailroom sendmail` for this answer.
    pub fn outcome(&self) -> (u8, String) {
        match self {
            Answer::Http(status, body) => outcome(*status, body),
            Answer::Unreachable(text) => (exit::TEMPFAIL, text.clone()),
        }
    }
}

/// Submits one message to the server at `url`: `POST /api/messages?{query}`.
pub async fn submit(url: &str, key: &str, query: &str, raw: Vec<u8>) -> Answer {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Answer::Unreachable(format!("cannot start the HTTP client: {e}")),
    };
    if let Err(why) = check_url(url) {
        return Answer::Unreachable(why);
    }
    let endpoint = format!("{}/api/messages?{query}", url.trim_end_matches('/'));
    let sent = client
        .post(&endpoint)
        .bearer_auth(key)
        .header(reqwest::header::CONTENT_TYPE, "message/rfc822")
        .body(raw)
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let (body, _) = crate::upstream::read_capped(r, crate::upstream::MAX_ANSWER_BYTES)
                .await
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&body).into_owned();
            if status == 404 || status == 405 {
                return Answer::Unreachable(not_found(url, status));
            }
            if (200..300).contains(&status) && queued_id(&body).is_none() {
                return Answer::Unreachable(format!(
                    "{url} answered {status} but not as Mailroom does (no message id), so the message is not known to be queued: MAILROOM_URL should be the address of Mailroom's page, like {DEFAULT_URL}"
                ));
            }
            Answer::Http(status, body)
        }
        Err(e) => {
            let chain = crate::upstream::entra::error_chain(&e);
            Answer::Unreachable(if crate::upstream::untrusted_certificate(&chain) {
                format!(
                    "{url} answered, but its TLS certificate is not trusted here ({chain}). If it comes from your organisation's own CA, point SSL_CERT_FILE at that CA's PEM file (SSL_CERT_FILE=/etc/ssl/certs/contoso-ca.pem mailroom sendmail …) or add the CA to this machine's trust store; if the URL's host is not a name in the certificate, use one that is"
                )
            } else {
                format!("cannot reach Mailroom at {url}: {chain}; is `mailroom serve` running? Set MAILROOM_URL if it runs elsewhere")
            })
        }
    }
}

/// Refuses a server address that is not an `http://` or `https://` URL of a
/// host, before anything is sent: reqwest called `127.0.0.1:8080` a
/// "builder error".
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).ok();
    let usable = parsed.as_ref().is_some_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.query().is_none()
            && u.fragment().is_none()
    });
    if usable {
        return Ok(());
    }
    Err(format!(
        "MAILROOM_URL “{}” is not the http:// or https:// address of Mailroom's page; set it like {DEFAULT_URL}",
        crate::error::short(url)
    ))
}

/// The id of the message the server queued: Mailroom's answer to a
/// submission, `{"id": "msg_…", "status": …}`. Anything else with a 2xx
/// status (a proxy's page, a web server answering every path) queued
/// nothing, so it is never taken for success.
pub fn queued_id(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["id"]
        .as_str()
        .filter(|id| id.starts_with("msg_"))
        .map(str::to_string)
}

/// Why nothing at `url`'s `/api/messages` takes mail (404, or 405 from
/// another page): Mailroom always has that route, so the address is not
/// Mailroom's. Not the server refusing the message: once MAILROOM_URL is
/// right, the same message goes, so the caller is told to try again (75),
/// never that it was refused.
fn not_found(url: &str, status: u16) -> String {
    let base = url.trim_end_matches('/');
    // The address without a trailing /api or /api/messages, from the
    // parsed URL (its path as the request used it).
    let without = reqwest::Url::parse(base).ok().and_then(|mut u| {
        let path = u.path().trim_end_matches('/').to_string();
        let end = ["/api/messages", "/api"]
            .into_iter()
            .find(|e| path.ends_with(e))?;
        u.set_path(&path[..path.len() - end.len()]);
        Some((end, u.as_str().trim_end_matches('/').to_string()))
    });
    let hint = match without {
        Some((end, page)) => format!(
            "MAILROOM_URL ends in {end}: set it to the address of Mailroom's page, {page}, and sendmail adds /api/messages itself"
        ),
        None => format!(
            "MAILROOM_URL should be the address of Mailroom's page (the one the settings page opens at), like {DEFAULT_URL}"
        ),
    };
    format!("nothing at {base}/api/messages takes mail ({status}): {hint}")
}

/// The server's address: `MAILROOM_URL` (as pasted, [`as_pasted`]), else
/// [`DEFAULT_URL`].
fn server_url() -> String {
    std::env::var("MAILROOM_URL")
        .ok()
        .map(|u| as_pasted(&u, "MAILROOM_URL="))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.into())
}

/// A runtime for the submissions of one run.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs `mailroom sendmail ARGS` (the program name not included).
pub fn run(args: &[String]) -> ExitCode {
    let fail = |code: u8, text: &str| {
        eprintln!("sendmail: {text}");
        ExitCode::from(code)
    };
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            return fail(
                exit::USAGE,
                &format!(
                    "{e}\nusage: mailroom sendmail [-t] [-i] [-f FROM] [RECIPIENT...] < message\n       mailroom sendmail -bs   (SMTP on stdin and stdout)"
                ),
            )
        }
    };
    if options.smtp {
        return smtp::run();
    }
    let raw = match read_message(
        &mut std::io::stdin().lock(),
        options.ignore_dots,
        max_message_size(),
    ) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            return fail(exit::UNAVAILABLE, &e.to_string())
        }
        Err(e) => {
            return fail(
                exit::DATAERR,
                &format!("cannot read the message on stdin: {e}"),
            )
        }
    };
    if raw.iter().all(u8::is_ascii_whitespace) {
        return fail(exit::DATAERR, "the message on stdin is empty");
    }
    let raw = with_headers(raw);
    let query = match envelope_query(&options, &raw) {
        Ok(q) => q,
        Err(e) => return fail(exit::USAGE, &e),
    };
    let key = match app_key() {
        Ok(k) => k,
        Err(e) => return fail(exit::NOPERM, &e),
    };
    let url = server_url();
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(exit::TEMPFAIL, &format!("cannot start: {e}")),
    };
    let (code, text) = runtime.block_on(submit(&url, &key, &query, raw)).outcome();
    if code == exit::OK {
        if options.verbose {
            eprintln!("sendmail: queued by Mailroom ({text})");
        }
        return ExitCode::SUCCESS;
    }
    fail(code, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_404_names_the_page_address_to_give() {
        for (url, page) in [
            ("http://127.0.0.1:8080/api", "http://127.0.0.1:8080"),
            (
                "http://127.0.0.1:8080/api/messages/",
                "http://127.0.0.1:8080",
            ),
            (
                "https://mail.contoso.com/mailroom/api",
                "https://mail.contoso.com/mailroom",
            ),
            // The path as the URL reads it, never a cut inside a character.
            (
                "http://h\u{e9}.example/api/\u{e9}/..",
                "http://xn--h-bga.example",
            ),
        ] {
            let said = not_found(url, 404);
            assert!(
                said.contains(&format!(
                    "set it to the address of Mailroom's page, {page}, and"
                )),
                "{url}: {said}"
            );
        }
        let said = not_found("http://127.0.0.1:8080/other", 405);
        assert!(
            said.contains("(405): MAILROOM_URL should be the address of Mailroom's page"),
            "{said}"
        );
    }

    #[test]
    fn the_options_cron_and_php_pass_are_understood_or_ignored() {
        let o = parse(&args(&[
            "-t",
            "-i",
            "-f",
            "cron@contoso.test",
            "-FCron Daemon",
            "-oem",
            "-odi",
            "-B8BITMIME",
            "-v",
            "admin@contoso.test",
        ]))
        .unwrap();
        assert!(o.from_headers && o.ignore_dots && o.verbose);
        assert_eq!(o.sender.as_deref(), Some("cron@contoso.test"));
        assert_eq!(o.recipients, vec!["admin@contoso.test".to_string()]);
        let o = parse(&args(&[
            "-oi",
            "-fphp@contoso.test",
            "--",
            "-odd@contoso.test",
        ]))
        .unwrap();
        assert!(o.ignore_dots);
        assert_eq!(o.sender.as_deref(), Some("php@contoso.test"));
        assert_eq!(o.recipients, vec!["-odd@contoso.test".to_string()]);
        assert!(parse(&args(&["-f"]))
            .unwrap_err()
            .contains("-f needs a value"));
        assert!(parse(&args(&["-bs", "-i"])).unwrap().smtp);
        assert!(!parse(&args(&["-bs", "-bm"])).unwrap().smtp);
        assert!(parse(&args(&["-bp"]))
            .unwrap_err()
            .contains("-bp is not supported"));
        for queue in [&["-q"][..], &["-q15m"], &["-q", "-v"]] {
            assert!(
                parse(&args(queue))
                    .unwrap_err()
                    .starts_with("-q (run the queue) is not supported"),
                "{queue:?}"
            );
        }
        assert!(parse(&args(&["-Z"]))
            .unwrap_err()
            .contains("unknown option -Z"));
    }

    #[test]
    fn a_lone_dot_ends_the_message_unless_i() {
        let text = b"Subject: x\r\n\r\nline\r\n.\r\nafter\r\n";
        assert_eq!(
            read_message(&mut &text[..], false, 1000).unwrap(),
            b"Subject: x\r\n\r\nline\r\n"
        );
        assert_eq!(
            read_message(&mut &text[..], true, 1000).unwrap(),
            text.to_vec()
        );
        let lf = b"Subject: x\n\nline\n.\n";
        assert_eq!(
            read_message(&mut &lf[..], false, 1000).unwrap(),
            b"Subject: x\n\nline\n"
        );
    }

    #[test]
    fn stdin_is_read_only_up_to_the_limit() {
        // An endless stdin: the read stops one byte past the limit.
        let mut endless = std::io::repeat(b'x');
        let e = read_message(&mut endless, true, 4096).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("4096 bytes"));
        let exact = vec![b'x'; 4096];
        assert_eq!(
            read_message(&mut &exact[..], true, 4096).unwrap().len(),
            4096
        );
    }

    #[test]
    fn recipients_come_from_arguments_and_with_t_the_headers() {
        let raw = b"To: a@contoso.test\r\nCc: b@contoso.test\r\nBcc: c@contoso.test\r\nSubject: s\r\n\r\nx\r\n";
        let o = Options {
            from_headers: true,
            recipients: vec!["d@contoso.test".into()],
            ..Default::default()
        };
        let q = envelope_query(&o, raw).unwrap();
        assert_eq!(
            q,
            "to=d%40contoso.test&to=a%40contoso.test&to=b%40contoso.test&to=c%40contoso.test"
        );
        let o = Options::default();
        assert!(envelope_query(&o, raw)
            .unwrap_err()
            .contains("no recipients"));
    }

    #[test]
    fn addresses_are_read_from_angle_brackets_names_and_lists() {
        let at = |l: &str| format!("{l}@{}", "contoso.test");
        let (a, b) = (at("a"), at("b"));
        assert_eq!(addresses_in(&a), vec![a.clone()]);
        assert_eq!(addresses_in(&format!(" <{a}> ")), vec![a.clone()]);
        assert_eq!(
            addresses_in(&format!("Backup Server <{a}>")),
            vec![a.clone()]
        );
        assert_eq!(
            addresses_in(&format!("{a}, \"Ops, Team\" <{b}>")),
            vec![a.clone(), b.clone()]
        );
        // Nothing found, or a line break: kept for the server to refuse.
        assert_eq!(
            addresses_in("not an address"),
            vec!["not an address".to_string()]
        );
        assert_eq!(
            addresses_in("<a@b>\r\nBcc: x@y"),
            vec!["<a@b>\r\nBcc: x@y".to_string()]
        );
        let o = parse(&args(&[
            "-f",
            &format!("Cron Daemon <{a}>"),
            &format!("<{b}>"),
        ]))
        .unwrap();
        assert_eq!(o.sender.as_deref(), Some(a.as_str()));
        assert_eq!(
            envelope_query(&o, b"").unwrap(),
            "from=a%40contoso.test&to=b%40contoso.test"
        );
        assert_eq!(parse(&args(&["-f<>", &b])).unwrap().sender, None);
    }

    #[test]
    fn answers_map_to_sysexits() {
        assert_eq!(
            outcome(202, r#"{"id":"msg_1","status":"queued"}"#),
            (0, "msg_1".to_string())
        );
        assert_eq!(outcome(401, r#"{"message":"bad key"}"#).0, 77);
        assert_eq!(
            outcome(
                422,
                r#"{"message":"m","errors":{"message":["not RFC 5322"]}}"#
            )
            .0,
            65
        );
        assert_eq!(
            outcome(422, r#"{"message":"m","errors":{"from":["not allowed"]}}"#).0,
            69
        );
        assert_eq!(outcome(413, "{}").0, 69);
        assert_eq!(outcome(503, "{}").0, 75);
        assert_eq!(outcome(429, "{}").0, 75);
        // A body the server did not get in time: the link, not the message.
        assert_eq!(outcome(408, "{}").0, 75);
    }
}
