//! Agents and servers over the API: an admin provisions a server and gets a
//! one-time claim token, the agent trades it for its key, then connects its
//! WebSocket at `/api/v1/agent/connect`.

use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use lookout_proto::agent::{ClaimResponse, RegisterResponse};
use lookout_proto::service::ServiceName;
use lookout_proto::FieldError;
use serde_json::{json, Value};

use super::extract::{count_param, Checked, Fields, PathId, QueryMap, ServiceId};
use super::table::Routes;
use super::AppState;
use crate::agents::server_view;
use crate::auth::guard::{Caller, Remote};
use crate::auth::{token, Access, Bucket, Client, Principal};
use crate::error::ApiError;
use crate::openapi::{doc, Answer, Doc, LIMIT};
use crate::store::accounts::AuditOutcome;
use crate::store::agents::NewServer;

pub fn routes(r: Routes) -> Routes {
    r.post("/v1/agents/register", Access::Admin, register)
        .doc(Doc {
            body: Some("RegisterServerRequest"),
            ..doc(
                "Add a server: returns a one-time claim token for its agent",
                "agents",
                Answer::CreatedObject,
            )
        })
        .limited(
            Method::POST,
            "/v1/agents/claim",
            Access::Public,
            Bucket::Login,
            claim,
        )
        .doc(Doc {
            body: Some("ClaimRequest"),
            ..doc("An agent claims its server", "agents", Answer::Object)
        })
        // The agent authenticates with its first message.
        .limited(
            Method::GET,
            "/v1/agent/connect",
            Access::Public,
            Bucket::Agents,
            connect,
        )
        .doc(doc(
            "An agent's WebSocket session",
            "agents",
            Answer::Upgrade,
        ))
        .get("/v1/servers", Access::Viewer, list_servers)
        .doc(doc("Servers", "agents", Answer::Many("ServerView")))
        .get("/v1/servers/{id}", Access::Viewer, get_server)
        .doc(doc("One server", "agents", Answer::One("ServerView")))
        .get("/v1/servers/{id}/services", Access::Viewer, server_services)
        .doc(doc(
            "A server's checks",
            "agents",
            Answer::Many("ServiceView"),
        ))
        .post("/v1/servers/{id}/revoke", Access::Admin, revoke)
        .doc(doc("Revoke a server's agent key", "agents", Answer::Object))
        .limited(
            Method::POST,
            "/v1/servers/{id}/control",
            Access::Admin,
            Bucket::Control,
            control,
        )
        .doc(Doc {
            body: Some("ControlRequest"),
            ..doc("Ask a server's agent to act", "agents", Answer::Object)
        })
        .delete("/v1/servers/{id}", Access::Admin, delete_server)
        .doc(doc(
            "Remove a server and its checks",
            "agents",
            Answer::Empty,
        ))
        .get("/services/{id}/results", Access::Viewer, results)
        .doc(Doc {
            query: &[LIMIT],
            ..doc(
                "An agent check's results",
                "agents",
                Answer::Many("CheckResultView"),
            )
        })
}

/// `POST /api/v1/agents/register`: a server to add.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterServerRequest {
    /// The server's name, as its services are named.
    #[schema(min_length = 1, max_length = 255)]
    pub server_name: String,
    /// At most 20 labels of 1 to 50 characters.
    #[schema(max_items = 20)]
    pub labels: Option<Vec<String>>,
}

/// `POST /api/v1/agents/claim`: an agent claims its server.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The one-time claim token `register` answered.
    #[schema(min_length = 1, max_length = 256)]
    pub claim_token: String,
    /// The agent's host name.
    #[schema(max_length = 253)]
    pub hostname: Option<String>,
}

/// `POST /api/v1/servers/{id}/control`: what to ask the agent.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    pub action: lookout_proto::agent::ControlAction,
    /// A unit (nginx.service), a container (container:NAME) or, to run, a
    /// check's name.
    #[schema(min_length = 1, max_length = 255)]
    pub target: String,
}

/// Reads `{server_name, labels}`; every problem at once.
pub fn parse_register(
    body: &serde_json::Map<String, Value>,
) -> Result<(String, Vec<String>), ApiError> {
    let mut f = Fields::new(body, &["server_name", "labels"]);
    let raw = f.required("server_name");
    let name = match ServiceName::parse(&raw) {
        _ if raw.is_empty() => String::new(),
        Ok(_) if raw.contains(['@', '#']) => {
            f.problems
                .push(FieldError::new("server_name", "must not contain @ or #"));
            String::new()
        }
        Ok(n) => n.as_str().to_owned(),
        Err(e) => {
            f.problems
                .push(FieldError::new("server_name", e.to_string()));
            String::new()
        }
    };
    let labels = match body.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let labels: Vec<String> = items
                .iter()
                .filter_map(|v| v.as_str())
                .map(|s| s.trim().to_owned())
                .collect();
            let ok = labels.len() == items.len()
                && labels.len() <= 20
                && labels
                    .iter()
                    .all(|l| !l.is_empty() && l.len() <= 50 && !l.chars().any(char::is_control));
            if !ok {
                f.problems.push(FieldError::new(
                    "labels",
                    "must be at most 20 strings of 1 to 50 characters",
                ));
            }
            labels
        }
        Some(_) => {
            f.problems
                .push(FieldError::new("labels", "must be an array of strings"));
            Vec::new()
        }
    };
    f.finish()?;
    Ok((name, labels))
}

/// A new server with a fresh one-time claim token (shown once).
pub async fn provision(
    state: &AppState,
    name: String,
    labels: Vec<String>,
) -> Result<RegisterResponse, ApiError> {
    let claim_token = format!("lkc_{}", token::random_hex());
    let now = state.clock.now();
    let expires_at = now
        + chrono::Duration::from_std(state.fleet.settings.claim_ttl)
            .unwrap_or(chrono::Duration::hours(1));
    let server = state
        .store
        .create_server(
            &NewServer {
                name,
                labels,
                agent_id: format!("agt-{}", &token::random_hex()[..20]),
                claim_hash: token::hash(&claim_token),
                claim_expires_at: expires_at,
            },
            now,
        )
        .await?;
    state.registry.server_changed(server.id);
    Ok(RegisterResponse {
        server_id: server.id,
        agent_id: server.agent_id,
        claim_token,
        expires_at,
    })
}

async fn register(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    Checked(body, _): Checked<RegisterServerRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (name, labels) = parse_register(&body)?;
    let created = provision(&state, name.clone(), labels).await?;
    state
        .auth
        .audit_ok(&who, "agent.register", Some(name), &client)
        .await;
    Ok((
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                format!("/api/v1/servers/{}", created.server_id),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(created),
    ))
}

async fn claim(
    State(state): State<AppState>,
    Remote(client): Remote,
    Checked(body, _): Checked<ClaimRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut f = Fields::new(&body, &["claim_token", "hostname"]);
    let claim_token = f.required("claim_token");
    let hostname = f.text("hostname");
    if hostname
        .as_deref()
        .is_some_and(|h| h.len() > 253 || h.chars().any(char::is_control))
    {
        f.problems
            .push(FieldError::new("hostname", "must be a host name"));
    }
    f.finish()?;
    let api_key = format!("lkk_{}", token::random_hex());
    let claimed = state
        .store
        .claim_server(
            &token::hash(&claim_token),
            &token::hash(&api_key),
            hostname.as_deref(),
            state.clock.now(),
        )
        .await?;
    let Some(server) = claimed else {
        state
            .auth
            .audit(None, "agent.claim", None, &client, AuditOutcome::Denied)
            .await;
        return Err(ApiError::Unauthorized(
            "the claim token is not valid: unknown, already used or expired".into(),
        ));
    };
    state
        .auth
        .audit(
            Some(&server.name),
            "agent.claim",
            Some(server.agent_id.clone()),
            &client,
            AuditOutcome::Ok,
        )
        .await;
    state.registry.server_changed(server.id);
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(ClaimResponse {
            server_id: server.id,
            server_name: server.name,
            agent_id: server.agent_id,
            api_key,
        }),
    ))
}

async fn connect(
    State(state): State<AppState>,
    Remote(client): Remote,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(
            format!("this is the agents' WebSocket: connect with a WebSocket upgrade ({e})"),
            vec![],
        )
    })?;
    Ok(upgrade
        .max_message_size(4 << 20)
        .on_upgrade(move |socket| crate::agent_session::session(socket, state, client)))
}

pub async fn checks_of_servers(state: &AppState) -> Result<Vec<crate::store::Service>, ApiError> {
    Ok(state
        .registry
        .services(&crate::registry::ListFilter::default())
        .into_iter()
        .filter(|s| s.server_id.is_some())
        .collect())
}

async fn list_servers(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let servers = state.store.list_servers().await?;
    let checks = checks_of_servers(&state).await?;
    let now = state.clock.now();
    let views: Vec<_> = servers
        .iter()
        .map(|s| server_view(s, &checks, now))
        .collect();
    Ok(Json(json!(views)))
}

pub async fn server_or_404(
    state: &AppState,
    id: i64,
) -> Result<crate::store::agents::Server, ApiError> {
    state
        .store
        .get_server(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no server with id {id}")))
}

async fn get_server(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let server = server_or_404(&state, id).await?;
    let checks = checks_of_servers(&state).await?;
    let mut view =
        serde_json::to_value(server_view(&server, &checks, state.clock.now())).unwrap_or_default();
    view["scan"] = server.scan.clone().unwrap_or(Value::Null);
    // What its host lets the hub ask, while its agent is connected here.
    view["allow_control"] = json!(state.fleet.allowed(id));
    view["scanned_at"] = json!(server.scanned_at);
    Ok(Json(view))
}

async fn server_services(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    server_or_404(&state, id).await?;
    let checks: Vec<_> = checks_of_servers(&state)
        .await?
        .iter()
        .filter(|s| s.server_id == Some(id))
        .map(|s| s.to_view(&state.checks))
        .collect();
    Ok(Json(json!(checks)))
}

/// Revokes a server's key and cuts its live session.
pub async fn revoke_server(state: &AppState, id: i64) -> Result<(), ApiError> {
    state
        .registry
        .revoke_server(id, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no server with id {id}")))?;
    state.fleet.kick(id);
    Ok(())
}

/// Deletes a server, its checks and their history; cuts its session.
pub async fn remove_server(state: &AppState, id: i64) -> Result<String, ApiError> {
    let name = server_or_404(state, id).await?.name;
    state
        .registry
        .delete_server(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no server with id {id}")))?;
    state.fleet.kick(id);
    Ok(name)
}

async fn revoke(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    revoke_server(&state, id).await?;
    let server = server_or_404(&state, id).await?;
    state
        .auth
        .audit_ok(&who, "agent.revoke", Some(server.name.clone()), &client)
        .await;
    let checks = checks_of_servers(&state).await?;
    Ok(Json(json!(server_view(
        &server,
        &checks,
        state.clock.now()
    ))))
}

async fn delete_server(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    let name = remove_server(&state, id).await?;
    state
        .auth
        .audit_ok(&who, "server.delete", Some(name), &client)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/servers/{id}/control {"action": "restart", "target": "nginx.service"}`
/// (or `{"action": "run", "target": "disk"}` for a check): asks the server's
/// agent, which does it only if its host's allow-list says so.
async fn control(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
    Checked(body, _): Checked<ControlRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(ask_agent(&state, &who, &client, id, &body).await?))
}

/// Validates a control request, asks the server's agent, audits the outcome.
pub async fn ask_agent(
    state: &AppState,
    who: &Principal,
    client: &Client,
    id: i64,
    body: &serde_json::Map<String, Value>,
) -> Result<Value, ApiError> {
    use lookout_proto::agent::ControlAction;
    let mut f = Fields::new(body, &["action", "target"]);
    // The wire names of `ControlAction` are the API's.
    let action: Option<ControlAction> = body
        .get("action")
        .and_then(|a| serde_json::from_value(a.clone()).ok());
    if action.is_none() {
        f.problems.push(FieldError::new(
            "action",
            "must be start, stop, restart or run",
        ));
    }
    let target = f.text("target").unwrap_or_default();
    let valid = match action {
        Some(ControlAction::Run) => lookout_proto::check::CheckName::parse(&target)
            .map(|_| ())
            .map_err(String::from),
        Some(_) => match target.strip_prefix("container:") {
            Some(name) => lookout_proto::container::ContainerName::parse(name)
                .map(|_| ())
                .map_err(|e| format!("a container name {e}")),
            None => lookout_systemd::UnitName::parse(&target)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        },
        None => Ok(()),
    };
    if let Err(e) = valid {
        f.problems.push(FieldError::new("target", e));
    }
    let Some(action) = action.filter(|_| f.problems.is_empty()) else {
        return Err(ApiError::Validation(f.problems));
    };
    let server = server_or_404(state, id).await?;
    let asked = state
        .fleet
        .request(id, action, target.clone(), who.username.clone())
        .await;
    let outcome = match &asked {
        Ok(r) if r.ok => AuditOutcome::Ok,
        Ok(r) if r.refused => AuditOutcome::Denied,
        _ => AuditOutcome::Failed,
    };
    state
        .auth
        .audit(
            Some(&who.username),
            "agent.control",
            Some(format!("{} {target} on {}", action.as_str(), server.name)),
            client,
            outcome,
        )
        .await;
    let result = asked.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if result.refused {
        return Err(ApiError::Forbidden(format!(
            "the agent of {} refuses: {}",
            server.name, result.message
        )));
    }
    Ok(json!({"ok": result.ok, "message": result.message}))
}

async fn results(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
    QueryMap(query): QueryMap,
) -> Result<Json<Value>, ApiError> {
    let limit = count_param(&query, "limit", 100)?;
    if state.registry.get(id).map(|e| e.service.clone()).is_none() {
        return Err(ApiError::NotFound(format!("no service with id {id}")));
    }
    let results = state.store.check_results(id, limit).await?;
    Ok(Json(json!(results)))
}
