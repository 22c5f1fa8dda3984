//! Wire types shared by every part of lookout: the JSON bodies of the REST API,
//! the error body, and the validated domain values they carry.
//!
//! Invariant: this crate does no I/O and never depends on tokio, so the hub, the
//! agent and the CLI can all decode the same bytes the same way.

// Outside tests a panic is a bug: what can fail returns an error, and the
// few invariants that cannot say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod agent;
pub mod check;
pub mod condition;
pub mod container;
pub mod depends;
pub mod error;
pub mod monitor;
pub mod notify;
pub mod push;
pub mod schedule;
pub mod series;
pub mod service;
pub mod status;
pub mod status_page;
pub mod systemd;
pub mod usage;

pub use error::{ErrorBody, ErrorCode, FieldError};
