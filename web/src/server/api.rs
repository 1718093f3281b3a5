//! The REST API under `/api`. Every handler is annotated for the OpenAPI document
//! (`openapi.rs`), authenticates through [`Caller`], asks [`policy`] what the caller may do, and
//! answers errors as [`ApiError`] JSON.
//!
//! Commands go through [`run_command`], the one path from HTTP to the command bus: it checks the
//! caller, namespaces the `Idempotency-Key` by user (so two users cannot collide on a key),
//! honours `If-Match` (the instance version the caller saw), measures, and audits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shenpi_adapters::bus::{CommandError, Receipt, Submit};
use shenpi_adapters::machine::Rejection;
use shenpi_adapters::store::{InboxRow, InstanceMeta, OutboxStore, ProjectionStore};
use shenpi_engine::diag::Diagnostic;
use shenpi_engine::diagram::{self, Highlight};
use shenpi_engine::runtime::{self, Command, CommandEnvelope};
use utoipa::{IntoParams, ToSchema};

use super::accounts::{AuditEntry, Project, ReportRun, User, random_hex};
use super::auth::{Caller, SESSION_TTL_MS, clear_cookie, policy, session_cookie};
use super::engine::{EngineCtx, timestamp};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::refusals::{self, Names};
use super::state::{App, LoginCheck};
use super::svg;

// ---------- login ----------

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`; valid for 12 hours.
    pub token: String,
    /// For requests made with the session cookie instead: the `X-CSRF-Token` header.
    pub csrf: String,
    pub user: User,
}

/// Log in with a password: returns a bearer token and sets the session cookie.
#[utoipa::path(post, path = "/api/login", request_body = LoginRequest, tag = "auth",
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody),
        (status = 429, description = "5 wrong passwords for this user in 15 minutes", body = ErrorBody)))]
pub async fn login(State(app): State<App>, Json(req): Json<LoginRequest>) -> ApiResult<Response> {
    let user = match app
        .check_login(&req.name, &req.password)
        .await
        .map_err(ApiError::internal)?
    {
        LoginCheck::Ok(user) => user,
        LoginCheck::Locked { minutes } => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failed_logins",
                format!("too many wrong passwords for this user: try again in {minutes} min"),
            ));
        }
        LoginCheck::Wrong => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "wrong user name or password",
            ));
        }
    };
    let (secret, csrf) = app
        .accounts
        .create_session(&user.name, app.now(), SESSION_TTL_MS)
        .await
        .map_err(ApiError::internal)?;
    let cookie = session_cookie(&secret, app.secure_cookies);
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(LoginResponse {
            token: secret,
            csrf,
            user,
        }),
    )
        .into_response())
}

/// End the session of the bearer token or cookie.
#[utoipa::path(post, path = "/api/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(headers: HeaderMap, State(app): State<App>) -> ApiResult<Response> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| super::auth::cookie(&headers, super::auth::SESSION_COOKIE));
    if let Some(s) = secret {
        app.accounts
            .end_session(&s)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie())],
    )
        .into_response())
}

/// The caller.
#[utoipa::path(get, path = "/api/me", tag = "auth",
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> Json<User> {
    Json(caller.user)
}

// ---------- projects ----------

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProject {
    pub name: String,
    /// The workflow the project will run on.
    pub workflow_id: String,
    /// Field values, as the workflow declares them (`tier`, `investment` ...).
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
}

/// Register a project (applicants, service officers).
#[utoipa::path(post, path = "/api/projects", request_body = NewProject, tag = "projects",
    responses((status = 201, body = Project), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_project(
    State(app): State<App>,
    caller: Caller,
    Json(req): Json<NewProject>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    if !policy::can_start(&caller.user) {
        return Err(ApiError::forbidden(
            "only applicants and service officers register projects",
        ));
    }
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("`name` must be 1 to 200 characters"));
    }
    if !req.fields.is_object() {
        return Err(ApiError::invalid("`fields` must be a JSON object"));
    }
    let Some((_, def)) = app.catalog.latest(&app.db, &req.workflow_id).await? else {
        return Err(ApiError::invalid(format!(
            "unknown workflow `{}`",
            req.workflow_id
        )));
    };
    let mut fields = req.fields.clone();
    // The project's name is also its `name` field when the workflow declares one.
    if def.workflow.fields.iter().any(|f| f.id.value == "name")
        && let Some(o) = fields.as_object_mut()
    {
        o.entry("name").or_insert_with(|| name.into());
    }
    let p = Project {
        id: format!("P{}", &random_hex(5).map_err(ApiError::internal)?),
        name: name.to_string(),
        workflow_id: req.workflow_id,
        owner: caller.user.name.clone(),
        fields,
        created_at: app.now(),
        instances: Vec::new(),
    };
    app.accounts
        .create_project(&p)
        .await
        .map_err(ApiError::internal)?;
    app.audit(
        &caller.user.name,
        caller.remote.clone(),
        "create_project",
        None,
        &p.id,
    );
    Ok((StatusCode::CREATED, Json(p)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ProjectQuery {
    /// Search in name and id.
    pub q: Option<String>,
    pub limit: Option<i64>,
}

/// List or search projects; applicants see only their own.
#[utoipa::path(get, path = "/api/projects", params(ProjectQuery), tag = "projects",
    responses((status = 200, body = [Project]), (status = 401, body = ErrorBody)))]
pub async fn list_projects(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<ProjectQuery>,
) -> ApiResult<Json<Vec<Project>>> {
    let owner = (!caller.user.is_staff()).then_some(caller.user.name.as_str());
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = app
        .accounts
        .projects(owner, q.q.as_deref().filter(|s| !s.is_empty()), limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        list.into_iter()
            .filter(|p| policy::can_see_project(&caller.user, p))
            .collect(),
    ))
}

pub async fn project_for(app: &App, user: &User, id: &str) -> ApiResult<Project> {
    let p = app
        .accounts
        .project(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no project `{id}`")))?;
    if !policy::can_see_project(user, &p) {
        return Err(ApiError::forbidden("not your project"));
    }
    Ok(p)
}

/// One project with its instances.
#[utoipa::path(get, path = "/api/projects/{id}", tag = "projects",
    responses((status = 200, body = Project), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Project>> {
    Ok(Json(project_for(&app, &caller.user, &id).await?))
}

// ---------- instances ----------

#[derive(Debug, Deserialize, ToSchema)]
pub struct StartRequest {
    pub project_id: String,
    /// The definition version; the latest when absent.
    pub version: Option<i64>,
    /// Put the instance in this green channel explicitly.
    pub channel: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandResult {
    pub instance: String,
    /// The instance version after the command (number of events).
    pub version: i64,
    /// Events this command recorded.
    pub events: i64,
    /// True when an earlier request with the same `Idempotency-Key` already did this.
    pub replayed: bool,
}

impl From<Receipt> for CommandResult {
    fn from(r: Receipt) -> Self {
        CommandResult {
            instance: r.instance,
            version: r.version,
            events: r.events,
            replayed: r.replayed,
        }
    }
}

pub fn idempotency_key(headers: &HeaderMap, user: &str) -> ApiResult<Option<String>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key must be visible ASCII"))?;
            if k.is_empty() || k.len() > 200 {
                return Err(ApiError::invalid(
                    "Idempotency-Key must be 1 to 200 characters",
                ));
            }
            Ok(Some(format!("{user}\u{1f}{k}")))
        }
    }
}

fn expected_version(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_matches('"'))
            .and_then(|s| s.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::invalid("If-Match must be the instance version, e.g. \"12\"")),
    }
}

/// Start an instance of a project's workflow. Send an `Idempotency-Key` to make retries safe.
#[utoipa::path(post, path = "/api/instances", request_body = StartRequest, tag = "instances",
    params(("Idempotency-Key" = Option<String>, Header, description = "retries with the same key start one instance")),
    responses((status = 201, body = CommandResult), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start_instance(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Json(req): Json<StartRequest>,
) -> ApiResult<(StatusCode, Json<CommandResult>)> {
    let project = project_for(&app, &caller.user, &req.project_id).await?;
    if !(policy::is_project_party(&caller.user, &project) || caller.user.has("admin")) {
        return Err(ApiError::forbidden(
            "only the project's applicant or service officer starts it",
        ));
    }
    let version = match req.version {
        Some(v) => v,
        None => {
            app.catalog
                .latest(&app.db, &project.workflow_id)
                .await?
                .ok_or_else(|| ApiError::invalid("the project's workflow is not published"))?
                .0
        }
    };
    let ctx = app.context(&project.workflow_id, version).await?;
    let key = idempotency_key(&headers, &caller.user.name)?;
    let id = format!("I{}", random_hex(6).map_err(ApiError::internal)?);
    let cmd = Command::Start {
        project: project.fields.clone(),
        channel: req.channel.as_deref().map(Into::into),
    };
    let started = Instant::now();
    let res = app
        .bus
        .submit(Submit {
            instance: id.clone(),
            start: Some(InstanceMeta {
                id,
                workflow_id: project.workflow_id.clone(),
                def_version: version,
                project: project.fields.clone(),
            }),
            key,
            expected_version: None,
            command: CommandEnvelope {
                actor: caller.user.actor(),
                command: cmd,
            },
        })
        .await;
    record(&app, &caller, "start", None, &res, started);
    let r = match res {
        Ok(r) => r,
        Err(CommandError::Rejected(r)) => {
            return Err(refusals::refused(&r, &Names::of(&ctx.def, None)));
        }
        Err(e) => return Err(e.into()),
    };
    app.accounts
        .link_instance(
            &r.instance,
            &project.id,
            &project.workflow_id,
            version,
            app.now(),
        )
        .await
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(r.into())))
}

fn record(
    app: &App,
    caller: &Caller,
    action: &str,
    instance: Option<&str>,
    res: &Result<Receipt, shenpi_adapters::bus::CommandError>,
    started: Instant,
) {
    let outcome = match res {
        Ok(r) if r.replayed => "replayed".to_string(),
        Ok(_) => "ok".to_string(),
        Err(shenpi_adapters::bus::CommandError::Rejected(r)) => r.code.clone(),
        Err(e) => ApiError::from(e.clone()).body.error,
    };
    app.metrics.command(&outcome, started.elapsed());
    let instance = instance.or(res.as_ref().ok().map(|r| r.instance.as_str()));
    app.audit(
        &caller.user.name,
        caller.remote.clone(),
        action,
        instance,
        &outcome,
    );
}

/// The one path from an HTTP request to the command bus.
pub async fn run_command(
    app: &App,
    caller: &Caller,
    instance: &str,
    cmd: Command,
    headers: &HeaderMap,
) -> ApiResult<CommandResult> {
    let key = idempotency_key(headers, &caller.user.name)?;
    let expected = expected_version(headers)?;
    run_command_with(app, caller, instance, cmd, key, expected).await
}

/// [`run_command`] with the key (already namespaced) and expected version given directly.
pub async fn run_command_with(
    app: &App,
    caller: &Caller,
    instance: &str,
    cmd: Command,
    key: Option<String>,
    expected: Option<i64>,
) -> ApiResult<CommandResult> {
    let project = app.project_of(instance).await?;
    if let Some(p) = &project
        && !policy::can_see_project(&caller.user, p)
    {
        return Err(ApiError::forbidden("not your project"));
    }
    policy::check_command(&caller.user, project.as_deref(), &cmd)?;
    let action = command_name(&cmd);
    let started = Instant::now();
    let res = app
        .bus
        .submit(Submit {
            instance: instance.to_string(),
            start: None,
            key,
            expected_version: expected,
            command: CommandEnvelope {
                actor: caller.user.actor(),
                command: cmd,
            },
        })
        .await;
    record(app, caller, action, Some(instance), &res, started);
    match res {
        Ok(r) => Ok(r.into()),
        Err(CommandError::Rejected(r)) => Err(refusal_named(app, instance, &r).await),
        Err(e) => Err(e.into()),
    }
}

/// A refusal worded with the names of the instance's workflow version and of its tasks.
async fn refusal_named(app: &App, instance: &str, r: &Rejection) -> ApiError {
    match app.instance(instance).await {
        Ok(Some((_, st, _, ctx))) => refusals::refused(r, &Names::of(&ctx.def, Some(&st))),
        _ => refusals::refused(r, &Names::default()),
    }
}

pub fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Start { .. } => "start",
        Command::Claim { .. } => "claim",
        Command::Approve { .. } => "approve",
        Command::Reject { .. } => "reject",
        Command::Return { .. } => "return",
        Command::ApproveConditional { .. } => "approve_conditional",
        Command::SupplyMaterial { .. } => "supply_material",
        Command::VerifyMaterial { .. } => "verify_material",
        Command::Delegate { .. } => "delegate",
        Command::AddCosigner { .. } => "add_cosigner",
        Command::Withdraw { .. } => "withdraw",
        Command::Urge { .. } => "urge",
        Command::Comment { .. } => "comment",
        Command::Cc { .. } => "cc",
        Command::AttachElement { .. } => "attach_element",
        Command::Suspend { .. } => "suspend",
        Command::Resume { .. } => "resume",
        Command::Extend { .. } => "extend",
        Command::TimerFired { .. } => "timer_fired",
        Command::Recalendar { .. } => "recalendar",
    }
}

fn parse_command(value: serde_json::Value) -> ApiResult<Command> {
    serde_json::from_value(value).map_err(|e| {
        ApiError::invalid(format!("not a valid command: {e}")).with_details(serde_json::json!({
            "hint": "a JSON object with `type` (approve, reject, return, approve_conditional, claim, delegate, add_cosigner, comment, cc, urge, suspend, resume, extend, supply_material, verify_material, attach_element, withdraw) and its fields"
        }))
    })
}

fn json_body(body: &Bytes) -> ApiResult<serde_json::Value> {
    if body.len() > 1 << 20 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "request body over 1 MiB",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))
}

/// Any engine command on an instance (the body is the command, e.g.
/// `{"type": "comment", "text": "..."}`).
#[utoipa::path(post, path = "/api/instances/{id}/commands", tag = "instances",
    request_body(content = Object, description = "an engine command: `{\"type\": ..., ...}`"),
    params(("Idempotency-Key" = Option<String>, Header, description = "retries with the same key are applied once"),
        ("If-Match" = Option<String>, Header, description = "the instance version you saw; 409 if it moved")),
    responses((status = 200, body = CommandResult), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn instance_command(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<CommandResult>> {
    let cmd = parse_command(json_body(&body)?)?;
    Ok(Json(run_command(&app, &caller, &id, cmd, &headers).await?))
}

/// Act on a task: the body is the command without its `task` field, e.g.
/// `{"type": "approve"}`, `{"type": "reject", "to": "intake"}`,
/// `{"type": "approve_conditional", "waive": ["eia"], "limit": "20wd"}`.
#[utoipa::path(post, path = "/api/instances/{id}/tasks/{task}/actions", tag = "tasks",
    request_body(content = Object, description = "an engine command on the task"),
    params(("Idempotency-Key" = Option<String>, Header, description = "retries with the same key are applied once"),
        ("If-Match" = Option<String>, Header, description = "the instance version you saw")),
    responses((status = 200, body = CommandResult), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn task_action(
    State(app): State<App>,
    caller: Caller,
    Path((id, task)): Path<(String, u32)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<CommandResult>> {
    let mut v = json_body(&body)?;
    let Some(o) = v.as_object_mut() else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    o.insert("task".into(), task.into());
    let cmd = parse_command(v)?;
    if cmd.task() != Some(runtime::TaskId(task)) {
        return Err(ApiError::invalid("this command does not act on a task"));
    }
    Ok(Json(run_command(&app, &caller, &id, cmd, &headers).await?))
}

/// The applicant supplies a material (against a 容缺 promise or a 补正).
#[utoipa::path(post, path = "/api/instances/{id}/materials/{material}/supply", tag = "materials",
    params(("Idempotency-Key" = Option<String>, Header, description = "retries are applied once")),
    responses((status = 200, body = CommandResult), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn supply_material(
    State(app): State<App>,
    caller: Caller,
    Path((id, material)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<CommandResult>> {
    let cmd = Command::SupplyMaterial {
        material: material.into(),
    };
    Ok(Json(run_command(&app, &caller, &id, cmd, &headers).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRequest {
    pub accepted: bool,
    pub reason: Option<String>,
}

/// Verify a supplied material (its verification task).
#[utoipa::path(post, path = "/api/instances/{id}/tasks/{task}/verify", tag = "materials", request_body = VerifyRequest,
    responses((status = 200, body = CommandResult), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn verify_material(
    State(app): State<App>,
    caller: Caller,
    Path((id, task)): Path<(String, u32)>,
    headers: HeaderMap,
    Json(req): Json<VerifyRequest>,
) -> ApiResult<Json<CommandResult>> {
    let cmd = Command::VerifyMaterial {
        task: runtime::TaskId(task),
        accepted: req.accepted,
        reason: req.reason,
    };
    Ok(Json(run_command(&app, &caller, &id, cmd, &headers).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AttachRequest {
    pub element: String,
    #[schema(value_type = Object)]
    #[serde(default)]
    pub fields: serde_json::Value,
}

/// Attach an element (要素) to the instance's current stage.
#[utoipa::path(post, path = "/api/instances/{id}/elements", tag = "elements", request_body = AttachRequest,
    responses((status = 200, body = CommandResult), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn attach_element(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(req): Json<AttachRequest>,
) -> ApiResult<Json<CommandResult>> {
    let cmd = Command::AttachElement {
        element: req.element.into(),
        fields: req.fields,
    };
    Ok(Json(run_command(&app, &caller, &id, cmd, &headers).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub seq: i64,
    /// When it was recorded (ms since the epoch).
    pub at: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MaterialStatus {
    pub material: String,
    pub name: Option<String>,
    pub red_line: bool,
    /// `present`, `missing`, `promised`, `supplied`, `verified`, `breached`.
    pub status: String,
    /// Due date of the promise (ms), when promised.
    pub due: Option<i64>,
    pub waivable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceDetail {
    pub id: String,
    pub workflow_id: String,
    pub def_version: i64,
    /// Number of events (send as `If-Match` to act on exactly this state).
    pub version: i64,
    pub project: Option<Project>,
    /// The engine's view at now: status, open tasks with colour and working days left, steps,
    /// promises with due dates, stage and elements, outstanding items, timers.
    #[schema(value_type = Object)]
    pub view: serde_json::Value,
    /// The materials of the current task's node.
    pub materials: Vec<MaterialStatus>,
    pub history: Vec<HistoryEntry>,
    /// Who did what from where (HTTP audit trail).
    pub audit: Vec<AuditEntry>,
}

/// Materials of a node, with their status in an instance.
pub fn materials_of(
    ctx: &EngineCtx,
    st: &runtime::InstanceState,
    node: &str,
) -> Vec<MaterialStatus> {
    let Some(n) = ctx.def.node(node) else {
        return Vec::new();
    };
    let waivable: Vec<&str> = n
        .conditional
        .as_ref()
        .map(|c| c.waivable.iter().map(|w| w.value.as_str()).collect())
        .unwrap_or_default();
    let mut ids: Vec<&str> = n.materials.iter().map(|m| m.value.as_str()).collect();
    for b in &n.branches {
        ids.extend(b.materials.iter().map(|m| m.value.as_str()));
    }
    let mut out: Vec<MaterialStatus> = Vec::new();
    for id in ids {
        if out.iter().any(|m| m.material == id) {
            continue;
        }
        let def = ctx.def.workflow.materials.iter().find(|m| m.id.value == id);
        let promise = st.promises.iter().rev().find(|p| p.material == id);
        let (status, due) = match promise {
            Some(p) => {
                let due = p
                    .clock
                    .due(&ctx.cal)
                    .ok()
                    .flatten()
                    .map(|t| t.as_millisecond());
                let s = if p.breached {
                    "breached"
                } else {
                    match p.status {
                        runtime::state::PromiseStatus::Open => "promised",
                        runtime::state::PromiseStatus::Supplied => "supplied",
                        runtime::state::PromiseStatus::Verified => "verified",
                    }
                };
                (s, due)
            }
            None if st.supplied.iter().any(|s| s == id) => ("present", None),
            // Without a promise or a 补正 request, a step's material is taken as submitted with
            // the application; only a 容缺 makes it missing.
            None => match &st.returned {
                Some(r) if r.materials.iter().any(|m| m == id) => ("missing", None),
                _ => ("present", None),
            },
        };
        out.push(MaterialStatus {
            material: id.to_string(),
            name: def.and_then(|d| d.name.clone()),
            red_line: def.is_some_and(|d| d.red_line.value),
            status: status.to_string(),
            due,
            waivable: waivable.contains(&id),
        });
    }
    out
}

pub async fn instance_detail(app: &App, user: &User, id: &str) -> ApiResult<InstanceDetail> {
    let (row, st, events, ctx) = app
        .instance(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance `{id}`")))?;
    let project = app
        .accounts
        .project_of(id)
        .await
        .map_err(ApiError::internal)?;
    if let Some(p) = &project
        && !policy::can_see_project(user, p)
    {
        return Err(ApiError::forbidden("not your project"));
    }
    if project.is_none() && !user.is_staff() {
        return Err(ApiError::forbidden("not your project"));
    }
    let view = runtime::view(&ctx.def, &ctx.cal, &st, timestamp(app.now()));
    let node = view
        .tasks
        .first()
        .map(|t| t.node.to_string())
        .or_else(|| st.pre_approvals.last().map(|p| p.node.to_string()))
        .or_else(|| st.at.as_ref().map(|a| a.to_string()))
        .unwrap_or_default();
    let materials = materials_of(&ctx, &st, &node);
    let history = events
        .iter()
        .map(|(seq, at, e)| HistoryEntry {
            seq: *seq,
            at: *at,
            kind: e.kind().to_string(),
            event: serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    let audit = app
        .accounts
        .audit_of(id)
        .await
        .map_err(ApiError::internal)?;
    Ok(InstanceDetail {
        id: row.meta.id.clone(),
        workflow_id: row.meta.workflow_id.clone(),
        def_version: row.meta.def_version,
        version: row.version,
        project,
        view: serde_json::to_value(&view).unwrap_or(serde_json::Value::Null),
        materials,
        history,
        audit,
    })
}

/// An instance: state, open tasks with colours, promises, elements, full history.
#[utoipa::path(get, path = "/api/instances/{id}", tag = "instances",
    responses((status = 200, body = InstanceDetail), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_instance(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<InstanceDetail>> {
    Ok(Json(instance_detail(&app, &caller.user, &id).await?))
}

// ---------- inbox ----------

#[derive(Debug, Deserialize, IntoParams, Default)]
pub struct InboxQuery {
    /// `mine` (assigned to me and my department's pool, the default) or `department` (the pool only).
    pub scope: Option<String>,
    /// `green`, `yellow` or `red`.
    pub colour: Option<String>,
    pub stage: Option<String>,
    pub workflow: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboxItem {
    pub instance: String,
    pub task: String,
    pub workflow_id: String,
    /// The task's label: the node id, `node.branch` or `verify.<material>`.
    pub node: String,
    pub node_name: Option<String>,
    pub stage: Option<String>,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub assignee: Option<String>,
    pub department: Option<String>,
    pub colour: String,
    /// Working days left; negative when overdue.
    pub days_left: Option<i64>,
    pub due: Option<i64>,
    /// The due date or days left count a provisional calendar year (暂定, from the statute).
    pub provisional: bool,
    pub priority: i32,
    /// In a green channel (raised priority).
    pub green_channel: bool,
    /// On a leader's 挂牌督办 list.
    pub supervised: bool,
}

fn colour_rank(c: &str) -> u8 {
    match c {
        "red" => 2,
        "yellow" => 1,
        _ => 0,
    }
}

pub async fn inbox_items(app: &App, user: &User, q: &InboxQuery) -> ApiResult<Vec<InboxItem>> {
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    // The projection addresses a task to `user:NAME`, `role:ID` or `dept:ID`: "mine" is what is
    // addressed to me or to one of my roles (a role's pool belongs to its department), and the
    // department scope is what is addressed to my department as a whole.
    let keys: Vec<String> = match q.scope.as_deref() {
        Some("department") => user
            .department
            .iter()
            .map(|d| format!("dept:{d}"))
            .collect(),
        None | Some("mine") => std::iter::once(format!("user:{}", user.name))
            .chain(user.roles.iter().map(|r| format!("role:{r}")))
            .chain(user.department.iter().map(|d| format!("dept:{d}")))
            .collect(),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "scope `{other}`: use `mine` or `department`"
            )));
        }
    };
    let mut rows: Vec<InboxRow> = Vec::new();
    for k in &keys {
        rows.extend(app.db.inbox(Some(k), &[], limit * 2).await?);
    }
    let now = app.now();
    let mut names: HashMap<String, Option<Project>> = HashMap::new();
    // Colour, days left and due are read off the engine's view of each instance at `now`, the
    // reading the task page and the instance API show (`runtime::clock::colour`): the row's
    // colour is as of the instance's last command, and its due instant alone does not say how
    // many working days are left.
    let mut views: HashMap<String, Option<(Arc<EngineCtx>, runtime::InstanceView)>> =
        HashMap::new();
    let mut out = Vec::new();
    for r in rows {
        if q.stage
            .as_deref()
            .is_some_and(|s| !s.is_empty() && r.stage.as_deref() != Some(s))
            || q.workflow
                .as_deref()
                .is_some_and(|w| !w.is_empty() && w != r.workflow_id)
        {
            continue;
        }
        if !views.contains_key(&r.instance) {
            let seen = app.instance(&r.instance).await?.map(|(_, st, _, ctx)| {
                let v = runtime::view(&ctx.def, &ctx.cal, &st, timestamp(now));
                (ctx, v)
            });
            views.insert(r.instance.clone(), seen);
        }
        // A task closed since the row was read is no longer in the view: not in the inbox either.
        let Some((ctx, task)) =
            views
                .get(&r.instance)
                .and_then(Option::as_ref)
                .and_then(|(ctx, v)| {
                    v.tasks
                        .iter()
                        .find(|t| t.id.to_string() == r.task_id)
                        .map(|t| (ctx, t))
                })
        else {
            continue;
        };
        let colour = super::engine::colour_name(task.colour);
        if q.colour
            .as_deref()
            .is_some_and(|c| !c.is_empty() && c != colour)
        {
            continue;
        }
        if !names.contains_key(&r.instance) {
            let p = app
                .accounts
                .project_of(&r.instance)
                .await
                .map_err(ApiError::internal)?;
            names.insert(r.instance.clone(), p);
        }
        let project = names.get(&r.instance).cloned().flatten();
        let base = r.node.split('.').next().unwrap_or(&r.node);
        let node_name = ctx.def.node(base).and_then(|n| n.name.clone());
        out.push(InboxItem {
            instance: r.instance.clone(),
            task: r.task_id.clone(),
            workflow_id: r.workflow_id.clone(),
            node: r.node.clone(),
            node_name,
            stage: r.stage.clone(),
            project_id: project.as_ref().map(|p| p.id.clone()),
            project_name: project.as_ref().map(|p| p.name.clone()),
            assignee: r.assignee.as_deref().map(super::engine::assignee_label),
            department: r.department.clone(),
            colour: colour.to_string(),
            days_left: task.days_left,
            due: task
                .clock
                .as_ref()
                .and_then(|c| c.due)
                .map(|d| d.as_millisecond()),
            provisional: task.clock.as_ref().is_some_and(|c| c.provisional),
            priority: task.priority,
            green_channel: task.priority > 0,
            supervised: task.supervised,
        });
    }
    // Urgency: raised priority first (green channel), then red, yellow, green, then the earliest due.
    out.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(colour_rank(&b.colour).cmp(&colour_rank(&a.colour)))
            .then(a.due.unwrap_or(i64::MAX).cmp(&b.due.unwrap_or(i64::MAX)))
    });
    out.truncate(usize::try_from(limit).unwrap_or(200));
    Ok(out)
}

/// My inbox: open tasks assigned to me or my department's pool, most urgent first.
#[utoipa::path(get, path = "/api/tasks", params(InboxQuery), tag = "tasks",
    responses((status = 200, body = [InboxItem]), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn inbox(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<InboxQuery>,
) -> ApiResult<Json<Vec<InboxItem>>> {
    Ok(Json(inbox_items(&app, &caller.user, &q).await?))
}

// ---------- definitions ----------

#[derive(Debug, Serialize, ToSchema)]
pub struct DefinitionSummary {
    pub id: String,
    pub name: String,
    pub latest_version: i64,
}

/// Workflows and their latest version.
#[utoipa::path(get, path = "/api/definitions", tag = "definitions",
    responses((status = 200, body = [DefinitionSummary]), (status = 401, body = ErrorBody)))]
pub async fn list_definitions(
    State(app): State<App>,
    _caller: Caller,
) -> ApiResult<Json<Vec<DefinitionSummary>>> {
    let mut out = Vec::new();
    for id in app.catalog.workflow_ids() {
        if let Some((v, d)) = app.catalog.latest(&app.db, &id).await? {
            out.push(DefinitionSummary {
                id,
                name: d.workflow.name.clone(),
                latest_version: v,
            });
        }
    }
    Ok(Json(out))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationResult {
    pub valid: bool,
    pub workflow_id: Option<String>,
    /// Every problem, each with `code`, `severity`, `message`, `line`, `col`, `help`.
    #[schema(value_type = Vec<Object>)]
    pub diagnostics: Vec<Diagnostic>,
}

fn yaml_text(body: &Bytes) -> ApiResult<String> {
    if body.len() > 1 << 20 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "YAML over 1 MiB",
        ));
    }
    String::from_utf8(body.to_vec()).map_err(|_| ApiError::invalid("the YAML must be UTF-8"))
}

pub fn validation_failed(diags: &[Diagnostic]) -> ApiError {
    let first = diags
        .first()
        .map(|d| format!("line {}:{}: {}", d.line, d.col, d.message))
        .unwrap_or_default();
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        format!("{} problem(s); first at {first}", diags.len()),
    )
    .with_details(serde_json::json!({ "diagnostics": diags }))
}

/// Check a workflow YAML (the request body) without publishing it.
#[utoipa::path(post, path = "/api/definitions/validate", tag = "definitions",
    request_body(content = String, content_type = "application/yaml"),
    responses((status = 200, body = ValidationResult), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn validate_definition(
    State(app): State<App>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<ValidationResult>> {
    if !policy::can_validate(&caller.user) {
        return Err(ApiError::forbidden("only policy staff work on definitions"));
    }
    let yaml = yaml_text(&body)?;
    match app.catalog.check(&yaml) {
        Ok(def) => Ok(Json(ValidationResult {
            valid: true,
            workflow_id: Some(def.id().to_string()),
            diagnostics: shenpi_engine::validate::validate(&def.workflow, &app.catalog.ctx),
        })),
        Err(diags) => Err(validation_failed(&diags)),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    pub workflow_id: String,
    pub version: i64,
}

/// Publish a workflow YAML (the body) as its next version. Policy staff only.
#[utoipa::path(post, path = "/api/definitions", tag = "definitions",
    request_body(content = String, content_type = "application/yaml"),
    responses((status = 201, body = Published), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn publish_definition(
    State(app): State<App>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Published>)> {
    if !policy::can_publish(&caller.user) {
        return Err(ApiError::forbidden("only policy staff publish definitions"));
    }
    let yaml = yaml_text(&body)?;
    let p = publish_yaml(&app, &caller.user, caller.remote.clone(), &yaml).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

pub async fn publish_yaml(
    app: &App,
    user: &User,
    remote: Option<String>,
    yaml: &str,
) -> ApiResult<Published> {
    match app.catalog.publish(&app.db, yaml, app.now()).await? {
        Ok((id, version)) => {
            app.context(&id, version).await?;
            app.retry_refused_timers().await;
            app.audit(
                &user.name,
                remote,
                "publish",
                None,
                &format!("{id}@{version}"),
            );
            Ok(Published {
                workflow_id: id,
                version,
            })
        }
        Err(diags) => Err(validation_failed(&diags)),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: i64,
    pub hash: String,
    pub published_at: i64,
}

/// Published versions of a workflow.
#[utoipa::path(get, path = "/api/definitions/{id}/versions", tag = "definitions",
    responses((status = 200, body = [VersionInfo]), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(app): State<App>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<VersionInfo>>> {
    let v = app
        .accounts
        .versions(&id)
        .await
        .map_err(ApiError::internal)?;
    if v.is_empty() {
        return Err(ApiError::not_found(format!("no workflow `{id}`")));
    }
    Ok(Json(
        v.into_iter()
            .map(|(version, hash, published_at)| VersionInfo {
                version,
                hash,
                published_at,
            })
            .collect(),
    ))
}

/// The YAML of one version.
#[utoipa::path(get, path = "/api/definitions/{id}/versions/{version}", tag = "definitions",
    responses((status = 200, body = String, content_type = "application/yaml"), (status = 404, body = ErrorBody)))]
pub async fn get_version(
    State(app): State<App>,
    _caller: Caller,
    Path((id, version)): Path<(String, i64)>,
) -> ApiResult<Response> {
    use shenpi_adapters::store::DefinitionStore;
    let row = app
        .db
        .definition(&id, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no version {id}@{version}")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        row.yaml,
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DiffQuery {
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiffResult {
    pub from: i64,
    pub to: i64,
    /// Unified diff of the YAML texts.
    pub diff: String,
}

pub async fn diff_text(app: &App, id: &str, from: i64, to: i64) -> ApiResult<String> {
    use shenpi_adapters::store::DefinitionStore;
    let a = app
        .db
        .definition(id, from)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no version {id}@{from}")))?;
    let b = app
        .db
        .definition(id, to)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no version {id}@{to}")))?;
    Ok(similar::TextDiff::from_lines(&a.yaml, &b.yaml)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{id}@{from}"), &format!("{id}@{to}"))
        .to_string())
}

/// A unified diff between two versions.
#[utoipa::path(get, path = "/api/definitions/{id}/diff", params(DiffQuery), tag = "definitions",
    responses((status = 200, body = DiffResult), (status = 404, body = ErrorBody)))]
pub async fn diff_versions(
    State(app): State<App>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<DiffResult>> {
    let diff = diff_text(&app, &id, q.from, q.to).await?;
    Ok(Json(DiffResult {
        from: q.from,
        to: q.to,
        diff,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DiagramQuery {
    pub version: Option<i64>,
    /// `svg` (default), `mermaid` or `dot`.
    pub format: Option<String>,
}

/// The workflow diagram: SVG drawn by the server, or Mermaid / DOT text.
#[utoipa::path(get, path = "/api/definitions/{id}/diagram", params(DiagramQuery), tag = "definitions",
    responses((status = 200, description = "image/svg+xml or text"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn diagram(
    State(app): State<App>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DiagramQuery>,
) -> ApiResult<Response> {
    let def = match q.version {
        Some(v) => app.catalog.definition(&app.db, &id, v).await?,
        None => app.catalog.latest(&app.db, &id).await?.map(|(_, d)| d),
    }
    .ok_or_else(|| ApiError::not_found(format!("no workflow `{id}`")))?;
    render_diagram(&def, q.format.as_deref(), &Highlight::NONE)
}

pub fn render_diagram(
    def: &shenpi_engine::compile::Definition,
    format: Option<&str>,
    h: &Highlight<'_>,
) -> ApiResult<Response> {
    match format.unwrap_or("svg") {
        "svg" => Ok((
            [(header::CONTENT_TYPE, "image/svg+xml")],
            svg::render(def, h),
        )
            .into_response()),
        "mermaid" => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            diagram::render(def, diagram::Format::Mermaid, h),
        )
            .into_response()),
        "dot" => Ok((
            [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
            diagram::render(def, diagram::Format::Dot, h),
        )
            .into_response()),
        other => Err(ApiError::invalid(format!(
            "format `{other}`: use svg, mermaid or dot"
        ))),
    }
}

/// Current and passed nodes of an instance, for highlighting.
pub fn highlight_of(st: &runtime::InstanceState) -> (Vec<String>, Vec<String>) {
    let mut current: Vec<String> = st.open_tasks().map(|t| t.spec.node.to_string()).collect();
    if current.is_empty()
        && let Some(a) = &st.at
    {
        current.push(a.to_string());
    }
    let mut done: Vec<String> = st
        .tasks
        .iter()
        .filter(|t| !t.is_open())
        .map(|t| t.spec.node.to_string())
        .collect();
    done.sort();
    done.dedup();
    current.sort();
    current.dedup();
    (current, done)
}

/// The instance's diagram with current nodes highlighted and passed ones marked.
#[utoipa::path(get, path = "/api/instances/{id}/diagram", params(DiagramQuery), tag = "instances",
    responses((status = 200, description = "image/svg+xml or text"), (status = 404, body = ErrorBody)))]
pub async fn instance_diagram(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DiagramQuery>,
) -> ApiResult<Response> {
    let detail_check = instance_detail(&app, &caller.user, &id).await;
    detail_check?;
    let (_, st, _, ctx) = app
        .instance(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance `{id}`")))?;
    let (current, done) = highlight_of(&st);
    let c: Vec<&str> = current.iter().map(String::as_str).collect();
    let d: Vec<&str> = done.iter().map(String::as_str).collect();
    render_diagram(
        &ctx.def,
        q.format.as_deref(),
        &Highlight {
            current: &c,
            done: &d,
        },
    )
}

// ---------- dashboard, reports, outbox ----------

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardData {
    #[schema(value_type = Vec<Object>)]
    pub by_colour: Vec<(String, i64)>,
    #[schema(value_type = Vec<Object>)]
    pub by_stage: Vec<(String, i64)>,
    #[schema(value_type = Vec<Object>)]
    pub by_department: Vec<(String, i64)>,
    #[schema(value_type = Vec<Object>)]
    pub by_status: Vec<(String, i64)>,
    #[schema(value_type = Vec<Object>)]
    pub overdue: Vec<InboxRow>,
    #[schema(value_type = Vec<Object>)]
    pub supervised: Vec<InboxRow>,
    /// 容缺 commitments due in the next 7 days.
    #[schema(value_type = Vec<Object>)]
    pub promises_due: Vec<shenpi_adapters::store::PromiseRow>,
    /// (time, green, yellow, red) snapshots of open tasks by colour.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<(i64, i64, i64, i64)>,
}

pub async fn dashboard_data(app: &App) -> ApiResult<DashboardData> {
    let now = app.now();
    let d = app.db.dashboard().await?;
    let count = |c: &str| {
        d.by_colour
            .iter()
            .find(|(k, _)| k == c)
            .map_or(0, |(_, n)| *n)
    };
    // One snapshot per 10 minutes at most, taken when someone looks or the snapshot task runs.
    let slot = now - now.rem_euclid(600_000);
    app.accounts
        .snapshot_colours(slot, count("green"), count("yellow"), count("red"))
        .await
        .map_err(ApiError::internal)?;
    let history = app
        .accounts
        .colour_history(now - 30 * 86_400_000)
        .await
        .map_err(ApiError::internal)?;
    Ok(DashboardData {
        by_colour: d.by_colour,
        by_stage: d.by_stage,
        by_department: d.by_department,
        by_status: d.by_status,
        overdue: app.db.overdue(now, 100).await?,
        supervised: app.db.supervised(100).await?,
        promises_due: app.db.promises_due(now, now + 7 * 86_400_000).await?,
        history,
    })
}

/// Counts by colour, stage and department; overdue tasks; 挂牌督办; commitments due soon.
#[utoipa::path(get, path = "/api/dashboard", tag = "reports",
    responses((status = 200, body = DashboardData), (status = 403, body = ErrorBody)))]
pub async fn dashboard(State(app): State<App>, caller: Caller) -> ApiResult<Json<DashboardData>> {
    if !policy::can_see_dashboard(&caller.user) {
        return Err(ApiError::forbidden("the dashboard is for supervisors"));
    }
    Ok(Json(dashboard_data(&app).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RunReport {
    /// `weekly` (周统计), `half_monthly` (半月通报) or `monthly` (月调度).
    pub kind: String,
}

/// Run a report now; it is stored and listed with the past ones.
#[utoipa::path(post, path = "/api/reports", tag = "reports", request_body = RunReport,
    responses((status = 201, body = ReportRun), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn run_report(
    State(app): State<App>,
    caller: Caller,
    Json(req): Json<RunReport>,
) -> ApiResult<(StatusCode, Json<ReportRun>)> {
    if !policy::can_supervise(&caller.user) {
        return Err(ApiError::forbidden("reports are for supervisors"));
    }
    if !["weekly", "half_monthly", "monthly"].contains(&req.kind.as_str()) {
        return Err(ApiError::invalid(
            "kind must be weekly, half_monthly or monthly",
        ));
    }
    let d = dashboard_data(&app).await?;
    let run = ReportRun {
        id: format!("R{}", random_hex(6).map_err(ApiError::internal)?),
        kind: req.kind,
        created_at: app.now(),
        created_by: caller.user.name.clone(),
        body: serde_json::json!({
            "by_colour": d.by_colour, "by_stage": d.by_stage, "by_department": d.by_department,
            "overdue": d.overdue, "supervised": d.supervised, "promises_due": d.promises_due,
        }),
    };
    app.accounts
        .save_report(&run)
        .await
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(run)))
}

/// Past report runs, newest first.
#[utoipa::path(get, path = "/api/reports", tag = "reports",
    responses((status = 200, body = [ReportRun]), (status = 403, body = ErrorBody)))]
pub async fn list_reports(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Json<Vec<ReportRun>>> {
    if !policy::can_supervise(&caller.user) {
        return Err(ApiError::forbidden("reports are for supervisors"));
    }
    Ok(Json(
        app.accounts
            .reports(100)
            .await
            .map_err(ApiError::internal)?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    pub id: String,
    pub instance: Option<String>,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub tries: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Notifications that failed every retry (dead letters), for operators.
#[utoipa::path(get, path = "/api/outbox/dead", tag = "outbox",
    responses((status = 200, body = [DeadLetter]), (status = 403, body = ErrorBody)))]
pub async fn dead_letters(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Json<Vec<DeadLetter>>> {
    if !policy::can_supervise(&caller.user) {
        return Err(ApiError::forbidden(
            "the outbox is for supervisors and admins",
        ));
    }
    let rows = app.db.outbox_in_state("dead", 500).await?;
    Ok(Json(
        rows.into_iter()
            .map(|m| DeadLetter {
                id: m.row.id,
                instance: m.row.instance,
                channel: m.row.channel,
                recipient: m.row.recipient,
                template: m.row.template,
                tries: m.tries,
                last_error: m.last_error,
                created_at: m.row.created_at,
            })
            .collect(),
    ))
}

/// Keeps handler types in one place for the router.
pub type Shared = Arc<super::state::AppState>;
