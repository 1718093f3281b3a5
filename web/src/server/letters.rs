//! Commitment letters (承诺书): the letters of an instance (`GET /api/instances/{id}/letters`),
//! signing one by re-entering one's password (`POST …/letters/{pre}/sign`, and the instance
//! page's form), and the block of the instance page that shows them.
//!
//! The engine issues a letter with a 容缺 pre-approval and decides a signature (`SignLetter`:
//! only the instance's applicant parties, once, and only the text whose SHA-256 they send). What
//! only the server can do is check the password: the signature is first asked of the engine
//! without it (a dry run through the machine the bus uses, as an upload is), so a caller who
//! may not sign, a changed text or a second signature is refused before a password is hashed;
//! then the password is checked as a login is (`App::check_login`: the same hash, the same
//! count of failures per name, so guessing through this form locks the name as the login form
//! does), and the command goes through the one command path (`commands::run_confirmed`), whose
//! bus writes the audit entry with it. `policy::check_command` refuses `sign_letter` on the
//! general command endpoint, which checks no password.
//!
//! [`instance_letters`] is what an instance's letters are for a reader: the API, the instance
//! page and the dossier (办件档案) list them from it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use shenpi_adapters::machine::Machine as _;
use shenpi_engine::runtime::event::PreApprovalId;
use shenpi_engine::runtime::letter::{self, LetterView};
use shenpi_engine::runtime::{Command, CommandEnvelope, InstanceState};
use utoipa::ToSchema;

use super::accounts::User;
use super::auth::{Caller, PageUser, policy};
use super::chrome::{datetime, fail};
use super::commands::{CommandResult, idempotency_key, page_caller, run_confirmed};
use super::engine::{EngineCtx, timestamp};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{self, Path};
use super::form::{Fields, hidden};
use super::names::WorkflowNames;
use super::refusals::{self, Names};
use super::routes::{Routes, operation};
use super::state::{App, LoginCheck};

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(list_letters))
        .api(operation!(sign_letter))
        .page(
            "/instances/{id}/letters/{pre}/sign",
            axum::routing::post(sign_page),
        )
}

/// A signature, as the API answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignatureEntry {
    pub by: String,
    /// When (ms since the epoch).
    pub at: i64,
    /// The address it was signed from.
    pub remote: Option<String>,
    /// The SHA-256 of the text signed (the letter's).
    pub sha256: String,
}

/// One commitment letter of an instance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LetterEntry {
    /// The pre-approval it belongs to (the `{pre}` of the sign path).
    pub pre: u32,
    pub node: String,
    /// The node's name, as the workflow gives it.
    pub node_name: String,
    /// The document template it was rendered from.
    pub template: String,
    /// The exact text to sign.
    pub text: String,
    /// SHA-256 of the text (its UTF-8 bytes), lower-case hex: send it back to sign.
    pub sha256: String,
    /// When it was issued, with the pre-approval (ms since the epoch).
    pub issued_at: i64,
    /// The last day to sign it (`YYYY-MM-DD`), on the workflow's working-day calendar.
    pub sign_by: Option<String>,
    /// The time to sign, as the rule writes it (`3wd`).
    pub sign_within: String,
    /// Working days since the pre-approval.
    pub working_days_since: u32,
    /// Not signed within `sign_within` (listed on the 督办看板).
    pub overdue: bool,
    /// Who may sign it: the applicant and the project's service officer.
    pub signers: Vec<String>,
    /// Whether the caller may sign it now.
    pub may_sign: bool,
    pub signed: Option<SignatureEntry>,
}

/// The letters of an instance for a reader: the engine's [`letter::letters`] at `now`, with the
/// workflow's names and whether `user` may sign each. The dossier lists them from here.
pub fn instance_letters(
    ctx: &EngineCtx,
    st: &InstanceState,
    user: &User,
    now: i64,
) -> Vec<LetterEntry> {
    let names = WorkflowNames(&ctx.def);
    let running = st.status == shenpi_engine::runtime::state::Status::Running;
    letter::letters(&ctx.def, &ctx.cal, st, timestamp(now))
        .into_iter()
        .map(|l| entry(&names, l, user, running))
        .collect()
}

fn entry(names: &WorkflowNames<'_>, l: LetterView, user: &User, running: bool) -> LetterEntry {
    let may_sign = running && l.signed.is_none() && l.signers.iter().any(|s| *s == user.name);
    LetterEntry {
        pre: l.pre.0,
        node_name: names.node(&l.node),
        node: l.node.to_string(),
        template: l.template.to_string(),
        text: l.text,
        sha256: l.sha256.to_string(),
        issued_at: l.issued_at.as_millisecond(),
        sign_by: l.sign_by.map(|d| d.to_string()),
        sign_within: l.sign_within,
        working_days_since: l.working_days_since,
        overdue: l.overdue,
        signers: l.signers.iter().map(|s| s.to_string()).collect(),
        may_sign,
        signed: l.signed.map(|s| SignatureEntry {
            by: s.by.to_string(),
            at: s.at.as_millisecond(),
            remote: s.remote,
            sha256: s.sha256.to_string(),
        }),
    }
}

type Instance = (
    shenpi_adapters::store::InstanceRow,
    InstanceState,
    std::sync::Arc<EngineCtx>,
);

/// The instance if `user` may read it, refused as the instance page refuses.
async fn readable(app: &App, user: &User, id: &str) -> ApiResult<Instance> {
    let Some((row, st, _, ctx)) = app.instance(id).await? else {
        return Err(ApiError::not_found(format!("没有编号为 {id} 的办理实例。"))
            .in_english(format!("no instance `{id}`")));
    };
    let project = app
        .accounts
        .project_of(id)
        .await
        .map_err(ApiError::internal)?;
    if !policy::can_read_instance(user, project.as_ref(), &ctx.def) {
        return Err(
            ApiError::forbidden("这不是您的项目，也不是您所在部门参与的流程，无权查看。")
                .in_english("not your project, nor a workflow your department takes part in"),
        );
    }
    Ok((row, st, ctx))
}

/// The commitment letters (承诺书) of an instance: text, hash, deadline, and who signed when
/// from where.
#[utoipa::path(get, path = "/api/instances/{id}/letters", tag = "letters",
    params(("id" = String, Path, description = "the instance")),
    responses((status = 200, body = [LetterEntry]), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_letters(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<LetterEntry>>> {
    let (_, st, ctx) = readable(&app, &caller.user, &id).await?;
    Ok(Json(instance_letters(&ctx, &st, &caller.user, app.now())))
}

/// A signature: the caller's password again, and the hash of the text they read.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignRequest {
    pub password: String,
    /// The letter's `sha256` as it was shown; refused (`letter_changed`) when it is not the
    /// letter's.
    pub sha256: String,
}

/// Signs a letter for the API and the page: the engine's dry run, the password, the command.
async fn sign(
    app: &App,
    caller: &Caller,
    id: &str,
    pre: u32,
    req: &SignRequest,
    key: Option<String>,
) -> ApiResult<CommandResult> {
    let (row, st, ctx) = readable(app, &caller.user, id).await?;
    let cmd = Command::SignLetter {
        pre: PreApprovalId(pre),
        sha256: req.sha256.trim().into(),
        remote: caller.remote.clone(),
    };
    let dry = CommandEnvelope {
        actor: caller.user.actor(),
        command: cmd.clone(),
    };
    if let Err(r) = app.machine.decide(&ctx, &row.meta, &st, &dry, app.now()) {
        return Err(refusals::refused(&r, &Names::of(&ctx.def, Some(&st))));
    }
    let wrong = match app
        .check_login(&caller.user.name, &req.password)
        .await
        .map_err(ApiError::internal)?
    {
        LoginCheck::Ok(u) if u.name == caller.user.name => None,
        LoginCheck::Ok(_) | LoginCheck::Wrong => Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_password",
                "密码不正确，承诺书未签署：请输入您登录本系统的密码。",
            )
            .in_english("wrong password: the letter was not signed"),
        ),
        LoginCheck::Locked { minutes } => Some(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failed_logins",
                format!("此用户密码错误次数过多，请 {minutes} 分钟后再试。"),
            )
            .in_english(format!(
                "too many wrong passwords for this user: try again in {minutes} min"
            )),
        ),
        LoginCheck::Busy(b) => Some(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            b.message(),
        )),
    };
    if let Some(e) = wrong {
        // A failed attempt is in the audit trail too; nothing else is recorded.
        app.audit(
            &caller.user.name,
            caller.remote.clone(),
            "sign_letter",
            Some(id),
            &e.body.error,
        )
        .await;
        return Err(e);
    }
    run_confirmed(app, caller, id, cmd, key).await
}

/// Sign a commitment letter (承诺书): the applicant or the project's service officer, with
/// their password and the hash of the text they read. Every attempt is in the audit trail.
#[utoipa::path(post, path = "/api/instances/{id}/letters/{pre}/sign", tag = "letters",
    request_body = SignRequest,
    params(("id" = String, Path, description = "the instance"),
        ("pre" = u32, Path, description = "the pre-approval whose letter is signed"),
        ("Idempotency-Key" = Option<String>, Header, description = "retries are applied once")),
    responses((status = 200, body = CommandResult), (status = 401, body = ErrorBody),
        (status = 403, description = "`wrong_password`, or `not_letter_signer`: not the applicant side", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`letter_already_signed`, or `letter_changed`: the hash is not the letter's", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "`too_many_failed_logins`: 5 wrong passwords in 15 minutes (logins count too)", body = ErrorBody)))]
pub async fn sign_letter(
    State(app): State<App>,
    caller: Caller,
    Path((id, pre)): Path<(String, u32)>,
    headers: HeaderMap,
    extract::Json(req): extract::Json<SignRequest>,
) -> ApiResult<Json<CommandResult>> {
    let key = idempotency_key(&headers, &caller.user.name)?;
    Ok(Json(sign(&app, &caller, &id, pre, &req, key).await?))
}

/// The instance page's sign form.
async fn sign_page(
    State(app): State<App>,
    user: PageUser,
    axum::extract::Path((id, pre)): axum::extract::Path<(String, u32)>,
    body: Bytes,
) -> Response {
    let posted = match Fields::checked(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let req = SignRequest {
        password: posted.first("password").unwrap_or_default().to_string(),
        sha256: posted.first("sha256").unwrap_or_default().to_string(),
    };
    if req.password.is_empty() {
        return fail(
            &user,
            ApiError::invalid("请输入登录密码以确认签署。")
                .with_details(serde_json::json!({ "field": "password" })),
        );
    }
    let key = posted.key(&user);
    match sign(&app, &page_caller(&user), &id, pre, &req, key).await {
        Ok(_) => Redirect::to(&format!("/instances/{id}?done=sign_letter#letters")).into_response(),
        Err(e) => fail(&user, e),
    }
}

/// The instance page's block: each letter's text, its state, the sign form for whoever may sign
/// it now, and who signed when, from where, with the hash.
pub fn letters_block(user: &PageUser, id: &str, letters: &[LetterEntry]) -> Markup {
    if letters.is_empty() {
        return html! {};
    }
    html! {
        section.letters id="letters" {
            h2 { "容缺受理承诺书" }
            @for l in letters {
                article.letter data-pre=(l.pre) {
                    h3 {
                        "「" (l.node_name) "」环节 · "
                        @if l.signed.is_some() { span.letter-signed { "已签署" } }
                        @else if l.overdue { span.letter-overdue { "逾期未签署" } }
                        @else { span.letter-unsigned { "待签署" } }
                    }
                    pre.letter-text { (l.text) }
                    p.muted {
                        "出具于 " (datetime(l.issued_at))
                        @if let Some(d) = &l.sign_by { " · 应于 " (date_text(d)) " 前签署（" (limit_text(&l.sign_within)) "）" }
                        " · 已过 " (l.working_days_since) " 个工作日"
                        " · 签署人：" (l.signers.join("、"))
                    }
                    p.letter-hash { "文本 SHA-256：" code { (l.sha256) } }
                    @if let Some(s) = &l.signed {
                        p.signature {
                            "由 " strong { (s.by) } " 于 " (datetime(s.at)) " 签署"
                            @if let Some(r) = &s.remote { "（来源地址 " (r) "）" }
                            "；签署文本 SHA-256：" code { (s.sha256) }
                        }
                    } @else if l.may_sign {
                        form.sign-letter method="post" action={"/instances/" (id) "/letters/" (l.pre) "/sign"} {
                            (hidden(user))
                            input type="hidden" name="sha256" value=(l.sha256);
                            p { "本人已阅读上述承诺书全文，同意签署。请输入登录密码确认：" }
                            label { "密码 " input name="password" type="password" autocomplete="current-password" required; }
                            " "
                            button type="submit" { "确认签署承诺书" }
                        }
                    }
                }
            }
        }
    }
}

/// `2026-03-05` as `2026年3月5日`.
fn date_text(iso: &str) -> String {
    match iso.parse::<jiff::civil::Date>() {
        Ok(d) => letter::date_zh(d),
        Err(_) => iso.to_string(),
    }
}

fn limit_text(raw: &str) -> String {
    super::refusals::limit_zh(raw)
}
