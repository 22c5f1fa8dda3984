//! Agents connected to this hub: the WebSocket session of each (seed 004's
//! `auth` then `status_update` messages), ingestion into the store, and the
//! registry of live sessions that lets a revocation cut one off at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use lookout_proto::agent::{AgentMessage, ControlAction, ControlResult, HubMessage, StatusUpdate};
use tokio_util::sync::CancellationToken;

use crate::config::AgentSettings;
use crate::live::LiveEvent;
use crate::routes::AppState;
use crate::store::agents::Server;
use crate::store::Store;

/// How long an agent has to authenticate after connecting.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest batch of results taken in one message.
pub const MAX_BATCH: usize = 1000;
/// WebSocket close code for refused credentials (application range).
pub const CLOSE_AUTH_FAILED: u16 = 4001;
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
    fn join(
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
        let old = self.sessions.lock().expect("fleet lock").insert(
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

    fn leave(&self, server_id: i64, session: u64) {
        let mut sessions = self.sessions.lock().expect("fleet lock");
        if sessions.get(&server_id).is_some_and(|s| s.id == session) {
            sessions.remove(&server_id);
        }
    }

    /// Ends the session of `server_id`, if there is one here.
    pub fn kick(&self, server_id: i64) {
        if let Some(s) = self.sessions.lock().expect("fleet lock").remove(&server_id) {
            s.token.cancel();
        }
    }

    /// Whether `server_id`'s agent is connected to this hub.
    pub fn has(&self, server_id: i64) -> bool {
        self.sessions
            .lock()
            .expect("fleet lock")
            .contains_key(&server_id)
    }

    /// How many agents are connected to this hub now.
    pub fn connected(&self) -> usize {
        self.sessions.lock().expect("fleet lock").len()
    }

    /// What a connected agent's host allows the hub to ask.
    pub fn allowed(&self, server_id: i64) -> Option<Vec<String>> {
        self.sessions
            .lock()
            .expect("fleet lock")
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
        let (outbox, session) = self
            .sessions
            .lock()
            .expect("fleet lock")
            .get(&server_id)
            .map(|s| (s.outbox.clone(), s.id))
            .ok_or(ControlError::Offline)?;
        let id = self.number();
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.pending.lock().expect("fleet lock").insert(
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
            self.pending.lock().expect("fleet lock").remove(&id);
            return Err(ControlError::Offline);
        }
        let result = tokio::time::timeout(CONTROL_TIMEOUT, answered).await;
        self.pending.lock().expect("fleet lock").remove(&id);
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(ControlError::Offline),
            Err(_) => Err(ControlError::Timeout(CONTROL_TIMEOUT)),
        }
    }

    /// Hands an agent's answer to whoever asked, if the request was sent to
    /// this server's session; `false` (and nothing handed on) otherwise.
    fn answer(&self, server_id: i64, session: u64, result: ControlResult) -> bool {
        let mut pending = self.pending.lock().expect("fleet lock");
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
    let id = match Event::from_wire(event.kind, &event.data) {
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

async fn send(socket: &mut WebSocket, message: &HubMessage) -> bool {
    let text = serde_json::to_string(message).unwrap_or_default();
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })))
        .await;
}

/// Why an agent's session did not start.
enum NotAdmitted {
    /// Its credentials or first message were wrong: it is told so.
    Refused(String),
    /// The hub could not check them now: the agent should retry.
    Unavailable,
}

/// Reads the first message: the agent's credentials.
async fn authenticate(
    state: &AppState,
    socket: &mut WebSocket,
) -> Result<(Server, Option<String>, Vec<String>), NotAdmitted> {
    let refused = |why: &str| NotAdmitted::Refused(why.to_owned());
    let first = tokio::time::timeout(AUTH_TIMEOUT, socket.recv())
        .await
        .map_err(|_| refused("no auth message within 10 s"))?;
    let text = match first {
        Some(Ok(Message::Text(t))) => t,
        _ => {
            return Err(refused(
                "the first message must be {\"type\": \"auth\", ...}",
            ))
        }
    };
    let auth = match serde_json::from_str::<AgentMessage>(&text) {
        Ok(AgentMessage::Auth(a)) => a,
        _ => {
            return Err(refused(
                "the first message must be {\"type\": \"auth\", ...}",
            ))
        }
    };
    let key_hash = crate::auth::token::hash(&auth.api_key);
    match state
        .store
        .authenticate_agent(&auth.agent_id, &key_hash)
        .await
    {
        Ok(Some(server)) => Ok((server, auth.version, auth.allow)),
        Ok(None) => Err(refused("unknown agent or key (revoked, or never claimed)")),
        Err(e) => {
            tracing::error!(error = ?e, "cannot check an agent's key");
            Err(NotAdmitted::Unavailable)
        }
    }
}

/// Tells an agent its credentials were refused, and closes.
async fn refuse(socket: &mut WebSocket, reason: String) {
    let _ = send(socket, &HubMessage::AuthFailed { reason }).await;
    close(socket, CLOSE_AUTH_FAILED, "authentication failed").await;
}

/// One agent's session, from the upgrade to the close.
pub async fn session(mut socket: WebSocket, state: AppState, client: crate::auth::Client) {
    let (server, version, allow) = match authenticate(&state, &mut socket).await {
        Ok(s) => s,
        Err(NotAdmitted::Refused(reason)) => {
            tracing::warn!(client = %client.ip, %reason, "agent refused");
            state
                .auth
                .audit(
                    None,
                    "agent.refused",
                    Some(reason.clone()),
                    &client,
                    crate::store::accounts::AuditOutcome::Denied,
                )
                .await;
            refuse(&mut socket, reason).await;
            return;
        }
        Err(NotAdmitted::Unavailable) => {
            close(&mut socket, 1011, "hub storage unavailable; retry later").await;
            return;
        }
    };
    let fleet = state.fleet.clone();
    let heartbeat = fleet.settings.heartbeat;
    let heartbeat_secs = i64::try_from(heartbeat.as_secs().max(1)).unwrap_or(10);
    let (session_id, token, mut inbox) = fleet.join(server.id, allow);
    // A revocation between the key check and joining the fleet found no
    // session to cut: look again now that this one can be cut.
    if !matches!(state.store.get_server(server.id).await, Ok(Some(s)) if !s.revoked) {
        fleet.leave(server.id, session_id);
        refuse(
            &mut socket,
            "unknown agent or key (revoked, or never claimed)".into(),
        )
        .await;
        return;
    }
    let ready = async {
        state
            .registry
            .agent_seen(
                server.id,
                heartbeat_secs,
                version.as_deref(),
                state.clock.now(),
            )
            .await?;
        state.store.result_cursors(server.id).await
    }
    .await;
    let cursors = match ready {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = ?e, server = %server.name, "cannot start an agent session");
            close(&mut socket, 1011, "hub storage unavailable").await;
            fleet.leave(server.id, session_id);
            return;
        }
    };
    state.registry.server_changed(server.id);
    tracing::info!(server = %server.name, client = %client.ip, "agent connected");
    let ok = send(
        &mut socket,
        &HubMessage::AuthOk {
            server_id: server.id,
            server_name: server.name.clone(),
            heartbeat_secs: heartbeat.as_secs().max(1),
            cursors,
        },
    )
    .await;
    if ok {
        pump(
            &mut socket,
            &state,
            &server,
            session_id,
            heartbeat_secs,
            &token,
            &mut inbox,
        )
        .await;
    }
    fleet.leave(server.id, session_id);
    state.registry.server_changed(server.id);
    tracing::info!(server = %server.name, "agent disconnected");
}

async fn pump(
    socket: &mut WebSocket,
    state: &AppState,
    server: &Server,
    session: u64,
    heartbeat_secs: i64,
    token: &CancellationToken,
    inbox: &mut tokio::sync::mpsc::Receiver<HubMessage>,
) {
    // Silence for longer than three heartbeats ends the session.
    let silence = Duration::from_secs(u64::try_from(heartbeat_secs).unwrap_or(10) * 3 + 1);
    let mut last_noted = tokio::time::Instant::now();
    let note_every = Duration::from_millis(u64::try_from(heartbeat_secs).unwrap_or(10) * 500);
    loop {
        let incoming = tokio::select! {
            () = state.shutdown.cancelled() => {
                close(socket, 1001, "hub shutting down").await;
                return;
            }
            () = token.cancelled() => {
                close(socket, CLOSE_REVOKED, "session ended by the hub").await;
                return;
            }
            Some(request) = inbox.recv() => {
                if !send(socket, &request).await {
                    return;
                }
                continue;
            }
            m = tokio::time::timeout(silence, socket.recv()) => m,
        };
        let text = match incoming {
            Err(_) => {
                tracing::warn!(server = %server.name, "agent silent: closing its session");
                close(socket, 1008, "no heartbeat").await;
                return;
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue, // pings are answered by axum
        };
        let now = state.clock.now();
        let message = match serde_json::from_str::<AgentMessage>(&text) {
            Ok(m) => m,
            Err(e) => {
                let reply = HubMessage::Error {
                    message: format!("cannot read the message: {e}"),
                };
                if !send(socket, &reply).await {
                    return;
                }
                continue;
            }
        };
        // Being heard from is noted at most every half heartbeat (three
        // missed make it offline): a busy agent does not double the writes
        // of its results.
        if last_noted.elapsed() >= note_every {
            last_noted = tokio::time::Instant::now();
            let seen = state
                .registry
                .agent_seen(server.id, heartbeat_secs, None, now)
                .await;
            if let Err(e) = seen {
                tracing::warn!(error = ?e, "cannot note an agent as seen");
            }
        }
        let result = match message {
            AgentMessage::Heartbeat {} | AgentMessage::Auth(_) => Ok(()),
            AgentMessage::ControlResult(result) => {
                let id = result.id;
                if !state.fleet.answer(server.id, session, result) {
                    tracing::warn!(
                        server = %server.name,
                        request = id,
                        "an agent answered a control request this hub did not send it"
                    );
                    let reply = HubMessage::Error {
                        message: format!("no control request {id} is waiting for this server"),
                    };
                    if !send(socket, &reply).await {
                        return;
                    }
                }
                Ok(())
            }
            AgentMessage::Checks { checks } => {
                match state
                    .registry
                    .set_server_checks(server.id, &checks, now)
                    .await
                {
                    Ok(ingested) => {
                        if !tell_refused(socket, &ingested.refused).await {
                            return;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            AgentMessage::StatusUpdate(update) => admit(socket, state, server, vec![update]).await,
            AgentMessage::StatusUpdates { updates } => admit(socket, state, server, updates).await,
            AgentMessage::Scan { scan } => {
                state.registry.set_server_scan(server.id, &scan, now).await
            }
        };
        if let Err(e) = result {
            tracing::error!(error = ?e, server = %server.name, "cannot store what an agent sent");
            // The agent replays from its logs when it reconnects.
            close(socket, 1011, "hub storage unavailable").await;
            return;
        }
    }
}

/// How far ahead of the hub's clock a result may be dated. A result from
/// further ahead would stand as the check's newest for good (and as the
/// agent's cursor), hiding every real one after it.
const MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Stores results, refusing (and telling the agent about) those dated too far
/// in the future.
async fn admit(
    socket: &mut WebSocket,
    state: &AppState,
    server: &Server,
    updates: Vec<StatusUpdate>,
) -> Result<(), crate::store::StoreError> {
    let limit = state.clock.now() + MAX_AHEAD;
    let (ok, ahead): (Vec<StatusUpdate>, Vec<StatusUpdate>) =
        updates.into_iter().partition(|u| u.timestamp <= limit);
    if let Some(first) = ahead.first() {
        tracing::warn!(server = %server.name, check = %first.service_name, at = %first.timestamp,
            refused = ahead.len(), "results dated in the future refused");
        let message = format!(
            "{} result(s) refused: dated more than an hour after the hub's clock (check {} at {}); \
             is the host's clock right?",
            ahead.len(),
            first.service_name,
            first.timestamp.to_rfc3339()
        );
        let _ = send(socket, &HubMessage::Error { message }).await;
    }
    let refused = ingest(state, server.id, ok).await?;
    tell_refused(socket, &refused).await;
    Ok(())
}

/// Tells an agent which new checks the hub did not take (the server has as
/// many as a server may); `false` when the socket is gone.
async fn tell_refused(socket: &mut WebSocket, refused: &[String]) -> bool {
    let Some(first) = refused.first() else {
        return true;
    };
    let message = format!(
        "{} new check(s) refused ({first}{}): this server already has {} checks, the most a \
         server may have; their results are dropped",
        refused.len(),
        if refused.len() > 1 { ", ..." } else { "" },
        crate::store::agents::MAX_CHECKS_PER_SERVER
    );
    send(socket, &HubMessage::Error { message }).await
}

/// Stores results (a message longer than a check's line is cut to fit);
/// returns the new checks refused for this server.
async fn ingest(
    state: &AppState,
    server_id: i64,
    mut updates: Vec<StatusUpdate>,
) -> Result<Vec<String>, crate::store::StoreError> {
    let mut refused = Vec::new();
    for u in &mut updates {
        lookout_proto::check::cut_to(&mut u.message, lookout_proto::check::MAX_LINE);
    }
    for chunk in updates.chunks(MAX_BATCH) {
        let valid: Vec<StatusUpdate> = chunk
            .iter()
            .filter(|u| lookout_proto::check::CheckName::parse(&u.service_name).is_ok())
            .cloned()
            .collect();
        let mut ingested = state
            .registry
            .record_results(server_id, &valid, state.clock.now())
            .await?;
        for name in std::mem::take(&mut ingested.refused) {
            if !refused.contains(&name) {
                refused.push(name);
            }
        }
        for (_, result) in &ingested.results {
            let lag = (result.received_at - result.at)
                .to_std()
                .unwrap_or_default();
            state.metrics.agent_result(result.status, lag);
        }
    }
    Ok(refused)
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
