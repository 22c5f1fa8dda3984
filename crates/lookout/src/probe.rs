//! `lookout probe URL`: one check, run here and now, as the hub would run
//! it for a service with that URL and those settings. For trying a monitor
//! before saving it, and usable as a check script itself: the exit code is
//! Nagios's (0 OK, 1 WARNING, 2 FAILURE, 3 UNKNOWN).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::{Arg, ArgAction, ArgMatches, Command};
use lookout_hub::health::Checker;
use lookout_hub::metrics::Metrics;
use lookout_proto::service::{parse_new_service, HealthStatus};
use serde_json::{json, Map, Value};

pub fn command() -> Command {
    Command::new("probe")
        .about("Check a URL once, as the hub would (http, https, tcp, tls, icmp, dns), and print the result")
        .arg(
            Arg::new("url")
                .required(true)
                .value_name("URL")
                .help("what to check: http(s)://host/path, tcp://host:port, tls://host:port, icmp://host or dns://resolver[:port]"),
        )
        .arg(
            Arg::new("condition")
                .long("condition")
                .short('c')
                .value_name("EXPR")
                .action(ArgAction::Append)
                .help("a condition that must hold, e.g. '[STATUS] == 200' or '[BODY].status == UP' (repeatable)"),
        )
        .arg(
            Arg::new("warn")
                .long("warn")
                .value_name("EXPR")
                .action(ArgAction::Append)
                .help("a condition whose failure is a WARNING, e.g. '[CERTIFICATE_EXPIRATION] > 336h' (repeatable)"),
        )
        .arg(
            Arg::new("timeout")
                .long("timeout")
                .value_name("DURATION")
                .default_value("5s")
                .help("give up after this long (e.g. 500ms, 5s)"),
        )
        .arg(Arg::new("method").long("method").short('X').value_name("METHOD").help("HTTP method (default GET)"))
        .arg(
            Arg::new("header")
                .long("header")
                .short('H')
                .value_name("NAME: VALUE")
                .action(ArgAction::Append)
                .help("an HTTP request header (repeatable)"),
        )
        .arg(Arg::new("body").long("body").value_name("TEXT").help("HTTP request body"))
        .arg(
            Arg::new("no_follow")
                .long("no-follow")
                .action(ArgAction::SetTrue)
                .help("do not follow HTTP redirects"),
        )
        .arg(
            Arg::new("accept")
                .long("accept")
                .value_name("CODES")
                .help("HTTP status codes that pass, e.g. 200-299,301 (default 200-399)"),
        )
        .arg(
            Arg::new("ca")
                .long("ca")
                .value_name("FILE")
                .help("a CA certificate (PEM) to trust beside the system's"),
        )
        .arg(
            Arg::new("insecure")
                .long("insecure")
                .short('k')
                .action(ArgAction::SetTrue)
                .help("accept a certificate that fails verification"),
        )
        .arg(Arg::new("dns_name").long("dns-name").value_name("NAME").help("the name a dns:// check asks for"))
        .arg(
            Arg::new("dns_type")
                .long("dns-type")
                .value_name("TYPE")
                .help("the record type a dns:// check asks for (default A)"),
        )
}

/// The service a hub would make of these arguments, as its API would
/// validate it.
fn service_body(m: &ArgMatches) -> anyhow::Result<(Map<String, Value>, Duration)> {
    let timeout_text = crate::args::required::<String>(m, "timeout")?;
    let timeout = lookout_proto::condition::parse_duration(timeout_text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow!("--timeout: {timeout_text:?} is not a duration such as 500ms or 5s")
        })?;
    let mut body = Map::new();
    body.insert("name".into(), json!("probe"));
    body.insert("base_url".into(), json!(m.get_one::<String>("url")));
    let mut conditions: Vec<Value> = Vec::new();
    for c in m.get_many::<String>("condition").into_iter().flatten() {
        conditions.push(json!(c));
    }
    for c in m.get_many::<String>("warn").into_iter().flatten() {
        conditions.push(json!({"expr": c, "on_fail": "WARNING"}));
    }
    if !conditions.is_empty() {
        body.insert("conditions".into(), Value::Array(conditions));
    }
    let mut http = Map::new();
    if let Some(method) = m.get_one::<String>("method") {
        http.insert("method".into(), json!(method));
    }
    let mut headers = Map::new();
    for h in m.get_many::<String>("header").into_iter().flatten() {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| anyhow!("--header: {h:?} is not NAME: VALUE"))?;
        headers.insert(name.trim().to_owned(), json!(value.trim()));
    }
    if !headers.is_empty() {
        http.insert("headers".into(), Value::Object(headers));
    }
    if let Some(b) = m.get_one::<String>("body") {
        http.insert("body".into(), json!(b));
    }
    if m.get_flag("no_follow") {
        http.insert("follow_redirects".into(), json!(false));
    }
    if let Some(codes) = m.get_one::<String>("accept") {
        let codes: Vec<&str> = codes.split(',').map(str::trim).collect();
        http.insert("accepted_codes".into(), json!(codes));
    }
    if !http.is_empty() {
        body.insert("http".into(), Value::Object(http));
    }
    let mut tls = Map::new();
    if let Some(file) = m.get_one::<String>("ca") {
        let pem = std::fs::read_to_string(file).with_context(|| format!("--ca {file}"))?;
        tls.insert("ca_pem".into(), json!(pem));
    }
    if m.get_flag("insecure") {
        tls.insert("skip_verify".into(), json!(true));
    }
    if !tls.is_empty() {
        body.insert("tls".into(), Value::Object(tls));
    }
    if let Some(name) = m.get_one::<String>("dns_name") {
        let mut dns = Map::new();
        dns.insert("name".into(), json!(name));
        if let Some(t) = m.get_one::<String>("dns_type") {
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

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
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
