//! Building and running a hub: open the store, bind the listener, start the
//! health scheduler, serve until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, DatabaseUrl};
use crate::events::EventBus;
use crate::health::scheduler::Scheduler;
use crate::health::Checker;
use crate::routes::{router, AppState};
use crate::store::{SqlStore, Store};

/// A hub that is bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    /// The address actually bound.
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: AppState,
    retention: std::time::Duration,
    notify: crate::notify::NotifySettings,
    follow: crate::config::FollowSettings,
    cluster: crate::config::ClusterSettings,
    /// This hub's name among the hubs sharing its database.
    hub_id: String,
    /// The PostgreSQL URL when the database is shared: live events then
    /// come from the event log, whichever hub wrote them.
    shared: Option<String>,
    self_check: bool,
    header_timeout: std::time::Duration,
    /// The monitors file followed, if any.
    monitors: Option<std::path::PathBuf>,
    /// Background tasks added with [`Application::supervise`].
    extra_tasks: Vec<(&'static str, futures::future::BoxFuture<'static, ()>)>,
}

impl Application {
    /// Opens the database (running migrations) and binds the listener. Fails
    /// with a message naming what could not be done.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        // A monitors file that does not load stops the start, as a bad
        // setting does: better than a hub without the services it declares.
        if let Some(path) = &config.monitors {
            let declared = crate::monitors::read(path).map_err(anyhow::Error::msg)?;
            for why in &declared.skipped {
                tracing::warn!(file = %path.display(), "skipped {why}");
            }
        }
        let store = open_store(&config).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("cannot read the address bound for {}", config.listen))?;
        let auth = Arc::new(crate::auth::Auth::new(
            config.auth.clone(),
            store.clone(),
            clock.clone(),
            config.max_body_bytes,
        ));
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let events = EventBus::new(16 * 1024);
        let registry = Arc::new(
            crate::registry::Registry::load(
                store.clone(),
                events.clone(),
                config.checks,
                clock.now(),
            )
            .await
            .context("cannot read the services from the database")?,
        );
        let usage = Arc::new(crate::usage::Usage::new(
            config.usage,
            lookout_systemd::hostname().unwrap_or_else(|| "localhost".into()),
        ));
        let state = AppState {
            auth,
            store,
            registry,
            shared_database: matches!(config.database, DatabaseUrl::Postgres(_)),
            public_url: config.notify.public_url.clone(),
            web_push_http: config.notify.web_push_http,
            heals: Arc::default(),
            public: Arc::default(),
            log_followers: Arc::new(tokio::sync::Semaphore::new(
                crate::routes::systemd::MAX_LOG_FOLLOWERS,
            )),
            health: Arc::new(crate::tasks::TaskHealth::default()),
            checker: Checker::new(metrics.clone())
                .context("cannot build the HTTP client for health checks")?
                .with_usage(usage.clone()),
            metrics,
            clock,
            events,
            live: tokio::sync::broadcast::channel(4096).0,
            shutdown: CancellationToken::new(),
            passive: crate::routes::PassiveSettings {
                ttl: config.heartbeat_ttl,
                remove_after: config.heartbeat_remove_after,
            },
            fleet: Arc::new(crate::agents::Fleet::new(config.agents)),
            checks: config.checks,
            max_body_bytes: config.max_body_bytes,
            discovery: Arc::new(
                crate::discovery::Discovery::new(config.systemd, config.web_ports.clone())
                    .watching(config.watch.clone()),
            ),
            containers: Arc::new(crate::containers::Containers::new(
                &config.containers,
                config.web_ports.clone(),
            )),
            usage,
        };
        let (hub_id, shared) = match &config.database {
            // One hub per SQLite file: the same name every start, so a
            // restarted hub has its leases back at once.
            DatabaseUrl::Sqlite(_) => (
                config
                    .cluster
                    .hub_id
                    .clone()
                    .unwrap_or_else(|| "local".into()),
                None,
            ),
            DatabaseUrl::Postgres(url) => (
                config.cluster.hub_id.clone().unwrap_or_else(default_hub_id),
                Some(url.clone()),
            ),
        };
        Ok(Self {
            listener,
            addr,
            tls,
            state,
            retention: config.retention,
            notify: config.notify,
            follow: config.follow,
            cluster: config.cluster,
            hub_id,
            shared,
            self_check: config.self_check,
            header_timeout: config.header_timeout,
            monitors: config.monitors.clone(),
            extra_tasks: Vec::new(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https` when the hub terminates TLS itself.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What a task that judges services follows: this hub's bus, or, with
    /// several hubs on one database, every hub's (from the shared event log).
    fn followed(&self, stop: &CancellationToken) -> EventBus {
        match &self.shared {
            None => self.state.events.clone(),
            Some(_) => crate::live::bus_from_log(&self.state.live, stop.clone()),
        }
    }

    /// Serves until `shutdown` resolves, then stops the scheduler, finishes
    /// in-flight requests and closes the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = self.state.shutdown.clone();
        if self.self_check {
            // Before the scheduler starts, so the first round checks it.
            let url = self_url(self.scheme(), self.local_addr());
            if let Err(e) = register_self(&self.state, &self.hub_id, &url).await {
                tracing::warn!(error = %e, "cannot register this hub as a service");
            }
        }
        let scheduler = Scheduler {
            store: self.state.store.clone(),
            registry: self.state.registry.clone(),
            checker: self.state.checker.clone(),
            clock: self.state.clock.clone(),
            events: self.state.events.clone(),
            defaults: self.state.checks,
            leases: self
                .shared
                .is_some()
                .then(|| crate::health::scheduler::LeaseSettings {
                    hub_id: self.hub_id.clone(),
                    lease: self.cluster.check_lease,
                }),
        };
        let mut tasks = crate::tasks::Supervisor::default();
        tasks.spawn("health scheduler", scheduler.run(stop.clone()));
        tasks.spawn(
            "event recorder",
            crate::live::run_recorder(
                self.state.store.clone(),
                self.state.events.clone(),
                self.shared.is_none().then(|| self.state.live.clone()),
                // On a shared database the registry follows the log: it
                // skips the events it wrote itself.
                self.state.registry.clone(),
                self.state.clock.clone(),
                stop.clone(),
            ),
        );
        if let Some(url) = self.shared.clone() {
            let (store, fleet) = (self.state.store.clone(), self.state.fleet.clone());
            tasks.spawn(
                "event log follower",
                crate::live::run_tailer(
                    url,
                    self.state.store.clone(),
                    self.state.live.clone(),
                    move |event| crate::agents::follow_other_hubs(&store, &fleet, event),
                    stop.clone(),
                ),
            );
            tasks.spawn(
                "registry follower",
                self.state
                    .registry
                    .clone()
                    .follow(self.state.live.subscribe(), stop.clone()),
            );
        }
        tasks.spawn(
            "pruner",
            crate::live::run_pruner(
                self.state.store.clone(),
                self.state.clock.clone(),
                self.retention,
                {
                    let auth = self.state.auth.clone();
                    move || auth.limiters.forget_idle()
                },
                stop.clone(),
            ),
        );
        // Each task that judges services has its own feed of the events.
        let [notifier_feed, settler_feed, healer_feed] = [(); 3].map(|()| self.followed(&stop));
        tasks.spawn(
            "notifier",
            crate::notify::Notifier {
                store: self.state.store.clone(),
                registry: self.state.registry.clone(),
                events: notifier_feed,
                clock: self.state.clock.clone(),
                settings: self.notify,
                client: crate::notify::http_client(),
                hub_id: self.hub_id.clone(),
                lease: self.shared.is_some().then_some(self.cluster.check_lease),
                metrics: self.state.metrics.clone(),
            }
            .run(stop.clone()),
        );
        tasks.spawn(
            "dependencies",
            crate::depends::Settler {
                registry: self.state.registry.clone(),
                events: settler_feed,
                clock: self.state.clock.clone(),
            }
            .run(stop.clone()),
        );
        tasks.spawn(
            "healer",
            crate::heal::Healer {
                store: self.state.store.clone(),
                registry: self.state.registry.clone(),
                events: healer_feed,
                clock: self.state.clock.clone(),
                remedy: Arc::new(crate::routes::heal::HubRemedy {
                    state: self.state.clone(),
                }),
                heals: self.state.heals.clone(),
                hub_id: self.hub_id.clone(),
                lease: self.shared.is_some().then_some(self.cluster.check_lease),
            }
            .run(stop.clone()),
        );
        tasks.spawn(
            "systemd follower",
            crate::follow::Follower {
                discovery: self.state.discovery.clone(),
                registry: self.state.registry.clone(),
                store: self.state.store.clone(),
                clock: self.state.clock.clone(),
                checks: self.state.checks,
                settings: self.follow,
            }
            .run(stop.clone()),
        );
        if self.state.containers.enabled() {
            tasks.spawn(
                "container follower",
                self.state.containers.clone().follow(
                    self.state.registry.clone(),
                    self.state.clock.clone(),
                    self.follow.scan_every,
                    stop.clone(),
                ),
            );
        }
        if self.state.usage.enabled() {
            tasks.spawn(
                "usage sampler",
                self.state.usage.clone().run(
                    self.state.registry.clone(),
                    self.state.discovery.clone(),
                    self.state.store.clone(),
                    self.state.clock.clone(),
                    stop.clone(),
                ),
            );
        }
        tasks.spawn(
            "overdue sweeper",
            crate::routes::heartbeat::run_sweeper(
                self.state.clone(),
                self.hub_id.clone(),
                self.cluster.check_lease,
                stop.clone(),
            ),
        );
        if let Some(path) = self.monitors.clone() {
            tasks.spawn(
                "monitors file",
                crate::monitors::follow(
                    path,
                    self.state.registry.clone(),
                    self.state.clock.clone(),
                    stop.clone(),
                ),
            );
        }
        for (name, task) in self.extra_tasks {
            tasks.spawn(name, task);
        }
        let health = self.state.health.clone();
        let store = self.state.store.clone();
        let trusted = self.state.auth.settings.trusted_proxies.clone();
        let header_timeout = self.header_timeout;
        let app = router(self.state);
        let stop_serving = stop.clone();
        let graceful = async move {
            tokio::select! {
                () = shutdown => {}
                () = stop_serving.cancelled() => {}
            }
            // End live streams now; the server then waits only for
            // ordinary requests in flight.
            stop_serving.cancel();
        };
        let (listener, tls) = (self.listener, self.tls);
        let serving = async move {
            match tls {
                Some(config) => match crate::tls::TlsListener::new(listener, config) {
                    Ok(listener) => {
                        crate::serve::serve(listener, app, trusted, header_timeout, graceful).await;
                        Ok(())
                    }
                    Err(e) => Err(e).context("cannot start the TLS listener"),
                },
                None => {
                    crate::serve::serve(listener, app, trusted, header_timeout, graceful).await;
                    Ok(())
                }
            }
        };
        tokio::pin!(serving);
        // A background task that ends before the hub is told to stop leaves
        // it half alive: it is no longer ready, and it stops.
        let served: anyhow::Result<()> = tokio::select! {
            served = &mut serving => served,
            (name, why) = tasks.unexpected_exit(&stop) => {
                tracing::error!(task = name, "the {name} {why}; the hub stops");
                health.task_failed(name);
                // Long enough for a load balancer's probe to see it.
                tokio::time::sleep(UNREADY_BEFORE_STOPPING).await;
                stop.cancel();
                let _ = serving.await;
                Err(anyhow::anyhow!("the {name} {why}; the hub stopped"))
            }
        };
        stop.cancel();
        tasks.stop().await;
        store.close().await;
        served
    }

    /// Runs `task` beside the hub's own background tasks, under the same
    /// supervision: if it ends before the hub is told to stop, the hub is no
    /// longer ready and stops with an error.
    pub fn supervise(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        self.extra_tasks.push((name, Box::pin(task)));
    }
}

/// How long a hub whose background task died answers `/readyz` with 503
/// before it stops.
pub const UNREADY_BEFORE_STOPPING: std::time::Duration = std::time::Duration::from_secs(1);

/// Where this hub reaches itself: its listening address, loopback when it
/// listens on every address.
fn self_url(scheme: &str, addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// The service that is this hub, checked at its own `/readyz` (the database
/// answers): created on the first start, its URL brought up to date on later
/// ones. A hub among several is `lookout (HUB_ID)`.
/// Whether `s` is a hub's check of itself (`register_self`'s service:
/// `lookout` or `lookout (HUB)`, checked at `/readyz`).
pub fn is_self_check(s: &crate::store::Service) -> bool {
    s.name.starts_with("lookout") && s.health_endpoint.as_deref() == Some("/readyz")
}

async fn register_self(state: &AppState, hub_id: &str, url: &str) -> anyhow::Result<()> {
    use lookout_proto::service::{parse_new_service, parse_service_patch, RegistryStatus};
    let name = if hub_id == "local" {
        "lookout".to_owned()
    } else {
        format!("lookout ({hub_id})")
    };
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({
            "name": name,
            "description": "This lookout hub: /readyz answers while its database does",
            "base_url": url,
            "health_endpoint": "/readyz",
        }))?;
    let fields = &fields;
    let existing = state
        .store
        .list_services(crate::store::ServiceFilter::Status(
            RegistryStatus::Configured,
        ))
        .await?
        .into_iter()
        .find(|s| s.name == name && s.server_id.is_none());
    let invalid = |e: Vec<lookout_proto::FieldError>| anyhow::anyhow!("invalid fields: {e:?}");
    match existing {
        None => {
            let new = parse_new_service(fields).map_err(invalid)?;
            state.create_service(&new).await?;
        }
        // Someone else's service by that name: theirs, left alone.
        Some(s) if s.health_endpoint.as_deref() != Some("/readyz") => {
            tracing::warn!(
                service = %name,
                "a service of that name exists and is not this hub's: not registering the hub"
            );
        }
        Some(s) if s.base_url.as_deref() != Some(url) => {
            let patch = parse_service_patch(fields).map_err(invalid)?;
            state.update_service(s.id, &patch).await?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// A name for this hub among others: the host name and a random suffix.
fn default_hub_id() -> String {
    let host = lookout_systemd::hostname().unwrap_or_else(|| "hub".into());
    let mut suffix = [0u8; 4];
    let _ = getrandom::fill(&mut suffix);
    format!("{host}-{}", hex::encode(suffix))
}

/// Opens the database the configuration names (creating the data directory
/// and running migrations), as `serve` does; the `user` commands use it too.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(
        open_database(&config.database)
            .await?
            .with_rules(config.rules),
    ))
}

/// Opens (and migrates) the database `url` names, SQLite or PostgreSQL.
pub async fn open_database(url: &DatabaseUrl) -> anyhow::Result<SqlStore> {
    match url {
        DatabaseUrl::Sqlite(path) => open_sqlite(path).await,
        DatabaseUrl::Postgres(pg) => SqlStore::connect_postgres(pg)
            .await
            .with_context(|| format!("cannot open the PostgreSQL database {}", url.display())),
    }
}

/// Opens an SQLite database file, creating its directory (mode 0700) and
/// migrating it; `migrate`, `export` and `import` use it as `serve` does.
pub async fn open_sqlite(path: &std::path::Path) -> anyhow::Result<SqlStore> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    SqlStore::open(path)
        .await
        .with_context(|| format!("cannot open the SQLite database {}", path.display()))
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
