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
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { field, value } => ApiError::Conflict(FieldError::new(
                field,
                format!("{value:?} is already taken"),
            )),
            StoreError::Database(e) => ApiError::Internal(e),
            e @ StoreError::SchemaTooNew { .. } => ApiError::Internal(e.into()),
            StoreError::Refused(message) => ApiError::BadRequest(message, vec![]),
        }
    }
}

impl From<crate::discovery::DiscoveryError> for ApiError {
    fn from(e: crate::discovery::DiscoveryError) -> Self {
        use crate::discovery::DiscoveryError;
        use lookout_systemd::Error as S;
        match e {
            DiscoveryError::Disabled => ApiError::Unavailable(e.to_string()),
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
        ApiError::Internal(e)
    }
}
