//! Extractors that turn bad input into a proper [`ApiError`] instead of axum's
//! plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use lookout_proto::FieldError;
use serde_json::{Map, Value};

use super::AppState;
use crate::error::ApiError;

/// A request body that must be a JSON object sent as `application/json`.
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if !content_type.as_deref().is_some_and(is_json) {
            return Err(ApiError::UnsupportedMediaType(
                content_type.unwrap_or_else(|| "no Content-Type".into()),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: state.max_body_bytes,
                }
            } else {
                ApiError::BadRequest(format!("cannot read the body: {}", r.body_text()), vec![])
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(other) => Err(ApiError::Validation(vec![FieldError::new(
                "body",
                format!(
                    "must be a JSON object, got {}",
                    lookout_proto::service::kind(&other)
                ),
            )])),
            Err(e) => Err(ApiError::MalformedJson(e.to_string())),
        }
    }
}

/// A request body of the API's type `T`: a JSON object (as [`JsonObject`]
/// reads it) that first passes the document's own schema of `T` (every
/// violation named at once, in one 422), then deserialises. So the hub
/// refuses exactly what `/api/openapi.json` forbids; what a schema cannot
/// say (a condition's grammar, a URL's host) the handler checks after.
pub struct Body<T>(pub T);

impl<T> FromRequest<AppState> for Body<T>
where
    T: serde::de::DeserializeOwned + utoipa::ToSchema,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let JsonObject(map) = JsonObject::from_request(req, state).await?;
        from_object(map).map(Body)
    }
}

/// `map` as a JSON value, once it conforms to the document's schema of `T`
/// (else every violation, in one 422).
fn conforming<T: utoipa::ToSchema>(map: Map<String, Value>) -> Result<Value, ApiError> {
    let value = Value::Object(map);
    let problems = crate::openapi::check_request(&T::name(), &value);
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(ApiError::Validation(problems))
    }
}

/// `map` checked against the schema of `T` and read as one.
pub fn from_object<T>(map: Map<String, Value>) -> Result<T, ApiError>
where
    T: serde::de::DeserializeOwned + utoipa::ToSchema,
{
    serde_json::from_value(conforming::<T>(map)?)
        .map_err(|e| ApiError::Validation(vec![FieldError::new("body", e.to_string())]))
}

/// A request body checked against the document's schema of `T`, as
/// [`Body`] does, but handed over as the object itself: for the bodies whose
/// parser the dashboard's forms share (services, channels, status pages),
/// which read what the schema cannot say and report it with the same
/// field names. `T` is the body's type in the document.
pub struct Checked<T>(pub Map<String, Value>, pub std::marker::PhantomData<T>);

impl<T: utoipa::ToSchema> FromRequest<AppState> for Checked<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let JsonObject(map) = JsonObject::from_request(req, state).await?;
        match conforming::<T>(map)? {
            Value::Object(map) => Ok(Checked(map, std::marker::PhantomData)),
            _ => Err(ApiError::Validation(vec![FieldError::new(
                "body",
                "must be a JSON object",
            )])),
        }
    }
}

/// Whether a `Content-Type` names JSON (`application/json` or a `+json` type).
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The query string as a map; a malformed one is a JSON 400, not axum's text.
pub struct QueryMap(pub std::collections::HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(QueryMap)
            .map_err(|e| {
                ApiError::BadRequest(format!("the query string is malformed: {e}"), vec![])
            })
    }
}

/// The one path parameter of a route, as text; invalid percent-encoding is a JSON 400.
pub struct PathText(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| PathText(p))
            .map_err(|e| ApiError::BadRequest(e.body_text(), vec![]))
    }
}

/// The two path parameters of a route, as text.
pub struct PathPair(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathPair {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|Path((a, b))| PathPair(a, b))
            .map_err(|e| ApiError::BadRequest(e.body_text(), vec![]))
    }
}

/// The largest count a query may ask for (`limit`, `lines`).
pub const MAX_COUNT: u32 = 10_000;

/// A count from the query string (`limit`, `lines`): 1 to [`MAX_COUNT`],
/// `default` when absent.
pub fn count_param(
    params: &std::collections::HashMap<String, String>,
    key: &str,
    default: u32,
) -> Result<u32, ApiError> {
    match params.get(key) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_COUNT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    format!("invalid {key} {raw:?}"),
                    vec![FieldError::new(
                        key,
                        format!("must be an integer from 1 to {MAX_COUNT}"),
                    )],
                )
            }),
    }
}

/// The path's one parameter as a positive integer; `what` names it in the error.
async fn positive_id<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    what: &str,
) -> Result<i64, ApiError> {
    let Path(raw) = Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text(), vec![]))?;
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::BadRequest(
            format!("{raw:?} is not {what}"),
            vec![FieldError::new("id", "must be a positive integer")],
        )
    })
}

/// A service id from the path: a positive integer.
pub struct ServiceId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for ServiceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        positive_id(parts, state, "a service id")
            .await
            .map(ServiceId)
    }
}

/// Any other numeric id from the path (`/users/{id}`, `/tokens/{id}`).
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        positive_id(parts, state, "an id").await.map(PathId)
    }
}

/// Reads the fields of a JSON object: all known, strings where text is
/// expected, with every problem reported at once (`finish`).
pub struct Fields<'a> {
    body: &'a serde_json::Map<String, serde_json::Value>,
    pub problems: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a serde_json::Map<String, serde_json::Value>, known: &[&str]) -> Self {
        let problems = body
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| FieldError::new(k.clone(), "is not a known field"))
            .collect();
        Self { body, problems }
    }

    pub fn text(&mut self, key: &str) -> Option<String> {
        match self.body.get(key) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.problems.push(FieldError::new(key, "must be a string"));
                None
            }
        }
    }

    pub fn required(&mut self, key: &str) -> String {
        let v = self.text(key);
        if v.as_deref().is_none_or(str::is_empty) && !self.problems.iter().any(|p| p.field == key) {
            self.problems.push(FieldError::new(key, "is required"));
        }
        v.unwrap_or_default()
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.problems))
        }
    }
}

/// An optional string field of a JSON body: absent or `null` is `None`;
/// another type is named in `errors`.
pub(crate) fn optional_text(
    body: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    errors: &mut Vec<lookout_proto::FieldError>,
) -> Option<String> {
    use serde_json::Value;
    match body.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(lookout_proto::FieldError::new(
                key,
                format!(
                    "must be a string, got {}",
                    lookout_proto::service::kind(other)
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_content_types() {
        assert!(super::is_json("application/json"));
        assert!(super::is_json("Application/JSON; charset=utf-8"));
        assert!(super::is_json("application/merge-patch+json"));
        assert!(!super::is_json("text/plain"));
        assert!(!super::is_json("application/x-www-form-urlencoded"));
    }
}
