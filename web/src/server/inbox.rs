//! The inbox (待办): the open tasks addressed to a user, their roles and their department, most
//! urgent first, for the API (`GET /api/tasks`) and the inbox page. Colour, days left and due
//! are the engine's view of each instance at now, the reading the task page shows.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;
use serde::{Deserialize, Serialize};
use shenpi_adapters::store::{InboxRow, ProjectionStore};
use shenpi_engine::runtime;
use utoipa::{IntoParams, ToSchema};

use super::accounts::{Project, User};
use super::auth::{Caller, PageUser};
use super::chrome::{colour_badge, days_text, due_date, fail, page, provisional_mark};
use super::engine::{EngineCtx, assignee_label, colour_name, timestamp};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract;
use super::form::hidden;
use super::routes::{Routes, operation};
use super::state::App;

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(inbox))
        .page("/inbox", get(inbox_page))
}

#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
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
    // The projection addresses a task to the policy's addressees (`user:NAME`, `role:ID`,
    // `dept:ID`; a delegate as `user:NAME`): "mine" is what is addressed to me, to one of my
    // roles (a role's pool belongs to its department) or to my department, and the department
    // scope is what is addressed to my department as a whole.
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
    let rows: Vec<InboxRow> = app.db.inbox_for(&keys, limit * 2).await?;
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
        let colour = colour_name(task.colour);
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
            assignee: r.assignee.as_deref().map(assignee_label),
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
    extract::Query(q): extract::Query<InboxQuery>,
) -> ApiResult<Json<Vec<InboxItem>>> {
    Ok(Json(inbox_items(&app, &caller.user, &q).await?))
}

async fn inbox_page(
    State(app): State<App>,
    user: PageUser,
    Query(q): Query<InboxQuery>,
) -> Response {
    let items = match inbox_items(&app, &user.user, &q).await {
        Ok(i) => i,
        Err(e) => return fail(&user, e),
    };
    let sel = |v: &Option<String>, x: &str| v.as_deref() == Some(x);
    let body = html! {
        h1 { "我的待办" }
        form.filters method="get" action="/inbox" {
            label { "范围 " select name="scope" {
                option value="mine" selected[!sel(&q.scope, "department")] { "我的及本部门" }
                option value="department" selected[sel(&q.scope, "department")] { "本部门待认领" }
            } }
            label { "预警 " select name="colour" {
                option value="" { "全部" }
                option value="red" selected[sel(&q.colour, "red")] { "红" }
                option value="yellow" selected[sel(&q.colour, "yellow")] { "黄" }
                option value="green" selected[sel(&q.colour, "green")] { "绿" }
            } }
            label { "阶段 " input name="stage" value=(q.stage.clone().unwrap_or_default()) size="8"; }
            label { "流程 " input name="workflow" value=(q.workflow.clone().unwrap_or_default()) size="14"; }
            button type="submit" { "筛选" }
        }
        @if items.is_empty() {
            p.empty { "没有待办事项。" }
        } @else {
            // 批量通过: the ticked rows, one opinion, one command each (tasks::batch).
            form #batch method="post" action="/inbox/batch" {
                (hidden(&user))
                label { "批量通过，意见 " input name="comment" size="30" placeholder="同意"; }
                button type="submit" { "批量通过所选" }
            }
            table.inbox {
                thead { tr { th { "选择" } th { "预警" } th { "时限" } th { "项目" } th { "环节" } th { "阶段" } th { "流程" } th { "办理人" } th {} } }
                tbody {
                    @for it in &items {
                        tr class={"row-" (it.colour)} {
                            td { input type="checkbox" form="batch" name="pick" value={(it.instance) "/" (it.task)} title="选择以批量通过"; }
                            td { (colour_badge(&it.colour)) }
                            td.days { (days_text(it.days_left)) @if let Some(d) = it.due { br; small { "截止 " (due_date(d)) (provisional_mark(it.provisional, Some(d))) } } }
                            td {
                                @if it.green_channel { span.green-channel title="绿色通道" { "绿色通道" } " " }
                                @if it.supervised { span.supervised title="挂牌督办" { "督办" } " " }
                                (it.project_name.clone().unwrap_or_else(|| it.instance.clone()))
                            }
                            td { (it.node_name.clone().unwrap_or_else(|| it.node.clone())) }
                            td { (it.stage.clone().unwrap_or_default()) }
                            td { (it.workflow_id) }
                            td { (it.assignee.clone().unwrap_or_default()) }
                            td { a.open href={"/instances/" (it.instance) "/tasks/" (it.task)} { "办理" } }
                        }
                    }
                }
            }
        }
    };
    page("我的待办", Some(&user), None, body).into_response()
}
