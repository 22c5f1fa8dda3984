//! Resource usage: what sampling costs and what its history weighs.
//!
//! `cargo bench -p lookout --bench usage` (as root: it starts the systemd
//! sandbox):
//! 1. **Sampling 200 units and the host**: 200 running units in a real
//!    systemd user manager; one interval's sampling as the hub and the
//!    agent do it (each unit's cgroup files and the host's `/proc` and
//!    `/sys`), in CPU time of the sampling thread, against a **baseline
//!    measured in the same run**: the same figures asked of systemd over
//!    D-Bus (`systemctl show` of the 200 units), counting systemd's own CPU
//!    and systemctl's.
//! 2. **The database for 50 services over 90 days**: a simulated run's
//!    steady state written through the store as the sampler and its rollups
//!    leave it (15-minute buckets for 90 days, 1-minute buckets for a day,
//!    an hour of raw samples every 10 s, of 50 services and the host), then
//!    the SQLite file's size after `VACUUM`.
//! 3. **The agent's memory and CPU**: two real agents connected to a hub,
//!    both scanning the sandbox's user manager with its 200 running units,
//!    one sending its host's and those units' usage every second, one with
//!    `--usage-every off`; their anonymous memory after 10 s and after 60 s,
//!    and the CPU time each used in between.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lookout_hub::store::{HostUsageRow, Spread, SqlStore, Store, UnitUsageRow, UsageStore};
use lookout_testkit::bench::cpu_time;
use lookout_testkit::SystemdSandbox;
use lookout_usage::{Cgroups, HostReader};

const UNITS: usize = 200;
const ROUNDS: u32 = 200;

/// This thread's CPU time, from the scheduler's account (ns).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
}

/// CPU time of the children this process has waited for (systemctl).
fn children_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[13].parse::<u64>().unwrap() + fields[14].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The sandbox with [`UNITS`] running units; their names.
fn sandbox_with_units() -> (SystemdSandbox, Vec<String>) {
    let sb = SystemdSandbox::start();
    for i in 0..UNITS {
        sb.write_unit(
            &format!("bench-{i}.service"),
            "[Service]\nExecStart=/bin/sleep infinity\n",
        );
    }
    sb.daemon_reload();
    let names: Vec<String> = (0..UNITS).map(|i| format!("bench-{i}.service")).collect();
    let mut start = vec!["start".to_owned()];
    start.extend(names.iter().cloned());
    let args: Vec<&str> = start.iter().map(String::as_str).collect();
    sb.systemctl_ok(&args);
    (sb, names)
}

fn stop_units(sb: &SystemdSandbox, names: &[String]) {
    let mut stop = vec!["stop".to_owned()];
    stop.extend(names.iter().cloned());
    let args: Vec<&str> = stop.iter().map(String::as_str).collect();
    sb.systemctl_ok(&args);
}

fn sampling() {
    let (sb, names) = sandbox_with_units();
    let groups: Vec<String> = names
        .iter()
        .map(|n| sb.property(n, "ControlGroup"))
        .collect();
    let cgroups = Cgroups::detect();
    let reader = HostReader::default();
    assert!(
        groups.iter().all(|g| cgroups.read(g).is_some()),
        "every unit's cgroup reads"
    );

    // Each file read by path every time, as a first reading does.
    let cpu = thread_cpu();
    for _ in 0..ROUNDS {
        for g in &groups {
            std::hint::black_box(cgroups.read(g));
        }
    }
    let by_path = (thread_cpu() - cpu) / ROUNDS;
    // The sampler's rounds: files kept open and read again from the start.
    let mut files = lookout_usage::CgroupReader::new(cgroups.clone());
    for g in &groups {
        files.read(g);
    }
    files.end_round();
    let cpu = thread_cpu();
    let wall = Instant::now();
    for _ in 0..ROUNDS {
        let host = reader.counters(DateTime::UNIX_EPOCH, true);
        std::hint::black_box(&host);
        for g in &groups {
            std::hint::black_box(files.read(g));
        }
        files.end_round();
    }
    let per_round = (thread_cpu() - cpu) / ROUNDS;
    let wall_round = wall.elapsed() / ROUNDS;
    let open = files.open_files();
    // The host alone.
    let cpu = thread_cpu();
    for _ in 0..ROUNDS {
        std::hint::black_box(reader.counters(DateTime::UNIX_EPOCH, true));
    }
    let host_round = (thread_cpu() - cpu) / ROUNDS;

    // Baseline: the same figures over D-Bus, from systemd.
    let manager: u32 = std::fs::read_to_string(sb.dir().join("systemd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut show = vec![
        "show".to_owned(),
        "-p".to_owned(),
        "ControlGroup,CPUUsageNSec,MemoryCurrent,TasksCurrent,IOReadBytes,IOWriteBytes".to_owned(),
    ];
    show.extend(names.iter().cloned());
    let show: Vec<&str> = show.iter().map(String::as_str).collect();
    const DBUS_ROUNDS: u32 = 20;
    let (manager_cpu, children, wall) = (cpu_time(manager), children_cpu(), Instant::now());
    for _ in 0..DBUS_ROUNDS {
        std::hint::black_box(sb.systemctl_ok(&show));
    }
    let dbus_wall = wall.elapsed() / DBUS_ROUNDS;
    let manager_round = (cpu_time(manager) - manager_cpu) / DBUS_ROUNDS;
    let systemctl_round = (children_cpu() - children) / DBUS_ROUNDS;
    let dbus_round = manager_round + systemctl_round;

    println!("sampling {UNITS} units and the host, {ROUNDS} rounds:");
    println!(
        "  cgroupfs + /proc: {:.2} ms CPU per interval ({:.2} ms of it the host), {:.2} ms wall",
        ms(per_round),
        ms(host_round),
        ms(wall_round)
    );
    println!(
        "  the units' cgroups read by path each time: {:.2} ms CPU per interval; kept open: {open} files",
        ms(by_path)
    );
    println!(
        "  baseline, D-Bus (systemctl show): {:.2} ms CPU per interval (systemd {:.2} ms, systemctl {:.2} ms), {:.2} ms wall",
        ms(dbus_round),
        ms(manager_round),
        ms(systemctl_round),
        ms(dbus_wall)
    );
    println!(
        "  ratio: cgroupfs costs {:.2} of the D-Bus baseline; {:.1} % of the 5 ms budget",
        per_round.as_secs_f64() / dbus_round.as_secs_f64().max(1e-9),
        per_round.as_secs_f64() / 0.005 * 100.0
    );
    stop_units(&sb, &names);
}

/// A new SQLite store at `path` with `n` services; their ids.
async fn with_services(path: &std::path::Path, n: i64, at: DateTime<Utc>) -> (SqlStore, Vec<i64>) {
    let store = SqlStore::open(path).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let new = lookout_proto::service::parse_new_service(
            serde_json::json!({"name": format!("svc-{i}")})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        ids.push(store.create_service(&new, at).await.unwrap().id);
    }
    (store, ids)
}

async fn database_size() {
    const SERVICES: i64 = 50;
    let end: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).unwrap(); // on a quarter hour
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.db");
    let (store, ids) = with_services(&path, SERVICES, end).await;
    // Figures that vary as real ones do: CPU within a few percent, memory in
    // the hundreds of MiB, so the integers take their real widths.
    let unit = |id: i64, width: u32, secs: i64, k: i64| {
        let cpu = ((k * 7 + id) % 400) as f64 / 10.0;
        let mem = (200 + (k + id) % 300) as f64 * 1_048_576.0 + (k % 4096) as f64;
        UnitUsageRow {
            service_id: id,
            width,
            start: end - chrono::Duration::seconds(secs),
            samples: if width == 0 { 1 } else { width / 10 },
            cpu: Some(Spread {
                min: cpu / 2.0,
                avg: cpu,
                max: cpu * 1.5,
            }),
            memory: Some(Spread {
                min: mem * 0.98,
                avg: mem,
                max: mem * 1.01,
            }),
            tasks: Some((3 + k % 20) as f64),
            io_read: Some((k % 5000) as f64),
            io_write: Some((k % 70_000) as f64),
        }
    };
    let host = |width: u32, secs: i64, k: i64| HostUsageRow {
        host: "homeserver".into(),
        width,
        start: end - chrono::Duration::seconds(secs),
        samples: if width == 0 { 1 } else { width / 10 },
        cpu: Spread {
            min: 1.0,
            avg: (k % 60) as f64,
            max: 95.5,
        },
        memory: Spread {
            min: 3e9,
            avg: 3.2e9 + (k % 1000) as f64,
            max: 3.5e9,
        },
        memory_total: 16_000_000_000,
        swap: 1e8,
        swap_total: 2_000_000_000,
        load: (k % 400) as f64 / 100.0,
        disk: 61.25,
        disk_used: 600_000_000_000,
        disk_size: 1_000_000_000_000,
        net_rx: (k % 100_000) as f64,
        net_tx: (k % 50_000) as f64,
        disk_read: (k % 2_000_000) as f64,
        disk_write: (k % 3_000_000) as f64,
        temperature: Some(45.5),
    };
    let started = Instant::now();
    let mut counts = [0usize; 3];
    for (slot, (width, span, step)) in [
        (900u32, 90 * 86_400i64, 900i64),
        (60, 86_400, 60),
        (0, 3600, 10),
    ]
    .into_iter()
    .enumerate()
    {
        let mut units = Vec::new();
        let mut hosts = Vec::new();
        let mut k = 0;
        let mut secs = step;
        while secs <= span {
            for id in &ids {
                units.push(unit(*id, width, secs, k));
            }
            hosts.push(host(width, secs, k));
            k += 1;
            secs += step;
            if units.len() >= 20_000 {
                counts[slot] += units.len();
                store.put_unit_usage(&units).await.unwrap();
                store.put_host_usage(&hosts).await.unwrap();
                units.clear();
                hosts.clear();
            }
        }
        counts[slot] += units.len();
        store.put_unit_usage(&units).await.unwrap();
        store.put_host_usage(&hosts).await.unwrap();
    }
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("VACUUM").execute(&pool).await.unwrap();
    pool.close().await;
    let size = std::fs::metadata(&path).unwrap().len();
    // The same database without any usage: what the rest weighs.
    let base_dir = tempfile::tempdir().unwrap();
    let base_path = base_dir.path().join("lookout.db");
    let (base, _) = with_services(&base_path, SERVICES, end).await;
    drop(base);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", base_path.display()))
        .await
        .unwrap();
    sqlx::query("VACUUM").execute(&pool).await.unwrap();
    pool.close().await;
    let base_size = std::fs::metadata(&base_path).unwrap().len();
    println!(
        "database for {SERVICES} services and their host over 90 days (SQLite, after VACUUM):"
    );
    println!(
        "  unit rows: {} of 15 min, {} of 1 min, {} raw; written in {:.1} s",
        counts[0],
        counts[1],
        counts[2],
        started.elapsed().as_secs_f64()
    );
    println!(
        "  file: {:.1} MB ({:.1} MB without usage); {:.0} % of the 50 MB budget; {:.1} bytes per unit row",
        size as f64 / 1e6,
        base_size as f64 / 1e6,
        size as f64 / 50e6 * 100.0,
        (size - base_size) as f64 / (counts.iter().sum::<usize>() as f64)
    );
}

/// The agent's process under `nsenter` and `env`: the one running `lookout`.
async fn agent_pid(wrapper: u32) -> u32 {
    let mut current = wrapper;
    for _ in 0..100 {
        // `nsenter` and `env` replace themselves with what they run.
        let exe = std::fs::read_link(format!("/proc/{current}/exe")).unwrap_or_default();
        if exe.file_name().is_some_and(|n| n == "lookout") {
            return current;
        }
        let children = std::fs::read_to_string(format!("/proc/{current}/task/{current}/children"))
            .unwrap_or_default();
        match children.split_whitespace().next() {
            Some(child) => {
                let child: u32 = child.parse().unwrap();
                let exe = std::fs::read_link(format!("/proc/{child}/exe")).unwrap_or_default();
                if exe.file_name().is_some_and(|n| n == "lookout") {
                    return child;
                }
                current = child;
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("no agent under {wrapper}");
}

async fn agent_memory() {
    use lookout_testkit::bench::{rollup_kib, spawn_agent_on, spawn_hub_binary, BenchAgent};
    let (sb, names) = sandbox_with_units();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_lookout"));
    let mut hub = spawn_hub_binary(bin);
    let base = hub.url("");
    let base = base.trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let BenchAgent {
        host: _off_host,
        process: mut off,
        ..
    } = spawn_agent_on(
        Some(&sb),
        bin,
        &client,
        &base,
        "usage-off",
        &["--usage-every", "off"],
    )
    .await;
    let BenchAgent {
        host: _on_host,
        process: mut on,
        ..
    } = spawn_agent_on(
        Some(&sb),
        bin,
        &client,
        &base,
        "usage-on",
        &["--usage-every", "1s"],
    )
    .await;
    let (off_pid, on_pid) = (agent_pid(off.id()).await, agent_pid(on.id()).await);
    let anon = |pid: u32| rollup_kib(pid, "Anonymous:");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (off_10, on_10) = (anon(off_pid), anon(on_pid));
    let (off_cpu, on_cpu) = (cpu_time(off_pid), cpu_time(on_pid));
    tokio::time::sleep(Duration::from_secs(50)).await;
    let (off_60, on_60) = (anon(off_pid), anon(on_pid));
    let (off_cpu, on_cpu) = (cpu_time(off_pid) - off_cpu, cpu_time(on_pid) - on_cpu);
    let hosts = hub.get_json("/api/hosts").await;
    let reported = hosts
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["host"] == "usage-on");
    assert!(
        reported,
        "the sampling agent's host reached the hub: {hosts}"
    );
    let page = hub.get_text("/hosts/usage-on").await;
    let units = page.matches("bench-").count();
    assert!(
        units >= UNITS,
        "the sampling agent's units reached the hub: {units}"
    );
    println!(
        "the agent, scanning {UNITS} running units, sampling them and its host every second against off:"
    );
    println!("  anonymous memory, usage off: {off_10} KiB after 10 s, {off_60} KiB after 60 s");
    println!("  anonymous memory, usage on:  {on_10} KiB after 10 s, {on_60} KiB after 60 s");
    println!(
        "  sampling adds {} KiB at 60 s ({:.2} MiB of the 2 MiB budget)",
        on_60 as i64 - off_60 as i64,
        (on_60 as f64 - off_60 as f64) / 1024.0
    );
    println!(
        "  CPU over 50 s: {:.0} ms off, {:.0} ms on: {:.2} ms per interval for sampling and sending",
        ms(off_cpu),
        ms(on_cpu),
        ms(on_cpu.saturating_sub(off_cpu)) / 50.0
    );
    // The agents, then their wrappers.
    for pid in [off_pid, on_pid] {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    let _ = off.wait();
    let _ = on.wait();
    hub.stop().await;
    stop_units(&sb, &names);
}

#[tokio::main]
async fn main() {
    // `-- sampling` or `-- database` runs one part.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if only.is_none() || only.as_deref() == Some("database") {
        database_size().await;
    }
    if only.as_deref() != Some("database") && only.as_deref() != Some("agent") {
        sampling();
    }
    if only.is_none() || only.as_deref() == Some("agent") {
        agent_memory().await;
    }
}
