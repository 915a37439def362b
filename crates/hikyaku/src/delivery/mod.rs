//! delivery: takes due jobs from the queue and sends them upstream (design.md,
//! "The flow of a message", step 3).
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
//! failed for permanent ones, with a failure notice ([`dsn`]) queued.
//!
//! **At-least-once.** The job is marked sent right after the upstream's
//! `250` (retried a few times if the store is busy). Between that `250` and
//! the commit — a crash, a full disk, the end-of-DATA reply lost on the
//! network — the job is retried and the upstream may receive it twice. That
//! window is unavoidable without the upstream's cooperation; losing a
//! message is worse than a rare duplicate.
//!
//! **Leases.** A claimed job carries a lease (10 min); a worker that dies
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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::ExtraCas;
use crate::clock::SharedClock;
use crate::config::DeliveryConfig;
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

use outcome::{Class, classify, with_advice};
use smtp::{SendError, SmtpError};

/// Longest idle sleep of the loop (it also requeues expired leases then).
const IDLE_MAX: Duration = Duration::from_secs(60);
/// How often idle upstream sessions are checked for closing.
const POOL_SWEEP: Duration = Duration::from_secs(5);
/// How long a delivery waits for one of its account's upstream connections.
const CONNECTION_WAIT: Duration = Duration::from_secs(60);
/// How long shutdown waits for deliveries in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    /// Jobs the upstream accepted (`250`) whose "sent" is not committed yet:
    /// id → (account, reply). Shutdown records them as sent, not deferred.
    accepted: Mutex<HashMap<String, (i64, String)>>,
    pool: pool::Pool,
    handoff: Handoff,
    /// Taken by the loop when it starts.
    fresh: Mutex<Option<mpsc::Receiver<Fresh>>>,
}

/// What the idle loop woke up for.
enum Woke {
    Stop,
    Fresh(Option<Box<Fresh>>),
    Look,
    Timer,
}

/// The next handed-over job; never, once the channel is gone.
async fn next_fresh(rx: &mut Option<mpsc::Receiver<Fresh>>) -> Option<Fresh> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One attempt, before it is recorded.
enum Attempt {
    Sent {
        reply: String,
        refused: Vec<(String, String)>,
        account: i64,
        mailbox: String,
        lease: Option<Box<pool::Lease>>,
        /// The message as stored, kept for a notice about refused
        /// recipients (sending drops the stored body); `None` without any.
        original: Option<Bytes>,
    },
    Temporary {
        reply: String,
        code: Option<u16>,
    },
    Permanent {
        reply: String,
        code: Option<u16>,
        failed: Vec<(String, String)>,
        account: Option<(i64, String)>,
    },
    Waiting {
        reason: String,
    },
    RateLimited {
        wait_secs: i64,
        reply: String,
    },
}

fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::Microsoft => "Microsoft",
        Provider::Google => "Google",
    }
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

fn waiting_reason(a: &Account, detail: &str) -> String {
    crate::template::fill(
        texts::WAITING,
        &[
            ("provider", provider_name(a.provider)),
            ("name", &a.name),
            ("detail", detail),
        ],
    )
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

    /// Starts delivering one job on a worker.
    fn start(
        &self,
        tasks: &mut JoinSet<()>,
        job: Job,
        body: Option<Bytes>,
        permit: OwnedSemaphorePermit,
    ) {
        let this = self.clone();
        if let Ok(mut set) = self.inner.in_flight.lock() {
            set.insert(job.id.clone());
        }
        tasks.spawn(async move {
            let id = job.id.clone();
            this.deliver(job, body, Some(permit)).await;
            if let Ok(mut set) = this.inner.in_flight.lock() {
                set.remove(&id);
            }
        });
    }

    /// Starts a handed-over job, unless it waited so long that its lease is
    /// near its end: the queue gives such a job back instead.
    fn start_fresh(&self, tasks: &mut JoinSet<()>, fresh: Fresh, permit: OwnedSemaphorePermit) {
        if fresh.handed_at.elapsed() > Fresh::MAX_WAIT {
            tracing::warn!(job_id = %fresh.job.id, "handed-over job waited too long; left to its lease");
            return;
        }
        self.start(tasks, fresh.job, Some(fresh.body), permit);
    }

    /// Runs the worker pool until `shutdown`: at most `delivery.workers`
    /// deliveries at once. On shutdown, deliveries in flight get a short grace
    /// period; those still running then are interrupted and deferred.
    pub fn spawn(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run(shutdown).await })
    }

    async fn run(&self, shutdown: CancellationToken) {
        let inner = &self.inner;
        let workers = usize::try_from(inner.config.workers.max(1)).unwrap_or(1);
        let slots = Arc::new(Semaphore::new(workers));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut fresh = inner.fresh.lock().ok().and_then(|mut rx| rx.take());
        self.requeue_expired().await;
        let sweeper = {
            let this = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(POOL_SWEEP) => this.inner.pool.sweep(),
                    }
                }
            })
        };
        tracing::info!(workers, "delivery started");
        // Whether the queue may hold due jobs: at start, after a wake, when a
        // timer ran out, or after a claim that filled every free worker.
        let mut look = true;
        let mut since_claim = 0;
        let mut next_look = tokio::time::Instant::now() + IDLE_MAX;
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            if tokio::time::Instant::now() >= next_look {
                self.requeue_expired().await;
                look = true;
                next_look = tokio::time::Instant::now() + IDLE_MAX;
            }
            // Handed-over jobs first (they cost no read), but the queue gets
            // its turn after every `workers` of them while it may hold due jobs.
            let queue_turn = look && since_claim >= workers;
            if !queue_turn {
                let ready = fresh.as_mut().and_then(|rx| rx.try_recv().ok());
                if let Some(f) = ready {
                    since_claim += 1;
                    self.start_fresh(&mut tasks, f, permit);
                    continue;
                }
            }
            if !look {
                let woke = tokio::select! {
                    _ = shutdown.cancelled() => Woke::Stop,
                    f = next_fresh(&mut fresh) => Woke::Fresh(f.map(Box::new)),
                    _ = inner.wake.notified() => Woke::Look,
                    _ = tokio::time::sleep_until(next_look) => Woke::Timer,
                };
                match woke {
                    Woke::Stop => break,
                    Woke::Fresh(Some(f)) => self.start_fresh(&mut tasks, *f, permit),
                    Woke::Fresh(None) => fresh = None,
                    Woke::Look => look = true,
                    // Handled at the top of the loop.
                    Woke::Timer => {}
                }
                continue;
            }
            since_claim = 0;
            let now = inner.clock.unix();
            // As many jobs as there are free workers, in one claim.
            let mut permits = vec![permit];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            let want = u32::try_from(permits.len()).unwrap_or(1);
            match inner
                .store
                .claim_due_jobs_with_bodies(now, lease::until(now), want)
                .await
            {
                Ok(jobs) => {
                    look = jobs.len() == permits.len();
                    // A job whose body is missing reads it again itself (and fails).
                    for ((job, body), permit) in jobs.into_iter().zip(permits.drain(..)) {
                        self.start(&mut tasks, job, body, permit);
                    }
                    // Unused permits go back with `permits`.
                    if !look {
                        let wait = match inner.store.next_due_at().await {
                            Ok(Some(t)) => {
                                Duration::from_secs(u64::try_from(t - now).unwrap_or(0).max(1))
                            }
                            _ => IDLE_MAX,
                        }
                        .min(IDLE_MAX);
                        next_look = tokio::time::Instant::now() + wait;
                    }
                }
                Err(e) => {
                    drop(permits);
                    tracing::warn!(error = %e, "delivery: cannot claim a job; retrying");
                    look = true;
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        }
        // Handed-over jobs no worker took are deferred like interrupted
        // deliveries (due at once; the next start sends them).
        let mut left: Vec<String> = Vec::new();
        if let Some(rx) = fresh.as_mut() {
            rx.close();
            while let Ok(f) = rx.try_recv() {
                left.push(f.job.id);
            }
        }
        // Shutdown: let deliveries in flight finish briefly, then stop them.
        let grace = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if grace.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            left.extend(
                inner
                    .in_flight
                    .lock()
                    .map(|s| s.iter().cloned().collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
        }
        let now = inner.clock.unix();
        let accepted = inner.accepted.lock().map(|m| m.clone()).unwrap_or_default();
        for id in left {
            // Its `250` came before the shutdown: sent, whatever else remained.
            if let Some((account, reply)) = accepted.get(&id) {
                if let Err(e) = inner.store.mark_sent(&id, Some(*account), reply, now).await {
                    tracing::error!(job_id = %id, error = %e, "cannot record the upstream's acceptance at shutdown; the message may be sent again after the restart");
                }
                continue;
            }
            tracing::warn!(job_id = %id, "delivery interrupted by shutdown; deferred");
            let _ = inner
                .store
                .defer_job(&id, lease::SHUTDOWN, now, now, false)
                .await;
        }
        let _ = sweeper.await;
        inner.pool.close_idle();
        tracing::info!("delivery stopped");
    }

    async fn requeue_expired(&self) {
        let now = self.inner.clock.unix();
        let busy: Vec<String> = self
            .inner
            .in_flight
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        match self.inner.store.requeue_expired_leases(now, &busy).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "requeued jobs whose delivery lease expired"),
            Err(e) => tracing::warn!(error = %e, "cannot requeue expired leases"),
        }
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

    /// The account a job goes out through, or why it must wait.
    async fn choose_account(&self, job: &Job) -> Result<Account, Attempt> {
        let store = &self.inner.store;
        let temporary = |e: crate::store::StoreError| Attempt::Temporary {
            reply: format!("store: {e}"),
            code: None,
        };
        if let Some(id) = job.account_id {
            match store.account(id).await {
                Ok(a) => return Ok(a),
                Err(crate::store::StoreError::NotFound) => {}
                Err(e) => return Err(temporary(e)),
            }
        }
        let accounts = store.accounts().await.map_err(temporary)?;
        if let Some(a) = accounts.iter().find(|a| a.is_default) {
            return Ok(a.clone());
        }
        let active: Vec<&Account> = accounts
            .iter()
            .filter(|a| a.enabled && TokenStatus::parse(&a.token_status) == TokenStatus::Active)
            .collect();
        match active.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Attempt::Waiting {
                reason: "waiting for re-authorization: no Microsoft or Google account can send (none is enabled with Token Status Active)".to_owned(),
            }),
            _ => Err(Attempt::Waiting {
                reason: "several accounts are active and none is the default: choose the default account in E-mail Settings".to_owned(),
            }),
        }
    }

    /// Maps a token failure: waits for an administrator, or retries later.
    async fn token_failure(&self, a: &Account, e: &TokensError, context: &str) -> Attempt {
        if e.is_temporary() {
            return Attempt::Temporary {
                reply: format!("{context}access token unavailable: {e}"),
                code: None,
            };
        }
        match e {
            TokensError::ReauthorizationRequired(_)
            | TokensError::NotAuthorized
            | TokensError::NotConfigured(_) => Attempt::Waiting {
                reason: waiting_reason(a, &format!("{context}{e}")),
            },
            _ => {
                let now_active = self
                    .inner
                    .store
                    .account(a.id)
                    .await
                    .map(|x| TokenStatus::parse(&x.token_status) == TokenStatus::Active)
                    .unwrap_or(true);
                if now_active {
                    Attempt::Temporary {
                        reply: format!("{context}access token unavailable: {e}"),
                        code: None,
                    }
                } else {
                    Attempt::Waiting {
                        reason: waiting_reason(a, &format!("{context}{e}")),
                    }
                }
            }
        }
    }

    fn target(&self, a: &Account) -> Result<smtp::Target, String> {
        let config = &self.inner.config;
        let (default_host, default_port) = a.provider.default_smtp();
        let host = if a.smtp_host.trim().is_empty() {
            default_host.to_owned()
        } else {
            a.smtp_host.trim().to_owned()
        };
        let port = if a.smtp_port == 0 {
            default_port
        } else {
            a.smtp_port
        };
        let policy = crate::tls::TlsPolicy {
            verify: a.verify_cert,
            verify_cn: a.verify_cert && a.verify_cn,
            extra_cas: self
                .inner
                .extra_cas
                .read()
                .map(|g| g.clone())
                .unwrap_or_default(),
        };
        let (tls_id, tls) = crate::tls::client_config_with_id(&policy)
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        Ok(smtp::Target {
            host,
            port,
            security: smtp::Security::parse(&a.smtp_security),
            tls,
            tls_id,
            connect_timeout: Duration::from_secs(config.connect_timeout_secs.max(1)),
            command_timeout: Duration::from_secs(config.command_timeout_secs.max(1)),
            hello: self.inner.hello.clone(),
        })
    }

    async fn attempt(&self, job: &Job, body: Option<Bytes>) -> Attempt {
        let inner = &self.inner;
        let a = match self.choose_account(job).await {
            Ok(a) => a,
            Err(wait) => return wait,
        };
        if !a.enabled {
            return Attempt::Waiting {
                reason: waiting_reason(&a, texts::SWITCHED_OFF),
            };
        }
        let status = TokenStatus::parse(&a.token_status);
        if status != TokenStatus::Active {
            let detail = match (status, a.token_reason.as_deref()) {
                (TokenStatus::NotRegistered, _) => texts::NOT_REGISTERED.to_owned(),
                (TokenStatus::Authorizing, _) => texts::AUTHORIZING.to_owned(),
                (_, Some(r)) => crate::template::fill(texts::TOKEN_ERROR, &[("reason", r)]),
                (_, None) => texts::TOKEN_ERROR_BARE.to_owned(),
            };
            return Attempt::Waiting {
                reason: waiting_reason(&a, &detail),
            };
        }
        if let Err(wait) = inner.rate.try_acquire(a.id, inner.clock.monotonic()) {
            let secs = i64::try_from(wait.as_secs()).unwrap_or(60).max(1);
            return Attempt::RateLimited {
                wait_secs: secs,
                reply: crate::template::fill(
                    texts::RATE_LIMITED,
                    &[
                        ("count", &inner.config.rate_per_minute.to_string()),
                        ("secs", &secs.to_string()),
                    ],
                ),
            };
        }
        let mut token: AccessToken = match inner.tokens.access_token(a.id).await {
            Ok(t) => t,
            Err(e) => return self.token_failure(&a, &e, "").await,
        };
        let read = match body {
            Some(b) => Ok(b),
            None => inner.store.job_body(&job.id).await.map(Bytes::from),
        };
        let body = match read {
            Ok(b) => b,
            Err(crate::store::StoreError::NotFound) => {
                return Attempt::Permanent {
                    reply: "the message body is missing from the store".to_owned(),
                    code: None,
                    failed: Vec::new(),
                    account: Some((a.id, token.mailbox.clone())),
                };
            }
            Err(e) => {
                return Attempt::Temporary {
                    reply: format!("store: {e}"),
                    code: None,
                };
            }
        };
        let target = match self.target(&a) {
            Ok(t) => t,
            Err(reason) => {
                return Attempt::Temporary {
                    reply: reason,
                    code: None,
                };
            }
        };
        let mut refreshed = false;
        let mut fresh_only = false;
        loop {
            let envelope_from = a
                .sender
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or(&token.mailbox)
                .to_owned();
            // From follows the envelope: the Sender address when one is set
            // (the mailbox has Send As rights for it), else the mailbox.
            let data = smtp::prepare_data(&rewrite_from(
                &body,
                &envelope_from,
                inner.config.rewrite_from,
            ));
            let key = inner.pool.key(a.id, &target, &token.mailbox, &token.token);
            let got = if fresh_only {
                inner.pool.get_slot(&key, CONNECTION_WAIT).await
            } else {
                inner.pool.get(&key, CONNECTION_WAIT).await
            };
            let mut lease = match got {
                Some(pool::Got::Idle(lease)) => *lease,
                Some(pool::Got::Slot(permit)) => {
                    let mut session = match smtp::connect(&target).await {
                        Ok(s) => s,
                        Err(e) => return smtp_failure(&e),
                    };
                    if let Err(e) = session.auth_xoauth2(&token.mailbox, &token.token).await {
                        session.quit().await;
                        drop(permit);
                        match self.auth_refused(&a, job, &e, &mut refreshed).await {
                            Ok(t) => {
                                token = t;
                                continue;
                            }
                            Err(attempt) => return attempt,
                        }
                    }
                    inner.pool.lease(key, session, permit)
                }
                None => {
                    return Attempt::RateLimited {
                        wait_secs: 5,
                        reply: crate::template::fill(
                            texts::BUSY,
                            &[("count", &inner.config.connections_per_account.to_string())],
                        ),
                    };
                }
            };
            return match lease
                .session
                .send(&envelope_from, &job.rcpt_to, &data)
                .await
            {
                Ok(report) => Attempt::Sent {
                    original: (!report.refused.is_empty()).then(|| body.clone()),
                    reply: report.reply,
                    refused: report.refused,
                    account: a.id,
                    mailbox: token.mailbox.clone(),
                    lease: Some(Box::new(lease)),
                },
                Err(SendError::Smtp(e)) if lease.reused && closed_while_idle(&e) => {
                    // The server closed the idle session; nothing was sent.
                    tracing::debug!(job_id = %job.id, account = a.id, "reused upstream session was closed; opening a new one");
                    lease.close().await;
                    fresh_only = true;
                    continue;
                }
                Err(SendError::AllRefused(refused)) => {
                    // The session stays usable (RSET was sent).
                    inner.pool.put(lease);
                    let reply = refused
                        .iter()
                        .map(|(r, why)| format!("<{r}>: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    Attempt::Permanent {
                        reply: crate::template::fill(texts::ALL_REFUSED, &[("reply", &reply)]),
                        code: refused.first().and_then(|(_, w)| outcome::reply_code(w)),
                        failed: refused,
                        account: Some((a.id, token.mailbox.clone())),
                    }
                }
                Err(SendError::Smtp(e)) => {
                    lease.close().await;
                    match smtp_failure(&e) {
                        Attempt::Permanent { reply, code, .. } => Attempt::Permanent {
                            failed: job
                                .rcpt_to
                                .iter()
                                .map(|r| (r.clone(), reply.clone()))
                                .collect(),
                            reply,
                            code,
                            account: Some((a.id, token.mailbox.clone())),
                        },
                        other => other,
                    }
                }
            };
        }
    }

    /// AUTH was refused: a token the provider rejects is refreshed once
    /// (the new token returned, to try again); anything else ends the attempt.
    async fn auth_refused(
        &self,
        a: &Account,
        job: &Job,
        e: &SmtpError,
        refreshed: &mut bool,
    ) -> Result<AccessToken, Attempt> {
        let inner = &self.inner;
        let class = match e {
            SmtpError::Reply { stage, code, text } => classify(*stage, *code, text),
            _ => Class::Temporary,
        };
        match class {
            Class::TokenRejected if !*refreshed => {
                *refreshed = true;
                tracing::info!(
                    job_id = %job.id,
                    account = a.id,
                    code = e.code(),
                    "upstream refused the access token; refreshing once"
                );
                let context = format!("{} — ", e.reply());
                if let Err(te) = inner.tokens.force_refresh(a.id).await {
                    return Err(self.token_failure(a, &te, &context).await);
                }
                match inner.tokens.access_token(a.id).await {
                    Ok(t) => Ok(t),
                    Err(te) => Err(self.token_failure(a, &te, &context).await),
                }
            }
            Class::TokenRejected => Err(Attempt::Temporary {
                reply: format!(
                    "{} — the provider refused a freshly refreshed access token; retrying later",
                    e.reply()
                ),
                code: e.code(),
            }),
            _ => Err(Attempt::Temporary {
                reply: with_advice(e.reply()),
                code: e.code(),
            }),
        }
    }

    /// Records an attempt in the store (and queues a failure notice).
    async fn record(&self, job: &Job, attempt: Attempt) -> Outcome {
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
                account,
                mailbox,
                lease,
                original,
            } => {
                let mut recorded = reply.clone();
                if !refused.is_empty() {
                    let list = refused
                        .iter()
                        .map(|(r, why)| format!("<{r}>: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    recorded.push_str(&format!(" (refused recipients: {list})"));
                }
                // The session is ready for the next message now.
                if let Some(l) = lease {
                    inner.pool.put(*l);
                }
                // The upstream has the message: until "sent" is committed,
                // keep trying (the job stays in flight, so no requeue sends
                // it again); a shutdown meanwhile records it (see `run`).
                if let Ok(mut m) = inner.accepted.lock() {
                    m.insert(job.id.clone(), (account, recorded.clone()));
                }
                let mut wait = Duration::from_millis(200);
                let mut result = store
                    .mark_sent(&job.id, Some(account), &recorded, now)
                    .await;
                while let Err(e) = &result
                    && e.is_temporary()
                {
                    tracing::warn!(job_id = %job.id, error = %e, "cannot record the upstream's acceptance yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                    result = store
                        .mark_sent(&job.id, Some(account), &recorded, inner.clock.unix())
                        .await;
                }
                if let Ok(mut m) = inner.accepted.lock() {
                    m.remove(&job.id);
                }
                log_err("the upstream's acceptance", result);
                tracing::info!(job_id = %job.id, account, attempt = job.attempts, code = outcome::reply_code(&reply), refused = refused.len(), "sent");
                if !refused.is_empty() {
                    self.queue_notice(job, &refused, false, Some((account, mailbox)), original)
                        .await;
                }
                Outcome::Sent { reply: recorded }
            }
            Attempt::Temporary { reply, code } if expired => {
                tracing::warn!(job_id = %job.id, account = job.account_id, attempt = job.attempts, code, "failed: too old");
                self.give_up(job, &reply, now).await
            }
            Attempt::Temporary { reply, code } => {
                let next = now + backoff::next_delay_secs(job.attempts);
                log_err(
                    "the deferral",
                    store.defer_job(&job.id, &reply, next, now, true).await,
                );
                tracing::info!(job_id = %job.id, account = job.account_id, attempt = job.attempts, code, next_attempt_at = next, "deferred");
                Outcome::Deferred {
                    reply,
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
                let via = account.as_ref().map(|(id, _)| *id);
                log_err(
                    "the failure",
                    store.mark_failed(&job.id, via, &reply, now).await,
                );
                tracing::warn!(job_id = %job.id, account = job.account_id, attempt = job.attempts, code, "failed");
                let failed = if failed.is_empty() {
                    job.rcpt_to
                        .iter()
                        .map(|r| (r.clone(), reply.clone()))
                        .collect()
                } else {
                    failed
                };
                self.queue_notice(job, &failed, false, account, None).await;
                Outcome::Failed { reply }
            }
            Attempt::Waiting { reason } if expired => {
                tracing::warn!(job_id = %job.id, account = job.account_id, "failed: too old while waiting for authorization");
                self.give_up(job, &reason, now).await
            }
            Attempt::Waiting { reason } => {
                let next = now + backoff::WAIT_RECHECK_SECS;
                log_err(
                    "the wait",
                    store.defer_job(&job.id, &reason, next, now, false).await,
                );
                // Once per job and reason: the recheck comes every minute.
                if job.last_reply.as_deref() == Some(reason.as_str()) {
                    tracing::debug!(job_id = %job.id, account = job.account_id, "still waiting for authorization");
                } else {
                    tracing::info!(job_id = %job.id, account = job.account_id, %reason, "waiting for authorization");
                }
                Outcome::WaitingForAuthorization { reason }
            }
            Attempt::RateLimited { wait_secs, reply } => {
                let next = now + wait_secs;
                log_err(
                    "the wait",
                    store.defer_job(&job.id, &reply, next, now, false).await,
                );
                tracing::debug!(job_id = %job.id, account = job.account_id, "rate limited");
                Outcome::Deferred {
                    reply,
                    next_attempt_at: next,
                }
            }
        }
    }

    /// Fails a job that is too old to keep trying, with its last reply, and
    /// queues the failure notice.
    async fn give_up(&self, job: &Job, last: &str, now: i64) -> Outcome {
        let reply = format!(
            "{last} (gave up: not delivered within {} hours)",
            self.inner.config.max_age_hours
        );
        if let Err(e) = self
            .inner
            .store
            .mark_failed(&job.id, None, &reply, now)
            .await
        {
            tracing::error!(job_id = %job.id, error = %e, "cannot record the failure; the lease will expire and the job be retried");
        }
        let failed: Vec<(String, String)> = job
            .rcpt_to
            .iter()
            .map(|r| (r.clone(), reply.clone()))
            .collect();
        self.queue_notice(job, &failed, true, None, None).await;
        Outcome::Failed { reply }
    }

    /// Queues a failure notice about `job`, where one is due.
    async fn queue_notice(
        &self,
        job: &Job,
        failed: &[(String, String)],
        expired: bool,
        account: Option<(i64, String)>,
        original: Option<Bytes>,
    ) {
        let inner = &self.inner;
        let Some(to) = dsn::notice_recipient(&inner.config.failure_notice_to, job) else {
            return;
        };
        // The notice goes out through the same account, From its mailbox.
        let (account_id, from) = match account {
            Some((id, mb)) => (Some(id), mb),
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

/// Whether a failure on a reused session means the server had closed it
/// while idle: lost at MAIL, before anything of the message was sent.
fn closed_while_idle(e: &SmtpError) -> bool {
    match e {
        SmtpError::Transport { stage, .. } => *stage == outcome::Stage::Mail,
        SmtpError::Reply { stage, code, .. } => *stage == outcome::Stage::Mail && *code == 421,
        SmtpError::BadAddress { .. } => false,
    }
}

/// Judges an SMTP failure outside AUTH.
fn smtp_failure(e: &SmtpError) -> Attempt {
    match e {
        SmtpError::Reply { stage, code, text } => match classify(*stage, *code, text) {
            Class::Permanent => Attempt::Permanent {
                reply: e.reply(),
                code: Some(*code),
                failed: Vec::new(),
                account: None,
            },
            _ => Attempt::Temporary {
                reply: with_advice(e.reply()),
                code: Some(*code),
            },
        },
        SmtpError::BadAddress { .. } | SmtpError::Transport { .. } => Attempt::Temporary {
            reply: e.reply(),
            code: None,
        },
    }
}
