//! A plain-socket SMTP client for wire-level tests of the relay.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A plain-socket SMTP client for wire-level tests.
pub struct Wire {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Wire {
    pub async fn connect(addr: SocketAddr) -> (Wire, String) {
        let mut wire = Wire::from_stream(TcpStream::connect(addr).await.unwrap());
        let greeting = wire.reply().await;
        (wire, greeting)
    }

    /// Over a connected stream, nothing read yet.
    pub fn from_stream(stream: TcpStream) -> Wire {
        let (r, w) = stream.into_split();
        Wire {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// The reading and writing halves (what was buffered stays in the reader).
    #[allow(dead_code)]
    pub fn into_parts(
        self,
    ) -> (
        BufReader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
    ) {
        (self.reader, self.writer)
    }

    /// One whole reply (all its lines), or "" when the server closed.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line))
                .await
                .expect("a reply in time")
                .unwrap_or(0);
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    #[allow(dead_code)]
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    pub async fn command(&mut self, text: &str) -> String {
        self.send(&format!("{text}\r\n")).await;
        self.reply().await
    }

    pub async fn auth_plain(&mut self, user: &str, pass: &str) -> String {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.command(&format!("AUTH PLAIN {token}")).await
    }
}

/// Connects until the relay greets with 220 (a freed place may take a moment).
#[allow(dead_code)]
pub async fn wait_greeted(addr: SocketAddr) {
    let started = std::time::Instant::now();
    loop {
        let (_, greeting) = Wire::connect(addr).await;
        if greeting.starts_with("220") {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{greeting}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
