//! The real engine through the durable path, on both backends: a construction-permit instance is
//! started and approved through the command bus; its inbox projection shows the parallel
//! branches in their departments' pools, its deadlines are timer rows, and a fresh bus (a
//! restarted process) rebuilds the state from the stored events and carries on.

mod durable_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use durable_support::{TempDir, apply_for, both};
use shenpi_adapters::bus::{BusOptions, CommandBus, Submit};
use shenpi_adapters::engine_machine::EngineMachine;
use shenpi_adapters::machine::{Clock, Machine, SystemClock, now_millis};
use shenpi_adapters::store::{
    Db, DefinitionStore, EventStore, InstanceMeta, OutboxStore, ProjectionStore, Source, TimerStore,
};
use shenpi_engine::runtime::{Actor, Command, CommandEnvelope, TaskId};

fn workflows() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

/// Publishes `yaml` on `db` and starts a command bus over the real engine, as `shenpi serve` does.
async fn publish_and_start(db: &Db, yaml: &str) -> (String, i64, CommandBus<EngineMachine>) {
    publish_and_start_at(db, yaml, Arc::new(SystemClock)).await
}

async fn publish_and_start_at(
    db: &Db,
    yaml: &str,
    clock: Arc<dyn Clock>,
) -> (String, i64, CommandBus<EngineMachine>) {
    let machine = Arc::new(EngineMachine::from_dir(&workflows()).unwrap());
    let def = machine.compile(yaml).unwrap();
    let row = db
        .publish(def.id(), yaml, "h", Source::File("test.yaml"), now_millis())
        .await
        .unwrap();
    let bus = CommandBus::start(machine, db.clone(), clock, BusOptions::default());
    (row.workflow_id, row.version, bus)
}

/// A clock the test moves by hand.
#[derive(Default)]
struct HandClock(AtomicI64);

impl Clock for HandClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn construction_permit_runs_durably_and_survives_a_restart() {
    let dir = TempDir::new("engine");
    let yaml = std::fs::read_to_string(workflows().join("construction-permit.yaml")).unwrap();
    for db in both("engine", &dir).await {
        let (workflow_id, def_version, bus) = publish_and_start(&db, &yaml).await;
        let project = serde_json::json!({
            "name": "测试项目", "funding": "企业投资", "category": "房屋建筑",
            "investment": 5000.0, "civil_defense": false, "service_officer": "zhao",
        });
        let meta = InstanceMeta {
            id: "cp-1".into(),
            workflow_id: workflow_id.clone(),
            def_version,
            project: project.clone(),
        };
        let submit =
            |start: Option<InstanceMeta>, actor: Actor, command: Command, key: &str| Submit {
                instance: "cp-1".into(),
                start,
                key: Some(key.into()),
                expected_version: None,
                command: CommandEnvelope { actor, command },
                audit: None,
                project: None,
            };
        let r = bus
            .submit(submit(
                Some(meta.clone()),
                Actor::new("applicant", None, &["applicant"]),
                Command::Start {
                    project,
                    channel: None,
                },
                "start",
            ))
            .await
            .unwrap();
        assert!(r.events > 0);
        // The window clerk's task is in the role pool.
        let inbox = db
            .inbox_for(&["role:window_clerk".into()], 10)
            .await
            .unwrap();
        assert_eq!(inbox.len(), 1, "{}: {inbox:?}", db.backend());
        let task: u32 = inbox[0].task_id.parse().unwrap();
        assert!(
            inbox[0].due.is_some(),
            "the task has a working-day deadline"
        );
        let clerk = Actor::new("wang", Some("zwfw"), &["window_clerk"]);
        let approve = Command::Approve {
            task: TaskId(task),
            comment: None,
        };
        let r1 = bus
            .submit(submit(
                None,
                clerk.clone(),
                approve.clone(),
                "approve-window",
            ))
            .await
            .unwrap();
        // A double click: the same key, the same receipt, nothing new.
        let r2 = bus
            .submit(submit(None, clerk, approve, "approve-window"))
            .await
            .unwrap();
        assert_eq!((r1.version, r1.first_seq), (r2.version, r2.first_seq));
        assert!(r2.replayed);
        // Stage 1 fans out to four departments.
        let reviewers = db
            .inbox_for(
                &[
                    "role:fgw_reviewer".into(),
                    "role:zrzy_reviewer".into(),
                    "role:sthj_reviewer".into(),
                    "role:sw_reviewer".into(),
                ],
                10,
            )
            .await
            .unwrap();
        assert_eq!(reviewers.len(), 4, "{}: {reviewers:?}", db.backend());
        let counts = db.timer_counts().await.unwrap();
        assert!(
            counts.iter().any(|c| c.0 == "pending" && c.1 >= 4),
            "{counts:?}"
        );
        let dash = db.dashboard().await.unwrap();
        assert_eq!(dash.by_colour.iter().map(|c| c.1).sum::<i64>(), 4);

        // A restarted process: a new machine and bus rebuild the state from the stored events.
        let machine2 = Arc::new(EngineMachine::from_dir(&workflows()).unwrap());
        assert!(
            machine2.context(&meta).is_none(),
            "registered lazily from the stored definition"
        );
        let bus2 = CommandBus::start(
            machine2,
            db.clone(),
            Arc::new(SystemClock),
            BusOptions::default(),
        );
        let fgw = reviewers
            .iter()
            .find(|t| t.assignee.as_deref() == Some("role:fgw_reviewer"))
            .unwrap();
        let r3 = bus2
            .submit(submit(
                None,
                Actor::new("li", Some("fgw"), &["fgw_reviewer"]),
                Command::Approve {
                    task: TaskId(fgw.task_id.parse().unwrap()),
                    comment: None,
                },
                "approve-fgw",
            ))
            .await
            .unwrap();
        assert_eq!(r3.first_seq, r1.version + 1);
        let (row, events) = db.load("cp-1", 0).await.unwrap().unwrap();
        assert_eq!(row.version as usize, events.len());
        assert_eq!(
            db.inbox_for(&["role:fgw_reviewer".into()], 10)
                .await
                .unwrap()
                .len(),
            0
        );
        // Someone not assigned is refused and nothing changes.
        let sthj = reviewers
            .iter()
            .find(|t| t.assignee.as_deref() == Some("role:sthj_reviewer"))
            .unwrap();
        let refused = bus2
            .submit(submit(
                None,
                Actor::new("nobody", Some("fgw"), &[]),
                Command::Approve {
                    task: TaskId(sthj.task_id.parse().unwrap()),
                    comment: None,
                },
                "bad",
            ))
            .await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(db.count_events(Some("cp-1")).await.unwrap(), r3.version);
    }
}

/// The green-channel notice carries why the channel was chosen: the coordinator reads 纳入依据
/// from it, so an empty reason would be a silent gap in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_channel_notice_says_why() {
    let dir = TempDir::new("engine-green");
    let yaml = std::fs::read_to_string(workflows().join("construction-permit.yaml")).unwrap();
    for db in both("engine_green", &dir).await {
        let (workflow_id, def_version, bus) = publish_and_start(&db, &yaml).await;
        let project = serde_json::json!({
            "name": "重点项目", "funding": "企业投资", "category": "房屋建筑",
            "investment": 5000.0, "civil_defense": false, "service_officer": "zhao",
            "key_flag": true,
        });
        apply_for(&bus, "cp-green", (&workflow_id, def_version), project).await;
        let pending = db.outbox_in_state("pending", 100).await.unwrap();
        let notice = pending
            .iter()
            .find(|m| m.row.template == "green_channel")
            .unwrap_or_else(|| panic!("{}: no green-channel notice in {pending:?}", db.backend()));
        let reason = notice.row.payload["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("key_flag"),
            "{}: reason {reason:?}",
            db.backend()
        );
    }
}

/// Time runs out on the window clerk's task: its timers (and those they arm) fire in due order,
/// as the scheduler would fire them, and each notice carries the figures its template prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_and_escalation_notices_carry_their_figures() {
    let dir = TempDir::new("engine-notices");
    // Not the 75% default, so a hard-coded figure cannot pass.
    let yaml = std::fs::read_to_string(workflows().join("construction-permit.yaml"))
        .unwrap()
        .replace("yellow_at: 75%", "yellow_at: 60%");
    for db in both("engine_notices", &dir).await {
        let name = db.backend();
        let clock = Arc::new(HandClock(AtomicI64::new(now_millis())));
        let (workflow_id, def_version, bus) = publish_and_start_at(&db, &yaml, clock.clone()).await;
        let project = serde_json::json!({
            "name": "逾期项目", "funding": "企业投资", "category": "房屋建筑",
            "investment": 5000.0, "civil_defense": false, "service_officer": "zhao",
        });
        apply_for(&bus, "cp-late", (&workflow_id, def_version), project).await;
        let far = now_millis() + 400 * 86_400_000;
        let sent = |template: &'static str| {
            let db = db.clone();
            async move {
                db.outbox_in_state("pending", 1000)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|m| m.row.template == template)
            }
        };
        for _ in 0..20 {
            if sent("supervise").await.is_some() {
                break;
            }
            let due = db.claim_due("test", far, 60_000, 1).await.unwrap();
            let Some(next) = due.into_iter().next() else {
                break;
            };
            clock.0.store(next.timer.due, Ordering::SeqCst);
            bus.fire(next.timer).await.unwrap();
        }
        let yellow = sent("yellow_warning")
            .await
            .unwrap_or_else(|| panic!("{name}: no yellow warning"));
        assert_eq!(yellow.row.payload["used_percent"], 60, "{name}");
        let escalation = sent("escalation")
            .await
            .unwrap_or_else(|| panic!("{name}: no escalation notice"));
        let rung = escalation.row.payload["rung"].as_str().unwrap_or("");
        assert!(
            rung.starts_with('第') && rung.ends_with('级'),
            "{name}: {rung:?}"
        );
        let supervise = sent("supervise")
            .await
            .unwrap_or_else(|| panic!("{name}: no 挂牌督办 notice"));
        // The window clerk's department (zwfw) names `zwfw_leader` as its leader.
        assert_eq!(
            supervise.row.payload["leader"], "政务服务中心主任",
            "{name}"
        );
        assert_ne!(supervise.row.payload["rung"], rung, "{name}: a later rung");
    }
}
