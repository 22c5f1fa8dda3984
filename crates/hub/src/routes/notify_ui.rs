//! The Notifications page: channels listed with their last delivery, added
//! and edited from one form (the fields of the chosen kind), tested and
//! deleted; and the delivery log.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Map, Value};

use super::table::Routes;
use super::ui::{
    api_error_page, bad_form, capitalize, message, render, store_failure, FormResult, Page,
};
use super::when::Stamp;
use super::AppState;
use crate::auth::Access;
use crate::store::StoreError;

pub fn routes(r: Routes) -> Routes {
    r.get("/notifications", Access::Viewer, notifications_page)
        .post("/notifications", Access::Admin, add_channel_from_form)
        .get("/notifications/{id}/edit", Access::Admin, edit_channel_form)
        .post("/notifications/{id}", Access::Admin, edit_channel_from_form)
        .post(
            "/notifications/{id}/test",
            Access::Admin,
            test_channel_from_form,
        )
        .post(
            "/notifications/{id}/delete",
            Access::Admin,
            delete_channel_from_form,
        )
}

struct ChannelRow {
    id: i64,
    name: String,
    kind: &'static str,
    target: String,
    enabled: bool,
    last_sent: Option<Stamp>,
    last_error: Option<String>,
}

/// One line of the delivery log.
struct DeliveryRow {
    at: Stamp,
    channel: String,
    /// (id, name) of the service it was about, if any.
    service: Option<(i64, String)>,
    kind: String,
    sent: bool,
    attempts: u32,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    channels: Vec<ChannelRow>,
    deliveries: Vec<DeliveryRow>,
    kinds: Vec<&'static str>,
    notice: Option<String>,
    error: Option<String>,
    /// The channel the form edits: (id, name); `None` to add one.
    editing: Option<(i64, String)>,
    /// The caller's devices that get Web Push notifications.
    devices: super::devices::Devices,
    /// What the form shows: a channel's settings (secrets masked or left
    /// out), or what was sent, kept after an error (never its secrets).
    form: HashMap<String, String>,
}

impl NotificationsPage {
    fn form_value(&self, key: &str) -> &str {
        self.form.get(key).map_or("", String::as_str)
    }
}

/// Every setting a channel's form may send; the chosen kind takes its own.
const CHANNEL_FIELDS: &[&str] = &[
    "url", "topic", "token", "host", "port", "security", "from", "to", "username", "password",
    "users", "contact",
];

async fn render_notifications(
    state: &AppState,
    who: &crate::auth::Principal,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    editing: Option<(i64, String)>,
    mut form: HashMap<String, String>,
) -> Page {
    form.retain(|k, _| !matches!(k.as_str(), "token" | "password"));
    let (channels, deliveries) =
        (tokio::try_join!(state.store.list_channels(), state.store.list_deliveries(50)))?;
    let channel_name = |id: i64| {
        channels
            .iter()
            .find(|c| c.id == id)
            .map_or_else(|| format!("channel {id}"), |c| c.name.clone())
    };
    let page = NotificationsPage {
        deliveries: deliveries
            .iter()
            .map(|d| DeliveryRow {
                at: Stamp(d.at),
                channel: channel_name(d.channel_id),
                service: d.service_id.map(|id| {
                    let name = state
                        .registry
                        .get(id)
                        .map_or_else(|| format!("service {id}"), |e| e.service.name.clone());
                    (id, name)
                }),
                kind: d.kind.clone(),
                sent: d.status == "sent",
                attempts: d.attempts,
                error: d.error.clone(),
            })
            .collect(),
        channels: channels
            .iter()
            .map(|c| ChannelRow {
                id: c.id,
                name: c.name.clone(),
                kind: c.kind.as_str(),
                target: crate::notify::masked(&c.config)
                    .values()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" · "),
                enabled: c.enabled,
                last_sent: c.last_sent_at.map(Stamp),
                last_error: c.last_error.clone(),
            })
            .collect(),
        kinds: crate::notify::ChannelKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect(),
        notice,
        error,
        editing,
        form,
        devices: super::devices::Devices::of(state, who, "/notifications").await,
    };
    Ok(render(status, &page))
}

async fn notifications_page(
    State(state): State<AppState>,
    crate::auth::guard::Caller(who): crate::auth::guard::Caller,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let notice =
        (q.get("notice").map(String::as_str) == Some("saved")).then(|| "Channel saved.".to_owned());
    render_notifications(
        &state,
        &who,
        StatusCode::OK,
        notice,
        None,
        None,
        HashMap::new(),
    )
    .await
    .into_response()
}

/// The channel's body as the API takes it, from the form: the settings the
/// chosen kind takes (the form's other fields, hidden by the page's script
/// or left over from another kind, are not sent).
fn channel_body(values: &HashMap<String, String>, editing: bool) -> Map<String, Value> {
    let kind = values
        .get("kind")
        .and_then(|k| lookout_proto::notify::ChannelKind::parse(k));
    let takes = |key: &str| {
        kind.is_some_and(|k| {
            let (required, optional) = k.config_keys();
            required.contains(&key) || optional.contains(&key)
        })
    };
    let mut config = Map::new();
    for &key in CHANNEL_FIELDS {
        if !takes(key) {
            continue;
        }
        if let Some(v) = values.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            config.insert(key.into(), Value::String(v.to_owned()));
        }
    }
    let mut body = Map::new();
    for key in ["name", "kind"] {
        body.insert(
            key.into(),
            Value::String(values.get(key).cloned().unwrap_or_default()),
        );
    }
    body.insert("config".into(), Value::Object(config));
    if editing {
        // A checkbox is sent only when ticked.
        body.insert(
            "enabled".into(),
            Value::Bool(values.contains_key("enabled")),
        );
    }
    body
}

/// Field errors as one line for the form's banner.
fn problem_line(errors: &[lookout_proto::FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            let field = e.field.strip_prefix("config.").unwrap_or(&e.field);
            format!("{}: {}", capitalize(field), e.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn add_channel_from_form(
    State(state): State<AppState>,
    crate::auth::guard::Caller(who): crate::auth::guard::Caller,
    form: FormResult,
) -> Page {
    let Form(values) = match form {
        Ok(f) => f,
        Err(e) => return Ok(bad_form(&e)),
    };
    let body = channel_body(&values, false);
    let problem = match super::notify::parse_channel(&body) {
        Ok((name, kind, config, enabled)) => {
            match state
                .store
                .create_channel(&name, kind, &config, enabled, state.clock.now())
                .await
            {
                Ok(_) => return Ok(Redirect::to("/notifications").into_response()),
                Err(StoreError::Conflict { value, .. }) => {
                    format!("A channel named {value:?} exists already.")
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(errors) => problem_line(&errors),
    };
    render_notifications(
        &state,
        &who,
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
        Some(problem),
        None,
        values,
    )
    .await
}

/// The form filled with a channel's settings: its secrets left out, its URL
/// masked (sent back unchanged, both are kept).
async fn edit_channel_form(
    State(state): State<AppState>,
    crate::auth::guard::Caller(who): crate::auth::guard::Caller,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Page {
    let Some(channel) = state.store.get_channel(id).await? else {
        return Ok(no_such_channel());
    };
    let mut form: HashMap<String, String> = crate::notify::masked(&channel.config)
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
        .collect();
    form.insert("name".into(), channel.name.clone());
    form.insert("kind".into(), channel.kind.as_str().into());
    if channel.enabled {
        form.insert("enabled".into(), "on".into());
    }
    Ok(render_notifications(
        &state,
        &who,
        StatusCode::OK,
        None,
        None,
        Some((channel.id, channel.name)),
        form,
    )
    .await
    .into_response())
}

async fn edit_channel_from_form(
    State(state): State<AppState>,
    crate::auth::guard::Caller(who): crate::auth::guard::Caller,
    axum::extract::Path(id): axum::extract::Path<i64>,
    form: FormResult,
) -> Page {
    let Form(values) = match form {
        Ok(f) => f,
        Err(e) => return Ok(bad_form(&e)),
    };
    let problem = match super::notify::edit_channel(&state, id, channel_body(&values, true)).await {
        Ok(_) => return Ok(Redirect::to("/notifications?notice=saved").into_response()),
        Err(crate::error::ApiError::Validation(errors)) => problem_line(&errors),
        Err(crate::error::ApiError::Conflict(e)) => format!("{}.", capitalize(&e.message)),
        Err(crate::error::ApiError::NotFound(_)) => return Ok(no_such_channel()),
        Err(e) => return Ok(api_error_page(&e)),
    };
    let name = values.get("name").cloned().unwrap_or_default();
    render_notifications(
        &state,
        &who,
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
        Some(problem),
        Some((id, name)),
        values,
    )
    .await
}

fn no_such_channel() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "No such channel",
        "It may have been deleted.",
    )
}

async fn test_channel_from_form(
    State(state): State<AppState>,
    crate::auth::guard::Caller(who): crate::auth::guard::Caller,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Response {
    let (notice, error) = match super::notify::send_test(&state, id).await {
        Ok(Ok(())) => (Some("Test sent.".to_owned()), None),
        Ok(Err(e)) => (None, Some(format!("The test failed: {e}"))),
        Err(e) => return api_error_page(&e),
    };
    render_notifications(
        &state,
        &who,
        StatusCode::OK,
        notice,
        error,
        None,
        HashMap::new(),
    )
    .await
    .into_response()
}

async fn delete_channel_from_form(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Response {
    match state.store.delete_channel(id).await {
        Ok(_) => Redirect::to("/notifications").into_response(),
        Err(e) => store_failure(&e),
    }
}
