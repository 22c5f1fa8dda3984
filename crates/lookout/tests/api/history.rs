//! History: exact uptime figures on a constructed history, the detail page,
//! and beat bars on the dashboard.

use std::time::Duration;

use chrono::DateTime;
use lookout_hub::clock::ManualClock;
use lookout_testkit::{spawn_hub, spawn_hub_with_clock, Target};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread")]
async fn uptime_is_exact_on_a_constructed_history() {
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(|_| {}, clock.clone()).await;
    // t0: up. 3 h later the heartbeat is missed (down), 1 h after that it is back.
    let r: Value = hub
        .post_json("/register", &json!({"name": "job", "ip": "10.0.0.9"}))
        .await
        .json()
        .await
        .unwrap();
    let id = r["service"]["id"].as_i64().unwrap();
    clock.advance(3 * HOUR);
    hub.wait_for_service(id, SOON, |s| s["state"] == "FAILURE")
        .await;
    clock.advance(HOUR);
    hub.post_json("/register", &json!({"name": "job", "ip": "10.0.0.9"}))
        .await;
    assert_eq!(hub.service(id).await["state"], "OK");
    clock.advance(20 * HOUR);

    let stats = hub.get_json(&format!("/api/services/{id}/stats")).await;
    let expected = 23.0 / 24.0; // up 3 h + 20 h of 24 h
    for window in ["24h", "7d", "30d"] {
        let got = stats["uptime"][window].as_f64().unwrap();
        assert!(
            (got - expected).abs() < 1e-9,
            "{window}: {got} != {expected}"
        );
    }
    let html = hub.get_text(&format!("/services/{id}")).await;
    assert!(
        html.contains(r#"<span class="stat-value" id="uptime-24h">95.83 %</span>"#),
        "detail page shows the uptime"
    );
    assert!(
        html.contains("<strong>Failure</strong>") && html.contains("no heartbeat for"),
        "the change and its reason"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_draw_a_chart_over_ranges_and_fill_the_detail_page() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let s = hub
        .create_service(
            json!({"name": "graphed", "base_url": target.url(), "health_endpoint": "/",
                               "check_interval_secs": 1}),
        )
        .await;
    let id = s["id"].as_i64().unwrap();
    let until = tokio::time::Instant::now() + SOON;
    while hub
        .get_json(&format!("/api/services/{id}/checks"))
        .await
        .as_array()
        .unwrap()
        .len()
        < 3
    {
        assert!(tokio::time::Instant::now() < until, "checks did not repeat");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = hub.get_json(&format!("/api/services/{id}/stats")).await;
    assert!(stats["latency"].as_array().unwrap().len() >= 3);
    assert_eq!(stats["uptime"]["24h"], 1.0);
    let dashboard = hub.get_text("/").await;
    // The row's beat bar (its recent checks, all passed) and 24 h uptime;
    // the response-time line is on the service's page.
    assert!(
        dashboard.contains(r#"<svg class="beats""#) && dashboard.contains(r#"<rect class="ok""#),
        "beat bar on the dashboard"
    );
    assert!(!dashboard.contains(r#"<rect class="fail""#));
    assert!(dashboard.contains(r#"title="uptime over 24 hours">100 %</span>"#));
    let detail = hub.get_text(&format!("/services/{id}")).await;
    assert!(detail.contains(r#"id="recent-checks""#) && detail.contains("HTTP 200"));
    assert!(
        detail.contains(r#"<svg class="chart""#) && detail.contains(">now</text>"),
        "the response-time chart on the service's page"
    );
    assert!(detail.contains(r#"id="uptime-24h">100 %"#));
    assert!(detail.contains("100 % of "), "the range's figures");
    assert!(detail.contains(r#"id="no-incidents""#));
    // Its ranges are links; the chosen one is marked.
    let week = hub.get_text(&format!("/services/{id}?range=7d")).await;
    assert!(week
        .contains(r#"class="current" aria-current="true" title="the last 7 days" id="range-7d""#));
    assert!(week.contains("6 d ago</text>"), "a week's ticks are days");
    assert_eq!(
        hub.get(&format!("/services/{id}?range=2d")).await.status(),
        400
    );
    // The same figures from the API.
    let history = hub
        .get_json(&format!("/api/services/{id}/history?range=1h"))
        .await;
    assert_eq!(history["range"], "1h");
    assert_eq!(history["bucket_secs"], 60);
    let buckets = history["buckets"].as_array().unwrap();
    let checks: u64 = buckets.iter().map(|b| b["checks"].as_u64().unwrap()).sum();
    let passed: u64 = buckets.iter().map(|b| b["passed"].as_u64().unwrap()).sum();
    assert!(checks >= 3 && passed == checks, "{history}");
    assert!(buckets[0]["mean_ms"].as_f64().is_some());
    assert_eq!(history["incidents"], json!([]));
    let bad = hub
        .get(&format!("/api/services/{id}/history?range=2d"))
        .await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "range");
    assert_eq!(hub.get("/services/999").await.status(), 404);
    assert_eq!(hub.get("/api/services/999/stats").await.status(), 404);
}
