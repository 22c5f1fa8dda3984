//! The HTTP surface: the JSON API under `/api` ([`api`]) and the server-rendered
//! dashboard ([`ui`]), sharing one [`AppState`].

pub mod agents;
pub mod api;
pub mod consistency;
pub mod containers;
pub mod devices;
pub mod docs;
pub(crate) mod extract;
pub mod gate;
pub mod heal;
pub mod heartbeat;
pub mod hosts_ui;
pub mod live;
pub mod login;
pub mod metrics;
pub mod notify;
pub mod notify_ui;
pub mod probes;
pub mod servers_ui;
pub mod status_pages;
pub mod systemd;
pub mod table;
pub mod ui;
pub mod usage;
pub mod users;
pub(crate) mod when;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::{Extension, Router};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::clock::SharedClock;
use crate::config::CheckDefaults;
use crate::events::EventBus;
use crate::health::Checker;
use crate::store::Store;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Every service, in memory: reads come from here, changes go through it.
    pub registry: Arc<crate::registry::Registry>,
    /// The database may be shared with other hubs (PostgreSQL): a write's
    /// answer then names its own event, for reading it back elsewhere.
    pub shared_database: bool,
    pub checker: Checker,
    pub clock: SharedClock,
    pub events: EventBus,
    pub checks: CheckDefaults,
    pub max_body_bytes: usize,
    pub discovery: Arc<crate::discovery::Discovery>,
    /// The host's container engine, if any.
    pub containers: Arc<crate::containers::Containers>,
    /// Heartbeat settings.
    pub passive: PassiveSettings,
    /// Recorded events with their ids, for live clients.
    pub live: tokio::sync::broadcast::Sender<crate::live::LiveEvent>,
    /// Cancelled when the hub stops: background tasks and live streams end,
    /// so a graceful shutdown does not wait forever on an open dashboard.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Authentication: settings, rate limiters, sessions and tokens.
    pub auth: Arc<crate::auth::Auth>,
    /// The agents connected to this hub.
    pub fleet: Arc<crate::agents::Fleet>,
    /// This hub's counters, for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Whether every background task still runs.
    pub health: Arc<crate::tasks::TaskHealth>,
    /// Journals followed live now (`GET /api/services/{id}/logs/follow`).
    pub log_followers: Arc<tokio::sync::Semaphore>,
    /// The hub's address as people reach it (`--public-url`), for links in
    /// notices.
    pub public_url: Option<String>,
    /// Browsers may subscribe through a push service over plain HTTP.
    pub web_push_http: bool,
    /// What self-healing did, for the service pages.
    pub heals: Arc<crate::heal::Heals>,
    /// Status pages and badges as last rendered.
    pub public: Arc<status_pages::PublicCache>,
    /// Resource usage: the latest figures of every host and running unit.
    pub usage: Arc<crate::usage::Usage>,
}

/// Settings of services that report in.
#[derive(Debug, Clone, Copy)]
pub struct PassiveSettings {
    pub ttl: std::time::Duration,
    pub remove_after: std::time::Duration,
}

/// No inline script, no foreign origin, no framing.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// Every route of the hub and the router serving them, before state and the
/// hub-wide layers. Tests walk the table.
pub fn table() -> (Router<AppState>, Vec<table::RouteInfo>) {
    let (api, mut info) = api::routes(table::Routes::api("/api")).finish();
    let (root, root_info) = metrics::root_routes(probes::root_routes(heartbeat::root_routes(
        table::Routes::api(""),
    )))
    .finish();
    let (pages, page_info) = devices::page_routes(status_pages::page_routes(notify_ui::routes(
        servers_ui::routes(hosts_ui::routes(login::routes(ui::routes(
            table::Routes::pages(),
        )))),
    )))
    .finish();
    info.extend(root_info);
    info.extend(page_info);
    let api = api
        .fallback(|| async { crate::error::ApiError::NotFound("no such API route".into()) })
        .method_not_allowed_fallback(|| async { crate::error::ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(crate::error::errors_as_json));
    let root = root.layer(axum::middleware::from_fn(crate::error::errors_as_json));
    let router = Router::new()
        .nest("/api", api)
        .merge(root)
        .merge(pages.fallback(ui::not_found));
    (router, info)
}

/// The declared routes: method, path and who may call each.
pub fn route_table() -> Vec<table::RouteInfo> {
    table().1
}

/// The whole router of a hub.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    table()
        .0
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            consistency::read_your_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::gate,
        ))
        .layer(Extension(state.auth.clone()))
        .layer(Extension(crate::auth::guard::HostSystemd(
            state.discovery.scope().is_some(),
        )))
        .layer(Extension(state.metrics.clone()))
        .layer(DefaultBodyLimit::max(limit))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        // Pages load only what the hub serves, run no inline script and
        // cannot be framed.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(axum::middleware::map_response(close_after_refusal))
        // Pages, scripts and JSON are sent gzipped to clients that ask for
        // it; event streams and small bodies are not.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

/// A request refused for its size was not read to its end: its connection
/// cannot carry another request, and the client is told so (`Connection:
/// close`) instead of finding out by writing into a closed socket.
async fn close_after_refusal(mut response: axum::response::Response) -> axum::response::Response {
    if matches!(
        response.status(),
        axum::http::StatusCode::PAYLOAD_TOO_LARGE | axum::http::StatusCode::URI_TOO_LONG
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Registry operations shared by the API and the dashboard. Each one writes
/// through the store and then publishes what changed, so every view and the
/// scheduler hear about it the same way.
impl AppState {
    /// Scans of the hub's host, with what they touch.
    pub fn scans(&self) -> crate::discovery::Scans<'_> {
        crate::discovery::Scans {
            discovery: &self.discovery,
            registry: &self.registry,
            store: self.store.as_ref(),
            clock: self.clock.as_ref(),
            checks: self.checks,
        }
    }

    pub async fn create_service(
        &self,
        new: &lookout_proto::service::NewService,
    ) -> Result<crate::store::Service, crate::store::StoreError> {
        self.channels_exist(&new.channels).await?;
        let (service, _) = self.registry.create(new, self.clock.now()).await?;
        Ok(service)
    }

    /// Refuses a service's `channels` that name no channel.
    async fn channels_exist(&self, ids: &[i64]) -> Result<(), crate::store::StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let channels = self.store.list_channels().await?;
        match ids
            .iter()
            .enumerate()
            .find(|(_, id)| !channels.iter().any(|c| c.id == **id))
        {
            Some((i, id)) => Err(crate::store::StoreError::Invalid(
                lookout_proto::FieldError::new(
                    format!("channels[{i}]"),
                    format!("no channel has id {id}"),
                ),
            )),
            None => Ok(()),
        }
    }

    /// Refuses to change a service its monitors file declares: the file is
    /// where it is changed.
    fn writable(&self, id: i64) -> Result<(), crate::store::StoreError> {
        match self.registry.get(id) {
            Some(entry) if entry.service.from_file => {
                Err(crate::store::StoreError::ReadOnly(format!(
                    "{} is declared in the monitors file: change it there",
                    entry.service.name
                )))
            }
            _ => Ok(()),
        }
    }

    pub async fn update_service(
        &self,
        id: i64,
        patch: &lookout_proto::service::ServicePatch,
    ) -> Result<Option<crate::store::Service>, crate::store::StoreError> {
        self.writable(id)?;
        if let Some(ids) = &patch.channels {
            self.channels_exist(ids).await?;
        }
        Ok(self
            .registry
            .update(id, patch, self.clock.now())
            .await?
            .map(|(service, _)| service))
    }

    pub async fn delete_service(&self, id: i64) -> Result<bool, crate::store::StoreError> {
        self.writable(id)?;
        self.registry.delete(id, self.clock.now()).await
    }

    /// Runs a check now, stores it in the history and publishes it.
    pub async fn check_now(
        &self,
        service: &crate::store::Service,
    ) -> Result<crate::store::HealthCheck, crate::store::StoreError> {
        let result = self
            .checker
            .check_service(service, &self.checks, self.clock.as_ref())
            .await;
        self.registry.record_health_check(&result).await?;
        Ok(result)
    }
}
