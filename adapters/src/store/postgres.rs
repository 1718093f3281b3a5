//! The PostgreSQL backend, for several `shenpi` nodes on one server.
//!
//! A commit writes each table with one statement over `UNNEST` of arrays, so the statement text
//! is the same whatever the batch size (prepared once per connection) and a batch of 64 commands
//! costs a dozen round trips, not hundreds. Instances are updated in id order so two nodes
//! committing overlapping batches lock rows in the same order (no deadlock); a deadlock or
//! serialization failure anyway is reported as a conflict and retried. Due timers and outbox rows
//! are claimed with `FOR UPDATE SKIP LOCKED` and a lease: nodes never wait on each other's claims,
//! and a dead node's claims are taken over when its lease runs out.

use std::str::FromStr;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Row, SqlSafeStr};

use super::*;

/// The embedded migrations (the files under `adapters/migrations/postgres/`).
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "durable".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0001_durable.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "timer claims by instance".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0002_timer_claims_by_instance.sql")
                .into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "write path: json bodies, byte-wise keys".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0003_write_path.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "refused timers".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0004_refused_timers.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "calendar revisions".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0005_calendar_revisions.sql").into_sql_str(),
            false,
        ),
    ])
}

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

fn pg_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && matches!(d.code().as_deref(), Some("40P01") | Some("40001"))
    {
        return StoreError::Conflict(d.message().to_string());
    }
    StoreError::from(e)
}

impl PgStore {
    /// Connects and runs the migrations. With `schema`, everything lives in that schema (created
    /// if missing): tests use a fresh one each so they can run side by side.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<PgStore> {
        let mut opts = PgConnectOptions::from_str(url).map_err(StoreError::Db)?;
        if let Some(schema) = schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(StoreError::BadUrl(format!("schema name `{schema}`")));
            }
            let mut conn = opts.connect().await.map_err(StoreError::Db)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await.map_err(StoreError::Db)?;
            opts = opts.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(StoreError::Db)?;
        migrator().run(&pool).await?;
        Ok(PgStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn definition_row(r: &PgRow) -> Result<DefinitionRow> {
    Ok(DefinitionRow {
        workflow_id: r.try_get(0)?,
        version: r.try_get(1)?,
        yaml: r.try_get(2)?,
        hash: r.try_get(3)?,
        published_at: r.try_get(4)?,
    })
}

const INBOX_COLS: &str = "instance, task_id, workflow_id, node, stage, assignee, department, colour, due, priority, supervised, opened_at";

fn inbox_row(r: &PgRow) -> Result<InboxRow> {
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
        priority: r.try_get::<i64, _>(9)?.try_into().unwrap_or(i32::MAX),
        supervised: r.try_get(10)?,
        opened_at: r.try_get(11)?,
    })
}

const OUTBOX_COLS: &str = "id, instance, channel, recipient, template, payload::text, next_attempt_at, created_at, state, tries, last_error";

/// The same columns qualified, for `UPDATE outbox AS o ... RETURNING`.
const OUTBOX_COLS_O: &str = "o.id, o.instance, o.channel, o.recipient, o.template, o.payload::text, o.next_attempt_at, o.created_at, o.state, o.tries, o.last_error";

fn outbox_message(r: &PgRow) -> Result<OutboxMessage> {
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

fn counts(rows: Vec<PgRow>) -> Result<Vec<(String, i64)>> {
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
                r.try_get(1)?,
            ))
        })
        .collect()
}

impl DefinitionStore for PgStore {
    async fn publish(
        &self,
        workflow_id: &str,
        yaml: &str,
        hash: &str,
        now: Millis,
    ) -> Result<DefinitionRow> {
        loop {
            let latest = self.latest_definition(workflow_id).await?;
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
            // Two nodes publishing at once: the primary key picks one, the other looks again.
            let done = sqlx::query(
                "INSERT INTO definitions (workflow_id, version, yaml, hash, published_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&row.workflow_id)
            .bind(row.version)
            .bind(&row.yaml)
            .bind(&row.hash)
            .bind(row.published_at)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(row);
            }
        }
    }

    async fn definition(&self, workflow_id: &str, version: i64) -> Result<Option<DefinitionRow>> {
        sqlx::query(
            "SELECT workflow_id, version, yaml, hash, published_at FROM definitions
             WHERE workflow_id = $1 AND version = $2",
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
             WHERE workflow_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(workflow_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(definition_row)
        .transpose()
    }
}

impl EventStore for PgStore {
    async fn load(
        &self,
        instance: &str,
        after_seq: i64,
    ) -> Result<Option<(InstanceRow, Vec<EventRow>)>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let Some(r) = sqlx::query(
            "SELECT id, workflow_id, def_version, project::text, version, status, stage, channel
             FROM instances WHERE id = $1",
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
            "SELECT instance, seq, type, body::text, recorded_at FROM events
             WHERE instance = $1 AND seq > $2 ORDER BY seq",
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
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query("SELECT key, instance, result::text FROM idempotency WHERE key = ANY($1)")
            .bind(keys)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(IdempotencyRow {
                    key: r.try_get(0)?,
                    instance: r.try_get(1)?,
                    result: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn timer_states(
        &self,
        timers: &[(String, String)],
    ) -> Result<Vec<(String, String, TimerState)>> {
        if timers.is_empty() {
            return Ok(Vec::new());
        }
        let (inst, ids): (Vec<&str>, Vec<&str>) =
            timers.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip();
        sqlx::query(
            "SELECT t.instance, t.timer_id, t.state FROM timers t
             JOIN UNNEST($1::text[], $2::text[]) AS u(instance, timer_id)
               ON t.instance = u.instance AND t.timer_id = u.timer_id",
        )
        .bind(inst)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let s: String = r.try_get(2)?;
            let st = TimerState::parse(&s)
                .ok_or_else(|| StoreError::Corrupt(format!("timer state `{s}`")))?;
            Ok((r.try_get(0)?, r.try_get(1)?, st))
        })
        .collect()
    }

    async fn commit(&self, b: &Batch) -> Result<()> {
        self.commit_inner(b).await.map_err(|e| match e {
            StoreError::Db(e) => pg_err(e),
            other => other,
        })
    }

    async fn commit_owned(&self, b: Batch) -> Result<()> {
        self.commit(&b).await
    }

    async fn count_events(&self, instance: Option<&str>) -> Result<i64> {
        let r = sqlx::query("SELECT count(*) FROM events WHERE $1::text IS NULL OR instance = $1")
            .bind(instance)
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get(0)?)
    }
}

impl PgStore {
    async fn commit_inner(&self, b: &Batch) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pg_err)?;

        let mut writes: Vec<&InstanceWrite> = b.instances.iter().collect();
        writes.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
        let (new, old): (Vec<&InstanceWrite>, Vec<&InstanceWrite>) =
            writes.into_iter().partition(|w| w.from_version == 0);
        if !new.is_empty() {
            sqlx::query(
                "INSERT INTO instances (id, workflow_id, def_version, version, project, status,
                 stage, channel, created_at, updated_at)
                 SELECT u.id, u.wf, u.dv, u.v, u.p::jsonb, u.s, u.st, u.ch, $9, $9
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                             $6::text[], $7::text[], $8::text[]) AS u(id, wf, dv, v, p, s, st, ch)",
            )
            .bind(new.iter().map(|w| w.meta.id.as_str()).collect::<Vec<_>>())
            .bind(
                new.iter()
                    .map(|w| w.meta.workflow_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(new.iter().map(|w| w.meta.def_version).collect::<Vec<_>>())
            .bind(new.iter().map(|w| w.to_version).collect::<Vec<_>>())
            .bind(
                new.iter()
                    .map(|w| w.meta.project.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(
                new.iter()
                    .map(|w| w.projection.status.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                new.iter()
                    .map(|w| w.projection.stage.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                new.iter()
                    .map(|w| w.projection.channel.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(b.now)
            .execute(&mut *tx)
            .await?;
        }
        if !old.is_empty() {
            let done = sqlx::query(
                "UPDATE instances AS i SET version = u.v, status = u.s, stage = u.st,
                 channel = u.ch, updated_at = $7
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                             $6::text[]) AS u(id, fv, v, s, st, ch)
                 WHERE i.id = u.id AND i.version = u.fv",
            )
            .bind(old.iter().map(|w| w.meta.id.as_str()).collect::<Vec<_>>())
            .bind(old.iter().map(|w| w.from_version).collect::<Vec<_>>())
            .bind(old.iter().map(|w| w.to_version).collect::<Vec<_>>())
            .bind(
                old.iter()
                    .map(|w| w.projection.status.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                old.iter()
                    .map(|w| w.projection.stage.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                old.iter()
                    .map(|w| w.projection.channel.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(b.now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != old.len() as u64 {
                return Err(StoreError::Conflict(
                    "an instance moved on since it was read".into(),
                ));
            }
        }

        if !b.instances.is_empty() {
            // Only the rows that changed (see `InstanceWrite::row_changes`).
            let changes: Vec<(&InstanceWrite, RowChanges<'_>)> =
                b.instances.iter().map(|w| (w, w.row_changes())).collect();
            let stored = |w: &InstanceWrite| w.from_version > 0;
            let cleared = |pick: fn(&RowChanges<'_>) -> bool| -> Vec<&str> {
                changes
                    .iter()
                    .filter(|(w, c)| stored(w) && pick(c))
                    .map(|(w, _)| w.meta.id.as_str())
                    .collect()
            };
            for (table, ids) in [
                ("inbox", cleared(|c| c.clear_tasks)),
                ("promises", cleared(|c| c.replace_promises)),
                ("elements", cleared(|c| c.replace_elements)),
            ] {
                if ids.is_empty() {
                    continue;
                }
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE instance = ANY($1)"
                )))
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            }
            let gone: Vec<(&str, &str)> = changes
                .iter()
                .flat_map(|(w, c)| c.tasks_deleted.iter().map(|t| (w.meta.id.as_str(), *t)))
                .collect();
            if !gone.is_empty() {
                sqlx::query(
                    "DELETE FROM inbox USING UNNEST($1::text[], $2::text[]) AS d(i, t)
                     WHERE inbox.instance = d.i AND inbox.task_id = d.t",
                )
                .bind(gone.iter().map(|g| g.0).collect::<Vec<_>>())
                .bind(gone.iter().map(|g| g.1).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
            let tasks: Vec<&InboxRow> = changes
                .iter()
                .flat_map(|(_, c)| c.tasks_inserted.iter().copied())
                .collect();
            if !tasks.is_empty() {
                sqlx::query(
                    "INSERT INTO inbox (instance, task_id, workflow_id, node, stage, assignee,
                     department, colour, due, priority, supervised, opened_at)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                       $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[],
                       $10::bigint[], $11::bool[], $12::bigint[])",
                )
                .bind(
                    tasks
                        .iter()
                        .map(|t| t.instance.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(tasks.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>())
                .bind(
                    tasks
                        .iter()
                        .map(|t| t.workflow_id.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(tasks.iter().map(|t| t.node.as_str()).collect::<Vec<_>>())
                .bind(tasks.iter().map(|t| t.stage.as_deref()).collect::<Vec<_>>())
                .bind(
                    tasks
                        .iter()
                        .map(|t| t.assignee.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    tasks
                        .iter()
                        .map(|t| t.department.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(tasks.iter().map(|t| t.colour.as_str()).collect::<Vec<_>>())
                .bind(tasks.iter().map(|t| t.due).collect::<Vec<_>>())
                .bind(
                    tasks
                        .iter()
                        .map(|t| i64::from(t.priority))
                        .collect::<Vec<_>>(),
                )
                .bind(tasks.iter().map(|t| t.supervised).collect::<Vec<_>>())
                .bind(tasks.iter().map(|t| t.opened_at).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
            let promises: Vec<&PromiseRow> = changes
                .iter()
                .filter(|(_, c)| c.replace_promises)
                .flat_map(|(w, _)| &w.projection.promises)
                .collect();
            if !promises.is_empty() {
                sqlx::query(
                    "INSERT INTO promises (instance, promise_id, material, state, colour, due)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                       $5::text[], $6::bigint[])",
                )
                .bind(
                    promises
                        .iter()
                        .map(|t| t.instance.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    promises
                        .iter()
                        .map(|t| t.promise_id.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    promises
                        .iter()
                        .map(|t| t.material.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    promises
                        .iter()
                        .map(|t| t.state.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    promises
                        .iter()
                        .map(|t| t.colour.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(promises.iter().map(|t| t.due).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
            let elements: Vec<&ElementRow> = changes
                .iter()
                .filter(|(_, c)| c.replace_elements)
                .flat_map(|(w, _)| &w.projection.elements)
                .collect();
            if !elements.is_empty() {
                sqlx::query(
                    "INSERT INTO elements (instance, stage, element, department, state, due)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                       $5::text[], $6::bigint[])",
                )
                .bind(
                    elements
                        .iter()
                        .map(|t| t.instance.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    elements
                        .iter()
                        .map(|t| t.stage.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    elements
                        .iter()
                        .map(|t| t.element.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    elements
                        .iter()
                        .map(|t| t.department.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    elements
                        .iter()
                        .map(|t| t.state.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(elements.iter().map(|t| t.due).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
        }

        if !b.events.is_empty() {
            sqlx::query(
                "INSERT INTO events (instance, seq, type, body, recorded_at)
                 SELECT u.i, u.s, u.t, u.b::json, u.r
                 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])
                   AS u(i, s, t, b, r)",
            )
            .bind(
                b.events
                    .iter()
                    .map(|e| e.instance.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(b.events.iter().map(|e| e.seq).collect::<Vec<_>>())
            .bind(b.events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
            .bind(b.events.iter().map(|e| e.body.as_str()).collect::<Vec<_>>())
            .bind(b.events.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }

        // Fired first: a firing may re-arm a timer with the same id.
        if !b.timers_fired.is_empty() {
            let done = sqlx::query(
                "UPDATE timers AS t SET state = 'fired', fired_at = $3, retry_at = NULL
                 FROM UNNEST($1::text[], $2::text[]) AS u(i, id)
                 WHERE t.instance = u.i AND t.timer_id = u.id AND t.state IN ('pending', 'claimed')",
            )
            .bind(b.timers_fired.iter().map(|t| t.0.as_str()).collect::<Vec<_>>())
            .bind(b.timers_fired.iter().map(|t| t.1.as_str()).collect::<Vec<_>>())
            .bind(b.now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != b.timers_fired.len() as u64 {
                return Err(StoreError::Conflict(
                    "a timer fired or was cancelled meanwhile".into(),
                ));
            }
        }
        // Before cancelling and arming, which may then close or re-arm the same timer.
        if !b.timers_refused.is_empty() {
            let r = &b.timers_refused;
            let done = sqlx::query(
                "UPDATE timers AS t SET state = 'pending', claimed_by = NULL, lease_until = NULL,
                 refused_code = u.c, refused_message = u.m, refused_at = u.at, retry_at = u.r
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                             $6::bigint[]) AS u(i, id, c, m, at, r)
                 WHERE t.instance = u.i AND t.timer_id = u.id AND t.state IN ('pending', 'claimed')",
            )
            .bind(r.iter().map(|x| x.instance.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|x| x.timer_id.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|x| x.code.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|x| x.message.as_str()).collect::<Vec<_>>())
            .bind(r.iter().map(|x| x.refused_at).collect::<Vec<_>>())
            .bind(r.iter().map(|x| x.retry_at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != r.len() as u64 {
                return Err(StoreError::Conflict(
                    "a refused timer fired or was cancelled meanwhile".into(),
                ));
            }
        }
        if !b.timers_postponed.is_empty() {
            let p = &b.timers_postponed;
            let done = sqlx::query(
                "UPDATE timers AS t SET state = 'pending', claimed_by = NULL, lease_until = NULL,
                 due = u.d, refused_code = NULL, refused_message = NULL, refused_at = NULL,
                 retry_at = NULL
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS u(i, id, d)
                 WHERE t.instance = u.i AND t.timer_id = u.id AND t.state IN ('pending', 'claimed')",
            )
            .bind(p.iter().map(|x| x.0.as_str()).collect::<Vec<_>>())
            .bind(p.iter().map(|x| x.1.as_str()).collect::<Vec<_>>())
            .bind(p.iter().map(|x| x.2).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != p.len() as u64 {
                return Err(StoreError::Conflict(
                    "a postponed timer fired or was cancelled meanwhile".into(),
                ));
            }
        }
        if !b.timers_cancelled.is_empty() {
            sqlx::query(
                "UPDATE timers AS t SET state = 'cancelled', retry_at = NULL
                 FROM UNNEST($1::text[], $2::text[]) AS u(i, id)
                 WHERE t.instance = u.i AND t.timer_id = u.id AND t.state IN ('pending', 'claimed')",
            )
            .bind(b.timers_cancelled.iter().map(|t| t.0.as_str()).collect::<Vec<_>>())
            .bind(b.timers_cancelled.iter().map(|t| t.1.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !b.timers_armed.is_empty() {
            // The same timer armed twice in one batch would make ON CONFLICT touch a row twice;
            // the last arming wins, as it would have one command at a time.
            let mut armed: Vec<&TimerRow> = Vec::with_capacity(b.timers_armed.len());
            for t in b.timers_armed.iter().rev() {
                if !armed
                    .iter()
                    .any(|a| a.instance == t.instance && a.timer_id == t.timer_id)
                {
                    armed.push(t);
                }
            }
            sqlx::query(
                "INSERT INTO timers (instance, timer_id, due, kind, state)
                 SELECT u.i, u.id, u.d, u.k, 'pending'
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[]) AS u(i, id, d, k)
                 ON CONFLICT (instance, timer_id) DO UPDATE SET due = excluded.due,
                 kind = excluded.kind, state = 'pending', claimed_by = NULL, lease_until = NULL,
                 fired_at = NULL, refused_code = NULL, refused_message = NULL,
                 refused_at = NULL, retry_at = NULL",
            )
            .bind(
                armed
                    .iter()
                    .map(|t| t.instance.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                armed
                    .iter()
                    .map(|t| t.timer_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(armed.iter().map(|t| t.due).collect::<Vec<_>>())
            .bind(armed.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        insert_outbox(&mut tx, &b.outbox).await?;
        if !b.idempotency.is_empty() {
            sqlx::query(
                "INSERT INTO idempotency (key, instance, result, created_at)
                 SELECT u.k, u.i, u.r::jsonb, $4
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(k, i, r)",
            )
            .bind(
                b.idempotency
                    .iter()
                    .map(|k| k.key.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                b.idempotency
                    .iter()
                    .map(|k| k.instance.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                b.idempotency
                    .iter()
                    .map(|k| k.result.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(b.now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_outbox(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    rows: &[OutboxRow],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (id, instance, channel, recipient, template, payload, state, tries,
         next_attempt_at, created_at)
         SELECT u.id, u.i, u.c, u.r, u.t, u.p::json, 'pending', 0, u.n, u.cr
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::bigint[], $8::bigint[]) AS u(id, i, c, r, t, p, n, cr)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(rows.iter().map(|o| o.id.as_str()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|o| o.instance.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|o| o.channel.as_str()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|o| o.recipient.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|o| o.template.as_str()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|o| o.payload.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|o| o.next_attempt_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.created_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl TimerStore for PgStore {
    /// Claims by instance: the due timers of whole instances, earliest first, up to `limit` (the
    /// last instance taken may be cut at the limit; the claim on its first timers keeps the
    /// others off it until this node has fired them). Two nodes claiming row by row would split
    /// the same instances between them, and since a firing commits under the instance's version
    /// their batches would keep conflicting; claimed by instance, they work side by side, and an
    /// instance's state stays in one node's cache.
    ///
    /// Why concurrent claimers get disjoint instances: in one transaction, a node first takes a
    /// transaction-scoped advisory lock per instance (`pg_try_advisory_xact_lock` on a hash of
    /// schema and instance; a lock someone holds is skipped, never waited for), and only then
    /// claims, in a new statement whose snapshot is taken after the locks: any node that held one
    /// of those locks before has committed, so its live claims are visible and the instance is
    /// left alone. A hash collision only makes a node skip an instance for one poll. Correctness
    /// does not rest on any of this: a timer fires once because its `fired` mark commits with its
    /// effects and requires it open (see `commit`); disjoint claims are for throughput. A dead
    /// node's claims stop counting when their lease runs out, and its timers are claimable again.
    ///
    /// Cost: every step reads O(`limit`) rows however many timers are due, so a backlog after
    /// downtime (or one instance with thousands of due timers) costs a poll no more than usual.
    async fn claim_due(
        &self,
        node: &str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedTimer>> {
        /// Advisory-lock class of timer claims. The two-key form of `pg_try_advisory_xact_lock`
        /// keeps these locks apart from any single-key advisory lock taken in the database.
        const TIMER_CLAIM_LOCK: i32 = 0x7370_746d;

        /// The instances with claimable due timers (pending, or claimed under an expired
        /// lease; refused timers held until a retry are not claimable), earliest due first, less those another node holds a live claim on. Only the
        /// first `$3` claimable rows by due are looked at.
        const CLAIM_CANDIDATES: &str = "
            WITH w AS (
                SELECT instance, due FROM timers
                WHERE state IN ('pending', 'claimed') AND retry_at IS NULL AND due <= $1
                  AND (state = 'pending' OR lease_until < $1)
                ORDER BY due LIMIT $3
            )
            SELECT instance FROM w GROUP BY instance
            HAVING NOT EXISTS (SELECT 1 FROM timers l
                                WHERE l.instance = w.instance AND l.state = 'claimed'
                                  AND l.lease_until >= $1 AND l.claimed_by IS DISTINCT FROM $2)
            ORDER BY min(due), instance";

        /// Walks the candidates `$1` in order: tries each one's claim lock and, if it got it,
        /// counts its claimable due timers (at most the room left), until `$4` are covered.
        /// Answers the instances locked, with how many timers to take from each. A recursive
        /// query so that locks and counts are taken for the instances used only (`OFFSET 0`
        /// keeps the planner from evaluating a lateral twice).
        const CLAIM_LOCK: &str = "
            WITH RECURSIVE walk(n, instance, got, quota, taken) AS (
                SELECT 0::bigint, NULL::text, false, 0::bigint, 0::bigint
                UNION ALL
                SELECT k.n + 1, c.i, l.got, q.quota, k.taken + q.quota
                FROM walk k
                CROSS JOIN LATERAL (SELECT ($1::text[])[k.n + 1] AS i) c
                CROSS JOIN LATERAL (
                    SELECT pg_try_advisory_xact_lock($2, hashtext(current_schema() || '/' || c.i))
                           AS got
                    OFFSET 0) l
                CROSS JOIN LATERAL (
                    SELECT CASE WHEN l.got THEN
                        (SELECT count(*) FROM (
                            SELECT 1 FROM timers t
                            WHERE t.instance = c.i AND t.state IN ('pending', 'claimed')
                              AND t.retry_at IS NULL
                              AND t.due <= $3 AND (t.state = 'pending' OR t.lease_until < $3)
                            LIMIT $4 - k.taken) x)
                        ELSE 0 END AS quota
                    OFFSET 0) q
                WHERE k.taken < $4 AND k.n < cardinality($1::text[])
            )
            SELECT instance, quota FROM walk WHERE got AND quota > 0 ORDER BY n";

        /// Claims the first `$5[i]` claimable due timers of each instance `$4[i]`, re-checking in
        /// this statement's fresh snapshot that no other node holds a live claim on it.
        const CLAIM_TIMERS: &str = "
            WITH p AS (
                SELECT u.i, u.q FROM unnest($4::text[], $5::bigint[]) AS u(i, q)
                WHERE NOT EXISTS (SELECT 1 FROM timers l
                                   WHERE l.instance = u.i AND l.state = 'claimed'
                                     AND l.lease_until >= $3 AND l.claimed_by IS DISTINCT FROM $1)
            ), d AS (
                SELECT x.instance, x.timer_id FROM p CROSS JOIN LATERAL (
                    SELECT t.instance, t.timer_id FROM timers t
                    WHERE t.instance = p.i AND t.state IN ('pending', 'claimed')
                      AND t.retry_at IS NULL AND t.due <= $3
                      AND (t.state = 'pending' OR t.lease_until < $3)
                    ORDER BY t.due LIMIT p.q
                    FOR UPDATE SKIP LOCKED) x
            )
            UPDATE timers AS t SET state = 'claimed', claimed_by = $1, lease_until = $2
            FROM d WHERE t.instance = d.instance AND t.timer_id = d.timer_id
            RETURNING t.instance, t.timer_id, t.due, t.kind";

        if limit <= 0 {
            return Ok(Vec::new());
        }
        let lease_until = now.saturating_add(lease_ms);
        // Read outside the transaction: the claim re-checks what matters under the locks.
        let candidates: Vec<String> = sqlx::query_scalar(CLAIM_CANDIDATES)
            .bind(now)
            .bind(node)
            .bind(limit.saturating_mul(2))
            .fetch_all(&self.pool)
            .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let picked: Vec<(String, i64)> = sqlx::query_as(CLAIM_LOCK)
            .bind(candidates)
            .bind(TIMER_CLAIM_LOCK)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        if picked.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let (instances, quotas): (Vec<String>, Vec<i64>) = picked.into_iter().unzip();
        let rows = sqlx::query(CLAIM_TIMERS)
            .bind(node)
            .bind(lease_until)
            .bind(now)
            .bind(instances)
            .bind(quotas)
            .fetch_all(&mut *tx)
            .await?;
        // Committing releases the locks; the claims themselves now keep the others off.
        tx.commit().await?;
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
                    t.refused_at, t.retry_at, i.project::text
             FROM timers t LEFT JOIN instances i ON i.id = t.instance
             WHERE t.state IN ('pending', 'claimed') AND t.refused_at IS NOT NULL
             ORDER BY t.refused_at, t.instance, t.timer_id LIMIT $1",
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
            "UPDATE timers SET retry_at = NULL WHERE retry_at IS NOT NULL AND retry_at <= $1",
        )
        .bind(retry_by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

impl OutboxStore for PgStore {
    async fn claim_outbox(
        &self,
        node: &str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>> {
        let sql = format!(
            "UPDATE outbox AS o SET state = 'sending', claimed_by = $1, lease_until = $2
             FROM (SELECT id FROM outbox
                   WHERE state IN ('pending', 'sending') AND next_attempt_at <= $3
                     AND (state = 'pending' OR lease_until < $3)
                   ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) AS d
             WHERE o.id = d.id
             RETURNING {OUTBOX_COLS_O}"
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
            "UPDATE outbox SET state = 'delivered', delivered_at = $1, tries = tries + 1,
             claimed_by = NULL, lease_until = NULL WHERE id = $2",
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
            "UPDATE outbox SET state = $1, tries = tries + 1, last_error = $2, next_attempt_at = $3,
             claimed_by = NULL, lease_until = NULL WHERE id = $4",
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
        let mut tx = self.pool.begin().await?;
        insert_outbox(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_in_state(&self, state: &str, limit: i64) -> Result<Vec<OutboxMessage>> {
        let sql = format!(
            "SELECT {OUTBOX_COLS} FROM outbox WHERE state = $1 ORDER BY created_at, id LIMIT $2"
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

impl ProjectionStore for PgStore {
    async fn inbox(
        &self,
        assignee: Option<&str>,
        departments: &[String],
        limit: i64,
    ) -> Result<Vec<InboxRow>> {
        let sql = format!(
            "SELECT {INBOX_COLS} FROM inbox
             WHERE assignee = $1 OR (assignee IS NULL AND department = ANY($2))
             ORDER BY priority DESC, due ASC NULLS LAST, opened_at LIMIT $3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(assignee)
            .bind(departments)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(inbox_row)
            .collect()
    }

    async fn inbox_for(&self, parties: &[String], limit: i64) -> Result<Vec<InboxRow>> {
        let sql = format!(
            "SELECT {INBOX_COLS} FROM inbox WHERE assignee = ANY($1)
             ORDER BY priority DESC, due ASC NULLS LAST, opened_at LIMIT $2"
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
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
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
            "SELECT {INBOX_COLS} FROM inbox WHERE due < $1 ORDER BY due, instance, task_id LIMIT $2"
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
             WHERE state = 'open' AND due >= $1 AND due < $2 ORDER BY due, instance, promise_id",
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
            "SELECT {INBOX_COLS} FROM inbox WHERE supervised ORDER BY due, instance, task_id LIMIT $1"
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
             WHERE instance = $1 ORDER BY stage, element",
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

/// Report queries shared by the PostgreSQL `ReportStore` methods.
impl PgStore {
    async fn report_tasks(
        &self,
        workflow_id: &str,
        sql_where: &str,
        now: Millis,
        limit: i64,
    ) -> Result<Vec<OverdueTask>> {
        let sql = format!(
            "SELECT t.instance, i.project::text, t.node, t.department, t.due, t.supervised
             FROM inbox t JOIN instances i ON i.id = t.instance
             WHERE t.workflow_id = $1 AND {sql_where}
             ORDER BY t.due ASC NULLS LAST, t.instance, t.task_id LIMIT $3"
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

impl ReportStore for PgStore {
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
        let r = sqlx::query("SELECT max(scheduled_at) FROM report_runs WHERE report = $1")
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO report_runs (report, scheduled_at, node, ran_at) VALUES ($1,$2,$3,$4)
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
             FROM inbox WHERE workflow_id = $1 GROUP BY stage, department, colour
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
               (SELECT count(*) FROM instances WHERE workflow_id = $1 AND created_at >= $2 AND created_at < $3),
               (SELECT count(*) FROM instances WHERE workflow_id = $1 AND status NOT IN ('running', 'not_started')
                  AND updated_at >= $2 AND updated_at < $3)",
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
            "SELECT o.body ->> 'department', count(*)
             FROM instances i
             JOIN events d ON d.instance = i.id AND d.type = 'task_decided'
                  AND d.recorded_at >= $2 AND d.recorded_at < $3
             JOIN events o ON o.instance = d.instance AND o.type = 'task_opened'
                  AND o.body ->> 'task' = d.body ->> 'task'
             WHERE i.workflow_id = $1 AND i.updated_at >= $2
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
             WHERE i.workflow_id = $1 GROUP BY p.state ORDER BY p.state",
        )
        .bind(workflow_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<_>>>()?;
        let promises_due = sqlx::query(
            "SELECT p.instance, i.project::text, p.material, p.due
             FROM promises p JOIN instances i ON i.id = p.instance
             WHERE i.workflow_id = $1 AND p.state = 'open' AND p.due >= $2 AND p.due < $3
             ORDER BY p.due, p.instance, p.promise_id LIMIT $4",
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
            .report_tasks(workflow_id, "t.due < $2", now, limit)
            .await?;
        let supervised = self
            .report_tasks(workflow_id, "t.supervised AND $2 = $2", now, limit)
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
