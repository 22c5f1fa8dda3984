//! Start, stop, restart and status of one unit. A control call waits for
//! systemd's job to finish (the `JobRemoved` signal) and reports its result.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::Serialize;
use zbus::proxy::CacheProperties;

use crate::dbus::{ServiceProxy, UnitProxy};
use crate::{Error, Systemd, UnitName};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "restart" => Some(Action::Restart),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }
}

/// A unit's state as systemd reports it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitStatus {
    pub unit: String,
    pub description: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: Option<String>,
    pub main_pid: Option<u32>,
    /// The service's last result (`success`, `exit-code`, `timeout`, ...).
    pub result: Option<String>,
    pub exec_main_status: Option<i32>,
    pub restarts: Option<u32>,
    pub active_since: Option<DateTime<Utc>>,
}

/// What a start, stop or restart did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlOutcome {
    pub unit: String,
    pub action: Action,
    /// systemd's job result: `done`, `failed`, `canceled`, `timeout`, `dependency`, `skipped`.
    pub job_result: String,
    pub status: UnitStatus,
}

/// systemd timestamps are microseconds since the epoch; 0 means never.
pub fn usec_time(usec: u64) -> Option<DateTime<Utc>> {
    (usec != 0)
        .then(|| i64::try_from(usec).ok())
        .flatten()
        .and_then(DateTime::from_timestamp_micros)
}

/// A service unit's cgroup and systemd's own accounting of it; a figure
/// systemd does not keep (its accounting is off, or the controller is not
/// delegated, as `cpuacct` on a hybrid host) is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounting {
    /// `/system.slice/nginx.service`; `None` while the unit has no cgroup.
    pub control_group: Option<String>,
    pub cpu_nsec: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub tasks: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
}

impl Systemd {
    /// The cgroup and accounting of the service unit `unit`.
    pub async fn accounting(&self, unit: &UnitName) -> Result<Accounting, Error> {
        let path = self
            .manager
            .load_unit(unit.as_str())
            .await
            .map_err(|e| self.bus_error(e))?;
        let service = ServiceProxy::builder(&self.conn)
            .path(path)
            .map_err(|e| self.bus_error(e))?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.bus_error(e))?;
        let (group, cpu, memory, tasks, read, write) = tokio::join!(
            service.control_group(),
            service.cpu_usage_nsec(),
            service.memory_current(),
            service.tasks_current(),
            service.io_read_bytes(),
            service.io_write_bytes(),
        );
        // systemd says "not set" with the largest value.
        let set = |v: zbus::Result<u64>| v.ok().filter(|v| *v != u64::MAX);
        Ok(Accounting {
            control_group: group.ok().filter(|g| !g.is_empty()),
            cpu_nsec: set(cpu),
            memory_bytes: set(memory),
            tasks: set(tasks),
            io_read_bytes: set(read),
            io_write_bytes: set(write),
        })
    }

    /// The status of `unit`; [`Error::NoSuchUnit`] when systemd has no such unit.
    pub async fn status(&self, unit: &UnitName) -> Result<UnitStatus, Error> {
        let path = self
            .manager
            .load_unit(unit.as_str())
            .await
            .map_err(|e| self.bus_error(e))?;
        let unit_proxy = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .map_err(|e| self.bus_error(e))?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.bus_error(e))?;
        let load_state = unit_proxy
            .load_state()
            .await
            .map_err(|e| self.bus_error(e))?;
        if load_state == "not-found" {
            return Err(Error::NoSuchUnit(unit.to_string()));
        }
        let (description, active_state, sub_state, file_state, since) = tokio::join!(
            unit_proxy.description(),
            unit_proxy.active_state(),
            unit_proxy.sub_state(),
            unit_proxy.unit_file_state(),
            unit_proxy.active_enter_timestamp(),
        );
        let mut status = UnitStatus {
            unit: unit.to_string(),
            description: description.unwrap_or_default(),
            load_state,
            active_state: active_state.map_err(|e| self.bus_error(e))?,
            sub_state: sub_state.unwrap_or_default(),
            unit_file_state: file_state.ok().filter(|s| !s.is_empty()),
            main_pid: None,
            result: None,
            exec_main_status: None,
            restarts: None,
            active_since: since.ok().and_then(usec_time),
        };
        if unit.kind() == "service" {
            let service = ServiceProxy::builder(&self.conn)
                .path(path)
                .map_err(|e| self.bus_error(e))?
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(|e| self.bus_error(e))?;
            let (pid, result, code, restarts) = tokio::join!(
                service.main_pid(),
                service.result(),
                service.exec_main_status(),
                service.n_restarts()
            );
            status.main_pid = pid.ok().filter(|p| *p != 0);
            status.result = result.ok();
            status.exec_main_status = code.ok();
            status.restarts = restarts.ok();
        }
        Ok(status)
    }

    /// Starts, stops or restarts `unit` and waits up to `timeout` for the job.
    pub async fn control(
        &self,
        unit: &UnitName,
        action: Action,
        timeout: Duration,
    ) -> Result<ControlOutcome, Error> {
        if unit.is_template() {
            return Err(Error::Refused(format!(
                "{unit} is a template; name an instance such as {}",
                unit.as_str().replace("@.", "@NAME.")
            )));
        }
        // Listen before asking, so the signal cannot slip by between reply and subscription.
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(|e| self.bus_error(e))?;
        let name = unit.as_str();
        let job = match action {
            Action::Start => self.manager.start_unit(name, "replace").await,
            Action::Stop => self.manager.stop_unit(name, "replace").await,
            Action::Restart => self.manager.restart_unit(name, "replace").await,
        }
        .map_err(|e| self.bus_error(e))?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                if let Ok(args) = signal.args() {
                    if args.job == job {
                        return Some(args.result().clone());
                    }
                }
            }
            None
        };
        let job_result = tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout {
                what: format!("{action} of {unit}", action = action.as_str()),
                after: timeout,
            })?
            .ok_or_else(|| Error::Unreachable {
                scope: self.scope.as_str(),
                cause: "the bus connection closed while waiting for the job".into(),
            })?;
        let status = self.status(unit).await?;
        Ok(ControlOutcome {
            unit: name.to_owned(),
            action,
            job_result,
            status,
        })
    }
}
