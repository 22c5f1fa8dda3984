//! The lookout hub as a library: `lookout serve` is a thin wrapper around
//! [`app::Application`], and the tests build the very same thing on port 0.

pub mod agents;
pub mod app;
pub mod auth;
pub mod clock;
pub use lookout_config as config;
pub use lookout_store as store;
pub mod discovery;
pub mod error;
pub mod events;
pub mod follow;
pub mod health;
pub mod history;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod registry;
pub mod routes;
pub mod serve;
pub mod tasks;
pub mod tls;

pub use app::Application;
pub use config::Config;

/// The version shown in the dashboard footer and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
