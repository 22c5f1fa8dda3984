//! Prometheus: the hub's metrics (`/metrics`) and service discovery of the
//! registered services (`/api/v1/prometheus/sd`, the `http_sd_configs` format).
//!
//! Both need a viewer's credentials when the hub requires sign-in, as every
//! read of the registry does (Prometheus sends an API token with
//! `authorization: {credentials: ...}`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use super::table::Routes;
use super::AppState;
use crate::auth::Access;
use crate::error::ApiError;
use crate::metrics::{render, Snapshot, CONTENT_TYPE};
use crate::openapi::{doc, Answer};
use crate::store::Service;

pub fn root_routes(r: Routes) -> Routes {
    r.get("/metrics", Access::Viewer, metrics).doc(doc(
        "The hub's metrics (OpenMetrics text)",
        "prometheus",
        Answer::Text("application/openmetrics-text"),
    ))
}

pub fn api_routes(r: Routes) -> Routes {
    r.get("/v1/prometheus/sd", Access::Viewer, service_discovery)
        .doc(doc(
            "Prometheus HTTP service discovery: every service with a URL",
            "prometheus",
            Answer::Many("TargetGroup"),
        ))
}

async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let services = state
        .registry
        .services(&crate::registry::ListFilter::configured());
    let servers = state.store.list_servers().await?;
    let text = render(
        &state.metrics,
        &Snapshot {
            services: &services,
            servers: &servers,
            agents_connected: state.fleet.connected(),
            now: state.clock.now(),
            usage: &state.usage.services(),
            hosts: &state.usage.hosts(),
        },
    );
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

/// One target group of Prometheus HTTP SD.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<&'static str, String>,
}

/// Every configured service with a URL, one group each. The target is the
/// URL's `host:port` with `__scheme__`, so a plain scrape job reaches it; the
/// whole health URL is in `__meta_lookout_health_url` for a blackbox-exporter
/// job to probe (relabel it to `__param_target`).
async fn service_discovery(
    State(state): State<AppState>,
) -> Result<Json<Vec<TargetGroup>>, ApiError> {
    let services = state
        .registry
        .services(&crate::registry::ListFilter::configured());
    let servers = state.store.list_servers().await?;
    let groups = services
        .iter()
        .filter_map(|service| {
            let server = service
                .server_id
                .and_then(|id| servers.iter().find(|s| s.id == id))
                .map(|s| s.name.clone());
            target_group(service, &state.checks, server)
        })
        .collect();
    Ok(Json(groups))
}

fn target_group(
    service: &Service,
    checks: &crate::config::CheckDefaults,
    server: Option<String>,
) -> Option<TargetGroup> {
    let base = url::Url::parse(service.base_url.as_deref()?).ok()?;
    let host = base.host_str()?;
    let port = base.port_or_known_default()?;
    let address = match base.host()? {
        url::Host::Ipv6(ip) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    let view = service.to_view(checks);
    let mut labels = BTreeMap::from([
        ("name", service.name.clone()),
        ("status", service.state.as_str().to_owned()),
        ("__scheme__", base.scheme().to_owned()),
        ("__meta_lookout_service_id", service.id.to_string()),
        ("__meta_lookout_url", base.to_string()),
    ]);
    if let Some(server) = server {
        labels.insert("server", server);
    }
    if let Some(health) = view.health_url {
        labels.insert("__meta_lookout_health_url", health);
    }
    if let Some(unit) = &service.unit {
        labels.insert("__meta_lookout_unit", unit.clone());
    }
    Some(TargetGroup {
        targets: vec![address],
        labels,
    })
}
