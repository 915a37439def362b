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

/// How often the jump watcher compares the clocks. Two clock reads per tick
/// cost nothing, and a short period lets tokens heal within seconds.
pub const JUMP_CHECK_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// Wall-clock moves beyond what monotonic time explains by more than this
/// count as a jump (protocols.md §5: "more than a minute").
pub const JUMP_THRESHOLD: std::time::Duration = std::time::Duration::from_secs(60);

/// Detects steps of the wall clock: between two [`JumpDetector::check`]s the
/// wall clock should advance by the same amount as the monotonic clock; a
/// difference beyond the threshold means an administrator or NTP stepped it.
#[derive(Debug, Clone, Copy)]
pub struct JumpDetector {
    wall: OffsetDateTime,
    mono: Instant,
    threshold: std::time::Duration,
}

impl JumpDetector {
    /// Starts measuring from now.
    pub fn new(clock: &dyn Clock, threshold: std::time::Duration) -> Self {
        Self {
            wall: clock.now(),
            mono: clock.monotonic(),
            threshold,
        }
    }

    /// The jump (whole seconds, positive: forward) since the previous check,
    /// if it exceeds the threshold. Either way the next check measures from now.
    pub fn check(&mut self, clock: &dyn Clock) -> Option<i64> {
        let (wall, mono) = (clock.now(), clock.monotonic());
        let wall_moved = wall - self.wall;
        let mono_moved = mono.saturating_duration_since(self.mono);
        self.wall = wall;
        self.mono = mono;
        let jump = wall_moved - mono_moved;
        // Rounded: the two clocks are read a few microseconds apart.
        (jump.unsigned_abs() > self.threshold).then(|| jump.as_seconds_f64().round() as i64)
    }
}

/// Watches for wall-clock jumps every `period` until `shutdown`, awaiting
/// `on_jump(seconds)` for each one (so jumps are handled one at a time).
pub fn watch_jumps<F, Fut>(
    clock: SharedClock,
    period: std::time::Duration,
    threshold: std::time::Duration,
    on_jump: F,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut detector = JumpDetector::new(clock.as_ref(), threshold);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            if let Some(secs) = detector.check(clock.as_ref()) {
                // No reset afterwards: the handling time passes on both
                // clocks alike, and a jump during it must still be seen.
                on_jump(secs).await;
            }
        }
    })
}

/// "+N s" / "-N s", the form the audit log and the logs use for a jump.
pub fn signed_secs(secs: i64) -> String {
    format!("{secs:+} s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn detector_sees_forward_and_backward_jumps_only() {
        let clock = OffsetClock::default();
        let mut d = JumpDetector::new(&clock, JUMP_THRESHOLD);
        assert_eq!(d.check(&clock), None);
        clock.jump(time::Duration::seconds(30));
        assert_eq!(d.check(&clock), None, "30 s is below the threshold");
        clock.jump(time::Duration::hours(2));
        let j = d.check(&clock);
        assert_eq!(j, Some(7200));
        assert_eq!(d.check(&clock), None, "measured from the last check");
        clock.jump(-time::Duration::hours(2));
        let j = d.check(&clock);
        assert_eq!(j, Some(-7200));
        assert_eq!(signed_secs(7200), "+7200 s");
        assert_eq!(signed_secs(-5), "-5 s");
    }

    #[tokio::test]
    async fn watcher_calls_back_and_stops() {
        let clock = Arc::new(OffsetClock::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let s2 = seen.clone();
        let handle = watch_jumps(
            clock.clone(),
            Duration::from_millis(20),
            JUMP_THRESHOLD,
            move |secs| {
                let s2 = s2.clone();
                async move {
                    if let Ok(mut v) = s2.lock() {
                        v.push(secs);
                    }
                }
            },
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        clock.jump(-time::Duration::minutes(10));
        for _ in 0..100 {
            if seen.lock().map(|v| !v.is_empty()).unwrap_or(false) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = seen.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0], -600);
        stop.cancel();
        assert!(
            tokio::time::timeout(Duration::from_secs(1), handle)
                .await
                .is_ok()
        );
    }
}
