//! Containers in the JSON API: the engine's containers as last seen
//! (`GET /api/containers`), a scan now, start/stop/restart and logs by
//! container name. A service backed by a container is controlled through
//! the service routes too (`/api/services/{id}/restart`, `/logs`), which
//! come here.

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use chrono::{DateTime, Utc};
use lookout_proto::container::{ContainerName, ContainerView};
use lookout_proto::FieldError;
use serde::Serialize;

use super::extract::{PathText, QueryMap};
use super::systemd::{Actor, Logs};
use super::table::Routes;
use super::AppState;
use crate::auth::guard::{Caller, Remote};
use crate::auth::{Access, Bucket};
use crate::containers::{Action, ContainersError};
use crate::error::ApiError;
use crate::openapi::{doc, Answer, Doc, PathId, Takes};
use crate::store::accounts::AuditOutcome;

pub fn routes(r: Routes) -> Routes {
    r.get("/containers", Access::Viewer, list)
        .doc(doc(
            "The container engine's containers as last seen (its events keep them current), each with its service",
            "containers",
            Answer::One("ContainerList"),
        ))
        .post("/containers/scan", Access::Admin, scan)
        .doc(doc(
            "Read every container from the engine now",
            "containers",
            Answer::One("ContainerList"),
        ))
        .limited(
            Method::POST,
            "/containers/{name}/start",
            Access::Admin,
            Bucket::Control,
            start,
        )
        .doc(Doc {
            id: PathId::Container,
            ..doc("Start a container", "containers", Answer::One("ContainerView"))
        })
        .limited(
            Method::POST,
            "/containers/{name}/stop",
            Access::Admin,
            Bucket::Control,
            stop,
        )
        .doc(Doc {
            id: PathId::Container,
            ..doc(
                "Stop a container (SIGTERM, then SIGKILL after 10 s)",
                "containers",
                Answer::One("ContainerView"),
            )
        })
        .limited(
            Method::POST,
            "/containers/{name}/restart",
            Access::Admin,
            Bucket::Control,
            restart,
        )
        .doc(Doc {
            id: PathId::Container,
            ..doc("Restart a container", "containers", Answer::One("ContainerView"))
        })
        .limited(
            Method::GET,
            "/containers/{name}/logs",
            Access::Viewer,
            Bucket::Logs,
            logs,
        )
        .doc(Doc {
            id: PathId::Container,
            query: &[(
                "lines",
                Takes::Count,
                "how many of the last lines (1-10000, default 100)",
            )],
            ..doc(
                "A container's last lines, stdout and stderr",
                "containers",
                Answer::One("Logs"),
            )
        })
}

impl From<ContainersError> for ApiError {
    fn from(e: ContainersError) -> Self {
        use crate::containers::EngineError as E;
        match e {
            // Off is how this hub is set up, not a passing failure: no
            // engine is there to answer for.
            ContainersError::Disabled => ApiError::NotFound(format!("no container engine: {e}")),
            ContainersError::Store(e) => e.into(),
            ContainersError::Engine(e) => match e {
                E::NotFound(_) => ApiError::NotFound(e.to_string()),
                E::Engine(_) => ApiError::Conflict(FieldError::new("container", e.to_string())),
                E::Unreachable { .. } => ApiError::Unavailable(e.to_string()),
            },
        }
    }
}

/// A container and the service that stands for it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContainerEntry {
    #[serde(flatten)]
    pub container: ContainerView,
    /// The registry's service for it (raw, discovered or configured).
    pub service_id: Option<i64>,
    /// `raw`, `discovered` or `configured`.
    pub registry_status: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContainerList {
    /// When the engine was last read in full (its events keep the list
    /// current in between).
    pub scanned_at: Option<DateTime<Utc>>,
    pub containers: Vec<ContainerEntry>,
}

/// The containers as last seen, each with its service.
pub async fn current(state: &AppState) -> Result<ContainerList, ApiError> {
    state.containers.engine()?;
    let scan = match state.containers.last().await {
        Some(scan) => scan,
        None => {
            state
                .containers
                .scan(&state.registry, state.clock.now())
                .await?
        }
    };
    Ok(ContainerList {
        scanned_at: Some(scan.at),
        containers: scan
            .containers
            .into_iter()
            .map(|c| {
                let service = state.registry.by_container(&c.name);
                ContainerEntry {
                    service_id: service.as_ref().map(|e| e.service.id),
                    registry_status: service.map(|e| e.service.status.as_str().to_owned()),
                    container: c,
                }
            })
            .collect(),
    })
}

async fn list(State(state): State<AppState>) -> Result<Json<ContainerList>, ApiError> {
    Ok(Json(current(&state).await?))
}

async fn scan(State(state): State<AppState>) -> Result<Json<ContainerList>, ApiError> {
    state
        .containers
        .scan(&state.registry, state.clock.now())
        .await?;
    Ok(Json(current(&state).await?))
}

/// A container name from a path, checked against the engines' grammar.
pub fn parse_name(raw: &str) -> Result<ContainerName, ApiError> {
    ContainerName::parse(raw).map_err(|why| {
        ApiError::BadRequest(
            format!("{raw:?} is not a container name: it {why}"),
            vec![FieldError::new("name", why)],
        )
    })
}

fn audit_name(action: Action) -> &'static str {
    match action {
        Action::Start => "container.start",
        Action::Stop => "container.stop",
        Action::Restart => "container.restart",
    }
}

/// Why lookout will not do `action` to a container, if it will not: the
/// container lookout itself runs in (its host name is the container's id)
/// would cut the request's own answer off.
fn refusal(container: &ContainerView, action: Action) -> Option<&'static str> {
    // Read once: it does not change while lookout runs.
    static OWN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let own = OWN.get_or_init(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| h.len() >= 12)
    });
    (action != Action::Start
        && !container.id.is_empty()
        && own.as_deref().is_some_and(|h| h.starts_with(&container.id)))
    .then_some("lookout runs in it")
}

/// Starts, stops or restarts a container and records its new state; the
/// attempt and its result go to the audit log.
pub async fn control(
    state: &AppState,
    name: &ContainerName,
    action: Action,
    actor: Actor<'_>,
) -> Result<ContainerView, ApiError> {
    let result = control_unaudited(state, name, action).await;
    let (target, outcome) = match &result {
        Ok(c) => (format!("{} ({})", c.name, c.state), AuditOutcome::Ok),
        Err(e) => (
            format!("{name} ({})", e.body().message),
            AuditOutcome::Failed,
        ),
    };
    actor
        .audit(state, audit_name(action), target, outcome)
        .await;
    result
}

async fn control_unaudited(
    state: &AppState,
    name: &ContainerName,
    action: Action,
) -> Result<ContainerView, ApiError> {
    let engine = state.containers.engine()?;
    let before = engine
        .inspect(name.as_str())
        .await
        .map_err(ContainersError::from)?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "the container engine has no container named {name:?}"
            ))
        })?;
    if let Some(why) = refusal(&before, action) {
        return Err(ApiError::Conflict(FieldError::new(
            "container",
            format!(
                "{name} is not {} from lookout: {why}",
                match action {
                    Action::Start => "started",
                    Action::Stop => "stopped",
                    Action::Restart => "restarted",
                }
            ),
        )));
    }
    let after = engine
        .control(name, action)
        .await
        .map_err(ContainersError::from)?;
    tracing::info!(container = %name, action = action.as_str(), state = %after.state, "container control");
    state
        .containers
        .record(&state.registry, &after, state.clock.now())
        .await?;
    Ok(after)
}

/// The last `lines` lines of a container, as a unit's journal is shown.
pub async fn read_logs(
    state: &AppState,
    name: &ContainerName,
    lines: u32,
) -> Result<Logs, ApiError> {
    let engine = state.containers.engine()?;
    let read = engine
        .logs(name, lines)
        .await
        .map_err(ContainersError::from)?;
    Ok(Logs {
        unit: format!("container {name}"),
        lines: read
            .into_iter()
            .map(|l| lookout_systemd::LogEntry {
                time: l.time,
                // stderr as syslog's "error", stdout as "info".
                priority: Some(if l.stream == "stderr" { 3 } else { 6 }),
                pid: None,
                identifier: Some(l.stream.to_owned()),
                message: l.message,
            })
            .collect(),
    })
}

async fn act(
    state: &AppState,
    who: &crate::auth::Principal,
    client: &crate::auth::Client,
    raw: &str,
    action: Action,
) -> Result<Json<ContainerView>, ApiError> {
    let name = parse_name(raw)?;
    Ok(Json(
        control(state, &name, action, Actor { who, client }).await?,
    ))
}

async fn start(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathText(name): PathText,
) -> Result<Json<ContainerView>, ApiError> {
    act(&state, &who, &client, &name, Action::Start).await
}

async fn stop(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathText(name): PathText,
) -> Result<Json<ContainerView>, ApiError> {
    act(&state, &who, &client, &name, Action::Stop).await
}

async fn restart(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathText(name): PathText,
) -> Result<Json<ContainerView>, ApiError> {
    act(&state, &who, &client, &name, Action::Restart).await
}

async fn logs(
    State(state): State<AppState>,
    PathText(name): PathText,
    QueryMap(params): QueryMap,
) -> Result<Json<Logs>, ApiError> {
    let lines = super::systemd::lines_param(&params)?;
    let name = parse_name(&name)?;
    Ok(Json(read_logs(&state, &name, lines).await?))
}
