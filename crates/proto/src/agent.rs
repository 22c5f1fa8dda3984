//! The agent <-> hub protocol: JSON messages
//! `{"type": ..., "payload": {...}}` over a WebSocket at
//! `/api/v1/agent/connect`, and the REST bodies of registration.
//!
//! Delivery is at least once: after `auth` the hub answers `auth_ok` with
//! the newest result it holds of every check (its cursor), and the agent
//! sends every line of its logs after that. A result is identified by its
//! check, its time and its ordinal (how many lines of the same check
//! carry the same time before it), so a result sent twice is stored once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::check::LineStatus;

/// A message from an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The first message: who the agent is.
    Auth(AgentAuth),
    /// The checks installed on the host, whole (checks gone from it are
    /// dropped from the hub's list).
    Checks { checks: Vec<CheckDecl> },
    /// One result line (timestamp, status, message), with its ordinal.
    StatusUpdate(StatusUpdate),
    /// Several result lines at once (a replay after a reconnect).
    StatusUpdates { updates: Vec<StatusUpdate> },
    /// The host's systemd services and timers, as `lookout scan --json` gives them.
    Scan { scan: serde_json::Value },
    /// Still here.
    Heartbeat {},
    /// The outcome of a [`HubMessage::Control`] request.
    ControlResult(ControlResult),
    /// What the host and its running units used over the last sampling
    /// interval (`host` is absent from the first).
    Usage {
        host: Option<crate::usage::HostUsage>,
        #[serde(default)]
        units: Vec<UnitUsageEntry>,
    },
}

/// One unit's use, as an agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitUsageEntry {
    pub unit: String,
    pub usage: crate::usage::UnitUsage,
}

/// What the hub may ask an agent to do, if the host allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    Start,
    Stop,
    Restart,
    /// Run a check now (its target is the check's name).
    Run,
}

impl ControlAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Start => "start",
            ControlAction::Stop => "stop",
            ControlAction::Restart => "restart",
            ControlAction::Run => "run",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResult {
    pub id: u64,
    /// The action was allowed and done.
    pub ok: bool,
    /// The host's allow-list does not permit it (nothing was done).
    #[serde(default)]
    pub refused: bool,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentAuth {
    pub agent_id: String,
    pub api_key: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// What the hub may ask this agent to do (its host's allow-list):
    /// unit names, and `check:NAME` for running a check.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// An installed check, from its headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDecl {
    /// The check's slug (`disk-usage`).
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
}

/// One result of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The check's slug (the messages call it the service name).
    pub service_name: String,
    /// When the script said it happened, in UTC.
    pub timestamp: DateTime<Utc>,
    /// Lines of the same check with the same timestamp before this one.
    #[serde(default)]
    pub ordinal: u32,
    pub status: LineStatus,
    pub message: String,
}

/// Where a check's results stand at the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub timestamp: DateTime<Utc>,
    pub ordinal: u32,
}

impl Cursor {
    /// Whether a result comes after this cursor (and so may be new).
    pub fn before(&self, timestamp: DateTime<Utc>, ordinal: u32) -> bool {
        (timestamp, ordinal) > (self.timestamp, self.ordinal)
    }
}

/// A message from the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum HubMessage {
    AuthOk {
        server_id: i64,
        server_name: String,
        /// Send a heartbeat at least this often.
        heartbeat_secs: u64,
        /// The newest result held per check; send only what follows.
        cursors: std::collections::BTreeMap<String, Cursor>,
    },
    /// The credentials were refused; the hub closes the connection.
    AuthFailed { reason: String },
    /// A message could not be used; the connection stays open.
    Error { message: String },
    /// An admin asks the agent to act on its host; answered by a
    /// `control_result` with the same id.
    Control {
        id: u64,
        action: ControlAction,
        target: String,
        requested_by: String,
    },
}

/// `POST /api/v1/agents/register` (an admin provisions a server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub server_name: String,
    #[serde(default)]
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub server_id: i64,
    pub agent_id: String,
    /// One use, until `expires_at`.
    pub claim_token: String,
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/v1/agents/claim`: the agent trades its claim token for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub claim_token: String,
    #[serde(default)]
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimResponse {
    pub server_id: i64,
    pub server_name: String,
    pub agent_id: String,
    pub api_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Found by fuzzing: a number with more digits than an f64 holds must
    /// decode to the nearest f64, so that what the hub stores and relays
    /// reads back as the same value (serde_json's `float_roundtrip`).
    #[test]
    fn long_numbers_in_a_scan_survive_a_round_trip() {
        let digits = "5".repeat(61);
        let text = format!(r#"{{"type":"scan","payload":{{"scan":{{"n":[{digits}0e2, 0.1]}}}}}}"#);
        let message: AgentMessage = serde_json::from_str(&text).unwrap();
        let again: AgentMessage =
            serde_json::from_str(&serde_json::to_string(&message).unwrap()).unwrap();
        assert_eq!(again, message);
    }

    #[test]
    fn the_documented_messages_decode() {
        let auth: AgentMessage = serde_json::from_value(json!({
            "type": "auth",
            "payload": {"agent_id": "agt-1", "api_key": "secret-key-1"}
        }))
        .unwrap();
        assert!(matches!(auth, AgentMessage::Auth(a) if a.agent_id == "agt-1"));
        let update: AgentMessage = serde_json::from_value(json!({
            "type": "status_update",
            "payload": {
                "service_name": "system-updates",
                "timestamp": "2025-09-02T16:06:37Z",
                "status": "OK",
                "message": "System is up to date"
            }
        }))
        .unwrap();
        let AgentMessage::StatusUpdate(u) = update else {
            panic!("{update:?}")
        };
        assert_eq!(u.ordinal, 0);
        assert_eq!(u.status, LineStatus::Ok);
        let hb: AgentMessage =
            serde_json::from_value(json!({"type": "heartbeat", "payload": {}})).unwrap();
        assert_eq!(hb, AgentMessage::Heartbeat {});
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        for bad in [
            json!({"type": "status_update", "payload": {"service_name": "x"}}),
            json!({"type": "launch_missiles", "payload": {}}),
            json!({"payload": {}}),
            json!([1, 2]),
        ] {
            assert!(
                serde_json::from_value::<AgentMessage>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn cursors_order_by_time_then_ordinal() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let c = Cursor {
            timestamp: t("2026-11-25T10:00:00Z"),
            ordinal: 1,
        };
        assert!(!c.before(t("2026-11-25T10:00:00Z"), 0));
        assert!(!c.before(t("2026-11-25T10:00:00Z"), 1));
        assert!(c.before(t("2026-11-25T10:00:00Z"), 2));
        assert!(c.before(t("2026-11-25T10:00:01Z"), 0));
        assert!(!c.before(t("2026-11-25T09:59:59Z"), 9));
    }
}
