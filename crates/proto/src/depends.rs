//! Dependencies between services and self-healing rules, as requests name
//! them and the API shows them. Pure: whether a named service exists, and
//! whether the dependencies make a cycle, is the registry's to judge.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most services a service may depend on.
pub const DEPENDS_MAX: usize = 50;

/// A service a request names: by id, or by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ServiceRef {
    Id(i64),
    Name(String),
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceRef::Id(id) => write!(f, "service {id}"),
            ServiceRef::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// `depends_on`: a list of service ids or names, each once.
pub fn parse_depends_on(v: &Value) -> Result<Vec<ServiceRef>, crate::error::Invalid> {
    let items = v.as_array().ok_or_else(|| {
        format!(
            "must be a list of service ids or names, got {}",
            crate::service::kind(v)
        )
    })?;
    if items.len() > DEPENDS_MAX {
        return Err(format!("may name at most {DEPENDS_MAX} services").into());
    }
    let mut refs = Vec::with_capacity(items.len());
    for item in items {
        let r = match item {
            Value::Number(_) => {
                ServiceRef::Id(item.as_i64().filter(|id| *id > 0).ok_or_else(|| {
                    format!("must hold service ids (positive integers) or names, got {item}")
                })?)
            }
            Value::String(s) if !s.trim().is_empty() && s.len() <= 200 => {
                ServiceRef::Name(s.trim().to_owned())
            }
            _ => {
                return Err(format!(
                    "must hold service ids (positive integers) or names, got {item}"
                )
                .into())
            }
        };
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    Ok(refs)
}

/// The one remedy a rule takes: restart a unit (a container, once the hub
/// knows containers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HealAction {
    Restart,
}

/// Self-healing, as Monit does it: after `after` failed checks in a row,
/// restart `unit` (by default the service's own), at most `max_per_hour`
/// times in any hour; past that, alert and stop trying until the service
/// has recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealRule {
    /// Failed checks in a row before a restart (for a service the hub does
    /// not check, check intervals spent failing), 1-100.
    pub after: u32,
    #[serde(default = "restart")]
    pub action: HealAction,
    /// The unit to restart, on the service's host (an agent's server for
    /// its checks and units). Absent: the service's own unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Most restarts in any hour, 1-20.
    pub max_per_hour: u32,
}

fn restart() -> HealAction {
    HealAction::Restart
}

/// Failed checks before a restart.
pub const HEAL_AFTER: std::ops::RangeInclusive<u32> = 1..=100;
/// Restarts in an hour.
pub const HEAL_MAX_PER_HOUR: std::ops::RangeInclusive<u32> = 1..=20;

impl HealRule {
    /// Reads a rule, every problem named.
    pub fn parse(v: &Value) -> Result<Self, crate::error::Invalid> {
        let rule: HealRule = serde_json::from_value(v.clone()).map_err(|e| {
            format!("must be {{\"after\": 3, \"action\": \"restart\", \"unit\": \"app.service\", \"max_per_hour\": 3}}: {e}")
        })?;
        if !HEAL_AFTER.contains(&rule.after) {
            return Err(format!(
                "after must be {}-{} failed checks",
                HEAL_AFTER.start(),
                HEAL_AFTER.end()
            )
            .into());
        }
        if !HEAL_MAX_PER_HOUR.contains(&rule.max_per_hour) {
            return Err(format!(
                "max_per_hour must be {}-{} restarts",
                HEAL_MAX_PER_HOUR.start(),
                HEAL_MAX_PER_HOUR.end()
            )
            .into());
        }
        if let Some(unit) = &rule.unit {
            let ok = !unit.is_empty()
                && unit.len() <= 255
                && unit.contains('.')
                && unit
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@:._-\\".contains(&b));
            if !ok {
                return Err(format!("unit {unit:?} is not a systemd unit name").into());
            }
        }
        Ok(rule)
    }

    /// "After 3 failed checks, restart app.service, at most 2 times an hour".
    pub fn describe(&self, own_unit: Option<&str>) -> String {
        let unit = self.unit.as_deref().or(own_unit).unwrap_or("its unit");
        let checks = if self.after == 1 { "check" } else { "checks" };
        let times = if self.max_per_hour == 1 {
            "time"
        } else {
            "times"
        };
        format!(
            "After {} failed {checks}, restart {unit}, at most {} {times} an hour",
            self.after, self.max_per_hour
        )
    }
}

/// What a service is waiting on: the failing service at the root of its
/// dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaitingOn {
    pub id: i64,
    pub name: String,
}

/// What one healing attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HealOutcome {
    /// The unit was restarted.
    Restarted,
    /// The restart was asked for and did not happen (refused, failed, the
    /// agent offline): healing gives up at once, and the service alerts.
    Failed,
    /// The hour's restarts are spent: the service alerts, and healing stops
    /// until it has recovered.
    GaveUp,
}

/// One healing attempt, as the event stream and the service page show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Healing {
    pub service_id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The unit restarted (or that would have been).
    pub unit: String,
    /// The agent's server it runs on; absent: the hub's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<i64>,
    pub outcome: HealOutcome,
    /// Restarts in the hour up to this one.
    pub restarts_this_hour: u32,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depends_on_takes_ids_and_names_once_each() {
        let refs = parse_depends_on(&json!([3, "db", 3, " db "])).unwrap();
        assert_eq!(refs, vec![ServiceRef::Id(3), ServiceRef::Name("db".into())]);
        for bad in [
            json!("db"),
            json!([0]),
            json!([-1]),
            json!([true]),
            json!([""]),
        ] {
            assert!(parse_depends_on(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn heal_rules_are_bounded_and_name_a_unit() {
        let rule = HealRule::parse(&json!({"after": 3, "max_per_hour": 2})).unwrap();
        assert_eq!(rule.action, HealAction::Restart);
        assert_eq!(
            rule.describe(Some("app.service")),
            "After 3 failed checks, restart app.service, at most 2 times an hour"
        );
        for bad in [
            json!({"after": 0, "max_per_hour": 2}),
            json!({"after": 3, "max_per_hour": 21}),
            json!({"after": 3, "max_per_hour": 2, "unit": "a b.service"}),
            json!({"after": 3, "max_per_hour": 2, "action": "reboot"}),
            json!({"after": 3, "max_per_hour": 2, "extra": 1}),
            json!({"max_per_hour": 2}),
        ] {
            assert!(HealRule::parse(&bad).is_err(), "{bad}");
        }
    }
}
