//! Retention: finished jobs (with a failed job's message) older than
//! `history.keep_days`, Audit Log entries older than `audit.keep_days` and
//! chart counts older than either are deleted, in small batches. Each batch
//! is one short write transaction taken through the store's fair write lock,
//! with a pause after it, so that the intake's commits go between batches
//! and never wait for the whole purge.

use std::time::Duration;

use super::{Result, Store};

/// Rows deleted per transaction: a few milliseconds of writing.
pub const BATCH_ROWS: i64 = 500;

/// Pause between two batches, so that waiting writers go first.
const PAUSE: Duration = Duration::from_millis(20);

/// Chart counts are kept at least this long: the Portal shows 30 days.
const MIN_STATS_DAYS: u64 = 31;

/// How long each kind of record is kept, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub history_days: u64,
    pub audit_days: u64,
}

/// What one purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub jobs: u64,
    pub audit_entries: u64,
    pub stats_rows: u64,
}

fn cutoff(now: i64, days: u64) -> i64 {
    now.saturating_sub(i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX))
}

/// Runs one purge batch after another, pausing between them, until a batch
/// deletes less than a whole batch; returns the rows deleted in all.
async fn drain<F, Fut>(mut batch: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let full = u64::try_from(BATCH_ROWS).unwrap_or(u64::MAX);
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < full {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

impl Store {
    /// Deletes up to `limit` jobs that were sent or failed before `before`
    /// (their messages go with them: `ON DELETE CASCADE`).
    pub async fn purge_finished_jobs(&self, before: i64, limit: i64) -> Result<u64> {
        crate::on_write!(self, |tx, _q, is_pg| {
            // A finished job was created before it finished, so the range of
            // `jobs_created` before the cut-off holds every candidate.
            let n = sqlx::query(if !is_pg {
            // SQLite's rowid; PostgreSQL has the primary key.
            "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs WHERE created_at < ?1 AND state IN ('sent', 'failed') AND updated_at < ?1 LIMIT ?2)"
        } else {
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE created_at < $1 AND state IN ('sent', 'failed') AND updated_at < $1 LIMIT $2)"
        })
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Deletes up to `limit` Audit Log entries written before `before`.
    pub async fn purge_audit(&self, before: i64, limit: i64) -> Result<u64> {
        crate::on_write!(self, |tx, q| {
            let n = sqlx::query(q("DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ?1 ORDER BY at LIMIT ?2)"))
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Deletes the chart's counts of the hours before `before`.
    pub async fn purge_stats(&self, before: i64, limit: i64) -> Result<u64> {
        crate::on_write!(self, |tx, q| {
            let n = sqlx::query(q("DELETE FROM job_stats WHERE hour IN (SELECT DISTINCT hour FROM job_stats WHERE hour < ?1 ORDER BY hour LIMIT ?2)"))
        .bind(before / 3600)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Deletes everything older than `keep` allows, as of `now`, one batch
    /// at a time.
    pub async fn purge(&self, now: i64, keep: Retention) -> Result<Purged> {
        let mut purged = Purged::default();
        let jobs_before = cutoff(now, keep.history_days);
        let audit_before = cutoff(now, keep.audit_days);
        let stats_before = cutoff(now, keep.history_days.max(MIN_STATS_DAYS));
        purged.jobs = drain(|| self.purge_finished_jobs(jobs_before, BATCH_ROWS)).await?;
        purged.audit_entries = drain(|| self.purge_audit(audit_before, BATCH_ROWS)).await?;
        purged.stats_rows = drain(|| self.purge_stats(stats_before, BATCH_ROWS)).await?;
        Ok(purged)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::i18n::Reason;
    use crate::queue::{JobStore as _, conformance};
    use crate::store::audit::Action;

    const DAY: i64 = 86_400;

    async fn finished(store: &Store, id: &str, at: i64, sent: bool) {
        store.enqueue(&conformance::job(id), at).await.unwrap();
        store.claim_due_jobs(at, at + 600, 100).await.unwrap();
        let reply = Reason::legacy("reply");
        if sent {
            store.mark_sent(id, None, &reply, at).await.unwrap();
        } else {
            store.mark_failed(id, None, &reply, at).await.unwrap();
        }
    }

    /// Finished jobs go after `history_days` with their messages, waiting
    /// jobs never; audit entries after `audit_days`; more than one batch.
    #[tokio::test]
    async fn purge_deletes_only_what_is_older_than_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let t0 = 1_000 * DAY;
        for i in 0..(BATCH_ROWS + 20) {
            finished(&store, &format!("old-sent-{i}"), t0, true).await;
        }
        finished(&store, "old-failed", t0, false).await;
        store
            .enqueue(&conformance::job("old-queued"), t0)
            .await
            .unwrap();
        finished(&store, "new-sent", t0 + 50 * DAY, true).await;
        store
            .audit(
                t0,
                "admin",
                "127.0.0.1",
                Action::Login,
                &Reason::legacy("x"),
            )
            .await
            .unwrap();
        assert!(store.job_body("old-failed").await.is_ok());
        let keep = Retention {
            history_days: 90,
            audit_days: 365,
        };
        let now = t0 + 91 * DAY;
        let purged = store.purge(now, keep).await.unwrap();
        assert_eq!(purged.jobs, u64::try_from(BATCH_ROWS).unwrap() + 21);
        assert_eq!(purged.audit_entries, 0);
        assert!(store.job("old-failed").await.is_err());
        assert!(store.job_body("old-failed").await.is_err());
        assert!(store.job("old-queued").await.is_ok());
        assert!(store.job("new-sent").await.is_ok());
        let purged = store.purge(t0 + 366 * DAY, keep).await.unwrap();
        assert_eq!(purged.audit_entries, 1);
        assert!(store.job("old-queued").await.is_ok());
        assert!(store.job("new-sent").await.is_err());
        assert!(purged.stats_rows > 0);
        store.close().await;
    }
}
