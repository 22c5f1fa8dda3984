//! Dependencies between services: the graph, the root cause of a failure,
//! and the task that keeps every service's "waiting on" up to date.
//!
//! A service depends on the services it names (`depends_on`), and, without
//! naming it, on the watched systemd unit of this host that listens on the
//! port its check reaches on loopback. (An agent's check depends on its
//! server too: its status says when the agent is offline.) While a service
//! it depends on fails, directly or further up, it shows `UNKNOWN`, waiting
//! on the failing one at the root, and sends no alert of its own; the root
//! cause's alert says how many services depend on it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lookout_proto::depends::WaitingOn;
use lookout_proto::service::{PortView, RegistryStatus};
use lookout_proto::status::Status;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::events::{Event, EventBus};
use crate::registry::Registry;
use crate::store::Service;

/// What of a service the graph is built from: when none of it changes, the
/// graph stays.
#[derive(PartialEq)]
pub struct Edges<'a> {
    depends_on: &'a [i64],
    waiting: bool,
    status: RegistryStatus,
    paused: bool,
    unit: Option<&'a str>,
    server_id: Option<i64>,
    ports: &'a [PortView],
    base_url: Option<&'a str>,
}

pub fn edges_of(s: &Service) -> Edges<'_> {
    Edges {
        depends_on: &s.depends_on,
        waiting: s.waiting_on.is_some(),
        status: s.status,
        paused: s.paused,
        unit: s.unit.as_deref(),
        server_id: s.server_id,
        ports: &s.ports,
        base_url: s.base_url.as_deref(),
    }
}

/// Whether a service puts anything in the graph by itself: it names
/// dependencies, waits, or is a watched unit of this host listening on
/// ports (which checks of those ports depend on). A loopback check alone
/// adds an edge only where such a unit exists.
pub fn links(s: &Service) -> bool {
    !s.depends_on.is_empty()
        || s.waiting_on.is_some()
        || (s.unit.is_some()
            && s.server_id.is_none()
            && s.status == RegistryStatus::Configured
            && !s.ports.is_empty())
}

/// How far up a root cause is looked for: deeper than any real graph.
const MOST_DEPTH: usize = 32;

/// Who depends on whom.
#[derive(Debug, Default)]
pub struct Graph {
    /// Each service's parents, named first, then found.
    parents: HashMap<i64, Vec<i64>>,
    /// The parents a service has without naming them (a unit on its port).
    implied: HashSet<(i64, i64)>,
    children: HashMap<i64, Vec<i64>>,
    /// Services marked as waiting now: each must be looked at, parents or not.
    waiting: Vec<i64>,
}

/// The port a check reaches on this host's loopback, if it does.
fn loopback_port(s: &Service) -> Option<u16> {
    if s.unit.is_some() || s.server_id.is_some() {
        return None;
    }
    let url = url::Url::parse(s.base_url.as_deref()?).ok()?;
    let local = match url.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback() || ip.is_unspecified(),
        url::Host::Ipv6(ip) => ip.is_loopback() || ip.is_unspecified(),
    };
    local.then(|| url.port_or_known_default()).flatten()
}

impl Graph {
    /// The graph of `services`.
    pub fn build<'a>(services: impl Iterator<Item = &'a Service> + Clone) -> Self {
        let mut graph = Graph::default();
        // The watched units of this host, by the ports they listen on.
        let mut by_port: HashMap<u16, Vec<i64>> = HashMap::new();
        for s in services.clone() {
            if s.unit.is_some() && s.server_id.is_none() && s.status == RegistryStatus::Configured {
                for p in &s.ports {
                    by_port.entry(p.port).or_default().push(s.id);
                }
            }
        }
        for s in services {
            if s.waiting_on.is_some() {
                graph.waiting.push(s.id);
            }
            let mut parents = s.depends_on.clone();
            if let Some(port) = loopback_port(s) {
                for &unit in by_port.get(&port).into_iter().flatten() {
                    if unit != s.id && !parents.contains(&unit) {
                        parents.push(unit);
                        graph.implied.insert((s.id, unit));
                    }
                }
            }
            for &p in &parents {
                graph.children.entry(p).or_default().push(s.id);
            }
            if !parents.is_empty() {
                graph.parents.insert(s.id, parents);
            }
        }
        graph
    }

    /// The graph of a registry where no service [`links`].
    pub fn none() -> Arc<Graph> {
        static NONE: std::sync::OnceLock<Arc<Graph>> = std::sync::OnceLock::new();
        NONE.get_or_init(|| Arc::new(Graph::default())).clone()
    }

    /// No service depends on another and none waits.
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty() && self.waiting.is_empty()
    }

    pub fn parents(&self, id: i64) -> &[i64] {
        self.parents.get(&id).map_or(&[], Vec::as_slice)
    }

    pub fn children(&self, id: i64) -> &[i64] {
        self.children.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Whether `child` depends on `parent` without naming it.
    pub fn implied(&self, child: i64, parent: i64) -> bool {
        self.implied.contains(&(child, parent))
    }

    /// Every service that depends on `id`, directly or further down.
    pub fn dependents(&self, id: i64) -> Vec<i64> {
        let (mut seen, mut todo, mut out) = (HashSet::from([id]), vec![id], Vec::new());
        while let Some(at) = todo.pop() {
            for &c in self.children(at) {
                if seen.insert(c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
        out
    }

    /// The services whose waiting may need a look: those with parents,
    /// and those marked waiting.
    pub fn to_judge(&self) -> impl Iterator<Item = i64> + '_ {
        self.parents.keys().copied().chain(
            self.waiting
                .iter()
                .copied()
                .filter(|id| !self.parents.contains_key(id)),
        )
    }

    /// The failing service at the root of `id`'s dependencies, if one fails:
    /// a parent that fails, or what a parent that waits waits on. A parent
    /// not watched (a unit a scan found) or paused is not a cause.
    pub fn root<'a>(
        &self,
        id: i64,
        get: impl Fn(i64) -> Option<&'a Service> + Copy,
    ) -> Option<WaitingOn> {
        self.root_from(id, get, &mut HashSet::from([id]), 0)
    }

    fn root_from<'a>(
        &self,
        id: i64,
        get: impl Fn(i64) -> Option<&'a Service> + Copy,
        seen: &mut HashSet<i64>,
        depth: usize,
    ) -> Option<WaitingOn> {
        if depth > MOST_DEPTH {
            return None;
        }
        for &p in self.parents(id) {
            let Some(parent) = get(p) else { continue };
            if parent.status != RegistryStatus::Configured || parent.paused || !seen.insert(p) {
                continue;
            }
            // A parent that would fail but waits itself shows UNKNOWN: look
            // further up first, so the root is the same whichever settled first.
            if let Some(root) = self.root_from(p, get, seen, depth + 1) {
                return Some(root);
            }
            if parent.state == Status::Failure {
                return Some(WaitingOn {
                    id: p,
                    name: parent.name.clone(),
                });
            }
        }
        None
    }

    /// A cycle that `id` depending on `parents` would close, as the names
    /// along it (`a → b → a`); `None` when there is none.
    pub fn cycle_through(
        &self,
        id: i64,
        parents: &[i64],
        name: impl Fn(i64) -> String,
    ) -> Option<String> {
        // From each new parent up: reaching `id` again is a cycle.
        for &start in parents {
            let mut path = vec![id, start];
            if start == id || self.path_up(start, id, &mut path, &mut HashSet::new()) {
                let names: Vec<String> = path.into_iter().map(&name).collect();
                return Some(names.join(" → "));
            }
        }
        None
    }

    fn path_up(&self, from: i64, to: i64, path: &mut Vec<i64>, seen: &mut HashSet<i64>) -> bool {
        if !seen.insert(from) {
            return false;
        }
        for &p in self.parents(from) {
            path.push(p);
            if p == to || self.path_up(p, to, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }
}

/// What a service that waited goes on waiting on although that one is
/// back: its own check failed before the recovery, so it says nothing of
/// now. It waits until its next check.
pub fn still_stale<'a>(
    held: &Service,
    get: impl Fn(i64) -> Option<&'a Service>,
) -> Option<WaitingOn> {
    let was = held.waiting_on.as_deref()?;
    let root = get(was.id)?;
    let checked = held.last_health_check?;
    let stale = held.is_checked()
        && held.health_status == lookout_proto::service::HealthStatus::Unhealthy
        && root.state != Status::Failure
        && root.state_since.is_none_or(|back| checked < back);
    stale.then(|| was.clone())
}

/// How soon after a change the waiting is settled: a burst of changes
/// costs one look.
const SETTLE_SOON: Duration = Duration::from_millis(10);

/// Keeps every service's "waiting on" true as statuses and dependencies
/// change: follows the bus and settles the registry after each change that
/// can move it.
pub struct Settler {
    pub registry: Arc<Registry>,
    pub events: EventBus,
    pub clock: SharedClock,
}

impl Settler {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut rx = self.events.subscribe();
        let mut dirty = true;
        loop {
            if dirty {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(SETTLE_SOON) => {}
                }
                // What arrived meanwhile is covered by this look.
                while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = rx.try_recv() {}
                if let Err(e) = self.registry.settle_waiting(self.clock.now()).await {
                    tracing::warn!(error = ?e, "could not record what services wait on");
                }
                dirty = false;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = rx.recv() => match event.as_deref() {
                    Ok(Event::StatusChanged(_) | Event::ServiceCreated { .. } | Event::ServiceUpdated { .. }
                        | Event::ServiceDeleted { .. } | Event::ScanCompleted {})
                    | Err(broadcast::error::RecvError::Lagged(_)) => dirty = true,
                    // A waiting service's own check: it may wait no more.
                    Ok(Event::HealthChecked { id, .. }) => {
                        if self.registry.get(*id).is_some_and(|e| e.service.waiting_on.is_some()) {
                            dirty = true;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: i64, depends_on: &[i64], state: Status) -> Service {
        Service {
            id,
            name: format!("s{id}"),
            depends_on: depends_on.to_vec(),
            state,
            status: RegistryStatus::Configured,
            ..Service::default()
        }
    }

    #[test]
    fn the_root_is_the_failing_service_furthest_up() {
        // 4 → 3 → 2 → 1; 2 and 1 fail.
        let services = [
            service(1, &[], Status::Failure),
            service(2, &[1], Status::Failure),
            service(3, &[2], Status::Ok),
            service(4, &[3], Status::Ok),
        ];
        let get = |id: i64| services.iter().find(|s| s.id == id);
        let graph = Graph::build(services.iter());
        for id in [2, 3, 4] {
            assert_eq!(graph.root(id, get).map(|w| w.id), Some(1), "service {id}");
        }
        assert_eq!(graph.root(1, get), None);
        assert_eq!(graph.dependents(1).len(), 3);
        assert_eq!(graph.dependents(3), vec![4]);
    }

    #[test]
    fn cycles_are_named() {
        let services = [
            service(1, &[2], Status::Ok),
            service(2, &[3], Status::Ok),
            service(3, &[], Status::Ok),
        ];
        let graph = Graph::build(services.iter());
        let name = |id: i64| format!("s{id}");
        assert_eq!(
            graph.cycle_through(3, &[1], name).as_deref(),
            Some("s3 → s1 → s2 → s3")
        );
        assert_eq!(
            graph.cycle_through(3, &[3], name).as_deref(),
            Some("s3 → s3")
        );
        assert_eq!(graph.cycle_through(1, &[3], name), None);
    }
}
