//! The hub's core: every service in memory ([`registry`]), the typed events
//! every change publishes ([`events`]) and the tasks that act on them — the
//! health scheduler, the notifier, the recorder of live events, the agent
//! fleet, systemd discovery and its follower, the overdue sweeper's rules —
//! plus accounts and sessions ([`auth`]). It knows nothing of HTTP: the web
//! layer (`lookout-hub`) calls it, never the other way round.

// Outside tests a panic is a bug: what can fail returns an error, and the
// few invariants that cannot say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod agents;
pub mod auth;
pub mod clock;
pub mod containers;
pub mod depends;
pub use lookout_config as config;
pub use lookout_store as store;
pub mod discovery;
pub mod events;
pub mod follow;
pub mod heal;
pub mod health;
pub mod history;
pub mod live;
pub mod metrics;
pub mod monitors;
pub mod notify;
pub mod registry;
pub mod status_page;
pub mod sync;
pub mod tasks;
pub mod usage;
