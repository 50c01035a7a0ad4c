//! The test email over Microsoft Graph against HTTP servers that misbehave on
//! the wire: one that never answers, one that redirects elsewhere, one whose
//! answer trickles in. Each ends within the Graph time limit with the reason,
//! and the token never goes anywhere but the configured endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Office 365 OAuth settings sending over Graph.
fn graph_settings() -> Settings {
    let mut s = oauth_settings("", 0);
    s.transport = mailroom_shared::Transport::Graph;
    s
}

/// The test email over Graph, its requests sent to the server on loopback
/// `port` with the time limit `limit`: the result, and how long it took.
async fn test_against(rig: &Rig, port: u16, limit: Duration) -> (TestResult, Duration) {
    let mut args = rig.args.clone();
    args.graph_endpoint = Some(format!("http://127.0.0.1:{port}"));
    let timeouts = Timeouts {
        graph: limit,
        ..Timeouts::default()
    };
    let tester = Upstream::with_timeouts(&args, timeouts).unwrap();
    let started = std::time::Instant::now();
    let r = tester.run(&graph_settings(), None, &recipient()).await;
    (r, started.elapsed())
}

/// Reads one request's head (up to the blank line); returns it as text.
async fn read_head(tcp: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match tcp.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn a_graph_endpoint_that_never_answers_ends_at_the_time_limit() {
    let rig = Rig::start(SmtpConfig::default()).await;
    // Accepts, reads nothing and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let held = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            let mut open = Vec::new();
            while let Ok((tcp, _)) = silent.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                open.push(tcp);
            }
        }
    });
    let (r, took) = test_against(&rig, port, Duration::from_millis(600)).await;
    assert!(
        took < Duration::from_secs(5),
        "gave up at the time limit, not later: {took:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the request was made");
    assert_fails(&r, Stage::Send, None);
    assert!(r.message.contains("did not answer"), "{r:?}");
    assert!(r.hint.as_deref().unwrap().contains("tries again"), "{r:?}");
    let t = transcript_text(&r);
    assert!(t.contains("POST /v1.0/users/"), "{t}");
    assert!(t.contains("(no answer after"), "{t}");
    let tokens = rig.entra.issued_tokens();
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 1, "one token for Graph");
    assert!(
        tokens.iter().all(|tok| !t.contains(tok)),
        "the token is masked"
    );
    held.abort();
}

#[tokio::test]
async fn a_graph_redirect_is_never_followed_and_the_token_goes_nowhere_else() {
    let rig = Rig::start(SmtpConfig::default()).await;
    // Where the redirect points: it must never be asked anything.
    let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    let reached = Arc::new(AtomicUsize::new(0));
    let watcher = tokio::spawn({
        let reached = reached.clone();
        async move {
            while let Ok((_tcp, _)) = elsewhere.accept().await {
                reached.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let redirecting = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = redirecting.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn({
        let heads = heads.clone();
        async move {
            while let Ok((mut tcp, _)) = redirecting.accept().await {
                let head = read_head(&mut tcp).await;
                heads.lock().unwrap().push(head);
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{elsewhere_port}/v1.0/users/x/sendMail\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
            }
        }
    });
    let (r, _) = test_against(&rig, port, Duration::from_secs(5)).await;
    assert_fails(&r, Stage::Send, Some("307"));
    assert!(r.message.contains("redirect"), "{r:?}");
    assert!(
        r.hint.as_deref().unwrap().contains("--graph-endpoint"),
        "{r:?}"
    );
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer "),
        "the redirecting server got the real request: {}",
        heads[0]
    );
    // Give a followed redirect every chance to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    assert!(transcript_text(&r).contains("307"), "{r:?}");
    server.abort();
    watcher.abort();
}

#[tokio::test]
async fn a_graph_answer_that_trickles_in_is_cut_at_the_time_limit() {
    let rig = Rig::start(SmtpConfig::default()).await;
    // Answers 403 at once, then its promised body one byte a quarter second.
    let slow = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = slow.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = slow.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut tcp).await;
                let head = "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nrequest-id: slow-1\r\n\r\n";
                if tcp.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..100_000 {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if tcp.write_all(b" ").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (r, took) = test_against(&rig, port, Duration::from_millis(800)).await;
    assert!(
        took < Duration::from_secs(5),
        "the body was waited for: {took:?}"
    );
    // The status arrived: it is what the diagnosis goes by.
    assert_fails(&r, Stage::Send, Some("403"));
    let t = transcript_text(&r);
    assert!(t.contains("403 Forbidden (request-id: slow-1"), "{t}");
    server.abort();
}

#[tokio::test]
async fn mailroom_check_sends_over_graph_and_explains_a_refusal() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let graph = rig._rig.graph.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.json");
    std::fs::write(&file, serde_json::to_string(&graph_settings()).unwrap()).unwrap();
    let check = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .arg("check")
            .arg("--settings")
            .arg(&file)
            .args(["--to", &recipient()])
            .args([
                "--entra-authority",
                &rig.args.entra_authority.clone().unwrap(),
            ])
            .args(["--graph-endpoint", &graph.endpoint()])
            .arg("--extra-ca-file")
            .arg(rig.args.extra_ca_file.clone().unwrap())
            .output()
    };
    let ok = check().await.unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{out}");
    assert!(
        out.contains("token    ok") && out.contains("send     ok"),
        "{out}"
    );
    assert!(out.contains("aud=https://graph.microsoft.com"), "{out}");
    assert!(out.contains("POST /v1.0/users/"), "{out}");
    assert!(
        out.contains("ok: Microsoft Graph accepted the test email"),
        "{out}"
    );
    assert!(!out.contains(mailroom_shared::fixtures::SECRET), "{out}");
    let sent = graph.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].mailbox, mailer());
    let ids = mailroom_fakes::graph::header_values(&sent[0].mime, "Message-ID");
    assert!(
        out.contains(&format!("(Message-ID {}, request-id ", ids[0])),
        "the id Graph got: {out}"
    );

    graph.fail_next(mailroom_fakes::GraphError::new(
        403,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    ));
    let refused = check().await.unwrap();
    let out = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(out.contains("failed at send (ErrorAccessDenied)"), "{out}");
    assert!(
        out.contains("fix: ") && out.contains("New-ManagementRoleAssignment"),
        "{out}"
    );
    assert_eq!(graph.messages().len(), 1, "nothing more was accepted");
}
