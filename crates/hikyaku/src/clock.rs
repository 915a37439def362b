//! Every read of the wall clock and the monotonic clock goes through [`Clock`],
//! so that token expiry, user-code expiry, backoff and clock-jump detection can
//! be tested without sleeping and without touching the system time.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use time::OffsetDateTime;

/// A source of wall-clock and monotonic time.
pub trait Clock: Send + Sync + 'static {
    /// The wall-clock time (UTC).
    fn now(&self) -> OffsetDateTime;
    /// A monotonic instant, unaffected by changes of the system time.
    fn monotonic(&self) -> Instant;
    /// The wall-clock time as unix seconds, the unit the store uses.
    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The shared clock handed to every service.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
    #[allow(clippy::disallowed_methods)]
    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// The system clock shifted by an adjustable offset: tests use it to simulate
/// an administrator or NTP stepping the wall clock while monotonic time runs on.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset: Mutex<time::Duration>,
}

impl OffsetClock {
    /// Moves the wall clock by `by` (positive: forward).
    pub fn jump(&self, by: time::Duration) {
        if let Ok(mut offset) = self.offset.lock() {
            *offset += by;
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> OffsetDateTime {
        let offset = self.offset.lock().map(|o| *o).unwrap_or_default();
        SystemClock.now() + offset
    }
    fn monotonic(&self) -> Instant {
        SystemClock.monotonic()
    }
}

/// Converts unix seconds from the store back to a time, saturating on nonsense.
pub fn from_unix(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
