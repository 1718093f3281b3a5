//! Migrations (迁移) of running instances from one version of a workflow to another, through the
//! durable command path, decided by the engine.
//!
//! A dry run ([`dry_run`]) folds each running instance of the old version and asks the engine's
//! pure [`plan`](shenpi_engine::runtime::migrate::plan) (through `migrate::report`) whether it
//! can move and what moving does. An execution ([`execute`]) asks the same again on each
//! instance's state at that moment and sends the instances that can move one
//! `Command::Migrate` each, keyed `migrate:<run id>:<instance>`: a run interrupted by a crash and
//! asked again with its id, or run by two nodes at once, moves each instance once. The engine
//! decides every command against the state it is applied to, so an instance that changed
//! between the check and its command is refused (and reported) rather than half-moved.
//! Instances that cannot move are not sent anything and stay untouched.
//!
//! An execution may carry what its dry run saw (each instance's version and verdict): an
//! instance that changed since is re-checked and reported with both verdicts, and only the
//! instances the dry run showed as movable are moved (what policy staff confirmed).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shenpi_engine::runtime::migrate::{
    Blocker, Mapping, MappingProblem, MigrationReport, check_mapping, report,
};
use shenpi_engine::runtime::{Actor, Command, CommandEnvelope, InstanceState, Rejection, replay};
use tokio::task::JoinSet;

use crate::bus::{CommandBus, CommandError, Submit};
use crate::engine_machine::{EngineContext, EngineMachine, timestamp};
use crate::machine::Machine as _;
use crate::store::version_migrations::MigrationRow;
use crate::store::{Db, DefinitionStore, EventStore, InstanceRow, Millis, StoreError};

/// Commands in flight at once during an execution.
pub const CONCURRENCY: usize = 64;

/// What a migration is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationAsk {
    pub workflow: String,
    pub from: i64,
    pub to: i64,
    /// The workflow of `to`, when not `workflow` (which is refused: a migration stays within
    /// one workflow).
    #[serde(default)]
    pub to_workflow: Option<String>,
    #[serde(default)]
    pub mapping: Mapping,
    /// Only these instances (default: every running instance on `from`).
    #[serde(default)]
    pub instances: Option<Vec<String>>,
}

/// Why a migration could not run at all; nothing was run.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("workflow {workflow} has no version {version}")]
    NoVersion { workflow: String, version: i64 },
    #[error("the mapping has {} problem(s)", .0.len())]
    Mapping(Vec<MappingProblem>),
    #[error("version {0} does not compile on this server: {1}")]
    Compile(i64, String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The dry run of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceCheck {
    pub instance: String,
    /// The instance's version (events recorded) when checked.
    pub version: i64,
    #[serde(flatten)]
    pub report: MigrationReport,
}

/// What the dry run showed of one instance, sent back with an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub version: i64,
    pub can_move: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Moved to the new version (its history records it).
    Moved,
    /// Cannot move: untouched.
    Blocked,
    /// Could move, but the dry run did not show it as movable: untouched.
    Unconfirmed,
    /// The command failed (storage, a refusal other than a blocker): untouched; asking the run
    /// again tries it again.
    Failed,
}

/// What an execution did to one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceResult {
    pub instance: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The instance's version when re-checked.
    pub version: i64,
    /// Events the move recorded.
    #[serde(default)]
    pub events: i64,
    /// What the dry run showed, when the instance changed since (or was not in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Seen>,
    /// The instance changed since the dry run (another version, or not in it).
    #[serde(default)]
    pub changed_since_dry_run: bool,
    /// The re-check's verdict.
    pub can_move: bool,
}

/// The context of a version, compiled and registered from the database if needed.
pub async fn context(
    db: &Db,
    machine: &EngineMachine,
    workflow: &str,
    version: i64,
) -> Result<Arc<EngineContext>, MigrateError> {
    if let Some(c) = machine.get(workflow, version) {
        return Ok(c);
    }
    let row = db
        .definition(workflow, version)
        .await?
        .ok_or_else(|| MigrateError::NoVersion {
            workflow: workflow.to_string(),
            version,
        })?;
    machine
        .register(&row)
        .map_err(|e| MigrateError::Compile(version, e))?;
    machine
        .get(workflow, version)
        .ok_or_else(|| MigrateError::Compile(version, "did not register".into()))
}

/// Both versions, and the mapping checked: every problem, or nothing to complain about.
async fn versions(
    db: &Db,
    machine: &EngineMachine,
    ask: &MigrationAsk,
) -> Result<(Arc<EngineContext>, Arc<EngineContext>), MigrateError> {
    let a = context(db, machine, &ask.workflow, ask.from).await?;
    let b = context(
        db,
        machine,
        ask.to_workflow.as_deref().unwrap_or(&ask.workflow),
        ask.to,
    )
    .await?;
    let mut problems = check_mapping(&a.def, &b.def, &ask.mapping);
    if ask.from == ask.to {
        problems.push(MappingProblem::SameVersion);
    }
    if !problems.is_empty() {
        return Err(MigrateError::Mapping(problems));
    }
    Ok((a, b))
}

fn command(ask: &MigrationAsk, actor: &Actor) -> CommandEnvelope {
    CommandEnvelope {
        actor: actor.clone(),
        command: Command::Migrate {
            from: u32::try_from(ask.from).unwrap_or(u32::MAX),
            to: u32::try_from(ask.to).unwrap_or(u32::MAX),
            mapping: ask.mapping.clone(),
        },
    }
}

/// An instance's row and state, folded from its stored events.
pub async fn state_of(
    db: &Db,
    instance: &str,
) -> Result<Option<(InstanceRow, InstanceState)>, StoreError> {
    let Some((row, events)) = db.load(instance, 0).await? else {
        return Ok(None);
    };
    let mut parsed = Vec::with_capacity(events.len());
    for e in &events {
        let ev = shenpi_engine::runtime::event::decode_event(e.format, &e.body)
            .map_err(|err| StoreError::Corrupt(format!("event {}#{}: {err}", e.instance, e.seq)))?;
        parsed.push(ev);
    }
    Ok(Some((row, replay(parsed.iter()))))
}

async fn targets(db: &Db, ask: &MigrationAsk) -> Result<Vec<String>, StoreError> {
    match &ask.instances {
        Some(list) => Ok(list.clone()),
        None => db.running_instances_on(&ask.workflow, ask.from).await,
    }
}

/// The engine's verdict on one instance as it is stored now.
fn check(
    a: &EngineContext,
    b: &EngineContext,
    ask: &MigrationAsk,
    row: &InstanceRow,
    st: &InstanceState,
    cmd: &CommandEnvelope,
    now: Millis,
) -> MigrationReport {
    if row.meta.workflow_id != ask.workflow || row.meta.def_version != ask.from {
        // Listed by hand, but on another workflow or version: nothing to move from.
        return MigrationReport {
            can_move: false,
            blockers: vec![Blocker::NotRunning],
            changes: Vec::new(),
            timers: Vec::new(),
            refused: Some(Rejection::NotOnVersion {
                runs_on: u32::try_from(row.meta.def_version).unwrap_or(u32::MAX),
                asked: u32::try_from(ask.from).unwrap_or(u32::MAX),
            }),
        };
    }
    report(&a.def, &b.def, &b.cal, st, cmd, timestamp(now))
}

/// The dry run: for every instance the migration concerns, whether it can move and what moving
/// does. Changes nothing.
pub async fn dry_run(
    db: &Db,
    machine: &EngineMachine,
    ask: &MigrationAsk,
    actor: &Actor,
    now: Millis,
) -> Result<Vec<InstanceCheck>, MigrateError> {
    let (a, b) = versions(db, machine, ask).await?;
    let cmd = command(ask, actor);
    let mut out = Vec::new();
    for id in targets(db, ask).await? {
        let Some((row, st)) = state_of(db, &id).await? else {
            continue;
        };
        let report = check(&a, &b, ask, &row, &st, &cmd, now);
        out.push(InstanceCheck {
            instance: id,
            version: row.version,
            report,
        });
    }
    Ok(out)
}

/// The idempotency key of one instance's move in a run.
pub fn key(run: &str, instance: &str) -> String {
    format!("migrate:{run}:{instance}")
}

/// Executes a migration as run `id` (the same id asked again finishes the same run; each
/// instance moves at most once under it). `seen` is what the dry run showed, if the caller
/// sends it. Records the run and what became of each instance.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    bus: &CommandBus<EngineMachine>,
    db: &Db,
    machine: &EngineMachine,
    ask: &MigrationAsk,
    actor: &Actor,
    id: &str,
    seen: Option<&HashMap<String, Seen>>,
    now: Millis,
) -> Result<(MigrationRow, Vec<InstanceResult>), MigrateError> {
    let (a, b) = versions(db, machine, ask).await?;
    let cmd = command(ask, actor);
    let mapping = serde_json::to_string(&ask.mapping).unwrap_or_else(|_| "{}".into());
    db.start_migration(&MigrationRow {
        id: id.to_string(),
        workflow_id: ask.workflow.clone(),
        from_version: ask.from,
        to_version: ask.to,
        mapping,
        requested_by: actor.name.to_string(),
        started_at: now,
        finished_at: None,
        moved: 0,
        blocked: 0,
        failed: 0,
        result: None,
    })
    .await?;
    let mut ids = targets(db, ask).await?;
    if let Some(seen) = seen {
        // An instance the dry run showed but that has left the version since is reported too.
        for i in seen.keys() {
            if !ids.contains(i) {
                ids.push(i.clone());
            }
        }
    }
    let mut results: Vec<InstanceResult> = Vec::new();
    let mut running: JoinSet<InstanceResult> = JoinSet::new();
    let mut todo = ids.into_iter();
    loop {
        while running.len() < CONCURRENCY {
            let Some(instance) = todo.next() else { break };
            let Some((row, st)) = state_of(db, &instance).await? else {
                continue;
            };
            let report = check(&a, &b, ask, &row, &st, &cmd, now);
            let dry = seen.and_then(|s| s.get(&instance).copied());
            let changed = seen.is_some() && dry.is_none_or(|d| d.version != row.version);
            let mut r = InstanceResult {
                instance: instance.clone(),
                outcome: Outcome::Blocked,
                blockers: report.blockers.clone(),
                error: report.refused.as_ref().map(|e| e.to_string()),
                version: row.version,
                events: 0,
                dry_run: dry.filter(|_| changed),
                changed_since_dry_run: changed,
                can_move: report.can_move,
            };
            // An instance already moved by an earlier attempt of this run answers from its key.
            let moved_before = row.meta.def_version == ask.to;
            if !report.can_move && !moved_before {
                results.push(r);
                continue;
            }
            if seen.is_some() && !dry.is_some_and(|d| d.can_move) && !moved_before {
                r.outcome = Outcome::Unconfirmed;
                results.push(r);
                continue;
            }
            let (bus, cmd, key) = (bus.clone(), cmd.clone(), key(id, &instance));
            running.spawn(async move {
                let answer = bus
                    .submit(Submit {
                        instance: instance.clone(),
                        start: None,
                        key: Some(key),
                        expected_version: None,
                        command: cmd,
                        audit: None,
                        project: None,
                    })
                    .await;
                match answer {
                    Ok(receipt) => {
                        r.outcome = Outcome::Moved;
                        r.events = receipt.events;
                        r.blockers.clear();
                        r.error = None;
                        r.can_move = true;
                    }
                    Err(CommandError::Rejected(rej)) => {
                        let engine: Option<Rejection> = serde_json::from_value(rej.detail).ok();
                        match engine {
                            Some(Rejection::MigrationBlocked { blockers }) => {
                                r.outcome = Outcome::Blocked;
                                r.blockers = blockers;
                                r.can_move = false;
                                r.changed_since_dry_run = true;
                            }
                            Some(e @ Rejection::NotOnVersion { .. }) => {
                                r.outcome = Outcome::Blocked;
                                r.error = Some(e.to_string());
                                r.can_move = false;
                            }
                            _ => {
                                r.outcome = Outcome::Failed;
                                r.error = Some(rej.message);
                            }
                        }
                    }
                    Err(e) => {
                        r.outcome = Outcome::Failed;
                        r.error = Some(e.to_string());
                    }
                }
                r
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok(r) => results.push(r),
            Err(e) => tracing::warn!(run = id, error = %e, "a migration task failed"),
        }
    }
    results.sort_by(|x, y| x.instance.cmp(&y.instance));
    let count = |o: Outcome| {
        i64::try_from(results.iter().filter(|r| r.outcome == o).count()).unwrap_or(i64::MAX)
    };
    let totals = (
        count(Outcome::Moved),
        count(Outcome::Blocked) + count(Outcome::Unconfirmed),
        count(Outcome::Failed),
    );
    let text = serde_json::to_string(&results).unwrap_or_else(|_| "[]".into());
    db.finish_migration(id, now, totals, &text).await?;
    let row = db
        .migration(id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("migration {id} was not recorded")))?;
    Ok((row, results))
}
