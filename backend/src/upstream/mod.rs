//! The way out: everything that talks to Microsoft and to the upstream SMTP
//! server, for the test email and the delivery engine alike. [`Upstream`]
//! ([`client`]) gets the Entra token ([`entra`]), opens a signed-in SMTP
//! session ([`smtp`]) and explains any failure ([`diagnose`]), masking every
//! secret ([`mask`]). The test email is one session sending one message
//! ([`test_message`]); delivery sends many over one session.

pub mod certificate;
pub mod client;
pub mod diagnose;
pub mod entra;
pub mod graph;
pub mod mask;
pub mod smtp;
pub mod test_message;

pub use client::{is_plain_http_to_remote, Timeouts, Upstream, MAX_CONCURRENT_TESTS};
pub use mask::{mask_text, mask_transcript};
pub use test_message::{build_message, TestMessage};

/// The most of an HTTP answer's body read from Entra or Graph (and by
/// `sendmail` from Mailroom). Their JSON is a few KB (a token 2 to 4 KB); a
/// longer body is a proxy's page or a server gone wrong, and is not read to
/// its end, so it can never fill memory.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The most of an upstream's own words kept where they are stored or shown
/// (a recipient's outcome, an attempt, a pause, an event, a diagnosis); the
/// transcript keeps its own, larger, caps. Exchange's longest replies and
/// Entra's and Graph's error texts are a few hundred characters; a server
/// sending kilobytes is cut here instead of being stored with every
/// recipient.
pub const MAX_ANSWER_TEXT: usize = 1_000;

/// `text` cut at [`MAX_ANSWER_TEXT`] characters, ending with "…" when cut.
pub fn cut_text(text: String) -> String {
    match cut_at(&text, MAX_ANSWER_TEXT) {
        std::borrow::Cow::Owned(cut) => cut,
        std::borrow::Cow::Borrowed(_) => text,
    }
}

/// `text` cut at `max` characters, ending with "…" when cut (a chat post's
/// event, a receiver's words, an upstream's answer).
pub fn cut_at(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]).into(),
        None => text.into(),
    }
}

/// Whether a failed request's error chain ([`entra::error_chain`]) is a
/// certificate rustls refused during the handshake, not a server that
/// could not be reached: rustls says "invalid peer certificate: …".
pub fn untrusted_certificate(chain: &str) -> bool {
    chain.contains("invalid peer certificate")
}

/// Reads at most `cap` bytes of an answer's body: `(body, true)` when that
/// was all of it, `(first cap bytes, false)` when it was longer (the rest is
/// left unread and the connection is dropped, not reused).
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &[u8]) -> reqwest::Response {
        reqwest::Response::from(axum::http::Response::new(body.to_vec()))
    }

    #[test]
    fn upstream_text_is_kept_to_its_first_thousand_characters() {
        let short = "250 2.0.0 OK <id@contoso.com> [Hostname=AM0PR01MB1234]".to_string();
        assert_eq!(cut_text(short.clone()), short);
        let exact = "é".repeat(MAX_ANSWER_TEXT);
        assert_eq!(cut_text(exact.clone()), exact);
        let long = cut_text("é".repeat(60_000));
        assert_eq!(long.chars().count(), MAX_ANSWER_TEXT + 1);
        assert!(long.ends_with("é…"), "cut on a character, marked");
    }

    #[tokio::test]
    async fn an_answer_is_read_to_its_cap_and_no_further() {
        let read =
            |body: &'static [u8], cap| async move { read_capped(answer(body), cap).await.unwrap() };
        assert_eq!(read(b"", 4).await, (Vec::new(), true));
        assert_eq!(read(b"abcd", 4).await, (b"abcd".to_vec(), true));
        assert_eq!(read(b"abcde", 4).await, (b"abcd".to_vec(), false));
        assert_eq!(read(b"abcde", 0).await, (Vec::new(), false));
    }
}
