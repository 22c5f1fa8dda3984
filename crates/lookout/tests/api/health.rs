//! Health checks against real HTTP servers on loopback.

use std::time::{Duration, Instant};

use lookout_testkit::{closed_port, spawn_hub, Target};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(5);

fn checked(s: &Value) -> bool {
    !s["last_health_check"].is_null()
}

#[tokio::test(flavor = "multi_thread")]
async fn background_checks_classify_real_responses() {
    let hub = spawn_hub().await;
    let cases = [
        (200, "healthy"),
        (204, "healthy"),
        (500, "unhealthy"),
        (404, "unhealthy"),
    ];
    let mut targets = Vec::new();
    for (code, _) in cases {
        let t = Target::start(code).await;
        let s = hub
            .create_service(json!({"name": format!("t{code}"), "base_url": t.url(), "health_endpoint": "/health"}))
            .await;
        targets.push((t, s["id"].as_i64().unwrap()));
    }
    // No request from the test: the scheduler checks by itself.
    for ((code, expected), (target, id)) in cases.iter().zip(&targets) {
        let s = hub.wait_for_service(*id, SOON, checked).await;
        assert_eq!(s["health_status"], *expected, "HTTP {code}: {s}");
        assert_eq!(s["last_response_code"], *code);
        assert!(s["last_latency_ms"].is_u64());
        if *expected == "unhealthy" {
            assert!(
                s["last_error"]
                    .as_str()
                    .unwrap()
                    .contains(&code.to_string()),
                "{s}"
            );
        } else {
            assert_eq!(s["last_error"], Value::Null);
        }
        assert!(target.hits() >= 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_port_is_unhealthy_with_the_reason() {
    let hub = spawn_hub().await;
    let port = closed_port();
    let s = hub
        .create_service(
            json!({"name": "closed", "base_url": format!("http://127.0.0.1:{port}"),
                               "health_endpoint": "/"}),
        )
        .await;
    let s = hub
        .wait_for_service(s["id"].as_i64().unwrap(), SOON, checked)
        .await;
    assert_eq!(s["health_status"], "unhealthy");
    assert_eq!(
        s["last_error"],
        format!("connection refused: nothing listens on 127.0.0.1:{port}")
    );
    assert_eq!(s["last_response_code"], Value::Null);
}

/// The usual mistakes are told as sentences about the URL: HTTPS to a
/// plain HTTP port, plain HTTP to a TLS port, a URL without its scheme.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_scheme_is_named_in_the_reason() {
    let hub = spawn_hub().await;
    let plain = Target::start(200).await;
    let port = plain.addr.port();
    // The reason the first check of a service at `url` gives.
    let reason = |name: &'static str, url: String| {
        let hub = &hub;
        async move {
            let s = hub
                .create_service(json!({"name": name, "base_url": url}))
                .await;
            hub.wait_for_service(s["id"].as_i64().unwrap(), SOON, checked)
                .await["last_error"]
                .clone()
        }
    };
    assert_eq!(
        reason("tls-to-plain", format!("https://127.0.0.1:{port}")).await,
        format!("this port speaks plain HTTP, not HTTPS: use http://127.0.0.1:{port}/")
    );

    // A TLS server: another hub serving HTTPS (its self-signed certificate
    // does not matter here).
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls_hub = lookout_testkit::spawn_hub_with(move |c| {
        c.tls = Some(lookout_hub::config::TlsFiles {
            cert: cert_path.clone(),
            key: key_path.clone(),
        });
        c.auth.tls = true;
    })
    .await;
    let tls_port = tls_hub.addr.port();
    assert_eq!(
        reason("plain-to-tls", format!("http://127.0.0.1:{tls_port}")).await,
        format!(
            "the answer was not HTTP: if this port speaks HTTPS, use https://127.0.0.1:{tls_port}/"
        )
    );

    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "no-scheme", "base_url": "192.168.1.10:8080"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["fields"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("needs http:// or https://"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_without_health_endpoint_is_checked_at_the_url() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let s = hub
        .create_service(json!({"name": "plain", "base_url": target.url()}))
        .await;
    let id = s["id"].as_i64().unwrap();
    assert_eq!(s["check_kind"], "http");
    assert_eq!(s["health_url"], target.url());
    let s = hub.wait_for_service(id, SOON, checked).await;
    assert_eq!(s["health_status"], "healthy");
    assert_eq!(s["state"], "OK");
    assert!(target.hits() >= 1);
    // A redirect is followed; a 404 fails with its code.
    let missing = Target::start(404).await;
    let s = hub
        .create_service(json!({"name": "gone", "url": missing.url()}))
        .await;
    let s = hub
        .wait_for_service(s["id"].as_i64().unwrap(), SOON, checked)
        .await;
    assert_eq!(s["state"], "FAILURE");
    assert_eq!(s["last_error"], "HTTP 404 Not Found");
    // Without a URL there is nothing to check, and it says so.
    let s = hub.create_service(json!({"name": "bare"})).await;
    let r: Value = hub
        .get_json(&format!("/api/services/{}/health", s["id"]))
        .await;
    assert_eq!(r["status"], "unknown");
    assert_eq!(r["error"], "no health endpoint configured");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_target_times_out_without_holding_back_the_others() {
    let hub = spawn_hub().await;
    let timeout = Duration::from_millis(1500);
    let hanging = [
        Target::hanging().await,
        Target::hanging().await,
        Target::hanging().await,
    ];
    let fast = [
        Target::start(200).await,
        Target::start(200).await,
        Target::start(200).await,
    ];
    let started = Instant::now();
    let mut slow_ids = Vec::new();
    for (i, t) in hanging.iter().enumerate() {
        let s = hub
            .create_service(
                json!({"name": format!("hang{i}"), "base_url": t.url(), "health_endpoint": "/",
                                   "check_timeout_ms": timeout.as_millis() as u64}),
            )
            .await;
        slow_ids.push(s["id"].as_i64().unwrap());
    }
    let mut fast_ids = Vec::new();
    for (i, t) in fast.iter().enumerate() {
        let s = hub
            .create_service(
                json!({"name": format!("fast{i}"), "base_url": t.url(), "health_endpoint": "/",
                                   "check_timeout_ms": timeout.as_millis() as u64}),
            )
            .await;
        fast_ids.push(s["id"].as_i64().unwrap());
    }
    for id in &fast_ids {
        let s = hub.wait_for_service(*id, SOON, checked).await;
        assert_eq!(s["health_status"], "healthy");
    }
    let fast_done = started.elapsed();
    assert!(
        fast_done < timeout,
        "fast targets waited behind hanging ones: {fast_done:?}"
    );

    // The dashboard and the API stay responsive meanwhile.
    let t0 = Instant::now();
    assert_eq!(hub.get("/").await.status(), 200);
    assert!(t0.elapsed() < Duration::from_millis(500));

    for id in &slow_ids {
        let s = hub.wait_for_service(*id, SOON, checked).await;
        assert_eq!(s["health_status"], "unhealthy");
        assert_eq!(s["last_error"], "timed out after 1500ms");
    }
    let round = started.elapsed();
    // The three timeouts ran side by side: one timeout, not the sum.
    assert!(round >= timeout, "{round:?}");
    assert!(
        round < timeout * 2,
        "round took {round:?}, the timeouts were not concurrent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_now_returns_the_result_and_records_it() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let s = hub
        .create_service(
            json!({"name": "now", "base_url": target.url(), "health_endpoint": "/ping",
                               "check_interval_secs": 3600}),
        )
        .await;
    let id = s["id"].as_i64().unwrap();
    hub.wait_for_service(id, SOON, checked).await;
    target.set_status(503);
    let r = hub.get_json(&format!("/api/services/{id}/health")).await;
    assert_eq!(r["status"], "unhealthy");
    assert_eq!(r["response_code"], 503);
    assert_eq!(r["url"], format!("{}/ping", target.url()));
    assert!(r["latency_ms"].is_u64());
    assert!(r["checked_at"].is_string());
    assert!(r["error"].as_str().unwrap().contains("503"));
    let s = hub.service(id).await;
    assert_eq!(s["health_status"], "unhealthy");
    let history = hub.get_json(&format!("/api/services/{id}/checks")).await;
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["unhealthy", "healthy"], "newest first");
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_repeat_on_their_interval_and_follow_the_target() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let s = hub
        .create_service(
            json!({"name": "iv", "base_url": target.url(), "health_endpoint": "/",
                               "check_interval_secs": 1}),
        )
        .await;
    let id = s["id"].as_i64().unwrap();
    hub.wait_for_service(id, SOON, |s| s["health_status"] == "healthy")
        .await;
    target.set_status(500);
    hub.wait_for_service(id, SOON, |s| s["health_status"] == "unhealthy")
        .await;
    target.set_status(200);
    hub.wait_for_service(id, SOON, |s| s["health_status"] == "healthy")
        .await;
    assert!(target.hits() >= 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_the_endpoint_rechecks_at_once() {
    let hub = spawn_hub().await;
    let good = Target::start(200).await;
    let bad = Target::start(500).await;
    let s = hub
        .create_service(
            json!({"name": "moving", "base_url": good.url(), "health_endpoint": "/",
                               "check_interval_secs": 3600}),
        )
        .await;
    let id = s["id"].as_i64().unwrap();
    hub.wait_for_service(id, SOON, |s| s["health_status"] == "healthy")
        .await;
    let r = hub
        .put_json(
            &format!("/api/services/{id}"),
            &json!({"base_url": bad.url()}),
        )
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["health_status"],
        "unknown",
        "old result forgotten"
    );
    hub.wait_for_service(id, SOON, |s| s["health_status"] == "unhealthy")
        .await;
}

/// `GET /api/services/{id}/health` sends a probe, so a viewer could make the
/// hub hammer a target: a burst of reads sends one probe, and the others get
/// the newest result.
#[tokio::test(flavor = "multi_thread")]
async fn checks_on_request_are_throttled_per_service() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let s = hub
        .create_service(json!({"name": "burst", "base_url": target.url(),
            "health_endpoint": "/health", "check_interval_secs": 3600}))
        .await;
    let id = s["id"].as_i64().unwrap();
    hub.wait_for_service(id, SOON, checked).await;
    let before = target.hits();
    let path = format!("/api/services/{id}/health");
    let reads = (0..10).map(|_| hub.get_json(&path));
    let results = futures::future::join_all(reads).await;
    assert!(
        results.iter().all(|r| r["status"] == "healthy"),
        "{results:?}"
    );
    assert_eq!(target.hits() - before, 1, "one probe for ten reads");
}

/// A paused service is not checked and reads UNKNOWN ("paused"); resumed,
/// it forgets what it knew and is checked again.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_service_is_not_checked_until_resumed() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let id = hub
        .create_service(json!({"name": "nas", "base_url": target.url(), "check_interval_secs": 1}))
        .await["id"]
        .as_i64()
        .unwrap();
    hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
    let r = hub
        .put_json(&format!("/api/services/{id}"), &json!({"paused": true}))
        .await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(
        (&s["paused"], &s["state"], &s["state_reason"]),
        (&json!(true), &json!("UNKNOWN"), &json!("paused"))
    );
    // At most a check already under way finishes; none is started.
    let hits = target.hits();
    tokio::time::sleep(Duration::from_millis(3500)).await; // an absence needs a window
    assert!(target.hits() <= hits + 1, "checked while paused");
    assert_eq!(hub.service(id).await["state_reason"], "paused");
    let page = hub.get_text("/").await;
    assert!(page.contains(
        r#"<span class="badge quiet" title="No alerts are sent for it now">paused</span>"#
    ));
    let r = hub
        .put_json(&format!("/api/services/{id}"), &json!({"paused": "yes"}))
        .await;
    assert_eq!(r.status(), 422, "paused takes true or false");

    let r = hub
        .put_json(&format!("/api/services/{id}"), &json!({"paused": false}))
        .await;
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["paused"], false);
    assert_ne!(s["state_reason"], "paused");
    hub.wait_for_service(id, SOON, |s| {
        s["state"] == "OK" && s["last_health_check"].is_string()
    })
    .await;
    let events = hub.get_json(&format!("/api/services/{id}/events")).await;
    let reasons: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"paused"), "{reasons:?}");
}
