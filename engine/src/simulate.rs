//! Scenarios: a project run through a workflow on virtual time, with expectations.
//!
//! A scenario is YAML: who acts (`users`), the project, and a list of steps, each "at this time,
//! as this user, do this command". [`run`] drives the pure runtime exactly as the server does,
//! except that time is virtual: before each step every armed timer due by the step's time fires,
//! in due order (each at its own due instant), so yellow warnings, deadlines, escalation rungs and
//! promise breaches happen in the log where they would happen in life. Nothing here does I/O.
//!
//! ```yaml
//! workflow: provincial-major          # the workflow id (the CLI resolves the file)
//! start: 2026-03-02T09:00:00+08:00    # when the instance starts
//! applicant: zhang                    # optional: who starts it (default: a user holding role
//!                                     # `applicant`, else "applicant")
//! users:
//!   li: { department: fgw, roles: [fgw_reviewer] }
//! project: { tier: 重中之重, investment: 120000 }
//! channel: null                       # optional explicit green channel
//! steps:
//!   - at: 2026-03-03T10:00:00+08:00
//!     as: li                          # a user from `users`, or `system`
//!     do: approve                     # claim, approve, reject, return, approve_conditional,
//!                                     # supply_material, verify_material, sign_letter,
//!                                     # delegate, transfer, add_cosigner, withdraw, urge,
//!                                     # comment, cc, attach_element, suspend, resume, extend,
//!                                     # resolve_supervision, tick
//!     task: intake                    # node id, node.branch, verify / verify.<material>, or id
//!     expect_error: not_assigned      # optional: the step must be rejected with this code
//! expect:
//!   outcome: approved                 # or running
//!   end: done                         # the end node the path reached
//!   letters: [signed]                 # each 承诺书: signed, unsigned, or overdue (督办看板)
//!   open_tasks: [verify]
//!   events: [channel_chosen, pre_approved, formal_approval]
//!   absent_events: [promise_breached] # (extension) event types that must not appear
//!   channel: green                    # (extension)
//!   colours: { intake: yellow }       # (extension) colour of open tasks by name
//!   until: 2026-05-01T00:00:00+08:00  # advance time to here first, firing timers
//! ```
//!
//! Task names: a task answers to its label (`intake`, `joint_review.fgw`, `verify.eia`), to its
//! node id (co-signers' tasks too), to `verify` for any verification task, and to its numeric id.
//! When several open tasks answer, the first one the acting user may act on is used.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::calendar::Calendar;
use crate::compile::Definition;
use crate::model::RawLimit;
use crate::runtime::event::{ClockRef, PreApprovalId, SignOrder, TaskKind};
use crate::runtime::letter::letters;
use crate::runtime::state::Task;
use crate::runtime::{
    Actor, Colour, Command, CommandEnvelope, Event, InstanceState, InstanceView, TaskId, apply,
    decide, may_act, view,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub workflow: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub start: Timestamp,
    #[serde(default)]
    pub applicant: Option<String>,
    #[serde(default)]
    pub users: BTreeMap<String, UserSpec>,
    #[serde(default)]
    pub project: serde_json::Value,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub steps: Vec<ScenarioStep>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// One string or a list of them (`to: intake`, `to: [wang, zhao]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<SmolStr> {
        match self {
            OneOrMany::One(s) => vec![SmolStr::new(s)],
            OneOrMany::Many(v) => v.iter().map(SmolStr::new).collect(),
        }
    }

    fn single(&self) -> Option<SmolStr> {
        match self {
            OneOrMany::One(s) => Some(SmolStr::new(s)),
            OneOrMany::Many(v) if v.len() == 1 => v.first().map(SmolStr::new),
            OneOrMany::Many(_) => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioStep {
    pub at: Timestamp,
    #[serde(rename = "as", default = "system_name")]
    pub actor: String,
    #[serde(rename = "do")]
    pub action: String,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub to: Option<OneOrMany>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub waive: Vec<String>,
    #[serde(default, alias = "days")]
    pub limit: Option<RawLimit>,
    #[serde(default)]
    pub material: Option<String>,
    #[serde(default)]
    pub materials: Vec<String>,
    #[serde(default)]
    pub accepted: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub element: Option<String>,
    #[serde(default)]
    pub fields: Option<serde_json::Value>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub transfer: bool,
    /// For `extend`: extend the parallel step's overall limit rather than the task's.
    #[serde(default)]
    pub step: bool,
    /// For `resolve_supervision` (销号): what is resolved, `kind:name`: `task:<task>`,
    /// `step:<node>`, `promise:<material>`, `stage:<stage>`, `outstanding:<element>` (the
    /// latest of that name).
    #[serde(default)]
    pub supervision: Option<String>,
    /// For `sign_letter`: whose commitment letter (承诺书) is signed, the node id of the step
    /// that pre-approved (its latest letter) or the pre-approval's number; default: the first
    /// letter not signed yet.
    #[serde(default)]
    pub letter: Option<String>,
    #[serde(default)]
    pub expect_error: Option<String>,
    /// Free text for the reader.
    #[serde(default)]
    pub note: Option<String>,
}

fn system_name() -> String {
    "system".to_string()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub open_tasks: Option<Vec<String>>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub absent_events: Vec<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub colours: BTreeMap<String, Colour>,
    /// The end node the path reached (its last `end_reached`).
    #[serde(default)]
    pub end: Option<String>,
    /// Each commitment letter (承诺书) in the order issued, as the 督办看板 reads it.
    #[serde(default)]
    pub letters: Option<Vec<LetterState>>,
    #[serde(default)]
    pub until: Option<Timestamp>,
}

/// What a commitment letter is at the end of a scenario ([`crate::runtime::letter::letters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LetterState {
    Signed,
    /// Not signed, within its `sign_within` (or the instance has ended).
    Unsigned,
    /// Not signed past its `sign_within` while the instance runs: on the 督办看板.
    Overdue,
}

/// One event of the log with the virtual time it happened at.
#[derive(Debug, Clone, Serialize)]
pub struct TimedEvent {
    #[serde(with = "crate::calendar::china_time")]
    pub at: Timestamp,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimOutput {
    pub events: Vec<TimedEvent>,
    pub state: InstanceView,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("cannot read scenario: {0}")]
    Read(String),
    #[error("step {step}: unknown user `{user}` (add it under `users:`)")]
    UnknownUser { step: usize, user: String },
    #[error("step {step} (`{action}`): {reason}")]
    BadStep {
        step: usize,
        action: String,
        reason: String,
    },
    #[error("step {step}: time goes back ({at} is before {now})")]
    TimeGoesBack {
        step: usize,
        at: Timestamp,
        now: Timestamp,
    },
    #[error("step {step} (`{action}`) was rejected: {code}: {message}")]
    Rejected {
        step: usize,
        action: String,
        code: String,
        message: String,
    },
    #[error("step {step} (`{action}`) should have been rejected with `{code}` but was accepted")]
    ExpectedError {
        step: usize,
        action: String,
        code: String,
    },
    #[error(
        "step {step} (`{action}`) was rejected with `{got}` ({message}), expected `{expected}`"
    )]
    WrongError {
        step: usize,
        action: String,
        expected: String,
        got: String,
        message: String,
    },
    #[error("expected {what} {expected}, got {got}")]
    Expectation {
        what: String,
        expected: String,
        got: String,
    },
    #[error("timer loop: more than {0} timers fired; a timer re-arms itself")]
    TimerLoop(usize),
}

impl SimError {
    /// The scenario itself is malformed (as opposed to the workflow not doing what it expects).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            SimError::Read(_)
                | SimError::UnknownUser { .. }
                | SimError::BadStep { .. }
                | SimError::TimeGoesBack { .. }
        )
    }
}

impl Scenario {
    pub fn from_yaml(src: &str) -> Result<Scenario, SimError> {
        serde_saphyr::from_str(src).map_err(|e| SimError::Read(e.to_string()))
    }
}

/// Runs a scenario; the output, or the first way it differs from its expectations.
pub fn run(def: &Definition, cal: &Calendar, sc: &Scenario) -> Result<SimOutput, SimError> {
    let (out, res) = run_with_output(def, cal, sc);
    res.map(|()| out)
}

/// Runs a scenario and returns the output so far even when it fails (for printing).
pub fn run_with_output(
    def: &Definition,
    cal: &Calendar,
    sc: &Scenario,
) -> (SimOutput, Result<(), SimError>) {
    let mut sim = Sim {
        def,
        cal,
        state: InstanceState::default(),
        log: Vec::new(),
        now: sc.start,
    };
    let res = sim.go(sc);
    let state = view(def, cal, &sim.state, sim.now);
    (
        SimOutput {
            events: sim.log,
            state,
        },
        res,
    )
}

struct Sim<'a> {
    def: &'a Definition,
    cal: &'a Calendar,
    state: InstanceState,
    log: Vec<TimedEvent>,
    now: Timestamp,
}

const MAX_TIMER_FIRES: usize = 100_000;

impl Sim<'_> {
    fn go(&mut self, sc: &Scenario) -> Result<(), SimError> {
        let applicant = self.applicant(sc);
        let start = Command::Start {
            project: if sc.project.is_null() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                sc.project.clone()
            },
            channel: sc.channel.as_deref().map(SmolStr::new),
        };
        if let Err(r) = self.exec(applicant, start) {
            return Err(SimError::Rejected {
                step: 0,
                action: "start".into(),
                code: r.code().into(),
                message: r.to_string(),
            });
        }
        for (i, step) in sc.steps.iter().enumerate() {
            let n = i + 1;
            if step.at < self.now {
                return Err(SimError::TimeGoesBack {
                    step: n,
                    at: step.at,
                    now: self.now,
                });
            }
            self.advance(step.at)?;
            if step.action == "tick" {
                continue;
            }
            let actor = actor_of(sc, &step.actor).ok_or_else(|| SimError::UnknownUser {
                step: n,
                user: step.actor.clone(),
            })?;
            let cmd = self.command(n, step, &actor)?;
            let result = self.exec(actor, cmd);
            match (result, &step.expect_error) {
                (Ok(()), None) => {}
                (Ok(()), Some(code)) => {
                    return Err(SimError::ExpectedError {
                        step: n,
                        action: step.action.clone(),
                        code: code.clone(),
                    });
                }
                (Err(r), None) => {
                    return Err(SimError::Rejected {
                        step: n,
                        action: step.action.clone(),
                        code: r.code().into(),
                        message: r.to_string(),
                    });
                }
                (Err(r), Some(code)) => {
                    if r.code() != code {
                        return Err(SimError::WrongError {
                            step: n,
                            action: step.action.clone(),
                            expected: code.clone(),
                            got: r.code().into(),
                            message: r.to_string(),
                        });
                    }
                }
            }
        }
        if let Some(e) = &sc.expect {
            if let Some(until) = e.until {
                if until < self.now {
                    return Err(SimError::TimeGoesBack {
                        step: sc.steps.len() + 1,
                        at: until,
                        now: self.now,
                    });
                }
                self.advance(until)?;
            }
            self.check(e)?;
        }
        Ok(())
    }

    fn applicant(&self, sc: &Scenario) -> Actor {
        if let Some(a) = &sc.applicant {
            return actor_of(sc, a).unwrap_or_else(|| Actor::new(a, None, &["applicant"]));
        }
        if let Some((name, _)) = sc
            .users
            .iter()
            .find(|(_, u)| u.roles.iter().any(|r| r == "applicant"))
        {
            return actor_of(sc, name).unwrap_or_else(|| Actor::new(name, None, &["applicant"]));
        }
        Actor::new("applicant", None, &["applicant"])
    }

    /// Runs one command at the current time; applies and logs its events.
    fn exec(&mut self, actor: Actor, command: Command) -> Result<(), crate::runtime::Rejection> {
        let env = CommandEnvelope { actor, command };
        let events = decide(self.def, self.cal, &self.state, &env, self.now)?;
        for e in events {
            apply(&mut self.state, &e);
            self.log.push(TimedEvent {
                at: self.now,
                event: e,
            });
        }
        Ok(())
    }

    /// Fires every timer due by `until`, earliest first, each at its own due instant.
    fn advance(&mut self, until: Timestamp) -> Result<(), SimError> {
        for _ in 0..MAX_TIMER_FIRES {
            let next = self
                .state
                .timers
                .iter()
                .filter(|t| t.due <= until)
                .min_by_key(|t| (t.due, t.id))
                .map(|t| (t.id, t.due));
            let Some((id, due)) = next else {
                self.now = self.now.max(until);
                return Ok(());
            };
            self.now = self.now.max(due);
            if let Err(r) = self.exec(Actor::system(), Command::TimerFired { timer: id }) {
                return Err(SimError::Rejected {
                    step: 0,
                    action: format!("timer {id}"),
                    code: r.code().into(),
                    message: r.to_string(),
                });
            }
            // A timer that decide declined to fire would be found again; drop it from the
            // candidates by making sure it is gone (decide always fires due timers).
            if self.state.timers.iter().any(|t| t.id == id) {
                return Err(SimError::TimerLoop(MAX_TIMER_FIRES));
            }
        }
        Err(SimError::TimerLoop(MAX_TIMER_FIRES))
    }

    fn find_task(&self, r: Option<&str>, actor: &Actor, material: Option<&str>) -> TaskId {
        let matches = |t: &Task| match r {
            Some(r) => names(t).iter().any(|n| n == r),
            None => match material {
                Some(m) => t.spec.kind == TaskKind::Verify && t.spec.label == format!("verify.{m}"),
                None => true,
            },
        };
        let open_ok = self
            .state
            .tasks
            .iter()
            .find(|t| t.is_open() && matches(t) && may_act(t, actor, &self.state.applicant));
        if let Some(t) = open_ok {
            return t.spec.task;
        }
        if r.is_none() && material.is_none() {
            return TaskId(u32::MAX);
        }
        if let Some(t) = self.state.tasks.iter().find(|t| t.is_open() && matches(t)) {
            return t.spec.task;
        }
        match self.state.tasks.iter().rev().find(|t| matches(t)) {
            Some(t) => t.spec.task,
            None => TaskId(u32::MAX),
        }
    }

    fn command(&self, n: usize, s: &ScenarioStep, actor: &Actor) -> Result<Command, SimError> {
        let bad = |reason: &str| SimError::BadStep {
            step: n,
            action: s.action.clone(),
            reason: reason.to_string(),
        };
        let task = || self.find_task(s.task.as_deref(), actor, None);
        // The user a step names: `user`, or a single `to`.
        let user = |what: &str| {
            s.user
                .as_deref()
                .map(SmolStr::new)
                .or_else(|| s.to.as_ref().and_then(OneOrMany::single))
                .ok_or_else(|| bad(what))
        };
        let opt_task = || {
            s.task
                .as_deref()
                .map(|r| self.find_task(Some(r), actor, None))
        };
        let text = s.text.clone().or_else(|| s.comment.clone());
        let reason = s.reason.clone().or_else(|| text.clone());
        let smol = |v: &[String]| v.iter().map(SmolStr::new).collect::<Vec<_>>();
        Ok(match s.action.as_str() {
            "claim" => Command::Claim { task: task() },
            "approve" => Command::Approve {
                task: task(),
                comment: text,
            },
            "reject" => Command::Reject {
                task: task(),
                to: s.to.as_ref().and_then(OneOrMany::single),
                reason,
            },
            "return" => Command::Return {
                task: task(),
                reason: reason.unwrap_or_default(),
                materials: smol(&s.materials),
            },
            "approve_conditional" => Command::ApproveConditional {
                task: task(),
                waive: smol(&s.waive),
                limit: s.limit.clone(),
                comment: text,
            },
            "supply_material" => Command::SupplyMaterial {
                material: SmolStr::new(
                    s.material
                        .as_deref()
                        .ok_or_else(|| bad("`material` is required"))?,
                ),
                files: Vec::new(),
            },
            "verify_material" => Command::VerifyMaterial {
                task: self.find_task(s.task.as_deref(), actor, s.material.as_deref()),
                accepted: s.accepted.unwrap_or(true),
                reason,
            },
            "delegate" | "transfer" => Command::Delegate {
                task: task(),
                to: user("`user` (who to delegate to) is required")?,
                transfer: s.transfer || s.action == "transfer",
            },
            "add_cosigner" | "cosign" | "cosign_before" | "cosign_after" => Command::AddCosigner {
                task: task(),
                user: user("`user` (the co-signer) is required")?,
                order: match s.action.as_str() {
                    "cosign_before" => SignOrder::Before,
                    "cosign_after" => SignOrder::After,
                    _ => SignOrder::With,
                },
            },
            "remove_cosigner" => Command::RemoveCosigner {
                task: task(),
                user: user("`user` (the signer to remove) is required")?,
            },
            "consult" => Command::Consult {
                task: task(),
                to: user("`user` (who to ask for an opinion) is required")?,
                text,
            },
            "answer_consult" => Command::AnswerConsult {
                task: task(),
                opinion: text.or(reason).unwrap_or_default(),
            },
            "take_back" => Command::TakeBack { task: task() },
            "read_copies" => Command::ReadCopies,
            "withdraw" => Command::Withdraw { reason },
            "urge" => Command::Urge { task: task(), text },
            "comment" => Command::Comment {
                task: opt_task(),
                text: text.or(reason).unwrap_or_default(),
            },
            "cc" => {
                let mut to = s.to.as_ref().map(OneOrMany::list).unwrap_or_default();
                to.extend(smol(&s.users));
                if let Some(u) = &s.user {
                    to.push(SmolStr::new(u));
                }
                Command::Cc {
                    task: opt_task(),
                    to,
                    text,
                }
            }
            "attach_element" => Command::AttachElement {
                element: SmolStr::new(
                    s.element
                        .as_deref()
                        .ok_or_else(|| bad("`element` is required"))?,
                ),
                fields: s.fields.clone().unwrap_or(serde_json::Value::Null),
            },
            "suspend" => Command::Suspend {
                task: task(),
                reason: reason.unwrap_or_default(),
            },
            "resume" => Command::Resume { task: opt_task() },
            "extend" => Command::Extend {
                task: task(),
                limit: s
                    .limit
                    .clone()
                    .ok_or_else(|| bad("`limit` (how much to add, e.g. 5wd) is required"))?,
                reason: reason.unwrap_or_default(),
                step: s.step,
            },
            "sign_letter" => {
                // The signer signs the text as recorded: the runner sends its hash.
                let (pre, sha256) = self.letter(s.letter.as_deref());
                Command::SignLetter {
                    pre,
                    sha256,
                    remote: None,
                }
            }
            "resolve_supervision" => Command::ResolveSupervision {
                target: self
                    .supervision_target(s.supervision.as_deref(), actor)
                    .map_err(|r| bad(&r))?,
                note: reason.unwrap_or_default(),
            },
            other => {
                return Err(bad(&format!(
                    "unknown command `{other}`; use claim, approve, reject, return, \
                     approve_conditional, supply_material, verify_material, sign_letter, \
                     delegate, transfer, consult, answer_consult, add_cosigner, cosign_before, cosign_after, \
                     remove_cosigner, take_back, withdraw, urge, comment, cc, read_copies, \
                     attach_element, suspend, resume, extend, resolve_supervision or tick"
                )));
            }
        })
    }

    /// The letter a `sign_letter` step names, and the hash of its text; a letter the instance
    /// does not have is left for the engine to refuse (`unknown_letter`).
    fn letter(&self, r: Option<&str>) -> (PreApprovalId, SmolStr) {
        let letters = &self.state.letters;
        let found = match r {
            None => letters.iter().find(|l| l.signed.is_none()),
            Some(r) => match r.parse::<u32>() {
                Ok(n) => letters.iter().find(|l| l.pre.0 == n),
                Err(_) => letters.iter().rev().find(|l| l.node == r),
            },
        };
        match found {
            Some(l) => (l.pre, l.sha256.clone()),
            None => (PreApprovalId(u32::MAX), SmolStr::default()),
        }
    }

    /// The thing a `supervision: kind:name` names (the latest of that name).
    fn supervision_target(&self, r: Option<&str>, actor: &Actor) -> Result<ClockRef, String> {
        let r = r.ok_or("`supervision` (e.g. `step:joint_review`) is required")?;
        let (kind, name) = r
            .split_once(':')
            .ok_or_else(|| format!("`supervision: {r}` is not `kind:name`"))?;
        let st = &self.state;
        let found = match kind {
            "task" => Some(ClockRef::Task(self.find_task(Some(name), actor, None))),
            "step" => st
                .steps
                .iter()
                .rev()
                .find(|s| s.node == name)
                .map(|s| ClockRef::Step(s.id)),
            "promise" => st
                .promises
                .iter()
                .rev()
                .find(|p| p.material == name)
                .map(|p| ClockRef::Promise(p.id)),
            "stage" => st
                .stages
                .iter()
                .rev()
                .find(|v| v.stage == name)
                .map(|v| ClockRef::Stage(v.id)),
            "outstanding" => st
                .outstanding
                .iter()
                .rev()
                .find(|o| o.element == name)
                .map(|o| ClockRef::Outstanding(o.id)),
            other => {
                return Err(format!(
                    "`{other}` is not task, step, promise, stage or outstanding"
                ));
            }
        };
        found.ok_or_else(|| format!("the instance has no {kind} `{name}`"))
    }

    fn check(&self, e: &Expect) -> Result<(), SimError> {
        let v = view(self.def, self.cal, &self.state, self.now);
        if let Some(o) = &e.outcome
            && *o != v.outcome
        {
            return Err(SimError::Expectation {
                what: "outcome".into(),
                expected: o.clone(),
                got: v.outcome.to_string(),
            });
        }
        if let Some(c) = &e.channel
            && self.state.channel.as_deref() != Some(c.as_str())
        {
            return Err(SimError::Expectation {
                what: "channel".into(),
                expected: c.clone(),
                got: format!("{:?}", self.state.channel),
            });
        }
        let open: Vec<&Task> = self.state.open_tasks().collect();
        if let Some(expected) = &e.open_tasks
            && !match_tasks(expected, &open)
        {
            return Err(SimError::Expectation {
                what: "open tasks".into(),
                expected: format!("{expected:?}"),
                got: format!(
                    "{:?}",
                    open.iter()
                        .map(|t| t.spec.label.as_str())
                        .collect::<Vec<_>>()
                ),
            });
        }
        let kinds: Vec<&str> = self.log.iter().map(|t| t.event.kind()).collect();
        for k in &e.events {
            if !kinds.contains(&k.as_str()) {
                return Err(SimError::Expectation {
                    what: "event".into(),
                    expected: k.clone(),
                    got: "none in the log".into(),
                });
            }
        }
        for k in &e.absent_events {
            if kinds.contains(&k.as_str()) {
                return Err(SimError::Expectation {
                    what: "no event".into(),
                    expected: k.clone(),
                    got: "one in the log".into(),
                });
            }
        }
        if let Some(end) = &e.end {
            let reached = self.log.iter().rev().find_map(|t| match &t.event {
                Event::EndReached { node, .. } => Some(node.as_str()),
                _ => None,
            });
            if reached != Some(end.as_str()) {
                return Err(SimError::Expectation {
                    what: "end".into(),
                    expected: end.clone(),
                    got: reached.unwrap_or("no end reached").to_string(),
                });
            }
        }
        if let Some(expected) = &e.letters {
            let got: Vec<LetterState> = letters(self.def, self.cal, &self.state, self.now)
                .iter()
                .map(|l| match (&l.signed, l.overdue) {
                    (Some(_), _) => LetterState::Signed,
                    (None, true) => LetterState::Overdue,
                    (None, false) => LetterState::Unsigned,
                })
                .collect();
            if got != *expected {
                let words = |v: &[LetterState]| {
                    let w: Vec<String> =
                        v.iter().map(|s| format!("{s:?}").to_lowercase()).collect();
                    format!("[{}]", w.join(", "))
                };
                return Err(SimError::Expectation {
                    what: "letters".into(),
                    expected: words(expected),
                    got: words(&got),
                });
            }
        }
        for (name, colour) in &e.colours {
            let found = v
                .tasks
                .iter()
                .find(|t| t.label == name.as_str() || t.node == name.as_str());
            match found {
                Some(t) if t.colour == *colour => {}
                Some(t) => {
                    return Err(SimError::Expectation {
                        what: format!("colour of `{name}`"),
                        expected: format!("{colour:?}").to_lowercase(),
                        got: format!("{:?}", t.colour).to_lowercase(),
                    });
                }
                None => {
                    return Err(SimError::Expectation {
                        what: format!("colour of `{name}`"),
                        expected: format!("{colour:?}").to_lowercase(),
                        got: "no such open task".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn actor_of(sc: &Scenario, name: &str) -> Option<Actor> {
    if name == "system" {
        return Some(Actor::system());
    }
    sc.users.get(name).map(|u| Actor {
        name: SmolStr::new(u.name.as_deref().unwrap_or(name)),
        department: u.department.as_deref().map(SmolStr::new),
        roles: u.roles.iter().map(SmolStr::new).collect(),
    })
}

/// The names a task answers to in a scenario.
fn names(t: &Task) -> Vec<String> {
    let mut v = vec![t.spec.label.to_string(), t.spec.task.0.to_string()];
    match t.spec.kind {
        TaskKind::Verify => v.push("verify".into()),
        _ => v.push(t.spec.node.to_string()),
    }
    v
}

/// Whether the open tasks are exactly the expected names (as a multiset): exact labels first,
/// then the other names.
fn match_tasks(expected: &[String], open: &[&Task]) -> bool {
    if expected.len() != open.len() {
        return false;
    }
    let mut used = vec![false; open.len()];
    let mut pending: Vec<&String> = Vec::new();
    for e in expected {
        match open
            .iter()
            .enumerate()
            .find(|(i, t)| !used[*i] && t.spec.label == e.as_str())
        {
            Some((i, _)) => used[i] = true,
            None => pending.push(e),
        }
    }
    for e in pending {
        match open
            .iter()
            .enumerate()
            .find(|(i, t)| !used[*i] && names(t).iter().any(|n| n == e))
        {
            Some((i, _)) => used[i] = true,
            None => return false,
        }
    }
    true
}
