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
    /// Simultaneous connections from one network (IPv4 /24, IPv6 /64), so
    /// that a few addresses of one network cannot take every slot.
    pub max_connections_per_network: usize,
    /// Longest wait for the client's next bytes (RFC 5321 §4.5.3.2.7: 5 min).
    pub idle_timeout: Duration,
    /// Longest a whole session may last.
    pub session_timeout: Duration,
    /// Once the first byte of a command line has arrived, the rest must
    /// follow within this. RFC 5321 §4.5.3.2 allows 5 minutes per command; a
    /// client trickling a byte every few seconds would otherwise hold its
    /// slot for the whole session.
    pub command_line_timeout: Duration,
    /// DATA (and skipped BDAT chunks) must arrive at this average rate, in
    /// octets per second, once `data_grace` has passed. 500 is Postfix's
    /// `smtpd_min_data_rate`.
    pub min_data_rate: u64,
    pub data_grace: Duration,
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
            max_connections_per_network: 100,
            idle_timeout: Duration::from_secs(5 * 60),
            session_timeout: Duration::from_secs(30 * 60),
            command_line_timeout: Duration::from_secs(60),
            min_data_rate: 500,
            data_grace: Duration::from_secs(30),
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(1),
        }
    }
}

/// Counts open sessions per client address and in total.
#[derive(Debug)]
pub struct ConnectionLimiter {
    per_client: usize,
    per_network: usize,
    total: usize,
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
    by_network: HashMap<IpAddr, usize>,
}

/// The network a client belongs to for the per-network cap: its IPv4 /24 or
/// its IPv6 /64 (one site's usual allocation).
fn network_of(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

fn release(map: &mut HashMap<IpAddr, usize>, key: IpAddr) {
    if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

/// Proof that a session holds a slot; the slot is released on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    client: IpAddr,
}

impl ConnectionLimiter {
    pub fn new(total: usize, per_client: usize, per_network: usize) -> Arc<Self> {
        Arc::new(Self {
            per_client,
            // One address is one network at least.
            per_network: per_network.max(per_client),
            total,
            open: Mutex::new(Counts::default()),
        })
    }

    /// Takes a slot for `client`, or `None` when a cap is reached.
    pub fn try_acquire(self: &Arc<Self>, client: IpAddr) -> Option<ConnectionPermit> {
        // An IPv4 client reaching a dual-stack socket shows up as ::ffff:a.b.c.d;
        // count it under its IPv4 address.
        let client = client.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let network = network_of(client);
        let mine = open.by_client.get(&client).copied().unwrap_or(0);
        let ours = open.by_network.get(&network).copied().unwrap_or(0);
        if open.total >= self.total || mine >= self.per_client || ours >= self.per_network {
            return None;
        }
        open.total += 1;
        open.by_client.insert(client, mine + 1);
        open.by_network.insert(network, ours + 1);
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
        release(&mut open.by_client, self.client);
        release(&mut open.by_network, network_of(self.client));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn per_client_and_total_caps() {
        let limiter = ConnectionLimiter::new(3, 2, 3);
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

    #[test]
    fn per_network_cap_holds_across_addresses() {
        let limiter = ConnectionLimiter::new(100, 2, 3);
        let v4 = |d: u8| IpAddr::from([198, 51, 100, d]);
        let held: Vec<_> = (1..=3).filter_map(|d| limiter.try_acquire(v4(d))).collect();
        assert_eq!(held.len(), 3);
        assert!(
            limiter.try_acquire(v4(4)).is_none(),
            "a fourth address of the /24"
        );
        assert!(
            limiter.try_acquire([198, 51, 101, 1].into()).is_some(),
            "another /24"
        );
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        let held6: Vec<_> = (1..=3).filter_map(|d| limiter.try_acquire(v6(d))).collect();
        assert_eq!(held6.len(), 3);
        assert!(
            limiter.try_acquire(v6(9)).is_none(),
            "a fourth address of the /64"
        );
        assert!(
            limiter
                .try_acquire(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]))
                .is_some(),
            "another /64"
        );
        drop(held);
        assert!(
            limiter.try_acquire(v4(4)).is_some(),
            "slots come back on drop"
        );
    }
}
