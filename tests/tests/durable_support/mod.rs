//! Shared setup for the durable tests: a fresh SQLite file or a fresh PostgreSQL schema per test.
//!
//! PostgreSQL is at `SHENPI_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`). When it
//! cannot be reached the PostgreSQL half of a test is skipped with a message, except under `CI`,
//! where it fails: CI must never pass by skipping.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use shenpi_adapters::store::postgres::PgStore;
use shenpi_adapters::store::sqlite::SqliteStore;
use shenpi_adapters::store::{Db, StoreError};

pub fn pg_url() -> String {
    std::env::var("SHENPI_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{t}", std::process::id())
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn sqlite(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&dir.file("shenpi.db"))
        .await
        .expect("open sqlite")
}

/// A store in a fresh schema, or `None` (skip) when PostgreSQL is unreachable outside CI.
pub async fn postgres(test: &str) -> Option<(PgStore, String)> {
    let schema = unique(&format!("t_{test}"));
    match PgStore::connect(&pg_url(), Some(&schema)).await {
        Ok(s) => Some((s, schema)),
        Err(e @ (StoreError::Db(_) | StoreError::BadUrl(_))) => {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL unreachable under CI ({}): {e}", pg_url());
            }
            eprintln!("SKIPPING PostgreSQL half of {test}: {e}");
            None
        }
        Err(e) => panic!("PostgreSQL setup failed: {e}"),
    }
}

/// Both backends as `Db`, for tests written once.
pub async fn both(test: &str, dir: &TempDir) -> Vec<Db> {
    let mut out = vec![Db::Sqlite(sqlite(dir).await)];
    if let Some((pg, _)) = postgres(test).await {
        out.push(Db::Postgres(pg));
    }
    out
}
