//! Accounts over the API: login, refresh, registration, users, personal API
//! tokens, the audit log and the registration switch.

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use lookout_proto::FieldError;
use serde_json::{json, Value};

use super::extract::{count_param, Fields, JsonObject, PathId, QueryMap};
use super::table::Routes;
use super::AppState;
use crate::auth::guard::{Caller, Remote};
use crate::auth::{Access, Bucket, Principal, UserRequest};
use crate::error::ApiError;
use crate::store::accounts::{
    AuditOutcome, CredentialInfo, CredentialKind, DeleteUser, Role, TokenScope, User,
};

pub fn routes(r: Routes) -> Routes {
    r.limited(
        Method::POST,
        "/v1/users/login",
        Access::Public,
        Bucket::Login,
        login,
    )
    .limited(
        Method::POST,
        "/v1/users/refresh",
        Access::Public,
        Bucket::Login,
        refresh,
    )
    .limited(
        Method::POST,
        "/v1/users/register",
        Access::Public,
        Bucket::Login,
        register,
    )
    .post("/v1/users/logout", Access::Viewer, logout)
    .get("/v1/users/me", Access::Viewer, me)
    .get("/v1/users/me/two-factor", Access::Viewer, two_factor_state)
    .post(
        "/v1/users/me/two-factor/key",
        Access::Viewer,
        two_factor_key,
    )
    .limited(
        Method::POST,
        "/v1/users/me/two-factor",
        Access::Viewer,
        Bucket::Login,
        two_factor_on,
    )
    .limited(
        Method::POST,
        "/v1/users/me/two-factor/off",
        Access::Viewer,
        Bucket::Login,
        two_factor_off,
    )
    .get("/v1/users", Access::Admin, list_users)
    .post("/v1/users", Access::Admin, create_user)
    .delete("/v1/users/{id}", Access::Admin, delete_user)
    .get("/v1/tokens", Access::Viewer, list_tokens)
    .post("/v1/tokens", Access::Viewer, create_token)
    .delete("/v1/tokens/{id}", Access::Viewer, revoke_token)
    .get("/v1/audit", Access::Admin, audit_log)
    .get("/v1/settings", Access::Admin, get_settings)
    .put("/v1/settings", Access::Admin, put_settings)
}

/// A role field: `admin` or `viewer`.
fn role(f: &mut Fields<'_>, key: &str, default: Role) -> Role {
    match f.text(key) {
        None => default,
        Some(s) => Role::parse(&s).unwrap_or_else(|| {
            f.problems
                .push(FieldError::new(key, "must be admin or viewer"));
            default
        }),
    }
}

fn user_view(u: &User) -> Value {
    json!({
        "id": u.id, "username": u.username, "email": u.email, "role": u.role,
        "created_at": u.created_at, "two_factor": u.two_factor(),
    })
}

/// The caller's account as stored; refused with authentication off.
async fn caller_account(state: &AppState, who: &Principal) -> Result<User, ApiError> {
    let Some(id) = who.user_id else {
        return Err(ApiError::BadRequest(
            "authentication is off (--auth off): there is no account to protect".into(),
            vec![],
        ));
    };
    state
        .store
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("the account is gone".into()))
}

async fn two_factor_state(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<Value>, ApiError> {
    let user = caller_account(&state, &who).await?;
    Ok(Json(json!({
        "enabled": user.two_factor(),
        "recovery_codes_left": user.recovery_codes.len(),
        "required": state.auth.must_set_up_two_factor(&user),
    })))
}

/// A fresh key for an authenticator app; nothing is stored until a code
/// from the app confirms it.
async fn two_factor_key(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller_account(&state, &who).await?;
    let secret = crate::auth::totp::new_secret();
    let url = crate::auth::totp::otpauth_url(&secret, &user.username).unwrap_or_default();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "secret": secret, "otpauth_url": url })),
    ))
}

async fn two_factor_on(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let mut f = Fields::new(&body, &["secret", "code"]);
    let secret = f.required("secret");
    let code = f.required("code");
    f.finish()?;
    let user = caller_account(&state, &who).await?;
    if user.two_factor() {
        return Err(ApiError::Conflict(FieldError::new(
            "secret",
            "two-factor sign-in is on already: turn it off first to use a new key",
        )));
    }
    if crate::auth::totp::code_at(&secret, 0).is_none() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "secret",
            "must be a base32 key from POST /api/v1/users/me/two-factor/key",
        )]));
    }
    match state.auth.enable_two_factor(&user, &secret, &code).await? {
        Some(codes) => {
            state
                .auth
                .audit_ok(&who, "user.2fa.on", Some(user.username.clone()), &client)
                .await;
            Ok((
                StatusCode::CREATED,
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({ "recovery_codes": codes })),
            ))
        }
        None => Err(ApiError::Validation(vec![FieldError::new(
            "code",
            "is not the authenticator app's code for this key now",
        )])),
    }
}

async fn two_factor_off(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    JsonObject(body): JsonObject,
) -> Result<StatusCode, ApiError> {
    let mut f = Fields::new(&body, &["code"]);
    let code = f.required("code");
    f.finish()?;
    let user = caller_account(&state, &who).await?;
    if !user.two_factor() {
        return Err(ApiError::Conflict(FieldError::new(
            "code",
            "two-factor sign-in is off already",
        )));
    }
    if !state.auth.check_second_factor(&user, &code).await? {
        state
            .auth
            .audit_denied(
                &user.username,
                "user.2fa.off",
                Some(user.username.clone()),
                &client,
            )
            .await;
        return Err(ApiError::Validation(vec![FieldError::new(
            "code",
            "is wrong or already used: two-factor sign-in stays on",
        )]));
    }
    state.store.set_two_factor(user.id, None, &[]).await?;
    state
        .auth
        .audit_ok(&who, "user.2fa.off", Some(user.username.clone()), &client)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

fn token_view(t: &CredentialInfo) -> Value {
    json!({
        "id": t.id, "user_id": t.user_id, "name": t.name, "role": t.role, "scope": t.scope,
        "created_at": t.created_at, "expires_at": t.expires_at, "last_used_at": t.last_used_at,
    })
}

async fn login(
    State(state): State<AppState>,
    Remote(client): Remote,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let mut f = Fields::new(&body, &["username", "email", "password", "code"]);
    let name = f.text("username").or_else(|| f.text("email"));
    let password = f.required("password");
    let code = f.text("code");
    if name.as_deref().is_none_or(str::is_empty) {
        f.problems
            .push(FieldError::new("username", "username or email is required"));
    }
    f.finish()?;
    let name = name.unwrap_or_default();
    let auth = &state.auth;
    let Some(user) = auth.check_password(&name, &password).await? else {
        auth.audit_failed_login(&name, None, &client).await;
        return Err(ApiError::Unauthorized("wrong username or password".into()));
    };
    if auth.must_set_up_two_factor(&user) {
        auth.audit_denied(
            &user.username,
            "login",
            Some("api, no second factor".into()),
            &client,
        )
        .await;
        return Err(ApiError::Forbidden(
            "this hub requires two-factor sign-in of admins: set it up on the Account page \
             first"
                .into(),
        ));
    }
    if user.two_factor() {
        let Some(code) = code else {
            return Err(ApiError::Unauthorized(
                "this account signs in with a second factor: send `code`, the 6-digit code of \
                 its authenticator app or one of its recovery codes (personal API tokens need \
                 none)"
                    .into(),
            ));
        };
        if !auth.check_second_factor(&user, &code).await? {
            auth.audit_denied(
                &user.username,
                "login",
                Some("api, second factor".into()),
                &client,
            )
            .await;
            return Err(ApiError::Unauthorized(
                "the code is wrong or already used".into(),
            ));
        }
    }
    let pair = auth.issue_pair(&user).await?;
    auth.audit(
        Some(&user.username),
        "login",
        Some("api".into()),
        &client,
        AuditOutcome::Ok,
    )
    .await;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(pair)))
}

async fn refresh(
    State(state): State<AppState>,
    Remote(client): Remote,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let mut f = Fields::new(&body, &["refresh_token"]);
    let token = f.required("refresh_token");
    f.finish()?;
    match state.auth.refresh(&token, &client).await? {
        Some(pair) => Ok(([(header::CACHE_CONTROL, "no-store")], Json(pair))),
        None => Err(ApiError::Unauthorized(
            "the refresh token is not valid: it is unknown, expired, revoked or already used"
                .into(),
        )),
    }
}

async fn register(
    State(state): State<AppState>,
    Remote(client): Remote,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    if !crate::auth::registration_open(state.store.as_ref()).await? {
        return Err(ApiError::Forbidden(
            "registration is closed: an admin adds accounts, or opens registration in the settings"
                .into(),
        ));
    }
    let mut f = Fields::new(&body, &["username", "email", "password"]);
    let email = f.required("email");
    let username = f.text("username").unwrap_or_else(|| email.clone());
    let password = f.required("password");
    f.finish()?;
    let request = UserRequest {
        username,
        email: Some(email),
        password,
        role: Role::Viewer,
    };
    let user = add_user(&state, request).await?;
    state
        .auth
        .audit(
            Some(&user.username),
            "user.register",
            None,
            &client,
            AuditOutcome::Ok,
        )
        .await;
    Ok((StatusCode::CREATED, Json(user_view(&user))))
}

/// Validates, hashes and stores a new account.
async fn add_user(state: &AppState, request: UserRequest) -> Result<User, ApiError> {
    let problems = request.problems();
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let new = request.into_new_user().await?;
    Ok(state.store.create_user(&new, state.clock.now()).await?)
}

async fn logout(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
) -> Result<StatusCode, ApiError> {
    if let Some(c) = &who.credential {
        state
            .store
            .revoke_family(&c.family, state.clock.now())
            .await?;
        state
            .auth
            .audit_ok(&who, "logout", Some(c.kind.as_str().into()), &client)
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, Caller(who): Caller) -> Json<Value> {
    Json(json!({
        "id": who.user_id, "username": who.username, "role": who.role,
        "auth": state.auth.settings.mode.as_str(),
        "credential": who.credential.as_ref().map(|c| c.kind),
    }))
}

async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    let users = state.store.list_users().await?;
    Ok(Json(users.iter().map(user_view).collect()))
}

async fn create_user(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let mut f = Fields::new(&body, &["username", "email", "password", "role"]);
    let username = f.required("username");
    let email = f.text("email").filter(|e| !e.is_empty());
    let password = f.required("password");
    let role = role(&mut f, "role", Role::Viewer);
    f.finish()?;
    let user = add_user(
        &state,
        UserRequest {
            username,
            email,
            password,
            role,
        },
    )
    .await?;
    state
        .auth
        .audit_ok(&who, "user.create", Some(user.username.clone()), &client)
        .await;
    let location = format!("/api/v1/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(user_view(&user)),
    ))
}

async fn delete_user(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    let target = state.store.get_user(id).await?.map(|u| u.username);
    match state.store.delete_user(id).await? {
        DeleteUser::Deleted => {
            state
                .auth
                .audit_ok(&who, "user.delete", target, &client)
                .await;
            Ok(StatusCode::NO_CONTENT)
        }
        DeleteUser::NotFound => Err(ApiError::NotFound(format!("no user with id {id}"))),
        DeleteUser::LastAdmin => Err(ApiError::Conflict(FieldError::new(
            "id",
            "is the last admin; make another admin first",
        ))),
    }
}

async fn list_tokens(
    State(state): State<AppState>,
    Caller(who): Caller,
    QueryMap(params): QueryMap,
) -> Result<Json<Vec<Value>>, ApiError> {
    let all = params.get("all").is_some_and(|v| v == "true");
    if all && !who.is_admin() {
        return Err(ApiError::Forbidden(
            "only an admin sees everyone's tokens".into(),
        ));
    }
    let owner = if all { None } else { who.user_id };
    if owner.is_none() && !all {
        return Ok(Json(vec![]));
    }
    let tokens = state
        .store
        .list_credentials(owner, CredentialKind::Api, state.clock.now())
        .await?;
    Ok(Json(tokens.iter().map(token_view).collect()))
}

async fn create_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    if who.user_id.is_none() {
        return Err(ApiError::BadRequest(
            "authentication is off: API tokens belong to accounts, and none is needed".into(),
            vec![],
        ));
    }
    let mut f = Fields::new(&body, &["name", "role", "scope", "expires_in_days"]);
    let name = f.required("name");
    if name.chars().count() > 100 {
        f.problems
            .push(FieldError::new("name", "must be at most 100 characters"));
    }
    let role = role(&mut f, "role", who.role);
    if role > who.role {
        f.problems
            .push(FieldError::new("role", "cannot exceed your own role"));
    }
    let scope = match f.text("scope") {
        None => TokenScope::All,
        Some(s) => match TokenScope::parse(&s) {
            Some(scope) => scope,
            None => {
                f.problems
                    .push(FieldError::new("scope", "must be all or heartbeat"));
                TokenScope::All
            }
        },
    };
    if scope == TokenScope::Heartbeat && role < Role::Admin {
        f.problems.push(FieldError::new(
            "scope",
            "a heartbeat token registers services, so it needs the admin role",
        ));
    }
    let days = match body.get("expires_in_days") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|d| (1..=3650).contains(d)) {
            Some(d) => Some(std::time::Duration::from_secs(d * 86_400)),
            None => {
                f.problems.push(FieldError::new(
                    "expires_in_days",
                    "must be a whole number of days from 1 to 3650",
                ));
                None
            }
        },
    };
    f.finish()?;
    let (id, token) = state
        .auth
        .create_api_token(&who, &name, role, scope, days)
        .await?;
    state
        .auth
        .audit_ok(&who, "token.create", Some(name.clone()), &client)
        .await;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "id": id, "name": name, "role": role.min(who.role), "scope": scope, "token": token,
        })),
    ))
}

async fn revoke_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    let owner = if who.is_admin() {
        None
    } else {
        who.user_id.or(Some(0))
    };
    if state
        .store
        .revoke_credential(id, owner, state.clock.now())
        .await?
    {
        state
            .auth
            .audit_ok(&who, "token.revoke", Some(id.to_string()), &client)
            .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no token with id {id} of yours"
        )))
    }
}

async fn audit_log(
    State(state): State<AppState>,
    QueryMap(params): QueryMap,
) -> Result<Json<Value>, ApiError> {
    let limit = count_param(&params, "limit", 100)?;
    Ok(Json(json!(state.store.list_audit(limit).await?)))
}

async fn get_settings(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({
        "auth": state.auth.settings.mode.as_str(),
        "open_registration": crate::auth::registration_open(state.store.as_ref()).await?,
    })))
}

async fn put_settings(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let f = Fields::new(&body, &["open_registration"]);
    let mut problems = f.problems;
    let open = match body.get("open_registration") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            problems.push(FieldError::new(
                "open_registration",
                "must be true or false",
            ));
            None
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    if let Some(open) = open {
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
    }
    get_settings(State(state)).await
}
