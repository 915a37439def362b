//! Messages per minute per account: the account's own rate, else
//! `delivery.rate_per_minute` (Exchange Online allows 30 per mailbox). Each
//! account has its own window, so accounts never wait on each other. A sliding window of the last minute's
//! starts, on the monotonic clock so that a wall-clock jump changes nothing.
//! A job over the limit is deferred (not counted as an attempt) until the
//! window has room, so it does not hold a worker.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

pub struct RateLimiter {
    per_minute: usize,
    starts: Mutex<HashMap<i64, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(per_minute: u64) -> Self {
        Self {
            per_minute: usize::try_from(per_minute.max(1)).unwrap_or(usize::MAX),
            starts: Mutex::new(HashMap::new()),
        }
    }

    /// The configured default rate.
    pub fn default_rate(&self) -> usize {
        self.per_minute
    }

    /// Takes a slot for `account` at `now`, or says how long until one frees.
    /// `own`: the account's rate per minute (`None`: the default).
    pub fn try_acquire(
        &self,
        account: i64,
        own: Option<u32>,
        now: Instant,
    ) -> Result<(), Duration> {
        let per_minute = own
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(self.per_minute);
        let mut all = match self.starts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let q = all.entry(account).or_default();
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            q.pop_front();
        }
        if q.len() < per_minute {
            q.push_back(now);
            return Ok(());
        }
        let oldest = q.front().copied().unwrap_or(now);
        Err((oldest + WINDOW).saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides_per_account() {
        let r = RateLimiter::new(2);
        let t0 = Instant::now();
        assert!(r.try_acquire(1, None, t0).is_ok());
        assert!(r.try_acquire(1, None, t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(
            r.try_acquire(1, None, t0 + Duration::from_secs(20)),
            Err(Duration::from_secs(40))
        );
        // Another account has its own window.
        assert!(r.try_acquire(2, None, t0 + Duration::from_secs(20)).is_ok());
        assert!(r.try_acquire(1, None, t0 + Duration::from_secs(60)).is_ok());
        assert_eq!(
            r.try_acquire(1, None, t0 + Duration::from_secs(61)),
            Err(Duration::from_secs(9))
        );
        // An account with its own rate: three, then wait.
        for s in 0..3 {
            assert!(
                r.try_acquire(3, Some(3), t0 + Duration::from_secs(s))
                    .is_ok()
            );
        }
        assert_eq!(
            r.try_acquire(3, Some(3), t0 + Duration::from_secs(30)),
            Err(Duration::from_secs(30))
        );
    }
}
