//! The outbox as operators see it: notifications that failed every retry (dead letters).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use shenpi_adapters::store::OutboxStore;
use utoipa::ToSchema;

use super::auth::{Caller, policy};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::routes::{Routes, operation};
use super::state::App;

pub fn routes() -> Routes {
    Routes::new().api(operation!(dead_letters))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    pub id: String,
    pub instance: Option<String>,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub tries: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Notifications that failed every retry (dead letters), for operators.
#[utoipa::path(get, path = "/api/outbox/dead", tag = "outbox",
    responses((status = 200, body = [DeadLetter]), (status = 403, body = ErrorBody)))]
pub async fn dead_letters(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Json<Vec<DeadLetter>>> {
    if !policy::can_supervise(&caller.user) {
        return Err(
            ApiError::forbidden("只有督办人员和管理员可以查看发送失败的通知。")
                .in_english("the outbox is for supervisors and admins"),
        );
    }
    let rows = app.db.outbox_in_state("dead", 500).await?;
    Ok(Json(
        rows.into_iter()
            .map(|m| DeadLetter {
                id: m.row.id,
                instance: m.row.instance,
                channel: m.row.channel,
                recipient: m.row.recipient,
                template: m.row.template,
                tries: m.tries,
                last_error: m.last_error,
                created_at: m.row.created_at,
            })
            .collect(),
    ))
}
