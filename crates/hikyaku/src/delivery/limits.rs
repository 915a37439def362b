//! Where an account's limits are counted (protocols.md §12–§13): the
//! upstream connection cap and the messages per minute belong to the
//! mailbox, not the process.
//!
//! - [`Limits::Local`] (SQLite, one instance): the in-process
//!   [`RateLimiter`](super::rate::RateLimiter) and the pool's own slots are
//!   all there is; nothing here costs a thing.
//! - [`Limits::Cluster`] (PostgreSQL): every instance takes the same
//!   account's starts and connection slots from the shared database
//!   ([`PgStore::take_send`], [`PgStore::acquire_slot`]), so two instances
//!   with a cap of 3 still make 3. A slot is held as long as its upstream
//!   session lives (in use or idle) and renewed meanwhile; a slot of an
//!   instance that died runs out by itself after [`SLOT_LEASE`].

use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use crate::store::postgres::PgStore;
use crate::store::postgres::cluster::Slot;

/// Longest idle time of an upstream session on a cluster (else
/// `delivery.connection_idle_secs`): an idle session keeps its slot from
/// the other instances. Under load a session is reused within this.
pub const CLUSTER_IDLE: Duration = Duration::from_secs(2);
/// How often idle sessions are looked at for closing on a cluster.
pub const CLUSTER_SWEEP: Duration = Duration::from_millis(500);
/// An idle session gives its slot to another instance that waits once it
/// has idled this long: one given back a moment ago is likely reused by
/// its own instance in a moment more under load. As long as the waiting
/// instance's own pause between asks for a slot.
pub const WANTED_IDLE: Duration = crate::store::postgres::cluster::FULL_FOR;

/// How long a connection slot is held without renewal.
pub const SLOT_LEASE: Duration = Duration::from_secs(30);
/// How often a held slot is renewed.
const SLOT_RENEW: Duration = Duration::from_secs(10);
/// First and longest pause between tries for a slot the cluster has none
/// of (another instance's session ends, or its lease runs out).
const SLOT_POLL_FIRST: Duration = Duration::from_millis(50);
const SLOT_POLL_MAX: Duration = Duration::from_millis(400);

/// Where the limits are counted.
pub(crate) enum Limits {
    Local(super::rate::RateLimiter),
    Cluster(PgStore),
}

/// Why a start or slot was not given.
pub(crate) enum Refused {
    /// Over the limit: try again after this long.
    Wait(Duration),
    /// The shared store could not be asked.
    Store(crate::store::StoreError),
}

impl Limits {
    /// Counts a message start of `account` against its rate (`own`, else
    /// `default` per minute).
    pub async fn take_send(
        &self,
        account: i64,
        own: Option<u32>,
        default: u64,
        now: Instant,
    ) -> Result<(), Refused> {
        match self {
            Limits::Local(rate) => rate.try_acquire(account, own, now).map_err(Refused::Wait),
            Limits::Cluster(pg) => {
                let per_minute = own
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| u32::try_from(default).unwrap_or(u32::MAX));
                match pg.take_send(account, per_minute).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(wait)) => Err(Refused::Wait(wait)),
                    Err(e) => Err(Refused::Store(e)),
                }
            }
        }
    }

    /// One of `account`'s `cap` upstream connections in the whole cluster,
    /// waiting up to `wait` for one; `Ok(None)` on one instance (the
    /// caller's local slot is the limit).
    pub async fn connection(
        &self,
        account: i64,
        cap: u32,
        wait: Duration,
    ) -> Result<Option<ClusterSlot>, Refused> {
        match self
            .connection_or_returned(account, cap, wait, std::future::pending())
            .await?
        {
            Connection::Slot(slot) => Ok(slot),
            Connection::Returned => Err(Refused::Wait(Duration::from_secs(5))),
        }
    }

    /// As [`Limits::connection`], but while the cluster has no slot free it
    /// stops waiting once `returned` fires — a session of this instance was
    /// given back, which the caller can use instead of a new one. Without
    /// it, an instance whose own sessions keep coming back would still wait
    /// for another instance to close one of its sessions.
    pub async fn connection_or_returned(
        &self,
        account: i64,
        cap: u32,
        wait: Duration,
        returned: impl std::future::Future<Output = ()>,
    ) -> Result<Connection, Refused> {
        let Limits::Cluster(pg) = self else {
            return Ok(Connection::Slot(None));
        };
        let deadline = Instant::now() + wait;
        let mut pause = SLOT_POLL_FIRST;
        let mut returned = std::pin::pin!(returned);
        let mut woken = false;
        loop {
            // A slot given back (announced by another instance, or by this
            // one) ends the pause of one waiting delivery, which then asks.
            let mut freed = std::pin::pin!(pg.slot_freed_signal(account));
            freed.as_mut().enable();
            let got = if std::mem::take(&mut woken) {
                pg.acquire_freed_slot(account, cap.max(1), SLOT_LEASE).await
            } else {
                pg.acquire_slot(account, cap.max(1), SLOT_LEASE).await
            };
            match got {
                Ok(Some(slot)) => {
                    return Ok(Connection::Slot(Some(ClusterSlot::hold(pg.clone(), slot))));
                }
                Ok(None) => {}
                Err(e) => return Err(Refused::Store(e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Refused::Wait(Duration::from_secs(5)));
            }
            tokio::select! {
                () = tokio::time::sleep(pause.min(left)) => {}
                () = &mut freed => woken = true,
                () = &mut returned => return Ok(Connection::Returned),
            }
            pause = (pause * 2).min(SLOT_POLL_MAX);
        }
    }
}

/// What [`Limits::connection_or_returned`] found.
pub(crate) enum Connection {
    /// The cluster's slot (`None` on one instance).
    Slot(Option<ClusterSlot>),
    /// One of this instance's sessions was given back: use it instead.
    Returned,
}

/// A connection slot held in the shared store: renewed while it lives,
/// given back when dropped.
pub struct ClusterSlot {
    renew: tokio::task::JoinHandle<()>,
    release: Option<(PgStore, Slot)>,
}

impl ClusterSlot {
    fn hold(pg: PgStore, slot: Slot) -> Self {
        let renew = {
            let pg = pg.clone();
            let slot = slot.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SLOT_RENEW).await;
                    match pg.renew_slot(&slot, SLOT_LEASE).await {
                        Ok(true) => {}
                        Ok(false) => {
                            // Its lease ran out (the database was away longer
                            // than the lease) and another instance may hold it:
                            // the session ends with the next give-back.
                            tracing::warn!(
                                account = slot.account_id,
                                slot = slot.slot,
                                "delivery: an upstream connection slot was lost"
                            );
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(account = slot.account_id, error = %e, "delivery: cannot renew a connection slot yet")
                        }
                    }
                }
            })
        };
        ClusterSlot {
            renew,
            release: Some((pg, slot)),
        }
    }
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        self.renew.abort();
        if let Some((pg, slot)) = self.release.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                // Not given back (the database is away): it runs out by itself.
                if let Err(e) = pg.release_slot(slot).await {
                    tracing::debug!(error = %e, "delivery: cannot give back a connection slot; it expires by itself");
                }
            });
        }
    }
}

/// The right to one upstream session: this process's slot of the account
/// and, on PostgreSQL, the cluster's. Dropping it frees both.
pub struct Permit {
    _local: OwnedSemaphorePermit,
    _cluster: Option<ClusterSlot>,
}

impl Permit {
    pub fn new(local: OwnedSemaphorePermit, cluster: Option<ClusterSlot>) -> Self {
        Permit {
            _local: local,
            _cluster: cluster,
        }
    }
}
