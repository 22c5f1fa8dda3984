//! Prometheus: `/metrics` scraped and parsed, `/api/v1/prometheus/sd` read as
//! `http_sd_configs` reads it, and Debian's real Prometheus server pointed at
//! both on loopback. Also the hub's own service (`--self-check`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use lookout_testkit::target::Target;
use lookout_testkit::{closed_port, TestHub};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const SOON: Duration = Duration::from_secs(20);

/// The real binary, checking every second, its own service included.
fn hub_process() -> TestHub {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--systemd",
        "none",
        "--check-interval",
        "1s",
        "--self-check",
        "on",
        "--listen",
        "127.0.0.1:0",
    ]);
    let dir = tempfile::tempdir().unwrap();
    cmd.arg("--data-dir").arg(dir.path());
    lookout_testkit::spawn_hub_process(cmd, dir)
}

/// A hub process checking `web`, a real HTTP server answering 200.
async fn hub_checking_web() -> (Target, TestHub, i64) {
    let web = Target::start(200).await;
    let hub = hub_process();
    let web_id = hub
        .create_service(json!({"name": "web", "base_url": web.url(), "health_endpoint": "/"}))
        .await["id"]
        .as_i64()
        .unwrap();
    (web, hub, web_id)
}

/// One sample of an exposition: its name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (OpenMetrics flavour): comments and
/// `# EOF` skipped, every other line `name{k="v",...} value`. Panics on a line
/// that is neither, so a malformed exposition fails the test.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (key, after) = rest.split_once("=\"").expect("label=\"");
                    // Values escape \ " and newline; find the closing quote.
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        let (i, c) = chars.next().expect("closing quote");
                        match c {
                            '\\' => {
                                let (_, e) = chars.next().expect("escape");
                                value.push(if e == 'n' { '\n' } else { e });
                            }
                            '"' => break i,
                            c => value.push(c),
                        }
                    };
                    labels.insert(key.to_owned(), value);
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name.to_owned(), labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The value of the one sample named `name` whose labels include `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {want:?} matches {found:?}");
    found.first().map(|s| s.value)
}

/// Scrapes `/metrics` until the sample named `name` with labels `want` is
/// there, and returns its value; panics after 20 s.
pub(crate) async fn wait_for_metric(hub: &TestHub, name: &str, want: &[(&str, &str)]) -> f64 {
    let until = tokio::time::Instant::now() + SOON;
    loop {
        let (text, samples) = scrape(hub).await;
        if let Some(v) = value(&samples, name, want) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no {name} {want:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scrape(hub: &TestHub) -> (String, Vec<Sample>) {
    let r = hub.get("/metrics").await;
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    let text = r.text().await.unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let samples = parse_exposition(&text);
    (text, samples)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_each_service_checks_and_requests_and_forget_deleted_services() {
    let (_web, hub, web_id) = hub_checking_web().await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let dead_id = hub
        .create_service(json!({"name": "dead", "base_url": dead, "health_endpoint": "/health"}))
        .await["id"]
        .as_i64()
        .unwrap();
    hub.wait_for_service(web_id, SOON, |s| s["state"] == "OK")
        .await;
    hub.wait_for_service(dead_id, SOON, |s| s["state"] == "FAILURE")
        .await;

    // The hub registered itself, checked at its /readyz, and is up.
    let services = hub.get_json("/api/services").await;
    let me = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "lookout")
        .unwrap_or_else(|| panic!("the hub's own service: {services}"))
        .clone();
    assert_eq!(
        me["health_url"],
        format!("http://{}/readyz", hub.addr),
        "{me}"
    );
    let me_id = me["id"].as_i64().unwrap();
    hub.wait_for_service(me_id, SOON, |s| s["state"] == "OK")
        .await;

    let (text, samples) = scrape(&hub).await;
    let web_labels = [("service", "web"), ("server", "")];
    assert_eq!(
        value(&samples, "lookout_service_up", &web_labels),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "lookout_service_up",
            &[("service", "dead"), ("server", "")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "lookout_service_up",
            &[("service", "lookout"), ("server", "")]
        ),
        Some(1.0)
    );
    // A state set: exactly one status is 1 per service.
    for (service, now) in [("web", "OK"), ("dead", "FAILURE")] {
        for status in ["OK", "UPDATE", "WARNING", "FAILURE", "UNKNOWN"] {
            let want = if status == now { 1.0 } else { 0.0 };
            assert_eq!(
                value(
                    &samples,
                    "lookout_service_status",
                    &[("service", service), ("status", status)]
                ),
                Some(want),
                "{service} {status}"
            );
        }
    }
    let latency = value(&samples, "lookout_service_latency_seconds", &web_labels).unwrap();
    assert!((0.0..2.0).contains(&latency), "{latency}");
    // Probes counted: up for web and the hub itself, down with an error
    // (connection refused) for the dead one.
    let up = value(
        &samples,
        "lookout_checks_total",
        &[("source", "http"), ("status", "up")],
    )
    .unwrap();
    let down = value(
        &samples,
        "lookout_checks_total",
        &[("source", "http"), ("status", "down")],
    )
    .unwrap();
    let errors = value(
        &samples,
        "lookout_check_errors_total",
        &[("source", "http")],
    )
    .unwrap();
    assert!(up >= 2.0 && down >= 1.0 && errors >= down, "{text}");
    // Requests by declared route, not by URL: two services created.
    assert_eq!(
        value(
            &samples,
            "lookout_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/services"),
                ("status", "201")
            ]
        ),
        Some(2.0),
        "{text}"
    );
    let polled = value(
        &samples,
        "lookout_http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/api/services/{id}"),
            ("status", "200"),
        ],
    )
    .unwrap();
    assert!(polled >= 3.0, "the waits above polled services: {polled}");
    assert_eq!(value(&samples, "lookout_agents_connected", &[]), Some(0.0));
    assert_eq!(
        value(
            &samples,
            "lookout_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // A deleted service leaves no series behind.
    assert_eq!(
        hub.delete(&format!("/api/services/{dead_id}"))
            .await
            .status(),
        204
    );
    let (text, samples) = scrape(&hub).await;
    assert!(
        !samples
            .iter()
            .any(|s| s.labels.get("service").map(String::as_str) == Some("dead")),
        "{text}"
    );
    // The scrape itself is counted.
    assert!(
        value(
            &samples,
            "lookout_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        )
        .unwrap()
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn service_discovery_lists_every_service_with_a_url() {
    let web = Target::start(200).await;
    let hub = hub_process();
    hub.create_service(json!({"name": "web", "base_url": web.url(), "health_endpoint": "/up"}))
        .await;
    hub.create_service(json!({"name": "docs", "base_url": "https://docs.example.org"}))
        .await;
    hub.create_service(json!({"name": "v6", "base_url": "http://[::1]:9/"}))
        .await;
    // No URL: nothing for Prometheus to reach.
    hub.create_service(json!({"name": "nightly-backup"})).await;

    let r = hub.get("/api/v1/prometheus/sd").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let groups: Value = r.json().await.unwrap();
    let groups = groups.as_array().unwrap();
    // What Prometheus requires of each group: a list of targets, string labels.
    for g in groups {
        assert!(g["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string));
        assert!(g["labels"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string));
    }
    let by_name = |name: &str| {
        groups
            .iter()
            .find(|g| g["labels"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {groups:?}"))
            .clone()
    };
    let g = by_name("web");
    assert_eq!(g["targets"], json!([web.addr.to_string()]));
    assert_eq!(g["labels"]["__scheme__"], "http");
    assert!(
        g["labels"].get("server").is_none(),
        "no server: no label (Prometheus drops empty labels anyway)"
    );
    assert_eq!(
        g["labels"]["__meta_lookout_health_url"],
        format!("{}/up", web.url())
    );
    let status = g["labels"]["status"].as_str().unwrap();
    assert!(
        ["OK", "UNKNOWN"].contains(&status),
        "a status of the one model: {status}"
    );
    let g = by_name("docs");
    assert_eq!(g["targets"], json!(["docs.example.org:443"]));
    assert_eq!(g["labels"]["__scheme__"], "https");
    assert_eq!(by_name("v6")["targets"], json!(["[::1]:9"]));
    assert!(
        !groups
            .iter()
            .any(|g| g["labels"]["name"] == "nightly-backup"),
        "a service without a URL is not a target"
    );
    // The hub itself is one of them (its own /metrics is at its root).
    assert_eq!(by_name("lookout")["targets"], json!([hub.addr.to_string()]));
}

/// Debian's Prometheus, on loopback, scraping the hub and discovering the
/// registry through it. The hub's own service is discovered too, so the
/// discovered job scrapes the hub's `/metrics`: both endpoints parsed by
/// Prometheus itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_discovers_the_services_and_scrapes_the_hub() {
    let (web, hub, web_id) = hub_checking_web().await;
    hub.wait_for_service(web_id, SOON, |s| s["state"] == "OK")
        .await;

    let dir = tempfile::tempdir().unwrap();
    let port = lookout_testkit::free_port_in(31000..32000);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: lookout\n\
             \x20   static_configs:\n\
             \x20     - targets: ['{hub}']\n\
             \x20 - job_name: registry\n\
             \x20   http_sd_configs:\n\
             \x20     - url: http://{hub}/api/v1/prometheus/sd\n\
             \x20       refresh_interval: 1s\n",
            hub = hub.addr
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("Debian's prometheus (scripts/test installs it)");
    let _kill = KillOnDrop(&mut prometheus);
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let client = reqwest::Client::new();
    let get = |q: String| {
        let client = client.clone();
        async move {
            match client.get(q).send().await {
                Ok(r) => r.json::<Value>().await.ok(),
                Err(_) => None,
            }
        }
    };

    // Discovery: the registry's targets, with their labels, are active.
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let targets = loop {
        if let Some(t) = get(format!("{api}/targets")).await {
            let active = t["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let hub_scraped = active.iter().any(|t| {
                t["labels"]["job"] == "registry"
                    && t["labels"]["name"] == "lookout"
                    && t["health"] == "up"
            });
            if hub_scraped && active.iter().any(|t| t["labels"]["name"] == "web") {
                break active;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "Prometheus did not discover and scrape the hub"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let web_target = targets
        .iter()
        .find(|t| t["labels"]["name"] == "web")
        .unwrap();
    assert_eq!(web_target["labels"]["instance"], web.addr.to_string());
    assert!(
        web_target["labels"].get("server").is_none(),
        "a service of no server has no server label: {web_target}"
    );
    assert_eq!(web_target["labels"]["status"], "OK");
    assert_eq!(
        web_target["discoveredLabels"]["__meta_lookout_service_id"],
        web_id.to_string()
    );

    // Scraping: the hub's metrics are in Prometheus, from both jobs.
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let q = format!(
            "{api}/query?query={}",
            "lookout_service_up%7Bservice%3D%22web%22%7D"
        );
        if let Some(r) = get(q).await {
            let result = r["data"]["result"].as_array().cloned().unwrap_or_default();
            let jobs: Vec<&str> = result
                .iter()
                .filter(|s| s["value"][1] == "1")
                .filter_map(|s| s["metric"]["job"].as_str())
                .collect();
            if jobs.contains(&"lookout") && jobs.contains(&"registry") {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "lookout_service_up{{service=\"web\"}} never reached Prometheus from both jobs"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) struct KillOnDrop<'a>(pub(crate) &'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `lookout serve` on `data`, with `--self-check` as given.
fn serve_on(data: &std::path::Path, self_check: &str) -> TestHub {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--systemd", "none", "--listen", "127.0.0.1:0"])
        .args(["--self-check", self_check])
        .arg("--data-dir")
        .arg(data);
    lookout_testkit::spawn_hub_process(cmd, tempfile::tempdir().unwrap())
}

async fn named(hub: &TestHub, name: &str) -> Vec<Value> {
    let all = hub.get_json("/api/services").await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == name)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_registers_itself_once_and_follows_its_address() {
    let data = tempfile::tempdir().unwrap();
    let mut hub = serve_on(data.path(), "on");
    let mine = named(&hub, "lookout").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["health_url"], format!("http://{}/readyz", hub.addr));
    let id = mine[0]["id"].clone();
    hub.terminate();
    // Started again on another port: the same service, its URL brought along.
    let mut hub = serve_on(data.path(), "on");
    let mine = named(&hub, "lookout").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["id"], id);
    assert_eq!(mine[0]["health_url"], format!("http://{}/readyz", hub.addr));
    hub.terminate();

    // Off: nothing registered.
    let empty = tempfile::tempdir().unwrap();
    let hub = serve_on(empty.path(), "off");
    assert_eq!(hub.get_json("/api/services").await, json!([]));
    // A service of the user's called `lookout` is theirs: left as it is.
    let theirs = hub
        .create_service(json!({"name": "lookout", "base_url": "https://lookout.example.org"}))
        .await;
    drop(hub);
    let hub = serve_on(empty.path(), "on");
    let mine = named(&hub, "lookout").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["base_url"], theirs["base_url"]);
    assert_eq!(mine[0]["id"], theirs["id"]);
}
