//! Password hashes: argon2id at one set of parameters ([`hash`], [`verify`]), and the bounded
//! pool every login checks its password on ([`Hasher`]).
//!
//! A check costs about 19 MiB and tens of milliseconds of one core, by design. Run on the async
//! workers, or on as many blocking threads as there are logins, a flood of failed logins starved
//! every other request (`/healthz` at a 70 ms median) and held a gigabyte: 128 clients meant
//! 128 checks at once. So checks run on the blocking pool behind a semaphore of `workers` permits
//! (by default one per core); an attempt that cannot get one within `wait` is refused as
//! [`Busy`] (429 `too_many_requests` with `Retry-After`) rather than queued without end.
//!
//! Bounding the checks bounds what is in use, not what the process keeps: glibc's malloc raises
//! its mmap threshold to the size of the first large block freed, so from then on every 19 MiB
//! argon2 block came from the per-thread arenas and stayed there when freed (measured: a flood of
//! 300 failed logins on two workers left the server at 894 MiB, 16 times its start).
//! [`return_hash_memory_to_the_system`] pins the threshold, so such blocks are mapped and
//! unmapped each time (the same flood: +40 MiB at the peak, +2 MiB after; docs/adr/0004).
//!
//! A name that does not exist is checked against a dummy hash with the same parameters, made
//! once when the pool is built, on the same pool, so that neither the answer's time nor its
//! queueing says whether the name exists.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("no randomness available: {0}")]
    Random(String),
    #[error("password hashing failed: {0}")]
    Argon(String),
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of a new salted hash.
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Argon(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon(e.to_string()))
}

/// Whether `password` matches the stored PHC string; false for a string that is not one.
/// Blocks for the whole argon2 computation: call it through [`Hasher::verify`] in the server.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Makes the allocator give a password check's memory back to the system when the check ends
/// (see the module doc). Call it once at the start of the process, before other threads run.
pub fn return_hash_memory_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// Blocks from this size on are mapped on their own: argon2's 19 MiB, not the small
        /// allocations of a request.
        const MMAP_THRESHOLD: libc::c_int = 4 << 20;
        // SAFETY: `mallopt` only sets a tuning parameter of glibc's allocator; it takes no
        // pointers, and a refusal (return 0) leaves the default behaviour, which is still
        // correct, only hungrier.
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if set == 0 {
            tracing::warn!("could not set malloc's mmap threshold; freed hash memory may be kept");
        }
    }
}

/// Returns the allocator's free memory to the system (glibc keeps freed pages of its arenas
/// mapped until asked): called when the password pool falls idle after a burst.
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers and only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How many checks run at once and how long an attempt waits for its turn.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub workers: usize,
    pub wait: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            wait: Duration::from_secs(2),
        }
    }
}

/// The server was too busy checking other passwords to check this one in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// Seconds a client should wait before trying again (the `Retry-After` header).
    pub retry_after_secs: u64,
}

impl Busy {
    /// The sentence a person reads, on the login page and in the API's `message`.
    pub fn message(&self) -> String {
        format!(
            "登录请求过多，服务器正忙，请{}秒后再试",
            self.retry_after_secs
        )
    }

    /// Adds the `Retry-After` header to a refusal (the API's JSON or the login page).
    pub fn retry_after(&self, mut resp: Response) -> Response {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs),
        );
        resp
    }
}

impl IntoResponse for Busy {
    fn into_response(self) -> Response {
        let e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            self.message(),
        );
        self.retry_after(e.into_response())
    }
}

/// The bounded pool of password checks.
#[derive(Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    workers: usize,
    wait: Duration,
    /// Checked against when the name does not exist (see the module doc).
    dummy: Arc<str>,
}

impl Hasher {
    pub fn new(limits: Limits) -> Result<Hasher, HashError> {
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).map_err(|e| HashError::Random(e.to_string()))?;
        let dummy = hash(&format!("{secret:?}"))?;
        Ok(Hasher {
            permits: Arc::new(Semaphore::new(limits.workers.max(1))),
            workers: limits.workers.max(1),
            wait: limits.wait,
            dummy: dummy.into(),
        })
    }

    /// Checks `password` against the stored hash, or against the dummy hash when there is none
    /// (`false` then, at the same cost). `Busy` when no worker was free within the wait.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, Busy> {
        let busy = Busy {
            retry_after_secs: self.wait.as_secs().max(1),
        };
        let permit =
            match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => return Err(busy),
            };
        let known = stored.is_some();
        let stored: Arc<str> = stored.map_or_else(|| self.dummy.clone(), Arc::from);
        let password = password.to_string();
        // The permit moves into the blocking task: a client that hangs up does not free its
        // worker before the hash it started is done, so no more than `workers` ever run.
        let (permits, workers) = (self.permits.clone(), self.workers);
        let matched = tokio::task::spawn_blocking(move || {
            let matched = verify(&password, &stored);
            drop(permit);
            // The last check of a burst: hand the allocator's free pages back, so a flood of
            // logins leaves the process about as large as before it.
            if permits.available_permits() == workers {
                give_back_free_memory();
            }
            matched
        })
        .await
        .unwrap_or(false);
        Ok(known && matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let h = hash("s3cret").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("s3cret", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("s3cret", "not a hash"));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let h = Hasher::new(Limits::default()).expect("pool");
        let dummy = PasswordHash::new(&h.dummy).expect("the dummy hash parses");
        let real_text = hash("x").expect("hash");
        let real = PasswordHash::new(&real_text).expect("parses");
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params, "same memory, time and lanes");
        assert_eq!(dummy.salt.map(|s| s.len()), real.salt.map(|s| s.len()));
    }

    #[tokio::test]
    async fn an_unknown_name_never_matches() {
        let h = Hasher::new(Limits::default()).expect("pool");
        assert_eq!(h.verify("anything", None).await, Ok(false));
        let stored = hash("right").expect("hash");
        assert_eq!(h.verify("right", Some(&stored)).await, Ok(true));
        assert_eq!(h.verify("wrong", Some(&stored)).await, Ok(false));
    }
}
