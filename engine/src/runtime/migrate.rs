//! Migration (迁移): moving a running instance from one published version of its workflow to
//! another, with an optional mapping of old node (and stage) ids to new ones.
//!
//! One pure function, [`plan`], answers everything a migration needs to know about one
//! instance: whether it can move and, if not, every reason ([`Blocker`]); and what moving does to
//! each open task, parallel step, promise, stage and element deadline ([`Change`]: kept with the
//! days used, re-limited under the new version's limits, opened, cancelled). The dry run reads
//! it ([`report`], which adds the timers the move re-arms); the command that moves the instance
//! ([`Command::Migrate`](super::Command::Migrate), decided by [`decide_migration`]) asks the same
//! function again on the state at that moment and refuses with its blockers, so the dry run and
//! the execution cannot disagree on a state they both saw.
//!
//! What a move keeps and what it changes, and why:
//! - **The history stays.** Nothing already recorded is rewritten; one `Migrated` event records
//!   from, to, the mapping and every clock whose limit changed, and `evolve` renames the mapped
//!   node and stage ids in the state so the instance reads under the new version's names.
//! - **Days used are kept.** A clock keeps when it opened, the days it has used, its stops and
//!   extensions; only the limit it counts against changes. A longer limit clears the warnings
//!   given (as an extension does) and cancels the escalations under way; a shorter one keeps the
//!   warnings given, and a deadline it moves into the past fires at once through the scheduler.
//! - **Commitments are kept.** A promise's deadline was agreed with the applicant under the old
//!   rule; it keeps it. Its material must still exist and be waivable under the new version.
//! - **Parallel steps keep their opinions.** A department that decided keeps its decision; a
//!   department the new version adds gets its task (if its `when` holds); a department the new
//!   version drops while the step is open blocks the move (its opinion would be lost).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::calendar::Calendar;
use crate::compile::{ChannelLimits, Definition, NodePlan};
use crate::limit::Limit;
use crate::model::NodeType;

use super::clock::Clock;
use super::command::{Command, CommandEnvelope};
use super::event::{ClockRef, Event, PromiseId, StageVisitId, StepId, TaskId, TaskKind, TimerKind};
use super::rejection::Rejection;
use super::state::{InstanceState, PromiseStatus, StageStatus, Status, StepStatus};

/// Old ids to new ones; an id not listed maps to itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// Node ids of the old version → node ids of the new one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<SmolStr, SmolStr>,
    /// Stage ids of the old version → stage ids of the new one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stages: BTreeMap<SmolStr, SmolStr>,
}

impl Mapping {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.stages.is_empty()
    }

    /// The new id of an old node.
    pub fn node<'m>(&'m self, old: &'m str) -> &'m str {
        self.nodes.get(old).map_or(old, SmolStr::as_str)
    }

    /// The new id of an old stage.
    pub fn stage<'m>(&'m self, old: &'m str) -> &'m str {
        self.stages.get(old).map_or(old, SmolStr::as_str)
    }
}

/// A mistake in what a migration was asked to do, before any instance is looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MappingProblem {
    /// The two versions belong to different workflows.
    DifferentWorkflow {
        from: SmolStr,
        to: SmolStr,
    },
    /// Both versions are the same one.
    SameVersion,
    /// A mapping key that is no node of the old version.
    UnknownOldNode {
        node: SmolStr,
    },
    /// A mapping value that is no node of the new version.
    UnknownNewNode {
        node: SmolStr,
        to: SmolStr,
    },
    UnknownOldStage {
        stage: SmolStr,
    },
    UnknownNewStage {
        stage: SmolStr,
        to: SmolStr,
    },
}

impl MappingProblem {
    pub fn code(&self) -> &'static str {
        match self {
            MappingProblem::DifferentWorkflow { .. } => "different_workflow",
            MappingProblem::SameVersion => "same_version",
            MappingProblem::UnknownOldNode { .. } => "unknown_old_node",
            MappingProblem::UnknownNewNode { .. } => "unknown_new_node",
            MappingProblem::UnknownOldStage { .. } => "unknown_old_stage",
            MappingProblem::UnknownNewStage { .. } => "unknown_new_stage",
        }
    }

    /// Where in the request the problem is (`mapping.nodes.intake`, `to`).
    pub fn at(&self) -> String {
        match self {
            MappingProblem::DifferentWorkflow { .. } | MappingProblem::SameVersion => "to".into(),
            MappingProblem::UnknownOldNode { node }
            | MappingProblem::UnknownNewNode { node, .. } => {
                format!("mapping.nodes.{node}")
            }
            MappingProblem::UnknownOldStage { stage }
            | MappingProblem::UnknownNewStage { stage, .. } => format!("mapping.stages.{stage}"),
        }
    }
}

/// Every mistake in a mapping between two definitions (empty: it may be used).
pub fn check_mapping(from: &Definition, to: &Definition, m: &Mapping) -> Vec<MappingProblem> {
    let mut out = Vec::new();
    if from.id() != to.id() {
        out.push(MappingProblem::DifferentWorkflow {
            from: SmolStr::new(from.id()),
            to: SmolStr::new(to.id()),
        });
        return out;
    }
    for (old, new) in &m.nodes {
        if from.node_ix(old).is_none() {
            out.push(MappingProblem::UnknownOldNode { node: old.clone() });
        } else if to.node_ix(new).is_none() {
            out.push(MappingProblem::UnknownNewNode {
                node: old.clone(),
                to: new.clone(),
            });
        }
    }
    for (old, new) in &m.stages {
        if from.plan.stage_ix(old).is_none() {
            out.push(MappingProblem::UnknownOldStage { stage: old.clone() });
        } else if to.plan.stage_ix(new).is_none() {
            out.push(MappingProblem::UnknownNewStage {
                stage: old.clone(),
                to: new.clone(),
            });
        }
    }
    out
}

/// Why one instance cannot move. Ids are the old version's unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Blocker {
    /// The instance has ended (or never started): there is nothing to move.
    NotRunning,
    /// The node the instance is at (or an open task's node) is not in the new version and the
    /// mapping does not name a replacement.
    NodeGone { node: SmolStr },
    /// The node maps to one of another type (a task to a parallel step ...).
    NodeKindChanged {
        node: SmolStr,
        to: SmolStr,
        was: NodeType,
        now: NodeType,
    },
    /// An open parallel step whose department (branch) the new version drops.
    BranchRemoved { node: SmolStr, branch: SmolStr },
    /// An open promise's material is not in the new version.
    MaterialGone { material: SmolStr },
    /// An open promise's material is red-line (红线) in the new version: it could not have been
    /// waived.
    MaterialRedLine { material: SmolStr },
    /// The node an open promise was made on no longer allows 容缺 in the new version, so its
    /// verification and breach have no rule.
    PromiseRuleGone { node: SmolStr, material: SmolStr },
    /// The open stage is not in the new version and not mapped.
    StageGone { stage: SmolStr },
    /// Under the new version the current node belongs to a stage the instance already closed.
    StageAlreadyClosed { node: SmolStr, stage: SmolStr },
    /// Under the new version the current node belongs to another stage than the one open.
    StageChanged {
        node: SmolStr,
        open: SmolStr,
        wants: SmolStr,
    },
    /// A stage the instance closed requires, under the new version, an element that is missing
    /// and may not be carried.
    ClosedStageLacksElement { stage: SmolStr, element: SmolStr },
    /// The instance's green channel is not in the new version.
    ChannelGone { channel: SmolStr },
    /// The new version requires a project field the project does not have (or has with another
    /// type).
    ProjectField { field: SmolStr },
}

impl Blocker {
    pub fn code(&self) -> &'static str {
        match self {
            Blocker::NotRunning => "not_running",
            Blocker::NodeGone { .. } => "node_gone",
            Blocker::NodeKindChanged { .. } => "node_kind_changed",
            Blocker::BranchRemoved { .. } => "branch_removed",
            Blocker::MaterialGone { .. } => "material_gone",
            Blocker::MaterialRedLine { .. } => "material_red_line",
            Blocker::PromiseRuleGone { .. } => "promise_rule_gone",
            Blocker::StageGone { .. } => "stage_gone",
            Blocker::StageAlreadyClosed { .. } => "stage_already_closed",
            Blocker::StageChanged { .. } => "stage_changed",
            Blocker::ClosedStageLacksElement { .. } => "closed_stage_lacks_element",
            Blocker::ChannelGone { .. } => "channel_gone",
            Blocker::ProjectField { .. } => "project_field",
        }
    }
}

/// What a change is about. Node and stage ids are the new version's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Subject {
    Task {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        node: SmolStr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<SmolStr>,
        kind: TaskKind,
    },
    Step {
        step: StepId,
        node: SmolStr,
    },
    Promise {
        promise: PromiseId,
        material: SmolStr,
    },
    Stage {
        visit: StageVisitId,
        stage: SmolStr,
    },
    Element {
        visit: StageVisitId,
        stage: SmolStr,
        element: SmolStr,
    },
    /// A node id the mapping renames (the instance is at it, or has tasks on it).
    Node {
        node: SmolStr,
    },
}

/// What moving does to a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    /// Unchanged: the same limit, the days used kept.
    Kept {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<Limit>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        used: Option<u32>,
    },
    /// Counted against the new version's limit, the days used kept.
    Relimited {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Limit>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Limit>,
        used: u32,
    },
    /// Opened by the move (a department the new version adds, an element deadline it adds).
    Opened {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<Limit>,
    },
    /// Ended by the move (an element deadline the new version no longer sets).
    Cancelled,
    /// Called by a new id.
    Renamed { from: SmolStr },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub subject: Subject,
    pub effect: Effect,
}

/// A clock the move gives a new limit (`Some`) or takes away (`None`), as the `Migrated` event
/// records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockChange {
    pub target: ClockRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<Clock>,
}

/// A department the move opens a task for: (step, the new node's index, the branch's index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BranchToOpen {
    pub step: StepId,
    pub node: usize,
    pub branch: usize,
}

/// Whether and how one instance moves (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationPlan {
    /// Empty when the instance can move.
    pub blockers: Vec<Blocker>,
    pub changes: Vec<Change>,
    pub(crate) clocks: Vec<ClockChange>,
    pub(crate) branches: Vec<BranchToOpen>,
}

impl MigrationPlan {
    pub fn can_move(&self) -> bool {
        self.blockers.is_empty()
    }
}

/// One timer a move cancels or arms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerChange {
    #[serde(flatten)]
    pub kind: TimerKind,
    /// The instant it was armed for (absent: the move arms it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::calendar::china_time::option"
    )]
    pub old_due: Option<Timestamp>,
    /// The instant it is armed for now (absent: the move cancels it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::calendar::china_time::option"
    )]
    pub new_due: Option<Timestamp>,
}

/// The dry run of one instance: the plan, and the timers the move re-arms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    pub can_move: bool,
    pub blockers: Vec<Blocker>,
    pub changes: Vec<Change>,
    pub timers: Vec<TimerChange>,
    /// Why the move would still be refused though nothing blocks it (a limit the calendar
    /// cannot count ...): the refusal's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Rejection>,
}

fn used(c: &Clock, cal: &Calendar, now: Timestamp) -> u32 {
    c.used_at(cal, now).unwrap_or(c.used)
}

/// The clock `old` counted against `limit` instead (`None`: no limit any more). A longer limit
/// clears the warnings given, as an extension does; a shorter one keeps them.
fn relimited(old: &Clock, limit: Limit) -> Clock {
    let mut c = old.clone();
    let longer = limit.amount > old.limit.amount || limit.unit != old.limit.unit;
    c.limit = limit;
    if longer {
        c.yellow_warned = false;
        c.red_warned = false;
    }
    c
}

/// Whether and how `st` (running on `from`) moves to `to` under `m`, at `now` (see the module
/// docs). `cal` is the calendar `to` counts on. Pure, and total: a state that does not fit
/// `from` gives blockers, not a panic.
pub fn plan(
    from: &Definition,
    to: &Definition,
    cal: &Calendar,
    st: &InstanceState,
    m: &Mapping,
    now: Timestamp,
) -> MigrationPlan {
    let mut p = MigrationPlan::default();
    if st.status != Status::Running {
        p.blockers.push(Blocker::NotRunning);
        return p;
    }
    let b = &to.plan;
    let channel = match &st.channel {
        Some(c) => match b.channel_ix(c) {
            Some(ix) => Some(ix),
            None => {
                p.blockers.push(Blocker::ChannelGone { channel: c.clone() });
                None
            }
        },
        None => None,
    };
    for (id, _, required, _) in &b.fields {
        if *required
            && st
                .project
                .get(id.as_str())
                .is_none_or(serde_json::Value::is_null)
        {
            p.blockers.push(Blocker::ProjectField { field: id.clone() });
        }
    }
    // A node of the old version, in the new one: its index, or the blocker.
    let node_in_b = |old: &SmolStr| -> Result<usize, Blocker> {
        to.node_ix(m.node(old))
            .ok_or_else(|| Blocker::NodeGone { node: old.clone() })
    };
    let kind_of = |d: &Definition, id: &str| {
        d.node_ix(id)
            .and_then(|i| d.plan.nodes.get(i))
            .map(|n| n.kind)
    };
    // What happens to one clock with the limit the new version gives it on this channel.
    let relimit =
        |p: &mut MigrationPlan, subject: Subject, old: Option<&Clock>, limits: &ChannelLimits| {
            clock_change(p, cal, now, subject, old, limits.get(channel));
        };
    let blocker = |p: &mut MigrationPlan, b: Blocker| {
        if !p.blockers.contains(&b) {
            p.blockers.push(b);
        }
    };
    // Where the flow is.
    if let Some(at) = &st.at {
        match node_in_b(at) {
            Ok(ix) => {
                let now_kind = b.nodes.get(ix).map(|n| n.kind);
                if let (Some(was), Some(now_k)) = (kind_of(from, at), now_kind)
                    && was != now_k
                {
                    blocker(
                        &mut p,
                        Blocker::NodeKindChanged {
                            node: at.clone(),
                            to: SmolStr::new(m.node(at)),
                            was,
                            now: now_k,
                        },
                    );
                }
                if m.node(at) != at.as_str() {
                    p.changes.push(Change {
                        subject: Subject::Node {
                            node: SmolStr::new(m.node(at)),
                        },
                        effect: Effect::Renamed { from: at.clone() },
                    });
                }
            }
            Err(e) => blocker(&mut p, e),
        }
    }
    // Open tasks outside parallel steps (a step's branches are looked at with the step).
    for t in st.open_tasks().filter(|t| t.spec.step.is_none()) {
        let ix = match node_in_b(&t.spec.node) {
            Ok(ix) => ix,
            Err(e) => {
                blocker(&mut p, e);
                continue;
            }
        };
        let Some(n) = b.nodes.get(ix) else { continue };
        let subject = Subject::Task {
            task: Some(t.spec.task),
            node: n.id.clone(),
            branch: None,
            kind: t.spec.kind,
        };
        match t.spec.kind {
            TaskKind::Work => {
                if let Some(changed) = kind_changed(&t.spec.node, n, NodeType::Task) {
                    blocker(&mut p, changed);
                    continue;
                }
                relimit(&mut p, subject, t.spec.clock.as_ref(), &n.limits);
            }
            TaskKind::Verify => {
                if n.conditional.is_none() {
                    let material = t
                        .spec
                        .promise
                        .and_then(|pid| st.promise(pid))
                        .map(|q| q.material.clone())
                        .unwrap_or_default();
                    blocker(
                        &mut p,
                        Blocker::PromiseRuleGone {
                            node: t.spec.node.clone(),
                            material,
                        },
                    );
                    continue;
                }
                p.changes
                    .push(kept(subject, t.spec.clock.as_ref(), cal, now));
            }
            TaskKind::Cosign => p
                .changes
                .push(kept(subject, t.spec.clock.as_ref(), cal, now)),
        }
    }
    // Open parallel steps: the step's clock, each department's task, the departments added.
    for s in st.steps.iter().filter(|s| s.status == StepStatus::Open) {
        let ix = match node_in_b(&s.node) {
            Ok(ix) => ix,
            Err(e) => {
                blocker(&mut p, e);
                continue;
            }
        };
        let Some(n) = b.nodes.get(ix) else { continue };
        if let Some(changed) = kind_changed(&s.node, n, NodeType::Parallel) {
            blocker(&mut p, changed);
            continue;
        }
        let subject = Subject::Step {
            step: s.id,
            node: n.id.clone(),
        };
        relimit(&mut p, subject, s.clock.as_ref(), &n.limits);
        let mut present: Vec<&SmolStr> = Vec::new();
        for tid in &s.tasks {
            let Some(t) = st.task(*tid) else { continue };
            let Some(branch) = &t.spec.branch else {
                continue;
            };
            present.push(branch);
            let Some(bp) = n.branches.iter().find(|x| x.id == *branch) else {
                blocker(
                    &mut p,
                    Blocker::BranchRemoved {
                        node: s.node.clone(),
                        branch: branch.clone(),
                    },
                );
                continue;
            };
            if !t.is_open() {
                continue;
            }
            let subject = Subject::Task {
                task: Some(t.spec.task),
                node: n.id.clone(),
                branch: Some(branch.clone()),
                kind: t.spec.kind,
            };
            relimit(&mut p, subject, t.spec.clock.as_ref(), &bp.limits);
        }
        for (bix, bp) in n.branches.iter().enumerate() {
            if present.contains(&&bp.id) {
                continue;
            }
            if let Some(w) = &bp.when
                && !w.eval_bool(&st.project).unwrap_or(false)
            {
                continue;
            }
            p.changes.push(Change {
                subject: Subject::Task {
                    task: None,
                    node: n.id.clone(),
                    branch: Some(bp.id.clone()),
                    kind: TaskKind::Work,
                },
                effect: Effect::Opened {
                    limit: bp.limits.get(channel),
                },
            });
            p.branches.push(BranchToOpen {
                step: s.id,
                node: ix,
                branch: bix,
            });
        }
    }
    // Open promises keep their deadline; their material and rule must still be there.
    for q in st
        .promises
        .iter()
        .filter(|q| q.status != PromiseStatus::Verified && !q.breached)
    {
        match b.materials.get(&q.material) {
            None => blocker(
                &mut p,
                Blocker::MaterialGone {
                    material: q.material.clone(),
                },
            ),
            Some(true) => blocker(
                &mut p,
                Blocker::MaterialRedLine {
                    material: q.material.clone(),
                },
            ),
            Some(false) => {
                let node = st
                    .pre_approvals
                    .get(q.pre.ix())
                    .map(|pre| pre.node.clone())
                    .unwrap_or_default();
                let rule = to
                    .node_ix(m.node(&node))
                    .and_then(|ix| b.nodes.get(ix))
                    .and_then(|n| n.conditional.as_ref());
                if rule.is_none() {
                    blocker(
                        &mut p,
                        Blocker::PromiseRuleGone {
                            node,
                            material: q.material.clone(),
                        },
                    );
                } else {
                    p.changes.push(Change {
                        subject: Subject::Promise {
                            promise: q.id,
                            material: q.material.clone(),
                        },
                        effect: Effect::Kept {
                            limit: Some(q.clock.limit),
                            used: Some(used(&q.clock, cal, now)),
                        },
                    });
                }
            }
        }
    }
    // Stages: the closed ones must not need what is missing; the open one must still exist,
    // be where the current node is, and its limits and element deadlines follow the new rule.
    let attached = |e: &str| st.elements.iter().any(|x| x.element == e);
    for v in st.stages.iter().filter(|v| v.status == StageStatus::Closed) {
        let Some(sp) = b.stage_ix(m.stage(&v.stage)).and_then(|i| b.stages.get(i)) else {
            continue;
        };
        for e in &sp.elements {
            if !attached(&e.element) && !e.may_carry {
                blocker(
                    &mut p,
                    Blocker::ClosedStageLacksElement {
                        stage: sp.id.clone(),
                        element: e.element.clone(),
                    },
                );
            }
        }
    }
    if let Some(v) = st.current_stage() {
        let new_id = m.stage(&v.stage);
        match b
            .stage_ix(new_id)
            .and_then(|i| b.stages.get(i).map(|s| (i, s)))
        {
            None => blocker(
                &mut p,
                Blocker::StageGone {
                    stage: v.stage.clone(),
                },
            ),
            Some((six, sp)) => {
                if new_id != v.stage.as_str() {
                    p.changes.push(Change {
                        subject: Subject::Stage {
                            visit: v.id,
                            stage: sp.id.clone(),
                        },
                        effect: Effect::Renamed {
                            from: v.stage.clone(),
                        },
                    });
                }
                if let Some(at) = &st.at
                    && let Some(node_stage) = to
                        .node_ix(m.node(at))
                        .and_then(|ix| b.nodes.get(ix))
                        .and_then(|n| n.stage)
                    && node_stage != six
                    && let Some(wants) = b.stages.get(node_stage)
                {
                    let closed_before = st.stages.iter().any(|x| {
                        x.status == StageStatus::Closed && m.stage(&x.stage) == wants.id.as_str()
                    });
                    blocker(
                        &mut p,
                        if closed_before {
                            Blocker::StageAlreadyClosed {
                                node: at.clone(),
                                stage: wants.id.clone(),
                            }
                        } else {
                            Blocker::StageChanged {
                                node: at.clone(),
                                open: sp.id.clone(),
                                wants: wants.id.clone(),
                            }
                        },
                    );
                }
                let subject = Subject::Stage {
                    visit: v.id,
                    stage: sp.id.clone(),
                };
                relimit(&mut p, subject, v.clock.as_ref(), &sp.limits);
                for e in &sp.elements {
                    if attached(&e.element) {
                        continue;
                    }
                    let subject = Subject::Element {
                        visit: v.id,
                        stage: sp.id.clone(),
                        element: e.element.clone(),
                    };
                    let old = v
                        .element_clocks
                        .iter()
                        .find(|(x, _)| *x == e.element)
                        .map(|(_, c)| c);
                    match (old, e.within) {
                        (None, Some(l)) => {
                            p.changes.push(Change {
                                subject,
                                effect: Effect::Opened { limit: Some(l) },
                            });
                            p.clocks.push(ClockChange {
                                target: ClockRef::Element {
                                    stage: v.id,
                                    element: e.element.clone(),
                                },
                                clock: Some(Clock::new(now, l)),
                            });
                        }
                        (None, None) => {}
                        (Some(_), _) => clock_change(&mut p, cal, now, subject, old, e.within),
                    }
                }
                for (e, _) in &v.element_clocks {
                    if sp.elements.iter().any(|x| x.element == *e) || attached(e) {
                        continue;
                    }
                    p.changes.push(Change {
                        subject: Subject::Element {
                            visit: v.id,
                            stage: sp.id.clone(),
                            element: e.clone(),
                        },
                        effect: Effect::Cancelled,
                    });
                    p.clocks.push(ClockChange {
                        target: ClockRef::Element {
                            stage: v.id,
                            element: e.clone(),
                        },
                        clock: None,
                    });
                }
            }
        }
    }
    p
}

/// The blocker when the node an open task or step waits at, `node` in the old version, is `n`
/// in the new one and no longer of the kind `was`.
fn kind_changed(node: &SmolStr, n: &NodePlan, was: NodeType) -> Option<Blocker> {
    (n.kind != was).then(|| Blocker::NodeKindChanged {
        node: node.clone(),
        to: n.id.clone(),
        was,
        now: n.kind,
    })
}

fn kept(subject: Subject, clock: Option<&Clock>, cal: &Calendar, now: Timestamp) -> Change {
    Change {
        subject,
        effect: Effect::Kept {
            limit: clock.map(|c| c.limit),
            used: clock.map(|c| used(c, cal, now)),
        },
    }
}

impl Subject {
    /// The clock of what this names, if it has one.
    fn clock(&self) -> Option<ClockRef> {
        Some(match self {
            Subject::Task { task, .. } => ClockRef::Task((*task)?),
            Subject::Step { step, .. } => ClockRef::Step(*step),
            Subject::Promise { promise, .. } => ClockRef::Promise(*promise),
            Subject::Stage { visit, .. } => ClockRef::Stage(*visit),
            Subject::Element { visit, element, .. } => ClockRef::Element {
                stage: *visit,
                element: element.clone(),
            },
            Subject::Node { .. } => return None,
        })
    }
}

/// Records what happens to one clock: kept when the limit is the same, re-limited (or removed)
/// otherwise, opened from `now` when only the new version sets a limit.
fn clock_change(
    p: &mut MigrationPlan,
    cal: &Calendar,
    now: Timestamp,
    subject: Subject,
    old: Option<&Clock>,
    limit: Option<Limit>,
) {
    let Some(target) = subject.clock() else {
        return p.changes.push(kept(subject, old, cal, now));
    };
    match (old, limit) {
        (Some(c), Some(l)) if c.limit == l => p.changes.push(kept(subject, Some(c), cal, now)),
        (None, None) => p.changes.push(kept(subject, None, cal, now)),
        (Some(c), l) => {
            p.changes.push(Change {
                subject,
                effect: Effect::Relimited {
                    from: Some(c.limit),
                    to: l,
                    used: used(c, cal, now),
                },
            });
            p.clocks.push(ClockChange {
                target,
                clock: l.map(|l| relimited(c, l)),
            });
        }
        (None, Some(l)) => {
            p.changes.push(Change {
                subject,
                effect: Effect::Relimited {
                    from: None,
                    to: Some(l),
                    used: 0,
                },
            });
            p.clocks.push(ClockChange {
                target,
                clock: Some(Clock::new(now, l)),
            });
        }
    }
}

/// Decides a [`Command::Migrate`] on an instance running on `from`: the `Migrated` event, the
/// timers of every re-limited clock cancelled and armed again, a task for every department the
/// new version adds to an open parallel step. Refused with the [`plan`]'s blockers when the
/// instance cannot move (nothing is recorded), or with the mapping's problems.
pub fn decide_migration(
    from: &Definition,
    to: &Definition,
    cal: &Calendar,
    st: &InstanceState,
    cmd: &CommandEnvelope,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let Command::Migrate {
        from: from_version,
        to: to_version,
        mapping,
    } = &cmd.command
    else {
        return Err(Rejection::Internal(
            "decide_migration takes a migrate command".into(),
        ));
    };
    if !super::policy::may_migrate(&cmd.actor) {
        return Err(Rejection::NotAuthorised {
            actor: cmd.actor.name.clone(),
            what: "move instances to another version (policy staff only)".into(),
        });
    }
    let mut problems = check_mapping(from, to, mapping);
    if from_version == to_version {
        problems.push(MappingProblem::SameVersion);
    }
    if !problems.is_empty() {
        return Err(Rejection::InvalidMapping { problems });
    }
    let p = plan(from, to, cal, st, mapping, now);
    if !p.can_move() {
        return Err(Rejection::MigrationBlocked {
            blockers: p.blockers,
        });
    }
    super::decide::migration(
        to,
        cal,
        st,
        &cmd.actor,
        now,
        &p,
        *from_version,
        *to_version,
        mapping,
    )
}

/// The dry run of one instance: [`plan`], and when it can move, the timers the move would
/// cancel and arm (from the very events [`decide_migration`] would record).
#[allow(clippy::too_many_arguments)]
pub fn report(
    from: &Definition,
    to: &Definition,
    cal: &Calendar,
    st: &InstanceState,
    cmd: &CommandEnvelope,
    now: Timestamp,
) -> MigrationReport {
    let mapping = match &cmd.command {
        Command::Migrate { mapping, .. } => mapping.clone(),
        _ => Mapping::default(),
    };
    let p = plan(from, to, cal, st, &mapping, now);
    let mut r = MigrationReport {
        can_move: p.can_move(),
        blockers: p.blockers.clone(),
        changes: p.changes.clone(),
        timers: Vec::new(),
        refused: None,
    };
    if !r.can_move {
        return r;
    }
    match decide_migration(from, to, cal, st, cmd, now) {
        Ok(events) => r.timers = timer_changes(st, &events),
        Err(e) => {
            r.can_move = false;
            if let Rejection::MigrationBlocked { blockers } = &e {
                r.blockers = blockers.clone();
            }
            r.refused = Some(e);
        }
    }
    r
}

/// The timers a list of events cancels and arms, against the state before them.
pub fn timer_changes(st: &InstanceState, events: &[Event]) -> Vec<TimerChange> {
    let mut out: Vec<TimerChange> = Vec::new();
    for e in events {
        match e {
            Event::TimerCancelled { timer } => {
                if let Some(t) = st.timer(*timer) {
                    out.push(TimerChange {
                        kind: t.kind.clone(),
                        old_due: Some(t.due),
                        new_due: None,
                    });
                }
            }
            Event::TimerArmed(t) => {
                match out
                    .iter_mut()
                    .find(|c| c.kind == t.kind && c.new_due.is_none())
                {
                    Some(c) => c.new_due = Some(t.due),
                    None => out.push(TimerChange {
                        kind: t.kind.clone(),
                        old_due: None,
                        new_due: Some(t.due),
                    }),
                }
            }
            _ => {}
        }
    }
    out
}
