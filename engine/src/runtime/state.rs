//! The state of one instance: the fold of its events.
//!
//! Everything here is derived from events by [`apply`] alone; no field is set anywhere else. The
//! state keeps node ids (strings), never graph indices, so a stored state means the same after
//! recompiling. Closed tasks, steps and stage visits stay in their lists (ids are indices), which
//! is what lets a second approve of a task say "already decided" rather than "unknown task".

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::compile::Party;
use crate::model::Outcome;

use super::clock::{Clock, Colour};
use super::event::{
    CancelReason, ClockRef, CopyId, Decision, Event, OpenedTask, OutstandingId, PreApprovalId,
    PromiseId, SignOrder, StageVisitId, StepId, TaskId, TaskKind, Timer, TimerId, TimerKind,
};
use super::migrate::{ClockChange, Mapping};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    NotStarted,
    Running,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Decided,
    Cancelled,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    #[serde(flatten)]
    pub spec: OpenedTask,
    pub status: TaskStatus,
    pub decision: Option<Decision>,
    pub decided_by: Option<SmolStr>,
    /// The 驳回 target of a reject.
    pub reject_to: Option<SmolStr>,
    /// The instance version at which the task was decided (orders decisions).
    #[serde(default)]
    pub decided_seq: u64,
    pub cancelled: Option<CancelReason>,
    pub claimed_by: Option<SmolStr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegates: Vec<SmolStr>,
    #[serde(default)]
    pub suspended: bool,
    /// Co-signers' tasks (加签) of this task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosigners: Vec<TaskId>,
    /// 委派: the user asked for an opinion; the task is theirs until they answer.
    pub consulting: Option<SmolStr>,
    /// 前加签: the open tasks of signers who decide before the holder; the holder waits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting: Vec<TaskId>,
    /// 后加签: the users whose tasks open when the holder approves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_signers: Vec<SmolStr>,
}

impl Task {
    pub fn is_open(&self) -> bool {
        self.status == TaskStatus::Open
    }

    /// Whether the holder waits for a signer added before them (前加签).
    pub fn is_awaiting(&self) -> bool {
        !self.awaiting.is_empty()
    }
}

/// One 抄送: who sent it to whom, and who of them has opened the instance since.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarbonCopy {
    pub id: CopyId,
    pub task: Option<TaskId>,
    pub to: Vec<SmolStr>,
    pub by: SmolStr,
    pub text: Option<String>,
    /// The recipients who have read it, in the order they did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_by: Vec<SmolStr>,
}

impl CarbonCopy {
    /// Whether `user` received this copy and has not read it yet.
    pub fn unread_by(&self, user: &str) -> bool {
        self.to.iter().any(|u| u == user) && !self.read_by.iter().any(|u| u == user)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Open,
    Approved,
    Rejected,
    /// 拿回: the approval that led into the step was taken back before anyone acted in it.
    Withdrawn,
}

/// One opening (round) of a parallel step.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: StepId,
    pub node: SmolStr,
    pub round: u32,
    pub lead: Option<SmolStr>,
    pub clock: Option<Clock>,
    pub status: StepStatus,
    /// The branch tasks of this round.
    pub tasks: Vec<TaskId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreApproval {
    pub id: PreApprovalId,
    pub task: TaskId,
    pub node: SmolStr,
    pub materials: Vec<SmolStr>,
    pub by: SmolStr,
    /// Turned into a formal approval (every promise verified).
    pub formal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromiseStatus {
    /// Waiting for the applicant to supply the material.
    Open,
    /// Supplied; a verification task checks it.
    Supplied,
    Verified,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    pub id: PromiseId,
    pub pre: PreApprovalId,
    pub material: SmolStr,
    pub clock: Clock,
    pub status: PromiseStatus,
    #[serde(default)]
    pub breached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_task: Option<TaskId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Open,
    Closed,
    /// Left backwards by a 驳回.
    Left,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageVisit {
    pub id: StageVisitId,
    pub stage: SmolStr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<Clock>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub element_clocks: Vec<(SmolStr, Clock)>,
    pub status: StageStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedElement {
    pub element: SmolStr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageVisitId>,
    pub by: SmolStr,
    pub fields: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outstanding {
    pub id: OutstandingId,
    pub stage: SmolStr,
    pub element: SmolStr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<Clock>,
    pub resolved: bool,
}

/// One item put on a leader's supervision list (挂牌督办), until its 销号.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    pub target: ClockRef,
    /// The leader role it went to (the department's `leader`), if the workflow names one.
    pub leader: Option<SmolStr>,
    /// Who resolved it (销号), and how.
    pub resolved_by: Option<SmolStr>,
    pub note: Option<String>,
}

impl Supervision {
    pub fn is_resolved(&self) -> bool {
        self.resolved_by.is_some()
    }
}

/// A 补正 in progress: the case is with the applicant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Returned {
    pub task: TaskId,
    pub by: SmolStr,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<SmolStr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplied: Vec<SmolStr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<ClockRef>,
}

/// The fold of an instance's events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// Number of events applied (the optimistic-concurrency version).
    pub version: u64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default)]
    pub workflow: SmolStr,
    #[serde(default)]
    pub applicant: SmolStr,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::calendar::china_time::option"
    )]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    pub project: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<SmolStr>,
    #[serde(default)]
    pub priority: i32,
    /// The node the flow is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<SmolStr>,
    /// The flow reached an end with this outcome (the instance may still wait on promises).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_end: Option<Outcome>,
    #[serde(default)]
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub pre_approvals: Vec<PreApproval>,
    #[serde(default)]
    pub promises: Vec<Promise>,
    #[serde(default)]
    pub stages: Vec<StageVisit>,
    #[serde(default)]
    pub elements: Vec<AttachedElement>,
    #[serde(default)]
    pub outstanding: Vec<Outstanding>,
    /// Armed timers (not yet fired or cancelled).
    #[serde(default)]
    pub timers: Vec<Timer>,
    #[serde(default)]
    pub next_timer: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned: Option<Returned>,
    /// Materials supplied outside promises (during a 补正).
    #[serde(default)]
    pub supplied: Vec<SmolStr>,
    /// Tasks on the leader's supervision list (挂牌督办), until resolved (销号).
    #[serde(default)]
    pub supervised: Vec<TaskId>,
    /// Everything ever put under supervision (tasks, steps, promises, stages, outstanding
    /// items), resolved or not, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supervision: Vec<Supervision>,
    /// Credit marks (信用记录) recorded against the applicant.
    #[serde(default)]
    pub credit_marks: Vec<(PromiseId, SmolStr)>,
    /// Copies sent (抄送), with their read marks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CarbonCopy>,
}

impl InstanceState {
    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(id.ix())
    }

    pub fn step(&self, id: StepId) -> Option<&Step> {
        self.steps.get(id.ix())
    }

    pub fn promise(&self, id: PromiseId) -> Option<&Promise> {
        self.promises.get(id.ix())
    }

    /// The open stage visit, if any.
    pub fn current_stage(&self) -> Option<&StageVisit> {
        self.stages.last().filter(|s| s.status == StageStatus::Open)
    }

    pub fn open_tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().filter(|t| t.is_open())
    }

    pub fn timer(&self, id: TimerId) -> Option<&Timer> {
        self.timers.iter().find(|t| t.id == id)
    }

    /// The latest supervision (挂牌督办) of a thing, resolved or not.
    pub fn supervision_of(&self, target: &ClockRef) -> Option<&Supervision> {
        self.supervision.iter().rev().find(|s| s.target == *target)
    }

    /// Whether an element counts as attached for a stage: any attachment, or with `fresh_in`
    /// (a stage whose element must be attached afresh) only one made in a visit of that stage.
    pub fn has_element(&self, element: &str, fresh_in: Option<&str>) -> bool {
        self.elements.iter().any(|e| {
            e.element == element
                && fresh_in.is_none_or(|stage| {
                    e.stage
                        .and_then(|v| self.stages.get(v.ix()))
                        .is_some_and(|v| v.stage == stage)
                })
        })
    }

    /// The clock a reference names.
    pub fn clock(&self, r: &ClockRef) -> Option<&Clock> {
        match r {
            ClockRef::Task(t) => self.tasks.get(t.ix()).and_then(|t| t.spec.clock.as_ref()),
            ClockRef::Step(s) => self.steps.get(s.ix()).and_then(|s| s.clock.as_ref()),
            ClockRef::Promise(p) => self.promises.get(p.ix()).map(|p| &p.clock),
            ClockRef::Stage(v) => self.stages.get(v.ix()).and_then(|s| s.clock.as_ref()),
            ClockRef::Element { stage, element } => self
                .stages
                .get(stage.ix())
                .and_then(|s| s.element_clocks.iter().find(|(e, _)| e == element))
                .map(|(_, c)| c),
            ClockRef::Outstanding(o) => self.outstanding.get(o.ix()).and_then(|o| o.clock.as_ref()),
        }
    }

    fn clock_mut(&mut self, r: &ClockRef) -> Option<&mut Clock> {
        match r {
            ClockRef::Task(t) => self
                .tasks
                .get_mut(t.ix())
                .and_then(|t| t.spec.clock.as_mut()),
            ClockRef::Step(s) => self.steps.get_mut(s.ix()).and_then(|s| s.clock.as_mut()),
            ClockRef::Promise(p) => self.promises.get_mut(p.ix()).map(|p| &mut p.clock),
            ClockRef::Stage(v) => self.stages.get_mut(v.ix()).and_then(|s| s.clock.as_mut()),
            ClockRef::Element { stage, element } => self
                .stages
                .get_mut(stage.ix())
                .and_then(|s| s.element_clocks.iter_mut().find(|(e, _)| e == element))
                .map(|(_, c)| c),
            ClockRef::Outstanding(o) => self
                .outstanding
                .get_mut(o.ix())
                .and_then(|o| o.clock.as_mut()),
        }
    }
}

/// Applies one event in place. Total: an event that does not fit the state (which `decide`
/// never produces) changes nothing but the version, rather than panicking.
pub fn apply(s: &mut InstanceState, e: &Event) {
    s.version += 1;
    match e {
        Event::InstanceStarted {
            workflow,
            by,
            at,
            project,
        } => {
            s.status = Status::Running;
            // Room for a typical instance, so the first commands do not regrow the lists.
            s.tasks.reserve(8);
            s.timers.reserve(16);
            s.workflow = workflow.clone();
            s.applicant = by.clone();
            s.started_at = Some(*at);
            s.project = project.clone();
        }
        Event::ChannelChosen {
            channel, priority, ..
        } => {
            s.channel = Some(channel.clone());
            s.priority = *priority;
        }
        Event::NodeEntered { node } => s.at = Some(node.clone()),
        Event::NodeSkipped { .. } => {}
        Event::StageEntered {
            visit,
            stage,
            clock,
            element_clocks,
        } => s.stages.push(StageVisit {
            id: *visit,
            stage: stage.clone(),
            clock: clock.clone(),
            element_clocks: element_clocks.clone(),
            status: StageStatus::Open,
        }),
        Event::StageClosed { visit } => {
            if let Some(v) = s.stages.get_mut(visit.ix()) {
                v.status = StageStatus::Closed;
            }
        }
        Event::StageLeft { visit } => {
            if let Some(v) = s.stages.get_mut(visit.ix()) {
                v.status = StageStatus::Left;
            }
        }
        Event::ElementAttached {
            element,
            stage,
            by,
            fields,
        } => s.elements.push(AttachedElement {
            element: element.clone(),
            stage: *stage,
            by: by.clone(),
            fields: fields.clone(),
        }),
        Event::OutstandingCarried {
            item,
            stage,
            element,
            clock,
        } => s.outstanding.push(Outstanding {
            id: *item,
            stage: stage.clone(),
            element: element.clone(),
            clock: clock.clone(),
            resolved: false,
        }),
        Event::OutstandingResolved { item } => {
            if let Some(o) = s.outstanding.get_mut(item.ix()) {
                o.resolved = true;
            }
        }
        Event::TaskOpened(spec) => {
            let id = spec.task;
            if spec.kind == TaskKind::Work
                && let Some(step) = spec.step.and_then(|st| s.steps.get_mut(st.ix()))
            {
                // A stand-in (拿回) takes the place of the task it replaces in the step's round.
                match spec
                    .replaces
                    .and_then(|r| step.tasks.iter().position(|t| *t == r))
                {
                    Some(pos) => step.tasks[pos] = id,
                    None => step.tasks.push(id),
                }
            }
            if let Some(p) = spec.parent.and_then(|p| s.tasks.get_mut(p.ix())) {
                p.cosigners.push(id);
                if spec.order == SignOrder::Before {
                    p.awaiting.push(id);
                }
            }
            if let Some(p) = spec.promise.and_then(|p| s.promises.get_mut(p.ix())) {
                p.verify_task = Some(id);
            }
            // A stand-in (拿回) keeps the signers its task was to have after its holder.
            let after_signers = spec
                .replaces
                .and_then(|r| s.tasks.get(r.ix()))
                .map(|r| r.after_signers.clone())
                .unwrap_or_default();
            s.tasks.push(Task {
                spec: spec.clone(),
                status: TaskStatus::Open,
                decision: None,
                decided_by: None,
                reject_to: None,
                decided_seq: 0,
                cancelled: None,
                claimed_by: None,
                delegates: Vec::new(),
                suspended: false,
                cosigners: Vec::new(),
                consulting: None,
                awaiting: Vec::new(),
                after_signers,
            });
        }
        Event::TaskClaimed { task, by } => {
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                t.claimed_by = Some(by.clone());
            }
        }
        Event::TaskDelegated {
            task, to, transfer, ..
        } => {
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                if *transfer {
                    t.spec.assignment = Party::User(to.clone());
                    t.claimed_by = None;
                    t.delegates.clear();
                } else if !t.delegates.contains(to) {
                    t.delegates.push(to.clone());
                }
            }
        }
        Event::TaskDecided {
            task,
            decision,
            by,
            to,
            ..
        } => {
            let seq = s.version;
            let mut parent = None;
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                t.status = TaskStatus::Decided;
                t.decision = Some(*decision);
                t.decided_by = Some(by.clone());
                t.reject_to = to.clone();
                t.decided_seq = seq;
                parent = t.spec.parent;
            }
            stop_awaiting(s, parent, *task);
        }
        Event::TaskCancelled { task, reason } => {
            let mut promise = None;
            let mut parent = None;
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                t.status = TaskStatus::Cancelled;
                t.cancelled = Some(*reason);
                promise = t.spec.promise;
                parent = t.spec.parent;
            }
            stop_awaiting(s, parent, *task);
            // A cancelled verification sends its promise back to waiting for the material.
            if let Some(p) = promise.and_then(|p| s.promises.get_mut(p.ix()))
                && p.verify_task == Some(*task)
            {
                p.verify_task = None;
                if p.status == PromiseStatus::Supplied {
                    p.status = PromiseStatus::Open;
                }
            }
        }
        Event::Consulted { task, to, .. } => {
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                t.consulting = Some(to.clone());
            }
        }
        Event::ConsultAnswered { task, .. } => {
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                t.consulting = None;
            }
        }
        Event::SignerAdded {
            task, user, order, ..
        } => {
            if *order == SignOrder::After
                && let Some(t) = s.tasks.get_mut(task.ix())
                && !t.after_signers.contains(user)
            {
                t.after_signers.push(user.clone());
            }
        }
        Event::SignerRemoved { task, user, .. } => {
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                t.after_signers.retain(|u| u != user);
            }
        }
        Event::TakenBack {
            task,
            reopened,
            withdrawn,
            ..
        } => {
            let mut parent = None;
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                t.status = TaskStatus::Cancelled;
                t.cancelled = Some(CancelReason::TakenBack);
                parent = t.spec.parent;
            }
            stop_awaiting(s, parent, *task);
            if let Some(st) = reopened.and_then(|r| s.steps.get_mut(r.ix())) {
                st.status = StepStatus::Open;
            }
            for w in withdrawn {
                if let Some(st) = s.steps.get_mut(w.ix()) {
                    st.status = StepStatus::Withdrawn;
                }
            }
        }
        Event::CopyRead { copies, by } => {
            for c in copies {
                if let Some(c) = s.copies.get_mut(c.ix())
                    && c.unread_by(by)
                {
                    c.read_by.push(by.clone());
                }
            }
        }
        Event::ReturnedToApplicant {
            task,
            by,
            reason,
            materials,
            held,
        } => {
            s.returned = Some(Returned {
                task: *task,
                by: by.clone(),
                reason: reason.clone(),
                materials: materials.clone(),
                supplied: Vec::new(),
                held: held.clone(),
            })
        }
        Event::ApplicantResubmitted { .. } => s.returned = None,
        Event::Suspended { task, .. } => {
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                t.suspended = true;
            }
        }
        Event::Resumed { task, .. } => {
            if let Some(t) = s.tasks.get_mut(task.ix()) {
                t.suspended = false;
            }
        }
        Event::ClockStopped { target, used } => {
            if let Some(c) = s.clock_mut(target) {
                c.holds = c.holds.saturating_add(1);
                if c.running_since.is_some() {
                    c.used = *used;
                    c.running_since = None;
                }
            }
        }
        Event::ClockResumed { target, at } => {
            if let Some(c) = s.clock_mut(target) {
                c.holds = c.holds.saturating_sub(1);
                if c.holds == 0 && c.running_since.is_none() {
                    c.running_since = Some(*at);
                }
            }
        }
        Event::LimitExtended { target, amount, .. } => {
            if let Some(c) = s.clock_mut(target) {
                c.extended = c.extended.saturating_add(*amount);
                c.yellow_warned = false;
                c.red_warned = false;
            }
        }
        Event::StepOpened {
            step,
            node,
            round,
            lead,
            clock,
        } => s.steps.push(Step {
            id: *step,
            node: node.clone(),
            round: *round,
            lead: lead.clone(),
            clock: clock.clone(),
            status: StepStatus::Open,
            tasks: Vec::new(),
        }),
        Event::JoinFired { step, approved, .. } => {
            if let Some(st) = s.steps.get_mut(step.ix()) {
                st.status = if *approved {
                    StepStatus::Approved
                } else {
                    StepStatus::Rejected
                };
            }
        }
        Event::RejectedBack { .. } => {}
        Event::PreApproved {
            pre,
            task,
            node,
            materials,
            by,
        } => s.pre_approvals.push(PreApproval {
            id: *pre,
            task: *task,
            node: node.clone(),
            materials: materials.clone(),
            by: by.clone(),
            formal: false,
        }),
        Event::PromiseMade {
            promise,
            pre,
            material,
            clock,
        } => s.promises.push(Promise {
            id: *promise,
            pre: *pre,
            material: material.clone(),
            clock: clock.clone(),
            status: PromiseStatus::Open,
            breached: false,
            verify_task: None,
        }),
        Event::MaterialSupplied {
            material, promise, ..
        } => match promise.and_then(|p| s.promises.get_mut(p.ix())) {
            Some(p) => p.status = PromiseStatus::Supplied,
            None => {
                s.supplied.push(material.clone());
                if let Some(r) = s.returned.as_mut() {
                    r.supplied.push(material.clone());
                }
            }
        },
        Event::MaterialVerified {
            promise, accepted, ..
        } => {
            if let Some(p) = s.promises.get_mut(promise.ix()) {
                p.status = if *accepted {
                    PromiseStatus::Verified
                } else {
                    PromiseStatus::Open
                };
                p.verify_task = None;
            }
        }
        Event::FormalApproval { pre } => {
            if let Some(p) = s.pre_approvals.get_mut(pre.ix()) {
                p.formal = true;
            }
        }
        Event::PromiseBreached { promise } => {
            if let Some(p) = s.promises.get_mut(promise.ix()) {
                p.breached = true;
            }
        }
        Event::CreditMarked { promise, material } => {
            s.credit_marks.push((*promise, material.clone()));
        }
        Event::Warning { target, colour } => {
            if let Some(c) = s.clock_mut(target) {
                match colour {
                    Colour::Yellow => c.yellow_warned = true,
                    Colour::Red => c.red_warned = true,
                    Colour::Green => {}
                }
            }
        }
        Event::Supervised { task, leader } => {
            if !s.supervised.contains(task) {
                s.supervised.push(*task);
            }
            s.supervision.push(Supervision {
                target: ClockRef::Task(*task),
                leader: leader.clone(),
                resolved_by: None,
                note: None,
            });
        }
        Event::ItemSupervised { target, leader } => s.supervision.push(Supervision {
            target: target.clone(),
            leader: leader.clone(),
            resolved_by: None,
            note: None,
        }),
        Event::SupervisionResolved { target, by, note } => {
            if let ClockRef::Task(t) = target {
                s.supervised.retain(|x| x != t);
            }
            if let Some(item) = s
                .supervision
                .iter_mut()
                .rev()
                .find(|x| x.target == *target && !x.is_resolved())
            {
                item.resolved_by = Some(by.clone());
                item.note = Some(note.clone());
            }
        }
        Event::TimerArmed(t) => {
            s.next_timer = s.next_timer.max(t.id.0.saturating_add(1));
            s.timers.push(t.clone());
        }
        Event::TimerFired { timer } | Event::TimerCancelled { timer } => {
            s.timers.retain(|t| t.id != *timer);
        }
        Event::CarbonCopied { task, to, by, text } => {
            let id = CopyId(u32::try_from(s.copies.len()).unwrap_or(u32::MAX));
            s.copies.push(CarbonCopy {
                id,
                task: *task,
                to: to.clone(),
                by: by.clone(),
                text: text.clone(),
                read_by: Vec::new(),
            });
        }
        Event::NotificationRequested { .. }
        | Event::Retimed { .. }
        | Event::Urged { .. }
        | Event::Commented { .. }
        | Event::Withdrawn { .. } => {}
        Event::EndReached { node, outcome } => {
            s.at = Some(node.clone());
            s.path_end = Some(*outcome);
        }
        Event::InstanceEnded { outcome } => {
            s.status = Status::Ended;
            s.outcome = Some(*outcome);
        }
        Event::Migrated {
            mapping, clocks, ..
        } => migrated(s, mapping, clocks),
    }
}

/// A migration: the mapped node and stage ids take their new names everywhere in the state
/// (closed tasks and visits too, so the history reads under the new version), and each listed
/// clock its new limit.
fn migrated(s: &mut InstanceState, m: &Mapping, clocks: &[ClockChange]) {
    if !m.nodes.is_empty() {
        let rename = |id: &mut SmolStr| {
            if let Some(new) = m.nodes.get(id.as_str()) {
                *id = new.clone();
            }
        };
        if let Some(at) = s.at.as_mut() {
            rename(at);
        }
        for t in &mut s.tasks {
            let old = t.spec.node.clone();
            rename(&mut t.spec.node);
            if t.spec.node != old {
                // The label is the node id, or `node.branch` for a parallel branch.
                if t.spec.label == old {
                    t.spec.label = t.spec.node.clone();
                } else if let Some(rest) = t.spec.label.strip_prefix(&format!("{old}.")) {
                    t.spec.label = SmolStr::new(format!("{}.{rest}", t.spec.node));
                }
            }
            if let Some(to) = t.reject_to.as_mut() {
                rename(to);
            }
        }
        for st in &mut s.steps {
            rename(&mut st.node);
        }
        for p in &mut s.pre_approvals {
            rename(&mut p.node);
        }
        for t in &mut s.timers {
            if let TimerKind::Wait { node } = &mut t.kind {
                rename(node);
            }
        }
    }
    for (old, new) in &m.stages {
        for v in s.stages.iter_mut().filter(|v| v.stage == *old) {
            v.stage = new.clone();
        }
        for o in s.outstanding.iter_mut().filter(|o| o.stage == *old) {
            o.stage = new.clone();
        }
    }
    for c in clocks {
        match (&c.target, &c.clock) {
            (ClockRef::Element { stage, element }, clock) => {
                let Some(v) = s.stages.get_mut(stage.ix()) else {
                    continue;
                };
                v.element_clocks.retain(|(e, _)| e != element);
                if let Some(clock) = clock {
                    v.element_clocks.push((element.clone(), clock.clone()));
                }
            }
            (ClockRef::Task(t), clock) => {
                if let Some(t) = s.tasks.get_mut(t.ix()) {
                    t.spec.clock = clock.clone();
                }
            }
            (ClockRef::Step(x), clock) => {
                if let Some(x) = s.steps.get_mut(x.ix()) {
                    x.clock = clock.clone();
                }
            }
            (ClockRef::Stage(v), clock) => {
                if let Some(v) = s.stages.get_mut(v.ix()) {
                    v.clock = clock.clone();
                }
            }
            (ClockRef::Outstanding(o), clock) => {
                if let Some(o) = s.outstanding.get_mut(o.ix()) {
                    o.clock = clock.clone();
                }
            }
            // A promise keeps the deadline agreed with the applicant.
            (ClockRef::Promise(_), _) => {}
        }
    }
}

/// A co-signer's task closed: its holder no longer waits for it (前加签).
fn stop_awaiting(s: &mut InstanceState, parent: Option<TaskId>, task: TaskId) {
    if let Some(p) = parent.and_then(|p| s.tasks.get_mut(p.ix())) {
        p.awaiting.retain(|t| *t != task);
    }
}
