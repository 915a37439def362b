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
#[cfg(test)]
fn history_query(
    filter: &JobFilter,
    after: Option<&Cursor>,
    limit: i64,
    offset: i64,
    pg: bool,
) -> HistoryQuery {
    build(filter, after, limit, offset, pg, Search::Indexed)
}

/// How many of the newest jobs (after the other filters) a search on
/// PostgreSQL looks through before it asks the trigram index.
pub const RECENT: i64 = 4000;

/// On SQLite, a term with at least this many jobs in the trigram index is
/// searched by reading the history newest first instead: gathering every
/// candidate first (a company's domain: a million) took seconds, while
/// reading the history stops at the first page of matches. Below it the
/// candidates are read by rowid, whose cost grows with their number but not
/// with where in the history they are; reading the history costs less the
/// more jobs hold the term. For 5,000 candidates in a million jobs both took
/// about 40 ms. (Small in tests, so that their few jobs take both ways.)
pub const COMMON: i64 = if cfg!(test) { 4 } else { 10000 };

/// How a page of the history is read.
#[derive(Debug)]
pub(in crate::store) enum Plan {
    /// Tried in order until one fills the page; the last answers in any case.
    Steps(Vec<HistoryQuery>),
    /// SQLite's search: `probe` gathers the term's candidates from the
    /// trigram index, up to [`COMMON`], as their count and a JSON array of
    /// their rowids, with the index's mark. Fewer are read by rowid
    /// (`indexed`, whose first two values the array and the mark replace,
    /// adding the jobs past the mark), so the index is asked once; more by
    /// reading the history newest first (`scan`).
    Probe {
        probe: HistoryQuery,
        indexed: HistoryQuery,
        scan: HistoryQuery,
    },
}

/// How the search term is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    /// Among the [`RECENT`] newest jobs only.
    Recent,
    /// As the engine serves it best without a probe: PostgreSQL through its
    /// trigram indexes (a term of a trigram or more), SQLite by reading.
    Indexed,
    /// Among the rowids the probe found in the trigram index (SQLite).
    Candidates,
    /// By reading the history.
    Scan,
}

/// The statements that answer a page of the history.
///
/// On PostgreSQL a search first looks only through the [`RECENT`] newest
/// jobs: a term that many jobs hold fills its page there at once, where the
/// trigram index would first collect every job holding it. The recent jobs
/// are the head of the same order, so a full page from them is the page the
/// whole history gives. SQLite's index says cheaply how many jobs hold a
/// term ([`Plan::Probe`]), which also serves a common term missing from the
/// newest jobs.
pub(in crate::store) fn history_queries(
    filter: &JobFilter,
    after: Option<&Cursor>,
    limit: i64,
    offset: i64,
    pg: bool,
) -> Plan {
    if searched(filter).is_some_and(|t| t.contains(NOWHERE)) {
        // No statement: the page is empty.
        return Plan::Steps(Vec::new());
    }
    let term = searched(filter).filter(|t| t.chars().count() >= TRIGRAM);
    let full = || build(filter, after, limit, offset, pg, Search::Indexed);
    match term {
        Some(term) if !pg => Plan::Probe {
            probe: HistoryQuery {
                // One statement, so that the mark and the index are read
                // as of the same commit.
                sql: "SELECT COUNT(*), json_group_array(rowid), (SELECT indexed_to FROM search_mark) FROM (SELECT rowid FROM jobs_search WHERE jobs_search MATCH ?1 LIMIT ?2)".to_owned(),
                binds: vec![Bind::Text(fts_trigrams(term)), Bind::Int(COMMON)],
            },
            indexed: build(filter, after, limit, offset, pg, Search::Candidates),
            scan: build(filter, after, limit, offset, pg, Search::Scan),
        },
        Some(_) if limit > 0 && offset.saturating_add(limit) <= RECENT => Plan::Steps(vec![
            build(filter, after, limit, offset, pg, Search::Recent),
            full(),
        ]),
        _ => Plan::Steps(vec![full()]),
    }
}

/// The character no stored text holds: PostgreSQL cannot store it in text,
/// and the intake refuses it in addresses and replaces it in headers. A
/// term holding it finds nothing without a statement: either engine would
/// refuse it (PostgreSQL to bind it, FTS5 to quote it in a MATCH).
const NOWHERE: char = '\0';

fn searched(filter: &JobFilter) -> Option<&str> {
    filter.search.as_deref().filter(|s| !s.is_empty())
}

fn build(
    filter: &JobFilter,
    after: Option<&Cursor>,
    limit: i64,
    offset: i64,
    pg: bool,
    how: Search,
) -> HistoryQuery {
    let recent = how == Search::Recent;
    let indexed = how == Search::Indexed;
    let mut binds = Vec::new();
    let param = |b: Bind, binds: &mut Vec<Bind>| {
        binds.push(b);
        if pg {
            format!("${}", binds.len())
        } else {
            format!("?{}", binds.len())
        }
    };
    // The probe's rowids and the index's mark: the first two values, so
    // that they are found without a search (nothing until then).
    let candidates = (how == Search::Candidates).then(|| {
        (
            param(Bind::Text("[]".into()), &mut binds),
            param(Bind::Int(i64::MAX), &mut binds),
        )
    });
    // Among the probe's candidates (fewer than COMMON) the rowids drive:
    // a unary `+` keeps SQLite from reading an index of the other filters
    // instead, which it would do without statistics (a store never
    // analysed), walking every sent job for a rare term.
    let col = |name: &str| {
        if candidates.is_some() {
            format!("+{name}")
        } else {
            name.to_owned()
        }
    };
    let mut conds: Vec<String> = Vec::new();
    if let Some(state) = filter.state {
        let p = param(Bind::Text(JobState::as_str(state).to_owned()), &mut binds);
        conds.push(format!("{} = {p}", col("state")));
    }
    if let Some(account) = filter.account_id {
        let p = param(Bind::Int(account), &mut binds);
        conds.push(format!("{} = {p}", col("account_id")));
    }
    if let Some(since) = filter.since {
        let p = param(Bind::Int(since), &mut binds);
        conds.push(format!("{} >= {p}", col("created_at")));
    }
    if let Some(until) = filter.until {
        let p = param(Bind::Int(until), &mut binds);
        conds.push(format!("{} < {p}", col("created_at")));
    }
    if let Some((created, id)) = after {
        let c = param(Bind::Int(*created), &mut binds);
        let i = param(Bind::Text(id.clone()), &mut binds);
        // A row value compares as one index range on both engines.
        conds.push(format!(
            "({}, {}) < ({c}, {i})",
            col("created_at"),
            col("id")
        ));
    }
    let mut searches: Vec<String> = Vec::new();
    if let Some(search) = searched(filter) {
        if let Some((c, mark)) = &candidates {
            // The jobs the trigram index (migration 0016) named for the
            // probe: every three-character piece of the term is in them;
            // and the newest jobs, not yet indexed (migration 0019). The
            // LIKE below then decides, so the answer is the one a scan
            // gives.
            // One list, not an OR: SQLite then still reads by rowid.
            searches.push(format!(
                "rowid IN (SELECT value FROM json_each({c}) UNION ALL SELECT rowid FROM jobs WHERE rowid > {mark})"
            ));
        }
        // A term of one or two characters has no trigram: both engines then
        // read the history (fine: such a term matches most).
        let p = param(Bind::Text(like_pattern(search)), &mut binds);
        let (like, escape) = if pg {
            // Backslash is PostgreSQL's default escape in LIKE patterns.
            ("ILIKE", "")
        } else {
            ("LIKE", " ESCAPE '\\'")
        };
        let matches = format!(
            "(mail_from {like} {p}{escape} OR rcpt_to {like} {p}{escape} OR subject {like} {p}{escape} OR header_from {like} {p}{escape})"
        );
        if pg && indexed && search.chars().count() >= TRIGRAM {
            // PostgreSQL keeps the same four columns in `job_search` with
            // pg_trgm indexes (migration 0018), which serve these ILIKEs.
            searches.push(format!(
                "id IN (SELECT job_id FROM job_search WHERE {matches})"
            ));
        } else {
            searches.push(matches);
        }
    }
    let order = "ORDER BY created_at DESC, id DESC";
    let from = if recent {
        // The other filters pick the newest jobs first; the search then
        // looks through those alone.
        let window = param(Bind::Int(RECENT), &mut binds);
        let inner = where_clause(&conds);
        conds = searches;
        format!("(SELECT * FROM jobs{inner} {order} LIMIT {window}) AS recent")
    } else {
        conds.extend(searches);
        "jobs".to_owned()
    };
    let limit = param(Bind::Int(limit), &mut binds);
    let offset = param(Bind::Int(offset), &mut binds);
    let filters = where_clause(&conds);
    HistoryQuery {
        sql: format!(
            "SELECT {JOB_COLUMNS} FROM {from}{filters} {order} LIMIT {limit} OFFSET {offset}"
        ),
        binds,
    }
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// Runs a [`Plan`] of [`history_queries`] on a pool of either engine.
#[macro_export]
#[doc(hidden)]
macro_rules! fetch_history {
    ($pool:expr, $plan:expr, $limit:expr) => {{
        match $plan {
            $crate::store::jobs::listing::Plan::Steps(queries) => {
                // The first statement whose rows fill the page answers, the
                // last one in any case.
                let last = queries.len().saturating_sub(1);
                let mut answer = Ok(Vec::new());
                for (i, q) in queries.into_iter().enumerate() {
                    let rows =
                        $crate::bind_history!(sqlx::query(sqlx::AssertSqlSafe(q.sql)), &q.binds)
                            .fetch_all($pool)
                            .await;
                    let done = match &rows {
                        Ok(r) => i == last || i64::try_from(r.len()).unwrap_or(i64::MAX) >= $limit,
                        Err(_) => true,
                    };
                    if done {
                        answer = rows;
                        break;
                    }
                }
                answer
            }
            $crate::store::jobs::listing::Plan::Probe {
                probe,
                mut indexed,
                scan,
            } => {
                let found: std::result::Result<(i64, String, i64), sqlx::Error> =
                    $crate::bind_history!(
                        sqlx::query_as(sqlx::AssertSqlSafe(probe.sql)),
                        &probe.binds
                    )
                    .fetch_one($pool)
                    .await;
                match found {
                    Err(e) => Err(e),
                    Ok((n, rowids, mark)) => {
                        let q = if n >= $crate::store::jobs::listing::COMMON {
                            scan
                        } else {
                            if let [candidates, past, ..] = indexed.binds.as_mut_slice() {
                                *candidates = $crate::store::jobs::listing::Bind::Text(rowids);
                                *past = $crate::store::jobs::listing::Bind::Int(mark);
                            }
                            indexed
                        };
                        $crate::bind_history!(sqlx::query(sqlx::AssertSqlSafe(q.sql)), &q.binds)
                            .fetch_all($pool)
                            .await
                    }
                }
            }
        }
    }};
}

/// The shortest term the trigram index can find: shorter ones have no
/// trigram, so the search reads the history for them.
pub const TRIGRAM: usize = 3;

/// `term` as a substring pattern for LIKE: `%`, `_` and the escape itself
/// stand for themselves, so a search for `50%` finds "50%", not "500".
fn like_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// An FTS5 query for the jobs that hold every trigram of `term` (it has at
/// least [`TRIGRAM`] characters): the trigrams that start at every third
/// character, and the last one, cover the term with the fewest lists to
/// intersect. Each is quoted, so that no character is read as query syntax
/// (a quote inside is doubled).
fn fts_trigrams(term: &str) -> String {
    let chars: Vec<char> = term.chars().collect();
    let last = chars.len().saturating_sub(TRIGRAM);
    let mut starts: Vec<usize> = (0..=last).step_by(TRIGRAM).collect();
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    starts
        .into_iter()
        .map(|i| {
            let gram: String = chars[i..i + TRIGRAM].iter().collect();
            format!("\"{}\"", gram.replace('"', "\"\""))
        })
        .collect::<Vec<_>>()
        .join(" AND ")
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
    fn the_trigrams_cover_the_term() {
        assert_eq!(fts_trigrams("abc"), "\"abc\"");
        assert_eq!(fts_trigrams("abcd"), "\"abc\" AND \"bcd\"");
        assert_eq!(fts_trigrams("user0042"), "\"use\" AND \"r00\" AND \"042\"");
        assert_eq!(fts_trigrams("a\"bcd"), "\"a\"\"b\" AND \"bcd\"");
        assert_eq!(fts_trigrams("スキャン"), "\"スキャ\" AND \"キャン\"");
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
        assert!(
            q.sql.contains("id IN (SELECT job_id FROM job_search WHERE"),
            "{}",
            q.sql
        );
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

    /// Jobs whose text holds what a search can trip over: case, non-ASCII
    /// text, LIKE's `%`, `_` and escape, FTS5's quote and syntax, terms
    /// shorter than a trigram; several share a second.
    fn seeded() -> Vec<(NewJob, i64)> {
        // (sender, recipients, subject, From)
        type Row<'a> = (&'a str, &'a [&'a str], Option<&'a str>, Option<&'a str>);
        let rows: &[Row] = &[
            (
                "mfp-001@branch1.contoso.example",
                &["boss@example.com"],
                Some("Scan From MFP"),
                None,
            ),
            (
                "MFP-002@Branch2.Contoso.Example",
                &["user_01@example.com", "b@example.com"],
                Some("スキャン文書 第3版"),
                Some("\"Printer\" <mfp-002@branch2.contoso.example>"),
            ),
            (
                "cron@host.example",
                &["ops@example.com"],
                Some("50% done"),
                Some("Cron Daemon <cron@host.example>"),
            ),
            (
                "cron@host.example",
                &["ops@example.com"],
                Some("500 done"),
                None,
            ),
            (
                "erp@erp.example",
                &["userx01@example.com"],
                Some("Ärger mit der Rechnung"),
                None,
            ),
            (
                "erp@erp.example",
                &["ar@example.com"],
                Some("ärger, klein"),
                None,
            ),
            (
                "back\\slash@example",
                &["q\"uote@example.com"],
                Some("path C:\\scans\\a_b"),
                None,
            ),
            (
                "dev@example.org",
                &["x@example.org"],
                Some("NEAR(a b) OR c* -d"),
                None,
            ),
            (
                "dev@example.org",
                &["y@example.org"],
                None,
                Some("スキャナー <scan@example.org>"),
            ),
            ("ab@example.net", &["z@example.net"], Some("a"), None),
        ];
        rows.iter()
            .enumerate()
            .map(|(i, (from, rcpt, subject, header_from))| {
                let mut j = job(&format!("j{i:02}"), from);
                j.rcpt_to = rcpt.iter().map(|r| (*r).to_owned()).collect();
                j.subject = subject.map(str::to_owned);
                j.header_from = header_from.map(str::to_owned);
                // Pairs of jobs share a second: the id orders them.
                (j, 1000 + i as i64 / 2)
            })
            .collect()
    }

    /// The terms the comparison searches for.
    const TERMS: &[&str] = &[
        "scan",
        "SCAN",
        "contoso",
        "50%",
        "%",
        "_",
        "0%",
        "r_0",
        "user_01",
        "\\",
        "\\s",
        "\"",
        "q\"u",
        "スキャン",
        "キャ",
        "第3版",
        "ärger",
        "Ärger",
        "NEAR(a",
        "c* -d",
        "OR",
        "a",
        "ab",
        "example",
        "nothing-here",
        "example.com\"",
        "[\"boss",
    ];

    /// What a plain substring scan finds, newest first: `fold` is the
    /// engine's case rule (SQLite's LIKE folds ASCII letters only,
    /// PostgreSQL's ILIKE every letter).
    fn scan(jobs: &[(NewJob, i64)], term: &str, fold: fn(&str) -> String) -> Vec<String> {
        let needle = fold(term);
        let mut hits: Vec<(i64, String)> = jobs
            .iter()
            .filter(|(j, _)| {
                let rcpt = serde_json::to_string(&j.rcpt_to).unwrap();
                [
                    Some(j.mail_from.as_str()),
                    Some(rcpt.as_str()),
                    j.subject.as_deref(),
                    j.header_from.as_deref(),
                ]
                .into_iter()
                .flatten()
                .any(|text| fold(text).contains(&needle))
            })
            .map(|(j, at)| (*at, j.id.clone()))
            .collect();
        hits.sort();
        hits.reverse();
        hits.into_iter().map(|(_, id)| id).collect()
    }

    /// The search gives what a substring scan gives, in the same order, on
    /// `store`; also a page at a time.
    pub(crate) async fn search_matches_a_scan(store: &Store, fold: fn(&str) -> String) {
        let jobs = seeded();
        // On SQLite the first half is in the trigram index, the rest found
        // by its text (not yet indexed); then all are indexed.
        let (first, rest) = jobs.split_at(jobs.len() / 2);
        for (j, at) in first {
            store.enqueue(j, *at).await.unwrap();
        }
        store.index_search().await.unwrap();
        for (j, at) in rest {
            store.enqueue(j, *at).await.unwrap();
        }
        searches_match_a_scan(store, &jobs, fold).await;
        store.index_search().await.unwrap();
        searches_match_a_scan(store, &jobs, fold).await;
    }

    async fn searches_match_a_scan(
        store: &Store,
        jobs: &[(NewJob, i64)],
        fold: fn(&str) -> String,
    ) {
        for term in TERMS {
            let filter = JobFilter {
                search: Some((*term).to_owned()),
                ..Default::default()
            };
            let found: Vec<String> = store
                .jobs(&filter, 100, 0)
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect();
            assert_eq!(found, scan(jobs, term, fold), "search for {term:?}");
            // Two at a time, by offset and by keyset.
            let want = found;
            let mut paged = Vec::new();
            let mut after: Option<Cursor> = None;
            loop {
                let page = store.jobs_page(&filter, after.as_ref(), 2).await.unwrap();
                let Some(last) = page.last() else { break };
                after = Some((last.created_at, last.id.clone()));
                paged.extend(page.into_iter().map(|j| j.id));
            }
            assert_eq!(paged, want, "pages of the search for {term:?}");
            let second: Vec<String> = store
                .jobs(&filter, 2, 2)
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect();
            assert_eq!(
                second,
                want.iter().skip(2).take(2).cloned().collect::<Vec<_>>()
            );
        }
        // With the other filters.
        let filter = JobFilter {
            search: Some("example".into()),
            since: Some(1001),
            until: Some(1004),
            state: Some(JobState::Queued),
            ..Default::default()
        };
        let found: Vec<String> = store
            .jobs(&filter, 100, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(found, ["j07", "j06", "j05", "j04", "j03", "j02"]);
    }

    #[tokio::test]
    async fn the_search_finds_what_a_substring_scan_finds_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        search_matches_a_scan(&store, |s| s.to_ascii_lowercase()).await;
        store.close().await;
    }

    #[tokio::test]
    async fn the_search_finds_what_a_substring_scan_finds_on_postgresql() {
        let store = Store::open_postgres(&testkit::postgres::database(), "instance-a")
            .await
            .unwrap();
        // ILIKE folds the letters its database's character type knows:
        // ASCII only in the C locale (as SQLite), every letter otherwise.
        let ctype: String = match store.engine() {
            crate::store::Engine::Postgres(pg) => sqlx::query_scalar("SHOW lc_ctype")
                .fetch_one(pg.pool())
                .await
                .unwrap(),
            crate::store::Engine::Sqlite(_) => unreachable!(),
        };
        let fold: fn(&str) -> String = if ctype == "C" || ctype == "POSIX" {
            |s| s.to_ascii_lowercase()
        } else {
            str::to_lowercase
        };
        search_matches_a_scan(&store, fold).await;
    }

    /// A term that many jobs hold is read from the history newest first, not
    /// gathered from the trigram index, also when none of the newest jobs
    /// holds it; a rare one goes through the index. Both give the order a
    /// scan gives.
    #[tokio::test]
    async fn a_common_term_is_read_from_the_history_and_a_rare_one_from_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        // 20 older jobs from old.example, then 10 newer from new.example.
        for i in 1..=30 {
            let domain = if i <= 20 { "old" } else { "new" };
            let j = job(&format!("j{i:02}"), &format!("dev{i}@{domain}.example"));
            store.enqueue(&j, i).await.unwrap();
        }
        let filter = |term: &str| JobFilter {
            search: Some(term.to_owned()),
            ..Default::default()
        };
        let candidates = |term: &str| {
            let Plan::Probe { probe, .. } = history_queries(&filter(term), None, 5, 0, false)
            else {
                panic!("SQLite searches a term of a trigram or more by probing the index");
            };
            let pool = store.pool().clone();
            async move {
                crate::bind_history!(
                    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(probe.sql)),
                    &probe.binds
                )
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        };
        let ids = |jobs: Vec<crate::queue::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
        // Not yet indexed: no candidate, found by its text all the same.
        assert_eq!(candidates("dev3@").await, 0);
        assert_eq!(
            ids(store.jobs(&filter("dev3@"), 5, 0).await.unwrap()),
            ["j03"]
        );
        store.index_search().await.unwrap();
        // Common: the probe stops counting at COMMON; the page is the newest
        // five of the old jobs, past the ten newest that lack the term.
        assert_eq!(candidates("old.example").await, COMMON);
        let page = ids(store.jobs(&filter("OLD.example"), 5, 0).await.unwrap());
        assert_eq!(page, ["j20", "j19", "j18", "j17", "j16"]);
        let second = ids(store.jobs(&filter("old.example"), 5, 5).await.unwrap());
        assert_eq!(second, ["j15", "j14", "j13", "j12", "j11"]);
        // Rare: one candidate, found through the index.
        assert_eq!(candidates("dev3@").await, 1);
        assert_eq!(
            ids(store.jobs(&filter("dev3@"), 5, 0).await.unwrap()),
            ["j03"]
        );
        // Nothing: no candidate, no job.
        assert_eq!(candidates("nowhere").await, 0);
        assert!(
            store
                .jobs(&filter("nowhere"), 5, 0)
                .await
                .unwrap()
                .is_empty()
        );
        store.close().await;
    }

    /// Any text is a term, never an error: control characters and
    /// characters outside the basic plane are searched for; a NUL, which no
    /// stored text holds (PostgreSQL cannot store it, FTS5 cannot quote it),
    /// finds nothing. The fuzzer's term once broke the CSV export mid-stream.
    async fn any_term_is_searched(store: &Store) {
        for i in 1..=6 {
            let j = job(
                &format!("j{i:02}"),
                &format!("dev{i}@\u{1}\u{26774}.example"),
            );
            store.enqueue(&j, i).await.unwrap();
        }
        let find = |term: &str, after: Option<Cursor>| {
            let filter = JobFilter {
                search: Some(term.to_owned()),
                ..Default::default()
            };
            let store = store.clone();
            async move {
                let found = match after {
                    Some(a) => store.jobs_page(&filter, Some(&a), 10).await,
                    None => store.jobs(&filter, 10, 0).await,
                };
                match found {
                    Ok(jobs) => jobs.into_iter().map(|j| j.id).collect::<Vec<_>>(),
                    Err(e) => panic!("term {filter:?}: {e}"),
                }
            }
        };
        let fuzzed = "\u{de}\u{f3}?\u{bf}2\u{9d}f\u{98}\u{a0af3}S\u{cd}\u{ff}\u{26774}*n\u{f}\u{ec}\u{0}W\u{16dc6}";
        for term in [fuzzed, "\u{0}\u{0}\u{0}", "\u{0}", "dev2\u{0}"] {
            assert!(find(term, None).await.is_empty(), "{term:?}");
            assert!(
                find(term, Some((4, "j04".into()))).await.is_empty(),
                "{term:?}"
            );
        }
        assert_eq!(find("\u{1}\u{26774}.ex", None).await.len(), 6);
        assert_eq!(find("3@\u{1}\u{26774}", None).await, ["j03"]);
        assert_eq!(
            find("@\u{1}\u{26774}", Some((4, "j04".into()))).await,
            ["j03", "j02", "j01"]
        );
    }

    #[tokio::test]
    async fn any_term_is_searched_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        any_term_is_searched(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn any_term_is_searched_on_postgresql() {
        let store = Store::open_postgres(&testkit::postgres::database(), "instance-a")
            .await
            .unwrap();
        any_term_is_searched(&store).await;
        store.close().await;
    }

    /// A history longer than PostgreSQL's first window ([`RECENT`]): a common
    /// term answers from the newest jobs, a rare one still finds jobs older
    /// than them, page after page, in the order a scan gives. On SQLite the
    /// same data takes the probe's two ways (read newest first; the index).
    async fn old_jobs_past_the_newest(store: &Store) {
        // RECENT + 100 sent jobs in one statement: every one holds "common";
        // the 2 oldest and the newest hold "needle" too (fewer than
        // COMMON, so SQLite asks the index for them).
        let n = RECENT + 100;
        let (series, name, needle, other) = match store.engine() {
            crate::store::Engine::Postgres(_) => (
                "SELECT i::BIGINT AS i FROM generate_series(1, $1) AS i",
                "'j' || lpad(i::TEXT, 6, '0')",
                "'needle' || i || '@common.example'",
                "'u' || i || '@common.example'",
            ),
            crate::store::Engine::Sqlite(_) => (
                "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1) SELECT i FROM k",
                "printf('j%06d', i)",
                "printf('needle%d@common.example', i)",
                "printf('u%d@common.example', i)",
            ),
        };
        let last = if matches!(store.engine(), crate::store::Engine::Postgres(_)) {
            "$1"
        } else {
            "?1"
        };
        let sql = format!(
            "INSERT INTO jobs (id, submitter, source, mail_from, rcpt_to, size, state, next_attempt_at, created_at, updated_at) \
             SELECT {name}, 's', '127.0.0.1', \
             CASE WHEN i <= 2 OR i = {last} THEN {needle} ELSE {other} END, \
             '[\"r@example.com\"]', 10, 'sent', i, i, i FROM ({series}) AS k"
        );
        crate::on_pool!(store, |p, _q, _is_pg| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(n)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .unwrap();
        let find = |term: &str, limit: i64| {
            let filter = JobFilter {
                search: Some(term.to_owned()),
                ..Default::default()
            };
            let store = store.clone();
            async move {
                store
                    .jobs(&filter, limit, 0)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|j| j.id)
                    .collect::<Vec<_>>()
            }
        };
        // On SQLite first with none of them in the trigram index yet.
        for indexed in [false, true] {
            if indexed {
                store.index_search().await.unwrap();
            }
            found_past_the_newest(store, n, &find).await;
        }
    }

    async fn found_past_the_newest<F, R>(store: &Store, n: i64, find: &F)
    where
        F: Fn(&str, i64) -> R,
        R: std::future::Future<Output = Vec<String>>,
    {
        let newest: Vec<String> = (0..10).map(|k| format!("j{:06}", n - k)).collect();
        assert_eq!(find("COMMON", 10).await, newest);
        let needles: Vec<String> = [n, 2, 1].iter().map(|i| format!("j{i:06}")).collect();
        assert_eq!(find("needle", 10).await, needles);
        assert_eq!(find("needle", 1).await, needles[..1]);
        // Past the newest jobs the full history answers alone.
        let page = store
            .jobs_page(
                &JobFilter {
                    search: Some("needle".into()),
                    ..Default::default()
                },
                Some(&(n, format!("j{n:06}"))),
                10,
            )
            .await
            .unwrap();
        let ids: Vec<String> = page.into_iter().map(|j| j.id).collect();
        assert_eq!(ids, needles[1..]);
    }

    #[tokio::test]
    async fn old_jobs_are_found_past_the_newest_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        old_jobs_past_the_newest(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn old_jobs_are_found_past_the_newest_on_postgresql() {
        let store = Store::open_postgres(&testkit::postgres::database(), "instance-a")
            .await
            .unwrap();
        old_jobs_past_the_newest(&store).await;
        store.close().await;
    }

    /// The trigram index merges its segments 16 at a time (migration 0018):
    /// the setting is kept in the index, for every connection.
    #[tokio::test]
    async fn the_search_index_merges_sixteen_segments_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let automerge: i64 =
            sqlx::query_scalar("SELECT v FROM jobs_search_config WHERE k = 'automerge'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(automerge, 16);
        store.close().await;
    }

    /// A rare term's candidates are read by rowid whatever other filters
    /// come with it, also in a store SQLite has no statistics of.
    #[tokio::test]
    async fn candidates_are_read_by_rowid_whatever_the_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let filters = [
            JobFilter::default(),
            JobFilter {
                state: Some(JobState::Sent),
                ..Default::default()
            },
            JobFilter {
                account_id: Some(1),
                since: Some(10),
                until: Some(20),
                ..Default::default()
            },
        ];
        for (i, mut filter) in filters.into_iter().enumerate() {
            filter.search = Some("rare@example".into());
            let after = (i == 2).then(|| (15, "j".to_owned()));
            let Plan::Probe { indexed, .. } = history_queries(&filter, after.as_ref(), 5, 0, false)
            else {
                panic!("SQLite probes for a term");
            };
            let plan = explain(&store, &indexed).await;
            assert_eq!(
                plan.first().map(String::as_str),
                Some("SEARCH jobs USING INTEGER PRIMARY KEY (rowid=?)"),
                "{filter:?}: {plan:?}"
            );
        }
        store.close().await;
    }

    /// The steps of SQLite's plan for `q`.
    async fn explain(store: &Store, q: &HistoryQuery) -> Vec<String> {
        let rows = crate::bind_history!(
            sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", q.sql))),
            &q.binds
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        rows.iter()
            .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
            .collect()
    }

    /// Jobs past the trigram index's mark (SQLite).
    async fn unindexed(store: &Store) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE rowid > (SELECT indexed_to FROM search_mark)",
        )
        .fetch_one(store.pool())
        .await
        .unwrap()
    }

    /// The group-commit task indexes new jobs by itself once enough wait
    /// (in tests it does not by time, so that they choose).
    #[tokio::test]
    async fn the_writer_indexes_new_jobs_once_enough_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let enough = super::super::search_index::INDEX_JOBS;
        let n = enough + 10;
        for i in 0..n {
            let j = job(&format!("j{i:04}"), &format!("dev{i}@example.com"));
            store.enqueue(&j, i64::try_from(i).unwrap()).await.unwrap();
        }
        // Indexing follows the answers of the commit that reached the count.
        let mut left = unindexed(&store).await;
        for _ in 0..100 {
            if left < i64::try_from(enough).unwrap() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            left = unindexed(&store).await;
        }
        assert!(
            left < i64::try_from(enough).unwrap(),
            "{left} of {n} jobs still wait for the index"
        );
        sqlx::query("INSERT INTO jobs_search(jobs_search, rank) VALUES ('integrity-check', 0)")
            .execute(store.pool())
            .await
            .unwrap();
        store.close().await;
    }

    /// The trigram index follows the jobs through deletion, the purge, a
    /// reused rowid, a job deleted before it was indexed, a backup and an
    /// index built by the migrations for jobs that were there before them.
    #[tokio::test]
    async fn the_search_index_stays_in_step_with_the_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let ids = |jobs: Vec<crate::queue::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
        let search = |term: &str| JobFilter {
            search: Some(term.to_owned()),
            ..Default::default()
        };
        // The index against every job's text: all indexed first.
        let check = async |store: &Store| {
            store.index_search().await.unwrap();
            sqlx::query("INSERT INTO jobs_search(jobs_search, rank) VALUES ('integrity-check', 1)")
                .execute(store.pool())
                .await
                .unwrap();
        };
        store
            .enqueue(&job("old", "alpha@example.com"), 10)
            .await
            .unwrap();
        store
            .enqueue(&job("last", "gamma@example.com"), 30)
            .await
            .unwrap();
        // Deleting the newest job frees its rowid for the next one, which
        // the index then takes at once (it is at or below the mark).
        store.index_search().await.unwrap();
        store.delete_job("last").await.unwrap();
        store
            .enqueue(&job("new", "beta@example.com"), 20)
            .await
            .unwrap();
        assert_eq!(unindexed(&store).await, 0);
        // A job deleted before it was indexed leaves the index alone.
        store
            .enqueue(&job("brief", "delta@example.com"), 40)
            .await
            .unwrap();
        assert_eq!(unindexed(&store).await, 1);
        store.delete_job("brief").await.unwrap();
        check(&store).await;
        assert_eq!(
            ids(store.jobs(&search("gamma"), 10, 0).await.unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(store.jobs(&search("BETA@"), 10, 0).await.unwrap()),
            ["new"]
        );
        assert_eq!(
            ids(store.jobs(&search("alpha"), 10, 0).await.unwrap()),
            ["old"]
        );

        // A backup keeps the index in step with its jobs.
        let copy = dir.path().join("backup.sqlite");
        sqlx::query("VACUUM INTO ?1")
            .bind(copy.to_str().unwrap())
            .execute(store.pool())
            .await
            .unwrap();
        store.close().await;
        let restored = tempfile::tempdir().unwrap();
        std::fs::copy(&copy, restored.path().join("hikyaku.sqlite")).unwrap();
        let store = Store::open(restored.path()).await.unwrap();
        check(&store).await;
        assert_eq!(
            ids(store.jobs(&search("beta@"), 10, 0).await.unwrap()),
            ["new"]
        );

        // Jobs written before the migrations are indexed by them.
        for table in ["jobs_search", "search_mark"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
                .execute(store.pool())
                .await
                .unwrap();
        }
        for trigger in ["insert", "delete", "update"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP TRIGGER jobs_search_{trigger}"
            )))
            .execute(store.pool())
            .await
            .unwrap();
        }
        for migration in [
            include_str!("../../../migrations/sqlite/0016_history_search.sql"),
            include_str!("../../../migrations/sqlite/0019_search_after_commit.sql"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(migration))
                .execute(store.pool())
                .await
                .unwrap();
        }
        assert_eq!(unindexed(&store).await, 0);
        check(&store).await;
        assert_eq!(
            ids(store.jobs(&search("alpha@"), 10, 0).await.unwrap()),
            ["old"]
        );
        store.close().await;
    }
}
