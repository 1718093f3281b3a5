//! Who is calling, and what they may do.
//!
//! Two ways in: `Authorization: Bearer <secret>` (an API token from `shenpi token create`, or the
//! session secret `POST /api/login` returns), and the UI's session cookie (`shenpi_session`,
//! HttpOnly, SameSite=Lax). A request that arrives by cookie and changes something must carry the
//! session's CSRF token (the `X-CSRF-Token` header, or the `csrf` field of a form), so a page on
//! another site cannot act in the user's name; a bearer token cannot be sent by another site, so
//! it needs none.
//!
//! The authorisation rules all live in [`policy`]: one function per question, called by the API
//! and the pages alike. Who is an instance's applicant, who may act on a task and who may comment
//! on an instance are the engine's own policy (`shenpi_engine::runtime::policy`, reported as
//! `not_assigned` / `not_authorised`), so they are never re-implemented here.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::accounts::User;
use super::error::ApiError;
use super::state::App;

pub const SESSION_COOKIE: &str = "shenpi_session";
/// Sessions last a working day and a bit.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// The value of a cookie, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn session_cookie(secret: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The address the request is believed to come from (`security::TrustedProxies` decides
/// whether `X-Forwarded-For` counts).
pub fn remote(parts: &Parts, app: &App) -> Option<String> {
    super::security::remote_of(&parts.headers, &parts.extensions, app)
}

/// An authenticated API caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub remote: Option<String>,
    /// The session's CSRF token when the caller came by cookie.
    pub csrf: Option<String>,
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Caller, ApiError> {
        let remote = remote(parts, app);
        if let Some(secret) = bearer(&parts.headers) {
            if let Some(user) = app.user_for_token(secret).await? {
                return Ok(Caller {
                    user,
                    remote,
                    csrf: None,
                });
            }
            if let Some(s) = app
                .accounts
                .session(secret, app.now())
                .await
                .map_err(ApiError::internal)?
            {
                return Ok(Caller {
                    user: s.user,
                    remote,
                    csrf: None,
                });
            }
            return Err(ApiError::unauthenticated());
        }
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::unauthenticated());
        };
        let Some(s) = app
            .accounts
            .session(&secret, app.now())
            .await
            .map_err(ApiError::internal)?
        else {
            return Err(ApiError::unauthenticated());
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            if sent != Some(s.csrf.as_str()) {
                return Err(ApiError::forbidden(
                    "CSRF 令牌缺失或不正确：请在 X-CSRF-Token 请求头中发送会话的令牌。",
                )
                .with_details(serde_json::json!({"reason": "csrf"})));
            }
        }
        Ok(Caller {
            user: s.user,
            remote,
            csrf: Some(s.csrf),
        })
    }
}

/// A logged-in UI user; pages without one redirect to the login page.
#[derive(Debug, Clone)]
pub struct PageUser {
    pub user: User,
    pub csrf: String,
    pub remote: Option<String>,
    /// The server's clock when the request came in (ms): the date every page's header shows.
    pub now: i64,
    /// The header's words for the user: their department's name and their roles' names.
    pub department_name: Option<String>,
    pub role_names: Vec<String>,
    /// Messages in the message centre not yet read.
    pub unread: i64,
}

pub struct ToLogin;

impl IntoResponse for ToLogin {
    fn into_response(self) -> Response {
        Redirect::to("/login").into_response()
    }
}

impl FromRequestParts<App> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<PageUser, Response> {
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ToLogin.into_response());
        };
        let now = app.now();
        match app.accounts.session(&secret, now).await {
            Ok(Some(s)) => {
                let names = super::names::Everywhere::of(&app.machine);
                let department_name = s
                    .user
                    .department
                    .as_deref()
                    .map(|d| names.department_of(d, &s.user.roles));
                let role_names = s.user.roles.iter().map(|r| names.role(r)).collect();
                let unread = super::messages::unread(app, &s.user).await;
                Ok(PageUser {
                    user: s.user,
                    csrf: s.csrf,
                    remote: remote(parts, app),
                    now,
                    department_name,
                    role_names,
                    unread,
                })
            }
            Ok(None) => Err(ToLogin.into_response()),
            Err(e) => Err(ApiError::internal(e).into_response()),
        }
    }
}

/// The authorisation rules, one function per question.
pub mod policy {
    use shenpi_engine::runtime::Command;

    use super::super::accounts::{Project, User};
    use super::super::error::ApiError;

    /// Only policy staff publish definitions.
    pub fn can_publish(u: &User) -> bool {
        u.has("policy_staff")
    }

    /// Anyone who writes rules may also check drafts.
    pub fn can_validate(u: &User) -> bool {
        u.has("policy_staff") || u.has("admin")
    }

    /// Dashboard, reports, dead letters.
    pub fn can_supervise(u: &User) -> bool {
        u.has("supervisor") || u.has("admin")
    }

    pub fn can_see_dashboard(u: &User) -> bool {
        can_supervise(u) || u.has("policy_staff")
    }

    /// Applicants and service officers register projects and start them.
    pub fn can_start(u: &User) -> bool {
        u.has("applicant") || u.has("service_officer") || u.has("admin")
    }

    /// A project's own applicant, its 1-to-1 service officer, or staff.
    pub fn can_see_project(u: &User, p: &Project) -> bool {
        if u.is_staff() {
            return true;
        }
        is_project_party(u, p)
    }

    /// Who may read an instance (its page, `GET /api/instances/{id}`, its diagram and its
    /// material files): the project's applicant side; staff of a department the workflow
    /// lists; staff without a department, supervisors and policy staff. An approver of a
    /// department the workflow does not involve reads nothing of it. An instance without a
    /// registered project is staff's only.
    pub fn can_read_instance(
        u: &User,
        p: Option<&Project>,
        def: &shenpi_engine::compile::Definition,
    ) -> bool {
        if let Some(p) = p
            && is_project_party(u, p)
        {
            return true;
        }
        if !u.is_staff() {
            return false;
        }
        match &u.department {
            None => true,
            Some(d) => {
                can_supervise(u)
                    || u.has("policy_staff")
                    || def.workflow.departments.iter().any(|x| x.id.value == *d)
            }
        }
    }

    /// The applicant who owns the project or its service officer.
    pub fn is_project_party(u: &User, p: &Project) -> bool {
        if p.owner == u.name {
            return true;
        }
        p.fields.as_object().is_some_and(|o| {
            o.values().any(|v| v.as_str() == Some(u.name.as_str())) && u.has("service_officer")
        })
    }

    /// Who may be named to take part in a task (委托, 转办, 委派, 加签): anyone working for the
    /// administration; an applicant's account reviews nothing.
    pub fn may_take_tasks(u: &User) -> bool {
        u.is_staff()
    }

    /// Checks a command before it goes to the engine, for what only the server knows: an
    /// instance is started through `POST /api/instances`, and timers are fired and re-timed by
    /// the engine alone. Everything else — who is the applicant, who may act on a task, who may
    /// comment or send a copy — is `shenpi_engine::runtime::policy`, asked by `decide`; its
    /// refusals (`not_assigned`, `not_authorised`) come back as 403 with a Chinese sentence.
    pub fn check_command(cmd: &Command) -> Result<(), ApiError> {
        match cmd {
            Command::Start { .. } => Err(ApiError::invalid(
                "请通过 POST /api/instances 启动实例，不能作为办理命令发送。",
            )),
            Command::TimerFired { .. } | Command::Recalendar { .. } => Err(ApiError::forbidden(
                "计时器由引擎触发和重新计时，不能手工发送。",
            )),
            // A signature needs the signer's password, which only the letters endpoint checks.
            Command::SignLetter { .. } => Err(ApiError::forbidden(
                "承诺书须输入登录密码确认后签署：请使用 POST /api/instances/{id}/letters/{pre}/sign 或项目页面的签署表单。",
            )
            .in_english("a commitment letter is signed with the signer's password: use POST /api/instances/{id}/letters/{pre}/sign")),
            _ => Ok(()),
        }
    }
}
