//! The lookout hub as a library: `lookout serve` is a thin wrapper around
//! [`app::Application`], and the tests build the very same thing on port 0.
//!
//! This crate is the web layer (routes, pages, the guard, the HTTP server);
//! what it serves lives in the core (`lookout-core`), whose modules it
//! re-exports under their own names.

// Outside tests a panic is a bug: what can fail returns an error, and the
// few invariants that cannot say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod agent_session;
pub mod app;
pub mod auth;
pub mod badge;
pub use lookout_config as config;
pub use lookout_core::{
    agents, clock, containers, depends, discovery, events, follow, heal, health, history, live,
    metrics, monitors, notify, registry, status_page, sync, tasks, usage,
};
pub use lookout_store as store;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod serve;
pub mod tls;

pub use app::Application;
pub use config::Config;

/// The version shown in the dashboard footer and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
