//! The server-rendered UI, in Chinese: login, inbox, task page, instance page, projects, the
//! workflow editor with versions and diffs, and the supervisors' dashboard.
//!
//! Pages are maud templates (compiled, escaped by default, nothing to build or download). Every
//! form carries the session's CSRF token, checked by [`form_of`]; every action form also carries
//! a fresh idempotency key, so a double click or a resubmitted form is applied once. Actions go
//! through the same `api::run_command_with` as the API.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use shenpi_adapters::store::DefinitionStore;
use shenpi_engine::calendar::{local_date, local_datetime};
use shenpi_engine::compile::Party;
use shenpi_engine::diagram::Highlight;
use shenpi_engine::model::{Action, NodeType, RawLimit};
use shenpi_engine::runtime::view::TaskView;
use shenpi_engine::runtime::{Command, Event, TaskId};

use super::accounts::{Project, User, random_hex};
use super::api::{self, InboxQuery};
use super::auth::{Caller, PageUser, SESSION_TTL_MS, clear_cookie, cookie, policy, session_cookie};
use super::engine::{EngineCtx, timestamp};
use super::error::ApiError;
use super::state::{App, LoginCheck};
use super::svg;

const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");
const LOGIN_CSRF: &str = "shenpi_login_csrf";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(home))
        .route(
            "/static/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    JS,
                )
            }),
        )
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/inbox", get(inbox_page))
        .route("/instances/{id}", get(instance_page).post(instance_act))
        .route(
            "/instances/{id}/tasks/{task}",
            get(task_page).post(task_act),
        )
        .route("/projects", get(projects_page).post(project_create))
        .route("/workflows", get(workflows_page))
        .route("/workflows/editor", get(editor_page).post(editor_submit))
        .route("/workflows/{id}/diff", get(diff_page))
        .route("/dashboard", get(dashboard_page))
        .route("/calendars", get(super::calendars::page_list))
        .route(
            "/calendars/{id}/preview",
            post(super::calendars::page_preview),
        )
        .route(
            "/calendars/{id}/publish",
            post(super::calendars::page_publish),
        )
}

// ---------- helpers ----------

/// A deadline instant is the end of its last day (00:00 of the next): show that last day.
fn due_date(ms: i64) -> String {
    shenpi_engine::runtime::deadline::last_day(timestamp(ms)).to_string()
}

/// The local date an instant falls on (a yellow point is the start of its day).
fn day_of(ms: i64) -> String {
    local_date(timestamp(ms)).to_string()
}

fn datetime(ms: i64) -> String {
    let dt = local_datetime(timestamp(ms));
    format!("{} {:02}:{:02}", dt.date(), dt.hour(), dt.minute())
}

fn colour_badge(c: &str) -> Markup {
    let (cls, text) = match c {
        "red" => ("red", "红"),
        "yellow" => ("yellow", "黄"),
        _ => ("green", "绿"),
    };
    html! { span class={"badge " (cls)} title={"预警：" (text)} { (text) } }
}

/// The 「暂定」 mark of a date or count on a provisional calendar year, with why in its tooltip.
fn provisional_mark(on: bool, due_ms: Option<i64>) -> Markup {
    if !on {
        return html! {};
    }
    let year = due_ms
        .map(|d| {
            shenpi_engine::runtime::deadline::last_day(timestamp(d))
                .year()
                .to_string()
        })
        .unwrap_or_default();
    let why = format!(
        "{year} 年尚无国务院办公厅的正式放假安排，按{}推算；正式安排导入后自动重新计算",
        shenpi_engine::calendar::statutory::STATUTE
    );
    html! { " " span.provisional title=(why) { "暂定" } }
}

fn days_text(d: Option<i64>) -> String {
    match d {
        Some(d) if d < 0 => format!("已超期 {} 个工作日", -d),
        Some(0) => "今日到期".to_string(),
        Some(d) => format!("剩余 {d} 个工作日"),
        None => "无时限".to_string(),
    }
}

/// Today's date as the header shows it, in Chinese (「今天：2026年12月1日 星期二」), on the
/// server's clock: the same clock every limit is counted on, the demo clock and
/// `serve --clock-start` included, so what the page calls today is the day the colours mean.
pub fn today_zh(now: i64) -> String {
    use jiff::civil::Weekday;
    let d = local_date(timestamp(now));
    let weekday = match d.weekday() {
        Weekday::Monday => "星期一",
        Weekday::Tuesday => "星期二",
        Weekday::Wednesday => "星期三",
        Weekday::Thursday => "星期四",
        Weekday::Friday => "星期五",
        Weekday::Saturday => "星期六",
        Weekday::Sunday => "星期日",
    };
    format!("今天：{}年{}月{}日 {weekday}", d.year(), d.month(), d.day())
}

fn role_label(r: &str) -> &str {
    match r {
        "applicant" => "项目单位",
        "service_officer" => "帮办专员",
        "approver" => "审批人员",
        "supervisor" => "督办",
        "policy_staff" => "政策法规",
        "admin" => "管理员",
        other => other,
    }
}

pub(super) fn page(
    title: &str,
    user: Option<&PageUser>,
    flash: Option<&Flash>,
    body: Markup,
) -> Html<String> {
    let m = html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 审批流程引擎" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                header.top {
                    a.brand href="/" { "投资项目审批" }
                    @if let Some(u) = user {
                        nav {
                            @if u.user.is_staff() { a href="/inbox" { "待办" } }
                            a href="/projects" { "项目" }
                            @if policy::can_validate(&u.user) { a href="/workflows" { "流程规则" } }
                            @if u.user.is_staff() { a href="/calendars" { "工作日历" } }
                            @if policy::can_see_dashboard(&u.user) { a href="/dashboard" { "督办看板" } }
                        }
                        div.who {
                            span.today title="服务器时钟的日期，时限按此计算" { (today_zh(u.now)) }
                            span { (u.user.name) }
                            @if let Some(d) = &u.user.department { span.dept { (d) } }
                            span.roles { @for r in &u.user.roles { span.role { (role_label(r)) } } }
                            form method="post" action="/logout" class="inline" {
                                input type="hidden" name="csrf" value=(u.csrf);
                                button type="submit" class="link" { "退出" }
                            }
                        }
                    }
                }
                main {
                    @if let Some(f) = flash {
                        div class={"flash " (if f.ok { "ok" } else { "err" })} role="status" { (f.text) }
                    }
                    (body)
                }
                script src="/static/app.js" {}
            }
        }
    };
    Html(m.into_string())
}

pub struct Flash {
    pub ok: bool,
    pub text: String,
}

fn error_page(status: StatusCode, user: Option<&PageUser>, e: &ApiError) -> Response {
    let body = html! {
        h1 { "无法完成" }
        p.error { (e.body.message) }
        p { code { (e.body.error) } }
        p { a href="javascript:history.back()" { "返回" } }
    };
    (status, page("出错", user, None, body)).into_response()
}

pub(super) fn fail(user: &PageUser, e: ApiError) -> Response {
    error_page(e.status, Some(user), &e)
}

/// A form body as (key, value) pairs, keeping repeated keys (checkbox lists).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                other => out.push(other),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn text(&self, k: &str) -> Option<String> {
        self.get(k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }
    fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Parses a form and checks its CSRF token against the session's. The error is the finished
/// error page, returned by the handler as it is (hence its size is no concern).
#[allow(clippy::result_large_err)]
pub(super) fn form_of(user: &PageUser, body: &Bytes) -> Result<Form, Response> {
    let f = Form(parse_form(body));
    if f.get("csrf") != Some(user.csrf.as_str()) {
        let e = ApiError::forbidden("表单已过期或来源不明（CSRF 校验失败），请刷新页面后重试");
        return Err(fail(user, e));
    }
    Ok(f)
}

fn caller(u: &PageUser) -> Caller {
    Caller {
        user: u.user.clone(),
        remote: u.remote.clone(),
        csrf: Some(u.csrf.clone()),
    }
}

fn idem() -> String {
    random_hex(12).unwrap_or_default()
}

fn form_key(u: &PageUser, f: &Form) -> Option<String> {
    f.text("idem")
        .map(|k| format!("{}\u{1f}form:{k}", u.user.name))
}

pub(super) fn hidden(u: &PageUser) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(u.csrf);
        input type="hidden" name="idem" value=(idem());
    }
}

// ---------- login ----------

async fn home(user: Result<PageUser, Response>) -> Response {
    match user {
        Err(_) => Redirect::to("/login").into_response(),
        Ok(u) => Redirect::to(landing(&u.user)).into_response(),
    }
}

fn landing(u: &User) -> &'static str {
    if u.has("policy_staff") {
        "/workflows"
    } else if u.has("supervisor") {
        "/dashboard"
    } else if u.is_staff() && !u.has("service_officer") {
        "/inbox"
    } else {
        "/projects"
    }
}

fn login_form(csrf: &str, error: Option<&str>) -> Markup {
    html! {
        section.login {
            h1 { "投资项目审批 · 登录" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "用户名" input name="name" autocomplete="username" required autofocus; }
                label { "密码" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "登录" }
            }
        }
    }
}

async fn login_page(State(app): State<App>) -> Response {
    let csrf = random_hex(16).unwrap_or_default();
    let cookie = format!(
        "{LOGIN_CSRF}={csrf}; Path=/login; HttpOnly; SameSite=Lax; Max-Age=3600{}",
        if app.secure_cookies { "; Secure" } else { "" }
    );
    (
        [(header::SET_COOKIE, cookie)],
        page("登录", None, None, login_form(&csrf, None)),
    )
        .into_response()
}

async fn login_submit(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let f = Form(parse_form(&body));
    // Login CSRF: the form's token must match the cookie set with the form (double submit).
    let expected = cookie(&headers, LOGIN_CSRF);
    if expected.is_none() || f.get("csrf") != expected.as_deref() {
        return (
            StatusCode::FORBIDDEN,
            page(
                "登录",
                None,
                None,
                login_form(
                    &random_hex(16).unwrap_or_default(),
                    Some("登录表单已过期，请刷新页面后重试"),
                ),
            ),
        )
            .into_response();
    }
    let csrf = expected.unwrap_or_default();
    let name = f.get("name").unwrap_or("").trim().to_string();
    let password = f.get("password").unwrap_or("").to_string();
    let refused = |status: StatusCode, message: &str| {
        (
            status,
            page("登录", None, None, login_form(&csrf, Some(message))),
        )
            .into_response()
    };
    let user = match app.check_login(&name, &password).await {
        Ok(LoginCheck::Ok(user)) => user,
        Ok(LoginCheck::Locked { minutes }) => {
            return refused(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("密码错误次数过多，请{minutes}分钟后再试"),
            );
        }
        Ok(LoginCheck::Wrong) => return refused(StatusCode::UNAUTHORIZED, "用户名或密码错误"),
        Err(e) => return ApiError::internal(e).into_response(),
    };
    match app
        .accounts
        .create_session(&user.name, app.now(), SESSION_TTL_MS)
        .await
    {
        Ok((secret, _)) => (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    session_cookie(&secret, app.secure_cookies),
                ),
                (header::LOCATION, landing(&user).to_string()),
            ],
        )
            .into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    user: PageUser,
    body: Bytes,
) -> Response {
    if let Err(r) = form_of(&user, &body) {
        return r;
    }
    if let Some(s) = cookie(&headers, super::auth::SESSION_COOKIE) {
        let _ = app.accounts.end_session(&s).await;
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear_cookie()),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}

// ---------- inbox ----------

async fn inbox_page(
    State(app): State<App>,
    user: PageUser,
    Query(q): Query<InboxQuery>,
) -> Response {
    let items = match api::inbox_items(&app, &user.user, &q).await {
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
            table.inbox {
                thead { tr { th { "预警" } th { "时限" } th { "项目" } th { "环节" } th { "阶段" } th { "流程" } th { "办理人" } th {} } }
                tbody {
                    @for it in &items {
                        tr class={"row-" (it.colour)} {
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

// ---------- instance and task pages ----------

fn material_status(s: &str) -> &'static str {
    match s {
        "present" => "已提交",
        "missing" => "缺",
        "promised" => "已承诺（容缺）",
        "supplied" => "已补交，待核验",
        "verified" => "已核验",
        "breached" => "逾期未补（违约）",
        _ => "未知",
    }
}

fn event_text(e: &Event, ctx: &EngineCtx) -> Option<String> {
    let node_name = |n: &str| {
        ctx.def
            .node(n)
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| n.to_string())
    };
    Some(match e {
        Event::InstanceStarted { by, .. } => format!("{by} 提交申报"),
        Event::ChannelChosen {
            channel, reason, ..
        } => format!("进入绿色通道 {channel}：{reason}"),
        Event::NodeEntered { node } => format!("进入环节「{}」", node_name(node)),
        Event::NodeSkipped { node, channel } => {
            format!("绿色通道 {channel} 跳过「{}」", node_name(node))
        }
        Event::StageEntered { stage, .. } => format!("进入阶段 {stage}"),
        Event::StageClosed { .. } => "阶段完成".to_string(),
        Event::ElementAttached { element, by, .. } => format!("{by} 挂接要素 {element}"),
        Event::TaskOpened(t) => format!("任务「{}」分派给 {}", t.label, party(&t.assignment)),
        Event::TaskClaimed { by, .. } => format!("{by} 认领任务"),
        Event::TaskDelegated {
            to, by, transfer, ..
        } => format!("{by} {} 给 {to}", if *transfer { "转办" } else { "委托" }),
        Event::TaskDecided {
            decision,
            by,
            to,
            comment,
            ..
        } => format!(
            "{by} {}{}{}",
            match decision {
                shenpi_engine::runtime::event::Decision::Approve => "审批通过",
                shenpi_engine::runtime::event::Decision::ApproveConditional => "容缺通过",
                shenpi_engine::runtime::event::Decision::Reject => "驳回",
                shenpi_engine::runtime::event::Decision::Accept => "核验通过",
                shenpi_engine::runtime::event::Decision::Refuse => "核验不通过",
            },
            to.as_ref()
                .map(|t| format!(" 至「{}」", node_name(t)))
                .unwrap_or_default(),
            comment
                .as_ref()
                .map(|c| format!("：{c}"))
                .unwrap_or_default()
        ),
        Event::ReturnedToApplicant { by, reason, .. } => format!("{by} 退回补正：{reason}"),
        Event::ApplicantResubmitted { by } => format!("{by} 补正后重新提交"),
        Event::Suspended { by, reason, .. } => format!("{by} 中止计时：{reason}"),
        Event::Resumed { by, .. } => format!("{by} 恢复计时"),
        Event::LimitExtended {
            amount, reason, by, ..
        } => format!("{by} 延长时限 {amount}：{reason}"),
        Event::StepOpened { node, .. } => format!("并联审批「{}」开始", node_name(node)),
        Event::JoinFired {
            approved,
            approvals,
            rejects,
            ..
        } => format!(
            "并联汇总：{}（同意 {approvals}，不同意 {rejects}）",
            if *approved { "通过" } else { "不通过" }
        ),
        Event::RejectedBack { to, by, .. } => format!("{by} 驳回至「{}」", node_name(to)),
        Event::PreApproved { materials, by, .. } => {
            format!("{by} 出具预批复（容缺材料：{}）", materials.join("、"))
        }
        Event::PromiseMade { material, .. } => format!("申请人承诺补交 {material}"),
        Event::MaterialSupplied { material, by, .. } => format!("{by} 补交材料 {material}"),
        Event::MaterialVerified { accepted, by, .. } => format!(
            "{by} 核验材料：{}",
            if *accepted { "通过" } else { "不通过" }
        ),
        Event::FormalApproval { .. } => "容缺材料全部核验，转为正式批复".to_string(),
        Event::PromiseBreached { .. } => "承诺逾期未履行".to_string(),
        Event::CreditMarked { material, .. } => format!("记入信用记录（{material}）"),
        Event::Warning { colour, .. } => format!(
            "预警：{}",
            match colour {
                shenpi_engine::runtime::Colour::Red => "红（超期）",
                shenpi_engine::runtime::Colour::Yellow => "黄",
                shenpi_engine::runtime::Colour::Green => "绿",
            }
        ),
        Event::Supervised { .. } => "挂牌督办".to_string(),
        Event::Retimed {
            revision, moves, ..
        } => format!(
            "工作日历第 {revision} 版发布，重新计时：{}",
            moves
                .iter()
                .map(|m| {
                    use shenpi_engine::runtime::event::TimerKind as K;
                    // A yellow point is the start of its day; the others end their last day.
                    let (what, day): (&str, fn(i64) -> String) = match &m.kind {
                        K::Yellow { .. } => ("黄色预警", day_of),
                        K::Due { .. } => ("到期日", due_date),
                        K::Escalation { .. } => ("超期督办", due_date),
                        K::Wait { .. } => ("等待", due_date),
                    };
                    format!(
                        "{what}由 {} 改为 {}",
                        day(m.old_due.as_millisecond()),
                        day(m.new_due.as_millisecond())
                    )
                })
                .collect::<Vec<_>>()
                .join("；")
        ),
        Event::Urged { by, .. } => format!("{by} 催办"),
        Event::Commented { by, text, .. } => format!("{by} 意见：{text}"),
        Event::CarbonCopied { by, to, .. } => format!("{by} 抄送 {}", to.join("、")),
        Event::Withdrawn { by, .. } => format!("{by} 撤回申报"),
        Event::EndReached { node, .. } => format!("流程到达「{}」", node_name(node)),
        Event::InstanceEnded { outcome } => format!(
            "办结：{}",
            shenpi_engine::runtime::view::outcome_name(*outcome)
        ),
        _ => return None,
    })
}

fn party(p: &Party) -> String {
    match p {
        Party::User(u) => u.to_string(),
        Party::Role(r) => format!("角色 {r}"),
        Party::Department(d) => format!("部门 {d}"),
    }
}

fn outcome_text(o: &str) -> &str {
    match o {
        "running" => "办理中",
        "approved" => "已批准",
        "rejected" => "不予批准",
        "withdrawn" => "已撤回",
        "revoked" => "已撤销",
        "not_started" => "未开始",
        other => other,
    }
}

struct Loaded {
    detail: api::InstanceDetail,
    st: shenpi_engine::runtime::InstanceState,
    ctx: std::sync::Arc<EngineCtx>,
    view: shenpi_engine::runtime::InstanceView,
}

async fn load(app: &App, user: &User, id: &str) -> Result<Loaded, ApiError> {
    let detail = api::instance_detail(app, user, id).await?;
    let (_, st, _, ctx) = app
        .instance(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance `{id}`")))?;
    let view = shenpi_engine::runtime::view(&ctx.def, &ctx.cal, &st, timestamp(app.now()));
    Ok(Loaded {
        detail,
        st,
        ctx,
        view,
    })
}

fn diagram_svg(l: &Loaded) -> Markup {
    let (current, done) = api::highlight_of(&l.st);
    let c: Vec<&str> = current.iter().map(String::as_str).collect();
    let d: Vec<&str> = done.iter().map(String::as_str).collect();
    PreEscaped(svg::render(
        &l.ctx.def,
        &Highlight {
            current: &c,
            done: &d,
        },
    ))
}

fn facts(l: &Loaded) -> Markup {
    let fields = &l.ctx.def.workflow.fields;
    let project = l.detail.project.as_ref();
    let values = project
        .map(|p| p.fields.clone())
        .unwrap_or(l.st.project.clone());
    html! {
        table.facts {
            @if let Some(p) = project { tr { th { "项目编号" } td { (p.id) } } tr { th { "申报单位账号" } td { (p.owner) } } }
            @for f in fields {
                @if let Some(v) = values.get(&f.id.value) {
                    tr {
                        th { (f.label.clone().unwrap_or_else(|| f.id.value.clone())) }
                        td { (match v { serde_json::Value::String(s) => s.clone(), other => other.to_string() }) }
                    }
                }
            }
            @if let Some(c) = &l.view.channel { tr { th { "通道" } td { span.green-channel { "绿色通道 " (c) } } } }
        }
    }
}

fn promises_table(l: &Loaded) -> Markup {
    html! {
        @if l.view.promises.is_empty() {
            p.empty { "无容缺承诺。" }
        } @else {
            table.promises {
                thead { tr { th { "材料" } th { "状态" } th { "承诺截止" } th { "预警" } } }
                tbody {
                    @for p in &l.view.promises {
                        @let name = l.ctx.def.workflow.materials.iter().find(|m| m.id.value == p.material.as_str()).and_then(|m| m.name.clone()).unwrap_or_else(|| p.material.to_string());
                        tr.promise data-material=(p.material) {
                            td { (name) }
                            td { (if p.breached { "违约" } else { match p.status { shenpi_engine::runtime::state::PromiseStatus::Open => "待补交", shenpi_engine::runtime::state::PromiseStatus::Supplied => "已补交待核验", shenpi_engine::runtime::state::PromiseStatus::Verified => "已核验" } }) }
                            td.due { @if let Some(c) = &p.clock { @if let Some(d) = c.due { (due_date(d.as_millisecond())) } " （" (days_text(Some(c.days_left))) "）" (provisional_mark(c.provisional, c.due.map(|d| d.as_millisecond()))) } }
                            td { @if let Some(c) = &p.clock { (colour_badge(super::engine::colour_name(c.colour))) } }
                        }
                    }
                }
            }
        }
    }
}

fn elements_block(l: &Loaded) -> Markup {
    let stage_name = |s: &str| {
        l.ctx
            .def
            .workflow
            .stages
            .iter()
            .find(|x| x.id.value == s)
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| s.to_string())
    };
    let element_name = |e: &str| {
        l.ctx
            .def
            .workflow
            .elements
            .iter()
            .find(|x| x.id.value == e)
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| e.to_string())
    };
    html! {
        @if let Some(s) = &l.view.stage {
            h3 { "当前阶段：" (stage_name(&s.stage)) @if let Some(c) = &s.clock { " " (colour_badge(super::engine::colour_name(c.colour))) " " (days_text(Some(c.days_left))) @if let Some(d) = c.due { " · 截止 " (due_date(d.as_millisecond())) } (provisional_mark(c.provisional, c.due.map(|d| d.as_millisecond()))) } }
            table.elements {
                thead { tr { th { "要素" } th { "责任部门" } th { "状态" } th { "时限" } } }
                tbody { @for e in &s.elements {
                    tr { td { (element_name(&e.element)) } td { (e.from) }
                         td { @if e.attached { "已挂接" } @else if e.may_carry { "缺（可带缺项转入下阶段）" } @else { "缺" } }
                         td { @if let Some(c) = &e.clock { (colour_badge(super::engine::colour_name(c.colour))) " " (days_text(Some(c.days_left))) (provisional_mark(c.provisional, c.due.map(|d| d.as_millisecond()))) } } }
                } }
            }
        }
        @if !l.view.elements.is_empty() {
            h3 { "已挂接要素（按阶段）" }
            ul.ledger { @for e in &l.view.elements {
                li { strong { (e.stage.as_deref().map(stage_name).unwrap_or_default()) } " · " (element_name(&e.element)) " · " (e.by) " · " code { (e.fields.to_string()) } }
            } }
        }
        @if l.view.outstanding.iter().any(|o| !o.resolved) {
            h3 { "带缺项" }
            ul { @for o in l.view.outstanding.iter().filter(|o| !o.resolved) {
                li { (stage_name(&o.stage)) " · " (element_name(&o.element)) @if let Some(c) = &o.clock { " " (colour_badge(super::engine::colour_name(c.colour))) " " (days_text(Some(c.days_left))) (provisional_mark(c.provisional, c.due.map(|d| d.as_millisecond()))) } }
            } }
        }
    }
}

fn history(l: &Loaded) -> Markup {
    html! {
        ol.timeline {
            @for h in &l.detail.history {
                @if let Ok(ev) = serde_json::from_value::<Event>(h.event.clone()) {
                    @if let Some(t) = event_text(&ev, &l.ctx) {
                        li { time { (datetime(h.at)) } " " (t) }
                    }
                }
            }
        }
        @if !l.detail.audit.is_empty() {
            details { summary { "操作审计（谁、何时、从何处）" }
                table.audit { @for a in &l.detail.audit {
                    tr { td { (datetime(a.at)) } td { (a.user) } td { (a.remote.clone().unwrap_or_default()) } td { (a.action) } td { (a.outcome) } }
                } }
            }
        }
    }
}

fn task_row(t: &TaskView) -> Markup {
    html! {
        tr { td { (colour_badge(super::engine::colour_name(t.colour))) } td { (t.label) } td { (party(&t.assignment)) @if let Some(c) = &t.claimed_by { "（" (c) " 已认领）" } }
             td { (days_text(t.days_left)) @if let Some(c) = &t.clock { @if let Some(d) = c.due { br; small { "截止 " (due_date(d.as_millisecond())) } } (provisional_mark(c.provisional, c.due.map(|d| d.as_millisecond()))) } } }
    }
}

async fn instance_page(
    State(app): State<App>,
    user: PageUser,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let l = match load(&app, &user.user, &id).await {
        Ok(l) => l,
        Err(e) => return fail(&user, e),
    };
    let flash = q.get("done").map(|d| Flash {
        ok: true,
        text: format!("已办理：{d}"),
    });
    let is_party = l
        .detail
        .project
        .as_ref()
        .is_some_and(|p| policy::is_project_party(&user.user, p));
    let open_promises: Vec<_> = l
        .view
        .promises
        .iter()
        .filter(|p| matches!(p.status, shenpi_engine::runtime::state::PromiseStatus::Open))
        .collect();
    let title = l
        .detail
        .project
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| id.clone());
    let body = html! {
        h1 { (title) }
        p.status { "实例 " code { (id) } " · 流程 " (l.ctx.def.workflow.name) " v" (l.detail.def_version)
            " · 状态：" strong.outcome { (outcome_text(&l.view.outcome)) }
            @if l.view.with_applicant { " · " span.warn { "已退回申请人补正" } } }
        div.grid {
            section { h2 { "项目信息" } (facts(&l)) }
            section {
                h2 { "当前待办" }
                @if l.view.tasks.is_empty() { p.empty { "无。" } } @else {
                    table { tbody { @for t in &l.view.tasks { (task_row(t)) } } }
                    ul { @for t in &l.view.tasks { li { a href={"/instances/" (id) "/tasks/" (t.id)} { "办理「" (t.label) "」" } } } }
                }
                h2 { "容缺承诺" }
                (promises_table(&l))
                @if !l.view.pre_approvals.is_empty() {
                    p { @for p in &l.view.pre_approvals { span.preapproval { (if p.formal { "正式批复" } else { "预批复" }) "（" (p.node) "）" } " " } }
                }
            }
        }
        section { h2 { "流程图" } div.diagram { (diagram_svg(&l)) }
            p.legend { span.lg-current { "当前" } span.lg-done { "已办" } span.lg-back { "驳回路径（虚线）" } } }
        section { h2 { "要素台账" } (elements_block(&l)) }
        @if is_party || user.user.has("admin") {
            section.applicant {
                h2 { "申请人操作" }
                @for p in &open_promises {
                    form method="post" action={"/instances/" (id)} class="inline" {
                        (hidden(&user))
                        input type="hidden" name="action" value="supply";
                        input type="hidden" name="material" value=(p.material);
                        button type="submit" { "补交材料 " (p.material) }
                    }
                }
                @if l.view.with_applicant {
                    form method="post" action={"/instances/" (id)} class="inline" {
                        (hidden(&user)) input type="hidden" name="action" value="resume";
                        button type="submit" { "补正完毕，重新提交" }
                    }
                }
                @if l.view.outcome == "running" {
                    form method="post" action={"/instances/" (id)} class="inline" {
                        (hidden(&user)) input type="hidden" name="action" value="withdraw";
                        button type="submit" class="danger" { "撤回申报" }
                    }
                }
            }
        }
        section {
            h2 { "挂接要素" }
            form method="post" action={"/instances/" (id)} {
                (hidden(&user)) input type="hidden" name="action" value="attach";
                label { "要素 " select name="element" { @for e in &l.ctx.def.workflow.elements { option value=(e.id.value) { (e.name.clone().unwrap_or_else(|| e.id.value.clone())) } } } }
                label { "字段（JSON）" input name="fields" value="{}" size="40"; }
                button type="submit" { "挂接" }
            }
        }
        section { h2 { "办理历程" } (history(&l)) }
    };
    page(&title, Some(&user), flash.as_ref(), body).into_response()
}

async fn instance_act(
    State(app): State<App>,
    user: PageUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = match form_of(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let cmd = match f.get("action") {
        Some("supply") => Command::SupplyMaterial {
            material: f.text("material").unwrap_or_default().into(),
        },
        Some("resume") => Command::Resume { task: None },
        Some("withdraw") => Command::Withdraw {
            reason: f.text("reason"),
        },
        Some("comment") => Command::Comment {
            task: None,
            text: f.text("text").unwrap_or_default(),
        },
        Some("attach") => {
            let fields = match serde_json::from_str(f.get("fields").unwrap_or("{}")) {
                Ok(v) => v,
                Err(e) => return fail(&user, ApiError::invalid(format!("字段不是合法 JSON：{e}"))),
            };
            Command::AttachElement {
                element: f.text("element").unwrap_or_default().into(),
                fields,
            }
        }
        _ => return fail(&user, ApiError::invalid("未知操作")),
    };
    let label = api::command_name(&cmd);
    match api::run_command_with(&app, &caller(&user), &id, cmd, form_key(&user, &f), None).await {
        Ok(_) => Redirect::to(&format!("/instances/{id}?done={label}")).into_response(),
        Err(e) => fail(&user, e),
    }
}

fn limit_text(l: &RawLimit) -> String {
    match l {
        RawLimit::Days(d) => format!("{d}wd"),
        RawLimit::Text(t) => t.clone(),
    }
}

async fn task_page(
    State(app): State<App>,
    user: PageUser,
    Path((id, task)): Path<(String, u32)>,
) -> Response {
    let l = match load(&app, &user.user, &id).await {
        Ok(l) => l,
        Err(e) => return fail(&user, e),
    };
    render_task(&user, &l, &id, task, None).into_response()
}

fn render_task(
    user: &PageUser,
    l: &Loaded,
    id: &str,
    task: u32,
    flash: Option<&Flash>,
) -> Html<String> {
    let t = l.view.tasks.iter().find(|t| t.id == TaskId(task));
    let spec = l.st.task(TaskId(task));
    let node_id = spec.map(|s| s.spec.node.to_string()).unwrap_or_default();
    let node = l.ctx.def.node(&node_id);
    let node_name = node
        .and_then(|n| n.name.clone())
        .unwrap_or_else(|| node_id.clone());
    let materials = api::materials_of(&l.ctx, &l.st, &node_id);
    let actions: Vec<Action> = node
        .map(|n| n.actions.iter().map(|a| a.value).collect())
        .unwrap_or_default();
    let is_verify =
        spec.is_some_and(|s| s.spec.kind == shenpi_engine::runtime::event::TaskKind::Verify);
    let is_cosign =
        spec.is_some_and(|s| s.spec.kind == shenpi_engine::runtime::event::TaskKind::Cosign);
    let is_parallel = node.is_some_and(|n| n.ty.value == NodeType::Parallel);
    let allowed = |a: Action| {
        !is_verify
            && !is_cosign
            && (actions.contains(&a)
                || (is_parallel && matches!(a, Action::Approve | Action::Reject | Action::Comment)))
    };
    let pool = t.is_some_and(|t| t.claimed_by.is_none() && !matches!(t.assignment, Party::User(_)));
    let conditional = node.and_then(|n| n.conditional.as_ref());
    let title = l
        .detail
        .project
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| id.to_string());
    let body = html! {
        p.crumbs { a href="/inbox" { "待办" } " › " a href={"/instances/" (id)} { (title) } " › " (node_name) }
        h1 { (node_name) @if let Some(t) = t { " " (colour_badge(super::engine::colour_name(t.colour))) } }
        @match t {
            Some(t) => {
                p.taskmeta {
                    span.days { (days_text(t.days_left)) }
                    @if let Some(c) = &t.clock { @if let Some(d) = c.due { " · 截止 " (due_date(d.as_millisecond())) } (provisional_mark(c.provisional, c.due.map(|d| d.as_millisecond()))) " · 时限 " (c.limit) }
                    " · 办理人 " (party(&t.assignment))
                    @if let Some(c) = &t.claimed_by { "（" (c) " 已认领）" }
                    @if l.view.channel.is_some() { " · " span.green-channel { "绿色通道" } }
                    @if t.supervised { " · " span.supervised { "挂牌督办" } }
                    @if t.suspended { " · " span.warn { "计时中止" } }
                }
            }
            None => { p.warn { "该任务已办结或不存在。" a href={"/instances/" (id)} { "查看实例" } } }
        }
        div.grid {
            section { h2 { "项目信息" } (facts(l)) }
            section {
                h2 { "申报材料" }
                @if materials.is_empty() { p.empty { "本环节无材料要求。" } } @else {
                    table.materials {
                        thead { tr { th { "材料" } th { "类别" } th { "状态" } th { "承诺截止" } } }
                        tbody { @for m in &materials {
                            tr data-material=(m.material) class={"mat-" (m.status)} {
                                td { (m.name.clone().unwrap_or_else(|| m.material.clone())) }
                                td { @if m.red_line { span.redline { "红线" } } @else if m.waivable { "可容缺" } @else { "—" } }
                                td { (material_status(&m.status)) }
                                td { @if let Some(d) = m.due { (due_date(d)) } }
                            }
                        } }
                    }
                }
                h2 { "容缺承诺" }
                (promises_table(l))
            }
        }
        @if t.is_some() {
            section.actions {
                h2 { "办理" }
                @if pool {
                    form method="post" id="act-claim" {
                        (hidden(user)) input type="hidden" name="action" value="claim";
                        button type="submit" { "认领任务" }
                    }
                }
                @if is_verify {
                    form method="post" id="act-verify" {
                        (hidden(user)) input type="hidden" name="action" value="verify";
                        label { "核验意见 " input name="reason" size="40"; }
                        button type="submit" name="accepted" value="true" { "核验通过" }
                        button type="submit" name="accepted" value="false" class="danger" { "核验不通过" }
                    }
                }
                @if is_cosign {
                    form method="post" id="act-cosign-decide" {
                        (hidden(user)) input type="hidden" name="action" value="approve";
                        label { "意见 " input name="comment" size="40"; }
                        button type="submit" { "会签同意" }
                    }
                }
                @if allowed(Action::Approve) {
                    form method="post" id="act-approve" {
                        (hidden(user)) input type="hidden" name="action" value="approve";
                        label { "审批意见 " input name="comment" size="50" placeholder="同意"; }
                        button type="submit" { "审批通过" }
                    }
                }
                @if allowed(Action::Conditional) {
                    @if let Some(c) = conditional {
                        form method="post" id="act-conditional" class="conditional" {
                            (hidden(user)) input type="hidden" name="action" value="conditional";
                            fieldset {
                                legend { "容缺通过（申请人书面承诺限期补交）" }
                                @for m in &materials {
                                    @let waivable = c.waivable.iter().any(|w| w.value == m.material);
                                    label.check title=(if m.red_line { "红线材料不得容缺" } else { "" }) {
                                        input type="checkbox" name="waive" value=(m.material) disabled[!waivable || m.red_line];
                                        (m.name.clone().unwrap_or_else(|| m.material.clone()))
                                        @if m.red_line { " " span.redline { "红线，不可容缺" } }
                                    }
                                }
                                label { "承诺补交时限 " input name="limit" value=(limit_text(&c.limit.value)) size="6"; " （不得超过规则的 " (limit_text(&c.limit.value)) "）" }
                                label { "意见 " input name="comment" size="40" placeholder="同意容缺受理"; }
                            }
                            button type="submit" { "容缺通过" }
                        }
                    }
                }
                @if allowed(Action::Reject) {
                    form method="post" id="act-reject" {
                        (hidden(user)) input type="hidden" name="action" value="reject";
                        label { "驳回至 " select name="to" {
                            @for r in node.map(|n| n.reject_to.clone()).unwrap_or_default() {
                                option value=(r.value) { (l.ctx.def.node(&r.value).and_then(|n| n.name.clone()).unwrap_or_else(|| r.value.clone())) }
                            }
                            option value="" { "不予批准（终止）" }
                        } }
                        label { "理由 " input name="reason" size="40" required; }
                        button type="submit" class="danger" { "驳回" }
                    }
                }
                @if allowed(Action::Return) {
                    form method="post" id="act-return" {
                        (hidden(user)) input type="hidden" name="action" value="return";
                        label { "补正原因 " input name="reason" size="40" required; }
                        @for m in &materials { label.check { input type="checkbox" name="materials" value=(m.material); (m.name.clone().unwrap_or_else(|| m.material.clone())) } }
                        button type="submit" { "退回补正" }
                    }
                }
                @if allowed(Action::Delegate) {
                    form method="post" id="act-delegate" {
                        (hidden(user)) input type="hidden" name="action" value="delegate";
                        label { "委托给（用户名） " input name="to" size="12" required; }
                        label.check { input type="checkbox" name="transfer" value="true"; "转办（移交）" }
                        button type="submit" { "委托" }
                    }
                }
                @if allowed(Action::Cosign) {
                    form method="post" id="act-cosign" {
                        (hidden(user)) input type="hidden" name="action" value="cosign";
                        label { "加签人（用户名） " input name="user" size="12" required; }
                        button type="submit" { "加签" }
                    }
                }
                @if allowed(Action::Extend) {
                    form method="post" id="act-extend" {
                        (hidden(user)) input type="hidden" name="action" value="extend";
                        label { "延长 " input name="limit" size="5" value="5wd"; }
                        label { "理由 " input name="reason" size="30" required; }
                        button type="submit" { "延长时限" }
                    }
                }
                @if allowed(Action::Suspend) {
                    form method="post" id="act-suspend" {
                        (hidden(user)) input type="hidden" name="action" value="suspend";
                        label { "中止原因（听证/专家评审/检测） " input name="reason" size="30" required; }
                        button type="submit" { "中止计时" }
                    }
                }
                form method="post" id="act-comment" {
                    (hidden(user)) input type="hidden" name="action" value="comment";
                    label { "意见/备注 " input name="text" size="50" required; }
                    button type="submit" { "添加意见" }
                }
            }
        }
        section { h2 { "流程图" } div.diagram { (diagram_svg(l)) } }
        section { h2 { "要素台账" } (elements_block(l)) }
        section { h2 { "办理历程" } (history(l)) }
    };
    page(&node_name, Some(user), flash, body)
}

fn task_command(f: &Form, task: TaskId) -> Result<Command, ApiError> {
    let required = |k: &str, what: &str| {
        f.text(k)
            .ok_or_else(|| ApiError::invalid(format!("请填写{what}")))
    };
    Ok(match f.get("action") {
        Some("claim") => Command::Claim { task },
        Some("approve") => Command::Approve {
            task,
            comment: f.text("comment"),
        },
        Some("conditional") => Command::ApproveConditional {
            task,
            waive: f.all("waive").into_iter().map(Into::into).collect(),
            limit: f.text("limit").map(RawLimit::Text),
            comment: f.text("comment"),
        },
        Some("reject") => Command::Reject {
            task,
            to: f.text("to").map(Into::into),
            reason: f.text("reason"),
        },
        Some("return") => Command::Return {
            task,
            reason: required("reason", "补正原因")?,
            materials: f.all("materials").into_iter().map(Into::into).collect(),
        },
        Some("delegate") => Command::Delegate {
            task,
            to: required("to", "委托对象")?.into(),
            transfer: f.get("transfer") == Some("true"),
        },
        Some("cosign") => Command::AddCosigner {
            task,
            user: required("user", "加签人")?.into(),
        },
        Some("extend") => Command::Extend {
            task,
            limit: RawLimit::Text(required("limit", "延长时限")?),
            reason: required("reason", "理由")?,
            step: false,
        },
        Some("suspend") => Command::Suspend {
            task,
            reason: required("reason", "中止原因")?,
        },
        Some("resume") => Command::Resume { task: Some(task) },
        Some("verify") => Command::VerifyMaterial {
            task,
            accepted: f.get("accepted") == Some("true"),
            reason: f.text("reason"),
        },
        Some("comment") => Command::Comment {
            task: Some(task),
            text: required("text", "意见")?,
        },
        Some("urge") => Command::Urge {
            task,
            text: f.text("text"),
        },
        _ => return Err(ApiError::invalid("未知操作")),
    })
}

async fn task_act(
    State(app): State<App>,
    user: PageUser,
    Path((id, task)): Path<(String, u32)>,
    body: Bytes,
) -> Response {
    let f = match form_of(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let result = match task_command(&f, TaskId(task)) {
        Ok(cmd) => {
            let label = api::command_name(&cmd);
            api::run_command_with(&app, &caller(&user), &id, cmd, form_key(&user, &f), None)
                .await
                .map(|r| (label, r))
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((label, _)) => Redirect::to(&format!("/instances/{id}?done={label}")).into_response(),
        Err(e) => match load(&app, &user.user, &id).await {
            Ok(l) => {
                let flash = Flash {
                    ok: false,
                    text: format!("未能办理：{}（{}）", e.body.message, e.body.error),
                };
                (e.status, render_task(&user, &l, &id, task, Some(&flash))).into_response()
            }
            Err(_) => fail(&user, e),
        },
    }
}

// ---------- projects ----------

async fn projects_page(
    State(app): State<App>,
    user: PageUser,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let owner = (!user.user.is_staff()).then_some(user.user.name.as_str());
    let list: Vec<Project> = match app
        .accounts
        .projects(
            owner,
            q.get("q").map(String::as_str).filter(|s| !s.is_empty()),
            200,
        )
        .await
    {
        Ok(l) => l
            .into_iter()
            .filter(|p| policy::can_see_project(&user.user, p))
            .collect(),
        Err(e) => return fail(&user, ApiError::internal(e)),
    };
    let wf = q.get("workflow").cloned();
    let def = match &wf {
        Some(w) => app.catalog.latest(&app.db, w).await.ok().flatten(),
        None => None,
    };
    let body = html! {
        h1 { "项目" }
        form.filters method="get" { label { "搜索 " input name="q" value=(q.get("q").cloned().unwrap_or_default()); } button { "搜索" } }
        table.projects {
            thead { tr { th { "编号" } th { "名称" } th { "流程" } th { "申报单位" } th { "实例" } } }
            tbody { @for p in &list { tr {
                td { (p.id) } td { (p.name) } td { (p.workflow_id) } td { (p.owner) }
                td { @for i in &p.instances { a href={"/instances/" (i)} { (i) } " " } }
            } } }
        }
        @if policy::can_start(&user.user) {
            h2 { "新项目申报" }
            form method="get" action="/projects" {
                label { "流程 " select name="workflow" { @for id in app.catalog.workflow_ids() { option value=(id) selected[wf.as_deref() == Some(id.as_str())] { (id) } } } }
                button { "选择" }
            }
            @if let Some((_, d)) = &def {
                form method="post" action="/projects" class="newproject" {
                    input type="hidden" name="csrf" value=(user.csrf);
                    input type="hidden" name="idem" value=(idem());
                    input type="hidden" name="workflow" value=(d.id());
                    label { "项目名称 " input name="name" required size="40"; }
                    @for fd in &d.workflow.fields {
                        @if fd.id.value != "name" {
                            label {
                                (fd.label.clone().unwrap_or_else(|| fd.id.value.clone())) @if fd.required { " *" } " "
                                @if !fd.values.is_empty() {
                                    select name={"f." (fd.id.value)} { option value="" { "—" } @for v in &fd.values { option value=(v.value) { (v.value) } } }
                                } @else if matches!(fd.ty.value, shenpi_engine::model::FieldType::Bool) {
                                    select name={"f." (fd.id.value)} { option value="" { "—" } option value="true" { "是" } option value="false" { "否" } }
                                } @else {
                                    input name={"f." (fd.id.value)} size="20";
                                }
                            }
                        }
                    }
                    button type="submit" { "提交申报" }
                }
            }
        }
    };
    page("项目", Some(&user), None, body).into_response()
}

async fn project_create(State(app): State<App>, user: PageUser, body: Bytes) -> Response {
    let f = match form_of(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(workflow) = f.text("workflow") else {
        return fail(&user, ApiError::invalid("请选择流程"));
    };
    let Ok(Some((_, def))) = app.catalog.latest(&app.db, &workflow).await else {
        return fail(&user, ApiError::invalid("未知流程"));
    };
    let name = f.text("name").unwrap_or_default();
    let mut fields = serde_json::Map::new();
    if def.workflow.fields.iter().any(|x| x.id.value == "name") {
        fields.insert("name".into(), name.clone().into());
    }
    for fd in &def.workflow.fields {
        let Some(v) = f.text(&format!("f.{}", fd.id.value)) else {
            continue;
        };
        use shenpi_engine::model::FieldType as T;
        let value = match fd.ty.value {
            T::Number => v
                .parse::<f64>()
                .map(serde_json::Value::from)
                .unwrap_or(v.into()),
            T::Int => v
                .parse::<i64>()
                .map(serde_json::Value::from)
                .unwrap_or(v.into()),
            T::Bool => serde_json::Value::Bool(v == "true"),
            T::List => serde_json::Value::Array(v.split(',').map(|s| s.trim().into()).collect()),
            _ => v.into(),
        };
        fields.insert(fd.id.value.clone(), value);
    }
    let c = caller(&user);
    let req = api::NewProject {
        name,
        workflow_id: workflow,
        fields: serde_json::Value::Object(fields),
    };
    let created = api::create_project(State(app.clone()), c.clone(), axum::Json(req)).await;
    let p = match created {
        Ok((_, axum::Json(p))) => p,
        Err(e) => return fail(&user, e),
    };
    let mut headers = HeaderMap::new();
    if let Some(k) = f.text("idem")
        && let Ok(v) = k.parse()
    {
        headers.insert("idempotency-key", v);
    }
    match api::start_instance(
        State(app.clone()),
        c,
        headers,
        axum::Json(api::StartRequest {
            project_id: p.id.clone(),
            version: None,
            channel: None,
        }),
    )
    .await
    {
        Ok((_, axum::Json(r))) => {
            Redirect::to(&format!("/instances/{}?done=start", r.instance)).into_response()
        }
        Err(e) => fail(&user, e),
    }
}

// ---------- workflow editor ----------

async fn workflows_page(State(app): State<App>, user: PageUser) -> Response {
    if !policy::can_validate(&user.user) {
        return fail(&user, ApiError::forbidden("流程规则仅限政策法规人员"));
    }
    let mut rows = Vec::new();
    for id in app.catalog.workflow_ids() {
        let versions = app.accounts.versions(&id).await.unwrap_or_default();
        let name = app
            .catalog
            .latest(&app.db, &id)
            .await
            .ok()
            .flatten()
            .map(|(_, d)| d.workflow.name.clone())
            .unwrap_or_default();
        rows.push((id, name, versions));
    }
    let body = html! {
        h1 { "流程规则" }
        p { a.button href="/workflows/editor" { "新建 / 上传规则" } }
        table.workflows {
            thead { tr { th { "编号" } th { "名称" } th { "版本" } th {} } }
            tbody { @for (id, name, versions) in &rows { tr {
                td { (id) } td { (name) }
                td { @for (v, _, at) in versions { span.version title=(datetime(*at)) { "v" (v) } " " } }
                td { a href={"/workflows/editor?id=" (id)} { "编辑" } }
            } } }
        }
    };
    page("流程规则", Some(&user), None, body).into_response()
}

struct EditorState<'a> {
    id: Option<String>,
    yaml: &'a str,
    diagnostics: Vec<shenpi_engine::diag::Diagnostic>,
    preview: Option<String>,
}

async fn editor_view(
    app: &App,
    user: &PageUser,
    s: EditorState<'_>,
    flash: Option<&Flash>,
) -> Html<String> {
    let versions = match &s.id {
        Some(id) => app.accounts.versions(id).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let error_lines: HashMap<u32, Vec<&shenpi_engine::diag::Diagnostic>> =
        s.diagnostics.iter().fold(HashMap::new(), |mut m, d| {
            m.entry(d.line).or_default().push(d);
            m
        });
    let body = html! {
        h1 { "流程规则编辑" @if let Some(id) = &s.id { " · " (id) } }
        form method="post" action="/workflows/editor" id="editor" {
            input type="hidden" name="csrf" value=(user.csrf);
            @if let Some(id) = &s.id { input type="hidden" name="id" value=(id); }
            div.editor {
                textarea name="yaml" id="yaml" rows="30" cols="100" spellcheck="false" { (s.yaml) }
            }
            div.buttons {
                button type="submit" name="op" value="validate" id="btn-validate" { "校验" }
                @if policy::can_publish(&user.user) { button type="submit" name="op" value="publish" id="btn-publish" { "发布为新版本" } }
            }
        }
        @if !s.diagnostics.is_empty() {
            section.diagnostics {
                h2 { "校验结果：" (s.diagnostics.iter().filter(|d| d.is_error()).count()) " 个错误" }
                ul id="diagnostics" { @for d in &s.diagnostics {
                    li class={"diag " (if d.is_error() { "error" } else { "warning" })} data-line=(d.line) data-col=(d.col) {
                        a href="#" class="goto" { "第 " (d.line) " 行，第 " (d.col) " 列" } " "
                        code { (d.code) } " " (d.message)
                        @if let Some(h) = &d.help { br; small { "提示：" (h) } }
                    }
                } }
                h3 { "标注" }
                pre.listing { @for (i, line) in s.yaml.lines().enumerate() {
                    @let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
                    @if let Some(ds) = error_lines.get(&n) {
                        span.line.err id={"L" (n)} data-line=(n) { span.ln { (n) } (line) }
                        @for d in ds { span.marker { span.ln { "" } (" ".repeat(d.col.saturating_sub(1) as usize)) "^ " (d.code) " " (d.message) } }
                    } @else if error_lines.keys().any(|e| e.abs_diff(n) <= 2) {
                        span.line id={"L" (n)} { span.ln { (n) } (line) }
                    }
                } }
            }
        }
        @if let Some(svg) = &s.preview { section { h2 { "流程图预览" } div.diagram { (PreEscaped(svg)) } } }
        @if !versions.is_empty() {
            section {
                h2 { "版本历史" }
                table.versions { thead { tr { th { "版本" } th { "发布时间" } th { "哈希" } th { "与上一版差异" } } }
                    tbody { @for (v, hash, at) in &versions { tr {
                        td { "v" (v) } td { (datetime(*at)) } td { code { (hash.get(..12).unwrap_or(hash)) } }
                        td { @if *v > 1 { @if let Some(id) = &s.id { a href={"/workflows/" (id) "/diff?from=" (v - 1) "&to=" (v)} { "v" (v - 1) " → v" (v) } } } }
                    } } }
                }
            }
        }
    };
    page("流程规则编辑", Some(user), flash, body)
}

async fn editor_page(
    State(app): State<App>,
    user: PageUser,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !policy::can_validate(&user.user) {
        return fail(&user, ApiError::forbidden("流程规则仅限政策法规人员"));
    }
    let id = q.get("id").cloned();
    let (yaml, preview) = match &id {
        Some(id) => match app.db.latest_definition(id).await {
            Ok(Some(row)) => {
                let preview = app
                    .catalog
                    .latest(&app.db, id)
                    .await
                    .ok()
                    .flatten()
                    .map(|(_, d)| svg::render(&d, &Highlight::NONE));
                (row.yaml, preview)
            }
            _ => return fail(&user, ApiError::not_found("没有该流程")),
        },
        None => (String::new(), None),
    };
    editor_view(
        &app,
        &user,
        EditorState {
            id,
            yaml: &yaml,
            diagnostics: Vec::new(),
            preview,
        },
        None,
    )
    .await
    .into_response()
}

async fn editor_submit(State(app): State<App>, user: PageUser, body: Bytes) -> Response {
    let f = match form_of(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !policy::can_validate(&user.user) {
        return fail(&user, ApiError::forbidden("流程规则仅限政策法规人员"));
    }
    let yaml = f.get("yaml").unwrap_or("").replace("\r\n", "\n");
    let publish = f.get("op") == Some("publish");
    if publish && !policy::can_publish(&user.user) {
        return fail(&user, ApiError::forbidden("只有政策法规人员可以发布"));
    }
    match app.catalog.check(&yaml) {
        Err(diags) => {
            let flash = Flash {
                ok: false,
                text: format!("校验未通过：{} 个问题", diags.len()),
            };
            let v = editor_view(
                &app,
                &user,
                EditorState {
                    id: f.text("id"),
                    yaml: &yaml,
                    diagnostics: diags,
                    preview: None,
                },
                Some(&flash),
            )
            .await;
            (StatusCode::UNPROCESSABLE_ENTITY, v).into_response()
        }
        Ok(def) => {
            let preview = Some(svg::render(&def, &Highlight::NONE));
            let warnings = shenpi_engine::validate::validate(&def.workflow, &app.catalog.ctx);
            let id = def.id().to_string();
            if publish {
                match api::publish_yaml(&app, &user.user, user.remote.clone(), &yaml).await {
                    Ok(p) => {
                        let flash = Flash {
                            ok: true,
                            text: format!(
                                "已发布 {} v{}（运行中的实例保持原版本）",
                                p.workflow_id, p.version
                            ),
                        };
                        editor_view(
                            &app,
                            &user,
                            EditorState {
                                id: Some(id),
                                yaml: &yaml,
                                diagnostics: warnings,
                                preview,
                            },
                            Some(&flash),
                        )
                        .await
                        .into_response()
                    }
                    Err(e) => fail(&user, e),
                }
            } else {
                let flash = Flash {
                    ok: true,
                    text: "校验通过，可以发布".to_string(),
                };
                editor_view(
                    &app,
                    &user,
                    EditorState {
                        id: Some(id),
                        yaml: &yaml,
                        diagnostics: warnings,
                        preview,
                    },
                    Some(&flash),
                )
                .await
                .into_response()
            }
        }
    }
}

async fn diff_page(
    State(app): State<App>,
    user: PageUser,
    Path(id): Path<String>,
    Query(q): Query<api::DiffQuery>,
) -> Response {
    let text = match api::diff_text(&app, &id, q.from, q.to).await {
        Ok(t) => t,
        Err(e) => return fail(&user, e),
    };
    let body = html! {
        p.crumbs { a href="/workflows" { "流程规则" } " › " a href={"/workflows/editor?id=" (id)} { (id) } }
        h1 { (id) " v" (q.from) " → v" (q.to) }
        pre.diff { @for line in text.lines() {
            @let cls = if line.starts_with("+++") || line.starts_with("---") { "hdr" } else if line.starts_with('+') { "add" } else if line.starts_with('-') { "del" } else if line.starts_with("@@") { "hunk" } else { "ctx" };
            span class=(cls) { (line) "\n" }
        } }
    };
    page("版本差异", Some(&user), None, body).into_response()
}

// ---------- dashboard ----------

fn bar_chart(data: &[(String, i64)], label: impl Fn(&str) -> String) -> Markup {
    let max = data.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let h = 24 * data.len() as i64 + 10;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width="420" height=(h) class="chart" {
            @for (i, (k, n)) in data.iter().enumerate() {
                @let y = i as i64 * 24 + 4;
                @let w = 260 * n / max;
                text x="0" y=(y + 15) font-size="12" { (label(k)) }
                rect x="110" y=(y) width=(w.max(1)) height="18" class={"bar bar-" (k)} {}
                text x=(115 + w) y=(y + 14) font-size="12" { (n) }
            }
        }
    }
}

/// (time, green, yellow, red)
type Snapshot = (i64, i64, i64, i64);

fn history_chart(h: &[Snapshot]) -> Markup {
    if h.len() < 2 {
        return html! { p.empty { "数据点不足（看板每 10 分钟记录一次各色任务数）。" } };
    }
    let (w, ht) = (600i64, 160i64);
    let t0 = h.first().map_or(0, |x| x.0);
    let t1 = h.last().map_or(1, |x| x.0).max(t0 + 1);
    let max = h
        .iter()
        .map(|x| x.1.max(x.2).max(x.3))
        .max()
        .unwrap_or(1)
        .max(1);
    let pts = |f: &dyn Fn(&Snapshot) -> i64| -> String {
        h.iter()
            .map(|x| {
                format!(
                    "{},{}",
                    30 + (x.0 - t0) * (w - 40) / (t1 - t0),
                    ht - 20 - f(x) * (ht - 30) / max
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(w) height=(ht) class="chart" {
            line x1="30" y1=(ht - 20) x2=(w - 10) y2=(ht - 20) stroke="#999" {}
            polyline points=(pts(&|x| x.1)) fill="none" stroke="#389e0d" stroke-width="2" {}
            polyline points=(pts(&|x| x.2)) fill="none" stroke="#d4b106" stroke-width="2" {}
            polyline points=(pts(&|x| x.3)) fill="none" stroke="#cf1322" stroke-width="2" {}
            text x="30" y=(ht - 4) font-size="11" { (datetime(t0)) }
            text x=(w - 120) y=(ht - 4) font-size="11" { (datetime(t1)) }
            text x="0" y="14" font-size="11" { (max) }
        }
    }
}

async fn dashboard_page(State(app): State<App>, user: PageUser) -> Response {
    if !policy::can_see_dashboard(&user.user) {
        return fail(&user, ApiError::forbidden("督办看板仅限督办与政策人员"));
    }
    let d = match api::dashboard_data(&app).await {
        Ok(d) => d,
        Err(e) => return fail(&user, e),
    };
    let colour_label = |c: &str| match c {
        "red" => "红（超期）".to_string(),
        "yellow" => "黄（临期）".to_string(),
        "green" => "绿".to_string(),
        o => o.to_string(),
    };
    let row = |r: &shenpi_adapters::store::InboxRow| {
        html! {
            tr { td { (colour_badge(&r.colour)) } td { a href={"/instances/" (r.instance)} { (r.instance) } } td { (r.node) } td { (r.department.clone().unwrap_or_default()) } td { (r.assignee.as_deref().map(super::engine::assignee_label).unwrap_or_default()) } td { @if let Some(x) = r.due { (due_date(x)) } } }
        }
    };
    let runways = app.catalog.runways(app.now());
    let refused = match super::timers::refused_timers(&app, 100).await {
        Ok(r) => r,
        Err(e) => return fail(&user, e),
    };
    let body = html! {
        h1 { "督办看板" }
        @for r in &runways {
            @if r.is_short() {
                p.flash.err.calendar-runway role="alert" {
                    "工作日历 " (r.calendar) " 的正式放假安排只到 " (r.last_day)
                    @if r.days_left >= 0 { "（还剩 " (r.days_left) " 天）" } @else { "（已过 " (-r.days_left) " 天）" }
                    "：" (r.provisional.0) "–" (r.provisional.1) " 年为暂定日历（按《全国年节及纪念日放假办法》推算），其后的期限标「暂定」。国务院办公厅通知发布后请在 "
                    a href="/calendars" { "工作日历" } " 页导入。"
                }
            } @else {
                p.muted.calendar-provisional {
                    "工作日历 " (r.calendar) "：正式放假安排至 " (r.last_day) "，" (r.provisional.0) "–" (r.provisional.1)
                    " 年为暂定（按《全国年节及纪念日放假办法》推算）。" a href="/calendars" { "查看" }
                }
            }
        }
        @if !refused.is_empty() {
            section.refused-timers {
                h2 { "未能触发的定时器（" (refused.len()) "）" }
                p.flash.err role="alert" {
                    "以下预警或催办尚未发出：审批引擎拒绝了定时器的触发。定时器仍在等待，不会丢失；工作日历或流程定义更新后自动重试，否则每小时重试一次。"
                }
                table { thead { tr { th { "项目名称" } th { "节点名称" } th { "定时器" } th { "应触发时间" } th { "拒绝原因" } th { "拒绝时间" } th { "下次重试" } } }
                    tbody { @for r in &refused { tr {
                        td { a href={"/instances/" (r.instance)} { (r.project_name) } }
                        td { (r.subject) } td { (r.purpose) } td { (datetime(r.due)) }
                        td title={(r.code) "：" (r.message)} { (r.reason) }
                        td { (datetime(r.refused_at)) }
                        td { @match r.retry_at { Some(x) => (datetime(x)), None => "即将重试" } }
                    } } } }
            }
        }
        div.grid {
            section { h2 { "在办任务（按预警颜色）" } (bar_chart(&d.by_colour, colour_label)) }
            section { h2 { "按阶段" } (bar_chart(&d.by_stage, |s| if s.is_empty() { "（无阶段）".to_string() } else { s.to_string() })) }
            section { h2 { "按部门" } (bar_chart(&d.by_department, |s| s.to_string())) }
            section { h2 { "实例状态" } (bar_chart(&d.by_status, |s| outcome_text(s).to_string())) }
        }
        section { h2 { "各色任务数走势" } (history_chart(&d.history)) }
        section { h2 { "超期清单" }
            @if d.overdue.is_empty() { p.empty { "无超期任务。" } } @else {
                table { thead { tr { th {} th { "实例" } th { "环节" } th { "部门" } th { "办理人" } th { "截止" } } } tbody { @for r in &d.overdue { (row(r)) } } } } }
        section { h2 { "挂牌督办" }
            @if d.supervised.is_empty() { p.empty { "无挂牌督办事项。" } } @else {
                table { thead { tr { th {} th { "实例" } th { "环节" } th { "部门" } th { "办理人" } th { "截止" } } } tbody { @for r in &d.supervised { (row(r)) } } } } }
        section { h2 { "7 日内到期的容缺承诺" }
            @if d.promises_due.is_empty() { p.empty { "无。" } } @else {
                table { thead { tr { th { "实例" } th { "材料" } th { "状态" } th { "截止" } } }
                    tbody { @for p in &d.promises_due { tr { td { a href={"/instances/" (p.instance)} { (p.instance) } } td { (p.material) } td { (p.state) } td { @if let Some(x) = p.due { (due_date(x)) } } } } } } } }
    };
    page("督办看板", Some(&user), None, body).into_response()
}
