//! API errors: every failure becomes an [`ErrorBody`] with a 4xx status, except
//! internal ones, which answer a generic 500 and log their cause chain.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lookout_proto::{ErrorBody, ErrorCode, FieldError};

use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    Validation(Vec<FieldError>),
    MalformedJson(String),
    UnsupportedMediaType(String),
    PayloadTooLarge {
        limit: usize,
    },
    NotFound(String),
    Conflict(FieldError),
    BadRequest(String, Vec<FieldError>),
    MethodNotAllowed,
    /// A dependency such as systemd or the journal cannot be used right now.
    Unavailable(String),
    /// Credentials are missing or wrong.
    Unauthorized(String),
    /// The caller may not do this.
    Forbidden(String),
    /// Too much of a costly kind of work at once (password hashing); try
    /// again in a second.
    Busy(String),
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn not_found_service(id: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("no service with id {id}"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MalformedJson(_) | ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (code, message, fields) = match self {
            ApiError::Validation(fields) => (
                ErrorCode::ValidationFailed,
                format!(
                    "invalid {}: {}",
                    if fields.len() == 1 { "field" } else { "fields" },
                    fields
                        .iter()
                        .map(|f| format!("{} {}", f.field, f.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                fields.clone(),
            ),
            ApiError::MalformedJson(why) => (
                ErrorCode::MalformedJson,
                format!("the body is not valid JSON: {why}"),
                vec![],
            ),
            ApiError::UnsupportedMediaType(got) => (
                ErrorCode::UnsupportedMediaType,
                format!("expected Content-Type: application/json, got {got}"),
                vec![],
            ),
            ApiError::PayloadTooLarge { limit } => (
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than the limit of {limit} bytes"),
                vec![],
            ),
            ApiError::NotFound(what) => (ErrorCode::NotFound, what.clone(), vec![]),
            ApiError::Conflict(field) => (
                ErrorCode::Conflict,
                format!("{} {}", field.field, field.message),
                vec![field.clone()],
            ),
            ApiError::BadRequest(message, fields) => {
                (ErrorCode::BadRequest, message.clone(), fields.clone())
            }
            ApiError::MethodNotAllowed => (
                ErrorCode::MethodNotAllowed,
                "this route does not accept that HTTP method".into(),
                vec![],
            ),
            ApiError::Unavailable(why) => (ErrorCode::ServiceUnavailable, why.clone(), vec![]),
            ApiError::Unauthorized(why) => (ErrorCode::Unauthorized, why.clone(), vec![]),
            ApiError::Forbidden(why) => (ErrorCode::Forbidden, why.clone(), vec![]),
            ApiError::Busy(why) => (ErrorCode::ServiceUnavailable, why.clone(), vec![]),
            ApiError::Internal(_) => (
                ErrorCode::Internal,
                "internal error; the hub's log has the details".into(),
                vec![],
            ),
        };
        ErrorBody {
            code,
            message,
            fields,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = ?e, "request failed");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if let ApiError::Busy(_) = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { field, value } => ApiError::Conflict(FieldError::new(
                field,
                format!("{value:?} is already taken"),
            )),
            e @ (StoreError::Database(_)
            | StoreError::Migration(_)
            | StoreError::Encoding(_)
            | StoreError::Stopped(_)
            | StoreError::SchemaTooNew { .. }) => ApiError::Internal(e.into()),
            StoreError::Refused(message) => ApiError::BadRequest(message, vec![]),
            StoreError::Invalid(field) => ApiError::Validation(vec![field]),
            StoreError::ReadOnly(message) => ApiError::Conflict(FieldError::new("source", message)),
        }
    }
}

impl From<crate::discovery::DiscoveryError> for ApiError {
    fn from(e: crate::discovery::DiscoveryError) -> Self {
        use crate::discovery::DiscoveryError;
        use lookout_systemd::Error as S;
        match e {
            // Off is how this hub is set up, not a passing failure: there
            // is no systemd here to answer for (as with containers off).
            DiscoveryError::Disabled => ApiError::NotFound(e.to_string()),
            DiscoveryError::Store(e) => e.into(),
            DiscoveryError::Systemd(e) => match e {
                S::NoSuchUnit(_) => ApiError::NotFound(e.to_string()),
                S::Refused(_) => ApiError::Conflict(FieldError::new("unit", e.to_string())),
                S::Unreachable { .. } | S::Timeout { .. } | S::Journal(_) | S::Io(_) => {
                    ApiError::Unavailable(e.to_string())
                }
            },
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast_ref::<crate::auth::password::Busy>() {
            Some(busy) => ApiError::Busy(busy.to_string()),
            None => ApiError::Internal(e),
        }
    }
}

/// The longest message taken over from an error response that was not JSON.
const FOREIGN_MESSAGE_MAX: usize = 300;

/// Middleware for the API's routes: an error answered by something other
/// than an [`ApiError`] (an extractor's rejection, a layer's refusal) still
/// reaches the client as an [`ErrorBody`] with the same status, so every API
/// error has one shape. Its text, if any, becomes the message.
pub async fn errors_as_json(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let limit = req
        .extensions()
        .get::<std::sync::Arc<crate::auth::Auth>>()
        .map_or(0, |auth| auth.max_body_bytes);
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text: String = String::from_utf8_lossy(&text)
        .trim()
        .chars()
        .take(FOREIGN_MESSAGE_MAX)
        .collect();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit },
        StatusCode::NOT_FOUND => ApiError::NotFound(or(text, "not found")),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType(or(text, "another type"))
        }
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized(or(text, "credentials are needed")),
        StatusCode::FORBIDDEN => ApiError::Forbidden(or(text, "not allowed")),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(or(text, "try again later")),
        s if s.is_server_error() => {
            ApiError::Internal(anyhow::anyhow!("{s} without an error body: {text}"))
        }
        _ => ApiError::BadRequest(or(text, "the request cannot be read"), vec![]),
    };
    let mut json = error.into_response();
    *json.status_mut() = status;
    // Keep what the client needs to act on (Retry-After, WWW-Authenticate, Allow).
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

fn or(text: String, default: &str) -> String {
    if text.is_empty() {
        default.to_owned()
    } else {
        text
    }
}
