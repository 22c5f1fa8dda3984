//! systemd discovery on the hub's own host: scanning, classifying, recording,
//! and the connection to the manager, opened lazily and reopened after a
//! failure, so the hub starts and keeps working while systemd is unreachable.

use std::time::{Duration, Instant};

use lookout_proto::service::{PortView, RegistryStatus, ScanResult};
use lookout_systemd::{ListenSource, Scope, ServiceUnit, Systemd};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::config::CheckDefaults;
use crate::registry::Registry;
use crate::store::{DiscoveredUnit, Store, StoreError, UnitState};

pub use lookout_config::WebPorts;

/// Classifies a unit: `discovered` when it listens on a web port, else `raw`;
/// the port shown is the best web port (443, then 80, then the lowest in the
/// ranges), else the lowest port.
pub fn classify(unit: &ServiceUnit, web: &WebPorts) -> DiscoveredUnit {
    let ports = unit.ports();
    let web_ports: Vec<u16> = ports.iter().copied().filter(|p| web.contains(*p)).collect();
    let best = [443, 80]
        .into_iter()
        .find(|p| web_ports.contains(p))
        .or_else(|| web_ports.first().copied());
    DiscoveredUnit {
        unit: unit.name.clone(),
        description: unit.description.clone(),
        active_state: unit.active_state.clone(),
        sub_state: unit.sub_state.clone(),
        unit_file_state: unit.unit_file_state.clone(),
        main_pid: unit.main_pid,
        pids: unit.pids.clone(),
        ports: unit
            .listens
            .iter()
            .map(|l| PortView {
                address: l.address.clone(),
                port: l.port,
                source: match l.source {
                    ListenSource::Process => "process".into(),
                    ListenSource::SocketUnit => "socket_unit".into(),
                },
                socket_unit: l.socket_unit.clone(),
            })
            .collect(),
        port: best.or_else(|| ports.first().copied()),
        status: if best.is_some() {
            RegistryStatus::Discovered
        } else {
            RegistryStatus::Raw
        },
    }
}

/// What the registry keeps of a unit's status.
pub fn unit_state(status: &lookout_systemd::UnitStatus) -> UnitState {
    UnitState {
        active_state: status.active_state.clone(),
        sub_state: status.sub_state.clone(),
        main_pid: status.main_pid,
        restarts: status.restarts,
        result: status.result.clone(),
        exit_status: status.exec_main_status,
        active_since: status.active_since,
    }
}

/// Why systemd could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("systemd integration is off (--systemd none)")]
    Disabled,
    #[error(transparent)]
    Systemd(#[from] lookout_systemd::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The hub's handle on its host's systemd.
#[derive(Debug)]
pub struct Discovery {
    scope: Option<Scope>,
    conn: Mutex<Option<Systemd>>,
    pub web_ports: WebPorts,
    /// Held while a page load decides whether to scan.
    page_scan: Mutex<()>,
    /// Held by a scan: the follower's and a request's never interleave.
    scanning: Mutex<()>,
    /// Unit name patterns (`--watch`): units a scan finds that match are
    /// registered.
    pub watch: Vec<String>,
}

impl Discovery {
    pub fn new(scope: Option<Scope>, web_ports: WebPorts) -> Self {
        Self {
            scope,
            conn: Mutex::new(None),
            web_ports,
            page_scan: Mutex::new(()),
            scanning: Mutex::new(()),
            watch: Vec::new(),
        }
    }

    /// Registers, at each scan, the units that match one of `patterns`.
    pub fn watching(mut self, patterns: Vec<String>) -> Self {
        self.watch = patterns;
        self
    }

    pub fn scope(&self) -> Option<Scope> {
        self.scope
    }

    /// The connection, opened on first use and after a failure.
    pub async fn systemd(&self) -> Result<Systemd, DiscoveryError> {
        let scope = self.scope.ok_or(DiscoveryError::Disabled)?;
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = Systemd::connect(scope).await?;
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection after an error that says it is broken.
    pub async fn forget_if_unreachable(&self, e: &lookout_systemd::Error) {
        if matches!(e, lookout_systemd::Error::Unreachable { .. }) {
            *self.conn.lock().await = None;
        }
    }

    /// `result` of a call on a connection held by the caller; an error that
    /// says the connection is broken forgets it first.
    pub async fn checked<T>(
        &self,
        result: Result<T, lookout_systemd::Error>,
    ) -> Result<T, DiscoveryError> {
        if let Err(e) = &result {
            self.forget_if_unreachable(e).await;
        }
        Ok(result?)
    }

    /// Forgets the connection: the next use connects again.
    pub async fn forget_connection(&self) {
        *self.conn.lock().await = None;
    }

    /// Runs `call` on the one connection every route and task shares. When
    /// it finds the bus broken (the bus daemon restarted, say), the
    /// connection is dropped and, for a call that is safe to repeat, made
    /// again and the call run once more: the request that meets a broken
    /// bus succeeds instead of the one after it.
    pub async fn with<T, Call, Fut>(
        &self,
        repeatable: bool,
        call: Call,
    ) -> Result<T, DiscoveryError>
    where
        Call: Fn(Systemd) -> Fut,
        Fut: std::future::Future<Output = Result<T, lookout_systemd::Error>>,
    {
        let first = call(self.systemd().await?).await;
        match first {
            Err(e @ lookout_systemd::Error::Unreachable { .. }) => {
                self.forget_if_unreachable(&e).await;
                if !repeatable {
                    return Err(e.into());
                }
                tracing::info!(error = %e, "the systemd bus connection broke; connecting again");
                let again = call(self.systemd().await?).await;
                if let Err(e) = &again {
                    self.forget_if_unreachable(e).await;
                }
                Ok(again?)
            }
            other => Ok(other?),
        }
    }
}

/// What `GET /api/scan` remembers of the last scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastScan {
    discovered: usize,
    updated: usize,
    removed: usize,
    scanned_at: chrono::DateTime<chrono::Utc>,
    scope: String,
    duration_ms: u64,
    warnings: Vec<String>,
}

const LAST_SCAN_KEY: &str = "last_scan";

/// A scan of the hub's host and everything it touches: the systemd
/// connection, the registry it updates, the store that keeps the last
/// result.
pub struct Scans<'a> {
    pub discovery: &'a Discovery,
    pub registry: &'a Registry,
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub checks: CheckDefaults,
}

impl Scans<'_> {
    /// The scan a page load shows: the registry as it is now (the hub
    /// follows the manager live) with the last scan's figures; a new scan
    /// only when none has run yet (another load may be running it).
    pub async fn recent_scan(&self) -> Result<ScanResult, DiscoveryError> {
        let _one_at_a_time = self.discovery.page_scan.lock().await;
        if let Some(last) = self.last_scan().await? {
            return Ok(last);
        }
        self.scan().await
    }

    /// Scans systemd, records the result and returns it.
    /// Registers the units found that match a `--watch` pattern and are
    /// not registered yet; a timer's pattern watches the service it starts.
    /// A unit that cannot be registered is logged and left for the next scan.
    async fn watch_matching(
        &self,
        units: &[DiscoveredUnit],
        timers: &[lookout_proto::service::TimerView],
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let patterns = &self.discovery.watch;
        if patterns.is_empty() {
            return;
        }
        let matches = |name: &str| {
            patterns
                .iter()
                .any(|p| lookout_proto::systemd::unit_pattern_matches(p, name))
        };
        let found: std::collections::HashSet<&str> =
            units.iter().map(|u| u.unit.as_str()).collect();
        let mut names: Vec<&str> = units
            .iter()
            .map(|u| u.unit.as_str())
            .filter(|name| matches(name))
            .chain(
                timers
                    .iter()
                    .filter(|t| matches(&t.name) && found.contains(t.unit.as_str()))
                    .map(|t| t.unit.as_str()),
            )
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let registered =
                self.registry.by_unit(name).iter().any(|e| {
                    e.service.status == lookout_proto::service::RegistryStatus::Configured
                });
            if registered {
                continue;
            }
            let mut body = serde_json::Map::new();
            body.insert("name".into(), serde_json::Value::from(name));
            let new = match lookout_proto::service::parse_new_service(&body) {
                Ok(new) => new,
                Err(e) => {
                    tracing::warn!(unit = name, error = ?e, "a watched unit's name is not a service name");
                    continue;
                }
            };
            match self.registry.create(&new, now).await {
                Ok(_) => tracing::info!(unit = name, "registered: it matches a watched pattern"),
                Err(e) => tracing::warn!(unit = name, error = %e, "cannot register a watched unit"),
            }
        }
    }

    pub async fn scan(&self) -> Result<ScanResult, DiscoveryError> {
        let _one_at_a_time = self.discovery.scanning.lock().await;
        let started = Instant::now();
        let systemd = self.discovery.systemd().await?;
        let scan = self.discovery.checked(systemd.scan().await).await?;
        let mut units: Vec<DiscoveredUnit> = scan
            .services
            .iter()
            .map(|s| classify(s, &self.discovery.web_ports))
            .collect();
        units.extend(self.unloaded(&systemd, &scan).await?);
        let timers: Vec<lookout_proto::service::TimerView> = scan
            .timers
            .iter()
            .map(|t| lookout_proto::service::TimerView {
                name: t.name.clone(),
                description: t.description.clone(),
                active_state: t.active_state.clone(),
                schedule: t.schedule.clone(),
                last_trigger: t.last_trigger,
                next_elapse: t.next_elapse,
                unit: t.unit.clone(),
                unit_active_state: t.unit_active_state.clone(),
                last_result: t.last_result.clone(),
                last_exit_status: t.last_exit_status,
                last_exit: t.last_exit,
                failed: t.failed(),
                removed: false,
                last_scanned_at: self.clock.now(),
            })
            .collect();
        let now = self.clock.now();
        let counts = self.registry.apply_scan(&units, &timers, now).await?;
        self.watch_matching(&units, &timers, now).await;
        let last = LastScan {
            discovered: counts.discovered,
            updated: counts.updated,
            removed: counts.removed,
            scanned_at: now,
            scope: scan.scope.as_str().into(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            warnings: scan.warnings,
        };
        let text = serde_json::to_string(&last).map_err(StoreError::from)?;
        self.store.set_state(LAST_SCAN_KEY, &text).await?;
        self.registry.scan_completed();
        Ok(self.scan_result(last).await?)
    }

    /// The registry's units that the scan did not list but whose unit file
    /// is there: stopped, and unloaded by systemd since nothing refers to
    /// them. They are inactive, not gone.
    async fn unloaded(
        &self,
        systemd: &Systemd,
        scan: &lookout_systemd::Scan,
    ) -> Result<Vec<DiscoveredUnit>, DiscoveryError> {
        let listed: std::collections::HashSet<&str> =
            scan.services.iter().map(|s| s.name.as_str()).collect();
        let missing: std::collections::HashMap<String, _> = self
            .registry
            .list(&crate::registry::ListFilter::default())
            .into_iter()
            .filter(|e| {
                e.service.server_id.is_none()
                    && e.service.systemd_state.as_deref() != Some("removed")
            })
            .filter_map(|e| Some((e.service.unit.clone()?, e)))
            .filter(|(unit, _)| unit.ends_with(".service") && !listed.contains(unit.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = missing.keys().cloned().collect();
        let files = self
            .discovery
            .checked(systemd.unit_files(&names).await)
            .await?;
        Ok(files
            .into_iter()
            .filter_map(|(unit, file_state)| {
                let held = &missing.get(&unit)?.service;
                Some(DiscoveredUnit {
                    unit,
                    description: held.description.clone().unwrap_or_default(),
                    active_state: "inactive".into(),
                    sub_state: "dead".into(),
                    unit_file_state: Some(file_state),
                    main_pid: None,
                    pids: Vec::new(),
                    ports: Vec::new(),
                    port: held.port,
                    status: held.status,
                })
            })
            .collect())
    }

    /// The last scan's result, with the registry as it is now; `None` before the first scan.
    pub async fn last_scan(&self) -> Result<Option<ScanResult>, StoreError> {
        let Some(text) = self.store.get_state(LAST_SCAN_KEY).await? else {
            return Ok(None);
        };
        let last: LastScan = serde_json::from_str(&text)?;
        Ok(Some(self.scan_result(last).await?))
    }

    async fn scan_result(&self, last: LastScan) -> Result<ScanResult, StoreError> {
        let services = self
            .registry
            .services(&crate::registry::ListFilter::default())
            .into_iter()
            .filter(|s| s.unit.is_some())
            .map(|s| s.to_view(&self.checks))
            .collect();
        Ok(ScanResult {
            discovered: last.discovered,
            updated: last.updated,
            removed: last.removed,
            scanned_at: last.scanned_at,
            scope: last.scope,
            duration_ms: last.duration_ms,
            services,
            timers: self.store.list_timers().await?,
            warnings: last.warnings,
        })
    }
}

/// How long a start, stop or restart may take before the API gives up waiting
/// (systemd's own default start timeout is 90 s).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(100);

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_systemd::Listen;

    fn unit(ports: &[u16]) -> ServiceUnit {
        ServiceUnit {
            name: "x.service".into(),
            description: "X".into(),
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            unit_file_state: None,
            main_pid: Some(1),
            pids: vec![1],
            listens: ports
                .iter()
                .map(|p| Listen {
                    address: "0.0.0.0".into(),
                    port: *p,
                    source: ListenSource::Process,
                    socket_unit: None,
                })
                .collect(),
        }
    }

    #[test]
    fn web_ports_decide_the_class_and_the_port_shown() {
        let web = WebPorts::default();
        let c = classify(&unit(&[22, 8080, 443]), &web);
        assert_eq!((c.status, c.port), (RegistryStatus::Discovered, Some(443)));
        let c = classify(&unit(&[9100, 3000]), &web);
        assert_eq!((c.status, c.port), (RegistryStatus::Discovered, Some(3000)));
        let c = classify(&unit(&[22, 25]), &web);
        assert_eq!((c.status, c.port), (RegistryStatus::Raw, Some(22)));
        let c = classify(&unit(&[]), &web);
        assert_eq!((c.status, c.port), (RegistryStatus::Raw, None));
        assert_eq!(c.ports.len(), 0);
        let c = classify(&unit(&[10000]), &web);
        assert_eq!(c.status, RegistryStatus::Raw);
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(
            WebPorts::parse("80, 443,3000-9999").unwrap(),
            WebPorts::default()
        );
        assert!(WebPorts::parse("9999-3000").is_err());
        assert!(WebPorts::parse("http").is_err());
        assert!(WebPorts::parse("").is_err());
        assert!(WebPorts::parse("0").is_err());
    }
}
