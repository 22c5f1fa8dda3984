//! Resource usage for lookout: what a unit's cgroup has used
//! ([`cgroup::Cgroups`]) and what the host uses ([`host::HostReader`]),
//! read from the kernel's files and turned into the rates and levels
//! `lookout_proto::usage` carries. Used by the hub for its own host and by
//! the agent for its host; it depends on `proto` alone.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cgroup;
pub mod host;

pub use cgroup::{CgroupCounters, CgroupReader, Cgroups};
pub use host::{HostCounters, HostReader};

use lookout_proto::usage::UnitUsage;

/// A unit's use between two readings of its cgroup, `secs` apart.
pub fn unit_usage(
    now: &CgroupCounters,
    earlier: Option<&CgroupCounters>,
    secs: f64,
    at: chrono::DateTime<chrono::Utc>,
) -> UnitUsage {
    let rate = |now: Option<u64>, then: Option<u64>, per: f64| match (now, then) {
        (Some(n), Some(t)) if secs > 0.0 && n >= t => Some((n - t) as f64 / secs / per),
        _ => None,
    };
    let earlier = earlier.copied().unwrap_or_default();
    UnitUsage {
        at,
        // Microseconds of CPU per second, as a percent of one core.
        cpu_percent: rate(now.cpu_usec, earlier.cpu_usec, 10_000.0),
        memory_bytes: now.memory_bytes,
        tasks: now.tasks,
        io_read_bps: rate(now.io_read_bytes, earlier.io_read_bytes, 1.0),
        io_write_bps: rate(now.io_write_bytes, earlier.io_write_bytes, 1.0),
        cpu_seconds_total: now.cpu_usec.map(|us| us as f64 / 1e6),
        io_read_bytes_total: now.io_read_bytes,
        io_write_bytes_total: now.io_write_bytes,
    }
}
