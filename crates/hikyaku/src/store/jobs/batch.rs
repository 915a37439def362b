//! Group commit: the writes on the path of every message — storing an
//! accepted message, recording a job's end — are queued to one task that
//! commits whatever has queued up in a single transaction. Each caller still
//! gets its answer only after the commit (so `250` still means "on disk"),
//! but eight sessions accepting at once cost one fsync instead of eight.
//!
//! Delivery's claims of due jobs run in the same transactions (with the
//! bodies of the claimed jobs returned by the same statement), so that the
//! queue's one writer never waits for a second one.
//!
//! The task owns its own SQLite connection rather than borrowing one from the
//! pool: SQLite drops a connection's page cache whenever another connection
//! has written, so a connection that does all the hot writes keeps the pages
//! of the job tables cached.
//!
//! A failure that dooms the transaction (a full disk, I/O) fails the whole
//! batch, and every caller gets that error — nothing of the batch was
//! written. Any other failure of one operation (a broken constraint) rolls
//! the batch back and runs each operation again in its own transaction, so
//! only the faulty one is refused. (Per-operation savepoints would do the
//! same at the cost of two more statements for every message.)

use sqlx::{ConnectOptions as _, Connection as _, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::rows::{JOB_COLUMNS, job_from_row};
use super::search_index;
use crate::queue::{Claimed, JobState, NewJob};
use crate::store::{Result, StoreError};
use sqlx::Row as _;

/// Operations at most per transaction.
const MAX_OPS: usize = 64;
/// Message bytes at most per transaction (a few large messages commit alone).
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Times the task lets other tasks run before it commits, so that writes
/// being prepared at that moment join the same commit.
const GATHER_YIELDS: usize = 2;
/// Requests waiting at most; callers wait for room beyond that.
const QUEUE: usize = 1024;

// Requests are moved once through the channel; boxing the message's job
// would cost an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Op {
    Enqueue {
        job: NewJob,
        rcpt: String,
        now: i64,
        /// Stored already claimed (`sending`, first attempt counted) with
        /// this lease: delivery takes the job from memory, not from the queue.
        lease_until: Option<i64>,
        /// Pieces stored before under the job's id (`job.body` is the last
        /// one) and the whole message's length; `None`: `job.body` is all.
        pieces: Option<(u32, i64)>,
    },
    /// One piece of a message still arriving (not yet any job's).
    Piece {
        upload: String,
        seq: u32,
        data: bytes::Bytes,
        now: i64,
    },
    Finish {
        id: String,
        /// Sent or failed.
        state: JobState,
        /// The account it went out through (kept as it was when `None`).
        via: Option<i64>,
        reply: String,
        now: i64,
    },
    /// Up to `limit` due jobs, most overdue first, leased until `lease_until`.
    Claim {
        now: i64,
        lease_until: i64,
        limit: u32,
    },
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Enqueue { job, .. } => job.body.len(),
            Op::Piece { data, .. } => data.len(),
            Op::Finish { reply, .. } => reply.len(),
            Op::Claim { .. } => 0,
        }
    }
}

/// What an operation gives back once committed.
#[derive(Debug)]
pub(crate) enum Answer {
    Done,
    Claimed(Vec<Claimed>),
}

type Request = (Op, oneshot::Sender<Result<Answer>>);

/// The handle to the group-commit task. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Request>,
}

impl Batcher {
    pub(crate) fn start(
        conn: SqliteConnection,
        options: sqlx::sqlite::SqliteConnectOptions,
        lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(Writer { conn, options }, lock, rx));
        Batcher { queue }
    }

    /// Runs `op` in the next group commit and waits for that commit.
    pub(crate) async fn submit(&self, op: Op) -> Result<Answer> {
        let (done, answer) = oneshot::channel();
        self.queue.send((op, done)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

pub(crate) fn closed() -> StoreError {
    StoreError::Shared {
        message: "the store is shutting down".to_owned(),
        temporary: true,
    }
}

/// A copy of `e` for every caller of a failed batch.
pub(crate) fn share(e: &StoreError) -> StoreError {
    match e {
        StoreError::Full => StoreError::Full,
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Conflict(s) => StoreError::Conflict(s.clone()),
        other => StoreError::Shared {
            message: other.to_string(),
            temporary: other.is_temporary(),
        },
    }
}

/// The batch task's connection, and how to open it again.
struct Writer {
    conn: SqliteConnection,
    options: sqlx::sqlite::SqliteConnectOptions,
}

impl Writer {
    /// After a failed batch: ends whatever the batch left open (SQLite may
    /// already have rolled back by itself, on SQLITE_FULL for instance), and
    /// replaces a connection that no longer answers.
    async fn recover(&mut self) {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
        if self.conn.ping().await.is_ok() {
            return;
        }
        match self.options.connect().await {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.conn, fresh);
                let _ = old.close_hard().await;
            }
            Err(e) => tracing::warn!(error = %e, "store: cannot reopen the write connection"),
        }
    }
}

/// `first` and the requests already waiting behind it, up to `max_ops` of
/// them and `max_bytes` of message data: the task lets other tasks run
/// [`GATHER_YIELDS`] times meanwhile, so that writes being prepared at that
/// moment join. Shared by both engines' group commits.
pub(crate) async fn gather<T>(
    rx: &mut mpsc::Receiver<T>,
    first: T,
    bytes_of: impl Fn(&T) -> usize,
    max_ops: usize,
    max_bytes: usize,
) -> Vec<T> {
    let mut bytes = bytes_of(&first);
    let mut batch = vec![first];
    for round in 0..=GATHER_YIELDS {
        if round > 0 {
            tokio::task::yield_now().await;
        }
        while batch.len() < max_ops && bytes < max_bytes {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += bytes_of(&r);
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
    }
    batch
}

async fn run(
    mut writer: Writer,
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    mut rx: mpsc::Receiver<Request>,
) {
    let mut unindexed = search_index::Pending::at_start();
    loop {
        // Idle: the search index's turn when it is due.
        let next = match tokio::time::timeout_at(unindexed.due_at().into(), rx.recv()).await {
            Ok(next) => next,
            Err(_) => {
                index(&mut writer, &lock, &mut unindexed).await;
                continue;
            }
        };
        let Some(first) = next else { break };
        let batch = gather(&mut rx, first, |r| r.0.bytes(), MAX_OPS, MAX_BYTES).await;
        let results = commit(&mut writer, &lock, &batch).await;
        let enqueued = batch
            .iter()
            .zip(&results)
            .filter(|((op, _), r)| matches!(op, Op::Enqueue { .. }) && r.is_ok())
            .count();
        for ((_, done), result) in batch.into_iter().zip(results) {
            // The caller may have gone (its session closed); the write stands.
            let _ = done.send(result);
        }
        // After the answers: nobody waits for the index. Requests arriving
        // meanwhile join the next commit.
        unindexed.committed(enqueued);
        if unindexed.due() {
            index(&mut writer, &lock, &mut unindexed).await;
        }
    }
}

/// Adds the next new jobs to the history search's index, in a transaction
/// of its own: a failure there never fails a message.
async fn index(
    writer: &mut Writer,
    lock: &std::sync::Arc<tokio::sync::Mutex<()>>,
    unindexed: &mut search_index::Pending,
) {
    let outcome = {
        let _guard = lock.lock().await;
        search_index::index_next(&mut writer.conn).await
    };
    if outcome.is_err() {
        writer.recover().await;
    }
    unindexed.indexed(&outcome);
}

async fn commit(
    writer: &mut Writer,
    lock: &std::sync::Arc<tokio::sync::Mutex<()>>,
    batch: &[Request],
) -> Vec<Result<Answer>> {
    let ops: Vec<&Op> = batch.iter().map(|(op, _)| op).collect();
    match commit_all(writer, lock, &ops).await {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(e) if e.is_temporary() || ops.len() == 1 => {
            batch.iter().map(|_| Err(share(&e))).collect()
        }
        Err(_) => {
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(
                    commit_all(writer, lock, &[op])
                        .await
                        .map(|mut a| a.pop().unwrap_or(Answer::Done)),
                );
            }
            results
        }
    }
}

/// All of `ops` in one transaction, or none; an answer for each. The whole
/// transaction — `BEGIN`, one multi-row statement per table and kind of
/// operation, the claims, `COMMIT` — is one script sent to SQLite's thread
/// at once: every separate statement would be another round trip to it.
async fn commit_all(
    writer: &mut Writer,
    lock: &std::sync::Arc<tokio::sync::Mutex<()>>,
    ops: &[&Op],
) -> Result<Vec<Answer>> {
    let mut script = sqlx::QueryBuilder::<sqlx::Sqlite>::new("BEGIN IMMEDIATE; ");
    let enqueued: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| matches!(op, Op::Enqueue { .. }))
        .collect();
    for chunk in enqueued.chunks(ROWS_PER_INSERT) {
        insert_jobs(&mut script, chunk);
    }
    let pieces: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| matches!(op, Op::Piece { .. }))
        .collect();
    for chunk in pieces.chunks(ROWS_PER_INSERT) {
        insert_pieces(&mut script, chunk);
    }
    let finished: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| matches!(op, Op::Finish { .. }))
        .collect();
    for chunk in finished.chunks(ROWS_PER_INSERT) {
        finish_jobs(&mut script, chunk);
    }
    // After the writes: a job finished in this batch is not claimed again.
    for (i, op) in ops.iter().enumerate() {
        if let Op::Claim {
            now,
            lease_until,
            limit,
        } = op
        {
            claim_jobs(&mut script, i, *now, *lease_until, *limit);
        }
    }
    let claims = ops.iter().any(|op| matches!(op, Op::Claim { .. }));
    script.push("COMMIT");
    // The store's write lock keeps the pool's writers out; SQLite would make
    // them wait in its busy handler otherwise.
    let _guard = lock.lock().await;
    let started = std::time::Instant::now();
    let ran = if !claims {
        script
            .build()
            .execute(&mut writer.conn)
            .await
            .map(|_| Vec::new())
    } else {
        script.build().fetch_all(&mut writer.conn).await
    };
    crate::metrics::store_commit(started.elapsed());
    let rows = match ran {
        Ok(rows) => rows,
        Err(e) => {
            writer.recover().await;
            return Err(e.into());
        }
    };
    let mut answers: Vec<Answer> = ops
        .iter()
        .map(|op| match op {
            Op::Claim { .. } => Answer::Claimed(Vec::new()),
            _ => Answer::Done,
        })
        .collect();
    for row in &rows {
        // The claim a row answers is in its `claim` column.
        let claim = row
            .try_get::<i64, _>("claim")
            .ok()
            .and_then(|c| usize::try_from(c).ok());
        if let Some(Answer::Claimed(list)) = claim.and_then(|c| answers.get_mut(c)) {
            let body: Option<Vec<u8>> = row.try_get("body")?;
            list.push((job_from_row(row)?, body.map(bytes::Bytes::from)));
        }
    }
    for answer in &mut answers {
        if let Answer::Claimed(list) = answer {
            // RETURNING gives no order; deliver the most overdue first.
            list.sort_by(|(a, _), (b, _)| {
                (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id))
            });
        }
    }
    Ok(answers)
}

/// Claims due jobs, returning each with its body and the number of the
/// claim (`tag`) it answers.
pub(super) fn claim_jobs(script: &mut Script, tag: usize, now: i64, lease_until: i64, limit: u32) {
    script.push("UPDATE jobs SET state = 'sending', lease_until = ");
    script.push_bind(lease_until);
    script.push(", attempts = attempts + 1, updated_at = ");
    script.push_bind(now);
    // The most overdue of each state by the `jobs_due` index, then the most
    // overdue of those: an `IN ('queued', 'deferred')` would sort every due
    // job, and a backlog has thousands. Equal times go by insertion (rowid).
    let limit = i64::from(limit.max(1));
    script.push(" WHERE id IN (SELECT id FROM (");
    for (i, state) in [JobState::Queued, JobState::Deferred]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            script.push(" UNION ALL ");
        }
        script.push(
            "SELECT * FROM (SELECT id, next_attempt_at, rowid AS r FROM jobs WHERE state = '",
        );
        script.push(state.as_str());
        script.push("' AND next_attempt_at <= ");
        script.push_bind(now);
        script.push(" ORDER BY next_attempt_at, rowid LIMIT ");
        script.push_bind(limit);
        script.push(")");
    }
    script.push(") ORDER BY next_attempt_at, r LIMIT ");
    script.push_bind(limit);
    script.push(") RETURNING ");
    script.push(JOB_COLUMNS);
    // Large bodies are read by the worker that sends them (see
    // `CLAIM_BODY_MAX`); a constant of ours, so written as a literal.
    script.push(", CASE WHEN size <= ");
    script.push(crate::queue::job::CLAIM_BODY_MAX);
    script.push(" THEN (SELECT body FROM messages WHERE messages.job_id = jobs.id AND messages.pieces = 0) END AS body, ");
    script.push_bind(i64::try_from(tag).unwrap_or(i64::MAX));
    script.push(" AS claim; ");
}

pub(super) type Script = sqlx::QueryBuilder<sqlx::Sqlite>;

/// Records the end of several jobs with one UPDATE, and drops the bodies of
/// the sent ones with one DELETE. Only jobs still `sending` move, so an
/// Administrator's delete in the meantime is not undone.
fn finish_jobs(script: &mut Script, ops: &[&Op]) {
    script.push(
        "UPDATE jobs SET state = v.column2, lease_until = NULL, last_reply = v.column3, updated_at = v.column4, via_account_id = COALESCE(v.column5, jobs.via_account_id) FROM (",
    );
    script.push_values(ops.iter().copied(), |mut row, op| {
        if let Op::Finish {
            id,
            state,
            via,
            reply,
            now,
        } = op
        {
            row.push_bind(id.as_str())
                .push_bind(state.as_str())
                .push_bind(reply.as_str())
                .push_bind(*now)
                .push_bind(*via);
        }
    });
    script.push(") AS v WHERE jobs.id = v.column1 AND jobs.state = 'sending'; ");
    let sent: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Finish { id, state, .. } if *state == JobState::Sent => Some(id.as_str()),
            _ => None,
        })
        .collect();
    if !sent.is_empty() {
        // The bodies are no longer needed once the upstream has them; only
        // where the UPDATE applied: a job put back in the queue meanwhile
        // (its lease ran out) still needs its body. (Written as EXISTS on
        // the job's id: `id IN (SELECT … WHERE state = 'sent')` lets SQLite
        // walk every sent job through an index of the states.)
        script.push("DELETE FROM messages WHERE job_id IN (");
        let mut list = script.separated(", ");
        for id in sent {
            list.push_bind(id);
        }
        script.push(
            ") AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = messages.job_id AND jobs.state = 'sent'); ",
        );
    }
}

/// Rows per multi-row INSERT (15 bound values each; SQLite allows 32766 per
/// statement).
const ROWS_PER_INSERT: usize = 64;

fn insert_jobs(script: &mut Script, ops: &[&Op]) {
    script.push(
        "INSERT INTO jobs (id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, state, attempts, lease_until, next_attempt_at, created_at, updated_at) ",
    );
    script.push_values(ops.iter().copied(), |mut row, op| {
        if let Op::Enqueue {
            job,
            rcpt,
            now,
            lease_until,
            pieces,
        } = op
        {
            let size = pieces.map_or_else(
                || i64::try_from(job.body.len()).unwrap_or(i64::MAX),
                |(_, size)| size,
            );
            row.push_bind(job.id.as_str())
                .push_bind(job.account_id)
                .push_bind(job.submitter.as_str())
                .push_bind(job.source.as_str())
                .push_bind(job.mail_from.as_str())
                .push_bind(rcpt.as_str())
                .push_bind(job.header_from.as_deref())
                .push_bind(job.subject.as_deref())
                .push_bind(size)
                .push_bind(if lease_until.is_some() {
                    JobState::Sending.as_str()
                } else {
                    JobState::Queued.as_str()
                })
                .push_bind(i64::from(lease_until.is_some()))
                .push_bind(*lease_until)
                .push_bind(*now)
                .push_bind(*now)
                .push_bind(*now);
        }
    });
    script.push("; INSERT INTO messages (job_id, body, pieces) ");
    script.push_values(ops.iter().copied(), |mut row, op| {
        if let Op::Enqueue { job, pieces, .. } = op {
            match pieces {
                None => row
                    .push_bind(job.id.as_str())
                    .push_bind(&job.body[..])
                    .push_bind(0_i64),
                // The body is in its pieces, the last one written here.
                Some((n, _)) => row
                    .push_bind(job.id.as_str())
                    .push_bind(&b""[..])
                    .push_bind(i64::from(*n) + 1),
            };
        }
    });
    script.push("; ");
    let last: Vec<(&str, u32, &[u8], i64)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Enqueue {
                job,
                pieces: Some((n, _)),
                now,
                ..
            } => Some((job.id.as_str(), *n, &job.body[..], *now)),
            _ => None,
        })
        .collect();
    if !last.is_empty() {
        script.push("INSERT INTO message_pieces (upload_id, seq, data, created_at) ");
        script.push_values(last, |mut row, (id, seq, data, now)| {
            row.push_bind(id)
                .push_bind(i64::from(seq))
                .push_bind(data)
                .push_bind(now);
        });
        script.push("; ");
    }
}

/// Pieces of messages still arriving, in one multi-row INSERT.
fn insert_pieces(script: &mut Script, ops: &[&Op]) {
    script.push("INSERT INTO message_pieces (upload_id, seq, data, created_at) ");
    script.push_values(ops.iter().copied(), |mut row, op| {
        if let Op::Piece {
            upload,
            seq,
            data,
            now,
        } = op
        {
            row.push_bind(upload.as_str())
                .push_bind(i64::from(*seq))
                .push_bind(&data[..])
                .push_bind(*now);
        }
    });
    script.push("; ");
}
