//! The rule lifecycle across restarts and versions, on SQLite and on PostgreSQL
//! (`SHENPI_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/test`; skipped when
//! unreachable, a failure under `CI`):
//!
//! - the database is the one record of published versions: a restart after an editor publish
//!   publishes nothing, keeps the editor's version as the latest, and says so (the start-up
//!   line and the editor page); a file edited on disk is published; each version records where
//!   it came from;
//! - a migration through the API: the dry run, bad input refused with located errors, the
//!   execution moving the movable instances once (the same key again moves nothing), a blocked
//!   instance untouched.

mod api_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use api_common::{ManualClock, T0, in_schema, pg_admin, pg_schema, pg_url, workflows_dir};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use shenpi_adapters::store::{DefinitionStore, EventStore, Source};
use shenpi_web::server::accounts::User;
use shenpi_web::server::{App, AppState, Config, router};
use tower::ServiceExt;

/// A fresh database: a SQLite file, or a PostgreSQL schema of its own (`None`: skipped).
async fn database(dir: &Path, backend: &str, name: &str) -> Option<String> {
    match backend {
        "sqlite" => Some(format!("sqlite://{}", dir.join("t.db").display())),
        _ => {
            let mut admin = pg_admin(&pg_url()).await?;
            let schema = pg_schema(&mut admin, name).await;
            Some(in_schema(&pg_url(), &schema))
        }
    }
}

/// A workflows folder of its own: the shipped calendars and templates and one workflow file.
fn folder(dir: &Path) -> PathBuf {
    let wf = dir.join("workflows");
    for sub in ["calendars", "templates"] {
        std::fs::create_dir_all(wf.join(sub)).expect("mkdir");
        for e in std::fs::read_dir(workflows_dir().join(sub)).expect("read") {
            let p = e.expect("entry").path();
            std::fs::copy(&p, wf.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::copy(
        workflows_dir().join("enterprise-filing.yaml"),
        wf.join("enterprise-filing.yaml"),
    )
    .expect("copy");
    wf
}

async fn build(db: &str, workflows: &Path) -> App {
    AppState::build(Config::new(
        db,
        workflows,
        Arc::new(ManualClock(AtomicI64::new(T0))),
    ))
    .await
    .expect("server builds")
}

fn wang() -> User {
    User {
        name: "wang".into(),
        department: None,
        roles: vec!["policy_staff".into()],
    }
}

async fn restart_keeps_the_editors_version(backend: &str) {
    let dir =
        std::env::temp_dir().join(format!("shenpi-lifecycle-{}-{backend}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let Some(db) = database(&dir, backend, "restart").await else {
        return;
    };
    let workflows = folder(&dir);
    let id = "enterprise-filing";

    let app = build(&db, &workflows).await;
    let v = app.db.definitions_of(id).await.expect("versions");
    assert_eq!(v.len(), 1, "{backend}: the file seeds v1");
    assert_eq!(v[0].source.as_deref(), Some("file"));
    assert_eq!(v[0].source_path.as_deref(), Some("enterprise-filing.yaml"));
    assert!(app.catalog.kept_newer(id).is_none());
    // Policy staff publish v2 from the editor (the editor page's own call).
    let yaml = std::fs::read_to_string(workflows.join("enterprise-filing.yaml")).expect("yaml");
    let edited = yaml.replacen(
        "name: 企业投资项目备案",
        "name: 企业投资项目备案（编辑器版）",
        1,
    );
    let p = shenpi_web::server::definitions::api::publish_yaml(
        &app,
        &wang(),
        None,
        &edited,
        Source::Editor("wang"),
    )
    .await
    .expect("publishes");
    assert_eq!(p.version, 2);
    drop(app);

    // The restart: no new version, v2 stays the latest, and start-up says why.
    let app = build(&db, &workflows).await;
    let v = app.db.definitions_of(id).await.expect("versions");
    assert_eq!(v.len(), 2, "{backend}: nothing republished: {v:?}");
    let latest = app
        .db
        .latest_definition(id)
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(latest.version, 2);
    assert_eq!(latest.yaml, edited);
    assert_eq!(latest.source.as_deref(), Some("editor"));
    assert_eq!(latest.published_by.as_deref(), Some("wang"));
    let kept = app.catalog.kept_newer(id).expect("the start-up note");
    let file = workflows
        .join("enterprise-filing.yaml")
        .display()
        .to_string();
    assert_eq!(
        kept.line(),
        format!("workflow {id}: v2 from the editor is newer than {file} (v1); keeping v2")
    );
    // New projects start on the editor's version.
    let (_, def) = app
        .catalog
        .latest(&app.db, id)
        .await
        .expect("latest")
        .expect("compiled");
    assert_eq!(def.workflow.name, "企业投资项目备案（编辑器版）");
    // The editor page says it in Chinese.
    app.accounts
        .upsert_user(&wang(), Some("password-123"), T0)
        .await
        .expect("user");
    let page = editor_page(&app, id).await;
    assert!(
        page.contains("wang 在编辑器中发布的 v2 比文件")
            && page.contains("保留 v2，未重新发布该文件"),
        "{backend}: the editor page says it"
    );
    assert!(page.contains("编辑器 · wang") && page.contains("文件 enterprise-filing.yaml"));
    drop(app);

    // A file edited on disk is an edit: published as v3, from the file.
    let on_disk = yaml.replacen("limit: 3wd", "limit: 2wd", 1);
    std::fs::write(workflows.join("enterprise-filing.yaml"), &on_disk).expect("write");
    let app = build(&db, &workflows).await;
    let latest = app
        .db
        .latest_definition(id)
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(
        (latest.version, latest.source.as_deref()),
        (3, Some("file"))
    );
    assert!(app.catalog.kept_newer(id).is_none());
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The editor page as `wang` sees it.
async fn editor_page(app: &App, id: &str) -> String {
    page_as(app, "wang", &format!("/workflows/editor?id={id}")).await
}

/// A page as `user` (password `password-123`) sees it, after a real login through the form.
async fn page_as(app: &App, user: &str, path: &str) -> String {
    let r = router(app.clone());
    let login = r
        .clone()
        .oneshot(Request::get("/login").body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    let cookie = login.headers()[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let body = axum::body::to_bytes(login.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&body);
    let csrf = text
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf")
        .to_string();
    let done = r
        .clone()
        .oneshot(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, &cookie)
                .body(Body::from(format!(
                    "csrf={csrf}&name={user}&password=password-123"
                )))
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let session = done.headers()[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let page = r
        .oneshot(
            Request::get(path)
                .header(header::COOKIE, session)
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(page.status(), StatusCode::OK);
    let body = axum::body::to_bytes(page.into_body(), 16 << 20)
        .await
        .expect("body");
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn restart_after_an_editor_publish_keeps_it_on_sqlite() {
    restart_keeps_the_editors_version("sqlite").await;
}

#[tokio::test]
async fn restart_after_an_editor_publish_keeps_it_on_postgres() {
    restart_keeps_the_editors_version("postgres").await;
}

async fn call(
    app: &App,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(k) = key {
        b = b.header("idempotency-key", k);
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = router(app.clone())
        .oneshot(b.body(body).expect("req"))
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn migration_through_the_api(backend: &str) {
    let dir = std::env::temp_dir().join(format!("shenpi-migrate-{}-{backend}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let Some(db) = database(&dir, backend, "migrate").await else {
        return;
    };
    let workflows = folder(&dir);
    let app = build(&db, &workflows).await;
    let id = "enterprise-filing";
    let users = [
        ("wang", None, vec!["policy_staff"]),
        ("chen", None, vec!["applicant"]),
        ("zhang", Some("fgw"), vec!["approver", "fgw_filing"]),
    ];
    let mut tokens = std::collections::HashMap::new();
    for (name, dept, roles) in users {
        let u = User {
            name: name.into(),
            department: dept.map(str::to_string),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        app.accounts.upsert_user(&u, None, T0).await.expect("user");
        tokens.insert(
            name,
            app.accounts
                .create_token(name, None, T0)
                .await
                .expect("token"),
        );
    }
    // Two projects on v1: one at the filing task, one that 容缺-approved with a promise for
    // `policy_statement` open.
    let mut instances = Vec::new();
    for n in 0..2 {
        let (s, p) = call(
            &app,
            &tokens["chen"],
            "POST",
            "/api/projects",
            Some(json!({
                "name": format!("迁移测试项目{n}"), "workflow_id": id,
                "fields": {"funding": "企业投资", "catalog": "备案类", "industry": "制造业",
                           "investment": 5000, "service_officer": "sun", "enterprise": "某公司"}
            })),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        let (s, i) = call(
            &app,
            &tokens["chen"],
            "POST",
            "/api/instances",
            Some(json!({"project_id": p["id"]})),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        instances.push(i["instance"].as_str().expect("instance").to_string());
    }
    let (s, r) = call(
        &app,
        &tokens["zhang"],
        "POST",
        &format!("/api/instances/{}/tasks/0/actions", instances[1]),
        Some(json!({"type": "approve_conditional", "waive": ["policy_statement"]})),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // v2: the filing task is renamed and its limit lengthened; policy_statement is dropped.
    let yaml = std::fs::read_to_string(workflows.join("enterprise-filing.yaml")).expect("yaml");
    let v2 = yaml
        .replace("  - id: filing\n", "  - id: filing_review\n")
        .replace("to: filing\n", "to: filing_review\n")
        .replacen("limit: 3wd", "limit: 5wd", 1)
        .replace(
            "  - { id: policy_statement, name: 符合产业政策的声明 }\n",
            "",
        )
        .replace("investment_info, policy_statement]", "investment_info]");
    shenpi_web::server::definitions::api::publish_yaml(
        &app,
        &wang(),
        None,
        &v2,
        Source::Api("wang"),
    )
    .await
    .expect("v2 publishes");
    let base = format!("/api/definitions/{id}/migrations");

    // Bad input: an unknown node, and another workflow — located, coded, Chinese, nothing run.
    let (s, e) = call(
        &app,
        &tokens["wang"],
        "POST",
        &base,
        Some(json!({
            "from": 1, "to": 2, "dry_run": true, "mapping": {"nodes": {"filing": "nowhere"}}
        })),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"], "invalid_mapping");
    assert_eq!(e["details"]["problems"][0]["at"], "mapping.nodes.filing");
    assert_eq!(e["details"]["problems"][0]["code"], "unknown_new_node");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("不是新版本中的环节"),
        "{e}"
    );
    let (s, e) = call(
        &app,
        &tokens["wang"],
        "POST",
        &base,
        Some(json!({
            "from": 1, "to": 1, "to_workflow": "provincial-major", "dry_run": false
        })),
        None,
    )
    .await;
    assert!(
        s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::NOT_FOUND,
        "{s} {e}"
    );
    // An approver may not migrate.
    let (s, _) = call(
        &app,
        &tokens["zhang"],
        "POST",
        &base,
        Some(json!({"from": 1, "to": 2, "dry_run": true})),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The dry run with the mapping: the first moves (its task re-limited), the second cannot
    // (its promised material is gone).
    let ask = json!({"from": 1, "to": 2, "dry_run": true, "mapping": {"nodes": {"filing": "filing_review"}}});
    let (s, d) = call(
        &app,
        &tokens["wang"],
        "POST",
        &base,
        Some(ask.clone()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(
        (d["movable"].as_u64(), d["blocked"].as_u64()),
        (Some(1), Some(1)),
        "{d}"
    );
    let row = |d: &Value, i: &str| {
        d["instances"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["instance"] == i)
            .cloned()
            .expect("row")
    };
    let first = row(&d, &instances[0]);
    assert_eq!(first["can_move"], true);
    assert!(
        first["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c["message"]
                .as_str()
                .unwrap_or("")
                .contains("时限由 3 个工作日改为 5 个工作日")),
        "{first}"
    );
    let second = row(&d, &instances[1]);
    assert_eq!(second["can_move"], false);
    assert_eq!(second["blockers"][0]["code"], "material_gone");
    assert!(
        second["blockers"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("符合产业政策的声明"),
        "{second}"
    );
    let events_before = app
        .db
        .count_events(Some(&instances[1]))
        .await
        .expect("count");

    // Execute with what the dry run saw.
    let seen: serde_json::Map<String, Value> = d["instances"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["instance"].as_str().unwrap_or("").to_string(),
                json!({"version": r["version"], "can_move": r["can_move"]}),
            )
        })
        .collect();
    let mut exec = ask.clone();
    exec["dry_run"] = json!(false);
    exec["seen"] = Value::Object(seen);
    let (s, run) = call(
        &app,
        &tokens["wang"],
        "POST",
        &base,
        Some(exec.clone()),
        Some("run-1"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(
        (
            run["moved"].as_i64(),
            run["blocked"].as_i64(),
            run["failed"].as_i64()
        ),
        (Some(1), Some(1), Some(0)),
        "{run}"
    );
    let (row0, _) = app
        .db
        .load(&instances[0], 0)
        .await
        .expect("load")
        .expect("row");
    assert_eq!(row0.meta.def_version, 2, "{backend}: moved to v2");
    let (row1, _) = app
        .db
        .load(&instances[1], 0)
        .await
        .expect("load")
        .expect("row");
    assert_eq!(
        row1.meta.def_version, 1,
        "{backend}: the blocked one stays on v1"
    );
    assert_eq!(
        app.db
            .count_events(Some(&instances[1]))
            .await
            .expect("count"),
        events_before,
        "untouched"
    );
    // The moved instance's history records the move, and its page says so in Chinese.
    let (_, detail) = call(
        &app,
        &tokens["wang"],
        "GET",
        &format!("/api/instances/{}", instances[0]),
        None,
        None,
    )
    .await;
    let history = detail["history"].to_string();
    assert!(history.contains("\"type\":\"migrated\""), "{history}");
    app.accounts
        .upsert_user(&wang(), Some("password-123"), T0)
        .await
        .expect("password");
    let page = page_as(&app, "wang", &format!("/instances/{}", instances[0])).await;
    assert!(
        page.contains(
            "wang 将本项目由流程规则 v1 迁移至 v2（环节「备案审查（容缺受理）」原为「filing」）"
        ),
        "{page}"
    );
    // The same key again moves nothing twice.
    let events_moved = app
        .db
        .count_events(Some(&instances[0]))
        .await
        .expect("count");
    let (s, again) = call(
        &app,
        &tokens["wang"],
        "POST",
        &base,
        Some(exec),
        Some("run-1"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(
        app.db
            .count_events(Some(&instances[0]))
            .await
            .expect("count"),
        events_moved
    );
    // The moved instance goes on under v2: its renamed task is decided.
    let (s, r) = call(
        &app,
        &tokens["zhang"],
        "POST",
        &format!("/api/instances/{}/tasks/0/actions", instances[0]),
        Some(json!({"type": "approve"})),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // The runs are listed.
    let (s, list) = call(&app, &tokens["wang"], "GET", &base, None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let run_id = list[0]["id"].as_str().expect("id");
    let (s, one) = call(
        &app,
        &tokens["wang"],
        "GET",
        &format!("{base}/{run_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["instances"].as_array().map(Vec::len), Some(2), "{one}");
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_migration_through_the_api_on_sqlite() {
    migration_through_the_api("sqlite").await;
}

#[tokio::test]
async fn a_migration_through_the_api_on_postgres() {
    migration_through_the_api("postgres").await;
}
