//! The SQLite engine of the queue ([`crate::queue::JobStore`]). A job row and
//! its message body are inserted in one transaction; the SMTP intake answers
//! `250` only after that commit has returned (WAL + `synchronous=FULL`: the
//! commit is on disk). Delivery claims a due job with a lease; a crashed
//! worker's lease expires and the job becomes due again. The writes on the
//! path of every message go through the group commit ([`batch`]).

pub(super) mod batch;
pub mod listing;
pub(super) mod rows;
pub(super) mod search_index;

use sqlx::Row;

use super::{Conflict, Result, Store, StoreError};
use crate::i18n::Reason;
use crate::queue::{Claimed, Job, JobFilter, JobState, JobStore, NewJob, StoredBody, lease};
use rows::{JOB_COLUMNS, job_from_row};

/// When the next waiting job is due: each state on its own, so that both
/// are read from the `jobs_due` index (migration 0020), whose condition an
/// IN list does not meet.
const NEXT_DUE: &str = "SELECT MIN(m) FROM (\
     SELECT MIN(next_attempt_at) AS m FROM jobs WHERE state = 'queued' \
     UNION ALL SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'deferred')";

/// Jobs being sent (with an expired lease only, when `?2`) become deferred.
const REQUEUE_SENDING: &str = "UPDATE jobs SET state = 'deferred', lease_until = NULL, next_attempt_at = ?1, updated_at = ?1, last_reply = COALESCE(last_reply, ?3) WHERE state = 'sending' AND (?2 = 0 OR lease_until IS NULL OR lease_until <= ?1) AND id NOT IN (SELECT value FROM json_each(?4))";

/// Asserts that a write moves jobs only as the state machine allows (the
/// SQL's `WHERE state …` is what holds it; this keeps the two in step).
fn moves(from: &[JobState], to: JobState) {
    debug_assert!(
        from.iter().all(|f| f.can_become(to)),
        "illegal job move {from:?} → {to}"
    );
}

impl super::SqliteEngine {
    async fn insert_job(
        &self,
        job: NewJob,
        now: i64,
        lease_until: Option<i64>,
        pieces: Option<(u32, i64)>,
    ) -> Result<()> {
        let rcpt = serde_json::to_string(&job.rcpt_to)
            .map_err(|e| StoreError::Conflict(Conflict::Corrupt(e.to_string())))?;
        self.batch
            .submit(batch::Op::Enqueue {
                job,
                rcpt,
                now,
                lease_until,
                pieces,
            })
            .await
            .map(|_| ())
    }

    async fn finish(
        &self,
        id: &str,
        state: JobState,
        via: Option<i64>,
        reply: &str,
        now: i64,
    ) -> Result<()> {
        moves(&[JobState::Sending], state);
        self.batch
            .submit(batch::Op::Finish {
                id: id.to_owned(),
                state,
                via,
                reply: reply.to_owned(),
                now,
            })
            .await
            .map(|_| ())
    }

    /// `sending` jobs (only those with an expired lease when `expired_only`),
    /// but not those in `busy`, become deferred and due now.
    async fn requeue_sending(&self, now: i64, expired_only: bool, busy: &[String]) -> Result<u64> {
        moves(&[JobState::Sending], JobState::Deferred);
        let busy = serde_json::to_string(busy)
            .map_err(|e| StoreError::Conflict(Conflict::Corrupt(e.to_string())))?;
        let mut tx = self.write().await?;
        let n = sqlx::query(REQUEUE_SENDING)
            .bind(now)
            .bind(expired_only)
            .bind(
                if expired_only {
                    lease::expired()
                } else {
                    lease::restarted()
                }
                .to_json(),
            )
            .bind(busy)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

/// How long an upload no job took is kept on a store that other instances
/// may be writing to (their clients may still be sending): longer than any
/// pause the intake allows between two pieces.
pub const UPLOAD_STALE_SECS: i64 = 30 * 60;

impl Store {
    /// At start: removes the pieces of messages that were never accepted
    /// (a crash while they arrived). On SQLite this instance is the only
    /// writer, so every such piece is stale; on PostgreSQL only those older
    /// than [`UPLOAD_STALE_SECS`].
    pub async fn purge_stale_uploads(&self, now: i64) -> Result<u64> {
        let before = match self.engine() {
            super::Engine::Sqlite(_) => now.saturating_add(1),
            super::Engine::Postgres(_) => now.saturating_sub(UPLOAD_STALE_SECS),
        };
        self.purge_uploads(before).await
    }

    /// Stored pieces of messages: all of them, and those of no job (of
    /// messages still arriving, or left by a crash until the next start).
    pub async fn message_pieces(&self) -> Result<(i64, i64)> {
        const SQL: &str = "SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.job_id = p.upload_id)) FROM message_pieces p";
        match self.engine() {
            super::Engine::Sqlite(s) => Ok(sqlx::query_as(SQL).fetch_one(s.pool()).await?),
            super::Engine::Postgres(pg) => sqlx::query_as(SQL)
                .fetch_one(pg.pool())
                .await
                .map_err(super::postgres::pg),
        }
    }
}

/// Deletes every piece of each upload no message took whose newest piece
/// is older than `?1` (SQLite and PostgreSQL alike).
pub(in crate::store) const PURGE_UPLOADS: &str = "DELETE FROM message_pieces WHERE upload_id IN (SELECT p.upload_id FROM message_pieces p WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.job_id = p.upload_id) GROUP BY p.upload_id HAVING MAX(p.created_at) < ?1)";

/// A `messages` row (pieces, body when whole) as a [`StoredBody`].
pub(in crate::store) fn layout(row: Option<(i64, Option<Vec<u8>>)>) -> Result<StoredBody> {
    match row {
        None => Err(StoreError::NotFound),
        Some((0, body)) => Ok(StoredBody::Whole(body.unwrap_or_default())),
        Some((n, _)) => Ok(StoredBody::Pieces(u32::try_from(n).map_err(|_| {
            StoreError::Conflict(Conflict::Corrupt(format!("{n} pieces")))
        })?)),
    }
}

/// A message's pieces put together; a piece missing is a damaged store.
pub(in crate::store) fn whole(pieces: Vec<Vec<u8>>, expected: u32) -> Result<Vec<u8>> {
    if pieces.len() != usize::try_from(expected).unwrap_or(usize::MAX) {
        return Err(StoreError::Conflict(Conflict::Corrupt(format!(
            "a message stored in {expected} pieces has {}",
            pieces.len()
        ))));
    }
    Ok(pieces.concat())
}

impl crate::queue::StoreFailure for StoreError {
    fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound)
    }
    fn is_temporary(&self) -> bool {
        StoreError::is_temporary(self)
    }
}

impl JobStore for Store {
    type Error = StoreError;

    async fn enqueue_owned(&self, job: NewJob, now: i64) -> Result<()> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.enqueue_owned(job, now).await,
            super::Engine::Sqlite(s) => s,
        };
        s.insert_job(job, now, None, None).await
    }

    async fn enqueue_claimed(&self, job: NewJob, now: i64, lease_until: i64) -> Result<()> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.enqueue_claimed(job, now, lease_until).await,
            super::Engine::Sqlite(s) => s,
        };
        s.insert_job(job, now, Some(lease_until), None).await
    }

    async fn claim_due_jobs_with_bodies(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => {
                return pg.claim_due_jobs_with_bodies(now, lease_until, limit).await;
            }
            super::Engine::Sqlite(s) => s,
        };
        moves(&[JobState::Queued, JobState::Deferred], JobState::Sending);
        match s
            .batch
            .submit(batch::Op::Claim {
                now,
                lease_until,
                limit,
            })
            .await?
        {
            batch::Answer::Claimed(list) => Ok(list),
            batch::Answer::Done => Ok(Vec::new()),
        }
    }

    async fn next_due_at(&self) -> Result<Option<i64>> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.next_due_at().await,
            super::Engine::Sqlite(s) => s,
        };
        Ok(sqlx::query_scalar(NEXT_DUE).fetch_one(s.pool()).await?)
    }

    async fn job_body(&self, id: &str) -> Result<Vec<u8>> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.job_body(id).await,
            super::Engine::Sqlite(s) => s,
        };
        match self.body_layout(id).await? {
            StoredBody::Whole(body) => Ok(body),
            StoredBody::Pieces(n) => {
                let pieces: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT data FROM message_pieces WHERE upload_id = ?1 ORDER BY seq",
                )
                .bind(id)
                .fetch_all(s.pool())
                .await?;
                whole(pieces, n)
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
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.store_piece(upload, seq, piece, now).await,
            super::Engine::Sqlite(s) => s,
        };
        s.batch
            .submit(batch::Op::Piece {
                upload: upload.to_owned(),
                seq,
                data: piece,
                now,
            })
            .await
            .map(|_| ())
    }

    async fn enqueue_pieces(&self, job: NewJob, pieces: u32, size: i64, now: i64) -> Result<()> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.enqueue_pieces(job, pieces, size, now).await,
            super::Engine::Sqlite(s) => s,
        };
        s.insert_job(job, now, None, Some((pieces, size))).await
    }

    async fn discard_upload(&self, upload: &str) -> Result<()> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.discard_upload(upload).await,
            super::Engine::Sqlite(s) => s,
        };
        let mut tx = s.write().await?;
        sqlx::query("DELETE FROM message_pieces WHERE upload_id = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE job_id = ?1)")
            .bind(upload)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn purge_uploads(&self, before: i64) -> Result<u64> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.purge_uploads(before).await,
            super::Engine::Sqlite(s) => s,
        };
        let mut tx = s.write().await?;
        let n = sqlx::query(PURGE_UPLOADS)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn body_layout(&self, id: &str) -> Result<StoredBody> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.body_layout(id).await,
            super::Engine::Sqlite(s) => s,
        };
        // The body of a message in pieces is empty: not read for nothing.
        let row: Option<(i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT pieces, CASE WHEN pieces = 0 THEN body END FROM messages WHERE job_id = ?1",
        )
        .bind(id)
        .fetch_optional(s.pool())
        .await?;
        layout(row)
    }

    async fn body_piece(&self, id: &str, seq: u32) -> Result<Vec<u8>> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.body_piece(id, seq).await,
            super::Engine::Sqlite(s) => s,
        };
        sqlx::query_scalar("SELECT data FROM message_pieces WHERE upload_id = ?1 AND seq = ?2")
            .bind(id)
            .bind(i64::from(seq))
            .fetch_optional(s.pool())
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Only a job still in `sending` moves, so an Administrator's delete in
    /// the meantime is not undone.
    async fn mark_sent(&self, id: &str, via: Option<i64>, reply: &Reason, now: i64) -> Result<()> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.mark_sent(id, via, reply, now).await,
            super::Engine::Sqlite(s) => s,
        };
        s.finish(id, JobState::Sent, via, &reply.to_json(), now)
            .await
    }

    async fn mark_failed(
        &self,
        id: &str,
        via: Option<i64>,
        reply: &Reason,
        now: i64,
    ) -> Result<()> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.mark_failed(id, via, reply, now).await,
            super::Engine::Sqlite(s) => s,
        };
        s.finish(id, JobState::Failed, via, &reply.to_json(), now)
            .await
    }

    async fn defer_job(
        &self,
        id: &str,
        reply: &Reason,
        next_attempt_at: i64,
        now: i64,
        count_attempt: bool,
    ) -> Result<()> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => {
                return pg
                    .defer_job(id, reply, next_attempt_at, now, count_attempt)
                    .await;
            }
            super::Engine::Sqlite(s) => s,
        };
        moves(&[JobState::Sending], JobState::Deferred);
        let mut tx = s.write().await?;
        sqlx::query("UPDATE jobs SET state = 'deferred', lease_until = NULL, last_reply = ?2, next_attempt_at = ?3, updated_at = ?4, attempts = attempts - ?5 WHERE id = ?1 AND state = 'sending'")
            .bind(id)
            .bind(reply.to_json())
            .bind(next_attempt_at)
            .bind(now)
            .bind(if count_attempt { 0 } else { 1 })
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The embedded SQLite store serves one hikyaku, so at its start no
    /// other instance can be delivering.
    async fn requeue_interrupted(&self, now: i64) -> Result<u64> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.requeue_interrupted(now).await,
            super::Engine::Sqlite(s) => s,
        };
        s.requeue_sending(now, false, &[]).await
    }

    async fn requeue_expired_leases(&self, now: i64, busy: &[String]) -> Result<u64> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.requeue_expired_leases(now, busy).await,
            super::Engine::Sqlite(s) => s,
        };
        s.requeue_sending(now, true, busy).await
    }

    async fn job(&self, id: &str) -> Result<Job> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.job(id).await,
            super::Engine::Sqlite(s) => s,
        };
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(s.pool())
            .await?;
        row.as_ref()
            .map(job_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn jobs(&self, filter: &JobFilter, limit: i64, offset: i64) -> Result<Vec<Job>> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.jobs(filter, limit, offset).await,
            super::Engine::Sqlite(s) => s,
        };
        let queries = listing::history_queries(filter, None, limit, offset, false);
        let rows = crate::fetch_history!(s.pool(), queries, limit)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_job(&self, id: &str, now: i64) -> Result<()> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.retry_job(id, now).await,
            super::Engine::Sqlite(s) => s,
        };
        moves(
            &[JobState::Deferred, JobState::Failed, JobState::Queued],
            JobState::Queued,
        );
        let mut tx = s.write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM jobs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let has_body: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE job_id = ?1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let n = sqlx::query("UPDATE jobs SET state = 'queued', next_attempt_at = ?2, created_at = CASE WHEN state = 'failed' THEN ?2 ELSE created_at END, attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END, updated_at = ?2 WHERE id = ?1 AND state IN ('deferred', 'failed', 'queued')")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 || has_body == 0 {
            return Err(StoreError::Conflict(Conflict::JobNotRetryable));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_job(&self, id: &str) -> Result<()> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.delete_job(id).await,
            super::Engine::Sqlite(s) => s,
        };
        let n = sqlx::query("DELETE FROM jobs WHERE id = ?1 AND state != 'sending'")
            .bind(id)
            .execute(s.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(Conflict::JobNotDeletable));
        }
        Ok(())
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.job_counts().await,
            super::Engine::Sqlite(s) => s,
        };
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(s.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((rows::state(r)?, r.try_get("n")?)))
            .collect()
    }

    async fn last_job_error(&self) -> Result<Option<(i64, Reason)>> {
        let s = match self.engine() {
            super::Engine::Postgres(pg) => return pg.last_job_error().await,
            super::Engine::Sqlite(s) => s,
        };
        let row = sqlx::query("SELECT updated_at, last_reply FROM jobs WHERE state IN ('failed', 'deferred') AND last_reply IS NOT NULL ORDER BY updated_at DESC LIMIT 1")
            .fetch_optional(s.pool())
            .await?;
        row.map(|r| {
            let reply: String = r.try_get("last_reply")?;
            Ok((r.try_get("updated_at")?, Reason::from_stored(&reply)))
        })
        .transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use crate::queue::conformance;
    use crate::store::Store;

    /// A fresh store in its own directory (kept while the store is used).
    async fn fresh() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Store::open(dir.path()).await.unwrap(), dir)
    }

    /// The queue's own questions (a claim, the rescue of jobs being sent,
    /// the next due time) read the `jobs_due` index of the live jobs, also
    /// in a store SQLite has no statistics of; none reads the history.
    #[tokio::test]
    async fn the_queue_reads_only_the_live_jobs_index() {
        let (store, _dir) = fresh().await;
        let mut claim = sqlx::QueryBuilder::<sqlx::Sqlite>::new("");
        super::batch::claim_jobs(&mut claim, 0, 100, 200, 8);
        for sql in [
            claim.sql().as_str().to_owned(),
            super::REQUEUE_SENDING.to_owned(),
            super::NEXT_DUE.to_owned(),
        ] {
            let binds = sql.matches('?').count();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for _ in 0..binds {
                q = q.bind(0_i64);
            }
            let plan: Vec<String> = q
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
                .filter(|d| d.contains("jobs"))
                .collect();
            let reads: Vec<&String> = plan
                .iter()
                .filter(|d| d.starts_with("SEARCH jobs") || d.starts_with("SCAN jobs"))
                .collect();
            assert!(!reads.is_empty(), "{sql}: {plan:?}");
            for read in reads {
                assert!(
                    read.contains("INDEX jobs_due (state=?")
                        || read.contains("PRIMARY KEY")
                        || read.contains("sqlite_autoindex_jobs_1"),
                    "{sql}: {plan:?}"
                );
            }
        }
        store.close().await;
    }

    /// A reply stored as prose by an older version reads back as it is.
    #[tokio::test]
    async fn an_old_rows_prose_reads_back_as_it_is() {
        use crate::i18n::{Locale, Reason, Tr};
        use crate::queue::JobStore as _;
        let (store, _dir) = fresh().await;
        store.enqueue(&conformance::job("old"), 100).await.unwrap();
        let prose = "all recipients refused: <a@b>: 550 5.1.1 unknown";
        sqlx::query("UPDATE jobs SET last_reply = ?1 WHERE id = 'old'")
            .bind(prose)
            .execute(store.pool())
            .await
            .unwrap();
        let job = store.job("old").await.unwrap();
        assert_eq!(job.last_reply.as_deref(), Some(prose));
        let reason = job.last_reply_reason.unwrap();
        assert_eq!(reason, Reason::legacy(prose));
        assert_eq!(reason.render(&Tr::new(Locale::Ja)), prose);
        let json = serde_json::to_value(store.job("old").await.unwrap()).unwrap();
        assert_eq!(
            (
                json["last_reply"].as_str(),
                json["last_reply_code"].as_str()
            ),
            (Some(prose), Some("legacy"))
        );
    }

    /// At start, pieces of a message that never became a job (a crash
    /// while it arrived) are removed; pieces of jobs stay.
    #[tokio::test]
    async fn pieces_no_job_took_are_removed_at_start() {
        use crate::queue::JobStore as _;
        let (store, _dir) = fresh().await;
        store
            .store_piece("crashed", 0, b"half a message".to_vec().into(), 100)
            .await
            .unwrap();
        store
            .store_piece("kept", 0, b"first".to_vec().into(), 100)
            .await
            .unwrap();
        store
            .enqueue_pieces(conformance::job("kept"), 1, 100, 100)
            .await
            .unwrap();
        assert_eq!(store.message_pieces().await.unwrap(), (3, 1));
        assert_eq!(store.purge_stale_uploads(101).await.unwrap(), 1);
        assert_eq!(store.message_pieces().await.unwrap(), (2, 0));
    }

    /// The SQLite engine passes the queue's conformance suite.
    #[tokio::test]
    async fn sqlite_engine_conforms() {
        conformance::all(fresh).await;
    }

    /// A claim returns small bodies with their jobs and leaves a large one
    /// to the worker that sends it, which reads it whole.
    #[tokio::test]
    async fn a_claim_leaves_large_bodies_to_the_worker() {
        use crate::queue::JobStore as _;
        let (store, _dir) = fresh().await;
        let mut big = conformance::job("big");
        let size = usize::try_from(crate::queue::job::CLAIM_BODY_MAX).unwrap() + 1;
        big.body = vec![b'x'; size].into();
        store.enqueue_owned(big.clone(), 100).await.unwrap();
        let small = conformance::job("small");
        store.enqueue_owned(small.clone(), 100).await.unwrap();
        let claimed = store.claim_due_jobs_with_bodies(100, 700, 5).await.unwrap();
        let body = |id: &str| {
            claimed
                .iter()
                .find(|(j, _)| j.id == id)
                .map(|(_, b)| b.clone())
                .unwrap()
        };
        assert_eq!(body("small").as_deref(), Some(&small.body[..]));
        assert_eq!(body("big"), None);
        assert_eq!(store.job_body("big").await.unwrap(), big.body.to_vec());
    }
}
