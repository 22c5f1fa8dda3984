//! Public status pages and badges, and their administration.
//!
//! `/status/{slug}` and the badges under `/badge/…` are public even on a hub
//! that requires sign-in: they show names, states, uptime and incidents and
//! nothing else. A page is rendered at most once per [`FRESH_FOR`] and kept
//! as bytes with its `ETag`, so a crowd of readers costs the hub a map
//! lookup each. Administrators manage pages from `/status-pages` and
//! `/api/status-pages`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use bytes::Bytes;
use lookout_proto::status_page::{parse_status_page, StatusPageSpec, StatusPageView};
use lookout_proto::FieldError;
use serde_json::{Map, Value};

use super::extract::{Checked, PathText};
use super::table::Routes;
use super::ui::{bad_form, message, render, store_failure, FormResult, Page};
use super::when::stamp;
use super::AppState;
use crate::auth::Access;
use crate::badge;
use crate::error::ApiError;
use crate::openapi::{doc, Answer, Doc};
use crate::registry::Coding;
use crate::status_page::{public_status, shown, PublicState, PublicStatus};
use crate::store::{StatusPageRow, StoreError};

/// How long a rendered page, and the list of pages, is served as is.
pub const FRESH_FOR: Duration = Duration::from_secs(10);
/// What readers and caches in between are told.
const CACHE_CONTROL: &str = "public, max-age=30";

pub fn api_routes(r: Routes) -> Routes {
    r.get("/status-pages", Access::Viewer, list)
        .doc(doc(
            "Status pages",
            "status pages",
            Answer::Many("StatusPageView"),
        ))
        .post("/status-pages", Access::Admin, create)
        .doc(Doc {
            body: Some("StatusPageRequest"),
            ..doc(
                "Add a public status page (shown at /status/{slug})",
                "status pages",
                Answer::Created("StatusPageView"),
            )
        })
        .get("/status-pages/{id}", Access::Viewer, one)
        .doc(doc(
            "One status page",
            "status pages",
            Answer::One("StatusPageView"),
        ))
        .put("/status-pages/{id}", Access::Admin, replace)
        .doc(Doc {
            body: Some("StatusPageRequest"),
            ..doc(
                "Replace a status page",
                "status pages",
                Answer::One("StatusPageView"),
            )
        })
        .delete("/status-pages/{id}", Access::Admin, remove)
        .doc(doc("Remove a status page", "status pages", Answer::Empty))
}

pub fn page_routes(r: Routes) -> Routes {
    r.get("/status/{slug}", Access::Public, public_page)
        .get("/status/{slug}/badge", Access::Public, page_badge)
        .get("/badge/{service}/health", Access::Public, health_badge)
        .get(
            "/badge/{service}/uptime/{window}",
            Access::Public,
            uptime_badge,
        )
        .get(
            "/badge/{service}/response-time/{window}",
            Access::Public,
            response_badge,
        )
        .get("/status-pages", Access::Viewer, pages_list)
        .post("/status-pages", Access::Admin, create_from_form)
        .get("/status-pages/new", Access::Admin, new_form)
        .get("/status-pages/{id}/edit", Access::Admin, edit_form)
        .post("/status-pages/{id}/edit", Access::Admin, update_from_form)
        .post("/status-pages/{id}/delete", Access::Admin, delete_from_form)
}

// ---- The cache ----------------------------------------------------------------

#[derive(Clone)]
struct Rendered {
    at: Instant,
    /// A digest of what the page says, its time of making aside.
    content: [u8; 32],
    etag: String,
    html: Bytes,
    /// The page gzipped and in brotli, made once per render: readers'
    /// browsers ask for one, and compressing per request would be the
    /// crowd's cost.
    gzip: Bytes,
    brotli: Bytes,
    state: PublicState,
}

/// Mean response times by service and window, with when each was read.
type Latencies = HashMap<(i64, &'static str), (Instant, Option<f64>)>;

/// Rendered pages and the list of pages, each kept for [`FRESH_FOR`].
#[derive(Default)]
pub struct PublicCache {
    pages: Mutex<Option<(Instant, Arc<Pages>)>>,
    rendered: Mutex<HashMap<String, Arc<Rendered>>>,
    /// One reader reads the pages again, and one renders, while the others
    /// wait for what it makes: a crowd arriving as the cache goes stale
    /// costs one query and one render.
    reading: tokio::sync::Mutex<()>,
    rendering: tokio::sync::Mutex<()>,
    /// Mean response times over a badge's window (from the hourly rollups
    /// beyond a day), per shown service and window.
    latencies: Mutex<Latencies>,
}

/// Every status page, and the services they show (those with public
/// badges), as of one read.
struct Pages {
    list: Vec<StatusPageView>,
    /// The shown services, by id and by name.
    ids: std::collections::HashSet<i64>,
    shown: HashMap<String, i64>,
}

impl PublicCache {
    /// Forgets everything: a page was added, changed or removed here.
    pub fn forget(&self) {
        *crate::sync::lock(&self.pages) = None;
        crate::sync::lock(&self.rendered).clear();
        crate::sync::lock(&self.latencies).clear();
    }

    fn fresh_pages(&self) -> Option<Arc<Pages>> {
        crate::sync::lock(&self.pages)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH_FOR)
            .map(|(_, pages)| pages.clone())
    }

    async fn pages(&self, state: &AppState) -> Result<Arc<Pages>, StoreError> {
        if let Some(pages) = self.fresh_pages() {
            return Ok(pages);
        }
        let _one = self.reading.lock().await;
        if let Some(pages) = self.fresh_pages() {
            return Ok(pages);
        }
        let list = state.store.list_status_pages().await?;
        let shown: HashMap<String, i64> = list
            .iter()
            .flat_map(|p| shown(&state.registry, p))
            .map(|s| (s.name, s.id))
            .collect();
        let ids = shown.values().copied().collect();
        let pages = Arc::new(Pages { list, ids, shown });
        *crate::sync::lock(&self.pages) = Some((Instant::now(), pages.clone()));
        Ok(pages)
    }

    async fn rendered(
        &self,
        state: &AppState,
        slug: &str,
    ) -> Result<Option<Arc<Rendered>>, StoreError> {
        let fresh = || {
            crate::sync::lock(&self.rendered)
                .get(slug)
                .filter(|r| r.at.elapsed() < FRESH_FOR)
                .cloned()
        };
        if let Some(r) = fresh() {
            return Ok(Some(r));
        }
        let _one = self.rendering.lock().await;
        if let Some(r) = fresh() {
            return Ok(Some(r));
        }
        let pages = self.pages(state).await?;
        let Some(page) = pages.list.iter().find(|p| p.slug == slug) else {
            return Ok(None);
        };
        let status = public_status(&state.registry, page, state.clock.now());
        // What the page says, but for when it was made: the same content
        // keeps its bytes and its ETag, so readers' revalidations are 304s.
        let mut timeless = PublicStatus {
            at: chrono::DateTime::UNIX_EPOCH,
            ..status.clone()
        };
        for i in timeless.incidents.iter_mut().filter(|i| i.end.is_none()) {
            i.duration_secs = 0;
        }
        let content = sha(serde_json::to_string(&timeless)
            .unwrap_or_default()
            .as_bytes());
        let previous = crate::sync::lock(&self.rendered).get(slug).cloned();
        if let Some(previous) = previous.filter(|p| p.content == content) {
            let kept = Arc::new(Rendered {
                at: Instant::now(),
                ..Rendered::clone(&previous)
            });
            crate::sync::lock(&self.rendered).insert(slug.to_owned(), kept.clone());
            return Ok(Some(kept));
        }
        let html = match (PublicPage { s: &status }).render() {
            Ok(html) => Bytes::from(html),
            Err(e) => {
                tracing::error!(error = %e, "status page failed to render");
                return Err(StoreError::Stopped("the status page template"));
            }
        };
        let rendered = Arc::new(Rendered {
            at: Instant::now(),
            content,
            etag: format!("\"{}\"", &hex::encode(sha(&html))[..16]),
            gzip: Coding::Gzip.compress(&html),
            brotli: Coding::Brotli.compress(&html),
            html,
            state: status.state,
        });
        crate::sync::lock(&self.rendered).insert(slug.to_owned(), rendered.clone());
        Ok(Some(rendered))
    }

    /// A service's mean response time over `range`, read at most every
    /// [`FRESH_FOR`] (the badge is public: its readers must not cost a
    /// query each).
    async fn mean_latency(
        &self,
        state: &AppState,
        id: i64,
        range: crate::history::Range,
    ) -> Result<Option<f64>, StoreError> {
        let key = (id, range.as_str());
        let fresh = || {
            crate::sync::lock(&self.latencies)
                .get(&key)
                .filter(|(at, _)| at.elapsed() < FRESH_FOR)
                .map(|(_, mean)| *mean)
        };
        if let Some(mean) = fresh() {
            return Ok(mean);
        }
        let _one = self.reading.lock().await;
        if let Some(mean) = fresh() {
            return Ok(mean);
        }
        let buckets =
            crate::history::latency_series(state.store.as_ref(), id, range, state.clock.now())
                .await?;
        let (sum, values) = buckets.iter().fold((0.0, 0u64), |(s, n), b| {
            (s + b.sum, n + u64::from(b.values))
        });
        let mean = (values > 0).then(|| sum / values as f64);
        crate::sync::lock(&self.latencies).insert(key, (Instant::now(), mean));
        Ok(mean)
    }

    /// The shown service a badge names, by id or name: a map lookup,
    /// whatever the number of services.
    async fn public(&self, state: &AppState, key: &str) -> Result<Option<i64>, StoreError> {
        let pages = self.pages(state).await?;
        Ok(match key.parse::<i64>() {
            Ok(id) => pages.ids.contains(&id).then_some(id),
            Err(_) => pages.shown.get(key).copied(),
        })
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

// ---- Public pages ----------------------------------------------------------

#[derive(Template)]
#[template(path = "status_page.html")]
struct PublicPage<'a> {
    s: &'a PublicStatus,
}

impl PublicPage<'_> {
    fn percent(ratio: &Option<f64>) -> String {
        crate::history::percent(*ratio)
    }

    fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
        stamp(*t)
    }

    fn lasted(secs: &i64) -> String {
        crate::history::span_words(*secs)
    }

    /// A day's bar class: how good the day was.
    fn shade(ratio: &Option<f64>) -> &'static str {
        match ratio {
            None => "none",
            Some(r) if *r >= 0.999 => "up",
            Some(r) if *r >= 0.95 => "some",
            Some(_) => "down",
        }
    }
}

#[derive(Template)]
#[template(path = "status_missing.html")]
struct MissingPage;

fn cached(headers: &HeaderMap, etag: &str, content_type: &'static str, body: Bytes) -> Response {
    let etag_value = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""));
    let common = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ),
        (header::ETAG, etag_value),
    ];
    if super::api::if_none_match(headers, etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

fn missing() -> Response {
    match MissingPage.render() {
        Ok(html) => (StatusCode::NOT_FOUND, Html(html)).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such status page").into_response(),
    }
}

async fn public_page(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Page {
    let Some(r) = state.public.rendered(&state, &slug).await? else {
        return Ok(missing());
    };
    const HTML: &str = "text/html; charset=utf-8";
    let coding = super::api::preferred_coding(&headers);
    let (tag, body) = match coding {
        None => (r.etag.clone(), r.html.clone()),
        Some(Coding::Gzip) => (super::api::coded_tag(&r.etag, Coding::Gzip), r.gzip.clone()),
        Some(Coding::Brotli) => (
            super::api::coded_tag(&r.etag, Coding::Brotli),
            r.brotli.clone(),
        ),
    };
    let mut response = cached(&headers, &tag, HTML, body);
    let sent = response.status() == StatusCode::OK;
    let h = response.headers_mut();
    if let (Some(coding), true) = (coding, sent) {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.as_str()),
        );
    }
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(response)
}

fn svg_response(headers: &HeaderMap, svg: String) -> Response {
    let etag = format!("\"{}\"", &hex::encode(sha(svg.as_bytes()))[..16]);
    cached(headers, &etag, "image/svg+xml", Bytes::from(svg))
}

/// A badge's label: `?label=` (one line, at most 40 characters) or the default.
fn label(q: &HashMap<String, String>, default: &str) -> String {
    q.get("label")
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && l.chars().count() <= 40 && !l.contains(char::is_control))
        .unwrap_or(default)
        .to_owned()
}

fn state_colour(state: PublicState) -> &'static str {
    match state {
        PublicState::Operational => badge::colour::BRIGHT_GREEN,
        PublicState::Degraded => badge::colour::YELLOW,
        PublicState::Down => badge::colour::RED,
        PublicState::Maintenance => badge::colour::BLUE,
        PublicState::Unknown => badge::colour::GREY,
    }
}

async fn page_badge(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match state.public.rendered(&state, &slug).await {
        Ok(Some(r)) => svg_response(
            &headers,
            badge::svg(
                &label(&q, "status"),
                r.state.as_str(),
                state_colour(r.state),
            ),
        ),
        Ok(None) => no_badge(),
        Err(e) => store_failure(&e),
    }
}

fn no_badge() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "image/svg+xml")],
        badge::svg("badge", "not found", badge::colour::GREY),
    )
        .into_response()
}

/// The service a badge is about, by id or name, if a status page shows it.
async fn badge_service(
    state: &AppState,
    key: &str,
) -> Result<Option<crate::store::Service>, StoreError> {
    Ok(state
        .public
        .public(state, key)
        .await?
        .and_then(|id| state.registry.get(id))
        .map(|e| e.service.clone()))
}

/// The window a badge covers: `24h`, `7d` or `30d`.
fn window(text: &str) -> Option<chrono::Duration> {
    match text {
        "24h" | "1d" => Some(chrono::Duration::hours(24)),
        "7d" => Some(chrono::Duration::days(7)),
        "30d" => Some(chrono::Duration::days(30)),
        _ => None,
    }
}

/// A service's badge: `make` gives its message and colour; `label` is
/// the left side unless `?label=` says otherwise. Unknown services, and
/// those no status page shows, get the "not found" badge.
async fn service_badge(
    state: &AppState,
    key: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    make: impl FnOnce(&crate::store::Service) -> (String, String, &'static str),
) -> Response {
    match badge_service(state, key).await {
        Ok(Some(s)) => {
            let (default_label, message, colour) = make(&s);
            svg_response(
                headers,
                badge::svg(&label(q, &default_label), &message, colour),
            )
        }
        Ok(None) => no_badge(),
        Err(e) => store_failure(&e),
    }
}

async fn health_badge(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let now = state.clock.now();
    service_badge(&state, &key, &q, &headers, |s| {
        let public = PublicState::of(
            s.state,
            crate::status_page::maintenance_until(s, now).is_some(),
        );
        (
            s.name.clone(),
            public.as_str().to_owned(),
            state_colour(public),
        )
    })
    .await
}

async fn uptime_badge(
    State(state): State<AppState>,
    Path((key, win)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(span) = window(&win) else {
        return no_badge();
    };
    let now = state.clock.now();
    service_badge(&state, &key, &q, &headers, |s| {
        let (initial, changes) = state.registry.timeline(s.id);
        let (text, colour) =
            match crate::history::uptime_between(initial, &changes, now - span, now) {
                Some(r) => (
                    crate::history::percent(Some(r)).replace(' ', ""),
                    badge::uptime_colour(r),
                ),
                None => ("no data".to_owned(), badge::colour::GREY),
            };
        (format!("uptime {win}"), text, colour)
    })
    .await
}

async fn response_badge(
    State(state): State<AppState>,
    Path((key, win)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Page {
    let range = match win.as_str() {
        "24h" | "1d" => crate::history::Range::Day,
        "7d" => crate::history::Range::Week,
        "30d" => crate::history::Range::Month,
        _ => return Ok(no_badge()),
    };
    let Some(id) = state.public.public(&state, &key).await? else {
        return Ok(no_badge());
    };
    let mean = state.public.mean_latency(&state, id, range).await?;
    Ok(service_badge(&state, &key, &q, &headers, |_| {
        let (text, colour) = match mean {
            None => ("no data".to_owned(), badge::colour::GREY),
            Some(mean) => (format!("{mean:.0} ms"), badge::latency_colour(mean)),
        };
        (format!("response time {win}"), text, colour)
    })
    .await)
}

// ---- The API -------------------------------------------------------------

fn page_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::BadRequest(
            format!("{raw:?} is not a status page id"),
            vec![FieldError::new("id", "must be a positive integer")],
        )
    })
}

fn no_page(id: i64) -> ApiError {
    ApiError::NotFound(format!("no status page with id {id}"))
}

/// A page's services resolved to ids: every name that is no service is
/// reported at once.
fn resolve(state: &AppState, spec: StatusPageSpec) -> Result<StatusPageRow, ApiError> {
    let all = state
        .registry
        .services(&crate::registry::ListFilter::default());
    let services = crate::status_page::resolve(&all, &spec.services).map_err(|unknown| {
        ApiError::Validation(vec![FieldError::new(
            "services",
            format!("no such service: {}", unknown.join(", ")),
        )])
    })?;
    Ok(StatusPageRow {
        slug: spec.slug,
        title: spec.title,
        description: spec.description,
        services,
        tags: spec.tags,
        notice: spec.notice,
    })
}

fn slug_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { value, .. } => ApiError::Conflict(FieldError::new(
            "slug",
            format!("a status page at /status/{value} exists already"),
        )),
        other => other.into(),
    }
}

async fn save(
    state: &AppState,
    id: Option<i64>,
    body: &Map<String, Value>,
) -> Result<StatusPageView, ApiError> {
    let row = resolve(
        state,
        parse_status_page(body).map_err(ApiError::Validation)?,
    )?;
    let now = state.clock.now();
    let saved = match id {
        None => state
            .store
            .create_status_page(&row, now)
            .await
            .map_err(slug_taken)?,
        Some(id) => state
            .store
            .update_status_page(id, &row, now)
            .await
            .map_err(slug_taken)?
            .ok_or_else(|| no_page(id))?,
    };
    state.public.forget();
    Ok(saved)
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<StatusPageView>>, ApiError> {
    Ok(Json(state.store.list_status_pages().await?))
}

async fn one(
    State(state): State<AppState>,
    PathText(id): PathText,
) -> Result<Json<StatusPageView>, ApiError> {
    let id = page_id(&id)?;
    state
        .store
        .list_status_pages()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .map(Json)
        .ok_or_else(|| no_page(id))
}

/// `POST /api/status-pages` and `PUT .../{id}`: a public status page. At
/// least one service or tag.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusPageRequest {
    /// Its address, /status/SLUG: 1 to 64 lowercase letters, digits and
    /// dashes (not "badge" or "new").
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub slug: String,
    /// One line of at most 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub title: String,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// The services shown, by id or name.
    #[schema(max_items = 500)]
    pub services: Option<Vec<lookout_proto::depends::ServiceRef>>,
    /// Every service with one of these tags is shown too (at most 20).
    #[schema(max_items = 20)]
    pub tags: Option<Vec<String>>,
    /// A notice shown above the services.
    #[schema(max_length = 1000)]
    pub notice: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    Checked(body, _): Checked<StatusPageRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let page = save(&state, None, &body).await?;
    let location = format!("/api/status-pages/{}", page.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(page),
    ))
}

async fn replace(
    State(state): State<AppState>,
    PathText(id): PathText,
    Checked(body, _): Checked<StatusPageRequest>,
) -> Result<Json<StatusPageView>, ApiError> {
    let id = page_id(&id)?;
    Ok(Json(save(&state, Some(id), &body).await?))
}

async fn remove(
    State(state): State<AppState>,
    PathText(id): PathText,
) -> Result<StatusCode, ApiError> {
    let id = page_id(&id)?;
    if state.store.delete_status_page(id).await? {
        state.public.forget();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_page(id))
    }
}

// ---- Administration pages ---------------------------------------------------

struct PageRow {
    id: i64,
    slug: String,
    title: String,
    shows: String,
}

#[derive(Template)]
#[template(path = "status_pages.html")]
struct PagesList {
    pages: Vec<PageRow>,
    notice: Option<&'static str>,
}

/// A service to tick on the form.
struct Choice {
    id: i64,
    name: String,
    ticked: bool,
}

#[derive(Template)]
#[template(path = "status_page_form.html")]
struct PageForm {
    /// `None`: a new page.
    id: Option<i64>,
    form: HashMap<String, String>,
    choices: Vec<Choice>,
    errors: Vec<FieldError>,
    problem: Option<String>,
}

impl PageForm {
    fn value(&self, key: &str) -> &str {
        self.form.get(key).map_or("", String::as_str)
    }

    fn error(&self, key: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == key || e.field.starts_with(&format!("{key}[")))
            .map(|e| e.message.as_str())
    }
}

async fn pages_list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let pages = state.store.list_status_pages().await?;
    let rows = pages
        .iter()
        .map(|p| {
            let n = shown(&state.registry, p).len();
            let mut shows = match n {
                1 => "1 service".to_owned(),
                n => format!("{n} services"),
            };
            if !p.tags.is_empty() {
                shows.push_str(&format!(" (tagged {})", p.tags.join(", ")));
            }
            PageRow {
                id: p.id,
                slug: p.slug.clone(),
                title: p.title.clone(),
                shows,
            }
        })
        .collect();
    let notice = match q.get("notice").map(String::as_str) {
        Some("saved") => Some("Status page saved."),
        Some("deleted") => Some("Status page deleted."),
        _ => None,
    };
    Ok(render(
        StatusCode::OK,
        &PagesList {
            pages: rows,
            notice,
        },
    ))
}

fn choices(state: &AppState, ticked: &[i64]) -> Vec<Choice> {
    let mut all: Vec<Choice> = state
        .registry
        .services(&crate::registry::ListFilter::configured())
        .into_iter()
        .map(|s| Choice {
            ticked: ticked.contains(&s.id),
            id: s.id,
            name: s.name,
        })
        .collect();
    all.sort_by_key(|c| c.name.to_lowercase());
    all
}

async fn new_form(State(state): State<AppState>) -> Response {
    render(
        StatusCode::OK,
        &PageForm {
            id: None,
            form: HashMap::new(),
            choices: choices(&state, &[]),
            errors: Vec::new(),
            problem: None,
        },
    )
}

async fn edit_form(State(state): State<AppState>, Path(id): Path<i64>) -> Page {
    let page = state
        .store
        .list_status_pages()
        .await?
        .into_iter()
        .find(|p| p.id == id);
    let Some(page) = page else {
        return Ok(message(
            StatusCode::NOT_FOUND,
            "No such status page",
            "It may have been deleted.",
        ));
    };
    let form = HashMap::from([
        ("slug".to_owned(), page.slug.clone()),
        ("title".to_owned(), page.title.clone()),
        ("description".to_owned(), page.description.clone()),
        ("tags".to_owned(), page.tags.join(", ")),
        ("notice".to_owned(), page.notice.clone()),
    ]);
    Ok(render(
        StatusCode::OK,
        &PageForm {
            id: Some(id),
            form,
            choices: choices(&state, &page.services),
            errors: Vec::new(),
            problem: None,
        },
    ))
}

/// The page's body as the API takes it, from the form's fields (`svc-{id}`
/// checkboxes, tags separated by commas).
fn form_body(values: &HashMap<String, String>) -> Map<String, Value> {
    let mut body = Map::new();
    for key in ["slug", "title", "description", "notice"] {
        body.insert(
            key.into(),
            Value::String(values.get(key).cloned().unwrap_or_default()),
        );
    }
    body.insert(
        "services".into(),
        Value::Array(super::ui::ticked_ids(values, "svc-")),
    );
    let tags: Vec<Value> = values
        .get("tags")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Value::String(t.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    body.insert("tags".into(), Value::Array(tags));
    body
}

async fn saved_from_form(state: AppState, id: Option<i64>, form: FormResult) -> Page {
    let Form(values) = match form {
        Ok(f) => f,
        Err(e) => return Ok(bad_form(&e)),
    };
    let body = form_body(&values);
    let (errors, problem) = match save(&state, id, &body).await {
        Ok(_) => return Ok(Redirect::to("/status-pages?notice=saved").into_response()),
        Err(ApiError::Validation(errors)) => (errors, None),
        Err(ApiError::Conflict(e)) => (vec![e], None),
        Err(ApiError::NotFound(_)) => {
            return Ok(message(
                StatusCode::NOT_FOUND,
                "No such status page",
                "It may have been deleted.",
            ))
        }
        Err(e) => return Ok(super::ui::api_error_page(&e)),
    };
    let ticked: Vec<i64> = super::ui::ticked_ids(&values, "svc-")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    Ok(render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &PageForm {
            id,
            choices: choices(&state, &ticked),
            form: values,
            errors,
            problem,
        },
    ))
}

async fn create_from_form(State(state): State<AppState>, form: FormResult) -> Response {
    saved_from_form(state, None, form).await.into_response()
}

async fn update_from_form(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    form: FormResult,
) -> Response {
    saved_from_form(state, Some(id), form).await.into_response()
}

async fn delete_from_form(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    match state.store.delete_status_page(id).await {
        Ok(true) => {
            state.public.forget();
            Redirect::to("/status-pages?notice=deleted").into_response()
        }
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            "No such status page",
            "It may have been deleted.",
        ),
        Err(e) => store_failure(&e),
    }
}
