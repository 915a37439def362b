//! The states of a job and the moves between them.
//!
//! ```text
//! queued ──claim──▶ sending ──250──▶ sent
//!   ▲                │  │
//!   │ retry          │  └──5xx, too old──▶ failed ──retry──▶ queued
//!   │                ▼
//! deferred ◀──4xx, wait, lease expired, restart
//!   └──claim──▶ sending
//! ```
//!
//! The store keeps a state as its name (`queued`, …), so the rows of older
//! versions read as they are.

use std::fmt;
use std::str::FromStr;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Stored, waiting for a worker.
    Queued,
    /// Claimed by a worker under a lease.
    Sending,
    /// Waiting until its next attempt (a temporary failure, a wait, an interruption).
    Deferred,
    /// Accepted by the upstream; the body is dropped.
    Sent,
    /// Given up; the body is kept for a retry.
    Failed,
}

/// A state name the store does not know (a damaged or foreign row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct UnknownState(pub String);

impl JobState {
    /// Every state, in the order the Remote UI lists them.
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Sending,
        JobState::Deferred,
        JobState::Sent,
        JobState::Failed,
    ];

    /// The name stored in the database and shown by the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Sending => "sending",
            JobState::Deferred => "deferred",
            JobState::Sent => "sent",
            JobState::Failed => "failed",
        }
    }

    /// Whether a job in this state is waiting for a worker (queued or deferred).
    pub const fn is_waiting(self) -> bool {
        matches!(self, JobState::Queued | JobState::Deferred)
    }

    /// Whether a job may move from `self` to `next`.
    pub const fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            // A claim (a handed-over job is stored straight as sending).
            (Queued | Deferred, Sending)
            // The attempt's outcome.
            | (Sending, Sent | Failed | Deferred)
            // Retry now.
            | (Deferred | Failed | Queued, Queued)
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

impl PartialEq<&str> for JobState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for JobState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl serde::Serialize for JobState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::JobState::{self, *};

    #[test]
    fn each_transition_is_allowed_or_refused() {
        let allowed = [
            (Queued, Sending),
            (Deferred, Sending),
            (Sending, Sent),
            (Sending, Failed),
            (Sending, Deferred),
            (Deferred, Queued),
            (Failed, Queued),
            (Queued, Queued),
        ];
        for from in JobState::ALL {
            for to in JobState::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
        // In words: nothing leaves sent; a job being sent is neither retried
        // nor claimed again; nothing skips the claim.
        assert!(JobState::ALL.iter().all(|s| !Sent.can_become(*s)));
        assert!(!Sending.can_become(Queued) && !Sending.can_become(Sending));
        assert!(!Queued.can_become(Sent) && !Deferred.can_become(Failed));
    }

    #[test]
    fn states_read_back_from_their_names() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
            assert_eq!(s, s.as_str());
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(
            "Sent".parse::<JobState>(),
            Err(super::UnknownState("Sent".into()))
        );
    }
}
