//! The API described: `/api/openapi.json` (OpenAPI 3.1, built from the route
//! table and the API's types, see [`crate::openapi`]) and `/api/docs`, a page
//! that browses it and tries requests, served from the binary (no CDN).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{Html, IntoResponse};

use super::table::Routes;
use crate::auth::Access;

pub fn routes(r: Routes) -> Routes {
    r.get("/openapi.json", Access::Public, openapi_json)
        .get("/docs", Access::Public, docs_page)
        .get("/docs/explorer.js", Access::Public, explorer_js)
}

/// Built once: the document depends only on the code.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let document = crate::openapi::document(&super::route_table());
    serde_json::to_string_pretty(&document).expect("an OpenAPI document serialises")
});

async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

async fn docs_page() -> Html<&'static str> {
    Html(include_str!("../../static/api-docs.html"))
}

async fn explorer_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/api-docs.js"),
    )
}
