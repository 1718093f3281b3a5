//! The event hash chain (migration 18) on both backends: a history written by the command bus
//! verifies intact; an SQL `UPDATE` of who decided a task is found and the event named; a deleted
//! last event is found by the head; a history written before the chain is chained by the
//! migration's step and then verifies intact.

mod durable_support;

use std::path::Path;
use std::sync::Arc;

use durable_support::{TempDir, apply_for, both};
use shenpi_adapters::bus::{BusOptions, CommandBus, Submit};
use shenpi_adapters::engine_machine::EngineMachine;
use shenpi_adapters::machine::{SystemClock, now_millis};
use shenpi_adapters::store::chain::{ChainFault, backfill};
use shenpi_adapters::store::{Db, DefinitionStore, EventStore, ProjectionStore, Source};
use shenpi_engine::runtime::{Actor, Command, CommandEnvelope, TaskId};

fn workflows() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

/// Runs one statement on the backend's own pool (the tampering a person with database access
/// could do).
async fn sql(db: &Db, sqlite: &str, postgres: &str) -> u64 {
    match db {
        Db::Sqlite(s) => sqlx::query(sqlx::AssertSqlSafe(sqlite.to_string()))
            .execute(s.pool())
            .await
            .unwrap()
            .rows_affected(),
        Db::Postgres(s) => sqlx::query(sqlx::AssertSqlSafe(postgres.to_string()))
            .execute(s.pool())
            .await
            .unwrap()
            .rows_affected(),
    }
}

/// A construction-permit instance started and its window task approved by `wang` with a
/// comment, through the bus: its id and the sequence number of the decision.
async fn decided_instance(db: &Db, id: &str) -> i64 {
    let yaml = std::fs::read_to_string(workflows().join("construction-permit.yaml")).unwrap();
    let machine = Arc::new(EngineMachine::from_dir(&workflows()).unwrap());
    let def = machine.compile(&yaml).unwrap();
    let row = db
        .publish(def.id(), &yaml, "h", Source::File("t.yaml"), now_millis())
        .await
        .unwrap();
    let bus = CommandBus::start(
        machine,
        db.clone(),
        Arc::new(SystemClock),
        BusOptions::default(),
    );
    let project = serde_json::json!({
        "name": "测试项目", "funding": "企业投资", "category": "房屋建筑",
        "investment": 5000.0, "civil_defense": false, "service_officer": "zhao",
    });
    apply_for(&bus, id, (&row.workflow_id, row.version), project).await;
    let inbox = db
        .inbox_for(&["role:window_clerk".into()], 10)
        .await
        .unwrap();
    let task: u32 = inbox
        .iter()
        .find(|t| t.instance == id)
        .unwrap()
        .task_id
        .parse()
        .unwrap();
    let r = bus
        .submit(Submit {
            instance: id.into(),
            start: None,
            key: Some(format!("approve-{id}")),
            expected_version: None,
            command: CommandEnvelope {
                actor: Actor::new("wang", Some("zwfw"), &["window_clerk"]),
                command: Command::Approve {
                    task: TaskId(task),
                    comment: Some("材料齐全，同意受理".into()),
                },
            },
            audit: None,
            project: None,
        })
        .await
        .unwrap();
    assert!(
        r.version > r.first_seq,
        "the approval moved the instance on"
    );
    let (_, events) = db.load(id, 0).await.unwrap().unwrap();
    events
        .iter()
        .find(|e| e.kind == "task_decided")
        .expect("a decision was recorded")
        .seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_by_the_bus_is_intact_and_an_edited_decision_is_named() {
    let dir = TempDir::new("chain");
    for db in both("chain", &dir).await {
        let name = db.backend();
        let decided = decided_instance(&db, "cp-chain").await;
        let report = db.verify_chain("cp-chain").await.unwrap().unwrap();
        assert!(report.intact(), "{name}: {report:?}");
        let (row, events) = db.load("cp-chain", 0).await.unwrap().unwrap();
        assert_eq!(report.events, events.len() as i64);
        assert_eq!(row.version, report.events);
        let head = db.head_hash("cp-chain").await.unwrap();
        assert_eq!(head, report.head, "{name}");
        assert_eq!(head.as_deref().map(str::len), Some(64), "{name}");
        assert_eq!(db.head_hash("nobody").await.unwrap(), None);
        assert!(db.verify_chain("nobody").await.unwrap().is_none());

        // Someone with database access makes `li` the one who decided.
        let n = sql(
            &db,
            "UPDATE events SET body = replace(body, '\"wang\"', '\"li\"')
             WHERE instance = 'cp-chain' AND type = 'task_decided'",
            "UPDATE events SET body = CAST(replace(CAST(body AS TEXT), '\"wang\"', '\"li\"') AS json)
             WHERE instance = 'cp-chain' AND type = 'task_decided'",
        )
        .await;
        assert_eq!(n, 1, "{name}: the decision was edited");
        let report = db.verify_chain("cp-chain").await.unwrap().unwrap();
        let broken = report.broken.expect("the edit is found");
        assert_eq!(broken.seq, decided, "{name}");
        assert_eq!(broken.kind.as_deref(), Some("task_decided"));
        assert!(broken.recorded_at.is_some());
        assert_eq!(broken.fault, ChainFault::HashMismatch, "{name}");

        // Put back as it was, the chain is intact again: the hash is of the exact bytes.
        sql(
            &db,
            "UPDATE events SET body = replace(body, '\"li\"', '\"wang\"')
             WHERE instance = 'cp-chain' AND type = 'task_decided'",
            "UPDATE events SET body = CAST(replace(CAST(body AS TEXT), '\"li\"', '\"wang\"') AS json)
             WHERE instance = 'cp-chain' AND type = 'task_decided'",
        )
        .await;
        assert!(db.verify_chain("cp-chain").await.unwrap().unwrap().intact());

        // The last event deleted: every remaining event is intact, the head is not.
        let last = row.version;
        let deleted = sql(
            &db,
            &format!("DELETE FROM events WHERE instance = 'cp-chain' AND seq = {last}"),
            &format!("DELETE FROM events WHERE instance = 'cp-chain' AND seq = {last}"),
        )
        .await;
        assert_eq!(deleted, 1);
        let report = db.verify_chain("cp-chain").await.unwrap().unwrap();
        let broken = report.broken.expect("the deletion is found");
        assert_eq!(broken.seq, last, "{name}: the missing event is named");
        assert_eq!(broken.fault, ChainFault::HeadMismatch { recorded: last });

        // An event in the middle deleted: the one after it misses its predecessor.
        sql(
            &db,
            "DELETE FROM events WHERE instance = 'cp-chain' AND seq = 2",
            "DELETE FROM events WHERE instance = 'cp-chain' AND seq = 2",
        )
        .await;
        let broken = db
            .verify_chain("cp-chain")
            .await
            .unwrap()
            .unwrap()
            .broken
            .unwrap();
        assert_eq!(broken.seq, 3);
        assert_eq!(broken.fault, ChainFault::MissingPredecessor { expected: 2 });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_from_before_the_chain_are_chained_once_by_the_migration_step() {
    let dir = TempDir::new("chain_backfill");
    for db in both("chain_backfill", &dir).await {
        let name = db.backend();
        decided_instance(&db, "cp-old").await;
        let ids = db.instance_ids("", 10).await.unwrap();
        assert_eq!(ids, vec!["cp-old".to_string()]);
        // As a database migrated to 18 looks before its chaining step ran.
        let strip = "UPDATE events SET prev_hash = NULL, hash = NULL";
        sql(&db, strip, strip).await;
        let headless = "UPDATE instances SET head_hash = NULL";
        sql(&db, headless, headless).await;
        let pending = "UPDATE event_chain_backfill SET done = 0";
        sql(&db, pending, pending).await;
        let report = db.verify_chain("cp-old").await.unwrap().unwrap();
        assert_eq!(
            report.broken.map(|b| (b.seq, b.fault)),
            Some((1, ChainFault::Unchained)),
            "{name}"
        );
        let chained = match &db {
            Db::Sqlite(s) => backfill(s).await.unwrap(),
            Db::Postgres(s) => backfill(s).await.unwrap(),
        };
        assert_eq!(chained, 1, "{name}");
        let report = db.verify_chain("cp-old").await.unwrap().unwrap();
        assert!(report.intact(), "{name}: {report:?}");
        // Done once: an event stripped of its hash later is reported, not chained again.
        let strip_one = "UPDATE events SET hash = NULL WHERE seq = 3";
        sql(&db, strip_one, strip_one).await;
        let again = match &db {
            Db::Sqlite(s) => backfill(s).await.unwrap(),
            Db::Postgres(s) => backfill(s).await.unwrap(),
        };
        assert_eq!(again, 0);
        let broken = db
            .verify_chain("cp-old")
            .await
            .unwrap()
            .unwrap()
            .broken
            .unwrap();
        assert_eq!((broken.seq, broken.fault), (3, ChainFault::Unchained));
    }
}
