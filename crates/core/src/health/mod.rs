//! Health checking: one HTTP probe ([`Checker`]) and the background
//! [`scheduler`] that runs it for every configured service.

pub mod scheduler;

use std::error::Error as _;
use std::time::{Duration, Instant};

use lookout_proto::service::HealthStatus;

use crate::clock::Clock;
use crate::config::CheckDefaults;
use crate::store::{HealthCheck, Service};

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub status: HealthStatus,
    pub response_code: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
}

/// Sends health-check requests. Cheap to clone; clones share one HTTP client.
#[derive(Debug, Clone)]
pub struct Checker {
    client: reqwest::Client,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// When each service was last checked on request (`GET
    /// /api/services/{id}/health`), so a burst of reads sends one probe.
    on_request:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i64, std::time::Instant>>>,
}

/// A service is probed on request at most this often; a request within it
/// gets the newest stored result.
pub const ON_REQUEST_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Checker {
    /// A checker counting its probes in `metrics`.
    pub fn new(metrics: std::sync::Arc<crate::metrics::Metrics>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "lookout/",
                env!("CARGO_PKG_VERSION"),
                " (health check)"
            ))
            // A fresh connection per check measures what a new visitor would see,
            // and a dead server cannot hide behind a pooled connection.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        Ok(Self {
            client,
            metrics,
            on_request: std::sync::Arc::default(),
        })
    }

    /// Whether a check of `id` asked for by a request may go out now (and
    /// then notes it); `false` within [`ON_REQUEST_EVERY`] of the last one.
    pub fn may_check_on_request(&self, id: i64) -> bool {
        let now = std::time::Instant::now();
        let mut last = self.on_request.lock().expect("checker lock");
        last.retain(|_, at| now.duration_since(*at) < ON_REQUEST_EVERY);
        if last.contains_key(&id) {
            return false;
        }
        last.insert(id, now);
        true
    }

    /// Requests `url` once. Any 2xx is healthy; everything else is unhealthy
    /// with the reason kept. Never takes much longer than `timeout`.
    pub async fn probe(&self, url: &str, timeout: Duration) -> Probe {
        let started = Instant::now();
        let request = self.client.get(url).timeout(timeout).send();
        // The outer timeout is a backstop in case a phase escapes reqwest's own.
        let outcome = tokio::time::timeout(timeout + Duration::from_millis(100), request).await;
        let latency_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        let probe = match outcome {
            Ok(Ok(response)) => {
                let code = response.status();
                let healthy = code.is_success();
                Probe {
                    status: if healthy {
                        HealthStatus::Healthy
                    } else {
                        HealthStatus::Unhealthy
                    },
                    response_code: Some(code.as_u16()),
                    latency_ms,
                    error: (!healthy).then(|| format!("HTTP {code}")),
                }
            }
            Ok(Err(e)) => Probe {
                status: HealthStatus::Unhealthy,
                response_code: None,
                latency_ms,
                error: Some(describe(&e, timeout)),
            },
            Err(_) => Probe {
                status: HealthStatus::Unhealthy,
                response_code: None,
                latency_ms,
                error: Some(format!("timed out after {}", human(timeout))),
            },
        };
        self.metrics.http_check(
            probe.status == HealthStatus::Healthy,
            probe.response_code.is_none(),
        );
        probe
    }

    /// Checks a service now and returns the result to store. A service without
    /// a health endpoint is `unknown`, without any request.
    pub async fn check_service(
        &self,
        service: &Service,
        defaults: &CheckDefaults,
        clock: &dyn Clock,
    ) -> HealthCheck {
        let url = service.health_url();
        let probe = match &url {
            Some(url) => self.probe(url, service.timeout(defaults)).await,
            None => Probe {
                status: HealthStatus::Unknown,
                response_code: None,
                latency_ms: None,
                error: Some("no health endpoint configured".into()),
            },
        };
        HealthCheck {
            service_id: service.id,
            checked_at: clock.now(),
            status: probe.status,
            url,
            response_code: probe.response_code,
            latency_ms: probe.latency_ms,
            error: probe.error,
        }
    }
}

/// A short, human reason for a failed request.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", human(timeout));
    }
    let mut chain = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset by peer".into(),
                std::io::ErrorKind::TimedOut => {
                    return format!("timed out after {}", human(timeout))
                }
                _ => {}
            }
        }
        chain.push(s.to_string());
        source = s.source();
    }
    let innermost = chain.last().cloned().unwrap_or_else(|| e.to_string());
    let all = chain.join(": ").to_ascii_lowercase();
    if all.contains("certificate") || all.contains("tls") || all.contains("handshake") {
        format!("TLS error: {innermost}")
    } else if all.contains("dns error") || all.contains("failed to lookup") {
        format!("cannot resolve host: {innermost}")
    } else if e.is_redirect() {
        "too many redirects".into()
    } else {
        innermost
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
