//! Benchmark: the CPU a hub spends following systemd live.
//!
//! In a real `systemd --user` sandbox (root needed) it starts UNITS services
//! and a release `lookout serve --systemd user --scan-every off`, then
//! measures the hub's CPU time (`/proc/PID/stat`) over WINDOW twice in the
//! same run: idle (no unit changes: the baseline), and while this process
//! stops or starts one unit every 1/RATE s through the manager (each job
//! is several signals: the unit's and its service's properties, the job).
//! At the end every unit's state in the hub's registry must match systemd's:
//! nothing missed.
//!
//! Run: `cargo bench -p lookout --bench follow`

use std::time::{Duration, Instant};

use lookout_systemd::{Action, Scope, Systemd, UnitName};
use lookout_testkit::bench::cpu_time;
use lookout_testkit::SystemdSandbox;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const UNITS: usize = 500;
const RATE: u32 = 10;
const WINDOW: Duration = Duration::from_secs(30);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("follow: benchmark");
        return;
    }
    let sb = SystemdSandbox::start();
    for i in 0..UNITS {
        sb.write_unit(
            &format!("bench-{i:03}.service"),
            &format!("[Unit]\nDescription=Bench {i}\n[Service]\nExecStart=/bin/sleep 100000\n"),
        );
    }
    sb.daemon_reload();
    let names: Vec<String> = (0..UNITS)
        .map(|i| format!("bench-{i:03}.service"))
        .collect();
    let mut start = vec!["start"];
    start.extend(names.iter().map(String::as_str));
    sb.systemctl_ok(&start);

    let hub = sb.spawn_hub(BIN, &["--scan-every", "off", "--self-check", "off"]);
    let pid = hub.pid().expect("hub pid");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The scan at start has every unit.
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let all = hub.get_json("/api/services?status=all").await;
            let n = all.as_array().unwrap().iter().filter(|s| s["name"].as_str().unwrap().starts_with("bench-")).count();
            if n == UNITS {
                break;
            }
            assert!(Instant::now() < until, "the hub found {n} of {UNITS} units");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;

        let idle = cpu_over(pid, WINDOW, async {}).await;

        // This process drives the manager through the sandbox's bus.
        let runtime_dir = format!("/proc/{}/root/run/user/0", sb.pid());
        // SAFETY of the environment: set before any thread of ours reads it
        // (the runtime's workers read no environment).
        std::env::set_var("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={runtime_dir}/bus"));
        let systemd = Systemd::connect(Scope::User).await.expect("connect to the sandbox");
        let mut changes = 0u32;
        let driver = {
            let systemd = systemd.clone();
            let changes = &mut changes;
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
                let mut running = vec![true; UNITS];
                let started = Instant::now();
                let mut i = 0usize;
                while started.elapsed() < WINDOW {
                    tick.tick().await;
                    let k = (i * 7) % UNITS;
                    i += 1;
                    let action = if running[k] { Action::Stop } else { Action::Start };
                    running[k] = !running[k];
                    let unit = UnitName::parse(&format!("bench-{k:03}.service")).unwrap();
                    let systemd = systemd.clone();
                    tokio::spawn(async move {
                        systemd.control(&unit, action, Duration::from_secs(30)).await.expect("control");
                    });
                    *changes += 1;
                }
            }
        };
        let busy = cpu_over(pid, WINDOW, driver).await;
        tokio::time::sleep(Duration::from_secs(2)).await;

        // Nothing missed: the registry says what systemd says.
        let all = hub.get_json("/api/services?status=all").await;
        let mut wrong = Vec::new();
        for s in all.as_array().unwrap().iter().filter(|s| s["name"].as_str().unwrap().starts_with("bench-")) {
            let name = s["name"].as_str().unwrap();
            let truth = systemd.status(&UnitName::parse(name).unwrap()).await.unwrap().active_state;
            if s["systemd_state"] != Value::String(truth.clone()) {
                wrong.push(format!("{name}: hub {} systemd {truth}", s["systemd_state"]));
            }
        }
        let share = |cpu: Duration| cpu.as_secs_f64() / WINDOW.as_secs_f64() * 100.0;
        println!("Following {UNITS} units of a systemd --user manager, {} s windows, release hub", WINDOW.as_secs());
        println!("  idle (baseline)                         {:>7.2} % of a core", share(idle));
        println!("  {changes} starts/stops ({RATE}/s)                {:>7.2} % of a core   (goal: < 2 %)", share(busy));
        println!("  following cost, above idle              {:>7.2} % of a core", share(busy.saturating_sub(idle)));
        println!("  busy / idle                             {:>7.1}x", busy.as_secs_f64() / idle.as_secs_f64().max(0.001));
        println!("  units whose state the hub got wrong     {:>7}", wrong.len());
        assert!(wrong.is_empty(), "{wrong:?}");
    });
    drop(hub);
    drop(sb);
}

/// The hub's CPU time over `window`, with `load` running meanwhile.
async fn cpu_over(
    pid: u32,
    window: Duration,
    load: impl std::future::Future<Output = ()>,
) -> Duration {
    let before = cpu_time(pid);
    let started = Instant::now();
    load.await;
    if let Some(left) = window.checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    cpu_time(pid) - before
}
