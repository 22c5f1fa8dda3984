//! What a service and a host consume, as the API, the agent and the pages
//! carry it: the rates and levels of one sampling interval. Pure values; the
//! readers live in `lookout-usage`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One unit's (or container's) use over the last sampling interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitUsage {
    /// When the interval ended.
    pub at: DateTime<Utc>,
    /// CPU time used over the interval, in percent of one core (a unit busy
    /// on two cores shows 200).
    pub cpu_percent: Option<f64>,
    /// Memory charged to the unit's cgroup, in bytes.
    pub memory_bytes: Option<u64>,
    /// Processes and threads in the unit's cgroup.
    pub tasks: Option<u64>,
    /// Bytes read from and written to block devices per second.
    pub io_read_bps: Option<f64>,
    pub io_write_bps: Option<f64>,
    /// The cgroup's CPU time and IO since it was made (Prometheus counters).
    pub cpu_seconds_total: Option<f64>,
    pub io_read_bytes_total: Option<u64>,
    pub io_write_bytes_total: Option<u64>,
}

/// A mounted filesystem's use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FilesystemUsage {
    pub mount: String,
    pub device: String,
    pub fs_type: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub inodes: u64,
    pub inodes_used: u64,
}

impl FilesystemUsage {
    /// Used space in percent of what a user can use.
    pub fn percent(&self) -> f64 {
        percent(self.used_bytes, self.size_bytes)
    }
}

/// A network interface's throughput.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkUsage {
    pub interface: String,
    pub rx_bps: f64,
    pub tx_bps: f64,
}

/// A block device's throughput.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiskUsage {
    pub device: String,
    pub read_bps: f64,
    pub write_bps: f64,
}

/// A temperature sensor's reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Temperature {
    pub sensor: String,
    pub celsius: f64,
}

/// A host's use over the last sampling interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostUsage {
    pub at: DateTime<Utc>,
    /// Busy CPU time over the interval, in percent of all cores.
    pub cpu_percent: f64,
    /// The same per core, in percent of that core.
    pub cores: Vec<f64>,
    /// The load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    pub memory_total_bytes: u64,
    /// Total less what is available without swapping.
    pub memory_used_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    pub filesystems: Vec<FilesystemUsage>,
    pub networks: Vec<NetworkUsage>,
    pub disks: Vec<DiskUsage>,
    /// Empty where the kernel exposes no sensor.
    pub temperatures: Vec<Temperature>,
    pub uptime_secs: u64,
}

impl HostUsage {
    pub fn memory_percent(&self) -> f64 {
        percent(self.memory_used_bytes, self.memory_total_bytes)
    }

    pub fn swap_percent(&self) -> f64 {
        percent(self.swap_used_bytes, self.swap_total_bytes)
    }

    /// The fullest filesystem's use, in percent (0 without one).
    pub fn disk_percent(&self) -> f64 {
        self.filesystems
            .iter()
            .map(FilesystemUsage::percent)
            .fold(0.0, f64::max)
    }
}

/// `part` of `whole` in percent; 0 of nothing.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
