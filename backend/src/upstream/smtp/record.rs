//! The recorded stream: lettre talks through [`RecStream`], which does the
//! I/O over plain TCP or TLS, records both directions line by line
//! ([`Recorder`], capped), and bounds what the server may send ([`Inbound`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use mailroom_shared::api::{Direction, TranscriptLine};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The most lines a transcript keeps.
pub const TRANSCRIPT_MAX_LINES: usize = 1_000;
/// The most bytes a transcript keeps, all lines together.
pub const TRANSCRIPT_MAX_BYTES: usize = 256 * 1024;
/// The longest line the server may send (RFC 5321 allows 512 bytes); a longer
/// one ends the session, so a hostile server cannot fill our memory.
pub const MAX_LINE: usize = 8 * 1024;
/// The most bytes the server may send in answer to one command.
pub const MAX_REPLY: usize = 64 * 1024;

/// Records both directions, line by line, in the order they happen, within
/// [`TRANSCRIPT_MAX_LINES`] and [`TRANSCRIPT_MAX_BYTES`], each line cut at [`MAX_LINE`].
#[derive(Default)]
pub(super) struct Recorder {
    lines: Vec<TranscriptLine>,
    bytes: usize,
    cut: bool,
    partial_client: Vec<u8>,
    pub(super) partial_server: Vec<u8>,
    /// Complete server lines seen, kept or not.
    pub(super) server_lines: usize,
    /// Set while a message's content is written: not recorded (docs/API.md §11).
    content: bool,
}

impl Recorder {
    /// A message's content follows: one line says how big, and the client's
    /// bytes are not recorded until [`Recorder::content_ends`].
    pub(super) fn content_begins(&mut self, bytes: usize) {
        self.partial_client.clear();
        self.keep(
            Direction::Client,
            format!("(message content, {bytes} bytes, not recorded)").as_bytes(),
        );
        self.content = true;
    }

    /// The content was written; record the client's lines again.
    pub(super) fn content_ends(&mut self) {
        self.content = false;
        self.partial_client.clear();
    }

    fn push(&mut self, dir: Direction, bytes: &[u8]) {
        if self.content && dir == Direction::Client {
            return;
        }
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let buf = match dir {
                Direction::Client => &mut self.partial_client,
                Direction::Server => &mut self.partial_server,
            };
            let room = (MAX_LINE + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.ends_with(b"\n") {
                let line = std::mem::take(buf);
                if dir == Direction::Server {
                    self.server_lines += 1;
                }
                self.keep(dir, &line);
            }
        }
    }

    fn keep(&mut self, dir: Direction, raw: &[u8]) {
        if self.cut {
            return;
        }
        let mut text = String::from_utf8_lossy(raw)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if text.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str(" … (line cut at 8 KiB)");
        }
        if self.lines.len() + 1 >= TRANSCRIPT_MAX_LINES
            || self.bytes + text.len() > TRANSCRIPT_MAX_BYTES
        {
            self.cut = true;
            self.lines.push(TranscriptLine {
                dir,
                line: "… (transcript cut: it is limited to 1,000 lines and 256 KiB)".into(),
            });
            return;
        }
        self.bytes += text.len();
        self.lines.push(TranscriptLine { dir, line: text });
    }

    pub(super) fn finish(&mut self) -> Vec<TranscriptLine> {
        for dir in [Direction::Client, Direction::Server] {
            let buf = match dir {
                Direction::Client => std::mem::take(&mut self.partial_client),
                Direction::Server => std::mem::take(&mut self.partial_server),
            };
            if !buf.is_empty() {
                self.keep(dir, &buf);
            }
        }
        std::mem::take(&mut self.lines)
    }

    /// The last reply from the server: its code and text.
    pub(super) fn last_reply(&self) -> Option<(u16, String)> {
        let mut lines: Vec<&str> = Vec::new();
        for l in self.lines.iter().rev() {
            if l.dir != Direction::Server {
                break;
            }
            lines.push(&l.line);
        }
        lines.reverse();
        let first = lines.first()?;
        let code: u16 = first.get(..3)?.parse().ok()?;
        let text = lines
            .iter()
            .map(|l| l.get(4..).unwrap_or_default().trim())
            .collect::<Vec<_>>()
            .join(" ");
        Some((code, text))
    }
}

pub(super) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// How much the server has sent: since its last line end, and since our last command.
#[derive(Default)]
pub(super) struct Inbound {
    line: usize,
    reply: usize,
}

impl Inbound {
    /// Counts bytes from the server; an error once a line or a reply is too long.
    fn count(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reply += bytes.len();
        match bytes.iter().rposition(|b| *b == b'\n') {
            Some(pos) => self.line = bytes.len() - pos - 1,
            None => self.line += bytes.len(),
        }
        if self.line > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the server sent a line longer than {} KiB", MAX_LINE / 1024),
            ));
        }
        if self.reply > MAX_REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the server sent more than {} KiB in one reply",
                    MAX_REPLY / 1024
                ),
            ));
        }
        Ok(())
    }
}

/// The stream lettre talks through; shares its connection with the session so
/// STARTTLS can be done here, with our verifier, while lettre waits. It bounds
/// what the server may send ([`MAX_LINE`], [`MAX_REPLY`]) before lettre buffers it.
#[derive(Clone)]
pub(super) struct RecStream {
    pub(super) conn: Arc<Mutex<Conn>>,
    pub(super) log: Arc<Mutex<Recorder>>,
    pub(super) inbound: Arc<Mutex<Inbound>>,
    pub(super) peer: SocketAddr,
}

impl fmt::Debug for RecStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecStream")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for RecStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let result = match &mut *conn {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        };
        if let Poll::Ready(Ok(())) = result {
            let new = &buf.filled()[before..];
            self.log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Direction::Server, new);
            let counted = self
                .inbound
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .count(new);
            if let Err(e) = counted {
                *conn = Conn::Gone;
                return Poll::Ready(Err(e));
            }
        }
        result
    }
}

impl AsyncWrite for RecStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let result = match &mut *conn {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, data),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            Conn::Gone => Poll::Ready(Err(gone())),
        };
        if let Poll::Ready(Ok(n)) = result {
            self.log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Direction::Client, &data[..n]);
            self.inbound.lock().unwrap_or_else(|e| e.into_inner()).reply = 0;
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *conn {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *conn {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncTokioStream for RecStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transcript_is_capped() {
        let mut r = Recorder::default();
        r.push(Direction::Server, &vec![b'x'; 20_000]);
        r.push(Direction::Server, b"\r\n250 ok\r\n");
        for _ in 0..2_000 {
            r.push(Direction::Client, b"NOOP\r\n");
        }
        let lines = r.finish();
        assert!(
            lines[0].line.len() < MAX_LINE + 64 && lines[0].line.ends_with("(line cut at 8 KiB)")
        );
        assert_eq!(lines[1].line, "250 ok");
        assert_eq!(lines.len(), TRANSCRIPT_MAX_LINES);
        assert!(lines.last().unwrap().line.contains("transcript cut"));
        let mut big = Recorder::default();
        for _ in 0..100 {
            big.push(
                Direction::Server,
                &[vec![b'y'; 8_000], b"\n".to_vec()].concat(),
            );
        }
        let total: usize = big.finish().iter().map(|l| l.line.len()).sum();
        assert!(total <= TRANSCRIPT_MAX_BYTES + 128, "{total}");
    }

    #[test]
    fn long_lines_and_replies_are_refused() {
        let mut i = Inbound::default();
        assert!(i.count(&vec![b'a'; MAX_LINE]).is_ok());
        assert!(i.count(b"a").is_err());
        let mut i = Inbound::default();
        let line = [vec![b'b'; 1000], b"\r\n".to_vec()].concat();
        let results: Vec<bool> = (0..70).map(|_| i.count(&line).is_ok()).collect();
        assert!(results[..60].iter().all(|ok| *ok) && !results[69]);
    }
}
