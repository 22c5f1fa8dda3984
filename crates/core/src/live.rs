//! Live updates: every [`Event`] gets a durable id in the event log, then goes
//! to live clients (SSE and WebSocket), which can resume after a disconnect
//! from the id they saw last without losing anything.
//!
//! One recorder task turns bus events into [`LiveEvent`]s (in batches, one
//! transaction each); a feed per client replays the log after its last id and
//! then follows the live channel, going back to the log if it ever falls behind.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::events::{Event, EventBus, WireData};
use crate::store::Store;
use std::sync::Arc;

pub use crate::events::LiveEvent;

/// Most events written in one transaction.
const BATCH: usize = 512;

/// How long the recorder lets events gather after the first of a batch.
const GATHER: Duration = Duration::from_millis(1);

/// Records bus events in the event log and forwards them, with their ids, to
/// `live` (`None` when the database is shared: the [tailer](run_tailer) then
/// feeds `live` from the log, this hub's events and the others' alike, and
/// the registry's follower applies them).
///
/// Tells the bus how far it has logged (a write's answer names its event's
/// id) and, on a database of its own, the registry how far memory has
/// applied the log. Runs until `shutdown`.
pub async fn run_recorder(
    store: Arc<dyn Store>,
    bus: EventBus,
    live: Option<broadcast::Sender<LiveEvent>>,
    registry: Arc<crate::registry::Registry>,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    let mut rx = bus.subscribe();
    // Events taken from the bus so far (missed ones included).
    let mut taken: u64 = 0;
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            event = rx.recv() => event,
        };
        let mut batch = Vec::new();
        let mut push = |event: Result<Arc<Event>, broadcast::error::RecvError>| match event {
            Ok(event) => {
                batch.push(event);
                true
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::error!(
                    missed = n,
                    "the event recorder fell behind; live clients miss {n} events"
                );
                taken += n;
                true
            }
            Err(broadcast::error::RecvError::Closed) => false,
        };
        if !push(first) {
            break;
        }
        // The events of one change come within a moment of each other (a
        // registration, its first check, the status that check gives): one
        // append for them all takes the writer once instead of once each.
        tokio::time::sleep(GATHER).await;
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "the event recorder fell behind");
                    taken += n;
                }
                Err(_) => break,
            }
        }
        taken += batch.len() as u64;
        if batch.is_empty() {
            continue;
        }
        let now = clock.now();
        let wired: Vec<(&'static str, WireData)> = batch.iter().map(|e| e.wire()).collect();
        let rows: Vec<(DateTime<Utc>, &'static str, String)> = wired
            .iter()
            .map(|(kind, data)| (now, *kind, data.to_string()))
            .collect();
        match store.append_events(&rows).await {
            Ok(ids) => {
                let newest = ids.iter().copied().max().unwrap_or_default();
                if live.is_some() {
                    // Memory had each change before it was published.
                    registry.applied_up_to(newest);
                } else {
                    registry.mark_own(&ids);
                }
                bus.logged_up_to(taken, newest);
                if let Some(live) = &live {
                    for (id, (kind, data)) in ids.into_iter().zip(wired) {
                        let _ = live.send(LiveEvent { id, kind, data });
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = ?e, "could not record events");
                // Nobody waits for these any longer: they have no id.
                bus.logged_up_to(taken, 0);
            }
        }
    }
}

/// The PostgreSQL channel on which every append to the event log is announced.
pub const EVENTS_CHANNEL: &str = "lookout_events";

/// With several hubs on one PostgreSQL database: follows the event log and
/// passes every event, whichever hub wrote it, to `live` in id order, and to
/// `seen` (the hub's reaction to other hubs' changes, e.g. a revocation).
/// Woken by `NOTIFY` on [`EVENTS_CHANNEL`], and once a second regardless,
/// so a lost notification only delays. Runs until `shutdown`.
pub async fn run_tailer(
    url: String,
    store: Arc<dyn Store>,
    live: broadcast::Sender<LiveEvent>,
    seen: impl Fn(&LiveEvent) + Send + 'static,
    shutdown: CancellationToken,
) {
    let mut last = loop {
        match store.last_event_id().await {
            Ok(id) => break id,
            Err(e) => {
                tracing::warn!(error = ?e, "cannot read the event log");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    tracing::debug!(after = last, "following the shared event log");
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    loop {
        if listener.is_none() {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut l) => match l.listen(EVENTS_CHANNEL).await {
                    Ok(()) => listener = Some(l),
                    Err(e) => tracing::warn!(error = %e, "cannot listen for other hubs' events"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot listen for other hubs' events"),
            }
        }
        // Catch up with the log.
        loop {
            let page = match store.events_after(last, 1000).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = ?e, "cannot read the event log");
                    break;
                }
            };
            let full = page.len() == 1000;
            if !page.is_empty() {
                tracing::trace!(events = page.len(), "events from the shared log");
            }
            for (id, kind, data) in page {
                last = id;
                let event = LiveEvent {
                    id,
                    kind: kind_name(&kind),
                    data: WireData::from(data),
                };
                seen(&event);
                let _ = live.send(event);
            }
            if !full {
                break;
            }
        }
        let wait = async {
            match listener.as_mut() {
                Some(l) => match tokio::time::timeout(Duration::from_secs(1), l.try_recv()).await {
                    // Several appends may be announced at once: one read does.
                    Ok(Ok(Some(_))) => while l.next_buffered().is_some() {},
                    Ok(Ok(None)) | Err(_) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "lost the other hubs' events; reconnecting");
                        return false;
                    }
                },
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
            true
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            ok = wait => if !ok { listener = None },
        }
    }
}

/// With several hubs: a bus carrying every hub's events, read back from the
/// live channel the tailer fills from the shared log (for the notifier, which
/// must see them all, the same events a lone hub's bus carries).
pub fn bus_from_log(live: &broadcast::Sender<LiveEvent>, shutdown: CancellationToken) -> EventBus {
    let bus = EventBus::new(16 * 1024);
    let out = bus.clone();
    let mut rx = live.subscribe();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = rx.recv() => event,
            };
            let event = match event {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the notifier's feed fell behind");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let parsed = Event::from_wire(event.kind, &event.data.text());
            if let Some(e) = parsed {
                out.publish(e);
            }
        }
    });
    bus
}

/// A client's feed: logged events after `after` (when resuming), then live
/// ones, in id order, without gaps or repeats. Ends when the client goes.
pub fn feed(
    store: Arc<dyn Store>,
    live: &broadcast::Sender<LiveEvent>,
    after: Option<i64>,
) -> mpsc::Receiver<LiveEvent> {
    let (tx, rx) = mpsc::channel(256);
    let mut live_rx = live.subscribe();
    tokio::spawn(async move {
        let mut last = after;
        if let Some(after) = after {
            match replay(store.as_ref(), after, &tx).await {
                Some(id) => last = Some(id),
                None => return,
            }
        }
        loop {
            match live_rx.recv().await {
                Ok(event) => {
                    if last.is_some_and(|l| event.id <= l) {
                        continue;
                    }
                    last = Some(event.id);
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the live channel: the log has everything.
                    let from = last.unwrap_or(0);
                    match replay(store.as_ref(), from, &tx).await {
                        Some(id) => last = Some(id),
                        None => return,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    rx
}

/// Sends logged events after `after`; returns the last id sent (or `after`),
/// `None` when the client is gone or the log cannot be read.
async fn replay(store: &dyn Store, mut after: i64, tx: &mpsc::Sender<LiveEvent>) -> Option<i64> {
    loop {
        let page = match store.events_after(after, 1000).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = ?e, "cannot replay events");
                return None;
            }
        };
        if page.is_empty() {
            return Some(after);
        }
        for (id, kind, data) in page {
            after = id;
            let event = LiveEvent {
                id,
                kind: kind_name(&kind),
                data: WireData::from(data),
            };
            tx.send(event).await.ok()?;
        }
    }
}

/// Every wire type [`Event::kind`] gives, so a logged kind reads back as itself.
const KINDS: &[&str] = &[
    "status",
    "check",
    "result",
    "service.created",
    "service.updated",
    "service.deleted",
    "server.updated",
    "server.deleted",
    "scan",
    "heal",
];

fn kind_name(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("unknown")
}

/// Rolls check results up into hourly buckets, then prunes health results
/// older than `retention` and logged events older than a day, every ten
/// minutes, so the database does not grow without bound.
/// Each round also runs `also` (the web layer forgets idle rate-limit keys).
pub async fn run_pruner(
    store: Arc<dyn Store>,
    clock: SharedClock,
    retention: Duration,
    also: impl Fn() + Send + 'static,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = clock.now();
        let kept = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
        let checks_before = now - kept;
        // Complete hours are rolled up before their raw results can go.
        if let Err(e) = crate::history::roll_up_hours(store.as_ref(), now, kept).await {
            tracing::warn!(error = ?e, "could not roll up check results");
        }
        let events_before = now - chrono::Duration::days(1);
        // Status changes are small and make the 30-day uptime: keep 400 days.
        let changes_before = now - chrono::Duration::days(400);
        match store
            .prune(checks_before, events_before, changes_before)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned old history"),
            Err(e) => tracing::warn!(error = ?e, "could not prune old history"),
        }
        // Revoked and expired credentials go after a day; spent refresh
        // tokens stay until they expire, so a replay is always recognised.
        if let Err(e) = store
            .prune_credentials(now - chrono::Duration::days(1))
            .await
        {
            tracing::warn!(error = ?e, "could not prune old credentials");
        }
        also();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::store::{HealthCheck, SqlStore};
    use lookout_proto::service::{parse_new_service, HealthStatus};

    fn outcome() -> Box<crate::events::CheckOutcome> {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Box::new(crate::events::CheckOutcome {
            last_health_check: at,
            last_response_code: Some(503),
            last_latency_ms: Some(12),
            last_error: Some("HTTP 503".into()),
            warning: None,
            cert_expires_at: None,
            state: lookout_proto::status::Status::Failure,
            state_reason: Some("HTTP 503".into()),
            state_since: Some(at),
        })
    }

    #[test]
    fn events_stay_small_in_the_buses_rings() {
        // The bus keeps its last 16,384 events and the live channel 4,096,
        // allocated whole at start: a few bytes more per event are a
        // megabyte more for every hub, idle or not. Large payloads are boxed.
        assert!(
            std::mem::size_of::<Event>() <= 40,
            "{}",
            std::mem::size_of::<Event>()
        );
        assert!(std::mem::size_of::<LiveEvent>() <= 40);
    }

    /// A client replaying the log sees every kind as it was sent live (the
    /// other hubs on a shared database see only replayed events).
    #[test]
    fn every_event_kind_reads_back_from_the_log() {
        let result = lookout_proto::service::CheckResultView {
            service_id: 1,
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            ordinal: 0,
            status: lookout_proto::check::LineStatus::Ok,
            message: String::new(),
            received_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let web = serde_json::json!({"id": 1, "name": "web", "port": 80, "tags": ["a"]});
        let carried = || {
            Some(Box::new(crate::events::ServiceJson::new(
                serde_json::to_vec(&web).unwrap().into(),
            )))
        };
        let events = [
            Event::ServiceCreated {
                id: 1,
                service: None,
            },
            Event::ServiceCreated {
                id: 1,
                service: carried(),
            },
            Event::ServiceUpdated {
                id: 1,
                service: carried(),
            },
            Event::ServiceUpdated {
                id: 1,
                service: None,
            },
            Event::ServiceDeleted { id: 1 },
            // As older hubs logged it, and with what the check left.
            Event::HealthChecked {
                id: 1,
                status: HealthStatus::Healthy,
                outcome: None,
            },
            Event::HealthChecked {
                id: 1,
                status: HealthStatus::Unhealthy,
                outcome: Some(outcome()),
            },
            Event::ScanCompleted {},
            Event::StatusChanged(Box::new(lookout_proto::service::StatusEventView {
                id: 1,
                service_id: 1,
                at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                old: lookout_proto::status::Status::Ok,
                new: lookout_proto::status::Status::Failure,
                reason: String::new(),
            })),
            Event::CheckResult {
                server_id: 1,
                check: "c".into(),
                result: Box::new(result),
            },
            Event::ServerUpdated { id: 1 },
            Event::ServerDeleted { id: 1 },
        ];
        for event in events {
            let (kind, data) = event.wire();
            assert_eq!(kind_name(kind), kind);
            // Read back from the log, it is the same event: one type for the
            // bus, the log, the frames and the other hubs.
            assert_eq!(
                Event::from_wire(kind, &data.text()).as_ref(),
                Some(&event),
                "{kind} {data}"
            );
        }
        // The frames keep their documented shape.
        let (_, data) = Event::HealthChecked {
            id: 7,
            status: HealthStatus::Unhealthy,
            outcome: Some(outcome()),
        }
        .wire();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&data.text()).unwrap(),
            serde_json::json!({"id": 7, "health_status": "unhealthy",
                "last_health_check": "2027-01-15T08:00:00Z", "last_response_code": 503,
                "last_latency_ms": 12, "last_error": "HTTP 503", "state": "FAILURE",
                "state_reason": "HTTP 503", "state_since": "2027-01-15T08:00:00Z"})
        );
        assert_eq!(Event::ScanCompleted {}.wire().1.text(), "{}");
        // A service's event carries the service whole, as JSON in the frame.
        let (_, data) = Event::ServiceUpdated {
            id: 1,
            service: carried(),
        }
        .wire();
        let frame = LiveEvent {
            id: 4,
            kind: "service.updated",
            data,
        };
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            serde_json::json!({"id": 4, "type": "service.updated",
                               "data": {"id": 1, "service": web}})
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&frame.data.text()).unwrap(),
            serde_json::json!({"id": 1, "service": web})
        );
        assert!(Event::from_wire("service.renamed", r#"{"id": 1}"#).is_none());
        // A frame carries its data as JSON, not as a string of it; text from
        // the log that is not JSON is null.
        let frame = LiveEvent {
            id: 3,
            kind: "check",
            data: WireData::from(r#"{"id": 7}"#.to_owned()),
        };
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            serde_json::json!({"id": 3, "type": "check", "data": {"id": 7}})
        );
        assert_eq!(WireData::from("{oops".to_owned()).text(), "null");
        // Every type is documented for client authors.
        let documented = include_str!("../../../docs/events.md");
        for kind in KINDS {
            assert!(documented.contains(&format!("| `{kind}` |")), "{kind}");
        }
    }

    #[tokio::test]
    async fn the_pruner_keeps_the_database_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqlStore::open(&dir.path().join("p.db")).await.unwrap());
        let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        let new = parse_new_service(serde_json::json!({"name": "s"}).as_object().unwrap()).unwrap();
        let s = store.create_service(&new, clock.now()).await.unwrap();
        for days_ago in [10, 8, 6, 1] {
            let check = HealthCheck {
                service_id: s.id,
                checked_at: clock.now() - chrono::Duration::days(days_ago),
                status: HealthStatus::Healthy,
                url: None,
                response_code: Some(200),
                latency_ms: Some(1),
                error: None,
                warning: None,
                cert_expires_at: None,
            };
            store.record_health_check(&check).await.unwrap();
        }
        store
            .append_events(&[(
                clock.now() - chrono::Duration::days(2),
                "check",
                "{}".into(),
            )])
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn(run_pruner(
            store.clone(),
            clock.clone(),
            Duration::from_secs(7 * 86_400),
            {
                let rounds = rounds.clone();
                move || {
                    rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            },
            shutdown.clone(),
        ));
        // The first round runs at once; wait for it, with a deadline.
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while store.health_history(s.id, 10).await.unwrap().len() != 2
            || rounds.load(std::sync::atomic::Ordering::SeqCst) == 0
        {
            assert!(tokio::time::Instant::now() < until, "not pruned");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.unwrap();
        let kept: Vec<i64> = store
            .health_history(s.id, 10)
            .await
            .unwrap()
            .iter()
            .map(|c| (clock.now() - c.checked_at).num_days())
            .collect();
        assert_eq!(
            kept,
            [1, 6],
            "results older than the 7-day retention are gone"
        );
        assert!(
            store.events_after(0, 10).await.unwrap().is_empty(),
            "the event log keeps a day"
        );
    }

    #[tokio::test]
    async fn pruning_keeps_each_checks_newest_result_and_spent_refresh_tokens() {
        use crate::store::accounts::Refreshed;
        use crate::store::agents::NewServer;
        use crate::store::{AccountStore as _, AgentStore as _};
        use lookout_proto::agent::StatusUpdate;
        use lookout_proto::check::LineStatus;
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open(&dir.path().join("p.db")).await.unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let server = store
            .create_server(
                &NewServer {
                    name: "h".into(),
                    labels: vec![],
                    agent_id: "agt-1".into(),
                    claim_hash: "c".into(),
                    claim_expires_at: now,
                },
                now,
            )
            .await
            .unwrap();
        let update = |check: &str, days_ago: i64| StatusUpdate {
            service_name: check.into(),
            timestamp: now - chrono::Duration::days(days_ago),
            ordinal: 0,
            status: LineStatus::Ok,
            message: String::new(),
        };
        // `busy` has old and new results; `quiet` only old ones.
        let updates = [
            update("busy", 10),
            update("busy", 1),
            update("quiet", 20),
            update("quiet", 9),
        ];
        store
            .record_results(server.id, &updates, now)
            .await
            .unwrap();
        store
            .prune(
                now - chrono::Duration::days(7),
                now,
                now - chrono::Duration::days(400),
            )
            .await
            .unwrap();
        let cursors = store.result_cursors(server.id).await.unwrap();
        assert_eq!(cursors["busy"].timestamp, now - chrono::Duration::days(1));
        assert_eq!(
            cursors["quiet"].timestamp,
            now - chrono::Duration::days(9),
            "the newest result stays, old as it is: the agent resumes after it"
        );
        let services = store
            .list_services(crate::store::ServiceFilter::All)
            .await
            .unwrap();
        for s in services {
            let kept = store.check_results(s.id, 10).await.unwrap();
            assert_eq!(kept.len(), 1, "{}: {kept:?}", s.name);
        }

        // A refresh token spent two days ago is still recognised when replayed.
        use crate::store::accounts::{CredentialKind, NewCredential, NewUser, Role, TokenScope};
        let user = store
            .create_user(
                &NewUser {
                    username: "ada".into(),
                    email: None,
                    password_hash: "x".into(),
                    role: Role::Admin,
                },
                now,
            )
            .await
            .unwrap();
        let refresh = |hash: &str| NewCredential {
            user_id: user.id,
            kind: CredentialKind::Refresh,
            token_hash: hash.into(),
            name: None,
            role: Role::Admin,
            scope: TokenScope::All,
            family: "f".into(),
            expires_at: Some(now + chrono::Duration::days(30)),
        };
        store
            .insert_credentials(&[refresh("r1")], now)
            .await
            .unwrap();
        let rotated = store
            .rotate_refresh("r1", &[refresh("r2")], now)
            .await
            .unwrap();
        assert!(matches!(rotated, Refreshed::Rotated(_)), "{rotated:?}");
        let later = now + chrono::Duration::days(2);
        store
            .prune_credentials(later - chrono::Duration::days(1))
            .await
            .unwrap();
        let replayed = store
            .rotate_refresh("r1", &[refresh("r3")], later)
            .await
            .unwrap();
        assert!(
            matches!(replayed, Refreshed::Replayed { .. }),
            "{replayed:?}"
        );
    }
}
