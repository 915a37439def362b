//! Messages on their way into the queue: the mail transactions open at the
//! intake (MAIL given, the message not yet handed over). A group commit
//! that has new jobs to write can wait a moment for those about to arrive
//! and write them with the same statement, rather than write one message
//! now and the others in the next statement a moment later: clients whose
//! `250` came from the same commit send their next messages together.
//! It waits only for those on their way when it began: under a steady load
//! there is always another one opening.
//!
//! Only transactions opened within [`YOUNG`] count: a device that takes
//! seconds over a large message is not waited for by everyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long after its MAIL a transaction still counts as about to arrive.
/// A small message takes a few round trips and a write (well under this,
/// even on a busy host); one that takes longer is no longer waited for.
pub const YOUNG: Duration = Duration::from_millis(10);

/// How long a commit waits at most for them: about what writing a batch
/// takes, so that a message that would have waited for the next statement
/// anyway is not delayed by more than that.
pub const WAIT: Duration = Duration::from_millis(1);

/// The open mail transactions of one instance's intakes. Cheap to share.
#[derive(Debug)]
pub struct Arrivals {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Instant>>,
    /// [`WAIT`] and [`YOUNG`], or longer in tests that must not race the
    /// clock.
    wait: Duration,
    young: Duration,
}

impl Default for Arrivals {
    fn default() -> Self {
        Self::new(WAIT, YOUNG)
    }
}

impl Arrivals {
    /// Counts transactions for commits that wait up to `wait` for those
    /// opened less than `young` ago.
    pub fn new(wait: Duration, young: Duration) -> Self {
        Self {
            next: AtomicU64::new(0),
            open: Mutex::default(),
            wait,
            young,
        }
    }

    /// How long a commit waits at most for the messages expected.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// A transaction opened now; it stops counting when the guard drops
    /// (the message handed to the queue, or the transaction ended).
    pub fn open(self: &Arc<Self>) -> Arriving {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Instant::now());
        Arriving {
            arrivals: Arc::clone(self),
            id,
        }
    }

    /// Until when the youngest of the transactions opened less than
    /// [`YOUNG`] ago (by default) and still open counts (`None`: none is).
    pub fn expected(&self) -> Option<Instant> {
        self.expected_before(u64::MAX)
    }

    /// Marks now: [`Arrivals::expected_before`] the mark leaves out the
    /// transactions opened after it.
    pub fn mark(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// [`Arrivals::expected`], of the transactions opened before `mark`.
    pub fn expected_before(&self, mark: u64) -> Option<Instant> {
        self.fold_young(mark, None, |until, t| until.max(Some(t)))
    }

    /// How many transactions opened before `mark` are young and open.
    #[cfg(test)]
    fn count_before(&self, mark: u64) -> usize {
        self.fold_young(mark, 0, |n, _| n + 1)
    }

    /// Folds, over the young transactions opened before `mark`, until when
    /// each counts.
    fn fold_young<B>(&self, mark: u64, init: B, f: impl FnMut(B, Instant) -> B) -> B {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(id, _)| **id < mark)
            .map(|(_, opened)| *opened + self.young)
            .filter(|young_until| *young_until > now)
            .fold(init, f)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        // A panic elsewhere cannot leave the map half-changed in a way
        // that matters here: at worst a transaction counts a moment longer.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One open mail transaction, counted by [`Arrivals`] until dropped.
#[derive(Debug)]
pub struct Arriving {
    arrivals: Arc<Arrivals>,
    id: u64,
}

impl Drop for Arriving {
    fn drop(&mut self) {
        self.arrivals.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_transactions_count_until_handed_over_or_old() {
        let arrivals = Arc::new(Arrivals::default());
        assert_eq!(arrivals.expected(), None);
        let a = arrivals.open();
        let b = arrivals.open();
        assert_eq!(arrivals.count_before(u64::MAX), 2);
        let until = arrivals.expected();
        assert!(until.is_some_and(|t| t > Instant::now() && t <= Instant::now() + YOUNG));
        drop(a);
        assert_eq!(arrivals.count_before(u64::MAX), 1, "b is still open");
        // A slow transaction stops counting once it is no longer young.
        std::thread::sleep(YOUNG + Duration::from_millis(2));
        assert_eq!(arrivals.expected(), None);
        let c = arrivals.open();
        assert_eq!(arrivals.count_before(u64::MAX), 1);
        let mark = arrivals.mark();
        let d = arrivals.open();
        assert_eq!(arrivals.count_before(u64::MAX), 2);
        assert_eq!(arrivals.count_before(mark), 1, "d opened after the mark");
        drop(c);
        assert_eq!(arrivals.expected_before(mark), None);
        drop((b, d));
        assert_eq!(arrivals.expected(), None);
        assert!(
            arrivals.lock().is_empty(),
            "dropped guards leave nothing behind"
        );
    }
}
