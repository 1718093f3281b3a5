//! The `Store` conformance suite: every check runs on SQLite and on PostgreSQL.

mod durable_support;

use durable_support::{TempDir, both};
use shenpi_adapters::store::*;

fn meta(id: &str) -> InstanceMeta {
    InstanceMeta {
        id: id.into(),
        workflow_id: "wf".into(),
        def_version: 1,
        project: serde_json::json!({"name": "项目", "tier": "省级重大"}),
    }
}

fn task(
    instance: &str,
    id: &str,
    assignee: Option<&str>,
    dept: &str,
    colour: &str,
    due: i64,
) -> InboxRow {
    let assignee = assignee.map_or(format!("dept:{dept}"), |a| format!("user:{a}"));
    InboxRow {
        instance: instance.into(),
        task_id: id.into(),
        workflow_id: "wf".into(),
        node: id.into(),
        stage: Some("审批".into()),
        assignee: Some(assignee.clone()),
        addressees: vec![assignee],
        department: Some(dept.into()),
        colour: colour.into(),
        due: Some(due),
        priority: 0,
        supervised: colour == "red",
        opened_at: 1,
    }
}

fn event(instance: &str, seq: i64) -> EventRow {
    EventRow {
        instance: instance.into(),
        seq,
        kind: "e".into(),
        body: format!(r#"{{"seq":{seq},"text":"事件"}}"#),
        recorded_at: 10,
        format: 1,
    }
}

fn new_instance(id: &str, to: i64, tasks: Vec<InboxRow>) -> InstanceWrite {
    InstanceWrite {
        meta: meta(id),
        from_version: 0,
        to_version: to,
        projection: Projection {
            status: "running".into(),
            stage: Some("审批".into()),
            channel: None,
            tasks,
            promises: vec![],
            elements: vec![],
        },
        written: None,
    }
}

async fn conformance(db: Db) {
    let name = db.backend();
    // Definitions: versions count up; the same text again is the same version.
    let d1 = db
        .publish("wf", "a: 1", "h1", Source::File("wf.yaml"), 5)
        .await
        .unwrap();
    assert_eq!(d1.version, 1, "{name}");
    let d1b = db
        .publish("wf", "a: 1", "h1", Source::Editor("wang"), 6)
        .await
        .unwrap();
    assert_eq!(d1b.version, 1, "{name}");
    let d2 = db
        .publish("wf", "a: 2", "h2", Source::Api("li"), 7)
        .await
        .unwrap();
    assert_eq!(d2.version, 2, "{name}");
    assert_eq!(db.definition("wf", 1).await.unwrap().unwrap().yaml, "a: 1");
    assert_eq!(
        db.latest_definition("wf").await.unwrap().unwrap().version,
        2
    );
    assert!(db.definition("wf", 9).await.unwrap().is_none());

    // One batch: a new instance with events, timers, outbox, projection, idempotency key.
    let b = Batch {
        now: 100,
        instances: vec![new_instance(
            "i1",
            2,
            vec![
                task("i1", "t1", Some("alice"), "发改委", "green", 5000),
                task("i1", "t2", None, "自然资源局", "red", 50),
            ],
        )],
        events: vec![event("i1", 1), event("i1", 2)],
        timers_armed: vec![
            TimerRow {
                instance: "i1".into(),
                timer_id: "a".into(),
                due: 150,
                kind: "{}".into(),
            },
            TimerRow {
                instance: "i1".into(),
                timer_id: "b".into(),
                due: 9_000,
                kind: "{}".into(),
            },
        ],
        outbox: vec![OutboxRow {
            id: "i1/1/0".into(),
            instance: Some("i1".into()),
            channel: "log".into(),
            recipient: "alice".into(),
            template: "overdue".into(),
            payload: serde_json::json!({"项目": "x"}),
            next_attempt_at: 100,
            created_at: 100,
        }],
        idempotency: vec![IdempotencyRow {
            key: "k1".into(),
            instance: "i1".into(),
            result: r#"{"ok":1}"#.into(),
            request: None,
        }],
        ..Batch::default()
    };
    db.commit(&b).await.unwrap();
    let (row, events) = db.load("i1", 0).await.unwrap().unwrap();
    assert_eq!(row.version, 2);
    assert_eq!(row.meta, meta("i1"));
    assert_eq!(row.status, "running");
    assert_eq!(events.len(), 2);
    let body: serde_json::Value = serde_json::from_str(&events[1].body).unwrap();
    assert_eq!(body["text"], "事件");
    assert_eq!(db.load("i1", 1).await.unwrap().unwrap().1.len(), 1);
    assert!(db.load("nope", 0).await.unwrap().is_none());
    let keys = db.lookup_keys(&["k1".into(), "k2".into()]).await.unwrap();
    assert_eq!(keys.len(), 1);
    let r: serde_json::Value = serde_json::from_str(&keys[0].result).unwrap();
    assert_eq!(r["ok"], 1);

    // Stale version: nothing of the batch is written.
    let stale = Batch {
        now: 200,
        instances: vec![InstanceWrite {
            from_version: 1,
            to_version: 3,
            ..new_instance("i1", 3, vec![])
        }],
        events: vec![event("i1", 3)],
        outbox: vec![OutboxRow {
            id: "i1/3/0".into(),
            ..b.outbox[0].clone()
        }],
        ..Batch::default()
    };
    assert!(
        matches!(db.commit(&stale).await, Err(StoreError::Conflict(_))),
        "{name}"
    );
    assert_eq!(db.count_events(Some("i1")).await.unwrap(), 2);
    assert_eq!(db.outbox_in_state("pending", 10).await.unwrap().len(), 1);
    // A duplicate event sequence number is a conflict too, as is a recorded key.
    let dup = Batch {
        now: 200,
        events: vec![event("i1", 2)],
        ..Batch::default()
    };
    assert!(
        matches!(db.commit(&dup).await, Err(StoreError::Conflict(_))),
        "{name}"
    );
    let dupkey = Batch {
        now: 200,
        idempotency: vec![b.idempotency[0].clone()],
        ..Batch::default()
    };
    assert!(
        matches!(db.commit(&dupkey).await, Err(StoreError::Conflict(_))),
        "{name}"
    );
    // Creating an instance that exists is a conflict.
    let again = Batch {
        now: 200,
        instances: vec![new_instance("i1", 1, vec![])],
        ..Batch::default()
    };
    assert!(
        matches!(db.commit(&again).await, Err(StoreError::Conflict(_))),
        "{name}"
    );

    // A good follow-up: version 2 -> 3, projection replaced.
    let next = Batch {
        now: 300,
        instances: vec![InstanceWrite {
            from_version: 2,
            to_version: 3,
            ..new_instance(
                "i1",
                3,
                vec![task("i1", "t3", Some("bob"), "发改委", "yellow", 700)],
            )
        }],
        events: vec![event("i1", 3)],
        ..Batch::default()
    };
    db.commit(&next).await.unwrap();
    assert_eq!(db.load("i1", 0).await.unwrap().unwrap().0.version, 3);
    assert_eq!(
        db.inbox_for(&["user:alice".into()], 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        db.inbox_for(&["user:bob".into(), "role:x".into()], 10)
            .await
            .unwrap()[0]
            .task_id,
        "t3"
    );

    // Timers: only due ones are claimed; a claim holds until its lease runs out.
    let c = db.claim_due("n1", 200, 1000, 10).await.unwrap();
    assert_eq!(c.len(), 1, "{name}");
    assert_eq!(c[0].timer.timer_id, "a");
    assert!(
        db.claim_due("n2", 300, 1000, 10).await.unwrap().is_empty(),
        "{name}: lease holds"
    );
    let c2 = db.claim_due("n2", 1300, 1000, 10).await.unwrap();
    assert_eq!(c2.len(), 1, "{name}: expired lease taken over");
    assert_eq!(db.next_due().await.unwrap(), Some(150));
    // Firing marks it; firing again is a conflict; states are visible.
    let fire = Batch {
        now: 1400,
        timers_fired: vec![("i1".into(), "a".into())],
        ..Batch::default()
    };
    db.commit(&fire).await.unwrap();
    assert!(
        matches!(db.commit(&fire).await, Err(StoreError::Conflict(_))),
        "{name}"
    );
    let st = db
        .timer_states(&[
            ("i1".into(), "a".into()),
            ("i1".into(), "b".into()),
            ("i1".into(), "zz".into()),
        ])
        .await
        .unwrap();
    assert_eq!(st.len(), 2);
    assert!(st.contains(&("i1".into(), "a".into(), TimerState::Fired)));
    assert!(st.contains(&("i1".into(), "b".into(), TimerState::Pending)));
    // Cancel, then re-arm the same id: pending again with the new due time.
    let cancel = Batch {
        now: 1500,
        timers_cancelled: vec![("i1".into(), "b".into())],
        ..Batch::default()
    };
    db.commit(&cancel).await.unwrap();
    assert!(
        db.claim_due("n1", 100_000, 1000, 10)
            .await
            .unwrap()
            .is_empty(),
        "{name}: cancelled"
    );
    let rearm = Batch {
        now: 1600,
        timers_armed: vec![TimerRow {
            instance: "i1".into(),
            timer_id: "b".into(),
            due: 1700,
            kind: "{}".into(),
        }],
        ..Batch::default()
    };
    db.commit(&rearm).await.unwrap();
    assert_eq!(db.claim_due("n1", 1700, 1000, 10).await.unwrap().len(), 1);
    let counts = db.timer_counts().await.unwrap();
    assert!(counts.contains(&("fired".into(), 1)), "{name}: {counts:?}");

    // Outbox: claim, fail with retry, dead-letter, deliver.
    db.enqueue(&[OutboxRow {
        id: "r/1".into(),
        instance: None,
        ..b.outbox[0].clone()
    }])
    .await
    .unwrap();
    db.enqueue(&[OutboxRow {
        id: "r/1".into(),
        instance: None,
        ..b.outbox[0].clone()
    }])
    .await
    .unwrap();
    let m = db.claim_outbox("n1", 100, 10_000, 10).await.unwrap();
    assert_eq!(m.len(), 2, "{name}");
    assert_eq!(m[0].row.payload["项目"], "x");
    assert!(
        db.claim_outbox("n2", 200, 10_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "{name}: leased"
    );
    db.mark_failed("i1/1/0", "connection refused", 500, false)
        .await
        .unwrap();
    db.mark_failed("r/1", "HTTP 500", 0, true).await.unwrap();
    assert!(
        db.claim_outbox("n2", 400, 10_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "{name}: backoff"
    );
    let again = db.claim_outbox("n2", 500, 10_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].tries, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("connection refused"));
    db.mark_delivered("i1/1/0", 600).await.unwrap();
    assert_eq!(db.outbox_in_state("delivered", 10).await.unwrap().len(), 1);
    let dead = db.outbox_in_state("dead", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 500"));

    // Projections and the dashboard.
    let b2 = Batch {
        now: 700,
        instances: vec![InstanceWrite {
            projection: Projection {
                status: "running".into(),
                stage: Some("审批".into()),
                channel: Some("green".into()),
                tasks: vec![
                    task("i2", "t1", None, "发改委", "red", 10),
                    InboxRow {
                        priority: 5,
                        ..task("i2", "t2", None, "发改委", "green", 20_000)
                    },
                ],
                promises: vec![PromiseRow {
                    instance: "i2".into(),
                    promise_id: "p1".into(),
                    material: "环评".into(),
                    state: "open".into(),
                    colour: "green".into(),
                    due: Some(800),
                }],
                elements: vec![ElementRow {
                    instance: "i2".into(),
                    stage: "审批".into(),
                    element: "land".into(),
                    department: Some("自然资源局".into()),
                    state: "missing".into(),
                    due: Some(900),
                }],
            },
            ..new_instance("i2", 1, vec![])
        }],
        events: vec![event("i2", 1)],
        ..Batch::default()
    };
    db.commit(&b2).await.unwrap();
    let pool = db.inbox_for(&["dept:发改委".into()], 10).await.unwrap();
    assert_eq!(pool.len(), 2, "{name}");
    assert_eq!(pool[0].task_id, "t2", "{name}: priority first");
    assert_eq!(db.inbox(Some("user:bob"), &[], 10).await.unwrap().len(), 1);
    let dash = db.dashboard().await.unwrap();
    assert!(
        dash.by_colour.contains(&("red".into(), 1)),
        "{name}: {dash:?}"
    );
    assert!(
        dash.by_department.contains(&("发改委".into(), 3)),
        "{name}: {dash:?}"
    );
    assert!(dash.by_status.contains(&("running".into(), 2)));
    assert_eq!(dash.supervised, 1);
    assert_eq!(db.overdue(100, 10).await.unwrap().len(), 1);
    assert_eq!(db.promises_due(700, 1000).await.unwrap().len(), 1);
    assert_eq!(db.promises_due(801, 1000).await.unwrap().len(), 0);
    assert_eq!(db.supervised(10).await.unwrap()[0].instance, "i2");
    assert_eq!(db.elements_of("i2").await.unwrap()[0].element, "land");
    // The running instances with a promise (whose letters the board reads): i2, not i1.
    assert_eq!(
        db.running_with_promises(10).await.unwrap(),
        vec!["i2".to_string()],
        "{name}"
    );

    // A report runs once per scheduled time, whoever asks.
    assert!(db.try_start_report("weekly", 1000, "n1", 1).await.unwrap());
    assert!(!db.try_start_report("weekly", 1000, "n2", 2).await.unwrap());
    assert!(db.try_start_report("weekly", 2000, "n2", 2).await.unwrap());
}

#[tokio::test]
async fn store_conformance_on_both_backends() {
    let dir = TempDir::new("conformance");
    for db in both("conformance", &dir).await {
        conformance(db).await;
    }
}

/// A commit that knows what it wrote last time writes only the rows that changed; the stored
/// read models must come out exactly as if everything had been rewritten.
async fn changed_rows_only(db: Db) {
    let name = db.backend();
    let promise = |state: &str| PromiseRow {
        instance: "d1".into(),
        promise_id: "p1".into(),
        material: "环评".into(),
        state: state.into(),
        colour: "green".into(),
        due: Some(800),
    };
    let element = |state: &str| ElementRow {
        instance: "d1".into(),
        stage: "审批".into(),
        element: "land".into(),
        department: None,
        state: state.into(),
        due: None,
    };
    let first = Projection {
        status: "running".into(),
        tasks: vec![
            task("d1", "t1", None, "发改委", "green", 10),
            task("d1", "t2", None, "发改委", "green", 20),
            task("d1", "t3", None, "发改委", "green", 30),
        ],
        promises: vec![promise("open")],
        elements: vec![element("missing")],
        ..Projection::default()
    };
    db.commit(&Batch {
        instances: vec![InstanceWrite {
            projection: first.clone(),
            ..new_instance("d1", 1, vec![])
        }],
        events: vec![event("d1", 1)],
        ..Batch::default()
    })
    .await
    .unwrap();
    // t1 stays, t2 turns yellow, t3 is done, t4 opens; the promise is unchanged, the element
    // is attached.
    let second = Projection {
        tasks: vec![
            task("d1", "t1", None, "发改委", "green", 10),
            task("d1", "t2", None, "发改委", "yellow", 20),
            task("d1", "t4", None, "发改委", "green", 40),
        ],
        elements: vec![element("attached")],
        ..first.clone()
    };
    db.commit(&Batch {
        instances: vec![InstanceWrite {
            from_version: 1,
            to_version: 2,
            projection: second.clone(),
            written: Some(std::sync::Arc::new(first)),
            ..new_instance("d1", 2, vec![])
        }],
        events: vec![event("d1", 2)],
        ..Batch::default()
    })
    .await
    .unwrap();
    let mut tasks = db.inbox_for(&["dept:发改委".into()], 10).await.unwrap();
    tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    assert_eq!(tasks, second.tasks, "{name}");
    assert_eq!(
        db.promises_due(0, 1000).await.unwrap(),
        second.promises,
        "{name}"
    );
    assert_eq!(
        db.elements_of("d1").await.unwrap(),
        second.elements,
        "{name}"
    );
    // Without what was written, everything is replaced: same result.
    let third = Projection {
        tasks: vec![task("d1", "t5", None, "发改委", "red", 50)],
        promises: vec![],
        ..second
    };
    db.commit(&Batch {
        instances: vec![InstanceWrite {
            from_version: 2,
            to_version: 3,
            projection: third.clone(),
            ..new_instance("d1", 3, vec![])
        }],
        events: vec![event("d1", 3)],
        ..Batch::default()
    })
    .await
    .unwrap();
    let tasks = db.inbox_for(&["dept:发改委".into()], 10).await.unwrap();
    assert_eq!(tasks, third.tasks, "{name}");
    assert!(db.promises_due(0, 1000).await.unwrap().is_empty(), "{name}");
}

#[tokio::test]
async fn commits_write_only_the_rows_that_changed() {
    let dir = TempDir::new("changed_rows");
    for db in both("changed_rows", &dir).await {
        changed_rows_only(db).await;
    }
}

/// Runs one statement straight on the backend's pool (for what the `Store` API cannot do:
/// writing a row as an older version did, reading the server's own tables).
async fn raw(db: &Db, sql: &'static str) -> i64 {
    use sqlx::Row;
    match db {
        Db::Sqlite(s) => {
            let rows = sqlx::query(sql).fetch_all(s.pool()).await.unwrap();
            rows.first().map_or(0, |r| r.try_get(0).unwrap())
        }
        Db::Postgres(s) => {
            let rows = sqlx::query(sql).fetch_all(s.pool()).await.unwrap();
            rows.first().map_or(0, |r| r.try_get(0).unwrap())
        }
    }
}

/// The statements each backend writes its own way (lists, orderings, JSON read back as text)
/// and the migrations answer the same on both.
async fn dialects_agree(db: Db) {
    let name = db.backend();
    // Each event keeps the format it was written in; a row stored before the column existed
    // reads as format 1.
    let mut later = event("f1", 2);
    later.format = 7;
    db.commit(&Batch {
        instances: vec![new_instance("f1", 2, vec![])],
        events: vec![event("f1", 1), later],
        idempotency: vec![
            IdempotencyRow {
                key: r#"k"1"#.into(),
                instance: "f1".into(),
                result: r#"{"ok":"引号\"与中文"}"#.into(),
                request: None,
            },
            IdempotencyRow {
                key: "键,2".into(),
                instance: "f1".into(),
                result: "{}".into(),
                request: None,
            },
        ],
        timers_armed: vec![
            TimerRow {
                instance: "f1".into(),
                timer_id: "a".into(),
                due: 5,
                kind: "{}".into(),
            },
            TimerRow {
                instance: "f2".into(),
                timer_id: "b".into(),
                due: 5,
                kind: "{}".into(),
            },
        ],
        ..Batch::default()
    })
    .await
    .unwrap();
    raw(
        &db,
        "INSERT INTO events (instance, seq, type, body, recorded_at)
         VALUES ('f1', 3, 'e', '{\"old\":true}', 10)",
    )
    .await;
    let (_, events) = db.load("f1", 0).await.unwrap().unwrap();
    let formats: Vec<u32> = events.iter().map(|e| e.format).collect();
    assert_eq!(formats, [1, 7, 1], "{name}");
    assert_eq!(events[2].body, r#"{"old":true}"#, "{name}: body as stored");

    // Keys in one statement, whatever characters they hold; a missing one is left out.
    let mut found = db
        .lookup_keys(&[r#"k"1"#.into(), "键,2".into(), "absent".into()])
        .await
        .unwrap();
    found.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = found.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, [r#"k"1"#, "键,2"], "{name}");
    let result: serde_json::Value = serde_json::from_str(&found[0].result).unwrap();
    assert_eq!(result["ok"], "引号\"与中文", "{name}");

    // Timer states pair instance with timer id: (f1, b) is no timer.
    let mut states = db
        .timer_states(&[
            ("f1".into(), "a".into()),
            ("f1".into(), "b".into()),
            ("f2".into(), "b".into()),
        ])
        .await
        .unwrap();
    states.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        states,
        [
            ("f1".into(), "a".into(), TimerState::Pending),
            ("f2".into(), "b".into(), TimerState::Pending)
        ],
        "{name}"
    );

    // The inbox: higher priority first, then the nearest due, undated last; a department's
    // unassigned tasks count for its members whatever its name holds.
    let dept = r#"发改"委"#;
    let mut urgent = task("o1", "urgent", None, dept, "green", 90);
    urgent.priority = 5;
    urgent.assignee = None;
    let mut undated = task("o1", "undated", Some("wu"), dept, "green", 0);
    undated.due = None;
    let soon = task("o1", "soon", Some("wu"), dept, "green", 20);
    let later = task("o1", "later", Some("wu"), dept, "green", 30);
    db.commit(&Batch {
        instances: vec![new_instance("o1", 1, vec![undated, later, urgent, soon])],
        events: vec![event("o1", 1)],
        ..Batch::default()
    })
    .await
    .unwrap();
    let ids = |rows: Vec<InboxRow>| rows.into_iter().map(|r| r.task_id).collect::<Vec<_>>();
    assert_eq!(
        ids(db.inbox(Some("user:wu"), &[dept.into()], 10).await.unwrap()),
        ["urgent", "soon", "later", "undated"],
        "{name}"
    );
    assert_eq!(
        ids(db
            .inbox_for(&["user:wu".into(), "role:x".into()], 10)
            .await
            .unwrap()),
        ["soon", "later", "undated"],
        "{name}"
    );
    assert!(db.inbox_for(&[], 10).await.unwrap().is_empty(), "{name}");
    // A delegated task is addressed to its assignee and its delegate: either finds it, once,
    // and its addressees read back as written.
    let mut shared = task("o2", "shared", Some("wu"), dept, "green", 40);
    shared.addressees.push("user:qian".into());
    db.commit(&Batch {
        instances: vec![new_instance("o2", 1, vec![shared.clone()])],
        events: vec![event("o2", 1)],
        ..Batch::default()
    })
    .await
    .unwrap();
    let delegate = db.inbox_for(&["user:qian".into()], 10).await.unwrap();
    assert_eq!(delegate, [shared.clone()], "{name}");
    assert_eq!(
        db.inbox(Some("user:qian"), &[], 10).await.unwrap(),
        [shared.clone()],
        "{name}"
    );
    let both = db
        .inbox_for(&["user:wu".into(), "user:qian".into(), "role:x".into()], 10)
        .await
        .unwrap();
    assert_eq!(
        both.iter().filter(|r| r.task_id == "shared").count(),
        1,
        "{name}"
    );
    assert!(
        db.inbox_for(&["user:zhu".into()], 10)
            .await
            .unwrap()
            .is_empty(),
        "{name}"
    );
    assert!(db.lookup_keys(&[]).await.unwrap().is_empty(), "{name}");

    // Two publishes of different texts at once: each gets its own version.
    let (a, b) = tokio::join!(
        db.publish("race", "a: 1", "ha", Source::Api("a"), 1),
        db.publish("race", "a: 2", "hb", Source::Api("b"), 1)
    );
    let mut versions = [a.unwrap().version, b.unwrap().version];
    versions.sort();
    assert_eq!(versions, [1, 2], "{name}");

    // The server's own tables come with the migrations.
    assert_eq!(
        raw(&db, "SELECT count(*) FROM web_users").await,
        0,
        "{name}"
    );
}

#[tokio::test]
async fn the_dialects_agree_on_both_backends() {
    let dir = TempDir::new("dialects");
    for db in both("dialects", &dir).await {
        dialects_agree(db).await;
    }
}

/// A database the server set up before its tables were in the migrations has them already,
/// with its users in them: the migration keeps them.
#[tokio::test]
async fn a_database_with_the_server_tables_already_upgrades_cleanly() {
    use shenpi_adapters::store::sqlite::SqliteStore;
    use sqlx::Connection;
    const OLD: &str = "CREATE TABLE web_users (name TEXT PRIMARY KEY, department TEXT,
        roles TEXT NOT NULL, password_hash TEXT, created_at BIGINT NOT NULL)";
    const USER: &str =
        "INSERT INTO web_users (name, roles, created_at) VALUES ('chen', '[\"applicant\"]', 1)";
    let dir = TempDir::new("upgrade");
    let file = dir.file("old.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{file}?mode=rwc"))
        .await
        .unwrap();
    sqlx::query(OLD).execute(&mut conn).await.unwrap();
    sqlx::query(USER).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let db = Db::Sqlite(SqliteStore::open(&file).await.unwrap());
    assert_eq!(
        raw(&db, "SELECT count(*) FROM web_users").await,
        1,
        "sqlite"
    );

    let Some(mut admin) = durable_support::pg_admin("upgrade").await else {
        return;
    };
    let schema = durable_support::unique("shenpi_test_upgrade");
    for sql in [
        format!("CREATE SCHEMA {schema}"),
        format!("SET search_path = {schema}"),
        OLD.to_string(),
        USER.to_string(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let pg = shenpi_adapters::store::postgres::PgStore::connect(
        &durable_support::pg_url(),
        Some(&schema),
    )
    .await;
    let count = match &pg {
        Ok(s) => raw(&Db::Postgres(s.clone()), "SELECT count(*) FROM web_users").await,
        Err(_) => -1,
    };
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
    pg.unwrap();
    assert_eq!(count, 1, "postgres");
}

/// Two nodes starting together on a fresh PostgreSQL schema: both come up on the same tables.
#[tokio::test]
async fn two_stores_starting_together_on_a_fresh_schema_both_open() {
    use shenpi_adapters::store::postgres::PgStore;
    let Some(mut admin) = durable_support::pg_admin("start_together").await else {
        return;
    };
    let schema = durable_support::unique("shenpi_test_start");
    let url = durable_support::pg_url();
    let (a, b) = tokio::join!(
        PgStore::connect(&url, Some(&schema)),
        PgStore::connect(&url, Some(&schema))
    );
    let opened = match (&a, &b) {
        (Ok(a), Ok(_)) => raw(&Db::Postgres(a.clone()), "SELECT count(*) FROM web_users").await,
        _ => -1,
    };
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
    a.unwrap();
    b.unwrap();
    assert_eq!(opened, 0);
}

#[tokio::test]
async fn sqlite_is_wal_and_full_sync() {
    use shenpi_adapters::store::sqlite::SqliteStore;
    let dir = TempDir::new("pragmas");
    let s = SqliteStore::open(&dir.file("p.db")).await.unwrap();
    let mut conn = s.pool().acquire().await.unwrap();
    let mode: (String,) = sqlx_row(&mut conn, "PRAGMA journal_mode").await;
    assert_eq!(mode.0.to_lowercase(), "wal");
    let sync: (i64,) = sqlx_row(&mut conn, "PRAGMA synchronous").await;
    assert_eq!(sync.0, 2, "synchronous=FULL");
}

async fn sqlx_row<T>(conn: &mut sqlx::SqliteConnection, sql: &'static str) -> T
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    sqlx::query_as(sql).fetch_one(conn).await.unwrap()
}
