//! Isolation, the limits part: the relay's per-address cap, PROXY protocol,
//! AUTH deadline, command budget, session cap and write timeout (docs/API.md
//! §11); the HTTP server's header and body timeouts (kept-alive connections
//! too) and connection cap, and
//! lockouts that only slow guessing, behind a trusted proxy too (§2); the
//! open-files limit raised at start. Each is tried with a raw socket or a
//! real client, as an attacker would.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::wire::Wire;
use common::*;
use mailroom_fakes::Loopback;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn smtp(server: &Running) -> SocketAddr {
    server.smtp.expect("the relay runs")
}

fn http_addr(server: &Running) -> SocketAddr {
    server.url.trim_start_matches("http://").parse().unwrap()
}

/// Connects, sends `first` at once (before the greeting, as a PROXY header
/// is), and returns the connection and its first reply.
async fn connect_with(addr: SocketAddr, first: &[u8]) -> (Wire, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut w = Wire::from_stream(stream);
    w.send_bytes(first).await;
    let reply = w.reply().await;
    (w, reply)
}

fn proxy_v1(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 127.0.0.1 40000 2525\r\n").into_bytes()
}

fn proxy_v2(source: [u8; 4]) -> Vec<u8> {
    let addresses = ppp::v2::IPv4::new(source, [127, 0, 0, 1], 40000, 2525);
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap()
}

#[tokio::test]
async fn one_address_gets_only_its_share_of_the_relay() {
    let log = CapturedLog::start();
    let (_rig, server) = relay_rig(|a| a.relay.smtp_max_connections_per_ip = 2).await;
    let (w1, g1) = Wire::connect(smtp(&server)).await;
    let (_w2, g2) = Wire::connect(smtp(&server)).await;
    assert!(g1.starts_with("220") && g2.starts_with("220"), "{g1} {g2}");
    let (_, g3) = Wire::connect(smtp(&server)).await;
    assert!(g3.starts_with("421 4.7.0"), "{g3}");
    assert!(g3.contains("your address"), "{g3}");
    // The log says so, with the fix for devices behind one address; a
    // flood of refusals makes one line a minute.
    for _ in 0..5 {
        let (_, g) = Wire::connect(smtp(&server)).await;
        assert!(g.starts_with("421 4.7.0"), "{g}");
    }
    let text = log.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("relay: a connection refused"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("peer=127.0.0.1 limit=2"), "{}", lines[0]);
    assert!(lines[0].contains("--smtp-trusted-network"), "{}", lines[0]);
    // A place comes back when a connection ends.
    drop(w1);
    common::wire::wait_greeted(smtp(&server)).await;
}

#[tokio::test]
async fn trusted_networks_are_exempt_from_the_per_address_cap() {
    let (_rig, server) = relay_rig(|a| {
        a.relay.smtp_max_connections_per_ip = 1;
        a.relay.smtp_trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let (w, g) = Wire::connect(smtp(&server)).await;
        assert!(g.starts_with("220"), "{g}");
        open.push(w);
    }
}

#[tokio::test]
async fn a_load_balancer_names_the_client_with_proxy_v1_and_v2() {
    let (_rig, server) = relay_rig(|a| {
        a.relay.smtp_max_connections_per_ip = 1;
        a.relay.smtp_proxy_protocol = vec!["127.0.0.1/32".parse().unwrap()];
        a.relay.smtp_trusted_networks = vec!["198.51.100.0/24".parse().unwrap()];
    })
    .await;
    // Each client address counts on its own, whatever the balancer's is.
    let (_a, g) = connect_with(smtp(&server), &proxy_v1("192.0.2.10")).await;
    assert!(g.starts_with("220"), "{g}");
    let (_, g) = connect_with(smtp(&server), &proxy_v1("192.0.2.10")).await;
    assert!(g.starts_with("421 4.7.0"), "the same client again: {g}");
    let (_b, g) = connect_with(smtp(&server), &proxy_v2([192, 0, 2, 11])).await;
    assert!(g.starts_with("220"), "another client, over v2: {g}");
    let (_, g) = connect_with(smtp(&server), &proxy_v2([192, 0, 2, 11])).await;
    assert!(g.starts_with("421 4.7.0"), "{g}");
    // The named client is the one the relay's rules use: a trusted network.
    let (mut t, g) = connect_with(smtp(&server), &proxy_v1("198.51.100.7")).await;
    assert!(g.starts_with("220"), "{g}");
    t.command("EHLO printer").await;
    let r = t.command(&format!("MAIL FROM:<{}>", mailer())).await;
    assert!(r.starts_with("250"), "trusted by its real address: {r}");
    // Not a PROXY header from the balancer: refused.
    let (_, g) = connect_with(smtp(&server), b"EHLO no-header-here\r\n").await;
    assert!(g.starts_with("421 4.7.0") && g.contains("PROXY"), "{g}");
}

#[tokio::test]
async fn a_forged_proxy_header_is_refused_from_anyone_else() {
    let (_rig, server) = relay_rig(|a| {
        a.relay.smtp_trusted_networks = vec!["192.0.2.0/24".parse().unwrap()];
    })
    .await;
    for header in [proxy_v1("192.0.2.10"), proxy_v2([192, 0, 2, 10])] {
        let (mut w, greeting) = Wire::connect(smtp(&server)).await;
        assert!(greeting.starts_with("220"), "{greeting}");
        w.send_bytes(&header).await;
        let r = w.reply().await;
        assert!(r.starts_with("554 5.7.1"), "{r}");
        assert_eq!(w.reply().await, "", "closed");
    }
}

#[tokio::test]
async fn auth_must_come_within_its_deadline_and_command_budget() {
    let (_rig, server) = relay_rig(|a| a.relay.smtp_auth_timeout = Duration::from_secs(1)).await;
    // Silent after EHLO: closed at the deadline, not at the 5-minute idle.
    let (mut w, _) = Wire::connect(smtp(&server)).await;
    w.command("EHLO t").await;
    let started = Instant::now();
    let r = w.reply().await;
    assert!(r.starts_with("421 4.7.0") && r.contains("AUTH"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // NOOPs do not buy time: the 21st command before AUTH closes.
    let (_rig, server) = relay_rig(|_| {}).await;
    let (mut w, _) = Wire::connect(smtp(&server)).await;
    for i in 0..20 {
        let r = w.command("NOOP").await;
        assert!(r.starts_with("250"), "command {i}: {r}");
    }
    let r = w.command("NOOP").await;
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert_eq!(w.reply().await, "", "closed");
    // After AUTH the budget no longer applies.
    let (app, key) = server.new_app(json!({"name": "Busy"})).await;
    let (mut w, _) = Wire::connect(smtp(&server)).await;
    w.command("EHLO t").await;
    assert!(w.auth_plain(&app, &key).await.starts_with("235"));
    for _ in 0..40 {
        assert!(w.command("NOOP").await.starts_with("250"));
    }
}

#[tokio::test]
async fn a_session_ends_at_its_time_limit_however_busy() {
    let (_rig, server) = relay_rig(|a| a.relay.smtp_session_limit = Duration::from_secs(2)).await;
    let (app, key) = server.new_app(json!({"name": "Chatty"})).await;
    let (mut w, _) = Wire::connect(smtp(&server)).await;
    w.command("EHLO t").await;
    assert!(w.auth_plain(&app, &key).await.starts_with("235"));
    let started = Instant::now();
    loop {
        let r = w.command("NOOP").await;
        if r.starts_with("421 4.4.2") {
            assert!(r.contains("time limit"), "{r}");
            break;
        }
        assert!(r.starts_with("250"), "{r}");
        assert!(started.elapsed() < Duration::from_secs(10), "never cut");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn a_client_that_never_reads_loses_its_connection() {
    let (_rig, server) = relay_rig(|a| {
        a.relay.smtp_write_timeout = Duration::from_secs(1);
        a.relay.smtp_max_connections_per_ip = 1;
    })
    .await;
    let (app, key) = server.new_app(json!({"name": "Deaf"})).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(smtp(&server)).await.unwrap();
    let mut w = Wire::from_stream(stream);
    assert!(w.reply().await.starts_with("220"));
    w.command("EHLO t").await;
    assert!(w.auth_plain(&app, &key).await.starts_with("235"));
    // Pipeline NOOPs and never read a reply.
    let (mut reader, mut writer) = w.into_parts();
    let chunk = "NOOP\r\n".repeat(10_000);
    let started = Instant::now();
    let cut = loop {
        match tokio::time::timeout(Duration::from_secs(30), writer.write_all(chunk.as_bytes()))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never cut");
    };
    if !cut {
        // Our writes stalled too: the server must have closed its side.
        let mut sink = vec![0u8; 1 << 20];
        let eof = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match reader.read(&mut sink).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert_eq!(eof, Ok(true), "the server closed the connection");
    }
    drop((reader, writer));
    // Its place is given back: the same address is served again.
    common::wire::wait_greeted(smtp(&server)).await;
}

#[tokio::test]
async fn the_http_server_times_out_slow_headers_and_slow_bodies() {
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |a| {
        a.http_header_timeout = Duration::from_secs(1);
        a.http_request_timeout = Duration::from_secs(1);
    })
    .await;
    // Headers that never end.
    let mut s = TcpStream::connect(http_addr(&server)).await.unwrap();
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    // A body that stops halfway.
    let mut s = TcpStream::connect(http_addr(&server)).await.unwrap();
    s.write_all(
        format!(
            "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"token\": \"{}",
            &TOKEN[..4]
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "answered or closed, never held");
    let text = String::from_utf8_lossy(&buf);
    // 408, not 400: the request was not bad, the link was slow, and a
    // client (`mailroom sendmail` exits 75) sends it again.
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "a client error, never a 5xx: {text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{text}"
    );
    // It says why, not only that the body "could not be read".
    assert!(
        text.contains("did not arrive within 1 second (--http-request-timeout)"),
        "{text}"
    );
    // A body that trickles in, a byte well within each second: the whole
    // body has its time, not each part (it held its place for ever).
    let s = TcpStream::connect(http_addr(&server)).await.unwrap();
    let (mut read_half, mut write_half) = s.into_split();
    let trickle = tokio::spawn(async move {
        let head = "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
        write_half.write_all(head.as_bytes()).await.ok()?;
        for _ in 0..40 {
            write_half.write_all(b" ").await.ok()?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Some(())
    });
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), read_half.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "answered or closed, never held");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4"),
        "a client error, never a 5xx: {text}"
    );
    trickle.abort();
    // And the server still answers.
    let r = server
        .http
        .get(format!("{}/api/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_let_go() {
    // One connection allowed. A client pipelines requests and reads none of
    // the answers: once the socket's buffers are full the server cannot
    // write, and after the write timeout it closes the connection, so the
    // next client is served instead of waiting for ever.
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |a| {
        a.http_max_connections = 1;
        a.http_write_timeout = Duration::from_secs(1);
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(http_addr(&server)).await.unwrap();
    let writer = tokio::spawn(async move {
        let request = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(256);
        // Writes until the server stops reading (or lets go); never reads.
        loop {
            match tokio::time::timeout(Duration::from_secs(30), stuck.write_all(&request)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return "closed",
                Err(_) => return "stalled",
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        server.http.get(format!("{}/api/health", server.url)).send(),
    )
    .await
    .expect("the next client is served once the stuck one is let go")
    .unwrap();
    assert_eq!(r.status(), 200);
    writer.abort();
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_their_turn() {
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |a| a.http_max_connections = 2).await;
    let idle1 = TcpStream::connect(http_addr(&server)).await.unwrap();
    let _idle2 = TcpStream::connect(http_addr(&server)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = format!("{}/api/health", server.url);
    let waiting = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiting.is_finished(), "served past the cap");
    drop(idle1);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a place is free")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

/// Reads one answer from a raw HTTP/1.1 connection: its head and its body
/// of Content-Length bytes.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("the answer has a Content-Length");
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("answered in time")
            .unwrap();
        assert!(n > 0, "closed before the whole answer: {text}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A request's header block is held in memory until it is whole, on each
/// of up to 1,024 connections: past 64 KiB or 100 fields it is refused
/// (`431`) and the connection closed, while a big but real one (a 16 KiB
/// cookie) is served.
#[tokio::test]
async fn request_headers_past_64_kib_are_refused_with_431() {
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |_| {}).await;
    let ask = |extra: String| {
        let addr = http_addr(&server);
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = format!("GET /api/health HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
            // The server may stop reading once it has refused.
            let _ = s.write_all(head.as_bytes()).await;
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    let cookie = format!(
        "Cookie: a={}\r\nConnection: close\r\n",
        "c".repeat(16 * 1024)
    );
    let answer = ask(cookie).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let huge = format!("X-Huge: {}\r\n", "h".repeat(100 * 1024));
    let answer = ask(huge).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let many: String = (0..70)
        .map(|i| format!("X-Field-{i}: {}\r\n", "m".repeat(1000)))
        .collect();
    let answer = ask(many).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Small, but more fields than any client sends.
    let countless: String = (0..101).map(|i| format!("X-F{i}: v\r\n")).collect();
    let answer = ask(countless).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// A kept-alive connection counts among max_connections while it stays
/// open: one that goes quiet after its answers would hold its place for
/// ever, and enough of them would lock every client out. It gets the header
/// timeout to start its next request, as a new connection does.
#[tokio::test]
async fn a_kept_alive_connection_that_goes_quiet_is_let_go() {
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |a| {
        a.http_header_timeout = Duration::from_secs(1);
        a.http_max_connections = 1;
    })
    .await;
    let mut quiet = TcpStream::connect(http_addr(&server)).await.unwrap();
    // Two requests on the one connection: it is kept alive.
    for _ in 0..2 {
        quiet
            .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut quiet).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Then silence, holding the only place: the next client waits.
    let started = Instant::now();
    let url = format!("{}/api/health", server.url);
    let waiting = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), quiet.read_to_end(&mut rest))
        .await
        .expect("the quiet connection is closed")
        .unwrap();
    assert!(rest.is_empty(), "nothing more was sent: {rest:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "closed at the header timeout, not at once: {:?}",
        started.elapsed()
    );
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting client is served once the quiet one is let go")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

/// One client that leaks connections (or floods them) gets its share of the
/// HTTP server's places, never all of them; a reverse proxy, which carries
/// everyone's, is exempt.
#[tokio::test]
async fn one_address_gets_only_its_share_of_the_http_server() {
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |a| a.http_max_connections_per_ip = 2).await;
    let url = format!("{}/api/health", server.url);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(http_addr(&server)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["connection"], "close");
    let body: serde_json::Value = r.json().await.unwrap();
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("Too many connections"), "{body}");
    assert!(body["errors"].is_object(), "{body}");
    // A place given back is taken again.
    held.pop();
    let started = Instant::now();
    loop {
        let r = reqwest::get(&url).await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);

    let proxied = start(&rig, |a| {
        a.http_max_connections_per_ip = 2;
        a.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(http_addr(&proxied)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::get(format!("{}/api/health", proxied.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a trusted proxy has no per-address cap");
}

/// Refusals cost the server little: a flood of connections from one
/// address that never send a request takes none of the places.
#[tokio::test]
async fn connections_refused_for_their_address_take_no_place() {
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |a| {
        a.http_max_connections = 4;
        a.http_max_connections_per_ip = 1;
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(http_addr(&server)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The flood's first connection holds the address's one place; the other
    // 99 were refused at once, holding none of the server's four. Once the
    // first closes, a request is served at once; were refusals to hold
    // places while they wait for a request that never comes, it would
    // queue behind the flood.
    drop(flood.remove(0));
    let url = format!("{}/api/health", server.url);
    let served = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let r = reqwest::get(&url).await.unwrap();
            if r.status() == 200 {
                break;
            }
            assert_eq!(r.status(), 429);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    served.await.expect("the flood holds the server's places");
}

#[tokio::test]
async fn wrong_app_keys_stay_401_and_slow_down_while_the_right_key_passes() {
    let (_rig, server, key) = sending_rig().await;
    let body =
        json!({"to": [mailroom_fakes::addr("a", "example.org")], "subject": "s", "text": "t"});
    for i in 0..5 {
        let (status, _) = server.submit("mr_guess", &body).await;
        assert_eq!(status, 401, "guess {i}");
    }
    let started = Instant::now();
    let (status, _) = server.submit("mr_guess", &body).await;
    assert_eq!(status, 401, "still 401, so sendmail exits 77");
    assert!(started.elapsed() >= Duration::from_millis(1900), "slowed");
    let started = Instant::now();
    let (status, reply) = server.submit(&key, &body).await;
    assert_eq!(status, 202, "{reply}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "never slowed"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_counted_on_its_own() {
    let rig = Loopback::start(Default::default()).await;
    let server = start(&rig, |a| {
        a.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]
    })
    .await;
    let guess = |client: &'static str| {
        server
            .http
            .get(format!("{}/api/settings", server.url))
            .bearer_auth("wrong-admin-token-0123456789abcdef")
            .header("x-forwarded-for", format!("198.51.100.99, {client}"))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(guess("203.0.113.1").await.unwrap().status(), 401);
    }
    assert_eq!(guess("203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(
        guess("203.0.113.2").await.unwrap().status(),
        401,
        "another client behind the same proxy is not locked out"
    );
    // Without --trusted-proxy the header means nothing: all one address.
    let plain = start(&rig, |_| {}).await;
    for i in 0..6 {
        let r = plain
            .http
            .get(format!("{}/api/settings", plain.url))
            .bearer_auth("wrong-admin-token-0123456789abcdef")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), if i < 5 { 401 } else { 429 }, "guess {i}");
    }
}

/// Starts the real binary under `sh` after `ulimit`, with `token` as the
/// admin token; stdout and stderr are piped.
fn start_under_ulimit(ulimit: &str, token: &str, data: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit {ulimit} && exec \"$0\" serve --listen 127.0.0.1:0 --smtp-listen off --data-dir \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_mailroom"))
        .arg(data)
        .env("MAILROOM_ADMIN_TOKEN", token)
        .env("MAILROOM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The soft and hard "Max open files" of a running process.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[tokio::test]
async fn the_open_files_limit_is_raised_to_the_hard_one_at_start() {
    // systemd and most shells start a program at 1,024 open files: 1,024
    // HTTP connections took them all, and the relay's accept and delivery's
    // connections to Microsoft failed ("Too many open files").
    use tokio::io::AsyncBufReadExt;
    let (hard_here, _) = open_files_limits(std::process::id());
    assert!(hard_here >= 256, "this test needs a limit of 256 or more");
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_under_ulimit("-Sn 256", TOKEN, dir.path());
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("it starts")
            .unwrap()
            .expect("mailroom exited before listening");
        if line.starts_with("listening on ") {
            break;
        }
    }
    let (soft, hard) = open_files_limits(pid);
    assert!(soft > 256, "the soft limit was raised from 256: {soft}");
    assert_eq!(soft, hard, "to the hard limit");
}

/// Starts the binary after `ulimit` with a short admin token, which ends
/// the start after the warnings (exit 78); returns its stderr.
async fn refused_under_ulimit(ulimit: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = start_under_ulimit(ulimit, "short-token", dir.path()).wait_with_output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("it ends")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    stderr
}

#[tokio::test]
async fn a_hard_open_files_limit_too_low_for_the_connections_is_named_at_start() {
    // Nothing can raise a hard limit from inside: the admin is told how.
    let stderr = refused_under_ulimit("-n 512").await;
    assert!(
        stderr.contains("only 512 files may be open at once")
            && stderr.contains("LimitNOFILE=65536"),
        "{stderr}"
    );
    // With room for every connection, nothing is said.
    let stderr = refused_under_ulimit("-n 4096").await;
    assert!(!stderr.contains("files may be open"), "{stderr}");
}
