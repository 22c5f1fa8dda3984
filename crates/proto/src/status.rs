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
//! Services that report in, when they have no HTTP check:
//!
//! | source | condition | status |
//! |---|---|---|
//! | heartbeat (seed 003) | last one within its TTL (default 60 s) | `OK` |
//! | heartbeat | none for longer than the TTL | `FAILURE` |
//! | push URL | last ping within period + grace | the status it sent (default `OK`) |
//! | push URL | no ping for longer than period + grace | `FAILURE` |
//! | push URL | never pinged | `UNKNOWN` |
//!
//! Check scripts (later) report `OK`/`UPDATE`/`WARNING`/`FAILURE` themselves.

use serde::{Deserialize, Serialize};

use crate::service::HealthStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// How a service is watched, with what was last heard of it: everything its
/// status is derived from. Pure data; [`ServiceKind::status`] applies the
/// rules of the tables above, so every engine and every hub decides alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind<'a> {
    /// A check script an agent runs on its server.
    AgentCheck {
        agent_online: bool,
        last: Option<(crate::check::LineStatus, &'a str)>,
    },
    /// Reports in by heartbeat, each within `ttl_secs` of the last.
    Heartbeat {
        seconds_since_last: Option<i64>,
        ttl_secs: i64,
    },
    /// Pings a push URL, each within `deadline_secs` (period + grace).
    Push {
        seconds_since_last: Option<i64>,
        deadline_secs: i64,
        reported: Status,
        message: Option<&'a str>,
    },
    /// Polled by the hub: an HTTP check, a systemd unit, both or neither.
    Polled {
        health: HealthStatus,
        has_http_check: bool,
        last_error: Option<&'a str>,
        systemd_state: Option<&'a str>,
    },
}

impl ServiceKind<'_> {
    /// The status now in force, with the reason a person reads.
    pub fn status(&self) -> (Status, String) {
        match *self {
            ServiceKind::AgentCheck { agent_online, last } => {
                agent_check_status(agent_online, last)
            }
            ServiceKind::Heartbeat {
                seconds_since_last,
                ttl_secs,
            } => passive_status("heartbeat", seconds_since_last, ttl_secs, Status::Ok, None),
            ServiceKind::Push {
                seconds_since_last,
                deadline_secs,
                reported,
                message,
            } => passive_status("ping", seconds_since_last, deadline_secs, reported, message),
            ServiceKind::Polled {
                health,
                has_http_check,
                last_error,
                systemd_state,
            } => derive_status(health, has_http_check, last_error, systemd_state),
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

/// The status of a service that reports in (a heartbeat or a push) rather
/// than being polled: what it last reported while it is on time, `FAILURE`
/// once `deadline_secs` have passed since it last reported, `UNKNOWN` before
/// the first report.
pub fn passive_status(
    what: &str,
    seconds_since_last: Option<i64>,
    deadline_secs: i64,
    reported: Status,
    message: Option<&str>,
) -> (Status, String) {
    match seconds_since_last {
        None => (Status::Unknown, format!("waiting for the first {what}")),
        Some(age) if age > deadline_secs => (
            Status::Failure,
            format!("no {what} for {age} s (expected within {deadline_secs} s)"),
        ),
        Some(_) => (
            reported,
            match message {
                Some(m) if !m.is_empty() => format!("{what}: {m}"),
                _ => format!("{what} received on time"),
            },
        ),
    }
}

/// The status of a check run by an agent: what its last result said, while
/// its agent is in touch. An `ERROR` (the check itself broke) and a silent
/// agent are `UNKNOWN`, never `FAILURE`: neither says the service is down.
pub fn agent_check_status(
    agent_online: bool,
    last: Option<(crate::check::LineStatus, &str)>,
) -> (Status, String) {
    use crate::check::LineStatus;
    if !agent_online {
        return (Status::Unknown, "the agent is offline".into());
    }
    let Some((status, message)) = last else {
        return (Status::Unknown, "waiting for the first result".into());
    };
    let status = match status {
        LineStatus::Ok => Status::Ok,
        LineStatus::Update => Status::Update,
        LineStatus::Warning => Status::Warning,
        LineStatus::Failure => Status::Failure,
        LineStatus::Unknown => Status::Unknown,
        LineStatus::Error => {
            return (
                Status::Unknown,
                format!("the check failed to run: {message}"),
            )
        }
    };
    let reason = if message.is_empty() {
        format!("check says {}", status.as_str())
    } else {
        message.to_owned()
    };
    (status, reason)
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
    fn passive_services_fail_when_late() {
        assert_eq!(
            passive_status("heartbeat", None, 60, Status::Ok, None).0,
            Status::Unknown
        );
        assert_eq!(
            passive_status("heartbeat", Some(60), 60, Status::Ok, None).0,
            Status::Ok
        );
        let (s, why) = passive_status("heartbeat", Some(61), 60, Status::Ok, None);
        assert_eq!(s, Status::Failure);
        assert!(why.contains("61 s"));
        assert_eq!(
            passive_status("ping", Some(1), 60, Status::Warning, Some("disk 91%")).1,
            "ping: disk 91%"
        );
    }

    #[test]
    fn agent_checks_are_unknown_when_broken_or_out_of_touch() {
        use crate::check::LineStatus;
        let s = |online, last| agent_check_status(online, last);
        assert_eq!(
            s(true, Some((LineStatus::Failure, "down"))),
            (Status::Failure, "down".into())
        );
        assert_eq!(
            s(true, Some((LineStatus::Update, "3 updates"))).0,
            Status::Update
        );
        let (status, why) = s(true, Some((LineStatus::Error, "exited with status 3")));
        assert_eq!(status, Status::Unknown);
        assert!(why.contains("failed to run: exited with status 3"), "{why}");
        assert_eq!(
            s(false, Some((LineStatus::Failure, "down"))).0,
            Status::Unknown
        );
        assert_eq!(s(true, None).0, Status::Unknown);
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

/// The share of `[start, end)` a service spent up, from its status changes.
///
/// `initial` is the status in force at `start` (the last change before it);
/// `changes` are `(time, new status)` in time order. `FAILURE` is down; `OK`,
/// `UPDATE` and `WARNING` are up (the service works, perhaps with a caveat);
/// `UNKNOWN` time is left out of the figure. `None` when nothing in the window
/// is known.
pub fn uptime(
    initial: Option<Status>,
    changes: &[(chrono::DateTime<chrono::Utc>, Status)],
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> Option<f64> {
    let (mut up, mut known) = (0i64, 0i64);
    let mut current = initial.unwrap_or(Status::Unknown);
    let mut from = start;
    let mut account =
        |status: Status, a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| {
            let ms = (b - a).num_milliseconds().max(0);
            match status {
                Status::Unknown => {}
                Status::Failure => known += ms,
                _ => {
                    known += ms;
                    up += ms;
                }
            }
        };
    for (at, status) in changes.iter().filter(|(at, _)| *at < end) {
        if *at > from {
            account(current, from, *at);
            from = *at;
        }
        current = *status;
    }
    account(current, from, end);
    (known > 0).then(|| up as f64 / known as f64)
}

#[cfg(test)]
mod uptime_tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn exact_on_a_constructed_history() {
        // 24 h window: up 0-6, down 6-9, up 9-24 → 21/24.
        let changes = [(t(6), Status::Failure), (t(9), Status::Ok)];
        assert_eq!(
            uptime(Some(Status::Ok), &changes, t(0), t(24)),
            Some(21.0 / 24.0)
        );
        // Unknown time is left out: unknown 0-12, up 12-18, down 18-24 → 6/12.
        let changes = [(t(12), Status::Ok), (t(18), Status::Failure)];
        assert_eq!(uptime(None, &changes, t(0), t(24)), Some(0.5));
        // Warnings count as up.
        assert_eq!(uptime(Some(Status::Warning), &[], t(0), t(1)), Some(1.0));
        // Nothing known.
        assert_eq!(uptime(None, &[], t(0), t(1)), None);
        // Changes after the end are ignored.
        assert_eq!(
            uptime(Some(Status::Ok), &[(t(30), Status::Failure)], t(0), t(24)),
            Some(1.0)
        );
    }
}
