//! The history search's trigram index on SQLite takes new jobs after their
//! commit, up to a few thousand at a time (migration 0019). Indexed in the intake's
//! own commits, each commit of a few messages made a small FTS5 segment that
//! was merged again at every level of a long history: on a store with a
//! million jobs the same intake cost a third more CPU than on an empty one.
//! Thousands of jobs at a time make a few large segments instead, and the
//! intake's commits write no trigram at all.
//!
//! The index holds exactly the jobs whose rowid is at most the mark
//! (`search_mark.indexed_to`); the search reads the ones past it by their
//! text ([`super::listing`]). The group-commit task indexes once
//! [`INDEX_JOBS`] new jobs have been committed, or [`INDEX_AFTER`] after the
//! first of them, so a job reaches the index within about a second.

use std::time::{Duration, Instant};

use sqlx::SqliteConnection;

use crate::store::{Engine, Result, Store};

/// New jobs after which the writer indexes them. Each indexing costs the
/// intake's next commits more, the more so the larger the index (on a
/// million jobs, 256 at a time cost the intake a fifth more CPU than on an
/// empty store; 2,000 at a time, a twentieth): few large segments are
/// cheaper to write and to merge than many small ones.
pub(crate) const INDEX_JOBS: usize = 2000;
/// The longest a committed job waits for the index (the search finds it
/// meanwhile by its text). Tests index when they choose
/// ([`Store::index_search`]), so that they know which way a job is found.
pub(crate) const INDEX_AFTER: Duration = Duration::from_secs(if cfg!(test) { 3600 } else { 1 });
/// How often the writer looks for jobs to index while none of its own
/// wait: other processes queue jobs too (`hikyaku sendmail`, a copy).
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(if cfg!(test) { 7200 } else { 60 });
/// Jobs indexed at most per transaction, so that a long tail (after a copy
/// into an empty store, say) holds the writer up for tens of milliseconds
/// at a time, not seconds. Well above [`INDEX_JOBS`], so that the jobs
/// committed while an indexing was due join it instead of making a small
/// segment of their own right after.
const CHUNK: i64 = 5000;

/// Indexes the next jobs past the mark (at most [`CHUNK`] rowids further) and
/// moves the mark past them. Returns whether jobs past the
/// mark remain. The caller holds the store's write lock.
///
/// The mark never passes the newest job: a rowid above it is the next new
/// job's, which then waits for the writer like any other. It may go down
/// when the newest jobs were deleted; no job is then between the two.
pub(crate) async fn index_next(conn: &mut SqliteConnection) -> Result<bool> {
    // Every row fetched, so that the script runs to its COMMIT.
    let ran: std::result::Result<Vec<bool>, sqlx::Error> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "BEGIN IMMEDIATE; \
         INSERT INTO jobs_search(rowid, mail_from, rcpt_to, subject, header_from) \
           SELECT rowid, mail_from, rcpt_to, subject, header_from FROM jobs \
           WHERE rowid > (SELECT indexed_to FROM search_mark) \
             AND rowid <= (SELECT indexed_to FROM search_mark) + {CHUNK}; \
         UPDATE search_mark \
           SET indexed_to = min(indexed_to + {CHUNK}, (SELECT coalesce(max(rowid), 0) FROM jobs)) \
           WHERE indexed_to <> min(indexed_to + {CHUNK}, (SELECT coalesce(max(rowid), 0) FROM jobs)); \
         SELECT indexed_to < (SELECT coalesce(max(rowid), 0) FROM jobs) FROM search_mark; \
         COMMIT"
    )))
    .fetch_all(&mut *conn)
    .await;
    match ran {
        Ok(more) => Ok(more.first().copied().unwrap_or(false)),
        Err(e) => {
            // A statement that failed left the transaction open (or SQLite
            // already ended it): nothing of it stands.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            Err(e.into())
        }
    }
}

/// When the group-commit task next indexes: new jobs committed since the
/// last indexing, since when the oldest of them waits, and when it next
/// looks anyway (jobs queued by another process, `hikyaku sendmail`, are
/// not counted here).
#[derive(Debug)]
pub(crate) struct Pending {
    jobs: usize,
    since: Option<Instant>,
    look: Instant,
}

impl Pending {
    /// At start-up jobs of an earlier run (or of a copy) may wait: the
    /// first look is [`INDEX_AFTER`] away.
    pub(crate) fn at_start() -> Self {
        Pending {
            jobs: 0,
            since: None,
            look: Instant::now() + INDEX_AFTER,
        }
    }

    pub(crate) fn committed(&mut self, jobs: usize) {
        if jobs > 0 {
            self.jobs = self.jobs.saturating_add(jobs);
            self.since.get_or_insert_with(Instant::now);
        }
    }

    /// The moment the index is next due.
    pub(crate) fn due_at(&self) -> Instant {
        let counted = self.since.map(|s| {
            if self.jobs >= INDEX_JOBS {
                s
            } else {
                s + INDEX_AFTER
            }
        });
        counted.map_or(self.look, |c| c.min(self.look))
    }

    pub(crate) fn due(&self) -> bool {
        self.due_at() <= Instant::now()
    }

    /// After an indexing: `more` jobs past the mark are due at once (they
    /// wait longer already); after a failure, in [`INDEX_AFTER`].
    pub(crate) fn indexed(&mut self, outcome: &Result<bool>) {
        let now = Instant::now();
        self.jobs = 0;
        self.since = None;
        self.look = match outcome {
            Ok(false) => now + LOOK_EVERY,
            Ok(true) => now,
            Err(e) => {
                tracing::warn!(error = %e, "store: cannot index new jobs for the history search yet; they are found by their text meanwhile");
                now + INDEX_AFTER
            }
        };
    }
}

impl Store {
    /// Indexes every job not yet in the history search's index (SQLite; a
    /// no-op on PostgreSQL, whose indexes take each job in its insert).
    /// The server does this by itself within about a second of a commit.
    pub async fn index_search(&self) -> Result<()> {
        let Engine::Sqlite(s) = &self.engine else {
            return Ok(());
        };
        loop {
            let _guard = s.write_lock.lock().await;
            let mut conn = s.pool.acquire().await?;
            if !index_next(&mut conn).await? {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// When the writer indexes: at start for an earlier run's jobs, once
    /// enough of its own wait or the first has waited long enough, at once
    /// while more wait past a chunk, and now and then for other processes'.
    #[test]
    fn the_index_is_due_by_count_by_age_and_now_and_then() {
        let near = |a: Instant, b: Instant| a.max(b) - a.min(b) < Duration::from_millis(200);
        let now = Instant::now();
        let mut p = Pending::at_start();
        assert!(near(p.due_at(), now + INDEX_AFTER));
        p.indexed(&Ok(false));
        assert!(near(p.due_at(), now + LOOK_EVERY));
        assert!(!p.due());
        // A few jobs: due a little after the first of them.
        p.committed(3);
        assert!(near(p.due_at(), now + INDEX_AFTER));
        p.committed(0);
        assert!(near(p.due_at(), now + INDEX_AFTER));
        // Enough of them: due now.
        p.committed(INDEX_JOBS - 3);
        assert!(p.due());
        // More past the chunk: due again at once.
        p.indexed(&Ok(true));
        assert!(p.due());
        // A failure: tried again a little later.
        p.indexed(&Err(crate::store::StoreError::Full));
        assert!(!p.due());
        assert!(near(p.due_at(), now + INDEX_AFTER));
    }
}
