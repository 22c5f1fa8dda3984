//! Sharing work between hubs on one database: each hub says it is alive,
//! runs the health checks of the services it holds a lease on, and runs a
//! once-per-database job only while it holds that job's lease. A lease is
//! renewed well before it expires; a hub that dies loses its leases one
//! lease period after its last renewal, and the others take them.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::Store;

/// The health checks a hub runs, as of one renewal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckLeases {
    /// The services whose checks are this hub's until the next renewal.
    pub owned: HashSet<i64>,
    /// Hubs alive (this one included).
    pub hubs: usize,
    /// When the first lease held by another hub expires: the moment to look
    /// again, to take over from a hub that stopped renewing.
    pub next_foreign_expiry: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Marks `hub` alive, renews its check leases, takes its share (the
    /// configured services divided by the hubs alive) from services nobody
    /// holds or whose lease expired, gives back what is over its share, and
    /// says what it holds. Two hubs never hold the same service.
    async fn check_leases(
        &self,
        hub: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<CheckLeases, StoreError>;

    /// Gives back every lease of `hub` (a hub that stops cleanly), so the
    /// others take its checks at once.
    async fn release_leases(&self, hub: &str) -> Result<(), StoreError>;

    /// Takes or renews the lease of a once-per-database job; true while
    /// `hub` holds it.
    async fn job_lease(
        &self,
        job: &str,
        hub: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError>;
}

/// A once-per-database job's hold on its lease, asked for every third of
/// the lease period rather than every time the job runs.
#[derive(Debug)]
pub struct JobLease {
    job: &'static str,
    hub: String,
    lease: Duration,
    /// A hub alone with its database (SQLite) holds every job: no lease is
    /// written or read.
    alone: bool,
    held: bool,
    ask_at: tokio::time::Instant,
}

impl JobLease {
    pub fn new(job: &'static str, hub: String, lease: Duration) -> Self {
        Self {
            job,
            hub,
            lease,
            alone: false,
            held: false,
            ask_at: tokio::time::Instant::now(),
        }
    }

    /// The job's lease for hub `hub`: held through the database when the
    /// lease has a period (a shared database), always this hub's without.
    pub fn of(job: &'static str, hub: &str, lease: Option<Duration>) -> Self {
        match lease {
            Some(lease) => Self::new(job, hub.to_owned(), lease),
            None => Self::alone(job),
        }
    }

    /// The job of a hub alone with its database: always this hub's.
    pub fn alone(job: &'static str) -> Self {
        Self {
            alone: true,
            ..Self::new(job, String::new(), Duration::ZERO)
        }
    }

    /// Whether this hub runs the job now, renewing the lease when due; a
    /// store error counts as not holding it. The second value is true when
    /// the lease was just taken (at start or from a hub that stopped).
    pub async fn check(&mut self, store: &dyn Store, now: DateTime<Utc>) -> (bool, bool) {
        let was = self.held;
        if self.alone {
            self.held = true;
        } else if tokio::time::Instant::now() >= self.ask_at {
            self.ask_at = tokio::time::Instant::now() + self.lease / 3;
            self.held = match store.job_lease(self.job, &self.hub, now, self.lease).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(job = self.job, error = ?e, "could not renew a job lease");
                    false
                }
            };
        }
        (self.held, self.held && !was)
    }
}
