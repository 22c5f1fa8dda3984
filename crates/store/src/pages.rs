//! What the store keeps for readers outside the hub: public status pages,
//! and the browsers that receive Web Push notifications.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lookout_proto::status_page::StatusPageView;

use super::StoreError;

/// A status page's fields as they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPageRow {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub services: Vec<i64>,
    pub tags: Vec<String>,
    pub notice: String,
}

/// One browser's push subscription, belonging to an account (`None`: the
/// operator of a hub without sign-in).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PushSubscription {
    pub id: i64,
    #[serde(skip)]
    pub user_id: Option<i64>,
    /// The push service's URL for this browser: a capability, shown to
    /// nobody but kept to deliver.
    #[serde(skip)]
    pub endpoint: String,
    #[serde(skip)]
    pub p256dh: String,
    #[serde(skip)]
    pub auth: String,
    /// What the browser said it is ("Chrome on Android").
    pub device: String,
    pub created_at: DateTime<Utc>,
    pub last_sent_at: Option<DateTime<Utc>>,
}

/// A new subscription, as a browser sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPushSubscription {
    pub user_id: Option<i64>,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub device: String,
}

#[async_trait]
pub trait PageStore: Send + Sync {
    /// Adds a status page; a slug in use is a conflict.
    async fn create_status_page(
        &self,
        page: &StatusPageRow,
        now: DateTime<Utc>,
    ) -> Result<StatusPageView, StoreError>;

    async fn list_status_pages(&self) -> Result<Vec<StatusPageView>, StoreError>;

    async fn get_status_page(&self, slug: &str) -> Result<Option<StatusPageView>, StoreError>;

    /// Replaces a page's fields; `None` when there is no such page.
    async fn update_status_page(
        &self,
        id: i64,
        page: &StatusPageRow,
        now: DateTime<Utc>,
    ) -> Result<Option<StatusPageView>, StoreError>;

    async fn delete_status_page(&self, id: i64) -> Result<bool, StoreError>;

    /// Adds a browser's subscription, or gives an endpoint already known to
    /// this account its new keys (a browser renews its subscription).
    async fn add_push_subscription(
        &self,
        sub: &NewPushSubscription,
        now: DateTime<Utc>,
    ) -> Result<PushSubscription, StoreError>;

    /// One account's subscriptions (`Some(None)`: the operator's), or every
    /// one (`None`).
    async fn push_subscriptions(
        &self,
        user: Option<Option<i64>>,
    ) -> Result<Vec<PushSubscription>, StoreError>;

    /// Removes a subscription of `user` (`None`: any account's, when the
    /// push service said it is gone).
    async fn delete_push_subscription(
        &self,
        id: i64,
        user: Option<Option<i64>>,
    ) -> Result<bool, StoreError>;

    async fn push_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// The value kept under `key`, writing `value` first if there is none:
    /// hubs sharing a database all read the first one written.
    async fn state_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;
}
