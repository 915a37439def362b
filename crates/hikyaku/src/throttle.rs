//! Throttling of failed logins, for the Remote UI's sign-in and (an instance
//! of its own, as submitters are not users) the SMTP intake's AUTH: a guesser
//! who reconnects keeps the wait it earned.

use std::collections::HashMap;
use std::sync::Mutex;

/// Login throttling: after three failures for a user name (ten for an
/// address, which a whole office may share behind NAT), each further failure
/// doubles the wait (2 s, 4 s, … up to 5 min).
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

const THROTTLE_FREE_FAILURES_USER: u32 = 3;
const THROTTLE_FREE_FAILURES_ADDR: u32 = 10;
const THROTTLE_MAX_DELAY: i64 = 300;

impl Throttle {
    fn delay(key: &str, failures: u32) -> i64 {
        let free = if key.starts_with("addr:") {
            THROTTLE_FREE_FAILURES_ADDR
        } else {
            THROTTLE_FREE_FAILURES_USER
        };
        if failures < free {
            0
        } else {
            (1i64 << (failures - free + 1).min(9)).min(THROTTLE_MAX_DELAY)
        }
    }

    /// Seconds the caller must still wait, if any, for this user or address.
    pub fn wait(&self, keys: &[String], now: i64) -> Option<i64> {
        let map = self.failures.lock().ok()?;
        keys.iter()
            .filter_map(|k| map.get(k).map(|v| (k, v)))
            .map(|(k, (n, last))| last + Self::delay(k, *n) - now)
            .filter(|w| *w > 0)
            .max()
    }

    pub fn fail(&self, keys: &[String], now: i64) {
        if let Ok(mut map) = self.failures.lock() {
            for k in keys {
                let entry = map.entry(k.clone()).or_insert((0, now));
                entry.0 = entry.0.saturating_add(1);
                entry.1 = now;
            }
            // Forget entries that have long cooled down, so the map stays small.
            map.retain(|_, (n, last)| now - *last < THROTTLE_MAX_DELAY * 2 || *n > 20);
        }
    }

    pub fn succeed(&self, keys: &[String]) {
        if let Ok(mut map) = self.failures.lock() {
            for k in keys {
                map.remove(k);
            }
        }
    }

    pub fn keys(user: &str, addr: &str) -> Vec<String> {
        vec![
            format!("user:{}", user.to_ascii_lowercase()),
            format!("addr:{addr}"),
        ]
    }
}
