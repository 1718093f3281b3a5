//! Logging in and out, for the API (a bearer token, and the session cookie) and for the pages
//! (the login form, each role's landing page, the logout button). Who a request is, once logged
//! in, and what they may do are `auth.rs`'s; the accounts are `accounts.rs`'s.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::{User, random_hex};
use super::auth::{Caller, PageUser, SESSION_TTL_MS, clear_cookie, cookie, session_cookie};
use super::chrome::page;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract;
use super::form::{self, Fields};
use super::routes::{Routes, operation};
use super::state::{App, LoginCheck};

const LOGIN_CSRF: &str = "shenpi_login_csrf";

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(login))
        .api(operation!(logout))
        .api(operation!(me))
        .page("/", get(home))
        .page("/login", get(login_page).post(login_submit))
        .page("/logout", post(logout_submit))
}

// ---------- API ----------

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`; valid for 12 hours.
    pub token: String,
    /// For requests made with the session cookie instead: the `X-CSRF-Token` header.
    pub csrf: String,
    pub user: User,
}

/// Log in with a password: returns a bearer token and sets the session cookie.
#[utoipa::path(post, path = "/api/login", request_body = LoginRequest, tag = "auth", security(()),
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody),
        (status = 429, description = "`too_many_failed_logins`: 5 wrong passwords for this user in 15 minutes; `too_many_requests` (with `Retry-After`): the server is too busy checking passwords", body = ErrorBody)))]
pub async fn login(
    State(app): State<App>,
    extract::Json(req): extract::Json<LoginRequest>,
) -> ApiResult<Response> {
    let user = match app
        .check_login(&req.name, &req.password)
        .await
        .map_err(ApiError::internal)?
    {
        LoginCheck::Ok(user) => user,
        LoginCheck::Locked { minutes } => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failed_logins",
                format!("此用户密码错误次数过多，请 {minutes} 分钟后再试。"),
            )
            .in_english(format!(
                "too many wrong passwords for this user: try again in {minutes} min"
            )));
        }
        LoginCheck::Busy(busy) => return Ok(busy.into_response()),
        LoginCheck::Wrong => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "用户名或密码错误。",
            )
            .in_english("wrong user name or password"));
        }
    };
    let (secret, csrf) = app
        .accounts
        .create_session(&user.name, app.now(), SESSION_TTL_MS)
        .await
        .map_err(ApiError::internal)?;
    let cookie = session_cookie(&secret, app.secure_cookies);
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(LoginResponse {
            token: secret,
            csrf,
            user,
        }),
    )
        .into_response())
}

/// End the session of the bearer token or cookie.
#[utoipa::path(post, path = "/api/logout", tag = "auth", security(()), responses((status = 204)))]
pub async fn logout(headers: HeaderMap, State(app): State<App>) -> ApiResult<Response> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| cookie(&headers, super::auth::SESSION_COOKIE));
    if let Some(s) = secret {
        app.accounts
            .end_session(&s)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie())],
    )
        .into_response())
}

/// The caller.
#[utoipa::path(get, path = "/api/me", tag = "auth",
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> Json<User> {
    Json(caller.user)
}

// ---------- pages ----------

/// What the login form posts.
#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    /// The double-submit token of the form's own cookie.
    #[serde(default, deserialize_with = "form::raw_opt")]
    csrf: Option<String>,
    #[serde(default, deserialize_with = "form::text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "form::raw")]
    password: String,
}

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
    let f: LoginForm = Fields::read(&body).parse().unwrap_or_default();
    // Login CSRF: the form's token must match the cookie set with the form (double submit).
    let expected = cookie(&headers, LOGIN_CSRF);
    if expected.is_none() || f.csrf != expected {
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
    let name = f.name.unwrap_or_default();
    let password = f.password;
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
        Ok(LoginCheck::Busy(busy)) => {
            return busy.retry_after(refused(StatusCode::TOO_MANY_REQUESTS, &busy.message()));
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

async fn logout_submit(
    State(app): State<App>,
    headers: HeaderMap,
    user: PageUser,
    body: Bytes,
) -> Response {
    if let Err(r) = Fields::checked(&user, &body) {
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
