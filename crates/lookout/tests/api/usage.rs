//! Resource usage on a real systemd user manager (`lookout_testkit::systemd`):
//! a unit that burns CPU and one that holds memory show their figures,
//! of the right order of magnitude, within a couple of sampling intervals;
//! a stopped unit stops reporting; the host's figures, the API's ranges and
//! `/metrics` carry them.

use std::time::Duration;

use lookout_testkit::{SystemdSandbox, TestHub};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const MIB: f64 = 1_048_576.0;

/// Polls `path` every 200 ms until `done` holds of its JSON or `deadline`
/// passes; the last answer.
async fn until(
    hub: &TestHub,
    path: &str,
    deadline: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = tokio::time::Instant::now();
    loop {
        let v = hub.get_json(path).await;
        if done(&v) || start.elapsed() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sandbox running `burn.service` (a busy loop) and `big.service`
/// (96 MiB, touched so it is resident), and a hub inside it sampling every
/// second.
fn busy_and_big() -> (SystemdSandbox, TestHub) {
    let sb = SystemdSandbox::start();
    sb.write_unit(
        "burn.service",
        "[Service]\nExecStart=/bin/sh -c 'while :; do :; done'\n",
    );
    sb.write_unit(
        "big.service",
        "[Service]\nExecStart=/usr/bin/python3 -c 'import time; b = bytearray(96 << 20); time.sleep(100000)'\n",
    );
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "burn.service", "big.service"]);
    let hub = sb.spawn_hub(BIN, &["--usage-every", "1s"]);
    (sb, hub)
}

#[tokio::test]
async fn a_busy_unit_and_a_big_unit_show_their_usage_and_a_stopped_one_stops_reporting() {
    let (sb, hub) = busy_and_big();
    let burn = hub.create_service(json!({"name": "burn.service"})).await;
    let big = hub.create_service(json!({"name": "big.service"})).await;
    let (burn, big) = (burn["id"].as_i64().unwrap(), big["id"].as_i64().unwrap());

    // Two readings make a rate: CPU shows from the second interval on.
    // (The deadline allows for a loaded machine; on an idle one both show
    // within about two seconds.)
    let interval_deadline = Duration::from_secs(10);
    let started = tokio::time::Instant::now();
    let b = until(
        &hub,
        &format!("/api/services/{burn}/usage?range=1h"),
        interval_deadline,
        |v| v["now"]["cpu_percent"].as_f64().is_some(),
    )
    .await;
    let took = started.elapsed();
    let cpu = b["now"]["cpu_percent"]
        .as_f64()
        .unwrap_or_else(|| panic!("no CPU figure: {b}"));
    assert!(
        cpu > 40.0 && cpu < 250.0,
        "a busy loop uses about one core: {cpu} %"
    );
    assert!(b["now"]["tasks"].as_u64().unwrap() >= 1);
    assert!(b["now"]["cpu_seconds_total"].as_f64().unwrap() > 0.0);
    eprintln!("busy unit's CPU after {took:?}: {cpu:.1} %");

    let m = until(
        &hub,
        &format!("/api/services/{big}/usage"),
        interval_deadline,
        |v| {
            v["now"]["memory_bytes"]
                .as_f64()
                .is_some_and(|b| b > 90.0 * MIB)
        },
    )
    .await;
    let memory = m["now"]["memory_bytes"]
        .as_f64()
        .unwrap_or_else(|| panic!("no memory figure: {m}"));
    assert!(
        memory > 90.0 * MIB && memory < 400.0 * MIB,
        "96 MiB held: {:.0} MiB",
        memory / MIB
    );
    let idle = m["now"]["cpu_percent"].as_f64().unwrap_or(0.0);
    assert!(idle < 20.0, "a sleeping unit is nearly idle: {idle} %");

    // The host's own figures.
    let hosts = hub.get_json("/api/hosts").await;
    let own = &hosts.as_array().unwrap()[0];
    assert_eq!(own["hub"], true);
    assert!(own["usage"]["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(
        own["usage"]["cpu_percent"].as_f64().unwrap() > 0.0,
        "one core is busy: {own}"
    );
    let name = own["host"].as_str().unwrap();
    let host = hub
        .get_json(&format!("/api/hosts/{name}/usage?range=1h"))
        .await;
    assert_eq!(host["host"], name);
    assert_eq!(host["bucket_secs"], 60);

    // Prometheus: the conventional names, with unit and server labels.
    let metrics = hub.get_text("/metrics").await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("lookout_service_memory_bytes{") && l.contains("unit=\"big.service\"")
        })
        .unwrap_or_else(|| panic!("no memory series for big.service in:\n{metrics}"));
    assert!(line.contains("server=\"\""), "{line}");
    assert!(metrics.contains("lookout_service_cpu_seconds_total{"));
    assert!(metrics.contains("lookout_host_memory_total_bytes{"));
    assert!(metrics.contains("lookout_host_filesystem_size_bytes{"));

    // Stopped: its figures go within a couple of intervals.
    sb.systemctl_ok(&["stop", "big.service"]);
    let gone = until(
        &hub,
        &format!("/api/services/{big}/usage"),
        interval_deadline,
        |v| v["now"].is_null(),
    )
    .await;
    assert!(
        gone["now"].is_null(),
        "a stopped unit still reports: {gone}"
    );
    let metrics = hub.get_text("/metrics").await;
    assert!(
        !metrics.contains("unit=\"big.service\""),
        "a stopped unit leaves no series"
    );
    // The busy one still reports.
    let b = hub.get_json(&format!("/api/services/{burn}/usage")).await;
    assert!(b["now"]["cpu_percent"].as_f64().is_some());
    sb.systemctl_ok(&["stop", "burn.service"]);
}

#[tokio::test]
async fn usage_ranges_and_hosts_are_checked() {
    let hub = lookout_testkit::spawn_hub().await;
    let s = hub
        .create_service(json!({"name": "plain", "base_url": "http://127.0.0.1:9"}))
        .await;
    let id = s["id"].as_i64().unwrap();
    let r = hub.get(&format!("/api/services/{id}/usage?range=2y")).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "range");
    // A service without a unit has no figures, and an empty history.
    let v = hub
        .get_json(&format!("/api/services/{id}/usage?range=90d"))
        .await;
    assert!(v["now"].is_null());
    assert_eq!(v["bucket_secs"], 86_400);
    assert_eq!(v["buckets"], json!([]));
    assert_eq!(hub.get("/api/services/999999/usage").await.status(), 404);
    assert_eq!(hub.get("/api/hosts/no-such-host/usage").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_page_and_a_services_usage_charts_show_in_chromium() {
    use crate::browser::{assert_no_sideways_scroll, dark_screenshot, screenshot, wait_text};
    use fantoccini::Locator;
    let (sb, hub) = busy_and_big();
    let burn = hub.create_service(json!({"name": "burn.service"})).await["id"]
        .as_i64()
        .unwrap();
    let big = hub.create_service(json!({"name": "big.service"})).await["id"]
        .as_i64()
        .unwrap();
    until(
        &hub,
        &format!("/api/services/{burn}/usage"),
        Duration::from_secs(10),
        |v| v["now"]["cpu_percent"].as_f64().is_some(),
    )
    .await;
    until(
        &hub,
        &format!("/api/services/{big}/usage"),
        Duration::from_secs(10),
        |v| {
            v["now"]["memory_bytes"]
                .as_f64()
                .is_some_and(|m| m > 90.0 * MIB)
        },
    )
    .await;
    // The charts draw the minutes not rolled up yet from the raw samples.
    until(
        &hub,
        &format!("/api/services/{burn}/usage?range=1h"),
        Duration::from_secs(10),
        |v| {
            v["buckets"]
                .as_array()
                .is_some_and(|b| b.iter().any(|p| p["cpu_percent"].is_object()))
        },
    )
    .await;

    let browser = lookout_testkit::Browser::start().await;
    let c = &browser.client;
    // The dashboard, by memory: the big one first, its figures on its row.
    c.goto(&hub.url("/?sort=memory")).await.unwrap();
    let first = wait_text(c, "#services tbody tr", |t| t.contains("big.service")).await;
    assert!(first.contains("MiB"), "{first}");
    let burn_row = wait_text(c, &format!("tr[data-id=\"{burn}\"] .usage"), |t| {
        t.contains("CPU")
    })
    .await;
    assert!(burn_row.contains('%'), "{burn_row}");

    // The busy service's page: its figures now and its charts.
    c.goto(&hub.url(&format!("/services/{burn}?usage=1h")))
        .await
        .unwrap();
    let cpu = wait_text(c, "#usage-now dd[data-figure=CPU]", |t| t.ends_with('%')).await;
    let value: f64 = cpu.trim_end_matches(" %").parse().unwrap();
    assert!(value > 40.0, "{cpu}");
    for chart in ["usage-cpu", "usage-memory"] {
        let svg = c
            .find(Locator::Css(&format!("#{chart} svg.chart")))
            .await
            .unwrap();
        let label = svg.attr("aria-label").await.unwrap().unwrap();
        assert!(label.ends_with("over the last 1 hour"), "{label}");
    }
    let cpu_chart = c
        .find(Locator::Id("usage-cpu"))
        .await
        .unwrap()
        .html(false)
        .await
        .unwrap();
    let api = hub
        .get_json(&format!("/api/services/{burn}/usage?range=1h"))
        .await;
    assert!(
        cpu_chart.contains("class=\"mean\""),
        "the CPU chart draws its minutes: {cpu_chart}\nthe API's: {api}"
    );
    c.execute("document.getElementById('usage').scrollIntoView()", vec![])
        .await
        .unwrap();
    screenshot(c, "service-usage-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "service-usage-phone").await;
    c.set_window_size(1280, 900).await.unwrap();
    dark_screenshot(
        &hub.url(&format!("/services/{burn}?usage=1h")),
        "service-usage-dark",
    );

    // The hosts list and the hub's host page.
    c.goto(&hub.url("/hosts")).await.unwrap();
    let row = wait_text(c, "#hosts tbody tr", |t| t.contains("this hub")).await;
    assert!(row.contains("GiB"), "{row}");
    c.find(Locator::Css("#hosts tbody tr a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "#host-cpu", |t| t.ends_with('%')).await;
    let memory = wait_text(c, "#host-memory", |t| t.contains(" of ")).await;
    assert!(memory.contains("GiB") || memory.contains("MiB"), "{memory}");
    wait_text(c, "#host-uptime", |t| !t.is_empty()).await;
    for chart in [
        "chart-cpu",
        "chart-memory",
        "chart-load",
        "chart-disk",
        "chart-network",
    ] {
        c.find(Locator::Css(&format!("#{chart} svg.chart")))
            .await
            .unwrap();
    }
    // Its running units, the most memory first, each linking to its service.
    let units = wait_text(c, "#host-units tbody", |t| t.contains("burn.service")).await;
    let (big_at, burn_at) = (
        units.find("big.service").unwrap(),
        units.find("burn.service").unwrap(),
    );
    assert!(big_at < burn_at, "most memory first: {units}");
    let link = c
        .find(Locator::Css("#host-units tbody tr a"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap();
    assert_eq!(link.as_deref(), Some(format!("/services/{big}").as_str()));
    // "Add alerts" opens the form for a host:// service, thresholds filled in.
    let alert = c
        .find(Locator::Id("host-alert"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(
        alert.contains("check=host") && alert.contains("host%3A%2F%2Flocalhost"),
        "{alert}"
    );
    c.execute(
        "document.getElementById('host-units').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, "host-units-desktop").await;
    c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
    // These machines have no sensor: said, not charted.
    wait_text(c, "#no-sensors", |t| t.contains("no temperature sensor")).await;
    assert!(c.find(Locator::Id("chart-temperature")).await.is_err());
    screenshot(c, "host-desktop").await;
    let url = c.current_url().await.unwrap().to_string();
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "host-phone").await;
    c.execute(
        "document.getElementById('host-units').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, "host-units-phone").await;
    dark_screenshot(&url, "host-dark");

    // A threshold on the big unit without a URL: its page says what the
    // check reads.
    let r = hub
        .put_json(
            &format!("/api/services/{big}"),
            &json!({"conditions": ["[MEMORY] < 1GiB"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    c.set_window_size(1280, 900).await.unwrap();
    c.goto(&hub.url(&format!("/services/{big}"))).await.unwrap();
    wait_text(c, "#check-url", |t| t == "big.service: what it uses").await;
    screenshot(c, "usage-check-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "usage-check-phone").await;
    dark_screenshot(&hub.url(&format!("/services/{big}")), "usage-check-dark");
    browser.close().await;
    sb.systemctl_ok(&["stop", "burn.service", "big.service"]);
}

/// A unit's memory above a threshold makes its service WARNING, through the
/// same conditions, status model and history as any check's; freed, it
/// recovers.
#[tokio::test]
async fn a_memory_threshold_raises_warning_and_recovers() {
    let sb = SystemdSandbox::start();
    let port = lookout_testkit::free_port_in(3000..10000);
    let size = sb.dir().join("hog-size");
    std::fs::write(&size, (128u64 << 20).to_string()).unwrap();
    let script = sb.dir().join("hog.py");
    std::fs::write(
        &script,
        "import sys, http.server\n\
         held = bytearray(int(open(sys.argv[2]).read()))\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
    )
    .unwrap();
    sb.write_unit(
        "hog.service",
        &format!(
            "[Service]\nWorkingDirectory=/tmp\nExecStart=/usr/bin/python3 {} {port} {}\n",
            script.display(),
            size.display()
        ),
    );
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "hog.service"]);
    crate::systemd::wait_for_port(port);
    let hub = sb.spawn_hub(BIN, &["--usage-every", "1s"]);
    let hog = hub
        .create_service(json!({
            "name": "hog.service",
            "base_url": format!("http://127.0.0.1:{port}"),
            "check_interval_secs": 1,
            "conditions": [{"expr": "[MEMORY] < 67108864", "on_fail": "WARNING"}],
        }))
        .await;
    let id = hog["id"].as_i64().unwrap();
    let warned = hub
        .wait_for_service(id, Duration::from_secs(20), |s| s["state"] == "WARNING")
        .await;
    let reason = warned["state_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("[MEMORY]"), "{warned}");

    // Freed: the next checks pass and the service is OK again.
    std::fs::write(&size, "0").unwrap();
    sb.systemctl_ok(&["restart", "hog.service"]);
    crate::systemd::wait_for_port(port);
    hub.wait_for_service(id, Duration::from_secs(20), |s| s["state"] == "OK")
        .await;
    let changes = hub.get_json(&format!("/api/services/{id}/events")).await;
    let moves: Vec<(String, String)> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["old"].as_str().unwrap_or("").to_owned(),
                c["new"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(moves.iter().any(|(_, new)| new == "WARNING"), "{moves:?}");
    sb.systemctl_ok(&["stop", "hog.service"]);
}

/// Thresholds without a URL: a unit service whose conditions read its usage
/// is checked on them (its unit's state speaks while they hold), and a
/// `host://` service judges a host's CPU, memory, disk and load. Conditions
/// a kind of check cannot judge are refused with the field named.
#[tokio::test]
async fn a_unit_and_a_host_are_judged_on_their_usage_without_a_url() {
    let sb = SystemdSandbox::start();
    sb.write_unit(
        "big.service",
        "[Service]\nExecStart=/usr/bin/python3 -c 'import time; b = bytearray(96 << 20); time.sleep(100000)'\n",
    );
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "big.service"]);
    let hub = sb.spawn_hub(BIN, &["--usage-every", "1s"]);

    let big = hub
        .create_service(json!({
            "name": "big.service",
            "check_interval_secs": 1,
            "conditions": ["[MEMORY] < 64MiB"],
        }))
        .await;
    let id = big["id"].as_i64().unwrap();
    // Checked on its usage once its unit is known.
    hub.wait_for_service(id, Duration::from_secs(10), |s| s["check_kind"] == "usage")
        .await;
    let failed = hub
        .wait_for_service(id, Duration::from_secs(20), |s| s["state"] == "FAILURE")
        .await;
    let reason = failed["state_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("[MEMORY] < 64MiB: was ") && reason.contains("MiB"),
        "the figure, in the unit people write: {reason}"
    );
    // A limit it keeps: the unit's state speaks again.
    let r = hub
        .put_json(
            &format!("/api/services/{id}"),
            &json!({"conditions": ["[MEMORY] < 1GiB", "[TASKS] < 100"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let ok = hub
        .wait_for_service(id, Duration::from_secs(20), |s| s["state"] == "OK")
        .await;
    assert_eq!(ok["state_reason"], "the systemd unit is active", "{ok}");
    let page = hub.get_text(&format!("/services/{id}")).await;
    assert!(
        page.contains("Usage: what its unit uses") && page.contains("big.service: what it uses"),
        "the page says what the check reads: {page}"
    );

    // The hub's own host: the disk is more than a thousandth full.
    let this = hub
        .create_service(json!({
            "name": "this host",
            "base_url": "host://localhost",
            "check_interval_secs": 1,
            "conditions": ["[LOAD] < 100000", "[MEMORY_PERCENT] <= 100", "[DISK_FULL_IN] > 7d", "[DISK_PERCENT] < 0.001"],
        }))
        .await;
    assert_eq!(this["check_kind"], "host");
    let this = this["id"].as_i64().unwrap();
    let full = hub
        .wait_for_service(this, Duration::from_secs(20), |s| s["state"] == "FAILURE")
        .await;
    let reason = full["state_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("[DISK_PERCENT] < 0.001: was ") && reason.ends_with('%'),
        "only the disk fails; the fill estimate waits for its minutes: {reason}"
    );
    // Its page links to the host's.
    let hosts = hub.get_json("/api/hosts").await;
    let own = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hub"] == true)
        .and_then(|h| h["host"].as_str())
        .unwrap()
        .to_owned();
    let page = hub.get_text(&format!("/services/{this}")).await;
    assert!(
        page.contains(&format!("href=\"/hosts/{own}\" id=\"check-host-page\"")),
        "{page}"
    );
    assert!(
        page.contains("<h2 id=\"response-time-title\">Checks</h2>"),
        "a host's checks have no response time to chart: {page}"
    );
    // A host that sends nothing fails, saying so, once the hub has given
    // hosts time for their first figures (three intervals and 10 s).
    let nas = hub
        .create_service(json!({"name": "nas", "base_url": "host://nas", "check_interval_secs": 1}))
        .await;
    let nas = hub
        .wait_for_service(nas["id"].as_i64().unwrap(), Duration::from_secs(30), |s| {
            s["state"] == "FAILURE"
        })
        .await;
    assert!(
        nas["state_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no resource usage from host nas"),
        "{nas}"
    );

    for (body, says) in [
        (
            json!({"name": "h", "base_url": "host://localhost", "conditions": ["[TASKS] < 5"]}),
            "[TASKS] is not a host's figure",
        ),
        (
            json!({"name": "w", "base_url": "http://127.0.0.1:9", "conditions": ["[DISK_PERCENT] < 90"]}),
            "[DISK_PERCENT] is a host's figure",
        ),
        (
            json!({"name": "p", "base_url": "host://localhost:22"}),
            "a host:// URL names a host and nothing else",
        ),
    ] {
        let r = hub.post_json("/api/services", &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let error: Value = r.json().await.unwrap();
        let text = error.to_string();
        assert!(text.contains(says), "{body}: {text}");
    }
    sb.systemctl_ok(&["stop", "big.service"]);
}
