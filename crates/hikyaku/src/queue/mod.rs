//! queue: the durable queue and the life of a job (design.md, "The flow of
//! a message", step 2). intake puts accepted messages in; delivery claims
//! due jobs under a lease and records each attempt's outcome; failure
//! notices come back in as new jobs ([`notices`]).
//!
//! - [`JobState`]: the states and the moves between them.
//! - [`arrivals`]: the messages on their way in, which a group commit may
//!   wait a moment for.
//! - [`lease`]: how long a claim holds and what happens when it runs out.
//! - [`JobStore`]: what the queue needs from a store engine. The SQLite
//!   engine (with its group commit) is in `store::jobs`; a PostgreSQL engine
//!   implements the same trait and passes the same conformance suite
//!   (`conformance`, run by each engine's tests).

pub mod arrivals;
pub mod job;
pub mod lease;
pub mod notices;
pub mod state;

#[cfg(test)]
pub(crate) mod conformance;

use std::future::Future;

use crate::i18n::Reason;

pub use job::{Claimed, Job, JobFilter, NewJob, PIECE, StoredBody};
pub use state::{JobState, UnknownState};

/// What the queue's callers need to know about an engine's error.
pub trait StoreFailure: std::error::Error + Send + Sync + 'static {
    /// No such job (or no body for it).
    fn is_not_found(&self) -> bool;
    /// Retrying later may succeed (disk full, database busy).
    fn is_temporary(&self) -> bool;
}

/// The queue's store interface. Writes on the path of every message
/// (storing, claiming, finishing) may be group-committed by the engine; each
/// call still returns only after its commit, so `Ok` from an enqueue means
/// the message survives a crash or power loss.
///
/// A job's last reply is a [`Reason`]: the engine stores it (as
/// [`Reason::to_json`]) and gives it back in [`Job::last_reply_reason`];
/// stored text that is not a reason (written by an older version) reads
/// back as [`Reason::legacy`].
///
/// Moves follow [`JobState::can_become`]; a write that no longer applies
/// (the job was deleted or requeued meanwhile) changes nothing.
pub trait JobStore: Send + Sync {
    type Error: StoreFailure;

    /// Stores a message durably as `queued`, due at `now`.
    fn enqueue(
        &self,
        job: &NewJob,
        now: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.enqueue_owned(job.clone(), now)
    }

    /// [`JobStore::enqueue`] without copying the message (the intake's path).
    fn enqueue_owned(
        &self,
        job: NewJob,
        now: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stores a message durably as already claimed for delivery (`sending`,
    /// first attempt counted, leased until `lease_until`): the caller hands
    /// it to delivery from memory. Should the process die first, the start
    /// puts it back ([`JobStore::requeue_interrupted`]).
    fn enqueue_claimed(
        &self,
        job: NewJob,
        now: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stores piece `seq` (from 0) of a message still arriving, committed
    /// but part of no job yet: an upload, named by the id its job will
    /// have. On SQLite it goes through the same group commit as the jobs.
    fn store_piece(
        &self,
        upload: &str,
        seq: u32,
        piece: bytes::Bytes,
        now: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// [`JobStore::enqueue_owned`] for a message whose first `pieces`
    /// pieces were stored with [`JobStore::store_piece`] under `job.id`:
    /// `job.body` is its last piece, `size` the whole message's length. The
    /// job and its last piece are committed together, which makes the
    /// upload part of the job; `Ok` means all of it is durable.
    fn enqueue_pieces(
        &self,
        job: NewJob,
        pieces: u32,
        size: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Deletes an upload no job took (the client left, the message was
    /// refused). An upload a job took is kept.
    fn discard_upload(&self, upload: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Deletes the uploads no job took whose last piece was stored before
    /// `before` (left by a crash); returns the pieces deleted.
    fn purge_uploads(&self, before: i64) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// How the message of `id` is stored: whole (and then read), or the
    /// number of its pieces (read one by one with [`JobStore::body_piece`]).
    fn body_layout(&self, id: &str)
    -> impl Future<Output = Result<StoredBody, Self::Error>> + Send;

    /// Piece `seq` (from 0) of a message stored in pieces.
    fn body_piece(
        &self,
        id: &str,
        seq: u32,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send;

    /// Claims up to `limit` due jobs (queued or deferred, due by `now`), most
    /// overdue first, each with its body; leased until `lease_until`, the
    /// attempt counted.
    fn claim_due_jobs_with_bodies(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Claimed>, Self::Error>> + Send;

    /// [`JobStore::claim_due_jobs_with_bodies`] without the bodies.
    fn claim_due_jobs(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Job>, Self::Error>> + Send {
        async move {
            Ok(self
                .claim_due_jobs_with_bodies(now, lease_until, limit)
                .await?
                .into_iter()
                .map(|(job, _)| job)
                .collect())
        }
    }

    /// The most overdue due job, claimed.
    fn claim_due_job(
        &self,
        now: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<Option<Job>, Self::Error>> + Send {
        async move {
            Ok(self
                .claim_due_jobs(now, lease_until, 1)
                .await?
                .into_iter()
                .next())
        }
    }

    /// When the next queued or deferred job falls due.
    fn next_due_at(&self) -> impl Future<Output = Result<Option<i64>, Self::Error>> + Send;

    /// The stored message (kept until the job is sent), whole: a message in
    /// pieces is put together (the HTTP transports and failure notices need
    /// it whole).
    fn job_body(&self, id: &str) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send;

    /// `sending → sent` through account `via`; the body is dropped.
    fn mark_sent(
        &self,
        id: &str,
        via: Option<i64>,
        reply: &Reason,
        now: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// `sending → failed` (`via`: the account that refused it, if one did);
    /// the body is kept for a retry.
    fn mark_failed(
        &self,
        id: &str,
        via: Option<i64>,
        reply: &Reason,
        now: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// `sending → deferred` until `next_attempt_at`. `count_attempt = false`
    /// undoes the attempt count (the job waited, e.g. for re-authorization,
    /// without trying).
    fn defer_job(
        &self,
        id: &str,
        reply: &Reason,
        next_attempt_at: i64,
        now: i64,
        count_attempt: bool,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// At start of the only instance: every `sending` job was interrupted,
    /// whatever its lease says, and is due again now.
    fn requeue_interrupted(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// `sending` jobs whose lease ran out go back to the queue, due now,
    /// except those in `busy` (still being delivered by this instance).
    fn requeue_expired_leases(
        &self,
        now: i64,
        busy: &[String],
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    fn job(&self, id: &str) -> impl Future<Output = Result<Job, Self::Error>> + Send;

    /// Newest first.
    fn jobs(
        &self,
        filter: &JobFilter,
        limit: i64,
        offset: i64,
    ) -> impl Future<Output = Result<Vec<Job>, Self::Error>> + Send;

    /// Makes a deferred or failed job due now (Retry now); a failed job's
    /// attempt count starts again.
    fn retry_job(&self, id: &str, now: i64)
    -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Deletes a job that is not being sent, with its body.
    fn delete_job(&self, id: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Number of jobs in each state (states without jobs left out).
    fn job_counts(&self) -> impl Future<Output = Result<Vec<(JobState, i64)>, Self::Error>> + Send;

    /// The newest failure or deferral reply, for the Portal's "last error".
    fn last_job_error(
        &self,
    ) -> impl Future<Output = Result<Option<(i64, Reason)>, Self::Error>> + Send;
}
