//! The dashboard: server-rendered HTML pages and their static assets. Every page
//! works without JavaScript; `static/app.js` only adds live refresh and confirms.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::Method;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use lookout_proto::service::{parse_new_service, parse_service_patch, RegistryStatus};
use lookout_proto::status::Status;
use lookout_proto::FieldError;
use serde_json::{json, Map, Value};

use super::extract::ServiceId;
use super::table::Routes;
pub(crate) use super::when::stamp;
use super::when::{relative, Ago, Stamp};
use super::AppState;
use crate::auth::client::Client;
use crate::auth::guard::{Caller, Remote};
use crate::auth::{Access, Bucket};
use crate::history::Range;
use crate::store::{Service, StoreError};

/// Every dashboard page and form.
pub fn routes(r: Routes) -> Routes {
    r.get("/", Access::Viewer, dashboard)
        .get("/scan", Access::Viewer, scan_page)
        // The form posts where it is shown: `/services` is the heartbeat
        // API's list.
        .get("/services/new", Access::Viewer, new_form)
        .post("/services/new", Access::Admin, create_from_form)
        .get("/services/{id}", Access::Viewer, detail_page)
        .get("/services/{id}/edit", Access::Viewer, edit_form)
        .post("/services/{id}/edit", Access::Admin, update_from_form)
        .post("/services/{id}/delete", Access::Admin, delete_from_form)
        .post("/services/{id}/check", Access::Admin, check_from_form)
        .post(
            "/services/{id}/push-url",
            Access::Admin,
            new_push_url_from_form,
        )
        .post("/services/{id}/alerts", Access::Admin, alerts_from_form)
        .post("/services/{id}/pause", Access::Admin, alerts_from_form)
        .post("/scan/cleanup", Access::Admin, cleanup_from_form)
        .limited(
            Method::POST,
            "/control/{id}/{action}",
            Access::Admin,
            Bucket::Control,
            control_from_form,
        )
        .limited(
            Method::GET,
            "/logs/{id}",
            Access::Viewer,
            Bucket::Logs,
            logs_page,
        )
        .get("/static/app.css", Access::Public, || {
            asset(
                "text/css; charset=utf-8",
                include_str!("../../static/app.css").as_bytes(),
            )
        })
        .get("/static/app.js", Access::Public, || {
            asset(
                "text/javascript; charset=utf-8",
                include_str!("../../static/app.js").as_bytes(),
            )
        })
        .get("/static/favicon.svg", Access::Public, || {
            asset(
                "image/svg+xml",
                include_str!("../../static/favicon.svg").as_bytes(),
            )
        })
        // The installable app: its manifest, icons and service worker (at
        // the root, so that it may serve every page).
        .get("/manifest.webmanifest", Access::Public, || {
            asset(
                "application/manifest+json",
                include_str!("../../static/manifest.webmanifest").as_bytes(),
            )
        })
        .get("/sw.js", Access::Public, || async {
            (
                [
                    (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                include_str!("../../static/sw.js").as_bytes(),
            )
                .into_response()
        })
        .get("/static/icon-192.png", Access::Public, || {
            asset("image/png", include_bytes!("../../static/icon-192.png"))
        })
        .get("/static/icon-512.png", Access::Public, || {
            asset("image/png", include_bytes!("../../static/icon-512.png"))
        })
        .get("/static/icon-maskable-512.png", Access::Public, || {
            asset(
                "image/png",
                include_bytes!("../../static/icon-maskable-512.png"),
            )
        })
}

/// The answer for a path no page has.
pub async fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address.",
    )
}

async fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        axum::body::Body::from(body),
    )
        .into_response()
}

/// Renders a template, or a generic 500 page if rendering fails (logged).
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the hub's log has the details",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A page with a title and one message (errors, refusals).
pub fn message(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &MessagePage { title, message })
}

/// What a page handler answers when it cannot go on, so that handlers
/// return `Page` and use `?` where they would spell out an early exit: the
/// database's failure (a 500 page, logged; a 409 on a hub that may not
/// write), or a page of its own.
#[derive(Debug)]
pub enum PageError {
    Store(StoreError),
    /// A message page with this status.
    Message {
        status: StatusCode,
        title: &'static str,
        message: String,
    },
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::Store(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Store(e) => store_failure(&e),
            PageError::Message {
                status,
                title,
                message: text,
            } => message(status, title, &text),
        }
    }
}

/// What a page handler answers.
pub(crate) type Page = Result<Response, PageError>;

pub(crate) fn store_failure(e: &StoreError) -> Response {
    if let StoreError::ReadOnly(why) = e {
        return message(StatusCode::CONFLICT, "Not changed here", why);
    }
    tracing::error!(error = ?e, "dashboard request failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "lookout could not read or write its database. The hub's log has the details.",
    )
}

fn no_such_service() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "No such service",
        "This service does not exist; it may have been deleted.",
    )
}

// ---- Dashboard ------------------------------------------------------------

#[derive(Clone)]
struct Row {
    id: i64,
    /// Inline SVG of recent latencies (numbers only).
    spark: String,
    unit: Option<String>,
    systemd_state: String,
    /// How its unit's (or container's) state is coloured.
    state_class: String,
    name: String,
    href: Option<String>,
    description: Option<String>,
    health: &'static str,
    label: &'static str,
    detail: String,
    /// Declared in the monitors file: not edited here.
    from_file: bool,
    tags: Vec<String>,
    /// The Compose project of its container.
    compose: Option<String>,
    /// Where its status sorts: [`severity`].
    severity: u8,
    /// Uptime over 24 h, for a service the hub checks.
    uptime: Option<String>,
    /// When it was last checked, as the API writes it (the page's script
    /// adds a beat when this changes).
    checked: String,
    /// "muted" or "maintenance", when its alerts are held back.
    quiet: Option<&'static str>,
    /// When it was last checked, for the detail line.
    checked_ago: Option<Ago>,
    /// What its unit uses now: "12 % CPU · 256 MiB".
    usage: Option<String>,
    /// Its place when sorted by usage (the page's script keeps it).
    rank: Option<usize>,
}

/// The dashboard's filters, as its query says them (`?state=&kind=&tag=&q=`,
/// the API's list filters).
#[derive(Default)]
struct Filters {
    state: String,
    kind: String,
    tag: String,
    q: String,
    /// Every tag and kind in use, for the filter menus.
    tags: Vec<String>,
    kinds: Vec<&'static str>,
    /// Why the query could not be read, if it could not.
    error: Option<String>,
    /// `?group=tag`: one section per tag.
    by_tag: bool,
    /// `?group=compose`: one section per Compose project.
    by_compose: bool,
    /// Some service's container belongs to a Compose project.
    has_compose: bool,
    /// `?sort=memory` or `?sort=cpu`: by what the services use, most first.
    sort: String,
}

impl Filters {
    fn active(&self) -> bool {
        !(self.state.is_empty() && self.kind.is_empty() && self.tag.is_empty() && self.q.is_empty())
    }
}

/// A section of the dashboard: every row, or one tag's rows when grouped.
struct Group {
    /// The tag, or `None` for the whole list (or the untagged rows when
    /// grouped).
    tag: Option<String>,
    rows: Vec<Row>,
    /// Of its rows, how many fail.
    failing: usize,
}

/// The rows in one section, or in one section per tag (a service with two
/// tags shows in both; untagged ones last): sections with failing services
/// first, then by tag.
fn group_rows(rows: Vec<Row>, by_tag: bool, by_compose: bool) -> Vec<Group> {
    let failing = |rows: &[Row]| rows.iter().filter(|r| r.severity == 0).count();
    if !by_tag && !by_compose {
        return vec![Group {
            tag: None,
            failing: failing(&rows),
            rows,
        }];
    }
    // What a row is grouped by: its tags, or its Compose project.
    let keys = |r: &Row| -> Vec<String> {
        if by_compose {
            r.compose.iter().cloned().collect()
        } else {
            r.tags.clone()
        }
    };
    let mut tags: Vec<String> = Vec::new();
    for row in &rows {
        for tag in &keys(row) {
            if !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
                tags.push(tag.clone());
            }
        }
    }
    let mut groups: Vec<Group> = tags
        .into_iter()
        .map(|tag| {
            let rows: Vec<Row> = rows
                .iter()
                .filter(|r| keys(r).iter().any(|t| t.eq_ignore_ascii_case(&tag)))
                .cloned()
                .collect();
            Group {
                failing: failing(&rows),
                tag: Some(tag),
                rows,
            }
        })
        .collect();
    let untagged: Vec<Row> = rows.into_iter().filter(|r| keys(r).is_empty()).collect();
    if !untagged.is_empty() {
        groups.push(Group {
            tag: None,
            failing: failing(&untagged),
            rows: untagged,
        });
    }
    groups.sort_by_cached_key(|g| {
        let worst = g.rows.iter().map(|r| r.severity).min().unwrap_or(u8::MAX);
        (
            worst,
            g.tag.is_none(),
            g.tag.as_deref().map(str::to_lowercase),
        )
    });
    groups
}

/// Where a status sorts on the dashboard: failing first, then warning,
/// unknown, OK.
fn severity(status: Status) -> u8 {
    match status {
        Status::Failure => 0,
        Status::Warning | Status::Update => 1,
        Status::Unknown => 2,
        Status::Ok => 3,
    }
}

#[derive(Default)]
struct Counts {
    ok: usize,
    failure: usize,
    warning: usize,
    unknown: usize,
}

#[derive(Template)]
#[template(path = "index.html")]
struct DashboardPage {
    groups: Vec<Group>,
    /// Rows shown (a row in two groups counts once).
    shown: usize,
    counts: Counts,
    filters: Filters,
    /// Services registered at all (the rows are those the filters admit).
    total: usize,
    notice: Option<String>,
    /// (timer, unit, why) for timers whose last run failed.
    failed_timers: Vec<(String, String, String)>,
    /// (unit, why) for units of this host that fail but nobody watches.
    failed_units: Vec<(String, String)>,
}

/// The dashboard's words and colour class for a status.
pub fn label(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Ok => ("ok", "OK"),
        Status::Update => ("update", "Update"),
        Status::Warning => ("warning", "Warning"),
        Status::Failure => ("failure", "Failure"),
        Status::Unknown => ("unknown", "Unknown"),
    }
}

/// What the row says about its last check, without its time (shown apart).
fn detail(s: &Service) -> String {
    if s.paused {
        return "paused: not checked until resumed".into();
    }
    if !s.is_checked() {
        return s
            .state_reason
            .clone()
            .unwrap_or_else(|| "no health endpoint".into());
    }
    if s.last_health_check.is_none() {
        return "not checked yet".into();
    }
    let mut parts = Vec::new();
    match (&s.last_error, s.last_response_code) {
        (Some(e), _) => parts.push(e.clone()),
        (None, Some(code)) => parts.push(format!("HTTP {code}")),
        (None, None) => {}
    }
    if let Some(ms) = s.last_latency_ms {
        parts.push(format!("{ms} ms"));
    }
    if parts.is_empty() {
        // A passing check without a code or a time (a host's, a unit's
        // usage): the status's own reason.
        return s.state_reason.clone().unwrap_or_default();
    }
    parts.join(" · ")
}

async fn dashboard(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let failed_units = state
        .registry
        .list(&crate::registry::ListFilter::default())
        .iter()
        .map(|e| &e.service)
        .filter(|s| {
            s.status != RegistryStatus::Configured
                && s.server_id.is_none()
                && s.unit.is_some()
                && s.state == Status::Failure
        })
        .map(|s| (s.name.clone(), s.state_reason.clone().unwrap_or_default()))
        .collect();
    let all = state
        .registry
        .services(&crate::registry::ListFilter::configured());
    let word = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let mut filters = Filters {
        state: word("state").to_ascii_uppercase(),
        kind: word("kind").to_ascii_lowercase(),
        tag: word("tag"),
        q: word("q"),
        by_tag: word("group").eq_ignore_ascii_case("tag"),
        by_compose: word("group").eq_ignore_ascii_case("compose"),
        sort: Some(word("sort").to_ascii_lowercase())
            .filter(|s| matches!(s.as_str(), "memory" | "cpu"))
            .unwrap_or_default(),
        ..Filters::default()
    };
    let mut params: HashMap<String, String> = HashMap::new();
    for (key, value) in [
        ("state", &filters.state),
        ("kind", &filters.kind),
        ("tag", &filters.tag),
        ("q", &filters.q),
    ] {
        params.insert(key.to_owned(), value.clone());
    }
    let filter = match super::api::list_filter(&params) {
        Ok(f) => f,
        Err(e) => {
            filters.error = Some(e.body().message);
            crate::registry::ListFilter::configured()
        }
    };
    let mut counts = Counts::default();
    for s in &all {
        match s.state {
            Status::Ok => counts.ok += 1,
            Status::Failure => counts.failure += 1,
            Status::Warning | Status::Update => counts.warning += 1,
            Status::Unknown => counts.unknown += 1,
        }
        for tag in &s.tags {
            if !filters.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
                filters.tags.push(tag.clone());
            }
        }
        if !filters.kinds.contains(&s.watched_by()) {
            filters.kinds.push(s.watched_by());
        }
        filters.has_compose |= s
            .container_info
            .as_ref()
            .is_some_and(|c| c.compose_project.is_some());
    }
    filters.tags.sort_by_key(|t| t.to_lowercase());
    filters.kinds.sort_unstable();
    let total = all.len();
    let mut services: Vec<&Service> = all
        .iter()
        .filter(|s| filters.error.is_some() || filter.matches(s))
        .collect();
    // Failing first, then warning, unknown, OK; by name within each. Or
    // by what they use, the most first (those without figures last).
    services.sort_by_cached_key(|s| (severity(s.state), s.name.to_lowercase(), s.id));
    let usage = state.usage.services();
    let used = |s: &Service| {
        let u = usage.get(&s.id)?;
        match filters.sort.as_str() {
            "memory" => u.memory_bytes.map(|m| m as f64),
            "cpu" => u.cpu_percent,
            _ => None,
        }
    };
    if !filters.sort.is_empty() {
        services.sort_by(|a, b| {
            let (a, b) = (used(a), used(b));
            match (a, b) {
                (Some(a), Some(b)) => b.total_cmp(&a),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
        });
    }
    let ranked = !filters.sort.is_empty();
    let now = state.clock.now();
    let since = now - chrono::Duration::hours(6);
    let rows: Vec<Row> = services
        .iter()
        .enumerate()
        .map(|(rank, s)| Row {
            rank: ranked.then_some(rank),
            usage: usage.get(&s.id).map(|u| {
                let mut parts = Vec::new();
                if let Some(c) = u.cpu_percent {
                    parts.push(format!("{} CPU", crate::usage::percent(c)));
                }
                if let Some(m) = u.memory_bytes {
                    parts.push(crate::usage::bytes(m as f64));
                }
                parts.join(" · ")
            }),
            tags: s.tags.clone(),
            compose: s
                .container_info
                .as_ref()
                .and_then(|c| c.compose_project.clone()),
            severity: severity(s.state),
            quiet: s.held_back(now),
            id: s.id,
            spark: Some(state.registry.recent(s.id, since))
                .filter(|c| !c.is_empty())
                .map(|c| {
                    let passed: Vec<bool> = c
                        .iter()
                        .map(|(_, _, h)| *h == lookout_proto::service::HealthStatus::Healthy)
                        .collect();
                    crate::history::beat_bar(&passed, 30)
                })
                .unwrap_or_default(),
            checked: s
                .last_health_check
                .and_then(|t| match serde_json::to_value(t) {
                    Ok(Value::String(text)) => Some(text),
                    _ => None,
                })
                .unwrap_or_default(),
            uptime: s
                .is_checked()
                .then(|| crate::history::percent(state.registry.uptimes(s.id, now).day)),
            // A unit's state, or else its container's (as a unit's word:
            // its colour).
            unit: s.unit.clone().or_else(|| {
                s.container_info
                    .as_ref()
                    .map(|c| format!("container {}", c.name))
            }),
            systemd_state: match (&s.systemd_state, &s.container_info) {
                (Some(state), _) => state.clone(),
                (None, Some(c)) => c.state_text(),
                (None, None) => "unknown".into(),
            },
            state_class: match (&s.systemd_state, &s.container_info) {
                (Some(state), _) => state.clone(),
                (None, Some(c)) => c.state_class().into(),
                (None, None) => "unknown".into(),
            },
            name: s.name.clone(),
            href: web_link(s),
            description: s.description.clone(),
            health: label(s.state).0,
            label: label(s.state).1,
            detail: detail(s),
            checked_ago: s
                .is_checked()
                .then_some(s.last_health_check)
                .flatten()
                .filter(|_| !s.paused)
                .map(|t| Ago::new(t, now)),
            from_file: s.from_file,
        })
        .collect();
    let notice = q.get("notice").and_then(|n| match n.as_str() {
        "created" => Some("Service added. Its first health check is running.".to_owned()),
        "updated" => Some("Service saved.".to_owned()),
        "deleted" => Some("Service deleted.".to_owned()),
        "checked" => Some("Health checked.".to_owned()),
        _ => None,
    });
    let notice = control_notice(&q).or(notice);
    let failed_timers = state
        .store
        .list_timers()
        .await?
        .into_iter()
        .filter(|t| t.failed && !t.removed)
        .map(|t| {
            let why = match (&t.last_result, t.last_exit_status) {
                (Some(r), Some(code)) if code != 0 => format!("{r}, status {code}"),
                (Some(r), _) => r.clone(),
                (None, _) => t.unit_active_state.clone().unwrap_or_default(),
            };
            (t.name, t.unit, why)
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &DashboardPage {
            shown: rows.len(),
            groups: group_rows(rows, filters.by_tag, filters.by_compose),
            counts,
            filters,
            total,
            notice,
            failed_timers,
            failed_units,
        },
    ))
}

/// "Restarted web.service: job done, now active (running).", from the
/// redirect after a control form. Every part is checked, so a crafted link
/// cannot put arbitrary text on the page.
fn control_notice(q: &HashMap<String, String>) -> Option<String> {
    let word = |k: &str| {
        q.get(k).filter(|v| {
            !v.is_empty() && v.len() <= 32 && v.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
    };
    let action = lookout_systemd::Action::parse(q.get("control")?)?;
    let unit = lookout_systemd::UnitName::parse(q.get("unit")?).ok()?;
    let (result, state, sub) = (word("result")?, word("state")?, word("sub")?);
    let verb = match action {
        lookout_systemd::Action::Start => "Started",
        lookout_systemd::Action::Stop => "Stopped",
        lookout_systemd::Action::Restart => "Restarted",
    };
    Some(format!("{verb} {unit}: job {result}, now {state} ({sub})."))
}

// ---- Service detail ------------------------------------------------------------

#[derive(Template)]
#[template(path = "detail.html")]
struct DetailPage {
    id: i64,
    name: String,
    href: Option<String>,
    description: Option<String>,
    state_class: &'static str,
    state_label: &'static str,
    reason: String,
    since: Option<Stamp>,
    uptime_day: String,
    uptime_week: String,
    uptime_month: String,
    /// The response-time chart, for a service the hub checks.
    chart: ChartSection,
    incidents: Vec<IncidentRow>,
    has_checks: bool,
    /// (when, from, to, why)
    events: Vec<(Stamp, &'static str, &'static str, String)>,
    /// (when, result, latency, detail)
    checks: Vec<(Stamp, &'static str, String, String)>,
    /// A check script's server: (id, name).
    server: Option<(i64, String)>,
    /// A check script's results: (when, status, message).
    results: Vec<(Stamp, &'static str, String)>,
    /// The systemd unit of the hub's host behind the service.
    unit: Option<UnitSection>,
    /// The container of the hub's host behind the service.
    container: Option<ContainerSection>,
    /// What its unit uses, now and over a range.
    usage: Option<UsageSection>,
    /// How the hub checks it, when it does.
    check: Option<CheckSection>,
    /// Declared in the monitors file: not edited here.
    from_file: bool,
    admin: bool,
    /// Its push URL's timing and last ping, when it has one.
    push: Option<PushSection>,
    alerts: AlertsSection,
    deps: DepsSection,
}

/// A service another one depends on, or that depends on it, as the page
/// lists it.
struct Related {
    id: i64,
    name: String,
    state_class: &'static str,
    state_label: &'static str,
    /// Found, not named: the unit that listens on the check's port.
    implied: bool,
}

/// What a service depends on, what depends on it, and its self-healing.
struct DepsSection {
    parents: Vec<Related>,
    children: Vec<Related>,
    /// Its healing rule, in words.
    heal: Option<String>,
    /// Healing's last attempts: (when, outcome class, outcome, what happened).
    attempts: Vec<(Stamp, &'static str, &'static str, String)>,
}

impl DepsSection {
    fn of(state: &AppState, service: &Service) -> Self {
        let graph = state.registry.graph();
        let related = |ids: &[i64], implied: &dyn Fn(i64) -> bool| -> Vec<Related> {
            ids.iter()
                .filter_map(|&id| {
                    let e = state.registry.get(id)?;
                    let (state_class, state_label) = label(e.service.state);
                    Some(Related {
                        id,
                        name: e.service.name.clone(),
                        state_class,
                        state_label,
                        implied: implied(id),
                    })
                })
                .collect()
        };
        use lookout_proto::depends::HealOutcome;
        DepsSection {
            parents: related(graph.parents(service.id), &|p| graph.implied(service.id, p)),
            children: related(graph.children(service.id), &|c| {
                graph.implied(c, service.id)
            }),
            heal: service
                .heal
                .as_deref()
                .map(|h| h.describe(service.unit.as_deref())),
            attempts: state
                .heals
                .recent(service.id)
                .into_iter()
                .map(|a| {
                    let (class, word) = match a.outcome {
                        HealOutcome::Restarted => ("ok", "restarted"),
                        HealOutcome::Failed => ("failure", "failed"),
                        HealOutcome::GaveUp => ("warning", "gave up"),
                    };
                    (Stamp(a.at), class, word, a.message)
                })
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.parents.is_empty() && self.children.is_empty() && self.heal.is_none()
    }
}

/// A time the service was failing, as its page lists it.
struct IncidentRow {
    start: Stamp,
    /// `None` while it lasts.
    end: Option<Stamp>,
    lasted: String,
    reason: String,
}

/// The response-time chart of one range, with the range's figures.
struct ChartSection {
    range: &'static str,
    /// (range, words) for the range links.
    ranges: Vec<(&'static str, &'static str)>,
    svg: String,
    /// "99.31 % of 1,440 checks passed · mean 12 ms", or `None` when no
    /// check ran in the range.
    summary: Option<String>,
}

impl ChartSection {
    fn of(series: &[lookout_proto::series::Bucket], range: Range, now: DateTime<Utc>) -> Self {
        let (count, passed, values, sum) = series.iter().fold((0u64, 0u64, 0u64, 0.0), |a, b| {
            (
                a.0 + u64::from(b.count),
                a.1 + u64::from(b.passed),
                a.2 + u64::from(b.values),
                a.3 + b.sum,
            )
        });
        let summary = (count > 0).then(|| {
            let mut text = format!(
                "{} of {} {} passed",
                crate::history::percent(Some(passed as f64 / count as f64)),
                count,
                if count == 1 { "check" } else { "checks" }
            );
            if values > 0 {
                text.push_str(&format!(" · mean {:.0} ms", sum / values as f64));
            }
            text
        });
        ChartSection {
            range: range.as_str(),
            ranges: Range::ALL.iter().map(|r| (r.as_str(), r.words())).collect(),
            svg: crate::history::latency_chart(series, range, now),
            summary,
        }
    }
}

/// Whether and how a service alerts, as its page shows it.
struct AlertsSection {
    /// "Alerts are on", "Muted: ...", "In maintenance until ...".
    state: String,
    /// The channels it notifies, in words.
    through: String,
    /// Its recurring maintenance window, in words: "0 3 * * SUN (UTC), for 2 h".
    window: Option<String>,
    /// In that window now.
    window_open: bool,
    /// When the window next begins.
    window_next: Option<Ago>,
    paused: bool,
    muted: bool,
    /// In maintenance now (a window set now or planned ahead).
    maintenance: bool,
    /// A window planned ahead that has not begun: from, how soon, to.
    planned: Option<(Stamp, Ago, Stamp)>,
    /// After how many failed checks an alert goes out.
    after: u64,
}

impl AlertsSection {
    fn of(s: &Service, now: DateTime<Utc>, channels: &[crate::store::Channel]) -> AlertsSection {
        let named: Vec<&str> = channels
            .iter()
            .filter(|c| s.channels.contains(&c.id))
            .map(|c| c.name.as_str())
            .collect();
        let through = match (channels.is_empty(), named.is_empty()) {
            (true, _) => "No channel is set up yet".to_owned(),
            (false, true) => "Every channel".to_owned(),
            (false, false) => named.join(", "),
        };
        let until = s
            .in_planned_maintenance(now)
            .then_some(s.maintenance_until)
            .flatten();
        let planned = match (s.maintenance_from, s.maintenance_until) {
            (Some(from), Some(to)) if from > now => {
                Some((Stamp(from), Ago::new(from, now), Stamp(to)))
            }
            _ => None,
        };
        let window = s.maintenance_window.as_ref();
        let window_until = window.and_then(|w| w.open_until(now));
        let state = match (until, s.muted) {
            _ if s.paused => "Paused: it is not checked, and no alert is sent for it".to_owned(),
            (_, true) => "Muted: no alert is sent for it".to_owned(),
            (Some(t), false) => format!(
                "In maintenance until {} ({}): alerts wait until then",
                stamp(t),
                when(Some(t), now)
            ),
            (None, false) => match window_until {
                Some(t) => format!(
                    "In its recurring maintenance window until {} ({}): alerts wait until then",
                    stamp(t),
                    when(Some(t), now)
                ),
                None => "Alerts are on".to_owned(),
            },
        };
        AlertsSection {
            state,
            window: window.and_then(|w| {
                let cron = w.cron()?;
                Some(format!(
                    "{}, for {}",
                    cron.describe(),
                    crate::history::span_words(i64::from(w.minutes) * 60)
                ))
            }),
            window_open: window_until.is_some(),
            window_next: window
                .and_then(|w| w.next_start(now))
                .map(|t| Ago::new(t, now)),
            through,
            paused: s.paused,
            muted: s.muted,
            maintenance: until.is_some(),
            planned,
            after: s.notify_after.unwrap_or(3),
        }
    }
}

/// Mutes or unmutes a service, starts or ends its maintenance, sets or
/// removes its recurring maintenance window, or pauses or resumes it, from
/// its page: `action` is `mute`, `unmute`, `maintain` (with `hours`), `end`,
/// `window` (with `window_schedule`, `window_tz`, `window_minutes`),
/// `unwindow`, `pause` or `resume`.
async fn alerts_from_form(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
    form: FormResult,
) -> Page {
    let Form(values) = match form {
        Ok(f) => f,
        Err(e) => return Ok(bad_form(&e)),
    };
    let now = state.clock.now();
    let mut patch = lookout_proto::service::ServicePatch::default();
    match values.get("action").map(String::as_str) {
        Some("mute") => patch.muted = Some(Some(true)),
        Some("unmute") => patch.muted = Some(Some(false)),
        Some("maintain") => {
            let Some(hours) = values
                .get("hours")
                .and_then(|h| h.parse::<i64>().ok())
                .filter(|h| (1..=24 * 31).contains(h))
            else {
                return Ok(message(
                    StatusCode::BAD_REQUEST,
                    "Maintenance needs a length",
                    "Choose how many hours, from 1 to 744 (a month).",
                ));
            };
            // Empty `starts`: now; else a wall-clock time in the reader's
            // zone (`tz`, which the page's script fills in; UTC without it).
            let from = match values.get("starts").map(|s| s.trim()) {
                None | Some("") => None,
                Some(text) => {
                    let zone = values.get("tz").map_or("", String::as_str);
                    match lookout_proto::schedule::local_time(text, zone) {
                        Ok(t) if t > now => Some(t),
                        Ok(_) => {
                            return Ok(message(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "That maintenance window cannot be planned",
                                "Its start has passed: leave it empty to begin now.",
                            )
                        )}
                        Err(why) => {
                            return Ok(message(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "That maintenance window cannot be planned",
                                &format!("Start: {why}."),
                            )
                        )}
                    }
                }
            };
            patch.maintenance_from = Some(from);
            patch.maintenance_until =
                Some(Some(from.unwrap_or(now) + chrono::Duration::hours(hours)));
        }
        Some("end") => {
            patch.maintenance_until = Some(None);
            patch.maintenance_from = Some(None);
        }
        Some("window") => {
            let minutes = values
                .get("window_minutes")
                .and_then(|m| m.trim().parse::<u64>().ok());
            let body = json!({
                "schedule": values.get("window_schedule").map_or("", |s| s.trim()),
                "tz": values.get("window_tz").map_or("", |s| s.trim()),
                "minutes": minutes,
            });
            match lookout_proto::schedule::RecurringWindow::parse(&body) {
                Ok(w) => patch.maintenance_window = Some(Some(w)),
                Err((part, why)) => {
                    let part = match part {
                        "schedule" => "Schedule",
                        "tz" => "Time zone",
                        "minutes" => "Length",
                        _ => "Window",
                    };
                    return Ok(message(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "That maintenance window cannot be used",
                        &format!("{part}: {why}."),
                    ));
                }
            }
        }
        Some("unwindow") => patch.maintenance_window = Some(None),
        Some("pause") => patch.paused = Some(Some(true)),
        Some("resume") => patch.paused = Some(Some(false)),
        _ => {
            return Ok(message(
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "The form asks to mute, unmute, start or end maintenance, set or remove a recurring window, pause or resume.",
            )
        )}
    }
    Ok(match state.update_service(id, &patch).await? {
        Some(_) => Redirect::to(&format!("/services/{id}")).into_response(),
        None => no_such_service(),
    })
}

/// How long a run took, as people say it: `840 ms`, `4.2 s`, `3 min 5 s`,
/// `2 h 10 min`.
fn run_time(ms: u64) -> String {
    let secs = ms / 1000;
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// A push check as its service page shows it.
struct PushSection {
    /// "every day", or "on 0 3 * * * (Europe/Berlin)".
    expected: String,
    /// When the next ping is due, on a schedule, once one came.
    next: Option<Ago>,
    grace: String,
    /// The last ping.
    last: Option<Ago>,
    /// The status the last ping reported, and its message.
    said: Option<(String, String)>,
    /// How long the last run took.
    took: Option<String>,
    /// When the current run began.
    running: Option<Ago>,
}

impl PushSection {
    fn of(s: &Service, now: DateTime<Utc>) -> Option<PushSection> {
        let cron = s.push_cron();
        s.has_push_token.then(|| PushSection {
            expected: match &cron {
                Some(c) => format!("on the schedule {}", c.describe()),
                None => format!("every {}", amount(s.push_period_secs.unwrap_or(86_400)).1),
            },
            next: cron
                .as_ref()
                .and_then(|c| c.next_after(s.last_push.unwrap_or(now)))
                .map(|t| Ago::new(t, now)),
            grace: amount(s.push_grace_secs.unwrap_or(3600)).0,
            last: s.last_push.map(|t| Ago::new(t, now)),
            said: s.last_push.map(|_| {
                (
                    s.push_status.clone().unwrap_or_else(|| "OK".into()),
                    s.push_message.clone().unwrap_or_default(),
                )
            }),
            took: s.push_duration_ms.map(run_time),
            running: s.push_started_at.map(|t| Ago::new(t, now)),
        })
    }
}

/// A link to the service for people: its URL, when it is a web one.
fn web_link(s: &Service) -> Option<String> {
    s.base_url
        .clone()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
}

/// The check section of a service's page.
struct CheckSection {
    /// "HTTP(S): a web page or API"
    kind: &'static str,
    url: String,
    /// "every 60 s, every 10 s while failing, timeout 2 s"
    schedule: String,
    /// (condition, warns rather than fails)
    conditions: Vec<(String, bool)>,
    /// "2027-06-01 (183 days)", or how long ago it expired.
    certificate: Option<(String, &'static str)>,
    /// What passes without conditions, for this kind.
    default_rule: &'static str,
    /// A host check's host, for a link to its page.
    host_page: Option<String>,
    /// Whether its results have a response time (not a host's or a unit's
    /// usage).
    timed: bool,
}

impl CheckSection {
    fn of(
        s: &Service,
        own_host: &str,
        defaults: &crate::config::CheckDefaults,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Self> {
        let target = s.check_target()?;
        let kind = CHECK_KINDS
            .iter()
            .find(|(k, _)| *k == target.kind())
            .map_or("", |(_, label)| *label);
        let interval = s.interval(defaults).as_secs();
        let mut schedule = format!("every {interval} s");
        if let Some(retry) = s.retry_interval_secs.filter(|r| *r < interval) {
            schedule.push_str(&format!(", every {retry} s while failing"));
        }
        schedule.push_str(&format!(", timeout {} ms", s.timeout(defaults).as_millis()));
        let certificate = s.cert_expires_at.map(|at| {
            let days = (at - now).num_days();
            let (text, class) = if at < now {
                (format!("expired {} days ago", -days), "failure")
            } else if days < 14 {
                (format!("{days} days left"), "warning")
            } else {
                (format!("{days} days left"), "ok")
            };
            (format!("{} ({text})", at.format("%Y-%m-%d")), class)
        });
        let default_rule = match target.kind() {
            "http" => "the kind's own: it answers with an HTTP status from 200 to 399",
            "tls" => "the kind's own: the handshake completes and the certificate verifies",
            "dns" => "the kind's own: the resolver answers NOERROR",
            "icmp" => "the kind's own: a reply comes",
            "host" => "the kind's own: the host's figures are fresh",
            "usage" => "none: its unit's state, and the conditions on what it uses",
            _ => "the kind's own: it accepts the connection",
        };
        let host_page = match &target {
            lookout_proto::monitor::Target::Host { name } => {
                let name = if name == lookout_proto::monitor::OWN_HOST {
                    own_host
                } else {
                    name
                };
                Some(name.to_owned())
            }
            _ => None,
        };
        Some(Self {
            kind,
            default_rule,
            host_page,
            timed: !matches!(target.kind(), "host" | "usage"),
            // A check of the unit's usage has no URL: what it reads.
            url: s.check_url().unwrap_or_else(|| {
                s.unit
                    .clone()
                    .or_else(|| s.container.as_ref().map(|c| format!("container {c}")))
                    .map(|u| format!("{u}: what it uses"))
                    .unwrap_or_default()
            }),
            schedule,
            conditions: s
                .conditions
                .iter()
                .map(|c| {
                    (
                        c.expr().to_owned(),
                        c.on_fail() == lookout_proto::status::Status::Warning,
                    )
                })
                .collect(),
            certificate,
        })
    }
}

/// The systemd section of a service's page.
struct UnitSection {
    name: String,
    /// "active (running)"
    state: String,
    state_class: String,
    since: Option<Stamp>,
    main_pid: Option<u32>,
    pids: usize,
    /// "127.0.0.1:8080", with "(socket unit x.socket)" for socket activation.
    ports: Vec<String>,
    restarts: Option<u32>,
    /// How the last run ended, when not well.
    ending: Option<String>,
    file_state: Option<String>,
    /// The actions that apply to the unit's state and that lookout allows.
    actions: Vec<&'static str>,
    /// The last lines of its journal: (time, message), or why they are missing.
    log: Result<Vec<(String, String)>, String>,
}

/// What a service's unit uses: its figures now and its charts.
struct UsageSection {
    /// CPU, memory, tasks, IO, in words; `None` while it is not running.
    now: Option<[(&'static str, String); 4]>,
    memory_meter: Option<String>,
    range: &'static str,
    ranges: Vec<(&'static str, &'static str)>,
    cpu_chart: String,
    memory_chart: String,
}

impl UsageSection {
    async fn of(
        state: &AppState,
        service: &Service,
        range: crate::usage::UsageRange,
        now: DateTime<Utc>,
    ) -> Result<Option<Self>, StoreError> {
        use crate::usage::{bytes, figure_chart, percent, rate};
        let current = state.usage.service(service.id);
        if service.unit.is_none() && current.is_none() {
            return Ok(None);
        }
        let rows = crate::usage::unit_series(state.store.as_ref(), service.id, range, now).await?;
        if current.is_none() && rows.is_empty() {
            return Ok(None);
        }
        let host_memory = state.usage.own_memory_total();
        let figures = current.as_ref().map(|u| {
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "—".to_owned());
            [
                ("CPU", or_dash(u.cpu_percent.map(percent))),
                ("Memory", or_dash(u.memory_bytes.map(|m| bytes(m as f64)))),
                ("Tasks", or_dash(u.tasks.map(|t| t.to_string()))),
                (
                    "Disk IO",
                    match (u.io_read_bps, u.io_write_bps) {
                        (Some(r), Some(w)) => format!("read {} · written {}", rate(r), rate(w)),
                        _ => "—".to_owned(),
                    },
                ),
            ]
        });
        let memory_meter = current
            .as_ref()
            .and_then(|u| u.memory_bytes)
            .filter(|_| host_memory > 0)
            .map(|m| crate::usage::meter(lookout_proto::usage::percent(m, host_memory)));
        let cpu: Vec<_> = rows.iter().map(|r| (r.start, r.cpu)).collect();
        let memory: Vec<_> = rows.iter().map(|r| (r.start, r.memory)).collect();
        Ok(Some(UsageSection {
            now: figures,
            memory_meter,
            range: range.as_str(),
            ranges: crate::usage::UsageRange::ALL
                .iter()
                .map(|r| (r.as_str(), r.words()))
                .collect(),
            cpu_chart: figure_chart("CPU", &cpu, range, percent, 10.0, now),
            memory_chart: figure_chart("memory", &memory, range, bytes, 0.0, now),
        }))
    }
}

struct ContainerSection {
    name: String,
    image: String,
    /// "running · healthy"
    state: String,
    /// `active`, `failed` or `inactive`: how the state is coloured.
    state_class: &'static str,
    since: Option<Stamp>,
    ports: String,
    restarts: u32,
    /// "home / web"
    compose: Option<String>,
    /// What the last health check printed, when it fails.
    health_output: Option<String>,
    actions: Vec<&'static str>,
    /// The last lines it wrote: (time, stream, message), or why they are missing.
    log: Result<Vec<(String, &'static str, String)>, String>,
}

impl ContainerSection {
    async fn of(state: &AppState, service: &crate::store::Service) -> Option<Self> {
        let c = service.container_info.as_deref()?;
        let running = c.up();
        let actions = [
            (
                lookout_systemd::Action::Start,
                !running && c.state != "removed",
            ),
            (lookout_systemd::Action::Stop, running),
            (lookout_systemd::Action::Restart, c.state != "removed"),
        ]
        .into_iter()
        .filter(|(_, applies)| *applies)
        .map(|(action, _)| action.as_str())
        .collect();
        let log = match lookout_proto::container::ContainerName::parse(&c.name) {
            Ok(_) if c.state == "removed" => Err("the container is gone".to_owned()),
            Ok(name) => super::containers::read_logs(state, &name, 10)
                .await
                .map(|logs| {
                    logs.lines
                        .into_iter()
                        .map(|l| {
                            let time = l.time.map(|t| t.format("%H:%M:%S").to_string());
                            let stream = if l.priority == Some(3) {
                                "stderr"
                            } else {
                                "stdout"
                            };
                            (time.unwrap_or_default(), stream, l.message)
                        })
                        .collect()
                })
                .map_err(|e| e.body().message),
            Err(why) => Err(why.into()),
        };
        Some(ContainerSection {
            name: c.name.clone(),
            image: c.image.clone(),
            state: c.state_text(),
            state_class: c.state_class(),
            since: c.started_at.filter(|_| running).map(Stamp),
            ports: c.ports_text(),
            restarts: c.restarts,
            compose: c
                .compose_project
                .as_ref()
                .map(|p| match &c.compose_service {
                    Some(s) => format!("{p} / {s}"),
                    None => p.clone(),
                }),
            health_output: c
                .health_output
                .clone()
                .filter(|_| c.health.as_deref() == Some("unhealthy")),
            actions,
            log,
        })
    }
}

impl UnitSection {
    async fn of(state: &AppState, service: &crate::store::Service) -> Option<Self> {
        if service.server_id.is_some() {
            return None;
        }
        let name = service.unit.clone()?;
        // What systemd says now, when it answers; else what the registry holds.
        let live = match lookout_systemd::UnitName::parse(&name) {
            Ok(unit) => state
                .discovery
                .with(true, |s| {
                    let unit = unit.clone();
                    async move { s.status(&unit).await }
                })
                .await
                .ok(),
            Err(_) => None,
        };
        let mut service = service.clone();
        if let Some(live) = &live {
            service.set_unit_state(&crate::discovery::unit_state(live));
            service.unit_file_state = live.unit_file_state.clone();
        }
        let service = &service;
        let active = service
            .systemd_state
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let facts = service.unit_facts(state.clock.now());
        let actions = [
            (
                lookout_systemd::Action::Start,
                !matches!(active.as_str(), "active" | "activating" | "reloading"),
            ),
            (
                lookout_systemd::Action::Stop,
                matches!(active.as_str(), "active" | "activating" | "reloading"),
            ),
            (lookout_systemd::Action::Restart, active != "removed"),
        ]
        .into_iter()
        .filter(|(action, applies)| *applies && super::systemd::refusal(&name, *action).is_none())
        .map(|(action, _)| action.as_str())
        .chain(super::systemd::install_action(
            &name,
            service.unit_file_state.as_deref(),
        ))
        .collect();
        let log = if active == "removed" {
            Err("the unit is gone".to_owned())
        } else {
            super::systemd::read_logs(state, &name, 10)
                .await
                .map(|logs| {
                    logs.lines
                        .iter()
                        .map(|l| {
                            let time = l.time.map(|t| t.format("%H:%M:%S").to_string());
                            (time.unwrap_or_default(), l.message.clone())
                        })
                        .collect()
                })
                .map_err(|e| e.body().message)
        };
        Some(UnitSection {
            state: match service.sub_state.as_deref() {
                Some(sub) if !sub.is_empty() => format!("{active} ({sub})"),
                _ => active.clone(),
            },
            state_class: active,
            since: service
                .active_since
                .filter(|_| {
                    matches!(
                        service.systemd_state.as_deref(),
                        Some("active" | "reloading")
                    )
                })
                .map(Stamp),
            main_pid: service.main_pid,
            pids: service.pids.len(),
            ports: service
                .ports
                .iter()
                .map(|p| match &p.socket_unit {
                    Some(socket) => format!("{}:{} (socket unit {socket})", p.address, p.port),
                    None => format!("{}:{}", p.address, p.port),
                })
                .collect(),
            restarts: service.restarts,
            ending: facts.and_then(|f| f.ending()),
            file_state: service.unit_file_state.clone(),
            actions,
            log,
            name,
        })
    }
}

async fn detail_page(
    State(state): State<AppState>,
    Caller(who): Caller,
    ServiceId(id): ServiceId,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let Some(service) = state.registry.get(id).map(|e| e.service.clone()) else {
        return Ok(no_such_service());
    };
    let range = match q.get("range").map(String::as_str) {
        None | Some("") => Range::Day,
        Some(text) => match Range::parse(text) {
            Some(r) => r,
            None => {
                return Ok(message(
                    StatusCode::BAD_REQUEST,
                    "No such range",
                    "The chart shows 1h, 24h, 7d or 30d.",
                ))
            }
        },
    };
    let usage_range = match q.get("usage").map(String::as_str) {
        None | Some("") => crate::usage::UsageRange::Day,
        Some(text) => match crate::usage::UsageRange::parse(text) {
            Some(r) => r,
            None => {
                return Ok(message(
                    StatusCode::BAD_REQUEST,
                    "No such range",
                    "The usage charts show 1h, 24h, 7d, 30d or 90d.",
                ))
            }
        },
    };
    let unit = UnitSection::of(&state, &service).await;
    let container = ContainerSection::of(&state, &service).await;
    let now = state.clock.now();
    let usage = UsageSection::of(&state, &service, usage_range, now).await?;
    let uptime = state.registry.uptimes(id, now);
    let (events, checks, series, channels) = tokio::try_join!(
        state.store.status_events(Some(id), 200),
        state.store.health_history(id, 50),
        crate::history::latency_series(state.store.as_ref(), id, range, now),
        state.store.list_channels(),
    )?;
    let chart = ChartSection::of(&series, range, now);
    let incidents = crate::history::incidents(&events, now)
        .into_iter()
        .take(20)
        .map(|i| IncidentRow {
            start: Stamp(i.start),
            end: i.end.map(Stamp),
            lasted: crate::history::span_words(i.duration_secs),
            reason: i.reason,
        })
        .collect();
    let (server, results) = match service.server_id {
        None => (None, Vec::new()),
        Some(server_id) => {
            let loaded = tokio::try_join!(
                state.store.get_server(server_id),
                state.store.check_results(id, 50),
            );
            match loaded {
                Ok((server, results)) => (
                    server.map(|s| (s.id, s.name)),
                    results
                        .into_iter()
                        .map(|r| (Stamp(r.at), r.status.as_str(), r.message))
                        .collect(),
                ),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let (state_class, state_label) = label(service.state);
    let page = DetailPage {
        server,
        results,
        unit,
        container,
        usage,
        admin: who.is_admin(),
        id,
        name: service.name.clone(),
        href: web_link(&service),
        check: CheckSection::of(
            &service,
            state.usage.host_name(),
            &state.checks,
            state.clock.now(),
        ),
        from_file: service.from_file,
        push: PushSection::of(&service, now),
        alerts: AlertsSection::of(&service, now, &channels),
        deps: DepsSection::of(&state, &service),
        description: service.description.clone(),
        state_class,
        state_label,
        reason: service.state_reason.clone().unwrap_or_default(),
        since: service.state_since.map(Stamp),
        uptime_day: crate::history::percent(uptime.day),
        uptime_week: crate::history::percent(uptime.week),
        uptime_month: crate::history::percent(uptime.month),
        chart,
        incidents,
        has_checks: !checks.is_empty(),
        events: events
            .iter()
            .take(50)
            .map(|e| {
                (
                    Stamp(e.at),
                    label(e.old).1,
                    label(e.new).1,
                    e.reason.clone(),
                )
            })
            .collect(),
        checks: checks
            .iter()
            .rev()
            .map(|c| {
                (
                    Stamp(c.checked_at),
                    c.status.as_str(),
                    c.latency_ms
                        .map_or_else(|| "—".into(), |ms| format!("{ms} ms")),
                    c.error
                        .clone()
                        .or_else(|| c.warning.as_ref().map(|w| format!("warning: {w}")))
                        .or_else(|| c.response_code.map(|code| format!("HTTP {code}")))
                        .unwrap_or_default(),
                )
            })
            .collect(),
    };
    Ok(render(StatusCode::OK, &page))
}

// ---- Scan ------------------------------------------------------------------

#[derive(Clone)]
struct UnitRow {
    name: String,
    description: String,
    state: String,
    sub: String,
    ports: String,
    status: &'static str,
    configure_href: String,
}

struct TimerRow {
    name: String,
    schedule: String,
    last: String,
    next: String,
    unit: String,
    result: String,
    failed: bool,
}

#[derive(Template)]
#[template(path = "scan.html")]
struct ScanPage {
    /// `--systemd none`: nothing to scan, and nothing wrong.
    off: bool,
    /// A scan (this one or the last) is there to show.
    has_scan: bool,
    error: Option<String>,
    summary: Option<String>,
    warnings: Vec<String>,
    discovered: Vec<UnitRow>,
    all: Vec<UnitRow>,
    timers: Vec<TimerRow>,
    removed: Vec<String>,
    /// The container engine's containers by Compose project (`None`: no
    /// engine), or why they cannot be read.
    containers: Option<Result<Vec<ContainerGroup>, String>>,
}

/// The containers of one Compose project (`project` empty: of none).
struct ContainerGroup {
    project: String,
    rows: Vec<ContainerRow>,
}

struct ContainerRow {
    name: String,
    /// The registry's service (raw ones too): its controls and logs.
    service_id: Option<i64>,
    configured: bool,
    state: String,
    state_class: &'static str,
    image: String,
    ports: String,
    restarts: u32,
    compose_service: String,
    configure_href: String,
    running: bool,
}

/// The containers as the scan page groups them: by Compose project, those
/// of none last.
async fn container_groups(
    state: &AppState,
    host: &str,
) -> Option<Result<Vec<ContainerGroup>, String>> {
    if !state.containers.enabled() {
        return None;
    }
    let list = match super::containers::current(state).await {
        Ok(list) => list,
        Err(e) => return Some(Err(e.body().message)),
    };
    let mut groups: std::collections::BTreeMap<(bool, String), Vec<ContainerRow>> =
        std::collections::BTreeMap::new();
    for entry in list.containers {
        let c = entry.container;
        let mut prefill = vec![("name", c.name.clone())];
        if let Some(port) = c.web_port() {
            let scheme = if port == 443 { "https" } else { "http" };
            prefill.push(("base_url", format!("{scheme}://{host}:{port}")));
        }
        let project = c.compose_project.clone().unwrap_or_default();
        let row = ContainerRow {
            configured: entry.registry_status.as_deref() == Some("configured"),
            service_id: entry.service_id,
            state: c.state_text(),
            state_class: c.state_class(),
            running: c.up(),
            image: c.image.clone(),
            ports: c.ports_text(),
            restarts: c.restarts,
            compose_service: c.compose_service.clone().unwrap_or_default(),
            configure_href: format!(
                "/services/new?{}",
                serde_urlencoded::to_string(&prefill).unwrap_or_default()
            ),
            name: c.name,
        };
        groups
            .entry((project.is_empty(), project))
            .or_default()
            .push(row);
    }
    Some(Ok(groups
        .into_iter()
        .map(|((_, project), rows)| ContainerGroup { project, rows })
        .collect()))
}

/// The host part the browser used to reach the hub, for pre-filled URLs.
fn request_host(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    if !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
    {
        host.to_owned()
    } else {
        "localhost".to_owned()
    }
}

fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "never".into(), |t| relative(t, now))
}

fn unit_row(s: &lookout_proto::service::ServiceView, host: &str, ports_unknown: bool) -> UnitRow {
    let unit = s.unit.clone().unwrap_or_else(|| s.name.clone());
    let state_name = s.systemd_state.clone().unwrap_or_default();
    let running = !matches!(state_name.as_str(), "inactive" | "failed");
    let mut ports: Vec<u16> = s.ports.iter().map(|p| p.port).collect();
    ports.dedup();
    let ports = if !ports.is_empty() {
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    } else if ports_unknown {
        "unknown".into()
    } else if running {
        "none".into()
    } else {
        "—".into()
    };
    let mut prefill = vec![("name", unit.clone())];
    if let Some(d) = &s.description {
        prefill.push(("description", d.clone()));
    }
    if let Some(port) = s.port {
        prefill.push(("port", port.to_string()));
        let scheme = if port == 443 { "https" } else { "http" };
        prefill.push(("base_url", format!("{scheme}://{host}:{port}")));
    }
    UnitRow {
        name: unit,
        description: s.description.clone().unwrap_or_default(),
        state: state_name,
        sub: s.sub_state.clone().unwrap_or_default(),
        ports,
        status: s.status.as_str(),
        configure_href: format!(
            "/services/new?{}",
            serde_urlencoded::to_string(&prefill).unwrap_or_default()
        ),
    }
}

async fn scan_page(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let (result, error, status) = match state.scans().recent_scan().await {
        Ok(r) => (Some(r), None, StatusCode::OK),
        Err(crate::discovery::DiscoveryError::Disabled) => (None, None, StatusCode::OK),
        Err(e) => {
            tracing::warn!(error = %e, "scan failed");
            let last = state.scans().last_scan().await.ok().flatten();
            let status = match e {
                crate::discovery::DiscoveryError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (last, Some(e.to_string()), status)
        }
    };
    let host = request_host(&headers);
    let now = state.clock.now();
    let mut page = ScanPage {
        off: state.discovery.scope().is_none(),
        has_scan: result.is_some(),
        error,
        summary: None,
        warnings: Vec::new(),
        discovered: Vec::new(),
        all: Vec::new(),
        timers: Vec::new(),
        removed: Vec::new(),
        containers: container_groups(&state, &host).await,
    };
    if let Some(r) = result {
        // The units systemd has now: the count matches the list below it
        // (units gone are listed apart).
        let present = r
            .services
            .iter()
            .filter(|s| s.systemd_state.as_deref() != Some("removed"))
            .count();
        page.summary = Some(format!(
            "{} {} scanned {}: {} new, {} updated, {} gone, in {} ms.",
            present,
            if r.scope == "user" {
                "user services"
            } else {
                "services"
            },
            relative(r.scanned_at, now),
            r.discovered,
            r.updated,
            r.removed,
            r.duration_ms
        ));
        let ports_unknown = !r.warnings.is_empty();
        page.warnings = r.warnings;
        for s in &r.services {
            if s.systemd_state.as_deref() == Some("removed") {
                let unit = s.unit.clone().unwrap_or_else(|| s.name.clone());
                page.removed.push(format!("{unit} ({})", s.status.as_str()));
                continue;
            }
            let row = unit_row(s, &host, ports_unknown);
            if s.status == RegistryStatus::Discovered {
                let mut shown = row.clone();
                if let Some(p) = s.port {
                    shown.ports = p.to_string();
                }
                page.discovered.push(shown);
            }
            page.all.push(row);
        }
        page.timers = r
            .timers
            .iter()
            .filter(|t| !t.removed)
            .map(|t| TimerRow {
                name: t.name.clone(),
                schedule: t.schedule.join("; "),
                last: when(t.last_trigger, now),
                next: when(t.next_elapse, now),
                unit: t.unit.clone(),
                result: match (&t.last_result, t.last_exit_status) {
                    (None, _) => "not run yet".into(),
                    (Some(r), Some(code)) if code != 0 => format!("{r} (status {code})"),
                    (Some(r), _) => r.clone(),
                },
                failed: t.failed,
            })
            .collect();
    }
    render(status, &page)
}

async fn cleanup_from_form(State(state): State<AppState>) -> Response {
    match state.registry.delete_removed().await {
        Ok(_) => Redirect::to("/scan").into_response(),
        Err(e) => store_failure(&e),
    }
}

// ---- Control and logs -------------------------------------------------------

pub(crate) fn api_error_page(e: &crate::error::ApiError) -> Response {
    let body = e.body();
    message(e.status(), "That did not work", &body.message)
}

async fn control_from_form(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let actor = super::systemd::Actor {
        who: &who,
        client: &client,
    };
    // From the service's page: back to it, with the new state.
    let to_service = (q.get("back").is_some_and(|b| b == "service") && id.parse::<i64>().is_ok())
        .then(|| format!("/services/{id}"));
    if let Some(enable) = match action.as_str() {
        "enable" => Some(true),
        "disable" => Some(false),
        _ => None,
    } {
        return Ok(
            match super::systemd::install(&state, &id, enable, actor).await {
                Ok(_) => Redirect::to(to_service.as_deref().unwrap_or("/scan")).into_response(),
                Err(e) => api_error_page(&e),
            },
        );
    }
    let Some(action) = lookout_systemd::Action::parse(&action) else {
        return Ok(message(
            StatusCode::NOT_FOUND,
            "Not found",
            "Unknown action: use start, stop, restart, enable or disable.",
        ));
    };
    Ok(
        match super::systemd::control(&state, &id, action, actor).await {
            Ok(_) if to_service.is_some() => {
                Redirect::to(to_service.as_deref().unwrap_or("/")).into_response()
            }
            Ok(super::systemd::Controlled::Unit(outcome)) => {
                let q = serde_urlencoded::to_string([
                    ("control", action.as_str()),
                    ("unit", outcome.unit.as_str()),
                    ("result", outcome.job_result.as_str()),
                    ("state", outcome.status.active_state.as_str()),
                    ("sub", outcome.status.sub_state.as_str()),
                ])
                .unwrap_or_default();
                Redirect::to(&format!("/?{q}")).into_response()
            }
            Ok(super::systemd::Controlled::Container(_)) => {
                Redirect::to(to_service.as_deref().unwrap_or("/scan")).into_response()
            }
            Err(e) => api_error_page(&e),
        },
    )
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    unit: String,
    target: String,
    lines: u32,
    entries: Vec<(String, String)>,
    error: Option<String>,
}

async fn logs_page(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lines = match super::systemd::lines_param(&q) {
        Ok(n) => n,
        Err(e) => return api_error_page(&e),
    };
    match super::systemd::read_logs(&state, &id, lines).await {
        Ok(logs) => render(
            StatusCode::OK,
            &LogsPage {
                unit: logs.unit,
                target: id,
                lines,
                entries: logs
                    .lines
                    .into_iter()
                    .map(|e| {
                        let t = e
                            .time
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default();
                        (t, e.message)
                    })
                    .collect(),
                error: None,
            },
        ),
        Err(e) => api_error_page(&e),
    }
}

// ---- Service form ---------------------------------------------------------

struct FormField {
    key: &'static str,
    label: &'static str,
    kind: &'static str,
    value: String,
    required: bool,
    placeholder: Option<&'static str>,
    hint: Option<&'static str>,
    options: &'static [(&'static str, &'static str)],
    /// The check kinds the field is for (space-separated); empty: all.
    kinds: &'static str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "form.html")]
struct FormPage {
    title: String,
    action: String,
    submit: &'static str,
    fields: Vec<FormField>,
    /// The settings most services leave alone, folded away.
    more: Vec<FormField>,
    /// Whether they show unfolded: one has a value or an error.
    more_open: bool,
    errors_summary: String,
    /// The channels it may notify: (id, name, ticked); none ticked is every
    /// channel.
    channels: Vec<(i64, String, bool)>,
    /// The services it may depend on: (id, name, ticked).
    services: Vec<(i64, String, bool)>,
    /// What is wrong with the services ticked (a cycle, one gone).
    depends_error: Option<String>,
}

/// What the form offers to choose from: the notification channels, and
/// the services it may depend on.
struct Choices {
    channels: Vec<(i64, String)>,
    services: Vec<(i64, String)>,
}

/// The form's choices; `except`: the service being edited (it cannot
/// depend on itself).
async fn channel_choices(state: &AppState, except: Option<i64>) -> Choices {
    let channels = match state.store.list_channels().await {
        Ok(channels) => channels.into_iter().map(|c| (c.id, c.name)).collect(),
        Err(e) => {
            tracing::warn!(error = ?e, "cannot list the channels for the form");
            Vec::new()
        }
    };
    let services = state
        .registry
        .list(&crate::registry::ListFilter::configured())
        .into_iter()
        .filter(|e| Some(e.service.id) != except)
        .map(|e| (e.service.id, e.service.name.clone()))
        .collect();
    Choices { channels, services }
}

/// The fields folded under "More settings".
const MORE: &[&str] = &[
    "http_method",
    "http_accepted_codes",
    "http_headers",
    "http_body",
    "http_follow_redirects",
    "tls_skip_verify",
    "tls_ca_pem",
    "port",
    "retry_interval_secs",
    "check_timeout_ms",
    "start_period_secs",
    "notify_after",
    "heal_after",
    "heal_unit",
    "heal_max_per_hour",
];

/// The value a folded field has when nobody touched it.
fn is_default(key: &str, value: &str) -> bool {
    value.trim().is_empty()
        || matches!(
            (key, value),
            ("http_method", "GET") | ("http_follow_redirects", "yes") | ("tls_skip_verify", "no")
        )
}

/// One input of the service form.
struct FieldSpec {
    key: &'static str,
    label: &'static str,
    /// `text`, `url`, `number`, `select` or `textarea`.
    kind: &'static str,
    required: bool,
    placeholder: Option<&'static str>,
    hint: Option<&'static str>,
    options: &'static [(&'static str, &'static str)],
    kinds: &'static str,
}

const fn spec(
    key: &'static str,
    label: &'static str,
    kind: &'static str,
    placeholder: Option<&'static str>,
    hint: Option<&'static str>,
) -> FieldSpec {
    FieldSpec {
        key,
        label,
        kind,
        required: false,
        placeholder,
        hint,
        options: &[],
        kinds: "",
    }
}

/// The kinds of check, by the URL scheme they use.
const CHECK_KINDS: &[(&str, &str)] = &[
    ("http", "HTTP(S): a web page or API"),
    ("tcp", "TCP: a port accepts connections"),
    ("tls", "TLS: a handshake and its certificate"),
    ("icmp", "Ping (ICMP)"),
    ("dns", "DNS: a record a resolver answers"),
    ("host", "Host: CPU, memory, disk and load"),
    ("usage", "Usage: what its unit uses"),
    ("push", "Push: a cron job or script pings the hub"),
];

/// The checks the hub runs itself (every kind but push).
const POLLED: &str = "http tcp tls icmp dns host usage";

/// The checks with a URL.
const WITH_URL: &str = "http tcp tls icmp dns host";

const METHODS: &[(&str, &str)] = &[
    ("GET", "GET"),
    ("HEAD", "HEAD"),
    ("POST", "POST"),
    ("PUT", "PUT"),
    ("PATCH", "PATCH"),
    ("DELETE", "DELETE"),
    ("OPTIONS", "OPTIONS"),
];

const RECORD_TYPES: &[(&str, &str)] = &[
    ("A", "A"),
    ("AAAA", "AAAA"),
    ("CNAME", "CNAME"),
    ("MX", "MX"),
    ("NS", "NS"),
    ("PTR", "PTR"),
    ("SOA", "SOA"),
    ("SRV", "SRV"),
    ("TXT", "TXT"),
    ("CAA", "CAA"),
];

/// A condition line that starts with this fails as WARNING.
const WARN_PREFIX: &str = "warn:";

/// The fields of the form, in order.
const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        required: true,
        ..spec(
            "name",
            "Service name",
            "text",
            Some("grafana.service"),
            None,
        )
    },
    spec(
        "description",
        "Description",
        "text",
        Some("What it is for"),
        None,
    ),
    spec(
        "tags",
        "Tags",
        "text",
        Some("media, home lab"),
        Some("Comma-separated labels to filter the dashboard by."),
    ),
    FieldSpec {
        options: CHECK_KINDS,
        ..spec(
            "check",
            "Check",
            "select",
            None,
            Some("How the hub checks it, by the URL's scheme."),
        )
    },
    FieldSpec {
        kinds: WITH_URL,
        ..spec(
            "base_url",
            "URL",
            "text",
            Some("http://192.168.1.10:3000"),
            Some("http(s)://host/path, tcp://host:port, tls://host:port, icmp://host, dns://resolver or host://name (a host on the Hosts page; host://localhost is the hub's). Without a scheme, the check's is used. The name on the dashboard links here."),
        )
    },
    FieldSpec {
        kinds: "push",
        ..spec(
            "push_period",
            "Expected every",
            "text",
            Some("1d"),
            Some("How often the job runs: 15m, 6h, 1d. Empty: a day."),
        )
    },
    FieldSpec {
        kinds: "push",
        ..spec(
            "push_grace",
            "Grace time",
            "text",
            Some("1h"),
            Some("How late a ping may be before the service fails: 10m, 1h. Empty: an hour."),
        )
    },
    FieldSpec {
        kinds: "push",
        ..spec(
            "push_schedule",
            "Cron schedule",
            "text",
            Some("0 3 * * *"),
            Some("Instead of the period: when the job runs, as its crontab says (minute hour day month weekday). Empty: the period."),
        )
    },
    FieldSpec {
        kinds: "push",
        ..spec(
            "push_tz",
            "Time zone",
            "text",
            Some("UTC"),
            Some("The schedule's time zone, as an IANA name: Europe/Berlin, America/New_York. Empty: UTC."),
        )
    },
    FieldSpec {
        kinds: "http",
        ..spec(
            "health_endpoint",
            "Health endpoint",
            "text",
            Some("/health"),
            Some("A path added to the URL for the check. Empty: the URL itself."),
        )
    },
    FieldSpec {
        kinds: "dns",
        ..spec("dns_name", "Name to look up", "text", Some("nas.home.lan"), None)
    },
    FieldSpec {
        kinds: "dns",
        options: RECORD_TYPES,
        ..spec("dns_type", "Record type", "select", None, None)
    },
    FieldSpec {
        kinds: "http",
        options: METHODS,
        ..spec("http_method", "Method", "select", None, None)
    },
    FieldSpec {
        kinds: "http",
        ..spec(
            "http_accepted_codes",
            "Accepted status codes",
            "text",
            Some("200-399"),
            Some("Codes and ranges, comma-separated. Empty: 200-399."),
        )
    },
    FieldSpec {
        kinds: "http",
        ..spec(
            "http_headers",
            "Request headers",
            "textarea",
            Some("Authorization: Bearer …"),
            Some("One per line, Name: value. Credentials are shown as ******** and kept."),
        )
    },
    FieldSpec {
        kinds: "http",
        ..spec("http_body", "Request body", "textarea", None, None)
    },
    FieldSpec {
        kinds: "http",
        options: &[("yes", "Follow redirects"), ("no", "Do not follow redirects")],
        ..spec("http_follow_redirects", "Redirects", "select", None, None)
    },
    FieldSpec {
        kinds: "http tls",
        options: &[("no", "Verify the certificate"), ("yes", "Skip verification")],
        ..spec("tls_skip_verify", "Certificate", "select", None, None)
    },
    FieldSpec {
        kinds: "http tls",
        ..spec(
            "tls_ca_pem",
            "Trusted CA (PEM)",
            "textarea",
            Some("-----BEGIN CERTIFICATE-----"),
            Some("A private CA to trust beside the system's."),
        )
    },
    FieldSpec {
        kinds: POLLED,
        ..spec(
            "conditions",
            "Conditions",
            "textarea",
            Some("[STATUS] == 200\n[BODY].status == UP\nwarn: [CERTIFICATE_EXPIRATION] > 336h"),
            Some("One per line, in Gatus's syntax: [STATUS], [BODY] and a JSON path, [RESPONSE_TIME], [CONNECTED], [CERTIFICATE_EXPIRATION], [DNS_RCODE]; pat(*word*), any(a, b), len(), has(). What the unit uses: [CPU_PERCENT], [MEMORY] (e.g. < 1GiB), [MEMORY_PERCENT], [TASKS]; a host's: [DISK_PERCENT], [DISK_FULL_IN] (e.g. > 7d), [LOAD]. End a line with for 5m to hold it; start it with warn: to make it a warning."),
        )
    },
    spec("port", "Port", "number", Some("3000"), None),
    FieldSpec {
        kinds: POLLED,
        ..spec(
            "check_interval_secs",
            "Check interval (seconds)",
            "number",
            None,
            Some("Empty: the hub's default."),
        )
    },
    spec(
        "retry_interval_secs",
        "Retry interval while failing (seconds)",
        "number",
        None,
        Some("A failing check is repeated this often until it passes. Empty: the check interval."),
    ),
    spec(
        "check_timeout_ms",
        "Check timeout (milliseconds)",
        "number",
        None,
        Some("Empty: the hub's default."),
    ),
    spec(
        "start_period_secs",
        "Start period (seconds)",
        "number",
        Some("30"),
        Some("Failed checks this long after it starts show as starting, not as a failure. Empty: none."),
    ),
    spec(
        "notify_after",
        "Alert after (failed checks in a row)",
        "number",
        Some("3"),
        Some("A failed unit, a missed heartbeat or a late ping alerts at once. Empty: the hub's default (3)."),
    ),
    spec(
        "heal_after",
        "Restart after failed checks",
        "number",
        Some("3"),
        Some("Self-healing: after this many failed checks in a row, restart the unit. Empty: never."),
    ),
    spec(
        "heal_unit",
        "Unit to restart",
        "text",
        Some("its own unit"),
        Some("On the service's host (an agent's server for its checks, under the agent's --allow-control)."),
    ),
    spec(
        "heal_max_per_hour",
        "Restarts an hour, at most",
        "number",
        Some("3"),
        Some("Past this, it alerts and stops trying until it recovers."),
    ),
];

/// The line of the conditions box that holds condition `i` (blank lines
/// count, as the box shows them).
fn condition_line(text: Option<&String>, i: usize) -> usize {
    text.and_then(|t| {
        t.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .nth(i)
            .map(|(n, _)| n + 1)
    })
    .unwrap_or(i + 1)
}

/// The form field an API error belongs to, and its message as shown there
/// (`values`: what the form sent).
fn place_error<'e>(e: &'e FieldError, values: &HashMap<String, String>) -> (&'e str, String) {
    let message = capitalize(&e.message);
    if let Some(i) = e
        .field
        .strip_prefix("conditions[")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|i| i.parse::<usize>().ok())
    {
        let line = condition_line(values.get("conditions"), i);
        return ("conditions", format!("Line {line}: {}", e.message));
    }
    let key = match e.field.as_str() {
        "url" => "base_url",
        "http" if e.message.starts_with("method") => "http_method",
        "http" if e.message.starts_with("body") => "http_body",
        "http" if e.message.contains("accepted") => "http_accepted_codes",
        "http" => "http_headers",
        "heal" if e.message.contains("max_per_hour") => "heal_max_per_hour",
        "heal" if e.message.starts_with("unit") => "heal_unit",
        "heal" => "heal_after",
        "tls" => "tls_ca_pem",
        "dns" if e.message.starts_with("type") => "dns_type",
        "dns" => "dns_name",
        other => other,
    };
    (key, message)
}

fn form_page(
    title: String,
    action: String,
    submit: &'static str,
    values: &HashMap<String, String>,
    errors: &[FieldError],
    choices: Choices,
) -> FormPage {
    let ticked = |prefix: &str, list: Vec<(i64, String)>| -> Vec<(i64, String, bool)> {
        list.into_iter()
            .map(|(id, name)| {
                let ticked = values.contains_key(&format!("{prefix}-{id}"));
                (id, name, ticked)
            })
            .collect()
    };
    let channels = ticked("channel", choices.channels);
    let services = ticked("depends", choices.services);
    let placed: Vec<(&str, String)> = errors.iter().map(|e| place_error(e, values)).collect();
    let (more, fields): (Vec<FormField>, Vec<FormField>) = FIELDS
        .iter()
        .map(|f| FormField {
            key: f.key,
            label: f.label,
            kind: f.kind,
            value: values.get(f.key).cloned().unwrap_or_default(),
            required: f.required,
            placeholder: f.placeholder,
            hint: f.hint,
            options: f.options,
            kinds: f.kinds,
            error: placed
                .iter()
                .filter(|(key, _)| *key == f.key)
                .map(|(_, m)| m.clone())
                .reduce(|a, b| format!("{a}; {b}")),
        })
        .partition(|f| MORE.contains(&f.key));
    let depends_error = placed
        .iter()
        .filter(|(key, _)| *key == "depends_on")
        .map(|(_, m)| m.clone())
        .reduce(|a, b| format!("{a}; {b}"));
    let more_open = channels.iter().any(|c| c.2)
        || services.iter().any(|c| c.2)
        || depends_error.is_some()
        || more
            .iter()
            .any(|f| f.error.is_some() || !is_default(f.key, &f.value));
    let unplaced: Vec<String> = placed
        .iter()
        .filter(|(key, _)| !FIELDS.iter().any(|f| f.key == *key) && *key != "depends_on")
        .map(|(key, m)| format!("{key}: {m}"))
        .collect();
    let errors_summary = if errors.is_empty() {
        String::new()
    } else if unplaced.is_empty() {
        "Please correct the highlighted fields.".to_owned()
    } else {
        format!("Please correct: {}", unplaced.join("; "))
    };
    FormPage {
        title,
        action,
        submit,
        fields,
        more,
        more_open,
        errors_summary,
        channels,
        services,
        depends_error,
    }
}

pub(crate) fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The check kind of a URL as typed: its scheme's, if it has one.
fn kind_of_url(url: &str) -> Option<&'static str> {
    let scheme = url.split_once("://")?.0.to_ascii_lowercase();
    CHECK_KINDS
        .iter()
        .map(|(k, _)| *k)
        .find(|k| *k == scheme || (*k == "http" && scheme == "https"))
}

fn values_of(s: &Service) -> HashMap<String, String> {
    let mut v = HashMap::new();
    v.insert("name".into(), s.name.clone());
    let opt = |x: Option<String>| x.unwrap_or_default();
    v.insert("description".into(), opt(s.description.clone()));
    v.insert("tags".into(), s.tags.join(", "));
    for id in &s.channels {
        v.insert(format!("channel-{id}"), "on".into());
    }
    for id in &s.depends_on {
        v.insert(format!("depends-{id}"), "on".into());
    }
    if let Some(heal) = &s.heal {
        v.insert("heal_after".into(), heal.after.to_string());
        v.insert("heal_unit".into(), opt(heal.unit.clone()));
        v.insert("heal_max_per_hour".into(), heal.max_per_hour.to_string());
    }
    v.insert("base_url".into(), opt(s.base_url.clone()));
    let check = match s.base_url.as_deref() {
        None if s.has_push_token => "push",
        None if s.check_target() == Some(lookout_proto::monitor::Target::Usage) => "usage",
        url => url.and_then(kind_of_url).unwrap_or("http"),
    };
    v.insert("check".into(), check.to_owned());
    if s.has_push_token {
        v.insert(
            "push_period".into(),
            span(s.push_period_secs.unwrap_or(86_400)),
        );
        v.insert("push_grace".into(), span(s.push_grace_secs.unwrap_or(3600)));
        if let Some(expr) = &s.push_schedule {
            v.insert("push_schedule".into(), expr.clone());
            v.insert("push_tz".into(), s.push_tz.clone().unwrap_or_default());
        }
    }
    v.insert("health_endpoint".into(), opt(s.health_endpoint.clone()));
    v.insert("port".into(), opt(s.port.map(|p| p.to_string())));
    for (key, value) in [
        ("check_interval_secs", s.check_interval_secs),
        ("retry_interval_secs", s.retry_interval_secs),
        ("check_timeout_ms", s.check_timeout_ms),
        ("start_period_secs", s.start_period_secs),
        ("notify_after", s.notify_after),
    ] {
        v.insert(key.into(), opt(value.map(|p| p.to_string())));
    }
    if let Some(http) = &s.probe.http {
        v.insert("http_method".into(), opt(http.method.clone()));
        v.insert("http_accepted_codes".into(), http.accepted_codes.join(", "));
        let headers: Vec<String> = http
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if lookout_proto::service::is_secret_header(name) {
                    lookout_proto::service::HIDDEN
                } else {
                    value
                };
                format!("{name}: {shown}")
            })
            .collect();
        v.insert("http_headers".into(), headers.join("\n"));
        v.insert("http_body".into(), opt(http.body.clone()));
        v.insert(
            "http_follow_redirects".into(),
            if http.follow_redirects == Some(false) {
                "no"
            } else {
                "yes"
            }
            .into(),
        );
    }
    if let Some(tls) = &s.probe.tls {
        v.insert("tls_ca_pem".into(), opt(tls.ca_pem.clone()));
        v.insert(
            "tls_skip_verify".into(),
            if tls.skip_verify { "yes" } else { "no" }.into(),
        );
    }
    if let Some(dns) = &s.probe.dns {
        v.insert("dns_name".into(), dns.name.clone());
        v.insert("dns_type".into(), dns.record_type.clone());
    }
    let lines: Vec<String> = s
        .conditions
        .iter()
        .map(|c| {
            if c.on_fail() == lookout_proto::status::Status::Warning {
                format!("{WARN_PREFIX} {}", c.expr())
            } else {
                c.expr().to_owned()
            }
        })
        .collect();
    v.insert("conditions".into(), lines.join("\n"));
    v
}

/// The simple inputs: one JSON field each.
const PLAIN: &[&str] = &[
    "name",
    "description",
    "base_url",
    "health_endpoint",
    "port",
    "check_interval_secs",
    "retry_interval_secs",
    "check_timeout_ms",
    "start_period_secs",
    "notify_after",
];

/// Turns form values into the JSON object the API validator takes, so the form
/// and the API share one set of rules. Empty inputs mean "not set" (on
/// create) or "cleared" (on edit). What cannot be written as JSON at all (a
/// header line without a colon, a URL whose scheme is not the chosen
/// check's) is an error of its own.
fn form_to_json(
    form: &HashMap<String, String>,
    keep_empty_as_null: bool,
) -> (Map<String, Value>, Vec<FieldError>) {
    let mut map = Map::new();
    let mut errors = Vec::new();
    let get = |key: &str| form.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let kind = get("check").unwrap_or("http");
    let unset = |map: &mut Map<String, Value>, key: &str| {
        if keep_empty_as_null {
            map.insert(key.into(), Value::Null);
        }
    };
    for &key in PLAIN {
        if matches!(kind, "push" | "usage") && matches!(key, "base_url" | "health_endpoint") {
            // Pinged, or its unit's usage: no URL.
            unset(&mut map, key);
            continue;
        }
        let Some(raw) = form.get(key) else { continue };
        let raw = raw.trim();
        if raw.is_empty() {
            if key == "name" {
                map.insert(key.into(), Value::String(String::new()));
            } else {
                unset(&mut map, key);
            }
            continue;
        }
        let numeric = FIELDS.iter().any(|f| f.key == key && f.kind == "number");
        let value = if numeric {
            raw.parse::<u64>().map_or_else(
                |_| Value::String(raw.to_owned()),
                |n| Value::Number(n.into()),
            )
        } else if key == "base_url" {
            match kind_of_url(raw) {
                None if !raw.contains("://") => Value::String(format!("{kind}://{raw}")),
                Some(k) if k != kind && form.contains_key("check") => {
                    errors.push(FieldError::new(
                        "base_url",
                        format!("is a {k} URL, but the check is {kind}: choose the check, or write {kind}://..."),
                    ));
                    continue;
                }
                _ => Value::String(raw.to_owned()),
            }
        } else {
            Value::String(raw.to_owned())
        };
        map.insert(key.into(), value);
    }
    if kind != "http" && map.contains_key("health_endpoint") {
        unset(&mut map, "health_endpoint");
        if !keep_empty_as_null {
            map.remove("health_endpoint");
        }
    }

    // HTTP settings, for HTTP checks.
    let mut http = Map::new();
    if kind == "http" {
        if let Some(m) = get("http_method").filter(|m| *m != "GET") {
            http.insert("method".into(), Value::String(m.to_owned()));
        }
        if let Some(codes) = get("http_accepted_codes") {
            let codes: Vec<Value> = codes
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| Value::String(c.to_owned()))
                .collect();
            http.insert("accepted_codes".into(), Value::Array(codes));
        }
        if let Some(lines) = get("http_headers") {
            let mut headers = Map::new();
            for (i, line) in lines.lines().map(str::trim).enumerate() {
                if line.is_empty() {
                    continue;
                }
                match line.split_once(':') {
                    Some((name, value)) => {
                        headers.insert(
                            name.trim().to_owned(),
                            Value::String(value.trim().to_owned()),
                        );
                    }
                    None => errors.push(FieldError::new(
                        "http",
                        format!("header line {}: write Name: value", i + 1),
                    )),
                }
            }
            http.insert("headers".into(), Value::Object(headers));
        }
        if let Some(body) = get("http_body") {
            http.insert("body".into(), Value::String(body.to_owned()));
        }
        if get("http_follow_redirects") == Some("no") {
            http.insert("follow_redirects".into(), Value::Bool(false));
        }
    }
    if http.is_empty() {
        unset(&mut map, "http");
    } else {
        map.insert("http".into(), Value::Object(http));
    }

    // Trust, for HTTP(S) and TLS checks.
    let mut tls = Map::new();
    if matches!(kind, "http" | "tls") {
        if let Some(pem) = get("tls_ca_pem") {
            tls.insert("ca_pem".into(), Value::String(pem.to_owned()));
        }
        if get("tls_skip_verify") == Some("yes") {
            tls.insert("skip_verify".into(), Value::Bool(true));
        }
    }
    if tls.is_empty() {
        unset(&mut map, "tls");
    } else {
        map.insert("tls".into(), Value::Object(tls));
    }

    // The question, for DNS checks.
    match (kind, get("dns_name")) {
        ("dns", Some(name)) => {
            map.insert(
                "dns".into(),
                json!({"name": name, "type": get("dns_type").unwrap_or("A")}),
            );
        }
        _ => unset(&mut map, "dns"),
    }

    // Tags, comma-separated.
    let tags: Vec<Value> = get("tags")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Value::String(t.to_owned()))
        .collect();
    if tags.is_empty() {
        unset(&mut map, "tags");
    } else {
        map.insert("tags".into(), Value::Array(tags));
    }

    // Conditions, one per line.
    let conditions: Vec<Value> = (kind != "push")
        .then(|| form.get("conditions"))
        .flatten()
        .map(String::as_str)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| match line.strip_prefix(WARN_PREFIX) {
            Some(expr) => json!({"expr": expr.trim(), "on_fail": "WARNING"}),
            None => Value::String(line.to_owned()),
        })
        .collect();
    if conditions.is_empty() {
        unset(&mut map, "conditions");
    } else {
        map.insert("conditions".into(), Value::Array(conditions));
    }
    // The channels ticked (none is every channel), and the services.
    for (prefix, key) in [("channel-", "channels"), ("depends-", "depends_on")] {
        let ids = ticked_ids(form, prefix);
        if !ids.is_empty() || keep_empty_as_null {
            map.insert(key.into(), Value::Array(ids));
        }
    }
    // Self-healing: a rule once "restart after" is filled in.
    match get("heal_after") {
        None if get("heal_unit").is_some() || get("heal_max_per_hour").is_some() => {
            errors.push(FieldError::new(
                "heal_after",
                "is needed for a healing rule: after how many failed checks",
            ))
        }
        None => unset(&mut map, "heal"),
        Some(after) => {
            let number = |text: &str| {
                text.parse::<u64>()
                    .map_or_else(|_| json!(text), Value::from)
            };
            let mut heal = json!({
                "after": number(after),
                "max_per_hour": number(get("heal_max_per_hour").unwrap_or("3")),
            });
            if let Some(unit) = get("heal_unit") {
                heal["unit"] = json!(unit);
            }
            map.insert("heal".into(), heal);
        }
    }
    (map, errors)
}

/// The ids of the boxes ticked whose names start with `prefix`, in order.
pub(crate) fn ticked_ids(form: &HashMap<String, String>, prefix: &str) -> Vec<Value> {
    let mut ids: Vec<i64> = form
        .keys()
        .filter_map(|k| k.strip_prefix(prefix)?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.into_iter().map(Value::from).collect()
}

async fn new_form(
    State(state): State<AppState>,
    Query(prefill): Query<HashMap<String, String>>,
) -> Response {
    render(
        StatusCode::OK,
        &form_page(
            "Add a service".into(),
            "/services/new".into(),
            "Add service",
            &prefill,
            &[],
            channel_choices(&state, None).await,
        ),
    )
}

pub(crate) type FormResult =
    Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>;

pub(crate) fn bad_form(e: &axum::extract::rejection::FormRejection) -> Response {
    message(
        StatusCode::BAD_REQUEST,
        "Could not read the form",
        &e.body_text(),
    )
}

/// A name clash becomes a message next to the field; anything else is a failure.
fn conflict_fields(e: StoreError) -> Result<Vec<FieldError>, StoreError> {
    match e {
        StoreError::Conflict { field, value } => Ok(vec![FieldError::new(
            field,
            format!("{value:?} is already taken by another service"),
        )]),
        StoreError::Invalid(field) => Ok(vec![field]),
        other => Err(other),
    }
}

/// Whether the form asks for a push check.
fn is_push(values: &HashMap<String, String>) -> bool {
    values.get("check").map(|c| c.trim()) == Some("push")
}

/// The push timing the form asks for, `(period, grace)` in seconds; each
/// bad value is an error on its field.
fn push_timing(
    values: &HashMap<String, String>,
    errors: &mut Vec<FieldError>,
) -> lookout_proto::push::PushTiming {
    let mut read = |key: &'static str, default: u64| {
        let Some(raw) = values.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            return default;
        };
        match lookout_config::parse_duration(raw).map(|d| d.as_secs()) {
            Ok(secs) if super::heartbeat::PUSH_TIMING_SECS.contains(&secs) => secs,
            Ok(_) => {
                errors.push(FieldError::new(
                    key,
                    "must be from a minute (1m) to a year (365d)",
                ));
                default
            }
            Err(_) => {
                errors.push(FieldError::new(
                    key,
                    format!("{raw:?} is not a time: write 15m, 6h or 1d"),
                ));
                default
            }
        }
    };
    let (period_secs, grace_secs) = (read("push_period", 86_400), read("push_grace", 3600));
    let schedule = super::heartbeat::cron_schedule(
        values.get("push_schedule").map(String::as_str),
        values.get("push_tz").map(String::as_str),
        ("push_schedule", "push_tz"),
        errors,
    );
    lookout_proto::push::PushTiming {
        period_secs,
        grace_secs,
        schedule,
    }
}

/// A number of seconds in words, in its largest whole unit, and the word
/// alone for one of it: (`a day`, `day`), (`2 hours`, `2 hours`).
fn amount(secs: u64) -> (String, String) {
    let (n, one, unit, article) = match secs {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day", "days", "a"),
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour", "hours", "an"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute", "minutes", "a"),
        s => (s, "second", "seconds", "a"),
    };
    if n == 1 {
        (format!("{article} {one}"), one.to_owned())
    } else {
        (format!("{n} {unit}"), format!("{n} {unit}"))
    }
}

/// A number of seconds as the push form writes it: `1d`, `6h`, `15m`, `90s`.
fn span(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[derive(Template)]
#[template(path = "push_url.html")]
struct PushUrlPage {
    id: i64,
    name: String,
    url: String,
    /// `day`, `2 hours`: what "every" is followed by.
    every: String,
    /// `a day`, `2 hours`.
    period: String,
    grace: String,
    /// `0 3 * * * (Europe/Berlin)`, on a schedule.
    schedule: Option<String>,
}

/// The page that shows a new push URL, the one time it is known.
fn push_url_page(state: &AppState, client: &Client, id: i64, token: &str) -> Response {
    let Some(service) = state.registry.get(id).map(|e| e.service.clone()) else {
        return no_such_service();
    };
    let period = service.push_period_secs.unwrap_or(86_400);
    render(
        StatusCode::OK,
        &PushUrlPage {
            id,
            name: service.name.clone(),
            url: super::heartbeat::push_url(client, token),
            every: amount(period).1,
            period: amount(period).0,
            grace: amount(service.push_grace_secs.unwrap_or(3600)).0,
            schedule: service
                .push_cron()
                .map(|c| format!("{} ({})", c.expr(), c.zone())),
        },
    )
}

/// Gives a service a new push URL: the old one stops working.
async fn new_push_url_from_form(
    State(state): State<AppState>,
    Remote(client): Remote,
    ServiceId(id): ServiceId,
) -> Response {
    let Some(service) = state.registry.get(id).map(|e| e.service.clone()) else {
        return no_such_service();
    };
    let timing = lookout_proto::push::PushTiming {
        period_secs: service.push_period_secs.unwrap_or(86_400),
        grace_secs: service.push_grace_secs.unwrap_or(3600),
        schedule: service.push_cron(),
    };
    match super::heartbeat::new_push_token(&state, id, &timing).await {
        Ok(Some(token)) => push_url_page(&state, &client, id, &token),
        Ok(None) => no_such_service(),
        Err(e) => api_error_page(&e),
    }
}

async fn create_from_form(
    State(state): State<AppState>,
    Remote(client): Remote,
    form: FormResult,
) -> Page {
    let Form(values) = match form {
        Ok(f) => f,
        Err(e) => return Ok(bad_form(&e)),
    };
    let (body, mut errors) = form_to_json(&values, false);
    let push = is_push(&values);
    let timing = push_timing(&values, &mut errors);
    let parsed = parse_new_service(&body);
    let errors = match parsed {
        Ok(_) if !errors.is_empty() => errors,
        Ok(new) => match state.create_service(&new).await {
            Ok(service) if push => {
                return Ok(
                    match super::heartbeat::new_push_token(&state, service.id, &timing).await {
                        Ok(Some(token)) => push_url_page(&state, &client, service.id, &token),
                        outcome => {
                            // No half-made push check: the service goes too.
                            let _ = state.delete_service(service.id).await;
                            match outcome {
                                Err(e) => api_error_page(&e),
                                Ok(_) => no_such_service(),
                            }
                        }
                    },
                );
            }
            Ok(_) => return Ok(Redirect::to("/?notice=created").into_response()),
            Err(e) => (conflict_fields(e))?,
        },
        Err(more) => {
            errors.extend(more);
            errors
        }
    };
    Ok(render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &form_page(
            "Add a service".into(),
            "/services/new".into(),
            "Add service",
            &values,
            &errors,
            channel_choices(&state, None).await,
        ),
    ))
}

async fn edit_form(State(state): State<AppState>, ServiceId(id): ServiceId) -> Response {
    match state.registry.get(id).map(|e| e.service.clone()) {
        Some(s) if s.from_file => message(
            StatusCode::CONFLICT,
            &format!("{} is declared in the monitors file", s.name),
            "Change it in the file: the hub follows the file and applies the change within a second.",
        ),
        Some(s) => render(
            StatusCode::OK,
            &form_page(
                format!("Edit {}", s.name),
                format!("/services/{id}/edit"),
                "Save changes",
                &values_of(&s),
                &[],
                channel_choices(&state, Some(id)).await,
            ),
        ),
        None => no_such_service(),
    }
}

async fn update_from_form(
    State(state): State<AppState>,
    Remote(client): Remote,
    ServiceId(id): ServiceId,
    form: FormResult,
) -> Page {
    let Form(values) = match form {
        Ok(f) => f,
        Err(e) => return Ok(bad_form(&e)),
    };
    let (body, mut errors) = form_to_json(&values, true);
    let push = is_push(&values);
    let timing = push_timing(&values, &mut errors);
    let parsed = parse_service_patch(&body);
    let errors = match parsed {
        Ok(_) if !errors.is_empty() => errors,
        Ok(patch) => match state.update_service(id, &patch).await {
            Ok(Some(service)) if push => {
                // A push check keeps its URL; one made a push check now gets one.
                let done = if service.has_push_token {
                    state
                        .registry
                        .set_push_token(id, None, &timing)
                        .await
                        .map_err(crate::error::ApiError::from)
                        .and(Ok(None))
                } else {
                    super::heartbeat::new_push_token(&state, id, &timing).await
                };
                if service.has_push_token {
                    state.registry.reconcile(id, state.clock.now()).await?;
                }
                return Ok(match done {
                    Ok(Some(token)) => push_url_page(&state, &client, id, &token),
                    Ok(None) => Redirect::to("/?notice=updated").into_response(),
                    Err(e) => api_error_page(&e),
                });
            }
            Ok(Some(_)) => return Ok(Redirect::to("/?notice=updated").into_response()),
            Ok(None) => return Ok(no_such_service()),
            Err(e) => (conflict_fields(e))?,
        },
        Err(more) => {
            errors.extend(more);
            errors
        }
    };
    let title = values
        .get("name")
        .map_or_else(|| "Edit service".to_owned(), |n| format!("Edit {n}"));
    Ok(render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &form_page(
            title,
            format!("/services/{id}/edit"),
            "Save changes",
            &values,
            &errors,
            channel_choices(&state, Some(id)).await,
        ),
    ))
}

async fn delete_from_form(
    State(state): State<AppState>,
    Caller(who): Caller,
    Remote(client): Remote,
    ServiceId(id): ServiceId,
) -> Response {
    if let Some(service) = state.registry.get(id).map(|e| e.service.clone()) {
        let actor = super::systemd::Actor {
            who: &who,
            client: &client,
        };
        // A managed app goes whole: stopped, its unit file removed.
        match super::systemd::delete_app_of(&state, actor, &service).await {
            Some(Ok(())) => return Redirect::to("/?notice=deleted").into_response(),
            Some(Err(e)) => return api_error_page(&e),
            None => {}
        }
    }
    match state.delete_service(id).await {
        Ok(true) => Redirect::to("/?notice=deleted").into_response(),
        Ok(false) => no_such_service(),
        Err(e) => store_failure(&e),
    }
}

async fn check_from_form(State(state): State<AppState>, ServiceId(id): ServiceId) -> Response {
    let Some(service) = state.registry.get(id).map(|e| e.service.clone()) else {
        return no_such_service();
    };
    match state.check_now(&service).await {
        Ok(_) => Redirect::to(&format!("/services/{id}")).into_response(),
        Err(e) => store_failure(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_timing_in_words_and_back() {
        assert_eq!(amount(86_400), ("a day".to_owned(), "day".to_owned()));
        assert_eq!(amount(7200), ("2 hours".to_owned(), "2 hours".to_owned()));
        assert_eq!(amount(600).0, "10 minutes");
        assert_eq!(amount(90).0, "90 seconds");
        for secs in [60, 90, 600, 3600, 5400, 86_400, 172_800] {
            let form: HashMap<String, String> = [("push_period".to_owned(), span(secs))].into();
            let mut errors = Vec::new();
            assert_eq!(
                push_timing(&form, &mut errors).period_secs,
                secs,
                "{}",
                span(secs)
            );
            assert!(errors.is_empty());
        }
        let form: HashMap<String, String> = [
            ("push_period".to_owned(), "30s".to_owned()),
            ("push_grace".to_owned(), "later".to_owned()),
        ]
        .into();
        let mut errors = Vec::new();
        push_timing(&form, &mut errors);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["push_period", "push_grace"]);
        // A cron schedule in a zone; mistakes named on their field.
        let form: HashMap<String, String> = [
            ("push_schedule".to_owned(), "0 3 * * *".to_owned()),
            ("push_tz".to_owned(), "Europe/Berlin".to_owned()),
        ]
        .into();
        let mut errors = Vec::new();
        let timing = push_timing(&form, &mut errors);
        let schedule = timing.schedule.expect("a schedule");
        assert_eq!(
            (schedule.expr(), schedule.zone()),
            ("0 3 * * *", "Europe/Berlin")
        );
        let form: HashMap<String, String> =
            [("push_schedule".to_owned(), "0 3 * *".to_owned())].into();
        let mut errors = Vec::new();
        push_timing(&form, &mut errors);
        assert_eq!(errors[0].field, "push_schedule");
        assert_eq!(run_time(840), "840 ms");
        assert_eq!(run_time(4_200), "4.2 s");
        assert_eq!(run_time(185_000), "3 min 5 s");
        assert_eq!(run_time(7_800_000), "2 h 10 min");
    }

    #[test]
    fn empty_form_fields_are_unset_on_create_and_cleared_on_edit() {
        let form: HashMap<String, String> =
            [("name", "web"), ("port", ""), ("health_endpoint", " ")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let (create, _) = form_to_json(&form, false);
        assert_eq!(create.len(), 1);
        let (edit, _) = form_to_json(&form, true);
        assert_eq!(edit.get("port"), Some(&Value::Null));
        assert_eq!(edit.get("health_endpoint"), Some(&Value::Null));
    }

    #[test]
    fn non_numeric_port_reaches_the_validator_as_a_string() {
        let form: HashMap<String, String> = [("name", "web"), ("port", "eighty")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let errors = parse_new_service(&form_to_json(&form, false).0).unwrap_err();
        assert_eq!(errors[0].field, "port");
    }
}
