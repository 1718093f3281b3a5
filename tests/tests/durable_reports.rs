//! Cron reports on both backends: the weekly report of construction-permit (cron `0 9 * * 1`,
//! Monday 09:00 +08:00) does not run before its slot, runs once when two runners race for it,
//! counts the task decided in its week under the task's department, and its outbox row renders
//! with the shipped template in strict mode.

mod durable_support;

use std::path::Path;
use std::sync::Arc;

use durable_support::{TempDir, apply_for, both};
use shenpi_adapters::bus::{BusOptions, CommandBus, Submit};
use shenpi_adapters::engine_machine::EngineMachine;
use shenpi_adapters::machine::{Machine, SystemClock, now_millis};
use shenpi_adapters::outbox::Templates;
use shenpi_adapters::reports::{Cron, ReportError, ReportOptions, run_due_reports};
use shenpi_adapters::store::ProjectionStore;
use shenpi_adapters::store::{DefinitionStore, OutboxStore, Source};
use shenpi_engine::runtime::{Actor, Command, CommandEnvelope, TaskId};

fn workflows() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weekly_report_runs_once_at_its_slot_and_renders() {
    let dir = TempDir::new("reports");
    let yaml = std::fs::read_to_string(workflows().join("construction-permit.yaml")).unwrap();
    let templates = Templates::from_dir(&workflows().join("templates")).unwrap();
    for db in both("reports", &dir).await {
        let machine = Arc::new(EngineMachine::from_dir(&workflows()).unwrap());
        let def = machine.compile(&yaml).unwrap();
        let row = db
            .publish(
                def.id(),
                &yaml,
                "h",
                Source::File("test.yaml"),
                now_millis(),
            )
            .await
            .unwrap();
        let bus = CommandBus::start(
            machine.clone(),
            db.clone(),
            Arc::new(SystemClock),
            BusOptions::default(),
        );
        let project = serde_json::json!({
            "name": "测试项目", "funding": "企业投资", "category": "房屋建筑",
            "investment": 5000.0, "civil_defense": false, "service_officer": "zhao",
        });
        let meta = apply_for(&bus, "cp-1", (&row.workflow_id, row.version), project).await;
        // The window clerk (政务服务中心, zwfw) accepts the case: one task decided this week.
        let window = db
            .inbox_for(&["role:window_clerk".into()], 10)
            .await
            .unwrap();
        assert_eq!(window.len(), 1, "{}: {window:?}", db.backend());
        assert_eq!(window[0].department.as_deref(), Some("zwfw"));
        bus.submit(Submit {
            instance: "cp-1".into(),
            start: None,
            key: Some("accept".into()),
            expected_version: None,
            command: CommandEnvelope {
                actor: Actor::new("wang", Some("zwfw"), &["window_clerk"]),
                command: Command::Approve {
                    task: TaskId(window[0].task_id.parse().unwrap()),
                    comment: None,
                },
            },
            audit: None,
            project: None,
        })
        .await
        .unwrap();
        let ctx = machine.context(&meta).unwrap();
        let defs = vec![ctx];
        let key = format!("{}/weekly", def.id());
        // The next Monday 09:00 +08:00: the week it reports on holds what was just done.
        // Computed here from the calendar, not with the scheduler's parser, so a parser that
        // reads weekdays differently fails.
        let monday = next_monday_nine(now_millis());
        assert_eq!(
            Cron::parse("t", "0 9 * * 1")
                .unwrap()
                .next_after(now_millis()),
            Some(monday)
        );
        let opts = |node: &str| ReportOptions {
            node: node.into(),
            ..ReportOptions::default()
        };

        // A minute early: not due (the previous Monday is past the first-run grace).
        let early = run_due_reports(&db, &defs, monday - 60_000, &opts("a"))
            .await
            .unwrap();
        assert!(early.iter().all(|r| r.report != key), "{early:?}");

        // Two runners race 30 s after the slot: exactly one runs it.
        let (oa, ob) = (opts("a"), opts("b"));
        let (a, b) = tokio::join!(
            run_due_reports(&db, &defs, monday + 30_000, &oa),
            run_due_reports(&db, &defs, monday + 30_000, &ob),
        );
        let runs: Vec<_> = a
            .unwrap()
            .into_iter()
            .chain(b.unwrap())
            .filter(|r| r.report == key)
            .collect();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].scheduled_at, monday);
        assert!(runs[0].messages >= 1);

        // Later ticks do not run it again.
        let again = run_due_reports(&db, &defs, monday + 90_000, &opts("a"))
            .await
            .unwrap();
        assert!(again.iter().all(|r| r.report != key), "{again:?}");

        let rows: Vec<_> = db
            .outbox_in_state("pending", 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.row.template == "weekly_report")
            .collect();
        assert_eq!(
            rows.len(),
            runs[0].messages,
            "one row per recipient/channel"
        );
        let m = &rows[0];
        assert_eq!(m.row.recipient, "role:zwfw_chief");
        let total = m.row.payload["total"].as_i64().unwrap();
        assert!(
            total >= 1,
            "the started instance has an open task: {}",
            m.row.payload
        );
        assert_eq!(m.row.payload["started"], 1);
        // Per department: the window's decision is its `finished`; the four stage-1
        // departments have one open task each and finished nothing.
        let depts = m.row.payload["departments"].as_array().unwrap();
        let dept = |id: &str| {
            depts
                .iter()
                .find(|d| d["id"] == id)
                .unwrap_or_else(|| panic!("{id} in {depts:?}"))
        };
        assert_eq!(dept("zwfw")["finished"], 1, "{}: {depts:?}", db.backend());
        assert_eq!(dept("zwfw")["open"], 0);
        for id in ["fgw", "zrzy", "sthj", "sw"] {
            assert_eq!(dept(id)["finished"], 0, "{id}");
            assert_eq!(dept(id)["open"], 1, "{id}");
        }
        let finished: i64 = depts.iter().filter_map(|d| d["finished"].as_i64()).sum();
        assert_eq!(finished, 1, "{depts:?}");
        let text = templates.render("weekly_report", &m.row.payload).unwrap();
        assert!(text.contains(&format!("在办项目 {total} 个")), "{text}");
        assert!(text.contains("工程建设项目审批周统计"), "{text}");
        eprintln!("{} rendered:\n{text}", db.backend());
    }
}

#[test]
fn a_bad_cron_is_a_clear_error() {
    let e = Cron::parse("wf/weekly", "0 9 * *").unwrap_err();
    assert!(matches!(e, ReportError::Cron { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("wf/weekly") && msg.contains("write 5"),
        "{msg}"
    );
    let e = Cron::parse("wf/weekly", "0 25 * * 1").unwrap_err();
    assert!(e.to_string().contains("invalid cron `0 25 * * 1`"), "{e}");
    assert!(Cron::parse("wf/weekly", "0 9 1,16 * *").is_ok());
}

/// The first Monday 09:00 China time after `now`.
fn next_monday_nine(now: i64) -> i64 {
    let china = jiff::tz::TimeZone::fixed(jiff::tz::offset(8));
    let now_ts = jiff::Timestamp::from_millisecond(now).unwrap();
    let mut day = now_ts.to_zoned(china.clone()).date();
    loop {
        let nine = day
            .at(9, 0, 0, 0)
            .to_zoned(china.clone())
            .unwrap()
            .timestamp();
        if day.weekday() == jiff::civil::Weekday::Monday && nine > now_ts {
            return nine.as_millisecond();
        }
        day = day.tomorrow().unwrap();
    }
}

#[test]
fn shipped_weekly_reports_fall_on_mondays() {
    let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    for file in [
        "construction-permit.yaml",
        "enterprise-filing.yaml",
        "provincial-major.yaml",
    ] {
        let yaml = std::fs::read_to_string(workflows().join(file)).unwrap();
        let wf = shenpi_engine::parse::parse_workflow(&yaml).unwrap();
        let weekly = wf
            .reports
            .iter()
            .find(|r| r.kind.value == shenpi_engine::model::ReportKind::Weekly)
            .unwrap_or_else(|| panic!("{file} has a weekly report"));
        let cron = Cron::parse(file, &weekly.cron.value).unwrap();
        // Monday 2026-11-30 09:00:30 China time: the slot is that Monday's 09:00.
        let monday = ms("2026-11-30T09:00:00+08:00");
        assert_eq!(
            cron.latest_at_or_before(monday + 30_000),
            Some(monday),
            "{file}"
        );
        // On the Sunday before, the latest slot is the Monday a week earlier.
        assert_eq!(
            cron.latest_at_or_before(ms("2026-11-29T09:00:30+08:00")),
            Some(ms("2026-11-23T09:00:00+08:00")),
            "{file}"
        );
        assert_eq!(
            cron.before(monday),
            Some(ms("2026-11-23T09:00:00+08:00")),
            "{file}"
        );
        assert_eq!(
            cron.next_after(monday),
            Some(ms("2026-12-07T09:00:00+08:00")),
            "{file}"
        );
    }
}
