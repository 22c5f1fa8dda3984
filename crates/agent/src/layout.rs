//! Where a host's checks live.

use std::path::{Path, PathBuf};

use lookout_proto::check::CheckName;
use lookout_systemd::Scope;

/// The directories of one systemd manager's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub scope: Scope,
    /// Installed copies of the scripts, one file per check named after it.
    pub scripts: PathBuf,
    /// Unit files (`lookout-<name>.service` and `.timer`).
    pub units: PathBuf,
    /// One log file per check: its result lines, appended by systemd.
    pub logs: PathBuf,
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// A user's directories cannot be found: neither the named XDG variable
/// nor `HOME` is set.
#[derive(Debug, thiserror::Error)]
#[error("neither {0} nor HOME is set")]
pub struct NoHome(pub &'static str);

impl Layout {
    /// The system manager's: `/usr/local/lib/lookout/checks`,
    /// `/etc/systemd/system`, `/var/log/lookout`.
    pub fn system() -> Self {
        Self {
            scope: Scope::System,
            scripts: PathBuf::from("/usr/local/lib/lookout/checks"),
            units: PathBuf::from("/etc/systemd/system"),
            logs: PathBuf::from("/var/log/lookout"),
        }
    }

    /// The user manager's, from the XDG directories:
    /// `$XDG_CONFIG_HOME/lookout/checks`, `$XDG_CONFIG_HOME/systemd/user`,
    /// `$XDG_STATE_HOME/lookout/checks`.
    pub fn user() -> Result<Self, NoHome> {
        let home = env_dir("HOME");
        let config = env_dir("XDG_CONFIG_HOME")
            .or_else(|| home.as_ref().map(|h| h.join(".config")))
            .ok_or(NoHome("XDG_CONFIG_HOME"))?;
        let state = env_dir("XDG_STATE_HOME")
            .or_else(|| home.as_ref().map(|h| h.join(".local/state")))
            .ok_or(NoHome("XDG_STATE_HOME"))?;
        Ok(Self::user_in(&config, &state))
    }

    /// A user layout under explicit configuration and state directories.
    pub fn user_in(config: &Path, state: &Path) -> Self {
        Self {
            scope: Scope::User,
            scripts: config.join("lookout/checks"),
            units: config.join("systemd/user"),
            logs: state.join("lookout/checks"),
        }
    }

    pub fn for_scope(scope: Scope) -> Result<Self, NoHome> {
        match scope {
            Scope::System => Ok(Self::system()),
            Scope::User => Self::user(),
        }
    }

    pub fn script(&self, name: &CheckName) -> PathBuf {
        self.scripts.join(name.as_str())
    }

    pub fn log(&self, name: &CheckName) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    pub fn service(&self, name: &CheckName) -> PathBuf {
        self.units.join(name.service_unit())
    }

    pub fn timer(&self, name: &CheckName) -> PathBuf {
        self.units.join(name.timer_unit())
    }
}
