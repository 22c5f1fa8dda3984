//! Authentication and authorisation.
//!
//! Two modes: `off` (personal use on one machine: every request acts as the
//! local administrator) and `required` (every route but the login pages, the
//! static assets and push URLs needs a credential). Credentials are opaque
//! random tokens stored as SHA-256 hashes ([`token`]): browser sessions
//! (cookie), API access tokens (short-lived) with rotating refresh tokens, and
//! personal API tokens. An account may also sign in with a second factor
//! ([`totp`]): a code from an authenticator app, or a recovery code.
//! Every route declares who may call it
//! ([`Access`]) where it is registered (the web layer's route table); one
//! guard there enforces it, plus CSRF and cross-origin checks and rate limits.

pub mod limit;
pub mod password;
pub mod token;
pub mod totp;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::SharedClock;
use crate::store::accounts::{
    AuditOutcome, CredentialKind, NewAuditEntry, NewCredential, NewUser, Role, TokenScope, User,
};
use crate::store::{Store, StoreError};
pub use limit::{Bucket, RateLimits};

pub use lookout_config::{AuthMode, AuthSettings};

/// The client of one request (who it is is worked out by the web layer), as far as the hub can tell.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: IpAddr,
    /// The browser reached the hub over HTTPS (directly, or through a trusted proxy).
    pub https: bool,
    /// The host the browser asked for (`Host`, or `X-Forwarded-Host` from a trusted proxy).
    pub host: Option<String>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the login pages, static assets, push URLs (the token in the
    /// URL is the credential).
    Public,
    /// Any signed-in user, including viewers: reads, and a user's own account
    /// (their tokens, their logout).
    Viewer,
    /// Administrators: every write.
    Admin,
    /// Sending heartbeats (`/register`, `/refresh*`): an administrator, or a
    /// token scoped to heartbeats and nothing else.
    Heartbeat,
}

/// The caller of a request, once the guard has let it through.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `None`: authentication is off and this is the local operator.
    pub user_id: Option<i64>,
    pub username: String,
    pub role: Role,
    /// What the credential may be used for within `role`.
    pub scope: TokenScope,
    pub credential: Option<CredentialRef>,
}

/// The credential a request came with.
#[derive(Debug, Clone)]
pub struct CredentialRef {
    pub id: i64,
    pub kind: CredentialKind,
    pub family: String,
    /// The credential's stored hash (never the secret), so a long-lived
    /// request (a live stream) can ask whether it still holds.
    pub token_hash: String,
}

impl Principal {
    /// The operator of a hub without authentication.
    pub fn local() -> Self {
        Self {
            user_id: None,
            username: "local".into(),
            role: Role::Admin,
            scope: TokenScope::All,
            credential: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// A fresh API token pair.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Authentication at run time: settings, limiters, and the store and clock.
pub struct Auth {
    pub settings: AuthSettings,
    pub limiters: limit::Limiters,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    /// The largest form body the CSRF check reads.
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

impl Auth {
    pub fn new(
        settings: AuthSettings,
        store: Arc<dyn Store>,
        clock: SharedClock,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            limiters: limit::Limiters::new(settings.rate_limits),
            settings,
            store,
            clock,
            max_body_bytes,
        }
    }

    pub fn required(&self) -> bool {
        self.settings.mode == AuthMode::Required
    }

    /// The account `login` names, if `password` is its password. Takes the
    /// same time whether or not the account exists. Fails with
    /// [`password::Busy`] (inside the error) when too many passwords are
    /// being checked at once.
    pub async fn check_password(
        &self,
        login: &str,
        password: &str,
    ) -> anyhow::Result<Option<User>> {
        let user = self.store.find_user(login.trim()).await?;
        let ok = password::verify(
            password.to_owned(),
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await?;
        Ok(user.filter(|_| ok))
    }

    /// Issues an access and a refresh token for `user` (a new login family).
    pub async fn issue_pair(&self, user: &User) -> Result<TokenPair, StoreError> {
        let (pair, credentials) = self.new_pair(user.id, user.role, &token::random_hex());
        self.store
            .insert_credentials(&credentials, self.clock.now())
            .await?;
        Ok(pair)
    }

    /// A token pair and what to store of it.
    fn new_pair(&self, user_id: i64, role: Role, family: &str) -> (TokenPair, [NewCredential; 2]) {
        let now = self.clock.now();
        let access = token::generate(CredentialKind::Access);
        let refresh = token::generate(CredentialKind::Refresh);
        let credential = |kind, secret: &str, ttl| NewCredential {
            user_id,
            kind,
            token_hash: token::hash(secret),
            name: None,
            role,
            scope: TokenScope::All,
            family: family.to_owned(),
            expires_at: Some(expiry(now, ttl)),
        };
        let credentials = [
            credential(CredentialKind::Access, &access, self.settings.access_ttl),
            credential(CredentialKind::Refresh, &refresh, self.settings.refresh_ttl),
        ];
        (
            TokenPair {
                access_token: access,
                refresh_token: refresh,
                token_type: "Bearer",
                expires_in: self.settings.access_ttl.as_secs(),
            },
            credentials,
        )
    }

    /// Spends `refresh_token` for a new pair. A replayed token revokes its
    /// family and is audited.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client: &Client,
    ) -> Result<Option<TokenPair>, StoreError> {
        use crate::store::accounts::Refreshed;
        // User, role and family come from the spent token, in the store.
        let (pair, credentials) = self.new_pair(0, Role::Viewer, "");
        let outcome = self
            .store
            .rotate_refresh(&token::hash(refresh_token), &credentials, self.clock.now())
            .await?;
        match outcome {
            Refreshed::Rotated(_) => Ok(Some(pair)),
            Refreshed::Replayed { username } => {
                self.audit(
                    Some(&username),
                    "token.refresh_replayed",
                    None,
                    client,
                    AuditOutcome::Denied,
                )
                .await;
                Ok(None)
            }
            Refreshed::Invalid => Ok(None),
        }
    }

    /// Starts a browser session; returns the cookie's token.
    pub async fn start_session(&self, user: &User) -> Result<String, StoreError> {
        let now = self.clock.now();
        let secret = token::generate(CredentialKind::Session);
        // An admin who owes a second factor acts as a viewer meanwhile.
        let role = if self.must_set_up_two_factor(user) {
            Role::Viewer
        } else {
            user.role
        };
        self.store
            .insert_credentials(
                &[NewCredential {
                    user_id: user.id,
                    kind: CredentialKind::Session,
                    token_hash: token::hash(&secret),
                    name: None,
                    role,
                    scope: TokenScope::All,
                    family: token::random_hex(),
                    expires_at: Some(expiry(now, self.settings.session_ttl)),
                }],
                now,
            )
            .await?;
        Ok(secret)
    }

    /// The hub requires a second factor of `user` (`--two-factor admins`)
    /// and they have not set one up.
    pub fn must_set_up_two_factor(&self, user: &User) -> bool {
        self.settings.two_factor_admins && user.role == Role::Admin && !user.two_factor()
    }

    /// Creates a personal API token; returns its id and the token (shown once).
    pub async fn create_api_token(
        &self,
        owner: &Principal,
        name: &str,
        role: Role,
        scope: TokenScope,
        ttl: Option<Duration>,
    ) -> Result<(i64, String), StoreError> {
        let now = self.clock.now();
        let secret = token::generate(CredentialKind::Api);
        let ids = self
            .store
            .insert_credentials(
                &[NewCredential {
                    user_id: owner.user_id.unwrap_or_default(),
                    kind: CredentialKind::Api,
                    token_hash: token::hash(&secret),
                    name: Some(name.to_owned()),
                    role: role.min(owner.role),
                    scope,
                    family: token::random_hex(),
                    expires_at: ttl.map(|ttl| expiry(now, ttl)),
                }],
                now,
            )
            .await?;
        Ok((ids.first().copied().unwrap_or_default(), secret))
    }

    /// The holder of a token of one of `kinds`, if it is valid now.
    pub async fn principal_for(
        &self,
        secret: &str,
        kinds: &[CredentialKind],
    ) -> Result<Option<Principal>, StoreError> {
        let token_hash = token::hash(secret);
        let found = self
            .store
            .authenticate(&token_hash, kinds, self.clock.now())
            .await?;
        Ok(found.map(|a| Principal {
            user_id: Some(a.user_id),
            username: a.username,
            role: a.role,
            scope: a.scope,
            credential: Some(CredentialRef {
                id: a.credential_id,
                kind: a.kind,
                family: a.family,
                token_hash,
            }),
        }))
    }

    /// Whether the credential `who` came with still holds: not revoked (by
    /// a logout, its owner, a new password, the deletion of its user, on
    /// any hub of the database) nor expired. The local operator of a hub
    /// without sign-in always holds; so does a credential the database
    /// cannot be asked about right now.
    pub async fn still_holds(&self, who: &Principal) -> bool {
        let Some(c) = &who.credential else {
            return true;
        };
        match self
            .store
            .authenticate(&c.token_hash, &[c.kind], self.clock.now())
            .await
        {
            Ok(found) => found.is_some_and(|a| a.credential_id == c.id),
            Err(e) => {
                tracing::warn!(error = ?e, "cannot check a live stream's credential");
                true
            }
        }
    }

    // ---- Single sign-on through a reverse proxy --------------------------------

    /// The caller a trusted proxy names (`--forward-auth`): the account of
    /// that username, created on first sight if the settings allow, with
    /// the role its groups give. `None`: forward auth is off, or the user
    /// has no account and none may be made.
    pub async fn forwarded(
        &self,
        username: &str,
        email: Option<&str>,
        groups: &[&str],
    ) -> Result<Option<Principal>, StoreError> {
        let Some(forward) = &self.settings.forward else {
            return Ok(None);
        };
        let username = username.trim();
        let role = if groups
            .iter()
            .any(|g| forward.admin_groups.iter().any(|a| a == g.trim()))
        {
            Role::Admin
        } else {
            Role::Viewer
        };
        let found = self
            .store
            .find_user(username)
            .await?
            .filter(|u| u.username.eq_ignore_ascii_case(username));
        let user = match found {
            Some(user) => user,
            None if forward.create_accounts && check_username(username).is_ok() => {
                let email = email
                    .map(str::trim)
                    .filter(|e| !e.is_empty() && check_email(e).is_ok());
                let new = NewUser {
                    username: username.to_owned(),
                    email: email.map(str::to_owned),
                    // No password signs in as this account: the proxy does.
                    password_hash: FORWARDED_ONLY.into(),
                    role,
                };
                match self.store.create_user(&new, self.clock.now()).await {
                    Ok(user) => user,
                    // Made by a request a moment before, or its e-mail is
                    // another's sign-in name.
                    Err(StoreError::Conflict { .. }) => {
                        match self.store.find_user(username).await? {
                            Some(user) if user.username.eq_ignore_ascii_case(username) => user,
                            _ => return Ok(None),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            None => return Ok(None),
        };
        Ok(Some(Principal {
            user_id: Some(user.id),
            username: user.username,
            role,
            scope: TokenScope::All,
            credential: None,
        }))
    }

    // ---- Two-factor sign-in ----------------------------------------------------

    /// Whether `code` (from the user's authenticator app, or one of their
    /// recovery codes) is their second factor now. Each code is good once:
    /// the TOTP step or the recovery code is spent.
    pub async fn check_second_factor(&self, user: &User, code: &str) -> Result<bool, StoreError> {
        let Some(secret) = &user.totp_secret else {
            return Ok(false);
        };
        if totp::is_recovery_code(code) {
            return self
                .store
                .spend_recovery_code(user.id, &totp::recovery_hash(code))
                .await;
        }
        let now = u64::try_from(self.clock.now().timestamp()).unwrap_or(0);
        match totp::check(secret, code, now) {
            Some(step) => self.store.spend_totp_step(user.id, step).await,
            None => Ok(false),
        }
    }

    /// Turns two-factor sign-in on for `user` with `secret` (shown to them
    /// as a QR code), if `code` is the secret's code now: the code proves
    /// their app has it. The recovery codes, to show once; `None` for a
    /// wrong code.
    pub async fn enable_two_factor(
        &self,
        user: &User,
        secret: &str,
        code: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let now = u64::try_from(self.clock.now().timestamp()).unwrap_or(0);
        let Some(step) = totp::check(secret, code, now) else {
            return Ok(None);
        };
        let codes = totp::new_recovery_codes();
        let hashes: Vec<String> = codes.iter().map(|c| totp::recovery_hash(c)).collect();
        self.store
            .set_two_factor(user.id, Some(secret), &hashes)
            .await?;
        // The code that turned it on does not also sign in.
        self.store.spend_totp_step(user.id, step).await?;
        Ok(Some(codes))
    }

    /// How long a password sign-in waits for its second factor.
    pub const CHALLENGE_TTL: Duration = Duration::from_secs(300);

    /// Notes that `user` gave the right password and now owes a code: the
    /// challenge for the browser's cookie.
    pub async fn start_challenge(&self, user: &User) -> Result<String, StoreError> {
        let challenge = format!("lkc_{}", token::random_hex());
        let expires = expiry(self.clock.now(), Self::CHALLENGE_TTL);
        self.store
            .set_login_challenge(user.id, Some((&token::hash(&challenge), expires)))
            .await?;
        Ok(challenge)
    }

    /// The user a challenge is waiting for, unless it expired.
    pub async fn challenged(&self, challenge: &str) -> Result<Option<User>, StoreError> {
        self.store
            .challenged_user(&token::hash(challenge), self.clock.now())
            .await
    }

    /// Records that `who` did `action` successfully.
    pub async fn audit_ok(
        &self,
        who: &Principal,
        action: &'static str,
        target: Option<String>,
        client: &Client,
    ) {
        self.audit(
            Some(&who.username),
            action,
            target,
            client,
            AuditOutcome::Ok,
        )
        .await;
    }

    /// Records that `actor` was refused `action`.
    pub async fn audit_denied(
        &self,
        actor: &str,
        action: &'static str,
        target: Option<String>,
        client: &Client,
    ) {
        self.audit(Some(actor), action, target, client, AuditOutcome::Denied)
            .await;
    }

    /// Audits a refused sign-in without echoing what was typed (people type
    /// passwords into the name field): the account's own name when the typed
    /// name is one, else "unknown user".
    pub async fn audit_failed_login(&self, typed: &str, via: Option<String>, client: &Client) {
        let account = match self.store.find_user(typed.trim()).await {
            Ok(Some(user)) => user.username,
            Ok(None) | Err(_) => UNKNOWN_USER.to_owned(),
        };
        self.audit(Some(&account), "login", via, client, AuditOutcome::Denied)
            .await;
    }

    /// Appends to the audit log, each text cut to [`AUDIT_TEXT_MAX`]
    /// characters. A failure to write it is logged, not fatal.
    pub async fn audit(
        &self,
        actor: Option<&str>,
        action: &'static str,
        target: Option<String>,
        client: &Client,
        outcome: AuditOutcome,
    ) {
        let cut = |s: &str| s.chars().take(AUDIT_TEXT_MAX).collect::<String>();
        let entry = NewAuditEntry {
            actor: actor.map(cut),
            action,
            target: target.as_deref().map(cut),
            client: Some(client.ip.to_string()),
            outcome,
        };
        if let Err(e) = self.store.append_audit(&entry, self.clock.now()).await {
            tracing::warn!(error = ?e, action, "cannot write the audit log");
        }
    }
}

/// The password hash of an account made for a user a proxy named: no
/// password matches it (it is no PHC string).
pub const FORWARDED_ONLY: &str = "!signs in through the proxy";

/// The actor of a refused sign-in whose name is no account's. Not a valid
/// username (it has a space), so no account can be mistaken for it.
pub const UNKNOWN_USER: &str = "unknown user";

/// The longest actor or target the audit log keeps, in characters.
pub const AUDIT_TEXT_MAX: usize = 200;

/// Checks a username: 1 to 64 characters, letters, digits and `._@-`.
pub fn check_username(name: &str) -> Result<(), lookout_proto::error::Invalid> {
    if name.is_empty() || name.chars().count() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
    {
        return Err("may contain only letters, digits and . _ @ -".into());
    }
    Ok(())
}

/// Checks an e-mail address, loosely: something@something, at most 254 characters.
pub fn check_email(email: &str) -> Result<(), lookout_proto::error::Invalid> {
    let ok = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if ok {
        Ok(())
    } else {
        Err("must be an e-mail address such as ada@example.org".into())
    }
}

/// An account to create, as given by a person (API, form or CLI).
#[derive(Debug, Clone)]
pub struct UserRequest {
    pub username: String,
    pub email: Option<String>,
    pub password: String,
    pub role: Role,
}

impl UserRequest {
    /// Every problem with the request, by field.
    pub fn problems(&self) -> Vec<lookout_proto::FieldError> {
        use lookout_proto::FieldError;
        let mut out = Vec::new();
        if let Err(e) = check_username(&self.username) {
            out.push(FieldError::new("username", e));
        }
        if let Some(Err(e)) = self.email.as_deref().map(check_email) {
            out.push(FieldError::new("email", e));
        }
        if let Err(e) = password::check_policy(&self.password) {
            out.push(FieldError::new("password", e));
        }
        out
    }

    /// Hashes the password: what the store is given.
    pub async fn into_new_user(self) -> anyhow::Result<crate::store::accounts::NewUser> {
        Ok(crate::store::accounts::NewUser {
            password_hash: password::hash(self.password).await?,
            username: self.username,
            email: self.email,
            role: self.role,
        })
    }
}

/// The hub-state key of the open-registration switch.
pub const OPEN_REGISTRATION: &str = "open_registration";

/// Whether self-registration is open (an admin turns it on).
pub async fn registration_open(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(store.get_state(OPEN_REGISTRATION).await?.as_deref() == Some("true"))
}
