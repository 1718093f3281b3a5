//! The task API: act on a task (approve, reject, 容缺, claim, delegate ...) and verify a supplied
//! material on its verification task.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use shenpi_engine::runtime::{self, Command};
use utoipa::ToSchema;

use super::super::auth::Caller;
use super::super::commands::{CommandResult, json_body, parse_command, run_command};
use super::super::error::{ApiError, ApiResult, ErrorBody};
use super::super::extract::{self, Path};
use super::super::state::App;

/// Act on a task: the body is the command without its `task` field, e.g.
/// `{"type": "approve"}`, `{"type": "reject", "to": "intake"}`,
/// `{"type": "approve_conditional", "waive": ["eia"], "limit": "20wd"}`.
#[utoipa::path(post, path = "/api/instances/{id}/tasks/{task}/actions", tag = "tasks",
    request_body(content = Object, description = "an engine command on the task"),
    params(("id" = String, Path, description = "the instance"), ("task" = u32, Path, description = "the task number within the instance"), ("Idempotency-Key" = Option<String>, Header, description = "retries with the same key are applied once"),
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
    let mut v = json_body(&headers, &body)?;
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRequest {
    pub accepted: bool,
    pub reason: Option<String>,
}

/// Verify a supplied material (its verification task).
#[utoipa::path(post, path = "/api/instances/{id}/tasks/{task}/verify", params(("id" = String, Path, description = "the instance"), ("task" = u32, Path, description = "the verification task")), tag = "materials", request_body = VerifyRequest,
    responses((status = 200, body = CommandResult), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn verify_material(
    State(app): State<App>,
    caller: Caller,
    Path((id, task)): Path<(String, u32)>,
    headers: HeaderMap,
    extract::Json(req): extract::Json<VerifyRequest>,
) -> ApiResult<Json<CommandResult>> {
    let cmd = Command::VerifyMaterial {
        task: runtime::TaskId(task),
        accepted: req.accepted,
        reason: req.reason,
    };
    Ok(Json(run_command(&app, &caller, &id, cmd, &headers).await?))
}
