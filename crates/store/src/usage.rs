//! Resource usage history: one row per subject (a service's unit, or a
//! host by name) and bucket, raw samples and their 1-minute and 15-minute
//! rollups alike (`width` tells them apart). The rollups are made by the
//! hub's core; the store keeps and returns rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// One figure over a bucket: its least, mean and greatest value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

impl Spread {
    /// One sample's value.
    pub fn one(value: f64) -> Spread {
        Spread {
            min: value,
            avg: value,
            max: value,
        }
    }
}

/// A unit's use over one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitUsageRow {
    pub service_id: i64,
    /// The bucket's width in seconds (the sampling interval for raw samples).
    pub width: u32,
    pub start: DateTime<Utc>,
    pub samples: u32,
    /// Percent of one core.
    pub cpu: Option<Spread>,
    /// Bytes.
    pub memory: Option<Spread>,
    /// The most tasks seen.
    pub tasks: Option<f64>,
    /// Mean bytes per second.
    pub io_read: Option<f64>,
    pub io_write: Option<f64>,
}

/// A host's use over one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct HostUsageRow {
    /// The host's name (the hub's own, or an agent's server's).
    pub host: String,
    pub width: u32,
    pub start: DateTime<Utc>,
    pub samples: u32,
    /// Percent of all cores.
    pub cpu: Spread,
    /// Bytes in use.
    pub memory: Spread,
    pub memory_total: u64,
    /// The most swap in use, in bytes.
    pub swap: f64,
    pub swap_total: u64,
    /// The highest 1-minute load average.
    pub load: f64,
    /// The fullest filesystem's highest use, in percent, and its bytes used
    /// and usable at the bucket's end.
    pub disk: f64,
    pub disk_used: u64,
    pub disk_size: u64,
    /// Mean bytes per second over every interface and disk.
    pub net_rx: f64,
    pub net_tx: f64,
    pub disk_read: f64,
    pub disk_write: f64,
    /// The hottest sensor, in °C, where there is one.
    pub temperature: Option<f64>,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Writes rows, replacing those of the same subject, width and start
    /// (a rollup made again); rows of services that no longer exist are
    /// left out.
    async fn put_unit_usage(&self, rows: &[UnitUsageRow]) -> Result<(), StoreError>;

    async fn put_host_usage(&self, rows: &[HostUsageRow]) -> Result<(), StoreError>;

    /// Rows of `width` starting in `from..to`, of one service or (`None`)
    /// every one, oldest first.
    async fn unit_usage(
        &self,
        service_id: Option<i64>,
        width: u32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UnitUsageRow>, StoreError>;

    /// Rows of `width` starting in `from..to`, of one host or (`None`)
    /// every one, oldest first.
    async fn host_usage(
        &self,
        host: Option<&str>,
        width: u32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<HostUsageRow>, StoreError>;

    /// The starts of the oldest and the newest row of `width`, of any subject.
    async fn usage_span(
        &self,
        width: u32,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError>;

    /// Removes the rows of `width` that start before `before`; how many.
    async fn prune_usage(&self, width: u32, before: DateTime<Utc>) -> Result<u64, StoreError>;
}
