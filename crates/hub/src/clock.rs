//! Wall-clock time as a parameter, so that time-dependent logic (staleness,
//! retention, expiry) is tested without sleeping.

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
