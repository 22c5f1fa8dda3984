//! One agent's WebSocket session: its `auth` message, then its
//! `status_update` messages ingested through the store and the registry, and
//! the hub's control requests sent down the same socket. The fleet of live
//! sessions is the core's (`lookout_core::agents`).

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use lookout_proto::agent::{AgentMessage, HubMessage, StatusUpdate};
use tokio_util::sync::CancellationToken;

use crate::agents::CLOSE_REVOKED;
use crate::routes::AppState;
use crate::store::agents::Server;

/// How long an agent has to authenticate after connecting.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest batch of results taken in one message.
pub const MAX_BATCH: usize = 1000;
/// WebSocket close code for refused credentials (application range).
pub const CLOSE_AUTH_FAILED: u16 = 4001;

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
            AgentMessage::Usage { host, units } => {
                // A host's figures are kept under its server's name.
                if let Some(host) = host {
                    let row = crate::usage::host_row(&server.name, &host);
                    state.usage.record_host(&server.name, host);
                    if let Err(e) = state.store.put_host_usage(&[row]).await {
                        tracing::warn!(error = %e, server = %server.name, "cannot record a host's usage");
                    }
                }
                state.usage.record_server_units(
                    server.id,
                    units.into_iter().map(|e| (e.unit, e.usage)).collect(),
                );
                Ok(())
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
