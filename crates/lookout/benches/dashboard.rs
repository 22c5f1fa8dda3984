//! Benchmark: the dashboard of 200 services, server time and weight.
//!
//! Starts the real `lookout serve` binary (release build) on loopback,
//! registers 200 services in mixed states (150 passing, 30 failing with an
//! HTTP error, 20 refused) with two tags each, and waits until every one has
//! been checked. Then, one keep-alive client asking for gzip:
//! - `GET /` and `GET /?group=tag`, ROUNDS times each: p50, p95 and max;
//! - the baseline measured in the same run: `GET /api/services` (the same
//!   200 services as JSON from memory) ROUNDS times;
//! - the bytes sent: the page and its script, style sheet and icon, gzipped
//!   and not.
//!
//! Prints each figure, the page's p95 against the 300 ms it is held to, the
//! bytes against 200 KB, and the page's p50 as a ratio of the API list's.
//! The times are taken by the client over loopback, so they include sending
//! the answer: an upper bound of the server's time.
//!
//! Run: `cargo bench -p lookout --bench dashboard`

use std::time::{Duration, Instant};

use lookout_testkit::bench::{percentile, spawn_hub_binary};
use lookout_testkit::Target;

const SERVICES: usize = 200;
const ROUNDS: usize = 200;

struct Timing {
    p50: Duration,
    p95: Duration,
    max: Duration,
    /// Bytes of the last answer as sent.
    sent: usize,
}

async fn time(client: &reqwest::Client, url: &str) -> Timing {
    let mut samples = Vec::with_capacity(ROUNDS);
    let mut sent = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let r = client
            .get(url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{url}");
        sent = r.bytes().await.unwrap().len();
        samples.push(started.elapsed());
    }
    samples.sort();
    Timing {
        p50: percentile(&samples, 0.5),
        p95: percentile(&samples, 0.95),
        max: samples[samples.len() - 1],
        sent,
    }
}

async fn size(client: &reqwest::Client, url: &str, gzip: bool) -> usize {
    let mut request = client.get(url);
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    request.send().await.unwrap().bytes().await.unwrap().len()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("dashboard: benchmark");
        return;
    }
    let hub = spawn_hub_binary(std::path::Path::new(env!("CARGO_BIN_EXE_lookout")));
    let base = format!("http://{}", hub.addr);
    let client = reqwest::Client::new();
    let up = Target::start(200).await;
    let down = Target::start(503).await;
    let closed = format!("http://127.0.0.1:{}", lookout_testkit::closed_port());
    let tags = ["media", "backup", "network", "home", "dev", "files"];
    for i in 0..SERVICES {
        let url = match i % 10 {
            0 => closed.clone(),
            1 | 2 => down.url(),
            _ => up.url(),
        };
        let body = serde_json::json!({
            "name": format!("service-{i:03}"), "base_url": url,
            "description": format!("Service number {i} of the home lab"),
            "tags": [tags[i % tags.len()], tags[(i / 7) % tags.len()]],
        });
        let r = client
            .post(format!("{base}/api/services"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let list: serde_json::Value = client
            .get(format!("{base}/api/services"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s["last_health_check"].is_null())
        {
            break;
        }
        assert!(Instant::now() < until, "not every service was checked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let page = time(&client, &format!("{base}/")).await;
    let grouped = time(&client, &format!("{base}/?group=tag")).await;
    let api = time(&client, &format!("{base}/api/services")).await;
    let mut plain = size(&client, &format!("{base}/"), false).await;
    let mut gzipped = page.sent;
    for asset in ["/static/app.css", "/static/app.js", "/static/favicon.svg"] {
        plain += size(&client, &format!("{base}{asset}"), false).await;
        gzipped += size(&client, &format!("{base}{asset}"), true).await;
    }

    println!("dashboard: {SERVICES} services (150 passing, 30 failing, 20 refused), {ROUNDS} rounds each");
    for (what, t) in [
        ("GET /", &page),
        ("GET /?group=tag", &grouped),
        ("GET /api/services (baseline)", &api),
    ] {
        println!(
            "  {what:<30} p50 {:>9}  p95 {:>9}  max {:>9}  {:>7} bytes sent",
            ms(t.p50),
            ms(t.p95),
            ms(t.max),
            t.sent
        );
    }
    println!(
        "  page p95 / 300 ms aim          {:.3}",
        page.p95.as_secs_f64() / 0.3
    );
    println!(
        "  page p50 / API list p50        {:.2}",
        page.p50.as_secs_f64() / api.p50.as_secs_f64()
    );
    println!(
        "  page and assets: {gzipped} bytes gzipped ({plain} plain); / 200 KB aim {:.3}",
        gzipped as f64 / 200_000.0
    );
}
