//! The JSON API: `/api/services` and friends.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lookout_proto::service::{
    parse_new_service, parse_service_patch, HealthCheckView, RegistryStatus, ServiceView,
};
use lookout_proto::FieldError;

use super::extract::{Checked, JsonObject, QueryMap, ServiceId};
use super::table::Routes;
use super::AppState;
use crate::auth::guard::{Caller, Remote};
use crate::auth::Access;
use crate::error::ApiError;
use crate::openapi::{doc, Answer, Doc, Takes, KINDS_OR_ANY, LIMIT, NEW_SERVICE, SERVICE_CHANGE};
use crate::registry::{Coding, Cursor, ListFilter};
use crate::store::Service;
use lookout_proto::status::Status;

/// Every route under `/api`.
pub fn routes(r: Routes) -> Routes {
    let r = r
        .get("/services", Access::Viewer, list_services)
        .doc(Doc {
            query: &[
                (
                    "status",
                    Takes::Words(&["configured", "discovered", "raw", "all", ""]),
                    "configured (default), discovered, raw or all (empty: the default)",
                ),
                (
                    "state",
                    Takes::Words(&["OK", "UPDATE", "WARNING", "FAILURE", "UNKNOWN", ""]),
                    "only services in this state (any case; empty: any state)",
                ),
                ("q", Takes::Text, "only services whose name contains this (any case)"),
                (
                    "server",
                    Takes::Pattern("^([1-9][0-9]{0,17})?$"),
                    "only the checks of this server (its id; empty: any)",
                ),
                ("tag", Takes::Text, "only services with this tag (any case)"),
                (
                    "kind",
                    Takes::Words(&KINDS_OR_ANY),
                    "only services watched this way (empty: any): a check's kind, push, heartbeat, \
                     script (an agent's check script), systemd (a unit alone) or none",
                ),
                (
                    "limit",
                    Takes::Range(1, 1000),
                    "at most this many (1 to 1000); more pages are named by a Link: rel=\"next\" header",
                ),
                (
                    "after",
                    Takes::Pattern(r"^([0-9a-fA-F]{2}){0,64}\.[0-9]{1,18}$"),
                    "the cursor of a Link: rel=\"next\" header (with limit)",
                ),
            ],
            ..doc(
                "List services (ETag: If-None-Match answers 304 while nothing changed)",
                "services",
                Answer::Many("ServiceView"),
            )
        })
        .post("/services", Access::Admin, create_service)
        .doc(Doc {
            body: Some(NEW_SERVICE),
            ..doc("Register a service", "services", Answer::Created("ServiceView"))
        })
        .get("/services/{id}", Access::Viewer, get_service)
        .doc(doc("One service", "services", Answer::One("ServiceView")))
        .put("/services/{id}", Access::Admin, update_service)
        .doc(Doc {
            body: Some(SERVICE_CHANGE),
            ..doc("Change a service", "services", Answer::One("ServiceView"))
        })
        .delete("/services/{id}", Access::Admin, delete_service)
        .doc(doc("Remove a service", "services", Answer::Empty))
        .get("/services/{id}/health", Access::Viewer, check_service)
        .doc(doc(
            "Check a service now and store the result",
            "health",
            Answer::One("HealthCheckView"),
        ))
        .get("/services/{id}/checks", Access::Viewer, check_history)
        .doc(Doc {
            query: &[LIMIT],
            ..doc("A service's check history", "health", Answer::Many("HealthCheckView"))
        })
        .post("/conditions/check", Access::Viewer, check_conditions)
        .doc(Doc {
            body: Some("ConditionsRequest"),
            ..doc(
                "Check conditions without saving them: their saved form ({conditions: [...]}), or a 422 naming each bad one",
                "health",
                Answer::Object,
            )
        });
    let r = super::systemd::routes(r);
    let r = super::containers::routes(r);
    let r = super::usage::routes(r);
    let r = super::live::routes(r);
    let r = super::heartbeat::api_routes(r);
    let r = super::notify::routes(r);
    let r = super::status_pages::api_routes(r);
    let r = super::devices::api_routes(r);
    let r = super::agents::routes(r);
    let r = super::metrics::api_routes(r);
    let r = super::docs::routes(r);
    super::users::routes(r)
}

type Params = QueryMap;

/// The list's filters from the query: `status` (registry status, default
/// `configured`), `state`, `q` (name contains) and `server`.
pub(crate) fn list_filter(
    params: &std::collections::HashMap<String, String>,
) -> Result<ListFilter, ApiError> {
    let mut problems = Vec::new();
    let status = match params.get("status").map(String::as_str) {
        None | Some("") => Some(RegistryStatus::Configured),
        Some("all") => None,
        Some(s) => RegistryStatus::parse(s).or_else(|| {
            problems.push(FieldError::new(
                "status",
                "must be one of configured, discovered, raw, all",
            ));
            None
        }),
    };
    let state = match params.get("state").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Status::parse(&s.to_ascii_uppercase()).or_else(|| {
            problems.push(FieldError::new(
                "state",
                "must be one of OK, UPDATE, WARNING, FAILURE, UNKNOWN",
            ));
            None
        }),
    };
    let kind = match params.get("kind").map(String::as_str) {
        None | Some("") => None,
        Some(k) => {
            let k = k.to_ascii_lowercase();
            if crate::registry::KINDS.contains(&k.as_str()) {
                Some(k)
            } else {
                problems.push(FieldError::new(
                    "kind",
                    format!("must be one of {}", crate::registry::KINDS.join(", ")),
                ));
                None
            }
        }
    };
    let server = match params.get("server").map(String::as_str) {
        None | Some("") => None,
        Some(s) => s.parse::<i64>().ok().filter(|id| *id > 0).or_else(|| {
            problems.push(FieldError::new("server", "must be a server id"));
            None
        }),
    };
    if !problems.is_empty() {
        return Err(ApiError::BadRequest("unknown list filter".into(), problems));
    }
    Ok(ListFilter {
        status,
        state,
        name_contains: params.get("q").filter(|q| !q.is_empty()).cloned(),
        server,
        tag: params
            .get("tag")
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
        kind,
    })
}

/// The services, from memory: the body is assembled from each service's
/// JSON, kept since it last changed. Its `ETag` is the registry's version;
/// a request whose `If-None-Match` carries it gets `304 Not Modified`.
async fn list_services(
    State(state): State<AppState>,
    QueryMap(params): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let filter = list_filter(&params)?;
    let page = page_params(&params)?;
    let tag = state.registry.etag(state.registry.version());
    let coding = page.is_none().then(|| preferred_coding(&headers)).flatten();
    let known = [
        tag.clone(),
        coded_tag(&tag, Coding::Gzip),
        coded_tag(&tag, Coding::Brotli),
    ];
    if known.iter().any(|t| if_none_match(&headers, t)) {
        let tag = coding.map_or(tag.clone(), |c| coded_tag(&tag, c));
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, tag),
                (header::VARY, "accept-encoding".into()),
            ],
        )
            .into_response());
    }
    if let Some(coding) = coding {
        if let Some((version, body)) = state.registry.list_compressed(&filter, coding) {
            return Ok((
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (header::CONTENT_ENCODING, coding.as_str().to_owned()),
                    (
                        header::ETAG,
                        coded_tag(&state.registry.etag(version), coding),
                    ),
                    (header::VARY, "accept-encoding".to_owned()),
                ],
                body,
            )
                .into_response());
        }
    }
    let (version, body, next) = match page {
        None => {
            let (version, body) = state.registry.list_json(&filter);
            (version, body, None)
        }
        Some((limit, after)) => {
            let page = state.registry.page(&filter, after.as_ref(), limit);
            (page.version, page.body, page.next)
        }
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::ETAG, state.registry.etag(version)),
            (header::VARY, "accept-encoding".to_owned()),
        ],
        body,
    )
        .into_response();
    if let Some(next) = next {
        // The same query, continued: `Link: <...>; rel="next"`.
        let mut query: Vec<(&str, String)> = params
            .iter()
            .filter(|(k, _)| k.as_str() != "after")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        query.sort();
        query.push(("after", next.to_string()));
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        if let Ok(link) = format!("</api/services?{query}>; rel=\"next\"").parse() {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(response)
}

/// The `ETag` of the gzipped list: another representation of the same
/// version, so another tag.
pub(crate) fn coded_tag(tag: &str, coding: Coding) -> String {
    format!("{}-{}\"", tag.trim_end_matches('"'), coding.as_str())
}

/// The coding the list goes out in: brotli when `Accept-Encoding` admits
/// it, else gzip when it admits that (named, or `*`, with a non-zero q).
pub(crate) fn preferred_coding(headers: &HeaderMap) -> Option<Coding> {
    let admitted: Vec<(String, bool)> = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("").to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name, !refused)
        })
        .collect();
    let admits = |name: &str| {
        admitted
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| admitted.iter().find(|(n, _)| n == "*"))
            .is_some_and(|(_, ok)| *ok)
    };
    [Coding::Brotli, Coding::Gzip]
        .into_iter()
        .find(|c| admits(c.as_str()))
}

/// Most services on one page.
const MAX_PAGE: usize = 1000;

/// `?limit=N` (1 to 1000) and `?after=CURSOR`; `None` without a limit: the
/// whole list.
fn page_params(
    params: &std::collections::HashMap<String, String>,
) -> Result<Option<(usize, Option<Cursor>)>, ApiError> {
    let mut problems = Vec::new();
    let limit = match params.get("limit") {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Some(n),
            _ => {
                problems.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_PAGE}"),
                ));
                None
            }
        },
    };
    let after = match params.get("after") {
        None => None,
        Some(c) => Cursor::parse(c).or_else(|| {
            problems.push(FieldError::new(
                "after",
                "must be a cursor from a Link: rel=\"next\" header",
            ));
            None
        }),
    };
    if !problems.is_empty() {
        return Err(ApiError::BadRequest("invalid page".into(), problems));
    }
    // A cursor alone pages by the largest page.
    let limit = limit.or(after.as_ref().map(|_| MAX_PAGE));
    Ok(limit.map(|limit| (limit, after)))
}

/// Whether `If-None-Match` names `tag` (or is `*`).
pub(crate) fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

async fn create_service(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let new = both_passes(crate::openapi::NEW_SERVICE, &body, parse_new_service(&body))?;
    let service = state.create_service(&new).await?;
    let location = format!("/api/services/{}", service.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        view_of(&state, &service),
    ))
}

/// A service body through the document's schema `schema` and the parser
/// the forms share, every problem of both named once: the parser's words
/// for a field it names, the schema's for the rest.
fn both_passes<T>(
    schema: &str,
    body: &serde_json::Map<String, serde_json::Value>,
    parsed: Result<T, Vec<FieldError>>,
) -> Result<T, ApiError> {
    let shape = crate::openapi::check_request(schema, &serde_json::Value::Object(body.clone()));
    match parsed {
        Ok(value) if shape.is_empty() => Ok(value),
        Ok(_) => Err(ApiError::Validation(shape)),
        Err(mut problems) => {
            let named = |f: &FieldError| {
                problems.iter().any(|p| {
                    f.field == p.field
                        || f.field.starts_with(&format!("{}.", p.field))
                        || f.field.starts_with(&format!("{}[", p.field))
                })
            };
            let rest: Vec<FieldError> = shape.into_iter().filter(|f| !named(f)).collect();
            problems.extend(rest);
            Err(ApiError::Validation(problems))
        }
    }
}

/// A service's JSON view: the bytes the registry keeps for it when they are
/// of this very version, else serialised now.
fn view_of(state: &AppState, service: &Service) -> Response {
    match state.registry.get(service.id) {
        Some(entry) if entry.service == *service => (
            [(header::CONTENT_TYPE, "application/json")],
            entry.json.clone(),
        )
            .into_response(),
        _ => Json(service.to_view(&state.checks)).into_response(),
    }
}

async fn find(state: &AppState, id: i64) -> Result<Service, ApiError> {
    state
        .registry
        .get(id)
        .map(|e| e.service.clone())
        .ok_or_else(|| ApiError::not_found_service(id))
}

async fn get_service(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
) -> Result<Response, ApiError> {
    let entry = state
        .registry
        .get(id)
        .ok_or_else(|| ApiError::not_found_service(id))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        entry.json.clone(),
    )
        .into_response())
}

/// `POST /api/conditions/check`: conditions as a service takes them.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionsRequest {
    #[schema(max_items = 50)]
    pub conditions: Vec<lookout_proto::condition::ConditionSpec>,
}

/// Checks conditions without saving anything, as the service form does
/// while they are typed: their saved form, or a 422 naming each bad one
/// (`conditions[i]`).
async fn check_conditions(
    Checked(body, _): Checked<ConditionsRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut errors: Vec<FieldError> = Vec::new();
    let Some(conditions) = body.get("conditions") else {
        errors.push(FieldError::new("conditions", "is required"));
        return Err(ApiError::Validation(errors));
    };
    let mut only = serde_json::Map::new();
    only.insert("conditions".into(), conditions.clone());
    match parse_service_patch(&only) {
        Ok(patch) if errors.is_empty() => Ok(Json(serde_json::json!({
            "conditions": patch
                .conditions
                .unwrap_or_default()
                .iter()
                .map(lookout_proto::condition::Condition::to_spec)
                .collect::<Vec<_>>(),
        }))),
        Ok(_) => Err(ApiError::Validation(errors)),
        Err(more) => {
            errors.extend(more);
            Err(ApiError::Validation(errors))
        }
    }
}

async fn update_service(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
    JsonObject(body): JsonObject,
) -> Result<Json<ServiceView>, ApiError> {
    let patch = both_passes(
        crate::openapi::SERVICE_CHANGE,
        &body,
        parse_service_patch(&body),
    )?;
    let service = state
        .update_service(id, &patch)
        .await?
        .ok_or_else(|| ApiError::not_found_service(id))?;
    Ok(Json(service.to_view(&state.checks)))
}

async fn delete_service(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    ServiceId(id): ServiceId,
) -> Result<StatusCode, ApiError> {
    if let Some(service) = state.registry.get(id).map(|e| e.service.clone()) {
        let actor = super::systemd::Actor {
            who: &who,
            client: &client,
        };
        // A managed app goes whole: stopped, its unit file removed.
        if let Some(result) = super::systemd::delete_app_of(&state, actor, &service).await {
            return result.map(|()| StatusCode::NO_CONTENT);
        }
    }
    if state.delete_service(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found_service(id))
    }
}

async fn check_service(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
) -> Result<Json<HealthCheckView>, ApiError> {
    let service = find(&state, id).await?;
    // A read that sends a probe: at most one every few seconds per service;
    // in between, the newest result.
    if !state.checker.may_check_on_request(id) {
        if let Some(newest) = state.store.health_history(id, 1).await?.first() {
            return Ok(Json(newest.to_view()));
        }
    }
    Ok(Json(state.check_now(&service).await?.to_view()))
}

async fn check_history(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
    QueryMap(params): Params,
) -> Result<Json<Vec<HealthCheckView>>, ApiError> {
    let limit = super::extract::count_param(&params, "limit", 100)?;
    find(&state, id).await?;
    let history = state.store.health_history(id, limit).await?;
    Ok(Json(history.iter().map(|c| c.to_view()).collect()))
}
