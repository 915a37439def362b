//! Upstream SMTP sessions kept open between jobs, per account.
//!
//! A session is authenticated (AUTH XOAUTH2) as one mailbox with one access
//! token, over one server and TLS policy; it is reused only by a job that
//! would open exactly that session again ([`Key`]). A refreshed token, a
//! changed E-mail Setting or CA list therefore never reuses an old session —
//! it simply idles out.
//!
//! Limits: at most the account's own connection cap (else
//! `connections_per_account`) sessions of an account exist at once, in use or idle (Exchange Online allows 3 per mailbox and answers
//! `432 4.3.2 ... sender thread limit exceeded` beyond that); an idle
//! session is closed after `idle` and after [`MAX_MESSAGES`] messages.
//! Servers close idle sessions too, so a reused session that fails before
//! anything was sent is replaced by a fresh one (see `delivery::attempt`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::Permit;
use super::smtp::{Security, Session, Target};

/// Messages over one session before it is closed and a new one opened:
/// servers limit messages per session, and a fresh session picks up
/// changes such as a new certificate.
pub const MAX_MESSAGES: u32 = 100;

/// What a session was opened with. Secrets enter only as keyed hashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    account: i64,
    /// The account's connection cap when the session was opened.
    cap: usize,
    host: String,
    port: u16,
    security: Security,
    /// The TLS policy's id (a changed policy has a new one).
    tls: u64,
    mailbox: String,
    token: u64,
}

/// What [`Pool::get`] found.
pub enum Got {
    Idle(Box<Lease>),
    /// Room for a new session: connect, then [`Pool::lease`].
    Slot(OwnedSemaphorePermit),
}

/// A session in use: give it back with [`Pool::put`] or drop it (which
/// closes the connection and frees its slot).
pub struct Lease {
    pub session: Session,
    pub key: Key,
    pub reused: bool,
    permit: Permit,
}

struct Idle {
    session: Session,
    since: Instant,
    permit: Permit,
}

/// The pool. Cheap to share behind an `Arc`.
pub struct Pool {
    per_account: usize,
    idle_limit: Duration,
    hasher: RandomState,
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    /// Per account: its cap and the slots under it. A changed cap gets new
    /// slots; sessions under the old ones end as they are given back.
    slots: Mutex<HashMap<i64, (usize, Arc<Semaphore>)>>,
    /// Woken when a session is given back.
    returned: tokio::sync::Notify,
}

impl Pool {
    pub fn new(per_account: usize, idle_limit: Duration) -> Self {
        Pool {
            per_account: per_account.max(1),
            idle_limit,
            hasher: RandomState::new(),
            idle: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            returned: tokio::sync::Notify::new(),
        }
    }

    /// The configured default cap.
    pub fn default_cap(&self) -> usize {
        self.per_account
    }

    /// `cap`: the account's own connection cap (`None`: the default).
    pub fn key(
        &self,
        account: i64,
        cap: Option<u32>,
        target: &Target,
        mailbox: &str,
        token: &str,
    ) -> Key {
        Key {
            account,
            cap: cap
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(self.per_account),
            host: target.host.clone(),
            port: target.port,
            security: target.security,
            tls: target.tls_id,
            mailbox: mailbox.to_owned(),
            token: self.hasher.hash_one(token),
        }
    }

    fn slots(&self, account: i64, cap: usize) -> Arc<Semaphore> {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = slots
            .entry(account)
            .or_insert_with(|| (cap, Arc::new(Semaphore::new(cap))));
        if entry.0 != cap {
            *entry = (cap, Arc::new(Semaphore::new(cap)));
        }
        entry.1.clone()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Idle>>> {
        match self.idle.lock() {
            Ok(i) => i,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// An idle session for `key`, if one is fresh enough.
    fn take(&self, key: &Key) -> Option<Lease> {
        let now = Instant::now();
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle();
            let list = idle.get_mut(key)?;
            let mut found = None;
            // Newest first: the one least likely to have been closed by the server.
            while let Some(i) = list.pop() {
                if now.duration_since(i.since) < self.idle_limit && i.session.is_usable() {
                    found = Some(i);
                    break;
                }
                stale.push(i);
            }
            if list.is_empty() {
                idle.remove(key);
            }
            found
        };
        close_all(stale);
        found.map(|i| Lease {
            session: i.session,
            key: key.clone(),
            reused: true,
            permit: i.permit,
        })
    }

    /// An idle session for `key`, or else a slot for a new one, waiting up
    /// to `wait`. Idle sessions of the account opened with other settings
    /// (an old token, say) give up their slots first.
    pub async fn get(&self, key: &Key, wait: Duration) -> Option<Got> {
        self.acquire(key, wait, true).await
    }

    async fn acquire(&self, key: &Key, wait: Duration, reuse: bool) -> Option<Got> {
        let slots = self.slots(key.account, key.cap);
        let deadline = Instant::now() + wait;
        loop {
            if reuse && let Some(lease) = self.take(key) {
                return Some(Got::Idle(Box::new(lease)));
            }
            if let Ok(p) = slots.clone().try_acquire_owned() {
                return Some(Got::Slot(p));
            }
            close_all(self.take_idle(|k, _| k.account == key.account && (k != key || !reuse)));
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            // Wake for a freed slot or a session given back (looked at
            // again at the top; a short nap covers a missed wake-up).
            let returned = self.returned.notified();
            tokio::select! {
                p = slots.clone().acquire_owned() => {
                    if let Ok(p) = p {
                        return Some(Got::Slot(p));
                    }
                }
                _ = returned => {}
                _ = tokio::time::sleep(left.min(Duration::from_millis(50))) => {}
            }
        }
    }

    /// Returns once a session is given back (after this is first polled).
    pub async fn given_back(&self) {
        self.returned.notified().await;
    }

    /// A slot for a new session of `key`'s account (never an idle session).
    pub async fn get_slot(&self, key: &Key, wait: Duration) -> Option<Got> {
        self.acquire(key, wait, false).await
    }

    /// A new session in a slot from [`Pool::get`] (with, on PostgreSQL,
    /// the cluster's slot too).
    pub fn lease(&self, key: Key, session: Session, permit: Permit) -> Lease {
        Lease {
            session,
            key,
            reused: false,
            permit,
        }
    }

    /// Gives a session back after a message went out; closes it instead
    /// when it has carried enough or reuse is off.
    pub fn put(&self, lease: Lease) {
        if self.idle_limit.is_zero()
            || lease.session.sent >= MAX_MESSAGES
            || !lease.session.is_usable()
        {
            close_all(vec![Idle {
                session: lease.session,
                since: Instant::now(),
                permit: lease.permit,
            }]);
            return;
        }
        self.idle().entry(lease.key).or_default().push(Idle {
            session: lease.session,
            since: Instant::now(),
            permit: lease.permit,
        });
        self.returned.notify_waiters();
    }

    /// Closes idle sessions older than the idle limit.
    pub fn sweep(&self) {
        let now = Instant::now();
        close_all(self.take_idle(|_, i| now.duration_since(i.since) >= self.idle_limit));
    }

    /// Whether any session idles (so that a cluster asks whether another
    /// instance wants their slots only then).
    pub fn has_idle(&self) -> bool {
        !self.idle().is_empty()
    }

    /// Closes the sessions of `accounts` idle for at least `idle_for`,
    /// giving their slots back: another instance waits for them. A session
    /// given back a moment ago is kept, as its own instance is likely to
    /// reuse it (closing those under load opened twice the sessions).
    pub fn close_idle_of(&self, accounts: &[i64], idle_for: Duration) {
        close_all(
            self.take_idle(|k, i| accounts.contains(&k.account) && i.since.elapsed() >= idle_for),
        );
    }

    /// Closes every idle session (shutdown).
    pub fn close_idle(&self) {
        close_all(self.take_idle(|_, _| true));
    }

    /// Takes the idle sessions that match out of the pool (to be closed
    /// outside its lock).
    fn take_idle(&self, matches: impl Fn(&Key, &Idle) -> bool) -> Vec<Idle> {
        let mut idle = self.idle();
        let mut taken = Vec::new();
        for (key, list) in idle.iter_mut() {
            let (gone, keep): (Vec<Idle>, Vec<Idle>) =
                list.drain(..).partition(|i| matches(key, i));
            *list = keep;
            taken.extend(gone);
        }
        idle.retain(|_, l| !l.is_empty());
        taken
    }
}

impl Key {
    /// The account's connection cap this session counts against.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

impl Lease {
    /// Closes the session (QUIT) and frees its slot.
    pub async fn close(self) {
        self.session.quit().await;
        drop(self.permit);
    }
}

/// QUITs sessions in the background; their slots are freed once closed.
fn close_all(sessions: Vec<Idle>) {
    if sessions.is_empty() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for i in sessions {
                i.session.quit().await;
                drop(i.permit);
            }
        });
    }
}
