//! The Send Job History's query, written once for both engines.
//!
//! Only the filters in use become conditions: a condition such as
//! `(?1 IS NULL OR state = ?1)` hides from the planner which index fits, so
//! with a million finished jobs every filter scanned the whole table. With
//! the conditions spelled out, each filter walks its index (migration 0014)
//! newest first and stops after a page.

use super::rows::JOB_COLUMNS;
use crate::queue::{JobFilter, JobState};

/// A value bound to the history query, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::store) enum Bind {
    Text(String),
    Int(i64),
}

/// Where a page of the history starts: below this (created_at, id).
pub type Cursor = (i64, String);

/// The statement and its values.
#[derive(Debug)]
pub(in crate::store) struct HistoryQuery {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// Up to `limit` jobs matching `filter`, newest first, below `after` (keyset)
/// and then past `offset` rows. `pg` writes PostgreSQL's dialect (`$N`,
/// `ILIKE` for SQLite's case-insensitive `LIKE`).
pub(in crate::store) fn history_query(
    filter: &JobFilter,
    after: Option<&Cursor>,
    limit: i64,
    offset: i64,
    pg: bool,
) -> HistoryQuery {
    let mut binds = Vec::new();
    let param = |b: Bind, binds: &mut Vec<Bind>| {
        binds.push(b);
        if pg {
            format!("${}", binds.len())
        } else {
            format!("?{}", binds.len())
        }
    };
    let mut conds: Vec<String> = Vec::new();
    if let Some(state) = filter.state {
        let p = param(Bind::Text(JobState::as_str(state).to_owned()), &mut binds);
        conds.push(format!("state = {p}"));
    }
    if let Some(account) = filter.account_id {
        let p = param(Bind::Int(account), &mut binds);
        conds.push(format!("account_id = {p}"));
    }
    if let Some(since) = filter.since {
        let p = param(Bind::Int(since), &mut binds);
        conds.push(format!("created_at >= {p}"));
    }
    if let Some(until) = filter.until {
        let p = param(Bind::Int(until), &mut binds);
        conds.push(format!("created_at < {p}"));
    }
    if let Some((created, id)) = after {
        let c = param(Bind::Int(*created), &mut binds);
        let i = param(Bind::Text(id.clone()), &mut binds);
        // A row value compares as one index range on both engines.
        conds.push(format!("(created_at, id) < ({c}, {i})"));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let p = param(Bind::Text(format!("%{search}%")), &mut binds);
        let like = if pg { "ILIKE" } else { "LIKE" };
        conds.push(format!(
            "(mail_from {like} {p} OR rcpt_to {like} {p} OR subject {like} {p} OR header_from {like} {p})"
        ));
    }
    let limit = param(Bind::Int(limit), &mut binds);
    let offset = param(Bind::Int(offset), &mut binds);
    let filters = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    HistoryQuery {
        sql: format!(
            "SELECT {JOB_COLUMNS} FROM jobs{filters} ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET {offset}"
        ),
        binds,
    }
}

/// Binds a [`HistoryQuery`]'s values to a query of either engine.
#[macro_export]
#[doc(hidden)]
macro_rules! bind_history {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                $crate::store::jobs::listing::Bind::Text(s) => q.bind(s.clone()),
                $crate::store::jobs::listing::Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::queue::{JobStore as _, NewJob};
    use crate::store::Store;

    fn job(id: &str, from: &str) -> NewJob {
        NewJob {
            id: id.to_owned(),
            account_id: None,
            submitter: "s".to_owned(),
            source: "127.0.0.1".to_owned(),
            mail_from: from.to_owned(),
            rcpt_to: vec!["r@example.com".to_owned()],
            header_from: None,
            subject: Some("hello".to_owned()),
            body: bytes::Bytes::from_static(b"Subject: hello\r\n\r\nhi\r\n"),
        }
    }

    #[test]
    fn only_the_filters_in_use_become_conditions() {
        let q = history_query(&JobFilter::default(), None, 100, 0, false);
        assert!(!q.sql.contains("WHERE"), "{}", q.sql);
        assert_eq!(q.binds, [Bind::Int(100), Bind::Int(0)]);
        let filter = JobFilter {
            state: Some(JobState::Failed),
            search: Some("boss".into()),
            ..Default::default()
        };
        let q = history_query(&filter, Some(&(5, "b".into())), 10, 0, true);
        assert!(q.sql.contains("state = $1"), "{}", q.sql);
        assert!(q.sql.contains("(created_at, id) < ($2, $3)"), "{}", q.sql);
        assert!(q.sql.contains("mail_from ILIKE $4"), "{}", q.sql);
        assert!(q.sql.ends_with("LIMIT $5 OFFSET $6"), "{}", q.sql);
    }

    /// Keyset pages: each page starts below the last row of the one before,
    /// so walking them gives every job once, newest first, even when jobs
    /// share a second and when new ones arrive between pages.
    #[tokio::test]
    async fn keyset_pages_give_every_job_once_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        // Three jobs per second, ids out of step with time for some.
        let mut want = Vec::new();
        for i in 0..10i64 {
            let id = format!("j{:02}", (i * 7) % 10);
            store
                .enqueue(&job(&id, &format!("dev{i}@example.com")), 1000 + i / 3)
                .await
                .unwrap();
            want.push((1000 + i / 3, id));
        }
        want.sort();
        want.reverse();
        let filter = JobFilter::default();
        let mut seen = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = store.jobs_page(&filter, after.as_ref(), 3).await.unwrap();
            if seen.is_empty() {
                // A newer job arriving while the pages are read is not
                // shown on the older pages.
                store
                    .enqueue(&job("new", "x@example.com"), 2000)
                    .await
                    .unwrap();
            }
            let Some(last) = page.last() else { break };
            after = Some((last.created_at, last.id.clone()));
            seen.extend(page.iter().map(|j| (j.created_at, j.id.clone())));
        }
        assert_eq!(seen, want);
        // The same through a filter and a date range.
        let filter = JobFilter {
            search: Some("DEV".into()),
            since: Some(1001),
            until: Some(1003),
            ..Default::default()
        };
        let first = store.jobs_page(&filter, None, 4).await.unwrap();
        let last = first.last().unwrap();
        let rest = store
            .jobs_page(&filter, Some(&(last.created_at, last.id.clone())), 4)
            .await
            .unwrap();
        let got: Vec<_> = first
            .iter()
            .chain(&rest)
            .map(|j| (j.created_at, j.id.clone()))
            .collect();
        let expected: Vec<_> = want
            .iter()
            .filter(|(t, _)| (1001..1003).contains(t))
            .cloned()
            .collect();
        assert_eq!(got, expected);
        // Offset pages agree with keyset pages.
        let offset = store.jobs(&filter, 4, 4).await.unwrap();
        assert_eq!(
            offset.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
            rest.iter().map(|j| j.id.clone()).collect::<Vec<_>>()
        );
    }
}
