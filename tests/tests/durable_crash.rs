//! Crash recovery: a child process under load is killed with SIGKILL (twice) and restarted; every
//! command it acknowledged has its event exactly once, no timer fired twice, every requested
//! notification is in the outbox, and timers that came due while it was down fire on restart.
//!
//! The child is this test binary itself, re-run with `SHENPI_CRASH_CHILD` set: it runs the
//! command bus and the timer scheduler on the database it is given and prints `ACK <n>` for each
//! acknowledged command (`Add { n }` with a unique `n`).

mod durable_support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_support::{TempDir, pg_url, postgres};
use shenpi_adapters::bus::{Audit, BusOptions, CommandBus, Submit};
use shenpi_adapters::machine::{SystemClock, now_millis};
use shenpi_adapters::store::postgres::PgStore;
use shenpi_adapters::store::sqlite::SqliteStore;
use shenpi_adapters::store::{Db, EventStore, OutboxStore, TimerStore};
use shenpi_adapters::testkit::{Counter, CounterCommand, counter_meta};
use shenpi_adapters::timers::{SchedulerOptions, spawn_scheduler};

const INSTANCES: usize = 16;

async fn open(target: &str) -> Db {
    match target.strip_prefix("pg:") {
        Some(schema) => Db::Postgres(PgStore::connect(&pg_url(), Some(schema)).await.unwrap()),
        None => Db::Sqlite(SqliteStore::open(target).await.unwrap()),
    }
}

/// The child: load until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(target) = std::env::var("SHENPI_CRASH_CHILD") else {
        return;
    };
    let round: u64 = std::env::var("SHENPI_CRASH_ROUND")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let db = open(&target).await;
    let bus = CommandBus::start(
        Arc::new(Counter),
        db.clone(),
        Arc::new(SystemClock),
        BusOptions::default(),
    );
    let opts = SchedulerOptions {
        lease_ms: 1_000,
        poll: Duration::from_millis(20),
        ..SchedulerOptions::default()
    };
    let _sched = spawn_scheduler(bus.clone(), db.clone(), Arc::new(SystemClock), opts);
    for i in 0..INSTANCES {
        let _ = bus
            .submit(Submit {
                instance: format!("x{i}"),
                start: Some(counter_meta(&format!("x{i}"))),
                key: Some(format!("start-x{i}")),
                expected_version: None,
                command: CounterCommand::Start,
                audit: None,
                project: None,
            })
            .await;
    }
    let mut clients = Vec::new();
    for c in 0..32u64 {
        let bus = bus.clone();
        clients.push(tokio::spawn(async move {
            for k in 0u64.. {
                let n = (round * 1_000_000 + c * 10_000 + k) as i64;
                let inst = format!("x{}", (c + k) as usize % INSTANCES);
                let command = match k % 10 {
                    3 => CounterCommand::Notify {
                        channel: "log".into(),
                        recipient: format!("r{n}"),
                    },
                    6 => CounterCommand::ArmTimer {
                        id: format!("t{n}"),
                        due: now_millis() + (n % 400),
                    },
                    _ => CounterCommand::Add { n },
                };
                let add = matches!(command, CounterCommand::Add { .. });
                let r = bus
                    .submit(Submit {
                        instance: inst,
                        start: None,
                        key: Some(format!("k{n}")),
                        expected_version: None,
                        command,
                        // Each add's audit entry names it, to be found after the kills.
                        audit: add.then(|| Audit {
                            user: format!("client{c}"),
                            remote: None,
                            action: format!("add {n}"),
                        }),
                        project: None,
                    })
                    .await;
                if r.is_ok() && add {
                    println!("ACK {n}");
                }
            }
        }));
    }
    for c in clients {
        let _ = c.await;
    }
}

fn run_child(target: &str, round: u64, for_how_long: Duration) -> Vec<i64> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "crash_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SHENPI_CRASH_CHILD", target)
        .env("SHENPI_CRASH_ROUND", round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line
                .strip_prefix("ACK ")
                .and_then(|n| n.trim().parse::<i64>().ok())
            {
                let _ = tx.send(n);
            }
        }
    });
    let t0 = Instant::now();
    let mut acked = Vec::new();
    while t0.elapsed() < for_how_long {
        if let Ok(n) = rx.recv_timeout(Duration::from_millis(20)) {
            acked.push(n);
        }
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let _ = reader.join();
    acked.extend(rx.try_iter());
    acked
}

async fn check(db: &Db, acked: &[i64]) {
    // Let timers that came due while the child was down fire here, as on a restart.
    let bus = CommandBus::start(
        Arc::new(Counter),
        db.clone(),
        Arc::new(SystemClock),
        BusOptions::default(),
    );
    let opts = SchedulerOptions {
        lease_ms: 1_000,
        poll: Duration::from_millis(20),
        ..SchedulerOptions::default()
    };
    let (h, _) = spawn_scheduler(bus, db.clone(), Arc::new(SystemClock), opts);
    let t0 = Instant::now();
    loop {
        let open = db
            .timer_counts()
            .await
            .unwrap()
            .iter()
            .filter(|c| c.0 == "pending" || c.0 == "claimed")
            .map(|c| c.1)
            .sum::<i64>();
        if open == 0 || t0.elapsed() > Duration::from_secs(20) {
            assert_eq!(open, 0, "{}: timers left unfired", db.backend());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.abort();
    let mut added = Vec::new();
    let mut fired = Vec::new();
    let mut notes = 0;
    for i in 0..INSTANCES {
        let Some((row, events)) = db.load(&format!("x{i}"), 0).await.unwrap() else {
            continue;
        };
        assert_eq!(row.version as usize, events.len());
        for e in &events {
            let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            match e.kind.as_str() {
                "added" => added.push(v["n"].as_i64().unwrap()),
                "timer_fired" => fired.push(format!("x{i}/{}", v["id"])),
                "notification_requested" => notes += 1,
                _ => {}
            }
        }
    }
    let unique: HashSet<i64> = added.iter().copied().collect();
    assert_eq!(
        unique.len(),
        added.len(),
        "{}: a command recorded twice",
        db.backend()
    );
    for n in acked {
        assert!(
            unique.contains(n),
            "{}: acknowledged command {n} lost",
            db.backend()
        );
    }
    // Every acknowledged add has its audit entry, once: it committed with the command.
    let sql = "SELECT action FROM web_audit WHERE action LIKE 'add %'";
    let actions: Vec<(String,)> = match db {
        Db::Sqlite(s) => sqlx::query_as(sql).fetch_all(s.pool()).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p.pool()).await,
    }
    .unwrap();
    let audited: Vec<i64> = actions
        .iter()
        .filter_map(|(a,)| a.strip_prefix("add ")?.parse().ok())
        .collect();
    let audited_once: HashSet<i64> = audited.iter().copied().collect();
    assert_eq!(
        audited_once.len(),
        audited.len(),
        "{}: an audit entry written twice",
        db.backend()
    );
    for n in acked {
        assert!(
            audited_once.contains(n),
            "{}: acknowledged command {n} has no audit entry",
            db.backend()
        );
    }
    let fired_unique: HashSet<&String> = fired.iter().collect();
    assert_eq!(
        fired_unique.len(),
        fired.len(),
        "{}: a timer fired twice",
        db.backend()
    );
    let fired_rows = db
        .timer_counts()
        .await
        .unwrap()
        .iter()
        .find(|c| c.0 == "fired")
        .map_or(0, |c| c.1);
    assert_eq!(
        fired_rows as usize,
        fired.len(),
        "{}: timer rows and events disagree",
        db.backend()
    );
    let outbox = db
        .outbox_in_state("pending", 1_000_000)
        .await
        .unwrap()
        .len();
    assert_eq!(
        outbox,
        notes,
        "{}: a requested notification is missing from the outbox",
        db.backend()
    );
    eprintln!(
        "{}: {} acknowledged adds survived 2 SIGKILLs ({} recorded, {} audited), {} timers fired once, {} notifications queued",
        db.backend(),
        acked.len(),
        added.len(),
        audited.len(),
        fired.len(),
        notes
    );
}

async fn crash_twice(target: &str) -> Vec<i64> {
    let mut acked = run_child(target, 1, Duration::from_millis(2500));
    assert!(
        acked.len() > 100,
        "the child made no progress: {}",
        acked.len()
    );
    acked.extend(run_child(target, 2, Duration::from_millis(2000)));
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged_sqlite() {
    if std::env::var_os("SHENPI_CRASH_CHILD").is_some() {
        return;
    }
    let dir = TempDir::new("crash");
    let file = dir.file("crash.db");
    let acked = crash_twice(&file).await;
    check(&open(&file).await, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged_postgres() {
    if std::env::var_os("SHENPI_CRASH_CHILD").is_some() {
        return;
    }
    let Some((_, schema)) = postgres("crash").await else {
        return;
    };
    let target = format!("pg:{schema}");
    let acked = crash_twice(&target).await;
    check(&open(&target).await, &acked).await;
}
