//! The command path with group commit, idempotency and the timer scheduler, on both backends,
//! with the counter test machine (whose correct history is easy to state).

mod durable_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_support::{TempDir, both, cmd, postgres, start};
use shenpi_adapters::bus::{Audit, BusOptions, CommandBus, CommandError, Submit};
use shenpi_adapters::machine::{SystemClock, now_millis};
use shenpi_adapters::store::{Db, EventStore, ProjectionStore, TimerStore};
use shenpi_adapters::testkit::{Counter, CounterCommand};
use shenpi_adapters::timers::{SchedulerOptions, spawn_scheduler};

fn bus(db: &Db) -> CommandBus<Counter> {
    CommandBus::start(
        Arc::new(Counter),
        db.clone(),
        Arc::new(SystemClock),
        BusOptions::default(),
    )
}

async fn total_after_reload(db: &Db, id: &str) -> i64 {
    let (row, events) = db.load(id, 0).await.unwrap().unwrap();
    assert_eq!(row.version as usize, events.len());
    events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            v["n"]
                .as_i64()
                .filter(|_| v["type"] == "added")
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_share_commits_and_every_ack_is_recorded_once() {
    let dir = TempDir::new("bus_concurrent");
    for db in both("bus_concurrent", &dir).await {
        let bus = bus(&db);
        for i in 0..8 {
            start(&bus, &format!("c{i}")).await;
        }
        let mut tasks = Vec::new();
        for client in 0..64 {
            let bus = bus.clone();
            tasks.push(tokio::spawn(async move {
                let mut versions = Vec::new();
                for k in 0..20 {
                    let inst = format!("c{}", (client + k) % 8);
                    let r = bus
                        .submit(cmd(&inst, CounterCommand::Add { n: 1 }))
                        .await
                        .unwrap();
                    assert_eq!(r.events, 1);
                    versions.push((inst, r.version));
                }
                versions
            }));
        }
        let mut seen = std::collections::HashSet::new();
        for t in tasks {
            for v in t.await.unwrap() {
                assert!(
                    seen.insert(v.clone()),
                    "{}: version {v:?} acknowledged twice",
                    db.backend()
                );
            }
        }
        let mut total = 0;
        for i in 0..8 {
            total += total_after_reload(&db, &format!("c{i}")).await;
        }
        assert_eq!(total, 64 * 20, "{}", db.backend());
        assert_eq!(db.count_events(None).await.unwrap(), 8 + 64 * 20);
        // The inbox, written row by row as it changed, ends as the last state says: one task
        // per instance, red (a total of 160 is past the counter's red line of 100).
        let inbox = db.inbox_for(&["user:alice".into()], 100).await.unwrap();
        assert_eq!(inbox.len(), 8, "{}: {inbox:?}", db.backend());
        assert!(
            inbox.iter().all(|t| t.colour == "red" && t.supervised),
            "{}: {inbox:?}",
            db.backend()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_keeps_its_answer_under_its_key() {
    let dir = TempDir::new("bus_refused_key");
    for db in both("bus_refused_key", &dir).await {
        let bus = bus(&db);
        start(&bus, "f").await;
        let keyed = |c| Submit {
            key: Some("once".into()),
            ..cmd("f", c)
        };
        let first = bus.submit(keyed(CounterCommand::Refuse)).await;
        let Err(CommandError::Rejected(why)) = first else {
            panic!("{}: {first:?}", db.backend());
        };
        // The same request again is the same answer, even from a fresh bus (the answer comes
        // from the store, not a cache); the key with another command is refused, not replayed.
        let again = bus.submit(keyed(CounterCommand::Refuse)).await;
        assert_eq!(again, Err(CommandError::Rejected(why.clone())));
        let other = self::bus(&db);
        let again = other.submit(keyed(CounterCommand::Refuse)).await;
        assert_eq!(again, Err(CommandError::Rejected(why)));
        let reused = other.submit(keyed(CounterCommand::Add { n: 5 })).await;
        assert_eq!(reused, Err(CommandError::KeyReused), "{}", db.backend());
        assert_eq!(total_after_reload(&db, "f").await, 0, "{}", db.backend());
        // A stale version is not an outcome of the command: it is not kept under the key.
        let stale = bus
            .submit(Submit {
                key: Some("later".into()),
                expected_version: Some(9),
                ..cmd("f", CounterCommand::Add { n: 1 })
            })
            .await;
        assert!(matches!(stale, Err(CommandError::StaleVersion { .. })));
        let ok = bus
            .submit(Submit {
                key: Some("later".into()),
                ..cmd("f", CounterCommand::Add { n: 1 })
            })
            .await
            .unwrap();
        assert!(!ok.replayed);
        assert_eq!(total_after_reload(&db, "f").await, 1, "{}", db.backend());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_command_does_not_poison_its_batch() {
    let dir = TempDir::new("bus_reject");
    for db in both("bus_reject", &dir).await {
        let bus = bus(&db);
        start(&bus, "r").await;
        let mut tasks = Vec::new();
        for i in 0..40 {
            let bus = bus.clone();
            tasks.push(tokio::spawn(async move {
                let c = if i % 4 == 0 {
                    CounterCommand::Refuse
                } else {
                    CounterCommand::Add { n: 1 }
                };
                (i, bus.submit(cmd("r", c)).await)
            }));
        }
        for t in tasks {
            let (i, r) = t.await.unwrap();
            if i % 4 == 0 {
                assert!(matches!(r, Err(CommandError::Rejected(_))), "{r:?}");
            } else {
                assert!(r.is_ok(), "{r:?}");
            }
        }
        assert_eq!(total_after_reload(&db, "r").await, 30, "{}", db.backend());
        // Unknown instance and stale version are refused, changing nothing.
        let r = bus.submit(cmd("nope", CounterCommand::Add { n: 1 })).await;
        assert!(matches!(r, Err(CommandError::NotFound(_))), "{r:?}");
        let r = bus
            .submit(Submit {
                expected_version: Some(3),
                ..cmd("r", CounterCommand::Add { n: 1 })
            })
            .await;
        assert!(
            matches!(
                r,
                Err(CommandError::StaleVersion {
                    expected: 3,
                    actual: 31
                })
            ),
            "{r:?}"
        );
        assert_eq!(db.count_events(Some("r")).await.unwrap(), 31);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_command_sent_twice_concurrently_is_applied_once() {
    let dir = TempDir::new("bus_idem");
    for db in both("bus_idem", &dir).await {
        // Two buses on one database stand for two nodes (on SQLite: two writers in one file).
        let a = bus(&db);
        let b = bus(&db);
        start(&a, "k").await;
        for round in 0..20 {
            let key = format!("click-{round}");
            let mut tasks = Vec::new();
            for i in 0..6 {
                let bus = if i % 2 == 0 { a.clone() } else { b.clone() };
                let key = key.clone();
                tasks.push(tokio::spawn(async move {
                    bus.submit(Submit {
                        key: Some(key),
                        ..cmd("k", CounterCommand::Add { n: 1 })
                    })
                    .await
                    .unwrap()
                }));
            }
            let mut receipts = Vec::new();
            for t in tasks {
                receipts.push(t.await.unwrap());
            }
            let first = &receipts[0];
            for r in &receipts {
                assert_eq!(
                    (r.version, r.first_seq),
                    (first.version, first.first_seq),
                    "{}",
                    db.backend()
                );
            }
            assert_eq!(
                receipts.iter().filter(|r| !r.replayed).count(),
                1,
                "{receipts:?}"
            );
        }
        assert_eq!(total_after_reload(&db, "k").await, 20, "{}", db.backend());
    }
}

async fn wait_fired(db: &Db, want: i64, timeout: Duration) -> i64 {
    let t0 = Instant::now();
    loop {
        let counts = db.timer_counts().await.unwrap();
        let fired = counts.iter().find(|c| c.0 == "fired").map_or(0, |c| c.1);
        if fired >= want || t0.elapsed() > timeout {
            return fired;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_timers_fire_once_and_cancelled_ones_never() {
    let dir = TempDir::new("bus_timers");
    for db in both("bus_timers", &dir).await {
        let bus = bus(&db);
        start(&bus, "t").await;
        let now = now_millis();
        for i in 0..300 {
            bus.submit(cmd(
                "t",
                CounterCommand::ArmTimer {
                    id: format!("x{i}"),
                    due: now - 10 + i % 5,
                },
            ))
            .await
            .unwrap();
        }
        bus.submit(cmd(
            "t",
            CounterCommand::ArmTimer {
                id: "gone".into(),
                due: now,
            },
        ))
        .await
        .unwrap();
        bus.submit(cmd("t", CounterCommand::CancelTimer { id: "gone".into() }))
            .await
            .unwrap();
        bus.submit(cmd(
            "t",
            CounterCommand::ArmTimer {
                id: "later".into(),
                due: now + 3_600_000,
            },
        ))
        .await
        .unwrap();
        let opts = SchedulerOptions {
            batch: 64,
            ..SchedulerOptions::default()
        };
        let (h, stats) = spawn_scheduler(bus.clone(), db.clone(), Arc::new(SystemClock), opts);
        assert_eq!(
            wait_fired(&db, 300, Duration::from_secs(20)).await,
            300,
            "{}",
            db.backend()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.abort();
        let (_, events) = db.load("t", 0).await.unwrap().unwrap();
        let mut fired: Vec<String> = events
            .iter()
            .filter(|e| e.kind == "timer_fired")
            .map(|e| serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["id"].to_string())
            .collect();
        assert_eq!(fired.len(), 300, "{}", db.backend());
        fired.sort();
        fired.dedup();
        assert_eq!(fired.len(), 300, "{}: a timer fired twice", db.backend());
        assert!(
            !fired
                .iter()
                .any(|f| f.contains("gone") || f.contains("later"))
        );
        assert_eq!(stats.fired.load(std::sync::atomic::Ordering::Relaxed), 300);
    }
}

/// Two nodes (each its own pool, writer and scheduler) on one PostgreSQL fire 10,000 due timers:
/// each exactly once, and both take part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_fire_10000_timers_exactly_once() {
    let Some((pg, schema)) = postgres("two_nodes").await else {
        return;
    };
    let db = Db::Postgres(pg);
    let setup = bus(&db);
    let now = now_millis();
    let instances = 100;
    for i in 0..instances {
        let id = format!("n{i}");
        start(&setup, &id).await;
    }
    // Arm 100 timers per instance, concurrently across instances.
    let mut tasks = Vec::new();
    for i in 0..instances {
        let bus = setup.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..100 {
                bus.submit(cmd(
                    &format!("n{i}"),
                    CounterCommand::ArmTimer {
                        id: format!("t{k}"),
                        due: now + 2_000,
                    },
                ))
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut nodes = Vec::new();
    for n in 0..2 {
        let store = shenpi_adapters::store::postgres::PgStore::connect(
            &durable_support::pg_url(),
            Some(&schema),
        )
        .await
        .unwrap();
        let db = Db::Postgres(store);
        let bus = bus(&db);
        let opts = SchedulerOptions {
            node: format!("node{n}"),
            batch: 500,
            ..SchedulerOptions::default()
        };
        nodes.push(spawn_scheduler(bus, db, Arc::new(SystemClock), opts));
    }
    let fired = wait_fired(&db, 10_000, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_node: Vec<u64> = nodes
        .iter()
        .map(|n| n.1.fired.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    for n in &nodes {
        n.0.abort();
    }
    assert_eq!(fired, 10_000);
    let mut total_events = 0;
    for i in 0..instances {
        let (_, events) = db.load(&format!("n{i}"), 0).await.unwrap().unwrap();
        let mut ids: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == "timer_fired")
            .map(|e| e.body.as_str())
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "a timer fired twice on n{i}");
        assert_eq!(n, 100, "n{i}");
        total_events += n;
    }
    assert_eq!(total_events, 10_000);
    assert_eq!(per_node.iter().sum::<u64>(), 10_000, "{per_node:?}");
    eprintln!("fired per node: {per_node:?}");
}

/// The audit trail's entries for an instance: (user, action, outcome), in order.
async fn audit_of(db: &Db, instance: &str) -> Vec<(String, String, String)> {
    let sql =
        "SELECT user_name, action, outcome FROM web_audit WHERE instance = $1 ORDER BY at, id";
    match db {
        Db::Sqlite(s) => sqlx::query_as(sql).bind(instance).fetch_all(s.pool()).await,
        Db::Postgres(p) => sqlx::query_as(sql).bind(instance).fetch_all(p.pool()).await,
    }
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_bound_to_its_request_and_internal_failures_are_never_kept() {
    let dir = TempDir::new("bus_key_bound");
    for db in both("bus_key_bound", &dir).await {
        let bus = bus(&db);
        start(&bus, "a").await;
        start(&bus, "b").await;
        let keyed = |instance: &str, c| Submit {
            key: Some("k".into()),
            ..cmd(instance, c)
        };
        let first = bus
            .submit(keyed("a", CounterCommand::Add { n: 1 }))
            .await
            .unwrap();
        assert!(!first.replayed);
        // A retry of the same request is the stored receipt.
        let retry = bus
            .submit(keyed("a", CounterCommand::Add { n: 1 }))
            .await
            .unwrap();
        assert!(retry.replayed);
        assert_eq!(retry.version, first.version);
        // The key on another instance, or with another command, does nothing.
        for (instance, c) in [
            ("b", CounterCommand::Add { n: 1 }),
            ("a", CounterCommand::Add { n: 2 }),
        ] {
            let r = bus.submit(keyed(instance, c)).await;
            assert_eq!(r, Err(CommandError::KeyReused), "{}", db.backend());
        }
        // Two requests with one key in one batch: the second is refused too.
        let (x, y) = tokio::join!(
            bus.submit(Submit {
                key: Some("pair".into()),
                ..cmd("a", CounterCommand::Add { n: 1 })
            }),
            bus.submit(Submit {
                key: Some("pair".into()),
                ..cmd("b", CounterCommand::Add { n: 1 })
            }),
        );
        let outcomes = [x.is_ok(), y.is_ok()];
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{x:?} {y:?}");
        assert!(
            [&x, &y].iter().any(|r| **r == Err(CommandError::KeyReused)),
            "{x:?} {y:?}"
        );
        assert_eq!(
            total_after_reload(&db, "a").await + total_after_reload(&db, "b").await,
            2,
            "{}",
            db.backend()
        );
        // The machine's own fault is answered but not stored: the key is free again.
        let failed = bus
            .submit(Submit {
                key: Some("f".into()),
                ..cmd("a", CounterCommand::Fail)
            })
            .await;
        assert!(
            matches!(&failed, Err(CommandError::Rejected(r)) if r.internal),
            "{failed:?}"
        );
        let after = bus
            .submit(Submit {
                key: Some("f".into()),
                ..cmd("a", CounterCommand::Add { n: 1 })
            })
            .await
            .unwrap();
        assert!(!after.replayed, "{}", db.backend());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_command_costs_only_itself() {
    let dir = TempDir::new("bus_panic");
    for db in both("bus_panic", &dir).await {
        let bus = bus(&db);
        for i in 0..4 {
            start(&bus, &format!("p{i}")).await;
        }
        // Commands on the same instances as the panicking one, in the same batches.
        let mut tasks = Vec::new();
        for k in 0..40 {
            let bus = bus.clone();
            let c = if k % 10 == 5 {
                CounterCommand::Panic
            } else {
                CounterCommand::Add { n: 1 }
            };
            tasks.push(tokio::spawn(async move {
                bus.submit(cmd(&format!("p{}", k % 4), c)).await
            }));
        }
        let mut panicked = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => assert_eq!(r.events, 1),
                Err(CommandError::Panicked(_)) => panicked += 1,
                Err(e) => panic!("{}: {e:?}", db.backend()),
            }
        }
        assert_eq!(panicked, 4, "{}", db.backend());
        let mut total = 0;
        for i in 0..4 {
            total += total_after_reload(&db, &format!("p{i}")).await;
        }
        assert_eq!(total, 36, "{}", db.backend());
        // The writer goes on.
        assert!(bus.is_alive());
        let r = bus.submit(cmd("p0", CounterCommand::Add { n: 1 })).await;
        assert!(r.is_ok(), "{}: {r:?}", db.backend());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_command_has_its_audit_entry_committed_with_it() {
    let dir = TempDir::new("bus_audit");
    for db in both("bus_audit", &dir).await {
        let bus = bus(&db);
        start(&bus, "t").await;
        let audited = |c, key: Option<&str>| Submit {
            key: key.map(Into::into),
            audit: Some(Audit {
                user: "li".into(),
                remote: Some("10.0.0.7".into()),
                action: "add".into(),
            }),
            ..cmd("t", c)
        };
        bus.submit(audited(CounterCommand::Add { n: 1 }, Some("a1")))
            .await
            .unwrap();
        // Read straight after the answer: no entry waits in memory.
        assert_eq!(
            audit_of(&db, "t").await,
            [("li".into(), "add".into(), "ok".into())],
            "{}",
            db.backend()
        );
        let replay = bus
            .submit(audited(CounterCommand::Add { n: 1 }, Some("a1")))
            .await
            .unwrap();
        assert!(replay.replayed);
        let refused = bus.submit(audited(CounterCommand::Refuse, None)).await;
        assert!(matches!(refused, Err(CommandError::Rejected(_))));
        let outcomes: Vec<String> = audit_of(&db, "t")
            .await
            .into_iter()
            .map(|(_, _, o)| o)
            .collect();
        assert_eq!(outcomes, ["ok", "replayed", "refused"], "{}", db.backend());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_registered_with_its_start_is_written_only_if_the_start_commits() {
    use shenpi_adapters::bus::StartProject;
    use shenpi_adapters::store::ProjectRow;
    use shenpi_adapters::testkit::counter_meta;
    let dir = TempDir::new("bus_project");
    for db in both("bus_project", &dir).await {
        let bus = bus(&db);
        let starting = |project: &str| Submit {
            start: Some(counter_meta("s")),
            project: Some(StartProject {
                id: project.into(),
                register: Some(Box::new(ProjectRow {
                    id: project.into(),
                    name: "滇中新区智能制造产业园".into(),
                    workflow_id: "counter".into(),
                    owner: "chen".into(),
                    fields: "{}".into(),
                    created_at: 1,
                })),
            }),
            ..cmd("s", CounterCommand::Start)
        };
        bus.submit(starting("P1")).await.unwrap();
        // A second start of the same instance is refused: its project is not written.
        let again = bus.submit(starting("P2")).await;
        assert!(matches!(again, Err(CommandError::Rejected(_))), "{again:?}");
        let sql = "SELECT p.id, l.instance FROM web_projects p \
                   LEFT JOIN web_project_instances l ON l.project_id = p.id ORDER BY p.id";
        let rows: Vec<(String, Option<String>)> = match &db {
            Db::Sqlite(s) => sqlx::query_as(sql).fetch_all(s.pool()).await,
            Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p.pool()).await,
        }
        .unwrap();
        assert_eq!(
            rows,
            [("P1".to_string(), Some("s".to_string()))],
            "{}",
            db.backend()
        );
    }
}
