//! The HTTP server: hyper's HTTP/1 connections, plain or TLS, with what
//! `axum::serve` leaves out for a hub that faces a network:
//!
//! - a header-read timeout (`--header-timeout`, default 15 s): a client must
//!   send a request's headers within it, else the connection is closed; it
//!   also closes keep-alive connections idle that long. Live streams (event
//!   streams, WebSockets: agents and dashboards) are past their headers and
//!   keep their connection;
//! - a cap on the connections one client has open without having sent a
//!   request yet ([`MAX_WAITING_PER_CLIENT`], counted per address, an IPv6
//!   client by its /64; reverse proxies in `--trusted-proxies` are exempt):
//!   connections beyond it are closed at once, so one client cannot hold the
//!   hub's sockets;
//! - graceful shutdown: on the signal no new connection is taken and the
//!   server waits for the requests in flight; WebSocket upgrades.

use lookout_core::sync::lock;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::tls::Peer;

/// Connections one client may hold open before sending its first request.
pub const MAX_WAITING_PER_CLIENT: usize = 32;

/// Connections open and not yet past their first request's headers, per
/// client.
#[derive(Debug, Default)]
struct Waiting(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted in [`Waiting`] until it is dropped.
struct WaitingGuard {
    table: Arc<Waiting>,
    client: IpAddr,
}

impl Waiting {
    fn enter(table: &Arc<Waiting>, client: IpAddr) -> Option<WaitingGuard> {
        let mut counts = lock(&table.0);
        let n = counts.entry(client).or_default();
        if *n >= MAX_WAITING_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(WaitingGuard {
            table: table.clone(),
            client,
        })
    }
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        let mut counts = lock(&self.table.0);
        if let Some(n) = counts.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for
/// the requests in flight.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    trusted: Vec<IpNet>,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Every connection's task, to wait for at shutdown, and the signal that
    // asks them to finish their request in flight and close.
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    let waiting = Arc::new(Waiting::default());
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let guard = if trusted.iter().any(|net| net.contains(&peer.ip())) {
            None
        } else {
            let client = crate::auth::limit::limit_key(peer.ip());
            match Waiting::enter(&waiting, client) {
                Some(guard) => Some(guard),
                None => {
                    tracing::debug!(%peer, "too many connections without a request: closed");
                    continue;
                }
            }
        };
        // Counted as waiting until its first request arrives (or it closes).
        let guard = Arc::new(Mutex::new(guard));
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::http::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(Peer(peer)));
                    if let Ok(mut guard) = guard.lock() {
                        guard.take();
                    }
                    request
                });
        let connection = http
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
            .with_upgrades();
        let stop = stopping.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
}
