//! Waiting for a condition instead of sleeping a fixed time: the wait ends
//! as soon as the condition holds, and a timeout names what was awaited.

use std::fmt;
use std::time::Duration;

/// How often a condition is checked again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What a check returns: whether the awaited state is reached, with its
/// value. `false`, `None` and `Err` mean "not yet"; an `Err`'s text is
/// quoted when the wait times out, to show how far things got.
pub trait Condition {
    type Output;
    /// `Ok` when reached; otherwise what was seen, when there is something
    /// worth reporting.
    fn reached(self) -> Result<Self::Output, Option<String>>;
}

impl Condition for bool {
    type Output = ();
    fn reached(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Condition for Option<T> {
    type Output = T;
    fn reached(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: fmt::Display> Condition for Result<T, E> {
    type Output = T;
    fn reached(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// A wait that ran out of time.
#[derive(Debug, Clone)]
pub struct TimedOut {
    /// What was awaited.
    pub what: String,
    pub after: Duration,
    /// What the last check reported, if anything.
    pub last: Option<String>,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}",
            self.after, self.what
        )?;
        if let Some(last) = &self.last {
            write!(f, " (last seen: {last})")?;
        }
        Ok(())
    }
}

impl std::error::Error for TimedOut {}

/// Checks `check` every [`POLL_INTERVAL`] until it is reached, for at most
/// `timeout`; the caller decides what a timeout means (for a message with
/// more context than [`eventually`]'s, or a wait that may run out).
pub async fn poll_until<C: Condition>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> C,
) -> Result<C::Output, TimedOut> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await.reached() {
            Ok(v) => return Ok(v),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(TimedOut {
                what: what.to_owned(),
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Checks `check` every [`POLL_INTERVAL`] until it is reached and returns
/// its value; panics after `timeout`, naming `what` was awaited.
pub async fn eventually<C: Condition>(
    timeout: Duration,
    what: &str,
    check: impl AsyncFnMut() -> C,
) -> C::Output {
    match poll_until(timeout, what, check).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_reached() {
        let mut n = 0;
        let v = eventually(Duration::from_secs(5), "three checks", async || {
            n += 1;
            (n >= 3).then_some(n)
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn a_timeout_names_what_was_awaited_and_the_last_error() {
        let e = poll_until(Duration::ZERO, "the answer", async || {
            Err::<(), _>("41 so far")
        })
        .await
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("timed out after 0ns waiting for the answer (last seen: 41 so far)")
        );
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a true bool")]
    async fn eventually_panics_at_the_deadline() {
        eventually(Duration::from_millis(120), "a true bool", async || false).await;
    }
}
