//! The one authorisation policy seen through the API: a task the workflow assigns to
//! `role: applicant` (the construction permit's 施工建设 `build`) belongs to the instance's own
//! applicant — they see it in their inbox and complete it; another applicant neither sees it nor
//! may act on it; and a staff user with no part in the instance may not comment on it or send a
//! copy from it.

mod api_common;

use api_common::{T0, server};
use axum::http::StatusCode;
use serde_json::{Value, json};
use shenpi_adapters::bus::Submit;
use shenpi_engine::runtime::state::TaskStatus;
use shenpi_engine::runtime::{Command, TimerKind};

/// Every role of the construction permit's departments, held by one clerk with no department,
/// so the test can walk the instance to `build` without naming each reviewer.
const ROLES: &[&str] = &[
    "approver",
    "window_clerk",
    "fgw_reviewer",
    "zrzy_reviewer",
    "sthj_reviewer",
    "sw_reviewer",
    "zj_reviewer",
    "rf_reviewer",
    "cg_reviewer",
    "qx_reviewer",
    "da_reviewer",
    "expert_arch",
    "expert_struct",
    "expert_mep",
    "expert_fire",
    "expert_cost",
];

#[tokio::test]
async fn the_applicant_completes_the_task_assigned_to_the_applicant() {
    let mut s = server("policy").await;
    for (name, dept, roles) in [
        ("clerk", None, ROLES),
        ("qian", Some("jyj"), &["approver"][..]),
    ] {
        s.add_user(name, dept, roles).await;
    }
    let (_, inst) = s
        .start_in(
            "construction-permit",
            "施工许可测试",
            json!({"funding": "政府投资", "category": "房屋建筑", "investment": 5000,
                   "civil_defense": false, "service_officer": "sun", "key_flag": false}),
        )
        .await;

    // Walk the instance to `build`: the clerk approves every open task; a wait is let run out.
    let mut now = T0;
    let build = 'walk: {
        for _ in 0..80 {
            let (_, st, _, _) = s.app.instance(&inst).await.expect("load").expect("exists");
            let open: Vec<_> = st
                .tasks
                .iter()
                .filter(|t| t.status == TaskStatus::Open)
                .collect();
            if let Some(b) = open.iter().find(|t| t.spec.node == "build") {
                break 'walk b.spec.task.0;
            }
            if let Some(t) = open.first() {
                let path = format!("/api/instances/{inst}/tasks/{}/actions", t.spec.task.0);
                let r = s
                    .req(
                        "POST",
                        &path,
                        Some("clerk"),
                        Some(json!({"type": "approve"})),
                        &[],
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{} at {}", r.text, t.spec.node);
                continue;
            }
            let wait = st
                .timers
                .iter()
                .find(|t| matches!(t.kind, TimerKind::Wait { .. }))
                .map(|t| t.id)
                .expect("a waiting instance has its wait timer");
            now += 10 * 86_400_000;
            s.clock.0.store(now, std::sync::atomic::Ordering::Relaxed);
            let _ = s
                .app
                .bus
                .submit(Submit {
                    instance: inst.clone(),
                    start: None,
                    key: None,
                    expected_version: None,
                    command: command_by("system", Command::TimerFired { timer: wait }),
                    audit: None,
                    project: None,
                })
                .await;
        }
        panic!("the instance never reached `build`");
    };

    // Only chen's inbox shows it; liu, another applicant, neither sees it nor may act on it.
    let task_ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["task"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mine = s.req("GET", "/api/tasks", Some("chen"), None, &[]).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    assert_eq!(
        task_ids(&mine.json),
        vec![build.to_string()],
        "{}",
        mine.text
    );
    let theirs = s.req("GET", "/api/tasks", Some("liu"), None, &[]).await;
    assert!(task_ids(&theirs.json).is_empty(), "{}", theirs.text);
    let path = format!("/api/instances/{inst}/tasks/{build}/actions");
    let r = s
        .req(
            "POST",
            &path,
            Some("liu"),
            Some(json!({"type": "approve"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(is_chinese(&r.json["message"]), "{}", r.text);

    // A staff user of an unrelated department has no part in the instance: no comment, no 抄送.
    let cpath = format!("/api/instances/{inst}/commands");
    for cmd in [
        json!({"type": "comment", "text": "路过看看"}),
        json!({"type": "cc", "to": ["zhang"], "text": "请阅"}),
    ] {
        let r = s.req("POST", &cpath, Some("qian"), Some(cmd), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.json["error"], "not_authorised", "{}", r.text);
        assert!(is_chinese(&r.json["message"]), "{}", r.text);
    }
    // Those with a part in it may: the applicant and a clerk who held its tasks.
    for who in ["chen", "clerk"] {
        let r = s
            .req(
                "POST",
                &cpath,
                Some(who),
                Some(json!({"type": "comment", "text": "已阅"})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{who}: {}", r.text);
    }

    // chen completes the task assigned to the applicant; the instance moves on to 竣工联合验收.
    let r = s
        .req(
            "POST",
            &path,
            Some("chen"),
            Some(json!({"type": "approve"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (_, st, _, _) = s.app.instance(&inst).await.expect("load").expect("exists");
    assert!(
        st.tasks
            .iter()
            .any(|t| t.is_open() && t.spec.node == "stage4"),
        "{:?}",
        st.tasks
            .iter()
            .filter(|t| t.is_open())
            .map(|t| &t.spec.node)
            .collect::<Vec<_>>()
    );
}

fn command_by(name: &str, command: Command) -> shenpi_engine::runtime::CommandEnvelope {
    shenpi_engine::runtime::CommandEnvelope {
        actor: shenpi_engine::runtime::Actor::new(name, None, &[]),
        command,
    }
}

fn is_chinese(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|m| m.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
}
