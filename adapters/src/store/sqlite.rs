//! The embedded SQLite backend: one file, WAL journal, `synchronous=FULL` (every commit is on disk
//! before it is acknowledged).
//!
//! SQLite has one writer at a time whatever we do, so commits take the write lock up front
//! (`BEGIN IMMEDIATE`) instead of upgrading a read transaction, which could fail with `SQLITE_BUSY`
//! half-way; readers go on in parallel thanks to WAL. Claims (timers, outbox) are single
//! `UPDATE ... RETURNING` statements, atomic under that lock, so no `SKIP LOCKED` is needed.
//!
//! Group commits do not go through sqlx: they run on a connection and thread of their own
//! (`sqlite_commit.rs`), one message per batch; everything else uses the sqlx pool.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqlSafeStr};

use super::sqlite_commit::CommitThread;
use super::*;

/// The embedded migrations (the files under `adapters/migrations/sqlite/`).
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "durable".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_durable.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "timer claims by instance".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0002_timer_claims_by_instance.sql")
                .into_sql_str(),
            false,
        ),
        // 3 is PostgreSQL's write-path change; the numbers of changes made on both stay equal.
        Migration::new(
            4,
            "refused timers".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0004_refused_timers.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "calendar revisions".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0005_calendar_revisions.sql").into_sql_str(),
            false,
        ),
    ])
}

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The group commits' own connection (see `sqlite_commit`).
    writer: CommitThread,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the migrations.
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
            .pragma("cache_size", "-65536")
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
        Ok(SqliteStore { pool, writer })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn definition_row(r: &SqliteRow) -> Result<DefinitionRow> {
    Ok(DefinitionRow {
        workflow_id: r.try_get(0)?,
        version: r.try_get(1)?,
        yaml: r.try_get(2)?,
        hash: r.try_get(3)?,
        published_at: r.try_get(4)?,
    })
}

const INBOX_COLS: &str = "instance, task_id, workflow_id, node, stage, assignee, department, colour, due, priority, supervised, opened_at";

fn inbox_row(r: &SqliteRow) -> Result<InboxRow> {
    Ok(InboxRow {
        instance: r.try_get(0)?,
        task_id: r.try_get(1)?,
        workflow_id: r.try_get(2)?,
        node: r.try_get(3)?,
        stage: r.try_get(4)?,
        assignee: r.try_get(5)?,
        department: r.try_get(6)?,
        colour: r.try_get(7)?,
        due: r.try_get(8)?,
        priority: r.try_get(9)?,
        supervised: r.try_get(10)?,
        opened_at: r.try_get(11)?,
    })
}

const OUTBOX_COLS: &str = "id, instance, channel, recipient, template, payload, next_attempt_at, created_at, state, tries, last_error";

fn outbox_message(r: &SqliteRow) -> Result<OutboxMessage> {
    let payload: String = r.try_get(5)?;
    Ok(OutboxMessage {
        row: OutboxRow {
            id: r.try_get(0)?,
            instance: r.try_get(1)?,
            channel: r.try_get(2)?,
            recipient: r.try_get(3)?,
            template: r.try_get(4)?,
            payload: parse_json(&payload)?,
            next_attempt_at: r.try_get(6)?,
            created_at: r.try_get(7)?,
        },
        state: r.try_get(8)?,
        tries: r.try_get(9)?,
        last_error: r.try_get(10)?,
    })
}

fn counts(rows: Vec<SqliteRow>) -> Result<Vec<(String, i64)>> {
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
                r.try_get(1)?,
            ))
        })
        .collect()
}

impl DefinitionStore for SqliteStore {
    async fn publish(
        &self,
        workflow_id: &str,
        yaml: &str,
        hash: &str,
        now: Millis,
    ) -> Result<DefinitionRow> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let latest = sqlx::query(
            "SELECT workflow_id, version, yaml, hash, published_at FROM definitions
             WHERE workflow_id = ?1 ORDER BY version DESC LIMIT 1",
        )
        .bind(workflow_id)
        .fetch_optional(&mut *tx)
        .await?;
        let latest = latest.as_ref().map(definition_row).transpose()?;
        if let Some(l) = latest.as_ref().filter(|l| l.hash == hash) {
            return Ok(l.clone());
        }
        let row = DefinitionRow {
            workflow_id: workflow_id.to_string(),
            version: latest.map_or(1, |l| l.version + 1),
            yaml: yaml.to_string(),
            hash: hash.to_string(),
            published_at: now,
        };
        sqlx::query(
            "INSERT INTO definitions (workflow_id, version, yaml, hash, published_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&row.workflow_id)
        .bind(row.version)
        .bind(&row.yaml)
        .bind(&row.hash)
        .bind(row.published_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn definition(&self, workflow_id: &str, version: i64) -> Result<Option<DefinitionRow>> {
        sqlx::query(
            "SELECT workflow_id, version, yaml, hash, published_at FROM definitions
             WHERE workflow_id = ?1 AND version = ?2",
        )
        .bind(workflow_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(definition_row)
        .transpose()
    }

    async fn latest_definition(&self, workflow_id: &str) -> Result<Option<DefinitionRow>> {
        sqlx::query(
            "SELECT workflow_id, version, yaml, hash, published_at FROM definitions
             WHERE workflow_id = ?1 ORDER BY version DESC LIMIT 1",
        )
        .bind(workflow_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(definition_row)
        .transpose()
    }
}

impl EventStore for SqliteStore {
    async fn load(
        &self,
        instance: &str,
        after_seq: i64,
    ) -> Result<Option<(InstanceRow, Vec<EventRow>)>> {
        // One read transaction so the instance row and its events are from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let Some(r) = sqlx::query(
            "SELECT id, workflow_id, def_version, project, version, status, stage, channel
             FROM instances WHERE id = ?1",
        )
        .bind(instance)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let project: String = r.try_get(3)?;
        let row = InstanceRow {
            meta: InstanceMeta {
                id: r.try_get(0)?,
                workflow_id: r.try_get(1)?,
                def_version: r.try_get(2)?,
                project: parse_json(&project)?,
            },
            version: r.try_get(4)?,
            status: r.try_get(5)?,
            stage: r.try_get(6)?,
            channel: r.try_get(7)?,
        };
        let events = sqlx::query(
            "SELECT instance, seq, type, body, recorded_at FROM events
             WHERE instance = ?1 AND seq > ?2 ORDER BY seq",
        )
        .bind(instance)
        .bind(after_seq)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(EventRow {
                instance: r.try_get(0)?,
                seq: r.try_get(1)?,
                kind: r.try_get(2)?,
                body: r.try_get(3)?,
                recorded_at: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Some((row, events)))
    }

    async fn lookup_keys(&self, keys: &[String]) -> Result<Vec<IdempotencyRow>> {
        let mut out = Vec::new();
        for key in keys {
            if let Some(r) =
                sqlx::query("SELECT key, instance, result FROM idempotency WHERE key = ?1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?
            {
                out.push(IdempotencyRow {
                    key: r.try_get(0)?,
                    instance: r.try_get(1)?,
                    result: r.try_get(2)?,
                });
            }
        }
        Ok(out)
    }

    async fn timer_states(
        &self,
        timers: &[(String, String)],
    ) -> Result<Vec<(String, String, TimerState)>> {
        let mut out = Vec::new();
        for (instance, id) in timers {
            if let Some(r) =
                sqlx::query("SELECT state FROM timers WHERE instance = ?1 AND timer_id = ?2")
                    .bind(instance)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            {
                let s: String = r.try_get(0)?;
                let st = TimerState::parse(&s)
                    .ok_or_else(|| StoreError::Corrupt(format!("timer state `{s}`")))?;
                out.push((instance.clone(), id.clone(), st));
            }
        }
        Ok(out)
    }

    async fn commit(&self, b: &Batch) -> Result<()> {
        self.writer.commit(b.clone()).await
    }

    async fn commit_owned(&self, b: Batch) -> Result<()> {
        self.writer.commit(b).await
    }

    async fn count_events(&self, instance: Option<&str>) -> Result<i64> {
        let r = sqlx::query("SELECT count(*) FROM events WHERE ?1 IS NULL OR instance = ?1")
            .bind(instance)
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get(0)?)
    }
}

/// Outbox rows written outside a group commit (reports, `enqueue`): few, one statement each.
async fn insert_outbox(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    rows: &[OutboxRow],
) -> Result<()> {
    for o in rows {
        sqlx::query(
            "INSERT INTO outbox (id, instance, channel, recipient, template, payload,
             next_attempt_at, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&o.id)
        .bind(&o.instance)
        .bind(&o.channel)
        .bind(&o.recipient)
        .bind(&o.template)
        .bind(o.payload.to_string())
        .bind(o.next_attempt_at)
        .bind(o.created_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl TimerStore for SqliteStore {
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
    async fn claim_due(
        &self,
        node: &str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedTimer>> {
        /// `w`: the window of claimable due rows (pending, or claimed under an expired lease;
        /// refused timers held until a retry are not claimable).
        /// `free`: those of instances no other node holds a live claim on, with their
        /// instance's first due and row count. `run`: how many rows the instances before this
        /// row's instance hold (instances ordered by first due); an instance is taken while
        /// that leaves room under the limit.
        const CLAIM_TIMERS: &str = "
            UPDATE timers SET state = 'claimed', claimed_by = ?1, lease_until = ?2
            WHERE rowid IN (
                WITH w AS (
                    SELECT rowid AS id, instance, due FROM timers
                    WHERE state IN ('pending', 'claimed') AND retry_at IS NULL AND due <= ?3
                      AND (state = 'pending' OR lease_until < ?3)
                    ORDER BY due LIMIT ?5
                ), free AS (
                    SELECT id, instance, due,
                           min(due) OVER (PARTITION BY instance) AS first_due,
                           count(*) OVER (PARTITION BY instance) AS cnt
                    FROM w
                    WHERE NOT EXISTS (SELECT 1 FROM timers l
                                       WHERE l.instance = w.instance AND l.state = 'claimed'
                                         AND l.lease_until >= ?3 AND l.claimed_by IS NOT ?1)
                ), run AS (
                    SELECT id, instance, due, first_due,
                           count(*) OVER (ORDER BY first_due, instance) - cnt AS before
                    FROM free
                )
                SELECT id FROM run WHERE before < ?4
                ORDER BY first_due, instance, due LIMIT ?4)
            RETURNING instance, timer_id, due, kind";

        if limit <= 0 {
            return Ok(Vec::new());
        }
        let lease_until = now.saturating_add(lease_ms);
        let rows = sqlx::query(CLAIM_TIMERS)
            .bind(node)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .bind(limit.saturating_mul(2))
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(ClaimedTimer {
                    timer: TimerRow {
                        instance: r.try_get(0)?,
                        timer_id: r.try_get(1)?,
                        due: r.try_get(2)?,
                        kind: r.try_get(3)?,
                    },
                    lease_until,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|c| c.timer.due);
        Ok(out)
    }

    async fn next_due(&self) -> Result<Option<Millis>> {
        let r = sqlx::query(
            "SELECT min(due) FROM timers
             WHERE state IN ('pending', 'claimed') AND retry_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(r.try_get(0)?)
    }

    async fn timer_counts(&self) -> Result<Vec<(String, i64)>> {
        counts(sqlx::query(TIMER_COUNTS).fetch_all(&self.pool).await?)
    }

    async fn refused_timers(&self, limit: i64) -> Result<Vec<RefusedTimer>> {
        sqlx::query(
            "SELECT t.instance, t.timer_id, t.due, t.kind, t.refused_code, t.refused_message,
                    t.refused_at, t.retry_at, i.project
             FROM timers t LEFT JOIN instances i ON i.id = t.instance
             WHERE t.state IN ('pending', 'claimed') AND t.refused_at IS NOT NULL
             ORDER BY t.refused_at, t.instance, t.timer_id LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let project: Option<String> = r.try_get(8)?;
            Ok(RefusedTimer {
                timer: TimerRow {
                    instance: r.try_get(0)?,
                    timer_id: r.try_get(1)?,
                    due: r.try_get(2)?,
                    kind: r.try_get(3)?,
                },
                code: r.try_get::<Option<String>, _>(4)?.unwrap_or_default(),
                message: r.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
                refused_at: r.try_get(6)?,
                retry_at: r.try_get(7)?,
                project: project
                    .as_deref()
                    .map(parse_json)
                    .transpose()?
                    .unwrap_or_default(),
            })
        })
        .collect()
    }

    async fn retry_refused_timers(&self, retry_by: Millis) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE timers SET retry_at = NULL WHERE retry_at IS NOT NULL AND retry_at <= ?1",
        )
        .bind(retry_by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

impl OutboxStore for SqliteStore {
    async fn claim_outbox(
        &self,
        node: &str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>> {
        let sql = format!(
            "UPDATE outbox SET state = 'sending', claimed_by = ?1, lease_until = ?2
             WHERE rowid IN (SELECT rowid FROM outbox
                 WHERE state IN ('pending', 'sending') AND next_attempt_at <= ?3
                   AND (state = 'pending' OR lease_until < ?3)
                 ORDER BY next_attempt_at LIMIT ?4)
             RETURNING {OUTBOX_COLS}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(node)
            .bind(now.saturating_add(lease_ms))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(outbox_message)
            .collect()
    }

    async fn mark_delivered(&self, id: &str, now: Millis) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET state = 'delivered', delivered_at = ?1, tries = tries + 1,
             claimed_by = NULL, lease_until = NULL WHERE id = ?2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: Millis,
        dead: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET state = ?1, tries = tries + 1, last_error = ?2, next_attempt_at = ?3,
             claimed_by = NULL, lease_until = NULL WHERE id = ?4",
        )
        .bind(if dead { "dead" } else { "pending" })
        .bind(error)
        .bind(next_attempt_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn enqueue(&self, rows: &[OutboxRow]) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        insert_outbox(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_in_state(&self, state: &str, limit: i64) -> Result<Vec<OutboxMessage>> {
        let sql = format!(
            "SELECT {OUTBOX_COLS} FROM outbox WHERE state = ?1 ORDER BY created_at, id LIMIT ?2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(outbox_message)
            .collect()
    }
}

impl ProjectionStore for SqliteStore {
    async fn inbox(
        &self,
        assignee: Option<&str>,
        departments: &[String],
        limit: i64,
    ) -> Result<Vec<InboxRow>> {
        let depts = serde_json::to_string(departments).unwrap_or_else(|_| "[]".into());
        let sql = format!(
            "SELECT {INBOX_COLS} FROM inbox
             WHERE assignee = ?1 OR (assignee IS NULL AND department IN (SELECT value FROM json_each(?2)))
             ORDER BY priority DESC, due IS NULL, due, opened_at LIMIT ?3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(assignee)
            .bind(depts)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(inbox_row)
            .collect()
    }

    async fn inbox_for(&self, parties: &[String], limit: i64) -> Result<Vec<InboxRow>> {
        // Parties as a JSON array so the statement text does not depend on how many.
        let parties = serde_json::to_string(parties).unwrap_or_else(|_| "[]".into());
        let sql = format!(
            "SELECT {INBOX_COLS} FROM inbox WHERE assignee IN (SELECT value FROM json_each(?1))
             ORDER BY priority DESC, due IS NULL, due, opened_at LIMIT ?2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(parties)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(inbox_row)
            .collect()
    }

    async fn dashboard(&self) -> Result<Dashboard> {
        let mut tx = self.pool.begin().await?;
        let by_colour = counts(
            sqlx::query("SELECT colour, count(*) FROM inbox GROUP BY colour ORDER BY colour")
                .fetch_all(&mut *tx)
                .await?,
        )?;
        let by_stage = counts(
            sqlx::query("SELECT stage, count(*) FROM inbox GROUP BY stage ORDER BY stage")
                .fetch_all(&mut *tx)
                .await?,
        )?;
        let by_department = counts(
            sqlx::query(
                "SELECT department, count(*) FROM inbox GROUP BY department ORDER BY department",
            )
            .fetch_all(&mut *tx)
            .await?,
        )?;
        let by_status = counts(
            sqlx::query("SELECT status, count(*) FROM instances GROUP BY status ORDER BY status")
                .fetch_all(&mut *tx)
                .await?,
        )?;
        let supervised: i64 = sqlx::query("SELECT count(*) FROM inbox WHERE supervised")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(Dashboard {
            by_colour,
            by_stage,
            by_department,
            by_status,
            supervised,
        })
    }

    async fn overdue(&self, now: Millis, limit: i64) -> Result<Vec<InboxRow>> {
        let sql = format!(
            "SELECT {INBOX_COLS} FROM inbox WHERE due < ?1 ORDER BY due, instance, task_id LIMIT ?2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(inbox_row)
            .collect()
    }

    async fn promises_due(&self, from: Millis, to: Millis) -> Result<Vec<PromiseRow>> {
        sqlx::query(
            "SELECT instance, promise_id, material, state, colour, due FROM promises
             WHERE state = 'open' AND due >= ?1 AND due < ?2 ORDER BY due, instance, promise_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(PromiseRow {
                instance: r.try_get(0)?,
                promise_id: r.try_get(1)?,
                material: r.try_get(2)?,
                state: r.try_get(3)?,
                colour: r.try_get(4)?,
                due: r.try_get(5)?,
            })
        })
        .collect()
    }

    async fn supervised(&self, limit: i64) -> Result<Vec<InboxRow>> {
        let sql = format!(
            "SELECT {INBOX_COLS} FROM inbox WHERE supervised ORDER BY due, instance, task_id LIMIT ?1"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(inbox_row)
            .collect()
    }

    async fn elements_of(&self, instance: &str) -> Result<Vec<ElementRow>> {
        sqlx::query(
            "SELECT instance, stage, element, department, state, due FROM elements
             WHERE instance = ?1 ORDER BY stage, element",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(ElementRow {
                instance: r.try_get(0)?,
                stage: r.try_get(1)?,
                element: r.try_get(2)?,
                department: r.try_get(3)?,
                state: r.try_get(4)?,
                due: r.try_get(5)?,
            })
        })
        .collect()
    }
}

/// Report queries shared by the SQLite `ReportStore` methods.
impl SqliteStore {
    async fn report_tasks(
        &self,
        workflow_id: &str,
        sql_where: &str,
        now: Millis,
        limit: i64,
    ) -> Result<Vec<OverdueTask>> {
        let sql = format!(
            "SELECT t.instance, i.project, t.node, t.department, t.due, t.supervised
             FROM inbox t JOIN instances i ON i.id = t.instance
             WHERE t.workflow_id = ?1 AND {sql_where}
             ORDER BY t.due IS NULL, t.due, t.instance, t.task_id LIMIT ?3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workflow_id)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let project: String = r.try_get(1)?;
                Ok(OverdueTask {
                    instance: r.try_get(0)?,
                    project: parse_json(&project)?,
                    node: r.try_get(2)?,
                    department: r.try_get(3)?,
                    due: r.try_get::<Option<i64>, _>(4)?.unwrap_or(0),
                    supervised: r.try_get(5)?,
                })
            })
            .collect()
    }
}

impl ReportStore for SqliteStore {
    async fn try_start_report(
        &self,
        report: &str,
        scheduled_at: Millis,
        node: &str,
        now: Millis,
    ) -> Result<bool> {
        self.run_report(report, scheduled_at, node, now, &[]).await
    }

    async fn last_report_run(&self, report: &str) -> Result<Option<Millis>> {
        let r = sqlx::query("SELECT max(scheduled_at) FROM report_runs WHERE report = ?1")
            .bind(report)
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get(0)?)
    }

    async fn run_report(
        &self,
        report: &str,
        scheduled_at: Millis,
        node: &str,
        now: Millis,
        rows: &[OutboxRow],
    ) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "INSERT INTO report_runs (report, scheduled_at, node, ran_at) VALUES (?1,?2,?3,?4)
             ON CONFLICT (report, scheduled_at) DO NOTHING",
        )
        .bind(report)
        .bind(scheduled_at)
        .bind(node)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_outbox(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn report_data(
        &self,
        workflow_id: &str,
        from: Millis,
        now: Millis,
        promise_until: Millis,
        limit: i64,
    ) -> Result<ReportData> {
        let tasks = sqlx::query(
            "SELECT stage, department, colour, count(*), sum(CASE WHEN supervised THEN 1 ELSE 0 END)
             FROM inbox WHERE workflow_id = ?1 GROUP BY stage, department, colour
             ORDER BY stage, department, colour",
        )
        .bind(workflow_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(TaskCount {
                stage: r.try_get(0)?,
                department: r.try_get(1)?,
                colour: r.try_get(2)?,
                open: r.try_get(3)?,
                supervised: r.try_get::<Option<i64>, _>(4)?.unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let r = sqlx::query(
            "SELECT
               (SELECT count(*) FROM instances WHERE workflow_id = ?1 AND created_at >= ?2 AND created_at < ?3),
               (SELECT count(*) FROM instances WHERE workflow_id = ?1 AND status NOT IN ('running', 'not_started')
                  AND updated_at >= ?2 AND updated_at < ?3)",
        )
        .bind(workflow_id)
        .bind(from)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let (started, finished) = (r.try_get(0)?, r.try_get(1)?);
        // Decisions in the period, by the department of the task's own `task_opened` event (the
        // inbox row is gone once the task is decided). Every commit sets `updated_at`, so an
        // instance with a decision in the period was updated in it: that bounds the scan to
        // the instances active in the period and reads their events by primary key.
        let decided_by_department = sqlx::query(
            "SELECT o.body ->> '$.department', count(*)
             FROM instances i
             JOIN events d ON d.instance = i.id AND d.type = 'task_decided'
                  AND d.recorded_at >= ?2 AND d.recorded_at < ?3
             JOIN events o ON o.instance = d.instance AND o.type = 'task_opened'
                  AND o.body ->> '$.task' = d.body ->> '$.task'
             WHERE i.workflow_id = ?1 AND i.updated_at >= ?2
             GROUP BY 1 ORDER BY 1",
        )
        .bind(workflow_id)
        .bind(from)
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<_>>>()?;
        let promises = sqlx::query(
            "SELECT p.state, count(*) FROM promises p JOIN instances i ON i.id = p.instance
             WHERE i.workflow_id = ?1 GROUP BY p.state ORDER BY p.state",
        )
        .bind(workflow_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<_>>>()?;
        let promises_due = sqlx::query(
            "SELECT p.instance, i.project, p.material, p.due
             FROM promises p JOIN instances i ON i.id = p.instance
             WHERE i.workflow_id = ?1 AND p.state = 'open' AND p.due >= ?2 AND p.due < ?3
             ORDER BY p.due, p.instance, p.promise_id LIMIT ?4",
        )
        .bind(workflow_id)
        .bind(now)
        .bind(promise_until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let project: String = r.try_get(1)?;
            Ok(PromiseDue {
                instance: r.try_get(0)?,
                project: parse_json(&project)?,
                material: r.try_get(2)?,
                due: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let overdue = self
            .report_tasks(workflow_id, "t.due < ?2", now, limit)
            .await?;
        let supervised = self
            .report_tasks(workflow_id, "t.supervised AND ?2 = ?2", now, limit)
            .await?;
        Ok(ReportData {
            tasks,
            started,
            finished,
            decided_by_department,
            promises,
            overdue,
            promises_due,
            supervised,
        })
    }
}
