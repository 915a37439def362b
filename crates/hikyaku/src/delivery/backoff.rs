//! Retry schedule after a temporary failure: 1 min, 2, 4, 8 … capped at 1 h,
//! each stretched by a random 0–25 % so that jobs deferred together (the
//! upstream was down for everyone) do not all come back in the same second.
//! A job is retried until `delivery.max_age_hours` after it was accepted; then
//! it fails with the last reply.

/// Delay before the first retry.
pub const FIRST_SECS: i64 = 60;
/// Longest delay between two attempts (before jitter).
pub const CAP_SECS: i64 = 3600;
/// How often a job waiting for re-authorization (or for the rate limit of
/// its account) looks again. These waits do not count as attempts.
pub const WAIT_RECHECK_SECS: i64 = 60;

/// The delay after attempt number `attempt` (1 = the first attempt failed),
/// with `jitter` in `[0, 1)` adding up to a quarter of the delay.
pub fn delay_secs(attempt: i64, jitter: f64) -> i64 {
    let doublings = u32::try_from((attempt - 1).clamp(0, 16)).unwrap_or(16);
    let base = FIRST_SECS.saturating_mul(1_i64 << doublings).min(CAP_SECS);
    let jitter = jitter.clamp(0.0, 1.0);
    // Truncation is fine: whole seconds.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let extra = (base as f64 * 0.25 * jitter) as i64;
    base + extra
}

/// [`delay_secs`] with random jitter.
pub fn next_delay_secs(attempt: i64) -> i64 {
    delay_secs(attempt, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_doubles_and_caps() {
        let plain: Vec<i64> = (1..=9).map(|n| delay_secs(n, 0.0)).collect();
        assert_eq!(plain, vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(delay_secs(0, 0.0), 60);
        assert_eq!(delay_secs(i64::MAX, 0.0), 3600);
        assert_eq!(delay_secs(1, 0.999), 74);
        assert_eq!(delay_secs(20, 0.999), 4499);
    }

    #[test]
    fn jitter_stays_in_range() {
        for attempt in 1..12 {
            let base = delay_secs(attempt, 0.0);
            for _ in 0..50 {
                let d = next_delay_secs(attempt);
                assert!(d >= base && d <= base + base / 4, "{attempt}: {d}");
            }
        }
    }
}
