//! Migration (迁移) of running instances between versions, in the pure engine: the plan that
//! says whether an instance can move and what moving does, the command that moves it, and the
//! properties a rule writer relies on (an identical version changes nothing but the version; a
//! moved instance can still reach an end; a blocked one is refused and nothing is recorded).

use jiff::Timestamp;
use proptest::prelude::*;
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::Definition;
use shenpi_engine::limit::Limit;
use shenpi_engine::runtime::event::{ClockRef, TaskKind, TimerKind};
use shenpi_engine::runtime::migrate::{
    Blocker, Effect, Mapping, MappingProblem, Subject, check_mapping, decide_migration, plan,
    report,
};
use shenpi_engine::runtime::state::Status;
use shenpi_engine::runtime::{
    Actor, Command, CommandEnvelope, Event, InstanceState, Rejection, TaskId, apply, decide,
};

mod common;
use common::{compiled, mainland, ts};

/// Version 1: intake (stage 受理) → a 会签 of departments a and b (stage 审批) → done.
const V1: &str = r#"
id: mig
name: 迁移测试
calendar: cn-mainland
start: intake
departments:
  - { id: a, name: 甲局 }
  - { id: b, name: 乙局 }
  - { id: c, name: 丙局 }
roles:
  - { id: applicant }
  - { id: clerk, department: a }
  - { id: ra, department: a }
  - { id: rb, department: b }
  - { id: rc, department: c }
materials:
  - { id: plan, name: 规划方案 }
  - { id: land, name: 用地预审, red_line: true }
stages:
  - { id: accept, name: 受理 }
  - { id: review, name: 审批 }
nodes:
  - id: intake
    name: 受理审查
    type: task
    stage: accept
    assignee: { role: clerk }
    actions: [approve, reject, conditional]
    limit: 5wd
    materials: [plan, land]
    conditional:
      waivable: [plan]
      limit: 20wd
      on_breach: [credit_mark]
      verify_by: { role: clerk }
    next: joint
  - id: joint
    name: 联合审查
    type: parallel
    stage: review
    limit: 10wd
    branches:
      - { id: a, department: a, assignee: { role: ra }, limit: 5wd }
      - { id: b, department: b, assignee: { role: rb }, limit: 5wd }
    join: { policy: all }
    next: done
  - { id: done, name: 办结, type: end, outcome: approved }
"#;

fn cal() -> Calendar {
    mainland()
}

fn def(src: &str) -> Definition {
    compiled(src)
}

fn actor(name: &str) -> Actor {
    match name {
        "zhang" => Actor::new("zhang", None, &["applicant"]),
        "li" => Actor::new("li", Some("a"), &["clerk"]),
        "ra" => Actor::new("ra", Some("a"), &["ra"]),
        "rb" => Actor::new("rb", Some("b"), &["rb"]),
        "rc" => Actor::new("rc", Some("c"), &["rc"]),
        "wang" => Actor::new("wang", None, &["policy_staff"]),
        other => Actor::new(other, None, &[]),
    }
}

fn run(d: &Definition, st: &mut InstanceState, who: &str, cmd: Command, now: Timestamp) {
    let env = CommandEnvelope {
        actor: actor(who),
        command: cmd,
    };
    let events = decide(d, &cal(), st, &env, now).unwrap_or_else(|r| panic!("{who}: {r}"));
    for e in &events {
        apply(st, e);
    }
}

fn started(d: &Definition, now: Timestamp) -> InstanceState {
    let mut st = InstanceState::default();
    run(
        d,
        &mut st,
        "zhang",
        Command::Start {
            project: serde_json::json!({}),
            channel: None,
        },
        now,
    );
    st
}

fn migrate_cmd(mapping: Mapping) -> CommandEnvelope {
    CommandEnvelope {
        actor: actor("wang"),
        command: Command::Migrate {
            from: 1,
            to: 2,
            mapping,
        },
    }
}

fn open_task_at(st: &InstanceState, label: &str) -> TaskId {
    st.open_tasks()
        .find(|t| t.spec.label == label)
        .map(|t| t.spec.task)
        .unwrap_or_else(|| panic!("no open task {label}"))
}

/// Approves open work tasks (in order) until the instance ends; false if it gets stuck.
fn drive_to_end(d: &Definition, st: &mut InstanceState, mut now: Timestamp) -> bool {
    for _ in 0..40 {
        if st.status == Status::Ended {
            return true;
        }
        let Some(t) = st.open_tasks().find(|t| t.spec.kind == TaskKind::Work) else {
            return false;
        };
        let who = match t.spec.department.as_deref() {
            Some("b") => "rb",
            Some("c") => "rc",
            _ if t.spec.branch.is_some() => "ra",
            _ => "li",
        };
        let task = t.spec.task;
        now += jiff::SignedDuration::from_hours(24);
        let env = CommandEnvelope {
            actor: actor(who),
            command: Command::Approve {
                task,
                comment: None,
            },
        };
        match decide(d, &cal(), st, &env, now) {
            Ok(events) => {
                for e in &events {
                    apply(st, e);
                }
            }
            Err(_) => return false,
        }
    }
    st.status == Status::Ended
}

#[test]
fn a_parallel_step_with_one_branch_decided_moves_to_a_version_that_adds_a_department() {
    let v1 = def(V1);
    // Version 2 adds department c to the 会签 and gives b two more days.
    let v2 = def(&V1.replace(
        "      - { id: b, department: b, assignee: { role: rb }, limit: 5wd }\n",
        "      - { id: b, department: b, assignee: { role: rb }, limit: 7wd }\n      - { id: c, department: c, assignee: { role: rc }, limit: 3wd }\n",
    ));
    let t0 = ts("2026-03-02T09:00:00+08:00");
    let mut st = started(&v1, t0);
    run(
        &v1,
        &mut st,
        "li",
        Command::Approve {
            task: TaskId(0),
            comment: None,
        },
        ts("2026-03-03T09:00:00+08:00"),
    );
    let a = open_task_at(&st, "joint.a");
    let b = open_task_at(&st, "joint.b");
    run(
        &v1,
        &mut st,
        "ra",
        Command::Approve {
            task: a,
            comment: None,
        },
        ts("2026-03-04T09:00:00+08:00"),
    );
    let now = ts("2026-03-05T09:00:00+08:00");
    let before = st.clone();

    let p = plan(&v1, &v2, &cal(), &st, &Mapping::default(), now);
    assert!(p.can_move(), "{:?}", p.blockers);
    // Department b's task is re-limited with the days it used kept (opened 3 Mar, two working
    // days by 5 Mar); c's task is opened; the step's clock is kept.
    let b_change = p
        .changes
        .iter()
        .find(|c| matches!(&c.subject, Subject::Task { task: Some(t), .. } if *t == b))
        .expect("b's task");
    assert_eq!(
        b_change.effect,
        Effect::Relimited {
            from: Some(Limit::working_days(5)),
            to: Some(Limit::working_days(7)),
            used: 2
        }
    );
    assert!(p.changes.iter().any(|c| matches!(
        (&c.subject, &c.effect),
        (Subject::Task { task: None, branch: Some(br), .. }, Effect::Opened { limit: Some(l) })
            if br == "c" && *l == Limit::working_days(3)
    )));
    assert!(p.changes.iter().any(|c| matches!(
        (&c.subject, &c.effect),
        (Subject::Step { .. }, Effect::Kept { .. })
    )));

    let events = decide_migration(&v1, &v2, &cal(), &st, &migrate_cmd(Mapping::default()), now)
        .expect("moves");
    assert!(matches!(
        events.first(),
        Some(Event::Migrated { from: 1, to: 2, .. })
    ));
    for e in &events {
        apply(&mut st, e);
    }
    // a's decision is kept; b's deadline moved from 10 Mar (5 wd after 3 Mar) to 12 Mar; c has
    // its own task, due 3 working days after the move (10 Mar).
    let a_task = st.task(a).unwrap();
    assert_eq!(a_task.decision, before.task(a).unwrap().decision);
    let due_of = |st: &InstanceState, t: TaskId| {
        st.timers
            .iter()
            .find(|x| {
                x.kind
                    == TimerKind::Due {
                        target: ClockRef::Task(t),
                    }
            })
            .map(|x| x.due)
    };
    assert_eq!(due_of(&before, b), Some(ts("2026-03-11T00:00:00+08:00")));
    assert_eq!(due_of(&st, b), Some(ts("2026-03-13T00:00:00+08:00")));
    let c = open_task_at(&st, "joint.c");
    assert_eq!(st.task(c).unwrap().spec.department.as_deref(), Some("c"));
    assert_eq!(due_of(&st, c), Some(ts("2026-03-11T00:00:00+08:00")));
    // The report lists the moved and the new timers.
    let r = report(
        &v1,
        &v2,
        &cal(),
        &before,
        &migrate_cmd(Mapping::default()),
        now,
    );
    assert!(r.can_move);
    assert!(r.timers.iter().any(|t| t.kind
        == TimerKind::Due {
            target: ClockRef::Task(b)
        }
        && t.old_due == Some(ts("2026-03-11T00:00:00+08:00"))
        && t.new_due == Some(ts("2026-03-13T00:00:00+08:00"))));
    // The step now waits for b and c under version 2, and ends when both approve.
    assert!(drive_to_end(&v2, &mut st, now));
    assert_eq!(st.outcome, Some(shenpi_engine::model::Outcome::Approved));
}

#[test]
fn a_stage_renamed_through_a_mapping() {
    let v1 = def(V1);
    let v2 = def(&V1
        .replace("id: accept, name: 受理", "id: intake_stage, name: 受理阶段")
        .replace("stage: accept", "stage: intake_stage"));
    let t0 = ts("2026-03-02T09:00:00+08:00");
    let st = started(&v1, t0);
    let now = ts("2026-03-03T09:00:00+08:00");
    // Without the mapping the open stage is gone.
    let p = plan(&v1, &v2, &cal(), &st, &Mapping::default(), now);
    assert_eq!(
        p.blockers,
        vec![Blocker::StageGone {
            stage: "accept".into()
        }]
    );
    let refused = decide_migration(&v1, &v2, &cal(), &st, &migrate_cmd(Mapping::default()), now);
    assert!(matches!(refused, Err(Rejection::MigrationBlocked { .. })));
    // With it, the visit takes the new name.
    let mut m = Mapping::default();
    m.stages.insert("accept".into(), "intake_stage".into());
    let p = plan(&v1, &v2, &cal(), &st, &m, now);
    assert!(p.can_move(), "{:?}", p.blockers);
    assert!(p.changes.iter().any(|c| c.effect
        == Effect::Renamed {
            from: "accept".into()
        }));
    let mut moved = st.clone();
    for e in decide_migration(&v1, &v2, &cal(), &st, &migrate_cmd(m), now).expect("moves") {
        apply(&mut moved, &e);
    }
    assert_eq!(
        moved.current_stage().map(|s| s.stage.as_str()),
        Some("intake_stage")
    );
    assert!(drive_to_end(&v2, &mut moved, now));
}

#[test]
fn a_node_renamed_through_a_mapping_keeps_its_task_and_days() {
    let v1 = def(V1);
    let v2 = def(&V1
        .replace("id: intake\n", "id: accept_review\n")
        .replace("start: intake", "start: accept_review"));
    let st = started(&v1, ts("2026-03-02T09:00:00+08:00"));
    let now = ts("2026-03-04T09:00:00+08:00");
    let p = plan(&v1, &v2, &cal(), &st, &Mapping::default(), now);
    assert!(p.blockers.contains(&Blocker::NodeGone {
        node: "intake".into()
    }));
    let mut m = Mapping::default();
    m.nodes.insert("intake".into(), "accept_review".into());
    let mut moved = st.clone();
    for e in decide_migration(&v1, &v2, &cal(), &st, &migrate_cmd(m), now).expect("moves") {
        apply(&mut moved, &e);
    }
    let t = moved.task(TaskId(0)).unwrap();
    assert_eq!(t.spec.node, "accept_review");
    assert_eq!(moved.at.as_deref(), Some("accept_review"));
    // Same limit: the clock (and its timers) are untouched.
    assert_eq!(t.spec.clock, st.task(TaskId(0)).unwrap().spec.clock);
    assert_eq!(moved.timers, st.timers);
}

#[test]
fn blockers_name_what_stops_a_move() {
    let v1 = def(V1);
    let t0 = ts("2026-03-02T09:00:00+08:00");
    // An open 容缺 promise for `plan`; version 2 makes `plan` red-line.
    let mut st = started(&v1, t0);
    run(
        &v1,
        &mut st,
        "li",
        Command::ApproveConditional {
            task: TaskId(0),
            waive: vec!["plan".into()],
            limit: None,
            comment: None,
        },
        ts("2026-03-03T09:00:00+08:00"),
    );
    let now = ts("2026-03-04T09:00:00+08:00");
    let red = def(&V1
        .replace(
            "{ id: plan, name: 规划方案 }",
            "{ id: plan, name: 规划方案, red_line: true }",
        )
        .replace("waivable: [plan]", "waivable: []"));
    let p = plan(&v1, &red, &cal(), &st, &Mapping::default(), now);
    assert!(
        p.blockers.contains(&Blocker::MaterialRedLine {
            material: "plan".into()
        }),
        "{:?}",
        p.blockers
    );
    // Version 3 replaces department b by c while the step is open.
    let no_b = def(&V1.replace(
        "      - { id: b, department: b, assignee: { role: rb }, limit: 5wd }\n",
        "      - { id: c, department: c, assignee: { role: rc }, limit: 5wd }\n",
    ));
    let p = plan(&v1, &no_b, &cal(), &st, &Mapping::default(), now);
    assert!(
        p.blockers.contains(&Blocker::BranchRemoved {
            node: "joint".into(),
            branch: "b".into()
        }),
        "{:?}",
        p.blockers
    );
    // An ended instance has nothing to move.
    let mut ended = started(&v1, t0);
    run(
        &v1,
        &mut ended,
        "zhang",
        Command::Withdraw { reason: None },
        now,
    );
    assert_eq!(
        plan(&v1, &v1, &cal(), &ended, &Mapping::default(), now).blockers,
        vec![Blocker::NotRunning]
    );
    // Only policy staff may move an instance.
    let env = CommandEnvelope {
        actor: actor("li"),
        command: Command::Migrate {
            from: 1,
            to: 2,
            mapping: Mapping::default(),
        },
    };
    assert!(matches!(
        decide_migration(&v1, &v1, &cal(), &st, &env, now),
        Err(Rejection::NotAuthorised { .. })
    ));
}

#[test]
fn a_mapping_is_checked_before_anything_runs() {
    let v1 = def(V1);
    let other = def(&V1.replace("id: mig\n", "id: other\n"));
    assert_eq!(
        check_mapping(&v1, &other, &Mapping::default()),
        vec![MappingProblem::DifferentWorkflow {
            from: "mig".into(),
            to: "other".into()
        }]
    );
    let mut m = Mapping::default();
    m.nodes.insert("nowhere".into(), "intake".into());
    m.nodes.insert("intake".into(), "gone".into());
    m.stages.insert("accept".into(), "nope".into());
    let problems = check_mapping(&v1, &v1, &m);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(
        problems.iter().map(|p| p.at()).collect::<Vec<_>>(),
        [
            "mapping.nodes.intake",
            "mapping.nodes.nowhere",
            "mapping.stages.accept"
        ]
    );
    let st = started(&v1, ts("2026-03-02T09:00:00+08:00"));
    let refused = decide_migration(
        &v1,
        &v1,
        &cal(),
        &st,
        &migrate_cmd(m),
        ts("2026-03-03T09:00:00+08:00"),
    );
    assert!(matches!(refused, Err(Rejection::InvalidMapping { .. })));
}

/// A version 2 made from version 1 by a few edits, with the mapping that goes with it.
#[derive(Debug, Clone)]
struct Edit {
    intake_limit: u32,
    branch_b_limit: u32,
    add_c: bool,
    rename_intake: bool,
    drop_b: bool,
    step_limit: Option<u32>,
}

fn edited(e: &Edit) -> (String, Mapping) {
    let mut src = V1.replace(
        "    limit: 5wd\n    materials",
        &format!("    limit: {}wd\n    materials", e.intake_limit),
    );
    let b_line = "      - { id: b, department: b, assignee: { role: rb }, limit: 5wd }\n";
    let mut branches = if e.drop_b {
        String::new()
    } else {
        format!(
            "      - {{ id: b, department: b, assignee: {{ role: rb }}, limit: {}wd }}\n",
            e.branch_b_limit
        )
    };
    // A parallel step needs two departments: dropping b brings in c.
    if e.add_c || e.drop_b {
        branches.push_str("      - { id: c, department: c, assignee: { role: rc }, limit: 3wd }\n");
    }
    src = src.replace(b_line, &branches);
    src = match e.step_limit {
        Some(l) => src.replace("    limit: 10wd\n", &format!("    limit: {l}wd\n")),
        None => src.replace("    limit: 10wd\n", ""),
    };
    let mut m = Mapping::default();
    if e.rename_intake {
        src = src
            .replace("id: intake\n", "id: first_review\n")
            .replace("start: intake", "start: first_review");
        m.nodes.insert("intake".into(), "first_review".into());
    }
    (src, m)
}

fn edits() -> impl Strategy<Value = Edit> {
    (
        1u32..8,
        1u32..8,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(2u32..15),
    )
        .prop_map(
            |(intake_limit, branch_b_limit, add_c, rename_intake, drop_b, step_limit)| Edit {
                intake_limit,
                branch_b_limit,
                add_c,
                rename_intake,
                drop_b,
                step_limit,
            },
        )
}

/// An instance of version 1 after `progress` steps: 0 at intake, 1 in the step, 2 with a
/// decided, 3 ended.
fn progressed(v1: &Definition, progress: u8, t0: Timestamp) -> InstanceState {
    let mut st = started(v1, t0);
    let mut now = t0;
    let mut step = |st: &mut InstanceState, who: &str, label: &str| {
        now += jiff::SignedDuration::from_hours(25);
        let task = open_task_at(st, label);
        run(
            v1,
            st,
            who,
            Command::Approve {
                task,
                comment: None,
            },
            now,
        );
    };
    if progress >= 1 {
        step(&mut st, "li", "intake");
    }
    if progress >= 2 {
        step(&mut st, "ra", "joint.a");
    }
    if progress >= 3 {
        step(&mut st, "rb", "joint.b");
    }
    st
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Moving between two identical versions changes nothing but the version: the state after
    /// is the state before, one event later, and no timer moves.
    #[test]
    fn identical_versions_change_nothing_but_the_version(progress in 0u8..3, days in 0i64..6) {
        let v1 = def(V1);
        let v2 = def(V1);
        let st = progressed(&v1, progress, ts("2026-03-02T09:00:00+08:00"));
        let now = ts("2026-03-06T09:00:00+08:00") + jiff::SignedDuration::from_hours(24 * days);
        let events = decide_migration(&v1, &v2, &cal(), &st, &migrate_cmd(Mapping::default()), now)
            .expect("an identical version always takes a running instance");
        prop_assert_eq!(events.len(), 1);
        let mut after = st.clone();
        apply(&mut after, &events[0]);
        let mut expect = st.clone();
        expect.version += 1;
        prop_assert_eq!(after, expect);
    }

    /// After any move the engine allowed, the instance can still reach an end under the new
    /// version; a move the plan refuses is refused by the command, which records nothing.
    #[test]
    fn a_moved_instance_reaches_an_end_and_a_blocked_one_is_refused(e in edits(), progress in 0u8..4) {
        let v1 = def(V1);
        let (src, mapping) = edited(&e);
        let v2 = def(&src);
        let t0 = ts("2026-03-02T09:00:00+08:00");
        let st = progressed(&v1, progress, t0);
        let now = ts("2026-03-09T09:00:00+08:00");
        let p = plan(&v1, &v2, &cal(), &st, &mapping, now);
        let answer = decide_migration(&v1, &v2, &cal(), &st, &migrate_cmd(mapping.clone()), now);
        match answer {
            Ok(events) => {
                prop_assert!(p.can_move());
                let mut moved = st.clone();
                for ev in &events {
                    apply(&mut moved, ev);
                }
                prop_assert!(drive_to_end(&v2, &mut moved, now), "stuck after the move: {:?}", moved.open_tasks().map(|t| t.spec.label.clone()).collect::<Vec<_>>());
            }
            Err(Rejection::MigrationBlocked { blockers }) => {
                prop_assert!(!p.can_move());
                prop_assert_eq!(blockers, p.blockers);
            }
            Err(other) => prop_assert!(false, "unexpected refusal {other}"),
        }
    }
}
