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
}

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
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.body.details = details;
        self
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "log in first: send `Authorization: Bearer <token>` or a session cookie",
        )
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

    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {message}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.body.error, self.body.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::conflict(format!("concurrent update, retry: {m}")),
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
            CommandError::NotFound(i) => {
                ApiError::not_found(format!("instance `{i}` does not exist"))
            }
            CommandError::StaleVersion { expected, actual } => ApiError::new(
                StatusCode::CONFLICT,
                "stale_version",
                format!("the instance is at version {actual}, not {expected}: reload and retry"),
            )
            .with_details(serde_json::json!({ "expected": expected, "actual": actual })),
            CommandError::NoDefinition(d) => {
                ApiError::invalid(format!("no published definition {d}"))
            }
            CommandError::TimerSpent => ApiError::conflict("timer already fired or cancelled"),
            CommandError::TimerNotDue { .. } => ApiError::conflict("timer not due yet"),
            CommandError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too much contention on this instance; retry",
            ),
            CommandError::Store(m) => ApiError::internal(m),
            CommandError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; retry on another node",
            ),
        }
    }
}
