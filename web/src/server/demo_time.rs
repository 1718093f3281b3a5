//! The demo's clock (演示时钟): what time the server counts limits on, and, in a `serve --demo`
//! only, an admin's control that moves it forward by working days, so that warnings,
//! escalations, 挂牌督办 and broken promises fire while one watches. Each move is stored
//! (`web_demo_clock`), and a restarted demo goes on from the stored time: the clock never goes
//! back, so no colour is computed on a day before one already shown.
//!
//! Outside a demo the clock is the wall clock (or `--clock-start`'s) and cannot be moved here.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use shenpi_adapters::machine::SystemClock;
use shenpi_adapters::store::TimerStore;
use shenpi_engine::calendar::{local_date, start_of_day};
use utoipa::ToSchema;

use super::accounts::User;
use super::auth::{Caller, PageUser};
use super::chrome::{fail, today_zh};
use super::engine::timestamp;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract;
use super::form::Fields;
use super::routes::{Routes, operation};
use super::state::App;
use shenpi_adapters::machine::Clock as _;

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(clock))
        .api(operation!(advance))
        .page("/clock/advance", post(advance_page))
}

/// The most working days one move may go forward.
pub const MAX_DAYS: u32 = 60;

#[derive(Debug, Serialize, ToSchema)]
pub struct ClockState {
    /// The server's time (ms since the epoch): what every limit is counted on.
    pub now: i64,
    /// Today in China, as the header writes it.
    pub today: String,
    /// Whether an admin may move it forward (a `serve --demo`).
    pub movable: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Advance {
    /// Working days to move forward, 1 to 60, counted on the official calendar.
    pub working_days: u32,
}

fn state_of(app: &App) -> ClockState {
    let now = app.now();
    ClockState {
        now,
        today: today_zh(now),
        movable: is_demo(app),
    }
}

pub fn is_demo(app: &App) -> bool {
    app.demo.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether `user` may move this server's clock.
pub fn may_move(app: &App, user: &User) -> bool {
    is_demo(app) && user.has("admin")
}

/// The server's clock.
#[utoipa::path(get, path = "/api/clock", tag = "clock",
    responses((status = 200, body = ClockState), (status = 401, body = ErrorBody)))]
pub async fn clock(State(app): State<App>, _caller: Caller) -> Json<ClockState> {
    Json(state_of(&app))
}

/// Moves the demo's clock forward by working days (admin, `serve --demo` only); answers once
/// the timers that fell due have fired.
#[utoipa::path(post, path = "/api/clock/advance", tag = "clock", request_body = Advance,
    responses((status = 200, body = ClockState), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn advance(
    State(app): State<App>,
    caller: Caller,
    extract::Json(body): extract::Json<Advance>,
) -> ApiResult<Json<ClockState>> {
    move_forward(&app, &caller.user, body.working_days).await?;
    Ok(Json(state_of(&app)))
}

/// The control on the 督办看板: moves the clock and shows the board again.
async fn advance_page(State(app): State<App>, user: PageUser, body: Bytes) -> Response {
    let posted = match Fields::checked(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let days = match posted.first("working_days").map(str::trim) {
        Some(d) => match d.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                return fail(
                    &user,
                    ApiError::invalid(format!("工作日数「{d}」不是 1 至 {MAX_DAYS} 之间的整数。")),
                );
            }
        },
        None => 1,
    };
    match move_forward(&app, &user.user, days).await {
        Ok(()) => Redirect::to(&format!("/dashboard?moved={days}")).into_response(),
        Err(e) => fail(&user, e),
    }
}

/// Moves the clock `days` working days forward, stores it, and waits (a few seconds at most)
/// for the timers now due to fire.
pub async fn move_forward(app: &App, user: &User, days: u32) -> ApiResult<()> {
    if !is_demo(app) {
        return Err(ApiError::forbidden(
            "只有演示模式（serve --demo）的时钟可以拨动；正式运行按真实时间计时。",
        ));
    }
    if !user.has("admin") {
        return Err(ApiError::forbidden("只有系统管理员可以拨动演示时钟。"));
    }
    if days == 0 || days > MAX_DAYS {
        return Err(ApiError::invalid(format!(
            "一次可前进 1 至 {MAX_DAYS} 个工作日，不能是 {days}。"
        ))
        .with_details(serde_json::json!({ "field": "working_days" })));
    }
    let now = app.now();
    let cal = app
        .machine
        .newest()
        .first()
        .map(|c| c.cal.clone())
        .ok_or_else(|| ApiError::internal("no workflow is loaded"))?;
    let today = local_date(timestamp(now));
    let target = cal
        .add_working_days(today, days)
        .map_err(|e| ApiError::invalid(format!("工作日历算不出 {days} 个工作日之后的日期：{e}")))?;
    let by = start_of_day(target).as_millisecond() - start_of_day(today).as_millisecond();
    let Some(moved) = app.clock.advance(by) else {
        return Err(ApiError::forbidden("这台服务器的时钟不能拨动。"));
    };
    if let Err(e) = app.accounts.shift_sessions(by).await {
        tracing::warn!("the demo clock moved but the sessions could not follow: {e}");
    }
    let offset = moved - SystemClock.now();
    if let Err(e) = app.accounts.save_demo_clock_offset(offset, moved).await {
        tracing::warn!("the demo clock moved but could not be stored: {e}");
    }
    tracing::info!(by = %user.name, days, "demo clock moved forward to {}", today_zh(moved));
    if app.scheduler.is_some() {
        settle(app).await;
    }
    Ok(())
}

/// Waits until no timer is due any more (the scheduler fired them, and the ones their firing
/// armed), for 5 s at most.
async fn settle(app: &App) {
    for _ in 0..50 {
        match app.db.next_due().await {
            Ok(Some(due)) if due <= app.now() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => break,
        }
    }
    // The last firing's outbox rows and projections are committed with it; give the next
    // poll a moment to pick up what the firing armed for the same instant.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// At a demo's start: go on from the stored clock if it is ahead (the clock never goes back),
/// and store where it stands.
pub async fn restore(app: &App, clock: &super::state::OffsetClock) {
    let stored = match app.accounts.demo_clock_offset().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot read the stored demo clock: {e}");
            None
        }
    };
    let offset = clock.at_least(stored.unwrap_or(i64::MIN));
    if stored.is_some_and(|s| s >= offset) {
        eprintln!(
            "demo: the clock goes on from where the last demo on this database left it ({})",
            today_zh(app.now())
        );
    }
    if let Err(e) = app.accounts.save_demo_clock_offset(offset, app.now()).await {
        tracing::warn!("cannot store the demo clock: {e}");
    }
}
