//! A timer whose firing the engine refused is visible (issue 9, item 5): `/metrics` counts it
//! under `shenpi_timers{state="refused"}` and the 督办看板 lists it in Chinese, by project and
//! node name, with the reason. The refusal is written into the store directly: which engine
//! refusals can happen depends on the calendars, and the durable tests
//! (`tests/tests/durable_refused_timers.rs`) cover how one is recorded and retried.

mod api_common;

use api_common::{T0, server};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use shenpi_adapters::store::{Batch, EventStore, ProjectionStore, TimerRefusal, TimerStore};

#[tokio::test]
async fn a_refused_timer_shows_in_metrics_and_on_the_dashboard() {
    let s = server("refused-timers").await;
    let (_, inst) = s.start_project("省级重大").await;
    let before = s.req("GET", "/metrics", None, None, &[]).await;
    assert!(
        before.text.contains("shenpi_timers{state=\"refused\"} 0"),
        "{}",
        before.text
    );

    // The red-warning timer of the open task, refused as the engine refuses one whose
    // escalation rungs fall past the calendar's end.
    let claimed = s
        .app
        .db
        .claim_due("test", i64::MAX / 4, 60_000, 100)
        .await
        .expect("claim");
    let due = claimed
        .iter()
        .map(|c| &c.timer)
        .find(|t| t.instance == inst && t.kind.contains("\"due\"") && t.kind.contains("task"))
        .expect("a due timer of the task")
        .clone();
    s.app
        .db
        .commit(&Batch {
            now: T0,
            timers_refused: vec![TimerRefusal {
                instance: inst.clone(),
                timer_id: due.timer_id.clone(),
                code: "outside_calendar".into(),
                message: "date 2027-01-04 is outside calendar cn-mainland".into(),
                refused_at: T0,
                retry_at: T0 + 3_600_000,
            }],
            ..Batch::default()
        })
        .await
        .expect("refusal recorded");

    let m = s.req("GET", "/metrics", None, None, &[]).await;
    assert!(
        m.text.contains("shenpi_timers{state=\"refused\"} 1"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains("shenpi_timers{state=\"pending\"}"),
        "{}",
        m.text
    );
    assert!(m.text.contains("shenpi_timers_due"), "{}", m.text);

    // The node the board should name: the open task's, by its name in the workflow.
    let (_, _, _, ctx) = s.app.instance(&inst).await.expect("load").expect("exists");
    let task = s
        .app
        .db
        .overdue(i64::MAX, 100)
        .await
        .expect("open tasks")
        .into_iter()
        .find(|t| t.instance == inst)
        .expect("the open task");
    let node_name = ctx
        .def
        .node(&task.node)
        .and_then(|n| n.name.clone())
        .expect("node name");

    let (secret, _) = s
        .app
        .accounts
        .create_session("zhao", T0, 3_600_000)
        .await
        .expect("session");
    let d = s
        .send(
            Request::get("/dashboard")
                .header(header::COOKIE, format!("shenpi_session={secret}"))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    for want in [
        "未能触发的定时器（1）",
        "测试项目",
        node_name.as_str(),
        "超期（红色）",
        "期限超出工作日历的范围",
        "outside_calendar",
    ] {
        assert!(
            d.text.contains(want),
            "{want} missing on the dashboard:\n{}",
            d.text
        );
    }
}
