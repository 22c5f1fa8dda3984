//! The one error body every API answer uses when something is wrong.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes. Clients match on these, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorCode {
    /// The body is not valid JSON (syntax error, truncated document).
    MalformedJson,
    /// The JSON is well formed but a field has the wrong type or an invalid value.
    ValidationFailed,
    /// The request's `Content-Type` is not one the route accepts.
    UnsupportedMediaType,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The addressed resource does not exist.
    NotFound,
    /// The request conflicts with existing state (a duplicate name, say).
    Conflict,
    /// The path or query string is invalid (a non-numeric id, say).
    BadRequest,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// A dependency (systemd, the database) cannot be reached right now.
    ServiceUnavailable,
    /// No valid credentials were sent (and the route needs them).
    Unauthorized,
    /// The credentials are valid but do not allow this (a viewer writing), or
    /// the request came from another site.
    Forbidden,
    /// The client sent too many requests of this kind; see `Retry-After`.
    TooManyRequests,
    /// Something failed inside the hub; the details are in its log, never in the body.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A value refused, and why, in words a person can act on ("must be an
/// integer from 1 to 65535, got 0"): what every validator of outside input
/// returns, so a refusal is told apart from a failure (which has a type of
/// its own), and becomes a [`FieldError`] with the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// The reason as text, for what reads it as such (a message, a log line).
impl std::ops::Deref for Invalid {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Invalid {
    fn from(why: String) -> Self {
        Invalid(why)
    }
}

impl From<&str> for Invalid {
    fn from(why: &str) -> Self {
        Invalid(why.to_owned())
    }
}

impl From<Invalid> for String {
    fn from(e: Invalid) -> Self {
        e.0
    }
}

/// One offending field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The field's name as sent by the client (`base_url`, `port`; a path such as
    /// `tags[2]` for nested values).
    pub field: String,
    /// A sentence a person can act on.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The JSON body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// Empty when the error is not about particular fields.
    #[serde(default)]
    pub fields: Vec<FieldError>,
}
