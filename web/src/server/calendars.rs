//! Working-day calendars as published data: seeding from `workflows/calendars/`, importing next
//! year's official arrangement (API, editor page, `shenpi calendar import`), the preview of what
//! a revision changes, and the re-timing of every open instance it moves.
//!
//! Re-timing goes through the durable command path (`shenpi_adapters::retime`): one `Recalendar`
//! command per instance with an open timer, under one idempotency key per revision and instance,
//! so a crash in the middle or two nodes doing it at once record each move once. A revision is
//! marked re-timed (with its summary) only after every instance answered.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use shenpi_adapters::store::calendars::{CalendarRevision, Origin};
use shenpi_adapters::store::{Db, Millis};
use shenpi_engine::calendar::{Calendar, DayChange, statutory};
use shenpi_engine::diag::Diagnostic;
use shenpi_engine::runtime::{Actor, Command, CommandEnvelope, Event, decide};
use utoipa::ToSchema;

use super::auth::{Caller, PageUser};
use super::catalog::yaml_hash;
use super::chrome::{Flash, datetime, due_date, fail, page};
use super::engine::{CalendarFile, EngineMachine, timestamp};
use super::error::ErrorBody;
use super::error::{ApiError, ApiResult};
use super::extract;
use super::form::{self, Fields, hidden};
use super::routes::{Routes, operation};
use super::state::App;

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(api_list))
        .api(operation!(api_import))
        .page("/calendars", get(page_list))
        .page("/calendars/{id}/preview", post(page_preview))
        .page("/calendars/{id}/publish", post(page_publish))
}

/// How often a server looks for revisions published by another node or by the CLI.
pub const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Who may import calendars: the rule writers and administrators.
pub fn may_publish(u: &super::accounts::User) -> bool {
    u.has("policy_staff") || u.has("admin")
}

// ---------------------------------------------------------------------------------------------
// Seeding and putting in force

/// Publishes each calendar file whose text is new, keeps revisions imported since, and puts the
/// newest revision of every calendar in force. Returns what it has to say (one line each).
pub async fn seed(
    db: &Db,
    files: &[CalendarFile],
    machine: &EngineMachine,
    now: Millis,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    for file in files {
        let (id, text) = (file.id.as_str(), file.text.as_str());
        // Recorded relative to the workflows folder, the same on every node and machine.
        let shown = file.shown.as_str();
        let hash = yaml_hash(text);
        let revisions = db.calendar_revisions(id).await.map_err(|e| e.to_string())?;
        let from_file = revisions
            .iter()
            .find(|r| r.origin == "file" && r.origin_detail == shown);
        match (revisions.first(), from_file) {
            (None, _) => {
                seed_publish(db, id, text, &hash, shown, now).await?;
            }
            (Some(_), Some(f)) if f.hash == hash => {}
            (Some(latest), _) if latest.origin != "file" => notes.push(format!(
                "calendar {id}: revision {} imported by {} is newer than {shown}{}; keeping \
                 revision {}",
                latest.revision,
                latest.published_by,
                from_file
                    .map(|f| format!(" (revision {})", f.revision))
                    .unwrap_or_default(),
                latest.revision
            )),
            (Some(_), _) => {
                if let Some(r) = seed_publish(db, id, text, &hash, shown, now).await? {
                    notes.push(format!(
                        "calendar {id}: {shown} changed; published as revision {}",
                        r.revision
                    ));
                }
            }
        }
        match db.latest_calendar(id).await.map_err(|e| e.to_string())? {
            // The file is the revision in force: what was read at start, at its number.
            Some(latest) if latest.hash == hash => {
                let number = u32::try_from(latest.revision).unwrap_or(u32::MAX);
                machine
                    .put_calendar(file.calendar.clone().with_revision(number), latest.revision)?;
            }
            Some(latest) => put_in_force(machine, &latest)?,
            None => {}
        }
    }
    Ok(notes)
}

/// Publishes a calendar file as the next revision; `None` when another node starting at the same
/// moment published it first (the revision number was taken), which is as good.
async fn seed_publish(
    db: &Db,
    id: &str,
    text: &str,
    hash: &str,
    shown: &str,
    now: Millis,
) -> Result<Option<CalendarRevision>, String> {
    match db
        .publish_calendar(id, text, hash, Origin::File(shown), "system", now)
        .await
    {
        Ok(r) => Ok(Some(r)),
        Err(shenpi_adapters::store::StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Puts a stored revision in force in the one registry the views and the engine both read.
pub fn put_in_force(machine: &EngineMachine, rev: &CalendarRevision) -> Result<(), String> {
    let number = u32::try_from(rev.revision).unwrap_or(u32::MAX);
    let cal = Calendar::from_yaml(&rev.calendar, &rev.yaml)
        .map(|c| c.with_revision(number))
        .map_err(|d| {
            format!(
                "calendar {} revision {}: {}",
                rev.calendar,
                rev.revision,
                d.iter()
                    .map(|d| d.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
    machine.put_calendar(cal, rev.revision)
}

// ---------------------------------------------------------------------------------------------
// Re-timing

pub use shenpi_adapters::retime::RetimeSummary;

static RETIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Puts newer revisions in force and re-times every revision not yet re-timed. Safe to run on
/// several nodes at once and again after a crash: each instance's command carries one key.
pub async fn retime_pending(app: &App) -> Result<Vec<RetimeSummary>, String> {
    let _one = RETIME.lock().await;
    let mut done = Vec::new();
    for (id, _) in app.catalog.calendars() {
        // One row a pass (this runs every few seconds): the newest revision.
        let Some(latest) = app
            .db
            .latest_calendar(&id)
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        if app.catalog.calendar_revision(&id) != Some(latest.revision) {
            put_in_force(&app.machine, &latest)?;
            // A timer refused on the calendar before may fire on this one.
            app.retry_refused_timers().await;
        }
        if latest.retimed_at.is_some() {
            continue;
        }
        // Older revisions still pending are superseded: the latest re-times from whatever the
        // timers say now.
        app.db
            .mark_superseded(&id, latest.revision, app.now())
            .await
            .map_err(|e| e.to_string())?;
        let workflows = app.catalog.workflows_on(&id);
        let summary =
            shenpi_adapters::retime::retime(&app.bus, &app.db, &id, latest.revision, &workflows)
                .await?;
        if summary.failed == 0 {
            let json = serde_json::to_string(&summary).unwrap_or_default();
            app.db
                .mark_retimed(&id, latest.revision, &json, app.now())
                .await
                .map_err(|e| e.to_string())?;
        }
        done.push(summary);
    }
    Ok(done)
}

/// Re-times on a timer: at start, then every [`WATCH_EVERY`] (revisions from other nodes or the
/// CLI).
pub async fn watch(app: App) {
    loop {
        if let Err(e) = retime_pending(&app).await {
            tracing::warn!(error = %e, "calendar re-timing pass failed");
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Importing

/// What importing an arrangement would do.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub calendar: String,
    /// The revision in force and the one publishing would make.
    pub from_revision: i64,
    pub years: Vec<i16>,
    pub days: Vec<DayChange>,
    pub moves: Vec<LimitMove>,
    /// Some deadline would move to before now: publishing needs `confirm`.
    pub needs_confirmation: bool,
    #[serde(skip)]
    merged_yaml: String,
}

/// One open limit a revision would move.
#[derive(Debug, Clone, Serialize)]
pub struct LimitMove {
    pub instance: String,
    /// The project's name, or the instance id when it has none.
    pub project: String,
    /// What the timer is, in Chinese (「审查 到期」, 「审查 黄色预警」, 「督办第 2 级」 ...).
    pub what: String,
    #[serde(with = "shenpi_engine::calendar::china_time")]
    pub old_due: jiff::Timestamp,
    #[serde(with = "shenpi_engine::calendar::china_time")]
    pub new_due: jiff::Timestamp,
    /// The new instant is already past.
    pub overdue_now: bool,
}

/// Checks an arrangement against the calendar in force and says what publishing it would do.
/// Reading is strict (every statutory day off, make-up days on weekends, no day both off and
/// worked, every error located); nothing is written.
pub async fn preview(app: &App, id: &str, yaml: &str) -> Result<Preview, ImportError> {
    let current = app
        .catalog
        .calendar(id)
        .ok_or_else(|| ImportError::Unknown(id.to_string()))?;
    let import = Calendar::from_yaml_strict(id, yaml).map_err(ImportError::Invalid)?;
    let merged_yaml = current.merged_yaml(&import);
    let new = Calendar::from_yaml(id, &merged_yaml).map_err(ImportError::Invalid)?;
    let now = app.now();
    let mut moves = Vec::new();
    let workflows = app.catalog.workflows_on(id);
    let instances = app
        .db
        .instances_with_open_timers()
        .await
        .map_err(|e| ImportError::Store(e.to_string()))?;
    for (instance, workflow) in instances {
        if !workflows.contains(&workflow) {
            continue;
        }
        let Ok(Some((_, st, _, ctx))) = app.instance(&instance).await else {
            continue;
        };
        let cmd = CommandEnvelope {
            actor: Actor::system(),
            command: Command::Recalendar {
                calendar: id.into(),
                revision: 0,
            },
        };
        // The pure core answers "what would move" without committing anything.
        let Ok(events) = decide(&ctx.def, &new, &st, &cmd, timestamp(now)) else {
            continue;
        };
        let project = app
            .accounts
            .project_of(&instance)
            .await
            .ok()
            .flatten()
            .map(|p| p.name)
            .unwrap_or_else(|| instance.clone());
        for e in events {
            if let Event::Retimed { moves: ms, .. } = e {
                for m in ms {
                    moves.push(LimitMove {
                        instance: instance.clone(),
                        project: project.clone(),
                        what: format!(
                            "{} {}",
                            super::timers::subject(&m.kind, &st, &ctx),
                            super::timers::purpose(&m.kind)
                        ),
                        old_due: m.old_due,
                        new_due: m.new_due,
                        overdue_now: m.new_due.as_millisecond() <= now,
                    });
                }
            }
        }
    }
    let needs_confirmation = moves.iter().any(|m| m.overdue_now);
    Ok(Preview {
        calendar: id.to_string(),
        from_revision: app.catalog.calendar_revision(id).unwrap_or(0),
        years: import.official_years(),
        days: current.diff(&new),
        moves,
        needs_confirmation,
        merged_yaml,
    })
}

/// Publishes an arrangement as the next revision and re-times at once.
pub async fn publish(
    app: &App,
    id: &str,
    yaml: &str,
    by: &str,
    how: &str,
    confirm: bool,
) -> Result<(CalendarRevision, Vec<RetimeSummary>), ImportError> {
    let p = preview(app, id, yaml).await?;
    if p.needs_confirmation && !confirm {
        return Err(ImportError::NeedsConfirmation(
            p.moves.iter().filter(|m| m.overdue_now).count(),
        ));
    }
    let rev = app
        .db
        .publish_calendar(
            id,
            &p.merged_yaml,
            &yaml_hash(&p.merged_yaml),
            Origin::Import(how),
            by,
            app.now(),
        )
        .await
        .map_err(|e| ImportError::Store(e.to_string()))?;
    let done = retime_pending(app).await.map_err(ImportError::Store)?;
    app.retry_refused_timers().await;
    Ok((rev, done))
}

/// Why an import is refused; nothing is published.
#[derive(Debug)]
pub enum ImportError {
    Unknown(String),
    Invalid(Vec<Diagnostic>),
    NeedsConfirmation(usize),
    Store(String),
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> ApiError {
        match e {
            ImportError::Unknown(id) => ApiError::not_found(format!("没有工作日历 `{id}`")),
            ImportError::Invalid(d) => {
                ApiError::invalid(format!("放假安排校验未通过：{} 个问题，未发布", d.len()))
                    .with_details(serde_json::json!({ "diagnostics": d }))
            }
            ImportError::NeedsConfirmation(n) => ApiError::new(
                StatusCode::CONFLICT,
                "confirmation_required",
                format!(
                    "有 {n} 个期限会因此提前到今天之前（立即超期），请确认后再发布（confirm: true）"
                ),
            ),
            ImportError::Store(e) => ApiError::internal(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// API

#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarInfo {
    pub id: String,
    pub name: Option<String>,
    pub revision: i64,
    pub official_years: Vec<i16>,
    /// `[first, last]` provisional years (暂定, from the statute).
    pub provisional_years: [i16; 2],
    pub statute: &'static str,
    pub revisions: Vec<RevisionInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionInfo {
    pub revision: i64,
    pub origin: String,
    pub origin_detail: String,
    pub published_by: String,
    /// RFC 3339 in China time.
    #[serde(with = "shenpi_engine::calendar::china_time")]
    #[schema(value_type = String)]
    pub published_at: jiff::Timestamp,
    /// What re-timing did (`null` while it runs).
    #[schema(value_type = Option<Object>)]
    pub retimed: Option<serde_json::Value>,
}

pub async fn calendars_info(app: &App) -> ApiResult<Vec<CalendarInfo>> {
    let mut out = Vec::new();
    for (id, cal) in app.catalog.calendars() {
        let revisions = app.db.calendar_revisions(&id).await?;
        out.push(CalendarInfo {
            name: cal.name().map(str::to_string),
            revision: app.catalog.calendar_revision(&id).unwrap_or(0),
            official_years: cal.official_years(),
            provisional_years: [cal.official_last_year() + 1, cal.last_year()],
            statute: statutory::STATUTE,
            revisions: revisions
                .into_iter()
                .map(|r| RevisionInfo {
                    revision: r.revision,
                    origin: r.origin,
                    origin_detail: r.origin_detail,
                    published_by: r.published_by,
                    published_at: timestamp(r.published_at),
                    retimed: r.summary.and_then(|s| serde_json::from_str(&s).ok()),
                })
                .collect(),
            id,
        });
    }
    Ok(out)
}

/// The working-day calendars: official and provisional years, and every revision with what
/// its re-timing did (staff).
#[utoipa::path(get, path = "/api/calendars", tag = "calendars",
    responses((status = 200, body = [CalendarInfo]), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn api_list(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Json<Vec<CalendarInfo>>> {
    if !caller.user.is_staff() {
        return Err(ApiError::forbidden("工作日历仅限工作人员查看"));
    }
    Ok(Json(calendars_info(&app).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ImportBody {
    /// The arrangement as a calendar file (`years:` with one entry per year imported).
    pub yaml: String,
    /// Only say what publishing would do.
    #[serde(default)]
    pub dry_run: bool,
    /// Publish even though some deadline moves to before now.
    #[serde(default)]
    pub confirm: bool,
}

/// Import an official arrangement as the calendar's next revision (policy staff, admins):
/// `dry_run` answers the days that change and the open limits that move; a publish re-times
/// every open instance it moves.
#[utoipa::path(post, path = "/api/calendars/{id}/revisions", params(("id" = String, Path, description = "the calendar id (`cn-mainland`)")), tag = "calendars",
    request_body = ImportBody,
    responses((status = 200, description = "dry run: the days that change and the limits that move", body = Object),
        (status = 201, description = "published: the revision and what re-timing did", body = Object),
        (status = 403, body = ErrorBody),
        (status = 409, description = "`confirmation_required`: a deadline would move before now", body = ErrorBody),
        (status = 422, description = "the arrangement is refused, with located `details.diagnostics`", body = ErrorBody)))]
pub async fn api_import(
    State(app): State<App>,
    caller: Caller,
    extract::Path(id): extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if !may_publish(&caller.user) {
        return Err(ApiError::forbidden(
            "只有政策法规人员或管理员可以导入放假安排",
        ));
    }
    extract::require_json(&headers)?;
    let body: ImportBody = extract::parse_json(&body)?;
    if body.dry_run {
        let p = preview(&app, &id, &body.yaml).await?;
        return Ok(Json(p).into_response());
    }
    let (rev, done) = publish(
        &app,
        &id,
        &body.yaml,
        &caller.user.name,
        "api",
        body.confirm,
    )
    .await?;
    app.audit(
        &caller.user.name,
        caller.remote.clone(),
        "calendar_import",
        None,
        &format!("{id} revision {}", rev.revision),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "calendar": id,
            "revision": rev.revision,
            "retimed": done,
        })),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Pages

fn origin_text(r: &RevisionInfo) -> String {
    match r.origin.as_str() {
        "file" => format!("文件 {}", r.origin_detail),
        _ => match r.origin_detail.as_str() {
            "cli" => "命令行导入".into(),
            "api" => "接口导入".into(),
            _ => "页面导入".into(),
        },
    }
}

fn retimed_text(v: &Option<serde_json::Value>) -> String {
    let Some(v) = v else {
        return "重新计时中".into();
    };
    if v.get("superseded").is_some() {
        return "已被后续修订取代".into();
    }
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0);
    format!(
        "{} 个在办实例，{} 个期限变动（推后 {}，提前 {}），最多 {} 天",
        n("instances"),
        n("clocks_moved"),
        n("moved_later"),
        n("moved_earlier"),
        n("max_days")
    )
}

async fn calendars_view(
    app: &App,
    user: &PageUser,
    yaml: &str,
    result: Option<Markup>,
    flash: Option<&Flash>,
) -> Response {
    let infos = match calendars_info(app).await {
        Ok(i) => i,
        Err(e) => return fail(user, e),
    };
    let body = html! {
        h1 { "工作日历" }
        p.muted {
            "期限按工作日计算。正式年度取自国务院办公厅每年的放假安排通知；其后的年度按"
            (statutory::STATUTE) "推算为「暂定」，导入正式安排后，所有在办期限自动重新计算。"
        }
        @for c in &infos {
            section.calendar {
                h2 { (c.name.clone().unwrap_or_else(|| c.id.clone())) " " span.muted { "（第 " (c.revision) " 版）" } }
                p {
                    "正式年度：" (c.official_years.iter().map(i16::to_string).collect::<Vec<_>>().join("、"))
                    "；暂定年度：" (c.provisional_years[0]) "–" (c.provisional_years[1])
                }
                div.table-wrap { table {
                    thead { tr { th { "版本" } th { "来源" } th { "发布人" } th { "发布时间" } th { "重新计时" } } }
                    tbody {
                        @for r in &c.revisions {
                            tr {
                                td { "第 " (r.revision) " 版" }
                                td { (origin_text(r)) }
                                td { (r.published_by) }
                                td { (datetime(r.published_at.as_millisecond())) }
                                td { (retimed_text(&r.retimed)) }
                            }
                        }
                    }
                } }
            }
        }
        @if let Some(r) = result { (r) }
        @if may_publish(&user.user) {
            @for c in &infos {
                section {
                    h2 { "导入放假安排（" (c.name.clone().unwrap_or_else(|| c.id.clone())) "）" }
                    p.muted { "把通知中的日期按下面的格式粘贴进来：一年一个条目，holidays 为放假日期，workdays 为调休上班的周末。先预览，确认后发布。" }
                    form method="post" action={"/calendars/" (c.id) "/preview"} {
                        (hidden(user))
                        textarea name="yaml" rows="16" spellcheck="false" placeholder=(PLACEHOLDER) { (yaml) }
                        p { button type="submit" { "预览变化" } }
                    }
                }
            }
        }
    };
    page("工作日历", Some(user), flash, body).into_response()
}

const PLACEHOLDER: &str = "years:\n  - year: 2027\n    source: 国务院办公厅关于2027年部分节假日安排的通知\n    holidays:\n      - { name: 元旦, from: 2027-01-01, to: 2027-01-03 }\n      - { name: 春节, from: 2027-02-05, to: 2027-02-12 }\n    workdays:\n      - { date: 2027-02-20, for: 春节 }";

pub async fn page_list(State(app): State<App>, user: PageUser) -> Response {
    if !user.user.is_staff() {
        return fail(&user, ApiError::forbidden("工作日历仅限工作人员查看"));
    }
    calendars_view(&app, &user, "", None, None).await
}

fn preview_markup(id: &str, yaml: &str, p: &Preview, user: &PageUser) -> Markup {
    html! {
        section.preview {
            h2 { "预览：导入 " (p.years.iter().map(i16::to_string).collect::<Vec<_>>().join("、")) " 年正式安排" }
            @if p.days.is_empty() {
                p { "与现行日历相比，没有日期的上班/放假状态变化。" }
            } @else {
                p { "以下 " (p.days.len()) " 天的状态将改变：" }
                div.table-wrap { table {
                    thead { tr { th { "日期" } th { "原来" } th { "导入后" } th { "节日" } } }
                    tbody { @for d in &p.days {
                        tr {
                            td { (d.date) }
                            td { (if d.was_workday { "上班" } else { "放假" }) @if d.was_provisional { " （暂定）" } }
                            td { (if d.now_workday { "上班（调休）" } else { "放假" }) }
                            td { (d.holiday.clone().unwrap_or_default()) }
                        }
                    } }
                } }
            }
            @if p.moves.is_empty() {
                p { "没有在办期限会因此变动。" }
            } @else {
                p { (p.moves.len()) " 个在办期限将变动：" }
                div.table-wrap { table {
                    thead { tr { th { "项目" } th { "期限" } th { "原到期日" } th { "新到期日" } } }
                    tbody { @for m in &p.moves {
                        tr class=[m.overdue_now.then_some("overdue")] {
                            td { a href={"/instances/" (m.instance)} { (m.project) } }
                            td { (m.what) }
                            td { (due_date(m.old_due.as_millisecond())) }
                            td { (due_date(m.new_due.as_millisecond())) @if m.overdue_now { " ⚠ 立即超期" } }
                        }
                    } }
                } }
            }
            form method="post" action={"/calendars/" (id) "/publish"} {
                (hidden(user))
                input type="hidden" name="yaml" value=(yaml);
                @if p.needs_confirmation {
                    p.flash.err role="alert" {
                        label { input type="checkbox" name="confirm" value="1"; " 我已知晓：部分期限会提前到今天之前，发布后立即按超期处理（预警、督办各一次）。" }
                    }
                }
                p { button type="submit" { "发布为第 " (p.from_revision + 1) " 版" } }
            }
        }
    }
}

fn diagnostics_markup(yaml: &str, diags: &[Diagnostic]) -> Markup {
    html! {
        section.diagnostics {
            h2 { "校验未通过，未发布" }
            ul { @for d in diags {
                li { "第 " (d.line) " 行第 " (d.col) " 列 [" (d.code) "] " (d.message)
                    @if let Some(h) = &d.help { br; span.muted { (h) } }
                    @if let Some(l) = yaml.lines().nth((d.line as usize).saturating_sub(1)) { br; code { (l) } }
                }
            } }
        }
    }
}

/// What the import forms post: the arrangement, and on publishing the confirmation that
/// deadlines may move before today.
#[derive(Debug, Deserialize)]
struct ImportForm {
    #[serde(default, deserialize_with = "form::raw")]
    yaml: String,
    #[serde(default, deserialize_with = "form::checked")]
    confirm: bool,
}

/// The import form of the page: the CSRF check, the right to import, the arrangement's text
/// (with the browser's line ends made Unix ones, so that errors point at the lines shown).
#[allow(clippy::result_large_err)]
fn import_form(user: &PageUser, body: &Bytes) -> Result<ImportForm, Response> {
    let f: ImportForm = Fields::checked(user, body)?
        .parse()
        .map_err(|e| fail(user, e.into()))?;
    if !may_publish(&user.user) {
        return Err(fail(
            user,
            ApiError::forbidden("只有政策法规人员或管理员可以导入放假安排"),
        ));
    }
    Ok(ImportForm {
        yaml: f.yaml.replace("\r\n", "\n"),
        ..f
    })
}

pub async fn page_preview(
    State(app): State<App>,
    user: PageUser,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let yaml = match import_form(&user, &body) {
        Ok(f) => f.yaml,
        Err(r) => return r,
    };
    match preview(&app, &id, &yaml).await {
        Ok(p) => {
            let m = preview_markup(&id, &yaml, &p, &user);
            calendars_view(&app, &user, &yaml, Some(m), None).await
        }
        Err(ImportError::Invalid(d)) => {
            let m = diagnostics_markup(&yaml, &d);
            let flash = Flash {
                ok: false,
                text: format!("校验未通过：{} 个问题", d.len()),
                code: None,
            };
            let mut r = calendars_view(&app, &user, &yaml, Some(m), Some(&flash)).await;
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Err(e) => fail(&user, e.into()),
    }
}

pub async fn page_publish(
    State(app): State<App>,
    user: PageUser,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let ImportForm { yaml, confirm } = match import_form(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match publish(&app, &id, &yaml, &user.user.name, "editor", confirm).await {
        Ok((rev, done)) => {
            let moved: usize = done.iter().map(|d| d.clocks_moved).sum();
            let inst: usize = done.iter().map(|d| d.moved_instances).sum();
            let flash = Flash {
                ok: true,
                text: format!(
                    "已发布第 {} 版；{} 个在办实例的 {} 个期限已重新计时",
                    rev.revision, inst, moved
                ),
                code: None,
            };
            calendars_view(&app, &user, "", None, Some(&flash)).await
        }
        Err(ImportError::Invalid(d)) => {
            let m = diagnostics_markup(&yaml, &d);
            calendars_view(&app, &user, &yaml, Some(m), None).await
        }
        Err(e) => fail(&user, e.into()),
    }
}
