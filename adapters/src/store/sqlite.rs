//! The embedded SQLite backend: one file, WAL journal, `synchronous=FULL` (every commit is on disk
//! before it is acknowledged).
//!
//! SQLite has one writer at a time whatever we do, so commits take the write lock up front
//! (`BEGIN IMMEDIATE`) instead of upgrading a read transaction, which could fail with `SQLITE_BUSY`
//! half-way; readers go on in parallel thanks to WAL. Claims (timers, outbox) are single
//! `UPDATE ... RETURNING` statements, atomic under that lock, so no `SKIP LOCKED` is needed.
//!
//! Group commits do not go through sqlx: they run on a connection and thread of their own
//! (`sqlite_commit.rs`), one message per batch; everything else uses the sqlx pool. The SQL this
//! backend shares with PostgreSQL is in `sql.rs`; here is only what SQLite says its own way.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::sql::{
    Arg, Backend, ConnOf, TimerClaim, bind_arg, driver_calls, inbox_where, outbox_cols,
};
use super::sqlite_commit::CommitThread;
use super::*;

/// The embedded migrations (the files under `adapters/migrations/sqlite/` and `shared/`).
pub fn migrator() -> Migrator {
    super::migrations::migrator(super::migrations::Dialect::Sqlite)
}

/// The page cache of each pool connection, in KiB (negative: SQLite's unit for KiB).
pub(crate) const PAGE_CACHE: &str = "-65536";

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The group commits' own connection (see `sqlite_commit`).
    writer: CommitThread,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the migrations (and the chaining of
    /// old histories after migration 18, `chain::backfill`).
    pub async fn open(path: &str) -> Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(StoreError::Db)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .pragma("temp_store", "memory")
            // The hot pages (open timers, recent events, projections) stay in memory instead
            // of being re-read through the OS on every commit.
            .pragma("cache_size", PAGE_CACHE)
            .pragma("mmap_size", "268435456")
            // Checkpoints run on a background connection (below), not inside the writer's
            // commits; this is only the safety net if that task is not running.
            .pragma("wal_autocheckpoint", "20000")
            .statement_cache_capacity(256);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(StoreError::Db)?;
        migrator().run(&pool).await?;
        // Copy the WAL back into the database file off the writer's path: a PASSIVE checkpoint
        // never blocks writers, and runs on its own connection thread.
        let bg = pool.clone();
        tokio::spawn(async move {
            while !bg.is_closed() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&bg)
                    .await
                {
                    tracing::debug!("checkpoint: {e}");
                }
            }
        });
        let writer = CommitThread::open(path)?;
        let store = SqliteStore { pool, writer };
        // Histories written before the hash chain are chained once (migration 18).
        super::chain::backfill(&store).await?;
        Ok(store)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Claims due timers by instance (see [`SqliteStore::claim_timers`]).
/// `w`: the window of claimable due rows (pending, or claimed under an expired lease;
/// refused timers held until a retry are not claimable).
/// `free`: those of instances no other node holds a live claim on, with their
/// instance's first due and row count. `run`: how many rows the instances before this
/// row's instance hold (instances ordered by first due); an instance is taken while
/// that leaves room under the limit.
const CLAIM_TIMERS: &str = "
        UPDATE timers SET state = 'claimed', claimed_by = $1, lease_until = $2
        WHERE rowid IN (
            WITH w AS (
                SELECT rowid AS id, instance, due FROM timers
                WHERE state IN ('pending', 'claimed') AND retry_at IS NULL AND due <= $3
                  AND (state = 'pending' OR lease_until < $3)
                ORDER BY due LIMIT $5
            ), free AS (
                SELECT id, instance, due,
                       min(due) OVER (PARTITION BY instance) AS first_due,
                       count(*) OVER (PARTITION BY instance) AS cnt
                FROM w
                WHERE NOT EXISTS (SELECT 1 FROM timers l
                                   WHERE l.instance = w.instance AND l.state = 'claimed'
                                     AND l.lease_until >= $3 AND l.claimed_by IS NOT $1)
            ), run AS (
                SELECT id, instance, due, first_due,
                       count(*) OVER (ORDER BY first_due, instance) - cnt AS before
                FROM free
            )
            SELECT id FROM run WHERE before < $4
            ORDER BY first_due, instance, due LIMIT $4)
        RETURNING instance, timer_id, due, kind";

impl SqliteStore {
    // Lists are bound as one JSON array, read with `json_each`, so the statement text does not
    // depend on how many items there are.
    bind_arg!(sqlx::Sqlite, |q, list| q
        .bind(serde_json::to_string(list).unwrap_or_else(|_| "[]".into())));
}

impl Backend for SqliteStore {
    type Db = sqlx::Sqlite;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// WAL gives the transaction one snapshot from its first read.
    const BEGIN_READ: &'static str = "BEGIN";
    const KEYS: &'static str =
        "SELECT key, instance, CAST(result AS TEXT), request FROM idempotency
        WHERE key IN (SELECT value FROM json_each($1))";
    const TIMER_STATES: &'static str = "SELECT t.instance, t.timer_id, t.state FROM timers t
        JOIN (SELECT i.value AS instance, d.value AS timer_id
              FROM json_each($1) i JOIN json_each($2) d ON d.key = i.key) u
          ON t.instance = u.instance AND t.timer_id = u.timer_id";
    /// The addressees are a JSON array read with `json_each` (SQLite indexes no array: the
    /// open tasks are scanned).
    const INBOX: &'static str = inbox_where!(
        "EXISTS (SELECT 1 FROM json_each(addressees) a WHERE a.value = $1)
         OR (assignee IS NULL AND department IN (SELECT value FROM json_each($2)))",
        "$3"
    );
    const INBOX_FOR: &'static str = inbox_where!(
        "EXISTS (SELECT 1 FROM json_each(addressees) a
                 WHERE a.value IN (SELECT value FROM json_each($1)))",
        "$2"
    );
    const OUTBOX_FOR: &'static str = concat!(
        "SELECT ",
        outbox_cols!(),
        " FROM outbox WHERE recipient IN (SELECT value FROM json_each($1))
         ORDER BY created_at DESC, id LIMIT $2"
    );
    /// One `UPDATE`, atomic under SQLite's single writer: no `SKIP LOCKED` needed.
    const CLAIM_OUTBOX: &'static str = concat!(
        "UPDATE outbox SET state = 'sending', claimed_by = $1, lease_until = $2
         WHERE rowid IN (SELECT rowid FROM outbox
             WHERE state IN ('pending', 'sending') AND next_attempt_at <= $3
               AND (state = 'pending' OR lease_until < $3)
             ORDER BY next_attempt_at LIMIT $4)
         RETURNING ",
        outbox_cols!()
    );

    driver_calls!();

    /// Claims by instance, like the PostgreSQL backend (see there for why): due timers grouped
    /// by instance, earliest instance first, up to `limit`, skipping instances another node
    /// holds a live claim on. One statement, so two claimers (two processes on one file; SQLite
    /// has one writer at a time) never interleave: the second sees the first's claims.
    ///
    /// It looks ahead over the first `2 × limit` claimable due rows only, so a poll costs
    /// O(`limit`) however long the backlog. When everything due fits in that window (the steady
    /// state), each instance taken is taken whole but the last, which may be cut at the limit.
    /// In a longer backlog an instance's timers beyond the window are left for the next claim;
    /// the claim on its first ones keeps other nodes off it meanwhile.
    async fn claim_timers(&self, claim: TimerClaim<'_>) -> Result<Vec<SqliteRow>> {
        let args = [
            Arg::Text(claim.node),
            Arg::Int(claim.lease_until),
            Arg::Int(claim.now),
            Arg::Int(claim.limit),
            Arg::Int(claim.limit.saturating_mul(2)),
        ];
        let mut c = self.pool.acquire().await?;
        Self::rows(&mut c, CLAIM_TIMERS, &args).await
    }

    async fn write_batch(&self, b: &Batch) -> Result<()> {
        self.writer.commit(b.clone()).await
    }

    async fn write_owned_batch(&self, b: Batch) -> Result<()> {
        self.writer.commit(b).await
    }

    /// Outside a group commit (reports, `enqueue`) there are few: one statement each.
    async fn insert_outbox(conn: &mut ConnOf<Self>, rows: &[OutboxRow]) -> Result<()> {
        const SQL: &str = "INSERT INTO outbox (id, instance, channel, recipient, template,
             payload, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO NOTHING";
        for o in rows {
            let payload = o.payload.to_string();
            let args = [
                Arg::Text(&o.id),
                Arg::OptText(o.instance.as_deref()),
                Arg::Text(&o.channel),
                Arg::Text(&o.recipient),
                Arg::Text(&o.template),
                Arg::Text(&payload),
                Arg::Int(o.next_attempt_at),
                Arg::Int(o.created_at),
            ];
            Self::execute(conn, SQL, &args).await?;
        }
        Ok(())
    }
}
