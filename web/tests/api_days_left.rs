//! One rule for days left and colour: on every day of 2026, weekends and holidays included, the
//! inbox (API list and page), the task page, the instance API and the engine's own view say the
//! same colour and the same working days left for a task with a 5-working-day limit.
//!
//! Each day at 10:00 a new filing opens; every filing is read on each of the 16 days after it
//! opened (before, on and after its deadline), then withdrawn. The inbox used to count working
//! days to the date of the due *instant* (00:00 after the last day) and so said one day more than
//! the task page whenever the day after the deadline was a working day; and it showed the colour
//! of the filing's last command, green until a timer fired.

mod api_common;

use std::sync::atomic::Ordering;

use api_common::server;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jiff::civil::{Date, date};
use serde_json::{Value, json};
use shenpi_engine::calendar::{Calendar, start_of_day};
use shenpi_web::server::accounts::User;
use shenpi_web::server::auth::SESSION_COOKIE;

/// Instant of `d` at 10:00 +08:00, in ms.
fn ten_am(d: Date) -> i64 {
    start_of_day(d).as_millisecond() + 10 * 3_600_000
}

/// What a page says for `days_text`: 剩余 N / 今日到期 / 已超期 N.
fn days_of(text: &str) -> Option<i64> {
    let t = text.trim();
    if t == "今日到期" {
        return Some(0);
    }
    let n = |s: &str| {
        s.trim()
            .trim_end_matches("个工作日")
            .trim()
            .parse::<i64>()
            .ok()
    };
    if let Some(r) = t.strip_prefix("剩余") {
        return n(r);
    }
    t.strip_prefix("已超期").and_then(n).map(|d| -d)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let j = text.get(i..)?.find(end)? + i;
    text.get(i..j)
}

/// (colour, days left) of each row of the inbox page, by its task link.
fn inbox_page_rows(html: &str) -> Vec<(String, String, Option<i64>)> {
    html.split("<tr class=\"row-")
        .skip(1)
        .filter_map(|row| {
            let colour = row.split('"').next()?.to_string();
            // The cell's text, whatever attributes it carries besides its class.
            let days = between(row, "<td class=\"days\"", "<")
                .and_then(|cell| cell.split_once('>'))
                .and_then(|(_, text)| days_of(text));
            let link = between(row, "href=\"", "\"")?.to_string();
            Some((link, colour, days))
        })
        .collect()
}

struct Open {
    instance: String,
    task: u64,
    opened: Date,
}

#[tokio::test]
async fn inbox_task_page_instance_api_and_engine_agree_on_every_day_of_2026() {
    let mut s = server("days-left").await;
    let cal = Calendar::from_yaml(
        "cn-mainland",
        &std::fs::read_to_string(api_common::workflows_dir().join("calendars/cn-mainland.yaml"))
            .expect("calendar"),
    )
    .expect("shipped calendar");
    // The filing task with a 5-working-day limit, and an officer who holds it.
    let yaml = std::fs::read_to_string(api_common::workflows_dir().join("enterprise-filing.yaml"))
        .expect("yaml")
        .replacen("    limit: 3wd\n", "    limit: 5wd\n", 1);
    assert!(yaml.contains("    limit: 5wd\n"));
    let published = s
        .raw(
            "POST",
            "/api/definitions",
            Some("wang"),
            &yaml,
            "application/yaml",
        )
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.text);
    let start = ten_am(date(2026, 1, 1));
    s.clock.0.store(start, Ordering::Relaxed);
    let officer = User {
        name: "qian".into(),
        department: Some("fgw".into()),
        roles: vec!["approver".into(), "fgw_filing".into()],
    };
    s.app
        .accounts
        .upsert_user(&officer, Some("password-123"), start)
        .await
        .expect("user");
    let token = s
        .app
        .accounts
        .create_token("qian", None, start)
        .await
        .expect("token");
    s.tokens.insert("qian".into(), token);
    let (secret, _) = s
        .app
        .accounts
        .create_session("qian", start, 400 * 86_400_000)
        .await
        .expect("session");
    let cookie = format!("{SESSION_COOKIE}={secret}");
    let page = |path: String| {
        Request::get(path)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .expect("request")
    };

    let mut open: Vec<Open> = Vec::new();
    let mut readings = 0u32;
    let mut seen = std::collections::BTreeSet::new();
    let mut day = date(2026, 1, 1);
    while day <= date(2026, 12, 31) {
        let now = ten_am(day);
        s.clock.0.store(now, Ordering::Relaxed);
        // A new filing today (refused only if its limit runs past what the calendar covers).
        let p = s
            .req(
                "POST",
                "/api/projects",
                Some("chen"),
                Some(json!({
                    "name": format!("备案 {day}"),
                    "workflow_id": "enterprise-filing",
                    "fields": {"name": format!("备案 {day}"), "enterprise": "某公司",
                               "funding": "企业投资", "catalog": "备案类", "industry": "制造业",
                               "investment": 500, "service_officer": "sun"}
                })),
                &[],
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{day}: {}", p.text);
        let started = s
            .req(
                "POST",
                "/api/instances",
                Some("chen"),
                Some(json!({"project_id": p.json["id"]})),
                &[],
            )
            .await;
        if started.status == StatusCode::CREATED {
            let instance = started.json["instance"]
                .as_str()
                .expect("instance")
                .to_string();
            let task = s.task_at(&instance, "filing").await.expect("filing task");
            open.push(Open {
                instance,
                task,
                opened: day,
            });
        } else {
            assert_eq!(
                started.json["error"], "outside_calendar",
                "{day}: {}",
                started.text
            );
        }

        let inbox = s.req("GET", "/api/tasks", Some("qian"), None, &[]).await;
        assert_eq!(inbox.status, StatusCode::OK, "{}", inbox.text);
        let inbox_html = s.send(page("/inbox".into())).await;
        assert_eq!(inbox_html.status, StatusCode::OK);
        let html_rows = inbox_page_rows(&inbox_html.text);
        for o in &open {
            let (_, st, _, ctx) = s
                .app
                .instance(&o.instance)
                .await
                .expect("load")
                .expect("instance");
            let view = shenpi_engine::runtime::view(
                &ctx.def,
                &ctx.cal,
                &st,
                shenpi_web::server::engine::timestamp(now),
            );
            let t = view
                .tasks
                .iter()
                .find(|t| u64::from(t.id.0) == o.task)
                .expect("open task");
            let colour = shenpi_web::server::engine::colour_name(t.colour);
            let days = t.days_left;
            let at = format!(
                "filing opened {} read on {day} ({})",
                o.opened,
                if cal.is_workday(day).unwrap_or(false) {
                    "working day"
                } else {
                    "rest day"
                }
            );
            assert!(days.is_some(), "{at}: the engine gives no days left");

            let api = s
                .req(
                    "GET",
                    &format!("/api/instances/{}", o.instance),
                    Some("qian"),
                    None,
                    &[],
                )
                .await;
            let api_task = api.json["view"]["tasks"]
                .as_array()
                .and_then(|ts| ts.iter().find(|x| x["id"].as_u64() == Some(o.task)))
                .cloned()
                .unwrap_or(Value::Null);
            assert_eq!(api_task["colour"], colour, "{at}: instance API colour");
            assert_eq!(api_task["days_left"].as_i64(), days, "{at}: instance API");

            let item = inbox
                .json
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|x| x["instance"] == o.instance.as_str())
                        .cloned()
                })
                .unwrap_or(Value::Null);
            assert_eq!(item["colour"], colour, "{at}: inbox API colour");
            assert_eq!(
                item["days_left"].as_i64(),
                days,
                "{at}: inbox API days left"
            );

            let link = format!("/instances/{}/tasks/{}", o.instance, o.task);
            let row = html_rows.iter().find(|r| r.0 == link);
            assert_eq!(
                row.map(|r| (r.1.as_str(), r.2)),
                Some((colour, days)),
                "{at}: inbox page"
            );

            let task_page = s.send(page(link.clone())).await;
            assert_eq!(task_page.status, StatusCode::OK, "{at}");
            let heading = between(&task_page.text, "<h1>", "</h1>").unwrap_or_default();
            assert!(
                heading.contains(&format!("badge {colour}")),
                "{at}: task page colour: {heading}"
            );
            let shown = between(&task_page.text, "<span class=\"days\">", "<").and_then(days_of);
            assert_eq!(shown, days, "{at}: task page days left");

            readings += 1;
            seen.insert((
                colour.to_string(),
                cal.is_workday(day).unwrap_or(false),
                days.map(i64::signum),
            ));
        }
        // Read for 16 days (past the deadline even across 国庆), then withdrawn.
        let mut keep = Vec::new();
        for o in open.drain(..) {
            let age = o.opened.until(day).expect("span").get_days();
            if age >= 15 {
                let w = s
                    .req(
                        "POST",
                        &format!("/api/instances/{}/commands", o.instance),
                        Some("chen"),
                        Some(json!({"type": "withdraw"})),
                        &[],
                    )
                    .await;
                assert_eq!(w.status, StatusCode::OK, "withdraw: {}", w.text);
            } else {
                keep.push(o);
            }
        }
        open = keep;
        day = day.tomorrow().expect("date");
    }
    assert!(readings > 4_000, "only {readings} readings");
    // Green, yellow and red were each read on working and on rest days, with days left positive,
    // zero and negative among them.
    for colour in ["green", "yellow", "red"] {
        for workday in [true, false] {
            assert!(
                seen.iter().any(|(c, w, _)| c == colour && *w == workday),
                "{colour} never read on a {} day: {seen:?}",
                if workday { "working" } else { "rest" }
            );
        }
    }
    for sign in [-1, 0, 1] {
        assert!(seen.iter().any(|(_, _, d)| *d == Some(sign)), "{seen:?}");
    }
}
