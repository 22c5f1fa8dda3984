//! Resource usage in the JSON API: each host's figures now
//! (`GET /api/hosts`), a host's and a service's figures now and over a
//! range (`GET /api/hosts/{name}/usage`, `GET /api/services/{id}/usage`).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use lookout_proto::usage::{HostUsage, UnitUsage};
use lookout_proto::FieldError;
use serde::Serialize;

use super::extract::{PathText, QueryMap, ServiceId};
use super::table::Routes;
use super::AppState;
use crate::auth::Access;
use crate::error::ApiError;
use crate::openapi::{doc, Answer, Doc, PathId, Takes};
use crate::store::{HostUsageRow, Spread, UnitUsageRow};
use crate::usage::UsageRange;

const RANGE: (&str, Takes, &str) = (
    "range",
    Takes::Words(&["1h", "24h", "7d", "30d", "90d", ""]),
    "how far back (24h when left out or empty)",
);

pub fn routes(r: Routes) -> Routes {
    r.get("/hosts", Access::Viewer, hosts)
        .doc(doc(
            "Every host's resource usage now: the hub's own and each agent's server",
            "usage",
            Answer::Many("HostNow"),
        ))
        .get("/hosts/{name}/usage", Access::Viewer, host)
        .doc(Doc {
            id: PathId::Host,
            query: &[RANGE],
            ..doc(
                "A host's resource usage now and over a range (CPU, memory, swap, load, the \
                 fullest filesystem, network and disk throughput, temperature), in buckets",
                "usage",
                Answer::One("HostUsageSeries"),
            )
        })
        .get("/services/{id}/usage", Access::Viewer, service)
        .doc(Doc {
            query: &[RANGE],
            ..doc(
                "A service's resource usage now (CPU, memory, tasks, IO of its unit's cgroup) \
                 and over a range, in buckets",
                "usage",
                Answer::One("UnitUsageSeries"),
            )
        })
}

/// A host and its figures now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostNow {
    pub host: String,
    /// The hub's own host.
    pub hub: bool,
    pub usage: HostUsage,
}

/// One figure over a bucket.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct SpreadView {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

fn spread(s: Option<Spread>) -> Option<SpreadView> {
    s.map(|s| SpreadView {
        min: round(s.min),
        avg: round(s.avg),
        max: round(s.max),
    })
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A service's use over one bucket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnitUsagePoint {
    pub start: DateTime<Utc>,
    pub samples: u32,
    /// Percent of one core.
    pub cpu_percent: Option<SpreadView>,
    pub memory_bytes: Option<SpreadView>,
    pub tasks_max: Option<f64>,
    pub io_read_bps: Option<f64>,
    pub io_write_bps: Option<f64>,
}

impl From<&UnitUsageRow> for UnitUsagePoint {
    fn from(r: &UnitUsageRow) -> Self {
        UnitUsagePoint {
            start: r.start,
            samples: r.samples,
            cpu_percent: spread(r.cpu),
            memory_bytes: spread(r.memory),
            tasks_max: r.tasks,
            io_read_bps: r.io_read.map(round),
            io_write_bps: r.io_write.map(round),
        }
    }
}

/// A host's use over one bucket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostUsagePoint {
    pub start: DateTime<Utc>,
    pub samples: u32,
    /// Percent of all cores.
    pub cpu_percent: SpreadView,
    pub memory_used_bytes: SpreadView,
    pub memory_total_bytes: u64,
    pub swap_used_bytes_max: f64,
    pub swap_total_bytes: u64,
    pub load_max: f64,
    /// The fullest filesystem's highest use, in percent.
    pub disk_percent_max: f64,
    pub net_rx_bps: f64,
    pub net_tx_bps: f64,
    pub disk_read_bps: f64,
    pub disk_write_bps: f64,
    pub temperature_max: Option<f64>,
}

impl From<&HostUsageRow> for HostUsagePoint {
    fn from(r: &HostUsageRow) -> Self {
        let all = |s: Spread| SpreadView {
            min: round(s.min),
            avg: round(s.avg),
            max: round(s.max),
        };
        HostUsagePoint {
            start: r.start,
            samples: r.samples,
            cpu_percent: all(r.cpu),
            memory_used_bytes: all(r.memory),
            memory_total_bytes: r.memory_total,
            swap_used_bytes_max: r.swap,
            swap_total_bytes: r.swap_total,
            load_max: round(r.load),
            disk_percent_max: round(r.disk),
            net_rx_bps: round(r.net_rx),
            net_tx_bps: round(r.net_tx),
            disk_read_bps: round(r.disk_read),
            disk_write_bps: round(r.disk_write),
            temperature_max: r.temperature.map(round),
        }
    }
}

/// A service's usage now and over a range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnitUsageSeries {
    pub service_id: i64,
    /// The last sample; `null` while the unit is not running (or the
    /// service has no unit on a sampled host).
    pub now: Option<UnitUsage>,
    #[schema(value_type = String)]
    pub range: UsageRange,
    pub bucket_secs: u32,
    pub buckets: Vec<UnitUsagePoint>,
}

/// A host's usage now and over a range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostUsageSeries {
    pub host: String,
    pub now: Option<HostUsage>,
    #[schema(value_type = String)]
    pub range: UsageRange,
    pub bucket_secs: u32,
    pub buckets: Vec<HostUsagePoint>,
}

/// `range` as the query gives it; 24h by default.
pub fn range(query: &std::collections::HashMap<String, String>) -> Result<UsageRange, ApiError> {
    match query.get("range").map(String::as_str) {
        None | Some("") => Ok(UsageRange::Day),
        Some(text) => UsageRange::parse(text).ok_or_else(|| {
            ApiError::BadRequest(
                "invalid query".into(),
                vec![FieldError::new("range", "must be 1h, 24h, 7d, 30d or 90d")],
            )
        }),
    }
}

async fn hosts(State(state): State<AppState>) -> Json<Vec<HostNow>> {
    let own = state.usage.host_name().to_owned();
    Json(
        state
            .usage
            .hosts()
            .into_iter()
            .map(|(host, usage)| HostNow {
                hub: host == own,
                host,
                usage,
            })
            .collect(),
    )
}

async fn host(
    State(state): State<AppState>,
    PathText(name): PathText,
    QueryMap(query): QueryMap,
) -> Result<Json<HostUsageSeries>, ApiError> {
    let range = range(&query)?;
    let now = state.usage.host(&name);
    let rows =
        crate::usage::host_series(state.store.as_ref(), &name, range, state.clock.now()).await?;
    if now.is_none() && rows.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no usage of a host named {name:?}"
        )));
    }
    Ok(Json(HostUsageSeries {
        host: name,
        now,
        range,
        bucket_secs: range.widths().1,
        buckets: rows.iter().map(HostUsagePoint::from).collect(),
    }))
}

async fn service(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
    QueryMap(query): QueryMap,
) -> Result<Json<UnitUsageSeries>, ApiError> {
    state
        .registry
        .get(id)
        .ok_or_else(|| ApiError::not_found_service(id))?;
    let range = range(&query)?;
    let rows =
        crate::usage::unit_series(state.store.as_ref(), id, range, state.clock.now()).await?;
    Ok(Json(UnitUsageSeries {
        service_id: id,
        now: state.usage.service(id),
        range,
        bucket_secs: range.widths().1,
        buckets: rows.iter().map(UnitUsagePoint::from).collect(),
    }))
}
