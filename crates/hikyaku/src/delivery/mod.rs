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
//! off before its lease runs out.
//!
//! **Hand-over.** A message the intake accepts while a worker is free comes
//! straight from memory ([`handoff`]); the queue is read for everything
//! else: retries, jobs from `hikyaku send`, and the overflow.
//!
//! Logs carry job id, account, attempt and upstream code; never tokens or
//! message content.

pub mod backoff;
pub mod dsn;
pub mod handoff;
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
use crate::provider::Provider;
use crate::queue::lease;
use crate::queue::{Job, JobStore as _};
use crate::store::Store;
use crate::store::accounts::Account;
use crate::tls::ExtraCas;
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
    reply: String,
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
    extra_cas: ExtraCas,
    wake: Notify,
    rate: rate::RateLimiter,
    hello: ClientId,
    in_flight: Mutex<HashSet<String>>,
    /// Jobs the upstream accepted (`250`) whose "sent" is not committed yet,
    /// by job id. Shutdown records them as sent, not deferred.
    accepted: Mutex<HashMap<String, Accepted>>,
    pool: pool::Pool,
    handoff: Handoff,
    /// Taken by the loop when it starts.
    fresh: Mutex<Option<mpsc::Receiver<Fresh>>>,
}

/// The texts of the replies hikyaku writes itself into a job's last reply,
/// with `{holes}` (see [`crate::template`]); the Remote UI recognises them to
/// translate them. Replies of the upstream server are stored as they came.
pub mod texts {
    pub const WAITING: &str =
        "waiting for re-authorization of the {provider} account ({name}): {detail}";
    pub const SWITCHED_OFF: &str = "the account is switched off (Basic Settings)";
    pub const NOT_REGISTERED: &str = "Token Status is Not registered — do the authorization";
    pub const AUTHORIZING: &str = "an authorization is in progress";
    pub const TOKEN_ERROR: &str = "Token Status is Error: {reason}";
    pub const TOKEN_ERROR_BARE: &str = "Token Status is Error";
    pub const ABANDONED: &str =
        "the delivery took longer than {secs} s and was abandoned; it is retried";
    pub const RATE_LIMITED: &str =
        "rate limit of the account reached ({count} messages per minute); waiting {secs} s";
    pub const BUSY: &str = "all {count} upstream connections of the account are busy; waiting";
    pub const ALL_REFUSED: &str = "all recipients refused: {reply}";
    pub const CONNECT_FAILED: &str = "{detail} (at connect) — check SMTP Server and Port in E-mail Settings, and that this machine can reach that server (firewall, outbound proxy)";
}

impl Delivery {
    pub fn new(
        store: Store,
        tokens: TokenService,
        clock: SharedClock,
        config: DeliveryConfig,
        extra_cas: ExtraCas,
    ) -> Self {
        let rate = rate::RateLimiter::new(config.rate_per_minute);
        let pool = pool::Pool::new(
            usize::try_from(config.connections_per_account).unwrap_or(1),
            Duration::from_secs(config.connection_idle_secs),
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
                extra_cas,
                wake: Notify::new(),
                rate,
                hello: ClientId::default(),
                in_flight: Mutex::new(HashSet::new()),
                accepted: Mutex::new(HashMap::new()),
                pool,
                handoff,
                fresh: Mutex::new(Some(fresh)),
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
        let attempt = match tokio::time::timeout(limit, self.attempt(&job, body)).await {
            Ok(a) => a,
            Err(_) => Attempt::Temporary {
                reply: crate::template::fill(
                    texts::ABANDONED,
                    &[("secs", &limit.as_secs().to_string())],
                ),
                code: None,
            },
        };
        drop(permit);
        self.record(&job, attempt).await
    }
}
