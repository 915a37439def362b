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
    failures: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// When the last failure was counted: the wait runs from here.
    last: i64,
    /// The `last` of the wait whose refusals were already reported.
    reported: Option<i64>,
}

const THROTTLE_FREE_FAILURES_USER: u32 = 3;
const THROTTLE_FREE_FAILURES_ADDR: u32 = 10;
const THROTTLE_MAX_DELAY: i64 = 300;
/// A persistent guesser (over 20 failures) is remembered this long.
const THROTTLE_LONG_MEMORY: i64 = 24 * 60 * 60;
/// Entries kept at most: anyone may add keys (a new user name or address
/// per request), so the map is capped; the oldest go first.
const MAX_ENTRIES: usize = 10_000;
/// Longest user name kept in a key, in bytes.
pub const MAX_KEY_NAME: usize = 256;

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
            .map(|(k, e)| e.last + Self::delay(k, e.failures) - now)
            .filter(|w| *w > 0)
            .max()
    }

    /// For a refused attempt while throttled: `true` for the first refusal
    /// of the current wait, so that a flood of attempts is reported once per
    /// wait rather than once each.
    pub fn first_refusal(&self, keys: &[String]) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return true;
        };
        let mut first = false;
        for k in keys {
            if let Some(e) = map.get_mut(k)
                && e.reported != Some(e.last)
            {
                e.reported = Some(e.last);
                first = true;
            }
        }
        first
    }

    pub fn fail(&self, keys: &[String], now: i64) {
        if let Ok(mut map) = self.failures.lock() {
            for k in keys {
                let entry = map.entry(k.clone()).or_insert(Entry {
                    failures: 0,
                    last: now,
                    reported: None,
                });
                entry.failures = entry.failures.saturating_add(1);
                entry.last = now;
            }
            // Forget entries that have long cooled down, so the map stays small.
            map.retain(|_, e| {
                let memory = if e.failures > 20 {
                    THROTTLE_LONG_MEMORY
                } else {
                    THROTTLE_MAX_DELAY * 2
                };
                now - e.last < memory
            });
            if map.len() > MAX_ENTRIES {
                // Drop the tenth that failed longest ago, at once, so that a
                // flood does not sort the map on every request.
                let mut lasts: Vec<i64> = map.values().map(|e| e.last).collect();
                let cut = (map.len() - MAX_ENTRIES + MAX_ENTRIES / 10).min(lasts.len() - 1);
                let (_, threshold, _) = lasts.select_nth_unstable(cut);
                let threshold = *threshold;
                map.retain(|k, e| e.last > threshold || keys.contains(k));
            }
        }
    }

    pub fn succeed(&self, keys: &[String]) {
        if let Ok(mut map) = self.failures.lock() {
            for k in keys {
                map.remove(k);
            }
        }
    }

    /// The keys of a login attempt; a user name is cut to [`MAX_KEY_NAME`]
    /// bytes (on a character boundary), so that its key stays small.
    pub fn keys(user: &str, addr: &str) -> Vec<String> {
        vec![
            format!("user:{}", bounded(user).to_ascii_lowercase()),
            format!("addr:{addr}"),
        ]
    }

    /// Entries held (for tests of the cap).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.failures.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// `text` cut to at most [`MAX_KEY_NAME`] bytes on a character boundary.
pub fn bounded(text: &str) -> &str {
    if text.len() <= MAX_KEY_NAME {
        return text;
    }
    let mut end = MAX_KEY_NAME;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_capped_and_keeps_the_newest() {
        let t = Throttle::default();
        for i in 0..(MAX_ENTRIES as i64 + 500) {
            t.fail(
                &Throttle::keys(&format!("u{i}"), "192.0.2.1"),
                1_000 + i / 100,
            );
        }
        assert!(t.len() <= MAX_ENTRIES + 1, "{}", t.len());
        // The address that keeps failing is still throttled.
        assert!(
            t.wait(&Throttle::keys("x", "192.0.2.1"), 1_000 + 105)
                .is_some()
        );
    }

    #[test]
    fn refusals_are_reported_once_per_wait() {
        let t = Throttle::default();
        let keys = Throttle::keys("admin", "192.0.2.1");
        for _ in 0..3 {
            t.fail(&keys, 100);
        }
        assert!(t.wait(&keys, 100).is_some());
        assert!(t.first_refusal(&keys));
        assert!(!t.first_refusal(&keys));
        assert!(!t.first_refusal(&keys));
        // The next failure starts a new wait, reported again.
        t.fail(&keys, 103);
        assert!(t.first_refusal(&keys));
        assert!(!t.first_refusal(&keys));
    }

    #[test]
    fn long_user_names_make_bounded_keys() {
        let long = "あ".repeat(1000);
        let keys = Throttle::keys(&long, "192.0.2.1");
        assert!(keys[0].len() <= MAX_KEY_NAME + "user:".len());
        assert_eq!(Throttle::keys(&format!("{long}x"), "a")[0], keys[0]);
    }

    #[test]
    fn persistent_guessers_are_forgotten_after_a_day() {
        let t = Throttle::default();
        let keys = Throttle::keys("admin", "192.0.2.9");
        for _ in 0..30 {
            t.fail(&keys, 0);
        }
        t.fail(
            &Throttle::keys("other", "198.51.100.1"),
            THROTTLE_LONG_MEMORY - 1,
        );
        assert_eq!(t.len(), 4);
        t.fail(
            &Throttle::keys("other", "198.51.100.1"),
            THROTTLE_LONG_MEMORY + 1,
        );
        assert_eq!(t.len(), 2, "the day-old entries are gone");
    }
}
