//! Benchmark: footprint, side by side with Monit (issue 8).
//!
//! 1. Binary size of `lookout` (release), as built and stripped; Monit's
//!    binary, alone and with the shared libraries it loads that lookout does not.
//! 2. Start-up: spawn of `lookout serve` → `/readyz` answers 200, on a fresh
//!    data directory; and spawn → the first health request reaching a target
//!    with one service configured, for lookout and for Monit (median of STARTS).
//! 3. Hub memory idle (empty registry, settled), and with 1,000 services once
//!    every one has been checked (default interval).
//! 4. Agent memory: a real `lookout agent run`, connected, one check followed,
//!    idle.
//! 5. The same 100 HTTP checks every 10 s, lookout's hub and Monit at once
//!    against the same 100 loopback targets: RSS, PSS, USS and CPU over WINDOW
//!    after WARM_UP, and the requests each checker made per target per minute,
//!    counted by the targets (told apart by User-Agent), so it is plain that
//!    both did the same work.
//! 6. With `LOOKOUT_BENCH_BASELINE` naming another `lookout` binary (an older
//!    build, `scripts/baseline-binary REF`): that baseline hub runs beside the
//!    current one in the same windows. In 5 it checks its own 100 services
//!    against the same targets at once (its services check `/baseline`, so
//!    the targets tell its requests from the current hub's), and both hubs,
//!    fresh and with an empty registry, are then measured idle together over
//!    BASELINE_IDLE_WINDOW. The figures add a current / baseline column.
//!
//! The targets run in a child process (this binary re-executed), so neither
//! checker's figures include serving them. Memory is read from
//! `/proc/PID/status` (RSS, peak) and `/proc/PID/smaps_rollup` (PSS: shared
//! pages divided among the processes mapping them; USS: private pages).
//! Monit is Debian's package, run in the foreground (`monit -I`) with its own
//! control, state, id and pid files and no HTTP interface; when it is missing
//! the bench installs it as root, or skips its column.
//!
//! Run: `cargo bench -p lookout --bench footprint`, or against an older build:
//! `LOOKOUT_BENCH_BASELINE=$(scripts/baseline-binary REF) cargo bench -p lookout --bench footprint`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header::USER_AGENT, HeaderMap, Uri};
use lookout_testkit::bench::{
    cpu_time, percentile, spawn_agent, spawn_child_mode, spawn_hub_binary, status_kib, BenchAgent,
};
use lookout_testkit::{closed_port, SseClient};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const MONIT: &str = "/usr/bin/monit";
/// Loopback HTTP targets, one port each (Monit checks a host and port).
const TARGETS: usize = 100;
/// Services for the hub's memory with a fuller registry.
const MANY: usize = 1_000;
const STARTS: usize = 10;
const CHECK_EVERY_SECS: u64 = 10;
const WARM_UP: Duration = Duration::from_secs(15);
const WINDOW: Duration = Duration::from_secs(60);
/// How long the idle hub's CPU is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(20);
/// How long both hubs, current and baseline, are measured idle together.
const BASELINE_IDLE_WINDOW: Duration = Duration::from_secs(60);
/// The checkers the targets tell apart, in the order they count them: the
/// hub, Monit, and the baseline hub (a lookout too, told apart by the path
/// its services check).
const LOOKOUT: usize = 0;
const MONIT_AGENT: usize = 1;
const BASELINE: usize = 2;
const CHECKERS: usize = 3;
/// The health endpoint of the baseline hub's services.
const BASELINE_PATH: &str = "/baseline";
/// Requests a target has served, per checker.
type Counts = [u64; CHECKERS];

/// Which checker sent a request, by its User-Agent and path.
fn checker_of(agent: &str, path: &str) -> Option<usize> {
    if agent.starts_with("Monit/") {
        Some(MONIT_AGENT)
    } else if agent.starts_with("lookout/") {
        Some(if path.starts_with(BASELINE_PATH) {
            BASELINE
        } else {
            LOOKOUT
        })
    } else {
        None
    }
}

/// Child mode: TARGETS listeners answering 200 and counting requests per
/// checker, and a control listener that answers the counts as JSON
/// (`[[lookout, monit, baseline], ...]`, one per target). Prints the control
/// port, then the targets' ports, on one line.
async fn serve_targets() {
    let counts: Arc<Vec<[AtomicU64; CHECKERS]>> =
        Arc::new((0..TARGETS).map(|_| Default::default()).collect());
    let mut ports = Vec::new();
    for target in 0..TARGETS {
        let counts = counts.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let counts = counts.clone();
            async move {
                let agent = headers
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if let Some(checker) = checker_of(agent, uri.path()) {
                    counts[target][checker].fetch_add(1, Ordering::Relaxed);
                }
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let control = axum::Router::new().fallback(move || {
        let counts = counts.clone();
        async move {
            let counts: Vec<Counts> = counts
                .iter()
                .map(|c| std::array::from_fn(|i| c[i].load(Ordering::Relaxed)))
                .collect();
            axum::Json(counts)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, control).await });
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    println!("{control_port} {}", ports.join(" "));
    std::future::pending::<()>().await;
}

/// The targets' child process, seen from the bench.
struct Targets {
    child: Child,
    control: String,
    ports: Vec<u16>,
    client: reqwest::Client,
}

impl Targets {
    fn start() -> Self {
        let (child, mut ports) = spawn_child_mode("LOOKOUT_BENCH_FOOTPRINT_TARGETS");
        let control = format!("http://127.0.0.1:{}/", ports.remove(0));
        Self {
            child,
            control,
            ports,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, target: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[target])
    }

    /// Requests served so far, per checker, per target.
    async fn counts(&self) -> Vec<Counts> {
        self.client
            .get(&self.control)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn total(&self, checker: usize) -> u64 {
        self.counts().await.iter().map(|c| c[checker]).sum()
    }

    /// How long until `checker` has made more than `above` requests to
    /// `target` (any target if `None`); `None` past `deadline`.
    async fn wait_above(
        &self,
        target: Option<usize>,
        checker: usize,
        above: u64,
        deadline: Duration,
    ) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < deadline {
            let counts = self.counts().await;
            let seen: u64 = match target {
                Some(t) => counts[t][checker],
                None => counts.iter().map(|c| c[checker]).sum(),
            };
            if seen > above {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's memory, in KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    pss: u64,
    /// Private pages (clean and dirty): what ending the process would free.
    uss: u64,
    /// Heap, stacks and other anonymous pages; the rest of RSS is pages of
    /// files (the binary, libraries), which the kernel can drop and read again.
    anon: u64,
    peak_rss: u64,
}

fn memory(pid: u32) -> Memory {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .find_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next() == Some(name)).then(|| parts.next()?.parse().ok())?
            })
            .unwrap_or(0)
    };
    Memory {
        rss: status_kib(pid, "VmRSS:"),
        pss: field("Pss:"),
        uss: field("Private_Clean:") + field("Private_Dirty:"),
        anon: field("Anonymous:"),
        peak_rss: status_kib(pid, "VmHWM:"),
    }
}

/// Time on CPU so far of each thread of a process, in nanoseconds
/// (`/proc/PID/task/TID/schedstat`): finer than `/proc/PID/stat`'s 10 ms
/// ticks, which matter for a process that uses a few tens of milliseconds.
fn thread_cpu(pid: u32) -> HashMap<String, u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let ns = stat.split_whitespace().next()?.parse().ok()?;
            Some((t.file_name().to_string_lossy().into_owned(), ns))
        })
        .collect()
}

/// CPU time between two [`thread_cpu`] readings: threads that ended in
/// between are missed, so this can only undercount.
fn cpu_between(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> Duration {
    Duration::from_nanos(
        after
            .iter()
            .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
            .sum(),
    )
}

/// CPU used by `pid` over `window`: (from `/proc/PID/stat`, per thread).
async fn cpu_over(pid: u32, window: Duration) -> (Duration, Duration) {
    let (ticks, threads) = (cpu_time(pid), thread_cpu(pid));
    tokio::time::sleep(window).await;
    (
        cpu_time(pid) - ticks,
        cpu_between(&threads, &thread_cpu(pid)),
    )
}

/// `lookout serve` on `port` with its data in `dir`, quiet.
fn serve(dir: &Path, port: u16) -> Child {
    Command::new(BIN)
        .args(["serve", "--systemd", "none", "--log", "warn", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Time until `GET url` answers 200, polled every millisecond.
async fn wait_ready(client: &reqwest::Client, url: &str) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status() == 200 {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url} never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within 10 s.
async fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..500 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The one-minute load average: other work on the machine shows in timings.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        .unwrap_or(false)
}

/// Debian's Monit, installed if missing and allowed; its version.
fn find_monit() -> Option<String> {
    if !Path::new(MONIT).exists() {
        if !is_root() {
            println!("Monit is not installed and this is not root: `sudo apt-get install -y monit` for its column; skipping it.");
            return None;
        }
        println!("Installing Monit: apt-get install -y monit");
        let installed = Command::new("apt-get")
            .args(["install", "-y", "monit"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !Path::new(MONIT).exists() {
            println!("Could not install Monit; skipping its column.");
            return None;
        }
    }
    let out = Command::new(MONIT).arg("-V").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("?");
    Some(version.to_owned())
}

/// A monitrc in `dir` checking `ports` on loopback every CHECK_EVERY_SECS,
/// with every file Monit keeps in `dir` and no HTTP interface. Mode 0600, as
/// Monit demands.
fn write_monitrc(dir: &Path, ports: &[u16]) -> PathBuf {
    use std::fmt::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let d = dir.display();
    let mut rc = format!(
        "set daemon {CHECK_EVERY_SECS}\nset logfile {d}/monit.log\nset pidfile {d}/monit.pid\n\
         set idfile {d}/monit.id\nset statefile {d}/monit.state\n"
    );
    for (i, port) in ports.iter().enumerate() {
        let _ = write!(
            rc,
            "check host t{i} with address 127.0.0.1\n    if failed port {port} protocol http request \"/\" then alert\n"
        );
    }
    let path = dir.join("monitrc");
    std::fs::write(&path, rc).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn monit(rc: &Path) -> Child {
    Command::new(MONIT)
        .arg("-I")
        .arg("-c")
        .arg(rc)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The shared libraries a binary loads, by `ldd`.
fn linked_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().map(|o| o.stdout);
    String::from_utf8_lossy(&out.unwrap_or_default())
        .lines()
        .filter_map(|l| l.split("=> ").nth(1))
        .filter_map(|rest| rest.split(" (").next())
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The size of a copy of `bin` after `strip`, if `strip` is there.
fn stripped_size(bin: &Path) -> Option<u64> {
    let dir = tempfile::tempdir().ok()?;
    let copy = dir.path().join("copy");
    std::fs::copy(bin, &copy).ok()?;
    let ok = Command::new("strip")
        .arg(&copy)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| file_size(&copy))
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    percentile(samples, 0.5)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn ratio(lookout: f64, monit: f64) -> String {
    if monit > 0.0 {
        format!("{:.1}×", lookout / monit)
    } else {
        "—".into()
    }
}

/// `current / baseline` to two decimals: 0.50 is half the baseline's.
fn fraction(current: f64, baseline: f64) -> String {
    if baseline > 0.0 {
        format!("{:.2}", current / baseline)
    } else {
        "—".into()
    }
}

/// The binary named by `LOOKOUT_BENCH_BASELINE`, and what its `--version` says.
fn find_baseline() -> Option<(PathBuf, String)> {
    let bin = PathBuf::from(std::env::var_os("LOOKOUT_BENCH_BASELINE")?);
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("LOOKOUT_BENCH_BASELINE={}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "LOOKOUT_BENCH_BASELINE={}: --version failed",
        bin.display()
    );
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Some((bin, version))
}

/// Registers TARGETS services on the hub at `base`, one per target, checked
/// every CHECK_EVERY_SECS at `path`; their ids.
async fn register_checks(
    client: &reqwest::Client,
    base: &str,
    targets: &Targets,
    prefix: &str,
    path: &str,
) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..TARGETS {
        let s: serde_json::Value = client
            .post(format!("{base}/api/services"))
            .json(&json!({"name": format!("{prefix}-{i:03}"), "base_url": targets.url(i), "health_endpoint": path,
                           "check_interval_secs": CHECK_EVERY_SECS}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(s["id"].as_i64().expect("a created service"));
    }
    ids
}

/// Results the hub at `base` stores for the services `ids`: (all, not healthy).
async fn stored_results(client: &reqwest::Client, base: &str, ids: &[i64]) -> (usize, usize) {
    let (mut stored, mut failed) = (0usize, 0usize);
    for id in ids {
        let checks: Vec<serde_json::Value> = client
            .get(format!("{base}/api/services/{id}/checks?limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stored += checks.len();
        failed += checks.iter().filter(|c| c["status"] != "healthy").count();
    }
    (stored, failed)
}

/// The current hub and the baseline, idle side by side over one window.
struct IdlePair {
    window: f64,
    current_cpu: f64,
    baseline_cpu: f64,
    current: Memory,
    baseline: Memory,
}

/// Per target, requests a minute over `window`: (min, median, max).
fn per_target_minute(
    before: &[Counts],
    after: &[Counts],
    checker: usize,
    window: f64,
) -> (f64, f64, f64) {
    let mut rates: Vec<f64> = before
        .iter()
        .zip(after)
        .map(|(b, a)| (a[checker] - b[checker]) as f64 * 60.0 / window)
        .collect();
    rates.sort_by(f64::total_cmp);
    (rates[0], rates[rates.len() / 2], rates[rates.len() - 1])
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("footprint: benchmark");
        return;
    }
    if std::env::var_os("LOOKOUT_BENCH_FOOTPRINT_TARGETS").is_some() {
        serve_targets().await;
        return;
    }
    let bench_started = Instant::now();
    let load_before = load_average();
    let bin = Path::new(BIN);
    let baseline = find_baseline();
    let monit_version = find_monit();
    let has_monit = monit_version.is_some();
    let targets = Targets::start();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // 1. Binary size.
    let size = file_size(bin);
    let size_stripped = stripped_size(bin);
    let lookout_libs: Vec<_> = linked_libraries(bin)
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_owned()))
        .collect();
    let (monit_size, monit_stripped, monit_libs) = if has_monit {
        let own: Vec<PathBuf> = linked_libraries(Path::new(MONIT))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| !lookout_libs.iter().any(|l| l == n))
            })
            .collect();
        (
            file_size(Path::new(MONIT)),
            stripped_size(Path::new(MONIT)),
            own,
        )
    } else {
        (0, None, Vec::new())
    };
    let monit_libs_size: u64 = monit_libs.iter().map(|p| file_size(p)).sum();

    // 2a. Start-up to readiness on a fresh data directory.
    let mut ready = Vec::new();
    for _ in 0..STARTS {
        let dir = tempfile::tempdir().unwrap();
        let port = closed_port();
        let started = Instant::now();
        let mut hub = serve(dir.path(), port);
        wait_ready(&client, &format!("http://127.0.0.1:{port}/readyz")).await;
        ready.push(started.elapsed());
        terminate(&mut hub).await;
    }
    let ready = median(&mut ready);

    // 2b. Start-up to the first check: one service (checked every second, so
    // that it is due again at each start), lookout then Monit.
    let data = tempfile::tempdir().unwrap();
    {
        let port = closed_port();
        let mut hub = serve(data.path(), port);
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&client, &format!("{base}/readyz")).await;
        let before = targets.counts().await[0][LOOKOUT];
        let r = client
            .post(format!("{base}/api/services"))
            .json(
                &json!({"name": "start-probe", "base_url": targets.url(0), "health_endpoint": "/",
                           "check_interval_secs": 1}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        targets
            .wait_above(Some(0), LOOKOUT, before, Duration::from_secs(10))
            .await
            .expect("the first check");
        terminate(&mut hub).await;
    }
    let mut first_lookout = Vec::new();
    for _ in 0..STARTS {
        tokio::time::sleep(Duration::from_millis(1500)).await; // the last check is more than an interval old
        let before = targets.counts().await[0][LOOKOUT];
        let started = Instant::now();
        let mut hub = serve(data.path(), closed_port());
        targets
            .wait_above(Some(0), LOOKOUT, before, Duration::from_secs(30))
            .await
            .expect("a check after start");
        first_lookout.push(started.elapsed());
        terminate(&mut hub).await;
    }
    let first_lookout = median(&mut first_lookout);
    let monit_dir = tempfile::tempdir().unwrap();
    let mut first_monit = Vec::new();
    if has_monit {
        let rc = write_monitrc(monit_dir.path(), &targets.ports[..1]);
        for _ in 0..STARTS {
            let before = targets.counts().await[0][MONIT_AGENT];
            let started = Instant::now();
            let mut m = monit(&rc);
            targets
                .wait_above(Some(0), MONIT_AGENT, before, Duration::from_secs(30))
                .await
                .expect("Monit's first check");
            first_monit.push(started.elapsed());
            terminate(&mut m).await;
        }
    }
    let first_monit = (!first_monit.is_empty()).then(|| median(&mut first_monit));

    // 3. Hub memory: idle, then with 1,000 services checked once.
    let mut hub = spawn_hub_binary(bin);
    let pid = hub.pid().expect("a hub process");
    let base = format!("http://{}", hub.addr);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let hub_idle = memory(pid);
    let (idle_ticks, idle_threads) = cpu_over(pid, IDLE_WINDOW).await;
    let before = targets.total(LOOKOUT).await;
    let started = Instant::now();
    for i in 0..MANY {
        let r = client
            .post(format!("{base}/api/services"))
            .json(
                &json!({"name": format!("svc-{i:04}"), "base_url": targets.url(i % TARGETS),
                           "health_endpoint": format!("/s/{i}")}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let registered = started.elapsed();
    targets
        .wait_above(
            None,
            LOOKOUT,
            before + MANY as u64 - 1,
            Duration::from_secs(60),
        )
        .await
        .expect("every service checked");
    let checked = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let hub_many = memory(pid);

    // 4. Agent memory: a real agent, connected, following one check.
    let mut events = SseClient::connect(&client, &format!("{base}/api/events"), None).await;
    let BenchAgent {
        host: _host,
        log,
        process: mut agent,
    } = spawn_agent(Path::new(BIN), &client, &base, "bench-host").await;
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(
            file,
            "{}, OK, connected",
            lookout_testkit::bench::now().to_rfc3339()
        )
        .unwrap();
    }
    events
        .wait_for(Duration::from_secs(30), |m| {
            m.event == "result" && m.data["message"] == "connected"
        })
        .await;
    drop(events);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agent_5s = memory(agent.id());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let agent_15s = memory(agent.id());
    terminate(&mut agent).await;
    hub.stop().await;

    // 5. 100 checks every 10 s: lookout's hub and Monit at once (and the
    // baseline hub, when there is one).
    let mut hub = spawn_hub_binary(bin);
    let pid = hub.pid().expect("a hub process");
    let base = format!("http://{}", hub.addr);
    let lookout_before_all = targets.total(LOOKOUT).await;
    let old_before_all = targets.total(BASELINE).await;
    let ids = register_checks(&client, &base, &targets, "check", "/").await;
    let mut old_hub = baseline.as_ref().map(|(b, _)| spawn_hub_binary(b));
    let old_pid = old_hub
        .as_ref()
        .map(|h| h.pid().expect("a baseline hub process"));
    let old_base = old_hub.as_ref().map(|h| format!("http://{}", h.addr));
    let old_ids = match &old_base {
        Some(b) => register_checks(&client, b, &targets, "baseline", BASELINE_PATH).await,
        None => Vec::new(),
    };
    let compare_dir = tempfile::tempdir().unwrap();
    let mut monit_process = has_monit.then(|| {
        let rc = write_monitrc(compare_dir.path(), &targets.ports);
        monit(&rc)
    });
    let monit_pid = monit_process.as_ref().map(Child::id);
    tokio::time::sleep(WARM_UP).await;
    let counts0 = targets.counts().await;
    let (hub_ticks0, monit_ticks0) = (cpu_time(pid), monit_pid.map(cpu_time));
    let (hub_threads0, monit_threads0) = (thread_cpu(pid), monit_pid.map(thread_cpu));
    let (old_ticks0, old_threads0) = (old_pid.map(cpu_time), old_pid.map(thread_cpu));
    let t0 = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let counts1 = targets.counts().await;
    let (hub_ticks1, monit_ticks1) = (cpu_time(pid), monit_pid.map(cpu_time));
    let (hub_threads1, monit_threads1) = (thread_cpu(pid), monit_pid.map(thread_cpu));
    let (old_ticks1, old_threads1) = (old_pid.map(cpu_time), old_pid.map(thread_cpu));
    let window = t0.elapsed().as_secs_f64();
    let monit_threads = monit_threads1.as_ref().map_or(0, HashMap::len);
    let hub_mem = memory(pid);
    let monit_mem = monit_pid.map(memory);
    let old_mem = old_pid.map(memory);
    let (stored, failed) = stored_results(&client, &base, &ids).await;
    let old_stored = match &old_base {
        Some(b) => Some(stored_results(&client, b, &old_ids).await),
        None => None,
    };
    let lookout_requests = targets.total(LOOKOUT).await - lookout_before_all;
    let old_requests = targets.total(BASELINE).await - old_before_all;
    if let Some(m) = monit_process.as_mut() {
        terminate(m).await;
    }
    hub.stop().await;
    if let Some(h) = old_hub.as_mut() {
        h.stop().await;
    }
    let monit_log =
        std::fs::read_to_string(compare_dir.path().join("monit.log")).unwrap_or_default();
    let monit_failed = monit_log.lines().filter(|l| l.contains("failed")).count();
    let hub_ticks = (hub_ticks1 - hub_ticks0).as_secs_f64();
    let hub_cpu = cpu_between(&hub_threads0, &hub_threads1).as_secs_f64();
    let (monit_ticks, monit_cpu) =
        match (monit_ticks0, monit_ticks1, &monit_threads0, &monit_threads1) {
            (Some(a), Some(b), Some(t0), Some(t1)) => {
                ((b - a).as_secs_f64(), cpu_between(t0, t1).as_secs_f64())
            }
            _ => (0.0, 0.0),
        };
    let done = |checker: usize| -> u64 {
        counts0
            .iter()
            .zip(&counts1)
            .map(|(b, a)| a[checker] - b[checker])
            .sum()
    };
    let (lookout_done, monit_done) = (done(LOOKOUT), done(MONIT_AGENT));
    let lookout_rate = per_target_minute(&counts0, &counts1, LOOKOUT, window);
    let monit_rate = per_target_minute(&counts0, &counts1, MONIT_AGENT, window);
    let (old_ticks, old_cpu) = match (old_ticks0, old_ticks1, &old_threads0, &old_threads1) {
        (Some(a), Some(b), Some(t0), Some(t1)) => {
            ((b - a).as_secs_f64(), cpu_between(t0, t1).as_secs_f64())
        }
        _ => (0.0, 0.0),
    };
    let old_done = done(BASELINE);
    let old_rate = per_target_minute(&counts0, &counts1, BASELINE, window);

    // 6. The current hub and the baseline idle side by side: fresh data
    // directories, empty registries, started together, settled, one window.
    let idle_pair = match &baseline {
        Some((old_bin, _)) => {
            let mut current = spawn_hub_binary(bin);
            let mut old = spawn_hub_binary(old_bin);
            let (p, q) = (
                current.pid().expect("a hub process"),
                old.pid().expect("a baseline hub process"),
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (p0, q0) = (thread_cpu(p), thread_cpu(q));
            let t0 = Instant::now();
            tokio::time::sleep(BASELINE_IDLE_WINDOW).await;
            let (p1, q1) = (thread_cpu(p), thread_cpu(q));
            let window = t0.elapsed().as_secs_f64();
            let pair = IdlePair {
                window,
                current_cpu: cpu_between(&p0, &p1).as_secs_f64(),
                baseline_cpu: cpu_between(&q0, &q1).as_secs_f64(),
                current: memory(p),
                baseline: memory(q),
            };
            current.stop().await;
            old.stop().await;
            Some(pair)
        }
        None => None,
    };

    // The figures.
    let monit_name = format!("Monit {}", monit_version.as_deref().unwrap_or("(skipped)"));
    let monit_m = monit_mem.unwrap_or_default();
    let libs = monit_libs
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let three = |m: Memory| format!("{} / {} / {}", mib(m.rss), mib(m.pss), mib(m.anon));
    let pct = |cpu: f64, secs: f64| cpu * 100.0 / secs;
    println!("Footprint: lookout (release) and {monit_name}");
    println!(
        "  binary                 {} ({} stripped); Monit {} + {} of libraries lookout does not load ({libs})",
        mb(size),
        size_stripped.map_or("no strip".into(), mb),
        mb(monit_size),
        mb(monit_libs_size),
    );
    println!(
        "  start-up → /readyz     {} (median of {STARTS}, fresh data dir)",
        ms(ready)
    );
    println!(
        "  start-up → first check lookout {}, Monit {} (median of {STARTS}, one service)",
        ms(first_lookout),
        first_monit.map_or("—".into(), ms)
    );
    let idle_secs = IDLE_WINDOW.as_secs_f64();
    println!(
        "  hub idle               RSS {} PSS {} USS {} anonymous {}; CPU {:.3} % of a core ({:.0} ms per thread, {:.0} ms by /proc/PID/stat, over {idle_secs:.0} s)",
        mib(hub_idle.rss),
        mib(hub_idle.pss),
        mib(hub_idle.uss),
        mib(hub_idle.anon),
        pct(idle_threads.as_secs_f64(), idle_secs),
        idle_threads.as_secs_f64() * 1e3,
        idle_ticks.as_secs_f64() * 1e3,
    );
    println!(
        "  hub, {MANY} services    RSS {} PSS {} USS {} anonymous {} peak {} (registered in {:.1} s, all checked once {:.1} s after the first)",
        mib(hub_many.rss),
        mib(hub_many.pss),
        mib(hub_many.uss),
        mib(hub_many.anon),
        mib(hub_many.peak_rss),
        registered.as_secs_f64(),
        checked.as_secs_f64()
    );
    println!(
        "  agent idle             RSS {} PSS {} USS {} anonymous {} after 5 s; RSS {} anonymous {} after 15 s",
        mib(agent_5s.rss),
        mib(agent_5s.pss),
        mib(agent_5s.uss),
        mib(agent_5s.anon),
        mib(agent_15s.rss),
        mib(agent_15s.anon)
    );
    println!(
        "{TARGETS} HTTP checks every {CHECK_EVERY_SECS} s, {} at once, {window:.0} s window after {} s warm-up",
        if baseline.is_some() {
            "all three"
        } else {
            "both"
        },
        WARM_UP.as_secs()
    );
    let mut checkers = vec![
        (
            "lookout",
            hub_mem,
            hub_cpu,
            hub_ticks,
            lookout_done,
            lookout_rate,
        ),
        (
            "Monit",
            monit_m,
            monit_cpu,
            monit_ticks,
            monit_done,
            monit_rate,
        ),
    ];
    if let Some(m) = old_mem {
        checkers.push(("baseline", m, old_cpu, old_ticks, old_done, old_rate));
    }
    for (name, m, cpu, ticks, n, rate) in checkers {
        println!(
            "  {name:<8} RSS {} PSS {} USS {} anonymous {} peak {}; CPU {:.0} ms per thread ({:.0} ms by /proc/PID/stat), {:.3} % of a core, {:.3} ms per request; {n} requests, {:.2}/{:.2}/{:.2} per target per min (min/median/max)",
            mib(m.rss),
            mib(m.pss),
            mib(m.uss),
            mib(m.anon),
            mib(m.peak_rss),
            cpu * 1e3,
            ticks * 1e3,
            pct(cpu, window),
            if n > 0 { cpu * 1e3 / n as f64 } else { 0.0 },
            rate.0,
            rate.1,
            rate.2
        );
    }
    println!(
        "  lookout stored {stored} results ({failed} not healthy) for {lookout_requests} requests seen by the targets; Monit ({monit_threads} thread(s)) logged {monit_failed} failures"
    );
    if let Some((old_stored, old_failed)) = old_stored {
        println!(
            "  the baseline stored {old_stored} results ({old_failed} not healthy) for {old_requests} requests seen by the targets"
        );
    }
    if let Some(idle) = &idle_pair {
        println!(
            "Both hubs idle at once, empty registries, {:.0} s window after 5 s",
            idle.window
        );
        for (name, m, cpu) in [
            ("lookout", idle.current, idle.current_cpu),
            ("baseline", idle.baseline, idle.baseline_cpu),
        ] {
            println!(
                "  {name:<8} RSS {} PSS {} USS {} anonymous {}; CPU {:.0} ms per thread, {:.3} % of a core",
                mib(m.rss),
                mib(m.pss),
                mib(m.uss),
                mib(m.anon),
                cpu * 1e3,
                pct(cpu, idle.window)
            );
        }
    }

    let row = |figure: String, lookout: String, monit: String, r: String| {
        println!("| {figure} | {lookout} | {monit} | {r} |");
    };
    let none = || "—".to_owned();
    let per_check = |cpu: f64, n: u64| if n > 0 { cpu * 1e3 / n as f64 } else { 0.0 };
    println!();
    println!("| figure | lookout | {monit_name} | lookout / Monit |");
    println!("|---|---|---|---|");
    row(
        "binary size".into(),
        mb(size),
        mb(monit_size),
        ratio(size as f64, monit_size as f64),
    );
    row(
        "binary size after `strip`".into(),
        size_stripped.map_or_else(none, mb),
        monit_stripped.map_or_else(none, mb),
        ratio(
            size_stripped.unwrap_or(0) as f64,
            monit_stripped.unwrap_or(0) as f64,
        ),
    );
    row(
        "stripped binary + shared libraries only it loads".into(),
        size_stripped.map_or_else(|| mb(size), mb),
        mb(monit_stripped.unwrap_or(monit_size) + monit_libs_size),
        ratio(
            size_stripped.unwrap_or(size) as f64,
            (monit_stripped.unwrap_or(monit_size) + monit_libs_size) as f64,
        ),
    );
    row(
        format!("start-up: spawn → `/readyz` 200, fresh data dir (median of {STARTS})"),
        ms(ready),
        none(),
        none(),
    );
    row(
        format!("start-up: spawn → first check request, one service (median of {STARTS})"),
        ms(first_lookout),
        first_monit.map_or_else(none, ms),
        ratio(
            first_lookout.as_secs_f64(),
            first_monit.unwrap_or_default().as_secs_f64(),
        ),
    );
    row(
        "hub idle, empty registry: RSS / PSS / anonymous".into(),
        three(hub_idle),
        none(),
        none(),
    );
    row(
        "hub idle: CPU, % of one core".into(),
        format!("{:.3} %", pct(idle_threads.as_secs_f64(), idle_secs)),
        none(),
        none(),
    );
    row(
        format!("hub, {MANY} services each checked once: RSS / PSS / anonymous"),
        three(hub_many),
        none(),
        none(),
    );
    row(
        "agent idle, connected, one check followed: RSS / PSS / anonymous".into(),
        three(agent_5s),
        none(),
        none(),
    );
    let checks = format!("{TARGETS} checks every {CHECK_EVERY_SECS} s");
    for (what, l, m) in [
        ("RSS", hub_mem.rss, monit_m.rss),
        ("PSS", hub_mem.pss, monit_m.pss),
        ("anonymous", hub_mem.anon, monit_m.anon),
    ] {
        row(
            format!("{checks}: {what}"),
            mib(l),
            mib(m),
            ratio(l as f64, m as f64),
        );
    }
    row(
        format!("{checks}: CPU, % of one core"),
        format!("{:.3} %", pct(hub_cpu, window)),
        format!("{:.3} %", pct(monit_cpu, window)),
        ratio(hub_cpu, monit_cpu),
    );
    row(
        format!("{checks}: CPU per request"),
        format!("{:.3} ms", per_check(hub_cpu, lookout_done)),
        format!("{:.3} ms", per_check(monit_cpu, monit_done)),
        ratio(
            per_check(hub_cpu, lookout_done),
            per_check(monit_cpu, monit_done),
        ),
    );
    row(
        format!("{checks}: requests per target per minute (min–max)"),
        format!("{:.2}–{:.2}", lookout_rate.0, lookout_rate.2),
        format!("{:.2}–{:.2}", monit_rate.0, monit_rate.2),
        ratio(lookout_rate.1, monit_rate.1),
    );
    if let (Some((old_bin, old_version)), Some(idle), Some(old_m)) =
        (&baseline, &idle_pair, old_mem)
    {
        println!();
        println!("Baseline: {} ({old_version})", old_bin.display());
        println!();
        println!("| figure | lookout | baseline | lookout / baseline |");
        println!("|---|---|---|---|");
        let idle_secs = format!("{:.0} s", idle.window);
        row(
            format!("idle, empty registry, both at once ({idle_secs}): CPU, % of one core"),
            format!("{:.3} %", pct(idle.current_cpu, idle.window)),
            format!("{:.3} %", pct(idle.baseline_cpu, idle.window)),
            fraction(idle.current_cpu, idle.baseline_cpu),
        );
        row(
            "idle: anonymous memory".into(),
            mib(idle.current.anon),
            mib(idle.baseline.anon),
            fraction(idle.current.anon as f64, idle.baseline.anon as f64),
        );
        row(
            format!("{checks}, both at once ({window:.0} s): CPU, % of one core"),
            format!("{:.3} %", pct(hub_cpu, window)),
            format!("{:.3} %", pct(old_cpu, window)),
            fraction(hub_cpu, old_cpu),
        );
        row(
            format!("{checks}: CPU per request"),
            format!("{:.3} ms", per_check(hub_cpu, lookout_done)),
            format!("{:.3} ms", per_check(old_cpu, old_done)),
            fraction(
                per_check(hub_cpu, lookout_done),
                per_check(old_cpu, old_done),
            ),
        );
        row(
            format!("{checks}: requests in the window"),
            lookout_done.to_string(),
            old_done.to_string(),
            fraction(lookout_done as f64, old_done as f64),
        );
        for (what, l, b) in [
            ("RSS", hub_mem.rss, old_m.rss),
            ("anonymous", hub_mem.anon, old_m.anon),
        ] {
            row(
                format!("{checks}: {what}"),
                mib(l),
                mib(b),
                fraction(l as f64, b as f64),
            );
        }
    }
    println!();
    println!(
        "One run took {:.0} s; load average (1 min) {} at the start, {} at the end (2 cores, shared).",
        bench_started.elapsed().as_secs_f64(),
        load_before,
        load_average()
    );
}
