//! The hub's own metrics for Prometheus (`GET /metrics`).
//!
//! Two kinds of figures:
//! - **Counters and histograms of this hub** (HTTP requests, checks run,
//!   results ingested, notifications sent): kept in one [`Metrics`] per hub,
//!   counted where the thing happens. With several hubs each one is scraped
//!   on its own, as Prometheus expects of replicas.
//! - **The registry's state** (each service's status and last latency, agents
//!   connected): read when scraped, so a deleted service leaves no stale series
//!   and every hub on a shared database answers the same.
//!
//! The text is OpenMetrics (prometheus-client), which Prometheus scrapes
//! natively.

use std::time::Duration;

use lookout_proto::status::Status;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::agents::Server;
use crate::store::Service;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route as declared, `{id}` and all: one series per route, not per URL.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    /// `http` (the hub's own probe) or `agent` (a check script's result).
    source: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabels {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
    /// The server (agent host) the service belongs to; empty for the hub's own.
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnitLabels {
    service: String,
    unit: String,
    /// A container service's container (empty for a unit's).
    container: String,
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilesystemLabels {
    host: String,
    mountpoint: String,
    device: String,
    fstype: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    host: String,
    device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SensorLabels {
    host: String,
    sensor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    service: String,
    server: String,
    status: &'static str,
}

/// The counters of one hub.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    checks: Family<CheckLabels, Counter>,
    check_errors: Family<SourceLabels, Counter>,
    ingestion_lag: Histogram,
    notifications: Family<NotifyLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lookout");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            http_requests.clone(),
        );
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 4.0, 8))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests (to the response head), by route and status",
            http_duration.clone(),
        );
        let checks = Family::<CheckLabels, Counter>::default();
        registry.register(
            "checks",
            "Check results recorded: the hub's HTTP probes (up/down) and agents' check lines (their status)",
            checks.clone(),
        );
        let check_errors = Family::<SourceLabels, Counter>::default();
        registry.register(
            "check_errors",
            "Checks that could not judge the service: probe timeouts, refused connections, TLS errors; scripts that failed to run",
            check_errors.clone(),
        );
        let ingestion_lag = Histogram::new(exponential_buckets(0.01, 4.0, 10));
        registry.register(
            "ingestion_lag_seconds",
            "From the time an agent's check line says it happened to the hub storing it",
            ingestion_lag.clone(),
        );
        let notifications = Family::<NotifyLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications delivered (outcome sent) or given up after every retry (outcome failed), by channel kind",
            notifications.clone(),
        );
        let info = Family::<Vec<(String, String)>, Gauge>::default();
        info.get_or_create(&vec![(
            "version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )])
        .set(1);
        registry.register("build_info", "The version of this hub", info);
        Self {
            registry,
            http_requests,
            http_duration,
            checks,
            check_errors,
            ingestion_lag,
            notifications,
        }
    }

    pub fn http_request(&self, labels: &HttpLabels, took: Duration) {
        self.http_requests.get_or_create(labels).inc();
        self.http_duration
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }

    /// One of the hub's probes ran: `source` is its kind (`http`, `tcp`,
    /// `tls`, `icmp`, `dns`).
    pub fn probe_check(&self, source: &'static str, up: bool, error: bool) {
        let status = if up { "up" } else { "down" };
        self.checks
            .get_or_create(&CheckLabels { source, status })
            .inc();
        if error {
            self.check_errors
                .get_or_create(&SourceLabels { source })
                .inc();
        }
    }

    /// One of an agent's check lines was stored, `lag` after it happened.
    pub fn agent_result(&self, status: lookout_proto::check::LineStatus, lag: Duration) {
        use lookout_proto::check::LineStatus;
        self.checks
            .get_or_create(&CheckLabels {
                source: "agent",
                status: status.as_str(),
            })
            .inc();
        if status == LineStatus::Error {
            self.check_errors
                .get_or_create(&SourceLabels { source: "agent" })
                .inc();
        }
        self.ingestion_lag.observe(lag.as_secs_f64());
    }

    /// A notification went out, or was given up.
    pub fn notification(&self, channel: &'static str, sent: bool) {
        let outcome = if sent { "sent" } else { "failed" };
        self.notifications
            .get_or_create(&NotifyLabels { channel, outcome })
            .inc();
    }
}

/// What a scrape reads from the registry besides the counters.
pub struct Snapshot<'a> {
    pub services: &'a [Service],
    pub servers: &'a [Server],
    pub agents_connected: usize,
    pub now: chrono::DateTime<chrono::Utc>,
    /// The latest usage of running services, by id.
    pub usage: &'a std::collections::HashMap<i64, lookout_proto::usage::UnitUsage>,
    /// Every host's latest usage, by name.
    pub hosts: &'a [(String, lookout_proto::usage::HostUsage)],
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;
type FloatCounter = Counter<f64, std::sync::atomic::AtomicU64>;

/// Resource usage: each running service's cgroup figures (labelled with
/// its unit and server, as cAdvisor labels containers) and each host's.
fn register_usage(
    state: &mut Registry,
    snapshot: &Snapshot<'_>,
    server_of: impl Fn(&Service) -> String,
) {
    let cpu = Family::<UnitLabels, FloatCounter>::default();
    let memory = Family::<UnitLabels, Gauge>::default();
    let tasks = Family::<UnitLabels, Gauge>::default();
    let read = Family::<UnitLabels, Counter>::default();
    let written = Family::<UnitLabels, Counter>::default();
    let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for service in snapshot.services {
        let Some(u) = snapshot.usage.get(&service.id) else {
            continue;
        };
        let labels = UnitLabels {
            service: service.name.clone(),
            unit: service.unit.clone().unwrap_or_default(),
            container: service
                .container_info
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            server: server_of(service),
        };
        if let Some(s) = u.cpu_seconds_total {
            cpu.get_or_create(&labels).inc_by(s);
        }
        if let Some(m) = u.memory_bytes {
            memory.get_or_create(&labels).set(big(m));
        }
        if let Some(t) = u.tasks {
            tasks.get_or_create(&labels).set(big(t));
        }
        if let Some(b) = u.io_read_bytes_total {
            read.get_or_create(&labels).inc_by(b);
        }
        if let Some(b) = u.io_write_bytes_total {
            written.get_or_create(&labels).inc_by(b);
        }
    }
    state.register(
        "service_cpu_seconds",
        "CPU time used by the service's unit (its cgroup)",
        cpu,
    );
    state.register(
        "service_memory_bytes",
        "Memory charged to the service's unit (its cgroup)",
        memory,
    );
    state.register(
        "service_tasks",
        "Processes and threads in the service's unit",
        tasks,
    );
    state.register(
        "service_io_read_bytes",
        "Bytes the service's unit read from block devices",
        read,
    );
    state.register(
        "service_io_write_bytes",
        "Bytes the service's unit wrote to block devices",
        written,
    );

    let host_gauge = || Family::<HostLabels, FloatGauge>::default();
    let (cpu, mem_used, mem_total, swap_used, swap_total, uptime) = (
        host_gauge(),
        host_gauge(),
        host_gauge(),
        host_gauge(),
        host_gauge(),
        host_gauge(),
    );
    let loads = [host_gauge(), host_gauge(), host_gauge()];
    let fs_size = Family::<FilesystemLabels, Gauge>::default();
    let fs_used = Family::<FilesystemLabels, Gauge>::default();
    let fs_inodes = Family::<FilesystemLabels, Gauge>::default();
    let fs_inodes_used = Family::<FilesystemLabels, Gauge>::default();
    let rx = Family::<DeviceLabels, FloatGauge>::default();
    let tx = Family::<DeviceLabels, FloatGauge>::default();
    let disk_read = Family::<DeviceLabels, FloatGauge>::default();
    let disk_write = Family::<DeviceLabels, FloatGauge>::default();
    let temperature = Family::<SensorLabels, FloatGauge>::default();
    for (host, u) in snapshot.hosts {
        let h = HostLabels { host: host.clone() };
        cpu.get_or_create(&h).set(u.cpu_percent / 100.0);
        mem_used.get_or_create(&h).set(u.memory_used_bytes as f64);
        mem_total.get_or_create(&h).set(u.memory_total_bytes as f64);
        swap_used.get_or_create(&h).set(u.swap_used_bytes as f64);
        swap_total.get_or_create(&h).set(u.swap_total_bytes as f64);
        uptime.get_or_create(&h).set(u.uptime_secs as f64);
        for (gauge, value) in loads.iter().zip(u.load) {
            gauge.get_or_create(&h).set(value);
        }
        for f in &u.filesystems {
            let labels = FilesystemLabels {
                host: host.clone(),
                mountpoint: f.mount.clone(),
                device: f.device.clone(),
                fstype: f.fs_type.clone(),
            };
            fs_size.get_or_create(&labels).set(big(f.size_bytes));
            fs_used.get_or_create(&labels).set(big(f.used_bytes));
            fs_inodes.get_or_create(&labels).set(big(f.inodes));
            fs_inodes_used
                .get_or_create(&labels)
                .set(big(f.inodes_used));
        }
        let device = |name: &str| DeviceLabels {
            host: host.clone(),
            device: name.to_owned(),
        };
        for n in &u.networks {
            rx.get_or_create(&device(&n.interface)).set(n.rx_bps);
            tx.get_or_create(&device(&n.interface)).set(n.tx_bps);
        }
        for d in &u.disks {
            disk_read.get_or_create(&device(&d.device)).set(d.read_bps);
            disk_write
                .get_or_create(&device(&d.device))
                .set(d.write_bps);
        }
        for t in &u.temperatures {
            temperature
                .get_or_create(&SensorLabels {
                    host: host.clone(),
                    sensor: t.sensor.clone(),
                })
                .set(t.celsius);
        }
    }
    state.register(
        "host_cpu_usage_ratio",
        "Busy share of all the host's CPU time over the last sampling interval",
        cpu,
    );
    let [load1, load5, load15] = loads;
    state.register("host_load1", "The host's 1-minute load average", load1);
    state.register("host_load5", "The host's 5-minute load average", load5);
    state.register("host_load15", "The host's 15-minute load average", load15);
    state.register(
        "host_memory_used_bytes",
        "The host's memory in use (total less available)",
        mem_used,
    );
    state.register("host_memory_total_bytes", "The host's memory", mem_total);
    state.register("host_swap_used_bytes", "The host's swap in use", swap_used);
    state.register("host_swap_total_bytes", "The host's swap", swap_total);
    state.register("host_uptime_seconds", "Time since the host booted", uptime);
    state.register(
        "host_filesystem_size_bytes",
        "A mounted filesystem's usable size",
        fs_size,
    );
    state.register(
        "host_filesystem_used_bytes",
        "A mounted filesystem's used space",
        fs_used,
    );
    state.register(
        "host_filesystem_files",
        "A mounted filesystem's inodes",
        fs_inodes,
    );
    state.register(
        "host_filesystem_files_used",
        "A mounted filesystem's inodes in use",
        fs_inodes_used,
    );
    state.register(
        "host_network_receive_bytes_per_second",
        "Bytes received per second over the last sampling interval",
        rx,
    );
    state.register(
        "host_network_transmit_bytes_per_second",
        "Bytes sent per second over the last sampling interval",
        tx,
    );
    state.register(
        "host_disk_read_bytes_per_second",
        "Bytes read per second over the last sampling interval",
        disk_read,
    );
    state.register(
        "host_disk_written_bytes_per_second",
        "Bytes written per second over the last sampling interval",
        disk_write,
    );
    state.register(
        "host_temperature_celsius",
        "A sensor's temperature",
        temperature,
    );
}

/// The whole exposition: the hub's counters and the registry's state.
pub fn render(metrics: &Metrics, snapshot: &Snapshot<'_>) -> String {
    let mut state = Registry::with_prefix("lookout");
    let status = Family::<StatusLabels, Gauge>::default();
    let up = Family::<ServiceLabels, Gauge>::default();
    let latency = Family::<ServiceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for service in snapshot.services {
        let server = service
            .server_id
            .and_then(|id| snapshot.servers.iter().find(|s| s.id == id))
            .map(|s| s.name.clone())
            .unwrap_or_default();
        for s in [
            Status::Ok,
            Status::Update,
            Status::Warning,
            Status::Failure,
            Status::Unknown,
        ] {
            status
                .get_or_create(&StatusLabels {
                    service: service.name.clone(),
                    server: server.clone(),
                    status: s.as_str(),
                })
                .set(i64::from(service.state == s));
        }
        let labels = ServiceLabels {
            service: service.name.clone(),
            server,
        };
        up.get_or_create(&labels)
            .set(i64::from(service.state == Status::Ok));
        if let Some(ms) = service.last_latency_ms {
            #[allow(clippy::cast_precision_loss)] // milliseconds: far below 2^52
            latency.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
    }
    state.register(
        "service_status",
        "1 for the status each configured service has now (OK, UPDATE, WARNING, FAILURE, UNKNOWN), 0 for the others",
        status,
    );
    state.register(
        "service_up",
        "1 when the service's status is OK, else 0",
        up,
    );
    state.register(
        "service_latency_seconds",
        "Latency of the service's last HTTP health check",
        latency,
    );
    let agents = Gauge::<i64>::default();
    agents.set(i64::try_from(snapshot.agents_connected).unwrap_or(i64::MAX));
    state.register(
        "agents_connected",
        "Agents with a live session to this hub",
        agents,
    );
    let online = Gauge::<i64>::default();
    online.set(
        i64::try_from(
            snapshot
                .servers
                .iter()
                .filter(|s| s.online(snapshot.now))
                .count(),
        )
        .unwrap_or(i64::MAX),
    );
    state.register(
        "servers_online",
        "Servers whose agent is in touch with any hub",
        online,
    );

    register_usage(&mut state, snapshot, |service| {
        service
            .server_id
            .and_then(|id| snapshot.servers.iter().find(|s| s.id == id))
            .map(|s| s.name.clone())
            .unwrap_or_default()
    });

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &metrics.registry);
    let _ = encode_registry(&mut out, &state);
    let _ = encode_eof(&mut out);
    out
}
