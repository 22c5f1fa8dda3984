//! systemd for lookout: discovery of services, their ports and timers; start,
//! stop and restart; logs from the journal; unit files for managed services.
//!
//! Invariant: this is the only crate that talks D-Bus. It never parses
//! `systemctl` output and never runs a shell: the one subprocess it starts
//! (`journalctl`) gets an argv of validated values.

// Outside tests a panic is a bug: what can fail returns an error, and the
// few invariants that cannot say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod control;
pub mod dbus;
pub mod effects;
pub mod follow;
pub mod journal;
pub mod processes;
mod scan;
pub mod sockets;
pub mod unit;
pub mod unitfile;

use std::time::Duration;

use dbus::ManagerProxy;

pub use control::{usec_time, Accounting, Action, ControlOutcome, UnitStatus};
pub use journal::{LogEntry, LogFollower};
pub use scan::{Listen, ListenSource, Scan, ServiceUnit, TimerUnit};
pub use unit::{InvalidUnitName, UnitName};

/// This host's name, as the kernel has it (`None` if it cannot be read or is empty).
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Which systemd manager to talk to (a plain value: the config and the
/// agent name it without this crate).
pub use lookout_proto::systemd::Scope;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// systemd cannot be reached: no bus, no manager on it, permission denied.
    #[error("cannot reach the systemd {scope} manager: {cause}")]
    Unreachable { scope: &'static str, cause: String },
    /// The unit's name.
    #[error("unit {0} does not exist")]
    NoSuchUnit(String),
    #[error("systemd refused: {0}")]
    Refused(String),
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("cannot read the journal: {0}")]
    Journal(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn from_bus(scope: Scope, e: zbus::Error) -> Self {
        if let zbus::Error::MethodError(name, message, _) = &e {
            let text = message.clone().unwrap_or_default();
            return match name.as_str() {
                "org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.LoadFailed" => {
                    Error::NoSuchUnit(unit_named_in(&text))
                }
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NoReply"
                | "org.freedesktop.DBus.Error.Disconnected" => Error::Unreachable {
                    scope: scope.as_str(),
                    cause: text,
                },
                _ => Error::Refused(format!("{name}: {text}")),
            };
        }
        Error::Unreachable {
            scope: scope.as_str(),
            cause: e.to_string(),
        }
    }
}

/// The unit systemd's "Unit foo.service not found." names, else the whole
/// message.
fn unit_named_in(message: &str) -> String {
    message
        .strip_prefix("Unit ")
        .and_then(|rest| rest.split_whitespace().next())
        .map_or_else(|| message.to_owned(), str::to_owned)
}

/// A connection to one systemd manager.
#[derive(Debug, Clone)]
pub struct Systemd {
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
    scope: Scope,
}

impl Systemd {
    /// Connects to the manager of `scope` and subscribes to its job signals.
    pub async fn connect(scope: Scope) -> Result<Self, Error> {
        let unreachable = |e: zbus::Error| Error::Unreachable {
            scope: scope.as_str(),
            cause: e.to_string(),
        };
        let conn = match scope {
            Scope::System => zbus::Connection::system().await,
            Scope::User => zbus::Connection::session().await,
        }
        .map_err(unreachable)?;
        let manager = ManagerProxy::new(&conn).await.map_err(unreachable)?;
        manager
            .subscribe()
            .await
            .map_err(|e| Error::from_bus(scope, e))?;
        Ok(Self {
            conn,
            manager,
            scope,
        })
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Makes systemd re-read unit files (`daemon-reload`).
    pub async fn reload(&self) -> Result<(), Error> {
        self.manager.reload().await.map_err(|e| self.bus_error(e))
    }

    /// Enables unit files (their `[Install]` links), like `systemctl enable`.
    pub async fn enable(&self, units: &[&UnitName]) -> Result<(), Error> {
        let names: Vec<&str> = units.iter().map(|u| u.as_str()).collect();
        self.manager
            .enable_unit_files(&names, false, true)
            .await
            .map(|_| ())
            .map_err(|e| self.bus_error(e))
    }

    /// Removes the `[Install]` links of unit files, like `systemctl disable`.
    pub async fn disable(&self, units: &[&UnitName]) -> Result<(), Error> {
        let names: Vec<&str> = units.iter().map(|u| u.as_str()).collect();
        self.manager
            .disable_unit_files(&names, false)
            .await
            .map(|_| ())
            .map_err(|e| self.bus_error(e))
    }

    fn bus_error(&self, e: zbus::Error) -> Error {
        Error::from_bus(self.scope, e)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_unit_is_named_once() {
        let e = super::Error::NoSuchUnit(super::unit_named_in("Unit nosuch.service not found."));
        assert_eq!(e.to_string(), "unit nosuch.service does not exist");
        assert_eq!(super::unit_named_in("odd"), "odd");
    }
}
