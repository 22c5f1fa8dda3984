//! The API described: `/api/openapi.json` (OpenAPI 3.1, built from the route
//! table and the API's types, see [`crate::openapi`]; credentials declared
//! required or optional as this hub's sign-in is) and `/api/docs`, a page
//! that browses it and tries requests, served from the binary (no CDN).

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};

use super::table::Routes;
use super::AppState;
use crate::auth::Access;
use crate::openapi::{doc, Answer};

pub fn routes(r: Routes) -> Routes {
    r.get("/openapi.json", Access::Public, openapi_json)
        .doc(doc("This document", "meta", Answer::Object))
        .get("/docs", Access::Public, docs_page)
        .doc(doc(
            "This document, browsable, with requests to try",
            "meta",
            Answer::Text("text/html"),
        ))
        .get("/docs/explorer.js", Access::Public, explorer_js)
        .doc(doc(
            "The script of /api/docs",
            "meta",
            Answer::Text("text/javascript"),
        ))
}

#[allow(
    clippy::expect_used,
    reason = "the document is plain data: strings, maps and numbers, which always serialise"
)]
fn build(auth_required: bool) -> String {
    let document = crate::openapi::document_json(&super::route_table(), auth_required);
    serde_json::to_string_pretty(&document).expect("an OpenAPI document serialises")
}

/// Built once each: the document depends only on the code and on whether
/// this hub requires sign-in.
static WITH_AUTH: LazyLock<String> = LazyLock::new(|| build(true));
static WITHOUT_AUTH: LazyLock<String> = LazyLock::new(|| build(false));

async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    let document = if state.auth.required() {
        &WITH_AUTH
    } else {
        &WITHOUT_AUTH
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.as_str(),
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
