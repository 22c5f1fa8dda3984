//! A Docker-compatible container engine, through its API socket: the
//! containers it has (state, health check, restarts, published ports,
//! image, Compose labels), its event stream, start/stop/restart and logs.
//!
//! Docker and Podman's API service (`podman system service`) both speak
//! this API. The client is pinned to API version 1.41, which both serve, so
//! no request is spent negotiating one.

// Outside tests a panic is a bug: what can fail returns an error.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RestartContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use lookout_proto::container::{ContainerName, ContainerView, PublishedPort};

pub use lookout_proto::container;

/// The API version asked for: served by Docker since 20.10 and by Podman 3
/// and later.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// How long a request may take (a stop waits for the container's own
/// stop timeout first).
const REQUEST_TIMEOUT_SECS: u64 = 60;

/// Seconds a container gets to stop on SIGTERM before it is killed.
pub const STOP_TIMEOUT_SECS: i32 = 10;

/// Containers inspected at once during a list.
const INSPECT_AT_ONCE: usize = 16;

/// At most this many log lines per request.
pub const MAX_LOG_LINES: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the container engine at {socket}: {message}")]
    Unreachable { socket: String, message: String },
    #[error("the container engine has no container named {0:?}")]
    NotFound(String),
    #[error("the container engine refused: {0}")]
    Engine(String),
}

/// Start, stop or restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }
}

/// One line a container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: Option<DateTime<Utc>>,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub message: String,
}

/// Something happened to a container (the engine's event, by its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub name: String,
    /// `start`, `die`, `health_status`, `remove`, ...
    pub action: String,
}

/// The engine's socket lookout would use by itself: `DOCKER_HOST` when it
/// names a Unix socket, else the first of Podman's and Docker's usual
/// sockets (the system's, then the user's) that exists.
pub fn auto_socket() -> Option<PathBuf> {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if let Some(path) = host.strip_prefix("unix://") {
            return Some(PathBuf::from(path));
        }
    }
    let mut candidates = vec![
        PathBuf::from("/run/podman/podman.sock"),
        PathBuf::from("/var/run/docker.sock"),
    ];
    if let Ok(runtime) = std::env::var("XDG_RUNTIME_DIR") {
        candidates.push(Path::new(&runtime).join("podman/podman.sock"));
        candidates.push(Path::new(&runtime).join("docker.sock"));
    }
    candidates.into_iter().find(|p| p.exists())
}

/// A handle on one engine; cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    socket: String,
}

impl Engine {
    /// A client of the engine at `socket` (no request is made yet).
    pub fn connect(socket: &Path) -> Result<Engine, Error> {
        let shown = socket.display().to_string();
        let docker = Docker::connect_with_unix(&shown, REQUEST_TIMEOUT_SECS, &API_VERSION)
            .map_err(|e| Error::Unreachable {
                socket: shown.clone(),
                message: e.to_string(),
            })?;
        Ok(Engine {
            docker,
            socket: shown,
        })
    }

    pub fn socket(&self) -> &str {
        &self.socket
    }

    fn error(&self, e: BollardError) -> Error {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => Error::NotFound(message),
            BollardError::DockerResponseServerError { message, .. } => Error::Engine(message),
            other => Error::Unreachable {
                socket: self.socket.clone(),
                message: other.to_string(),
            },
        }
    }

    /// Whether the engine answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.docker.ping().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Every container, running or not, in name order.
    pub async fn list(&self) -> Result<Vec<ContainerView>, Error> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error(e))?;
        let names: Vec<String> = summaries
            .iter()
            .filter_map(|s| s.names.as_ref()?.first())
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect();
        // A few at a time: an engine with hundreds of containers is not
        // asked for all of them at once.
        let inspected: Vec<_> = futures::stream::iter(names.into_iter().map(|name| {
            let this = self.clone();
            async move { this.inspect(&name).await }
        }))
        .buffered(INSPECT_AT_ONCE)
        .collect()
        .await;
        let mut containers = Vec::with_capacity(inspected.len());
        for found in inspected {
            // One removed between the list and its inspection is gone.
            if let Some(c) = found? {
                containers.push(c);
            }
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(containers)
    }

    /// One container as the engine describes it now; `None` when it has
    /// no container of that name.
    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerView>, Error> {
        match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => Ok(Some(view(i))),
            Err(e) => match self.error(e) {
                Error::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The engine's container events from now on, by container name; ends
    /// (or yields an error) when the connection does.
    pub fn events(&self) -> impl Stream<Item = Result<ContainerEvent, Error>> + Send + 'static {
        let mut filters = HashMap::new();
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        let this = self.clone();
        self.docker.events(Some(options)).filter_map(move |event| {
            let this = this.clone();
            async move {
                match event {
                    Err(e) => Some(Err(this.error(e))),
                    Ok(m) => {
                        let action = m.action.unwrap_or_default();
                        let name = m.actor?.attributes?.get("name")?.clone();
                        Some(Ok(ContainerEvent { name, action }))
                    }
                }
            }
        })
    }

    /// Starts, stops or restarts a container and says how it stands
    /// afterwards. Starting a running container or stopping a stopped one
    /// does nothing and is not an error.
    pub async fn control(
        &self,
        name: &ContainerName,
        action: Action,
    ) -> Result<ContainerView, Error> {
        let name = name.as_str();
        let done = match action {
            Action::Start => {
                self.docker
                    .start_container(name, None::<StartContainerOptions>)
                    .await
            }
            Action::Stop => {
                let options = StopContainerOptionsBuilder::default()
                    .t(STOP_TIMEOUT_SECS)
                    .build();
                self.docker.stop_container(name, Some(options)).await
            }
            Action::Restart => {
                let options = RestartContainerOptionsBuilder::default()
                    .t(STOP_TIMEOUT_SECS)
                    .build();
                self.docker.restart_container(name, Some(options)).await
            }
        };
        match done {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(self.error(e)),
        }
        self.inspect(name)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// The last `lines` lines a container wrote, stdout and stderr, oldest
    /// first.
    pub async fn logs(&self, name: &ContainerName, lines: u32) -> Result<Vec<LogLine>, Error> {
        let lines = lines.clamp(1, MAX_LOG_LINES).to_string();
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .tail(&lines)
            .build();
        let read = self
            .docker
            .logs(name.as_str(), Some(options))
            .collect::<Vec<_>>();
        let chunks = tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .map_err(|_| Error::Engine("the logs took longer than 20 s".into()))?;
        let mut out = Vec::new();
        for chunk in chunks {
            let (stream, bytes) = match chunk.map_err(|e| self.error(e))? {
                LogOutput::StdErr { message } => ("stderr", message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    ("stdout", message)
                }
                LogOutput::StdIn { .. } => continue,
            };
            for line in String::from_utf8_lossy(&bytes).lines() {
                out.push(log_line(stream, line));
            }
        }
        Ok(out)
    }
}

/// A line as the engine sends it with timestamps: an RFC 3339 time, a
/// space, the text.
fn log_line(stream: &'static str, line: &str) -> LogLine {
    let parsed = line.split_once(' ').and_then(|(t, rest)| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| (t.with_timezone(&Utc), rest))
    });
    match parsed {
        Some((time, rest)) => LogLine {
            time: Some(time),
            stream,
            message: rest.to_owned(),
        },
        None => LogLine {
            time: None,
            stream,
            message: line.to_owned(),
        },
    }
}

fn view(i: bollard::models::ContainerInspectResponse) -> ContainerView {
    let config = i.config.unwrap_or_default();
    let labels = config.labels.unwrap_or_default();
    let state = i.state.unwrap_or_default();
    let health = state.health.unwrap_or_default();
    let health_status = health
        .status
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "none");
    let health_output = health
        .log
        .unwrap_or_default()
        .pop()
        .and_then(|r| r.output)
        .map(|o| o.trim().chars().take(1000).collect::<String>())
        .filter(|o| !o.is_empty());
    let mut ports: Vec<PublishedPort> = i
        .network_settings
        .and_then(|n| n.ports)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(key, bindings)| {
            let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let container_port = port.parse::<u16>().unwrap_or(0);
            let protocol = protocol.to_owned();
            bindings
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |b| {
                    Some(PublishedPort {
                        host_ip: b.host_ip.filter(|ip| !ip.is_empty()),
                        host_port: b.host_port?.parse().ok()?,
                        container_port,
                        protocol: protocol.clone(),
                    })
                })
        })
        .collect();
    ports.sort_by_key(|p| (p.host_port, p.container_port));
    ports.dedup();
    ContainerView {
        name: i
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        id: i.id.unwrap_or_default().chars().take(12).collect(),
        image: config.image.unwrap_or_default(),
        state: state
            .status
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
        health: health_status,
        health_output,
        restarts: i
            .restart_count
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        exit_code: state.exit_code.filter(|_| state.running != Some(true)),
        ports,
        compose_project: labels.get("com.docker.compose.project").cloned(),
        compose_service: labels.get("com.docker.compose.service").cloned(),
        started_at: state
            .started_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| t.timestamp() > 0),
        pid: state
            .pid
            .filter(|_| state.running == Some(true))
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_keep_their_time_and_text() {
        let l = log_line("stderr", "2026-12-04T21:00:01.123456789Z tick 1");
        assert_eq!(l.message, "tick 1");
        assert_eq!(l.stream, "stderr");
        assert_eq!(
            l.time.map(|t| t.timestamp_millis()),
            Some(1_796_418_001_123)
        );
        let plain = log_line("stdout", "no time here");
        assert_eq!((plain.time, plain.message.as_str()), (None, "no time here"));
    }

    #[test]
    fn an_inspection_becomes_the_hubs_view() {
        let json = r#"{
            "Id": "0123456789abcdef0123", "Name": "/web", "RestartCount": 2,
            "State": {"Status": "running", "Running": true, "ExitCode": 0,
                      "StartedAt": "2026-12-04T21:00:00Z",
                      "Health": {"Status": "unhealthy", "FailingStreak": 3,
                                 "Log": [{"ExitCode": 1, "Output": "first"},
                                         {"ExitCode": 1, "Output": "wget: bad address\n"}]}},
            "Config": {"Image": "localhost/bbox:latest",
                       "Labels": {"com.docker.compose.project": "home",
                                  "com.docker.compose.service": "web"}},
            "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}],
                                          "53/udp": null}}
        }"#;
        let inspected: bollard::models::ContainerInspectResponse = serde_json_from(json);
        let v = view(inspected);
        assert_eq!(v.name, "web");
        assert_eq!(v.id, "0123456789ab");
        assert_eq!(v.state, "running");
        assert_eq!(v.health.as_deref(), Some("unhealthy"));
        assert_eq!(v.health_output.as_deref(), Some("wget: bad address"));
        assert_eq!(v.restarts, 2);
        assert_eq!(v.exit_code, None);
        assert_eq!(v.compose_project.as_deref(), Some("home"));
        assert_eq!(v.ports_text(), "127.0.0.1:18080→80/tcp");
        assert!(v.started_at.is_some());
    }

    fn serde_json_from<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_json::from_str(s).unwrap()
    }
}
