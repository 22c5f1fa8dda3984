//! Several hubs on one PostgreSQL database (a real server, see
//! `testkit::postgres`): the health checks are shared out and run once, an
//! SSE client on one hub sees what an agent sent to the other, and when a hub
//! is SIGKILLed the other takes over its checks within one lease period and
//! its agent, losing no result.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lookout_testkit::postgres::fresh_database;
use lookout_testkit::{free_port_in, SseClient, Target, TestHub};
use serde_json::{json, Value};
use sqlx::Connection as _;

use crate::agents::{agent_cmd, keys_in, provision, register_cmd, results_of, wait_server, Agent};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const LEASE: Duration = Duration::from_secs(3);
const SOON: Duration = Duration::from_secs(20);

/// `lookout serve` on `database` as hub `id`, with a short check lease.
fn cluster_hub(database: &str, id: &str) -> TestHub {
    let port = free_port_in(20000..30000);
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--systemd", "none", "--agent-heartbeat", "1s"])
        .args(["--check-lease", &format!("{}s", LEASE.as_secs())])
        .args(["--hub-id", id, "--database", database])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("LOOKOUT_DATABASE");
    lookout_testkit::spawn_hub_process(cmd, data)
}

async fn sql(database: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(database).await.unwrap()
}

/// Which hub holds how many check leases.
async fn leases(database: &str) -> BTreeMap<String, i64> {
    let mut db = sql(database).await;
    sqlx::query_as("SELECT hub, COUNT(*) FROM check_leases GROUP BY hub")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn wait_leases(database: &str, want: &[(&str, i64)]) -> Duration {
    let started = Instant::now();
    let want: BTreeMap<String, i64> = want.iter().map(|(h, n)| ((*h).to_owned(), *n)).collect();
    loop {
        let got = leases(database).await;
        if got == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < SOON, "leases {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The times (ms) of every stored health check, per service.
async fn check_times(database: &str) -> BTreeMap<i64, Vec<i64>> {
    let mut db = sql(database).await;
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT service_id, checked_at FROM health_checks ORDER BY checked_at")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (id, at) in rows {
        out.entry(id).or_default().push(at);
    }
    out
}

fn now_ms() -> i64 {
    let now: chrono::DateTime<chrono::Utc> = std::time::SystemTime::now().into();
    now.timestamp_millis()
}

fn append(log: &Path, message: &str) {
    use std::io::Write as _;
    let line = format!(
        "{}, OK, {message}\n",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    f.write_all(line.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hubs_share_the_checks_the_events_and_the_agents_and_survive_losing_one() {
    let database = fresh_database().await;
    let mut a = cluster_hub(&database, "hub-a");
    let b = cluster_hub(&database, "hub-b");

    // Eight services, every one checked each second.
    let mut targets = Vec::new();
    let mut ids = Vec::new();
    for i in 0..8 {
        let target = Target::start(200).await;
        let s = a
            .create_service(json!({"name": format!("svc-{i}"), "base_url": target.url(),
                                   "health_endpoint": "/health", "check_interval_secs": 1}))
            .await;
        ids.push(s["id"].as_i64().unwrap());
        targets.push(target);
    }
    // Both hubs serve the same registry: the other hub within the
    // LISTEN/NOTIFY delay.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b.get_json("/api/services").await.as_array().unwrap().len() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hub b never saw the 8 services"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Shared out, half each.
    wait_leases(&database, &[("hub-a", 4), ("hub-b", 4)]).await;

    // Run once: over six seconds, no service is checked twice within
    // half its interval, and each is checked about once a second.
    let from = now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let to = now_ms();
    let times = check_times(&database).await;
    for id in &ids {
        let window: Vec<i64> = times[id]
            .iter()
            .copied()
            .filter(|t| (from..to).contains(t))
            .collect();
        assert!(
            (4..=7).contains(&window.len()),
            "service {id}: {} checks in 6 s: {window:?}",
            window.len()
        );
        for pair in window.windows(2) {
            assert!(
                pair[1] - pair[0] >= 500,
                "service {id} checked twice within 500 ms: {window:?}"
            );
        }
    }
    let hits: usize = targets.iter().map(Target::hits).sum();
    let stored: usize = times.values().map(Vec::len).sum();
    assert!(
        hits <= stored + targets.len(),
        "targets saw {hits} requests for {stored} stored checks"
    );

    // A check's event carries what it left on the service, and the hub
    // that did not run the check holds that too.
    let mut checks_on_b = SseClient::connect(&b.client, &b.url("/api/events"), None).await;
    let checked = checks_on_b.wait_for(SOON, |m| m.event == "check").await;
    let at = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("not a time: {v}"))
    };
    assert_eq!(checked.data["state"], "OK", "{}", checked.data);
    assert!(checked.data["last_latency_ms"].is_u64(), "{}", checked.data);
    let held = b
        .get_json(&format!("/api/services/{}", checked.data["id"]))
        .await;
    assert!(
        at(&held["last_health_check"]) >= at(&checked.data["last_health_check"]),
        "hub b holds {held} after {}",
        checked.data
    );
    drop(checks_on_b);

    // An agent claims on hub A and may fall back to hub B; a live client
    // on hub B sees its results.
    let host = tempfile::tempdir().unwrap();
    let log = lookout_testkit::write_check_files(
        host.path(),
        "beat",
        "#!/bin/sh\n# name: Beat\n# schedule: hourly\necho \"$(date '+%Y-%m-%d %H:%M:%S'), OK, beat\"\n",
    );
    let credentials = host.path().join("agent.json");
    let claim = provision(&a, "edge").await;
    let registered = register_cmd(&a.url(""), &claim, &credentials)
        .output()
        .unwrap();
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let mut cmd = agent_cmd(host.path(), &credentials);
    cmd.arg("--hub").arg(b.url(""));
    let agent = Agent::spawn(cmd, host.path());
    wait_server(&a, "edge", |s| s["online"] == true).await;

    let mut events_on_b = SseClient::connect(&b.client, &b.url("/api/events"), None).await;
    append(&log, "first through hub A");
    let seen = events_on_b
        .wait_for(SOON, |m| {
            m.event == "result" && m.data["message"] == "first through hub A"
        })
        .await;
    assert_eq!(seen.data["check"], "beat");
    // Both registries hold the result: hub B wrote it, hub A took it from
    // the log's event without reading the service back.
    for hub in [&a, &b] {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let services = hub.get_json("/api/services").await;
            let beat = services
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["check"]["name"] == "beat")
                .cloned()
                .unwrap_or_default();
            if beat["check"]["last_message"] == "first through hub A"
                && beat["state"] == "OK"
                && beat["state_reason"] == "first through hub A"
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hub {} shows {beat}",
                hub.url("")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Hub A dies. Its checks move to hub B within one lease period.
    let ids_by_a: Vec<i64> = {
        let mut db = sql(&database).await;
        sqlx::query_scalar("SELECT service_id FROM check_leases WHERE hub = 'hub-a'")
            .fetch_all(&mut db)
            .await
            .unwrap()
    };
    // (The agent's check is a service too.)
    let services =
        i64::try_from(b.get_json("/api/services").await.as_array().unwrap().len()).unwrap();
    a.kill();
    let killed = now_ms();
    append(&log, "written while hub A is down");
    let took = wait_leases(&database, &[("hub-b", services)]).await;
    eprintln!("hub B took hub A's checks {took:?} after SIGKILL (lease {LEASE:?})");
    assert!(
        took <= LEASE + Duration::from_millis(500),
        "hub B took {took:?} to take over (lease {LEASE:?}): {}",
        agent.output()
    );
    // And checks them.
    let until = Instant::now() + SOON;
    loop {
        let times = check_times(&database).await;
        if ids_by_a
            .iter()
            .filter(|id| ids.contains(id))
            .all(|id| times[id].iter().any(|t| *t > killed))
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "hub B did not check hub A's services"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The agent moves to hub B and nothing it wrote is lost or doubled.
    wait_server(&b, "edge", |s| s["online"] == true).await;
    append(&log, "after the move");
    let server = wait_server(&b, "edge", |s| s["checks"] == 1).await;
    let checks = b
        .get_json(&format!("/api/v1/servers/{}/services", server["id"]))
        .await;
    let service = checks[0]["id"].as_i64().unwrap();
    let until = Instant::now() + SOON;
    loop {
        let want = keys_in(std::slice::from_ref(&log));
        let got = results_of(&b, service).await;
        if got == want {
            assert_eq!(want.len(), 3);
            break;
        }
        assert!(
            Instant::now() < until,
            "hub B has {got:?}, the log {want:?}: {}",
            agent.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut events_later = SseClient::connect(&b.client, &b.url("/api/events"), None).await;
    append(&log, "live on hub B");
    events_later
        .wait_for(SOON, |m| {
            m.event == "result" && m.data["message"] == "live on hub B"
        })
        .await;
}

/// A server revoked through one hub loses its agent's session on the other.
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_on_one_hub_ends_the_session_on_another() {
    let database = fresh_database().await;
    let a = cluster_hub(&database, "hub-a");
    let b = cluster_hub(&database, "hub-b");
    let host = tempfile::tempdir().unwrap();
    lookout_testkit::write_check_files(
        host.path(),
        "beat",
        "#!/bin/sh\n# name: Beat\n# schedule: hourly\necho \"$(date '+%Y-%m-%d %H:%M:%S'), OK, beat\"\n",
    );
    let credentials = host.path().join("agent.json");
    let claim = provision(&b, "edge").await;
    let registered = register_cmd(&b.url(""), &claim, &credentials)
        .output()
        .unwrap();
    assert!(registered.status.success());
    let mut agent = Agent::spawn(agent_cmd(host.path(), &credentials), host.path());
    let server: Value = wait_server(&a, "edge", |s| s["online"] == true).await;
    let r = a
        .post(&format!("/api/v1/servers/{}/revoke", server["id"]))
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    // The agent, connected to hub B, is cut off and told its key is refused.
    let status = agent.exited(SOON).await;
    assert_eq!(status.code(), Some(3), "{}", agent.output());
}

/// Hubs follow each other's checks, so the notifier lease's holder alerts
/// once whichever hub checked, and when it dies the hub that takes over
/// knows what was alerted and sends the recovery.
#[tokio::test(flavor = "multi_thread")]
async fn alerts_go_out_once_and_the_recovery_follows_a_dead_hub() {
    let database = fresh_database().await;
    let mut a = cluster_hub(&database, "hub-a");
    let rx = lookout_testkit::Receiver::start().await;
    let r = a
        .post_json(
            "/api/notifications/channels",
            &json!({"name": "hook", "kind": "webhook", "config": {"url": rx.url("/hook")}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    // Hub A holds the notifier's lease before B starts.
    let mut db = sql(&database).await;
    let until = Instant::now() + SOON;
    while sqlx::query_scalar::<_, String>("SELECT hub FROM job_leases WHERE name = 'notifier'")
        .fetch_optional(&mut db)
        .await
        .unwrap()
        .as_deref()
        != Some("hub-a")
    {
        assert!(
            Instant::now() < until,
            "hub A never held the notifier lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = cluster_hub(&database, "hub-b");
    // Two services, so each hub checks one.
    let target = Target::start(500).await;
    for name in ["one", "two"] {
        a.create_service(
            json!({"name": name, "base_url": target.url(), "health_endpoint": "/",
                                "check_interval_secs": 1, "notify_after": 1}),
        )
        .await;
    }
    wait_leases(&database, &[("hub-a", 1), ("hub-b", 1)]).await;
    let alerts = rx.wait_for("/hook", 2, SOON).await;
    let mut alerted: Vec<String> = alerts
        .iter()
        .map(|r| {
            let body = r.json();
            assert_eq!(body["event"], "alert", "{body}");
            body["service"]["name"].as_str().unwrap().to_owned()
        })
        .collect();
    alerted.sort();
    assert_eq!(alerted, ["one", "two"]);
    tokio::time::sleep(Duration::from_millis(2500)).await; // asserting an absence needs a window
    assert_eq!(rx.received("/hook").len(), 2, "an alert went out twice");

    // Hub A (the sender) dies; the services recover; hub B says so.
    a.kill();
    target.set_status(200);
    let all = rx.wait_for("/hook", 4, SOON).await;
    let mut recovered: Vec<String> = all[2..]
        .iter()
        .map(|r| {
            let body = r.json();
            assert_eq!(body["event"], "recovery", "{body}");
            body["service"]["name"].as_str().unwrap().to_owned()
        })
        .collect();
    recovered.sort();
    assert_eq!(recovered, ["one", "two"]);
    drop(b);
}

/// The event id an API answer names.
fn event_of(r: &reqwest::Response) -> i64 {
    r.headers()["x-lookout-event"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A client that writes through one hub and reads through another sees each
/// write when it names the write's event (`X-Lookout-Min-Event`). A hub
/// killed in the middle of a stream of writes loses none it acknowledged:
/// each is in the database with its event logged, the other hub shows it at
/// once, and a hub started afterwards shows exactly what the database holds.
#[tokio::test(flavor = "multi_thread")]
async fn writes_read_back_through_another_hub_and_a_hub_killed_mid_write_loses_none_acknowledged() {
    let database = fresh_database().await;
    let mut a = cluster_hub(&database, "hub-a");
    let b = cluster_hub(&database, "hub-b");
    for i in 0..20 {
        let r = a
            .post_json("/api/services", &json!({"name": format!("read-back-{i}")}))
            .await;
        assert_eq!(r.status(), 201);
        let event = event_of(&r);
        let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        let read = b
            .client
            .get(b.url(&format!("/api/services/{id}")))
            .header("X-Lookout-Min-Event", event.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "service {id} (event {event}) on hub B");
        assert!(event_of(&read) >= event);
    }

    // Registrations stream into hub A, one after another; A dies among them.
    let writer = tokio::spawn({
        let (client, url) = (a.client.clone(), a.url("/api/services"));
        async move {
            let mut acknowledged = vec![];
            for i in 0..20_000 {
                let sent = client
                    .post(&url)
                    .json(&json!({"name": format!("stream-{i}")}))
                    .send()
                    .await;
                let Ok(r) = sent else { break };
                assert_eq!(r.status(), 201);
                let event = event_of(&r);
                let Ok(body) = r.json::<Value>().await else {
                    break;
                };
                acknowledged.push((body["id"].as_i64().unwrap(), event));
            }
            acknowledged
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.kill();
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged.len() >= 10,
        "only {} writes before the kill",
        acknowledged.len()
    );
    let newest = acknowledged.iter().map(|(_, e)| *e).max().unwrap();

    // Hub B shows every acknowledged write, asked with the newest event.
    let r = b
        .client
        .get(b.url("/api/services"))
        .header("X-Lookout-Min-Event", newest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let on_b: std::collections::BTreeSet<i64> = r
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    let missing: Vec<i64> = acknowledged
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !on_b.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged, not on hub B: {missing:?}"
    );

    // Each acknowledged write's event is in the log, once.
    let mut db = sql(&database).await;
    let created: Vec<(String,)> =
        sqlx::query_as("SELECT data FROM event_log WHERE kind = 'service.created'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let mut announced: BTreeMap<i64, usize> = BTreeMap::new();
    for (data,) in created {
        let data: Value = serde_json::from_str(&data).unwrap();
        *announced
            .entry(data["service"]["id"].as_i64().unwrap())
            .or_default() += 1;
    }
    for (id, _) in &acknowledged {
        assert_eq!(announced.get(id), Some(&1), "service {id}'s creation event");
    }

    // A hub started now shows exactly what the database holds, once each.
    let in_table: Vec<(i64,)> = sqlx::query_as("SELECT id FROM services")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let in_table: Vec<i64> = {
        let mut ids: Vec<i64> = in_table.into_iter().map(|(id,)| id).collect();
        ids.sort_unstable();
        ids
    };
    let c = cluster_hub(&database, "hub-c");
    let mut on_c: Vec<i64> = c
        .get_json("/api/services?status=all")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    on_c.sort_unstable();
    assert_eq!(on_c, in_table);
}
