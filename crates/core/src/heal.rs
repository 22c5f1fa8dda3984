//! Self-healing, as Monit does it: a service with a rule (`heal`) whose own
//! check keeps failing gets its unit restarted, after `after` failed checks
//! in a row, at most `max_per_hour` times in any hour; then the healer gives
//! up, the service alerts, and nothing more is tried until it has
//! recovered. A restart that cannot be done (refused, no systemd, the agent
//! offline or not allowed) gives up at once: trying again would not help,
//! and the alert should not wait.
//!
//! A service the hub does not check (a unit, an agent's check) counts a
//! failed check per check interval spent failing. A service waiting on one
//! it depends on is not healed: the cause is elsewhere. The restart itself
//! goes through the same door as a person's (the web layer's [`Remedy`]:
//! the refusal rules, the audit log, and for an agent's server its
//! `--allow-control`), and each attempt is published as a `heal` event.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use lookout_proto::depends::{HealOutcome, Healing};
use lookout_proto::service::{HealthStatus, RegistryStatus};
use lookout_proto::status::Status;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::events::{Event, EventBus};
use crate::registry::Registry;
use crate::store::{Service, Store};
use crate::sync::lock;

/// Why a restart did not happen, as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RemedyError(pub String);

/// How a restart is asked for: the web layer's control routes, so healing
/// obeys what a person's request does.
pub trait Remedy: Send + Sync {
    /// Restarts `unit` for `service` (on its agent's server, if it has one);
    /// what was done.
    fn restart<'a>(
        &'a self,
        service: &'a Service,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<String, RemedyError>>;
}

/// How many attempts each service's page shows.
const KEPT: usize = 10;

/// What the healer knows of one service.
#[derive(Debug, Default)]
struct Track {
    /// Failed checks in a row (or check intervals spent failing).
    failures: u32,
    /// When the last interval was counted, for a service the hub does not check.
    counted_at: Option<DateTime<Utc>>,
    /// Restarts asked for in the last hour.
    restarts: VecDeque<DateTime<Utc>>,
    gave_up: bool,
    /// The last attempts, newest last.
    log: VecDeque<Healing>,
}

/// The healer's state, shared with the pages.
#[derive(Debug, Default)]
pub struct Heals {
    tracks: Mutex<HashMap<i64, Track>>,
}

impl Heals {
    /// A service's last attempts, newest first.
    pub fn recent(&self, id: i64) -> Vec<Healing> {
        lock(&self.tracks)
            .get(&id)
            .map(|t| t.log.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// A service whose failed checks are check intervals spent failing: one
/// neither the hub nor an agent checks (a unit, a heartbeat, a push URL).
fn counts_intervals(service: &Service) -> bool {
    !service.is_checked() && service.server_id.is_none()
}

pub struct Healer {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub events: EventBus,
    pub clock: SharedClock,
    pub remedy: Arc<dyn Remedy>,
    pub heals: Arc<Heals>,
    pub hub_id: String,
    /// How long the `healer` lease lasts unrenewed; `None` for a hub alone
    /// with its database.
    pub lease: Option<Duration>,
}

impl Healer {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut rx = self.events.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut job = crate::store::leases::JobLease::of("healer", &self.hub_id, self.lease);
        loop {
            let touched: Vec<i64> = tokio::select! {
                () = shutdown.cancelled() => break,
                event = rx.recv() => match event.as_deref() {
                    Ok(Event::HealthChecked { id, status, .. }) => {
                        if self.registry.get(*id).is_some_and(|e| e.service.heal.is_some()) {
                            let mut tracks = lock(&self.heals.tracks);
                            let track = tracks.entry(*id).or_default();
                            track.failures = if *status == HealthStatus::Unhealthy { track.failures + 1 } else { 0 };
                        }
                        vec![*id]
                    }
                    // An agent's check: each result a check.
                    Ok(Event::CheckResult { result, .. }) => {
                        let id = result.service_id;
                        if self.registry.get(id).is_some_and(|e| e.service.heal.is_some()) {
                            let mut tracks = lock(&self.heals.tracks);
                            let track = tracks.entry(id).or_default();
                            track.failures = if result.status == lookout_proto::check::LineStatus::Failure { track.failures + 1 } else { 0 };
                        }
                        vec![id]
                    }
                    Ok(Event::StatusChanged(change)) => vec![change.service_id],
                    Ok(Event::ServiceDeleted { id }) => {
                        lock(&self.heals.tracks).remove(id);
                        vec![]
                    }
                    Ok(_) => vec![],
                    Err(broadcast::error::RecvError::Lagged(_)) => vec![],
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    self.registry
                        .list(&crate::registry::ListFilter::configured())
                        .into_iter()
                        .filter(|e| e.service.heal.is_some())
                        .map(|e| e.service.id)
                        .collect()
                }
            };
            if touched.is_empty() {
                continue;
            }
            let (holder, _) = job.check(self.store.as_ref(), self.clock.now()).await;
            if !holder {
                continue;
            }
            for id in touched {
                if let Some(entry) = self.registry.get(id) {
                    self.look(&entry.service).await;
                }
            }
        }
    }

    /// Restarts, or gives up, if the service's rule says so now.
    async fn look(&self, service: &Service) {
        let Some(rule) = service.heal.as_deref() else {
            return;
        };
        let now = self.clock.now();
        let failing = service.status == RegistryStatus::Configured
            && !service.paused
            && service.state == Status::Failure
            && service.waiting_on.is_none();
        let unit = rule
            .unit
            .clone()
            .or_else(|| service.unit.clone())
            .or_else(|| service.container.as_ref().map(|c| format!("container {c}")))
            .unwrap_or_default();
        let (restart, restarts) = {
            let mut tracks = lock(&self.heals.tracks);
            let track = tracks.entry(service.id).or_default();
            let hour = now - chrono::Duration::hours(1);
            while track.restarts.front().is_some_and(|t| *t < hour) {
                track.restarts.pop_front();
            }
            if !failing {
                if service.state != Status::Failure {
                    // Recovered (or never failed): healing may try again.
                    track.gave_up = false;
                    track.counted_at = None;
                    if counts_intervals(service) {
                        track.failures = 0;
                    }
                }
                return;
            }
            if counts_intervals(service) {
                // One failed check per interval spent failing.
                let every = chrono::Duration::seconds(
                    i64::try_from(service.check_interval_secs.unwrap_or(30)).unwrap_or(30),
                );
                if track.counted_at.is_none_or(|at| now - at >= every) {
                    track.failures += 1;
                    track.counted_at = Some(now);
                }
            }
            if track.gave_up || track.failures < rule.after {
                return;
            }
            track.failures = 0;
            track.counted_at = None;
            let spent =
                u32::try_from(track.restarts.len()).unwrap_or(u32::MAX) >= rule.max_per_hour;
            let restart = !(spent || unit.is_empty());
            if restart {
                track.restarts.push_back(now);
            } else {
                track.gave_up = true;
            }
            (
                restart,
                u32::try_from(track.restarts.len()).unwrap_or(u32::MAX),
            )
        };
        let (outcome, message) = if !restart {
            let message = if unit.is_empty() {
                "no unit to restart: the service has none and its rule names none".to_owned()
            } else {
                format!("restarted {unit} {restarts} times in the last hour; giving up until it recovers")
            };
            (HealOutcome::GaveUp, message)
        } else {
            match self.remedy.restart(service, &unit).await {
                Ok(done) => (HealOutcome::Restarted, done),
                // It will not do better next time: the alert goes out now.
                Err(e) => {
                    if let Some(track) = lock(&self.heals.tracks).get_mut(&service.id) {
                        track.gave_up = true;
                    }
                    (
                        HealOutcome::Failed,
                        format!("could not restart {unit}: {}", e.0),
                    )
                }
            }
        };
        tracing::info!(service = %service.name, unit = %unit, outcome = ?outcome, "self-healing: {message}");
        let attempt = Healing {
            service_id: service.id,
            at: now,
            unit,
            server_id: service.server_id,
            outcome,
            restarts_this_hour: restarts,
            message,
        };
        {
            let mut tracks = lock(&self.heals.tracks);
            let log = &mut tracks.entry(service.id).or_default().log;
            log.push_back(attempt.clone());
            if log.len() > KEPT {
                log.pop_front();
            }
        }
        self.registry.healed(attempt);
    }
}
