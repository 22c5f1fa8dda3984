//! One status for every kind of service, whatever produced it.
//!
//! The four normalised statuses of check scripts plus `UNKNOWN` for "no data, not
//! checked, or stale". How each source maps onto them:
//!
//! | source | condition | status |
//! |---|---|---|
//! | the hub's check (HTTP, TCP, TLS, ICMP, DNS) | passes | `OK` |
//! | the hub's check | passes, but a condition marked WARNING fails (or the certificate is near expiry) | `WARNING` |
//! | the hub's check | timeout, refused, TLS error, other status, a failed condition | `FAILURE` |
//! | the hub's check | configured but not run yet, or cannot run here | `UNKNOWN` |
//! | systemd unit | `failed` | `FAILURE` (wins over a passing HTTP check) |
//! | container | not running (`exited`, `dead`, `created`, gone) | `FAILURE` (wins over a passing check) |
//! | container | running, its own health check `unhealthy` | `FAILURE`, with the check's output |
//! | container | `restarting`, `paused`, health check `starting` | `WARNING` |
//! | container, no HTTP check | running | `OK` |
//! | systemd unit | restarted automatically `crash_loop_restarts` times (default 5) and not yet up for 60 s | `FAILURE` (a crash loop) |
//! | systemd unit | `inactive` or restarting, HTTP check passing | `WARNING` (another process answers) |
//! | HTTP check failing | within the service's start period | `UNKNOWN` (starting) |
//! | systemd unit, no HTTP check | `active` | `OK` |
//! | systemd unit, no HTTP check | `activating`, `deactivating`, `reloading` | `WARNING` |
//! | systemd unit, no HTTP check | `inactive`, `removed` | `UNKNOWN` |
//! | neither | — | `UNKNOWN` |
//! | any | a service it depends on fails | `UNKNOWN` (waiting on the failing one at the root) |
//!
//! Services that report in, when they have no HTTP check:
//!
//! | source | condition | status |
//! |---|---|---|
//! | heartbeat (`POST /register`) | last one within its TTL (default 60 s) | `OK` |
//! | heartbeat | none for longer than the TTL | `FAILURE` |
//! | push URL | last ping within period + grace | the status it sent (default `OK`) |
//! | push URL | no ping for longer than period + grace | `FAILURE` |
//! | push URL | never pinged | `UNKNOWN` |
//!
//! Check scripts report `OK`/`UPDATE`/`WARNING`/`FAILURE` themselves.

use serde::{Deserialize, Serialize};

use crate::service::HealthStatus;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    Ok,
    Update,
    Warning,
    Failure,
    #[default]
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
    /// Paused by a person: neither checked nor judged.
    Paused,
    /// A service it depends on fails (`on`: the one at the root): its own
    /// failure would say nothing new.
    Waiting { on: &'a str },
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
        has_check: bool,
        last_error: Option<&'a str>,
        /// The last check passed with a condition marked WARNING failing.
        warning: Option<&'a str>,
        unit: Option<UnitFacts<'a>>,
        /// The container behind it, if any.
        container: Option<crate::container::ContainerFacts<'a>>,
        /// `Some(period)` while the service is within its start period,
        /// when failed checks do not count.
        starting: Option<u64>,
        rules: StatusRules,
    },
}

/// What systemd last said of a service's unit, as far as its status goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnitFacts<'a> {
    /// `active`, `failed`, `activating`, ... (`removed` once the unit is gone).
    pub active_state: &'a str,
    pub sub_state: Option<&'a str>,
    /// systemd's `NRestarts`: automatic restarts since the unit was last
    /// started by hand.
    pub restarts: u32,
    /// systemd's `Result` of the last run: `success`, `exit-code`, `signal`, ...
    pub result: Option<&'a str>,
    /// The main process's exit code, or its signal when `result` says so.
    pub exit_status: Option<i32>,
    /// Seconds since the unit last became active, while it is.
    pub up_secs: Option<i64>,
}

impl UnitFacts<'_> {
    /// Not running now: stopped, or waiting to be restarted.
    fn down(&self) -> bool {
        self.active_state == "inactive" || self.sub_state == Some("auto-restart")
    }

    /// Restarted `limit` times and not yet up for [`STABLE_AFTER_SECS`].
    /// Only while systemd keeps restarting it: a unit stopped or gone
    /// after a loop is not looping.
    fn crash_looping(&self, limit: u32) -> bool {
        let restarting = matches!(self.active_state, "activating" | "active" | "deactivating");
        restarting
            && self.restarts >= limit
            && !(self.active_state == "active"
                && self.up_secs.is_some_and(|up| up >= STABLE_AFTER_SECS))
    }

    /// How the last run ended, as a person reads it ("exit code 1").
    pub fn ending(&self) -> Option<String> {
        let code = self.exit_status;
        Some(match (self.result?, code) {
            ("success", _) => return None,
            ("exit-code", Some(203)) => "the program could not be run (exit code 203/EXEC)".into(),
            ("exit-code", Some(200)) => {
                "the working directory could not be used (exit code 200/CHDIR)".into()
            }
            ("exit-code", Some(217)) => "the user could not be set (exit code 217/USER)".into(),
            ("exit-code", Some(c)) => format!("exit code {c}"),
            ("signal", Some(n)) => format!("killed by {}", signal_name(n)),
            ("core-dump", Some(n)) => format!("dumped core ({})", signal_name(n)),
            ("timeout", _) => "timed out".into(),
            ("oom-kill", _) => "killed for lack of memory".into(),
            ("watchdog", _) => "the watchdog timed out".into(),
            ("start-limit-hit", _) => "restarted too often: systemd's start limit was hit".into(),
            ("resources", _) => "systemd could not set it up (resources)".into(),
            (other, _) => other.to_owned(),
        })
    }
}

fn signal_name(n: i32) -> String {
    let name = match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {n}"),
    };
    name.to_owned()
}

/// A unit that restarted this often is stable again once it has been up
/// this long.
pub const STABLE_AFTER_SECS: i64 = 60;

/// The hub-wide settings of the status rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRules {
    /// Automatic restarts without [`STABLE_AFTER_SECS`] up that make a crash loop.
    pub crash_loop_restarts: u32,
}

impl Default for StatusRules {
    fn default() -> Self {
        Self {
            crash_loop_restarts: 5,
        }
    }
}

impl ServiceKind<'_> {
    /// The status now in force, with the reason a person reads.
    pub fn status(&self) -> (Status, String) {
        match *self {
            ServiceKind::Paused => (Status::Unknown, "paused".to_owned()),
            ServiceKind::Waiting { on } => (Status::Unknown, format!("waiting on {on}")),
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
                has_check,
                last_error,
                warning,
                unit,
                container,
                starting,
                rules,
            } => {
                if let Some(c) = container {
                    // Not running, or its own health check failing: that
                    // stands whatever the hub's check says.
                    if let Some(verdict) = c.verdict() {
                        return verdict;
                    }
                    if !has_check && unit.is_none() {
                        return (
                            Status::Ok,
                            match c.health {
                                Some("healthy") => "the container is running and healthy".into(),
                                _ => "the container is running".into(),
                            },
                        );
                    }
                }
                polled_status(
                    health,
                    has_check,
                    Checked {
                        error: last_error,
                        warning,
                    },
                    unit,
                    starting,
                    rules,
                )
            }
        }
    }
}

/// What the last check said beyond passing or failing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checked<'a> {
    /// Why it failed.
    pub error: Option<&'a str>,
    /// Why it passed with a warning.
    pub warning: Option<&'a str>,
}

/// The status of a polled service from its check and its systemd
/// unit, with the reason a person reads.
pub fn polled_status(
    health: HealthStatus,
    has_check: bool,
    checked: Checked<'_>,
    unit: Option<UnitFacts<'_>>,
    starting: Option<u64>,
    rules: StatusRules,
) -> (Status, String) {
    if let Some(u) = unit {
        if u.active_state == "failed" {
            return (
                Status::Failure,
                match u.ending() {
                    Some(how) => format!("the systemd unit failed: {how}"),
                    None => "the systemd unit failed".into(),
                },
            );
        }
        if u.crash_looping(rules.crash_loop_restarts) {
            let mut why = format!(
                "crash loop: restarted {} times without staying up {STABLE_AFTER_SECS} s",
                u.restarts
            );
            if let Some(how) = u.ending() {
                why.push_str(": ");
                why.push_str(&how);
            }
            return (Status::Failure, why);
        }
    }
    if has_check {
        return match health {
            HealthStatus::Healthy => match unit.filter(UnitFacts::down) {
                Some(u) => (
                    Status::Warning,
                    format!(
                        "health check passed, but the systemd unit is {}: another process answers",
                        u.sub_state
                            .filter(|s| *s == "auto-restart")
                            .map_or(u.active_state, |_| "waiting to restart")
                    ),
                ),
                None => match checked.warning {
                    Some(why) => (
                        Status::Warning,
                        format!("health check passed with a warning: {why}"),
                    ),
                    None => (Status::Ok, "health check passed".into()),
                },
            },
            HealthStatus::Unhealthy => {
                let error = checked.error.unwrap_or("no answer");
                match starting {
                    Some(period) => (
                        Status::Unknown,
                        format!("starting ({period} s start period): health check failed: {error}"),
                    ),
                    None => (Status::Failure, format!("health check failed: {error}")),
                }
            }
            // A check that cannot run here says why (ping not allowed ...).
            HealthStatus::Unknown => match checked.error {
                Some(why) => (Status::Unknown, why.to_owned()),
                None => (Status::Unknown, "not checked yet".into()),
            },
        };
    }
    let Some(u) = unit else {
        return (
            Status::Unknown,
            "no health check and no systemd unit".into(),
        );
    };
    match u.active_state {
        "active" => (Status::Ok, "the systemd unit is active".into()),
        "activating" if u.sub_state == Some("auto-restart") => (
            Status::Warning,
            format!(
                "the systemd unit is waiting to restart (restart {})",
                u.restarts + 1
            ),
        ),
        s @ ("activating" | "deactivating" | "reloading") => {
            (Status::Warning, format!("the systemd unit is {s}"))
        }
        "removed" => (Status::Unknown, "the systemd unit is gone".into()),
        s => (Status::Unknown, format!("the systemd unit is {s}")),
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
    fn a_check_that_passed_with_a_warning_or_could_not_run_says_so() {
        let rules = StatusRules::default();
        let warned = Checked {
            error: None,
            warning: Some("[RESPONSE_TIME] < 300: was 512 ms"),
        };
        assert_eq!(
            polled_status(HealthStatus::Healthy, true, warned, None, None, rules),
            (
                Status::Warning,
                "health check passed with a warning: [RESPONSE_TIME] < 300: was 512 ms".into()
            )
        );
        let cannot = Checked {
            error: Some("cannot ping: net.ipv4.ping_group_range ..."),
            warning: None,
        };
        assert_eq!(
            polled_status(HealthStatus::Unknown, true, cannot, None, None, rules),
            (
                Status::Unknown,
                "cannot ping: net.ipv4.ping_group_range ...".into()
            )
        );
        assert_eq!(
            polled_status(
                HealthStatus::Unknown,
                true,
                Checked::default(),
                None,
                None,
                rules
            )
            .1,
            "not checked yet"
        );
    }

    fn unit(active_state: &str) -> Option<UnitFacts<'_>> {
        Some(UnitFacts {
            active_state,
            ..UnitFacts::default()
        })
    }

    fn derive_status(
        health: HealthStatus,
        has_check: bool,
        last_error: Option<&str>,
        state: Option<&str>,
    ) -> (Status, String) {
        polled_status(
            health,
            has_check,
            Checked {
                error: last_error,
                warning: None,
            },
            state.and_then(unit),
            None,
            StatusRules::default(),
        )
    }

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
    fn a_crash_loop_is_a_failure_until_the_unit_stays_up() {
        let rules = StatusRules::default();
        let looping = UnitFacts {
            active_state: "activating",
            sub_state: Some("auto-restart"),
            restarts: 5,
            result: Some("exit-code"),
            exit_status: Some(1),
            up_secs: None,
        };
        let (status, why) = polled_status(
            HealthStatus::Healthy,
            true,
            Checked::default(),
            Some(looping),
            None,
            rules,
        );
        assert_eq!(status, Status::Failure, "a passing check does not hide it");
        assert_eq!(
            why,
            "crash loop: restarted 5 times without staying up 60 s: exit code 1"
        );
        // Below the count it is restarting, not failed.
        let fewer = UnitFacts {
            restarts: 4,
            ..looping
        };
        assert_eq!(
            polled_status(
                HealthStatus::Unknown,
                false,
                Checked::default(),
                Some(fewer),
                None,
                rules
            ),
            (
                Status::Warning,
                "the systemd unit is waiting to restart (restart 5)".into()
            )
        );
        // Briefly up between crashes: still the loop.
        let up = UnitFacts {
            active_state: "active",
            sub_state: Some("running"),
            up_secs: Some(3),
            ..looping
        };
        assert_eq!(
            polled_status(
                HealthStatus::Unknown,
                false,
                Checked::default(),
                Some(up),
                None,
                rules
            )
            .0,
            Status::Failure
        );
        // Up for a minute: stable again.
        let stable = UnitFacts {
            up_secs: Some(60),
            ..up
        };
        assert_eq!(
            polled_status(
                HealthStatus::Unknown,
                false,
                Checked::default(),
                Some(stable),
                None,
                rules
            )
            .0,
            Status::Ok
        );
        // A missing program says so.
        let missing = UnitFacts {
            exit_status: Some(203),
            ..looping
        };
        assert!(polled_status(
            HealthStatus::Unknown,
            false,
            Checked::default(),
            Some(missing),
            None,
            rules
        )
        .1
        .contains("could not be run"));
        // Stopped after the loop: not looping.
        let stopped = UnitFacts {
            active_state: "inactive",
            sub_state: Some("dead"),
            ..looping
        };
        assert_eq!(
            polled_status(
                HealthStatus::Unknown,
                false,
                Checked::default(),
                Some(stopped),
                None,
                rules
            )
            .0,
            Status::Unknown
        );
        // The count is a setting.
        let strict = StatusRules {
            crash_loop_restarts: 2,
        };
        assert_eq!(
            polled_status(
                HealthStatus::Unknown,
                false,
                Checked::default(),
                Some(UnitFacts {
                    restarts: 2,
                    ..looping
                }),
                None,
                strict
            )
            .0,
            Status::Failure
        );
    }

    #[test]
    fn a_failed_unit_says_how_it_ended() {
        let killed = UnitFacts {
            active_state: "failed",
            sub_state: Some("failed"),
            result: Some("signal"),
            exit_status: Some(9),
            ..UnitFacts::default()
        };
        assert_eq!(
            polled_status(
                HealthStatus::Healthy,
                true,
                Checked::default(),
                Some(killed),
                None,
                StatusRules::default()
            ),
            (
                Status::Failure,
                "the systemd unit failed: killed by SIGKILL".into()
            )
        );
    }

    #[test]
    fn a_passing_check_does_not_vouch_for_a_stopped_unit() {
        let (status, why) = derive_status(HealthStatus::Healthy, true, None, Some("inactive"));
        assert_eq!(status, Status::Warning);
        assert!(why.contains("another process answers"), "{why}");
        assert_eq!(
            derive_status(HealthStatus::Healthy, true, None, Some("active")).0,
            Status::Ok
        );
    }

    #[test]
    fn failed_checks_in_the_start_period_are_not_red() {
        let rules = StatusRules::default();
        let active = unit("active");
        let (status, why) = polled_status(
            HealthStatus::Unhealthy,
            true,
            Checked {
                error: Some("connection refused"),
                warning: None,
            },
            active,
            Some(30),
            rules,
        );
        assert_eq!(status, Status::Unknown);
        assert_eq!(
            why,
            "starting (30 s start period): health check failed: connection refused"
        );
        assert_eq!(
            polled_status(
                HealthStatus::Healthy,
                true,
                Checked::default(),
                active,
                Some(30),
                rules
            )
            .0,
            Status::Ok
        );
        assert_eq!(
            polled_status(
                HealthStatus::Unhealthy,
                true,
                Checked::default(),
                active,
                None,
                rules
            )
            .0,
            Status::Failure
        );
        // A unit that failed is red at once, start period or not.
        assert_eq!(
            polled_status(
                HealthStatus::Unhealthy,
                true,
                Checked::default(),
                unit("failed"),
                Some(30),
                rules
            )
            .0,
            Status::Failure
        );
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
