//! The route table: the only way a route is added to the hub. Each route names
//! who may call it ([`Access`]) and what it counts against ([`Bucket`]) where it
//! is declared; the builder wraps it in the [`guard`] and records it, so the
//! table of every route (method, path, rule) comes from the same code that
//! builds the router, and a test can walk it whole.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter};
use axum::Router;

use super::AppState;
use crate::auth::guard::{guard, Rule};
use crate::auth::{Access, Bucket};

/// Counts a request of one route, refused or answered, for `/metrics`.
async fn count(
    mut labels: crate::metrics::HttpLabels,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(metrics) = req
        .extensions()
        .get::<std::sync::Arc<crate::metrics::Metrics>>()
        .cloned()
    else {
        return next.run(req).await;
    };
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    labels.status = response.status().as_u16();
    metrics.http_request(&labels, started.elapsed());
    response
}

/// One route as declared.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    /// The full path, with `{param}` placeholders.
    pub path: String,
    pub rule: Rule,
    /// What the API document says of it (`Routes::doc`, next to where the
    /// route is declared); pages have none.
    pub doc: Option<crate::openapi::Doc>,
}

/// A group of routes under one prefix, all pages or all API.
pub struct Routes {
    prefix: &'static str,
    page: bool,
    router: Router<AppState>,
    info: Vec<RouteInfo>,
}

impl Routes {
    /// JSON routes nested under `prefix` (`/api`, or `""` for the heartbeat registry's root routes).
    pub fn api(prefix: &'static str) -> Self {
        Self {
            prefix,
            page: false,
            router: Router::new(),
            info: Vec::new(),
        }
    }

    /// Dashboard pages: refusals are pages and redirects to the login page,
    /// and form posts need the CSRF token.
    pub fn pages() -> Self {
        Self {
            prefix: "",
            page: true,
            router: Router::new(),
            info: Vec::new(),
        }
    }

    fn add<H, T>(
        mut self,
        method: Method,
        path: &str,
        access: Access,
        bucket: Option<Bucket>,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let rule = Rule {
            access,
            page: self.page,
            bucket,
        };
        #[allow(
            clippy::expect_used,
            reason = "the route table names only GET, POST, PUT, PATCH and DELETE"
        )]
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
        let labels = crate::metrics::HttpLabels {
            method: method.to_string(),
            route: format!("{}{path}", self.prefix),
            status: 0,
        };
        let endpoint = on(filter, handler)
            .route_layer(axum::middleware::from_fn(move |req, next| {
                guard(rule, req, next)
            }))
            .route_layer(axum::middleware::from_fn(move |req, next| {
                count(labels.clone(), req, next)
            }));
        self.router = self.router.route(path, endpoint);
        self.info.push(RouteInfo {
            method,
            path: format!("{}{path}", self.prefix),
            rule,
            doc: None,
        });
        self
    }

    /// Describes the route just declared in the API document: its summary,
    /// tag, parameters, body and answer (a test refuses an API route
    /// without one).
    pub fn doc(mut self, doc: crate::openapi::Doc) -> Self {
        if let Some(last) = self.info.last_mut() {
            last.doc = Some(doc);
        }
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &str,
        access: Access,
        h: H,
    ) -> Self {
        self.add(Method::GET, path, access, None, h)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &str,
        access: Access,
        h: H,
    ) -> Self {
        self.add(Method::POST, path, access, None, h)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &str,
        access: Access,
        h: H,
    ) -> Self {
        self.add(Method::PUT, path, access, None, h)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &str,
        access: Access,
        h: H,
    ) -> Self {
        self.add(Method::DELETE, path, access, None, h)
    }

    /// A route whose requests count against a rate limit.
    pub fn limited<H: Handler<T, AppState>, T: 'static>(
        self,
        method: Method,
        path: &str,
        access: Access,
        bucket: Bucket,
        h: H,
    ) -> Self {
        self.add(method, path, access, Some(bucket), h)
    }

    /// The axum router and the declared routes.
    pub fn finish(self) -> (Router<AppState>, Vec<RouteInfo>) {
        (self.router, self.info)
    }
}
