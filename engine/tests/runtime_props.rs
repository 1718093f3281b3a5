//! Property tests of the runtime: random command sequences (by random and by rightful users, on
//! random tasks, with time jumping forward and timers firing) on a workflow with a 票签 parallel
//! step, 容缺, 驳回 across the parallel step, stages and elements. After every command:
//!
//! - nothing panics, and a rejected command changes nothing;
//! - a task is decided at most once; a parallel step's join fires at most once per opening (a
//!   拿回 of the approval that fired it opens it again);
//! - 拿回 never reopens a decision after the next node acted (only verification, a peer's vote
//!   in the same open step or a signer of the same task decided after it), and the task taken
//!   back stays closed, a stand-in taking its place;
//! - a pre-approval turns formal only when every promised material is verified;
//! - a commitment letter (承诺书) is signed at most once, by the applicant side, with the hash of
//!   the text it was issued with;
//! - after a 驳回 no task of the abandoned path opened before it stays open (no branch, co-signer
//!   or review task), while verification tasks of promises stay open (they belong to the
//!   pre-approval, not to the review round); no open task belongs to a closed step;
//! - a promise waiting for its material always has an armed deadline timer or has been
//!   breached (so one refused after its deadline breaches, and one never goes red for ever);
//!
//! and at the end, replaying the log rebuilds the state exactly (also through JSON), and the
//! instance can still reach an end when everyone does their part.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::{Definition, Party, compile};
use shenpi_engine::model::RawLimit;
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::runtime::event::{
    ClockRef, Decision, PreApprovalId, SignOrder, TaskKind, TimerKind,
};
use shenpi_engine::runtime::policy::applicant_parties;
use shenpi_engine::runtime::state::{PromiseStatus, Status, StepStatus, Task, TaskStatus};
use shenpi_engine::runtime::{
    Actor, Command, CommandEnvelope, Event, InstanceState, TaskId, TimerId, apply, decide, replay,
};
use shenpi_engine::validate::ValidateContext;
use smol_str::SmolStr;

mod common;
use common::mainland;

const WORKFLOW: &str = r#"
id: props
name: 性质测试
calendar: cn-mainland
start: intake
fields:
  - { id: tier, type: enum, values: [一般, 重点], required: true }
departments:
  - { id: a, supervisor: chief, leader: chief }
  - { id: b }
  - { id: c }
  - { id: d }
roles:
  - { id: applicant }
  - { id: clerk, department: a }
  - { id: ra, department: a }
  - { id: rb, department: b }
  - { id: rc, department: c }
  - { id: rd, department: d }
  - { id: chief, department: a }
materials:
  - { id: land, red_line: true }
  - { id: plan }
  - { id: eia }
elements:
  - { id: funds, category: funds, owner: b }
stages:
  - id: s1
    elements:
      - { element: funds, within: 3wd, may_carry: true, carry_limit: 5wd }
  - id: s2
    limit: 12wd
channels:
  - id: green
    when: 'project.tier == "重点"'
    limit_scale: 50%
warnings:
  yellow_at: 75%
  escalation:
    - { after: 0wd, action: remind }
    - { after: 1wd, action: supervise }
nodes:
  - id: intake
    type: task
    stage: s1
    assignee: { role: clerk }
    actions: [approve, reject, return, conditional, delegate, cosign, comment, suspend, extend]
    limit: 3wd
    materials: [land, plan, eia]
    conditional:
      waivable: [plan, eia]
      limit: 6wd
      on_breach: [credit_mark, escalate]
      letter: pledge
      sign_within: 2wd
    extend_by: [chief]
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
      - { id: d, department: d, assignee: { role: rd }, limit: 4wd }
    join: { policy: vote, share: 2/3, on_reject: immediate }
    reject_to: [intake]
    next: final
  - id: final
    type: task
    stage: s2
    assignee: { role: chief }
    actions: [approve, reject, comment, cosign]
    limit: 2wd
    reject_to: [intake, review]
    next: done
  - id: done
    type: end
    outcome: approved
"#;

/// The commitment letter a pre-approval yields.
const PLEDGE: &str =
    "{{ enterprise }}承诺在{{ limit }}内（{{ deadline }}前）补齐{{ materials }}。\n";

fn setup() -> (Definition, Calendar) {
    let wf = parse_workflow(WORKFLOW).unwrap_or_else(|d| panic!("parse: {d:?}"));
    let ctx = ValidateContext {
        calendars: vec!["cn-mainland".into()],
        documents: [("pledge".to_string(), PLEDGE.to_string())].into(),
        ..Default::default()
    };
    let def = compile(wf, &ctx).unwrap_or_else(|d| panic!("compile: {d:#?}"));
    (def, mainland())
}

fn users() -> Vec<Actor> {
    vec![
        Actor::new("zhang", None, &["applicant"]),
        Actor::new("li", Some("a"), &["clerk"]),
        Actor::new("ra", Some("a"), &["ra"]),
        Actor::new("rb", Some("b"), &["rb"]),
        Actor::new("rc", Some("c"), &["rc"]),
        Actor::new("rd", Some("d"), &["rd"]),
        Actor::new("chief", Some("a"), &["chief"]),
        Actor::new("fu", Some("b"), &[]),
        Actor::new("liu", None, &[]),
        Actor::new("nobody", Some("x"), &[]),
    ]
}

/// One random step: what, by whom, on which task, with which extra choices, after how long.
#[derive(Debug, Clone)]
struct Op {
    kind: u8,
    who: u8,
    task: u8,
    extra: u8,
    /// Hours to advance before the command (timers due meanwhile fire first).
    wait: u8,
    /// Use a rightful actor for the task rather than `who`.
    rightful: bool,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0u8..27,
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop_oneof![4 => Just(0u8), 1 => 1u8..72],
        any::<bool>(),
    )
        .prop_map(|(kind, who, task, extra, wait, rightful)| Op {
            kind,
            who,
            task,
            extra,
            wait,
            rightful,
        })
}

/// A step of the 容缺 lifecycle, by a rightful user, with long waits: pre-approvals, supplies,
/// verifications (a quarter refused), approvals and 驳回, so deadlines pass while materials are
/// supplied, being verified or refused.
fn promise_op() -> impl Strategy<Value = Op> {
    (
        prop::sample::select(vec![0u8, 3, 5, 5, 6, 6, 7, 7, 26]),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop_oneof![2 => Just(0u8), 1 => 1u8..=120],
    )
        .prop_map(|(kind, who, task, extra, wait)| Op {
            kind,
            who,
            task,
            extra,
            wait,
            rightful: true,
        })
}

/// The office operations, by rightful users, between approvals and 驳回: 拿回 right after a
/// decision or later, 委派 and its answer, 加签 in every order and 减签.
fn office_op() -> impl Strategy<Value = Op> {
    (
        prop::sample::select(vec![0u8, 0, 1, 3, 9, 19, 19, 19, 20, 21, 22, 23, 24, 18]),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop_oneof![4 => Just(0u8), 1 => 1u8..48],
    )
        .prop_map(|(kind, who, task, extra, wait)| Op {
            kind,
            who,
            task,
            extra,
            wait,
            rightful: true,
        })
}

/// A user who may act on `t`.
fn rightful(t: &Task) -> Actor {
    let name = t.claimed_by.clone();
    match (&name, &t.spec.assignment) {
        (Some(u), _) => Actor::new(u, None, &[]),
        (None, Party::User(u)) => Actor::new(u, None, &[]),
        (None, Party::Role(r)) => Actor {
            name: SmolStr::new(format!("holder-{r}")),
            department: None,
            roles: vec![r.clone()],
        },
        (None, Party::Department(d)) => Actor::new("member", Some(d), &[]),
    }
}

struct Run {
    def: Definition,
    cal: Calendar,
    state: InstanceState,
    log: Vec<Event>,
    now: Timestamp,
    users: Vec<Actor>,
}

impl Run {
    fn new(green: bool) -> Run {
        let (def, cal) = setup();
        let mut r = Run {
            def,
            cal,
            state: InstanceState::default(),
            log: Vec::new(),
            now: "2026-03-02T09:00:00+08:00"
                .parse()
                .unwrap_or(Timestamp::UNIX_EPOCH),
            users: users(),
        };
        let tier = if green { "重点" } else { "一般" };
        let start = Command::Start {
            project: serde_json::json!({ "tier": tier }),
            channel: None,
        };
        let zhang = r.users[0].clone();
        r.exec(zhang, start)
            .unwrap_or_else(|e| panic!("start: {e}"));
        r
    }

    /// Decides and applies one command, checking the per-command invariants.
    fn exec(&mut self, actor: Actor, command: Command) -> Result<(), String> {
        let env = CommandEnvelope { actor, command };
        let before = self.state.clone();
        let events = match decide(&self.def, &self.cal, &self.state, &env, self.now) {
            Ok(e) => e,
            Err(r) => {
                assert_eq!(self.state, before, "a rejection changes nothing");
                let _ = r.code();
                return Err(r.to_string());
            }
        };
        for e in &events {
            if let Event::LetterSigned {
                pre, by, sha256, ..
            } = e
            {
                let letter = before.letter(*pre);
                assert!(
                    letter.is_some_and(|l| l.signed.is_none() && l.sha256 == *sha256),
                    "letter {pre} signed twice, or with another text's hash"
                );
                let signer = applicant_parties(&self.def.plan, &before.applicant, &before.project)
                    .any(|p| p == by.as_str());
                assert!(
                    signer,
                    "letter {pre} signed by {by}, not the applicant side"
                );
            }
        }
        if let Command::TakeBack { task } = &env.command {
            // 拿回 never reopens a decision after the next node acted: what was decided after it
            // is verification, or a peer's vote in the same parallel step while it is still
            // open, or a signer of the same task; and the task itself stays closed.
            let taken = before.task(*task);
            let seq = taken.map_or(0, |t| t.decided_seq);
            let unit = |t: &Task| t.spec.parent.unwrap_or(t.spec.task);
            let open_step = taken.and_then(|t| t.spec.step).filter(|s| {
                before
                    .step(*s)
                    .is_some_and(|s| s.status == StepStatus::Open)
            });
            let later = before.tasks.iter().find(|t| {
                t.status == TaskStatus::Decided
                    && t.spec.kind != TaskKind::Verify
                    && t.decided_seq > seq
                    && !(open_step.is_some() && t.spec.step == open_step)
                    && taken.is_none_or(|k| unit(k) != unit(t))
            });
            assert!(
                later.is_none(),
                "task {task} taken back after {:?} was decided",
                later.map(|t| &t.spec.label)
            );
        }
        let tasks_before = self.state.tasks.len();
        let verifying: Vec<TaskId> = self
            .state
            .open_tasks()
            .filter(|t| t.spec.kind == TaskKind::Verify)
            .map(|t| t.spec.task)
            .collect();
        for e in &events {
            apply(&mut self.state, e);
            self.log.push(e.clone());
        }
        if let Command::TakeBack { task } = &env.command {
            assert!(
                self.state.task(*task).is_some_and(|t| !t.is_open()),
                "a task taken back is open again"
            );
            assert!(
                self.state.tasks.len() > tasks_before,
                "a task taken back has no stand-in"
            );
        }
        self.check_batch(&events, tasks_before, &verifying);
        Ok(())
    }

    fn check_batch(&self, events: &[Event], tasks_before: usize, verifying: &[TaskId]) {
        let s = &self.state;
        for e in events {
            match e {
                Event::FormalApproval { pre } => {
                    let all = s
                        .promises
                        .iter()
                        .filter(|p| p.pre == *pre)
                        .all(|p| p.status == PromiseStatus::Verified);
                    assert!(all, "formal approval {pre} with an unverified promise");
                }
                Event::RejectedBack { .. } => {
                    for t in s.open_tasks() {
                        assert!(
                            t.spec.task.ix() >= tasks_before || t.spec.kind == TaskKind::Verify,
                            "task {} ({}) of the abandoned path is still open after the 驳回",
                            t.spec.task,
                            t.spec.label
                        );
                    }
                    if s.status == Status::Running {
                        for v in verifying {
                            assert!(
                                s.task(*v).is_some_and(Task::is_open),
                                "verification task {v} was closed by a 驳回"
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        for t in s.open_tasks() {
            if let Some(step) = t.spec.step.filter(|_| t.spec.kind == TaskKind::Work) {
                let st = s.step(step).map(|st| st.status);
                assert_eq!(
                    st,
                    Some(StepStatus::Open),
                    "open branch {} of a closed step",
                    t.spec.label
                );
            }
        }
        if s.status == Status::Running {
            for p in s.promises.iter() {
                if p.status != PromiseStatus::Open || p.breached {
                    continue;
                }
                let armed = s.timers.iter().any(|t| {
                    t.kind
                        == TimerKind::Due {
                            target: ClockRef::Promise(p.id),
                        }
                });
                assert!(
                    armed,
                    "promise {} ({}) waits for its material with no deadline timer and no breach",
                    p.id, p.material
                );
            }
        }
        if s.status == Status::Ended {
            assert!(
                s.open_tasks().next().is_none(),
                "an ended instance has open tasks"
            );
            assert!(s.timers.is_empty(), "an ended instance has timers");
        }
    }

    fn advance(&mut self, hours: u8) {
        let to = self
            .now
            .checked_add(SignedDuration::from_hours(i64::from(hours)))
            .unwrap_or(self.now);
        for _ in 0..10_000 {
            let next = self
                .state
                .timers
                .iter()
                .filter(|t| t.due <= to)
                .min_by_key(|t| (t.due, t.id))
                .map(|t| (t.id, t.due));
            let Some((id, due)) = next else { break };
            self.now = self.now.max(due);
            self.exec(Actor::system(), Command::TimerFired { timer: id })
                .unwrap_or_else(|e| panic!("a due timer was refused: {e}"));
        }
        self.now = self.now.max(to);
    }

    fn pick_task(&self, sel: u8) -> TaskId {
        let open: Vec<TaskId> = self.state.open_tasks().map(|t| t.spec.task).collect();
        if open.is_empty() || sel % 8 == 7 {
            // Sometimes a closed or unknown task.
            return TaskId(u32::from(sel) % (self.state.tasks.len() as u32 + 2));
        }
        open[usize::from(sel) % open.len()]
    }

    fn step(&mut self, o: &Op) {
        self.advance(o.wait);
        let task = self.pick_task(o.task);
        let actor = match (o.rightful, self.state.task(task)) {
            // The rightful actor of an applicant-side command is the applicant.
            (true, _) if o.kind == 6 || o.kind == 26 => self.users[0].clone(),
            (true, Some(t)) => rightful(t),
            _ => self.users[usize::from(o.who) % self.users.len()].clone(),
        };
        let mats = ["plan", "eia", "land", "other"];
        let m = |i: u8| SmolStr::new(mats[usize::from(i) % mats.len()]);
        let cmd = match o.kind {
            0..=2 => Command::Approve {
                task,
                comment: None,
            },
            3 => Command::Reject {
                task,
                to: match o.extra % 4 {
                    0 => None,
                    1 | 2 => Some("intake".into()),
                    _ => Some("review".into()),
                },
                reason: None,
            },
            4 => Command::Claim { task },
            5 => Command::ApproveConditional {
                task,
                waive: (0..(o.extra % 3 + 1))
                    .map(|i| m(o.extra.wrapping_add(i)))
                    .collect(),
                limit: o
                    .extra
                    .is_multiple_of(2)
                    .then(|| RawLimit::Days(i64::from(o.extra % 8 + 1))),
                comment: None,
            },
            6 => Command::SupplyMaterial {
                material: m(o.extra),
                files: Vec::new(),
            },
            7 => Command::VerifyMaterial {
                task,
                accepted: !o.extra.is_multiple_of(4),
                reason: None,
            },
            8 => Command::Delegate {
                task,
                to: SmolStr::new(["liu", "ra", "zhao"][usize::from(o.extra) % 3]),
                transfer: o.extra.is_multiple_of(2),
            },
            9 | 22 => Command::AddCosigner {
                task,
                user: SmolStr::new(["liu", "wu", "ra"][usize::from(o.extra) % 3]),
                order: [SignOrder::With, SignOrder::Before, SignOrder::After]
                    [usize::from(o.extra / 3) % 3],
            },
            19 => {
                // 拿回 of a decided task, mostly by the one who decided it.
                let mut decided: Vec<&Task> = self
                    .state
                    .tasks
                    .iter()
                    .filter(|t| t.status == TaskStatus::Decided)
                    .collect();
                // Mostly the latest decision (the one most likely still open to taking back).
                decided.sort_by_key(|t| std::cmp::Reverse(t.decided_seq));
                let pick = if o.extra.is_multiple_of(4) {
                    usize::from(o.extra) % decided.len().max(1)
                } else {
                    0
                };
                if let Some(t) = decided.get(pick) {
                    let actor = match (&t.decided_by, o.rightful) {
                        (Some(by), true) => Actor::new(by, None, &[]),
                        _ => actor,
                    };
                    let _ = self.exec(actor, Command::TakeBack { task: t.spec.task });
                    return;
                }
                Command::TakeBack { task }
            }
            20 => Command::Consult {
                task,
                to: SmolStr::new(["liu", "ra", "zhang"][usize::from(o.extra) % 3]),
                text: None,
            },
            21 => {
                let consulted = self.state.task(task).and_then(|t| t.consulting.clone());
                let actor = match (consulted, o.rightful) {
                    (Some(c), true) => Actor::new(&c, None, &[]),
                    _ => actor,
                };
                let _ = self.exec(
                    actor,
                    Command::AnswerConsult {
                        task,
                        opinion: "同意".into(),
                    },
                );
                return;
            }
            23 => Command::RemoveCosigner {
                task,
                user: SmolStr::new(["liu", "wu", "ra"][usize::from(o.extra) % 3]),
            },
            24 => Command::ReadCopies,
            26 => {
                // Mostly a letter the instance has, with the hash of its text; sometimes a
                // text other than the letter's, or a letter it does not have.
                let letters = &self.state.letters;
                match letters.get(usize::from(o.extra) % letters.len().max(1)) {
                    Some(l) => Command::SignLetter {
                        pre: l.pre,
                        sha256: if o.extra.is_multiple_of(8) {
                            SmolStr::new("0".repeat(64))
                        } else {
                            l.sha256.clone()
                        },
                        remote: None,
                    },
                    None => Command::SignLetter {
                        pre: PreApprovalId(u32::from(o.extra % 3)),
                        sha256: SmolStr::default(),
                        remote: None,
                    },
                }
            }
            10 if o.extra.is_multiple_of(16) => Command::Withdraw { reason: None },
            10 | 11 => Command::Urge { task, text: None },
            12 => Command::Comment {
                task: o.extra.is_multiple_of(2).then_some(task),
                text: "意见".into(),
            },
            13 => Command::AttachElement {
                element: "funds".into(),
                fields: serde_json::Value::Null,
            },
            14 => Command::Suspend {
                task,
                reason: "专家评审".into(),
            },
            15 => Command::Resume {
                task: o.extra.is_multiple_of(2).then_some(task),
            },
            16 => Command::Extend {
                task,
                limit: RawLimit::Days(i64::from(o.extra % 3)),
                reason: "复杂".into(),
                step: o.extra % 2 == 1,
            },
            17 => Command::Return {
                task,
                reason: "补正".into(),
                materials: vec![m(o.extra)],
            },
            18 => Command::Cc {
                task: Some(task),
                to: vec![["boss", "chief", "rb"][usize::from(o.extra) % 3].into()],
                text: None,
            },
            _ => Command::TimerFired {
                timer: TimerId(u32::from(o.extra)),
            },
        };
        let _ = self.exec(actor, cmd);
    }

    /// Everyone does their part until the instance ends; false if it cannot.
    fn drive_to_end(&mut self) -> bool {
        for _ in 0..400 {
            if self.state.status == Status::Ended {
                return true;
            }
            let applicant = self.users[0].clone();
            if self.state.returned.is_some() {
                let _ = self.exec(applicant, Command::Resume { task: None });
                continue;
            }
            let funds_missing = !self.state.elements.iter().any(|e| e.element == "funds");
            if funds_missing {
                let fu = self.users[7].clone();
                if self
                    .exec(
                        fu,
                        Command::AttachElement {
                            element: "funds".into(),
                            fields: serde_json::Value::Null,
                        },
                    )
                    .is_ok()
                {
                    continue;
                }
            }
            let open_promise = self
                .state
                .promises
                .iter()
                .find(|p| p.status == PromiseStatus::Open)
                .map(|p| p.material.clone());
            if let Some(m) = open_promise {
                self.exec(
                    applicant,
                    Command::SupplyMaterial {
                        material: m,
                        files: Vec::new(),
                    },
                )
                .unwrap_or_else(|e| panic!("supplying a promised material: {e}"));
                continue;
            }
            // Co-signers and verification first, then the main tasks.
            let mut open: Vec<&Task> = self.state.open_tasks().collect();
            open.sort_by_key(|t| match t.spec.kind {
                TaskKind::Cosign | TaskKind::Verify => 0,
                TaskKind::Work => 1,
            });
            let Some(t) = open.first() else {
                // Nothing open and not ended: the case is stuck.
                return false;
            };
            let (id, actor, kind, suspended) = (t.spec.task, rightful(t), t.spec.kind, t.suspended);
            let consulted = t.consulting.clone();
            let (actor, cmd) = match consulted {
                Some(c) => (
                    Actor::new(&c, None, &[]),
                    Command::AnswerConsult {
                        task: id,
                        opinion: "同意".into(),
                    },
                ),
                None => (actor, Command::Resume { task: None }),
            };
            let cmd = if matches!(cmd, Command::AnswerConsult { .. }) {
                cmd
            } else if suspended {
                Command::Resume { task: Some(id) }
            } else if kind == TaskKind::Verify {
                Command::VerifyMaterial {
                    task: id,
                    accepted: true,
                    reason: None,
                }
            } else {
                Command::Approve {
                    task: id,
                    comment: None,
                }
            };
            if let Err(e) = self.exec(actor, cmd) {
                panic!("the rightful user could not act on task {id}: {e}");
            }
        }
        false
    }

    fn check_history(&self) {
        let mut decided: HashMap<TaskId, usize> = HashMap::new();
        // Whether each step's join has fired: once per opening (a 拿回 of the approval that
        // fired it opens the step again).
        let mut fired: HashMap<u32, bool> = HashMap::new();
        for e in &self.log {
            match e {
                Event::TaskDecided { task, decision, .. } => {
                    *decided.entry(*task).or_default() += 1;
                    let _ = matches!(decision, Decision::Approve);
                }
                Event::JoinFired { step, .. } => {
                    let f = fired.entry(step.0).or_default();
                    assert!(!*f, "the join of step {step} fired twice in one opening");
                    *f = true;
                }
                Event::TakenBack {
                    reopened: Some(step),
                    ..
                } => {
                    let f = fired.entry(step.0).or_default();
                    assert!(*f, "step {step} reopened though its join had not fired");
                    *f = false;
                }
                _ => {}
            }
        }
        if std::env::var("PROPS_DEBUG").is_ok() {
            let mut k: Vec<&str> = self.log.iter().map(|e| e.kind()).collect();
            k.sort();
            k.dedup();
            eprintln!("{:?} {}", self.state.outcome, k.join(","));
        }
        assert!(decided.values().all(|n| *n == 1), "a task decided twice");
        let rebuilt = replay(&self.log);
        assert_eq!(rebuilt, self.state, "replay rebuilds the state");
        let json = serde_json::to_string(&self.log).unwrap_or_default();
        let back: Vec<Event> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(
            replay(&back),
            self.state,
            "replay through JSON rebuilds the state"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 200, .. ProptestConfig::default() })]

    #[test]
    fn random_commands_keep_the_invariants(green in any::<bool>(), ops in prop::collection::vec(op(), 1..60)) {
        let mut r = Run::new(green);
        for o in &ops {
            r.step(o);
        }
        r.check_history();
        let ended_before = r.state.status == Status::Ended;
        prop_assert!(r.drive_to_end(), "the instance could not reach an end (ended before: {ended_before})");
        r.check_history();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, .. ProptestConfig::default() })]

    #[test]
    fn promise_lifecycle_keeps_the_invariants(ops in prop::collection::vec(promise_op(), 1..40)) {
        let mut r = Run::new(false);
        for o in &ops {
            r.step(o);
        }
        r.check_history();
        prop_assert!(r.drive_to_end(), "the instance could not reach an end");
        r.check_history();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 200, .. ProptestConfig::default() })]

    #[test]
    fn office_operations_keep_the_invariants(ops in prop::collection::vec(office_op(), 1..60)) {
        let mut r = Run::new(false);
        for o in &ops {
            r.step(o);
        }
        r.check_history();
        prop_assert!(r.drive_to_end(), "the instance could not reach an end");
        r.check_history();
    }
}

/// A 驳回 from a branch of the 票签 step, while other branches are open or decided, always
/// leaves only the new intake task open; the case still reaches an end.
#[test]
fn reject_back_across_vote_step() {
    for rejecting in 0..4u32 {
        for approvals_before in 0..2u32 {
            let mut r = Run::new(false);
            let fu = r.users[7].clone();
            r.exec(
                fu,
                Command::AttachElement {
                    element: "funds".into(),
                    fields: serde_json::Value::Null,
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let intake = TaskId(0);
            let li = r.users[1].clone();
            r.exec(
                li,
                Command::Approve {
                    task: intake,
                    comment: None,
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let branches: Vec<TaskId> = (1..=4).map(TaskId).collect();
            // Some branches approve first (not the rejecting one).
            let mut approved = 0;
            for b in &branches {
                if approved == approvals_before || b.0 == 1 + rejecting {
                    continue;
                }
                let who = r.state.task(*b).map(rightful).unwrap_or_else(Actor::system);
                r.exec(
                    who,
                    Command::Approve {
                        task: *b,
                        comment: None,
                    },
                )
                .unwrap_or_else(|e| panic!("{e}"));
                approved += 1;
            }
            // Two rejects make 3 of 4 impossible.
            let mut rejects = 0;
            for b in branches
                .iter()
                .filter(|b| b.0 > rejecting)
                .chain(branches.iter())
            {
                if r.state.steps.first().map(|s| s.status) != Some(StepStatus::Open) {
                    break;
                }
                let Some(t) = r.state.task(*b).filter(|t| t.is_open()) else {
                    continue;
                };
                let who = rightful(t);
                r.exec(
                    who,
                    Command::Reject {
                        task: *b,
                        to: Some("intake".into()),
                        reason: None,
                    },
                )
                .unwrap_or_else(|e| panic!("{e}"));
                rejects += 1;
            }
            assert!(rejects >= 1);
            let open: Vec<String> = r
                .state
                .open_tasks()
                .map(|t| t.spec.label.to_string())
                .collect();
            assert_eq!(open, ["intake"], "only the new intake task is open");
            assert!(r.drive_to_end(), "the case still reaches an end");
            r.check_history();
            assert_eq!(r.state.steps.last().map(|s| s.round), Some(2));
        }
    }
}
