//! `decide`: a command against a state becomes events, or a rejection.
//!
//! The decision is computed against the state *before* the command, with a small overlay
//! ([`Cx`]) of what this command has already done (tasks decided, cancelled or opened, timers
//! armed or cancelled, the stage entered, counters). That lets one command walk several nodes
//! (approve → gateway → notify → next task) and reason about its own effects without cloning the
//! state: the hot path allocates only the events it returns.
//!
//! **Invariant (the overlay mirrors the events).** Whatever an emitted event changes that a
//! later step of the same command asks about, the overlay records at the moment it is emitted,
//! so the lookups (`is_open`, `decision_of`, `cosigners_of`, `timer_is_armed`, the `next_*` id
//! counters, the stage, channel and priority, `joins_fired`, `verified`, `ended`) answer as the
//! state after the events would. Hence: emit a task, timer, step, promise or stage event only
//! through the function that keeps its overlay (`open_task`, `cancel_task`, `record_decision`,
//! `arm`, `cancel_timer`, `open_step`/`evaluate_join`, `enter_stage`, ...), and where a later
//! step asks about something an earlier step may have changed, ask through those lookups (`st`
//! is the state before the command).
//! `Cx::overlay_mismatch` states the rule as a check, which `decide` runs on every command in
//! debug builds (so every test of every crate checks it); docs/adr/0004-decide-overlay.md
//! says why the overlay is kept rather than a working copy of the state.
//!
//! Everything that can fail is checked before it matters: an error anywhere (a stage that cannot
//! close three nodes later, a date outside the calendar) rejects the whole command, and no event
//! is returned, so a state never holds half a transition.
//!
//! One command is one [`Cx`] (the context: the inputs, the events so far, the overlay), and its
//! methods are spread by concern:
//!
//! | module | owns |
//! |---|---|
//! | this one | the entry point, the context and its overlay lookups, who is who, notifications |
//! | [`walk`] | starting, walking the graph from node to node, routing, 驳回, ending |
//! | [`tasks`] | opening, deciding and cancelling tasks, co-signing (会签/加签), task commands |
//! | [`operations`] | 委派, 前/后加签 and 减签, 拿回, read marks of 抄送 |
//! | [`parallel`] | parallel steps (并联审批) and their joins |
//! | [`materials`] | 补正 (return to the applicant), 容缺 promises, supply and verification |
//! | [`stages`] | stages, elements and outstanding items carried past a stage |
//! | [`timers`] | clocks and timers: arming, warnings, escalation, extension, re-timing |

use jiff::Timestamp;
use smol_str::SmolStr;

use crate::calendar::Calendar;
use crate::compile::{AssigneePlan, Definition, NodePlan, Party, Plan, default_template};
use crate::model::{Delivery, NotificationEvent};

use super::command::{Actor, Command, CommandEnvelope};
use super::event::{
    Decision, Event, NoticeData, PromiseId, StageVisitId, StepId, TaskId, TaskKind, TimerId,
    TimerKind,
};
use super::policy;
use super::rejection::Rejection;
use super::state::{InstanceState, PromiseStatus, Status, StepStatus, Task, TaskStatus};

mod materials;
mod migrate;
mod operations;
mod parallel;
mod stages;
mod tasks;
mod timers;
mod walk;

pub(super) use migrate::migration;

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
    // Debug builds (every test of every crate) check the overlay invariant on each command;
    // release builds trust it and pay nothing.
    if cfg!(debug_assertions)
        && let Some(m) = cx.overlay_mismatch()
    {
        return Err(internal(format!(
            "decide's overlay does not mirror its own events: {m}"
        )));
    }
    Ok(cx.out)
}

/// The context of one decision: its inputs, the events emitted so far, and the overlay of what
/// this command has done that `st` does not show yet (see the module docs).
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
    /// Steps opened again (拿回 of the approval that fired their join) and withdrawn (拿回 of
    /// the approval that led into them).
    steps_reopened: Vec<StepId>,
    steps_withdrawn: Vec<StepId>,
    /// Decisions taken back (拿回): they no longer count.
    taken_back: Vec<TaskId>,
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
            steps_reopened: Vec::new(),
            steps_withdrawn: Vec::new(),
            taken_back: Vec::new(),
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

    fn run(&mut self, cmd: &'a Command) -> Result<(), Rejection> {
        match self.st.status {
            Status::NotStarted => {
                return match cmd {
                    Command::Start { project, channel } => self.start(project, channel.as_ref()),
                    Command::TimerFired { .. } | Command::Recalendar { .. } => Ok(()),
                    _ => Err(Rejection::NotStarted),
                };
            }
            // A timer of an ended instance was cancelled with it; firing it is a no-op. A leader
            // may still resolve (销号) what was under supervision when the case ended.
            Status::Ended => {
                return match cmd {
                    Command::TimerFired { .. } | Command::Recalendar { .. } => Ok(()),
                    // A copy is read after the case is closed too.
                    Command::ReadCopies => self.read_copies(),
                    Command::ResolveSupervision { target, note } => {
                        self.resolve_supervision(target, note)
                    }
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
            Command::SupplyMaterial { material, files } => self.supply(material, files),
            Command::VerifyMaterial {
                task,
                accepted,
                reason,
            } => self.verify(*task, *accepted, reason),
            Command::Delegate { task, to, transfer } => self.delegate(*task, to, *transfer),
            Command::Consult { task, to, text } => self.consult(*task, to, text),
            Command::AnswerConsult { task, opinion } => self.answer_consult(*task, opinion),
            Command::AddCosigner { task, user, order } => self.add_cosigner(*task, user, *order),
            Command::RemoveCosigner { task, user } => self.remove_cosigner(*task, user),
            Command::TakeBack { task } => self.take_back(*task),
            Command::ReadCopies => self.read_copies(),
            Command::Withdraw { reason } => self.withdraw(reason),
            Command::Urge { task, text } => self.urge(*task, text),
            Command::Supervise { task, reason } => self.supervise(*task, reason),
            Command::Comment { task, text } => self.comment(*task, text),
            Command::Cc { task, to, text } => self.cc(*task, to, text),
            Command::AttachElement { element, fields } => self.attach(element, fields),
            Command::Suspend { task, reason } => self.suspend(*task, reason),
            Command::Resume { task: Some(id) } => self.resume_task(*id),
            Command::Resume { task: None } => self.applicant_answers(),
            Command::Extend {
                task,
                limit,
                reason,
                step,
            } => self.extend(*task, limit, reason, *step),
            Command::ResolveSupervision { target, note } => self.resolve_supervision(target, note),
            Command::TimerFired { timer } => self.timer_fired(*timer),
            Command::Recalendar { calendar, revision } => self.recalendar(calendar, *revision),
            Command::Migrate { .. } => Err(internal(
                "a migration is decided by runtime::migrate::decide_migration, with both versions",
            )),
        }
    }

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
        if t.status == TaskStatus::Decided && !self.taken_back.contains(&id) {
            return t.decision.map(|d| (d, t.reject_to.clone(), t.decided_seq));
        }
        None
    }

    fn timer_is_armed(&self, id: TimerId) -> bool {
        !self.timers_closed.contains(&id)
            && (self.st.timer(id).is_some() || self.timers_armed.iter().any(|t| t.0 == id))
    }

    /// Where the overlay disagrees with the state its events make: the first difference found,
    /// or `None`. This is the invariant the overlay lookups rely on, written as a check: for
    /// every task, timer, step, promise, stage, channel and id counter, asking through the
    /// overlay gives the answer `evolve` would give after this command's events.
    fn overlay_mismatch(&self) -> Option<String> {
        let st = self.st;
        let mut after = st.clone();
        for e in &self.out {
            super::state::apply(&mut after, e);
        }
        let p = self.p;
        let counters = [
            ("tasks", self.next_task, after.tasks.len()),
            ("steps", self.next_step, after.steps.len()),
            ("promises", self.next_promise, after.promises.len()),
            ("pre-approvals", self.next_pre, after.pre_approvals.len()),
            ("stage visits", self.next_visit, after.stages.len()),
            (
                "outstanding items",
                self.next_outstanding,
                after.outstanding.len(),
            ),
        ];
        for (what, next, len) in counters {
            if next as usize != len {
                return Some(format!(
                    "the next id of {what} is {next}, the state holds {len}"
                ));
            }
        }
        if self.next_timer != after.next_timer {
            return Some(format!(
                "the next timer id is {}, the state's is {}",
                self.next_timer, after.next_timer
            ));
        }
        for t in &after.tasks {
            let id = t.spec.task;
            if self.is_open(id) != t.is_open() {
                return Some(format!("task {id}: open is {}", self.is_open(id)));
            }
            let decided = t.decision.filter(|_| t.status == TaskStatus::Decided);
            let seen = self.decision_of(id).map(|(d, to, _)| (d, to));
            if seen != decided.map(|d| (d, t.reject_to.clone())) {
                return Some(format!("task {id}: the decision is {seen:?}"));
            }
            if self.cosigners_of(id) != t.cosigners {
                return Some(format!("task {id}: co-signers {:?}", self.cosigners_of(id)));
            }
        }
        for n in 0..self.next_timer.max(after.next_timer) {
            let id = TimerId(n);
            if self.timer_is_armed(id) != after.timer(id).is_some() {
                return Some(format!("timer {id}: armed is {}", self.timer_is_armed(id)));
            }
        }
        for s in &after.steps {
            let was_closed = st.step(s.id).is_some_and(|x| x.status != StepStatus::Open)
                && !self.steps_reopened.contains(&s.id);
            let closed = was_closed
                || self.joins_fired.contains(&s.id)
                || self.steps_withdrawn.contains(&s.id);
            if closed != (s.status != StepStatus::Open) {
                return Some(format!("step {}: closed is {closed}", s.id));
            }
        }
        for q in &after.promises {
            let was = st
                .promise(q.id)
                .is_some_and(|x| x.status == PromiseStatus::Verified);
            let verified = was || self.verified.contains(&q.id);
            if verified != (q.status == PromiseStatus::Verified) {
                return Some(format!("promise {}: verified is {verified}", q.id));
            }
        }
        let stage = after
            .current_stage()
            .and_then(|v| p.stage_ix(&v.stage).map(|s| (v.id, s)));
        if self.stage != stage {
            return Some(format!(
                "the stage is {:?}, the state's {stage:?}",
                self.stage
            ));
        }
        let channel = after.channel.as_deref().and_then(|c| p.channel_ix(c));
        if (self.channel, self.priority) != (channel, after.priority) {
            return Some(format!(
                "channel and priority {:?}",
                (self.channel, self.priority)
            ));
        }
        let ended = after.status == Status::Ended && st.status != Status::Ended;
        if self.ended != ended {
            return Some(format!("ended is {}", self.ended));
        }
        None
    }

    /// Whether the actor stands for this instance's applicant ([`policy::is_applicant_party`]).
    fn is_applicant(&self) -> bool {
        policy::is_applicant_party(self.p, &self.st.applicant, self.project, self.actor)
    }

    /// Whether the actor may act on `t` ([`policy::may_act`]).
    fn may_act(&self, t: &Task) -> bool {
        policy::may_act(t, self.actor, &self.st.applicant)
    }

    /// Whether the actor may comment on this instance or copy it on ([`policy::may_take_part`]).
    fn may_take_part(&self) -> bool {
        policy::may_take_part(self.p, self.st, self.project, self.actor)
    }

    fn party_of(&self, t: &Task) -> Party {
        policy::addressee(t, &self.st.applicant)
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

    /// Resolves a notification recipient; a rule that fails names nobody rather than blocking
    /// the command that caused the notification.
    fn resolve_quiet(&self, a: &AssigneePlan) -> Option<Party> {
        self.resolve(a, &SmolStr::default()).ok()
    }

    fn department_of(&self, party: &Party) -> Option<SmolStr> {
        match party {
            Party::Role(r) => self.p.role_department.get(r).cloned(),
            Party::Department(d) => Some(d.clone()),
            Party::User(_) => None,
        }
    }

    /// A notification about task `id` at `node`, from the actor, with their words.
    fn notify_task(
        &mut self,
        on: NotificationEvent,
        natural: Vec<Party>,
        id: TaskId,
        node: &SmolStr,
        text: Option<String>,
    ) {
        let data = NoticeData {
            task: Some(id),
            node: Some(node.clone()),
            by: Some(self.by()),
            text,
            ..NoticeData::default()
        };
        self.notify(on, natural, data);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::parse::parse_workflow;
    use crate::runtime::event::CancelReason;
    use crate::runtime::state::apply;
    use crate::validate::ValidateContext;

    const WORKFLOW: &str = r#"
id: overlay
name: 覆盖层
calendar: cn-mainland
start: intake
departments:
  - { id: fgw }
roles:
  - { id: clerk, department: fgw }
nodes:
  - { id: intake, type: task, assignee: { role: clerk }, actions: [approve, reject], limit: 5wd, next: done }
  - { id: done, type: end, outcome: approved }
"#;

    /// A definition, its calendar, and an instance started on it (one open task with a clock).
    fn started() -> (Definition, Calendar, InstanceState, Timestamp) {
        let wf = parse_workflow(WORKFLOW).unwrap_or_else(|d| panic!("parse: {d:?}"));
        let def =
            compile(wf, &ValidateContext::default()).unwrap_or_else(|d| panic!("compile: {d:?}"));
        let cal = crate::calendar::shipped_for_tests();
        let now: Timestamp = "2026-03-02T09:00:00+08:00".parse().unwrap();
        let start = CommandEnvelope {
            actor: Actor::new("zhang", None, &["applicant"]),
            command: Command::Start {
                project: serde_json::json!({}),
                channel: None,
            },
        };
        let mut st = InstanceState::default();
        for e in decide(&def, &cal, &st, &start, now).unwrap() {
            apply(&mut st, &e);
        }
        assert_eq!(st.open_tasks().count(), 1);
        assert!(!st.timers.is_empty(), "the task's clock armed its timers");
        (def, cal, st, now)
    }

    #[test]
    fn the_overlay_mirrors_what_a_command_did() {
        let (def, cal, st, now) = started();
        let clerk = Actor::new("li", Some("fgw"), &["clerk"]);
        let mut cx = Cx::new(&def, &cal, &st, &clerk, now, &st.project);
        cx.run(&Command::Approve {
            task: TaskId(0),
            comment: None,
        })
        .unwrap();
        assert!(cx.ended, "approving the only task ends the instance");
        assert_eq!(cx.overlay_mismatch(), None);
    }

    #[test]
    fn an_event_the_overlay_does_not_record_is_caught() {
        let (def, cal, st, now) = started();
        let clerk = Actor::new("li", Some("fgw"), &["clerk"]);

        // A task cancelled without `cancelled` knowing: it would still look open.
        let mut cx = Cx::new(&def, &cal, &st, &clerk, now, &st.project);
        cx.emit(Event::TaskCancelled {
            task: TaskId(0),
            reason: CancelReason::InstanceEnded,
        });
        let m = cx.overlay_mismatch();
        assert!(m.as_deref().is_some_and(|m| m.contains("task")), "{m:?}");

        // A timer cancelled behind `timers_closed`'s back: it would be cancelled twice.
        let mut cx = Cx::new(&def, &cal, &st, &clerk, now, &st.project);
        let timer = st.timers[0].id;
        cx.emit(Event::TimerCancelled { timer });
        let m = cx.overlay_mismatch();
        assert!(m.as_deref().is_some_and(|m| m.contains("timer")), "{m:?}");

        // The same cancellations through the functions that keep the overlay pass.
        let mut cx = Cx::new(&def, &cal, &st, &clerk, now, &st.project);
        cx.cancel_task(TaskId(0), CancelReason::InstanceEnded);
        cx.cancel_timer(timer);
        assert_eq!(cx.overlay_mismatch(), None);
    }
}
