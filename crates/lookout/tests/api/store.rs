//! The storage layer, told as stories: each test takes a new, empty store
//! through what a hub does with it (no HTTP, no hub process) and checks what
//! users rely on: round trips, ordering, filters, conflicts, cascading
//! deletes, status changes, deadlines, credentials, agents, the leases hubs
//! share, and export/import. `every_store_method_has_a_story` fails when a
//! method of the store is not called by any story.
//!
//! The stories run on SQLite (a file in a temporary directory) and, with
//! `LOOKOUT_TEST_DATABASE=postgres`, on a new PostgreSQL database each:
//! `scripts/test` runs them on both engines, and every assertion holds on
//! both. Times are passed explicitly (offsets from one fixed moment), so
//! nothing sleeps.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lookout_hub::auth::token::hash;
use lookout_hub::notify::ChannelKind;
use lookout_hub::store::accounts::{
    AuditOutcome, CredentialKind, DeleteUser, NewAuditEntry, NewCredential, NewUser, Refreshed,
    Role, TokenScope,
};
use lookout_hub::store::agents::{NewServer, Results};
use lookout_hub::store::sql::export::{COORDINATION_TABLES, EXPORT_TABLES};
use lookout_hub::store::{
    AccountStore, AgentStore, Backend, CheckLeases, DiscoveredContainer, DiscoveredUnit,
    HealthCheck, LeaseStore, Reconciled, Recorded, Service, ServiceFilter, SqlStore, Store,
    StoreError, UnitState,
};
use lookout_proto::agent::{CheckDecl, Cursor, StatusUpdate};
use lookout_proto::check::LineStatus;
use lookout_proto::push::PushTiming;
use lookout_proto::schedule::CronSchedule;
use lookout_proto::service::{
    parse_new_service, parse_service_patch, HealthStatus, NewService, PortView, RegistryStatus,
    ServicePatch, StatusEventView, TimerView,
};
use lookout_proto::status::Status;
use lookout_testkit::postgres::{fresh_database, hubs_on_postgres};
use serde_json::{json, Value};

const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// An id no row has.
const MISSING: i64 = 999_999;

/// `secs` after a fixed moment (whole seconds: the store keeps milliseconds).
pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

/// Where a story's database lives.
enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

/// A story's database, which can be opened again (its temporary directory
/// lives as long as this).
pub(crate) struct Db {
    location: Location,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    /// Opens the database, bringing its schema up to date.
    async fn connect(&self) -> SqlStore {
        let store = match &self.location {
            Location::Sqlite(path) => SqlStore::open(path).await.expect("open the SQLite file"),
            Location::Postgres(url) => SqlStore::connect_postgres(url)
                .await
                .expect("connect to PostgreSQL"),
        };
        let expected = match self.location {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres(_) => Backend::Postgres,
        };
        assert_eq!(store.backend(), expected);
        store
    }
}

/// A new, empty store on the engine this run tests: SQLite, or PostgreSQL
/// when `LOOKOUT_TEST_DATABASE=postgres`.
pub(crate) async fn open() -> (SqlStore, Db) {
    let db = if hubs_on_postgres() {
        Db {
            location: Location::Postgres(fresh_database().await),
            _dir: None,
        }
    } else {
        let dir = tempfile::tempdir().unwrap();
        Db {
            location: Location::Sqlite(dir.path().join("lookout.db")),
            _dir: Some(dir),
        }
    };
    (db.connect().await, db)
}

pub(crate) fn new_service(body: Value) -> NewService {
    parse_new_service(body.as_object().unwrap()).expect("a valid service")
}

pub(crate) fn patch(body: Value) -> ServicePatch {
    parse_service_patch(body.as_object().unwrap()).expect("a valid patch")
}

fn names(services: Vec<Service>) -> Vec<String> {
    services.into_iter().map(|s| s.name).collect()
}

/// Status changes as (service, old, new), by service.
fn moves(changes: &[StatusEventView]) -> Vec<(i64, Status, Status)> {
    let mut moves: Vec<_> = changes
        .iter()
        .map(|c| (c.service_id, c.old, c.new))
        .collect();
    moves.sort_by_key(|m| m.0);
    moves
}

pub(crate) fn passed(service: &Service, secs: i64, latency_ms: u64) -> HealthCheck {
    HealthCheck {
        service_id: service.id,
        checked_at: at(secs),
        status: HealthStatus::Healthy,
        url: service.check_url(),
        response_code: Some(200),
        latency_ms: Some(latency_ms),
        error: None,
        warning: None,
        cert_expires_at: None,
    }
}

pub(crate) fn failed(service: &Service, secs: i64, code: u16) -> HealthCheck {
    HealthCheck {
        service_id: service.id,
        checked_at: at(secs),
        status: HealthStatus::Unhealthy,
        url: service.check_url(),
        response_code: Some(code),
        latency_ms: Some(250),
        error: Some(format!("HTTP {code}")),
        warning: None,
        cert_expires_at: None,
    }
}

fn unit(name: &str, active: &str, port: Option<u16>, status: RegistryStatus) -> DiscoveredUnit {
    DiscoveredUnit {
        unit: name.into(),
        description: format!("The {name} unit"),
        active_state: active.into(),
        sub_state: if active == "active" {
            "running"
        } else {
            "dead"
        }
        .into(),
        unit_file_state: Some("enabled".into()),
        main_pid: Some(1234),
        pids: vec![1234, 1240],
        ports: port
            .map(|port| PortView {
                address: "0.0.0.0".into(),
                port,
                source: "process".into(),
                socket_unit: None,
            })
            .into_iter()
            .collect(),
        port,
        status,
    }
}

fn timer(name: &str, unit: &str, scanned: DateTime<Utc>) -> TimerView {
    TimerView {
        name: name.into(),
        description: format!("Runs {unit}"),
        active_state: "active".into(),
        schedule: vec!["OnCalendar=*-*-* 03:00:00".into()],
        last_trigger: Some(at(-DAY)),
        next_elapse: Some(at(DAY)),
        unit: unit.into(),
        unit_active_state: Some("inactive".into()),
        last_result: Some("success".into()),
        last_exit_status: Some(0),
        last_exit: Some(at(-DAY + 90)),
        failed: false,
        removed: false,
        last_scanned_at: scanned,
    }
}

fn user(username: &str, email: Option<&str>, role: Role) -> NewUser {
    NewUser {
        username: username.into(),
        email: email.map(Into::into),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${username}"),
        role,
    }
}

fn credential(
    user_id: i64,
    kind: CredentialKind,
    token: &str,
    role: Role,
    family: &str,
    expires_at: Option<DateTime<Utc>>,
) -> NewCredential {
    NewCredential {
        user_id,
        kind,
        token_hash: hash(token),
        name: None,
        role,
        scope: TokenScope::All,
        family: family.into(),
        expires_at,
    }
}

fn audit(actor: Option<&str>, action: &'static str, outcome: AuditOutcome) -> NewAuditEntry {
    NewAuditEntry {
        actor: actor.map(Into::into),
        action,
        target: Some("Bob".into()),
        client: Some("192.0.2.10".into()),
        outcome,
    }
}

fn check_decl(name: &str, schedule: &str) -> CheckDecl {
    CheckDecl {
        name: name.into(),
        display_name: None,
        description: Some(format!("Checks {name}")),
        schedule: Some(schedule.into()),
    }
}

fn result(check: &str, secs: i64, ordinal: u32, status: LineStatus, message: &str) -> StatusUpdate {
    StatusUpdate {
        service_name: check.into(),
        timestamp: at(secs),
        ordinal,
        status,
        message: message.into(),
    }
}

fn conflict_on(err: &StoreError) -> (&'static str, String) {
    match err {
        StoreError::Conflict { field, value } => (field, value.clone()),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn refusal(result: Result<u64, StoreError>) -> String {
    match result {
        Err(StoreError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Registering, listing, editing and deleting services.
#[tokio::test]

async fn services_story() {
    let (store, _db) = open().await;
    let api = store
        .create_service(
            &new_service(json!({
                "name": "api", "description": "The public API",
                "base_url": "http://10.0.0.5:8080", "health_endpoint": "/health",
                "check_interval_secs": 30, "notify_after": 2,
                "maintenance_until": at(HOUR).to_rfc3339(),
            })),
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(api.name, "api");
    assert_eq!(api.description.as_deref(), Some("The public API"));
    assert_eq!(api.status, RegistryStatus::Configured);
    assert_eq!(api.base_url.as_deref(), Some("http://10.0.0.5:8080"));
    assert_eq!(api.port, Some(8080), "the port comes from the URL");
    assert_eq!(
        api.check_url().as_deref(),
        Some("http://10.0.0.5:8080/health")
    );
    assert_eq!(api.check_interval_secs, Some(30));
    assert_eq!(api.notify_after, Some(2));
    assert_eq!(api.maintenance_until, Some(at(HOUR)));
    assert_eq!(
        (api.state, api.health_status),
        (Status::Unknown, HealthStatus::Unknown)
    );
    assert_eq!((api.created_at, api.updated_at), (at(0), at(0)));
    assert_eq!(store.get_service(api.id).await.unwrap(), Some(api.clone()));
    assert_eq!(store.get_service(MISSING).await.unwrap(), None);

    let billing = store
        .create_service(
            &new_service(json!({"name": "Billing", "port": 9000, "muted": true})),
            at(1),
        )
        .await
        .unwrap();
    assert!(billing.muted);
    let cache = store
        .create_service(&new_service(json!({"name": "cache", "port": 6379})), at(2))
        .await
        .unwrap();
    assert!(api.id < billing.id && billing.id < cache.id);
    assert_eq!(
        names(store.list_services(ServiceFilter::All).await.unwrap()),
        ["api", "Billing", "cache"],
        "name order, whatever the case"
    );
    assert_eq!(
        names(
            store
                .list_services(ServiceFilter::Status(RegistryStatus::Configured))
                .await
                .unwrap()
        ),
        ["api", "Billing", "cache"]
    );
    for status in [RegistryStatus::Discovered, RegistryStatus::Raw] {
        assert!(store
            .list_services(ServiceFilter::Status(status))
            .await
            .unwrap()
            .is_empty());
    }

    // A name is taken once; the first service is left as it was.
    let err = store
        .create_service(&new_service(json!({"name": "api", "port": 1})), at(3))
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("name", "api".into()));
    assert_eq!(store.get_service(api.id).await.unwrap(), Some(api.clone()));

    // Editing applies the fields sent, and only those.
    let edited = store
        .update_service(
            billing.id,
            &patch(json!({"description": "Invoices", "port": 9001, "muted": false})),
            at(60),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.description.as_deref(), Some("Invoices"));
    assert_eq!(edited.port, Some(9001));
    assert!(!edited.muted);
    assert_eq!(edited.name, "Billing");
    assert_eq!((edited.created_at, edited.updated_at), (at(1), at(60)));
    assert_eq!(
        store.get_service(billing.id).await.unwrap(),
        Some(edited.clone())
    );
    let cleared = store
        .update_service(billing.id, &patch(json!({"description": null})), at(61))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.description, None, "null clears a field");
    assert_eq!(cleared.port, Some(9001));
    let err = store
        .update_service(cache.id, &patch(json!({"name": "api"})), at(62))
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("name", "api".into()));
    assert_eq!(
        store.get_service(cache.id).await.unwrap().unwrap().name,
        "cache"
    );
    let renamed = store
        .update_service(cache.id, &patch(json!({"name": "redis"})), at(63))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.name, "redis");
    assert_eq!(
        store
            .update_service(MISSING, &patch(json!({"port": 1})), at(64))
            .await
            .unwrap(),
        None
    );

    // Deleting frees the name; ids are never reused.
    assert!(store.delete_service(cache.id).await.unwrap());
    assert!(
        !store.delete_service(cache.id).await.unwrap(),
        "a second delete finds nothing"
    );
    assert_eq!(store.get_service(cache.id).await.unwrap(), None);
    assert_eq!(
        names(store.list_services(ServiceFilter::All).await.unwrap()),
        ["api", "Billing"]
    );
    let again = store
        .create_service(&new_service(json!({"name": "redis"})), at(70))
        .await
        .unwrap();
    assert!(again.id > cache.id, "{} reuses a deleted id", again.id);
}

/// Health results: the history, the status they cause, its timeline.
#[tokio::test]
async fn health_story() {
    let (store, _db) = open().await;
    let api = store
        .create_service(
            &new_service(json!({"name": "api", "base_url": "http://10.0.0.5:8080",
                                "health_endpoint": "/health"})),
            at(0),
        )
        .await
        .unwrap();
    let worker = store
        .create_service(
            &new_service(json!({"name": "worker", "base_url": "http://10.0.0.6",
                                "health_endpoint": "/ping"})),
            at(0),
        )
        .await
        .unwrap();

    // The first pass is a change, the next one is not; a failure is.
    let Recorded::Stored(Some(up)) = store
        .record_health_check(&passed(&api, 10, 12))
        .await
        .unwrap()
    else {
        panic!("the first passing check changes the status");
    };
    assert_eq!(
        (up.service_id, up.at, up.old, up.new),
        (api.id, at(10), Status::Unknown, Status::Ok)
    );
    assert_eq!(up.reason, "health check passed");
    assert_eq!(
        store
            .record_health_check(&passed(&api, 40, 15))
            .await
            .unwrap(),
        Recorded::Stored(None)
    );
    let Recorded::Stored(Some(down)) = store
        .record_health_check(&failed(&api, 70, 503))
        .await
        .unwrap()
    else {
        panic!("a failing check changes the status");
    };
    assert_eq!((down.old, down.new), (Status::Ok, Status::Failure));
    assert!(down.reason.contains("HTTP 503"), "{}", down.reason);

    // The last result is cached on the service.
    let cached = store.get_service(api.id).await.unwrap().unwrap();
    assert_eq!(cached.health_status, HealthStatus::Unhealthy);
    assert_eq!(cached.last_health_check, Some(at(70)));
    assert_eq!(cached.last_response_code, Some(503));
    assert_eq!(cached.last_latency_ms, Some(250));
    assert_eq!(cached.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(cached.state, Status::Failure);
    assert_eq!(cached.state_since, Some(at(70)));
    assert_eq!(cached.state_reason.as_deref(), Some(down.reason.as_str()));

    // The history, newest first.
    let history = store.health_history(api.id, 10).await.unwrap();
    assert_eq!(
        history,
        [
            failed(&api, 70, 503),
            passed(&api, 40, 15),
            passed(&api, 10, 12)
        ]
    );
    assert_eq!(store.health_history(api.id, 2).await.unwrap(), history[..2]);
    assert!(store
        .health_history(worker.id, 10)
        .await
        .unwrap()
        .is_empty());

    // Status changes, newest first, of one service or of all.
    assert_eq!(
        store.status_events(Some(api.id), 10).await.unwrap(),
        [down.clone(), up.clone()]
    );
    let Recorded::Stored(Some(worker_up)) = store
        .record_health_check(&passed(&worker, 20, 3))
        .await
        .unwrap()
    else {
        panic!("the worker's first pass changes its status");
    };
    assert_eq!(
        store.status_events(None, 10).await.unwrap(),
        [down.clone(), worker_up.clone(), up.clone()]
    );
    assert_eq!(
        store.status_events(None, 1).await.unwrap(),
        std::slice::from_ref(&down)
    );

    // Reconciling recomputes the status from what is stored: nothing to
    // change, however often it runs.
    let expected = Reconciled {
        status: Status::Failure,
        reason: down.reason.clone(),
        change: None,
    };
    for secs in [80, 81] {
        assert_eq!(
            store.reconcile_state(api.id, at(secs)).await.unwrap(),
            Some(expected.clone())
        );
    }
    assert_eq!(store.reconcile_state(MISSING, at(82)).await.unwrap(), None);
    assert_eq!(
        store.status_events(Some(api.id), 10).await.unwrap().len(),
        2
    );

    // The timelines: the status in force at a moment, and the changes after it.
    let timelines = [at(0), at(10), at(100)].map(|since| store.status_timelines(since));
    let [from_0, from_10, from_100] = futures::future::join_all(timelines)
        .await
        .into_iter()
        .map(|t| t.unwrap().remove(&api.id).unwrap_or_default())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!(
        from_0,
        (None, vec![(at(10), Status::Ok), (at(70), Status::Failure)])
    );
    assert_eq!(from_10, (Some(Status::Ok), vec![(at(70), Status::Failure)]));
    assert_eq!(from_100, (Some(Status::Failure), vec![]));

    // The last results of every service, oldest first, within a window.
    let recent = store.recent_checks(2, at(0)).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(
        recent[&api.id],
        [
            (at(40), Some(15), HealthStatus::Healthy),
            (at(70), Some(250), HealthStatus::Unhealthy)
        ]
    );
    assert_eq!(
        recent[&worker.id],
        [(at(20), Some(3), HealthStatus::Healthy)]
    );
    let since_30 = store.recent_checks(10, at(30)).await.unwrap();
    assert_eq!(since_30.keys().copied().collect::<Vec<_>>(), [api.id]);
    assert_eq!(since_30[&api.id].len(), 2);

    // A new URL forgets the cached health (it no longer applies), not the
    // history, and the status follows in the same write.
    let (moved, change) = store
        .change_service(
            api.id,
            &patch(json!({"base_url": "http://10.0.0.9:8080"})),
            at(90),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.health_status, HealthStatus::Unknown);
    assert_eq!(
        (
            moved.state,
            moved.state_reason.as_deref(),
            moved.state_since
        ),
        (Status::Unknown, Some("not checked yet"), Some(at(90)))
    );
    let change = change.expect("the status changed");
    assert_eq!(
        (change.old, change.new, change.at),
        (Status::Failure, Status::Unknown, at(90))
    );
    assert_eq!(
        (
            moved.last_health_check,
            moved.last_response_code,
            moved.last_error
        ),
        (None, None, None)
    );
    assert_eq!(store.health_history(api.id, 10).await.unwrap().len(), 3);
    // Reconciling again changes nothing: the write brought it up to date.
    let reconciled = store
        .reconcile_state(api.id, at(91))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            reconciled.status,
            reconciled.reason.as_str(),
            reconciled.change
        ),
        (Status::Unknown, "not checked yet", None)
    );

    // Deleting a service deletes its history; a result that comes in after
    // is dropped.
    assert!(store.delete_service(api.id).await.unwrap());
    assert!(store.health_history(api.id, 10).await.unwrap().is_empty());
    assert!(store
        .status_events(Some(api.id), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(!store
        .status_timelines(at(0))
        .await
        .unwrap()
        .contains_key(&api.id));
    assert_eq!(
        store
            .record_health_check(&passed(&api, 100, 9))
            .await
            .unwrap(),
        Recorded::Dropped
    );
    assert!(store.health_history(api.id, 10).await.unwrap().is_empty());

    // Results written together, in one transaction: each stands on its own,
    // and each comes back with its service as it now is.
    let written = store
        .record_health_checks(&[failed(&worker, 110, 500), passed(&api, 111, 9)])
        .await
        .unwrap();
    let [(Recorded::Stored(Some(down)), Some(worker_now)), (Recorded::Dropped, None)] =
        &written[..]
    else {
        panic!("one stored with its change, one dropped: {written:?}");
    };
    assert_eq!(
        (down.service_id, down.old, down.new, down.at),
        (worker.id, Status::Ok, Status::Failure, at(110))
    );
    assert_eq!(
        (
            worker_now.state,
            worker_now.state_reason.as_deref(),
            worker_now.last_response_code,
            worker_now.last_health_check
        ),
        (
            Status::Failure,
            Some("health check failed: HTTP 500"),
            Some(500),
            Some(at(110))
        )
    );
    assert_eq!(
        store.get_service(worker.id).await.unwrap().as_ref(),
        Some(worker_now),
        "what came back is what is stored"
    );
    assert_eq!(
        store
            .recent_checks(10, at(0))
            .await
            .unwrap()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [worker.id]
    );

    // Results as samples (latencies of passing checks only), of one
    // service or all, in a time window.
    // A service may come more than once in a batch: each result's status
    // follows from the one before it.
    let t = 2 * HOUR;
    let written = store
        .record_health_checks(&[
            passed(&worker, t + 10, 12),
            passed(&worker, t + 40, 15),
            failed(&worker, t + 70, 503),
        ])
        .await
        .unwrap();
    let changes: Vec<Option<(Status, Status)>> = written
        .iter()
        .map(|(recorded, _)| match recorded {
            Recorded::Stored(change) => change.as_ref().map(|c| (c.old, c.new)),
            Recorded::Dropped => panic!("the worker is there: {written:?}"),
        })
        .collect();
    assert_eq!(
        changes,
        [
            Some((Status::Failure, Status::Ok)),
            None,
            Some((Status::Ok, Status::Failure))
        ]
    );
    assert_eq!(
        written[2].1.as_ref().map(|s| (s.state, s.state_since)),
        Some((Status::Failure, Some(at(t + 70))))
    );
    assert_eq!(
        store
            .status_events(Some(worker.id), 2)
            .await
            .unwrap()
            .iter()
            .map(|c| (c.at, c.new))
            .collect::<Vec<_>>(),
        [(at(t + 70), Status::Failure), (at(t + 10), Status::Ok)]
    );
    let samples = store
        .check_samples(Some(worker.id), at(t), at(t + 71))
        .await
        .unwrap();
    let seen: Vec<(i64, DateTime<Utc>, bool, Option<f64>)> = samples
        .iter()
        .map(|(id, s)| (*id, s.at, s.passed, s.value))
        .collect();
    assert_eq!(
        seen,
        [
            (worker.id, at(t + 10), true, Some(12.0)),
            (worker.id, at(t + 40), true, Some(15.0)),
            (worker.id, at(t + 70), false, None)
        ]
    );
    let all = store
        .check_samples(None, at(0), at(10 * DAY))
        .await
        .unwrap();
    assert!(all.len() > samples.len(), "earlier results too");

    // Hourly rollups: written, written again over the same hour, read back
    // in a window; pruned with status changes; gone with their service.
    assert_eq!(store.last_check_hour().await.unwrap(), None);
    let hour = lookout_proto::series::downsample(
        samples.iter().map(|(_, s)| *s),
        chrono::Duration::hours(1),
    );
    assert_eq!(hour.len(), 1);
    store
        .put_check_hours(&[(worker.id, hour[0])])
        .await
        .unwrap();
    let mut again = hour[0];
    again.count += 1;
    store
        .put_check_hours(&[(worker.id, again), (MISSING, hour[0])])
        .await
        .unwrap();
    let read = store
        .check_hours(worker.id, at(-DAY), at(DAY))
        .await
        .unwrap();
    assert_eq!(
        read.len(),
        1,
        "one row an hour, and none for a missing service"
    );
    assert_eq!(
        (read[0].start, read[0].count, read[0].passed, read[0].mean()),
        (hour[0].start, 4, 2, Some(13.5))
    );
    assert_eq!((read[0].least(), read[0].most()), (Some(12.0), Some(15.0)));
    assert_eq!(store.last_check_hour().await.unwrap(), Some(hour[0].start));
    assert!(store
        .check_hours(worker.id, at(DAY), at(2 * DAY))
        .await
        .unwrap()
        .is_empty());
    store.prune(at(0), at(0), hour[0].start).await.unwrap();
    assert_eq!(
        store.last_check_hour().await.unwrap(),
        Some(hour[0].start),
        "kept as long as status changes"
    );
    store.delete_service(worker.id).await.unwrap();
    assert_eq!(
        store.last_check_hour().await.unwrap(),
        None,
        "deleted with the service"
    );
}

/// Status pages keep their slug unique and their services by id; push
/// subscriptions belong to one account (or the operator of a hub without
/// sign-in), a browser subscribing again takes over its row, and the first
/// key written for the hub is the one every hub reads.
#[tokio::test]
async fn status_pages_and_push_subscriptions_story() {
    use lookout_hub::store::{NewPushSubscription, PageStore, StatusPageRow};
    let (store, _db) = open().await;
    let row = |slug: &str| StatusPageRow {
        slug: slug.into(),
        title: "Home".into(),
        description: String::new(),
        services: vec![3, 1],
        tags: vec!["media".into()],
        notice: "Router swap\non Sunday".into(),
    };
    let home = store.create_status_page(&row("home"), at(0)).await.unwrap();
    assert_eq!(
        (home.services.clone(), home.tags.clone()),
        (vec![3, 1], vec!["media".to_owned()])
    );
    assert!(matches!(
        store.create_status_page(&row("home"), at(1)).await,
        Err(StoreError::Conflict { field: "slug", .. })
    ));
    let family = store
        .create_status_page(&row("family"), at(2))
        .await
        .unwrap();
    let slugs: Vec<String> = store
        .list_status_pages()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.slug)
        .collect();
    assert_eq!(slugs, ["family", "home"]);
    let mut changed = row("home-2");
    changed.notice = String::new();
    let updated = store
        .update_status_page(home.id, &changed, at(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.slug.as_str(), updated.notice.as_str()),
        ("home-2", "")
    );
    assert_eq!((updated.created_at, updated.updated_at), (at(0), at(5)));
    assert!(store.get_status_page("home").await.unwrap().is_none());
    assert_eq!(
        store.get_status_page("home-2").await.unwrap().unwrap().id,
        home.id
    );
    assert!(matches!(
        store
            .update_status_page(home.id, &row("family"), at(6))
            .await,
        Err(StoreError::Conflict { field: "slug", .. })
    ));
    assert!(store
        .update_status_page(MISSING, &row("x"), at(6))
        .await
        .unwrap()
        .is_none());
    assert!(store.delete_status_page(family.id).await.unwrap());
    assert!(!store.delete_status_page(family.id).await.unwrap());

    let ann = store
        .create_user(
            &NewUser {
                username: "ann".into(),
                email: None,
                password_hash: "x".into(),
                role: Role::Viewer,
            },
            at(0),
        )
        .await
        .unwrap();
    let sub = |user: Option<i64>, endpoint: &str| NewPushSubscription {
        user_id: user,
        endpoint: endpoint.into(),
        p256dh: "key".into(),
        auth: "auth".into(),
        device: "Chromium on Linux".into(),
    };
    let phone = store
        .add_push_subscription(&sub(Some(ann.id), "https://push.example/a"), at(10))
        .await
        .unwrap();
    let operator = store
        .add_push_subscription(&sub(None, "https://push.example/b"), at(11))
        .await
        .unwrap();
    let mut renewed = sub(Some(ann.id), "https://push.example/a");
    renewed.p256dh = "new key".into();
    let again = store.add_push_subscription(&renewed, at(12)).await.unwrap();
    assert_eq!(
        (again.id, again.p256dh.as_str(), again.created_at),
        (phone.id, "new key", at(10))
    );
    let ids = |subs: Vec<lookout_hub::store::PushSubscription>| {
        subs.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.push_subscriptions(Some(Some(ann.id))).await.unwrap()),
        [phone.id]
    );
    assert_eq!(
        ids(store.push_subscriptions(Some(None)).await.unwrap()),
        [operator.id]
    );
    assert_eq!(
        ids(store.push_subscriptions(None).await.unwrap()),
        [phone.id, operator.id]
    );
    store.push_sent(phone.id, at(20)).await.unwrap();
    assert_eq!(
        store.push_subscriptions(Some(Some(ann.id))).await.unwrap()[0].last_sent_at,
        Some(at(20))
    );
    assert!(
        !store
            .delete_push_subscription(operator.id, Some(Some(ann.id)))
            .await
            .unwrap(),
        "not hers"
    );
    assert!(store
        .delete_push_subscription(operator.id, Some(None))
        .await
        .unwrap());
    assert!(store
        .delete_push_subscription(phone.id, None)
        .await
        .unwrap());
    assert!(store.push_subscriptions(None).await.unwrap().is_empty());

    assert_eq!(
        store.state_or_insert("vapid", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        store.state_or_insert("vapid", "second").await.unwrap(),
        "first"
    );
}

/// systemd discovery: scans, units seen in between, timers, the hub's state.
/// A service that depends on another: the ids it names are kept, and while
/// the hub records that it waits on a failing one, it is UNKNOWN whatever
/// its own check says, and shows its own status again once it waits no more.
#[tokio::test]
async fn dependencies_story() {
    use lookout_proto::depends::WaitingOn;
    let (store, _db) = open().await;
    let db = store
        .create_service(
            &new_service(json!({"name": "db", "base_url": "http://10.0.0.5:5432"})),
            at(0),
        )
        .await
        .unwrap();
    let app = store
        .create_service(
            &new_service(json!({"name": "app", "base_url": "http://10.0.0.6",
                "depends_on": [db.id],
                "heal": {"after": 2, "unit": "app.service", "max_per_hour": 3}})),
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(app.depends_on, vec![db.id]);
    assert_eq!(
        app.heal.as_ref().map(|h| (h.after, h.max_per_hour)),
        Some((2, 3))
    );

    store
        .record_health_check(&failed(&db, 10, 503))
        .await
        .unwrap();
    let on = WaitingOn {
        id: db.id,
        name: "db".into(),
    };
    let (services, changes) = store
        .set_waiting(&[(app.id, Some(on.clone())), (MISSING, None)], at(11))
        .await
        .unwrap();
    assert_eq!(services.len(), 1, "a service gone is skipped");
    assert_eq!(services[0].waiting_on.as_deref(), Some(&on));
    assert_eq!(services[0].state, Status::Unknown);
    assert_eq!(services[0].state_reason.as_deref(), Some("waiting on db"));
    assert!(changes.is_empty(), "UNKNOWN before, UNKNOWN now");

    // Its own failing check changes nothing while it waits.
    let recorded = store
        .record_health_check(&failed(&app, 12, 502))
        .await
        .unwrap();
    assert_eq!(recorded, Recorded::Stored(None));
    let held = store.get_service(app.id).await.unwrap().unwrap();
    assert_eq!(
        (held.state, held.health_status),
        (Status::Unknown, HealthStatus::Unhealthy)
    );

    // Waiting no more: its own status, from its last check.
    let (services, changes) = store.set_waiting(&[(app.id, None)], at(20)).await.unwrap();
    assert_eq!(services[0].state, Status::Failure);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].old, changes[0].new),
        (Status::Unknown, Status::Failure)
    );

    // Changing what it depends on; clearing the rule.
    let changed = store
        .change_service(
            app.id,
            &patch(json!({"depends_on": [], "heal": null})),
            at(30),
        )
        .await
        .unwrap()
        .unwrap()
        .0;
    assert!(changed.depends_on.is_empty());
    assert!(changed.heal.is_none());

    // A whole object sent back (a resume and a new URL in one write: each
    // column is set once, as PostgreSQL insists).
    let changed = store
        .change_service(
            app.id,
            &patch(json!({"paused": false, "base_url": "http://10.0.0.7", "depends_on": [db.id]})),
            at(40),
        )
        .await
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(changed.depends_on, vec![db.id]);
    assert_eq!(changed.health_status, HealthStatus::Unknown);
}

#[tokio::test]
async fn usage_story() {
    use lookout_hub::store::{HostUsageRow, Spread, UnitUsageRow, UsageStore};
    let (store, _db) = open().await;
    let web = store
        .create_service(&new_service(json!({"name": "web"})), at(0))
        .await
        .unwrap();
    let db = store
        .create_service(&new_service(json!({"name": "db"})), at(0))
        .await
        .unwrap();
    let unit = |id: i64, width: u32, secs: i64, cpu: f64, memory: f64| UnitUsageRow {
        service_id: id,
        width,
        start: at(secs),
        samples: 1,
        cpu: Some(Spread::one(cpu)),
        memory: Some(Spread::one(memory)),
        tasks: Some(3.0),
        io_read: Some(512.0),
        io_write: None,
    };
    // Figures come back as written, in their stored units (hundredths of a
    // percent, whole bytes); rows of a service that does not exist are
    // left out.
    store
        .put_unit_usage(&[
            unit(web.id, 0, 0, 12.345, 1_048_576.0),
            unit(db.id, 0, 0, 0.5, 2_000_000_000.0),
            unit(web.id, 0, 10, 50.0, 2_097_152.0),
            unit(MISSING, 0, 10, 1.0, 1.0),
        ])
        .await
        .unwrap();
    let rows = store
        .unit_usage(Some(web.id), 0, at(0), at(HOUR))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].cpu, Some(Spread::one(12.35)));
    assert_eq!(rows[0].memory, Some(Spread::one(1_048_576.0)));
    assert_eq!(
        (rows[0].tasks, rows[0].io_read, rows[0].io_write),
        (Some(3.0), Some(512.0), None)
    );
    let all = store.unit_usage(None, 0, at(0), at(HOUR)).await.unwrap();
    assert_eq!(all.len(), 3, "every service's, none of the missing one");
    assert_eq!(all[1].memory, Some(Spread::one(2_000_000_000.0)));
    assert!(store
        .unit_usage(None, 60, at(0), at(HOUR))
        .await
        .unwrap()
        .is_empty());
    // Written again (a rollup made again): replaced, not doubled.
    store
        .put_unit_usage(&[UnitUsageRow {
            samples: 2,
            ..unit(web.id, 0, 0, 20.0, 1.0)
        }])
        .await
        .unwrap();
    let rows = store
        .unit_usage(Some(web.id), 0, at(0), at(5))
        .await
        .unwrap();
    assert_eq!(
        (rows.len(), rows[0].samples, rows[0].cpu),
        (1, 2, Some(Spread::one(20.0)))
    );

    let host = |name: &str, width: u32, secs: i64| HostUsageRow {
        host: name.into(),
        width,
        start: at(secs),
        samples: 1,
        cpu: Spread {
            min: 1.0,
            avg: 2.5,
            max: 4.0,
        },
        memory: Spread::one(4_294_967_296.0),
        memory_total: 8_589_934_592,
        swap: 0.0,
        swap_total: 0,
        load: 0.75,
        disk: 81.25,
        disk_used: 81,
        disk_size: 100,
        net_rx: 1000.0,
        net_tx: 10.0,
        disk_read: 0.0,
        disk_write: 4096.0,
        temperature: Some(45.5),
    };
    store
        .put_host_usage(&[host("nas", 60, 0), host("pi", 60, 60), host("nas", 900, 0)])
        .await
        .unwrap();
    let nas = store
        .host_usage(Some("nas"), 60, at(0), at(HOUR))
        .await
        .unwrap();
    assert_eq!(nas, vec![host("nas", 60, 0)]);
    assert_eq!(
        store
            .host_usage(None, 60, at(0), at(HOUR))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store.usage_span(60).await.unwrap(),
        Some((at(0), at(60))),
        "of hosts and units alike"
    );
    assert_eq!(store.usage_span(0).await.unwrap(), Some((at(0), at(10))));
    assert_eq!(store.usage_span(3600).await.unwrap(), None);

    // Pruning goes by width: the 15-minute row stays.
    assert_eq!(store.prune_usage(60, at(30)).await.unwrap(), 1);
    assert_eq!(store.prune_usage(0, at(5)).await.unwrap(), 2);
    assert_eq!(
        store
            .host_usage(None, 900, at(0), at(HOUR))
            .await
            .unwrap()
            .len(),
        1
    );

    // A service's history goes with it.
    assert!(store.delete_service(web.id).await.unwrap());
    assert!(store
        .unit_usage(None, 0, at(0), at(HOUR))
        .await
        .unwrap()
        .is_empty());
}

/// A day of samples every 10 s, at a fake clock, becomes the right
/// 1-minute and 15-minute series, and retention removes the raw ones.
#[tokio::test]
async fn a_day_of_usage_samples_rolls_up_into_minutes_and_quarters() {
    use lookout_hub::store::{HostUsageRow, Spread, UnitUsageRow, UsageStore};
    use lookout_hub::usage::{roll_up_usage, MINUTE, QUARTER, RAW};
    // A moment on a quarter hour (at(0) is 800 s past one).
    let t = |secs: i64| at(100 + secs);
    let (store, _db) = open().await;
    let web = store
        .create_service(&new_service(json!({"name": "web"})), t(0))
        .await
        .unwrap();
    // CPU climbs 0, 1, 2, 3, 4, 5 % within each minute; memory is the
    // minute of the day in MiB; the host's load follows the quarter hour.
    let mut units = Vec::new();
    let mut hosts = Vec::new();
    for step in 0..(DAY / 10) {
        let secs = step * 10;
        let minute = (secs / 60) as f64;
        units.push(UnitUsageRow {
            service_id: web.id,
            width: RAW,
            start: t(secs),
            samples: 1,
            cpu: Some(Spread::one((step % 6) as f64)),
            memory: Some(Spread::one(minute * 1_048_576.0)),
            tasks: Some((step % 6 + 1) as f64),
            io_read: Some(100.0),
            io_write: None,
        });
        hosts.push(HostUsageRow {
            host: "box".into(),
            width: RAW,
            start: t(secs),
            samples: 1,
            cpu: Spread::one(50.0),
            memory: Spread::one(1000.0),
            memory_total: 2000,
            swap: 0.0,
            swap_total: 0,
            load: (secs / 900) as f64,
            disk: 10.0,
            disk_used: 10,
            disk_size: 100,
            net_rx: 0.0,
            net_tx: 0.0,
            disk_read: 0.0,
            disk_write: 0.0,
            temperature: None,
        });
    }
    store.put_unit_usage(&units).await.unwrap();
    store.put_host_usage(&hosts).await.unwrap();

    let end = t(DAY);
    let written = roll_up_usage(&store, end, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        written,
        (1440 + 96) * 2,
        "minutes and quarters of the unit and the host"
    );

    let minutes = store
        .unit_usage(Some(web.id), MINUTE, t(0), end)
        .await
        .unwrap();
    assert_eq!(minutes.len(), 1440);
    for (i, m) in minutes.iter().enumerate() {
        assert_eq!(m.start, t(i as i64 * MIN));
        assert_eq!(m.samples, 6);
        assert_eq!(
            m.cpu,
            Some(Spread {
                min: 0.0,
                avg: 2.5,
                max: 5.0
            })
        );
        assert_eq!(m.memory, Some(Spread::one(i as f64 * 1_048_576.0)));
        assert_eq!(m.tasks, Some(6.0), "the most tasks seen");
        assert_eq!((m.io_read, m.io_write), (Some(100.0), None));
    }
    let quarters = store
        .unit_usage(Some(web.id), QUARTER, t(0), end)
        .await
        .unwrap();
    assert_eq!(quarters.len(), 96);
    for (q, b) in quarters.iter().enumerate() {
        let first = (q * 15) as f64 * 1_048_576.0;
        let last = (q * 15 + 14) as f64 * 1_048_576.0;
        assert_eq!(b.start, t(q as i64 * 15 * MIN));
        assert_eq!(b.samples, 90);
        assert_eq!(
            b.cpu,
            Some(Spread {
                min: 0.0,
                avg: 2.5,
                max: 5.0
            })
        );
        assert_eq!(
            b.memory,
            Some(Spread {
                min: first,
                avg: (first + last) / 2.0,
                max: last
            })
        );
    }
    let host_quarters = store
        .host_usage(Some("box"), QUARTER, t(0), end)
        .await
        .unwrap();
    assert_eq!(host_quarters.len(), 96);
    assert!(host_quarters
        .iter()
        .enumerate()
        .all(|(q, b)| b.load == q as f64));

    // Raw samples older than the hour kept are gone; the last hour's stay.
    let raw = store.unit_usage(None, RAW, t(0), end).await.unwrap();
    assert_eq!(raw.len(), 360);
    assert_eq!(raw[0].start, t(DAY - HOUR));
    assert_eq!(
        store.host_usage(None, RAW, t(0), end).await.unwrap().len(),
        360
    );

    // Rolled up again a minute later: nothing doubles, nothing is lost.
    roll_up_usage(&store, t(DAY + MIN), Duration::from_secs(3600))
        .await
        .unwrap();
    let minutes = store
        .unit_usage(Some(web.id), MINUTE, t(0), end)
        .await
        .unwrap();
    assert_eq!(
        minutes.len(),
        1439,
        "the first minute is now more than a day old"
    );
    assert_eq!(minutes[0].start, t(MIN));
    assert!(minutes.iter().all(|m| m.samples == 6));

    // A day later, minutes older than a day are pruned; quarters stay 90 days.
    roll_up_usage(&store, t(2 * DAY + HOUR), Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(store
        .unit_usage(None, MINUTE, t(0), t(DAY))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .unit_usage(None, QUARTER, t(0), end)
            .await
            .unwrap()
            .len(),
        96
    );
}

#[tokio::test]
async fn containers_story() {
    use lookout_proto::container::{ContainerView, PublishedPort};
    let (store, _db) = open().await;
    // A service registered before any scan, under a container's name.
    let db = store
        .create_service(&new_service(json!({"name": "db"})), at(0))
        .await
        .unwrap();
    let view = |name: &str, state: &str| ContainerView {
        state: state.into(),
        image: "localhost/app:1".into(),
        id: "0123456789ab".into(),
        compose_project: Some("home".into()),
        ..ContainerView::removed(name)
    };
    let mut web = view("web", "running");
    web.ports = vec![PublishedPort {
        host_ip: None,
        host_port: 8080,
        container_port: 80,
        protocol: "tcp".into(),
    }];
    let found = |info: ContainerView, status, port| DiscoveredContainer { info, status, port };
    let counts = store
        .apply_containers(
            &[
                found(web.clone(), RegistryStatus::Discovered, Some(8080)),
                found(view("db", "exited"), RegistryStatus::Raw, None),
            ],
            at(10),
        )
        .await
        .unwrap();
    assert_eq!(
        (counts.discovered, counts.updated, counts.removed),
        (1, 1, 0)
    );
    let all = store.list_services(ServiceFilter::All).await.unwrap();
    let web_row = all.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web_row.status, RegistryStatus::Discovered);
    assert_eq!(web_row.container.as_deref(), Some("web"));
    assert_eq!(web_row.port, Some(8080));
    assert_eq!(web_row.state, Status::Ok, "running, no check: OK");
    let db_row = store.get_service(db.id).await.unwrap().unwrap();
    assert_eq!(db_row.container.as_deref(), Some("db"), "adopted by name");
    assert_eq!(db_row.status, RegistryStatus::Configured, "kept configured");
    assert_eq!(db_row.state, Status::Failure);
    assert_eq!(
        counts
            .changes
            .iter()
            .filter(|c| c.service_id == db.id)
            .count(),
        1,
        "the adopted service's status change is reported"
    );

    // A state seen between scans changes its services only.
    let (changed, changes) = store
        .set_container_state(&view("db", "running"), at(20))
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].state, Status::Ok);
    assert_eq!(changes.len(), 1);
    let (none, _) = store
        .set_container_state(&view("elsewhere", "running"), at(20))
        .await
        .unwrap();
    assert!(none.is_empty());

    // Gone from the engine: removed, once; a clean-up deletes the raw one only.
    let counts = store.apply_containers(&[], at(30)).await.unwrap();
    assert_eq!(counts.removed, 2);
    let counts = store.apply_containers(&[], at(40)).await.unwrap();
    assert_eq!(counts.removed, 0, "already removed");
    let db_row = store.get_service(db.id).await.unwrap().unwrap();
    assert_eq!(db_row.container_info.unwrap().state, "removed");
    assert_eq!(db_row.state, Status::Failure);
    assert_eq!(store.delete_removed().await.unwrap(), 1);
    let names: Vec<String> = store
        .list_services(ServiceFilter::All)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["db".to_owned()]);
}

#[tokio::test]
async fn scan_story() {
    let (store, _db) = open().await;
    // Services the user registered before any scan: one to be linked to its
    // unit, one whose name is a unit's.
    let web = store
        .create_service(&new_service(json!({"name": "web", "port": 8081})), at(0))
        .await
        .unwrap();
    let redis = store
        .create_service(
            &new_service(json!({"name": "redis.service", "description": "Cache"})),
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(
        store.find_by_unit("redis.service").await.unwrap(),
        Some(redis.clone()),
        "a service without a unit is found by its name"
    );

    let nginx = unit(
        "nginx.service",
        "active",
        Some(80),
        RegistryStatus::Discovered,
    );
    let cron = unit("cron.service", "active", None, RegistryStatus::Raw);
    let backup = timer("backup.timer", "backup.service", at(10));
    let counts = store
        .apply_scan(
            &[nginx.clone(), cron],
            std::slice::from_ref(&backup),
            at(10),
        )
        .await
        .unwrap();
    assert_eq!(
        (counts.discovered, counts.updated, counts.removed),
        (2, 0, 0)
    );
    assert_eq!(counts.changes.len(), 2);
    for change in &counts.changes {
        assert_eq!((change.old, change.new), (Status::Unknown, Status::Ok));
        assert_eq!(change.reason, "the systemd unit is active");
    }
    for (status, expected) in [
        (RegistryStatus::Discovered, vec!["nginx.service"]),
        (RegistryStatus::Raw, vec!["cron.service"]),
        (RegistryStatus::Configured, vec!["redis.service", "web"]),
    ] {
        assert_eq!(
            names(
                store
                    .list_services(ServiceFilter::Status(status))
                    .await
                    .unwrap()
            ),
            expected
        );
    }
    let found = store
        .find_by_unit("nginx.service")
        .await
        .unwrap()
        .expect("the scan registered the unit");
    assert_eq!(found.name, "nginx.service");
    assert_eq!(found.unit.as_deref(), Some("nginx.service"));
    assert_eq!(found.description.as_deref(), Some("The nginx.service unit"));
    assert_eq!(found.systemd_state.as_deref(), Some("active"));
    assert_eq!(found.sub_state.as_deref(), Some("running"));
    assert_eq!(found.unit_file_state.as_deref(), Some("enabled"));
    assert_eq!(found.main_pid, Some(1234));
    assert_eq!(found.pids, [1234, 1240]);
    assert_eq!(found.ports, nginx.ports);
    assert_eq!(found.port, Some(80));
    assert_eq!(found.last_scanned_at, Some(at(10)));
    assert_eq!(found.state, Status::Ok);
    assert_eq!(store.find_by_unit("ssh.service").await.unwrap(), None);
    assert_eq!(
        store.list_timers().await.unwrap(),
        std::slice::from_ref(&backup)
    );

    // Registering the discovered unit makes its entry configured, keeping
    // what systemd said and taking the request's alert settings; with a
    // health check, it now waits for the first.
    let (registered, change) = store
        .register_service(
            &new_service(json!({
                "name": "nginx.service", "base_url": "http://127.0.0.1", "health_endpoint": "/",
                "muted": true, "notify_after": 5,
                "maintenance_window": {"schedule": "0 3 * * SUN", "minutes": 60},
            })),
            at(20),
        )
        .await
        .unwrap();
    assert_eq!(registered.id, found.id);
    assert_eq!(
        (registered.state, registered.state_reason.as_deref()),
        (Status::Unknown, Some("not checked yet"))
    );
    let change = change.expect("the status changed");
    assert_eq!(
        (change.service_id, change.old, change.new, change.at),
        (found.id, Status::Ok, Status::Unknown, at(20))
    );
    assert_eq!(registered.status, RegistryStatus::Configured);
    assert_eq!(registered.systemd_state.as_deref(), Some("active"));
    assert_eq!(registered.unit.as_deref(), Some("nginx.service"));
    assert_eq!(registered.port, Some(80));
    assert!(registered.muted);
    assert_eq!(registered.notify_after, Some(5));
    assert_eq!(
        registered.maintenance_window.as_ref().map(|w| w.minutes),
        Some(60)
    );
    // ... and a second registration is a conflict.
    let err = store
        .create_service(&new_service(json!({"name": "nginx.service"})), at(21))
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("name", "nginx.service".into()));

    // A unit the hub stopped or restarted is recorded at once.
    let cron_id = store
        .find_by_unit("cron.service")
        .await
        .unwrap()
        .unwrap()
        .id;
    let killed = UnitState {
        active_state: "failed".into(),
        sub_state: "failed".into(),
        main_pid: None,
        restarts: Some(0),
        result: Some("signal".into()),
        exit_status: Some(9),
        active_since: Some(at(1)),
    };
    let (services, changes) = store
        .set_unit_state("cron.service", &killed, at(30))
        .await
        .unwrap();
    // What it returns is what a read finds.
    assert_eq!(
        services,
        [store.find_by_unit("cron.service").await.unwrap().unwrap()]
    );
    assert_eq!(moves(&changes), [(cron_id, Status::Ok, Status::Failure)]);
    assert_eq!(
        changes[0].reason,
        "the systemd unit failed: killed by SIGKILL"
    );
    let failed_cron = store.find_by_unit("cron.service").await.unwrap().unwrap();
    assert_eq!(
        (
            failed_cron.systemd_state.as_deref(),
            failed_cron.sub_state.as_deref(),
            failed_cron.main_pid
        ),
        (Some("failed"), Some("failed"), None)
    );
    // Restarting over and over is a crash loop, until it stays up a minute.
    let looping = UnitState {
        active_state: "activating".into(),
        sub_state: "auto-restart".into(),
        restarts: Some(5),
        result: Some("exit-code".into()),
        exit_status: Some(1),
        ..killed.clone()
    };
    let (_, changes) = store
        .set_unit_state("cron.service", &looping, at(31))
        .await
        .unwrap();
    assert!(changes.is_empty(), "still FAILURE");
    let cron = store.find_by_unit("cron.service").await.unwrap().unwrap();
    assert_eq!(
        cron.state_reason.as_deref(),
        Some("crash loop: restarted 5 times without staying up 60 s: exit code 1")
    );
    assert_eq!((cron.restarts, cron.exit_status), (Some(5), Some(1)));
    let up = UnitState {
        active_state: "active".into(),
        sub_state: "running".into(),
        main_pid: Some(42),
        active_since: Some(at(32)),
        ..looping.clone()
    };
    let (_, changes) = store
        .set_unit_state("cron.service", &up, at(32))
        .await
        .unwrap();
    assert!(changes.is_empty(), "up for a moment is still the loop");
    let stable = store
        .reconcile_state(cron_id, at(32) + chrono::Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stable.change.map(|c| (c.old, c.new)),
        Some((Status::Failure, Status::Ok))
    );
    assert!(store
        .set_unit_state("ghost.service", &up, at(30))
        .await
        .unwrap()
        .0
        .is_empty());

    // A managed service is linked to the unit behind it.
    store.set_unit_link(web.id, "web.service").await.unwrap();
    assert_eq!(
        store
            .find_by_unit("web.service")
            .await
            .unwrap()
            .map(|s| s.id),
        Some(web.id)
    );

    // The next scan: cron and web's unit are gone, redis appears, nginx moved on.
    let mut nginx_again = nginx.clone();
    nginx_again.main_pid = Some(2000);
    nginx_again.pids = vec![2000];
    let redis_unit = unit("redis.service", "active", Some(6379), RegistryStatus::Raw);
    let counts = store
        .apply_scan(&[nginx_again, redis_unit], &[], at(300))
        .await
        .unwrap();
    assert_eq!(
        (counts.discovered, counts.updated, counts.removed),
        (0, 2, 2)
    );
    assert_eq!(
        moves(&counts.changes),
        {
            let mut expected = vec![
                (cron_id, Status::Ok, Status::Unknown),
                (redis.id, Status::Unknown, Status::Ok),
            ];
            expected.sort_by_key(|m| m.0);
            expected
        },
        "nginx still waits for its first health check"
    );
    let nginx_now = store.get_service(found.id).await.unwrap().unwrap();
    assert_eq!(nginx_now.status, RegistryStatus::Configured);
    assert_eq!(nginx_now.main_pid, Some(2000));
    let redis_now = store.get_service(redis.id).await.unwrap().unwrap();
    assert_eq!(
        redis_now.status,
        RegistryStatus::Configured,
        "a configured service keeps its status"
    );
    assert_eq!(
        redis_now.description.as_deref(),
        Some("Cache"),
        "and what the user wrote"
    );
    assert_eq!(redis_now.unit.as_deref(), Some("redis.service"));
    assert_eq!(redis_now.port, Some(6379));
    let gone = store.get_service(cron_id).await.unwrap().unwrap();
    assert_eq!(gone.systemd_state.as_deref(), Some("removed"));
    assert_eq!(
        (gone.main_pid, gone.pids.len(), gone.ports.len()),
        (None, 0, 0)
    );
    assert_eq!(
        store
            .get_service(web.id)
            .await
            .unwrap()
            .unwrap()
            .systemd_state
            .as_deref(),
        Some("removed")
    );
    assert_eq!(
        store.list_timers().await.unwrap(),
        [TimerView {
            removed: true,
            ..backup
        }]
    );

    // Cleaning up forgets what vanished, except what the user registered.
    assert_eq!(store.delete_removed().await.unwrap(), 1);
    assert_eq!(store.find_by_unit("cron.service").await.unwrap(), None);
    assert!(store.get_service(web.id).await.unwrap().is_some());
    assert!(store.list_timers().await.unwrap().is_empty());
    assert_eq!(store.delete_removed().await.unwrap(), 0);

    // The hub keeps the last scan's summary as a small piece of state.
    assert_eq!(store.get_state("last_scan").await.unwrap(), None);
    store
        .set_state("last_scan", r#"{"discovered":2}"#)
        .await
        .unwrap();
    store
        .set_state("last_scan", r#"{"discovered":0}"#)
        .await
        .unwrap();
    assert_eq!(
        store.get_state("last_scan").await.unwrap().as_deref(),
        Some(r#"{"discovered":0}"#)
    );
    assert_eq!(store.get_state("other").await.unwrap(), None);
}

/// Services that report in: heartbeats with a TTL, push URLs with a period.
#[tokio::test]
async fn heartbeats_and_push_story() {
    let (store, _db) = open().await;
    let first = store
        .heartbeat("backup-job", "10.0.0.7", 60, at(0))
        .await
        .unwrap();
    assert!(first.created);
    let job = first.service.clone();
    assert_eq!(job.name, "backup-job");
    assert_eq!(job.status, RegistryStatus::Configured);
    assert_eq!(job.heartbeat_ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(job.heartbeat_ttl_secs, Some(60));
    assert_eq!(job.last_heartbeat, Some(at(0)));
    assert_eq!(job.state, Status::Ok);
    let change = first.change.expect("registered and on time");
    assert_eq!((change.old, change.new), (Status::Unknown, Status::Ok));
    assert_eq!(change.reason, "heartbeat received on time");

    let second = store
        .heartbeat("backup-job", "10.0.0.8", 60, at(30))
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.change, None);
    assert_eq!(second.service.id, job.id);
    assert_eq!(second.service.heartbeat_ip.as_deref(), Some("10.0.0.8"));
    assert_eq!(second.service.last_heartbeat, Some(at(30)));

    // A polled service's name cannot be taken by a heartbeat.
    let api = store
        .create_service(&new_service(json!({"name": "api", "port": 80})), at(0))
        .await
        .unwrap();
    let err = store
        .heartbeat("api", "10.0.0.9", 60, at(31))
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("name", "api".into()));
    assert_eq!(store.get_service(api.id).await.unwrap(), Some(api.clone()));

    // The deadline: the TTL after the last heartbeat.
    assert!(store.overdue(at(90)).await.unwrap().is_empty());
    let late = store.overdue(at(91)).await.unwrap();
    assert_eq!(moves(&late), [(job.id, Status::Ok, Status::Failure)]);
    assert_eq!(
        late[0].reason,
        "no heartbeat for 61 s (expected within 60 s)"
    );
    assert!(
        store.overdue(at(120)).await.unwrap().is_empty(),
        "a late service is reported late once"
    );
    let back = store
        .heartbeat("backup-job", "10.0.0.8", 60, at(150))
        .await
        .unwrap();
    assert_eq!(
        back.change.map(|c| (c.old, c.new)),
        Some((Status::Failure, Status::Ok))
    );

    // Heartbeat services silent for long are forgotten; others are kept.
    assert!(store
        .remove_silent_heartbeats(at(100))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.remove_silent_heartbeats(at(151)).await.unwrap(),
        [job.id]
    );
    assert_eq!(store.get_service(job.id).await.unwrap(), None);
    assert!(store
        .remove_silent_heartbeats(at(151))
        .await
        .unwrap()
        .is_empty());
    assert!(store.get_service(api.id).await.unwrap().is_some());

    // A push URL: pings within period + grace, else FAILURE.
    let nightly = store
        .create_service(&new_service(json!({"name": "nightly-backup"})), at(1000))
        .await
        .unwrap();
    let token = "lku_nightly";
    let hourly = PushTiming {
        period_secs: 3600,
        grace_secs: 600,
        schedule: None,
    };
    assert!(store
        .set_push_token(nightly.id, Some(&hash(token)), &hourly)
        .await
        .unwrap());
    assert!(!store
        .set_push_token(MISSING, Some(&hash("lku_other")), &hourly)
        .await
        .unwrap());
    let armed = store.get_service(nightly.id).await.unwrap().unwrap();
    assert!(armed.has_push_token);
    assert_eq!(
        (
            armed.push_period_secs,
            armed.push_grace_secs,
            armed.last_push
        ),
        (Some(3600), Some(600), None)
    );
    let waiting = store
        .reconcile_state(nightly.id, at(1000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.status, Status::Unknown);
    assert_eq!(waiting.reason, "waiting for the first ping");

    assert_eq!(
        store
            .record_push(&hash("lku_other"), &ping(Status::Ok, None), at(1000))
            .await
            .unwrap(),
        None
    );
    let (id, change) = store
        .record_push(&hash(token), &ping(Status::Ok, Some("42 files")), at(1000))
        .await
        .unwrap()
        .expect("the token is known");
    assert_eq!(id, nightly.id);
    let change = change.expect("the first ping changes the status");
    assert_eq!((change.old, change.new), (Status::Unknown, Status::Ok));
    assert_eq!(change.reason, "ping: 42 files");
    assert!(store.overdue(at(1000 + 4200)).await.unwrap().is_empty());
    let late = store.overdue(at(1000 + 4201)).await.unwrap();
    assert_eq!(moves(&late), [(nightly.id, Status::Ok, Status::Failure)]);
    assert_eq!(
        late[0].reason,
        "no ping for 4201 s (expected within 4200 s)"
    );

    // A ping carries the status it reports.
    let (_, change) = store
        .record_push(
            &hash(token),
            &ping(Status::Warning, Some("disk 91%")),
            at(5300),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        change.map(|c| (c.old, c.new, c.reason)),
        Some((Status::Failure, Status::Warning, "ping: disk 91%".into()))
    );
    let pinged = store.get_service(nightly.id).await.unwrap().unwrap();
    assert_eq!(pinged.last_push, Some(at(5300)));
    assert_eq!(pinged.push_status.as_deref(), Some("WARNING"));
    assert_eq!(pinged.push_message.as_deref(), Some("disk 91%"));
    assert_eq!(pinged.state, Status::Warning);

    // On a cron schedule instead: due at its next firing after the last
    // ping (03:00 UTC; the last ping was at 23:41:40), plus the grace.
    let nightly_cron = PushTiming {
        schedule: Some(CronSchedule::parse("0 3 * * *", "UTC").unwrap()),
        ..hourly
    };
    assert!(store
        .set_push_token(nightly.id, None, &nightly_cron)
        .await
        .unwrap());
    let scheduled = store.get_service(nightly.id).await.unwrap().unwrap();
    assert_eq!(
        (
            scheduled.push_schedule.as_deref(),
            scheduled.push_tz.as_deref()
        ),
        (Some("0 3 * * *"), Some("UTC"))
    );
    assert!(
        store.overdue(at(17_800)).await.unwrap().is_empty(),
        "on time"
    );
    let late = store.overdue(at(17_801)).await.unwrap();
    assert_eq!(
        moves(&late),
        [(nightly.id, Status::Warning, Status::Failure)]
    );
    assert_eq!(
        late[0].reason,
        "no ping for 12501 s (expected within 12500 s)"
    );
}

/// The replay log hubs follow, and pruning what is old.
#[tokio::test]
async fn event_log_story() {
    let (store, _db) = open().await;
    assert_eq!(store.last_event_id().await.unwrap(), 0);
    assert!(store.events_after(0, 10).await.unwrap().is_empty());
    assert!(store.append_events(&[]).await.unwrap().is_empty());

    let logged = [
        (at(0), "service_created", r#"{"id":1}"#.to_owned()),
        (at(0), "service_updated", r#"{"id":1,"port":80}"#.to_owned()),
        (at(2 * DAY), "service_deleted", r#"{"id":1}"#.to_owned()),
    ];
    let ids = store.append_events(&logged).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    assert_eq!(store.last_event_id().await.unwrap(), ids[2]);
    let expected: Vec<(i64, String, String)> = ids
        .iter()
        .zip(&logged)
        .map(|(id, (_, kind, data))| (*id, (*kind).to_owned(), data.clone()))
        .collect();
    assert_eq!(store.events_after(0, 10).await.unwrap(), expected);
    assert_eq!(store.events_after(ids[0], 1).await.unwrap(), expected[1..2]);
    assert!(store.events_after(ids[2], 10).await.unwrap().is_empty());
    let more = store
        .append_events(&[(at(2 * DAY), "scan", "{}".to_owned())])
        .await
        .unwrap();
    assert_eq!(more.len(), 1);
    assert!(more[0] > ids[2]);
    assert_eq!(store.last_event_id().await.unwrap(), more[0]);

    // Old rows of every kind go, each by its own cut-off.
    let api = store
        .create_service(
            &new_service(json!({"name": "api", "base_url": "http://10.0.0.5",
                                "health_endpoint": "/health"})),
            at(0),
        )
        .await
        .unwrap();
    store
        .record_health_check(&passed(&api, 0, 5))
        .await
        .unwrap();
    store
        .record_health_check(&failed(&api, 2 * DAY, 500))
        .await
        .unwrap();
    for secs in [0, 2 * DAY] {
        store
            .append_audit(
                &audit(Some("admin"), "service.update", AuditOutcome::Ok),
                at(secs),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.status_events(Some(api.id), 10).await.unwrap().len(),
        2
    );
    // One health result, two logged events, one status change, one audit line.
    assert_eq!(store.prune(at(DAY), at(DAY), at(DAY)).await.unwrap(), 5);
    assert_eq!(
        store.health_history(api.id, 10).await.unwrap(),
        [failed(&api, 2 * DAY, 500)]
    );
    assert_eq!(
        store
            .events_after(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        [ids[2], more[0]]
    );
    assert_eq!(
        moves(&store.status_events(Some(api.id), 10).await.unwrap()),
        [(api.id, Status::Ok, Status::Failure)]
    );
    assert_eq!(store.list_audit(10).await.unwrap().len(), 1);
    assert_eq!(
        store.last_event_id().await.unwrap(),
        more[0],
        "ids keep counting"
    );
    // Health results only.
    assert_eq!(store.prune(at(3 * DAY), at(0), at(0)).await.unwrap(), 1);
    assert!(store.health_history(api.id, 10).await.unwrap().is_empty());
    assert_eq!(store.events_after(0, 10).await.unwrap().len(), 2);
    assert_eq!(
        store.status_events(Some(api.id), 10).await.unwrap().len(),
        1
    );
    assert_eq!(store.prune(at(3 * DAY), at(0), at(0)).await.unwrap(), 0);
}

/// Notification channels and the delivery log.
#[tokio::test]
async fn channels_story() {
    let (store, _db) = open().await;
    let webhook = json!({"url": "https://hooks.example.com/lookout"})
        .as_object()
        .unwrap()
        .clone();
    let ops = store
        .create_channel("ops", ChannelKind::Webhook, &webhook, true, at(0))
        .await
        .unwrap();
    assert_eq!(ops.name, "ops");
    assert_eq!(ops.kind, ChannelKind::Webhook);
    assert_eq!(ops.config, webhook);
    assert!(ops.enabled);
    assert_eq!((ops.last_error.clone(), ops.last_sent_at), (None, None));
    assert_eq!(ops.created_at, at(0));
    let err = store
        .create_channel("ops", ChannelKind::Ntfy, &webhook, true, at(1))
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("name", "ops".into()));
    let ntfy = json!({"server": "https://ntfy.sh", "topic": "lookout"})
        .as_object()
        .unwrap()
        .clone();
    let pager = store
        .create_channel("pager", ChannelKind::Ntfy, &ntfy, false, at(2))
        .await
        .unwrap();
    assert!(!pager.enabled);
    assert_eq!(
        store.list_channels().await.unwrap(),
        [ops.clone(), pager.clone()]
    );
    assert_eq!(store.get_channel(ops.id).await.unwrap(), Some(ops.clone()));
    assert_eq!(store.get_channel(MISSING).await.unwrap(), None);

    // Edited: name, kind, config and enabled replaced; a taken name is a
    // conflict; a missing channel is None.
    let edited = store
        .update_channel(pager.id, "phone", ChannelKind::Ntfy, &ntfy, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((edited.name.as_str(), edited.enabled), ("phone", true));
    assert_eq!((edited.id, edited.created_at), (pager.id, pager.created_at));
    assert_eq!(
        conflict_on(
            &store
                .update_channel(pager.id, "ops", ChannelKind::Ntfy, &ntfy, true)
                .await
                .unwrap_err()
        )
        .0,
        "name"
    );
    assert_eq!(
        store
            .update_channel(MISSING, "x", ChannelKind::Ntfy, &ntfy, true)
            .await
            .unwrap(),
        None
    );
    let pager = store
        .update_channel(pager.id, "pager", ChannelKind::Ntfy, &ntfy, false)
        .await
        .unwrap()
        .unwrap();

    // Deliveries keep the channel's last success and last error.
    let api = store
        .create_service(&new_service(json!({"name": "api"})), at(0))
        .await
        .unwrap();
    store
        .record_delivery(ops.id, Some(api.id), "alert", true, 1, None, at(10))
        .await
        .unwrap();
    let sent = store.get_channel(ops.id).await.unwrap().unwrap();
    assert_eq!((sent.last_sent_at, sent.last_error), (Some(at(10)), None));
    store
        .record_delivery(ops.id, None, "test", false, 3, Some("HTTP 500"), at(20))
        .await
        .unwrap();
    let failing = store.get_channel(ops.id).await.unwrap().unwrap();
    assert_eq!(
        (failing.last_sent_at, failing.last_error.as_deref()),
        (Some(at(10)), Some("HTTP 500"))
    );
    store
        .record_delivery(ops.id, Some(api.id), "recovery", true, 2, None, at(30))
        .await
        .unwrap();
    let recovered = store.get_channel(ops.id).await.unwrap().unwrap();
    assert_eq!(
        (recovered.last_sent_at, recovered.last_error),
        (Some(at(30)), None)
    );

    // The log, newest first.
    let log = store.list_deliveries(10).await.unwrap();
    let lines: Vec<_> = log
        .iter()
        .map(|d| {
            (
                d.channel_id,
                d.service_id,
                d.kind.as_str(),
                d.status.as_str(),
                d.attempts,
                d.error.as_deref(),
                d.at,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (ops.id, Some(api.id), "recovery", "sent", 2, None, at(30)),
            (ops.id, None, "test", "failed", 3, Some("HTTP 500"), at(20)),
            (ops.id, Some(api.id), "alert", "sent", 1, None, at(10)),
        ]
    );
    assert_eq!(store.list_deliveries(1).await.unwrap(), log[..1]);

    // A deleted service leaves its deliveries in the log; a deleted channel
    // takes its own with it, and logs nothing more.
    assert!(store.delete_service(api.id).await.unwrap());
    assert!(store
        .list_deliveries(10)
        .await
        .unwrap()
        .iter()
        .all(|d| d.service_id.is_none()));
    store
        .record_delivery(MISSING, None, "test", true, 1, None, at(40))
        .await
        .unwrap();
    assert_eq!(store.list_deliveries(10).await.unwrap().len(), 3);
    assert!(store.delete_channel(ops.id).await.unwrap());
    assert!(!store.delete_channel(ops.id).await.unwrap());
    assert_eq!(store.get_channel(ops.id).await.unwrap(), None);
    assert_eq!(store.list_channels().await.unwrap(), [pager]);
    assert!(store.list_deliveries(10).await.unwrap().is_empty());
}

/// Accounts: the first admin, users, passwords, the last admin, the audit log.
#[tokio::test]
async fn accounts_story() {
    let (store, _db) = open().await;
    assert_eq!(store.count_users().await.unwrap(), 0);
    let admin = store
        .create_first_user(
            &user("admin", Some("admin@example.com"), Role::Admin),
            at(0),
        )
        .await
        .unwrap()
        .expect("the first account");
    assert_eq!(admin.username, "admin");
    assert_eq!(admin.role, Role::Admin);
    assert_eq!(admin.created_at, at(0));
    assert!(
        store
            .create_first_user(&user("eve", None, Role::Admin), at(1))
            .await
            .unwrap()
            .is_none(),
        "the first-run page cannot make a second admin"
    );
    assert_eq!(store.count_users().await.unwrap(), 1);

    let bob = store
        .create_user(&user("Bob", Some("bob@example.com"), Role::Viewer), at(2))
        .await
        .unwrap();
    assert_eq!(
        (bob.role, bob.email.as_deref()),
        (Role::Viewer, Some("bob@example.com"))
    );
    // Names and addresses are unique whatever their case.
    let err = store
        .create_user(&user("BOB", None, Role::Viewer), at(3))
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("username", "BOB".into()));
    let err = store
        .create_user(
            &user("robert", Some("Bob@Example.com"), Role::Viewer),
            at(3),
        )
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("email", "Bob@Example.com".into()));
    // Sign-in takes a name or an address: one namespace for both.
    let err = store
        .create_user(&user("BOB@example.com", None, Role::Admin), at(3))
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("username", "BOB@example.com".into()));
    let err = store
        .create_user(&user("mallory", Some("bob"), Role::Viewer), at(3))
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("email", "bob".into()));
    let carol = store
        .create_user(&user("carol", None, Role::Viewer), at(4))
        .await
        .unwrap();
    assert_eq!(store.count_users().await.unwrap(), 3);

    // Logging in by name or address, whatever the case.
    for login in ["bob", "BOB", "Bob@EXAMPLE.com"] {
        assert_eq!(
            store.find_user(login).await.unwrap().map(|u| u.id),
            Some(bob.id),
            "{login}"
        );
    }
    assert!(store.find_user("nobody").await.unwrap().is_none());
    let got = store.get_user(bob.id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.username.as_str(),
            got.password_hash.as_str(),
            got.created_at
        ),
        ("Bob", bob.password_hash.as_str(), at(2))
    );
    assert!(store.get_user(MISSING).await.unwrap().is_none());
    assert_eq!(
        store
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect::<Vec<_>>(),
        ["admin", "Bob", "carol"],
        "name order, whatever the case"
    );

    // A new password.
    assert!(store
        .set_password(bob.id, "$argon2id$new", at(10))
        .await
        .unwrap());
    assert_eq!(
        store.get_user(bob.id).await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    assert!(!store
        .set_password(MISSING, "$argon2id$x", at(10))
        .await
        .unwrap());

    // The audit log, newest first.
    store
        .append_audit(
            &audit(Some("admin"), "user.create", AuditOutcome::Ok),
            at(20),
        )
        .await
        .unwrap();
    store
        .append_audit(&audit(None, "login", AuditOutcome::Denied), at(21))
        .await
        .unwrap();
    store
        .append_audit(
            &audit(Some("Bob"), "service.delete", AuditOutcome::Failed),
            at(22),
        )
        .await
        .unwrap();
    let lines = store.list_audit(10).await.unwrap();
    assert_eq!(
        lines
            .iter()
            .map(|a| (a.at, a.actor.as_deref(), a.action.as_str(), a.outcome))
            .collect::<Vec<_>>(),
        [
            (at(22), Some("Bob"), "service.delete", AuditOutcome::Failed),
            (at(21), None, "login", AuditOutcome::Denied),
            (at(20), Some("admin"), "user.create", AuditOutcome::Ok),
        ]
    );
    assert!(lines
        .iter()
        .all(|a| a.target.as_deref() == Some("Bob") && a.client.as_deref() == Some("192.0.2.10")));
    let newest = store.list_audit(1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].id, lines[0].id);

    // Deleting: never the last admin; credentials go with their user.
    assert_eq!(
        store.delete_user(admin.id).await.unwrap(),
        DeleteUser::LastAdmin
    );
    assert_eq!(
        store.delete_user(MISSING).await.unwrap(),
        DeleteUser::NotFound
    );
    store
        .insert_credentials(
            &[credential(
                carol.id,
                CredentialKind::Session,
                "lks_carol",
                Role::Viewer,
                "c",
                None,
            )],
            at(30),
        )
        .await
        .unwrap();
    assert_eq!(
        store.delete_user(carol.id).await.unwrap(),
        DeleteUser::Deleted
    );
    assert!(store.get_user(carol.id).await.unwrap().is_none());
    assert_eq!(store.count_rows("credentials").await.unwrap(), 0);
    assert!(store
        .authenticate(&hash("lks_carol"), &[CredentialKind::Session], at(31))
        .await
        .unwrap()
        .is_none());
    let root = store
        .create_user(&user("root", None, Role::Admin), at(40))
        .await
        .unwrap();
    assert_eq!(
        store.delete_user(admin.id).await.unwrap(),
        DeleteUser::Deleted
    );
    assert_eq!(
        store.delete_user(root.id).await.unwrap(),
        DeleteUser::LastAdmin
    );
    assert_eq!(store.count_users().await.unwrap(), 2);
}

/// Two-factor sign-in: a secret and recovery codes set and cleared, each
/// TOTP step and each recovery code good once, and a sign-in waiting for
/// its code found by its challenge until it expires.
#[tokio::test]
async fn two_factor_story() {
    let (store, _db) = open().await;
    let alice = store
        .create_user(&user("alice", None, Role::Admin), at(0))
        .await
        .unwrap();
    assert!(!alice.two_factor() && alice.recovery_codes.is_empty());
    // No secret yet: no step is accepted.
    assert!(!store.spend_totp_step(alice.id, 100).await.unwrap());

    let codes = vec![hash("one"), hash("two")];
    assert!(store
        .set_two_factor(alice.id, Some("JBSWY3DPEHPK3PXP"), &codes)
        .await
        .unwrap());
    assert!(!store.set_two_factor(MISSING, Some("X"), &[]).await.unwrap());
    let found = store.find_user("alice").await.unwrap().unwrap();
    assert_eq!(found.totp_secret.as_deref(), Some("JBSWY3DPEHPK3PXP"));
    assert_eq!(found.recovery_codes, codes);

    // A step once; never one older than the last accepted.
    assert!(store.spend_totp_step(alice.id, 100).await.unwrap());
    assert!(!store.spend_totp_step(alice.id, 100).await.unwrap());
    assert!(!store.spend_totp_step(alice.id, 99).await.unwrap());
    assert!(store.spend_totp_step(alice.id, 101).await.unwrap());

    // A recovery code once.
    assert!(store
        .spend_recovery_code(alice.id, &hash("one"))
        .await
        .unwrap());
    assert!(!store
        .spend_recovery_code(alice.id, &hash("one"))
        .await
        .unwrap());
    assert!(!store
        .spend_recovery_code(alice.id, &hash("three"))
        .await
        .unwrap());
    let left = store.get_user(alice.id).await.unwrap().unwrap();
    assert_eq!(left.recovery_codes, vec![hash("two")]);

    // A sign-in waiting for its code: found by its challenge until it
    // expires; a new one replaces it.
    store
        .set_login_challenge(alice.id, Some((&hash("c1"), at(300))))
        .await
        .unwrap();
    let waiting = store.challenged_user(&hash("c1"), at(10)).await.unwrap();
    assert_eq!(waiting.map(|u| u.id), Some(alice.id));
    assert!(store
        .challenged_user(&hash("c1"), at(300))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .challenged_user(&hash("c2"), at(10))
        .await
        .unwrap()
        .is_none());
    store
        .set_login_challenge(alice.id, Some((&hash("c2"), at(600))))
        .await
        .unwrap();
    assert!(store
        .challenged_user(&hash("c1"), at(10))
        .await
        .unwrap()
        .is_none());
    store.set_login_challenge(alice.id, None).await.unwrap();
    assert!(store
        .challenged_user(&hash("c2"), at(10))
        .await
        .unwrap()
        .is_none());

    // Turned off (a reset): no secret, no codes, no waiting sign-in, and a
    // new secret starts its steps afresh.
    store
        .set_login_challenge(alice.id, Some((&hash("c3"), at(600))))
        .await
        .unwrap();
    assert!(store.set_two_factor(alice.id, None, &[]).await.unwrap());
    let off = store.get_user(alice.id).await.unwrap().unwrap();
    assert!(!off.two_factor() && off.recovery_codes.is_empty());
    assert!(store
        .challenged_user(&hash("c3"), at(10))
        .await
        .unwrap()
        .is_none());
    assert!(!store.spend_totp_step(alice.id, 200).await.unwrap());
    store
        .set_two_factor(alice.id, Some("KRSXG5CTMVRXEZLU"), &[])
        .await
        .unwrap();
    assert!(store.spend_totp_step(alice.id, 50).await.unwrap());
}

/// Credentials: sessions, token pairs and their rotation, API tokens,
/// revocation and pruning.
#[tokio::test]
async fn credentials_story() {
    use CredentialKind::{Access, Api, Refresh, Session};
    let (store, _db) = open().await;
    let alice = store
        .create_first_user(&user("alice", None, Role::Admin), at(0))
        .await
        .unwrap()
        .unwrap();
    let bob = store
        .create_user(&user("Bob", None, Role::Viewer), at(0))
        .await
        .unwrap();

    // A login stores an access and a refresh token at once.
    let login = store
        .insert_credentials(
            &[
                credential(
                    bob.id,
                    Access,
                    "lka_1",
                    Role::Viewer,
                    "login-1",
                    Some(at(15 * MIN)),
                ),
                credential(
                    bob.id,
                    Refresh,
                    "lkr_1",
                    Role::Viewer,
                    "login-1",
                    Some(at(30 * DAY)),
                ),
            ],
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(login.len(), 2);
    let ci = NewCredential {
        name: Some("ci".into()),
        ..credential(alice.id, Api, "lkp_ci", Role::Viewer, "api-1", None)
    };
    // A token for a host's heartbeat script: its scope comes back with it.
    let beat = NewCredential {
        name: Some("nas".into()),
        scope: TokenScope::Heartbeat,
        ..credential(bob.id, Api, "lkp_beat", Role::Admin, "api-2", None)
    };
    let beat_id = store.insert_credentials(&[beat], at(0)).await.unwrap()[0];
    let by_beat = store
        .authenticate(&hash("lkp_beat"), &[Api], at(MIN))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_beat.scope, TokenScope::Heartbeat);
    let bobs = store
        .list_credentials(Some(bob.id), Api, at(MIN))
        .await
        .unwrap();
    assert_eq!(
        bobs.iter()
            .map(|c| (c.name.as_deref(), c.scope))
            .collect::<Vec<_>>(),
        [(Some("nas"), TokenScope::Heartbeat)]
    );
    assert!(store
        .revoke_credential(beat_id, Some(bob.id), at(MIN))
        .await
        .unwrap());
    let alice_creds = store
        .insert_credentials(
            &[
                ci,
                credential(
                    alice.id,
                    Session,
                    "lks_1",
                    Role::Admin,
                    "browser-1",
                    Some(at(7 * DAY)),
                ),
            ],
            at(0),
        )
        .await
        .unwrap();
    let (ci_id, session_id) = (alice_creds[0], alice_creds[1]);

    let who = store
        .authenticate(&hash("lka_1"), &[Access, Api], at(MIN))
        .await
        .unwrap()
        .expect("a valid access token");
    assert_eq!(
        (
            who.user_id,
            who.username.as_str(),
            who.role,
            who.credential_id,
            who.kind,
            who.family.as_str()
        ),
        (bob.id, "Bob", Role::Viewer, login[0], Access, "login-1")
    );
    assert_eq!(who.scope, TokenScope::All);
    for (token, kinds, secs) in [
        ("lka_1", &[Session][..], MIN),
        ("lka_1", &[Access][..], 16 * MIN),
        ("lka_unknown", &[Access][..], MIN),
    ] {
        assert!(
            store
                .authenticate(&hash(token), kinds, at(secs))
                .await
                .unwrap()
                .is_none(),
            "{token} {kinds:?} at +{secs}s"
        );
    }
    // A credential grants the lesser of its role and its user's.
    let by_ci = store
        .authenticate(&hash("lkp_ci"), &[Api], at(2 * MIN))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (by_ci.user_id, by_ci.role, by_ci.credential_id),
        (alice.id, Role::Viewer, ci_id)
    );
    let by_session = store
        .authenticate(&hash("lks_1"), &[Session], at(2 * MIN))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (by_session.role, by_session.credential_id),
        (Role::Admin, session_id)
    );
    // Use is noted at most once a minute.
    store
        .authenticate(&hash("lkp_ci"), &[Api], at(2 * MIN + 30))
        .await
        .unwrap()
        .unwrap();
    let listed = store
        .list_credentials(Some(alice.id), Api, at(3 * MIN))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(
        (
            info.id,
            info.user_id,
            info.kind,
            info.name.as_deref(),
            info.role
        ),
        (ci_id, alice.id, Api, Some("ci"), Role::Viewer)
    );
    assert_eq!(
        (info.created_at, info.expires_at, info.last_used_at),
        (at(0), None, Some(at(2 * MIN)))
    );
    assert!(store
        .list_credentials(Some(bob.id), Api, at(3 * MIN))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .list_credentials(None, Session, at(3 * MIN))
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        [session_id]
    );
    assert!(
        store
            .list_credentials(Some(bob.id), Access, at(16 * MIN))
            .await
            .unwrap()
            .is_empty(),
        "expired credentials are not listed"
    );

    // Refreshing spends the refresh token; the successors take its user,
    // role and family, whatever they ask for.
    let Refreshed::Rotated(rotated) = store
        .rotate_refresh(
            &hash("lkr_1"),
            &[
                credential(
                    alice.id,
                    Access,
                    "lka_2",
                    Role::Admin,
                    "forged",
                    Some(at(25 * MIN)),
                ),
                credential(
                    alice.id,
                    Refresh,
                    "lkr_2",
                    Role::Admin,
                    "forged",
                    Some(at(31 * DAY)),
                ),
            ],
            at(10 * MIN),
        )
        .await
        .unwrap()
    else {
        panic!("a valid refresh token rotates");
    };
    assert_eq!(
        (
            rotated.user_id,
            rotated.username.as_str(),
            rotated.role,
            rotated.kind,
            rotated.family.as_str()
        ),
        (bob.id, "Bob", Role::Viewer, Access, "login-1")
    );
    let by_new = store
        .authenticate(&hash("lka_2"), &[Access], at(11 * MIN))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            by_new.user_id,
            by_new.role,
            by_new.family.as_str(),
            by_new.credential_id
        ),
        (bob.id, Role::Viewer, "login-1", rotated.credential_id)
    );
    // Replaying the spent token revokes the whole family.
    let replayed = store
        .rotate_refresh(
            &hash("lkr_1"),
            &[credential(
                bob.id,
                Access,
                "lka_3",
                Role::Viewer,
                "login-1",
                None,
            )],
            at(12 * MIN),
        )
        .await
        .unwrap();
    assert!(
        matches!(&replayed, Refreshed::Replayed { username } if username == "Bob"),
        "{replayed:?}"
    );
    for token in ["lka_1", "lka_2", "lka_3"] {
        assert!(
            store
                .authenticate(&hash(token), &[Access], at(12 * MIN))
                .await
                .unwrap()
                .is_none(),
            "{token} outlived its family"
        );
    }
    assert!(matches!(
        store
            .rotate_refresh(&hash("lkr_2"), &[], at(13 * MIN))
            .await
            .unwrap(),
        Refreshed::Replayed { .. }
    ));
    assert!(matches!(
        store
            .rotate_refresh(&hash("lkr_unknown"), &[], at(13 * MIN))
            .await
            .unwrap(),
        Refreshed::Invalid
    ));
    store
        .insert_credentials(
            &[credential(
                bob.id,
                Refresh,
                "lkr_short",
                Role::Viewer,
                "login-2",
                Some(at(20 * MIN)),
            )],
            at(14 * MIN),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .rotate_refresh(&hash("lkr_short"), &[], at(21 * MIN))
            .await
            .unwrap(),
        Refreshed::Invalid
    ));

    // Revoking one credential: only its owner's, once.
    assert!(!store
        .revoke_credential(ci_id, Some(bob.id), at(22 * MIN))
        .await
        .unwrap());
    assert!(store
        .authenticate(&hash("lkp_ci"), &[Api], at(22 * MIN))
        .await
        .unwrap()
        .is_some());
    assert!(store
        .revoke_credential(ci_id, Some(alice.id), at(22 * MIN))
        .await
        .unwrap());
    assert!(!store
        .revoke_credential(ci_id, Some(alice.id), at(22 * MIN))
        .await
        .unwrap());
    assert!(!store
        .revoke_credential(MISSING, None, at(22 * MIN))
        .await
        .unwrap());
    assert!(store
        .authenticate(&hash("lkp_ci"), &[Api], at(22 * MIN))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_credentials(Some(alice.id), Api, at(22 * MIN))
        .await
        .unwrap()
        .is_empty());
    let bob_session = store
        .insert_credentials(
            &[credential(
                bob.id,
                Session,
                "lks_bob",
                Role::Viewer,
                "browser-2",
                Some(at(7 * DAY)),
            )],
            at(22 * MIN),
        )
        .await
        .unwrap();
    assert!(
        store
            .revoke_credential(bob_session[0], None, at(22 * MIN))
            .await
            .unwrap(),
        "an admin revokes anyone's"
    );

    // Revoking a login's family.
    assert_eq!(
        store
            .revoke_family("browser-1", at(23 * MIN))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .revoke_family("browser-1", at(23 * MIN))
            .await
            .unwrap(),
        0
    );
    assert!(store
        .authenticate(&hash("lks_1"), &[Session], at(23 * MIN))
        .await
        .unwrap()
        .is_none());

    // A new password signs the user out everywhere.
    store
        .insert_credentials(
            &[credential(
                bob.id,
                Session,
                "lks_bob_2",
                Role::Viewer,
                "browser-3",
                Some(at(7 * DAY)),
            )],
            at(24 * MIN),
        )
        .await
        .unwrap();
    assert!(store
        .set_password(bob.id, "$argon2id$new", at(25 * MIN))
        .await
        .unwrap());
    assert!(store
        .authenticate(&hash("lks_bob_2"), &[Session], at(25 * MIN))
        .await
        .unwrap()
        .is_none());

    // Pruning forgets expired and revoked credentials, except spent refresh
    // tokens before they expire: replayed, they still reveal a stolen login.
    assert_eq!(store.count_rows("credentials").await.unwrap(), 10);
    assert_eq!(store.prune_credentials(at(HOUR)).await.unwrap(), 8);
    assert_eq!(store.count_rows("credentials").await.unwrap(), 2);
    assert!(matches!(
        store
            .rotate_refresh(&hash("lkr_1"), &[], at(2 * HOUR))
            .await
            .unwrap(),
        Refreshed::Replayed { .. }
    ));
    assert_eq!(store.prune_credentials(at(HOUR)).await.unwrap(), 0);
}

/// Agents: a server is provisioned, claimed, heard from; its checks and
/// their results; revoked and deleted.
#[tokio::test]
async fn agents_story() {
    let (store, _db) = open().await;
    let web01 = store
        .create_server(
            &NewServer {
                name: "web-01".into(),
                labels: vec!["prod".into(), "eu".into()],
                agent_id: "agt-web-01".into(),
                claim_hash: hash("lkc_web01"),
                claim_expires_at: at(HOUR),
            },
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(web01.name, "web-01");
    assert_eq!(web01.labels, ["prod", "eu"]);
    assert_eq!(web01.agent_id, "agt-web-01");
    assert!(!web01.claimed && !web01.revoked);
    assert_eq!(
        (web01.last_seen, web01.heartbeat_secs, web01.created_at),
        (None, 10, at(0))
    );
    assert!(!web01.online(at(0)));
    let err = store
        .create_server(
            &NewServer {
                name: "web-01".into(),
                labels: vec![],
                agent_id: "agt-other".into(),
                claim_hash: hash("lkc_other"),
                claim_expires_at: at(HOUR),
            },
            at(1),
        )
        .await
        .unwrap_err();
    assert_eq!(conflict_on(&err), ("server_name", "web-01".into()));
    let web02 = store
        .create_server(
            &NewServer {
                name: "web-02".into(),
                labels: vec![],
                agent_id: "agt-web-02".into(),
                claim_hash: hash("lkc_web02"),
                claim_expires_at: at(MIN),
            },
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(
        store.list_servers().await.unwrap(),
        [web01.clone(), web02.clone()]
    );
    assert_eq!(
        store.get_server(web02.id).await.unwrap(),
        Some(web02.clone())
    );
    assert_eq!(store.get_server(MISSING).await.unwrap(), None);

    // A claim token is spent once, before it expires.
    assert!(store
        .claim_server(&hash("lkc_web02"), &hash("lkk_web02"), None, at(MIN + 1))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .claim_server(&hash("lkc_wrong"), &hash("lkk_x"), None, at(MIN))
        .await
        .unwrap()
        .is_none());
    let claimed = store
        .claim_server(
            &hash("lkc_web01"),
            &hash("lkk_web01"),
            Some("web-01.example.com"),
            at(MIN),
        )
        .await
        .unwrap()
        .expect("a valid claim");
    assert_eq!(claimed.id, web01.id);
    assert!(claimed.claimed);
    assert_eq!(claimed.hostname.as_deref(), Some("web-01.example.com"));
    assert!(store
        .claim_server(&hash("lkc_web01"), &hash("lkk_again"), None, at(MIN))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .authenticate_agent("agt-web-01", &hash("lkk_web01"))
            .await
            .unwrap()
            .map(|s| s.id),
        Some(web01.id)
    );
    for (agent, key) in [("agt-web-01", "lkk_wrong"), ("agt-web-02", "lkk_web01")] {
        assert!(store
            .authenticate_agent(agent, &hash(key))
            .await
            .unwrap()
            .is_none());
    }

    // The agent says hello.
    let t1 = 10 * MIN;
    assert!(store
        .agent_seen(web01.id, 10, Some("1.2.3"), at(t1))
        .await
        .unwrap()
        .is_empty());
    let seen = store.get_server(web01.id).await.unwrap().unwrap();
    assert_eq!(
        (
            seen.last_seen,
            seen.heartbeat_secs,
            seen.agent_version.as_deref()
        ),
        (Some(at(t1)), 10, Some("1.2.3"))
    );
    assert!(seen.online(at(t1 + 30)) && !seen.online(at(t1 + 31)));

    // Its checks become services; a name already taken gets the server's id.
    let taken = store
        .create_service(&new_service(json!({"name": "certs@web-01"})), at(0))
        .await
        .unwrap();
    let declared = store
        .set_server_checks(
            web01.id,
            &[
                check_decl("disk-usage", "hourly"),
                check_decl("backups", "daily"),
            ],
            at(t1),
        )
        .await
        .unwrap();
    assert_eq!(declared.created.len(), 2);
    assert!(declared.updated.is_empty() && declared.deleted.is_empty());
    assert!(
        declared.changes.is_empty(),
        "a new check waits for its first result"
    );
    let (disk, backups) = (declared.created[0], declared.created[1]);
    let disk_service = store.get_service(disk).await.unwrap().unwrap();
    assert_eq!(disk_service.name, "disk-usage@web-01");
    assert_eq!(disk_service.server_id, Some(web01.id));
    assert_eq!(disk_service.check_name.as_deref(), Some("disk-usage"));
    assert_eq!(disk_service.check_schedule.as_deref(), Some("hourly"));
    assert_eq!(
        disk_service.description.as_deref(),
        Some("Checks disk-usage")
    );
    assert_eq!(disk_service.state, Status::Unknown);
    assert_eq!(
        disk_service.state_reason.as_deref(),
        Some("waiting for the first result")
    );
    let same = store
        .set_server_checks(
            web01.id,
            &[
                check_decl("disk-usage", "hourly"),
                check_decl("backups", "daily"),
            ],
            at(t1 + 1),
        )
        .await
        .unwrap();
    assert!(same.created.is_empty() && same.updated.is_empty() && same.deleted.is_empty());
    let grown = store
        .set_server_checks(
            web01.id,
            &[
                check_decl("disk-usage", "*/30 * * * *"),
                check_decl("backups", "daily"),
                check_decl("certs", "weekly"),
            ],
            at(t1 + 2),
        )
        .await
        .unwrap();
    assert_eq!(grown.updated, [disk]);
    assert_eq!(grown.created.len(), 1);
    let certs = grown.created[0];
    assert_eq!(
        store.get_service(certs).await.unwrap().unwrap().name,
        format!("certs@web-01#{}", web01.id)
    );
    assert!(store.get_service(taken.id).await.unwrap().is_some());
    let shrunk = store
        .set_server_checks(
            web01.id,
            &[
                check_decl("disk-usage", "*/30 * * * *"),
                check_decl("backups", "daily"),
            ],
            at(t1 + 3),
        )
        .await
        .unwrap();
    assert_eq!(shrunk.deleted, [certs]);
    assert_eq!(store.get_service(certs).await.unwrap(), None);

    // Results: stored once, the newest is the check's status.
    let batch = [
        result("disk-usage", t1, 0, LineStatus::Ok, "41% used"),
        result("disk-usage", t1, 1, LineStatus::Warning, "91% used"),
        result(
            "backups",
            t1 - MIN,
            0,
            LineStatus::Failure,
            "last backup 3 days ago",
        ),
    ];
    let ingested = store
        .record_results(web01.id, &batch, at(t1 + 5))
        .await
        .unwrap();
    assert_eq!(
        ingested
            .results
            .iter()
            .map(|(name, r)| (
                name.as_str(),
                r.service_id,
                r.at,
                r.ordinal,
                r.status,
                r.received_at
            ))
            .collect::<Vec<_>>(),
        [
            ("disk-usage", disk, at(t1), 0, LineStatus::Ok, at(t1 + 5)),
            (
                "disk-usage",
                disk,
                at(t1),
                1,
                LineStatus::Warning,
                at(t1 + 5)
            ),
            (
                "backups",
                backups,
                at(t1 - MIN),
                0,
                LineStatus::Failure,
                at(t1 + 5)
            ),
        ]
    );
    assert_eq!(
        moves(&ingested.changes),
        [
            (disk, Status::Unknown, Status::Warning),
            (backups, Status::Unknown, Status::Failure)
        ]
    );
    assert_eq!(ingested.updated, [disk, backups]);
    assert!(ingested.created.is_empty());
    let replay = store
        .record_results(web01.id, &batch, at(t1 + 6))
        .await
        .unwrap();
    assert!(replay.results.is_empty() && replay.changes.is_empty() && replay.updated.is_empty());
    // An older result sent late joins the history, not the status.
    let late = store
        .record_results(
            web01.id,
            &[result(
                "disk-usage",
                t1 - 10 * MIN,
                0,
                LineStatus::Ok,
                "40% used",
            )],
            at(t1 + 7),
        )
        .await
        .unwrap();
    assert_eq!(late.results.len(), 1);
    assert!(late.changes.is_empty());
    let disk_now = store.get_service(disk).await.unwrap().unwrap();
    assert_eq!(
        (
            disk_now.check_status.as_deref(),
            disk_now.check_message.as_deref(),
            disk_now.check_at
        ),
        (Some("WARNING"), Some("91% used"), Some(at(t1)))
    );
    assert_eq!(disk_now.state, Status::Warning);
    assert_eq!(
        store
            .check_results(disk, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.at, r.ordinal, r.message.as_str()))
            .collect::<Vec<_>>(),
        [
            (at(t1), 1, "91% used"),
            (at(t1), 0, "41% used"),
            (at(t1 - 10 * MIN), 0, "40% used")
        ]
    );
    assert_eq!(store.check_results(disk, 1).await.unwrap().len(), 1);
    let cursors = BTreeMap::from([
        (
            "backups".to_owned(),
            Cursor {
                timestamp: at(t1 - MIN),
                ordinal: 0,
            },
        ),
        (
            "disk-usage".to_owned(),
            Cursor {
                timestamp: at(t1),
                ordinal: 1,
            },
        ),
    ]);
    assert_eq!(store.result_cursors(web01.id).await.unwrap(), cursors);
    assert!(store.result_cursors(web02.id).await.unwrap().is_empty());

    // A silent agent's checks turn UNKNOWN; they come back with it.
    let silent = store.overdue(at(t1 + 31)).await.unwrap();
    assert_eq!(
        moves(&silent),
        [
            (disk, Status::Warning, Status::Unknown),
            (backups, Status::Failure, Status::Unknown)
        ]
    );
    assert!(silent.iter().all(|c| c.reason == "the agent is offline"));
    let back = store
        .agent_seen(web01.id, 10, None, at(t1 + 40))
        .await
        .unwrap();
    assert_eq!(
        moves(&back),
        [
            (disk, Status::Unknown, Status::Warning),
            (backups, Status::Unknown, Status::Failure)
        ]
    );
    assert!(store
        .agent_seen(web01.id, 10, None, at(t1 + 45))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .get_server(web01.id)
            .await
            .unwrap()
            .unwrap()
            .agent_version
            .as_deref(),
        Some("1.2.3"),
        "a heartbeat without a version keeps the known one"
    );

    // The host's last scan.
    let scan = json!({"units": 12, "failed": ["cron.service"]});
    store
        .set_server_scan(web01.id, &scan, at(t1 + 50))
        .await
        .unwrap();
    let scanned = store.get_server(web01.id).await.unwrap().unwrap();
    assert_eq!(
        (scanned.scan, scanned.scanned_at),
        (Some(scan), Some(at(t1 + 50)))
    );

    // Pruning keeps each check's newest result: the cursor its agent resumes from.
    assert_eq!(store.prune(at(t1 + DAY), at(0), at(0)).await.unwrap(), 1);
    assert_eq!(store.result_cursors(web01.id).await.unwrap(), cursors);
    assert_eq!(store.check_results(disk, 10).await.unwrap().len(), 2);
    assert_eq!(store.check_results(backups, 10).await.unwrap().len(), 1);

    // Nothing is stored for a server that does not exist.
    let nowhere = store
        .set_server_checks(MISSING, &[check_decl("x", "daily")], at(t1))
        .await
        .unwrap();
    assert!(nowhere.created.is_empty() && nowhere.changes.is_empty());
    let nowhere = store
        .record_results(MISSING, &[result("x", t1, 0, LineStatus::Ok, "")], at(t1))
        .await
        .unwrap();
    assert!(nowhere.results.is_empty() && nowhere.created.is_empty());

    // Revoking: the key stops working, the checks turn UNKNOWN.
    let revoked = store
        .revoke_server(web01.id, at(t1 + 60))
        .await
        .unwrap()
        .expect("the server exists");
    assert_eq!(
        moves(&revoked),
        [
            (disk, Status::Warning, Status::Unknown),
            (backups, Status::Failure, Status::Unknown)
        ]
    );
    assert!(store
        .authenticate_agent("agt-web-01", &hash("lkk_web01"))
        .await
        .unwrap()
        .is_none());
    let gone = store.get_server(web01.id).await.unwrap().unwrap();
    assert!(gone.revoked && !gone.online(at(t1 + 60)));
    assert_eq!(
        store.revoke_server(MISSING, at(t1 + 60)).await.unwrap(),
        None
    );

    // Deleting: the server, its checks and their results.
    let mut deleted = store.delete_server(web01.id).await.unwrap().unwrap();
    deleted.sort_unstable();
    assert_eq!(deleted, [disk, backups]);
    assert_eq!(store.get_service(disk).await.unwrap(), None);
    assert!(store.check_results(disk, 10).await.unwrap().is_empty());
    assert_eq!(store.delete_server(web01.id).await.unwrap(), None);
    assert_eq!(
        store.list_servers().await.unwrap(),
        std::slice::from_ref(&web02)
    );

    // A server has at most MAX_CHECKS_PER_SERVER checks: more are refused,
    // declared or reported, and nothing of them is stored.
    let max = usize::try_from(lookout_hub::store::agents::MAX_CHECKS_PER_SERVER).unwrap();
    let many: Vec<CheckDecl> = (0..max + 2)
        .map(|i| check_decl(&format!("c{i}"), "hourly"))
        .collect();
    let ingested = store
        .set_server_checks(web02.id, &many, at(t1 + 70))
        .await
        .unwrap();
    assert_eq!(ingested.created.len(), max);
    assert_eq!(
        ingested.refused,
        [format!("c{max}"), format!("c{}", max + 1)]
    );
    let late = StatusUpdate {
        service_name: "one-more".into(),
        timestamp: at(t1 + 71),
        ordinal: 0,
        status: LineStatus::Ok,
        message: "made up".into(),
    };
    let ingested = store
        .record_results(web02.id, &[late], at(t1 + 72))
        .await
        .unwrap();
    assert_eq!(ingested.refused, ["one-more"]);
    assert!(ingested.results.is_empty() && ingested.created.is_empty());
}

/// Several agents' messages written in one transaction, as a busy hub
/// writes them: each gets its own answer, in order; one from a server that
/// is gone changes nothing, and the others are kept.
#[tokio::test]
async fn results_together_story() {
    let (store, _db) = open().await;
    let server = |name: &str| NewServer {
        name: name.into(),
        labels: vec![],
        agent_id: format!("agt-{name}"),
        claim_hash: hash(&format!("lkc_{name}")),
        claim_expires_at: at(HOUR),
    };
    let a = store.create_server(&server("a"), at(0)).await.unwrap();
    let b = store.create_server(&server("b"), at(0)).await.unwrap();
    for s in [&a, &b] {
        store.agent_seen(s.id, 10, None, at(10)).await.unwrap();
    }
    let message = |server_id: i64, status: LineStatus, text: &str| Results {
        server_id,
        updates: vec![result("disk", 10, 0, status, text)],
        received_at: at(11),
    };
    let done = store
        .record_results_together(&[
            message(a.id, LineStatus::Ok, "a is fine"),
            message(MISSING, LineStatus::Ok, "from nowhere"),
            message(b.id, LineStatus::Failure, "b is full"),
        ])
        .await
        .unwrap();
    assert_eq!(done.len(), 3);
    assert!(done[1].results.is_empty() && done[1].created.is_empty());
    for (ingested, server, status, text) in [
        (&done[0], &a, Status::Ok, "a is fine"),
        (&done[2], &b, Status::Failure, "b is full"),
    ] {
        assert_eq!(ingested.created.len(), 1, "{}", server.name);
        assert_eq!(ingested.results[0].1.message, text);
        // The service as the write left it, so nothing reads it back.
        let written = &ingested.written[0];
        assert_eq!(written.name, format!("disk@{}", server.name));
        assert_eq!(
            (written.check_message.as_deref(), written.state),
            (Some(text), status)
        );
        assert_eq!(
            store.get_service(written.id).await.unwrap().as_ref(),
            Some(written)
        );
    }
    assert_eq!(store.count_rows("check_results").await.unwrap(), 2);
}

/// Batches written side by side, as many as the store takes (one at a time
/// on SQLite, several on PostgreSQL), each in its servers' order as the
/// registry writes them: every one goes in, none waits on another's locks
/// for good. (In opposite orders, PostgreSQL finds a deadlock and fails one
/// of them.)
#[tokio::test]
async fn batches_side_by_side_story() {
    let (store, _db) = open().await;
    let side_by_side = store.concurrent_writes();
    match store.backend() {
        Backend::Sqlite => assert_eq!(side_by_side, 1),
        Backend::Postgres => assert!(side_by_side > 1, "{side_by_side}"),
    }
    let mut servers = Vec::new();
    for name in ["a", "b", "c", "d", "e", "f"] {
        let server = store
            .create_server(
                &NewServer {
                    name: name.into(),
                    labels: vec![],
                    agent_id: format!("agt-{name}"),
                    claim_hash: hash(&format!("lkc_{name}")),
                    claim_expires_at: at(HOUR),
                },
                at(0),
            )
            .await
            .unwrap();
        store.agent_seen(server.id, 10, None, at(10)).await.unwrap();
        servers.push(server.id);
    }
    servers.sort_unstable();
    let writers = side_by_side.max(2) * 2;
    // The checks exist (a batch creating the same check as another fails
    // whole, and the registry writes its messages again one by one).
    let first: Vec<Results> = servers
        .iter()
        .map(|&server_id| Results {
            server_id,
            updates: vec![result("disk", 15, 0, LineStatus::Ok, "fine")],
            received_at: at(15),
        })
        .collect();
    store.record_results_together(&first).await.unwrap();
    for round in 0..5 {
        let batches = (0..writers).map(|w| {
            let store = store.clone();
            // Every batch writes to every server, in the servers' order.
            let batch: Vec<Results> = servers
                .iter()
                .map(|&server_id| Results {
                    server_id,
                    updates: vec![result("disk", 20 + round, w as u32, LineStatus::Ok, "fine")],
                    received_at: at(20 + round),
                })
                .collect();
            tokio::spawn(async move { store.record_results_together(&batch).await })
        });
        for done in futures::future::join_all(batches).await {
            assert_eq!(done.unwrap().unwrap().len(), servers.len());
        }
    }
    // A result older than one already in is not stored again; the first
    // of each round on each server is.
    let stored = store.count_rows("check_results").await.unwrap();
    let servers = servers.len() as u64;
    assert!(
        (6 * servers..=(1 + 5 * writers as u64) * servers).contains(&stored),
        "{stored}"
    );
}

/// Hubs sharing one database: the health checks split between them, and a
/// once-per-database job run by one hub at a time.
#[tokio::test]
async fn leases_story() {
    let (store, _db) = open().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c", "d"] {
        ids.push(
            store
                .create_service(&new_service(json!({"name": name, "port": 80})), at(0))
                .await
                .unwrap()
                .id,
        );
    }
    // A unit nobody registered is nobody's to check.
    store
        .apply_scan(
            &[unit(
                "nginx.service",
                "active",
                Some(80),
                RegistryStatus::Discovered,
            )],
            &[],
            at(0),
        )
        .await
        .unwrap();
    let set = |of: &[i64]| of.iter().copied().collect::<HashSet<i64>>();
    let lease = Duration::from_secs(30);

    let a = store.check_leases("hub-a", at(0), lease).await.unwrap();
    assert_eq!(
        a,
        CheckLeases {
            owned: set(&ids),
            hubs: 1,
            next_foreign_expiry: None
        }
    );
    // A second hub finds everything taken until the first one gives back.
    let b = store.check_leases("hub-b", at(1), lease).await.unwrap();
    assert_eq!(
        b,
        CheckLeases {
            owned: set(&[]),
            hubs: 2,
            next_foreign_expiry: Some(at(30))
        }
    );
    let a = store.check_leases("hub-a", at(2), lease).await.unwrap();
    assert_eq!(
        (a.owned, a.hubs),
        (set(&ids[..2]), 2),
        "over its share, the highest ids go back"
    );
    let b = store.check_leases("hub-b", at(3), lease).await.unwrap();
    assert_eq!(
        b,
        CheckLeases {
            owned: set(&ids[2..]),
            hubs: 2,
            next_foreign_expiry: Some(at(32))
        }
    );
    // hub-b stops renewing: one lease period later, hub-a takes its checks.
    let a = store.check_leases("hub-a", at(40), lease).await.unwrap();
    assert_eq!(
        a,
        CheckLeases {
            owned: set(&ids),
            hubs: 1,
            next_foreign_expiry: None
        }
    );
    // It comes back: a live hub's lease is never taken, so it waits.
    let b = store.check_leases("hub-b", at(41), lease).await.unwrap();
    assert_eq!(
        b,
        CheckLeases {
            owned: set(&[]),
            hubs: 2,
            next_foreign_expiry: Some(at(70))
        }
    );
    let a = store.check_leases("hub-a", at(42), lease).await.unwrap();
    let b = store.check_leases("hub-b", at(43), lease).await.unwrap();
    assert!(
        a.owned.is_disjoint(&b.owned),
        "two hubs never hold the same service"
    );
    assert_eq!(
        a.owned.union(&b.owned).copied().collect::<HashSet<_>>(),
        set(&ids)
    );
    assert_eq!((a.owned.len(), b.owned.len()), (2, 2));
    // A hub that stops cleanly hands over at once.
    store.release_leases("hub-a").await.unwrap();
    let b = store.check_leases("hub-b", at(44), lease).await.unwrap();
    assert_eq!(
        b,
        CheckLeases {
            owned: set(&ids),
            hubs: 1,
            next_foreign_expiry: None
        }
    );

    // A job's lease: one holder at a time, renewed by it, taken over when it lapses.
    assert!(store
        .job_lease("prune", "hub-a", at(100), lease)
        .await
        .unwrap());
    assert!(!store
        .job_lease("prune", "hub-b", at(101), lease)
        .await
        .unwrap());
    assert!(store
        .job_lease("prune", "hub-a", at(110), lease)
        .await
        .unwrap());
    assert!(!store
        .job_lease("prune", "hub-b", at(139), lease)
        .await
        .unwrap());
    assert!(store
        .job_lease("prune", "hub-b", at(141), lease)
        .await
        .unwrap());
    assert!(!store
        .job_lease("prune", "hub-a", at(142), lease)
        .await
        .unwrap());
    assert!(
        store
            .job_lease("scan", "hub-a", at(142), lease)
            .await
            .unwrap(),
        "each job has its own lease"
    );
    store.release_leases("hub-b").await.unwrap();
    assert!(store
        .job_lease("prune", "hub-a", at(143), lease)
        .await
        .unwrap());
}

/// The whole database as one document, loaded into a new database exactly.
#[tokio::test]
async fn export_import_story() {
    let (store, _db) = open().await;
    let engine = match store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let newest_migration = std::fs::read_dir(format!(
        "{}/../store/migrations/{engine}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .filter_map(|e| {
        e.ok()?
            .file_name()
            .to_str()?
            .split('_')
            .next()?
            .parse::<i64>()
            .ok()
    })
    .max()
    .unwrap();
    let version = store.schema_version().await.unwrap();
    assert_eq!(version, newest_migration, "every migration is applied");

    let mut tables = store.table_names().await.unwrap();
    tables.sort();
    let mut expected: Vec<String> = EXPORT_TABLES
        .iter()
        .chain(COORDINATION_TABLES)
        .map(|t| (*t).to_owned())
        .collect();
    expected.sort();
    assert_eq!(tables, expected);
    for table in EXPORT_TABLES {
        assert_eq!(store.count_rows(table).await.unwrap(), 0, "{table}");
    }
    for table in ["hubs", "users; DROP TABLE users", "_sqlx_migrations"] {
        assert!(
            refusal(store.count_rows(table).await).contains("no table"),
            "{table}"
        );
    }

    // A little of everything.
    let admin = store
        .create_first_user(
            &user("admin", Some("admin@example.com"), Role::Admin),
            at(0),
        )
        .await
        .unwrap()
        .unwrap();
    store
        .insert_credentials(
            &[credential(
                admin.id,
                CredentialKind::Api,
                "lkp_backup",
                Role::Admin,
                "api-1",
                None,
            )],
            at(0),
        )
        .await
        .unwrap();
    store
        .append_audit(
            &audit(Some("admin"), "user.create", AuditOutcome::Ok),
            at(0),
        )
        .await
        .unwrap();
    store.set_state("last_scan", "{}").await.unwrap();
    let config = json!({"url": "https://hooks.example.com/x"})
        .as_object()
        .unwrap()
        .clone();
    let channel = store
        .create_channel("ops", ChannelKind::Webhook, &config, true, at(0))
        .await
        .unwrap();
    let api = store
        .create_service(
            &new_service(json!({"name": "api", "base_url": "http://10.0.0.5",
                                "health_endpoint": "/health"})),
            at(0),
        )
        .await
        .unwrap();
    store
        .record_health_check(&passed(&api, 10, 7))
        .await
        .unwrap();
    store
        .record_delivery(channel.id, Some(api.id), "alert", true, 1, None, at(11))
        .await
        .unwrap();
    store
        .apply_scan(
            &[],
            &[timer("backup.timer", "backup.service", at(13))],
            at(13),
        )
        .await
        .unwrap();
    let server = store
        .create_server(
            &NewServer {
                name: "web-01".into(),
                labels: vec!["prod".into()],
                agent_id: "agt-1".into(),
                claim_hash: hash("lkc_1"),
                claim_expires_at: at(HOUR),
            },
            at(14),
        )
        .await
        .unwrap();
    store
        .append_events(&[(at(16), "service_created", "{}".to_owned())])
        .await
        .unwrap();
    // Coordination rows: not data, not exported.
    store
        .check_leases("hub-a", at(17), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(store
        .job_lease("prune", "hub-a", at(17), Duration::from_secs(30))
        .await
        .unwrap());

    let services = store.list_services(ServiceFilter::All).await.unwrap();
    assert_eq!(
        store.count_rows("services").await.unwrap(),
        services.len() as u64
    );
    for (table, rows) in [
        ("users", 1),
        ("credentials", 1),
        ("audit_log", 1),
        ("hub_state", 1),
        ("channels", 1),
        ("servers", 1),
        ("services", 1),
        ("health_checks", 1),
        ("status_events", 1),
        ("deliveries", 1),
        ("check_results", 0),
        ("event_log", 1),
        ("timers", 1),
    ] {
        assert_eq!(store.count_rows(table).await.unwrap(), rows, "{table}");
    }

    let dump = store.export(at(100)).await.unwrap();
    assert_eq!(dump["format"], "lookout-export");
    assert_eq!(dump["version"], 1);
    assert_eq!(dump["schema"], version);
    assert_eq!(dump["exported_at"], json!(at(100)));
    let dumped = dump["tables"].as_object().unwrap();
    assert_eq!(
        dumped.keys().map(String::as_str).collect::<HashSet<_>>(),
        EXPORT_TABLES.iter().copied().collect::<HashSet<_>>()
    );
    let mut total = 0;
    for table in EXPORT_TABLES {
        let rows = dumped[*table].as_array().unwrap().len() as u64;
        assert_eq!(rows, store.count_rows(table).await.unwrap(), "{table}");
        total += rows;
    }
    assert_eq!(
        dumped["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        {
            let mut ids: Vec<i64> = services.iter().map(|s| s.id).collect();
            ids.sort_unstable();
            ids
        },
        "rows in id order"
    );

    // Into a new database: the same rows, and a store that works.
    let (copy, _copy_db) = open().await;
    assert_eq!(copy.import(&dump).await.unwrap(), total);
    assert_eq!(copy.export(at(100)).await.unwrap(), dump);
    assert_eq!(
        copy.list_services(ServiceFilter::All).await.unwrap(),
        services
    );
    assert_eq!(
        copy.authenticate(&hash("lkp_backup"), &[CredentialKind::Api], at(200))
            .await
            .unwrap()
            .map(|a| a.username),
        Some("admin".into())
    );
    assert_eq!(
        copy.table_names().await.unwrap().len(),
        tables.len(),
        "the copy has the same schema"
    );
    let newer = copy
        .create_service(&new_service(json!({"name": "after-import"})), at(200))
        .await
        .unwrap();
    assert!(
        services.iter().all(|s| s.id < newer.id),
        "new rows number after the imported ones"
    );

    // Only into an empty database, and all or nothing.
    assert!(refusal(copy.import(&dump).await).contains("not empty"));
    let (third, _third_db) = open().await;
    let mut other_format = dump.clone();
    other_format["format"] = json!("something-else");
    assert!(refusal(third.import(&other_format).await).contains("not a lookout export"));
    let mut other_version = dump.clone();
    other_version["version"] = json!(99);
    assert!(refusal(third.import(&other_version).await).contains("format version"));
    let mut other_schema = dump.clone();
    other_schema["schema"] = json!(version + 1);
    assert!(refusal(third.import(&other_schema).await).contains("schema version"));
    let mut dangling = dump.clone();
    dangling["tables"]["services"] = json!([]);
    assert!(refusal(third.import(&dangling).await).contains("do not fit together"));
    for table in EXPORT_TABLES {
        assert_eq!(
            third.count_rows(table).await.unwrap(),
            0,
            "{table} kept rows"
        );
    }
    assert_eq!(third.import(&dump).await.unwrap(), total);

    // Services of every kind side by side: polled, sending heartbeats, found
    // by a scan, run by an agent (with a result).
    store
        .heartbeat("cron-job", "10.0.0.7", 60, at(200))
        .await
        .unwrap();
    store
        .apply_scan(
            &[unit(
                "nginx.service",
                "active",
                Some(80),
                RegistryStatus::Discovered,
            )],
            &[timer("backup.timer", "backup.service", at(201))],
            at(201),
        )
        .await
        .unwrap();
    store
        .record_results(
            server.id,
            &[result("disk", 202, 0, LineStatus::Ok, "fine")],
            at(202),
        )
        .await
        .unwrap();
    let mixed = store.export(at(300)).await.unwrap();
    assert_eq!(mixed["tables"]["services"].as_array().unwrap().len(), 4);
    assert_eq!(
        mixed["tables"]["check_results"].as_array().unwrap().len(),
        1
    );
    let rows: u64 = EXPORT_TABLES
        .iter()
        .map(|t| mixed["tables"][*t].as_array().unwrap().len() as u64)
        .sum();
    // An integer column empty in one row and set in a later one
    // (`heartbeat_ttl_secs`, `port`, `server_id`...) loads on both engines.
    let (fourth, _fourth_db) = open().await;
    assert_eq!(fourth.import(&mixed).await.unwrap(), rows);
    assert_eq!(fourth.export(at(300)).await.unwrap(), mixed);
}

/// A store answers while open; closed, its data is on disk for the next open.
#[tokio::test]
async fn open_close_story() {
    let (store, db) = open().await;
    store.ping().await.unwrap();
    let version = store.schema_version().await.unwrap();
    let kept = store
        .create_service(&new_service(json!({"name": "kept", "port": 22})), at(0))
        .await
        .unwrap();
    store
        .set_state("last_scan", r#"{"discovered":1}"#)
        .await
        .unwrap();
    store.close().await;
    assert!(
        store.ping().await.is_err(),
        "a closed store answers nothing"
    );

    // Opening again migrates nothing and finds everything.
    let again = db.connect().await;
    again.ping().await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), version);
    assert_eq!(again.get_service(kept.id).await.unwrap(), Some(kept));
    assert_eq!(
        again.get_state("last_scan").await.unwrap().as_deref(),
        Some(r#"{"discovered":1}"#)
    );
    again.close().await;
}

// The coverage guard: every method of the store's traits, and the
// inherent methods of `SqlStore`, is called by a story above.

const TRAIT_SOURCES: &[(&str, &str)] = &[
    ("store/mod.rs", include_str!("../../../store/src/lib.rs")),
    (
        "store/usage.rs",
        include_str!("../../../store/src/usage.rs"),
    ),
    (
        "store/pages.rs",
        include_str!("../../../store/src/pages.rs"),
    ),
    (
        "store/accounts.rs",
        include_str!("../../../store/src/accounts.rs"),
    ),
    (
        "store/agents.rs",
        include_str!("../../../store/src/agents.rs"),
    ),
    (
        "store/leases.rs",
        include_str!("../../../store/src/leases.rs"),
    ),
];

const INHERENT_SOURCES: &[(&str, &str)] = &[
    (
        "store/sql/mod.rs",
        include_str!("../../../store/src/sql/mod.rs"),
    ),
    (
        "store/sql/export.rs",
        include_str!("../../../store/src/sql/export.rs"),
    ),
];

#[test]
fn every_store_method_has_a_story() {
    // The extractor, on a source it must read right.
    let snippet = r##"
//! pub trait InAComment { async fn not_declared(&self); }
#[async_trait]
pub trait Demo: Send + Sync + 'static {
    /// The docs may say async fn documented(&self) without declaring it.
    async fn first(&self) -> Result<(), E>;
    async fn second(
        &self,
        text: &str, // "}" in a comment
    ) -> u8;
    fn plain(&self) -> char { '}' }
    async fn with_body(&self) {
        let _ = format!("{{ {x} }} }}}}");
        let _ = r#"}"#;
        async fn nested() {}
    }
}
impl Demo for Thing { async fn first(&self) {} }
impl SqlStore {
    pub async fn inherent(&self) -> &'static str { "}" }
    async fn private(&self) {}
    pub fn sync(&self) {}
}
"##;
    assert_eq!(trait_names(snippet), ["Demo"]);
    assert_eq!(
        declared(snippet, "pub trait ", &["async fn ", "fn "]),
        ["first", "second", "plain", "with_body"]
    );
    assert_eq!(
        declared(snippet, "impl SqlStore {", &["pub async fn "]),
        ["inherent"]
    );
    let calls = "x.first(1).await;\n// x.second(\nlet s = \"x.plain(\";\nSqlStore::inherent(&x);";
    let wanted = ["first", "second", "plain", "inherent"].map(String::from);
    assert_eq!(uncovered(&wanted, calls), ["plain", "second"]);

    // The store's methods.
    let mut traits = Vec::new();
    let mut methods = Vec::new();
    for (path, source) in TRAIT_SOURCES {
        let found = declared(source, "pub trait ", &["async fn ", "fn "]);
        assert!(
            found.len() >= 3,
            "{path}: only {found:?} found in its trait"
        );
        traits.extend(trait_names(source));
        methods.extend(found);
    }
    traits.sort();
    assert_eq!(
        traits,
        [
            "AccountStore",
            "AgentStore",
            "LeaseStore",
            "PageStore",
            "Store",
            "UsageStore"
        ],
        "the store's traits changed: point this guard at them"
    );
    for (path, source) in INHERENT_SOURCES {
        let found = declared(source, "impl SqlStore {", &["pub async fn "]);
        assert!(
            !found.is_empty(),
            "{path}: no `pub async fn` of SqlStore found"
        );
        methods.extend(found);
    }
    for method in [
        "schema_version",
        "table_names",
        "count_rows",
        "export",
        "import",
    ] {
        assert!(methods.iter().any(|m| m == method), "{method} not found");
    }

    // Called outside this guard?
    let own = include_str!("store.rs");
    let guard = blank(own)
        .find("fn every_store_method_has_a_story")
        .expect("the guard finds itself");
    let missing = uncovered(&methods, &own[..guard]);
    assert!(
        missing.is_empty(),
        "store methods without a story in tests/api/store.rs: {}",
        missing.join(", ")
    );
}

/// `source` with comments and string and character literals made spaces
/// (newlines and byte offsets kept): what is left is code.
fn blank(source: &str) -> String {
    let b = source.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r'
            && (i == 0 || !ident(b[i - 1]) || (b[i - 1] == b'b' && (i < 2 || !ident(b[i - 2]))))
            && rest[1..]
                .iter()
                .position(|&c| c != b'#')
                .is_some_and(|n| rest[1 + n] == b'"')
        {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if b[i] == b'\'' {
            // A character literal, or a lifetime (left alone).
            if rest.get(1) == Some(&b'\\') {
                // The quote, the backslash and the escaped character.
                i += 3;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else {
                let width = source[i + 1..].chars().next().map_or(0, char::len_utf8);
                if b.get(i + 1 + width) == Some(&b'\'') {
                    i += width + 2;
                } else {
                    i += 1;
                    continue;
                }
            }
        } else {
            i += 1;
            continue;
        }
        for c in &mut out[start..i.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    }
    String::from_utf8(out).expect("only whole characters are blanked")
}

/// The names of the `pub trait`s in `source`.
fn trait_names(source: &str) -> Vec<String> {
    let code = blank(source);
    code.match_indices("pub trait ")
        .map(|(at, header)| identifier(&code[at + header.len()..]))
        .collect()
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The functions declared at the top level of every block of `source` that
/// starts with `header` (`pub trait `, `impl SqlStore {`), in order: lines
/// that start with one of `prefixes`.
fn declared(source: &str, header: &str, prefixes: &[&str]) -> Vec<String> {
    let code = blank(source);
    let mut names = Vec::new();
    for (at, _) in code.match_indices(header) {
        let open = at + code[at..].find('{').expect("the block opens");
        let mut depth = 0;
        let mut close = code.len();
        for (k, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        let mut depth = 0;
        for line in code[open + 1..close].lines() {
            if depth == 0 {
                let line = line.trim_start();
                if let Some(rest) = prefixes.iter().find_map(|p| line.strip_prefix(p)) {
                    names.push(identifier(rest));
                }
            }
            depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
        }
    }
    names
}

/// The methods no code in `code` calls (`.name(` or `::name(`), sorted.
fn uncovered(methods: &[String], code: &str) -> Vec<String> {
    let code = blank(code);
    let mut missing: Vec<String> = methods
        .iter()
        .filter(|m| !code.contains(&format!(".{m}(")) && !code.contains(&format!("::{m}(")))
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// A ping reporting `status` with `message`.
fn ping(status: Status, message: Option<&str>) -> lookout_proto::push::Ping {
    lookout_proto::push::Ping::Result {
        status,
        message: message.map(str::to_owned),
        duration_ms: None,
    }
}

/// SQLite cannot change a table's CHECK in place: the migration that lets a
/// channel be of kind `webpush` builds `channels` anew. A database made
/// before it keeps its channels and their delivery log (which refers to
/// them, and would have been emptied by a careless rebuild), ids included.
#[tokio::test]
async fn sqlite_keeps_channels_and_their_deliveries_through_the_channels_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../store/migrations/sqlite"
    )))
    .await
    .unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= 22)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&pool)
            .await
            .unwrap();
        migrator.run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO channels (id, name, kind, config, enabled, created_at) VALUES (9, 'old', 'ntfy', '{\"topic\":\"t\"}', 1, 1700000000000)",
            "DELETE FROM channels WHERE id = 9",
            "INSERT INTO channels (id, name, kind, config, enabled, created_at) VALUES (7, 'phone', 'ntfy', '{\"topic\":\"t\"}', 1, 1700000000000)",
            "INSERT INTO deliveries (id, channel_id, service_id, kind, status, attempts, error, at) VALUES (3, 7, NULL, 'test', 'failed', 2, 'cannot connect', 1700000001000)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = SqlStore::open(&path).await.unwrap();
    let channels = store.list_channels().await.unwrap();
    assert_eq!(
        channels
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect::<Vec<_>>(),
        [(7, "phone")]
    );
    let deliveries = store.list_deliveries(10).await.unwrap();
    assert_eq!(deliveries.len(), 1, "the delivery log is kept");
    assert_eq!((deliveries[0].id, deliveries[0].channel_id), (3, 7));
    assert_eq!(deliveries[0].error.as_deref(), Some("cannot connect"));
    // The new kind is taken, and the delivery log still follows its channel.
    store
        .create_channel(
            "browsers",
            ChannelKind::WebPush,
            &serde_json::Map::new(),
            true,
            at(0),
        )
        .await
        .unwrap();
    assert!(store.delete_channel(7).await.unwrap());
    assert!(
        store.list_deliveries(10).await.unwrap().is_empty(),
        "deleted with its channel"
    );
    store.close().await;
}
