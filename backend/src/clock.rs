//! The time, for everything that expires: sessions, lockouts, save times,
//! retries. A module of its own, so every area can take it without depending
//! on the application state.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The time, for everything that expires: sessions, lockouts, save times.
/// Tests use [`ManualClock`] to move it forward.
pub trait Clock: Send + Sync + fmt::Debug {
    /// A monotonic instant.
    fn now(&self) -> Instant;
    /// The wall-clock time, UTC.
    fn wall(&self) -> time::OffsetDateTime;

    /// The wall-clock time in RFC 3339.
    fn rfc3339(&self) -> String {
        self.wall()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }
}

/// A moment given as Unix seconds, in RFC 3339; `None` out of range.
pub fn rfc3339_at(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// An RFC 3339 moment as Unix seconds; `None` when it is not one.
pub fn unix_of(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    wall_start: time::OffsetDateTime,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            start: Instant::now(),
            wall_start: time::OffsetDateTime::now_utc(),
            offset: Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    /// A clock standing still at `wall` (its monotonic time starting now).
    pub fn at(wall: time::OffsetDateTime) -> Self {
        ManualClock {
            wall_start: wall,
            ..ManualClock::default()
        }
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }
    fn wall(&self) -> time::OffsetDateTime {
        self.wall_start + self.offset()
    }
}

/// A clock whose first `panics` wall readings panic, then tells the time:
/// a stand-in, in tests, for a bug in a long-running task.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FaultyClock {
    /// Wall readings so far, the panicking ones too.
    pub readings: std::sync::atomic::AtomicU32,
    /// How many readings panic.
    pub panics: u32,
}

#[cfg(test)]
impl Clock for FaultyClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> time::OffsetDateTime {
        let n = self
            .readings
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(n >= self.panics, "a bug at reading {n}");
        time::OffsetDateTime::now_utc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manual_clock_moves_only_when_told() {
        let c = ManualClock::default();
        let (a, w) = (c.now(), c.wall());
        assert_eq!(c.now(), a);
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now() - a, Duration::from_secs(90));
        assert_eq!((c.wall() - w).whole_seconds(), 90);
        assert!(c.rfc3339().ends_with('Z'));
    }
}
