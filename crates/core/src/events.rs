//! The hub's event stream: every change to the registry and every check
//! result is published here once. The health scheduler listens to pick up new
//! and changed services, the notifier to decide about alerts, and the recorder
//! writes each event to the event log, from which live clients (SSE,
//! WebSocket) and the other hubs of a shared database read it.
//!
//! One type, one wire form: an event is `{"type": ..., "data": ...}` in the
//! log and in every frame, and reads back into the same [`Event`], so the
//! notifier has one feed whichever engine the hub runs on.

use crate::store::Service;
use crate::sync::lock;
use chrono::{DateTime, Utc};
use lookout_proto::service::{CheckResultView, HealthStatus, ServiceView, StatusEventView};
use lookout_proto::status::Status;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

/// Something that changed in the hub, as the event log and live clients see
/// it: `type` names the variant, `data` holds its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A service was registered: `{"id", "service"}`, the service as the
    /// API shows it, so a client need not fetch it.
    #[serde(rename = "service.created")]
    ServiceCreated {
        id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<Box<ServiceJson>>,
    },
    /// A service's settings changed: `{"id", "service"}`, as it now is.
    #[serde(rename = "service.updated")]
    ServiceUpdated {
        id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<Box<ServiceJson>>,
    },
    /// A service was deleted: `{"id"}`.
    #[serde(rename = "service.deleted")]
    ServiceDeleted { id: i64 },
    /// A health check ran: `{"id", "health_status"}` and what the check
    /// left on the service (its `last_*` fields and its status), so a
    /// client or another hub need not fetch it.
    #[serde(rename = "check")]
    HealthChecked {
        id: i64,
        #[serde(rename = "health_status")]
        status: HealthStatus,
        /// Absent in events written before hubs carried it.
        #[serde(flatten)]
        outcome: Option<Box<CheckOutcome>>,
    },
    /// A systemd scan refreshed the registry: `{}`.
    #[serde(rename = "scan")]
    ScanCompleted {},
    /// A service's status changed (stored in its history): the change.
    #[serde(rename = "status")]
    StatusChanged(Box<StatusEventView>),
    /// An agent's check reported a result (stored once): the result, with
    /// `server_id` and `check`.
    #[serde(rename = "result")]
    CheckResult {
        server_id: i64,
        check: Box<str>,
        #[serde(flatten)]
        result: Box<CheckResultView>,
    },
    /// A server was added, claimed, revoked, came online or sent a scan:
    /// `{"id"}`.
    #[serde(rename = "server.updated")]
    ServerUpdated { id: i64 },
    /// A server was deleted: `{"id"}`.
    #[serde(rename = "server.deleted")]
    ServerDeleted { id: i64 },
    /// Self-healing restarted a service's unit, failed to, or gave up: the
    /// attempt.
    #[serde(rename = "heal")]
    Healing(Box<lookout_proto::depends::Healing>),
}

/// What a health check left on its service, named as the service's view
/// names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub last_health_check: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// A condition marked WARNING failed: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_expires_at: Option<DateTime<Utc>>,
    pub state: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_since: Option<DateTime<Utc>>,
}

impl CheckOutcome {
    /// The outcome `service` holds after its check, if it was checked.
    pub fn of(service: &Service) -> Option<Box<Self>> {
        Some(Box::new(Self {
            last_health_check: service.last_health_check?,
            last_response_code: service.last_response_code,
            last_latency_ms: service.last_latency_ms,
            last_error: service.last_error.clone(),
            warning: service.last_warning.clone(),
            cert_expires_at: service.cert_expires_at,
            state: service.state,
            state_reason: service.state_reason.clone(),
            state_since: service.state_since,
        }))
    }

    /// Puts the outcome on `service`.
    pub fn apply(&self, service: &mut Service, status: HealthStatus) {
        service.health_status = status;
        service.last_health_check = Some(self.last_health_check);
        service.last_response_code = self.last_response_code;
        service.last_latency_ms = self.last_latency_ms;
        service.last_error.clone_from(&self.last_error);
        service.last_warning.clone_from(&self.warning);
        service.cert_expires_at = self.cert_expires_at;
        service.state = self.state;
        service.state_reason.clone_from(&self.state_reason);
        service.state_since = self.state_since;
    }
}

impl Event {
    /// The event's wire type (`service.created`, `check`, `status`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ServiceCreated { .. } => "service.created",
            Event::ServiceUpdated { .. } => "service.updated",
            Event::ServiceDeleted { .. } => "service.deleted",
            Event::HealthChecked { .. } => "check",
            Event::ScanCompleted {} => "scan",
            Event::StatusChanged(_) => "status",
            Event::CheckResult { .. } => "result",
            Event::ServerUpdated { .. } => "server.updated",
            Event::ServerDeleted { .. } => "server.deleted",
            Event::Healing(_) => "heal",
        }
    }

    /// The status change this event carries, if it is one.
    pub fn status_change(&self) -> Option<&StatusEventView> {
        match self {
            Event::StatusChanged(change) => Some(change),
            _ => None,
        }
    }

    /// The event's wire type and data.
    pub fn wire(&self) -> (&'static str, WireData) {
        if let Event::ServiceCreated {
            id,
            service: Some(json),
        }
        | Event::ServiceUpdated {
            id,
            service: Some(json),
        } = self
        {
            return (self.kind(), WireData::service(*id, json));
        }
        /// The event as written (`{"type", "data"}`), its data taken whole.
        #[derive(serde::Deserialize)]
        struct Whole {
            data: Option<Box<RawValue>>,
        }
        let data = serde_json::to_string(self)
            .ok()
            .and_then(|text| serde_json::from_str::<Whole>(&text).ok())
            .and_then(|whole| whole.data);
        // Every variant has data (`{}` at least): `null` is never sent.
        let data = data.unwrap_or_else(|| RawValue::NULL.to_owned());
        (self.kind(), WireData(Arc::new(Wire::Text(data))))
    }

    /// The event a logged `kind` and `data` stand for; `None` for a kind or
    /// data this hub does not know (written by a newer hub, say).
    pub fn from_wire(kind: &str, data: &str) -> Option<Event> {
        let data: serde_json::Value = serde_json::from_str(data).ok()?;
        serde_json::from_value(serde_json::json!({"type": kind, "data": data})).ok()
    }
}

/// An event's `data` as JSON text, shared: the live channel keeps the last
/// few thousand events for slow clients, and text costs a fraction of a
/// parsed `serde_json::Value`. A service's event (`{"id", "service"}`) keeps
/// the service's JSON as memory holds it, without a copy.
#[derive(Debug, Clone)]
pub struct WireData(Arc<Wire>);

#[derive(Debug)]
enum Wire {
    Text(Box<RawValue>),
    Service { id: i64, json: bytes::Bytes },
}

impl WireData {
    /// A service's event data: `{"id": id, "service": json}`.
    fn service(id: i64, json: &ServiceJson) -> Self {
        WireData(Arc::new(Wire::Service {
            id,
            json: json.0.clone(),
        }))
    }

    /// The data as JSON text.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &*self.0 {
            Wire::Text(raw) => std::borrow::Cow::Borrowed(raw.get()),
            Wire::Service { .. } => std::borrow::Cow::Owned(self.to_string()),
        }
    }
}

impl PartialEq for WireData {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl From<String> for WireData {
    /// `text` must be JSON (as the event log keeps it); anything else is
    /// kept as `null`.
    fn from(text: String) -> Self {
        let raw = RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned());
        WireData(Arc::new(Wire::Text(raw)))
    }
}

impl std::fmt::Display for WireData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Wire::Text(raw) => f.write_str(raw.get()),
            Wire::Service { id, json } => {
                // Memory's JSON is serde_json's output: UTF-8.
                let json = std::str::from_utf8(json).unwrap_or("null");
                write!(f, "{{\"id\":{id},\"service\":{json}}}")
            }
        }
    }
}

impl Serialize for WireData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &*self.0 {
            Wire::Text(raw) => raw.serialize(s),
            Wire::Service { id, json } => {
                #[derive(Serialize)]
                struct ServiceData<'a> {
                    id: i64,
                    service: &'a RawValue,
                }
                let service = serde_json::from_slice(json).map_err(serde::ser::Error::custom)?;
                ServiceData { id: *id, service }.serialize(s)
            }
        }
    }
}

/// A service as the API shows it, as JSON text: the bytes memory keeps for
/// the service, shared, so that its events (and the buses' rings that hold
/// them for a while) cost no copy of it.
#[derive(Debug, Clone)]
pub struct ServiceJson(bytes::Bytes);

impl PartialEq for ServiceJson {
    /// The same JSON, whatever the order of its keys.
    fn eq(&self, other: &Self) -> bool {
        let value = |json: &[u8]| serde_json::from_slice::<serde_json::Value>(json).ok();
        self.0 == other.0 || value(&self.0) == value(&other.0)
    }
}

impl ServiceJson {
    pub fn new(json: bytes::Bytes) -> Self {
        Self(json)
    }

    /// The view, read back.
    pub fn view(&self) -> Option<ServiceView> {
        serde_json::from_slice(&self.0).ok()
    }
}

impl Serialize for ServiceJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_slice(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ServiceJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let json = serde_json::to_vec(&value).map_err(serde::de::Error::custom)?;
        Ok(Self(json.into()))
    }
}

/// An event as live clients receive it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveEvent {
    /// Increasing; send it back as `Last-Event-ID` to resume.
    pub id: i64,
    /// `status`, `check`, `result`, `service.created`, `service.updated`,
    /// `service.deleted`, `server.updated`, `server.deleted` or `scan`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: WireData,
}

/// How far the recorder has logged what was published: how many bus events
/// it has taken, and the event log's id of the newest one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Logged {
    pub taken: u64,
    pub id: i64,
}

/// A cheap-to-clone handle for publishing and subscribing.
#[derive(Debug, Clone)]
pub struct EventBus {
    /// Shared, not copied: each subscriber takes a reference count, and
    /// the channel's ring of slots holds a pointer per slot.
    tx: broadcast::Sender<Arc<Event>>,
    /// Events published so far; sending and counting happen under this lock,
    /// so the count after a publish covers that event and every earlier one.
    published: Arc<Mutex<u64>>,
    logged: Arc<watch::Sender<Logged>>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self {
            tx,
            published: Arc::default(),
            logged: Arc::new(watch::Sender::new(Logged::default())),
        }
    }

    /// Publishes an event; having no subscriber is fine.
    pub fn publish(&self, event: Event) {
        let mut published = lock(&self.published);
        let _ = self.tx.send(Arc::new(event));
        *published += 1;
    }

    /// Publishes status changes in the order they happened.
    pub fn publish_changes(&self, changes: impl IntoIterator<Item = StatusEventView>) {
        for change in changes {
            self.publish(Event::StatusChanged(Box::new(change)));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// How many events were published so far.
    pub fn published(&self) -> u64 {
        *lock(&self.published)
    }

    /// The recorder has logged `taken` events, the newest as `id`.
    pub fn logged_up_to(&self, taken: u64, id: i64) {
        self.logged.send_if_modified(|logged| {
            let newer = taken > logged.taken || id > logged.id;
            if newer {
                logged.taken = logged.taken.max(taken);
                logged.id = logged.id.max(id);
            }
            newer
        });
    }

    /// The event log's id of the newest logged event once the first
    /// `published` events are logged; `None` if that takes longer than
    /// `within`.
    pub async fn logged(&self, published: u64, within: std::time::Duration) -> Option<i64> {
        let mut rx = self.logged.subscribe();
        let reached = tokio::time::timeout(within, rx.wait_for(|l| l.taken >= published)).await;
        match reached {
            Ok(Ok(logged)) => Some(logged.id),
            _ => None,
        }
    }
}
