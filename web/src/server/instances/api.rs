//! The instance API: start a project's instance, read it (with its diagram), send it any engine
//! command, supply a material, attach an element.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use shenpi_adapters::bus::StartProject;
use shenpi_adapters::store::{InstanceMeta, ProjectRow};
use shenpi_engine::runtime::Command;
use utoipa::ToSchema;

use super::super::accounts::{Project, random_hex};
use super::super::auth::{Caller, policy};
use super::super::commands::{
    CommandResult, idempotency_key, json_body, parse_command, run_command, run_start,
};
use super::super::diagrams::{self, DiagramQuery};
use super::super::error::{ApiError, ApiResult, ErrorBody};
use super::super::extract::{self, Path, Query};
use super::super::projects::project_for;
use super::super::start::check_startable;
use super::super::state::App;
use super::detail::{InstanceDetail, instance_detail};

#[derive(Debug, Deserialize, ToSchema)]
pub struct StartRequest {
    pub project_id: String,
    /// The definition version; the latest when absent.
    pub version: Option<i64>,
    /// Put the instance in this green channel explicitly.
    pub channel: Option<String>,
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
    extract::Json(req): extract::Json<StartRequest>,
) -> ApiResult<(StatusCode, Json<CommandResult>)> {
    let key = idempotency_key(&headers, &caller.user.name)?;
    let r = start(&app, &caller, key, req, None).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// Starts an instance of the project, for the API and the new-project form; `key` is the
/// idempotency key, already in the caller's space ([`super::super::commands::user_key`]).
/// `new`: a project registered by this start (the form's), written only if the start commits;
/// else the project is `req.project_id`'s, already registered.
pub async fn start(
    app: &App,
    caller: &Caller,
    key: Option<String>,
    req: StartRequest,
    new: Option<Project>,
) -> ApiResult<CommandResult> {
    let registering = new.is_some();
    let project = match new {
        Some(p) => p,
        None => project_for(app, &caller.user, &req.project_id).await?,
    };
    if !(policy::is_project_party(&caller.user, &project) || caller.user.has("admin")) {
        return Err(
            ApiError::forbidden("只有项目单位或项目的帮办专员可以启动办理。")
                .in_english("only the project's applicant or service officer starts it"),
        );
    }
    let version = match req.version {
        Some(v) => v,
        None => {
            app.catalog
                .latest(&app.db, &project.workflow_id)
                .await?
                .ok_or_else(|| {
                    ApiError::invalid("项目所用的流程尚未发布。")
                        .in_english("the project's workflow is not published")
                })?
                .0
        }
    };
    let ctx = app.context(&project.workflow_id, version).await?;
    check_startable(app, &ctx.def).await?;
    let meta = InstanceMeta {
        id: format!("I{}", random_hex(6).map_err(ApiError::internal)?),
        workflow_id: project.workflow_id.clone(),
        def_version: version,
        project: project.fields.clone(),
    };
    let belongs = StartProject {
        id: project.id.clone(),
        register: registering.then(|| {
            Box::new(ProjectRow {
                id: project.id.clone(),
                name: project.name.clone(),
                workflow_id: project.workflow_id.clone(),
                owner: project.owner.clone(),
                fields: project.fields.to_string(),
                created_at: project.created_at,
            })
        }),
    };
    let r = run_start(
        app,
        caller,
        meta,
        belongs,
        req.channel.as_deref(),
        key,
        &ctx.def,
    )
    .await?;
    Ok(r.into())
}

/// Any engine command on an instance (the body is the command, e.g.
/// `{"type": "comment", "text": "..."}`).
#[utoipa::path(post, path = "/api/instances/{id}/commands", tag = "instances",
    request_body(content = Object, description = "an engine command: `{\"type\": ..., ...}`"),
    params(("id" = String, Path, description = "the instance"), ("Idempotency-Key" = Option<String>, Header, description = "retries with the same key are applied once"),
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
    let cmd = parse_command(json_body(&headers, &body)?)?;
    Ok(Json(run_command(&app, &caller, &id, cmd, &headers).await?))
}

/// The applicant supplies a material (against a 容缺 promise or a 补正).
#[utoipa::path(post, path = "/api/instances/{id}/materials/{material}/supply", tag = "materials",
    params(("id" = String, Path, description = "the instance"), ("material" = String, Path, description = "the material id, as the workflow names it"), ("Idempotency-Key" = Option<String>, Header, description = "retries are applied once")),
    responses((status = 200, body = CommandResult), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn supply_material(
    State(app): State<App>,
    caller: Caller,
    Path((id, material)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<CommandResult>> {
    let cmd = Command::SupplyMaterial {
        material: material.into(),
        files: Vec::new(),
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
#[utoipa::path(post, path = "/api/instances/{id}/elements", params(("id" = String, Path, description = "the instance")), tag = "elements", request_body = AttachRequest,
    responses((status = 200, body = CommandResult), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn attach_element(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    extract::Json(req): extract::Json<AttachRequest>,
) -> ApiResult<Json<CommandResult>> {
    let cmd = Command::AttachElement {
        element: req.element.into(),
        fields: req.fields,
    };
    Ok(Json(run_command(&app, &caller, &id, cmd, &headers).await?))
}

/// An instance: state, open tasks with colours, promises, elements, full history.
#[utoipa::path(get, path = "/api/instances/{id}", params(("id" = String, Path, description = "the instance")), tag = "instances",
    responses((status = 200, body = InstanceDetail), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_instance(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<InstanceDetail>> {
    Ok(Json(instance_detail(&app, &caller.user, &id).await?))
}

/// The instance's diagram with current nodes highlighted and passed ones marked.
#[utoipa::path(get, path = "/api/instances/{id}/diagram", params(("id" = String, Path, description = "the instance"), DiagramQuery), tag = "instances",
    responses((status = 200, description = "image/svg+xml or text"), (status = 404, body = ErrorBody)))]
pub async fn instance_diagram(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DiagramQuery>,
) -> ApiResult<Response> {
    // Reading the detail checks that the caller may see the instance.
    instance_detail(&app, &caller.user, &id).await?;
    let (_, st, events, ctx) = app.instance(&id).await?.ok_or_else(|| {
        ApiError::not_found(format!("没有编号为 {id} 的办理实例。"))
            .in_english(format!("no instance `{id}`"))
    })?;
    let history = events.iter().map(|(_, _, e)| e);
    diagrams::instance_diagram(&ctx.def, &st, history, q.format.as_deref())
}
