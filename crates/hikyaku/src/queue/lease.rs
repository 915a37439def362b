//! Leases: a claimed job belongs to its worker until its lease ends. A worker
//! that dies leaves the lease to expire, and the job is put back (deferred,
//! due at once); a job this instance is still delivering is never put back,
//! whatever its lease says (a slow upstream, the wall clock stepped forward),
//! since sending it again would send it twice.

use crate::i18n::Reason;

/// How long a claimed job belongs to its worker.
pub const LEASE_SECS: i64 = 600;
/// A delivery is abandoned (and deferred) this long before its lease ends.
pub const LEASE_MARGIN_SECS: i64 = 60;

/// The end of a lease taken at `now`.
pub const fn until(now: i64) -> i64 {
    now.saturating_add(LEASE_SECS)
}

/// How long one delivery may take before it is abandoned.
pub const fn delivery_limit() -> std::time::Duration {
    std::time::Duration::from_secs((LEASE_SECS - LEASE_MARGIN_SECS).unsigned_abs())
}

/// Why a `sending` job went back to the queue: its last reply, unless it has one.
pub fn expired() -> Reason {
    Reason::new("job-lease-expired")
}

/// The same after a restart: every `sending` job was interrupted.
pub fn restarted() -> Reason {
    Reason::new("job-restarted")
}

/// A delivery that shutdown cut short.
pub fn shutdown() -> Reason {
    Reason::new("job-shutdown")
}
