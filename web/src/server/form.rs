//! Typed forms: what a page posts, read into a serde struct (or an enum tagged by the form's
//! `action`) whose conversion checks it and answers a [`FormError`] that names the field and
//! says in Chinese what is wrong.
//!
//! Every form of a logged-in page carries the session's CSRF token, checked by
//! [`Fields::checked`] before anything is read; every action form also carries a fresh
//! idempotency key ([`hidden`]), so a double click or a resubmitted form is applied once.
//! A form body is read once into its fields (a repeated key, a checkbox list, keeps every
//! value); the deserialisers below say how one field is taken: [`text`] (trimmed, empty is
//! absent), [`raw`] (as typed: YAML, passwords), [`list`] (every value) and [`checked`].

use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::{Map, Value};

use super::accounts::random_hex;
use super::auth::PageUser;
use super::chrome::fail;
use super::error::ApiError;

/// A form that cannot be taken as it is: which field, and what is wrong with it, in Chinese.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    /// The form field's name (`reason`, `fields` ...); `action` for an unknown action.
    pub field: &'static str,
    pub message: String,
}

impl FormError {
    pub fn new(field: &'static str, message: impl Into<String>) -> FormError {
        FormError {
            field,
            message: message.into(),
        }
    }

    /// The form names no action this page knows.
    pub fn unknown_action() -> FormError {
        FormError::new("action", "未知操作")
    }
}

/// The value of a field the form cannot do without; `what` names it in the error (「请填写补正原因」).
pub fn required(
    value: Option<String>,
    field: &'static str,
    what: &str,
) -> Result<String, FormError> {
    value.ok_or_else(|| FormError::new(field, format!("请填写{what}")))
}

impl From<FormError> for ApiError {
    fn from(e: FormError) -> ApiError {
        ApiError::invalid(e.message).with_details(serde_json::json!({ "field": e.field }))
    }
}

/// The fields of a posted form, as they came.
pub struct Fields(Map<String, Value>);

impl Fields {
    /// Reads a form body without checking where it came from (the login form, whose CSRF token
    /// is a cookie of its own).
    pub fn read(body: &[u8]) -> Fields {
        let mut map = Map::new();
        for (k, v) in pairs(body) {
            match map.get_mut(&k) {
                None => {
                    map.insert(k, Value::String(v));
                }
                Some(Value::Array(a)) => a.push(Value::String(v)),
                Some(first) => {
                    let was = first.take();
                    *first = Value::Array(vec![was, Value::String(v)]);
                }
            }
        }
        Fields(map)
    }

    /// Reads a form and checks its CSRF token against the session's. The error is the finished
    /// error page, returned by the handler as it is (hence its size is no concern).
    #[allow(clippy::result_large_err)]
    pub fn checked(user: &PageUser, body: &[u8]) -> Result<Fields, Response> {
        let f = Fields::read(body);
        if f.first("csrf") != Some(user.csrf.as_str()) {
            let e = ApiError::forbidden("表单已过期或来源不明（CSRF 校验失败），请刷新页面后重试");
            return Err(fail(user, e));
        }
        Ok(f)
    }

    /// The first value of a field, as sent.
    pub fn first(&self, k: &str) -> Option<&str> {
        match self.0.get(k)? {
            Value::String(s) => Some(s),
            Value::Array(a) => a.first().and_then(Value::as_str),
            _ => None,
        }
    }

    /// The form's idempotency key as the page sent it ([`hidden`]).
    pub fn idem(&self) -> Option<String> {
        self.first("idem")
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
    }

    /// The form's idempotency key for the command bus, in the user's own space of keys and
    /// apart from the keys API clients send.
    pub fn key(&self, user: &PageUser) -> Option<String> {
        self.idem()
            .map(|k| format!("{}\u{1f}form:{k}", user.user.name))
    }

    /// The form as `T`, an enum tagged by its `action` (see [`action_of`]).
    pub fn action<T: DeserializeOwned>(&self) -> Result<T, FormError> {
        action_of(self)
    }

    /// The form as `T`. Fields `T` does not name (the CSRF token, the key) are ignored.
    /// A page's posted form as `T`, its CSRF token checked; else the page that says what was
    /// wrong (to return as it is, like [`Fields::checked`]'s).
    #[allow(clippy::result_large_err)]
    pub fn typed<T: DeserializeOwned>(user: &PageUser, body: &[u8]) -> Result<T, Response> {
        Fields::checked(user, body)?
            .parse()
            .map_err(|e| fail(user, e.into()))
    }

    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, FormError> {
        T::deserialize(Value::Object(self.0.clone()))
            .map_err(|e| FormError::new("", format!("表单内容无法读取：{e}")))
    }
}

/// The form as `T`, an enum tagged by the form's `action`; a form without one names no action
/// this page knows.
pub fn action_of<T: DeserializeOwned>(f: &Fields) -> Result<T, FormError> {
    if f.first("action").is_none() {
        return Err(FormError::unknown_action());
    }
    f.parse()
}

/// The hidden fields of every action form: the CSRF token and a fresh idempotency key.
pub fn hidden(u: &PageUser) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(u.csrf);
        input type="hidden" name="idem" value=(idem());
    }
}

/// A fresh idempotency key for a form.
pub fn idem() -> String {
    random_hex(12).unwrap_or_default()
}

/// One value or, for a repeated key, all of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Values {
    One(String),
    Many(Vec<String>),
}

impl Values {
    fn first(self) -> Option<String> {
        match self {
            Values::One(s) => Some(s),
            Values::Many(v) => v.into_iter().next(),
        }
    }
}

/// A text field: trimmed; empty or absent is `None` (use with `#[serde(default)]`).
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Values::deserialize(d)?
        .first()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// A field taken exactly as typed (a YAML text, a password, JSON).
pub fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Values::deserialize(d)?.first().unwrap_or_default())
}

/// A field taken exactly as typed, `None` when the form does not send it.
pub fn raw_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Values::deserialize(d)?.first())
}

/// Every value of a repeated field (a list of checkboxes), in order.
pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Values::deserialize(d)? {
        Values::One(s) => vec![s],
        Values::Many(v) => v,
    })
}

/// A checkbox or a yes/no button: ticked when it sends `true`, `1` or `on`.
pub fn checked<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Values::deserialize(d)?
        .first()
        .is_some_and(|v| matches!(v.as_str(), "true" | "1" | "on")))
}

/// A form body as (key, value) pairs, in order, keeping repeated keys.
fn pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                other => out.push(other),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

/// A value typed into a form for a field the workflow declares (a project's, an element's),
/// as the field's type reads it: numbers as numbers, yes/no as a boolean, a list split at
/// commas. What does not parse stays text, for the engine to refuse with the field's name.
pub fn typed_value(ty: shenpi_engine::model::FieldType, v: &str) -> Value {
    use shenpi_engine::model::FieldType;
    match ty {
        FieldType::Number => v.parse::<f64>().map(Value::from).unwrap_or(v.into()),
        FieldType::Int => v.parse::<i64>().map(Value::from).unwrap_or(v.into()),
        FieldType::Bool => Value::Bool(v == "true"),
        FieldType::List => Value::Array(v.split(',').map(|s| s.trim().into()).collect()),
        _ => v.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(default, deserialize_with = "text")]
        name: Option<String>,
        #[serde(default, deserialize_with = "raw")]
        yaml: String,
        #[serde(default, deserialize_with = "list")]
        waive: Vec<String>,
        #[serde(default, deserialize_with = "checked")]
        confirm: bool,
    }

    #[test]
    fn fields_are_decoded_and_taken_as_declared() {
        let f = Fields::read(
            b"name=+%E5%BC%A0%E4%B8%89+&yaml=a%3A+1%0D%0A++b&waive=eia&waive=energy&confirm=1&csrf=t",
        );
        let s: Sample = f.parse().expect("parses");
        assert_eq!(s.name.as_deref(), Some("张三"));
        assert_eq!(s.yaml, "a: 1\r\n  b");
        assert_eq!(s.waive, vec!["eia", "energy"]);
        assert!(s.confirm);
        assert_eq!(f.first("csrf"), Some("t"));
    }

    #[test]
    fn empty_and_absent_fields_are_absent() {
        let s: Sample = Fields::read(b"name=+++&waive=x").parse().expect("parses");
        assert_eq!(s.name, None);
        assert_eq!(s.yaml, "");
        assert_eq!(s.waive, vec!["x"]);
        assert!(!s.confirm);
    }

    #[test]
    fn a_repeated_single_field_keeps_its_first_value() {
        let s: Sample = Fields::read(b"name=a&name=b").parse().expect("parses");
        assert_eq!(s.name.as_deref(), Some("a"));
    }

    #[test]
    fn a_form_error_names_its_field_in_the_api_error() {
        let e: ApiError = FormError::new("reason", "请填写理由").into();
        assert_eq!(e.status.as_u16(), 422);
        assert_eq!(e.body.message, "请填写理由");
        assert_eq!(e.body.details["field"], "reason");
    }

    #[test]
    fn malformed_escapes_are_kept_as_typed() {
        let f = Fields::read(b"name=100%&yaml=%zz");
        assert_eq!(f.first("name"), Some("100%"));
        assert_eq!(f.first("yaml"), Some("%zz"));
    }
}
