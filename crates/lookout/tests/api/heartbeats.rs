//! Services that report in: the heartbeat registry's contract end to end and
//! push URLs, with an injected clock (no sleeping through TTLs).

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use lookout_hub::clock::ManualClock;
use lookout_testkit::{spawn_hub_with_clock, TestHub};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(10);

async fn hub_with_clock(remove_after: Option<Duration>) -> (TestHub, Arc<ManualClock>) {
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(
        move |c| {
            if let Some(d) = remove_after {
                c.heartbeat_remove_after = d;
            }
        },
        clock.clone(),
    )
    .await;
    (hub, clock)
}

async fn heartbeat_list(hub: &TestHub) -> Vec<Value> {
    hub.get_json("/services").await["services"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_heartbeat_contract_with_utc_times_and_objects() {
    let (hub, clock) = hub_with_clock(None).await;
    let r = hub
        .post_json(
            "/register",
            &json!({"name": "auth-service", "ip": "192.168.1.100"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["service"]["status"], "UP");
    let id = body["service"]["id"].as_i64().unwrap();

    let list = heartbeat_list(&hub).await;
    assert_eq!(list.len(), 1);
    let s = &list[0];
    assert_eq!(
        (s["name"].as_str(), s["ip"].as_str(), s["status"].as_str()),
        (Some("auth-service"), Some("192.168.1.100"), Some("UP"))
    );
    assert_eq!(
        s["last_heartbeat"], "2027-01-15T08:00:00Z",
        "UTC, from the injected clock"
    );
    assert_eq!(s["ttl_secs"], 60);
    // It is an ordinary service too, with the one status model.
    assert_eq!(hub.service(id).await["state"], "OK");

    // Within the TTL: still up.
    clock.advance(Duration::from_secs(60));
    hub.post_json("/refresh_all", &json!({})).await;
    assert_eq!(heartbeat_list(&hub).await[0]["status"], "UP");

    // Past the TTL: down, and FAILURE in the status model (the sweeper sees it by itself).
    clock.advance(Duration::from_secs(1));
    hub.wait_for_service(id, SOON, |s| s["state"] == "FAILURE")
        .await;
    assert!(hub.service(id).await["state_reason"]
        .as_str()
        .unwrap()
        .contains("no heartbeat for 61 s"));
    let r: Value = hub
        .post("/refresh/auth-service")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["service"]["status"], "DOWN");
    assert_eq!(
        heartbeat_list(&hub).await[0]["status"],
        "DOWN",
        "kept visible, not removed (default)"
    );

    // A new heartbeat brings it back.
    let r = hub
        .post_json(
            "/register",
            &json!({"name": "auth-service", "ip": "192.168.1.101"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (
            body["service"]["status"].as_str(),
            body["service"]["ip"].as_str()
        ),
        (Some("UP"), Some("192.168.1.101"))
    );
    assert_eq!(hub.service(id).await["state"], "OK");
    let history = hub.get_json(&format!("/api/services/{id}/events")).await;
    let news: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["new"].as_str().unwrap())
        .collect();
    assert_eq!(news, ["OK", "FAILURE", "OK"]);

    assert_eq!(hub.post("/refresh/nobody").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_heartbeats_are_refused_and_names_of_other_services_conflict() {
    let (hub, _clock) = hub_with_clock(None).await;
    for (body, field) in [
        (json!({"name": "x"}), "ip"),
        (json!({"ip": "10.0.0.1"}), "name"),
        (json!({"name": "x", "ip": "not an address"}), "ip"),
        (json!({"name": "", "ip": "10.0.0.1"}), "name"),
        (json!({"name": "x", "ip": 7}), "ip"),
        (json!({"name": "x", "ip": "10.0.0.1", "port": 1}), "port"),
    ] {
        let r = hub.post_json("/register", &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["fields"][0]["field"], field, "{body}");
    }
    let r = hub
        .client
        .post(hub.url("/register"))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    hub.create_service(json!({"name": "web", "url": "http://127.0.0.1:1"}))
        .await;
    let r = hub
        .post_json("/register", &json!({"name": "web", "ip": "10.0.0.1"}))
        .await;
    assert_eq!(r.status(), 409);
    assert!(heartbeat_list(&hub).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_services_are_removed_after_the_configured_period() {
    // Removing them 60 s after the last heartbeat is one setting away.
    let (hub, clock) = hub_with_clock(Some(Duration::from_secs(60))).await;
    let r = hub
        .post_json("/register", &json!({"name": "flaky", "ip": "10.0.0.2"}))
        .await;
    let id = r.json::<Value>().await.unwrap()["service"]["id"]
        .as_i64()
        .unwrap();
    hub.post_json("/register", &json!({"name": "steady", "ip": "10.0.0.3"}))
        .await;
    clock.advance(Duration::from_secs(45));
    hub.post_json("/register", &json!({"name": "steady", "ip": "10.0.0.3"}))
        .await;
    clock.advance(Duration::from_secs(30));
    let until = tokio::time::Instant::now() + SOON;
    while hub.get(&format!("/api/services/{id}")).await.status() != 404 {
        assert!(tokio::time::Instant::now() < until, "flaky was not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<String> = heartbeat_list(&hub)
        .await
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["steady"]);
}

/// Pings as cron jobs send them to Healthchecks (`/start`, `/fail`, an
/// exit code, the job's output as the body) and as Uptime Kuma's push
/// monitors do (`?status=up|down&msg=&ping=`).
#[tokio::test(flavor = "multi_thread")]
async fn pings_read_the_way_cron_jobs_send_them() {
    let (hub, clock) = hub_with_clock(None).await;
    let id = hub.create_service(json!({"name": "backup"})).await["id"]
        .as_i64()
        .unwrap();
    let created: Value = hub
        .post(&format!("/api/services/{id}/push-token"))
        .await
        .json()
        .await
        .unwrap();
    let url = created["url"].as_str().unwrap().to_owned();
    let send = |suffix: &str, body: &'static str| {
        hub.client.post(format!("{url}{suffix}")).body(body).send()
    };

    // A run: its start, then its end; the run time is measured between.
    let r = send("/start", "").await.unwrap();
    assert_eq!(r.status(), 200);
    let s = hub.service(id).await;
    assert_eq!(s["state"], "UNKNOWN", "a start says nothing of the status");
    assert!(s["push"]["started_at"].is_string(), "{s}");
    clock.advance(Duration::from_secs(42));
    assert_eq!(send("/0", "").await.unwrap().status(), 200);
    let s = hub.service(id).await;
    assert_eq!(s["state"], "OK");
    assert_eq!(s["push"]["last_duration_ms"], 42_000);
    assert!(s["push"]["started_at"].is_null(), "the run ended: {s}");

    // A failing exit code, the job's output as the message.
    send("/3", "rsync: connection refused\n").await.unwrap();
    let s = hub.service(id).await;
    assert_eq!(
        (s["state"].as_str(), s["push"]["last_message"].as_str()),
        (Some("FAILURE"), Some("rsync: connection refused"))
    );
    send("", "").await.unwrap();
    assert_eq!(hub.service(id).await["state"], "OK");
    send("/fail", "").await.unwrap();
    assert_eq!(hub.service(id).await["state"], "FAILURE");
    // Without output, the exit status is the message.
    send("/1", "").await.unwrap();
    assert_eq!(
        hub.service(id).await["push"]["last_message"],
        "exit status 1"
    );

    // Statuses in any case, and Uptime Kuma's words and parameters.
    for (query, state) in [
        ("?status=ok", "OK"),
        ("?status=fail", "FAILURE"),
        ("?status=Warning", "WARNING"),
        ("?status=up&msg=OK&ping=", "OK"),
        ("?status=down&msg=timeout", "FAILURE"),
        ("?status=up&msg=OK&ping=12.4", "OK"),
    ] {
        let r = hub
            .client
            .get(format!("{url}{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{query}");
        assert_eq!(hub.service(id).await["state"], state, "{query}");
    }
    assert_eq!(hub.service(id).await["push"]["last_duration_ms"], 12);

    // What cannot be read is a 400 naming each offending part, and changes nothing.
    for (suffix, field) in [
        ("/256", "path"),
        ("/restart", "path"),
        ("/fail?status=up", "status"),
        ("?status=sideways", "status"),
        ("?ping=soon", "ping"),
        ("?colour=red", "colour"),
    ] {
        let r = send(suffix, "").await.unwrap();
        assert_eq!(r.status(), 400, "{suffix}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["fields"][0]["field"], field, "{suffix}: {body}");
    }
    assert_eq!(hub.service(id).await["state"], "OK");
    let r = hub
        .client
        .get(hub.url("/api/push/not-a-token/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_urls_report_status_and_fail_when_late() {
    let (mut hub, clock) = hub_with_clock(None).await;
    let s = hub.create_service(json!({"name": "nightly-backup"})).await;
    let id = s["id"].as_i64().unwrap();
    let r = hub
        .post_json(
            &format!("/api/services/{id}/push-token"),
            &json!({"period_secs": 3600, "grace_secs": 600}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    // The URL is whole, as the client reached the hub: ready to paste.
    assert_eq!(created["url"], hub.url(&format!("/api/push/{token}")));
    assert_eq!(
        hub.service(id).await["state"],
        "UNKNOWN",
        "waiting for the first ping"
    );

    let r = hub
        .client
        .get(hub.url(&format!(
            "/api/push/{token}?status=WARNING&msg=disk%2091%25"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = hub.service(id).await;
    assert_eq!(
        (s["state"].as_str(), s["state_reason"].as_str()),
        (Some("WARNING"), Some("ping: disk 91%"))
    );
    assert_eq!(s["push"]["last_status"], "WARNING");

    assert_eq!(hub.post(&format!("/api/push/{token}")).await.status(), 200);
    assert_eq!(hub.service(id).await["state"], "OK");

    // Late: period + grace passed without a ping.
    clock.advance(Duration::from_secs(3600 + 600 + 1));
    hub.wait_for_service(id, SOON, |s| s["state"] == "FAILURE")
        .await;

    assert_eq!(hub.post("/api/push/not-a-token").await.status(), 404);
    assert_eq!(
        hub.post(&format!("/api/push/{token}?status=GREEN"))
            .await
            .status(),
        400
    );
    let r = hub
        .post_json(
            &format!("/api/services/{id}/push-token"),
            &json!({"period_secs": 5}),
        )
        .await;
    assert_eq!(r.status(), 422);

    // The token is stored hashed: it appears nowhere in the database files.
    hub.stop().await; // the files stay for inspection
    for entry in std::fs::read_dir(hub.data_dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "token found in plain text"
        );
    }
}

/// A push URL on a cron schedule in a time zone, as Healthchecks has it:
/// the answer says it back, mistakes are named on their field.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_url_takes_a_cron_schedule_in_a_time_zone() {
    let (hub, _clock) = hub_with_clock(None).await;
    let id = hub.create_service(json!({"name": "backup"})).await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/services/{id}/push-token");
    for (body, field) in [
        (json!({"schedule": "0 3 * *"}), "schedule"),
        (json!({"schedule": "0 3 * * *", "tz": "Mars/Olympus"}), "tz"),
        (json!({"tz": "UTC"}), "tz"),
        (json!({"schedule": 3}), "schedule"),
    ] {
        let r = hub.post_json(&path, &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["fields"][0]["field"], field, "{error}");
    }
    assert!(hub.service(id).await["push"].is_null(), "nothing was set");
    let r = hub
        .post_json(
            &path,
            &json!({"schedule": "30 2 * * MON-FRI", "tz": "Europe/Berlin", "grace_secs": 1800}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    assert_eq!(
        (made["schedule"].as_str(), made["tz"].as_str()),
        (Some("30 2 * * MON-FRI"), Some("Europe/Berlin"))
    );
    let push = &hub.service(id).await["push"];
    assert_eq!(
        (
            push["schedule"].as_str(),
            push["tz"].as_str(),
            push["grace_secs"].as_u64()
        ),
        (Some("30 2 * * MON-FRI"), Some("Europe/Berlin"), Some(1800))
    );
}
