//! In-process API tests (tower `oneshot`, no sockets): every endpoint, with the 401/403/404/409/422
//! answers and idempotent retries.

mod api_common;

use api_common::{T0, server};
use axum::http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn unauthenticated_requests_get_401_json() {
    let s = server("unauth").await;
    for (m, p) in [
        ("GET", "/api/tasks"),
        ("GET", "/api/projects"),
        ("POST", "/api/projects"),
        ("GET", "/api/instances/x"),
        ("POST", "/api/instances/x/commands"),
        ("GET", "/api/definitions"),
        ("POST", "/api/definitions"),
        ("GET", "/api/dashboard"),
        ("GET", "/api/outbox/dead"),
        ("GET", "/api/me"),
    ] {
        let r = s.req(m, p, None, None, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {p}: {}", r.text);
        assert_eq!(r.json["error"], "unauthenticated", "{m} {p}");
        assert!(r.json["message"].is_string());
    }
    // A wrong token is 401 as well.
    let r = s
        .req(
            "GET",
            "/api/me",
            None,
            None,
            &[("authorization", "Bearer nope")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_logout_and_csrf() {
    let s = server("login").await;
    let bad = s
        .req(
            "POST",
            "/api/login",
            None,
            Some(json!({"name": "zhang", "password": "wrong"})),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.json["error"], "bad_credentials");
    let ok = s
        .req(
            "POST",
            "/api/login",
            None,
            Some(json!({"name": "zhang", "password": "password-123"})),
            &[],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let token = ok.json["token"].as_str().expect("token").to_string();
    let csrf = ok.json["csrf"].as_str().expect("csrf").to_string();
    let cookie = ok.headers["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let me = s
        .req(
            "GET",
            "/api/me",
            None,
            None,
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(me.json["name"], "zhang");
    // With the cookie, a state-changing request needs the CSRF header.
    let session = cookie.split(';').next().expect("pair").to_string();
    let no_csrf = s
        .req(
            "POST",
            "/api/reports",
            None,
            Some(json!({"kind": "weekly"})),
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN, "{}", no_csrf.text);
    assert_eq!(no_csrf.json["details"]["reason"], "csrf");
    let with_csrf = s
        .req(
            "POST",
            "/api/reports",
            None,
            Some(json!({"kind": "weekly"})),
            &[("cookie", &session), ("x-csrf-token", &csrf)],
        )
        .await;
    // zhang is no supervisor: past the CSRF check, the policy says no.
    assert_eq!(with_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(with_csrf.json["error"], "forbidden");
    let out = s
        .req(
            "POST",
            "/api/logout",
            None,
            None,
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let me = s
        .req(
            "GET",
            "/api/me",
            None,
            None,
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn approval_flow_with_conditional_idempotency_and_conflicts() {
    let s = server("flow").await;
    // Projects: create, get, list, search.
    let (pid, inst) = s.start_project("省级重大").await;
    let p = s
        .req(
            "GET",
            &format!("/api/projects/{pid}"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.json["instances"][0], inst.as_str());
    let list = s
        .req("GET", "/api/projects?q=测试", Some("chen"), None, &[])
        .await;
    assert_eq!(list.json.as_array().map(Vec::len), Some(1));
    // Another applicant sees neither the project nor the instance.
    let other = s
        .req(
            "GET",
            &format!("/api/projects/{pid}"),
            Some("liu"),
            None,
            &[],
        )
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.req("GET", "/api/projects", Some("liu"), None, &[])
            .await
            .json
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let other = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("liu"),
            None,
            &[],
        )
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    // Invalid project input: 422.
    let bad = s
        .req(
            "POST",
            "/api/projects",
            Some("chen"),
            Some(json!({"name": "", "workflow_id": "provincial-major", "fields": {}})),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = s
        .req(
            "POST",
            "/api/projects",
            Some("chen"),
            Some(json!({"name": "x", "workflow_id": "nope", "fields": {}})),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Approvers do not register projects.
    let no = s
        .req(
            "POST",
            "/api/projects",
            Some("zhang"),
            Some(json!({"name": "x", "workflow_id": "provincial-major", "fields": {}})),
            &[],
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);

    // The first task (入库审核) is in li's inbox, not zhang's.
    let inbox = s.req("GET", "/api/tasks", Some("li"), None, &[]).await;
    assert_eq!(inbox.status, StatusCode::OK, "{}", inbox.text);
    let item = inbox
        .json
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("a task");
    assert_eq!(item["node"], "library");
    assert_eq!(item["colour"], "green");
    assert_eq!(item["green_channel"], true);
    assert!(item["days_left"].as_i64().is_some(), "{item}");
    let task = item["task"].as_str().expect("task id").to_string();
    // zhang is in the department but lacks the role: the engine says not_assigned → 403.
    let path = format!("/api/instances/{inst}/tasks/{task}/actions");
    let r = s
        .req(
            "POST",
            &path,
            Some("zhang"),
            Some(json!({"type": "approve"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json["error"], "not_assigned");
    // The task is not the applicant's: the engine refuses it (not_assigned).
    let r = s
        .req(
            "POST",
            &path,
            Some("chen"),
            Some(json!({"type": "approve"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json["error"], "not_assigned", "{}", r.text);
    // A body that is not JSON: 400 `malformed_json`; an unknown command: 422.
    let r = s
        .raw("POST", &path, Some("li"), "{not json", "application/json")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "malformed_json");
    let r = s
        .req("POST", &path, Some("li"), Some(json!({"type": "fly"})), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // 谋划 cannot close without the project data element, attached by its department (大数据局).
    let early = s
        .req(
            "POST",
            &path,
            Some("li"),
            Some(json!({"type": "approve"})),
            &[],
        )
        .await;
    assert_eq!(
        early.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        early.text
    );
    assert_eq!(early.json["error"], "stage_cannot_close");
    let wrong_dept = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/elements"),
            Some("li"),
            Some(json!({"element": "project_data", "fields": {"project_code": "x"}})),
            &[],
        )
        .await;
    assert_eq!(
        wrong_dept.status,
        StatusCode::FORBIDDEN,
        "{}",
        wrong_dept.text
    );
    s.attach_required(&inst, "mouhua").await;
    // li approves, twice with the same key: applied once.
    let first = s
        .req(
            "POST",
            &path,
            Some("li"),
            Some(json!({"type": "approve", "comment": "同意"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json["replayed"], false);
    let again = s
        .req(
            "POST",
            &path,
            Some("li"),
            Some(json!({"type": "approve", "comment": "同意"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json["replayed"], true);
    assert_eq!(again.json["version"], first.json["version"]);
    // Without the key, a second approve is a conflict: the task is decided.
    let dup = s
        .req(
            "POST",
            &path,
            Some("li"),
            Some(json!({"type": "approve"})),
            &[],
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.text);

    // Green channel skips 事前会商: the case is at 受理 for zhang.
    let intake = s.task_at(&inst, "intake").await.expect("intake open");
    s.attach_required(&inst, "shengcheng").await;
    let version = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("zhao"),
            None,
            &[],
        )
        .await
        .json["version"]
        .as_i64()
        .expect("version");
    let path = format!("/api/instances/{inst}/tasks/{intake}/actions");
    // A stale If-Match is 409.
    let stale = s
        .req(
            "POST",
            &path,
            Some("zhang"),
            Some(json!({"type": "comment", "text": "x"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.json["error"], "stale_version");
    // 容缺 with a red-line material: 422.
    let red = s
        .req(
            "POST",
            &path,
            Some("zhang"),
            Some(json!({"type": "approve_conditional", "waive": ["land_site"]})),
            &[],
        )
        .await;
    assert_eq!(red.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", red.text);
    assert_eq!(red.json["error"], "material_is_red_line");
    let ok = s
        .req(
            "POST",
            &path,
            Some("zhang"),
            Some(json!({"type": "approve_conditional", "waive": ["eia"], "comment": "容缺受理"})),
            &[
                ("idempotency-key", "cond-1"),
                ("if-match", &format!("\"{version}\"")),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // The instance shows the promise with its due date, the pre-approval and the history.
    let d = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(d.status, StatusCode::OK);
    let promise = &d.json["view"]["promises"][0];
    assert_eq!(promise["material"], "eia");
    assert!(promise["clock"]["due"].is_string(), "{promise}");
    assert_eq!(d.json["view"]["pre_approvals"][0]["formal"], false);
    assert!(d.json["history"].as_array().map(Vec::len).unwrap_or(0) > 5);
    assert!(d.json["materials"].as_array().is_some());

    // The applicant supplies the material; a verification task opens for zhang; zhang verifies.
    let sup = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/materials/eia/supply"),
            Some("chen"),
            None,
            &[("idempotency-key", "sup-1")],
        )
        .await;
    assert_eq!(sup.status, StatusCode::OK, "{}", sup.text);
    let not_mine = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/materials/eia/supply"),
            Some("liu"),
            None,
            &[],
        )
        .await;
    assert_eq!(not_mine.status, StatusCode::FORBIDDEN);
    let verify = s.task_at(&inst, "intake").await;
    let d = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("zhao"),
            None,
            &[],
        )
        .await;
    let vt = d.json["view"]["tasks"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["kind"] == "verify"))
        .and_then(|t| t["id"].as_u64())
        .expect("verification task");
    let _ = verify;
    let v = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/tasks/{vt}/verify"),
            Some("zhang"),
            Some(json!({"accepted": true})),
            &[],
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    let d = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        d.json["view"]["pre_approvals"][0]["formal"], true,
        "{}",
        d.json["view"]
    );

    // Elements: the energy quota of 审批 comes from 发改委 (zhang's department).
    let e = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/elements"),
            Some("zhang"),
            Some(json!({"element": "energy_quota", "fields": {"tce": 1200}})),
            &[],
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.text);
    let d = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("zhao"),
            None,
            &[],
        )
        .await;
    assert!(
        d.json["view"]["elements"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["element"] == "energy_quota"))
    );
    let e = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/elements"),
            Some("zhang"),
            Some(json!({"element": "energy_quota", "fields": {"tce": "lots"}})),
            &[],
        )
        .await;
    assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", e.text);
    let e = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/elements"),
            Some("zhang"),
            Some(json!({"element": "no_such", "fields": {}})),
            &[],
        )
        .await;
    assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", e.text);

    // Instance commands; start retried with the same key starts one instance.
    let c = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/commands"),
            Some("chen"),
            Some(json!({"type": "comment", "text": "请加快"})),
            &[],
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    let t = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/commands"),
            Some("zhang"),
            Some(json!({"type": "timer_fired", "timer": 0})),
            &[],
        )
        .await;
    assert_eq!(t.status, StatusCode::FORBIDDEN);
    let a = s
        .req(
            "POST",
            "/api/instances",
            Some("chen"),
            Some(json!({"project_id": pid})),
            &[("idempotency-key", "start-2")],
        )
        .await;
    let b = s
        .req(
            "POST",
            "/api/instances",
            Some("chen"),
            Some(json!({"project_id": pid})),
            &[("idempotency-key", "start-2")],
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json["instance"], b.json["instance"]);
    assert_eq!(b.json["replayed"], true);
    let missing = s
        .req("GET", "/api/instances/nope", Some("zhao"), None, &[])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let missing = s
        .req(
            "POST",
            "/api/instances/nope/commands",
            Some("zhang"),
            Some(json!({"type": "comment", "text": "x"})),
            &[],
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);

    // Diagram of the instance, current node highlighted.
    let svg = s
        .req(
            "GET",
            &format!("/api/instances/{inst}/diagram"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(svg.status, StatusCode::OK);
    assert!(
        svg.text.starts_with("<svg") && svg.text.contains("node current"),
        "{}",
        &svg.text[..200.min(svg.text.len())]
    );
    let _ = T0;
}

#[tokio::test]
async fn inbox_filters_and_scopes() {
    let s = server("inbox").await;
    s.start_project("省级重大").await;
    s.start_project("中长期库").await;
    let all = s.req("GET", "/api/tasks", Some("li"), None, &[]).await;
    assert_eq!(all.json.as_array().map(Vec::len), Some(2));
    // Green channel sorts first.
    assert_eq!(all.json[0]["green_channel"], true);
    let red = s
        .req("GET", "/api/tasks?colour=red", Some("li"), None, &[])
        .await;
    assert_eq!(red.json.as_array().map(Vec::len), Some(0));
    let wf = s
        .req(
            "GET",
            "/api/tasks?workflow=enterprise-filing",
            Some("li"),
            None,
            &[],
        )
        .await;
    assert_eq!(wf.json.as_array().map(Vec::len), Some(0));
    let st = s
        .req("GET", "/api/tasks?stage=mouhua", Some("li"), None, &[])
        .await;
    assert_eq!(st.json.as_array().map(Vec::len), Some(2), "{}", st.text);
    let dept = s
        .req("GET", "/api/tasks?scope=department", Some("li"), None, &[])
        .await;
    assert_eq!(dept.status, StatusCode::OK);
    let bad = s
        .req("GET", "/api/tasks?scope=everyone", Some("li"), None, &[])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let other = s.req("GET", "/api/tasks", Some("zhou"), None, &[]).await;
    assert_eq!(other.json.as_array().map(Vec::len), Some(0));
    // Time passes: 8 working days into a 10-day limit (green channel: 5) turns tasks yellow/red.
    s.clock
        .0
        .store(T0 + 14 * 86_400_000, std::sync::atomic::Ordering::Relaxed);
    let later = s.req("GET", "/api/tasks", Some("li"), None, &[]).await;
    let colours: Vec<&str> = later
        .json
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["colour"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(colours.len(), 2);
}

const BROKEN: &str = "id: provincial-major\nname: x\ncalendar: cn-mainland\nstart: a\nnodes:\n  - id: a\n    type: task\n    assignee: { role: nobody }\n    actions: [approve]\n    next: b\n";

#[tokio::test]
async fn definitions_validate_publish_versions_diff_diagram() {
    let s = server("defs").await;
    let list = s
        .req("GET", "/api/definitions", Some("zhang"), None, &[])
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.json.as_array().map(Vec::len).unwrap_or(0) >= 3,
        "{}",
        list.text
    );
    // Validation errors come back located, as JSON.
    let v = s
        .raw(
            "POST",
            "/api/definitions/validate",
            Some("wang"),
            BROKEN,
            "application/yaml",
        )
        .await;
    assert_eq!(v.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", v.text);
    assert_eq!(v.json["error"], "validation_failed");
    let diags = v.json["details"]["diagnostics"]
        .as_array()
        .expect("diagnostics");
    assert!(!diags.is_empty());
    assert!(
        diags
            .iter()
            .all(|d| d["line"].as_u64().unwrap_or(0) > 0 && d["col"].as_u64().is_some()),
        "{diags:?}"
    );
    assert!(
        diags.iter().any(|d| d["line"] == 8 || d["line"] == 10),
        "{diags:?}"
    );
    let syntax = s
        .raw(
            "POST",
            "/api/definitions/validate",
            Some("wang"),
            "id: [unclosed\n",
            "application/yaml",
        )
        .await;
    assert_eq!(syntax.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(syntax.json["details"]["diagnostics"][0]["code"], "E001");
    // Approvers neither validate nor publish.
    let no = s
        .raw(
            "POST",
            "/api/definitions/validate",
            Some("zhang"),
            BROKEN,
            "application/yaml",
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    let yaml = std::fs::read_to_string(api_common::workflows_dir().join("enterprise-filing.yaml"))
        .expect("yaml");
    let no = s
        .raw(
            "POST",
            "/api/definitions",
            Some("zhang"),
            &yaml,
            "application/yaml",
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    let ok = s
        .raw(
            "POST",
            "/api/definitions/validate",
            Some("wang"),
            &yaml,
            "application/yaml",
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json["valid"], true);
    // Publish a changed version.
    let changed = yaml.replacen(
        "name: 企业投资项目备案",
        "name: 企业投资项目备案（修订）",
        1,
    );
    let p = s
        .raw(
            "POST",
            "/api/definitions",
            Some("wang"),
            &changed,
            "application/yaml",
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    assert_eq!(p.json["version"], 2);
    let bad = s
        .raw(
            "POST",
            "/api/definitions",
            Some("wang"),
            BROKEN,
            "application/yaml",
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let vs = s
        .req(
            "GET",
            "/api/definitions/enterprise-filing/versions",
            Some("wang"),
            None,
            &[],
        )
        .await;
    assert_eq!(vs.json.as_array().map(Vec::len), Some(2));
    let none = s
        .req(
            "GET",
            "/api/definitions/nope/versions",
            Some("wang"),
            None,
            &[],
        )
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    let y1 = s
        .req(
            "GET",
            "/api/definitions/enterprise-filing/versions/1",
            Some("wang"),
            None,
            &[],
        )
        .await;
    assert_eq!(y1.text, yaml);
    let diff = s
        .req(
            "GET",
            "/api/definitions/enterprise-filing/diff?from=1&to=2",
            Some("wang"),
            None,
            &[],
        )
        .await;
    assert_eq!(diff.status, StatusCode::OK);
    let text = diff.json["diff"].as_str().expect("diff");
    assert!(
        text.contains("-name: 企业投资项目备案")
            && text.contains("+name: 企业投资项目备案（修订）"),
        "{text}"
    );
    let svg = s
        .req(
            "GET",
            "/api/definitions/enterprise-filing/diagram",
            Some("zhang"),
            None,
            &[],
        )
        .await;
    assert!(svg.text.starts_with("<svg"));
    let mm = s
        .req(
            "GET",
            "/api/definitions/enterprise-filing/diagram?format=mermaid&version=1",
            Some("zhang"),
            None,
            &[],
        )
        .await;
    assert!(mm.text.contains("flowchart TD"), "{}", mm.text);
    let dot = s
        .req(
            "GET",
            "/api/definitions/enterprise-filing/diagram?format=dot",
            Some("zhang"),
            None,
            &[],
        )
        .await;
    assert!(dot.text.contains("digraph"));
    let bad = s
        .req(
            "GET",
            "/api/definitions/enterprise-filing/diagram?format=png",
            Some("zhang"),
            None,
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn dashboard_reports_outbox_openapi_health_metrics() {
    let s = server("ops").await;
    s.start_project("省级重大").await;
    let d = s
        .req("GET", "/api/dashboard", Some("zhao"), None, &[])
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert!(d.json["by_colour"].is_array());
    assert_eq!(
        s.req("GET", "/api/dashboard", Some("chen"), None, &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = s
        .req(
            "POST",
            "/api/reports",
            Some("zhao"),
            Some(json!({"kind": "weekly"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // The report asked for now says what the scheduled weekly report of each workflow says:
    // the same content (adapters::reports), one entry per workflow that declares one.
    let reports = r.json["body"]["reports"].as_array().expect("reports");
    let keys: Vec<&str> = reports
        .iter()
        .filter_map(|x| x["report"].as_str())
        .collect();
    assert!(keys.contains(&"provincial-major/weekly"), "{keys:?}");
    for x in reports {
        let c = &x["content"];
        assert_eq!(c["report_kind"], "weekly_report", "{c}");
        assert!(c["workflow_name"].is_string(), "{c}");
        let sum = ["green", "yellow", "red"]
            .iter()
            .map(|k| c[k].as_i64().expect("count"))
            .sum::<i64>();
        assert_eq!(c["total"].as_i64(), Some(sum), "{c}");
    }
    let bad = s
        .req(
            "POST",
            "/api/reports",
            Some("zhao"),
            Some(json!({"kind": "daily"})),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let l = s.req("GET", "/api/reports", Some("zhao"), None, &[]).await;
    assert_eq!(l.json.as_array().map(Vec::len), Some(1));
    assert_eq!(
        s.req("GET", "/api/reports", Some("zhang"), None, &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let dead = s
        .req("GET", "/api/outbox/dead", Some("zhao"), None, &[])
        .await;
    assert_eq!(dead.status, StatusCode::OK);
    assert!(dead.json.is_array());
    assert_eq!(
        s.req("GET", "/api/outbox/dead", Some("chen"), None, &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let doc = s.req("GET", "/api/openapi.json", None, None, &[]).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(
        doc.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    for p in [
        "/api/tasks",
        "/api/instances/{id}/tasks/{task}/actions",
        "/api/definitions/validate",
        "/api/outbox/dead",
    ] {
        assert!(doc.json["paths"][p].is_object(), "missing {p}");
    }
    assert_eq!(
        s.req("GET", "/healthz", None, None, &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.req("GET", "/readyz", None, None, &[]).await.status,
        StatusCode::OK
    );
    let m = s.req("GET", "/metrics", None, None, &[]).await;
    assert!(
        m.text.contains("shenpi_commands_total{result=\"ok\"}"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains("shenpi_tasks{colour=\"green\"} 1"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains("shenpi_timers{state=\"pending\"}"),
        "{}",
        m.text
    );
    assert!(m.text.contains("shenpi_command_duration_seconds_bucket"));
    // 2026-03-02 to the shipped calendar's last day.
    assert!(
        m.text.contains(
            "shenpi_calendar_days_left{calendar=\"cn-mainland\",last_day=\"2026-12-31\"} 304"
        ),
        "{}",
        m.text
    );
    let nf = s.req("GET", "/api/nope", Some("zhao"), None, &[]).await;
    assert_eq!(nf.status, StatusCode::NOT_FOUND);
    assert_eq!(nf.json["error"], "not_found");
}

#[tokio::test]
async fn wrong_passwords_lock_the_name_for_a_while() {
    let s = server("throttle").await;
    let login = |password: &'static str| {
        s.req(
            "POST",
            "/api/login",
            None,
            Some(json!({"name": "zhang", "password": password})),
            &[],
        )
    };
    for _ in 0..5 {
        assert_eq!(login("guess").await.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is not checked now.
    let locked = login("password-123").await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text
    );
    assert_eq!(locked.json["error"], "too_many_failed_logins");
    assert!(
        locked.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("15 分钟后再试"),
        "{}",
        locked.text
    );
    // Other users are not affected.
    let other = s
        .req(
            "POST",
            "/api/login",
            None,
            Some(json!({"name": "nobody", "password": "x"})),
            &[],
        )
        .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
}
