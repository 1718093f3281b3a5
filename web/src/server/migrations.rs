//! Migrations (迁移) of running projects from one version of a workflow to another: the API
//! (`/api/definitions/{id}/migrations`: a dry run, an execution, the runs before) and the page
//! of the policy staff (choose the versions, map the nodes and stages the new version no longer
//! has with pickers showing their names, read the dry-run table, confirm).
//!
//! Whether an instance can move, and what moving does, is the engine's to say
//! (`shenpi_engine::runtime::migrate`); the run through the durable path is
//! `shenpi_adapters::migrate`. This module checks who asks, reads the request, and words the
//! answers in Chinese with the workflow's names.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use shenpi_adapters::migrate::{
    self as run, InstanceCheck, InstanceResult, MigrateError, MigrationAsk, Outcome, Seen,
};
use shenpi_adapters::store::DefinitionStore;
use shenpi_adapters::store::version_migrations::MigrationRow;
use shenpi_engine::compile::Definition;
use shenpi_engine::limit::{Limit, Unit};
use shenpi_engine::runtime::migrate::{Blocker, Change, Effect, Mapping, Subject, TimerChange};
use shenpi_engine::runtime::{Actor, TimerKind, policy as engine_policy};
use utoipa::{IntoParams, ToSchema};

use super::accounts::User;
use super::auth::{Caller, PageUser};
use super::chrome::{Flash, datetime, day_of, due_date, fail, page};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract;
use super::form::{self, Fields, hidden};
use super::names::WorkflowNames;
use super::refusals::{Names, blocker_zh, limit_zh, mapping_problem_zh, rejection_message_zh};
use super::routes::{Routes, operation};
use super::state::App;

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(run_migration))
        .api(operation!(list_migrations))
        .api(operation!(get_migration))
        .page(
            "/workflows/{id}/migrations",
            get(page_form).post(page_submit),
        )
}

/// Who may move running projects: the one rule of the engine.
fn may_migrate(u: &User) -> bool {
    engine_policy::may_migrate(&u.actor())
}

const FORBIDDEN: &str = "只有政策法规人员可以迁移运行中的项目";

// ---------------------------------------------------------------------------------------------
// Words

fn amount_zh(n: u32, unit: Unit) -> String {
    match unit {
        Unit::WorkingDays => format!("{n} 个工作日"),
        Unit::Days => format!("{n} 个自然日"),
        Unit::Hours => format!("{n} 小时"),
    }
}

fn lim(l: &Limit) -> String {
    limit_zh(&l.to_string())
}

/// What a change is about, in the new version's names.
fn subject_zh(s: &Subject, def: &Definition) -> String {
    let n = WorkflowNames(def);
    match s {
        Subject::Task {
            node, branch, kind, ..
        } => {
            use shenpi_engine::runtime::event::TaskKind as K;
            match (branch, kind) {
                (Some(b), _) => {
                    let dept = def
                        .plan
                        .nodes
                        .iter()
                        .find(|x| x.id == *node)
                        .and_then(|x| x.branches.iter().find(|y| y.id == *b))
                        .map(|y| n.department(&y.department))
                        .unwrap_or_else(|| b.to_string());
                    format!("并联审批「{}」中{dept}的任务", n.node(node))
                }
                (None, K::Verify) => format!("环节「{}」的容缺材料核验任务", n.node(node)),
                (None, K::Cosign) => format!("环节「{}」的会签任务", n.node(node)),
                (None, K::Work) => format!("环节「{}」的任务", n.node(node)),
            }
        }
        Subject::Step { node, .. } => format!("并联审批「{}」的总时限", n.node(node)),
        Subject::Promise { material, .. } => format!("承诺补交「{}」", n.material(material)),
        Subject::Stage { stage, .. } => format!("阶段「{}」", n.stage(stage)),
        Subject::Element { stage, element, .. } => {
            format!(
                "阶段「{}」要素「{}」的期限",
                n.stage(stage),
                n.element(element)
            )
        }
        Subject::Node { node } => format!("环节「{}」", n.node(node)),
    }
}

fn effect_zh(e: &Effect) -> String {
    match e {
        Effect::Kept {
            limit: Some(l),
            used: Some(u),
        } => format!("保持，时限 {}，已用 {}", lim(l), amount_zh(*u, l.unit)),
        Effect::Kept { .. } => "保持不变".to_string(),
        Effect::Relimited {
            from: Some(f),
            to: Some(t),
            used,
        } => format!(
            "时限由 {}改为 {}，已用的 {}保留",
            lim(f),
            lim(t),
            amount_zh(*used, f.unit)
        ),
        Effect::Relimited {
            from: Some(f),
            to: None,
            used,
        } => format!(
            "新版本不再限时（原时限 {}，已用 {}）",
            lim(f),
            amount_zh(*used, f.unit)
        ),
        Effect::Relimited {
            from: None,
            to: Some(t),
            ..
        } => format!("新版本设时限 {}，自迁移时起算", lim(t)),
        Effect::Relimited { .. } => "保持不变".to_string(),
        Effect::Opened { limit: Some(l) } => format!("新开，时限 {}", lim(l)),
        Effect::Opened { limit: None } => "新开，不限时".to_string(),
        Effect::Cancelled => "取消".to_string(),
        Effect::Renamed { from } => format!("沿用，原编号「{from}」"),
    }
}

fn change_zh(c: &Change, def: &Definition) -> String {
    format!("{}：{}", subject_zh(&c.subject, def), effect_zh(&c.effect))
}

fn timer_zh(t: &TimerChange) -> String {
    let what = super::timers::purpose(&t.kind);
    let day: fn(i64) -> String = match &t.kind {
        TimerKind::Yellow { .. } => day_of,
        _ => due_date,
    };
    match (t.old_due, t.new_due) {
        (Some(o), Some(n)) => format!(
            "{what}由 {} 改为 {}",
            day(o.as_millisecond()),
            day(n.as_millisecond())
        ),
        (Some(o), None) => format!("取消{what}（原 {}）", day(o.as_millisecond())),
        (None, Some(n)) => format!("新设{what}：{}", day(n.as_millisecond())),
        (None, None) => what,
    }
}

// ---------------------------------------------------------------------------------------------
// API

/// What a migration is asked to do.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MigrationBody {
    /// The version the instances run on now.
    pub from: i64,
    /// The version to move them to.
    pub to: i64,
    /// The workflow of `to`, if given: it must be the workflow of the path (a migration between
    /// different workflows is refused, `different_workflow`).
    #[serde(default)]
    pub to_workflow: Option<String>,
    /// Old node and stage ids → new ones: `{"nodes": {"old": "new"}, "stages": {...}}`; an id
    /// not named keeps its name.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub mapping: Mapping,
    /// Only these instances (default: every running instance on `from`).
    #[serde(default)]
    pub instances: Option<Vec<String>>,
    /// Only say what would happen (`true`), or move the instances (`false`).
    #[serde(default)]
    pub dry_run: bool,
    /// With an execution: what the dry run showed, instance → `{version, can_move}`. Only the
    /// instances shown as movable are moved; one that changed since is re-checked and reported.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub seen: Option<HashMap<String, Seen>>,
}

/// Something said about an instance, with its Chinese sentence.
#[derive(Debug, Serialize, ToSchema)]
pub struct Said {
    pub code: String,
    pub message: String,
    /// The typed item, as the engine gives it.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// The dry run of one instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunRow {
    pub instance: String,
    /// The project's name.
    pub project: String,
    /// The instance's version (events recorded) when checked: send it back in `seen`.
    pub version: i64,
    pub can_move: bool,
    pub blockers: Vec<Said>,
    pub changes: Vec<Said>,
    pub timers: Vec<Said>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DryRun {
    pub workflow: String,
    pub from: i64,
    pub to: i64,
    pub movable: usize,
    pub blocked: usize,
    pub instances: Vec<DryRunRow>,
}

/// One instance after an execution.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultRow {
    pub instance: String,
    pub project: String,
    /// `moved`, `blocked`, `unconfirmed` (movable, but the dry run did not show it so) or
    /// `failed`.
    pub outcome: String,
    /// What happened, in Chinese.
    pub message: String,
    pub blockers: Vec<Said>,
    /// The instance changed since the dry run: what the dry run showed, and the re-check's verdict.
    pub changed_since_dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub dry_run: Option<Seen>,
    pub can_move: bool,
    pub events: i64,
}

/// A migration run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunInfo {
    pub id: String,
    pub workflow: String,
    pub from: i64,
    pub to: i64,
    #[schema(value_type = Object)]
    pub mapping: serde_json::Value,
    pub requested_by: String,
    pub started_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    pub moved: i64,
    /// Blocked or not confirmed by the dry run: untouched.
    pub blocked: i64,
    pub failed: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<ResultRow>>,
}

async fn project_name(app: &App, instance: &str) -> String {
    app.project_of(instance)
        .await
        .ok()
        .flatten()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| instance.to_string())
}

fn said_blocker(b: &Blocker, old: &Definition, new: &Definition) -> Said {
    Said {
        code: b.code().to_string(),
        message: blocker_zh(b, &Names::of(old, None), &Names::of(new, None)),
        detail: serde_json::to_value(b).unwrap_or_default(),
    }
}

async fn versions_of(
    app: &App,
    workflow: &str,
    from: i64,
    to: i64,
) -> Result<(std::sync::Arc<Definition>, std::sync::Arc<Definition>), ApiError> {
    let a = run::context(&app.db, &app.machine, workflow, from)
        .await
        .map_err(migrate_error)?;
    let b = run::context(&app.db, &app.machine, workflow, to)
        .await
        .map_err(migrate_error)?;
    Ok((a.def.clone(), b.def.clone()))
}

/// Why a migration could not run, as the API answers it; nothing was run.
pub fn migrate_error(e: MigrateError) -> ApiError {
    match e {
        MigrateError::NoVersion { workflow, version } => {
            ApiError::not_found(format!("流程「{workflow}」没有版本 v{version}。"))
        }
        MigrateError::Mapping(problems) => {
            let names = Names::default();
            mapping_refusal(&problems, &names, &names)
        }
        MigrateError::Compile(v, e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("版本 v{v} 在本服务器上无法编译：{e}"),
        ),
        MigrateError::Store(e) => ApiError::internal(e),
    }
}

/// The mapping's problems, worded with both versions' names (the mapping is checked before
/// anything runs, so these are located errors on the request).
async fn mapping_error(app: &App, ask: &MigrationAsk, e: MigrateError) -> ApiError {
    let MigrateError::Mapping(problems) = &e else {
        return migrate_error(e);
    };
    let to_wf = ask.to_workflow.as_deref().unwrap_or(&ask.workflow);
    let (Ok(a), Ok(b)) = (
        run::context(&app.db, &app.machine, &ask.workflow, ask.from).await,
        run::context(&app.db, &app.machine, to_wf, ask.to).await,
    ) else {
        return migrate_error(e);
    };
    let (old, new) = (Names::of(&a.def, None), Names::of(&b.def, None));
    mapping_refusal(problems, &old, &new)
}

/// 422 `invalid_mapping`: each problem located (`at`) and worded with the two versions' names.
fn mapping_refusal(
    problems: &[shenpi_engine::runtime::migrate::MappingProblem],
    old: &Names<'_>,
    new: &Names<'_>,
) -> ApiError {
    let worded: Vec<(String, String)> = problems
        .iter()
        .map(|p| (p.at(), mapping_problem_zh(p, old, new)))
        .collect();
    let items: Vec<serde_json::Value> = problems
        .iter()
        .zip(&worded)
        .map(|(p, (at, message))| {
            serde_json::json!({ "at": at, "code": p.code(), "message": message })
        })
        .collect();
    let message = worded
        .iter()
        .map(|(at, m)| format!("{at}：{m}"))
        .collect::<Vec<_>>()
        .join(" ");
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_mapping",
        format!("迁移请求有误，未执行：{message}"),
    )
    .with_details(serde_json::json!({ "problems": items }))
}

/// Project names of instances, for the tables.
async fn project_names(app: &App, ids: impl Iterator<Item = &str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for id in ids {
        out.insert(id.to_string(), project_name(app, id).await);
    }
    out
}

/// The dry run, worded.
pub async fn dry_run(app: &App, ask: &MigrationAsk, actor: &Actor) -> ApiResult<DryRun> {
    let checks: Vec<InstanceCheck> =
        match run::dry_run(&app.db, &app.machine, ask, actor, app.now()).await {
            Ok(c) => c,
            Err(e) => return Err(mapping_error(app, ask, e).await),
        };
    let (a, b) = versions_of(app, &ask.workflow, ask.from, ask.to).await?;
    let names = project_names(app, checks.iter().map(|c| c.instance.as_str())).await;
    Ok(dry_run_table(ask, checks, &a, &b, &names))
}

/// The dry run's checks in Chinese, with the old (`a`) and new (`b`) version's names; `projects`
/// names the instances.
pub fn dry_run_table(
    ask: &MigrationAsk,
    checks: Vec<InstanceCheck>,
    a: &Definition,
    b: &Definition,
    projects: &HashMap<String, String>,
) -> DryRun {
    let mut rows = Vec::new();
    for c in checks {
        let r = &c.report;
        let mut blockers: Vec<Said> = r.blockers.iter().map(|x| said_blocker(x, a, b)).collect();
        if let Some(refused) = &r.refused
            && r.blockers.is_empty()
        {
            blockers.push(Said {
                code: refused.code().to_string(),
                message: rejection_message_zh(refused, &Names::of(b, None)),
                detail: serde_json::to_value(refused).unwrap_or_default(),
            });
        }
        rows.push(DryRunRow {
            project: projects
                .get(&c.instance)
                .cloned()
                .unwrap_or_else(|| c.instance.clone()),
            instance: c.instance.clone(),
            version: c.version,
            can_move: r.can_move,
            blockers,
            changes: r
                .changes
                .iter()
                .map(|x| Said {
                    code: "change".into(),
                    message: change_zh(x, b),
                    detail: serde_json::to_value(x).unwrap_or_default(),
                })
                .collect(),
            timers: r
                .timers
                .iter()
                .map(|x| Said {
                    code: "timer".into(),
                    message: timer_zh(x),
                    detail: serde_json::to_value(x).unwrap_or_default(),
                })
                .collect(),
        });
    }
    DryRun {
        workflow: ask.workflow.clone(),
        from: ask.from,
        to: ask.to,
        movable: rows.iter().filter(|r| r.can_move).count(),
        blocked: rows.iter().filter(|r| !r.can_move).count(),
        instances: rows,
    }
}

fn outcome_zh(r: &InstanceResult) -> (&'static str, &'static str) {
    match r.outcome {
        Outcome::Moved => ("moved", "已迁移"),
        Outcome::Blocked => ("blocked", "不能迁移，未改动"),
        Outcome::Unconfirmed => (
            "unconfirmed",
            "可以迁移，但试运行时未列为可迁移，未改动（请重新试运行后确认）",
        ),
        Outcome::Failed => ("failed", "迁移失败，未改动（可重新执行）"),
    }
}

async fn result_rows(app: &App, row: &MigrationRow, results: &[InstanceResult]) -> Vec<ResultRow> {
    let defs = versions_of(app, &row.workflow_id, row.from_version, row.to_version)
        .await
        .ok();
    let names = project_names(app, results.iter().map(|r| r.instance.as_str())).await;
    result_table(
        results,
        defs.as_ref().map(|(a, b)| (a.as_ref(), b.as_ref())),
        &names,
    )
}

/// What an execution did to each instance, in Chinese (`defs`: the old and new version).
pub fn result_table(
    results: &[InstanceResult],
    defs: Option<(&Definition, &Definition)>,
    projects: &HashMap<String, String>,
) -> Vec<ResultRow> {
    let mut out = Vec::new();
    for r in results {
        let (code, text) = outcome_zh(r);
        let blockers: Vec<Said> = match defs {
            Some((a, b)) => r.blockers.iter().map(|x| said_blocker(x, a, b)).collect(),
            None => Vec::new(),
        };
        let mut message = text.to_string();
        if r.changed_since_dry_run {
            message.push_str(match (r.dry_run.map(|d| d.can_move), r.can_move) {
                (None, _) => "；试运行时不在列表中",
                (Some(true), false) => "；试运行后项目有变化：试运行时可迁移，复核后不能迁移",
                (Some(false), true) => "；试运行后项目有变化：试运行时不能迁移，复核后可迁移",
                _ => "；试运行后项目有变化，已复核",
            });
        }
        if let Some(e) = &r.error
            && blockers.is_empty()
            && r.outcome == Outcome::Failed
        {
            message.push_str(&format!("（{e}）"));
        }
        out.push(ResultRow {
            project: projects
                .get(&r.instance)
                .cloned()
                .unwrap_or_else(|| r.instance.clone()),
            instance: r.instance.clone(),
            outcome: code.to_string(),
            message,
            blockers,
            changed_since_dry_run: r.changed_since_dry_run,
            dry_run: r.dry_run,
            can_move: r.can_move,
            events: r.events,
        });
    }
    out
}

async fn run_info(app: &App, row: MigrationRow, with_instances: bool) -> RunInfo {
    let instances = if with_instances {
        let results: Vec<InstanceResult> = row
            .result
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        Some(result_rows(app, &row, &results).await)
    } else {
        None
    };
    RunInfo {
        mapping: serde_json::from_str(&row.mapping).unwrap_or_default(),
        id: row.id,
        workflow: row.workflow_id,
        from: row.from_version,
        to: row.to_version,
        requested_by: row.requested_by,
        started_at: row.started_at,
        finished_at: row.finished_at,
        moved: row.moved,
        blocked: row.blocked,
        failed: row.failed,
        instances,
    }
}

/// Runs a migration as `id`, audited.
pub async fn execute(
    app: &App,
    ask: &MigrationAsk,
    user: &User,
    remote: Option<String>,
    id: &str,
    seen: Option<&HashMap<String, Seen>>,
) -> ApiResult<RunInfo> {
    let actor = user.actor();
    let (row, results) = match run::execute(
        &app.bus,
        &app.db,
        &app.machine,
        ask,
        &actor,
        id,
        seen,
        app.now(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Err(mapping_error(app, ask, e).await),
    };
    app.audit(
        &user.name,
        remote,
        "migrate",
        None,
        &format!(
            "{}@{}→{} run {id}: {} moved, {} not moved, {} failed",
            ask.workflow, ask.from, ask.to, row.moved, row.blocked, row.failed
        ),
    )
    .await;
    let mut info = run_info(app, row.clone(), false).await;
    info.instances = Some(result_rows(app, &row, &results).await);
    Ok(info)
}

fn run_id(headers: &HeaderMap, user: &User) -> String {
    match headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        // The same key from the same user is the same run, asked again.
        Some(k) => format!("{}:{k}", user.name),
        None => super::accounts::random_hex(12).unwrap_or_default(),
    }
}

/// A migration of running instances from version `from` of the workflow to version `to`
/// (policy staff): with `dry_run` what would happen to each (can move or why not; what moving
/// does to each open task, step, promise, stage and element, and to its timers), else the
/// execution (one engine command per instance through the durable path; the same
/// `Idempotency-Key` finishes the same run). Bad input (an unknown node, another workflow) is
/// refused with located `details.problems`; nothing is run.
#[utoipa::path(post, path = "/api/definitions/{id}/migrations", params(("id" = String, Path, description = "the workflow id")), tag = "definitions",
    request_body = MigrationBody,
    responses((status = 200, description = "dry run", body = DryRun),
        (status = 201, description = "executed: the run and each instance's outcome", body = RunInfo),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "`invalid_mapping`: `details.problems[]` with `at`, `code`, `message`", body = ErrorBody)))]
pub async fn run_migration(
    State(app): State<App>,
    caller: Caller,
    extract::Path(id): extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if !may_migrate(&caller.user) {
        return Err(ApiError::forbidden(FORBIDDEN));
    }
    extract::require_json(&headers)?;
    let b: MigrationBody = extract::parse_json(&body)?;
    let ask = MigrationAsk {
        workflow: id,
        from: b.from,
        to: b.to,
        to_workflow: b.to_workflow,
        mapping: b.mapping,
        instances: b.instances,
    };
    if b.dry_run {
        let d = dry_run(&app, &ask, &caller.user.actor()).await?;
        return Ok(Json(d).into_response());
    }
    let run = run_id(&headers, &caller.user);
    let info = execute(
        &app,
        &ask,
        &caller.user,
        caller.remote.clone(),
        &run,
        b.seen.as_ref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many runs, the newest first (default 50).
    pub limit: Option<i64>,
}

/// The migration runs of a workflow, the newest first (staff).
#[utoipa::path(get, path = "/api/definitions/{id}/migrations", params(("id" = String, Path, description = "the workflow id"), ListQuery), tag = "definitions",
    responses((status = 200, body = [RunInfo]), (status = 403, body = ErrorBody)))]
pub async fn list_migrations(
    State(app): State<App>,
    caller: Caller,
    extract::Path(id): extract::Path<String>,
    extract::Query(q): extract::Query<ListQuery>,
) -> ApiResult<Json<Vec<RunInfo>>> {
    if !caller.user.is_staff() {
        return Err(ApiError::forbidden("迁移记录仅限工作人员查看"));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let mut out = Vec::new();
    for r in app.db.migrations_of(&id, limit).await? {
        out.push(run_info(&app, r, false).await);
    }
    Ok(Json(out))
}

/// One migration run with what became of each instance (staff).
#[utoipa::path(get, path = "/api/definitions/{id}/migrations/{run}", params(("id" = String, Path, description = "the workflow id"), ("run" = String, Path, description = "the run id")), tag = "definitions",
    responses((status = 200, body = RunInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_migration(
    State(app): State<App>,
    caller: Caller,
    extract::Path((id, run)): extract::Path<(String, String)>,
) -> ApiResult<Json<RunInfo>> {
    if !caller.user.is_staff() {
        return Err(ApiError::forbidden("迁移记录仅限工作人员查看"));
    }
    let row = app
        .db
        .migration(&run)
        .await?
        .filter(|r| r.workflow_id == id)
        .ok_or_else(|| ApiError::not_found(format!("流程「{id}」没有迁移记录 {run}")))?;
    Ok(Json(run_info(&app, row, true).await))
}

// ---------------------------------------------------------------------------------------------
// The page

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// What the page posts: the versions, the mapping pickers (`map_old` = `node:ID` or `stage:ID`,
/// `map_new` = the chosen new id or empty, in the same order), the button, and for a
/// confirmation what the dry run showed.
#[derive(Debug, Deserialize)]
struct MigrationForm {
    #[serde(default, deserialize_with = "form::text")]
    from: Option<String>,
    #[serde(default, deserialize_with = "form::text")]
    to: Option<String>,
    #[serde(default, deserialize_with = "form::list")]
    map_old: Vec<String>,
    #[serde(default, deserialize_with = "form::list")]
    map_new: Vec<String>,
    /// `dry_run` (试运行) or `execute` (确认迁移).
    #[serde(default, deserialize_with = "form::text")]
    op: Option<String>,
    /// The dry run's `{instance: {version, can_move}}`, as JSON.
    #[serde(default, deserialize_with = "form::raw")]
    seen: String,
}

fn version_field(v: Option<&str>, field: &'static str) -> Result<i64, form::FormError> {
    v.and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| form::FormError::new(field, "请选择版本"))
}

impl MigrationForm {
    fn versions(&self) -> Result<(i64, i64), form::FormError> {
        Ok((
            version_field(self.from.as_deref(), "from")?,
            version_field(self.to.as_deref(), "to")?,
        ))
    }

    fn mapping(&self) -> Result<Mapping, form::FormError> {
        if self.map_old.len() != self.map_new.len() {
            return Err(form::FormError::new(
                "map_new",
                "节点对应关系不完整，请刷新页面",
            ));
        }
        let mut m = Mapping::default();
        for (old, new) in self.map_old.iter().zip(&self.map_new) {
            let new = new.trim();
            if new.is_empty() {
                continue;
            }
            match old.split_once(':') {
                Some(("node", id)) => {
                    m.nodes.insert(id.into(), new.into());
                }
                Some(("stage", id)) => {
                    m.stages.insert(id.into(), new.into());
                }
                _ => return Err(form::FormError::new("map_old", "节点对应关系无法读取")),
            }
        }
        Ok(m)
    }
}

fn node_label(def: &Definition, id: &str) -> String {
    let n = WorkflowNames(def).node(id);
    if n == id { n } else { format!("{n}（{id}）") }
}

fn stage_label(def: &Definition, id: &str) -> String {
    let n = WorkflowNames(def).stage(id);
    if n == id { n } else { format!("{n}（{id}）") }
}

/// The versions chooser, the mapping pickers for the nodes and stages `to` no longer has, and
/// the 试运行 button.
fn form_markup(
    user: &PageUser,
    id: &str,
    versions: &[i64],
    pair: Option<(i64, i64, &Definition, &Definition)>,
    mapping: &Mapping,
) -> Markup {
    let (from, to) = pair.map_or((None, None), |(f, t, _, _)| (Some(f), Some(t)));
    html! {
        form method="get" action={"/workflows/" (id) "/migrations"} id="choose-versions" {
            label { "迁出版本 " select name="from" { @for v in versions { option value=(v) selected[from == Some(*v)] { "v" (v) } } } }
            " → "
            label { "迁入版本 " select name="to" { @for v in versions { option value=(v) selected[to == Some(*v)] { "v" (v) } } } }
            " " button type="submit" { "选择版本" }
        }
        @if let Some((f, t, a, b)) = pair {
            form method="post" action={"/workflows/" (id) "/migrations"} id="migration-form" {
                (hidden(user))
                input type="hidden" name="from" value=(f);
                input type="hidden" name="to" value=(t);
                @let gone_nodes: Vec<&str> = a.workflow.nodes.iter().map(|n| n.id.value.as_str()).filter(|n| b.node_ix(n).is_none()).collect();
                @let gone_stages: Vec<&str> = a.workflow.stages.iter().map(|s| s.id.value.as_str()).filter(|s| b.plan.stage_ix(s).is_none()).collect();
                h2 { "节点对应关系" }
                @if gone_nodes.is_empty() && gone_stages.is_empty() {
                    p.hint { "v" (t) " 保留了 v" (f) " 的全部环节和阶段，同名环节、阶段自动对应，无需指定。" }
                } @else {
                    p.hint { "以下环节或阶段在 v" (t) " 中已不存在。请为仍停留其中的项目指定对应的新环节或新阶段；不指定的，停留其中的项目不能迁移。" }
                    table.mapping { thead { tr { th { "v" (f) " 中的" } th { "对应 v" (t) " 中的" } } }
                        tbody {
                            @for n in &gone_nodes { tr {
                                td { "环节 " (node_label(a, n)) input type="hidden" name="map_old" value={"node:" (n)}; }
                                td { select name="map_new" aria-label={"环节「" (WorkflowNames(a).node(n)) "」对应的新环节"} {
                                    option value="" { "（不对应）" }
                                    @for m in &b.workflow.nodes { option value=(m.id.value) selected[mapping.nodes.get(*n).is_some_and(|x| *x == m.id.value.as_str())] { (node_label(b, &m.id.value)) } }
                                } }
                            } }
                            @for s in &gone_stages { tr {
                                td { "阶段 " (stage_label(a, s)) input type="hidden" name="map_old" value={"stage:" (s)}; }
                                td { select name="map_new" aria-label={"阶段「" (WorkflowNames(a).stage(s)) "」对应的新阶段"} {
                                    option value="" { "（不对应）" }
                                    @for m in &b.workflow.stages { option value=(m.id.value) selected[mapping.stages.get(*s).is_some_and(|x| *x == m.id.value.as_str())] { (stage_label(b, &m.id.value)) } }
                                } }
                            } }
                        }
                    }
                }
                div.buttons { button type="submit" name="op" value="dry_run" id="btn-dry-run" { "试运行（不改动任何项目）" } }
            }
        }
    }
}

fn dry_run_markup(user: &PageUser, id: &str, d: &DryRun, mapping: &Mapping) -> Markup {
    let seen: HashMap<&str, Seen> = d
        .instances
        .iter()
        .map(|r| {
            (
                r.instance.as_str(),
                Seen {
                    version: r.version,
                    can_move: r.can_move,
                },
            )
        })
        .collect();
    let seen_json = serde_json::to_string(&seen).unwrap_or_default();
    html! {
        section id="dry-run" {
            h2 { "试运行结果：v" (d.from) " → v" (d.to) }
            p { "运行中的项目 " (d.instances.len()) " 个：可迁移 " strong { (d.movable) } " 个，不能迁移 " strong { (d.blocked) } " 个。试运行未改动任何项目。" }
            @if d.instances.is_empty() {
                p.hint { "v" (d.from) " 上没有运行中的项目。" }
            } @else {
                div.table-wrap { table.dry-run {
                    thead { tr { th { "项目" } th { "结论" } th { "迁移后的变化" } th { "定时提醒" } } }
                    tbody { @for r in &d.instances { tr class=(if r.can_move { "can-move" } else { "blocked" }) {
                        td { a href={"/instances/" (r.instance)} { (r.project) } }
                        td { @if r.can_move { span.badge.green { "可迁移" } } @else {
                            span.badge.red { "不能迁移" }
                            ul { @for b in &r.blockers { li { (b.message) } } }
                        } }
                        td { ul { @for c in &r.changes { li { (c.message) } } } }
                        td { @if r.timers.is_empty() { "不变" } @else { ul { @for t in &r.timers { li { (t.message) } } } } }
                    } } }
                } }
            }
            @if d.movable > 0 {
                form method="post" action={"/workflows/" (id) "/migrations"} id="confirm-form" {
                    (hidden(user))
                    input type="hidden" name="from" value=(d.from);
                    input type="hidden" name="to" value=(d.to);
                    @for (o, n) in &mapping.nodes { input type="hidden" name="map_old" value={"node:" (o)}; input type="hidden" name="map_new" value=(n); }
                    @for (o, n) in &mapping.stages { input type="hidden" name="map_old" value={"stage:" (o)}; input type="hidden" name="map_new" value=(n); }
                    input type="hidden" name="seen" value=(seen_json);
                    p { "确认后，上表中「可迁移」的 " (d.movable) " 个项目迁移至 v" (d.to) "；其余项目保持原版本不变。试运行后有变化的项目会在执行时复核。" }
                    button type="submit" name="op" value="execute" id="btn-execute" { "确认迁移 " (d.movable) " 个项目" }
                }
            }
        }
    }
}

fn result_markup(info: &RunInfo) -> Markup {
    html! {
        section id="migration-result" {
            h2 { "迁移结果：v" (info.from) " → v" (info.to) }
            p { "已迁移 " strong { (info.moved) } " 个，未改动 " strong { (info.blocked) } " 个，失败 " strong { (info.failed) } " 个。" }
            @if let Some(rows) = &info.instances { @if !rows.is_empty() {
                div.table-wrap { table.results {
                    thead { tr { th { "项目" } th { "结果" } } }
                    tbody { @for r in rows { tr class=(r.outcome) {
                        td { a href={"/instances/" (r.instance)} { (r.project) } }
                        td { (r.message) @if !r.blockers.is_empty() { ul { @for b in &r.blockers { li { (b.message) } } } } }
                    } } }
                } }
            } }
        }
    }
}

async fn runs_markup(app: &App, id: &str) -> Markup {
    let runs = app.db.migrations_of(id, 20).await.unwrap_or_default();
    html! {
        section id="past-runs" {
            h2 { "迁移记录" }
            @if runs.is_empty() { p.hint { "尚无迁移记录。" } } @else {
                div.table-wrap { table.runs {
                    thead { tr { th { "时间" } th { "版本" } th { "操作人" } th { "已迁移" } th { "未改动" } th { "失败" } } }
                    tbody { @for r in &runs { tr {
                        td { (datetime(r.started_at)) } td { "v" (r.from_version) " → v" (r.to_version) }
                        td { (r.requested_by) } td { (r.moved) } td { (r.blocked) } td { (r.failed) }
                    } } }
                } }
            }
        }
    }
}

async fn page_view(
    app: &App,
    user: &PageUser,
    id: &str,
    pair: Option<(i64, i64)>,
    mapping: &Mapping,
    extra: Option<Markup>,
    flash: Option<&Flash>,
) -> Response {
    let versions: Vec<i64> = match app.db.definitions_of(id).await {
        Ok(v) if !v.is_empty() => v.iter().map(|d| d.version).collect(),
        Ok(_) => return fail(user, ApiError::not_found("没有该流程")),
        Err(e) => return fail(user, e.into()),
    };
    let latest = versions.last().copied().unwrap_or(1);
    let pair = pair.or_else(|| (versions.len() > 1).then(|| (latest - 1, latest)));
    let defs = match pair {
        Some((f, t)) => match versions_of(app, id, f, t).await {
            Ok(d) => Some((f, t, d)),
            Err(e) => return fail(user, e),
        },
        None => None,
    };
    let name = defs
        .as_ref()
        .map(|(_, _, (_, b))| b.workflow.name.clone())
        .unwrap_or_else(|| id.to_string());
    let body = html! {
        p.crumbs { a href="/workflows" { "流程规则" } " › " a href={"/workflows/editor?id=" (id)} { (name) } }
        h1 { "迁移运行中的项目 · " (name) }
        p.hint { "把仍在旧版本上运行的项目迁移到新版本：先试运行，查看每个项目能否迁移、迁移后各项任务和时限如何变化，再确认执行。已用的工作日保留；不能迁移的项目保持原版本不变。" }
        @if versions.len() < 2 {
            p { "该流程只有一个版本，无需迁移。" }
        } @else {
            (form_markup(user, id, &versions, defs.as_ref().map(|(f, t, (a, b))| (*f, *t, a.as_ref(), b.as_ref())), mapping))
        }
        @if let Some(m) = extra { (m) }
        (runs_markup(app, id).await)
    };
    page("迁移运行中的项目", Some(user), flash, body).into_response()
}

pub async fn page_form(
    State(app): State<App>,
    user: PageUser,
    UrlPath(id): UrlPath<String>,
    UrlQuery(q): UrlQuery<PageQuery>,
) -> Response {
    if !may_migrate(&user.user) {
        return fail(&user, ApiError::forbidden(FORBIDDEN));
    }
    let pair = q.from.zip(q.to);
    page_view(&app, &user, &id, pair, &Mapping::default(), None, None).await
}

pub async fn page_submit(
    State(app): State<App>,
    user: PageUser,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let f: MigrationForm = match Fields::typed(&user, &body) {
        Ok(f) => f,
        Err(page) => return page,
    };
    if !may_migrate(&user.user) {
        return fail(&user, ApiError::forbidden(FORBIDDEN));
    }
    let ((from, to), mapping) = match (f.versions(), f.mapping()) {
        (Ok(v), Ok(m)) => (v, m),
        (Err(e), _) | (_, Err(e)) => return fail(&user, e.into()),
    };
    let ask = MigrationAsk {
        workflow: id.clone(),
        from,
        to,
        to_workflow: None,
        mapping: mapping.clone(),
        instances: None,
    };
    let refused = |e: ApiError| Flash {
        ok: false,
        text: e.body.message.clone(),
        code: Some(e.body.error.clone()),
    };
    match f.op.as_deref() {
        Some("execute") => {
            let seen: Option<HashMap<String, Seen>> = serde_json::from_str(&f.seen).ok();
            if seen.is_none() {
                return fail(
                    &user,
                    form::FormError::new("seen", "请先试运行，再确认迁移").into(),
                );
            }
            let run = super::accounts::random_hex(12).unwrap_or_default();
            match execute(
                &app,
                &ask,
                &user.user,
                user.remote.clone(),
                &run,
                seen.as_ref(),
            )
            .await
            {
                Ok(info) => {
                    let flash = Flash {
                        ok: info.failed == 0,
                        text: format!(
                            "迁移已执行：{} 个项目迁移至 v{to}，{} 个未改动，{} 个失败",
                            info.moved, info.blocked, info.failed
                        ),
                        code: None,
                    };
                    let m = result_markup(&info);
                    page_view(
                        &app,
                        &user,
                        &id,
                        Some((from, to)),
                        &mapping,
                        Some(m),
                        Some(&flash),
                    )
                    .await
                }
                Err(e) => {
                    let flash = refused(e);
                    let mut r = page_view(
                        &app,
                        &user,
                        &id,
                        Some((from, to)),
                        &mapping,
                        None,
                        Some(&flash),
                    )
                    .await;
                    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                    r
                }
            }
        }
        _ => match dry_run(&app, &ask, &user.user.actor()).await {
            Ok(d) => {
                let m = dry_run_markup(&user, &id, &d, &mapping);
                page_view(&app, &user, &id, Some((from, to)), &mapping, Some(m), None).await
            }
            Err(e) => {
                let flash = refused(e);
                let mut r = page_view(
                    &app,
                    &user,
                    &id,
                    Some((from, to)),
                    &mapping,
                    None,
                    Some(&flash),
                )
                .await;
                *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                r
            }
        },
    }
}
