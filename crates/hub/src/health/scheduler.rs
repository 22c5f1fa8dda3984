//! The background health scheduler. It keeps one slot per configured service
//! that has a health URL, runs each check on its own task when it falls due,
//! and never waits for one check before starting another: a target that never
//! answers costs one timeout on its own task and nothing elsewhere.
//!
//! It learns about new, changed and deleted services from the [`EventBus`], and
//! re-reads the registry every [`RESYNC_EVERY`] as a safety net.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lookout_proto::service::RegistryStatus;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Checker;
use crate::clock::SharedClock;
use crate::config::CheckDefaults;
use crate::events::{Event, EventBus};
use crate::store::{Service, ServiceFilter, Store};

/// How often the scheduler re-reads the registry even without events.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);

pub struct Scheduler {
    pub store: Arc<dyn Store>,
    pub checker: Checker,
    pub clock: SharedClock,
    pub events: EventBus,
    pub defaults: CheckDefaults,
}

/// What makes two versions of a service the same check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckKey {
    url: String,
    interval: Duration,
    timeout: Duration,
}

struct Slot {
    service: Service,
    key: CheckKey,
    due: Instant,
    in_flight: bool,
}

impl Scheduler {
    /// Runs until `shutdown` is cancelled; in-flight checks are then abandoned.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut events = self.events.subscribe();
        let permits = Arc::new(Semaphore::new(self.defaults.concurrency));
        let mut slots: HashMap<i64, Slot> = HashMap::new();
        let mut running: JoinSet<i64> = JoinSet::new();
        let mut resync = true;
        let mut next_full_resync = Instant::now();

        loop {
            let now = Instant::now();
            if resync || now >= next_full_resync {
                self.resync(&mut slots).await;
                resync = false;
                next_full_resync = now + RESYNC_EVERY;
            }

            for slot in slots.values_mut().filter(|s| !s.in_flight && s.due <= now) {
                slot.in_flight = true;
                let service = slot.service.clone();
                let (checker, store, clock, events, defaults, permits) = (
                    self.checker.clone(),
                    self.store.clone(),
                    self.clock.clone(),
                    self.events.clone(),
                    self.defaults,
                    permits.clone(),
                );
                running.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let result = checker.check_service(&service, &defaults, clock.as_ref()).await;
                    if let Err(e) = super::record_check(store.as_ref(), &events, &result).await {
                        tracing::warn!(service = service.id, error = ?e, "could not store a health check");
                    }
                    service.id
                });
            }

            let wake = slots
                .values()
                .filter(|s| !s.in_flight)
                .map(|s| s.due)
                .min()
                .unwrap_or(next_full_resync)
                .min(next_full_resync);

            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(wake) => {}
                event = events.recv() => match event {
                    // Only changes to the registry change the plan; check
                    // results and status changes (the bulk of events) do not.
                    Ok(
                        Event::HealthChecked { .. }
                        | Event::StatusChanged(_)
                        | Event::CheckResult { .. }
                        | Event::ServerUpdated { .. }
                        | Event::ServerDeleted { .. },
                    ) => {}
                    Ok(
                        Event::ServiceCreated { .. }
                        | Event::ServiceUpdated { .. }
                        | Event::ServiceDeleted { .. }
                        | Event::ScanCompleted,
                    )
                    | Err(broadcast::error::RecvError::Lagged(_)) => resync = true,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(done) = running.join_next(), if !running.is_empty() => {
                    match done {
                        Ok(id) => {
                            if let Some(slot) = slots.get_mut(&id) {
                                slot.in_flight = false;
                                slot.due = Instant::now() + slot.key.interval;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "a health check task failed"),
                    }
                }
            }
        }
        running.abort_all();
    }

    /// Brings the slots in line with the registry: new services are due now (or
    /// one interval after their last stored check), changed ones are due now,
    /// deleted ones go.
    async fn resync(&self, slots: &mut HashMap<i64, Slot>) {
        let services = match self
            .store
            .list_services(ServiceFilter::Status(RegistryStatus::Configured))
            .await
        {
            Ok(services) => services,
            Err(e) => {
                tracing::warn!(error = ?e, "health scheduler could not read the registry");
                return;
            }
        };
        let now = Instant::now();
        let wall_now = self.clock.now();
        let mut seen = std::collections::HashSet::with_capacity(services.len());
        for service in services {
            let Some(url) = service.health_url() else {
                continue;
            };
            seen.insert(service.id);
            let key = CheckKey {
                url,
                interval: service.interval(&self.defaults),
                timeout: service.timeout(&self.defaults),
            };
            match slots.get_mut(&service.id) {
                Some(slot) => {
                    if slot.key != key {
                        slot.due = now;
                        slot.key = key;
                    }
                    slot.service = service;
                }
                None => {
                    let since_last = service
                        .last_health_check
                        .and_then(|t| (wall_now - t).to_std().ok());
                    let due = match since_last {
                        Some(elapsed) if elapsed < key.interval => now + (key.interval - elapsed),
                        _ => now,
                    };
                    slots.insert(
                        service.id,
                        Slot {
                            service,
                            key,
                            due,
                            in_flight: false,
                        },
                    );
                }
            }
        }
        slots.retain(|id, _| seen.contains(id));
    }
}
