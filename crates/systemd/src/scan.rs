//! One scan of a systemd manager: every service unit with its state, processes
//! and listening TCP ports, and every timer with its schedule and last result.
//!
//! Cost, by design: one `ListUnits` call, one
//! netlink dump per address family, one small `/proc` read per process, one
//! `/proc/PID/fd` listing per process of a running service (both spread over
//! all cores), and a property read per socket unit, per timer and per running
//! service with more than one process (main PID). No subprocess.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde::Serialize;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

use crate::control::usec_time;
use crate::dbus::{unit_path, ServiceProxy, SocketProxy, TimerProxy, UnitProxy};
use crate::{processes, sockets, Error, Scope, Systemd, UnitName};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenSource {
    /// A process of the service holds the listening socket.
    Process,
    /// A `.socket` unit listens on the service's behalf (socket activation).
    SocketUnit,
}

/// A TCP port a service listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listen {
    pub address: String,
    pub port: u16,
    pub source: ListenSource,
    /// For socket activation: the `.socket` unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceUnit {
    pub name: String,
    pub description: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: Option<String>,
    pub main_pid: Option<u32>,
    /// Every process in the unit's cgroup.
    pub pids: Vec<u32>,
    /// Listening TCP sockets, IPv4 and IPv6, sorted by port.
    pub listens: Vec<Listen>,
}

impl ServiceUnit {
    /// Distinct ports, ascending.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.listens.iter().map(|l| l.port).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimerUnit {
    pub name: String,
    pub description: String,
    pub active_state: String,
    /// `OnCalendar=...`, `OnUnitActiveSec=...` lines.
    pub schedule: Vec<String>,
    pub last_trigger: Option<DateTime<Utc>>,
    pub next_elapse: Option<DateTime<Utc>>,
    /// The unit the timer starts.
    pub unit: String,
    pub unit_active_state: Option<String>,
    /// The triggered service's `Result` (`success`, `exit-code`, ...).
    pub last_result: Option<String>,
    /// The triggered service's `ExecMainStatus`.
    pub last_exit_status: Option<i32>,
    pub last_exit: Option<DateTime<Utc>>,
}

impl TimerUnit {
    /// The last run of the triggered unit failed.
    pub fn failed(&self) -> bool {
        self.unit_active_state.as_deref() == Some("failed")
            || self.last_result.as_deref().is_some_and(|r| r != "success")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scan {
    pub scope: Scope,
    pub services: Vec<ServiceUnit>,
    pub timers: Vec<TimerUnit>,
    /// Parts of the scan that could not be done (the rest is still valid),
    /// e.g. ports when the socket list is not readable.
    pub warnings: Vec<String>,
}

/// Ports and processes per service name.
#[derive(Default)]
struct HostView {
    pids: HashMap<String, Vec<u32>>,
    listens: HashMap<String, Vec<Listen>>,
    warning: Option<String>,
}

/// What `/proc` and netlink say, gathered while systemd is still answering
/// `ListUnits`: the processes in a service's cgroup, and the listening
/// sockets each of them holds.
struct HostSnapshot {
    processes: Vec<(u32, String)>,
    held: HashMap<u32, Vec<sockets::ListeningSocket>>,
    warning: Option<String>,
}

fn host_snapshot() -> HostSnapshot {
    let pids = processes::all_pids();
    let paths = processes::par_map(&pids, |pid| processes::cgroup_path(*pid));
    // Only processes under some `.service` cgroup can belong to a service.
    let processes: Vec<(u32, String)> = pids
        .into_iter()
        .zip(paths)
        .filter_map(|(pid, path)| path.filter(|p| p.contains(".service")).map(|p| (pid, p)))
        .collect();
    let mut snapshot = HostSnapshot {
        processes,
        held: HashMap::new(),
        warning: None,
    };
    match sockets::listening_tcp() {
        Ok(listening) => {
            let owners =
                sockets::owners(&listening, snapshot.processes.iter().map(|(pid, _)| *pid));
            snapshot.held = owners
                .into_iter()
                .map(|(pid, held)| (pid, held.into_iter().cloned().collect()))
                .collect();
        }
        Err(e) => {
            snapshot.warning = Some(format!(
                "listening ports unknown: cannot list sockets ({e})"
            ))
        }
    }
    snapshot
}

impl HostSnapshot {
    /// Attributes processes and sockets to the units of this manager.
    fn view(self, units: &HashSet<&str>) -> HostView {
        let mut view = HostView {
            warning: self.warning,
            ..HostView::default()
        };
        for (pid, path) in &self.processes {
            let Some(unit) = processes::unit_of(path, units) else {
                continue;
            };
            view.pids.entry(unit.to_owned()).or_default().push(*pid);
            if let Some(held) = self.held.get(pid) {
                view.listens
                    .entry(unit.to_owned())
                    .or_default()
                    .extend(held.iter().map(|s| Listen {
                        address: s.address.to_string(),
                        port: s.port,
                        source: ListenSource::Process,
                        socket_unit: None,
                    }));
            }
        }
        for pids in view.pids.values_mut() {
            pids.sort_unstable();
        }
        for listens in view.listens.values_mut() {
            listens.sort_by(|a, b| (a.port, &a.address).cmp(&(b.port, &b.address)));
            listens.dedup();
        }
        view
    }
}

/// Parses a socket unit's `Listen` entry into (address, port) for TCP streams.
pub fn parse_listen(kind: &str, address: &str) -> Option<(String, u16)> {
    if kind != "Stream"
        || address.starts_with('/')
        || address.starts_with('@')
        || address.contains("vsock")
    {
        return None;
    }
    if let Ok(port) = address.parse::<u16>() {
        return Some(("::".to_owned(), port));
    }
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.split('%').next().unwrap_or(host).to_owned(), port))
}

fn format_usec(usec: u64) -> String {
    let secs = usec / 1_000_000;
    match secs {
        0 => format!("{}ms", usec / 1000),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}min", s / 60),
        s => format!("{s}s"),
    }
}

/// `OnUnitActiveUSec` → `OnUnitActiveSec`.
fn monotonic_base(base: &str) -> String {
    base.strip_suffix("USec")
        .map_or_else(|| base.to_owned(), |b| format!("{b}Sec"))
}

impl Systemd {
    async fn unit_proxy(&self, path: OwnedObjectPath) -> zbus::Result<UnitProxy<'static>> {
        UnitProxy::builder(&self.conn)
            .path(path)?
            .cache_properties(CacheProperties::No)
            .build()
            .await
    }

    async fn service_proxy(&self, path: OwnedObjectPath) -> zbus::Result<ServiceProxy<'static>> {
        ServiceProxy::builder(&self.conn)
            .path(path)?
            .cache_properties(CacheProperties::No)
            .build()
            .await
    }

    /// Which of `units` have a unit file, though systemd has not loaded them
    /// (a stopped unit nothing refers to is unloaded): their
    /// `UnitFileState` (`enabled`, `disabled`, `static` ...). Asking does
    /// not load a unit.
    pub async fn unit_files(&self, units: &[String]) -> Result<Vec<(String, String)>, Error> {
        let answers = join_all(
            units
                .iter()
                .map(|unit| async move { (unit, self.manager.get_unit_file_state(unit).await) }),
        )
        .await;
        let mut found = Vec::new();
        for (unit, answer) in answers {
            match answer {
                Ok(state) => found.push((unit.clone(), state)),
                Err(zbus::Error::MethodError(..)) => {} // no such file
                Err(e) => return Err(self.bus_error(e)),
            }
        }
        Ok(found)
    }

    /// Scans the manager. Fails only when systemd itself cannot be asked;
    /// missing details (ports, PIDs) become [`Scan::warnings`].
    pub async fn scan(&self) -> Result<Scan, Error> {
        // ListUnits answers in about a millisecond. ListUnitFiles is left out on
        // purpose: systemd walks every unit directory for it (~200 ms measured),
        // and units that are installed but not loaded have no state to show.
        let snapshot = tokio::task::spawn_blocking(host_snapshot);
        let units = self
            .manager
            .list_units()
            .await
            .map_err(|e| self.bus_error(e))?;

        let mut services: BTreeMap<String, ServiceUnit> = BTreeMap::new();
        let mut unit_paths: HashMap<String, OwnedObjectPath> = HashMap::new();
        let mut socket_units = Vec::new();
        let mut timer_units = Vec::new();
        for (name, description, load, active, sub, _, path, ..) in units {
            if name.ends_with(".service") {
                unit_paths.insert(name.clone(), path);
                services.insert(
                    name.clone(),
                    ServiceUnit {
                        unit_file_state: None,
                        name,
                        description,
                        load_state: load,
                        active_state: active,
                        sub_state: sub,
                        main_pid: None,
                        pids: Vec::new(),
                        listens: Vec::new(),
                    },
                );
            } else if name.ends_with(".socket") {
                socket_units.push((name, path));
            } else if name.ends_with(".timer") {
                timer_units.push((name, description, active, path));
            }
        }
        let running: HashSet<String> = services
            .values()
            .filter(|s| s.active_state != "inactive" && s.active_state != "failed")
            .map(|s| s.name.clone())
            .collect();
        let names: HashSet<&str> = services.keys().map(String::as_str).collect();
        let host = async { snapshot.await.map(|snapshot| snapshot.view(&names)) };

        // Socket units' ports, timers and the host's processes: concurrently.
        let socket_listens = join_all(socket_units.into_iter().map(|(name, path)| async move {
            let listen = match SocketProxy::builder(&self.conn)
                .path(path.clone())
                .map(|b| b.cache_properties(CacheProperties::No))
            {
                Ok(b) => match b.build().await {
                    Ok(p) => p.listen().await.unwrap_or_default(),
                    Err(_) => Vec::new(),
                },
                Err(_) => Vec::new(),
            };
            let triggers = match self.unit_proxy(path).await {
                Ok(p) => p.triggers().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            (name, listen, triggers)
        }));
        let timers = join_all(
            timer_units
                .into_iter()
                .map(|(name, description, active, path)| {
                    self.timer(name, description, active, path)
                }),
        );
        let (socket_listens, timers, host) = tokio::join!(socket_listens, timers, host);
        let host = host.unwrap_or_else(|e| HostView {
            warning: Some(format!("processes and ports unknown: {e}")),
            ..HostView::default()
        });

        // Main PIDs. A service that is active and running with exactly one
        // process in its cgroup has that process as its main process (control
        // processes only exist during transitions), so only the others cost a
        // D-Bus call.
        let mut main_pids: Vec<(String, Option<u32>)> = Vec::new();
        let mut ask = Vec::new();
        for name in &running {
            let Some(service) = services.get(name) else {
                continue;
            };
            match host.pids.get(name).map(Vec::as_slice) {
                Some([only])
                    if service.active_state == "active" && service.sub_state == "running" =>
                {
                    main_pids.push((name.clone(), Some(*only)));
                }
                _ => {
                    if let Some(path) = unit_paths.get(name) {
                        ask.push((name.clone(), path.clone()));
                    }
                }
            }
        }
        main_pids.extend(
            join_all(ask.into_iter().map(|(name, path)| async move {
                let pid = match self.service_proxy(path).await {
                    Ok(p) => p.main_pid().await.ok(),
                    Err(_) => None,
                };
                (name, pid.filter(|p| *p != 0))
            }))
            .await,
        );

        for (name, pid) in main_pids {
            if let Some(service) = services.get_mut(&name) {
                service.main_pid = pid;
            }
        }
        for (name, pids) in host.pids {
            if let Some(service) = services.get_mut(&name) {
                service.pids = pids;
            }
        }
        for (name, listens) in host.listens {
            if let Some(service) = services.get_mut(&name) {
                service.listens = listens;
            }
        }
        for (socket_unit, listen, triggers) in socket_listens {
            let ports: Vec<(String, u16)> = listen
                .iter()
                .filter_map(|(kind, address)| parse_listen(kind, address))
                .collect();
            for target in triggers.iter().filter(|t| t.ends_with(".service")) {
                let Some(service) = services.get_mut(target) else {
                    continue;
                };
                for (address, port) in &ports {
                    let already = service
                        .listens
                        .iter()
                        .any(|l| l.port == *port && l.address == *address);
                    if !already {
                        service.listens.push(Listen {
                            address: address.clone(),
                            port: *port,
                            source: ListenSource::SocketUnit,
                            socket_unit: Some(socket_unit.clone()),
                        });
                    }
                }
                service
                    .listens
                    .sort_by(|a, b| (a.port, &a.address).cmp(&(b.port, &b.address)));
            }
        }

        Ok(Scan {
            scope: self.scope,
            services: services.into_values().collect(),
            timers,
            warnings: host.warning.into_iter().collect(),
        })
    }

    /// One timer, as a scan would report it: schedule, last trigger, next run
    /// and the last result of the unit it starts.
    pub async fn timer_status(&self, timer: &UnitName) -> Result<TimerUnit, Error> {
        let path = self
            .manager
            .load_unit(timer.as_str())
            .await
            .map_err(|e| self.bus_error(e))?;
        let unit = self
            .unit_proxy(path.clone())
            .await
            .map_err(|e| self.bus_error(e))?;
        let (description, active) = tokio::join!(unit.description(), unit.active_state());
        Ok(self
            .timer(
                timer.as_str().to_owned(),
                description.unwrap_or_default(),
                active.unwrap_or_default(),
                path,
            )
            .await)
    }

    async fn timer(
        &self,
        name: String,
        description: String,
        active_state: String,
        path: OwnedObjectPath,
    ) -> TimerUnit {
        let mut timer = TimerUnit {
            name,
            description,
            active_state,
            schedule: Vec::new(),
            last_trigger: None,
            next_elapse: None,
            unit: String::new(),
            unit_active_state: None,
            last_result: None,
            last_exit_status: None,
            last_exit: None,
        };
        let proxy = match TimerProxy::builder(&self.conn).path(path) {
            Ok(b) => b.cache_properties(CacheProperties::No).build().await,
            Err(e) => Err(e),
        };
        let Ok(proxy) = proxy else { return timer };
        let (calendar, monotonic, last, next, unit) = tokio::join!(
            proxy.timers_calendar(),
            proxy.timers_monotonic(),
            proxy.last_trigger_usec(),
            proxy.next_elapse_usec_realtime(),
            proxy.unit(),
        );
        timer.schedule.extend(
            calendar
                .unwrap_or_default()
                .into_iter()
                .map(|(base, spec, _)| format!("{base}={spec}")),
        );
        timer.schedule.extend(
            monotonic
                .unwrap_or_default()
                .into_iter()
                .map(|(base, usec, _)| format!("{}={}", monotonic_base(&base), format_usec(usec))),
        );
        timer.last_trigger = last.ok().and_then(usec_time);
        timer.next_elapse = next.ok().and_then(usec_time);
        timer.unit = unit.unwrap_or_default();
        if timer.unit.is_empty() {
            return timer;
        }
        let Ok(path) = OwnedObjectPath::try_from(unit_path(&timer.unit)) else {
            return timer;
        };
        if let (Ok(service), Ok(unit)) = (
            self.service_proxy(path.clone()).await,
            self.unit_proxy(path).await,
        ) {
            let (result, status, exit, active) = tokio::join!(
                service.result(),
                service.exec_main_status(),
                service.exec_main_exit_timestamp(),
                unit.active_state(),
            );
            timer.last_exit = exit.ok().and_then(usec_time);
            // Before the first run there is no result to report.
            if timer.last_exit.is_some() || timer.last_trigger.is_some() {
                timer.last_result = result.ok();
                timer.last_exit_status = status.ok();
            }
            timer.unit_active_state = active.ok();
        }
        timer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_unit_listen_entries() {
        assert_eq!(parse_listen("Stream", "8080"), Some(("::".into(), 8080)));
        assert_eq!(
            parse_listen("Stream", "127.0.0.1:9000"),
            Some(("127.0.0.1".into(), 9000))
        );
        assert_eq!(
            parse_listen("Stream", "[::1]:443"),
            Some(("::1".into(), 443))
        );
        assert_eq!(
            parse_listen("Stream", "[fe80::1%eth0]:80"),
            Some(("fe80::1".into(), 80))
        );
        assert_eq!(parse_listen("Stream", "/run/app.sock"), None);
        assert_eq!(parse_listen("Datagram", "127.0.0.1:53"), None);
        assert_eq!(parse_listen("Stream", "@abstract"), None);
    }

    #[test]
    fn schedules_read_like_unit_files() {
        assert_eq!(format_usec(5_000_000), "5s");
        assert_eq!(format_usec(3_600_000_000), "1h");
        assert_eq!(format_usec(90_000_000), "90s");
        assert_eq!(monotonic_base("OnUnitActiveUSec"), "OnUnitActiveSec");
    }
}
