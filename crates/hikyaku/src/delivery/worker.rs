//! The worker loop: claims due jobs (or takes handed-over ones) for as many
//! workers as are free, requeues expired leases while idle, and on shutdown
//! gives deliveries in flight a grace period, then records what is left.

use super::*;

/// Longest idle sleep of the loop (it also requeues expired leases then).
const IDLE_MAX: Duration = Duration::from_secs(60);
/// How often idle upstream sessions are checked for closing.
const POOL_SWEEP: Duration = Duration::from_secs(5);
/// How long shutdown waits for deliveries in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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

impl Delivery {
    /// Starts delivering one job on a worker.
    pub(super) fn start(
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
    pub(super) fn start_fresh(
        &self,
        tasks: &mut JoinSet<()>,
        fresh: Fresh,
        permit: OwnedSemaphorePermit,
    ) {
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

    pub(super) async fn run(&self, shutdown: CancellationToken) {
        let inner = &self.inner;
        let workers = usize::try_from(inner.config.workers.max(1)).unwrap_or(1);
        let slots = Arc::new(Semaphore::new(workers));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut fresh = inner.fresh.lock().ok().and_then(|mut rx| rx.take());
        // How often expired leases are looked for: on a shared queue a few
        // times per lease, so that a dead instance's jobs are taken over
        // within about one lease of its death.
        let rescue_every = inner
            .store
            .postgres()
            .filter(|pg| pg.database_clock())
            .map_or(IDLE_MAX, |pg| {
                (pg.lease() / 4).clamp(Duration::from_secs(1), IDLE_MAX)
            });
        self.requeue_expired().await;
        let sweep_every = match inner.limits {
            limits::Limits::Cluster(_) => limits::CLUSTER_SWEEP,
            limits::Limits::Local(_) => POOL_SWEEP,
        };
        let sweeper = {
            let this = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(sweep_every) => this.sweep().await,
                    }
                }
            })
        };
        let listener = match &inner.limits {
            limits::Limits::Cluster(pg) => {
                let this = self.clone();
                let pg = pg.clone();
                let stop = shutdown.clone();
                Some(tokio::spawn(
                    async move { this.hear_slots(&pg, stop).await },
                ))
            }
            limits::Limits::Local(_) => None,
        };
        tracing::info!(workers, "delivery started");
        // Whether the queue may hold due jobs: at start, after a wake, when a
        // timer ran out, or after a claim that filled every free worker.
        let mut look = true;
        let mut since_claim = 0;
        let mut next_look = tokio::time::Instant::now() + rescue_every;
        // Kept apart from `next_look`, which every claim moves: under steady
        // load the claims would otherwise keep pushing the rescue away, and a
        // job left "sending" (its outcome could not be recorded) would wait
        // for the load to stop.
        let mut next_rescue = next_look;
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let at = tokio::time::Instant::now();
            if at >= next_rescue {
                self.requeue_expired().await;
                look = true;
                next_rescue = tokio::time::Instant::now() + rescue_every;
            }
            if at >= next_look {
                look = true;
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
                    _ = tokio::time::sleep_until(next_look.min(next_rescue)) => Woke::Timer,
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
                        .min(rescue_every);
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
            if let Some(Accepted { account, reply }) = accepted.get(&id) {
                if let Err(e) = inner.store.mark_sent(&id, Some(*account), reply, now).await {
                    tracing::error!(job_id = %id, error = %e, "cannot record the upstream's acceptance at shutdown; the message may be sent again after the restart");
                }
                continue;
            }
            tracing::warn!(job_id = %id, "delivery interrupted by shutdown; deferred");
            let _ = inner
                .store
                .defer_job(&id, &lease::shutdown(), now, now, false)
                .await;
        }
        let _ = sweeper.await;
        if let Some(listener) = listener {
            let _ = listener.await;
        }
        inner.pool.close_idle();
        tracing::info!("delivery stopped");
    }

    /// Closes idle upstream sessions past their idle limit and, on a
    /// cluster, those of accounts whose slots another instance waits for
    /// (without that, a burst that ended unevenly between the instances
    /// left one delivering with fewer slots while the other's sessions sat
    /// idle for `CLUSTER_IDLE`).
    async fn sweep(&self) {
        let pool = &self.inner.pool;
        if let limits::Limits::Cluster(pg) = &self.inner.limits
            && pool.has_idle()
        {
            match pg.slots_wanted().await {
                Ok(wanted) if !wanted.is_empty() => {
                    pool.close_idle_of(&wanted, limits::WANTED_IDLE)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "delivery: cannot ask whether another instance waits for a connection slot")
                }
            }
        }
        pool.sweep();
    }

    /// On a cluster, acts on the other instances' announcements about
    /// connection slots until `stop`: closes this instance's idle sessions
    /// of an account another waits for, and wakes this instance's waits
    /// for a slot when another gives one back. Without a listener (the
    /// database is away) the sweep's looks still do the first, and the
    /// waits' own pauses the second.
    async fn hear_slots(&self, pg: &crate::store::postgres::PgStore, stop: CancellationToken) {
        use crate::store::postgres::cluster::{SlotListener, SlotNews};
        let mut listener: Option<SlotListener> = None;
        loop {
            let heard = match listener.as_mut() {
                Some(l) => tokio::select! {
                    _ = stop.cancelled() => return,
                    news = l.next() => news,
                },
                None => {
                    match tokio::select! {
                        _ = stop.cancelled() => return,
                        l = pg.listen_slots() => l,
                    } {
                        Ok(l) => listener = Some(l),
                        Err(e) => Self::listener_lost(&e, &stop).await,
                    }
                    continue;
                }
            };
            match heard {
                Ok(SlotNews::Wanted(account)) => {
                    self.inner
                        .pool
                        .close_idle_of(&[account], limits::WANTED_IDLE);
                    // Sessions given back just now are looked at again once
                    // they have idled long enough.
                    let this = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(limits::WANTED_IDLE).await;
                        this.inner
                            .pool
                            .close_idle_of(&[account], limits::WANTED_IDLE);
                    });
                }
                Ok(SlotNews::Freed(account)) => pg.slot_freed(account),
                Err(e) => {
                    listener = None;
                    Self::listener_lost(&e, &stop).await;
                }
            }
        }
    }

    /// The slot listener could not connect or lost its connection: a pause
    /// before it connects again (or until `stop`).
    async fn listener_lost(e: &crate::store::StoreError, stop: &CancellationToken) {
        tracing::debug!(error = %e, "delivery: cannot hear the other instances about connection slots; trying again");
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }

    pub(super) async fn requeue_expired(&self) {
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
}
