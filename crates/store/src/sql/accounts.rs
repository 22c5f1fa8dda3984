//! [`AccountStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{decode_error, ms, opt_time, time, SqlStore};
use crate::accounts::{
    AccountStore, AuditEntry, AuditOutcome, Authenticated, CredentialInfo, CredentialKind,
    DeleteUser, NewAuditEntry, NewCredential, NewUser, Refreshed, Role, TokenScope, User,
};
use crate::StoreError;

/// A credential is noted as used at most this often (in ms), so that reading
/// the API does not turn every request into a write.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

fn role(row: &AnyRow, column: &str) -> Result<Role, sqlx::Error> {
    let s: String = row.try_get(column)?;
    Role::parse(&s).ok_or_else(|| decode_error(column, &s))
}

fn kind(row: &AnyRow) -> Result<CredentialKind, sqlx::Error> {
    let s: String = row.try_get("kind")?;
    CredentialKind::parse(&s).ok_or_else(|| decode_error("kind", &s))
}

fn scope(row: &AnyRow) -> Result<TokenScope, sqlx::Error> {
    let s: String = row.try_get("scope")?;
    TokenScope::parse(&s).ok_or_else(|| decode_error("scope", &s))
}

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        role: role(row, "role")?,
        created_at: time(row.try_get("created_at")?),
        totp_secret: row.try_get("totp_secret")?,
        recovery_codes: recovery_codes(row)?,
    })
}

fn recovery_codes(row: &AnyRow) -> Result<Vec<String>, sqlx::Error> {
    let codes: Option<String> = row.try_get("recovery_codes")?;
    codes.map_or(Ok(Vec::new()), |c| {
        serde_json::from_str(&c).map_err(|_| decode_error("recovery_codes", &c))
    })
}

fn user_conflict(e: sqlx::Error, new: &NewUser) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            let (field, value) = if db.message().contains("email") {
                ("email", new.email.clone().unwrap_or_default())
            } else {
                ("username", new.username.clone())
            };
            return StoreError::Conflict { field, value };
        }
    }
    e.into()
}

const USER_COLUMNS: &str =
    "id, username, email, password_hash, role, created_at, totp_secret, recovery_codes";

impl SqlStore {
    /// Serialises account creation, so two accounts cannot claim one sign-in
    /// name at once: SQLite's write transaction already does; on PostgreSQL
    /// a transaction-scoped advisory lock.
    async fn lock_users(&self, tx: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        if self.backend() == crate::Backend::Postgres {
            sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(7071003)) AS l")
                .fetch_one(tx)
                .await?;
        }
        Ok(())
    }
}

/// Inserts an account. Usernames and e-mail addresses are one namespace
/// (sign-in takes either): a username may not be another account's address,
/// nor an address another account's username. Call it in a write
/// transaction that holds [`SqlStore::lock_users`].
async fn insert_user(
    conn: &mut sqlx::AnyConnection,
    new: &NewUser,
    now: DateTime<Utc>,
) -> Result<User, StoreError> {
    let clash: Option<String> = sqlx::query_scalar(
        "SELECT CASE WHEN lower(email) = lower($1) THEN 'username' ELSE 'email' END \
         FROM users WHERE lower(email) = lower($1) OR lower(username) = lower($2) LIMIT 1",
    )
    .bind(&new.username)
    .bind(new.email.as_deref().unwrap_or_default())
    .fetch_optional(&mut *conn)
    .await?;
    match clash.as_deref() {
        Some("username") => {
            return Err(StoreError::Conflict {
                field: "username",
                value: new.username.clone(),
            })
        }
        Some(_) => {
            return Err(StoreError::Conflict {
                field: "email",
                value: new.email.clone().unwrap_or_default(),
            })
        }
        None => {}
    }
    let row = sqlx::query(&format!(
        "INSERT INTO users (username, email, password_hash, role, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
    ))
    .bind(&new.username)
    .bind(&new.email)
    .bind(&new.password_hash)
    .bind(new.role.as_str())
    .bind(ms(now))
    .fetch_one(conn)
    .await
    .map_err(|e| user_conflict(e, new))?;
    Ok(user_from_row(&row)?)
}

async fn insert_credentials(
    conn: &mut sqlx::AnyConnection,
    credentials: &[NewCredential],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(credentials.len());
    for c in credentials {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO credentials (user_id, kind, token_hash, name, role, scope, family, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(c.user_id)
        .bind(c.kind.as_str())
        .bind(&c.token_hash)
        .bind(&c.name)
        .bind(c.role.as_str())
        .bind(c.scope.as_str())
        .bind(&c.family)
        .bind(ms(now))
        .bind(c.expires_at.map(ms))
        .fetch_one(&mut *conn)
        .await?;
        ids.push(id);
    }
    Ok(ids)
}

async fn revoke_family(
    conn: &mut sqlx::AnyConnection,
    family: &str,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE credentials SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL",
    )
    .bind(ms(now))
    .bind(family)
    .execute(conn)
    .await?
    .rows_affected())
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn count_users(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_user(&self, new: &NewUser, now: DateTime<Utc>) -> Result<User, StoreError> {
        let mut tx = self.write_tx().await?;
        self.lock_users(&mut tx).await?;
        let user = insert_user(&mut tx, new, now).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn create_first_user(
        &self,
        new: &NewUser,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        let mut tx = self.write_tx().await?;
        self.lock_users(&mut tx).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Ok(None);
        }
        let user = insert_user(&mut tx, new, now).await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    async fn find_user(&self, login: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1) \
             OR lower(email) = lower($1) ORDER BY lower(username) = lower($1) DESC LIMIT 1"
        ))
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY lower(username), id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
    }

    async fn delete_user(&self, id: i64) -> Result<DeleteUser, StoreError> {
        let mut tx = self.write_tx().await?;
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(role) = role else {
            return Ok(DeleteUser::NotFound);
        };
        if role == Role::Admin.as_str() {
            let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
                .fetch_one(&mut *tx)
                .await?;
            if admins <= 1 {
                return Ok(DeleteUser::LastAdmin);
            }
        }
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DeleteUser::Deleted)
    }

    async fn set_password(
        &self,
        id: i64,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE credentials SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(updated > 0)
    }

    async fn set_two_factor(
        &self,
        id: i64,
        totp_secret: Option<&str>,
        recovery_codes: &[String],
    ) -> Result<bool, StoreError> {
        let codes = (!recovery_codes.is_empty())
            .then(|| serde_json::Value::from(recovery_codes).to_string());
        let updated = sqlx::query(
            "UPDATE users SET totp_secret = $1, totp_step = NULL, recovery_codes = $2,
                challenge_hash = NULL, challenge_expires_at = NULL
             WHERE id = $3",
        )
        .bind(totp_secret)
        .bind(codes)
        .bind(id)
        .execute(&mut *self.write_conn().await?)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn spend_totp_step(&self, id: i64, step: u64) -> Result<bool, StoreError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let updated = sqlx::query(
            "UPDATE users SET totp_step = $1
             WHERE id = $2 AND totp_secret IS NOT NULL AND (totp_step IS NULL OR totp_step < $1)",
        )
        .bind(step)
        .bind(id)
        .execute(&mut *self.write_conn().await?)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn spend_recovery_code(&self, id: i64, code_hash: &str) -> Result<bool, StoreError> {
        // Read, then write only if nothing changed meanwhile: two sign-ins
        // with the same code cannot both use it.
        for _ in 0..5 {
            let Some(user) = self.get_user(id).await? else {
                return Ok(false);
            };
            if !user.recovery_codes.iter().any(|c| c == code_hash) {
                return Ok(false);
            }
            let before = serde_json::Value::from(user.recovery_codes.clone()).to_string();
            let left: Vec<&String> = user
                .recovery_codes
                .iter()
                .filter(|c| *c != code_hash)
                .collect();
            let after =
                serde_json::Value::from(left.iter().map(|c| c.as_str()).collect::<Vec<_>>())
                    .to_string();
            let updated = sqlx::query(
                "UPDATE users SET recovery_codes = $1 WHERE id = $2 AND recovery_codes = $3",
            )
            .bind(after)
            .bind(id)
            .bind(before)
            .execute(&mut *self.write_conn().await?)
            .await?
            .rows_affected();
            if updated > 0 {
                return Ok(true);
            }
        }
        // Changed under it five times over: refused, and the user tries
        // again.
        Ok(false)
    }

    async fn set_login_challenge(
        &self,
        id: i64,
        challenge: Option<(&str, DateTime<Utc>)>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET challenge_hash = $1, challenge_expires_at = $2 WHERE id = $3",
        )
        .bind(challenge.map(|(hash, _)| hash))
        .bind(challenge.map(|(_, expires)| ms(expires)))
        .bind(id)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    async fn challenged_user(
        &self,
        challenge_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE challenge_hash = $1 AND challenge_expires_at > $2"
        ))
        .bind(challenge_hash)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn insert_credentials(
        &self,
        credentials: &[NewCredential],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.write_tx().await?;
        let ids = insert_credentials(&mut tx, credentials, now).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn authenticate(
        &self,
        token_hash: &str,
        kinds: &[CredentialKind],
        now: DateTime<Utc>,
    ) -> Result<Option<Authenticated>, StoreError> {
        let row = sqlx::query(
            "SELECT c.id, c.kind, c.role AS credential_role, c.scope, c.family, c.last_used_at,
                    u.id AS user_id, u.username, u.role AS user_role
             FROM credentials c JOIN users u ON u.id = c.user_id
             WHERE c.token_hash = $1 AND c.revoked_at IS NULL
               AND (c.expires_at IS NULL OR c.expires_at > $2)",
        )
        .bind(token_hash)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let kind = kind(&row)?;
        if !kinds.contains(&kind) {
            return Ok(None);
        }
        let id: i64 = row.try_get("id")?;
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        if last_used.is_none_or(|t| ms(now) - t >= LAST_USED_GRANULARITY_MS) {
            sqlx::query("UPDATE credentials SET last_used_at = $1 WHERE id = $2")
                .bind(ms(now))
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Authenticated {
            user_id: row.try_get("user_id")?,
            username: row.try_get("username")?,
            role: role(&row, "credential_role")?.min(role(&row, "user_role")?),
            credential_id: id,
            kind,
            scope: scope(&row)?,
            family: row.try_get("family")?,
        }))
    }

    async fn rotate_refresh(
        &self,
        token_hash: &str,
        successors: &[NewCredential],
        now: DateTime<Utc>,
    ) -> Result<Refreshed, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT c.id, c.family, c.revoked_at, c.expires_at, c.role AS credential_role,
                    u.id AS user_id, u.username, u.role AS user_role
             FROM credentials c JOIN users u ON u.id = c.user_id
             WHERE c.token_hash = $1 AND c.kind = 'refresh'",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Refreshed::Invalid);
        };
        let family: String = row.try_get("family")?;
        let username: String = row.try_get("username")?;
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        let expires: Option<i64> = row.try_get("expires_at")?;
        if revoked.is_some() {
            // A spent token came back: whoever holds the family now may be a
            // thief, so the family ends here.
            revoke_family(&mut tx, &family, now).await?;
            tx.commit().await?;
            return Ok(Refreshed::Replayed { username });
        }
        if expires.is_some_and(|t| t <= ms(now)) {
            return Ok(Refreshed::Invalid);
        }
        let id: i64 = row.try_get("id")?;
        sqlx::query("UPDATE credentials SET revoked_at = $1, last_used_at = $2 WHERE id = $3")
            .bind(ms(now))
            .bind(ms(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let user_id: i64 = row.try_get("user_id")?;
        let credential_role = role(&row, "credential_role")?;
        let successors: Vec<NewCredential> = successors
            .iter()
            .cloned()
            .map(|mut c| {
                c.family.clone_from(&family);
                c.user_id = user_id;
                c.role = credential_role;
                c
            })
            .collect();
        let ids = insert_credentials(&mut tx, &successors, now).await?;
        tx.commit().await?;
        Ok(Refreshed::Rotated(Authenticated {
            user_id,
            username,
            role: credential_role.min(role(&row, "user_role")?),
            credential_id: ids.first().copied().unwrap_or(id),
            kind: CredentialKind::Access,
            scope: TokenScope::All,
            family,
        }))
    }

    async fn revoke_credential(
        &self,
        id: i64,
        owner: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE credentials SET revoked_at = $1
             WHERE id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR user_id = $3)",
        )
        .bind(ms(now))
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_family(&self, family: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        revoke_family(&mut conn, family, now).await
    }

    async fn list_credentials(
        &self,
        user_id: Option<i64>,
        kind: CredentialKind,
        now: DateTime<Utc>,
    ) -> Result<Vec<CredentialInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, kind, name, role, scope, created_at, expires_at, last_used_at
             FROM credentials
             WHERE kind = $1 AND ($2 IS NULL OR user_id = $2) AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > $3)
             ORDER BY created_at DESC, id DESC",
        )
        .bind(kind.as_str())
        .bind(user_id)
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CredentialInfo {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    kind: self::kind(row)?,
                    name: row.try_get("name")?,
                    role: role(row, "role")?,
                    scope: scope(row)?,
                    created_at: time(row.try_get("created_at")?),
                    expires_at: opt_time(row.try_get("expires_at")?),
                    last_used_at: opt_time(row.try_get("last_used_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn prune_credentials(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            // A spent refresh token is kept until it expires: presented
            // again, it reveals a stolen login (the family is revoked).
            sqlx::query(
                "DELETE FROM credentials
                 WHERE expires_at < $1 OR (revoked_at < $1 AND kind != 'refresh')",
            )
            .bind(ms(before))
            .execute(&self.pool)
            .await?
            .rows_affected(),
        )
    }

    async fn append_audit(
        &self,
        entry: &NewAuditEntry,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, client, outcome)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(ms(now))
        .bind(&entry.actor)
        .bind(entry.action)
        .bind(&entry.target)
        .bind(&entry.client)
        .bind(entry.outcome.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, client, outcome FROM audit_log
             ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let outcome: String = row.try_get("outcome")?;
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: time(row.try_get("at")?),
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    client: row.try_get("client")?,
                    outcome: AuditOutcome::parse(&outcome),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
