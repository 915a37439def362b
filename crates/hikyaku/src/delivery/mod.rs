//! delivery: takes due jobs from the queue and sends them upstream (design.md,
//! "The flow of a message", step 3), in three phases: the [`worker`] loop
//! claims jobs and stops cleanly, an [`attempt`] tries one job, and
//! [`record`] writes its outcome back into the queue.
//!
//! For each job: choose the account (the job's own, else the default
//! account, else the only enabled account with an active token); wait —
//! without counting an attempt — while that account cannot send (switched
//! off, token status Error / Not registered / Authorizing); take a slot of the
//! account's rate limit; get an access token from [`TokenService`]; rewrite
//! From to the mailbox ([`rewrite_from`]); then connect, secure, AUTH
//! XOAUTH2, MAIL/RCPT/DATA ([`smtp`]). A refused token is refreshed once and
//! tried again within the same attempt.
//!
//! The result is recorded at once ([`Outcome`]): sent; deferred with
//! exponential backoff ([`backoff`]) for temporary failures, until
//! `max_age_hours` after acceptance, when the job fails with its last reply;
//! failed for permanent ones, with a failure notice ([`dsn`]) queued
//! through [`crate::queue::notices`].
//!
//! **At-least-once.** The job is marked sent right after the upstream's
//! `250` (retried a few times if the store is busy). Between that `250` and
//! the commit — a crash, a full disk, the end-of-DATA reply lost on the
//! network — the job is retried and the upstream may receive it twice. That
//! window is unavoidable without the upstream's cooperation; losing a
//! message is worse than a rare duplicate.
//!
//! **Leases** ([`crate::queue::lease`]). A claimed job carries a lease (10 min); a worker that dies
//! leaves it to expire, and the loop puts such jobs back
//! (`requeue_expired_leases`) at start and while idle. Each delivery is cut
//! off before its lease runs out. On PostgreSQL the lease is shorter
//! (`store.lease_secs`, on the database's clock) and renewed while the
//! delivery runs; a delivery whose lease another instance took over stops.
//!
//! **Limits** ([`limits`]): an account's messages per minute and connection
//! cap, counted in this process on SQLite and for the whole cluster on
//! PostgreSQL.
//!
//! **Hand-over.** A message the intake accepts while a worker is free comes
//! straight from memory ([`handoff`]); the queue is read for everything
//! else: retries, jobs from `hikyaku send`, and the overflow.
//!
//! Logs carry job id, account, attempt and upstream code; never tokens or
//! message content.

pub mod backoff;
pub mod dsn;
pub mod graph_upload;
pub mod handoff;
pub mod http_api;
pub mod limits;
pub mod outcome;
pub mod pool;
pub mod rate;
pub mod rewrite;
pub mod smtp;

mod attempt;
mod record;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::DeliveryConfig;
use crate::i18n::Reason;
use crate::provider::Provider;
use crate::queue::lease;
use crate::queue::{Job, JobStore as _};
use crate::store::Store;
use crate::store::accounts::Account;
use crate::tokens::{AccessToken, TokenService, TokenStatus, TokensError};

pub use handoff::Handoff;
pub use outcome::Outcome;
pub use rewrite::rewrite_from;

use handoff::Fresh;

use outcome::{Class, Refusal, ReplyCode, classify, with_advice};
use smtp::{SendError, SmtpError};

use attempt::Attempt;

/// How long a delivery waits for one of its account's upstream connections.
const CONNECTION_WAIT: Duration = Duration::from_secs(60);

/// The upstream's acceptance of a job, as it is to be recorded.
#[derive(Debug, Clone)]
struct Accepted {
    /// The account it went out through.
    account: i64,
    /// The reply recorded as the job's last reply.
    reply: Reason,
}

/// The delivery service. Cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tokens: TokenService,
    clock: SharedClock,
    config: DeliveryConfig,
    wake: Notify,
    /// Messages per minute and (on PostgreSQL) connection slots, counted in
    /// this process or for the whole cluster.
    limits: limits::Limits,
    hello: ClientId,
    in_flight: Mutex<HashSet<String>>,
    /// Jobs the upstream accepted (`250`) whose "sent" is not committed yet,
    /// by job id. Shutdown records them as sent, not deferred.
    accepted: Mutex<HashMap<String, Accepted>>,
    pool: pool::Pool,
    handoff: Handoff,
    /// Taken by the loop when it starts.
    fresh: Mutex<Option<mpsc::Receiver<Fresh>>>,
    /// The HTTP transports' clients and waits.
    http: http_api::HttpState,
}

/// The replies hikyaku writes itself into a job's last reply, as reasons
/// (Fluent `reason-job-…`). The upstream server's reply is an argument,
/// kept as it came ([`upstream`](replies::upstream)).
pub mod replies {
    use crate::i18n::Reason;

    /// A reply the upstream server sent, as it came.
    pub fn upstream(reply: impl std::fmt::Display) -> Reason {
        Reason::new("upstream").arg("reply", reply)
    }

    /// `first — then`: a reply followed by what it led to, or advice.
    pub fn then(first: Reason, then: Reason) -> Reason {
        Reason::new("job-then")
            .nested("first", first)
            .nested("then", then)
    }

    pub fn waiting(provider: &str, name: &str, detail: Reason) -> Reason {
        Reason::new("job-waiting")
            .arg("provider", provider)
            .arg("name", name)
            .nested("detail", detail)
    }

    pub fn switched_off() -> Reason {
        Reason::new("job-wait-switched-off")
    }

    pub fn not_registered() -> Reason {
        Reason::new("job-wait-not-registered")
    }

    pub fn authorizing() -> Reason {
        Reason::new("job-wait-authorizing")
    }

    /// Token Status is Error, with the account's token reason when it has one.
    pub fn token_error(reason: Option<&Reason>) -> Reason {
        match reason {
            Some(r) => Reason::new("job-wait-token-error").nested("reason", r.clone()),
            None => Reason::new("job-wait-token-error-bare"),
        }
    }

    pub fn no_account() -> Reason {
        Reason::new("job-no-account")
    }

    pub fn no_default() -> Reason {
        Reason::new("job-no-default")
    }

    pub fn abandoned(secs: u64) -> Reason {
        Reason::new("job-abandoned").arg("secs", secs)
    }

    pub fn rate_limited(count: impl std::fmt::Display, secs: i64) -> Reason {
        Reason::new("job-rate-limited")
            .arg("count", count)
            .arg("secs", secs)
    }

    pub fn busy(count: impl std::fmt::Display) -> Reason {
        Reason::new("job-busy").arg("count", count)
    }

    /// `reply`: each refused recipient with the upstream's reply to it.
    pub fn all_refused(reply: &str) -> Reason {
        Reason::new("job-all-refused").arg("reply", reply)
    }

    pub fn connect_failed(detail: &str) -> Reason {
        Reason::new("job-connect-failed").arg("detail", detail)
    }

    pub fn transport(detail: &str, stage: &str) -> Reason {
        Reason::new("job-transport")
            .arg("detail", detail)
            .arg("stage", stage)
    }

    pub fn store(error: impl std::fmt::Display) -> Reason {
        Reason::new("job-store").arg("error", error)
    }

    pub fn token_unavailable(error: impl std::fmt::Display) -> Reason {
        Reason::new("job-token-unavailable").arg("error", error)
    }

    pub fn body_missing() -> Reason {
        Reason::new("job-body-missing")
    }

    pub fn tls_setup(error: impl std::fmt::Display) -> Reason {
        Reason::new("job-tls-setup").arg("error", error)
    }

    pub fn fresh_token_refused(reply: &str) -> Reason {
        Reason::new("job-fresh-token-refused").arg("reply", reply)
    }

    /// The upstream's `250` with the recipients it refused (`list`).
    pub fn refused_recipients(reply: &str, list: &str) -> Reason {
        Reason::new("job-refused-recipients")
            .arg("reply", reply)
            .arg("list", list)
    }

    pub fn gave_up(last: Reason, hours: u64) -> Reason {
        Reason::new("job-gave-up")
            .nested("last", last)
            .arg("hours", hours)
    }
}

impl Delivery {
    pub fn new(
        store: Store,
        tokens: TokenService,
        clock: SharedClock,
        config: DeliveryConfig,
    ) -> Self {
        let limits = match store.postgres() {
            Some(pg) => limits::Limits::Cluster(pg.clone()),
            None => limits::Limits::Local(rate::RateLimiter::new(config.rate_per_minute)),
        };
        // On a cluster an idle session holds one of the account's slots that
        // another instance may be waiting for: it is kept only briefly.
        let idle = Duration::from_secs(config.connection_idle_secs);
        let idle = match &limits {
            limits::Limits::Cluster(_) => idle.min(limits::CLUSTER_IDLE),
            limits::Limits::Local(_) => idle,
        };
        let pool = pool::Pool::new(
            usize::try_from(config.connections_per_account).unwrap_or(1),
            idle,
        );
        let (handoff, fresh) = Handoff::channel(
            usize::try_from(config.workers.max(1))
                .unwrap_or(1)
                .saturating_mul(handoff::PLACES_PER_WORKER),
        );
        Delivery {
            inner: Arc::new(Inner {
                store,
                tokens,
                clock,
                config,
                wake: Notify::new(),
                limits,
                hello: ClientId::default(),
                in_flight: Mutex::new(HashSet::new()),
                accepted: Mutex::new(HashMap::new()),
                pool,
                handoff,
                fresh: Mutex::new(Some(fresh)),
                http: http_api::HttpState::default(),
            }),
        }
    }

    /// Something was queued (or made due): look now instead of at the next timer.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Where the intake hands over jobs it stored claimed.
    pub fn handoff(&self) -> Handoff {
        self.inner.handoff.clone()
    }

    /// Delivers one claimed job (state `sending`) and records the outcome.
    pub async fn deliver_one(&self, job: Job) -> Outcome {
        self.deliver(job, None, None).await
    }

    /// Delivers a claimed job whose body may already have been read.
    /// The worker's `permit` is given back once the upstream has answered:
    /// waiting for the record's commit is not upstream work.
    async fn deliver(
        &self,
        job: Job,
        body: Option<Bytes>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Outcome {
        let limit = lease::delivery_limit();
        let timed = async {
            match tokio::time::timeout(limit, self.attempt(&job, body)).await {
                Ok(a) => a,
                Err(_) => Attempt::Temporary {
                    reply: replies::abandoned(limit.as_secs()),
                    code: None,
                },
            }
        };
        let shared = self
            .inner
            .store
            .postgres()
            .filter(|pg| pg.database_clock())
            .cloned();
        let attempt = match shared {
            None => timed.await,
            // Shared queue: the lease is renewed while the delivery runs; once
            // it is another instance's (taken over while this one could not
            // renew it, or while a handed-over job waited), stop: the other
            // instance delivers it, and nothing is recorded here.
            Some(pg) => {
                if matches!(pg.confirm_lease(&job.id).await, Ok(false)) {
                    lease_lost(&job.id)
                } else {
                    tokio::select! {
                        a = timed => a,
                        () = heartbeats(&pg, &job.id) => lease_lost(&job.id),
                    }
                }
            }
        };
        drop(permit);
        self.record(&job, attempt).await
    }
}

/// The attempt of a delivery whose lease another instance holds now; its
/// record is fenced off (the store writes nothing for it).
fn lease_lost(id: &str) -> Attempt {
    tracing::warn!(
        job_id = id,
        "delivery: the job's lease is no longer this instance's; stopped"
    );
    Attempt::Temporary {
        reply: lease::expired(),
        code: None,
    }
}

/// Renews a delivery's lease every third of its length; returns once the
/// lease is lost. A database away meanwhile only skips renewals: the lease
/// may still be ours when it returns.
async fn heartbeats(pg: &crate::store::postgres::PgStore, id: &str) {
    let every = pg.lease() / 3;
    loop {
        tokio::time::sleep(every).await;
        match pg.heartbeat(id).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(job_id = id, error = %e, "delivery: cannot renew the lease yet")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::replies;
    use crate::i18n::{Locale, Reason, Tr};

    fn ja(r: &Reason) -> String {
        r.render(&Tr::new(Locale::Ja))
    }

    #[test]
    fn a_job_reply_renders_in_each_language_from_its_code() {
        // A token reason quoted in a waiting reply is nested, not English.
        let r = replies::waiting(
            "Microsoft",
            "microsoft",
            replies::token_error(Some(&crate::tokens::status::declined())),
        );
        let stored = Reason::from_stored(&r.to_json());
        assert_eq!(stored, r);
        assert_eq!(
            r.to_string(),
            format!(
                "waiting for re-authorization of the Microsoft account (microsoft): Token Status is Error: {}",
                crate::tokens::status::declined()
            )
        );
        let text = ja(&r);
        assert!(
            text.starts_with("Microsoftのアカウント(microsoft)の再認可を待っています")
                && text.contains("ユーザーが拒否しました")
                && !text.contains("waiting"),
            "{text}"
        );

        // The upstream's reply is an argument, shown as it came.
        let r = replies::all_refused("<x>: 550 5.1.1 no such user");
        assert_eq!(
            r.to_string(),
            "all recipients refused: <x>: 550 5.1.1 no such user"
        );
        assert_eq!(
            ja(&r),
            "すべての宛先が拒否されました:<x>: 550 5.1.1 no such user"
        );
        let r = replies::upstream("451 4.3.0 try later");
        assert_eq!(
            (r.to_string(), ja(&r)),
            ("451 4.3.0 try later".into(), "451 4.3.0 try later".into())
        );

        // Today's English, word for word.
        let cases = [
            (
                replies::waiting("Google", "google", replies::switched_off()),
                "waiting for re-authorization of the Google account (google): the account is switched off (Basic Settings)",
            ),
            (
                replies::rate_limited(30, 2),
                "rate limit of the account reached (30 messages per minute); waiting 2 s",
            ),
            (
                replies::busy(2),
                "all 2 upstream connections of the account are busy; waiting",
            ),
            (
                replies::abandoned(540),
                "the delivery took longer than 540 s and was abandoned; it is retried",
            ),
            (
                replies::connect_failed("smtp.example:587: refused"),
                "smtp.example:587: refused (at connect) — check SMTP Server and Port in E-mail Settings, and that this machine can reach that server (firewall, outbound proxy)",
            ),
            (
                replies::gave_up(replies::upstream("451 later"), 120),
                "451 later (gave up: not delivered within 120 hours)",
            ),
            (
                replies::refused_recipients("250 OK", "<b@x>: 550 no"),
                "250 OK (refused recipients: <b@x>: 550 no)",
            ),
            (
                replies::then(
                    replies::upstream("535 5.7.3 no"),
                    replies::token_unavailable("boom"),
                ),
                "535 5.7.3 no — access token unavailable: boom",
            ),
        ];
        for (r, en) in cases {
            assert_eq!(r.to_string(), en);
            assert_ne!(ja(&r), en, "{en}");
        }
    }
}
