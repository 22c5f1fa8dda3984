//! Health results on SQLite in two round trips per batch.
//!
//! Every statement sent to an SQLite connection is a round trip to the
//! thread that owns it, and each round trip wakes two threads. Written one
//! statement at a time, a health result took six (begin, update, insert,
//! status, change, commit), and the thread switches were most of what a
//! result cost the hub. SQLite runs several statements sent as one text, so
//! a batch goes in two scripts inside one transaction: the first opens it
//! and writes every result (reading each service back), the second writes
//! the statuses computed from what the first read, and commits.
//!
//! The batch travels as one JSON array that the statements read with
//! `json_each`, so each script is one fixed text, prepared once per
//! connection whatever the batch's size.
//!
//! PostgreSQL takes one statement per round trip with parameters; it keeps
//! the statement-by-statement path.

use std::collections::HashMap;

use lookout_proto::service::{HealthStatus, StatusEventView};
use lookout_proto::status::StatusRules;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Executor, Row};

use super::{ms, server_in_touch, service_from_row, to_i64, with_status, WriteConn};
use crate::{HealthCheck, Reconciled, Recorded, Service};

/// Writes the results in `$1` (`[{id, at, health, healthy, code, latency,
/// error, warning, expires, url}]`, one per service) and returns each
/// service as it now stands, with its server's presence for an agent's.
macro_rules! write_sql {
    () => {
        "
    UPDATE services SET health_status = r.value ->> 'health',
        last_health_check = r.value ->> 'at', last_response_code = r.value ->> 'code',
        last_latency_ms = r.value ->> 'latency', last_error = r.value ->> 'error',
        last_warning = r.value ->> 'warning',
        cert_expires_at = COALESCE(r.value ->> 'expires', cert_expires_at)
    FROM json_each($1) AS r
    WHERE services.id = r.value ->> 'id'
    RETURNING *,
        (SELECT last_seen_at FROM servers WHERE servers.id = services.server_id) AS server_seen,
        (SELECT heartbeat_secs FROM servers WHERE servers.id = services.server_id) AS server_heartbeat,
        (SELECT revoked_at FROM servers WHERE servers.id = services.server_id) AS server_revoked;
    INSERT INTO health_checks (service_id, checked_at, is_healthy, status, url,
        response_code, latency_ms, error, warning)
    SELECT r.value ->> 'id', r.value ->> 'at', r.value ->> 'healthy', r.value ->> 'health',
        r.value ->> 'url', r.value ->> 'code', r.value ->> 'latency', r.value ->> 'error',
        r.value ->> 'warning'
    FROM json_each($1) AS r
    WHERE EXISTS (SELECT 1 FROM services WHERE services.id = r.value ->> 'id');"
    };
}

/// Writes new reasons (`$1`: `[{id, reason}]`) and new statuses with their
/// changes (`$2`: `[{id, at, old, new, reason}]`); the changes' ids.
macro_rules! status_sql {
    () => {
        "
    UPDATE services SET state_reason = r.value ->> 'reason'
    FROM json_each($1) AS r
    WHERE services.id = r.value ->> 'id';
    UPDATE services SET state = r.value ->> 'new', state_reason = r.value ->> 'reason',
        state_since = r.value ->> 'at'
    FROM json_each($2) AS r
    WHERE services.id = r.value ->> 'id';
    INSERT INTO status_events (service_id, at, old_state, new_state, reason)
    SELECT r.value ->> 'id', r.value ->> 'at', r.value ->> 'old', r.value ->> 'new',
        r.value ->> 'reason'
    FROM json_each($2) AS r
    ORDER BY r.key
    RETURNING id, service_id;"
    };
}

// The four texts the scripts run, fixed: each is prepared once per
// connection and kept.
const BEGIN_AND_WRITE: &str = concat!("BEGIN IMMEDIATE;", write_sql!());
const WRITE: &str = write_sql!();
const STATUS_AND_COMMIT: &str = concat!(status_sql!(), "COMMIT;");
const STATUS: &str = status_sql!();

/// A transaction the scripts open and close themselves. Dropped while open
/// (the task was cancelled between its scripts), a task of its own rolls
/// it back, still in this writer's turn, before the connection writes
/// again.
pub(super) struct ScriptTx {
    /// Always there until dropped.
    conn: Option<WriteConn>,
    open: bool,
}

impl ScriptTx {
    pub(super) fn new(conn: WriteConn) -> Self {
        Self {
            conn: Some(conn),
            open: false,
        }
    }

    /// Writes the results in `results` (see [`WRITE`]), opening the
    /// transaction if it is not open yet.
    pub(super) async fn write(&mut self, results: String) -> Result<Vec<AnyRow>, sqlx::Error> {
        let sql = if self.open { WRITE } else { BEGIN_AND_WRITE };
        self.run(sql, &[results], false).await
    }

    /// Writes reasons and changes (see [`STATUS`]), committing if `last`.
    async fn status(&mut self, args: &[String], last: bool) -> Result<Vec<AnyRow>, sqlx::Error> {
        let sql = if last { STATUS_AND_COMMIT } else { STATUS };
        self.run(sql, args, last).await
    }

    /// Runs `sql` (one of the texts above, which opens the transaction if
    /// it is not open and closes it if `commits`); the rows it returned.
    async fn run(
        &mut self,
        sql: &'static str,
        args: &[String],
        commits: bool,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut query = sqlx::query(sql);
        for arg in args {
            query = query.bind(arg.as_str());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(sqlx::Error::PoolClosed);
        };
        self.open = true;
        match query.fetch_all(&mut **conn).await {
            Ok(rows) => {
                self.open = !commits;
                Ok(rows)
            }
            Err(e) => {
                // Still in this writer's turn: the next writer finds the
                // write lock free.
                if conn.execute("ROLLBACK").await.is_ok() {
                    self.open = false;
                }
                Err(e)
            }
        }
    }
}

impl Drop for ScriptTx {
    fn drop(&mut self) {
        if let (true, Some(mut conn)) = (self.open, self.conn.take()) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = conn.execute("ROLLBACK").await {
                        tracing::warn!(error = %e, "rolling back a cancelled write failed");
                    }
                });
            }
        }
    }
}

/// Records `checks` in one transaction: two round trips, and two more each
/// time a service comes again.
pub(super) async fn record_checks(
    conn: WriteConn,
    checks: &[HealthCheck],
    rules: StatusRules,
) -> Result<Vec<(Recorded, Option<Service>)>, sqlx::Error> {
    let mut tx = ScriptTx::new(conn);
    let runs = distinct_runs(checks);
    let mut done = Vec::with_capacity(checks.len());
    for (i, run) in runs.iter().enumerate() {
        let last = i + 1 == runs.len();
        done.extend(record_run(&mut tx, run, rules, last).await?);
    }
    Ok(done)
}

/// The results as [`WRITE`] reads them.
pub(super) fn results_json(checks: &[HealthCheck]) -> String {
    let results: Vec<serde_json::Value> = checks
        .iter()
        .map(|check| {
            json!({
                "id": check.service_id,
                "at": ms(check.checked_at),
                "health": check.status.as_str(),
                "healthy": i64::from(check.status == HealthStatus::Healthy),
                "code": check.response_code,
                "latency": to_i64(check.latency_ms),
                "error": check.error,
                "warning": check.warning,
                "expires": check.cert_expires_at.map(ms),
                "url": check.url,
            })
        })
        .collect();
    serde_json::Value::Array(results).to_string()
}

/// Writes `checks`, each of a different service, in the transaction (opening
/// it if needed), and commits if `last`.
async fn record_run(
    tx: &mut ScriptTx,
    checks: &[HealthCheck],
    rules: StatusRules,
    last: bool,
) -> Result<Vec<(Recorded, Option<Service>)>, sqlx::Error> {
    let rows = tx.write(results_json(checks)).await?;
    let mut rows: HashMap<i64, AnyRow> = rows
        .into_iter()
        .map(|row| Ok((row.try_get::<i64, _>("id")?, row)))
        .collect::<Result<_, sqlx::Error>>()?;

    // Each result's service and status; `None` for a service gone.
    let mut outcomes = Vec::with_capacity(checks.len());
    let (mut reasons, mut changes) = (Vec::new(), Vec::new());
    for check in checks {
        // A service deleted meanwhile returned no row.
        let Some(row) = rows.remove(&check.service_id) else {
            outcomes.push(None);
            continue;
        };
        let service = service_from_row(&row)?;
        let now = check.checked_at;
        let agent_online = service.server_id.is_some() && server_in_touch(&row, now)?;
        let (status, reason) = service.kind(agent_online, now, rules).status();
        if status != service.state {
            changes.push(
                json!({"id": service.id, "at": ms(now), "old": service.state.as_str(),
                                "new": status.as_str(), "reason": reason}),
            );
        } else if service.state_reason.as_deref() != Some(reason.as_str()) {
            reasons.push(json!({"id": service.id, "reason": reason}));
        }
        let reconciled = Reconciled {
            status,
            reason,
            change: None,
        };
        outcomes.push(Some((service, reconciled)));
    }

    let written = if last || !reasons.is_empty() || !changes.is_empty() {
        let args = [
            serde_json::Value::Array(reasons).to_string(),
            serde_json::Value::Array(changes).to_string(),
        ];
        tx.status(&args, last).await?
    } else {
        Vec::new()
    };
    let mut ids: HashMap<i64, i64> = written
        .iter()
        .map(|row| Ok((row.try_get("service_id")?, row.try_get("id")?)))
        .collect::<Result<_, sqlx::Error>>()?;

    let mut done = Vec::with_capacity(checks.len());
    for (check, outcome) in checks.iter().zip(outcomes) {
        let now = check.checked_at;
        let Some((service, mut reconciled)) = outcome else {
            done.push((Recorded::Dropped, None));
            continue;
        };
        if reconciled.status != service.state {
            let id = ids.remove(&service.id).ok_or(sqlx::Error::RowNotFound)?;
            reconciled.change = Some(StatusEventView {
                id,
                service_id: service.id,
                at: now,
                old: service.state,
                new: reconciled.status,
                reason: reconciled.reason.clone(),
            });
        }
        let (service, change) = with_status(service, Some(reconciled), now);
        done.push((Recorded::Stored(change), Some(service)));
    }
    Ok(done)
}

/// `checks` cut where a service comes again, so that each part names every
/// service once: a part's statuses are computed from what its first script
/// read, which a second result of the same service would make stale.
fn distinct_runs(checks: &[HealthCheck]) -> Vec<&[HealthCheck]> {
    let mut runs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut start = 0;
    for (i, check) in checks.iter().enumerate() {
        if !seen.insert(check.service_id) {
            runs.push(&checks[start..i]);
            seen.clear();
            seen.insert(check.service_id);
            start = i;
        }
    }
    if start < checks.len() {
        runs.push(&checks[start..]);
    }
    runs
}
