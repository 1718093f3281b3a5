//! `decide`: a command against a state becomes events, or a rejection.
//!
//! The decision is computed against the state *before* the command, with a small overlay
//! ([`Cx`]) of what this command has already done (tasks decided, cancelled or opened, timers
//! armed or cancelled, the stage entered, counters). That lets one command walk several nodes
//! (approve → gateway → notify → next task) and reason about its own effects without cloning the
//! state: the hot path allocates only the events it returns.
//!
//! Everything that can fail is checked before it matters: an error anywhere (a stage that cannot
//! close three nodes later, a date outside the calendar) rejects the whole command, and no event
//! is returned, so a state never holds half a transition.

use jiff::Timestamp;
use smol_str::SmolStr;

use crate::calendar::{Calendar, end_of_day, local_date};
use crate::compile::{AssigneePlan, Definition, NodePlan, Party, Plan, default_template};
use crate::limit::{Limit, Unit};
use crate::model::{
    Action, BreachAction, Delivery, FieldType, NodeType, NotificationEvent, Outcome, RawLimit,
    RejectPolicy, RungAction,
};

use super::clock::{Clock, Colour};
use super::command::{Actor, Command, CommandEnvelope};
use super::event::{
    CancelReason, ClockRef, Decision, Event, NoticeData, OpenedTask, OutstandingId, PreApprovalId,
    PromiseId, StageVisitId, StepId, TaskId, TaskKind, Timer, TimerId, TimerKind, TimerMove,
};
use super::rejection::Rejection;
use super::state::{InstanceState, PromiseStatus, Status, StepStatus, Task, TaskStatus};

/// Decides what a command does to an instance at `now`. Pure: the same inputs give the same
/// events. See the module docs of [`crate::runtime`] for the semantics.
pub fn decide(
    def: &Definition,
    cal: &Calendar,
    state: &InstanceState,
    cmd: &CommandEnvelope,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let project = match &cmd.command {
        Command::Start { project, .. } => project,
        _ => &state.project,
    };
    let mut cx = Cx::new(def, cal, state, &cmd.actor, now, project);
    cx.run(&cmd.command)?;
    Ok(cx.out)
}

/// The one authorisation rule for acting on a task: its assigned user, a holder of its role, a
/// member of its department pool, or a delegate. Once claimed, only the claimer (and delegates).
pub fn may_act(task: &Task, actor: &Actor) -> bool {
    if task.delegates.contains(&actor.name) {
        return true;
    }
    if let Some(c) = &task.claimed_by {
        return *c == actor.name;
    }
    match &task.spec.assignment {
        Party::User(u) => *u == actor.name,
        Party::Role(r) => actor.has_role(r),
        Party::Department(d) => actor.department.as_ref() == Some(d),
    }
}

/// The outcome of a task together with its co-signers (a "unit").
enum Unit3 {
    Open,
    Approved,
    Rejected { to: Option<SmolStr>, seq: u64 },
}

struct Cx<'a> {
    def: &'a Definition,
    p: &'a Plan,
    cal: &'a Calendar,
    st: &'a InstanceState,
    actor: &'a Actor,
    now: Timestamp,
    project: &'a serde_json::Value,
    out: Vec<Event>,
    channel: Option<usize>,
    priority: i32,
    stage: Option<(StageVisitId, usize)>,
    next_task: u32,
    next_timer: u32,
    next_step: u32,
    next_promise: u32,
    next_pre: u32,
    next_visit: u32,
    next_outstanding: u32,
    /// Decisions made by this command, in order: (task, decision, reject target).
    decided: Vec<(TaskId, Decision, Option<SmolStr>)>,
    cancelled: Vec<TaskId>,
    /// Tasks opened by this command: (id, parent).
    opened: Vec<(TaskId, Option<TaskId>)>,
    timers_closed: Vec<TimerId>,
    timers_armed: Vec<(TimerId, TimerKind)>,
    joins_fired: Vec<StepId>,
    verified: Vec<PromiseId>,
    /// The next stage move goes backwards (驳回): leave the stage instead of closing it.
    backwards: bool,
    ended: bool,
}

fn internal(msg: impl Into<String>) -> Rejection {
    Rejection::Internal(msg.into())
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<'a> Cx<'a> {
    fn new(
        def: &'a Definition,
        cal: &'a Calendar,
        st: &'a InstanceState,
        actor: &'a Actor,
        now: Timestamp,
        project: &'a serde_json::Value,
    ) -> Self {
        let p = &def.plan;
        let channel = st.channel.as_deref().and_then(|c| p.channel_ix(c));
        let stage = st
            .current_stage()
            .and_then(|v| p.stage_ix(&v.stage).map(|s| (v.id, s)));
        Cx {
            def,
            p,
            cal,
            st,
            actor,
            now,
            project,
            out: Vec::with_capacity(8),
            channel,
            priority: st.priority,
            stage,
            next_task: u32_of(st.tasks.len()),
            next_timer: st.next_timer,
            next_step: u32_of(st.steps.len()),
            next_promise: u32_of(st.promises.len()),
            next_pre: u32_of(st.pre_approvals.len()),
            next_visit: u32_of(st.stages.len()),
            next_outstanding: u32_of(st.outstanding.len()),
            decided: Vec::new(),
            cancelled: Vec::new(),
            opened: Vec::new(),
            timers_closed: Vec::new(),
            timers_armed: Vec::new(),
            joins_fired: Vec::new(),
            verified: Vec::new(),
            backwards: false,
            ended: false,
        }
    }

    fn emit(&mut self, e: Event) {
        self.out.push(e);
    }

    fn by(&self) -> SmolStr {
        self.actor.name.clone()
    }

    // ---------------------------------------------------------------------------------------
    // Dispatch

    fn run(&mut self, cmd: &'a Command) -> Result<(), Rejection> {
        match self.st.status {
            Status::NotStarted => {
                return match cmd {
                    Command::Start { project, channel } => self.start(project, channel.as_ref()),
                    Command::TimerFired { .. } | Command::Recalendar { .. } => Ok(()),
                    _ => Err(Rejection::NotStarted),
                };
            }
            // A timer of an ended instance was cancelled with it; firing it is a no-op.
            Status::Ended => {
                return match cmd {
                    Command::TimerFired { .. } | Command::Recalendar { .. } => Ok(()),
                    _ => Err(Rejection::InstanceEnded),
                };
            }
            Status::Running => {}
        }
        match cmd {
            Command::Start { .. } => Err(Rejection::AlreadyStarted),
            Command::Claim { task } => self.claim(*task),
            Command::Approve { task, comment } => self.approve(*task, comment.clone()),
            Command::Reject { task, to, reason } => self.reject(*task, to.as_ref(), reason),
            Command::Return {
                task,
                reason,
                materials,
            } => self.give_back(*task, reason, materials),
            Command::ApproveConditional {
                task,
                waive,
                limit,
                comment,
            } => self.approve_conditional(*task, waive, limit.as_ref(), comment),
            Command::SupplyMaterial { material } => self.supply(material),
            Command::VerifyMaterial {
                task,
                accepted,
                reason,
            } => self.verify(*task, *accepted, reason),
            Command::Delegate { task, to, transfer } => self.delegate(*task, to, *transfer),
            Command::AddCosigner { task, user } => self.add_cosigner(*task, user),
            Command::Withdraw { reason } => self.withdraw(reason),
            Command::Urge { task, text } => self.urge(*task, text),
            Command::Comment { task, text } => self.comment(*task, text),
            Command::Cc { task, to, text } => self.cc(*task, to, text),
            Command::AttachElement { element, fields } => self.attach(element, fields),
            Command::Suspend { task, reason } => self.suspend(*task, reason),
            Command::Resume { task } => self.resume(*task),
            Command::Extend {
                task,
                limit,
                reason,
                step,
            } => self.extend(*task, limit, reason, *step),
            Command::TimerFired { timer } => self.timer_fired(*timer),
            Command::Recalendar { calendar, revision } => self.recalendar(calendar, *revision),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Lookups and the overlay

    fn task(&self, id: TaskId) -> Result<&'a Task, Rejection> {
        self.st.task(id).ok_or(Rejection::UnknownTask { task: id })
    }

    fn node(&self, ix: usize) -> Result<&'a NodePlan, Rejection> {
        self.p
            .nodes
            .get(ix)
            .ok_or_else(|| internal(format!("node index {ix} out of range")))
    }

    fn node_ix(&self, id: &str) -> Result<usize, Rejection> {
        self.def
            .node_ix(id)
            .ok_or_else(|| internal(format!("node `{id}` of the state is not in the definition")))
    }

    fn is_open(&self, id: TaskId) -> bool {
        if self.cancelled.contains(&id) || self.decided.iter().any(|d| d.0 == id) {
            return false;
        }
        self.st.task(id).is_some_and(Task::is_open) || self.opened.iter().any(|o| o.0 == id)
    }

    /// Open task ids, the state's and this command's.
    fn open_tasks(&self) -> Vec<TaskId> {
        let mut v: Vec<TaskId> = self
            .st
            .open_tasks()
            .map(|t| t.spec.task)
            .filter(|t| self.is_open(*t))
            .collect();
        v.extend(self.opened.iter().map(|o| o.0).filter(|t| self.is_open(*t)));
        v
    }

    /// Open tasks of the flow's path: every open task but verification tasks (those belong to
    /// a pre-approval's promises, not to the review round). Tasks opened by this command are
    /// never verification tasks unless the command is a supply.
    fn open_path_tasks(&self) -> Vec<TaskId> {
        let mut v = self.open_tasks();
        v.retain(|t| {
            self.st
                .task(*t)
                .is_none_or(|t| t.spec.kind != TaskKind::Verify)
        });
        v
    }

    fn cosigners_of(&self, id: TaskId) -> Vec<TaskId> {
        let mut v: Vec<TaskId> = self
            .st
            .task(id)
            .map(|t| t.cosigners.clone())
            .unwrap_or_default();
        v.extend(self.opened.iter().filter(|o| o.1 == Some(id)).map(|o| o.0));
        v
    }

    /// Decision and reject target of a task, through the overlay; `seq` orders decisions.
    fn decision_of(&self, id: TaskId) -> Option<(Decision, Option<SmolStr>, u64)> {
        if let Some(pos) = self.decided.iter().position(|d| d.0 == id) {
            let (_, d, to) = &self.decided[pos];
            return Some((*d, to.clone(), self.st.version + 1 + pos as u64));
        }
        let t = self.st.task(id)?;
        if t.status == TaskStatus::Decided {
            return t.decision.map(|d| (d, t.reject_to.clone(), t.decided_seq));
        }
        None
    }

    fn timer_is_armed(&self, id: TimerId) -> bool {
        !self.timers_closed.contains(&id)
            && (self.st.timer(id).is_some() || self.timers_armed.iter().any(|t| t.0 == id))
    }

    fn is_applicant(&self) -> bool {
        let a = self.actor;
        if a.name == self.st.applicant || a.has_role("applicant") {
            return true;
        }
        self.p.user_fields.iter().any(|f| {
            self.project
                .get(f.as_str())
                .and_then(|v| v.as_str())
                .is_some_and(|u| u == a.name)
        })
    }

    fn party_of(&self, t: &Task) -> Party {
        match &t.claimed_by {
            Some(u) => Party::User(u.clone()),
            None => t.spec.assignment.clone(),
        }
    }

    /// The node whose rules govern a task (a co-signer's: its parent's node).
    fn node_of(&self, t: &Task) -> Result<(usize, &'a NodePlan), Rejection> {
        let ix = self.node_ix(&t.spec.node)?;
        Ok((ix, self.node(ix)?))
    }

    /// Checks that `actor` may take `action` on task `id` now; returns the task.
    fn actionable(&self, id: TaskId, action: Action) -> Result<&'a Task, Rejection> {
        let t = self.task(id)?;
        match t.status {
            TaskStatus::Open => {}
            TaskStatus::Decided => return Err(Rejection::AlreadyDecided { task: id }),
            TaskStatus::Cancelled => return Err(Rejection::TaskNotOpen { task: id }),
        }
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
        if !may_act(t, self.actor) {
            return Err(Rejection::NotAssigned {
                task: id,
                actor: self.actor.name.clone(),
            });
        }
        if t.suspended && action != Action::Comment {
            return Err(Rejection::Suspended { task: id });
        }
        if self.st.returned.is_some() && action != Action::Comment && action != Action::Delegate {
            return Err(Rejection::WithApplicant);
        }
        Ok(t)
    }

    fn resolve(&self, a: &AssigneePlan, node: &SmolStr) -> Result<Party, Rejection> {
        match a {
            AssigneePlan::Party(p) => Ok(p.clone()),
            AssigneePlan::ServiceOfficer(f) => self
                .project
                .get(f.as_str())
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(|s| Party::User(SmolStr::new(s)))
                .ok_or_else(|| Rejection::AssigneeRule {
                    node: node.clone(),
                    reason: format!("project field `{f}` names no service officer"),
                }),
            AssigneePlan::Rule(e) => {
                let s = e
                    .eval_string(self.project)
                    .map_err(|reason| Rejection::AssigneeRule {
                        node: node.clone(),
                        reason,
                    })?;
                Ok(parse_party(&s))
            }
        }
    }

    fn department_of(&self, party: &Party) -> Option<SmolStr> {
        match party {
            Party::Role(r) => self.p.role_department.get(r).cloned(),
            Party::Department(d) => Some(d.clone()),
            Party::User(_) => None,
        }
    }

    // ---------------------------------------------------------------------------------------
    // Timers, clocks and notifications

    fn arm(&mut self, due: Timestamp, kind: TimerKind) -> TimerId {
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

    fn cancel_timer(&mut self, id: TimerId) {
        if self.timer_is_armed(id) {
            self.timers_closed.push(id);
            self.emit(Event::TimerCancelled { timer: id });
        }
    }

    fn cancel_timers_where(&mut self, pred: impl Fn(&TimerKind) -> bool) {
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

    /// Cancels the yellow and due timers of a clock.
    fn cancel_clock_timers(&mut self, target: &ClockRef) {
        self.cancel_timers_where(|k| k.clock() == Some(target));
    }

    /// What a clock is, in the workflow's own names, for people (「环节「受理审查」」).
    fn clock_label(&self, target: &ClockRef) -> String {
        let wf = &self.def.workflow;
        let node = |id: &str| {
            wf.nodes
                .iter()
                .find(|n| n.id.value == id)
                .and_then(|n| n.name.clone())
                .unwrap_or_else(|| id.to_string())
        };
        let stage = |id: &str| {
            wf.stages
                .iter()
                .find(|s| s.id.value == id)
                .and_then(|s| s.name.clone())
                .unwrap_or_else(|| id.to_string())
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
    fn arm_clock(&mut self, target: ClockRef, clock: &Clock) -> Result<(), Rejection> {
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

    fn arm_clock_timers(&mut self, target: ClockRef, clock: &Clock) -> Result<(), Rejection> {
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

    fn notify(&mut self, on: NotificationEvent, natural: Vec<Party>, data: NoticeData) {
        let rules = self.p.rules_for(on);
        if rules.is_empty() {
            if !natural.is_empty() {
                self.emit(Event::NotificationRequested {
                    on: Some(on),
                    recipients: natural,
                    template: SmolStr::new_static(default_template(on)),
                    via: vec![Delivery::Log],
                    data,
                });
            }
            return;
        }
        for r in rules {
            let mut recipients = natural.clone();
            for a in &r.to {
                if let Some(party) = self.resolve_quiet(a)
                    && !recipients.contains(&party)
                {
                    recipients.push(party);
                }
            }
            self.emit(Event::NotificationRequested {
                on: Some(on),
                recipients,
                template: r.template.clone(),
                via: r.via.clone(),
                data: data.clone(),
            });
        }
    }

    /// Resolves a notification recipient; a rule that fails names nobody rather than blocking
    /// the command that caused the notification.
    fn resolve_quiet(&self, a: &AssigneePlan) -> Option<Party> {
        self.resolve(a, &SmolStr::default()).ok()
    }

    // ---------------------------------------------------------------------------------------
    // Tasks

    fn open_task(&mut self, spec: OpenedTask) -> Result<(), Rejection> {
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

    fn new_task_id(&mut self) -> TaskId {
        let id = TaskId(self.next_task);
        self.next_task += 1;
        id
    }

    /// Cancels an open task, its timers and its open co-signers.
    fn cancel_task(&mut self, id: TaskId, reason: CancelReason) {
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

    fn record_decision(
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
    fn unit(&self, main: TaskId) -> Unit3 {
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
    fn after_decision(&mut self, id: TaskId) -> Result<(), Rejection> {
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

    // ---------------------------------------------------------------------------------------
    // Walking the graph

    /// Enters node `ix` and walks on through nodes that need no one (gateways, notify nodes,
    /// skipped nodes, parallel steps with no branch) until a task, step, wait or end.
    fn enter(&mut self, mut ix: usize) -> Result<(), Rejection> {
        let limit = self.p.nodes.len() * 2 + 4;
        for _ in 0..limit {
            let n = self.node(ix)?;
            if let Some(c) = self.channel
                && let Some(ch) = self.p.channels.get(c)
                && ch.skip.contains(&ix)
                && let Some(next) = n.next
            {
                self.emit(Event::NodeSkipped {
                    node: n.id.clone(),
                    channel: ch.id.clone(),
                });
                ix = next;
                continue;
            }
            let approved_end = n.kind == NodeType::End
                && n.outcome.unwrap_or(Outcome::Approved) == Outcome::Approved;
            self.move_stage(n.stage, approved_end)?;
            self.emit(Event::NodeEntered { node: n.id.clone() });
            match n.kind {
                NodeType::Task => return self.open_node_task(ix),
                NodeType::Parallel => {
                    if self.open_step(ix)? {
                        return Ok(());
                    }
                    ix = n
                        .next
                        .ok_or_else(|| internal(format!("node `{}` has no next", n.id)))?;
                }
                NodeType::Gateway => ix = self.route(n)?,
                NodeType::Wait => {
                    if let Some(l) = n.wait {
                        let due = Clock::new(self.now, l).due(self.cal)?.unwrap_or(self.now);
                        self.arm(due, TimerKind::Wait { node: n.id.clone() });
                    }
                    return Ok(());
                }
                NodeType::Notify => {
                    if let Some(spec) = &n.notify {
                        let recipients: Vec<Party> = spec
                            .to
                            .iter()
                            .filter_map(|a| self.resolve_quiet(a))
                            .collect();
                        self.emit(Event::NotificationRequested {
                            on: None,
                            recipients,
                            template: spec.template.clone(),
                            via: vec![Delivery::Log],
                            data: NoticeData {
                                node: Some(n.id.clone()),
                                ..NoticeData::default()
                            },
                        });
                    }
                    match n.next {
                        Some(next) => ix = next,
                        None => return Ok(()),
                    }
                }
                NodeType::End => {
                    let outcome = n.outcome.unwrap_or(Outcome::Approved);
                    self.emit(Event::EndReached {
                        node: n.id.clone(),
                        outcome,
                    });
                    if outcome == Outcome::Approved && self.promises_pending() {
                        // 容缺: the path is done, the commitments are not; the instance stays
                        // open until every promise is verified (or one is breached).
                        return Ok(());
                    }
                    self.end_instance(outcome);
                    return Ok(());
                }
            }
        }
        Err(internal(
            "the flow loops through nodes without reaching a task",
        ))
    }

    fn route(&self, n: &NodePlan) -> Result<usize, Rejection> {
        for (when, to) in &n.routes {
            match when {
                None => return Ok(*to),
                // A condition that cannot be evaluated (e.g. an optional field left empty) does
                // not hold; the default route catches the case.
                Some(e) if e.eval_bool(self.project).unwrap_or(false) => return Ok(*to),
                Some(_) => {}
            }
        }
        Err(Rejection::NoRoute { node: n.id.clone() })
    }

    fn open_node_task(&mut self, ix: usize) -> Result<(), Rejection> {
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
        })
    }

    /// Opens a parallel step and its branches. Returns false when no branch applies (the step
    /// completes at once and the flow goes on).
    fn open_step(&mut self, ix: usize) -> Result<bool, Rejection> {
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
    fn evaluate_join(&mut self, step: StepId) -> Result<(), Rejection> {
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

    /// A step was rejected: back to `to` (驳回) or a final rejection.
    fn apply_reject(&mut self, from: usize, to: Option<SmolStr>) -> Result<(), Rejection> {
        let n = self.node(from)?;
        match to {
            Some(target) => {
                let tix = self.node_ix(&target)?;
                if !n.reject_to.contains(&tix) {
                    return Err(not_earlier(self.p, n, &target));
                }
                // Only the abandoned path closes (review tasks, branches, co-signers): a
                // verification task checks the applicant's commitment, which the pre-approval
                // made and a 驳回 of the review round does not undo.
                for t in self.open_path_tasks() {
                    self.cancel_task(t, CancelReason::RejectedBack);
                }
                self.emit(Event::RejectedBack {
                    from: n.id.clone(),
                    to: target,
                    by: self.by(),
                });
                self.backwards = true;
                self.enter(tix)
            }
            None => match n.on_reject {
                Some(on) => {
                    // Verification tasks are left to `end_instance`, which closes them if the
                    // end ends the instance.
                    for t in self.open_path_tasks() {
                        self.cancel_task(t, CancelReason::InstanceEnded);
                    }
                    self.enter(on)
                }
                None => {
                    self.end_instance(Outcome::Rejected);
                    Ok(())
                }
            },
        }
    }

    fn promises_pending(&self) -> bool {
        let made_now = self.next_promise > u32_of(self.st.promises.len());
        made_now
            || self
                .st
                .promises
                .iter()
                .any(|p| p.status != PromiseStatus::Verified && !self.verified.contains(&p.id))
    }

    fn end_instance(&mut self, outcome: Outcome) {
        if self.ended {
            return;
        }
        self.ended = true;
        for t in self.open_tasks() {
            self.cancel_task(t, CancelReason::InstanceEnded);
        }
        self.cancel_timers_where(|_| true);
        self.emit(Event::InstanceEnded { outcome });
    }

    // ---------------------------------------------------------------------------------------
    // Stages

    fn move_stage(&mut self, target: Option<usize>, closing_end: bool) -> Result<(), Rejection> {
        let backwards = std::mem::take(&mut self.backwards);
        let cur = self.stage;
        match target {
            Some(s) if cur.map(|c| c.1) != Some(s) => {
                if let Some(c) = cur {
                    if backwards {
                        self.leave_stage(c.0);
                    } else {
                        self.close_stage(c)?;
                    }
                }
                self.enter_stage(s)
            }
            None if closing_end => {
                if let Some(c) = cur {
                    self.close_stage(c)?;
                    self.stage = None;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn element_attached(&self, element: &str) -> bool {
        self.st.elements.iter().any(|e| e.element == element)
    }

    fn enter_stage(&mut self, s: usize) -> Result<(), Rejection> {
        let sp = self
            .p
            .stages
            .get(s)
            .ok_or_else(|| internal("stage index out of range"))?;
        let visit = StageVisitId(self.next_visit);
        self.next_visit += 1;
        let clock = sp.limits.get(self.channel).map(|l| Clock::new(self.now, l));
        let element_clocks: Vec<(SmolStr, Clock)> = sp
            .elements
            .iter()
            .filter(|e| !self.element_attached(&e.element))
            .filter_map(|e| {
                e.within
                    .map(|w| (e.element.clone(), Clock::new(self.now, w)))
            })
            .collect();
        self.emit(Event::StageEntered {
            visit,
            stage: sp.id.clone(),
            clock: clock.clone(),
            element_clocks: element_clocks.clone(),
        });
        if let Some(c) = &clock {
            self.arm_clock(ClockRef::Stage(visit), c)?;
        }
        for (e, c) in &element_clocks {
            self.arm_clock(
                ClockRef::Element {
                    stage: visit,
                    element: e.clone(),
                },
                c,
            )?;
        }
        self.stage = Some((visit, s));
        Ok(())
    }

    fn cancel_stage_timers(&mut self, visit: StageVisitId) {
        self.cancel_timers_where(|k| match k.clock() {
            Some(ClockRef::Stage(v)) => *v == visit,
            Some(ClockRef::Element { stage, .. }) => *stage == visit,
            _ => false,
        });
    }

    fn close_stage(&mut self, (visit, s): (StageVisitId, usize)) -> Result<(), Rejection> {
        let sp = self
            .p
            .stages
            .get(s)
            .ok_or_else(|| internal("stage index out of range"))?;
        for e in &sp.elements {
            if self.element_attached(&e.element) {
                continue;
            }
            if !e.may_carry {
                return Err(Rejection::StageCannotClose {
                    stage: sp.id.clone(),
                    element: e.element.clone(),
                });
            }
            let already = self
                .st
                .outstanding
                .iter()
                .any(|o| !o.resolved && o.element == e.element);
            if already {
                continue;
            }
            let item = OutstandingId(self.next_outstanding);
            self.next_outstanding += 1;
            let clock = e.carry_limit.map(|l| Clock::new(self.now, l));
            self.emit(Event::OutstandingCarried {
                item,
                stage: sp.id.clone(),
                element: e.element.clone(),
                clock: clock.clone(),
            });
            if let Some(c) = &clock {
                self.arm_clock(ClockRef::Outstanding(item), c)?;
            }
        }
        self.cancel_stage_timers(visit);
        self.emit(Event::StageClosed { visit });
        Ok(())
    }

    fn leave_stage(&mut self, visit: StageVisitId) {
        self.cancel_stage_timers(visit);
        self.emit(Event::StageLeft { visit });
    }

    // ---------------------------------------------------------------------------------------
    // Commands

    fn start(
        &mut self,
        project: &serde_json::Value,
        channel: Option<&SmolStr>,
    ) -> Result<(), Rejection> {
        check_project(self.p, project)?;
        self.emit(Event::InstanceStarted {
            workflow: SmolStr::new(self.def.id()),
            by: self.by(),
            at: self.now,
            project: project.clone(),
        });
        let chosen = match channel {
            Some(c) => {
                let ix = self
                    .p
                    .channel_ix(c)
                    .ok_or_else(|| Rejection::UnknownChannel { channel: c.clone() })?;
                Some((ix, "chosen explicitly at start".to_string()))
            }
            None => self.p.channels.iter().enumerate().find_map(|(i, c)| {
                if let Some(f) = &c.flag
                    && project.get(f.as_str()).and_then(|v| v.as_bool()) == Some(true)
                {
                    return Some((i, format!("flag `{f}` is set")));
                }
                match &c.when {
                    Some(w) if w.eval_bool(project).unwrap_or(false) => {
                        Some((i, format!("condition `{}` holds", w.source())))
                    }
                    _ => None,
                }
            }),
        };
        if let Some((ix, reason)) = chosen {
            let ch = self
                .p
                .channels
                .get(ix)
                .ok_or_else(|| internal("channel index out of range"))?;
            self.channel = Some(ix);
            self.priority = ch.priority;
            self.emit(Event::ChannelChosen {
                channel: ch.id.clone(),
                reason: reason.clone(),
                priority: ch.priority,
            });
            let natural: Vec<Party> = ch
                .coordinator
                .as_ref()
                .and_then(|a| self.resolve_quiet(a))
                .into_iter()
                .collect();
            self.notify(
                NotificationEvent::GreenChannel,
                natural,
                NoticeData {
                    channel: Some(ch.id.clone()),
                    text: Some(reason),
                    ..NoticeData::default()
                },
            );
        }
        self.enter(self.p.start)
    }

    fn claim(&mut self, id: TaskId) -> Result<(), Rejection> {
        let t = self.task(id)?;
        match t.status {
            TaskStatus::Open => {}
            TaskStatus::Decided => return Err(Rejection::AlreadyDecided { task: id }),
            TaskStatus::Cancelled => return Err(Rejection::TaskNotOpen { task: id }),
        }
        if let Some(c) = &t.claimed_by {
            if *c == self.actor.name {
                return Ok(()); // a double click: already ours
            }
            return Err(Rejection::AlreadyClaimed {
                task: id,
                by: c.clone(),
            });
        }
        if !may_act(t, self.actor) {
            return Err(Rejection::NotAssigned {
                task: id,
                actor: self.by(),
            });
        }
        self.emit(Event::TaskClaimed {
            task: id,
            by: self.by(),
        });
        Ok(())
    }

    fn approve(&mut self, id: TaskId, comment: Option<String>) -> Result<(), Rejection> {
        self.actionable(id, Action::Approve)?;
        self.record_decision(id, Decision::Approve, None, comment);
        self.after_decision(id)
    }

    fn reject(
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

    fn approve_conditional(
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
                let l = Limit::parse(raw, false).map_err(|reason| Rejection::BadLimit {
                    limit: raw_text(raw),
                    reason,
                })?;
                if l.unit != c.limit.unit {
                    return Err(Rejection::BadLimit {
                        limit: l.to_string(),
                        reason: format!("write it in the rule's unit, like `{}`", c.limit),
                    });
                }
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
        self.after_decision(id)
    }

    /// 补正: the case goes back to the applicant; every running clock of the case stops.
    fn give_back(
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

    fn stop_clock(&mut self, r: ClockRef) -> Result<(), Rejection> {
        let Some(c) = self.st.clock(&r) else {
            return Ok(());
        };
        let used = c.used_at(self.cal, self.now)?;
        if c.running() {
            self.cancel_clock_timers(&r);
        }
        self.emit(Event::ClockStopped { target: r, used });
        Ok(())
    }

    fn resume_clock(&mut self, r: ClockRef) -> Result<(), Rejection> {
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

    fn supply(&mut self, material: &SmolStr) -> Result<(), Rejection> {
        if !self.is_applicant() {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: "supply materials for the applicant".into(),
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
    fn resubmit(&mut self) -> Result<(), Rejection> {
        let Some(r) = &self.st.returned else {
            return Err(Rejection::NotWithApplicant);
        };
        self.emit(Event::ApplicantResubmitted { by: self.by() });
        for c in r.held.clone() {
            self.resume_clock(c)?;
        }
        Ok(())
    }

    fn verify(
        &mut self,
        id: TaskId,
        accepted: bool,
        reason: &Option<String>,
    ) -> Result<(), Rejection> {
        let t = self.task(id)?;
        match t.status {
            TaskStatus::Open => {}
            TaskStatus::Decided => return Err(Rejection::AlreadyDecided { task: id }),
            TaskStatus::Cancelled => return Err(Rejection::TaskNotOpen { task: id }),
        }
        let Some(pid) = t.spec.promise.filter(|_| t.spec.kind == TaskKind::Verify) else {
            return Err(Rejection::WrongTaskKind {
                task: id,
                reason: "only a verification task is decided with verify_material".into(),
            });
        };
        if !may_act(t, self.actor) {
            return Err(Rejection::NotAssigned {
                task: id,
                actor: self.by(),
            });
        }
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

    fn delegate(&mut self, id: TaskId, to: &SmolStr, transfer: bool) -> Result<(), Rejection> {
        let t = self.task(id)?;
        if t.spec.kind == TaskKind::Work {
            self.actionable(id, Action::Delegate)?;
        } else {
            if !t.is_open() {
                return Err(Rejection::TaskNotOpen { task: id });
            }
            if !may_act(t, self.actor) {
                return Err(Rejection::NotAssigned {
                    task: id,
                    actor: self.by(),
                });
            }
        }
        self.emit(Event::TaskDelegated {
            task: id,
            to: to.clone(),
            transfer,
            by: self.by(),
        });
        self.notify(
            NotificationEvent::TaskAssigned,
            vec![Party::User(to.clone())],
            NoticeData {
                task: Some(id),
                node: Some(t.spec.node.clone()),
                by: Some(self.by()),
                ..NoticeData::default()
            },
        );
        Ok(())
    }

    fn add_cosigner(&mut self, id: TaskId, user: &SmolStr) -> Result<(), Rejection> {
        let t = self.actionable(id, Action::Cosign)?;
        if t.spec.kind != TaskKind::Work {
            return Err(Rejection::WrongTaskKind {
                task: id,
                reason: "co-signers are added to a step's own task".into(),
            });
        }
        for c in self.cosigners_of(id) {
            if let Some(ct) = self.st.task(c)
                && ct.spec.assignment == Party::User(user.clone())
                && self.is_open(c)
            {
                return Err(Rejection::AlreadyCosigner {
                    task: id,
                    user: user.clone(),
                });
            }
        }
        let task = self.new_task_id();
        self.open_task(OpenedTask {
            task,
            node: t.spec.node.clone(),
            label: t.spec.label.clone(),
            kind: TaskKind::Cosign,
            branch: t.spec.branch.clone(),
            step: t.spec.step,
            parent: Some(id),
            promise: None,
            assignment: Party::User(user.clone()),
            department: t.spec.department.clone(),
            clock: None,
            lead: false,
            priority: t.spec.priority,
        })
    }

    fn withdraw(&mut self, reason: &Option<String>) -> Result<(), Rejection> {
        if !self.is_applicant() {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: "withdraw the application (only the applicant may)".into(),
            });
        }
        self.emit(Event::Withdrawn {
            by: self.by(),
            reason: reason.clone(),
        });
        self.end_instance(Outcome::Withdrawn);
        Ok(())
    }

    fn open_task_ref(&self, id: TaskId) -> Result<&'a Task, Rejection> {
        let t = self.task(id)?;
        match t.status {
            TaskStatus::Open => Ok(t),
            TaskStatus::Decided => Err(Rejection::AlreadyDecided { task: id }),
            TaskStatus::Cancelled => Err(Rejection::TaskNotOpen { task: id }),
        }
    }

    fn urge(&mut self, id: TaskId, text: &Option<String>) -> Result<(), Rejection> {
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
        self.notify(
            NotificationEvent::Urge,
            natural,
            NoticeData {
                task: Some(id),
                node: Some(t.spec.node.clone()),
                by: Some(self.by()),
                text: text.clone(),
                ..NoticeData::default()
            },
        );
        Ok(())
    }

    /// 催办 is for those who wait on a task or answer for it: the applicant side, a role named
    /// as some department's supervisor or leader (they chase overdue work), and members of the
    /// task's own department.
    fn may_urge(&self, t: &Task) -> bool {
        if self.is_applicant() {
            return true;
        }
        let a = self.actor;
        let oversees = self.p.departments.values().any(|d| {
            [&d.supervisor, &d.leader]
                .into_iter()
                .flatten()
                .any(|r| a.has_role(r))
        });
        oversees || (a.department.is_some() && a.department == t.spec.department)
    }

    fn comment(&mut self, task: Option<TaskId>, text: &str) -> Result<(), Rejection> {
        if text.trim().is_empty() {
            return Err(Rejection::ReasonRequired);
        }
        if let Some(id) = task {
            self.actionable(id, Action::Comment)?;
        }
        self.emit(Event::Commented {
            task,
            by: self.by(),
            text: text.to_string(),
        });
        Ok(())
    }

    fn cc(
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
        if let Some(id) = task {
            let t = self.task(id)?;
            if !may_act(t, self.actor) {
                return Err(Rejection::NotAssigned {
                    task: id,
                    actor: self.by(),
                });
            }
            node = Some(t.spec.node.clone());
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

    fn attach(&mut self, element: &SmolStr, fields: &serde_json::Value) -> Result<(), Rejection> {
        let kind = self
            .p
            .elements
            .get(element)
            .ok_or_else(|| Rejection::UnknownElement {
                element: element.clone(),
            })?;
        let from = self
            .stage
            .and_then(|(_, s)| self.p.stages.get(s))
            .and_then(|sp| sp.elements.iter().find(|e| e.element == *element))
            .map(|e| e.from.clone())
            .unwrap_or_else(|| kind.owner.clone());
        if self.actor.department.as_ref() != Some(&from) {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: format!("attach element `{element}`: it comes from department `{from}`"),
            });
        }
        let fields = check_element_fields(element, &kind.fields, fields)?;
        let visit = self.stage.map(|s| s.0);
        self.emit(Event::ElementAttached {
            element: element.clone(),
            stage: visit,
            by: self.by(),
            fields,
        });
        let el = element.clone();
        self.cancel_timers_where(
            |k| matches!(k.clock(), Some(ClockRef::Element { element, .. }) if *element == el),
        );
        for o in &self.st.outstanding {
            if !o.resolved && o.element == *element {
                self.emit(Event::OutstandingResolved { item: o.id });
                let r = ClockRef::Outstanding(o.id);
                self.cancel_clock_timers(&r);
            }
        }
        Ok(())
    }

    fn suspend(&mut self, id: TaskId, reason: &str) -> Result<(), Rejection> {
        let t = self.actionable(id, Action::Suspend)?;
        if reason.trim().is_empty() {
            return Err(Rejection::ReasonRequired);
        }
        self.emit(Event::Suspended {
            task: id,
            by: self.by(),
            reason: reason.to_string(),
        });
        if t.spec.clock.is_some() {
            self.stop_clock(ClockRef::Task(id))?;
        }
        if let Some(s) = t.spec.step
            && self.st.step(s).is_some_and(|s| s.clock.is_some())
        {
            self.stop_clock(ClockRef::Step(s))?;
        }
        Ok(())
    }

    fn resume(&mut self, task: Option<TaskId>) -> Result<(), Rejection> {
        match task {
            Some(id) => {
                let t = self.open_task_ref(id)?;
                if !t.suspended {
                    return Err(Rejection::NotSuspended { task: id });
                }
                if !may_act(t, self.actor) {
                    return Err(Rejection::NotAssigned {
                        task: id,
                        actor: self.by(),
                    });
                }
                self.emit(Event::Resumed {
                    task: id,
                    by: self.by(),
                });
                if t.spec.clock.is_some() {
                    self.resume_clock(ClockRef::Task(id))?;
                }
                if let Some(s) = t.spec.step
                    && self.st.step(s).is_some_and(|s| s.clock.is_some())
                {
                    self.resume_clock(ClockRef::Step(s))?;
                }
                Ok(())
            }
            None => {
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
    }

    fn extend(
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
        let l = Limit::parse(raw, false).map_err(|reason| Rejection::BadLimit {
            limit: raw_text(raw),
            reason,
        })?;
        if l.unit != clock.limit.unit {
            return Err(Rejection::BadLimit {
                limit: l.to_string(),
                reason: format!(
                    "the limit being extended is `{}`: use the same unit",
                    clock.limit
                ),
            });
        }
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

    // ---------------------------------------------------------------------------------------
    // Timers

    fn timer_fired(&mut self, id: TimerId) -> Result<(), Rejection> {
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
            TimerKind::Escalation { task, rung } => self.escalate(*task, *rung),
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
    fn clock_party(&self, target: &ClockRef) -> (Vec<Party>, NoticeData) {
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
                Vec::new(),
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
                Vec::new(),
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

    /// Whether the thing a clock belongs to still needs its warnings.
    fn clock_live(&self, target: &ClockRef) -> bool {
        let st = self.st;
        match target {
            ClockRef::Task(t) => st.task(*t).is_some_and(Task::is_open),
            ClockRef::Step(s) => st.step(*s).is_some_and(|s| s.status == StepStatus::Open),
            ClockRef::Promise(p) => st
                .promise(*p)
                .is_some_and(|p| p.status != PromiseStatus::Verified),
            ClockRef::Stage(v) => st.current_stage().is_some_and(|s| s.id == *v),
            ClockRef::Element { element, .. } => !self.element_attached(element),
            ClockRef::Outstanding(o) => st.outstanding.get(o.ix()).is_some_and(|o| !o.resolved),
        }
    }

    fn yellow(&mut self, target: &ClockRef) -> Result<(), Rejection> {
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

    fn due(&mut self, target: &ClockRef, due: Timestamp) -> Result<(), Rejection> {
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
        if let ClockRef::Task(t) = target {
            // The escalation ladder: rung k fires `after` units past the deadline.
            for k in 0..self.p.rungs.len() {
                let Some(at) = self.rung_at(due, k)? else {
                    continue;
                };
                self.arm(
                    at,
                    TimerKind::Escalation {
                        task: *t,
                        rung: u32_of(k),
                    },
                );
            }
        }
        Ok(())
    }

    /// When rung `k` of the escalation ladder fires for a task due at `due`: `after` units past
    /// the deadline (working days counted from the deadline's last day).
    fn rung_at(&self, due: Timestamp, k: usize) -> Result<Option<Timestamp>, Rejection> {
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

    /// Where a timer belongs on this calendar: `None` when it is not counted on the calendar
    /// (a wait node, an hour limit) or its clock is stopped, so it keeps its instant.
    fn timer_instant(&self, kind: &TimerKind) -> Result<Option<Timestamp>, Rejection> {
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
                let due = st
                    .clock(&ClockRef::Task(*task))
                    .map(|c| c.due(self.cal))
                    .transpose()?
                    .flatten();
                match due {
                    Some(d) => self.rung_at(d, *rung as usize),
                    None => Ok(None),
                }
            }
            TimerKind::Wait { .. } => Ok(None),
        }
    }

    /// A calendar revision: every armed timer whose instant moves on the revised calendar
    /// (`self.cal`) is cancelled and armed again at its new instant, and one `Retimed` event
    /// records the moves. A timer now in the past fires at once through the scheduler (the
    /// overdue path, once). Assignees whose deadline came earlier are told.
    fn recalendar(&mut self, calendar: &SmolStr, revision: u32) -> Result<(), Rejection> {
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

    /// The promise's deadline timer fired.
    fn breach(&mut self, pid: PromiseId) -> Result<(), Rejection> {
        // Supplied in time and waiting for verification is not a breach (yet: if the material
        // is refused after the deadline, `promise_reopened` breaches then).
        if self
            .st
            .promise(pid)
            .is_none_or(|p| p.status != PromiseStatus::Open || p.breached)
        {
            return Ok(());
        }
        self.breach_now(pid)
    }

    /// A promise went back to waiting for its material (the material was refused at
    /// verification). Its deadline timer may have fired meanwhile, while the material was being
    /// checked, and done nothing; so past the deadline the commitment is breached now, and
    /// before it the deadline (and yellow) timers are armed again if they are gone. Without
    /// this a refused promise would stay red for ever with no breach.
    fn promise_reopened(&mut self, pid: PromiseId) -> Result<(), Rejection> {
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

    fn breach_now(&mut self, pid: PromiseId) -> Result<(), Rejection> {
        let st = self.st;
        let Some(p) = st.promise(pid) else {
            return Ok(());
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
        if revoke {
            // Revocation ends the case last, so the other breach facts come first in the history.
            self.end_instance(Outcome::Revoked);
        }
        Ok(())
    }

    fn escalate(&mut self, task: TaskId, rung: u32) -> Result<(), Rejection> {
        let st = self.st;
        let Some(t) = st.task(task).filter(|t| t.is_open()) else {
            return Ok(());
        };
        let Some(r) = self.p.rungs.get(rung as usize) else {
            return Ok(());
        };
        let dept = t
            .spec
            .department
            .as_ref()
            .and_then(|d| self.p.departments.get(d));
        let mut natural: Vec<Party> = Vec::new();
        if let Some(to) = r.to.as_ref().and_then(|a| self.resolve_quiet(a)) {
            natural.push(to);
        }
        let data = NoticeData {
            task: Some(task),
            node: Some(t.spec.node.clone()),
            text: Some(format!("rung {}", rung + 1)),
            ..NoticeData::default()
        };
        match r.action {
            RungAction::Remind => {
                natural.insert(0, self.party_of(t));
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
                self.emit(Event::Supervised {
                    task,
                    leader: leader.clone(),
                });
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
}

fn not_earlier(p: &Plan, n: &NodePlan, target: &str) -> Rejection {
    Rejection::NotEarlierNode {
        to: SmolStr::new(target),
        allowed: n
            .reject_to
            .iter()
            .filter_map(|i| p.nodes.get(*i).map(|x| x.id.clone()))
            .collect(),
    }
}

fn raw_text(raw: &RawLimit) -> String {
    match raw {
        RawLimit::Days(n) => n.to_string(),
        RawLimit::Text(t) => t.clone(),
    }
}

/// A rule's result: `dept:<id>`, `role:<id>`, or a user name.
fn parse_party(s: &str) -> Party {
    if let Some(d) = s.strip_prefix("dept:") {
        Party::Department(SmolStr::new(d.trim()))
    } else if let Some(r) = s.strip_prefix("role:") {
        Party::Role(SmolStr::new(r.trim()))
    } else {
        Party::User(SmolStr::new(s.trim()))
    }
}

fn type_ok(ty: FieldType, v: &serde_json::Value, values: &[SmolStr]) -> bool {
    use serde_json::Value as J;
    match ty {
        FieldType::String | FieldType::User | FieldType::Date => v.is_string(),
        FieldType::Number => v.is_number(),
        FieldType::Int => v.is_i64() || v.is_u64(),
        FieldType::Bool => v.is_boolean(),
        FieldType::Enum => match v {
            J::String(s) => values.is_empty() || values.iter().any(|x| x == s),
            _ => false,
        },
        FieldType::List => v.is_array(),
    }
}

/// The project must be a map holding every required field, each of its declared type.
fn check_project(p: &Plan, project: &serde_json::Value) -> Result<(), Rejection> {
    let Some(map) = project.as_object() else {
        return Err(Rejection::InvalidProject {
            field: SmolStr::new_static("project"),
            reason: "the project must be a map of field values".into(),
        });
    };
    for (id, ty, required, values) in &p.fields {
        match map.get(id.as_str()) {
            None | Some(serde_json::Value::Null) => {
                if *required {
                    return Err(Rejection::InvalidProject {
                        field: id.clone(),
                        reason: "is required".into(),
                    });
                }
            }
            Some(v) => {
                if !type_ok(*ty, v, values) {
                    let want = match ty {
                        FieldType::Enum => format!("one of {values:?}"),
                        other => format!("a {other:?}").to_lowercase(),
                    };
                    return Err(Rejection::InvalidProject {
                        field: id.clone(),
                        reason: format!("must be {want}, got {v}"),
                    });
                }
            }
        }
    }
    Ok(())
}

fn check_element_fields(
    element: &SmolStr,
    decl: &[(SmolStr, FieldType, bool)],
    fields: &serde_json::Value,
) -> Result<serde_json::Value, Rejection> {
    let empty = serde_json::Map::new();
    let map = match fields {
        serde_json::Value::Null => &empty,
        serde_json::Value::Object(m) => m,
        _ => {
            return Err(Rejection::InvalidElement {
                element: element.clone(),
                reason: "fields must be a map".into(),
            });
        }
    };
    for k in map.keys() {
        if !decl.iter().any(|(id, _, _)| id == k) {
            return Err(Rejection::InvalidElement {
                element: element.clone(),
                reason: format!("unknown field `{k}`"),
            });
        }
    }
    for (id, ty, required) in decl {
        match map.get(id.as_str()) {
            None | Some(serde_json::Value::Null) => {
                if *required {
                    return Err(Rejection::InvalidElement {
                        element: element.clone(),
                        reason: format!("field `{id}` is required"),
                    });
                }
            }
            Some(v) => {
                if !type_ok(*ty, v, &[]) {
                    return Err(Rejection::InvalidElement {
                        element: element.clone(),
                        reason: format!("field `{id}` must be a {ty:?}, got {v}").to_lowercase(),
                    });
                }
            }
        }
    }
    Ok(serde_json::Value::Object(map.clone()))
}
