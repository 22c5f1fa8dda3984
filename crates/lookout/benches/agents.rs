//! Benchmark: agents.
//!
//! 1. A result line appended to a check's log → its `result` event on the
//!    hub's SSE stream: p50/p99 over RUNS lines. Real `lookout agent run` and
//!    `lookout serve` processes (release build).
//! 2. Hub ingestion: AGENTS simulated agents (WebSocket clients in this
//!    process speaking the agent protocol, each with its own server and key)
//!    each send one result a second for WINDOW: hub CPU and RSS, and the lag
//!    from a result's timestamp to its SSE event in the first and the last
//!    10 s (growth would mean the hub falls behind).
//! 3. The agent's RSS after it has been idle for a few seconds.
//!
//! Run: `cargo bench -p lookout --bench agents`

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use lookout_testkit::bench::{
    cpu_time, now, percentile, provision_agent as provision, simulated_agent as simulated,
    spawn_agent, spawn_hub_binary_with, status_kib, BenchAgent,
};
use lookout_testkit::SseClient;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const RUNS: usize = 100;
const AGENTS: usize = 500;
const WINDOW: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("agents: benchmark");
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut hub = spawn_hub_binary_with(
        std::path::Path::new(BIN),
        &[
            "--rate-login",
            "off",
            "--rate-agents",
            "off",
            "--agent-heartbeat",
            "5s",
        ],
    );
    let pid = hub.pid().expect("a hub process");
    let base = format!("http://{}", hub.addr);
    let client = reqwest::Client::new();

    // 1. Log line → SSE event, through a real agent.
    let BenchAgent {
        host: _host,
        log,
        process: mut agent,
    } = spawn_agent(Path::new(BIN), &client, &base, "bench-host").await;
    let mut events = SseClient::connect(&client, &format!("{base}/api/events"), None).await;
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    // Wait for the agent to be connected: the first line's event.
    writeln!(file, "{}, OK, warm-up", now().to_rfc3339()).unwrap();
    events
        .wait_for(Duration::from_secs(30), |m| {
            m.event == "result" && m.data["message"] == "warm-up"
        })
        .await;
    let mut latencies = Vec::new();
    for run in 0..RUNS {
        let message = format!("run {run}");
        let t = Instant::now();
        writeln!(file, "{}, OK, {message}", now().to_rfc3339()).unwrap();
        events
            .wait_for(Duration::from_secs(10), |m| {
                m.event == "result" && m.data["message"] == message.as_str()
            })
            .await;
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agent_rss = status_kib(agent.id(), "VmRSS:");
    let _ = agent.kill();
    let _ = agent.wait();

    // 2. Ingestion from many agents.
    let mut keys = Vec::new();
    for i in 0..AGENTS {
        keys.push(provision(&client, &base, &format!("sim-{i:03}")).await);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let mut sims = Vec::new();
    for (i, (id, key)) in keys.into_iter().enumerate() {
        let offset = Duration::from_millis((i as u64 * 1000) / AGENTS as u64);
        sims.push(tokio::spawn(simulated(
            base.clone(),
            id,
            key,
            offset,
            stop.clone(),
        )));
    }
    let mut sse = SseClient::connect(&client, &format!("{base}/api/events"), None).await;
    // Let every agent connect and send a first round.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    let (mut early, mut late, mut received) = (Vec::new(), Vec::new(), 0u64);
    while t0.elapsed() < WINDOW {
        let Some(m) = sse.next(Duration::from_secs(5)).await else {
            break;
        };
        if m.event != "result" {
            continue;
        }
        received += 1;
        let at: chrono::DateTime<chrono::Utc> = m.data["at"].as_str().unwrap().parse().unwrap();
        let lag = (now() - at).to_std().unwrap_or_default();
        let elapsed = t0.elapsed();
        if elapsed < Duration::from_secs(10) {
            early.push(lag);
        } else if elapsed > WINDOW - Duration::from_secs(10) {
            late.push(lag);
        }
    }
    let window = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(pid) - cpu0).as_secs_f64() / window;
    let (rss, hwm) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    stop.cancel();
    let mut sent = 0;
    for s in sims {
        sent += s.await.unwrap_or(0);
    }
    hub.stop().await;
    early.sort();
    late.sort();

    println!("Result line appended to a check's log → SSE `result` event, {RUNS} lines");
    println!(
        "  p50 {:>7.1} ms   p99 {:>7.1} ms   min {:>6.1} ms   max {:>7.1} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[0]),
        ms(*latencies.last().unwrap())
    );
    println!(
        "Agent RSS after 5 s idle: {:.1} MiB",
        agent_rss as f64 / 1024.0
    );
    println!(
        "{AGENTS} simulated agents, one result a second each, {:.0} s window",
        window
    );
    println!(
        "  results sent {sent}, SSE `result` events received in the window {received} ({:.0}/s)",
        received as f64 / window
    );
    println!("  hub CPU  {:>6.1} % of one core", cpu * 100.0);
    println!(
        "  hub RSS  {:>6.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "  lag result → SSE, first 10 s: p50 {:.1} ms p99 {:.1} ms; last 10 s: p50 {:.1} ms p99 {:.1} ms",
        ms(percentile(&early, 0.5)),
        ms(percentile(&early, 0.99)),
        ms(percentile(&late, 0.5)),
        ms(percentile(&late, 0.99))
    );
}
