//! Time and refusals as the user sees them: every authenticated page's header shows today's date
//! on the server's clock, in Chinese; the engine's refusals reach API clients and pages in
//! Chinese with the workflow's names, the `error` code unchanged.

mod api_common;

use std::sync::atomic::Ordering;

use api_common::server;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jiff::civil::date;
use serde_json::json;
use shenpi_engine::calendar::start_of_day;
use shenpi_web::server::auth::SESSION_COOKIE;

fn has_han(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[tokio::test]
async fn every_page_header_shows_the_server_clocks_date_in_chinese() {
    let s = server("header-date").await;
    // 2026-12-01 10:00 +08:00, a Tuesday.
    let t = start_of_day(date(2026, 12, 1)).as_millisecond() + 10 * 3_600_000;
    s.clock.0.store(t, Ordering::Relaxed);
    let get = |who: &'static str, path: &'static str| {
        let s = &s;
        async move {
            let (secret, _) = s
                .app
                .accounts
                .create_session(who, s.app.now(), 3_600_000)
                .await
                .expect("session");
            s.send(
                Request::get(path)
                    .header(header::COOKIE, format!("{SESSION_COOKIE}={secret}"))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
        }
    };
    for (who, path) in [
        ("li", "/inbox"),
        ("chen", "/projects"),
        ("wang", "/workflows"),
        ("zhao", "/dashboard"),
    ] {
        let r = get(who, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        assert!(
            r.text.contains("今天：2026年12月1日 星期二"),
            "{path} as {who}: {}",
            &r.text[..r.text.len().min(1500)]
        );
    }
    // The date is the local (UTC+08:00) one: 16:30 UTC on 1 March is already 2 March, a Monday.
    let t = start_of_day(date(2026, 3, 2)).as_millisecond() + 30 * 60_000;
    s.clock.0.store(t, Ordering::Relaxed);
    let r = get("li", "/inbox").await;
    assert!(r.text.contains("今天：2026年3月2日 星期一"), "{}", r.text);
    // Pages without a user (the login form) carry no date.
    let login = s
        .send(Request::get("/login").body(Body::empty()).expect("req"))
        .await;
    assert!(!login.text.contains("今天："));
}

#[tokio::test]
async fn refusals_are_in_chinese_with_the_workflows_names_and_keep_their_code() {
    let s = server("refusals-zh").await;
    let (_, inst) = s.start_project("中长期库").await;
    let task = s.task_at(&inst, "library").await.expect("library task");
    let path = format!("/api/instances/{inst}/tasks/{task}/actions");
    // zhang lacks the planner role: not_assigned, worded with the node's name, not its id.
    for _ in 0..2 {
        // The second time the refusal is a replay of the stored one: worded the same.
        let r = s
            .req(
                "POST",
                &path,
                Some("zhang"),
                Some(json!({"type": "approve"})),
                &[("idempotency-key", "refused-once")],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.json["error"], "not_assigned");
        assert_eq!(
            r.json["message"], "zhang 不是「中长期重大项目库入库审核」任务的办理人。",
            "{}",
            r.text
        );
        assert_eq!(r.json["details"]["rejection"], "not_assigned");
    }
    // A limit the calendar cannot count: before its first year (2025) nothing is computed on a
    // guess; the refusal says so in Chinese.
    let t = start_of_day(date(2024, 12, 2)).as_millisecond() + 10 * 3_600_000;
    s.clock.0.store(t, Ordering::Relaxed);
    let p = s
        .req(
            "POST",
            "/api/projects",
            Some("chen"),
            Some(json!({
                "name": "日历之前", "workflow_id": "provincial-major",
                "fields": {"tier": "中长期库", "investment": 120000, "funding": "政府投资",
                           "industry": "数字经济", "region": "昆明市", "service_officer": "sun"}
            })),
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let r = s
        .req(
            "POST",
            "/api/instances",
            Some("chen"),
            Some(json!({"project_id": p.json["id"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json["error"], "outside_calendar");
    let message = r.json["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("时限超出工作日日历的范围，无法计算") && has_han(message),
        "{message}"
    );
    assert!(
        r.json["details"]["engine_message"].is_string(),
        "{}",
        r.text
    );
}
