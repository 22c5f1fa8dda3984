//! Benchmark: health rounds over 1,000 loopback targets, 10% never
//! answering, with the hub's real scheduler and checker on a real SQLite
//! store.
//!
//! - Round "http": 1,000 HTTP checks (the round the earlier figures give).
//! - Round "mixed": 400 HTTP, 300 TCP, 150 ICMP and 150 DNS checks; 10% of
//!   the HTTP and DNS targets never answer.
//! - One round per kind (1,000 checks each, all answering), for the hub's CPU
//!   per check of each kind.
//!
//! The targets run in a child process (this binary re-executed: HTTP
//! servers, one of them accepting and never answering, which the TCP checks
//! connect to as well; a DNS responder and a UDP socket that never
//! replies), so the CPU time measured is the hub's own. As root the bench
//! runs in a network namespace of its own, where it lets its processes
//! ping (`net.ipv4.ping_group_range`); without root the ICMP rounds are
//! left out.
//!
//! Goal: a round takes about one timeout (the silent targets wait side by
//! side), not the sum of the timeouts.
//!
//! Run: `cargo bench -p lookout --bench health_round`

use std::sync::Arc;
use std::time::{Duration, Instant};

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
const SILENT_EVERY: usize = 10; // every 10th HTTP or DNS target never answers
const SERVERS: usize = 10;
const PER_KIND: usize = 1_000;

/// Child mode: SERVERS HTTP listeners (the last accepts and never answers),
/// a DNS responder and a silent UDP socket; prints their ports.
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
    // A DNS server that answers every query NOERROR: the query sent back
    // as a response (QR and RA set, no answers).
    let dns = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ports.push(dns.local_addr().unwrap().port());
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = dns.recv_from(&mut buf).await {
            if n >= 12 {
                buf[2] |= 0x80;
                buf[3] = 0x80;
                let _ = dns.send_to(&buf[..n], from).await;
            }
        }
    });
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ports.push(silent.local_addr().unwrap().port());
    println!(
        "{}",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _keep = silent;
    std::future::pending::<()>().await;
}

/// The targets the child serves.
struct Ports {
    answering: Vec<u16>,
    hanging: u16,
    dns: u16,
    silent_dns: u16,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Tcp,
    Icmp,
    Dns,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Http => "HTTP",
            Kind::Tcp => "TCP",
            Kind::Icmp => "ICMP",
            Kind::Dns => "DNS",
        }
    }
}

/// The service body of the `i`th target of a kind; silent ones never answer.
fn target(kind: Kind, i: usize, ports: &Ports, with_silent: bool) -> serde_json::Value {
    let silent = with_silent && i.is_multiple_of(SILENT_EVERY);
    let name = format!("{}-{i:04}", kind.name().to_lowercase());
    match kind {
        Kind::Http => {
            let port = if silent {
                ports.hanging
            } else {
                ports.answering[i % ports.answering.len()]
            };
            serde_json::json!({"name": name, "base_url": format!("http://127.0.0.1:{port}"),
                               "health_endpoint": format!("/health/{i}"), "check_interval_secs": 3600})
        }
        Kind::Tcp => {
            let port = ports.answering[i % ports.answering.len()];
            serde_json::json!({"name": name, "base_url": format!("tcp://127.0.0.1:{port}"),
                               "check_interval_secs": 3600})
        }
        Kind::Icmp => serde_json::json!({"name": name,
            "base_url": format!("icmp://127.0.0.{}", 1 + i % 250), "check_interval_secs": 3600}),
        Kind::Dns => {
            let port = if silent { ports.silent_dns } else { ports.dns };
            serde_json::json!({"name": name, "base_url": format!("dns://127.0.0.1:{port}"),
                               "dns": {"name": format!("host-{i}.home.arpa")},
                               "check_interval_secs": 3600})
        }
    }
}

/// What one round took.
struct Round {
    checks: usize,
    healthy: usize,
    unhealthy: usize,
    wall: Duration,
    cpu: Duration,
}

/// Registers `targets` on a fresh store and runs the scheduler until each
/// has been checked once.
async fn round(targets: &[serde_json::Value], defaults: CheckDefaults) -> Round {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqlStore::open(&dir.path().join("bench.db")).await.unwrap());
    let clock = Arc::new(SystemClock);
    let now = lookout_hub::clock::Clock::now(clock.as_ref());
    for body in targets {
        let new = parse_new_service(body.as_object().unwrap()).unwrap();
        store.create_service(&new, now).await.unwrap();
    }
    let events = EventBus::new(4 * targets.len());
    let mut rx = events.subscribe();
    let stop = CancellationToken::new();
    let registry = Arc::new(
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
    let (mut healthy, mut unhealthy) = (0usize, 0usize);
    while healthy + unhealthy < targets.len() {
        if let Ok(Event::HealthChecked { status, .. }) = rx.recv().await.as_deref() {
            match status {
                HealthStatus::Healthy => healthy += 1,
                _ => unhealthy += 1,
            }
        }
    }
    let wall = started.elapsed();
    let cpu = lookout_testkit::bench::cpu_time(std::process::id()) - cpu_before;
    stop.cancel();
    let _ = task.await;
    Round {
        checks: targets.len(),
        healthy,
        unhealthy,
        wall,
        cpu,
    }
}

fn report(label: &str, r: &Round, timeout: Duration) {
    println!(
        "  {label:<28} {:>5} checks  {:>4} / {:<4} healthy / not   round {:>6.3} s = {:>4.2}x timeout   hub CPU {:>5.0} ms = {:.3} ms per check",
        r.checks,
        r.healthy,
        r.unhealthy,
        r.wall.as_secs_f64(),
        r.wall.as_secs_f64() / timeout.as_secs_f64(),
        r.cpu.as_secs_f64() * 1e3,
        r.cpu.as_secs_f64() * 1e3 / r.checks as f64,
    );
}

/// As root, re-runs this bench in a network namespace of its own where its
/// processes may ping; `true` when this process is that run (or cannot be).
fn in_own_netns() -> bool {
    if std::env::var_os("LOOKOUT_BENCH_NETNS").is_some() {
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        let ping = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647").is_ok();
        return up && ping;
    }
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid() == 0
    });
    if !root {
        return false;
    }
    let status = std::process::Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env("LOOKOUT_BENCH_NETNS", "1")
        .status()
        .expect("unshare");
    std::process::exit(status.code().unwrap_or(1));
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
    let may_ping = in_own_netns();
    let (mut child, ports) = lookout_testkit::bench::spawn_child_mode("LOOKOUT_BENCH_TARGETS");
    let ports = Ports {
        answering: ports[..SERVERS - 1].to_vec(),
        hanging: ports[SERVERS - 1],
        dns: ports[SERVERS],
        silent_dns: ports[SERVERS + 1],
    };

    let mut defaults = CheckDefaults::default();
    if let Some(n) = std::env::var("LOOKOUT_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        defaults.concurrency = n;
    }
    let timeout = defaults.timeout;
    println!(
        "Health rounds on loopback, timeout {timeout:?}, concurrency {}{}",
        defaults.concurrency,
        if may_ping { "" } else { " (not root: no ICMP)" }
    );

    let http: Vec<_> = (0..TARGETS)
        .map(|i| target(Kind::Http, i, &ports, true))
        .collect();
    let r = round(&http, defaults).await;
    report("http, 10% silent", &r, timeout);
    assert_eq!(r.unhealthy, TARGETS / SILENT_EVERY);

    let mut mix = vec![(Kind::Http, 400), (Kind::Tcp, 300), (Kind::Dns, 150)];
    if may_ping {
        mix.push((Kind::Icmp, 150));
    }
    let mixed: Vec<_> = mix
        .iter()
        .flat_map(|&(kind, n)| (0..n).map(move |i| (kind, i)))
        .map(|(kind, i)| target(kind, i, &ports, true))
        .collect();
    let r = round(&mixed, defaults).await;
    report(
        if may_ping {
            "mixed: 400/300/150/150"
        } else {
            "mixed: 400/300/150, no ICMP"
        },
        &r,
        timeout,
    );
    assert_eq!(r.unhealthy, 400 / SILENT_EVERY + 150 / SILENT_EVERY);

    for kind in [Kind::Http, Kind::Tcp, Kind::Icmp, Kind::Dns] {
        if kind == Kind::Icmp && !may_ping {
            continue;
        }
        let targets: Vec<_> = (0..PER_KIND)
            .map(|i| target(kind, i, &ports, false))
            .collect();
        let r = round(&targets, defaults).await;
        report(&format!("{} only, all answering", kind.name()), &r, timeout);
        assert_eq!(r.healthy, PER_KIND, "{}", kind.name());
    }
    let _ = child.kill();
    let _ = child.wait();
}
