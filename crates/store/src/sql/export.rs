//! `lookout export` / `lookout import`: the whole database as one versioned
//! JSON document (docs/export.md), to back up and to move between databases.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{Backend, SqlStore};
use crate::StoreError;

/// What the `format` field of an export says.
pub const EXPORT_FORMAT: &str = "lookout-export";
/// The version of the document's shape (not of the schema, which it also names).
pub const EXPORT_VERSION: u64 = 1;

/// Every table an export holds, parents before children. A test checks that
/// it names every table of the schema, so a new table is a decision.
pub const EXPORT_TABLES: &[&str] = &[
    "users",
    "credentials",
    "audit_log",
    "hub_state",
    "channels",
    "servers",
    "services",
    "health_checks",
    "check_hours",
    "status_events",
    "deliveries",
    "check_results",
    "event_log",
    "timers",
    "status_pages",
    "push_subscriptions",
    "unit_usage",
    "host_usage",
];

/// Tables that only coordinate running hubs (who is alive, who checks
/// what): not data, so not exported. A test checks that every table is in
/// one list or the other.
pub const COORDINATION_TABLES: &[&str] = &["hubs", "check_leases", "job_leases"];

fn refused(message: impl Into<String>) -> StoreError {
    StoreError::Refused(message.into())
}

/// The key rows are exported in, the same on every engine.
fn order_key(table: &str) -> &'static [&'static str] {
    match table {
        "timers" => &["name"],
        "hub_state" => &["key"],
        "unit_usage" => &["service_id", "width", "start"],
        "host_usage" => &["host", "width", "start"],
        _ => &["id"],
    }
}

/// `ORDER BY` for `table`'s key, text in byte order on PostgreSQL (as
/// SQLite sorts it); `alias.` before each column when given.
fn order_by(table: &str, alias: &str, text_in_bytes: bool) -> String {
    order_key(table)
        .iter()
        .map(|c| {
            let text = matches!(*c, "name" | "key" | "host");
            let collate = if text && text_in_bytes {
                " COLLATE \"C\""
            } else {
                ""
            };
            format!("{alias}\"{c}\"{collate}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table's columns with their SQL types, in the schema's order.
async fn columns(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    table: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let sql = match backend {
        Backend::Sqlite => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
        Backend::Postgres => {
            "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
        }
    };
    sqlx::query_as(sql).bind(table).fetch_all(conn).await
}

async fn schema_version(conn: &mut sqlx::AnyConnection) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(conn)
            .await?
            .unwrap_or(0),
    )
}

impl SqlStore {
    /// The tables of the schema that hold data (not sqlx's or SQLite's own).
    pub async fn table_names(&self) -> Result<Vec<String>, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table'
                   AND name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
                   AND table_name != '_sqlx_migrations' ORDER BY table_name"
            }
        };
        Ok(sqlx::query_scalar(sql).fetch_all(&self.pool).await?)
    }

    /// How many rows a table of the export holds.
    pub async fn count_rows(&self, table: &str) -> Result<u64, StoreError> {
        if !EXPORT_TABLES.contains(&table) {
            return Err(refused(format!("no table {table:?}")));
        }
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{table}\""))
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every row of every table, read in one transaction (a consistent copy).
    pub async fn export(&self, now: DateTime<Utc>) -> Result<Value, StoreError> {
        let mut tx = self.pool.begin().await?;
        let schema = schema_version(&mut tx).await?;
        let mut tables = Map::new();
        for table in EXPORT_TABLES {
            let sql = match self.backend {
                Backend::Sqlite => {
                    let cols = columns(&mut tx, self.backend, table).await?;
                    let pairs: Vec<String> = cols
                        .iter()
                        .map(|(c, _)| format!("'{c}', \"{c}\""))
                        .collect();
                    // SQLite's functions take at most 127 arguments: a wide
                    // table's object is built in parts and joined as text
                    // ('{"a":1' || ',' || '"b":2}').
                    let parts: Vec<String> = pairs
                        .chunks(60)
                        .map(|chunk| format!("json_object({})", chunk.join(", ")))
                        .collect();
                    let object = match parts.as_slice() {
                        [one] => one.clone(),
                        _ => {
                            let last = parts.len() - 1;
                            parts
                                .iter()
                                .enumerate()
                                .map(|(i, p)| match i {
                                    0 => format!("substr({p}, 1, length({p}) - 1)"),
                                    _ if i == last => format!("substr({p}, 2)"),
                                    _ => format!("substr({p}, 2, length({p}) - 2)"),
                                })
                                .collect::<Vec<_>>()
                                .join(" || ',' || ")
                        }
                    };
                    format!(
                        "SELECT {object} FROM \"{table}\" ORDER BY {}",
                        order_by(table, "", false)
                    )
                }
                // Byte order for text keys, as SQLite sorts them.
                Backend::Postgres => {
                    format!(
                        "SELECT CAST(row_to_json(t) AS TEXT) FROM \"{table}\" t ORDER BY {}",
                        order_by(table, "t.", true)
                    )
                }
            };
            let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut *tx).await?;
            let rows: Vec<Value> = rows
                .iter()
                .map(|r| serde_json::from_str(r).unwrap_or(Value::Null))
                .collect();
            tables.insert((*table).to_owned(), Value::Array(rows));
        }
        tx.commit().await?;
        Ok(json!({
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "schema": schema,
            "exported_at": now,
            "tables": tables,
        }))
    }

    /// Loads an export into this database, which must be empty and at the
    /// export's schema version. All or nothing; returns the rows loaded.
    pub async fn import(&self, dump: &Value) -> Result<u64, StoreError> {
        if dump["format"] != EXPORT_FORMAT {
            return Err(refused(
                "not a lookout export (its \"format\" is not \"lookout-export\")",
            ));
        }
        if dump["version"].as_u64() != Some(EXPORT_VERSION) {
            return Err(refused(format!(
                "export format version {} is not one this lookout reads ({EXPORT_VERSION})",
                dump["version"]
            )));
        }
        let mut tx = self.write_tx().await?;
        let schema = schema_version(&mut tx).await?;
        if dump["schema"].as_i64() != Some(schema) {
            return Err(refused(format!(
                "the export is of schema version {}, this database is at {schema}: import with the lookout that exported it",
                dump["schema"]
            )));
        }
        let Some(tables) = dump["tables"].as_object() else {
            return Err(refused("the export has no \"tables\" object"));
        };
        if let Some(unknown) = tables.keys().find(|k| !EXPORT_TABLES.contains(&k.as_str())) {
            return Err(refused(format!(
                "the export has an unknown table {unknown:?}"
            )));
        }
        for table in EXPORT_TABLES {
            let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{table}\""))
                .fetch_one(&mut *tx)
                .await?;
            if count > 0 {
                return Err(refused(format!(
                    "the database is not empty ({table} has {count} rows): import into a new data directory or database"
                )));
            }
        }
        if self.backend == Backend::Sqlite {
            // Rows reference each other; checked at commit. (PostgreSQL
            // checks each row as it comes, and parents come first.)
            sqlx::query("PRAGMA defer_foreign_keys = ON")
                .execute(&mut *tx)
                .await?;
        }
        let mut loaded = 0;
        for table in EXPORT_TABLES {
            let known = columns(&mut tx, self.backend, table).await?;
            let rows = match tables.get(*table) {
                None => continue,
                Some(Value::Array(rows)) => rows,
                Some(_) => return Err(refused(format!("table {table:?} is not an array of rows"))),
            };
            for (i, row) in rows.iter().enumerate() {
                let Some(row) = row.as_object() else {
                    return Err(refused(format!("{table}[{i}] is not an object")));
                };
                if let Some(bad) = row.keys().find(|k| !known.iter().any(|(c, _)| c == *k)) {
                    return Err(refused(format!(
                        "{table}[{i}] has an unknown column {bad:?}"
                    )));
                }
                let cols: Vec<&String> = row.keys().collect();
                let sql = format!(
                    "INSERT INTO \"{table}\" ({}) VALUES ({})",
                    cols.iter()
                        .map(|c| format!("\"{c}\""))
                        .collect::<Vec<_>>()
                        .join(", "),
                    cols.iter()
                        .enumerate()
                        .map(|(n, c)| self.placeholder(n + 1, &known, c))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                // Not prepared once for the table: the same INSERT binds a
                // null in one row and a number in the next, and a statement
                // prepared for the first row would read the second's number
                // as that row's parameter type (PostgreSQL).
                let mut query = sqlx::query(&sql).persistent(false);
                for col in &cols {
                    query = match &row[col.as_str()] {
                        Value::Null => query.bind(None::<String>),
                        Value::Bool(b) => query.bind(i64::from(*b)),
                        Value::Number(n) => match n.as_i64() {
                            Some(v) => query.bind(v),
                            None => query.bind(n.as_f64().unwrap_or_default()),
                        },
                        Value::String(s) => query.bind(s.clone()),
                        other => {
                            return Err(refused(format!(
                                "{table}[{i}].{col} holds {other}, not a value a column takes"
                            )))
                        }
                    };
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        let dangling = e.as_database_error().is_some_and(|d| {
                            d.kind() == sqlx::error::ErrorKind::ForeignKeyViolation
                        });
                        if dangling {
                            refused(format!(
                                "the rows do not fit together: {table}[{i}] refers to a row the export does not have"
                            ))
                        } else {
                            refused(format!("{table}[{i}] cannot be loaded: {e}"))
                        }
                    })?;
                loaded += 1;
            }
        }
        if self.backend == Backend::Postgres {
            // Rows came with their ids: new rows must number after them.
            for table in EXPORT_TABLES {
                if order_key(table) == ["id"] {
                    sqlx::query(&format!(
                        "SELECT CAST(setval(pg_get_serial_sequence('\"{table}\"', 'id'),
                                COALESCE(MAX(id), 0) + 1, false) AS BIGINT) FROM \"{table}\""
                    ))
                    .fetch_one(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit()
            .await
            .map_err(|e| refused(format!("the rows do not fit together: {e}")))?;
        Ok(loaded)
    }

    /// Parameter `n` for `column`: PostgreSQL is told the column's type, so
    /// that a JSON number can fill a text column and a null any column.
    fn placeholder(&self, n: usize, known: &[(String, String)], column: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("${n}"),
            Backend::Postgres => {
                let ty = known
                    .iter()
                    .find(|(c, _)| c == column)
                    .map_or("text", |(_, t)| t.as_str());
                format!("CAST(${n} AS {ty})")
            }
        }
    }
}
