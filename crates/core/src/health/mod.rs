//! Health checking: the probes ([`Checker`], one per kind of target: HTTP,
//! TCP, TLS, ICMP, DNS), the conditions on their results, and the
//! background [`scheduler`] that runs them for every checked service.

pub mod probe;
pub mod scheduler;

use crate::sync::lock;
use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lookout_proto::condition::{Condition, Observation, PlaceholderKind};
use lookout_proto::monitor::{HttpSettings, ProbeSettings, Target};
use lookout_proto::service::HealthStatus;
use lookout_proto::status::Status;

use crate::clock::Clock;
use crate::config::CheckDefaults;
use crate::store::{HealthCheck, Service};

pub use probe::{Certificate, Seen};

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub status: HealthStatus,
    pub response_code: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    /// Passed, but a condition marked WARNING failed: why.
    pub warning: Option<String>,
    pub certificate: Option<Certificate>,
}

/// A certificate closer than this to its expiry makes a check WARNING,
/// unless the service's conditions look at `[CERTIFICATE_EXPIRATION]`.
pub const CERTIFICATE_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Most of a response body read for conditions on `[BODY]`.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Runs checks. Cheap to clone; clones share the HTTP clients.
#[derive(Debug, Clone)]
pub struct Checker {
    client: reqwest::Client,
    /// Clients for services with their own TLS trust or redirect rule, by
    /// those settings.
    special: Arc<Mutex<HashMap<String, reqwest::Client>>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// When each service was last checked on request (`GET
    /// /api/services/{id}/health`), so a burst of reads sends one probe.
    on_request: Arc<Mutex<HashMap<i64, Instant>>>,
    /// Since when each held condition (`... for 5m`) of a service has
    /// been failing, by service and condition.
    failing_since: Arc<Mutex<FailingSince>>,
    /// What services use now, for conditions on `[MEMORY]`, `[CPU_PERCENT]`...
    usage: Option<Arc<crate::usage::Usage>>,
}

/// When each held condition began failing, by service id and the
/// condition's place in its list.
type FailingSince = HashMap<(i64, usize), DateTime<Utc>>;

/// A service is probed on request at most this often; a request within it
/// gets the newest stored result.
pub const ON_REQUEST_EVERY: Duration = Duration::from_secs(5);

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!(
            "lookout/",
            env!("CARGO_PKG_VERSION"),
            " (health check)"
        ))
        // A fresh connection per check measures what a new visitor would see,
        // and a dead server cannot hide behind a pooled connection.
        .pool_max_idle_per_host(0)
        .tls_info(true)
}

impl Checker {
    /// A checker counting its probes in `metrics`.
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> anyhow::Result<Self> {
        let client = client_builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        Ok(Self {
            client,
            special: Arc::default(),
            metrics,
            on_request: Arc::default(),
            failing_since: Arc::default(),
            usage: None,
        })
    }

    /// Conditions read what services use from `usage`.
    #[must_use]
    pub fn with_usage(mut self, usage: Arc<crate::usage::Usage>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// What service `id` uses now, as conditions read it.
    fn usage_of(&self, id: i64) -> Option<lookout_proto::condition::UsageSeen> {
        let usage = self.usage.as_ref()?;
        let now = usage.service(id)?;
        let total = usage.own_memory_total();
        Some(lookout_proto::condition::UsageSeen {
            cpu_percent: now.cpu_percent,
            memory_bytes: now.memory_bytes,
            memory_percent: now
                .memory_bytes
                .filter(|_| total > 0)
                .map(|m| lookout_proto::usage::percent(m, total)),
            tasks: now.tasks,
            ..lookout_proto::condition::UsageSeen::default()
        })
    }

    /// What a `host://` check sees: the host's last figures, while they
    /// are fresh.
    fn host_seen(&self, name: &str, now: DateTime<Utc>) -> Seen {
        let Some(usage) = &self.usage else {
            return Seen {
                cannot: Some("this hub does not sample resource usage".into()),
                ..Seen::default()
            };
        };
        let own = name == lookout_proto::monitor::OWN_HOST || name == usage.host_name();
        if own && !usage.enabled() {
            return Seen {
                cannot: Some("resource usage is not sampled (--usage-every off)".into()),
                ..Seen::default()
            };
        }
        let key = if own { usage.host_name() } else { name };
        match usage.host_seen(key, now) {
            // Just started: the first figures take an interval or two.
            None if usage.starting() => Seen {
                cannot: Some(format!("waiting for the first figures from host {name}")),
                ..Seen::default()
            },
            None => Seen {
                error: Some(format!(
                    "no resource usage from host {name}: the Hosts page lists those that send it"
                )),
                ..Seen::default()
            },
            Some((age, _)) if age > usage.stale_after() => Seen {
                error: Some(format!(
                    "no resource usage from host {name} for {}",
                    crate::history::span_words(i64::try_from(age.as_secs()).unwrap_or(i64::MAX))
                )),
                ..Seen::default()
            },
            Some((_, seen)) => Seen {
                connected: true,
                usage: Some(seen),
                ..Seen::default()
            },
        }
    }

    /// What a check of a unit's usage sees: its last sample, while it runs.
    fn unit_seen(&self, key: i64) -> Seen {
        match self.usage_of(key) {
            Some(seen) => Seen {
                connected: true,
                usage: Some(seen),
                ..Seen::default()
            },
            None => Seen {
                cannot: Some(if self.usage.as_ref().is_some_and(|u| u.enabled()) {
                    "not running: no usage to judge".into()
                } else {
                    "resource usage is not sampled (--usage-every off)".into()
                }),
                ..Seen::default()
            },
        }
    }

    /// Whether a check of `id` asked for by a request may go out now (and
    /// then notes it); `false` within [`ON_REQUEST_EVERY`] of the last one.
    pub fn may_check_on_request(&self, id: i64) -> bool {
        let now = Instant::now();
        let mut last = lock(&self.on_request);
        last.retain(|_, at| now.duration_since(*at) < ON_REQUEST_EVERY);
        if last.contains_key(&id) {
            return false;
        }
        last.insert(id, now);
        true
    }

    /// The client for an HTTP check with these settings.
    fn client_for(&self, probe: &ProbeSettings) -> Result<reqwest::Client, probe::ProbeError> {
        let follow = probe
            .http
            .as_ref()
            .and_then(|h| h.follow_redirects)
            .unwrap_or(true);
        let tls = probe
            .tls
            .as_ref()
            .filter(|t| t.ca_pem.is_some() || t.skip_verify);
        // A credential in a header of the check's own (reqwest drops only
        // Authorization and Cookie) is not carried to another origin: the
        // redirect's answer is then the result.
        let guarded = follow
            && probe.http.as_ref().is_some_and(|h| {
                h.headers
                    .keys()
                    .any(|name| lookout_proto::service::is_secret_header(name))
            });
        if follow && !guarded && tls.is_none() {
            return Ok(self.client.clone());
        }
        let key = format!("{follow}|{guarded}|{tls:?}");
        if let Some(c) = lock(&self.special).get(&key) {
            return Ok(c.clone());
        }
        let mut builder = client_builder().redirect(if guarded {
            reqwest::redirect::Policy::custom(|attempt| {
                let first = attempt.previous().first();
                let same = first.is_some_and(|f| f.origin() == attempt.url().origin());
                if !same {
                    attempt.stop()
                } else if attempt.previous().len() > 5 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            })
        } else if follow {
            reqwest::redirect::Policy::limited(5)
        } else {
            reqwest::redirect::Policy::none()
        });
        if let Some(tls) = tls {
            if tls.skip_verify {
                builder = builder.danger_accept_invalid_certs(true);
            }
            if let Some(pem) = &tls.ca_pem {
                for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                    .map_err(probe::ProbeError::CaBundle)?
                {
                    builder = builder.add_root_certificate(cert);
                }
            }
        }
        let client = builder.build().map_err(probe::ProbeError::Client)?;
        let mut special = lock(&self.special);
        if special.len() > 256 {
            special.clear();
        }
        special.insert(key, client.clone());
        Ok(client)
    }

    /// Requests `url` once, as an HTTP check with `settings` does.
    async fn http(
        &self,
        url: &url::Url,
        probe: &ProbeSettings,
        read_body: bool,
        timeout: Duration,
    ) -> Seen {
        let started = Instant::now();
        let client = match self.client_for(probe) {
            Ok(c) => c,
            Err(e) => {
                return Seen {
                    error: Some(e.to_string()),
                    ..Seen::default()
                }
            }
        };
        let http = probe.http.clone().unwrap_or_default();
        let method = http
            .method
            .as_deref()
            .and_then(|m| reqwest::Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(reqwest::Method::GET);
        let mut request = client.request(method, url.clone()).timeout(timeout);
        for (name, value) in &http.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &http.body {
            request = request.body(body.clone());
        }
        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status().as_u16();
            let ip = response.remote_addr().map(|a| a.ip());
            let certificate = response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|i| i.peer_certificate())
                .map(|der| Certificate {
                    not_after: probe::not_after(der),
                    problem: None,
                });
            let latency = started.elapsed();
            let mut body = None;
            if read_body {
                let mut bytes = Vec::new();
                while let Some(chunk) = response.chunk().await? {
                    let room = BODY_LIMIT.saturating_sub(bytes.len());
                    bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if bytes.len() >= BODY_LIMIT {
                        break;
                    }
                }
                body = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            Ok::<_, reqwest::Error>(Seen {
                connected: true,
                status: Some(status),
                body,
                latency: Some(latency),
                certificate,
                ip,
                ..Seen::default()
            })
        };
        // The outer timeout is a backstop in case a phase escapes reqwest's own.
        match tokio::time::timeout(timeout + Duration::from_millis(100), exchange).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(e)) => {
                let mut seen = Seen {
                    error: Some(describe(&e, timeout)),
                    latency: Some(started.elapsed()),
                    ..Seen::default()
                };
                // A certificate that failed verification: look at it, so the
                // reason and its expiry are recorded.
                if url.scheme() == "https"
                    && seen
                        .error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("TLS error"))
                {
                    if let Some(host) = url.host_str() {
                        let host = host.trim_start_matches('[').trim_end_matches(']');
                        let port = url.port_or_known_default().unwrap_or(443);
                        let left = timeout.saturating_sub(started.elapsed());
                        let tls = probe::tls(host, port, probe.tls.as_ref(), left).await;
                        if let Some(cert) = tls.certificate {
                            if let Some(problem) = &cert.problem {
                                seen.error = Some(format!("TLS error: {problem}"));
                            }
                            seen.certificate = Some(cert);
                        }
                    }
                }
                seen
            }
            Err(_) => Seen {
                error: Some(format!("timed out after {}", human(timeout))),
                latency: Some(started.elapsed()),
                ..Seen::default()
            },
        }
    }

    /// Runs one check of `target` and judges it by `conditions` (and the
    /// kind's defaults) as of `clock`'s now. `key` identifies the service
    /// for held conditions.
    pub async fn run(
        &self,
        key: i64,
        target: &Target,
        probe: &ProbeSettings,
        conditions: &[Condition],
        timeout: Duration,
        clock: &dyn Clock,
    ) -> Probe {
        let reads_body = conditions.iter().any(|c| c.mentions(PlaceholderKind::Body));
        let started = Instant::now();
        let probing = async {
            if let Some(why) = target.refuses(conditions) {
                return Seen {
                    cannot: Some(why.into()),
                    ..Seen::default()
                };
            }
            match target {
                Target::Host { name } => self.host_seen(name, clock.now()),
                Target::Usage => self.unit_seen(key),
                Target::Http(url) => self.http(url, probe, reads_body, timeout).await,
                Target::Tcp { host, port } => probe::tcp(host, *port, timeout).await,
                Target::Tls { host, port } => {
                    probe::tls(host, *port, probe.tls.as_ref(), timeout).await
                }
                Target::Icmp { host } => probe::icmp(host, timeout).await,
                Target::Dns { host, port } => match &probe.dns {
                    Some(query) => probe::dns(host, *port, query, timeout).await,
                    None => Seen {
                        cannot: Some("a dns:// check needs its question (dns.name)".into()),
                        ..Seen::default()
                    },
                },
            }
        };
        // A backstop over the whole check, name lookup included: no check
        // takes much longer than its timeout.
        let seen = match tokio::time::timeout(timeout + Duration::from_millis(100), probing).await {
            Ok(seen) => seen,
            Err(_) => Seen {
                error: Some(format!("timed out after {}", human(timeout))),
                latency: Some(started.elapsed()),
                ..Seen::default()
            },
        };
        let result = self.judge(key, target, probe, conditions, &seen, clock.now());
        self.metrics.probe_check(
            target.kind(),
            result.status == HealthStatus::Healthy,
            !seen.connected,
        );
        result
    }

    /// The result of a check that saw `seen`.
    fn judge(
        &self,
        key: i64,
        target: &Target,
        probe: &ProbeSettings,
        conditions: &[Condition],
        seen: &Seen,
        now: DateTime<Utc>,
    ) -> Probe {
        let latency_ms = seen
            .latency
            .map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX));
        let mut result = Probe {
            status: HealthStatus::Healthy,
            response_code: seen.status,
            latency_ms,
            error: None,
            warning: None,
            certificate: seen.certificate.clone(),
        };
        if let Some(why) = &seen.cannot {
            result.status = HealthStatus::Unknown;
            result.error = Some(why.clone());
            return result;
        }
        let mentions = |p| conditions.iter().any(|c| c.mentions(p));
        let mut fail = |why: String| {
            if result.status == HealthStatus::Healthy {
                result.status = HealthStatus::Unhealthy;
                result.error = Some(why);
            }
        };
        // The kind's own rules, unless a condition says otherwise.
        if !seen.connected && !mentions(PlaceholderKind::Connected) {
            fail(seen.error.clone().unwrap_or_else(|| "no answer".into()));
        }
        if let (Target::Http(_), Some(code)) = (target, seen.status) {
            let http = probe.http.clone().unwrap_or_default();
            if !mentions(PlaceholderKind::Status) && !http.accepts(code) {
                fail(http_reason(code, &http));
            }
        }
        if target.kind() == "dns" && seen.connected && !mentions(PlaceholderKind::DnsRcode) {
            if let Some(rcode) = seen.dns_rcode.as_deref().filter(|r| *r != "NOERROR") {
                fail(format!("the DNS server answered {rcode}"));
            }
        }
        let skip_verify = probe.tls.as_ref().is_some_and(|t| t.skip_verify);
        if let Some(problem) = seen.certificate.as_ref().and_then(|c| c.problem.as_ref()) {
            if !skip_verify {
                fail(format!("TLS error: {problem}"));
            }
        }
        let expires_in_ms = seen
            .certificate
            .as_ref()
            .and_then(|c| c.not_after)
            .map(|t| (t - now).num_milliseconds());
        let ip_text = seen.ip.map(|ip| ip.to_string());
        let observation = Observation {
            status: seen.status,
            response_time_ms: latency_ms,
            body: seen.body.as_deref(),
            connected: seen.connected,
            certificate_expires_in_ms: expires_in_ms,
            dns_rcode: seen.dns_rcode.as_deref(),
            ip: ip_text.as_deref(),
            usage: seen.usage.or_else(|| self.usage_of(key)),
        };
        // A fill estimate needs some minutes of samples: until it has
        // them, conditions on it wait rather than fail.
        let no_estimate = observation
            .usage
            .is_some_and(|u| u.disk_full_in_ms.is_none());
        let mut warnings = Vec::new();
        if let Some(ms) = expires_in_ms {
            let limit = i64::try_from(CERTIFICATE_WARNING.as_millis()).unwrap_or(i64::MAX);
            if ms > 0 && ms < limit && !mentions(PlaceholderKind::CertificateExpiration) {
                warnings.push(format!(
                    "the certificate expires in {} days",
                    ms / 86_400_000
                ));
            }
        }
        let mut held = lock(&self.failing_since);
        for (i, condition) in conditions.iter().enumerate() {
            if no_estimate && condition.mentions(PlaceholderKind::DiskFullIn) {
                continue;
            }
            match condition.evaluate(&observation) {
                Ok(()) => {
                    held.remove(&(key, i));
                }
                Err(why) => {
                    if let Some(hold) = condition.hold() {
                        let since = *held.entry((key, i)).or_insert(now);
                        if (now - since).to_std().unwrap_or_default() < hold {
                            continue;
                        }
                    }
                    if condition.on_fail() == Status::Warning {
                        warnings.push(why.into());
                    } else {
                        fail(why.into());
                    }
                }
            }
        }
        drop(held);
        if result.status == HealthStatus::Healthy && !warnings.is_empty() {
            result.warning = Some(warnings.join("; "));
        }
        result
    }

    /// Checks a service now and returns the result to store. A service the
    /// hub does not check is `unknown`, without any request.
    pub async fn check_service(
        &self,
        service: &Service,
        defaults: &CheckDefaults,
        clock: &dyn Clock,
    ) -> HealthCheck {
        let url = service.check_url();
        let probe = match service.check_target() {
            Some(target) => {
                self.run(
                    service.id,
                    &target,
                    &service.probe,
                    &service.conditions,
                    service.timeout(defaults),
                    clock,
                )
                .await
            }
            None => Probe {
                status: HealthStatus::Unknown,
                response_code: None,
                latency_ms: None,
                error: Some("no health endpoint configured".into()),
                warning: None,
                certificate: None,
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
            warning: probe.warning,
            cert_expires_at: probe.certificate.and_then(|c| c.not_after),
        }
    }
}

/// Why a status code failed: "HTTP 503 Service Unavailable", and which
/// codes pass when they were set.
fn http_reason(code: u16, http: &HttpSettings) -> String {
    let text = reqwest::StatusCode::from_u16(code)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| code.to_string());
    if http.accepted_codes.is_empty() {
        format!("HTTP {text}")
    } else {
        format!("HTTP {text} (accepted: {})", http.accepted_codes.join(", "))
    }
}

/// A short, human reason for a failed request: a sentence about the URL
/// where one can be said ("nothing listens on ...", "this port speaks
/// plain HTTP ..."), else the innermost error.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", human(timeout));
    }
    let address = e.url().and_then(|u| {
        let host = u.host_str()?;
        Some(format!("{host}:{}", u.port_or_known_default()?))
    });
    let mut chain = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return probe::refused(address.as_deref());
                }
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
    let https = e.url().is_some_and(|u| u.scheme() == "https");
    if https && (all.contains("invalidcontenttype") || all.contains("corrupt message")) {
        // A TLS client's first read met plain text: the port speaks HTTP.
        let url = e
            .url()
            .map(|u| u.as_str().replacen("https://", "http://", 1));
        format!(
            "this port speaks plain HTTP, not HTTPS{}",
            url.map(|u| format!(": use {u}")).unwrap_or_default()
        )
    } else if !https && all.contains("invalid http version") {
        // A plain request met bytes that are not HTTP: most often TLS.
        let url = e
            .url()
            .map(|u| u.as_str().replacen("http://", "https://", 1));
        format!(
            "the answer was not HTTP: if this port speaks HTTPS, use {}",
            url.unwrap_or_else(|| "https://".into())
        )
    } else if all.contains("certificate") || all.contains("tls") || all.contains("handshake") {
        format!("TLS error: {innermost}")
    } else if all.contains("dns error") || all.contains("failed to lookup") {
        format!("cannot resolve host: {innermost}")
    } else if e.is_redirect() {
        "too many redirects".into()
    } else {
        innermost
    }
}

pub(crate) fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> Seen {
        Seen {
            connected: true,
            status: Some(status),
            latency: Some(Duration::from_millis(3)),
            ..Seen::default()
        }
    }

    #[test]
    fn a_held_condition_counts_only_after_failing_that_long() {
        let checker = Checker::new(Arc::default()).unwrap();
        let target = Target::Http("http://127.0.0.1:1/".parse().unwrap());
        let held = vec![Condition::parse("[STATUS] == 200 for 300ms", Status::Failure).unwrap()];
        let probe = ProbeSettings::default();
        let start = crate::clock::Clock::now(&crate::clock::SystemClock);
        let at = |ms: i64| start + chrono::Duration::milliseconds(ms);
        let judge =
            |status, ms| checker.judge(7, &target, &probe, &held, &answered(status), at(ms));
        assert_eq!(judge(200, 0).status, HealthStatus::Healthy);
        // Failing, but not for 300 ms yet: it does not count.
        assert_eq!(judge(503, 100).status, HealthStatus::Healthy);
        assert_eq!(judge(503, 350).status, HealthStatus::Healthy);
        let failed = judge(503, 400);
        assert_eq!(failed.status, HealthStatus::Unhealthy);
        assert_eq!(
            failed.error.as_deref(),
            Some("[STATUS] == 200 for 300ms: was 503")
        );
        // Passing once starts the wait again.
        assert_eq!(judge(200, 500).status, HealthStatus::Healthy);
        assert_eq!(judge(503, 600).status, HealthStatus::Healthy);
        // Another service's hold is its own.
        let other = checker.judge(8, &target, &probe, &held, &answered(503), at(2000));
        assert_eq!(other.status, HealthStatus::Healthy);
    }

    #[test]
    fn the_kinds_defaults_give_way_to_conditions_that_name_them() {
        let checker = Checker::new(Arc::default()).unwrap();
        let target = Target::Http("http://127.0.0.1:1/".parse().unwrap());
        let probe = ProbeSettings::default();
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        // 404 fails by default; a condition on [STATUS] decides instead.
        assert_eq!(
            checker
                .judge(1, &target, &probe, &[], &answered(404), now)
                .error
                .as_deref(),
            Some("HTTP 404 Not Found")
        );
        let expects_404 = vec![Condition::parse("[STATUS] == 404", Status::Failure).unwrap()];
        assert_eq!(
            checker
                .judge(1, &target, &probe, &expects_404, &answered(404), now)
                .status,
            HealthStatus::Healthy
        );
        // No connection fails by default; [CONNECTED] == false passes it.
        let refused = Seen {
            error: Some("connection refused".into()),
            ..Seen::default()
        };
        assert_eq!(
            checker
                .judge(1, &target, &probe, &[], &refused, now)
                .error
                .as_deref(),
            Some("connection refused")
        );
        let closed = vec![Condition::parse("[CONNECTED] == false", Status::Failure).unwrap()];
        assert_eq!(
            checker
                .judge(1, &target, &probe, &closed, &refused, now)
                .status,
            HealthStatus::Healthy
        );
    }
}
