//! Authentication at the door: the core's accounts, sessions and tokens
//! (`lookout_core::auth`, re-exported here), plus what only HTTP has: who the
//! client is ([`client`]) and the one middleware every route passes
//! ([`guard`]: cross-origin writes, rate limit, identity, access, CSRF).

pub use lookout_core::auth::*;

pub mod client;
pub mod guard;
