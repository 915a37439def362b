//! The intake's short way to delivery. A message accepted while a delivery
//! worker is free need not be read back from the queue: the intake reserves
//! a place here, stores the job already claimed (`sending`, with a lease) in
//! the same commit that stores it, and hands job and body over from memory.
//! The queue stays the record: a crash before delivery leaves a `sending`
//! job that the next start puts back ([`crate::store::Store::requeue_interrupted`]),
//! exactly like a job claimed from the queue.
//!
//! There are a few places per delivery worker, so a handed-over job waits
//! for at most a few deliveries per worker; when they are all taken, or the
//! message is large, the intake stores the job as `queued` and delivery
//! claims it from the queue later. Messages waiting here are bounded by
//! places × [`MAX_BYTES`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::queue::Job;

/// Places per delivery worker.
pub(crate) const PLACES_PER_WORKER: usize = 4;
/// Larger messages go through the queue: they are few, and the places
/// should not hold much memory.
pub const MAX_BYTES: usize = 1024 * 1024;

/// A job handed over with its body.
pub(crate) struct Fresh {
    pub(crate) job: Job,
    pub(crate) body: Bytes,
    pub(crate) handed_at: Instant,
}

impl Fresh {
    /// A handed-over job older than this is left to its lease: the queue
    /// will give it back (so it is never delivered twice from here).
    pub(crate) const MAX_WAIT: Duration = Duration::from_secs(300);
}

/// The sending side, held by the intake. Cheap to clone.
#[derive(Clone)]
pub struct Handoff {
    tx: mpsc::Sender<Fresh>,
}

/// A reserved place: the job must be stored claimed before it is handed.
pub struct Slot(mpsc::OwnedPermit<Fresh>);

impl Handoff {
    pub(crate) fn channel(places: usize) -> (Handoff, mpsc::Receiver<Fresh>) {
        let (tx, rx) = mpsc::channel(places.max(1));
        (Handoff { tx }, rx)
    }

    /// A place for a message of `size` bytes, if delivery has one free now.
    pub fn reserve(&self, size: usize) -> Option<Slot> {
        if size > MAX_BYTES {
            return None;
        }
        self.tx.clone().try_reserve_owned().ok().map(Slot)
    }
}

impl Slot {
    /// Hands over a job stored claimed and its body.
    pub fn hand(self, job: Job, body: Bytes) {
        self.0.send(Fresh {
            job,
            body,
            handed_at: Instant::now(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_run_out_and_come_back() {
        let (h, mut rx) = Handoff::channel(2);
        let a = h.reserve(10).unwrap();
        let b = h.reserve(10).unwrap();
        assert!(h.reserve(10).is_none(), "only two places");
        drop(a);
        let c = h.reserve(10).unwrap();
        let job = crate::queue::conformance::job("x").claimed(5);
        c.hand(job, Bytes::from_static(b"body"));
        let got = rx.try_recv().unwrap();
        assert_eq!(got.job.id, "x");
        assert_eq!(got.job.state, "sending");
        assert_eq!(&got.body[..], b"body");
        drop(b);
        assert!(h.reserve(10).is_some());
        assert!(
            h.reserve(MAX_BYTES + 1).is_none(),
            "large messages take the queue"
        );
    }
}
