//! Benchmark: the same load on one hub on SQLite, one hub on PostgreSQL and
//! two hubs sharing one PostgreSQL database.
//!
//! The load: SERVICES configured services, each health-checked once a minute
//! against a loopback target, and AGENTS simulated agents (WebSocket clients
//! in this process speaking the agent protocol) each sending one check result
//! a second; with two hubs, agent i connects to hub i mod 2. A live client
//! watches the last hub's SSE stream, so with two hubs half of what it sees
//! was ingested by the other hub and came through the shared event log.
//!
//! Reported per setup, over WINDOW after a warm-up: the ingestion rate
//! (results stored per second, counted in the database, against the rate
//! sent), the lag from a result's timestamp to its SSE event (p50, p99,
//! max), and the hubs' CPU.
//!
//! Real `lookout serve` processes (release build), a real PostgreSQL (see
//! `testkit::postgres`). Run: `cargo bench -p lookout --bench cluster`

use std::path::Path;
use std::time::{Duration, Instant};

use lookout_hub::store::{SqlStore, Store};
use lookout_testkit::bench::{
    cpu_time, now, percentile, provision_agent, simulated_agent, spawn_hub_binary_with,
};
use lookout_testkit::postgres::fresh_database;
use lookout_testkit::{SseClient, Target, TestHub};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const SERVICES: usize = 10_000;
const AGENTS: usize = 1_000;
const WARM_UP: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(30);

struct Figures {
    setup: &'static str,
    sent_per_s: f64,
    stored_per_s: f64,
    seen_per_s: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu: f64,
}

/// Registers SERVICES services checked every minute against `target`.
async fn preload(store: &SqlStore, target: &str) {
    let now = lookout_hub::clock::Clock::now(&lookout_hub::clock::SystemClock);
    for i in 0..SERVICES {
        let body = serde_json::json!({"name": format!("svc-{i:05}"), "base_url": target,
            "health_endpoint": "/health", "check_interval_secs": 60});
        let new = lookout_proto::service::parse_new_service(body.as_object().unwrap()).unwrap();
        store.create_service(&new, now).await.unwrap();
    }
}

async fn run(setup: &'static str, database: &str, hubs: usize, target: &str) -> Figures {
    let store = if let Some(path) = database.strip_prefix("sqlite://") {
        SqlStore::open(Path::new(path)).await.unwrap()
    } else {
        SqlStore::connect_postgres(database).await.unwrap()
    };
    preload(&store, target).await;
    let mut running: Vec<TestHub> = (0..hubs)
        .map(|i| {
            let id = format!("bench-{i}");
            spawn_hub_binary_with(
                Path::new(BIN),
                &[
                    "--database",
                    database,
                    "--hub-id",
                    &id,
                    "--rate-login",
                    "off",
                    "--rate-agents",
                    "off",
                    "--agent-heartbeat",
                    "5s",
                ],
            )
        })
        .collect();
    let bases: Vec<String> = running
        .iter()
        .map(|h| format!("http://{}", h.addr))
        .collect();
    let client = reqwest::Client::new();
    let mut keys = Vec::new();
    for i in 0..AGENTS {
        let base = &bases[i % hubs];
        keys.push(provision_agent(&client, base, &format!("sim-{i:04}")).await);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let mut sims = Vec::new();
    for (i, (id, key)) in keys.into_iter().enumerate() {
        // Agents come online a few at a time, as hosts do: a hub closes a
        // client address's connections beyond 32 that have not sent their
        // request yet (the slow-client guard), and a thousand connections
        // opened in one instant from one address would meet it.
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let offset = Duration::from_millis((i as u64 * 1000) / AGENTS as u64);
        sims.push(tokio::spawn(simulated_agent(
            bases[i % hubs].clone(),
            id,
            key,
            offset,
            stop.clone(),
        )));
    }
    let watched = bases.last().unwrap();
    let mut sse = SseClient::connect(&client, &format!("{watched}/api/events"), None).await;
    let deadline = Instant::now() + WARM_UP;
    while Instant::now() < deadline {
        let _ = sse.next(Duration::from_millis(100)).await;
    }
    let pids: Vec<u32> = running.iter().filter_map(TestHub::pid).collect();
    let cpu0: Duration = pids.iter().map(|p| cpu_time(*p)).sum();
    let stored0 = count_results(&store).await;
    let t0 = Instant::now();
    let (mut lags, mut seen) = (Vec::new(), 0u64);
    while t0.elapsed() < WINDOW {
        let Some(m) = sse.next(Duration::from_secs(5)).await else {
            break;
        };
        if m.event != "result" {
            continue;
        }
        seen += 1;
        let at: chrono::DateTime<chrono::Utc> = m.data["at"].as_str().unwrap().parse().unwrap();
        lags.push((now() - at).to_std().unwrap_or_default());
    }
    let window = t0.elapsed().as_secs_f64();
    let stored = count_results(&store).await - stored0;
    let cpu: Duration = pids.iter().map(|p| cpu_time(*p)).sum::<Duration>() - cpu0;
    stop.cancel();
    let mut sent = 0;
    for s in sims {
        sent += s.await.unwrap_or(0);
    }
    for hub in &mut running {
        hub.stop().await;
    }
    store.close().await;
    lags.sort();
    Figures {
        setup,
        // Every agent sent one a second for the whole run (warm-up included).
        sent_per_s: sent as f64 / (WARM_UP.as_secs_f64() + window),
        stored_per_s: stored as f64 / window,
        seen_per_s: seen as f64 / window,
        p50: percentile(&lags, 0.5),
        p99: percentile(&lags, 0.99),
        max: lags.last().copied().unwrap_or_default(),
        cpu: cpu.as_secs_f64() / window,
    }
}

async fn count_results(store: &SqlStore) -> u64 {
    store.count_rows("check_results").await.unwrap()
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("cluster: benchmark");
        return;
    }
    let target = Target::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut figures = vec![run("SQLite, one hub", &sqlite, 1, &target.url()).await];
    figures.push(
        run(
            "PostgreSQL, one hub",
            &fresh_database().await,
            1,
            &target.url(),
        )
        .await,
    );
    figures.push(
        run(
            "PostgreSQL, two hubs",
            &fresh_database().await,
            2,
            &target.url(),
        )
        .await,
    );

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{SERVICES} services checked every 60 s, {AGENTS} simulated agents sending one result a second each, {} s window",
        WINDOW.as_secs()
    );
    println!(
        "{:<22} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>10}",
        "setup", "sent/s", "stored/s", "SSE/s", "p50 ms", "p99 ms", "max ms", "hub CPU %"
    );
    for f in &figures {
        println!(
            "{:<22} {:>9.0} {:>11.0} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>10.0}",
            f.setup,
            f.sent_per_s,
            f.stored_per_s,
            f.seen_per_s,
            ms(f.p50),
            ms(f.p99),
            ms(f.max),
            f.cpu * 100.0
        );
    }
    println!(
        "health checks answered by the target over all runs: {}",
        target.hits()
    );
}
