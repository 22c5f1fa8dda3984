//! What the store keeps of agents: servers (with their claim token and key,
//! both as SHA-256), the checks they run (services with a `server_id`) and
//! every result those checks reported.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lookout_proto::agent::{CheckDecl, Cursor, StatusUpdate};
use lookout_proto::service::{CheckResultView, StatusEventView};

use super::StoreError;

/// A monitored host.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub id: i64,
    pub name: String,
    pub labels: Vec<String>,
    pub agent_id: String,
    pub claimed: bool,
    pub revoked: bool,
    pub hostname: Option<String>,
    pub agent_version: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub heartbeat_secs: i64,
    pub scan: Option<serde_json::Value>,
    pub scanned_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// An agent heard from at `last_seen` is in touch until it misses three
/// heartbeats. Every backend and every view decides it here.
pub fn in_touch(last_seen: Option<DateTime<Utc>>, heartbeat_secs: i64, now: DateTime<Utc>) -> bool {
    last_seen.is_some_and(|t| (now - t).num_milliseconds() <= heartbeat_secs.max(1) * 3000)
}

impl Server {
    /// In touch, and not revoked.
    pub fn online(&self, now: DateTime<Utc>) -> bool {
        !self.revoked && in_touch(self.last_seen, self.heartbeat_secs, now)
    }
}

/// A server an admin provisions, with the hash of its one-time claim token.
#[derive(Debug, Clone)]
pub struct NewServer {
    pub name: String,
    pub labels: Vec<String>,
    pub agent_id: String,
    pub claim_hash: String,
    pub claim_expires_at: DateTime<Utc>,
}

/// What ingesting agent messages changed.
#[derive(Debug, Clone, Default)]
pub struct Ingested {
    /// Check services created.
    pub created: Vec<i64>,
    /// Check services whose last result or declaration changed.
    pub updated: Vec<i64>,
    /// Check services deleted (checks gone from the host).
    pub deleted: Vec<i64>,
    /// Results stored now (not seen before).
    pub results: Vec<(String, CheckResultView)>,
    /// The services as this write left them, where it has them whole (the
    /// checks a result touched), so nothing reads them back.
    pub written: Vec<crate::Service>,
    pub changes: Vec<StatusEventView>,
    /// New checks not created: the server already has
    /// [`MAX_CHECKS_PER_SERVER`]; their declarations and results were dropped.
    pub refused: Vec<String>,
}

/// One agent message's results: its server's, as they came.
#[derive(Debug, Clone)]
pub struct Results {
    pub server_id: i64,
    pub updates: Vec<StatusUpdate>,
    pub received_at: DateTime<Utc>,
}

/// The most checks one server may have: an agent (or whoever holds its key)
/// cannot fill the registry with made-up checks.
pub const MAX_CHECKS_PER_SERVER: i64 = 500;

#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Creates a server; its name must be unique.
    async fn create_server(
        &self,
        new: &NewServer,
        now: DateTime<Utc>,
    ) -> Result<Server, StoreError>;

    /// Spends a claim token: stores the agent's key hash and returns the
    /// server, or `None` if the token is unknown, used or expired.
    async fn claim_server(
        &self,
        claim_hash: &str,
        key_hash: &str,
        hostname: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Server>, StoreError>;

    /// The server whose agent holds this key, unless revoked.
    async fn authenticate_agent(
        &self,
        agent_id: &str,
        key_hash: &str,
    ) -> Result<Option<Server>, StoreError>;

    /// Notes that the agent is in touch; its checks come back from UNKNOWN.
    async fn agent_seen(
        &self,
        server_id: i64,
        heartbeat_secs: i64,
        version: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StatusEventView>, StoreError>;

    /// The checks installed on the host, whole: new ones are added, gone
    /// ones deleted (with their history).
    async fn set_server_checks(
        &self,
        server_id: i64,
        checks: &[CheckDecl],
        now: DateTime<Utc>,
    ) -> Result<Ingested, StoreError>;

    /// Stores results not seen before and brings each check's status up to date.
    async fn record_results(
        &self,
        server_id: i64,
        updates: &[StatusUpdate],
        now: DateTime<Utc>,
    ) -> Result<Ingested, StoreError> {
        let message = Results {
            server_id,
            updates: updates.to_vec(),
            received_at: now,
        };
        let mut done = self
            .record_results_together(std::slice::from_ref(&message))
            .await?;
        Ok(done.pop().unwrap_or_default())
    }

    /// [`AgentStore::record_results`] for several agents' messages in one
    /// transaction: what each changed, in order. A message from a server
    /// that is gone changes nothing.
    async fn record_results_together(
        &self,
        messages: &[Results],
    ) -> Result<Vec<Ingested>, StoreError>;

    /// The newest result held per check of a server.
    async fn result_cursors(&self, server_id: i64) -> Result<BTreeMap<String, Cursor>, StoreError>;

    async fn set_server_scan(
        &self,
        server_id: i64,
        scan: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    async fn list_servers(&self) -> Result<Vec<Server>, StoreError>;
    async fn get_server(&self, id: i64) -> Result<Option<Server>, StoreError>;

    /// Revokes the agent's key; its checks turn UNKNOWN. `None`: no such server.
    async fn revoke_server(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<StatusEventView>>, StoreError>;

    /// Deletes a server and its checks; the deleted check services, or
    /// `None` when there is no such server.
    async fn delete_server(&self, id: i64) -> Result<Option<Vec<i64>>, StoreError>;

    /// A check's results, newest first.
    async fn check_results(
        &self,
        service_id: i64,
        limit: u32,
    ) -> Result<Vec<CheckResultView>, StoreError>;
}
