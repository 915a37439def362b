//! The queue on PostgreSQL ([`JobStore`] for [`PgStore`]).
//!
//! - Enqueues and the ends of claims (sent, failed) go through the group
//!   commit ([`super::batch`]): the writes made at once share one statement
//!   per kind, committed with synchronous commit before any of them
//!   returns. A job and its body are written by the same statement.
//! - A claim locks due rows with `FOR UPDATE SKIP LOCKED` (instances claiming
//!   at once pass over each other's rows), counts the attempt and leases the
//!   job to this instance: on a running instance for [`PgStore::lease`]
//!   from the database's now (the instances' clocks may disagree), renewed
//!   by the delivery's heartbeat ([`PgStore::heartbeat`]).
//! - Every later write of the claim (sent, failed, deferred) applies only
//!   while the job is still `sending` under this instance's lease with the
//!   attempt it claimed: (id, attempt) is the fencing token. An instance
//!   whose lease ran out and was taken over therefore records nothing; the
//!   new owner's result stands.
//! - Expired leases of any instance are requeued by any instance; a restart
//!   requeues only this instance's own leases (the others are still
//!   delivering theirs).

use sqlx::Row as _;

use std::time::Instant;

use super::batch::{Finish, Insert, Op};
use super::{DB_NOW, Held, PgStore, pg};
use crate::i18n::Reason;
use crate::queue::{Claimed, Job, JobFilter, JobState, JobStore, NewJob, StoredBody, lease};
use crate::store::jobs::rows::{job_from_row, state};
use crate::store::{Conflict, Result, StoreError};

/// [`crate::store::jobs::rows::JOB_COLUMNS`], qualified (a claim's
/// `RETURNING` also sees the CTE's `id`); rows are read by the same
/// mapping as SQLite's.
const JOB_COLUMNS: &str = "j.id, j.account_id, j.submitter, j.source, j.mail_from, j.rcpt_to, j.header_from, j.subject, j.size, j.state, j.attempts, j.next_attempt_at, j.last_reply, j.via_account_id, j.created_at, j.updated_at";

/// Asserts that a write moves jobs only as the state machine allows (the
/// SQL's `WHERE state …` is what holds it; this keeps the two in step).
fn moves(from: &[JobState], to: JobState) {
    debug_assert!(
        from.iter().all(|f| f.can_become(to)),
        "illegal job move {from:?} → {to}"
    );
}

impl PgStore {
    /// Stores a new job with its whole body through the group commit
    /// ([`super::batch`]), claimed by this instance when `lease_until` is
    /// given.
    async fn insert_job(&self, job: NewJob, now: i64, lease_until: Option<i64>) -> Result<()> {
        let rcpt = rcpt_json(&job)?;
        let asked = Instant::now();
        let id = job.id.clone();
        let lease = lease_until.map(|until| self.lease_terms(now, until));
        self.batch
            .submit(Op::Insert(Insert {
                job,
                rcpt,
                now,
                lease,
            }))
            .await?;
        if lease.is_some() {
            self.held().insert(
                id,
                Held {
                    attempt: 1,
                    since: asked,
                },
            );
        }
        Ok(())
    }

    /// Stores a new job whose body came in `pieces` (the last one is
    /// `job.body`) of `size` bytes in all.
    async fn insert_pieces(&self, job: NewJob, now: i64, pieces: u32, size: i64) -> Result<()> {
        let rcpt = rcpt_json(&job)?;
        // One statement, so one implicit transaction: the job and its last
        // piece are committed together (or not at all) before this returns,
        // which makes the upload the job's.
        sqlx::query(
            "WITH j AS (INSERT INTO jobs (id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, state, attempts, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, $10, $10, $10) RETURNING id), \
             m AS (INSERT INTO messages (job_id, body, pieces) SELECT id, '\\x'::BYTEA, $12 FROM j RETURNING job_id) \
             INSERT INTO message_pieces (upload_id, seq, data, created_at) SELECT job_id, $12 - 1, $11, $10 FROM m",
        )
        .bind(&job.id)
        .bind(job.account_id)
        .bind(&job.submitter)
        .bind(&job.source)
        .bind(&job.mail_from)
        .bind(rcpt)
        .bind(&job.header_from)
        .bind(&job.subject)
        .bind(size)
        .bind(now)
        .bind(&job.body[..])
        .bind(i32::try_from(pieces).unwrap_or(i32::MAX).saturating_add(1))
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(())
    }

    /// The fencing token of this instance's claim of `id`: the attempt it
    /// claimed, forgotten as the claim ends. `None` (a claim made before a
    /// restart) fences by the owner alone.
    fn take_fence(&self, id: &str) -> Option<i64> {
        self.held().remove(id).map(|h| h.attempt)
    }

    async fn finish(
        &self,
        id: &str,
        state: JobState,
        via: Option<i64>,
        reply: &Reason,
        now: i64,
    ) -> Result<()> {
        moves(&[JobState::Sending], state);
        let attempt = self.take_fence(id);
        let recorded = self
            .batch
            .submit(Op::Finish(Finish {
                id: id.to_owned(),
                state,
                via,
                reply: reply.to_json(),
                now,
                attempt,
            }))
            .await?;
        if !recorded {
            lease_lost(id, state);
        }
        Ok(())
    }

    /// `sending` jobs become deferred and due now: those of this instance
    /// (`only_mine`, after a restart) or those whose lease ran out, except
    /// those in `busy`.
    async fn requeue_sending(
        &self,
        now: i64,
        only_mine: bool,
        busy: &[String],
        reason: Reason,
    ) -> Result<u64> {
        moves(&[JobState::Sending], JobState::Deferred);
        // "Mine" after a restart: this process and the earlier processes
        // of the same instance (the name before the '/', see
        // `crate::app::instance_name`), which are gone since this one holds
        // their ports.
        let sql = format!(
            "UPDATE jobs SET state = 'deferred', lease_until = NULL, lease_owner = NULL, next_attempt_at = $1, updated_at = $1, last_reply = COALESCE(last_reply, $3) \
             WHERE state = 'sending' \
             AND (CASE WHEN $2 THEN lease_owner = $5 OR split_part(lease_owner, '/', 1) = split_part($5, '/', 1) OR lease_owner IS NULL \
             ELSE lease_until IS NULL OR lease_until <= COALESCE($6, {DB_NOW}) END) \
             AND NOT (id = ANY($4)) RETURNING id"
        );
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(only_mine)
            .bind(reason.to_json())
            .bind(busy)
            .bind(&*self.owner)
            .bind(self.lease_now(now))
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?;
        let mut held = self.held();
        for id in &ids {
            held.remove(id);
        }
        Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
    }
}

impl PgStore {
    /// Extends this instance's lease of a job it is delivering (a heartbeat
    /// for a long delivery): `false` if the lease is no longer its own (it
    /// ran out and the job was taken over, or it was finished); the delivery
    /// should then stop, since its outcome will not be recorded.
    pub async fn extend_lease(&self, id: &str, lease_until: i64) -> Result<bool> {
        self.renew_lease(id, Some(lease_until), 0).await
    }

    /// A running delivery's heartbeat: its lease runs for another
    /// [`PgStore::lease`] from the database's now. `false`: the lease is
    /// no longer this instance's (taken over, or the job finished); the
    /// delivery must stop and record nothing.
    pub async fn heartbeat(&self, id: &str) -> Result<bool> {
        self.renew_lease(id, None, self.lease_secs).await
    }

    async fn renew_lease(&self, id: &str, until: Option<i64>, length: i64) -> Result<bool> {
        let attempt = self.held().get(id).map(|h| h.attempt);
        let sql = format!(
            "UPDATE jobs SET lease_until = COALESCE($2, {DB_NOW} + $5) WHERE id = $1 AND state = 'sending' AND lease_owner = $3 AND ($4::BIGINT IS NULL OR attempts = $4)"
        );
        // Without waiting for the disk: a renewal lost in a database crash
        // leaves the lease as the previous one set it, as a missed heartbeat
        // does (the delivery renews every third of a lease); the job may
        // then be taken over sooner, which the fencing makes safe.
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(until)
            .bind(&*self.owner)
            .bind(attempt)
            .bind(length)
            .execute(&self.relaxed)
            .await
            .map_err(pg)?
            .rows_affected();
        Ok(n > 0)
    }

    /// Whether this instance still holds its lease of `id`, before a
    /// delivery starts: without asking the database while the lease was
    /// taken less than a third of its length ago (it cannot have run out,
    /// so no other instance can have taken it over); else a heartbeat.
    pub async fn confirm_lease(&self, id: &str) -> Result<bool> {
        let recent = self
            .held()
            .get(id)
            .is_some_and(|h| h.since.elapsed() < self.lease() / 3);
        if recent {
            return Ok(true);
        }
        self.heartbeat(id).await
    }
}

/// The recipients as stored: a JSON array.
fn rcpt_json(job: &NewJob) -> Result<String> {
    serde_json::to_string(&job.rcpt_to)
        .map_err(|e| StoreError::Conflict(Conflict::Corrupt(e.to_string())))
}

/// A late write of a claim that was taken over (or of a job deleted or
/// requeued meanwhile): nothing is recorded, the new owner's result stands.
fn lease_lost(id: &str, state: JobState) {
    tracing::info!(
        job_id = id,
        outcome = %state,
        "queue: the job is no longer leased to this instance; its outcome is not recorded"
    );
}

impl JobStore for PgStore {
    type Error = StoreError;

    async fn enqueue_owned(&self, job: NewJob, now: i64) -> Result<()> {
        self.insert_job(job, now, None).await
    }

    async fn enqueue_claimed(&self, job: NewJob, now: i64, lease_until: i64) -> Result<()> {
        self.insert_job(job, now, Some(lease_until)).await
    }

    async fn claim_due_jobs_with_bodies(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>> {
        moves(&[JobState::Queued, JobState::Deferred], JobState::Sending);
        let sql = format!(
            "WITH c AS (SELECT id FROM jobs WHERE state IN ('queued', 'deferred') AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs j SET state = 'sending', attempts = j.attempts + 1, lease_until = COALESCE($2, {DB_NOW}) + $5, lease_owner = $4, updated_at = $1 \
             FROM c WHERE j.id = c.id \
             RETURNING {JOB_COLUMNS}, j.seq, CASE WHEN j.size <= {max} THEN (SELECT body FROM messages m WHERE m.job_id = j.id AND m.pieces = 0) END AS body",
            // Large bodies are read by the worker that sends them.
            max = crate::queue::job::CLAIM_BODY_MAX
        );
        let (base, length) = self.lease_terms(now, lease_until);
        let asked = Instant::now();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(base)
            .bind(i64::from(limit.max(1)))
            .bind(&*self.owner)
            .bind(length)
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let body: Option<Vec<u8>> = row.try_get("body").map_err(pg)?;
            let seq: i64 = row.try_get("seq").map_err(pg)?;
            claimed.push((seq, job_from_row(row)?, body.map(bytes::Bytes::from)));
        }
        // RETURNING gives no order; deliver the most overdue first.
        claimed.sort_by(|(sa, a, _), (sb, b, _)| {
            (a.next_attempt_at, sa).cmp(&(b.next_attempt_at, sb))
        });
        let mut held = self.held();
        for (_, job, _) in &claimed {
            held.insert(
                job.id.clone(),
                Held {
                    attempt: job.attempts,
                    since: asked,
                },
            );
        }
        Ok(claimed
            .into_iter()
            .map(|(_, job, body)| (job, body))
            .collect())
    }

    async fn next_due_at(&self) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM jobs WHERE state IN ('queued', 'deferred')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(pg)
    }

    async fn job_body(&self, id: &str) -> Result<Vec<u8>> {
        match self.body_layout(id).await? {
            StoredBody::Whole(body) => Ok(body),
            StoredBody::Pieces(n) => {
                let pieces: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT data FROM message_pieces WHERE upload_id = $1 ORDER BY seq",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(pg)?;
                crate::store::jobs::whole(pieces, n)
            }
        }
    }

    async fn store_piece(
        &self,
        upload: &str,
        seq: u32,
        piece: bytes::Bytes,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO message_pieces (upload_id, seq, data, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(upload)
        .bind(i32::try_from(seq).unwrap_or(i32::MAX))
        .bind(&piece[..])
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn enqueue_pieces(&self, job: NewJob, pieces: u32, size: i64, now: i64) -> Result<()> {
        self.insert_pieces(job, now, pieces, size).await
    }

    async fn discard_upload(&self, upload: &str) -> Result<()> {
        sqlx::query("DELETE FROM message_pieces WHERE upload_id = $1 AND NOT EXISTS (SELECT 1 FROM messages WHERE job_id = $1)")
            .bind(upload)
            .execute(&self.pool)
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn purge_uploads(&self, before: i64) -> Result<u64> {
        let sql = crate::store::sql::pg(crate::store::jobs::PURGE_UPLOADS);
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(pg)?
            .rows_affected())
    }

    async fn body_layout(&self, id: &str) -> Result<StoredBody> {
        let row: Option<(i32, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT pieces, CASE WHEN pieces = 0 THEN body END FROM messages WHERE job_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg)?;
        crate::store::jobs::layout(row.map(|(n, body)| (i64::from(n), body)))
    }

    async fn body_piece(&self, id: &str, seq: u32) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT data FROM message_pieces WHERE upload_id = $1 AND seq = $2")
            .bind(id)
            .bind(i32::try_from(seq).unwrap_or(i32::MAX))
            .fetch_optional(&self.pool)
            .await
            .map_err(pg)?
            .ok_or(StoreError::NotFound)
    }

    async fn mark_sent(&self, id: &str, via: Option<i64>, reply: &Reason, now: i64) -> Result<()> {
        self.finish(id, JobState::Sent, via, reply, now).await
    }

    async fn mark_failed(
        &self,
        id: &str,
        via: Option<i64>,
        reply: &Reason,
        now: i64,
    ) -> Result<()> {
        self.finish(id, JobState::Failed, via, reply, now).await
    }

    async fn defer_job(
        &self,
        id: &str,
        reply: &Reason,
        next_attempt_at: i64,
        now: i64,
        count_attempt: bool,
    ) -> Result<()> {
        moves(&[JobState::Sending], JobState::Deferred);
        let attempt = self.take_fence(id);
        let n = sqlx::query(
            "UPDATE jobs SET state = 'deferred', lease_until = NULL, lease_owner = NULL, last_reply = $2, next_attempt_at = $3, updated_at = $4, attempts = attempts - $5 \
             WHERE id = $1 AND state = 'sending' AND lease_owner = $6 AND ($7::BIGINT IS NULL OR attempts = $7)",
        )
        .bind(id)
        .bind(reply.to_json())
        .bind(next_attempt_at)
        .bind(now)
        .bind(if count_attempt { 0_i64 } else { 1 })
        .bind(&*self.owner)
        .bind(attempt)
        .execute(&self.pool)
        .await
        .map_err(pg)?
        .rows_affected();
        if n == 0 {
            lease_lost(id, JobState::Deferred);
        }
        Ok(())
    }

    /// At this instance's start: its own `sending` jobs were interrupted,
    /// whatever their lease says. Other instances' jobs are theirs until
    /// their lease runs out.
    async fn requeue_interrupted(&self, now: i64) -> Result<u64> {
        self.requeue_sending(now, true, &[], lease::restarted())
            .await
    }

    async fn requeue_expired_leases(&self, now: i64, busy: &[String]) -> Result<u64> {
        self.requeue_sending(now, false, busy, lease::expired())
            .await
    }

    async fn job(&self, id: &str) -> Result<Job> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg)?;
        row.as_ref()
            .map(job_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn jobs(&self, filter: &JobFilter, limit: i64, offset: i64) -> Result<Vec<Job>> {
        // The same statement as SQLite's, in PostgreSQL's dialect (ILIKE:
        // SQLite's LIKE ignores the case of ASCII letters).
        let queries =
            crate::store::jobs::listing::history_queries(filter, None, limit, offset, true);
        let rows = crate::fetch_history!(&self.pool, queries, limit).map_err(pg)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_job(&self, id: &str, now: i64) -> Result<()> {
        moves(
            &[JobState::Deferred, JobState::Failed, JobState::Queued],
            JobState::Queued,
        );
        let mut tx = self.pool.begin().await.map_err(pg)?;
        // The row lock keeps a claim by another instance out meanwhile.
        let found: Option<(String, bool)> = sqlx::query_as(
            "SELECT state, EXISTS (SELECT 1 FROM messages m WHERE m.job_id = j.id) FROM jobs j WHERE j.id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg)?;
        let Some((state, has_body)) = found else {
            return Err(StoreError::NotFound);
        };
        let retryable = state
            .parse::<JobState>()
            .is_ok_and(|s| s.can_become(JobState::Queued));
        if !retryable || !has_body {
            return Err(StoreError::Conflict(Conflict::JobNotRetryable));
        }
        sqlx::query(
            "UPDATE jobs SET state = 'queued', next_attempt_at = $2, created_at = CASE WHEN state = 'failed' THEN $2 ELSE created_at END, \
             attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END, updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn delete_job(&self, id: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state != 'sending'")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(pg)?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(Conflict::JobNotDeletable));
        }
        Ok(())
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| Ok((state(r)?, r.try_get("n").map_err(pg)?)))
            .collect()
    }

    async fn last_job_error(&self) -> Result<Option<(i64, Reason)>> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT updated_at, last_reply FROM jobs WHERE state IN ('failed', 'deferred') AND last_reply IS NOT NULL ORDER BY updated_at DESC, seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(pg)?;
        Ok(row.map(|(at, reply)| (at, Reason::from_stored(&reply))))
    }
}
