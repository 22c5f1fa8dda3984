//! What the store keeps for authentication: users, credentials (every bearer
//! secret, stored as a SHA-256 hash) and the audit log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// What an account or a credential may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only dashboard and API.
    Viewer,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The kinds of bearer secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// A browser session (cookie).
    Session,
    /// A short-lived API access token from a login or refresh.
    Access,
    /// A refresh token: spent on first use.
    Refresh,
    /// A personal API token for scripts, created by its owner.
    Api,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::Access => "access",
            CredentialKind::Refresh => "refresh",
            CredentialKind::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "session" => Some(Self::Session),
            "access" => Some(Self::Access),
            "refresh" => Some(Self::Refresh),
            "api" => Some(Self::Api),
            _ => None,
        }
    }
}

/// What a credential may be used for, within its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Whatever the credential's role allows.
    #[default]
    All,
    /// Only sending heartbeats (`POST /register`, `/refresh/{name}`,
    /// `/refresh_all`): the token a host keeps in its heartbeat script.
    Heartbeat,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::All => "all",
            TokenScope::Heartbeat => "heartbeat",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "heartbeat" => Some(Self::Heartbeat),
            _ => None,
        }
    }
}

/// An account as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    #[serde(skip)]
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The base32 TOTP secret of an account that signs in with a second
    /// factor.
    #[serde(skip)]
    pub totp_secret: Option<String>,
    /// The SHA-256 of each recovery code not yet used.
    #[serde(skip)]
    pub recovery_codes: Vec<String>,
}

impl User {
    /// Signing in takes a code from an authenticator app too.
    pub fn two_factor(&self) -> bool {
        self.totp_secret.is_some()
    }
}

/// An account to create; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub role: Role,
}

/// A credential to store. `token_hash` is the SHA-256 of the token.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub user_id: i64,
    pub kind: CredentialKind,
    pub token_hash: String,
    pub name: Option<String>,
    pub role: Role,
    pub scope: TokenScope,
    pub family: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A credential as listed to its owner (never its hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CredentialInfo {
    pub id: i64,
    pub user_id: i64,
    pub kind: CredentialKind,
    pub name: Option<String>,
    pub role: Role,
    pub scope: TokenScope,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Who a valid credential speaks for.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: i64,
    pub username: String,
    /// The lesser of the user's role and the credential's.
    pub role: Role,
    pub credential_id: i64,
    pub kind: CredentialKind,
    pub scope: TokenScope,
    pub family: String,
}

/// What spending a refresh token did.
#[derive(Debug)]
pub enum Refreshed {
    /// The old refresh token is spent; the new pair is stored.
    Rotated(Authenticated),
    /// The token was already spent: someone replayed it, so its whole family
    /// (every token descended from the same login) is now revoked.
    Replayed { username: String },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Why a user could not be deleted.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteUser {
    Deleted,
    NotFound,
    /// The hub would be left without an administrator.
    LastAdmin,
}

/// One line of the audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub client: Option<String>,
    pub outcome: AuditOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    Ok,
    Denied,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "ok" => AuditOutcome::Ok,
            "denied" => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        }
    }
}

/// An audit line to append.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub actor: Option<String>,
    pub action: &'static str,
    pub target: Option<String>,
    pub client: Option<String>,
    pub outcome: AuditOutcome,
}

/// The accounts half of the store. Every method is one transaction.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn count_users(&self) -> Result<u64, StoreError>;

    /// Creates an account; a taken username or e-mail is a conflict.
    async fn create_user(&self, new: &NewUser, now: DateTime<Utc>) -> Result<User, StoreError>;

    /// Creates the first account, an admin, only if there is none yet (the
    /// first-run page cannot be raced into two admins). `None`: there already is one.
    async fn create_first_user(
        &self,
        new: &NewUser,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError>;

    /// A user by username or e-mail (case-insensitive).
    async fn find_user(&self, login: &str) -> Result<Option<User>, StoreError>;
    async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;

    /// Deletes a user and their credentials, unless they are the last admin.
    async fn delete_user(&self, id: i64) -> Result<DeleteUser, StoreError>;

    /// Sets a new password hash and revokes every credential of the user.
    async fn set_password(
        &self,
        id: i64,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Stores new credentials (a login stores an access and a refresh token at once).
    async fn insert_credentials(
        &self,
        credentials: &[NewCredential],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError>;

    /// The holder of a valid (known, unexpired, unrevoked) credential of one
    /// of `kinds`, and notes its use.
    async fn authenticate(
        &self,
        token_hash: &str,
        kinds: &[CredentialKind],
        now: DateTime<Utc>,
    ) -> Result<Option<Authenticated>, StoreError>;

    /// Spends a refresh token and stores its successors, in one transaction.
    /// The successors take the spent token's user, role and family.
    async fn rotate_refresh(
        &self,
        token_hash: &str,
        successors: &[NewCredential],
        now: DateTime<Utc>,
    ) -> Result<Refreshed, StoreError>;

    /// Turns two-factor sign-in on (a TOTP secret and the SHA-256 of each
    /// recovery code) or off (`None`, and no codes), and forgets any sign-in
    /// waiting for a code. `false`: no such user.
    async fn set_two_factor(
        &self,
        id: i64,
        totp_secret: Option<&str>,
        recovery_codes: &[String],
    ) -> Result<bool, StoreError>;

    /// Accepts a TOTP code's time step once: `false` if a code of this step
    /// or a later one was accepted already (a replayed code).
    async fn spend_totp_step(&self, id: i64, step: u64) -> Result<bool, StoreError>;

    /// Uses up a recovery code (its SHA-256): `false` if the user has no
    /// such code left.
    async fn spend_recovery_code(&self, id: i64, code_hash: &str) -> Result<bool, StoreError>;

    /// Notes a password sign-in waiting for its second factor (the SHA-256
    /// of the browser's challenge, and until when it holds), or forgets it
    /// (`None`). One per user: a new sign-in replaces the last.
    async fn set_login_challenge(
        &self,
        id: i64,
        challenge: Option<(&str, DateTime<Utc>)>,
    ) -> Result<(), StoreError>;

    /// The user a challenge (its SHA-256) is waiting for, unless it expired.
    async fn challenged_user(
        &self,
        challenge_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError>;

    /// Revokes one credential; with `owner`, only if it is theirs.
    async fn revoke_credential(
        &self,
        id: i64,
        owner: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Revokes every credential descended from one login.
    async fn revoke_family(&self, family: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Valid credentials of a user of one kind.
    async fn list_credentials(
        &self,
        user_id: Option<i64>,
        kind: CredentialKind,
        now: DateTime<Utc>,
    ) -> Result<Vec<CredentialInfo>, StoreError>;

    /// Forgets credentials that expired or were revoked before `before`.
    async fn prune_credentials(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn append_audit(
        &self,
        entry: &NewAuditEntry,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The newest audit lines first.
    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
}
