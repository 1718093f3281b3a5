//! What a failure looks like to whoever asked: the API's `{error, message, details}` JSON for
//! `/api/...` (and for a client that asks for JSON only), a page in Chinese for a browser, plain
//! text for the probes (`/healthz`, `/readyz`, `/metrics`). [`shape_errors`] wraps the whole
//! router, so the failures that never reach a handler (no such route, wrong method, a body over
//! the limit, a URI too long, a rejection of axum's own) leave in the same shape as a handler's
//! [`ApiError`]; [`failure`] is the one function that chooses the shape.

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::chrome;
use super::error::{ApiError, EnglishMessage};

/// Whether a request asks for English before Chinese (`Accept-Language: en`, `en-US,zh;q=0.5`):
/// the language tag of highest weight, the first among equals.
pub fn wants_english(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut best: Option<(f32, bool)> = None;
    for part in v.split(',') {
        let mut it = part.trim().split(';');
        let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        let en = tag == "en" || tag.starts_with("en-");
        let zh = tag == "zh" || tag.starts_with("zh-");
        if (en || zh) && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, en));
        }
    }
    best.is_some_and(|(_, en)| en)
}

/// A JSON error response with its `message` replaced by the English one.
async fn in_english(resp: Response, en: String) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, 1 << 20).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
    };
    let out = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("message".into(), en.into());
            }
            serde_json::to_vec(&v).unwrap_or_else(|_| bytes.to_vec())
        }
        Err(_) => bytes.to_vec(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_LANGUAGE,
        header::HeaderValue::from_static("en"),
    );
    Response::from_parts(parts, axum::body::Body::from(out))
}

/// The longest request target (path and query) served; longer ones get 414. Far above any
/// URI the UI or a client writes (an inbox filter is under 200 characters), and below the
/// HTTP layer's own limit, so the refusal is ours and says what happened.
pub const URI_LIMIT: usize = 8 * 1024;

/// Who the answer is for, by path first and `Accept` second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Api,
    Page,
    Probe,
}

impl Audience {
    pub fn of(path: &str, headers: &HeaderMap) -> Audience {
        if path == "/api" || path.starts_with("/api/") {
            return Audience::Api;
        }
        if matches!(path, "/healthz" | "/readyz" | "/metrics") {
            return Audience::Probe;
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("application/json") && !accept.contains("text/html") {
            Audience::Api
        } else {
            Audience::Page
        }
    }
}

/// The failure `e` as `audience` reads it: the one place that decides between JSON, a page
/// and text.
pub fn failure(audience: Audience, e: ApiError) -> Response {
    match audience {
        Audience::Api => e.into_response(),
        Audience::Page => chrome::error_page(e.status, None, &e),
        Audience::Probe => (e.status, format!("{}\n", e.body.message)).into_response(),
    }
}

/// Refuses a URI over [`URI_LIMIT`], and gives every error response that is not yet in its
/// audience's shape (axum's empty 404 and 405, its `text/plain` rejections) that shape,
/// keeping its status and headers such as `Allow`.
pub async fn shape_errors(req: Request, next: Next) -> Response {
    let audience = Audience::of(req.uri().path(), req.headers());
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > URI_LIMIT {
        return failure(
            audience,
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("请求地址过长（{target_len} 个字符）：不得超过 {URI_LIMIT} 个字符。"),
            ),
        );
    }
    let method = req.method().clone();
    let english = wants_english(req.headers());
    let mut resp = next.run(req).await;
    if english
        && audience == Audience::Api
        && let Some(EnglishMessage(en)) = resp.extensions_mut().remove::<EnglishMessage>()
    {
        resp = in_english(resp, en).await;
    }
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_shaped(audience, &resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // axum's rejections say in English what went wrong; keep it for the client's logs.
    let reason = match to_bytes(body, 16 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    // A handler's (or an extractor's) `ApiError` sent as JSON to a browser keeps its own code
    // and sentence on the page.
    let worded = serde_json::from_str::<serde_json::Value>(&reason)
        .ok()
        .and_then(|v| {
            let code = v.get("error")?.as_str()?.to_string();
            let message = v.get("message")?.as_str()?.to_string();
            Some(ApiError::new(status, &code, message))
        });
    let e = match worded {
        Some(e) => e,
        None if reason.is_empty() => standard(status, &method, &parts.headers, audience),
        None => standard(status, &method, &parts.headers, audience)
            .with_details(serde_json::json!({ "reason": reason })),
    };
    let shaped = failure(audience, e);
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let (new_parts, new_body) = shaped.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, new_body)
}

/// Whether a response already has its audience's shape (a handler's `ApiError`, an error page).
fn is_shaped(audience: Audience, resp: &Response) -> bool {
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match audience {
        Audience::Api => ctype.starts_with("application/json"),
        Audience::Page => ctype.starts_with("text/html"),
        Audience::Probe => true,
    }
}

/// The code and Chinese sentence of a status nobody worded.
fn standard(
    status: StatusCode,
    method: &Method,
    headers: &HeaderMap,
    audience: Audience,
) -> ApiError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND if audience == Audience::Api => (
            "not_found",
            "没有这个接口；全部接口见 /api/openapi.json。".to_string(),
        ),
        StatusCode::NOT_FOUND => ("not_found", "页面不存在。".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            (
                "method_not_allowed",
                format!("此地址不接受 {method} 请求；可用的方法：{allow}。"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            return super::extract::payload_too_large();
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "请求体的类型（Content-Type）不受支持。".to_string(),
        ),
        StatusCode::BAD_REQUEST => ("bad_request", "请求格式有误。".to_string()),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid", "请求内容不符合要求。".to_string()),
        s if s.is_server_error() => ("internal", "服务器内部错误，详情见服务器日志。".to_string()),
        _ => ("http_error", "请求未能完成。".to_string()),
    };
    ApiError::new(status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_is_told_by_its_path_and_a_json_only_client_by_accept() {
        let none = HeaderMap::new();
        assert_eq!(Audience::of("/api/tasks", &none), Audience::Api);
        assert_eq!(Audience::of("/api", &none), Audience::Api);
        assert_eq!(Audience::of("/apiary", &none), Audience::Page);
        assert_eq!(Audience::of("/inbox", &none), Audience::Page);
        assert_eq!(Audience::of("/readyz", &none), Audience::Probe);
        let mut json = HeaderMap::new();
        json.insert(header::ACCEPT, "application/json".parse().expect("header"));
        assert_eq!(Audience::of("/nowhere", &json), Audience::Api);
        let mut browser = HeaderMap::new();
        browser.insert(
            header::ACCEPT,
            "text/html,application/xhtml+xml,application/json;q=0.9"
                .parse()
                .expect("header"),
        );
        assert_eq!(Audience::of("/nowhere", &browser), Audience::Page);
    }
}
