//! The 督办看板 page: counts by colour, stage, department and status (SVG bars), open tasks by
//! colour over time, the refused timers, overdue and 挂牌督办 lists, promises due within 7 days,
//! and until when the working-day calendar is official.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use shenpi_adapters::store::InboxRow;

use super::super::auth::{PageUser, policy};
use super::super::chrome::{colour_badge, datetime, due_date, fail, outcome_text, page, today_zh};
use super::super::commands::command_label_zh;
use super::super::demo_time;
use super::super::engine::timestamp;
use super::super::error::ApiError;
use super::super::form::hidden;
use super::super::inbox::task_name;
use super::super::names::{Everywhere, WorkflowNames};
use super::super::state::App;
use super::super::timers::refused_timers;
use super::api::dashboard_data;

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

/// One row of the overdue and 挂牌督办 lists, in the workflow's words.
struct BoardRow {
    instance: String,
    task: String,
    colour: String,
    project: String,
    task_name: String,
    stage: Option<String>,
    stage_name: String,
    department: Option<String>,
    department_name: String,
    holder: String,
    due: Option<i64>,
    days_overdue: Option<i64>,
    supervised: bool,
    /// Whether the viewer oversees a department of the task's workflow (the engine's rule for
    /// who may 催办 and 挂牌督办 from the board).
    oversees: bool,
}

async fn board_row(app: &App, r: &InboxRow, viewer: &super::super::accounts::User) -> BoardRow {
    let loaded = app.instance(&r.instance).await.ok().flatten();
    let project = app
        .project_of(&r.instance)
        .await
        .ok()
        .flatten()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| "（未登记项目）".to_string());
    let oversees = loaded.as_ref().is_some_and(|(_, _, _, ctx)| {
        shenpi_engine::runtime::policy::oversees(&ctx.def.plan, &viewer.actor())
    });
    let (task_name, stage_name, department_name, holder, days_overdue) = match &loaded {
        Some((_, st, _, ctx)) => {
            let names = WorkflowNames(&ctx.def);
            let v = shenpi_engine::runtime::view(&ctx.def, &ctx.cal, st, timestamp(app.now()));
            let days = v
                .tasks
                .iter()
                .find(|t| t.id.to_string() == r.task_id)
                .and_then(|t| t.days_left)
                .filter(|d| *d < 0)
                .map(|d| -d);
            let holder = st
                .tasks
                .iter()
                .find(|t| t.spec.task.to_string() == r.task_id)
                .and_then(|t| t.claimed_by.clone().map(|c| c.to_string()))
                .or_else(|| r.assignee.as_deref().map(|a| names.party_key(a)))
                .unwrap_or_default();
            (
                task_name(&names, &r.node),
                r.stage
                    .as_deref()
                    .map(|s| names.stage(s))
                    .unwrap_or_default(),
                r.department
                    .as_deref()
                    .map(|d| names.department(d))
                    .unwrap_or_default(),
                holder,
                days,
            )
        }
        None => (
            r.node.clone(),
            String::new(),
            String::new(),
            String::new(),
            None,
        ),
    };
    BoardRow {
        instance: r.instance.clone(),
        task: r.task_id.clone(),
        colour: r.colour.clone(),
        project,
        task_name,
        stage: r.stage.clone(),
        stage_name,
        department: r.department.clone(),
        department_name,
        holder,
        due: r.due,
        days_overdue,
        supervised: r.supervised,
        oversees,
    }
}

/// The board's drill-down: a stage or a department.
#[derive(Debug, Deserialize, Default)]
pub struct BoardQuery {
    stage: Option<String>,
    department: Option<String>,
    /// After the demo clock moved: by how many working days.
    moved: Option<u32>,
    /// After an action from the board (催办, 挂牌督办).
    done: Option<String>,
}

pub async fn dashboard_page(
    State(app): State<App>,
    user: PageUser,
    Query(q): Query<BoardQuery>,
) -> Response {
    if !policy::can_see_dashboard(&user.user) {
        return fail(&user, ApiError::forbidden("督办看板仅限督办与政策人员"));
    }
    let d = match dashboard_data(&app).await {
        Ok(d) => d,
        Err(e) => return fail(&user, e),
    };
    let names = Everywhere::of(&app.machine);
    let colour_label = |c: &str| match c {
        "red" => "红（超期）".to_string(),
        "yellow" => "黄（临期）".to_string(),
        "green" => "绿".to_string(),
        o => o.to_string(),
    };
    let stage_f = q.stage.as_deref().filter(|s| !s.is_empty());
    let dept_f = q.department.as_deref().filter(|s| !s.is_empty());
    let keep = |r: &BoardRow| {
        stage_f.is_none_or(|s| r.stage.as_deref() == Some(s))
            && dept_f.is_none_or(|x| r.department.as_deref() == Some(x))
    };
    let mut overdue = Vec::new();
    for r in &d.overdue {
        overdue.push(board_row(&app, r, &user.user).await);
    }
    let mut supervised = Vec::new();
    for r in &d.supervised {
        supervised.push(board_row(&app, r, &user.user).await);
    }
    // On time: the open tasks of a department that are not past their limit.
    let on_time: Vec<(String, i64, i64)> = d
        .by_department
        .iter()
        .map(|(dep, n)| {
            let late = overdue
                .iter()
                .filter(|r| r.department.as_deref().unwrap_or("") == dep.as_str())
                .count() as i64;
            (dep.clone(), *n, late)
        })
        .collect();
    let overdue: Vec<BoardRow> = overdue.into_iter().filter(|r| keep(r)).collect();
    let supervised: Vec<BoardRow> = supervised.into_iter().filter(|r| keep(r)).collect();
    let can_act = policy::can_supervise(&user.user);
    let table = |rows: &[BoardRow], with_supervise: bool| {
        html! {
            div.table-wrap.cards {
                table.board {
                    thead { tr { th {} th { "项目" } th { "环节" } th { "阶段" } th { "部门" } th { "办理人" } th { "截止" } th { "超期" } th { "操作" } } }
                    tbody { @for r in rows {
                        tr class={"row-" (r.colour)} {
                            td data-label="预警" { (colour_badge(&r.colour)) @if r.supervised { " " span.supervised { "挂牌督办" } } }
                            td data-label="项目" { (r.project) }
                            td data-label="环节" { (r.task_name) }
                            td data-label="阶段" { (r.stage_name) }
                            td data-label="部门" { (r.department_name) }
                            td data-label="办理人" { (r.holder) }
                            td data-label="截止" { @if let Some(x) = r.due { (due_date(x)) } }
                            td.overdue data-label="超期" { @if let Some(n) = r.days_overdue { "超期 " (n) " 个工作日" } }
                            td.actions data-label="操作" {
                                a.button href={"/instances/" (r.instance)} { "打开" }
                                @if can_act && r.oversees {
                                    form method="post" action={"/instances/" (r.instance) "/tasks/" (r.task)} class="inline" {
                                        (hidden(&user)) input type="hidden" name="action" value="urge";
                                        input type="hidden" name="text" value="请抓紧办理（督办看板催办）";
                                        input type="hidden" name="back" value="/dashboard";
                                        button type="submit" { "催办" }
                                    }
                                    @if with_supervise && !r.supervised {
                                        form method="post" action={"/instances/" (r.instance) "/tasks/" (r.task)} class="inline" {
                                            (hidden(&user)) input type="hidden" name="action" value="supervise";
                                            input type="hidden" name="reason" value="超期未办结，挂牌督办";
                                            input type="hidden" name="back" value="/dashboard";
                                            button type="submit" class="danger" data-confirm="确定对该事项挂牌督办吗？将通知部门分管领导。" { "挂牌督办" }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    let mut promises = Vec::new();
    for p in &d.promises_due {
        let project = app
            .project_of(&p.instance)
            .await
            .ok()
            .flatten()
            .map(|x| x.name.clone())
            .unwrap_or_else(|| "（未登记项目）".to_string());
        let material = match app.instance(&p.instance).await {
            Ok(Some((_, _, _, ctx))) => WorkflowNames(&ctx.def).material(&p.material),
            _ => p.material.clone(),
        };
        promises.push((p, project, material));
    }
    let runways = app.catalog.runways(app.now());
    let refused = match refused_timers(&app, 100).await {
        Ok(r) => r,
        Err(e) => return fail(&user, e),
    };
    let body = html! {
        h1 { "督办看板" }
        @if let Some(done) = &q.done { p.flash.ok role="status" { "已办理：" (command_label_zh(done)) } }
        @if let Some(n) = q.moved { p.flash.ok role="status" { "演示时钟已前进 " (n) " 个工作日：" (today_zh(app.now())) "。到期的预警、督办和违约已按新的日期触发。" } }
        @if demo_time::may_move(&app, &user.user) {
            form.clock-control method="post" action="/clock/advance" {
                (hidden(&user))
                strong { "演示时钟 " } (today_zh(app.now())) " · "
                label { "前进 " input name="working_days" type="number" min="1" max=(demo_time::MAX_DAYS) value="1" size="3"; " 个工作日" }
                button type="submit" { "拨动时钟" }
                small.muted { " 仅演示模式可用：观察黄色预警、红色超期、挂牌督办与承诺违约的触发。时钟只进不退。" }
            }
        }
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
                div.table-wrap { table { thead { tr { th { "项目名称" } th { "节点名称" } th { "定时器" } th { "应触发时间" } th { "拒绝原因" } th { "拒绝时间" } th { "下次重试" } } }
                    tbody { @for r in &refused { tr {
                        td { a href={"/instances/" (r.instance)} { (r.project_name) } }
                        td { (r.subject) } td { (r.purpose) } td { (datetime(r.due)) }
                        td title={(r.code) "：" (r.message)} { (r.reason) }
                        td { (datetime(r.refused_at)) }
                        td { @match r.retry_at { Some(x) => (datetime(x)), None => "即将重试" } }
                    } } } } }
            }
        }
        @if stage_f.is_some() || dept_f.is_some() {
            p.drill {
                "正在查看："
                @if let Some(s) = stage_f { "阶段「" (names.stage(s)) "」 " }
                @if let Some(x) = dept_f { "部门「" (names.department(x)) "」 " }
                a href="/dashboard" { "查看全部" }
            }
        }
        div.grid {
            section { h2 { "在办任务（按预警颜色）" } (bar_chart(&d.by_colour, colour_label)) }
            section { h2 { "按阶段" } (bar_chart(&d.by_stage, |s| if s.is_empty() { "（无阶段）".to_string() } else { names.stage(s) }))
                ul.drill-links { @for (s, n) in &d.by_stage { @if !s.is_empty() { li { a href={"/dashboard?stage=" (s)} { (names.stage(s)) "（" (n) "）" } } } } } }
            section { h2 { "各部门按时率" }
                div.table-wrap { table.on-time {
                    thead { tr { th { "部门" } th { "在办" } th { "超期" } th { "按时率" } } }
                    tbody { @for (dep, n, late) in &on_time { tr {
                        td { @if dep.is_empty() { "（未分部门）" } @else { a href={"/dashboard?department=" (dep)} { (names.department(dep)) } } }
                        td { (n) } td { (late) }
                        td.rate { @if *n > 0 { (format!("{:.0}%", 100.0 * (*n - *late) as f64 / *n as f64)) } }
                    } } }
                } }
                p.muted { "按时率：在办任务中未超过办理时限的比例。" }
            }
            section { h2 { "实例状态" } (bar_chart(&d.by_status, |s| outcome_text(s).to_string())) }
        }
        section { h2 { "各色任务数走势" } (history_chart(&d.history)) }
        section { h2 { "超期清单" }
            @if overdue.is_empty() { p.empty { "无超期任务。" } } @else { (table(&overdue, true)) } }
        section { h2 { "挂牌督办" }
            @if supervised.is_empty() { p.empty { "无挂牌督办事项。" } } @else { (table(&supervised, false)) } }
        section.unsigned-letters { h2 { "逾期未签署的承诺书" }
            @if d.unsigned_letters.is_empty() { p.empty { "无。" } } @else {
                div.table-wrap { table { thead { tr { th { "项目" } th { "环节" } th { "出具日期" } th { "签署期限" } th { "已过" } th { "应签署人" } } }
                    tbody { @for l in &d.unsigned_letters { tr.row-red {
                        td { a href={"/instances/" (l.instance) "#letters"} { (l.project) } }
                        td { (l.node_name) }
                        td { (datetime(l.issued_at)) }
                        td { (l.sign_by.clone().unwrap_or_default()) }
                        td.overdue { (l.working_days_since) " 个工作日" }
                        td { (l.signers.join("、")) }
                    } } } } } } }
        section { h2 { "7 日内到期的容缺承诺" }
            @if d.promises_due.is_empty() { p.empty { "无。" } } @else {
                div.table-wrap { table { thead { tr { th { "项目" } th { "材料" } th { "状态" } th { "截止" } } }
                    tbody { @for (p, project, material) in &promises { tr {
                        td { a href={"/instances/" (p.instance)} { (project) } }
                        td { (material) }
                        td { (promise_state(&p.state)) }
                        td { @if let Some(x) = p.due { (due_date(x)) } }
                    } } } } } } }
    };
    page("督办看板", Some(&user), None, body).into_response()
}

fn promise_state(s: &str) -> &'static str {
    match s {
        "open" => "待补交",
        "supplied" => "已补交待核验",
        "verified" => "已核验",
        "breached" => "违约",
        _ => "—",
    }
}
