//! Probes for load balancers and service managers: `/healthz` says the hub
//! answers (liveness), `/readyz` that it can reach its database and that
//! every background task runs (readiness).
//! Public, as probes are, and they reveal nothing but that.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::table::Routes;
use super::AppState;
use crate::auth::Access;
use crate::openapi::{doc, Answer};

pub fn root_routes(r: Routes) -> Routes {
    r.get("/healthz", Access::Public, healthz)
        .doc(doc("Liveness: the hub answers", "probes", Answer::Object))
        .get("/readyz", Access::Public, readyz)
        .doc(doc(
            "Readiness: the database answers within 2 s (else 503)",
            "probes",
            Answer::Object,
        ))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// How long the database may take to answer a probe.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if let Some(task) = state.health.failed() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "failed": task})),
        );
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "database": "ok"})),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "readiness probe: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "unreachable"})),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "database": "timed out"})),
        ),
    }
}
