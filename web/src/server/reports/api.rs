//! The supervisors' API: the 督办看板 counts, running a report now and the past runs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shenpi_adapters::reports::report_now;
use shenpi_adapters::store::{InboxRow, ProjectionStore, PromiseRow};
use shenpi_engine::model::ReportKind;
use shenpi_engine::runtime::letter;
use utoipa::ToSchema;

use super::super::accounts::{ReportRun, random_hex};
use super::super::auth::{Caller, policy};
use super::super::engine::timestamp;
use super::super::error::{ApiError, ApiResult, ErrorBody};
use super::super::extract;
use super::super::names::WorkflowNames;
use super::super::state::{App, latest_contexts};

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardData {
    #[schema(value_type = Vec<Object>)]
    pub by_colour: Vec<(String, i64)>,
    #[schema(value_type = Vec<Object>)]
    pub by_stage: Vec<(String, i64)>,
    #[schema(value_type = Vec<Object>)]
    pub by_department: Vec<(String, i64)>,
    #[schema(value_type = Vec<Object>)]
    pub by_status: Vec<(String, i64)>,
    #[schema(value_type = Vec<Object>)]
    pub overdue: Vec<InboxRow>,
    #[schema(value_type = Vec<Object>)]
    pub supervised: Vec<InboxRow>,
    /// 容缺 commitments due in the next 7 days.
    #[schema(value_type = Vec<Object>)]
    pub promises_due: Vec<PromiseRow>,
    /// (time, green, yellow, red) snapshots of open tasks by colour.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<(i64, i64, i64, i64)>,
    /// Commitment letters (承诺书) not signed within their `sign_within` working days, longest
    /// waiting first.
    pub unsigned_letters: Vec<UnsignedLetter>,
}

/// A commitment letter not signed in time, for the 督办看板.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UnsignedLetter {
    pub instance: String,
    /// The pre-approval the letter belongs to.
    pub pre: u32,
    /// The project's name.
    pub project: String,
    pub node: String,
    /// The node's name, as the workflow gives it.
    pub node_name: String,
    /// When the pre-approval issued it (ms since the epoch).
    pub issued_at: i64,
    /// The last day to sign it (`YYYY-MM-DD`).
    pub sign_by: Option<String>,
    /// Working days since the pre-approval, on the workflow's calendar.
    pub working_days_since: u32,
    /// Who should sign: the applicant and the project's service officer.
    pub signers: Vec<String>,
}

/// The letters of running instances not signed within their `sign_within`: every running
/// instance with a 容缺 promise is read, and the engine says which of its letters are late
/// (`letter::unsigned_overdue`, on the clock rule every other limit uses).
async fn unsigned_letters(app: &App, now: i64) -> ApiResult<Vec<UnsignedLetter>> {
    let mut out = Vec::new();
    for id in app.db.running_with_promises(1000).await? {
        let Some((_, st, _, ctx)) = app.instance(&id).await? else {
            continue;
        };
        let late = letter::unsigned_overdue(&ctx.def, &ctx.cal, &st, timestamp(now));
        if late.is_empty() {
            continue;
        }
        let project = app
            .project_of(&id)
            .await?
            .map(|p| p.name.clone())
            .unwrap_or_else(|| "（未登记项目）".to_string());
        let names = WorkflowNames(&ctx.def);
        for l in late {
            out.push(UnsignedLetter {
                instance: id.clone(),
                pre: l.pre.0,
                project: project.clone(),
                node_name: names.node(&l.node),
                node: l.node.to_string(),
                issued_at: l.issued_at.as_millisecond(),
                sign_by: l.sign_by.map(|d| d.to_string()),
                working_days_since: l.working_days_since,
                signers: l.signers.iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    out.sort_by(|a, b| {
        b.working_days_since
            .cmp(&a.working_days_since)
            .then_with(|| a.instance.cmp(&b.instance))
    });
    Ok(out)
}

pub async fn dashboard_data(app: &App) -> ApiResult<DashboardData> {
    let now = app.now();
    let d = app.db.dashboard().await?;
    let count = |c: &str| {
        d.by_colour
            .iter()
            .find(|(k, _)| k == c)
            .map_or(0, |(_, n)| *n)
    };
    // One snapshot per 10 minutes at most, taken when someone looks or the snapshot task runs.
    let slot = now - now.rem_euclid(600_000);
    app.accounts
        .snapshot_colours(slot, count("green"), count("yellow"), count("red"))
        .await
        .map_err(ApiError::internal)?;
    let history = app
        .accounts
        .colour_history(now - 30 * 86_400_000)
        .await
        .map_err(ApiError::internal)?;
    Ok(DashboardData {
        by_colour: d.by_colour,
        by_stage: d.by_stage,
        by_department: d.by_department,
        by_status: d.by_status,
        overdue: app.db.overdue(now, 100).await?,
        supervised: app.db.supervised(100).await?,
        promises_due: app.db.promises_due(now, now + 7 * 86_400_000).await?,
        history,
        unsigned_letters: unsigned_letters(app, now).await?,
    })
}

/// Counts by colour, stage and department; overdue tasks; 挂牌督办; commitments due soon.
#[utoipa::path(get, path = "/api/dashboard", tag = "reports",
    responses((status = 200, body = DashboardData), (status = 403, body = ErrorBody)))]
pub async fn dashboard(State(app): State<App>, caller: Caller) -> ApiResult<Json<DashboardData>> {
    if !policy::can_see_dashboard(&caller.user) {
        return Err(ApiError::forbidden("督办看板只对督办人员开放。")
            .in_english("the dashboard is for supervisors"));
    }
    Ok(Json(dashboard_data(&app).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RunReport {
    /// `weekly` (周统计), `half_monthly` (半月通报) or `monthly` (月调度).
    pub kind: String,
}

/// Run a report now: each workflow's report of that kind with the content its scheduled run
/// sends, over the period since its last slot; stored and listed with the past ones, not sent.
#[utoipa::path(post, path = "/api/reports", tag = "reports", request_body = RunReport,
    responses((status = 201, body = ReportRun), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn run_report(
    State(app): State<App>,
    caller: Caller,
    extract::Json(req): extract::Json<RunReport>,
) -> ApiResult<(StatusCode, Json<ReportRun>)> {
    if !policy::can_supervise(&caller.user) {
        return Err(ApiError::forbidden("统计报表只对督办人员开放。")
            .in_english("reports are for supervisors"));
    }
    let kind = match req.kind.as_str() {
        "weekly" => ReportKind::Weekly,
        "half_monthly" => ReportKind::HalfMonthly,
        "monthly" => ReportKind::Monthly,
        _ => {
            return Err(ApiError::invalid(
                "报表种类应为 weekly（周统计）、half_monthly（半月通报）或 monthly（月调度）",
            )
            .with_details(serde_json::json!({ "field": "kind" })));
        }
    };
    // The same content the scheduled report of each workflow sends (adapters::reports).
    let defs = latest_contexts(&app.db, &app.machine).await;
    let now = app.now();
    let reports = report_now(&app.db, &defs, kind, now, 200)
        .await
        .map_err(ApiError::internal)?;
    let run = ReportRun {
        id: format!("R{}", random_hex(6).map_err(ApiError::internal)?),
        kind: req.kind,
        created_at: now,
        created_by: caller.user.name.clone(),
        body: serde_json::json!({
            "reports": reports
                .into_iter()
                .map(|(report, content)| serde_json::json!({ "report": report, "content": content }))
                .collect::<Vec<_>>(),
        }),
    };
    app.accounts
        .save_report(&run)
        .await
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(run)))
}

/// Past report runs, newest first.
#[utoipa::path(get, path = "/api/reports", tag = "reports",
    responses((status = 200, body = [ReportRun]), (status = 403, body = ErrorBody)))]
pub async fn list_reports(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Json<Vec<ReportRun>>> {
    if !policy::can_supervise(&caller.user) {
        return Err(ApiError::forbidden("统计报表只对督办人员开放。")
            .in_english("reports are for supervisors"));
    }
    Ok(Json(
        app.accounts
            .reports(100)
            .await
            .map_err(ApiError::internal)?,
    ))
}
