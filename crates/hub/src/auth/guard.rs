//! The one guard every route goes through (installed by
//! [`crate::routes::table::Routes`], so no route can skip it). In order:
//! cross-origin writes are refused; the route's rate limit is counted; the
//! caller is identified (bearer token or session cookie); the route's
//! [`Access`] is enforced (401 / login redirect, 403 for a viewer on a write);
//! a form post must carry the CSRF token of its browser.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use lookout_proto::{ErrorBody, ErrorCode};

use super::{limit, token, Access, Auth, Bucket, Client, Principal};
use crate::store::accounts::{CredentialKind, TokenScope};

/// How a route is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    /// A dashboard page (failures are pages and redirects) or an API route (JSON).
    pub page: bool,
    pub bucket: Option<Bucket>,
}

/// The browser's CSRF token, for the forms a page renders.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

/// What every page shows of its request: who is signed in and the CSRF token
/// its forms carry. Set by the guard for the duration of a page handler, so
/// templates read it without each handler threading it through.
#[derive(Debug, Clone, Default)]
pub struct PageContext {
    /// Authentication is on (the page shows the account menu).
    pub auth: bool,
    pub user: Option<String>,
    pub admin: bool,
    pub csrf: String,
    /// The hub follows its host's systemd (not `--systemd none`): the
    /// pages show what belongs to it.
    pub systemd: bool,
}

/// Whether the hub follows its host's systemd, for the pages.
#[derive(Debug, Clone, Copy)]
pub struct HostSystemd(pub bool);

tokio::task_local! {
    static PAGE: PageContext;
}

/// The page context of the request being handled (empty outside a page route).
pub fn page_context() -> PageContext {
    PAGE.try_with(Clone::clone).unwrap_or_default()
}

/// The name of the form field and header that carry the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The cookie names; the `__Host-` prefix (Secure, host-only, path /) when the
/// browser is on HTTPS.
pub fn session_cookie(https: bool) -> &'static str {
    if https {
        "__Host-lookout_session"
    } else {
        "lookout_session"
    }
}

fn csrf_cookie(https: bool) -> &'static str {
    if https {
        "__Host-lookout_csrf"
    } else {
        "lookout_csrf"
    }
}

/// The value of cookie `name` among a request's headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path /, Secure on HTTPS.
/// `max_age: None` deletes the cookie.
#[allow(
    clippy::expect_used,
    reason = "the cookie's name, value (a hex token) and attributes are ASCII"
)]
pub fn set_cookie(
    name: &str,
    value: &str,
    https: bool,
    max_age: Option<std::time::Duration>,
) -> HeaderValue {
    let mut c = cookie::Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .secure(https)
        .same_site(cookie::SameSite::Lax);
    c = match max_age {
        Some(age) => c.max_age(cookie::time::Duration::seconds(
            i64::try_from(age.as_secs()).unwrap_or(i64::MAX),
        )),
        None => c.max_age(cookie::time::Duration::ZERO),
    };
    HeaderValue::from_str(&c.build().to_string()).expect("cookie values are ASCII tokens")
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A browser says where a request comes from; a write from another site is
/// refused whatever its credentials (so a page elsewhere cannot drive a hub
/// without authentication on 127.0.0.1 either). Tools that send neither
/// header (curl, scripts) are not browsers and pass.
fn cross_origin(parts: &Parts, client: &Client) -> bool {
    let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    match h("sec-fetch-site") {
        Some("same-origin" | "none") => return false,
        Some(_) => return true,
        None => {}
    }
    match h("origin") {
        None => false,
        Some(origin) => {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            host.is_none() || host != client.host.as_deref()
        }
    }
}

/// A live stream's handshake: a WebSocket upgrade, or an `EventSource`
/// asking for `text/event-stream`. It reads, but what it reads is the whole
/// live feed, and no CORS rule keeps a WebSocket from another site: it is
/// held to the same origin rule as a write.
fn opens_a_stream(parts: &Parts) -> bool {
    let h = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    h(header::UPGRADE).is_some_and(|u| u.contains("websocket"))
        || h(header::ACCEPT).is_some_and(|a| a.contains("text/event-stream"))
}

/// Whether the `Host` a request names is this machine: `localhost` (and its
/// subdomains) or a loopback address, with any port. Without authentication
/// on a loopback hub, anything else is a browser fooled by DNS rebinding
/// into sending a page's requests to 127.0.0.1.
fn names_loopback(parts: &Parts) -> bool {
    let Some(host) = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return true; // HTTP/1.0 clients; browsers always send Host
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn api_error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = ErrorBody {
        code,
        message: message.to_owned(),
        fields: vec![],
    };
    (status, axum::Json(body)).into_response()
}

fn page_error(status: StatusCode, title: &str, text: &str) -> Response {
    crate::routes::ui::message(status, title, text)
}

fn refuse(rule: Rule, status: StatusCode, code: ErrorCode, title: &str, text: &str) -> Response {
    if rule.page {
        page_error(status, title, text)
    } else {
        api_error(status, code, text)
    }
}

/// The caller, from a bearer token or a session cookie. `Err` carries the
/// refusal for a bearer token that is not valid.
async fn identify(auth: &Auth, parts: &Parts, client: &Client) -> Result<Option<Principal>, ()> {
    if !auth.required() {
        return Ok(Some(Principal::local()));
    }
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(())?;
        return match auth
            .principal_for(secret, &[CredentialKind::Access, CredentialKind::Api])
            .await
        {
            Ok(Some(p)) => Ok(Some(p)),
            Ok(None) => Err(()),
            Err(e) => {
                tracing::error!(error = ?e, "cannot check a bearer token");
                Err(())
            }
        };
    }
    if let Some(who) = forwarded(auth, parts).await {
        return Ok(Some(who));
    }
    let Some(secret) = cookie(&parts.headers, session_cookie(client.https)) else {
        return Ok(None);
    };
    match auth.principal_for(secret, &[CredentialKind::Session]).await {
        Ok(p) => Ok(p),
        Err(e) => {
            tracing::error!(error = ?e, "cannot check a session");
            Ok(None)
        }
    }
}

/// The user a trusted reverse proxy names in its headers (`--forward-auth`).
/// The same headers from anyone else are ignored.
async fn forwarded(auth: &Auth, parts: &Parts) -> Option<Principal> {
    let forward = auth.settings.forward.as_ref()?;
    if !super::client::from_trusted_proxy(parts, &auth.settings.trusted_proxies) {
        return None;
    }
    let h = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let user = h(&forward.user_header)?;
    let groups: Vec<&str> = h(&forward.groups_header)
        .map(|g| g.split(',').map(str::trim).collect())
        .unwrap_or_default();
    match auth
        .forwarded(user, h(&forward.email_header), &groups)
        .await
    {
        Ok(who) => who,
        Err(e) => {
            tracing::error!(error = ?e, "cannot look up the user a proxy named");
            None
        }
    }
}

async fn unauthenticated(auth: &Auth, rule: Rule, parts: &Parts) -> Response {
    let first_run = matches!(auth.store.count_users().await, Ok(0));
    if rule.page {
        if first_run {
            return Redirect::to("/setup").into_response();
        }
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        let next = if is_safe(&parts.method) { here } else { "/" };
        let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
        return Redirect::to(&format!("/login?{query}")).into_response();
    }
    let message = if first_run {
        "authentication required, and no account exists yet: create the first admin at /setup \
         or with `lookout user add NAME --admin`"
    } else {
        "authentication required: send Authorization: Bearer TOKEN (POST /api/v1/users/login \
         issues one; personal API tokens are made on the Account page)"
    };
    let mut response = api_error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"lookout\""),
    );
    response
}

/// Checks the CSRF token of a form post and hands the handler the form
/// without it.
async fn check_csrf(
    auth: &Auth,
    parts: &Parts,
    body: Body,
    expected: Option<&str>,
) -> Result<Body, Response> {
    let refused = || {
        page_error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form was not sent from a page of this hub, or the page is too old. \
             Go back, reload the page and try again.",
        )
    };
    let bytes = axum::body::to_bytes(body, auth.max_body_bytes)
        .await
        .map_err(|_| {
            page_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form is larger than this hub accepts.",
            )
        })?;
    let mut fields: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let from_header = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let from_form = fields
        .iter()
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.as_str());
    let sent = from_header.or(from_form);
    match (expected, sent) {
        (Some(expected), Some(sent))
            if token::constant_time_eq(expected.as_bytes(), sent.as_bytes()) => {}
        _ => return Err(refused()),
    }
    if from_form.is_none() {
        return Ok(Body::from(bytes));
    }
    fields.retain(|(k, _)| k != CSRF_FIELD);
    Ok(Body::from(
        serde_urlencoded::to_string(&fields).unwrap_or_default(),
    ))
}

/// The middleware. `rule` is fixed per route; the [`Auth`] comes from the
/// request's extensions (installed on the whole router).
pub async fn guard(rule: Rule, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Some(auth) = parts.extensions.get::<Arc<Auth>>().cloned() else {
        tracing::error!("a route was served without the authentication layer");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let client = super::client::resolve(&parts, &auth.settings.trusted_proxies, auth.settings.tls);
    let writes = !is_safe(&parts.method);

    if !auth.required() && auth.settings.loopback && !names_loopback(&parts) {
        return refuse(
            rule,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "Refused",
            "this hub runs without authentication for this machine only: address it as \
             127.0.0.1, [::1] or localhost",
        );
    }

    if (writes || opens_a_stream(&parts)) && cross_origin(&parts, &client) {
        return refuse(
            rule,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "Refused",
            "cross-origin request refused: writes and live streams are accepted only from \
             this hub's own pages",
        );
    }

    if let Some(bucket) = rule.bucket {
        if let Err(wait) = auth.limiters.check(bucket, client.ip) {
            let secs = limit::retry_after_secs(wait);
            let text = format!("too many requests; try again in {secs} s");
            let mut response = refuse(
                rule,
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                "Slow down",
                &text,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return response;
        }
    }

    let principal = match identify(&auth, &parts, &client).await {
        Ok(p) => p,
        Err(()) if rule.access == Access::Public => None,
        Err(()) => {
            let mut response = api_error(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "the bearer token is not valid: it is unknown, expired or revoked",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"lookout\", error=\"invalid_token\""),
            );
            return response;
        }
    };

    match (rule.access, &principal) {
        (Access::Public, _) => {}
        (_, None) => return unauthenticated(&auth, rule, &parts).await,
        (access, Some(p)) if p.scope == TokenScope::Heartbeat && access != Access::Heartbeat => {
            return refuse(
                rule,
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "Not allowed",
                "this token may only send heartbeats (POST /register, /refresh/{name}, \
                 /refresh_all)",
            );
        }
        (Access::Admin | Access::Heartbeat, Some(p)) if !p.is_admin() => {
            return refuse(
                rule,
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "Not allowed",
                "this account may only look: changes need an admin",
            );
        }
        _ => {}
    }

    // Browsers get a CSRF token the first time they load a page; every form
    // they post carries it back.
    let existing = cookie(&parts.headers, csrf_cookie(client.https)).map(str::to_owned);
    let fresh = existing.is_none().then(token::random_hex);
    let csrf = existing.clone().or(fresh.clone()).unwrap_or_default();
    let body = if rule.page && writes {
        match check_csrf(&auth, &parts, body, existing.as_deref()).await {
            Ok(body) => body,
            Err(refused) => return refused,
        }
    } else {
        body
    };

    let context = PageContext {
        auth: auth.required(),
        user: principal
            .as_ref()
            .filter(|p| p.user_id.is_some())
            .map(|p| p.username.clone()),
        admin: principal.as_ref().is_some_and(Principal::is_admin),
        csrf: csrf.clone(),
        systemd: parts.extensions.get::<HostSystemd>().is_some_and(|h| h.0),
    };
    parts.extensions.insert(CsrfToken(csrf));
    parts.extensions.insert(client.clone());
    if let Some(p) = principal {
        parts.extensions.insert(p);
    }
    let run = next.run(Request::from_parts(parts, body));
    let mut response = if rule.page {
        PAGE.scope(context, run).await
    } else {
        run.await
    };
    if let (Some(fresh), true) = (fresh, rule.page) {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(
                csrf_cookie(client.https),
                &fresh,
                client.https,
                Some(auth.settings.session_ttl),
            ),
        );
    }
    response
}

/// A handler's view of its caller (`Caller(who): Caller`). Every route is
/// guarded, so this is always there; on a public route without a credential
/// it is absent and the extractor refuses.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                api_error(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "sign in first",
                )
            })
    }
}

/// A handler's view of the client (`Remote(client): Remote`), as the guard
/// worked it out.
pub struct Remote(pub Client);

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Remote(parts.extensions.get::<Client>().cloned().unwrap_or(
            Client {
                ip: std::net::IpAddr::from([0, 0, 0, 0]),
                https: false,
                host: None,
            },
        )))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<CsrfToken>()
            .cloned()
            .unwrap_or(CsrfToken(String::new())))
    }
}

/// The caller if one was identified (on public routes there may be none).
#[derive(Debug, Clone)]
pub struct MaybePrincipal(pub Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for MaybePrincipal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybePrincipal(parts.extensions.get::<Principal>().cloned()))
    }
}
