//! The chrome every page shares: the layout with its header (the navigation a role sees, today's
//! date on the server's clock, who is logged in), the error page, the flash line, the static CSS
//! and JS, and the way dates, colours and days left are written on every page.
//!
//! Pages are maud templates (compiled, escaped by default, nothing to build or download). A page
//! module writes its body and hands it to [`page`]; one that fails hands its [`ApiError`] to
//! [`fail`], so an error reads the same on every page.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use shenpi_engine::calendar::{local_date, local_datetime};
use shenpi_engine::compile::Party;
use shenpi_engine::runtime::Colour;
use shenpi_engine::runtime::view::ClockView;

use super::auth::{PageUser, policy};
use super::engine::{colour_name, timestamp};
use super::error::ApiError;
use super::routes::Routes;

const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");

/// The stylesheet and the script every page links.
pub fn routes() -> Routes {
    Routes::new()
        .page(
            "/static/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }),
        )
        .page(
            "/static/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    JS,
                )
            }),
        )
}

/// A deadline instant is the end of its last day (00:00 of the next): show that last day.
pub fn due_date(ms: i64) -> String {
    shenpi_engine::runtime::deadline::last_day(timestamp(ms)).to_string()
}

/// The local date an instant falls on (a yellow point is the start of its day).
pub fn day_of(ms: i64) -> String {
    local_date(timestamp(ms)).to_string()
}

/// The local date of an instant as official documents write it: 2026年3月2日.
pub fn date_zh(ms: i64) -> String {
    let d = local_date(timestamp(ms));
    format!("{}年{}月{}日", d.year(), d.month(), d.day())
}

/// The local (Asia/Shanghai) year an instant falls in.
pub fn year_of(ms: i64) -> i64 {
    i64::from(local_date(timestamp(ms)).year())
}

pub fn datetime(ms: i64) -> String {
    let dt = local_datetime(timestamp(ms));
    format!("{} {:02}:{:02}", dt.date(), dt.hour(), dt.minute())
}

pub fn colour_badge(c: &str) -> Markup {
    let (cls, text) = match c {
        "red" => ("red", "红"),
        "yellow" => ("yellow", "黄"),
        _ => ("green", "绿"),
    };
    html! { span class={"badge " (cls)} title={"预警：" (text)} { (text) } }
}

/// The badge of a colour the engine computed.
pub fn colour_mark(c: Colour) -> Markup {
    colour_badge(colour_name(c))
}

/// The 「暂定」 mark of a clock's reading.
pub fn clock_provisional(c: &ClockView) -> Markup {
    provisional_mark(c.provisional, c.due.map(|d| d.as_millisecond()))
}

/// The 「暂定」 mark of a date or count on a provisional calendar year, with why in its tooltip.
pub fn provisional_mark(on: bool, due_ms: Option<i64>) -> Markup {
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

pub fn days_text(d: Option<i64>) -> String {
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

pub fn page(
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
                            a href="/inbox" { (if u.user.is_staff() { "待办" } else { "我的事项" }) }
                            a href="/messages" { "消息" @if u.unread > 0 { " " span.count.unread title="未读消息" { (u.unread) } } }
                            a href="/projects" { "项目" }
                            @if policy::can_validate(&u.user) { a href="/workflows" { "流程规则" } }
                            @if u.user.is_staff() { a href="/calendars" { "工作日历" } }
                            @if policy::can_see_dashboard(&u.user) { a href="/dashboard" { "督办看板" } }
                        }
                        div.who {
                            span.today title="服务器时钟的日期，时限按此计算" { (today_zh(u.now)) }
                            span { (u.user.name) }
                            @if let Some(d) = &u.department_name { span.dept { (d) } }
                            span.roles { @for r in &u.role_names { span.role { (r) } } }
                            form method="post" action="/logout" class="inline" {
                                input type="hidden" name="csrf" value=(u.csrf);
                                button type="submit" class="link" { "退出" }
                            }
                        }
                    }
                }
                main {
                    // On paper only (app.css): what the page is and when it was printed.
                    @if let Some(u) = user {
                        div.print-head { span { (title) } span { "打印日期：" (day_of(u.now)) " · " (u.user.name) } }
                    }
                    @if let Some(f) = flash {
                        div class={"flash " (if f.ok { "ok" } else { "err" })} role="status" data-code=[f.code.as_deref()] { (f.text) }
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
    /// The refusal's stable code, kept on the element for support and scripts (not shown).
    pub code: Option<String>,
}

/// The page of a failure; `failure::failure` is what decides a browser gets it.
pub fn error_page(status: StatusCode, user: Option<&PageUser>, e: &ApiError) -> Response {
    let body = html! {
        h1 { "无法完成" }
        p.error { (e.body.message) }
        p.muted { "错误代码：" code { (e.body.error) } }
        p { a href="/" { "返回首页" } }
    };
    (status, page("出错", user, None, body)).into_response()
}

pub fn fail(user: &PageUser, e: ApiError) -> Response {
    error_page(e.status, Some(user), &e)
}

/// Whom a task is assigned to, as a page names it.
pub fn party(p: &Party) -> String {
    match p {
        Party::User(u) => u.to_string(),
        Party::Role(r) => format!("角色 {r}"),
        Party::Department(d) => format!("部门 {d}"),
    }
}

/// An instance's status, in Chinese.
pub fn outcome_text(o: &str) -> &str {
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
