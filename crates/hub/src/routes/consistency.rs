//! Reading your own writes across hubs. Every API answer names, in
//! `X-Lookout-Event`, the event log's id up to which it speaks: for a read,
//! the newest event whose change this hub's memory has; for a write on a
//! database other hubs may share (or one that carried
//! `X-Lookout-Min-Event`), the id of the event it caused, once logged. A
//! client that sends that id back as `X-Lookout-Min-Event` — to this hub or
//! to another one on the same database — is answered only once that hub has
//! applied it, waiting up to [`MIN_EVENT_WAIT`], or told to retry (503,
//! `Retry-After: 1`).
//!
//! A write on a hub alone with its database answers at once otherwise: its
//! memory has the write, so any id it names is enough to read it back there,
//! and the write does not wait for the event log.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lookout_proto::FieldError;

use super::AppState;
use crate::error::ApiError;

/// The header a client sends with the event id it needs this hub to have.
pub const MIN_EVENT: &str = "x-lookout-min-event";
/// The header every API answer carries with the event id it speaks for.
pub const EVENT: &str = "x-lookout-event";
/// How long a request waits for its `X-Lookout-Min-Event`.
pub const MIN_EVENT_WAIT: Duration = Duration::from_secs(1);
/// How long a write's answer waits for its event's id before it names the
/// newest one memory has instead.
const LOGGED_WAIT: Duration = Duration::from_secs(2);

/// The event id `X-Lookout-Min-Event` names, if the request has one.
fn min_event(request: &Request) -> Result<Option<i64>, ApiError> {
    let Some(value) = request.headers().get(MIN_EVENT) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "X-Lookout-Min-Event must be an event id (a whole number, 0 or more)".into(),
                vec![FieldError::new(
                    "X-Lookout-Min-Event",
                    "must be a whole number, 0 or more",
                )],
            )
        })
}

/// The middleware: waits for `X-Lookout-Min-Event`, answers, and names the
/// answer's event id. Only API routes take part.
pub async fn read_your_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let asked = match min_event(&request) {
        Ok(asked) => asked,
        Err(refused) => return refused.into_response(),
    };
    if let Some(id) = asked {
        if !state.registry.wait_applied(id, MIN_EVENT_WAIT).await {
            // 503 with `Retry-After: 1`.
            return ApiError::Busy(format!(
                "this hub has applied events up to {}, not yet {id}; retry in a second",
                state.registry.applied()
            ))
            .into_response();
        }
    }
    let consistent = state.shared_database || asked.is_some();
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let mut response = next.run(request).await;
    let status = response.status();
    let id = if consistent && write && (status.is_success() || status.is_redirection()) {
        // Everything published so far, this request's events included.
        let published = state.events.published();
        state.events.logged(published, LOGGED_WAIT).await
    } else {
        None
    };
    let id = id.unwrap_or_else(|| state.registry.applied());
    response.headers_mut().insert(EVENT, HeaderValue::from(id));
    response
}
