//! [`LeaseStore`] on SQL: the `hubs`, `check_leases` and `job_leases` tables.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ms, opt_time, SqlStore};
use crate::leases::{CheckLeases, LeaseStore};
use crate::StoreError;

/// Hubs not seen for a day are forgotten.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 4)
}

#[async_trait]
impl LeaseStore for SqlStore {
    async fn check_leases(
        &self,
        hub: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<CheckLeases, StoreError> {
        let (now, lease) = (ms(now), lease_ms(lease));
        let expires = now + lease;
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO hubs (id, started_at, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(hub)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM hubs WHERE seen_at < $1")
            .bind(now - FORGET_AFTER_MS)
            .execute(&mut *tx)
            .await?;
        let hubs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hubs WHERE seen_at >= $1")
            .bind(now - lease)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE check_leases SET expires_at = $1 WHERE hub = $2")
            .bind(expires)
            .bind(hub)
            .execute(&mut *tx)
            .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM services WHERE status = 'configured'")
                .fetch_one(&mut *tx)
                .await?;
        let mine: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM check_leases WHERE hub = $1")
            .bind(hub)
            .fetch_one(&mut *tx)
            .await?;
        let hubs = hubs.max(1);
        let share = (total + hubs - 1) / hubs;
        if mine > share {
            // Over the share (a hub joined): the highest ids go back, and
            // another hub takes them on its next renewal.
            sqlx::query(
                "DELETE FROM check_leases WHERE service_id IN (
                    SELECT service_id FROM check_leases WHERE hub = $1
                    ORDER BY service_id DESC LIMIT $2)",
            )
            .bind(hub)
            .bind(mine - share)
            .execute(&mut *tx)
            .await?;
        } else if mine < share {
            // Free or expired leases only: a live hub's lease is never taken.
            sqlx::query(
                "INSERT INTO check_leases (service_id, hub, expires_at)
                 SELECT s.id, $1, $2 FROM services s
                 LEFT JOIN check_leases l ON l.service_id = s.id
                 WHERE s.status = 'configured' AND (l.service_id IS NULL OR l.expires_at < $3)
                 ORDER BY s.id LIMIT $4
                 ON CONFLICT (service_id) DO UPDATE SET hub = excluded.hub,
                    expires_at = excluded.expires_at
                 WHERE check_leases.expires_at < $5",
            )
            .bind(hub)
            .bind(expires)
            .bind(now)
            .bind(share - mine)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let owned: Vec<i64> =
            sqlx::query_scalar("SELECT service_id FROM check_leases WHERE hub = $1")
                .bind(hub)
                .fetch_all(&mut *tx)
                .await?;
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(expires_at) FROM check_leases WHERE hub != $1")
                .bind(hub)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(CheckLeases {
            owned: owned.into_iter().collect(),
            hubs: usize::try_from(hubs).unwrap_or(1),
            next_foreign_expiry: opt_time(next),
        })
    }

    async fn release_leases(&self, hub: &str) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for sql in [
            "DELETE FROM check_leases WHERE hub = $1",
            "DELETE FROM job_leases WHERE hub = $1",
            "DELETE FROM hubs WHERE id = $1",
        ] {
            sqlx::query(sql).bind(hub).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn job_lease(
        &self,
        job: &str,
        hub: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = ms(now);
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO job_leases (name, hub, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET hub = excluded.hub, expires_at = excluded.expires_at
             WHERE job_leases.hub = excluded.hub OR job_leases.expires_at < $4",
        )
        .bind(job)
        .bind(hub)
        .bind(now + lease_ms(lease))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let holder: Option<String> =
            sqlx::query_scalar("SELECT hub FROM job_leases WHERE name = $1")
                .bind(job)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(holder.as_deref() == Some(hub))
    }
}
