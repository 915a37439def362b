//! The job history read in pages for an export: each page starts below the
//! last row of the one before (newest first), so that jobs accepted while an
//! export runs neither repeat nor push rows out of it, however many pages.

use super::jobs::listing::history_queries;
use super::jobs::rows::job_from_row;

use super::{Result, Store};
use crate::queue::{Job, JobFilter};

pub use super::jobs::listing::Cursor;

impl Store {
    /// Up to `limit` jobs matching `filter`, newest first, after `after`.
    pub async fn jobs_page(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<Job>> {
        crate::on_pool!(self, |p, _q, is_pg| {
            let queries = history_queries(filter, after, limit, 0, is_pg);
            let rows = crate::fetch_history!(p, queries, limit)?;
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
