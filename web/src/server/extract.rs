//! The API's request extractors: a JSON body, the query string and the path parameters, read
//! the way axum's own extractors read them but refused as an [`ApiError`] (`{error, message,
//! details}` with a Chinese message that names the field), never as axum's `text/plain`
//! rejection. API handlers take these instead of `axum::Json`, `axum::extract::Query` and
//! `axum::extract::Path`.
//!
//! | what went wrong | status | `error` | `details` |
//! |---|---|---|---|
//! | `Content-Type` is not JSON | 415 | `unsupported_media_type` | `content_type` |
//! | the body is not JSON | 400 | `malformed_json` | `line`, `column` |
//! | JSON of the wrong shape | 422 | `invalid_body` | `path` (`fields.tier`), `reason` |
//! | a query parameter of the wrong type | 400 | `invalid_query` | `parameter`, `reason` |
//! | a path parameter of the wrong type | 400 | `invalid_path` | `parameter`, `value` |
//! | the body is larger than the limit | 413 | `payload_too_large` | |

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body of type `T`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// Refuses a body that does not say it is JSON (415), for handlers that read the body as bytes
/// (to check who may act before reading it) and parse it with [`parse_json`].
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if is_json(ctype) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "请求体须为 JSON：请设置 `Content-Type: application/json`。",
    )
    .with_details(serde_json::json!({ "content_type": ctype })))
}

/// The body as bytes, with a body over the server's limit refused as 413.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    "无法读取请求体，请重新发送。",
                )
            }
        })
}

/// The refusal of a body over the server's limit.
pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "请求体过大：不得超过 {} MiB。",
            super::BODY_LIMIT_BYTES >> 20
        ),
    )
}

/// `application/json` or any `+json` type, parameters (`; charset=utf-8`) aside.
fn is_json(ctype: &str) -> bool {
    let essence = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads `T` from JSON text: a syntax error names the line and column, a value of the wrong
/// shape names the field's path (`fields.investment`), so a client knows what to fix.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| json_refusal(&e.path().to_string(), e.into_inner()))?;
    de.end().map_err(|e| json_refusal(".", e))?;
    Ok(value)
}

fn json_refusal(path: &str, inner: serde_json::Error) -> ApiError {
    if inner.is_data() {
        let at = if path == "." {
            "请求体".to_string()
        } else {
            format!("字段 `{path}`")
        };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("{at}不符合要求：{}。", reason(&inner.to_string())),
        )
        .with_details(serde_json::json!({ "path": path, "reason": inner.to_string() }))
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!(
                "请求体不是有效的 JSON（第 {} 行第 {} 列）。",
                inner.line(),
                inner.column()
            ),
        )
        .with_details(serde_json::json!({
            "line": inner.line(),
            "column": inner.column(),
            "reason": inner.to_string(),
        }))
    }
}

/// serde's wording without its trailing position (the path says where).
fn reason(text: &str) -> String {
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// The query string read as `T`; a missing query string is an empty one.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let parameter = e.path().to_string();
                let why = e.into_inner().to_string();
                let message = if parameter == "." {
                    format!("查询参数不符合要求：{why}。")
                } else {
                    format!("查询参数 `{parameter}` 不符合要求：{why}。")
                };
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
                    .with_details(serde_json::json!({ "parameter": parameter, "reason": why }))
            })
    }
}

/// The path parameters read as `T` (a `String`, a number or a tuple of them).
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let (parameter, value) = match e.kind() {
                    ErrorKind::ParseErrorAtKey { key, value, .. } => (key.clone(), value.clone()),
                    // A tuple of parameters: name the one at `index` as the route does.
                    ErrorKind::ParseErrorAtIndex { index, value, .. } => {
                        let name = RawPathParams::from_request_parts(parts, state)
                            .await
                            .ok()
                            .and_then(|raw| raw.iter().nth(*index).map(|(k, _)| k.to_string()))
                            .unwrap_or_else(|| index.to_string());
                        (name, value.clone())
                    }
                    ErrorKind::ParseError { value, .. } => (String::new(), value.clone()),
                    ErrorKind::InvalidUtf8InPathParam { key } => (key.clone(), String::new()),
                    _ => (String::new(), String::new()),
                };
                let message = if parameter.is_empty() {
                    format!("路径中的 `{value}` 不是有效的值。")
                } else {
                    format!("路径参数 `{parameter}` 的值 `{value}` 无效。")
                };
                Err(
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", message).with_details(
                        serde_json::json!({ "parameter": parameter, "value": value }),
                    ),
                )
            }
            // The route and the handler disagree on the parameters: our fault, not the caller's.
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        fields: Fields,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Fields {
        investment: i64,
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_with_the_field_path() {
        let e = parse_json::<Body>(br#"{"name": "x", "fields": {"investment": "many"}}"#)
            .expect_err("refused");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body.error, "invalid_body");
        assert_eq!(e.body.details["path"], "fields.investment");
        assert!(
            e.body.message.contains("fields.investment"),
            "{}",
            e.body.message
        );
    }

    #[test]
    fn broken_json_is_refused_with_its_line_and_column() {
        let e = parse_json::<Body>(b"{\n  \"name\": ").expect_err("refused");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.error, "malformed_json");
        assert_eq!(e.body.details["line"], 2);
    }

    #[test]
    fn trailing_text_after_the_json_is_malformed() {
        let e = parse_json::<serde_json::Value>(b"{} x").expect_err("refused");
        assert_eq!(e.body.error, "malformed_json");
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters() {
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
