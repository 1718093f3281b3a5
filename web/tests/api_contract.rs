//! The API keeps its contract: every operation of the OpenAPI document answers, on a seeded
//! server with real ids, a status the document lists for it (never a 5xx), and every error,
//! whether a handler's or the router's own (no such route, wrong method, malformed JSON, a body
//! or URI too long), is `{error, message, details}` with a Chinese message.

mod api_common;

use api_common::{Resp, Server, server};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

/// The real ids a seeded server has, to fill the document's path and query parameters.
struct Ids {
    project: String,
    instance: String,
    task: u64,
}

fn has_chinese(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// The error shape a client relies on.
fn assert_error_shape(r: &Resp, what: &str) {
    assert!(
        r.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}: not JSON: {:?} {}",
        r.headers.get(header::CONTENT_TYPE),
        r.text
    );
    assert!(r.json["error"].is_string(), "{what}: no code: {}", r.text);
    assert!(
        r.json["message"].as_str().is_some_and(has_chinese),
        "{what}: message not in Chinese: {}",
        r.text
    );
    assert!(
        r.json
            .as_object()
            .is_some_and(|o| o.contains_key("details")),
        "{what}: no details: {}",
        r.text
    );
}

/// Who calls an operation: the role it is for, so that most calls get past the policy.
fn caller(path: &str) -> Option<&'static str> {
    if path.starts_with("/api/definitions") || path.starts_with("/api/calendars") {
        Some("wang")
    } else if path.starts_with("/api/dashboard")
        || path.starts_with("/api/reports")
        || path.starts_with("/api/outbox")
    {
        Some("zhao")
    } else if path.ends_with("/elements") {
        // 大数据局 attaches the project data element.
        Some("ma")
    } else if path.contains("/tasks/") || path == "/api/tasks" {
        Some("zhang")
    } else if path == "/api/logout" || path == "/api/login" || path == "/api/openapi.json" {
        None
    } else {
        Some("chen")
    }
}

/// A request body for an operation that takes one; `{}` for any not listed here (a 422 the
/// document must list).
fn body_for(method: &str, path: &str, ids: &Ids) -> Option<(String, &'static str)> {
    let json = |v: Value| Some((v.to_string(), "application/json"));
    match (method, path) {
        ("post", "/api/login") => json(json!({"name": "chen", "password": "password-123"})),
        ("post", "/api/projects") => json(json!({
            "name": "合同测试项目", "workflow_id": "provincial-major",
            "fields": {"tier": "省级重大", "investment": 1000, "funding": "政府投资",
                       "industry": "数字经济", "region": "昆明市", "service_officer": "sun"}
        })),
        ("post", "/api/instances") => json(json!({"project_id": ids.project})),
        ("post", "/api/instances/{id}/commands") => {
            json(json!({"type": "comment", "text": "合同测试"}))
        }
        ("post", "/api/instances/{id}/tasks/{task}/actions") => {
            json(json!({"type": "comment", "text": "合同测试"}))
        }
        ("post", "/api/instances/{id}/tasks/{task}/verify") => json(json!({"accepted": true})),
        ("post", "/api/instances/{id}/elements") => json(json!({
            "element": "project_data", "fields": {"project_code": "2026-530000-01"}
        })),
        ("post", "/api/instances/{id}/materials/{material}/supply") => None,
        ("post", "/api/instances/{id}/materials/{material}/files") => Some((
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\n%PDF-1.7\n\r\n--b--\r\n"
                .to_string(),
            "multipart/form-data; boundary=b",
        )),
        ("post", "/api/reports") => json(json!({"kind": "weekly"})),
        ("post", "/api/calendars/{id}/revisions") => json(json!({
            "yaml": std::fs::read_to_string(api_common::workflows_dir().join("calendars/cn-mainland.yaml"))
                .unwrap_or_default(),
            "dry_run": true
        })),
        ("post", "/api/definitions") | ("post", "/api/definitions/validate") => Some((
            std::fs::read_to_string(api_common::workflows_dir().join("provincial-major.yaml"))
                .unwrap_or_default(),
            "application/yaml",
        )),
        ("post", _) => json(json!({})),
        _ => None,
    }
}

/// The concrete URI of a documented path: path parameters from the seeded ids, required query
/// parameters with a value of their type.
fn uri_for(path: &str, op: &Value, ids: &Ids) -> String {
    let mut uri = path
        .replace("{id}", &path_id(path, ids))
        .replace("{task}", &ids.task.to_string())
        .replace("{material}", "land_site")
        .replace("{version}", "1")
        .replace("{sha256}", &"0".repeat(64));
    let mut query = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        if p["in"] == "query" && p["required"] == true {
            let name = p["name"].as_str().unwrap_or("");
            query.push(format!("{name}=1"));
        }
    }
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    uri
}

fn path_id(path: &str, ids: &Ids) -> String {
    if path.starts_with("/api/definitions/") {
        "provincial-major".to_string()
    } else if path.starts_with("/api/calendars/") {
        "cn-mainland".to_string()
    } else if path.starts_with("/api/projects/") {
        ids.project.clone()
    } else {
        ids.instance.clone()
    }
}

async fn seeded() -> (Server, Ids) {
    let s = server("contract").await;
    let (project, instance) = s.start_project("省级重大").await;
    let d = s
        .req(
            "GET",
            &format!("/api/instances/{instance}"),
            Some("zhao"),
            None,
            &[],
        )
        .await;
    let task = d.json["view"]["tasks"]
        .as_array()
        .and_then(|t| t.first())
        .and_then(|t| t["id"].as_u64())
        .expect("an open task");
    (
        s,
        Ids {
            project,
            instance,
            task,
        },
    )
}

#[tokio::test]
async fn every_documented_operation_answers_a_documented_status() {
    let (s, ids) = seeded().await;
    let doc = s.req("GET", "/api/openapi.json", None, None, &[]).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.json["paths"].as_object().expect("paths").clone();
    let mut called = 0;
    let mut problems = Vec::new();
    for (path, item) in &paths {
        for (method, op) in item.as_object().expect("path item") {
            let uri = uri_for(path, op, &ids);
            let mut req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri);
            if let Some(u) = caller(path) {
                req = req.header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", s.tokens.get(u).expect("token")),
                );
            }
            let body = match body_for(method, path, &ids) {
                Some((text, ctype)) => {
                    req = req.header(header::CONTENT_TYPE, ctype);
                    Body::from(text)
                }
                None => Body::empty(),
            };
            let r = s.send(req.body(body).expect("request")).await;
            called += 1;
            let what = format!("{} {uri}", method.to_uppercase());
            let documented = op["responses"]
                .as_object()
                .is_some_and(|rs| rs.contains_key(r.status.as_str()));
            if r.status.is_server_error() || !documented {
                problems.push(format!(
                    "{what}: {} not documented or a 5xx: {}",
                    r.status, r.text
                ));
                continue;
            }
            if r.status.is_client_error() {
                if let Err(e) = std::panic::catch_unwind(|| assert_error_shape(&r, &what)) {
                    let text = e
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "error shape".to_string());
                    problems.push(text);
                }
            } else {
                let declared = &op["responses"][r.status.as_str()]["content"];
                if declared.get("application/json").is_some() && r.json.is_null() {
                    problems.push(format!("{what}: {} is not JSON: {}", r.status, r.text));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(called >= 29, "only {called} operations called");
}

/// The test of a path being declared: every `{param}` in the served document is a path
/// parameter, so a generated client can build each URI.
#[tokio::test]
async fn the_served_document_declares_each_path_parameter_in_the_path() {
    let s = server("contract-params").await;
    let doc = s.req("GET", "/api/openapi.json", None, None, &[]).await;
    for (path, item) in doc.json["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                    "{method} {path}: `{name}` is not a required path parameter"
                );
            }
            for p in &params {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap_or("");
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: {p}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn malformed_json_is_400_with_line_and_column() {
    let s = server("contract-malformed").await;
    let r = s
        .raw(
            "POST",
            "/api/projects",
            Some("chen"),
            "{\"name\": ",
            "application/json",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_error_shape(&r, "malformed JSON");
    assert_eq!(r.json["error"], "malformed_json");
    assert_eq!(r.json["details"]["line"], 1);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let s = server("contract-ctype").await;
    let r = s
        .raw(
            "POST",
            "/api/projects",
            Some("chen"),
            "name=x",
            "text/plain",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text);
    assert_error_shape(&r, "wrong content type");
    assert_eq!(r.json["error"], "unsupported_media_type");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_422_naming_the_field() {
    let s = server("contract-shape").await;
    let r = s
        .req(
            "POST",
            "/api/projects",
            Some("chen"),
            Some(json!({"name": 7, "workflow_id": "provincial-major", "fields": {}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_error_shape(&r, "wrong shape");
    assert_eq!(r.json["error"], "invalid_body");
    assert_eq!(r.json["details"]["path"], "name");
}

#[tokio::test]
async fn a_query_value_of_the_wrong_type_is_400_naming_the_parameter() {
    let s = server("contract-query").await;
    let r = s
        .req("GET", "/api/projects?limit=many", Some("chen"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_error_shape(&r, "bad query");
    assert_eq!(r.json["error"], "invalid_query");
    assert_eq!(r.json["details"]["parameter"], "limit");
    let missing = s
        .req(
            "GET",
            "/api/definitions/provincial-major/diff?from=1",
            Some("wang"),
            None,
            &[],
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.text);
    assert_eq!(missing.json["error"], "invalid_query");
}

#[tokio::test]
async fn a_path_parameter_of_the_wrong_type_is_400() {
    let s = server("contract-path").await;
    let r = s
        .req(
            "GET",
            "/api/definitions/provincial-major/versions/latest",
            Some("wang"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_error_shape(&r, "bad path");
    assert_eq!(r.json["error"], "invalid_path");
    assert_eq!(r.json["details"]["parameter"], "version");
}

#[tokio::test]
async fn an_unknown_api_route_is_404_json_and_an_unknown_page_a_chinese_page() {
    let s = server("contract-404").await;
    let r = s
        .req("GET", "/api/nothing/here", Some("chen"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_error_shape(&r, "unknown route");
    assert_eq!(r.json["error"], "not_found");
    let p = s.req("GET", "/nothing/here", None, None, &[]).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(
        p.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html"),
        "{:?}",
        p.headers
    );
    assert!(p.text.contains("页面不存在"), "{}", p.text);
}

#[tokio::test]
async fn a_wrong_method_is_405_json_keeping_allow() {
    let s = server("contract-405").await;
    let r = s
        .req("DELETE", "/api/projects", Some("chen"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error_shape(&r, "wrong method");
    assert_eq!(r.json["error"], "method_not_allowed");
    let allow = r.headers[header::ALLOW].to_str().unwrap_or("");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    // The message names the methods the path takes.
    let message = r.json["message"].as_str().unwrap_or("");
    assert!(
        message.contains("GET") && message.contains("POST"),
        "{message}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_json() {
    let s = server("contract-413").await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(3 << 20));
    let r = s
        .raw(
            "POST",
            "/api/projects",
            Some("chen"),
            &big,
            "application/json",
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_error_shape(&r, "body too large");
    assert_eq!(r.json["error"], "payload_too_large");
    // A YAML body, read as bytes by its handler, is refused the same way.
    let yaml = "x".repeat(3 << 20);
    let y = s
        .raw(
            "POST",
            "/api/definitions/validate",
            Some("wang"),
            &yaml,
            "application/yaml",
        )
        .await;
    assert_eq!(y.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", y.text);
    assert_error_shape(&y, "YAML too large");
}

#[tokio::test]
async fn a_uri_over_the_limit_is_414_json_for_the_api_and_a_page_for_a_browser() {
    let s = server("contract-414").await;
    let q = "x".repeat(10_000);
    let r = s
        .req(
            "GET",
            &format!("/api/projects?q={q}"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert_error_shape(&r, "long URI");
    assert_eq!(r.json["error"], "uri_too_long");
    let p = s
        .req("GET", &format!("/projects?q={q}"), None, None, &[])
        .await;
    assert_eq!(p.status, StatusCode::URI_TOO_LONG);
    assert!(p.text.contains("请求地址过长"), "{}", p.text);
}

/// The refusals the operations' single happy call does not reach, each with its code, a Chinese
/// message (naming the workflow, not its id, where it knows it) and, on `Accept-Language: en`,
/// the English one: the idempotency key, the command body, versions and workflows that do not
/// exist, a diagram format, an inbox scope, instances and projects not there or not one's own,
/// the policy's refusals, a wrong password and a definition that does not validate.
#[tokio::test]
async fn every_handler_refusal_is_worded_in_chinese() {
    let (s, ids) = seeded().await;
    let inst = &ids.instance;
    let action = format!("/api/instances/{inst}/tasks/{}/actions", ids.task);
    let long_key = "k".repeat(201);
    let approve = json!({"type": "approve"});
    let cases: Vec<(&str, Resp, StatusCode, &str, &str)> = vec![
        (
            "a key over 200 characters",
            s.req(
                "POST",
                &action,
                Some("zhang"),
                Some(approve.clone()),
                &[("Idempotency-Key", &long_key)],
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "Idempotency-Key 须为 1 至 200 个字符",
        ),
        (
            "an unknown command",
            s.req(
                "POST",
                &action,
                Some("zhang"),
                Some(json!({"type": "fly"})),
                &[],
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "不是有效的命令",
        ),
        (
            "a body that is not an object",
            s.raw("POST", &action, Some("zhang"), "[1]", "application/json")
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "请求体须是 JSON 对象",
        ),
        (
            "a command on no task",
            s.req(
                "POST",
                &action,
                Some("chen"),
                Some(json!({"type": "withdraw"})),
                &[],
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "此命令不针对待办事项",
        ),
        (
            "a version that does not exist",
            s.req(
                "GET",
                "/api/definitions/provincial-major/versions/99",
                Some("wang"),
                None,
                &[],
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
            "没有第 99 版",
        ),
        (
            "a diff to a version that does not exist",
            s.req(
                "GET",
                "/api/definitions/provincial-major/diff?from=1&to=99",
                Some("wang"),
                None,
                &[],
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
            "没有第 99 版",
        ),
        (
            "a workflow that does not exist",
            s.req(
                "GET",
                "/api/definitions/nope/versions",
                Some("wang"),
                None,
                &[],
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
            "没有流程「nope」",
        ),
        (
            "a diagram format",
            s.req(
                "GET",
                &format!("/api/instances/{inst}/diagram?format=png"),
                Some("chen"),
                None,
                &[],
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "不支持的流程图格式「png」",
        ),
        (
            "an inbox scope",
            s.req("GET", "/api/tasks?scope=all", Some("zhang"), None, &[])
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "不支持的范围「all」",
        ),
        (
            "an instance that does not exist",
            s.req("GET", "/api/instances/nope", Some("chen"), None, &[])
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
            "办理实例",
        ),
        (
            "another applicant's instance",
            s.req(
                "GET",
                &format!("/api/instances/{inst}"),
                Some("liu"),
                None,
                &[],
            )
            .await,
            StatusCode::FORBIDDEN,
            "forbidden",
            "这不是您的项目",
        ),
        (
            "a project that does not exist",
            s.req("GET", "/api/projects/nope", Some("chen"), None, &[])
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
            "的项目",
        ),
        (
            "a project without a name",
            s.req(
                "POST",
                "/api/projects",
                Some("chen"),
                Some(json!({"name": "", "workflow_id": "provincial-major", "fields": {}})),
                &[],
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "项目名称须为 1 至 200 个字符",
        ),
        (
            "a project whose fields are not an object",
            s.req(
                "POST",
                "/api/projects",
                Some("chen"),
                Some(json!({"name": "x", "workflow_id": "provincial-major", "fields": []})),
                &[],
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "须是 JSON 对象",
        ),
        (
            "a project of an unknown workflow",
            s.req(
                "POST",
                "/api/projects",
                Some("chen"),
                Some(json!({"name": "x", "workflow_id": "nope", "fields": {}})),
                &[],
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "没有流程「nope」",
        ),
        (
            "an approver registering a project",
            s.req(
                "POST",
                "/api/projects",
                Some("zhang"),
                Some(json!({"name": "x", "workflow_id": "provincial-major", "fields": {}})),
                &[],
            )
            .await,
            StatusCode::FORBIDDEN,
            "forbidden",
            "登记项目",
        ),
        (
            "the dashboard for an applicant",
            s.req("GET", "/api/dashboard", Some("chen"), None, &[])
                .await,
            StatusCode::FORBIDDEN,
            "forbidden",
            "督办看板",
        ),
        (
            "reports for an applicant",
            s.req("GET", "/api/reports", Some("chen"), None, &[]).await,
            StatusCode::FORBIDDEN,
            "forbidden",
            "统计报表",
        ),
        (
            "dead letters for an applicant",
            s.req("GET", "/api/outbox/dead", Some("chen"), None, &[])
                .await,
            StatusCode::FORBIDDEN,
            "forbidden",
            "发送失败的通知",
        ),
        (
            "validating for an applicant",
            s.raw(
                "POST",
                "/api/definitions/validate",
                Some("chen"),
                "id: x",
                "application/yaml",
            )
            .await,
            StatusCode::FORBIDDEN,
            "forbidden",
            "校验流程定义",
        ),
        (
            "publishing for an applicant",
            s.raw(
                "POST",
                "/api/definitions",
                Some("chen"),
                "id: x",
                "application/yaml",
            )
            .await,
            StatusCode::FORBIDDEN,
            "forbidden",
            "发布流程定义",
        ),
        (
            "a definition that does not validate",
            s.raw(
                "POST",
                "/api/definitions/validate",
                Some("wang"),
                "id: x\nnodes: 3\n",
                "application/yaml",
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "处问题，第一处在第",
        ),
        (
            "a wrong password",
            s.req(
                "POST",
                "/api/login",
                None,
                Some(json!({"name": "chen", "password": "wrong-password"})),
                &[],
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "用户名或密码错误",
        ),
    ];
    for (what, r, status, code, words) in &cases {
        assert_eq!(r.status, *status, "{what}: {}", r.text);
        assert_error_shape(r, what);
        assert_eq!(r.json["error"], *code, "{what}: {}", r.text);
        let message = r.json["message"].as_str().unwrap_or("");
        assert!(message.contains(words), "{what}: {message}");
    }
    // The hint of a command that is not one is Chinese too, and names each command's meaning.
    let hint = cases[1].1.json["details"]["hint"].as_str().unwrap_or("");
    assert!(hint.contains("take_back（拿回）"), "{hint}");
    // A version is named by its workflow's name, not its id.
    let version = cases[4].1.json["message"].as_str().unwrap_or("");
    assert!(
        version.starts_with("流程「") && !version.contains("provincial-major"),
        "{version}"
    );
    // English when asked for.
    let en = s
        .req(
            "GET",
            "/api/definitions/provincial-major/versions/99",
            Some("wang"),
            None,
            &[("Accept-Language", "en")],
        )
        .await;
    assert_eq!(en.json["error"], "not_found");
    assert_eq!(
        en.json["message"], "no version provincial-major@99",
        "{}",
        en.text
    );
}
