//! Memory for messages being received. HTTP bodies and the relay's DATA
//! together hold at most the budget's bytes, so many large messages at once
//! (one app's runaway uploader, or hundreds of scanners) wait their turn
//! instead of exhausting the server's memory for everyone: each byte of a
//! message was held about 2.6 times over while it is checked and stored
//! (20 uploads of 20 MB at once took 1.06 GB), so 1,024 HTTP connections of
//! 25 MiB each would need about 65 GiB. With the default budget, 80 such
//! uploads at once peaked at 1.2 GB, the allocator's slack included.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a message waits for room by default before it is refused (HTTP
/// `429`, SMTP `451 4.3.1`), to be sent again.
pub const WAIT: Duration = Duration::from_secs(30);

/// The budget's least size by default: many ordinary messages at once never
/// wait for it.
pub const DEFAULT_LEAST: u64 = 256 * 1024 * 1024;

/// Permits are KiB, so a budget of terabytes fits a `u32` request.
const UNIT: u64 = 1024;

/// The bytes of messages being received at once, shared by HTTP and the
/// relay.
#[derive(Clone, Debug)]
pub struct Budget {
    room: Arc<Semaphore>,
    kib: u32,
    wait: Duration,
}

impl Budget {
    /// A budget of `configured` bytes, else four times the largest message
    /// (at least [`DEFAULT_LEAST`]); never less than `largest`, so the
    /// largest message can always be received alone. A message waits up to
    /// `wait` for room.
    pub fn new(configured: Option<u64>, largest: u64, wait: Duration) -> Budget {
        let bytes = configured
            .unwrap_or_else(|| largest.saturating_mul(4).max(DEFAULT_LEAST))
            .max(largest);
        let kib = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Budget {
            room: Arc::new(Semaphore::new(kib as usize)),
            kib,
            wait,
        }
    }

    /// The bytes held now by messages being received.
    pub fn held(&self) -> u64 {
        u64::from(self.kib).saturating_sub(self.room.available_permits() as u64) * UNIT
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.kib) * UNIT
    }

    /// What the server says when a message found no room within [`WAIT`].
    pub fn full_text(&self) -> String {
        format!(
            "Mailroom is receiving {} MiB of messages at once, its limit; nothing was stored. Send this message again in a few seconds.",
            self.bytes() / (1024 * 1024)
        )
    }
}

/// Room held in a [`Budget`] until it is dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    held: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.held
            .as_ref()
            .map_or(0, |p| p.num_permits() as u64 * UNIT)
    }

    /// Grows the room held to `bytes` in all (at most the whole budget),
    /// waiting up to the budget's wait; false when there was no room in
    /// time, and what was held stays held.
    pub async fn cover(&mut self, budget: &Budget, bytes: u64) -> bool {
        let want = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .min(budget.kib);
        let held = self.held.as_ref().map_or(0, |p| p.num_permits() as u32);
        if want <= held {
            return true;
        }
        let more = budget.room.clone().acquire_many_owned(want - held);
        match tokio::time::timeout(budget.wait, more).await {
            Ok(Ok(permit)) => {
                match &mut self.held {
                    Some(p) => p.merge(permit),
                    None => self.held = Some(permit),
                }
                true
            }
            // Timed out (a closed semaphore never happens: it is never closed).
            _ => false,
        }
    }

    /// Gives back everything held.
    pub fn release(&mut self) {
        self.held = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_budget_is_four_messages_and_never_less_than_one() {
        assert_eq!(Budget::new(None, 25 * MIB, WAIT).bytes(), 256 * MIB);
        assert_eq!(Budget::new(None, 100 * MIB, WAIT).bytes(), 400 * MIB);
        assert_eq!(
            Budget::new(Some(10 * MIB), 25 * MIB, WAIT).bytes(),
            25 * MIB
        );
        assert_eq!(
            Budget::new(Some(64 * MIB), 25 * MIB, WAIT).bytes(),
            64 * MIB
        );
        // A size past every limit is held to what a semaphore counts.
        assert!(Budget::new(None, u64::MAX, WAIT).bytes() >= 1024 * 1024 * MIB);
        assert!(Budget::new(None, 25 * MIB, WAIT)
            .full_text()
            .contains("256 MiB"));
    }

    #[tokio::test]
    async fn room_is_shared_waited_for_and_given_back() {
        let wait = Duration::from_millis(50);
        let budget = Budget::new(Some(4 * MIB), 1024, wait);
        let mut a = Reservation::default();
        assert!(a.cover(&budget, 3 * MIB).await);
        assert_eq!(a.bytes(), 3 * MIB);
        // Growing to less than is held takes nothing more.
        assert!(a.cover(&budget, MIB).await);
        assert_eq!(a.bytes(), 3 * MIB);
        let mut b = Reservation::default();
        assert!(b.cover(&budget, MIB).await, "the last MiB is free");
        assert_eq!(budget.held(), 4 * MIB);
        // Full: the next waits its time, then gives up holding nothing new.
        let mut c = Reservation::default();
        let before = tokio::time::Instant::now();
        assert!(!c.cover(&budget, 1).await);
        assert!(before.elapsed() >= wait);
        assert_eq!(c.bytes(), 0);
        // Growing past the whole budget asks only for the whole budget.
        assert!(!b.cover(&budget, 100 * MIB).await);
        assert_eq!(b.bytes(), MIB, "what was held stays held");
        // Room given back is taken by whoever waits.
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move {
                let mut c = Reservation::default();
                let ok = c.cover(&budget, 2 * MIB).await;
                (ok, c.bytes())
            }
        });
        tokio::task::yield_now().await;
        a.release();
        assert_eq!(waiting.await.unwrap(), (true, 2 * MIB));
        drop(b);
        let mut whole = Reservation::default();
        assert_eq!(budget.held(), 0);
        assert!(whole.cover(&budget, 4 * MIB).await, "all given back");
    }
}
