//! Benchmark: `GET /api/services` with 1,000 services under concurrent load.
//!
//! Starts the real `lookout serve` binary (release build) on loopback, registers
//! 1,000 services, then runs a closed-loop load of CONCURRENCY keep-alive clients
//! for DURATION and prints requests/s, p50/p99 latency and the hub's peak RSS.
//!
//! Run: `cargo bench -p lookout --bench api_load`

use lookout_testkit::bench::{percentile, spawn_hub_binary, status_kib};
use std::time::{Duration, Instant};

const SERVICES: usize = 1_000;
const CONCURRENCY: usize = 32;
const DURATION: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("api_load: benchmark");
        return;
    }
    let mut hub = spawn_hub_binary(std::path::Path::new(env!("CARGO_BIN_EXE_lookout")));
    let pid = hub.pid().expect("a hub process");
    let base = format!("http://{}", hub.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let idle_rss = status_kib(pid, "VmRSS:");

    // Register the services. Their health endpoints point at a closed port with
    // an hour's interval, so the one check each gets is quick and the load below
    // measures the API, not the checker.
    let closed = lookout_testkit::closed_port();
    for i in 0..SERVICES {
        let r = client
            .post(format!("{base}/api/services"))
            .json(&serde_json::json!({
                "name": format!("service-{i:04}"),
                "description": format!("Benchmark service number {i}"),
                "base_url": format!("http://127.0.0.1:{closed}"),
                "health_endpoint": "/health",
                "port": closed,
                "check_interval_secs": 3600,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let body = client
        .get(format!("{base}/api/services"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), SERVICES);

    // Warm-up, then the measured run.
    for _ in 0..20 {
        client
            .get(format!("{base}/api/services"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        let url = format!("{base}/api/services");
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < DURATION {
                let t = Instant::now();
                let r = client.get(&url).send().await.unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let peak_rss = status_kib(pid, "VmHWM:");

    println!(
        "GET /api/services with {SERVICES} services ({} KiB per response)",
        body.len() / 1024
    );
    println!(
        "  concurrency        {CONCURRENCY} keep-alive clients, {:.1} s",
        elapsed.as_secs_f64()
    );
    println!("  requests           {}", latencies.len());
    println!(
        "  throughput         {:.0} requests/s",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency p50        {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3
    );
    println!(
        "  latency p99        {:.2} ms",
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  hub RSS idle       {:.1} MiB (before registering)",
        idle_rss as f64 / 1024.0
    );
    println!("  hub peak RSS       {:.1} MiB", peak_rss as f64 / 1024.0);

    hub.stop().await;
}
