//! Commands: what someone (or a timer) asks an instance to do.
//!
//! A command is a request, not a fact: [`decide`](super::decide) either turns it into events or
//! rejects it with a [`Rejection`](super::Rejection) that names why. Every command travels in a
//! [`CommandEnvelope`] with the [`Actor`] who sent it; the actor's name is recorded in the events
//! it causes.

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::model::RawLimit;

use super::event::{ClockRef, MaterialFile, PreApprovalId, SignOrder, TaskId, TimerId};
use super::migrate::Mapping;

/// Who sends a command: a user with their department and roles (from the auth layer), or the
/// engine itself for timers ([`Actor::system`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub name: SmolStr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<SmolStr>,
    #[serde(default)]
    pub roles: Vec<SmolStr>,
}

impl Actor {
    pub fn new(name: &str, department: Option<&str>, roles: &[&str]) -> Actor {
        Actor {
            name: SmolStr::new(name),
            department: department.map(SmolStr::new),
            roles: roles.iter().copied().map(SmolStr::new).collect(),
        }
    }

    /// The engine's own actor, for timer commands.
    pub fn system() -> Actor {
        Actor {
            name: SmolStr::new_static("system"),
            department: None,
            roles: Vec::new(),
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    pub actor: Actor,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Start the instance with the project's field values; `channel` puts it in a green channel
    /// explicitly (otherwise each channel's `when`/`flag` is tried in order).
    Start {
        project: serde_json::Value,
        #[serde(default)]
        channel: Option<SmolStr>,
    },
    /// Take a pool task (role or department) for oneself.
    Claim { task: TaskId },
    Approve {
        task: TaskId,
        #[serde(default)]
        comment: Option<String>,
    },
    /// 驳回 to `to` (one of the node's `reject_to`), or a final rejection when `to` is absent.
    Reject {
        task: TaskId,
        #[serde(default)]
        to: Option<SmolStr>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// 补正: return to the applicant for supplement; the clocks stop.
    Return {
        task: TaskId,
        reason: String,
        #[serde(default)]
        materials: Vec<SmolStr>,
    },
    /// 容缺: approve with the `waive`d materials missing against the applicant's commitment,
    /// optionally with a shorter commitment limit than the rule's.
    ApproveConditional {
        task: TaskId,
        waive: Vec<SmolStr>,
        #[serde(default)]
        limit: Option<RawLimit>,
        #[serde(default)]
        comment: Option<String>,
    },
    /// The applicant supplies a material: against a promise (a verification task opens) or
    /// during a 补正.
    SupplyMaterial {
        material: SmolStr,
        /// The uploaded files (already stored by their hash); none when the material is only
        /// marked as supplied.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<MaterialFile>,
    },
    /// The applicant side signs the commitment letter (承诺书) of pre-approval `pre`: `sha256`
    /// is the hash of the text they were shown (refused when it is not the letter's), `remote`
    /// the address they sign from. The server sends it only after checking their password.
    SignLetter {
        pre: PreApprovalId,
        sha256: SmolStr,
        #[serde(default)]
        remote: Option<String>,
    },
    VerifyMaterial {
        task: TaskId,
        accepted: bool,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Delegate (委托: the delegate may act too) or, with `transfer`, hand over (转办).
    Delegate {
        task: TaskId,
        to: SmolStr,
        #[serde(default)]
        transfer: bool,
    },
    /// 委派: ask `to` for an opinion on the task; it is theirs until they answer, then it
    /// returns to the holder, who decides.
    Consult {
        task: TaskId,
        to: SmolStr,
        #[serde(default)]
        text: Option<String>,
    },
    /// The one consulted (委派) gives their opinion; the task goes back to its holder.
    AnswerConsult { task: TaskId, opinion: String },
    /// 加签: `user` gets their own task and must approve too: beside the holder (`with`, the
    /// default), before them (`before`, 前加签: the holder decides after) or after them
    /// (`after`, 后加签: the signer's task opens once the holder approves).
    AddCosigner {
        task: TaskId,
        user: SmolStr,
        #[serde(default)]
        order: SignOrder,
    },
    /// 减签: remove an added signer of the task who has not decided.
    RemoveCosigner { task: TaskId, user: SmolStr },
    /// 拿回: the decider takes back their approval of `task` while the next node has not acted;
    /// the task is theirs again.
    TakeBack { task: TaskId },
    /// The actor opened the instance: every copy (抄送) sent to them is marked read.
    ReadCopies,
    /// The applicant withdraws; the instance ends `withdrawn`.
    Withdraw {
        #[serde(default)]
        reason: Option<String>,
    },
    /// 催办.
    Urge {
        task: TaskId,
        #[serde(default)]
        text: Option<String>,
    },
    /// 挂牌督办 by hand: someone who oversees departments (a supervisor or leader role) puts an
    /// open task on the leader's supervision list at once, as the escalation ladder's last rung
    /// does when it fires; the department's leader is notified.
    Supervise {
        task: TaskId,
        #[serde(default)]
        reason: Option<String>,
    },
    Comment {
        #[serde(default)]
        task: Option<TaskId>,
        text: String,
    },
    /// 抄送.
    Cc {
        #[serde(default)]
        task: Option<TaskId>,
        to: Vec<SmolStr>,
        #[serde(default)]
        text: Option<String>,
    },
    /// Attach an element to the current stage (or to the outstanding item it settles).
    AttachElement {
        element: SmolStr,
        #[serde(default)]
        fields: serde_json::Value,
    },
    /// Stop the task's clock for time the law does not count (听证, 专家评审, 检测).
    Suspend { task: TaskId, reason: String },
    /// End a suspension (with `task`) or answer a 补正 / a wait for the applicant (without).
    Resume {
        #[serde(default)]
        task: Option<TaskId>,
    },
    /// 延长 the task's limit (or, with `step`, its parallel step's overall limit).
    Extend {
        task: TaskId,
        #[serde(alias = "days")]
        limit: RawLimit,
        reason: String,
        #[serde(default)]
        step: bool,
    },
    /// 销号: a leader resolves an item of their supervision list (挂牌督办) once the overdue
    /// task, step, promise, stage or outstanding item is settled.
    ResolveSupervision { target: ClockRef, note: String },
    /// A timer is due. Firing one that is cancelled or already fired does nothing.
    TimerFired { timer: TimerId },
    /// The working-day calendar was revised (a new official year imported, a holiday added):
    /// re-time every armed yellow, due and escalation timer whose instant the revision moves.
    /// Sent by the engine's own actor, one per open instance; deciding it twice changes nothing.
    Recalendar { calendar: SmolStr, revision: u32 },
    /// 迁移: move the instance from version `from` of its workflow to version `to`, old node
    /// and stage ids renamed by `mapping` (an id not named keeps its name). Sent by policy staff
    /// through a migration (`runtime::migrate`); decided by `migrate::decide_migration`, which
    /// needs both versions, never by [`decide`](super::decide) alone.
    Migrate {
        from: u32,
        to: u32,
        #[serde(default)]
        mapping: Mapping,
    },
}

impl Command {
    /// The task the command acts on, if any.
    pub fn task(&self) -> Option<TaskId> {
        match self {
            Command::Claim { task }
            | Command::Approve { task, .. }
            | Command::Reject { task, .. }
            | Command::Return { task, .. }
            | Command::ApproveConditional { task, .. }
            | Command::VerifyMaterial { task, .. }
            | Command::Delegate { task, .. }
            | Command::Consult { task, .. }
            | Command::AnswerConsult { task, .. }
            | Command::AddCosigner { task, .. }
            | Command::RemoveCosigner { task, .. }
            | Command::TakeBack { task }
            | Command::Urge { task, .. }
            | Command::Supervise { task, .. }
            | Command::Suspend { task, .. }
            | Command::Extend { task, .. } => Some(*task),
            Command::Comment { task, .. } | Command::Cc { task, .. } | Command::Resume { task } => {
                *task
            }
            _ => None,
        }
    }
}
