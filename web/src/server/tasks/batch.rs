//! 批量审批: several tasks approved with one opinion. Each task is still its own `approve`
//! command through `commands::run_command_with`, with its own idempotency key, so each is
//! authorised, decided and recorded exactly as if it had been sent alone, and the answer is one
//! result per task, in the order asked. For the API (`POST /api/tasks/batch`) and the inbox
//! page's selection form (`POST /inbox/batch`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::{Deserialize, Serialize};
use shenpi_engine::runtime::{Command, TaskId};
use utoipa::ToSchema;

use super::super::auth::{Caller, PageUser};
use super::super::chrome::{fail, page};
use super::super::commands::{CommandResult, page_caller, run_command_with, user_key};
use super::super::error::{ApiError, ApiResult, ErrorBody};
use super::super::form::{self, Fields, FormError};
use super::super::names::WorkflowNames;
use super::super::state::App;

/// At most this many tasks in one batch.
pub const MAX_BATCH: usize = 100;

/// One task of a batch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct BatchTask {
    pub instance: String,
    /// The task number within the instance.
    pub task: u32,
    /// This task's own idempotency key; without it, the request's `Idempotency-Key` followed by
    /// `/instance/task` (and none when the request has none).
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchRequest {
    pub tasks: Vec<BatchTask>,
    /// The one opinion recorded on every task.
    #[serde(default)]
    pub comment: Option<String>,
}

/// What became of one task of a batch: the result of its command, or its refusal as the
/// single command would have answered it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub instance: String,
    pub task: u32,
    pub ok: bool,
    /// The HTTP status the single command would have answered.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<CommandResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Checks a batch before any of it runs: a refused batch changes nothing.
pub fn check(req: &BatchRequest) -> ApiResult<()> {
    if req.tasks.is_empty() {
        return Err(ApiError::invalid("请至少选择一项任务。")
            .with_details(serde_json::json!({"field": "tasks"})));
    }
    if req.tasks.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!(
            "一次最多批量办理 {MAX_BATCH} 项任务，本次选择了 {} 项。",
            req.tasks.len()
        ))
        .with_details(serde_json::json!({"field": "tasks"})));
    }
    for (n, t) in req.tasks.iter().enumerate() {
        if req.tasks[..n]
            .iter()
            .any(|u| u.instance == t.instance && u.task == t.task)
        {
            return Err(ApiError::invalid(format!(
                "第 {} 项与前面的任务重复：每项任务只能选择一次。",
                n + 1
            ))
            .with_details(serde_json::json!({"field": "tasks", "index": n})));
        }
    }
    Ok(())
}

/// Approves each task of the batch in turn, one command each (see the module docs).
pub async fn approve_each(
    app: &App,
    caller: &Caller,
    req: &BatchRequest,
    base_key: Option<&str>,
) -> ApiResult<Vec<BatchResult>> {
    check(req)?;
    let comment = req
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let mut out = Vec::with_capacity(req.tasks.len());
    for t in &req.tasks {
        let key = match (&t.key, base_key) {
            (Some(k), _) => Some(user_key(&caller.user.name, k)?),
            (None, Some(b)) => Some(user_key(
                &caller.user.name,
                &format!("{b}/{}/{}", t.instance, t.task),
            )?),
            (None, None) => None,
        };
        let cmd = Command::Approve {
            task: TaskId(t.task),
            comment: comment.clone(),
        };
        let res = run_command_with(app, caller, &t.instance, cmd, key, None).await;
        out.push(match res {
            Ok(r) => BatchResult {
                instance: t.instance.clone(),
                task: t.task,
                ok: true,
                status: StatusCode::OK.as_u16(),
                result: Some(r),
                error: None,
            },
            Err(e) => BatchResult {
                instance: t.instance.clone(),
                task: t.task,
                ok: false,
                status: e.status.as_u16(),
                result: None,
                error: Some(e.body),
            },
        });
    }
    Ok(out)
}

/// The inbox page's selection form: the ticked tasks (`instance/task` each) and the opinion.
#[derive(Debug, Deserialize)]
pub struct BatchForm {
    #[serde(default, deserialize_with = "form::list")]
    pick: Vec<String>,
    #[serde(default, deserialize_with = "form::text")]
    comment: Option<String>,
}

impl BatchForm {
    fn request(self) -> Result<BatchRequest, FormError> {
        let mut tasks = Vec::with_capacity(self.pick.len());
        for p in &self.pick {
            let parsed = p
                .rsplit_once('/')
                .and_then(|(i, t)| t.parse::<u32>().ok().map(|t| (i.to_string(), t)));
            let Some((instance, task)) = parsed else {
                return Err(FormError::new(
                    "pick",
                    "所选任务无法识别，请刷新待办后重新选择",
                ));
            };
            tasks.push(BatchTask {
                instance,
                task,
                key: None,
            });
        }
        if tasks.is_empty() {
            return Err(FormError::new("pick", "请至少勾选一项任务"));
        }
        Ok(BatchRequest {
            tasks,
            comment: self.comment,
        })
    }
}

/// What a task of a batch is called on the result page: its project and its node.
async fn task_name(app: &App, instance: &str, task: u32) -> String {
    let project = app
        .accounts
        .project_of(instance)
        .await
        .ok()
        .flatten()
        .map(|p| p.name);
    let node = match app.instance(instance).await {
        Ok(Some((_, st, _, ctx))) => st
            .task(TaskId(task))
            .map(|t| WorkflowNames(&ctx.def).node(&t.spec.node)),
        _ => None,
    };
    match (project, node) {
        (Some(p), Some(n)) => format!("{p} · {n}"),
        (Some(p), None) => p,
        (None, Some(n)) => n,
        (None, None) => "（未知任务）".to_string(),
    }
}

/// The inbox page's 批量通过: the ticked tasks, one opinion; the answer lists what became of
/// each.
pub async fn batch_page(State(app): State<App>, user: PageUser, body: Bytes) -> Response {
    let posted = match Fields::checked(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let req = match posted.parse::<BatchForm>().and_then(BatchForm::request) {
        Ok(r) => r,
        Err(e) => return fail(&user, e.into()),
    };
    let base = posted.idem().map(|k| format!("form:{k}"));
    let results = match approve_each(&app, &page_caller(&user), &req, base.as_deref()).await {
        Ok(r) => r,
        Err(e) => return fail(&user, e),
    };
    let mut names = Vec::with_capacity(results.len());
    for r in &results {
        names.push(task_name(&app, &r.instance, r.task).await);
    }
    let done = results.iter().filter(|r| r.ok).count();
    let body = html! {
        p.crumbs { a href="/inbox" { "待办" } " › 批量通过" }
        h1 { "批量通过：" (done) " 项已办理，" (results.len() - done) " 项未能办理" }
        table.batch {
            thead { tr { th { "任务" } th { "结果" } } }
            tbody { @for (r, name) in results.iter().zip(&names) {
                tr class=(if r.ok { "batch-ok" } else { "batch-refused" }) {
                    td { a href={"/instances/" (r.instance) "/tasks/" (r.task)} { (name) } }
                    td {
                        @if r.ok { "已通过" }
                        @else if let Some(e) = &r.error { "未能办理：" (e.message) }
                    }
                }
            } }
        }
        p { a href="/inbox" { "返回待办" } }
    };
    page("批量通过", Some(&user), None, body).into_response()
}
