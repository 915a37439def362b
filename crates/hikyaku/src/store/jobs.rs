//! The durable queue's storage. A job row and its message body are inserted in
//! one transaction; the SMTP intake answers `250` only after that commit has
//! returned (WAL + `synchronous=FULL`: the commit is on disk). Delivery claims
//! a due job with a lease; a crashed worker's lease expires and the job becomes
//! due again.

use sqlx::Row;

use super::{Conflict, Result, Store, StoreError};

/// States of a job. `queued → sending → sent`, or `→ deferred → sending …`, or `→ failed`.
pub const QUEUED: &str = "queued";
pub const SENDING: &str = "sending";
pub const DEFERRED: &str = "deferred";
pub const SENT: &str = "sent";
pub const FAILED: &str = "failed";

/// A message handed over by intake.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub account_id: Option<i64>,
    pub submitter: String,
    pub source: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub header_from: Option<String>,
    pub subject: Option<String>,
    /// Shared, not copied, between the store's write and delivery.
    pub body: bytes::Bytes,
}

impl NewJob {
    /// The job as delivery sees it right after [`Store::enqueue_claimed`].
    pub fn claimed(&self, now: i64) -> Job {
        Job {
            id: self.id.clone(),
            account_id: self.account_id,
            submitter: self.submitter.clone(),
            source: self.source.clone(),
            mail_from: self.mail_from.clone(),
            rcpt_to: self.rcpt_to.clone(),
            header_from: self.header_from.clone(),
            subject: self.subject.clone(),
            size: i64::try_from(self.body.len()).unwrap_or(i64::MAX),
            state: SENDING.to_owned(),
            attempts: 1,
            next_attempt_at: now,
            last_reply: None,
            via_account_id: None,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Job {
    pub id: String,
    pub account_id: Option<i64>,
    pub submitter: String,
    pub source: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub header_from: Option<String>,
    pub subject: Option<String>,
    pub size: i64,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_reply: Option<String>,
    /// The account the job was last tried or delivered through.
    pub via_account_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Filters of the Send Job History.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<String>,
    pub account_id: Option<i64>,
    pub search: Option<String>,
}

pub(super) fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Job> {
    let rcpt: String = row.try_get("rcpt_to")?;
    Ok(Job {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        submitter: row.try_get("submitter")?,
        source: row.try_get("source")?,
        mail_from: row.try_get("mail_from")?,
        rcpt_to: serde_json::from_str(&rcpt).unwrap_or_default(),
        header_from: row.try_get("header_from")?,
        subject: row.try_get("subject")?,
        size: row.try_get("size")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_reply: row.try_get("last_reply")?,
        via_account_id: row.try_get("via_account_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) const JOB_COLUMNS: &str = "id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, state, attempts, next_attempt_at, last_reply, via_account_id, created_at, updated_at";

impl Store {
    /// Stores a message durably. When this returns `Ok`, the message survives
    /// a crash or power loss.
    pub async fn enqueue(&self, job: &NewJob, now: i64) -> Result<()> {
        self.enqueue_owned(job.clone(), now).await
    }

    /// [`Store::enqueue`] without copying the message (the intake's path).
    pub async fn enqueue_owned(&self, job: NewJob, now: i64) -> Result<()> {
        self.insert_job(job, now, None).await
    }

    /// Stores a message durably as already claimed for delivery (`sending`,
    /// first attempt counted, leased until `lease_until`): the caller hands
    /// it to delivery from memory. Should the process die first, the start
    /// puts it back in the queue ([`Store::requeue_interrupted`]).
    pub async fn enqueue_claimed(&self, job: NewJob, now: i64, lease_until: i64) -> Result<()> {
        self.insert_job(job, now, Some(lease_until)).await
    }

    async fn insert_job(&self, job: NewJob, now: i64, lease_until: Option<i64>) -> Result<()> {
        let rcpt = serde_json::to_string(&job.rcpt_to)
            .map_err(|e| StoreError::Conflict(Conflict::Corrupt(e.to_string())))?;
        self.batch
            .submit(super::batch::Op::Enqueue {
                job,
                rcpt,
                now,
                lease_until,
            })
            .await
            .map(|_| ())
    }

    /// Claims the most overdue job (queued or deferred, due by `now`) with a
    /// lease until `lease_until`, and counts the attempt.
    pub async fn claim_due_job(&self, now: i64, lease_until: i64) -> Result<Option<Job>> {
        Ok(self
            .claim_due_jobs(now, lease_until, 1)
            .await?
            .into_iter()
            .next())
    }

    /// Claims up to `limit` due jobs at once, most overdue first (one commit
    /// for all of them).
    pub async fn claim_due_jobs(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<Job>> {
        Ok(self
            .claim_due_jobs_with_bodies(now, lease_until, limit)
            .await?
            .into_iter()
            .map(|(job, _)| job)
            .collect())
    }

    /// [`Store::claim_due_jobs`], with each job's body (`None` when it is
    /// missing), in the group commit of the queue's other writes.
    pub async fn claim_due_jobs_with_bodies(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<super::batch::Claimed>> {
        match self
            .batch
            .submit(super::batch::Op::Claim {
                now,
                lease_until,
                limit,
            })
            .await?
        {
            super::batch::Answer::Claimed(list) => Ok(list),
            super::batch::Answer::Done => Ok(Vec::new()),
        }
    }

    /// When the next queued or deferred job falls due.
    pub async fn next_due_at(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM jobs WHERE state IN ('queued', 'deferred')",
        )
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn job_body(&self, id: &str) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT body FROM messages WHERE job_id = ?1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Records the upstream's acceptance through account `via`. Only a job
    /// still in `sending` moves, so an Administrator's delete in the
    /// meantime is not undone.
    pub async fn mark_sent(&self, id: &str, via: Option<i64>, reply: &str, now: i64) -> Result<()> {
        self.finish(id, SENT, via, reply, now).await
    }

    /// Records a permanent failure (`via`: the account that refused it, if one did).
    pub async fn mark_failed(
        &self,
        id: &str,
        via: Option<i64>,
        reply: &str,
        now: i64,
    ) -> Result<()> {
        self.finish(id, FAILED, via, reply, now).await
    }

    /// Defers a job until `next_attempt_at`. `count_attempt = false` undoes the
    /// attempt count (the job waited, e.g. for re-authorization, without trying).
    pub async fn defer_job(
        &self,
        id: &str,
        reply: &str,
        next_attempt_at: i64,
        now: i64,
        count_attempt: bool,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE jobs SET state = 'deferred', lease_until = NULL, last_reply = ?2, next_attempt_at = ?3, updated_at = ?4, attempts = attempts - ?5 WHERE id = ?1 AND state = 'sending'")
            .bind(id)
            .bind(reply)
            .bind(next_attempt_at)
            .bind(now)
            .bind(if count_attempt { 0 } else { 1 })
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish(
        &self,
        id: &str,
        state: &'static str,
        via: Option<i64>,
        reply: &str,
        now: i64,
    ) -> Result<()> {
        self.batch
            .submit(super::batch::Op::Finish {
                id: id.to_owned(),
                state,
                via,
                reply: reply.to_owned(),
                now,
            })
            .await
            .map(|_| ())
    }

    /// At start of the only instance (the embedded SQLite store serves one
    /// hikyaku): every job still marked `sending` was interrupted by a crash
    /// or kill, whatever its lease says, and is due again now.
    pub async fn requeue_interrupted(&self, now: i64) -> Result<u64> {
        self.requeue_sending(now, false, &[]).await
    }

    /// Returns jobs whose lease ran out (a worker died mid-delivery) to the
    /// queue, except those in `busy`: this instance is still delivering them
    /// (a slow upstream, or the wall clock stepped forward), and sending them
    /// again would send them twice.
    pub async fn requeue_expired_leases(&self, now: i64, busy: &[String]) -> Result<u64> {
        self.requeue_sending(now, true, busy).await
    }

    /// `sending` jobs (only those with an expired lease when `expired_only`),
    /// but not those in `busy`, become deferred and due now.
    async fn requeue_sending(&self, now: i64, expired_only: bool, busy: &[String]) -> Result<u64> {
        let busy = serde_json::to_string(busy)
            .map_err(|e| StoreError::Conflict(Conflict::Corrupt(e.to_string())))?;
        let mut tx = self.write().await?;
        let n = sqlx::query("UPDATE jobs SET state = 'deferred', lease_until = NULL, next_attempt_at = ?1, updated_at = ?1, last_reply = COALESCE(last_reply, ?3) WHERE state = 'sending' AND (?2 = 0 OR lease_until IS NULL OR lease_until <= ?1) AND id NOT IN (SELECT value FROM json_each(?4))")
            .bind(now)
            .bind(expired_only)
            .bind(if expired_only {
                "the delivery was interrupted (its lease expired)"
            } else {
                "interrupted by a restart of hikyaku"
            })
            .bind(busy)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    pub async fn job(&self, id: &str) -> Result<Job> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref()
            .map(job_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    /// Newest first.
    pub async fn jobs(&self, filter: &JobFilter, limit: i64, offset: i64) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR account_id = ?2) \
             AND (?3 IS NULL OR mail_from LIKE ?3 OR rcpt_to LIKE ?3 OR subject LIKE ?3 OR header_from LIKE ?3) \
             ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5"
        );
        let search = filter
            .search
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| format!("%{s}%"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&filter.state)
            .bind(filter.account_id)
            .bind(search)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Makes a deferred or failed job due now (Administrator's Retry now).
    pub async fn retry_job(&self, id: &str, now: i64) -> Result<()> {
        let mut tx = self.write().await?;
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

    pub async fn delete_job(&self, id: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM jobs WHERE id = ?1 AND state != 'sending'")
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(Conflict::JobNotDeletable));
        }
        Ok(())
    }

    /// Number of jobs in each state.
    pub async fn job_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }

    /// The newest failure or deferral reply, for the Portal's "last error".
    pub async fn last_job_error(&self) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT updated_at, last_reply FROM jobs WHERE state IN ('failed', 'deferred') AND last_reply IS NOT NULL ORDER BY updated_at DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok((r.try_get("updated_at")?, r.try_get("last_reply")?)))
            .transpose()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::NewJob;
    use crate::store::Store;

    /// A small job whose body names it.
    pub(crate) fn job(id: &str) -> NewJob {
        NewJob {
            id: id.to_owned(),
            account_id: None,
            submitter: "mfp".into(),
            source: "127.0.0.1".into(),
            mail_from: "scanner@printer.local".into(),
            rcpt_to: vec!["boss@example.com".into()],
            header_from: None,
            subject: None,
            body: format!("Subject: {id}\r\n\r\nbody\r\n").into_bytes().into(),
        }
    }

    #[tokio::test]
    async fn retrying_a_failed_job_starts_its_count_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store.enqueue(&job("f"), 100).await.unwrap();
        store.enqueue(&job("d"), 100).await.unwrap();
        for _ in 0..3 {
            let f = store.claim_due_job(100, 200).await.unwrap().unwrap();
            store
                .defer_job(&f.id, "451 later", 100, 100, true)
                .await
                .unwrap();
        }
        let f = store.job("f").await.unwrap();
        let d = store.job("d").await.unwrap();
        assert!(f.attempts + d.attempts >= 3);
        let claimed = store.claim_due_job(100, 200).await.unwrap().unwrap();
        store
            .mark_failed(&claimed.id, None, "550 no", 150)
            .await
            .unwrap();
        let deferred = if claimed.id == "f" { "d" } else { "f" };
        let before = store.job(deferred).await.unwrap().attempts;
        store.retry_job(&claimed.id, 300).await.unwrap();
        store.retry_job(deferred, 300).await.unwrap();
        // A failed job is a new start; a deferred one keeps its count.
        assert_eq!(store.job(&claimed.id).await.unwrap().attempts, 0);
        assert_eq!(store.job(deferred).await.unwrap().attempts, before);
        // A made-up id is not found.
        assert!(matches!(
            store.retry_job("nope", 300).await,
            Err(crate::store::StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn expired_leases_and_interrupted_deliveries_are_requeued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store.enqueue(&job("short"), 100).await.unwrap();
        store.enqueue(&job("long"), 101).await.unwrap();
        // "short" is claimed with a lease to 200, "long" with one to 10_000.
        assert_eq!(
            store.claim_due_job(150, 200).await.unwrap().unwrap().id,
            "short"
        );
        assert_eq!(
            store.claim_due_job(150, 10_000).await.unwrap().unwrap().id,
            "long"
        );
        assert!(store.claim_due_job(150, 10_000).await.unwrap().is_none());

        // A job still being delivered here stays, lease or not.
        assert_eq!(
            store
                .requeue_expired_leases(300, &["short".to_owned()])
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.job("short").await.unwrap().state, "sending");
        // At 300 only the expired lease comes back, due at once.
        assert_eq!(store.requeue_expired_leases(300, &[]).await.unwrap(), 1);
        let short = store.job("short").await.unwrap();
        assert_eq!(
            (short.state.as_str(), short.next_attempt_at),
            ("deferred", 300)
        );
        assert!(short.last_reply.unwrap().contains("lease expired"));
        assert_eq!(store.job("long").await.unwrap().state, "sending");

        // After a restart every `sending` job comes back, lease or not.
        assert_eq!(store.requeue_interrupted(400).await.unwrap(), 1);
        let long = store.job("long").await.unwrap();
        assert_eq!(
            (long.state.as_str(), long.next_attempt_at),
            ("deferred", 400)
        );
        assert!(long.last_reply.unwrap().contains("restart"));
        // Both are claimable again, the most overdue first.
        let again = store.claim_due_jobs(500, 1_000, 5).await.unwrap();
        let ids: Vec<&str> = again.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, vec!["short", "long"]);
        assert!(again.iter().all(|j| j.attempts == 2));
    }

    #[tokio::test]
    async fn a_claim_takes_the_most_overdue_of_queued_and_deferred_alike() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        for (id, at) in [("q300", 300), ("q100", 100), ("d", 150), ("late", 900)] {
            store.enqueue(&job(id), at).await.unwrap();
        }
        // "d" is deferred to 200: after q100, before q300.
        let d = store.claim_due_jobs(150, 1_000, 1).await.unwrap();
        assert_eq!(d[0].id, "q100");
        store
            .defer_job("q100", "451 later", 200, 150, true)
            .await
            .unwrap();
        let claimed = store.claim_due_jobs(500, 1_000, 2).await.unwrap();
        let ids: Vec<&str> = claimed.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, vec!["d", "q100"]);
        let rest = store.claim_due_jobs(500, 1_000, 5).await.unwrap();
        let ids: Vec<&str> = rest.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, vec!["q300"], "not yet due: late");
    }

    #[tokio::test]
    async fn finishing_many_jobs_at_once_records_each_and_keeps_failed_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        for i in 0..10 {
            store
                .enqueue(&job(&format!("f{i}")), 100 + i)
                .await
                .unwrap();
        }
        let claimed = store
            .claim_due_jobs_with_bodies(200, 1_000, 10)
            .await
            .unwrap();
        // The most overdue first, each with its own body.
        let ids: Vec<String> = claimed.iter().map(|(j, _)| j.id.clone()).collect();
        assert_eq!(ids, (0..10).map(|i| format!("f{i}")).collect::<Vec<_>>());
        for (j, body) in &claimed {
            assert_eq!(
                body.as_deref(),
                Some(format!("Subject: {}\r\n\r\nbody\r\n", j.id).as_bytes())
            );
            assert_eq!((j.state.as_str(), j.attempts), ("sending", 1));
        }
        // Nothing is left to claim.
        assert!(
            store
                .claim_due_jobs(200, 1_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // f9 was deleted meanwhile (an Administrator); finishing must not revive it.
        store.defer_job("f9", "x", 300, 200, false).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("f{i}");
                if i == 3 {
                    store.mark_failed(&id, None, "550 5.1.1 unknown", 250).await
                } else {
                    store
                        .mark_sent(&id, None, &format!("250 2.0.0 OK id{i}"), 250)
                        .await
                }
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for i in 0..9 {
            let j = store.job(&format!("f{i}")).await.unwrap();
            if i == 3 {
                assert_eq!(
                    (j.state.as_str(), j.last_reply.as_deref()),
                    ("failed", Some("550 5.1.1 unknown"))
                );
                assert!(
                    store.job_body("f3").await.is_ok(),
                    "a failed job keeps its body"
                );
            } else {
                assert_eq!(j.state, "sent");
                assert_eq!(j.last_reply, Some(format!("250 2.0.0 OK id{i}")));
                assert!(
                    store.job_body(&j.id).await.is_err(),
                    "a sent job's body is dropped"
                );
            }
            assert_eq!(j.updated_at, 250);
        }
        assert_eq!(store.job("f9").await.unwrap().state, "deferred");
        assert!(store.job_body("f9").await.is_ok());
    }
}
