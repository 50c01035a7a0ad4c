//! Isolation, the intake part: one checked message for every way in. Each
//! attack of the isolation issue is a case, tried over HTTP, the relay and
//! `mailroom sendmail`, and the fake upstream shows what (if anything) left.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::wire::Wire;
use common::*;
use mailroom_backend::config::SmtpListen;
use mailroom_fakes::{addr, Loopback};
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// An address the app may not use.
fn ceo() -> String {
    addr("ceo", "contoso.com")
}

fn to() -> String {
    addr("ops", "example.org")
}

/// A case: its name, the message, the HTTP field it is refused on, and the
/// relay's reply.
struct Attack {
    name: &'static str,
    raw: String,
    field: &'static str,
    smtp: &'static str,
}

fn attacks() -> Vec<Attack> {
    let (me, ceo, to) = (mailer(), ceo(), to());
    let tail = format!("To: {to}\r\nSubject: attack\r\n\r\nbody\r\n");
    vec![
        Attack {
            name: "two From headers, the forbidden one first",
            raw: format!("From: {ceo}\r\nFrom: {me}\r\n{tail}"),
            field: "from",
            smtp: "550 5.7.1",
        },
        Attack {
            name: "two From headers, the allowed one first",
            raw: format!("From: {me}\r\nFrom: {ceo}\r\n{tail}"),
            field: "from",
            smtp: "550 5.7.1",
        },
        Attack {
            name: "one From with two mailboxes",
            raw: format!("From: {me}, {ceo}\r\n{tail}"),
            field: "from",
            smtp: "550 5.7.1",
        },
        Attack {
            name: "a bare CR ending the header block early",
            raw: format!("From: {me}\r\nX-Note: b\r\r\nFrom: {ceo}\r\n{tail}"),
            field: "headers",
            smtp: "550 5.6.0",
        },
        Attack {
            name: "a forbidden Sender",
            raw: format!("From: {me}\r\nSender: {ceo}\r\n{tail}"),
            field: "from",
            smtp: "550 5.7.1",
        },
        Attack {
            name: "a forbidden Resent-From",
            raw: format!("From: {me}\r\nResent-From: {ceo}\r\n{tail}"),
            field: "from",
            smtp: "550 5.7.1",
        },
        Attack {
            name: "two To headers",
            raw: format!(
                "From: {me}\r\nTo: {to}\r\nTo: {}\r\nSubject: x\r\n\r\nbody\r\n",
                addr("other", "example.org")
            ),
            field: "headers",
            smtp: "550 5.6.0",
        },
        Attack {
            name: "two Date headers",
            raw: format!(
                "From: {me}\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nDate: Tue, 1 Dec 2026 10:00:01 +0000\r\n{tail}"
            ),
            field: "headers",
            smtp: "550 5.6.0",
        },
        Attack {
            name: "a subject of 999 characters",
            raw: format!(
                "From: {me}\r\nTo: {to}\r\nSubject: {}\r\n\r\nbody\r\n",
                "s".repeat(999)
            ),
            field: "subject",
            smtp: "550 5.6.0",
        },
    ]
}

/// A message the app may send, with 8-bit, non-UTF-8 content, a Resent-Bcc
/// and a line that starts with a dot.
fn allowed_8bit() -> Vec<u8> {
    let mut raw = format!(
        "From: Reports <{}>\r\nTo: {}\r\nResent-Bcc: {}\r\nSubject: caf\u{e9}\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        mailer(),
        to(),
        addr("hidden", "example.org")
    )
    .into_bytes();
    raw.extend_from_slice(b"Caf\xe9 cr\xe8me \xff\r\n.dot line\r\nend\r\n");
    raw
}

async fn relay_rig() -> (Loopback, Running, String, String) {
    let (rig, server) = saved_rig(|a| {
        a.relay.smtp_listen = SmtpListen::On("127.0.0.1:0".parse().unwrap());
        a.relay.smtp_hostname = Some("localhost".into());
    })
    .await;
    let (app, key) = server.new_app(json!({"name": "Reports"})).await;
    (rig, server, app, key)
}

/// Sends `raw` over the relay (signed in as the app) and returns the reply to
/// the end of DATA.
async fn relay_send(server: &Running, app: &str, key: &str, raw: &[u8]) -> String {
    let (mut w, _) = Wire::connect(server.smtp.unwrap()).await;
    w.command("EHLO t").await;
    assert!(w.auth_plain(app, key).await.starts_with("235"));
    assert!(w
        .command(&format!("MAIL FROM:<{}>", mailer()))
        .await
        .starts_with("250"));
    assert!(w
        .command(&format!("RCPT TO:<{}>", to()))
        .await
        .starts_with("250"));
    assert!(w.command("DATA").await.starts_with("354"));
    let mut data = Vec::new();
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    data.extend_from_slice(b".\r\n");
    w.send_bytes(&data).await;
    w.reply().await
}

/// The body the upstream saw: what follows the header block.
fn body_of(raw: &[u8]) -> &[u8] {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    &raw[at + 4..]
}

#[tokio::test]
async fn every_attack_is_refused_over_http_and_nothing_leaves() {
    let (rig, server, key) = sending_rig().await;
    for a in attacks() {
        let (status, body) = server.submit_raw(&key, "", a.raw).await;
        assert_eq!(status, 422, "{}: {body}", a.name);
        assert!(body["errors"][a.field].is_array(), "{}: {body}", a.name);
    }
    let q = server.queue().await;
    assert_eq!(q["counts"]["queued"], 0, "nothing stored: {q}");
    // The allowed message goes out byte for byte, Resent-Bcc removed.
    let raw = allowed_8bit();
    let (status, body) = server.submit_raw(&key, "", raw.clone()).await;
    assert_eq!(status, 202, "{body}");
    server
        .wait_status(body["id"].as_str().unwrap(), "sent")
        .await;
    wait_received(&rig, 1).await;
    let got = &rig.smtp.messages()[0];
    assert_eq!(got.rcpt_to, vec![to()]);
    assert_eq!(
        body_of(&got.raw),
        b"Caf\xe9 cr\xe8me \xff\r\n.dot line\r\nend",
        "8-bit content kept byte for byte"
    );
    let head = String::from_utf8_lossy(&got.raw[..got.raw.len() - body_of(&got.raw).len()]);
    // A header line, not "bcc" anywhere: the random ids in Received and
    // Message-ID hold it now and then (msg_…93bccb).
    assert!(
        !head
            .to_ascii_lowercase()
            .lines()
            .any(|l| l.starts_with("bcc:") || l.starts_with("resent-bcc:"))
            && !head.contains("hidden"),
        "{head}"
    );
    // Below the Received field Mailroom adds at the top, the message's own.
    let (received, own) = head.split_once(";\r\n\t").unwrap();
    assert!(received.starts_with("Received: from [127.0.0.1]"), "{head}");
    let own = own.split_once("\r\n").unwrap().1;
    assert!(
        own.starts_with(&format!("From: Reports <{}>\r\n", mailer())),
        "{head}"
    );
    assert_eq!(rig.smtp.messages().len(), 1, "no attack left");
}

#[tokio::test]
async fn every_attack_is_refused_by_the_relay_and_nothing_leaves() {
    let (rig, server, app, key) = relay_rig().await;
    for a in attacks() {
        let reply = relay_send(&server, &app, &key, a.raw.as_bytes()).await;
        assert!(reply.starts_with(a.smtp), "{}: {reply}", a.name);
    }
    let reply = relay_send(&server, &app, &key, &allowed_8bit()).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    wait_received(&rig, 1).await;
    let got = &rig.smtp.messages()[0];
    assert_eq!(
        body_of(&got.raw),
        b"Caf\xe9 cr\xe8me \xff\r\n.dot line\r\nend"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.smtp.messages().len(), 1, "no attack left");
}

async fn sendmail(
    server: &Running,
    key: &str,
    stdin: &[u8],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(Path::new(env!("CARGO_BIN_EXE_mailroom")));
    cmd.args(["sendmail", "-t", "-i"])
        .env("MAILROOM_URL", &server.url)
        .env("MAILROOM_APP_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    // A sendmail that stops reading makes this write fail: that is fine.
    let _ = input.write_all(stdin).await;
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("sendmail ends")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn every_attack_is_refused_through_sendmail_with_its_exit_code() {
    let (rig, server, key) = sending_rig().await;
    for a in attacks() {
        let (code, err) = sendmail(&server, &key, a.raw.as_bytes(), &[]).await;
        let want = if a.field == "from" { 69 } else { 65 };
        assert_eq!(code, Some(want), "{}: {err}", a.name);
    }
    let (code, err) = sendmail(&server, &key, &allowed_8bit(), &[]).await;
    assert_eq!(code, Some(0), "{err}");
    wait_received(&rig, 1).await;
    assert_eq!(
        body_of(&rig.smtp.messages()[0].raw),
        b"Caf\xe9 cr\xe8me \xff\r\n.dot line\r\nend"
    );
    // stdin is read only up to the size limit, then refused.
    let mut big = allowed_8bit();
    big.extend(std::iter::repeat_n(b'x', 64 * 1024));
    let (code, err) = sendmail(
        &server,
        &key,
        &big,
        &[("MAILROOM_MAX_MESSAGE_SIZE", "4096")],
    )
    .await;
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("4096 bytes"), "{err}");
}

#[tokio::test]
async fn json_submissions_pass_the_same_checks() {
    let (_rig, server, key) = sending_rig().await;
    let base = json!({"to": [to()], "subject": "ok", "text": "hi"});
    let mut long = base.clone();
    long["subject"] = json!("s".repeat(999));
    let (status, body) = server.submit(&key, &long).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["errors"]["subject"][0]
            .as_str()
            .unwrap()
            .contains("998"),
        "{body}"
    );
    let mut resent = base.clone();
    resent["headers"] = json!({"Resent-From": ceo()});
    let (status, body) = server.submit(&key, &resent).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["errors"]["from"][0]
            .as_str()
            .unwrap()
            .starts_with("Resent-From"),
        "{body}"
    );
    let (status, body) = server.submit(&key, &base).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn a_field_a_request_does_not_take_is_refused_naming_it_and_nothing_is_made() {
    // Each would have been dropped without a word: the message sent
    // without its copies or files, the app made or left with other rights.
    let (rig, server, key) = sending_rig().await;
    let base = json!({"to": [to()], "subject": "s", "text": "x"});
    for (field, value, says) in [
        ("Cc", json!([ceo()]), "expected one of `from`, `to`, `cc`"),
        (
            "attachments",
            json!([{"filename": "a.pdf", "content": "JVBERi0="}]),
            "message/rfc822",
        ),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let (status, answer) = server.submit(&key, &body).await;
        assert_eq!(status, 400, "{answer}");
        let said = answer["errors"][field][0].as_str().unwrap_or_default();
        assert!(
            said.starts_with(&format!("This request has no field {field}:")) && said.contains(says),
            "{answer}"
        );
    }
    // A field given twice is named too (it was a 400 naming no field).
    let twice = format!(
        r#"{{"to": ["{}"], "to": ["{}"], "subject": "s", "text": "x"}}"#,
        to(),
        ceo()
    );
    let (status, answer) = server
        .post_message(&key, "", "application/json", twice.into_bytes())
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["errors"]["to"][0], "The field to is given twice; give it once.",
        "{answer}"
    );
    // A missing field is named (it was a 400 "wrong shape: missing field
    // `url`" naming none under errors).
    let (status, answer) = server
        .admin(
            Method::POST,
            "/api/webhooks",
            Some(json!({"events": ["message.failed"], "format": "slack"})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["errors"]["url"][0], "The field url is missing; this request needs it.",
        "{answer}"
    );
    let (status, apps) = server.admin(Method::GET, "/api/apps", None).await;
    assert_eq!(status, 200);
    let before = apps["apps"].as_array().unwrap().len();
    let (status, answer) = server
        .admin(
            Method::POST,
            "/api/apps",
            Some(json!({"name": "Printer", "allowed_frm": [ceo()]})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["errors"]["allowed_frm"].is_array(), "{answer}");
    let app = apps["apps"][0]["id"].as_str().unwrap().to_string();
    for (path, body) in [
        (
            format!("/api/apps/{app}"),
            json!({"limit": {"messages_per_hour": 1}}),
        ),
        (
            "/api/profiles/default".to_string(),
            json!({"limit": {"recipients_per_day": 1}}),
        ),
        (
            "/api/profiles".to_string(),
            json!({"name": "P", "settings": {}, "limit": {}}),
        ),
    ] {
        let method = if path == "/api/profiles" {
            Method::POST
        } else {
            Method::PATCH
        };
        let (status, answer) = server.admin(method, &path, Some(body)).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(answer["errors"]["limit"].is_array(), "{path}: {answer}");
    }
    let (_, after) = server.admin(Method::GET, "/api/apps", None).await;
    assert_eq!(after["apps"].as_array().unwrap().len(), before);
    assert_eq!(after["apps"][0]["limits"], apps["apps"][0]["limits"]);
    let (_, profiles) = server.admin(Method::GET, "/api/profiles", None).await;
    assert_eq!(
        profiles["profiles"].as_array().unwrap().len(),
        1,
        "{profiles}"
    );
    // The known fields still work, and nothing refused went out.
    the_only_one_sent(&rig, &server, server.submit(&key, &base).await).await;
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_and_nothing_is_made() {
    // serde reads a struct from an array too, field by field in order:
    // `["Billing"]` made an app named Billing, and a list of messages was
    // read as the fields of one.
    let (rig, server, key) = sending_rig().await;
    let one = json!({"to": [to()], "subject": "s", "text": "x"});
    for body in [json!([one.clone(), one.clone()]), json!("hello"), json!(7)] {
        let (status, answer) = server.submit(&key, &body).await;
        assert_eq!(status, 400, "{answer}");
        let said = answer["message"].as_str().unwrap_or_default();
        assert!(
            said.starts_with(
                "The request body has the wrong shape: it must be a JSON object, { … } with named fields, not "
            ),
            "{answer}"
        );
    }
    let (status, answer) = server.submit(&key, &json!([one.clone()])).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not an array (send one at a time, each in its own request)"),
        "{answer}"
    );
    let (_, apps) = server.admin(Method::GET, "/api/apps", None).await;
    let before = apps["apps"].as_array().unwrap().len();
    let (status, answer) = server
        .admin(Method::POST, "/api/apps", Some(json!(["Billing"])))
        .await;
    assert_eq!(status, 400, "{answer}");
    let (_, after) = server.admin(Method::GET, "/api/apps", None).await;
    assert_eq!(after["apps"].as_array().unwrap().len(), before, "{after}");
    // Inside a body too: `"limits": [1, 2]` set the first two limits.
    let app = after["apps"][0]["id"].as_str().unwrap().to_string();
    for (method, path, body, field) in [
        (
            Method::PATCH,
            format!("/api/apps/{app}"),
            json!({"limits": [1, 2]}),
            "limits",
        ),
        (
            Method::POST,
            "/api/profiles".to_string(),
            json!({"name": "P", "settings": ["office365"]}),
            "settings",
        ),
    ] {
        let (status, answer) = server.admin(method, &path, Some(body)).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(
            answer["errors"][field][0],
            format!("The field {field} has a wrong value: it must be an object, {{ … }} with named fields, not an array."),
            "{path}: {answer}"
        );
    }
    let (_, now) = server.admin(Method::GET, "/api/apps", None).await;
    assert_eq!(now["apps"][0]["limits"], after["apps"][0]["limits"]);
    let (_, profiles) = server.admin(Method::GET, "/api/profiles", None).await;
    assert_eq!(profiles["profiles"].as_array().unwrap().len(), 1);
    // Whitespace before the object is still JSON.
    let spaced = [b"\r\n  ".to_vec(), serde_json::to_vec(&one).unwrap()].concat();
    let answered = server
        .post_message(&key, "", "application/json", spaced)
        .await;
    the_only_one_sent(&rig, &server, answered).await;
}

#[tokio::test]
async fn a_json_body_in_another_encoding_than_utf8_is_explained_and_nothing_is_made() {
    // Windows PowerShell 5.1's Invoke-RestMethod sends a text body as
    // Latin-1, and its Out-File writes UTF-16: serde_json called them
    // "invalid unicode code point" and "expected value at line 1 column 1".
    let (rig, server, key) = sending_rig().await;
    let utf8 =
        serde_json::to_string(&json!({"to": [to()], "subject": "Café", "text": "x"})).unwrap();
    let latin1: Vec<u8> = utf8.chars().map(|c| c as u32 as u8).collect();
    let column = utf8.find('é').unwrap() + 1;
    let utf16le: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(utf8.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let utf16be: Vec<u8> = utf8.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let fix = "JSON must be UTF-8 (RFC 8259): save the file as UTF-8 (in PowerShell, Out-File -Encoding utf8), or send the text with Invoke-RestMethod -ContentType 'application/json; charset=utf-8'.";
    let expect = [
        (
            latin1.clone(),
            format!("The request body is not UTF-8: byte 0xE9 at line 1, column {column} is not UTF-8, so the text is in another encoding (Windows PowerShell 5.1's Invoke-RestMethod sends Latin-1 unless the content type names a charset); {fix}"),
        ),
        (
            utf16le,
            format!("The request body is not UTF-8: it is UTF-16 text, as Windows PowerShell's Out-File and > write it; {fix}"),
        ),
        (
            utf16be,
            format!("The request body is not UTF-8: it is UTF-16 text, as Windows PowerShell's Out-File and > write it; {fix}"),
        ),
    ];
    for (body, said) in expect {
        let (status, answer) = server
            .post_message(&key, "", "application/json", body)
            .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["message"], said.as_str());
    }
    // An admin body too: no app is made from a Latin-1 name.
    let (status, _, answer) = server
        .post_bytes(
            "/api/apps",
            TOKEN,
            &[("content-type", "application/json")],
            b"{\"name\": \"Caf\xE9\"}".to_vec(),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("The request body is not UTF-8: byte 0xE9 at line 1, column 14 "),
        "{answer}"
    );
    let (_, apps) = server.admin(Method::GET, "/api/apps", None).await;
    assert!(!apps.to_string().contains("Caf"), "no app was made: {apps}");
    // The same message in UTF-8 goes, and is the only one.
    let sent = the_only_one_sent(
        &rig,
        &server,
        server
            .post_message(&key, "", "application/json", utf8.into_bytes())
            .await,
    )
    .await;
    assert_eq!(sent.rcpt_to, [to()]);
}

#[tokio::test]
async fn a_body_encoded_or_typed_twice_is_refused_before_it_is_read() {
    // Bodies were read as they came: a gzipped message was "not valid
    // JSON", a gzipped raw message "holds a NUL byte", and a plain body
    // labelled br was taken as if it were not labelled.
    let (rig, server, key) = sending_rig().await;
    let json = serde_json::to_vec(&json!({"to": [to()], "subject": "s", "text": "x"})).unwrap();
    let raw = format!(
        "From: {}\r\nTo: {}\r\nSubject: s\r\n\r\nx\r\n",
        mailer(),
        to()
    );
    let gzip = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03].to_vec();
    for (content_type, coding, body) in [
        ("application/json", "gzip", gzip.clone()),
        ("application/json", "br", json.clone()),
        ("application/json", "identity, deflate", json.clone()),
        ("message/rfc822", "GZIP", gzip.clone()),
        ("message/rfc822", "zstd", raw.clone().into_bytes()),
    ] {
        let (status, headers, answer) = server
            .post_bytes(
                "/api/messages",
                &key,
                &[("content-type", content_type), ("content-encoding", coding)],
                body,
            )
            .await;
        assert_eq!(status, 415, "{coding}: {answer}");
        assert_eq!(headers["accept-encoding"], "identity");
        let named = coding.rsplit(", ").next().unwrap();
        assert_eq!(
            answer["message"],
            format!("Mailroom takes request bodies as they are, not with Content-Encoding: {named}; send the body uncompressed, without a Content-Encoding header.")
        );
    }
    // Two types: the first was used, so the same body was read as JSON or
    // as a whole message by the order of the headers.
    for types in [
        ["application/json", "message/rfc822"],
        ["message/rfc822", "application/json"],
    ] {
        let (status, _, answer) = server
            .post_bytes(
                "/api/messages",
                &key,
                &[("content-type", types[0]), ("content-type", types[1])],
                json.clone(),
            )
            .await;
        assert_eq!(status, 400, "{types:?}: {answer}");
        assert_eq!(
            answer["message"],
            "This request has more than one Content-Type header; send one, naming the body's one type."
        );
    }
    // An admin body too: no app is made.
    for (second, status) in [
        (("content-encoding", "deflate"), 415),
        (("content-type", "text/plain"), 400),
    ] {
        let (got, _, answer) = server
            .post_bytes(
                "/api/apps",
                TOKEN,
                &[("content-type", "application/json"), second],
                br#"{"name": "Compressed"}"#.to_vec(),
            )
            .await;
        assert_eq!(got, status, "{answer}");
    }
    let (_, apps) = server.admin(Method::GET, "/api/apps", None).await;
    assert!(!apps.to_string().contains("Compressed"), "{apps}");
    // identity, or an empty value, is no coding at all.
    for coding in ["identity", ""] {
        let (status, _, answer) = server
            .post_bytes(
                "/api/messages",
                &key,
                &[
                    ("content-type", "message/rfc822"),
                    ("content-encoding", coding),
                ],
                raw.clone().into_bytes(),
            )
            .await;
        assert_eq!(status, 202, "{coding:?}: {answer}");
        server
            .wait_status(answer["id"].as_str().unwrap(), "sent")
            .await;
    }
    assert_eq!(
        rig.smtp.messages().len(),
        2,
        "only the two unencoded ones went"
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_read_in_any_case_and_two_authorization_headers_are_refused() {
    let (rig, server, key) = sending_rig().await;
    let call = |method: Method, path: &str, credentials: &[&str]| {
        let mut r = server.http.request(method, format!("{}{path}", server.url));
        for c in credentials {
            r = r.header("authorization", *c);
        }
        r
    };
    // RFC 9110 11.1: the scheme is case-insensitive; `bearer` was taken
    // for no credentials at all.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = call(Method::GET, "/api/apps", &[&format!("{scheme} {TOKEN}")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let one = json!({"to": [to()], "subject": "s", "text": "x"});
    let sent = call(Method::POST, "/api/messages", &[&format!("bearer {key}")])
        .json(&one)
        .send()
        .await
        .unwrap();
    let status = sent.status().as_u16();
    let sent = sent.json().await.unwrap();
    // Two credentials: the first was used, so the order of a proxy's
    // header and the client's decided who the request came from.
    let two = "This request has more than one Authorization header; send one, with one credential.";
    for (method, path, credentials) in [
        (
            Method::POST,
            "/api/messages",
            [format!("Bearer {key}"), format!("Bearer {TOKEN}")],
        ),
        (
            Method::GET,
            "/api/apps",
            [format!("Bearer {TOKEN}"), format!("Bearer {TOKEN}")],
        ),
        (
            Method::GET,
            "/api/apps",
            ["Bearer guess".into(), format!("Bearer {TOKEN}")],
        ),
    ] {
        let credentials = [credentials[0].as_str(), credentials[1].as_str()];
        let r = call(method, path, &credentials)
            .json(&one)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(answer["message"], two, "{path}");
    }
    // Another scheme is no credential.
    let r = call(Method::GET, "/api/apps", &[&format!("Basic {TOKEN}")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let sent = the_only_one_sent(&rig, &server, (status, sent)).await;
    assert_eq!(sent.rcpt_to, [to()]);
}

/// Tools that can send only Basic (monitoring systems, a scanner's HTTP
/// step) send with the app's id as the user name and its key as the
/// password, as the relay's AUTH takes them; another app's id with the
/// key, or the key as the user name, is a wrong key. Admin routes never
/// take Basic.
#[tokio::test]
async fn an_app_key_is_taken_as_basic_with_the_apps_id_or_no_user_name() {
    let (rig, server, key) = sending_rig().await;
    let (_, apps) = server.admin(Method::GET, "/api/apps", None).await;
    let id = apps["apps"][0]["id"].as_str().unwrap().to_string();
    let (other, _) = server.new_app(json!({"name": "Other"})).await;
    let one = json!({"to": [to()], "subject": "s", "text": "x"});
    let post = |user: String, password: Option<String>| {
        server
            .http
            .post(format!("{}/api/messages", server.url))
            .basic_auth(user, password)
            .json(&one)
            .send()
    };
    let mut ids = Vec::new();
    for user in [id.clone(), String::new()] {
        let r = post(user.clone(), Some(key.clone())).await.unwrap();
        assert_eq!(r.status(), 202, "user {user:?}");
        let answer: serde_json::Value = r.json().await.unwrap();
        ids.push(answer["id"].as_str().unwrap().to_string());
    }
    for (user, password) in [
        (other.clone(), Some(key.clone())),
        (key.clone(), None),
        (id.clone(), Some(format!("{key}x"))),
    ] {
        let r = post(user.clone(), password).await.unwrap();
        assert_eq!(r.status(), 401, "user {user:?}");
        let answer: serde_json::Value = r.json().await.unwrap();
        let said = answer["message"].as_str().unwrap_or_default();
        assert!(said.contains("Basic with the app's id"), "{answer}");
    }
    // Basic that is not base64, holds no colon, or is not UTF-8: a wrong
    // key, never a 500.
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    for credentials in [
        "Basic !!!not-base64".to_string(),
        format!("Basic {}", b64(key.as_bytes())),
        format!("Basic {}", b64(b"\xff\xfe:\xff")),
        "Basic".to_string(),
    ] {
        let r = server
            .http
            .post(format!("{}/api/messages", server.url))
            .header("authorization", &credentials)
            .json(&one)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{credentials}");
    }
    let r = server
        .http
        .get(format!("{}/api/apps", server.url))
        .basic_auth(&id, Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for id in &ids {
        server.wait_status(id, "sent").await;
    }
    assert_eq!(rig.smtp.messages().len(), 2, "only the two right ones went");
}

#[tokio::test]
async fn the_submission_query_takes_only_a_whole_messages_envelope() {
    // Ignored, a misspelt `to` would send the message to the addresses in
    // its headers; a second `from` would pick one of two senders.
    let (rig, server, key) = sending_rig().await;
    let raw = format!(
        "From: {}\r\nTo: {}\r\nSubject: q\r\n\r\nbody\r\n",
        mailer(),
        to()
    );
    let other = addr("other", "example.org");
    for (query, field, says) in [
        (format!("?too={other}"), "too", "it takes from and to"),
        (
            format!("?from={0}&from={0}", mailer()),
            "from",
            "more than once",
        ),
    ] {
        let (status, answer) = server.submit_raw(&key, &query, raw.clone()).await;
        assert_eq!(status, 400, "{query}: {answer}");
        let said = answer["errors"][field][0].as_str().unwrap_or_default();
        assert!(said.contains(says), "{query}: {answer}");
    }
    let json = serde_json::to_vec(&json!({"to": [to()], "subject": "s", "text": "x"})).unwrap();
    let (status, answer) = server
        .post_message(&key, &format!("?to={other}"), "application/json", json)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["errors"]["to"][0]
            .as_str()
            .unwrap_or_default()
            .contains("message/rfc822"),
        "{answer}"
    );
    // The envelope as the contract gives it is used.
    let answered = server
        .submit_raw(&key, &format!("?from={}&to={other}", mailer()), raw)
        .await;
    let sent = the_only_one_sent(&rig, &server, answered).await;
    assert_eq!(sent.rcpt_to, [other]);
}

/// A submission's answer, `202`, and its message sent: the only one the
/// upstream has had, so none refused before it went out. What it got.
async fn the_only_one_sent(
    rig: &Loopback,
    server: &Running,
    (status, answer): (u16, serde_json::Value),
) -> mailroom_fakes::Received {
    assert_eq!(status, 202, "{answer}");
    server
        .wait_status(answer["id"].as_str().unwrap(), "sent")
        .await;
    let sent = rig.smtp.messages();
    assert_eq!(sent.len(), 1, "none of the refused ones went");
    sent.into_iter().next().unwrap()
}

#[tokio::test]
async fn an_upstreams_long_replies_are_stored_cut() {
    // A server that accepts with 60 KB of continuation lines, and refuses one
    // recipient the same way: each recipient keeps at most 1,000 characters
    // of it (before, the whole reply was stored with every recipient).
    let filler = "250-".to_string() + &"x".repeat(76) + "\r\n";
    let refusal = "550-".to_string() + &"y".repeat(76) + "\r\n";
    let mut rcpt_replies = std::collections::HashMap::new();
    rcpt_replies.insert(
        addr("gone", "example.org"),
        refusal.repeat(700) + "550 5.1.1 no such user",
    );
    let config = mailroom_fakes::SmtpConfig {
        data_reply: Some(filler.repeat(700) + "250 2.0.0 OK queued"),
        rcpt_replies,
        ..Default::default()
    };
    let (_rig, server) = saved_rig_with(config, |_| {}).await;
    let (_, key) = server.new_app(json!({"name": "Reports"})).await;
    let to = [addr("a", "example.org"), addr("gone", "example.org")];
    let (status, body) = server
        .submit(&key, &json!({"to": to, "subject": "s", "text": "x"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    // Sent to one of its two recipients.
    let done = server.wait_status(&id, "sent").await;
    let recipients = done["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 2, "{done}");
    for r in recipients {
        let message = r["message"].as_str().unwrap();
        // The reply's first 1,000 characters, in the diagnosis's words for
        // the refused one.
        let chars = message.chars().count();
        assert!((1_000..1_300).contains(&chars), "{chars}: {message}");
        assert!(message.contains('…'), "{message}");
    }
    assert!(
        done.to_string().len() < 20_000,
        "{} bytes",
        done.to_string().len()
    );
}

#[tokio::test]
async fn stored_transcripts_never_hold_the_message() {
    // The upstream refuses DATA: the failed attempt keeps its transcript.
    let config = mailroom_fakes::SmtpConfig {
        data_reply: Some("554 5.6.0 refused for the test".into()),
        ..Default::default()
    };
    let (_rig, server) = saved_rig_with(config, |_| {}).await;
    let (_, key) = server.new_app(json!({"name": "Reports"})).await;
    let (status, body) = server
        .submit(
            &key,
            &json!({"to": [to()], "subject": "s", "text": "top-secret-body-words"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    server.wait_status(&id, "failed").await;
    let db = rusqlite::Connection::open(server.data.join("mailroom.db")).unwrap();
    let transcripts: Vec<String> = db
        .prepare("SELECT transcript FROM attempts WHERE transcript IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!transcripts.is_empty());
    for t in &transcripts {
        assert!(t.contains("S: 354") && t.contains("554 5.6.0"), "{t}");
        assert!(t.contains("message content"), "{t}");
        assert!(
            !t.contains("top-secret-body-words") && !t.contains("Subject:"),
            "{t}"
        );
    }
    // A failed message keeps its body until its record goes, so Retry works.
    let kept: bool = db
        .query_row(
            "SELECT body IS NOT NULL FROM messages WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(kept);
}

#[tokio::test]
async fn a_sent_message_keeps_its_record_not_its_content() {
    let (rig, server, key) = sending_rig().await;
    let (status, body) = server
        .submit(
            &key,
            &json!({"to": [to()], "subject": "s", "text": "words"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let sent = body["id"].as_str().unwrap().to_string();
    server.wait_status(&sent, "sent").await;
    wait_received(&rig, 1).await;
    let db = rusqlite::Connection::open(server.data.join("mailroom.db")).unwrap();
    let gone: bool = db
        .query_row(
            "SELECT body IS NULL FROM messages WHERE id = ?1",
            [&sent],
            |r| r.get(0),
        )
        .unwrap();
    assert!(gone, "a sent message's body is deleted at once");
    let details = server.message(&sent).await;
    assert_eq!(details["status"], "sent", "the record stays: {details}");
}

#[tokio::test]
async fn json_headers_are_limited_in_number_and_bytes() {
    use mailroom_backend::intake::json::{MAX_HEADERS, MAX_HEADER_BYTES};
    // lettre's builder searched the headers before each one it added: a
    // 5 MB body of 300,000 headers held a core for over 7 minutes.
    let (rig, server, key) = sending_rig().await;
    let with = |headers: serde_json::Map<String, serde_json::Value>| json!({"to": [to()], "subject": "s", "text": "x", "headers": headers});
    let many = |n: usize, value: &str| {
        (0..n)
            .map(|i| (format!("X-Field-{i}"), json!(value)))
            .collect::<serde_json::Map<_, _>>()
    };
    let (status, body) = server.submit(&key, &with(many(MAX_HEADERS + 1, "v"))).await;
    assert_eq!(status, 422, "{body}");
    let said = body["errors"]["headers"].to_string();
    assert!(
        said.contains("101 headers were given; at most 100"),
        "{said}"
    );
    assert_eq!(body["errors"]["headers"].as_array().unwrap().len(), 1);
    let long = "v".repeat(MAX_HEADER_BYTES / 10);
    let (status, body) = server.submit(&key, &with(many(11, &long))).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["errors"]["headers"]
            .to_string()
            .contains("at most 65536"),
        "{body}"
    );
    // A bad name is repeated in its first characters only.
    let bad = format!("X Bad{}", "n".repeat(50_000));
    let (status, body) = server
        .submit(&key, &with([(bad, json!("v"))].into_iter().collect()))
        .await;
    assert_eq!(status, 422, "{body}");
    let said = body["errors"]["headers"][0].as_str().unwrap();
    assert!(
        said.contains("without spaces") && said.len() < 300,
        "{said:.300}"
    );
    // Up to the limit, each arrives upstream.
    let (status, body) = server.submit(&key, &with(many(MAX_HEADERS, "v"))).await;
    assert_eq!(status, 202, "{body}");
    server
        .wait_status(body["id"].as_str().unwrap(), "sent")
        .await;
    let received = rig.smtp.messages();
    let data = &received.last().unwrap().data;
    assert!(data.contains("X-Field-0: v") && data.contains("X-Field-99: v"));
    assert_eq!(received.len(), 1, "nothing of the refused ones left");
}

/// A message naming 200,000 unreadable recipients as JSON, or 20,000 in a
/// raw message's To (its header block kept under 256 KiB), is answered with the count against the limit first, 20
/// of the addresses and one line counting the rest: before, the answer
/// named every one (about 22 MB of JSON for a 2 MB request).
#[tokio::test]
async fn a_flood_of_bad_recipients_gets_a_short_answer_with_the_limit_first() {
    let (rig, server, key) = sending_rig().await;
    let bad: Vec<String> = (0..200_000).map(|i| format!("x{i}")).collect();
    let mail = json!({"to": bad, "subject": "s", "text": "x"});
    let (status, _, body) = server
        .post_bytes(
            "/api/messages",
            &key,
            &[("content-type", "application/json")],
            serde_json::to_vec(&mail).unwrap(),
        )
        .await;
    let text = body.to_string();
    assert_eq!(status, 422, "{text:.500}");
    assert!(text.len() < 10_000, "{} bytes: {text:.500}", text.len());
    let said: Vec<&str> = body["errors"]["to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(said.len(), 21, "{said:#?}");
    assert!(
        said[0].contains("200000 recipients; the limit is 500"),
        "{said:#?}"
    );
    assert!(said[1].contains("address 1 of to (“x0”)"), "{said:#?}");
    assert_eq!(said[20], "… and 199981 more, not listed.");
    // The same in a raw message's To header.
    let list = (0..20_000)
        .map(|i| format!("x{i}@"))
        .collect::<Vec<_>>()
        .join(", ");
    let raw = format!(
        "From: {}\r\nTo: {list}\r\nSubject: s\r\n\r\nx\r\n",
        addr("scanner", "contoso.com")
    );
    let (status, _, body) = server
        .post_bytes(
            "/api/messages",
            &key,
            &[("content-type", "message/rfc822")],
            raw.into_bytes(),
        )
        .await;
    let text = body.to_string();
    assert_eq!(status, 422, "{text:.500}");
    assert!(text.len() < 10_000, "{} bytes: {text:.500}", text.len());
    let said = body["errors"]["to"].as_array().unwrap();
    assert_eq!(said.len(), 21, "{said:#?}");
    assert!(
        said[0].as_str().unwrap().contains("the limit is 500"),
        "{said:#?}"
    );
    assert!(said[20].as_str().unwrap().contains("more, not listed."));
    assert!(rig.smtp.messages().is_empty(), "nothing left");
}

/// A raw message of 1.5 million short header lines (21 MB, under the size
/// limit) is refused by its header block's size over HTTP and the relay,
/// before the fields are parsed: it held about 400 MB of the server's
/// memory while they were.
#[tokio::test]
async fn a_header_block_past_256_kib_is_refused_over_http_and_the_relay() {
    let (rig, server, app, key) = relay_rig().await;
    let lines: String = (0..1_500_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = format!(
        "From: {}\r\nTo: {}\r\nSubject: s\r\n{lines}\r\nbody\r\n",
        mailer(),
        to()
    );
    let (status, _, body) = server
        .post_bytes(
            "/api/messages",
            &key,
            &[("content-type", "message/rfc822")],
            raw.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let said = body["errors"]["headers"][0].as_str().unwrap_or_default();
    assert!(said.contains("the limit is 262144 (256 KiB)"), "{body}");
    let reply = relay_send(&server, &app, &key, raw.as_bytes()).await;
    assert!(
        reply.starts_with("550 5.6.0") && reply.contains("the limit is 262144"),
        "{reply}"
    );
    assert!(rig.smtp.messages().is_empty(), "nothing left");
}

/// A body sent with the other type's Content-Type is told which to use:
/// JSON sent as `message/rfc22` was read as a message whose first header
/// was `{"to"`, and answered "no From header" and "no recipient"; a whole
/// message sent as JSON was "not valid JSON at line 1 column 1".
#[tokio::test]
async fn a_body_sent_with_the_other_types_content_type_is_told_which_to_use() {
    let (rig, server) = saved_rig(|_| {}).await;
    let (_, key) = server.new_app(json!({"name": "Script"})).await;
    let json_body = json!({"to": [addr("a", "example.org")], "subject": "s", "text": "t"});
    for body in [
        json_body.to_string(),
        format!("\u{feff}  \r\n{json_body:#}"),
    ] {
        let (status, answer) = server
            .post_message(&key, "", "message/rfc822", body.into_bytes())
            .await;
        assert_eq!(status, 422, "{answer}");
        let said = answer["errors"]["message"][0].as_str().unwrap_or_default();
        assert!(
            said.contains("JSON") && said.contains("Content-Type: application/json"),
            "{answer}"
        );
        assert!(answer["errors"].get("from").is_none(), "{answer}");
    }
    let raw = format!(
        "From: {}\r\nTo: {}\r\nSubject: s\r\n\r\nbody\r\n",
        mailer(),
        addr("a", "example.org")
    );
    let (status, answer) = server
        .post_message(&key, "", "application/json", raw.into_bytes())
        .await;
    assert_eq!(status, 400, "{answer}");
    let said = answer["message"].as_str().unwrap_or_default();
    assert!(
        said.contains("not valid JSON") && said.contains("Content-Type: message/rfc822"),
        "{answer}"
    );
    // Plain bad JSON keeps its own words.
    let (status, answer) = server
        .post_message(&key, "", "application/json", b"{\"to\": [".to_vec())
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        !answer["message"]
            .as_str()
            .unwrap()
            .contains("message/rfc822"),
        "{answer}"
    );
    assert!(rig.smtp.messages().is_empty(), "nothing was sent");
}
