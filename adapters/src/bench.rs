//! The durable benchmarks behind `shenpi bench durable` and `shenpi bench timers`.
//!
//! `durable`: N concurrent clients drive instances of the parallel-approval example
//! (`construction-permit.yaml`) through the real command path on a real database: each client
//! starts an instance, then approves its open tasks one by one (every branch of every parallel
//! step, the expert vote ...) until the instance has no open task, and starts the next. Every
//! approval is acknowledged only after its group commit is durable (SQLite `synchronous=FULL`,
//! PostgreSQL default `synchronous_commit=on`). The client knows which tasks are open by running
//! the pure engine on its own copy of the instance (the engine is deterministic, so the copy
//! agrees with the server's; a disagreement would show up as rejected commands, which are
//! counted and reported).
//!
//! `timers`: loads N pending timers far in the future plus M due over the next seconds, runs the
//! scheduler, and reports how late the due ones fired (p50/p99/max, from the `fired_at` recorded
//! in the same transaction as the firing) and the process's RSS before and after.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shenpi_engine::compile::Party;
use shenpi_engine::runtime::{self, Actor, Command, CommandEnvelope, InstanceState};

use crate::bus::{BusOptions, CommandBus, Submit};
use crate::engine_machine::{EngineMachine, timestamp};
use crate::machine::{Machine, SystemClock, now_millis};
use crate::store::sql::{Arg, Backend};
use crate::store::{
    Batch, Db, DefinitionStore, EventStore, InstanceMeta, InstanceWrite, Projection, TimerRow,
};
use crate::testkit::{Counter, counter_meta};
use crate::timers::{SchedulerOptions, spawn_scheduler};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[derive(Debug, Clone)]
pub struct DurableBench {
    pub db: String,
    pub clients: usize,
    pub actions: u64,
    /// The `workflows/` directory (calendars, templates, the example).
    pub workflows: PathBuf,
}

fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("tokio: {e}")))
}

/// Runs the approval benchmark; returns the report (its last line is `durable actions/s: X`).
pub fn run_durable(b: &DurableBench) -> Result<String, BenchError> {
    runtime()?.block_on(durable(b))
}

fn actor_for(task: &runtime::state::Task, roles: &[(String, Option<String>)]) -> Actor {
    match &task.spec.assignment {
        Party::User(u) => Actor::new(u, None, &[]),
        Party::Role(r) => {
            let dept = roles
                .iter()
                .find(|(id, _)| id == r.as_str())
                .and_then(|(_, d)| d.as_deref());
            Actor::new(&format!("bench.{r}"), dept, &[r.as_str()])
        }
        Party::Department(d) => Actor::new(&format!("bench.{d}"), Some(d), &[]),
    }
}

async fn durable(b: &DurableBench) -> Result<String, BenchError> {
    let db = Db::connect(&b.db).await?;
    let machine = Arc::new(
        EngineMachine::from_dir(&b.workflows).map_err(|e| BenchError::Setup(e.to_string()))?,
    );
    let path = b.workflows.join("construction-permit.yaml");
    let yaml = std::fs::read_to_string(&path)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", path.display())))?;
    let def = machine.compile(&yaml).map_err(BenchError::Setup)?;
    let row = db
        .publish(
            def.id(),
            &yaml,
            &format!("{:x}", fxhash(&yaml)),
            crate::store::Source::File("bench.yaml"),
            now_millis(),
        )
        .await?;
    machine.register(&row).map_err(BenchError::Setup)?;
    let ctx = machine
        .context(&InstanceMeta {
            id: String::new(),
            workflow_id: row.workflow_id.clone(),
            def_version: row.version,
            project: serde_json::Value::Null,
        })
        .ok_or_else(|| BenchError::Setup("definition did not register".into()))?;
    let roles: Arc<Vec<(String, Option<String>)>> = Arc::new(
        ctx.def
            .workflow
            .roles
            .iter()
            .map(|r| {
                (
                    r.id.value.clone(),
                    r.department.as_ref().map(|d| d.value.clone()),
                )
            })
            .collect(),
    );
    let bus = CommandBus::start(
        machine.clone(),
        db.clone(),
        Arc::new(SystemClock),
        BusOptions::default(),
    );
    let run = format!("{:x}", now_millis());
    let done = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let starts = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for client in 0..b.clients {
        let (bus, ctx, roles, done, rejected, starts, run, row) = (
            bus.clone(),
            ctx.clone(),
            roles.clone(),
            done.clone(),
            rejected.clone(),
            starts.clone(),
            run.clone(),
            row.clone(),
        );
        let target = b.actions;
        clients.push(tokio::spawn(async move {
            let mut k = 0u64;
            'instances: while done.load(Ordering::Relaxed) < target {
                k += 1;
                let id = format!("bench-{run}-{client}-{k}");
                let project = serde_json::json!({
                    "name": format!("基准项目 {client}-{k}"), "funding": "企业投资",
                    "category": "房屋建筑", "investment": 12000.0, "floor_area": 30000.0,
                    "civil_defense": k.is_multiple_of(2), "service_officer": "bench.officer",
                    "key_flag": k.is_multiple_of(5),
                });
                let start = CommandEnvelope {
                    actor: Actor::new("bench.applicant", None, &["applicant"]),
                    command: Command::Start {
                        project: project.clone(),
                        channel: None,
                    },
                };
                let meta = InstanceMeta {
                    id: id.clone(),
                    workflow_id: row.workflow_id.clone(),
                    def_version: row.version,
                    project,
                };
                let mut state = InstanceState::default();
                if let Err(e) =
                    step(&bus, &ctx.def, &ctx.cal, &mut state, &id, Some(meta), start).await
                {
                    tracing::warn!("start refused: {e}");
                    rejected.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                starts.fetch_add(1, Ordering::Relaxed);
                loop {
                    if done.load(Ordering::Relaxed) >= target {
                        break 'instances;
                    }
                    let Some(task) = state.open_tasks().next().cloned() else {
                        continue 'instances;
                    };
                    let actor = actor_for(&task, &roles);
                    let command = match task.spec.kind {
                        runtime::event::TaskKind::Verify => Command::VerifyMaterial {
                            task: task.spec.task,
                            accepted: true,
                            reason: None,
                        },
                        _ => Command::Approve {
                            task: task.spec.task,
                            comment: None,
                        },
                    };
                    match step(
                        &bus,
                        &ctx.def,
                        &ctx.cal,
                        &mut state,
                        &id,
                        None,
                        CommandEnvelope { actor, command },
                    )
                    .await
                    {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!("approval refused: {e}");
                            rejected.fetch_add(1, Ordering::Relaxed);
                            continue 'instances;
                        }
                    }
                }
            }
        }));
    }
    for c in clients {
        c.await
            .map_err(|e| BenchError::Setup(format!("client: {e}")))?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let s = starts.load(Ordering::Relaxed);
    let mut report = String::new();
    report.push_str(&format!(
        "backend: {}\nclients: {}\napprovals: {n}\ninstances started: {s}\nrefused: {}\nseconds: {secs:.2}\ncommands/s (approvals + starts): {:.0}\n",
        db.backend(),
        b.clients,
        rejected.load(Ordering::Relaxed),
        (n + s) as f64 / secs
    ));
    let st = &bus.stats;
    let batches = st.batches.load(Ordering::Relaxed).max(1);
    report.push_str(&format!(
        "group commits: {batches}, commands per commit: {:.1}, conflicts: {}\nwriter time: decide+project {:.2}s, commit {:.2}s\n",
        st.commands.load(Ordering::Relaxed) as f64 / batches as f64,
        st.conflicts.load(Ordering::Relaxed),
        st.decide_ns.load(Ordering::Relaxed) as f64 / 1e9,
        st.commit_ns.load(Ordering::Relaxed) as f64 / 1e9,
    ));
    report.push_str(&format!("durable actions/s: {:.0}", n as f64 / secs));
    Ok(report)
}

/// Sends a command and, once acknowledged, applies the same decision to the client's copy.
async fn step(
    bus: &CommandBus<EngineMachine>,
    def: &shenpi_engine::compile::Definition,
    cal: &shenpi_engine::calendar::Calendar,
    state: &mut InstanceState,
    id: &str,
    start: Option<InstanceMeta>,
    cmd: CommandEnvelope,
) -> Result<(), String> {
    let r = bus
        .submit(Submit {
            instance: id.to_string(),
            start,
            key: None,
            expected_version: None,
            command: cmd.clone(),
            audit: None,
            project: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let events = runtime::decide(def, cal, state, &cmd, timestamp(now_millis()))
        .map_err(|e| e.to_string())?;
    for e in &events {
        runtime::apply(state, e);
    }
    if events.len() as i64 != r.events {
        return Err(format!(
            "client copy diverged: {} events here, {} recorded",
            events.len(),
            r.events
        ));
    }
    Ok(())
}

/// A small non-cryptographic hash for the bench's definition text.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[derive(Debug, Clone)]
pub struct TimerBench {
    pub db: String,
    /// Timers pending far in the future.
    pub pending: u64,
    /// Timers coming due during the run.
    pub due: u64,
    /// Over how many seconds the due ones come due.
    pub spread_secs: u64,
}

/// Resident set size of this process, in KiB (Linux), for the "memory stays flat" check.
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

/// Anonymous (heap) resident memory, KiB: RSS without the database file pages mapped by SQLite's
/// `mmap_size` (those are the page cache, bounded, and shared with the OS).
pub fn rss_anon_kib() -> Option<u64> {
    status_kib("RssAnon:")
}

/// Resident set size of another process (a server a benchmark started), in KiB (Linux).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    status_kib_at(&format!("/proc/{pid}/status"), "VmRSS:")
}

fn status_kib(field: &str) -> Option<u64> {
    status_kib_at("/proc/self/status", field)
}

fn status_kib_at(path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn run_timers(b: &TimerBench) -> Result<String, BenchError> {
    runtime()?.block_on(timers(b))
}

async fn timers(b: &TimerBench) -> Result<String, BenchError> {
    let db = Db::connect(&b.db).await?;
    let run = format!("{:x}", now_millis());
    let instances = 1000u64;
    let mut report = String::new();
    // Instances to hang the timers on (a counter machine: this measures the scheduler).
    let mut batch = Batch {
        now: now_millis(),
        ..Batch::default()
    };
    for i in 0..instances {
        batch.instances.push(InstanceWrite {
            meta: counter_meta(&format!("tb-{run}-{i}")),
            from_version: 0,
            to_version: 1,
            projection: Projection {
                status: "running".into(),
                ..Projection::default()
            },
            written: None,
        });
        batch.events.push(crate::store::EventRow {
            instance: format!("tb-{run}-{i}"),
            seq: 1,
            kind: "started".into(),
            body: r#"{"type":"started"}"#.into(),
            recorded_at: batch.now,
            format: 1,
        });
    }
    db.commit(&batch).await?;
    let rss0 = rss_kib().unwrap_or(0);
    let anon0 = rss_anon_kib().unwrap_or(0);
    let t_load = Instant::now();
    let far = now_millis() + 365 * 86_400_000;
    let chunk = 20_000u64;
    let mut loaded = 0u64;
    while loaded < b.pending {
        let n = chunk.min(b.pending - loaded);
        let mut batch = Batch {
            now: now_millis(),
            ..Batch::default()
        };
        for j in loaded..loaded + n {
            batch.timers_armed.push(TimerRow {
                instance: format!("tb-{run}-{}", j % instances),
                timer_id: format!("p{j}"),
                due: far + (j as i64 % 86_400_000),
                kind: "{}".into(),
            });
        }
        db.commit(&batch).await?;
        loaded += n;
    }
    report.push_str(&format!(
        "pending timers loaded: {} in {:.1}s\n",
        b.pending,
        t_load.elapsed().as_secs_f64()
    ));
    // Steady state before measuring: flush what the bulk load left to write, refresh statistics.
    match &db {
        Db::Postgres(p) => {
            for sql in ["CHECKPOINT", "ANALYZE timers"] {
                sqlx::query(sql)
                    .execute(p.pool())
                    .await
                    .map_err(crate::store::StoreError::Db)?;
            }
        }
        Db::Sqlite(s) => {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(s.pool())
                .await
                .map_err(crate::store::StoreError::Db)?;
        }
    }
    let rss1 = rss_kib().unwrap_or(0);
    let anon1 = rss_anon_kib().unwrap_or(0);
    let bus = CommandBus::start(
        Arc::new(Counter),
        db.clone(),
        Arc::new(SystemClock),
        BusOptions::default(),
    );
    let (h, stats) = spawn_scheduler(
        bus,
        db.clone(),
        Arc::new(SystemClock),
        SchedulerOptions::default(),
    );
    // The due ones are armed while the scheduler runs, spread over the window.
    // Armed well before they are due, so the figure measures the scheduler, not the arming.
    let start = now_millis() + 3000;
    let spread = (b.spread_secs.max(1) * 1000) as i64;
    let mut batch = Batch {
        now: now_millis(),
        ..Batch::default()
    };
    for j in 0..b.due {
        batch.timers_armed.push(TimerRow {
            instance: format!("tb-{run}-{}", j % instances),
            timer_id: format!("d{j}"),
            due: start + (j as i64 * spread) / b.due.max(1) as i64,
            kind: "{}".into(),
        });
    }
    db.commit(&batch).await?;
    let peak = Arc::new(AtomicI64::new(rss1 as i64));
    let peak_anon = Arc::new(AtomicI64::new(anon1 as i64));
    let deadline = Instant::now() + Duration::from_millis(spread as u64 + 30_000);
    while stats.fired.load(Ordering::Relaxed) < b.due && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak.fetch_max(rss_kib().unwrap_or(0) as i64, Ordering::Relaxed);
        peak_anon.fetch_max(rss_anon_kib().unwrap_or(0) as i64, Ordering::Relaxed);
    }
    h.abort();
    let mut late = lateness(&db, &format!("tb-{run}-")).await?;
    late.sort_unstable();
    let pct = |p: f64| -> i64 {
        if late.is_empty() {
            return -1;
        }
        let i = ((late.len() as f64 - 1.0) * p).round() as usize;
        late.get(i).copied().unwrap_or(-1)
    };
    report.push_str(&format!(
        "backend: {}\ndue timers fired: {} of {}\nlateness ms p50: {} p99: {} max: {}\nRSS KiB: before load {rss0}, after {} pending {rss1}, peak while firing {}\nanonymous RSS KiB: before load {anon0}, after load {anon1}, peak while firing {}\n",
        db.backend(),
        late.len(),
        b.due,
        pct(0.5),
        pct(0.99),
        late.last().copied().unwrap_or(-1),
        b.pending,
        peak.load(Ordering::Relaxed),
        peak_anon.load(Ordering::Relaxed),
    ));
    report.push_str(&format!("timer p99 lateness ms: {}", pct(0.99)));
    Ok(report)
}

/// `fired_at - due` of the fired `d*` timers of this run.
async fn lateness(db: &Db, prefix: &str) -> Result<Vec<i64>, BenchError> {
    let like = format!("{prefix}%");
    Ok(match db {
        Db::Sqlite(s) => lateness_in(s, &like).await?,
        Db::Postgres(s) => lateness_in(s, &like).await?,
    })
}

/// [`lateness`] on one backend: the statement is the same on both.
async fn lateness_in<S: Backend>(s: &S, like: &str) -> crate::store::Result<Vec<i64>> {
    const SQL: &str = "SELECT fired_at - due FROM timers
         WHERE state = 'fired' AND instance LIKE $1 AND timer_id LIKE 'd%'";
    let mut c = s.pool().acquire().await?;
    let rows = S::rows(&mut c, SQL, &[Arg::Text(like)]).await?;
    Ok(rows.iter().filter_map(|r| S::int(r, 0).ok()).collect())
}

/// Where `workflows/` is when not given: next to the current directory.
pub fn default_workflows() -> PathBuf {
    Path::new("workflows").to_path_buf()
}

/// `shenpi bench retime`: N open instances whose deadlines cross 春节 2027, then the official
/// 2027 arrangement is put in force and every instance re-timed through the durable path.
#[derive(Debug, Clone)]
pub struct RetimeBench {
    pub db: String,
    pub instances: u64,
    /// The `workflows/` directory (calendars, templates).
    pub workflows: PathBuf,
}

/// The bench's workflow: one task whose 20-working-day limit, opened on 2027-01-25, crosses
/// 春节 2027 (so the official arrangement moves its yellow point and deadline).
pub const RETIME_WORKFLOW: &str = r#"
id: bench-retime
name: 重新计时基准
calendar: cn-mainland
start: review
roles:
  - { id: clerk, department: a }
departments:
  - { id: a, name: 发展改革局 }
nodes:
  - id: review
    name: 审查
    type: task
    assignee: { role: clerk }
    actions: [approve]
    limit: 20wd
    next: done
  - id: done
    type: end
    outcome: approved
"#;

/// An official-like 2027: more days off around 春节 and 国庆 than the statute, two make-up
/// Saturdays.
pub const OFFICIAL_2027: &str = "years:\n  - year: 2027\n    holidays:\n      - { name: 元旦, from: 2027-01-01, to: 2027-01-03 }\n      - { name: 春节, from: 2027-02-05, to: 2027-02-12 }\n      - { name: 清明节, from: 2027-04-03, to: 2027-04-05 }\n      - { name: 劳动节, from: 2027-05-01, to: 2027-05-05 }\n      - { name: 端午节, date: 2027-06-09 }\n      - { name: 中秋节, date: 2027-09-15 }\n      - { name: 国庆节, from: 2027-10-01, to: 2027-10-07 }\n    workdays:\n      - { date: 2027-02-20, for: 春节 }\n      - { date: 2027-10-09, for: 国庆节 }\n";

/// A clock stopped at one instant.
struct FixedClock(i64);

impl crate::machine::Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0
    }
}

/// Runs the re-timing benchmark; the last line is `retime instances/s: X`.
pub fn run_retime(b: &RetimeBench) -> Result<String, BenchError> {
    runtime()?.block_on(retime_bench(b))
}

async fn retime_bench(b: &RetimeBench) -> Result<String, BenchError> {
    use shenpi_engine::calendar::Calendar;

    let db = Db::connect(&b.db).await?;
    let machine = Arc::new(
        EngineMachine::from_dir(&b.workflows).map_err(|e| BenchError::Setup(e.to_string()))?,
    );
    let row = db
        .publish(
            "bench-retime",
            RETIME_WORKFLOW,
            &format!("{:x}", fxhash(RETIME_WORKFLOW)),
            crate::store::Source::File("bench-retime.yaml"),
            now_millis(),
        )
        .await?;
    machine.register(&row).map_err(BenchError::Setup)?;
    let at = "2027-01-25T10:00:00+08:00"
        .parse::<jiff::Timestamp>()
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .as_millisecond();
    let bus = CommandBus::start(
        machine.clone(),
        db.clone(),
        Arc::new(FixedClock(at)),
        BusOptions::default(),
    );
    // The open instances, started through the same path by 64 clients.
    let run = format!("{:x}", now_millis());
    let t_load = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (bus, next, run, row) = (bus.clone(), next.clone(), run.clone(), row.clone());
        let n = b.instances;
        clients.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return Ok::<(), String>(());
                }
                let id = format!("retime-{run}-{k}");
                bus.submit(Submit {
                    instance: id.clone(),
                    start: Some(InstanceMeta {
                        id,
                        workflow_id: row.workflow_id.clone(),
                        def_version: row.version,
                        project: serde_json::json!({}),
                    }),
                    key: None,
                    expected_version: None,
                    command: CommandEnvelope {
                        actor: Actor::new("bench.applicant", None, &["applicant"]),
                        command: Command::Start {
                            project: serde_json::json!({}),
                            channel: None,
                        },
                    },
                    audit: None,
                    project: None,
                })
                .await
                .map_err(|e| e.to_string())?;
            }
        }));
    }
    for c in clients {
        c.await
            .map_err(|e| BenchError::Setup(e.to_string()))?
            .map_err(BenchError::Setup)?;
    }
    let load = t_load.elapsed();
    // The revision: the shipped calendar with the official 2027 put in.
    let cal = machine.calendar("cn-mainland").map_err(BenchError::Setup)?;
    let import = Calendar::from_yaml_strict("cn-mainland", OFFICIAL_2027)
        .map_err(|d| BenchError::Setup(format!("{d:?}")))?;
    let merged = Calendar::from_yaml("cn-mainland", &cal.merged_yaml(&import))
        .map_err(|d| BenchError::Setup(format!("{d:?}")))?;
    machine.set_calendar(merged).map_err(BenchError::Setup)?;
    let t0 = Instant::now();
    let s = crate::retime::retime(&bus, &db, "cn-mainland", 2, &["bench-retime".to_string()])
        .await
        .map_err(BenchError::Setup)?;
    let secs = t0.elapsed().as_secs_f64();
    let rate = s.instances as f64 / secs.max(1e-9);
    Ok(format!(
        "started {} instances in {:.1}s\n\
         re-timed {} instances with open timers ({} moved, {} timers, {} later, {} earlier, \
         failed {}) in {:.1}s\n\
         retime instances/s: {:.0}",
        b.instances,
        load.as_secs_f64(),
        s.instances,
        s.moved_instances,
        s.clocks_moved,
        s.moved_later,
        s.moved_earlier,
        s.failed,
        secs,
        rate
    ))
}
