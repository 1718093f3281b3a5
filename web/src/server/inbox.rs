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
use super::chrome::{colour_badge, datetime, days_text, due_date, fail, page, provisional_mark};
use super::engine::{EngineCtx, colour_name, timestamp};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract;
use super::form::hidden;
use super::names::{Everywhere, WorkflowNames};
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
    /// A stage id.
    pub stage: Option<String>,
    /// A workflow id.
    pub workflow: Option<String>,
    /// A department id: the tasks of that department.
    pub department: Option<String>,
    /// `true`: only tasks in a green channel.
    pub green: Option<String>,
    /// Search: part of the project's name or code, the task's, the stage's or the department's
    /// name (in Chinese, as the workflow names them).
    pub q: Option<String>,
    pub limit: Option<i64>,
}

impl InboxQuery {
    /// Whether an item passes the filters.
    fn admits(&self, it: &InboxItem) -> bool {
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        if set(&self.colour).is_some_and(|c| c != it.colour)
            || set(&self.stage).is_some_and(|s| it.stage.as_deref() != Some(s))
            || set(&self.workflow).is_some_and(|w| w != it.workflow_id)
            || set(&self.department).is_some_and(|d| it.department.as_deref() != Some(d))
            || (set(&self.green).is_some_and(|g| g == "true" || g == "1") && !it.green_channel)
        {
            return false;
        }
        match set(&self.q) {
            None => true,
            Some(q) => [
                it.project_name.as_deref(),
                it.project_id.as_deref(),
                it.node_name.as_deref(),
                it.stage_name.as_deref(),
                it.department_name.as_deref(),
                Some(it.workflow_name.as_str()),
            ]
            .into_iter()
            .flatten()
            .any(|t| t.contains(q)),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboxItem {
    pub instance: String,
    pub task: String,
    pub workflow_id: String,
    /// The workflow's name.
    pub workflow_name: String,
    /// The task's label: the node id, `node.branch` or `verify.<material>`.
    pub node: String,
    /// What the task is, as the workflow names it (the node, the branch's department, the
    /// material verified).
    pub node_name: Option<String>,
    pub stage: Option<String>,
    pub stage_name: Option<String>,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    /// Whom it is assigned to, by name (a user, a role's name, a department's name).
    pub assignee: Option<String>,
    pub department: Option<String>,
    pub department_name: Option<String>,
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
                "不支持的范围「{other}」：可选 mine（我的）或 department（本部门）。"
            ))
            .in_english(format!("scope `{other}`: use `mine` or `department`")));
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
        if !names.contains_key(&r.instance) {
            let p = app
                .accounts
                .project_of(&r.instance)
                .await
                .map_err(ApiError::internal)?;
            names.insert(r.instance.clone(), p);
        }
        let project = names.get(&r.instance).cloned().flatten();
        let names = WorkflowNames(&ctx.def);
        out.push(InboxItem {
            instance: r.instance.clone(),
            task: r.task_id.clone(),
            workflow_id: r.workflow_id.clone(),
            workflow_name: names.workflow(),
            node: r.node.clone(),
            node_name: Some(task_name(&names, &r.node)),
            stage: r.stage.clone(),
            stage_name: r.stage.as_deref().map(|s| names.stage(s)),
            project_id: project.as_ref().map(|p| p.id.clone()),
            project_name: project.as_ref().map(|p| p.name.clone()),
            assignee: r.assignee.as_deref().map(|a| names.party_key(a)),
            department: r.department.clone(),
            department_name: r.department.as_deref().map(|d| names.department(d)),
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
    out.retain(|it| q.admits(it));
    out.truncate(usize::try_from(limit).unwrap_or(200));
    Ok(out)
}

/// A task's label (`node`, `node.branch`, `verify.material`) as people read it: the node's name,
/// with the branch's department or the material verified.
pub fn task_name(names: &WorkflowNames<'_>, label: &str) -> String {
    if let Some(m) = label.strip_prefix("verify.") {
        return format!("核验：{}", names.material(m));
    }
    match label.split_once('.') {
        Some((node, branch)) => {
            let dept = names
                .0
                .node(node)
                .and_then(|n| n.branches.iter().find(|b| b.id.value == branch))
                .map(|b| b.department.value.clone());
            match dept {
                Some(d) => format!("{}（{}）", names.node(node), names.department(&d)),
                None => names.node(node),
            }
        }
        None => names.node(label),
    }
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

/// The inbox page's tab (the 待办 tab's filters are an [`InboxQuery`] of the same query).
#[derive(Debug, Deserialize, Default)]
struct TabQuery {
    tab: Option<String>,
}

/// One row of the 已办, 我发起的 and 抄送我的 tabs: an instance, what it is, where it is now.
struct CaseRow {
    instance: String,
    project: String,
    workflow: String,
    what: String,
    at: i64,
    status: String,
    read: Option<bool>,
}

/// Where an instance is, in a few words: its status, and its open tasks by name.
async fn case_row(app: &App, instance: &str, what: String, at: i64) -> Option<CaseRow> {
    let (_, st, _, ctx) = app.instance(instance).await.ok()??;
    let names = WorkflowNames(&ctx.def);
    let v = runtime::view(&ctx.def, &ctx.cal, &st, timestamp(app.now()));
    let project = app
        .project_of(instance)
        .await
        .ok()
        .flatten()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| "（未登记项目）".to_string());
    let open: Vec<String> = v
        .tasks
        .iter()
        .map(|t| {
            let label = t.label.to_string();
            task_name(&names, &label)
        })
        .collect();
    let status = if v.outcome != "running" {
        super::chrome::outcome_text(&v.outcome).to_string()
    } else if v.with_applicant {
        "退回补正中".to_string()
    } else if open.is_empty() {
        "办理中".to_string()
    } else {
        format!("办理中：{}", open.join("、"))
    };
    Some(CaseRow {
        instance: instance.to_string(),
        project,
        workflow: names.workflow(),
        what,
        at,
        status,
        read: None,
    })
}

async fn done_rows(app: &App, user: &User) -> Vec<CaseRow> {
    let mut out = Vec::new();
    for e in app
        .accounts
        .done_by(&user.name, 100)
        .await
        .unwrap_or_default()
    {
        let Some(i) = &e.instance else { continue };
        let what = super::commands::command_label_zh(&e.action).to_string();
        if let Some(r) = case_row(app, i, what, e.at).await {
            out.push(r);
        }
    }
    out
}

async fn started_rows(app: &App, user: &User) -> Vec<CaseRow> {
    let mut out = Vec::new();
    let mine = app
        .accounts
        .projects(Some(&user.name), None, 200)
        .await
        .unwrap_or_default();
    for p in mine {
        for i in &p.instances {
            if let Some(r) = case_row(app, i, "提交申报".to_string(), p.created_at).await {
                out.push(r);
            }
        }
    }
    out
}

async fn cc_rows(app: &App, user: &User) -> Vec<CaseRow> {
    let mut out = Vec::new();
    let msgs = super::messages::messages_of(app, user)
        .await
        .unwrap_or_default();
    for m in msgs.into_iter().filter(|m| m.template == "cc") {
        let Some(i) = &m.instance else { continue };
        if let Some(mut r) = case_row(app, i, m.title.clone(), m.at).await {
            r.read = Some(m.read);
            out.push(r);
        }
    }
    out
}

async fn inbox_page(
    State(app): State<App>,
    user: PageUser,
    Query(q): Query<InboxQuery>,
    Query(pq): Query<TabQuery>,
) -> Response {
    let all = match inbox_items(
        &app,
        &user.user,
        &InboxQuery {
            scope: q.scope.clone(),
            limit: q.limit,
            ..Default::default()
        },
    )
    .await
    {
        Ok(i) => i,
        Err(e) => return fail(&user, e),
    };
    let items: Vec<&InboxItem> = all.iter().filter(|it| q.admits(it)).collect();
    let done = done_rows(&app, &user.user).await;
    let started = started_rows(&app, &user.user).await;
    let cc = cc_rows(&app, &user.user).await;
    let tab = match pq.tab.as_deref() {
        Some("done") => "done",
        Some("mine") => "mine",
        Some("cc") => "cc",
        _ => "todo",
    };
    let names = Everywhere::of(&app.machine);
    let sel = |v: &Option<String>, x: &str| v.as_deref() == Some(x);
    let unread_cc = cc.iter().filter(|r| r.read == Some(false)).count();
    let tabs = [
        ("todo", "待办", all.len(), 0),
        ("done", "已办", done.len(), 0),
        ("mine", "我发起的", started.len(), 0),
        ("cc", "抄送我的", cc.len(), unread_cc),
    ];
    let title = match tab {
        "done" => "已办",
        "mine" => "我发起的",
        "cc" => "抄送我的",
        _ => "我的待办",
    };
    let cases = |rows: &[CaseRow], what: &str| {
        html! {
            @if rows.is_empty() {
                p.empty { "没有记录。" }
            } @else {
                div.table-wrap.cards {
                    table.cases {
                        thead { tr { th { "项目" } th { "流程" } th { (what) } th { "时间" } th { "当前状态" } th {} } }
                        tbody { @for r in rows {
                            tr class=[r.read.map(|x| if x { "read" } else { "unread" })] {
                                td data-label="项目" { @if r.read == Some(false) { span.dot title="未读" { "未读" } " " } (r.project) }
                                td data-label="流程" { (r.workflow) }
                                td data-label=(what) { (r.what) }
                                td data-label="时间" { (datetime(r.at)) }
                                td data-label="当前状态" { (r.status) }
                                td { a.open href={"/instances/" (r.instance)} { "查看" } }
                            }
                        } }
                    }
                }
            }
        }
    };
    let body = html! {
        h1 { (title) }
        nav.tabs {
            @for (id, label, n, unread) in tabs {
                a class={"tab" (if id == tab { " active" } else { "" })} href={"/inbox?tab=" (id)} {
                    (label) " " span.count { (n) }
                    @if unread > 0 { " " span.count.unread title="未读" { (unread) } }
                }
            }
        }
        @match tab {
            "done" => { (cases(&done, "办理")) }
            "mine" => { (cases(&started, "事项")) }
            "cc" => { (cases(&cc, "抄送内容")) }
            _ => {
                form.filters method="get" action="/inbox" {
                    label { "搜索 " input name="q" value=(q.q.clone().unwrap_or_default()) placeholder="项目、环节、阶段或部门名称" size="18"; }
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
                    label { "阶段 " select name="stage" {
                        option value="" { "全部" }
                        @for (id, name) in names.stages() { option value=(id) selected[sel(&q.stage, &id)] { (name) } }
                    } }
                    label { "部门 " select name="department" {
                        option value="" { "全部" }
                        @for (id, name) in names.departments() { option value=(id) selected[sel(&q.department, &id)] { (name) } }
                    } }
                    label { "流程 " select name="workflow" {
                        option value="" { "全部" }
                        @for (id, name) in names.workflows() { option value=(id) selected[sel(&q.workflow, &id)] { (name) } }
                    } }
                    label.check { input type="checkbox" name="green" value="true" checked[sel(&q.green, "true")]; "只看绿色通道" }
                    button type="submit" { "筛选" }
                }
                @if items.is_empty() {
                    p.empty { "没有待办事项。" }
                } @else {
                    p.muted { "按紧急程度排序：绿色通道优先，其次红、黄、绿，同色按截止日期。共 " (items.len()) " 件。" }
                    // 批量通过: the ticked rows, one opinion, one command each (tasks::batch).
                    form #batch.filters method="post" action="/inbox/batch" {
                        (hidden(&user))
                        label { "批量通过，意见 " input name="comment" size="24" placeholder="同意"; }
                        button type="submit" { "批量通过所选" }
                    }
                    div.table-wrap.cards {
                    table.inbox {
                        thead { tr { th { "选择" } th { "预警" } th { "时限" } th { "项目" } th { "环节" } th { "阶段" } th { "部门" } th { "办理人" } th {} } }
                        tbody {
                            @for it in &items {
                                tr class={"row-" (it.colour)} {
                                    td data-label="选择" { input type="checkbox" form="batch" name="pick" value={(it.instance) "/" (it.task)} title="选择以批量通过"; }
                                    td data-label="预警" { (colour_badge(&it.colour)) }
                                    td.days data-label="时限" { (days_text(it.days_left)) @if let Some(d) = it.due { br; small { "截止 " (due_date(d)) (provisional_mark(it.provisional, Some(d))) } } }
                                    td data-label="项目" {
                                        @if it.green_channel { span.green-channel title="绿色通道" { "绿色通道" } " " }
                                        @if it.supervised { span.supervised title="挂牌督办" { "督办" } " " }
                                        (it.project_name.clone().unwrap_or_else(|| "（未登记项目）".to_string()))
                                        br; small.muted { (it.workflow_name) }
                                    }
                                    td data-label="环节" { (it.node_name.clone().unwrap_or_default()) }
                                    td data-label="阶段" { (it.stage_name.clone().unwrap_or_default()) }
                                    td data-label="部门" { (it.department_name.clone().unwrap_or_default()) }
                                    td data-label="办理人" { (it.assignee.clone().unwrap_or_default()) }
                                    td { a.open href={"/instances/" (it.instance) "/tasks/" (it.task)} { "办理" } }
                                }
                            }
                        }
                    }
                    }
                }
            }
        }
    };
    page(title, Some(&user), None, body).into_response()
}
