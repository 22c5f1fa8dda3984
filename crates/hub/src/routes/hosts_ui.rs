//! The Hosts pages: every host's resource usage now (the hub's own and each
//! agent's server), and one host's figures with their charts over a range.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use lookout_proto::usage::HostUsage;

use super::extract::PathText;
use super::table::Routes;
use super::ui::{message, render, Page};
use super::AppState;
use crate::auth::Access;
use crate::store::Spread;
use crate::usage::{bytes, celsius, figure_chart, meter, percent, plain, rate, uptime, UsageRange};

pub fn routes(r: Routes) -> Routes {
    r.get("/hosts", Access::Viewer, hosts_page)
        .get("/hosts/{name}", Access::Viewer, host_page)
}

/// A host's figures now, in words, for a row or a page's head.
struct HostFigures {
    name: String,
    hub: bool,
    cpu: String,
    cpu_meter: String,
    memory: String,
    memory_meter: String,
    swap: Option<String>,
    disk: String,
    disk_meter: String,
    load: String,
    uptime: String,
    temperature: Option<String>,
    network: String,
}

impl HostFigures {
    fn of(name: &str, hub: bool, u: &HostUsage) -> Self {
        let fullest = u
            .filesystems
            .iter()
            .max_by(|a, b| a.percent().total_cmp(&b.percent()));
        HostFigures {
            name: name.to_owned(),
            hub,
            cpu: percent(u.cpu_percent),
            cpu_meter: meter(u.cpu_percent),
            memory: format!(
                "{} of {}",
                bytes(u.memory_used_bytes as f64),
                bytes(u.memory_total_bytes as f64)
            ),
            memory_meter: meter(u.memory_percent()),
            swap: (u.swap_total_bytes > 0).then(|| {
                format!(
                    "{} of {}",
                    bytes(u.swap_used_bytes as f64),
                    bytes(u.swap_total_bytes as f64)
                )
            }),
            disk: fullest.map_or_else(
                || "—".to_owned(),
                |f| format!("{} ({})", percent(f.percent()), f.mount),
            ),
            disk_meter: meter(u.disk_percent()),
            load: u.load.map(plain).join(" · "),
            uptime: uptime(u.uptime_secs),
            temperature: u
                .temperatures
                .iter()
                .map(|t| t.celsius)
                .reduce(f64::max)
                .map(celsius),
            network: format!(
                "↓ {} ↑ {}",
                rate(u.networks.iter().map(|n| n.rx_bps).sum()),
                rate(u.networks.iter().map(|n| n.tx_bps).sum())
            ),
        }
    }
}

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage {
    hosts: Vec<HostFigures>,
    sampling: bool,
}

async fn hosts_page(State(state): State<AppState>) -> Response {
    let own = state.usage.host_name().to_owned();
    let mut hosts: Vec<HostFigures> = state
        .usage
        .hosts()
        .iter()
        .map(|(name, u)| HostFigures::of(name, *name == own, u))
        .collect();
    hosts.sort_by_key(|h| (!h.hub, h.name.to_lowercase()));
    render(
        StatusCode::OK,
        &HostsPage {
            hosts,
            sampling: state.usage.enabled(),
        },
    )
}

/// One chart of the host page.
struct Chart {
    id: &'static str,
    title: &'static str,
    svg: String,
}

#[derive(Template)]
#[template(path = "host.html")]
struct HostPage {
    now: Option<HostFigures>,
    name: String,
    range: &'static str,
    ranges: Vec<(&'static str, &'static str)>,
    /// Per core: (index, percent, meter).
    cores: Vec<(usize, String, String)>,
    /// (mount, device, type, used of size, meter, inodes)
    filesystems: Vec<(String, String, String, String, String, String)>,
    /// (interface, received, sent)
    networks: Vec<(String, String, String)>,
    /// (device, read, written)
    disks: Vec<(String, String, String)>,
    temperatures: Vec<(String, String)>,
    charts: Vec<Chart>,
    /// When the first filesystem to fill is full, at its rate.
    fill: Option<String>,
    /// Its running units, most memory first.
    units: Vec<HostUnit>,
    /// A new `host://` service watching it, with thresholds to start from.
    alert_href: String,
}

/// A running unit on a host's page.
struct HostUnit {
    name: String,
    /// Its service's page, for the hub's own services.
    href: Option<String>,
    cpu: String,
    memory: String,
    tasks: String,
    memory_bytes: u64,
}

impl HostUnit {
    fn of(name: String, href: Option<String>, u: &lookout_proto::usage::UnitUsage) -> Self {
        HostUnit {
            name,
            href,
            cpu: u.cpu_percent.map(percent).unwrap_or_default(),
            memory: u.memory_bytes.map(|m| bytes(m as f64)).unwrap_or_default(),
            tasks: u.tasks.map(|t| t.to_string()).unwrap_or_default(),
            memory_bytes: u.memory_bytes.unwrap_or(0),
        }
    }
}

/// The units running on host `name` and what each uses: the hub's own
/// services' units, or an agent's server's.
async fn host_units(
    state: &AppState,
    name: &str,
    own: bool,
) -> Result<Vec<HostUnit>, crate::store::StoreError> {
    let mut units: Vec<HostUnit> = if own {
        state
            .usage
            .services()
            .into_iter()
            .filter_map(|(id, u)| {
                let entry = state.registry.get(id)?;
                Some(HostUnit::of(
                    entry
                        .service
                        .unit
                        .clone()
                        .unwrap_or_else(|| entry.service.name.clone()),
                    Some(format!("/services/{id}")),
                    &u,
                ))
            })
            .collect()
    } else {
        match state
            .store
            .list_servers()
            .await?
            .into_iter()
            .find(|s| s.name == name)
        {
            Some(server) => state
                .usage
                .server_units(server.id)
                .into_iter()
                .map(|(unit, u)| HostUnit::of(unit, Some(format!("/servers/{}", server.id)), &u))
                .collect(),
            None => Vec::new(),
        }
    };
    units.sort_by(|a, b| {
        b.memory_bytes
            .cmp(&a.memory_bytes)
            .then(a.name.cmp(&b.name))
    });
    // Services of one unit share its figures: the unit once.
    units.dedup_by(|a, b| a.name == b.name);
    Ok(units)
}

/// "in 19 days at the current rate", "not filling"; `None` while the
/// estimate waits for its minutes.
fn fill_text(full_in_ms: Option<i64>) -> Option<String> {
    let ms = full_in_ms?;
    if ms == lookout_proto::condition::NEVER {
        return Some("not filling".into());
    }
    Some(format!(
        "full in {} at the current rate",
        crate::history::span_words(ms / 1000)
    ))
}

async fn host_page(
    State(state): State<AppState>,
    PathText(name): PathText,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Page {
    let range = match q.get("range").map(String::as_str) {
        None | Some("") => UsageRange::Day,
        Some(text) => match UsageRange::parse(text) {
            Some(r) => r,
            None => {
                return Ok(message(
                    StatusCode::BAD_REQUEST,
                    "No such range",
                    "The charts show 1h, 24h, 7d, 30d or 90d.",
                ))
            }
        },
    };
    let now_usage = state.usage.host(&name);
    let now = state.clock.now();
    let rows = crate::usage::host_series(state.store.as_ref(), &name, range, now).await?;
    if now_usage.is_none() && rows.is_empty() {
        return Ok(message(
            StatusCode::NOT_FOUND,
            "No such host",
            "No usage has been recorded for a host of that name.",
        ));
    }
    let own = state.usage.host_name() == name;
    let series = |pick: fn(&crate::store::HostUsageRow) -> Option<Spread>| {
        rows.iter().map(|r| (r.start, pick(r))).collect::<Vec<_>>()
    };
    let total = rows.last().map_or(0, |r| r.memory_total) as f64;
    let mut charts = vec![
        Chart {
            id: "chart-cpu",
            title: "CPU",
            svg: figure_chart("CPU", &series(|r| Some(r.cpu)), range, percent, 100.0, now),
        },
        Chart {
            id: "chart-memory",
            title: "Memory",
            svg: figure_chart(
                "memory",
                &series(|r| Some(r.memory)),
                range,
                bytes,
                total,
                now,
            ),
        },
        Chart {
            id: "chart-load",
            title: "Load (1 minute, highest)",
            svg: figure_chart(
                "load",
                &series(|r| Some(Spread::one(r.load))),
                range,
                plain,
                1.0,
                now,
            ),
        },
        Chart {
            id: "chart-disk",
            title: "Disk use (fullest filesystem, highest)",
            svg: figure_chart(
                "disk use",
                &series(|r| Some(Spread::one(r.disk))),
                range,
                percent,
                100.0,
                now,
            ),
        },
        Chart {
            id: "chart-network",
            title: "Network received",
            svg: figure_chart(
                "network received",
                &series(|r| Some(Spread::one(r.net_rx))),
                range,
                rate,
                0.0,
                now,
            ),
        },
        Chart {
            id: "chart-network-sent",
            title: "Network sent",
            svg: figure_chart(
                "network sent",
                &series(|r| Some(Spread::one(r.net_tx))),
                range,
                rate,
                0.0,
                now,
            ),
        },
        Chart {
            id: "chart-disk-io",
            title: "Disk writes",
            svg: figure_chart(
                "disk writes",
                &series(|r| Some(Spread::one(r.disk_write))),
                range,
                rate,
                0.0,
                now,
            ),
        },
    ];
    if rows.iter().any(|r| r.temperature.is_some()) {
        charts.push(Chart {
            id: "chart-temperature",
            title: "Temperature (hottest sensor)",
            svg: figure_chart(
                "temperature",
                &series(|r| r.temperature.map(Spread::one)),
                range,
                celsius,
                0.0,
                now,
            ),
        });
    }
    let u = now_usage.clone().unwrap_or_default();
    let fill = fill_text(
        state
            .usage
            .host_seen(&name, now)
            .and_then(|(_, seen)| seen.disk_full_in_ms),
    );
    let units = host_units(&state, &name, own).await?;
    let alert_href = format!(
        "/services/new?{}",
        serde_urlencoded::to_string([
            ("name", format!("{name} resources")),
            ("check", "host".to_owned()),
            (
                "base_url",
                format!(
                    "host://{}",
                    if own { lookout_proto::monitor::OWN_HOST } else { &name }
                ),
            ),
            (
                "conditions",
                "warn: [MEMORY_PERCENT] < 90 for 5m\nwarn: [CPU_PERCENT] < 80 for 10m\n[DISK_PERCENT] < 95\n[DISK_FULL_IN] > 7d".to_owned(),
            ),
        ])
        .unwrap_or_default()
    );
    Ok(render(
        StatusCode::OK,
        &HostPage {
            now: now_usage.as_ref().map(|u| HostFigures::of(&name, own, u)),
            cores: u
                .cores
                .iter()
                .enumerate()
                .map(|(i, c)| (i, percent(*c), meter(*c)))
                .collect(),
            filesystems: u
                .filesystems
                .iter()
                .map(|f| {
                    (
                        f.mount.clone(),
                        f.device.clone(),
                        f.fs_type.clone(),
                        format!(
                            "{} of {} ({})",
                            bytes(f.used_bytes as f64),
                            bytes(f.size_bytes as f64),
                            percent(f.percent())
                        ),
                        meter(f.percent()),
                        format!("{} of {}", f.inodes_used, f.inodes),
                    )
                })
                .collect(),
            networks: u
                .networks
                .iter()
                .map(|n| (n.interface.clone(), rate(n.rx_bps), rate(n.tx_bps)))
                .collect(),
            disks: u
                .disks
                .iter()
                .map(|d| (d.device.clone(), rate(d.read_bps), rate(d.write_bps)))
                .collect(),
            temperatures: u
                .temperatures
                .iter()
                .map(|t| (t.sensor.clone(), celsius(t.celsius)))
                .collect(),
            fill,
            units,
            alert_href,
            name,
            range: range.as_str(),
            ranges: UsageRange::ALL
                .iter()
                .map(|r| (r.as_str(), r.words()))
                .collect(),
            charts,
        },
    ))
}
