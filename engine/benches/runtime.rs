//! Throughput of the pure runtime: `decide` + `evolve` commands per second on a parallel-approval
//! workflow (start → intake → 并联审批 by four departments, 会签 → end), one core, repeated
//! instances. Run with `cargo bench -p shenpi-engine --bench runtime`.
//!
//! Each instance takes 11 commands: start, claim + approve the intake task, then claim + approve
//! each of the four branches (the last approval fires the join and ends the instance). Every
//! command is decided against the current state and its events applied in place, as the server
//! does; the figure counts commands, not events.

use std::hint::black_box;
use std::time::Instant;

use jiff::Timestamp;
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::{Definition, compile};
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::runtime::{
    Actor, Command, CommandEnvelope, InstanceState, TaskId, apply, decide,
};
use shenpi_engine::validate::ValidateContext;

const CALENDAR: &str = include_str!("../../workflows/calendars/cn-mainland.yaml");

const WORKFLOW: &str = r#"
id: bench-parallel
name: 并联审批基准
calendar: cn-mainland
start: intake
departments:
  - { id: fgw }
  - { id: zrzy }
  - { id: sthj }
  - { id: zj }
roles:
  - { id: intake_clerk, department: fgw }
  - { id: fgw_reviewer, department: fgw }
  - { id: zrzy_reviewer, department: zrzy }
  - { id: sthj_reviewer, department: sthj }
  - { id: zj_reviewer, department: zj }
nodes:
  - id: intake
    type: task
    assignee: { role: intake_clerk }
    actions: [approve, reject]
    limit: 5wd
    next: review
  - id: review
    type: parallel
    lead: fgw
    limit: 15wd
    branches:
      - { id: fgw, department: fgw, assignee: { role: fgw_reviewer }, limit: 10wd }
      - { id: zrzy, department: zrzy, assignee: { role: zrzy_reviewer }, limit: 10wd }
      - { id: sthj, department: sthj, assignee: { role: sthj_reviewer }, limit: 10wd }
      - { id: zj, department: zj, assignee: { role: zj_reviewer }, limit: 8wd }
    join: { policy: all }
    next: done
  - id: done
    type: end
    outcome: approved
"#;

fn envelope(actor: &Actor, command: Command) -> CommandEnvelope {
    CommandEnvelope {
        actor: actor.clone(),
        command,
    }
}

/// Runs `instances` instances; returns the number of commands executed.
fn run(def: &Definition, cal: &Calendar, instances: usize, script: &[CommandEnvelope]) -> usize {
    let t0: Timestamp = "2026-03-02T09:00:00+08:00"
        .parse()
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let mut commands = 0;
    for i in 0..instances {
        let mut state = InstanceState::default();
        // Spread instances over a few days so the calendar arithmetic varies.
        let now = t0
            .checked_add(jiff::SignedDuration::from_hours((i % 96) as i64))
            .unwrap_or(t0);
        for env in script {
            match decide(def, cal, &state, env, now) {
                Ok(events) => {
                    for e in &events {
                        apply(&mut state, e);
                    }
                }
                Err(r) => panic!("benchmark script rejected: {r}"),
            }
            commands += 1;
        }
        black_box(&state);
    }
    commands
}

fn main() {
    let wf = match parse_workflow(WORKFLOW) {
        Ok(w) => w,
        Err(d) => panic!("bench workflow does not parse: {d:?}"),
    };
    let def = match compile(wf, &ValidateContext::default()) {
        Ok(d) => d,
        Err(d) => panic!("bench workflow does not compile: {d:?}"),
    };
    let cal = match Calendar::from_yaml("cn-mainland", CALENDAR) {
        Ok(c) => c,
        Err(d) => panic!("calendar: {d:?}"),
    };
    let applicant = Actor::new("zhang", None, &["applicant"]);
    let clerk = Actor::new("li", Some("fgw"), &["intake_clerk"]);
    let reviewers = [
        Actor::new("wang", Some("fgw"), &["fgw_reviewer"]),
        Actor::new("zhao", Some("zrzy"), &["zrzy_reviewer"]),
        Actor::new("qian", Some("sthj"), &["sthj_reviewer"]),
        Actor::new("sun", Some("zj"), &["zj_reviewer"]),
    ];
    let project = serde_json::json!({ "name": "基准项目" });
    let mut script: Vec<(Actor, Command)> = vec![
        (
            applicant,
            Command::Start {
                project,
                channel: None,
            },
        ),
        (clerk.clone(), Command::Claim { task: TaskId(0) }),
        (
            clerk,
            Command::Approve {
                task: TaskId(0),
                comment: None,
            },
        ),
    ];
    for (i, r) in reviewers.iter().enumerate() {
        let task = TaskId(1 + i as u32);
        script.push((r.clone(), Command::Claim { task }));
        script.push((
            r.clone(),
            Command::Approve {
                task,
                comment: None,
            },
        ));
    }

    let script: Vec<CommandEnvelope> = script.into_iter().map(|(a, c)| envelope(&a, c)).collect();
    // Warm up, then measure a few rounds and report the best (least disturbed) one.
    run(&def, &cal, 2_000, &script);
    let instances = 100_000;
    let mut best = f64::MAX;
    let mut total = 0;
    for _ in 0..5 {
        #[allow(
            clippy::disallowed_methods,
            reason = "a benchmark times itself; the engine it measures reads no clock"
        )]
        let t = Instant::now();
        total = run(&def, &cal, instances, &script);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let per_sec = total as f64 / best;
    println!(
        "runtime: {total} commands ({instances} instances × {} commands) in {:.3} s: {:.0} decide+evolve commands/s on one core ({:.0} ns/command)",
        script.len(),
        best,
        per_sec,
        best * 1e9 / total as f64
    );
}
