//! Failed-login throttling: after [`MAX_FAILURES`] wrong passwords for one user name within
//! [`WINDOW_MS`], that name's logins are refused (429, without checking the password) until the
//! window has passed since the first of them; a successful login clears the count.
//!
//! Keyed by user name, not address: guessing one account's password from many addresses is what
//! it stops, and offices sit behind one NAT address, where a per-address limit would lock out a
//! whole bureau. The cost is that someone can keep a known name locked for 15 minutes at a time;
//! the tokens of API clients are not affected (they do not log in). Counts live in the node's
//! memory: with several nodes, each allows its own `MAX_FAILURES`.

use std::collections::HashMap;
use std::sync::Mutex;

/// Wrong passwords allowed per name within the window.
pub const MAX_FAILURES: u32 = 5;
/// The window, in milliseconds: 15 minutes.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Names tracked before expired entries are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Default)]
pub struct LoginThrottle {
    /// Lower-cased name → (failures, time of the first in the window).
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl LoginThrottle {
    /// Milliseconds until `name` may try again, if it is locked now.
    pub fn locked_for(&self, name: &str, now: i64) -> Option<i64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let &(count, first) = map.get(&key(name))?;
        let left = first + WINDOW_MS - now;
        (count >= MAX_FAILURES && left > 0).then_some(left)
    }

    pub fn failed(&self, name: &str, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, (_, first)| *first + WINDOW_MS > now);
        }
        let entry = map.entry(key(name)).or_insert((0, now));
        if entry.1 + WINDOW_MS <= now {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn succeeded(&self, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&key(name));
    }
}

fn key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Whole minutes, rounded up, for a message.
pub fn minutes(ms: i64) -> i64 {
    (ms + 59_999) / 60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_fifth_failure_until_the_window_passes() {
        let t = LoginThrottle::default();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.locked_for("Zhang", 1000 + i64::from(i)), None);
            t.failed("zhang", 1000 + i64::from(i));
        }
        assert_eq!(t.locked_for(" ZHANG ", 2000), Some(1000 + WINDOW_MS - 2000));
        assert_eq!(
            t.locked_for("li", 2000),
            None,
            "other names are not affected"
        );
        assert_eq!(t.locked_for("zhang", 1000 + WINDOW_MS), None);
        // A new window starts from zero.
        t.failed("zhang", 1000 + WINDOW_MS);
        assert_eq!(t.locked_for("zhang", 1001 + WINDOW_MS), None);
    }

    #[test]
    fn success_clears_the_count() {
        let t = LoginThrottle::default();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed("wang", 0);
        }
        t.succeeded("wang");
        t.failed("wang", 1);
        assert_eq!(t.locked_for("wang", 2), None);
        assert_eq!(minutes(1), 1);
        assert_eq!(minutes(WINDOW_MS), 15);
    }
}
