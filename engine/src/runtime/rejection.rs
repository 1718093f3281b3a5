//! Why a command is refused. Each variant says what is wrong in the domain's terms; `code()` is
//! the stable snake_case name the API and scenarios use (`expect_error: not_assigned`), and
//! `kind()` the sort of refusal it is, from which an edge chooses how to answer (the web layer
//! turns it into an HTTP status in one function).

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::calendar::CalendarError;
use crate::model::Action;

use super::event::{ClockRef, PreApprovalId, TaskId, TimerId};
use super::migrate::{Blocker, MappingProblem};

/// As JSON it is `{"type": code, "detail": fields}` (adjacent tagging, so that the variants
/// holding a bare string serialise too): the durable layer carries it beside the code to the web
/// layer, which words it for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "type", content = "detail", rename_all = "snake_case")]
pub enum Rejection {
    #[error("the instance has not started")]
    NotStarted,
    #[error("the instance has already started")]
    AlreadyStarted,
    #[error("the instance has ended; nothing more can be done on it")]
    InstanceEnded,
    #[error("project field `{field}`: {reason}")]
    InvalidProject {
        field: SmolStr,
        reason: String,
        /// What is wrong, for a reader that words it in another language (`reason` is the
        /// engine's English); absent in refusals stored before it existed.
        #[serde(default)]
        problem: ProjectProblem,
    },
    #[error("unknown green channel `{channel}`")]
    UnknownChannel { channel: SmolStr },
    #[error("there is no task {task}")]
    UnknownTask { task: TaskId },
    #[error("task {task} is not open (it was decided or cancelled)")]
    TaskNotOpen { task: TaskId },
    #[error("task {task} has already been decided")]
    AlreadyDecided { task: TaskId },
    #[error("`{actor}` is not assigned to task {task}")]
    NotAssigned { task: TaskId, actor: SmolStr },
    #[error("task {task} is already claimed by `{by}`")]
    AlreadyClaimed { task: TaskId, by: SmolStr },
    #[error("`{action:?}` is not allowed on node `{node}`")]
    ActionNotAllowed { node: SmolStr, action: Action },
    #[error("this command does not apply to this kind of task: {reason}")]
    WrongTaskKind { task: TaskId, reason: String },
    #[error("`{to}` is not an earlier node this step may reject back to (allowed: {allowed:?})")]
    NotEarlierNode { to: SmolStr, allowed: Vec<SmolStr> },
    #[error("material `{material}` is red-line (红线) and can never be waived")]
    MaterialIsRedLine { material: SmolStr },
    #[error("material `{material}` is not waivable on this step")]
    MaterialNotWaivable { material: SmolStr },
    #[error("nothing to waive: name at least one material")]
    NothingWaived,
    #[error("no open promise or 补正 request is waiting for material `{material}`")]
    MaterialNotExpected { material: SmolStr },
    #[error("material `{material}` is not one the workflow lists")]
    MaterialNotListed { material: SmolStr },
    #[error("the commitment limit {asked} exceeds the rule's {rule}")]
    LimitExceedsRule { asked: String, rule: String },
    #[error("limit `{limit}`: {reason}")]
    BadLimit { limit: String, reason: String },
    #[error(
        "stage `{stage}` cannot close: required element `{element}` is missing and may not be carried"
    )]
    StageCannotClose { stage: SmolStr, element: SmolStr },
    #[error("unknown element `{element}`")]
    UnknownElement { element: SmolStr },
    #[error("element `{element}`: {reason}")]
    InvalidElement { element: SmolStr, reason: String },
    /// 先入库，后保障: the element may be attached only in its `attach_in` stages.
    #[error("element `{element}` may be attached only in stages {stages:?}")]
    ElementNotInStage {
        element: SmolStr,
        stages: Vec<SmolStr>,
    },
    /// 销号 of something that is not on the supervision list (挂牌督办).
    #[error("{target:?} is not under supervision (挂牌督办)")]
    NotSupervised { target: ClockRef },
    /// 销号 of an item already resolved.
    #[error("the supervision of {target:?} has already been resolved (销号)")]
    SupervisionResolved { target: ClockRef },
    /// 销号 while the overdue thing is still open: settle it first.
    #[error("{target:?} is still outstanding; it can be resolved (销号) once it is settled")]
    SupervisionUnsettled { target: ClockRef },
    #[error("`{actor}` may not {what}")]
    NotAuthorised { actor: SmolStr, what: String },
    /// A signature for a pre-approval that has no commitment letter (承诺书).
    #[error("pre-approval {pre} has no commitment letter")]
    UnknownLetter { pre: PreApprovalId },
    /// Only the instance's applicant parties sign its letters.
    #[error(
        "`{actor}` is neither the applicant nor the project's service officer and may not sign the commitment letter"
    )]
    NotLetterSigner { pre: PreApprovalId, actor: SmolStr },
    /// The letter is signed already.
    #[error("the commitment letter of pre-approval {pre} was already signed by `{by}`")]
    LetterAlreadySigned { pre: PreApprovalId, by: SmolStr },
    /// The hash sent is not the letter's: the signer was shown another text.
    #[error(
        "the commitment letter of pre-approval {pre} is not the text that was shown (SHA-256 {sent} is not the letter's)"
    )]
    LetterChanged { pre: PreApprovalId, sent: SmolStr },
    #[error("a reason is required")]
    ReasonRequired,
    #[error("the case is with the applicant for 补正; decisions wait until they resubmit")]
    WithApplicant,
    #[error("the case is not waiting on the applicant")]
    NotWithApplicant,
    #[error("task {task} is suspended; resume it first")]
    Suspended { task: TaskId },
    #[error("task {task} is not suspended")]
    NotSuspended { task: TaskId },
    #[error("task {task} has no limit to extend")]
    NoLimit { task: TaskId },
    #[error("co-signers of task {task} are still open")]
    CosignersOpen { task: TaskId },
    #[error("`{user}` already co-signs task {task}")]
    AlreadyCosigner { task: TaskId, user: SmolStr },
    #[error("task {task} is with `{with}` for an opinion (委派); it comes back when they answer")]
    Consulting { task: TaskId, with: SmolStr },
    #[error("task {task} was not given to anyone for an opinion")]
    NotConsulted { task: TaskId },
    #[error("task {task} waits for `{signer}`, who signs before its holder (前加签)")]
    AwaitingSigner { task: TaskId, signer: SmolStr },
    #[error("`{user}` is not an added signer of task {task} who could be removed")]
    NotASigner { task: TaskId, user: SmolStr },
    #[error("`{user}` has already decided on task {task}")]
    SignerDecided { task: TaskId, user: SmolStr },
    #[error("`{user}` cannot take this task: {reason:?}")]
    IneligibleUser { user: SmolStr, reason: Ineligible },
    #[error("the decision on task {task} cannot be taken back: {reason:?}")]
    CannotTakeBack { task: TaskId, reason: TakeBackBlock },
    #[error("timer {timer} is not due until {due}")]
    TimerNotDue { timer: TimerId, due: String },
    #[error("the assignee rule of node `{node}` failed: {reason}")]
    AssigneeRule { node: SmolStr, reason: String },
    #[error("gateway `{node}` has no route for this project")]
    NoRoute { node: SmolStr },
    #[error("{0}")]
    OutsideCalendar(String),
    /// A migration between versions that cannot be mapped as asked (another workflow, a node or
    /// stage neither version has).
    #[error("the migration cannot be mapped: {problems:?}")]
    InvalidMapping { problems: Vec<MappingProblem> },
    /// The instance cannot move to the version asked, for these reasons.
    #[error("the instance cannot move: {blockers:?}")]
    MigrationBlocked { blockers: Vec<Blocker> },
    /// The migration was asked from a version the instance no longer runs on.
    #[error("the instance runs on version {runs_on}, not {asked}")]
    NotOnVersion { runs_on: u32, asked: u32 },
    /// A definition/state mismatch the validator should have made impossible.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a user named as delegate, signer or new holder cannot take the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    /// The actor named themselves.
    Themselves,
    /// The user stands for the applicant of this instance: they cannot review their own case.
    ApplicantSide,
    /// The user already holds the task (or is consulted on it, or signs it).
    AlreadyOnTask,
}

/// Why a decision cannot be taken back (拿回).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TakeBackBlock {
    /// The task was not decided, or decided by someone else.
    NotYourDecision,
    /// Only an approval is taken back (a 驳回 or a 容缺 has already gone its way).
    NotAnApproval,
    /// Someone acted after it: the next node decided, claimed, delegated, suspended, or the
    /// case went to the applicant.
    NextActed,
    /// The case has moved into another stage (驳回 is the way back then).
    LeftStage,
    /// The flow has reached its end.
    FlowEnded,
    /// The parallel step the approval belonged to was decided against (驳回 or rejected).
    StepRejected,
    /// The step's approval issues an official document (批复): once given it stands, and only
    /// a 撤销 undoes it.
    IssuesDocument,
}

/// The sort of refusal a [`Rejection`] is: what the one who sent the command can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// The actor may not do this at all (their role, the project's party).
    NotAllowed,
    /// The task is not assigned to the actor (nor to a pool, role or delegation of theirs).
    NotAssigned,
    /// The command names something the instance does not have.
    NotFound,
    /// The instance has moved on since the command was written (decided, claimed, ended, with
    /// the applicant): reload and think again.
    Conflict,
    /// The command itself is wrong for this instance and its rules: fix it and resend.
    Invalid,
    /// The definition and the state disagree in a way validation should have made impossible.
    Internal,
}

impl Rejection {
    /// What sort of refusal this is. Exhaustive, so that a new variant has to choose.
    pub fn kind(&self) -> RejectionKind {
        use RejectionKind as K;
        match self {
            Rejection::NotAuthorised { .. } | Rejection::NotLetterSigner { .. } => K::NotAllowed,
            Rejection::NotAssigned { .. } => K::NotAssigned,
            Rejection::UnknownTask { .. } | Rejection::UnknownLetter { .. } => K::NotFound,
            Rejection::AlreadyStarted
            | Rejection::InstanceEnded
            | Rejection::TaskNotOpen { .. }
            | Rejection::AlreadyDecided { .. }
            | Rejection::AlreadyClaimed { .. }
            | Rejection::WithApplicant
            | Rejection::CosignersOpen { .. }
            | Rejection::AlreadyCosigner { .. }
            | Rejection::Consulting { .. }
            | Rejection::AwaitingSigner { .. }
            | Rejection::SignerDecided { .. }
            | Rejection::CannotTakeBack { .. }
            | Rejection::SupervisionResolved { .. }
            | Rejection::LetterAlreadySigned { .. }
            | Rejection::LetterChanged { .. }
            | Rejection::MigrationBlocked { .. }
            | Rejection::NotOnVersion { .. } => K::Conflict,
            Rejection::NotStarted
            | Rejection::InvalidProject { .. }
            | Rejection::UnknownChannel { .. }
            | Rejection::ActionNotAllowed { .. }
            | Rejection::WrongTaskKind { .. }
            | Rejection::NotEarlierNode { .. }
            | Rejection::MaterialIsRedLine { .. }
            | Rejection::MaterialNotWaivable { .. }
            | Rejection::NothingWaived
            | Rejection::MaterialNotExpected { .. }
            | Rejection::MaterialNotListed { .. }
            | Rejection::LimitExceedsRule { .. }
            | Rejection::BadLimit { .. }
            | Rejection::StageCannotClose { .. }
            | Rejection::UnknownElement { .. }
            | Rejection::InvalidElement { .. }
            | Rejection::ElementNotInStage { .. }
            | Rejection::NotSupervised { .. }
            | Rejection::SupervisionUnsettled { .. }
            | Rejection::ReasonRequired
            | Rejection::NotWithApplicant
            | Rejection::Suspended { .. }
            | Rejection::NotSuspended { .. }
            | Rejection::NoLimit { .. }
            | Rejection::TimerNotDue { .. }
            | Rejection::AssigneeRule { .. }
            | Rejection::NoRoute { .. }
            | Rejection::NotConsulted { .. }
            | Rejection::NotASigner { .. }
            | Rejection::IneligibleUser { .. }
            | Rejection::OutsideCalendar(_)
            | Rejection::InvalidMapping { .. } => K::Invalid,
            Rejection::Internal(_) => K::Internal,
        }
    }

    /// The stable code of the variant (`not_assigned`, `material_is_red_line` ...).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotStarted => "not_started",
            Rejection::AlreadyStarted => "already_started",
            Rejection::InstanceEnded => "instance_ended",
            Rejection::InvalidProject { .. } => "invalid_project",
            Rejection::UnknownChannel { .. } => "unknown_channel",
            Rejection::UnknownTask { .. } => "unknown_task",
            Rejection::TaskNotOpen { .. } => "task_not_open",
            Rejection::AlreadyDecided { .. } => "already_decided",
            Rejection::NotAssigned { .. } => "not_assigned",
            Rejection::AlreadyClaimed { .. } => "already_claimed",
            Rejection::ActionNotAllowed { .. } => "action_not_allowed",
            Rejection::WrongTaskKind { .. } => "wrong_task_kind",
            Rejection::NotEarlierNode { .. } => "not_earlier_node",
            Rejection::MaterialIsRedLine { .. } => "material_is_red_line",
            Rejection::MaterialNotWaivable { .. } => "material_not_waivable",
            Rejection::NothingWaived => "nothing_waived",
            Rejection::MaterialNotExpected { .. } => "material_not_expected",
            Rejection::MaterialNotListed { .. } => "material_not_listed",
            Rejection::LimitExceedsRule { .. } => "limit_exceeds_rule",
            Rejection::BadLimit { .. } => "bad_limit",
            Rejection::StageCannotClose { .. } => "stage_cannot_close",
            Rejection::UnknownElement { .. } => "unknown_element",
            Rejection::InvalidElement { .. } => "invalid_element",
            Rejection::ElementNotInStage { .. } => "element_not_in_stage",
            Rejection::NotSupervised { .. } => "not_supervised",
            Rejection::SupervisionResolved { .. } => "supervision_resolved",
            Rejection::SupervisionUnsettled { .. } => "supervision_unsettled",
            Rejection::NotAuthorised { .. } => "not_authorised",
            Rejection::UnknownLetter { .. } => "unknown_letter",
            Rejection::NotLetterSigner { .. } => "not_letter_signer",
            Rejection::LetterAlreadySigned { .. } => "letter_already_signed",
            Rejection::LetterChanged { .. } => "letter_changed",
            Rejection::ReasonRequired => "reason_required",
            Rejection::WithApplicant => "with_applicant",
            Rejection::NotWithApplicant => "not_with_applicant",
            Rejection::Suspended { .. } => "suspended",
            Rejection::NotSuspended { .. } => "not_suspended",
            Rejection::NoLimit { .. } => "no_limit",
            Rejection::CosignersOpen { .. } => "cosigners_open",
            Rejection::AlreadyCosigner { .. } => "already_cosigner",
            Rejection::Consulting { .. } => "consulting",
            Rejection::NotConsulted { .. } => "not_consulted",
            Rejection::AwaitingSigner { .. } => "awaiting_signer",
            Rejection::NotASigner { .. } => "not_a_signer",
            Rejection::SignerDecided { .. } => "signer_decided",
            Rejection::IneligibleUser { .. } => "ineligible_user",
            Rejection::CannotTakeBack { .. } => "cannot_take_back",
            Rejection::TimerNotDue { .. } => "timer_not_due",
            Rejection::AssigneeRule { .. } => "assignee_rule",
            Rejection::NoRoute { .. } => "no_route",
            Rejection::OutsideCalendar(_) => "outside_calendar",
            Rejection::InvalidMapping { .. } => "invalid_mapping",
            Rejection::MigrationBlocked { .. } => "migration_blocked",
            Rejection::NotOnVersion { .. } => "not_on_version",
            Rejection::Internal(_) => "internal",
        }
    }
}

impl From<CalendarError> for Rejection {
    fn from(e: CalendarError) -> Self {
        Rejection::OutsideCalendar(e.to_string())
    }
}

/// What is wrong with a project's field, as [`Rejection::InvalidProject`] carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProjectProblem {
    /// A refusal stored before problems were recorded: only `reason` says.
    #[default]
    Unknown,
    /// The project is not a map of field values.
    NotAMap,
    /// A required field is missing or null.
    Required,
    /// An enum field holds a value that is not one of its values.
    NotOneOf { values: Vec<SmolStr> },
    /// The value is not of the field's type.
    WrongType { want: crate::model::FieldType },
}
