//! Notification channels over the API: list, create, delete, send a test, and
//! the delivery log. Channel URLs and tokens are masked in every answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use lookout_proto::service::kind as json_kind;
use lookout_proto::FieldError;
use serde_json::{json, Value};

use super::extract::Checked;
use super::extract::{PathText, QueryMap};
use super::table::Routes;
use super::AppState;
use crate::auth::Access;
use crate::error::ApiError;
use crate::notify::{deliver, masked, validate_config, ChannelKind, Notice, NoticeKind};
use crate::openapi::{doc, Answer, Doc, LIMIT};
use crate::store::{Channel, StoreError};

pub fn routes(r: Routes) -> Routes {
    r.get("/notifications/channels", Access::Viewer, list)
        .doc(doc(
            "Notification channels",
            "notifications",
            Answer::Objects,
        ))
        .post("/notifications/channels", Access::Admin, create)
        .doc(Doc {
            body: Some("ChannelRequest"),
            ..doc("Add a channel", "notifications", Answer::CreatedObject)
        })
        .put("/notifications/channels/{id}", Access::Admin, replace)
        .doc(Doc {
            body: Some("ChannelRequest"),
            ..doc("Edit a channel", "notifications", Answer::Object)
        })
        .delete("/notifications/channels/{id}", Access::Admin, remove)
        .doc(doc("Remove a channel", "notifications", Answer::Empty))
        .post("/notifications/channels/{id}/test", Access::Admin, test)
        .doc(doc(
            "Send a test notification",
            "notifications",
            Answer::Object,
        ))
        .get("/notifications/deliveries", Access::Viewer, deliveries)
        .doc(Doc {
            query: &[LIMIT],
            ..doc("Delivery log", "notifications", Answer::Objects)
        })
}

fn view(c: &Channel) -> Value {
    json!({
        "id": c.id, "name": c.name, "kind": c.kind, "config": masked(&c.config),
        "enabled": c.enabled, "last_error": c.last_error, "last_sent_at": c.last_sent_at,
        "created_at": c.created_at,
    })
}

fn channel_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::BadRequest(
            format!("{raw:?} is not a channel id"),
            vec![FieldError::new("id", "must be a positive integer")],
        )
    })
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(
        state
            .store
            .list_channels()
            .await?
            .iter()
            .map(view)
            .collect(),
    ))
}

/// `POST /api/notifications/channels` and `PUT .../{id}`: a channel.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub kind: ChannelKind,
    /// The kind's settings (a webhook's url, an e-mail channel's server and
    /// addresses, ...); on an edit, a secret left out or sent back masked is
    /// kept.
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Map<String, Value>>,
    /// true when left out.
    pub enabled: Option<bool>,
}

/// A validated request to create a channel: name, kind, config, enabled.
pub type NewChannel = (String, ChannelKind, serde_json::Map<String, Value>, bool);

/// Validates a channel from a JSON object, as the API and the form send it.
pub fn parse_channel(body: &serde_json::Map<String, Value>) -> Result<NewChannel, Vec<FieldError>> {
    let mut errors: Vec<FieldError> = body
        .keys()
        .filter(|k| !["name", "kind", "config", "enabled"].contains(&k.as_str()))
        .map(|k| FieldError::new(k.clone(), "is not a field of a channel"))
        .collect();
    let name = match body.get("name").and_then(Value::as_str).map(str::trim) {
        Some(n)
            if !n.is_empty() && n.chars().count() <= 100 && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => {
            errors.push(FieldError::new("name", "is required: 1 to 100 characters"));
            String::new()
        }
    };
    let kind = match body
        .get("kind")
        .and_then(Value::as_str)
        .and_then(ChannelKind::parse)
    {
        Some(k) => Some(k),
        None => {
            errors.push(FieldError::new(
                "kind",
                "must be one of webhook, ntfy, gotify, discord, slack, email, mqtt, webpush",
            ));
            None
        }
    };
    let enabled = match body.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.push(FieldError::new(
                "enabled",
                format!("must be true or false, got {}", json_kind(other)),
            ));
            true
        }
    };
    let config = match (kind, body.get("config")) {
        (Some(k), Some(Value::Object(config))) => match validate_config(k, config) {
            Ok(c) => c,
            Err(e) => {
                errors.extend(e);
                serde_json::Map::new()
            }
        },
        (_, Some(other)) if !other.is_object() => {
            errors.push(FieldError::new(
                "config",
                format!("must be an object, got {}", json_kind(other)),
            ));
            serde_json::Map::new()
        }
        (Some(_), None) => {
            errors.push(FieldError::new("config", "is required"));
            serde_json::Map::new()
        }
        _ => serde_json::Map::new(),
    };
    match (kind, errors.is_empty()) {
        (Some(kind), true) => Ok((name, kind, config, enabled)),
        _ => Err(errors),
    }
}

async fn create(
    State(state): State<AppState>,
    Checked(body, _): Checked<ChannelRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (name, kind, config, enabled) = parse_channel(&body).map_err(ApiError::Validation)?;
    let channel = state
        .store
        .create_channel(&name, kind, &config, enabled, state.clock.now())
        .await
        .map_err(|e| match e {
            StoreError::Conflict { value, .. } => ApiError::Conflict(FieldError::new(
                "name",
                format!("a channel named {value:?} exists already"),
            )),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(view(&channel))))
}

/// Edits a channel from a body like the one that made it (`name`, `kind`,
/// `config`, `enabled`), keeping the secrets the body leaves out or sends
/// back masked.
pub async fn edit_channel(
    state: &AppState,
    id: i64,
    mut body: serde_json::Map<String, Value>,
) -> Result<Channel, ApiError> {
    let old = state
        .store
        .get_channel(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no channel with id {id}")))?;
    // Secrets are kept only for a channel that keeps its kind.
    let same_kind = body.get("kind").and_then(Value::as_str) == Some(old.kind.as_str());
    if let (true, Some(Value::Object(config))) = (same_kind, body.get_mut("config")) {
        crate::notify::keep_secrets(&old.config, config);
    }
    let (name, kind, config, enabled) = parse_channel(&body).map_err(ApiError::Validation)?;
    state
        .store
        .update_channel(id, &name, kind, &config, enabled)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { value, .. } => ApiError::Conflict(FieldError::new(
                "name",
                format!("a channel named {value:?} exists already"),
            )),
            other => other.into(),
        })?
        .ok_or_else(|| ApiError::NotFound(format!("no channel with id {id}")))
}

async fn replace(
    State(state): State<AppState>,
    PathText(id): PathText,
    Checked(body, _): Checked<ChannelRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = channel_id(&id)?;
    Ok(Json(view(&edit_channel(&state, id, body).await?)))
}

async fn remove(
    State(state): State<AppState>,
    PathText(id): PathText,
) -> Result<StatusCode, ApiError> {
    let id = channel_id(&id)?;
    if state.store.delete_channel(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no channel with id {id}")))
    }
}

/// Sends a test notice now, once, and says how it went.
pub async fn send_test(
    state: &AppState,
    id: i64,
) -> Result<Result<(), crate::notify::DeliveryError>, ApiError> {
    let channel = state
        .store
        .get_channel(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no channel with id {id}")))?;
    let notice = Notice {
        kind: NoticeKind::Test,
        service_id: None,
        service: "lookout".into(),
        url: None,
        status: "OK".into(),
        previous: None,
        reason: "test".into(),
        at: state.clock.now(),
        down_for_secs: None,
        link: state.public_url.clone(),
        affected: Vec::new(),
    };
    let outcome = deliver(
        &crate::notify::http_client(),
        state.store.as_ref(),
        &channel,
        &notice,
    )
    .await;
    state
        .store
        .record_delivery(
            id,
            None,
            "test",
            outcome.is_ok(),
            1,
            outcome.as_ref().err().map(ToString::to_string).as_deref(),
            state.clock.now(),
        )
        .await?;
    Ok(outcome)
}

async fn test(
    State(state): State<AppState>,
    PathText(id): PathText,
) -> Result<Json<Value>, ApiError> {
    let id = channel_id(&id)?;
    Ok(Json(match send_test(&state, id).await? {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }))
}

async fn deliveries(
    State(state): State<AppState>,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    let limit = super::extract::count_param(&q, "limit", 100)?;
    Ok(Json(json!(state.store.list_deliveries(limit).await?)))
}
