//! A read model of one instance at an instant: what the inbox, the instance page and the
//! simulator print. Every open task, open step, promise, stage, element deadline and outstanding
//! item carries its colour and units left, all read through [`colour`](super::clock::colour).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::calendar::Calendar;
use crate::compile::{Definition, Party};
use crate::limit::Limit;
use crate::model::Outcome;

use super::clock::{Clock, Colour, Reading, colour};
use super::event::{PreApprovalId, PromiseId, StepId, TaskId, TaskKind, Timer};
use super::state::{CarbonCopy, InstanceState, PromiseStatus, Status, StepStatus};

/// Colour and time left of one clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockView {
    pub colour: Colour,
    /// Units left (working days for `wd` limits); negative when overdue.
    pub days_left: i64,
    pub limit: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::calendar::china_time::option"
    )]
    pub due: Option<Timestamp>,
    #[serde(default)]
    pub stopped: bool,
    /// The due date or days left count a provisional calendar year (暂定): see
    /// [`crate::calendar::Calendar::is_provisional`].
    #[serde(default)]
    pub provisional: bool,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: TaskId,
    pub label: SmolStr,
    pub node: SmolStr,
    pub kind: TaskKind,
    pub branch: Option<SmolStr>,
    pub assignment: Party,
    pub claimed_by: Option<SmolStr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegates: Vec<SmolStr>,
    pub department: Option<SmolStr>,
    #[serde(default)]
    pub lead: bool,
    pub priority: i32,
    #[serde(default)]
    pub suspended: bool,
    /// Green when the task has no limit of its own (nor its step).
    pub colour: Colour,
    pub days_left: Option<i64>,
    pub clock: Option<ClockView>,
    #[serde(default)]
    pub supervised: bool,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    pub id: StepId,
    pub node: SmolStr,
    pub round: u32,
    pub lead: Option<SmolStr>,
    pub clock: Option<ClockView>,
    pub branches: Vec<TaskId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromiseView {
    pub id: PromiseId,
    pub pre: PreApprovalId,
    pub material: SmolStr,
    pub status: PromiseStatus,
    pub breached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreApprovalView {
    pub id: PreApprovalId,
    pub node: SmolStr,
    pub materials: Vec<SmolStr>,
    pub formal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageElementView {
    pub element: SmolStr,
    pub from: SmolStr,
    pub attached: bool,
    pub may_carry: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageView {
    pub stage: SmolStr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockView>,
    pub elements: Vec<StageElementView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementView {
    pub element: SmolStr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<SmolStr>,
    pub by: SmolStr,
    pub fields: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutstandingView {
    pub stage: SmolStr,
    pub element: SmolStr,
    pub resolved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockView>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub workflow: SmolStr,
    pub status: Status,
    /// `running`, `not_started`, or the outcome (`approved`, `rejected`, `withdrawn`, `revoked`).
    pub outcome: SmolStr,
    pub channel: Option<SmolStr>,
    pub priority: i32,
    pub at: Option<SmolStr>,
    pub path_end: Option<Outcome>,
    pub with_applicant: bool,
    pub tasks: Vec<TaskView>,
    pub steps: Vec<StepView>,
    pub pre_approvals: Vec<PreApprovalView>,
    pub promises: Vec<PromiseView>,
    pub stage: Option<StageView>,
    pub elements: Vec<ElementView>,
    pub outstanding: Vec<OutstandingView>,
    pub supervised: Vec<TaskId>,
    /// Everything ever put under supervision (挂牌督办), with its 销号 when resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supervision: Vec<crate::runtime::state::Supervision>,
    pub credit_marks: Vec<SmolStr>,
    pub timers: Vec<Timer>,
    /// The copies sent (抄送), with who has read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CarbonCopy>,
    /// Clocks whose dates the calendar does not cover (their colour could not be read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calendar_errors: Vec<String>,
}

struct Reader<'a> {
    cal: &'a Calendar,
    now: Timestamp,
    yellow: u32,
    errors: Vec<String>,
}

impl Reader<'_> {
    fn read(&mut self, c: &Clock) -> Option<ClockView> {
        match colour(c, self.cal, self.now, self.yellow) {
            Ok(Reading {
                colour,
                days_left,
                due,
                stopped,
                provisional,
                ..
            }) => Some(ClockView {
                colour,
                days_left,
                limit: Limit {
                    amount: c.total(),
                    unit: c.limit.unit,
                }
                .to_string(),
                due,
                stopped,
                provisional,
            }),
            Err(e) => {
                let msg = e.to_string();
                if !self.errors.contains(&msg) {
                    self.errors.push(msg);
                }
                None
            }
        }
    }
}

/// The instance as seen at `now`.
pub fn view(def: &Definition, cal: &Calendar, st: &InstanceState, now: Timestamp) -> InstanceView {
    let mut r = Reader {
        cal,
        now,
        yellow: def.plan.yellow_permille,
        errors: Vec::new(),
    };
    let tasks = st
        .open_tasks()
        .map(|t| {
            let own = t.spec.clock.as_ref();
            let step_clock = t
                .spec
                .step
                .and_then(|s| st.step(s))
                .and_then(|s| s.clock.as_ref());
            let clock = own.or(step_clock).and_then(|c| r.read(c));
            TaskView {
                id: t.spec.task,
                label: t.spec.label.clone(),
                node: t.spec.node.clone(),
                kind: t.spec.kind,
                branch: t.spec.branch.clone(),
                assignment: t.spec.assignment.clone(),
                claimed_by: t.claimed_by.clone(),
                delegates: t.delegates.clone(),
                department: t.spec.department.clone(),
                lead: t.spec.lead,
                priority: t.spec.priority,
                suspended: t.suspended,
                colour: clock.as_ref().map_or(Colour::Green, |c| c.colour),
                days_left: clock.as_ref().map(|c| c.days_left),
                clock,
                supervised: st.supervised.contains(&t.spec.task),
            }
        })
        .collect();
    let steps = st
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Open)
        .map(|s| StepView {
            id: s.id,
            node: s.node.clone(),
            round: s.round,
            lead: s.lead.clone(),
            clock: s.clock.as_ref().and_then(|c| r.read(c)),
            branches: s.tasks.clone(),
        })
        .collect();
    let promises = st
        .promises
        .iter()
        .map(|p| PromiseView {
            id: p.id,
            pre: p.pre,
            material: p.material.clone(),
            status: p.status,
            breached: p.breached,
            clock: if p.status == PromiseStatus::Verified || st.status == Status::Ended {
                None
            } else {
                r.read(&p.clock)
            },
        })
        .collect();
    let stage = st.current_stage().map(|v| {
        let plan = def.plan.stages.iter().find(|s| s.id == v.stage);
        let elements = plan
            .map(|sp| {
                sp.elements
                    .iter()
                    .map(|e| {
                        let attached =
                            st.has_element(&e.element, e.fresh.then_some(sp.id.as_str()));
                        let clock = if attached {
                            None
                        } else {
                            v.element_clocks
                                .iter()
                                .find(|(id, _)| *id == e.element)
                                .and_then(|(_, c)| r.read(c))
                        };
                        StageElementView {
                            element: e.element.clone(),
                            from: e.from.clone(),
                            attached,
                            may_carry: e.may_carry,
                            clock,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        StageView {
            stage: v.stage.clone(),
            clock: v.clock.as_ref().and_then(|c| r.read(c)),
            elements,
        }
    });
    let elements = st
        .elements
        .iter()
        .map(|e| ElementView {
            element: e.element.clone(),
            stage: e
                .stage
                .and_then(|v| st.stages.get(v.ix()))
                .map(|v| v.stage.clone()),
            by: e.by.clone(),
            fields: e.fields.clone(),
        })
        .collect();
    let outstanding = st
        .outstanding
        .iter()
        .map(|o| OutstandingView {
            stage: o.stage.clone(),
            element: o.element.clone(),
            resolved: o.resolved,
            clock: if o.resolved || st.status == Status::Ended {
                None
            } else {
                o.clock.as_ref().and_then(|c| r.read(c))
            },
        })
        .collect();
    let outcome = match (st.status, st.outcome) {
        (Status::NotStarted, _) => SmolStr::new_static("not_started"),
        (Status::Running, _) => SmolStr::new_static("running"),
        (Status::Ended, Some(o)) => SmolStr::new(outcome_name(o)),
        (Status::Ended, None) => SmolStr::new_static("ended"),
    };
    InstanceView {
        workflow: st.workflow.clone(),
        status: st.status,
        outcome,
        channel: st.channel.clone(),
        priority: st.priority,
        at: st.at.clone(),
        path_end: st.path_end,
        with_applicant: st.returned.is_some(),
        tasks,
        steps,
        pre_approvals: st
            .pre_approvals
            .iter()
            .map(|p| PreApprovalView {
                id: p.id,
                node: p.node.clone(),
                materials: p.materials.clone(),
                formal: p.formal,
            })
            .collect(),
        promises,
        stage,
        elements,
        outstanding,
        supervised: st.supervised.clone(),
        supervision: st.supervision.clone(),
        credit_marks: st.credit_marks.iter().map(|(_, m)| m.clone()).collect(),
        timers: st.timers.clone(),
        copies: st.copies.clone(),
        calendar_errors: r.errors,
    }
}

pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Approved => "approved",
        Outcome::Rejected => "rejected",
        Outcome::Withdrawn => "withdrawn",
        Outcome::Revoked => "revoked",
    }
}
