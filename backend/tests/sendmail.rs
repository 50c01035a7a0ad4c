//! `mailroom sendmail` end to end: the real binary reads a message on stdin
//! and submits it to a real server, which delivers it to the fake upstream.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use mailroom_fakes::addr;
use tokio::io::AsyncWriteExt;

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `program args` with `env`, the message on stdin.
async fn run(program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Ran {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_remove("MAILROOM_APP_KEY")
        .env_remove("MAILROOM_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("sendmail ends")
        .unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The one message the fake upstream got, and its recipients sorted.
async fn the_message(rig: &mailroom_fakes::Loopback) -> (mailroom_fakes::Received, Vec<String>) {
    wait_received(rig, 1).await;
    let m = rig.smtp.messages().remove(0);
    let mut rcpts = m.rcpt_to.clone();
    rcpts.sort();
    (m, rcpts)
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom"))
}

#[tokio::test]
async fn dash_t_sends_to_to_cc_and_bcc_and_the_bcc_header_is_gone() {
    let (rig, server, key) = sending_rig().await;
    let (to, bcc) = (addr("ops", "example.org"), addr("audit", "example.org"));
    // Bare LF line ends, as scripts write them.
    let message = format!(
        "From: {}\nTo: {to}\nBcc: {bcc}\nSubject: nightly backup\n\nBackup finished.\n",
        mailer()
    );
    let ran = run(
        binary(),
        &["sendmail", "-t", "-i", "-v"],
        &[("MAILROOM_URL", &server.url), ("MAILROOM_APP_KEY", &key)],
        &message,
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // -v names the message's id, which Activity finds it by (it said
    // "queued by Mailroom ()").
    assert!(
        ran.stderr.starts_with("sendmail: queued by Mailroom (msg_"),
        "{}",
        ran.stderr
    );
    let (m, got) = the_message(&rig).await;
    assert_eq!(got, vec![bcc.clone(), to.clone()]);
    assert!(!m.data.contains("Bcc:"), "{}", m.data);
    assert!(!m.data.contains(&bcc), "{}", m.data);
    assert!(
        m.data.contains("Subject: nightly backup\r\n"),
        "CRLF: {:?}",
        m.data
    );
    assert!(m.data.contains("Message-ID:") && m.data.contains("Date:"));
}

#[tokio::test]
async fn called_as_sendmail_with_arguments_like_cron_and_php_mail() {
    let (rig, server, key) = sending_rig().await;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("sendmail");
    std::os::unix::fs::symlink(binary(), &link).unwrap();
    let to = addr("admin", "example.org");
    // No From header: it comes from -f. Without -i, a lone dot ends the message.
    let message = "Subject: cron output\n\nline one\n.\nnot part of it\n";
    let from = mailer();
    let ran = run(
        &link,
        &["-oi", "-oem", "-f", &from, "-FCron Daemon", &to],
        &[("MAILROOM_URL", &server.url), ("MAILROOM_APP_KEY", &key)],
        message,
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // A key as Notepad saves it (a byte order mark, a CRLF) is the key: it
    // was sent with the mark and refused, exit 77 for a right key.
    // So is one in quotes, as Docker's --env-file passes them on, or the
    // environment file's whole line; and the server's address alike (it
    // exited 75, "not the http:// or https:// address").
    let url = &server.url;
    for (pasted, address) in [
        (format!("\u{FEFF}{key}\r\n"), url.clone()),
        (format!("\"{key}\""), format!("\"{url}\"")),
        (
            format!("MAILROOM_APP_KEY='{key}'\n"),
            format!("MAILROOM_URL='{url}'\n"),
        ),
    ] {
        let ran = run(
            &link,
            &["-f", &from, &to],
            &[("MAILROOM_URL", &address), ("MAILROOM_APP_KEY", &pasted)],
            message,
        )
        .await;
        assert_eq!(ran.code, Some(0), "{pasted:?}, {address:?}: {}", ran.stderr);
    }
    wait_received(&rig, 4).await;
    let got = rig.smtp.messages();
    let with_i = got.iter().find(|m| m.data.contains("not part of it"));
    let without_i = got.iter().find(|m| !m.data.contains("not part of it"));
    assert!(with_i.is_some() && without_i.is_some(), "{got:?}");
    for m in &got {
        assert_eq!(m.rcpt_to, vec![to.clone()]);
        assert!(m.data.contains(&format!("From: {from}")), "{}", m.data);
    }
}

#[tokio::test]
async fn a_body_without_headers_is_sent_as_sendmail_sends_it() {
    // `echo "disk full" | sendmail admin@…`: Postfix and sendmail take the
    // whole input as the body and add the headers; it was exit 65, "not an
    // RFC 5322 message".
    let (rig, server, key) = sending_rig().await;
    let to = addr("admin", "example.org");
    for (n, body) in ["disk /var is 97% full\n", "\nafter an empty line\n"]
        .into_iter()
        .enumerate()
    {
        let ran = run(
            binary(),
            &["sendmail", &to],
            &[("MAILROOM_URL", &server.url), ("MAILROOM_APP_KEY", &key)],
            body,
        )
        .await;
        assert_eq!(ran.code, Some(0), "{body:?}: {}", ran.stderr);
        wait_received(&rig, n + 1).await;
        let m = rig.smtp.messages().remove(n);
        let (head, text) = m.data.split_once("\r\n\r\n").expect("a header block");
        assert!(
            head.contains("From: ") && head.contains("Date: "),
            "{}",
            m.data
        );
        assert_eq!(text.trim_end(), body.trim(), "{}", m.data);
        assert_eq!(m.rcpt_to, vec![to.clone()]);
    }
    // Header lines after an empty line are a mistake that is named, not
    // sent as text.
    let ran = run(
        binary(),
        &["sendmail", &to],
        &[("MAILROOM_URL", &server.url), ("MAILROOM_APP_KEY", &key)],
        &format!("\nFrom: {}\nSubject: x\n\nhi\n", mailer()),
    )
    .await;
    assert_eq!(ran.code, Some(65), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("starts with an empty line"),
        "{}",
        ran.stderr
    );
}

#[tokio::test]
async fn addresses_in_angle_brackets_with_names_or_in_lists_are_read_as_sendmail_reads_them() {
    // `mail -r "Backup Server <…>"` passes the name along; scripts write
    // `<…>` and comma-separated lists. Each was refused as not an address.
    let (rig, server, key) = sending_rig().await;
    let (a, b) = (addr("ops", "example.org"), addr("audit", "example.org"));
    let from = mailer();
    let ran = run(
        binary(),
        &[
            "sendmail",
            "-f",
            &format!("Backup Server <{from}>"),
            &format!("Ops <{a}>, <{b}>"),
        ],
        &[("MAILROOM_URL", &server.url), ("MAILROOM_APP_KEY", &key)],
        "Subject: nightly backup\n\nBackup finished.\n",
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let (m, got) = the_message(&rig).await;
    assert_eq!(got, vec![b.clone(), a.clone()]);
    assert_eq!(m.mail_from, from);
    assert!(m.data.contains(&format!("From: {from}")), "{}", m.data);
}

#[tokio::test]
async fn exit_codes_follow_sysexits() {
    let (_rig, server, key) = sending_rig().await;
    let to = addr("a", "example.org");
    let message = format!("From: {}\nSubject: s\n\nbody\n", mailer());
    // A wrong key: 77.
    let ran = run(
        binary(),
        &["sendmail", &to],
        &[
            ("MAILROOM_URL", &server.url),
            ("MAILROOM_APP_KEY", "mr_wrong"),
        ],
        &message,
    )
    .await;
    assert_eq!(ran.code, Some(77), "{}", ran.stderr);
    assert!(ran.stderr.contains("key"), "{}", ran.stderr);
    // A closed port, or something at MAILROOM_URL that answers 503 with a
    // body that never ends (sendmail reads 64 KB of it): 75, try again.
    let closed = common::ClosedPort::new();
    let endless = format!("http://{}", mailroom_fakes::serve_endless(503).await);
    let page = format!("http://{}", mailroom_fakes::serve_any_page().await);
    for (url, says) in [
        (
            format!("http://127.0.0.1:{}", closed.port),
            "cannot reach Mailroom".to_string(),
        ),
        (endless, "(503)".to_string()),
        // The page's address with a path: its 200 and HTML looked queued.
        (
            format!("{}/mailroom/", server.url),
            "takes mail (405): MAILROOM_URL should be the address of Mailroom's page".to_string(),
        ),
        (
            format!("{}/api", server.url),
            format!("takes mail (404): MAILROOM_URL ends in /api: set it to the address of Mailroom's page, {}, and sendmail adds /api/messages itself", server.url),
        ),
        // Another server answering 200 to everything.
        (
            page.clone(),
            format!("{page} answered 200 but not as Mailroom does (no message id), so the message is not known to be queued"),
        ),
        // reqwest called it a "builder error".
        (
            server.url.trim_start_matches("http://").to_string(),
            "is not the http:// or https:// address of Mailroom's page; set it like http://127.0.0.1:8080".to_string(),
        ),
    ] {
        let ran = run(
            binary(),
            &["sendmail", &to],
            &[("MAILROOM_URL", &url), ("MAILROOM_APP_KEY", &key)],
            &message,
        )
        .await;
        assert_eq!(ran.code, Some(75), "{url}: {}", ran.stderr);
        assert!(ran.stderr.contains(&says), "{url}: {}", ran.stderr);
        assert!(ran.stderr.len() < 2_000, "{}", ran.stderr);
    }
    // Mailroom behind an HTTPS proxy whose certificate comes from a CA this
    // machine does not trust: said so, with SSL_CERT_FILE (it was "cannot
    // reach Mailroom … is `mailroom serve` running?"); with SSL_CERT_FILE
    // at that CA, the same address is reached (its 404 is the proxy's).
    let pki = mailroom_fakes::TestPki::new("Contoso Private CA");
    let proxy = format!(
        "https://localhost:{}",
        mailroom_fakes::serve_tls_not_found(&pki).await.port()
    );
    let ca = tempfile::NamedTempFile::new().unwrap();
    pki.write_ca(ca.path());
    let ca_path = ca.path().display().to_string();
    for (extra, says) in [
        (None, "its TLS certificate is not trusted here"),
        (
            Some(("SSL_CERT_FILE", ca_path.as_str())),
            "takes mail (404)",
        ),
    ] {
        let mut env = vec![
            ("MAILROOM_URL", proxy.as_str()),
            ("MAILROOM_APP_KEY", key.as_str()),
        ];
        env.extend(extra);
        let ran = run(binary(), &["sendmail", &to], &env, &message).await;
        assert_eq!(ran.code, Some(75), "{extra:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(says), "{extra:?}: {}", ran.stderr);
        if extra.is_none() {
            assert!(ran.stderr.contains("SSL_CERT_FILE"), "{}", ran.stderr);
            assert!(
                !ran.stderr.contains("is `mailroom serve` running"),
                "{}",
                ran.stderr
            );
        }
    }
    // No recipients: 64.
    let ran = run(
        binary(),
        &["sendmail"],
        &[("MAILROOM_URL", &server.url), ("MAILROOM_APP_KEY", &key)],
        &message,
    )
    .await;
    assert_eq!(ran.code, Some(64), "{}", ran.stderr);
    // A From the app may not use: the server refuses it, 69, and says why.
    let stranger = format!(
        "From: {}\nSubject: s\n\nbody\n",
        addr("x", "fabrikam.example")
    );
    let ran = run(
        binary(),
        &["sendmail", &to],
        &[("MAILROOM_URL", &server.url), ("MAILROOM_APP_KEY", &key)],
        &stranger,
    )
    .await;
    assert_eq!(ran.code, Some(69), "{}", ran.stderr);
    assert!(ran.stderr.contains("allowed_from"), "{}", ran.stderr);
    // A malformed message: 65. (Words without headers are a body, which
    // sendmail sends: see a_body_without_headers_is_sent_as_sendmail_sends_it.)
    let ran = run(
        binary(),
        &["sendmail", &to],
        &[("MAILROOM_URL", &server.url), ("MAILROOM_APP_KEY", &key)],
        &format!("From: {}\nnot a header line\n\nbody\n", mailer()),
    )
    .await;
    assert_eq!(ran.code, Some(65), "{}", ran.stderr);
    assert_eq!(server.queue().await["counts"]["queued"], 0);
}

#[tokio::test]
async fn a_max_message_size_the_server_would_refuse_is_not_applied_to_stdin() {
    // `MAILROOM_MAX_MESSAGE_SIZE=0` (the server refuses it at start) made
    // sendmail refuse every message as too large.
    let (rig, server, key) = sending_rig().await;
    let to = addr("ops", "example.org");
    let message = format!("From: {}\nTo: {to}\nSubject: s\n\nbody\n", mailer());
    let ran = run(
        binary(),
        &["sendmail", "-t"],
        &[
            ("MAILROOM_URL", &server.url),
            ("MAILROOM_APP_KEY", &key),
            ("MAILROOM_MAX_MESSAGE_SIZE", "0"),
        ],
        &message,
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    wait_received(&rig, 1).await;
    assert_eq!(rig.smtp.messages()[0].rcpt_to, vec![to]);
}

/// `sendmail` in a directory of its own: the binary called by that name.
fn sendmail_link(dir: &Path) -> std::path::PathBuf {
    let link = dir.join("sendmail");
    std::os::unix::fs::symlink(binary(), &link).unwrap();
    link
}

/// Runs Debian's Symfony Mailer (backend/tests/fixtures/symfony-mailer.php)
/// with `args`: it runs `{sendmail} -bs` and speaks SMTP to it, as Symfony
/// and Laravel apps do by default.
async fn symfony_mailer(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/symfony-mailer.php");
    let php = which_php();
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&php, &all, env, "").await
}

fn which_php() -> std::path::PathBuf {
    let found = std::process::Command::new("php")
        .args([
            "-r",
            "require '/usr/share/php/Symfony/Component/Mailer/autoload.php'; echo 'ok';",
        ])
        .output();
    match found {
        Ok(out) if out.stdout == b"ok" => "php".into(),
        other => panic!(
            "PHP with Symfony Mailer ({other:?}): run the tests with `cargo xtask test`, whose setup installs Debian's php-cli and php-symfony-mailer"
        ),
    }
}

#[tokio::test]
async fn symfony_mailer_sends_through_dash_bs_and_hears_each_refusal() {
    let (rig, server, key) = sending_rig().await;
    let dir = tempfile::tempdir().unwrap();
    let link = sendmail_link(dir.path());
    let link = link.to_str().unwrap();
    let (from, to, bcc) = (
        mailer(),
        addr("ops", "example.org"),
        addr("audit", "example.org"),
    );
    let env = [
        ("MAILROOM_URL", server.url.as_str()),
        ("MAILROOM_APP_KEY", key.as_str()),
    ];
    // Two messages through one sendmail process, as an app sends a batch.
    let ran = symfony_mailer(&[link, &from, &to, &bcc, "Invoice 1", "Invoice 2"], &env).await;
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(ran.stdout.trim(), "sent 2");
    wait_received(&rig, 2).await;
    let got = rig.smtp.messages();
    for (m, subject) in got.iter().zip(["Invoice 1", "Invoice 2"]) {
        let mut rcpts = m.rcpt_to.clone();
        rcpts.sort();
        assert_eq!(rcpts, vec![bcc.clone(), to.clone()]);
        assert!(
            m.data.contains(&format!("Subject: {subject}\r\n")),
            "{}",
            m.data
        );
        assert!(
            !m.data.contains(&bcc),
            "the Bcc stays out of the message: {}",
            m.data
        );
        // Dots at the start of a line went through SMTP's dot-stuffing both
        // ways: the lone dot did not end the message.
        assert!(
            m.data.contains("the line above is a lone dot"),
            "{}",
            m.data
        );
        assert!(!m.data.contains("\r\n..a line"), "{}", m.data);
    }
    // A From the app may not use: the server's reason reaches the app.
    let stranger = addr("x", "fabrikam.example");
    let ran = symfony_mailer(&[link, &stranger, &to, &bcc, "Stranger"], &env).await;
    assert_eq!(ran.code, Some(3), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("550"), "{}", ran.stdout);
    assert!(ran.stdout.contains("allowed_from"), "{}", ran.stdout);
    // Mailroom unreachable: a 451, so the app knows to try again.
    let closed = common::ClosedPort::new();
    let url = format!("http://127.0.0.1:{}", closed.port);
    let env = [
        ("MAILROOM_URL", url.as_str()),
        ("MAILROOM_APP_KEY", key.as_str()),
    ];
    let ran = symfony_mailer(&[link, &from, &to, &bcc, "Later"], &env).await;
    assert_eq!(ran.code, Some(3), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("451"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("cannot reach Mailroom"),
        "{}",
        ran.stdout
    );
    let counts = &server.queue().await["counts"];
    assert_eq!(
        counts["sent"].as_u64().unwrap()
            + counts["queued"].as_u64().unwrap()
            + counts["sending"].as_u64().unwrap(),
        2,
        "{counts}"
    );
}

#[tokio::test]
async fn dash_bs_answers_250_only_for_a_committed_message_and_75_for_an_unfinished_one() {
    let (rig, server, key) = sending_rig().await;
    let env = [
        ("MAILROOM_URL", server.url.as_str()),
        ("MAILROOM_APP_KEY", key.as_str()),
    ];
    let (from, to) = (mailer(), addr("ops", "example.org"));
    // Pipelined, as a client may: everything at once, then QUIT.
    let session = format!(
        "EHLO app\r\nMAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\nFrom: {from}\r\nSubject: piped\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
    );
    let ran = run(binary(), &["sendmail", "-bs"], &env, &session).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.starts_with("220 "), "{}", ran.stdout);
    let queued = ran
        .stdout
        .lines()
        .find(|l| l.starts_with("250 2.0.0 Ok: queued as msg_"))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(
        ran.stdout.ends_with("221 2.0.0 localhost Bye\r\n"),
        "{}",
        ran.stdout
    );
    wait_received(&rig, 1).await;
    let m = &rig.smtp.messages()[0];
    assert!(
        m.data.contains("\r\n.dot") && !m.data.contains("..dot"),
        "{}",
        m.data
    );
    // The id in the reply is the message's own.
    let msg_id = queued.rsplit(' ').next().unwrap();
    server.wait_status(msg_id, "sent").await;
    // Input that ends inside a message: nothing is queued, and the exit
    // code says to try again.
    let half = format!(
        "EHLO app\r\nMAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\nSubject: half\r\n\r\nno end"
    );
    let ran = run(binary(), &["sendmail", "-bs"], &env, &half).await;
    assert_eq!(ran.code, Some(75), "{}", ran.stderr);
    assert!(!ran.stdout.contains("queued as"), "{}", ran.stdout);
    // A server that answers 200 to everything queued nothing: 451, not
    // "250 Ok: queued as " with no id.
    let page = format!("http://{}", mailroom_fakes::serve_any_page().await);
    let elsewhere = [
        ("MAILROOM_URL", page.as_str()),
        ("MAILROOM_APP_KEY", key.as_str()),
    ];
    let ran = run(binary(), &["sendmail", "-bs"], &elsewhere, &session).await;
    assert!(
        ran.stdout.contains("\r\n451 4.3.0 ") && !ran.stdout.contains("\r\n250 2.0.0 Ok: queued"),
        "{}",
        ran.stdout
    );
    let counts = &server.queue().await["counts"];
    let total: u64 = ["queued", "sending", "sent", "deferred", "failed"]
        .iter()
        .map(|k| counts[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1, "{counts}");
}
