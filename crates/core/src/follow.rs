//! Following the host's systemd live: the manager's signals bring a unit's
//! state, main PID and restarts into the registry within moments of the
//! change, with no polling. Once a scan has filled the registry, only the
//! units its services stand for are followed (the bus passes on nothing
//! else). A full scan runs after every (re)connect, when a job ends for a
//! unit the registry does not know, when unit files are reloaded, and every
//! `--scan-every` as a safety net (ports and timers come from scans).

use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use lookout_config::FollowSettings;
use lookout_proto::status::STABLE_AFTER_SECS;
use lookout_systemd::follow::{Signal, UnitDelta};
use lookout_systemd::{Systemd, UnitName};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::CheckDefaults;
use crate::discovery::{unit_state, Discovery, DiscoveryError, Scans};
use crate::registry::Registry;
use crate::store::{Store, UnitState};

/// Signals arriving this close together are handled together: a unit's
/// one change comes as several (its Unit and Service properties, its job).
const COALESCE: Duration = Duration::from_millis(40);

/// Scans asked for by signals (units loaded, removed, reloaded) run at most
/// this often.
const SIGNALLED_SCAN_EVERY: Duration = Duration::from_secs(5);

/// The longest wait before connecting again after the connection broke.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The task that follows the hub's host's systemd manager.
pub struct Follower {
    pub discovery: Arc<Discovery>,
    pub registry: Arc<Registry>,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub checks: CheckDefaults,
    pub settings: FollowSettings,
}

/// What the signals since the last look asked for.
#[derive(Default)]
struct Pending {
    /// Units whose state changed, with what the signals said of it.
    changed: BTreeMap<String, UnitDelta>,
    /// Units a job ended for: a scan if they are new.
    jobs: std::collections::BTreeSet<String>,
    /// The unit files were reloaded.
    scan: bool,
    /// The signal stream ended: the connection is gone.
    closed: bool,
}

#[derive(Default)]
struct Inbox {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Inbox {
    fn take(&self) -> Pending {
        std::mem::take(&mut *lock(&self.pending))
    }

    fn with(&self, f: impl FnOnce(&mut Pending)) {
        f(&mut lock(&self.pending));
        self.wake.notify_one();
    }
}

impl Follower {
    /// Follows until `stop`; connects again, with a growing pause, whenever
    /// the connection breaks. Without systemd (`--systemd none`) it waits.
    pub async fn run(self, stop: CancellationToken) {
        if self.discovery.scope().is_none() {
            stop.cancelled().await;
            return;
        }
        let mut backoff = Duration::from_secs(1);
        // Whether systemd was ever reached: a machine without it (a
        // container, a NAS) is told so once, in a sentence.
        let mut reached = false;
        let mut told = false;
        loop {
            let started = Instant::now();
            let result = self.session(&stop, &mut reached).await;
            match result {
                Ok(()) => return,
                Err(e) if !reached && !told => {
                    told = true;
                    tracing::warn!(
                        error = %e,
                        "systemd cannot be reached on this machine: lookout checks what you \
                         register and what agents report, without this host's units. \
                         Start it with --systemd none to say so (its systemd pages then \
                         hide), or --systemd user for your own user's services"
                    );
                }
                Err(e) if !reached => {
                    tracing::debug!(error = %e, "systemd still cannot be reached");
                }
                Err(e) => tracing::warn!(error = %e, "following systemd stopped; connecting again"),
            }
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_secs(1);
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn scans(&self) -> Scans<'_> {
        Scans {
            discovery: &self.discovery,
            registry: &self.registry,
            store: self.store.as_ref(),
            clock: self.clock.as_ref(),
            checks: self.checks,
        }
    }

    /// One connection's worth of following: `Ok` when stopped, an error
    /// when the connection broke.
    async fn session(
        &self,
        stop: &CancellationToken,
        reached: &mut bool,
    ) -> Result<(), DiscoveryError> {
        let systemd = self.discovery.systemd().await?;
        *reached = true;
        let (mut signals, mut following) = self.discovery.checked(systemd.signals().await).await?;
        // Drained beside the work below: zbus holds every other message on
        // the connection (our replies too) while the queue is full.
        let inbox = Arc::new(Inbox::default());
        let drain = tokio::spawn({
            let inbox = inbox.clone();
            async move {
                while let Some(signal) = signals.next().await {
                    inbox.with(|p| match signal {
                        Signal::Changed(unit, delta) => {
                            p.changed.entry(unit).or_default().merge(delta);
                        }
                        Signal::JobDone(unit) => {
                            if unit.ends_with(".service") || unit.ends_with(".timer") {
                                p.jobs.insert(unit);
                            }
                        }
                        Signal::Reloaded => {
                            tracing::debug!("unit files reloaded: a scan follows");
                            p.scan = true
                        }
                    });
                }
                inbox.with(|p| p.closed = true);
            }
        });
        let _stop_draining = AbortOnDrop(drain);

        // Catch up with what happened while nobody followed.
        self.scan(&mut following).await?;
        self.refresh_unsettled(&systemd).await?;

        let mut next_scan = self.settings.scan_every.map(|every| Instant::now() + every);
        let mut last_scan = Instant::now();
        // Crash-looping units that are up again: looked at once they have
        // been up long enough to count as stable.
        let mut rechecks: BTreeMap<Instant, Vec<i64>> = BTreeMap::new();
        loop {
            let recheck_at = rechecks.keys().next().copied();
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = inbox.wake.notified() => {
                    tokio::time::sleep(COALESCE).await;
                }
                () = sleep_until(next_scan) => {
                    self.scan(&mut following).await?;
                    last_scan = Instant::now();
                    next_scan = self.settings.scan_every.map(|every| Instant::now() + every);
                    continue;
                }
                () = sleep_until(recheck_at) => {
                    let due: Vec<Instant> = rechecks.range(..=Instant::now()).map(|(t, _)| *t).collect();
                    for t in due {
                        for id in rechecks.remove(&t).unwrap_or_default() {
                            // As for a state: the database will be back.
                            if let Err(e) = self.registry.reconcile(id, self.clock.now()).await {
                                tracing::warn!(error = %e, id, "cannot re-judge a unit after its crash loop");
                            }
                        }
                    }
                    continue;
                }
            }
            let pending = inbox.take();
            for (unit, delta) in &pending.changed {
                self.refresh(&systemd, unit, Some(delta), &mut rechecks)
                    .await?;
            }
            let scan = pending.scan || self.needs_scan(&pending);
            if scan {
                if last_scan.elapsed() < SIGNALLED_SCAN_EVERY {
                    // Soon, not now: a burst of new units costs one scan.
                    let soon = last_scan + SIGNALLED_SCAN_EVERY;
                    next_scan = Some(next_scan.map_or(soon, |t| t.min(soon)));
                } else {
                    self.scan(&mut following).await?;
                    last_scan = Instant::now();
                }
            }
            if pending.closed {
                self.discovery.forget_connection().await;
                return Err(DiscoveryError::Systemd(
                    lookout_systemd::Error::Unreachable {
                        scope: systemd.scope().as_str(),
                        cause: "the bus connection closed".into(),
                    },
                ));
            }
        }
    }

    /// Whether a job's end shows a unit the registry does not know (a
    /// transient unit, a template's new instance), or a timer ran.
    fn needs_scan(&self, pending: &Pending) -> bool {
        let news = pending
            .jobs
            .iter()
            .any(|unit| unit.ends_with(".timer") || self.registry.by_unit(unit).is_empty());
        if news {
            tracing::debug!("a job ended for a unit the registry does not know: a scan follows");
        }
        news
    }

    /// Scans, then follows exactly the units the registry now holds.
    async fn scan(
        &self,
        following: &mut lookout_systemd::follow::Following,
    ) -> Result<(), DiscoveryError> {
        match self.scans().scan().await {
            Ok(_) => {}
            Err(DiscoveryError::Store(e)) => {
                // The database will be back; following goes on.
                tracing::warn!(error = %e, "cannot record a systemd scan");
            }
            Err(e) => return Err(e),
        }
        self.discovery
            .checked(following.only(&self.registry.units()).await)
            .await
    }

    /// Reads again the units a scan cannot tell everything about (failed,
    /// starting, restarting: how the last run ended, how often it restarted).
    async fn refresh_unsettled(&self, systemd: &Systemd) -> Result<(), DiscoveryError> {
        let mut units: Vec<String> = self
            .registry
            .list(&crate::registry::ListFilter::default())
            .iter()
            .map(|e| &e.service)
            .filter(|s| s.server_id.is_none())
            .filter(|s| {
                !matches!(
                    s.systemd_state.as_deref(),
                    None | Some("active" | "inactive" | "removed")
                )
            })
            .filter_map(|s| s.unit.clone())
            .collect();
        units.sort();
        units.dedup();
        let mut ignored = BTreeMap::new();
        for unit in units {
            self.refresh(systemd, &unit, None, &mut ignored).await?;
        }
        Ok(())
    }

    /// Records a unit's new state, if the registry has the unit: what the
    /// signals said over what the registry holds, or, when they left a value
    /// out (or the registry never had the unit's full state), read afresh.
    async fn refresh(
        &self,
        systemd: &Systemd,
        unit: &str,
        delta: Option<&UnitDelta>,
        rechecks: &mut BTreeMap<Instant, Vec<i64>>,
    ) -> Result<(), DiscoveryError> {
        let known = self.registry.by_unit(unit);
        let Some(first) = known.first() else {
            return Ok(());
        };
        let held = first.service.unit_state();
        // A service's restart count and how its last run ended matter once
        // it fails or restarts; a unit a scan found has neither until read.
        let complete = |delta: &UnitDelta| {
            let state = delta.active_state.as_deref().unwrap_or(&held.active_state);
            let sub = delta.sub_state.as_deref().unwrap_or(&held.sub_state);
            first.service.restarts.is_some()
                || !unit.ends_with(".service")
                || (matches!(state, "active" | "inactive" | "deactivating")
                    && sub != "auto-restart")
        };
        let state = match delta {
            Some(delta) if !delta.incomplete && complete(delta) => with_delta(&held, delta),
            _ => {
                let Ok(name) = UnitName::parse(unit) else {
                    return Ok(());
                };
                match self.discovery.checked(systemd.status(&name).await).await {
                    Ok(status) => unit_state(&status),
                    // Gone between the signal and the read: the next scan says so.
                    Err(DiscoveryError::Systemd(lookout_systemd::Error::NoSuchUnit(_))) => {
                        return Ok(())
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if state == held {
            return Ok(());
        }
        let now = self.clock.now();
        if let Err(e) = self.registry.set_unit_state(unit, &state, now).await {
            tracing::warn!(error = %e, unit, "cannot record a unit's state");
            return Ok(());
        }
        // Up again after a crash loop: the loop is over once it stays up.
        if state.active_state == "active" && state.restarts.unwrap_or(0) > 0 {
            if let Some(since) = state.active_since {
                let stable_at = since + chrono::Duration::seconds(STABLE_AFTER_SECS);
                if let Ok(wait) = (stable_at - now).to_std() {
                    rechecks
                        .entry(Instant::now() + wait + Duration::from_millis(100))
                        .or_default()
                        .extend(known.iter().map(|e| e.service.id));
                }
            }
        }
        Ok(())
    }
}

/// `held` with what a signal changed.
fn with_delta(held: &UnitState, delta: &UnitDelta) -> UnitState {
    UnitState {
        active_state: delta
            .active_state
            .clone()
            .unwrap_or_else(|| held.active_state.clone()),
        sub_state: delta
            .sub_state
            .clone()
            .unwrap_or_else(|| held.sub_state.clone()),
        main_pid: delta
            .main_pid
            .map_or(held.main_pid, |pid| (pid != 0).then_some(pid)),
        restarts: delta.restarts.or(held.restarts),
        result: delta.result.clone().or_else(|| held.result.clone()),
        exit_status: delta.exit_status.or(held.exit_status),
        active_since: delta
            .active_enter_usec
            .map_or(held.active_since, lookout_systemd::usec_time),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
