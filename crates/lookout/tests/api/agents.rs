//! A real hub and real agent processes: a check installed with `lookout
//! check add` in a systemd user manager reports through `lookout agent run`
//! to the hub's API and event stream; results survive a hub outage and a
//! log rotation exactly once; bad, revoked and reused credentials are
//! refused; an agent that goes silent makes its checks UNKNOWN.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lookout_agent::tail::to_utc;
use lookout_proto::check::parse_line;
use lookout_testkit::{free_port_in, spawn_hub_with, SseClient, SystemdSandbox, TestHub};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const SOON: Duration = Duration::from_secs(20);

/// A hub on a fixed port (so a restart keeps its address), agents told to
/// send a heartbeat every second.
async fn hub(port: u16) -> TestHub {
    spawn_hub_with(move |c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.agents.heartbeat = Duration::from_secs(1);
    })
    .await
}

/// The real `lookout serve` binary on a fixed port and data directory, so it
/// can be killed and started again where agents expect it.
fn hub_process(port: u16, data_dir: &Path) -> TestHub {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--systemd", "none", "--agent-heartbeat", "1s"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir);
    lookout_testkit::spawn_hub_process(cmd, tempfile::tempdir().unwrap())
}

/// `POST /api/v1/agents/register`: the claim token of a new server.
pub(crate) async fn provision(hub: &TestHub, name: &str) -> String {
    let r = hub
        .post_json(
            "/api/v1/agents/register",
            &json!({"server_name": name, "labels": ["test"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    body["claim_token"].as_str().unwrap().to_owned()
}

/// An agent process; killed when dropped.
pub(crate) struct Agent(Child, PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Agent {
    pub(crate) fn spawn(mut cmd: Command, dir: &Path) -> Agent {
        let log = dir.join(format!("agent-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Agent(child, log)
    }

    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    /// Waits for the process to exit; its status.
    pub(crate) async fn exited(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "agent still running: {}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `lookout check add --user` of a script written to the sandbox as `file`.
fn add_check(sb: &SystemdSandbox, file: &str, script: &str) {
    let path = sb.dir().join(file);
    std::fs::write(&path, script).unwrap();
    let added = sb
        .command(BIN)
        .args(["check", "add", "--user"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&added.stderr);
    assert!(added.status.success(), "{said}");
}

/// `lookout agent register --user` inside the sandbox.
fn register_in(sb: &SystemdSandbox, hub: &str, claim: &str) -> Command {
    let mut c = sb.command(BIN);
    c.args([
        "agent",
        "register",
        "--user",
        "--hub",
        hub,
        "--claim-token",
        claim,
    ]);
    c
}

/// `lookout agent run --user --no-scan` for a host whose checks live under
/// `root` (as `write_check_files` lays them out).
pub(crate) fn agent_cmd(root: &Path, credentials: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["agent", "run", "--user", "--no-scan"])
        .arg("--credentials")
        .arg(credentials)
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("XDG_STATE_HOME", root.join("state"));
    c
}

/// `lookout agent register` with a claim token, credentials to `credentials`.
pub(crate) fn register_cmd(hub: &str, claim: &str, credentials: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["agent", "register", "--hub", hub, "--claim-token", claim])
        .arg("--credentials")
        .arg(credentials);
    c
}

/// The (time, ordinal) of every result line in `files`, as the agent counts them.
pub(crate) fn keys_in(files: &[PathBuf]) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut counts = std::collections::HashMap::new();
    for file in files {
        for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
            let Ok(parsed) = parse_line(line) else {
                continue;
            };
            let at = to_utc(parsed.time).unwrap();
            let seen = counts.entry(at).or_insert(0u32);
            out.push((at.to_rfc3339(), *seen));
            *seen += 1;
        }
    }
    out
}

pub(crate) async fn results_of(hub: &TestHub, service: i64) -> Vec<(String, u32)> {
    let list = hub
        .get_json(&format!("/api/services/{service}/results?limit=10000"))
        .await;
    let mut keys: Vec<(String, u32)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let at: chrono::DateTime<chrono::Utc> = r["at"].as_str().unwrap().parse().unwrap();
            (
                at.to_rfc3339(),
                u32::try_from(r["ordinal"].as_u64().unwrap()).unwrap(),
            )
        })
        .collect();
    keys.reverse();
    keys
}

/// Waits until the hub holds exactly the results in `files`.
async fn wait_in_sync(hub: &TestHub, service: i64, files: &[PathBuf]) -> usize {
    let until = tokio::time::Instant::now() + SOON;
    loop {
        let want = keys_in(files);
        let got = results_of(hub, service).await;
        if got == want && !want.is_empty() {
            return want.len();
        }
        assert!(
            tokio::time::Instant::now() < until,
            "hub has {} results, the logs {}:\nhub  {got:?}\nlogs {want:?}",
            got.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn server_named(hub: &TestHub, name: &str) -> Value {
    let servers = hub.get_json("/api/v1/servers").await;
    servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no server {name}: {servers}"))
}

pub(crate) async fn wait_server(hub: &TestHub, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let until = tokio::time::Instant::now() + SOON;
    loop {
        let s = server_named(hub, name).await;
        if pred(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < until, "server stayed {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TICK: &str = r#"#!/bin/bash
# name: Tick
# schedule: *:*:0/2
# timeout: 5
echo "$(date '+%Y-%m-%d %H:%M:%S'), OK, tick, pid $$"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn check_results_reach_the_hub_once_through_outages_and_rotation() {
    let sb = SystemdSandbox::start();
    let port = free_port_in(20000..30000);
    let hub_data = tempfile::tempdir().unwrap();
    let hub = hub_process(port, hub_data.path());
    let mut events = SseClient::connect(&hub.client, &hub.url("/api/events"), None).await;

    // Provision, then register the agent with the one-time claim token.
    let claim = provision(&hub, "sandbox-host").await;
    let hub_url = format!("http://127.0.0.1:{port}");
    let register = || register_in(&sb, &hub_url, &claim);
    let out = register().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let credentials = sb.dir().join("state/lookout/agent.json");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "credentials readable by others");
    // The claim token works once.
    let again = register()
        .arg("--credentials")
        .arg(sb.dir().join("other.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(stderr.contains("refused the claim token (401"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    // A check on a two-second timer, and the agent.
    add_check(&sb, "tick.bash", TICK);
    let mut cmd = sb.command(BIN);
    cmd.args(["agent", "run", "--user"]);
    let agent = Agent::spawn(cmd, sb.dir());

    // The result arrives on the live stream and in the API.
    let event = events
        .wait_for(SOON, |m| m.event == "result" && m.data["check"] == "tick")
        .await;
    assert_eq!(event.data["status"], "OK");
    assert!(event.data["message"]
        .as_str()
        .unwrap()
        .starts_with("tick, pid "));
    let server = wait_server(&hub, "sandbox-host", |s| s["online"] == true).await;
    assert_eq!(server["labels"], json!(["test"]));
    let id = server["id"].as_i64().unwrap();
    let services = hub
        .get_json(&format!("/api/v1/servers/{id}/services"))
        .await;
    let tick = &services[0];
    assert_eq!(tick["name"], "tick@sandbox-host");
    assert_eq!(tick["check"]["name"], "tick");
    assert_eq!(tick["check"]["schedule"], "*:*:0/2");
    let service = tick["id"].as_i64().unwrap();
    hub.wait_for_service(service, SOON, |s| s["state"] == "OK")
        .await;
    // Prometheus sees the agent, its results and their lag, and the check
    // as a service of its server.
    use super::prometheus::wait_for_metric;
    assert_eq!(
        wait_for_metric(&hub, "lookout_agents_connected", &[]).await,
        1.0
    );
    let ok = [("source", "agent"), ("status", "OK")];
    assert!(wait_for_metric(&hub, "lookout_checks_total", &ok).await >= 1.0);
    assert!(wait_for_metric(&hub, "lookout_ingestion_lag_seconds_count", &[]).await >= 1.0);
    let labels = [("service", "tick@sandbox-host"), ("server", "sandbox-host")];
    assert_eq!(
        wait_for_metric(&hub, "lookout_service_up", &labels).await,
        1.0
    );
    // The host's systemd scan came along.
    let until = tokio::time::Instant::now() + SOON;
    loop {
        let detail = hub.get_json(&format!("/api/v1/servers/{id}")).await;
        let timers = detail["scan"]["timers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if timers.iter().any(|t| t["name"] == "lookout-tick.timer") {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "no scan: {detail}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The agent follows its host live: a unit started on it, then killed,
    // reaches the server's page within 2 s each time, not at the next
    // minutely scan.
    sb.write_unit(
        "nightly.service",
        "[Service]\nExecStart=/bin/sleep 100000\n",
    );
    sb.daemon_reload();
    let unit_state = |detail: &Value| {
        detail["scan"]["services"]
            .as_array()
            .and_then(|units| units.iter().find(|u| u["name"] == "nightly.service"))
            .map(|u| u["active_state"].as_str().unwrap_or_default().to_owned())
    };
    for (command, expected) in [
        (&["start", "nightly.service"][..], "active"),
        (&["kill", "--signal=KILL", "nightly.service"][..], "failed"),
    ] {
        sb.systemctl_ok(command);
        let changed = std::time::Instant::now();
        loop {
            let detail = hub.get_json(&format!("/api/v1/servers/{id}")).await;
            if unit_state(&detail).as_deref() == Some(expected) {
                break;
            }
            let took = changed.elapsed();
            assert!(
                took < Duration::from_secs(2),
                "{command:?}: the server's scan says {:?} after {took:?}",
                unit_state(&detail)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The hub goes away while the timer keeps firing; nothing is lost.
    let log = sb.dir().join("state/lookout/checks/tick.log");
    let before = keys_in(std::slice::from_ref(&log)).len();
    // SIGKILL: no goodbye to the agent, no clean close of the database.
    let killed = Command::new("kill")
        .args(["-KILL", &hub.pid().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    drop(hub);
    let until = tokio::time::Instant::now() + SOON;
    while keys_in(std::slice::from_ref(&log)).len() < before + 3 {
        if tokio::time::Instant::now() >= until {
            // What systemd says of the timer and its runs, to tell a stalled
            // manager from a failing script.
            let said = |args: &[&str]| {
                let out = sb.systemctl(args);
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)
            };
            panic!(
                "the timer stopped firing: {} results before, {} now\n{}\n{}",
                before,
                keys_in(std::slice::from_ref(&log)).len(),
                said(&["list-timers", "--all", "--no-pager"]),
                said(&["status", "--no-pager", "--full", "lookout-tick.service"]),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hub = hub_process(port, hub_data.path());

    // Rotate the log while the agent follows it.
    let rotated = sb.dir().join("state/lookout/checks/tick.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let until = tokio::time::Instant::now() + SOON;
    while keys_in(std::slice::from_ref(&log)).len() < 2 {
        assert!(
            tokio::time::Instant::now() < until,
            "no new log after rotation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stop the timer, then everything written is at the hub exactly once.
    sb.systemctl_ok(&["stop", "lookout-tick.timer"]);
    let files = [rotated.clone(), log.clone()];
    let n = wait_in_sync(&hub, service, &files).await;
    assert!(n >= before + 5, "{n} results");
    let unique: BTreeSet<_> = results_of(&hub, service).await.into_iter().collect();
    assert_eq!(unique.len(), n, "a result was stored twice");

    // The agent stops: its server goes offline and its check UNKNOWN, not FAILURE.
    drop(agent);
    let server = wait_server(&hub, "sandbox-host", |s| s["online"] == false).await;
    assert_eq!(server["status"], "UNKNOWN");
    let s = hub
        .wait_for_service(service, SOON, |s| s["state"] == "UNKNOWN")
        .await;
    assert_eq!(s["state_reason"], "the agent is offline");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_and_revoked_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_in(20000..30000);
    let hub = hub(port).await;
    let claim = provision(&hub, "host-a").await;
    let credentials = dir.path().join("agent.json");
    let hub_url = format!("http://127.0.0.1:{port}");
    // A plain request to the agents' WebSocket is told what it is, in JSON.
    let r = hub.get("/api/v1/agent/connect").await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("agents' WebSocket"));
    // An unknown claim token.
    let out = register_cmd(&hub_url, "lkc_forged", &credentials)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!credentials.exists(), "nothing written on failure");
    let out = register_cmd(&hub_url, &claim, &credentials)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A wrong key: the agent says so in one line and exits.
    let mut wrong: Value =
        serde_json::from_str(&std::fs::read_to_string(&credentials).unwrap()).unwrap();
    wrong["api_key"] = json!("lkk_wrong");
    let wrong_file = dir.path().join("wrong.json");
    std::fs::write(&wrong_file, wrong.to_string()).unwrap();
    let mut agent = Agent::spawn(agent_cmd(dir.path(), &wrong_file), dir.path());
    let status = agent.exited(SOON).await;
    assert_eq!(status.code(), Some(3), "the exit the unit does not restart");
    assert!(
        agent
            .output()
            .contains("lookout: the hub refused this agent: unknown agent or key"),
        "{}",
        agent.output()
    );

    // The right key works until an admin revokes it: the session is cut and
    // the agent cannot come back.
    let mut agent = Agent::spawn(agent_cmd(dir.path(), &credentials), dir.path());
    let server = wait_server(&hub, "host-a", |s| s["online"] == true).await;
    let id = server["id"].as_i64().unwrap();
    let r = hub.post(&format!("/api/v1/servers/{id}/revoke")).await;
    assert_eq!(r.status(), 200);
    let status = agent.exited(SOON).await;
    assert_eq!(status.code(), Some(3), "the exit the unit does not restart");
    assert!(
        agent.output().contains("the hub refused this agent"),
        "{}",
        agent.output()
    );
    let server = server_named(&hub, "host-a").await;
    assert_eq!(
        (server["revoked"].as_bool(), server["online"].as_bool()),
        (Some(true), Some(false))
    );
    // Both refusals and the revocation are in the audit log.
    let audit = hub.get_json("/api/v1/audit").await.to_string();
    assert!(
        audit.contains("agent.refused") && audit.contains("agent.revoke"),
        "{audit}"
    );
    assert!(!audit.contains("lkk_"), "a key leaked into the audit log");
}

/// A second host's check, as `lookout check add` writes it (script copy and
/// units) and as its timer's runs fill the log (`lookout check exec`), under
/// its own configuration and state directories.
fn second_host(root: &Path) -> PathBuf {
    let log = lookout_testkit::write_check_files(
        root,
        "disk",
        "#!/bin/sh\n# name: Disk\n# schedule: hourly\necho \"$(date '+%Y-%m-%d %H:%M:%S'), WARNING, disk 91%, inodes fine\"\n",
    );
    let script = root.join("config/lookout/checks/disk");
    let run = Command::new(BIN)
        .args(["check", "exec"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(run.status.success());
    std::fs::write(log, &run.stdout).unwrap();
    root.to_path_buf()
}

/// A second network host: a network namespace joined to this one by a veth
/// pair, `10.231.N.1` on this side and `10.231.N.2` inside. Removed on drop.
struct NetHost {
    ns: String,
    veth: String,
    hub_ip: String,
    own_ip: String,
}

impl NetHost {
    fn create() -> NetHost {
        // Each test of this process has its own (tests run side by side).
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let c = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4;
        let pid = std::process::id();
        let n = (pid % 60) * 4 + c + 1;
        let ns = format!("lookout-t{pid}-{c}");
        let veth = format!("lkv{}{c}", pid % 100_000);
        let peer = format!("{veth}p");
        let (hub_ip, own_ip) = (format!("10.231.{n}.1"), format!("10.231.{n}.2"));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &ns]);
        ip(&["addr", "add", &format!("{hub_ip}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{own_ip}/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &ns, "link", "set", &peer, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        NetHost {
            ns,
            veth,
            hub_ip,
            own_ip,
        }
    }

    /// `command` run inside the namespace.
    fn command(&self, command: Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns])
            .arg(command.get_program())
            .args(command.get_args());
        for (k, v) in command.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c
    }
}

/// A hub listening on the link to `net` (without authentication, as
/// --insecure-no-auth-on-network allows), agents told to send a heartbeat
/// every second; its address.
async fn hub_on_link(net: &NetHost) -> (TestHub, std::net::SocketAddr) {
    let port = free_port_in(20000..30000);
    let listen: std::net::SocketAddr = format!("{}:{port}", net.hub_ip).parse().unwrap();
    let hub = spawn_hub_with(move |c| {
        c.listen = listen;
        c.auth.loopback = false;
        c.agents.heartbeat = Duration::from_secs(1);
    })
    .await;
    (hub, listen)
}

impl Drop for NetHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_agents_on_two_network_hosts_are_two_servers() {
    // Host B is a network namespace; the hub listens on the link between
    // them, without authentication, as --insecure-no-auth-on-network allows.
    let net = NetHost::create();
    let (hub, listen) = hub_on_link(&net).await;
    let hub_url = format!("http://{listen}");
    // Host B's agent also runs on a real systemd (the sandbox's user
    // manager) with a service running, and scans it.
    let sb = SystemdSandbox::start();
    sb.write_unit(
        "web-b.service",
        "[Service]\nExecStart=/usr/bin/python3 -c 'import time; b = bytearray(24 << 20); time.sleep(100000)'\n",
    );
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "web-b.service"]);
    let mut agents = Vec::new();
    let mut dirs = Vec::new();
    for name in ["host-a", "host-b"] {
        let dir = tempfile::tempdir().unwrap();
        let root = second_host(if name == "host-b" {
            sb.dir()
        } else {
            dir.path()
        });
        let claim = provision(&hub, name).await;
        let creds = root.join("agent.json");
        let mut run = if name == "host-b" {
            let mut run = sb.command(BIN);
            run.args(["agent", "run", "--user", "--credentials"])
                .arg(&creds);
            run
        } else {
            agent_cmd(&root, &creds)
        };
        run.args(["--usage-every", "1s"]);
        let (register, run) = (register_cmd(&hub_url, &claim, &creds), run);
        let (mut register, run) = if name == "host-b" {
            (net.command(register), net.command(run))
        } else {
            (register, run)
        };
        let out = register.output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        agents.push(Agent::spawn(run, dir.path()));
        dirs.push(dir);
    }
    for name in ["host-a", "host-b"] {
        let s = wait_server(&hub, name, |s| {
            s["online"] == true && s["status"] == "WARNING"
        })
        .await;
        let checks = hub
            .get_json(&format!("/api/v1/servers/{}/services", s["id"]))
            .await;
        assert_eq!(checks.as_array().unwrap().len(), 1);
        assert_eq!(checks[0]["name"], format!("disk@{name}"));
        assert_eq!(checks[0]["check"]["last_message"], "disk 91%, inodes fine");
    }
    let all = hub.get_json("/api/v1/servers").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    // Host B's claim came from its own address.
    let audit = hub.get_json("/api/v1/audit").await;
    let claim_b = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "agent.claim" && e["actor"] == "host-b")
        .cloned()
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(claim_b["client"], net.own_ip.as_str());

    // Each agent sends its host's usage: the hub keeps it under the
    // server's name, lists it among the hosts and gives it a page.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let hosts = loop {
        let hosts = hub.get_json("/api/hosts").await;
        let names: Vec<&str> = hosts
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["host"].as_str())
            .collect();
        if names.contains(&"host-b") && names.contains(&"host-a") {
            break hosts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no usage from the agents: {hosts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let b = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "host-b")
        .unwrap();
    assert_eq!(b["hub"], false);
    assert!(
        b["usage"]["memory_total_bytes"].as_u64().unwrap() > 0,
        "{b}"
    );
    assert!(b["usage"]["uptime_secs"].as_u64().unwrap() > 0, "{b}");
    let series = hub.get_json("/api/hosts/host-b/usage?range=1h").await;
    assert_eq!(series["host"], "host-b");
    // Its units' figures too: the host page lists the running service
    // with its memory (24 MiB held, and the interpreter).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = hub.get_text("/hosts/host-b").await;
        if page.contains("web-b.service") {
            break page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no unit on host B's page: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        page.contains("id=\"host-cpu\"") && page.contains("id=\"chart-cpu\""),
        "{page}"
    );
    let row = page
        .split("<tr>")
        .find(|r| r.contains("web-b.service"))
        .unwrap();
    let memory = row
        .split("data-label=\"Memory\" class=\"figure\">")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{row}"));
    assert!(
        row.contains("MiB") && (24.0..200.0).contains(&memory),
        "about 24 MiB and the interpreter: {row}"
    );
    let list = hub.get_text("/hosts").await;
    assert!(list.contains("data-host=\"host-b\""), "{list}");
    let id = server_named(&hub, "host-b").await["id"].as_i64().unwrap();
    let server = hub.get_text(&format!("/servers/{id}")).await;
    assert!(server.contains("href=\"/hosts/host-b\""), "{server}");
    let metrics = hub.get_text("/metrics").await;
    assert!(
        metrics.contains("lookout_host_memory_total_bytes{host=\"host-b\"}"),
        "{metrics}"
    );
    // Its thresholds, on a host:// service of its name.
    let watch = hub
        .create_service(json!({
            "name": "host-b resources",
            "base_url": "host://host-b",
            "check_interval_secs": 1,
            "conditions": ["[MEMORY_PERCENT] <= 100", "[DISK_PERCENT] < 0.001"],
        }))
        .await;
    let failed = hub
        .wait_for_service(
            watch["id"].as_i64().unwrap(),
            Duration::from_secs(20),
            |s| s["state"] == "FAILURE",
        )
        .await;
    assert!(
        failed["state_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("[DISK_PERCENT] < 0.001: was "),
        "{failed}"
    );
    drop(agents);
    sb.systemctl_ok(&["stop", "web-b.service"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_are_added_and_watched_from_the_dashboard() {
    let port = free_port_in(20000..30000);
    let hub = hub(port).await;
    // A bad name is said next to the form; nothing is created.
    let r = hub
        .post_form("/servers", &[("server_name", "bad@name")])
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("must not contain @ or #"));
    // Adding a server shows the one command its host needs, once.
    let r = hub
        .post_form(
            "/servers",
            &[("server_name", "web-01"), ("labels", "prod, debian")],
        )
        .await;
    assert_eq!(r.status(), 201);
    let page = r.text().await.unwrap();
    let prefix = format!("lookout agent register --hub http://127.0.0.1:{port} --claim-token ");
    let at = page.find(&prefix).unwrap_or_else(|| panic!("{page}"));
    let token: String = page[at + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert!(token.starts_with("lkc_"), "{token}");
    let again = hub.get_text("/servers").await;
    assert!(
        !again.contains(&token),
        "the claim token is shown only once"
    );
    assert!(again.contains("waiting for its agent to register"));

    // The host registers with that command and reports a check.
    let dir = tempfile::tempdir().unwrap();
    let root = second_host(dir.path());
    let creds = root.join("agent.json");
    let out = register_cmd(&format!("http://127.0.0.1:{port}"), &token, &creds)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cmd = agent_cmd(&root, &creds);
    let _agent = Agent::spawn(cmd, dir.path());
    let server = wait_server(&hub, "web-01", |s| s["online"] == true && s["checks"] == 1).await;
    let id = server["id"].as_i64().unwrap();
    let check = hub
        .get_json(&format!("/api/v1/servers/{id}/services"))
        .await[0]
        .clone();
    let service = check["id"].as_i64().unwrap();
    hub.wait_for_service(service, SOON, |s| s["state"] == "WARNING")
        .await;

    let list = hub.get_text("/servers").await;
    assert!(
        list.contains("data-server=\"web-01\"") && list.contains("online"),
        "{list}"
    );
    assert!(list.contains("prod, debian"));
    let detail = hub.get_text(&format!("/servers/{id}")).await;
    assert!(detail.contains("data-check=\"disk\""), "{detail}");
    assert!(
        detail.contains("<strong>WARNING</strong> disk 91%, inodes fine"),
        "{detail}"
    );
    let check_page = hub.get_text(&format!("/services/{service}")).await;
    assert!(check_page.contains("id=\"check-results\""), "{check_page}");
    assert!(check_page.contains(&format!("href=\"/servers/{id}\"")));

    // Revoking from the page cuts the agent off.
    let r = hub
        .post_form(&format!("/servers/{id}/revoke"), lookout_testkit::NO_FIELDS)
        .await;
    assert_eq!(r.status(), 303);
    let server = wait_server(&hub, "web-01", |s| s["online"] == false).await;
    assert_eq!(server["revoked"], true);
    let detail = hub.get_text(&format!("/servers/{id}")).await;
    assert!(detail.contains("key revoked"));
    let r = hub
        .post_form(&format!("/servers/{id}/delete"), lookout_testkit::NO_FIELDS)
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        hub.get(&format!("/api/v1/servers/{id}")).await.status(),
        404
    );
    assert_eq!(
        hub.get(&format!("/api/services/{service}")).await.status(),
        404
    );
}

#[test]
fn the_shipped_agent_unit_is_valid_for_systemd() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packaging/lookout-agent.service"
    ))
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/bin/lookout");
    // The command line it runs is one the binary takes.
    let help = Command::new(BIN)
        .args(&argv[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "{}",
        String::from_utf8_lossy(&help.stderr)
    );
    // systemd's own checker accepts it (pointed at this build of the binary).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout-agent.service");
    std::fs::write(&path, unit.replace("/usr/bin/lookout", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_reaches_an_https_hub_over_wss_trusting_only_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let port = free_port_in(20000..30000);
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--systemd", "none", "--agent-heartbeat", "1s"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--tls-cert")
        .arg(&cert_pem)
        .arg("--tls-key")
        .arg(&key_pem)
        .arg("--data-dir")
        .arg(data.path());
    let hub = lookout_testkit::spawn_hub_process(cmd, tempfile::tempdir().unwrap());
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let r: Value = https
        .post(format!("{base}/api/v1/agents/register"))
        .json(&json!({"server_name": "tls-host"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claim = r["claim_token"].as_str().unwrap();
    let root = second_host(dir.path());
    let creds = root.join("agent.json");
    let register = |ca: Option<&Path>| {
        let mut c = register_cmd(&base, claim, &creds);
        if let Some(ca) = ca {
            c.arg("--ca").arg(ca);
        }
        c.output().unwrap()
    };
    // Without the hub's CA the certificate is not trusted, and the token is not spent.
    let out = register(None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the hub"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = register(Some(&cert_pem));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cmd = agent_cmd(&root, &creds);
    let _agent = Agent::spawn(cmd, dir.path());
    let until = tokio::time::Instant::now() + SOON;
    loop {
        let servers: Value = https
            .get(format!("{base}/api/v1/servers"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if servers[0]["online"] == true && servers[0]["status"] == "WARNING" {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "{servers}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(hub);
}

#[tokio::test(flavor = "multi_thread")]
async fn results_dated_far_ahead_are_refused_and_do_not_freeze_a_check() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let port = free_port_in(20000..30000);
    let hub = hub(port).await;
    let claim = provision(&hub, "skewed").await;
    let r = hub
        .post_json("/api/v1/agents/claim", &json!({"claim_token": claim}))
        .await;
    let key: Value = r.json().await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/v1/agent/connect"))
            .await
            .unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"type": "auth", "payload": {
        "agent_id": key["agent_id"], "api_key": key["api_key"]}})))
        .await
        .unwrap();
    let ok = ws.next().await.unwrap().unwrap();
    assert!(ok.to_text().unwrap().contains("auth_ok"), "{ok:?}");
    let update = |at: &str, message: &str| {
        send(json!({"type": "status_update", "payload": {
            "service_name": "clock", "timestamp": at, "status": "FAILURE", "message": message}}))
    };
    // A host whose clock (or script) says 2099.
    ws.send(update("2099-01-01T00:00:00Z", "from the future"))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    let reply: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["type"], "error");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("dated more than an hour after the hub's clock"),
        "{reply}"
    );
    // A result dated now still counts.
    let now: chrono::DateTime<chrono::Utc> = std::time::SystemTime::now().into();
    ws.send(update(&now.to_rfc3339(), "disk full"))
        .await
        .unwrap();
    let server = wait_server(&hub, "skewed", |s| s["checks"] == 1).await;
    let checks = hub
        .get_json(&format!("/api/v1/servers/{}/services", server["id"]))
        .await;
    let id = checks[0]["id"].as_i64().unwrap();
    let s = hub
        .wait_for_service(id, SOON, |s| s["state"] == "FAILURE")
        .await;
    assert_eq!(s["check"]["last_message"], "disk full");
    let results = hub.get_json(&format!("/api/services/{id}/results")).await;
    assert_eq!(results.as_array().unwrap().len(), 1, "{results}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_may_ask_only_what_the_hosts_allow_list_permits() {
    let sb = SystemdSandbox::start();
    for unit in ["allowed.service", "denied.service"] {
        sb.write_unit(unit, "[Service]\nExecStart=/bin/sleep infinity\n");
    }
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "allowed.service", "denied.service"]);
    add_check(&sb, "tick.bash", &TICK.replace("*:*:0/2", "hourly"));

    let port = free_port_in(20000..30000);
    let hub = hub(port).await;
    let claim = provision(&hub, "controlled").await;
    let hub_url = format!("http://127.0.0.1:{port}");
    let out = register_in(&sb, &hub_url, &claim).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bad allow-list entry stops the agent at once, in one line.
    let bad = sb
        .command(BIN)
        .args([
            "agent",
            "run",
            "--user",
            "--allow-control",
            "allowed.service,../etc",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.contains("invalid --allow-control entry \"../etc\""),
        "{said}"
    );
    let mut cmd = sb.command(BIN);
    cmd.args([
        "agent",
        "run",
        "--user",
        "--allow-control",
        "allowed.service,check:tick",
    ]);
    let _agent = Agent::spawn(cmd, sb.dir());
    let server = wait_server(&hub, "controlled", |s| s["online"] == true).await;
    let id = server["id"].as_i64().unwrap();
    let detail = hub.get_json(&format!("/api/v1/servers/{id}")).await;
    assert_eq!(
        detail["allow_control"],
        json!(["allowed.service", "check:tick"])
    );
    let path = format!("/api/v1/servers/{id}/control");
    let control = |action: &str, target: &str| {
        hub.client
            .post(hub.url(&path))
            .json(&json!({"action": action, "target": target}))
            .send()
    };

    // Allowed: done on the host.
    let before = sb.property("allowed.service", "MainPID");
    let r = control("restart", "allowed.service").await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ok"], true, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("now active"),
        "{body}"
    );
    assert_ne!(
        sb.property("allowed.service", "MainPID"),
        before,
        "restarted"
    );
    let r = control("run", "tick").await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ok"], true, "{body}");
    assert!(
        body["message"].as_str().unwrap().starts_with("OK tick"),
        "{body}"
    );

    // Not on the list: refused by the agent, nothing done.
    let r = control("stop", "denied.service").await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("allow-list"),
        "{body}"
    );
    assert_eq!(sb.property("denied.service", "ActiveState"), "active");

    // Bad requests never reach the agent.
    let r = control("explode", "allowed.service").await.unwrap();
    assert_eq!(r.status(), 422);
    let r = control("stop", "../etc/passwd").await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "target");

    // The server's page offers exactly the allowed actions, and a button
    // does what the API does.
    let page = hub.get_text(&format!("/servers/{id}")).await;
    assert!(page.contains("data-target=\"allowed.service\""), "{page}");
    assert!(page.contains("data-target=\"tick\""));
    assert!(!page.contains("data-target=\"denied.service\""));
    let before = sb.property("allowed.service", "MainPID");
    let r = hub
        .post_form(
            &format!("/servers/{id}/control"),
            &[("action", "restart"), ("target", "allowed.service")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let page = hub.get_text(&location).await;
    assert!(page.contains("id=\"control-outcome\""), "{page}");
    assert!(page.contains("job done, now active"), "{page}");
    assert_ne!(sb.property("allowed.service", "MainPID"), before);

    // Who asked what, and how it went.
    let audit = hub.get_json("/api/v1/audit").await;
    let controls: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "agent.control")
        .map(|e| {
            (
                e["target"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        controls.contains(&("restart allowed.service on controlled".into(), "ok".into())),
        "{controls:?}"
    );
    assert!(
        controls.contains(&("stop denied.service on controlled".into(), "denied".into())),
        "{controls:?}"
    );
}

type RawAgent =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A server provisioned through the API and an agent of it speaking the
/// protocol by hand (allowing control of `web.service`), authenticated.
async fn raw_agent(hub: &TestHub, name: &str) -> RawAgent {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let base = hub.url("");
    let (agent_id, api_key) =
        lookout_testkit::bench::provision_agent(&hub.client, &base, name).await;
    let url = base.replace("http://", "ws://") + "/api/v1/agent/connect";
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let auth = json!({"type": "auth", "payload": {
        "agent_id": agent_id, "api_key": api_key, "allow": ["web.service"]}});
    ws.send(Message::Text(auth.to_string().into()))
        .await
        .unwrap();
    let ok = ws.next().await.unwrap().unwrap();
    assert!(ok.to_text().unwrap().contains("auth_ok"), "{ok:?}");
    ws
}

/// The next message of the hub of a given type, skipping others.
async fn next_of_type(ws: &mut RawAgent, kind: &str) -> Value {
    use futures::StreamExt as _;
    loop {
        let m = tokio::time::timeout(SOON, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message"))
            .unwrap()
            .unwrap();
        let m: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if m["type"] == kind {
            return m;
        }
    }
}

/// A control request is answered only by the session it was sent to: another
/// enrolled host that answers it (guessing the id, which it can) is told no
/// such request waits for it, and the admin gets the real host's answer.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_asked_agent_can_answer_a_control_request() {
    use futures::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let hub = lookout_testkit::spawn_hub().await;
    let mut asked = raw_agent(&hub, "asked").await;
    let mut forger = raw_agent(&hub, "forger").await;
    let server = wait_server(&hub, "asked", |s| s["online"] == true).await;
    wait_server(&hub, "forger", |s| s["online"] == true).await;

    let path = format!("/api/v1/servers/{}/control", server["id"]);
    let (client, url) = (hub.client.clone(), hub.url(&path));
    let answered = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"action": "restart", "target": "web.service"}))
            .send()
            .await
            .unwrap()
    });
    // The request reaches the asked agent; the other host answers it first.
    let id = next_of_type(&mut asked, "control").await["payload"]["id"].clone();
    let forged = json!({"type": "control_result", "payload": {
        "id": id, "ok": true, "message": "restarted (forged)"}});
    forger
        .send(Message::Text(forged.to_string().into()))
        .await
        .unwrap();
    let reply = next_of_type(&mut forger, "error").await;
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("no control request"),
        "{reply}"
    );
    let real = json!({"type": "control_result", "payload": {
        "id": id, "ok": false, "message": "web.service failed to restart"}});
    asked
        .send(Message::Text(real.to_string().into()))
        .await
        .unwrap();
    let r = answered.await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["message"], "web.service failed to restart", "{body}");
    let audit = hub.get_json("/api/v1/audit").await.to_string();
    assert!(!audit.contains("forged"), "{audit}");
}

/// An agent cannot flood the registry: a server has at most 500 checks (the
/// agent is told which new ones were refused), and a result's message is
/// cut to a check line's length.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cannot_flood_the_registry() {
    use futures::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let hub = lookout_testkit::spawn_hub().await;
    let mut agent = raw_agent(&hub, "flooder").await;
    let now = lookout_testkit::bench::now();
    let updates: Vec<Value> = (0..520)
        .map(|i| {
            json!({"service_name": format!("made-up-{i}"), "timestamp": now,
            "status": "OK", "message": if i == 0 { "x".repeat(100_000) } else { "fine".into() }})
        })
        .collect();
    let flood = json!({"type": "status_updates", "payload": {"updates": updates}});
    agent
        .send(Message::Text(flood.to_string().into()))
        .await
        .unwrap();
    let error = next_of_type(&mut agent, "error").await;
    let said = error["payload"]["message"].as_str().unwrap();
    assert!(said.starts_with("20 new check(s) refused"), "{said}");
    assert!(said.contains("500 checks"), "{said}");
    let services = hub.get_json("/api/services?status=all").await;
    let checks: Vec<&Value> = services
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().ends_with("@flooder"))
        .collect();
    assert_eq!(checks.len(), 500);
    let first = checks
        .iter()
        .find(|s| s["name"] == "made-up-0@flooder")
        .unwrap();
    let results = hub
        .get_json(&format!("/api/services/{}/results", first["id"]))
        .await;
    let message = results[0]["message"].as_str().unwrap();
    assert_eq!(
        message.len(),
        4096,
        "the message was cut to a line's length"
    );
}

/// Self-healing on a second network host: the host's check of a unit that
/// dies a second after each start fails twice, the hub asks the host's agent
/// to restart the unit (its allow-list permits it), twice in the hour, then
/// gives up and alerts; every request is in the audit log.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_check_on_another_host_is_healed_through_its_agent() {
    let sb = SystemdSandbox::start();
    // Runs until the marker exists; from then on it dies a second after
    // each start.
    let broken = sb.dir().join("broken");
    sb.write_unit(
        "flaky.service",
        &format!(
            "[Unit]\nDescription=Dies after a second once broken\n[Service]\n\
             ExecStart=/bin/sh -c 'if [ -e {} ]; then sleep 1; exit 3; fi; exec sleep 1000'\n",
            broken.display()
        ),
    );
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "flaky.service"]);
    add_check(
        &sb,
        "probe.bash",
        "#!/bin/bash\n# name: Probe\n# schedule: *:*:0/2\n# timeout: 5\n\
         if systemctl --user is-active --quiet flaky.service; then s=OK; else s=FAILURE; fi\n\
         echo \"$(date '+%Y-%m-%d %H:%M:%S'), $s, flaky is $(systemctl --user is-active flaky.service)\"\n",
    );
    let net = NetHost::create();
    let (hub, listen) = hub_on_link(&net).await;
    let rx = lookout_testkit::Receiver::start().await;
    crate::depends::webhook(&hub, &rx).await;
    let claim = provision(&hub, "remote").await;
    let out = net
        .command(register_in(&sb, &format!("http://{listen}"), &claim))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = sb.command(BIN);
    run.args(["agent", "run", "--user", "--allow-control", "flaky.service"]);
    let agent = Agent::spawn(net.command(run), sb.dir());
    let server = wait_server(&hub, "remote", |s| s["online"] == true).await;
    let checks = hub
        .get_json(&format!("/api/v1/servers/{}/services", server["id"]))
        .await;
    let id = checks[0]["id"].as_i64().unwrap();
    let r = hub
        .put_json(
            &format!("/api/services/{id}"),
            &json!({"heal": {"after": 2, "unit": "flaky.service", "max_per_hour": 2}}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
    std::fs::write(&broken, "").unwrap();
    sb.systemctl_ok(&["restart", "flaky.service"]);

    let alert = rx.wait_for("/hook", 1, Duration::from_secs(60)).await;
    let body = alert[0].json();
    assert_eq!(body["event"], "alert", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("self-healing restarted flaky.service 2 times in the last hour"),
        "{body} {}",
        agent.output()
    );
    let asked = vec![
        (
            "self-healing".to_owned(),
            "restart flaky.service on remote".to_owned(),
            "ok".to_owned(),
        );
        2
    ];
    assert_eq!(crate::depends::audited(&hub, "agent.control").await, asked);
    // Given up: the unit is left as it failed.
    assert_eq!(sb.property("flaky.service", "ActiveState"), "failed");
    // The service page lists both restarts and the giving up.
    let page = hub.get_text(&format!("/services/{id}")).await;
    assert_eq!(
        page.matches("restarted flaky.service through the agent on its server")
            .count(),
        2,
        "{page}"
    );
    assert!(page.contains("giving up until it recovers"));
}
