//! The registry: every service's current state, in memory.
//!
//! Every change to a service goes through here: the registry writes it
//! through the store (one transaction each), then brings its memory up to
//! date from what was written before it returns, so the hub that made a write
//! shows it at once. Reads (the API's list and get, the dashboard, metrics,
//! Prometheus service discovery, the scheduler) read memory and never wait on
//! SQL. Each service's JSON view is serialised once per change and kept, and
//! each list answer is assembled from those bytes once per registry version,
//! so serving the list costs about what serving a file does.
//!
//! With several hubs on one PostgreSQL database, a hub follows the others'
//! changes through the shared event log ([`Registry::follow`]).

use crate::sync::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use lookout_proto::agent::{CheckDecl, StatusUpdate};
use lookout_proto::service::{check_combination, BaseUrl, HealthEndpoint};
use lookout_proto::service::{
    NewService, RegistryStatus, ServicePatch, StatusEventView, TimerView,
};
use lookout_proto::status::Status;

use crate::config::CheckDefaults;
use crate::events::{CheckOutcome, Event, EventBus};
use crate::store::agents::{Ingested, Results};
use crate::store::{
    DiscoveredUnit, HealthCheck, Heartbeat, Reconciled, Recorded, ScanCounts, Service,
    ServiceFilter, Store, StoreError, UnitState,
};

/// One service as the registry holds it: the row and its JSON view.
#[derive(Debug)]
pub struct Entry {
    pub service: Service,
    /// `ServiceView` as JSON, serialised when the service last changed.
    pub json: Bytes,
}

/// Which services a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// `None`: every registry status.
    pub status: Option<RegistryStatus>,
    /// Only services in this state.
    pub state: Option<Status>,
    /// Only services whose name contains this, ignoring case.
    pub name_contains: Option<String>,
    /// Only the checks of this server.
    pub server: Option<i64>,
    /// Only services with this tag, ignoring case.
    pub tag: Option<String>,
    /// Only services watched this way ([`Service::watched_by`]).
    pub kind: Option<String>,
}

/// The words [`ListFilter::kind`] takes.
pub const KINDS: &[&str] = &[
    "http",
    "tcp",
    "tls",
    "icmp",
    "dns",
    "host",
    "usage",
    "push",
    "heartbeat",
    "script",
    "systemd",
    "container",
    "none",
];

impl ListFilter {
    /// The registered services, as the dashboard and the API show by default.
    pub fn configured() -> Self {
        Self {
            status: Some(RegistryStatus::Configured),
            ..Self::default()
        }
    }

    /// Whether the list holds `s` (a filter without a name to look for).
    pub(crate) fn holds(&self, s: &Service) -> bool {
        self.admits(s, None)
    }

    /// Whether `s` passes every part of the filter, its name included.
    pub fn matches(&self, s: &Service) -> bool {
        let q = self.name_contains.as_deref().map(str::to_lowercase);
        self.admits(s, q.as_deref())
    }

    /// Whether `s` passes; `q` is `name_contains` in lower case.
    fn admits(&self, s: &Service, q: Option<&str>) -> bool {
        self.status.is_none_or(|status| s.status == status)
            && self.state.is_none_or(|state| s.state == state)
            && self.server.is_none_or(|server| s.server_id == Some(server))
            && self
                .tag
                .as_deref()
                .is_none_or(|tag| s.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)))
            && self
                .kind
                .as_deref()
                .is_none_or(|kind| s.watched_by() == kind)
            && q.is_none_or(|q| s.name.to_lowercase().contains(q))
    }

    /// Only a registry status: the lists kept ready, one per status.
    fn is_plain(&self) -> bool {
        self.state.is_none()
            && self.name_contains.is_none()
            && self.server.is_none()
            && self.tag.is_none()
            && self.kind.is_none()
    }
}

/// The order of every list: by name ignoring case, then by name, then by id.
type SortKey = (String, String, i64);

fn sort_key(s: &Service) -> SortKey {
    (s.name.to_lowercase(), s.name.clone(), s.id)
}

/// A place in the list order, for `?after=`: where the last page ended. It
/// names the service's place, not the service, so a page boundary survives
/// the service being renamed or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(SortKey);

impl Cursor {
    /// Just after `service`.
    pub fn after(service: &Service) -> Self {
        Self(sort_key(service))
    }

    /// Reads a cursor as [`Cursor::to_string`] writes it: the name in hex, a
    /// dot, the id.
    pub fn parse(text: &str) -> Option<Self> {
        let (name, id) = text.rsplit_once('.')?;
        // A position in the order: any bytes name one (a name that is not
        // UTF-8 is read as the nearest text).
        let name = String::from_utf8_lossy(&hex::decode(name).ok()?).into_owned();
        Some(Self((name.to_lowercase(), name, id.parse().ok()?)))
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", hex::encode(&self.0 .1), self.0 .2)
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    /// The registry version the page shows.
    pub version: u64,
    /// A JSON array of service views.
    pub body: Bytes,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
}

/// One health check result as the pages draw it: when, how fast, how it went.
pub type Point = (
    DateTime<Utc>,
    Option<u64>,
    lookout_proto::service::HealthStatus,
);

/// How many results of each service the registry keeps.
pub const RECENT: usize = 50;

#[derive(Default)]
struct Memory {
    by_id: HashMap<i64, Arc<Entry>>,
    /// Each service's last [`RECENT`] check results, oldest first.
    recent: HashMap<i64, std::collections::VecDeque<Point>>,
    /// Each service's status changes over the longest uptime window, with
    /// the status in force before the first (the uptime figures).
    timelines: HashMap<i64, crate::store::Timeline>,
    /// The services of each of this host's systemd units (not agents').
    by_unit: HashMap<String, Vec<i64>>,
    order: BTreeMap<SortKey, i64>,
    /// Increases with every change the registry applies.
    version: u64,
    /// Increases with every change that can change the dependency graph.
    deps_version: u64,
    /// Services that make the graph what it is: with dependencies, waiting,
    /// or a watched unit of this host listening on ports. None: the graph
    /// is empty, whatever else changes.
    linked: usize,
    /// List bodies assembled at `version`, by registry status filter.
    lists: HashMap<Option<RegistryStatus>, Bytes>,
    /// The same lists compressed, made on first request per version.
    compressed: HashMap<(Option<RegistryStatus>, Coding), Bytes>,
}

/// A content coding the list is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    /// The `Content-Encoding` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
        }
    }

    /// `data` in this coding (gzip fast, brotli at a middle quality).
    pub fn compress(self, data: &[u8]) -> Bytes {
        match self {
            Coding::Gzip => gzip(data),
            Coding::Brotli => brotli(data),
        }
    }
}

/// What the health scheduler plans by: a change here is a new plan.
fn shape(s: &Service) -> impl PartialEq + '_ {
    (
        s.status,
        s.paused,
        s.check_target(),
        s.check_interval_secs,
        s.check_timeout_ms,
    )
}

/// The unit of this host's manager a service is, if any (agents' checks
/// name units of their own hosts).
fn local_unit(service: &Service) -> Option<&str> {
    service
        .unit
        .as_deref()
        .filter(|_| service.server_id.is_none())
}

/// The services whose plan may have changed: some, or too many to name
/// (then everything is looked at again).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reshaped {
    #[default]
    Nothing,
    Only(std::collections::BTreeSet<i64>),
    Everything,
}

impl Reshaped {
    /// More than this many are [`Reshaped::Everything`]: a full look then
    /// costs less than one per service.
    const MOST: usize = 512;

    fn add(&mut self, ids: Vec<i64>) {
        match self {
            Reshaped::Everything => {}
            Reshaped::Nothing => *self = Reshaped::Only(ids.into_iter().collect()),
            Reshaped::Only(held) => held.extend(ids),
        }
        if matches!(self, Reshaped::Only(held) if held.len() > Self::MOST) {
            *self = Reshaped::Everything;
        }
    }
}

/// What putting a service in memory changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    /// Nothing: the row is as held.
    Same,
    /// The row, not its [`shape`].
    Changed,
    /// A new service, or its [`shape`] changed.
    Reshaped,
}

impl Memory {
    /// Puts a service in. A newer last check than the one held joins the
    /// service's recent results.
    fn put(&mut self, entry: Entry) -> Put {
        let id = entry.service.id;
        let mut put = Put::Reshaped;
        if let Some(old) = self.by_id.get(&id) {
            if old.service == entry.service {
                return Put::Same;
            }
            if shape(&old.service) == shape(&entry.service) {
                put = Put::Changed;
            }
        }
        let new = &entry.service;
        let old = self.by_id.get(&id).map(|e| &e.service);
        if old.is_none_or(|old| crate::depends::edges_of(old) != crate::depends::edges_of(new)) {
            self.deps_version += 1;
        }
        self.linked = self.linked + usize::from(crate::depends::links(new))
            - old.map_or(0, |o| usize::from(crate::depends::links(o)));
        if let Some(at) = new.last_health_check {
            let recent = self.recent.entry(id).or_default();
            if recent.back().is_none_or(|(last, _, _)| *last < at) {
                recent.push_back((at, new.last_latency_ms, new.health_status));
                if recent.len() > RECENT {
                    recent.pop_front();
                }
            }
        }
        if let Some(old) = self.by_id.get(&id) {
            self.order.remove(&sort_key(&old.service));
            let old_unit = local_unit(&old.service).map(str::to_owned);
            self.unindex(id, old_unit.as_deref());
        }
        self.order.insert(sort_key(&entry.service), id);
        if let Some(unit) = local_unit(&entry.service) {
            self.by_unit.entry(unit.to_owned()).or_default().push(id);
        }
        self.by_id.insert(id, Arc::new(entry));
        put
    }

    /// Takes service `id` out of the index of `unit`.
    fn unindex(&mut self, id: i64, unit: Option<&str>) {
        let Some(unit) = unit else { return };
        if let Some(ids) = self.by_unit.get_mut(unit) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_unit.remove(unit);
            }
        }
    }

    /// Takes a service out; true when it was there.
    fn remove(&mut self, id: i64) -> bool {
        self.recent.remove(&id);
        self.timelines.remove(&id);
        let Some(old) = self.by_id.remove(&id) else {
            return false;
        };
        self.deps_version += 1;
        self.linked -= usize::from(crate::depends::links(&old.service));
        self.order.remove(&sort_key(&old.service));
        self.unindex(id, local_unit(&old.service));
        true
    }

    fn changed(&mut self) {
        self.version += 1;
        self.lists.clear();
        self.compressed.clear();
    }

    fn entries<'a>(&'a self, filter: &'a ListFilter) -> impl Iterator<Item = &'a Arc<Entry>> {
        self.entries_from(filter, std::ops::Bound::Unbounded)
    }

    /// The entries `filter` admits, in list order, from `start` on.
    fn entries_from<'a>(
        &'a self,
        filter: &'a ListFilter,
        start: std::ops::Bound<SortKey>,
    ) -> impl Iterator<Item = &'a Arc<Entry>> {
        let q = filter.name_contains.as_deref().map(str::to_lowercase);
        self.order
            .range((start, std::ops::Bound::Unbounded))
            .filter_map(|(_, id)| self.by_id.get(id))
            .filter(move |e| filter.admits(&e.service, q.as_deref()))
    }
}

/// Writes waiting their turn (health results, agents' messages), and the
/// writer tasks on them. The first to arrive starts a task that waits a
/// moment for others, writes everything waiting in one transaction, and
/// again until nothing waits: writes that arrive together share a commit
/// instead of queueing for the write lock one by one.
///
/// Where the store takes several writers at once (PostgreSQL), a write that
/// arrives while every writer is busy writing starts another, up to the
/// store's [`Store::concurrent_writes`]: each statement there is a round
/// trip over the network, and one writer alone would cap the rate at what
/// one connection's round trips allow.
///
/// A batch is written in the order of its items' rows (`key`, stable):
/// batches side by side then take their row locks in the same order, and
/// cannot deadlock each other.
struct WriteQueue<T, R> {
    inner: Arc<std::sync::Mutex<Waiting<T, R>>>,
    write: WriteFn<T, R>,
    most_writers: usize,
    key: fn(&T) -> i64,
}

/// How a batch is written: one answer per item, in order. The batch is
/// shared, not copied: its items are needed again only if it fails.
type WriteFn<T, R> = Arc<
    dyn Fn(Arc<[T]>) -> futures::future::BoxFuture<'static, Result<Vec<R>, StoreError>>
        + Send
        + Sync,
>;

type Reply<R> = tokio::sync::oneshot::Sender<Result<R, StoreError>>;

struct Waiting<T, R> {
    items: Vec<(T, Reply<R>)>,
    /// Writer tasks running.
    writers: usize,
    /// A writer is gathering (waiting for more before it takes a batch):
    /// what arrives now is in its batch.
    gathering: bool,
}

/// Most writes in one transaction.
const WRITE_BATCH: usize = 256;

/// How long the first write of a batch waits for others: results due
/// together finish within a moment of each other.
const WRITE_GATHER: std::time::Duration = std::time::Duration::from_millis(1);

impl<T: Clone + Send + Sync + 'static, R: Send + 'static> WriteQueue<T, R> {
    fn new(write: WriteFn<T, R>, most_writers: usize, key: fn(&T) -> i64) -> Self {
        Self {
            inner: Arc::new(std::sync::Mutex::new(Waiting {
                items: Vec::new(),
                writers: 0,
                gathering: false,
            })),
            write,
            most_writers: most_writers.max(1),
            key,
        }
    }

    async fn submit(&self, item: T) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut waiting = lock(&self.inner);
            waiting.items.push((item, tx));
            let start = !waiting.gathering && waiting.writers < self.most_writers;
            if start {
                waiting.writers += 1;
                waiting.gathering = true;
            }
            start
        };
        if start {
            // A task of its own: a request that gives up waiting does not
            // take the others' writes with it.
            tokio::spawn(write_batches(
                self.inner.clone(),
                self.write.clone(),
                self.key,
            ));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Stopped("the batch writer")))
    }
}

/// Counts a writer out however it ends (a panic too), so the next write
/// can start one.
struct Writing<T, R> {
    waiting: Arc<std::sync::Mutex<Waiting<T, R>>>,
    done: bool,
    gathering: bool,
}

impl<T, R> Drop for Writing<T, R> {
    fn drop(&mut self) {
        if !self.done {
            let mut waiting = lock(&self.waiting);
            waiting.writers -= 1;
            if self.gathering {
                waiting.gathering = false;
            }
        }
    }
}

async fn write_batches<T: Clone + Send + Sync, R>(
    waiting: Arc<std::sync::Mutex<Waiting<T, R>>>,
    write: WriteFn<T, R>,
    key: fn(&T) -> i64,
) {
    let mut writing = Writing {
        waiting: waiting.clone(),
        done: false,
        gathering: true,
    };
    tokio::time::sleep(WRITE_GATHER).await;
    loop {
        let mut batch: Vec<_> = {
            let mut waiting = lock(&waiting);
            if std::mem::take(&mut writing.gathering) {
                waiting.gathering = false;
            }
            let n = waiting.items.len().min(WRITE_BATCH);
            if n == 0 {
                // Done, under the lock: the next write starts a writer.
                waiting.writers -= 1;
                writing.done = true;
                return;
            }
            waiting.items.drain(..n).collect()
        };
        batch.sort_by_key(|(item, _)| key(item));
        let (items, replies): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
        let items: Arc<[T]> = items.into();
        let single = items.len() == 1;
        match write(items.clone()).await {
            Ok(done) => {
                for (reply, done) in replies.into_iter().zip(done) {
                    let _ = reply.send(Ok(done));
                }
            }
            Err(e) if single => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            // One bad write must not fail the others: each on its own.
            Err(_) => {
                for (item, reply) in items.iter().zip(replies) {
                    let one = write(Arc::from([item.clone()]))
                        .await
                        .and_then(|mut d| d.pop().ok_or(StoreError::Stopped("the batch writer")));
                    let _ = reply.send(one);
                }
            }
        }
    }
}

/// The services of the hub, in memory, and every way to change them.
pub struct Registry {
    store: Arc<dyn Store>,
    /// Ids of logged events this hub wrote (on a shared database), so the
    /// follower does not read back what memory already has.
    own: std::sync::Mutex<std::collections::BTreeSet<i64>>,
    /// Where every change is published, once, after memory has it.
    events: EventBus,
    /// Health results, written together.
    checks: WriteQueue<HealthCheck, (Recorded, Option<Service>)>,
    /// Agents' messages of results, written together.
    results: WriteQueue<Results, Ingested>,
    /// Random per process, so an `ETag` from before a restart never matches.
    epoch: u32,
    defaults: CheckDefaults,
    memory: RwLock<Memory>,
    /// The dependency graph as of a `deps_version`, built when first asked.
    graph: std::sync::Mutex<Option<(u64, Arc<crate::depends::Graph>)>>,
    /// The services whose changes matter to the health scheduler since it
    /// last looked: added or removed, or whose URL, interval or timeout
    /// changed.
    shape: tokio::sync::watch::Sender<Reshaped>,
    /// The id of the newest event in the event log whose change memory has:
    /// what a client that wrote through another hub waits for
    /// (`X-Lookout-Min-Event`).
    applied: tokio::sync::watch::Sender<i64>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

/// `data` gzipped at the fastest level: JSON of this kind shrinks about
/// tenfold even so, and a list of 10,000 services compresses in tens of
/// milliseconds.
fn gzip(data: &[u8]) -> Bytes {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// `data` in brotli at a middle quality (5 of 11): smaller than the fast
/// gzip and about as quick to make; the highest qualities take seconds
/// for a list of 10,000 services.
fn brotli(data: &[u8]) -> Bytes {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(data.len() / 10);
    {
        let mut writer = ::brotli::CompressorWriter::new(&mut out, 64 * 1024, 5, 22);
        // Writing to a Vec cannot fail.
        let _ = writer.write_all(data);
    }
    Bytes::from(out)
}

/// A JSON array of `items`, assembled from bytes already serialised.
fn json_array<'a>(items: impl Iterator<Item = &'a Bytes>) -> Bytes {
    // Sized exactly: the list is kept, and a vector grown by doubling
    // keeps up to twice its bytes.
    let items: Vec<&Bytes> = items.collect();
    let mut body = Vec::with_capacity(2 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    body.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.push(b']');
    Bytes::from(body)
}

impl Registry {
    /// Reads every service from the store, and each one's recent results
    /// (from a month before `now` on).
    pub async fn load(
        store: Arc<dyn Store>,
        events: EventBus,
        defaults: CheckDefaults,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let mut epoch = [0u8; 4];
        let _ = getrandom::fill(&mut epoch);
        let registry = Self {
            store: store.clone(),
            own: Default::default(),
            events,
            checks: WriteQueue::new(
                {
                    let store = store.clone();
                    Arc::new(move |checks: Arc<[HealthCheck]>| {
                        let store = store.clone();
                        Box::pin(async move { store.record_health_checks(&checks).await })
                    })
                },
                store.concurrent_writes(),
                |check| check.service_id,
            ),
            results: WriteQueue::new(
                {
                    let store = store.clone();
                    Arc::new(move |messages: Arc<[Results]>| {
                        let store = store.clone();
                        Box::pin(async move { store.record_results_together(&messages).await })
                    })
                },
                store.concurrent_writes(),
                |message| message.server_id,
            ),
            epoch: u32::from_le_bytes(epoch),
            defaults,
            memory: RwLock::new(Memory::default()),
            graph: std::sync::Mutex::new(None),
            shape: tokio::sync::watch::Sender::new(Reshaped::default()),
            applied: tokio::sync::watch::Sender::new(0),
        };
        // Everything logged so far is in the tables read next.
        let logged = registry.store.last_event_id().await?;
        registry.applied_up_to(logged);
        registry.reload().await?;
        // Each service's recent results, from the history (a month back at
        // most, so the query stays on recent rows).
        let since = now - chrono::Duration::days(30);
        let recent = registry
            .store
            .recent_checks(u32::try_from(RECENT).unwrap_or(u32::MAX), since)
            .await?;
        registry.write().recent = recent
            .into_iter()
            .map(|(id, points)| (id, points.into_iter().collect()))
            .collect();
        // Each service's status changes, for its uptime figures.
        let since = now - chrono::Duration::days(crate::history::LONGEST_WINDOW_DAYS);
        registry.write().timelines = registry.store.status_timelines(since).await?;
        Ok(registry)
    }

    fn entry(&self, service: Service) -> Entry {
        let mut json = serde_json::to_vec(&service.to_view(&self.defaults)).unwrap_or_default();
        // Kept for as long as the service is: without the spare capacity
        // the serialiser's doubling left (up to half of it).
        json.shrink_to_fit();
        Entry {
            service,
            json: Bytes::from(json),
        }
    }

    /// Publishes status changes, in the order they happened, once memory's
    /// timelines have them.
    fn announce(&self, changes: impl IntoIterator<Item = StatusEventView>) {
        let changes: Vec<StatusEventView> = changes.into_iter().collect();
        if changes.is_empty() {
            return;
        }
        for c in &changes {
            let name = self.get(c.service_id).map(|e| e.service.name.clone());
            tracing::info!(
                service = name.as_deref().unwrap_or_default(),
                id = c.service_id,
                from = c.old.as_str(),
                to = c.new.as_str(),
                reason = %c.reason,
                "status changed"
            );
        }
        self.remember(&changes);
        self.events.publish_changes(changes);
    }

    /// Adds status changes to their services' timelines, forgetting what
    /// the longest uptime window no longer needs.
    fn remember(&self, changes: &[StatusEventView]) {
        let mut memory = self.write();
        for change in changes {
            let timeline = memory.timelines.entry(change.service_id).or_default();
            let later = timeline
                .1
                .iter()
                .rposition(|(at, _)| *at <= change.at)
                .map_or(0, |i| i + 1);
            timeline.1.insert(later, (change.at, change.new));
            let horizon =
                change.at - chrono::Duration::days(crate::history::LONGEST_WINDOW_DAYS + 1);
            let old = timeline
                .1
                .iter()
                .take_while(|(at, _)| *at < horizon)
                .count();
            if old > 0 {
                timeline.0 = Some(timeline.1[old - 1].1);
                timeline.1.drain(..old);
            }
        }
    }

    /// A service's uptime over the last day, week and month, from memory.
    pub fn uptimes(&self, id: i64, now: DateTime<Utc>) -> crate::history::Uptime {
        let memory = self.read();
        let (initial, changes) = memory
            .timelines
            .get(&id)
            .map_or((None, &[][..]), |t| (t.0, t.1.as_slice()));
        crate::history::uptimes(initial, changes, now)
    }

    /// A service's status over the longest uptime window: the status in
    /// force before it and the changes since, oldest first.
    pub fn timeline(&self, id: i64) -> (Option<Status>, Vec<(DateTime<Utc>, Status)>) {
        let memory = self.read();
        memory
            .timelines
            .get(&id)
            .map_or((None, Vec::new()), |t| (t.0, t.1.clone()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Memory> {
        self.memory.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Memory> {
        self.memory.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads every service again (at start, after a scan, and whenever a
    /// change touched more services than it names).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let services = self.store.list_services(ServiceFilter::All).await?;
        let entries: Vec<Entry> = services.into_iter().map(|s| self.entry(s)).collect();
        let present: std::collections::HashSet<i64> =
            entries.iter().map(|e| e.service.id).collect();
        self.apply(
            entries.into_iter().map(|e| (e.service.id, Some(e))),
            |memory| {
                memory
                    .by_id
                    .keys()
                    .filter(|id| !present.contains(id))
                    .copied()
                    .collect()
            },
        );
        Ok(())
    }

    /// Puts `entries` in memory (`None`: the service is gone) and takes out
    /// the services `gone` names; a new version only if something changed.
    fn apply(
        &self,
        entries: impl IntoIterator<Item = (i64, Option<Entry>)>,
        gone: impl FnOnce(&Memory) -> Vec<i64>,
    ) {
        let mut changed = false;
        let mut reshaped = Vec::new();
        {
            let mut memory = self.write();
            for (id, entry) in entries {
                let put = match entry {
                    Some(entry) => memory.put(entry),
                    None if memory.remove(id) => Put::Reshaped,
                    None => Put::Same,
                };
                changed |= put != Put::Same;
                if put == Put::Reshaped {
                    reshaped.push(id);
                }
            }
            for id in gone(&memory) {
                memory.remove(id);
                changed = true;
                reshaped.push(id);
            }
            if changed {
                memory.changed();
            }
        }
        if !reshaped.is_empty() {
            self.shape.send_modify(|r| r.add(reshaped));
        }
    }

    /// Takes these services as a write returned them: what was written is
    /// what memory holds, with no read back.
    fn keep(&self, services: impl IntoIterator<Item = Service>) {
        self.apply(
            services.into_iter().map(|s| (s.id, Some(self.entry(s)))),
            |_| Vec::new(),
        );
    }

    /// Reads these services again: the ones a write changed.
    pub async fn sync(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut read = Vec::new();
        for &id in ids {
            read.push((id, self.store.get_service(id).await?));
        }
        if read.is_empty() {
            return Ok(());
        }
        let entries: Vec<(i64, Option<Entry>)> = read
            .into_iter()
            .map(|(id, s)| (id, s.map(|s| self.entry(s))))
            .collect();
        self.apply(entries, |_| Vec::new());
        Ok(())
    }

    /// Changes when a service is added or removed, or its URL, interval or
    /// timeout changes, on this hub or (followed) on another; which ones,
    /// [`Registry::take_reshaped`] says.
    pub fn watch_shape(&self) -> tokio::sync::watch::Receiver<Reshaped> {
        self.shape.subscribe()
    }

    /// The services reshaped since the last call, and forgets them: for the
    /// one reader that plans by them, the health scheduler.
    pub fn take_reshaped(&self) -> Reshaped {
        let mut taken = Reshaped::default();
        self.shape.send_if_modified(|r| {
            taken = std::mem::take(r);
            false
        });
        taken
    }

    /// Increases with every change; a list read at one version is the same
    /// until the next.
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// The `ETag` of what the registry shows at `version`.
    pub fn etag(&self, version: u64) -> String {
        format!("\"{:08x}-{version}\"", self.epoch)
    }

    /// One service.
    pub fn get(&self, id: i64) -> Option<Arc<Entry>> {
        self.read().by_id.get(&id).cloned()
    }

    /// The services behind a systemd unit of the hub's host.
    pub fn by_unit(&self, unit: &str) -> Vec<Arc<Entry>> {
        let memory = self.read();
        let Some(ids) = memory.by_unit.get(unit) else {
            return Vec::new();
        };
        let mut entries: Vec<Arc<Entry>> = ids
            .iter()
            .filter_map(|id| memory.by_id.get(id))
            .cloned()
            .collect();
        entries.sort_by_key(|e| e.service.id);
        entries
    }

    /// The systemd units of the hub's host that services stand for.
    pub fn units(&self) -> std::collections::BTreeSet<String> {
        self.read().by_unit.keys().cloned().collect()
    }

    /// A service's last [`RECENT`] check results since `since`, oldest first.
    pub fn recent(&self, id: i64, since: DateTime<Utc>) -> Vec<Point> {
        self.read()
            .recent
            .get(&id)
            .map(|points| points.iter().filter(|p| p.0 >= since).copied().collect())
            .unwrap_or_default()
    }

    /// The services `filter` admits, in list order.
    pub fn list(&self, filter: &ListFilter) -> Vec<Arc<Entry>> {
        self.read().entries(filter).cloned().collect()
    }

    /// The services `filter` admits, as rows.
    pub fn services(&self, filter: &ListFilter) -> Vec<Service> {
        self.read()
            .entries(filter)
            .map(|e| e.service.clone())
            .collect()
    }

    /// The list as a JSON array of service views, and the version it shows.
    /// Lists filtered by registry status only are assembled once per version.
    pub fn list_json(&self, filter: &ListFilter) -> (u64, Bytes) {
        {
            let memory = self.read();
            if !filter.is_plain() {
                let body = json_array(memory.entries(filter).map(|e| &e.json));
                return (memory.version, body);
            }
            if let Some(body) = memory.lists.get(&filter.status) {
                return (memory.version, body.clone());
            }
        }
        let mut memory = self.write();
        let body = json_array(memory.entries(filter).map(|e| &e.json));
        memory.lists.insert(filter.status, body.clone());
        (memory.version, body)
    }

    /// [`Registry::list_json`] compressed, for a client that accepts the
    /// coding; kept until the next change, so a crowd of such clients costs
    /// one compression per version. `None` for a filter whose list is not
    /// kept.
    pub fn list_compressed(&self, filter: &ListFilter, coding: Coding) -> Option<(u64, Bytes)> {
        if !filter.is_plain() {
            return None;
        }
        let key = (filter.status, coding);
        {
            let memory = self.read();
            if let Some(body) = memory.compressed.get(&key) {
                return Some((memory.version, body.clone()));
            }
        }
        let (version, plain) = self.list_json(filter);
        let body = coding.compress(&plain);
        let mut memory = self.write();
        if memory.version == version {
            memory.compressed.insert(key, body.clone());
        }
        Some((version, body))
    }

    /// At most `limit` services `filter` admits, after `after` in list order.
    pub fn page(&self, filter: &ListFilter, after: Option<&Cursor>, limit: usize) -> Page {
        use std::ops::Bound::{Excluded, Unbounded};
        let memory = self.read();
        let start = after.map_or(Unbounded, |c| Excluded(c.0.clone()));
        let mut shown: Vec<&Arc<Entry>> = memory
            .entries_from(filter, start)
            .take(limit.saturating_add(1))
            .collect();
        let more = shown.len() > limit;
        shown.truncate(limit);
        Page {
            version: memory.version,
            body: json_array(shown.iter().map(|e| &e.json)),
            next: more
                .then(|| shown.last().map(|e| Cursor::after(&e.service)))
                .flatten(),
        }
    }

    // ---- Dependencies ---------------------------------------------------------

    /// The dependency graph as memory now stands.
    pub fn graph(&self) -> Arc<crate::depends::Graph> {
        let memory = self.read();
        if memory.linked == 0 {
            return crate::depends::Graph::none();
        }
        let mut cached = lock(&self.graph);
        if let Some((version, graph)) = cached.as_ref() {
            if *version == memory.deps_version {
                return graph.clone();
            }
        }
        let graph = Arc::new(crate::depends::Graph::build(
            memory.by_id.values().map(|e| &e.service),
        ));
        *cached = Some((memory.deps_version, graph.clone()));
        graph
    }

    /// The failing service at the root of `id`'s dependencies, as memory
    /// now stands (whether or not the service shows it yet).
    pub fn waiting_root(&self, id: i64) -> Option<lookout_proto::depends::WaitingOn> {
        let graph = self.graph();
        if graph.parents(id).is_empty() {
            return None;
        }
        let memory = self.read();
        graph.root(id, |p| memory.by_id.get(&p).map(|e| &e.service))
    }

    /// Records what each service waits on where memory's statuses say it
    /// changed, until nothing moves (a service that starts or stops waiting
    /// changes what its own dependents wait on). The number of services
    /// changed.
    pub async fn settle_waiting(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut total = 0;
        for _ in 0..8 {
            let graph = self.graph();
            if graph.is_empty() {
                break;
            }
            let wanted: Vec<(i64, Option<lookout_proto::depends::WaitingOn>)> = {
                let memory = self.read();
                let get = |p: i64| memory.by_id.get(&p).map(|e| &e.service);
                graph
                    .to_judge()
                    .filter_map(|id| {
                        let held = get(id)?;
                        let root = graph
                            .root(id, get)
                            .or_else(|| crate::depends::still_stale(held, get));
                        (held.waiting_on.as_deref() != root.as_ref()).then_some((id, root))
                    })
                    .collect()
            };
            if wanted.is_empty() {
                break;
            }
            total += wanted.len();
            let (services, changes) = self.store.set_waiting(&wanted, now).await?;
            let ids: Vec<i64> = services.iter().map(|s| s.id).collect();
            self.keep(services);
            for id in ids {
                self.events.publish(self.updated(id));
            }
            self.announce(changes);
        }
        Ok(total)
    }

    /// Announces a self-healing attempt (it changes no service itself).
    pub fn healed(&self, attempt: lookout_proto::depends::Healing) {
        self.events.publish(Event::Healing(Box::new(attempt)));
    }

    /// Resolves the services a request names to ids and refuses a cycle
    /// (`id`: the service that depends, `None` for a new one) and a
    /// healing rule's bad unit.
    fn check_depends(
        &self,
        id: Option<i64>,
        name: &str,
        depends_on: Option<&mut Vec<lookout_proto::depends::ServiceRef>>,
        heal: Option<&lookout_proto::depends::HealRule>,
    ) -> Result<(), StoreError> {
        use lookout_proto::depends::ServiceRef;
        use lookout_proto::error::FieldError;
        if let Some(unit) = heal.and_then(|h| h.unit.as_deref()) {
            if let Err(e) = lookout_systemd::UnitName::parse(unit) {
                return Err(StoreError::Invalid(FieldError::new(
                    "heal",
                    format!("unit: {e}"),
                )));
            }
        }
        let Some(refs) = depends_on else {
            return Ok(());
        };
        let mut ids = Vec::with_capacity(refs.len());
        let (mut unknown, mut unwatched) = (Vec::new(), Vec::new());
        {
            let memory = self.read();
            for r in refs.iter() {
                let found = match r {
                    ServiceRef::Id(want) => memory.by_id.get(want),
                    ServiceRef::Name(want) => memory
                        .by_id
                        .values()
                        .find(|e| e.service.name == *want)
                        .or_else(|| {
                            memory
                                .by_id
                                .values()
                                .find(|e| e.service.name.eq_ignore_ascii_case(want))
                        }),
                };
                match found.map(|e| &e.service) {
                    // A unit a scan found but nobody watches never alerts:
                    // what depends on it would wait on it in silence.
                    Some(s) if s.status != RegistryStatus::Configured => {
                        unwatched.push(s.name.clone());
                    }
                    Some(s) if !ids.contains(&s.id) => ids.push(s.id),
                    Some(_) => {}
                    None => unknown.push(r.to_string()),
                }
            }
        }
        if !unknown.is_empty() {
            return Err(StoreError::Invalid(FieldError::new(
                "depends_on",
                format!("no such service: {}", unknown.join(", ")),
            )));
        }
        if !unwatched.is_empty() {
            return Err(StoreError::Invalid(FieldError::new(
                "depends_on",
                format!(
                    "{} found by a scan but not watched: add it as a service first",
                    unwatched.join(", ")
                ),
            )));
        }
        let graph = self.graph();
        let cycle = {
            let memory = self.read();
            let named = |s: i64| match memory.by_id.get(&s) {
                Some(e) => e.service.name.clone(),
                None => name.to_owned(),
            };
            match id {
                Some(id) => graph.cycle_through(id, &ids, named),
                // A new service has no dependents yet.
                None => None,
            }
        };
        if let Some(cycle) = cycle {
            return Err(StoreError::Invalid(FieldError::new(
                "depends_on",
                format!("would make a cycle: {cycle}"),
            )));
        }
        *refs = ids.into_iter().map(ServiceRef::Id).collect();
        Ok(())
    }

    // ---- Writes: through the store, then into memory -------------------------

    /// Registers a service and computes its first status.
    pub async fn create(
        &self,
        new: &NewService,
        now: DateTime<Utc>,
    ) -> Result<(Service, Option<StatusEventView>), StoreError> {
        let mut new = new.clone();
        // A unit a scan found, registered under its name, may have
        // dependents already (only then is a cycle possible).
        let existing = if new.depends_on.is_empty() {
            None
        } else {
            self.read()
                .by_id
                .values()
                .find(|e| e.service.name == new.name.as_str())
                .map(|e| e.service.id)
        };
        if !new.depends_on.is_empty() || new.heal.is_some() {
            self.check_depends(
                existing,
                new.name.as_str(),
                Some(&mut new.depends_on),
                new.heal.as_ref(),
            )?;
        }
        let (service, change) = self.store.register_service(&new, now).await?;
        self.keep([service.clone()]);
        self.events.publish(self.created(service.id));
        self.announce(change.clone());
        Ok((service, change))
    }

    /// Changes a service's settings; `None` when there is no such service.
    pub async fn update(
        &self,
        id: i64,
        patch: &ServicePatch,
        now: DateTime<Utc>,
    ) -> Result<Option<(Service, Option<StatusEventView>)>, StoreError> {
        if patch.is_empty() {
            return Ok(self.get(id).map(|e| (e.service.clone(), None)));
        }
        let mut patch = patch.clone();
        if let Some(old) = self.get(id) {
            let old = &old.service;
            let heal = patch.heal.clone().flatten();
            self.check_depends(
                Some(id),
                &old.name,
                patch.depends_on.as_mut(),
                heal.as_ref(),
            )?;
            patch.resolve_probe(&old.probe);
            let base_url = match &patch.base_url {
                Some(new) => new.clone(),
                None => old.base_url.as_deref().and_then(|u| BaseUrl::parse(u).ok()),
            };
            let endpoint = match &patch.health_endpoint {
                Some(new) => new.clone(),
                None => old
                    .health_endpoint
                    .as_deref()
                    .and_then(|e| HealthEndpoint::parse(e).ok()),
            };
            let probe = patch.probe.as_ref().unwrap_or(&old.probe);
            check_combination(base_url.as_ref(), endpoint.as_ref(), probe)
                .map_err(StoreError::Invalid)?;
        }
        let patch = &patch;
        let Some((service, change)) = self.store.change_service(id, patch, now).await? else {
            self.apply([(id, None)], |_| Vec::new());
            return Ok(None);
        };
        self.keep([service.clone()]);
        self.events.publish(self.updated(id));
        self.announce(change.clone());
        Ok(Some((service, change)))
    }

    pub async fn delete(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let deleted = self.store.delete_service(id).await?;
        self.apply([(id, None)], |_| Vec::new());
        if deleted {
            self.events.publish(Event::ServiceDeleted { id });
            // Those that named it depend on it no more.
            let named: Vec<(i64, Vec<i64>)> = self
                .read()
                .by_id
                .values()
                .filter(|e| e.service.depends_on.contains(&id))
                .map(|e| (e.service.id, e.service.depends_on.clone()))
                .collect();
            for (child, depends_on) in named {
                let patch = ServicePatch {
                    depends_on: Some(
                        depends_on
                            .into_iter()
                            .filter(|p| *p != id)
                            .map(lookout_proto::depends::ServiceRef::Id)
                            .collect(),
                    ),
                    ..ServicePatch::default()
                };
                self.update(child, &patch, now).await?;
            }
        }
        Ok(deleted)
    }

    /// Recomputes a service's status from what is known of it.
    pub async fn reconcile(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Reconciled>, StoreError> {
        let reconciled = self.store.reconcile_state(id, now).await?;
        self.sync(&[id]).await?;
        if let Some(change) = reconciled.as_ref().and_then(|r| r.change.clone()) {
            self.announce([change]);
        }
        Ok(reconciled)
    }

    /// Stores a health result. Results arriving together are written
    /// together, in one transaction ([`WriteQueue`]); each then updates its
    /// service in memory from what was written.
    pub async fn record_health_check(&self, check: &HealthCheck) -> Result<Recorded, StoreError> {
        let (recorded, service) = self.checks.submit(check.clone()).await?;
        let outcome = service.as_ref().and_then(CheckOutcome::of);
        if let (Some(written), Some(outcome)) = (&service, &outcome) {
            if let Some(held) = self.get(written.id) {
                // The result's fields over the service as held now, so a
                // change that committed meanwhile (a rename, say) stays.
                let mut service = held.service.clone();
                outcome.apply(&mut service, written.health_status);
                self.keep([service]);
            }
        }
        if let Recorded::Stored(change) = &recorded {
            self.events.publish(Event::HealthChecked {
                id: check.service_id,
                status: check.status,
                outcome,
            });
            self.announce(change.clone());
        }
        Ok(recorded)
    }

    pub async fn apply_scan(
        &self,
        units: &[DiscoveredUnit],
        timers: &[TimerView],
        now: DateTime<Utc>,
    ) -> Result<ScanCounts, StoreError> {
        let counts = self.store.apply_scan(units, timers, now).await?;
        self.reload().await?;
        self.announce(counts.changes.clone());
        Ok(counts)
    }

    /// Announces that a scan's result is recorded in full.
    pub fn scan_completed(&self) {
        self.events.publish(Event::ScanCompleted {});
    }

    /// Records a unit's state seen outside a scan: followed live, or after
    /// a start, stop or restart.
    pub async fn set_unit_state(
        &self,
        unit: &str,
        state: &UnitState,
        now: DateTime<Utc>,
    ) -> Result<Vec<StatusEventView>, StoreError> {
        let (services, changes) = self.store.set_unit_state(unit, state, now).await?;
        Ok(self.keep_changed(services, changes))
    }

    /// Takes services a write changed into memory and publishes their
    /// status changes and updates; the changes.
    fn keep_changed(
        &self,
        services: Vec<Service>,
        changes: Vec<StatusEventView>,
    ) -> Vec<StatusEventView> {
        let ids: Vec<i64> = services.iter().map(|s| s.id).collect();
        self.keep(services);
        self.announce(changes.clone());
        for id in ids {
            self.events.publish(self.updated(id));
        }
        changes
    }

    /// Records the engine's containers (a container scan).
    pub async fn apply_containers(
        &self,
        containers: &[crate::store::DiscoveredContainer],
        now: DateTime<Utc>,
    ) -> Result<ScanCounts, StoreError> {
        let counts = self.store.apply_containers(containers, now).await?;
        self.reload().await?;
        self.announce(counts.changes.clone());
        Ok(counts)
    }

    /// Records a container's state seen outside a scan: from the engine's
    /// events, or after a start, stop or restart.
    pub async fn set_container_state(
        &self,
        container: &lookout_proto::container::ContainerView,
        now: DateTime<Utc>,
    ) -> Result<Vec<StatusEventView>, StoreError> {
        let (services, changes) = self.store.set_container_state(container, now).await?;
        Ok(self.keep_changed(services, changes))
    }

    /// The service of a container, by container name.
    pub fn by_container(&self, name: &str) -> Option<Arc<Entry>> {
        self.read()
            .by_id
            .values()
            .find(|e| e.service.container.as_deref() == Some(name))
            .cloned()
    }

    pub async fn set_unit_link(&self, id: i64, unit: &str) -> Result<(), StoreError> {
        self.store.set_unit_link(id, unit).await?;
        self.sync(&[id]).await?;
        self.events.publish(self.updated(id));
        Ok(())
    }

    pub async fn delete_removed(&self) -> Result<u64, StoreError> {
        let deleted = self.store.delete_removed().await?;
        self.reload().await?;
        self.scan_completed();
        Ok(deleted)
    }

    pub async fn heartbeat(
        &self,
        name: &str,
        ip: &str,
        ttl_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat, StoreError> {
        let beat = self.store.heartbeat(name, ip, ttl_secs, now).await?;
        self.sync(&[beat.service.id]).await?;
        if beat.created {
            self.events.publish(self.created(beat.service.id));
        }
        self.announce(beat.change.clone());
        Ok(beat)
    }

    /// Whether, by memory, a heartbeat or push ping may be overdue at `now`
    /// or an agent's check may have lost its agent (the first value), and
    /// whether a heartbeat service may have been silent since before
    /// `silent_before` (the second). Memory can only be behind the database
    /// (another hub's heartbeats), so a "no" here is a "no" there.
    pub fn may_be_due(&self, now: DateTime<Utc>, silent_before: DateTime<Utc>) -> (bool, bool) {
        let memory = self.read();
        let (mut overdue, mut silent) = (false, false);
        for entry in memory.by_id.values() {
            let s = &entry.service;
            overdue |= s.state != Status::Failure && s.missed_after().is_some_and(|t| t < now);
            silent |= s.heartbeat_ttl_secs.is_some()
                && s.last_heartbeat.is_some_and(|t| t < silent_before);
            // Agents' liveness is not in memory: their checks are looked up.
            overdue |= s.server_id.is_some() && s.state != Status::Unknown;
            if overdue && silent {
                break;
            }
        }
        (overdue, silent)
    }

    pub async fn overdue(&self, now: DateTime<Utc>) -> Result<Vec<StatusEventView>, StoreError> {
        let changes = self.store.overdue(now).await?;
        self.sync(&changes.iter().map(|c| c.service_id).collect::<Vec<_>>())
            .await?;
        self.announce(changes.clone());
        Ok(changes)
    }

    pub async fn remove_silent_heartbeats(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let removed = self.store.remove_silent_heartbeats(before).await?;
        self.sync(&removed).await?;
        for &id in &removed {
            self.events.publish(Event::ServiceDeleted { id });
        }
        Ok(removed)
    }

    pub async fn set_push_token(
        &self,
        id: i64,
        token_hash: Option<&str>,
        timing: &lookout_proto::push::PushTiming,
    ) -> Result<bool, StoreError> {
        let set = self.store.set_push_token(id, token_hash, timing).await?;
        self.sync(&[id]).await?;
        if set {
            self.events.publish(self.updated(id));
        }
        Ok(set)
    }

    pub async fn record_push(
        &self,
        token_hash: &str,
        ping: &lookout_proto::push::Ping,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, Option<StatusEventView>)>, StoreError> {
        let pushed = self.store.record_push(token_hash, ping, now).await?;
        if let Some((id, change)) = &pushed {
            self.sync(&[*id]).await?;
            match change {
                Some(change) => self.announce([change.clone()]),
                // The ping's time, message and run are news too.
                None => self.events.publish(self.updated(*id)),
            }
        }
        Ok(pushed)
    }

    // ---- Agents' checks ---------------------------------------------------------

    /// Takes what an agent's message changed into memory: the services the
    /// write returned as they are, the others read again.
    async fn sync_ingested(&self, ingested: &mut Ingested) -> Result<(), StoreError> {
        let written = std::mem::take(&mut ingested.written);
        let ids: Vec<i64> = ingested
            .created
            .iter()
            .chain(&ingested.updated)
            .chain(&ingested.deleted)
            .copied()
            .chain(ingested.changes.iter().map(|c| c.service_id))
            .filter(|id| !written.iter().any(|s| s.id == *id))
            .collect::<std::collections::BTreeSet<i64>>()
            .into_iter()
            .collect();
        self.keep(written);
        self.sync(&ids).await
    }

    pub async fn set_server_checks(
        &self,
        server_id: i64,
        checks: &[CheckDecl],
        now: DateTime<Utc>,
    ) -> Result<Ingested, StoreError> {
        let mut ingested = self.store.set_server_checks(server_id, checks, now).await?;
        self.sync_ingested(&mut ingested).await?;
        self.publish_ingested(server_id, &ingested);
        Ok(ingested)
    }

    pub async fn record_results(
        &self,
        server_id: i64,
        results: &[StatusUpdate],
        now: DateTime<Utc>,
    ) -> Result<Ingested, StoreError> {
        // Messages from many agents arriving together are written together.
        let mut ingested = self
            .results
            .submit(Results {
                server_id,
                updates: results.to_vec(),
                received_at: now,
            })
            .await?;
        self.sync_ingested(&mut ingested).await?;
        // A result is its own event (`result`); announcing the service as
        // updated too would make every listener re-read the registry.
        ingested.updated.clear();
        self.publish_ingested(server_id, &ingested);
        Ok(ingested)
    }

    /// Publishes what an agent's checks or results changed.
    fn publish_ingested(&self, server_id: i64, ingested: &Ingested) {
        for &id in &ingested.created {
            self.events.publish(self.created(id));
        }
        for &id in &ingested.updated {
            self.events.publish(self.updated(id));
        }
        for &id in &ingested.deleted {
            self.events.publish(Event::ServiceDeleted { id });
        }
        for (check, result) in &ingested.results {
            self.events.publish(Event::CheckResult {
                server_id,
                check: check.as_str().into(),
                result: Box::new(result.clone()),
            });
        }
        self.announce(ingested.changes.clone());
    }

    /// The view of a service as memory holds it, for its event.
    fn view(&self, id: i64) -> Option<Box<crate::events::ServiceJson>> {
        self.get(id)
            .map(|e| Box::new(crate::events::ServiceJson::new(e.json.clone())))
    }

    fn created(&self, id: i64) -> Event {
        Event::ServiceCreated {
            id,
            service: self.view(id),
        }
    }

    fn updated(&self, id: i64) -> Event {
        Event::ServiceUpdated {
            id,
            service: self.view(id),
        }
    }

    /// Announces that a server changed (added, claimed, connected or
    /// disconnected) where its record or presence is kept.
    pub fn server_changed(&self, id: i64) {
        self.events.publish(Event::ServerUpdated { id });
    }

    /// Stores what a server's agent found on its host, and announces it.
    pub async fn set_server_scan(
        &self,
        server_id: i64,
        scan: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.store.set_server_scan(server_id, scan, now).await?;
        self.server_changed(server_id);
        Ok(())
    }

    /// The ids of a server's checks in memory.
    fn checks_of(&self, server_id: i64) -> Vec<i64> {
        self.read()
            .by_id
            .values()
            .filter(|e| e.service.server_id == Some(server_id))
            .map(|e| e.service.id)
            .collect()
    }

    pub async fn agent_seen(
        &self,
        server_id: i64,
        heartbeat_secs: i64,
        version: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StatusEventView>, StoreError> {
        let changes = self
            .store
            .agent_seen(server_id, heartbeat_secs, version, now)
            .await?;
        self.sync(&changes.iter().map(|c| c.service_id).collect::<Vec<_>>())
            .await?;
        self.announce(changes.clone());
        Ok(changes)
    }

    pub async fn revoke_server(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<StatusEventView>>, StoreError> {
        let revoked = self.store.revoke_server(id, now).await?;
        self.sync(&self.checks_of(id)).await?;
        if let Some(changes) = &revoked {
            self.announce(changes.clone());
            self.server_changed(id);
        }
        Ok(revoked)
    }

    pub async fn delete_server(&self, id: i64) -> Result<Option<Vec<i64>>, StoreError> {
        let checks = self.checks_of(id);
        let deleted = self.store.delete_server(id).await?;
        self.sync(&checks).await?;
        if let Some(checks) = &deleted {
            for &sid in checks {
                self.events.publish(Event::ServiceDeleted { id: sid });
            }
            self.events.publish(Event::ServerDeleted { id });
        }
        Ok(deleted)
    }
}

/// How often a hub sharing its database reads every service again, for the
/// changes that leave no event (a heartbeat or a push ping that changes no
/// status, written by another hub).
pub const SHARED_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl Registry {
    /// With several hubs on one database: applies every change in the shared
    /// event log (the other hubs' and this one's) to memory, and reads every
    /// service again every [`SHARED_RELOAD_EVERY`]. Runs until `shutdown`.
    pub async fn follow(
        self: Arc<Self>,
        mut log: tokio::sync::broadcast::Receiver<crate::events::LiveEvent>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        let mut reload = tokio::time::interval(SHARED_RELOAD_EVERY);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let done = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = reload.tick() => self.reload().await,
                event = log.recv() => match event {
                    Ok(event) => {
                        let done = self.apply_logged(&event).await;
                        self.applied_up_to(event.id);
                        done
                    }
                    Err(RecvError::Lagged(_)) => self.reload().await,
                    Err(RecvError::Closed) => break,
                },
            };
            if let Err(e) = done {
                tracing::warn!(error = ?e, "the registry could not follow the database");
            }
        }
    }

    /// The id of the newest logged event whose change memory has.
    pub fn applied(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Memory has every logged change up to `id`.
    pub fn applied_up_to(&self, id: i64) {
        self.applied.send_if_modified(|applied| {
            let newer = id > *applied;
            *applied = (*applied).max(id);
            newer
        });
    }

    /// Waits until memory has every logged change up to `id`; false if that
    /// takes longer than `within`.
    pub async fn wait_applied(&self, id: i64, within: std::time::Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(within, rx.wait_for(|applied| *applied >= id)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Notes the ids the event log gave this hub's own events.
    pub fn mark_own(&self, ids: &[i64]) {
        let mut own = lock(&self.own);
        own.extend(ids);
    }

    /// Whether `id` is one of this hub's own events; forgets every own id up
    /// to it (the log is followed in id order).
    fn is_own(&self, id: i64) -> bool {
        let mut own = lock(&self.own);
        let later = own.split_off(&(id + 1));
        let mine = own.contains(&id);
        *own = later;
        mine
    }

    /// Puts a change that carries its own data into memory without a read;
    /// false when the service is not held (then it must be read).
    fn apply_carried(&self, event: &Event) -> bool {
        let (id, at) = match event {
            Event::StatusChanged(change) => (change.service_id, change.at),
            Event::HealthChecked {
                id,
                outcome: Some(outcome),
                ..
            } => (*id, outcome.last_health_check),
            Event::CheckResult { result, .. } => (result.service_id, result.received_at),
            _ => return false,
        };
        let Some(held) = self.get(id) else {
            return false;
        };
        let mut service = held.service.clone();
        match event {
            Event::HealthChecked {
                status,
                outcome: Some(outcome),
                ..
            } => {
                if service.last_health_check.is_some_and(|t| t > at) {
                    return true;
                }
                outcome.apply(&mut service, *status);
            }
            Event::StatusChanged(change) => {
                service.state = change.new;
                service.state_reason = Some(change.reason.clone());
                service.state_since = Some(change.at);
            }
            Event::CheckResult { result, .. } => {
                if service.check_at.is_some_and(|t| t > result.at) {
                    return true;
                }
                service.check_status = Some(result.status.as_str().to_owned());
                service.check_message = Some(result.message.clone());
                service.check_at = Some(result.at);
                // A result comes from an agent in touch; a new status comes
                // with its own event, the reason may change with the message.
                // (An agent's check has no unit: the crash-loop rule's
                // setting plays no part.)
                let rules = lookout_proto::status::StatusRules::default();
                let (status, reason) = service.kind(true, at, rules).status();
                if status == service.state {
                    service.state_reason = Some(reason);
                }
            }
            _ => {}
        }
        self.keep([service]);
        true
    }

    /// Brings memory up to date with one logged change.
    async fn apply_logged(&self, event: &crate::events::LiveEvent) -> Result<(), StoreError> {
        if self.is_own(event.id) {
            return Ok(());
        }
        let typed = Event::from_wire(event.kind, &event.data.text());
        if let Some(Event::StatusChanged(change)) = &typed {
            self.remember(std::slice::from_ref(change));
        }
        if typed.as_ref().is_some_and(|e| self.apply_carried(e)) {
            return Ok(());
        }
        match typed {
            Some(
                Event::ServiceCreated { id, .. }
                | Event::ServiceUpdated { id, .. }
                | Event::ServiceDeleted { id }
                | Event::HealthChecked { id, .. },
            ) => self.sync(&[id]).await,
            Some(Event::StatusChanged(change)) => self.sync(&[change.service_id]).await,
            Some(Event::CheckResult { result, .. }) => self.sync(&[result.service_id]).await,
            // A server's presence and revocation change its checks only.
            Some(Event::ServerUpdated { id } | Event::ServerDeleted { id }) => {
                self.sync(&self.checks_of(id)).await
            }
            Some(Event::ScanCompleted {}) => self.reload().await,
            // Healing changes no service by itself.
            Some(Event::Healing(_)) | None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batches written, the writes running, and the most at once.
    type Seen = Arc<std::sync::Mutex<(Vec<Vec<i64>>, usize, usize)>>;

    /// A queue whose writes take 20 ms and note what they were given and
    /// how many ran at once.
    fn slow_queue(most_writers: usize) -> (WriteQueue<i64, i64>, Seen) {
        let seen = Arc::new(std::sync::Mutex::new((Vec::new(), 0, 0)));
        let log = seen.clone();
        let queue = WriteQueue::new(
            Arc::new(move |items: Arc<[i64]>| {
                let log = log.clone();
                Box::pin(async move {
                    {
                        let mut log = lock(&log);
                        log.0.push(items.to_vec());
                        log.1 += 1;
                        log.2 = log.2.max(log.1);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    lock(&log).1 -= 1;
                    Ok(items.iter().map(|i| i * 10).collect())
                })
            }),
            most_writers,
            |item| *item,
        );
        (queue, seen)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_go_in_row_order_and_side_by_side_up_to_the_stores_limit() {
        for most in [1, 3] {
            let (queue, seen) = slow_queue(most);
            let queue = Arc::new(queue);
            // Forty writes, arriving over 60 ms, keys falling.
            let mut answers = Vec::new();
            for item in (0..40).rev() {
                let queue = queue.clone();
                answers.push(tokio::spawn(
                    async move { (item, queue.submit(item).await) },
                ));
                tokio::time::sleep(std::time::Duration::from_micros(1500)).await;
            }
            for answer in answers {
                let (item, answer) = answer.await.unwrap();
                assert_eq!(answer.unwrap(), item * 10, "each gets its own answer");
            }
            let (batches, running, most_at_once) = lock(&seen).clone();
            assert_eq!(running, 0);
            assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 40);
            for batch in &batches {
                assert!(batch.is_sorted(), "{batch:?}");
            }
            if most == 1 {
                assert_eq!(most_at_once, 1, "one writer at a time");
            } else {
                assert!(
                    (2..=most).contains(&most_at_once),
                    "writers side by side: {most_at_once}"
                );
            }
        }
    }

    #[test]
    fn reshaped_services_are_named_until_there_are_too_many() {
        let mut r = Reshaped::default();
        r.add(vec![3, 1]);
        r.add(vec![3]);
        assert_eq!(r, Reshaped::Only([1, 3].into()));
        r.add((10..10 + Reshaped::MOST as i64).collect());
        assert_eq!(r, Reshaped::Everything);
        r.add(vec![7]);
        assert_eq!(r, Reshaped::Everything);
    }
}
