//! The runtime, command by command, on small inline workflows: every command, every rejection,
//! the time model, colours, parallel joins, 驳回 across a parallel step, 容缺 from promise to
//! formal approval or revocation, stages and elements, and the scenario runner.

use jiff::Timestamp;
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::{Definition, Party};
use shenpi_engine::limit::Limit;
use shenpi_engine::model::Outcome;
use shenpi_engine::runtime::event::{CancelReason, ClockRef, SignOrder, TaskKind};
use shenpi_engine::runtime::state::{PromiseStatus, Status, TaskStatus};
use shenpi_engine::runtime::{
    Actor, Clock, Colour, Command, CommandEnvelope, Event, InstanceState, Rejection, TaskId, apply,
    colour, decide, replay, view,
};
use shenpi_engine::simulate::{Scenario, SimError, run};
use smol_str::SmolStr;

mod common;
use common::{compiled, mainland, ts};

/// A small workflow exercising every feature; `JOIN` is replaced per test.
const WORKFLOW: &str = r#"
id: cases
name: 测试流程
calendar: cn-mainland
start: intake
fields:
  - { id: tier, type: enum, values: [一般, 重点], required: true }
  - { id: service_officer, type: user, required: true }
  - { id: fast, type: bool }
departments:
  - { id: a, supervisor: chief, leader: leader }
  - { id: b, supervisor: chief, leader: leader }
  - { id: c }
roles:
  - { id: applicant }
  - { id: clerk, department: a }
  - { id: ra, department: a }
  - { id: rb, department: b }
  - { id: rc, department: c }
  - { id: chief, department: a }
  - { id: leader, department: a }
materials:
  - { id: land, red_line: true }
  - { id: plan }
  - { id: eia }
elements:
  - id: funds
    category: funds
    owner: b
    fields:
      - { id: amount, type: number, required: true }
  - id: energy
    category: energy
    owner: a
stages:
  - id: s1
    elements:
      - { element: funds, within: 5wd }
  - id: s2
    limit: 20wd
    elements:
      - { element: energy, may_carry: true, carry_limit: 10wd }
channels:
  - id: green
    when: 'project.tier == "重点"'
    flag: fast
    limit_scale: 50%
    skip: [pre]
    priority: 5
    coordinator: { role: chief }
warnings:
  yellow_at: 75%
  escalation:
    - { after: 0wd, action: remind }
    - { after: 1wd, action: supervisor }
    - { after: 2wd, action: supervise }
nodes:
  - id: intake
    type: task
    stage: s1
    assignee: { role: clerk }
    actions: [approve, reject, return, conditional, delegate, cosign, comment, suspend, extend]
    limit: 4wd
    materials: [land, plan, eia]
    conditional:
      waivable: [plan, eia]
      limit: 10wd
      on_breach: [credit_mark, revoke]
      verify_by: { role: clerk }
    extend_by: [chief]
    next: pre
  - id: pre
    type: task
    stage: s1
    assignee: { service_officer: service_officer }
    actions: [approve, reject, comment, delegate]
    limit: 2wd
    next: review
  - id: review
    type: parallel
    stage: s2
    lead: a
    limit: 6wd
    branches:
      - { id: a, department: a, assignee: { role: ra }, limit: 4wd }
      - { id: b, department: b, assignee: { role: rb }, limit: 4wd }
      - { id: c, department: c, assignee: { role: rc }, limit: 4wd }
    join: JOIN
    reject_to: [intake]
    next: gate
  - id: gate
    type: gateway
    stage: s2
    routes:
      - { when: 'project.tier == "重点"', to: final }
      - { to: final }
  - id: final
    type: task
    stage: s2
    assignee: { role: chief }
    actions: [approve, reject, comment]
    limit: 2wd
    reject_to: [intake, review]
    on_reject: refused
    next: done
  - id: done
    type: end
    outcome: approved
  - id: refused
    type: end
    outcome: rejected
"#;

fn calendar() -> Calendar {
    mainland()
}

fn definition(join: &str) -> Definition {
    compiled(&WORKFLOW.replace("JOIN", join))
}

fn user(name: &str) -> Actor {
    match name {
        "zhang" => Actor::new("zhang", None, &["applicant"]),
        "wang" => Actor::new("wang", None, &[]), // the service officer
        "li" => Actor::new("li", Some("a"), &["clerk"]),
        "li2" => Actor::new("li2", Some("a"), &["clerk"]),
        "ra" => Actor::new("ra", Some("a"), &["ra"]),
        "rb" => Actor::new("rb", Some("b"), &["rb"]),
        "rc" => Actor::new("rc", Some("c"), &["rc"]),
        "chief" => Actor::new("chief", Some("a"), &["chief"]),
        "energy" => Actor::new("en", Some("a"), &[]),
        "funds" => Actor::new("fu", Some("b"), &[]),
        other => Actor::new(other, None, &[]),
    }
}

/// An instance under test: applies what `decide` returns, keeps the log, fires timers.
struct Case {
    def: Definition,
    cal: Calendar,
    state: InstanceState,
    log: Vec<Event>,
    now: Timestamp,
}

impl Case {
    fn new(join: &str) -> Case {
        Case {
            def: definition(join),
            cal: calendar(),
            state: InstanceState::default(),
            log: Vec::new(),
            now: ts("2026-03-02T09:00:00+08:00"),
        }
    }

    /// A started instance (not green: 一般).
    fn started(join: &str) -> Case {
        let mut c = Case::new(join);
        c.ok(
            "zhang",
            Command::Start {
                project: serde_json::json!({"tier": "一般", "service_officer": "wang"}),
                channel: None,
            },
        );
        c
    }

    fn try_cmd(&mut self, who: &str, command: Command) -> Result<Vec<Event>, Rejection> {
        let env = CommandEnvelope {
            actor: user(who),
            command,
        };
        let events = decide(&self.def, &self.cal, &self.state, &env, self.now)?;
        for e in &events {
            apply(&mut self.state, e);
            self.log.push(e.clone());
        }
        Ok(events)
    }

    fn ok(&mut self, who: &str, command: Command) -> Vec<Event> {
        let dbg = format!("{command:?}");
        self.try_cmd(who, command)
            .unwrap_or_else(|r| panic!("{who} {dbg}: rejected: {r}"))
    }

    fn err(&mut self, who: &str, command: Command) -> Rejection {
        let before = self.state.clone();
        let dbg = format!("{command:?}");
        match self.try_cmd(who, command) {
            Ok(ev) => panic!("{who} {dbg}: expected a rejection, got {ev:?}"),
            Err(r) => {
                assert_eq!(self.state, before, "a rejection changes nothing");
                r
            }
        }
    }

    /// Advances virtual time, firing due timers in order.
    fn advance(&mut self, to: &str) {
        let to = ts(to);
        loop {
            let next = self
                .state
                .timers
                .iter()
                .filter(|t| t.due <= to)
                .min_by_key(|t| (t.due, t.id))
                .map(|t| (t.id, t.due));
            let Some((id, due)) = next else { break };
            self.now = self.now.max(due);
            self.ok("system", Command::TimerFired { timer: id });
        }
        self.now = self.now.max(to);
    }

    fn at(&mut self, t: &str) {
        self.advance(t);
    }

    /// The open task with this label (the first, if several).
    fn task(&self, label: &str) -> TaskId {
        self.state
            .open_tasks()
            .find(|t| t.spec.label == label)
            .map(|t| t.spec.task)
            .unwrap_or_else(|| panic!("no open task `{label}`; open: {:?}", self.open()))
    }

    fn open(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .state
            .open_tasks()
            .map(|t| t.spec.label.to_string())
            .collect();
        v.sort();
        v
    }

    fn has(&self, kind: &str) -> bool {
        self.log.iter().any(|e| e.kind() == kind)
    }

    fn count(&self, kind: &str) -> usize {
        self.log.iter().filter(|e| e.kind() == kind).count()
    }

    fn approve(&mut self, who: &str, label: &str) {
        let task = self.task(label);
        self.ok(
            who,
            Command::Approve {
                task,
                comment: None,
            },
        );
    }

    fn attach(&mut self, element: &str) {
        let (who, fields) = match element {
            "funds" => ("funds", serde_json::json!({"amount": 100.0})),
            _ => ("energy", serde_json::json!({})),
        };
        self.ok(
            who,
            Command::AttachElement {
                element: element.into(),
                fields,
            },
        );
    }

    /// Intake → pre → the parallel step.
    fn reach_review(&mut self) {
        self.attach("funds");
        self.approve("li", "intake");
        self.approve("wang", "pre");
    }

    fn check_replay(&self) {
        assert_eq!(
            replay(&self.log),
            self.state,
            "replaying the log rebuilds the state"
        );
        let json = serde_json::to_string(&self.log).expect("events serialize");
        let back: Vec<Event> = serde_json::from_str(&json).expect("events deserialize");
        assert_eq!(back, self.log, "events round-trip through JSON");
        let sj = serde_json::to_string(&self.state).expect("state serializes");
        let sback: InstanceState = serde_json::from_str(&sj).expect("state deserializes");
        assert_eq!(sback, self.state, "the state round-trips through JSON");
    }
}

const ALL: &str = "{ policy: all }";

fn task_warned(c: &Case) -> bool {
    c.log.iter().any(|e| {
        matches!(
            e,
            Event::Warning {
                target: ClockRef::Task(_),
                ..
            }
        )
    })
}

#[test]
fn happy_path_to_approved() {
    let mut c = Case::started(ALL);
    assert_eq!(c.open(), ["intake"]);
    let intake = c.task("intake");
    c.ok("li", Command::Claim { task: intake });
    c.reach_review();
    assert_eq!(c.open(), ["review.a", "review.b", "review.c"]);
    c.approve("rb", "review.b");
    c.approve("rc", "review.c");
    assert!(!c.has("join_fired"));
    c.approve("ra", "review.a");
    assert_eq!(c.count("join_fired"), 1);
    assert_eq!(c.open(), ["final"]);
    c.attach("energy");
    c.approve("chief", "final");
    assert_eq!(c.state.status, Status::Ended);
    assert_eq!(c.state.outcome, Some(Outcome::Approved));
    assert!(
        c.state.timers.is_empty(),
        "an ended instance leaves no timers"
    );
    c.check_replay();
}

#[test]
fn start_rejections() {
    let mut c = Case::new(ALL);
    let r = c.err("li", Command::Claim { task: TaskId(0) });
    assert_eq!(r.code(), "not_started");
    let r = c.err(
        "zhang",
        Command::Start {
            project: serde_json::json!({"tier": "特别"}),
            channel: None,
        },
    );
    assert_eq!(r.code(), "invalid_project");
    let r = c.err(
        "zhang",
        Command::Start {
            project: serde_json::json!({"service_officer": "wang"}),
            channel: None,
        },
    );
    assert_eq!(r.code(), "invalid_project", "tier is required");
    let r = c.err(
        "zhang",
        Command::Start {
            project: serde_json::json!({"tier": "一般", "service_officer": "wang"}),
            channel: Some("purple".into()),
        },
    );
    assert_eq!(r.code(), "unknown_channel");
    let mut c = Case::started(ALL);
    let r = c.err(
        "zhang",
        Command::Start {
            project: serde_json::json!({"tier": "一般"}),
            channel: None,
        },
    );
    assert_eq!(r.code(), "already_started");
}

#[test]
fn authorisation_claim_and_decided_once() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    assert_eq!(
        c.err(
            "ra",
            Command::Approve {
                task: t,
                comment: None
            }
        )
        .code(),
        "not_assigned"
    );
    c.ok("li", Command::Claim { task: t });
    assert!(
        c.ok("li", Command::Claim { task: t }).is_empty(),
        "re-claim is a no-op"
    );
    assert_eq!(
        c.err("li2", Command::Claim { task: t }).code(),
        "already_claimed"
    );
    assert_eq!(
        c.err(
            "li2",
            Command::Approve {
                task: t,
                comment: None
            }
        )
        .code(),
        "not_assigned",
        "a claimed task belongs to its claimer"
    );
    c.attach("funds");
    c.ok(
        "li",
        Command::Approve {
            task: t,
            comment: None,
        },
    );
    assert_eq!(
        c.err(
            "li",
            Command::Approve {
                task: t,
                comment: None
            }
        )
        .code(),
        "already_decided"
    );
    assert_eq!(
        c.err(
            "li",
            Command::Approve {
                task: TaskId(99),
                comment: None
            }
        )
        .code(),
        "unknown_task"
    );
    // `pre` allows only the default actions.
    let pre = c.task("pre");
    let r = c.err(
        "wang",
        Command::Return {
            task: pre,
            reason: "x".into(),
            materials: vec![],
        },
    );
    assert_eq!(r.code(), "action_not_allowed");
    c.check_replay();
}

#[test]
fn service_officer_and_delegation() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.ok(
        "li",
        Command::Delegate {
            task: t,
            to: "li3".into(),
            transfer: false,
        },
    );
    // The delegate acts beside the holder.
    c.attach("funds");
    c.ok(
        "li3",
        Command::Approve {
            task: t,
            comment: None,
        },
    );
    let pre = c.task("pre");
    assert_eq!(
        c.state.task(pre).map(|t| t.spec.assignment.clone()),
        Some(Party::User("wang".into())),
        "the 1-to-1 service officer gets the task"
    );
    c.ok(
        "wang",
        Command::Delegate {
            task: pre,
            to: "zhao".into(),
            transfer: true,
        },
    );
    assert_eq!(
        c.err(
            "wang",
            Command::Approve {
                task: pre,
                comment: None
            }
        )
        .code(),
        "not_assigned"
    );
    c.ok(
        "zhao",
        Command::Approve {
            task: pre,
            comment: None,
        },
    );
    assert_eq!(c.open(), ["review.a", "review.b", "review.c"]);
}

#[test]
fn stage_cannot_close_without_required_element() {
    let mut c = Case::started(ALL);
    // intake → pre stays in s1; pre → review leaves s1, which needs `funds`.
    c.approve("li", "intake");
    let t = c.task("pre");
    let r = c.err(
        "wang",
        Command::Approve {
            task: t,
            comment: None,
        },
    );
    assert_eq!(r.code(), "stage_cannot_close", "{r}");
    // Wrong department, unknown element, bad fields.
    let r = c.err(
        "energy",
        Command::AttachElement {
            element: "funds".into(),
            fields: serde_json::json!({"amount": 1}),
        },
    );
    assert_eq!(r.code(), "not_authorised");
    let r = c.err(
        "funds",
        Command::AttachElement {
            element: "water".into(),
            fields: serde_json::Value::Null,
        },
    );
    assert_eq!(r.code(), "unknown_element");
    let r = c.err(
        "funds",
        Command::AttachElement {
            element: "funds".into(),
            fields: serde_json::json!({"amount": "lots"}),
        },
    );
    assert_eq!(r.code(), "invalid_element");
    let r = c.err(
        "funds",
        Command::AttachElement {
            element: "funds".into(),
            fields: serde_json::json!({}),
        },
    );
    assert_eq!(r.code(), "invalid_element", "a required field is missing");
    c.attach("funds");
    c.ok(
        "wang",
        Command::Approve {
            task: t,
            comment: None,
        },
    );
    assert!(c.has("stage_closed"));
}

#[test]
fn element_carried_as_outstanding_item() {
    let mut c = Case::started(ALL);
    c.reach_review();
    for (who, l) in [("ra", "review.a"), ("rb", "review.b"), ("rc", "review.c")] {
        c.approve(who, l);
    }
    // Approving `final` closes s2 at the end; energy may be carried.
    c.approve("chief", "final");
    assert!(c.has("outstanding_carried"));
    assert_eq!(c.state.outcome, Some(Outcome::Approved));
}

#[test]
fn element_deadline_goes_red() {
    let mut c = Case::started(ALL);
    // funds within 5wd of entering s1 (Mon 03-02): due end of Mon 03-09.
    c.at("2026-03-10T09:00:00+08:00");
    assert!(c.log.iter().any(|e| matches!(
        e,
        Event::Warning {
            target: ClockRef::Element { .. },
            colour: Colour::Red
        }
    )));
    let v = view(&c.def, &c.cal, &c.state, c.now);
    let funds = v
        .stage
        .as_ref()
        .and_then(|s| s.elements.iter().find(|e| e.element == "funds"))
        .and_then(|e| e.clock.clone())
        .expect("funds deadline in the view");
    assert_eq!(funds.colour, Colour::Red);
    assert_eq!(funds.days_left, -1);
}

#[test]
fn green_channel_scales_and_skips() {
    let mut c = Case::new(ALL);
    c.ok(
        "zhang",
        Command::Start {
            project: serde_json::json!({"tier": "一般", "fast": true, "service_officer": "wang"}),
            channel: None,
        },
    );
    let chosen = c.log.iter().find_map(|e| match e {
        Event::ChannelChosen {
            channel, reason, ..
        } => Some((channel.clone(), reason.clone())),
        _ => None,
    });
    assert_eq!(chosen.as_ref().map(|c| c.0.as_str()), Some("green"));
    assert!(
        chosen.is_some_and(|c| c.1.contains("fast")),
        "the reason names the flag"
    );
    let intake = c.task("intake");
    let clock = c
        .state
        .task(intake)
        .and_then(|t| t.spec.clock.clone())
        .expect("clock");
    assert_eq!(clock.limit, Limit::working_days(2), "4wd at 50%");
    assert_eq!(c.state.task(intake).map(|t| t.spec.priority), Some(5));
    c.attach("funds");
    c.approve("li", "intake");
    assert!(c.has("node_skipped"), "pre is skipped");
    assert_eq!(c.open(), ["review.a", "review.b", "review.c"]);
    let coordinator = c.log.iter().any(|e| {
        matches!(e, Event::NotificationRequested { recipients, .. }
            if recipients.contains(&Party::Role("chief".into())))
    });
    assert!(coordinator, "the coordinator is notified");
}

#[test]
fn reject_back_and_final_reject() {
    let mut c = Case::started(ALL);
    c.reach_review();
    for (who, l) in [("ra", "review.a"), ("rb", "review.b"), ("rc", "review.c")] {
        c.approve(who, l);
    }
    let f = c.task("final");
    let r = c.err(
        "chief",
        Command::Reject {
            task: f,
            to: Some("pre".into()),
            reason: None,
        },
    );
    assert_eq!(r.code(), "not_earlier_node");
    c.ok(
        "chief",
        Command::Reject {
            task: f,
            to: Some("review".into()),
            reason: Some("补充意见".into()),
        },
    );
    assert_eq!(c.open(), ["review.a", "review.b", "review.c"]);
    let rounds: Vec<u32> = c.state.steps.iter().map(|s| s.round).collect();
    assert_eq!(rounds, [1, 2], "re-entering the step starts round 2");
    for (who, l) in [("ra", "review.a"), ("rb", "review.b"), ("rc", "review.c")] {
        c.approve(who, l);
    }
    let f = c.task("final");
    c.ok(
        "chief",
        Command::Reject {
            task: f,
            to: None,
            reason: Some("不予批准".into()),
        },
    );
    assert_eq!(c.state.outcome, Some(Outcome::Rejected));
    assert!(c.state.open_tasks().next().is_none());
    c.check_replay();
}

#[test]
fn reject_back_across_parallel_step_immediate() {
    let mut c = Case::started("{ policy: all, on_reject: immediate }");
    c.reach_review();
    c.approve("ra", "review.a");
    let b = c.task("review.b");
    c.ok(
        "rb",
        Command::Reject {
            task: b,
            to: Some("intake".into()),
            reason: Some("材料不全".into()),
        },
    );
    assert_eq!(c.count("join_fired"), 1);
    assert_eq!(
        c.open(),
        ["intake"],
        "no branch of the abandoned step stays open"
    );
    assert!(c.has("rejected_back"));
    assert!(c.has("stage_left"), "going back out of s2 leaves it");
    // Still reaches an end.
    c.reach_review();
    for (who, l) in [("ra", "review.a"), ("rb", "review.b"), ("rc", "review.c")] {
        c.approve(who, l);
    }
    c.approve("chief", "final");
    assert_eq!(c.state.outcome, Some(Outcome::Approved));
    assert_eq!(c.count("join_fired"), 2, "one join per round");
    c.check_replay();
}

#[test]
fn collect_waits_for_every_opinion() {
    let mut c = Case::started("{ policy: all, on_reject: collect }");
    c.reach_review();
    let a = c.task("review.a");
    c.ok(
        "ra",
        Command::Reject {
            task: a,
            to: Some("intake".into()),
            reason: None,
        },
    );
    assert!(!c.has("join_fired"), "collect waits");
    c.approve("rb", "review.b");
    c.approve("rc", "review.c");
    assert_eq!(c.count("join_fired"), 1);
    assert_eq!(c.open(), ["intake"], "the first reject's target");
}

#[test]
fn any_policy_first_approval_completes() {
    let mut c = Case::started("{ policy: any }");
    c.reach_review();
    let a = c.task("review.a");
    c.ok(
        "ra",
        Command::Reject {
            task: a,
            to: None,
            reason: None,
        },
    );
    assert!(!c.has("join_fired"), "或签: one reject does not decide");
    c.approve("rc", "review.c");
    assert_eq!(c.count("join_fired"), 1);
    assert_eq!(c.open(), ["final"], "the other branch is cancelled");
}

#[test]
fn vote_policy() {
    // 2/3 of 3 = 2 approvals.
    let mut c = Case::started("{ policy: vote, share: 2/3 }");
    c.reach_review();
    c.approve("ra", "review.a");
    assert!(!c.has("join_fired"));
    c.approve("rb", "review.b");
    assert_eq!(c.count("join_fired"), 1);
    assert_eq!(c.open(), ["final"]);

    // Two rejects make 2 approvals impossible: rejected at once, back to intake.
    let mut c = Case::started("{ policy: vote, share: 2/3 }");
    c.reach_review();
    for (who, l) in [("ra", "review.a"), ("rb", "review.b")] {
        let t = c.task(l);
        c.ok(
            who,
            Command::Reject {
                task: t,
                to: Some("intake".into()),
                reason: None,
            },
        );
    }
    assert_eq!(c.count("join_fired"), 1);
    assert_eq!(c.open(), ["intake"]);
    c.check_replay();
}

#[test]
fn cosigner_must_also_approve() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.ok(
        "li",
        Command::AddCosigner {
            task: t,
            user: "liu".into(),
            order: SignOrder::With,
        },
    );
    let r = c.err(
        "li",
        Command::AddCosigner {
            task: t,
            user: "liu".into(),
            order: SignOrder::With,
        },
    );
    assert_eq!(r.code(), "already_cosigner");
    c.attach("funds");
    c.ok(
        "li",
        Command::Approve {
            task: t,
            comment: None,
        },
    );
    assert_eq!(c.open(), ["intake"], "the co-signer's task is still open");
    let cos = c
        .state
        .open_tasks()
        .find(|t| t.spec.kind == TaskKind::Cosign)
        .map(|t| t.spec.task)
        .expect("cosign task");
    assert_eq!(
        c.err(
            "li",
            Command::Approve {
                task: cos,
                comment: None
            }
        )
        .code(),
        "not_assigned"
    );
    c.ok(
        "liu",
        Command::Approve {
            task: cos,
            comment: None,
        },
    );
    assert_eq!(c.open(), ["pre"]);

    // A co-signer's reject decides the step (intake has no 驳回 target: final rejection).
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.ok(
        "li",
        Command::AddCosigner {
            task: t,
            user: "liu".into(),
            order: SignOrder::With,
        },
    );
    let cos = TaskId(t.0 + 1);
    c.ok(
        "liu",
        Command::Reject {
            task: cos,
            to: None,
            reason: None,
        },
    );
    assert_eq!(c.state.outcome, Some(Outcome::Rejected));
    c.check_replay();
}

#[test]
fn conditional_approval_to_formal() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.attach("funds");
    let waive = |m: &[&str]| m.iter().copied().map(SmolStr::new).collect::<Vec<_>>();
    let r = c.err(
        "li",
        Command::ApproveConditional {
            task: t,
            waive: waive(&["plan", "land"]),
            limit: None,
            comment: None,
        },
    );
    assert_eq!(r.code(), "material_is_red_line");
    let r = c.err(
        "li",
        Command::ApproveConditional {
            task: t,
            waive: waive(&["feasibility"]),
            limit: None,
            comment: None,
        },
    );
    assert_eq!(r.code(), "material_not_waivable");
    let r = c.err(
        "li",
        Command::ApproveConditional {
            task: t,
            waive: waive(&["plan"]),
            limit: Some(shenpi_engine::model::RawLimit::Text("15wd".into())),
            comment: None,
        },
    );
    assert_eq!(r.code(), "limit_exceeds_rule");
    c.ok(
        "li",
        Command::ApproveConditional {
            task: t,
            waive: waive(&["plan", "eia"]),
            limit: Some(shenpi_engine::model::RawLimit::Days(8)),
            comment: None,
        },
    );
    assert!(c.has("pre_approved"));
    assert_eq!(c.state.promises.len(), 2);
    assert_eq!(c.open(), ["pre"], "the case moves on");
    // Only the applicant supplies.
    let r = c.err(
        "li",
        Command::SupplyMaterial {
            material: "plan".into(),
            files: Vec::new(),
        },
    );
    assert_eq!(r.code(), "not_authorised");
    let r = c.err(
        "zhang",
        Command::SupplyMaterial {
            material: "land".into(),
            files: Vec::new(),
        },
    );
    assert_eq!(r.code(), "material_not_expected");
    c.ok(
        "zhang",
        Command::SupplyMaterial {
            material: "plan".into(),
            files: Vec::new(),
        },
    );
    let v = c.task("verify.plan");
    let r = c.err(
        "li",
        Command::Approve {
            task: v,
            comment: None,
        },
    );
    assert_eq!(r.code(), "wrong_task_kind");
    // Refused: the promise waits for the material again.
    c.ok(
        "li",
        Command::VerifyMaterial {
            task: v,
            accepted: false,
            reason: Some("不完整".into()),
        },
    );
    assert_eq!(
        c.state.promises.first().map(|p| p.status),
        Some(PromiseStatus::Open)
    );
    c.ok(
        "zhang",
        Command::SupplyMaterial {
            material: "plan".into(),
            files: Vec::new(),
        },
    );
    let v = c.task("verify.plan");
    c.ok(
        "li2",
        Command::VerifyMaterial {
            task: v,
            accepted: true,
            reason: None,
        },
    );
    assert!(!c.has("formal_approval"), "eia is still promised");
    // The path reaches its end first; the instance waits for the last promise.
    c.approve("wang", "pre");
    for (who, l) in [("ra", "review.a"), ("rb", "review.b"), ("rc", "review.c")] {
        c.approve(who, l);
    }
    c.approve("chief", "final");
    assert!(c.has("end_reached"));
    assert_eq!(c.state.status, Status::Running);
    c.ok(
        "zhang",
        Command::SupplyMaterial {
            material: "eia".into(),
            files: Vec::new(),
        },
    );
    let v = c.task("verify.eia");
    c.ok(
        "li",
        Command::VerifyMaterial {
            task: v,
            accepted: true,
            reason: None,
        },
    );
    assert_eq!(c.count("formal_approval"), 1);
    assert_eq!(c.state.outcome, Some(Outcome::Approved));
    c.check_replay();
}

#[test]
fn promise_breach_credit_mark_and_revoke() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.attach("funds");
    c.ok(
        "li",
        Command::ApproveConditional {
            task: t,
            waive: vec!["eia".into()],
            limit: None,
            comment: None,
        },
    );
    // 10 working days from Mon 03-02: due end of Mon 03-16.
    c.at("2026-03-16T12:00:00+08:00");
    assert!(!c.has("promise_breached"));
    assert!(
        c.log.iter().any(|e| matches!(
            e,
            Event::Warning {
                target: ClockRef::Promise(_),
                colour: Colour::Yellow
            }
        )),
        "promise due soon"
    );
    c.at("2026-03-17T09:00:00+08:00");
    assert!(c.has("promise_breached"));
    assert!(c.has("credit_marked"));
    assert_eq!(c.state.outcome, Some(Outcome::Revoked));
    assert!(c.state.open_tasks().next().is_none());
    assert!(c.state.timers.is_empty());
    assert_eq!(
        c.err(
            "li",
            Command::Comment {
                task: None,
                text: "x".into()
            }
        )
        .code(),
        "instance_ended"
    );
    c.check_replay();
}

#[test]
fn return_for_supplement_stops_and_resumes_clocks() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    // Tue 03-03: one working day used. Returned until Mon 03-09.
    c.at("2026-03-03T10:00:00+08:00");
    c.ok(
        "li",
        Command::Return {
            task: t,
            reason: "补正材料".into(),
            materials: vec!["plan".into()],
        },
    );
    assert_eq!(
        c.err(
            "li",
            Command::Approve {
                task: t,
                comment: None
            }
        )
        .code(),
        "with_applicant"
    );
    c.at("2026-03-09T10:00:00+08:00");
    assert!(!task_warned(&c), "no time passes while with the applicant");
    assert_eq!(
        c.err("li", Command::Resume { task: None }).code(),
        "not_authorised"
    );
    // Supplying the last requested material answers the 补正.
    c.ok(
        "zhang",
        Command::SupplyMaterial {
            material: "plan".into(),
            files: Vec::new(),
        },
    );
    assert!(c.has("applicant_resubmitted"));
    let clock = c
        .state
        .task(t)
        .and_then(|t| t.spec.clock.clone())
        .expect("clock");
    assert_eq!(clock.used, 1, "the day used before is kept");
    // 3 days left from Mon 03-09 (not counted): due end of Thu 03-12.
    let due = clock.due(&c.cal).expect("calendar").expect("running");
    assert_eq!(due, ts("2026-03-13T00:00:00+08:00"));
    c.check_replay();
}

#[test]
fn suspend_resume_and_extend() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    assert_eq!(
        c.err(
            "li",
            Command::Suspend {
                task: t,
                reason: " ".into()
            }
        )
        .code(),
        "reason_required"
    );
    c.ok(
        "li",
        Command::Suspend {
            task: t,
            reason: "专家评审".into(),
        },
    );
    assert_eq!(
        c.err(
            "li",
            Command::Approve {
                task: t,
                comment: None
            }
        )
        .code(),
        "suspended"
    );
    c.at("2026-03-20T10:00:00+08:00");
    assert!(!task_warned(&c), "the suspended clock does not run");
    c.ok("li", Command::Resume { task: Some(t) });
    assert_eq!(
        c.err("li", Command::Resume { task: Some(t) }).code(),
        "not_suspended"
    );
    let clock = c
        .state
        .task(t)
        .and_then(|t| t.spec.clock.clone())
        .expect("clock");
    assert_eq!(clock.used, 0, "suspended on the day it opened");
    // Extension: only the chief, with a reason, in the limit's unit.
    let ext = |limit: shenpi_engine::model::RawLimit| Command::Extend {
        task: t,
        limit,
        reason: "情况复杂".into(),
        step: false,
    };
    assert_eq!(
        c.err("li", ext(shenpi_engine::model::RawLimit::Days(2)))
            .code(),
        "not_authorised"
    );
    assert_eq!(
        c.err(
            "chief",
            ext(shenpi_engine::model::RawLimit::Text("8h".into()))
        )
        .code(),
        "bad_limit"
    );
    c.ok("chief", ext(shenpi_engine::model::RawLimit::Days(2)));
    let clock = c
        .state
        .task(t)
        .and_then(|t| t.spec.clock.clone())
        .expect("clock");
    assert_eq!(clock.total(), 6);
    // 6 working days from Fri 03-20: due end of Mon 03-30.
    assert_eq!(
        clock.due(&c.cal).expect("calendar"),
        Some(ts("2026-03-31T00:00:00+08:00"))
    );
    c.check_replay();
}

#[test]
fn overdue_escalation_ladder() {
    let mut c = Case::started(ALL);
    // intake 4wd from Mon 03-02: due end of Fri 03-06. Rungs: 0wd, +1wd (Mon), +2wd (Tue).
    c.at("2026-03-06T23:00:00+08:00");
    assert!(c.log.iter().any(|e| matches!(
        e,
        Event::Warning {
            colour: Colour::Yellow,
            ..
        }
    )));
    assert!(!c.log.iter().any(|e| matches!(
        e,
        Event::Warning {
            colour: Colour::Red,
            ..
        }
    )));
    c.at("2026-03-07T10:00:00+08:00");
    assert!(c.log.iter().any(|e| matches!(
        e,
        Event::Warning {
            target: ClockRef::Task(_),
            colour: Colour::Red
        }
    )));
    let v = view(&c.def, &c.cal, &c.state, c.now);
    let intake = v
        .tasks
        .iter()
        .find(|t| t.label == "intake")
        .expect("intake in view");
    assert_eq!(intake.colour, Colour::Red);
    assert_eq!(
        intake.days_left,
        Some(0),
        "a Saturday after the deadline loses no working day"
    );
    assert!(!c.has("supervised"));
    c.at("2026-03-11T10:00:00+08:00");
    assert!(c.has("supervised"), "挂牌督办 on the third rung");
    assert_eq!(c.state.supervised.len(), 1);
    let v = view(&c.def, &c.cal, &c.state, c.now);
    let intake = v
        .tasks
        .iter()
        .find(|t| t.label == "intake")
        .expect("intake in view");
    assert_eq!(intake.days_left, Some(-3));
    assert!(intake.supervised);
    let escalations = c
        .log
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::NotificationRequested {
                    on: Some(shenpi_engine::model::NotificationEvent::Escalation),
                    ..
                }
            )
        })
        .count();
    assert_eq!(escalations, 2, "remind and supervisor rungs");
    c.check_replay();
}

#[test]
fn timers_fire_once() {
    let mut c = Case::started(ALL);
    let first = c
        .state
        .timers
        .iter()
        .min_by_key(|t| t.due)
        .map(|t| (t.id, t.due))
        .expect("a timer");
    let r = c.err("system", Command::TimerFired { timer: first.0 });
    assert_eq!(r.code(), "timer_not_due");
    c.now = first.1;
    assert!(
        !c.ok("system", Command::TimerFired { timer: first.0 })
            .is_empty()
    );
    assert!(
        c.ok("system", Command::TimerFired { timer: first.0 })
            .is_empty(),
        "second firing is a no-op"
    );
}

#[test]
fn withdraw_urge_comment_cc() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.ok(
        "zhang",
        Command::Urge {
            task: t,
            text: Some("请尽快".into()),
        },
    );
    assert!(c.has("urged"));
    c.ok(
        "li",
        Command::Comment {
            task: Some(t),
            text: "已阅".into(),
        },
    );
    assert_eq!(
        c.err(
            "ra",
            Command::Comment {
                task: Some(t),
                text: "x".into()
            }
        )
        .code(),
        "not_assigned"
    );
    c.ok(
        "li",
        Command::Cc {
            task: Some(t),
            to: vec!["boss".into()],
            text: None,
        },
    );
    assert!(c.log.iter().any(
        |e| matches!(e, Event::NotificationRequested { recipients, .. }
        if recipients.contains(&Party::User("boss".into())))
    ));
    assert_eq!(
        c.err("li", Command::Withdraw { reason: None }).code(),
        "not_authorised"
    );
    c.ok(
        "zhang",
        Command::Withdraw {
            reason: Some("项目调整".into()),
        },
    );
    assert_eq!(c.state.outcome, Some(Outcome::Withdrawn));
    assert_eq!(
        c.state.task(t).map(|t| t.status),
        Some(TaskStatus::Cancelled)
    );
    assert!(c.state.timers.is_empty());
    c.check_replay();
}

#[test]
fn colour_thresholds() {
    let cal = calendar();
    // 4 working days from Mon 03-02 09:00: yellow from day 3 (Thu), red after Fri.
    let clock = Clock::new(ts("2026-03-02T09:00:00+08:00"), Limit::working_days(4));
    let at = |t: &str| colour(&clock, &cal, ts(t), 750).expect("calendar");
    assert_eq!(at("2026-03-02T18:00:00+08:00").colour, Colour::Green);
    assert_eq!(at("2026-03-02T18:00:00+08:00").days_left, 4);
    assert_eq!(at("2026-03-04T18:00:00+08:00").colour, Colour::Green);
    assert_eq!(at("2026-03-05T08:00:00+08:00").colour, Colour::Yellow);
    assert_eq!(at("2026-03-06T23:59:00+08:00").colour, Colour::Yellow);
    assert_eq!(at("2026-03-06T23:59:00+08:00").days_left, 0);
    assert_eq!(at("2026-03-07T00:00:00+08:00").colour, Colour::Red);
    assert_eq!(at("2026-03-09T10:00:00+08:00").days_left, -1);
    assert!(!at("2026-03-02T18:00:00+08:00").provisional);
    // In a provisional year (after the last official one): computed, and marked.
    let later = Clock::new(ts("2031-02-10T09:00:00+08:00"), Limit::working_days(4));
    let r = colour(&later, &cal, ts("2031-02-10T10:00:00+08:00"), 750).expect("provisional");
    assert!(r.provisional);
    // Mon 02-10 + 4 working days = Fri 02-14, 2031 (春节 2031 is in January).
    assert_eq!(r.due, Some(ts("2031-02-15T00:00:00+08:00")));
    // A limit that ends on the last official day is not provisional, one day later it is.
    let edge = Clock::new(ts("2026-12-30T09:00:00+08:00"), Limit::working_days(1));
    assert!(
        !colour(&edge, &cal, ts("2026-12-30T10:00:00+08:00"), 750)
            .expect("edge")
            .provisional
    );
    let edge = Clock::new(ts("2026-12-30T09:00:00+08:00"), Limit::working_days(2));
    assert!(
        colour(&edge, &cal, ts("2026-12-30T10:00:00+08:00"), 750)
            .expect("edge")
            .provisional
    );
    // Past the provisional years: an error, not a guess.
    let far = Clock::new(ts("2043-03-02T09:00:00+08:00"), Limit::working_days(4));
    assert!(colour(&far, &cal, ts("2043-03-03T09:00:00+08:00"), 750).is_err());
}

#[test]
fn outside_calendar_is_a_rejection() {
    let mut c = Case::new(ALL);
    c.now = ts("2043-03-02T09:00:00+08:00");
    let r = c.err(
        "zhang",
        Command::Start {
            project: serde_json::json!({"tier": "一般", "service_officer": "wang"}),
            channel: None,
        },
    );
    assert_eq!(r.code(), "outside_calendar");
    // The refusal names the limit that could not be computed, in Chinese.
    let text = r.to_string();
    // (Entering stage s1 arms its element deadline first: funds within 5wd.)
    assert!(
        text.starts_with("阶段「s1」的要素「funds」的时限（5wd）无法计算：2043-03-02"),
        "{text}"
    );
    assert!(
        text.contains("不在工作日日历 `cn-mainland` 的范围内"),
        "{text}"
    );
}

const SCENARIO: &str = r#"
workflow: cases
start: 2026-03-02T09:00:00+08:00
users:
  zhang: { roles: [applicant] }
  li: { department: a, roles: [clerk] }
  ra: { department: a, roles: [ra] }
  rb: { department: b, roles: [rb] }
  rc: { department: c, roles: [rc] }
  chief: { department: a, roles: [chief] }
  fu: { department: b }
project: { tier: 重点, service_officer: wang }
steps:
  - { at: 2026-03-02T10:00:00+08:00, as: fu, do: attach_element, element: funds, fields: { amount: 5 } }
  - { at: 2026-03-02T11:00:00+08:00, as: ra, do: approve, task: intake, expect_error: not_assigned }
  - { at: 2026-03-02T11:00:00+08:00, as: li, do: approve_conditional, task: intake, waive: [eia] }
  - { at: 2026-03-03T10:00:00+08:00, as: ra, do: approve, task: review.a }
  - { at: 2026-03-03T10:00:00+08:00, as: rb, do: approve, task: review.b }
  - { at: 2026-03-03T10:00:00+08:00, as: rc, do: approve, task: review.c }
  - { at: 2026-03-04T10:00:00+08:00, as: chief, do: approve, task: final }
  - { at: 2026-03-05T10:00:00+08:00, as: zhang, do: supply_material, material: eia }
expect:
  outcome: running
  open_tasks: [verify]
  events: [channel_chosen, pre_approved, join_fired, end_reached]
  absent_events: [promise_breached]
  channel: green
"#;

#[test]
fn scenario_runs_and_checks() {
    let def = definition(ALL);
    let cal = calendar();
    let sc = Scenario::from_yaml(SCENARIO).expect("scenario reads");
    let out = run(&def, &cal, &sc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.state.outcome, "running");
    let json = serde_json::to_value(&out).expect("serializes");
    assert!(json["events"][0]["at"].is_string());
    assert_eq!(json["events"][0]["type"], "instance_started");

    // Finishing the verification approves it.
    let more = SCENARIO.replace(
        "expect:\n  outcome: running\n  open_tasks: [verify]",
        "  - { at: 2026-03-06T10:00:00+08:00, as: li, do: verify_material, material: eia, accepted: true }\nexpect:\n  outcome: approved\n  open_tasks: []",
    );
    let sc = Scenario::from_yaml(&more).expect("scenario reads");
    run(&def, &cal, &sc).unwrap_or_else(|e| panic!("{e}"));

    // A wrong expectation is reported.
    let wrong = SCENARIO.replace("outcome: running", "outcome: approved");
    let sc = Scenario::from_yaml(&wrong).expect("scenario reads");
    let e = run(&def, &cal, &sc).expect_err("mismatch");
    assert!(matches!(e, SimError::Expectation { .. }), "{e}");
    assert!(!e.is_input_error());

    // Breach by `until`.
    let late = SCENARIO
        .replace("  - { at: 2026-03-05T10:00:00+08:00, as: zhang, do: supply_material, material: eia }\n", "")
        .replace("outcome: running\n  open_tasks: [verify]", "outcome: revoked\n  open_tasks: []\n  until: 2026-04-01T00:00:00+08:00")
        .replace("absent_events: [promise_breached]", "absent_events: []");
    let sc = Scenario::from_yaml(&late).expect("scenario reads");
    run(&def, &cal, &sc).unwrap_or_else(|e| panic!("{e}"));

    // Unknown users and commands are input errors.
    let bad = SCENARIO.replace("as: chief, do: approve", "as: nobody, do: approve");
    let sc = Scenario::from_yaml(&bad).expect("scenario reads");
    assert!(
        run(&def, &cal, &sc)
            .expect_err("unknown user")
            .is_input_error()
    );
    let bad = SCENARIO.replace("as: chief, do: approve", "as: chief, do: approve_all");
    let sc = Scenario::from_yaml(&bad).expect("scenario reads");
    assert!(
        run(&def, &cal, &sc)
            .expect_err("unknown command")
            .is_input_error()
    );
    assert!(Scenario::from_yaml("workflow: x\nstart: yesterday\n").is_err());
}

/// The armed `due` timer of a promise, if any.
fn promise_due_timer(c: &Case, promise: u32) -> Option<Timestamp> {
    use shenpi_engine::runtime::TimerKind;
    use shenpi_engine::runtime::event::PromiseId;
    c.state
        .timers
        .iter()
        .find(|t| {
            t.kind
                == TimerKind::Due {
                    target: ClockRef::Promise(PromiseId(promise)),
                }
        })
        .map(|t| t.due)
}

/// A material supplied before the deadline but refused at verification after it: the deadline
/// timer fired while the material was being checked (no breach then), so the refusal breaches at
/// once. Without that the promise stayed open and red for ever and never breached.
#[test]
fn promise_refused_after_its_deadline_breaches_at_once() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.attach("funds");
    c.ok(
        "li",
        Command::ApproveConditional {
            task: t,
            waive: vec!["eia".into()],
            limit: None,
            comment: None,
        },
    );
    // 10 working days from Mon 03-02: due at the end of Mon 03-16.
    assert_eq!(
        promise_due_timer(&c, 0),
        Some(ts("2026-03-17T00:00:00+08:00"))
    );
    c.at("2026-03-13T10:00:00+08:00");
    c.ok(
        "zhang",
        Command::SupplyMaterial {
            material: "eia".into(),
            files: Vec::new(),
        },
    );
    c.at("2026-03-18T10:00:00+08:00");
    assert!(
        !c.has("promise_breached"),
        "supplied in time: no breach yet"
    );
    assert_eq!(promise_due_timer(&c, 0), None, "the deadline timer fired");
    let v = c.task("verify.eia");
    let ev = c.ok(
        "li",
        Command::VerifyMaterial {
            task: v,
            accepted: false,
            reason: Some("内容不全".into()),
        },
    );
    let kinds: Vec<&str> = ev.iter().map(|e| e.kind()).collect();
    let pos = |k: &str| kinds.iter().position(|x| *x == k);
    assert!(
        pos("material_verified") < pos("promise_breached"),
        "refused, then breached at once: {kinds:?}"
    );
    assert!(c.has("credit_marked"), "on_breach applied");
    assert_eq!(c.state.outcome, Some(Outcome::Revoked), "on_breach: revoke");
    assert!(c.state.timers.is_empty());
    c.check_replay();
}

/// Refused before the deadline: the promise waits again with its deadline timer armed, and
/// breaches when it runs out.
#[test]
fn promise_refused_before_its_deadline_keeps_its_timer() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.attach("funds");
    c.ok(
        "li",
        Command::ApproveConditional {
            task: t,
            waive: vec!["eia".into()],
            limit: None,
            comment: None,
        },
    );
    c.at("2026-03-05T10:00:00+08:00");
    c.ok(
        "zhang",
        Command::SupplyMaterial {
            material: "eia".into(),
            files: Vec::new(),
        },
    );
    let v = c.task("verify.eia");
    c.ok(
        "li",
        Command::VerifyMaterial {
            task: v,
            accepted: false,
            reason: Some("内容不全".into()),
        },
    );
    assert_eq!(
        c.state.promises.first().map(|p| p.status),
        Some(PromiseStatus::Open)
    );
    assert_eq!(
        promise_due_timer(&c, 0),
        Some(ts("2026-03-17T00:00:00+08:00")),
        "the deadline is unchanged and armed"
    );
    assert!(!c.has("promise_breached"));
    c.at("2026-03-17T09:00:00+08:00");
    assert_eq!(c.count("promise_breached"), 1);
    assert_eq!(c.state.outcome, Some(Outcome::Revoked));
    c.check_replay();
}

/// 驳回 closes the abandoned review round, not the applicant's commitments: a verification task
/// opened before it stays open and can still be decided.
#[test]
fn reject_back_keeps_verification_tasks() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.attach("funds");
    c.ok(
        "li",
        Command::ApproveConditional {
            task: t,
            waive: vec!["eia".into()],
            limit: None,
            comment: None,
        },
    );
    c.approve("wang", "pre");
    c.ok(
        "zhang",
        Command::SupplyMaterial {
            material: "eia".into(),
            files: Vec::new(),
        },
    );
    let a = c.task("review.a");
    c.ok(
        "ra",
        Command::AddCosigner {
            task: a,
            user: "wu".into(),
            order: SignOrder::With,
        },
    );
    let b = c.task("review.b");
    c.ok(
        "rb",
        Command::Reject {
            task: b,
            to: Some("intake".into()),
            reason: Some("材料不全".into()),
        },
    );
    assert_eq!(
        c.open(),
        ["intake", "verify.eia"],
        "branches and co-signers of the abandoned round close; the verification stays"
    );
    assert_eq!(
        c.state.promises.first().map(|p| p.status),
        Some(PromiseStatus::Supplied)
    );
    let v = c.task("verify.eia");
    c.ok(
        "li",
        Command::VerifyMaterial {
            task: v,
            accepted: true,
            reason: None,
        },
    );
    assert_eq!(c.count("formal_approval"), 1);
    c.approve("li", "intake");
    c.approve("wang", "pre");
    for (who, l) in [("ra", "review.a"), ("rb", "review.b"), ("rc", "review.c")] {
        c.approve(who, l);
    }
    c.approve("chief", "final");
    assert_eq!(c.state.outcome, Some(Outcome::Approved));
    c.check_replay();
}

/// 催办: the applicant side, a department's supervisor or leader, and the task's own department
/// may urge; anyone else may not.
#[test]
fn urge_is_authorised() {
    let mut c = Case::started(ALL);
    let t = c.task("intake"); // role clerk, department a
    for who in ["zhang", "wang", "chief", "li2", "energy"] {
        c.ok(
            who,
            Command::Urge {
                task: t,
                text: None,
            },
        );
    }
    assert_eq!(c.count("urged"), 5);
    for who in ["rb", "liu"] {
        let r = c.err(
            who,
            Command::Urge {
                task: t,
                text: None,
            },
        );
        assert_eq!(r.code(), "not_authorised", "{who}");
    }
    // A branch task of department b: its own department may, department a's reviewer may not.
    c.reach_review();
    let b = c.task("review.b");
    c.ok(
        "funds",
        Command::Urge {
            task: b,
            text: None,
        },
    );
    let r = c.err(
        "ra",
        Command::Urge {
            task: b,
            text: None,
        },
    );
    assert_eq!(r.code(), "not_authorised");
    c.check_replay();
}

/// Times in JSON (events, states, views) read as approvers read them, at +08:00, and instants
/// written in UTC by earlier versions still read as the same instant.
#[test]
fn times_serialise_at_china_offset() {
    let c = Case::started(ALL);
    let started = c.log.first().expect("instance_started");
    let json = serde_json::to_string(started).expect("serializes");
    assert!(
        json.contains(r#""at":"2026-03-02T09:00:00+08:00""#),
        "{json}"
    );
    let utc = json.replace("2026-03-02T09:00:00+08:00", "2026-03-02T01:00:00Z");
    let back: Event = serde_json::from_str(&utc).expect("UTC still reads");
    assert_eq!(&back, started);
    let v = view(&c.def, &c.cal, &c.state, c.now);
    let vj = serde_json::to_value(&v).expect("view serializes");
    let due = vj["tasks"][0]["clock"]["due"].as_str().unwrap_or_default();
    // intake: 4wd from Mon 03-02, due when Fri 03-06 ends.
    assert_eq!(due, "2026-03-07T00:00:00+08:00");
    let sj = serde_json::to_string(&c.state).expect("state serializes");
    assert!(!sj.contains("Z\""), "no UTC instants in the state: {sj}");
    c.check_replay();
}

// --- The office operations: 拿回, 委派, 前/后加签 and 减签, 抄送 read marks -----------------

/// How many times each task was decided in the log.
fn decided_once(c: &Case) {
    let mut seen = std::collections::HashMap::new();
    for e in &c.log {
        if let Event::TaskDecided { task, .. } = e {
            *seen.entry(*task).or_insert(0) += 1;
        }
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a task decided twice: {seen:?}"
    );
}

/// The open task of this label addressed to `who` (a stand-in after 拿回 is the decider's).
fn addressed(c: &Case, label: &str) -> Vec<Party> {
    let t = c.task(label);
    let task = c.state.task(t).expect("task");
    shenpi_engine::runtime::policy::addressees(task, &c.state.applicant)
}

#[test]
fn take_back_reopens_ones_own_approval_until_the_next_node_acts() {
    let mut c = Case::started(ALL);
    c.attach("funds");
    let first = c.task("intake");
    let opened_at = c
        .state
        .task(first)
        .and_then(|t| t.spec.clock.clone())
        .map(|k| k.opened_at);
    c.at("2026-03-03T10:00:00+08:00");
    c.approve("li", "intake");
    assert_eq!(c.open(), ["pre"]);
    // Someone else cannot take li's decision back.
    let r = c.err("li2", Command::TakeBack { task: first });
    assert_eq!(r.code(), "cannot_take_back");
    c.ok("li", Command::TakeBack { task: first });
    assert_eq!(c.open(), ["intake"], "the next node's task is withdrawn");
    let again = c.task("intake");
    assert_ne!(again, first, "a stand-in, not the decided task reopened");
    let t = c.state.task(again).expect("stand-in");
    assert_eq!(
        t.spec.assignment,
        Party::User("li".into()),
        "the task is li's again"
    );
    assert_eq!(
        t.spec.clock.as_ref().map(|k| k.opened_at),
        opened_at,
        "on the clock it had: taking back buys no time"
    );
    assert_eq!(
        c.state.task(first).and_then(|t| t.cancelled),
        Some(CancelReason::TakenBack)
    );
    assert!(
        c.state
            .tasks
            .iter()
            .any(|t| t.spec.label == "pre" && t.cancelled == Some(CancelReason::TakenBack))
    );
    assert_eq!(c.state.at.as_deref(), Some("intake"));
    // A second take-back of the same decision: it no longer stands.
    assert_eq!(
        c.err("li", Command::TakeBack { task: first }).code(),
        "cannot_take_back"
    );

    // Decided again; once the next node decided, it cannot be taken back.
    c.approve("li", "intake");
    c.approve("wang", "pre");
    assert_eq!(
        c.err("li", Command::TakeBack { task: again }),
        Rejection::CannotTakeBack {
            task: again,
            reason: shenpi_engine::runtime::rejection::TakeBackBlock::NextActed
        }
    );
    // wang's approval led into another stage: 驳回 is the way back from there.
    let pre = c
        .state
        .tasks
        .iter()
        .rev()
        .find(|t| t.spec.label == "pre")
        .map(|t| t.spec.task)
        .expect("pre");
    assert_eq!(
        c.err("wang", Command::TakeBack { task: pre }),
        Rejection::CannotTakeBack {
            task: pre,
            reason: shenpi_engine::runtime::rejection::TakeBackBlock::LeftStage
        }
    );
    decided_once(&c);
    c.check_replay();
}

#[test]
fn take_back_a_vote_while_the_step_is_open_and_after_it_fired_the_join() {
    // 票签 2/3 of 3: two approvals fire the join.
    let mut c = Case::started("{ policy: vote, share: 2/3 }");
    c.reach_review();
    let a = c.task("review.a");
    c.approve("ra", "review.a");
    c.ok("ra", Command::TakeBack { task: a });
    assert_eq!(c.open(), ["review.a", "review.b", "review.c"]);
    c.approve("ra", "review.a");
    let b = c.task("review.b");
    c.approve("rb", "review.b");
    assert_eq!(c.open(), ["final"], "the second vote fired the join");
    // rb's vote fired it; nobody acted on `final`: rb takes it back, the step opens again with
    // ra's vote standing and c's branch back.
    c.ok("rb", Command::TakeBack { task: b });
    assert_eq!(c.open(), ["review.b", "review.c"]);
    assert_eq!(c.state.at.as_deref(), Some("review"));
    let step = c.state.steps.last().expect("step");
    assert_eq!(step.status, shenpi_engine::runtime::state::StepStatus::Open);
    assert_eq!(step.tasks.len(), 3, "the round keeps three branches");
    assert!(
        c.state.timers.iter().any(|t| t.kind
            == shenpi_engine::runtime::event::TimerKind::Due {
                target: ClockRef::Step(step.id)
            }),
        "the step's clock runs again"
    );
    // c's vote now completes the join once more.
    c.approve("rc", "review.c");
    assert_eq!(c.open(), ["final"]);
    assert_eq!(
        c.count("join_fired"),
        2,
        "one per time the result was reached"
    );
    // After the next node acted, nothing is taken back.
    c.approve("chief", "final");
    decided_once(&c);
    c.check_replay();
}

#[test]
fn consult_goes_to_the_delegate_and_comes_back_to_the_delegator() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    for (to, code) in [
        ("li", "ineligible_user"),
        ("zhang", "ineligible_user"),
        ("wang", "ineligible_user"),
    ] {
        assert_eq!(
            c.err(
                "li",
                Command::Consult {
                    task: t,
                    to: to.into(),
                    text: None
                }
            )
            .code(),
            code,
            "{to}"
        );
    }
    c.ok(
        "li",
        Command::Consult {
            task: t,
            to: "liu".into(),
            text: Some("请看环评".into()),
        },
    );
    assert_eq!(addressed(&c, "intake"), vec![Party::User("liu".into())]);
    assert_eq!(
        c.err(
            "li",
            Command::Approve {
                task: t,
                comment: None
            }
        )
        .code(),
        "consulting"
    );
    assert_eq!(
        c.err(
            "liu",
            Command::Approve {
                task: t,
                comment: None
            }
        )
        .code(),
        "wrong_task_kind"
    );
    assert_eq!(
        c.err(
            "li2",
            Command::AnswerConsult {
                task: t,
                opinion: "x".into()
            }
        )
        .code(),
        "not_assigned"
    );
    c.ok(
        "liu",
        Command::AnswerConsult {
            task: t,
            opinion: "环评无问题".into(),
        },
    );
    assert_eq!(addressed(&c, "intake"), vec![Party::Role("clerk".into())]);
    assert_eq!(
        c.err(
            "li",
            Command::AnswerConsult {
                task: t,
                opinion: "x".into()
            }
        )
        .code(),
        "not_consulted"
    );
    c.attach("funds");
    c.approve("li", "intake");
    assert_eq!(c.open(), ["pre"]);

    // On a parallel branch, likewise.
    let mut c = Case::started("{ policy: vote, share: 2/3 }");
    c.reach_review();
    let a = c.task("review.a");
    c.ok(
        "ra",
        Command::Consult {
            task: a,
            to: "liu".into(),
            text: None,
        },
    );
    assert_eq!(addressed(&c, "review.a"), vec![Party::User("liu".into())]);
    c.ok(
        "liu",
        Command::AnswerConsult {
            task: a,
            opinion: "同意".into(),
        },
    );
    c.approve("ra", "review.a");
    c.check_replay();
}

#[test]
fn signers_before_and_after_the_holder_and_removing_one() {
    // 前加签: the holder waits for the signer.
    let mut c = Case::started(ALL);
    c.attach("funds");
    let t = c.task("intake");
    let add = |user: &str, order| Command::AddCosigner {
        task: t,
        user: user.into(),
        order,
    };
    c.ok("li", add("liu", SignOrder::Before));
    assert!(
        addressed(&c, "intake").is_empty(),
        "the holder's task waits, out of every inbox"
    );
    assert_eq!(
        c.err(
            "li",
            Command::Approve {
                task: t,
                comment: None
            }
        )
        .code(),
        "awaiting_signer"
    );
    let signer = TaskId(t.0 + 1);
    c.ok(
        "liu",
        Command::Approve {
            task: signer,
            comment: None,
        },
    );
    assert_eq!(addressed(&c, "intake"), vec![Party::Role("clerk".into())]);
    c.approve("li", "intake");
    assert_eq!(c.open(), ["pre"]);

    // 后加签: the signer's task opens when the holder approves, and the flow waits for it.
    let mut c = Case::started(ALL);
    c.attach("funds");
    let t = c.task("intake");
    c.ok(
        "li",
        Command::AddCosigner {
            task: t,
            user: "liu".into(),
            order: SignOrder::After,
        },
    );
    assert_eq!(c.open(), ["intake"], "no task of the signer yet");
    assert_eq!(
        c.err(
            "li",
            Command::AddCosigner {
                task: t,
                user: "liu".into(),
                order: SignOrder::With
            }
        )
        .code(),
        "already_cosigner"
    );
    c.approve("li", "intake");
    assert_eq!(c.open(), ["intake"], "the signer's task, after the holder");
    let signer = c
        .state
        .open_tasks()
        .next()
        .map(|t| t.spec.task)
        .expect("signer");
    c.ok(
        "liu",
        Command::Approve {
            task: signer,
            comment: None,
        },
    );
    assert_eq!(c.open(), ["pre"]);

    // 减签 of a signer after the holder, by the holder who approved: the flow goes on.
    let mut c = Case::started(ALL);
    c.attach("funds");
    let t = c.task("intake");
    c.ok(
        "li",
        Command::AddCosigner {
            task: t,
            user: "liu".into(),
            order: SignOrder::After,
        },
    );
    c.approve("li", "intake");
    assert_eq!(
        c.err(
            "li",
            Command::RemoveCosigner {
                task: t,
                user: "nobody".into()
            }
        )
        .code(),
        "not_a_signer"
    );
    c.ok(
        "li",
        Command::RemoveCosigner {
            task: t,
            user: "liu".into(),
        },
    );
    assert_eq!(c.open(), ["pre"]);

    // 减签 of a signer beside the holder before anyone decided; one who decided stays.
    let mut c = Case::started(ALL);
    c.attach("funds");
    let t = c.task("intake");
    c.ok(
        "li",
        Command::AddCosigner {
            task: t,
            user: "liu".into(),
            order: SignOrder::With,
        },
    );
    c.ok(
        "li",
        Command::AddCosigner {
            task: t,
            user: "wu".into(),
            order: SignOrder::With,
        },
    );
    let wu = TaskId(t.0 + 2);
    c.ok(
        "wu",
        Command::Approve {
            task: wu,
            comment: None,
        },
    );
    assert_eq!(
        c.err(
            "li",
            Command::RemoveCosigner {
                task: t,
                user: "wu".into()
            }
        )
        .code(),
        "signer_decided"
    );
    c.ok(
        "li",
        Command::RemoveCosigner {
            task: t,
            user: "liu".into(),
        },
    );
    assert_eq!(
        c.state.task(TaskId(t.0 + 1)).and_then(|t| t.cancelled),
        Some(CancelReason::SignerRemoved)
    );
    c.approve("li", "intake");
    assert_eq!(c.open(), ["pre"]);

    // On a 票签 branch: a signer before the department's reviewer.
    let mut c = Case::started("{ policy: vote, share: 2/3 }");
    c.reach_review();
    let a = c.task("review.a");
    c.ok(
        "ra",
        Command::AddCosigner {
            task: a,
            user: "liu".into(),
            order: SignOrder::Before,
        },
    );
    assert_eq!(
        c.err(
            "ra",
            Command::Approve {
                task: a,
                comment: None
            }
        )
        .code(),
        "awaiting_signer"
    );
    let signer = c
        .state
        .open_tasks()
        .find(|t| t.spec.kind == TaskKind::Cosign)
        .map(|t| t.spec.task)
        .expect("signer");
    c.ok(
        "liu",
        Command::Approve {
            task: signer,
            comment: None,
        },
    );
    c.approve("ra", "review.a");
    c.approve("rb", "review.b");
    assert_eq!(c.open(), ["final"]);
    decided_once(&c);
    c.check_replay();
}

#[test]
fn copies_are_marked_read_by_their_recipients() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.ok(
        "li",
        Command::Cc {
            task: Some(t),
            to: vec!["chief".into(), "rb".into()],
            text: Some("请阅".into()),
        },
    );
    assert_eq!(c.state.copies.len(), 1);
    assert!(c.state.copies[0].read_by.is_empty());
    c.ok("chief", Command::ReadCopies);
    assert_eq!(c.state.copies[0].read_by, vec![SmolStr::new("chief")]);
    assert!(c.ok("chief", Command::ReadCopies).is_empty(), "read once");
    assert!(
        c.ok("ra", Command::ReadCopies).is_empty(),
        "not a recipient: nothing to mark"
    );
    c.ok("rb", Command::ReadCopies);
    assert_eq!(c.state.copies[0].read_by.len(), 2);
    c.check_replay();
}

#[test]
fn promises_breached_at_the_same_instant_are_all_breached_before_revocation() {
    let mut c = Case::started(ALL);
    let t = c.task("intake");
    c.attach("funds");
    c.ok(
        "li",
        Command::ApproveConditional {
            task: t,
            waive: vec!["plan".into(), "eia".into()],
            limit: None,
            comment: None,
        },
    );
    assert_eq!(c.state.promises.len(), 2, "one promise per waived material");
    // Both are due at the end of Mon 03-16 (10wd from Mon 03-02); `on_breach: [credit_mark,
    // revoke]`: each is breached and credit-marked, then the instance is revoked, once.
    c.at("2026-03-17T09:00:00+08:00");
    assert_eq!(c.count("promise_breached"), 2, "{:#?}", c.log);
    assert_eq!(c.count("credit_marked"), 2);
    assert_eq!(c.count("instance_ended"), 1);
    assert!(c.state.promises.iter().all(|p| p.breached));
    let marked: Vec<&str> = c.state.credit_marks.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(marked, ["plan", "eia"]);
    assert_eq!(c.state.outcome, Some(Outcome::Revoked));
    // The instance ended after both breaches: nothing of it comes after the end.
    let end = c.log.iter().position(|e| e.kind() == "instance_ended");
    let last_breach = c.log.iter().rposition(|e| e.kind() == "credit_marked");
    assert!(last_breach < end, "breaches are recorded before the end");
    assert!(c.state.timers.is_empty());
    c.check_replay();
}

/// The notifications of a parallel step's own clock (not its branches'): `(kind, recipients)`.
fn step_notices(
    c: &Case,
    node: &str,
) -> Vec<(shenpi_engine::model::NotificationEvent, Vec<Party>)> {
    c.log
        .iter()
        .filter_map(|e| match e {
            Event::NotificationRequested {
                on: Some(on),
                recipients,
                data,
                ..
            } if data.node.as_deref() == Some(node) && data.task.is_none() => {
                Some((*on, recipients.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_parallel_steps_own_limit_notifies_the_lead_and_the_open_branches() {
    use shenpi_engine::model::NotificationEvent as N;
    let mut c = Case::started(ALL);
    c.reach_review();
    // The step opened Mon 03-02 with 6wd: yellow once ceil(6 × 75%) = 5 working days are used,
    // from 00:00 Mon 03-09 (the weekend counts for nothing); due at the end of Tue 03-10. The
    // branches have 4wd each. Department b approves early.
    c.approve("rb", "review.b");
    c.at("2026-03-09T08:00:00+08:00");
    let lead = Party::Role("ra".into());
    let open_c = Party::Role("rc".into());
    assert_eq!(
        step_notices(&c, "review"),
        vec![(N::Yellow, vec![lead.clone(), open_c.clone()])],
        "yellow goes to the lead branch and the branches still open, not to b who decided"
    );
    c.approve("ra", "review.a");
    c.at("2026-03-10T23:00:00+08:00");
    assert_eq!(
        step_notices(&c, "review").len(),
        1,
        "not red before its last day ends"
    );
    c.at("2026-03-11T08:00:00+08:00");
    // Red: the lead (decided, but it answers for the step) and c, still open.
    assert_eq!(
        step_notices(&c, "review").last(),
        Some(&(N::Overdue, vec![lead, open_c]))
    );
    c.check_replay();
}
