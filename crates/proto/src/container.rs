//! Containers of a Docker-compatible engine (Docker, or Podman's API
//! service): a container as the hub keeps and shows it, its name's
//! grammar, and what its state means for a service's status.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::status::Status;

/// A container as the engine last described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContainerView {
    /// Its name, without the engine's leading `/`.
    pub name: String,
    /// The engine's id, shortened to 12 characters.
    pub id: String,
    pub image: String,
    /// `created`, `running`, `paused`, `restarting`, `exited`, `dead`
    /// (`removed` once the engine no longer has it).
    pub state: String,
    /// The health check's verdict: `starting`, `healthy` or `unhealthy`;
    /// absent when the container has no health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// What the last health check printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_output: Option<String>,
    /// Restarts by the engine's restart policy.
    #[serde(default)]
    pub restarts: u32,
    /// The main process's exit code, once it has exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    /// The Compose project and service it belongs to (its
    /// `com.docker.compose.*` labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_service: Option<String>,
    /// When it last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// Its main process on the engine's host, while it runs (its cgroup is
    /// read for its resource usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// A port of a container published on its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishedPort {
    /// The host address it listens on (`0.0.0.0` for every address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl ContainerView {
    /// The state the hub keeps once the engine no longer has the container.
    pub fn removed(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            id: String::new(),
            image: String::new(),
            state: "removed".into(),
            health: None,
            health_output: None,
            restarts: 0,
            exit_code: None,
            ports: Vec::new(),
            compose_project: None,
            compose_service: None,
            started_at: None,
            pid: None,
        }
    }

    /// The published port a browser would open: 443, then 80, then the
    /// lowest TCP one.
    pub fn web_port(&self) -> Option<u16> {
        let tcp: Vec<u16> = self
            .ports
            .iter()
            .filter(|p| p.protocol == "tcp")
            .map(|p| p.host_port)
            .collect();
        [443, 80]
            .into_iter()
            .find(|p| tcp.contains(p))
            .or_else(|| tcp.iter().min().copied())
    }

    /// Its process is up: running, restarting or paused (what Stop and
    /// Restart apply to).
    pub fn up(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "paused")
    }

    /// Its state as a page shows it: `running · healthy`, `exited (3)`.
    pub fn state_text(&self) -> String {
        match (self.state.as_str(), self.health.as_deref(), self.exit_code) {
            ("running", Some(h), _) => format!("running · {h}"),
            ("exited", _, Some(code)) => format!("exited ({code})"),
            (s, _, _) => s.to_owned(),
        }
    }

    /// How a page colours its state: `active` (running, not unhealthy),
    /// `warning` (restarting, paused, or its health check starting),
    /// `failed` (unhealthy, or not running) or `inactive`.
    pub fn state_class(&self) -> &'static str {
        match (self.state.as_str(), self.health.as_deref()) {
            ("running", Some("unhealthy")) => "failed",
            ("running", Some("starting")) | ("restarting" | "paused", _) => "warning",
            ("running", _) => "active",
            ("exited" | "dead" | "removed" | "created", _) => "failed",
            _ => "inactive",
        }
    }

    /// The published ports as a person reads them (`127.0.0.1:8080→80/tcp`).
    pub fn ports_text(&self) -> String {
        self.ports
            .iter()
            .map(|p| {
                let host = match p.host_ip.as_deref() {
                    None | Some("" | "0.0.0.0" | "::") => String::new(),
                    Some(ip) => format!("{ip}:"),
                };
                format!("{host}{}→{}/{}", p.host_port, p.container_port, p.protocol)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A container's name as engines accept it: a letter or digit, then
/// letters, digits, `_`, `.` and `-`, at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerName(String);

impl ContainerName {
    pub fn parse(raw: &str) -> Result<Self, crate::error::Invalid> {
        let name = raw.strip_prefix('/').unwrap_or(raw);
        let mut chars = name.chars();
        match chars.next() {
            None => return Err("must not be empty".into()),
            Some(c) if !c.is_ascii_alphanumeric() => {
                return Err("must start with a letter or a digit".into())
            }
            Some(_) => {}
        }
        if name.len() > 128 {
            return Err("must be at most 128 characters".into());
        }
        if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c))) {
            return Err(
                format!("may hold only letters, digits, '_', '.' and '-', not {c:?}").into(),
            );
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContainerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the engine last said of a service's container, as far as its
/// status goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerFacts<'a> {
    pub state: &'a str,
    pub health: Option<&'a str>,
    pub health_output: Option<&'a str>,
    pub restarts: u32,
    pub exit_code: Option<i64>,
}

impl<'a> From<&'a ContainerView> for ContainerFacts<'a> {
    fn from(c: &'a ContainerView) -> Self {
        Self {
            state: &c.state,
            health: c.health.as_deref(),
            health_output: c.health_output.as_deref(),
            restarts: c.restarts,
            exit_code: c.exit_code,
        }
    }
}

impl ContainerFacts<'_> {
    /// Running, as far as a health check's answer goes (paused answers nothing).
    pub fn running(&self) -> bool {
        self.state == "running"
    }

    /// What the container's own state says, before any check of the hub's:
    /// a verdict that stands (not running, or its health check failing),
    /// or `None` when it runs and the hub's check (if any) decides.
    ///
    /// | state | status |
    /// |---|---|
    /// | `running`, health check `unhealthy` | `FAILURE`, with the check's output |
    /// | `exited`, `dead`, `created`, `removed` | `FAILURE` (not running) |
    /// | `restarting`, `paused`, health check `starting` | `WARNING` |
    /// | `running` (healthy, or no health check) | `OK` unless the hub's check says otherwise |
    pub fn verdict(&self) -> Option<(Status, String)> {
        match self.state {
            "running" => match self.health {
                Some("unhealthy") => Some((
                    Status::Failure,
                    match self.health_output.map(str::trim).filter(|o| !o.is_empty()) {
                        Some(out) => format!("the container's health check fails: {out}"),
                        None => "the container's health check fails".into(),
                    },
                )),
                Some("starting") => Some((
                    Status::Warning,
                    "the container is starting (its health check has not passed yet)".into(),
                )),
                _ => None,
            },
            "restarting" => Some((
                Status::Warning,
                format!(
                    "the container is restarting (restarted {} times)",
                    self.restarts
                ),
            )),
            "paused" => Some((Status::Warning, "the container is paused".into())),
            "removed" => Some((Status::Failure, "the container is gone".into())),
            "created" => Some((Status::Failure, "the container has not been started".into())),
            state => Some((
                Status::Failure,
                match self.exit_code {
                    Some(code) => format!("the container is {state} (exit code {code})"),
                    None => format!("the container is {state}"),
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: &str, health: Option<&'static str>) -> ContainerFacts<'static> {
        ContainerFacts {
            state: Box::leak(state.to_owned().into_boxed_str()),
            health,
            health_output: Some("wget: server returned error: HTTP/1.1 500\n"),
            restarts: 2,
            exit_code: Some(137),
        }
    }

    #[test]
    fn names_follow_the_engines_grammar() {
        assert_eq!(ContainerName::parse("/web-1").unwrap().as_str(), "web-1");
        assert!(ContainerName::parse("home_db.2").is_ok());
        for bad in ["", "-x", "a b", "a/b", "a;rm", "é"] {
            assert!(ContainerName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ContainerName::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn states_map_onto_the_status_model() {
        assert_eq!(facts("running", None).verdict(), None);
        assert_eq!(facts("running", Some("healthy")).verdict(), None);
        let (s, why) = facts("running", Some("unhealthy")).verdict().unwrap();
        assert_eq!(s, Status::Failure);
        assert!(why.ends_with("HTTP/1.1 500"), "{why}");
        assert_eq!(
            facts("running", Some("starting")).verdict().unwrap().0,
            Status::Warning
        );
        let (s, why) = facts("exited", None).verdict().unwrap();
        assert_eq!(
            (s, why.as_str()),
            (Status::Failure, "the container is exited (exit code 137)")
        );
        assert_eq!(
            facts("restarting", None).verdict().unwrap().0,
            Status::Warning
        );
        assert_eq!(facts("paused", None).verdict().unwrap().0, Status::Warning);
        assert_eq!(facts("removed", None).verdict().unwrap().0, Status::Failure);
    }

    #[test]
    fn pages_colour_the_state_as_the_status_reads_it() {
        let mut c = ContainerView::removed("web");
        for (state, health, class) in [
            ("running", None, "active"),
            ("running", Some("healthy"), "active"),
            ("running", Some("starting"), "warning"),
            ("running", Some("unhealthy"), "failed"),
            ("restarting", None, "warning"),
            ("paused", None, "warning"),
            ("exited", None, "failed"),
            ("removed", None, "failed"),
        ] {
            c.state = state.into();
            c.health = health.map(str::to_owned);
            assert_eq!(c.state_class(), class, "{state} {health:?}");
        }
        c.state = "exited".into();
        c.exit_code = Some(3);
        assert_eq!((c.state_text(), c.up()), ("exited (3)".to_owned(), false));
        c.state = "running".into();
        c.health = Some("healthy".into());
        assert_eq!(
            (c.state_text(), c.up()),
            ("running · healthy".to_owned(), true)
        );
    }

    #[test]
    fn the_web_port_prefers_443_then_80_then_the_lowest() {
        let port = |host_port, protocol: &str| PublishedPort {
            host_ip: Some("127.0.0.1".into()),
            host_port,
            container_port: 80,
            protocol: protocol.into(),
        };
        let mut c = ContainerView::removed("web");
        c.ports = vec![port(9000, "tcp"), port(53, "udp"), port(8080, "tcp")];
        assert_eq!(c.web_port(), Some(8080));
        c.ports.push(port(80, "tcp"));
        assert_eq!(c.web_port(), Some(80));
        assert_eq!(
            c.ports_text(),
            "127.0.0.1:9000→80/tcp, 127.0.0.1:53→80/udp, 127.0.0.1:8080→80/tcp, 127.0.0.1:80→80/tcp"
        );
    }
}
