//! Failed-login throttling: after [`MAX_FAILURES`] wrong passwords for one user name within
//! [`WINDOW_MS`], that name's logins are refused (429, without checking the password) until the
//! window has passed since the first of them; a successful login clears the count.
//!
//! Keyed by user name, not address: guessing one account's password from many addresses is what
//! it stops, and offices sit behind one NAT address, where a per-address limit would lock out a
//! whole bureau. The cost is that someone can keep a known name locked for 15 minutes at a time;
//! the tokens of API clients are not affected (they do not log in). Counts live in the node's
//! memory: with several nodes, each allows its own `MAX_FAILURES`.
//!
//! An attempt is counted when it is *reserved*, before its password is hashed, under the same
//! lock that checks the limit: counting only after the check let 64 concurrent guesses all pass
//! the "is it locked?" test while the first were still hashing (48 were checked against a limit
//! of 5). A reserved attempt that turns out right clears the count; one that was never checked
//! (the server was too busy to hash it) is given back.

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
    /// Lower-cased name → (attempts counted as failures, time of the first in the window).
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl LoginThrottle {
    /// Reserves one password check for `name`, counting it as a failure until
    /// [`succeeded`](Self::succeeded) or [`release`](Self::release) says otherwise; or, when the
    /// name is locked, the milliseconds until it may try again.
    pub fn reserve(&self, name: &str, now: i64) -> Result<(), i64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, (_, first)| *first + WINDOW_MS > now);
        }
        let entry = map.entry(key(name)).or_insert((0, now));
        if entry.1 + WINDOW_MS <= now {
            *entry = (0, now);
        }
        if entry.0 >= MAX_FAILURES {
            return Err(entry.1 + WINDOW_MS - now);
        }
        entry.0 += 1;
        Ok(())
    }

    /// Gives back a reserved attempt whose password was not checked.
    pub fn release(&self, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&key(name)) {
            entry.0 = entry.0.saturating_sub(1);
        }
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
            assert_eq!(t.reserve("Zhang", 1000 + i64::from(i)), Ok(()));
        }
        assert_eq!(t.reserve(" ZHANG ", 2000), Err(1000 + WINDOW_MS - 2000));
        assert_eq!(
            t.reserve("li", 2000),
            Ok(()),
            "other names are not affected"
        );
        // A new window starts from zero.
        assert_eq!(t.reserve("zhang", 1000 + WINDOW_MS), Ok(()));
        assert_eq!(t.reserve("zhang", 1001 + WINDOW_MS), Ok(()));
    }

    #[test]
    fn success_clears_the_count_and_an_unchecked_attempt_is_given_back() {
        let t = LoginThrottle::default();
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(t.reserve("wang", 0), Ok(()));
        }
        t.succeeded("wang");
        for _ in 0..MAX_FAILURES {
            assert_eq!(t.reserve("wang", 1), Ok(()));
        }
        t.release("wang");
        assert_eq!(
            t.reserve("wang", 2),
            Ok(()),
            "the released attempt is free again"
        );
        assert!(t.reserve("wang", 3).is_err());
        assert_eq!(minutes(1), 1);
        assert_eq!(minutes(WINDOW_MS), 15);
    }

    #[test]
    fn concurrent_attempts_never_exceed_the_limit() {
        let t = std::sync::Arc::new(LoginThrottle::default());
        let allowed: u32 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| s.spawn(|| u32::from(t.reserve("zhao", 0).is_ok())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(allowed, MAX_FAILURES);
    }
}
