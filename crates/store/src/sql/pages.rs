//! [`PageStore`] on SQL: the `status_pages` and `push_subscriptions` tables.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lookout_proto::status_page::StatusPageView;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{ms, opt_time, time, SqlStore};
use crate::pages::{NewPushSubscription, PageStore, PushSubscription, StatusPageRow};
use crate::StoreError;

fn json_list<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<Vec<T>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn page_from_row(row: &AnyRow) -> Result<StatusPageView, sqlx::Error> {
    Ok(StatusPageView {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        services: json_list(row, "services")?,
        tags: json_list(row, "tags")?,
        notice: row.try_get("notice")?,
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

fn subscription_from_row(row: &AnyRow) -> Result<PushSubscription, sqlx::Error> {
    Ok(PushSubscription {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        endpoint: row.try_get("endpoint")?,
        p256dh: row.try_get("p256dh")?,
        auth: row.try_get("auth")?,
        device: row.try_get("device")?,
        created_at: time(row.try_get("created_at")?),
        last_sent_at: opt_time(row.try_get("last_sent_at")?),
    })
}

fn slug_conflict(e: sqlx::Error, slug: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            field: "slug",
            value: slug.to_owned(),
        },
        _ => e.into(),
    }
}

/// `user_id = $n`, matching the operator's rows (NULL) when `$n+1` is 1.
fn same_user(n: usize) -> String {
    format!("(user_id = ${n} OR (user_id IS NULL AND ${} = 1))", n + 1)
}

/// A page's fields bound as `$1`…`$7` (slug to the time of the write), in
/// the order both the insert and the update name them.
fn bind_page<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    page: &'q StatusPageRow,
    now: DateTime<Utc>,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>, StoreError> {
    Ok(query
        .bind(&page.slug)
        .bind(&page.title)
        .bind(&page.description)
        .bind(serde_json::to_string(&page.services)?)
        .bind(serde_json::to_string(&page.tags)?)
        .bind(&page.notice)
        .bind(ms(now)))
}

#[async_trait]
impl PageStore for SqlStore {
    async fn create_status_page(
        &self,
        page: &StatusPageRow,
        now: DateTime<Utc>,
    ) -> Result<StatusPageView, StoreError> {
        let row = bind_page(
            sqlx::query(
                "INSERT INTO status_pages (slug, title, description, services, tags, notice, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *",
            ),
            page,
            now,
        )?
        .fetch_one(&self.pool)
        .await
        .map_err(|e| slug_conflict(e, &page.slug))?;
        Ok(page_from_row(&row)?)
    }

    async fn list_status_pages(&self) -> Result<Vec<StatusPageView>, StoreError> {
        let rows = sqlx::query("SELECT * FROM status_pages ORDER BY slug")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(page_from_row).collect::<Result<_, _>>()?)
    }

    async fn get_status_page(&self, slug: &str) -> Result<Option<StatusPageView>, StoreError> {
        let row = sqlx::query("SELECT * FROM status_pages WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(page_from_row).transpose()?)
    }

    async fn update_status_page(
        &self,
        id: i64,
        page: &StatusPageRow,
        now: DateTime<Utc>,
    ) -> Result<Option<StatusPageView>, StoreError> {
        let row = bind_page(
            sqlx::query(
                "UPDATE status_pages SET slug = $1, title = $2, description = $3, services = $4,
                 tags = $5, notice = $6, updated_at = $7 WHERE id = $8 RETURNING *",
            ),
            page,
            now,
        )?
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| slug_conflict(e, &page.slug))?;
        Ok(row.as_ref().map(page_from_row).transpose()?)
    }

    async fn delete_status_page(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM status_pages WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_push_subscription(
        &self,
        sub: &NewPushSubscription,
        now: DateTime<Utc>,
    ) -> Result<PushSubscription, StoreError> {
        // The same browser subscribing again (after a key rotation, or for
        // another account) takes over its row.
        let row = sqlx::query(
            "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, device, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id,
                 p256dh = excluded.p256dh, auth = excluded.auth, device = excluded.device
             RETURNING *",
        )
        .bind(sub.user_id)
        .bind(&sub.endpoint)
        .bind(&sub.p256dh)
        .bind(&sub.auth)
        .bind(&sub.device)
        .bind(ms(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(subscription_from_row(&row)?)
    }

    async fn push_subscriptions(
        &self,
        user: Option<Option<i64>>,
    ) -> Result<Vec<PushSubscription>, StoreError> {
        let rows = match user {
            None => {
                sqlx::query("SELECT * FROM push_subscriptions ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(user) => {
                sqlx::query(&format!(
                    "SELECT * FROM push_subscriptions WHERE {} ORDER BY id",
                    same_user(1)
                ))
                .bind(user.unwrap_or(0))
                .bind(i64::from(user.is_none()))
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows
            .iter()
            .map(subscription_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn delete_push_subscription(
        &self,
        id: i64,
        user: Option<Option<i64>>,
    ) -> Result<bool, StoreError> {
        let done = match user {
            None => {
                sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
            Some(user) => {
                sqlx::query(&format!(
                    "DELETE FROM push_subscriptions WHERE id = $1 AND {}",
                    same_user(2)
                ))
                .bind(id)
                .bind(user.unwrap_or(0))
                .bind(i64::from(user.is_none()))
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected() > 0)
    }

    async fn push_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE push_subscriptions SET last_sent_at = $1 WHERE id = $2")
            .bind(ms(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn state_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO hub_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM hub_state WHERE key = $1")
                .bind(key)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
