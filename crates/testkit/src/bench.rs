//! Helpers shared by the benchmarks: the hub as its own process, and what
//! `/proc` says about a process.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
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
