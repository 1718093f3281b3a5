//! Materials and promises: 补正 (the case goes back to the applicant with its clocks stopped,
//! and resumes when the materials are supplied), 容缺 pre-approval with promises to supply a
//! material later, the verification of a supplied material, and the breach of a promise.

use smol_str::SmolStr;

use crate::compile::Party;
use crate::limit::Limit;
use crate::model::{Action, BreachAction, NodeType, NotificationEvent, Outcome, RawLimit};
use crate::runtime::clock::{Clock, Colour};
use crate::runtime::event::{
    ClockRef, Decision, Event, MaterialFile, OpenedTask, PreApprovalId, PromiseId, TaskId,
    TaskKind, TimerKind,
};
use crate::runtime::letter;
use crate::runtime::rejection::Rejection;
use crate::runtime::state::{PromiseStatus, StepStatus};

use super::timers::limit_in_unit;
use super::{Cx, internal, u32_of};

impl<'a> Cx<'a> {
    pub(super) fn approve_conditional(
        &mut self,
        id: TaskId,
        waive: &[SmolStr],
        limit: Option<&RawLimit>,
        comment: &Option<String>,
    ) -> Result<(), Rejection> {
        let t = self.actionable(id, Action::Conditional)?;
        let (_, n) = self.node_of(t)?;
        let c = n.conditional.as_ref().ok_or(Rejection::ActionNotAllowed {
            node: n.id.clone(),
            action: Action::Conditional,
        })?;
        if waive.is_empty() {
            return Err(Rejection::NothingWaived);
        }
        let mut materials: Vec<SmolStr> = Vec::with_capacity(waive.len());
        for m in waive {
            if self.p.materials.get(m).copied() == Some(true) {
                return Err(Rejection::MaterialIsRedLine {
                    material: m.clone(),
                });
            }
            if !c.waivable.contains(m) {
                return Err(Rejection::MaterialNotWaivable {
                    material: m.clone(),
                });
            }
            if !materials.contains(m) {
                materials.push(m.clone());
            }
        }
        let limit = match limit {
            None => c.limit,
            Some(raw) => {
                let l = limit_in_unit(
                    raw,
                    c.limit.unit,
                    format!("write it in the rule's unit, like `{}`", c.limit),
                )?;
                if l.amount > c.limit.amount {
                    return Err(Rejection::LimitExceedsRule {
                        asked: l.to_string(),
                        rule: c.limit.to_string(),
                    });
                }
                l
            }
        };
        if self.cosigners_of(id).iter().any(|c| self.is_open(*c)) {
            return Err(Rejection::CosignersOpen { task: id });
        }
        self.record_decision(id, Decision::ApproveConditional, None, comment.clone());
        let pre = PreApprovalId(self.next_pre);
        self.next_pre += 1;
        self.emit(Event::PreApproved {
            pre,
            task: id,
            node: n.id.clone(),
            materials: materials.clone(),
            by: self.by(),
        });
        self.issue_letter(pre, id, &n.id, &materials, limit)?;
        for m in materials {
            let promise = PromiseId(self.next_promise);
            self.next_promise += 1;
            let clock = Clock::new(self.now, limit);
            self.emit(Event::PromiseMade {
                promise,
                pre,
                material: m,
                clock: clock.clone(),
            });
            self.arm_clock(ClockRef::Promise(promise), &clock)?;
        }
        self.open_after_signers(id)?;
        self.after_decision(id)
    }

    /// The commitment letter (承诺书) of a pre-approval, when the step names one: rendered from
    /// its template with the facts of this pre-approval (the deadline is the promise clocks'
    /// own due date on the workflow's calendar), recorded with its hash and the clock of its
    /// `sign_within`.
    fn issue_letter(
        &mut self,
        pre: PreApprovalId,
        task: TaskId,
        node: &SmolStr,
        materials: &[SmolStr],
        limit: Limit,
    ) -> Result<(), Rejection> {
        let nix = self.node_ix(node)?;
        let Some(c) = self.node(nix)?.conditional.as_ref() else {
            return Ok(());
        };
        let Some(plan) = c.letter.as_ref() else {
            return Ok(());
        };
        let wf = &self.def.workflow;
        let node_name = wf
            .nodes
            .iter()
            .find(|x| x.id.value == node.as_str())
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| node.to_string());
        let department = self.task(task).ok().and_then(|t| t.spec.department.clone());
        let department_name = department
            .as_deref()
            .and_then(|d| wf.departments.iter().find(|x| x.id.value == d))
            .map(|d| d.name.clone().unwrap_or_else(|| d.id.value.clone()))
            .unwrap_or_else(|| "审批部门".to_string());
        let names: Vec<String> = materials
            .iter()
            .map(|m| {
                wf.materials
                    .iter()
                    .find(|x| x.id.value == m.as_str())
                    .and_then(|x| x.name.clone())
                    .unwrap_or_else(|| m.to_string())
            })
            .collect();
        let deadline = Clock::new(self.now, limit)
            .due(self.cal)?
            .map(crate::runtime::deadline::last_day);
        let facts = letter::LetterFacts {
            project: self.project,
            applicant: &self.st.applicant,
            node: &node_name,
            department: &department_name,
            materials: names,
            limit,
            deadline,
            on_breach: &c.on_breach,
            issued: self.now,
            sign_within: plan.sign_within,
        };
        let text = plan
            .template
            .render(&letter::variables(&facts))
            .map_err(|e| internal(format!("letter template `{}`: {e}", plan.name)))?;
        let sha256 = letter::sha256_hex(&text);
        self.emit(Event::LetterIssued {
            pre,
            node: node.clone(),
            template: plan.name.clone(),
            text,
            sha256,
            clock: Clock::new(self.now, plan.sign_within),
        });
        Ok(())
    }

    /// The applicant side signs a pre-approval's letter: only one of the instance's applicant
    /// parties ([`crate::runtime::policy::applicant_parties`]), once, and only the text whose
    /// hash they send (what they were shown).
    pub(super) fn sign_letter(
        &mut self,
        pre: PreApprovalId,
        sha256: &SmolStr,
        remote: &Option<String>,
    ) -> Result<(), Rejection> {
        let Some(l) = self.st.letter(pre) else {
            return Err(Rejection::UnknownLetter { pre });
        };
        if !self.is_applicant() {
            return Err(Rejection::NotLetterSigner {
                pre,
                actor: self.by(),
            });
        }
        if let Some(s) = &l.signed {
            return Err(Rejection::LetterAlreadySigned {
                pre,
                by: s.by.clone(),
            });
        }
        if !sha256.trim().eq_ignore_ascii_case(&l.sha256) {
            return Err(Rejection::LetterChanged {
                pre,
                sent: sha256.clone(),
            });
        }
        self.emit(Event::LetterSigned {
            pre,
            by: self.by(),
            at: self.now,
            remote: remote.clone(),
            sha256: l.sha256.clone(),
        });
        Ok(())
    }

    /// 补正: the case goes back to the applicant; every running clock of the case stops.
    pub(super) fn give_back(
        &mut self,
        id: TaskId,
        reason: &str,
        materials: &[SmolStr],
    ) -> Result<(), Rejection> {
        self.actionable(id, Action::Return)?;
        if reason.trim().is_empty() {
            return Err(Rejection::ReasonRequired);
        }
        let st = self.st;
        let mut held: Vec<ClockRef> = Vec::new();
        for t in st.open_tasks() {
            if t.spec.clock.is_some() {
                held.push(ClockRef::Task(t.spec.task));
            }
        }
        for s in &st.steps {
            if s.status == StepStatus::Open && s.clock.is_some() {
                held.push(ClockRef::Step(s.id));
            }
        }
        if let Some(v) = st.current_stage()
            && v.clock.is_some()
        {
            held.push(ClockRef::Stage(v.id));
        }
        self.emit(Event::ReturnedToApplicant {
            task: id,
            by: self.by(),
            reason: reason.to_string(),
            materials: materials.to_vec(),
            held: held.clone(),
        });
        for r in held {
            self.stop_clock(r)?;
        }
        Ok(())
    }

    pub(super) fn supply(
        &mut self,
        material: &SmolStr,
        files: &[MaterialFile],
    ) -> Result<(), Rejection> {
        if !self.is_applicant() {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: "supply materials for the applicant".into(),
            });
        }
        if !self.p.materials.contains_key(material) {
            return Err(Rejection::MaterialNotListed {
                material: material.clone(),
            });
        }
        let st = self.st;
        let promise = st
            .promises
            .iter()
            .find(|p| p.material == *material && p.status == PromiseStatus::Open);
        if let Some(p) = promise {
            let pre = st
                .pre_approvals
                .get(p.pre.ix())
                .ok_or_else(|| internal("promise without pre-approval"))?;
            let pt = self.task(pre.task)?;
            let nix = self.node_ix(&pre.node)?;
            let n = self.node(nix)?;
            let verifier = match n.conditional.as_ref().and_then(|c| c.verify_by.as_ref()) {
                Some(a) => self.resolve(a, &n.id)?,
                None => pt.spec.assignment.clone(),
            };
            self.emit(Event::MaterialSupplied {
                material: material.clone(),
                promise: Some(p.id),
                by: self.by(),
                files: files.to_vec(),
            });
            let task = self.new_task_id();
            let department = self.department_of(&verifier);
            self.open_task(OpenedTask {
                task,
                node: pre.node.clone(),
                label: smol_str::format_smolstr!("verify.{material}"),
                kind: TaskKind::Verify,
                branch: None,
                step: None,
                parent: None,
                promise: Some(p.id),
                assignment: verifier,
                department,
                clock: None,
                lead: false,
                priority: self.priority,
                order: Default::default(),
                replaces: None,
            })?;
            return Ok(());
        }
        if let Some(r) = &st.returned
            && (r.materials.is_empty() || r.materials.contains(material))
        {
            self.emit(Event::MaterialSupplied {
                material: material.clone(),
                promise: None,
                by: self.by(),
                files: files.to_vec(),
            });
            let complete = !r.materials.is_empty()
                && r.materials
                    .iter()
                    .all(|m| m == material || r.supplied.contains(m));
            if complete {
                self.resubmit()?;
            }
            return Ok(());
        }
        Err(Rejection::MaterialNotExpected {
            material: material.clone(),
        })
    }

    /// The applicant answers a 补正: the clocks it held resume with their used days kept.
    pub(super) fn resubmit(&mut self) -> Result<(), Rejection> {
        let Some(r) = &self.st.returned else {
            return Err(Rejection::NotWithApplicant);
        };
        self.emit(Event::ApplicantResubmitted { by: self.by() });
        for c in r.held.clone() {
            self.resume_clock(c)?;
        }
        Ok(())
    }

    pub(super) fn verify(
        &mut self,
        id: TaskId,
        accepted: bool,
        reason: &Option<String>,
    ) -> Result<(), Rejection> {
        let t = self.open_task_ref(id)?;
        let Some(pid) = t.spec.promise.filter(|_| t.spec.kind == TaskKind::Verify) else {
            return Err(Rejection::WrongTaskKind {
                task: id,
                reason: "only a verification task is decided with verify_material".into(),
            });
        };
        self.check_may_act(t)?;
        let decision = if accepted {
            Decision::Accept
        } else {
            Decision::Refuse
        };
        self.record_decision(id, decision, None, reason.clone());
        self.emit(Event::MaterialVerified {
            promise: pid,
            task: id,
            accepted,
            by: self.by(),
        });
        if !accepted {
            return self.promise_reopened(pid);
        }
        self.verified.push(pid);
        self.cancel_clock_timers(&ClockRef::Promise(pid));
        let st = self.st;
        let p = st
            .promise(pid)
            .ok_or_else(|| internal(format!("unknown promise {pid}")))?;
        let all = st
            .promises
            .iter()
            .filter(|q| q.pre == p.pre)
            .all(|q| q.status == PromiseStatus::Verified || self.verified.contains(&q.id));
        if all {
            self.emit(Event::FormalApproval { pre: p.pre });
        }
        if st.path_end == Some(Outcome::Approved) && !self.promises_pending() {
            self.end_instance(Outcome::Approved);
        }
        Ok(())
    }

    pub(super) fn promises_pending(&self) -> bool {
        let made_now = self.next_promise > u32_of(self.st.promises.len());
        made_now
            || self
                .st
                .promises
                .iter()
                .any(|p| p.status != PromiseStatus::Verified && !self.verified.contains(&p.id))
    }

    /// A promise went back to waiting for its material (the material was refused at
    /// verification). Its deadline timer may have fired meanwhile, while the material was being
    /// checked, and done nothing; so past the deadline the commitment is breached now, and
    /// before it the deadline (and yellow) timers are armed again if they are gone. Without
    /// this a refused promise would stay red for ever with no breach.
    pub(super) fn promise_reopened(&mut self, pid: PromiseId) -> Result<(), Rejection> {
        let st = self.st;
        let Some(p) = st.promise(pid) else {
            return Ok(());
        };
        if p.breached || self.ended {
            return Ok(());
        }
        let target = ClockRef::Promise(pid);
        let past_due = p.clock.due(self.cal)?.is_some_and(|d| self.now >= d);
        if past_due {
            self.cancel_clock_timers(&target);
            return self.breach_now(pid);
        }
        let (mut yellow, mut due) = (false, false);
        let armed = st
            .timers
            .iter()
            .map(|t| (t.id, &t.kind))
            .chain(self.timers_armed.iter().map(|(id, k)| (*id, k)));
        for (id, kind) in armed {
            if !self.timer_is_armed(id) {
                continue;
            }
            match kind {
                TimerKind::Yellow { target: t } if *t == target => yellow = true,
                TimerKind::Due { target: t } if *t == target => due = true,
                _ => {}
            }
        }
        // `arm_clock` arms what has not been warned of; mark what is still armed as given.
        let mut c = p.clock.clone();
        c.yellow_warned |= yellow;
        c.red_warned |= due;
        self.arm_clock(target, &c)
    }

    /// The promise's deadline timer fired. Every other promise whose deadline has passed by now
    /// and whose material has not come is breached with it, in the same command: their timers
    /// fire one by one, and a `revoke` by the first would otherwise end the instance before the
    /// others are on record (each must be breached and bear its consequences, a credit mark per
    /// material).
    pub(super) fn breach(&mut self, pid: PromiseId) -> Result<(), Rejection> {
        // Supplied in time and waiting for verification is not a breach (yet: if the material
        // is refused after the deadline, `promise_reopened` breaches then).
        let waiting =
            |p: &crate::runtime::state::Promise| p.status == PromiseStatus::Open && !p.breached;
        let st = self.st;
        if st.promise(pid).is_none_or(|p| !waiting(p)) {
            return Ok(());
        }
        let mut due_now = vec![pid];
        for q in &st.promises {
            if q.id != pid
                && waiting(q)
                && q.clock.running()
                && q.clock.due(self.cal)?.is_some_and(|d| d <= self.now)
            {
                due_now.push(q.id);
            }
        }
        let mut revoke = false;
        for p in due_now {
            if p != pid {
                self.cancel_clock_timers(&ClockRef::Promise(p));
            }
            revoke |= self.breach_consequences(p)?;
        }
        if revoke {
            // Revocation ends the case last, so the other breach facts come first in the history.
            self.end_instance(Outcome::Revoked);
        }
        Ok(())
    }

    pub(super) fn breach_now(&mut self, pid: PromiseId) -> Result<(), Rejection> {
        if self.breach_consequences(pid)? {
            self.end_instance(Outcome::Revoked);
        }
        Ok(())
    }

    /// Records a breach and the node's `on_breach` actions but `revoke`; says whether the
    /// instance is to be revoked (the caller ends it after every breach of the command).
    fn breach_consequences(&mut self, pid: PromiseId) -> Result<bool, Rejection> {
        let st = self.st;
        let Some(p) = st.promise(pid) else {
            return Ok(false);
        };
        self.emit(Event::PromiseBreached { promise: pid });
        self.emit(Event::Warning {
            target: ClockRef::Promise(pid),
            colour: Colour::Red,
        });
        let (natural, data) = self.clock_party(&ClockRef::Promise(pid));
        self.notify(NotificationEvent::PromiseBreach, natural, data.clone());
        let pre = st.pre_approvals.get(p.pre.ix());
        let node = pre.and_then(|pre| self.def.node_ix(&pre.node));
        let actions: Vec<BreachAction> = node
            .and_then(|ix| self.p.nodes.get(ix))
            .and_then(|n| n.conditional.as_ref())
            .map(|c| c.on_breach.clone())
            .unwrap_or_default();
        let mut revoke = false;
        for a in actions {
            match a {
                BreachAction::Revoke => revoke = true,
                BreachAction::CreditMark => self.emit(Event::CreditMarked {
                    promise: pid,
                    material: p.material.clone(),
                }),
                BreachAction::Escalate => {
                    let dept = pre
                        .and_then(|pre| st.task(pre.task))
                        .and_then(|t| t.spec.department.clone());
                    let leader = dept
                        .and_then(|d| self.p.departments.get(&d))
                        .and_then(|d| d.leader.clone());
                    self.notify(
                        NotificationEvent::Supervise,
                        leader.map(Party::Role).into_iter().collect(),
                        data.clone(),
                    );
                }
            }
        }
        // A breach that does not revoke leaves the material owed: the ladder climbs from the
        // deadline until it is verified (when `warnings.escalate` lists `promise`).
        if !revoke && let Some(due) = p.clock.due(self.cal)? {
            self.arm_ladder(&ClockRef::Promise(pid), due)?;
        }
        Ok(revoke)
    }

    /// The applicant answers (`resume` with no task): a 补正 is resubmitted, or a wait node
    /// without a time (which waits for the applicant) is left.
    pub(super) fn applicant_answers(&mut self) -> Result<(), Rejection> {
        if !self.is_applicant() {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: "answer for the applicant".into(),
            });
        }
        if self.st.returned.is_some() {
            return self.resubmit();
        }
        // A wait node without a time waits for the applicant.
        let at = self.st.at.as_deref().and_then(|a| self.def.node_ix(a));
        if let Some(ix) = at {
            let n = self.node(ix)?;
            let timer_armed = self
                .st
                .timers
                .iter()
                .any(|t| matches!(&t.kind, TimerKind::Wait { node } if *node == n.id));
            if n.kind == NodeType::Wait && !timer_armed && self.st.path_end.is_none() {
                let next = n
                    .next
                    .ok_or_else(|| internal(format!("node `{}` has no next", n.id)))?;
                return self.enter(next);
            }
        }
        Err(Rejection::NotWithApplicant)
    }
}
