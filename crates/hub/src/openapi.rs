//! The OpenAPI description of the JSON API (`GET /api/openapi.json`).
//!
//! Generated from the code: the operations are the route table's (method,
//! path, who may call it), each with the `Doc` its route declares where it
//! is added (`Routes::doc`: summary, tag, query parameters, the body's
//! schema, the answer), so a route cannot exist undocumented (a test walks
//! the table); the bodies are the API's own types through utoipa's
//! `ToSchema` derives, and the hub checks each request body against the
//! very schema served here ([`check_request`]).

use axum::http::Method;
use std::collections::HashMap;
use std::sync::LazyLock;

use lookout_proto::error::ErrorBody;
use lookout_proto::service::{
    HealthCheckView, ScanResult, ServerView, ServiceView, StatusEventView, TimerView,
};
use lookout_proto::FieldError;
use serde_json::Value;
use utoipa::openapi::path::{
    Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HttpMethod, OpenApi, PathItem, Paths, Ref, RefOr, Required, ResponseBuilder,
    ResponsesBuilder, Schema,
};
use utoipa::OpenApi as _;

use crate::auth::Access;
use crate::routes::table::RouteInfo;

/// The schemas every operation refers to, collected with what they contain.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    ErrorBody,
    ServiceView,
    HealthCheckView,
    StatusEventView,
    ServerView,
    lookout_proto::status_page::StatusPageView,
    TimerView,
    ScanResult,
    lookout_proto::service::CheckResultView,
    lookout_systemd::UnitStatus,
    crate::routes::systemd::Logs,
    crate::routes::systemd::InstallOutcome,
    crate::routes::systemd::CleanupResult,
    crate::routes::containers::ContainerList,
    lookout_proto::container::ContainerView,
    crate::routes::metrics::TargetGroup,
    crate::routes::users::LoginRequest,
    crate::routes::users::RefreshRequest,
    crate::routes::users::RegisterRequest,
    crate::routes::users::NewUserRequest,
    crate::routes::users::NewTokenRequest,
    crate::routes::users::SettingsRequest,
    crate::routes::users::TwoFactorOnRequest,
    crate::routes::users::TwoFactorOffRequest,
    crate::routes::notify::ChannelRequest,
    crate::routes::heartbeat::HeartbeatRequest,
    crate::routes::heartbeat::PushTokenRequest,
    crate::routes::devices::DeviceRequest,
    crate::routes::agents::RegisterServerRequest,
    crate::routes::agents::ClaimRequest,
    crate::routes::agents::ControlRequest,
    crate::routes::status_pages::StatusPageRequest,
    crate::routes::systemd::AppCreateRequest,
    crate::routes::api::ConditionsRequest,
    crate::routes::usage::HostNow,
    crate::routes::usage::HostUsageSeries,
    crate::routes::usage::UnitUsageSeries,
)))]
struct Schemas;

/// What an operation answers when it succeeds.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// `200` with this component schema.
    One(&'static str),
    /// `200` with an array of this component schema.
    Many(&'static str),
    /// `201` with this component schema.
    Created(&'static str),
    /// `200` with a JSON object whose shape the summary describes.
    Object,
    /// `201` with a JSON object whose shape the summary describes.
    CreatedObject,
    /// `201` with a JSON object when it made something, else `200`.
    Upserted,
    /// `200` with an array of JSON objects.
    Objects,
    /// `204`, no body.
    Empty,
    /// `200` with a body of this media type that is not JSON.
    Text(&'static str),
    /// `101`, a WebSocket.
    Upgrade,
}

/// What a query parameter takes.
#[derive(Debug, Clone, Copy)]
pub enum Takes {
    Text,
    /// One of these words.
    Words(&'static [&'static str]),
    /// A count, bounded as `count_param` reads it.
    Count,
    /// An event id (never negative).
    EventId,
    /// A whole number in this range.
    Range(i64, i64),
    /// Text of this form.
    Pattern(&'static str),
}

/// The query of a ping on a push URL.
pub const PING_QUERY: &[(&str, Takes, &str)] = &[
    (
        "status",
        Takes::Words(&["up", "down", "ok", "fail", "failure", "warning", "update"]),
        "the status to report, in any case: up or ok (the default), down, fail or failure, \
         warning, update",
    ),
    (
        "msg",
        Takes::Text,
        "a message to show (else the request's body)",
    ),
    (
        "ping",
        Takes::Pattern(r"^[0-9]{0,11}(\.[0-9]{1,6})?$"),
        "how long the job took, in milliseconds (empty: not said)",
    ),
];

/// What a route's `{id}` is.
#[derive(Debug, Clone, Copy)]
pub enum PathId {
    /// A row's positive id.
    Row,
    /// A service's id or a systemd unit name (the systemd routes).
    RowOrUnit,
    /// A managed app's name.
    AppName,
    /// A container's name (`{name}`).
    Container,
    /// A host's name (`{name}`).
    Host,
}

/// What the code says about one operation beyond the route table.
#[derive(Debug, Clone)]
pub struct Doc {
    pub summary: &'static str,
    pub tag: &'static str,
    /// Query parameters: name, what it takes, what it means.
    pub query: &'static [(&'static str, Takes, &'static str)],
    /// What `{id}` is, where the path has one.
    pub id: PathId,
    /// Takes a JSON object body: the name of its schema.
    pub body: Option<&'static str>,
    /// The body may be left out (its fields have defaults).
    pub body_optional: bool,
    pub answer: Answer,
}

pub const fn doc(summary: &'static str, tag: &'static str, answer: Answer) -> Doc {
    Doc {
        summary,
        tag,
        query: &[],
        id: PathId::Row,
        body: None,
        body_optional: false,
        answer,
    }
}

/// The kinds a service list filters by, and the empty filter.
pub const KINDS_OR_ANY: [&str; crate::registry::KINDS.len() + 1] = {
    let mut all = [""; crate::registry::KINDS.len() + 1];
    let mut i = 0;
    while i < crate::registry::KINDS.len() {
        all[i] = crate::registry::KINDS[i];
        i += 1;
    }
    all
};

pub const LIMIT: (&str, Takes, &str) = (
    "limit",
    Takes::Count,
    "how many, newest first (1-10000, default 100)",
);

/// The pattern every free-text string of the document carries: no NUL, which
/// no value in lookout may hold (the request gate refuses it everywhere).
const NO_NUL: &str = "^[^\\u0000]*$";

/// Gives every string schema under `value` that has no pattern, enum or
/// format of its own the [`NO_NUL`] pattern.
fn forbid_nul(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_string = match map.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_string
                && !["pattern", "enum", "format", "const"]
                    .iter()
                    .any(|k| map.contains_key(*k))
            {
                map.insert("pattern".into(), Value::String(NO_NUL.into()));
            }
            for item in map.values_mut() {
                forbid_nul(item);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_nul),
        _ => {}
    }
}

/// The component schemas, as the document serves them.
fn components() -> Value {
    let mut schemas =
        serde_json::to_value(schemas().components.map(|c| c.schemas).unwrap_or_default())
            .unwrap_or_default();
    forbid_nul(&mut schemas);
    schemas
}

/// A validator for each component schema, built once.
static VALIDATORS: LazyLock<HashMap<String, jsonschema::Validator>> = LazyLock::new(|| {
    let schemas = components();
    let names: Vec<String> = schemas
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names
        .into_iter()
        .filter_map(|name| {
            let root = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": { "schemas": schemas },
                "$ref": format!("#/components/schemas/{name}"),
            });
            match jsonschema::validator_for(&root) {
                Ok(v) => Some((name, v)),
                Err(e) => {
                    tracing::error!(schema = %name, error = %e, "a request schema does not compile");
                    None
                }
            }
        })
        .collect()
});

/// `/tags/2` as the API names fields: `tags[2]`; the root is `body`.
fn field_name(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    if out.is_empty() {
        "body".into()
    } else {
        out
    }
}

/// What the document's schema `name` has to say about `body`: every
/// violation, each naming its field (an unknown field and a missing one by
/// their names); empty when it conforms.
pub fn check_request(name: &str, body: &Value) -> Vec<FieldError> {
    use jsonschema::error::ValidationErrorKind as Kind;
    let Some(validator) = VALIDATORS.get(name) else {
        tracing::error!(schema = %name, "a request type has no schema in the document");
        return vec![FieldError::new("body", "cannot be checked")];
    };
    let mut problems: Vec<FieldError> = Vec::new();
    for error in validator.iter_errors(body) {
        let at = error.instance_path().as_str().to_owned();
        let join = |key: &str| {
            let parent = field_name(&at);
            if parent == "body" {
                key.to_owned()
            } else {
                format!("{parent}.{key}")
            }
        };
        match error.kind() {
            Kind::Required { property } => problems.push(FieldError::new(
                join(property.as_str().unwrap_or_default()),
                "is required",
            )),
            Kind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    problems.push(FieldError::new(join(key), "is not a known field"));
                }
            }
            _ => problems.push(FieldError::new(field_name(&at), error.masked().to_string())),
        }
    }
    problems.dedup_by(|a, b| a.field == b.field && a.message == b.message);
    problems
}

fn component(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn json(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn any_object() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .build()
        .into()
}

fn integer() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
}

fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String))
}

/// A path parameter as the route reads it: `{id}` as `id` says, other
/// placeholders (names, tokens) as strings.
fn path_parameter(name: &str, id: PathId) -> Parameter {
    let (schema, description) = match (name, id) {
        ("id", PathId::Row) => (integer().minimum(Some(1)), None),
        ("id", PathId::RowOrUnit) => (
            text().pattern(Some(
                r"^[A-Za-z0-9:_.\\][A-Za-z0-9:_.\\-]{0,200}(@[A-Za-z0-9:_.\\-]{0,40})?$",
            )),
            Some("a service's id, or a systemd unit name such as nginx.service"),
        ),
        ("id", PathId::AppName) => (
            text()
                .min_length(Some(1))
                .pattern(Some("^[a-z0-9][a-z0-9_-]{0,63}$")),
            Some("the app's name (its unit is lookout-app-NAME.service)"),
        ),
        ("name", PathId::Container) => (
            text().pattern(Some("^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
            Some("the container's name, as the engine shows it"),
        ),
        ("name", PathId::Host) => (
            text().pattern(Some("^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")),
            Some("the host's name, as /api/hosts lists it"),
        ),
        ("signal", _) => (
            text().pattern(Some("^(start|fail|25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])$")),
            Some(
                "start (a run began), fail, or the job's exit code: 0 is success, 1 to 255 failure",
            ),
        ),
        _ => (text().min_length(Some(1)), Some(name)),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(description)
        .schema(Some(schema))
        .build()
}

fn query_schema(takes: Takes) -> ObjectBuilder {
    match takes {
        Takes::Text => text(),
        Takes::Words(words) => text().enum_values(Some(words.iter().copied())),
        Takes::Count => integer()
            .minimum(Some(1))
            .maximum(Some(crate::routes::extract::MAX_COUNT)),
        Takes::EventId => integer().minimum(Some(0)),
        Takes::Range(low, high) => integer().minimum(Some(low)).maximum(Some(high)),
        Takes::Pattern(pattern) => text().pattern(Some(pattern)),
    }
}

/// The schema of a service's creation and of its change.
pub const NEW_SERVICE: &str = "NewService";
pub const SERVICE_CHANGE: &str = "ServiceChange";

/// The component schemas: the API's types, and the two service bodies
/// built from what a service shows.
fn schemas() -> OpenApi {
    let mut api = Schemas::openapi();
    let components = api.components.get_or_insert_with(Default::default);
    let view = match components.schemas.get("ServiceView") {
        Some(RefOr::T(schema)) => schema.clone(),
        _ => any_object(),
    };
    components
        .schemas
        .insert(NEW_SERVICE.into(), RefOr::T(service_fields(&view, true)));
    components.schemas.insert(
        SERVICE_CHANGE.into(),
        RefOr::T(service_fields(&view, false)),
    );
    // A login names its account by username or by e-mail address: one of
    // the two is required, which a struct's fields cannot say.
    if let Some(RefOr::T(login)) = components.schemas.remove("LoginRequest") {
        let named_by = |field: &str| {
            ObjectBuilder::new()
                .required(field)
                .property(field, text())
                .build()
        };
        let either = utoipa::openapi::schema::AnyOfBuilder::new()
            .item(named_by("username"))
            .item(named_by("email"))
            .build();
        let both = utoipa::openapi::schema::AllOfBuilder::new()
            .item(login)
            .item(Schema::AnyOf(either))
            .build();
        components
            .schemas
            .insert("LoginRequest".into(), RefOr::T(Schema::AllOf(both)));
    }
    api
}

/// `schema`, or `null` (which removes an optional field of a service).
fn or_null(schema: RefOr<Schema>) -> RefOr<Schema> {
    let any_of = utoipa::openapi::schema::AnyOfBuilder::new()
        .item(schema)
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Null))
                .build(),
        )
        .build();
    RefOr::T(Schema::AnyOf(any_of))
}

/// The body of a service write: the fields `parse_fields` accepts
/// (`WRITABLE_FIELDS`), each with the schema `ServiceView` shows it with
/// (`url` is `base_url`; `status` is the reported state, or `configured`
/// which leaves it alone), any of them `null` but `name`; the fields a
/// service only shows are taken and ignored, so what `GET` gave can be
/// sent back. Nothing else.
fn service_fields(view: &Schema, create: bool) -> Schema {
    let shown = match view {
        Schema::Object(o) => Some(&o.properties),
        _ => None,
    };
    let mut body = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ));
    for field in lookout_proto::service::WRITABLE_FIELDS {
        let schema = match *field {
            "status" => Some(
                text()
                    .enum_values(Some(["active", "inactive", "failed", "configured"]))
                    .into(),
            ),
            "reported_state" => Some(component("ReportedState")),
            "url" => shown.and_then(|p| p.get("base_url").cloned()),
            "port" => Some(integer().minimum(Some(1)).maximum(Some(65535)).into()),
            // Shown as ids; written as ids or names.
            "depends_on" => Some(
                ArrayBuilder::new()
                    .items(
                        utoipa::openapi::schema::OneOfBuilder::new()
                            .item(integer().minimum(Some(1)))
                            .item(text().min_length(Some(1))),
                    )
                    .description(Some("The services it depends on: ids or names."))
                    .build()
                    .into(),
            ),
            f => shown.and_then(|p| p.get(f).cloned()),
        };
        let schema = schema.unwrap_or_else(|| RefOr::T(any_object()));
        let schema = if *field == "name" {
            schema
        } else {
            or_null(schema)
        };
        body = body.property(*field, schema);
    }
    for field in lookout_proto::service::READ_ONLY_FIELDS {
        body = body.property(
            *field,
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .description(Some("Shown by the API; ignored when sent")),
        );
    }
    if create {
        body = body.required("name");
    }
    body.build().into()
}

fn operation(route: &RouteInfo, doc: &Doc, auth_required: bool) -> Operation {
    let mut op = OperationBuilder::new()
        .summary(Some(doc.summary))
        .tag(doc.tag)
        .operation_id(Some(operation_id(route)));
    for name in route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
    {
        op = op.parameter(path_parameter(name, doc.id));
    }
    for (name, takes, what) in doc.query {
        let schema = query_schema(*takes);
        op = op.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(*what))
                .schema(Some(schema)),
        );
    }
    if let Some(schema) = doc.body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .description(Some(
                    "A JSON object; a field the schema does not name is refused, and every \
                     offending field is named in one 422.",
                ))
                .content("application/json", json(component(schema)))
                .required(Some(if doc.body_optional {
                    Required::False
                } else {
                    Required::True
                }))
                .build(),
        ));
    }
    let (status, response) = match &doc.answer {
        Answer::One(name) => ("200", json_response(component(name))),
        Answer::Many(name) => (
            "200",
            json_response(ArrayBuilder::new().items(component(name)).build()),
        ),
        Answer::Created(name) => ("201", json_response(component(name))),
        Answer::Object => ("200", json_response(any_object())),
        Answer::CreatedObject | Answer::Upserted => ("201", json_response(any_object())),
        Answer::Objects => (
            "200",
            json_response(ArrayBuilder::new().items(RefOr::T(any_object())).build()),
        ),
        Answer::Empty => ("204", ResponseBuilder::new().description("Done").build()),
        Answer::Text(media) => (
            "200",
            ResponseBuilder::new()
                .description("OK")
                .content(*media, ContentBuilder::new().build())
                .build(),
        ),
        Answer::Upgrade => (
            "101",
            ResponseBuilder::new()
                .description("Switching to the WebSocket protocol")
                .build(),
        ),
    };
    let refusal = ResponseBuilder::new()
        .description(
            "Refused: the JSON error body names the problem and the offending fields \
             (400 bad input, 401/403 credentials, 404 not found, 409 conflict, 413 too large, \
             415 not JSON, 429 rate limit, 503 a dependency such as systemd, the container engine or an agent is \
             unavailable)",
        )
        .content("application/json", json(component("ErrorBody")))
        .build();
    let mut responses = ResponsesBuilder::new().response(status, response);
    if matches!(doc.answer, Answer::Upserted) {
        responses = responses.response("200", json_response(any_object()));
    }
    op = op.responses(responses.response("default", refusal).build());
    if route.rule.access != Access::Public {
        op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        if !auth_required {
            // The empty requirement: on a hub without sign-in a token is
            // taken but none is needed.
            op = op.security(SecurityRequirement::default());
        }
    }
    op.build()
}

fn json_response(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description("OK")
        .content("application/json", json(schema))
        .build()
}

/// `get_api_services_id`, from the method and path.
fn operation_id(route: &RouteInfo) -> String {
    let path: String = route
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut id = format!("{}{}", route.method.as_str().to_ascii_lowercase(), path);
    while id.contains("__") {
        id = id.replace("__", "_");
    }
    id.trim_end_matches('_').to_owned()
}

fn http_method(method: &Method) -> Option<HttpMethod> {
    Some(match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        _ => return None,
    })
}

/// The API routes of the table that are not documented (a test wants none).
pub fn undocumented(routes: &[RouteInfo]) -> Vec<String> {
    routes
        .iter()
        .filter(|r| !r.rule.page)
        .filter(|r| r.doc.is_none())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The document as served: [`document`] with every free-text string's
/// [`NO_NUL`] pattern, the schemas request bodies are checked against.
pub fn document_json(routes: &[RouteInfo], auth_required: bool) -> Value {
    let mut doc = serde_json::to_value(document(routes, auth_required)).unwrap_or_default();
    forbid_nul(&mut doc);
    doc
}

/// The whole document, for every API route of `routes` (pages are left out).
/// The document of a hub whose sign-in is `auth_required` or off.
pub fn document(routes: &[RouteInfo], auth_required: bool) -> OpenApi {
    let mut api = schemas();
    api.info.title = "lookout".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description = Some(
        "The JSON API of a lookout hub: the service registry, health checks and \
         their history, systemd discovery and control, heartbeats and push URLs, \
         agents and servers, notifications, accounts and tokens. Every refusal is \
         a JSON ErrorBody with a 4xx status."
            .into(),
    );
    let mut paths = Paths::new();
    for route in routes.iter().filter(|r| !r.rule.page) {
        let (Some(doc), Some(method)) = (&route.doc, http_method(&route.method)) else {
            continue;
        };
        let item = PathItem::new(method, operation(route, doc, auth_required));
        match paths.paths.get_mut(&route.path) {
            Some(existing) => existing.merge_operations(item),
            None => {
                paths.paths.insert(route.path.clone(), item);
            }
        }
    }
    api.paths = paths;
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An access token from /api/v1/users/login or a personal API token; \
                     not needed when the hub runs with auth off",
                ))
                .build(),
        ),
    );
    api
}
