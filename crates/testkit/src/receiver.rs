//! A real HTTP server on loopback that records what notification channels
//! send it (webhook, ntfy, Gotify, Discord and Slack all speak HTTP).
//! Requests to a path starting with `/fail` are answered 500, to one
//! starting with `/gone` 410 (a push subscription the browser dropped), and
//! the others 201 (what a push service answers; every channel takes a 2xx).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    /// The body's bytes as sent (encrypted pushes are not text).
    pub raw: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = got.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let path = uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let fail = path.starts_with("/fail");
                let gone = path.starts_with("/gone");
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Received {
                        path,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        raw: body,
                    });
                if fail {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else if gone {
                    StatusCode::GONE
                } else {
                    StatusCode::OK
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, got, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything received on paths starting with `prefix`.
    pub fn received(&self, prefix: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits until `count` requests arrived on `prefix`; panics after `deadline`.
    pub async fn wait_for(&self, prefix: &str, count: usize, deadline: Duration) -> Vec<Received> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let got = self.received(prefix);
            if got.len() >= count {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{prefix}: {} of {count} requests after {deadline:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
