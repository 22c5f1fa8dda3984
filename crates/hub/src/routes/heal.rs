//! Self-healing's restarts, through the same door as a person's: the
//! control route's refusal rules and audit log for this host's units, and
//! the agent's `--allow-control` for a server's.

use futures::future::BoxFuture;
use lookout_core::heal::{Remedy, RemedyError};
use serde_json::json;

use super::AppState;
use crate::auth::{Client, Principal};
use crate::store::Service;

/// Who the audit log names for self-healing's restarts.
pub const HEALER: &str = "self-healing";

pub struct HubRemedy {
    pub state: AppState,
}

impl Remedy for HubRemedy {
    fn restart<'a>(
        &'a self,
        service: &'a Service,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<String, RemedyError>> {
        Box::pin(async move {
            let who = Principal {
                username: HEALER.to_owned(),
                ..Principal::local()
            };
            // Nobody's address: the hub asks itself.
            let client = Client {
                ip: std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                https: false,
                host: None,
            };
            match service.server_id {
                None => {
                    let actor = super::systemd::Actor {
                        who: &who,
                        client: &client,
                    };
                    // The service's container: reached through the service.
                    let id = service.id.to_string();
                    let target = match &service.container {
                        Some(c) if unit == format!("container {c}") => id.as_str(),
                        _ => unit,
                    };
                    let done = super::systemd::control(
                        &self.state,
                        target,
                        lookout_systemd::Action::Restart,
                        actor,
                    )
                    .await
                    .map_err(|e| RemedyError(e.body().message.clone()))?;
                    match done {
                        super::systemd::Controlled::Unit(o) if o.job_result != "done" => Err(
                            RemedyError(format!("the restart of {unit} ended {}", o.job_result)),
                        ),
                        _ => Ok(format!("restarted {unit}")),
                    }
                }
                Some(server) => {
                    let body = json!({"action": "restart", "target": unit});
                    let body = body.as_object().cloned().unwrap_or_default();
                    let answer =
                        super::agents::ask_agent(&self.state, &who, &client, server, &body)
                            .await
                            .map_err(|e| RemedyError(e.body().message.clone()))?;
                    if answer["ok"] == true {
                        Ok(format!("restarted {unit} through the agent on its server"))
                    } else {
                        Err(RemedyError(format!(
                            "the agent could not restart {unit}: {}",
                            answer["message"].as_str().unwrap_or_default()
                        )))
                    }
                }
            }
        })
    }
}
