//! The office operations on a task beyond deciding it: 委派 (asking a colleague for an opinion,
//! the task coming back to its holder), 加签 before, beside or after the holder and 减签,
//! 拿回 (the decider taking back an approval the next node has not acted on), and the read
//! marks of 抄送.
//!
//! Who may send each is the one policy's (`policy::may_act`, `policy::is_holder`); whom a task
//! is addressed to while one of them is in progress is `policy::addressees`.

use smol_str::SmolStr;

use crate::compile::Party;
use crate::model::{Action, NotificationEvent};
use crate::runtime::event::{
    CancelReason, ClockRef, CopyId, Decision, Event, OpenedTask, SignOrder, StepId, TaskId,
    TaskKind, TimerKind,
};
use crate::runtime::rejection::{Ineligible, Rejection, TakeBackBlock};
use crate::runtime::state::{StepStatus, Task, TaskStatus};

use super::super::policy;
use super::tasks::Unit3;
use super::{Cx, internal};

impl<'a> Cx<'a> {
    /// Whether `user` may be named to take part in task `t` (as delegate, new holder, the one
    /// consulted or an added signer): not the actor, not the applicant side of this instance,
    /// not someone already on the task. That the user exists is the server's to check.
    pub(super) fn check_eligible(&self, t: &Task, user: &SmolStr) -> Result<(), Rejection> {
        let refuse = |reason| {
            Err(Rejection::IneligibleUser {
                user: user.clone(),
                reason,
            })
        };
        if user.trim().is_empty() || *user == self.actor.name {
            return refuse(Ineligible::Themselves);
        }
        if policy::applicant_parties(self.p, &self.st.applicant, self.project).any(|u| u == user) {
            return refuse(Ineligible::ApplicantSide);
        }
        let on_task = policy::addressee(t, &self.st.applicant) == Party::User(user.clone())
            || t.delegates.contains(user)
            || t.consulting.as_ref() == Some(user)
            || self.signer_task(t.spec.task, user).is_some()
            || t.after_signers.contains(user);
        if on_task {
            return refuse(Ineligible::AlreadyOnTask);
        }
        Ok(())
    }

    /// The open task of `user` signing task `id` (加签), if any.
    fn signer_task(&self, id: TaskId, user: &str) -> Option<TaskId> {
        self.cosigners_of(id).into_iter().find(|c| {
            self.is_open(*c)
                && self
                    .st
                    .task(*c)
                    .is_some_and(|ct| matches!(&ct.spec.assignment, Party::User(u) if u == user))
        })
    }

    /// 委派: the task goes to `to` for an opinion and comes back to its holder.
    pub(super) fn consult(
        &mut self,
        id: TaskId,
        to: &SmolStr,
        text: &Option<String>,
    ) -> Result<(), Rejection> {
        let t = self.actionable(id, Action::Delegate)?;
        self.check_eligible(t, to)?;
        self.emit(Event::Consulted {
            task: id,
            to: to.clone(),
            by: self.by(),
            text: text.clone(),
        });
        self.notify_task(
            NotificationEvent::TaskAssigned,
            vec![Party::User(to.clone())],
            id,
            &t.spec.node,
            text.clone(),
        );
        Ok(())
    }

    /// The one consulted answers: their opinion is recorded and the task is the holder's again.
    pub(super) fn answer_consult(&mut self, id: TaskId, opinion: &str) -> Result<(), Rejection> {
        let t = self.open_task_ref(id)?;
        match &t.consulting {
            None => return Err(Rejection::NotConsulted { task: id }),
            Some(c) if *c != self.actor.name => {
                return Err(Rejection::NotAssigned {
                    task: id,
                    actor: self.by(),
                });
            }
            Some(_) => {}
        }
        if opinion.trim().is_empty() {
            return Err(Rejection::ReasonRequired);
        }
        self.emit(Event::ConsultAnswered {
            task: id,
            by: self.by(),
            opinion: opinion.to_string(),
        });
        let holder = self.party_of(t);
        self.notify_task(
            NotificationEvent::TaskAssigned,
            vec![holder],
            id,
            &t.spec.node,
            Some(opinion.to_string()),
        );
        Ok(())
    }

    /// 加签: `user` signs the task too, before, beside or after its holder.
    pub(super) fn add_cosigner(
        &mut self,
        id: TaskId,
        user: &SmolStr,
        order: SignOrder,
    ) -> Result<(), Rejection> {
        let t = self.actionable(id, Action::Cosign)?;
        if t.spec.kind != TaskKind::Work {
            return Err(Rejection::WrongTaskKind {
                task: id,
                reason: "只能在环节本身的任务上加签".into(),
            });
        }
        if self.signer_task(id, user).is_some() || t.after_signers.contains(user) {
            return Err(Rejection::AlreadyCosigner {
                task: id,
                user: user.clone(),
            });
        }
        self.check_eligible(t, user)?;
        self.emit(Event::SignerAdded {
            task: id,
            user: user.clone(),
            order,
            by: self.by(),
        });
        match order {
            SignOrder::After => Ok(()),
            SignOrder::With | SignOrder::Before => self.open_signer(t, user, order, None),
        }
    }

    /// Opens the task of `user` signing `parent` (加签).
    fn open_signer(
        &mut self,
        parent: &Task,
        user: &SmolStr,
        order: SignOrder,
        replaces: Option<TaskId>,
    ) -> Result<(), Rejection> {
        let task = self.new_task_id();
        self.open_task(OpenedTask {
            task,
            node: parent.spec.node.clone(),
            label: parent.spec.label.clone(),
            kind: TaskKind::Cosign,
            branch: parent.spec.branch.clone(),
            step: parent.spec.step,
            parent: Some(parent.spec.task),
            promise: None,
            assignment: Party::User(user.clone()),
            department: parent.spec.department.clone(),
            clock: None,
            lead: false,
            priority: parent.spec.priority,
            order,
            replaces,
        })
    }

    /// After the holder of `id` approved: the tasks of the signers added after them (后加签).
    pub(super) fn open_after_signers(&mut self, id: TaskId) -> Result<(), Rejection> {
        let t = self.task(id)?;
        if t.spec.kind != TaskKind::Work {
            return Ok(());
        }
        for u in &t.after_signers {
            self.open_signer(t, u, SignOrder::After, None)?;
        }
        Ok(())
    }

    /// 减签: removes an added signer who has not decided. The holder may, while the task is
    /// open; so may the one who approved it while its signers are still open, and then the task
    /// goes on as if the signer had never been added.
    pub(super) fn remove_cosigner(&mut self, id: TaskId, user: &SmolStr) -> Result<(), Rejection> {
        let t = self.task(id)?;
        if t.spec.kind != TaskKind::Work {
            return Err(Rejection::WrongTaskKind {
                task: id,
                reason: "减签在被加签的任务上办理".into(),
            });
        }
        let decided = match t.status {
            TaskStatus::Open => {
                self.actionable(id, Action::Cosign)?;
                false
            }
            TaskStatus::Decided
                if t.decided_by.as_ref() == Some(&self.actor.name)
                    && matches!(self.unit(id), Unit3::Open) =>
            {
                true
            }
            TaskStatus::Decided => return Err(Rejection::AlreadyDecided { task: id }),
            TaskStatus::Cancelled => return Err(Rejection::TaskNotOpen { task: id }),
        };
        let open = self.signer_task(id, user);
        let pending = t.is_open() && t.after_signers.contains(user);
        if open.is_none() && !pending {
            let decided_signer = self.cosigners_of(id).into_iter().any(|c| {
                self.decision_of(c).is_some()
                    && self
                        .st
                        .task(c)
                        .is_some_and(|ct| ct.spec.assignment == Party::User(user.clone()))
            });
            return Err(if decided_signer {
                Rejection::SignerDecided {
                    task: id,
                    user: user.clone(),
                }
            } else {
                Rejection::NotASigner {
                    task: id,
                    user: user.clone(),
                }
            });
        }
        self.emit(Event::SignerRemoved {
            task: id,
            user: user.clone(),
            by: self.by(),
        });
        if let Some(c) = open {
            self.cancel_task(c, CancelReason::SignerRemoved);
        }
        if decided {
            // The approval waited only for this signer, perhaps: the unit may complete now.
            self.after_decision(id)?;
        }
        Ok(())
    }

    /// Whether someone acted on an open task: claimed it, delegated or consulted on it, added a
    /// signer to it, or stopped its clock.
    fn touched(&self, t: &Task) -> bool {
        t.claimed_by.is_some()
            || !t.delegates.is_empty()
            || t.consulting.is_some()
            || !t.after_signers.is_empty()
            || t.suspended
            || self
                .cosigners_of(t.spec.task)
                .iter()
                .any(|c| self.is_open(*c))
    }

    /// 拿回: the decider takes back an approval while the next node has not acted. See
    /// docs/runtime.md ("拿回") for when it is possible and what it undoes.
    pub(super) fn take_back(&mut self, id: TaskId) -> Result<(), Rejection> {
        let st = self.st;
        let t = self.task(id)?;
        let block = |reason| Err(Rejection::CannotTakeBack { task: id, reason });
        if t.status != TaskStatus::Decided || t.decided_by.as_ref() != Some(&self.actor.name) {
            return block(TakeBackBlock::NotYourDecision);
        }
        if t.decision != Some(Decision::Approve) || t.spec.kind == TaskKind::Verify {
            return block(TakeBackBlock::NotAnApproval);
        }
        if st.path_end.is_some() {
            return block(TakeBackBlock::FlowEnded);
        }
        if self
            .def
            .workflow
            .nodes
            .iter()
            .any(|n| n.id.value == t.spec.node && n.document.is_some())
        {
            return block(TakeBackBlock::IssuesDocument);
        }
        if st.returned.is_some() {
            return block(TakeBackBlock::NextActed);
        }
        let main_id = match t.spec.kind {
            TaskKind::Cosign => t
                .spec
                .parent
                .ok_or_else(|| internal("co-sign task without parent"))?,
            _ => id,
        };
        let main = self.task(main_id)?;
        let step = main.spec.step.and_then(|s| st.step(s));
        let moved = match step {
            Some(s) => s.status != StepStatus::Open,
            None => !matches!(self.unit(main_id), Unit3::Open),
        };
        let mut reopened: Option<StepId> = None;
        let mut withdrawn: Vec<StepId> = Vec::new();
        // What the approval opened that is now to close: in a unit or step still open, the
        // tasks of signers added after the holder; once the flow moved on, every open task of
        // the path (the next node's, and a next parallel step's branches).
        let undo: Vec<TaskId> = if moved {
            let later = st.tasks.iter().any(|x| {
                x.spec.kind != TaskKind::Verify
                    && x.status == TaskStatus::Decided
                    && x.decided_seq > t.decided_seq
            });
            if later {
                return block(TakeBackBlock::NextActed);
            }
            let (_, n) = self.node_of(t)?;
            if n.stage.is_some() && n.stage != self.stage.map(|s| s.1) {
                return block(TakeBackBlock::LeftStage);
            }
            if let Some(s) = step {
                if s.status != StepStatus::Approved {
                    return block(TakeBackBlock::StepRejected);
                }
                reopened = Some(s.id);
            }
            withdrawn = st
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Open)
                .map(|s| s.id)
                .collect();
            self.open_path_tasks()
        } else {
            // The holder's own signers after them, opened by the approval.
            self.cosigners_of(id)
                .into_iter()
                .filter(|c| {
                    st.task(*c)
                        .is_some_and(|ct| ct.spec.order == SignOrder::After)
                })
                .collect()
        };
        for u in &undo {
            let Some(x) = st.task(*u) else { continue };
            if self.decision_of(*u).is_some() || (self.is_open(*u) && self.touched(x)) {
                return block(TakeBackBlock::NextActed);
            }
        }
        self.taken_back.push(id);
        if let Some(s) = reopened {
            self.steps_reopened.push(s);
        }
        self.steps_withdrawn.extend(withdrawn.iter().copied());
        self.emit(Event::TakenBack {
            task: id,
            by: self.by(),
            reopened,
            withdrawn: withdrawn.clone(),
        });
        for u in undo {
            self.cancel_task(u, CancelReason::TakenBack);
        }
        for w in &withdrawn {
            self.cancel_clock_timers(&ClockRef::Step(*w));
        }
        if moved {
            self.cancel_timers_where(|k| matches!(k, TimerKind::Wait { .. }));
            self.emit(Event::NodeEntered {
                node: t.spec.node.clone(),
            });
        }
        if let Some(s) = reopened.and_then(|s| st.step(s)) {
            if let Some(c) = &s.clock {
                self.arm_clock(ClockRef::Step(s.id), c)?;
            }
            // The branches the join closed open again, each on its own clock.
            for b in &s.tasks {
                let Some(bt) = st.task(*b) else { continue };
                if *b != id && bt.cancelled == Some(CancelReason::JoinFired) {
                    self.stand_in(bt, bt.spec.assignment.clone(), None)?;
                }
            }
        }
        // The task is the decider's again, on the clock it had; the signers still open beside
        // or before it sign the stand-in (those after it are opened again by its approval).
        let again = self.stand_in(t, Party::User(self.by()), t.spec.parent)?;
        if t.spec.kind == TaskKind::Work {
            for c in self.cosigners_of(id) {
                let Some(ct) = st.task(c) else { continue };
                if self.is_open(c) {
                    self.cancel_task(c, CancelReason::TakenBack);
                    self.stand_in(ct, ct.spec.assignment.clone(), Some(again))?;
                }
            }
        }
        Ok(())
    }

    /// Opens a task standing in for `old` (拿回), assigned to `to` (and, for a signer's task, to
    /// `parent`), on `old`'s clock: it is warned and escalated as a new task on that clock
    /// would be.
    fn stand_in(
        &mut self,
        old: &Task,
        to: Party,
        parent: Option<TaskId>,
    ) -> Result<TaskId, Rejection> {
        let mut spec = old.spec.clone();
        let id = self.new_task_id();
        spec.task = id;
        spec.replaces = Some(old.spec.task);
        spec.assignment = to;
        spec.parent = parent;
        if let Some(c) = spec.clock.as_mut() {
            c.yellow_warned = false;
            c.red_warned = false;
        }
        self.open_task(spec)?;
        Ok(id)
    }

    /// The actor opened the instance: the copies sent to them are read. Nothing to mark is no
    /// event (opening the page twice records one reading).
    pub(super) fn read_copies(&mut self) -> Result<(), Rejection> {
        let me = &self.actor.name;
        let copies: Vec<CopyId> = self
            .st
            .copies
            .iter()
            .filter(|c| c.unread_by(me))
            .map(|c| c.id)
            .collect();
        if !copies.is_empty() {
            self.emit(Event::CopyRead {
                copies,
                by: self.by(),
            });
        }
        Ok(())
    }
}
