//! The message centre (消息): the notifications the outbox sends to a user, to one of their roles
//! or to their department, as they read them in the product, with read marks and the unread
//! count in every page's header. They are the outbox's own rows, rendered with the same
//! templates, so what arrives on DingTalk or by e-mail and what the message centre shows cannot
//! differ. A notification sent on several channels is one message here.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::{Deserialize, Serialize};
use shenpi_adapters::store::{OutboxMessage, OutboxStore};
use utoipa::ToSchema;

use super::accounts::User;
use super::auth::{Caller, PageUser};
use super::chrome::{datetime, fail, page};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract;
use super::form::{Fields, hidden};
use super::routes::{Routes, operation};
use super::state::App;

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(list))
        .api(operation!(mark_read))
        .page("/messages", get(messages_page).post(read_all_page))
        .page("/messages/{id}/open", post(open_page))
}

/// How many messages the centre reads back at most.
const LIMIT: i64 = 300;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    /// The message (the id of its first outbox row).
    pub id: String,
    pub at: i64,
    pub instance: Option<String>,
    /// The template it was written with (`task_assigned`, `urge`, `cc`, `supervise` …).
    pub template: String,
    /// Its first line.
    pub title: String,
    pub text: String,
    /// The page it is about, on this server.
    pub url: Option<String>,
    pub read: bool,
}

/// The parties a user is reached as: themself, each of their roles, their department.
pub fn recipients(user: &User) -> Vec<String> {
    std::iter::once(format!("user:{}", user.name))
        .chain(user.roles.iter().map(|r| format!("role:{r}")))
        .chain(user.department.iter().map(|d| format!("dept:{d}")))
        .collect()
}

/// The user's messages, newest first: one per notification, whatever the channels it went on.
pub async fn messages_of(app: &App, user: &User) -> ApiResult<Vec<Message>> {
    let rows = app.db.outbox_for(&recipients(user), LIMIT).await?;
    let mut seen: Vec<(Option<String>, String, i64, String)> = Vec::new();
    let mut picked: Vec<OutboxMessage> = Vec::new();
    for m in rows {
        let k = (
            m.row.instance.clone(),
            m.row.template.clone(),
            m.row.created_at,
            m.row.recipient.clone(),
        );
        if seen.contains(&k) {
            continue;
        }
        seen.push(k);
        picked.push(m);
    }
    let ids: Vec<String> = picked.iter().map(|m| m.row.id.clone()).collect();
    let read = app
        .accounts
        .read_messages(&user.name, &ids)
        .await
        .map_err(ApiError::internal)?;
    Ok(picked
        .into_iter()
        .map(|m| {
            let text = app
                .templates
                .render(&m.row.template, &m.row.payload)
                .unwrap_or_else(|_| "（消息无法显示：模板有误）".to_string());
            let title = text.lines().next().unwrap_or_default().to_string();
            let url = m
                .row
                .payload
                .get("url")
                .and_then(|u| u.as_str())
                .filter(|u| u.starts_with('/'))
                .map(str::to_string)
                .or_else(|| m.row.instance.as_ref().map(|i| format!("/instances/{i}")));
            Message {
                read: read.contains(&m.row.id),
                id: m.row.id,
                at: m.row.created_at,
                instance: m.row.instance,
                template: m.row.template,
                title,
                text,
                url,
            }
        })
        .collect())
}

/// Unread messages, for the header; a failure counts none (the page still renders).
pub async fn unread(app: &App, user: &User) -> i64 {
    match messages_of(app, user).await {
        Ok(m) => m.iter().filter(|m| !m.read).count() as i64,
        Err(_) => 0,
    }
}

/// My messages: the notifications sent to me, my roles and my department, newest first.
#[utoipa::path(get, path = "/api/messages", tag = "messages",
    responses((status = 200, body = [Message]), (status = 401, body = ErrorBody)))]
pub async fn list(State(app): State<App>, caller: Caller) -> ApiResult<Json<Vec<Message>>> {
    Ok(Json(messages_of(&app, &caller.user).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MarkRead {
    /// The messages to mark read; none: all of mine.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Unread {
    pub unread: i64,
}

/// Marks messages read (all of mine without `ids`); answers how many are still unread.
#[utoipa::path(post, path = "/api/messages/read", tag = "messages", request_body = MarkRead,
    responses((status = 200, body = Unread), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn mark_read(
    State(app): State<App>,
    caller: Caller,
    extract::Json(body): extract::Json<MarkRead>,
) -> ApiResult<Json<Unread>> {
    let mine = messages_of(&app, &caller.user).await?;
    let ids: Vec<String> = match body.ids {
        None => mine.iter().map(|m| m.id.clone()).collect(),
        Some(ids) => {
            if let Some(other) = ids.iter().find(|id| !mine.iter().any(|m| &m.id == *id)) {
                return Err(
                    ApiError::invalid(format!("消息 {other} 不在您的消息中心里。"))
                        .with_details(serde_json::json!({ "field": "ids" })),
                );
            }
            ids
        }
    };
    app.accounts
        .mark_read(&caller.user.name, &ids, app.now())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Unread {
        unread: unread(&app, &caller.user).await,
    }))
}

fn kind_zh(template: &str) -> &'static str {
    match template {
        "task_assigned" => "待办",
        "urge" => "催办",
        "cc" => "抄送",
        "supervise" => "挂牌督办",
        "escalation" => "超期督办",
        "overdue_alert" => "超期",
        "yellow_warning" => "临期预警",
        "promise_due" | "promise_breach" => "容缺承诺",
        "green_channel" => "绿色通道",
        "deadline_moved" => "时限调整",
        "weekly_report" | "half_monthly_report" | "monthly_report" => "报表",
        _ => "通知",
    }
}

async fn messages_page(State(app): State<App>, user: PageUser) -> Response {
    let msgs = match messages_of(&app, &user.user).await {
        Ok(m) => m,
        Err(e) => return fail(&user, e),
    };
    let unread = msgs.iter().filter(|m| !m.read).count();
    let body = html! {
        h1 { "消息中心" }
        p.muted { "未读 " span.count.unread-total { (unread) } " 条，共 " (msgs.len()) " 条。发往钉钉、企业微信、邮件的通知在此同样可见。" }
        @if unread > 0 {
            form method="post" action="/messages" class="inline" {
                (hidden(&user))
                button type="submit" { "全部标为已读" }
            }
        }
        @if msgs.is_empty() {
            p.empty { "暂无消息。" }
        } @else {
            ul.messages {
                @for m in &msgs {
                    li class={"message" (if m.read { " read" } else { " unread" })} data-template=(m.template) {
                        div.message-head {
                            span.kind { (kind_zh(&m.template)) }
                            @if !m.read { span.dot title="未读" { "未读" } }
                            time { (datetime(m.at)) }
                        }
                        pre.message-text { (m.text) }
                        @if m.url.is_some() {
                            form method="post" action={"/messages/" (m.id) "/open"} class="inline" {
                                (hidden(&user))
                                button type="submit" class="link-button" { "查看项目" }
                            }
                        }
                    }
                }
            }
        }
    };
    page("消息中心", Some(&user), None, body).into_response()
}

async fn read_all_page(State(app): State<App>, user: PageUser, body: Bytes) -> Response {
    if let Err(r) = Fields::checked(&user, &body) {
        return r;
    }
    let ids: Vec<String> = match messages_of(&app, &user.user).await {
        Ok(m) => m.into_iter().map(|m| m.id).collect(),
        Err(e) => return fail(&user, e),
    };
    if let Err(e) = app
        .accounts
        .mark_read(&user.user.name, &ids, app.now())
        .await
    {
        return fail(&user, ApiError::internal(e));
    }
    Redirect::to("/messages").into_response()
}

/// Opens a message: marks it read and goes to the page it is about.
async fn open_page(
    State(app): State<App>,
    user: PageUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = Fields::checked(&user, &body) {
        return r;
    }
    let msgs = match messages_of(&app, &user.user).await {
        Ok(m) => m,
        Err(e) => return fail(&user, e),
    };
    let Some(m) = msgs.into_iter().find(|m| m.id == id) else {
        return fail(&user, ApiError::not_found("没有这条消息。"));
    };
    if let Err(e) = app
        .accounts
        .mark_read(&user.user.name, std::slice::from_ref(&m.id), app.now())
        .await
    {
        return fail(&user, ApiError::internal(e));
    }
    Redirect::to(m.url.as_deref().unwrap_or("/messages")).into_response()
}
