//! The Servers pages: every host with an agent, and one host's checks, its
//! systemd services and timers as its agent last reported them.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::agents::{checks_of_servers, provision, remove_server, revoke_server};
use super::extract::PathId;
use super::table::Routes;
use super::ui::{bad_form, label, message, render, stamp, FormResult};
use super::AppState;
use crate::agents::server_view;
use crate::auth::guard::page_context;
use crate::auth::guard::{Caller, Remote};
use crate::auth::Access;
use crate::error::ApiError;

pub fn routes(r: Routes) -> Routes {
    r.get("/servers", Access::Viewer, servers_page)
        .post("/servers", Access::Admin, add_server)
        .get("/servers/{id}", Access::Viewer, server_page)
        .post("/servers/{id}/revoke", Access::Admin, revoke_from_form)
        .post("/servers/{id}/delete", Access::Admin, delete_from_form)
        .limited(
            axum::http::Method::POST,
            "/servers/{id}/control",
            Access::Admin,
            crate::auth::Bucket::Control,
            control_from_form,
        )
}

fn failure(e: &ApiError) -> Response {
    message(e.status(), "That did not work", &e.body().message)
}

fn agent_line(online: bool, revoked: bool, claimed: bool, seen: Option<DateTime<Utc>>) -> String {
    match (revoked, claimed, online, seen) {
        (true, _, _, _) => "key revoked".into(),
        (false, false, _, _) => "waiting for its agent to register".into(),
        (false, true, true, _) => "online".into(),
        (false, true, false, Some(t)) => format!("offline, last seen {}", stamp(t)),
        (false, true, false, None) => "registered, never connected".into(),
    }
}

struct ServerRow {
    id: i64,
    name: String,
    hostname: Option<String>,
    state_class: &'static str,
    state_label: &'static str,
    agent: String,
    checks: u32,
    labels: String,
}

struct Claim {
    server: String,
    hub: String,
    token: String,
}

#[derive(Template)]
#[template(path = "servers.html")]
struct ServersPage {
    servers: Vec<ServerRow>,
    admin: bool,
    claim: Option<Claim>,
    error: Option<String>,
    form_name: String,
    form_labels: String,
}

async fn render_servers(
    state: &AppState,
    status: StatusCode,
    claim: Option<Claim>,
    error: Option<String>,
    form: (String, String),
) -> Response {
    let loaded = async {
        let servers = state.store.list_servers().await?;
        let checks = checks_of_servers(state).await?;
        Ok::<_, ApiError>((servers, checks))
    }
    .await;
    let (servers, checks) = match loaded {
        Ok(v) => v,
        Err(e) => return failure(&e),
    };
    let now = state.clock.now();
    let rows = servers
        .iter()
        .map(|s| {
            let view = server_view(s, &checks, now);
            let (state_class, state_label) = label(view.status);
            ServerRow {
                id: s.id,
                name: s.name.clone(),
                hostname: s.hostname.clone(),
                state_class,
                state_label,
                agent: agent_line(view.online, s.revoked, s.claimed, s.last_seen),
                checks: view.checks,
                labels: s.labels.join(", "),
            }
        })
        .collect();
    render(
        status,
        &ServersPage {
            servers: rows,
            admin: page_context().admin,
            claim,
            error,
            form_name: form.0,
            form_labels: form.1,
        },
    )
}

async fn servers_page(State(state): State<AppState>) -> Response {
    render_servers(&state, StatusCode::OK, None, None, Default::default()).await
}

async fn add_server(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    form: FormResult,
) -> Response {
    let form: HashMap<String, String> = match form {
        Ok(f) => f.0,
        Err(e) => return bad_form(&e),
    };
    let name = form
        .get("server_name")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let labels_text = form.get("labels").cloned().unwrap_or_default();
    let labels: Vec<Value> = labels_text
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| Value::String(l.to_owned()))
        .collect();
    let body = serde_json::Map::from_iter([
        ("server_name".to_owned(), Value::String(name.clone())),
        ("labels".to_owned(), Value::Array(labels)),
    ]);
    let result = async {
        let (name, labels) = super::agents::parse_register(&body)?;
        provision(&state, name, labels).await
    }
    .await;
    match result {
        Ok(created) => {
            state
                .auth
                .audit_ok(&who, "agent.register", Some(name.clone()), &client)
                .await;
            let scheme = if client.https { "https" } else { "http" };
            let host = client.host.clone().unwrap_or_else(|| "HUB".into());
            let claim = Claim {
                server: name,
                hub: format!("{scheme}://{host}"),
                token: created.claim_token,
            };
            render_servers(
                &state,
                StatusCode::CREATED,
                Some(claim),
                None,
                Default::default(),
            )
            .await
        }
        Err(e) => {
            let body = e.body();
            let text = body.fields.first().map_or(body.message.clone(), |f| {
                format!("{} {}", f.field.replace('_', " "), f.message)
            });
            render_servers(&state, e.status(), None, Some(text), (name, labels_text)).await
        }
    }
}

struct CheckRow {
    id: i64,
    check: String,
    state_class: &'static str,
    state_label: &'static str,
    result: &'static str,
    message: String,
    at: String,
    schedule: String,
}

#[derive(Template)]
#[template(path = "server.html")]
struct ServerPage {
    id: i64,
    name: String,
    state_class: &'static str,
    admin: bool,
    revoked: bool,
    agent: String,
    labels: String,
    checks: Vec<CheckRow>,
    /// (unit, state, ports, description)
    units: Vec<(String, String, String, String)>,
    /// What each running unit uses now, by unit: "12 % CPU · 256 MiB".
    usage: HashMap<String, String>,
    /// Its agent reports the host's usage: the host page's name.
    host_page: Option<String>,
    /// (timer, schedule, last result, failed)
    timers: Vec<(String, String, String, bool)>,
    /// The host's containers as its agent last listed them, by Compose
    /// project (those of none last).
    containers: Vec<(String, Vec<lookout_proto::container::ContainerView>)>,
    scanned_at: Option<String>,
    /// What its host lets the hub ask (while its agent is connected here):
    /// (target, actions).
    controls: Vec<(String, Vec<&'static str>)>,
    /// The outcome of the last control request, shown once.
    outcome: Option<String>,
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

async fn server_page(
    State(state): State<AppState>,
    PathId(id): PathId,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let loaded = async {
        let server = super::agents::server_or_404(&state, id).await?;
        let checks = checks_of_servers(&state).await?;
        Ok::<_, ApiError>((server, checks))
    }
    .await;
    let (server, checks) = match loaded {
        Ok(v) => v,
        Err(e) => return failure(&e),
    };
    let now = state.clock.now();
    let view = server_view(&server, &checks, now);
    let rows = checks
        .iter()
        .filter(|s| s.server_id == Some(id))
        .map(|s| {
            let (state_class, state_label) = label(s.state);
            CheckRow {
                id: s.id,
                check: s.check_name.clone().unwrap_or_default(),
                state_class,
                state_label,
                result: s
                    .check_status
                    .as_deref()
                    .and_then(lookout_proto::check::LineStatus::parse)
                    .map_or("—", lookout_proto::check::LineStatus::as_str),
                message: s.check_message.clone().unwrap_or_default(),
                at: s.check_at.map(stamp).unwrap_or_default(),
                schedule: s.check_schedule.clone().unwrap_or_default(),
            }
        })
        .collect();
    let scan = server.scan.clone().unwrap_or(Value::Null);
    let units = scan["services"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|u| {
                    let ports: Vec<String> = u["listens"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .filter_map(|p| p["port"].as_u64())
                                .map(|p| p.to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        text(u, "name"),
                        format!("{} ({})", text(u, "active_state"), text(u, "sub_state")),
                        ports.join(", "),
                        text(u, "description"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let timers = scan["timers"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|t| {
                    let schedule: Vec<String> = t["schedule"]
                        .as_array()
                        .map(|s| {
                            s.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    let result = t["last_result"].as_str().unwrap_or("—").to_owned();
                    let failed = t["last_result"].as_str().is_some_and(|r| r != "success")
                        || t["unit_active_state"] == "failed";
                    (text(t, "name"), schedule.join(" "), result, failed)
                })
                .collect()
        })
        .unwrap_or_default();
    let listed: Vec<lookout_proto::container::ContainerView> =
        serde_json::from_value(scan["containers"].clone()).unwrap_or_default();
    let mut projects: std::collections::BTreeMap<(bool, String), Vec<_>> =
        std::collections::BTreeMap::new();
    for c in listed {
        let project = c.compose_project.clone().unwrap_or_default();
        projects
            .entry((project.is_empty(), project))
            .or_default()
            .push(c);
    }
    let containers = projects
        .into_iter()
        .map(|((_, project), list)| (project, list))
        .collect();
    render(
        StatusCode::OK,
        &ServerPage {
            containers,
            id,
            name: server.name.clone(),
            state_class: label(view.status).0,
            admin: page_context().admin,
            revoked: server.revoked,
            agent: agent_line(
                view.online,
                server.revoked,
                server.claimed,
                server.last_seen,
            ),
            labels: server.labels.join(", "),
            checks: rows,
            units,
            usage: state
                .usage
                .server_units(id)
                .into_iter()
                .map(|(unit, u)| {
                    let cpu = u
                        .cpu_percent
                        .map(|c| format!("{} CPU", crate::usage::percent(c)));
                    let memory = u.memory_bytes.map(|m| crate::usage::bytes(m as f64));
                    (
                        unit,
                        cpu.into_iter()
                            .chain(memory)
                            .collect::<Vec<_>>()
                            .join(" · "),
                    )
                })
                .collect(),
            host_page: state.usage.host(&server.name).map(|_| server.name.clone()),
            timers,
            scanned_at: server.scanned_at.map(stamp),
            controls: state
                .fleet
                .allowed(id)
                .unwrap_or_default()
                .into_iter()
                .map(|entry| match entry.strip_prefix("check:") {
                    Some(check) => (check.to_owned(), vec!["run"]),
                    None => (entry, vec!["start", "stop", "restart"]),
                })
                .collect(),
            outcome: query.get("outcome").cloned(),
        },
    )
}

/// A control button: asks the agent, then shows the outcome on the page.
async fn control_from_form(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
    form: FormResult,
) -> Response {
    let form: HashMap<String, String> = match form {
        Ok(f) => f.0,
        Err(e) => return bad_form(&e),
    };
    let body = serde_json::Map::from_iter(["action", "target"].into_iter().map(|k| {
        (
            k.to_owned(),
            Value::String(form.get(k).cloned().unwrap_or_default()),
        )
    }));
    let outcome = match super::agents::ask_agent(&state, &who, &client, id, &body).await {
        Ok(result) => result["message"].as_str().unwrap_or_default().to_owned(),
        Err(e) => e.body().message,
    };
    let q = serde_urlencoded::to_string([("outcome", outcome)]).unwrap_or_default();
    Redirect::to(&format!("/servers/{id}?{q}")).into_response()
}

async fn revoke_from_form(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
) -> Response {
    match revoke_server(&state, id).await {
        Ok(()) => {
            state
                .auth
                .audit_ok(&who, "agent.revoke", Some(id.to_string()), &client)
                .await;
            Redirect::to(&format!("/servers/{id}")).into_response()
        }
        Err(e) => failure(&e),
    }
}

async fn delete_from_form(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
) -> Response {
    match remove_server(&state, id).await {
        Ok(name) => {
            state
                .auth
                .audit_ok(&who, "server.delete", Some(name), &client)
                .await;
            Redirect::to("/servers").into_response()
        }
        Err(e) => failure(&e),
    }
}
