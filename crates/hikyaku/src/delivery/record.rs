//! Recording an attempt's outcome: the job's new state in the queue, and a
//! failure notice queued where one is due.

use super::attempt::Via;
use super::*;

/// How long an outcome's write is retried while the store is away.
const RECORD_RETRY: Duration = Duration::from_secs(30);

/// Writes an attempt's outcome, trying again for [`RECORD_RETRY`] while the
/// store is away (a database restart): a job left `sending` would otherwise
/// wait for its lease to run out before anyone tries it again.
async fn write_outcome<F, Fut>(mut write: F) -> crate::store::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::Result<()>>,
{
    let deadline = tokio::time::Instant::now() + RECORD_RETRY;
    loop {
        match write().await {
            Err(crate::store::StoreError::Db(_))
            | Err(crate::store::StoreError::Shared {
                temporary: true, ..
            }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            r => return r,
        }
    }
}

/// Every recipient of `job`, refused with `reply` (in English: the
/// failure notice's text).
fn all_refused(job: &Job, reply: &Reason) -> Vec<Refusal> {
    let reply = reply.to_string();
    job.rcpt_to
        .iter()
        .map(|r| Refusal {
            recipient: r.clone(),
            reply: reply.clone(),
        })
        .collect()
}

impl Delivery {
    /// Records an attempt in the store (and queues a failure notice).
    pub(super) async fn record(&self, job: &Job, attempt: Attempt) -> Outcome {
        let inner = &self.inner;
        let now = inner.clock.unix();
        let store = &inner.store;
        let max_age = i64::try_from(inner.config.max_age_hours)
            .unwrap_or(i64::MAX / 7200)
            .saturating_mul(3600);
        let expired = now.saturating_sub(job.created_at) >= max_age;
        let log_err = |what: &str, r: crate::store::Result<()>| {
            if let Err(e) = r {
                tracing::error!(job_id = %job.id, error = %e, "cannot record {what}; the lease will expire and the job be retried");
            }
        };
        match attempt {
            Attempt::Sent {
                reply,
                refused,
                via,
                lease,
                original,
            } => {
                let recorded = if refused.is_empty() {
                    replies::upstream(&reply)
                } else {
                    replies::refused_recipients(&reply, &Refusal::describe(&refused))
                };
                // The session is ready for the next message now.
                if let Some(l) = lease {
                    inner.pool.put(*l);
                }
                // The upstream has the message: until "sent" is committed,
                // keep trying (the job stays in flight, so no requeue sends
                // it again); a shutdown meanwhile records it (see `run`).
                if let Ok(mut m) = inner.accepted.lock() {
                    m.insert(
                        job.id.clone(),
                        Accepted {
                            account: via.id,
                            reply: recorded.clone(),
                        },
                    );
                }
                let mut wait = Duration::from_millis(200);
                let mut result = store.mark_sent(&job.id, Some(via.id), &recorded, now).await;
                while let Err(e) = &result
                    && e.is_temporary()
                {
                    tracing::warn!(job_id = %job.id, error = %e, "cannot record the upstream's acceptance yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                    result = store
                        .mark_sent(&job.id, Some(via.id), &recorded, inner.clock.unix())
                        .await;
                }
                if let Ok(mut m) = inner.accepted.lock() {
                    m.remove(&job.id);
                }
                log_err("the upstream's acceptance", result);
                tracing::info!(job_id = %job.id, account = via.id, attempt = job.attempts, code = outcome::reply_code(&reply), refused = refused.len(), "sent");
                crate::metrics::delivery(Some(via.id), "sent");
                crate::metrics::upstream_reply(outcome::reply_code(&reply));
                crate::metrics::delivered_after(now - job.created_at);
                if !refused.is_empty() {
                    self.queue_notice(job, &refused, false, Some(via), original)
                        .await;
                }
                Outcome::Sent {
                    reply: recorded.to_string(),
                }
            }
            Attempt::Temporary { reply, code } if expired => {
                tracing::warn!(job_id = %job.id, account = job.account_id, attempt = job.attempts, code = code.map(ReplyCode::value), "failed: too old");
                crate::metrics::upstream_reply(code.map(ReplyCode::value));
                self.give_up(job, reply, now).await
            }
            Attempt::Temporary { reply, code } => {
                let next = now + backoff::next_delay_secs(job.attempts);
                log_err(
                    "the deferral",
                    write_outcome(|| store.defer_job(&job.id, &reply, next, now, true)).await,
                );
                tracing::info!(job_id = %job.id, account = job.account_id, attempt = job.attempts, code = code.map(ReplyCode::value), next_attempt_at = next, "deferred");
                crate::metrics::delivery(job.via_account_id.or(job.account_id), "deferred");
                crate::metrics::upstream_reply(code.map(ReplyCode::value));
                Outcome::Deferred {
                    reply: reply.to_string(),
                    next_attempt_at: next,
                }
            }
            Attempt::Permanent {
                reply,
                code,
                failed,
                account,
            } => {
                let reply = with_advice(reply);
                let via = account.as_ref().map(|v| v.id);
                log_err(
                    "the failure",
                    write_outcome(|| store.mark_failed(&job.id, via, &reply, now)).await,
                );
                tracing::warn!(job_id = %job.id, account = job.account_id, attempt = job.attempts, code = code.map(ReplyCode::value), "failed");
                crate::metrics::delivery(via.or(job.account_id), "failed");
                crate::metrics::upstream_reply(code.map(ReplyCode::value));
                let failed = if failed.is_empty() {
                    all_refused(job, &reply)
                } else {
                    failed
                };
                self.queue_notice(job, &failed, false, account, None).await;
                Outcome::Failed {
                    reply: reply.to_string(),
                }
            }
            Attempt::Waiting { reason } if expired => {
                tracing::warn!(job_id = %job.id, account = job.account_id, "failed: too old while waiting for authorization");
                self.give_up(job, reason, now).await
            }
            Attempt::Waiting { reason } => {
                let next = now + backoff::WAIT_RECHECK_SECS;
                log_err(
                    "the wait",
                    write_outcome(|| store.defer_job(&job.id, &reason, next, now, false)).await,
                );
                // Once per job and reason: the recheck comes every minute.
                if job.last_reply_reason.as_ref() == Some(&reason) {
                    tracing::debug!(job_id = %job.id, account = job.account_id, "still waiting for authorization");
                } else {
                    tracing::info!(job_id = %job.id, account = job.account_id, %reason, "waiting for authorization");
                }
                Outcome::WaitingForAuthorization {
                    reason: reason.to_string(),
                }
            }
            Attempt::RateLimited { wait_secs, reply } => {
                let next = now + wait_secs;
                log_err(
                    "the wait",
                    write_outcome(|| store.defer_job(&job.id, &reply, next, now, false)).await,
                );
                tracing::debug!(job_id = %job.id, account = job.account_id, "rate limited");
                Outcome::Deferred {
                    reply: reply.to_string(),
                    next_attempt_at: next,
                }
            }
        }
    }

    /// Fails a job that is too old to keep trying, with its last reply, and
    /// queues the failure notice.
    pub(super) async fn give_up(&self, job: &Job, last: Reason, now: i64) -> Outcome {
        let reply = replies::gave_up(last, self.inner.config.max_age_hours);
        crate::metrics::delivery(job.via_account_id.or(job.account_id), "failed");
        let store = &self.inner.store;
        if let Err(e) = write_outcome(|| store.mark_failed(&job.id, None, &reply, now)).await {
            tracing::error!(job_id = %job.id, error = %e, "cannot record the failure; the lease will expire and the job be retried");
        }
        let failed = all_refused(job, &reply);
        self.queue_notice(job, &failed, true, None, None).await;
        Outcome::Failed {
            reply: reply.to_string(),
        }
    }

    /// Queues a failure notice about `job`, where one is due.
    pub(super) async fn queue_notice(
        &self,
        job: &Job,
        failed: &[Refusal],
        expired: bool,
        account: Option<Via>,
        original: Option<Bytes>,
    ) {
        let inner = &self.inner;
        let Some(to) = dsn::notice_recipient(&inner.config.failure_notice_to, job) else {
            return;
        };
        // The notice goes out through the same account, From its mailbox.
        let (account_id, from) = match account {
            Some(via) => (Some(via.id), via.mailbox),
            None => match self.choose_account(job).await {
                Ok(a) => (
                    Some(a.id),
                    a.mailbox
                        .unwrap_or_else(|| format!("postmaster@{}", self.inner.hello)),
                ),
                Err(_) => (job.account_id, format!("postmaster@{}", self.inner.hello)),
            },
        };
        let original = match original {
            Some(o) => Some(o),
            None => inner.store.job_body(&job.id).await.ok().map(Bytes::from),
        };
        let boundary = format!("hikyaku-dsn-{}", uuid::Uuid::new_v4().simple());
        let mta = self.inner.hello.to_string();
        let notice = dsn::Notice {
            job,
            original: original.as_deref(),
            failed,
            expired,
            to: &to,
            from: &from,
            reporting_mta: mta.trim_matches(|c| c == '[' || c == ']'),
            now: inner.clock.now(),
            boundary: &boundary,
        };
        let new = dsn::job(&notice, account_id);
        match crate::queue::notices::enqueue(&inner.store, &new, inner.clock.unix()).await {
            Ok(()) => {
                tracing::info!(job_id = %job.id, notice_job_id = %new.id, "failure notice queued");
                self.wake();
            }
            Err(e) => {
                tracing::error!(job_id = %job.id, error = %e, "cannot queue the failure notice")
            }
        }
    }
}
