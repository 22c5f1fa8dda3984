//! The background health scheduler. It keeps one slot per configured service
//! that has a health URL, runs each check on its own task when it falls due,
//! and never waits for one check before starting another: a target that never
//! answers costs one timeout on its own task and nothing elsewhere.
//!
//! It learns about new, changed and deleted services from the [`EventBus`], and
//! looks at the registry (in memory) again every [`RESYNC_EVERY`] as a safety
//! net.
//!
//! On a database of its own (SQLite) the hub checks every service. On a
//! shared one it checks only the services it holds a lease on (see
//! [`crate::store::leases`]): its share. Leases are renewed every third of their period and
//! looked at again the moment another hub's lease would expire, so a dead
//! hub's checks move within one lease period. A stopping hub gives its leases
//! back.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Checker;
use crate::clock::SharedClock;
use crate::config::CheckDefaults;
use crate::events::{Event, EventBus};
use crate::registry::{Entry, Reshaped};
use crate::store::{Service, Store};

/// How often the scheduler re-reads the registry even without events.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// How soon after a change the scheduler looks at the registry: a burst of
/// registrations costs one look, not one each.
pub const PLAN_SOON: Duration = Duration::from_millis(20);

/// How soon after a new service the leases are renewed to take it in: soon
/// enough that its first check is not noticeably late, late enough that a
/// burst of registrations costs one renewal (each reads every lease), not one
/// each.
pub const LEASE_SOON: Duration = Duration::from_millis(50);

pub struct Scheduler {
    pub store: Arc<dyn Store>,
    pub registry: Arc<crate::registry::Registry>,
    pub checker: Checker,
    pub clock: SharedClock,
    pub events: EventBus,
    pub defaults: CheckDefaults,
    /// How this hub shares the checks with others; `None`: it is alone on
    /// its database and checks every service.
    pub leases: Option<LeaseSettings>,
}

/// A hub's part in sharing the checks on a shared database.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// This hub's name among the hubs on the database.
    pub hub_id: String,
    /// How long a check lease lasts unrenewed.
    pub lease: Duration,
}

/// The services this hub checks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    /// None yet: the leases were not read.
    Unknown,
    /// Every service: the hub is alone on its database.
    All,
    /// These, leased.
    These(HashSet<i64>),
}

impl Owned {
    fn contains(&self, id: i64) -> bool {
        match self {
            Owned::Unknown => false,
            Owned::All => true,
            Owned::These(ids) => ids.contains(&id),
        }
    }
}

/// The leases this hub holds, and when to renew them.
struct Held {
    owned: Owned,
    renew_at: Instant,
    /// When the last renewal succeeded; leases older than a period are gone.
    renewed: Option<Instant>,
}

/// What makes two versions of a service the same check, as a hash: a slot
/// keeps 8 bytes of it rather than a copy of the URL and settings (a
/// collision would only keep a changed check on its old timing until it
/// next runs; the check itself always reads the service as it is then).
fn check_key(
    service: &Service,
    interval: Duration,
    retry: Duration,
    timeout: Duration,
    url: &str,
) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    url.hash(&mut h);
    interval.hash(&mut h);
    retry.hash(&mut h);
    timeout.hash(&mut h);
    service.probe.hash(&mut h);
    service.conditions.hash(&mut h);
    h.finish()
}

/// A service's place in the plan. It keeps what decides when the service
/// is checked, not the service: a check reads the service as it is then, and
/// memory holds one copy of each service, not a second one per slot.
struct Slot {
    key: u64,
    interval: Duration,
    /// The interval while the check fails.
    retry: Duration,
    due: Instant,
    in_flight: bool,
    /// Changed while its check was in flight: checked again at once when
    /// that one ends, with the new settings.
    again: bool,
}

/// The slots, and the ones waiting in the order they fall due, so a wake-up
/// costs the checks it starts, not a walk over every service.
#[derive(Default)]
struct Slots {
    by_id: HashMap<i64, Slot>,
    /// `(due, id)` of every slot not in flight.
    waiting: BTreeSet<(Instant, i64)>,
}

impl Slots {
    fn insert(&mut self, id: i64, slot: Slot) {
        if !slot.in_flight {
            self.waiting.insert((slot.due, id));
        }
        if let Some(old) = self.by_id.insert(id, slot) {
            if !old.in_flight {
                self.waiting.remove(&(old.due, id));
            }
        }
    }

    /// Moves a slot's due time (it keeps waiting, or starts to).
    fn set_due(&mut self, id: i64, due: Instant) {
        if let Some(slot) = self.by_id.get_mut(&id) {
            if !slot.in_flight {
                self.waiting.remove(&(slot.due, id));
            }
            slot.in_flight = false;
            slot.due = due;
            self.waiting.insert((due, id));
        }
    }

    /// The slots due at `now`, taken out of the queue as in flight.
    fn start_due(&mut self, now: Instant) -> Vec<i64> {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.waiting.first() {
            if at > now {
                break;
            }
            self.waiting.pop_first();
            if let Some(slot) = self.by_id.get_mut(&id) {
                slot.in_flight = true;
                due.push(id);
            }
        }
        due
    }

    fn next_due(&self) -> Option<Instant> {
        self.waiting.first().map(|(at, _)| *at)
    }

    fn clear(&mut self) {
        self.by_id.clear();
        self.waiting.clear();
    }

    fn remove(&mut self, id: i64) {
        if let Some(old) = self.by_id.remove(&id) {
            if !old.in_flight {
                self.waiting.remove(&(old.due, id));
            }
        }
    }

    fn retain(&mut self, keep: impl Fn(i64) -> bool) {
        let waiting = &mut self.waiting;
        self.by_id.retain(|id, slot| {
            let kept = keep(*id);
            if !kept && !slot.in_flight {
                waiting.remove(&(slot.due, *id));
            }
            kept
        });
    }
}

impl Scheduler {
    /// Runs until `shutdown` is cancelled; in-flight checks are then abandoned.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut events = self.events.subscribe();
        let mut shape = self.registry.watch_shape();
        let permits = Arc::new(Semaphore::new(self.defaults.concurrency));
        let rechecks = Rechecks::default();
        let mut slots = Slots::default();
        // Each check's service, and whether it failed.
        let mut running: JoinSet<(i64, bool)> = JoinSet::new();
        // When to look at the registry again: soon after a change, so a
        // burst of changes costs one look.
        let mut resync_at = Some(Instant::now());
        let mut next_full_resync = Instant::now();
        // What the next look covers: every service, or only these (a
        // service's own change, such as its unit's state, plans only it).
        let mut look = Look::Everything;
        let mut held = Held {
            owned: if self.leases.is_some() {
                Owned::Unknown
            } else {
                Owned::All
            },
            // Alone on the database there is nothing to renew.
            renew_at: if self.leases.is_some() {
                Instant::now()
            } else {
                far_future()
            },
            renewed: None,
        };

        loop {
            let now = Instant::now();
            if now >= held.renew_at && self.renew(&mut held).await {
                resync_at = Some(now);
                look = Look::Everything;
            }
            if now >= next_full_resync {
                look = Look::Everything;
            }
            if resync_at.is_some_and(|t| now >= t) || now >= next_full_resync {
                match std::mem::take(&mut look) {
                    Look::Everything => {
                        self.resync(&mut slots, &held.owned);
                        next_full_resync = now + RESYNC_EVERY;
                    }
                    Look::Only(ids) => self.resync_only(&mut slots, &held.owned, ids),
                }
                resync_at = None;
            }

            for id in slots.start_due(now) {
                let (checker, registry, clock, defaults, permits, rechecks) = (
                    self.checker.clone(),
                    self.registry.clone(),
                    self.clock.clone(),
                    self.defaults,
                    permits.clone(),
                    rechecks.clone(),
                );
                running.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    // Deleted meanwhile: the next look takes its slot out.
                    let Some(entry) = registry.get(id) else {
                        return (id, false);
                    };
                    let service = &entry.service;
                    let started = clock.now();
                    let result = checker.check_service(service, &defaults, clock.as_ref()).await;
                    let failed = result.status == lookout_proto::service::HealthStatus::Unhealthy;
                    let asked = parents_first(
                        &Parents { registry: &registry, checker: &checker, defaults: &defaults, clock: &clock, rechecks: &rechecks },
                        service,
                        failed,
                        started,
                    )
                    .await;
                    // A failure is stored once the service waits, if it
                    // should; a pass before it stops waiting.
                    if asked && failed {
                        settle(&registry, &clock).await;
                    }
                    if let Err(e) = registry.record_health_check(&result).await {
                        tracing::warn!(service = service.id, error = ?e, "could not store a health check");
                    }
                    if asked && !failed {
                        settle(&registry, &clock).await;
                    }
                    (service.id, result.status == lookout_proto::service::HealthStatus::Unhealthy)
                });
            }

            let wake = slots
                .next_due()
                .unwrap_or(next_full_resync)
                .min(next_full_resync)
                .min(resync_at.unwrap_or(next_full_resync))
                .min(held.renew_at);

            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(wake) => {}
                // The registry changed in a way that changes the plan (here
                // or, followed, on another hub): lease new services at once.
                Ok(()) = shape.changed() => {
                    if self.leases.is_some() {
                        held.renew_at = held.renew_at.min(Instant::now() + LEASE_SOON);
                    }
                    resync_at = soon(resync_at);
                    match self.registry.take_reshaped() {
                        Reshaped::Nothing => {}
                        Reshaped::Only(ids) => ids.into_iter().for_each(|id| look.add(id)),
                        Reshaped::Everything => look = Look::Everything,
                    }
                }
                event = events.recv() => match event.as_deref() {
                    // Only changes to the registry change the plan; check
                    // results and status changes (the bulk of events) do not.
                    Ok(
                        Event::HealthChecked { .. }
                        | Event::StatusChanged(_)
                        | Event::CheckResult { .. }
                        | Event::ServerUpdated { .. }
                        | Event::ServerDeleted { .. }
                        | Event::Healing(_),
                    ) => {}
                    // A service's own change plans only it, not the whole
                    // registry (a new one is leased through the shape watch
                    // above).
                    Ok(
                        Event::ServiceCreated { id, .. }
                        | Event::ServiceUpdated { id, .. }
                        | Event::ServiceDeleted { id },
                    ) => {
                        look.add(*id);
                        resync_at = soon(resync_at);
                    }
                    Ok(Event::ScanCompleted {})
                    | Err(broadcast::error::RecvError::Lagged(_)) => {
                        resync_at = soon(resync_at);
                        look = Look::Everything;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(done) = running.join_next(), if !running.is_empty() => {
                    match done {
                        Ok((id, failed)) => {
                            // A failing check is confirmed at the retry interval.
                            let next = slots.by_id.get_mut(&id).map(|s| {
                                if std::mem::take(&mut s.again) {
                                    Duration::ZERO
                                } else if failed {
                                    s.retry
                                } else {
                                    s.interval
                                }
                            });
                            if let Some(next) = next {
                                slots.set_due(id, Instant::now() + next);
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "a health check task failed"),
                    }
                }
            }
        }
        running.abort_all();
        if let Some(leases) = &self.leases {
            if let Err(e) = self.store.release_leases(&leases.hub_id).await {
                tracing::warn!(error = ?e, "could not give back the check leases");
            }
        }
    }

    /// Renews the leases; true when the services held changed.
    async fn renew(&self, held: &mut Held) -> bool {
        let Some(settings) = &self.leases else {
            held.renew_at = far_future();
            return false;
        };
        let now = Instant::now();
        let wall = self.clock.now();
        match self
            .store
            .check_leases(&settings.hub_id, wall, settings.lease)
            .await
        {
            Ok(leases) => {
                held.renewed = Some(now);
                let mut next = now + settings.lease / 3;
                if let Some(expiry) = leases.next_foreign_expiry {
                    // Just after another hub's lease would lapse.
                    let until = (expiry - wall).to_std().unwrap_or_default();
                    next = next.min(now + until + Duration::from_millis(20));
                }
                held.renew_at = next.max(now + Duration::from_millis(100));
                let count = leases.owned.len();
                let owned = Owned::These(leases.owned);
                let changed = held.owned != owned;
                if changed {
                    tracing::debug!(
                        hub = %settings.hub_id,
                        services = count,
                        hubs = leases.hubs,
                        "check leases changed"
                    );
                }
                held.owned = owned;
                changed
            }
            Err(e) => {
                tracing::warn!(error = ?e, "could not renew the check leases");
                held.renew_at = now + Duration::from_secs(1);
                // Unrenewed for a period: other hubs may hold them now.
                let lapsed = held.renewed.is_none_or(|t| now - t >= settings.lease);
                if lapsed && matches!(&held.owned, Owned::These(o) if !o.is_empty()) {
                    held.owned = Owned::These(HashSet::new());
                    return true;
                }
                false
            }
        }
    }

    /// Brings the slots in line with the registry: new services are due now (or
    /// one interval after their last stored check), changed ones are due now,
    /// deleted ones go. A service the registry has not changed since the last
    /// look is passed over by pointer.
    fn resync(&self, slots: &mut Slots, owned: &Owned) {
        // Before the first lease renewal nothing is this hub's.
        if *owned == Owned::Unknown {
            slots.clear();
            return;
        }
        let entries = self
            .registry
            .list(&crate::registry::ListFilter::configured());
        let now = Instant::now();
        let wall_now = self.clock.now();
        let mut seen = HashSet::with_capacity(entries.len());
        for entry in entries {
            let id = entry.service.id;
            if owned.contains(id) && self.plan(slots, entry, now, wall_now) {
                seen.insert(id);
            }
        }
        slots.retain(|id| seen.contains(&id));
    }

    /// [`Self::resync`] for these services alone: what changed in one
    /// service cannot change another's plan.
    fn resync_only(&self, slots: &mut Slots, owned: &Owned, ids: HashSet<i64>) {
        let now = Instant::now();
        let wall_now = self.clock.now();
        let configured = crate::registry::ListFilter::configured();
        for id in ids {
            let planned = owned.contains(id)
                && self
                    .registry
                    .get(id)
                    .filter(|entry| configured.holds(&entry.service))
                    .is_some_and(|entry| self.plan(slots, entry, now, wall_now));
            if !planned {
                slots.remove(id);
            }
        }
    }

    /// Brings service `entry`'s slot in line with it; whether it has one
    /// (it has a URL to check).
    fn plan(
        &self,
        slots: &mut Slots,
        entry: Arc<Entry>,
        now: Instant,
        wall_now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        let id = entry.service.id;
        let service = &entry.service;
        if service.paused || service.check_target().is_none() {
            return false;
        }
        // A check of the unit's usage has no URL; its conditions are in
        // the key.
        let url = service.check_url().unwrap_or_else(|| "usage".to_owned());
        let interval = service.interval(&self.defaults);
        let retry = service
            .retry_interval_secs
            .map_or(interval, |r| Duration::from_secs(r).min(interval));
        let key = check_key(
            service,
            interval,
            retry,
            service.timeout(&self.defaults),
            &url,
        );
        match slots.by_id.get_mut(&id) {
            Some(slot) => {
                // A change that cleared its last result (a URL or probe
                // setting written, even unchanged) is checked at once.
                // (One in flight records a result anyway.)
                let cleared =
                    entry.service.last_health_check.is_none() && !slot.in_flight && slot.due > now;
                let changed = slot.key != key;
                if changed || cleared {
                    slot.key = key;
                    slot.interval = interval;
                    slot.retry = retry;
                    if slot.in_flight {
                        slot.again = true;
                    } else {
                        slots.set_due(id, now);
                    }
                }
            }
            None => {
                let since_last = service
                    .last_health_check
                    .and_then(|t| (wall_now - t).to_std().ok());
                let next = service.next_check_in(&self.defaults);
                let due = match since_last {
                    Some(elapsed) if elapsed < next => now + (next - elapsed),
                    _ => now,
                };
                slots.insert(
                    id,
                    Slot {
                        key,
                        interval,
                        retry,
                        due,
                        in_flight: false,
                        again: false,
                    },
                );
            }
        }
        true
    }
}

/// What the scheduler's next look at the registry covers.
#[derive(Debug)]
enum Look {
    Everything,
    Only(HashSet<i64>),
}

impl Default for Look {
    /// Nothing yet.
    fn default() -> Self {
        Look::Only(HashSet::new())
    }
}

impl Look {
    fn add(&mut self, id: i64) {
        match self {
            Look::Everything => {}
            Look::Only(ids) => {
                ids.insert(id);
            }
        }
    }
}

/// A time that never comes (a day is as good as never for a wake-up that
/// something else always comes before).
/// One lock per parent being checked again for its dependents, so that
/// dependents failing together wait for one check of it, not one each.
#[derive(Clone, Default)]
struct Rechecks(Arc<std::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>);

impl Rechecks {
    fn of(&self, id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut held = crate::sync::lock(&self.0);
        // Locks nobody holds are dropped now and then.
        if held.len() > 1024 {
            held.retain(|_, l| Arc::strong_count(l) > 1);
        }
        held.entry(id).or_default().clone()
    }
}

/// What checking a service's parents takes.
struct Parents<'a> {
    registry: &'a crate::registry::Registry,
    checker: &'a Checker,
    defaults: &'a CheckDefaults,
    clock: &'a SharedClock,
    rechecks: &'a Rechecks,
}

/// Before a dependent's result is stored: checks again each parent the
/// hub checks that the result contradicts or that may need confirming, and
/// settles what the dependent waits on. So a dependent whose check ran
/// before its parent's waits on it rather than alerting, and a parent due
/// only later is confirmed at its dependents' pace: the outcome does not
/// depend on which check was due first. True when a parent was asked about
/// (the caller then settles the waiting).
///
/// - The dependent failed and the parent looks fine: the parent is checked
///   unless it was checked since the dependent's check began.
/// - The dependent failed and the parent fails too: checked again (its
///   alert waits on failed checks in a row) unless it was checked within
///   the dependent's interval.
/// - The dependent passed and the parent fails: checked unless it was
///   checked since the dependent's check began (it may be back).
async fn parents_first(
    with: &Parents<'_>,
    child: &Service,
    failed: bool,
    started: chrono::DateTime<chrono::Utc>,
) -> bool {
    use lookout_proto::service::RegistryStatus;
    use lookout_proto::status::Status;
    let graph = with.registry.graph();
    let mut checked = false;
    let pace = chrono::Duration::from_std(child.interval(with.defaults)).unwrap_or_default();
    for &p in graph.parents(child.id) {
        // Since when an answer about the parent is fresh enough; `None`:
        // nothing to ask.
        let fresh_since = |s: &Service| {
            let watched = s.status == RegistryStatus::Configured
                && !s.paused
                && s.is_checked()
                && s.waiting_on.is_none();
            match (watched, failed, s.state == Status::Failure) {
                (false, _, _) | (true, false, false) => None,
                (true, true, true) => Some(started - pace),
                (true, _, _) => Some(started),
            }
        };
        if with
            .registry
            .get(p)
            .and_then(|e| fresh_since(&e.service))
            .is_none()
        {
            continue;
        }
        let lock = with.rechecks.of(p);
        let _turn = lock.lock().await;
        let Some(parent) = with.registry.get(p) else {
            continue;
        };
        let Some(since) = fresh_since(&parent.service) else {
            continue;
        };
        checked = true;
        if parent
            .service
            .last_health_check
            .is_some_and(|at| at >= since)
        {
            continue;
        }
        let result = with
            .checker
            .check_service(&parent.service, with.defaults, with.clock.as_ref())
            .await;
        if let Err(e) = with.registry.record_health_check(&result).await {
            tracing::warn!(service = p, error = ?e, "could not store a parent's health check");
        }
    }
    checked
}

async fn settle(registry: &crate::registry::Registry, clock: &SharedClock) {
    if let Err(e) = registry.settle_waiting(clock.now()).await {
        tracing::warn!(error = ?e, "could not record what services wait on");
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// A look at the registry [`PLAN_SOON`] from now, or sooner if one is due.
fn soon(at: Option<Instant>) -> Option<Instant> {
    let soon = Instant::now() + PLAN_SOON;
    Some(at.map_or(soon, |at| at.min(soon)))
}
