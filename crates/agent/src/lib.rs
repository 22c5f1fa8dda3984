//! The lookout agent: what runs on every monitored host.
//!
//! - [`checks`]: check scripts installed as a oneshot service and a timer each
//!   (`lookout check add|list|run|remove|validate`). The agent keeps no
//!   database: the installed checks are the unit files and script copies that
//!   exist (the one source of truth).
//! - [`exec`]: the wrapper systemd runs for a check (`lookout check exec`): it
//!   runs the script with its timeout and turns whatever happened into result
//!   lines in the check's log, `ERROR` lines when the check itself failed.
//! - [`layout`]: where scripts, units and logs live, for the system manager
//!   or a user manager.

// Outside tests a panic is a bug: what can fail returns an error, and the
// few invariants that cannot say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![forbid(unsafe_code)]

pub mod checks;
pub mod daemon;
pub mod exec;
pub mod layout;
pub mod tail;

pub use layout::Layout;
