//! Benchmark: a full systemd scan with ports, against the per-unit method.
//!
//! In a real `systemd --user` sandbox (root needed) it creates 200 services,
//! half of them listening on a TCP port, then times, in the same run:
//!
//! - lookout's scan, in-process (D-Bus + netlink + /proc), and as a whole
//!   `lookout scan --systemd user --json` invocation;
//! - the per-unit method: `systemctl list-units --type=service --all`, one
//!   `systemctl show` per unit, and `ss -tlnp`;
//! - one bare `systemctl list-units --all` invocation.
//!
//! Every command talks to the sandbox from outside it, through
//! `/proc/PID/root/run/user/0`, so none pays for `nsenter`.
//!
//! Run: `cargo bench -p lookout --bench scan`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lookout_testkit::{free_port_in, SystemdSandbox};

const UNITS: usize = 200;
const RUNS: usize = 15;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run");
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("scan: benchmark");
        return;
    }
    let sb = SystemdSandbox::start();
    let mut listening = Vec::new();
    for i in 0..UNITS {
        let name = format!("bench-{i:03}.service");
        let exec = if i % 2 == 0 {
            let port = loop {
                let p = free_port_in(3000..10000);
                if !listening.contains(&p) {
                    break p;
                }
            };
            listening.push(port);
            format!(
                "/usr/bin/python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\", {port})); s.listen(); time.sleep(100000)'"
            )
        } else {
            "/bin/sleep 100000".to_owned()
        };
        sb.write_unit(
            &name,
            &format!("[Unit]\nDescription=Bench {i}\n[Service]\nExecStart={exec}\n"),
        );
    }
    sb.daemon_reload();
    let names: Vec<String> = (0..UNITS)
        .map(|i| format!("bench-{i:03}.service"))
        .collect();
    let mut start = vec!["start"];
    start.extend(names.iter().map(String::as_str));
    sb.systemctl_ok(&start);
    // Wait until every listener is up.
    let until = Instant::now() + Duration::from_secs(120);
    for port in &listening {
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(Instant::now() < until, "listener on {port} never came up");
            std::thread::yield_now();
        }
    }

    let runtime_dir = format!("/proc/{}/root/run/user/0", sb.pid());
    let bus = format!("unix:path={runtime_dir}/bus");
    // SAFETY of the environment: set before any thread of ours reads it.
    std::env::set_var("XDG_RUNTIME_DIR", &runtime_dir);
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &bus);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let systemd = rt
        .block_on(lookout_systemd::Systemd::connect(
            lookout_systemd::Scope::User,
        ))
        .expect("connect to the sandbox's user manager");
    let mut found = 0;
    let ours: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let scan = rt.block_on(systemd.scan()).unwrap();
            let elapsed = t.elapsed();
            found = scan
                .services
                .iter()
                .filter(|s| s.name.starts_with("bench-") && !s.listens.is_empty())
                .count();
            elapsed
        })
        .collect();
    assert_eq!(found, UNITS / 2, "every listening unit has its port");

    let cli: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            run(Command::new(env!("CARGO_BIN_EXE_lookout")).args([
                "scan",
                "--systemd",
                "user",
                "--json",
            ]));
            t.elapsed()
        })
        .collect();

    let bare: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            run(Command::new("systemctl").args(["--user", "list-units", "--all", "--no-pager"]));
            t.elapsed()
        })
        .collect();

    let seed_runs = 3;
    let seed: Vec<Duration> = (0..seed_runs)
        .map(|_| {
            let t = Instant::now();
            let list = run(Command::new("systemctl").args([
                "--user",
                "list-units",
                "--type=service",
                "--all",
                "--no-pager",
                "--plain",
                "--no-legend",
            ]));
            let units: Vec<String> = String::from_utf8_lossy(&list)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect();
            for unit in &units {
                run(Command::new("systemctl").args(["--user", "show", unit, "--no-pager"]));
            }
            run(Command::new("ss").args(["-tlnp"]));
            t.elapsed()
        })
        .collect();

    let (ours, cli, bare, seed) = (median(ours), median(cli), median(bare), median(seed));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("Scan of {UNITS} services ({} listening) in a systemd --user sandbox, median of {RUNS} runs (per-unit method: {seed_runs})", UNITS / 2);
    println!(
        "  lookout scan, in-process              {:>9.2} ms",
        ms(ours)
    );
    println!(
        "  lookout scan --json, whole process     {:>9.2} ms",
        ms(cli)
    );
    println!(
        "  bare `systemctl list-units --all`      {:>9.2} ms",
        ms(bare)
    );
    println!(
        "  per-unit method (list + show each + ss) {:>9.2} ms",
        ms(seed)
    );
    println!(
        "  per-unit / lookout (in-process)        {:>9.1}x   (goal: >= 50x)",
        ms(seed) / ms(ours)
    );
    println!(
        "  per-unit / lookout (whole process)     {:>9.1}x",
        ms(seed) / ms(cli)
    );
    println!(
        "  lookout in-process / bare list-units   {:>9.2}    (goal: <= 1)",
        ms(ours) / ms(bare)
    );
    drop(sb);
}
