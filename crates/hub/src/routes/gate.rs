//! What every request passes before the guard and any handler reads it:
//!
//! - no NUL character, whatever route reads it and whichever engine would
//!   store it (PostgreSQL refuses NUL in text, SQLite keeps it, and a NUL in
//!   a unit file ends a line): the path, the query and JSON or form bodies;
//! - a URI of at most [`URI_MAX`] bytes, refused with the API's error body
//!   (longer than 64 KiB, the HTTP server refuses it itself, without a body).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lookout_proto::FieldError;
use serde_json::Value;

use super::AppState;
use crate::error::ApiError;

const WHY: &str = "must not contain NUL";

/// The longest URI (path and query) the hub reads.
pub const URI_MAX: usize = 8 * 1024;

/// Whether a JSON text holds a NUL in a string: a raw NUL byte or the escape
/// `\u0000`. Outside strings, valid JSON has no backslash, so following the
/// escapes is enough to tell an escaped backslash before `u0000` apart.
fn json_has_nul(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            0 => return true,
            b'\\' if text.get(i + 1) == Some(&b'u') => {
                if text.get(i + 2..i + 6) == Some(b"0000") {
                    return true;
                }
                i += 6;
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    false
}

/// Whether percent-encoded text (a path, a query, a form body) decodes to a
/// NUL.
fn encoded_has_nul(text: &[u8]) -> bool {
    text.contains(&0) || text.windows(3).any(|w| w == b"%00")
}

/// The fields (JSON paths such as `description` or `tags[2]`) whose text
/// holds a NUL, keys included.
fn nul_fields(value: &Value, path: &str, out: &mut Vec<FieldError>) {
    match value {
        Value::String(s) if s.contains('\0') => {
            out.push(FieldError::new(
                if path.is_empty() { "body" } else { path },
                WHY,
            ));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nul_fields(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key.contains('\0') {
                    out.push(FieldError::new(at.replace('\0', "\u{fffd}"), WHY));
                } else {
                    nul_fields(item, &at, out);
                }
            }
        }
        _ => {}
    }
}

fn refuse(api: bool, fields: Vec<FieldError>) -> Response {
    if api {
        ApiError::Validation(fields).into_response()
    } else {
        super::ui::message(
            StatusCode::BAD_REQUEST,
            "Could not read the request",
            "A field holds a NUL character, which no value in lookout may contain.",
        )
    }
}

/// The middleware: a request whose path, query or body holds a NUL gets a
/// 422 naming the field, or a 400 page for a form or a browser's page load;
/// one with a URI longer than [`URI_MAX`] a 414.
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json = super::extract::is_json(content_type);
    let form = content_type.split(';').next().is_some_and(|e| {
        e.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    let wants_page = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let api = !form && (json || !wants_page || req.uri().path().starts_with("/api"));
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > URI_MAX {
        let message = format!("the URI is {uri_len} bytes long; the limit is {URI_MAX}");
        return if api {
            let mut response = ApiError::BadRequest(message, vec![]).into_response();
            *response.status_mut() = StatusCode::URI_TOO_LONG;
            response
        } else {
            super::ui::message(
                StatusCode::URI_TOO_LONG,
                "Address too long",
                &format!(
                    "This address is {uri_len} bytes long; lookout reads addresses of up to \
                     {URI_MAX} bytes. Go back and shorten what you searched for or typed."
                ),
            )
        };
    }
    if encoded_has_nul(req.uri().path().as_bytes()) {
        return refuse(api, vec![FieldError::new("path", WHY)]);
    }
    if req
        .uri()
        .query()
        .is_some_and(|q| encoded_has_nul(q.as_bytes()))
    {
        return refuse(api, vec![FieldError::new("query", WHY)]);
    }
    if !json && !form {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) if api => {
            return ApiError::PayloadTooLarge {
                limit: state.max_body_bytes,
            }
            .into_response()
        }
        Err(_) => {
            return super::ui::message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form is larger than this hub accepts.",
            )
        }
    };
    if json && json_has_nul(&bytes) {
        let mut fields = Vec::new();
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            nul_fields(&value, "", &mut fields);
        }
        if fields.is_empty() {
            fields.push(FieldError::new("body", WHY));
        }
        return refuse(api, fields);
    }
    if form && encoded_has_nul(&bytes) {
        let fields: Vec<FieldError> = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, v)| k.contains('\0') || v.contains('\0'))
            .map(|(k, _)| FieldError::new(k.replace('\0', "\u{fffd}"), WHY))
            .collect();
        let fields = if fields.is_empty() {
            vec![FieldError::new("body", WHY)]
        } else {
            fields
        };
        return refuse(api, fields);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_in_json_strings_and_only_there() {
        assert!(json_has_nul(br#"{"a": "x\u0000y"}"#));
        assert!(json_has_nul(b"{\"a\": \"x\0\"}"));
        // An escaped backslash followed by the letters u0000 is text, not NUL.
        assert!(!json_has_nul(br#"{"a": "x\\u0000"}"#));
        assert!(json_has_nul(br#"{"a": "x\\\u0000"}"#));
        assert!(json_has_nul(br#"{"a": "\u00001"}"#));
        assert!(!json_has_nul(br#"{"a": "\u0001", "b": "\"u0000"}"#));
    }

    #[test]
    fn names_the_fields_that_hold_nul() {
        let value: Value = serde_json::from_str(
            r#"{"name": "ok", "tags": ["a", "b\u0000"], "x": {"y": "\u0000"}}"#,
        )
        .unwrap();
        let mut fields = Vec::new();
        nul_fields(&value, "", &mut fields);
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["tags[1]", "x.y"]);
    }

    #[test]
    fn finds_nul_in_encoded_text() {
        assert!(encoded_has_nul(b"username=ada%00&password=x"));
        assert!(!encoded_has_nul(b"username=ada%2500"));
        assert!(!encoded_has_nul(b"q=100%25"));
    }
}
