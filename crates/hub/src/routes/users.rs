//! Accounts over the API: login, refresh, registration, users, personal API
//! tokens, the audit log and the registration switch.

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use lookout_proto::FieldError;
use serde_json::{json, Value};

use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{count_param, Body, PathId, QueryMap};
use super::table::Routes;
use super::AppState;
use crate::auth::guard::{Caller, Remote};
use crate::auth::{Access, Bucket, Principal, UserRequest};
use crate::error::ApiError;
use crate::openapi::{doc, Answer, Doc, Takes, LIMIT};
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
    .doc(Doc {
        body: Some("LoginRequest"),
        ..doc(
            "Log in: an access and a refresh token",
            "users",
            Answer::Object,
        )
    })
    .limited(
        Method::POST,
        "/v1/users/refresh",
        Access::Public,
        Bucket::Login,
        refresh,
    )
    .doc(Doc {
        body: Some("RefreshRequest"),
        ..doc("A new token pair", "users", Answer::Object)
    })
    .limited(
        Method::POST,
        "/v1/users/register",
        Access::Public,
        Bucket::Login,
        register,
    )
    .doc(Doc {
        body: Some("RegisterRequest"),
        ..doc("Create an account", "users", Answer::CreatedObject)
    })
    .post("/v1/users/logout", Access::Viewer, logout)
    .doc(doc("End this login", "users", Answer::Empty))
    .get("/v1/users/me", Access::Viewer, me)
    .doc(doc("Who is calling", "users", Answer::Object))
    .get("/v1/users/me/two-factor", Access::Viewer, two_factor_state)
    .doc(doc(
        "The caller's two-factor sign-in: enabled, recovery_codes_left, required",
        "users",
        Answer::Object,
    ))
    .post(
        "/v1/users/me/two-factor/key",
        Access::Viewer,
        two_factor_key,
    )
    .doc(doc(
        "A new key for an authenticator app: secret and otpauth_url (nothing is stored \
             until a code confirms it)",
        "users",
        Answer::Object,
    ))
    .limited(
        Method::POST,
        "/v1/users/me/two-factor",
        Access::Viewer,
        Bucket::Login,
        two_factor_on,
    )
    .doc(Doc {
        body: Some("TwoFactorOnRequest"),
        ..doc(
            "Turn two-factor sign-in on: the recovery codes, shown once",
            "users",
            Answer::CreatedObject,
        )
    })
    .limited(
        Method::POST,
        "/v1/users/me/two-factor/off",
        Access::Viewer,
        Bucket::Login,
        two_factor_off,
    )
    .doc(Doc {
        body: Some("TwoFactorOffRequest"),
        ..doc("Turn two-factor sign-in off", "users", Answer::Empty)
    })
    .get("/v1/users", Access::Admin, list_users)
    .doc(doc("Accounts", "users", Answer::Objects))
    .post("/v1/users", Access::Admin, create_user)
    .doc(Doc {
        body: Some("NewUserRequest"),
        ..doc("Add an account", "users", Answer::CreatedObject)
    })
    .delete("/v1/users/{id}", Access::Admin, delete_user)
    .doc(doc("Remove an account", "users", Answer::Empty))
    .get("/v1/tokens", Access::Viewer, list_tokens)
    .doc(Doc {
        query: &[(
            "all",
            Takes::Words(&["true", "false"]),
            "true: every user's tokens (admins)",
        )],
        ..doc("Personal API tokens", "users", Answer::Objects)
    })
    .post("/v1/tokens", Access::Viewer, create_token)
    .doc(Doc {
        body: Some("NewTokenRequest"),
        ..doc(
            "Create a personal API token (shown once)",
            "users",
            Answer::CreatedObject,
        )
    })
    .delete("/v1/tokens/{id}", Access::Viewer, revoke_token)
    .doc(doc("Revoke a token", "users", Answer::Empty))
    .get("/v1/audit", Access::Admin, audit_log)
    .doc(Doc {
        query: &[LIMIT],
        ..doc("Audit log", "users", Answer::Objects)
    })
    .get("/v1/settings", Access::Admin, get_settings)
    .doc(doc("Hub settings", "users", Answer::Object))
    .put("/v1/settings", Access::Admin, put_settings)
    .doc(Doc {
        body: Some("SettingsRequest"),
        ..doc("Change hub settings", "users", Answer::Object)
    })
}

/// A role field: `admin` or `viewer`.
/// `POST /api/v1/users/login`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's username (or give `email`). Whatever is typed is
    /// answered 401 when it names no account.
    #[schema(min_length = 1)]
    username: Option<String>,
    /// The account's e-mail address, instead of `username`.
    #[schema(min_length = 1)]
    email: Option<String>,
    #[schema(min_length = 1)]
    password: String,
    /// The authenticator app's 6-digit code, or a recovery code, for an
    /// account with two-factor sign-in.
    #[schema(max_length = 64)]
    code: Option<String>,
}

/// `POST /api/v1/users/refresh`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(min_length = 1, max_length = 256)]
    refresh_token: String,
}

/// `POST /api/v1/users/register` (while self-registration is open).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// An e-mail address such as ada@example.org.
    #[schema(min_length = 3, max_length = 254)]
    email: String,
    /// 1 to 64 letters, digits and . _ @ - (default: the e-mail address).
    #[schema(min_length = 1, max_length = 64)]
    username: Option<String>,
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// `POST /api/v1/users`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    /// 1 to 64 letters, digits and . _ @ -.
    #[schema(min_length = 1, max_length = 64)]
    username: String,
    #[schema(max_length = 254)]
    email: Option<String>,
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
    /// viewer when left out.
    role: Option<Role>,
}

/// `POST /api/v1/tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// At most the caller's own role (the default).
    role: Option<Role>,
    /// all when left out; a heartbeat token needs the admin role.
    scope: Option<TokenScope>,
    /// Days until it expires (never when left out).
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u64>,
}

/// `PUT /api/v1/settings`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    /// Whether anyone may create an account (as a viewer).
    open_registration: Option<bool>,
}

/// `POST /api/v1/users/me/two-factor`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TwoFactorOnRequest {
    /// The key from `POST /api/v1/users/me/two-factor/key`.
    #[schema(min_length = 1, max_length = 128)]
    secret: String,
    /// The authenticator app's code for that key now.
    #[schema(min_length = 1, max_length = 64)]
    code: String,
}

/// `POST /api/v1/users/me/two-factor/off`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TwoFactorOffRequest {
    /// The app's code now, or a recovery code.
    #[schema(min_length = 1, max_length = 64)]
    code: String,
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
        // No account exists to act on: a 404, as for any route whose
        // feature this hub runs without.
        return Err(ApiError::NotFound(
            "authentication is off (--auth off): there is no account to protect".into(),
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
    Body(TwoFactorOnRequest { secret, code }): Body<TwoFactorOnRequest>,
) -> Result<impl IntoResponse, ApiError> {
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
    Body(TwoFactorOffRequest { code }): Body<TwoFactorOffRequest>,
) -> Result<StatusCode, ApiError> {
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
    Body(request): Body<LoginRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let LoginRequest {
        username,
        email,
        password,
        code,
    } = request;
    let Some(name) = username.or(email) else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "username",
            "username or email is required",
        )]));
    };
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
    Body(RefreshRequest {
        refresh_token: token,
    }): Body<RefreshRequest>,
) -> Result<impl IntoResponse, ApiError> {
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
    Body(request): Body<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if !crate::auth::registration_open(state.store.as_ref()).await? {
        return Err(ApiError::Forbidden(
            "registration is closed: an admin adds accounts, or opens registration in the settings"
                .into(),
        ));
    }
    let RegisterRequest {
        email,
        username,
        password,
    } = request;
    let request = UserRequest {
        username: username.unwrap_or_else(|| email.clone()),
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
    let mut me = json!({
        "username": who.username, "role": who.role,
        "auth": state.auth.settings.mode.as_str(),
        "credential": who.credential.as_ref().map(|c| c.kind),
    });
    // The account's id; with authentication off there is no account, and
    // no id (not a null one that reads as an id of nothing).
    if let (Some(id), Some(map)) = (who.user_id, me.as_object_mut()) {
        map.insert("id".into(), id.into());
    }
    Json(me)
}

async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    let users = state.store.list_users().await?;
    Ok(Json(users.iter().map(user_view).collect()))
}

async fn create_user(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    Body(request): Body<NewUserRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let user = add_user(
        &state,
        UserRequest {
            username: request.username,
            email: request.email.filter(|e| !e.is_empty()),
            password: request.password,
            role: request.role.unwrap_or(Role::Viewer),
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
    let all = match params.get("all").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "all is true or false".into(),
                vec![FieldError::new("all", "must be true or false")],
            ))
        }
    };
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
    Body(request): Body<NewTokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if who.user_id.is_none() {
        return Err(ApiError::NotFound(
            "authentication is off (--auth off): API tokens belong to accounts, and none is \
             needed"
                .into(),
        ));
    }
    let NewTokenRequest {
        name,
        role,
        scope,
        expires_in_days,
    } = request;
    let mut problems = Vec::new();
    let role = role.unwrap_or(who.role);
    if role > who.role {
        problems.push(FieldError::new("role", "cannot exceed your own role"));
    }
    let scope = scope.unwrap_or_default();
    if scope == TokenScope::Heartbeat && role < Role::Admin {
        problems.push(FieldError::new(
            "scope",
            "a heartbeat token registers services, so it needs the admin role",
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let days = expires_in_days.map(|d| std::time::Duration::from_secs(d * 86_400));
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
    Body(SettingsRequest { open_registration }): Body<SettingsRequest>,
) -> Result<Json<Value>, ApiError> {
    if let Some(open) = open_registration {
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
