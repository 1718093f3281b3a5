//! Tasks: opening, deciding and cancelling them, the "unit" of a task with its co-signers
//! (会签/加签: a reject by any member decides the unit), and the commands on one task (claim,
//! approve, reject, delegate, add a co-signer, urge, comment, copy, suspend, resume).

use smol_str::SmolStr;

use crate::compile::{NodePlan, Party};
use crate::model::{Action, NotificationEvent};
use crate::runtime::clock::Clock;
use crate::runtime::event::{
    CancelReason, ClockRef, Decision, Event, NoticeData, OpenedTask, SignOrder, TaskId, TaskKind,
};
use crate::runtime::rejection::Rejection;
use crate::runtime::state::{Task, TaskStatus};

use super::super::policy;
use super::walk::not_earlier;
use super::{Cx, internal};

/// The outcome of a task together with its co-signers (a "unit").
pub(super) enum Unit3 {
    Open,
    Approved,
    Rejected { to: Option<SmolStr>, seq: u64 },
}

impl<'a> Cx<'a> {
    pub(super) fn open_node_task(&mut self, ix: usize) -> Result<(), Rejection> {
        let n = self.node(ix)?;
        let a = n
            .assignee
            .as_ref()
            .ok_or_else(|| internal(format!("task `{}` has no assignee", n.id)))?;
        let party = self.resolve(a, &n.id)?;
        let department = self.department_of(&party);
        let clock = n.limits.get(self.channel).map(|l| Clock::new(self.now, l));
        let task = self.new_task_id();
        self.open_task(OpenedTask {
            task,
            node: n.id.clone(),
            label: n.id.clone(),
            kind: TaskKind::Work,
            branch: None,
            step: None,
            parent: None,
            promise: None,
            assignment: party,
            department,
            clock,
            lead: false,
            priority: self.priority,
            order: SignOrder::With,
            replaces: None,
        })
    }

    pub(super) fn open_task(&mut self, spec: OpenedTask) -> Result<(), Rejection> {
        let id = spec.task;
        let clock = spec.clock.clone();
        let natural = vec![spec.assignment.clone()];
        let data = NoticeData {
            task: Some(id),
            node: Some(spec.node.clone()),
            ..NoticeData::default()
        };
        self.opened.push((id, spec.parent));
        self.emit(Event::TaskOpened(spec));
        if let Some(c) = clock {
            self.arm_clock(ClockRef::Task(id), &c)?;
        }
        self.notify(NotificationEvent::TaskAssigned, natural, data);
        Ok(())
    }

    pub(super) fn new_task_id(&mut self) -> TaskId {
        let id = TaskId(self.next_task);
        self.next_task += 1;
        id
    }

    /// Cancels an open task, its timers and its open co-signers.
    pub(super) fn cancel_task(&mut self, id: TaskId, reason: CancelReason) {
        if !self.is_open(id) {
            return;
        }
        self.cancelled.push(id);
        self.emit(Event::TaskCancelled { task: id, reason });
        self.cancel_timers_where(|k| k.task() == Some(id));
        for c in self.cosigners_of(id) {
            self.cancel_task(c, CancelReason::ParentClosed);
        }
    }

    pub(super) fn record_decision(
        &mut self,
        id: TaskId,
        decision: Decision,
        to: Option<SmolStr>,
        comment: Option<String>,
    ) {
        self.decided.push((id, decision, to.clone()));
        self.emit(Event::TaskDecided {
            task: id,
            decision,
            by: self.by(),
            to,
            comment,
        });
        self.cancel_timers_where(|k| k.task() == Some(id));
    }

    /// The outcome of a task with its co-signers.
    pub(super) fn unit(&self, main: TaskId) -> Unit3 {
        let st_cosigners = self
            .st
            .task(main)
            .map(|t| t.cosigners.as_slice())
            .unwrap_or(&[]);
        let new_cosigners = self
            .opened
            .iter()
            .filter(|o| o.1 == Some(main))
            .map(|o| o.0);
        let members = std::iter::once(main)
            .chain(st_cosigners.iter().copied())
            .chain(new_cosigners);
        // A reject by any member decides the unit; the earliest one counts.
        let mut reject: Option<(Option<SmolStr>, u64)> = None;
        let mut open = false;
        for m in members {
            match self.decision_of(m) {
                Some((Decision::Reject, to, seq)) => {
                    if reject.as_ref().is_none_or(|r| seq < r.1) {
                        reject = Some((to, seq));
                    }
                }
                Some(_) => {}
                None => {
                    if self.is_open(m) {
                        open = true;
                    } else if m == main && reject.is_none() {
                        // Cancelled without a decision: overruled by a co-signer's reject (found
                        // above or below) or closed by the join; it approves nothing.
                        reject = Some((None, u64::MAX));
                    }
                }
            }
        }
        match (reject, open) {
            (Some((to, seq)), _) => Unit3::Rejected { to, seq },
            (None, true) => Unit3::Open,
            (None, false) => Unit3::Approved,
        }
    }

    /// After a decision on `id` (a task or a co-signer's task): complete the unit if it can.
    pub(super) fn after_decision(&mut self, id: TaskId) -> Result<(), Rejection> {
        let t = self.task(id)?;
        let main = match t.spec.kind {
            TaskKind::Cosign => t
                .spec
                .parent
                .ok_or_else(|| internal("co-sign task without parent"))?,
            _ => id,
        };
        match self.unit(main) {
            Unit3::Open => Ok(()),
            Unit3::Approved => {
                let mt = self.task(main)?;
                match mt.spec.step {
                    Some(step) => self.evaluate_join(step),
                    None => {
                        let (_, n) = self.node_of(mt)?;
                        let next = n
                            .next
                            .ok_or_else(|| internal(format!("node `{}` has no next", n.id)))?;
                        self.enter(next)
                    }
                }
            }
            Unit3::Rejected { to, .. } => {
                // The unit is decided: close what is left of it.
                if self.is_open(main) {
                    self.cancel_task(main, CancelReason::CosignerRejected);
                }
                for c in self.cosigners_of(main) {
                    self.cancel_task(c, CancelReason::ParentClosed);
                }
                let mt = self.task(main)?;
                match mt.spec.step {
                    Some(step) => self.evaluate_join(step),
                    None => {
                        let (ix, _) = self.node_of(mt)?;
                        self.apply_reject(ix, to)
                    }
                }
            }
        }
    }

    /// The node whose rules govern a task (a co-signer's: its parent's node).
    pub(super) fn node_of(&self, t: &Task) -> Result<(usize, &'a NodePlan), Rejection> {
        let ix = self.node_ix(&t.spec.node)?;
        Ok((ix, self.node(ix)?))
    }

    /// Checks that `actor` may take `action` on task `id` now; returns the task.
    pub(super) fn actionable(&self, id: TaskId, action: Action) -> Result<&'a Task, Rejection> {
        let t = self.open_task_ref(id)?;
        match t.spec.kind {
            TaskKind::Verify => {
                return Err(Rejection::WrongTaskKind {
                    task: id,
                    reason: "a verification task is decided with verify_material".into(),
                });
            }
            TaskKind::Cosign => {
                if !matches!(action, Action::Approve | Action::Reject | Action::Comment) {
                    return Err(Rejection::WrongTaskKind {
                        task: id,
                        reason: "a co-signer may approve, reject or comment".into(),
                    });
                }
            }
            TaskKind::Work => {
                let (_, n) = self.node_of(t)?;
                if !n.allows(action) {
                    return Err(Rejection::ActionNotAllowed {
                        node: n.id.clone(),
                        action,
                    });
                }
            }
        }
        if let Some(c) = &t.consulting {
            if *c == self.actor.name {
                if action != Action::Comment {
                    return Err(Rejection::WrongTaskKind {
                        task: id,
                        reason: "受委派人回复意见后，由委派人作出决定".into(),
                    });
                }
            } else if policy::is_holder(t, self.actor, &self.st.applicant) {
                return Err(Rejection::Consulting {
                    task: id,
                    with: c.clone(),
                });
            }
        }
        self.check_may_act(t)?;
        if let Some(first) = t.awaiting.first()
            && matches!(
                action,
                Action::Approve | Action::Reject | Action::Conditional | Action::Return
            )
        {
            let signer = match self.st.task(*first).map(|s| &s.spec.assignment) {
                Some(Party::User(u)) => u.clone(),
                _ => SmolStr::default(),
            };
            return Err(Rejection::AwaitingSigner { task: id, signer });
        }
        if t.suspended && action != Action::Comment {
            return Err(Rejection::Suspended { task: id });
        }
        if self.st.returned.is_some() && action != Action::Comment && action != Action::Delegate {
            return Err(Rejection::WithApplicant);
        }
        Ok(t)
    }

    /// `may_act` as a check: the rejection names the task and the actor.
    pub(super) fn check_may_act(&self, t: &Task) -> Result<(), Rejection> {
        if self.may_act(t) {
            return Ok(());
        }
        Err(Rejection::NotAssigned {
            task: t.spec.task,
            actor: self.by(),
        })
    }

    pub(super) fn open_task_ref(&self, id: TaskId) -> Result<&'a Task, Rejection> {
        let t = self.task(id)?;
        match t.status {
            TaskStatus::Open => Ok(t),
            TaskStatus::Decided => Err(Rejection::AlreadyDecided { task: id }),
            TaskStatus::Cancelled => Err(Rejection::TaskNotOpen { task: id }),
        }
    }

    pub(super) fn claim(&mut self, id: TaskId) -> Result<(), Rejection> {
        let t = self.open_task_ref(id)?;
        if let Some(c) = &t.claimed_by {
            if *c == self.actor.name {
                return Ok(()); // a double click: already ours
            }
            return Err(Rejection::AlreadyClaimed {
                task: id,
                by: c.clone(),
            });
        }
        self.check_may_act(t)?;
        self.emit(Event::TaskClaimed {
            task: id,
            by: self.by(),
        });
        Ok(())
    }

    pub(super) fn approve(&mut self, id: TaskId, comment: Option<String>) -> Result<(), Rejection> {
        self.actionable(id, Action::Approve)?;
        self.record_decision(id, Decision::Approve, None, comment);
        self.open_after_signers(id)?;
        self.after_decision(id)
    }

    pub(super) fn reject(
        &mut self,
        id: TaskId,
        to: Option<&SmolStr>,
        reason: &Option<String>,
    ) -> Result<(), Rejection> {
        let t = self.actionable(id, Action::Reject)?;
        if let Some(target) = to {
            let (_, n) = self.node_of(t)?;
            let ok = self
                .def
                .node_ix(target)
                .is_some_and(|tix| n.reject_to.contains(&tix));
            if !ok {
                return Err(not_earlier(self.p, n, target));
            }
        }
        self.record_decision(id, Decision::Reject, to.cloned(), reason.clone());
        self.after_decision(id)
    }

    pub(super) fn delegate(
        &mut self,
        id: TaskId,
        to: &SmolStr,
        transfer: bool,
    ) -> Result<(), Rejection> {
        let t = self.task(id)?;
        if t.spec.kind == TaskKind::Work {
            self.actionable(id, Action::Delegate)?;
        } else {
            if !t.is_open() {
                return Err(Rejection::TaskNotOpen { task: id });
            }
            self.check_may_act(t)?;
        }
        self.check_eligible(t, to)?;
        self.emit(Event::TaskDelegated {
            task: id,
            to: to.clone(),
            transfer,
            by: self.by(),
        });
        self.notify_task(
            NotificationEvent::TaskAssigned,
            vec![Party::User(to.clone())],
            id,
            &t.spec.node,
            None,
        );
        Ok(())
    }

    pub(super) fn urge(&mut self, id: TaskId, text: &Option<String>) -> Result<(), Rejection> {
        let t = self.open_task_ref(id)?;
        if !self.may_urge(t) {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: format!(
                    "urge task {id} (the applicant side, a department's supervisor or leader, \
                     and the task's own department may)"
                ),
            });
        }
        self.emit(Event::Urged {
            task: id,
            by: self.by(),
            text: text.clone(),
        });
        let natural = vec![self.party_of(t)];
        self.notify_task(
            NotificationEvent::Urge,
            natural,
            id,
            &t.spec.node,
            text.clone(),
        );
        Ok(())
    }

    /// 挂牌督办 by hand: only who oversees departments; a task already supervised stays so,
    /// once.
    pub(super) fn supervise(
        &mut self,
        id: TaskId,
        reason: &Option<String>,
    ) -> Result<(), Rejection> {
        let t = self.open_task_ref(id)?;
        if !policy::oversees(self.p, self.actor) {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: format!("挂牌督办任务 {id}：限督办人员与部门负责人、分管领导"),
            });
        }
        if self.st.supervised.contains(&id) {
            return Ok(());
        }
        let dept = t
            .spec
            .department
            .as_ref()
            .and_then(|d| self.p.departments.get(d));
        let leader = dept.and_then(|d| d.leader.clone());
        self.emit(Event::Supervised {
            task: id,
            leader: leader.clone(),
        });
        let mut to = vec![self.party_of(t)];
        if let Some(l) = leader {
            to.push(Party::Role(l));
        }
        self.notify_task(
            NotificationEvent::Supervise,
            to,
            id,
            &t.spec.node,
            reason.clone(),
        );
        Ok(())
    }

    /// Refuses an instance-level comment or copy from someone outside the file.
    fn take_part(&self, what: &str) -> Result<(), Rejection> {
        if self.may_take_part() {
            return Ok(());
        }
        Err(Rejection::NotAuthorised {
            actor: self.by(),
            what: format!("{what}：限申请方、办理过本申报任务的人员及其所在部门、督办领导"),
        })
    }

    /// 催办 is for those who wait on a task or answer for it: the applicant side, a role named
    /// as some department's supervisor or leader (they chase overdue work), and members of the
    /// task's own department.
    pub(super) fn may_urge(&self, t: &Task) -> bool {
        if self.is_applicant() {
            return true;
        }
        let a = self.actor;
        policy::oversees(self.p, a) || (a.department.is_some() && a.department == t.spec.department)
    }

    pub(super) fn comment(&mut self, task: Option<TaskId>, text: &str) -> Result<(), Rejection> {
        if text.trim().is_empty() {
            return Err(Rejection::ReasonRequired);
        }
        match task {
            Some(id) => {
                self.actionable(id, Action::Comment)?;
            }
            None => self.take_part("对本申报发表意见")?,
        }
        self.emit(Event::Commented {
            task,
            by: self.by(),
            text: text.to_string(),
        });
        Ok(())
    }

    pub(super) fn cc(
        &mut self,
        task: Option<TaskId>,
        to: &[SmolStr],
        text: &Option<String>,
    ) -> Result<(), Rejection> {
        if to.is_empty() {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: "send a copy to nobody (name at least one user)".into(),
            });
        }
        let mut node = None;
        match task {
            Some(id) => {
                let t = self.task(id)?;
                self.check_may_act(t)?;
                node = Some(t.spec.node.clone());
            }
            None => self.take_part("从本申报抄送")?,
        }
        self.emit(Event::CarbonCopied {
            task,
            to: to.to_vec(),
            by: self.by(),
            text: text.clone(),
        });
        self.notify(
            NotificationEvent::Cc,
            to.iter().map(|u| Party::User(u.clone())).collect(),
            NoticeData {
                task,
                node,
                by: Some(self.by()),
                text: text.clone(),
                ..NoticeData::default()
            },
        );
        Ok(())
    }

    /// The clocks a suspension of task `t` holds: its own and its parallel step's, where they
    /// have one.
    fn held_by_suspension(&self, t: &Task) -> [Option<ClockRef>; 2] {
        let own = t.spec.clock.as_ref().map(|_| ClockRef::Task(t.spec.task));
        let step = t
            .spec
            .step
            .filter(|s| self.st.step(*s).is_some_and(|s| s.clock.is_some()))
            .map(ClockRef::Step);
        [own, step]
    }

    pub(super) fn suspend(&mut self, id: TaskId, reason: &str) -> Result<(), Rejection> {
        let t = self.actionable(id, Action::Suspend)?;
        if reason.trim().is_empty() {
            return Err(Rejection::ReasonRequired);
        }
        self.emit(Event::Suspended {
            task: id,
            by: self.by(),
            reason: reason.to_string(),
        });
        for r in self.held_by_suspension(t).into_iter().flatten() {
            self.stop_clock(r)?;
        }
        Ok(())
    }

    /// Resumes a suspended task: its clocks (and its step's) run on from where they stopped.
    pub(super) fn resume_task(&mut self, id: TaskId) -> Result<(), Rejection> {
        let t = self.open_task_ref(id)?;
        if !t.suspended {
            return Err(Rejection::NotSuspended { task: id });
        }
        self.check_may_act(t)?;
        self.emit(Event::Resumed {
            task: id,
            by: self.by(),
        });
        for r in self.held_by_suspension(t).into_iter().flatten() {
            self.resume_clock(r)?;
        }
        Ok(())
    }
}
