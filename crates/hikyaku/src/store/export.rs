//! The job history read in pages for an export: each page starts below the
//! last row of the one before (newest first), so that jobs accepted while an
//! export runs neither repeat nor push rows out of it, however many pages.

use super::jobs::rows::{JOB_COLUMNS, job_from_row};
use std::sync::OnceLock;

use super::{Result, Store};
use crate::queue::{Job, JobFilter, JobState};

/// Where the next page starts: below this (created_at, id).
pub type Cursor = (i64, String);

impl Store {
    /// Up to `limit` jobs matching `filter`, newest first, after `after`.
    pub async fn jobs_page(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<Job>> {
        static SQL: OnceLock<String> = OnceLock::new();
        static PG: OnceLock<String> = OnceLock::new();
        crate::on_pool!(self, |p, _q, is_pg| {
            // PostgreSQL wants each parameter's type where `IS NULL` alone
            // cannot tell it; its ILIKE is SQLite's case-insensitive LIKE.
            let sql = if is_pg {
                PG.get_or_init(|| format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::TEXT IS NULL OR state = $1) AND ($2::BIGINT IS NULL OR account_id = $2) \
                 AND ($3::TEXT IS NULL OR mail_from ILIKE $3 OR rcpt_to ILIKE $3 OR subject ILIKE $3 OR header_from ILIKE $3) \
                 AND ($4::BIGINT IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
                 ORDER BY created_at DESC, id DESC LIMIT $6"
            ))
            } else {
                SQL.get_or_init(|| format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR account_id = ?2) \
                 AND (?3 IS NULL OR mail_from LIKE ?3 OR rcpt_to LIKE ?3 OR subject LIKE ?3 OR header_from LIKE ?3) \
                 AND (?4 IS NULL OR created_at < ?4 OR (created_at = ?4 AND id < ?5)) \
                 ORDER BY created_at DESC, id DESC LIMIT ?6"
            ))
            };
            let search = filter
                .search
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| format!("%{s}%"));
            let rows = sqlx::query(sql.as_str())
                .bind(filter.state.map(JobState::as_str))
                .bind(filter.account_id)
                .bind(search)
                .bind(after.map(|c| c.0))
                .bind(after.map(|c| c.1.as_str()))
                .bind(limit)
                .fetch_all(p)
                .await?;
            rows.iter().map(job_from_row).collect()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use crate::queue::{JobFilter, JobStore as _, conformance};
    use crate::store::Store;

    #[tokio::test]
    async fn pages_follow_each_other_without_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            // Two jobs share each second: the id breaks the tie.
            store
                .enqueue(&conformance::job(id), 100 + i as i64 / 2)
                .await
                .unwrap();
        }
        let filter = JobFilter::default();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.jobs_page(&filter, after.as_ref(), 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            // A job accepted meanwhile is newer than the export: not in it.
            store
                .enqueue(&conformance::job(&format!("new{}", seen.len())), 999)
                .await
                .unwrap();
            after = page.last().map(|j| (j.created_at, j.id.clone()));
            seen.extend(page.into_iter().map(|j| j.id));
        }
        assert_eq!(seen, ["e", "d", "c", "b", "a"]);
        store.close().await;
    }
}
