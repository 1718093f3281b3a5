//! The engine, the inbox projection and `decide` agree on who may act, over the shipped
//! workflows and one that co-signs: each instance is walked from its start by whoever may act
//! (a clerk holding every role, else the applicant, a delegate or a co-signer), claiming,
//! delegating (委托), handing over (转办) and co-signing (加签) some tasks on the way, and at every
//! step, for every open task and every kind of user (the applicant, another applicant, the
//! service officer, a holder of each role, a member of each department, the delegate, the
//! co-signer), the inbox row the projection writes reaches the user exactly when
//! `policy::may_act` says so, and `decide` accepts a comment on the task exactly when it says so.

use std::path::Path;

use jiff::Timestamp;
use serde_json::json;
use shenpi_adapters::engine_machine::{EngineContext, EngineMachine};
use shenpi_adapters::machine::Machine;
use shenpi_adapters::store::InstanceMeta;
use shenpi_engine::compile::Party;
use shenpi_engine::runtime::event::TaskKind;
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

/// What the checks covered.
#[derive(Default)]
struct Checked {
    pairs: usize,
    /// Pairs of a delegated task and its delegate.
    delegates: usize,
    /// Pairs of a task handed over (转办) and the user it went to.
    transfers: usize,
    /// Pairs of a co-signer's task and its co-signer.
    cosigners: usize,
}

/// Checks every open task of `st` for every actor.
fn check_step(
    m: &EngineMachine,
    ctx: &EngineContext,
    meta: &InstanceMeta,
    st: &InstanceState,
    actors: &[Actor],
    now: Timestamp,
    checked: &mut Checked,
) {
    let rows = m.project(ctx, meta, st, now.as_millisecond()).tasks;
    for t in st.tasks.iter().filter(|t| t.status == TaskStatus::Open) {
        let row = rows.iter().find(|r| r.task_id == t.spec.task.to_string());
        for a in actors {
            let may = policy::may_act(t, a, &st.applicant);
            if let Some(row) = row {
                let shown = row.addressees.iter().any(|x| addresses(a).contains(x));
                assert_eq!(
                    shown, may,
                    "{} task {} ({}) for {a:?}: inbox {:?} vs policy",
                    meta.workflow_id, t.spec.task, t.spec.node, row.addressees
                );
                assert_eq!(row.assignee.as_ref(), row.addressees.first());
                let user = Party::User(a.name.clone());
                if t.delegates.contains(&a.name) {
                    checked.delegates += 1;
                } else if t.spec.kind == TaskKind::Cosign && t.spec.assignment == user {
                    checked.cosigners += 1;
                } else if t.spec.assignment == user {
                    checked.transfers += 1;
                }
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
            checked.pairs += 1;
        }
    }
}

/// A workflow whose step takes co-signers (加签); none of the shipped ones does.
const COSIGNING: &str = "id: cosigning
name: 加签测试
calendar: cn-mainland
start: review
roles:
  - {id: reviewer}
nodes:
  - id: review
    name: 审查
    type: task
    assignee: {role: reviewer}
    actions: [approve, delegate, cosign, comment]
    next: sign
  - id: sign
    name: 签发
    type: task
    assignee: {role: reviewer}
    actions: [approve, delegate, cosign, comment]
    next: done
  - {id: done, type: end, outcome: approved}
";

#[test]
fn policy_projection_and_decide_agree_on_the_shipped_workflows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let m = EngineMachine::from_dir(&dir).expect("workflows load");
    let mut checked = Checked::default();
    let mut applicant_tasks = 0;
    for id in [
        "construction-permit",
        "enterprise-filing",
        "provincial-major",
        "cosigning",
    ] {
        let yaml = match id {
            "cosigning" => COSIGNING.to_string(),
            _ => std::fs::read_to_string(dir.join(format!("{id}.yaml"))).expect("yaml"),
        };
        let def = m.compile(&yaml).expect("compiles");
        let ctx = m.insert(id, 900, def).expect("registers");
        let wf = &ctx.def.workflow;
        let roles: Vec<&str> = wf.roles.iter().map(|r| r.id.value.as_str()).collect();
        let mut actors = vec![
            Actor::new("chen", None, &["applicant"]),
            Actor::new("liu", None, &["applicant"]),
            Actor::new("sun", None, &["service_officer"]),
            Actor::new("deleg", None, &["approver"]),
            Actor::new("cosig", None, &["approver"]),
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
            check_step(&m, &ctx, &meta, &st, &actors, now, &mut checked);
            // The newest open task first, so a co-signer's task is decided before its parent.
            let open = st.tasks.iter().rev().find(|t| t.status == TaskStatus::Open);
            let mut tries = Vec::new();
            match open {
                Some(t) => {
                    // Hand over, delegate, co-sign some tasks and claim others, so each is
                    // checked too; then decide.
                    let id = t.spec.task;
                    let work = t.spec.kind == TaskKind::Work;
                    if work && id.0 % 5 == 0 && t.spec.assignment != Party::User("deleg".into()) {
                        tries.push(Command::Delegate {
                            task: id,
                            to: "deleg".into(),
                            transfer: true,
                        });
                    }
                    if t.delegates.is_empty() && id.0 % 2 == 0 {
                        tries.push(Command::Delegate {
                            task: id,
                            to: "deleg".into(),
                            transfer: false,
                        });
                    }
                    if work && t.cosigners.is_empty() {
                        tries.push(Command::AddCosigner {
                            task: id,
                            user: "cosig".into(),
                            order: Default::default(),
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
            // The one who may: the clerk holds every role but is not the applicant, a delegate
            // or a co-signer.
            let actor = match open {
                Some(t) if !policy::may_act(t, &clerk, &st.applicant) => {
                    let who = actors
                        .iter()
                        .find(|a| policy::may_act(t, a, &st.applicant))
                        .unwrap_or(&actors[0]);
                    if who.name == actors[0].name {
                        applicant_tasks += 1;
                    }
                    who.clone()
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
    assert!(checked.pairs > 100, "only {} checks ran", checked.pairs);
    assert!(checked.delegates > 0, "no delegated task was checked");
    assert!(checked.transfers > 0, "no handed-over task was checked");
    assert!(checked.cosigners > 0, "no co-signer's task was checked");
    assert!(
        applicant_tasks > 0,
        "the walk never reached a task of the applicant"
    );
}
