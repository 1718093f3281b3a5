//! The one path from HTTP to the command bus, for the API and the pages alike:
//! [`run_command`] (and [`run_command_with`] when the key and the expected version come from a
//! form; [`run_start`] for the command that creates an instance) checks the caller against the
//! project, namespaces the `Idempotency-Key` by user (so two users cannot collide on a key),
//! honours `If-Match` (the instance version the caller saw), measures, audits, and words a
//! refusal with the instance's own names.
//!
//! **Invariant:** handlers never decide anything about an instance; every change comes through
//! here to the bus, which asks the engine.

use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use shenpi_adapters::bus::{Audit, CommandError, Receipt, StartProject, Submit};
use shenpi_adapters::machine::Rejection;
use shenpi_adapters::store::InstanceMeta;
use shenpi_engine::compile::Definition;
use shenpi_engine::runtime::{self, Command, CommandEnvelope};
use utoipa::ToSchema;

use super::auth::{Caller, PageUser, policy};
use super::error::{ApiError, ApiResult};
use super::refusals::{self, Names};
use super::state::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandResult {
    pub instance: String,
    /// The instance version after the command (number of events).
    pub version: i64,
    /// Events this command recorded.
    pub events: i64,
    /// True when an earlier request with the same `Idempotency-Key` already did this.
    pub replayed: bool,
}

impl From<Receipt> for CommandResult {
    fn from(r: Receipt) -> Self {
        CommandResult {
            instance: r.instance,
            version: r.version,
            events: r.events,
            replayed: r.replayed,
        }
    }
}

/// The `Idempotency-Key` header, in the caller's own space of keys.
pub fn idempotency_key(headers: &HeaderMap, user: &str) -> ApiResult<Option<String>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key 只能由可见的 ASCII 字符组成。"))?;
            user_key(user, k).map(Some)
        }
    }
}

/// A client's idempotency key in its user's own space of keys, so that two users cannot collide
/// on one.
pub fn user_key(user: &str, k: &str) -> ApiResult<String> {
    if k.is_empty() || k.len() > 200 {
        return Err(ApiError::invalid("Idempotency-Key 须为 1 至 200 个字符。")
            .in_english("Idempotency-Key must be 1 to 200 characters"));
    }
    Ok(format!("{user}\u{1f}{k}"))
}

/// The `If-Match` header: the instance version the caller saw.
fn expected_version(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_matches('"'))
            .and_then(|s| s.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::invalid("If-Match 须为实例的版本号，例如 \"12\"。")),
    }
}

/// Who sent a command, for the audit entry the bus writes with it.
fn audit_of(caller: &Caller, action: &str) -> Option<Audit> {
    Some(Audit {
        user: caller.user.name.clone(),
        remote: caller.remote.clone(),
        action: action.to_string(),
    })
}

/// Counts the command in the metrics. Its audit entry, with the outcome, was committed by the
/// bus with the command; an answer the bus never committed (the database unreachable, a panic,
/// the writer stopping) is written to the trail here.
async fn record(
    app: &App,
    caller: &Caller,
    action: &str,
    instance: Option<&str>,
    res: &Result<Receipt, CommandError>,
    started: Instant,
) {
    let outcome = match res {
        Ok(r) if r.replayed => "replayed",
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    };
    app.metrics.command(outcome, started.elapsed());
    if let Err(e) = res
        && !e.audited_by_bus()
    {
        app.audit(
            &caller.user.name,
            caller.remote.clone(),
            action,
            instance,
            outcome,
        )
        .await;
    }
}

/// The one path from an HTTP request to the command bus.
pub async fn run_command(
    app: &App,
    caller: &Caller,
    instance: &str,
    cmd: Command,
    headers: &HeaderMap,
) -> ApiResult<CommandResult> {
    let key = idempotency_key(headers, &caller.user.name)?;
    let expected = expected_version(headers)?;
    run_command_with(app, caller, instance, cmd, key, expected).await
}

/// [`run_command`] with the key (already namespaced) and expected version given directly.
pub async fn run_command_with(
    app: &App,
    caller: &Caller,
    instance: &str,
    cmd: Command,
    key: Option<String>,
    expected: Option<i64>,
) -> ApiResult<CommandResult> {
    policy::check_command(&cmd)?;
    submit(app, caller, instance, cmd, key, expected).await
}

/// [`run_command_with`] for a command the caller has just confirmed with their password (a
/// signature on a commitment letter, `letters`): the one kind `policy::check_command` keeps
/// off the general path, because only the server can check a password.
pub async fn run_confirmed(
    app: &App,
    caller: &Caller,
    instance: &str,
    cmd: Command,
    key: Option<String>,
) -> ApiResult<CommandResult> {
    submit(app, caller, instance, cmd, key, None).await
}

async fn submit(
    app: &App,
    caller: &Caller,
    instance: &str,
    cmd: Command,
    key: Option<String>,
    expected: Option<i64>,
) -> ApiResult<CommandResult> {
    let project = app.project_of(instance).await?;
    if let Some(p) = &project
        && !policy::can_see_project(&caller.user, p)
    {
        return Err(ApiError::forbidden("这不是您的项目，无权办理。"));
    }
    check_recipient(app, instance, &cmd).await?;
    let action = command_name(&cmd);
    let started = Instant::now();
    let res = app
        .bus
        .submit(Submit {
            instance: instance.to_string(),
            start: None,
            key,
            expected_version: expected,
            command: CommandEnvelope {
                actor: caller.user.actor(),
                command: cmd,
            },
            audit: audit_of(caller, action),
            project: None,
        })
        .await;
    record(app, caller, action, Some(instance), &res, started).await;
    match res {
        Ok(r) => Ok(r.into()),
        Err(CommandError::Rejected(r)) => Err(refusal_named(app, instance, &r).await),
        Err(e) => Err(e.into()),
    }
}

/// Starts an instance: the `Start` command, which goes to an instance that does not exist yet and
/// so carries what it is started on (`meta`) and the project it belongs to (linked, and
/// registered when new, in the same transaction); a refusal is worded with `def`'s names.
pub async fn run_start(
    app: &App,
    caller: &Caller,
    meta: InstanceMeta,
    project: StartProject,
    channel: Option<&str>,
    key: Option<String>,
    def: &Definition,
) -> ApiResult<Receipt> {
    let cmd = Command::Start {
        project: meta.project.clone(),
        channel: channel.map(Into::into),
    };
    let started = Instant::now();
    let res = app
        .bus
        .submit(Submit {
            instance: meta.id.clone(),
            start: Some(meta),
            key,
            expected_version: None,
            command: CommandEnvelope {
                actor: caller.user.actor(),
                command: cmd,
            },
            audit: audit_of(caller, "start"),
            project: Some(project),
        })
        .await;
    record(app, caller, "start", None, &res, started).await;
    match res {
        Ok(r) => Ok(r),
        Err(CommandError::Rejected(r)) => Err(refusals::refused(&r, &Names::of(def, None))),
        Err(e) => Err(e.into()),
    }
}

/// The user a task is delegated, handed over (转办), sent for an opinion (委派) or added to as a
/// co-signer (加签) must exist
/// and be able to act on it: the engine takes any name, and a task given to nobody, or to an
/// applicant's account for an administration's step, would sit where no one can act on it.
/// A task the workflow addresses to the applicant goes only to the applicant side (the
/// applicant, the project's service officer: `policy::applicant_parties`); any other, only to
/// staff. Refused before the bus, so nothing changes.
async fn check_recipient(app: &App, instance: &str, cmd: &Command) -> ApiResult<()> {
    let (task, name, what) = match cmd {
        Command::Delegate {
            task,
            to,
            transfer: true,
        } => (task, to, "转办"),
        Command::Delegate { task, to, .. } => (task, to, "委托"),
        Command::Consult { task, to, .. } => (task, to, "委派"),
        Command::AddCosigner { task, user, .. } => (task, user, "加签"),
        _ => return Ok(()),
    };
    let Some(user) = app.accounts.user(name).await.map_err(ApiError::internal)? else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_user",
            format!(
                "没有名为「{name}」的用户，无法{what}：用户不存在，请从名单中选择已有的办理人员。"
            ),
        ));
    };
    // The task and the instance are the engine's to find: a missing one is its refusal.
    let Some((row, st, _, ctx)) = app.instance(instance).await? else {
        return Ok(());
    };
    let Some(t) = st.task(*task) else {
        return Ok(());
    };
    let applicants_task = runtime::policy::is_applicants_task(t);
    let could_act = if applicants_task {
        runtime::policy::applicant_parties(&ctx.def.plan, &st.applicant, &row.meta.project)
            .any(|u| u == user.name)
    } else {
        user.is_staff()
    };
    if could_act {
        return Ok(());
    }
    let why = if applicants_task {
        "这是申请人一方办理的事项，只能交给本项目的申请人或帮办专员"
    } else {
        "这是审批部门办理的事项，申请人账户不能办理"
    };
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "recipient_cannot_act",
        format!("「{name}」不能办理此任务，无法{what}：{why}。"),
    ))
}

/// A refusal worded with the names of the instance's workflow version and of its tasks.
async fn refusal_named(app: &App, instance: &str, r: &Rejection) -> ApiError {
    match app.instance(instance).await {
        Ok(Some((_, st, _, ctx))) => refusals::refused(r, &Names::of(&ctx.def, Some(&st))),
        _ => refusals::refused(r, &Names::default()),
    }
}

pub fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Start { .. } => "start",
        Command::Claim { .. } => "claim",
        Command::Approve { .. } => "approve",
        Command::Reject { .. } => "reject",
        Command::Return { .. } => "return",
        Command::ApproveConditional { .. } => "approve_conditional",
        Command::SupplyMaterial { .. } => "supply_material",
        Command::SignLetter { .. } => "sign_letter",
        Command::VerifyMaterial { .. } => "verify_material",
        Command::Delegate { .. } => "delegate",
        Command::AddCosigner { .. } => "add_cosigner",
        Command::Consult { .. } => "consult",
        Command::AnswerConsult { .. } => "answer_consult",
        Command::RemoveCosigner { .. } => "remove_cosigner",
        Command::TakeBack { .. } => "take_back",
        Command::ReadCopies => "read_copies",
        Command::Withdraw { .. } => "withdraw",
        Command::Urge { .. } => "urge",
        Command::Supervise { .. } => "supervise",
        Command::Comment { .. } => "comment",
        Command::Cc { .. } => "cc",
        Command::AttachElement { .. } => "attach_element",
        Command::Suspend { .. } => "suspend",
        Command::Resume { .. } => "resume",
        Command::Extend { .. } => "extend",
        Command::ResolveSupervision { .. } => "resolve_supervision",
        Command::TimerFired { .. } => "timer_fired",
        Command::Recalendar { .. } => "recalendar",
        Command::Migrate { .. } => "migrate",
    }
}

/// What a command is called on a page, by its [`command_name`] (the `done=` of a redirect
/// after a form); an unknown name is shown as 操作.
pub fn command_label_zh(name: &str) -> &'static str {
    match name {
        "start" => "提交申报",
        "claim" => "认领",
        "approve" => "通过",
        "reject" => "驳回",
        "return" => "退回补正",
        "approve_conditional" => "容缺通过",
        "supply_material" => "补交材料",
        "sign_letter" => "签署承诺书",
        "verify_material" => "核验材料",
        "delegate" => "委托或转办",
        "add_cosigner" => "加签",
        "consult" => "委派",
        "answer_consult" => "回复委派意见",
        "remove_cosigner" => "减签",
        "take_back" => "拿回",
        "read_copies" => "阅读抄送",
        "withdraw" => "撤回申报",
        "urge" => "催办",
        "supervise" => "挂牌督办",
        "comment" => "填写意见",
        "cc" => "抄送",
        "attach_element" => "挂接要素",
        "suspend" => "中止计时",
        "resume" => "恢复计时",
        "extend" => "延长时限",
        "resolve_supervision" => "督办销号",
        "migrate" => "迁移至新版本",
        _ => "操作",
    }
}

/// A command as the API takes it. A `supply_material` naming files is refused: an event may
/// name a file only once its content is stored whole (and restamped against a sweep), which the
/// upload route does and a JSON body cannot; it would also let a caller name another
/// instance's file by its hash and then read it through their own.
pub fn parse_command(value: serde_json::Value) -> ApiResult<Command> {
    let cmd = parse_any_command(value)?;
    if let Command::SupplyMaterial { material, files } = &cmd
        && !files.is_empty()
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "files_by_upload_only",
            format!(
                "材料「{material}」的文件须通过上传接口提交（POST /api/instances/{{id}}/materials/{material}/files），命令中不能直接列出文件。"
            ),
        ));
    }
    Ok(cmd)
}

fn parse_any_command(value: serde_json::Value) -> ApiResult<Command> {
    serde_json::from_value(value).map_err(|e| {
        ApiError::invalid(format!("不是有效的命令：请求体须是带 `type` 的 JSON 对象，且字段齐全、类型正确（{e}）。")).with_details(serde_json::json!({
            "hint": "一个 JSON 对象：`type` 为以下之一，另附该命令的字段：approve（同意）、reject（驳回或不予通过）、return（退回补正）、approve_conditional（容缺受理）、claim（签收）、delegate（转办）、consult（委派）、answer_consult（回复委派）、add_cosigner（加签）、remove_cosigner（减签）、take_back（拿回）、comment（填写意见）、cc（抄送）、read_copies（标记已读）、urge（催办）、supervise（挂牌督办）、suspend（中止计时）、resume（恢复计时）、extend（延长时限）、supply_material（补交材料）、verify_material（核验材料）、attach_element（挂接要素）、withdraw（撤回申报）、resolve_supervision（督办销号）"
        }))
    })
}

pub fn json_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<serde_json::Value> {
    super::extract::require_json(headers)?;
    if body.len() > 1 << 20 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "命令的请求体过大：不得超过 1 MiB。",
        ));
    }
    super::extract::parse_json(body)
}

/// The caller a page acts as: the logged-in user, with the session's CSRF token.
pub fn page_caller(u: &PageUser) -> Caller {
    Caller {
        user: u.user.clone(),
        remote: u.remote.clone(),
        csrf: Some(u.csrf.clone()),
    }
}
