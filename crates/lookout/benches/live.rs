//! Benchmark: live status.
//!
//! 1. From a target going down to the SSE event reaching a client: p50/p99
//!    over RUNS runs, 1 s check interval, the flip spread evenly over the
//!    interval's phase.
//! 2. The hub's RSS and CPU while 1,000 services are checked every 30 s with
//!    200 SSE clients connected.
//!
//! The hub is the real `lookout serve` binary (release build); targets and
//! clients run in this process.
//!
//! Run: `cargo bench -p lookout --bench live`

use lookout_testkit::bench::{cpu_time, percentile, spawn_hub_binary, status_kib};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use lookout_testkit::SseClient;
use serde_json::json;

const RUNS: usize = 40;
const SERVICES: usize = 1000;
const CLIENTS: usize = 200;
const LOAD_WINDOW: Duration = Duration::from_secs(60);

async fn target(status: Arc<AtomicU16>) -> String {
    let app = axum::Router::new().fallback(move || {
        let status = status.clone();
        async move { StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("live: benchmark");
        return;
    }
    let mut hub = spawn_hub_binary(std::path::Path::new(env!("CARGO_BIN_EXE_lookout")));
    let pid = hub.pid().expect("a hub process");
    let base = format!("http://{}", hub.addr);
    let client = reqwest::Client::new();

    // 1. Down to SSE.
    let status = Arc::new(AtomicU16::new(200));
    let url = target(status.clone()).await;
    let mut events = SseClient::connect(&client, &format!("{base}/api/events"), None).await;
    let s: serde_json::Value = client
        .post(format!("{base}/api/services"))
        .json(&json!({"name": "bench-target", "base_url": url, "health_endpoint": "/", "check_interval_secs": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = s["id"].as_i64().unwrap();
    let is = |m: &lookout_testkit::SseMessage, new: &str| {
        m.event == "status" && m.data["service_id"] == id && m.data["new"] == new
    };
    events
        .wait_for(Duration::from_secs(10), |m| is(m, "OK"))
        .await;
    let mut latencies = Vec::new();
    for run in 0..RUNS {
        // Flip at a spread of phases within the check interval (golden-ratio
        // steps cover it evenly), so the figures are not all the worst case.
        let phase = ((run as f64 * 0.618_033_988_75) % 1.0) * 1000.0;
        tokio::time::sleep(Duration::from_millis(phase as u64)).await;
        status.store(500, Ordering::SeqCst);
        let t = Instant::now();
        events
            .wait_for(Duration::from_secs(10), |m| is(m, "FAILURE"))
            .await;
        latencies.push(t.elapsed());
        status.store(200, Ordering::SeqCst);
        events
            .wait_for(Duration::from_secs(10), |m| is(m, "OK"))
            .await;
    }
    latencies.sort();

    // 2. 1,000 services every 30 s, 200 SSE clients.
    let ok = Arc::new(AtomicU16::new(200));
    let many = target(ok).await;
    for i in 0..SERVICES {
        let r = client
            .post(format!("{base}/api/services"))
            .json(&json!({"name": format!("svc-{i:04}"), "base_url": many, "health_endpoint": format!("/h/{i}"),
                           "check_interval_secs": 30}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let client = client.clone();
        let url = format!("{base}/api/events");
        clients.push(tokio::spawn(async move {
            let mut sse = SseClient::connect(&client, &url, None).await;
            let mut n = 0u64;
            while sse.next(Duration::from_secs(120)).await.is_some() {
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_secs(5)).await; // let the first round settle
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    tokio::time::sleep(LOAD_WINDOW).await;
    let cpu = (cpu_time(pid) - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let (rss, hwm) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    hub.stop().await;
    let mut delivered = 0;
    for c in clients {
        delivered += c.await.unwrap_or(0);
    }

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("Target down → SSE event at a client, 1 s check interval, {RUNS} runs");
    println!(
        "  p50 {:>8.1} ms   p99 {:>8.1} ms   min {:>7.1} ms   max {:>8.1} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[0]),
        ms(*latencies.last().unwrap())
    );
    println!(
        "{SERVICES} services checked every 30 s, {CLIENTS} SSE clients, {} s window",
        LOAD_WINDOW.as_secs()
    );
    println!("  hub CPU  {:>6.1} % of one core", cpu * 100.0);
    println!(
        "  hub RSS  {:>6.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "  events delivered to the clients: {delivered} ({:.0} per client)",
        delivered as f64 / CLIENTS as f64
    );
}
