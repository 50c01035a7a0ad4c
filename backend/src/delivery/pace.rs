//! Graph's own throttling limits, kept ahead of time (REFERENCE.md,
//! "Microsoft Graph sendMail"): per app and mailbox, 10,000 requests in 10
//! minutes and 150 MB uploaded in 5 minutes. Past either, Graph answers
//! `429` and every message of the profile waits for its `Retry-After`. A
//! burst of scans from a copier, each a PDF of about 2 MB (a request of
//! about 3.6 MB once the attachment and then the whole message are base64),
//! passes 150 MB in about forty messages: under a minute and a half at the
//! profile's 30 a minute. Each profile's workers
//! share one [`GraphPace`], which makes a message wait until both windows
//! have room for its request instead.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Graph's limits for one app and mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphLimits {
    /// Requests in [`GraphLimits::requests_span`].
    pub requests: u64,
    pub requests_span: Duration,
    /// Request bytes (the base64 body) in [`GraphLimits::bytes_span`].
    pub bytes: u64,
    pub bytes_span: Duration,
}

impl Default for GraphLimits {
    fn default() -> Self {
        GraphLimits {
            requests: 10_000,
            requests_span: Duration::from_secs(600),
            bytes: 150_000_000,
            bytes_span: Duration::from_secs(300),
        }
    }
}

/// What went out in the last `span`: a sliding log, oldest first.
#[derive(Debug)]
struct Window {
    limit: u64,
    span: Duration,
    log: VecDeque<(Instant, u64)>,
    total: u64,
}

impl Window {
    fn new(limit: u64, span: Duration) -> Self {
        Window {
            limit: limit.max(1),
            span,
            log: VecDeque::new(),
            total: 0,
        }
    }

    /// Forgets what left the window by `now`.
    fn forget(&mut self, now: Instant) {
        while let Some(&(at, amount)) = self.log.front() {
            if at + self.span > now {
                break;
            }
            self.log.pop_front();
            self.total -= amount;
        }
    }

    /// The earliest time from `now` at which `amount` more fits. An amount
    /// over the whole limit goes once the window is empty.
    fn room_at(&self, now: Instant, amount: u64) -> Instant {
        let (mut total, mut at) = (self.total, now);
        for &(sent, n) in &self.log {
            if total + amount <= self.limit {
                break;
            }
            total -= n;
            at = at.max(sent + self.span);
        }
        at
    }

    fn add(&mut self, at: Instant, amount: u64) {
        self.log.push_back((at, amount));
        self.total += amount;
    }
}

/// Graph counts a request when it arrives, a little after Mailroom takes
/// its time (a new connection, a slow upload): Mailroom keeps each request
/// in its windows this much longer.
pub const MARGIN: Duration = Duration::from_secs(1);

/// A profile's [`GraphPace`], as its workers share it.
pub type Shared = std::sync::Arc<std::sync::Mutex<GraphPace>>;

/// The two windows of one profile, shared by its workers.
#[derive(Debug)]
pub struct GraphPace {
    requests: Window,
    bytes: Window,
    /// The latest time taken so far: times are taken in order, so each
    /// window's log stays sorted.
    last: Option<Instant>,
}

impl GraphPace {
    pub fn new(limits: GraphLimits) -> Self {
        GraphPace {
            requests: Window::new(limits.requests, limits.requests_span + MARGIN),
            bytes: Window::new(limits.bytes, limits.bytes_span + MARGIN),
            last: None,
        }
    }

    /// Takes the earliest time from `now` at which a request of `bytes`
    /// fits in both windows, and counts the request at that time.
    pub fn take(&mut self, now: Instant, bytes: u64) -> Instant {
        self.requests.forget(now);
        self.bytes.forget(now);
        let at = self
            .requests
            .room_at(now, 1)
            .max(self.bytes.room_at(now, bytes))
            .max(self.last.unwrap_or(now));
        self.requests.add(at, 1);
        self.bytes.add(at, bytes);
        self.last = Some(at);
        at
    }
}

/// The bytes of a `sendMail` request for a stored message of `len` bytes:
/// its base64 form, with room for the request-only `Bcc` line (docs/API.md
/// §12), which is short against the limits.
pub fn request_bytes(len: usize, recipients: usize) -> u64 {
    let bcc = 6 + recipients * 256;
    ((len + bcc) as u64).div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn limits(bytes: u64, requests: u64) -> GraphLimits {
        GraphLimits {
            requests,
            requests_span: Duration::from_secs(600),
            bytes,
            bytes_span: Duration::from_secs(300),
        }
    }

    #[test]
    fn graphs_own_limits_are_the_default() {
        let l = GraphLimits::default();
        assert_eq!((l.requests, l.requests_span.as_secs()), (10_000, 600));
        assert_eq!((l.bytes, l.bytes_span.as_secs()), (150 * MB, 300));
    }

    #[test]
    fn uploads_wait_once_the_bytes_of_five_minutes_are_used() {
        let t0 = Instant::now();
        let mut pace = GraphPace::new(GraphLimits::default());
        // Fifty 3 MB requests fit; the fifty-first waits until the first
        // leaves the window, the next until the second does.
        for i in 0..50 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(pace.take(now, 3 * MB), now, "request {i}");
        }
        let now = t0 + Duration::from_secs(50);
        let window = Duration::from_secs(300) + MARGIN;
        assert_eq!(pace.take(now, 3 * MB), t0 + window);
        assert_eq!(pace.take(now, 3 * MB), t0 + window + Duration::from_secs(1));
        // A small one waits for room too (and never before those taken).
        assert_eq!(pace.take(now, 1), t0 + window + Duration::from_secs(2));
        // Later, once the window has emptied, at once again.
        let later = t0 + Duration::from_secs(1000);
        assert_eq!(pace.take(later, 3 * MB), later);
    }

    #[test]
    fn requests_wait_once_ten_thousand_went_in_ten_minutes() {
        let t0 = Instant::now();
        let mut pace = GraphPace::new(limits(u64::MAX, 3));
        assert_eq!(pace.take(t0, 10), t0);
        assert_eq!(
            pace.take(t0 + Duration::from_secs(1), 10),
            t0 + Duration::from_secs(1)
        );
        assert_eq!(
            pace.take(t0 + Duration::from_secs(2), 10),
            t0 + Duration::from_secs(2)
        );
        let fourth = pace.take(t0 + Duration::from_secs(3), 10);
        assert_eq!(fourth, t0 + Duration::from_secs(600) + MARGIN);
    }

    #[test]
    fn a_request_larger_than_the_limit_goes_alone_once_the_window_is_empty() {
        let t0 = Instant::now();
        let mut pace = GraphPace::new(limits(10 * MB, 10_000));
        let window = Duration::from_secs(300) + MARGIN;
        assert_eq!(pace.take(t0, 4 * MB), t0);
        assert_eq!(pace.take(t0, 20 * MB), t0 + window);
        assert_eq!(pace.take(t0 + window, MB), t0 + 2 * window);
    }

    #[test]
    fn the_request_size_covers_base64_and_the_bcc_line() {
        assert_eq!(request_bytes(0, 0), 8);
        let n = request_bytes(3_000_000, 1);
        assert!((4_000_000..4_001_000).contains(&n), "{n}");
        assert!(request_bytes(300, 100) > request_bytes(300, 1));
    }
}
