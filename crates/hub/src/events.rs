//! The hub's internal event stream: every change to the registry and every
//! check result is published here once. The health scheduler listens to it to
//! pick up new and changed services; live views (SSE, WebSocket) will too.

use lookout_proto::service::{HealthStatus, StatusEventView};
use tokio::sync::broadcast;

/// Something that changed in the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    ServiceCreated {
        id: i64,
    },
    ServiceUpdated {
        id: i64,
    },
    ServiceDeleted {
        id: i64,
    },
    HealthChecked {
        id: i64,
        status: HealthStatus,
    },
    /// A systemd scan refreshed the registry.
    ScanCompleted,
    /// A service's status changed (stored in its history).
    StatusChanged(StatusEventView),
    /// An agent's check reported a result (stored once).
    CheckResult {
        server_id: i64,
        check: String,
        result: lookout_proto::service::CheckResultView,
    },
    /// A server was added, claimed, revoked, came online or sent a scan.
    ServerUpdated {
        id: i64,
    },
    /// A server was deleted.
    ServerDeleted {
        id: i64,
    },
}

/// A cheap-to-clone handle for publishing and subscribing.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }

    /// Publishes an event; having no subscriber is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// Publishes status changes in the order they happened.
    pub fn publish_changes(&self, changes: impl IntoIterator<Item = StatusEventView>) {
        for change in changes {
            self.publish(Event::StatusChanged(change));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
