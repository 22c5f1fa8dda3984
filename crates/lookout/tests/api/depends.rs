//! Dependencies and self-healing: a failing service's dependents wait on it
//! and one alert names the root cause (a real webhook receiver on loopback,
//! real HTTP targets); cycles are refused; a unit that keeps dying is
//! restarted within its limits on the real systemd sandbox, then alerts.

use std::time::Duration;

use lookout_hub::Config;
use lookout_testkit::{spawn_hub_with, Receiver, SystemdSandbox, Target, TestHub};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(20);

fn fast(c: &mut Config) {
    c.notify.retry_base = Duration::from_millis(50);
    c.notify.attempts = 3;
}

/// A webhook channel to `rx`'s `/hook`.
pub(crate) async fn webhook(hub: &TestHub, rx: &Receiver) {
    let r = hub
        .post_json(
            "/api/notifications/channels",
            &json!({"name": "hook", "kind": "webhook", "config": {"url": rx.url("/hook")}}),
        )
        .await;
    assert_eq!(r.status(), 201);
}

/// The audit log's entries of `action`: (actor, target, outcome), newest first.
pub(crate) async fn audited(hub: &TestHub, action: &str) -> Vec<(String, String, String)> {
    let audit = hub.get_json("/api/v1/audit").await;
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (text("actor"), text("target"), text("outcome"))
        })
        .collect()
}

/// A database and five apps on it, all answered by one target; the
/// database is checked every `db_every` seconds, the apps every second.
/// The target stops answering: the apps wait on the database, exactly one
/// alert goes out (the database's, naming the five), and its recovery is
/// one notice.
async fn five_dependents_one_alert(db_every: u64) {
    let hub = spawn_hub_with(fast).await;
    let rx = Receiver::start().await;
    webhook(&hub, &rx).await;
    let target = Target::start(200).await;
    let db = hub
        .create_service(
            json!({"name": "db", "base_url": target.url(), "health_endpoint": "/db",
                               "check_interval_secs": db_every}),
        )
        .await;
    let db_id = db["id"].as_i64().unwrap();
    let mut apps = Vec::new();
    for i in 1..=5 {
        // By name and by id: both are kept as the id.
        let parent = if i % 2 == 0 {
            json!("db")
        } else {
            json!(db_id)
        };
        let app = hub
            .create_service(json!({"name": format!("app-{i}"), "base_url": target.url(),
                                   "health_endpoint": format!("/app-{i}"), "check_interval_secs": 1,
                                   "depends_on": [parent]}))
            .await;
        assert_eq!(app["depends_on"], json!([db_id]), "{app}");
        apps.push(app["id"].as_i64().unwrap());
    }
    for &id in apps.iter().chain([&db_id]) {
        hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
    }

    target.set_status(503);
    for &id in &apps {
        let s = hub
            .wait_for_service(id, SOON, |s| s["state_reason"] == "waiting on db")
            .await;
        assert_eq!(s["state"], "UNKNOWN", "{s}");
        assert_eq!(s["waiting_on"], json!({"id": db_id, "name": "db"}));
    }
    let alert = rx.wait_for("/hook", 1, SOON).await;
    let body = alert[0].json();
    assert_eq!(
        (body["event"].as_str(), body["service"]["name"].as_str()),
        (Some("alert"), Some("db")),
        "{body}"
    );
    assert_eq!(
        body["affected"],
        json!(["app-1", "app-2", "app-3", "app-4", "app-5"])
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("5 services depend on it: app-1, app-2"),
        "{message}"
    );
    // The apps keep failing their own checks and stay quiet.
    tokio::time::sleep(Duration::from_millis(3000)).await; // asserting an absence needs a window
    assert_eq!(
        rx.received("/hook").len(),
        1,
        "{:?}",
        rx.received("/hook")
            .iter()
            .map(|r| r.json())
            .collect::<Vec<_>>()
    );
    let app = hub.service(apps[0]).await;
    assert_eq!(
        app["health_status"], "unhealthy",
        "its own check fails: {app}"
    );
    assert_eq!(app["state"], "UNKNOWN");

    target.set_status(200);
    let both = rx.wait_for("/hook", 2, SOON).await;
    let recovery = both[1].json();
    assert_eq!(
        (
            recovery["event"].as_str(),
            recovery["service"]["name"].as_str()
        ),
        (Some("recovery"), Some("db"))
    );
    for &id in &apps {
        let s = hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
        assert!(s.get("waiting_on").is_none(), "{s}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // asserting an absence needs a window
    assert_eq!(rx.received("/hook").len(), 2, "one alert, one recovery");
    // The apps' history says why they were not OK.
    let history = hub
        .get_json(&format!("/api/services/{}/events", apps[0]))
        .await;
    let reasons: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"waiting on db"), "{history}");
    assert!(
        !history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["new"] == "FAILURE"),
        "an app never showed FAILURE: {history}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dependents_wait_on_a_failing_parent_and_one_alert_names_it() {
    five_dependents_one_alert(1).await;
}

/// The same with the database's own check an hour away: the apps' failing
/// checks check it again first, so the outcome is the same.
#[tokio::test(flavor = "multi_thread")]
async fn dependents_checked_before_their_parent_still_wait_on_it() {
    five_dependents_one_alert(3600).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cycles_and_unknown_services_are_refused_and_deletes_tidy_up() {
    let hub = spawn_hub_with(|_| {}).await;
    let a = hub.create_service(json!({"name": "a"})).await;
    let a_id = a["id"].as_i64().unwrap();
    let b = hub
        .create_service(json!({"name": "b", "depends_on": ["a"]}))
        .await;
    let b_id = b["id"].as_i64().unwrap();
    let c = hub
        .create_service(json!({"name": "c", "depends_on": [b_id]}))
        .await;
    let c_id = c["id"].as_i64().unwrap();

    let refused = |r: reqwest::Response| async move {
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["fields"][0]["field"], "depends_on", "{body}");
        body["fields"][0]["message"].as_str().unwrap().to_owned()
    };
    let said = refused(
        hub.put_json(
            &format!("/api/services/{a_id}"),
            &json!({"depends_on": ["c"]}),
        )
        .await,
    )
    .await;
    assert_eq!(said, "would make a cycle: a → c → b → a");
    let said = refused(
        hub.put_json(
            &format!("/api/services/{a_id}"),
            &json!({"depends_on": [a_id]}),
        )
        .await,
    )
    .await;
    assert_eq!(said, "would make a cycle: a → a");
    let said = refused(
        hub.post_json(
            "/api/services",
            &json!({"name": "d", "depends_on": ["nosuch", 999999]}),
        )
        .await,
    )
    .await;
    assert_eq!(said, "no such service: \"nosuch\", service 999999");
    // Nothing was written by a refused request.
    assert!(hub.service(a_id).await.get("depends_on").is_none());
    let r = hub
        .post_json("/api/services", &json!({"name": "d", "depends_on": "a"}))
        .await;
    assert_eq!(r.status(), 422);
    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "d", "heal": {"after": 0, "max_per_hour": 1}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "heal", "{body}");

    // A GET-modify-PUT round trip keeps the dependencies.
    let mut got = hub.service(c_id).await;
    got["description"] = json!("the C");
    let r = hub.put_json(&format!("/api/services/{c_id}"), &got).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(hub.service(c_id).await["depends_on"], json!([b_id]));

    // Deleting a service takes it out of what others depend on.
    assert_eq!(
        hub.delete(&format!("/api/services/{b_id}")).await.status(),
        204
    );
    let c = hub.service(c_id).await;
    assert!(c.get("depends_on").is_none(), "{c}");
}

/// A unit that dies a second after each start: restarted after two failed
/// checks, twice, then healing gives up and the one alert says so; each
/// restart is in the audit log.
#[tokio::test(flavor = "multi_thread")]
async fn a_dying_unit_is_restarted_within_its_limit_then_alerts() {
    let sb = SystemdSandbox::start();
    sb.write_unit(
        "flaky.service",
        "[Unit]\nDescription=Dies after a second\n[Service]\nExecStart=/bin/sh -c 'sleep 1; exit 3'\n",
    );
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "flaky.service"]);
    let hub = sb.spawn_hub(env!("CARGO_BIN_EXE_lookout"), &[]);
    let rx = Receiver::start().await;
    webhook(&hub, &rx).await;
    let s = hub
        .create_service(json!({"name": "flaky.service", "check_interval_secs": 1,
                               "heal": {"after": 2, "max_per_hour": 2}}))
        .await;
    let id = s["id"].as_i64().unwrap();
    assert_eq!(
        s["heal"],
        json!({"after": 2, "action": "restart", "max_per_hour": 2})
    );
    // Two restarts, then it gives up and alerts, once.
    let alert = rx.wait_for("/hook", 1, Duration::from_secs(40)).await;
    let body = alert[0].json();
    assert_eq!(body["event"], "alert", "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("self-healing restarted flaky.service 2 times in the last hour"),
        "{reason}"
    );
    let healed = vec![
        (
            "self-healing".to_owned(),
            "flaky.service".to_owned(),
            "ok".to_owned()
        );
        2
    ];
    assert_eq!(audited(&hub, "unit.restart").await, healed);
    // Given up: no third restart while it stays failed, and no second alert.
    tokio::time::sleep(Duration::from_secs(4)).await; // asserting an absence needs a window
    assert_eq!(audited(&hub, "unit.restart").await, healed);
    assert_eq!(sb.property("flaky.service", "ActiveState"), "failed");
    assert_eq!(rx.received("/hook").len(), 1);
    // The service page says what healing did.
    let page = hub.get_text(&format!("/services/{id}")).await;
    assert!(
        page.contains("After 2 failed checks, restart flaky.service, at most 2 times an hour"),
        "{page}"
    );
    assert!(page.contains("giving up until it recovers"), "{page}");
    // A unit the scan found but nobody watches cannot be depended on: it
    // would never alert.
    assert!(hub.post("/api/scan").await.status().is_success());
    let all = hub.get_json("/api/services?status=all").await;
    let found = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] != "configured")
        .unwrap_or_else(|| panic!("the scan found no unit: {all}"));
    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "x", "depends_on": [found["name"]]}),
        )
        .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["fields"][0]["message"],
        format!(
            "{} found by a scan but not watched: add it as a service first",
            found["name"].as_str().unwrap()
        )
    );
}

/// A hub without systemd cannot restart anything: healing gives up at the
/// first attempt and the alert goes out at once, saying why.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_that_cannot_be_done_alerts_at_once() {
    let hub = spawn_hub_with(|c| {
        fast(c);
        c.systemd = None;
    })
    .await;
    let rx = Receiver::start().await;
    webhook(&hub, &rx).await;
    let s = hub
        .create_service(json!({"name": "site", "base_url": format!("http://127.0.0.1:{}", lookout_testkit::closed_port()),
                               "check_interval_secs": 1, "notify_after": 1,
                               "heal": {"after": 1, "unit": "site.service", "max_per_hour": 3}}))
        .await;
    let alert = rx.wait_for("/hook", 1, SOON).await;
    let body = alert[0].json();
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("; self-healing could not restart site.service: "),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await; // asserting an absence needs a window
    assert_eq!(rx.received("/hook").len(), 1);
    let page = hub.get_text(&format!("/services/{}", s["id"])).await;
    assert_eq!(
        page.matches("could not restart site.service").count(),
        1,
        "one attempt"
    );
}
