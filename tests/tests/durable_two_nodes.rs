//! Two engine processes on one PostgreSQL fire 10,000 due timers: each fires exactly once, and
//! both processes do a real share of the work. Also, on both backends, what makes the share
//! possible: claims go by instance, and a node leaves alone the instances another holds.
//!
//! The parent arms the timers in a fresh schema, then runs this test binary twice as children
//! (`SHENPI_TWO_NODES_CHILD=<schema>`, `SHENPI_TWO_NODES_NODE=<name>`). Each child connects, prints
//! `READY`, waits for `GO` on stdin (so neither can drain the table before the other has even
//! connected), runs the command bus and the timer scheduler until no open timer remains, and
//! prints `DONE fired=<n> spent=<n> errors=<n> batches=<n> conflicts=<n>`. The parent then checks
//! the database: 10,000 fired rows, exactly one `timer_fired` event per timer, and fired rows
//! claimed by both nodes, matching what each process says it fired, each at least
//! [`MIN_SHARE_PERCENT`] of them.

mod durable_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use durable_support::{TempDir, both, cmd, pg_url, postgres, start};
use shenpi_adapters::bus::{BusOptions, CommandBus};
use shenpi_adapters::machine::{SystemClock, now_millis};
use shenpi_adapters::store::postgres::PgStore;
use shenpi_adapters::store::{ClaimedTimer, Db, EventStore, TimerStore};
use shenpi_adapters::testkit::{Counter, CounterCommand};
use shenpi_adapters::timers::{SchedulerOptions, spawn_scheduler};

const INSTANCES: usize = 100;
const TIMERS_PER_INSTANCE: usize = 100;
const TOTAL: i64 = (INSTANCES * TIMERS_PER_INSTANCE) as i64;
/// How long a child keeps firing before giving up (the parent then fails on the counts).
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);
/// The least share of the timers each process must fire. Claimed by instance, the two split the
/// work about evenly; the bound leaves room for a noisy 2-core machine where one process may
/// start late or be descheduled for a while, and still fails the old row-by-row claims, under
/// which the second process got ~5%.
const MIN_SHARE_PERCENT: u64 = 15;

fn bus(db: &Db) -> CommandBus<Counter> {
    CommandBus::start(
        Arc::new(Counter),
        db.clone(),
        Arc::new(SystemClock),
        BusOptions::default(),
    )
}

async fn open_timers(db: &Db) -> i64 {
    db.timer_counts()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.0 == "pending" || c.0 == "claimed")
        .map(|c| c.1)
        .sum()
}

/// The child: one engine node firing timers until none is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_child() {
    let Ok(schema) = std::env::var("SHENPI_TWO_NODES_CHILD") else {
        return;
    };
    let node = std::env::var("SHENPI_TWO_NODES_NODE").unwrap_or_else(|_| "node".into());
    let db = Db::Postgres(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
    let bus = bus(&db);
    println!("READY");
    // Blocking read of one line: the parent's go signal.
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    assert_eq!(go.trim(), "GO");
    let opts = SchedulerOptions {
        node: node.clone(),
        batch: 500,
        ..SchedulerOptions::default()
    };
    let bus_stats = bus.stats.clone();
    let (handle, stats) = spawn_scheduler(bus, db.clone(), Arc::new(SystemClock), opts);
    let t0 = Instant::now();
    while open_timers(&db).await > 0 && t0.elapsed() < CHILD_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A firing this node committed is counted once its task is joined: let the counters settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.abort();
    println!(
        "DONE fired={} spent={} errors={} batches={} conflicts={}",
        stats.fired.load(Ordering::Relaxed),
        stats.spent.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
        bus_stats.batches.load(Ordering::Relaxed),
        bus_stats.conflicts.load(Ordering::Relaxed)
    );
}

struct Node {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
}

fn spawn_node(schema: &str, name: &str) -> Node {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "two_nodes_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SHENPI_TWO_NODES_CHILD", schema)
        .env("SHENPI_TWO_NODES_NODE", name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Node {
        name: name.to_string(),
        child,
        stdin,
        lines,
        reader,
    }
}

impl Node {
    /// The rest of the first line containing `prefix` (libtest may print `test NAME ... ` before
    /// it on the same line), or a panic when the child says nothing in time.
    fn expect_line(&self, prefix: &str, timeout: Duration) -> String {
        let t0 = Instant::now();
        while let Some(left) = timeout.checked_sub(t0.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(i) = l.find(prefix) {
                        return l[i..].to_string();
                    }
                }
                Err(e) => panic!("{}: no {prefix} line: {e}", self.name),
            }
        }
        panic!("{}: no {prefix} line within {timeout:?}", self.name);
    }
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_postgres_fire_10000_timers_exactly_once() {
    if std::env::var_os("SHENPI_TWO_NODES_CHILD").is_some() {
        return;
    }
    let Some((pg, schema)) = postgres("two_procs").await else {
        return;
    };
    let db = Db::Postgres(pg);

    // Arm the timers, all due now, through the command path (no scheduler runs in this process).
    let t_arm = Instant::now();
    let setup = bus(&db);
    for i in 0..INSTANCES {
        start(&setup, &format!("n{i}")).await;
    }
    let now = now_millis();
    let mut tasks = Vec::new();
    for i in 0..INSTANCES {
        let bus = setup.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..TIMERS_PER_INSTANCE {
                bus.submit(cmd(
                    &format!("n{i}"),
                    CounterCommand::ArmTimer {
                        id: format!("t{k}"),
                        due: now,
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
    assert_eq!(open_timers(&db).await, TOTAL);
    let arm_time = t_arm.elapsed();

    // Two engine processes; both connected before either may fire.
    let mut nodes = [spawn_node(&schema, "node-a"), spawn_node(&schema, "node-b")];
    for n in &nodes {
        n.expect_line("READY", Duration::from_secs(60));
    }
    let t_fire = Instant::now();
    for n in &mut nodes {
        let mut stdin = n.stdin.take().unwrap();
        stdin.write_all(b"GO\n").unwrap();
        stdin.flush().unwrap();
    }
    let mut reported = Vec::new();
    for n in &mut nodes {
        let done = n.expect_line("DONE", CHILD_TIMEOUT + Duration::from_secs(30));
        let status = n.child.wait().unwrap();
        assert!(status.success(), "{}: {status}", n.name);
        reported.push((
            n.name.clone(),
            field(&done, "fired"),
            field(&done, "spent"),
            field(&done, "batches"),
            field(&done, "conflicts"),
        ));
    }
    let fire_time = t_fire.elapsed();
    for n in nodes {
        n.reader.join().unwrap();
    }

    // Every timer row fired.
    let counts = db.timer_counts().await.unwrap();
    let fired = counts.iter().find(|c| c.0 == "fired").map_or(0, |c| c.1);
    assert_eq!(fired, TOTAL, "{counts:?}");
    assert_eq!(open_timers(&db).await, 0, "{counts:?}");

    // Every timer's effect (its `timer_fired` event) recorded exactly once.
    let mut total_events = 0;
    for i in 0..INSTANCES {
        let (row, events) = db.load(&format!("n{i}"), 0).await.unwrap().unwrap();
        assert_eq!(row.version as usize, events.len());
        let mut ids: Vec<String> = events
            .iter()
            .filter(|e| e.kind == "timer_fired")
            .map(|e| {
                let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
                v["id"].as_str().unwrap().to_string()
            })
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "a timer fired twice on n{i}");
        assert_eq!(n, TIMERS_PER_INSTANCE, "n{i}");
        total_events += n;
    }
    assert_eq!(total_events as i64, TOTAL);

    // The split: what each process says it fired, and who holds each fired row's claim.
    let Db::Postgres(pg) = &db else {
        unreachable!("the database is PostgreSQL");
    };
    let by_claim: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT claimed_by, count(*) FROM timers WHERE state = 'fired' \
         GROUP BY claimed_by ORDER BY claimed_by",
    )
    .fetch_all(pg.pool())
    .await
    .unwrap();
    let split: Vec<String> = reported
        .iter()
        .map(|r| {
            format!(
                "{} {} ({:.1}%)",
                r.0,
                r.1,
                r.1 as f64 * 100.0 / TOTAL as f64
            )
        })
        .collect();
    eprintln!(
        "two processes: armed {TOTAL} in {arm_time:?}, fired in {fire_time:?}; \
         split: {}; per process (name, fired, spent, commits, conflict retries): {reported:?}; \
         fired rows by claimant: {by_claim:?}",
        split.join(" / ")
    );
    let reported_fired: u64 = reported.iter().map(|r| r.1).sum();
    assert_eq!(reported_fired as i64, TOTAL, "{reported:?}");
    for (name, fired, ..) in &reported {
        assert!(
            *fired * 100 >= MIN_SHARE_PERCENT * TOTAL as u64,
            "{name} fired less than {MIN_SHARE_PERCENT}% of the timers: {}",
            split.join(" / ")
        );
        let claimed = by_claim
            .iter()
            .find(|c| c.0.as_deref() == Some(name.as_str()))
            .map_or(0, |c| c.1);
        assert_eq!(claimed, *fired as i64, "{name}: {by_claim:?}");
    }
    assert_eq!(by_claim.iter().map(|c| c.1).sum::<i64>(), TOTAL);
}

/// Claims go by instance: a claim takes every due timer of the instances it picks, earliest
/// first, cutting only the last one at the limit; another node leaves those instances alone
/// (even the cut one) while the claims are live, and takes everything over once the lease ran out.
#[tokio::test]
async fn claims_take_whole_instances_and_leave_claimed_ones_alone() {
    if std::env::var_os("SHENPI_TWO_NODES_CHILD").is_some() {
        return;
    }
    let dir = TempDir::new("claims_by_instance");
    for db in both("claims_by_instance", &dir).await {
        let name = db.backend();
        let setup = bus(&db);
        // c0..c3 with three timers each, due at 1000, 2000, 3000 (+ i), and one not due yet.
        for i in 0..4 {
            let id = format!("c{i}");
            start(&setup, &id).await;
            for k in 0..3 {
                setup
                    .submit(cmd(
                        &id,
                        CounterCommand::ArmTimer {
                            id: format!("t{k}"),
                            due: 1000 * (k + 1) + i,
                        },
                    ))
                    .await
                    .unwrap();
            }
        }
        setup
            .submit(cmd(
                "c0",
                CounterCommand::ArmTimer {
                    id: "later".into(),
                    due: 9000,
                },
            ))
            .await
            .unwrap();
        let per_instance = |claimed: &[ClaimedTimer]| {
            let mut m = BTreeMap::new();
            for c in claimed {
                *m.entry(c.timer.instance.clone()).or_insert(0) += 1;
            }
            m.into_iter().collect::<Vec<(String, i32)>>()
        };
        let pairs = |v: &[(&str, i32)]| {
            v.iter()
                .map(|(i, n)| (i.to_string(), *n))
                .collect::<Vec<_>>()
        };

        // Node a, room for 7: c0 and c1 whole, c2 cut at the limit.
        let a = db.claim_due("a", 5000, 1000, 7).await.unwrap();
        assert_eq!(
            per_instance(&a),
            pairs(&[("c0", 3), ("c1", 3), ("c2", 1)]),
            "{name}"
        );
        // Node b: only c3, although c2 has due timers a did not take.
        let b = db.claim_due("b", 5000, 1000, 100).await.unwrap();
        assert_eq!(per_instance(&b), pairs(&[("c3", 3)]), "{name}");
        assert!(
            db.claim_due("b", 5500, 1000, 100).await.unwrap().is_empty(),
            "{name}"
        );
        // Node a's own claims do not keep it off the rest of c2.
        let a2 = db.claim_due("a", 5500, 1000, 100).await.unwrap();
        assert_eq!(per_instance(&a2), pairs(&[("c2", 2)]), "{name}");
        // a's lease (till 6000, and 6500 for the rest of c2) runs out: b takes over a's claims and
        // its own expired ones; the timer due at 9000 stays.
        let b2 = db.claim_due("b", 6501, 1000, 100).await.unwrap();
        assert_eq!(
            per_instance(&b2),
            pairs(&[("c0", 3), ("c1", 3), ("c2", 3), ("c3", 3)]),
            "{name}"
        );
        assert!(b2.iter().all(|c| c.timer.timer_id != "later"), "{name}");
    }
}
