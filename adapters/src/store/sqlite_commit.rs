//! The SQLite group commit, on a thread of its own.
//!
//! A commit is the engine's hot path: a batch of ~50 approvals is ~350 events, ~100 timers, ~100
//! outbox rows and the projections of ~50 instances. Through sqlx every statement is a message to
//! sqlx's connection thread and back, and every bound string is copied twice; measured, that
//! overhead was more than half of the commit. So the writes of a commit run here instead: one
//! thread owns one `rusqlite` connection to the same file, gets the whole [`Batch`] in one
//! message, and writes it row by row through cached prepared statements, borrowing the strings.
//! Reads, claims and everything else stay on the sqlx pool; SQLite's own file lock (with a busy
//! timeout) orders this connection's transactions with theirs.
//!
//! The connection uses the same settings as the pool: WAL, `synchronous=FULL` (the commit is on
//! disk before any caller is answered), and `BEGIN IMMEDIATE`, so the write lock is taken up front.

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::chain::{self, Links};
use super::sql::{COMMIT_ORDER, Step, addressees_json};
use super::{Batch, Result, StoreError};

struct Job {
    batch: Batch,
    reply: oneshot::Sender<Result<()>>,
}

/// Handle to the commit thread; the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct CommitThread {
    tx: mpsc::Sender<Job>,
}

impl CommitThread {
    /// Opens the writing connection (the database and its schema must already exist).
    pub(super) fn open(path: &str) -> Result<CommitThread> {
        let conn = Connection::open(path).map_err(native)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(native)?;
        // `journal_mode` answers with a row, the others with none.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(native)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Native(format!(
                "{path}: journal mode is `{mode}`, not WAL"
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -65536;
             PRAGMA mmap_size = 268435456;
             PRAGMA wal_autocheckpoint = 20000;",
        )
        .map_err(native)?;
        // Acknowledged means on disk: refuse to run if the setting did not take.
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(native)?;
        if sync != 2 {
            return Err(StoreError::Native(format!(
                "{path}: synchronous is {sync}, not FULL (2)"
            )));
        }
        conn.set_prepared_statement_cache_capacity(32);
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("shenpi-sqlite-commit".into())
            .spawn(move || {
                let mut conn = conn;
                for job in rx {
                    let result = commit(&mut conn, &job.batch);
                    // The bus may have stopped waiting; the outcome is in the file either way.
                    let _ = job.reply.send(result);
                }
            })
            .map_err(|e| StoreError::Native(format!("cannot start the commit thread: {e}")))?;
        Ok(CommitThread { tx })
    }

    pub(super) async fn commit(&self, batch: Batch) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { batch, reply })
            .map_err(|_| StoreError::Native("the commit thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Native("the commit thread has stopped".into()))?
    }
}

/// A constraint violation inside a commit means another writer recorded the same key first.
fn native(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(e.to_string()),
        _ => StoreError::Native(e.to_string()),
    }
}

/// Writes one batch in one transaction, in [`COMMIT_ORDER`]; nothing of it is kept unless all of
/// it is.
fn commit(conn: &mut Connection, b: &Batch) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(native)?;
    let links = link(&tx, b)?;
    for step in COMMIT_ORDER {
        write_step(&tx, step, b, &links)?;
    }
    tx.commit().map_err(native)
}

/// The batch's events chained onto the heads stored for its instances, read under the write
/// lock the transaction holds (see [`chain::link`]).
fn link(tx: &rusqlite::Transaction<'_>, b: &Batch) -> Result<Links> {
    let mut head = tx
        .prepare_cached("SELECT head_hash FROM instances WHERE id = ?1")
        .map_err(native)?;
    let mut stored = std::collections::HashMap::new();
    for w in b.instances.iter().filter(|w| w.from_version > 0) {
        let h: Option<String> = head
            .query_row([&w.meta.id], |r| r.get(0))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(native)?;
        stored.insert(w.meta.id.clone(), h);
    }
    Ok(chain::link(&stored, b))
}

/// Writes one part of a batch, row by row through a cached prepared statement.
fn write_step(tx: &rusqlite::Transaction<'_>, step: Step, b: &Batch, links: &Links) -> Result<()> {
    let prepare = |sql: &str| tx.prepare_cached(sql).map_err(native);
    match step {
        Step::Instances => {
            let mut insert = prepare(
                "INSERT INTO instances (id, workflow_id, def_version, version, project, status,
                 stage, channel, created_at, updated_at, head_hash)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?9,?10)",
            )?;
            let mut update = prepare(
                "UPDATE instances SET version = ?2, status = ?3, stage = ?4, channel = ?5,
                 updated_at = ?6, def_version = ?8, head_hash = ?9 WHERE id = ?1 AND version = ?7",
            )?;
            for w in &b.instances {
                let p = &w.projection;
                if w.from_version == 0 {
                    insert
                        .execute(params![
                            w.meta.id,
                            w.meta.workflow_id,
                            w.meta.def_version,
                            w.to_version,
                            w.meta.project.to_string(),
                            p.status,
                            p.stage,
                            p.channel,
                            b.now,
                            links.head(&w.meta.id)
                        ])
                        .map_err(native)?;
                } else {
                    let n = update
                        .execute(params![
                            w.meta.id,
                            w.to_version,
                            p.status,
                            p.stage,
                            p.channel,
                            b.now,
                            w.from_version,
                            w.meta.def_version,
                            links.head(&w.meta.id)
                        ])
                        .map_err(native)?;
                    step.check(n as u64, 1)?;
                }
            }
        }
        Step::Projections => write_projections(tx, b)?,
        Step::Events => {
            let mut event = prepare(
                "INSERT INTO events (instance, seq, type, body, recorded_at, format, prev_hash,
                 hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            )?;
            for (e, l) in b.events.iter().zip(&links.events) {
                let (prev, hash) = l.as_ref().map(|(p, h)| (p, h)).unzip();
                event
                    .execute(params![
                        e.instance,
                        e.seq,
                        e.kind,
                        e.body,
                        e.recorded_at,
                        e.format,
                        prev,
                        hash
                    ])
                    .map_err(native)?;
            }
        }
        Step::Fire => {
            let mut fire = prepare(
                "UPDATE timers SET state = 'fired', fired_at = ?3, retry_at = NULL
                 WHERE instance = ?1 AND timer_id = ?2 AND state IN ('pending', 'claimed')",
            )?;
            for (instance, id) in &b.timers_fired {
                let n = fire.execute(params![instance, id, b.now]).map_err(native)?;
                step.check(n as u64, 1)?;
            }
        }
        Step::Refuse => {
            let mut refuse = prepare(
                "UPDATE timers SET state = 'pending', claimed_by = NULL, lease_until = NULL,
                 refused_code = ?3, refused_message = ?4, refused_at = ?5, retry_at = ?6
                 WHERE instance = ?1 AND timer_id = ?2 AND state IN ('pending', 'claimed')",
            )?;
            for r in &b.timers_refused {
                let n = refuse
                    .execute(params![
                        r.instance,
                        r.timer_id,
                        r.code,
                        r.message,
                        r.refused_at,
                        r.retry_at
                    ])
                    .map_err(native)?;
                step.check(n as u64, 1)?;
            }
        }
        Step::Postpone => {
            let mut postpone = prepare(
                "UPDATE timers SET state = 'pending', claimed_by = NULL, lease_until = NULL,
                 due = ?3, refused_code = NULL, refused_message = NULL, refused_at = NULL,
                 retry_at = NULL
                 WHERE instance = ?1 AND timer_id = ?2 AND state IN ('pending', 'claimed')",
            )?;
            for (instance, id, due) in &b.timers_postponed {
                let n = postpone
                    .execute(params![instance, id, due])
                    .map_err(native)?;
                step.check(n as u64, 1)?;
            }
        }
        Step::Cancel => {
            let mut cancel = prepare(
                "UPDATE timers SET state = 'cancelled', retry_at = NULL
                 WHERE instance = ?1 AND timer_id = ?2 AND state IN ('pending', 'claimed')",
            )?;
            for (instance, id) in &b.timers_cancelled {
                cancel.execute(params![instance, id]).map_err(native)?;
            }
        }
        Step::Arm => {
            let mut arm = prepare(
                "INSERT INTO timers (instance, timer_id, due, kind, state)
                 VALUES (?1, ?2, ?3, ?4, 'pending')
                 ON CONFLICT (instance, timer_id) DO UPDATE SET due = excluded.due,
                 kind = excluded.kind, state = 'pending', claimed_by = NULL, lease_until = NULL,
                 fired_at = NULL, refused_code = NULL, refused_message = NULL,
                 refused_at = NULL, retry_at = NULL",
            )?;
            for t in &b.timers_armed {
                arm.execute(params![t.instance, t.timer_id, t.due, t.kind])
                    .map_err(native)?;
            }
        }
        Step::Outbox => {
            let mut outbox = prepare(
                "INSERT INTO outbox (id, instance, channel, recipient, template, payload,
                 next_attempt_at, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)
                 ON CONFLICT (id) DO NOTHING",
            )?;
            for o in &b.outbox {
                outbox
                    .execute(params![
                        o.id,
                        o.instance,
                        o.channel,
                        o.recipient,
                        o.template,
                        o.payload.to_string(),
                        o.next_attempt_at,
                        o.created_at
                    ])
                    .map_err(native)?;
            }
        }
        Step::Keys => {
            let mut key = prepare(
                "INSERT INTO idempotency (key, instance, result, created_at, request)
                 VALUES (?1,?2,?3,?4,?5)",
            )?;
            for k in &b.idempotency {
                key.execute(params![k.key, k.instance, k.result, b.now, k.request])
                    .map_err(native)?;
            }
        }
        Step::Projects => {
            let mut project = prepare(
                "INSERT INTO web_projects (id, name, workflow_id, owner, fields, created_at)
                 VALUES (?1,?2,?3,?4,?5,?6) ON CONFLICT (id) DO NOTHING",
            )?;
            for p in &b.projects {
                project
                    .execute(params![
                        p.id,
                        p.name,
                        p.workflow_id,
                        p.owner,
                        p.fields,
                        p.created_at
                    ])
                    .map_err(native)?;
            }
            let mut link = prepare(
                "INSERT INTO web_project_instances (instance, project_id, workflow_id, def_version,
                 created_at) VALUES (?1,?2,?3,?4,?5) ON CONFLICT (instance) DO NOTHING",
            )?;
            for l in &b.project_links {
                link.execute(params![
                    l.instance,
                    l.project_id,
                    l.workflow_id,
                    l.def_version,
                    l.created_at
                ])
                .map_err(native)?;
            }
        }
        Step::Audit => {
            let mut audit = prepare(
                "INSERT INTO web_audit (id, at, user_name, remote, action, instance, outcome)
                 VALUES (?1,?2,?3,?4,?5,?6,?7) ON CONFLICT (id) DO NOTHING",
            )?;
            for a in &b.audit {
                audit
                    .execute(params![
                        a.id, a.at, a.user, a.remote, a.action, a.instance, a.outcome
                    ])
                    .map_err(native)?;
            }
        }
    }
    Ok(())
}

/// Replaces the read models of every instance the batch touched.
fn write_projections(tx: &rusqlite::Transaction<'_>, b: &Batch) -> Result<()> {
    let mut clear = [
        "DELETE FROM inbox WHERE instance = ?1",
        "DELETE FROM promises WHERE instance = ?1",
        "DELETE FROM elements WHERE instance = ?1",
    ]
    .map(|sql| tx.prepare_cached(sql).map_err(native))
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    let mut task = tx
        .prepare_cached(
            "INSERT INTO inbox (instance, task_id, workflow_id, node, stage, assignee, department,
             colour, due, priority, supervised, opened_at, addressees)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
        )
        .map_err(native)?;
    let mut promise = tx
        .prepare_cached(
            "INSERT INTO promises (instance, promise_id, material, state, colour, due)
             VALUES (?1,?2,?3,?4,?5,?6)",
        )
        .map_err(native)?;
    let mut element = tx
        .prepare_cached(
            "INSERT INTO elements (instance, stage, element, department, state, due)
             VALUES (?1,?2,?3,?4,?5,?6)",
        )
        .map_err(native)?;
    let mut delete_task = tx
        .prepare_cached("DELETE FROM inbox WHERE instance = ?1 AND task_id = ?2")
        .map_err(native)?;
    for w in &b.instances {
        // Only the rows that changed (see `InstanceWrite::row_changes`); a new instance has
        // nothing to clear.
        let c = w.row_changes();
        let stored = w.from_version > 0;
        for (clear, stmt) in [c.clear_tasks, c.replace_promises, c.replace_elements]
            .into_iter()
            .zip(clear.iter_mut())
        {
            if clear && stored {
                stmt.execute([&w.meta.id]).map_err(native)?;
            }
        }
        for t in &c.tasks_deleted {
            delete_task.execute(params![w.meta.id, t]).map_err(native)?;
        }
        let p = &w.projection;
        for t in c.tasks_inserted {
            task.execute(params![
                t.instance,
                t.task_id,
                t.workflow_id,
                t.node,
                t.stage,
                t.assignee,
                t.department,
                t.colour,
                t.due,
                t.priority,
                t.supervised,
                t.opened_at,
                addressees_json(t)?
            ])
            .map_err(native)?;
        }
        for x in p.promises.iter().filter(|_| c.replace_promises) {
            promise
                .execute(params![
                    x.instance,
                    x.promise_id,
                    x.material,
                    x.state,
                    x.colour,
                    x.due
                ])
                .map_err(native)?;
        }
        for x in p.elements.iter().filter(|_| c.replace_elements) {
            element
                .execute(params![
                    x.instance,
                    x.stage,
                    x.element,
                    x.department,
                    x.state,
                    x.due
                ])
                .map_err(native)?;
        }
    }
    Ok(())
}
