//! [`AgentStore`] on SQLite.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lookout_proto::agent::{CheckDecl, Cursor};
use lookout_proto::check::LineStatus;
use lookout_proto::service::{CheckResultView, StatusEventView};
use lookout_proto::status::StatusRules;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{decode_error, ms, opt_time, reconcile_all, reconcile_service, time, SqlStore};
use crate::agents::{
    in_touch, AgentStore, Ingested, NewServer, Results, Server, MAX_CHECKS_PER_SERVER,
};
use crate::StoreError;

fn server_from_row(row: &AnyRow) -> Result<Server, sqlx::Error> {
    let labels: String = row.try_get("labels")?;
    let scan: Option<String> = row.try_get("scan")?;
    Ok(Server {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        labels: serde_json::from_str(&labels).map_err(|_| decode_error("labels", &labels))?,
        agent_id: row.try_get("agent_id")?,
        claimed: row.try_get::<Option<i64>, _>("claimed_at")?.is_some(),
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        hostname: row.try_get("hostname")?,
        agent_version: row.try_get("agent_version")?,
        last_seen: opt_time(row.try_get("last_seen_at")?),
        heartbeat_secs: row.try_get("heartbeat_secs")?,
        scan: scan.and_then(|s| serde_json::from_str(&s).ok()),
        scanned_at: opt_time(row.try_get("scanned_at")?),
        created_at: time(row.try_get("created_at")?),
    })
}

fn result_from_row(row: &AnyRow) -> Result<CheckResultView, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(CheckResultView {
        service_id: row.try_get("service_id")?,
        at: time(row.try_get("at")?),
        ordinal: u32::try_from(row.try_get::<i64, _>("ordinal")?).unwrap_or(0),
        status: LineStatus::parse(&status).ok_or_else(|| decode_error("status", &status))?,
        message: row.try_get("message")?,
        received_at: time(row.try_get("received_at")?),
    })
}

/// The service of check `name` on `server`, created if it is new.
/// The service of a server's check, created on first sight; `None` when it
/// is new and the server already has [`MAX_CHECKS_PER_SERVER`] checks.
async fn check_service(
    conn: &mut sqlx::AnyConnection,
    server_id: i64,
    server: &mut ServerName,
    check: &str,
    now: DateTime<Utc>,
    created: &mut Vec<i64>,
) -> Result<Option<i64>, sqlx::Error> {
    if let Some(id) = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM services WHERE server_id = $1 AND check_name = $2",
    )
    .bind(server_id)
    .bind(check)
    .fetch_optional(&mut *conn)
    .await?
    {
        return Ok(Some(id));
    }
    let checks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM services WHERE server_id = $1")
        .bind(server_id)
        .fetch_one(&mut *conn)
        .await?;
    if checks >= MAX_CHECKS_PER_SERVER {
        return Ok(None);
    }
    let Some(server_name) = server.get(conn).await? else {
        return Ok(None);
    };
    // `disk-usage@web-01`; should a service have that name already, the
    // server's id makes it unique.
    let mut name = format!("{check}@{server_name}");
    let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM services WHERE name = $1")
        .bind(&name)
        .fetch_one(&mut *conn)
        .await?;
    if taken > 0 {
        name = format!("{check}@{server_name}#{server_id}");
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO services (name, status, server_id, check_name, state, state_reason, created_at, updated_at)
         VALUES ($1, 'configured', $2, $3, 'UNKNOWN', 'waiting for the first result', $4, $5) RETURNING id",
    )
    .bind(&name)
    .bind(server_id)
    .bind(check)
    .bind(ms(now))
    .bind(ms(now))
    .fetch_one(&mut *conn)
    .await?;
    created.push(id);
    Ok(Some(id))
}

async fn server_name(
    conn: &mut sqlx::AnyConnection,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM servers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A server's name, read the first time a check of it is created: most
/// writes find their checks and never need it.
enum ServerName {
    Unread(i64),
    Read(Option<String>),
}

impl ServerName {
    /// The name; `None` if the server is gone.
    async fn get(&mut self, conn: &mut sqlx::AnyConnection) -> Result<Option<String>, sqlx::Error> {
        if let ServerName::Unread(id) = *self {
            *self = ServerName::Read(server_name(conn, id).await?);
        }
        Ok(match self {
            ServerName::Read(name) => name.clone(),
            ServerName::Unread(_) => None,
        })
    }

    /// Whether it was read and the server is gone.
    fn gone(&self) -> bool {
        matches!(self, ServerName::Read(None))
    }
}

async fn check_ids(
    conn: &mut sqlx::AnyConnection,
    server_id: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM services WHERE server_id = $1")
        .bind(server_id)
        .fetch_all(conn)
        .await
}

/// Stores one agent message's results in `tx`; what it changed.
async fn record_message(
    tx: &mut sqlx::AnyConnection,
    message: &Results,
    rules: StatusRules,
) -> Result<Ingested, sqlx::Error> {
    let (server_id, now) = (message.server_id, message.received_at);
    let mut out = Ingested::default();
    let mut server = ServerName::Unread(server_id);
    let mut touched: Vec<i64> = Vec::new();
    for u in &message.updates {
        let Some(id) = check_service(
            &mut *tx,
            server_id,
            &mut server,
            &u.service_name,
            now,
            &mut out.created,
        )
        .await?
        else {
            if server.gone() {
                // Deleted meanwhile: its checks went with it (the
                // foreign key cascades), so nothing was written yet.
                return Ok(Ingested::default());
            }
            if !out.refused.contains(&u.service_name) {
                out.refused.push(u.service_name.clone());
            }
            continue;
        };
        let inserted = sqlx::query(
            "INSERT INTO check_results (service_id, at, ordinal, status, message, received_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (service_id, at, ordinal) DO NOTHING",
        )
        .bind(id)
        .bind(ms(u.timestamp))
        .bind(i64::from(u.ordinal))
        .bind(u.status.as_str())
        .bind(&u.message)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            continue;
        }
        out.results.push((
            u.service_name.clone(),
            CheckResultView {
                service_id: id,
                at: u.timestamp,
                ordinal: u.ordinal,
                status: u.status,
                message: u.message.clone(),
                received_at: now,
            },
        ));
        // The newest result is the check's state; an older one replayed
        // late only joins the history.
        sqlx::query(
            "UPDATE services SET check_status = $1, check_message = $2, check_at = $3, updated_at = $4
             WHERE id = $5 AND (check_at IS NULL OR check_at <= $6)",
        )
        .bind(u.status.as_str())
        .bind(&u.message)
        .bind(ms(u.timestamp))
        .bind(ms(now))
        .bind(id)
        .bind(ms(u.timestamp))
        .execute(&mut *tx)
        .await?;
        if !touched.contains(&id) {
            touched.push(id);
        }
    }
    for id in &touched {
        if let Some((service, reconciled)) = reconcile_service(&mut *tx, *id, now, rules).await? {
            out.changes.extend(reconciled.change);
            out.written.push(service);
        }
        if !out.created.contains(id) {
            out.updated.push(*id);
        }
    }
    let fresh: Vec<i64> = out
        .created
        .iter()
        .copied()
        .filter(|id| !touched.contains(id))
        .collect();
    out.changes
        .extend(reconcile_all(&mut *tx, fresh, now, rules).await?);
    Ok(out)
}

#[async_trait]
impl AgentStore for SqlStore {
    async fn create_server(
        &self,
        new: &NewServer,
        now: DateTime<Utc>,
    ) -> Result<Server, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "INSERT INTO servers (name, labels, agent_id, claim_hash, claim_expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(&new.name)
        .bind(serde_json::to_string(&new.labels).unwrap_or_else(|_| "[]".into()))
        .bind(&new.agent_id)
        .bind(&new.claim_hash)
        .bind(ms(new.claim_expires_at))
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict {
                field: "server_name",
                value: new.name.clone(),
            },
            _ => e.into(),
        })?;
        let server = server_from_row(&row)?;
        tx.commit().await?;
        Ok(server)
    }

    async fn claim_server(
        &self,
        claim_hash: &str,
        key_hash: &str,
        hostname: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Server>, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "UPDATE servers SET claim_hash = NULL, claim_expires_at = NULL, key_hash = $1,
                claimed_at = $2, hostname = COALESCE($3, hostname), revoked_at = NULL
             WHERE claim_hash = $4 AND claim_expires_at >= $5 RETURNING *",
        )
        .bind(key_hash)
        .bind(ms(now))
        .bind(hostname)
        .bind(claim_hash)
        .bind(ms(now))
        .fetch_optional(&mut *tx)
        .await?;
        let server = row.as_ref().map(server_from_row).transpose()?;
        tx.commit().await?;
        Ok(server)
    }

    async fn authenticate_agent(
        &self,
        agent_id: &str,
        key_hash: &str,
    ) -> Result<Option<Server>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM servers WHERE agent_id = $1 AND key_hash = $2 AND revoked_at IS NULL",
        )
        .bind(agent_id)
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(server_from_row).transpose()?)
    }

    async fn agent_seen(
        &self,
        server_id: i64,
        heartbeat_secs: i64,
        version: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StatusEventView>, StoreError> {
        let mut tx = self.write_tx().await?;
        let before: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_seen_at FROM servers WHERE id = $1")
                .bind(server_id)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "UPDATE servers SET last_seen_at = $1, heartbeat_secs = $2,
                agent_version = COALESCE($3, agent_version) WHERE id = $4",
        )
        .bind(ms(now))
        .bind(heartbeat_secs)
        .bind(version)
        .bind(server_id)
        .execute(&mut *tx)
        .await?;
        // Coming back online changes the status of every check; a heartbeat
        // of an agent in touch changes nothing.
        let was_online = in_touch(before.flatten().map(time), heartbeat_secs, now);
        let changes = if was_online {
            Vec::new()
        } else {
            let ids = check_ids(&mut tx, server_id).await?;
            reconcile_all(&mut tx, ids, now, self.rules).await?
        };
        tx.commit().await?;
        Ok(changes)
    }

    async fn set_server_checks(
        &self,
        server_id: i64,
        checks: &[CheckDecl],
        now: DateTime<Utc>,
    ) -> Result<Ingested, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut out = Ingested::default();
        let Some(name) = server_name(&mut tx, server_id).await? else {
            return Ok(out);
        };
        let mut server = ServerName::Read(Some(name));
        for check in checks {
            let Some(id) = check_service(
                &mut tx,
                server_id,
                &mut server,
                &check.name,
                now,
                &mut out.created,
            )
            .await?
            else {
                out.refused.push(check.name.clone());
                continue;
            };
            let changed = sqlx::query(
                "UPDATE services SET check_schedule = $1, description = COALESCE($2, description), updated_at = $3
                 WHERE id = $4 AND (check_schedule IS DISTINCT FROM $5 OR ($6 IS NOT NULL AND description IS DISTINCT FROM $7))",
            )
            .bind(&check.schedule)
            .bind(&check.description)
            .bind(ms(now))
            .bind(id)
            .bind(&check.schedule)
            .bind(&check.description)
            .bind(&check.description)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 && !out.created.contains(&id) {
                out.updated.push(id);
            }
        }
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        let existing: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, check_name FROM services WHERE server_id = $1")
                .bind(server_id)
                .fetch_all(&mut *tx)
                .await?;
        for (id, name) in existing {
            if !names.contains(&name.as_str()) {
                sqlx::query("DELETE FROM services WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                out.deleted.push(id);
            }
        }
        out.changes = reconcile_all(&mut tx, out.created.clone(), now, self.rules).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn record_results_together(
        &self,
        messages: &[Results],
    ) -> Result<Vec<Ingested>, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut done = Vec::with_capacity(messages.len());
        for message in messages {
            done.push(record_message(&mut tx, message, self.rules).await?);
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn result_cursors(&self, server_id: i64) -> Result<BTreeMap<String, Cursor>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.check_name, r.at, MAX(r.ordinal) AS ordinal
             FROM services s JOIN check_results r ON r.service_id = s.id
             WHERE s.server_id = $1
               AND r.at = (SELECT MAX(at) FROM check_results WHERE service_id = s.id)
             GROUP BY s.id, s.check_name, r.at",
        )
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = BTreeMap::new();
        for row in rows {
            let name: String = row.try_get("check_name")?;
            out.insert(
                name,
                Cursor {
                    timestamp: time(row.try_get("at")?),
                    ordinal: u32::try_from(row.try_get::<i64, _>("ordinal")?).unwrap_or(0),
                },
            );
        }
        Ok(out)
    }

    async fn set_server_scan(
        &self,
        server_id: i64,
        scan: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE servers SET scan = $1, scanned_at = $2 WHERE id = $3")
            .bind(scan.to_string())
            .bind(ms(now))
            .bind(server_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_servers(&self) -> Result<Vec<Server>, StoreError> {
        let rows = sqlx::query("SELECT * FROM servers ORDER BY lower(name), id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(server_from_row).collect::<Result<_, _>>()?)
    }

    async fn get_server(&self, id: i64) -> Result<Option<Server>, StoreError> {
        let row = sqlx::query("SELECT * FROM servers WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(server_from_row).transpose()?)
    }

    async fn revoke_server(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<StatusEventView>>, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE servers SET key_hash = NULL, claim_hash = NULL, revoked_at = $1 WHERE id = $2",
        )
        .bind(ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(None);
        }
        let ids = check_ids(&mut tx, id).await?;
        let changes = reconcile_all(&mut tx, ids, now, self.rules).await?;
        tx.commit().await?;
        Ok(Some(changes))
    }

    async fn delete_server(&self, id: i64) -> Result<Option<Vec<i64>>, StoreError> {
        let mut tx = self.write_tx().await?;
        let ids = check_ids(&mut tx, id).await?;
        let done = sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((done > 0).then_some(ids))
    }

    async fn check_results(
        &self,
        service_id: i64,
        limit: u32,
    ) -> Result<Vec<CheckResultView>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM check_results WHERE service_id = $1 ORDER BY at DESC, ordinal DESC LIMIT $2",
        )
        .bind(service_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(result_from_row).collect::<Result<_, _>>()?)
    }
}
