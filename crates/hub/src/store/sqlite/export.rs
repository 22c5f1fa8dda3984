//! `lookout export` / `lookout import`: the whole database as one versioned
//! JSON document (docs/export.md), to back up and to move between databases.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::SqliteStore;
use crate::store::StoreError;

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
    "status_events",
    "deliveries",
    "check_results",
    "event_log",
    "timers",
];

fn refused(message: impl Into<String>) -> StoreError {
    StoreError::Refused(message.into())
}

async fn columns(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
        .bind(table)
        .fetch_all(conn)
        .await
}

async fn schema_version(conn: &mut sqlx::SqliteConnection) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(conn)
            .await?
            .unwrap_or(0),
    )
}

impl SqliteStore {
    /// The tables of the schema that hold data (not sqlx's or SQLite's own).
    pub async fn table_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table'
               AND name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations' ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every row of every table, read in one transaction (a consistent copy).
    pub async fn export(&self, now: DateTime<Utc>) -> Result<Value, StoreError> {
        let mut tx = self.pool.begin().await?;
        let schema = schema_version(&mut tx).await?;
        let mut tables = Map::new();
        for table in EXPORT_TABLES {
            let cols = columns(&mut tx, table).await?;
            let pairs: Vec<String> = cols.iter().map(|c| format!("'{c}', \"{c}\"")).collect();
            let sql = format!(
                "SELECT json_object({}) FROM \"{table}\" ORDER BY rowid",
                pairs.join(", ")
            );
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
        // Rows reference each other; checked at commit.
        sqlx::query("PRAGMA defer_foreign_keys = ON")
            .execute(&mut *tx)
            .await?;
        let mut loaded = 0;
        for table in EXPORT_TABLES {
            let known = columns(&mut tx, table).await?;
            let rows = match tables.get(*table) {
                None => continue,
                Some(Value::Array(rows)) => rows,
                Some(_) => return Err(refused(format!("table {table:?} is not an array of rows"))),
            };
            for (i, row) in rows.iter().enumerate() {
                let Some(row) = row.as_object() else {
                    return Err(refused(format!("{table}[{i}] is not an object")));
                };
                if let Some(bad) = row.keys().find(|k| !known.contains(k)) {
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
                    vec!["?"; cols.len()].join(", ")
                );
                let mut query = sqlx::query(&sql);
                for col in &cols {
                    query = match &row[col.as_str()] {
                        Value::Null => query.bind(None::<i64>),
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
                    .map_err(|e| refused(format!("{table}[{i}] cannot be loaded: {e}")))?;
                loaded += 1;
            }
        }
        tx.commit()
            .await
            .map_err(|e| refused(format!("the rows do not fit together: {e}")))?;
        Ok(loaded)
    }
}
