//! The PostgreSQL engine: one database shared by several hikyaku instances
//! (design.md, "Several instances"; protocols.md §13).
//!
//! - [`PgStore`]: the queue ([`crate::queue::JobStore`], in [`jobs`]) over a
//!   `PgPool` with synchronous commit, so that `Ok` from an enqueue (and the
//!   `250` after it) means the commit is on the server's disk. Claims take a
//!   lease owned by this instance and fenced by the attempt counter.
//! - [`cluster`]: what several instances must agree on per account — the
//!   upstream connection cap, the messages per minute and a single token
//!   refresh at a time.
//! - [`StoreUrl`]: the `sqlite://` / `postgres://` form of a store's address.
//!
//! Errors are the store's own [`StoreError`]: a lost or refused connection,
//! a server shutting down or a lock wait that timed out is temporary (the
//! intake answers `451 4.3.0`); the pool replaces broken connections by
//! itself.

mod batch;
pub mod cluster;
pub mod jobs;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{Result, StoreError};

/// Connections per instance. A waiting refresh or slot lock pins one at most
/// per account (see [`cluster`]); the rest serve the queue and the pages.
const MAX_CONNECTIONS: u32 = 16;
/// Connections per instance for the writes that need not wait for the disk
/// (heartbeats, slot renewals, the rate window).
const RELAXED_CONNECTIONS: u32 = 4;
/// How long a caller waits for a free pooled connection (or for the server
/// to come back) before its write fails as temporary.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the store lives, as `store.url` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded SQLite file (`sqlite://path`); `None`: the default
    /// file in the data directory.
    Sqlite(Option<std::path::PathBuf>),
    /// A PostgreSQL database (`postgres://` or `postgresql://`), shared by
    /// every instance that names it.
    Postgres(String),
}

/// Why a store URL was refused; the text says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    #[error(
        "unknown store {0:?}: write sqlite://PATH (or leave it empty for the file in data_dir) or postgres://USER@HOST:PORT/DATABASE"
    )]
    Scheme(String),
    #[error("sqlite:// needs a file path, e.g. sqlite:///var/lib/hikyaku/hikyaku.sqlite")]
    NoPath,
    #[error("invalid PostgreSQL URL: {0} (e.g. postgres://hikyaku@db.example.com:5432/hikyaku)")]
    Postgres(String),
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(s: &str) -> std::result::Result<Self, StoreUrlError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(StoreUrl::Sqlite(None));
        }
        if let Some(path) = s.strip_prefix("sqlite://") {
            return if path.is_empty() {
                Err(StoreUrlError::NoPath)
            } else {
                Ok(StoreUrl::Sqlite(Some(path.into())))
            };
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            // The driver's own parser: what it refuses, it could not connect to.
            PgConnectOptions::from_str(s).map_err(|e| StoreUrlError::Postgres(e.to_string()))?;
            return Ok(StoreUrl::Postgres(s.to_owned()));
        }
        // Name only the scheme: the rest may hold a password.
        let scheme = s.split_once("://").map_or(s, |(scheme, _)| scheme);
        Err(StoreUrlError::Scheme(scheme.to_owned()))
    }
}

/// The PostgreSQL store of one instance; cheap to clone.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// This instance's name in leases (`jobs.lease_owner`, slots).
    owner: Arc<str>,
    /// The group commit of new jobs and of jobs' ends.
    batch: batch::Batcher,
    /// The intakes' open mail transactions, which the group commit may
    /// wait a moment for.
    arrivals: Arc<crate::queue::arrivals::Arrivals>,
    /// Writes whose loss in a database crash is harmless (each says why):
    /// committed without waiting for the disk, so they cost no WAL flush.
    relaxed: PgPool,
    /// Each job this instance holds a lease on: the attempt number (the
    /// fencing token its writes must still match) and when it was leased.
    held: Arc<Mutex<HashMap<String, Held>>>,
    /// Message starts taken from the cluster's per-minute window ahead of
    /// use, per account (see [`cluster`]).
    starts: Arc<cluster::Reserved>,
    /// One waiter per account on the cluster-wide refresh lock.
    refresh_locks: Arc<cluster::LocalLocks>,
    /// Accounts whose connection slots were all held a moment ago.
    slots_full: Arc<cluster::SlotsFull>,
    /// Woken when another instance gives back a slot.
    freed: Arc<cluster::SlotsFreed>,
    /// The connection that hears the other instances' announcements
    /// ([`cluster::SlotListener`]); none until delivery listens.
    listen: PgPool,
    /// Whether leases are stamped and compared on the database's clock
    /// (every instance agrees on it) rather than the caller's `now`; see
    /// [`PgStore::with_database_clock`].
    db_clock: bool,
    /// How long a claim or heartbeat leases a job on the database clock.
    lease_secs: i64,
}

/// A lease this instance holds on a job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    /// The attempt the claim counted: the fencing token.
    attempt: i64,
    /// Taken before the claim was sent, so no later than the lease began
    /// on the database's clock.
    since: std::time::Instant,
}

/// The database's clock in Unix seconds, the one clock every instance
/// sharing the database agrees on (protocols.md §5, §13).
pub(crate) const DB_NOW: &str = "FLOOR(EXTRACT(EPOCH FROM clock_timestamp()))::BIGINT";

/// A job's lease on the database clock unless configured otherwise: long
/// enough to ride out a short database outage, short enough that a dead
/// instance's jobs are taken over soon. Deliveries renew it (heartbeat).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

impl PgStore {
    /// Connects to `url` as instance `owner` and brings the schema up to
    /// date. `owner` is unique to this process; the part before a `/` names
    /// the instance across restarts (`HOST:PORT/PROCESS`): a restart takes
    /// back the leases of the instance's earlier processes. Several instances may start at once: the
    /// migrations run under a lock.
    pub async fn connect(url: &str, owner: &str) -> Result<Self> {
        Self::connect_counting(url, owner, Arc::default()).await
    }

    /// [`PgStore::connect`] with the group commit waiting for the
    /// transactions `arrivals` counts.
    pub(crate) async fn connect_counting(
        url: &str,
        owner: &str,
        arrivals: Arc<crate::queue::arrivals::Arrivals>,
    ) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(pg)?
            .application_name("hikyaku");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // "250 only after commit": whatever the server's or database's
            // default, a commit returns once it is flushed to disk.
            .connect_with(options.clone().options([("synchronous_commit", "on")]))
            .await
            .map_err(pg)?;
        // Connects on first use: an instance that never writes a relaxed
        // row holds no connection for it.
        let relaxed = PgPoolOptions::new()
            .max_connections(RELAXED_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone().options([("synchronous_commit", "off")]));
        let listen = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        // The group commit's statements (rows as arrays) are the same every
        // time: planned once per connection rather than for every batch,
        // which costs more than running them. Its own connections, so that
        // the pages' queries keep plans made for their values. Without
        // sequential scans: those plans are made at a connection's first
        // batch, often with the queue nearly empty, and then kept while it
        // grows; a record of jobs' ends planned as scans of `jobs` and
        // `messages` read every page of them (hundreds under load) with
        // every batch, where the statements only ever look rows up by key.
        let batched = PgPoolOptions::new()
            .max_connections(batch::CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.options([
                ("synchronous_commit", "on"),
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
            ]));
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(StoreError::from)?;
        let owner: Arc<str> = owner.into();
        Ok(Self {
            batch: batch::Batcher::start(batched, owner.clone(), Arc::clone(&arrivals)),
            arrivals,
            pool,
            relaxed,
            owner,
            held: Arc::default(),
            starts: Arc::default(),
            refresh_locks: Arc::default(),
            slots_full: Arc::default(),
            freed: Arc::default(),
            listen,
            db_clock: false,
            lease_secs: 600,
        })
    }

    /// Leases on the database's clock: a claim leases a job for `lease` from
    /// the database's now and an expired lease is one past the database's
    /// now, whatever the clocks of the instances say. Without it (the
    /// queue's conformance suite, which moves time by hand) the caller's
    /// `now` and `lease_until` are used as given.
    pub fn with_database_clock(mut self, lease: Duration) -> Self {
        self.db_clock = true;
        self.lease_secs = i64::try_from(lease.as_secs()).unwrap_or(600).max(1);
        self
    }

    /// How long a claim or heartbeat leases a job.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.unsigned_abs())
    }

    /// Whether leases run on the database's clock (every production instance).
    pub fn database_clock(&self) -> bool {
        self.db_clock
    }

    /// The base and length of a new lease: the database's now (`None`) and
    /// this store's lease, or the caller's `now` and `lease_until - now`.
    fn lease_terms(&self, now: i64, lease_until: i64) -> (Option<i64>, i64) {
        if self.db_clock {
            (None, self.lease_secs)
        } else {
            (Some(now), lease_until.saturating_sub(now))
        }
    }

    /// The now that expired leases are compared with.
    fn lease_now(&self, now: i64) -> Option<i64> {
        (!self.db_clock).then_some(now)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The open mail transactions the group commit may wait for.
    pub fn arrivals(&self) -> &Arc<crate::queue::arrivals::Arrivals> {
        &self.arrivals
    }

    /// This instance's name in leases.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub async fn close(&self) {
        self.batch.close().await;
        self.pool.close().await;
        self.relaxed.close().await;
        self.listen.close().await;
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        match self.held.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// PostgreSQL error classes (SQLSTATE) after which retrying may succeed.
fn temporary_sqlstate(code: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (disk full, out
    // of memory, too many connections); 57P01-57P03: the server is shutting
    // down, crashed or not yet accepting connections; 40001/40P01:
    // serialization failure, deadlock; 55P03: lock not available (a lock
    // wait ran out of time).
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03"
        )
}

/// The store's error for a PostgreSQL failure. A temporary one is kept as
/// text with its temporary mark: [`StoreError::is_temporary`] knows SQLite's
/// codes only.
pub(crate) fn pg(e: sqlx::Error) -> StoreError {
    let code = match &e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    if matches!(e, sqlx::Error::RowNotFound) {
        return StoreError::NotFound;
    }
    if code.as_deref() == Some("53100") {
        return StoreError::Full;
    }
    let temporary = matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    ) || code.as_deref().is_some_and(temporary_sqlstate);
    if temporary {
        StoreError::Shared {
            message: e.to_string(),
            temporary: true,
        }
    } else {
        StoreError::Db(e)
    }
}
