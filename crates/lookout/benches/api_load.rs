//! Benchmark: `GET /api/services` under concurrent load, against a ceiling
//! measured in the same run.
//!
//! Starts the real `lookout serve` binary (release build) on loopback and
//! registers 1,000 services from one keep-alive client (registrations/s).
//! Then runs a closed-loop load of CONCURRENCY keep-alive clients for
//! DURATION against:
//! - the hub's list;
//! - the ceiling: this bench re-run as a child process serving the same bytes
//!   as a static body from a bare HTTP server (axum, no middleware);
//! - the hub's list with `If-None-Match` (every answer a 304).
//!
//! Then grows the registry to 10,000 services and loads the list again, and
//! a static body of those bytes.
//! Prints requests/s, p50/p99 latency, the ratios the core is held to, and the
//! hub's peak RSS.
//!
//! Run: `cargo bench -p lookout --bench api_load`

use std::time::{Duration, Instant};

use lookout_testkit::bench::{
    percentile, rollup_kib, spawn_child_mode, spawn_hub_binary, status_kib,
};

const SERVICES: usize = 1_000;
const MORE_SERVICES: usize = 10_000;
const CONCURRENCY: usize = 32;
const DURATION: Duration = Duration::from_secs(10);
const STATIC_MODE: &str = "LOOKOUT_BENCH_STATIC_BODY";

/// Where the parent leaves the body the child serves.
fn body_path(parent: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("lookout-bench-list-{parent}.json"))
}

/// The child: serves the body the parent left, as a static file would be.
async fn serve_static() {
    let body = axum::body::Bytes::from(
        std::fs::read(body_path(std::os::unix::process::parent_id())).unwrap(),
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    axum::serve(listener, app).await.unwrap();
}

struct Load {
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Load {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, what: &str) {
        println!(
            "  {what:<34} {:>7.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.rate(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        );
    }
}

/// CONCURRENCY clients, each sending the next request when the last is read.
async fn load(client: &reqwest::Client, url: &str, etag: Option<&str>, expect: u16) -> Load {
    let send = |client: &reqwest::Client| {
        let mut request = client.get(url);
        if let Some(tag) = etag {
            request = request.header("if-none-match", tag);
        }
        request.send()
    };
    for _ in 0..20 {
        send(client).await.unwrap().bytes().await.unwrap();
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        let (url, etag) = (url.to_owned(), etag.map(str::to_owned));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < DURATION {
                let t = Instant::now();
                let mut request = client.get(&url);
                if let Some(tag) = &etag {
                    request = request.header("if-none-match", tag);
                }
                let mut r = request.send().await.unwrap();
                assert_eq!(r.status().as_u16(), expect);
                // Read and drop, as wrk does: the client's copies are not
                // the server's cost.
                while r.chunk().await.unwrap().is_some() {}
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Load {
        requests: latencies.len(),
        elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

/// The load on a static server of `body` (this bench re-run as a child).
async fn ceiling_for(client: &reqwest::Client, body: &[u8]) -> Load {
    std::fs::write(body_path(std::process::id()), body).unwrap();
    let (mut child, ports) = spawn_child_mode(STATIC_MODE);
    let url = format!("http://127.0.0.1:{}/", ports[0]);
    let served = client
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served.len(), body.len());
    let measured = load(client, &url, None, 200).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(body_path(std::process::id()));
    measured
}

/// Registers services `from..to` one after another from one keep-alive
/// client; their rate per second. The client has a thread and a
/// single-threaded runtime of its own, as a command-line client has: on the
/// bench's shared runtime, its connection task and the loop sending on it
/// would hop between two workers, taking the hub's cores for the handovers.
async fn register(base: &str, from: usize, to: usize) -> f64 {
    let base = base.to_owned();
    let client = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(register_from_one_client(&base, from, to))
    });
    tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap()
}

async fn register_from_one_client(base: &str, from: usize, to: usize) -> f64 {
    let client = reqwest::Client::new();
    // Health endpoints on a closed port with an hour's interval: the one
    // check each gets is quick, and the load measures the API.
    let closed = lookout_testkit::closed_port();
    let started = Instant::now();
    for i in from..to {
        let r = client
            .post(format!("{base}/api/services"))
            .json(&serde_json::json!({
                "name": format!("service-{i:05}"),
                "description": format!("Benchmark service number {i}"),
                "base_url": format!("http://127.0.0.1:{closed}"),
                "health_endpoint": "/health",
                "port": closed,
                "check_interval_secs": 3600,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    (to - from) as f64 / started.elapsed().as_secs_f64()
}

/// Waits until every service has had its first check (they then stay as they
/// are for the hour of their interval), so the list stops changing.
async fn settle(client: &reqwest::Client, list: &str) {
    loop {
        let services: Vec<serde_json::Value> =
            client.get(list).send().await.unwrap().json().await.unwrap();
        if services.iter().all(|s| !s["last_health_check"].is_null()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("api_load: benchmark");
        return;
    }
    if std::env::var_os(STATIC_MODE).is_some() {
        serve_static().await;
        return;
    }
    let mut hub = spawn_hub_binary(std::path::Path::new(env!("CARGO_BIN_EXE_lookout")));
    let pid = hub.pid().expect("a hub process");
    let base = format!("http://{}", hub.addr);
    let list = format!("{base}/api/services");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let idle_rss = status_kib(pid, "VmRSS:");

    let registrations = register(&base, 0, SERVICES).await;
    settle(&client, &list).await;
    let r = client.get(&list).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let body = r.bytes().await.unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), SERVICES);

    println!(
        "GET /api/services, {CONCURRENCY} keep-alive clients, {} s each ({} KiB per list of {SERVICES})",
        DURATION.as_secs(),
        body.len() / 1024
    );
    let hub_1k = load(&client, &list, None, 200).await;
    hub_1k.print("hub, 1,000 services");
    let ceiling = ceiling_for(&client, &body).await;
    ceiling.print("ceiling: static body, same bytes");
    let not_modified = load(&client, &list, Some(&etag), 304).await;
    not_modified.print("hub, If-None-Match (304)");
    let peak_1k = status_kib(pid, "VmHWM:");
    // What the hub holds for 1,000 services once the list was served under
    // load: its own allocations, not the binary's pages.
    let anon_1k = rollup_kib(pid, "Anonymous:");

    // A public status page of 50 of them, read by the same crowd: served
    // from the bytes rendered at most every 10 s.
    let shown: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .take(50)
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    let r = client
        .post(format!("{base}/api/status-pages"))
        .json(&serde_json::json!({"slug": "bench", "title": "Bench", "services": shown}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let page_url = format!("{base}/status/bench");
    let page_body = client
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let page = load(&client, &page_url, None, 200).await;
    page.print("hub, status page of 50 services");
    let page_ceiling = ceiling_for(&client, &page_body).await;
    page_ceiling.print("ceiling: static body, same bytes");
    // As browsers ask for it: gzipped (made once per render).
    let gzip_client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::ACCEPT_ENCODING,
            reqwest::header::HeaderValue::from_static("gzip"),
        )]))
        .build()
        .unwrap();
    let page_gz_body = gzip_client
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let page_gz = load(&gzip_client, &page_url, None, 200).await;
    page_gz.print("hub, the same page gzipped");
    let page_gz_ceiling = ceiling_for(&client, &page_gz_body).await;
    page_gz_ceiling.print("ceiling: static body, same bytes");

    let more = register(&base, SERVICES, MORE_SERVICES).await;
    settle(&client, &list).await;
    let hub_10k = load(&client, &list, None, 200).await;
    hub_10k.print("hub, 10,000 services");
    let body_10k = client
        .get(&list)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let ceiling_10k = ceiling_for(&client, &body_10k).await;
    ceiling_10k.print("ceiling, 10,000 services' bytes");

    println!(
        "  throughput / ceiling               {:.2} (held to >= 0.60)",
        hub_1k.rate() / ceiling.rate()
    );
    println!(
        "  p99 / ceiling p99                  {:.2} (held to <= 2)",
        hub_1k.p99.as_secs_f64() / ceiling.p99.as_secs_f64()
    );
    println!(
        "  10,000 / 1,000 services            {:.2} (held to >= 0.10; the ceiling's: {:.2})",
        hub_10k.rate() / hub_1k.rate(),
        ceiling_10k.rate() / ceiling.rate()
    );
    println!(
        "  10,000 services / their ceiling    {:.2}",
        hub_10k.rate() / ceiling_10k.rate()
    );
    println!(
        "  status page / its ceiling          {:.2} ({} KiB a page); gzipped {:.2} ({} KiB)",
        page.rate() / page_ceiling.rate(),
        page_body.len() / 1024,
        page_gz.rate() / page_gz_ceiling.rate(),
        page_gz_body.len() / 1024
    );
    println!("  registrations      {registrations:.0}/s (first 1,000), {more:.0}/s (to 10,000)");
    println!(
        "  hub RSS idle       {:.1} MiB (before registering)",
        idle_rss as f64 / 1024.0
    );
    println!(
        "  hub peak RSS       {:.1} MiB with 1,000, {:.1} MiB with 10,000",
        peak_1k as f64 / 1024.0,
        status_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    println!(
        "  hub anonymous      {:.1} MiB with 1,000 after the loads (the aim: under 14)",
        anon_1k as f64 / 1024.0
    );
    hub.stop().await;
}
