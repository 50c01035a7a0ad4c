//! Memory for messages being received. HTTP bodies and the relay's DATA
//! together hold at most the budget's bytes, so many large messages at once
//! (one app's runaway uploader, or hundreds of scanners) wait their turn
//! instead of exhausting the server's memory for everyone: each byte of a
//! message was held about 2.6 times over while it is checked and stored
//! (20 uploads of 20 MB at once took 1.06 GB), so 1,024 HTTP connections of
//! 25 MiB each would need about 65 GiB. With the default budget, 80 such
//! uploads at once peaked at 1.2 GB, the allocator's slack included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
/// relay. One sender (an app, or a trusted network's client) holds at most
/// half of it (or one largest message), so one app's uploads, stalled
/// mid-body on purpose or not, never keep the others waiting.
#[derive(Clone, Debug)]
pub struct Budget {
    room: Arc<Semaphore>,
    kib: u32,
    share_kib: u32,
    wait: Duration,
    /// Each sender's share, while it holds any of it.
    senders: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

fn kib_of(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT))
        .unwrap_or(u32::MAX)
        .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX))
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
        let kib = kib_of(bytes);
        Budget {
            room: Arc::new(Semaphore::new(kib as usize)),
            kib,
            share_kib: (kib / 2).max(kib_of(largest)).min(kib),
            wait,
            senders: Arc::default(),
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

    /// The most one sender holds, in bytes.
    pub fn share(&self) -> u64 {
        u64::from(self.share_kib) * UNIT
    }

    /// `sender`'s share; shares no one holds any of are forgotten.
    fn share_of(&self, sender: &str) -> Arc<Semaphore> {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let full = self.share_kib as usize;
        senders.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < full);
        senders
            .entry(sender.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(full)))
            .clone()
    }

    /// What the server says when a message found no room in time.
    pub fn full_text(&self) -> String {
        format!(
            "Mailroom is receiving {} MiB of messages at once, its limit (one sender may hold {} MiB of it); nothing was stored. Send this message again in a few seconds.",
            self.bytes() / (1024 * 1024),
            self.share() / (1024 * 1024)
        )
    }
}

/// Room held in a [`Budget`] for one sender's message until it is dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    held: Option<OwnedSemaphorePermit>,
    /// The same amount, of the sender's share.
    own: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.held
            .as_ref()
            .map_or(0, |p| p.num_permits() as u64 * UNIT)
    }

    /// Grows the room held for `sender` to `bytes` in all (at most its
    /// share), waiting up to the budget's wait; false when there was no room
    /// in time, and what was held stays held.
    pub async fn cover(&mut self, budget: &Budget, sender: &str, bytes: u64) -> bool {
        let want = kib_of(bytes).min(budget.share_kib);
        let held = self.held.as_ref().map_or(0, |p| p.num_permits() as u32);
        if want <= held {
            return true;
        }
        let more = want - held;
        let share = budget.share_of(sender);
        let both = async {
            let own = share.acquire_many_owned(more).await.ok()?;
            let room = budget.room.clone().acquire_many_owned(more).await.ok()?;
            Some((own, room))
        };
        // A timeout drops what was taken of the two: nothing more is held.
        match tokio::time::timeout(budget.wait, both).await {
            Ok(Some((own, room))) => {
                for (slot, permit) in [(&mut self.own, own), (&mut self.held, room)] {
                    match slot {
                        Some(p) => p.merge(permit),
                        None => *slot = Some(permit),
                    }
                }
                true
            }
            // Timed out (the semaphores are never closed).
            _ => false,
        }
    }

    /// Gives back everything held.
    pub fn release(&mut self) {
        self.held = None;
        self.own = None;
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

    #[test]
    fn one_sender_holds_half_or_one_largest_message() {
        assert_eq!(Budget::new(None, 25 * MIB, WAIT).share(), 128 * MIB);
        assert_eq!(Budget::new(Some(4 * MIB), 3 * MIB, WAIT).share(), 3 * MIB);
        assert_eq!(Budget::new(Some(2 * MIB), 3 * MIB, WAIT).share(), 3 * MIB);
    }

    #[tokio::test]
    async fn room_is_shared_waited_for_and_given_back() {
        let wait = Duration::from_millis(50);
        let budget = Budget::new(Some(4 * MIB), 1024, wait);
        assert_eq!(budget.share(), 2 * MIB);
        let mut a = Reservation::default();
        assert!(a.cover(&budget, "app_a", MIB).await);
        assert_eq!(a.bytes(), MIB);
        // Growing to less than is held takes nothing more; past the share
        // takes the share.
        assert!(a.cover(&budget, "app_a", 1).await);
        assert_eq!(a.bytes(), MIB);
        assert!(a.cover(&budget, "app_a", 3 * MIB).await);
        assert_eq!(a.bytes(), 2 * MIB);
        // Its share held, the same sender waits its time, then gives up
        // holding nothing new; another sender is not held up by it.
        let mut more = Reservation::default();
        let before = tokio::time::Instant::now();
        assert!(!more.cover(&budget, "app_a", 1).await);
        assert!(before.elapsed() >= wait);
        assert_eq!(more.bytes(), 0);
        let (mut b, mut c) = (Reservation::default(), Reservation::default());
        assert!(b.cover(&budget, "app_b", MIB).await);
        assert!(c.cover(&budget, "app_c", MIB).await, "the last MiB");
        assert_eq!(budget.held(), 4 * MIB);
        // The whole budget held: everyone waits.
        let mut d = Reservation::default();
        assert!(!d.cover(&budget, "app_d", 1).await);
        assert_eq!(budget.held(), 4 * MIB, "nothing of d's share is kept");
        // Room given back is taken by whoever waits.
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move {
                let mut d = Reservation::default();
                let ok = d.cover(&budget, "app_d", 2 * MIB).await;
                (ok, d.bytes())
            }
        });
        tokio::task::yield_now().await;
        a.release();
        assert_eq!(waiting.await.unwrap(), (true, 2 * MIB));
        drop((b, c));
        assert_eq!(budget.held(), 0);
        let mut again = Reservation::default();
        assert!(
            again.cover(&budget, "app_a", 2 * MIB).await,
            "all given back"
        );
        assert_eq!(
            budget.senders.lock().unwrap().len(),
            1,
            "idle shares are forgotten"
        );
    }
}
