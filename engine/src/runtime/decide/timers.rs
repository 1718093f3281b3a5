//! Clocks and timers: arming and cancelling timers, the yellow and due timers of a clock,
//! stopping and resuming a clock, extending a limit, a fired timer (warnings, the escalation
//! ladder, a wait node's end) and re-timing after a calendar revision.

use jiff::Timestamp;
use smol_str::SmolStr;

use crate::calendar::{end_of_day, local_date};
use crate::compile::Party;
use crate::limit::{Limit, Unit};
use crate::model::{Action, Escalated, NotificationEvent, RawLimit, RungAction};
use crate::runtime::clock::{Clock, Colour};
use crate::runtime::event::{
    ClockRef, Event, NoticeData, TaskId, Timer, TimerId, TimerKind, TimerMove,
};
use crate::runtime::policy;
use crate::runtime::rejection::Rejection;
use crate::runtime::state::{InstanceState, PromiseStatus, Status, StepStatus, Task};

use super::{Cx, internal, u32_of};

impl<'a> Cx<'a> {
    pub(super) fn arm(&mut self, due: Timestamp, kind: TimerKind) -> TimerId {
        let id = TimerId(self.next_timer);
        self.next_timer += 1;
        self.timers_armed.push((id, kind.clone()));
        let calendar_revision = Some(self.cal.revision()).filter(|r| *r > 0);
        self.emit(Event::TimerArmed(Timer {
            id,
            due,
            kind,
            calendar_revision,
        }));
        id
    }

    pub(super) fn cancel_timer(&mut self, id: TimerId) {
        if self.timer_is_armed(id) {
            self.timers_closed.push(id);
            self.emit(Event::TimerCancelled { timer: id });
        }
    }

    pub(super) fn cancel_timers_where(&mut self, pred: impl Fn(&TimerKind) -> bool) {
        let st = self.st;
        for t in &st.timers {
            if pred(&t.kind) {
                self.cancel_timer(t.id);
            }
        }
        let mut i = 0;
        while let Some((id, kind)) = self.timers_armed.get(i) {
            if pred(kind) {
                let id = *id;
                self.cancel_timer(id);
            }
            i += 1;
        }
    }

    /// Cancels the yellow and due timers of a clock, and the escalation rungs of the thing it
    /// belongs to (a task's own rungs go with the task).
    pub(super) fn cancel_clock_timers(&mut self, target: &ClockRef) {
        self.cancel_timers_where(|k| {
            k.clock() == Some(target)
                || matches!(k, TimerKind::Ladder { target: t, .. } if t == target)
        });
    }

    /// What a clock is, in the workflow's own names, for people (「环节「受理审查」」).
    pub(super) fn clock_label(&self, target: &ClockRef) -> String {
        let wf = &self.def.workflow;
        // A node or stage is called by its name, or its id where it has none.
        let called = |name: Option<&Option<String>>, id: &str| {
            name.cloned().flatten().unwrap_or_else(|| id.to_string())
        };
        let node = |id: &str| {
            called(
                wf.nodes.iter().find(|n| n.id.value == id).map(|n| &n.name),
                id,
            )
        };
        let stage = |id: &str| {
            called(
                wf.stages.iter().find(|s| s.id.value == id).map(|s| &s.name),
                id,
            )
        };
        let st = self.st;
        match target {
            ClockRef::Task(t) => {
                let n = st.task(*t).map(|t| t.spec.node.clone()).or_else(|| {
                    self.out.iter().find_map(|e| match e {
                        Event::TaskOpened(o) if o.task == *t => Some(o.node.clone()),
                        _ => None,
                    })
                });
                format!("环节「{}」", n.map(|n| node(&n)).unwrap_or_default())
            }
            ClockRef::Step(s) => {
                let n = st.step(*s).map(|s| s.node.clone()).or_else(|| {
                    self.out.iter().find_map(|e| match e {
                        Event::StepOpened { step, node, .. } if step == s => Some(node.clone()),
                        _ => None,
                    })
                });
                format!("并联审批「{}」", n.map(|n| node(&n)).unwrap_or_default())
            }
            ClockRef::Promise(p) => {
                let m = st.promise(*p).map(|p| p.material.clone());
                let name = m
                    .and_then(|m| wf.materials.iter().find(|x| x.id.value == m.as_str()))
                    .and_then(|m| m.name.clone());
                format!("承诺补交「{}」", name.unwrap_or_default())
            }
            ClockRef::Stage(v) | ClockRef::Element { stage: v, .. } => {
                let id = st.stages.get(v.ix()).map(|s| s.stage.clone()).or_else(|| {
                    self.out.iter().find_map(|e| match e {
                        Event::StageEntered { visit, stage, .. } if visit == v => {
                            Some(stage.clone())
                        }
                        _ => None,
                    })
                });
                let name = id.map(|i| stage(&i)).unwrap_or_default();
                match target {
                    ClockRef::Element { element, .. } => {
                        format!("阶段「{name}」的要素「{element}」")
                    }
                    _ => format!("阶段「{name}」"),
                }
            }
            ClockRef::Outstanding(_) => "遗留事项".to_string(),
        }
    }

    /// Arms the yellow and due timers of a running clock (those not yet given). A limit the
    /// calendar cannot count is refused naming the limit (`outside_calendar`).
    pub(super) fn arm_clock(&mut self, target: ClockRef, clock: &Clock) -> Result<(), Rejection> {
        if !clock.running() {
            return Ok(());
        }
        self.arm_clock_timers(target.clone(), clock)
            .map_err(|r| match r {
                Rejection::OutsideCalendar(e) => Rejection::OutsideCalendar(format!(
                    "{}的时限（{}）无法计算：{e}",
                    self.clock_label(&target),
                    crate::limit::Limit {
                        amount: clock.total(),
                        unit: clock.limit.unit,
                    }
                )),
                other => other,
            })
    }

    pub(super) fn arm_clock_timers(
        &mut self,
        target: ClockRef,
        clock: &Clock,
    ) -> Result<(), Rejection> {
        if !clock.yellow_warned
            && let Some(y) = clock.yellow_due(self.cal, self.p.yellow_permille)?
        {
            self.arm(
                y,
                TimerKind::Yellow {
                    target: target.clone(),
                },
            );
        }
        if !clock.red_warned
            && let Some(d) = clock.due(self.cal)?
        {
            self.arm(d, TimerKind::Due { target });
        }
        Ok(())
    }

    pub(super) fn stop_clock(&mut self, r: ClockRef) -> Result<(), Rejection> {
        let Some(c) = self.st.clock(&r) else {
            return Ok(());
        };
        let used = c.used_at(self.cal, self.now)?;
        // A stopped clock keeps its escalation rungs, as a task's do: the overdue days stay.
        if c.running() {
            self.cancel_timers_where(|k| k.clock() == Some(&r));
        }
        self.emit(Event::ClockStopped { target: r, used });
        Ok(())
    }

    pub(super) fn resume_clock(&mut self, r: ClockRef) -> Result<(), Rejection> {
        let Some(c) = self.st.clock(&r) else {
            return Ok(());
        };
        let mut after = c.clone();
        after.holds = after.holds.saturating_sub(1);
        self.emit(Event::ClockResumed {
            target: r.clone(),
            at: self.now,
        });
        if after.holds == 0 && after.running_since.is_none() {
            after.running_since = Some(self.now);
            self.arm_clock(r, &after)?;
        }
        Ok(())
    }

    pub(super) fn extend(
        &mut self,
        id: TaskId,
        raw: &RawLimit,
        reason: &str,
        step: bool,
    ) -> Result<(), Rejection> {
        let t = self.open_task_ref(id)?;
        let (_, n) = self.node_of(t)?;
        if n.extend_by.is_empty() {
            return Err(Rejection::ActionNotAllowed {
                node: n.id.clone(),
                action: Action::Extend,
            });
        }
        if !n.extend_by.iter().any(|r| self.actor.has_role(r)) {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: format!(
                    "extend the limit of `{}` (roles allowed: {})",
                    n.id,
                    n.extend_by.join(", ")
                ),
            });
        }
        if reason.trim().is_empty() {
            return Err(Rejection::ReasonRequired);
        }
        let target = if step {
            ClockRef::Step(t.spec.step.ok_or(Rejection::NoLimit { task: id })?)
        } else {
            ClockRef::Task(id)
        };
        let clock = self
            .st
            .clock(&target)
            .ok_or(Rejection::NoLimit { task: id })?;
        let l = limit_in_unit(
            raw,
            clock.limit.unit,
            format!(
                "the limit being extended is `{}`: use the same unit",
                clock.limit
            ),
        )?;
        self.emit(Event::LimitExtended {
            target: target.clone(),
            amount: l.amount,
            reason: reason.to_string(),
            by: self.by(),
        });
        self.cancel_clock_timers(&target);
        if let ClockRef::Task(tid) = target {
            self.cancel_timers_where(
                |k| matches!(k, TimerKind::Escalation { task, .. } if *task == tid),
            );
        }
        let mut after = clock.clone();
        after.extended = after.extended.saturating_add(l.amount);
        after.yellow_warned = false;
        after.red_warned = false;
        self.arm_clock(target, &after)
    }

    pub(super) fn timer_fired(&mut self, id: TimerId) -> Result<(), Rejection> {
        let Some(timer) = self.st.timer(id) else {
            return Ok(()); // cancelled or already fired: nothing to do
        };
        if self.now < timer.due {
            return Err(Rejection::TimerNotDue {
                timer: id,
                due: timer.due.to_string(),
            });
        }
        self.timers_closed.push(id);
        self.emit(Event::TimerFired { timer: id });
        match &timer.kind {
            TimerKind::Yellow { target } => self.yellow(target),
            TimerKind::Due { target } => self.due(target, timer.due),
            TimerKind::Escalation { task, rung } => self.escalate(&ClockRef::Task(*task), *rung),
            TimerKind::Ladder { target, rung } => self.escalate(target, *rung),
            TimerKind::Wait { node } => {
                if self.st.at.as_ref() != Some(node) {
                    return Ok(());
                }
                let ix = self.node_ix(node)?;
                let next = self
                    .node(ix)?
                    .next
                    .ok_or_else(|| internal(format!("node `{node}` has no next")))?;
                self.enter(next)
            }
        }
    }

    /// Who is naturally told about a clock's colour.
    pub(super) fn clock_party(&self, target: &ClockRef) -> (Vec<Party>, NoticeData) {
        let st = self.st;
        match target {
            ClockRef::Task(t) => match st.task(*t) {
                Some(task) => (
                    vec![self.party_of(task)],
                    NoticeData {
                        task: Some(*t),
                        node: Some(task.spec.node.clone()),
                        ..NoticeData::default()
                    },
                ),
                None => (Vec::new(), NoticeData::default()),
            },
            ClockRef::Step(s) => (
                self.step_parties(*s),
                NoticeData {
                    node: st.step(*s).map(|s| s.node.clone()),
                    ..NoticeData::default()
                },
            ),
            ClockRef::Promise(p) => (
                vec![Party::User(st.applicant.clone())],
                NoticeData {
                    promise: Some(*p),
                    material: st.promise(*p).map(|p| p.material.clone()),
                    ..NoticeData::default()
                },
            ),
            ClockRef::Stage(v) => (
                self.answering_department(target)
                    .map(Party::Department)
                    .into_iter()
                    .collect(),
                NoticeData {
                    stage: st.stages.get(v.ix()).map(|s| s.stage.clone()),
                    ..NoticeData::default()
                },
            ),
            ClockRef::Element { stage, element } => {
                let sname = st.stages.get(stage.ix()).map(|s| s.stage.clone());
                let from = sname
                    .as_ref()
                    .and_then(|s| self.p.stages.iter().find(|sp| sp.id == *s))
                    .and_then(|sp| sp.elements.iter().find(|e| e.element == *element))
                    .map(|e| Party::Department(e.from.clone()));
                (
                    from.into_iter().collect(),
                    NoticeData {
                        stage: sname,
                        element: Some(element.clone()),
                        ..NoticeData::default()
                    },
                )
            }
            ClockRef::Outstanding(o) => {
                let item = st.outstanding.get(o.ix());
                let owner = item
                    .and_then(|i| self.p.elements.get(&i.element))
                    .map(|k| Party::Department(k.owner.clone()));
                (
                    owner.into_iter().collect(),
                    NoticeData {
                        stage: item.map(|i| i.stage.clone()),
                        element: item.map(|i| i.element.clone()),
                        ..NoticeData::default()
                    },
                )
            }
        }
    }

    /// Who answers for a parallel step's overall limit: the holder of the lead branch (一家牵头
    /// answers for the step, decided or not), then the holder of every branch still open (the
    /// departments the step waits on), each once.
    pub(super) fn step_parties(&self, s: crate::runtime::event::StepId) -> Vec<Party> {
        let st = self.st;
        let Some(step) = st.step(s) else {
            return Vec::new();
        };
        let tasks: Vec<&Task> = step.tasks.iter().filter_map(|t| st.task(*t)).collect();
        let lead = tasks.iter().filter(|t| t.spec.lead);
        let open = tasks
            .iter()
            .filter(|t| !t.spec.lead && self.is_open(t.spec.task));
        let mut out: Vec<Party> = Vec::new();
        for t in lead.chain(open) {
            let p = self.party_of(t);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Whether the thing a clock belongs to still needs its warnings.
    pub(super) fn clock_live(&self, target: &ClockRef) -> bool {
        let st = self.st;
        match target {
            ClockRef::Task(t) => st.task(*t).is_some_and(Task::is_open),
            ClockRef::Step(s) => st.step(*s).is_some_and(|s| s.status == StepStatus::Open),
            ClockRef::Promise(p) => st
                .promise(*p)
                .is_some_and(|p| p.status != PromiseStatus::Verified),
            ClockRef::Stage(v) => st.current_stage().is_some_and(|s| s.id == *v),
            ClockRef::Element { stage, element } => {
                let plan = st
                    .stages
                    .get(stage.ix())
                    .and_then(|v| self.p.stages.iter().find(|s| s.id == v.stage));
                let needed = plan.and_then(|sp| {
                    sp.elements
                        .iter()
                        .find(|e| e.element == *element)
                        .map(|e| (sp, e))
                });
                match needed {
                    Some((sp, e)) => !self.element_attached_for(sp, e),
                    None => !st.has_element(element, None),
                }
            }
            ClockRef::Outstanding(o) => st.outstanding.get(o.ix()).is_some_and(|o| !o.resolved),
        }
    }

    pub(super) fn yellow(&mut self, target: &ClockRef) -> Result<(), Rejection> {
        let Some(c) = self.st.clock(target) else {
            return Ok(());
        };
        if c.yellow_warned || !c.running() || !self.clock_live(target) {
            return Ok(());
        }
        self.emit(Event::Warning {
            target: target.clone(),
            colour: Colour::Yellow,
        });
        let (natural, mut data) = self.clock_party(target);
        data.due = c.due(self.cal)?;
        let on = match target {
            ClockRef::Promise(_) => NotificationEvent::PromiseDue,
            _ => NotificationEvent::Yellow,
        };
        self.notify(on, natural, data);
        Ok(())
    }

    pub(super) fn due(&mut self, target: &ClockRef, due: Timestamp) -> Result<(), Rejection> {
        let Some(c) = self.st.clock(target) else {
            return Ok(());
        };
        if c.red_warned || !c.running() || !self.clock_live(target) {
            return Ok(());
        }
        if let ClockRef::Promise(p) = target {
            return self.breach(*p);
        }
        self.emit(Event::Warning {
            target: target.clone(),
            colour: Colour::Red,
        });
        let (natural, mut data) = self.clock_party(target);
        data.due = Some(due);
        self.notify(NotificationEvent::Overdue, natural, data);
        self.arm_ladder(target, due)
    }

    /// Arms the escalation ladder of an overdue thing (a breached promise) whose deadline was
    /// `due`, when `warnings.escalate` covers its kind: rung k fires `after` units past it.
    pub(super) fn arm_ladder(
        &mut self,
        target: &ClockRef,
        due: Timestamp,
    ) -> Result<(), Rejection> {
        let kind = match target {
            ClockRef::Task(_) => Escalated::Task,
            ClockRef::Step(_) => Escalated::Step,
            ClockRef::Promise(_) => Escalated::Promise,
            ClockRef::Stage(_) => Escalated::Stage,
            ClockRef::Outstanding(_) => Escalated::Outstanding,
            ClockRef::Element { .. } => return Ok(()),
        };
        if !self.p.escalates(kind) {
            return Ok(());
        }
        for k in 0..self.p.rungs.len() {
            let Some(at) = self.rung_at(due, k)? else {
                continue;
            };
            let rung = u32_of(k);
            let timer = match target {
                ClockRef::Task(task) => TimerKind::Escalation { task: *task, rung },
                other => TimerKind::Ladder {
                    target: other.clone(),
                    rung,
                },
            };
            self.arm(at, timer);
        }
        Ok(())
    }

    /// When rung `k` of the escalation ladder fires for a task due at `due`: `after` units past
    /// the deadline (working days counted from the deadline's last day).
    pub(super) fn rung_at(&self, due: Timestamp, k: usize) -> Result<Option<Timestamp>, Rejection> {
        let Some(r) = self.p.rungs.get(k) else {
            return Ok(None);
        };
        if r.after.amount == 0 {
            return Ok(Some(due));
        }
        let last_day = local_date(
            due.checked_sub(jiff::SignedDuration::from_nanos(1))
                .unwrap_or(due),
        );
        Ok(Some(match r.after.unit {
            Unit::WorkingDays => end_of_day(self.cal.add_working_days(last_day, r.after.amount)?),
            _ => Clock::new(due, r.after).due(self.cal)?.unwrap_or(due),
        }))
    }

    /// When rung `k` fires for the clock `target` in `st`: none while it has no deadline.
    fn rung_of(
        &self,
        st: &InstanceState,
        target: &ClockRef,
        k: usize,
    ) -> Result<Option<Timestamp>, Rejection> {
        match st
            .clock(target)
            .map(|c| c.due(self.cal))
            .transpose()?
            .flatten()
        {
            Some(due) => self.rung_at(due, k),
            None => Ok(None),
        }
    }

    /// Where a timer belongs on this calendar: `None` when it is not counted on the calendar
    /// (a wait node, an hour limit) or its clock is stopped, so it keeps its instant.
    pub(super) fn timer_instant(&self, kind: &TimerKind) -> Result<Option<Timestamp>, Rejection> {
        let st = self.st;
        match kind {
            TimerKind::Yellow { target } => match st.clock(target) {
                Some(c) if c.limit.unit != Unit::Hours => {
                    Ok(c.yellow_due(self.cal, self.p.yellow_permille)?)
                }
                _ => Ok(None),
            },
            TimerKind::Due { target } => match st.clock(target) {
                Some(c) if c.limit.unit != Unit::Hours => Ok(c.due(self.cal)?),
                _ => Ok(None),
            },
            TimerKind::Escalation { task, rung } => {
                self.rung_of(st, &ClockRef::Task(*task), *rung as usize)
            }
            TimerKind::Ladder { target, rung } => self.rung_of(st, target, *rung as usize),
            TimerKind::Wait { .. } => Ok(None),
        }
    }

    /// A calendar revision: every armed timer whose instant moves on the revised calendar
    /// (`self.cal`) is cancelled and armed again at its new instant, and one `Retimed` event
    /// records the moves. A timer now in the past fires at once through the scheduler (the
    /// overdue path, once). Assignees whose deadline came earlier are told.
    pub(super) fn recalendar(
        &mut self,
        calendar: &SmolStr,
        revision: u32,
    ) -> Result<(), Rejection> {
        if self.def.workflow.calendar.value != *calendar {
            return Ok(());
        }
        let st = self.st;
        let mut moves: Vec<(TimerId, TimerMove)> = Vec::new();
        for t in &st.timers {
            let Some(new_due) = self.timer_instant(&t.kind)? else {
                continue;
            };
            if new_due != t.due {
                moves.push((
                    t.id,
                    TimerMove {
                        kind: t.kind.clone(),
                        old_due: t.due,
                        new_due,
                    },
                ));
            }
        }
        if moves.is_empty() {
            return Ok(());
        }
        self.emit(Event::Retimed {
            calendar: calendar.clone(),
            revision,
            moves: moves.iter().map(|(_, m)| m.clone()).collect(),
        });
        for (id, m) in moves {
            self.cancel_timer(id);
            self.arm(m.new_due, m.kind.clone());
            if let TimerKind::Due { target } = &m.kind
                && m.new_due < m.old_due
            {
                let (natural, mut data) = self.clock_party(target);
                data.due = Some(m.new_due);
                data.text = Some(format!(
                    "工作日历修订（第 {revision} 版）使期限由 {} 提前至 {}",
                    crate::calendar::local_date(m.old_due - jiff::SignedDuration::from_nanos(1)),
                    crate::calendar::local_date(m.new_due - jiff::SignedDuration::from_nanos(1)),
                ));
                self.notify(NotificationEvent::DeadlineMoved, natural, data);
            }
        }
        Ok(())
    }

    /// A rung of the escalation ladder fires for an overdue task, parallel step, stage or
    /// outstanding item, or a breached promise. `remind` tells whoever holds it, `supervisor`
    /// the supervisor role of the department that answers for it, `supervise` (挂牌督办) puts it
    /// on the list of that department's leader; a rung's `to` stands in for the department's
    /// role. Nothing happens once the thing is settled.
    pub(super) fn escalate(&mut self, target: &ClockRef, rung: u32) -> Result<(), Rejection> {
        if !self.clock_live(target) {
            return Ok(());
        }
        let Some(r) = self.p.rungs.get(rung as usize) else {
            return Ok(());
        };
        let dept = self
            .answering_department(target)
            .and_then(|d| self.p.departments.get(&d));
        let mut natural: Vec<Party> = Vec::new();
        if let Some(to) = r.to.as_ref().and_then(|a| self.resolve_quiet(a)) {
            natural.push(to);
        }
        let (holders, mut data) = self.clock_party(target);
        data.text = Some(format!("rung {}", rung + 1));
        match r.action {
            RungAction::Remind => {
                for (i, h) in holders.into_iter().enumerate() {
                    if !natural.contains(&h) {
                        natural.insert(i.min(natural.len()), h);
                    }
                }
                self.notify(NotificationEvent::Escalation, natural, data);
            }
            RungAction::Supervisor => {
                if r.to.is_none()
                    && let Some(s) = dept.and_then(|d| d.supervisor.clone())
                {
                    natural.push(Party::Role(s));
                }
                self.notify(NotificationEvent::Escalation, natural, data);
            }
            RungAction::Supervise => {
                let leader = dept.and_then(|d| d.leader.clone());
                match target {
                    ClockRef::Task(task) => self.emit(Event::Supervised {
                        task: *task,
                        leader: leader.clone(),
                    }),
                    other => self.emit(Event::ItemSupervised {
                        target: other.clone(),
                        leader: leader.clone(),
                    }),
                }
                if r.to.is_none()
                    && let Some(l) = leader
                {
                    natural.push(Party::Role(l));
                }
                self.notify(NotificationEvent::Supervise, natural, data);
            }
        }
        Ok(())
    }

    /// The department that answers for a limited thing, whose supervisor and leader its
    /// escalation reaches: a task's own; a parallel step's lead branch (else its first); the
    /// department of the step that pre-approved a promise; a stage's `department`; an
    /// outstanding item's element owner.
    pub(super) fn answering_department(&self, target: &ClockRef) -> Option<SmolStr> {
        let st = self.st;
        match target {
            ClockRef::Task(t) => st.task(*t).and_then(|t| t.spec.department.clone()),
            ClockRef::Step(s) => {
                let step = st.step(*s)?;
                let tasks = || step.tasks.iter().filter_map(|t| st.task(*t));
                tasks()
                    .find(|t| t.spec.lead)
                    .or_else(|| tasks().next())
                    .and_then(|t| t.spec.department.clone())
            }
            ClockRef::Promise(p) => st
                .promise(*p)
                .and_then(|p| st.pre_approvals.get(p.pre.ix()))
                .and_then(|pre| st.task(pre.task))
                .and_then(|t| t.spec.department.clone()),
            ClockRef::Stage(v) => st
                .stages
                .get(v.ix())
                .and_then(|v| self.p.stages.iter().find(|s| s.id == v.stage))
                .and_then(|s| s.department.clone()),
            ClockRef::Element { .. } => None,
            ClockRef::Outstanding(o) => st
                .outstanding
                .get(o.ix())
                .and_then(|i| self.p.elements.get(&i.element))
                .map(|k| k.owner.clone()),
        }
    }

    /// 销号: the leader resolves an item of the supervision list once the thing is settled (or
    /// the instance has ended, which settles everything).
    pub(super) fn resolve_supervision(
        &mut self,
        target: &ClockRef,
        note: &str,
    ) -> Result<(), Rejection> {
        let item = self
            .st
            .supervision_of(target)
            .ok_or_else(|| Rejection::NotSupervised {
                target: target.clone(),
            })?;
        if item.is_resolved() {
            return Err(Rejection::SupervisionResolved {
                target: target.clone(),
            });
        }
        if !policy::may_resolve_supervision(self.p, item, self.actor) {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: format!(
                    "resolve (销号) the supervision of {}: only its leader ({}) may",
                    self.clock_label(target),
                    item.leader.as_deref().unwrap_or("a department's leader")
                ),
            });
        }
        if note.trim().is_empty() {
            return Err(Rejection::ReasonRequired);
        }
        if self.st.status != Status::Ended && self.clock_live(target) {
            return Err(Rejection::SupervisionUnsettled {
                target: target.clone(),
            });
        }
        self.emit(Event::SupervisionResolved {
            target: target.clone(),
            by: self.by(),
            note: note.trim().to_string(),
        });
        Ok(())
    }
}

/// A limit written in a command (an extension, a 容缺 deadline), in the unit of the limit it
/// stands beside; `other_unit` says what to write instead.
pub(super) fn limit_in_unit(
    raw: &RawLimit,
    unit: Unit,
    other_unit: String,
) -> Result<Limit, Rejection> {
    let l = Limit::parse(raw, false).map_err(|reason| Rejection::BadLimit {
        limit: raw_text(raw),
        reason,
    })?;
    if l.unit != unit {
        return Err(Rejection::BadLimit {
            limit: l.to_string(),
            reason: other_unit,
        });
    }
    Ok(l)
}

fn raw_text(raw: &RawLimit) -> String {
    match raw {
        RawLimit::Days(n) => n.to_string(),
        RawLimit::Text(t) => t.clone(),
    }
}
