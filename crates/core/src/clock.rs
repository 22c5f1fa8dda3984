//! Wall-clock time as a parameter, so that time-dependent logic (staleness,
//! retention, expiry) is tested without sleeping.

use crate::sync::lock;
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        #[allow(clippy::disallowed_methods)] // The one place the real clock is read.
        Utc::now()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// A clock that only moves when told to, for tests of time-dependent logic
/// (heartbeat TTLs, push deadlines, retention) without sleeping.
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            now: std::sync::Mutex::new(start),
        })
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut now = lock(&self.now);
        *now += chrono::Duration::from_std(by).unwrap_or_default();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.now)
    }
}
