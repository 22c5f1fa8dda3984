//! `lookout import --uptime-kuma kuma.db`: Uptime Kuma's monitors (read from
//! its SQLite database; 2.0 has no JSON backup) registered as services, for
//! people moving over. HTTP, keyword and JSON-query monitors become HTTP
//! checks with conditions, port monitors TCP checks, ping monitors ICMP and
//! DNS monitors DNS checks, push monitors push checks with the same token
//! (Uptime Kuma's push URL is lookout's: only the host changes); the rest
//! (groups, containers, databases ...) are named and skipped, with why.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use lookout_proto::service::parse_new_service;
use serde_json::{json, Map, Value};
use sqlx::Row as _;

/// One row of Uptime Kuma's `monitor` table, with the columns read.
#[derive(Debug, Clone, Default)]
pub struct Monitor {
    pub name: String,
    pub kind: String,
    pub active: bool,
    pub url: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<i64>,
    pub interval: Option<i64>,
    pub retry_interval: Option<i64>,
    /// Seconds.
    pub timeout: Option<f64>,
    pub method: Option<String>,
    pub headers: Option<String>,
    pub body: Option<String>,
    pub basic_auth: Option<(String, String)>,
    /// `basic`, `ntlm`, `mtls`, `oauth2-cc` or unset (older versions: basic).
    pub auth_method: Option<String>,
    pub accepted: Option<String>,
    pub keyword: Option<String>,
    pub invert_keyword: bool,
    pub json_path: Option<String>,
    pub expected_value: Option<String>,
    pub ignore_tls: bool,
    pub max_redirects: Option<i64>,
    pub upside_down: bool,
    pub dns_server: Option<String>,
    pub dns_type: Option<String>,
    pub description: Option<String>,
    /// A push monitor's token: the last part of its push URL.
    pub push_token: Option<String>,
}

/// Reads every monitor of an Uptime Kuma database (opened read-only).
pub async fn read(path: &Path) -> anyhow::Result<Vec<Monitor>> {
    if !path.is_file() {
        anyhow::bail!("{} is not a file", path.display());
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::ConnectOptions::connect(&options)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let rows = sqlx::query("SELECT * FROM monitor ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .with_context(|| {
            format!(
                "{} is not an Uptime Kuma database (no monitor table)",
                path.display()
            )
        })?;
    // Columns by name; a column an older Uptime Kuma lacks reads as unset.
    let text = |row: &sqlx::sqlite::SqliteRow, c: &str| {
        row.try_get::<Option<String>, _>(c)
            .ok()
            .flatten()
            .filter(|s| !s.trim().is_empty())
    };
    let int =
        |row: &sqlx::sqlite::SqliteRow, c: &str| row.try_get::<Option<i64>, _>(c).ok().flatten();
    let flag = |row: &sqlx::sqlite::SqliteRow, c: &str| int(row, c).unwrap_or(0) != 0;
    Ok(rows
        .iter()
        .map(|row| Monitor {
            name: text(row, "name").unwrap_or_default(),
            kind: text(row, "type").unwrap_or_default(),
            active: int(row, "active").is_none_or(|a| a != 0),
            url: text(row, "url"),
            hostname: text(row, "hostname"),
            port: int(row, "port"),
            interval: int(row, "interval"),
            retry_interval: int(row, "retry_interval"),
            timeout: row.try_get::<Option<f64>, _>("timeout").ok().flatten(),
            method: text(row, "method"),
            headers: text(row, "headers"),
            body: text(row, "body"),
            basic_auth: text(row, "basic_auth_user")
                .map(|u| (u, text(row, "basic_auth_pass").unwrap_or_default())),
            auth_method: text(row, "auth_method"),
            accepted: text(row, "accepted_statuscodes_json"),
            keyword: text(row, "keyword"),
            invert_keyword: flag(row, "invert_keyword"),
            json_path: text(row, "json_path"),
            expected_value: text(row, "expected_value"),
            ignore_tls: flag(row, "ignore_tls"),
            max_redirects: int(row, "maxredirects"),
            upside_down: flag(row, "upside_down"),
            dns_server: text(row, "dns_resolve_server"),
            dns_type: text(row, "dns_resolve_type"),
            description: text(row, "description"),
            push_token: text(row, "push_token"),
        })
        .collect())
}

/// A JSON path Uptime Kuma's JSON query (JSONata) shares with Gatus's
/// `[BODY]` paths: keys and indexes only (`data.items[0].state`).
fn simple_path(path: &str) -> Option<String> {
    let path = path.trim().trim_start_matches("$.");
    let ok = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c))
        && !path.starts_with(['.', '['])
        && !path.contains("..");
    ok.then(|| format!("[BODY].{path}"))
}

/// The service a monitor becomes, as the API takes it; or why it is skipped.
pub fn to_service(m: &Monitor) -> Result<Map<String, Value>, lookout_proto::error::Invalid> {
    if !m.active {
        return Err("paused in Uptime Kuma".into());
    }
    if m.upside_down {
        return Err("upside-down mode (up when unreachable): write the opposite condition, e.g. [CONNECTED] == false".into());
    }
    let mut s = Map::new();
    s.insert("name".into(), json!(m.name));
    if let Some(d) = &m.description {
        s.insert("description".into(), json!(d));
    }
    if let Some(i) = m.interval.filter(|i| *i > 0) {
        s.insert("check_interval_secs".into(), json!(i));
    }
    if let Some(r) = m
        .retry_interval
        .filter(|r| *r > 0 && Some(*r) != m.interval)
    {
        s.insert("retry_interval_secs".into(), json!(r));
    }
    if let Some(t) = m.timeout.filter(|t| *t > 0.0) {
        // Whole milliseconds within the range a check may take.
        let ms = (t * 1000.0).round().clamp(50.0, 120_000.0);
        s.insert(
            "check_timeout_ms".into(),
            json!(format!("{ms:.0}").parse::<u64>().unwrap_or(2000)),
        );
    }
    let host = || m.hostname.clone().ok_or("no hostname");
    let mut conditions: Vec<Value> = Vec::new();
    match m.kind.as_str() {
        "http" | "keyword" | "json-query" => {
            let url = m.url.clone().ok_or("no URL")?;
            s.insert("base_url".into(), json!(url));
            let mut http = Map::new();
            if let Some(method) = m.method.as_deref().filter(|m| *m != "GET") {
                http.insert("method".into(), json!(method));
            }
            let mut headers: BTreeMap<String, Value> = match &m.headers {
                Some(text) => {
                    serde_json::from_str(text).map_err(|_| "its headers are not a JSON object")?
                }
                None => BTreeMap::new(),
            };
            match m.auth_method.as_deref() {
                None | Some("basic" | "" | "none") => {}
                Some(other) => {
                    return Err(
                        format!("its {other} authentication has no lookout equivalent").into(),
                    )
                }
            }
            let basic = m
                .basic_auth
                .as_ref()
                .filter(|_| m.auth_method.as_deref().is_none_or(|a| a == "basic"));
            if let Some((user, pass)) = basic {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                headers.insert("Authorization".into(), json!(format!("Basic {token}")));
            }
            if !headers.is_empty() {
                http.insert("headers".into(), json!(headers));
            }
            if let Some(body) = &m.body {
                http.insert("body".into(), json!(body));
            }
            if let Some(codes) = &m.accepted {
                let codes: Vec<String> = serde_json::from_str(codes)
                    .map_err(|_| "its accepted status codes are not a JSON list")?;
                if codes != ["200-299"] {
                    http.insert("accepted_codes".into(), json!(codes));
                }
            }
            if m.max_redirects == Some(0) {
                http.insert("follow_redirects".into(), json!(false));
            }
            if !http.is_empty() {
                s.insert("http".into(), Value::Object(http));
            }
            if m.ignore_tls {
                s.insert("tls".into(), json!({"skip_verify": true}));
            }
            if m.kind == "keyword" {
                let word = m
                    .keyword
                    .clone()
                    .ok_or("a keyword monitor without a keyword")?;
                let op = if m.invert_keyword { "!=" } else { "==" };
                conditions.push(json!(format!("[BODY] {op} pat(*{word}*)")));
            }
            if m.kind == "json-query" {
                let path = m
                    .json_path
                    .as_deref()
                    .ok_or("a JSON query without a query")?;
                let placeholder = simple_path(path).ok_or_else(|| {
                    format!("its JSON query {path:?} is a JSONata expression, not a path: write a condition such as [BODY].a.b == value")
                })?;
                let expected = m.expected_value.clone().unwrap_or_default();
                conditions.push(json!(format!("{placeholder} == {expected}")));
            }
        }
        "port" => {
            let port = m.port.ok_or("a port monitor without a port")?;
            s.insert(
                "base_url".into(),
                json!(format!("tcp://{}:{port}", bracket(&host()?))),
            );
        }
        "ping" => {
            s.insert(
                "base_url".into(),
                json!(format!("icmp://{}", bracket(&host()?))),
            );
        }
        "dns" => {
            let server = m.dns_server.clone().unwrap_or_else(|| "1.1.1.1".into());
            let port = m.port.filter(|p| *p > 0 && *p != 53);
            let url = match port {
                Some(p) => format!("dns://{}:{p}", bracket(&server)),
                None => format!("dns://{}", bracket(&server)),
            };
            s.insert("base_url".into(), json!(url));
            s.insert(
                "dns".into(),
                json!({"name": host()?, "type": m.dns_type.as_deref().unwrap_or("A")}),
            );
        }
        "push" => {
            // Pinged, not checked: the token goes on after registering.
            push_timing(m)?;
            s.remove("check_interval_secs");
            s.remove("retry_interval_secs");
            s.remove("check_timeout_ms");
        }
        "group" => return Err("a group: lookout has no groups yet".into()),
        other => return Err(format!("Uptime Kuma's {other} monitors have no lookout kind").into()),
    }
    if !conditions.is_empty() {
        s.insert("conditions".into(), Value::Array(conditions));
    }
    Ok(s)
}

/// An IPv6 address as a URL writes it.
fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A push monitor's token and timing (period and grace, in seconds): Uptime
/// Kuma expects a push every interval and retries for its retry interval.
fn push_timing(m: &Monitor) -> Result<(&str, u64, u64), lookout_proto::error::Invalid> {
    let token = m
        .push_token
        .as_deref()
        .ok_or("a push monitor without a push token")?;
    if token.len() > 128
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!("its push token {token:?} is not one lookout can serve").into());
    }
    let secs = |v: Option<i64>, default: u64| {
        u64::try_from(v.unwrap_or(0))
            .ok()
            .filter(|s| *s > 0)
            .unwrap_or(default)
            .clamp(60, 365 * 86_400)
    };
    Ok((token, secs(m.interval, 86_400), secs(m.retry_interval, 60)))
}

/// Imports every monitor it can into `store`, printing one line per
/// monitor; the number imported.
pub async fn import(
    monitors: &[Monitor],
    store: &dyn lookout_hub::store::Store,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<usize> {
    let mut imported = 0;
    for m in monitors {
        let service = to_service(m).and_then(|body| {
            parse_new_service(&body).map_err(|errors| {
                let e = &errors[0];
                lookout_proto::error::Invalid::from(format!("{}: {}", e.field, e.message))
            })
        });
        match service {
            Ok(new) => match store.register_service(&new, now).await {
                Ok((service, _)) => {
                    // A push monitor's token was read by `to_service`.
                    let push = (m.kind == "push").then(|| push_timing(m).ok()).flatten();
                    if let Some((token, period, grace)) = push {
                        let hash = lookout_hub::auth::token::hash(token);
                        if let Err(e) = store
                            .set_push_token(
                                service.id,
                                Some(&hash),
                                &lookout_proto::push::PushTiming {
                                    period_secs: period,
                                    grace_secs: grace,
                                    schedule: None,
                                },
                            )
                            .await
                        {
                            // No push check without its token.
                            let _ = store.delete_service(service.id).await;
                            return Err(e.into());
                        }
                        println!("imported {:?} (push: /api/push/{token})", m.name);
                    } else {
                        let kind = new.base_url.as_ref().map_or("none", |u| u.target().kind());
                        println!("imported {:?} ({kind})", m.name);
                    }
                    imported += 1;
                }
                Err(lookout_hub::store::StoreError::Conflict { .. }) => {
                    println!("skipped {:?}: a service by that name exists", m.name);
                }
                Err(e) => return Err(e.into()),
            },
            Err(why) => println!("skipped {:?}: {why}", m.name),
        }
    }
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_queries_that_are_paths_become_conditions() {
        assert_eq!(simple_path("state").as_deref(), Some("[BODY].state"));
        assert_eq!(
            simple_path("$.data.items[0].ok").as_deref(),
            Some("[BODY].data.items[0].ok")
        );
        assert_eq!(simple_path("$sum(items.count)"), None);
        assert_eq!(simple_path("a..b"), None);
    }
}
