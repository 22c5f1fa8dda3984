//! The SQLite backend: one file in WAL mode, migrations embedded in the binary.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lookout_proto::service::{
    HealthStatus, NewService, PortView, RegistryStatus, ReportedState, ServicePatch, TimerView,
};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Arguments, ConnectOptions, Encode, Executor, Row, Type};
use tokio::sync::{OwnedMappedMutexGuard, OwnedMutexGuard};

use lookout_proto::condition::{Condition, ConditionSpec};
use lookout_proto::monitor::ProbeSettings;
use lookout_proto::series::{Bucket, Sample};
use lookout_proto::service::StatusEventView;
use lookout_proto::status::{ServiceKind, Status, StatusRules};

use crate::agents::in_touch;

use super::{
    Channel, Delivery, DiscoveredContainer, DiscoveredUnit, HealthCheck, Heartbeat, Reconciled,
    Recorded, ScanCounts, Service, ServiceFilter, Store, StoreError, UnitState,
};

mod accounts;
mod agents;
pub mod export;
mod leases;
mod pages;
mod script;
mod usage;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine a [`SqlStore`] talks to. The SQL is written once, in
/// the dialect both accept (`$N` parameters, `RETURNING`, `ON CONFLICT`,
/// `IS DISTINCT FROM`, BIGINT times); the few engine-specific statements
/// branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The store on SQLite (one file, WAL) or PostgreSQL (shared by several
/// hubs). Each engine has its own migrations; the queries are shared.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    /// Where transactions that write go: on SQLite one connection of its
    /// own, on PostgreSQL `pool`.
    writes: AnyPool,
    backend: Backend,
    /// SQLite takes one writer at a time; a second `BEGIN IMMEDIATE` would
    /// sleep in SQLite's busy handler (a millisecond and more). Writers of
    /// this hub queue here instead and go in the moment the last one commits.
    /// The turn holds the writer's connection, taken from `writes` at the
    /// first write and kept.
    writer: Arc<tokio::sync::Mutex<Option<PoolConnection<Any>>>>,
    /// The hub's settings of the status rules every write applies.
    rules: StatusRules,
}

/// A connection that writes: on SQLite the writer's own, held with this
/// hub's writer turn for as long as the write lasts; on PostgreSQL one from
/// the pool.
///
/// The SQLite writer's connection is never returned to a pool: sqlx pings a
/// connection on its way back (a task and a round trip to the connection's
/// thread), which for one statement costs as much as the statement.
enum Conn {
    Held(OwnedMappedMutexGuard<Option<PoolConnection<Any>>, PoolConnection<Any>>),
    Pooled(PoolConnection<Any>),
}

impl std::ops::Deref for Conn {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        match self {
            Conn::Held(conn) => conn,
            Conn::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Conn::Held(conn) => conn,
            Conn::Pooled(conn) => conn,
        }
    }
}

/// A write transaction; on SQLite it also holds this hub's writer turn.
/// Dropped without [`WriteTx::commit`], it rolls back before the
/// connection's next statement, so before the next writer's.
pub(crate) struct WriteTx {
    conn: Conn,
    open: bool,
}

/// A connection for single write statements; on SQLite it also holds this
/// hub's writer turn.
pub(crate) struct WriteConn(Conn);

impl std::ops::Deref for WriteConn {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl WriteTx {
    async fn begin(mut conn: Conn, statement: Option<&'static str>) -> Result<Self, sqlx::Error> {
        <<Any as sqlx::Database>::TransactionManager as sqlx::TransactionManager>::begin(
            &mut conn,
            statement.map(Into::into),
        )
        .await?;
        Ok(Self { conn, open: true })
    }

    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        <<Any as sqlx::Database>::TransactionManager as sqlx::TransactionManager>::commit(
            &mut self.conn,
        )
        .await?;
        self.open = false;
        Ok(())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            // Queued on the connection: it runs before anything else does.
            <<Any as sqlx::Database>::TransactionManager as sqlx::TransactionManager>::start_rollback(&mut self.conn);
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl SqlStore {
    /// Opens (creating if needed) an SQLite database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        // Options the Any driver cannot carry in its URL are set on every
        // new connection (the busy timeout first); WAL is a property of the
        // file, set once below.
        let url = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .to_url_lossy();
        // `cache_size`: the most each connection keeps of the file's pages
        // (KiB). The writer keeps half SQLite's default: writes that arrive
        // together share a transaction, and most pages it writes (the event
        // log's, the history's) are appended and never read again. Reads
        // are few (the registry is in memory), mostly history ranges read
        // once, so each reader keeps half of the writer's.
        let options = |cache_size: &'static str| {
            AnyPoolOptions::new()
                // A local file does not drop connections: no ping (a round
                // trip to the connection's thread) before every statement.
                .test_before_acquire(false)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        for pragma in [
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA foreign_keys = ON",
                            cache_size,
                        ] {
                            conn.execute(pragma).await?;
                        }
                        Ok(())
                    })
                })
        };
        // A reader per core, two to four: reads are few (the registry is in
        // memory), and each connection keeps its own thread, schema and
        // statements.
        let readers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 4);
        let pool = options("PRAGMA cache_size = -512")
            .max_connections(u32::try_from(readers).unwrap_or(4))
            .connect(url.as_str())
            .await?;
        sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
            .fetch_one(&pool)
            .await?;
        // SQLite writes one transaction at a time: the writes share one
        // connection, whose cached statements and pages are the only ones
        // the writes warm.
        let writes = options("PRAGMA cache_size = -1000")
            .max_connections(1)
            .connect_lazy(url.as_str())?;
        Self::migrate(pool, Some(writes), Backend::Sqlite).await
    }

    /// Connects to a PostgreSQL database (`postgres://...`) and brings its
    /// schema up to date. Several hubs may share it.
    pub async fn connect_postgres(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Self::migrate(pool, None, Backend::Postgres).await
    }

    fn migrator(backend: Backend) -> &'static sqlx::migrate::Migrator {
        match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Brings the schema up to date; `writes` is the pool of write
    /// connections where it is not `pool` itself.
    async fn migrate(
        pool: AnyPool,
        writes: Option<AnyPool>,
        backend: Backend,
    ) -> Result<Self, StoreError> {
        let migrator = Self::migrator(backend);
        // A database written by a newer lookout is left alone: its schema
        // may mean things this one does not know.
        let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten();
        if let Some(found) = newest.filter(|v| *v > known) {
            pool.close().await;
            return Err(StoreError::SchemaTooNew { found, known });
        }
        if backend == Backend::Postgres {
            // Hubs starting together must not race through the migrations.
            let mut conn = pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock(7071001)")
                .execute(&mut *conn)
                .await?;
            let result = migrator.run(&mut *conn).await;
            sqlx::query("SELECT pg_advisory_unlock(7071001)")
                .execute(&mut *conn)
                .await?;
            result?;
        } else {
            migrator.run(&pool).await?;
        }
        Ok(Self {
            writes: writes.unwrap_or_else(|| pool.clone()),
            pool,
            backend,
            writer: Arc::default(),
            rules: StatusRules::default(),
        })
    }

    /// The store with these settings of the status rules.
    pub fn with_rules(mut self, rules: StatusRules) -> Self {
        self.rules = rules;
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The schema version of the database (the newest migration applied).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// Every transaction here writes. On SQLite it takes the write lock up
    /// front (`BEGIN IMMEDIATE`): a deferred one that reads first and writes
    /// later fails with SQLITE_BUSY when another writer got in between, and
    /// the busy timeout cannot help it. PostgreSQL's row locks need no hint.
    /// A connection for one write statement (atomic on its own), in this
    /// hub's writer turn on SQLite.
    async fn write_conn(&self) -> Result<WriteConn, sqlx::Error> {
        Ok(WriteConn(self.writer_conn().await?))
    }

    async fn write_tx(&self) -> Result<WriteTx, sqlx::Error> {
        let statement = match self.backend {
            Backend::Sqlite => Some("BEGIN IMMEDIATE"),
            Backend::Postgres => None,
        };
        WriteTx::begin(self.writer_conn().await?, statement).await
    }

    /// On SQLite the writer's connection, once it is this hub's turn to
    /// write; on PostgreSQL any connection of the pool.
    async fn writer_conn(&self) -> Result<Conn, sqlx::Error> {
        if self.backend == Backend::Postgres {
            return Ok(Conn::Pooled(self.writes.acquire().await?));
        }
        let mut turn = self.writer.clone().lock_owned().await;
        if turn.is_none() {
            *turn = Some(self.writes.acquire().await?);
        }
        OwnedMutexGuard::try_map(turn, Option::as_mut)
            .map(Conn::Held)
            .map_err(|_| sqlx::Error::PoolClosed)
    }
}

/// The `SET` list of an UPDATE whose columns depend on the request, with its
/// parameters numbered as both engines read them.
#[derive(Default)]
struct Assignments {
    sql: String,
    args: AnyArguments<'static>,
    n: usize,
}

impl Assignments {
    fn push<T>(&mut self, column: &str, value: T)
    where
        T: 'static + Send + Encode<'static, Any> + Type<Any>,
    {
        self.n += 1;
        let sep = if self.n == 1 { "" } else { ", " };
        self.sql.push_str(&format!("{sep}{column} = ${}", self.n));
        // Adding a value to AnyArguments only fails for types Any cannot carry.
        let _ = self.args.add(value);
    }

    fn finish(mut self, table: &str, id: i64) -> (String, AnyArguments<'static>) {
        let sql = format!(
            "UPDATE {table} SET {} WHERE id = ${} RETURNING *",
            self.sql,
            self.n + 1
        );
        let _ = self.args.add(id);
        (sql, self.args)
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(time)
}

fn to_u16(v: Option<i64>) -> Option<u16> {
    v.and_then(|v| u16::try_from(v).ok())
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn service_from_row(row: &AnyRow) -> Result<Service, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let health: String = row.try_get("health_status")?;
    let reported: Option<String> = row.try_get("reported_state")?;
    Ok(Service {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        base_url: row.try_get("base_url")?,
        port: to_u16(row.try_get("port")?),
        health_endpoint: row.try_get("health_endpoint")?,
        status: RegistryStatus::parse(&status).ok_or_else(|| decode_error("status", &status))?,
        systemd_state: row.try_get("systemd_state")?,
        unit: row.try_get("unit")?,
        sub_state: row.try_get("sub_state")?,
        unit_file_state: row.try_get("unit_file_state")?,
        main_pid: row
            .try_get::<Option<i64>, _>("main_pid")?
            .and_then(|p| u32::try_from(p).ok()),
        pids: json_column(row, "pids")?,
        ports: json_column::<Vec<PortView>>(row, "listens")?,
        restarts: row
            .try_get::<Option<i64>, _>("restarts")?
            .and_then(|n| u32::try_from(n).ok()),
        container: row.try_get("container")?,
        container_info: json_column(row, "container_info")?,
        unit_result: row.try_get("unit_result")?,
        exit_status: row
            .try_get::<Option<i64>, _>("exit_status")?
            .and_then(|n| i32::try_from(n).ok()),
        active_since: opt_time(row.try_get("active_since")?),
        start_period_secs: to_u64(row.try_get("start_period_secs")?),
        reported_state: reported.as_deref().and_then(ReportedState::parse),
        check_interval_secs: to_u64(row.try_get("check_interval_secs")?),
        check_timeout_ms: to_u64(row.try_get("check_timeout_ms")?),
        state: {
            let state: String = row.try_get("state")?;
            Status::parse(&state).ok_or_else(|| decode_error("state", &state))?
        },
        state_reason: row.try_get("state_reason")?,
        state_since: opt_time(row.try_get("state_since")?),
        muted: row.try_get::<i64, _>("muted")? != 0,
        paused: row.try_get::<i64, _>("paused")? != 0,
        maintenance_until: opt_time(row.try_get("maintenance_until")?),
        maintenance_from: opt_time(row.try_get("maintenance_from")?),
        maintenance_window: json_column(row, "maintenance_window")?,
        notify_after: to_u64(row.try_get("notify_after")?),
        heartbeat_ip: row.try_get("heartbeat_ip")?,
        heartbeat_ttl_secs: to_u64(row.try_get("heartbeat_ttl_secs")?),
        last_heartbeat: opt_time(row.try_get("last_heartbeat")?),
        has_push_token: row
            .try_get::<Option<String>, _>("push_token_hash")?
            .is_some(),
        push_period_secs: to_u64(row.try_get("push_period_secs")?),
        push_grace_secs: to_u64(row.try_get("push_grace_secs")?),
        push_schedule: row.try_get("push_schedule")?,
        push_tz: row.try_get("push_tz")?,
        last_push: opt_time(row.try_get("last_push")?),
        push_status: row.try_get("push_status")?,
        push_message: row.try_get("push_message")?,
        push_started_at: opt_time(row.try_get("push_started_at")?),
        push_duration_ms: to_u64(row.try_get("push_duration_ms")?),
        server_id: row.try_get("server_id")?,
        check_name: row.try_get("check_name")?,
        check_schedule: row.try_get("check_schedule")?,
        check_status: row.try_get("check_status")?,
        check_message: row.try_get("check_message")?,
        check_at: opt_time(row.try_get("check_at")?),
        health_status: HealthStatus::parse(&health)
            .ok_or_else(|| decode_error("health_status", &health))?,
        last_health_check: opt_time(row.try_get("last_health_check")?),
        last_response_code: to_u16(row.try_get("last_response_code")?),
        last_latency_ms: to_u64(row.try_get("last_latency_ms")?),
        last_error: row.try_get("last_error")?,
        last_scanned_at: opt_time(row.try_get("last_scanned_at")?),
        retry_interval_secs: to_u64(row.try_get("retry_interval_secs")?),
        conditions: json_column::<Vec<ConditionSpec>>(row, "conditions")?
            .iter()
            .map(|spec| Condition::from_spec(spec).map_err(|e| decode_error("conditions", &e)))
            .collect::<Result<_, _>>()?,
        probe: json_column(row, "probe")?,
        tags: json_column(row, "tags")?,
        channels: json_column(row, "channels")?,
        depends_on: json_column(row, "depends_on")?,
        heal: json_column(row, "heal")?,
        waiting_on: json_column(row, "waiting_on")?,
        cert_expires_at: opt_time(row.try_get("cert_expires_at")?),
        last_warning: row.try_get("last_warning")?,
        from_file: row.try_get::<Option<String>, _>("source")?.as_deref() == Some("file"),
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

/// The services depended on as stored: a JSON list of ids, NULL for none.
/// The registry resolves names before a write; a name left is not stored.
fn depends_json(refs: &[lookout_proto::depends::ServiceRef]) -> Option<String> {
    let ids: Vec<i64> = refs
        .iter()
        .filter_map(|r| match r {
            lookout_proto::depends::ServiceRef::Id(id) => Some(*id),
            lookout_proto::depends::ServiceRef::Name(_) => None,
        })
        .collect();
    (!ids.is_empty()).then(|| to_json(&ids))
}

/// The tags as stored: a JSON list, NULL when there are none.
fn tags_json(tags: &[String]) -> Option<String> {
    (!tags.is_empty()).then(|| to_json(&tags))
}

/// The conditions as stored: a JSON list, NULL when there are none.
fn conditions_json(conditions: &[Condition]) -> Option<String> {
    (!conditions.is_empty()).then(|| {
        to_json(
            &conditions
                .iter()
                .map(Condition::to_spec)
                .collect::<Vec<_>>(),
        )
    })
}

/// The probe settings as stored: JSON, NULL when there are none.
fn probe_json(probe: &ProbeSettings) -> Option<String> {
    (*probe != ProbeSettings::default()).then(|| to_json(probe))
}

/// A JSON-encoded column; NULL reads as the default.
fn json_column<T: serde::de::DeserializeOwned + Default>(
    row: &AnyRow,
    column: &str,
) -> Result<T, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    match text {
        None => Ok(T::default()),
        Some(t) => serde_json::from_str(&t).map_err(|e| sqlx::Error::Decode(Box::new(e))),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn timer_from_row(row: &AnyRow) -> Result<TimerView, sqlx::Error> {
    let last_result: Option<String> = row.try_get("last_result")?;
    let unit_active_state: Option<String> = row.try_get("unit_active_state")?;
    let failed = unit_active_state.as_deref() == Some("failed")
        || last_result.as_deref().is_some_and(|r| r != "success");
    Ok(TimerView {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        active_state: row.try_get("active_state")?,
        schedule: json_column(row, "schedule")?,
        last_trigger: opt_time(row.try_get("last_trigger")?),
        next_elapse: opt_time(row.try_get("next_elapse")?),
        unit: row.try_get("unit")?,
        unit_active_state,
        last_result,
        last_exit_status: row
            .try_get::<Option<i64>, _>("last_exit_status")?
            .and_then(|v| i32::try_from(v).ok()),
        last_exit: opt_time(row.try_get("last_exit")?),
        failed,
        removed: row.try_get::<i64, _>("removed")? != 0,
        last_scanned_at: time(row.try_get("last_scanned_at")?),
    })
}

fn check_from_row(row: &AnyRow) -> Result<HealthCheck, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(HealthCheck {
        service_id: row.try_get("service_id")?,
        checked_at: time(row.try_get("checked_at")?),
        status: HealthStatus::parse(&status).ok_or_else(|| decode_error("status", &status))?,
        url: row.try_get("url")?,
        response_code: to_u16(row.try_get("response_code")?),
        latency_ms: to_u64(row.try_get("latency_ms")?),
        error: row.try_get("error")?,
        warning: row.try_get("warning")?,
        cert_expires_at: None,
    })
}

fn decode_error(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {column} {value:?} in the database").into())
}

/// Turns a unique-constraint violation on `name` into a [`StoreError::Conflict`].
fn name_conflict(e: sqlx::Error, name: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict {
                field: "name",
                value: name.to_owned(),
            };
        }
    }
    e.into()
}

fn channel_from_row(row: &AnyRow) -> Result<Channel, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let config: String = row.try_get("config")?;
    Ok(Channel {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: lookout_proto::notify::ChannelKind::parse(&kind)
            .ok_or_else(|| decode_error("kind", &kind))?,
        config: serde_json::from_str(&config).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        last_error: row.try_get("last_error")?,
        last_sent_at: opt_time(row.try_get("last_sent_at")?),
        created_at: time(row.try_get("created_at")?),
    })
}

fn status_event_from_row(row: &AnyRow) -> Result<StatusEventView, sqlx::Error> {
    let old: String = row.try_get("old_state")?;
    let new: String = row.try_get("new_state")?;
    Ok(StatusEventView {
        id: row.try_get("id")?,
        service_id: row.try_get("service_id")?,
        at: time(row.try_get("at")?),
        old: Status::parse(&old).ok_or_else(|| decode_error("old_state", &old))?,
        new: Status::parse(&new).ok_or_else(|| decode_error("new_state", &new))?,
        reason: row.try_get("reason")?,
    })
}

/// Recomputes one service's status inside a transaction; records a change.
async fn reconcile(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    now: DateTime<Utc>,
    rules: StatusRules,
) -> Result<Option<StatusEventView>, sqlx::Error> {
    Ok(reconcile_full(conn, id, now, rules)
        .await?
        .and_then(|r| r.change))
}

/// [`reconcile`] for several services; the changes in order.
async fn reconcile_all(
    conn: &mut sqlx::AnyConnection,
    ids: Vec<i64>,
    now: DateTime<Utc>,
    rules: StatusRules,
) -> Result<Vec<StatusEventView>, sqlx::Error> {
    let mut changes = Vec::new();
    for id in ids {
        changes.extend(reconcile(conn, id, now, rules).await?);
    }
    Ok(changes)
}

/// Like [`reconcile`], also returning the status and reason now in force.
/// The rules are [`Service::kind`]'s; this reads what they need and writes
/// what they decide.
async fn reconcile_full(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    now: DateTime<Utc>,
    rules: StatusRules,
) -> Result<Option<Reconciled>, sqlx::Error> {
    Ok(reconcile_service(conn, id, now, rules)
        .await?
        .map(|(_, reconciled)| reconciled))
}

/// Like [`reconcile_full`], also returning the service as it now stands
/// (what was read, with the status written), so that nothing reads it back.
/// [`reconcile_service`] of each of `ids`: the services as they now stand
/// and the status changes made.
async fn reconcile_services(
    conn: &mut sqlx::AnyConnection,
    ids: Vec<i64>,
    now: DateTime<Utc>,
    rules: StatusRules,
) -> Result<(Vec<Service>, Vec<StatusEventView>), sqlx::Error> {
    let (mut services, mut changes) = (Vec::new(), Vec::new());
    for id in ids {
        if let Some((service, reconciled)) = reconcile_service(conn, id, now, rules).await? {
            services.push(service);
            changes.extend(reconciled.change);
        }
    }
    Ok((services, changes))
}

async fn reconcile_service(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    now: DateTime<Utc>,
    rules: StatusRules,
) -> Result<Option<(Service, Reconciled)>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT services.*, v.last_seen_at AS server_seen, v.heartbeat_secs AS server_heartbeat,
            v.revoked_at AS server_revoked
         FROM services LEFT JOIN servers v ON v.id = services.server_id
         WHERE services.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let service = service_from_row(&row)?;
    let agent_online = server_in_touch(&row, now)?;
    let (status, reason) = service.kind(agent_online, now, rules).status();
    let Some(reconciled) = write_status(conn, &service, status, reason, now).await? else {
        return Ok(None);
    };
    let mut service = service;
    if reconciled.change.is_some() {
        service.state = reconciled.status;
        // As stored: to the millisecond.
        service.state_since = Some(time(ms(now)));
    }
    service.state_reason = Some(reconciled.reason.clone());
    Ok(Some((service, reconciled)))
}

/// Whether the server of the service read in `row` is in touch at `now`,
/// from its columns read along as `server_seen`, `server_heartbeat` and
/// `server_revoked` (null without a server: not in touch).
fn server_in_touch(row: &AnyRow, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>("server_revoked")?.is_none()
        && in_touch(
            row.try_get::<Option<i64>, _>("server_seen")?.map(time),
            row.try_get::<Option<i64>, _>("server_heartbeat")?
                .unwrap_or(10),
            now,
        ))
}

/// Records `status` and `reason` as `service`'s (as read in this
/// transaction): a new reason in place, a new status with its change in the
/// history.
async fn write_status(
    conn: &mut sqlx::AnyConnection,
    service: &Service,
    status: Status,
    reason: String,
    now: DateTime<Utc>,
) -> Result<Option<Reconciled>, sqlx::Error> {
    let (id, old) = (service.id, service.state);
    if old == status {
        if service.state_reason.as_deref() != Some(reason.as_str()) {
            sqlx::query("UPDATE services SET state_reason = $1 WHERE id = $2")
                .bind(&reason)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        return Ok(Some(Reconciled {
            status,
            reason,
            change: None,
        }));
    }
    sqlx::query(
        "UPDATE services SET state = $1, state_reason = $2, state_since = $3 WHERE id = $4",
    )
    .bind(status.as_str())
    .bind(&reason)
    .bind(ms(now))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let event_id: i64 = sqlx::query_scalar(
        "INSERT INTO status_events (service_id, at, old_state, new_state, reason) VALUES ($1, $2, $3, $4, $5)
         RETURNING id",
    )
    .bind(id)
    .bind(ms(now))
    .bind(old.as_str())
    .bind(status.as_str())
    .bind(&reason)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(Reconciled {
        status,
        reason: reason.clone(),
        change: Some(StatusEventView {
            id: event_id,
            service_id: id,
            at: now,
            old,
            new: status,
            reason,
        }),
    }))
}

/// Inserts a new configured service with its first status; `None` when the
/// name is taken.
async fn insert_service(
    conn: &mut sqlx::AnyConnection,
    new: &NewService,
    now: DateTime<Utc>,
    status: Status,
    reason: &str,
) -> Result<Option<AnyRow>, StoreError> {
    sqlx::query(
        "INSERT INTO services (name, description, base_url, port, health_endpoint, status,
            reported_state, check_interval_secs, check_timeout_ms, muted, maintenance_until,
            notify_after, created_at, updated_at, state, state_reason, start_period_secs,
            retry_interval_secs, conditions, probe, source, tags, paused, channels,
            maintenance_window, maintenance_from, depends_on, heal)
         VALUES ($1, $2, $3, $4, $5, 'configured', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
            $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)
         ON CONFLICT (name) DO NOTHING
         RETURNING *",
    )
    .bind(new.name.as_str())
    .bind(new.description.as_deref())
    .bind(new.base_url.as_ref().map(|u| u.to_display()))
    .bind(new.port.map(i64::from))
    .bind(new.health_endpoint.as_ref().map(|e| e.as_str().to_owned()))
    .bind(new.reported_state.map(ReportedState::as_str))
    .bind(to_i64(new.check_interval_secs))
    .bind(to_i64(new.check_timeout_ms))
    .bind(i64::from(new.muted.unwrap_or(false)))
    .bind(new.maintenance_until.map(ms))
    .bind(to_i64(new.notify_after))
    .bind(ms(now))
    .bind(ms(now))
    .bind(status.as_str())
    .bind(reason)
    .bind(to_i64(new.start_period_secs))
    .bind(to_i64(new.retry_interval_secs))
    .bind(conditions_json(&new.conditions))
    .bind(probe_json(&new.probe))
    .bind(new.from_file.then_some("file"))
    .bind(tags_json(&new.tags))
    .bind(i64::from(new.paused.unwrap_or(false)))
    .bind((!new.channels.is_empty()).then(|| to_json(&new.channels)))
    .bind(new.maintenance_window.as_ref().map(to_json))
    .bind(new.maintenance_from.map(ms))
    .bind(depends_json(&new.depends_on))
    .bind(new.heal.as_ref().map(to_json))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| name_conflict(e, new.name.as_str()))
}

/// Most events appended by one statement.
const EVENTS_PER_STATEMENT: usize = 256;

/// Appends events with one statement; their ids, in order. Appends are
/// serialised (the write lock on SQLite, the advisory lock on PostgreSQL),
/// so a statement's ids follow the order of its rows whatever order
/// RETURNING gives them in.
async fn insert_events(
    conn: &mut sqlx::AnyConnection,
    events: &[(DateTime<Utc>, &'static str, String)],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut sql = String::from("INSERT INTO event_log (at, kind, data) VALUES ");
    let mut args = AnyArguments::default();
    for (i, (at, kind, data)) in events.iter().enumerate() {
        let n = i * 3;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, ${}, ${})", n + 1, n + 2, n + 3));
        // Adding a value only fails for types Any cannot carry.
        let _ = args.add(ms(*at));
        let _ = args.add((*kind).to_owned());
        let _ = args.add(data.clone());
    }
    sql.push_str(" RETURNING id");
    let mut ids: Vec<i64> = sqlx::query_scalar_with(&sql, args)
        .fetch_all(&mut *conn)
        .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// `service` (as read before `reconciled` was written) with the status it
/// now has.
fn with_status(
    mut service: Service,
    reconciled: Option<Reconciled>,
    now: DateTime<Utc>,
) -> (Service, Option<StatusEventView>) {
    let Some(reconciled) = reconciled else {
        return (service, None);
    };
    if reconciled.change.is_some() {
        service.state_since = Some(now);
    }
    service.state = reconciled.status;
    service.state_reason = Some(reconciled.reason);
    (service, reconciled.change)
}

/// Stores one health result: cached on its service, appended to the
/// history, and the status it leads to.
async fn record_check(
    conn: &mut sqlx::AnyConnection,
    check: &HealthCheck,
    rules: StatusRules,
) -> Result<(Recorded, Option<Service>), sqlx::Error> {
    let Some(row) = sqlx::query(
        "UPDATE services SET health_status = $1, last_health_check = $2, last_response_code = $3,
            last_latency_ms = $4, last_error = $5, last_warning = $6,
            cert_expires_at = COALESCE($7, cert_expires_at)
         WHERE id = $8 RETURNING *",
    )
    .bind(check.status.as_str())
    .bind(ms(check.checked_at))
    .bind(check.response_code.map(i64::from))
    .bind(to_i64(check.latency_ms))
    .bind(check.error.as_deref())
    .bind(check.warning.as_deref())
    .bind(check.cert_expires_at.map(ms))
    .bind(check.service_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok((Recorded::Dropped, None));
    };
    sqlx::query(
        "INSERT INTO health_checks (service_id, checked_at, is_healthy, status, url,
            response_code, latency_ms, error, warning)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(check.service_id)
    .bind(ms(check.checked_at))
    .bind(i64::from(check.status == HealthStatus::Healthy))
    .bind(check.status.as_str())
    .bind(check.url.as_deref())
    .bind(check.response_code.map(i64::from))
    .bind(to_i64(check.latency_ms))
    .bind(check.error.as_deref())
    .bind(check.warning.as_deref())
    .execute(&mut *conn)
    .await?;
    let (service, change) =
        reconcile_row(conn, service_from_row(&row)?, check.checked_at, rules).await?;
    Ok((Recorded::Stored(change), Some(service)))
}

/// Brings the status of `service`, just written in this transaction, up to
/// date; the service as it now stands, and the change if there was one.
async fn reconcile_row(
    conn: &mut sqlx::AnyConnection,
    service: Service,
    now: DateTime<Utc>,
    rules: StatusRules,
) -> Result<(Service, Option<StatusEventView>), sqlx::Error> {
    let reconciled = if service.server_id.is_some() {
        // An agent's check: its status needs its server's presence.
        reconcile_full(conn, service.id, now, rules).await?
    } else {
        let (status, reason) = service.kind(false, now, rules).status();
        write_status(conn, &service, status, reason, now).await?
    };
    Ok(with_status(service, reconciled, now))
}

#[async_trait]
impl Store for SqlStore {
    async fn register_service(
        &self,
        new: &NewService,
        now: DateTime<Utc>,
    ) -> Result<(Service, Option<StatusEventView>), StoreError> {
        // A new service is polled, and not yet checked: its first status is
        // known without asking, and goes in with the row.
        let (status, reason) = ServiceKind::Polled {
            health: HealthStatus::Unknown,
            // A new service is configured, so its URL alone is checked.
            has_check: new.base_url.is_some(),
            last_error: None,
            warning: None,
            unit: None,
            container: None,
            starting: None,
            rules: self.rules,
        }
        .status();
        // The common case, a new name: one statement, status and all.
        {
            let mut conn = self.write_conn().await?;
            if let Some(row) = insert_service(&mut conn, new, now, status, &reason).await? {
                return Ok((service_from_row(&row)?, None));
            }
        }
        // The name is taken: by a service (a conflict), or by a unit the
        // scan found, which registering turns into a configured service
        // (saved as configured), keeping what systemd said.
        let mut tx = self.write_tx().await?;
        let existing: Option<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM services WHERE name = $1")
                .bind(new.name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((id, status)) = existing {
            if status == RegistryStatus::Configured.as_str() {
                return Err(StoreError::Conflict {
                    field: "name",
                    value: new.name.as_str().to_owned(),
                });
            }
            let row = sqlx::query(
                "UPDATE services SET status = 'configured', description = COALESCE($1, description),
                    base_url = $2, port = COALESCE($3, port), health_endpoint = $4, reported_state = $5,
                    check_interval_secs = $6, check_timeout_ms = $7, updated_at = $8,
                    retry_interval_secs = $9, conditions = $10, probe = $11, source = $12,
                    tags = $13, channels = $14, muted = $15, paused = $16,
                    maintenance_until = $17, maintenance_from = $18, maintenance_window = $19,
                    notify_after = $20, start_period_secs = $21, depends_on = $22, heal = $23
                 WHERE id = $24 RETURNING *",
            )
            .bind(new.description.as_deref())
            .bind(new.base_url.as_ref().map(|u| u.to_display()))
            .bind(new.port.map(i64::from))
            .bind(new.health_endpoint.as_ref().map(|e| e.as_str().to_owned()))
            .bind(new.reported_state.map(ReportedState::as_str))
            .bind(to_i64(new.check_interval_secs))
            .bind(to_i64(new.check_timeout_ms))
            .bind(ms(now))
            .bind(to_i64(new.retry_interval_secs))
            .bind(conditions_json(&new.conditions))
            .bind(probe_json(&new.probe))
            .bind(new.from_file.then_some("file"))
            .bind(tags_json(&new.tags))
            .bind((!new.channels.is_empty()).then(|| to_json(&new.channels)))
            .bind(i64::from(new.muted.unwrap_or(false)))
            .bind(i64::from(new.paused.unwrap_or(false)))
            .bind(new.maintenance_until.map(ms))
            .bind(new.maintenance_from.map(ms))
            .bind(new.maintenance_window.as_ref().map(to_json))
            .bind(to_i64(new.notify_after))
            .bind(to_i64(new.start_period_secs))
            .bind(depends_json(&new.depends_on))
            .bind(new.heal.as_ref().map(to_json))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let service = service_from_row(&row)?;
            let reconciled = reconcile_full(&mut tx, id, now, self.rules).await?;
            tx.commit().await?;
            return Ok(with_status(service, reconciled, now));
        }
        // Deleted in between: a new service after all.
        let row = insert_service(&mut tx, new, now, status, &reason)
            .await?
            .ok_or_else(|| StoreError::Conflict {
                field: "name",
                value: new.name.as_str().to_owned(),
            })?;
        tx.commit().await?;
        Ok((service_from_row(&row)?, None))
    }

    async fn get_service(&self, id: i64) -> Result<Option<Service>, StoreError> {
        let row = sqlx::query("SELECT * FROM services WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(service_from_row).transpose()?)
    }

    async fn list_services(&self, filter: ServiceFilter) -> Result<Vec<Service>, StoreError> {
        let rows = match filter {
            ServiceFilter::All => {
                sqlx::query("SELECT * FROM services ORDER BY lower(name), name, id")
                    .fetch_all(&self.pool)
                    .await?
            }
            ServiceFilter::Status(status) => {
                sqlx::query(
                    "SELECT * FROM services WHERE status = $1 ORDER BY lower(name), name, id",
                )
                .bind(status.as_str())
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows
            .iter()
            .map(service_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn change_service(
        &self,
        id: i64,
        patch: &ServicePatch,
        now: DateTime<Utc>,
    ) -> Result<Option<(Service, Option<StatusEventView>)>, StoreError> {
        // A new URL, endpoint or probe: what the old check said is gone.
        let resets_check =
            patch.base_url.is_some() || patch.health_endpoint.is_some() || patch.probe.is_some();
        let mut set = Assignments::default();
        set.push("updated_at", ms(now));
        if let Some(name) = &patch.name {
            set.push("name", name.as_str().to_owned());
        }
        if let Some(description) = &patch.description {
            set.push("description", description.clone());
        }
        if let Some(base_url) = &patch.base_url {
            set.push("base_url", base_url.as_ref().map(|u| u.to_display()));
        }
        if let Some(port) = patch.port {
            set.push("port", port.map(i64::from));
        }
        if let Some(endpoint) = &patch.health_endpoint {
            set.push(
                "health_endpoint",
                endpoint.as_ref().map(|e| e.as_str().to_owned()),
            );
        }
        if let Some(state) = patch.reported_state {
            set.push("reported_state", state.map(|s| s.as_str().to_owned()));
        }
        if let Some(secs) = patch.check_interval_secs {
            set.push("check_interval_secs", to_i64(secs));
        }
        if let Some(timeout) = patch.check_timeout_ms {
            set.push("check_timeout_ms", to_i64(timeout));
        }
        if let Some(muted) = patch.muted {
            set.push("muted", i64::from(muted.unwrap_or(false)));
        }
        if let Some(paused) = patch.paused {
            let paused = paused.unwrap_or(false);
            set.push("paused", i64::from(paused));
            if !paused {
                // Resumed: what was known before the pause is stale; it
                // waits for its next check or ping (a deadline missed
                // while paused is not a failure). A new check resets the
                // check's columns below (PostgreSQL refuses a column set
                // twice).
                if !resets_check {
                    set.sql.push_str(
                        ", health_status = CASE WHEN paused <> 0 THEN 'unknown' ELSE health_status END,
                       last_error = CASE WHEN paused <> 0 THEN NULL ELSE last_error END,
                       last_warning = CASE WHEN paused <> 0 THEN NULL ELSE last_warning END",
                    );
                }
                set.sql.push_str(
                    ", last_heartbeat = CASE WHEN paused <> 0 THEN NULL ELSE last_heartbeat END,
                       last_push = CASE WHEN paused <> 0 THEN NULL ELSE last_push END,
                       push_started_at = CASE WHEN paused <> 0 THEN NULL ELSE push_started_at END",
                );
            }
        }
        if let Some(until) = patch.maintenance_until {
            set.push("maintenance_until", until.map(ms));
        }
        if let Some(from) = patch.maintenance_from {
            set.push("maintenance_from", from.map(ms));
        }
        if let Some(window) = &patch.maintenance_window {
            set.push("maintenance_window", window.as_ref().map(to_json));
        }
        if let Some(after) = patch.notify_after {
            set.push("notify_after", to_i64(after));
        }
        if let Some(period) = patch.start_period_secs {
            set.push("start_period_secs", to_i64(period));
        }
        if let Some(secs) = patch.retry_interval_secs {
            set.push("retry_interval_secs", to_i64(secs));
        }
        if let Some(conditions) = &patch.conditions {
            set.push("conditions", conditions_json(conditions));
        }
        if let Some(tags) = &patch.tags {
            set.push("tags", tags_json(tags));
        }
        if let Some(channels) = &patch.channels {
            set.push(
                "channels",
                (!channels.is_empty()).then(|| to_json(channels)),
            );
        }
        if let Some(depends_on) = &patch.depends_on {
            set.push("depends_on", depends_json(depends_on));
        }
        if let Some(heal) = &patch.heal {
            set.push("heal", heal.as_ref().map(to_json));
        }
        if let Some(probe) = &patch.probe {
            set.push("probe", probe_json(probe));
        }
        if resets_check {
            set.sql.push_str(
                ", health_status = 'unknown', last_health_check = NULL, last_response_code = NULL,
                   last_latency_ms = NULL, last_error = NULL, last_warning = NULL,
                   cert_expires_at = NULL",
            );
        }
        let (sql, args) = set.finish("services", id);
        let name = patch.name.as_ref().map_or("", |n| n.as_str());
        let mut tx = self.write_tx().await?;
        let Some(row) = sqlx::query_with(&sql, args)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| name_conflict(e, name))?
        else {
            return Ok(None);
        };
        let changed = reconcile_row(&mut tx, service_from_row(&row)?, now, self.rules).await?;
        tx.commit().await?;
        Ok(Some(changed))
    }

    async fn delete_service(&self, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_health_checks(
        &self,
        checks: &[HealthCheck],
    ) -> Result<Vec<(Recorded, Option<Service>)>, StoreError> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        if self.backend == Backend::Sqlite {
            let conn = self.write_conn().await?;
            return Ok(script::record_checks(conn, checks, self.rules).await?);
        }
        let mut tx = self.write_tx().await?;
        let mut done = Vec::with_capacity(checks.len());
        for check in checks {
            done.push(record_check(&mut tx, check, self.rules).await?);
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn reconcile_state(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Reconciled>, StoreError> {
        let mut tx = self.write_tx().await?;
        let reconciled = reconcile_full(&mut tx, id, now, self.rules).await?;
        tx.commit().await?;
        Ok(reconciled)
    }

    async fn status_events(
        &self,
        service_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StatusEventView>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM status_events WHERE ($1 IS NULL OR service_id = $2)
             ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(service_id)
        .bind(service_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(status_event_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn append_events(
        &self,
        events: &[(DateTime<Utc>, &'static str, String)],
    ) -> Result<Vec<i64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if self.backend == Backend::Sqlite && events.len() <= EVENTS_PER_STATEMENT {
            // One statement is a transaction of its own.
            let mut conn = self.write_conn().await?;
            return Ok(insert_events(&mut conn, events).await?);
        }
        let mut tx = self.write_tx().await?;
        if self.backend == Backend::Postgres {
            // Hubs append one at a time, so ids become visible in order: a
            // hub following the log after id N never misses a smaller id
            // committed later. Each append is announced to the others.
            // One round trip for both: the lock is held until commit, and
            // the notification is sent at commit.
            sqlx::query(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(7071002)) AS l,
                    (SELECT pg_notify('lookout_events', '')) AS n",
            )
            .fetch_one(&mut *tx)
            .await?;
        }
        let mut ids = Vec::with_capacity(events.len());
        for chunk in events.chunks(EVENTS_PER_STATEMENT) {
            ids.extend(insert_events(&mut tx, chunk).await?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM event_log")
                .fetch_one(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    async fn events_after(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, kind, data FROM event_log WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn prune(
        &self,
        checks_before: DateTime<Utc>,
        events_before: DateTime<Utc>,
        changes_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let checks = sqlx::query("DELETE FROM health_checks WHERE checked_at < $1")
            .bind(ms(checks_before))
            .execute(&self.pool)
            .await?;
        let events = sqlx::query("DELETE FROM event_log WHERE at < $1")
            .bind(ms(events_before))
            .execute(&self.pool)
            .await?;
        let changes = sqlx::query("DELETE FROM status_events WHERE at < $1")
            .bind(ms(changes_before))
            .execute(&self.pool)
            .await?;
        // Check script results go like raw checks, but each check keeps its
        // newest: it is the cursor its agent resumes from.
        let results = sqlx::query(
            "DELETE FROM check_results WHERE at < $1
               AND at < (SELECT MAX(at) FROM check_results r WHERE r.service_id = check_results.service_id)",
        )
        .bind(ms(checks_before))
        .execute(&self.pool)
        .await?;
        // The audit log and hourly rollups are kept as long as status changes.
        let audit = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(ms(changes_before))
            .execute(&self.pool)
            .await?;
        let hours = sqlx::query("DELETE FROM check_hours WHERE hour < $1")
            .bind(ms(changes_before))
            .execute(&self.pool)
            .await?;
        Ok(hours.rows_affected()
            + checks.rows_affected()
            + events.rows_affected()
            + changes.rows_affected()
            + results.rows_affected()
            + audit.rows_affected())
    }

    async fn check_samples(
        &self,
        service_id: Option<i64>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, Sample)>, StoreError> {
        let rows: Vec<(i64, i64, String, Option<i64>)> = match service_id {
            Some(id) => sqlx::query_as(
                "SELECT service_id, checked_at, status, latency_ms FROM health_checks
                     WHERE service_id = $1 AND checked_at >= $2 AND checked_at < $3
                     ORDER BY checked_at, id",
            )
            .bind(id),
            None => sqlx::query_as(
                "SELECT service_id, checked_at, status, latency_ms FROM health_checks
                 WHERE checked_at >= $1 AND checked_at < $2 ORDER BY checked_at, id",
            ),
        }
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at, status, latency)| {
                let passed = status == HealthStatus::Healthy.as_str();
                (
                    id,
                    Sample {
                        at: time(at),
                        passed,
                        value: latency.filter(|_| passed).map(|ms| ms as f64),
                    },
                )
            })
            .collect())
    }

    async fn put_check_hours(&self, hours: &[(i64, Bucket)]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for (service_id, b) in hours {
            let figure = |v: Option<f64>| v.map(|v| v.round() as i64);
            sqlx::query(
                "INSERT INTO check_hours
                   (service_id, hour, checks, passed, latencies, latency_sum, latency_min, latency_max)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8
                 WHERE EXISTS (SELECT 1 FROM services WHERE id = $9)
                 ON CONFLICT (service_id, hour) DO UPDATE SET
                   checks = excluded.checks, passed = excluded.passed,
                   latencies = excluded.latencies, latency_sum = excluded.latency_sum,
                   latency_min = excluded.latency_min, latency_max = excluded.latency_max",
            )
            .bind(service_id)
            .bind(ms(b.start))
            .bind(i64::from(b.count))
            .bind(i64::from(b.passed))
            .bind(i64::from(b.values))
            .bind(b.sum.round() as i64)
            .bind(figure(b.least()))
            .bind(figure(b.most()))
            .bind(service_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn check_hours(
        &self,
        service_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Bucket>, StoreError> {
        type Row = (i64, i64, i64, i64, i64, Option<i64>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT hour, checks, passed, latencies, latency_sum, latency_min, latency_max
             FROM check_hours WHERE service_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour",
        )
        .bind(service_id)
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?;
        let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(rows
            .into_iter()
            .map(|(hour, checks, passed, values, sum, min, max)| Bucket {
                start: time(hour),
                count: count(checks),
                passed: count(passed),
                values: count(values),
                sum: sum as f64,
                min: min.map_or(f64::INFINITY, |v| v as f64),
                max: max.map_or(f64::NEG_INFINITY, |v| v as f64),
            })
            .collect())
    }

    async fn last_check_hour(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let hour: Option<i64> = sqlx::query_scalar("SELECT MAX(hour) FROM check_hours")
            .fetch_one(&self.pool)
            .await?;
        Ok(hour.map(time))
    }

    async fn health_history(
        &self,
        service_id: i64,
        limit: u32,
    ) -> Result<Vec<HealthCheck>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM health_checks WHERE service_id = $1 ORDER BY checked_at DESC, id DESC LIMIT $2",
        )
        .bind(service_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(check_from_row).collect::<Result<_, _>>()?)
    }

    async fn apply_scan(
        &self,
        units: &[DiscoveredUnit],
        timers: &[TimerView],
        now: DateTime<Utc>,
    ) -> Result<ScanCounts, StoreError> {
        let now_ms = ms(now);
        let mut counts = ScanCounts::default();
        let mut tx = self.write_tx().await?;
        for u in units {
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM services WHERE unit = $1 OR (unit IS NULL AND name = $2)
                 ORDER BY unit IS NULL LIMIT 1",
            )
            .bind(&u.unit)
            .bind(&u.unit)
            .fetch_optional(&mut *tx)
            .await?;
            let pids = to_json(&u.pids);
            let ports = to_json(&u.ports);
            let description = (!u.description.is_empty()).then_some(u.description.as_str());
            match existing {
                Some(id) => {
                    sqlx::query(
                        "UPDATE services SET unit = $1, systemd_state = $2, sub_state = $3, unit_file_state = $4,
                            main_pid = $5, pids = $6, listens = $7, last_scanned_at = $8,
                            status = CASE WHEN status = 'configured' THEN status ELSE $9 END,
                            description = CASE WHEN status = 'configured' THEN description ELSE $10 END,
                            port = CASE WHEN status = 'configured' AND port IS NOT NULL THEN port ELSE $11 END
                         WHERE id = $12",
                    )
                    .bind(&u.unit)
                    .bind(&u.active_state)
                    .bind(&u.sub_state)
                    .bind(u.unit_file_state.as_deref())
                    .bind(u.main_pid.map(i64::from))
                    .bind(&pids)
                    .bind(&ports)
                    .bind(now_ms)
                    .bind(u.status.as_str())
                    .bind(description)
                    .bind(u.port.map(i64::from))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    counts.updated += 1;
                }
                None => {
                    let inserted = sqlx::query(
                        "INSERT INTO services (name, description, port, status, unit, systemd_state, sub_state,
                            unit_file_state, main_pid, pids, listens, last_scanned_at, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&u.unit)
                    .bind(description)
                    .bind(u.port.map(i64::from))
                    .bind(u.status.as_str())
                    .bind(&u.unit)
                    .bind(&u.active_state)
                    .bind(&u.sub_state)
                    .bind(u.unit_file_state.as_deref())
                    .bind(u.main_pid.map(i64::from))
                    .bind(&pids)
                    .bind(&ports)
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    counts.discovered += usize::try_from(inserted.rows_affected()).unwrap_or(0);
                }
            }
        }
        let removed = sqlx::query(
            "UPDATE services SET systemd_state = 'removed', sub_state = NULL, main_pid = NULL,
                pids = '[]', listens = '[]'
             WHERE unit IS NOT NULL AND (last_scanned_at IS NULL OR last_scanned_at < $1)
               AND systemd_state IS DISTINCT FROM 'removed'",
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        counts.removed = usize::try_from(removed.rows_affected()).unwrap_or(0);
        let touched: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM services WHERE unit IS NOT NULL")
                .fetch_all(&mut *tx)
                .await?;
        counts.changes = reconcile_all(&mut tx, touched, now, self.rules).await?;

        for t in timers {
            sqlx::query(
                "INSERT INTO timers (name, description, active_state, schedule, last_trigger, next_elapse, unit,
                    unit_active_state, last_result, last_exit_status, last_exit, removed, last_scanned_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12)
                 ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                    active_state = excluded.active_state, schedule = excluded.schedule,
                    last_trigger = excluded.last_trigger, next_elapse = excluded.next_elapse,
                    unit = excluded.unit, unit_active_state = excluded.unit_active_state,
                    last_result = excluded.last_result, last_exit_status = excluded.last_exit_status,
                    last_exit = excluded.last_exit, removed = 0, last_scanned_at = excluded.last_scanned_at",
            )
            .bind(&t.name)
            .bind(&t.description)
            .bind(&t.active_state)
            .bind(to_json(&t.schedule))
            .bind(t.last_trigger.map(ms))
            .bind(t.next_elapse.map(ms))
            .bind(&t.unit)
            .bind(t.unit_active_state.as_deref())
            .bind(t.last_result.as_deref())
            .bind(t.last_exit_status.map(i64::from))
            .bind(t.last_exit.map(ms))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE timers SET removed = 1 WHERE last_scanned_at < $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn find_by_unit(&self, unit: &str) -> Result<Option<Service>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM services WHERE unit = $1 OR (unit IS NULL AND name = $2) ORDER BY unit IS NULL LIMIT 1",
        )
        .bind(unit)
        .bind(unit)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(service_from_row).transpose()?)
    }

    async fn set_unit_state(
        &self,
        unit: &str,
        state: &UnitState,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Service>, Vec<StatusEventView>), StoreError> {
        let mut tx = self.write_tx().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE services SET systemd_state = $1, sub_state = $2, main_pid = $3,
                restarts = $4, unit_result = $5, exit_status = $6, active_since = $7
             WHERE unit = $8 RETURNING id",
        )
        .bind(&state.active_state)
        .bind(&state.sub_state)
        .bind(state.main_pid.map(i64::from))
        .bind(state.restarts.map(i64::from))
        .bind(state.result.as_deref())
        .bind(state.exit_status.map(i64::from))
        .bind(state.active_since.map(ms))
        .bind(unit)
        .fetch_all(&mut *tx)
        .await?;
        let done = reconcile_services(&mut tx, ids, now, self.rules).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn apply_containers(
        &self,
        containers: &[DiscoveredContainer],
        now: DateTime<Utc>,
    ) -> Result<ScanCounts, StoreError> {
        let now_ms = ms(now);
        let mut counts = ScanCounts::default();
        let mut tx = self.write_tx().await?;
        let known: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, container FROM services WHERE container IS NOT NULL")
                .fetch_all(&mut *tx)
                .await?;
        let mut touched: Vec<i64> = known.iter().map(|(id, _)| *id).collect();
        for c in containers {
            let name = &c.info.name;
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM services
                 WHERE container = $1 OR (container IS NULL AND unit IS NULL AND server_id IS NULL AND name = $2)
                 ORDER BY container IS NULL LIMIT 1",
            )
            .bind(name)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let info = to_json(&c.info);
            match existing {
                Some(id) => {
                    sqlx::query(
                        "UPDATE services SET container = $1, container_info = $2, container_state = $7,
                            last_scanned_at = $3,
                            status = CASE WHEN status = 'configured' THEN status ELSE $4 END,
                            port = CASE WHEN status = 'configured' AND port IS NOT NULL THEN port ELSE $5 END
                         WHERE id = $6",
                    )
                    .bind(name)
                    .bind(&info)
                    .bind(now_ms)
                    .bind(c.status.as_str())
                    .bind(c.port.map(i64::from))
                    .bind(id)
                    .bind(&c.info.state)
                    .execute(&mut *tx)
                    .await?;
                    counts.updated += 1;
                    touched.push(id);
                }
                None => {
                    let id: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO services (name, port, status, container, container_info,
                            container_state, last_scanned_at, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $9, $6, $7, $8)
                         ON CONFLICT DO NOTHING RETURNING id",
                    )
                    .bind(name)
                    .bind(c.port.map(i64::from))
                    .bind(c.status.as_str())
                    .bind(name)
                    .bind(&info)
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(&c.info.state)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(id) = id {
                        counts.discovered += 1;
                        touched.push(id);
                    }
                }
            }
        }
        for (id, name) in &known {
            if containers.iter().any(|c| &c.info.name == name) {
                continue;
            }
            let gone = sqlx::query(
                "UPDATE services SET container_info = $1, container_state = 'removed'
                 WHERE id = $2 AND container_state IS DISTINCT FROM 'removed'",
            )
            .bind(to_json(&lookout_proto::container::ContainerView::removed(
                name,
            )))
            .bind(*id)
            .execute(&mut *tx)
            .await?;
            counts.removed += usize::try_from(gone.rows_affected()).unwrap_or(0);
        }
        touched.sort_unstable();
        touched.dedup();
        counts.changes = reconcile_all(&mut tx, touched, now, self.rules).await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn set_container_state(
        &self,
        container: &lookout_proto::container::ContainerView,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Service>, Vec<StatusEventView>), StoreError> {
        let mut tx = self.write_tx().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE services SET container_info = $1, container_state = $3
             WHERE container = $2 RETURNING id",
        )
        .bind(to_json(container))
        .bind(&container.name)
        .bind(&container.state)
        .fetch_all(&mut *tx)
        .await?;
        let done = reconcile_services(&mut tx, ids, now, self.rules).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn set_waiting(
        &self,
        waiting: &[(i64, Option<lookout_proto::depends::WaitingOn>)],
        now: DateTime<Utc>,
    ) -> Result<(Vec<Service>, Vec<StatusEventView>), StoreError> {
        let mut tx = self.write_tx().await?;
        let (mut services, mut changes) = (Vec::new(), Vec::new());
        for (id, on) in waiting {
            sqlx::query("UPDATE services SET waiting_on = $1 WHERE id = $2")
                .bind(on.as_ref().map(to_json))
                .bind(*id)
                .execute(&mut *tx)
                .await?;
            if let Some((service, reconciled)) =
                reconcile_service(&mut tx, *id, now, self.rules).await?
            {
                services.push(service);
                changes.extend(reconciled.change);
            }
        }
        tx.commit().await?;
        Ok((services, changes))
    }

    async fn set_unit_link(&self, id: i64, unit: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE services SET unit = $1 WHERE id = $2")
            .bind(unit)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_removed(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM services WHERE status != 'configured'
               AND (systemd_state = 'removed' OR container_state = 'removed')",
        )
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM timers WHERE removed = 1")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn list_timers(&self) -> Result<Vec<TimerView>, StoreError> {
        let rows = sqlx::query("SELECT * FROM timers ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(timer_from_row).collect::<Result<_, _>>()?)
    }

    async fn get_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM hub_state WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_state(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO hub_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn heartbeat(
        &self,
        name: &str,
        ip: &str,
        ttl_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat, StoreError> {
        let mut tx = self.write_tx().await?;
        let refreshed: Option<i64> = sqlx::query_scalar(
            "UPDATE services SET last_heartbeat = $1, heartbeat_ip = $2
             WHERE name = $3 AND heartbeat_ttl_secs IS NOT NULL RETURNING id",
        )
        .bind(ms(now))
        .bind(ip)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let (id, created) = match refreshed {
            Some(id) => (id, false),
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO services (name, description, status, heartbeat_ip, heartbeat_ttl_secs,
                        last_heartbeat, created_at, updated_at)
                     VALUES ($1, $2, 'configured', $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(name)
                .bind(format!("Sends heartbeats from {ip}"))
                .bind(ip)
                .bind(to_i64(Some(ttl_secs)))
                .bind(ms(now))
                .bind(ms(now))
                .bind(ms(now))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| name_conflict(e, name))?;
                (id, true)
            }
        };
        let change = reconcile(&mut tx, id, now, self.rules).await?;
        let row = sqlx::query("SELECT * FROM services WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Heartbeat {
            service: service_from_row(&row)?,
            created,
            change,
        })
    }

    async fn overdue(&self, now: DateTime<Utc>) -> Result<Vec<StatusEventView>, StoreError> {
        let now_ms = ms(now);
        // Looked for outside the write lock: the sweeper asks several times a
        // second and nearly always finds nothing. `reconcile` judges each
        // found service again on its current row, so a heartbeat landing in
        // between makes no change.
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM services WHERE state != 'FAILURE' AND (
                (heartbeat_ttl_secs IS NOT NULL AND last_heartbeat + heartbeat_ttl_secs * 1000 < $1)
                OR (push_token_hash IS NOT NULL AND last_push
                    + (COALESCE(push_period_secs, 86400) + COALESCE(push_grace_secs, 3600)) * 1000 < $2)
                -- Pings on a cron schedule: judged on their row by the rules.
                OR (push_token_hash IS NOT NULL AND push_schedule IS NOT NULL AND last_push IS NOT NULL))
             UNION
             SELECT s.id FROM services s JOIN servers v ON v.id = s.server_id
             WHERE s.state != 'UNKNOWN'
               AND (v.last_seen_at IS NULL OR v.last_seen_at + v.heartbeat_secs * 3000 < $3)",
        )
        .bind(now_ms)
        .bind(now_ms)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        let changes = reconcile_all(&mut tx, ids, now, self.rules).await?;
        tx.commit().await?;
        Ok(changes)
    }

    async fn remove_silent_heartbeats(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        const SILENT: &str = "heartbeat_ttl_secs IS NOT NULL AND last_heartbeat < $1";
        // A read first, as in `overdue`: a DELETE takes the write lock even
        // when it matches nothing.
        let any: Option<i64> =
            sqlx::query_scalar(&format!("SELECT id FROM services WHERE {SILENT} LIMIT 1"))
                .bind(ms(before))
                .fetch_optional(&self.pool)
                .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        Ok(
            sqlx::query_scalar(&format!("DELETE FROM services WHERE {SILENT} RETURNING id"))
                .bind(ms(before))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn set_push_token(
        &self,
        id: i64,
        token_hash: Option<&str>,
        timing: &lookout_proto::push::PushTiming,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE services SET push_token_hash = COALESCE($1, push_token_hash),
                push_period_secs = $2, push_grace_secs = $3, push_schedule = $4, push_tz = $5
             WHERE id = $6",
        )
        .bind(token_hash)
        .bind(to_i64(Some(timing.period_secs)))
        .bind(to_i64(Some(timing.grace_secs)))
        .bind(timing.schedule.as_ref().map(|s| s.expr().to_owned()))
        .bind(timing.schedule.as_ref().map(|s| s.zone().to_owned()))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_push(
        &self,
        token_hash: &str,
        ping: &lookout_proto::push::Ping,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, Option<StatusEventView>)>, StoreError> {
        use lookout_proto::push::Ping;
        let (status, message, duration_ms) = match ping {
            Ping::Start => {
                // A run began: nothing to say of the status yet.
                let id: Option<i64> = sqlx::query_scalar(
                    "UPDATE services SET push_started_at = $1
                     WHERE push_token_hash = $2 RETURNING id",
                )
                .bind(ms(now))
                .bind(token_hash)
                .fetch_optional(&mut *self.write_conn().await?)
                .await?;
                return Ok(id.map(|id| (id, None)));
            }
            Ping::Result {
                status,
                message,
                duration_ms,
            } => (status, message, duration_ms),
        };
        let mut tx = self.write_tx().await?;
        // A run's time is what the sender said, else the time since its
        // start; a ping ends the run either way.
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE services SET last_push = $1, push_status = $2, push_message = $3,
                push_duration_ms = COALESCE($4, CASE WHEN push_started_at <= $1
                    THEN $1 - push_started_at END),
                push_started_at = NULL
             WHERE push_token_hash = $5 RETURNING id",
        )
        .bind(ms(now))
        .bind(status.as_str())
        .bind(message.as_deref())
        .bind(to_i64(*duration_ms))
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let change = reconcile(&mut tx, id, now, self.rules).await?;
        tx.commit().await?;
        Ok(Some((id, change)))
    }

    async fn status_timelines(
        &self,
        since: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<i64, crate::Timeline>, StoreError> {
        let before: Vec<(i64, String)> = sqlx::query_as(
            "SELECT service_id, new_state FROM (
                SELECT service_id, new_state,
                    ROW_NUMBER() OVER (PARTITION BY service_id ORDER BY at DESC, id DESC) AS n
                FROM status_events WHERE at <= $1) AS before
             WHERE n = 1",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        let after: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT service_id, at, new_state FROM status_events WHERE at > $1
             ORDER BY service_id, at, id",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::HashMap<i64, crate::Timeline> =
            std::collections::HashMap::new();
        for (id, state) in before {
            out.entry(id).or_default().0 = Status::parse(&state);
        }
        for (id, at, state) in after {
            if let Some(state) = Status::parse(&state) {
                out.entry(id).or_default().1.push((time(at), state));
            }
        }
        Ok(out)
    }

    async fn recent_checks(
        &self,
        per_service: u32,
        since: DateTime<Utc>,
    ) -> Result<
        std::collections::HashMap<i64, Vec<(DateTime<Utc>, Option<u64>, HealthStatus)>>,
        StoreError,
    > {
        let rows: Vec<(i64, i64, Option<i64>, String)> = sqlx::query_as(
            "SELECT service_id, checked_at, latency_ms, status FROM (
                SELECT service_id, checked_at, latency_ms, status, id,
                    ROW_NUMBER() OVER (PARTITION BY service_id ORDER BY checked_at DESC, id DESC) AS n
                FROM health_checks WHERE checked_at >= $1) AS recent
             WHERE n <= $2 ORDER BY service_id, checked_at, id",
        )
        .bind(ms(since))
        .bind(i64::from(per_service))
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::HashMap<i64, Vec<_>> = std::collections::HashMap::new();
        for (id, at, latency, status) in rows {
            out.entry(id).or_default().push((
                time(at),
                to_u64(latency),
                HealthStatus::parse(&status).unwrap_or(HealthStatus::Unknown),
            ));
        }
        Ok(out)
    }

    async fn create_channel(
        &self,
        name: &str,
        kind: lookout_proto::notify::ChannelKind,
        config: &serde_json::Map<String, serde_json::Value>,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<Channel, StoreError> {
        let row = sqlx::query(
            "INSERT INTO channels (name, kind, config, enabled, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING *",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(serde_json::Value::Object(config.clone()).to_string())
        .bind(i64::from(enabled))
        .bind(ms(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| name_conflict(e, name))?;
        Ok(channel_from_row(&row)?)
    }

    async fn list_channels(&self) -> Result<Vec<Channel>, StoreError> {
        let rows = sqlx::query("SELECT * FROM channels ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(channel_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn get_channel(&self, id: i64) -> Result<Option<Channel>, StoreError> {
        let row = sqlx::query("SELECT * FROM channels WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(channel_from_row).transpose()?)
    }

    async fn update_channel(
        &self,
        id: i64,
        name: &str,
        kind: lookout_proto::notify::ChannelKind,
        config: &serde_json::Map<String, serde_json::Value>,
        enabled: bool,
    ) -> Result<Option<Channel>, StoreError> {
        let row = sqlx::query(
            "UPDATE channels SET name = $1, kind = $2, config = $3, enabled = $4 WHERE id = $5 RETURNING *",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(serde_json::Value::Object(config.clone()).to_string())
        .bind(i64::from(enabled))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| name_conflict(e, name))?;
        Ok(row.as_ref().map(channel_from_row).transpose()?)
    }

    async fn delete_channel(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM channels WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_delivery(
        &self,
        channel_id: i64,
        service_id: Option<i64>,
        kind: &str,
        sent: bool,
        attempts: u32,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO deliveries (channel_id, service_id, kind, status, attempts, error, at)
             SELECT $1, (SELECT id FROM services WHERE id = $2), $3, $4, $5, $6, $7
             WHERE EXISTS (SELECT 1 FROM channels WHERE id = $8)",
        )
        .bind(channel_id)
        .bind(service_id)
        .bind(kind)
        .bind(if sent { "sent" } else { "failed" })
        .bind(i64::from(attempts))
        .bind(error)
        .bind(ms(now))
        .bind(channel_id)
        .execute(&mut *tx)
        .await?;
        if sent {
            sqlx::query("UPDATE channels SET last_sent_at = $1, last_error = NULL WHERE id = $2")
                .bind(ms(now))
                .bind(channel_id)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE channels SET last_error = $1 WHERE id = $2")
                .bind(error)
                .bind(channel_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<(
            i64,
            i64,
            Option<i64>,
            String,
            String,
            i64,
            Option<String>,
            i64,
        )> = sqlx::query_as(
            "SELECT id, channel_id, service_id, kind, status, attempts, error, at FROM deliveries
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, channel_id, service_id, kind, status, attempts, error, at)| Delivery {
                    id,
                    channel_id,
                    service_id,
                    kind,
                    status,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    error,
                    at: time(at),
                },
            )
            .collect())
    }

    fn concurrent_writes(&self) -> usize {
        match self.backend {
            Backend::Sqlite => 1,
            // A quarter of the pool: batches side by side, and room left
            // for the reads and single writes.
            Backend::Postgres => 4,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        if let Some(conn) = self.writer.lock().await.take() {
            let _ = conn.close().await;
        }
        self.writes.close().await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_proto::service::{parse_new_service, parse_service_patch};
    use serde_json::json;

    async fn store() -> (SqlStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open(&dir.path().join("t.db")).await.unwrap();
        (store, dir)
    }

    fn new(v: serde_json::Value) -> NewService {
        parse_new_service(v.as_object().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn wal_mode_is_on() {
        let (store, _dir) = store().await;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    /// The writer's connection is held, never handed back to a pool: a
    /// write dropped half-way (its task cancelled) must leave nothing, and
    /// the next write must find the connection out of any transaction.
    #[tokio::test]
    async fn a_dropped_write_leaves_nothing_and_blocks_nothing() {
        let (store, _dir) = store().await;
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (kept, _) = store
            .register_service(&new(json!({"name": "kept"})), now)
            .await
            .unwrap();

        let mut tx = store.write_tx().await.unwrap();
        sqlx::query("UPDATE services SET description = 'half' WHERE id = $1")
            .bind(kept.id)
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);
        let check = HealthCheck {
            service_id: kept.id,
            checked_at: now,
            status: HealthStatus::Healthy,
            url: None,
            response_code: Some(200),
            latency_ms: Some(3),
            error: None,
            warning: None,
            cert_expires_at: None,
        };
        // A script transaction dropped between its two scripts.
        {
            let conn = store.write_conn().await.unwrap();
            let mut tx = script::ScriptTx::new(conn);
            let results = script::results_json(std::slice::from_ref(&check));
            tx.write(results).await.unwrap();
        }

        // The next writes go in, and neither dropped write is there.
        let (other, _) = store
            .register_service(&new(json!({"name": "after"})), now)
            .await
            .unwrap();
        let service = store.get_service(kept.id).await.unwrap().unwrap();
        assert_eq!(service.description, None);
        assert_eq!(service.last_health_check, None);
        assert!(store.get_service(other.id).await.unwrap().is_some());
        let recorded = store.record_health_check(&check).await.unwrap();
        assert!(matches!(recorded, Recorded::Stored(_)), "{recorded:?}");
    }

    #[tokio::test]
    async fn duplicate_names_conflict_and_leave_the_first_intact() {
        let (store, _dir) = store().await;
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let a = store
            .create_service(&new(json!({"name": "a", "port": 1})), now)
            .await
            .unwrap();
        let err = store
            .create_service(&new(json!({"name": "a", "port": 2})), now)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { field: "name", .. }));
        let b = store
            .create_service(&new(json!({"name": "b"})), now)
            .await
            .unwrap();
        let patch = parse_service_patch(json!({"name": "a"}).as_object().unwrap()).unwrap();
        assert!(matches!(
            store.update_service(b.id, &patch, now).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(
            store.get_service(a.id).await.unwrap().unwrap().port,
            Some(1)
        );
    }

    #[tokio::test]
    async fn changing_the_url_forgets_cached_health() {
        let (store, _dir) = store().await;
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let s = store
            .create_service(
                &new(json!({"name": "a", "base_url": "http://h", "health_endpoint": "/h"})),
                now,
            )
            .await
            .unwrap();
        let check = HealthCheck {
            service_id: s.id,
            checked_at: now,
            status: HealthStatus::Healthy,
            url: s.check_url(),
            response_code: Some(200),
            latency_ms: Some(3),
            error: None,
            warning: None,
            cert_expires_at: None,
        };
        let recorded = store.record_health_check(&check).await.unwrap();
        let Recorded::Stored(Some(change)) = recorded else {
            panic!("expected a status change, got {recorded:?}");
        };
        assert_eq!((change.old, change.new), (Status::Unknown, Status::Ok));
        assert_eq!(
            store.status_events(Some(s.id), 10).await.unwrap(),
            vec![change]
        );
        assert_eq!(
            store
                .get_service(s.id)
                .await
                .unwrap()
                .unwrap()
                .health_status,
            HealthStatus::Healthy
        );
        let patch = parse_service_patch(json!({"description": "d"}).as_object().unwrap()).unwrap();
        let s2 = store
            .update_service(s.id, &patch, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s2.health_status,
            HealthStatus::Healthy,
            "unrelated edits keep the health"
        );
        let patch =
            parse_service_patch(json!({"base_url": "http://other"}).as_object().unwrap()).unwrap();
        let s3 = store
            .update_service(s.id, &patch, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s3.health_status, HealthStatus::Unknown);
        assert_eq!(s3.last_health_check, None);
        assert_eq!(
            store.health_history(s.id, 10).await.unwrap().len(),
            1,
            "history is kept"
        );
    }

    #[tokio::test]
    async fn results_for_deleted_services_are_dropped() {
        let (store, _dir) = store().await;
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let s = store
            .create_service(&new(json!({"name": "a"})), now)
            .await
            .unwrap();
        assert!(store.delete_service(s.id).await.unwrap());
        assert!(!store.delete_service(s.id).await.unwrap());
        let check = HealthCheck {
            service_id: s.id,
            checked_at: now,
            status: HealthStatus::Unhealthy,
            url: None,
            response_code: None,
            latency_ms: None,
            error: Some("x".into()),
            warning: None,
            cert_expires_at: None,
        };
        assert_eq!(
            store.record_health_check(&check).await.unwrap(),
            Recorded::Dropped
        );
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM health_checks")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
