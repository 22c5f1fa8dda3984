//! Resource usage: the sampler that reads, every `--usage-every`, what the
//! hub's host and each running unit of its services use (through
//! `lookout-usage`: the unit's cgroup, or systemd's accounting where the
//! cgroup cannot be read), keeps the latest figures in memory for the API,
//! the pages and `/metrics`, writes raw samples, and rolls them up into
//! 1-minute and 15-minute buckets with the check history's downsampler
//! (`lookout_proto::series`), pruning each kind after its window.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lookout_config::UsageSettings;
use lookout_proto::series::{coarsen, Bucket};
use lookout_proto::service::RegistryStatus;
use lookout_proto::usage::{HostUsage, UnitUsage};
use lookout_usage::{CgroupCounters, Cgroups, HostReader};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::discovery::Discovery;
use crate::registry::Registry;
use crate::store::{HostUsageRow, Spread, Store, StoreError, UnitUsageRow};

/// Raw samples are stored with this width.
pub const RAW: u32 = 0;
/// The widths of the rollups, in seconds, and how long each is kept.
pub const MINUTE: u32 = 60;
pub const QUARTER: u32 = 900;
pub const MINUTES_KEPT: Duration = Duration::from_secs(86_400);
pub const QUARTERS_KEPT: Duration = Duration::from_secs(90 * 86_400);

/// A unit's active states in which it has processes to account.
fn running(state: Option<&str>) -> bool {
    matches!(
        state,
        Some("active" | "reloading" | "activating" | "deactivating")
    )
}

/// The latest figures, as sampled here or reported by agents.
#[derive(Debug, Default)]
struct Latest {
    hosts: BTreeMap<String, HostUsage>,
    services: HashMap<i64, UnitUsage>,
    /// Each agent's server's running units, by unit name.
    servers: HashMap<i64, BTreeMap<String, UnitUsage>>,
    /// Each host's filesystems' recent use, by mount point, for
    /// `[DISK_FULL_IN]`.
    trends: HashMap<String, BTreeMap<String, Trend>>,
}

/// A filesystem's trend is fitted over this long, from a point a minute.
const TREND_WINDOW_SECS: i64 = 6 * 3600;
const TREND_STEP_SECS: i64 = 60;
/// Fewer minutes of points than this give no estimate.
pub const TREND_MIN_SECS: i64 = 600;

/// A filesystem's use over the last hours, a point a minute, to tell when
/// it fills at its current rate.
#[derive(Debug, Default, Clone)]
pub struct Trend {
    points: VecDeque<(i64, f64)>,
    size: u64,
    used: u64,
}

impl Trend {
    /// Adds a reading at `at` (seconds); one a minute is kept.
    pub fn add(&mut self, at: i64, used: u64, size: u64) {
        self.size = size;
        self.used = used;
        match self.points.back() {
            // A clock gone back: start again.
            Some((t, _)) if at < *t => self.points.clear(),
            Some((t, _)) if at - t < TREND_STEP_SECS => return,
            _ => {}
        }
        self.points.push_back((at, used as f64));
        while self
            .points
            .front()
            .is_some_and(|(t, _)| at - t > TREND_WINDOW_SECS)
        {
            self.points.pop_front();
        }
    }

    /// Seconds until full at the rate of the least-squares line through
    /// the points: `None` before [`TREND_MIN_SECS`] of them, `Some(None)`
    /// when the filesystem is not filling.
    pub fn full_in(&self) -> Option<Option<f64>> {
        let (first, last) = (self.points.front()?, self.points.back()?);
        if last.0 - first.0 < TREND_MIN_SECS || self.points.len() < 3 {
            return None;
        }
        let n = self.points.len() as f64;
        let t0 = first.0;
        let mean_t = self
            .points
            .iter()
            .map(|(t, _)| (t - t0) as f64)
            .sum::<f64>()
            / n;
        let mean_u = self.points.iter().map(|(_, u)| u).sum::<f64>() / n;
        let (mut cov, mut var) = (0.0, 0.0);
        for (t, u) in &self.points {
            let dt = (t - t0) as f64 - mean_t;
            cov += dt * (u - mean_u);
            var += dt * dt;
        }
        let per_sec = cov / var;
        if per_sec.is_nan() || per_sec <= 0.0 {
            return Some(None);
        }
        Some(Some(self.size.saturating_sub(self.used) as f64 / per_sec))
    }
}

/// The soonest a host's filesystems fill: `None` while no estimate is
/// known, [`NEVER`](lookout_proto::condition::NEVER) when none is filling.
fn soonest_full(trends: Option<&BTreeMap<String, Trend>>) -> Option<i64> {
    let estimates: Vec<Option<f64>> = trends?.values().filter_map(Trend::full_in).collect();
    if estimates.is_empty() {
        return None;
    }
    Some(
        estimates
            .into_iter()
            .flatten()
            .map(|secs| (secs * 1000.0).min(lookout_proto::condition::NEVER as f64 / 2.0) as i64)
            .min()
            .unwrap_or(lookout_proto::condition::NEVER),
    )
}

/// What the hub knows of resource usage now.
#[derive(Debug)]
pub struct Usage {
    settings: UsageSettings,
    /// This host's name, as its figures are kept.
    host: String,
    latest: RwLock<Latest>,
    /// When this hub began: hosts get [`Usage::starting`]'s grace from then
    /// to send their first figures.
    started: std::time::Instant,
}

impl Usage {
    pub fn new(settings: UsageSettings, host: String) -> Self {
        Usage {
            settings,
            host,
            latest: RwLock::default(),
            started: std::time::Instant::now(),
        }
    }

    /// Whether the hub samples at all.
    pub fn enabled(&self) -> bool {
        self.settings.every.is_some()
    }

    pub fn settings(&self) -> UsageSettings {
        self.settings
    }

    /// The hub's own host's name.
    pub fn host_name(&self) -> &str {
        &self.host
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Latest> {
        self.latest.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Latest> {
        self.latest.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A host's latest figures.
    pub fn host(&self, name: &str) -> Option<HostUsage> {
        self.read().hosts.get(name).cloned()
    }

    /// The hub's own host's memory, in bytes (0 before its first sample).
    pub fn own_memory_total(&self) -> u64 {
        self.read()
            .hosts
            .get(&self.host)
            .map_or(0, |h| h.memory_total_bytes)
    }

    /// Every host's latest figures, by name.
    pub fn hosts(&self) -> Vec<(String, HostUsage)> {
        self.read()
            .hosts
            .iter()
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect()
    }

    /// A service's latest figures; `None` while it is not running.
    pub fn service(&self, id: i64) -> Option<UnitUsage> {
        self.read().services.get(&id).cloned()
    }

    /// Every running service's latest figures, by id.
    pub fn services(&self) -> HashMap<i64, UnitUsage> {
        self.read().services.clone()
    }

    /// Records a host's figures (the hub's own, or an agent's).
    pub fn record_host(&self, name: &str, usage: HostUsage) {
        let mut latest = self.write();
        let trends = latest.trends.entry(name.to_owned()).or_default();
        trends.retain(|mount, _| usage.filesystems.iter().any(|f| f.mount == *mount));
        for fs in &usage.filesystems {
            trends.entry(fs.mount.clone()).or_default().add(
                usage.at.timestamp(),
                fs.used_bytes,
                fs.size_bytes,
            );
        }
        latest.hosts.insert(name.to_owned(), usage);
    }

    /// A host's figures as conditions read them, and how old they are at
    /// `now`.
    pub fn host_seen(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Option<(Duration, lookout_proto::condition::UsageSeen)> {
        let latest = self.read();
        let host = latest.hosts.get(name)?;
        let age = (now - host.at).to_std().unwrap_or_default();
        Some((
            age,
            lookout_proto::condition::UsageSeen {
                cpu_percent: Some(host.cpu_percent),
                memory_bytes: Some(host.memory_used_bytes),
                memory_percent: Some(host.memory_percent()),
                tasks: None,
                disk_percent: Some(host.disk_percent()),
                disk_full_in_ms: soonest_full(latest.trends.get(name)),
                load: Some(host.load[0]),
            },
        ))
    }

    /// Whether hosts are still within their time to send first figures:
    /// three of this hub's intervals and 10 s (an agent reconnecting).
    pub fn starting(&self) -> bool {
        self.started.elapsed()
            < self.settings.every.unwrap_or_default() * 3 + Duration::from_secs(10)
    }

    /// A host whose last figures are older than this is not reporting: three
    /// of this hub's intervals, and two minutes at least.
    pub fn stale_after(&self) -> Duration {
        (self.settings.every.unwrap_or_default() * 3).max(Duration::from_secs(120))
    }

    /// Replaces what an agent's server's units use.
    pub fn record_server_units(&self, server: i64, units: BTreeMap<String, UnitUsage>) {
        self.write().servers.insert(server, units);
    }

    /// What an agent's server's running units use, by unit name.
    pub fn server_units(&self, server: i64) -> BTreeMap<String, UnitUsage> {
        self.read()
            .servers
            .get(&server)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the figures of the services in `ids` with `sampled`: those
    /// of `ids` not sampled are not running.
    pub fn record_services(&self, ids: &[i64], sampled: HashMap<i64, UnitUsage>) {
        let mut latest = self.write();
        for id in ids {
            latest.services.remove(id);
        }
        latest.services.extend(sampled);
    }

    /// Samples this host every interval until `stop`.
    pub async fn run(
        self: Arc<Self>,
        registry: Arc<Registry>,
        discovery: Arc<Discovery>,
        store: Arc<dyn Store>,
        clock: SharedClock,
        stop: CancellationToken,
    ) {
        let Some(every) = self.settings.every else {
            return;
        };
        let mut sampler = Sampler::new(HostReader::default(), Cgroups::detect());
        let mut rolled: Option<DateTime<Utc>> = None;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = clock.now();
            let units = sampled_units(&registry);
            sampler.learn_groups(&units, &discovery).await;
            let (host, services) = sampler.sample(now, &units).await;
            let ids: Vec<i64> = units.iter().flat_map(|s| s.ids.clone()).collect();
            let mut rows = Vec::new();
            for (id, u) in &services {
                rows.push(unit_row(*id, u));
            }
            self.record_services(&ids, services);
            let mut host_rows = Vec::new();
            if let Some(host) = host {
                host_rows.push(host_row(&self.host, &host));
                self.record_host(&self.host, host);
            }
            let written = async {
                store.put_unit_usage(&rows).await?;
                store.put_host_usage(&host_rows).await?;
                let minute = lookout_proto::series::slot(now, chrono::Duration::minutes(1));
                if rolled != Some(minute) {
                    roll_up_usage(store.as_ref(), now, self.settings.raw_keep).await?;
                    rolled = Some(minute);
                }
                Ok::<_, StoreError>(())
            };
            if let Err(e) = written.await {
                tracing::warn!(error = %e, "cannot record resource usage");
            }
        }
    }
}

/// What the sampler reads: a unit, or a container of the hub's engine.
#[derive(Debug, Clone)]
struct Subject {
    /// The unit's name, or `container:NAME`.
    key: String,
    /// The services it stands for.
    ids: Vec<i64>,
    /// Whether it runs.
    up: bool,
    /// A container's main process, whose cgroup is the container's; a
    /// unit's cgroup is asked of systemd.
    pid: Option<u32>,
}

/// The units and containers of the hub's host worth sampling: each with the
/// services it stands for (raw ones left out) and whether it is running.
fn sampled_units(registry: &Registry) -> Vec<Subject> {
    let mut subjects: Vec<Subject> = registry
        .units()
        .into_iter()
        .filter_map(|unit| {
            let entries = registry.by_unit(&unit);
            let ids: Vec<i64> = entries
                .iter()
                .filter(|e| e.service.status != RegistryStatus::Raw)
                .map(|e| e.service.id)
                .collect();
            let up = entries
                .iter()
                .any(|e| running(e.service.systemd_state.as_deref()));
            (!ids.is_empty()).then_some(Subject {
                key: unit,
                ids,
                up,
                pid: None,
            })
        })
        .collect();
    for entry in registry.list(&crate::registry::ListFilter::default()) {
        let s = &entry.service;
        let Some(c) = s.container_info.as_deref() else {
            continue;
        };
        if s.unit.is_some() || s.server_id.is_some() || s.status == RegistryStatus::Raw {
            continue;
        }
        subjects.push(Subject {
            key: format!("container:{}", c.name),
            ids: vec![s.id],
            up: c.up() && c.pid.is_some(),
            pid: c.pid,
        });
    }
    subjects
}

/// The hub's sampling between intervals: each unit's cgroup path, and the
/// readers and last counters (`lookout_usage::Sampler`, the agent's too).
pub struct Sampler {
    cgroups: Cgroups,
    /// The readers and last counters (`None` while a round has them on
    /// the blocking pool).
    inner: Option<lookout_usage::Sampler>,
    /// By unit: its cgroup (`None`: read through systemd).
    groups: HashMap<String, Option<String>>,
    /// Units whose cgroup is not readable: systemd's accounting instead.
    through_systemd: HashMap<String, CgroupCounters>,
}

impl Sampler {
    pub fn new(reader: HostReader, cgroups: Cgroups) -> Self {
        Sampler {
            inner: Some(lookout_usage::Sampler::new(cgroups.clone(), reader)),
            cgroups,
            groups: HashMap::new(),
            through_systemd: HashMap::new(),
        }
    }

    /// Asks systemd for the cgroup of each running unit not known yet, and
    /// for its accounting where the cgroup cannot be read.
    async fn learn_groups(&mut self, units: &[Subject], discovery: &Discovery) {
        self.groups
            .retain(|unit, _| units.iter().any(|s| s.key == *unit && s.up));
        self.through_systemd.clear();
        for Subject {
            key: unit, up, pid, ..
        } in units
        {
            if !*up {
                continue;
            }
            // A unit whose cgroup is known is read in `sample`, which
            // forgets it once the cgroup is gone; only new ones are asked.
            if self.groups.get(unit).is_some_and(Option::is_some) {
                continue;
            }
            if let Some(pid) = pid {
                // A container: its main process's cgroup (a restart gives
                // it a new one, and the old one's files are gone).
                let group =
                    lookout_usage::cgroup_of(*pid).filter(|g| self.cgroups.read(g).is_some());
                if group.is_some() {
                    self.groups.insert(unit.clone(), group);
                }
                continue;
            }
            let Ok(name) = lookout_systemd::UnitName::parse(unit) else {
                continue;
            };
            let Ok(accounting) = discovery
                .with(true, |s| {
                    let name = name.clone();
                    async move { s.accounting(&name).await }
                })
                .await
            else {
                continue;
            };
            let group = accounting
                .control_group
                .filter(|g| self.cgroups.read(g).is_some());
            if group.is_none() {
                self.through_systemd.insert(
                    unit.clone(),
                    CgroupCounters {
                        cpu_usec: accounting.cpu_nsec.map(|ns| ns / 1000),
                        memory_bytes: accounting.memory_bytes,
                        tasks: accounting.tasks,
                        io_read_bytes: accounting.io_read_bytes,
                        io_write_bytes: accounting.io_write_bytes,
                    },
                );
            }
            self.groups.insert(unit.clone(), group);
        }
    }

    /// One sample: the host's use since the last one, and each running
    /// unit's, given to every service it stands for.
    async fn sample(
        &mut self,
        now: DateTime<Utc>,
        units: &[Subject],
    ) -> (Option<HostUsage>, HashMap<i64, UnitUsage>) {
        let Some(mut inner) = self.inner.take() else {
            return (None, HashMap::new());
        };
        // The subjects of each key (services of one unit share it).
        let mut by_key: HashMap<&str, Vec<&Subject>> = HashMap::new();
        for s in units {
            by_key.entry(s.key.as_str()).or_default().push(s);
        }
        let groups: Vec<(String, String, Option<u32>)> = self
            .groups
            .iter()
            .filter_map(|(u, g)| {
                let pid = by_key.get(u.as_str()).and_then(|s| s[0].pid);
                g.clone().map(|g| (u.clone(), g, pid))
            })
            .collect();
        let elsewhere: Vec<(String, CgroupCounters)> = self.through_systemd.drain().collect();
        // File reads (and statvfs, which a stale network mount can hold up)
        // off the async threads.
        let read = tokio::task::spawn_blocking(move || {
            // A container's process that another manager moved in a v1
            // controller: that controller's figure would be an empty
            // cgroup's.
            let split: HashMap<String, Vec<&'static str>> = groups
                .iter()
                .filter_map(|(u, _, pid)| {
                    Some((u.clone(), lookout_usage::split_controllers((*pid)?)))
                })
                .collect();
            let pairs: Vec<(String, String)> = groups.into_iter().map(|(u, g, _)| (u, g)).collect();
            let (host, sampled) = inner.sample_with(now, &pairs, elsewhere);
            (host, sampled, split, pairs, inner)
        })
        .await;
        let Ok((host_usage, read, split, asked, inner)) = read else {
            return (None, HashMap::new());
        };
        self.inner = Some(inner);
        // A cgroup that no longer reads is gone: the unit stopped.
        for (unit, _) in &asked {
            if !read.iter().any(|(u, _)| u == unit) {
                self.groups.remove(unit);
            }
        }
        let mut sampled = HashMap::new();
        for (unit, mut usage) in read {
            if let Some(split) = split.get(&unit) {
                lookout_usage::without(&mut usage, split);
            }
            for s in by_key.get(unit.as_str()).into_iter().flatten() {
                for id in &s.ids {
                    sampled.insert(*id, usage.clone());
                }
            }
        }
        (host_usage, sampled)
    }
}

/// A raw sample as stored.
fn unit_row(service_id: i64, u: &UnitUsage) -> UnitUsageRow {
    UnitUsageRow {
        service_id,
        width: RAW,
        start: u.at,
        samples: 1,
        cpu: u.cpu_percent.map(Spread::one),
        memory: u.memory_bytes.map(|m| Spread::one(m as f64)),
        tasks: u.tasks.map(|t| t as f64),
        io_read: u.io_read_bps,
        io_write: u.io_write_bps,
    }
}

/// A raw host sample as stored.
pub fn host_row(host: &str, u: &HostUsage) -> HostUsageRow {
    let fullest = u
        .filesystems
        .iter()
        .max_by(|a, b| a.percent().total_cmp(&b.percent()));
    HostUsageRow {
        host: host.to_owned(),
        width: RAW,
        start: u.at,
        samples: 1,
        cpu: Spread::one(u.cpu_percent),
        memory: Spread::one(u.memory_used_bytes as f64),
        memory_total: u.memory_total_bytes,
        swap: u.swap_used_bytes as f64,
        swap_total: u.swap_total_bytes,
        load: u.load[0],
        disk: u.disk_percent(),
        disk_used: fullest.map_or(0, |f| f.used_bytes),
        disk_size: fullest.map_or(0, |f| f.size_bytes),
        net_rx: u.networks.iter().map(|n| n.rx_bps).sum(),
        net_tx: u.networks.iter().map(|n| n.tx_bps).sum(),
        disk_read: u.disks.iter().map(|d| d.read_bps).sum(),
        disk_write: u.disks.iter().map(|d| d.write_bps).sum(),
        temperature: u.temperatures.iter().map(|t| t.celsius).reduce(f64::max),
    }
}

// ---- Rollups ----------------------------------------------------------------

/// A figure of a row as the downsampler's bucket: `samples` values with
/// this spread.
fn bucket(start: DateTime<Utc>, samples: u32, spread: Option<Spread>) -> Bucket {
    let n = f64::from(samples);
    match spread {
        Some(s) => Bucket {
            start,
            count: samples,
            passed: samples,
            values: samples,
            sum: s.avg * n,
            min: s.min,
            max: s.max,
        },
        None => Bucket {
            start,
            count: samples,
            passed: samples,
            values: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        },
    }
}

fn spread_of(b: &Bucket) -> Option<Spread> {
    Some(Spread {
        min: b.least()?,
        avg: b.mean()?,
        max: b.most()?,
    })
}

/// Rows of one subject, oldest first, merged into `width`-second buckets
/// figure by figure: `figures` reads a row's figures as spreads, `make`
/// builds a wider row from the merged figures and the bucket's last row.
fn roll<R: Clone>(
    rows: &[R],
    width: u32,
    start: impl Fn(&R) -> DateTime<Utc>,
    samples: impl Fn(&R) -> u32,
    figures: impl Fn(&R) -> Vec<Option<Spread>>,
    make: impl Fn(DateTime<Utc>, u32, Vec<Option<Spread>>, &R) -> R,
) -> Vec<R> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let span = chrono::Duration::seconds(i64::from(width));
    let n = figures(first).len();
    let per_figure: Vec<Vec<Bucket>> = (0..n)
        .map(|i| {
            let buckets: Vec<Bucket> = rows
                .iter()
                .map(|r| bucket(start(r), samples(r), figures(r)[i]))
                .collect();
            coarsen(&buckets, span)
        })
        .collect();
    per_figure[0]
        .iter()
        .enumerate()
        .filter_map(|(k, b)| {
            let last = rows
                .iter()
                .rev()
                .find(|r| lookout_proto::series::slot(start(r), span) == b.start)?;
            let merged = per_figure.iter().map(|f| spread_of(&f[k])).collect();
            Some(make(b.start, b.count, merged, last))
        })
        .collect()
}

fn roll_units(rows: &[UnitUsageRow], width: u32) -> Vec<UnitUsageRow> {
    let mut by_service: BTreeMap<i64, Vec<UnitUsageRow>> = BTreeMap::new();
    for r in rows {
        by_service.entry(r.service_id).or_default().push(r.clone());
    }
    by_service
        .values()
        .flat_map(|rows| {
            roll(
                rows,
                width,
                |r| r.start,
                |r| r.samples,
                |r| {
                    vec![
                        r.cpu,
                        r.memory,
                        r.tasks.map(Spread::one),
                        r.io_read.map(Spread::one),
                        r.io_write.map(Spread::one),
                    ]
                },
                |start, samples, f, last| UnitUsageRow {
                    service_id: last.service_id,
                    width,
                    start,
                    samples,
                    cpu: f[0],
                    memory: f[1],
                    tasks: f[2].map(|s| s.max),
                    io_read: f[3].map(|s| s.avg),
                    io_write: f[4].map(|s| s.avg),
                },
            )
        })
        .collect()
}

fn roll_hosts(rows: &[HostUsageRow], width: u32) -> Vec<HostUsageRow> {
    let mut by_host: BTreeMap<String, Vec<HostUsageRow>> = BTreeMap::new();
    for r in rows {
        by_host.entry(r.host.clone()).or_default().push(r.clone());
    }
    by_host
        .values()
        .flat_map(|rows| {
            roll(
                rows,
                width,
                |r| r.start,
                |r| r.samples,
                |r| {
                    vec![
                        Some(r.cpu),
                        Some(r.memory),
                        Some(Spread::one(r.swap)),
                        Some(Spread::one(r.load)),
                        Some(Spread::one(r.disk)),
                        Some(Spread::one(r.net_rx)),
                        Some(Spread::one(r.net_tx)),
                        Some(Spread::one(r.disk_read)),
                        Some(Spread::one(r.disk_write)),
                        r.temperature.map(Spread::one),
                    ]
                },
                |start, samples, f, last| {
                    let max = |i: usize| f[i].map_or(0.0, |s| s.max);
                    let avg = |i: usize| f[i].map_or(0.0, |s| s.avg);
                    HostUsageRow {
                        host: last.host.clone(),
                        width,
                        start,
                        samples,
                        cpu: f[0].unwrap_or(last.cpu),
                        memory: f[1].unwrap_or(last.memory),
                        memory_total: last.memory_total,
                        swap: max(2),
                        swap_total: last.swap_total,
                        load: max(3),
                        disk: max(4),
                        disk_used: last.disk_used,
                        disk_size: last.disk_size,
                        net_rx: avg(5),
                        net_tx: avg(6),
                        disk_read: avg(7),
                        disk_write: avg(8),
                        temperature: f[9].map(|s| s.max),
                    }
                },
            )
        })
        .collect()
}

/// Rolls complete minutes of raw samples into 1-minute buckets and complete
/// quarter hours of those into 15-minute buckets (from a little before the
/// last bucket made, as samples can arrive late, or from the oldest row),
/// then removes raw samples older than `raw_keep`, minutes older than a day
/// and quarters older than 90 days. Returns how many buckets were written.
pub async fn roll_up_usage(
    store: &dyn Store,
    now: DateTime<Utc>,
    raw_keep: Duration,
) -> Result<usize, StoreError> {
    let mut written = 0;
    for (from_width, width, late) in [(RAW, MINUTE, 2), (MINUTE, QUARTER, 2)] {
        let span = chrono::Duration::seconds(i64::from(width));
        let to = lookout_proto::series::slot(now, span);
        let from = match store.usage_span(width).await? {
            Some((_, last)) => last - span * late,
            None => match store.usage_span(from_width).await? {
                Some((first, _)) => lookout_proto::series::slot(first, span),
                None => continue,
            },
        };
        let mut start = from;
        // A day at a time, so a long gap is not read at once.
        while start < to {
            let end = (start + chrono::Duration::days(1)).min(to);
            let units = roll_units(
                &store.unit_usage(None, from_width, start, end).await?,
                width,
            );
            let hosts = roll_hosts(
                &store.host_usage(None, from_width, start, end).await?,
                width,
            );
            written += units.len() + hosts.len();
            store.put_unit_usage(&units).await?;
            store.put_host_usage(&hosts).await?;
            start = end;
        }
    }
    let keep = |d: Duration| {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    store.prune_usage(RAW, keep(raw_keep)).await?;
    store.prune_usage(MINUTE, keep(MINUTES_KEPT)).await?;
    store.prune_usage(QUARTER, keep(QUARTERS_KEPT)).await?;
    Ok(written)
}

// ---- Series for charts --------------------------------------------------------

/// A range of the usage charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum UsageRange {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
    #[serde(rename = "90d")]
    Quarter,
}

impl UsageRange {
    pub const ALL: [UsageRange; 5] = [
        UsageRange::Hour,
        UsageRange::Day,
        UsageRange::Week,
        UsageRange::Month,
        UsageRange::Quarter,
    ];

    /// `1h`, `24h`, `7d`, `30d` or `90d`.
    pub fn parse(text: &str) -> Option<UsageRange> {
        UsageRange::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UsageRange::Hour => "1h",
            UsageRange::Day => "24h",
            UsageRange::Week => "7d",
            UsageRange::Month => "30d",
            UsageRange::Quarter => "90d",
        }
    }

    pub fn span(self) -> chrono::Duration {
        match self {
            UsageRange::Hour => chrono::Duration::hours(1),
            UsageRange::Day => chrono::Duration::hours(24),
            UsageRange::Week => chrono::Duration::days(7),
            UsageRange::Month => chrono::Duration::days(30),
            UsageRange::Quarter => chrono::Duration::days(90),
        }
    }

    /// The rows a chart of this range is drawn from, and its points' width
    /// in seconds (60 to 96 points a range).
    pub fn widths(self) -> (u32, u32) {
        match self {
            UsageRange::Hour => (MINUTE, 60),
            UsageRange::Day => (MINUTE, QUARTER),
            UsageRange::Week => (QUARTER, 7200),
            UsageRange::Month => (QUARTER, 28_800),
            UsageRange::Quarter => (QUARTER, 86_400),
        }
    }

    fn from(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let point = chrono::Duration::seconds(i64::from(self.widths().1));
        lookout_proto::series::slot(now - self.span(), point)
    }
}

/// The rows a chart of `range` up to `now` is drawn from: the stored
/// width's, and for the minute ranges the raw samples of the minutes not
/// rolled up yet. `fetch(width, from)` reads one width's rows.
async fn series_rows<R, Fut>(
    range: UsageRange,
    now: DateTime<Utc>,
    start: fn(&R) -> DateTime<Utc>,
    fetch: impl Fn(u32, DateTime<Utc>) -> Fut,
) -> Result<Vec<R>, StoreError>
where
    Fut: std::future::Future<Output = Result<Vec<R>, StoreError>>,
{
    let stored = range.widths().0;
    let mut rows = fetch(stored, range.from(now)).await?;
    if stored == MINUTE {
        let after = rows
            .last()
            .map_or(range.from(now), |r| start(r) + chrono::Duration::minutes(1));
        rows.extend(fetch(RAW, after).await?);
    }
    Ok(rows)
}

/// A service's usage over `range` up to `now`, one row per point.
pub async fn unit_series(
    store: &dyn Store,
    id: i64,
    range: UsageRange,
    now: DateTime<Utc>,
) -> Result<Vec<UnitUsageRow>, StoreError> {
    let rows = series_rows(
        range,
        now,
        |r: &UnitUsageRow| r.start,
        |width, from| store.unit_usage(Some(id), width, from, now),
    )
    .await?;
    Ok(roll_units(&rows, range.widths().1))
}

/// A host's usage over `range` up to `now`, one row per point.
pub async fn host_series(
    store: &dyn Store,
    host: &str,
    range: UsageRange,
    now: DateTime<Utc>,
) -> Result<Vec<HostUsageRow>, StoreError> {
    let rows = series_rows(
        range,
        now,
        |r: &HostUsageRow| r.start,
        |width, from| store.host_usage(Some(host), width, from, now),
    )
    .await?;
    Ok(roll_hosts(&rows, range.widths().1))
}

// ---- Words and charts for the pages --------------------------------------------

/// "512 MiB", "1.5 GiB", "300 KiB", "12 B".
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = v.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        let text = format!("{v:.1}");
        format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
    }
}

/// "1.5 MiB/s".
pub fn rate(v: f64) -> String {
    format!("{}/s", bytes(v))
}

/// "12 %", "0.5 %".
pub fn percent(v: f64) -> String {
    if v != 0.0 && v.abs() < 10.0 {
        let text = format!("{v:.1}");
        format!("{} %", text.trim_end_matches(".0"))
    } else {
        format!("{v:.0} %")
    }
}

/// "0.75", "12".
pub fn plain(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// "45 °C".
pub fn celsius(v: f64) -> String {
    format!("{v:.0} °C")
}

impl UsageRange {
    /// "1 hour", "90 days".
    pub fn words(self) -> &'static str {
        match self {
            UsageRange::Hour => "1 hour",
            UsageRange::Day => "24 hours",
            UsageRange::Week => "7 days",
            UsageRange::Month => "30 days",
            UsageRange::Quarter => "90 days",
        }
    }

    fn intervals(self) -> i32 {
        match self {
            UsageRange::Hour | UsageRange::Day => 4,
            UsageRange::Week => 7,
            UsageRange::Month => 6,
            UsageRange::Quarter => 3,
        }
    }
}

/// One chart of a figure over `range`: each point's spread, its tooltip in
/// `unit`'s words.
pub fn figure_chart(
    what: &'static str,
    points: &[(DateTime<Utc>, Option<Spread>)],
    range: UsageRange,
    unit: fn(f64) -> String,
    floor: f64,
    now: DateTime<Utc>,
) -> String {
    let points: Vec<crate::history::ChartPoint> = points
        .iter()
        .map(|(start, s)| crate::history::ChartPoint {
            start: *start,
            spread: s.map(|s| (s.min, s.avg, s.max)),
            failed: 0,
            tooltip: match s {
                Some(s) if s.min == s.max => unit(s.avg),
                Some(s) => format!("mean {}, {}–{}", unit(s.avg), unit(s.min), unit(s.max)),
                None => "no figure".to_owned(),
            },
        })
        .collect();
    crate::history::chart(
        &points,
        crate::history::ChartAxes {
            what,
            span: range.span(),
            bucket: chrono::Duration::seconds(i64::from(range.widths().1)),
            intervals: range.intervals(),
            words: range.words(),
            unit,
            floor,
            width: 440.0,
        },
        now,
    )
}

/// A small bar of `percent` (0-100): `ok` below 75, `warn` below 90, else
/// `high`. Numbers only, so it is safe to embed.
pub fn meter(percent: f64) -> String {
    let p = percent.clamp(0.0, 100.0);
    let class = match p {
        p if p >= 90.0 => "high",
        p if p >= 75.0 => "warn",
        _ => "ok",
    };
    format!(
        r#"<svg class="meter" viewBox="0 0 100 6" preserveAspectRatio="none" role="img" aria-label="{p:.0} %"><rect class="track" width="100" height="6" rx="3"/><rect class="fill {class}" width="{p:.1}" height="6" rx="3"/></svg>"#
    )
}

/// "3 d 4 h", "12 min": how long a host has been up.
pub fn uptime(secs: u64) -> String {
    crate::history::span_words(i64::try_from(secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_proto::condition::NEVER;
    use lookout_proto::usage::FilesystemUsage;

    const GIB: u64 = 1 << 30;

    fn host(at: DateTime<Utc>, used: &[(&str, u64)]) -> HostUsage {
        HostUsage {
            at,
            cpu_percent: 12.0,
            load: [0.5, 0.4, 0.3],
            memory_total_bytes: 8 * GIB,
            memory_used_bytes: 2 * GIB,
            filesystems: used
                .iter()
                .map(|(mount, used)| FilesystemUsage {
                    mount: (*mount).into(),
                    device: format!("/dev/{}", mount.len()),
                    fs_type: "ext4".into(),
                    size_bytes: 100 * GIB,
                    used_bytes: *used,
                    inodes: 0,
                    inodes_used: 0,
                })
                .collect(),
            ..HostUsage::default()
        }
    }

    #[test]
    fn a_filling_disk_is_full_in_its_remaining_space_over_its_rate() {
        let usage = Usage::new(
            UsageSettings {
                every: Some(Duration::from_secs(10)),
                raw_keep: Duration::from_secs(3600),
            },
            "hub".into(),
        );
        let start = DateTime::UNIX_EPOCH + chrono::Duration::days(20_000);
        let at = |secs: i64| start + chrono::Duration::seconds(secs);
        // `/` fills a GiB an hour from 80 GiB; `/home` stays at 10 GiB.
        let fill = |secs: i64| 80 * GIB + (GIB as f64 * secs as f64 / 3600.0) as u64;
        for secs in (0..=540).step_by(10) {
            usage.record_host(
                "hub",
                host(at(secs), &[("/", fill(secs)), ("/home", 10 * GIB)]),
            );
        }
        let (_, seen) = usage.host_seen("hub", at(540)).unwrap();
        assert_eq!(
            seen.disk_full_in_ms, None,
            "nine minutes give no estimate yet"
        );
        assert_eq!(seen.disk_percent.map(f64::round), Some(80.0));
        assert_eq!(seen.load, Some(0.5));
        assert_eq!(seen.memory_percent, Some(25.0));
        for secs in (550..=3600).step_by(10) {
            usage.record_host(
                "hub",
                host(at(secs), &[("/", fill(secs)), ("/home", 10 * GIB)]),
            );
        }
        let (age, seen) = usage.host_seen("hub", at(3630)).unwrap();
        assert_eq!(age, Duration::from_secs(30));
        // 19 GiB left at a GiB an hour: 19 hours.
        let hours = seen.disk_full_in_ms.unwrap() as f64 / 3_600_000.0;
        assert!((hours - 19.0).abs() < 0.1, "{hours} h");

        // A disk that is freed, or steady, is never full.
        let steady = Usage::new(usage.settings(), "hub".into());
        for secs in (0..=1200).step_by(10) {
            steady.record_host(
                "hub",
                host(at(secs), &[("/", 90 * GIB - secs as u64 * 1000)]),
            );
        }
        let (_, seen) = steady.host_seen("hub", at(1200)).unwrap();
        assert_eq!(seen.disk_full_in_ms, Some(NEVER));
        assert!(steady.host_seen("nas", at(1200)).is_none());
    }

    #[test]
    fn a_trend_keeps_a_point_a_minute_for_six_hours() {
        let mut trend = Trend::default();
        for secs in (0..=10 * 3600).step_by(10) {
            trend.add(secs, 1, 2);
        }
        assert_eq!(trend.points.len(), 361, "six hours, a point a minute");
        // A clock gone back starts again.
        trend.add(5, 1, 2);
        assert_eq!(trend.points.len(), 1);
        assert_eq!(trend.full_in(), None);
    }
}
