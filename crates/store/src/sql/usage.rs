//! [`UsageStore`] on SQL: the `unit_usage` and `host_usage` tables, their
//! figures as integers in the units the migration names.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::SqlStore;
use crate::usage::{HostUsageRow, Spread, UnitUsageRow, UsageStore};
use crate::StoreError;

fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// A figure in `1/scale` units, as stored.
fn int(value: f64, scale: f64) -> i64 {
    (value * scale).round() as i64
}

fn float(value: i64, scale: f64) -> f64 {
    value as f64 / scale
}

fn spread(row: &AnyRow, name: &str, scale: f64) -> Result<Option<Spread>, sqlx::Error> {
    let get = |part: &str| row.try_get::<Option<i64>, _>(format!("{name}_{part}").as_str());
    Ok(match (get("min")?, get("avg")?, get("max")?) {
        (Some(min), Some(avg), Some(max)) => Some(Spread {
            min: float(min, scale),
            avg: float(avg, scale),
            max: float(max, scale),
        }),
        _ => None,
    })
}

fn unit_from_row(row: &AnyRow) -> Result<UnitUsageRow, sqlx::Error> {
    let opt = |name: &str, scale: f64| {
        row.try_get::<Option<i64>, _>(name)
            .map(|v| v.map(|v| float(v, scale)))
    };
    Ok(UnitUsageRow {
        service_id: row.try_get("service_id")?,
        width: u32::try_from(row.try_get::<i64, _>("width")?).unwrap_or(0),
        start: at(row.try_get("start")?),
        samples: u32::try_from(row.try_get::<i64, _>("samples")?).unwrap_or(0),
        cpu: spread(row, "cpu", 100.0)?,
        memory: spread(row, "memory", 1.0)?,
        tasks: opt("tasks_max", 1.0)?,
        io_read: opt("io_read", 1.0)?,
        io_write: opt("io_write", 1.0)?,
    })
}

fn host_from_row(row: &AnyRow) -> Result<HostUsageRow, sqlx::Error> {
    let get = |name: &str| row.try_get::<i64, _>(name);
    let bytes = |name: &str| get(name).map(|v| u64::try_from(v).unwrap_or(0));
    let missing = || sqlx::Error::ColumnNotFound("cpu_avg".into());
    Ok(HostUsageRow {
        host: row.try_get("host")?,
        width: u32::try_from(get("width")?).unwrap_or(0),
        start: at(get("start")?),
        samples: u32::try_from(get("samples")?).unwrap_or(0),
        cpu: spread(row, "cpu", 100.0)?.ok_or_else(missing)?,
        memory: spread(row, "memory", 1.0)?.ok_or_else(missing)?,
        memory_total: bytes("memory_total")?,
        swap: float(get("swap_max")?, 1.0),
        swap_total: bytes("swap_total")?,
        load: float(get("load_max")?, 100.0),
        disk: float(get("disk_max")?, 100.0),
        disk_used: bytes("disk_used")?,
        disk_size: bytes("disk_size")?,
        net_rx: float(get("net_rx")?, 1.0),
        net_tx: float(get("net_tx")?, 1.0),
        disk_read: float(get("disk_read")?, 1.0),
        disk_write: float(get("disk_write")?, 1.0),
        temperature: row
            .try_get::<Option<i64>, _>("temperature_max")?
            .map(|t| float(t, 10.0)),
    })
}

/// How many rows one statement writes: SQLite takes at most 32766 bound
/// values, PostgreSQL 65535.
const ROWS_PER_STATEMENT: usize = 500;

#[async_trait]
impl UsageStore for SqlStore {
    async fn put_unit_usage(&self, rows: &[UnitUsageRow]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 13;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8,
                        b + 9,
                        b + 10,
                        b + 11,
                        b + 12,
                        b + 13
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO unit_usage (service_id, width, start, samples, cpu_min, cpu_avg, cpu_max,
                   memory_min, memory_avg, memory_max, tasks_max, io_read, io_write)
                 SELECT v.* FROM (VALUES {}) AS v
                 WHERE EXISTS (SELECT 1 FROM services s WHERE s.id = v.column1)
                 ON CONFLICT (service_id, width, start) DO UPDATE SET
                   samples = excluded.samples, cpu_min = excluded.cpu_min,
                   cpu_avg = excluded.cpu_avg, cpu_max = excluded.cpu_max,
                   memory_min = excluded.memory_min, memory_avg = excluded.memory_avg,
                   memory_max = excluded.memory_max, tasks_max = excluded.tasks_max,
                   io_read = excluded.io_read, io_write = excluded.io_write",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                let part = |s: Option<Spread>, f: fn(&Spread) -> f64, scale: f64| {
                    s.as_ref().map(|s| int(f(s), scale))
                };
                query = query
                    .bind(r.service_id)
                    .bind(i64::from(r.width))
                    .bind(secs(r.start))
                    .bind(i64::from(r.samples))
                    .bind(part(r.cpu, |s| s.min, 100.0))
                    .bind(part(r.cpu, |s| s.avg, 100.0))
                    .bind(part(r.cpu, |s| s.max, 100.0))
                    .bind(part(r.memory, |s| s.min, 1.0))
                    .bind(part(r.memory, |s| s.avg, 1.0))
                    .bind(part(r.memory, |s| s.max, 1.0))
                    .bind(r.tasks.map(|t| int(t, 1.0)))
                    .bind(r.io_read.map(|t| int(t, 1.0)))
                    .bind(r.io_write.map(|t| int(t, 1.0)));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn put_host_usage(&self, rows: &[HostUsageRow]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for r in rows {
            let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO host_usage (host, width, start, samples, cpu_min, cpu_avg, cpu_max,
                   memory_min, memory_avg, memory_max, memory_total, swap_max, swap_total,
                   load_max, disk_max, disk_used, disk_size, net_rx, net_tx, disk_read, disk_write,
                   temperature_max)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                   $17, $18, $19, $20, $21, $22)
                 ON CONFLICT (host, width, start) DO UPDATE SET
                   samples = excluded.samples, cpu_min = excluded.cpu_min,
                   cpu_avg = excluded.cpu_avg, cpu_max = excluded.cpu_max,
                   memory_min = excluded.memory_min, memory_avg = excluded.memory_avg,
                   memory_max = excluded.memory_max, memory_total = excluded.memory_total,
                   swap_max = excluded.swap_max, swap_total = excluded.swap_total,
                   load_max = excluded.load_max, disk_max = excluded.disk_max,
                   disk_used = excluded.disk_used, disk_size = excluded.disk_size,
                   net_rx = excluded.net_rx, net_tx = excluded.net_tx,
                   disk_read = excluded.disk_read, disk_write = excluded.disk_write,
                   temperature_max = excluded.temperature_max",
            )
            .bind(&r.host)
            .bind(i64::from(r.width))
            .bind(secs(r.start))
            .bind(i64::from(r.samples))
            .bind(int(r.cpu.min, 100.0))
            .bind(int(r.cpu.avg, 100.0))
            .bind(int(r.cpu.max, 100.0))
            .bind(int(r.memory.min, 1.0))
            .bind(int(r.memory.avg, 1.0))
            .bind(int(r.memory.max, 1.0))
            .bind(big(r.memory_total))
            .bind(int(r.swap, 1.0))
            .bind(big(r.swap_total))
            .bind(int(r.load, 100.0))
            .bind(int(r.disk, 100.0))
            .bind(big(r.disk_used))
            .bind(big(r.disk_size))
            .bind(int(r.net_rx, 1.0))
            .bind(int(r.net_tx, 1.0))
            .bind(int(r.disk_read, 1.0))
            .bind(int(r.disk_write, 1.0))
            .bind(r.temperature.map(|t| int(t, 10.0)))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn unit_usage(
        &self,
        service_id: Option<i64>,
        width: u32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UnitUsageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM unit_usage
             WHERE width = $1 AND start >= $2 AND start < $3 AND ($4 = 0 OR service_id = $5)
             ORDER BY start, service_id",
        )
        .bind(i64::from(width))
        .bind(secs(from))
        .bind(secs(to))
        .bind(i64::from(service_id.is_some()))
        .bind(service_id.unwrap_or(0))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(unit_from_row).collect::<Result<_, _>>()?)
    }

    async fn host_usage(
        &self,
        host: Option<&str>,
        width: u32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<HostUsageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM host_usage
             WHERE width = $1 AND start >= $2 AND start < $3 AND ($4 = 0 OR host = $5)
             ORDER BY start, host",
        )
        .bind(i64::from(width))
        .bind(secs(from))
        .bind(secs(to))
        .bind(i64::from(host.is_some()))
        .bind(host.unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(host_from_row).collect::<Result<_, _>>()?)
    }

    async fn usage_span(
        &self,
        width: u32,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        type Span = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let (u_first, u_last, h_first, h_last): Span = sqlx::query_as(
            "SELECT (SELECT MIN(start) FROM unit_usage WHERE width = $1),
                    (SELECT MAX(start) FROM unit_usage WHERE width = $2),
                    (SELECT MIN(start) FROM host_usage WHERE width = $3),
                    (SELECT MAX(start) FROM host_usage WHERE width = $4)",
        )
        .bind(i64::from(width))
        .bind(i64::from(width))
        .bind(i64::from(width))
        .bind(i64::from(width))
        .fetch_one(&self.pool)
        .await?;
        let first = match (u_first, h_first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(first.zip(u_last.max(h_last)).map(|(f, l)| (at(f), at(l))))
    }

    async fn prune_usage(&self, width: u32, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut removed = 0;
        for table in ["unit_usage", "host_usage"] {
            removed += sqlx::query(&format!(
                "DELETE FROM {table} WHERE width = $1 AND start < $2"
            ))
            .bind(i64::from(width))
            .bind(secs(before))
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(removed)
    }
}
