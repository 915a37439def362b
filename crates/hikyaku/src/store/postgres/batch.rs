//! Group commit on PostgreSQL: the writes on the path of every message —
//! storing an accepted message, recording that a job was sent or failed —
//! are queued to one task that writes whatever has queued up with one
//! statement per kind (rows passed as arrays and `UNNEST`ed), each committed
//! with synchronous commit before any of its callers gets an answer. `250`
//! still means "committed", but eight sessions accepting at once cost one
//! round trip, one statement's triggers and one commit record instead of
//! eight: on the database server that is most of a message's CPU.
//!
//! One batch is written at a time (on connections of its own), as on
//! SQLite: what arrives meanwhile waits and joins the next, so batches grow
//! with the load. New jobs go into the next batch, as a client waits for
//! each, but that batch waits a moment ([`Arrivals::wait`]) for the messages of mail
//! transactions opened a moment ago ([`Arrivals`]): clients answered by the
//! same commit send their next messages together, and without the wait the
//! first of them went out alone and the others a statement later (half as
//! many messages per statement, and as many more statements). Jobs' ends
//! wait up to [`HOLD_ENDS`] for more of them, as only the delivery that
//! recorded one waits for it. Two batches at a time were
//! measured too: smaller batches, and more of the database server's CPU per
//! message with two instances (about 910 µs against 790 µs) for the same
//! rates. Its statements are planned once per connection
//! (`plan_cache_mode = force_generic_plan`): planning one for every batch
//! cost more than running it.
//!
//! A failure that may pass (a lost connection, a deadlock) is tried again
//! once for a deadlock, and otherwise given to every caller of the batch —
//! nothing of it was written. Any other failure (a broken constraint) runs
//! the batch's operations again one by one, so only the faulty one is
//! refused.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::{DB_NOW, pg};
use crate::queue::arrivals::Arrivals;
use crate::queue::{JobState, NewJob};
use crate::store::Result;
use crate::store::jobs::batch::{closed, gather, share};

/// Operations at most per statement.
const MAX_OPS: usize = 64;
/// Message bytes at most per batch (a few large messages commit alone).
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// The group commit's own connections: a batch writes its new jobs, its
/// "sent" and its "failed" at the same time.
pub(crate) const CONNECTIONS: u32 = 3;
/// Requests waiting at most; callers wait for room beyond that.
const QUEUE: usize = 1024;
/// How long a job's end (sent, failed) waits for others to share its
/// statement. Only the delivery's own record waits for it (its worker is
/// free already, the upstream has the message); a statement for every
/// few ends cost the database a quarter of its CPU per message.
const HOLD_ENDS: std::time::Duration = std::time::Duration::from_millis(5);

/// A new job with its whole body, as [`super::PgStore`] stores it.
#[derive(Debug)]
pub(crate) struct Insert {
    pub job: NewJob,
    /// The recipients as stored (a JSON array).
    pub rcpt: String,
    pub now: i64,
    /// Stored already claimed by this instance, leased from `base` (the
    /// database's now when `None`) for `length` seconds.
    pub lease: Option<(Option<i64>, i64)>,
}

/// A claim's end: sent or failed, fenced by the attempt it claimed.
#[derive(Debug)]
pub(crate) struct Finish {
    pub id: String,
    pub state: JobState,
    pub via: Option<i64>,
    pub reply: String,
    pub now: i64,
    pub attempt: Option<i64>,
}

// Requests are moved once through the channel; boxing the job would cost
// an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Op {
    Insert(Insert),
    Finish(Finish),
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Insert(i) => i.job.body.len(),
            Op::Finish(f) => f.reply.len(),
        }
    }
}

/// Committed; for a [`Finish`], whether the job was still this instance's
/// to finish (`false`: its lease was taken over, nothing was recorded).
type Answer = Result<bool>;
type Request = (Op, oneshot::Sender<Answer>);

/// The handle to the group-commit task. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Request>,
    pool: PgPool,
}

impl Batcher {
    /// Starts the task, which writes through `pool` as lease owner `owner`
    /// and waits for the messages `arrivals` expects.
    pub(crate) fn start(pool: PgPool, owner: Arc<str>, arrivals: Arc<Arrivals>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(
            Writer {
                pool: pool.clone(),
                owner,
            },
            arrivals,
            rx,
        ));
        Batcher { queue, pool }
    }

    /// The group commit's connections, to read their plans.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes its connections; later writes fail as temporary.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `op` in the next batch and waits for its commit.
    pub(crate) async fn submit(&self, op: Op) -> Answer {
        let (done, answer) = oneshot::channel();
        self.queue.send((op, done)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

struct Writer {
    pool: PgPool,
    owner: Arc<str>,
}

async fn run(writer: Writer, arrivals: Arc<Arrivals>, mut rx: mpsc::Receiver<Request>) {
    // Jobs' ends held back for the next statement of ends, and when it is due.
    let mut held: Vec<Request> = Vec::new();
    let mut due = tokio::time::Instant::now();
    loop {
        let first = if held.is_empty() {
            rx.recv().await
        } else {
            tokio::select! {
                r = rx.recv() => r,
                () = tokio::time::sleep_until(due) => {
                    writer.write(std::mem::take(&mut held)).await;
                    continue;
                }
            }
        };
        let Some(first) = first else {
            writer.write(held).await;
            return;
        };
        let mut batch = gather(&mut rx, first, |r| r.0.bytes(), MAX_OPS, MAX_BYTES).await;
        if batch.iter().any(|(op, _)| matches!(op, Op::Insert(_))) {
            await_arrivals(&arrivals, &mut rx, &mut batch).await;
        }
        let (ends, mut batch): (Vec<Request>, Vec<Request>) = batch
            .into_iter()
            .partition(|(op, _)| matches!(op, Op::Finish(_)));
        if held.is_empty() {
            due = tokio::time::Instant::now() + HOLD_ENDS;
        }
        held.extend(ends);
        if held.len() >= MAX_OPS || tokio::time::Instant::now() >= due {
            batch.append(&mut held);
        }
        if !batch.is_empty() {
            writer.write(batch).await;
        }
    }
}

/// Adds to `batch` the messages of transactions opened a moment ago, as
/// they come, for up to [`Arrivals::wait`]; only for those on their way
/// now.
async fn await_arrivals(
    arrivals: &Arrivals,
    rx: &mut mpsc::Receiver<Request>,
    batch: &mut Vec<Request>,
) {
    let mark = arrivals.mark();
    let until = std::time::Instant::now() + arrivals.wait();
    let mut bytes: usize = batch.iter().map(|r| r.0.bytes()).sum();
    while batch.len() < MAX_OPS && bytes < MAX_BYTES {
        let Some(young_until) = arrivals.expected_before(mark) else {
            return;
        };
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    bytes += r.0.bytes();
                    batch.push(r);
                }
                None => return,
            },
            () = tokio::time::sleep_until(until.min(young_until).into()) => return,
        }
    }
}

/// The statement that writes a batch of new jobs and their bodies, built
/// once: its text is the same for every batch.
static INSERT_ALL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH r AS (SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::BIGINT[], $10::BOOLEAN[], $11::BIGINT[], $12::BIGINT[], $13::BIGINT[], $14::BYTEA[]) WITH ORDINALITY \
         AS r(id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, claimed, base, length, now, body, ord)), \
         j AS (INSERT INTO jobs (id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, state, attempts, lease_until, lease_owner, next_attempt_at, created_at, updated_at) \
         SELECT id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, CASE WHEN claimed THEN 'sending' ELSE 'queued' END, CASE WHEN claimed THEN 1 ELSE 0 END, \
         CASE WHEN claimed THEN COALESCE(base, {DB_NOW}) + length END, CASE WHEN claimed THEN $15 END, now, now, now FROM r ORDER BY ord RETURNING id) \
         INSERT INTO messages (job_id, body) SELECT r.id, r.body FROM r JOIN j ON j.id = r.id"
    )
});

/// The statement that records a batch of jobs' ends: one round trip, one
/// synchronous commit for the jobs' end and, once sent, their bodies'
/// removal — the upstream has them. `(j.state = 'sending') IS TRUE` is
/// `j.state = 'sending'` (the column is never NULL) in a form no index
/// serves: written plainly, it was planned, on any queue with a history
/// (few of its jobs in flight), as a read of every job in flight through
/// an index of states, matched against the batch, where looking the
/// batch's jobs up by key reads only those.
pub(super) const FINISH_ALL: &str = "WITH r AS (SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[]) \
             AS r(id, state, reply, now, via, attempt)), \
             f AS (UPDATE jobs j SET state = r.state, lease_until = NULL, lease_owner = NULL, last_reply = r.reply, updated_at = r.now, via_account_id = COALESCE(r.via, j.via_account_id) \
             FROM r WHERE j.id = r.id AND (j.state = 'sending') IS TRUE AND j.lease_owner = $7 AND (r.attempt IS NULL OR j.attempts = r.attempt) RETURNING j.id, j.state), \
             d AS (DELETE FROM messages m USING f WHERE m.job_id = f.id AND f.state = 'sent') \
             SELECT id FROM f";

impl Writer {
    /// Writes a batch: its inserts in one statement, its finishes in one
    /// statement per outcome (so that each touches one row of the chart's
    /// counts, and two batches never wait for each other's in turn).
    async fn write(&self, batch: Vec<Request>) {
        let mut inserts = Vec::new();
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        for (op, done) in batch {
            match op {
                Op::Insert(i) => inserts.push((i, done)),
                Op::Finish(f) if f.state == JobState::Sent => sent.push((f, done)),
                Op::Finish(f) => failed.push((f, done)),
            }
        }
        tokio::join!(
            self.answer(inserts, Self::insert_all),
            self.answer(sent, Self::finish_all),
            self.answer(failed, Self::finish_all),
        );
    }

    /// Writes `ops` together with `all` and answers their callers; after a
    /// lasting failure, each again alone, so that only the faulty one fails.
    async fn answer<T>(
        &self,
        ops: Vec<(T, oneshot::Sender<Answer>)>,
        all: impl AsyncFn(&Self, &[&T]) -> sqlx::Result<Vec<bool>>,
    ) {
        if ops.is_empty() {
            return;
        }
        let items: Vec<&T> = ops.iter().map(|(t, _)| t).collect();
        let mut result = all(self, &items).await;
        if matches!(&result, Err(e) if deadlock(e)) {
            // Rolled back whole; the other transaction has gone on.
            result = all(self, &items).await;
        }
        let e = match result {
            Ok(answers) => {
                for ((_, done), answer) in ops.into_iter().zip(answers) {
                    // The caller may have gone (its session closed); the write stands.
                    let _ = done.send(Ok(answer));
                }
                return;
            }
            Err(e) => pg(e),
        };
        if e.is_temporary() || ops.len() == 1 {
            for (_, done) in ops {
                let _ = done.send(Err(share(&e)));
            }
            return;
        }
        for (t, done) in ops {
            let alone = all(self, &[&t]).await.map_err(pg);
            let _ = done.send(alone.map(|a| a.first().copied().unwrap_or(false)));
        }
    }

    async fn insert_all(&self, ops: &[&Insert]) -> sqlx::Result<Vec<bool>> {
        let text = |f: fn(&Insert) -> &str| ops.iter().map(|i| f(i)).collect::<Vec<_>>();
        let optional =
            |f: fn(&Insert) -> Option<&str>| ops.iter().map(|i| f(i)).collect::<Vec<_>>();
        let number = |f: fn(&Insert) -> Option<i64>| ops.iter().map(|i| f(i)).collect::<Vec<_>>();
        sqlx::query(sqlx::AssertSqlSafe(INSERT_ALL.as_str()))
            .bind(text(|i| &i.job.id))
            .bind(number(|i| i.job.account_id))
            .bind(text(|i| &i.job.submitter))
            .bind(text(|i| &i.job.source))
            .bind(text(|i| &i.job.mail_from))
            .bind(text(|i| &i.rcpt))
            .bind(optional(|i| i.job.header_from.as_deref()))
            .bind(optional(|i| i.job.subject.as_deref()))
            .bind(number(|i| {
                Some(i64::try_from(i.job.body.len()).unwrap_or(i64::MAX))
            }))
            .bind(ops.iter().map(|i| i.lease.is_some()).collect::<Vec<_>>())
            .bind(number(|i| i.lease.and_then(|(base, _)| base)))
            .bind(number(|i| i.lease.map(|(_, length)| length)))
            .bind(number(|i| Some(i.now)))
            .bind(ops.iter().map(|i| &i.job.body[..]).collect::<Vec<&[u8]>>())
            .bind(&*self.owner)
            .execute(&self.pool)
            .await?;
        Ok(vec![true; ops.len()])
    }

    async fn finish_all(&self, ops: &[&Finish]) -> sqlx::Result<Vec<bool>> {
        let recorded: Vec<String> = sqlx::query_scalar(FINISH_ALL)
            .bind(ops.iter().map(|f| f.id.as_str()).collect::<Vec<_>>())
            .bind(ops.iter().map(|f| f.state.as_str()).collect::<Vec<_>>())
            .bind(ops.iter().map(|f| f.reply.as_str()).collect::<Vec<_>>())
            .bind(ops.iter().map(|f| f.now).collect::<Vec<_>>())
            .bind(ops.iter().map(|f| f.via).collect::<Vec<_>>())
            .bind(ops.iter().map(|f| f.attempt).collect::<Vec<_>>())
            .bind(&*self.owner)
            .fetch_all(&self.pool)
            .await?;
        let recorded: HashSet<String> = recorded.into_iter().collect();
        Ok(ops.iter().map(|f| recorded.contains(&f.id)).collect())
    }
}

/// A deadlock or serialization failure: the transaction was rolled back
/// and may be run again as it was.
fn deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}
