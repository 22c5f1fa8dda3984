//! One status for every kind of service, whatever produced it.
//!
//! The four normalised statuses of seed 004 plus `UNKNOWN` for "no data, not
//! checked, or stale". How each source maps onto them:
//!
//! | source | condition | status |
//! |---|---|---|
//! | HTTP health check | any 2xx | `OK` |
//! | HTTP health check | timeout, refused, TLS error, other status | `FAILURE` |
//! | HTTP health check | configured but not run yet | `UNKNOWN` |
//! | systemd unit | `failed` | `FAILURE` (wins over a passing HTTP check) |
//! | systemd unit, no HTTP check | `active` | `OK` |
//! | systemd unit, no HTTP check | `activating`, `deactivating`, `reloading` | `WARNING` |
//! | systemd unit, no HTTP check | `inactive`, `removed` | `UNKNOWN` |
//! | neither | — | `UNKNOWN` |
//!
//! Heartbeats and check scripts (later) map onto the same five values:
//! a heartbeat within its TTL is `OK`, a missed one `FAILURE`; a check script
//! reports `OK`/`UPDATE`/`WARNING`/`FAILURE` itself.

use serde::{Deserialize, Serialize};

use crate::service::HealthStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Update,
    Warning,
    Failure,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Update => "UPDATE",
            Status::Warning => "WARNING",
            Status::Failure => "FAILURE",
            Status::Unknown => "UNKNOWN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "OK" => Some(Status::Ok),
            "UPDATE" => Some(Status::Update),
            "WARNING" => Some(Status::Warning),
            "FAILURE" => Some(Status::Failure),
            "UNKNOWN" => Some(Status::Unknown),
            _ => None,
        }
    }
}

/// The status of a service from its HTTP check and its systemd state, with
/// the reason a person reads.
pub fn derive_status(
    health: HealthStatus,
    has_http_check: bool,
    last_error: Option<&str>,
    systemd_state: Option<&str>,
) -> (Status, String) {
    if systemd_state == Some("failed") {
        return (Status::Failure, "the systemd unit failed".into());
    }
    if has_http_check {
        return match health {
            HealthStatus::Healthy => (Status::Ok, "health check passed".into()),
            HealthStatus::Unhealthy => (
                Status::Failure,
                format!("health check failed: {}", last_error.unwrap_or("no answer")),
            ),
            HealthStatus::Unknown => (Status::Unknown, "not checked yet".into()),
        };
    }
    match systemd_state {
        Some("active") => (Status::Ok, "the systemd unit is active".into()),
        Some(s @ ("activating" | "deactivating" | "reloading")) => {
            (Status::Warning, format!("the systemd unit is {s}"))
        }
        Some("removed") => (Status::Unknown, "the systemd unit is gone".into()),
        Some(s) => (Status::Unknown, format!("the systemd unit is {s}")),
        None => (
            Status::Unknown,
            "no health check and no systemd unit".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_mapping() {
        use HealthStatus::*;
        let s = |h, c, st| derive_status(h, c, Some("HTTP 500"), st).0;
        assert_eq!(s(Healthy, true, None), Status::Ok);
        assert_eq!(s(Unhealthy, true, None), Status::Failure);
        assert_eq!(s(Unknown, true, None), Status::Unknown);
        assert_eq!(s(Healthy, true, Some("failed")), Status::Failure);
        assert_eq!(s(Unknown, false, Some("active")), Status::Ok);
        assert_eq!(s(Unknown, false, Some("activating")), Status::Warning);
        assert_eq!(s(Unknown, false, Some("inactive")), Status::Unknown);
        assert_eq!(s(Unknown, false, Some("removed")), Status::Unknown);
        assert_eq!(s(Unknown, false, None), Status::Unknown);
        assert!(derive_status(Unhealthy, true, Some("HTTP 500"), None)
            .1
            .contains("HTTP 500"));
    }

    #[test]
    fn wire_names_are_upper_case() {
        assert_eq!(
            serde_json::to_string(&Status::Failure).unwrap(),
            "\"FAILURE\""
        );
        assert_eq!(Status::parse("UPDATE"), Some(Status::Update));
        assert_eq!(Status::parse("ok"), None);
    }
}
