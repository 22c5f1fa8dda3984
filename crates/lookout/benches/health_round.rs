//! Benchmark: one health round over 1,000 loopback targets, 10% never answering.
//!
//! The targets run in a child process (this binary re-executed), so the CPU
//! time measured here is the hub's own: scheduler, HTTP client and SQLite
//! writes. The scheduler is the hub's real one, on a real SQLite store.
//!
//! Goal: the round takes about one timeout (the hanging targets wait side by
//! side), not the sum of the timeouts.
//!
//! Run: `cargo bench -p lookout --bench health_round`

use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use lookout_hub::clock::SystemClock;
use lookout_hub::config::CheckDefaults;
use lookout_hub::events::{Event, EventBus};
use lookout_hub::health::scheduler::Scheduler;
use lookout_hub::health::Checker;
use lookout_hub::store::{SqlStore, Store};
use lookout_proto::service::{parse_new_service, HealthStatus};
use tokio_util::sync::CancellationToken;

const TARGETS: usize = 1_000;
const HANGING_EVERY: usize = 10; // every 10th target never answers
const SERVERS: usize = 10;

/// Child mode: serve SERVERS listeners; the last one accepts and never answers.
async fn serve_targets() {
    let mut ports = Vec::new();
    for i in 0..SERVERS {
        let hang = i == SERVERS - 1;
        let app = axum::Router::new().fallback(move || async move {
            if hang {
                std::future::pending::<()>().await;
            }
            (StatusCode::OK, "ok")
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    println!(
        "{}",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    std::future::pending::<()>().await;
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("health_round: benchmark");
        return;
    }
    if std::env::var_os("LOOKOUT_BENCH_TARGETS").is_some() {
        serve_targets().await;
        return;
    }
    let (mut child, ports) = lookout_testkit::bench::spawn_child_mode("LOOKOUT_BENCH_TARGETS");
    let (answering, hanging) = ports.split_at(SERVERS - 1);

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqlStore::open(&dir.path().join("bench.db")).await.unwrap());
    let clock = Arc::new(SystemClock);
    let now = lookout_hub::clock::Clock::now(clock.as_ref());
    for i in 0..TARGETS {
        let port = if i % HANGING_EVERY == 0 {
            hanging[0]
        } else {
            answering[i % answering.len()]
        };
        let new = parse_new_service(
            serde_json::json!({
                "name": format!("target-{i:04}"),
                "base_url": format!("http://127.0.0.1:{port}"),
                "health_endpoint": format!("/health/{i}"),
                "check_interval_secs": 3600,
            })
            .as_object()
            .unwrap(),
        )
        .unwrap();
        store.create_service(&new, now).await.unwrap();
    }

    let mut defaults = CheckDefaults::default();
    if let Some(n) = std::env::var("LOOKOUT_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        defaults.concurrency = n;
    }
    let events = EventBus::new(4 * TARGETS);
    let mut rx = events.subscribe();
    let stop = CancellationToken::new();
    let registry = std::sync::Arc::new(
        lookout_hub::registry::Registry::load(store.clone(), events.clone(), defaults, now)
            .await
            .unwrap(),
    );
    let scheduler = Scheduler {
        store: store.clone(),
        registry,
        checker: Checker::new(Default::default()).unwrap(),
        clock,
        events,
        defaults,
        leases: None,
    };
    let cpu_before = lookout_testkit::bench::cpu_time(std::process::id());
    let started = Instant::now();
    let task = tokio::spawn(scheduler.run(stop.clone()));
    let (mut healthy, mut unhealthy, mut first_done) = (0usize, 0usize, None);
    while healthy + unhealthy < TARGETS {
        if let Ok(Event::HealthChecked { status, .. }) = rx.recv().await {
            match status {
                HealthStatus::Healthy => healthy += 1,
                _ => unhealthy += 1,
            }
            if healthy == TARGETS - TARGETS / HANGING_EVERY && first_done.is_none() {
                first_done = Some(started.elapsed());
            }
        }
    }
    let wall = started.elapsed();
    let cpu = lookout_testkit::bench::cpu_time(std::process::id()) - cpu_before;
    stop.cancel();
    let _ = task.await;
    let _ = child.kill();
    let _ = child.wait();

    let timeout = defaults.timeout;
    let hanging_count = TARGETS / HANGING_EVERY;
    println!("One health round: {TARGETS} loopback targets, {hanging_count} never answering, timeout {timeout:?}, concurrency {}", defaults.concurrency);
    println!("  healthy / unhealthy      {healthy} / {unhealthy}");
    println!(
        "  answering targets done   {:.3} s",
        first_done.unwrap_or_default().as_secs_f64()
    );
    println!("  whole round (wall)       {:.3} s", wall.as_secs_f64());
    println!(
        "  round / timeout          {:.2}x   (goal: about 1x)",
        wall.as_secs_f64() / timeout.as_secs_f64()
    );
    println!(
        "  sum of timeouts          {:.0} s   (what checking one at a time would cost the hanging targets alone)",
        (timeout * hanging_count as u32).as_secs_f64()
    );
    println!(
        "  hub CPU for the round    {:.0} ms ({:.2} ms per check)",
        cpu.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3 / TARGETS as f64
    );
    assert_eq!(unhealthy, hanging_count);
}
