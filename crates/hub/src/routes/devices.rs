//! Browsers that get Web Push notifications, per account and device: the
//! hub's public push key, a person's devices listed, added (the browser's
//! `PushSubscription`) and removed, over the API and on the account and
//! Notifications pages. A `webpush` channel delivers to them.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use lookout_proto::FieldError;
use serde_json::{json, Value};

use super::extract::{Checked, PathText};
use super::table::Routes;
use super::ui::{message, store_failure};
use super::when::Stamp;
use super::AppState;
use crate::auth::guard::Caller;
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::notify::webpush::{hub_keys, Subscription};
use crate::openapi::{doc, Answer, Doc};
use crate::store::{NewPushSubscription, PushSubscription};

pub fn api_routes(r: Routes) -> Routes {
    r.get("/v1/push/key", Access::Viewer, public_key)
        .doc(doc(
            "The hub's Web Push public key: public_key, the applicationServerKey a browser subscribes with",
            "notifications",
            Answer::Object,
        ))
        .get("/v1/users/me/devices", Access::Viewer, list)
        .doc(doc("The caller's devices that get Web Push notifications", "notifications", Answer::Objects))
        .post("/v1/users/me/devices", Access::Viewer, add)
        .doc(Doc {
            body: Some("DeviceRequest"),
            ..doc("Notify a device of the caller's", "notifications", Answer::CreatedObject)
        })
        .delete("/v1/users/me/devices/{id}", Access::Viewer, remove)
        .doc(doc("Stop notifying a device of the caller's", "notifications", Answer::Empty))
}

pub fn page_routes(r: Routes) -> Routes {
    r.post(
        "/account/devices/{id}/delete",
        Access::Viewer,
        remove_from_form,
    )
}

/// Most devices an account may have notified.
pub const MAX_DEVICES: usize = 20;

/// Whose devices: the account's, or the operator's on a hub without sign-in.
fn owner(who: &Principal) -> Option<Option<i64>> {
    Some(who.user_id)
}

/// Why an endpoint is refused unless `--web-push-http on`: plain HTTP, or
/// a host on this machine or a private network. Public push services are
/// HTTPS on public hosts; anything else would let a signed-in person make
/// the hub post to a service on its own network.
fn local_endpoint(endpoint: &str) -> Option<&'static str> {
    let url = url::Url::parse(endpoint).ok()?;
    if url.scheme() != "https" {
        return Some("must be an https URL (push services are reached over HTTPS; `--web-push-http on` allows HTTP and a push service on your own network)");
    }
    let local = match url.host()? {
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".local")
                || !d.contains('.')
        }
        url::Host::Ipv4(ip) => {
            ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.octets()[0] == 100 && ip.octets()[1] & 0xc0 == 64
        }
        url::Host::Ipv6(ip) => {
            let v4 = ip.to_ipv4_mapped();
            ip.is_loopback()
                || ip.is_unspecified()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                || v4.is_some_and(|v| v.is_private() || v.is_loopback() || v.is_link_local())
        }
    };
    local.then_some("must be a public push service (a host on this machine or your own network needs `--web-push-http on`)")
}

/// "Chrome on Android": what a device is, from its browser's `User-Agent`.
pub fn device_name(user_agent: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    .into_iter()
    .find(|(mark, _)| user_agent.contains(mark))
    .map_or("A browser", |(_, name)| name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(mark, _)| user_agent.contains(mark))
    .map(|(_, name)| name);
    match system {
        Some(system) => format!("{browser} on {system}"),
        None => browser.to_owned(),
    }
}

fn view(s: &PushSubscription) -> Value {
    json!({"id": s.id, "device": s.device, "created_at": s.created_at, "last_sent_at": s.last_sent_at})
}

async fn public_key(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let keys = hub_keys(state.store.as_ref())
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    Ok(Json(json!({"public_key": keys.public_key()})))
}

/// The caller's devices; an admin's include those added while the hub
/// ran without sign-in (nobody else could see them).
async fn devices_of(
    state: &AppState,
    who: &Principal,
) -> Result<Vec<PushSubscription>, crate::store::StoreError> {
    let mut devices = state.store.push_subscriptions(owner(who)).await?;
    if who.is_admin() && who.user_id.is_some() {
        devices.extend(state.store.push_subscriptions(Some(None)).await?);
    }
    Ok(devices)
}

/// Removes one of the caller's devices (an admin's include the operator's).
async fn remove_device(
    state: &AppState,
    who: &Principal,
    id: i64,
) -> Result<bool, crate::store::StoreError> {
    Ok(state.store.delete_push_subscription(id, owner(who)).await?
        || (who.is_admin()
            && who.user_id.is_some()
            && state.store.delete_push_subscription(id, Some(None)).await?))
}

async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<Vec<Value>>, ApiError> {
    let devices = devices_of(&state, &who).await?;
    Ok(Json(devices.iter().map(view).collect()))
}

/// `POST /api/v1/users/me/devices`: a browser's `PushSubscription.toJSON()`,
/// with an optional name.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case, reason = "the browser's own field name")]
pub struct DeviceRequest {
    /// The push service's https URL.
    #[schema(min_length = 1, max_length = 2048)]
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// When the browser says the subscription ends (ignored).
    #[schema(value_type = Option<f64>)]
    pub expirationTime: Option<f64>,
    /// A name (default: from the User-Agent), 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub device: Option<String>,
}

/// A subscription's keys, base64url.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    #[schema(min_length = 1, max_length = 256)]
    pub p256dh: String,
    #[schema(min_length = 1, max_length = 256)]
    pub auth: String,
}

/// A browser's subscription, as `PushSubscription.toJSON()` gives it, with
/// an optional `device` name (else one from the browser's `User-Agent`).
async fn add(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    Checked(mut body, _): Checked<DeviceRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors: Vec<FieldError> = body
        .keys()
        .filter(|k| !["endpoint", "keys", "expirationTime", "device"].contains(&k.as_str()))
        .map(|k| FieldError::new(k.clone(), "is not a field of a push subscription"))
        .collect();
    let device = match body.remove("device") {
        None | Some(Value::Null) => device_name(
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        ),
        Some(Value::String(d))
            if !d.trim().is_empty()
                && d.chars().count() <= 100
                && !d.contains(char::is_control) =>
        {
            d.trim().to_owned()
        }
        Some(_) => {
            errors.push(FieldError::new(
                "device",
                "must be a name of 1 to 100 characters",
            ));
            String::new()
        }
    };
    body.remove("expirationTime");
    let subscription = match serde_json::from_value::<Subscription>(Value::Object(body.clone())) {
        Ok(s) => Some(s),
        Err(_) => {
            let field = match (body.get("endpoint"), body.get("keys")) {
                (Some(Value::String(_)), Some(Value::Object(_))) => "keys",
                (Some(Value::String(_)), _) => "keys",
                _ => "endpoint",
            };
            errors.push(FieldError::new(
                field,
                "a subscription is {\"endpoint\": URL, \"keys\": {\"p256dh\": …, \"auth\": …}}, as the browser's PushSubscription gives it",
            ));
            None
        }
    };
    if let Some(s) = &subscription {
        errors.extend(s.check().into_iter().map(|(f, m)| FieldError::new(f, m)));
        if !state.web_push_http {
            if let Some(why) = local_endpoint(&s.endpoint) {
                errors.push(FieldError::new("endpoint", why));
            }
        }
    }
    let Some(s) = subscription.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let mine = state.store.push_subscriptions(owner(&who)).await?;
    if mine.len() >= MAX_DEVICES && !mine.iter().any(|d| d.endpoint == s.endpoint) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "endpoint",
            format!("you have {MAX_DEVICES} devices already: remove one first"),
        )]));
    }
    let saved = state
        .store
        .add_push_subscription(
            &NewPushSubscription {
                user_id: who.user_id,
                endpoint: s.endpoint,
                p256dh: s.p256dh,
                auth: s.auth,
                device,
            },
            state.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&saved))))
}

fn device_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::BadRequest(
            format!("{raw:?} is not a device id"),
            vec![FieldError::new("id", "must be a positive integer")],
        )
    })
}

async fn remove(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathText(id): PathText,
) -> Result<StatusCode, ApiError> {
    let id = device_id(&id)?;
    if remove_device(&state, &who, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "you have no device with id {id}"
        )))
    }
}

async fn remove_from_form(
    State(state): State<AppState>,
    Caller(who): Caller,
    axum::extract::Path(id): axum::extract::Path<i64>,
    axum::extract::Form(form): axum::extract::Form<std::collections::HashMap<String, String>>,
) -> Response {
    match remove_device(&state, &who, id).await {
        Ok(true) => {
            let back = match form.get("back").map(String::as_str) {
                Some("/account") => "/account#devices",
                _ => "/notifications#devices",
            };
            Redirect::to(back).into_response()
        }
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            "No such device",
            "This device does not get notifications, or is not yours.",
        ),
        Err(e) => store_failure(&e),
    }
}

/// One of the caller's devices as the pages list it.
pub(crate) struct DeviceRow {
    pub id: i64,
    pub device: String,
    pub added: Stamp,
    pub last_sent: Option<Stamp>,
}

/// What the pages' "This device" section needs: the caller's devices and
/// the key a browser subscribes with.
pub(crate) struct Devices {
    pub rows: Vec<DeviceRow>,
    pub key: String,
    /// Where removing one comes back to.
    pub back: &'static str,
}

impl Devices {
    pub(crate) async fn of(state: &AppState, who: &Principal, back: &'static str) -> Devices {
        let rows = match devices_of(state, who).await {
            Ok(subs) => subs
                .iter()
                .map(|s| DeviceRow {
                    id: s.id,
                    device: s.device.clone(),
                    added: Stamp(s.created_at),
                    last_sent: s.last_sent_at.map(Stamp),
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = ?e, "cannot list push devices");
                Vec::new()
            }
        };
        let key = hub_keys(state.store.as_ref())
            .await
            .map(|k| k.public_key())
            .unwrap_or_default();
        Devices { rows, key, back }
    }
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn devices_are_named_after_their_browser_and_system() {
        let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36";
        assert_eq!(device_name(android), "Chrome on Android");
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(device_name(firefox), "Firefox on Linux");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(device_name(iphone), "Safari on iPhone");
        assert_eq!(device_name("curl/8.5"), "A browser");
    }
}
