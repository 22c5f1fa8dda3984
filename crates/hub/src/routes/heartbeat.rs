//! Services that report in: the heartbeat registry (`POST /register`,
//! `GET /services`, `POST /refresh/{name}`, `POST /refresh_all`) and
//! Healthchecks-style push URLs (`/api/push/{token}`).
//!
//! Times are UTC, `GET /services` returns objects, and a
//! silent service stays visible as `DOWN`/`FAILURE` for `heartbeat_remove_after`
//! (default a day) before it is removed.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use lookout_proto::push::Ping;
use lookout_proto::service::{kind, ServiceName};
use lookout_proto::status::Status;
use lookout_proto::FieldError;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::extract::{Checked, PathPair, PathText, QueryMap, ServiceId};
use super::table::Routes;
use super::AppState;
use crate::auth::client::Client;
use crate::auth::Access;
use crate::error::ApiError;
use crate::openapi::{doc, Answer, Doc, PING_QUERY};
use crate::registry::ListFilter;
use crate::store::Service;

/// The heartbeat routes, served at the root.
/// With authentication on, a heartbeat sender needs an admin's credential
/// (`Authorization: Bearer ...`): registering creates services. A token made
/// with `"scope": "heartbeat"` is enough, and can do nothing else.
pub fn root_routes(r: Routes) -> Routes {
    r.post("/register", Access::Heartbeat, register)
        .doc(Doc {
            body: Some("HeartbeatRequest"),
            ..doc(
                "Register (201) or refresh (200) a heartbeat service",
                "heartbeats",
                Answer::Upserted,
            )
        })
        .get("/services", Access::Viewer, list)
        .doc(doc("Heartbeat services", "heartbeats", Answer::Object))
        .post("/refresh/{name}", Access::Heartbeat, refresh)
        .doc(doc("Refresh a heartbeat", "heartbeats", Answer::Object))
        .post("/refresh_all", Access::Heartbeat, refresh_all)
        .doc(doc("Refresh every heartbeat", "heartbeats", Answer::Object))
}

/// Push routes, under `/api`. A push URL is public: its token is the credential.
pub fn api_routes(r: Routes) -> Routes {
    r.post(
        "/services/{id}/push-token",
        Access::Admin,
        create_push_token,
    )
    .doc(Doc {
        body: Some("PushTokenRequest"),
        body_optional: true,
        ..doc(
            "Create the service's push URL (the token is shown once)",
            "heartbeats",
            Answer::CreatedObject,
        )
    })
    .get("/push/{token}", Access::Public, push)
    .doc(ping_doc())
    .post("/push/{token}", Access::Public, push)
    .doc(ping_doc())
    .get("/push/{token}/{signal}", Access::Public, push_signal)
    .doc(signal_doc())
    .post("/push/{token}/{signal}", Access::Public, push_signal)
    .doc(signal_doc())
}

/// A ping on a push URL, by GET or POST (Healthchecks' and Uptime Kuma's
/// senders use either).
fn ping_doc() -> Doc {
    Doc {
        query: PING_QUERY,
        ..doc(
            "Ping a push URL (a body, if any, is the message)",
            "heartbeats",
            Answer::Object,
        )
    }
}

/// A ping with a signal in its path (`/start`, `/fail`, an exit code); the
/// path says the status, so the query takes no `status`.
fn signal_doc() -> Doc {
    Doc {
        query: PING_QUERY.split_at(1).1,
        ..doc(
            "Ping a push URL: start of a run, failure, or an exit code",
            "heartbeats",
            Answer::Object,
        )
    }
}

/// A heartbeat service as `/register` and `/services` show it.
#[derive(Serialize)]
struct HeartbeatView {
    id: i64,
    name: String,
    ip: Option<String>,
    /// The heartbeat registry's word: `UP` within the TTL, `DOWN` after.
    status: &'static str,
    /// lookout's status model.
    state: Status,
    last_heartbeat: Option<DateTime<Utc>>,
    ttl_secs: u64,
}

fn view(s: &Service, now: DateTime<Utc>) -> HeartbeatView {
    let ttl = s.heartbeat_ttl_secs.unwrap_or(60);
    let up = s.last_heartbeat.is_some_and(|t| {
        (now - t).num_milliseconds() <= i64::try_from(ttl * 1000).unwrap_or(i64::MAX)
    });
    HeartbeatView {
        id: s.id,
        name: s.name.clone(),
        ip: s.heartbeat_ip.clone(),
        status: if up { "UP" } else { "DOWN" },
        state: s.state,
        last_heartbeat: s.last_heartbeat,
        ttl_secs: ttl,
    }
}

/// An IP address or a host name, as a service reports its own address.
fn parse_ip(raw: &str) -> Result<String, lookout_proto::error::Invalid> {
    let raw = raw.trim();
    if raw.parse::<std::net::IpAddr>().is_ok() {
        return Ok(raw.to_owned());
    }
    let host_ok = !raw.is_empty()
        && raw.len() <= 253
        && raw.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if host_ok {
        Ok(raw.to_owned())
    } else {
        Err("must be an IP address or a host name".into())
    }
}

/// `POST /register`: a heartbeat service.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The service's name.
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// Its IP address or host name.
    #[schema(min_length = 1, max_length = 253)]
    pub ip: String,
}

/// `POST /api/services/{id}/push-token`: when pings are due. Every field
/// has a default, and the body may be left out.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushTokenRequest {
    /// Seconds between pings (default 86400).
    #[schema(minimum = 60, maximum = 31536000)]
    pub period_secs: Option<u64>,
    /// Seconds a late ping is waited for (default 3600).
    #[schema(minimum = 60, maximum = 31536000)]
    pub grace_secs: Option<u64>,
    /// A cron schedule (five fields, "0 3 * * *") instead of the period.
    #[schema(max_length = 200)]
    pub schedule: Option<String>,
    /// The schedule's IANA time zone (default UTC).
    #[schema(max_length = 64)]
    pub tz: Option<String>,
}

async fn register(
    State(state): State<AppState>,
    Checked(body, _): Checked<HeartbeatRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    for key in body
        .keys()
        .filter(|k| !["name", "ip"].contains(&k.as_str()))
    {
        errors.push(FieldError::new(
            key.clone(),
            "is not a field of a heartbeat",
        ));
    }
    let text = |key: &str, errors: &mut Vec<FieldError>| match body.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(FieldError::new(
                key,
                format!("must be a string, got {}", kind(other)),
            ));
            None
        }
        None => {
            errors.push(FieldError::new(key, "is required"));
            None
        }
    };
    let name = text("name", &mut errors).and_then(|n| {
        ServiceName::parse(&n)
            .map_err(|e| errors.push(FieldError::new("name", e)))
            .ok()
    });
    let ip = text("ip", &mut errors).and_then(|ip| {
        parse_ip(&ip)
            .map_err(|e| errors.push(FieldError::new("ip", e)))
            .ok()
    });
    let (Some(name), Some(ip), true) = (name, ip, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let now = state.clock.now();
    let ttl = state.passive.ttl.as_secs();
    let beat = state
        .registry
        .heartbeat(name.as_str(), &ip, ttl, now)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { .. } => ApiError::Conflict(FieldError::new(
                "name",
                format!(
                    "{:?} is a service of another kind, not a heartbeat",
                    name.as_str()
                ),
            )),
            other => other.into(),
        })?;
    let status = if beat.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "message": if beat.created { "registered" } else { "heartbeat received" },
            "service": view(&beat.service, now),
        })),
    ))
}

async fn heartbeat_services(state: &AppState) -> Result<Vec<Service>, ApiError> {
    Ok(state
        .registry
        .services(&ListFilter::default())
        .into_iter()
        .filter(|s| s.heartbeat_ttl_secs.is_some())
        .collect())
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    let services: Vec<HeartbeatView> = heartbeat_services(&state)
        .await?
        .iter()
        .map(|s| view(s, now))
        .collect();
    Ok(Json(json!({ "services": services })))
}

/// Re-evaluates one service's status now (`POST /refresh/{name}`).
async fn refresh(
    State(state): State<AppState>,
    PathText(name): PathText,
) -> Result<Json<Value>, ApiError> {
    let service = heartbeat_services(&state)
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no heartbeat service named {name:?}")))?;
    let now = state.clock.now();
    state.registry.reconcile(service.id, now).await?;
    let service = state
        .registry
        .get(service.id)
        .map(|e| e.service.clone())
        .unwrap_or(service);
    Ok(Json(json!({ "service": view(&service, now) })))
}

async fn refresh_all(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    for service in heartbeat_services(&state).await? {
        state.registry.reconcile(service.id, now).await?;
    }
    list(State(state)).await
}

// ---- Push URLs ----------------------------------------------------------------

fn seconds(
    body: &serde_json::Map<String, Value>,
    key: &str,
    default: u64,
    errors: &mut Vec<FieldError>,
) -> u64 {
    match body.get(key) {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_u64().filter(|n| PUSH_TIMING_SECS.contains(n)) {
            Some(n) => n,
            None => {
                errors.push(FieldError::new(
                    key,
                    "must be a number of seconds from 60 to 31536000",
                ));
                default
            }
        },
    }
}

/// Accepted push periods and grace times, in seconds: a minute to a year.
pub(crate) const PUSH_TIMING_SECS: std::ops::RangeInclusive<u64> = 60..=365 * 86_400;

/// Gives service `id` a new push token with this timing (the old token
/// stops working) and recomputes its status; the token, or `None` when
/// there is no such service.
pub(crate) async fn new_push_token(
    state: &AppState,
    id: i64,
    timing: &lookout_proto::push::PushTiming,
) -> Result<Option<String>, ApiError> {
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("no randomness: {e}")))?;
    let token = hex::encode(raw);
    let hash = crate::auth::token::hash(&token);
    if !state
        .registry
        .set_push_token(id, Some(&hash), timing)
        .await?
    {
        return Ok(None);
    }
    state.registry.reconcile(id, state.clock.now()).await?;
    Ok(Some(token))
}

/// A push check's cron schedule from its expression and zone (`None` when
/// the expression is empty); a mistake is named on `fields` (expression,
/// zone).
pub(crate) fn cron_schedule(
    expr: Option<&str>,
    zone: Option<&str>,
    fields: (&str, &str),
    errors: &mut Vec<FieldError>,
) -> Option<lookout_proto::schedule::CronSchedule> {
    use lookout_proto::schedule::{CronSchedule, ScheduleError};
    let expr = expr.map(str::trim).filter(|e| !e.is_empty())?;
    match CronSchedule::parse(expr, zone.unwrap_or("")) {
        Ok(s) => Some(s),
        Err(ScheduleError::Expression(why)) => {
            errors.push(FieldError::new(fields.0, why));
            None
        }
        Err(ScheduleError::Zone(why)) => {
            errors.push(FieldError::new(fields.1, why));
            None
        }
    }
}

/// A push token's absolute URL, as the client reached the hub.
pub(crate) fn push_url(client: &Client, token: &str) -> String {
    let host = client
        .host
        .as_deref()
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = if client.https { "https" } else { "http" };
    format!("{scheme}://{host}/api/push/{token}")
}

/// Creates (or replaces) a service's push token. The token is returned once;
/// only its SHA-256 is stored.
async fn create_push_token(
    State(state): State<AppState>,
    axum::Extension(client): axum::Extension<Client>,
    ServiceId(id): ServiceId,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    // The body is optional: empty means the defaults.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(ApiError::Validation(vec![FieldError::new(
                    "body",
                    format!("must be a JSON object, got {}", kind(&other)),
                )]))
            }
            Err(e) => return Err(ApiError::MalformedJson(e.to_string())),
        }
    };
    let mut errors = crate::openapi::check_request(
        &<PushTokenRequest as utoipa::ToSchema>::name(),
        &Value::Object(body.clone()),
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let period = seconds(&body, "period_secs", 86_400, &mut errors);
    let grace = seconds(&body, "grace_secs", 3600, &mut errors);
    let text = super::extract::optional_text;
    let (expr, zone) = (
        text(&body, "schedule", &mut errors),
        text(&body, "tz", &mut errors),
    );
    if zone.is_some() && expr.is_none() {
        errors.push(FieldError::new("tz", "goes with a schedule"));
    }
    let schedule = cron_schedule(
        expr.as_deref(),
        zone.as_deref(),
        ("schedule", "tz"),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let timing = lookout_proto::push::PushTiming {
        period_secs: period,
        grace_secs: grace,
        schedule,
    };
    let token = new_push_token(&state, id, &timing)
        .await?
        .ok_or_else(|| ApiError::not_found_service(id))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "url": push_url(&client, &token),
            "token": token,
            "period_secs": period,
            "grace_secs": grace,
            "schedule": timing.schedule.as_ref().map(|s| s.expr()),
            "tz": timing.schedule.as_ref().map(|s| s.zone()),
        })),
    ))
}

/// `GET` or `POST /api/push/{token}`: a ping from a cron job or a script,
/// read as [`Ping::parse`] says (`?status=`, `?msg=`, `?ping=`, the body
/// as the message).
async fn push(
    State(state): State<AppState>,
    PathText(token): PathText,
    QueryMap(query): QueryMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    ping(&state, &token, None, &query, &body).await
}

/// `/api/push/{token}/start`, `/fail` or `/{exit-code}`.
async fn push_signal(
    State(state): State<AppState>,
    PathPair(token, signal): PathPair,
    QueryMap(query): QueryMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    ping(&state, &token, Some(&signal), &query, &body).await
}

async fn ping(
    state: &AppState,
    token: &str,
    signal: Option<&str>,
    query: &std::collections::HashMap<String, String>,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let unknown = || ApiError::NotFound("no service has this push token".into());
    if token.len() > 128 {
        return Err(unknown());
    }
    let ping = Ping::parse(signal, query, body)
        .map_err(|errors| ApiError::BadRequest("this ping cannot be read".into(), errors))?;
    let (id, _) = state
        .registry
        .record_push(&crate::auth::token::hash(token), &ping, state.clock.now())
        .await?
        .ok_or_else(unknown)?;
    Ok(Json(match ping {
        Ping::Start => json!({ "ok": true, "service_id": id, "started": true }),
        Ping::Result { status, .. } => json!({ "ok": true, "service_id": id, "status": status }),
    }))
}

/// How often overdue heartbeats and pings are looked for: a missed
/// heartbeat shows within a second of its deadline. A sweep looks in the
/// registry's memory first and reads the database only when something may
/// be due.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Marks services whose heartbeat or ping is overdue, and removes heartbeat
/// services silent for longer than `remove_after`.
///
/// With several hubs on one database only the holder of the `sweeper` job
/// lease sweeps, so a missed heartbeat is one status change, not one per hub.
pub async fn run_sweeper(
    state: AppState,
    hub_id: String,
    lease: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut job = crate::store::leases::JobLease::of(
        "sweeper",
        &hub_id,
        state.shared_database.then_some(lease),
    );
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = state.clock.now();
        let before = now
            - chrono::Duration::from_std(state.passive.remove_after)
                .unwrap_or(chrono::Duration::days(1));
        let (overdue, silent) = state.registry.may_be_due(now, before);
        if !(overdue || silent) || !job.check(state.store.as_ref(), now).await.0 {
            continue;
        }
        if overdue {
            if let Err(e) = state.registry.overdue(now).await {
                tracing::warn!(error = ?e, "could not look for overdue heartbeats");
            }
        }
        if !silent {
            continue;
        }
        match state.registry.remove_silent_heartbeats(before).await {
            Ok(ids) => {
                for id in ids {
                    tracing::info!(service = id, "removed a silent heartbeat service");
                }
            }
            Err(e) => tracing::warn!(error = ?e, "could not remove silent heartbeat services"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses() {
        assert!(super::parse_ip("192.168.1.100").is_ok());
        assert!(super::parse_ip("::1").is_ok());
        assert!(super::parse_ip("nas.local").is_ok());
        assert!(super::parse_ip("not an ip").is_err());
        assert!(super::parse_ip("").is_err());
    }

    #[test]
    fn tokens_are_stored_as_sha256() {
        use crate::auth::token::hash;
        assert_eq!(hash("abc").len(), 64);
        assert_ne!(hash("abc"), hash("abd"));
    }
}
