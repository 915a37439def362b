//! Figures about the store for the Portal and `/metrics`: delivery outcomes
//! per hour (the `job_stats` table, counted by a trigger, migration 0008),
//! the age of the oldest waiting job, and the store's size.

use sqlx::Row;

use super::{Result, Store};

/// Outcomes counted in one hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
}

impl Outcomes {
    pub fn total(&self) -> i64 {
        self.sent + self.deferred + self.failed
    }

    pub fn add(&mut self, other: &Outcomes) {
        self.sent += other.sent;
        self.deferred += other.deferred;
        self.failed += other.failed;
    }
}

impl Store {
    /// The outcomes of each hour from `from_hour` up to `to_hour` (both
    /// unix seconds / 3600), hours without any left out.
    pub async fn hourly_outcomes(
        &self,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<(i64, Outcomes)>> {
        crate::on_pool!(self, |p, q| {
            let rows = sqlx::query(q("SELECT hour, state, n FROM job_stats WHERE hour >= ?1 AND hour <= ?2 ORDER BY hour"))
        .bind(from_hour)
        .bind(to_hour)
        .fetch_all(p)
        .await?;
            let mut out: Vec<(i64, Outcomes)> = Vec::new();
            for row in rows {
                let hour: i64 = row.try_get("hour")?;
                let state: String = row.try_get("state")?;
                let n: i64 = row.try_get("n")?;
                if out.last().is_none_or(|(h, _)| *h != hour) {
                    out.push((hour, Outcomes::default()));
                }
                if let Some((_, o)) = out.last_mut() {
                    match state.as_str() {
                        "sent" => o.sent += n,
                        "deferred" => o.deferred += n,
                        "failed" => o.failed += n,
                        _ => {}
                    }
                }
            }
            Ok(out)
        })
    }

    /// When the oldest job still waiting for delivery (queued, deferred or
    /// being sent) was accepted.
    pub async fn oldest_waiting_since(&self) -> Result<Option<i64>> {
        crate::on_pool!(self, |p, q| {
            // Read from `jobs_state_history` (state, created_at): the
            // waiting jobs' entries alone, however long the history.
            Ok(sqlx::query_scalar(q(
                "SELECT MIN(created_at) FROM jobs WHERE state IN ('queued', 'deferred', 'sending')",
            ))
            .fetch_one(p)
            .await?)
        })
    }

    /// The size of the store's database in bytes (its pages, free ones
    /// included, and the write-ahead log not yet copied back).
    pub async fn size_bytes(&self) -> Result<i64> {
        let s = match self.engine() {
            super::Engine::Sqlite(s) => s,
            super::Engine::Postgres(pg) => {
                return Ok(
                    sqlx::query_scalar("SELECT pg_database_size(current_database())")
                        .fetch_one(pg.pool())
                        .await?,
                );
            }
        };
        let p = s.pool();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(p).await?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(p).await?;
        let file: Option<String> =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_optional(p)
                .await?;
        let wal = file
            .and_then(|f| std::fs::metadata(format!("{f}-wal")).ok())
            .map_or(0, |m| i64::try_from(m.len()).unwrap_or(i64::MAX));
        Ok(pages.saturating_mul(page_size).saturating_add(wal))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use crate::i18n::Reason;
    use crate::queue::{JobStore as _, conformance};
    use crate::store::Store;

    /// Each job leaving `sending` counts once in the hour of its change;
    /// a wait that is no attempt does not count as a deferral.
    #[tokio::test]
    async fn outcomes_are_counted_per_hour_by_the_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let hour = 500_000;
        let t = hour * 3600 + 10;
        for id in ["a", "b", "c", "d"] {
            store.enqueue(&conformance::job(id), t).await.unwrap();
        }
        let claimed = store.claim_due_jobs(t, t + 600, 10).await.unwrap();
        assert_eq!(claimed.len(), 4);
        let reply = Reason::legacy("250 ok");
        store.mark_sent("a", None, &reply, t).await.unwrap();
        store.mark_sent("b", None, &reply, t + 3600).await.unwrap();
        store.mark_failed("c", None, &reply, t).await.unwrap();
        store.defer_job("d", &reply, t + 60, t, true).await.unwrap();
        // A wait for authorization: no deferral.
        store.claim_due_jobs(t + 60, t + 600, 10).await.unwrap();
        store
            .defer_job("d", &reply, t + 120, t + 60, false)
            .await
            .unwrap();
        let got = store.hourly_outcomes(hour, hour + 1).await.unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, hour);
        assert_eq!(
            (got[0].1.sent, got[0].1.failed, got[0].1.deferred),
            (1, 1, 1)
        );
        assert_eq!((got[1].1.sent, got[1].1.total()), (1, 1));
        assert_eq!(store.oldest_waiting_since().await.unwrap(), Some(t));
        assert!(store.size_bytes().await.unwrap() > 0);
        store.close().await;
    }
}
