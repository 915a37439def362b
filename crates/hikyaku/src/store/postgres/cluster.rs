//! Per-account agreements between the instances sharing one database
//! (protocols.md §12–§13): the caps belong to the mailbox, not the process,
//! so two instances with 3 connections each must not make 6.
//!
//! - [`PgStore::acquire_slot`]: one of an account's upstream connection
//!   slots, held until released or until its lease runs out, so that a dead
//!   instance's slots come back by themselves. A table of leases rather
//!   than session advisory locks: a session lock pins a pooled connection
//!   for as long as the upstream session lasts. An instance that finds them
//!   all held says it waits ([`PgStore::slots_wanted`]), and the others give
//!   back the slots their idle sessions hold. Both the want and a slot given
//!   back are also announced at once (`NOTIFY`, [`SlotListener`]), so that
//!   a slot passes between instances in a round trip or two instead of at
//!   the next look of either (the looks stay, for announcements lost while
//!   a listener reconnects).
//! - [`PgStore::take_send`]: a start in the account's sliding window of the
//!   last minute (`delivery.rate_per_minute`), counted for the whole cluster.
//! - [`PgStore::single_refresh`]: one token refresh per account at a time in
//!   the whole cluster; Microsoft's refresh tokens rotate, so two instances
//!   redeeming the same one would burn it.
//!
//! Each of these holds a transaction-scoped advisory lock keyed by (kind,
//! account) while it decides, so concurrent callers on any instance queue
//! up instead of racing; a crashed instance's locks end with its
//! connection. Their times are the database's clock (§5): the instances'
//! clocks may disagree.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row as _;
use sqlx::postgres::PgListener;

use super::{PgStore, pg};
use crate::store::Result;

/// The kinds of advisory lock, in the high bits of the lock's key.
#[derive(Clone, Copy)]
enum LockKind {
    Slots = 1,
    Rate = 2,
    Refresh = 3,
}

/// The advisory lock's key for (kind, account): the kind in the top 16
/// bits, the account id below (ids are far below 2^47).
fn lock_key(kind: LockKind, account_id: i64) -> i64 {
    ((kind as i64) << 48) | (account_id & 0x0000_FFFF_FFFF_FFFF)
}

/// The sliding window of the messages-per-minute limit, in milliseconds.
const WINDOW_MS: i64 = 60_000;

/// The database's clock in milliseconds.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// A reservation of starts is used within this long, else given up.
const RESERVE_HOLD: Duration = Duration::from_secs(1);
/// At most this many starts per reservation, and at most this share
/// (1/n) of the account's per-minute limit: what a reservation left
/// unused withholds from the other instances for a minute at most.
const RESERVE_MAX: u32 = 256;
const RESERVE_SHARE: u32 = 64;

/// How long a refresh waits for another instance's refresh of the same
/// account before it fails as temporary (a token endpoint that hangs holds
/// the lock at most its own timeout).
const REFRESH_WAIT: &str = "SET LOCAL lock_timeout = '60s'";

/// One `T` per account, made on first use and shared by this instance's
/// tasks of that account.
#[derive(Debug)]
pub(crate) struct PerAccount<T>(Mutex<HashMap<i64, Arc<T>>>);

impl<T> Default for PerAccount<T> {
    fn default() -> Self {
        PerAccount(Mutex::default())
    }
}

impl<T: Default> PerAccount<T> {
    fn of(&self, account_id: i64) -> Arc<T> {
        let mut all = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        all.entry(account_id).or_default().clone()
    }
}

/// Tasks of this instance waiting for the same account's cluster-wide lock
/// wait here first: one pooled connection waits on the database per
/// account, not one per task (the refresh itself needs connections too).
pub(crate) type LocalLocks = PerAccount<tokio::sync::Mutex<()>>;

/// Starts this instance took from each account's window and has not used
/// yet. One account's takers wait here for each other, so one of them at a
/// time asks the database.
pub(crate) type Reserved = PerAccount<tokio::sync::Mutex<Batch>>;

/// One account's last reservation of starts.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Starts still to use.
    left: u32,
    /// Until when they may be used (their rows are dated then).
    until: Option<Instant>,
    /// How many it got, and how many were used.
    size: u32,
    used: u32,
}

/// After the cluster answered that every slot of an account is held, this
/// instance's deliveries wait this long before one of them asks again:
/// otherwise every delivery woken by a session coming back would ask,
/// hundreds of reads a second while the instances share the cap. A slot
/// this instance gives back clears the mark at once.
pub(crate) const FULL_FOR: Duration = Duration::from_millis(100);

/// How long a want of a slot ([`PgStore::slots_wanted`]) stands unless the
/// waiting instance asks again; it asks every [`FULL_FOR`] while it waits.
pub(crate) const WANT_FOR: Duration = Duration::from_secs(1);

/// The channel on which the instances announce wants of slots and slots
/// given back.
const SLOTS_CHANNEL: &str = "hikyaku_slots";

/// What another instance announced about an account's connection slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotNews {
    /// It waits for one: give back the slots of idle sessions.
    Wanted(i64),
    /// It gave one back: a wait for one may try again now.
    Freed(i64),
}

impl SlotNews {
    /// Reads an announcement (`w ACCOUNT OWNER` or `f ACCOUNT OWNER`);
    /// `None` for one of `own`'s or one it does not know.
    fn parse(payload: &str, own: &str) -> Option<SlotNews> {
        let mut parts = payload.splitn(3, ' ');
        let (kind, account, owner) = (parts.next()?, parts.next()?, parts.next()?);
        if owner == own {
            return None;
        }
        let account = account.parse().ok()?;
        match kind {
            "w" => Some(SlotNews::Wanted(account)),
            "f" => Some(SlotNews::Freed(account)),
            _ => None,
        }
    }
}

/// Hears the other instances' [`SlotNews`] on a connection of its own.
pub struct SlotListener {
    listener: PgListener,
    owner: Arc<str>,
}

impl SlotListener {
    /// The next announcement of another instance. A lost connection is
    /// an error; the next call connects again (what was announced
    /// meanwhile is lost: the looks of [`PgStore::slots_wanted`] and of
    /// the waits for a slot still find it).
    pub async fn next(&mut self) -> Result<SlotNews> {
        loop {
            let n = self.listener.recv().await.map_err(pg)?;
            if let Some(news) = SlotNews::parse(n.payload(), &self.owner) {
                return Ok(news);
            }
        }
    }
}

/// Per account, the waits of this instance's deliveries for a slot that
/// another instance gives back.
pub(crate) type SlotsFreed = PerAccount<tokio::sync::Notify>;

/// When the cluster last said each account's slots were all held.
#[derive(Debug, Default)]
pub(crate) struct SlotsFull(Mutex<HashMap<i64, Instant>>);

impl SlotsFull {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Instant>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether `account_id`'s slots were all held a moment ago.
    fn recently(&self, account_id: i64) -> bool {
        self.map()
            .get(&account_id)
            .is_some_and(|at| at.elapsed() < FULL_FOR)
    }

    fn set(&self, account_id: i64, full: bool) {
        if full {
            self.map().insert(account_id, Instant::now());
        } else {
            self.map().remove(&account_id);
        }
    }
}

/// A held upstream connection slot of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub account_id: i64,
    /// Which of the account's slots (0 to cap − 1).
    pub slot: i64,
}

impl PgStore {
    /// Takes a free connection slot of `account_id` (at most `cap` held in
    /// the whole cluster), leased to this instance for `lease`; `None` when
    /// all are taken. Slots whose lease ran out are free again.
    pub async fn acquire_slot(
        &self,
        account_id: i64,
        cap: u32,
        lease: Duration,
    ) -> Result<Option<Slot>> {
        if self.slots_full.recently(account_id) {
            return Ok(None);
        }
        self.take_slot(account_id, cap, lease).await
    }

    /// [`PgStore::acquire_slot`] for a caller woken by a slot given back
    /// ([`PgStore::slot_freed_signal`]): it asks the database even though
    /// every slot was held a moment ago. Only the woken caller does: when
    /// a give-back let every waiting delivery ask, they all found the slot
    /// free, queued on the account's lock, and all but one found it taken
    /// (three to four asks and a want for each slot given back).
    pub async fn acquire_freed_slot(
        &self,
        account_id: i64,
        cap: u32,
        lease: Duration,
    ) -> Result<Option<Slot>> {
        self.take_slot(account_id, cap, lease).await
    }

    async fn take_slot(&self, account_id: i64, cap: u32, lease: Duration) -> Result<Option<Slot>> {
        // While every slot is held (deliveries of both instances waiting
        // for one poll here), one read says so; the locked transaction
        // below (six round trips) runs only when a slot looks free.
        let held: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM account_slots WHERE account_id = $1 AND lease_until > {NOW_MS}"
        )))
        .bind(account_id)
        .fetch_one(&self.pool)
        .await
        .map_err(pg)?;
        if held >= i64::from(cap) {
            self.all_held(account_id).await;
            return Ok(None);
        }
        let mut tx = self.pool.begin().await.map_err(pg)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(LockKind::Slots, account_id))
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        let now: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {NOW_MS}")))
            .fetch_one(&mut *tx)
            .await
            .map_err(pg)?;
        sqlx::query("DELETE FROM account_slots WHERE account_id = $1 AND lease_until <= $2")
            .bind(account_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        // The lowest slot number below the cap that nobody holds.
        let slot: Option<i64> = sqlx::query_scalar(
            "INSERT INTO account_slots (account_id, slot, owner, lease_until) \
             SELECT $1, s, $3, $4 FROM generate_series(0, $2 - 1) AS s \
             WHERE s NOT IN (SELECT slot FROM account_slots WHERE account_id = $1) \
             ORDER BY s LIMIT 1 RETURNING slot",
        )
        .bind(account_id)
        .bind(i64::from(cap))
        .bind(&*self.owner)
        .bind(now.saturating_add(millis(lease)))
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        match slot {
            Some(slot) => {
                self.slots_full.set(account_id, false);
                Ok(Some(Slot { account_id, slot }))
            }
            None => {
                self.all_held(account_id).await;
                Ok(None)
            }
        }
    }

    /// Every slot of `account_id` is held: this instance waits a moment
    /// before asking again ([`FULL_FOR`]), and tells the other instances
    /// that it waits (for [`WANT_FOR`]), so that they give back the slots
    /// their idle sessions hold ([`PgStore::slots_wanted`]).
    async fn all_held(&self, account_id: i64) {
        self.slots_full.set(account_id, true);
        // Wants past their date mean nothing; removed here, so that the
        // table holds no more than the instances that wait now (each run
        // of an instance has a name of its own).
        let wanted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH stale AS (DELETE FROM account_slot_wants WHERE until_ms <= {NOW_MS} AND NOT (account_id = $1 AND owner = $2)) \
             INSERT INTO account_slot_wants (account_id, owner, until_ms) VALUES ($1, $2, {NOW_MS} + $3) \
             ON CONFLICT (account_id, owner) DO UPDATE SET until_ms = EXCLUDED.until_ms \
             RETURNING pg_notify($4, 'w ' || $1 || ' ' || $2)"
        )))
        .bind(account_id)
        .bind(&*self.owner)
        .bind(millis(WANT_FOR))
        .bind(SLOTS_CHANNEL)
        // Without waiting for the disk: a want lost in a database crash
        // only leaves the others' idle sessions to their idle limit.
        .execute(&self.relaxed)
        .await;
        if let Err(e) = wanted {
            tracing::debug!(account = account_id, error = %e, "delivery: cannot say that a connection slot is wanted");
        }
    }

    /// The accounts whose slots another instance waits for: this instance
    /// closes its idle sessions of those, giving their slots back.
    pub async fn slots_wanted(&self) -> Result<Vec<i64>> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT account_id FROM account_slot_wants WHERE owner <> $1 AND until_ms > {NOW_MS}"
        )))
        .bind(&*self.owner)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)
    }

    /// Starts hearing the other instances' announcements about slots.
    pub async fn listen_slots(&self) -> Result<SlotListener> {
        let mut listener = PgListener::connect_with(&self.listen).await.map_err(pg)?;
        listener.listen(SLOTS_CHANNEL).await.map_err(pg)?;
        Ok(SlotListener {
            listener,
            owner: self.owner.clone(),
        })
    }

    /// Another instance gave back one of `account_id`'s slots: one wait
    /// for a slot tries again at once. One, as one slot came back: waking
    /// every waiting delivery would send them all to the database for it.
    pub fn slot_freed(&self, account_id: i64) {
        self.freed.of(account_id).notify_one();
    }

    /// Fires when another instance gave back a slot of `account_id`
    /// ([`PgStore::slot_freed`]); enable it before asking for a slot, so
    /// that a give-back between the ask and the wait is not missed.
    pub fn slot_freed_signal(&self, account_id: i64) -> tokio::sync::futures::OwnedNotified {
        self.freed.of(account_id).notified_owned()
    }

    /// Extends the lease of a slot this instance holds (a long upstream
    /// session); `false` if the slot is no longer ours (its lease ran out
    /// and another instance took it).
    pub async fn renew_slot(&self, slot: &Slot, lease: Duration) -> Result<bool> {
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE account_slots SET lease_until = {NOW_MS} + $4 \
             WHERE account_id = $1 AND slot = $2 AND owner = $3"
        )))
        .bind(slot.account_id)
        .bind(slot.slot)
        .bind(&*self.owner)
        .bind(millis(lease))
        // Without waiting for the disk: a renewal lost in a database crash
        // leaves the lease as the previous renewal set it, two renewals
        // before it runs out.
        .execute(&self.relaxed)
        .await
        .map_err(pg)?
        .rows_affected();
        Ok(n > 0)
    }

    /// Gives a slot back (a slot taken over by another instance stays theirs).
    pub async fn release_slot(&self, slot: Slot) -> Result<()> {
        sqlx::query(
            "DELETE FROM account_slots WHERE account_id = $1 AND slot = $2 AND owner = $3 \
             RETURNING pg_notify($4, 'f ' || $1 || ' ' || $3)",
        )
        .bind(slot.account_id)
        .bind(slot.slot)
        .bind(&*self.owner)
        .bind(SLOTS_CHANNEL)
        // Without waiting for the disk: a give-back lost in a database
        // crash leaves the slot taken until its lease runs out.
        .execute(&self.relaxed)
        .await
        .map_err(pg)?;
        // This instance's own waits hear no announcement of it.
        self.freed.of(slot.account_id).notify_one();
        Ok(())
    }

    /// Counts a message start for `account_id` if fewer than `per_minute`
    /// started in the last minute on any instance; otherwise how long until
    /// the oldest of them leaves the window.
    ///
    /// Starts are taken from the shared window a few at a time while they
    /// are used up quickly (see [`Reserved`]); callers of this instance then
    /// take them here without a round trip, one account's callers one after
    /// the other.
    pub async fn take_send(
        &self,
        account_id: i64,
        per_minute: u32,
    ) -> Result<std::result::Result<(), Duration>> {
        let per_minute = per_minute.max(1);
        let batch = self.starts.of(account_id);
        let mut b = batch.lock().await;
        let now = Instant::now();
        if b.left > 0 && b.until.is_some_and(|until| now < until) {
            b.left -= 1;
            b.used += 1;
            return Ok(Ok(()));
        }
        // Doubled while a reservation is used up within its time, else as
        // many as the last one used: the next one matches the demand.
        let want = if b.size > 0 && b.used >= b.size {
            b.size.saturating_mul(2)
        } else {
            b.used.max(1)
        }
        .min((per_minute / RESERVE_SHARE).clamp(1, RESERVE_MAX));
        match self.reserve_starts(account_id, per_minute, want).await? {
            Ok(granted) => {
                *b = Batch {
                    left: granted - 1,
                    until: Some(now + RESERVE_HOLD),
                    size: granted,
                    used: 1,
                };
                Ok(Ok(()))
            }
            Err(wait) => {
                *b = Batch::default();
                Ok(Err(wait))
            }
        }
    }

    /// Takes up to `want` (at least 1) starts from `account_id`'s window in
    /// one round trip: how many it got, or how long until one frees.
    async fn reserve_starts(
        &self,
        account_id: i64,
        per_minute: u32,
        want: u32,
    ) -> Result<std::result::Result<u32, Duration>> {
        // The first start is used now; the others are dated at the end of
        // their use (`RESERVE_HOLD`), so that the window counts each no
        // earlier than it really starts and the limit holds. One row for
        // each of the two dates, with its count: the window holds rows per
        // reservation, not per start.
        //
        // One multi-statement string is one round trip and one transaction;
        // the lock serializes the account's takers on every instance, and
        // each statement after it sees what earlier takers committed. It
        // holds only integers of ours, written out. On the relaxed pool: a
        // start lost in a database crash undercounts the window by at most
        // the last fraction of a second before it (the delivery that took it
        // fails with the database anyway), and Exchange delays an excess
        // rather than refusing it.
        let sql = format!(
            "SELECT pg_advisory_xact_lock({key}); \
             DELETE FROM account_starts WHERE account_id = {account_id} AND at_ms <= {NOW_MS} - {WINDOW_MS}; \
             WITH t AS (SELECT {NOW_MS} AS now), \
             c AS (SELECT COALESCE(SUM(n), 0) AS n, MIN(at_ms) AS oldest FROM account_starts WHERE account_id = {account_id}), \
             g AS (SELECT GREATEST(LEAST({want}, {per_minute} - c.n), 0) AS k FROM c), \
             i AS (INSERT INTO account_starts (account_id, at_ms, n) \
                   SELECT {account_id}, t.now, 1 FROM t, g WHERE g.k >= 1 \
                   UNION ALL SELECT {account_id}, t.now + {hold}, g.k - 1 FROM t, g WHERE g.k > 1 RETURNING n) \
             SELECT (SELECT COALESCE(SUM(n), 0) FROM i)::BIGINT AS granted, c.oldest, t.now FROM c, t",
            key = lock_key(LockKind::Rate, account_id),
            want = want.max(1),
            hold = millis(RESERVE_HOLD),
        );
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.relaxed)
            .await
            .map_err(pg)?;
        let Some(row) = rows.last() else {
            return Err(crate::store::StoreError::Conflict(
                crate::store::Conflict::Corrupt("the rate window answered no row".into()),
            ));
        };
        let granted: i64 = row.try_get("granted").map_err(pg)?;
        if granted > 0 {
            return Ok(Ok(u32::try_from(granted).unwrap_or(1)));
        }
        let now: i64 = row.try_get("now").map_err(pg)?;
        let oldest: Option<i64> = row.try_get("oldest").map_err(pg)?;
        let wait = oldest.unwrap_or(now) + WINDOW_MS - now;
        Ok(Err(Duration::from_millis(
            u64::try_from(wait).unwrap_or(0).max(1),
        )))
    }

    /// Runs `refresh` while holding the account's refresh lock for the whole
    /// cluster: no other instance's (or task's) `single_refresh` of the same
    /// account runs meanwhile. `refresh` must re-read the stored token first
    /// and refresh only if it is still due — a waiter finds the token its
    /// predecessor stored — and must have committed what it stores before it
    /// returns (the lock ends then).
    pub async fn single_refresh<T>(
        &self,
        account_id: i64,
        refresh: impl AsyncFnOnce() -> T,
    ) -> Result<T> {
        let local = self.refresh_locks.of(account_id);
        let _local = local.lock().await;
        let mut tx = self.pool.begin().await.map_err(pg)?;
        sqlx::query(REFRESH_WAIT)
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(LockKind::Refresh, account_id))
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        let out = refresh().await;
        // Ends the transaction and with it the lock. Should the commit fail
        // (connection lost), the server ended the lock already.
        if let Err(e) = tx.commit().await {
            tracing::warn!(account_id, error = %e, "store: ending the token refresh lock failed");
        }
        Ok(out)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::SlotNews;

    #[test]
    fn announcements_are_read_and_own_ones_ignored() {
        assert_eq!(
            SlotNews::parse("w 12 host:2525/7f", "me"),
            Some(SlotNews::Wanted(12))
        );
        assert_eq!(
            SlotNews::parse("f 3 host:2525/7f", "me"),
            Some(SlotNews::Freed(3))
        );
        assert_eq!(SlotNews::parse("w 12 me", "me"), None);
        assert_eq!(SlotNews::parse("x 12 other", "me"), None);
        assert_eq!(SlotNews::parse("w twelve other", "me"), None);
        assert_eq!(SlotNews::parse("w 12", "me"), None);
    }
}
