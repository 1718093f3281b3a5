//! Parallel steps (并联审批): opening a step with one task per applicable branch, and its join,
//! which fires at most once per step and then closes the branches still open.

use smol_str::SmolStr;

use crate::model::RejectPolicy;
use crate::runtime::clock::Clock;
use crate::runtime::event::{CancelReason, ClockRef, Event, OpenedTask, StepId, TaskKind};
use crate::runtime::rejection::Rejection;
use crate::runtime::state::StepStatus;

use super::tasks::Unit3;
use super::{Cx, internal, u32_of};

impl<'a> Cx<'a> {
    /// Opens a parallel step and its branches. Returns false when no branch applies (the step
    /// completes at once and the flow goes on).
    pub(super) fn open_step(&mut self, ix: usize) -> Result<bool, Rejection> {
        let n = self.node(ix)?;
        let step = StepId(self.next_step);
        self.next_step += 1;
        let round = 1 + u32_of(self.st.steps.iter().filter(|s| s.node == n.id).count());
        let clock = n.limits.get(self.channel).map(|l| Clock::new(self.now, l));
        self.emit(Event::StepOpened {
            step,
            node: n.id.clone(),
            round,
            lead: n.lead.clone(),
            clock: clock.clone(),
        });
        if let Some(c) = &clock {
            self.arm_clock(ClockRef::Step(step), c)?;
        }
        let mut opened = 0usize;
        for b in &n.branches {
            if let Some(w) = &b.when
                && !w.eval_bool(self.project).unwrap_or(false)
            {
                continue;
            }
            let party = self.resolve(&b.assignee, &n.id)?;
            let task = self.new_task_id();
            let label = smol_str::format_smolstr!("{}.{}", n.id, b.id);
            self.open_task(OpenedTask {
                task,
                node: n.id.clone(),
                label,
                kind: TaskKind::Work,
                branch: Some(b.id.clone()),
                step: Some(step),
                parent: None,
                promise: None,
                assignment: party,
                department: Some(b.department.clone()),
                clock: b.limits.get(self.channel).map(|l| Clock::new(self.now, l)),
                lead: n.lead.as_ref() == Some(&b.id),
                priority: self.priority,
                order: Default::default(),
                replaces: None,
            })?;
            opened += 1;
        }
        if opened == 0 {
            self.joins_fired.push(step);
            self.emit(Event::JoinFired {
                step,
                approved: true,
                approvals: 0,
                rejects: 0,
                needed: 0,
            });
            self.cancel_clock_timers(&ClockRef::Step(step));
            return Ok(false);
        }
        Ok(true)
    }

    /// Evaluates a parallel step's join after one of its branches was decided. Fires at most
    /// once per step (the step is then closed and its other branches cancelled).
    pub(super) fn evaluate_join(&mut self, step: StepId) -> Result<(), Rejection> {
        if self.joins_fired.contains(&step) {
            return Ok(());
        }
        let s = self
            .st
            .step(step)
            .ok_or_else(|| internal(format!("unknown step {step}")))?;
        if s.status != StepStatus::Open {
            return Ok(());
        }
        let ix = self.node_ix(&s.node)?;
        let n = self.node(ix)?;
        let (mut approvals, mut rejects, mut open) = (0usize, 0usize, 0usize);
        let mut first_reject: Option<(Option<SmolStr>, u64)> = None;
        for t in &s.tasks {
            match self.unit(*t) {
                Unit3::Open => open += 1,
                Unit3::Approved => approvals += 1,
                Unit3::Rejected { to, seq } => {
                    rejects += 1;
                    if first_reject.as_ref().is_none_or(|r| seq < r.1) {
                        first_reject = Some((to, seq));
                    }
                }
            }
        }
        let needed = n.join.needed(s.tasks.len());
        let immediate = n.join.on_reject == RejectPolicy::Immediate;
        let result = if open == 0 {
            Some(approvals >= needed)
        } else if immediate && approvals >= needed {
            Some(true)
        } else if immediate && approvals + open < needed {
            Some(false)
        } else {
            None
        };
        let Some(approved) = result else {
            return Ok(());
        };
        self.joins_fired.push(step);
        self.emit(Event::JoinFired {
            step,
            approved,
            approvals: u32_of(approvals),
            rejects: u32_of(rejects),
            needed: u32_of(needed),
        });
        for t in &s.tasks {
            self.cancel_task(*t, CancelReason::JoinFired);
        }
        self.cancel_clock_timers(&ClockRef::Step(step));
        if approved {
            let next = n
                .next
                .ok_or_else(|| internal(format!("node `{}` has no next", n.id)))?;
            self.enter(next)
        } else {
            let to = first_reject.and_then(|r| r.0);
            self.apply_reject(ix, to)
        }
    }
}
