//! The hub's persistence: the one trait every backend implements, and the
//! records it deals in.
//!
//! Invariant: nothing outside this crate writes SQL, and this crate knows
//! nothing of the hub above it (HTTP, the scheduler, notifications). Each backend keeps its own
//! embedded migrations (`migrations/<backend>/`) and runtime-checked queries, so a
//! PostgreSQL backend can sit beside SQLite behind the same trait.

// Outside tests a panic is a bug: what can fail returns an error, and the
// few invariants that cannot say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod agents;
pub mod leases;
pub mod pages;
pub mod sql;
pub mod usage;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lookout_proto::condition::Condition;
use lookout_proto::monitor::{ProbeSettings, Target};
use lookout_proto::series::{Bucket, Sample};
use lookout_proto::service::{
    health_url, HealthCheckView, HealthStatus, NewService, PortView, RegistryStatus, ReportedState,
    ServicePatch, ServiceView, TimerView,
};
use lookout_proto::service::{AgentCheckView, PushView, StatusEventView};
use lookout_proto::status::{ServiceKind, Status, StatusRules, UnitFacts};
use std::time::Duration;

pub use accounts::AccountStore;
pub use agents::AgentStore;
pub use leases::{CheckLeases, LeaseStore};
pub use pages::{NewPushSubscription, PageStore, PushSubscription, StatusPageRow};
pub use sql::{Backend, SqlStore};
pub use usage::{HostUsageRow, Spread, UnitUsageRow, UsageStore};

use lookout_config::CheckDefaults;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique field already holds this value.
    #[error("{field} {value:?} is already taken")]
    Conflict { field: &'static str, value: String },
    /// The database was written by a newer lookout.
    #[error(
        "the database's schema (version {found}) is newer than this lookout knows (version {known}): run the newer lookout, or restore a backup"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// The request cannot be carried out as asked (e.g. an import into a
    /// database that is not empty); the message says why.
    #[error("{0}")]
    Refused(String),
    /// The record is not changed this way: the message says where it is
    /// (a service declared in a monitors file).
    #[error("{0}")]
    ReadOnly(String),
    /// A field does not fit the rest of the record as it stands (e.g. a
    /// health endpoint on a tcp:// URL).
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(lookout_proto::FieldError),
    /// The database failed; the cause is for the log, not for the client.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("the database's schema could not be brought up to date")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A value kept as JSON could not be written or read back.
    #[error("a stored value could not be encoded or decoded")]
    Encoding(#[from] serde_json::Error),
    /// The task that writes on the caller's behalf has stopped.
    #[error("{0} stopped")]
    Stopped(&'static str),
}

/// Consecutive failed checks before an alert, unless a service says otherwise.
pub const DEFAULT_NOTIFY_AFTER: u64 = 3;

/// A notification channel as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Channel {
    pub id: i64,
    pub name: String,
    pub kind: lookout_proto::notify::ChannelKind,
    #[serde(skip)]
    pub config: serde_json::Map<String, serde_json::Value>,
    pub enabled: bool,
    pub last_error: Option<String>,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One attempt to notify through a channel, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Delivery {
    pub id: i64,
    pub channel_id: i64,
    pub service_id: Option<i64>,
    pub kind: String,
    /// `sent` or `failed` (after every retry).
    pub status: String,
    pub attempts: u32,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// Which services a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceFilter {
    Status(RegistryStatus),
    All,
}

/// A service as stored (`Default`: a registered service, blank).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Service {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub base_url: Option<String>,
    pub port: Option<u16>,
    pub health_endpoint: Option<String>,
    pub status: RegistryStatus,
    pub systemd_state: Option<String>,
    pub unit: Option<String>,
    pub sub_state: Option<String>,
    pub unit_file_state: Option<String>,
    pub main_pid: Option<u32>,
    pub pids: Vec<u32>,
    pub ports: Vec<PortView>,
    /// systemd's `NRestarts` of the unit.
    pub restarts: Option<u32>,
    /// The container behind it, by name.
    pub container: Option<String>,
    /// What the engine last said of the container (boxed, as [`Service::probe`]).
    pub container_info: Option<Box<lookout_proto::container::ContainerView>>,
    /// systemd's `Result` of the unit's last run.
    pub unit_result: Option<String>,
    pub exit_status: Option<i32>,
    /// When the unit last became active.
    pub active_since: Option<DateTime<Utc>>,
    pub start_period_secs: Option<u64>,
    pub reported_state: Option<ReportedState>,
    /// `None` means "the hub's default".
    pub check_interval_secs: Option<u64>,
    pub check_timeout_ms: Option<u64>,
    pub health_status: HealthStatus,
    pub state: Status,
    pub state_reason: Option<String>,
    pub state_since: Option<DateTime<Utc>>,
    pub heartbeat_ip: Option<String>,
    pub heartbeat_ttl_secs: Option<u64>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub has_push_token: bool,
    pub push_period_secs: Option<u64>,
    pub push_grace_secs: Option<u64>,
    /// A cron schedule pings are expected on, and its zone.
    pub push_schedule: Option<String>,
    pub push_tz: Option<String>,
    pub last_push: Option<DateTime<Utc>>,
    pub push_status: Option<String>,
    pub push_message: Option<String>,
    /// When the push check's current run began (`/start`), until it ends.
    pub push_started_at: Option<DateTime<Utc>>,
    /// How long its last run took, in milliseconds.
    pub push_duration_ms: Option<u64>,
    pub server_id: Option<i64>,
    pub check_name: Option<String>,
    pub check_schedule: Option<String>,
    pub check_status: Option<String>,
    pub check_message: Option<String>,
    pub check_at: Option<DateTime<Utc>>,
    pub muted: bool,
    /// Neither checked nor judged until resumed.
    pub paused: bool,
    pub maintenance_until: Option<DateTime<Utc>>,
    /// A window planned ahead begins here and ends at `maintenance_until`.
    pub maintenance_from: Option<DateTime<Utc>>,
    /// A maintenance window that comes back (boxed, as [`Service::probe`]).
    pub maintenance_window: Option<Box<lookout_proto::schedule::RecurringWindow>>,
    pub notify_after: Option<u64>,
    pub last_health_check: Option<DateTime<Utc>>,
    pub last_response_code: Option<u16>,
    pub last_latency_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_scanned_at: Option<DateTime<Utc>>,
    /// A shorter interval while the check fails.
    pub retry_interval_secs: Option<u64>,
    /// Conditions on the check's result (Gatus's syntax).
    pub conditions: Vec<Condition>,
    /// Labels to group and filter by, as typed.
    pub tags: Vec<String>,
    /// The channels it notifies, by id; empty for every channel.
    pub channels: Vec<i64>,
    /// The services it depends on, by id.
    pub depends_on: Vec<i64>,
    /// Self-healing (boxed, as [`Service::probe`]).
    pub heal: Option<Box<lookout_proto::depends::HealRule>>,
    /// The failing service at the root of its dependencies, as the hub
    /// last judged; its status is then `UNKNOWN`.
    pub waiting_on: Option<Box<lookout_proto::depends::WaitingOn>>,
    /// How the check is made beyond its URL. Boxed: most services take
    /// the defaults, and the registry keeps every service in memory.
    pub probe: Box<ProbeSettings>,
    /// When the server's certificate expires, as the last TLS or HTTPS
    /// check saw it.
    pub cert_expires_at: Option<DateTime<Utc>>,
    /// The last check passed but a condition marked WARNING failed: why.
    pub last_warning: Option<String>,
    /// Declared in a monitors file: read-only through the API and the
    /// dashboard.
    pub from_file: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A push URL's period when none was set: a ping a day.
pub const PUSH_PERIOD_SECS: u64 = 86_400;
/// A push URL's grace after its period when none was set.
pub const PUSH_GRACE_SECS: u64 = 3_600;

impl Service {
    /// The cron schedule its pings are expected on, if it has one.
    pub fn push_cron(&self) -> Option<lookout_proto::schedule::CronSchedule> {
        let expr = self.push_schedule.as_deref()?;
        lookout_proto::schedule::CronSchedule::stored(expr, self.push_tz.as_deref().unwrap_or(""))
    }

    /// When the service's heartbeat or push ping is missed if nothing
    /// arrives before (the earlier of the two); `None` when it has neither,
    /// or has not been heard from yet. What the overdue sweep looks for.
    pub fn missed_after(&self) -> Option<DateTime<Utc>> {
        if self.paused {
            return None;
        }
        let after = |last: Option<DateTime<Utc>>, secs: u64| {
            last.map(|t| {
                t + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
            })
        };
        let heartbeat = self
            .heartbeat_ttl_secs
            .and_then(|ttl| after(self.last_heartbeat, ttl));
        let push = self.has_push_token.then(|| {
            let grace = self.push_grace_secs.unwrap_or(PUSH_GRACE_SECS);
            match self.push_cron() {
                Some(cron) => self.last_push.and_then(|t| cron.next_after(t)).map(|next| {
                    next + chrono::Duration::seconds(i64::try_from(grace).unwrap_or(0))
                }),
                None => after(
                    self.last_push,
                    self.push_period_secs.unwrap_or(PUSH_PERIOD_SECS) + grace,
                ),
            }
        });
        heartbeat.into_iter().chain(push.flatten()).min()
    }

    /// How the service is watched, with what was last heard of it, at `now`
    /// (`agent_online` matters only to an agent's check: whether its server's
    /// agent is in touch; `rules` are the hub's settings of the status rules).
    pub fn kind(
        &self,
        agent_online: bool,
        now: DateTime<Utc>,
        rules: StatusRules,
    ) -> ServiceKind<'_> {
        let age = |t: Option<DateTime<Utc>>| t.map(|t| (now - t).num_milliseconds().max(0) / 1000);
        let has_check = self.check_url().is_some();
        let secs = |v: Option<u64>, default: u64| {
            i64::try_from(v.unwrap_or(default)).unwrap_or(i64::MAX / 2)
        };
        if self.paused {
            ServiceKind::Paused
        } else if let Some(on) = &self.waiting_on {
            ServiceKind::Waiting { on: &on.name }
        } else if self.server_id.is_some() {
            ServiceKind::AgentCheck {
                agent_online,
                last: self
                    .check_status
                    .as_deref()
                    .and_then(lookout_proto::check::LineStatus::parse)
                    .map(|s| (s, self.check_message.as_deref().unwrap_or(""))),
            }
        } else if let (Some(ttl), false) = (self.heartbeat_ttl_secs, has_check) {
            ServiceKind::Heartbeat {
                seconds_since_last: age(self.last_heartbeat),
                ttl_secs: secs(Some(ttl), 0),
            }
        } else if self.has_push_token && !has_check {
            ServiceKind::Push {
                seconds_since_last: age(self.last_push),
                deadline_secs: match (self.push_cron(), self.last_push) {
                    // Due at the schedule's next firing after the last ping.
                    (Some(cron), Some(last)) => cron
                        .next_after(last)
                        .map_or(i64::MAX / 2, |next| (next - last).num_seconds())
                        .saturating_add(secs(self.push_grace_secs, PUSH_GRACE_SECS)),
                    _ => secs(self.push_period_secs, PUSH_PERIOD_SECS)
                        .saturating_add(secs(self.push_grace_secs, PUSH_GRACE_SECS)),
                },
                reported: self
                    .push_status
                    .as_deref()
                    .and_then(Status::parse)
                    .unwrap_or(Status::Ok),
                message: self.push_message.as_deref(),
            }
        } else {
            // A check of the unit's usage speaks when a condition fails;
            // otherwise the unit's state does.
            let usage_spoke = matches!(self.health_status, HealthStatus::Unhealthy)
                || self.last_warning.is_some();
            let usage_check = !has_check && usage_spoke && self.check_target().is_some();
            ServiceKind::Polled {
                health: self.health_status,
                has_check: has_check || usage_check,
                last_error: self.last_error.as_deref(),
                warning: self.last_warning.as_deref(),
                unit: self.unit_facts(now),
                container: self.container_info.as_deref().map(Into::into),
                starting: self.starting(now),
                rules,
            }
        }
    }

    /// What the service holds of its unit's state.
    pub fn unit_state(&self) -> UnitState {
        UnitState {
            active_state: self.systemd_state.clone().unwrap_or_default(),
            sub_state: self.sub_state.clone().unwrap_or_default(),
            main_pid: self.main_pid,
            restarts: self.restarts,
            result: self.unit_result.clone(),
            exit_status: self.exit_status,
            active_since: self.active_since,
        }
    }

    /// Takes `state` as its unit's state (what `set_unit_state` stores).
    pub fn set_unit_state(&mut self, state: &UnitState) {
        self.systemd_state = Some(state.active_state.clone());
        self.sub_state = Some(state.sub_state.clone());
        self.main_pid = state.main_pid;
        self.restarts = state.restarts;
        self.unit_result = state.result.clone();
        self.exit_status = state.exit_status;
        self.active_since = state.active_since;
    }

    /// What systemd last said of the unit, for the status rules.
    pub fn unit_facts(&self, now: DateTime<Utc>) -> Option<UnitFacts<'_>> {
        let active_state = self.systemd_state.as_deref()?;
        Some(UnitFacts {
            active_state,
            sub_state: self.sub_state.as_deref(),
            restarts: self.restarts.unwrap_or(0),
            result: self.unit_result.as_deref(),
            exit_status: self.exit_status,
            up_secs: (active_state == "active")
                .then_some(self.active_since)
                .flatten()
                .map(|t| (now - t).num_seconds().max(0)),
        })
    }

    /// `Some(period)` while the service is within its start period: the
    /// period after it was created or its unit last became active,
    /// whichever is later, and while its unit is starting.
    pub fn starting(&self, now: DateTime<Utc>) -> Option<u64> {
        let period = self.start_period_secs.filter(|p| *p > 0)?;
        let since = match self.systemd_state.as_deref() {
            Some("activating") => return Some(period),
            Some("active") => self
                .active_since
                .map_or(self.created_at, |t| t.max(self.created_at)),
            _ => self.created_at,
        };
        let elapsed = (now - since).num_seconds();
        (elapsed < i64::try_from(period).unwrap_or(i64::MAX)).then_some(period)
    }

    /// Why its alerts are held back at `now`, if they are: `paused`,
    /// `muted`, or `maintenance` while a window is open (one set now or
    /// planned ahead, or its recurring one). The notifier and the pages
    /// both ask this.
    pub fn held_back(&self, now: DateTime<Utc>) -> Option<&'static str> {
        if self.paused {
            Some("paused")
        } else if self.muted {
            Some("muted")
        } else if self.in_planned_maintenance(now)
            || self
                .maintenance_window
                .as_ref()
                .is_some_and(|w| w.open_until(now).is_some())
        {
            Some("maintenance")
        } else {
            None
        }
    }

    /// Whether `now` falls in its one-off window: from `maintenance_from`
    /// (or from when it was set) to `maintenance_until`.
    pub fn in_planned_maintenance(&self, now: DateTime<Utc>) -> bool {
        self.maintenance_until.is_some_and(|until| now < until)
            && self.maintenance_from.is_none_or(|from| from <= now)
    }

    /// What watches the service, in one word: its check's kind (`http`,
    /// `tcp`, `tls`, `icmp`, `dns`, `host`, `usage`), else `push`,
    /// `heartbeat`, `script` (a
    /// check script an agent runs) or `systemd` (its unit alone); `none`.
    pub fn watched_by(&self) -> &'static str {
        if let Some(target) = self.check_target() {
            return target.kind();
        }
        if self.server_id.is_some() {
            "script"
        } else if self.has_push_token {
            "push"
        } else if self.heartbeat_ttl_secs.is_some() {
            "heartbeat"
        } else if self.unit.is_some() {
            "systemd"
        } else if self.container.is_some() {
            "container"
        } else {
            "none"
        }
    }

    pub fn check_url(&self) -> Option<String> {
        let base = self.base_url.as_deref()?;
        match &self.health_endpoint {
            Some(endpoint) => Some(health_url(base, endpoint)),
            None => (self.status == RegistryStatus::Configured
                && self.heartbeat_ttl_secs.is_none()
                && !self.has_push_token
                && self.server_id.is_none())
            .then(|| base.to_owned()),
        }
    }

    /// What a check of the service reaches, if the hub checks it: its
    /// URL's target, or its own unit's (or container's) usage when it has
    /// no URL but a unit or container and conditions on what it uses.
    pub fn check_target(&self) -> Option<Target> {
        match self.check_url() {
            Some(url) => Target::from_url(&url::Url::parse(&url).ok()?).ok(),
            None => (self.status == RegistryStatus::Configured
                && self.base_url.is_none()
                && (self.unit.is_some() || self.container.is_some())
                && self.server_id.is_none()
                && self.heartbeat_ttl_secs.is_none()
                && !self.has_push_token
                && !self.conditions.is_empty()
                && self.conditions.iter().all(Condition::reads_usage))
            .then_some(Target::Usage),
        }
    }

    /// Whether the hub checks it (a URL, or its unit's usage).
    pub fn is_checked(&self) -> bool {
        self.check_url().is_some() || self.check_target().is_some()
    }

    /// The interval until the next check: the retry interval while the
    /// check fails, if it has one.
    pub fn next_check_in(&self, defaults: &CheckDefaults) -> Duration {
        match (self.health_status, self.retry_interval_secs) {
            (HealthStatus::Unhealthy, Some(retry)) => {
                Duration::from_secs(retry).min(self.interval(defaults))
            }
            _ => self.interval(defaults),
        }
    }

    pub fn interval(&self, defaults: &CheckDefaults) -> Duration {
        self.check_interval_secs
            .map_or(defaults.interval, Duration::from_secs)
    }

    pub fn timeout(&self, defaults: &CheckDefaults) -> Duration {
        self.check_timeout_ms
            .map_or(defaults.timeout, Duration::from_millis)
    }

    pub fn to_view(&self, defaults: &CheckDefaults) -> ServiceView {
        ServiceView {
            id: self.id,
            name: self.name.clone(),
            description: self.description.clone(),
            base_url: self.base_url.clone(),
            url: self.base_url.clone(),
            port: self.port,
            health_endpoint: self.health_endpoint.clone(),
            health_url: self.check_url(),
            check_kind: self.check_target().map(|t| t.kind().to_owned()),
            conditions: self.conditions.iter().map(Condition::to_spec).collect(),
            tags: self.tags.clone(),
            channels: self.channels.clone(),
            depends_on: self.depends_on.clone(),
            heal: self.heal.as_deref().cloned(),
            waiting_on: self.waiting_on.as_deref().cloned(),
            http: self.probe.http.clone().map(|mut http| {
                for (name, value) in &mut http.headers {
                    if lookout_proto::service::is_secret_header(name) {
                        *value = lookout_proto::service::HIDDEN.to_owned();
                    }
                }
                http
            }),
            tls: self.probe.tls.clone(),
            dns: self.probe.dns.clone(),
            retry_interval_secs: self.retry_interval_secs,
            cert_expires_at: self.cert_expires_at,
            source: if self.from_file { "file" } else { "api" }.to_owned(),
            status: self.status,
            systemd_state: self.systemd_state.clone(),
            unit: self.unit.clone(),
            container: self.container_info.as_deref().cloned(),
            sub_state: self.sub_state.clone(),
            unit_file_state: self.unit_file_state.clone(),
            main_pid: self.main_pid,
            pids: self.pids.clone(),
            ports: self.ports.clone(),
            restarts: self.restarts,
            unit_result: self.unit_result.clone(),
            exit_status: self.exit_status,
            active_since: self.active_since,
            start_period_secs: self.start_period_secs,
            reported_state: self.reported_state,
            health_status: self.health_status,
            state: self.state,
            state_reason: self.state_reason.clone(),
            state_since: self.state_since,
            heartbeat_ip: self.heartbeat_ip.clone(),
            heartbeat_ttl_secs: self.heartbeat_ttl_secs,
            last_heartbeat: self.last_heartbeat,
            push: self.has_push_token.then(|| PushView {
                period_secs: self.push_period_secs.unwrap_or(PUSH_PERIOD_SECS),
                grace_secs: self.push_grace_secs.unwrap_or(PUSH_GRACE_SECS),
                schedule: self.push_schedule.clone(),
                tz: self.push_schedule.as_ref().and(self.push_tz.clone()),
                last_ping: self.last_push,
                last_status: self.push_status.clone(),
                last_message: self.push_message.clone(),
                started_at: self.push_started_at,
                last_duration_ms: self.push_duration_ms,
            }),
            last_health_check: self.last_health_check,
            last_response_code: self.last_response_code,
            last_latency_ms: self.last_latency_ms,
            last_error: self.last_error.clone(),
            check_interval_secs: self.interval(defaults).as_secs(),
            check_timeout_ms: u64::try_from(self.timeout(defaults).as_millis()).unwrap_or(u64::MAX),
            muted: self.muted,
            paused: self.paused,
            maintenance_until: self.maintenance_until,
            maintenance_from: self.maintenance_from,
            maintenance_window: self.maintenance_window.as_deref().cloned(),
            notify_after: self.notify_after.unwrap_or(DEFAULT_NOTIFY_AFTER),
            last_scanned_at: self.last_scanned_at,
            server_id: self.server_id,
            check: self.check_name.as_ref().map(|name| AgentCheckView {
                name: name.clone(),
                schedule: self.check_schedule.clone(),
                last_status: self
                    .check_status
                    .as_deref()
                    .and_then(lookout_proto::check::LineStatus::parse),
                last_message: self.check_message.clone(),
                last_at: self.check_at,
            }),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A unit's state as systemd reports it at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    pub active_state: String,
    pub sub_state: String,
    pub main_pid: Option<u32>,
    /// `NRestarts`; `None` when not known (not a service).
    pub restarts: Option<u32>,
    /// `Result` of the last run.
    pub result: Option<String>,
    pub exit_status: Option<i32>,
    pub active_since: Option<DateTime<Utc>>,
}

/// One health check result, as stored in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub service_id: i64,
    pub checked_at: DateTime<Utc>,
    pub status: HealthStatus,
    pub url: Option<String>,
    pub response_code: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    /// Healthy, but a condition marked WARNING failed: why.
    pub warning: Option<String>,
    /// The server certificate's expiry, when the check saw one.
    pub cert_expires_at: Option<DateTime<Utc>>,
}

impl HealthCheck {
    pub fn to_view(&self) -> HealthCheckView {
        HealthCheckView {
            service_id: self.service_id,
            status: self.status,
            url: self.url.clone(),
            response_code: self.response_code,
            latency_ms: self.latency_ms,
            checked_at: self.checked_at,
            error: self.error.clone(),
            warning: self.warning.clone(),
        }
    }
}

/// What one scan saw of a container, already classified.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredContainer {
    pub info: lookout_proto::container::ContainerView,
    /// `discovered` when it publishes a web port, else `raw`.
    pub status: RegistryStatus,
    /// The published port a browser would open.
    pub port: Option<u16>,
}

/// What one scan saw of a service unit, already classified.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DiscoveredUnit {
    pub unit: String,
    pub description: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: Option<String>,
    pub main_pid: Option<u32>,
    pub pids: Vec<u32>,
    pub ports: Vec<PortView>,
    /// The best web port, else the lowest port, else none.
    pub port: Option<u16>,
    /// `raw` or `discovered`; a configured service keeps its status.
    pub status: RegistryStatus,
}

/// What applying a scan changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScanCounts {
    pub discovered: usize,
    pub updated: usize,
    pub removed: usize,
    /// Status changes the scan caused.
    pub changes: Vec<StatusEventView>,
}

/// A service's status as recomputed, and the change it recorded, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    pub status: Status,
    pub reason: String,
    pub change: Option<StatusEventView>,
}

/// What a heartbeat did.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub service: Service,
    /// The service was registered by this heartbeat.
    pub created: bool,
    pub change: Option<StatusEventView>,
}

/// What recording a health check did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The service was deleted while being checked; nothing was stored.
    Dropped,
    /// Stored; with the status change it caused, if any.
    Stored(Option<StatusEventView>),
}

/// The storage of a hub. Every method is one transaction: it happens whole or not at all.
/// A service's status in force at some moment and its changes after it,
/// oldest first.
pub type Timeline = (Option<Status>, Vec<(DateTime<Utc>, Status)>);

#[async_trait]
pub trait Store:
    AccountStore + AgentStore + LeaseStore + PageStore + UsageStore + Send + Sync + 'static
{
    /// Creates a configured service (or makes the unregistered one of that
    /// name configured) with its first status: the service as stored, and
    /// the status change it made, if any.
    async fn register_service(
        &self,
        new: &NewService,
        now: DateTime<Utc>,
    ) -> Result<(Service, Option<StatusEventView>), StoreError>;

    /// [`Store::register_service`], the service only.
    async fn create_service(
        &self,
        new: &NewService,
        now: DateTime<Utc>,
    ) -> Result<Service, StoreError> {
        Ok(self.register_service(new, now).await?.0)
    }

    async fn get_service(&self, id: i64) -> Result<Option<Service>, StoreError>;

    /// Services in name order.
    async fn list_services(&self, filter: ServiceFilter) -> Result<Vec<Service>, StoreError>;

    /// Applies the fields present in `patch` and brings the status up to
    /// date; `None` when the service does not exist. Changing the URL or the
    /// endpoint forgets the cached health, which no longer applies.
    async fn change_service(
        &self,
        id: i64,
        patch: &ServicePatch,
        now: DateTime<Utc>,
    ) -> Result<Option<(Service, Option<StatusEventView>)>, StoreError>;

    /// [`Store::change_service`], the service only.
    async fn update_service(
        &self,
        id: i64,
        patch: &ServicePatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Service>, StoreError> {
        Ok(self.change_service(id, patch, now).await?.map(|(s, _)| s))
    }

    /// Deletes a service and its history; `false` when it did not exist.
    async fn delete_service(&self, id: i64) -> Result<bool, StoreError>;

    /// Appends a result to the history and caches it on the service;
    /// [`Recorded::Dropped`] when the service was deleted meanwhile (the
    /// result is then not stored).
    async fn record_health_check(&self, check: &HealthCheck) -> Result<Recorded, StoreError> {
        let mut done = self
            .record_health_checks(std::slice::from_ref(check))
            .await?;
        Ok(done
            .pop()
            .map_or(Recorded::Dropped, |(recorded, _)| recorded))
    }

    /// [`Store::record_health_check`] for several results in one
    /// transaction: for each, what it did and the service as it now stands
    /// (`None` when it was dropped).
    async fn record_health_checks(
        &self,
        checks: &[HealthCheck],
    ) -> Result<Vec<(Recorded, Option<Service>)>, StoreError>;

    /// Records what each service waits on (`None`: nothing) and recomputes
    /// its status, in one transaction; the services as they now stand and
    /// their status changes. A service gone meanwhile is skipped.
    async fn set_waiting(
        &self,
        waiting: &[(i64, Option<lookout_proto::depends::WaitingOn>)],
        now: DateTime<Utc>,
    ) -> Result<(Vec<Service>, Vec<StatusEventView>), StoreError>;

    /// Recomputes a service's status from what is stored about it; records and
    /// returns the change, if there is one. Idempotent.
    async fn reconcile_state(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Reconciled>, StoreError>;

    /// Status changes, newest first, optionally of one service.
    async fn status_events(
        &self,
        service_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StatusEventView>, StoreError>;

    /// Appends events (time, kind, JSON data) to the replay log in one
    /// transaction and returns their ids, in order.
    async fn append_events(
        &self,
        events: &[(DateTime<Utc>, &'static str, String)],
    ) -> Result<Vec<i64>, StoreError>;

    /// The newest id in the event log (0 when empty).
    async fn last_event_id(&self) -> Result<i64, StoreError>;

    /// Logged events after `after_id`, oldest first: (id, kind, data).
    async fn events_after(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String, String)>, StoreError>;

    /// Deletes health results and check-script results older than
    /// `checks_before` (each check keeps its newest result: its agent resumes
    /// from it), logged events older than `events_before`, and status
    /// changes, hourly rollups and audit rows older than `changes_before`;
    /// returns how many rows went.
    async fn prune(
        &self,
        checks_before: DateTime<Utc>,
        events_before: DateTime<Utc>,
        changes_before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Health check results from `from` (inclusive) to `to` (exclusive),
    /// oldest first, as samples (a latency for a passing check that measured
    /// one), of one service or of all: (service id, sample).
    async fn check_samples(
        &self,
        service_id: Option<i64>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, Sample)>, StoreError>;

    /// Writes hourly rollups of check results, replacing those of the same
    /// service and hour (rolling an hour up again is harmless).
    async fn put_check_hours(&self, hours: &[(i64, Bucket)]) -> Result<(), StoreError>;

    /// A service's hourly rollups from `from` to `to`, oldest first.
    async fn check_hours(
        &self,
        service_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Bucket>, StoreError>;

    /// The newest hour rolled up, of any service.
    async fn last_check_hour(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// The most recent results first.
    async fn health_history(
        &self,
        service_id: i64,
        limit: u32,
    ) -> Result<Vec<HealthCheck>, StoreError>;

    /// Records a scan in one transaction: units are matched by unit name (or a
    /// unit-less service with the same name), new ones inserted as raw or
    /// discovered, configured ones keep their status and user fields, and units
    /// gone since the last scan get `systemd_state = "removed"`. Timers are
    /// replaced likewise.
    async fn apply_scan(
        &self,
        units: &[DiscoveredUnit],
        timers: &[TimerView],
        now: DateTime<Utc>,
    ) -> Result<ScanCounts, StoreError>;

    /// The service registered for a unit (by unit, else by name).
    async fn find_by_unit(&self, unit: &str) -> Result<Option<Service>, StoreError>;

    /// Records a unit's state seen outside a scan (followed live, or after
    /// a start, stop or restart); the services it changed, as they now
    /// stand, and their status changes.
    async fn set_unit_state(
        &self,
        unit: &str,
        state: &UnitState,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Service>, Vec<StatusEventView>), StoreError>;

    /// Records the engine's containers in one transaction: each is matched
    /// by container name (or a service of its name with neither unit nor
    /// container), new ones inserted as raw or discovered, configured ones
    /// keep their status and user fields, and containers gone since get
    /// the state `removed`.
    async fn apply_containers(
        &self,
        containers: &[DiscoveredContainer],
        now: DateTime<Utc>,
    ) -> Result<ScanCounts, StoreError>;

    /// Records one container's state seen outside a scan (from the
    /// engine's events, or after a start, stop or restart): the services
    /// it changed, as they now stand, and their status changes.
    async fn set_container_state(
        &self,
        container: &lookout_proto::container::ContainerView,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Service>, Vec<StatusEventView>), StoreError>;

    /// Links a service to the unit behind it (managed services).
    async fn set_unit_link(&self, id: i64, unit: &str) -> Result<(), StoreError>;

    /// Deletes raw and discovered entries whose unit is gone; returns how many.
    async fn delete_removed(&self) -> Result<u64, StoreError>;

    /// Timers, by name.
    async fn list_timers(&self) -> Result<Vec<TimerView>, StoreError>;

    /// A small piece of hub state (e.g. the last scan's summary), as JSON text.
    async fn get_state(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn set_state(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Registers a heartbeat service or refreshes it (`POST /register`).
    /// A service of another kind with that name is a conflict.
    async fn heartbeat(
        &self,
        name: &str,
        ip: &str,
        ttl_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat, StoreError>;

    /// Marks heartbeat and push services that missed their deadline; returns the changes.
    async fn overdue(&self, now: DateTime<Utc>) -> Result<Vec<StatusEventView>, StoreError>;

    /// Deletes heartbeat services silent since `before`; returns their ids.
    async fn remove_silent_heartbeats(&self, before: DateTime<Utc>)
        -> Result<Vec<i64>, StoreError>;

    /// Sets a service's push timing and, when `token_hash` is given, its
    /// push token (stored as its hash; the old one stops working); `false`
    /// when the service does not exist.
    async fn set_push_token(
        &self,
        id: i64,
        token_hash: Option<&str>,
        timing: &lookout_proto::push::PushTiming,
    ) -> Result<bool, StoreError>;

    /// Records a ping on a push URL; `None` when no service has that token.
    async fn record_push(
        &self,
        token_hash: &str,
        ping: &lookout_proto::push::Ping,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, Option<StatusEventView>)>, StoreError>;

    /// Every service's status in force at `since` and its changes after it,
    /// oldest first (services with no change at all are left out).
    async fn status_timelines(
        &self,
        since: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<i64, Timeline>, StoreError>;

    /// The last `per_service` check results of every service since `since`,
    /// oldest first: (time, latency in ms, health). The time bound keeps the
    /// query to recent rows however long the retention.
    async fn recent_checks(
        &self,
        per_service: u32,
        since: DateTime<Utc>,
    ) -> Result<
        std::collections::HashMap<i64, Vec<(DateTime<Utc>, Option<u64>, HealthStatus)>>,
        StoreError,
    >;

    async fn create_channel(
        &self,
        name: &str,
        kind: lookout_proto::notify::ChannelKind,
        config: &serde_json::Map<String, serde_json::Value>,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<Channel, StoreError>;
    async fn list_channels(&self) -> Result<Vec<Channel>, StoreError>;
    async fn get_channel(&self, id: i64) -> Result<Option<Channel>, StoreError>;
    async fn delete_channel(&self, id: i64) -> Result<bool, StoreError>;
    /// Replaces a channel's name, kind, config and whether it is enabled;
    /// `None` when there is no such channel.
    async fn update_channel(
        &self,
        id: i64,
        name: &str,
        kind: lookout_proto::notify::ChannelKind,
        config: &serde_json::Map<String, serde_json::Value>,
        enabled: bool,
    ) -> Result<Option<Channel>, StoreError>;

    /// Logs a delivery and keeps the channel's last error and last success.
    #[allow(clippy::too_many_arguments)]
    async fn record_delivery(
        &self,
        channel_id: i64,
        service_id: Option<i64>,
        kind: &str,
        sent: bool,
        attempts: u32,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The delivery log, newest first.
    async fn list_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError>;

    /// Whether the database answers (one trivial query).
    async fn ping(&self) -> Result<(), StoreError>;

    /// How many write transactions are worth running at once: one where
    /// the engine takes one writer at a time (SQLite), more where writes of
    /// different rows go side by side and each statement is a round trip
    /// over the network (PostgreSQL).
    fn concurrent_writes(&self) -> usize {
        1
    }

    /// Closes connections; the data is then safely on disk.
    async fn close(&self);
}
