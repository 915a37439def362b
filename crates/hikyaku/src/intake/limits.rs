//! Intake limits: the tunables of [`Limits`] and the [`ConnectionLimiter`]
//! that enforces the per-client and total connection caps.
//!
//! Invariant: a [`ConnectionPermit`] is held for exactly as long as its session
//! runs; dropping it (also on panic or cancellation) gives the slot back, so the
//! counters can never leak.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Protocol limits of one listener. The defaults suit a LAN gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in octets after dot-unstuffing (EHLO `SIZE`).
    pub max_message_size: usize,
    /// Recipients per message; RFC 5321 §4.5.3.1.8 asks for at least 100.
    pub max_recipients: usize,
    /// Simultaneous connections from one IP address.
    pub max_connections_per_client: usize,
    /// Simultaneous connections on the listener.
    pub max_connections: usize,
    /// Longest wait for the client's next bytes (RFC 5321 §4.5.3.2.7: 5 min).
    pub idle_timeout: Duration,
    /// Longest a whole session may last.
    pub session_timeout: Duration,
    /// Failed AUTH attempts before the session is dropped.
    pub max_auth_failures: u32,
    /// Delay before answering the first failed AUTH; the n-th waits n times this.
    pub auth_failure_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 36_700_160,
            max_recipients: 100,
            max_connections_per_client: 20,
            max_connections: 200,
            idle_timeout: Duration::from_secs(5 * 60),
            session_timeout: Duration::from_secs(30 * 60),
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(1),
        }
    }
}

/// Counts open sessions per client address and in total.
#[derive(Debug)]
pub struct ConnectionLimiter {
    per_client: usize,
    total: usize,
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Proof that a session holds a slot; the slot is released on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    client: IpAddr,
}

impl ConnectionLimiter {
    pub fn new(total: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            per_client,
            total,
            open: Mutex::new(Counts::default()),
        })
    }

    /// Takes a slot for `client`, or `None` when either cap is reached.
    pub fn try_acquire(self: &Arc<Self>, client: IpAddr) -> Option<ConnectionPermit> {
        // An IPv4 client reaching a dual-stack socket shows up as ::ffff:a.b.c.d;
        // count it under its IPv4 address.
        let client = client.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = open.by_client.get(&client).copied().unwrap_or(0);
        if open.total >= self.total || mine >= self.per_client {
            return None;
        }
        open.total += 1;
        open.by_client.insert(client, mine + 1);
        Some(ConnectionPermit {
            limiter: Arc::clone(self),
            client,
        })
    }

    /// Open sessions in total.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn per_client_and_total_caps() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let a1 = limiter.try_acquire(a);
        let a2 = limiter.try_acquire(a);
        assert!(a1.is_some() && a2.is_some());
        assert!(limiter.try_acquire(a).is_none(), "per-client cap");
        // The IPv4-mapped form is the same client.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(limiter.try_acquire(mapped).is_none());
        let b1 = limiter.try_acquire(b);
        assert!(b1.is_some());
        assert!(limiter.try_acquire(b).is_none(), "total cap");
        drop(a1);
        assert_eq!(limiter.open(), 2);
        assert!(limiter.try_acquire(b).is_some());
        drop((a2, b1));
        assert_eq!(limiter.open(), 0);
    }
}
