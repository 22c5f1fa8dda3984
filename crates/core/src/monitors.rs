//! Monitors as code: a file of services (`--monitors FILE`) that the hub
//! loads at start, follows on change and reconciles with the registry:
//! services it declares are created, updated and removed with it; services
//! made through the API or the dashboard are never touched.
//!
//! Two formats:
//! - TOML: `[[service]]` tables with the API's fields (what
//!   `lookout monitors export` writes, so an export loads back).
//! - Gatus's YAML, read as it is (a file ending in `.yaml` or `.yml`): its
//!   `endpoints:` become services (`url`, `method`, `headers`, `body`,
//!   `interval`, `conditions`, `dns`, `client.timeout`, `client.insecure`);
//!   what lookout does not check (Gatus's `ssh://`, `udp://`, `starttls://`
//!   ..., or a placeholder it lacks such as `[DOMAIN_EXPIRATION]`) is
//!   skipped and named, and the rest of Gatus's settings (alerting,
//!   storage, ui) are ignored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lookout_proto::monitor::SCHEMES;
use lookout_proto::service::{parse_new_service, NewService, ServicePatch};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::registry::{ListFilter, Registry};
use crate::store::{Service, StoreError};

/// What a monitors file declares.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    pub services: Vec<NewService>,
    /// Entries not loaded, each with why (Gatus kinds lookout does not check).
    pub skipped: Vec<String>,
    /// The names of the entries skipped: services of theirs loaded earlier
    /// are kept as they are, not removed.
    pub kept: Vec<String>,
}

/// Why a monitors file cannot be loaded: one line naming the file and what
/// is wrong.
#[derive(Debug, thiserror::Error)]
pub enum MonitorsFileError {
    #[error("monitors file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("monitors file {}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        problem: Box<FileProblem>,
    },
}

/// What is wrong with a monitors file's text.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("line {line}: {message}")]
    TomlAt { line: usize, message: String },
    #[error("{0}")]
    Toml(#[source] toml::de::Error),
    #[error("{0}")]
    Yaml(#[source] serde_saphyr::Error),
    #[error("{0:?} is not a section of a monitors file: write [[service]] tables")]
    Section(String),
    #[error("service must be a list of tables: write [[service]]")]
    NotAList,
    #[error("{0}: not a table")]
    NotATable(String),
    #[error("{label}: {field}: {message}")]
    Entry {
        label: String,
        field: String,
        message: String,
    },
    #[error("{label}: the name {name:?} is taken by entry {first}")]
    NameTaken {
        label: String,
        name: String,
        first: usize,
    },
    #[error("{label}: {key} {value:?} is not a duration")]
    Duration {
        label: String,
        key: &'static str,
        value: String,
    },
}

/// Reads and parses a monitors file.
pub fn read(path: &Path) -> Result<Declared, MonitorsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| MonitorsFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, is_gatus(path)).map_err(|problem| MonitorsFileError::Invalid {
        path: path.to_owned(),
        problem: Box::new(problem),
    })
}

/// Whether the file is Gatus's YAML (by its name).
pub fn is_gatus(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Parses a monitors file's text.
pub fn parse(text: &str, gatus: bool) -> Result<Declared, FileProblem> {
    let (entries, skipped) = if gatus {
        from_gatus(text)?
    } else {
        (from_toml(text)?, Vec::new())
    };
    let mut skipped = skipped;
    let mut kept = Vec::new();
    let mut services = Vec::new();
    let mut names = HashMap::new();
    for (i, (label, body)) in entries.iter().enumerate() {
        let parsed = parse_new_service(body).map_err(|mut errors| {
            let e = errors.swap_remove(0);
            FileProblem::Entry {
                label: label.clone(),
                field: e.field,
                message: e.message,
            }
        });
        let mut new = match parsed {
            Ok(new) => new,
            // Gatus's files are read as they are: an endpoint lookout cannot
            // take (a placeholder it lacks, such as [DOMAIN_EXPIRATION]) is
            // skipped and named; in lookout's own format it is an error.
            Err(why) if gatus => {
                skipped.push(why.to_string());
                if let Some(name) = body.get("name").and_then(Value::as_str) {
                    kept.push(name.to_owned());
                }
                continue;
            }
            Err(why) => return Err(why),
        };
        if let Some(first) = names.insert(new.name.as_str().to_owned(), i) {
            return Err(FileProblem::NameTaken {
                label: label.clone(),
                name: new.name.as_str().to_owned(),
                first: first + 1,
            });
        }
        new.from_file = true;
        services.push(new);
    }
    Ok(Declared {
        services,
        skipped,
        kept,
    })
}

/// Service objects as the API takes them, each with where it is in the file.
type Entries = Vec<(String, Map<String, Value>)>;

/// `[[service]]` tables, each a service object as the API takes it.
fn from_toml(text: &str) -> Result<Entries, FileProblem> {
    let table: toml::Table = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => FileProblem::TomlAt {
            line: text[..span.start.min(text.len())].lines().count().max(1),
            message: e.message().to_owned(),
        },
        None => FileProblem::Toml(e),
    })?;
    if let Some(other) = table.keys().find(|k| *k != "service") {
        return Err(FileProblem::Section(other.clone()));
    }
    let Some(list) = table.get("service") else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or(FileProblem::NotAList)?;
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let label = match entry.get("name").and_then(toml::Value::as_str) {
                Some(name) => format!("service {} ({name:?})", i + 1),
                None => format!("service {}", i + 1),
            };
            match serde_json::to_value(entry) {
                Ok(Value::Object(map)) => Ok((label, map)),
                _ => Err(FileProblem::NotATable(label)),
            }
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct GatusFile {
    #[serde(default)]
    endpoints: Vec<GatusEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct GatusEndpoint {
    name: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    conditions: Vec<String>,
    #[serde(default)]
    dns: Option<GatusDns>,
    #[serde(default)]
    client: Option<GatusClient>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct GatusDns {
    query_name: String,
    #[serde(default)]
    query_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct GatusClient {
    #[serde(default)]
    insecure: Option<bool>,
    #[serde(default)]
    timeout: Option<String>,
}

/// Gatus's `endpoints:` as service objects, and what was skipped.
fn from_gatus(text: &str) -> Result<(Entries, Vec<String>), FileProblem> {
    let file: GatusFile = serde_saphyr::from_str(text).map_err(FileProblem::Yaml)?;
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for endpoint in file.endpoints {
        let label = format!("endpoint {:?}", endpoint.name);
        if endpoint.enabled == Some(false) {
            skipped.push(format!("{label}: disabled"));
            continue;
        }
        let mut url = endpoint.url.trim().to_owned();
        if endpoint.dns.is_some() && !url.contains("://") {
            url = format!("dns://{url}");
        }
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        if !SCHEMES.contains(&scheme) {
            skipped.push(format!("{label}: lookout does not check {scheme}:// URLs"));
            continue;
        }
        // Gatus tells endpoints apart by group and name.
        let mut name = endpoint.name.clone();
        let count = seen.entry(name.clone()).or_default();
        *count += 1;
        if *count > 1 {
            name = match &endpoint.group {
                Some(group) => format!("{name} ({group})"),
                None => format!("{name} ({count})"),
            };
        }
        let mut body = Map::new();
        body.insert("name".into(), json!(name));
        body.insert("base_url".into(), json!(url));
        if let Some(group) = &endpoint.group {
            // Gatus's groups are lookout's tags.
            body.insert("tags".into(), json!([group]));
        }
        if let Some(interval) = &endpoint.interval {
            let d = lookout_proto::condition::parse_duration(interval).ok_or_else(|| {
                FileProblem::Duration {
                    label: label.clone(),
                    key: "interval",
                    value: interval.clone(),
                }
            })?;
            body.insert("check_interval_secs".into(), json!(d.as_secs().max(1)));
        }
        if !endpoint.conditions.is_empty() {
            body.insert("conditions".into(), json!(endpoint.conditions));
        }
        let mut http = Map::new();
        if let Some(m) = &endpoint.method {
            http.insert("method".into(), json!(m));
        }
        if !endpoint.headers.is_empty() {
            http.insert("headers".into(), json!(endpoint.headers));
        }
        if let Some(b) = &endpoint.body {
            http.insert("body".into(), json!(b));
        }
        if !http.is_empty() && scheme.starts_with("http") {
            body.insert("http".into(), Value::Object(http));
        }
        if let Some(dns) = &endpoint.dns {
            body.insert(
                "dns".into(),
                json!({"name": dns.query_name, "type": dns.query_type.as_deref().unwrap_or("A")}),
            );
        }
        if let Some(client) = &endpoint.client {
            if client.insecure == Some(true) {
                body.insert("tls".into(), json!({"skip_verify": true}));
            }
            if let Some(t) = &client.timeout {
                let d = lookout_proto::condition::parse_duration(t).ok_or_else(|| {
                    FileProblem::Duration {
                        label: label.clone(),
                        key: "client.timeout",
                        value: t.clone(),
                    }
                })?;
                body.insert(
                    "check_timeout_ms".into(),
                    json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                );
            }
        }
        entries.push((label, body));
    }
    Ok((entries, skipped))
}

/// What a reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Declared names taken by services made through the API or the
    /// dashboard: those are left alone.
    pub conflicts: Vec<String>,
}

/// Brings the registry's file services to what `declared` says.
pub async fn reconcile(
    registry: &Registry,
    declared: &[NewService],
    kept: &[String],
    now: DateTime<Utc>,
) -> Result<Reconciled, StoreError> {
    let mut done = Reconciled::default();
    let existing: HashMap<String, Service> = registry
        .services(&ListFilter::default())
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    // Dependencies last: a service may name one declared after it.
    for want in declared {
        let name = want.name.as_str();
        let want = &NewService {
            depends_on: Vec::new(),
            ..want.clone()
        };
        match existing.get(name) {
            Some(s) if s.from_file => {
                let patch = patch_towards(s, want);
                if !patch.is_empty() {
                    registry.update(s.id, &patch, now).await?;
                    done.updated.push(name.to_owned());
                }
            }
            Some(s) if s.status == lookout_proto::service::RegistryStatus::Configured => {
                done.conflicts.push(name.to_owned());
            }
            // New, or a unit a scan found under that name: registering it
            // makes it a configured service.
            _ => {
                registry.create(want, now).await?;
                done.created.push(name.to_owned());
            }
        }
    }
    for want in declared {
        let Some(held) = registry
            .services(&ListFilter::default())
            .into_iter()
            .find(|s| s.name == want.name.as_str() && s.from_file)
        else {
            continue;
        };
        let ids: Vec<i64> = want
            .depends_on
            .iter()
            .filter_map(|r| match r {
                lookout_proto::depends::ServiceRef::Id(id) => Some(*id),
                lookout_proto::depends::ServiceRef::Name(n) => registry
                    .services(&ListFilter::default())
                    .into_iter()
                    .find(|s| s.name == *n)
                    .map(|s| s.id),
            })
            .collect();
        if ids != held.depends_on || ids.len() != want.depends_on.len() {
            let patch = ServicePatch {
                depends_on: Some(want.depends_on.clone()),
                ..ServicePatch::default()
            };
            registry.update(held.id, &patch, now).await?;
            if !done.created.contains(&held.name) && !done.updated.contains(&held.name) {
                done.updated.push(held.name.clone());
            }
        }
    }
    for s in existing.values() {
        if s.from_file
            && !declared.iter().any(|d| d.name.as_str() == s.name)
            && !kept.contains(&s.name)
        {
            registry.delete(s.id, now).await?;
            done.removed.push(s.name.clone());
        }
    }
    Ok(done)
}

/// The changes that make `s` what `want` declares, and nothing else (a
/// setting written again unchanged would reset its check).
fn patch_towards(s: &Service, want: &NewService) -> ServicePatch {
    let mut p = ServicePatch::default();
    if s.description != want.description {
        p.description = Some(want.description.clone());
    }
    if s.base_url != want.base_url.as_ref().map(|u| u.to_display()) {
        p.base_url = Some(want.base_url.clone());
    }
    if s.port != want.port {
        p.port = Some(want.port);
    }
    if s.health_endpoint.as_deref() != want.health_endpoint.as_ref().map(|e| e.as_str()) {
        p.health_endpoint = Some(want.health_endpoint.clone());
    }
    for (now, wanted, slot) in [
        (
            s.check_interval_secs,
            want.check_interval_secs,
            &mut p.check_interval_secs,
        ),
        (
            s.check_timeout_ms,
            want.check_timeout_ms,
            &mut p.check_timeout_ms,
        ),
        (
            s.retry_interval_secs,
            want.retry_interval_secs,
            &mut p.retry_interval_secs,
        ),
        (
            s.start_period_secs,
            want.start_period_secs,
            &mut p.start_period_secs,
        ),
        (s.notify_after, want.notify_after, &mut p.notify_after),
    ] {
        if now != wanted {
            *slot = Some(wanted);
        }
    }
    if s.muted != want.muted.unwrap_or(false) {
        p.muted = Some(Some(want.muted.unwrap_or(false)));
    }
    if s.conditions != want.conditions {
        p.conditions = Some(want.conditions.clone());
    }
    if s.tags != want.tags {
        p.tags = Some(want.tags.clone());
    }
    if s.heal.as_deref() != want.heal.as_ref() {
        p.heal = Some(want.heal.clone());
    }
    if *s.probe != want.probe {
        p.http = Some(want.probe.http.clone());
        p.tls = Some(want.probe.tls.clone());
        p.dns = Some(want.probe.dns.clone());
    }
    p
}

/// How soon after the file changes it is read: an editor's several writes
/// cost one reload.
const SETTLE: Duration = Duration::from_millis(150);

/// Loads `path` and reconciles, then again whenever the file changes, until
/// `stop`. A file that does not parse leaves the services as they were
/// (the error is logged).
pub async fn follow(
    path: PathBuf,
    registry: std::sync::Arc<Registry>,
    clock: crate::clock::SharedClock,
    stop: CancellationToken,
) {
    use ::notify::Watcher as _;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let name = path.file_name().map(std::ffi::OsStr::to_os_string);
    let watcher = ::notify::recommended_watcher(move |event: ::notify::Result<::notify::Event>| {
        // Editors write the file, or a new one renamed over it: any event
        // naming the file counts.
        if let Ok(event) = event {
            if event
                .paths
                .iter()
                .any(|p| p.file_name().map(std::ffi::OsStr::to_os_string) == name)
            {
                let _ = tx.try_send(());
            }
        }
    });
    // The directory is watched, not the file: a file replaced by a rename
    // is then still followed.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&dir, ::notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot follow the monitors file; it is loaded at start only");
                None
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot follow the monitors file; it is loaded at start only");
            None
        }
    };
    let mut last: Option<String> = None;
    loop {
        match std::fs::read_to_string(&path) {
            Ok(text) if last.as_deref() == Some(&text) => {}
            // A file with nothing in it is taken for one being written
            // (truncated, then filled): the services stay as they are.
            Ok(text) if text.trim().is_empty() => {
                tracing::warn!(file = %path.display(), "the monitors file is empty; the services stay as they were");
            }
            Ok(text) => match parse(&text, is_gatus(&path)) {
                Ok(declared) => {
                    for why in &declared.skipped {
                        tracing::warn!(file = %path.display(), "skipped {why}");
                    }
                    match reconcile(&registry, &declared.services, &declared.kept, clock.now())
                        .await
                    {
                        Ok(done) => {
                            for name in &done.conflicts {
                                tracing::warn!(file = %path.display(), service = %name, "a service made through the API or the dashboard has this name; the file's entry is not loaded");
                            }
                            tracing::info!(
                                file = %path.display(),
                                created = done.created.len(),
                                updated = done.updated.len(),
                                removed = done.removed.len(),
                                "monitors file loaded"
                            );
                            last = Some(text);
                        }
                        Err(e) => {
                            tracing::error!(file = %path.display(), error = %e, "cannot apply the monitors file");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), "{e}; the services stay as they were");
                    last = Some(text);
                }
            },
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read the monitors file");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = rx.recv() => {
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
            }
        }
    }
}

/// The services made through the API or the dashboard as a monitors file
/// (TOML), which `--monitors` loads back.
pub fn to_toml(services: &[Service]) -> String {
    let mut out = String::from(
        "# lookout monitors file: each [[service]] is a service object as the API\n# takes it. Load it with `lookout serve --monitors FILE`.\n",
    );
    for s in services {
        let mut entry = toml::Table::new();
        let mut put = |key: &str, value: toml::Value| {
            entry.insert(key.to_owned(), value);
        };
        put("name", s.name.clone().into());
        if let Some(d) = &s.description {
            put("description", d.clone().into());
        }
        if let Some(u) = &s.base_url {
            put("base_url", u.clone().into());
        }
        if let Some(e) = &s.health_endpoint {
            put("health_endpoint", e.clone().into());
        }
        if let Some(p) = s.port {
            put("port", i64::from(p).into());
        }
        for (key, value) in [
            ("check_interval_secs", s.check_interval_secs),
            ("retry_interval_secs", s.retry_interval_secs),
            ("check_timeout_ms", s.check_timeout_ms),
            ("start_period_secs", s.start_period_secs),
            ("notify_after", s.notify_after),
        ] {
            if let Some(v) = value {
                put(key, i64::try_from(v).unwrap_or(i64::MAX).into());
            }
        }
        if s.muted {
            put("muted", true.into());
        }
        if !s.tags.is_empty() {
            put("tags", s.tags.clone().into());
        }
        // By name: ids are the database's.
        let depends: Vec<String> = s
            .depends_on
            .iter()
            .filter_map(|id| {
                services
                    .iter()
                    .find(|o| o.id == *id)
                    .map(|o| o.name.clone())
            })
            .collect();
        if !depends.is_empty() {
            put("depends_on", depends.into());
        }
        if let Some(v) = s
            .heal
            .as_deref()
            .and_then(|h| toml::Value::try_from(h).ok())
        {
            put("heal", v);
        }
        if !s.conditions.is_empty() {
            let specs: Vec<_> = s.conditions.iter().map(|c| c.to_spec()).collect();
            if let Ok(v) = toml::Value::try_from(specs) {
                put("conditions", v);
            }
        }
        for (key, value) in [
            (
                "http",
                s.probe
                    .http
                    .as_ref()
                    .and_then(|h| toml::Value::try_from(h).ok()),
            ),
            (
                "tls",
                s.probe
                    .tls
                    .as_ref()
                    .and_then(|t| toml::Value::try_from(t).ok()),
            ),
            (
                "dns",
                s.probe
                    .dns
                    .as_ref()
                    .and_then(|d| toml::Value::try_from(d).ok()),
            ),
        ] {
            if let Some(v) = value {
                put(key, v);
            }
        }
        let mut doc = toml::Table::new();
        doc.insert(
            "service".into(),
            toml::Value::Array(vec![toml::Value::Table(entry)]),
        );
        out.push('\n');
        out.push_str(&toml::to_string(&doc).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_file_is_read_as_api_objects() {
        let declared = parse(
            r#"
[[service]]
name = "nextcloud"
base_url = "https://cloud.home.lan/status.php"
conditions = ["[STATUS] == 200", { expr = "[CERTIFICATE_EXPIRATION] > 14d", on_fail = "WARNING" }]
check_interval_secs = 30

[[service]]
name = "postgres"
base_url = "tcp://127.0.0.1:5432"

[service.tls]
skip_verify = false
"#,
            false,
        )
        .unwrap();
        assert_eq!(declared.services.len(), 2);
        assert!(declared.services.iter().all(|s| s.from_file));
        assert_eq!(declared.services[0].conditions.len(), 2);
        assert_eq!(declared.services[0].check_interval_secs, Some(30));
        assert_eq!(
            declared.services[1]
                .base_url
                .as_ref()
                .unwrap()
                .target()
                .kind(),
            "tcp"
        );
    }

    #[test]
    fn a_bad_file_says_where() {
        for (text, wanted) in [
            (
                "[[service]]\nname = \"a\"\nbase_url = \"ftp://x\"\n",
                "service 1 (\"a\"): base_url: must use one of",
            ),
            (
                "[[service]]\nname = \"a\"\n[[service]]\nname = \"a\"\n",
                "service 2 (\"a\"): the name \"a\" is taken by entry 1",
            ),
            (
                "[[services]]\nname = \"a\"\n",
                "\"services\" is not a section",
            ),
            (
                "[[service]]\nname = \"a\"\nconditions = [\"[STATUS] = 200\"]\n",
                "conditions[0]: has no operator",
            ),
            ("[[service]\n", "line 1"),
        ] {
            let e = parse(text, false).unwrap_err().to_string();
            assert!(e.contains(wanted), "{text:?}: {e}");
        }
    }

    #[test]
    fn gatus_endpoints_become_services_and_the_rest_is_named() {
        let declared = parse(
            r#"
alerting:
  slack:
    webhook-url: "https://hooks.slack.invalid/x"
endpoints:
  - name: website
    group: core
    url: "https://twin.sh/health"
    interval: 5m
    conditions:
      - "[STATUS] == 200"
      - "[BODY].status == UP"
      - "[RESPONSE_TIME] < 150"
    alerts:
      - type: slack
  - name: dns
    url: "8.8.8.8"
    dns:
      query-name: "example.org"
      query-type: "A"
    conditions: ["[DNS_RCODE] == NOERROR"]
  - name: ssh
    url: "ssh://example.org:22"
  - name: off
    url: "https://example.org"
    enabled: false
  - name: domain
    url: "https://example.org"
    conditions:
      - "[DOMAIN_EXPIRATION] > 720h"
"#,
            true,
        )
        .unwrap();
        let names: Vec<&str> = declared.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["website", "dns"]);
        assert_eq!(declared.services[0].check_interval_secs, Some(300));
        assert_eq!(declared.services[0].conditions.len(), 3);
        assert_eq!(
            declared.services[1].base_url.as_ref().unwrap().to_display(),
            "dns://8.8.8.8"
        );
        assert_eq!(declared.kept, ["domain"], "loaded before, kept as it was");
        assert_eq!(
            declared.skipped,
            [
                "endpoint \"ssh\": lookout does not check ssh:// URLs",
                "endpoint \"off\": disabled",
                "endpoint \"domain\": conditions[0]: [DOMAIN_EXPIRATION] is not a placeholder lookout knows ([STATUS], [BODY], [RESPONSE_TIME], [CONNECTED], [CERTIFICATE_EXPIRATION], [DNS_RCODE], [IP], [CPU_PERCENT], [MEMORY], [MEMORY_PERCENT], [TASKS], [DISK_PERCENT], [DISK_FULL_IN], [LOAD])"
            ]
        );
    }
}
