//! The 督办看板 page: counts by colour, stage, department and status (SVG bars), open tasks by
//! colour over time, the refused timers, overdue and 挂牌督办 lists, promises due within 7 days,
//! and until when the working-day calendar is official.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use shenpi_adapters::store::InboxRow;

use super::super::auth::{PageUser, policy};
use super::super::chrome::{colour_badge, datetime, due_date, fail, outcome_text, page};
use super::super::engine::assignee_label;
use super::super::error::ApiError;
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

pub async fn dashboard_page(State(app): State<App>, user: PageUser) -> Response {
    if !policy::can_see_dashboard(&user.user) {
        return fail(&user, ApiError::forbidden("督办看板仅限督办与政策人员"));
    }
    let d = match dashboard_data(&app).await {
        Ok(d) => d,
        Err(e) => return fail(&user, e),
    };
    let colour_label = |c: &str| match c {
        "red" => "红（超期）".to_string(),
        "yellow" => "黄（临期）".to_string(),
        "green" => "绿".to_string(),
        o => o.to_string(),
    };
    let row = |r: &InboxRow| {
        html! {
            tr { td { (colour_badge(&r.colour)) } td { a href={"/instances/" (r.instance)} { (r.instance) } } td { (r.node) } td { (r.department.clone().unwrap_or_default()) } td { (r.assignee.as_deref().map(assignee_label).unwrap_or_default()) } td { @if let Some(x) = r.due { (due_date(x)) } } }
        }
    };
    let runways = app.catalog.runways(app.now());
    let refused = match refused_timers(&app, 100).await {
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
