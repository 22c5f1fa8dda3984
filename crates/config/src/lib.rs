//! The hub's settings: defaults, then a TOML file, then `LOOKOUT_*` environment
//! variables, then command-line flags (the last one wins; `layers.rs` merges
//! them with figment). Every value is validated before anything starts, and
//! a bad one is reported in one line that names where it came from.

// Outside tests a panic is a bug: what can fail returns an error, and the
// few invariants that cannot say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod layers;
mod settings;

pub use layers::{as_text, read_file};

pub use lookout_proto::systemd::Scope;
pub use settings::{
    parse_trusted, AuthMode, AuthSettings, ForwardAuth, NotifySettings, Rate, RateLimits, WebPorts,
};

use lookout_proto::error::Invalid;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a raw setting value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    File(PathBuf),
}

/// A setting as given, before validation.
#[derive(Debug, Clone)]
pub struct RawValue {
    pub value: String,
    pub origin: Origin,
}

/// One setting lookout understands: its key in the TOML file, flag and variable.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    pub key: &'static str,
    pub help: &'static str,
}

impl SettingSpec {
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }

    pub fn env(&self) -> String {
        format!("LOOKOUT_{}", self.key.to_ascii_uppercase())
    }
}

/// Every setting of `lookout serve`, in the order `--help` shows them.
pub const SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: "listen",
        help: "address to serve HTTP on",
    },
    SettingSpec {
        key: "data_dir",
        help: "directory for the SQLite database",
    },
    SettingSpec {
        key: "database",
        help: "database URL (sqlite://PATH or postgres://USER:PASSWORD@HOST/DB)",
    },
    SettingSpec {
        key: "check_interval",
        help: "default health-check interval (e.g. 60s, 5m)",
    },
    SettingSpec {
        key: "check_timeout",
        help: "default health-check timeout (e.g. 2s, 500ms)",
    },
    SettingSpec {
        key: "check_concurrency",
        help: "health checks allowed in flight at once (default 1024)",
    },
    SettingSpec {
        key: "header_timeout",
        help: "how long a client has to send a request's headers; also how long a keep-alive connection may stay idle (default 15s)",
    },
    SettingSpec {
        key: "max_body",
        help: "largest accepted request body (e.g. 64KiB)",
    },
    SettingSpec {
        key: "heartbeat_ttl",
        help: "a heartbeat service is DOWN after this long without one (default 60s)",
    },
    SettingSpec {
        key: "heartbeat_remove_after",
        help:
            "silent heartbeat services are removed after this long (default 24h; 60s removes them a minute after their last heartbeat)",
    },
    SettingSpec {
        key: "notify_reminder",
        help: "remind every so often while a service stays failing (default 1h; off to disable)",
    },
    SettingSpec {
        key: "public_url",
        help: "the hub's address as people reach it (https://lookout.home.lan): alerts link to the service's page there",
    },
    SettingSpec {
        key: "web_push_http",
        help: "let browsers subscribe to Web Push through a push service reached over plain HTTP (a self-hosted one on your network): on or off (default off: HTTPS only)",
    },
    SettingSpec {
        key: "retention",
        help: "how long raw check results are kept (default 7d)",
    },
    SettingSpec {
        key: "hub_id",
        help: "this hub's name among hubs sharing one PostgreSQL database (default: host name and a random suffix; \"local\" on SQLite)",
    },
    SettingSpec {
        key: "check_lease",
        help: "how long a hub's hold on its share of the health checks lasts unrenewed; another hub takes over a dead hub's checks within it (default 15s)",
    },
    SettingSpec {
        key: "self_check",
        help: "register this hub as a service and check its own /readyz: on (default) or off",
    },
    SettingSpec {
        key: "systemd",
        help: "systemd manager to discover and control: system (default), user or none",
    },
    SettingSpec {
        key: "containers",
        help: "container engine to discover and control (Docker, or Podman's API service): auto (default: $DOCKER_HOST, else the usual Podman and Docker sockets that exist), off, or the path of its API socket",
    },
    SettingSpec {
        key: "scan_every",
        help: "full systemd scan this often, beside following the manager's signals live (default 5m; off to scan only on start, reconnect and request)",
    },
    SettingSpec {
        key: "usage_every",
        help: "sample what the host and each running unit use (CPU, memory, tasks, IO, disks, network) this often (default 10s; off to disable)",
    },
    SettingSpec {
        key: "usage_raw_keep",
        help: "how long raw usage samples are kept; 1-minute figures are kept a day and 15-minute ones 90 days (default 1h)",
    },
    SettingSpec {
        key: "watch",
        help: "units to register as services once found, by pattern: comma-separated unit names with * and ? (e.g. *.service or backup-*.timer, which watches the services those timers start); default none",
    },
    SettingSpec {
        key: "monitors",
        help: "a file of services kept as code: TOML ([[service]] tables with the API's fields), or Gatus's YAML (endpoints:) when it ends in .yaml or .yml; loaded at start and followed on change; default none",
    },
    SettingSpec {
        key: "crash_loop_restarts",
        help: "automatic restarts of a unit, without staying up a minute, that make it FAILURE (default 5)",
    },
    SettingSpec {
        key: "web_ports",
        help: "ports that mark a web service (default 80,443,3000-9999)",
    },
    SettingSpec {
        key: "log",
        help: "log filter (tracing EnvFilter syntax)",
    },
    SettingSpec {
        key: "agent_heartbeat",
        help: "how often agents send a heartbeat; an agent is offline after three missed (default 10s)",
    },
    SettingSpec {
        key: "claim_ttl",
        help: "how long an agent's one-time claim token is valid (default 1h)",
    },
    SettingSpec {
        key: "auth",
        help: "required (accounts and tokens) or off (no login); default: off on a loopback address without trusted proxies, required otherwise",
    },
    SettingSpec {
        key: "two_factor",
        help: "optional (each account chooses) or admins (admins act as viewers until they set up two-factor sign-in); default optional",
    },
    SettingSpec {
        key: "forward_auth",
        help: "off, or on: believe the user a --trusted-proxies proxy names in its headers (single sign-on through Authelia, Authentik, oauth2-proxy); default off",
    },
    SettingSpec {
        key: "forward_auth_headers",
        help: "the proxy's user, e-mail and groups headers, comma-separated (default Remote-User,Remote-Email,Remote-Groups)",
    },
    SettingSpec {
        key: "forward_auth_admins",
        help: "groups whose members are admins, comma-separated; other users the proxy names are viewers (default admins)",
    },
    SettingSpec {
        key: "forward_auth_create",
        help: "true: a user the proxy names who has no account gets one (default false: only existing accounts)",
    },
    SettingSpec {
        key: "forward_auth_logout",
        help: "the proxy's logout URL, where Log out sends the browser",
    },
    SettingSpec {
        key: "session_ttl",
        help: "how long a browser session lasts after login (default 7d)",
    },
    SettingSpec {
        key: "access_token_ttl",
        help: "how long an API access token from a login lasts (default 15m)",
    },
    SettingSpec {
        key: "trusted_proxies",
        help: "reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For/-Proto/-Host are believed",
    },
    SettingSpec {
        key: "tls_cert",
        help: "PEM certificate chain: serve HTTPS (with --tls-key)",
    },
    SettingSpec {
        key: "tls_key",
        help: "PEM private key of --tls-cert",
    },
    SettingSpec {
        key: "rate_login",
        help: "login attempts per client per minute (default 10/min; off)",
    },
    SettingSpec {
        key: "rate_control",
        help: "start/stop/restart requests per client per minute (default 10/min; off)",
    },
    SettingSpec {
        key: "rate_logs",
        help: "log reads per client per minute (default 30/min; off)",
    },
    SettingSpec {
        key: "rate_agents",
        help: "agent connections per client address per minute (default 60/min; off)",
    },
    SettingSpec {
        key: INSECURE_FLAG,
        help: "serve on a non-loopback address WITHOUT authentication: anyone who can reach it controls the hub",
    },
];

/// The loudly named setting that allows an unauthenticated hub on the network.
pub const INSECURE_FLAG: &str = "insecure_no_auth_on_network";

/// A configuration error, one line, naming the setting and its source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The validated configuration of a hub.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub checks: CheckDefaults,
    pub max_body_bytes: usize,
    /// A client must send a request's headers within this; a keep-alive
    /// connection idle this long is closed.
    pub header_timeout: Duration,
    pub log: String,
    /// `None`: no systemd integration.
    pub systemd: Option<Scope>,
    /// How units are followed: full scans beside the live signals.
    pub follow: FollowSettings,
    /// Resource usage sampling.
    pub usage: UsageSettings,
    /// The container engine discovered and controlled.
    pub containers: ContainerEngine,
    /// Unit name patterns: units found that match are registered.
    pub watch: Vec<String>,
    /// A file of services kept as code, followed on change.
    pub monitors: Option<PathBuf>,
    /// Settings of the status rules (crash loops).
    pub rules: lookout_proto::status::StatusRules,
    pub web_ports: WebPorts,
    /// How long raw health results are kept.
    pub retention: Duration,
    pub heartbeat_ttl: Duration,
    /// Agents: heartbeat interval and claim token lifetime.
    pub agents: AgentSettings,
    pub heartbeat_remove_after: Duration,
    pub notify: NotifySettings,
    pub auth: AuthSettings,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// Sharing the work with other hubs on the same database.
    pub cluster: ClusterSettings,
    /// The hub registers itself as a service, checked at its `/readyz`.
    pub self_check: bool,
}

/// Which container engine the hub talks to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ContainerEngine {
    /// `$DOCKER_HOST`, else the first of the usual sockets that exists.
    #[default]
    Auto,
    Off,
    /// The engine's API socket.
    Socket(PathBuf),
}

/// How the hub follows its host's systemd manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowSettings {
    /// A full scan this often, as a safety net beside the live signals;
    /// `None`: only at start, after a reconnect and on request.
    pub scan_every: Option<Duration>,
}

impl Default for FollowSettings {
    fn default() -> Self {
        Self {
            scan_every: Some(Duration::from_secs(300)),
        }
    }
}

/// How the hub samples resource usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSettings {
    /// The sampling interval; `None`: no sampling.
    pub every: Option<Duration>,
    /// How long raw samples are kept.
    pub raw_keep: Duration,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            every: Some(Duration::from_secs(10)),
            raw_keep: Duration::from_secs(3600),
        }
    }
}

/// How hubs on one database share the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This hub's name in the `hubs` table; `None`: chosen at start.
    pub hub_id: Option<String>,
    /// A check lease's length; renewed every third of it.
    pub check_lease: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            hub_id: None,
            check_lease: Duration::from_secs(15),
        }
    }
}

/// Settings of the agents' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSettings {
    /// Agents send a heartbeat this often; three missed make them offline.
    pub heartbeat: Duration,
    /// A claim token is valid this long.
    pub claim_ttl: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            claim_ttl: Duration::from_secs(3600),
        }
    }
}

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Health-check settings that apply when a service does not set its own.
#[derive(Debug, Clone, Copy)]
pub struct CheckDefaults {
    pub interval: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
}

impl Default for CheckDefaults {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
            concurrency: 1024,
        }
    }
}

/// Which database the hub stores its data in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://...`), which several hubs may share.
    Postgres(String),
}

impl DatabaseUrl {
    /// How the database is named in messages: the file, or the URL without
    /// its password.
    pub fn display(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => path.display().to_string(),
            DatabaseUrl::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    u.to_string()
                }
                Err(_) => "postgres://…".into(),
            },
        }
    }
}

impl Config {
    /// A configuration with every default, serving on `listen` and storing in `data_dir`.
    /// Tests and embedders start from this.
    pub fn with_data_dir(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            database: DatabaseUrl::Sqlite(data_dir.join(DB_FILE)),
            data_dir,
            checks: CheckDefaults::default(),
            max_body_bytes: DEFAULT_MAX_BODY,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            log: "info".into(),
            systemd: None,
            follow: FollowSettings::default(),
            usage: UsageSettings::default(),
            containers: ContainerEngine::Off,
            watch: Vec::new(),
            monitors: None,
            rules: lookout_proto::status::StatusRules::default(),
            web_ports: WebPorts::default(),
            retention: DEFAULT_RETENTION,
            heartbeat_ttl: Duration::from_secs(60),
            agents: AgentSettings::default(),
            heartbeat_remove_after: Duration::from_secs(86_400),
            notify: NotifySettings::default(),
            auth: AuthSettings::default(),
            tls: None,
            cluster: ClusterSettings::default(),
            // An embedded hub's registry holds only what its embedder puts
            // there; `lookout serve` turns this on unless told not to.
            self_check: false,
        }
    }

    /// Validates and combines the layers. `overrides` holds the flags and
    /// environment variables the CLI saw (already ranked: a flag beats a
    /// variable); `file` is the `--config` path, if any.
    pub fn load(
        file: Option<&Path>,
        overrides: BTreeMap<&'static str, RawValue>,
    ) -> Result<Self, ConfigError> {
        let table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", path.display()))
                })?;
                Some((path, read_file(&text, path)?))
            }
            None => None,
        };
        Self::from_sources(table.as_ref().map(|(p, t)| (*p, t)), &overrides)
    }

    /// The whole path from a config file's table (see [`read_file`]) and the
    /// flags and variables to a configuration, without the filesystem
    /// (fuzzed): the layers merged, then validated.
    pub fn from_sources(
        file: Option<(&Path, &toml::Table)>,
        overrides: &BTreeMap<&'static str, RawValue>,
    ) -> Result<Self, ConfigError> {
        Self::from_layers(&layers::merge(file, overrides)?)
    }

    /// Validates settings already merged, each with the layer that set it
    /// (see [`Config::from_sources`]).
    pub fn from_layers(raw: &BTreeMap<&'static str, RawValue>) -> Result<Self, ConfigError> {
        let get = |key: &str| raw.get(key);

        let listen = match get("listen") {
            Some(v) => parse(v, "listen", |s| {
                s.parse::<SocketAddr>()
                    .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:8000 or [::]:8000".to_owned())
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
        };
        let data_dir = match get("data_dir") {
            Some(v) => parse(v, "data_dir", |s| {
                if s.is_empty() {
                    Err("must not be empty".to_owned())
                } else {
                    Ok(PathBuf::from(s))
                }
            })?,
            None => default_data_dir()?,
        };
        let database = match get("database") {
            Some(v) => parse(v, "database", parse_database_url)?,
            None => DatabaseUrl::Sqlite(data_dir.join(DB_FILE)),
        };
        let defaults = CheckDefaults::default();
        let interval = match get("check_interval") {
            Some(v) => parse(v, "check_interval", |s| {
                parse_duration(s)
                    .and_then(|d| within(d, Duration::from_secs(1), Duration::from_secs(86_400)))
            })?,
            None => defaults.interval,
        };
        let timeout = match get("check_timeout") {
            Some(v) => parse(v, "check_timeout", |s| {
                parse_duration(s)
                    .and_then(|d| within(d, Duration::from_millis(50), Duration::from_secs(120)))
            })?,
            None => defaults.timeout,
        };
        let concurrency = match get("check_concurrency") {
            Some(v) => parse(v, "check_concurrency", |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=65_536).contains(n))
                    .ok_or_else(|| "expected a whole number from 1 to 65536".to_owned())
            })?,
            None => defaults.concurrency,
        };
        let max_body_bytes = match get("max_body") {
            Some(v) => parse(v, "max_body", |s| s.parse::<Size>().map(|Size(n)| n))?,
            None => DEFAULT_MAX_BODY,
        };
        let header_timeout = match get("header_timeout") {
            Some(v) => parse(v, "header_timeout", |s| {
                parse_duration(s)
                    .and_then(|d| within(d, Duration::from_secs(1), Duration::from_secs(600)))
            })?,
            None => DEFAULT_HEADER_TIMEOUT,
        };
        let log = get("log").map_or_else(|| "info".to_owned(), |v| v.value.clone());
        let systemd = match get("systemd") {
            Some(v) => parse(v, "systemd", |s| match s {
                "system" => Ok(Some(Scope::System)),
                "user" => Ok(Some(Scope::User)),
                "none" => Ok(None),
                _ => Err("expected system, user or none".to_owned()),
            })?,
            None => Some(Scope::System),
        };
        let containers = match get("containers") {
            Some(v) => parse(v, "containers", |s| match s {
                "auto" => Ok(ContainerEngine::Auto),
                "off" => Ok(ContainerEngine::Off),
                path if path.starts_with('/') => Ok(ContainerEngine::Socket(PathBuf::from(path))),
                path if path.starts_with("unix:///") => Ok(ContainerEngine::Socket(PathBuf::from(
                    path.trim_start_matches("unix://"),
                ))),
                _ => {
                    Err("expected auto, off or the absolute path of the engine's socket".to_owned())
                }
            })?,
            None => ContainerEngine::Auto,
        };
        let retention = match get("retention") {
            Some(v) => parse(v, "retention", |s| {
                parse_duration(s).and_then(|d| {
                    within(
                        d,
                        Duration::from_secs(3600),
                        Duration::from_secs(3650 * 86_400),
                    )
                })
            })?,
            None => DEFAULT_RETENTION,
        };
        let heartbeat_ttl = match get("heartbeat_ttl") {
            Some(v) => parse(v, "heartbeat_ttl", |s| {
                parse_duration(s).and_then(|d| {
                    within(d, Duration::from_secs(1), Duration::from_secs(30 * 86_400))
                })
            })?,
            None => Duration::from_secs(60),
        };
        let mut cluster = ClusterSettings::default();
        if let Some(v) = get("hub_id") {
            cluster.hub_id = Some(parse(v, "hub_id", |s| {
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
                if ok {
                    Ok(s.to_owned())
                } else {
                    Err("expected 1 to 64 letters, digits, '-', '_', '.' or ':'".to_owned())
                }
            })?);
        }
        if let Some(v) = get("check_lease") {
            cluster.check_lease = parse(v, "check_lease", |s| {
                parse_duration(s)
                    .and_then(|d| within(d, Duration::from_secs(1), Duration::from_secs(3600)))
            })?;
        }
        let self_check = match get("self_check") {
            Some(v) => parse(v, "self_check", |s| match s {
                "on" | "true" | "yes" | "1" => Ok(true),
                "off" | "false" | "no" | "0" => Ok(false),
                _ => Err("expected on or off".to_owned()),
            })?,
            None => true,
        };
        let mut agents = AgentSettings::default();
        if let Some(v) = get("agent_heartbeat") {
            agents.heartbeat = parse(v, "agent_heartbeat", |s| {
                parse_duration(s)
                    .and_then(|d| within(d, Duration::from_secs(1), Duration::from_secs(3600)))
            })?;
        }
        if let Some(v) = get("claim_ttl") {
            agents.claim_ttl = parse(v, "claim_ttl", |s| {
                parse_duration(s).and_then(|d| {
                    within(d, Duration::from_secs(60), Duration::from_secs(30 * 86_400))
                })
            })?;
        }
        let heartbeat_remove_after = match get("heartbeat_remove_after") {
            Some(v) => parse(v, "heartbeat_remove_after", |s| {
                parse_duration(s).and_then(|d| {
                    within(
                        d,
                        Duration::from_secs(1),
                        Duration::from_secs(3650 * 86_400),
                    )
                })
            })?,
            None => Duration::from_secs(86_400),
        };
        let mut notify = NotifySettings::default();
        if let Some(v) = get("notify_reminder") {
            notify.reminder = parse(v, "notify_reminder", |s| {
                if s == "off" {
                    Ok(None)
                } else {
                    parse_duration(s)
                        .and_then(|d| {
                            within(d, Duration::from_secs(60), Duration::from_secs(30 * 86_400))
                        })
                        .map(Some)
                }
            })?;
        }
        if let Some(v) = get("public_url") {
            notify.public_url = Some(parse(v, "public_url", parse_public_url)?);
        }
        if let Some(v) = get("web_push_http") {
            notify.web_push_http = parse(v, "web_push_http", |s| match s {
                "on" | "true" | "yes" | "1" => Ok(true),
                "off" | "false" | "no" | "0" => Ok(false),
                _ => Err("expected on or off".to_owned()),
            })?;
        }
        let web_ports = match get("web_ports") {
            Some(v) => parse(v, "web_ports", WebPorts::parse)?,
            None => WebPorts::default(),
        };
        let mut follow = FollowSettings::default();
        if let Some(v) = get("scan_every") {
            follow.scan_every = parse(v, "scan_every", |s| {
                if s == "off" {
                    Ok(None)
                } else {
                    parse_duration(s)
                        .and_then(|d| {
                            within(d, Duration::from_secs(10), Duration::from_secs(86_400))
                        })
                        .map(Some)
                }
            })?;
        }
        let mut usage = UsageSettings::default();
        if let Some(v) = get("usage_every") {
            usage.every = parse(v, "usage_every", |s| {
                if s == "off" {
                    Ok(None)
                } else {
                    parse_duration(s)
                        .and_then(|d| within(d, Duration::from_secs(1), Duration::from_secs(3600)))
                        .map(Some)
                }
            })?;
        }
        if let Some(v) = get("usage_raw_keep") {
            usage.raw_keep = parse(v, "usage_raw_keep", |s| {
                parse_duration(s).and_then(|d| {
                    within(d, Duration::from_secs(900), Duration::from_secs(7 * 86_400))
                })
            })?;
        }
        let watch = match get("watch") {
            Some(v) => parse(v, "watch", |s| {
                let patterns: Vec<String> = s
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                for pattern in &patterns {
                    lookout_proto::systemd::check_unit_pattern(pattern)?;
                }
                Ok::<_, Invalid>(patterns)
            })?,
            None => Vec::new(),
        };
        let monitors = match get("monitors") {
            Some(v) => Some(parse(v, "monitors", |s| {
                if s.is_empty() {
                    Err("expected the path of a file".to_owned())
                } else {
                    Ok(PathBuf::from(s))
                }
            })?),
            None => None,
        };
        let mut rules = lookout_proto::status::StatusRules::default();
        if let Some(v) = get("crash_loop_restarts") {
            rules.crash_loop_restarts = parse(v, "crash_loop_restarts", |s| {
                s.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| "expected a whole number from 1 to 1000".to_owned())
            })?;
        }

        let insecure = match get(INSECURE_FLAG) {
            Some(v) => parse(v, INSECURE_FLAG, |s| match s {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" | "" => Ok(false),
                _ => Err("expected true or false".to_owned()),
            })?,
            None => false,
        };
        let mut auth = AuthSettings::default();
        if let Some(v) = get("trusted_proxies") {
            auth.trusted_proxies = parse(v, "trusted_proxies", parse_trusted)?;
        }
        auth.mode = match get("auth") {
            Some(v) => parse(v, "auth", |s| match s {
                "required" => Ok(AuthMode::Required),
                "off" => Ok(AuthMode::Off),
                _ => Err("expected required or off".to_owned()),
            })?,
            // Personal use on one machine needs no login; the
            // network does.
            // A hub behind a reverse proxy is published, even on loopback.
            None if !auth.trusted_proxies.is_empty() => AuthMode::Required,
            None if listen.ip().is_loopback() => AuthMode::Off,
            None if insecure => AuthMode::Off,
            None => AuthMode::Required,
        };
        if auth.mode == AuthMode::Off && !listen.ip().is_loopback() && !insecure {
            return Err(ConfigError(format!(
                "refusing to listen on {listen} with --auth off: anyone on the network could \
                 control this hub and its systemd units; use --auth required (the default off \
                 loopback), or pass --insecure-no-auth-on-network to accept the risk"
            )));
        }
        if let Some(v) = get("two_factor") {
            auth.two_factor_admins = parse(v, "two_factor", |s| match s {
                "optional" => Ok(false),
                "admins" => Ok(true),
                _ => Err("expected optional or admins".to_owned()),
            })?;
        }
        auth.forward = forward_auth(&get, &auth)?;
        if let Some(v) = get("session_ttl") {
            auth.session_ttl = parse(v, "session_ttl", |s| {
                parse_duration(s).and_then(|d| {
                    within(
                        d,
                        Duration::from_secs(60),
                        Duration::from_secs(365 * 86_400),
                    )
                })
            })?;
        }
        if let Some(v) = get("access_token_ttl") {
            auth.access_ttl = parse(v, "access_token_ttl", |s| {
                parse_duration(s)
                    .and_then(|d| within(d, Duration::from_secs(60), Duration::from_secs(86_400)))
            })?;
        }
        for (key, slot) in [
            ("rate_login", &mut auth.rate_limits.login),
            ("rate_control", &mut auth.rate_limits.control),
            ("rate_logs", &mut auth.rate_limits.logs),
            ("rate_agents", &mut auth.rate_limits.agents),
        ] {
            if let Some(v) = get(key) {
                *slot = parse(v, key, Rate::parse)?;
            }
        }
        let path = |key: &str| {
            get(key)
                .map(|v| {
                    parse(v, key, |s| {
                        if s.is_empty() {
                            Err("must not be empty".to_owned())
                        } else {
                            Ok(PathBuf::from(s))
                        }
                    })
                })
                .transpose()
        };
        let tls = match (path("tls_cert")?, path("tls_key")?) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError(
                    "--tls-cert needs --tls-key (the certificate's private key)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "--tls-key needs --tls-cert (the certificate chain)".into(),
                ))
            }
        };
        auth.tls = tls.is_some();
        auth.loopback = listen.ip().is_loopback();
        Ok(Self {
            listen,
            data_dir,
            database,
            checks: CheckDefaults {
                interval,
                timeout,
                concurrency,
            },
            max_body_bytes,
            header_timeout,
            log,
            systemd,
            follow,
            usage,
            containers,
            watch,
            monitors,
            rules,
            web_ports,
            retention,
            heartbeat_ttl,
            agents,
            heartbeat_remove_after,
            notify,
            auth,
            tls,
            cluster,
            self_check,
        })
    }
}

/// Name of the SQLite file inside the data directory.
pub const DB_FILE: &str = "lookout.db";
const DEFAULT_MAX_BODY: usize = 64 * 1024;
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

fn default_data_dir() -> Result<PathBuf, ConfigError> {
    directories::ProjectDirs::from("", "", "lookout")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| {
            ConfigError(
                "cannot find a home directory for the default data_dir; set --data-dir or LOOKOUT_DATA_DIR".into(),
            )
        })
}

/// The hub's address for links: an `http(s)` URL with no query or fragment,
/// kept without its trailing `/`.
fn parse_public_url(s: &str) -> Result<String, Invalid> {
    let url = url::Url::parse(s).map_err(|_| format!("{s:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("needs http:// or https:// and a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("takes no query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn parse<T, E: std::fmt::Display>(
    raw: &RawValue,
    key: &str,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ConfigError> {
    #[allow(
        clippy::expect_used,
        reason = "callers pass keys of SETTINGS; the config tests parse every one"
    )]
    let spec = SETTINGS
        .iter()
        .find(|s| s.key == key)
        .expect("every parsed key is in SETTINGS");
    f(raw.value.trim()).map_err(|why| {
        let source = match &raw.origin {
            Origin::Flag => spec.flag(),
            Origin::Env => spec.env(),
            Origin::File(p) => format!("{} in config file {}", spec.key, p.display()),
        };
        ConfigError(format!("invalid {source} {:?}: {why}", raw.value))
    })
}

/// A comma-separated list, trimmed, without empty items.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn flag(s: &str) -> Result<bool, Invalid> {
    match s {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// Single sign-on through a reverse proxy, when `forward_auth` is on. It
/// needs `trusted_proxies`: the headers are believed from those alone.
fn forward_auth<'a>(
    get: &impl Fn(&str) -> Option<&'a RawValue>,
    auth: &AuthSettings,
) -> Result<Option<ForwardAuth>, ConfigError> {
    let on = match get("forward_auth") {
        Some(v) => parse(v, "forward_auth", flag)?,
        None => false,
    };
    if !on {
        return Ok(None);
    }
    if auth.trusted_proxies.is_empty() {
        return Err(ConfigError(
            "--forward-auth needs --trusted-proxies: the identity headers are believed only \
             from the proxies named there"
                .into(),
        ));
    }
    let mut forward = ForwardAuth::default();
    if let Some(v) = get("forward_auth_headers") {
        let names = parse(v, "forward_auth_headers", |s| {
            let names = list(s);
            let valid = |n: &String| header_name(n);
            match names.as_slice() {
                [user, email, groups] if names.iter().all(valid) => {
                    Ok((user.clone(), email.clone(), groups.clone()))
                }
                _ => Err("expected three header names: user, e-mail, groups".to_owned()),
            }
        })?;
        (
            forward.user_header,
            forward.email_header,
            forward.groups_header,
        ) = names;
    }
    if let Some(v) = get("forward_auth_admins") {
        forward.admin_groups = parse(v, "forward_auth_admins", |s| Ok::<_, Invalid>(list(s)))?;
    }
    if let Some(v) = get("forward_auth_create") {
        forward.create_accounts = parse(v, "forward_auth_create", flag)?;
    }
    if let Some(v) = get("forward_auth_logout") {
        forward.logout_url = Some(parse(v, "forward_auth_logout", |s| {
            url::Url::parse(s)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .map(|_| s.to_owned())
                .ok_or_else(|| "expected an http:// or https:// URL".to_owned())
        })?);
    }
    Ok(Some(forward))
}

/// An HTTP header name: letters, digits and `-`.
fn header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn parse_database_url(s: &str) -> Result<DatabaseUrl, Invalid> {
    if let Some(rest) = s
        .strip_prefix("sqlite://")
        .or_else(|| s.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(
                "names no file; use sqlite:///absolute/path.db or sqlite://relative.db".into(),
            );
        }
        return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let url = url::Url::parse(s).map_err(|e| format!("is not a valid PostgreSQL URL: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) && !url.query().unwrap_or("").contains("host=")
        {
            return Err("names no host; use postgres://USER:PASSWORD@HOST:PORT/DATABASE".into());
        }
        return Ok(DatabaseUrl::Postgres(s.to_owned()));
    }
    Err("expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE".into())
}

/// Parses a duration as humantime writes them (`500ms`, `2s`, `5m`, `1h
/// 30m`, `7d`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, Invalid> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| "too long".into());
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("expected a duration such as 500ms, 2s, 5m or 1h ({e})").into())
}

fn within(d: Duration, min: Duration, max: Duration) -> Result<Duration, Invalid> {
    if d < min || d > max {
        Err(format!("must be between {min:?} and {max:?}").into())
    } else {
        Ok(d)
    }
}

/// A size in bytes as settings write it: `65536`, `64KiB` (or `K`, `KB`,
/// `k`), `1MiB` (or `M`, `MB`); between 1 KiB and 64 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl std::str::FromStr for Size {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: usize = num
            .parse()
            .map_err(|_| "expected a size such as 65536, 64KiB or 1MiB".to_owned())?;
        let factor = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" | "KB" | "k" => 1024,
            "MiB" | "M" | "MB" => 1024 * 1024,
            other => return Err(format!("unknown unit {other:?}; use B, KiB or MiB").into()),
        };
        let bytes = n.saturating_mul(factor);
        if !(1024..=64 * 1024 * 1024).contains(&bytes) {
            return Err("must be between 1KiB and 64MiB".into());
        }
        Ok(Size(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(pairs: &[(&'static str, &str, Origin)]) -> BTreeMap<&'static str, RawValue> {
        pairs
            .iter()
            .map(|(k, v, o)| {
                (
                    *k,
                    RawValue {
                        value: (*v).to_owned(),
                        origin: o.clone(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_layers(&layers(&[("data_dir", "/tmp/x", Origin::Flag)])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.database, DatabaseUrl::Sqlite("/tmp/x/lookout.db".into()));
        assert_eq!(c.checks.interval, Duration::from_secs(60));
        assert_eq!(c.checks.timeout, Duration::from_secs(2));
    }

    #[test]
    fn errors_name_the_setting_and_its_source() {
        let e = Config::from_layers(&layers(&[("listen", "nonsense", Origin::Env)])).unwrap_err();
        assert!(
            e.0.starts_with("invalid LOOKOUT_LISTEN \"nonsense\""),
            "{e}"
        );
        let e = Config::from_layers(&layers(&[("check_timeout", "2 parsecs", Origin::Flag)]))
            .unwrap_err();
        assert!(e.0.starts_with("invalid --check-timeout"), "{e}");
        let e = Config::from_layers(&layers(&[(
            "database",
            "mysql://x",
            Origin::File("/etc/l.toml".into()),
        )]))
        .unwrap_err();
        assert!(
            e.0.starts_with("invalid database in config file /etc/l.toml"),
            "{e}"
        );
        assert!(!e.0.contains('\n'));
    }

    #[test]
    fn the_bind_address_decides_the_default_auth_and_off_needs_a_loud_flag() {
        let at = |listen: &'static str, extra: &[(&'static str, &str)]| {
            let mut l = vec![
                ("listen", listen, Origin::Flag),
                ("data_dir", "/tmp/x", Origin::Flag),
            ];
            l.extend(extra.iter().map(|(k, v)| (*k, *v, Origin::Flag)));
            Config::from_layers(&layers(&l))
        };
        // Loopback: no login by default, required on request.
        assert_eq!(at("127.0.0.1:8000", &[]).unwrap().auth.mode, AuthMode::Off);
        assert_eq!(at("[::1]:8000", &[]).unwrap().auth.mode, AuthMode::Off);
        let c = at("127.0.0.1:8000", &[("auth", "required")]).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Required);
        assert!(!c.auth.two_factor_admins, "each account chooses by default");
        let c = at("127.0.0.1:8000", &[("two_factor", "admins")]).unwrap();
        assert!(c.auth.two_factor_admins);
        let e = at("127.0.0.1:8000", &[("two_factor", "always")]).unwrap_err();
        assert!(e.0.contains("expected optional or admins"), "{e}");
        // Single sign-on through a proxy: only with proxies to believe.
        assert_eq!(c.auth.forward, None);
        let e = at("127.0.0.1:8000", &[("forward_auth", "on")]).unwrap_err();
        assert!(e.0.contains("needs --trusted-proxies"), "{e}");
        let proxy = ("trusted_proxies", "127.0.0.2");
        let c = at("127.0.0.1:8000", &[proxy, ("forward_auth", "on")]).unwrap();
        assert_eq!(c.auth.forward, Some(ForwardAuth::default()));
        let c = at(
            "127.0.0.1:8000",
            &[
                proxy,
                ("forward_auth", "true"),
                ("forward_auth_headers", "X-User, X-Mail, X-Groups"),
                ("forward_auth_admins", "ops, root"),
                ("forward_auth_create", "true"),
                ("forward_auth_logout", "https://auth.home.lan/logout"),
            ],
        )
        .unwrap();
        let forward = c.auth.forward.unwrap();
        assert_eq!(
            (forward.user_header.as_str(), forward.groups_header.as_str()),
            ("X-User", "X-Groups")
        );
        assert_eq!(forward.admin_groups, ["ops", "root"]);
        assert!(forward.create_accounts);
        assert_eq!(
            forward.logout_url.as_deref(),
            Some("https://auth.home.lan/logout")
        );
        for (key, bad) in [
            ("forward_auth_headers", "X-User, X-Mail"),
            ("forward_auth_headers", "X User, X-Mail, X-Groups"),
            ("forward_auth_logout", "javascript:alert(1)"),
            ("forward_auth_create", "maybe"),
        ] {
            let e = at(
                "127.0.0.1:8000",
                &[proxy, ("forward_auth", "on"), (key, bad)],
            );
            assert!(e.is_err(), "{key} = {bad:?}");
        }
        // Any other address: required by default; off is refused...
        assert_eq!(
            at("0.0.0.0:8000", &[]).unwrap().auth.mode,
            AuthMode::Required
        );
        let e = at("0.0.0.0:8000", &[("auth", "off")]).unwrap_err();
        assert!(
            e.0.starts_with("refusing to listen on 0.0.0.0:8000 with --auth off"),
            "{e}"
        );
        assert!(e.0.contains("--insecure-no-auth-on-network"), "{e}");
        // ...unless the user says so, loudly.
        let c = at("0.0.0.0:8000", &[("auth", "off"), (INSECURE_FLAG, "true")]).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Off);
        // Behind a reverse proxy the hub is published: required unless said otherwise.
        let c = at("127.0.0.1:8000", &[("trusted_proxies", "127.0.0.1")]).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Required);
        let c = at(
            "127.0.0.1:8000",
            &[("trusted_proxies", "127.0.0.1"), ("auth", "off")],
        )
        .unwrap();
        assert_eq!(c.auth.mode, AuthMode::Off);
        let e = at("127.0.0.1:8000", &[("auth", "maybe")]).unwrap_err();
        assert!(e.0.starts_with("invalid --auth \"maybe\""), "{e}");
    }

    #[test]
    fn tls_needs_both_files_and_limits_parse() {
        let e = Config::from_layers(&layers(&[
            ("data_dir", "/tmp/x", Origin::Flag),
            ("tls_cert", "/etc/c.pem", Origin::Flag),
        ]))
        .unwrap_err();
        assert!(e.0.contains("--tls-cert needs --tls-key"), "{e}");
        let c = Config::from_layers(&layers(&[
            ("data_dir", "/tmp/x", Origin::Flag),
            ("tls_cert", "/etc/c.pem", Origin::Flag),
            ("tls_key", "/etc/k.pem", Origin::Flag),
            ("rate_control", "off", Origin::Flag),
            ("trusted_proxies", "10.0.0.0/8", Origin::Flag),
        ]))
        .unwrap();
        assert!(c.auth.tls && c.tls.is_some());
        assert_eq!(c.auth.rate_limits.control, None);
        assert_eq!(c.auth.trusted_proxies.len(), 1);
        let e = Config::from_layers(&layers(&[
            ("data_dir", "/tmp/x", Origin::Flag),
            ("trusted_proxies", "proxy", Origin::Env),
        ]))
        .unwrap_err();
        assert!(e.0.starts_with("invalid LOOKOUT_TRUSTED_PROXIES"), "{e}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert!(parse_duration("2 parsecs").is_err());
        assert_eq!("64KiB".parse::<Size>(), Ok(Size(65536)));
        assert_eq!("1MiB".parse::<Size>(), Ok(Size(1024 * 1024)));
        assert!("1".parse::<Size>().is_err());
        assert!("1GiB".parse::<Size>().is_err());
    }

    #[test]
    fn a_file_that_is_not_toml_is_reported_in_one_line() {
        // Found by fuzzing (config_file): toml's message had a line break.
        let e = read_file("check_timeout =of \"[rever\"]\n", Path::new("/etc/l.toml")).unwrap_err();
        assert!(
            e.0.starts_with("config file /etc/l.toml is not valid TOML: invalid string; expected"),
            "{e}"
        );
        assert!(!e.0.contains('\n'), "{e}");
    }

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            parse_database_url("sqlite:///var/lib/l.db").unwrap(),
            DatabaseUrl::Sqlite("/var/lib/l.db".into())
        );
        assert_eq!(
            parse_database_url("sqlite://rel.db?mode=rwc").unwrap(),
            DatabaseUrl::Sqlite("rel.db".into())
        );
        assert!(parse_database_url("sqlite://").is_err());
        assert_eq!(
            parse_database_url("postgres://u:pw@h:5432/db").unwrap(),
            DatabaseUrl::Postgres("postgres://u:pw@h:5432/db".into())
        );
        assert_eq!(
            DatabaseUrl::Postgres("postgres://u:pw@h:5432/db".into()).display(),
            "postgres://u:***@h:5432/db"
        );
        assert!(parse_database_url("postgres://").is_err());
        assert!(parse_database_url("mysql://h/db").is_err());
    }

    #[test]
    fn the_public_url_is_an_http_address_without_its_trailing_slash() {
        assert_eq!(
            parse_public_url("https://lookout.home.lan/").unwrap(),
            "https://lookout.home.lan"
        );
        assert_eq!(
            parse_public_url("http://10.0.0.2:8000/lookout/").unwrap(),
            "http://10.0.0.2:8000/lookout"
        );
        for bad in [
            "lookout.home.lan",
            "ftp://x",
            "https://x/?a=1",
            "https://x/#top",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }
}
