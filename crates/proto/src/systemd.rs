//! Which systemd manager a hub or an agent talks to.

/// Which systemd manager to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The system manager (PID 1), on the system bus.
    System,
    /// The calling user's manager, on the session bus (`$XDG_RUNTIME_DIR/bus`).
    User,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::User => "user",
        }
    }
}
