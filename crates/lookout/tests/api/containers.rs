//! Containers against a real engine: Podman's Docker-compatible API service
//! (Debian's podman, runc and busybox-static), in namespaces of its own.

use std::time::{Duration, Instant};

use lookout_hub::config::ContainerEngine;
use lookout_testkit::podman::IMAGE;
use lookout_testkit::{spawn_hub_with, Podman, TestHub, NO_FIELDS};
use serde_json::{json, Value};

/// A web server with a published port, a health check that fetches its
/// page, and Compose's labels; it writes a line to stdout and one to
/// stderr as it starts.
fn run_web(podman: &Podman) {
    podman.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1:18080:80",
        "--label",
        "com.docker.compose.project=home",
        "--label",
        "com.docker.compose.service=web",
        "--health-cmd",
        "wget -q -O- http://127.0.0.1/ || exit 1",
        "--health-interval=0",
        "--health-retries=1",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo web-started; echo web-warming-up >&2; \
         httpd -f -p 80 -h /www & wait",
    ]);
}

/// A worker of the same project, without ports or health check.
fn run_worker(podman: &Podman) {
    podman.ok(&[
        "run",
        "-d",
        "--name",
        "worker",
        "--label",
        "com.docker.compose.project=home",
        "--label",
        "com.docker.compose.service=worker",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do echo tick; sleep 1 & wait; done",
    ]);
}

async fn hub_on(podman: &Podman) -> TestHub {
    let socket = podman.socket();
    spawn_hub_with(move |c| {
        c.containers = ContainerEngine::Socket(socket.clone());
        c.usage.every = Some(Duration::from_secs(1));
    })
    .await
}

async fn container(hub: &TestHub, name: &str) -> Value {
    let list = hub.get_json("/api/containers").await;
    list["containers"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no container {name} in {list}"))
}

async fn wait_for_container(
    hub: &TestHub,
    name: &str,
    deadline: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let until = Instant::now() + deadline;
    loop {
        let list = hub.get_json("/api/containers").await;
        let found = list["containers"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or(Value::Null);
        if done(&found) {
            return found;
        }
        assert!(
            Instant::now() < until,
            "container {name} did not get there in {deadline:?}: {found}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_are_found_followed_controlled_and_their_logs_shown() {
    let podman = Podman::start();
    run_web(&podman);
    run_worker(&podman);
    let hub = hub_on(&podman).await;

    // Discovery: state, health check, restarts, ports, image, Compose labels.
    let web = wait_for_container(&hub, "web", Duration::from_secs(10), |c| !c.is_null()).await;
    assert_eq!(web["state"], "running", "{web}");
    assert_eq!(web["image"], IMAGE);
    assert_eq!(web["compose_project"], "home");
    assert_eq!(web["compose_service"], "web");
    assert_eq!(web["restarts"], 0);
    assert_eq!(
        web["ports"],
        json!([{"host_ip": "127.0.0.1", "host_port": 18080, "container_port": 80, "protocol": "tcp"}])
    );
    assert_eq!(web["health"], "starting", "no check has run yet: {web}");
    assert_eq!(
        web["registry_status"], "raw",
        "18080 is not a web port: {web}"
    );
    let worker = container(&hub, "worker").await;
    assert_eq!(worker["compose_service"], "worker");
    assert!(worker.get("health").is_none(), "{worker}");

    // The engine's restarts are counted: a container that keeps failing is
    // restarted twice by its policy, then stays down with its exit code.
    podman.ok(&[
        "run",
        "-d",
        "--name",
        "crasher",
        "--restart",
        "on-failure:2",
        IMAGE,
        "sh",
        "-c",
        "echo crashing; exit 3",
    ]);
    let crasher = wait_for_container(&hub, "crasher", Duration::from_secs(10), |c| {
        c["restarts"] == 2 && c["state"] == "exited"
    })
    .await;
    assert_eq!(crasher["exit_code"], 3, "{crasher}");

    // Registered like a unit: a service of its name.
    let created = hub.create_service(json!({"name": "web"})).await;
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["container"]["name"], "web", "{created}");
    assert_eq!(container(&hub, "web").await["service_id"], id);

    // Its health check, run by the engine, is followed: healthy is OK.
    podman.ok(&["healthcheck", "run", "web"]);
    let s = hub
        .wait_for_service(id, Duration::from_secs(5), |s| s["state"] == "OK")
        .await;
    assert_eq!(s["state_reason"], "the container is running and healthy");

    // What it uses, from its cgroup (its main process's), as a unit's.
    // The user managers of other tests' systemd sandboxes sit at the root of
    // this machine's cgroup tree and may pull its processes back to the root
    // of the v1 `memory` and `pids` controllers (a test machine's artifact:
    // on a host, the engine's cgroups keep them). Where they did, the hub
    // gives no figure for that controller rather than the emptied cgroup's:
    // both are asserted, as the kernel places the container at the time.
    let pid = podman.ok(&["inspect", "web", "--format", "{{.State.Pid}}"]);
    let placed = |controller: &str| {
        std::fs::read_to_string(format!("/proc/{}/cgroup", pid.trim()))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&format!(":{controller}:/libpod")))
    };
    let until = Instant::now() + Duration::from_secs(10);
    let usage = loop {
        let usage = hub.get_json(&format!("/api/services/{id}/usage")).await;
        let now = &usage["now"];
        // Its CPU takes two readings; its shell and httpd are two tasks.
        let tasks_ok = if placed("pids") {
            now["tasks"].as_u64() >= Some(2)
        } else {
            now["tasks"].is_null()
        };
        let memory_ok = if placed("memory") {
            now["memory_bytes"]
                .as_u64()
                .is_some_and(|m| m > 0 && m < 256 << 20)
        } else {
            now["memory_bytes"].is_null()
        };
        if now["cpu_percent"].is_number() && tasks_ok && memory_ok {
            break usage;
        }
        assert!(
            Instant::now() < until,
            "no usage for the container (memory placed: {}, pids placed: {}): {usage}",
            placed("memory"),
            placed("pids")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        usage["now"]["cpu_seconds_total"].as_f64() > Some(0.0),
        "{usage}"
    );
    let page = hub.get_text(&format!("/services/{id}")).await;
    assert!(page.contains("Resource usage"), "{page}");
    // A threshold on it, without a URL: judged on its usage, and cleared.
    let set = |conditions: Value| {
        let hub = &hub;
        async move {
            let r = hub
                .put_json(
                    &format!("/api/services/{id}"),
                    &json!({"conditions": conditions, "check_interval_secs": 1}),
                )
                .await;
            assert_eq!(r.status(), 200);
        }
    };
    set(json!(["[CPU_PERCENT] > 1000"])).await;
    let s = hub
        .wait_for_service(id, Duration::from_secs(10), |s| s["state"] == "FAILURE")
        .await;
    assert_eq!(s["check_kind"], "usage", "{s}");
    assert!(
        s["state_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("[CPU_PERCENT] > 1000: was "),
        "{s}"
    );
    set(Value::Null).await;
    hub.wait_for_service(id, Duration::from_secs(10), |s| s["state"] == "OK")
        .await;

    // Stopped from outside lookout: FAILURE within 2 s.
    podman.ok(&["stop", "--time", "5", "web"]);
    let stopped = Instant::now();
    let s = hub
        .wait_for_service(id, Duration::from_secs(2), |s| s["state"] == "FAILURE")
        .await;
    assert!(stopped.elapsed() < Duration::from_secs(2));
    eprintln!(
        "stopped from outside: FAILURE after {:?}",
        stopped.elapsed()
    );
    assert_eq!(
        s["state_reason"], "the container is exited (exit code 0)",
        "{s}"
    );
    assert_eq!(s["container"]["state"], "exited");

    // Restarted from the dashboard's button: OK again, and audited.
    let answer = hub
        .post_form(&format!("/control/{id}/restart?back=service"), NO_FIELDS)
        .await;
    assert!(
        answer.status().is_redirection() || answer.status().is_success(),
        "{}",
        answer.status()
    );
    podman.ok(&["healthcheck", "run", "web"]);
    hub.wait_for_service(id, Duration::from_secs(5), |s| s["state"] == "OK")
        .await;
    let audit = hub.get_json("/api/v1/audit").await;
    assert!(
        audit.to_string().contains("container.restart"),
        "the restart is in the audit log: {audit}"
    );

    // Its logs, stdout and stderr, through the service and by name, and on
    // the logs page.
    let logs = hub
        .get_json(&format!("/api/services/{id}/logs?lines=50"))
        .await;
    let text = logs["lines"].to_string();
    assert!(
        text.contains("web-started") && text.contains("web-warming-up"),
        "{logs}"
    );
    assert_eq!(logs["unit"], "container web");
    let by_name = hub.get_json("/api/containers/worker/logs?lines=5").await;
    assert!(by_name["lines"].to_string().contains("tick"), "{by_name}");
    let page = hub.get_text(&format!("/logs/{id}")).await;
    assert!(page.contains("web-warming-up"), "{page}");

    // An unhealthy health check shows with its output.
    podman.ok(&["exec", "web", "rm", "/www/index.html"]);
    let failed = podman.run(&["healthcheck", "run", "web"]);
    assert!(!failed.status.success());
    let s = hub
        .wait_for_service(id, Duration::from_secs(5), |s| s["state"] == "FAILURE")
        .await;
    let reason = s["state_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("the container's health check fails: ") && reason.contains("404"),
        "{s}"
    );
    assert_eq!(s["container"]["health"], "unhealthy");
    let page = hub.get_text(&format!("/services/{id}")).await;
    let output = page
        .split("id=\"container-health-output\">")
        .nth(1)
        .unwrap_or_default();
    assert!(
        output.contains("404"),
        "the service page shows the output: {page}"
    );
    assert!(page.contains("id=\"container-restart\""));

    // The scan page and the dashboard group by Compose project.
    let scan = hub.get_text("/scan").await;
    let home = scan
        .split("data-project=\"home\"")
        .nth(1)
        .unwrap_or_default();
    assert!(
        home.contains("data-container=\"web\"") && home.contains("data-container=\"worker\""),
        "{scan}"
    );
    let dashboard = hub.get_text("/?group=compose").await;
    assert!(dashboard.contains("data-compose=\"home\""), "{dashboard}");

    // Removed: the service says so; the raw worker goes with a clean-up.
    podman.ok(&["rm", "--force", "--time", "0", "worker"]);
    let gone = wait_for_container(&hub, "worker", Duration::from_secs(5), Value::is_null).await;
    assert!(gone.is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn container_requests_are_checked_and_refused_clearly() {
    let hub = spawn_hub_with(|_| {}).await;
    // No engine: a clear 404, not an empty list.
    let r = hub.get("/api/containers").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--containers"),
        "{body}"
    );

    let podman = Podman::start();
    let hub = hub_on(&podman).await;
    for (path, field) in [
        ("/api/containers/-bad/restart", "name"),
        ("/api/containers/a%20b/stop", "name"),
    ] {
        let r = hub.post(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["fields"][0]["field"], field, "{body}");
    }
    let r = hub.post("/api/containers/nothing-here/start").await;
    assert_eq!(r.status(), 404);
    let r = hub.get("/api/containers/nothing-here/logs").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_reports_its_hosts_containers() {
    use super::agents::{provision, register_cmd, wait_server, Agent};
    let podman = Podman::start();
    run_web(&podman);
    run_worker(&podman);
    let hub = spawn_hub_with(|c| c.agents.heartbeat = Duration::from_secs(1)).await;
    let root = tempfile::tempdir().expect("temp dir");
    let credentials = root.path().join("agent.json");
    let claim = provision(&hub, "box").await;
    let out = register_cmd(&hub.url(""), &claim, &credentials)
        .output()
        .expect("register");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No systemd answers this agent: its scan is the containers alone.
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"));
    run.args([
        "agent",
        "run",
        "--user",
        "--allow-control",
        "container:worker",
        "--usage-every",
        "1s",
    ])
    .arg("--containers")
    .arg(podman.socket())
    .arg("--credentials")
    .arg(&credentials)
    .env("XDG_CONFIG_HOME", root.path().join("config"))
    .env("XDG_STATE_HOME", root.path().join("state"))
    .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
    .env_remove("XDG_RUNTIME_DIR");
    let agent = Agent::spawn(run, root.path());
    let server = wait_server(&hub, "box", |s| s["online"] == true).await;
    let id = server["id"].as_i64().expect("id");
    let until = Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let detail = hub.get_json(&format!("/api/v1/servers/{id}")).await;
        if detail["scan"]["containers"]
            .as_array()
            .is_some_and(|l| l.len() == 2)
        {
            break detail;
        }
        assert!(
            Instant::now() < until,
            "no containers: {detail} {}",
            agent.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let web = &detail["scan"]["containers"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["compose_project"], "home");
    assert_eq!(web["ports"][0]["host_port"], 18080);

    // What its containers use, from their cgroups, on the host's page.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let page = hub.get("/hosts/box").await;
        let page = if page.status() == 200 {
            page.text().await.unwrap_or_default()
        } else {
            String::new()
        };
        let row = page
            .split("<tr>")
            .find(|r| r.contains("container web"))
            .unwrap_or_default();
        if row.contains("KiB") || row.contains("MiB") {
            break;
        }
        assert!(
            Instant::now() < until,
            "no container usage on the host page: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Followed live: a container stopped on the host reaches the hub within
    // moments, not at the next minutely scan.
    podman.ok(&["stop", "--time", "5", "worker"]);
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let detail = hub.get_json(&format!("/api/v1/servers/{id}")).await;
        if detail["scan"]["containers"][1]["state"] == "exited" {
            break;
        }
        assert!(Instant::now() < until, "not followed: {detail}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The hub starts it again through the agent, which its allow-list
    // permits, and nothing it does not name.
    let r = hub
        .post_json(
            &format!("/api/v1/servers/{id}/control"),
            &json!({"action": "start", "target": "container:worker"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(
        podman.ok(&["inspect", "worker", "--format", "{{.State.Status}}"]),
        "running"
    );
    let r = hub
        .post_json(
            &format!("/api/v1/servers/{id}/control"),
            &json!({"action": "stop", "target": "container:web"}),
        )
        .await;
    assert_eq!(r.status(), 403, "not in the allow-list");
    let r = hub
        .post_json(
            &format!("/api/v1/servers/{id}/control"),
            &json!({"action": "stop", "target": "container:-x"}),
        )
        .await;
    assert_eq!(r.status(), 422, "checked at the hub first");
    assert_eq!(
        podman.ok(&["inspect", "web", "--format", "{{.State.Status}}"]),
        "running"
    );

    // The server's page shows them by Compose project.
    let page = hub.get_text(&format!("/servers/{id}")).await;
    assert!(page.contains("Containers on this host"), "{page}");
    assert!(page.contains("data-container=\"web\"") && page.contains("Compose project"));
    assert!(page.contains("127.0.0.1:18080→80/tcp"));
    // As a person sees it: desktop, phone, dark.
    {
        use super::browser::{assert_no_sideways_scroll, dark_screenshot, screenshot};
        let browser = lookout_testkit::Browser::start().await;
        let c = &browser.client;
        c.goto(&hub.url(&format!("/servers/{id}")))
            .await
            .expect("goto");
        screenshot(c, "containers-server-desktop").await;
        c.set_window_size(390, 844).await.expect("size");
        assert_no_sideways_scroll(c).await;
        c.execute(
            "document.querySelector('table.containers').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll");
        screenshot(c, "containers-server-phone").await;
        dark_screenshot(
            &hub.url(&format!("/servers/{id}")),
            "containers-server-dark",
        );
        browser.close().await;
    }

    // From the shell: `lookout containers` lists them by project.
    let bin = env!("CARGO_BIN_EXE_lookout");
    let out = std::process::Command::new(bin)
        .args(["containers", "--containers"])
        .arg(podman.socket())
        .output()
        .expect("lookout containers");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web_line = table
        .lines()
        .find(|l| l.contains(" web "))
        .unwrap_or_default();
    assert!(
        web_line.starts_with("home") && web_line.contains("127.0.0.1:18080→80/tcp"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("worker") && l.contains("running")),
        "{table}"
    );
    let out = std::process::Command::new(bin)
        .args(["containers", "--json", "--containers"])
        .arg(podman.socket())
        .output()
        .expect("lookout containers --json");
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed[0]["name"], "web");
    // A socket nobody serves: one line naming it, and a failing exit.
    let out = std::process::Command::new(bin)
        .args(["containers", "--containers", "/nonexistent/engine.sock"])
        .output()
        .expect("lookout containers");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(said.trim_end().lines().count(), 1, "{said}");
    assert!(said.contains("/nonexistent/engine.sock"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn self_healing_restarts_a_stopped_container() {
    let podman = Podman::start();
    run_worker(&podman);
    let hub = hub_on(&podman).await;
    wait_for_container(&hub, "worker", Duration::from_secs(10), |c| !c.is_null()).await;
    let created = hub
        .create_service(json!({
            "name": "worker",
            "check_interval_secs": 1,
            "heal": {"after": 1, "max_per_hour": 3},
        }))
        .await;
    let id = created["id"].as_i64().expect("id");
    hub.wait_for_service(id, Duration::from_secs(5), |s| s["state"] == "OK")
        .await;
    // Stopped on the host: the healer restarts it through the same door as
    // a person's button, and the audit log names it.
    podman.ok(&["stop", "--time", "5", "worker"]);
    hub.wait_for_service(id, Duration::from_secs(5), |s| s["state"] == "FAILURE")
        .await;
    let s = hub
        .wait_for_service(id, Duration::from_secs(10), |s| s["state"] == "OK")
        .await;
    assert_eq!(s["container"]["state"], "running", "{s}");
    // The audit entry is written once the restart is done, so it may
    // follow the new state by a moment.
    let until = Instant::now() + Duration::from_secs(5);
    let entry = loop {
        let audit = hub.get_json("/api/v1/audit").await;
        let found = audit.as_array().and_then(|a| {
            a.iter()
                .find(|e| e["action"] == "container.restart")
                .cloned()
        });
        if let Some(entry) = found {
            break entry;
        }
        assert!(Instant::now() < until, "no restart audited: {audit}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry["actor"], "self-healing", "{entry}");
}
