//! The systemd part of the JSON API: scans, timers, start/stop/restart,
//! status, logs, and managed services (`lookout-app-<name>.service`).

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use lookout_proto::service::{kind, parse_new_service, ScanResult, TimerView};
use lookout_proto::FieldError;
use lookout_systemd::effects::Job;
use lookout_systemd::unitfile::{unit_dir, write_atomically, ManagedService};
use lookout_systemd::{Action, LogEntry, UnitName, UnitStatus};
use serde::Serialize;
use serde_json::{Map, Value};

use super::extract::Checked;
use super::extract::{PathText, QueryMap};
use super::table::Routes;
use super::AppState;
use crate::auth::guard::{Caller, Remote};
use crate::auth::{Access, Bucket, Client, Principal};
use crate::discovery::{DiscoveryError, CONTROL_TIMEOUT};
use crate::error::ApiError;
use crate::openapi::{doc, Answer, Doc, PathId, Takes};
use crate::store::accounts::AuditOutcome;
use crate::store::Service;
use axum::http::Method;

pub fn routes(r: Routes) -> Routes {
    r.get("/scan", Access::Viewer, last_scan)
        .doc(doc("The last systemd scan", "systemd", Answer::One("ScanResult")))
        .post("/scan", Access::Admin, run_scan)
        .doc(doc(
            "Scan systemd now: units, their ports and processes",
            "systemd",
            Answer::One("ScanResult"),
        ))
        .post("/scan/cleanup", Access::Admin, cleanup)
        .doc(doc(
            "Remove discovered services whose unit is gone",
            "systemd",
            Answer::One("CleanupResult"),
        ))
        .get("/timers", Access::Viewer, list_timers)
        .doc(doc("systemd timers", "systemd", Answer::Many("TimerView")))
        .limited(
            Method::POST,
            "/services/{id}/start",
            Access::Admin,
            Bucket::Control,
            start,
        )
        .doc(Doc {
            id: PathId::RowOrUnit,
            ..doc("Start the service's unit or container", "systemd", Answer::Object)
        })
        .limited(
            Method::POST,
            "/services/{id}/stop",
            Access::Admin,
            Bucket::Control,
            stop,
        )
        .doc(Doc {
            id: PathId::RowOrUnit,
            ..doc("Stop the service's unit or container", "systemd", Answer::Object)
        })
        .limited(
            Method::POST,
            "/services/{id}/restart",
            Access::Admin,
            Bucket::Control,
            restart,
        )
        .doc(Doc {
            id: PathId::RowOrUnit,
            ..doc("Restart the service's unit or container", "systemd", Answer::Object)
        })
        .limited(
            Method::POST,
            "/services/{id}/enable",
            Access::Admin,
            Bucket::Control,
            enable,
        )
        .doc(Doc {
            id: PathId::RowOrUnit,
            ..doc(
                "Enable the unit file (start at boot), like systemctl enable",
                "systemd",
                Answer::One("InstallOutcome"),
            )
        })
        .limited(
            Method::POST,
            "/services/{id}/disable",
            Access::Admin,
            Bucket::Control,
            disable,
        )
        .doc(Doc {
            id: PathId::RowOrUnit,
            ..doc(
                "Disable the unit file, like systemctl disable",
                "systemd",
                Answer::One("InstallOutcome"),
            )
        })
        .get("/services/{id}/status", Access::Viewer, status)
        .doc(Doc {
            id: PathId::RowOrUnit,
            ..doc("The unit's state now", "systemd", Answer::One("UnitStatus"))
        })
        .limited(
            Method::GET,
            "/services/{id}/logs",
            Access::Viewer,
            Bucket::Logs,
            logs,
        )
        .doc(Doc {
            query: &[(
                "lines",
                Takes::Count,
                "how many of the last lines (1-10000, default 100)",
            )],
            id: PathId::RowOrUnit,
            ..doc("The unit's journal, or the container's output", "systemd", Answer::One("Logs"))
        })
        .limited(
            Method::GET,
            "/services/{id}/logs/follow",
            Access::Viewer,
            Bucket::Logs,
            follow_logs,
        )
        .doc(Doc {
            id: PathId::RowOrUnit,
            ..doc(
                "The unit's journal as it is written (server-sent events: each entry a `log` event, its data a LogEntry)",
                "systemd",
                Answer::Text("text/event-stream"),
            )
        })
        .post("/apps", Access::Admin, create_app)
        .doc(Doc {
            body: Some("AppCreateRequest"),
            ..doc(
                "Create a managed service: a unit file lookout writes and starts",
                "systemd",
                Answer::Created("ServiceView"),
            )
        })
        .delete("/apps/{id}", Access::Admin, delete_app)
        .doc(Doc {
            id: PathId::AppName,
            ..doc(
                "Stop and remove a managed service and its unit file",
                "systemd",
                Answer::Empty,
            )
        })
}

async fn run_scan(State(state): State<AppState>) -> Result<Json<ScanResult>, ApiError> {
    Ok(Json(state.scans().scan().await?))
}

async fn last_scan(State(state): State<AppState>) -> Result<Json<ScanResult>, ApiError> {
    state
        .scans()
        .last_scan()
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no scan has run yet; POST /api/scan runs one".into()))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CleanupResult {
    /// Discovered services removed because their unit is gone.
    deleted: u64,
}

async fn cleanup(State(state): State<AppState>) -> Result<Json<CleanupResult>, ApiError> {
    let deleted = state.registry.delete_removed().await?;
    Ok(Json(CleanupResult { deleted }))
}

async fn list_timers(State(state): State<AppState>) -> Result<Json<Vec<TimerView>>, ApiError> {
    Ok(Json(state.store.list_timers().await?))
}

/// A unit addressed by registry id or by unit name.
pub struct UnitTarget {
    pub unit: UnitName,
    pub service: Option<Service>,
}

/// Resolves `{id}` of a control route: digits are a registry id, anything else
/// a unit name (`.service` is implied), checked against systemd's grammar
/// before any call.
pub async fn resolve(state: &AppState, raw: &str) -> Result<UnitTarget, ApiError> {
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        let id: i64 = raw.parse().map_err(|_| {
            ApiError::BadRequest(
                format!("{raw:?} is not a service id"),
                vec![FieldError::new("id", "is too large")],
            )
        })?;
        let service = state
            .registry
            .get(id)
            .map(|e| e.service.clone())
            .ok_or_else(|| ApiError::not_found_service(id))?;
        let unit = service
            .unit
            .as_deref()
            .and_then(|u| UnitName::parse(u).ok())
            .or_else(|| {
                UnitName::parse(&service.name)
                    .ok()
                    .filter(|u| u.kind() == "service")
            })
            .ok_or_else(|| {
                // The service is there; the unit asked for is not.
                ApiError::NotFound(format!("service {:?} has no systemd unit", service.name))
            })?;
        return Ok(UnitTarget {
            unit,
            service: Some(service),
        });
    }
    let unit = UnitName::parse_service(raw).map_err(|e| {
        ApiError::BadRequest(e.to_string(), vec![FieldError::new("unit", e.reason)])
    })?;
    let service = state.store.find_by_unit(unit.as_str()).await?;
    Ok(UnitTarget { unit, service })
}

/// Runs a systemd call, forgetting a broken connection so the next call reconnects.
/// A call that is safe to repeat on the shared systemd connection, made
/// again on a new connection when the bus broke under it.
async fn with_systemd<T, Fut>(
    state: &AppState,
    call: impl Fn(lookout_systemd::Systemd) -> Fut,
) -> Result<T, ApiError>
where
    Fut: std::future::Future<Output = Result<T, lookout_systemd::Error>>,
{
    Ok(state.discovery.with(true, call).await?)
}

/// Who asked for an action, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub who: &'a Principal,
    pub client: &'a Client,
}

impl Actor<'_> {
    /// Records what this actor asked for and how it went in the audit log.
    pub async fn audit(
        &self,
        state: &AppState,
        action: &'static str,
        target: String,
        outcome: AuditOutcome,
    ) {
        state
            .auth
            .audit(
                Some(&self.who.username),
                action,
                Some(target),
                self.client,
                outcome,
            )
            .await;
    }
}

fn audit_name(action: Action) -> &'static str {
    match action {
        Action::Start => "unit.start",
        Action::Stop => "unit.stop",
        Action::Restart => "unit.restart",
    }
}

/// What a start, stop or restart did: to a unit, or to a container.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Controlled {
    Unit(lookout_systemd::ControlOutcome),
    Container(lookout_proto::container::ContainerView),
}

impl Controlled {
    /// Whether it was done (a unit's job `done`; a container acted on).
    pub fn done(&self) -> bool {
        match self {
            Controlled::Unit(o) => o.job_result == "done",
            Controlled::Container(_) => true,
        }
    }
}

/// The container behind `{id}` of a control route, when it names a
/// service backed by one.
pub fn container_of(
    state: &AppState,
    raw: &str,
) -> Option<lookout_proto::container::ContainerName> {
    let id: i64 = raw.parse().ok()?;
    let entry = state.registry.get(id)?;
    lookout_proto::container::ContainerName::parse(entry.service.container.as_deref()?).ok()
}

fn container_action(action: Action) -> crate::containers::Action {
    match action {
        Action::Start => crate::containers::Action::Start,
        Action::Stop => crate::containers::Action::Stop,
        Action::Restart => crate::containers::Action::Restart,
    }
}

/// Starts, stops or restarts a unit (or the container behind a service)
/// and records its new state; the attempt and its result go to the audit
/// log.
pub async fn control(
    state: &AppState,
    raw: &str,
    action: Action,
    actor: Actor<'_>,
) -> Result<Controlled, ApiError> {
    if let Some(name) = container_of(state, raw) {
        return super::containers::control(state, &name, container_action(action), actor)
            .await
            .map(Controlled::Container);
    }
    let result = control_unaudited(state, raw, action).await;
    let (target, outcome) = match &result {
        Ok(o) if o.job_result == "done" => (o.unit.clone(), AuditOutcome::Ok),
        Ok(o) => (
            format!("{} ({})", o.unit, o.job_result),
            AuditOutcome::Failed,
        ),
        Err(e) => (
            format!("{raw} ({})", e.body().message),
            AuditOutcome::Failed,
        ),
    };
    actor
        .audit(state, audit_name(action), target, outcome)
        .await;
    result.map(Controlled::Unit)
}

/// The message bus between lookout and systemd: stopping or restarting it
/// from lookout would cut the request's own answer off (and, on the system
/// bus, is not supported by systemd at all).
const BUS_UNITS: &[&str] = &["dbus.service", "dbus.socket", "dbus-broker.service"];

/// What no control request may stop, even as a side effect: the bus that
/// carries lookout's requests, and lookout's own hub and agent.
const KEEP_RUNNING: &[&str] = &[
    "dbus.service",
    "dbus.socket",
    "dbus-broker.service",
    "lookout.service",
    "lookout-agent.service",
];

/// "started", "stopped", "restarted".
fn done(action: Action) -> &'static str {
    match action {
        Action::Start => "started",
        Action::Stop => "stopped",
        Action::Restart => "restarted",
    }
}

/// Why lookout will not do `action` to `unit`, if it will not.
pub(crate) fn refusal(unit: &str, action: Action) -> Option<&'static str> {
    if action != Action::Start && BUS_UNITS.contains(&unit) {
        Some("it carries lookout's own connection to systemd")
    } else if unit.ends_with(".service")
        && lookout_systemd::effects::ENDS_THE_MANAGER.contains(&unit)
    {
        // (Targets are refused by the effect walk, which names the path.)
        Some("it ends the service manager or the machine, or takes it to a rescue shell")
    } else {
        None
    }
}

async fn control_unaudited(
    state: &AppState,
    raw: &str,
    action: Action,
) -> Result<lookout_systemd::ControlOutcome, ApiError> {
    let target = resolve(state, raw).await?;
    if let Some(why) = refusal(target.unit.as_str(), action) {
        return Err(ApiError::Conflict(FieldError::new(
            "unit",
            format!(
                "{} is not {} from lookout: {why} (do it on the host with systemctl)",
                target.unit.as_str(),
                done(action)
            ),
        )));
    }
    // What the job would reach, followed before it is asked for: a unit
    // that pulls in exit.target is as final as exit.target.
    let jobs: &[Job] = match action {
        Action::Start => &[Job::Start],
        Action::Stop => &[Job::Stop],
        Action::Restart => &[Job::Stop, Job::Start],
    };
    let unit = target.unit.clone();
    let hazard = with_systemd(state, |s| {
        let unit = unit.clone();
        async move { lookout_systemd::effects::hazard(&s, unit.as_str(), jobs, KEEP_RUNNING).await }
    })
    .await?;
    if let Some(hazard) = hazard {
        return Err(ApiError::Conflict(FieldError::new(
            "unit",
            format!(
                "{} is not {} from lookout: {hazard} (do it on the host with systemctl)",
                target.unit.as_str(),
                done(action)
            ),
        )));
    }
    let unit = target.unit.clone();
    // A start or a stop asked twice is done once; a restart is not repeated.
    let outcome = state
        .discovery
        .with(action != Action::Restart, |s| {
            let unit = unit.clone();
            async move { s.control(&unit, action, CONTROL_TIMEOUT).await }
        })
        .await?;
    tracing::info!(unit = %target.unit, action = action.as_str(), result = %outcome.job_result, "unit control");
    state
        .registry
        .set_unit_state(
            target.unit.as_str(),
            &crate::discovery::unit_state(&outcome.status),
            state.clock.now(),
        )
        .await?;
    Ok(outcome)
}

async fn start(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathText(id): PathText,
) -> Result<impl IntoResponse, ApiError> {
    let actor = Actor {
        who: &who,
        client: &client,
    };
    Ok(Json(control(&state, &id, Action::Start, actor).await?))
}

async fn stop(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathText(id): PathText,
) -> Result<impl IntoResponse, ApiError> {
    let actor = Actor {
        who: &who,
        client: &client,
    };
    Ok(Json(control(&state, &id, Action::Stop, actor).await?))
}

async fn restart(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathText(id): PathText,
) -> Result<impl IntoResponse, ApiError> {
    let actor = Actor {
        who: &who,
        client: &client,
    };
    Ok(Json(control(&state, &id, Action::Restart, actor).await?))
}

/// What enabling or disabling a unit file did: its state afterwards.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstallOutcome {
    pub unit: String,
    /// `enabled`, `disabled`, ... as `systemctl is-enabled` says.
    pub unit_file_state: String,
}

/// Whether lookout may disable `unit`: not the bus it talks over, nor
/// lookout itself.
pub(crate) fn may_disable(unit: &str) -> bool {
    !KEEP_RUNNING.contains(&unit)
}

/// Unit file states whose `[Install]` links lookout may add or remove.
const INSTALLABLE: &[&str] = &["enabled", "enabled-runtime", "disabled", "linked"];

/// Which of `enable` and `disable` applies to `unit` in `file_state`, if
/// lookout would do it (what the service page offers).
pub(crate) fn install_action(unit: &str, file_state: Option<&str>) -> Option<&'static str> {
    match file_state? {
        "disabled" => Some("enable"),
        state if INSTALLABLE.contains(&state) && may_disable(unit) => Some("disable"),
        _ => None,
    }
}

/// Why a unit file in `file_state` cannot be enabled or disabled.
fn not_installable(file_state: &str) -> &'static str {
    match file_state {
        "static" => "it has no [Install] section: the units that want it start it",
        "masked" | "masked-runtime" => "it is masked",
        "generated" => "a generator made it",
        "transient" => "it was made at runtime and has no unit file",
        "alias" => "it is an alias: enable the unit it names",
        "indirect" => "it is enabled through the units in its Also=",
        _ => "its unit file cannot be enabled or disabled",
    }
}

/// Enables (`enable`) or disables a unit file, as `systemctl enable` and
/// `disable` do (its `[Install]` links, then a reload of the manager); the
/// attempt and its result go to the audit log.
pub async fn install(
    state: &AppState,
    raw: &str,
    enable: bool,
    actor: Actor<'_>,
) -> Result<InstallOutcome, ApiError> {
    let result = install_unaudited(state, raw, enable).await;
    let (target, outcome) = match &result {
        Ok(o) => (
            format!("{} ({})", o.unit, o.unit_file_state),
            AuditOutcome::Ok,
        ),
        Err(e) => (
            format!("{raw} ({})", e.body().message),
            AuditOutcome::Failed,
        ),
    };
    actor
        .audit(
            state,
            if enable {
                "unit.enable"
            } else {
                "unit.disable"
            },
            target,
            outcome,
        )
        .await;
    result
}

async fn install_unaudited(
    state: &AppState,
    raw: &str,
    enable: bool,
) -> Result<InstallOutcome, ApiError> {
    let target = resolve(state, raw).await?;
    let unit = target.unit.clone();
    let verb = if enable { "enabled" } else { "disabled" };
    let refused = |why: &str| {
        ApiError::Conflict(FieldError::new(
            "unit",
            format!(
                "{} is not {verb} from lookout: {why} (do it on the host with systemctl)",
                unit.as_str()
            ),
        ))
    };
    if !enable && !may_disable(unit.as_str()) {
        return Err(refused("lookout needs it running"));
    }
    let file_state = |s: lookout_systemd::Systemd, unit: UnitName| async move {
        let states = s.unit_files(&[unit.to_string()]).await?;
        Ok::<_, lookout_systemd::Error>(states.into_iter().next().map(|(_, state)| state))
    };
    let before = with_systemd(state, |s| file_state(s, unit.clone())).await?;
    let Some(before) = before else {
        return Err(refused("it has no unit file"));
    };
    if !INSTALLABLE.contains(&before.as_str()) {
        return Err(refused(not_installable(&before)));
    }
    if enable {
        if let Some(why) = refusal(unit.as_str(), Action::Start) {
            return Err(refused(why));
        }
        // Enabled, it starts at every boot: the same effects as a start.
        let hazard = with_systemd(state, |s| {
            let unit = unit.clone();
            async move {
                lookout_systemd::effects::hazard(&s, unit.as_str(), &[Job::Start], KEEP_RUNNING)
                    .await
            }
        })
        .await?;
        if let Some(hazard) = hazard {
            return Err(refused(&hazard.to_string()));
        }
    }
    // Linking and reloading again after a broken connection is harmless.
    let after = with_systemd(state, |s| {
        let unit = unit.clone();
        async move {
            if enable {
                s.enable(&[&unit]).await?;
            } else {
                s.disable(&[&unit]).await?;
            }
            s.reload().await?;
            file_state(s, unit).await
        }
    })
    .await?
    .unwrap_or_else(|| "unknown".into());
    tracing::info!(unit = %unit, file_state = %after, "unit file {verb}");
    Ok(InstallOutcome {
        unit: unit.to_string(),
        unit_file_state: after,
    })
}

async fn enable(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathText(id): PathText,
) -> Result<Json<InstallOutcome>, ApiError> {
    let actor = Actor {
        who: &who,
        client: &client,
    };
    Ok(Json(install(&state, &id, true, actor).await?))
}

async fn disable(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathText(id): PathText,
) -> Result<Json<InstallOutcome>, ApiError> {
    let actor = Actor {
        who: &who,
        client: &client,
    };
    Ok(Json(install(&state, &id, false, actor).await?))
}

async fn status(
    State(state): State<AppState>,
    PathText(id): PathText,
) -> Result<Json<UnitStatus>, ApiError> {
    let target = resolve(&state, &id).await?;
    let unit = target.unit;
    Ok(Json(
        with_systemd(&state, |s| {
            let unit = unit.clone();
            async move { s.status(&unit).await }
        })
        .await?,
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Logs {
    pub unit: String,
    pub lines: Vec<LogEntry>,
}

/// Parses `lines` (1..=10000, default 100).
pub fn lines_param(params: &HashMap<String, String>) -> Result<u32, ApiError> {
    super::extract::count_param(params, "lines", 100)
}

pub async fn read_logs(state: &AppState, raw: &str, lines: u32) -> Result<Logs, ApiError> {
    if let Some(name) = container_of(state, raw) {
        return super::containers::read_logs(state, &name, lines).await;
    }
    let target = resolve(state, raw).await?;
    let unit = target.unit.clone();
    // A unit systemd does not know is 404, as for its status, not an
    // empty log.
    let entries = with_systemd(state, |s| {
        let unit = unit.clone();
        async move {
            s.status(&unit).await?;
            s.logs(&unit, lines).await
        }
    })
    .await?;
    Ok(Logs {
        unit: target.unit.to_string(),
        lines: entries,
    })
}

async fn logs(
    State(state): State<AppState>,
    PathText(id): PathText,
    QueryMap(params): QueryMap,
) -> Result<Json<Logs>, ApiError> {
    let lines = lines_param(&params)?;
    Ok(Json(read_logs(&state, &id, lines).await?))
}

/// At most this many journals are followed at once (each is a journalctl).
pub const MAX_LOG_FOLLOWERS: usize = 16;

/// The unit's journal as it is written, as server-sent events: each entry a
/// `log` event whose data is a `LogEntry`. It ends when the client goes, the
/// hub stops or the credential that opened it no longer holds.
async fn follow_logs(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathText(id): PathText,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    use futures::StreamExt as _;
    let target = resolve(&state, &id).await?;
    let permit = state
        .log_followers
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::Busy(format!(
                "{MAX_LOG_FOLLOWERS} journals are followed already; try again later"
            ))
        })?;
    let follower = with_systemd(&state, |s| {
        let unit = target.unit.clone();
        async move {
            // A unit systemd does not know is 404, as for its status and logs.
            s.status(&unit).await?;
            s.follow_logs(&unit)
        }
    })
    .await?;
    let hello = futures::stream::once(async {
        Ok(SseEvent::default()
            .retry(std::time::Duration::from_secs(3))
            .comment("lookout"))
    });
    let lines = futures::stream::unfold((follower, permit), |(mut follower, permit)| async move {
        let entry = follower.next().await?;
        let data = serde_json::to_string(&entry).unwrap_or_default();
        Some((
            Ok(SseEvent::default().event("log").data(data)),
            (follower, permit),
        ))
    });
    let stop = state.shutdown.clone();
    let cut = super::live::revoked(state.clone(), who);
    let lines = lines.take_until(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = cut => {}
        }
    });
    Ok(Sse::new(hello.chain(lines)).keep_alive(KeepAlive::default()))
}

// ---- Managed services -------------------------------------------------------

const APP_FIELDS: &[&str] = &[
    "name",
    "description",
    "command",
    "working_directory",
    "environment",
    "port",
    "health_endpoint",
    "check_interval_secs",
    "check_timeout_ms",
    "start_period_secs",
    "start",
];

/// An app's start period unless it asks for another: its first checks
/// while the program comes up do not count.
pub const APP_START_PERIOD_SECS: u64 = 30;

/// `lookout-app-<name>.service` for a valid app name (lowercase letters,
/// digits, `-` and `_`, starting with a letter or digit, at most 64).
fn app_unit(name: &str) -> Result<UnitName, lookout_proto::error::Invalid> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(
            "must be 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
                .into(),
        );
    }
    UnitName::parse(&format!("lookout-app-{name}.service")).map_err(|e| e.to_string().into())
}

#[derive(Debug)]
struct AppRequest {
    name: String,
    unit: UnitName,
    managed: ManagedService,
    registry: Map<String, Value>,
    start: bool,
}

fn parse_app(body: &Map<String, Value>) -> Result<AppRequest, Vec<FieldError>> {
    let mut errors: Vec<FieldError> = body
        .keys()
        .filter(|k| !APP_FIELDS.contains(&k.as_str()))
        .map(|k| FieldError::new(k.clone(), "is not a field of an app"))
        .collect();
    let string =
        |key: &str, errors: &mut Vec<FieldError>| super::extract::optional_text(body, key, errors);
    let name = string("name", &mut errors).unwrap_or_default();
    let unit = match app_unit(&name) {
        Ok(u) => Some(u),
        Err(e) => {
            errors.push(FieldError::new("name", e));
            None
        }
    };
    let description = string("description", &mut errors)
        .unwrap_or_else(|| format!("{name} (managed by lookout)"));
    let command = match body.get("command") {
        Some(Value::Array(items)) => {
            let mut argv = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => argv.push(s.to_owned()),
                    None => {
                        errors.push(FieldError::new(format!("command[{i}]"), "must be a string"))
                    }
                }
            }
            argv
        }
        Some(other) => {
            errors.push(FieldError::new(
                "command",
                format!("must be an array of strings (an argv), got {}", kind(other)),
            ));
            Vec::new()
        }
        None => {
            errors.push(FieldError::new(
                "command",
                "is required: an argv such as [\"/usr/bin/python3\", \"app.py\"]",
            ));
            Vec::new()
        }
    };
    let working_directory = string("working_directory", &mut errors).map(Into::into);
    let mut environment = BTreeMap::new();
    match body.get("environment") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                match v.as_str() {
                    Some(v) => {
                        environment.insert(k.clone(), v.to_owned());
                    }
                    None => errors.push(FieldError::new(
                        format!("environment.{k}"),
                        "must be a string",
                    )),
                }
            }
        }
        Some(other) => errors.push(FieldError::new(
            "environment",
            format!("must be an object, got {}", kind(other)),
        )),
    }
    let start = match body.get("start") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.push(FieldError::new(
                "start",
                format!("must be a boolean, got {}", kind(other)),
            ));
            true
        }
    };
    let managed = ManagedService {
        description,
        command,
        working_directory,
        environment,
    };
    if errors
        .iter()
        .all(|e| !e.field.starts_with("command") && e.field != "description")
    {
        if let Err(e) = managed.validate() {
            errors.push(FieldError::new(e.field, e.message));
        }
    }
    // The registry entry goes through the same rules as any service.
    let mut registry = Map::new();
    registry.insert("name".into(), Value::String(name.clone()));
    registry.insert(
        "description".into(),
        Value::String(managed.description.clone()),
    );
    if let Some(port) = body.get("port") {
        registry.insert("port".into(), port.clone());
        if let Some(p) = port.as_u64() {
            registry.insert(
                "base_url".into(),
                Value::String(format!("http://127.0.0.1:{p}")),
            );
        }
    }
    for key in [
        "health_endpoint",
        "check_interval_secs",
        "check_timeout_ms",
        "start_period_secs",
    ] {
        if let Some(value) = body.get(key) {
            registry.insert(key.into(), value.clone());
        }
    }
    registry
        .entry("start_period_secs")
        .or_insert(Value::from(APP_START_PERIOD_SECS));
    if let Err(more) = parse_new_service(&registry) {
        errors.extend(more.into_iter().filter(|e| e.field != "name"));
    }
    match (unit, errors.is_empty()) {
        (Some(unit), true) => Ok(AppRequest {
            name,
            unit,
            managed,
            registry,
            start,
        }),
        _ => Err(errors),
    }
}

/// `POST /api/apps`: a command to run as a systemd service lookout writes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppCreateRequest {
    /// Its unit is lookout-app-NAME.service.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: String,
    /// The argv to run, such as ["/usr/bin/python3", "app.py"].
    #[schema(min_items = 1, max_items = 256)]
    pub command: Vec<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// An absolute path.
    #[schema(max_length = 4096)]
    pub working_directory: Option<String>,
    /// Environment variables, by name.
    pub environment: Option<std::collections::BTreeMap<String, String>>,
    /// The port it listens on (checked at /health_endpoint).
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    #[schema(max_length = 2048)]
    pub health_endpoint: Option<String>,
    #[schema(minimum = 1)]
    pub check_interval_secs: Option<u64>,
    #[schema(minimum = 1)]
    pub check_timeout_ms: Option<u64>,
    pub start_period_secs: Option<u64>,
    /// Start it now (default true).
    pub start: Option<bool>,
}

/// Registers a command as a systemd service that lookout wrote, then (by
/// default) starts it. Nothing is left behind when a step fails.
async fn create_app(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    Checked(body, _): Checked<AppCreateRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let app = parse_app(&body).map_err(ApiError::Validation)?;
    let actor = Actor {
        who: &who,
        client: &client,
    };
    let result = create_app_unaudited(&state, &app, actor).await;
    audit_app(&state, actor, "app.create", app.unit.as_str(), &result).await;
    let service = result?;
    Ok((StatusCode::CREATED, Json(service.to_view(&state.checks))))
}

/// Every outcome of an app operation goes to the audit log, failures with
/// their reason.
async fn audit_app<T>(
    state: &AppState,
    actor: Actor<'_>,
    action: &'static str,
    unit: &str,
    result: &Result<T, ApiError>,
) {
    let (target, outcome) = match result {
        Ok(_) => (unit.to_owned(), AuditOutcome::Ok),
        Err(e) => (
            format!("{unit} ({})", e.body().message),
            AuditOutcome::Failed,
        ),
    };
    actor.audit(state, action, target, outcome).await;
}

/// Makes systemd read its unit files again, on the shared connection.
async fn reload(state: &AppState) -> Result<(), ApiError> {
    Ok(state
        .discovery
        .with(true, |s| async move { s.reload().await })
        .await?)
}

/// Writes, loads, registers and (if asked) starts an app; a failure before
/// the registration leaves nothing behind.
async fn create_app_unaudited(
    state: &AppState,
    app: &AppRequest,
    actor: Actor<'_>,
) -> Result<crate::store::Service, ApiError> {
    let scope = state.discovery.scope().ok_or(DiscoveryError::Disabled)?;
    let dir = unit_dir(scope).ok_or_else(|| {
        ApiError::Unavailable("cannot tell where user unit files go: HOME is not set".into())
    })?;
    let file = app.unit.to_string();
    if dir.join(&file).exists() {
        return Err(ApiError::Conflict(FieldError::new(
            "name",
            format!(
                "an app named {:?} exists already ({})",
                app.name,
                dir.join(&file).display()
            ),
        )));
    }
    let new = parse_new_service(&app.registry).map_err(ApiError::Validation)?;
    if state.store.find_by_unit(app.unit.as_str()).await?.is_some() {
        return Err(ApiError::Conflict(FieldError::new(
            "name",
            format!("{} is registered already", app.unit),
        )));
    }
    let path = write_atomically(&dir, &file, &app.managed.render(scope)).map_err(|e| {
        ApiError::Unavailable(format!("cannot write {}: {e}", dir.join(&file).display()))
    })?;
    let undo = async || {
        let _ = std::fs::remove_file(&path);
        let _ = reload(state).await;
    };
    if let Err(e) = reload(state).await {
        undo().await;
        return Err(e);
    }
    let service = match state.create_service(&new).await {
        Ok(s) => s,
        Err(e) => {
            undo().await;
            return Err(e.into());
        }
    };
    state
        .registry
        .set_unit_link(service.id, app.unit.as_str())
        .await?;
    if app.start {
        control(state, app.unit.as_str(), Action::Start, actor).await?;
    }
    Ok(state
        .registry
        .get(service.id)
        .map(|e| e.service.clone())
        .unwrap_or(service))
}

async fn delete_app(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathText(name): PathText,
) -> Result<StatusCode, ApiError> {
    let unit = app_unit(&name).map_err(|e| {
        ApiError::BadRequest(
            format!("invalid app name {name:?}"),
            vec![FieldError::new("name", e)],
        )
    })?;
    let actor = Actor {
        who: &who,
        client: &client,
    };
    let result = delete_app_unaudited(&state, &name, &unit).await;
    audit_app(&state, actor, "app.delete", unit.as_str(), &result).await;
    result.map(|()| StatusCode::NO_CONTENT)
}

/// Deletes the app behind a service, when the service is a managed app's
/// (a `lookout-app-NAME.service` whose unit file lookout wrote): deleting
/// its entry alone would leave the program running with no entry. `None`
/// for any other service.
pub(crate) async fn delete_app_of(
    state: &AppState,
    actor: Actor<'_>,
    service: &crate::store::Service,
) -> Option<Result<(), ApiError>> {
    let unit = service.unit.as_deref()?;
    let name = unit
        .strip_prefix("lookout-app-")?
        .strip_suffix(".service")?;
    let unit = app_unit(name).ok()?;
    let dir = unit_dir(state.discovery.scope()?)?;
    if service.server_id.is_some() || !dir.join(unit.as_str()).exists() {
        return None;
    }
    let result = delete_app_unaudited(state, name, &unit).await;
    audit_app(state, actor, "app.delete", unit.as_str(), &result).await;
    Some(result)
}

/// Stops an app, then removes its unit file and its registry entry. An app
/// that cannot be stopped keeps both, so nothing runs without a unit file or
/// an entry on the dashboard.
async fn delete_app_unaudited(
    state: &AppState,
    name: &str,
    unit: &UnitName,
) -> Result<(), ApiError> {
    let scope = state.discovery.scope().ok_or(DiscoveryError::Disabled)?;
    let dir = unit_dir(scope).ok_or_else(|| {
        ApiError::Unavailable("cannot tell where user unit files go: HOME is not set".into())
    })?;
    let path = dir.join(unit.as_str());
    if !path.exists() {
        return Err(ApiError::NotFound(format!("no app named {name:?}")));
    }
    let stopped = state
        .discovery
        .with(true, |s| {
            let unit = unit.clone();
            async move { s.control(&unit, Action::Stop, CONTROL_TIMEOUT).await }
        })
        .await;
    match stopped {
        Ok(outcome) if outcome.status.active_state != "active" => {}
        // A unit systemd does not know any more runs nothing.
        Err(DiscoveryError::Systemd(lookout_systemd::Error::NoSuchUnit(_))) => {}
        Ok(outcome) => {
            return Err(ApiError::Conflict(FieldError::new(
                "name",
                format!(
                    "{unit} did not stop ({}); its unit file and its entry are kept",
                    outcome.job_result
                ),
            )))
        }
        Err(e) => {
            let e: ApiError = e.into();
            return Err(ApiError::Unavailable(format!(
                "cannot stop {unit} ({}); its unit file and its entry are kept",
                e.body().message
            )));
        }
    }
    std::fs::remove_file(&path)
        .map_err(|e| ApiError::Unavailable(format!("cannot remove {}: {e}", path.display())))?;
    reload(state).await?;
    if let Some(service) = state.store.find_by_unit(unit.as_str()).await? {
        state.delete_service(service.id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn app_names_are_restricted() {
        assert_eq!(
            app_unit("web-1").unwrap().as_str(),
            "lookout-app-web-1.service"
        );
        for bad in ["", "Web", "-x", "a b", "a/b", "a.service", &"a".repeat(65)] {
            assert!(app_unit(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn app_requests_report_every_bad_field() {
        let body = json!({"name": "Bad Name", "command": "python3 app.py", "environment": {"X": 1}, "port": 0, "colour": 1});
        let errors = parse_app(body.as_object().unwrap()).unwrap_err();
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort();
        assert_eq!(
            fields,
            ["colour", "command", "environment.X", "name", "port"]
        );
        let ok = json!({"name": "web", "command": ["/usr/bin/python3", "-m", "http.server"], "port": 8080});
        let app = parse_app(ok.as_object().unwrap()).unwrap();
        assert_eq!(app.registry["base_url"], "http://127.0.0.1:8080");
        assert!(app.start);
    }
}
