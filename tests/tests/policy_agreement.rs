//! The engine, the inbox projection and `decide` agree on who may act, over the shipped
//! workflows: each instance is walked from its start by a clerk holding every role (claiming and
//! delegating some tasks on the way), and at every step, for every open task and every kind of
//! user (the applicant, another applicant, the service officer, a holder of each role, a member
//! of each department, a delegate), the inbox row the projection writes reaches the user exactly
//! when `policy::may_act` says so (a delegate is the exception the inbox cannot express with one
//! addressee per row, and is left out of that half), and `decide` accepts a comment on the task
//! exactly when it says so.

use std::path::Path;

use jiff::Timestamp;
use serde_json::json;
use shenpi_adapters::engine_machine::{EngineContext, EngineMachine};
use shenpi_adapters::machine::Machine;
use shenpi_adapters::store::InstanceMeta;
use shenpi_engine::runtime::state::TaskStatus;
use shenpi_engine::runtime::{
    Actor, Command, CommandEnvelope, InstanceState, Rejection, TimerKind, apply, decide, policy,
};

/// 2026-03-02 10:00 +08:00, a Monday inside the shipped calendar.
const T0: i64 = 1_772_416_800_000;

fn project_for(workflow: &str) -> serde_json::Value {
    match workflow {
        "construction-permit" => json!({
            "name": "测试项目", "funding": "政府投资", "category": "房屋建筑", "investment": 5000,
            "civil_defense": false, "service_officer": "sun", "key_flag": false,
        }),
        "enterprise-filing" => json!({
            "name": "测试项目", "enterprise": "某公司", "funding": "企业投资", "catalog": "备案类",
            "industry": "制造业", "investment": 5000, "service_officer": "sun",
        }),
        _ => json!({
            "name": "测试项目", "tier": "省级重大", "investment": 120000, "funding": "政府投资",
            "industry": "数字经济", "region": "昆明市", "service_officer": "sun",
        }),
    }
}

/// The addresses the web inbox matches a user's rows against (`GET /api/tasks`, scope mine).
fn addresses(a: &Actor) -> Vec<String> {
    std::iter::once(format!("user:{}", a.name))
        .chain(a.roles.iter().map(|r| format!("role:{r}")))
        .chain(a.department.iter().map(|d| format!("dept:{d}")))
        .collect()
}

/// Checks every open task of `st` for every actor; returns how many pairs were checked.
fn check_step(
    m: &EngineMachine,
    ctx: &EngineContext,
    meta: &InstanceMeta,
    st: &InstanceState,
    actors: &[Actor],
    now: Timestamp,
) -> usize {
    let rows = m.project(ctx, meta, st, now.as_millisecond()).tasks;
    let mut checked = 0;
    for t in st.tasks.iter().filter(|t| t.status == TaskStatus::Open) {
        let row = rows.iter().find(|r| r.task_id == t.spec.task.to_string());
        for a in actors {
            let may = policy::may_act(t, a, &st.applicant);
            if let Some(row) = row
                && !t.delegates.contains(&a.name)
            {
                let shown = row
                    .assignee
                    .as_ref()
                    .is_some_and(|x| addresses(a).contains(x));
                assert_eq!(
                    shown, may,
                    "{} task {} ({}) for {a:?}: inbox vs policy",
                    meta.workflow_id, t.spec.task, t.spec.node
                );
            }
            let cmd = CommandEnvelope {
                actor: a.clone(),
                command: Command::Comment {
                    task: Some(t.spec.task),
                    text: "意见".into(),
                },
            };
            let refused = matches!(
                decide(&ctx.def, &ctx.cal, st, &cmd, now),
                Err(Rejection::NotAssigned { .. })
            );
            assert_eq!(
                !refused, may,
                "{} task {} ({}) for {a:?}: decide vs policy",
                meta.workflow_id, t.spec.task, t.spec.node
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn policy_projection_and_decide_agree_on_the_shipped_workflows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let m = EngineMachine::from_dir(&dir).expect("workflows load");
    let mut total = 0;
    let mut applicant_tasks = 0;
    for id in [
        "construction-permit",
        "enterprise-filing",
        "provincial-major",
    ] {
        let yaml = std::fs::read_to_string(dir.join(format!("{id}.yaml"))).expect("yaml");
        let def = m.compile(&yaml).expect("compiles");
        let ctx = m.insert(id, 900, def).expect("registers");
        let wf = &ctx.def.workflow;
        let roles: Vec<&str> = wf.roles.iter().map(|r| r.id.value.as_str()).collect();
        let mut actors = vec![
            Actor::new("chen", None, &["applicant"]),
            Actor::new("liu", None, &["applicant"]),
            Actor::new("sun", None, &["service_officer"]),
            Actor::new("deleg", None, &["approver"]),
        ];
        for r in &roles {
            actors.push(Actor::new(&format!("holder-{r}"), None, &[r]));
        }
        for d in &wf.departments {
            let d = d.id.value.as_str();
            actors.push(Actor::new(&format!("member-{d}"), Some(d), &["approver"]));
        }
        let clerk = Actor::new("clerk", None, &roles);
        let project = project_for(id);
        let meta = InstanceMeta {
            id: format!("{id}-1"),
            workflow_id: id.into(),
            def_version: 900,
            project: project.clone(),
        };
        let mut st = InstanceState::default();
        let mut now = Timestamp::from_millisecond(T0).expect("t0");
        let start = CommandEnvelope {
            actor: actors[0].clone(),
            command: Command::Start {
                project,
                channel: None,
            },
        };
        let mut events = decide(&ctx.def, &ctx.cal, &st, &start, now).expect("starts");
        for _ in 0..80 {
            for e in &events {
                apply(&mut st, e);
            }
            total += check_step(&m, &ctx, &meta, &st, &actors, now);
            let open = st.tasks.iter().find(|t| t.status == TaskStatus::Open);
            let mut tries = Vec::new();
            match open {
                Some(t) => {
                    // Delegate some tasks and claim others, so both are checked too; then decide.
                    let id = t.spec.task;
                    if t.delegates.is_empty() && id.0 % 2 == 0 {
                        tries.push(Command::Delegate {
                            task: id,
                            to: "deleg".into(),
                            transfer: false,
                        });
                    }
                    if t.claimed_by.is_none() && id.0 % 3 == 0 {
                        tries.push(Command::Claim { task: id });
                    }
                    tries.push(Command::Approve {
                        task: id,
                        comment: None,
                    });
                }
                None => match st
                    .timers
                    .iter()
                    .find(|t| matches!(t.kind, TimerKind::Wait { .. }))
                {
                    Some(w) => {
                        now = w.due;
                        tries.push(Command::TimerFired { timer: w.id });
                    }
                    None => break,
                },
            }
            // The one who may: the clerk holds every role but is not the applicant.
            let actor = match open {
                Some(t) if !policy::may_act(t, &clerk, &st.applicant) => {
                    applicant_tasks += 1;
                    actors[0].clone()
                }
                _ => clerk.clone(),
            };
            let next = tries.into_iter().find_map(|command| {
                let cmd = CommandEnvelope {
                    actor: actor.clone(),
                    command,
                };
                decide(&ctx.def, &ctx.cal, &st, &cmd, now).ok()
            });
            match next {
                Some(e) => events = e,
                // A step the walk cannot take (a material or an element missing): this
                // workflow has been checked as far as it goes.
                None => break,
            }
        }
    }
    assert!(total > 100, "only {total} checks ran");
    assert!(
        applicant_tasks > 0,
        "the walk never reached a task of the applicant"
    );
}
