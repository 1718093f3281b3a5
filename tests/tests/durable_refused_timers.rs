//! No timer is ever silently lost (issue 9, item 5), on both backends: a timer whose firing the
//! machine refuses is not marked fired; it stays pending with the refusal recorded, is counted as
//! refused, is not tried again on every poll, and once a revision (or its slow retry) lets it
//! fire, it fires exactly once with its events committed once. A firing that came before the
//! instance's own due is moved to that due, not recorded as a refusal.
//!
//! The refusals come from [`GatedCounter`], whose gate stands for the calendar or definition
//! revision: a refusal provoked through the shipped calendars would stop being one as soon as the
//! calendars reach further.

mod durable_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use durable_support::{TempDir, both, cmd};
use shenpi_adapters::bus::{BusOptions, CommandBus, Submit};
use shenpi_adapters::machine::{SystemClock, now_millis};
use shenpi_adapters::store::{
    Batch, Db, EventStore, InstanceMeta, InstanceWrite, Millis, Projection, StoreError,
    TimerRefusal, TimerRow, TimerState, TimerStore,
};
use shenpi_adapters::testkit::{CounterCommand, GatedCounter, counter_meta};
use shenpi_adapters::timers::{
    SchedulerOptions, SchedulerStats, retry_refused_timers, spawn_scheduler,
};

const HOUR: i64 = 3_600_000;

fn bus(db: &Db, machine: &Arc<GatedCounter>, retry_ms: i64) -> CommandBus<GatedCounter> {
    CommandBus::start(
        machine.clone(),
        db.clone(),
        Arc::new(SystemClock),
        BusOptions {
            refused_timer_retry_ms: retry_ms,
            ..BusOptions::default()
        },
    )
}

fn scheduler(
    bus: &CommandBus<GatedCounter>,
    db: &Db,
    node: &str,
    retry_sweep: Duration,
) -> (tokio::task::JoinHandle<()>, Arc<SchedulerStats>) {
    spawn_scheduler(
        bus.clone(),
        db.clone(),
        Arc::new(SystemClock),
        SchedulerOptions {
            node: node.into(),
            retry_sweep,
            ..SchedulerOptions::default()
        },
    )
}

async fn start(bus: &CommandBus<GatedCounter>, id: &str) {
    bus.submit(Submit {
        start: Some(counter_meta(id)),
        ..cmd(id, CounterCommand::Start)
    })
    .await
    .unwrap();
}

async fn arm(bus: &CommandBus<GatedCounter>, instance: &str, id: &str, due: Millis) {
    bus.submit(cmd(
        instance,
        CounterCommand::ArmTimer { id: id.into(), due },
    ))
    .await
    .unwrap();
}

async fn count(db: &Db, state: &str) -> i64 {
    let counts = db.timer_counts().await.unwrap();
    counts.iter().find(|c| c.0 == state).map_or(0, |c| c.1)
}

/// Waits until `state` counts `want` timers (or the time is up); returns the count.
async fn wait_count(db: &Db, state: &str, want: i64, timeout: Duration) -> i64 {
    let t0 = Instant::now();
    loop {
        let n = count(db, state).await;
        if n >= want || t0.elapsed() > timeout {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ids of the `timer_fired` events in an instance's history, in order.
async fn fired_events(db: &Db, instance: &str) -> Vec<String> {
    let (_, events) = db.load(instance, 0).await.unwrap().unwrap();
    events
        .iter()
        .filter(|e| e.kind == "timer_fired")
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            v["id"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

fn total(stats: &[&Arc<SchedulerStats>], f: fn(&SchedulerStats) -> u64) -> u64 {
    stats.iter().map(|s| f(s)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_timer_stays_pending_and_fires_once_after_a_revision() {
    let dir = TempDir::new("refused_revision");
    for db in both("refused_revision", &dir).await {
        let name = db.backend();
        // Two nodes on one database, as in production with PostgreSQL.
        let machine = Arc::new(GatedCounter::shut());
        let (a, b) = (bus(&db, &machine, HOUR), bus(&db, &machine, HOUR));
        let now = now_millis();
        let mut ids = Vec::new();
        for i in 0..3 {
            let inst = format!("r{i}");
            start(&a, &inst).await;
            for k in 0..5 {
                arm(&a, &inst, &format!("t{k}"), now - 10 + k).await;
                ids.push((inst.clone(), format!("t{k}")));
            }
        }
        let (ha, sa) = scheduler(&a, &db, "a", Duration::from_secs(60));
        let (hb, sb) = scheduler(&b, &db, "b", Duration::from_secs(60));
        let refused = wait_count(&db, "refused", 15, Duration::from_secs(20)).await;
        assert_eq!(refused, 15, "{name}");

        // Refused: not fired, not pending, no effects, the refusal on every timer.
        assert_eq!(count(&db, "fired").await, 0, "{name}");
        assert_eq!(count(&db, "pending").await, 0, "{name}");
        for i in 0..3 {
            assert!(
                fired_events(&db, &format!("r{i}")).await.is_empty(),
                "{name}"
            );
        }
        let states = db.timer_states(&ids).await.unwrap();
        assert_eq!(states.len(), 15, "{name}");
        assert!(
            states.iter().all(|(_, _, s)| *s == TimerState::Pending),
            "{name}: {states:?}"
        );
        let rows = db.refused_timers(100).await.unwrap();
        assert_eq!(rows.len(), 15, "{name}");
        for r in &rows {
            assert_eq!(r.code, "outside_calendar", "{name}");
            assert!(r.message.contains(&r.timer.timer_id), "{name}: {r:?}");
            assert!(r.refused_at >= now, "{name}: {r:?}");
            let retry = r.retry_at.expect("held until its retry time");
            assert_eq!(retry, r.refused_at + HOUR, "{name}: an hour after: {r:?}");
            assert_eq!(r.project, counter_meta("x").project, "{name}");
        }

        // Not hammered: a dozen polls later each was tried once.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            total(&[&sa, &sb], |s| s.refused.load(Ordering::Relaxed)),
            15
        );
        assert_eq!(total(&[&sa, &sb], |s| s.fired.load(Ordering::Relaxed)), 0);

        // The revision: the gate opens and the refused timers are let go.
        machine.open();
        assert_eq!(retry_refused_timers(&a, &db).await.unwrap(), 15, "{name}");
        assert_eq!(
            wait_count(&db, "fired", 15, Duration::from_secs(20)).await,
            15,
            "{name}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        ha.abort();
        hb.abort();
        assert_eq!(count(&db, "fired").await, 15, "{name}");
        assert_eq!(count(&db, "refused").await, 0, "{name}");
        assert_eq!(count(&db, "pending").await, 0, "{name}");
        assert!(db.refused_timers(100).await.unwrap().is_empty(), "{name}");
        for i in 0..3 {
            let mut fired = fired_events(&db, &format!("r{i}")).await;
            assert_eq!(fired.len(), 5, "{name}: r{i} {fired:?}");
            fired.sort();
            fired.dedup();
            assert_eq!(fired.len(), 5, "{name}: a timer of r{i} fired twice");
        }
        assert_eq!(total(&[&sa, &sb], |s| s.fired.load(Ordering::Relaxed)), 15);
        assert_eq!(
            total(&[&sa, &sb], |s| s.refused.load(Ordering::Relaxed)),
            15
        );
        // Nothing left to let go.
        assert_eq!(retry_refused_timers(&a, &db).await.unwrap(), 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_that_heals_is_retried_slowly_and_then_fires_once() {
    let dir = TempDir::new("refused_backoff");
    for db in both("refused_backoff", &dir).await {
        let name = db.backend();
        let machine = Arc::new(GatedCounter::shut());
        // A 500 ms retry stands for the hour; the scheduler looks for retries every 50 ms and
        // polls every 100 ms.
        let bus = bus(&db, &machine, 500);
        start(&bus, "h").await;
        arm(&bus, "h", "late", now_millis() - 10).await;
        let (h, stats) = scheduler(&bus, &db, "n", Duration::from_millis(50));
        assert_eq!(
            wait_count(&db, "refused", 1, Duration::from_secs(10)).await,
            1,
            "{name}"
        );
        // Still refused after the retries of 1.6 s: tried about once per 500 ms, not per poll.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let tries = stats.refused.load(Ordering::Relaxed);
        assert!(
            (2..=6).contains(&tries),
            "{name}: {tries} attempts in 1.6 s (a poll each 100 ms would be ~16)"
        );
        assert_eq!(count(&db, "refused").await, 1, "{name}");
        assert!(fired_events(&db, "h").await.is_empty(), "{name}");
        // The refusal heals (no revision published): the next retry fires it, once.
        machine.open();
        assert_eq!(
            wait_count(&db, "fired", 1, Duration::from_secs(10)).await,
            1,
            "{name}"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        h.abort();
        assert_eq!(
            fired_events(&db, "h").await,
            vec!["late".to_string()],
            "{name}"
        );
        assert_eq!(count(&db, "refused").await, 0, "{name}");
        assert_eq!(stats.fired.load(Ordering::Relaxed), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_before_the_instances_due_moves_the_timer_to_that_due() {
    let dir = TempDir::new("refused_not_due");
    for db in both("refused_not_due", &dir).await {
        let name = db.backend();
        let machine = Arc::new(GatedCounter::shut());
        machine.open();
        let bus = bus(&db, &machine, HOUR);
        start(&bus, "e").await;
        arm(&bus, "e", "early", now_millis() - 10).await;
        // The instance's own state says the timer is due 1.5 s from now (as after the clock
        // moved back): the firing is refused as not due.
        let due = now_millis() + 1500;
        machine.not_before(due);
        let (h, stats) = scheduler(&bus, &db, "n", Duration::from_secs(60));
        let t0 = Instant::now();
        while stats.postponed.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(stats.postponed.load(Ordering::Relaxed), 1, "{name}");
        // Moved, not refused and not fired: pending at the instance's due.
        assert_eq!(count(&db, "pending").await, 1, "{name}");
        assert_eq!(count(&db, "refused").await, 0, "{name}");
        assert_eq!(count(&db, "fired").await, 0, "{name}");
        assert_eq!(db.next_due().await.unwrap(), Some(due), "{name}");
        assert_eq!(
            wait_count(&db, "fired", 1, Duration::from_secs(10)).await,
            1,
            "{name}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.abort();
        assert_eq!(
            fired_events(&db, "e").await,
            vec!["early".to_string()],
            "{name}"
        );
        // Tried once early, then once on time: no polling in between.
        assert_eq!(stats.postponed.load(Ordering::Relaxed), 1, "{name}");
        assert_eq!(stats.refused.load(Ordering::Relaxed), 0, "{name}");
    }
}

fn timer(instance: &str, id: &str, due: Millis) -> TimerRow {
    TimerRow {
        instance: instance.into(),
        timer_id: id.into(),
        due,
        kind: r#"{"kind":"test"}"#.into(),
    }
}

fn refusal(instance: &str, id: &str, refused_at: Millis, retry_at: Millis) -> TimerRefusal {
    TimerRefusal {
        instance: instance.into(),
        timer_id: id.into(),
        code: "outside_calendar".into(),
        message: "past the calendar".into(),
        refused_at,
        retry_at,
    }
}

/// The store's half, through `Batch` directly.
async fn refusals_in_the_store(db: Db) {
    let name = db.backend();
    let meta = InstanceMeta {
        id: "i".into(),
        workflow_id: "wf".into(),
        def_version: 1,
        project: serde_json::json!({"name": "项目甲"}),
    };
    db.commit(&Batch {
        now: 10,
        instances: vec![InstanceWrite {
            meta,
            from_version: 0,
            to_version: 0,
            projection: Projection::default(),
            written: None,
        }],
        timers_armed: vec![timer("i", "a", 100), timer("i", "b", 100)],
        ..Batch::default()
    })
    .await
    .unwrap();
    assert_eq!(db.claim_due("n1", 200, 1000, 10).await.unwrap().len(), 2);
    db.commit(&Batch {
        now: 300,
        timers_fired: vec![("i".into(), "b".into())],
        timers_refused: vec![refusal("i", "a", 300, 5000)],
        ..Batch::default()
    })
    .await
    .unwrap();

    // Refused: pending, counted as refused (not pending), held back from every claim.
    let st = db.timer_states(&[("i".into(), "a".into())]).await.unwrap();
    assert_eq!(
        st,
        vec![("i".into(), "a".into(), TimerState::Pending)],
        "{name}"
    );
    let counts = db.timer_counts().await.unwrap();
    assert!(
        counts.contains(&("refused".into(), 1)),
        "{name}: {counts:?}"
    );
    assert!(counts.contains(&("fired".into(), 1)), "{name}: {counts:?}");
    assert!(
        !counts.iter().any(|c| c.0 == "pending"),
        "{name}: {counts:?}"
    );
    assert!(
        db.claim_due("n2", 4000, 1000, 10).await.unwrap().is_empty(),
        "{name}"
    );
    assert_eq!(db.next_due().await.unwrap(), None, "{name}");
    let rows = db.refused_timers(10).await.unwrap();
    assert_eq!(rows.len(), 1, "{name}");
    let r = &rows[0];
    assert_eq!(
        (r.timer.timer_id.as_str(), r.timer.due),
        ("a", 100),
        "{name}"
    );
    assert_eq!(
        (r.code.as_str(), r.message.as_str()),
        ("outside_calendar", "past the calendar")
    );
    assert_eq!((r.refused_at, r.retry_at), (300, Some(5000)), "{name}");
    assert_eq!(r.project["name"], "项目甲", "{name}");

    // The slow retry lets it go at its time only; the refusal stays recorded until it fires.
    assert_eq!(db.retry_refused_timers(4999).await.unwrap(), 0, "{name}");
    assert!(
        db.claim_due("n2", 4999, 1000, 10).await.unwrap().is_empty(),
        "{name}"
    );
    assert_eq!(db.retry_refused_timers(5000).await.unwrap(), 1, "{name}");
    assert_eq!(
        db.refused_timers(10).await.unwrap()[0].retry_at,
        None,
        "{name}"
    );
    assert_eq!(db.claim_due("n2", 5001, 1000, 10).await.unwrap().len(), 1);
    assert!(
        db.timer_counts()
            .await
            .unwrap()
            .contains(&("refused".into(), 1)),
        "{name}"
    );
    // Refused again, then a revision lets everything go at once.
    db.commit(&Batch {
        now: 5002,
        timers_refused: vec![refusal("i", "a", 5002, 9_000_000)],
        ..Batch::default()
    })
    .await
    .unwrap();
    assert_eq!(
        db.retry_refused_timers(Millis::MAX).await.unwrap(),
        1,
        "{name}"
    );
    assert_eq!(db.claim_due("n2", 5003, 1000, 10).await.unwrap().len(), 1);
    // A refusal or a postponement of a timer that fired meanwhile is a conflict.
    for late in [
        Batch {
            now: 6000,
            timers_refused: vec![refusal("i", "b", 6000, 7000)],
            ..Batch::default()
        },
        Batch {
            now: 6000,
            timers_postponed: vec![("i".into(), "b".into(), 7000)],
            ..Batch::default()
        },
    ] {
        assert!(
            matches!(db.commit(&late).await, Err(StoreError::Conflict(_))),
            "{name}"
        );
    }
    // Postponed: pending at the new due, the refusal cleared (it was not refused).
    db.commit(&Batch {
        now: 6000,
        timers_postponed: vec![("i".into(), "a".into(), 8000)],
        ..Batch::default()
    })
    .await
    .unwrap();
    assert!(db.refused_timers(10).await.unwrap().is_empty(), "{name}");
    assert_eq!(db.next_due().await.unwrap(), Some(8000), "{name}");
    assert!(db.claim_due("n2", 7999, 1000, 10).await.unwrap().is_empty());
    assert_eq!(db.claim_due("n2", 8000, 1000, 10).await.unwrap().len(), 1);
    // Re-armed: the refusal is gone with the old timer; cancelled: not counted as refused.
    db.commit(&Batch {
        now: 8001,
        timers_refused: vec![refusal("i", "a", 8001, 9_000_000)],
        ..Batch::default()
    })
    .await
    .unwrap();
    db.commit(&Batch {
        now: 8002,
        timers_armed: vec![timer("i", "a", 10_000)],
        ..Batch::default()
    })
    .await
    .unwrap();
    assert!(db.refused_timers(10).await.unwrap().is_empty(), "{name}");
    assert_eq!(db.next_due().await.unwrap(), Some(10_000), "{name}");
    assert_eq!(db.claim_due("n2", 10_000, 1000, 10).await.unwrap().len(), 1);
    db.commit(&Batch {
        now: 10_001,
        timers_refused: vec![refusal("i", "a", 10_001, 9_000_000)],
        ..Batch::default()
    })
    .await
    .unwrap();
    db.commit(&Batch {
        now: 10_002,
        timers_cancelled: vec![("i".into(), "a".into())],
        ..Batch::default()
    })
    .await
    .unwrap();
    let counts = db.timer_counts().await.unwrap();
    assert!(
        !counts.iter().any(|c| c.0 == "refused"),
        "{name}: {counts:?}"
    );
    assert!(
        counts.contains(&("cancelled".into(), 1)),
        "{name}: {counts:?}"
    );
    assert_eq!(
        db.retry_refused_timers(Millis::MAX).await.unwrap(),
        0,
        "{name}"
    );
}

#[tokio::test]
async fn refusals_are_kept_on_the_timer_row_on_both_backends() {
    let dir = TempDir::new("refused_store");
    for db in both("refused_store", &dir).await {
        refusals_in_the_store(db).await;
    }
}
