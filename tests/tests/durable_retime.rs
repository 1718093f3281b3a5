//! Re-timing after a calendar revision, on both backends, through the real engine and the
//! durable path: a pass cut short (a process gone after re-timing some instances) and run again
//! by a new process records each instance's move exactly once, and the armed timers end up at
//! the instants the official calendar gives.

mod durable_support;

use std::path::Path;
use std::sync::Arc;

use durable_support::{TempDir, both};
use shenpi_adapters::bench::{OFFICIAL_2027, RETIME_WORKFLOW};
use shenpi_adapters::bus::{BusOptions, CommandBus, Submit};
use shenpi_adapters::engine_machine::EngineMachine;
use shenpi_adapters::machine::{Clock, now_millis};
use shenpi_adapters::retime::{key, retime};
use shenpi_adapters::store::{Db, DefinitionStore, EventStore, InstanceMeta, Source, TimerStore};
use shenpi_engine::calendar::Calendar;
use shenpi_engine::runtime::event::{ClockRef, TimerKind};
use shenpi_engine::runtime::{Actor, Command, CommandEnvelope, Event, InstanceState, replay};

struct Fixed(i64);

impl Clock for Fixed {
    fn now(&self) -> i64 {
        self.0
    }
}

fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn machine() -> Arc<EngineMachine> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    Arc::new(EngineMachine::from_dir(&dir).unwrap())
}

/// The shipped calendar with the official 2027 put in.
fn official(m: &EngineMachine) -> Calendar {
    let cal = m.calendar("cn-mainland").unwrap();
    let import = Calendar::from_yaml_strict("cn-mainland", OFFICIAL_2027).unwrap();
    Calendar::from_yaml("cn-mainland", &cal.merged_yaml(&import)).unwrap()
}

fn recalendar(instance: &str) -> Submit<CommandEnvelope> {
    Submit {
        instance: instance.to_string(),
        start: None,
        key: Some(key("cn-mainland", 2, instance)),
        expected_version: None,
        command: CommandEnvelope {
            actor: Actor::system(),
            command: Command::Recalendar {
                calendar: "cn-mainland".into(),
                revision: 2,
            },
        },
        audit: None,
        project: None,
    }
}

async fn state_of(db: &Db, id: &str) -> (InstanceState, Vec<Event>) {
    let (_, rows) = db.load(id, 0).await.unwrap().unwrap();
    let events: Vec<Event> = rows
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    (replay(events.iter()), events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retiming_cut_short_is_finished_once_by_the_next_process() {
    let dir = TempDir::new("retime");
    let now = ms("2027-01-25T10:00:00+08:00");
    for db in both("retime", &dir).await {
        let first = machine();
        let row = db
            .publish(
                "bench-retime",
                RETIME_WORKFLOW,
                "h",
                Source::File("bench-retime.yaml"),
                now_millis(),
            )
            .await
            .unwrap();
        let bus = CommandBus::start(
            first.clone(),
            db.clone(),
            Arc::new(Fixed(now)),
            BusOptions::default(),
        );
        let ids: Vec<String> = (0..12).map(|k| format!("rt-{k}")).collect();
        for id in &ids {
            bus.submit(Submit {
                instance: id.clone(),
                start: Some(InstanceMeta {
                    id: id.clone(),
                    workflow_id: row.workflow_id.clone(),
                    def_version: row.version,
                    project: serde_json::json!({}),
                }),
                key: None,
                expected_version: None,
                command: CommandEnvelope {
                    actor: Actor::new("chen", None, &["applicant"]),
                    command: Command::Start {
                        project: serde_json::json!({}),
                        channel: None,
                    },
                },
                audit: None,
                project: None,
            })
            .await
            .unwrap();
        }
        // Provisional 2027: yellow at the start of 02-19, due at the end of 02-26.
        let (st, _) = state_of(&db, "rt-0").await;
        let dues: Vec<i64> = st.timers.iter().map(|t| t.due.as_millisecond()).collect();
        assert_eq!(
            dues,
            vec![
                ms("2027-02-19T00:00:00+08:00"),
                ms("2027-02-27T00:00:00+08:00")
            ]
        );

        // The revision is in force; the first process re-times 5 instances, then is gone.
        first.set_calendar(official(&first)).unwrap();
        for id in &ids[..5] {
            let r = bus.submit(recalendar(id)).await.unwrap();
            assert!(r.events > 0, "{id}");
        }
        drop(bus);

        // A new process (its own machine, the revision read from the database) runs the pass.
        let second = machine();
        second.set_calendar(official(&second)).unwrap();
        let bus = CommandBus::start(
            second,
            db.clone(),
            Arc::new(Fixed(now)),
            BusOptions::default(),
        );
        let s = retime(
            &bus,
            &db,
            "cn-mainland",
            2,
            std::slice::from_ref(&row.workflow_id),
        )
        .await
        .unwrap();
        assert_eq!((s.instances, s.failed), (12, 0), "{s:?}");
        assert_eq!(
            s.moved_instances, 12,
            "the 5 done before answer from their keys: {s:?}"
        );
        // And once more: nothing new is recorded.
        let again = retime(
            &bus,
            &db,
            "cn-mainland",
            2,
            std::slice::from_ref(&row.workflow_id),
        )
        .await
        .unwrap();
        assert_eq!(again.failed, 0);
        for id in &ids {
            let (st, events) = state_of(&db, id).await;
            let retimed = events.iter().filter(|e| e.kind() == "retimed").count();
            assert_eq!(retimed, 1, "{} on {}", id, db.backend());
            // Official 2027: 春节 to 02-12, Sat 02-20 worked → yellow 02-22, due end of 03-01.
            let mut timers: Vec<(bool, i64)> = st
                .timers
                .iter()
                .map(|t| {
                    let due = matches!(
                        t.kind,
                        TimerKind::Due {
                            target: ClockRef::Task(_)
                        }
                    );
                    (due, t.due.as_millisecond())
                })
                .collect();
            timers.sort();
            assert_eq!(
                timers,
                vec![
                    (false, ms("2027-02-22T00:00:00+08:00")),
                    (true, ms("2027-03-02T00:00:00+08:00"))
                ],
                "{id}"
            );
        }
        // The timer rows agree: two open per instance, the old ones cancelled.
        let counts = db.timer_counts().await.unwrap();
        let n = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, v)| *v);
        assert_eq!(n("pending"), 24, "{counts:?} on {}", db.backend());
        assert_eq!(n("cancelled"), 24, "{counts:?} on {}", db.backend());
    }
}
