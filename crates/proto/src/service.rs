//! Services: the registry's objects as they travel over the API, and the
//! validated values a create or update request is turned into.
//!
//! Requests are parsed field by field from a JSON object rather than with a
//! derived `Deserialize`, so that one bad request reports *every* offending field
//! with a message a person can act on, and so that both payload shapes in use
//! (`base_url`, or `url` with a reported `status`) are accepted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::condition::{parse_conditions, Condition, ConditionSpec};
use crate::error::FieldError;
use crate::monitor::{DnsQuery, HttpSettings, ProbeSettings, Target, TlsSettings};

/// Longest accepted service name, in characters.
pub const NAME_MAX_CHARS: usize = 255;
/// Longest accepted description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 4096;
/// Longest accepted URL or endpoint, in bytes.
pub const URL_MAX_LEN: usize = 2048;
/// Most tags a service may have.
pub const TAGS_MAX: usize = 16;
/// Longest accepted tag, in characters.
pub const TAG_MAX_CHARS: usize = 32;

/// Accepted range for a per-service check interval, in seconds.
pub const INTERVAL_RANGE_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;
/// Accepted range for a per-service check timeout, in milliseconds.
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 50..=120_000;

/// Where a service stands in the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RegistryStatus {
    /// Found in systemd, not listening on a web port.
    Raw,
    /// Found in systemd and looks like a web service, not yet registered.
    Discovered,
    /// Registered by the user; shown on the dashboard and health-checked.
    #[default]
    Configured,
}

impl RegistryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryStatus::Raw => "raw",
            RegistryStatus::Discovered => "discovered",
            RegistryStatus::Configured => "configured",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(RegistryStatus::Raw),
            "discovered" => Some(RegistryStatus::Discovered),
            "configured" => Some(RegistryStatus::Configured),
            _ => None,
        }
    }
}

/// Result of the HTTP health check (the dashboard's green, red and gray dots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HealthStatus {
    /// The endpoint answered with a 2xx status.
    Healthy,
    /// Timeout, refused connection, TLS failure or a non-2xx status.
    Unhealthy,
    /// Not checked: no health endpoint, or no check has run yet.
    #[default]
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "healthy" => Some(HealthStatus::Healthy),
            "unhealthy" => Some(HealthStatus::Unhealthy),
            "unknown" => Some(HealthStatus::Unknown),
            _ => None,
        }
    }
}

/// The state a client reports for a service it registers (the `status`
/// field). It is what the client says, not what lookout measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReportedState {
    Active,
    Inactive,
    Failed,
}

impl ReportedState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportedState::Active => "active",
            ReportedState::Inactive => "inactive",
            ReportedState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(ReportedState::Active),
            "inactive" => Some(ReportedState::Inactive),
            "failed" => Some(ReportedState::Failed),
            _ => None,
        }
    }
}

/// A service name: 1 to 255 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn parse(raw: &str) -> Result<Self, crate::error::Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.chars().count() > NAME_MAX_CHARS {
            return Err(format!("must be at most {NAME_MAX_CHARS} characters").into());
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An absolute URL with a host and without credentials, in one of the
/// schemes a check can reach ([`crate::monitor::SCHEMES`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl(Url);

impl BaseUrl {
    pub fn parse(raw: &str) -> Result<Self, crate::error::Invalid> {
        let raw = raw.trim();
        if raw.len() > URL_MAX_LEN {
            return Err(format!("must be at most {URL_MAX_LEN} bytes").into());
        }
        let url = Url::parse(raw).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => {
                "needs http:// or https:// (or tcp://, tls://, icmp://, dns://, host://) before the host, \
                 e.g. http://192.168.1.10:8080"
                    .to_owned()
            }
            url::ParseError::InvalidPort => {
                "has a port that is not a number from 1 to 65535".into()
            }
            url::ParseError::EmptyHost => "must name a host".into(),
            url::ParseError::IdnaError => {
                "has a host name with characters a host name cannot have (a space?)".into()
            }
            url::ParseError::InvalidIpv4Address | url::ParseError::InvalidIpv6Address => {
                "has an IP address that is not one".into()
            }
            other => format!("is not a URL such as http://host:8080 or tcp://host:5432 ({other})"),
        })?;
        crate::monitor::Target::from_url(&url)?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(
                "must not contain a query string or fragment; put the path in health_endpoint"
                    .into(),
            );
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The URL as stored and shown: without the trailing slash `url` adds to a bare host.
    pub fn to_display(&self) -> String {
        let s = self.0.as_str();
        if self.0.path() == "/" {
            s.trim_end_matches('/').to_owned()
        } else {
            s.to_owned()
        }
    }

    /// The port the URL names or implies (80 for http, 443 for https).
    pub fn port(&self) -> Option<u16> {
        self.0.port_or_known_default()
    }

    /// What a check of this URL reaches.
    pub fn target(&self) -> crate::monitor::Target {
        // Checked when parsed.
        crate::monitor::Target::from_url(&self.0)
            .unwrap_or_else(|_| crate::monitor::Target::Http(self.0.clone()))
    }
}

/// A path on the service, starting with `/`, e.g. `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthEndpoint(String);

impl HealthEndpoint {
    pub fn parse(raw: &str) -> Result<Self, crate::error::Invalid> {
        let path = raw.trim();
        if !path.starts_with('/') {
            return Err("must start with \"/\"".into());
        }
        if path.len() > URL_MAX_LEN {
            return Err(format!("must be at most {URL_MAX_LEN} bytes").into());
        }
        if path.starts_with("//") {
            return Err("must be a path on the service, not a URL of another host".into());
        }
        if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain spaces or control characters".into());
        }
        Ok(Self(path.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The URL the health checker requests: `base_url` with `health_endpoint` appended.
pub fn health_url(base_url: &str, endpoint: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), endpoint)
}

/// How long a start period may be: up to an hour.
pub const START_PERIOD_RANGE_SECS: std::ops::RangeInclusive<u64> = 0..=3600;

/// A validated request to create a service.
#[derive(Debug, Clone, PartialEq)]
pub struct NewService {
    pub name: ServiceName,
    pub description: Option<String>,
    pub base_url: Option<BaseUrl>,
    pub port: Option<u16>,
    pub health_endpoint: Option<HealthEndpoint>,
    pub reported_state: Option<ReportedState>,
    pub check_interval_secs: Option<u64>,
    pub check_timeout_ms: Option<u64>,
    pub muted: Option<bool>,
    pub paused: Option<bool>,
    pub maintenance_until: Option<DateTime<Utc>>,
    /// A planned window begins here (absent: it began when it was set).
    pub maintenance_from: Option<DateTime<Utc>>,
    pub maintenance_window: Option<crate::schedule::RecurringWindow>,
    pub notify_after: Option<u64>,
    pub start_period_secs: Option<u64>,
    pub retry_interval_secs: Option<u64>,
    pub conditions: Vec<Condition>,
    pub probe: ProbeSettings,
    /// Labels to group and filter by (`media`, `home lab`), as typed.
    pub tags: Vec<String>,
    /// The channels it notifies, by id; empty for every channel.
    pub channels: Vec<i64>,
    /// The services it depends on; the registry resolves names to ids.
    pub depends_on: Vec<crate::depends::ServiceRef>,
    /// Self-healing.
    pub heal: Option<crate::depends::HealRule>,
    /// Declared in a monitors file (never from a request body).
    pub from_file: bool,
}

/// A validated partial update. The outer `Option` says whether the field was sent;
/// the inner one whether it is being set or cleared (`null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServicePatch {
    pub name: Option<ServiceName>,
    pub description: Option<Option<String>>,
    pub base_url: Option<Option<BaseUrl>>,
    pub port: Option<Option<u16>>,
    pub health_endpoint: Option<Option<HealthEndpoint>>,
    pub reported_state: Option<Option<ReportedState>>,
    pub check_interval_secs: Option<Option<u64>>,
    pub check_timeout_ms: Option<Option<u64>>,
    pub muted: Option<Option<bool>>,
    pub paused: Option<Option<bool>>,
    pub maintenance_until: Option<Option<DateTime<Utc>>>,
    pub maintenance_from: Option<Option<DateTime<Utc>>>,
    pub maintenance_window: Option<Option<crate::schedule::RecurringWindow>>,
    pub notify_after: Option<Option<u64>>,
    pub start_period_secs: Option<Option<u64>>,
    pub retry_interval_secs: Option<Option<u64>>,
    /// `Some(vec![])` clears them.
    pub conditions: Option<Vec<Condition>>,
    /// `Some(vec![])` clears them.
    pub tags: Option<Vec<String>>,
    /// `Some(vec![])`: every channel again.
    pub channels: Option<Vec<i64>>,
    /// `Some(vec![])`: none.
    pub depends_on: Option<Vec<crate::depends::ServiceRef>>,
    pub heal: Option<Option<crate::depends::HealRule>>,
    pub http: Option<Option<HttpSettings>>,
    pub tls: Option<Option<TlsSettings>>,
    pub dns: Option<Option<DnsQuery>>,
    /// The probe settings the service gets: `http`, `tls` and `dns` over
    /// what it has ([`ServicePatch::resolve_probe`]), which the store writes.
    pub probe: Option<ProbeSettings>,
}

impl ServicePatch {
    pub fn is_empty(&self) -> bool {
        *self == ServicePatch::default()
    }

    /// Sets [`ServicePatch::probe`] from `http`, `tls` and `dns` over the
    /// service's `current` settings. A header sent back as [`HIDDEN`] (as
    /// the API shows credentials) keeps its stored value.
    pub fn resolve_probe(&mut self, current: &ProbeSettings) {
        if self.http.is_none() && self.tls.is_none() && self.dns.is_none() {
            return;
        }
        let mut probe = current.clone();
        if let Some(http) = &self.http {
            let mut http = http.clone();
            if let Some(new) = &mut http {
                let stored = current.http.as_ref().map(|h| &h.headers);
                for (name, value) in &mut new.headers {
                    if value == HIDDEN {
                        let kept = stored.and_then(|headers| {
                            headers
                                .iter()
                                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v)
                        });
                        if let Some(kept) = kept {
                            value.clone_from(kept);
                        }
                    }
                }
                // A placeholder with nothing behind it is never sent.
                new.headers.retain(|_, value| value != HIDDEN);
            }
            probe.http = http;
        }
        if let Some(tls) = &self.tls {
            probe.tls.clone_from(tls);
        }
        if let Some(dns) = &self.dns {
            probe.dns.clone_from(dns);
        }
        self.probe = Some(probe);
    }
}

/// Fields a client may send that are part of a service object as returned by the
/// API but cannot be written. They are ignored so that a GET-modify-PUT round
/// trip works.
pub const READ_ONLY_FIELDS: &[&str] = &[
    "id",
    "waiting_on",
    "heartbeat_ip",
    "heartbeat_ttl_secs",
    "last_heartbeat",
    "push",
    "state",
    "state_reason",
    "state_since",
    "unit",
    "sub_state",
    "unit_file_state",
    "container",
    "main_pid",
    "pids",
    "ports",
    "restarts",
    "unit_result",
    "exit_status",
    "active_since",
    "systemd_state",
    "health_status",
    "last_health_check",
    "last_response_code",
    "last_latency_ms",
    "last_error",
    "last_scanned_at",
    "created_at",
    "updated_at",
    "health_url",
    "check_kind",
    "cert_expires_at",
    "source",
    "server_id",
    "check",
];

/// The fields a client may write (create and update); the API description
/// documents exactly these.
pub const WRITABLE_FIELDS: &[&str] = &[
    "name",
    "description",
    "base_url",
    "url",
    "port",
    "health_endpoint",
    "status",
    "reported_state",
    "check_interval_secs",
    "check_timeout_ms",
    "muted",
    "paused",
    "maintenance_until",
    "maintenance_from",
    "maintenance_window",
    "notify_after",
    "start_period_secs",
    "retry_interval_secs",
    "conditions",
    "tags",
    "channels",
    "depends_on",
    "heal",
    "http",
    "tls",
    "dns",
];

/// Parses a create request. Every problem is reported, not just the first.
pub fn parse_new_service(body: &Map<String, Value>) -> Result<NewService, Vec<FieldError>> {
    let mut errors = Vec::new();
    let patch = parse_fields(body, &mut errors);
    if !body.contains_key("name") {
        errors.push(FieldError::new("name", "is required"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(name) = patch.name else {
        // `name` was present but null.
        return Err(vec![FieldError::new("name", "is required")]);
    };
    let reported_state = match patch.reported_state.flatten() {
        None if body.contains_key("url") && !body.contains_key("base_url") => {
            // "status" defaults to "active".
            Some(ReportedState::Active)
        }
        other => other,
    };
    let base_url = patch.base_url.flatten();
    let port = patch
        .port
        .flatten()
        .or_else(|| base_url.as_ref().and_then(BaseUrl::port));
    let probe = ProbeSettings {
        http: patch.http.flatten(),
        tls: patch.tls.flatten(),
        dns: patch.dns.flatten(),
    };
    let health_endpoint = patch.health_endpoint.flatten();
    if let Err(e) = check_combination(base_url.as_ref(), health_endpoint.as_ref(), &probe) {
        return Err(vec![e]);
    }
    if let Some(name) = probe.http.as_ref().and_then(|h| {
        h.headers
            .iter()
            .find(|(_, v)| v.as_str() == HIDDEN)
            .map(|(n, _)| n.clone())
    }) {
        return Err(vec![FieldError::new(
            "http",
            format!(
                "header {name}: {HIDDEN} is how the API hides a credential; send the value itself"
            ),
        )]);
    }
    Ok(NewService {
        name,
        description: patch.description.flatten(),
        base_url,
        port,
        health_endpoint,
        reported_state,
        check_interval_secs: patch.check_interval_secs.flatten(),
        check_timeout_ms: patch.check_timeout_ms.flatten(),
        muted: patch.muted.flatten(),
        paused: patch.paused.flatten(),
        maintenance_until: patch.maintenance_until.flatten(),
        maintenance_from: patch.maintenance_from.flatten(),
        maintenance_window: patch.maintenance_window.flatten(),
        notify_after: patch.notify_after.flatten(),
        start_period_secs: patch.start_period_secs.flatten(),
        retry_interval_secs: patch.retry_interval_secs.flatten(),
        conditions: patch.conditions.unwrap_or_default(),
        probe,
        tags: patch.tags.unwrap_or_default(),
        channels: patch.channels.unwrap_or_default(),
        depends_on: patch.depends_on.unwrap_or_default(),
        heal: patch.heal.flatten(),
        from_file: false,
    })
}

/// Whether a service's URL, health endpoint and probe settings go together:
/// a health endpoint is a path of an HTTP URL, and a DNS check needs its
/// question. The error names the field to change.
pub fn check_combination(
    base_url: Option<&BaseUrl>,
    health_endpoint: Option<&HealthEndpoint>,
    probe: &ProbeSettings,
) -> Result<(), FieldError> {
    let target = base_url.map(BaseUrl::target);
    if health_endpoint.is_some() && !matches!(target, None | Some(Target::Http(_))) {
        return Err(FieldError::new(
            "health_endpoint",
            "is a path of an http:// or https:// URL; a tcp, tls, icmp or dns check has none",
        ));
    }
    if matches!(target, Some(Target::Dns { .. })) && probe.dns.is_none() {
        return Err(FieldError::new(
            "dns",
            "is required for a dns:// URL: {\"name\": \"example.org\", \"type\": \"A\"}",
        ));
    }
    Ok(())
}

/// Parses a partial update: only the fields present change.
pub fn parse_service_patch(body: &Map<String, Value>) -> Result<ServicePatch, Vec<FieldError>> {
    let mut errors = Vec::new();
    let patch = parse_fields(body, &mut errors);
    if body.get("name").is_some_and(Value::is_null) {
        errors.push(FieldError::new("name", "cannot be removed"));
    }
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(errors)
    }
}

fn parse_fields(body: &Map<String, Value>, errors: &mut Vec<FieldError>) -> ServicePatch {
    let mut unknown: Vec<&String> = body
        .keys()
        .filter(|k| {
            !WRITABLE_FIELDS.contains(&k.as_str()) && !READ_ONLY_FIELDS.contains(&k.as_str())
        })
        .collect();
    unknown.sort();
    for key in unknown {
        errors.push(FieldError::new(key.clone(), "is not a field of a service"));
    }

    let mut patch = ServicePatch {
        name: field(body, "name", errors, |v| ServiceName::parse(as_str(v)?)).flatten(),
        description: field(body, "description", errors, |v| {
            let s = as_str(v)?.trim();
            if s.chars().count() > DESCRIPTION_MAX_CHARS {
                return Err(format!("must be at most {DESCRIPTION_MAX_CHARS} characters").into());
            }
            Ok(s.to_owned())
        })
        .map(|d| d.filter(|d| !d.is_empty())),
        base_url: field(body, "base_url", errors, |v| BaseUrl::parse(as_str(v)?)),
        port: field(body, "port", errors, |v| {
            let n = v
                .as_u64()
                .ok_or_else(|| format!("must be an integer from 1 to 65535, got {}", kind(v)))?;
            u16::try_from(n).ok().filter(|p| *p >= 1).ok_or_else(|| {
                crate::error::Invalid::from(format!("must be an integer from 1 to 65535, got {n}"))
            })
        }),
        health_endpoint: field(body, "health_endpoint", errors, |v| {
            let s = as_str(v)?;
            if s.trim().is_empty() {
                // An empty endpoint in a form means "no health check".
                return Ok(None);
            }
            HealthEndpoint::parse(s).map(Some)
        })
        .map(Option::flatten),
        reported_state: field(body, "reported_state", errors, |v| {
            let s = as_str(v)?;
            ReportedState::parse(s).ok_or_else(|| {
                format!("must be one of \"active\", \"inactive\" or \"failed\", got {s:?}").into()
            })
        }),
        check_interval_secs: field(body, "check_interval_secs", errors, |v| {
            ranged(v, &INTERVAL_RANGE_SECS, "seconds")
        }),
        check_timeout_ms: field(body, "check_timeout_ms", errors, |v| {
            ranged(v, &TIMEOUT_RANGE_MS, "milliseconds")
        }),
        muted: field(body, "muted", errors, |v| {
            v.as_bool().ok_or_else(|| {
                crate::error::Invalid::from(format!("must be true or false, got {}", kind(v)))
            })
        }),
        paused: field(body, "paused", errors, |v| {
            v.as_bool().ok_or_else(|| {
                crate::error::Invalid::from(format!("must be true or false, got {}", kind(v)))
            })
        }),
        maintenance_window: match body.get("maintenance_window") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(v) => match crate::schedule::RecurringWindow::parse(v) {
                Ok(w) => Some(Some(w)),
                Err((part, why)) => {
                    let field = if part.is_empty() {
                        "maintenance_window".to_owned()
                    } else {
                        format!("maintenance_window.{part}")
                    };
                    errors.push(FieldError::new(field, why));
                    None
                }
            },
        },
        maintenance_until: field(body, "maintenance_until", errors, rfc3339),
        maintenance_from: field(body, "maintenance_from", errors, rfc3339),
        notify_after: field(body, "notify_after", errors, |v| {
            ranged(v, &(1..=100), "consecutive failures")
        }),
        start_period_secs: field(body, "start_period_secs", errors, |v| {
            ranged(v, &START_PERIOD_RANGE_SECS, "seconds")
        }),
        retry_interval_secs: field(body, "retry_interval_secs", errors, |v| {
            ranged(v, &INTERVAL_RANGE_SECS, "seconds")
        }),
        conditions: None,
        tags: field(body, "tags", errors, parse_tags).map(Option::unwrap_or_default),
        channels: field(body, "channels", errors, parse_channel_ids).map(Option::unwrap_or_default),
        depends_on: field(body, "depends_on", errors, crate::depends::parse_depends_on)
            .map(Option::unwrap_or_default),
        heal: field(body, "heal", errors, crate::depends::HealRule::parse),
        http: field(body, "http", errors, |v| {
            let mut http: HttpSettings = object(v)?;
            http.validate()?;
            Ok(http)
        }),
        tls: field(body, "tls", errors, |v| {
            let tls: TlsSettings = object(v)?;
            tls.validate()?;
            Ok(tls)
        }),
        dns: field(body, "dns", errors, |v| {
            let mut dns: DnsQuery = object(v)?;
            dns.validate()?;
            Ok(dns)
        }),
        probe: None,
    };
    match body.get("conditions") {
        None => {}
        Some(Value::Null) => patch.conditions = Some(Vec::new()),
        Some(v) => match serde_json::from_value::<Vec<ConditionSpec>>(v.clone()) {
            Err(_) => errors.push(FieldError::new(
                "conditions",
                "must be a list of strings such as \"[STATUS] == 200\", or of objects {\"expr\": ..., \"on_fail\": \"WARNING\"}",
            )),
            Ok(specs) => match parse_conditions(&specs) {
                Ok(conditions) => patch.conditions = Some(conditions),
                Err(bad) => {
                    for (i, message) in bad {
                        errors.push(FieldError::new(format!("conditions[{i}]"), message));
                    }
                }
            },
        },
    }

    // `status` is the reported state; "configured" (what the API
    // returns as `status`) is accepted and leaves it alone.
    match body.get("status") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == RegistryStatus::Configured.as_str() => {}
        Some(v) => match as_str(v).and_then(|s| {
            ReportedState::parse(s).ok_or_else(|| {
                format!("must be one of \"active\", \"inactive\", \"failed\" or \"configured\", got {s:?}").into()
            })
        }) {
            Ok(state) => patch.reported_state = Some(Some(state)),
            Err(message) => errors.push(FieldError::new("status", message)),
        },
    }

    // `url` is another name for `base_url`.
    if let Some(url) = field(body, "url", errors, |v| BaseUrl::parse(as_str(v)?)) {
        match &patch.base_url {
            Some(base) if *base != url => errors.push(FieldError::new(
                "url",
                "is an alias of base_url and must not differ from it",
            )),
            _ => patch.base_url = Some(url),
        }
    }

    // Conditions a check of this URL cannot judge: a host's figures on a
    // service's check, or a check's answer on a host's.
    if let (Some(Some(url)), Some(conditions)) = (&patch.base_url, &patch.conditions) {
        if let Some(why) = url.target().refuses(conditions) {
            errors.push(FieldError::new("conditions", why));
        }
    }

    // A planned window is one pair: its start comes with its end, and an end
    // sent alone is a window from now.
    match (patch.maintenance_from, patch.maintenance_until) {
        (Some(Some(from)), Some(Some(until))) if from >= until => errors.push(FieldError::new(
            "maintenance_from",
            "must be before maintenance_until",
        )),
        (Some(Some(_)), None | Some(None))
            if body.get("maintenance_until").is_none_or(Value::is_null) =>
        {
            errors.push(FieldError::new(
                "maintenance_from",
                "needs maintenance_until in the same request: a window has a start and an end",
            ));
        }
        (None, Some(_)) if !body.contains_key("maintenance_from") => {
            patch.maintenance_from = Some(None);
        }
        _ => {}
    }
    patch
}

/// Parses `body[key]` when present: `Some(None)` for `null`, `Some(Some(v))` for a
/// valid value, `None` when absent or invalid (the error is recorded).
fn field<T>(
    body: &Map<String, Value>,
    key: &str,
    errors: &mut Vec<FieldError>,
    parse: impl FnOnce(&Value) -> Result<T, crate::error::Invalid>,
) -> Option<Option<T>> {
    match body.get(key)? {
        Value::Null => Some(None),
        value => match parse(value) {
            Ok(v) => Some(Some(v)),
            Err(message) => {
                errors.push(FieldError::new(key, message));
                None
            }
        },
    }
}

/// Most channels a service may name.
const CHANNELS_MAX: usize = 50;

/// The channels a service notifies: channel ids, each once (whether they
/// exist is the hub's to check).
fn parse_channel_ids(v: &Value) -> Result<Vec<i64>, crate::error::Invalid> {
    let items = v
        .as_array()
        .ok_or_else(|| format!("must be a list of channel ids, got {}", kind(v)))?;
    if items.len() > CHANNELS_MAX {
        return Err(format!("may name at most {CHANNELS_MAX} channels").into());
    }
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let id = item
            .as_i64()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("must hold channel ids (positive integers), got {item}"))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// A service's tags: a list of short labels, each kept as typed (trimmed)
/// and given once, whatever its case.
fn parse_tags(v: &Value) -> Result<Vec<String>, crate::error::Invalid> {
    const HOW: &str = "must be a list of short labels such as [\"media\", \"home lab\"]";
    let Value::Array(items) = v else {
        return Err(HOW.into());
    };
    if items.len() > TAGS_MAX {
        return Err(format!("may hold at most {TAGS_MAX} tags").into());
    }
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let tag = item.as_str().ok_or(HOW)?.trim();
        if tag.is_empty() || tag.chars().count() > TAG_MAX_CHARS {
            return Err(format!("{tag:?}: a tag has 1 to {TAG_MAX_CHARS} characters").into());
        }
        if !tag
            .chars()
            .all(|c| c.is_alphanumeric() || " -_.:/".contains(c))
        {
            return Err(
                format!("{tag:?}: a tag has letters, digits, spaces and - _ . : / only").into(),
            );
        }
        if !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            tags.push(tag.to_owned());
        }
    }
    Ok(tags)
}

/// What an API view shows of a header value that looks like a credential.
pub const HIDDEN: &str = "********";

/// Whether a header's value is kept from readers of the API.
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "key",
        "secret",
        "password",
        "auth",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A JSON object as `T`, or the one-line reason it is not one.
fn object<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, crate::error::Invalid> {
    if !v.is_object() {
        return Err(format!("must be an object, got {}", kind(v)).into());
    }
    serde_json::from_value(v.clone()).map_err(|e| e.to_string().into())
}

fn rfc3339(v: &Value) -> Result<DateTime<Utc>, crate::error::Invalid> {
    let s = as_str(v)?;
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            crate::error::Invalid::from(format!(
                "must be an RFC 3339 time such as 2026-12-01T06:00:00Z, got {s:?}"
            ))
        })
}

fn as_str(v: &Value) -> Result<&str, crate::error::Invalid> {
    v.as_str()
        .ok_or_else(|| crate::error::Invalid::from(format!("must be a string, got {}", kind(v))))
}

fn ranged(
    v: &Value,
    range: &std::ops::RangeInclusive<u64>,
    unit: &str,
) -> Result<u64, crate::error::Invalid> {
    v.as_u64().filter(|n| range.contains(n)).ok_or_else(|| {
        format!(
            "must be an integer from {} to {} ({unit}), got {}",
            range.start(),
            range.end(),
            match v {
                Value::Number(n) => n.to_string(),
                other => kind(other).to_owned(),
            }
        )
        .into()
    })
}

/// The JSON type of a value, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A service as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceView {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub base_url: Option<String>,
    /// Same value as `base_url`, for clients that send and read `url`.
    pub url: Option<String>,
    pub port: Option<u16>,
    pub health_endpoint: Option<String>,
    /// The URL the hub checks: `base_url` + `health_endpoint`, or a
    /// registered service's URL itself.
    pub health_url: Option<String>,
    /// How the hub checks it, by the URL's scheme: `http`, `tcp`, `tls`,
    /// `icmp` or `dns`; absent when the hub does not check it.
    pub check_kind: Option<String>,
    /// Conditions on the check's result, in Gatus's syntax (absent: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionSpec>,
    /// Labels to group and filter by (absent: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The channels it notifies, by id (absent: every channel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<i64>,
    /// The services it depends on, by id (absent: none). While one of them
    /// fails, this one shows `UNKNOWN`, waiting on it, and sends no alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<i64>,
    /// Self-healing (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal: Option<crate::depends::HealRule>,
    /// The failing service at the root of its dependencies, while there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<crate::depends::WaitingOn>,
    /// An HTTP check's method, headers, body, redirects and accepted codes.
    /// Header values that look like credentials are shown as `********`;
    /// sending that back keeps the stored value. Absent: the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
    /// How a TLS or HTTPS check verifies the server. Absent: the system's
    /// trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// A DNS check's question (DNS checks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsQuery>,
    /// The check interval while the check fails (absent: the interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval_secs: Option<u64>,
    /// When the server's certificate expires, as the last check saw it
    /// (TLS and HTTPS checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_expires_at: Option<DateTime<Utc>>,
    /// Where its settings live: `api` (the API or the dashboard) or `file`
    /// (a monitors file: read-only through the API and the dashboard).
    pub source: String,
    pub status: RegistryStatus,
    /// The unit's active state at the last scan, or `removed` when it is gone.
    pub systemd_state: Option<String>,
    /// The systemd unit behind this service, if any.
    pub unit: Option<String>,
    /// The container behind this service, if any, as its engine last
    /// described it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::container::ContainerView>,
    pub sub_state: Option<String>,
    pub unit_file_state: Option<String>,
    pub main_pid: Option<u32>,
    /// Every process of the unit's cgroup at the last scan.
    pub pids: Vec<u32>,
    /// Every listening TCP port at the last scan; `port` is the best web one.
    pub ports: Vec<PortView>,
    /// systemd's automatic restarts of the unit since it was last started by hand.
    pub restarts: Option<u32>,
    /// How the unit's last run ended: systemd's `Result` (`success`,
    /// `exit-code`, `signal`, ...).
    pub unit_result: Option<String>,
    /// The unit's main process's exit code, or its signal.
    pub exit_status: Option<i32>,
    /// When the unit last became active.
    pub active_since: Option<DateTime<Utc>>,
    /// Failed checks this long after the service (or its unit) starts do
    /// not count: it shows UNKNOWN "starting" instead of FAILURE.
    pub start_period_secs: Option<u64>,
    /// What the registering client said about the service (its `status`).
    pub reported_state: Option<ReportedState>,
    pub health_status: HealthStatus,
    /// The one status of a service: OK, UPDATE, WARNING, FAILURE or UNKNOWN.
    pub state: crate::status::Status,
    /// Why the service has that status.
    pub state_reason: Option<String>,
    pub state_since: Option<DateTime<Utc>>,
    /// Heartbeat services: the address they report from.
    pub heartbeat_ip: Option<String>,
    pub heartbeat_ttl_secs: Option<u64>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Push URL settings and the last ping, when the service has a push token.
    pub push: Option<PushView>,
    pub last_health_check: Option<DateTime<Utc>>,
    pub last_response_code: Option<u16>,
    pub last_latency_ms: Option<u64>,
    pub last_error: Option<String>,
    pub check_interval_secs: u64,
    pub check_timeout_ms: u64,
    /// No notifications for this service.
    pub muted: bool,
    /// Neither checked nor judged (status `UNKNOWN`, "paused") until resumed.
    pub paused: bool,
    /// Notifications are held back until this time (a maintenance window).
    pub maintenance_until: Option<DateTime<Utc>>,
    /// A window planned ahead begins here (absent: it began when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_from: Option<DateTime<Utc>>,
    /// A maintenance window that comes back (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<crate::schedule::RecurringWindow>,
    /// Consecutive failed checks before an alert (flap damping).
    pub notify_after: u64,
    pub last_scanned_at: Option<DateTime<Utc>>,
    /// The server whose agent runs this check (checks only).
    pub server_id: Option<i64>,
    /// A check script run by an agent: its name, schedule and last result.
    pub check: Option<AgentCheckView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A check script on a server, as the hub knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentCheckView {
    pub name: String,
    pub schedule: Option<String>,
    /// The last result: OK, UPDATE, WARNING, FAILURE, UNKNOWN, or ERROR when
    /// the check itself failed to run.
    pub last_status: Option<crate::check::LineStatus>,
    pub last_message: Option<String>,
    pub last_at: Option<DateTime<Utc>>,
}

/// One result of a check script, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResultView {
    pub service_id: i64,
    pub at: DateTime<Utc>,
    pub ordinal: u32,
    pub status: crate::check::LineStatus,
    pub message: String,
    pub received_at: DateTime<Utc>,
}

/// A monitored host with an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerView {
    pub id: i64,
    pub name: String,
    pub labels: Vec<String>,
    pub agent_id: String,
    /// The agent claimed its key (ran `lookout agent register`).
    pub claimed: bool,
    pub revoked: bool,
    pub online: bool,
    pub hostname: Option<String>,
    pub agent_version: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub checks: u32,
    /// The worst status among its checks.
    pub status: crate::status::Status,
    pub created_at: DateTime<Utc>,
}

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheckView {
    pub service_id: i64,
    pub status: HealthStatus,
    /// The URL requested; absent when the service has no health endpoint.
    pub url: Option<String>,
    pub response_code: Option<u16>,
    pub latency_ms: Option<u64>,
    pub checked_at: DateTime<Utc>,
    /// Why the check failed (timeout, refused, TLS, HTTP status, a
    /// condition), if it did.
    pub error: Option<String>,
    /// Why a check that passed warns (a condition marked WARNING, a
    /// certificate near expiry), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_base_url_payload_is_accepted() {
        let s = parse_new_service(&obj(json!({
            "name": "grafana.service", "description": "Dashboards",
            "base_url": "http://192.168.2.24:3000/", "port": 3000, "health_endpoint": "/api/health"
        })))
        .unwrap();
        assert_eq!(s.name.as_str(), "grafana.service");
        assert_eq!(s.base_url.unwrap().to_display(), "http://192.168.2.24:3000");
        assert_eq!(s.port, Some(3000));
        assert_eq!(s.health_endpoint.unwrap().as_str(), "/api/health");
        assert_eq!(s.reported_state, None);
    }

    #[test]
    fn a_url_payload_is_accepted_and_status_is_a_reported_state() {
        let s = parse_new_service(&obj(json!({
            "name": "My API", "url": "http://192.168.1.100:8080", "status": "failed", "port": 8080
        })))
        .unwrap();
        assert_eq!(
            s.base_url.unwrap().to_display(),
            "http://192.168.1.100:8080"
        );
        assert_eq!(s.reported_state, Some(ReportedState::Failed));
        let s =
            parse_new_service(&obj(json!({"name": "x", "url": "https://example.org"}))).unwrap();
        assert_eq!(
            s.reported_state,
            Some(ReportedState::Active),
            "the default reported state"
        );
        assert_eq!(s.port, Some(443), "port implied by the URL");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errors = parse_new_service(&obj(json!({
            "name": "", "base_url": "ftp://x", "port": 70000, "health_endpoint": "health",
            "status": "running", "colour": "red", "check_timeout_ms": 1
        })))
        .unwrap_err();
        let mut got = fields(&errors);
        got.sort();
        assert_eq!(
            got,
            [
                "base_url",
                "check_timeout_ms",
                "colour",
                "health_endpoint",
                "name",
                "port",
                "status"
            ]
        );
    }

    #[test]
    fn wrong_types_name_the_type() {
        let errors = parse_new_service(&obj(json!({"name": 5, "port": "80"}))).unwrap_err();
        assert_eq!(errors[0].message, "must be a string, got a number");
        assert_eq!(
            errors[1].message,
            "must be an integer from 1 to 65535, got a string"
        );
    }

    #[test]
    fn names_are_bounded() {
        assert!(ServiceName::parse(&"a".repeat(255)).is_ok());
        assert!(ServiceName::parse(&"a".repeat(256)).is_err());
        assert!(ServiceName::parse("   ").is_err());
        assert!(ServiceName::parse("a\u{7}b").is_err());
        assert_eq!(ServiceName::parse("  web  ").unwrap().as_str(), "web");
    }

    #[test]
    fn urls_must_be_absolute_http_without_credentials() {
        for bad in [
            "localhost:80",
            "/relative",
            "ftp://host",
            "http://",
            "http://u:p@host",
            "javascript:alert(1)",
            "http://h/?q=1",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad} accepted");
        }
        for good in [
            "http://localhost",
            "https://[::1]:8443/app",
            "http://127.0.0.1:8000",
        ] {
            assert!(BaseUrl::parse(good).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn port_bounds() {
        for (port, ok) in [
            (0, false),
            (1, true),
            (65535, true),
            (65536, false),
            (-1, false),
        ] {
            let r = parse_new_service(&obj(json!({"name": "p", "port": port})));
            assert_eq!(r.is_ok(), ok, "port {port}");
        }
    }

    #[test]
    fn url_and_base_url_must_agree() {
        let errors = parse_new_service(&obj(json!({
            "name": "x", "base_url": "http://a", "url": "http://b"
        })))
        .unwrap_err();
        assert_eq!(fields(&errors), ["url"]);
        assert!(parse_new_service(&obj(
            json!({"name": "x", "base_url": "http://a", "url": "http://a/"})
        ))
        .is_ok());
    }

    #[test]
    fn patch_only_carries_sent_fields_and_ignores_read_only_ones() {
        let p = parse_service_patch(&obj(json!({"port": 81, "id": 3, "created_at": "x"}))).unwrap();
        assert_eq!(
            p,
            ServicePatch {
                port: Some(Some(81)),
                ..Default::default()
            }
        );
        let p = parse_service_patch(&obj(json!({"health_endpoint": null}))).unwrap();
        assert_eq!(p.health_endpoint, Some(None));
        assert!(parse_service_patch(&obj(json!({"name": null}))).is_err());
    }

    #[test]
    fn health_url_joins_without_double_slash() {
        assert_eq!(health_url("http://h:1/", "/health"), "http://h:1/health");
        assert_eq!(
            health_url("http://h:1/app", "/health"),
            "http://h:1/app/health"
        );
    }
}

/// A TCP port a systemd service listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortView {
    pub address: String,
    pub port: u16,
    /// `process` (a process of the unit holds the socket) or `socket_unit`
    /// (socket activation: a `.socket` unit listens for it).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_unit: Option<String>,
}

/// A systemd timer and the last run of the unit it triggers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimerView {
    pub name: String,
    pub description: String,
    pub active_state: String,
    /// `OnCalendar=...` / `OnUnitActiveSec=...` lines.
    pub schedule: Vec<String>,
    pub last_trigger: Option<DateTime<Utc>>,
    pub next_elapse: Option<DateTime<Utc>>,
    /// The unit the timer starts.
    pub unit: String,
    pub unit_active_state: Option<String>,
    /// The triggered unit's `Result` (`success`, `exit-code`, `timeout`, ...).
    pub last_result: Option<String>,
    /// The triggered unit's `ExecMainStatus`.
    pub last_exit_status: Option<i32>,
    pub last_exit: Option<DateTime<Utc>>,
    /// The last run failed.
    pub failed: bool,
    /// Gone from systemd at the last scan.
    pub removed: bool,
    pub last_scanned_at: DateTime<Utc>,
}

/// The answer of `POST /api/scan` and `GET /api/scan` (the scan's shape plus
/// `removed`, timers and details).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScanResult {
    /// Units seen for the first time.
    pub discovered: usize,
    /// Units already in the registry, refreshed.
    pub updated: usize,
    /// Units gone from systemd since the previous scan.
    pub removed: usize,
    pub scanned_at: DateTime<Utc>,
    /// `system` or `user`.
    pub scope: String,
    pub duration_ms: u64,
    /// Every systemd service known to the registry, configured ones included.
    pub services: Vec<ServiceView>,
    pub timers: Vec<TimerView>,
    /// Parts of the scan that could not be done, e.g. ports unknown.
    pub warnings: Vec<String>,
}

/// A change of a service's status, as stored and streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusEventView {
    pub id: i64,
    pub service_id: i64,
    pub at: DateTime<Utc>,
    pub old: crate::status::Status,
    pub new: crate::status::Status,
    pub reason: String,
}

/// A service's push URL settings and its last ping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushView {
    /// How often pings are expected.
    pub period_secs: u64,
    /// How late a ping may be before the service is `FAILURE`.
    pub grace_secs: u64,
    /// A cron schedule the pings are expected on instead of the period
    /// (`0 3 * * *`), read in `tz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The schedule's time zone (an IANA name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    pub last_ping: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub last_message: Option<String>,
    /// When the job's current run began (a `/start` ping), until the ping
    /// that ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// How long the last run took, in milliseconds: from its `/start`, or
    /// as the sender said (`?ping=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration_ms: Option<u64>,
}
