//! Legal time on real days: a provincial-major project through 受理 on 2026-12-01, when its
//! 40-working-day stage reaches the provisional 2027; importing the official 2027 arrangement
//! (preview, refusals that publish nothing, publish, re-timing once per instance, a re-timing
//! interrupted half way and finished by the next pass).

mod api_common;

use api_common::{Server, server};
use axum::http::StatusCode;
use serde_json::{Value, json};
use shenpi_adapters::bus::Submit;
use shenpi_adapters::store::EventStore;
use shenpi_adapters::store::calendars::Origin;
use shenpi_engine::runtime::{Actor, Command, CommandEnvelope};
use std::sync::atomic::Ordering;

const OFFICIAL_2027: &str = "years:\n  - year: 2027\n    source: 模拟的 2027 年放假安排\n    holidays:\n      - { name: 元旦, from: 2027-01-01, to: 2027-01-03 }\n      - { name: 春节, from: 2027-02-05, to: 2027-02-12 }\n      - { name: 清明节, from: 2027-04-03, to: 2027-04-05 }\n      - { name: 劳动节, from: 2027-05-01, to: 2027-05-05 }\n      - { name: 端午节, date: 2027-06-09 }\n      - { name: 中秋节, date: 2027-09-15 }\n      - { name: 国庆节, from: 2027-10-01, to: 2027-10-07 }\n    workdays:\n      - { date: 2027-02-20, for: 春节 }\n      - { date: 2027-10-09, for: 国庆节 }\n";

fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().expect("time").as_millisecond()
}

async fn at(name: &str, when: &str) -> Server {
    let s = server(name).await;
    s.clock.0.store(ms(when), Ordering::Relaxed);
    s
}

async fn act(s: &Server, inst: &str, node: &str, who: &str) {
    let task = s
        .task_at(inst, node)
        .await
        .unwrap_or_else(|| panic!("{node} open"));
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/tasks/{task}/actions"),
            Some(who),
            Some(json!({"type": "approve", "comment": "同意"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{node}: {}", r.text);
}

/// A 中长期库 project (no green channel) taken through 入库审核, 事前会商 and 受理: it is then in
/// the 审批 stage with its 40-working-day limit.
async fn to_review(s: &Server) -> String {
    let (_, inst) = s.start_project("中长期库").await;
    s.attach_required(&inst, "mouhua").await;
    act(s, &inst, "library", "li").await;
    act(s, &inst, "pre_consult", "li").await;
    s.attach_required(&inst, "shengcheng").await;
    act(s, &inst, "intake", "zhang").await;
    inst
}

async fn view(s: &Server, inst: &str) -> Value {
    let r = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("zhao"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json
}

fn retimed_count(v: &Value) -> usize {
    v["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| e["event"]["type"] == "retimed" || e["type"] == "retimed")
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn on_2026_12_01_a_project_passes_intake_and_its_stage_is_due_provisionally_in_2027() {
    let s = at("cal-today", "2026-12-01T10:00:00+08:00").await;
    let inst = to_review(&s).await;
    let v = view(&s, &inst).await;
    let stage = &v["view"]["stage"];
    assert_eq!(stage["stage"], "shenpi", "{v}");
    // 40 working days after 2026-12-01: 22 left in December, 18 in January (元旦 off) → 01-27.
    assert_eq!(
        stage["clock"]["due"], "2027-01-28T00:00:00+08:00",
        "{stage}"
    );
    assert_eq!(stage["clock"]["provisional"], true, "{stage}");
    // The parallel branches (10 working days) end in December: official, not provisional.
    let tasks = v["view"]["tasks"].as_array().expect("tasks");
    assert!(!tasks.is_empty());
    assert!(
        tasks.iter().all(|t| t["clock"]["provisional"] == false),
        "{tasks:?}"
    );
}

#[tokio::test]
async fn servers_started_in_2027_and_2031_count_on_provisional_years() {
    for when in ["2027-01-04T09:30:00+08:00", "2031-02-10T09:30:00+08:00"] {
        let s = at(&format!("cal-{}", &when[..4]), when).await;
        let inst = to_review(&s).await;
        let v = view(&s, &inst).await;
        assert_eq!(
            v["view"]["stage"]["clock"]["provisional"], true,
            "{when}: {v}"
        );
        assert_eq!(v["view"]["stage"]["clock"]["colour"], "green", "{when}");
        assert!(v["view"].get("calendar_errors").is_none(), "{when}: {v}");
    }
}

#[tokio::test]
async fn importing_the_official_2027_previews_publishes_and_retimes_each_instance_once() {
    let s = at("cal-import", "2027-01-25T10:00:00+08:00").await;
    let a = to_review(&s).await;
    let b = to_review(&s).await;
    // Provisional 2027 (春节 02-05..02-10): the 40th working day after 01-25 is 03-26.
    let before = view(&s, &a).await;
    assert_eq!(
        before["view"]["stage"]["clock"]["due"],
        "2027-03-27T00:00:00+08:00"
    );
    let path = "/api/calendars/cn-mainland/revisions";

    // Refused, located, nothing published: a weekday as a make-up day, a statutory day worked.
    let bad = OFFICIAL_2027.replace("2027-02-20, for: 春节", "2027-02-22, for: 春节");
    let r = s
        .req("POST", path, Some("wang"), Some(json!({"yaml": bad})), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let d = &r.json["details"]["diagnostics"][0];
    assert_eq!(
        (&d["code"], &d["line"]),
        (&json!("C006"), &json!(13)),
        "{}",
        r.text
    );
    let worked = OFFICIAL_2027.replace(
        "from: 2027-10-01, to: 2027-10-07",
        "from: 2027-10-02, to: 2027-10-07",
    );
    let r = s
        .req(
            "POST",
            path,
            Some("wang"),
            Some(json!({"yaml": worked})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let d = &r.json["details"]["diagnostics"][0];
    assert_eq!(d["code"], "C013", "{}", r.text);
    assert!(
        d["message"].as_str().unwrap_or("").contains("2027-10-01"),
        "{d}"
    );
    let list = s
        .req("GET", "/api/calendars", Some("wang"), None, &[])
        .await;
    assert_eq!(list.json[0]["revision"], 1, "{}", list.text);
    // Only the rule writers may import.
    let r = s
        .req(
            "POST",
            path,
            Some("zhang"),
            Some(json!({"yaml": OFFICIAL_2027})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The preview: the days that change and the open limits that move, with names.
    let r = s
        .req(
            "POST",
            path,
            Some("wang"),
            Some(json!({"yaml": OFFICIAL_2027, "dry_run": true})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let days: Vec<&str> = r.json["days"]
        .as_array()
        .expect("days")
        .iter()
        .filter_map(|d| d["date"].as_str())
        .collect();
    assert_eq!(
        days,
        vec![
            "2027-02-11",
            "2027-02-12",
            "2027-02-20",
            "2027-05-05",
            "2027-10-06",
            "2027-10-07",
            "2027-10-09"
        ]
    );
    let moves = r.json["moves"].as_array().expect("moves");
    assert!(
        moves
            .iter()
            .any(|m| m["what"] == "阶段「审批」 超期（红色）"
                && m["old_due"] == "2027-03-27T00:00:00+08:00"
                && m["new_due"] == "2027-03-30T00:00:00+08:00"),
        "{moves:?}"
    );
    assert_eq!(r.json["needs_confirmation"], false);
    assert_eq!(
        retimed_count(&view(&s, &a).await),
        0,
        "a preview changes nothing"
    );

    // Publish: revision 2, both instances re-timed once.
    let r = s
        .req(
            "POST",
            path,
            Some("wang"),
            Some(json!({"yaml": OFFICIAL_2027})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["revision"], 2);
    let summary = &r.json["retimed"][0];
    assert_eq!(summary["instances"], 2, "{summary}");
    assert_eq!(summary["moved_instances"], 2, "{summary}");
    for inst in [&a, &b] {
        let v = view(&s, inst).await;
        // Official: 春节 to 02-12, Sat 02-20 worked: the 40th working day is Mon 03-29.
        assert_eq!(
            v["view"]["stage"]["clock"]["due"],
            "2027-03-30T00:00:00+08:00"
        );
        assert_eq!(v["view"]["stage"]["clock"]["provisional"], false);
        assert_eq!(retimed_count(&v), 1, "{inst}");
        // The armed timer moved with it.
        let timers = v["view"]["timers"].as_array().expect("timers");
        assert!(
            timers.iter().any(|t| t["kind"] == "due"
                && t["target"]["stage"].is_number()
                && t["due"] == "2027-03-30T00:00:00+08:00"),
            "{timers:?}"
        );
    }
    // Once more: nothing moves, nothing recorded twice.
    let again = retime_now(&s).await;
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(retimed_count(&view(&s, &a).await), 1);
}

async fn retime_now(s: &Server) -> Vec<shenpi_web::server::calendars::RetimeSummary> {
    shenpi_web::server::calendars::retime_pending(&s.app)
        .await
        .expect("re-timing pass")
}

#[tokio::test]
async fn a_retiming_interrupted_half_way_is_finished_once_by_the_next_pass() {
    let s = at("cal-crash", "2027-01-25T10:00:00+08:00").await;
    let a = to_review(&s).await;
    let b = to_review(&s).await;
    // A revision published (by the CLI, say) and one instance re-timed before the node died:
    // the revision is not marked re-timed.
    let cal = s.app.catalog.calendar("cn-mainland").expect("calendar");
    let import = shenpi_engine::calendar::Calendar::from_yaml_strict("cn-mainland", OFFICIAL_2027)
        .expect("ok");
    let merged = cal.merged_yaml(&import);
    let rev = s
        .app
        .db
        .publish_calendar(
            "cn-mainland",
            &merged,
            "h",
            Origin::Import("cli"),
            "wang",
            0,
        )
        .await
        .expect("published");
    let new = shenpi_engine::calendar::Calendar::from_yaml("cn-mainland", &merged).expect("reads");
    s.app.machine.set_calendar(new).expect("in force");
    let key = format!("recalendar:cn-mainland:{}:{a}", rev.revision);
    let first = s
        .app
        .bus
        .submit(Submit {
            instance: a.clone(),
            start: None,
            key: Some(key),
            expected_version: None,
            command: CommandEnvelope {
                actor: Actor::system(),
                command: Command::Recalendar {
                    calendar: "cn-mainland".into(),
                    revision: u32::try_from(rev.revision).expect("small"),
                },
            },
            audit: None,
            project: None,
        })
        .await
        .expect("re-timed");
    assert!(first.events > 0);
    // The next pass (a restart, or the watcher) finishes the job.
    let done = retime_now(&s).await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].instances, 2);
    for inst in [&a, &b] {
        let v = view(&s, inst).await;
        assert_eq!(retimed_count(&v), 1, "{inst}: {v}");
        assert_eq!(
            v["view"]["stage"]["clock"]["due"],
            "2027-03-30T00:00:00+08:00"
        );
    }
    let n = s.app.db.count_events(Some(&a)).await.expect("count");
    assert!(retime_now(&s).await.is_empty());
    assert_eq!(s.app.db.count_events(Some(&a)).await.expect("count"), n);
}

/// Runs the binary off the runtime's thread: the server under test shares this test's
/// single-threaded runtime, and a blocking wait here would freeze it, perhaps inside a SQLite
/// write transaction the CLI then waits on.
async fn shenpi(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_shenpi"))
            .args(&args)
            .output()
            .expect("runs")
    })
    .await
    .expect("joined")
}

#[tokio::test]
async fn the_cli_import_previews_then_publishes_and_the_server_retimes_on_it() {
    let s = at("cal-cli", "2027-01-25T10:00:00+08:00").await;
    let inst = to_review(&s).await;
    let file = s.dir.join("notice-2027.yaml");
    std::fs::write(&file, OFFICIAL_2027).expect("write");
    let db = format!("sqlite://{}", s.dir.join("t.db").display());
    let run = |extra: &[&str]| {
        let mut args = vec![
            "calendar".to_string(),
            "import".into(),
            file.to_str().expect("path").into(),
            "--db".into(),
            db.clone(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        shenpi(args)
    };
    // Dry run: the 7 days on stdout, nothing published.
    let o = run(&[]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(out.starts_with("2027-02-11\tworkday -> off\t春节"), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing published"));
    assert_eq!(
        s.app
            .db
            .calendar_revisions("cn-mainland")
            .await
            .expect("db")
            .len(),
        1
    );
    // A bad file: located errors, exit 1, nothing published.
    let bad = s.dir.join("bad.yaml");
    std::fs::write(&bad, OFFICIAL_2027.replace("2027-02-20", "2027-02-22")).expect("write");
    let o = shenpi(vec![
        "calendar".into(),
        "import".into(),
        bad.to_str().expect("path").into(),
        "--db".into(),
        db.clone(),
        "--yes".into(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.yaml:13:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        s.app
            .db
            .calendar_revisions("cn-mainland")
            .await
            .expect("db")
            .len(),
        1
    );
    // Published with --yes; the running server's next pass puts it in force and re-times.
    let o = run(&["--yes", "--by", "wang"]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let done = retime_now(&s).await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].revision, 2);
    let v = view(&s, &inst).await;
    assert_eq!(
        v["view"]["stage"]["clock"]["due"],
        "2027-03-30T00:00:00+08:00"
    );
    assert_eq!(retimed_count(&v), 1);
    let revs = s
        .app
        .db
        .calendar_revisions("cn-mainland")
        .await
        .expect("db");
    assert_eq!(
        (revs[0].origin.as_str(), revs[0].published_by.as_str()),
        ("import", "wang")
    );
    assert!(revs[0].retimed_at.is_some());
}

#[tokio::test]
async fn on_the_real_clock_a_project_passes_intake_whatever_the_day() {
    // The clock reads the real time when the test runs (2026-12-01 the day this was written).
    let now = jiff::Timestamp::now();
    let s = server("cal-real").await;
    s.clock.0.store(now.as_millisecond(), Ordering::Relaxed);
    let inst = to_review(&s).await;
    let v = view(&s, &inst).await;
    let clock = &v["view"]["stage"]["clock"];
    let due: jiff::Timestamp = clock["due"]
        .as_str()
        .expect("a due date")
        .parse()
        .expect("time");
    assert!(due > now, "{clock}");
    let last_day = shenpi_engine::runtime::deadline::last_day(due);
    assert_eq!(clock["provisional"], last_day.year() > 2026, "{clock}");
    assert!(v["view"].get("calendar_errors").is_none(), "{v}");
}

#[tokio::test]
async fn a_revision_that_puts_a_deadline_before_now_needs_confirmation() {
    let s = at("cal-confirm", "2027-01-25T10:00:00+08:00").await;
    let inst = to_review(&s).await;
    let path = "/api/calendars/cn-mainland/revisions";
    let r = s
        .req(
            "POST",
            path,
            Some("wang"),
            Some(json!({"yaml": OFFICIAL_2027})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Every timer says which revision its instant was computed on: the moved ones the new one,
    // the others (ending before 春节) the first.
    let v = view(&s, &inst).await;
    let timers = v["view"]["timers"].as_array().expect("timers");
    assert!(
        timers
            .iter()
            .all(|t| t["calendar_revision"] == 1 || t["calendar_revision"] == 2),
        "{timers:?}"
    );
    let stage_due = timers
        .iter()
        .find(|t| t["kind"] == "due" && t["target"]["stage"].is_number())
        .expect("the stage's due timer");
    assert_eq!(stage_due["calendar_revision"], 2, "{stage_due}");
    assert!(timers.iter().any(|t| t["calendar_revision"] == 1));
    // On 03-27 the stage is due at the end of 03-29. A correction that takes the extra 春节 days
    // back (02-11, 02-12 worked again, Sat 02-20 off) moves it to the end of 03-26: past.
    s.clock
        .0
        .store(ms("2027-03-27T10:00:00+08:00"), Ordering::Relaxed);
    let correction = OFFICIAL_2027
        .replace(
            "from: 2027-02-05, to: 2027-02-12",
            "from: 2027-02-05, to: 2027-02-10",
        )
        .replace("      - { date: 2027-02-20, for: 春节 }\n", "");
    let r = s
        .req(
            "POST",
            path,
            Some("wang"),
            Some(json!({"yaml": correction, "dry_run": true})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["needs_confirmation"], true, "{}", r.text);
    let r = s
        .req(
            "POST",
            path,
            Some("wang"),
            Some(json!({"yaml": correction})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json["error"], "confirmation_required");
    assert_eq!(
        s.app
            .db
            .calendar_revisions("cn-mainland")
            .await
            .expect("db")
            .len(),
        2
    );
    let r = s
        .req(
            "POST",
            path,
            Some("wang"),
            Some(json!({"yaml": correction, "confirm": true})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["revision"], 3);
    assert!(
        r.json["retimed"][0]["moved_earlier"].as_i64().unwrap_or(0) > 0,
        "{}",
        r.text
    );
    let v = view(&s, &inst).await;
    assert_eq!(
        v["view"]["stage"]["clock"]["due"],
        "2027-03-27T00:00:00+08:00"
    );
    assert_eq!(v["view"]["stage"]["clock"]["colour"], "red");
    // The earlier deadline was announced to whom it concerns.
    let told = v["history"]
        .as_array()
        .expect("history")
        .iter()
        .any(|e| e["type"] == "notification_requested" && e["event"]["on"] == "deadline_moved");
    assert!(told, "{v}");
}
