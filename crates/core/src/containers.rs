//! Containers on the hub's own host: the engine chosen by `--containers`,
//! scans recorded through the registry, and the follower that keeps each
//! container's state current from the engine's event stream.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use lookout_containers::Engine;
use lookout_proto::container::ContainerView;
use lookout_proto::service::RegistryStatus;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{ContainerEngine, WebPorts};
use crate::registry::Registry;
use crate::store::{DiscoveredContainer, StoreError};

pub use lookout_containers::{Action, Error as EngineError, LogLine};

/// Why containers could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ContainersError {
    #[error("container integration is off (--containers off, or no engine socket found)")]
    Disabled,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the last container scan found.
#[derive(Debug, Clone)]
pub struct ContainerScan {
    pub at: DateTime<Utc>,
    pub containers: Vec<ContainerView>,
    pub discovered: usize,
    pub removed: usize,
}

/// The hub's handle on its host's container engine.
#[derive(Debug)]
pub struct Containers {
    engine: Option<Engine>,
    web_ports: WebPorts,
    last: Mutex<Option<ContainerScan>>,
    /// Held by a scan: the follower's and a request's never interleave.
    scanning: Mutex<()>,
}

/// Classifies a container: `discovered` when it publishes a web port, else `raw`.
pub fn classify(c: &ContainerView, web: &WebPorts) -> DiscoveredContainer {
    let web_port = c
        .ports
        .iter()
        .filter(|p| p.protocol == "tcp" && web.contains(p.host_port))
        .map(|p| p.host_port)
        .min();
    DiscoveredContainer {
        info: c.clone(),
        status: if web_port.is_some() {
            RegistryStatus::Discovered
        } else {
            RegistryStatus::Raw
        },
        port: c.web_port(),
    }
}

impl Containers {
    /// The engine `setting` names; `Auto` finds none on a host without one.
    pub fn new(setting: &ContainerEngine, web_ports: WebPorts) -> Self {
        let socket = match setting {
            ContainerEngine::Off => None,
            ContainerEngine::Auto => lookout_containers::auto_socket(),
            ContainerEngine::Socket(path) => Some(path.clone()),
        };
        let engine = socket.and_then(|s| match Engine::connect(&s) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(error = %e, "containers are off");
                None
            }
        });
        Self {
            engine,
            web_ports,
            last: Mutex::new(None),
            scanning: Mutex::new(()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.engine.is_some()
    }

    pub fn engine(&self) -> Result<&Engine, ContainersError> {
        self.engine.as_ref().ok_or(ContainersError::Disabled)
    }

    /// Lists the engine's containers and records them.
    pub async fn scan(
        &self,
        registry: &Registry,
        now: DateTime<Utc>,
    ) -> Result<ContainerScan, ContainersError> {
        let engine = self.engine()?;
        let _one = self.scanning.lock().await;
        let containers = engine.list().await?;
        let found: Vec<DiscoveredContainer> = containers
            .iter()
            .map(|c| classify(c, &self.web_ports))
            .collect();
        let counts = registry.apply_containers(&found, now).await?;
        let scan = ContainerScan {
            at: now,
            containers,
            discovered: counts.discovered,
            removed: counts.removed,
        };
        *self.last.lock().await = Some(scan.clone());
        Ok(scan)
    }

    /// The last scan, kept current by the follower.
    pub async fn last(&self) -> Option<ContainerScan> {
        self.last.lock().await.clone()
    }

    /// Records one container's state: in the registry, and in the last scan.
    pub async fn record(
        &self,
        registry: &Registry,
        view: &ContainerView,
        now: DateTime<Utc>,
    ) -> Result<(), ContainersError> {
        registry.set_container_state(view, now).await?;
        let mut last = self.last.lock().await;
        if let Some(scan) = last.as_mut() {
            match scan.containers.iter_mut().find(|c| c.name == view.name) {
                Some(kept) if view.state == "removed" => {
                    let name = kept.name.clone();
                    scan.containers.retain(|c| c.name != name);
                }
                Some(kept) => *kept = view.clone(),
                None if view.state != "removed" => {
                    scan.containers.push(view.clone());
                    scan.containers.sort_by(|a, b| a.name.cmp(&b.name));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Follows the engine until `shutdown`: a scan, then every container
    /// event read back from the engine and recorded; a container the
    /// registry does not know yet brings a scan. Reconnects with a growing
    /// pause; scans every `scan_every` as a safety net.
    pub async fn follow(
        self: Arc<Self>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        scan_every: Option<Duration>,
        shutdown: CancellationToken,
    ) {
        let Ok(engine) = self.engine().cloned() else {
            return;
        };
        let mut pause = Duration::from_millis(500);
        loop {
            // Subscribe first: nothing that happens during the scan is missed.
            let mut events = Box::pin(engine.events());
            match self.scan(&registry, clock.now()).await {
                Ok(scan) => {
                    pause = Duration::from_millis(500);
                    tracing::debug!(containers = scan.containers.len(), "containers scanned");
                }
                Err(e) => {
                    tracing::warn!(error = %e, socket = engine.socket(), "cannot scan containers");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
            let mut rescan = scan_every
                .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    Some(_) = tick(rescan.as_mut()) => {
                        if let Err(e) = self.scan(&registry, clock.now()).await {
                            tracing::warn!(error = %e, "cannot scan containers");
                        }
                    }
                    event = events.next() => match event {
                        Some(Ok(event)) => self.changed(&registry, &*clock, &event.name).await,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the container engine's events stopped");
                            break;
                        }
                        None => break,
                    },
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// A container changed: read it back and record it.
    async fn changed(&self, registry: &Registry, clock: &dyn Clock, name: &str) {
        let Ok(engine) = self.engine() else { return };
        let result = match engine.inspect(name).await {
            Ok(Some(_)) if registry.by_container(name).is_none() => {
                // New to the registry: a scan records it as found.
                self.scan(registry, clock.now()).await.map(|_| ())
            }
            Ok(Some(view)) => self.record(registry, &view, clock.now()).await,
            Ok(None) => {
                self.record(registry, &ContainerView::removed(name), clock.now())
                    .await
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::warn!(container = name, error = %e, "cannot record a container's change");
        }
    }
}

/// The next tick of `interval`; never, without one.
async fn tick(interval: Option<&mut tokio::time::Interval>) -> Option<tokio::time::Instant> {
    match interval {
        Some(i) => Some(i.tick().await),
        None => std::future::pending().await,
    }
}
