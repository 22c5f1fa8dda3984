//! Agents connected to this hub: the registry of live sessions that lets a
//! revocation cut one off at once and routes control requests to the right
//! host, and the hub's view of a server. The WebSocket session itself (auth,
//! `status_update` messages, ingestion) is the web layer's
//! (`lookout_hub::agent_session`).

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lookout_proto::agent::{ControlAction, ControlResult, HubMessage};
use tokio_util::sync::CancellationToken;

use crate::config::AgentSettings;
use crate::events::LiveEvent;
use crate::store::agents::Server;
use crate::store::Store;

/// WebSocket close code when the server's key was revoked mid-session.
pub const CLOSE_REVOKED: u16 = 4003;

/// A live session: its number (to tell sessions of one server apart), the
/// token that ends it, the way to send it requests, and what its host allows.
struct Session {
    id: u64,
    token: CancellationToken,
    outbox: tokio::sync::mpsc::Sender<HubMessage>,
    allow: Vec<String>,
}

/// Why a control request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the server's agent is not connected to this hub")]
    Offline,
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
}

/// The agents connected to this hub.
#[derive(Debug, Default)]
pub struct Fleet {
    pub settings: AgentSettings,
    sessions: Mutex<HashMap<i64, Session>>,
    next: std::sync::atomic::AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
}

/// A control request waiting for its answer: only the session it was sent
/// to may answer it (another enrolled host could otherwise forge one).
#[derive(Debug)]
struct Pending {
    server_id: i64,
    session: u64,
    answer: tokio::sync::oneshot::Sender<ControlResult>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How long a control request may take on the host.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(90);

impl Fleet {
    pub fn new(settings: AgentSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    fn number(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Registers a session of `server_id`, ending an older one of the same
    /// server (an agent that reconnected before its old socket timed out).
    pub fn join(
        &self,
        server_id: i64,
        allow: Vec<String>,
    ) -> (
        u64,
        CancellationToken,
        tokio::sync::mpsc::Receiver<HubMessage>,
    ) {
        let id = self.number();
        let token = CancellationToken::new();
        let (outbox, inbox) = tokio::sync::mpsc::channel(16);
        let old = lock(&self.sessions).insert(
            server_id,
            Session {
                id,
                token: token.clone(),
                outbox,
                allow,
            },
        );
        if let Some(old) = old {
            old.token.cancel();
        }
        (id, token, inbox)
    }

    pub fn leave(&self, server_id: i64, session: u64) {
        let mut sessions = lock(&self.sessions);
        if sessions.get(&server_id).is_some_and(|s| s.id == session) {
            sessions.remove(&server_id);
        }
    }

    /// Ends the session of `server_id`, if there is one here.
    pub fn kick(&self, server_id: i64) {
        if let Some(s) = lock(&self.sessions).remove(&server_id) {
            s.token.cancel();
        }
    }

    /// Whether `server_id`'s agent is connected to this hub.
    pub fn has(&self, server_id: i64) -> bool {
        lock(&self.sessions).contains_key(&server_id)
    }

    /// How many agents are connected to this hub now.
    pub fn connected(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// What a connected agent's host allows the hub to ask.
    pub fn allowed(&self, server_id: i64) -> Option<Vec<String>> {
        lock(&self.sessions)
            .get(&server_id)
            .map(|s| s.allow.clone())
    }

    /// Asks a connected agent to act on its host and waits for its answer.
    pub async fn request(
        &self,
        server_id: i64,
        action: ControlAction,
        target: String,
        requested_by: String,
    ) -> Result<ControlResult, ControlError> {
        let (outbox, session) = lock(&self.sessions)
            .get(&server_id)
            .map(|s| (s.outbox.clone(), s.id))
            .ok_or(ControlError::Offline)?;
        let id = self.number();
        let (answer, answered) = tokio::sync::oneshot::channel();
        lock(&self.pending).insert(
            id,
            Pending {
                server_id,
                session,
                answer,
            },
        );
        let message = HubMessage::Control {
            id,
            action,
            target,
            requested_by,
        };
        if outbox.send(message).await.is_err() {
            lock(&self.pending).remove(&id);
            return Err(ControlError::Offline);
        }
        let result = tokio::time::timeout(CONTROL_TIMEOUT, answered).await;
        lock(&self.pending).remove(&id);
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(ControlError::Offline),
            Err(_) => Err(ControlError::Timeout(CONTROL_TIMEOUT)),
        }
    }

    /// Hands an agent's answer to whoever asked, if the request was sent to
    /// this server's session; `false` (and nothing handed on) otherwise.
    pub fn answer(&self, server_id: i64, session: u64, result: ControlResult) -> bool {
        let mut pending = lock(&self.pending);
        let ours = pending
            .get(&result.id)
            .is_some_and(|p| p.server_id == server_id && p.session == session);
        if !ours {
            return false;
        }
        if let Some(waiting) = pending.remove(&result.id) {
            let _ = waiting.answer.send(result);
        }
        true
    }
}

/// With several hubs: a server revoked or deleted through another hub loses
/// its session here too (the event log tells every hub).
pub fn follow_other_hubs(store: &Arc<dyn Store>, fleet: &Arc<Fleet>, event: &LiveEvent) {
    use crate::events::Event;
    // Most events are results: pass them by without reading their data.
    if !event.kind.starts_with("server.") {
        return;
    }
    let id = match Event::from_wire(event.kind, &event.data.text()) {
        Some(Event::ServerUpdated { id } | Event::ServerDeleted { id }) => id,
        _ => return,
    };
    if !fleet.has(id) {
        return;
    }
    let (store, fleet) = (store.clone(), fleet.clone());
    tokio::spawn(async move {
        match store.get_server(id).await {
            Ok(Some(server)) if !server.revoked => {}
            Ok(_) => {
                tracing::info!(
                    server = id,
                    "revoked or deleted through another hub; ending its session"
                );
                fleet.kick(id);
            }
            Err(e) => tracing::warn!(server = id, error = ?e, "cannot look the server up"),
        }
    });
}

/// The hub's view of a server: its record and whether it is online.
pub fn server_view(
    server: &Server,
    checks: &[crate::store::Service],
    now: chrono::DateTime<chrono::Utc>,
) -> lookout_proto::service::ServerView {
    use lookout_proto::status::Status;
    let mine: Vec<&crate::store::Service> = checks
        .iter()
        .filter(|s| s.server_id == Some(server.id))
        .collect();
    let rank = |s: Status| match s {
        Status::Failure => 4,
        Status::Warning => 3,
        Status::Update => 2,
        Status::Unknown => 1,
        Status::Ok => 0,
    };
    let online = server.online(now);
    let status = if !online {
        Status::Unknown
    } else {
        mine.iter()
            .map(|s| s.state)
            .max_by_key(|s| rank(*s))
            .unwrap_or(Status::Ok)
    };
    lookout_proto::service::ServerView {
        id: server.id,
        name: server.name.clone(),
        labels: server.labels.clone(),
        agent_id: server.agent_id.clone(),
        claimed: server.claimed,
        revoked: server.revoked,
        online,
        hostname: server.hostname.clone(),
        agent_version: server.agent_version.clone(),
        last_seen: server.last_seen,
        checks: u32::try_from(mine.len()).unwrap_or(u32::MAX),
        status,
        created_at: server.created_at,
    }
}

/// Shared handle.
pub type SharedFleet = Arc<Fleet>;
