//! Helpers shared by the benchmarks: the hub as its own process, and what
//! `/proc` says about a process.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::{spawn_hub_process, TestHub};

/// `lookout serve` (the binary at `bin`) on a free loopback port with its own
/// data directory and systemd off.
pub fn spawn_hub_binary(bin: &Path) -> TestHub {
    spawn_hub_binary_with(bin, &[])
}

/// [`spawn_hub_binary`] with more `serve` flags.
pub fn spawn_hub_binary_with(bin: &Path, extra: &[&str]) -> TestHub {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(bin);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--systemd",
        "none",
        "--log",
        "info",
    ])
    .args(extra)
    .arg("--data-dir")
    .arg(dir.path());
    spawn_hub_process(cmd, dir)
}

/// Runs this bench binary again as a child with `mode_var=1` set (the
/// child's mode: serving the targets, say, so their work is not counted as
/// the bench's) and returns it with the ports it prints on its first line.
pub fn spawn_child_mode(mode_var: &str) -> (Child, Vec<u16>) {
    let mut child = Command::new(std::env::current_exe().expect("this bench's path"))
        .env(mode_var, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("re-run this bench as a child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the child's first line");
    let ports = line
        .split_whitespace()
        .map(|p| p.parse().unwrap_or_else(|_| panic!("a port, not {p:?}")))
        .collect();
    (child, ports)
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    proc_kib(pid, "status", field)
}

/// A `kB` field of `/proc/PID/smaps_rollup` (`Anonymous:`, `Pss:`), in KiB.
pub fn rollup_kib(pid: u32, field: &str) -> u64 {
    proc_kib(pid, "smaps_rollup", field)
}

/// A `kB` field of `/proc/PID/FILE`, in KiB; 0 when it cannot be read.
fn proc_kib(pid: u32, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10) // CLK_TCK is 100 on Linux
}

/// The `p` quantile (0.0 to 1.0) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    sorted[((last as f64) * p).round() as usize]
}

/// The wall clock, for timestamps of simulated results.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from(std::time::SystemTime::now())
}

/// Provisions and claims a server through the API: its agent id and key.
pub async fn provision_agent(client: &reqwest::Client, base: &str, name: &str) -> (String, String) {
    let r: Value = client
        .post(format!("{base}/api/v1/agents/register"))
        .json(&json!({"server_name": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claim = r["claim_token"].as_str().unwrap();
    let c: Value = client
        .post(format!("{base}/api/v1/agents/claim"))
        .json(&json!({"claim_token": claim}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        c["agent_id"].as_str().unwrap().to_owned(),
        c["api_key"].as_str().unwrap().to_owned(),
    )
}

/// One simulated agent (a WebSocket client speaking the agent protocol): authenticates, then sends a result every second
/// until `stop`.
pub async fn simulated_agent(
    base: String,
    agent_id: String,
    api_key: String,
    offset: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> u64 {
    let url = base.replace("http://", "ws://") + "/api/v1/agent/connect";
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let auth = json!({"type": "auth", "payload": {"agent_id": agent_id, "api_key": api_key}});
    ws.send(Message::Text(auth.to_string().into()))
        .await
        .unwrap();
    let ok = ws.next().await.unwrap().unwrap();
    assert!(ok.to_text().unwrap().contains("auth_ok"), "{ok:?}");
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sent = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
            m = ws.next() => if m.is_none() { break },
        }
        let update = json!({"type": "status_update", "payload": {
            "service_name": "load", "timestamp": now(), "ordinal": 0,
            "status": "OK", "message": format!("result {sent}")}});
        if ws
            .send(Message::Text(update.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    sent
}

/// A real agent process on a host of its own (a temp dir), provisioned
/// through the API of the hub at `base`, following one hourly check whose log
/// the bench appends to.
pub struct BenchAgent {
    pub host: tempfile::TempDir,
    /// The check's log: a line appended here reaches the hub as a result.
    pub log: std::path::PathBuf,
    pub process: std::process::Child,
}

/// Starts [`BenchAgent`]: `bin agent run --user --no-scan` with credentials
/// for server `name`.
pub async fn spawn_agent(
    bin: &Path,
    client: &reqwest::Client,
    base: &str,
    name: &str,
) -> BenchAgent {
    spawn_agent_on(None, bin, client, base, name, &[]).await
}

/// [`spawn_agent`] with more `agent run` flags, or with `sandbox`: the
/// agent runs inside it and scans its user manager (its units are sampled
/// too).
pub async fn spawn_agent_on(
    sandbox: Option<&crate::SystemdSandbox>,
    bin: &Path,
    client: &reqwest::Client,
    base: &str,
    name: &str,
    extra: &[&str],
) -> BenchAgent {
    let host = tempfile::tempdir().expect("temp dir");
    let log = crate::write_check_files(
        host.path(),
        "bench",
        "#!/bin/sh\n# name: Bench\n# schedule: hourly\n",
    );
    std::fs::write(&log, "").expect("empty log");
    let (agent_id, api_key) = provision_agent(client, base, name).await;
    let creds = host.path().join("agent.json");
    std::fs::write(
        &creds,
        json!({"hub": base, "agent_id": agent_id, "api_key": api_key, "server_name": name})
            .to_string(),
    )
    .expect("credentials");
    let mut command = match sandbox {
        Some(sb) => {
            let mut c = sb.command(bin);
            c.args(["agent", "run", "--user", "--log", "warn"]);
            c
        }
        None => {
            let mut c = Command::new(bin);
            c.args(["agent", "run", "--user", "--no-scan", "--log", "warn"]);
            c
        }
    };
    let process = command
        .args(extra)
        .arg("--credentials")
        .arg(&creds)
        .env("XDG_CONFIG_HOME", host.path().join("config"))
        .env("XDG_STATE_HOME", host.path().join("state"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the agent");
    BenchAgent { host, log, process }
}
