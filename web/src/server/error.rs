//! The one error type every API handler returns, and its JSON body.
//!
//! Every failure leaves as `{"error": code, "message": text, "details": ...}` with the status that
//! tells a client what to do: 401 log in, 403 you may not, 404 no such thing, 409 someone got
//! there first (reload), 422 fix your input, 503 try later. Internal details (SQL errors) are
//! logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shenpi_adapters::bus::CommandError;
use shenpi_adapters::store::StoreError;
use shenpi_engine::runtime::RejectionKind;
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code: `unauthenticated`, `forbidden`, `not_found`, `conflict`, `stale_version`,
    /// `invalid`, `validation_failed`, or an engine rejection code such as `not_assigned`.
    pub error: String,
    pub message: String,
    /// Extra data: validation diagnostics with line and column, the rejection, versions.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// The message in English, for a client that asks for it (`Accept-Language: en`); the
    /// default is the Chinese `body.message`.
    pub english: Option<String>,
}

/// The English message of an error response, carried to `failure::shape_errors`, which sends it
/// instead of the Chinese one when the request asked for English.
#[derive(Debug, Clone)]
pub struct EnglishMessage(pub String);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.to_string(),
                message: message.into(),
                details: serde_json::Value::Null,
            },
            english: None,
        }
    }

    /// The same error with its message in English too.
    pub fn in_english(mut self, message: impl Into<String>) -> ApiError {
        self.english = Some(message.into());
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.body.details = details;
        self
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "请先登录：发送 `Authorization: Bearer <令牌>` 或会话 Cookie。",
        )
        .in_english("log in first: send `Authorization: Bearer <token>` or the session cookie")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// The server's own fault, logged; a database that cannot be reached is not one of those
    /// (its [`ApiError::unavailable`]: 503, try later), told apart by the error's type.
    pub fn internal(message: impl std::fmt::Display + 'static) -> ApiError {
        if unreachable_database(&message) {
            return ApiError::unavailable(&message);
        }
        tracing::error!("internal error: {message}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "服务器内部错误，详情见服务器日志。",
        )
        .in_english("internal server error; the server log has the details")
    }
}

impl ApiError {
    /// 503 `database_unavailable`: the database cannot be reached; nothing was done and the same
    /// request may be sent again later (`Retry-After`, in [`IntoResponse`]).
    pub fn unavailable(why: impl std::fmt::Display) -> ApiError {
        tracing::warn!("database unavailable: {why}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "数据库暂时无法访问，本次操作未执行，请稍后重试。",
        )
        .in_english("the database cannot be reached right now; nothing was done, try again later")
    }
}

/// Seconds a client is asked to wait before retrying a 503 (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 5;

/// Whether an error is the database being unreachable, by its type: the driver's error, the
/// store's, the accounts', or one of those inside an `anyhow::Error`.
fn unreachable_database(e: &dyn std::any::Any) -> bool {
    if let Some(e) = e.downcast_ref::<sqlx::Error>() {
        return shenpi_adapters::store::db_unavailable(e);
    }
    if let Some(e) = e.downcast_ref::<StoreError>() {
        return e.is_unavailable();
    }
    if let Some(super::accounts::AccountError::Db(e)) = e.downcast_ref() {
        return shenpi_adapters::store::db_unavailable(e);
    }
    if let Some(e) = e.downcast_ref::<anyhow::Error>() {
        return e
            .downcast_ref::<sqlx::Error>()
            .is_some_and(shenpi_adapters::store::db_unavailable)
            || e.downcast_ref::<StoreError>()
                .is_some_and(StoreError::is_unavailable);
    }
    false
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.body.error, self.body.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS.into());
        }
        if let Some(en) = self.english {
            r.extensions_mut().insert(EnglishMessage(en));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::conflict(format!("数据同时被修改，请重试：{m}")),
            other if other.is_unavailable() => ApiError::unavailable(other),
            other => ApiError::internal(other),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

/// The status of an engine refusal, by its kind: the one place that decides whether a refusal
/// is "you may not" (403), "no such task" (404), "someone got there first / it is over" (409),
/// "fix the request" (422) or the server's own fault (500).
pub fn rejection_status(kind: RejectionKind) -> StatusCode {
    match kind {
        RejectionKind::NotAllowed | RejectionKind::NotAssigned => StatusCode::FORBIDDEN,
        RejectionKind::NotFound => StatusCode::NOT_FOUND,
        RejectionKind::Conflict => StatusCode::CONFLICT,
        RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        RejectionKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            // Without the instance at hand ids stand for names; `commands::run_command_with` words
            // its refusals with the workflow's names.
            CommandError::Rejected(r) => {
                super::refusals::refused(&r, &super::refusals::Names::default())
            }
            CommandError::NotFound(i) => ApiError::not_found(format!("实例 `{i}` 不存在。")),
            CommandError::StaleVersion { expected, actual } => ApiError::new(
                StatusCode::CONFLICT,
                "stale_version",
                format!("实例已是第 {actual} 版，不是第 {expected} 版：请刷新后重试。"),
            )
            .with_details(serde_json::json!({ "expected": expected, "actual": actual })),
            CommandError::NoDefinition(d) => {
                ApiError::invalid(format!("没有已发布的流程定义 {d}。"))
            }
            CommandError::TimerSpent => ApiError::conflict("计时器已触发或已取消。"),
            CommandError::TimerNotDue { .. } => ApiError::conflict("计时器尚未到期。"),
            CommandError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "该实例正被频繁修改，请稍后重试。",
            ),
            CommandError::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "此 Idempotency-Key 已用于另一个请求（另一实例或另一操作），本次未执行：每个请求请使用新的键。",
            )
            .in_english("this Idempotency-Key was used for another request; nothing was done"),
            CommandError::Panicked(m) => ApiError::internal(m),
            CommandError::Unavailable(m) => ApiError::unavailable(m),
            CommandError::Store(m) => ApiError::internal(m),
            CommandError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "服务器正在停止，请在其他节点重试。",
            ),
        }
    }
}
