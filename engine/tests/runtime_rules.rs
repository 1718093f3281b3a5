//! The rules of the policy documents that need more than tasks: the escalation ladder on
//! parallel steps, promises, stages and outstanding items up to 挂牌督办 and its 销号; elements
//! restricted to stages (先入库，后保障) or required afresh in a stage; a wait until a calendar
//! date (「10 月征集，次年 1 月印发」). Dates are worked out by hand on the 2026 calendar (and
//! the statute's provisional years after it) in the comments.

use jiff::Timestamp;
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::{Definition, Party};
use shenpi_engine::model::{NotificationEvent, Outcome};
use shenpi_engine::runtime::event::{ClockRef, OutstandingId, PromiseId, StageVisitId, StepId};
use shenpi_engine::runtime::{
    Actor, Command, CommandEnvelope, Event, InstanceState, Rejection, TaskId, TimerKind, apply,
    decide, replay, view,
};

mod common;
use common::{compiled, mainland, ts};

const WORKFLOW: &str = r#"
id: rules
name: 督办与要素
calendar: cn-mainland
start: intake
fields:
  - { id: tier, type: enum, values: [一般], required: true }
departments:
  - { id: fgw, supervisor: chief, leader: boss }
  - { id: zrzy, supervisor: zchief, leader: zboss }
roles:
  - { id: applicant }
  - { id: clerk, department: fgw }
  - { id: chief, department: fgw }
  - { id: boss, department: fgw }
  - { id: zr, department: zrzy }
  - { id: zchief, department: zrzy }
  - { id: zboss, department: zrzy }
materials:
  - { id: plan }
elements:
  - { id: land, category: land, owner: zrzy, attach_in: [shenpi] }
  - { id: funds, category: funds, owner: fgw }
  - { id: coord, category: coordination, owner: zrzy }
stages:
  - id: shouli
    department: fgw
    limit: 3wd
    elements:
      - { element: funds }
      - { element: coord, may_carry: true, carry_limit: 2wd }
  - id: shenpi
    elements:
      - { element: funds, fresh: true }
  - id: yinfa
warnings:
  escalation:
    - { after: 0wd, action: remind }
    - { after: 1wd, action: supervisor }
    - { after: 2wd, action: supervise }
  escalate: [task, step, promise, stage, outstanding]
nodes:
  - id: intake
    type: task
    stage: shouli
    assignee: { role: clerk }
    actions: [approve, conditional]
    limit: 2wd
    materials: [plan]
    conditional: { waivable: [plan], limit: 3wd, on_breach: [credit_mark] }
    next: review
  - id: review
    type: parallel
    stage: shenpi
    lead: z
    limit: 4wd
    branches:
      - { id: z, department: zrzy, assignee: { role: zr }, limit: 10wd }
      - { id: f, department: fgw, assignee: { role: clerk }, limit: 10wd }
    next: pause
  - id: pause
    name: 次年1月印发
    type: wait
    stage: yinfa
    wait_until: "01-10"
    next: done
  - { id: done, type: end, outcome: approved }
"#;

fn user(name: &str) -> Actor {
    match name {
        "chen" => Actor::new("chen", None, &["applicant"]),
        "li" => Actor::new("li", Some("fgw"), &["clerk"]),
        "chief" => Actor::new("chief", Some("fgw"), &["chief"]),
        "boss" => Actor::new("boss", Some("fgw"), &["boss"]),
        "zr" => Actor::new("zr", Some("zrzy"), &["zr"]),
        "zboss" => Actor::new("zboss", Some("zrzy"), &["zboss"]),
        other => Actor::new(other, None, &[]),
    }
}

/// An instance on [`WORKFLOW`], its log, and virtual time that fires timers as it passes.
struct Case {
    def: Definition,
    cal: Calendar,
    state: InstanceState,
    log: Vec<Event>,
    now: Timestamp,
}

impl Case {
    fn started(at: &str) -> Case {
        let (def, cal) = (compiled(WORKFLOW), mainland());
        let mut c = Case {
            def,
            cal,
            state: InstanceState::default(),
            log: Vec::new(),
            now: ts(at),
        };
        c.ok(
            "chen",
            Command::Start {
                project: serde_json::json!({"tier": "一般"}),
                channel: None,
            },
        );
        c
    }

    fn try_cmd(&mut self, who: &str, command: Command) -> Result<(), Rejection> {
        let env = CommandEnvelope {
            actor: user(who),
            command,
        };
        let events = decide(&self.def, &self.cal, &self.state, &env, self.now)?;
        for e in events {
            apply(&mut self.state, &e);
            self.log.push(e);
        }
        Ok(())
    }

    fn ok(&mut self, who: &str, command: Command) {
        let dbg = format!("{command:?}");
        self.try_cmd(who, command)
            .unwrap_or_else(|r| panic!("{who} {dbg}: rejected: {r}"));
    }

    /// The code of a refusal, checking that it changed nothing.
    fn refused(&mut self, who: &str, command: Command) -> &'static str {
        let before = self.state.clone();
        match self.try_cmd(who, command) {
            Ok(()) => panic!("{who}: expected a refusal"),
            Err(r) => {
                assert_eq!(self.state, before, "a refusal changes nothing");
                r.code()
            }
        }
    }

    fn at(&mut self, to: &str) {
        let to = ts(to);
        while let Some((id, due)) = self
            .state
            .timers
            .iter()
            .filter(|t| t.due <= to)
            .min_by_key(|t| (t.due, t.id))
            .map(|t| (t.id, t.due))
        {
            self.now = self.now.max(due);
            self.ok("system", Command::TimerFired { timer: id });
        }
        self.now = self.now.max(to);
    }

    fn task(&self, label: &str) -> TaskId {
        self.state
            .open_tasks()
            .find(|t| t.spec.label == label)
            .map(|t| t.spec.task)
            .unwrap_or_else(|| panic!("no open task `{label}`"))
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

    fn attach(&mut self, who: &str, element: &str) -> Result<(), Rejection> {
        self.try_cmd(
            who,
            Command::AttachElement {
                element: element.into(),
                fields: serde_json::Value::Null,
            },
        )
    }

    fn resolve(&mut self, who: &str, target: ClockRef) -> Result<(), Rejection> {
        self.try_cmd(
            who,
            Command::ResolveSupervision {
                target,
                note: "已办结，予以销号".into(),
            },
        )
    }

    /// Notifications about a thing past its deadline (not its yellow warning): `(kind,
    /// recipients)`.
    fn notices(&self, about: impl Fn(&Event) -> bool) -> Vec<(NotificationEvent, Vec<Party>)> {
        self.log
            .iter()
            .filter(|e| about(e))
            .filter_map(|e| match e {
                Event::NotificationRequested {
                    on: Some(on),
                    recipients,
                    ..
                } if *on != NotificationEvent::Yellow => Some((*on, recipients.clone())),
                _ => None,
            })
            .collect()
    }

    /// When `target` went under supervision, by the log.
    fn supervised(&self, target: &ClockRef) -> Option<Option<&str>> {
        self.log.iter().find_map(|e| match e {
            Event::ItemSupervised { target: t, leader } if t == target => Some(leader.as_deref()),
            _ => None,
        })
    }

    fn check_replay(&self) {
        assert_eq!(replay(&self.log), self.state, "the log rebuilds the state");
    }
}

fn role(r: &str) -> Party {
    Party::Role(r.into())
}

/// Approves intake on its first day, with funds attached in 受理: 受理 closes (coordination
/// carried as an outstanding item, 2wd) and the parallel step opens (4wd).
fn at_review(at: &str) -> Case {
    let mut c = Case::started(at);
    c.attach("li", "funds").expect("funds in 受理");
    c.approve("li", "intake");
    c
}

#[test]
fn an_overdue_parallel_step_climbs_the_ladder_to_supervision_and_is_resolved_once_joined() {
    // The step opens Mon 2026-03-02 with 4wd: due at the end of Fri 03-06.
    let mut c = at_review("2026-03-02T09:00:00+08:00");
    let step = ClockRef::Step(StepId(0));
    let about_step = |e: &Event| {
        matches!(e, Event::NotificationRequested { data, .. }
            if data.node.as_deref() == Some("review") && data.task.is_none())
    };
    c.at("2026-03-07T08:00:00+08:00");
    // Red at 00:00 Sat 03-07: overdue and rung 1 (remind) go to the lead branch and the
    // branches still open.
    let holders = vec![role("zr"), role("clerk")];
    assert_eq!(
        c.notices(about_step),
        vec![
            (NotificationEvent::Overdue, holders.clone()),
            (NotificationEvent::Escalation, holders),
        ]
    );
    // Rung 2 (supervisor) when the 1st working day after Fri ends: 00:00 Tue 03-10; the lead
    // branch's department (zrzy) answers for the step.
    c.at("2026-03-10T08:00:00+08:00");
    assert_eq!(
        c.notices(about_step).last(),
        Some(&(NotificationEvent::Escalation, vec![role("zchief")]))
    );
    assert_eq!(c.supervised(&step), None, "not yet 挂牌督办");
    // Rung 3 (supervise) when Tue 03-10 ends: on zrzy's leader's list.
    c.at("2026-03-11T08:00:00+08:00");
    assert_eq!(c.supervised(&step), Some(Some("zboss")));
    assert_eq!(
        c.notices(about_step).last(),
        Some(&(NotificationEvent::Supervise, vec![role("zboss")]))
    );
    let v = view(&c.def, &c.cal, &c.state, c.now);
    assert_eq!(v.supervision.len(), 2, "the step and the outstanding item");

    // 销号 is refused while the step is still open, by anyone but its leader, for what was
    // never supervised; accepted once it has joined, and only once.
    assert_eq!(
        c.refused(
            "zboss",
            Command::ResolveSupervision {
                target: step.clone(),
                note: "x".into()
            }
        ),
        "supervision_unsettled"
    );
    assert_eq!(
        c.refused(
            "boss",
            Command::ResolveSupervision {
                target: step.clone(),
                note: "x".into()
            }
        ),
        "not_authorised"
    );
    assert_eq!(
        c.refused(
            "zboss",
            Command::ResolveSupervision {
                target: ClockRef::Stage(StageVisitId(0)),
                note: "x".into()
            }
        ),
        "not_supervised"
    );
    c.attach("li", "funds").expect("funds afresh in 审批");
    c.approve("zr", "review.z");
    c.approve("li", "review.f");
    assert_eq!(
        c.refused(
            "zboss",
            Command::ResolveSupervision {
                target: step.clone(),
                note: " ".into()
            }
        ),
        "reason_required"
    );
    c.resolve("zboss", step.clone()).expect("销号 once settled");
    assert!(
        c.state
            .supervision_of(&step)
            .is_some_and(|s| s.is_resolved())
    );
    assert_eq!(
        c.refused(
            "zboss",
            Command::ResolveSupervision {
                target: step,
                note: "x".into()
            }
        ),
        "supervision_resolved"
    );
    c.check_replay();
}

#[test]
fn an_overdue_outstanding_item_is_supervised_by_the_element_owners_leader() {
    // Coordination carried out of 受理 on Mon 03-02 with 2wd: due at the end of Wed 03-04.
    let mut c = at_review("2026-03-02T09:00:00+08:00");
    let item = ClockRef::Outstanding(OutstandingId(0));
    // Supervise 2 working days after Wed: when Fri 03-06 ends.
    c.at("2026-03-06T23:00:00+08:00");
    assert_eq!(c.supervised(&item), None);
    c.at("2026-03-07T00:00:00+08:00");
    assert_eq!(c.supervised(&item), Some(Some("zboss")));
    assert_eq!(
        c.resolve("zboss", item.clone()).map_err(|r| r.code()),
        Err("supervision_unsettled")
    );
    c.attach("zr", "coord").expect("zrzy attaches coordination");
    c.resolve("zboss", item).expect("销号 once attached");
    assert!(
        c.state
            .supervision
            .iter()
            .all(|s| s.target != ClockRef::Outstanding(OutstandingId(0)) || s.is_resolved())
    );
    c.check_replay();
}

#[test]
fn a_breached_promise_climbs_the_ladder_until_its_material_is_verified() {
    let mut c = Case::started("2026-03-02T09:00:00+08:00");
    c.attach("li", "funds").expect("funds");
    let intake = c.task("intake");
    c.ok(
        "li",
        Command::ApproveConditional {
            task: intake,
            waive: vec!["plan".into()],
            limit: None,
            comment: None,
        },
    );
    let promise = ClockRef::Promise(PromiseId(0));
    // 3wd from Mon 03-02: due at the end of Thu 03-05, breached at 00:00 Fri 03-06 (a credit
    // mark, no revocation), then the ladder: supervise when the 2nd working day after Thu (Mon
    // 03-09) ends, 00:00 Tue 03-10, to the leader of fgw (the pre-approving department).
    c.at("2026-03-09T23:00:00+08:00");
    assert!(c.log.iter().any(|e| e.kind() == "promise_breached"));
    assert_eq!(c.supervised(&promise), None);
    c.at("2026-03-10T00:00:00+08:00");
    assert_eq!(c.supervised(&promise), Some(Some("boss")));
    c.ok(
        "chen",
        Command::SupplyMaterial {
            material: "plan".into(),
            files: Vec::new(),
        },
    );
    assert_eq!(
        c.resolve("boss", promise.clone()).map_err(|r| r.code()),
        Err("supervision_unsettled")
    );
    let verify = c.task("verify.plan");
    c.ok(
        "li",
        Command::VerifyMaterial {
            task: verify,
            accepted: true,
            reason: None,
        },
    );
    c.resolve("boss", promise).expect("销号 once verified");
    assert!(
        !c.state.timers.iter().any(|t| matches!(
            &t.kind,
            TimerKind::Ladder {
                target: ClockRef::Promise(_),
                ..
            }
        )),
        "no rung of a verified promise stays armed"
    );
    c.check_replay();
}

#[test]
fn an_overdue_stage_escalates_to_its_department_and_a_task_is_resolved_too() {
    // 受理 (3wd) entered Mon 03-02: due at the end of Thu 03-05. Intake (2wd) is left open.
    let mut c = Case::started("2026-03-02T09:00:00+08:00");
    let stage = ClockRef::Stage(StageVisitId(0));
    let about_stage = |e: &Event| {
        matches!(e, Event::NotificationRequested { data, .. }
            if data.stage.as_deref() == Some("shouli") && data.element.is_none())
    };
    c.at("2026-03-06T08:00:00+08:00");
    assert_eq!(
        c.notices(about_stage).first(),
        Some(&(
            NotificationEvent::Overdue,
            vec![Party::Department("fgw".into())]
        )),
        "the stage's department hears of it"
    );
    // Supervise when the 2nd working day after Thu 03-05 (Mon 03-09) ends.
    c.at("2026-03-10T00:00:00+08:00");
    assert_eq!(c.supervised(&stage), Some(Some("boss")));
    // The task went under supervision too (its own ladder: due end of Wed 03-04, supervise
    // when Fri 03-06 ends); it is resolved once decided.
    let intake = c.task("intake");
    assert_eq!(c.state.supervised, vec![intake]);
    assert_eq!(
        c.resolve("boss", ClockRef::Task(intake))
            .map_err(|r| r.code()),
        Err("supervision_unsettled")
    );
    c.attach("li", "funds").expect("funds");
    c.approve("li", "intake");
    c.resolve("boss", ClockRef::Task(intake))
        .expect("销号 of the decided task");
    assert!(c.state.supervised.is_empty(), "off the leader's list");
    c.resolve("boss", stage).expect("销号 of the closed stage");
    c.check_replay();
}

#[test]
fn land_is_attached_only_once_the_project_is_in_the_library() {
    let mut c = Case::started("2026-03-02T09:00:00+08:00");
    // 先入库，后保障: not in 受理 ...
    assert_eq!(
        c.attach("zr", "land").map_err(|r| r.code()),
        Err("element_not_in_stage")
    );
    assert!(c.state.elements.is_empty());
    // ... but in 审批.
    c.attach("li", "funds").expect("funds");
    c.approve("li", "intake");
    c.attach("zr", "land").expect("land in 审批");
    // The wrong department is refused with `not_authorised`.
    assert_eq!(
        c.attach("li", "coord").map_err(|r| r.code()),
        Err("not_authorised")
    );
}

#[test]
fn a_fresh_element_must_be_attached_again_in_its_stage() {
    let mut c = at_review("2026-03-02T09:00:00+08:00");
    // Funds were attached in 受理; 审批 wants its own attachment.
    let v = view(&c.def, &c.cal, &c.state, c.now);
    let funds = v
        .stage
        .as_ref()
        .and_then(|s| s.elements.iter().find(|e| e.element == "funds"))
        .map(|e| e.attached);
    assert_eq!(
        funds,
        Some(false),
        "an earlier stage's attachment does not count"
    );
    c.approve("zr", "review.z");
    let f = c.task("review.f");
    assert_eq!(
        c.refused(
            "li",
            Command::Approve {
                task: f,
                comment: None
            }
        ),
        "stage_cannot_close"
    );
    c.attach("li", "funds").expect("funds afresh");
    c.approve("li", "review.f");
    assert_eq!(c.state.at.as_deref(), Some("pause"));
}

/// When the wait of `pause` entered at `at` ends.
fn wait_ends(at: &str) -> Timestamp {
    let mut c = at_review(at);
    c.attach("li", "funds").expect("funds afresh");
    c.approve("zr", "review.z");
    c.approve("li", "review.f");
    assert_eq!(c.state.at.as_deref(), Some("pause"));
    c.state
        .timers
        .iter()
        .find(|t| matches!(t.kind, TimerKind::Wait { .. }))
        .map(|t| t.due)
        .expect("the wait's timer")
}

#[test]
fn a_wait_until_january_runs_into_the_next_year() {
    // 10 月征集，次年 1 月印发: entered in October 2026 the wait runs to 1 月 10 日 2027, a
    // Sunday, so to the start of Mon 2027-01-11 (a provisional year: derived from the statute).
    assert_eq!(
        wait_ends("2026-10-12T09:00:00+08:00"),
        ts("2027-01-11T00:00:00+08:00")
    );
    // Across the year end, and on the pinned date 2026-12-01.
    assert_eq!(
        wait_ends("2026-12-01T09:00:00+08:00"),
        ts("2027-01-11T00:00:00+08:00")
    );
    // Entered on 2027-01-04 (before the 10th): the same January.
    assert_eq!(
        wait_ends("2027-01-04T09:00:00+08:00"),
        ts("2027-01-11T00:00:00+08:00")
    );
    // Entered on 2031-02-10, after the 10th of January: the next one, Sat 2032-01-10, so the
    // start of Mon 2032-01-12.
    assert_eq!(
        wait_ends("2031-02-10T09:00:00+08:00"),
        ts("2032-01-12T00:00:00+08:00")
    );
}

#[test]
fn the_wait_goes_on_when_its_date_comes() {
    let mut c = at_review("2026-12-01T09:00:00+08:00");
    c.attach("li", "funds").expect("funds afresh");
    c.approve("zr", "review.z");
    c.approve("li", "review.f");
    c.at("2027-01-10T23:59:00+08:00");
    assert_eq!(c.state.outcome, None, "still waiting on Sunday");
    c.at("2027-01-11T00:00:00+08:00");
    assert_eq!(c.state.outcome, Some(Outcome::Approved));
    c.check_replay();
}

/// 挂牌督办 by hand (`Supervise`): only who oversees a department (a supervisor or leader role)
/// may; it records the task on the leader of the task's department's list (`Supervised`) and
/// notifies the task's holders and that leader, once however often it is asked; 销号
/// (`ResolveSupervision`) is that leader's, with a note, once the task is settled, and takes the
/// task off the list.
#[test]
fn supervise_by_hand_lists_the_task_for_its_leader_until_resolved() {
    let mut c = Case::started("2026-03-02T09:00:00+08:00");
    let intake = c.task("intake");
    let supervise = |task| Command::Supervise {
        task,
        reason: Some("群众反映办理缓慢".into()),
    };
    // Not the applicant, not the task's own clerk, not a reviewer of another department.
    for who in ["chen", "li", "zr"] {
        assert_eq!(c.refused(who, supervise(intake)), "not_authorised", "{who}");
    }
    assert_eq!(c.refused("chief", supervise(TaskId(99))), "unknown_task");

    // fgw's supervisor puts it on fgw's leader's list: these two events and nothing else.
    let before = c.log.len();
    c.ok("chief", supervise(intake));
    let recorded = &c.log[before..];
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(
        recorded[0],
        Event::Supervised {
            task: intake,
            leader: Some("boss".into()),
        }
    );
    match &recorded[1] {
        Event::NotificationRequested {
            on: Some(NotificationEvent::Supervise),
            recipients,
            data,
            ..
        } => {
            assert_eq!(recipients, &vec![role("clerk"), role("boss")]);
            assert_eq!(data.task, Some(intake));
            assert_eq!(data.node.as_deref(), Some("intake"));
            assert_eq!(data.by.as_deref(), Some("chief"));
            assert_eq!(data.text.as_deref(), Some("群众反映办理缓慢"));
        }
        other => panic!("expected the 挂牌督办 notice, got {other:?}"),
    }
    assert_eq!(c.state.supervised, vec![intake]);
    let target = ClockRef::Task(intake);
    let item = c.state.supervision_of(&target).expect("on the list");
    assert_eq!(item.leader.as_deref(), Some("boss"));
    assert!(!item.is_resolved());
    // Asked again, by another who oversees (zrzy's leader): still once, nothing recorded.
    let before = c.log.len();
    c.ok("zboss", supervise(intake));
    assert_eq!(c.log.len(), before, "a supervised task stays so, once");
    assert_eq!(c.state.supervision.len(), 1);
    let v = view(&c.def, &c.cal, &c.state, c.now);
    assert_eq!(v.supervision.len(), 1, "the view lists it");

    // 销号: only fgw's leader, with a note, and not while the task is still open.
    let resolve = |note: &str| Command::ResolveSupervision {
        target: target.clone(),
        note: note.into(),
    };
    assert_eq!(c.refused("chief", resolve("x")), "not_authorised");
    assert_eq!(c.refused("zboss", resolve("x")), "not_authorised");
    assert_eq!(c.refused("boss", resolve(" ")), "reason_required");
    assert_eq!(c.refused("boss", resolve("x")), "supervision_unsettled");
    c.attach("li", "funds").expect("funds in 受理");
    c.approve("li", "intake");
    assert_eq!(c.refused("chief", supervise(intake)), "already_decided");
    let before = c.log.len();
    c.resolve("boss", target.clone())
        .expect("销号 once settled");
    assert_eq!(
        c.log[before..],
        [Event::SupervisionResolved {
            target: target.clone(),
            by: "boss".into(),
            note: "已办结，予以销号".into(),
        }]
    );
    assert!(c.state.supervised.is_empty(), "off the list");
    let item = c.state.supervision_of(&target).expect("kept in the record");
    assert!(item.is_resolved());
    assert_eq!(item.resolved_by.as_deref(), Some("boss"));
    assert_eq!(c.refused("boss", resolve("x")), "supervision_resolved");
    c.check_replay();
}
