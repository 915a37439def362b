//! Group commit: the writes on the path of every message — storing an
//! accepted message, recording a job's end — are queued to one task that
//! commits whatever has queued up in a single transaction. Each caller still
//! gets its answer only after the commit (so `250` still means "on disk"),
//! but eight sessions accepting at once cost one fsync instead of eight.
//!
//! Each operation runs under its own SAVEPOINT: one that breaks a constraint
//! is undone alone and answered with its error. A failure that dooms the
//! transaction (a full disk, I/O) fails the whole batch, and every caller
//! gets that error — nothing of the batch was written.

use tokio::sync::{mpsc, oneshot};

use super::jobs::{NewJob, SENT};
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

    async fn apply(&self, tx: &mut WriteTx) -> Result<()> {
        match self {
            Op::Enqueue { job, rcpt, now } => {
                sqlx::query("INSERT INTO jobs (id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, state, attempts, next_attempt_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', 0, ?10, ?10, ?10)")
                    .bind(&job.id)
                    .bind(job.account_id)
                    .bind(&job.submitter)
                    .bind(&job.source)
                    .bind(&job.mail_from)
                    .bind(rcpt)
                    .bind(&job.header_from)
                    .bind(&job.subject)
                    .bind(i64::try_from(job.body.len()).unwrap_or(i64::MAX))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("INSERT INTO messages (job_id, body) VALUES (?1, ?2)")
                    .bind(&job.id)
                    .bind(&job.body)
                    .execute(&mut **tx)
                    .await?;
            }
            Op::Finish {
                id,
                state,
                reply,
                now,
            } => {
                sqlx::query("UPDATE jobs SET state = ?2, lease_until = NULL, last_reply = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'sending'")
                    .bind(id)
                    .bind(state)
                    .bind(reply)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                if *state == SENT {
                    // The body is no longer needed once the upstream has it.
                    sqlx::query("DELETE FROM messages WHERE job_id = ?1")
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Ok(())
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
    let all = |e: &StoreError| batch.iter().map(|_| Err(share(e))).collect();
    let mut tx = match super::begin_write(pool, lock).await {
        Ok(tx) => tx,
        Err(e) => return all(&e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for (op, _) in batch {
        if let Err(e) = sqlx::query("SAVEPOINT op").execute(&mut *tx).await {
            return all(&e.into());
        }
        match op.apply(&mut tx).await {
            Ok(()) => {
                if let Err(e) = sqlx::query("RELEASE op").execute(&mut *tx).await {
                    return all(&e.into());
                }
                results.push(Ok(()));
            }
            // The transaction may be gone (SQLite rolls back by itself on a
            // full disk): nothing of the batch can be trusted to commit.
            Err(e) if e.is_temporary() => return all(&e),
            Err(e) => {
                let undone = sqlx::query("ROLLBACK TO op; RELEASE op")
                    .execute(&mut *tx)
                    .await;
                if let Err(u) = undone {
                    return all(&u.into());
                }
                results.push(Err(e));
            }
        }
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => all(&e),
    }
}
