//! The hub's background tasks under one supervisor: a task that ends while
//! the hub runs is reported (`/readyz` fails) and stops the hub.

use crate::sync::lock;
use std::future::Future;

use tokio_util::sync::CancellationToken;

/// The hub's background tasks, each with its name.
#[derive(Default)]
pub struct Supervisor {
    set: tokio::task::JoinSet<()>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Supervisor {
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// The first task to end while `stop` is not cancelled, and how it
    /// ended; never, if none does.
    pub async fn unexpected_exit(
        &mut self,
        stop: &CancellationToken,
    ) -> (&'static str, &'static str) {
        loop {
            let (id, why) = match self.set.join_next_with_id().await {
                None => return std::future::pending().await,
                Some(Ok((id, ()))) => (id, "ended"),
                Some(Err(e)) if e.is_panic() => (e.id(), "panicked"),
                Some(Err(e)) => (e.id(), "was cancelled"),
            };
            if !stop.is_cancelled() {
                return (
                    self.names.get(&id).copied().unwrap_or("background task"),
                    why,
                );
            }
        }
    }

    /// Waits for every task to end (they end when the hub's stop is cancelled).
    pub async fn stop(&mut self) {
        while self.set.join_next().await.is_some() {}
    }
}

/// Whether the hub's background tasks all run; `/readyz` reports it.
#[derive(Debug, Default)]
pub struct TaskHealth {
    failed: std::sync::Mutex<Option<&'static str>>,
}

impl TaskHealth {
    pub fn task_failed(&self, name: &'static str) {
        *lock(&self.failed) = Some(name);
    }

    /// The task that ended before its time, if one did.
    pub fn failed(&self) -> Option<&'static str> {
        *lock(&self.failed)
    }
}
