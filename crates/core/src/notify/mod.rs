//! Notifications: deciding when to tell someone, and telling them.
//!
//! Rules, per service: an alert once the service is `FAILURE` and its last
//! `notify_after` checks (default 3) failed — services without an HTTP check
//! (systemd, heartbeats, pushes) are confirmed by their source and alert at
//! once; a recovery once it leaves `FAILURE`, only if an alert went out; a
//! reminder every `reminder` while it stays failing. A muted service, or one
//! inside its maintenance window, sends nothing (the alert goes out if it is
//! still failing when the window ends).
//!
//! Delivery: one queue and one task per channel, so a slow or broken channel
//! never holds back checks or other channels; each notice is retried with
//! exponential backoff, and every outcome is logged (`deliveries`) and kept on
//! the channel (`last_error`).

mod channel;
mod error;
pub mod webpush;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lookout_proto::service::HealthStatus;
use lookout_proto::status::Status;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use channel::{keep_secrets, masked, send, validate_config, ChannelKind, Notice, NoticeKind};
pub use error::{DeliveryError, Receiver};

use crate::clock::SharedClock;
use crate::events::{Event, EventBus};
use crate::store::{Channel, Service, Store, DEFAULT_NOTIFY_AFTER};

pub use lookout_config::NotifySettings;

#[derive(Debug, Default)]
struct Track {
    failed_checks: u64,
    alerted: bool,
    /// An alert was held back by mute or maintenance; look again each tick.
    held: bool,
    last_sent: Option<DateTime<Utc>>,
    /// Since when it has been failing, as far as the last alert said.
    down_since: Option<DateTime<Utc>>,
    /// The last status it had other than FAILURE, as the notifier saw it.
    was: Option<Status>,
    /// Self-healing gave up on it (why): its alert goes out.
    heal_gave_up: Option<String>,
}

pub struct Notifier {
    pub store: Arc<dyn Store>,
    /// Where the notifier reads services: memory, not SQL.
    pub registry: Arc<crate::registry::Registry>,
    /// Checks and status changes: this hub's bus, or, with several hubs on
    /// one database, every hub's (from the shared event log).
    pub events: EventBus,
    pub clock: SharedClock,
    pub settings: NotifySettings,
    pub client: reqwest::Client,
    /// This hub's name; only the holder of the `notifier` job lease sends.
    /// The others follow the same events and keep the same state, so the
    /// one that takes over knows what was alerted.
    pub hub_id: String,
    /// How long the `notifier` lease lasts unrenewed; `None` for a hub alone
    /// with its database, which always sends.
    pub lease: Option<Duration>,
    /// Deliveries are counted here.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A client for notification requests: bounded in time, no redirects to elsewhere.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("lookout/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

impl Notifier {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut rx = self.events.subscribe();
        let mut tracks: HashMap<i64, Track> = HashMap::new();
        let mut queues: HashMap<i64, mpsc::Sender<Notice>> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut job = crate::store::leases::JobLease::of("notifier", &self.hub_id, self.lease);
        loop {
            let (sender, taken) = job.check(self.store.as_ref(), self.clock.now()).await;
            if taken {
                self.recall(&mut tracks).await;
            }
            // A status change names the status the service must show; a
            // registry that follows another hub may not have it yet.
            let mut expect: Option<(i64, lookout_proto::status::Status)> = None;
            let touched: Vec<i64> = tokio::select! {
                () = shutdown.cancelled() => break,
                event = rx.recv() => match event.as_deref() {
                    Ok(Event::HealthChecked { id, status, .. }) => {
                        let track = tracks.entry(*id).or_default();
                        // While it waits on a service it depends on, its own
                        // failures count for nothing: once that one is back,
                        // it takes as many failed checks as ever to alert.
                        let waiting = self.registry.waiting_root(*id).is_some();
                        track.failed_checks = if *status == HealthStatus::Unhealthy && !waiting { track.failed_checks + 1 } else { 0 };
                        vec![*id]
                    }
                    Ok(Event::Healing(attempt)) => {
                        if attempt.outcome != lookout_proto::depends::HealOutcome::Restarted {
                            tracks.entry(attempt.service_id).or_default().heal_gave_up = Some(attempt.message.clone());
                        }
                        vec![attempt.service_id]
                    }
                    Ok(Event::StatusChanged(change)) => {
                        expect = Some((change.service_id, change.new));
                        vec![change.service_id]
                    }
                    Ok(Event::ServiceDeleted { id }) => {
                        tracks.remove(id);
                        vec![]
                    }
                    Ok(_) => vec![],
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the notifier fell behind; re-evaluating every tracked service");
                        tracks.keys().copied().collect()
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => tracks.iter().filter(|(_, t)| t.alerted || t.held).map(|(id, _)| *id).collect(),
            };
            // Only the sender decides; the others count failed checks, and
            // learn what was told from the delivery log when they take over.
            if !sender {
                continue;
            }
            for id in touched {
                let held = self.registry.get(id).map(|e| e.service.clone());
                let behind = match (&held, expect) {
                    (Some(service), Some((of, status))) => of == id && service.state != status,
                    (None, _) => true,
                    _ => false,
                };
                let service = if behind {
                    self.store.get_service(id).await
                } else {
                    Ok(held)
                };
                match service {
                    Ok(Some(service)) => {
                        let track = tracks.entry(id).or_default();
                        if let Some(notice) = self.decide(&service, track) {
                            self.dispatch(&mut queues, &shutdown, &service.channels, notice)
                                .await;
                        }
                    }
                    Ok(None) => {
                        tracks.remove(&id);
                    }
                    Err(e) => tracing::warn!(error = ?e, "notifier could not read a service"),
                }
            }
        }
    }

    /// On becoming the sender (at start, or taking over from a hub that
    /// stopped): what each service's last notice said, from the delivery
    /// log, so a recovery follows an alert another hub (or this one before
    /// a restart) sent, and an alert is not sent again.
    async fn recall(&self, tracks: &mut HashMap<i64, Track>) {
        let deliveries = match self.store.list_deliveries(10_000).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = ?e, "notifier could not read the delivery log");
                return;
            }
        };
        let mut seen = std::collections::HashSet::new();
        for d in deliveries {
            let Some(id) = d.service_id.filter(|_| d.kind != "test") else {
                continue;
            };
            // Newest first: the first one of a service is its last notice.
            if seen.insert(id) {
                let track = tracks.entry(id).or_default();
                track.alerted = d.kind != "recovery";
                track.last_sent = Some(d.at);
                if track.alerted {
                    track.down_since = Some(d.at);
                }
            }
        }
    }

    /// Applies the rules to one service; the notice to send, if any.
    fn decide(&self, service: &Service, track: &mut Track) -> Option<Notice> {
        // A unit a scan found but nobody registered: it shows on the scan
        // page and, failing, on the dashboard, and alerts once watched.
        if service.status != lookout_proto::service::RegistryStatus::Configured {
            track.held = false;
            return None;
        }
        let now = self.clock.now();
        // Waiting on a service it depends on: that one's alert says it all.
        if service.waiting_on.is_some() || self.registry.waiting_root(service.id).is_some() {
            track.held = false;
            return None;
        }
        let before = track.was;
        if service.state != Status::Failure {
            track.was = Some(service.state);
            track.heal_gave_up = None;
        }
        // Self-healing tries first: the alert waits until it gives up.
        if service.heal.is_some()
            && service.state == Status::Failure
            && !track.alerted
            && track.heal_gave_up.is_none()
        {
            track.held = false;
            return None;
        }
        let quiet = service.held_back(now).is_some();
        let has_check = service.is_checked();
        let failing = service.state == Status::Failure;
        let confirmed = !has_check
            || track.failed_checks >= service.notify_after.unwrap_or(DEFAULT_NOTIFY_AFTER);
        let kind = if failing && !track.alerted && confirmed {
            NoticeKind::Alert
        } else if !failing && track.alerted {
            NoticeKind::Recovery
        } else if failing
            && track.alerted
            && self
                .settings
                .reminder
                .zip(track.last_sent)
                .is_some_and(|(every, last)| (now - last).to_std().unwrap_or_default() >= every)
        {
            NoticeKind::Reminder
        } else {
            track.held = false;
            return None;
        };
        if quiet {
            track.held = kind == NoticeKind::Alert;
            if kind == NoticeKind::Recovery {
                track.alerted = false; // nothing to recover from as far as anyone was told
            }
            return None;
        }
        track.held = false;
        track.alerted = kind != NoticeKind::Recovery;
        track.last_sent = Some(now);
        let mut notice = notice_for(service, kind, now);
        notice.link = self
            .settings
            .public_url
            .as_ref()
            .map(|base| format!("{base}/services/{}", service.id));
        match kind {
            NoticeKind::Alert => {
                track.down_since = Some(service.state_since.unwrap_or(now));
                notice.previous = before.map(|b| b.as_str().to_owned());
                notice.affected = self.affected(service.id);
                if let Some(why) = &track.heal_gave_up {
                    notice.reason = format!("{}; self-healing {why}", notice.reason);
                }
            }
            NoticeKind::Recovery => {
                notice.previous = Some(Status::Failure.as_str().to_owned());
                notice.down_for_secs = track.down_since.take().map(|t| (now - t).num_seconds());
            }
            NoticeKind::Reminder => {
                notice.down_for_secs = track.down_since.map(|t| (now - t).num_seconds());
            }
            NoticeKind::Test => {}
        }
        tracing::info!(
            service = %notice.service,
            kind = kind.as_str(),
            status = %notice.status,
            "notifying: {}",
            notice.title()
        );
        Some(notice)
    }

    /// The names of the services that depend on `id`, directly or further
    /// down: what its failure takes with it.
    fn affected(&self, id: i64) -> Vec<String> {
        let mut names: Vec<String> = self
            .registry
            .graph()
            .dependents(id)
            .into_iter()
            .filter_map(|d| self.registry.get(d).map(|e| e.service.name.clone()))
            .collect();
        names.sort();
        names
    }

    async fn dispatch(
        &self,
        queues: &mut HashMap<i64, mpsc::Sender<Notice>>,
        shutdown: &CancellationToken,
        only: &[i64],
        notice: Notice,
    ) {
        let channels = match self.store.list_channels().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = ?e, "notifier could not read its channels");
                return;
            }
        };
        // A service that names its channels notifies those alone; if every
        // channel it names was deleted since, it notifies them all rather
        // than nobody.
        let named = !only.is_empty() && channels.iter().any(|c| only.contains(&c.id));
        if !only.is_empty() && !named {
            tracing::warn!(service = %notice.service, "the channels it names are gone; notifying every channel");
        }
        for channel in channels
            .into_iter()
            .filter(|c| c.enabled && (!named || only.contains(&c.id)))
        {
            let queue = queues.entry(channel.id).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(1024);
                tokio::spawn(deliver_loop(
                    channel.id,
                    rx,
                    Sender {
                        store: self.store.clone(),
                        clock: self.clock.clone(),
                        client: self.client.clone(),
                        settings: self.settings.clone(),
                        metrics: self.metrics.clone(),
                    },
                    shutdown.clone(),
                ));
                tx
            });
            if queue.try_send(notice.clone()).is_err() {
                tracing::warn!(
                    channel = channel.id,
                    "a notification queue is full; dropping a notice"
                );
            }
        }
    }
}

pub fn notice_for(service: &Service, kind: NoticeKind, now: DateTime<Utc>) -> Notice {
    Notice {
        kind,
        service_id: Some(service.id),
        service: service.name.clone(),
        url: service.base_url.clone(),
        status: service.state.as_str().to_owned(),
        previous: None,
        reason: service.state_reason.clone().unwrap_or_default(),
        at: now,
        down_for_secs: None,
        link: None,
        affected: Vec::new(),
    }
}

/// What a channel's delivery task works with.
struct Sender {
    store: Arc<dyn Store>,
    clock: SharedClock,
    client: reqwest::Client,
    settings: NotifySettings,
    metrics: Arc<crate::metrics::Metrics>,
}

/// Delivers one channel's notices in order, retrying each with backoff.
async fn deliver_loop(
    channel_id: i64,
    mut rx: mpsc::Receiver<Notice>,
    sender: Sender,
    shutdown: CancellationToken,
) {
    let Sender {
        store,
        clock,
        client,
        settings,
        metrics,
    } = sender;
    loop {
        let notice = tokio::select! {
            () = shutdown.cancelled() => return,
            n = rx.recv() => match n { Some(n) => n, None => return },
        };
        // Read the channel for every notice: it may have been edited or removed.
        let channel = match store.get_channel(channel_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = ?e, "cannot read a channel");
                continue;
            }
        };
        let mut delay = settings.retry_base;
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match deliver(&client, store.as_ref(), &channel, &notice).await {
                Ok(()) => {
                    tracing::info!(
                        channel = %channel.name,
                        service = %notice.service,
                        kind = notice.kind.as_str(),
                        "notification sent"
                    );
                    break Ok(());
                }
                Err(e) if attempt >= settings.attempts => break Err(e),
                Err(_) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay *= 2;
                }
            }
        };
        if let Err(e) = &outcome {
            tracing::warn!(channel = %channel.name, error = %e, attempts = attempt, "notification failed");
        }
        metrics.notification(channel.kind.as_str(), outcome.is_ok());
        let error = outcome.as_ref().err().map(ToString::to_string);
        if let Err(e) = store
            .record_delivery(
                channel_id,
                notice.service_id,
                notice.kind.as_str(),
                outcome.is_ok(),
                attempt,
                error.as_deref(),
                clock.now(),
            )
            .await
        {
            tracing::warn!(error = ?e, "cannot log a delivery");
        }
    }
}

pub async fn deliver(
    client: &reqwest::Client,
    store: &dyn crate::store::Store,
    channel: &Channel,
    notice: &Notice,
) -> Result<(), DeliveryError> {
    send(client, store, channel.kind, &channel.config, notice).await
}
