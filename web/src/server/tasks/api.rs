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
use super::batch::{BatchRequest, BatchResult, approve_each};

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
        return Err(ApiError::invalid("请求体须是 JSON 对象。")
            .in_english("the body must be a JSON object"));
    };
    o.insert("task".into(), task.into());
    let cmd = parse_command(v)?;
    if cmd.task() != Some(runtime::TaskId(task)) {
        return Err(
            ApiError::invalid("此命令不针对待办事项，请改用实例的命令接口。")
                .in_english("this command does not act on a task"),
        );
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

/// 批量审批: approve several tasks with one opinion. Each task is its own `approve` command
/// with its own idempotency key (the task's `key`, else the request's `Idempotency-Key`
/// followed by `/instance/task`), decided as if sent alone; the answer holds one result per
/// task, in the order asked: the command's result, or the refusal the single command would
/// have given (its status, code and Chinese message). A batch of no task or more than 100 is
/// refused as a whole and changes nothing.
#[utoipa::path(post, path = "/api/tasks/batch", tag = "tasks", request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "the base of each task's key; a retry of the batch applies each task once")),
    responses((status = 200, body = [BatchResult]), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn batch_approve(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    extract::Json(req): extract::Json<BatchRequest>,
) -> ApiResult<Json<Vec<BatchResult>>> {
    let base = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key 只能由可见的 ASCII 字符组成。"))?
                .to_string(),
        ),
    };
    Ok(Json(
        approve_each(&app, &caller, &req, base.as_deref()).await?,
    ))
}
