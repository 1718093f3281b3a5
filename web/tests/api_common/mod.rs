//! Shared setup for the in-process API tests: a server on a fresh SQLite file with the shipped
//! workflows, a clock set by hand, and users in every role with API tokens.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use shenpi_adapters::machine::Clock;
use shenpi_web::server::accounts::User;
use shenpi_web::server::{App, AppState, Config, router};
use tower::ServiceExt;

/// A clock the test moves.
pub struct ManualClock(pub AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    fn advance(&self, by: i64) -> Option<i64> {
        (by >= 0).then(|| self.0.fetch_add(by, Ordering::Relaxed) + by)
    }
}

/// 2026-03-02 10:00 +08:00, a Monday inside the shipped calendar.
pub const T0: i64 = 1_772_416_800_000;

pub struct Server {
    pub app: App,
    pub router: Router,
    pub clock: Arc<ManualClock>,
    pub tokens: std::collections::HashMap<String, String>,
    pub dir: PathBuf,
}

pub const USERS: &[(&str, Option<&str>, &[&str])] = &[
    ("chen", None, &["applicant"]),
    ("liu", None, &["applicant"]),
    (
        "zhang",
        Some("fgw"),
        &["approver", "fgw_intake", "fgw_filing"],
    ),
    (
        "li",
        Some("fgw"),
        &["approver", "fgw_planner", "fgw_reviewer"],
    ),
    ("zhou", Some("zrzy"), &["approver", "zrzy_reviewer"]),
    ("ma", Some("dsj"), &["approver", "dsj_officer"]),
    ("wang", None, &["policy_staff"]),
    ("zhao", Some("szf"), &["supervisor"]),
    // Holders of the provincial-major task roles no one above holds: a workflow with a task
    // role no one holds cannot be applied for (`start::check_startable`).
    ("wu", Some("sthj"), &["approver", "sthj_reviewer"]),
    ("zheng", Some("zj"), &["approver", "zj_reviewer"]),
    ("feng", Some("cz"), &["approver", "cz_reviewer"]),
    ("chu", Some("ny"), &["approver", "ny_reviewer"]),
    ("jiang", Some("fgw"), &["approver", "fgw_chief"]),
    ("wei", Some("szf"), &["approver", "szf_leader"]),
];

pub fn workflows_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

pub async fn server(name: &str) -> Server {
    server_with(name, Default::default(), Default::default()).await
}

/// A server with its own password pool and security settings.
pub async fn server_with(
    name: &str,
    passwords: shenpi_web::server::passwords::Limits,
    security: shenpi_web::server::security::Settings,
) -> Server {
    let dir = test_dir(name);
    let db = format!("sqlite://{}", dir.join("t.db").display());
    server_at(dir, &db, passwords, security).await
}

/// A directory of the test's own, emptied. `cargo test` runs a file's tests as threads of one
/// process: two servers of one name (two tests sharing a setup) must not share, nor remove,
/// each other's database.
fn test_dir(name: &str) -> PathBuf {
    static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SERVERS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("shenpi-api-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// A server whose material files go to the `files` folder of its test directory
/// (`serve --file-dir`) rather than to its SQLite database.
pub async fn server_with_file_dir(
    name: &str,
    security: shenpi_web::server::security::Settings,
) -> Server {
    let dir = test_dir(name);
    let db = format!("sqlite://{}", dir.join("t.db").display());
    let files = dir.join("files");
    build(dir, &db, Default::default(), security, Some(&files)).await
}

/// A server on the database at `db` (the test's directory `dir` is removed with it).
pub async fn server_at(
    dir: PathBuf,
    db: &str,
    passwords: shenpi_web::server::passwords::Limits,
    security: shenpi_web::server::security::Settings,
) -> Server {
    build(dir, db, passwords, security, None).await
}

async fn build(
    dir: PathBuf,
    db: &str,
    passwords: shenpi_web::server::passwords::Limits,
    security: shenpi_web::server::security::Settings,
    file_dir: Option<&std::path::Path>,
) -> Server {
    let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
    let app = AppState::build(Config {
        passwords,
        security,
        file_dir,
        ..Config::new(db, &workflows_dir(), clock.clone())
    })
    .await
    .expect("server builds");
    let mut tokens = std::collections::HashMap::new();
    for (name, dept, roles) in USERS {
        let u = User {
            name: name.to_string(),
            department: dept.map(str::to_string),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        app.accounts
            .upsert_user(&u, Some("password-123"), T0)
            .await
            .expect("user");
        let t = app
            .accounts
            .create_token(name, None, T0)
            .await
            .expect("token");
        tokens.insert(name.to_string(), t);
    }
    Server {
        router: router(app.clone()),
        app,
        clock,
        tokens,
        dir,
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Server {
    pub async fn req(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(u) = user {
            let t = self.tokens.get(u).expect("known user");
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).expect("request")).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: &str,
        ctype: &str,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, ctype);
        if let Some(u) = user {
            let t = self.tokens.get(u).expect("known user");
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(b.body(Body::from(body.to_string())).expect("request"))
            .await
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    /// Registers a provincial-major project as `chen` and starts it; returns (project, instance).
    pub async fn start_project(&self, tier: &str) -> (String, String) {
        self.start_in(
            "provincial-major",
            "测试项目",
            serde_json::json!({"enterprise": "某数字科技有限公司", "tier": tier, "investment": 120000, "funding": "政府投资",
                               "industry": "数字经济", "region": "昆明市", "service_officer": "sun"}),
        )
        .await
    }

    /// Registers a project `name` of `workflow` with `fields` as `chen` and starts it; returns
    /// (project, instance).
    pub async fn start_in(
        &self,
        workflow: &str,
        name: &str,
        fields: serde_json::Value,
    ) -> (String, String) {
        let p = self
            .req(
                "POST",
                "/api/projects",
                Some("chen"),
                Some(serde_json::json!({"name": name, "workflow_id": workflow, "fields": fields})),
                &[],
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
        let pid = p.json["id"].as_str().expect("id").to_string();
        let s = self
            .req(
                "POST",
                "/api/instances",
                Some("chen"),
                Some(serde_json::json!({"project_id": pid})),
                &[],
            )
            .await;
        assert_eq!(s.status, StatusCode::CREATED, "{}", s.text);
        (
            pid,
            s.json["instance"].as_str().expect("instance").to_string(),
        )
    }

    /// `user` takes the action `body` on `task`; it must go through.
    pub async fn act(&self, inst: &str, task: u64, user: &str, body: serde_json::Value) {
        let r = self
            .req(
                "POST",
                &format!("/api/instances/{inst}/tasks/{task}/actions"),
                Some(user),
                Some(body),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    /// Attaches the elements the provincial-major stages 谋划 and 生成 require, as their owners.
    pub async fn attach_required(&self, instance: &str, stage: &str) {
        let (user, body) = match stage {
            "mouhua" => (
                "ma",
                serde_json::json!({"element": "project_data", "fields": {"project_code": "2026-530000-01"}}),
            ),
            _ => (
                "zhou",
                serde_json::json!({"element": "land_quota", "fields": {"area_mu": 120, "quota_source": "省级统筹"}}),
            ),
        };
        let r = self
            .req(
                "POST",
                &format!("/api/instances/{instance}/elements"),
                Some(user),
                Some(body),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    /// The id of the first open task of an instance at a node.
    pub async fn task_at(&self, instance: &str, node: &str) -> Option<u64> {
        let r = self
            .req(
                "GET",
                &format!("/api/instances/{instance}"),
                Some("zhao"),
                None,
                &[],
            )
            .await;
        r.json["view"]["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["node"] == node)
            .and_then(|t| t["id"].as_u64())
    }
}

impl Server {
    /// Adds a user with the test password and an API token the requests can use.
    pub async fn add_user(&mut self, name: &str, dept: Option<&str>, roles: &[&str]) {
        let u = User {
            name: name.to_string(),
            department: dept.map(str::to_string),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        self.app
            .accounts
            .upsert_user(&u, Some("password-123"), T0)
            .await
            .expect("user");
        let t = self
            .app
            .accounts
            .create_token(name, None, T0)
            .await
            .expect("token");
        self.tokens.insert(name.to_string(), t);
    }

    /// The ids of the tasks in `user`'s inbox (`GET /api/tasks`, scope mine) for `instance`.
    pub async fn inbox_tasks(&self, user: &str, instance: &str) -> Vec<String> {
        let r = self.req("GET", "/api/tasks", Some(user), None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json
            .as_array()
            .expect("a list")
            .iter()
            .filter(|t| t["instance"] == instance)
            .map(|t| t["task"].as_str().expect("task id").to_string())
            .collect()
    }
}

/// A form body, `application/x-www-form-urlencoded`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut o = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => o.push(b as char),
                b' ' => o.push('+'),
                _ => o.push_str(&format!("%{b:02X}")),
            }
        }
        o
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The text between the first `start` and the next `end` after it.
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let j = text.get(i..)?.find(end)? + i;
    text.get(i..j)
}

/// A signed-in browser: the session cookie the login form set.
pub struct Browser<'a> {
    pub s: &'a Server,
    pub cookie: String,
}

impl<'a> Browser<'a> {
    /// Signs in through the login form (its CSRF token and cookie, the test password).
    pub async fn login(s: &'a Server, name: &str) -> Browser<'a> {
        let (login_cookie, csrf) = login_form(s).await;
        let r = s
            .send(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::COOKIE, &login_cookie)
                    .body(Body::from(form(&[
                        ("csrf", &csrf),
                        ("name", name),
                        ("password", "password-123"),
                    ])))
                    .expect("req"),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let set = r.headers[header::SET_COOKIE]
            .to_str()
            .expect("cookie")
            .to_string();
        Browser {
            s,
            cookie: set.split(';').next().expect("pair").to_string(),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.s
            .send(
                Request::get(path)
                    .header(header::COOKIE, &self.cookie)
                    .body(Body::empty())
                    .expect("req"),
            )
            .await
    }

    pub async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        self.s
            .send(
                Request::post(path)
                    .header(header::COOKIE, &self.cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form(pairs)))
                    .expect("req"),
            )
            .await
    }
}

/// The login page's cookie (`name=value`) and the CSRF token of its form.
pub async fn login_form(s: &Server) -> (String, String) {
    let page = s
        .send(Request::get("/login").body(Body::empty()).expect("req"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let set = page.headers[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_string();
    let cookie = set.split(';').next().expect("pair").to_string();
    let csrf = between(&page.text, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string();
    (cookie, csrf)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// A provincial-major project of `tier` at 受理 (zhang's intake task): its 谋划 and 生成
    /// elements attached, the library entry approved by li (with `opinion`, unless empty).
    /// Returns (instance, intake task).
    pub async fn at_intake(&self, tier: &str, opinion: &str) -> (String, u64) {
        let (_, inst) = self.start_project(tier).await;
        self.attach_required(&inst, "mouhua").await;
        let lib = self.task_at(&inst, "library").await.expect("library task");
        let mut approve = serde_json::json!({"type": "approve"});
        if !opinion.is_empty() {
            approve["comment"] = opinion.into();
        }
        self.act(&inst, lib, "li", approve).await;
        let intake = self.task_at(&inst, "intake").await.expect("intake open");
        self.attach_required(&inst, "shengcheng").await;
        (inst, intake)
    }

    /// A 重中之重 project at 受理, returned for 补正 of the EIA: chen may upload its files.
    /// Returns (instance, intake task).
    pub async fn returned_for_eia(&self) -> (String, u64) {
        let (inst, intake) = self.at_intake("重中之重", "").await;
        self.send_return(&inst, intake).await;
        (inst, intake)
    }

    /// A 重中之重 project pre-approved at intake with the EIA waived (容缺, by zhang): chen owes
    /// it against a promise. Returns the instance.
    pub async fn pre_approved_eia(&self) -> String {
        let (inst, intake) = self.at_intake("重中之重", "").await;
        self.act(
            &inst,
            intake,
            "zhang",
            serde_json::json!({"type": "approve_conditional", "waive": ["eia"]}),
        )
        .await;
        inst
    }

    /// zhang returns the application at `task` for 补正 of the EIA.
    pub async fn send_return(&self, inst: &str, task: u64) {
        self.act(
            inst,
            task,
            "zhang",
            serde_json::json!({"type": "return", "reason": "环评批复不清晰", "materials": ["eia"]}),
        )
        .await;
    }
}

/// A multipart body with one part per `(field, file name, bytes)`, and its content type.
pub fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----shenpi-test-boundary";
    let mut body = Vec::new();
    for (field, name, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Server {
    /// `user` uploads files for `material` of `inst`, one part per `(field, file name, bytes)`
    /// (the field is `file` for a file).
    pub async fn upload(
        &self,
        user: &str,
        inst: &str,
        material: &str,
        parts: &[(&str, &str, &[u8])],
    ) -> Resp {
        let (ctype, body) = multipart(parts);
        let req = Request::post(format!("/api/instances/{inst}/materials/{material}/files"))
            .header(axum::http::header::CONTENT_TYPE, ctype)
            .header(
                axum::http::header::AUTHORIZATION,
                format!("Bearer {}", self.tokens.get(user).expect("token")),
            )
            .body(Body::from(body))
            .expect("request");
        self.send(req).await
    }
}

/// Runs the `shenpi` binary with `args`: (exit status, stdout, stderr).
pub fn shenpi(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shenpi"))
        .args(args)
        .output()
        .expect("run shenpi");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The test PostgreSQL (`SHENPI_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/test`).
pub fn pg_url() -> String {
    std::env::var("SHENPI_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A connection to the test PostgreSQL at `url`, or `None` (the test is skipped) when it is
/// unreachable outside CI; under CI an unreachable PostgreSQL fails the test.
pub async fn pg_admin(url: &str) -> Option<sqlx::PgConnection> {
    use sqlx::Connection as _;
    match sqlx::PgConnection::connect(url).await {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("PostgreSQL unreachable ({e}): test skipped");
            None
        }
        Err(e) => panic!("PostgreSQL unreachable under CI: {e}"),
    }
}

/// Creates a fresh schema named like the durable tests' (so their sweep removes a leftover)
/// through `admin`, and returns its name.
pub async fn pg_schema(admin: &mut sqlx::PgConnection, name: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let schema = format!("shenpi_test_{secs}_{}_{name}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(admin)
        .await
        .expect("create schema");
    schema
}

/// `base` with its connections' search path set to `schema`.
pub fn in_schema(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}
