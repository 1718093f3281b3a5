//! The PostgreSQL backend, for several `shenpi` nodes on one server.
//!
//! A commit writes each table with one statement over `UNNEST` of arrays, so the statement text
//! is the same whatever the batch size (prepared once per connection) and a batch of 64 commands
//! costs a dozen round trips, not hundreds. Instances are updated in id order so two nodes
//! committing overlapping batches lock rows in the same order (no deadlock); a deadlock or
//! serialization failure anyway is reported as a conflict and retried. Due timers and outbox rows
//! are claimed with `FOR UPDATE SKIP LOCKED` and a lease: nodes never wait on each other's claims,
//! and a dead node's claims are taken over when its lease runs out.
//!
//! The SQL this backend shares with SQLite is in `sql.rs`; here is only what PostgreSQL says its
//! own way.

use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection};

use super::chain::{self, Links};
use super::sql::{
    Backend, COMMIT_ORDER, ConnOf, Step, TimerClaim, addressees_json, bind_arg, driver_calls,
    inbox_where, outbox_cols,
};
use super::*;

/// The embedded migrations (the files under `adapters/migrations/postgres/` and `shared/`).
pub fn migrator() -> Migrator {
    super::migrations::migrator(super::migrations::Dialect::Postgres)
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
            let created = sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&mut conn)
            .await;
            // Two nodes creating it at once: the loser's `IF NOT EXISTS` can still trip on the
            // catalog's unique index; the schema is there either way.
            match created {
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {}
                other => {
                    other?;
                }
            }
            conn.close().await.map_err(StoreError::Db)?;
            opts = opts.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // While the database cannot be reached a request waits this long for a connection,
            // then is answered 503 (try later), instead of sqlx's 30 s default.
            .acquire_timeout(super::ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await
            .map_err(StoreError::Db)?;
        migrator().run(&pool).await?;
        let store = PgStore { pool };
        // Histories written before the hash chain are chained once (migration 18).
        super::chain::backfill(&store).await?;
        Ok(store)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl PgStore {
    // Lists are bound as arrays (`= ANY($n)`, `UNNEST`).
    bind_arg!(sqlx::Postgres, |q, list| q.bind(list));

    /// Writes one batch in one transaction, in [`COMMIT_ORDER`].
    async fn commit_inner(&self, b: &Batch) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pg_err)?;
        let links = link(&mut tx, b).await?;
        for step in COMMIT_ORDER {
            write_step(&mut tx, step, b, &links).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Backend for PgStore {
    type Db = sqlx::Postgres;
    const BEGIN_WRITE: &'static str = "BEGIN";
    const BEGIN_READ: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    const KEYS: &'static str =
        "SELECT key, instance, CAST(result AS TEXT), request FROM idempotency WHERE key = ANY($1)";
    const TIMER_STATES: &'static str = "SELECT t.instance, t.timer_id, t.state FROM timers t
        JOIN UNNEST($1::text[], $2::text[]) AS u(instance, timer_id)
          ON t.instance = u.instance AND t.timer_id = u.timer_id";
    /// `?` and `?|` on the JSONB addressees, which the GIN index `inbox_addressees` answers.
    const INBOX: &'static str = inbox_where!(
        "addressees ? $1 OR (assignee IS NULL AND department = ANY($2))",
        "$3"
    );
    const INBOX_FOR: &'static str = inbox_where!("addressees ?| $1", "$2");
    const OUTBOX_FOR: &'static str = concat!(
        "SELECT ",
        outbox_cols!(),
        " FROM outbox WHERE recipient = ANY($1) ORDER BY created_at DESC, id LIMIT $2"
    );
    /// `SKIP LOCKED`: nodes never wait on each other's claims.
    const CLAIM_OUTBOX: &'static str = concat!(
        "UPDATE outbox SET state = 'sending', claimed_by = $1, lease_until = $2
         FROM (SELECT id AS claim FROM outbox
               WHERE state IN ('pending', 'sending') AND next_attempt_at <= $3
                 AND (state = 'pending' OR lease_until < $3)
               ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) AS d
         WHERE outbox.id = d.claim
         RETURNING ",
        outbox_cols!()
    );

    driver_calls!();

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
    async fn claim_timers(&self, claim: TimerClaim<'_>) -> Result<Vec<PgRow>> {
        let TimerClaim {
            node,
            now,
            lease_until,
            limit,
        } = claim;
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
        Ok(rows)
    }

    async fn write_batch(&self, b: &Batch) -> Result<()> {
        self.commit_inner(b).await.map_err(|e| match e {
            StoreError::Db(e) => pg_err(e),
            other => other,
        })
    }

    async fn insert_outbox(conn: &mut ConnOf<Self>, rows: &[OutboxRow]) -> Result<()> {
        insert_outbox(conn, rows).await
    }
}

/// The batch's events chained onto the heads stored for its instances (see [`chain::link`]).
/// The rows are locked as they are read (in id order, as the instances step updates them), so
/// nothing changes a head between this read and the commit.
async fn link(tx: &mut PgConnection, b: &Batch) -> Result<Links> {
    let ids: Vec<&str> = b
        .instances
        .iter()
        .filter(|w| w.from_version > 0)
        .map(|w| w.meta.id.as_str())
        .collect();
    let mut stored = std::collections::HashMap::new();
    if !ids.is_empty() {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT id, head_hash FROM instances WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        stored.extend(rows);
    }
    Ok(chain::link(&stored, b))
}

/// Writes one part of a batch: one statement over `UNNEST` of arrays, so the statement text is
/// the same whatever the batch size.
async fn write_step(tx: &mut PgConnection, step: Step, b: &Batch, links: &Links) -> Result<()> {
    match step {
        Step::Instances => {
            let mut writes: Vec<&InstanceWrite> = b.instances.iter().collect();
            writes.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
            let (new, old): (Vec<&InstanceWrite>, Vec<&InstanceWrite>) =
                writes.into_iter().partition(|w| w.from_version == 0);
            if !new.is_empty() {
                sqlx::query(
                    "INSERT INTO instances (id, workflow_id, def_version, version, project, status,
                         stage, channel, created_at, updated_at, head_hash)
                         SELECT u.id, u.wf, u.dv, u.v, u.p::jsonb, u.s, u.st, u.ch, $9, $9, u.h
                         FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                                     $6::text[], $7::text[], $8::text[], $10::text[])
                              AS u(id, wf, dv, v, p, s, st, ch, h)",
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
                .bind(
                    new.iter()
                        .map(|w| links.head(&w.meta.id))
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
            }
            if !old.is_empty() {
                let done = sqlx::query(
                    "UPDATE instances AS i SET version = u.v, status = u.s, stage = u.st,
                         channel = u.ch, updated_at = $7, def_version = u.dv, head_hash = u.h
                         FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                                     $6::text[], $8::bigint[], $9::text[])
                              AS u(id, fv, v, s, st, ch, dv, h)
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
                .bind(old.iter().map(|w| w.meta.def_version).collect::<Vec<_>>())
                .bind(
                    old.iter()
                        .map(|w| links.head(&w.meta.id))
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
                step.check(done.rows_affected(), old.len())?;
            }
        }
        Step::Projections => {
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
                             department, colour, due, priority, supervised, opened_at, addressees)
                             SELECT i, t, w, n, s, a, d, c, due, p, sv, o, CAST(ad AS JSONB)
                             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                               $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[],
                               $10::bigint[], $11::bool[], $12::bigint[], $13::text[])
                               AS u(i, t, w, n, s, a, d, c, due, p, sv, o, ad)",
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
                    .bind(
                        tasks
                            .iter()
                            .copied()
                            .map(addressees_json)
                            .collect::<Result<Vec<_>>>()?,
                    )
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
        }
        Step::Events => {
            if !b.events.is_empty() {
                sqlx::query(
                    "INSERT INTO events (instance, seq, type, body, recorded_at, format, prev_hash,
                         hash)
                         SELECT u.i, u.s, u.t, u.b::json, u.r, u.f, u.ph, u.h
                         FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                                     $6::bigint[], $7::text[], $8::text[]) AS u(i, s, t, b, r, f, ph, h)",
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
                .bind(
                    b.events
                        .iter()
                        .map(|e| i64::from(e.format))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    links
                        .events
                        .iter()
                        .map(|l| l.as_ref().map(|(p, _)| p.as_str()))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    links
                        .events
                        .iter()
                        .map(|l| l.as_ref().map(|(_, h)| h.as_str()))
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
            }
        }
        Step::Fire => {
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
                step.check(done.rows_affected(), b.timers_fired.len())?;
            }
        }
        Step::Refuse => {
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
                step.check(done.rows_affected(), r.len())?;
            }
        }
        Step::Postpone => {
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
                step.check(done.rows_affected(), p.len())?;
            }
        }
        Step::Cancel => {
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
        }
        Step::Arm => {
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
        }
        Step::Outbox => {
            insert_outbox(tx, &b.outbox).await?;
        }
        Step::Keys => {
            if !b.idempotency.is_empty() {
                sqlx::query(
                    "INSERT INTO idempotency (key, instance, result, created_at, request)
                         SELECT u.k, u.i, u.r::jsonb, $4, u.q
                         FROM UNNEST($1::text[], $2::text[], $3::text[], $5::text[])
                              AS u(k, i, r, q)",
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
                .bind(
                    b.idempotency
                        .iter()
                        .map(|k| k.request.as_deref())
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
            }
        }
        Step::Projects => {
            for p in &b.projects {
                sqlx::query(
                    "INSERT INTO web_projects (id, name, workflow_id, owner, fields, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&p.id)
                .bind(&p.name)
                .bind(&p.workflow_id)
                .bind(&p.owner)
                .bind(&p.fields)
                .bind(p.created_at)
                .execute(&mut *tx)
                .await?;
            }
            for l in &b.project_links {
                sqlx::query(
                    "INSERT INTO web_project_instances (instance, project_id, workflow_id,
                     def_version, created_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (instance) DO NOTHING",
                )
                .bind(&l.instance)
                .bind(&l.project_id)
                .bind(&l.workflow_id)
                .bind(l.def_version)
                .bind(l.created_at)
                .execute(&mut *tx)
                .await?;
            }
        }
        Step::Audit => {
            if !b.audit.is_empty() {
                let a = &b.audit;
                sqlx::query(
                    "INSERT INTO web_audit (id, at, user_name, remote, action, instance, outcome)
                     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[],
                                          $5::text[], $6::text[], $7::text[])
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(a.iter().map(|x| x.id.as_str()).collect::<Vec<_>>())
                .bind(a.iter().map(|x| x.at).collect::<Vec<_>>())
                .bind(a.iter().map(|x| x.user.as_str()).collect::<Vec<_>>())
                .bind(a.iter().map(|x| x.remote.as_deref()).collect::<Vec<_>>())
                .bind(a.iter().map(|x| x.action.as_str()).collect::<Vec<_>>())
                .bind(a.iter().map(|x| x.instance.as_deref()).collect::<Vec<_>>())
                .bind(a.iter().map(|x| x.outcome.as_str()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// One statement over `UNNEST`, whatever the number of rows.
async fn insert_outbox(tx: &mut PgConnection, rows: &[OutboxRow]) -> Result<()> {
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
    .execute(&mut *tx)
    .await?;
    Ok(())
}
