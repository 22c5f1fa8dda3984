//! Benchmark: a flood of wrong passwords against the release hub.
//!
//! 100 clients, each from its own loopback address (so no per-client limit
//! stops them), send a wrong password at once, in waves. Meanwhile a signed-in
//! client reads `GET /api/services` and `GET /healthz` every 20 ms. Prints the
//! hub's peak RSS and the latency of those other routes during the flood
//! against the same reads on the idle hub, measured first in the same run.
//!
//! Run: `cargo bench -p lookout --bench sign_in_flood`

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lookout_testkit::bench::{percentile, status_kib};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const PASSWORD: &str = "correct horse battery";
const CLIENTS: u8 = 100;
const WAVES: usize = 5;

/// Reads two other routes every 20 ms until `until`; their latencies.
async fn probe(client: &reqwest::Client, base: &str, token: &str, until: Instant) -> Vec<Duration> {
    let mut seen = vec![];
    while Instant::now() < until {
        for path in ["/healthz", "/api/services"] {
            let started = Instant::now();
            let r = client
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.bytes().await.unwrap();
            seen.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.sort();
    seen
}

fn line(what: &str, seen: &[Duration]) -> String {
    format!(
        "{what:<22} {:>5} reads  p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
        seen.len(),
        percentile(seen, 0.50).as_secs_f64() * 1e3,
        percentile(seen, 0.99).as_secs_f64() * 1e3,
        seen.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    )
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("sign_in_flood: benchmark");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut add = Command::new(BIN)
        .args(["user", "add", "ada", "--admin", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(add.wait().unwrap().success());
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--systemd", "none", "--auth", "required"])
        .args(["--listen", "127.0.0.1:0", "--log", "info"])
        .arg("--data-dir")
        .arg(dir.path());
    let mut hub = lookout_testkit::spawn_hub_process(cmd, dir);
    let pid = hub.pid().expect("a hub process");
    let base = format!("http://{}", hub.addr);
    let reader = reqwest::Client::new();
    let login = |client: reqwest::Client, password: String| {
        let url = format!("{base}/api/v1/users/login");
        async move {
            client
                .post(url)
                .json(&serde_json::json!({"username": "ada", "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let r = login(reader.clone(), PASSWORD.into()).await;
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..100 {
        let r = reader
            .post(format!("{base}/api/services"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": format!("service-{i:03}"), "base_url": "http://127.0.0.1:9"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    let idle = probe(
        &reader,
        &base,
        &token,
        Instant::now() + Duration::from_secs(3),
    )
    .await;

    let clients: Vec<reqwest::Client> = (0..CLIENTS)
        .map(|i| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 2, i + 1]))
                .build()
                .unwrap()
        })
        .collect();
    let flood = async {
        let started = Instant::now();
        let (mut checked, mut refused) = (0, 0);
        for wave in 0..WAVES {
            let answers = futures::future::join_all(
                clients
                    .iter()
                    .enumerate()
                    .map(|(i, c)| login(c.clone(), format!("wrong {wave} {i}"))),
            )
            .await;
            for r in answers {
                match r.status().as_u16() {
                    401 => checked += 1,
                    503 => refused += 1,
                    other => panic!("a wrong password got {other}"),
                }
            }
        }
        (checked, refused, started.elapsed())
    };
    let (flooded, (checked, refused, took)) = tokio::join!(
        probe(
            &reader,
            &base,
            &token,
            Instant::now() + Duration::from_secs(4)
        ),
        flood
    );
    let peak_kib = status_kib(pid, "VmHWM");
    println!(
        "{} wrong passwords from {CLIENTS} addresses in {WAVES} waves, {:.1} s: \
         {checked} checked (401), {refused} refused (503 + Retry-After)",
        usize::from(CLIENTS) * WAVES,
        took.as_secs_f64()
    );
    println!("hub peak RSS {:.1} MiB", peak_kib as f64 / 1024.0);
    println!("{}", line("other routes, idle", &idle));
    println!("{}", line("other routes, flooded", &flooded));
    println!(
        "p99 flooded / idle: {:.2}",
        percentile(&flooded, 0.99).as_secs_f64() / percentile(&idle, 0.99).as_secs_f64()
    );
    hub.stop().await;
}
