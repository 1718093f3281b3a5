//! 政策模拟: the figures a comparison gives, checked exactly on small populations, and the
//! population file's errors.

use std::path::Path;

use jiff::Timestamp;
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::{Definition, compile};
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::whatif::{Population, compare, run};

mod common;

const CALENDAR: &str = include_str!("../../workflows/calendars/cn-mainland.yaml");

fn calendar() -> Calendar {
    Calendar::from_yaml("cn-mainland", CALENDAR).expect("calendar")
}

fn definition(src: &str) -> Definition {
    let wf = parse_workflow(src).unwrap_or_else(|d| panic!("parse: {d:?}"));
    // The shipped folder's context: its calendars, message and document templates.
    let ctx = common::shipped_context();
    compile(wf, &ctx).unwrap_or_else(|d| panic!("compile: {d:#?}"))
}

/// One review task with a limit; `LIMIT` is replaced per version.
const SMALL: &str = r#"
id: small
name: 小型审批
calendar: cn-mainland
start: review
fields:
  - { id: name, type: string }
departments:
  - { id: a, supervisor: chief, leader: leader }
roles:
  - { id: applicant }
  - { id: clerk, department: a }
  - { id: chief, department: a }
  - { id: leader, department: a }
warnings:
  yellow_at: 75%
  escalation:
    - { after: 0wd, action: remind }
    - { after: 2wd, action: supervise }
nodes:
  - { id: review, type: task, assignee: { role: clerk }, actions: [approve], limit: LIMIT, next: done }
  - { id: done, type: end, outcome: approved }
"#;

const FOUR_DAYS: &str = r#"
seed: 1
start: 2027-03-01
per_month: 10
months: 1
respond:
  default: { value: 4 }
"#;

fn population(src: &str, def: &Definition) -> shenpi_engine::whatif::Cohort {
    Population::from_yaml(src)
        .expect("population")
        .cohort(def, src)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn end_of_2027() -> Timestamp {
    "2027-12-31T00:00:00+08:00".parse().unwrap()
}

#[test]
fn halving_a_limit_turns_every_four_day_answer_red() {
    let cal = calendar();
    let base = definition(&SMALL.replace("LIMIT", "6wd"));
    let draft = definition(&SMALL.replace("LIMIT", "3wd"));
    let cohort = population(FOUR_DAYS, &base);
    let c = compare(&base, &draft, &cal, &cohort, end_of_2027());

    // Ten projects, each answered after 4 working days: within 6 (yellow at ⌈6×75%⌉ = 5 is not
    // reached), past 3 (yellow after ⌈3×75%⌉ = 3 days, red after 3).
    assert_eq!(c.base.projects, 10);
    assert_eq!((c.base.approved, c.draft.approved), (10, 10));
    assert_eq!((c.base.yellow, c.base.red), (0, 0));
    assert_eq!((c.draft.yellow, c.draft.red), (10, 10));
    // The first rung (0wd after the deadline: 提醒) fires; 挂牌督办 two days later never does.
    assert_eq!(c.base.escalations, 0);
    assert_eq!(c.draft.escalations, 10);
    assert_eq!(c.draft.supervised, 0);
    assert_eq!(c.base.lead.p50, Some(4));
    assert_eq!(c.draft.lead.p90, Some(4));
    assert_eq!(c.base.departments["a"].p50, Some(4));
    assert_eq!(c.base.refused_actions + c.draft.refused_actions, 0);
}

#[test]
fn slower_answers_reach_supervision_and_stay_open_at_the_horizon() {
    let cal = calendar();
    let def = definition(&SMALL.replace("LIMIT", "3wd"));
    let src = FOUR_DAYS.replace("{ value: 4 }", "{ value: 9 }");
    let cohort = population(&src, &def);
    // Horizon one week after the last arrival: nobody has answered yet.
    let horizon: Timestamp = "2027-03-31T00:00:00+08:00".parse().unwrap();
    let f = run(&def, &cal, &cohort, horizon);
    assert_eq!(f.projects, 10);
    assert!(f.open_at_horizon > 0 && f.open_at_horizon < 10, "{f:?}");
    assert_eq!(f.approved + f.open_at_horizon, 10);
    // The latest arrivals are not yet past their 3 days.
    assert!(
        f.overdue_open > 0 && f.overdue_open < f.open_at_horizon,
        "{f:?}"
    );

    let f = run(&def, &cal, &cohort, end_of_2027());
    // 9 days against 3: red after 3, supervised 2 days later, answered on day 9.
    assert_eq!((f.approved, f.red, f.supervised), (10, 10, 10));
    assert_eq!(f.escalations, 20);
    assert_eq!(f.overdue_open, 0);
}

const PROVINCIAL: &str = include_str!("../../workflows/provincial-major.yaml");

const MIXED: &str = r#"
seed: 42
start: 2027-01-04
per_month: 8
months: 6
fields:
  tier: { choose: { 重中之重: 1, 省级重大: 1, 年度省级重大: 2 } }
  investment: { between: [5000, 900000] }
  funding: { choose: { 政府投资: 1, 企业投资: 1 } }
  industry: { value: 交通 }
  service_officer: { value: chen }
respond:
  default: { between: [1, 6] }
  departments:
    zrzy: { between: [4, 12] }
  applicant: { between: [5, 30] }
conditional: 40%
reject: 5%
"#;

#[test]
fn the_shipped_workflow_runs_a_mixed_population_the_same_way_twice() {
    let cal = calendar();
    let def = definition(PROVINCIAL);
    let cohort = population(MIXED, &def);
    assert_eq!(cohort.projects.len(), 48);
    let a = run(&def, &cal, &cohort, end_of_2027());
    let b = run(&def, &cal, &cohort, end_of_2027());
    assert_eq!(a, b, "the same inputs and seed give the same figures");
    // The same version on both sides changes nothing.
    let c = compare(&def, &def, &cal, &cohort, end_of_2027());
    assert_eq!(c.base, c.draft);

    assert_eq!(a.projects, 48);
    assert_eq!(a.refused_start, 0);
    assert_eq!(
        a.approved + a.rejected + a.revoked + a.withdrawn + a.open_at_horizon,
        48
    );
    // Every stand-in acts as the engine allows: no action of the cohort is refused.
    assert_eq!(a.refused_actions, 0, "{:#?}", a.refusals);
    // 容缺 is granted on intake; promises answered in 5–30 working days against 20 are partly
    // breached.
    assert!(
        a.promises > 0 && a.promises_breached > 0 && a.promises_kept > 0,
        "{a:#?}"
    );
    // Some projects go through the green channel and some do not.
    let green = a.channels.get("green").copied().unwrap_or(0);
    assert!(green > 0 && green < 48, "{a:#?}");
    assert!(a.stages.contains_key("shenpi"));
    assert!(a.departments.contains_key("zrzy"));
    assert!(a.departments["zrzy"].p50 >= a.departments["fgw"].p50);
    assert!(a.lead.p50 <= a.lead.p90);
}

#[test]
fn population_errors_are_located_and_nothing_runs() {
    let def = definition(PROVINCIAL);
    let src = r#"seed: 1
start: 2027-01-04
per_month: 0
fields:
  investment: { between: [900, 5] }
  tier: { choose: { 特大: 1 } }
  colour: { value: 红 }
respond:
  departments:
    nowhere: { value: 3 }
  nodes:
    intake: { value: -2 }
conditional: 80%
reject: 30%
"#;
    let errs = Population::from_yaml(src)
        .expect("it parses")
        .cohort(&def, src)
        .expect_err("impossible population");
    let got: Vec<(String, Option<usize>)> = errs.iter().map(|e| (e.path.clone(), e.line)).collect();
    for want in [
        ("per_month", Some(3)),
        ("fields.investment", Some(5)),
        ("fields.tier", Some(6)),
        ("fields.colour", Some(7)),
        ("respond.departments.nowhere", Some(10)),
        ("respond.nodes.intake", Some(12)),
        ("reject", Some(14)),
    ] {
        assert!(
            got.contains(&(want.0.to_string(), want.1)),
            "missing {want:?} in {got:?}"
        );
    }
    let tier = errs.iter().find(|e| e.path == "fields.tier").unwrap();
    assert!(
        tier.message.contains("特大") && tier.message.contains("重中之重"),
        "{tier}"
    );

    let bad = Population::from_yaml("start: 2027-01-04\nper_month: 3\nmonths: 2\nspeed: 9\n");
    assert!(bad.is_err());
}

/// The population file in docs/whatif.md and the shipped one read and fit provincial-major.
#[test]
fn the_documented_and_shipped_populations_fit_the_shipped_workflow() {
    let def = definition(PROVINCIAL);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/whatif.md")).expect("docs/whatif.md");
    let block = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block in docs/whatif.md");
    let shipped = std::fs::read_to_string(root.join("workflows/populations/provincial-major.yaml"))
        .expect("the shipped population");
    for src in [block, shipped.as_str()] {
        let cohort = population(src, &def);
        assert_eq!(cohort.projects.len(), 480, "40 a month for 12 months");
    }
}
