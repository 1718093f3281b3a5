//! Shared setup for the durable tests: a fresh SQLite file or a fresh PostgreSQL schema per test.
//!
//! PostgreSQL is at `SHENPI_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`). When it
//! cannot be reached the PostgreSQL half of a test is skipped with a message, except under `CI`,
//! where it fails: CI must never pass by skipping.
//!
//! A test's schema is dropped when the test is done with it ([`PgSchema`]). A test that panics
//! keeps its schema for a look at the data, and a killed run cannot clean up: so the first
//! PostgreSQL test of each process also drops the test schemas created more than an hour ago
//! (their names carry their creation time; younger ones may belong to a run going on now).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use shenpi_adapters::bus::{CommandBus, Submit};
use shenpi_adapters::engine_machine::EngineMachine;
use shenpi_adapters::store::postgres::PgStore;
use shenpi_adapters::store::sqlite::SqliteStore;
use shenpi_adapters::store::{Db, InstanceMeta, StoreError};
use shenpi_adapters::testkit::{Counter, CounterCommand, counter_meta};
use shenpi_engine::runtime::{Actor, Command, CommandEnvelope};
use sqlx::Connection;

/// Names of the test schemas: `shenpi_test_<unix seconds>_<pid>_<n>_<test>`.
const SCHEMA_PREFIX: &str = "shenpi_test_";
/// Test schemas older than this are leftovers of finished or killed runs.
const LEFTOVER_AFTER_SECS: u64 = 3600;

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

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A PostgreSQL schema that lives as long as this value: dropped with everything in it when
/// the value is dropped (unless the test is panicking). Derefs to the schema's name.
pub struct PgSchema(String);

impl PgSchema {
    /// A fresh name; nothing is created (and nothing dropped) until the value is made.
    fn name_for(test: &str) -> String {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let test: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = format!(
            "{SCHEMA_PREFIX}{}_{}_{n}_{test}",
            unix_secs(),
            std::process::id()
        );
        // PostgreSQL cuts names at 63 bytes; cut the test name, never the unique part.
        name.truncate(63);
        name
    }
}

impl std::ops::Deref for PgSchema {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PgSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "keeping PostgreSQL schema {} of a failed test (dropped by a run an hour from now)",
                self.0
            );
            return;
        }
        // Drop runs inside the test's tokio runtime, where blocking on a future panics: the
        // DROP runs on a thread of its own with a small runtime of its own, joined here.
        let name = std::mem::take(&mut self.0);
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(drop_schemas(vec![name]))
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop a test schema (a later run will): {e}"),
            Err(_) => eprintln!("dropping a test schema panicked (a later run will drop it)"),
        }
    }
}

/// `DROP SCHEMA ... CASCADE` for each name, on a connection of its own. A session still
/// holding a lock in a schema makes its DROP give up after a while instead of hanging the test.
async fn drop_schemas(names: Vec<String>) -> Result<(), String> {
    let mut conn = sqlx::PgConnection::connect(&pg_url())
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query("SET lock_timeout = '10s'")
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    for name in names {
        // Only names this module made: they are plain identifiers.
        if !name.starts_with(SCHEMA_PREFIX)
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE"
        )))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    }
    conn.close().await.map_err(|e| e.to_string())
}

/// Drops the test schemas created more than an hour ago; once per process.
async fn drop_leftover_schemas() {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let Ok(mut conn) = sqlx::PgConnection::connect(&pg_url()).await else {
            return;
        };
        let names: Vec<(String,)> =
            sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
                .bind(SCHEMA_PREFIX)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
        let _ = conn.close().await;
        let cutoff = unix_secs().saturating_sub(LEFTOVER_AFTER_SECS);
        let old: Vec<String> = names
            .into_iter()
            .map(|(n,)| n)
            .filter(|n| {
                n.strip_prefix(SCHEMA_PREFIX)
                    .and_then(|rest| rest.split('_').next())
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|created| created < cutoff)
            })
            .collect();
        if old.is_empty() {
            return;
        }
        let n = old.len();
        match drop_schemas(old).await {
            Ok(()) => eprintln!("dropped {n} leftover test schemas"),
            Err(e) => eprintln!("could not drop leftover test schemas: {e}"),
        }
    })
    .await;
}

/// A plain connection to the test database, for a test that sets a schema up by hand, or
/// `None` (skip) when PostgreSQL is unreachable outside CI.
pub async fn pg_admin(test: &str) -> Option<sqlx::PgConnection> {
    match sqlx::PgConnection::connect(&pg_url()).await {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPING PostgreSQL half of {test}: {e}");
            None
        }
        Err(e) => panic!("PostgreSQL unreachable under CI ({}): {e}", pg_url()),
    }
}

/// A store in a fresh schema, or `None` (skip) when PostgreSQL is unreachable outside CI. The
/// schema is dropped when the returned [`PgSchema`] is.
pub async fn postgres(test: &str) -> Option<(PgStore, PgSchema)> {
    let schema = PgSchema::name_for(test);
    match PgStore::connect(&pg_url(), Some(&schema)).await {
        Ok(s) => {
            drop_leftover_schemas().await;
            Some((s, PgSchema(schema)))
        }
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

/// Both backends as `Db`, for tests written once: `for db in both(..).await { .. }`. The
/// PostgreSQL schema is dropped when the loop is over.
pub async fn both(test: &str, dir: &TempDir) -> Backends {
    let mut dbs = vec![Db::Sqlite(sqlite(dir).await)];
    let mut schema = None;
    if let Some((pg, s)) = postgres(test).await {
        dbs.push(Db::Postgres(pg));
        schema = Some(s);
    }
    Backends { dbs, schema }
}

/// The stores of [`both`], with the schema the PostgreSQL one lives in.
pub struct Backends {
    dbs: Vec<Db>,
    schema: Option<PgSchema>,
}

impl IntoIterator for Backends {
    type Item = Db;
    type IntoIter = BackendsIter;
    fn into_iter(self) -> BackendsIter {
        BackendsIter {
            dbs: self.dbs.into_iter(),
            _schema: self.schema,
        }
    }
}

/// Iterates the stores; dropping it (the end of the `for` loop) drops the schema.
pub struct BackendsIter {
    dbs: std::vec::IntoIter<Db>,
    _schema: Option<PgSchema>,
}

impl Iterator for BackendsIter {
    type Item = Db;
    fn next(&mut self) -> Option<Db> {
        self.dbs.next()
    }
}

/// A counter command for an existing instance, without key or expected version.
pub fn cmd(instance: &str, c: CounterCommand) -> Submit<CounterCommand> {
    Submit {
        instance: instance.into(),
        start: None,
        key: None,
        expected_version: None,
        command: c,
        audit: None,
        project: None,
    }
}

/// Creates counter instance `id`.
pub async fn start(bus: &CommandBus<Counter>, id: &str) {
    bus.submit(Submit {
        start: Some(counter_meta(id)),
        ..cmd(id, CounterCommand::Start)
    })
    .await
    .unwrap();
}

/// The applicant starts instance `id` of a published definition with `project`; returns the
/// instance's metadata.
pub async fn apply_for(
    bus: &CommandBus<EngineMachine>,
    id: &str,
    (workflow_id, def_version): (&str, i64),
    project: serde_json::Value,
) -> InstanceMeta {
    let meta = InstanceMeta {
        id: id.into(),
        workflow_id: workflow_id.into(),
        def_version,
        project: project.clone(),
    };
    bus.submit(Submit {
        instance: id.into(),
        start: Some(meta.clone()),
        key: Some(format!("start-{id}")),
        expected_version: None,
        command: CommandEnvelope {
            actor: Actor::new("applicant", None, &["applicant"]),
            command: Command::Start {
                project,
                channel: None,
            },
        },
        audit: None,
        project: None,
    })
    .await
    .unwrap();
    meta
}
