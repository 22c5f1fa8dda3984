//! Account pages: first-run setup, login, logout, the user's own account and
//! API tokens, user administration and the audit log.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use lookout_proto::FieldError;

use super::extract::PathId;
use super::table::Routes;
use super::ui::{bad_form, message, render, stamp, store_failure, FormResult, Page};
use super::AppState;
use crate::auth::guard::{cookie, session_cookie, set_cookie, MaybePrincipal};
use crate::auth::guard::{Caller, Remote};
use crate::auth::{Access, Bucket, Client, Principal, UserRequest};
use crate::store::accounts::{AuditOutcome, CredentialKind, DeleteUser, Role, TokenScope, User};
use crate::store::StoreError;

pub fn routes(r: Routes) -> Routes {
    r.get("/login", Access::Public, login_page)
        .limited(
            Method::POST,
            "/login",
            Access::Public,
            Bucket::Login,
            login_submit,
        )
        .get("/login/code", Access::Public, code_page)
        .limited(
            Method::POST,
            "/login/code",
            Access::Public,
            Bucket::Login,
            code_submit,
        )
        .post("/logout", Access::Public, logout)
        .get("/setup", Access::Public, setup_page)
        .limited(
            Method::POST,
            "/setup",
            Access::Public,
            Bucket::Login,
            setup_submit,
        )
        .get("/account", Access::Viewer, account_page)
        .get("/account/two-factor", Access::Viewer, two_factor_page)
        .limited(
            Method::POST,
            "/account/two-factor",
            Access::Viewer,
            Bucket::Login,
            two_factor_on,
        )
        .limited(
            Method::POST,
            "/account/two-factor/off",
            Access::Viewer,
            Bucket::Login,
            two_factor_off,
        )
        .post("/account/tokens", Access::Viewer, create_token)
        .post("/account/tokens/{id}/revoke", Access::Viewer, revoke_token)
        .get("/users", Access::Admin, users_page)
        .post("/users", Access::Admin, add_user)
        .post("/users/{id}/delete", Access::Admin, delete_user)
        .post("/users/registration", Access::Admin, toggle_registration)
        .get("/audit", Access::Admin, audit_page)
}

/// Only a path on this hub may follow a login (no open redirect).
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n
                    .chars()
                    .any(|c| c == '\\' || c.is_control() || c.is_whitespace()) =>
        {
            n.clone()
        }
        _ => "/".into(),
    }
}

// ---- Login and logout ----------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    username: String,
    next: String,
}

async fn login_page(
    State(state): State<AppState>,
    MaybePrincipal(who): MaybePrincipal,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let next = safe_next(q.get("next"));
    if !state.auth.required() || who.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    if state.store.count_users().await? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    Ok(render(
        StatusCode::OK,
        &LoginPage {
            error: None,
            username: String::new(),
            next,
        },
    ))
}

/// A signed-in browser: a session, its cookie and a redirect.
async fn sign_in(state: &AppState, user: &User, client: &Client, next: &str) -> Page {
    let secret = state.auth.start_session(user).await?;
    state
        .auth
        .audit(
            Some(&user.username),
            "login",
            Some("session".into()),
            client,
            AuditOutcome::Ok,
        )
        .await;
    let cookie = set_cookie(
        session_cookie(client.https),
        &secret,
        client.https,
        Some(state.auth.settings.session_ttl),
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response())
}

async fn login_submit(
    State(state): State<AppState>,
    Remote(client): Remote,
    form: FormResult,
) -> Response {
    let form = match form {
        Ok(f) => f.0,
        Err(e) => return bad_form(&e),
    };
    let username = form.get("username").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let next = safe_next(form.get("next"));
    match state.auth.check_password(&username, &password).await {
        Ok(Some(user)) if user.two_factor() => challenge(&state, &user, &client, &next)
            .await
            .into_response(),
        Ok(Some(user)) if state.auth.must_set_up_two_factor(&user) => {
            sign_in(&state, &user, &client, "/account/two-factor")
                .await
                .into_response()
        }
        Ok(Some(user)) => sign_in(&state, &user, &client, &next).await.into_response(),
        Ok(None) => {
            state
                .auth
                .audit_failed_login(&username, Some("session".into()), &client)
                .await;
            render(
                StatusCode::UNAUTHORIZED,
                &LoginPage {
                    error: Some("Wrong username or password.".into()),
                    username,
                    next,
                },
            )
        }
        Err(e) => hashing_failure(e),
    }
}

// ---- The second factor -----------------------------------------------------------

/// The cookie of a password sign-in waiting for its code.
fn challenge_cookie(https: bool) -> &'static str {
    if https {
        "__Host-lookout_challenge"
    } else {
        "lookout_challenge"
    }
}

/// The right password of an account with two-factor sign-in: a challenge
/// cookie, and on to the code page.
async fn challenge(state: &AppState, user: &User, client: &Client, next: &str) -> Page {
    let challenge = state.auth.start_challenge(user).await?;
    let cookie = set_cookie(
        challenge_cookie(client.https),
        &challenge,
        client.https,
        Some(crate::auth::Auth::CHALLENGE_TTL),
    );
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Ok((
        [(header::SET_COOKIE, cookie)],
        Redirect::to(&format!("/login/code?{query}")),
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "login_code.html")]
struct CodePage {
    error: Option<String>,
    next: String,
}

async fn code_page(
    Query(q): Query<HashMap<String, String>>,
    Remote(client): Remote,
    headers: axum::http::HeaderMap,
) -> Response {
    let next = safe_next(q.get("next"));
    if cookie(&headers, challenge_cookie(client.https)).is_none() {
        return Redirect::to("/login").into_response();
    }
    render(StatusCode::OK, &CodePage { error: None, next })
}

async fn code_submit(
    State(state): State<AppState>,
    Remote(client): Remote,
    headers: axum::http::HeaderMap,
    form: FormResult,
) -> Page {
    let form = match form {
        Ok(f) => f.0,
        Err(e) => return Ok(bad_form(&e)),
    };
    let next = safe_next(form.get("next"));
    let code = form.get("code").cloned().unwrap_or_default();
    let waiting = match cookie(&headers, challenge_cookie(client.https)) {
        Some(challenge) => state.auth.challenged(challenge).await,
        None => Ok(None),
    };
    let user = match waiting {
        Ok(Some(user)) => user,
        // Expired, replaced by a newer sign-in, or never started.
        Ok(None) => {
            return Ok(render(
                StatusCode::UNAUTHORIZED,
                &LoginPage {
                    error: Some("The sign-in took too long. Enter your password again.".into()),
                    username: String::new(),
                    next,
                },
            ))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(match state.auth.check_second_factor(&user, &code).await {
        Ok(true) => {
            state.store.set_login_challenge(user.id, None).await?;
            let mut response = sign_in(&state, &user, &client, &next).await?;
            let clear = set_cookie(challenge_cookie(client.https), "", client.https, None);
            response.headers_mut().append(header::SET_COOKIE, clear);
            response
        }
        Ok(false) => {
            state
                .auth
                .audit_denied(
                    &user.username,
                    "login",
                    Some("second factor".into()),
                    &client,
                )
                .await;
            render(
                StatusCode::UNAUTHORIZED,
                &CodePage {
                    error: Some(
                        "That code is wrong or already used. Wait for the next one and try again."
                            .into(),
                    ),
                    next,
                },
            )
        }
        Err(e) => store_failure(&e),
    })
}

#[derive(Template)]
#[template(path = "two_factor.html")]
struct TwoFactorPage {
    secret: String,
    /// The key in groups of four, to type by hand.
    secret_grouped: String,
    qr_svg: String,
    error: Option<String>,
    recovery_codes: Option<Vec<String>>,
    /// The hub requires it of this user (`--two-factor admins`).
    required: bool,
}

/// The QR code of an `otpauth://` URL, as an SVG drawing.
fn qr_svg(url: &str) -> String {
    match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

fn enrol_page(
    who: &Principal,
    required: bool,
    status: StatusCode,
    secret: String,
    error: Option<String>,
) -> Response {
    let url = crate::auth::totp::otpauth_url(&secret, &who.username).unwrap_or_default();
    render(
        status,
        &TwoFactorPage {
            qr_svg: qr_svg(&url),
            secret_grouped: grouped(&secret),
            secret,
            error,
            recovery_codes: None,
            required,
        },
    )
}

/// `ABCDEFGH…` as `ABCD EFGH …`.
fn grouped(key: &str) -> String {
    key.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The signed-in user's account as stored.
async fn account_user(state: &AppState, who: &Principal) -> Result<User, Response> {
    let Some(user_id) = who.user_id else {
        return Err(auth_off_page());
    };
    match state.store.get_user(user_id).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(store_failure(&e)),
    }
}

async fn two_factor_page(State(state): State<AppState>, Caller(who): Caller) -> Response {
    let user = match account_user(&state, &who).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if user.two_factor() {
        return Redirect::to("/account#two-factor").into_response();
    }
    let required = state.auth.must_set_up_two_factor(&user);
    enrol_page(
        &who,
        required,
        StatusCode::OK,
        crate::auth::totp::new_secret(),
        None,
    )
}

async fn two_factor_on(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    form: FormResult,
) -> Page {
    let form = match form {
        Ok(f) => f.0,
        Err(e) => return Ok(bad_form(&e)),
    };
    let user = match account_user(&state, &who).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    if user.two_factor() {
        return Ok(Redirect::to("/account#two-factor").into_response());
    }
    let required = state.auth.must_set_up_two_factor(&user);
    let secret = form.get("secret").cloned().unwrap_or_default();
    if totp_rs_secret_ok(&secret).is_none() {
        return Ok(enrol_page(
            &who,
            required,
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::auth::totp::new_secret(),
            Some("The key was changed on its way. Scan this new code.".into()),
        ));
    }
    let code = form.get("code").cloned().unwrap_or_default();
    Ok(
        match state.auth.enable_two_factor(&user, &secret, &code).await {
            Ok(Some(codes)) => {
                state
                    .auth
                    .audit_ok(&who, "user.2fa.on", Some(user.username.clone()), &client)
                    .await;
                let mut response = render(
                    StatusCode::OK,
                    &TwoFactorPage {
                        secret: String::new(),
                        secret_grouped: String::new(),
                        qr_svg: String::new(),
                        error: None,
                        recovery_codes: Some(codes),
                        required: false,
                    },
                );
                if required {
                    // The viewer's session they had meanwhile becomes an
                    // admin's.
                    let cookie = upgraded_session(&state, &user, &who, &client).await?;
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
                response
            }
            Ok(None) => enrol_page(
                &who,
                required,
                StatusCode::UNPROCESSABLE_ENTITY,
                secret,
                Some("That code is not the app's code now. Check the app and try again.".into()),
            ),
            Err(e) => store_failure(&e),
        },
    )
}

/// A new session with the user's full role, in place of `who`'s.
async fn upgraded_session(
    state: &AppState,
    user: &User,
    who: &Principal,
    client: &Client,
) -> Result<axum::http::HeaderValue, StoreError> {
    let user = state.store.get_user(user.id).await?.unwrap_or(user.clone());
    let secret = state.auth.start_session(&user).await?;
    if let Some(old) = &who.credential {
        state
            .store
            .revoke_credential(old.id, None, state.clock.now())
            .await?;
    }
    Ok(set_cookie(
        session_cookie(client.https),
        &secret,
        client.https,
        Some(state.auth.settings.session_ttl),
    ))
}

/// A key the enrolment form sent back: base32 of 16 to 64 bytes.
fn totp_rs_secret_ok(secret: &str) -> Option<()> {
    let ok = (26..=104).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    ok.then_some(())
}

async fn two_factor_off(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    form: FormResult,
) -> Page {
    let form = match form {
        Ok(f) => f.0,
        Err(e) => return Ok(bad_form(&e)),
    };
    let user = match account_user(&state, &who).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    let code = form.get("code").cloned().unwrap_or_default();
    Ok(match state.auth.check_second_factor(&user, &code).await {
        Ok(true) => {
            state.store.set_two_factor(user.id, None, &[]).await?;
            state
                .auth
                .audit_ok(&who, "user.2fa.off", Some(user.username.clone()), &client)
                .await;
            Redirect::to("/account#two-factor").into_response()
        }
        Ok(false) => {
            state
                .auth
                .audit_denied(
                    &user.username,
                    "user.2fa.off",
                    Some(user.username.clone()),
                    &client,
                )
                .await;
            render_account(
                &state,
                &who,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some("That code is wrong or already used: two-factor sign-in stays on.".into()),
            )
            .await?
        }
        Err(e) => store_failure(&e),
    })
}

/// A password could not be hashed or checked: too many at once (503, try
/// again in a second), or the database failed.
fn hashing_failure(e: anyhow::Error) -> Response {
    if e.is::<crate::auth::password::Busy>() {
        let mut response = super::ui::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "Too many people are signing in at once. Try again in a second.",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return response;
    }
    match e.downcast::<StoreError>() {
        Ok(e) => store_failure(&e),
        Err(e) => {
            tracing::error!(error = ?e, "a password could not be checked");
            super::ui::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "lookout could not check the password. The hub's log has the details.",
            )
        }
    }
}

async fn logout(
    State(state): State<AppState>,
    MaybePrincipal(who): MaybePrincipal,
    Remote(client): Remote,
) -> Page {
    if let Some(who) = &who {
        if let Some(c) = who
            .credential
            .as_ref()
            .filter(|c| c.kind == CredentialKind::Session)
        {
            state
                .store
                .revoke_credential(c.id, None, state.clock.now())
                .await?;
            state
                .auth
                .audit_ok(who, "logout", Some("session".into()), &client)
                .await;
        }
    }
    let clear = set_cookie(session_cookie(client.https), "", client.https, None);
    // Signed in by a proxy: its own logout ends the sign-in.
    let proxy_logout = state
        .auth
        .settings
        .forward
        .as_ref()
        .and_then(|f| f.logout_url.as_deref())
        .filter(|_| who.as_ref().is_some_and(|w| w.credential.is_none()));
    let to = match proxy_logout {
        Some(url) => url,
        None if state.auth.required() => "/login",
        None => "/",
    };
    Ok(
        // The app's offline copies of pages (and its service worker) go with
        // the session: a shared device keeps nothing of the last person's.
        (
            [
                (header::SET_COOKIE, clear),
                (
                    header::HeaderName::from_static("clear-site-data"),
                    axum::http::HeaderValue::from_static("\"cache\", \"storage\""),
                ),
            ],
            Redirect::to(to),
        )
            .into_response(),
    )
}

// ---- First run -----------------------------------------------------------------

/// A text input of the account forms.
struct Field {
    key: &'static str,
    label: &'static str,
    kind: &'static str,
    autocomplete: &'static str,
    value: String,
    error: Option<String>,
}

fn account_fields(
    values: &HashMap<String, String>,
    errors: &[FieldError],
    confirm: bool,
) -> Vec<Field> {
    let mut specs = vec![
        ("username", "Username", "text", "username"),
        ("email", "E-mail (optional)", "email", "email"),
        (
            "password",
            "Password (at least 8 characters)",
            "password",
            "new-password",
        ),
    ];
    if confirm {
        specs.push(("confirm", "Password again", "password", "new-password"));
    }
    specs
        .into_iter()
        .map(|(key, label, kind, autocomplete)| Field {
            key,
            label,
            kind,
            autocomplete,
            // Passwords are never sent back to the browser.
            value: if kind == "password" {
                String::new()
            } else {
                values.get(key).cloned().unwrap_or_default()
            },
            error: errors
                .iter()
                .find(|e| e.field == key)
                .map(|e| e.message.clone()),
        })
        .collect()
}

fn summary(errors: &[FieldError]) -> String {
    match errors.len() {
        0 => String::new(),
        1 => "Please correct the field marked below.".into(),
        n => format!("Please correct the {n} fields marked below."),
    }
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    fields: Vec<Field>,
    errors_summary: String,
}

fn setup_form(
    status: StatusCode,
    values: &HashMap<String, String>,
    errors: &[FieldError],
) -> Response {
    render(
        status,
        &SetupPage {
            fields: account_fields(values, errors, true),
            errors_summary: summary(errors),
        },
    )
}

async fn setup_page(State(state): State<AppState>) -> Response {
    match state.store.count_users().await {
        Ok(0) => setup_form(StatusCode::OK, &HashMap::new(), &[]),
        Ok(_) => Redirect::to("/login").into_response(),
        Err(e) => store_failure(&e),
    }
}

/// What a person typed, as an account request, and everything wrong with it.
fn user_request(
    form: &HashMap<String, String>,
    role: Role,
    confirm: bool,
) -> (UserRequest, Vec<FieldError>) {
    let request = UserRequest {
        username: form
            .get("username")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        email: form
            .get("email")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        password: form.get("password").cloned().unwrap_or_default(),
        role,
    };
    let mut problems = request.problems();
    if confirm && form.get("confirm") != form.get("password") {
        problems.push(FieldError::new("confirm", "does not match the password"));
    }
    (request, problems)
}

async fn setup_submit(
    State(state): State<AppState>,
    Remote(client): Remote,
    form: FormResult,
) -> Page {
    let form = match form {
        Ok(f) => f.0,
        Err(e) => return Ok(bad_form(&e)),
    };
    // Set up already: nothing to hash (hashing is what a flood would cost).
    if state.store.count_users().await? > 0 {
        return Ok(Redirect::to("/login").into_response());
    }
    let (request, problems) = user_request(&form, Role::Admin, true);
    if !problems.is_empty() {
        return Ok(setup_form(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form,
            &problems,
        ));
    }
    let new = match request.into_new_user().await {
        Ok(n) => n,
        Err(e) => return Ok(hashing_failure(e)),
    };
    Ok(
        match state.store.create_first_user(&new, state.clock.now()).await {
            Ok(Some(user)) => {
                state
                    .auth
                    .audit(
                        Some(&user.username),
                        "user.setup",
                        Some(user.username.clone()),
                        &client,
                        AuditOutcome::Ok,
                    )
                    .await;
                sign_in(&state, &user, &client, "/").await?
            }
            // Someone else finished the setup first.
            Ok(None) => Redirect::to("/login").into_response(),
            Err(e) => store_failure(&e),
        },
    )
}

// ---- The user's own account ------------------------------------------------------

struct TokenRow {
    id: i64,
    name: String,
    role: &'static str,
    created: String,
    expires: String,
    last_used: String,
}

struct NewToken {
    name: String,
    token: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    username: String,
    role: &'static str,
    admin: bool,
    tokens: Vec<TokenRow>,
    new_token: Option<NewToken>,
    error: Option<String>,
    two_factor: bool,
    recovery_left: usize,
    devices: super::devices::Devices,
}

fn auth_off_page() -> Response {
    message(
        StatusCode::OK,
        "Authentication is off",
        "This hub runs without accounts (--auth off): there is nobody to sign in as and no token \
         is needed. Start it with --auth required to use accounts and API tokens.",
    )
}

async fn render_account(
    state: &AppState,
    who: &Principal,
    status: StatusCode,
    new_token: Option<NewToken>,
    error: Option<String>,
) -> Page {
    let user = match account_user(state, who).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    let user_id = user.id;
    let tokens = state
        .store
        .list_credentials(Some(user_id), CredentialKind::Api, state.clock.now())
        .await?;
    let tokens = tokens
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name.unwrap_or_default(),
            role: match t.scope {
                TokenScope::Heartbeat => "heartbeats only",
                TokenScope::All => t.role.as_str(),
            },
            created: stamp(t.created_at),
            expires: t.expires_at.map_or_else(|| "never".into(), stamp),
            last_used: t.last_used_at.map_or_else(|| "never".into(), stamp),
        })
        .collect();
    Ok(render(
        status,
        &AccountPage {
            username: who.username.clone(),
            role: who.role.as_str(),
            admin: who.is_admin(),
            tokens,
            new_token,
            error,
            two_factor: user.two_factor(),
            recovery_left: user.recovery_codes.len(),
            devices: super::devices::Devices::of(state, who, "/account").await,
        },
    ))
}

async fn account_page(State(state): State<AppState>, Caller(who): Caller) -> Page {
    render_account(&state, &who, StatusCode::OK, None, None).await
}

async fn create_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    form: FormResult,
) -> Page {
    let form = match form {
        Ok(f) => f.0,
        Err(e) => return Ok(bad_form(&e)),
    };
    if who.user_id.is_none() {
        return Ok(auth_off_page());
    }
    let name = form
        .get("name")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    // One choice on the page: what the token may do.
    let (role, scope) = match form.get("role").map(String::as_str) {
        Some("heartbeat") => (Role::Admin, TokenScope::Heartbeat),
        r => (
            r.and_then(Role::parse).unwrap_or(Role::Viewer),
            TokenScope::All,
        ),
    };
    let days = form
        .get("expires_in_days")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty());
    let error = if name.is_empty() || name.chars().count() > 100 {
        Some("Give the token a name of 1 to 100 characters.".to_owned())
    } else if role > who.role {
        Some("A token cannot have more rights than its owner.".to_owned())
    } else if days.is_some_and(|d| {
        d.parse::<u64>()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .is_none()
    }) {
        Some("Expiry must be a whole number of days from 1 to 3650, or empty.".to_owned())
    } else {
        None
    };
    if error.is_some() {
        return render_account(&state, &who, StatusCode::UNPROCESSABLE_ENTITY, None, error).await;
    }
    let ttl = days
        .and_then(|d| d.parse::<u64>().ok())
        .map(|d| std::time::Duration::from_secs(d * 86_400));
    Ok(
        match state
            .auth
            .create_api_token(&who, &name, role, scope, ttl)
            .await
        {
            Ok((_, token)) => {
                state
                    .auth
                    .audit_ok(&who, "token.create", Some(name.clone()), &client)
                    .await;
                render_account(
                    &state,
                    &who,
                    StatusCode::CREATED,
                    Some(NewToken { name, token }),
                    None,
                )
                .await?
            }
            Err(e) => store_failure(&e),
        },
    )
}

async fn revoke_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
) -> Response {
    let Some(user_id) = who.user_id else {
        return auth_off_page();
    };
    match state
        .store
        .revoke_credential(id, Some(user_id), state.clock.now())
        .await
    {
        Ok(true) => {
            state
                .auth
                .audit_ok(&who, "token.revoke", Some(id.to_string()), &client)
                .await;
            Redirect::to("/account").into_response()
        }
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            "No such token",
            "This token does not exist or is not yours.",
        ),
        Err(e) => store_failure(&e),
    }
}

// ---- User administration -----------------------------------------------------------

struct UserRow {
    id: i64,
    username: String,
    email: String,
    role: &'static str,
    created: String,
    two_factor: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    users: Vec<UserRow>,
    fields: Vec<Field>,
    errors_summary: String,
    open_registration: bool,
}

async fn render_users(
    state: &AppState,
    status: StatusCode,
    values: &HashMap<String, String>,
    errors: &[FieldError],
) -> Page {
    let (users, open) = tokio::try_join!(
        state.store.list_users(),
        crate::auth::registration_open(state.store.as_ref())
    )?;
    let users = users
        .into_iter()
        .map(|u| UserRow {
            two_factor: u.two_factor(),
            id: u.id,
            username: u.username,
            email: u.email.unwrap_or_default(),
            role: u.role.as_str(),
            created: stamp(u.created_at),
        })
        .collect();
    Ok(render(
        status,
        &UsersPage {
            users,
            fields: account_fields(values, errors, false),
            errors_summary: summary(errors),
            open_registration: open,
        },
    ))
}

async fn users_page(State(state): State<AppState>) -> Page {
    render_users(&state, StatusCode::OK, &HashMap::new(), &[]).await
}

async fn add_user(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    form: FormResult,
) -> Page {
    let form = match form {
        Ok(f) => f.0,
        Err(e) => return Ok(bad_form(&e)),
    };
    let role = form
        .get("role")
        .and_then(|r| Role::parse(r))
        .unwrap_or(Role::Viewer);
    let (request, problems) = user_request(&form, role, false);
    if !problems.is_empty() {
        return render_users(&state, StatusCode::UNPROCESSABLE_ENTITY, &form, &problems).await;
    }
    let new = match request.into_new_user().await {
        Ok(n) => n,
        Err(e) => return Ok(hashing_failure(e)),
    };
    Ok(
        match state.store.create_user(&new, state.clock.now()).await {
            Ok(user) => {
                state
                    .auth
                    .audit_ok(&who, "user.create", Some(user.username), &client)
                    .await;
                Redirect::to("/users").into_response()
            }
            Err(StoreError::Conflict { field, value }) => {
                let problems = [FieldError::new(
                    field,
                    format!("{value:?} is already taken"),
                )];
                render_users(&state, StatusCode::CONFLICT, &form, &problems).await?
            }
            Err(e) => store_failure(&e),
        },
    )
}

async fn delete_user(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
) -> Page {
    let target = state.store.get_user(id).await?.map(|u| u.username);
    Ok(match state.store.delete_user(id).await {
        Ok(DeleteUser::Deleted) => {
            state
                .auth
                .audit_ok(&who, "user.delete", target, &client)
                .await;
            Redirect::to("/users").into_response()
        }
        Ok(DeleteUser::NotFound) => message(
            StatusCode::NOT_FOUND,
            "No such user",
            "This user does not exist.",
        ),
        Ok(DeleteUser::LastAdmin) => message(
            StatusCode::CONFLICT,
            "Last admin",
            "This is the only admin: make another user admin before deleting it.",
        ),
        Err(e) => store_failure(&e),
    })
}

async fn toggle_registration(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    form: FormResult,
) -> Page {
    let form = match form {
        Ok(f) => f.0,
        Err(e) => return Ok(bad_form(&e)),
    };
    let open = form.get("open").is_some_and(|v| v == "true");
    state
        .store
        .set_state(
            crate::auth::OPEN_REGISTRATION,
            if open { "true" } else { "false" },
        )
        .await?;
    state
        .auth
        .audit_ok(
            &who,
            "settings.registration",
            Some(if open { "open" } else { "closed" }.into()),
            &client,
        )
        .await;
    Ok(Redirect::to("/users").into_response())
}

// ---- Audit log -------------------------------------------------------------------

struct AuditRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    client: String,
    outcome: &'static str,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    entries: Vec<AuditRow>,
}

async fn audit_page(State(state): State<AppState>) -> Response {
    match state.store.list_audit(200).await {
        Ok(entries) => render(
            StatusCode::OK,
            &AuditPage {
                entries: entries
                    .into_iter()
                    .map(|e| AuditRow {
                        at: stamp(e.at),
                        actor: e.actor.unwrap_or_else(|| "-".into()),
                        action: e.action,
                        target: e.target.unwrap_or_default(),
                        client: e.client.unwrap_or_default(),
                        outcome: e.outcome.as_str(),
                    })
                    .collect(),
            },
        ),
        Err(e) => store_failure(&e),
    }
}
