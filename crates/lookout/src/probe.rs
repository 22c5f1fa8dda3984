//! `lookout probe URL`: one check, run here and now, as the hub would run
//! it for a service with that URL and those settings. For trying a monitor
//! before saving it, and usable as a check script itself: the exit code is
//! Nagios's (0 OK, 1 WARNING, 2 FAILURE, 3 UNKNOWN).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use lookout_hub::health::Checker;
use lookout_hub::metrics::Metrics;
use lookout_proto::service::{parse_new_service, HealthStatus};
use serde_json::{json, Map, Value};

#[derive(Args)]
pub struct ProbeArgs {
    /// what to check: http(s)://host/path, tcp://host:port, tls://host:port, icmp://host or dns://resolver[:port]
    #[arg(value_name = "URL")]
    url: String,
    /// a condition that must hold, e.g. '[STATUS] == 200' or '[BODY].status == UP' (repeatable)
    #[arg(long, short = 'c', value_name = "EXPR")]
    condition: Vec<String>,
    /// a condition whose failure is a WARNING, e.g. '[CERTIFICATE_EXPIRATION] > 336h' (repeatable)
    #[arg(long, value_name = "EXPR")]
    warn: Vec<String>,
    /// give up after this long (e.g. 500ms, 5s)
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    timeout: String,
    /// HTTP method (default GET)
    #[arg(long, short = 'X', value_name = "METHOD")]
    method: Option<String>,
    /// an HTTP request header (repeatable)
    #[arg(long, short = 'H', value_name = "NAME: VALUE")]
    header: Vec<String>,
    /// HTTP request body
    #[arg(long, value_name = "TEXT")]
    body: Option<String>,
    /// do not follow HTTP redirects
    #[arg(long)]
    no_follow: bool,
    /// HTTP status codes that pass, e.g. 200-299,301 (default 200-399)
    #[arg(long, value_name = "CODES")]
    accept: Option<String>,
    /// a CA certificate (PEM) to trust beside the system's
    #[arg(long, value_name = "FILE")]
    ca: Option<String>,
    /// accept a certificate that fails verification
    #[arg(long, short = 'k')]
    insecure: bool,
    /// the name a dns:// check asks for
    #[arg(long, value_name = "NAME")]
    dns_name: Option<String>,
    /// the record type a dns:// check asks for (default A)
    #[arg(long, value_name = "TYPE")]
    dns_type: Option<String>,
}

/// The service a hub would make of these arguments, as its API would
/// validate it.
fn service_body(m: &ProbeArgs) -> anyhow::Result<(Map<String, Value>, Duration)> {
    let timeout_text = &m.timeout;
    let timeout = lookout_proto::condition::parse_duration(timeout_text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow!("--timeout: {timeout_text:?} is not a duration such as 500ms or 5s")
        })?;
    let mut body = Map::new();
    body.insert("name".into(), json!("probe"));
    body.insert("base_url".into(), json!(m.url));
    let mut conditions: Vec<Value> = Vec::new();
    for c in &m.condition {
        conditions.push(json!(c));
    }
    for c in &m.warn {
        conditions.push(json!({"expr": c, "on_fail": "WARNING"}));
    }
    if !conditions.is_empty() {
        body.insert("conditions".into(), Value::Array(conditions));
    }
    let mut http = Map::new();
    if let Some(method) = &m.method {
        http.insert("method".into(), json!(method));
    }
    let mut headers = Map::new();
    for h in &m.header {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| anyhow!("--header: {h:?} is not NAME: VALUE"))?;
        headers.insert(name.trim().to_owned(), json!(value.trim()));
    }
    if !headers.is_empty() {
        http.insert("headers".into(), Value::Object(headers));
    }
    if let Some(b) = &m.body {
        http.insert("body".into(), json!(b));
    }
    if m.no_follow {
        http.insert("follow_redirects".into(), json!(false));
    }
    if let Some(codes) = &m.accept {
        let codes: Vec<&str> = codes.split(',').map(str::trim).collect();
        http.insert("accepted_codes".into(), json!(codes));
    }
    if !http.is_empty() {
        body.insert("http".into(), Value::Object(http));
    }
    let mut tls = Map::new();
    if let Some(file) = &m.ca {
        let pem = std::fs::read_to_string(file).with_context(|| format!("--ca {file}"))?;
        tls.insert("ca_pem".into(), json!(pem));
    }
    if m.insecure {
        tls.insert("skip_verify".into(), json!(true));
    }
    if !tls.is_empty() {
        body.insert("tls".into(), Value::Object(tls));
    }
    if let Some(name) = &m.dns_name {
        let mut dns = Map::new();
        dns.insert("name".into(), json!(name));
        if let Some(t) = &m.dns_type {
            dns.insert("type".into(), json!(t));
        }
        body.insert("dns".into(), Value::Object(dns));
    }
    Ok((body, timeout))
}

/// The option a field of the service body came from, for messages.
fn option_of(field: &str) -> &'static str {
    match field.split(['[', '.']).next().unwrap_or(field) {
        "base_url" => "URL",
        "conditions" => "--condition/--warn",
        "http" => "--method/--header/--body/--accept",
        "tls" => "--ca",
        "dns" => "--dns-name/--dns-type",
        _ => "argument",
    }
}

pub fn run(m: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let (body, timeout) = service_body(m)?;
    let new = parse_new_service(&body).map_err(|errors| {
        let e = &errors[0];
        anyhow!("{}: {}: {}", option_of(&e.field), e.field, e.message)
    })?;
    let Some(base) = new.base_url else {
        return Err(anyhow!("URL: a URL is required"));
    };
    let target = base.target();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checker = Checker::new(Arc::new(Metrics::new()))?;
    let result = runtime.block_on(checker.run(
        0,
        &target,
        &new.probe,
        &new.conditions,
        timeout,
        &lookout_hub::clock::SystemClock,
    ));
    let (word, code) = match (result.status, &result.warning) {
        (HealthStatus::Healthy, None) => ("OK", 0),
        (HealthStatus::Healthy, Some(_)) => ("WARNING", 1),
        (HealthStatus::Unhealthy, _) => ("FAILURE", 2),
        (HealthStatus::Unknown, _) => ("UNKNOWN", 3),
    };
    let mut line = format!("{word} {}", base.to_display());
    if let Some(ms) = result.latency_ms {
        line.push_str(&format!(" {ms} ms"));
    }
    if let Some(code) = result.response_code {
        line.push_str(&format!(" HTTP {code}"));
    }
    if let Some(not_after) = result.certificate.as_ref().and_then(|c| c.not_after) {
        line.push_str(&format!(
            " certificate until {}",
            not_after.format("%Y-%m-%d")
        ));
    }
    if let Some(why) = result.error.as_ref().or(result.warning.as_ref()) {
        line.push_str(": ");
        line.push_str(why);
    }
    println!("{line}");
    Ok(ExitCode::from(code))
}
