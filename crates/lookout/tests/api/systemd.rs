//! Discovery, control and logs against a real systemd user manager in a
//! private mount namespace (see `lookout_testkit::systemd`), with the real
//! `lookout serve` binary running inside it.

use std::time::Duration;

use lookout_testkit::{
    closed_port, free_port_in, spawn_hub_process, SseClient, SystemdSandbox, TestHub,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const SOON: Duration = Duration::from_secs(20);

fn http_server(port: u16) -> String {
    format!("/usr/bin/python3 -m http.server {port} --bind 127.0.0.1")
}

/// The fixture's ports.
struct Ports {
    web_a: u16,
    web_b: u16,
    child: u16,
    activated: u16,
    nonweb: u16,
}

/// Writes the fixture's units: two HTTP services, one whose listening socket
/// belongs to a child process, one socket-activated service, one non-web
/// service, one failing service, and one timer whose job fails.
fn write_fixture(sb: &SystemdSandbox) -> Ports {
    let ports = Ports {
        web_a: free_port_in(3000..10000),
        web_b: free_port_in(3000..10000),
        child: free_port_in(3000..10000),
        activated: free_port_in(3000..10000),
        nonweb: closed_port(), // ephemeral range: not a web port
    };
    sb.write_unit(
        "web-a.service",
        &format!(
            "[Unit]\nDescription=Web A\n[Service]\nExecStart={}\n",
            http_server(ports.web_a)
        ),
    );
    sb.write_unit(
        "web-b.service",
        &format!(
            "[Unit]\nDescription=Web B\n[Service]\nExecStart={}\n",
            http_server(ports.web_b)
        ),
    );
    sb.write_unit(
        "forking-child.service",
        &format!(
            "[Unit]\nDescription=Listener in a child\n[Service]\nExecStart=/bin/sh -c '{} & wait'\n",
            http_server(ports.child)
        ),
    );
    sb.write_unit(
        "activated.socket",
        &format!(
            "[Unit]\nDescription=Activation socket\n[Socket]\nListenStream=127.0.0.1:{}\n",
            ports.activated
        ),
    );
    sb.write_unit(
        "activated.service",
        "[Unit]\nDescription=Socket-activated app\n[Service]\nExecStart=/usr/bin/python3 -c 'import time; time.sleep(1000)'\n",
    );
    sb.write_unit(
        "nonweb.service",
        &format!(
            "[Unit]\nDescription=Not a web service\n[Service]\nExecStart=/usr/bin/python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\", {})); s.listen(); time.sleep(1000)'\n",
            ports.nonweb
        ),
    );
    sb.write_unit(
        "failing.service",
        "[Unit]\nDescription=Always fails\n[Service]\nExecStart=/bin/false\n",
    );
    sb.write_unit(
        "backup.service",
        "[Unit]\nDescription=Nightly backup\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo backup target missing >&2; exit 3'\n",
    );
    sb.write_unit(
        "backup.timer",
        "[Unit]\nDescription=Run the backup\n[Timer]\nOnActiveSec=1s\nAccuracySec=1ms\nOnCalendar=*-*-* 03:00:00\n",
    );
    sb.daemon_reload();
    for unit in [
        "web-a.service",
        "web-b.service",
        "forking-child.service",
        "activated.socket",
        "nonweb.service",
        "backup.timer",
    ] {
        sb.systemctl_ok(&["start", unit]);
    }
    let _ = sb.systemctl(&["start", "failing.service"]);
    sb.wait_for("failing.service", "ActiveState", "failed", SOON);
    sb.wait_for("backup.service", "Result", "exit-code", SOON);
    // The listeners are up when their ports answer.
    for port in [ports.web_a, ports.web_b, ports.child] {
        wait_for_port(port);
    }
    ports
}

#[allow(clippy::disallowed_methods)] // Waiting for another process to listen, with a deadline.
pub(crate) fn wait_for_port(port: u16) {
    let until = std::time::Instant::now() + SOON;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < until,
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hub_in(sb: &SystemdSandbox) -> TestHub {
    hub_in_with(sb, &[])
}

/// The real hub inside the sandbox, on the user manager, with more flags.
pub(crate) fn hub_in_with(sb: &SystemdSandbox, flags: &[&str]) -> TestHub {
    sb.spawn_hub(BIN, flags)
}

fn find<'a>(services: &'a Value, unit: &str) -> &'a Value {
    services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["unit"] == unit)
        .unwrap_or_else(|| panic!("{unit} not found in {services}"))
}

fn ports_of(s: &Value) -> Vec<u64> {
    let mut ports: Vec<u64> = s["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    ports.dedup();
    ports
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_finds_every_kind_of_service_with_its_ports_and_class() {
    let sb = SystemdSandbox::start();
    let ports = write_fixture(&sb);
    let hub = hub_in(&sb);
    // The hub scans by itself as it starts.
    let until = std::time::Instant::now() + SOON;
    while hub.get("/api/scan").await.status() != 200 {
        assert!(std::time::Instant::now() < until, "no scan at start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let r = hub.post("/api/scan").await;
    assert_eq!(r.status(), 200);
    let scan: Value = r.json().await.unwrap();
    assert_eq!(scan["scope"], "user");
    assert_eq!(scan["discovered"], 0, "found by the scan at start");
    assert!(scan["services"].as_array().unwrap().len() >= 8, "{scan}");
    assert_eq!(scan["removed"], 0);
    let services = &scan["services"];

    let web_a = find(services, "web-a.service");
    assert_eq!(
        (web_a["systemd_state"].as_str(), web_a["sub_state"].as_str()),
        (Some("active"), Some("running"))
    );
    assert_eq!(web_a["status"], "discovered");
    assert_eq!(web_a["port"], ports.web_a);
    assert_eq!(web_a["description"], "Web A");
    let main_pid = web_a["main_pid"].as_u64().expect("main PID");
    assert_eq!(
        sb.property("web-a.service", "MainPID"),
        main_pid.to_string()
    );
    assert!(web_a["pids"].as_array().unwrap().contains(&json!(main_pid)));
    assert_eq!(find(services, "web-b.service")["port"], ports.web_b);

    // The socket belongs to a child of the main process: still found.
    let forked = find(services, "forking-child.service");
    assert_eq!(forked["status"], "discovered");
    assert_eq!(ports_of(forked), [u64::from(ports.child)]);
    assert!(
        forked["pids"].as_array().unwrap().len() >= 2,
        "sh and its python child: {forked}"
    );

    // Socket activation: the port comes from the .socket unit while the service is not running.
    let activated = find(services, "activated.service");
    assert_eq!(activated["systemd_state"], "inactive");
    assert_eq!(activated["status"], "discovered");
    assert_eq!(activated["port"], ports.activated);
    assert_eq!(activated["ports"][0]["source"], "socket_unit");
    assert_eq!(activated["ports"][0]["socket_unit"], "activated.socket");

    let nonweb = find(services, "nonweb.service");
    assert_eq!(nonweb["status"], "raw");
    assert_eq!(ports_of(nonweb), [u64::from(ports.nonweb)]);

    let failing = find(services, "failing.service");
    assert_eq!(failing["systemd_state"], "failed");
    assert_eq!(failing["status"], "raw");
    assert_eq!(failing["ports"], json!([]));

    // The failed backup timer is visible without anyone writing anything.
    let timer = scan["timers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "backup.timer")
        .expect("timer");
    assert_eq!(timer["unit"], "backup.service");
    assert_eq!(timer["last_result"], "exit-code");
    assert_eq!(timer["last_exit_status"], 3);
    assert_eq!(timer["failed"], true);
    assert!(timer["last_trigger"].is_string());
    assert!(timer["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().starts_with("OnCalendar=")));

    // GET /api/scan returns the last result; the listing filters by class.
    let last = hub.get_json("/api/scan").await;
    assert_eq!(last["discovered"], scan["discovered"]);
    assert_eq!(
        last["services"].as_array().unwrap().len(),
        services.as_array().unwrap().len()
    );
    assert_eq!(
        hub.get_json("/api/services").await,
        json!([]),
        "nothing configured yet"
    );
    let discovered = hub.get_json("/api/services?status=discovered").await;
    let mut names: Vec<&str> = discovered
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "activated.service",
            "forking-child.service",
            "web-a.service",
            "web-b.service"
        ]
    );
    let raw = hub.get_json("/api/services?status=raw").await;
    assert!(raw
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "nonweb.service"));

    // The scan page: discovered services with a pre-filled Configure, all
    // services, and the failed timer.
    let html = hub.get_text("/scan").await;
    assert!(html.contains("New Discovered Services"));
    // Page loads within seconds of a scan show it rather than scan again
    // (a viewer reloading cannot make the hub scan systemd in a loop).
    let last = hub.get_json("/api/scan").await["scanned_at"].clone();
    for _ in 0..5 {
        assert_eq!(hub.get("/scan").await.status(), 200);
    }
    assert_eq!(hub.get_json("/api/scan").await["scanned_at"], last);
    let at = html
        .find(r#"data-unit="web-a.service""#)
        .expect("web-a row");
    let row = &html[at..at + html[at..].find("</tr>").unwrap()];
    assert!(
        row.contains(&format!(
            "base_url=http%3A%2F%2F127.0.0.1%3A{}",
            ports.web_a
        )),
        "{row}"
    );
    assert!(row.contains("Configure"));
    assert!(html.contains(r#"data-timer="backup.timer" class="failed""#));
    assert!(html.contains("All systemd services"));
    let dashboard = hub.get_text("/").await;
    assert!(
        dashboard.contains("Timer <strong>backup.timer</strong>"),
        "failed timer banner on the dashboard"
    );

    // Configuring a discovered unit turns its entry into a configured service.
    let id = web_a["id"].as_i64().unwrap();
    let configured = hub
        .create_service(json!({"name": "web-a.service", "description": "Mine now",
                               "base_url": format!("http://127.0.0.1:{}", ports.web_a), "health_endpoint": "/"}))
        .await;
    assert_eq!(configured["id"], id);
    assert_eq!(configured["status"], "configured");
    assert_eq!(configured["unit"], "web-a.service");
    hub.wait_for_service(id, SOON, |s| s["health_status"] == "healthy")
        .await;

    // A unit that vanishes is marked removed, not kept silently or lost.
    sb.systemctl_ok(&["stop", "web-b.service"]);
    sb.remove_unit("web-b.service");
    sb.remove_unit("web-a.service");
    sb.systemctl_ok(&["stop", "web-a.service"]);
    sb.daemon_reload();
    // (The hub follows the manager: its own scan on the reload may have
    // marked them removed before this one; either way they are.)
    let again: Value = hub.post("/api/scan").await.json().await.unwrap();
    assert_eq!(again["discovered"], 0);
    assert_eq!(
        find(&again["services"], "web-b.service")["systemd_state"],
        "removed"
    );
    let mine = hub.service(id).await;
    assert_eq!(
        (mine["status"].as_str(), mine["systemd_state"].as_str()),
        (Some("configured"), Some("removed"))
    );
    assert_eq!(
        mine["description"], "Mine now",
        "the user's fields survive a scan"
    );
    let html = hub.get_text("/scan").await;
    assert!(html.contains("Gone from systemd") && html.contains("web-b.service (discovered)"));
    // The count above the list is the list's (gone units are listed apart).
    let listed = html
        .split("All systemd services (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    assert!(
        html.contains(&format!("{listed} user services scanned")),
        "{html}"
    );
    let cleaned: Value = hub.post("/api/scan/cleanup").await.json().await.unwrap();
    assert_eq!(cleaned["deleted"], 1, "only the unconfigured entry goes");
    let all = hub.get_json("/api/services?status=all").await;
    assert!(!all
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "web-b.service"));
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "web-a.service"));
}

/// A discovered unit's entry, once the hub's own scan (at start, or on a
/// signal) has found it.
pub(crate) async fn wait_for_unit(hub: &TestHub, unit: &str) -> Value {
    let until = std::time::Instant::now() + SOON;
    loop {
        let all = hub.get_json("/api/services?status=all").await;
        if let Some(s) = all.as_array().unwrap().iter().find(|s| s["unit"] == unit) {
            if s["main_pid"].is_u64() || s["systemd_state"] != "active" {
                return s.clone();
            }
        }
        assert!(std::time::Instant::now() < until, "{unit} not found: {all}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_unit_is_failure_within_two_seconds_without_a_scan() {
    let sb = SystemdSandbox::start();
    let port = free_port_in(3000..10000);
    sb.write_unit(
        "victim.service",
        &format!(
            "[Unit]\nDescription=Killed from outside\n[Service]\nExecStart={}\n",
            http_server(port)
        ),
    );
    // Two more without a health check: one registered ("watched"), one
    // only found by the scan ("bystander").
    for unit in ["watched.service", "bystander.service"] {
        sb.write_unit(unit, "[Service]\nExecStart=/bin/sleep 100000\n");
    }
    sb.daemon_reload();
    sb.systemctl_ok(&[
        "start",
        "victim.service",
        "watched.service",
        "bystander.service",
    ]);
    wait_for_port(port);
    // No periodic scan: whatever the hub learns below, it learns live.
    let hub = hub_in_with(&sb, &["--scan-every", "off"]);
    let found = wait_for_unit(&hub, "victim.service").await;
    let hook = lookout_testkit::Receiver::start().await;
    let r = hub
        .post_json(
            "/api/notifications/channels",
            &json!({"name": "hook", "kind": "webhook", "config": {"url": hook.url("/hook")}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let watched = hub.create_service(json!({"name": "watched.service"})).await;
    assert_eq!(watched["unit"], "watched.service");
    let bystander = wait_for_unit(&hub, "bystander.service").await;
    let pid = found["main_pid"].as_u64().expect("a main PID");
    // Registered, checked once (OK), and not again for an hour.
    let victim = hub
        .create_service(json!({"name": "victim.service",
                               "base_url": format!("http://127.0.0.1:{port}"),
                               "health_endpoint": "/", "check_interval_secs": 3600}))
        .await;
    let id = victim["id"].as_i64().unwrap();
    assert_eq!(victim["unit"], "victim.service");
    hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
    let scanned = hub.get_json("/api/scan").await["scanned_at"].clone();
    let mut events = SseClient::connect(&hub.client, &hub.url("/api/events"), None).await;

    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = std::time::Instant::now();
    let down = events
        .wait_for(SOON, |m| {
            m.event == "status" && m.data["service_id"] == id && m.data["new"] == "FAILURE"
        })
        .await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(2), "FAILURE took {took:?}");
    assert_eq!(
        down.data["reason"], "the systemd unit failed: killed by SIGKILL",
        "{}",
        down.data
    );
    let s = hub.service(id).await;
    assert_eq!(
        (
            s["state"].as_str(),
            s["systemd_state"].as_str(),
            s["unit_result"].as_str(),
            s["exit_status"].as_i64()
        ),
        (Some("FAILURE"), Some("failed"), Some("signal"), Some(9))
    );
    assert_eq!(
        hub.get_json("/api/scan").await["scanned_at"],
        scanned,
        "no scan ran: the change came from following the manager"
    );

    // Killed too: both turn FAILURE, only the registered one alerts.
    for unit in ["watched.service", "bystander.service"] {
        let pid = sb.property(unit, "MainPID");
        let status = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let alerts = hook.wait_for("/hook", 1, SOON).await;
    let bystander_id = bystander["id"].as_i64().unwrap();
    hub.wait_for_service(bystander_id, SOON, |s| s["state"] == "FAILURE")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // asserting an absence needs a window
    let alerted: Vec<String> = hook
        .received("/hook")
        .iter()
        .map(|r| {
            r.json()["service"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(alerted, ["watched.service"], "{:?}", alerts.len());

    // The dashboard says the unwatched unit fails, with one click to watch it.
    let html = hub.get_text("/").await;
    let banner = html
        .split(r#"data-unit="bystander.service""#)
        .nth(1)
        .and_then(|rest| rest.split("</div>").next())
        .unwrap_or_else(|| panic!("no banner for the unwatched unit: {html}"));
    assert!(
        banner.contains("Watch") && banner.contains("killed by SIGKILL"),
        "{banner}"
    );
    assert!(
        !html.contains(r#"data-unit="watched.service""#),
        "watched: a row, not a banner"
    );
    let r = hub
        .post_form("/services/new", &[("name", "bystander.service")])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(hub.service(bystander_id).await["status"], "configured");
    let html = hub.get_text("/").await;
    assert!(!html.contains(r#"data-unit="bystander.service""#));

    // Started again from outside: OK again, as fast.
    sb.systemctl_ok(&["start", "victim.service"]);
    let up = events
        .wait_for(SOON, |m| {
            m.event == "status" && m.data["service_id"] == id && m.data["new"] == "OK"
        })
        .await;
    assert_eq!(up.data["old"], "FAILURE");
    let s = hub.service(id).await;
    assert_ne!(s["main_pid"].as_u64(), Some(pid), "the new process");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_looping_app_fails_and_a_starting_app_is_never_red() {
    let sb = SystemdSandbox::start();
    let hub = hub_in_with(&sb, &["--crash-loop-restarts", "2"]);
    let mut events = SseClient::connect(&hub.client, &hub.url("/api/events"), None).await;

    // An app that exits at once: systemd restarts it every 5 s, for ever.
    let r = hub
        .post_json(
            "/api/apps",
            &json!({"name": "looper", "command": ["/bin/sh", "-c", "echo cannot start >&2; exit 1"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let looper = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let down = events
        .wait_for(Duration::from_secs(30), |m| {
            m.event == "status" && m.data["service_id"] == looper && m.data["new"] == "FAILURE"
        })
        .await;
    assert_eq!(
        down.data["reason"],
        "crash loop: restarted 2 times without staying up 60 s: exit code 1"
    );
    let s = hub.service(looper).await;
    assert_eq!(
        (s["restarts"].as_u64(), s["exit_status"].as_i64()),
        (Some(2), Some(1))
    );

    // An app that takes 3 s to listen, checked every second: within its
    // start period (30 s by default for apps) the failed checks are not red.
    let port = free_port_in(3000..10000);
    let program = format!(
        "import time, http.server as h; time.sleep(3); h.HTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler).serve_forever()"
    );
    let r = hub
        .post_json(
            "/api/apps",
            &json!({"name": "slow", "command": ["/usr/bin/python3", "-c", program],
                    "port": port, "health_endpoint": "/", "check_interval_secs": 1}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let slow: Value = r.json().await.unwrap();
    assert_eq!(slow["start_period_secs"], 30);
    let slow = slow["id"].as_i64().unwrap();
    let mut seen = Vec::new();
    loop {
        let m = events
            .wait_for(SOON, |m| {
                m.event == "status" && m.data["service_id"] == slow
            })
            .await;
        seen.push((m.data["new"].clone(), m.data["reason"].clone()));
        if m.data["new"] == "OK" {
            break;
        }
    }
    assert!(
        seen.iter().all(|(status, _)| status != "FAILURE"),
        "red while starting: {seen:?}"
    );
    let checks = hub
        .get_json(&format!("/api/services/{slow}/checks?limit=50"))
        .await;
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "unhealthy"),
        "the early checks did fail (and did not count): {checks}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_stop_restart_change_the_real_state_and_logs_come_back() {
    let sb = SystemdSandbox::start();
    let port = free_port_in(3000..10000);
    sb.write_unit(
        "ctl.service",
        &format!(
            "[Unit]\nDescription=Controlled\n[Service]\nEnvironment=PYTHONUNBUFFERED=1\nExecStart={}\n",
            http_server(port)
        ),
    );
    sb.daemon_reload();
    let hub = hub_in(&sb);

    // By unit name, not registered.
    let r: Value = hub
        .post("/api/services/ctl.service/start")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["job_result"], "done", "{r}");
    assert_eq!(r["status"]["active_state"], "active");
    assert_eq!(sb.property("ctl.service", "ActiveState"), "active");
    let first_pid = r["status"]["main_pid"].as_u64().unwrap();
    wait_for_port(port);

    let status = hub.get_json("/api/services/ctl/status").await;
    assert_eq!(status["unit"], "ctl.service", ".service is implied");
    assert_eq!(status["sub_state"], "running");

    // By registry id after a scan.
    let scan: Value = hub.post("/api/scan").await.json().await.unwrap();
    let id = find(&scan["services"], "ctl.service")["id"]
        .as_i64()
        .unwrap();
    let r: Value = hub
        .post(&format!("/api/services/{id}/restart"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["job_result"], "done");
    let second_pid = r["status"]["main_pid"].as_u64().unwrap();
    assert_ne!(first_pid, second_pid, "restart replaced the process");
    assert_eq!(
        sb.property("ctl.service", "MainPID"),
        second_pid.to_string()
    );
    assert_eq!(
        hub.service(id).await["main_pid"],
        second_pid,
        "the registry follows"
    );

    let r: Value = hub
        .post(&format!("/api/services/{id}/stop"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"]["active_state"], "inactive");
    assert_eq!(sb.property("ctl.service", "ActiveState"), "inactive");
    assert_eq!(hub.service(id).await["systemd_state"], "inactive");

    // Logs from the journal: python's http.server prints where it serves.
    let logs = hub
        .get_json(&format!("/api/services/{id}/logs?lines=50"))
        .await;
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("Serving HTTP on 127.0.0.1 port {port}"))),
        "{lines:?}"
    );
    let one = hub.get_json("/api/services/ctl.service/logs?lines=1").await;
    assert_eq!(one["lines"].as_array().unwrap().len(), 1);
    assert_eq!(
        hub.get("/api/services/ctl.service/logs?lines=0")
            .await
            .status(),
        400
    );
    assert_eq!(
        hub.get("/api/services/ctl.service/logs?lines=10001")
            .await
            .status(),
        400
    );
    let page = hub.get_text(&format!("/logs/{id}")).await;
    assert!(page.contains(&format!("port {port}")));

    // The dashboard's buttons.
    hub.create_service(json!({"name": "ctl.service"})).await;
    let r = hub
        .post_form(&format!("/control/{id}/start"), lookout_testkit::NO_FIELDS)
        .await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let page = hub.get_text(&location).await;
    assert!(
        page.contains("Started ctl.service: job done, now active (running)."),
        "{location}"
    );
    assert_eq!(sb.property("ctl.service", "ActiveState"), "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_unit_names_are_refused_before_systemd_and_unknown_ones_are_404() {
    let sb = SystemdSandbox::start();
    let hub = hub_in(&sb);
    let long = "a".repeat(250);
    for bad in [
        "foo%3Brm%20-rf",
        "..%2Fetc",
        "-x.service",
        "a%20b",
        "%24(reboot)",
        "x%0A.service",
        long.as_str(),
    ] {
        let r = hub.post(&format!("/api/services/{bad}/start")).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "bad_request");
        assert_eq!(body["fields"][0]["field"], "unit");
        let r = hub.get(&format!("/api/services/{bad}/logs")).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = hub.post("/api/services/no-such-unit/start").await;
    assert_eq!(r.status(), 404);
    let r = hub.get("/api/services/no-such-unit/status").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["message"], "unit no-such-unit.service does not exist",
        "named once, in one sentence"
    );
    // Its logs are as missing as its status, not an empty list.
    assert_eq!(
        hub.get("/api/services/no-such-unit/logs").await.status(),
        404
    );
    assert_eq!(hub.post("/api/services/999/stop").await.status(), 404);
    // A registered service that is not a unit cannot be controlled: it has
    // no unit to act on.
    let s = hub
        .create_service(json!({"name": "My API", "url": "http://127.0.0.1:1"}))
        .await;
    let r = hub.post(&format!("/api/services/{}/start", s["id"])).await;
    assert_eq!(r.status(), 404);
    // The bus that carries lookout's own requests is not stopped or
    // restarted from lookout: refused before systemd, and the bus lives on.
    // (A second hub: the first has spent its control requests for the minute.)
    let hub = hub_in(&sb);
    for action in ["stop", "restart"] {
        let r = hub
            .post(&format!("/api/services/dbus.service/{action}"))
            .await;
        assert_eq!(r.status(), 409, "{action}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["fields"][0]["message"]
                .as_str()
                .unwrap()
                .contains("lookout's own connection to systemd"),
            "{body}"
        );
        let done = if action == "stop" {
            "stopped"
        } else {
            "restarted"
        };
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("unit dbus.service is not {done} from lookout: ")),
            "{body}"
        );
    }
    // Nor are the services that end the manager (or, on the system manager,
    // the machine) started.
    let r = hub.post("/api/services/systemd-exit.service/start").await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        hub.get("/api/services/dbus.service/status").await.status(),
        200
    );

    // Refused by effect, not by name: what a job would pull in, stop or
    // trigger is followed first. (A third hub, for its control budget.)
    let hub = hub_in(&sb);
    std::fs::write(
        sb.unit_dir().join("wants-exit.service"),
        "[Unit]\nWants=exit.target\n[Service]\nExecStart=/bin/sleep 600\n",
    )
    .unwrap();
    std::fs::write(
        sb.unit_dir().join("exits-after.service"),
        "[Unit]\nSuccessAction=exit\n[Service]\nType=oneshot\nExecStart=/bin/true\n",
    )
    .unwrap();
    std::fs::write(
        sb.unit_dir().join("fails-to-exit.service"),
        "[Unit]\nOnFailure=shutdown.target\n[Service]\nExecStart=/bin/false\n",
    )
    .unwrap();
    sb.systemctl_ok(&["daemon-reload"]);
    for (unit, names) in [
        ("exit.target", "exit.target"),
        ("wants-exit.service", "wants-exit.service → exit.target"),
        ("exits-after.service", "SuccessAction=exit"),
        (
            "fails-to-exit.service",
            "fails-to-exit.service → shutdown.target",
        ),
    ] {
        let r = hub.post(&format!("/api/services/{unit}/start")).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 409, "{unit}: {body}");
        let message = body["fields"][0]["message"].as_str().unwrap();
        assert!(message.contains(names), "{unit}: {message}");
    }
    // The manager is still there, and nothing was started.
    assert_eq!(sb.property("exit.target", "ActiveState"), "inactive");
    assert_eq!(sb.property("wants-exit.service", "ActiveState"), "inactive");
    assert_eq!(
        hub.get("/api/services/dbus.service/status").await.status(),
        200
    );
}

/// The bus daemon restarted under the hub: the next request reconnects and
/// succeeds; an app that cannot be stopped is not deleted half-way.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_bus_heals_and_app_deletion_is_all_or_nothing() {
    let sb = SystemdSandbox::start();
    let hub = hub_in(&sb);
    assert_eq!(
        hub.get("/api/services/dbus.service/status").await.status(),
        200
    );
    sb.systemctl_ok(&["stop", "dbus.service"]);
    let port = free_port_in(3000..10000);
    let r = hub
        .post_json(
            "/api/apps",
            &json!({"name": "after-bus", "command": ["/usr/bin/python3", "-m", "http.server", port.to_string(), "--bind", "127.0.0.1"],
                    "port": port}),
        )
        .await;
    let status = r.status();
    assert_eq!(status, 201, "{}", r.text().await.unwrap());
    sb.wait_for(
        "lookout-app-after-bus.service",
        "ActiveState",
        "active",
        SOON,
    );
    sb.systemctl_ok(&["stop", "dbus.service"]);
    assert_eq!(hub.delete("/api/apps/after-bus").await.status(), 204);
    assert_eq!(
        sb.property("lookout-app-after-bus.service", "LoadState"),
        "not-found"
    );

    // An app systemd will not stop keeps its unit file and says why.
    let stubborn = sb.unit_dir().join("lookout-app-stubborn.service");
    std::fs::write(
        &stubborn,
        "[Unit]\nRefuseManualStop=yes\n[Service]\nExecStart=/bin/sleep 600\n",
    )
    .unwrap();
    sb.systemctl_ok(&["daemon-reload"]);
    sb.systemctl_ok(&["start", "lookout-app-stubborn.service"]);
    let r = hub.delete("/api/apps/stubborn").await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_client_error() || status == 503, "{status} {body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("kept")
            || body["fields"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("kept"),
        "{body}"
    );
    assert!(stubborn.exists(), "the unit file is kept");
    assert_eq!(
        sb.property("lookout-app-stubborn.service", "ActiveState"),
        "active"
    );
    // Both outcomes are in the audit log, the failure with its reason.
    let audit = hub.get_json("/api/v1/audit").await;
    let entries: Vec<(String, String)> = audit
        .as_array()
        .or_else(|| audit["entries"].as_array())
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "app.delete")
        .map(|e| {
            (
                e["outcome"].as_str().unwrap_or_default().to_owned(),
                e["target"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        entries
            .iter()
            .any(|(o, t)| o == "ok" && t == "lookout-app-after-bus.service"),
        "{entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|(o, t)| o == "failed" && t.starts_with("lookout-app-stubborn.service (")),
        "{entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_services_are_ordinary_units_written_by_lookout() {
    let sb = SystemdSandbox::start();
    let hub = hub_in(&sb);
    let port = free_port_in(3000..10000);
    let unit_file = sb.unit_dir().join("lookout-app-demo.service");

    // Invalid input writes nothing.
    let r = hub
        .post_json(
            "/api/apps",
            &json!({"name": "demo", "command": "python3 -m http.server"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(!unit_file.exists());

    let r = hub
        .post_json(
            "/api/apps",
            &json!({"name": "demo", "description": "Demo app",
                    "command": ["/usr/bin/python3", "-m", "http.server", port.to_string(), "--bind", "127.0.0.1"],
                    "working_directory": "/tmp", "environment": {"GREETING": "hello $USER"},
                    "port": port, "health_endpoint": "/", "check_interval_secs": 1}),
        )
        .await;
    let status = r.status();
    let app: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["unit"], "lookout-app-demo.service");
    assert_eq!(app["status"], "configured");
    let text = std::fs::read_to_string(&unit_file).unwrap();
    assert!(
        text.contains("Environment=\"GREETING=hello $USER\""),
        "{text}"
    );
    sb.wait_for("lookout-app-demo.service", "ActiveState", "active", SOON);
    let id = app["id"].as_i64().unwrap();
    hub.wait_for_service(id, SOON, |s| s["health_status"] == "healthy")
        .await;
    let env = sb.systemctl_ok(&[
        "show",
        "lookout-app-demo.service",
        "-p",
        "Environment",
        "--value",
    ]);
    assert!(
        env.contains("GREETING=hello") && env.contains("$USER") && !env.contains("$$"),
        "{env}"
    );

    // A second app with the same name is a conflict.
    let r = hub
        .post_json(
            "/api/apps",
            &json!({"name": "demo", "command": ["/bin/true"]}),
        )
        .await;
    assert_eq!(r.status(), 409);

    assert_eq!(hub.delete("/api/apps/demo").await.status(), 204);
    assert!(!unit_file.exists());
    assert_eq!(
        sb.property("lookout-app-demo.service", "LoadState"),
        "not-found"
    );
    assert_eq!(hub.get(&format!("/api/services/{id}")).await.status(), 404);
    assert_eq!(hub.delete("/api/apps/demo").await.status(), 404);

    // Deleting an app's service, from the dashboard or the API, deletes the
    // app: stopped, its unit file gone, nothing left running.
    for (name, from_dashboard) in [("viaform", true), ("viaapi", false)] {
        let r = hub
            .post_json(
                "/api/apps",
                &json!({"name": name, "command": ["/bin/sleep", "1000"]}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        let unit = format!("lookout-app-{name}.service");
        sb.wait_for(&unit, "ActiveState", "active", SOON);
        let status = if from_dashboard {
            hub.post_form::<&str, &str>(&format!("/services/{id}/delete"), &[])
                .await
                .status()
                .as_u16()
        } else {
            hub.delete(&format!("/api/services/{id}"))
                .await
                .status()
                .as_u16()
        };
        assert!([204, 303].contains(&status), "{name}: {status}");
        assert!(
            !sb.unit_dir().join(&unit).exists(),
            "{name}: unit file left"
        );
        assert_eq!(sb.property(&unit, "LoadState"), "not-found", "{name}");
        assert_eq!(hub.get(&format!("/api/services/{id}")).await.status(), 404);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_scan_uses_the_same_code_path() {
    let sb = SystemdSandbox::start();
    let port = free_port_in(3000..10000);
    sb.write_unit(
        "cli-web.service",
        &format!("[Service]\nExecStart={}\n", http_server(port)),
    );
    let long = "a-service-with-a-rather-long-name-for-its-unit-file.service";
    sb.write_unit(long, "[Service]\nExecStart=/bin/sleep 1000\n");
    sb.write_unit(
        "cli-tick.service",
        "[Service]\nType=oneshot\nExecStart=/bin/true\n",
    );
    sb.write_unit("cli-tick.timer", "[Timer]\nOnCalendar=*-*-* 04:00:00\n");
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "cli-web.service", long, "cli-tick.timer"]);
    wait_for_port(port);
    let out = sb
        .command(BIN)
        .args(["scan", "--systemd", "user", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let web = scan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cli-web.service")
        .unwrap();
    assert_eq!(web["status"], "discovered");
    assert_eq!(web["port"], port);
    let table = sb
        .command(BIN)
        .args(["scan", "--systemd", "user"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("cli-web.service"))
        .unwrap();
    assert!(
        line.contains("discovered") && line.contains(&port.to_string()),
        "{line}"
    );
    // Columns are as wide as their widest cell: a long name does not push
    // its row out of line.
    let active_at = table.lines().next().unwrap().find("ACTIVE").unwrap();
    let row = table.lines().find(|l| l.starts_with(long)).unwrap();
    assert!(row[active_at..].starts_with("active "), "{table}");
    // Timers show their last and next run.
    let header = table.lines().find(|l| l.starts_with("TIMER")).unwrap();
    assert!(
        header.contains("LAST RUN") && header.contains("NEXT RUN"),
        "{header}"
    );
    let tick = table
        .lines()
        .find(|l| l.starts_with("cli-tick.timer"))
        .unwrap();
    assert!(tick.contains(":00 UTC"), "{tick}");
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_unreachable_gives_503_and_a_banner_not_a_crash() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--systemd", "user"])
        .arg("--data-dir")
        .arg(data.path())
        .env("XDG_RUNTIME_DIR", "/nonexistent")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let hub = spawn_hub_process(cmd, data);
    let r = hub.post("/api/scan").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "service_unavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the systemd user manager"),
        "{body}"
    );
    assert_eq!(hub.post("/api/services/x/start").await.status(), 503);
    let r = hub.get("/scan").await;
    assert_eq!(r.status(), 503);
    let html = r.text().await.unwrap();
    assert!(
        html.contains(r#"id="scan-error""#)
            && html.contains("cannot reach the systemd user manager")
    );
    assert!(html.contains(r#"id="retry""#));
    // The hub said so once, in a sentence with the flags that help (its
    // follower tries again a second later, and again after that).
    let told = || -> Vec<String> {
        hub.log_lines()
            .into_iter()
            .filter(|l| l.contains("systemd cannot be reached on this machine"))
            .collect()
    };
    tokio::time::sleep(Duration::from_secs(4)).await; // asserting "only once" needs a window
    let told = told();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("--systemd none"), "{}", told[0]);
    // The rest of the hub keeps working.
    assert_eq!(hub.get("/").await.status(), 200);
    hub.create_service(json!({"name": "still works"})).await;
    assert_eq!(hub.get("/api/scan").await.status(), 404, "no scan has run");
}

/// A unit file is enabled and disabled as `systemctl enable` and `disable`
/// do (its `[Install]` links, then a reload), through the API and the service
/// page's buttons; a unit without `[Install]` and the bus are refused with
/// the reason and left as they were; every attempt is audited.
#[tokio::test(flavor = "multi_thread")]
async fn unit_files_are_enabled_and_disabled_as_systemctl_does() {
    let sb = SystemdSandbox::start();
    sb.write_unit(
        "at-boot.service",
        "[Unit]\nDescription=At boot\n[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=default.target\n",
    );
    sb.write_unit(
        "plain.service",
        "[Unit]\nDescription=Started by others\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    sb.daemon_reload();
    let hub = hub_in(&sb);
    let is_enabled = |unit: &str| {
        String::from_utf8_lossy(&sb.systemctl(&["is-enabled", unit]).stdout)
            .trim()
            .to_owned()
    };
    assert_eq!(is_enabled("at-boot.service"), "disabled");

    let r = hub.post("/api/services/at-boot.service/enable").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["unit_file_state"], "enabled", "{body}");
    assert_eq!(is_enabled("at-boot.service"), "enabled");
    assert!(sb
        .unit_dir()
        .join("default.target.wants/at-boot.service")
        .exists());

    // The service page offers the one that applies, and its button works.
    let scan: Value = hub.post("/api/scan").await.json().await.unwrap();
    let id = find(&scan["services"], "at-boot.service")["id"]
        .as_i64()
        .unwrap();
    let page = hub.get_text(&format!("/services/{id}")).await;
    assert!(page.contains("id=\"unit-disable\""), "{page}");
    assert!(!page.contains("id=\"unit-enable\""));
    let r = hub
        .post_form(
            &format!("/control/{id}/disable?back=service"),
            lookout_testkit::NO_FIELDS,
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("/services/{id}"));
    assert_eq!(is_enabled("at-boot.service"), "disabled");
    let page = hub.get_text(&format!("/services/{id}")).await;
    assert!(page.contains("id=\"unit-enable\""));

    // Refused, with the reason, and nothing changed.
    for (path, why) in [
        ("/api/services/plain.service/enable", "no [Install] section"),
        (
            "/api/services/dbus.service/disable",
            "lookout needs it running",
        ),
    ] {
        let r = hub.post(path).await;
        assert_eq!(r.status(), 409, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["fields"][0]["message"].as_str().unwrap().contains(why),
            "{path}: {body}"
        );
    }
    assert_eq!(is_enabled("plain.service"), "static");

    let audit = hub.get_json("/api/v1/audit").await;
    let entries: Vec<String> = audit
        .as_array()
        .or_else(|| audit["entries"].as_array())
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap_or("").starts_with("unit."))
        .map(|e| format!("{} {} {}", e["action"], e["outcome"], e["target"]))
        .collect();
    for expected in [
        "\"unit.enable\" \"ok\" \"at-boot.service (enabled)\"",
        "\"unit.disable\" \"ok\" \"at-boot.service (disabled)\"",
    ] {
        assert!(entries.iter().any(|e| e == expected), "{entries:#?}");
    }
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("\"unit.enable\" \"failed\" \"plain.service")),
        "{entries:#?}"
    );
}

/// Units are watched by pattern (`--watch`): every unit whose name matches,
/// and the service a matching timer starts, is registered once a scan finds
/// it, also one that appears later; the others stay discovered.
#[tokio::test(flavor = "multi_thread")]
async fn units_matching_a_watched_pattern_are_registered_when_found() {
    let sb = SystemdSandbox::start();
    for unit in ["web-shop.service", "other.service", "backup-photos.service"] {
        sb.write_unit(unit, "[Service]\nExecStart=/bin/sleep 1000\n");
    }
    sb.write_unit(
        "backup-photos.timer",
        "[Timer]\nOnCalendar=daily\nUnit=backup-photos.service\n",
    );
    sb.daemon_reload();
    sb.systemctl_ok(&[
        "start",
        "web-shop.service",
        "other.service",
        "backup-photos.timer",
    ]);
    // Loaded, so that a scan lists it: what the timer starts.
    sb.systemctl_ok(&["start", "backup-photos.service"]);
    let hub = hub_in_with(&sb, &["--watch", "web-*.service,backup-*.timer"]);
    let configured = || async {
        let list = hub.get_json("/api/services").await;
        let mut names: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["unit"].is_string())
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let started = std::time::Instant::now();
    while configured().await.len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        configured().await,
        ["backup-photos.service", "web-shop.service"]
    );

    // One that appears later is registered at the scan that finds it.
    sb.write_unit("web-blog.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "web-blog.service"]);
    let r = hub.post("/api/scan").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        configured().await,
        [
            "backup-photos.service",
            "web-blog.service",
            "web-shop.service"
        ]
    );
    let all = hub.get_json("/api/services?status=all").await;
    assert_ne!(find(&all, "other.service")["status"], "configured");

    // A bad pattern stops the hub at start with a one-line reason.
    let out = sb
        .command(BIN)
        .args(["serve", "--systemd", "user", "--watch", "web service"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("watch"), "{err}");
}

/// A unit's journal is followed as it is written: each new entry is a `log`
/// server-sent event; an unknown unit is 404 like its status.
#[tokio::test(flavor = "multi_thread")]
async fn a_units_journal_is_followed_as_it_is_written() {
    let sb = SystemdSandbox::start();
    sb.write_unit(
        "ticker.service",
        "[Service]\nExecStart=/bin/sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done'\n",
    );
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "ticker.service"]);
    let hub = hub_in(&sb);
    let mut stream = lookout_testkit::SseClient::connect(
        &hub.client,
        &hub.url("/api/services/ticker.service/logs/follow"),
        None,
    )
    .await;
    let first = stream.wait_for(SOON, |m| m.event == "log").await;
    let n = |m: &lookout_testkit::SseMessage| -> u64 {
        m.data["message"]
            .as_str()
            .unwrap()
            .strip_prefix("tick ")
            .unwrap()
            .parse()
            .unwrap()
    };
    let first_n = n(&first);
    assert!(first.data["time"].is_string(), "{:?}", first.data);
    // Later lines follow, each once, in order.
    for next in first_n + 1..=first_n + 3 {
        let m = stream.wait_for(SOON, |m| m.event == "log").await;
        assert_eq!(n(&m), next);
    }
    assert_eq!(
        hub.get("/api/services/nosuch.service/logs/follow")
            .await
            .status(),
        404
    );
}
