//! Events: the facts an instance's history is made of.
//!
//! An event carries everything [`evolve`](super::evolve) needs to apply it without the
//! definition or the calendar: a task opens with its assignment and its clock already computed,
//! a clock stops with the units it had used. That keeps `evolve` total and cheap, and makes the
//! stored history self-explaining for the audit: what the engine decided is written down, not
//! recomputed later under a possibly different rule.
//!
//! Timers and notifications are events too: `TimerArmed`/`TimerCancelled` tell the scheduler
//! what to wake for, `NotificationRequested` tells the outbox what to send. The engine never
//! sleeps and never sends.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::compile::Party;
use crate::model::{Delivery, NotificationEvent, Outcome};

use super::clock::{Clock, Colour};
use super::migrate::{ClockChange, Mapping};

/// One file of a supplied material, as the event records it: the content's SHA-256 (lower-case
/// hex; the content itself is stored by the adapters under that hash), the name the applicant
/// gave it and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialFile {
    pub sha256: SmolStr,
    pub name: String,
    pub size: u64,
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl $name {
            pub fn ix(self) -> usize {
                self.0 as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A task of an instance: its index in the instance's task list, counted from 0.
    TaskId
);
id_type!(
    /// One opening of a parallel step.
    StepId
);
id_type!(
    /// One 容缺 promise (one material).
    PromiseId
);
id_type!(
    /// One pre-approval (预批复), covering one or more promises.
    PreApprovalId
);
id_type!(
    /// A timer of an instance; the scheduler keys it by (instance, id).
    TimerId
);
id_type!(
    /// One visit of a lifecycle stage.
    StageVisitId
);
id_type!(
    /// An element carried out of a closed stage (outstanding item).
    OutstandingId
);
id_type!(
    /// One 抄送 (copy) of an instance: its index among the instance's copies, counted from 0.
    CopyId
);

/// When an added signer (加签) decides, relative to the holder of the task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignOrder {
    /// 并加签: beside the holder, in any order; both must approve.
    #[default]
    With,
    /// 前加签: before the holder, who decides only once the added signer has.
    Before,
    /// 后加签: after the holder; the signer's task opens when the holder approves.
    After,
}

impl SignOrder {
    pub fn is_with(&self) -> bool {
        *self == SignOrder::With
    }
}

/// What a limited thing is; names the clock a timer or a warning belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockRef {
    Task(TaskId),
    Step(StepId),
    Promise(PromiseId),
    Stage(StageVisitId),
    /// A required element's `within` deadline in a stage visit.
    Element {
        stage: StageVisitId,
        element: SmolStr,
    },
    Outstanding(OutstandingId),
}

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimerKind {
    /// The clock reaches the yellow threshold (for a promise: 即将到期).
    Yellow { target: ClockRef },
    /// The clock runs out (red; for a promise: breach).
    Due { target: ClockRef },
    /// Rung `rung` of the escalation ladder for an overdue task.
    Escalation { task: TaskId, rung: u32 },
    /// Rung `rung` of the escalation ladder for an overdue parallel step, stage or outstanding
    /// item, or a breached promise (`warnings.escalate`).
    Ladder { target: ClockRef, rung: u32 },
    /// A wait node's time is up.
    Wait { node: SmolStr },
}

impl TimerKind {
    /// The task a timer is about, if any (cancelled with the task).
    pub fn task(&self) -> Option<TaskId> {
        match self {
            TimerKind::Yellow {
                target: ClockRef::Task(t),
            }
            | TimerKind::Due {
                target: ClockRef::Task(t),
            }
            | TimerKind::Escalation { task: t, .. } => Some(*t),
            _ => None,
        }
    }

    pub fn clock(&self) -> Option<&ClockRef> {
        match self {
            TimerKind::Yellow { target } | TimerKind::Due { target } => Some(target),
            _ => None,
        }
    }

    /// The limited thing an escalation timer is about (a task's rung or another's).
    pub fn escalates(&self) -> Option<ClockRef> {
        match self {
            TimerKind::Escalation { task, .. } => Some(ClockRef::Task(*task)),
            TimerKind::Ladder { target, .. } => Some(target.clone()),
            _ => None,
        }
    }
}

/// One timer moved by a calendar revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerMove {
    #[serde(flatten)]
    pub kind: TimerKind,
    #[serde(with = "crate::calendar::china_time")]
    pub old_due: Timestamp,
    #[serde(with = "crate::calendar::china_time")]
    pub new_due: Timestamp,
}

/// An armed timer, as kept in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub id: TimerId,
    #[serde(with = "crate::calendar::china_time")]
    pub due: Timestamp,
    #[serde(flatten)]
    pub kind: TimerKind,
    /// The calendar revision the instant was computed on (absent for a calendar read from a
    /// file, and in histories written before revisions existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_revision: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A step's own task (or a parallel branch).
    Work,
    /// A co-signer's task (加签): the step completes when it and its parent are decided.
    Cosign,
    /// Checking a material supplied against a promise.
    Verify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    /// Approve with 容缺: the pre-approval is recorded in its own event.
    ApproveConditional,
    Reject,
    /// Verification accepted the material.
    Accept,
    /// Verification refused the material.
    Refuse,
}

impl Decision {
    pub fn is_approval(self) -> bool {
        matches!(
            self,
            Decision::Approve | Decision::ApproveConditional | Decision::Accept
        )
    }
}

/// Why an open task was closed without a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The parallel step's join fired (或签/票签 reached, or the step was rejected).
    JoinFired,
    /// A 驳回 sent the case to an earlier node.
    RejectedBack,
    /// A co-signer rejected, which decides the step.
    CosignerRejected,
    /// The parent task was decided otherwise (its co-signers are no longer needed).
    ParentClosed,
    /// The instance ended (withdrawn, rejected, revoked, approved).
    InstanceEnded,
    /// 拿回: the decision that opened it was taken back before anyone acted on it.
    TakenBack,
    /// 减签: the holder removed the added signer before they decided.
    SignerRemoved,
}

/// Data for a notification's template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<SmolStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promise: Option<PromiseId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<SmolStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<SmolStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<SmolStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<SmolStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<SmolStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::calendar::china_time::option"
    )]
    pub due: Option<Timestamp>,
}

/// A task as it opens.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedTask {
    pub task: TaskId,
    pub node: SmolStr,
    /// Display and scenario name: the node id, `node.branch` for a parallel branch,
    /// `verify.<material>` for a verification task.
    pub label: SmolStr,
    pub kind: TaskKind,
    pub branch: Option<SmolStr>,
    pub step: Option<StepId>,
    /// For a co-signer's task: the task it co-signs.
    pub parent: Option<TaskId>,
    /// For a verification task: the promise whose material it checks.
    pub promise: Option<PromiseId>,
    pub assignment: Party,
    /// The department whose supervisor and leader the escalation ladder reaches.
    pub department: Option<SmolStr>,
    pub clock: Option<Clock>,
    #[serde(default)]
    pub lead: bool,
    #[serde(default)]
    pub priority: i32,
    /// For a co-signer's task: when it decides relative to the holder (absent: beside).
    #[serde(default, skip_serializing_if = "SignOrder::is_with")]
    pub order: SignOrder,
    /// 拿回: the task this one stands in for (taken back, or closed by the join the taking
    /// back undid); it takes the old task's place in its step.
    pub replaces: Option<TaskId>,
}

/// One event of an instance's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    InstanceStarted {
        workflow: SmolStr,
        by: SmolStr,
        #[serde(with = "crate::calendar::china_time")]
        at: Timestamp,
        project: serde_json::Value,
    },
    /// The green channel chosen at start, and why (the condition or flag that held).
    ChannelChosen {
        channel: SmolStr,
        reason: String,
        priority: i32,
    },
    NodeEntered {
        node: SmolStr,
    },
    /// A node the instance's channel skips.
    NodeSkipped {
        node: SmolStr,
        channel: SmolStr,
    },
    StageEntered {
        visit: StageVisitId,
        stage: SmolStr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<Clock>,
        /// `within` deadlines of required elements not yet attached.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        element_clocks: Vec<(SmolStr, Clock)>,
    },
    /// The flow left the stage forwards with its required elements present or carried.
    StageClosed {
        visit: StageVisitId,
    },
    /// A 驳回 went back out of the stage; it stays incomplete and is entered anew.
    StageLeft {
        visit: StageVisitId,
    },
    ElementAttached {
        element: SmolStr,
        stage: Option<StageVisitId>,
        by: SmolStr,
        fields: serde_json::Value,
    },
    /// A required element missing at close, carried as an outstanding item with a deadline.
    OutstandingCarried {
        item: OutstandingId,
        stage: SmolStr,
        element: SmolStr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<Clock>,
    },
    OutstandingResolved {
        item: OutstandingId,
    },
    TaskOpened(OpenedTask),
    TaskClaimed {
        task: TaskId,
        by: SmolStr,
    },
    TaskDelegated {
        task: TaskId,
        to: SmolStr,
        /// Transfer (转办) hands the task over; otherwise the delegate may act beside the holder.
        transfer: bool,
        by: SmolStr,
    },
    TaskDecided {
        task: TaskId,
        decision: Decision,
        by: SmolStr,
        /// For a reject: the earlier node to go back to (驳回); none means a final rejection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<SmolStr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    TaskCancelled {
        task: TaskId,
        reason: CancelReason,
    },
    /// 委派: the holder asks `to` for an opinion; the task is theirs until they answer, then it
    /// returns to the holder, who decides.
    Consulted {
        task: TaskId,
        to: SmolStr,
        by: SmolStr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// The one consulted gave their opinion; the task is back with its holder.
    ConsultAnswered {
        task: TaskId,
        by: SmolStr,
        opinion: String,
    },
    /// 加签: `user` signs the task too, before, beside or after its holder.
    SignerAdded {
        task: TaskId,
        user: SmolStr,
        order: SignOrder,
        by: SmolStr,
    },
    /// 减签: an added signer who had not decided is removed.
    SignerRemoved {
        task: TaskId,
        user: SmolStr,
        by: SmolStr,
    },
    /// 拿回: the decider took back their approval of `task` before the next node acted. The
    /// task closes (its decision no longer counts) and a new task stands in for it; a parallel
    /// step whose join that approval fired opens again (`reopened`), the steps it led into are
    /// withdrawn.
    TakenBack {
        task: TaskId,
        by: SmolStr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reopened: Option<StepId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        withdrawn: Vec<StepId>,
    },
    /// 补正: the case goes back to the applicant; the listed clocks stop.
    ReturnedToApplicant {
        task: TaskId,
        by: SmolStr,
        reason: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        materials: Vec<SmolStr>,
        /// The clocks this 补正 stops (and its answer resumes).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        held: Vec<ClockRef>,
    },
    /// The applicant answered the 补正; the clocks held by it resume.
    ApplicantResubmitted {
        by: SmolStr,
    },
    /// Time the law does not count (听证, 专家评审, 检测) starts for a task.
    Suspended {
        task: TaskId,
        by: SmolStr,
        reason: String,
    },
    Resumed {
        task: TaskId,
        by: SmolStr,
    },
    /// A clock stops; `used` is the units it had used (banked).
    ClockStopped {
        target: ClockRef,
        used: u32,
    },
    ClockResumed {
        target: ClockRef,
        #[serde(with = "crate::calendar::china_time")]
        at: Timestamp,
    },
    /// 延长: `amount` units added to the limit.
    LimitExtended {
        target: ClockRef,
        amount: u32,
        reason: String,
        by: SmolStr,
    },
    StepOpened {
        step: StepId,
        node: SmolStr,
        round: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lead: Option<SmolStr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<Clock>,
    },
    /// A parallel step's join decided, once.
    JoinFired {
        step: StepId,
        approved: bool,
        approvals: u32,
        rejects: u32,
        needed: u32,
    },
    /// 驳回: the case goes back to an earlier node.
    RejectedBack {
        from: SmolStr,
        to: SmolStr,
        by: SmolStr,
    },
    /// 容缺: the step is approved ahead of the waived materials.
    PreApproved {
        pre: PreApprovalId,
        task: TaskId,
        node: SmolStr,
        materials: Vec<SmolStr>,
        by: SmolStr,
    },
    /// 承诺: the applicant's commitment to supply one material in time.
    PromiseMade {
        promise: PromiseId,
        pre: PreApprovalId,
        material: SmolStr,
        clock: Clock,
    },
    MaterialSupplied {
        material: SmolStr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        promise: Option<PromiseId>,
        by: SmolStr,
        /// The files supplied, when they were uploaded (none in histories from before files:
        /// absent and empty read alike, so the event format is unchanged).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<MaterialFile>,
    },
    MaterialVerified {
        promise: PromiseId,
        task: TaskId,
        accepted: bool,
        by: SmolStr,
    },
    /// Every promise of the pre-approval is verified: it is now a formal approval (正式批复).
    FormalApproval {
        pre: PreApprovalId,
    },
    PromiseBreached {
        promise: PromiseId,
    },
    /// 信用记录 against the applicant.
    CreditMarked {
        promise: PromiseId,
        material: SmolStr,
    },
    /// A clock crossed into yellow or red.
    Warning {
        target: ClockRef,
        colour: Colour,
    },
    /// 挂牌督办: the task is on the leader's supervision list.
    Supervised {
        task: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<SmolStr>,
    },
    /// 挂牌督办 of a parallel step, promise, stage or outstanding item (a task's is
    /// `Supervised`).
    ItemSupervised {
        target: ClockRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<SmolStr>,
    },
    /// 销号: an item on the supervision list is resolved and leaves it.
    SupervisionResolved {
        target: ClockRef,
        by: SmolStr,
        note: String,
    },
    TimerArmed(Timer),
    /// A calendar revision moved armed timers: each move with the instant before and after. The
    /// timers themselves are re-armed by the `TimerCancelled`/`TimerArmed` events that follow.
    Retimed {
        calendar: SmolStr,
        revision: u32,
        moves: Vec<TimerMove>,
    },
    TimerFired {
        timer: TimerId,
    },
    TimerCancelled {
        timer: TimerId,
    },
    NotificationRequested {
        /// The notification kind (None for a notify node's own message).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on: Option<NotificationEvent>,
        recipients: Vec<Party>,
        template: SmolStr,
        via: Vec<Delivery>,
        data: NoticeData,
    },
    /// 催办.
    Urged {
        task: TaskId,
        by: SmolStr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    Commented {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        by: SmolStr,
        text: String,
    },
    /// 抄送.
    CarbonCopied {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        to: Vec<SmolStr>,
        by: SmolStr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// The recipient of copies opened the instance: those copies are read.
    CopyRead {
        copies: Vec<CopyId>,
        by: SmolStr,
    },
    /// The applicant withdrew the application.
    Withdrawn {
        by: SmolStr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The flow reached an end node. With an approved outcome and promises still open, the
    /// instance stays open until they are settled.
    EndReached {
        node: SmolStr,
        outcome: Outcome,
    },
    InstanceEnded {
        outcome: Outcome,
    },
    /// 迁移: the instance moved from version `from` of its workflow to version `to`. Node and
    /// stage ids the mapping names are renamed in the state; each clock listed counts against
    /// its new limit (or, without one, no longer counts). The timers that follow from it are the
    /// `TimerCancelled`/`TimerArmed` events after this one.
    Migrated {
        from: u32,
        to: u32,
        #[serde(default, skip_serializing_if = "Mapping::is_empty")]
        mapping: Mapping,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        clocks: Vec<ClockChange>,
        by: SmolStr,
    },
}

impl Event {
    /// The snake_case type name, as serialized.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::InstanceStarted { .. } => "instance_started",
            Event::ChannelChosen { .. } => "channel_chosen",
            Event::NodeEntered { .. } => "node_entered",
            Event::NodeSkipped { .. } => "node_skipped",
            Event::StageEntered { .. } => "stage_entered",
            Event::StageClosed { .. } => "stage_closed",
            Event::StageLeft { .. } => "stage_left",
            Event::ElementAttached { .. } => "element_attached",
            Event::OutstandingCarried { .. } => "outstanding_carried",
            Event::OutstandingResolved { .. } => "outstanding_resolved",
            Event::TaskOpened(_) => "task_opened",
            Event::TaskClaimed { .. } => "task_claimed",
            Event::TaskDelegated { .. } => "task_delegated",
            Event::TaskDecided { .. } => "task_decided",
            Event::TaskCancelled { .. } => "task_cancelled",
            Event::Consulted { .. } => "consulted",
            Event::ConsultAnswered { .. } => "consult_answered",
            Event::SignerAdded { .. } => "signer_added",
            Event::SignerRemoved { .. } => "signer_removed",
            Event::TakenBack { .. } => "taken_back",
            Event::ReturnedToApplicant { .. } => "returned_to_applicant",
            Event::ApplicantResubmitted { .. } => "applicant_resubmitted",
            Event::Suspended { .. } => "suspended",
            Event::Resumed { .. } => "resumed",
            Event::ClockStopped { .. } => "clock_stopped",
            Event::ClockResumed { .. } => "clock_resumed",
            Event::LimitExtended { .. } => "limit_extended",
            Event::StepOpened { .. } => "step_opened",
            Event::JoinFired { .. } => "join_fired",
            Event::RejectedBack { .. } => "rejected_back",
            Event::PreApproved { .. } => "pre_approved",
            Event::PromiseMade { .. } => "promise_made",
            Event::MaterialSupplied { .. } => "material_supplied",
            Event::MaterialVerified { .. } => "material_verified",
            Event::FormalApproval { .. } => "formal_approval",
            Event::PromiseBreached { .. } => "promise_breached",
            Event::CreditMarked { .. } => "credit_marked",
            Event::Warning { .. } => "warning",
            Event::Supervised { .. } => "supervised",
            Event::ItemSupervised { .. } => "item_supervised",
            Event::SupervisionResolved { .. } => "supervision_resolved",
            Event::TimerArmed(_) => "timer_armed",
            Event::Retimed { .. } => "retimed",
            Event::TimerFired { .. } => "timer_fired",
            Event::TimerCancelled { .. } => "timer_cancelled",
            Event::NotificationRequested { .. } => "notification_requested",
            Event::Urged { .. } => "urged",
            Event::Commented { .. } => "commented",
            Event::CarbonCopied { .. } => "carbon_copied",
            Event::CopyRead { .. } => "copy_read",
            Event::Withdrawn { .. } => "withdrawn",
            Event::EndReached { .. } => "end_reached",
            Event::InstanceEnded { .. } => "instance_ended",
            Event::Migrated { .. } => "migrated",
        }
    }
}

/// The format of stored events this version writes, stored beside each one.
///
/// Stored histories are kept for years and replayed on every load, so an event once written must
/// stay readable. A change to [`Event`] that alters its JSON (a field renamed or removed, a new
/// field without a default, a variant renamed) is a new format:
///
/// 1. bump `EVENT_FORMAT` (to 2);
/// 2. in [`upcast`], add the arm `1 => ...` that turns a format-1 event's JSON into format 2
///    (rename the key, fill the new field): each arm lifts one format to the next, so a format-1
///    event goes through every arm up to today's;
/// 3. keep `engine/tests/fixtures/events/v1/` as it is (those stored events must still decode)
///    and add `v2/` with today's events (`BLESS=1 cargo test -p shenpi-engine --test
///    event_golden`).
///
/// A change that old JSON still reads the same (a new optional field, a new variant) keeps the
/// format.
pub const EVENT_FORMAT: u32 = 1;

/// Why a stored event cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event format {0} is newer than this version reads ({today}): upgrade shenpi", today = EVENT_FORMAT)]
    Newer(u32),
    #[error("event format {0} is not a format shenpi ever wrote")]
    Unknown(u32),
    #[error("stored event does not read as format {format}: {message}")]
    Invalid { format: u32, message: String },
}

/// Reads an event stored in `format` (the [`EVENT_FORMAT`] of the version that wrote it):
/// older formats are lifted to today's by [`upcast`] first.
pub fn decode_event(format: u32, json: &str) -> Result<Event, DecodeError> {
    let invalid = |e: serde_json::Error| DecodeError::Invalid {
        format,
        message: e.to_string(),
    };
    if format == EVENT_FORMAT {
        return serde_json::from_str(json).map_err(invalid);
    }
    let mut value: serde_json::Value = serde_json::from_str(json).map_err(invalid)?;
    let mut at = format;
    while at < EVENT_FORMAT {
        value = upcast(at, value)?;
        at += 1;
    }
    if at > EVENT_FORMAT {
        return Err(DecodeError::Newer(format));
    }
    serde_json::from_value(value).map_err(invalid)
}

/// Lifts the JSON of one event from `format` to `format + 1`. No format but 1 exists yet; the
/// arm for each older format goes here (see [`EVENT_FORMAT`]).
fn upcast(format: u32, _event: serde_json::Value) -> Result<serde_json::Value, DecodeError> {
    Err(DecodeError::Unknown(format))
}
