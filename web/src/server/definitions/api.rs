//! The definitions API: list the workflows, check a draft, publish it as the next version, read
//! the versions, their YAML, the diff between two, and the diagram.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shenpi_adapters::store::{DefinitionStore, Source};
use shenpi_engine::diag::Diagnostic;
use shenpi_engine::diagram::Highlight;
use utoipa::{IntoParams, ToSchema};

use super::super::accounts::User;
use super::super::auth::{Caller, policy};
use super::super::diagrams::{DiagramQuery, render_diagram};
use super::super::error::{ApiError, ApiResult, ErrorBody};
use super::super::extract::{Path, Query};
use super::super::names::Everywhere;
use super::super::refusals::diagnostic_title_zh;
use super::super::state::App;

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
            "payload_too_large",
            "流程 YAML 过大：不得超过 1 MiB。",
        ));
    }
    String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::invalid("流程 YAML 须为 UTF-8 编码。").in_english("the YAML must be UTF-8")
    })
}

pub fn validation_failed(diags: &[Diagnostic]) -> ApiError {
    let first = diags
        .first()
        .map(|d| format!("line {}:{}: {}", d.line, d.col, d.message))
        .unwrap_or_default();
    // The Chinese sentence names the first problem by what its code means; the engine's own
    // located message stays in `details.diagnostics`.
    let first_zh = diags
        .first()
        .map(|d| {
            let what = diagnostic_title_zh(d.code).unwrap_or("流程定义有误");
            format!("，第一处在第 {} 行第 {} 列：{what}", d.line, d.col)
        })
        .unwrap_or_default();
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        format!("流程定义有 {} 处问题{first_zh}。", diags.len()),
    )
    .in_english(format!("{} problem(s); first at {first}", diags.len()))
    .with_details(serde_json::json!({ "diagnostics": diags }))
}

/// The refusal of a workflow id no version has.
fn no_workflow(id: &str) -> ApiError {
    ApiError::not_found(format!("没有流程「{id}」。")).in_english(format!("no workflow `{id}`"))
}

/// The refusal of a version a workflow does not have, naming the workflow.
fn no_version(app: &App, id: &str, version: i64) -> ApiError {
    let name = Everywhere::of(&app.machine).workflow(id);
    ApiError::not_found(format!("流程「{name}」没有第 {version} 版。"))
        .in_english(format!("no version {id}@{version}"))
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
        return Err(ApiError::forbidden("只有政策法规人员可以校验流程定义。")
            .in_english("only policy staff work on definitions"));
    }
    let yaml = yaml_text(&body)?;
    match app.catalog.check(&yaml) {
        Ok(def) => Ok(Json(ValidationResult {
            valid: true,
            workflow_id: Some(def.id().to_string()),
            diagnostics: shenpi_engine::validate::validate(&def.workflow, app.catalog.ctx()),
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
        return Err(ApiError::forbidden("只有政策法规人员可以发布流程定义。")
            .in_english("only policy staff publish definitions"));
    }
    let yaml = yaml_text(&body)?;
    let p = publish_yaml(
        &app,
        &caller.user,
        caller.remote.clone(),
        &yaml,
        Source::Api(&caller.user.name),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(p)))
}

pub async fn publish_yaml(
    app: &App,
    user: &User,
    remote: Option<String>,
    yaml: &str,
    source: Source<'_>,
) -> ApiResult<Published> {
    match app
        .catalog
        .publish(&app.db, yaml, source, app.now())
        .await?
    {
        Ok((id, version)) => {
            app.context(&id, version).await?;
            app.retry_refused_timers().await;
            app.audit(
                &user.name,
                remote,
                "publish",
                None,
                &format!("{id}@{version}"),
            )
            .await;
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
    /// SHA-256 of the YAML text, hex.
    pub hash: String,
    pub published_at: i64,
    /// `file`, `editor` or `api`; absent for versions published before sources were recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For a file: its path inside the workflows folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    /// For the editor and the API: who published it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_by: Option<String>,
}

/// Published versions of a workflow, oldest first, each with where it came from.
#[utoipa::path(get, path = "/api/definitions/{id}/versions", params(("id" = String, Path, description = "the workflow id")), tag = "definitions",
    responses((status = 200, body = [VersionInfo]), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(app): State<App>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<VersionInfo>>> {
    let v = app.db.definitions_of(&id).await?;
    if v.is_empty() {
        return Err(no_workflow(&id));
    }
    Ok(Json(
        v.into_iter()
            .map(|r| VersionInfo {
                version: r.version,
                hash: r.hash,
                published_at: r.published_at,
                source: r.source,
                source_path: r.source_path,
                published_by: r.published_by,
            })
            .collect(),
    ))
}

/// The YAML of one version.
#[utoipa::path(get, path = "/api/definitions/{id}/versions/{version}", params(("id" = String, Path, description = "the workflow id"), ("version" = i64, Path, description = "the version number")), tag = "definitions",
    responses((status = 200, body = String, content_type = "application/yaml"), (status = 404, body = ErrorBody)))]
pub async fn get_version(
    State(app): State<App>,
    _caller: Caller,
    Path((id, version)): Path<(String, i64)>,
) -> ApiResult<Response> {
    let row = app
        .db
        .definition(&id, version)
        .await?
        .ok_or_else(|| no_version(&app, &id, version))?;
    Ok((
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        row.yaml,
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
    let a = app
        .db
        .definition(id, from)
        .await?
        .ok_or_else(|| no_version(app, id, from))?;
    let b = app
        .db
        .definition(id, to)
        .await?
        .ok_or_else(|| no_version(app, id, to))?;
    Ok(similar::TextDiff::from_lines(&a.yaml, &b.yaml)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{id}@{from}"), &format!("{id}@{to}"))
        .to_string())
}

/// A unified diff between two versions.
#[utoipa::path(get, path = "/api/definitions/{id}/diff", params(("id" = String, Path, description = "the workflow id"), DiffQuery), tag = "definitions",
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

/// The workflow diagram: SVG drawn by the server, or Mermaid / DOT text.
#[utoipa::path(get, path = "/api/definitions/{id}/diagram", params(("id" = String, Path, description = "the workflow id"), DiagramQuery), tag = "definitions",
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
    .ok_or_else(|| no_workflow(&id))?;
    render_diagram(&def, q.format.as_deref(), &Highlight::NONE)
}
