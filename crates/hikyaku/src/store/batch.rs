//! Group commit: the writes on the path of every message — storing an
//! accepted message, recording a job's end — are queued to one task that
//! commits whatever has queued up in a single transaction. Each caller still
//! gets its answer only after the commit (so `250` still means "on disk"),
//! but eight sessions accepting at once cost one fsync instead of eight.
//!
//! A failure that dooms the transaction (a full disk, I/O) fails the whole
//! batch, and every caller gets that error — nothing of the batch was
//! written. Any other failure of one operation (a broken constraint) rolls
//! the batch back and runs each operation again in its own transaction, so
//! only the faulty one is refused. (Per-operation savepoints would do the
//! same at the cost of two more statements for every message.)

use tokio::sync::{mpsc, oneshot};

use super::jobs::{NewJob, QUEUED as JOB_QUEUED, SENT};
use super::{Result, StoreError, WriteTx};

/// Operations at most per transaction.
const MAX_OPS: usize = 64;
/// Message bytes at most per transaction (a few large messages commit alone).
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Requests waiting at most; callers wait for room beyond that.
const QUEUE: usize = 1024;

pub(crate) enum Op {
    Enqueue {
        job: NewJob,
        rcpt: String,
        now: i64,
    },
    Finish {
        id: String,
        state: &'static str,
        reply: String,
        now: i64,
    },
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Enqueue { job, .. } => job.body.len(),
            Op::Finish { reply, .. } => reply.len(),
        }
    }
}

type Request = (Op, oneshot::Sender<Result<()>>);

/// The handle to the group-commit task. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Request>,
}

impl Batcher {
    pub(crate) fn start(
        pool: sqlx::SqlitePool,
        lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, lock, rx));
        Batcher { queue }
    }

    /// Runs `op` in the next group commit and waits for that commit.
    pub(crate) async fn submit(&self, op: Op) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.queue.send((op, done)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Shared {
        message: "the store is shutting down".to_owned(),
        temporary: true,
    }
}

/// A copy of `e` for every caller of a failed batch.
fn share(e: &StoreError) -> StoreError {
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

async fn run(
    pool: sqlx::SqlitePool,
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    mut rx: mpsc::Receiver<Request>,
) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.0.bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_OPS && bytes < MAX_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.0.bytes();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let results = commit(&pool, &lock, &batch).await;
        for ((_, done), result) in batch.into_iter().zip(results) {
            // The caller may have gone (its session closed); the write stands.
            let _ = done.send(result);
        }
    }
}

async fn commit(
    pool: &sqlx::SqlitePool,
    lock: &std::sync::Arc<tokio::sync::Mutex<()>>,
    batch: &[Request],
) -> Vec<Result<()>> {
    let ops: Vec<&Op> = batch.iter().map(|(op, _)| op).collect();
    match commit_all(pool, lock, &ops).await {
        Ok(()) => batch.iter().map(|_| Ok(())).collect(),
        Err(e) if e.is_temporary() || ops.len() == 1 => {
            batch.iter().map(|_| Err(share(&e))).collect()
        }
        Err(_) => {
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(commit_all(pool, lock, &[op]).await);
            }
            results
        }
    }
}

/// All of `ops` in one transaction, or none.
async fn commit_all(
    pool: &sqlx::SqlitePool,
    lock: &std::sync::Arc<tokio::sync::Mutex<()>>,
    ops: &[&Op],
) -> Result<()> {
    let mut tx = super::begin_write(pool, lock).await?;
    // One multi-row statement per table and kind of operation: every
    // statement is a round trip to SQLite's thread.
    let enqueued: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| matches!(op, Op::Enqueue { .. }))
        .collect();
    for chunk in enqueued.chunks(ROWS_PER_INSERT) {
        insert_jobs(&mut tx, chunk).await?;
    }
    let finished: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| matches!(op, Op::Finish { .. }))
        .collect();
    for chunk in finished.chunks(ROWS_PER_INSERT) {
        finish_jobs(&mut tx, chunk).await?;
    }
    tx.commit().await
}

/// Records the end of several jobs with one UPDATE, and drops the bodies of
/// the sent ones with one DELETE. Only jobs still `sending` move, so an
/// Administrator's delete in the meantime is not undone.
async fn finish_jobs(tx: &mut WriteTx, ops: &[&Op]) -> Result<()> {
    let mut update = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "UPDATE jobs SET state = v.column2, lease_until = NULL, last_reply = v.column3, updated_at = v.column4 FROM (",
    );
    update.push_values(ops.iter().copied(), |mut row, op| {
        if let Op::Finish {
            id,
            state,
            reply,
            now,
        } = op
        {
            row.push_bind(id.clone())
                .push_bind(*state)
                .push_bind(reply.clone())
                .push_bind(*now);
        }
    });
    update.push(") AS v WHERE jobs.id = v.column1 AND jobs.state = 'sending'");
    update.build().execute(&mut **tx).await?;
    let sent: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Finish { id, state, .. } if *state == SENT => Some(id.as_str()),
            _ => None,
        })
        .collect();
    if !sent.is_empty() {
        // The bodies are no longer needed once the upstream has them.
        let mut delete =
            sqlx::QueryBuilder::<sqlx::Sqlite>::new("DELETE FROM messages WHERE job_id IN (");
        let mut list = delete.separated(", ");
        for id in sent {
            list.push_bind(id);
        }
        // Only where the UPDATE applied: a job put back in the queue
        // meanwhile (its lease ran out) still needs its body.
        delete.push(") AND job_id IN (SELECT id FROM jobs WHERE state = 'sent')");
        delete.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows per multi-row INSERT (14 bound values each; SQLite allows 32766).
const ROWS_PER_INSERT: usize = 64;

async fn insert_jobs(tx: &mut WriteTx, ops: &[&Op]) -> Result<()> {
    let mut jobs = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO jobs (id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, state, attempts, next_attempt_at, created_at, updated_at) ",
    );
    jobs.push_values(ops.iter().copied(), |mut row, op| {
        if let Op::Enqueue { job, rcpt, now } = op {
            row.push_bind(job.id.clone())
                .push_bind(job.account_id)
                .push_bind(job.submitter.clone())
                .push_bind(job.source.clone())
                .push_bind(job.mail_from.clone())
                .push_bind(rcpt.clone())
                .push_bind(job.header_from.clone())
                .push_bind(job.subject.clone())
                .push_bind(i64::try_from(job.body.len()).unwrap_or(i64::MAX))
                .push_bind(JOB_QUEUED)
                .push_bind(0i64)
                .push_bind(*now)
                .push_bind(*now)
                .push_bind(*now);
        }
    });
    jobs.build().execute(&mut **tx).await?;
    let mut bodies =
        sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO messages (job_id, body) ");
    bodies.push_values(ops.iter().copied(), |mut row, op| {
        if let Op::Enqueue { job, .. } = op {
            row.push_bind(job.id.clone()).push_bind(job.body.as_slice());
        }
    });
    bodies.build().execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::store::jobs::tests::job;

    #[tokio::test]
    async fn concurrent_writes_commit_together_and_a_bad_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store.enqueue(&job("dup"), 1).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = store.clone();
            // Job 17 reuses an existing id and must be the only one refused.
            let j = if i == 17 {
                job("dup")
            } else {
                job(&format!("j{i}"))
            };
            tasks.push(tokio::spawn(async move { store.enqueue(&j, 2).await }));
        }
        let mut refused = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if t.await.unwrap().is_err() {
                refused.push(i);
            }
        }
        assert_eq!(refused, vec![17]);
        for i in (0..40).filter(|i| *i != 17) {
            let stored = store.job(&format!("j{i}")).await.unwrap();
            assert_eq!(stored.state, "queued");
            assert_eq!(
                store.job_body(&format!("j{i}")).await.unwrap(),
                format!("Subject: j{i}\r\n\r\nbody\r\n").into_bytes()
            );
        }
        // The original "dup" is untouched.
        assert_eq!(store.job("dup").await.unwrap().created_at, 1);
    }
}
