//! The dashboard's HTML, without a browser: pages render, forms validate with
//! messages next to the fields, and nothing is loaded from elsewhere.

use lookout_testkit::spawn_hub;
use serde_json::json;

async fn form_post(
    hub: &lookout_testkit::TestHub,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    hub.post_form(path, fields).await
}

#[tokio::test(flavor = "multi_thread")]
async fn landing_page_lists_configured_services_with_their_health() {
    let hub = spawn_hub().await;
    let html = hub.get_text("/").await;
    assert!(html.contains("No services yet"));
    // Test hubs run with --systemd none: nothing to scan, no button for it;
    // the API explorer is in the navigation.
    assert!(!html.contains("Scan for Services"));
    assert!(html.contains(r#"<a href="/api/docs" id="api-link">API</a>"#));
    assert!(
        html.contains(r#"id="audit-link""#),
        "an admin sees the audit log"
    );
    let port = lookout_testkit::closed_port();
    let s = hub
        .create_service(
            json!({"name": "grafana", "description": "Dashboards <b>bold</b>",
                              "base_url": format!("http://127.0.0.1:{port}")}),
        )
        .await;
    // Its URL is checked: nothing listens there.
    hub.wait_for_service(
        s["id"].as_i64().unwrap(),
        std::time::Duration::from_secs(10),
        |s| !s["last_health_check"].is_null(),
    )
    .await;
    let r = hub.get("/").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    let id = s["id"].as_i64().unwrap();
    assert!(
        html.contains(&format!(r#"<a href="/services/{id}">grafana</a>"#)),
        "the name leads to the service's page"
    );
    assert!(
        html.contains(&format!(
            r#"href="http://127.0.0.1:{port}" target="_blank""#
        )),
        "its URL leads to the service"
    );
    assert!(
        html.contains("Dashboards &#60;b&#62;bold&#60;/b&#62;"),
        "descriptions are escaped"
    );
    assert!(!html.contains("<b>bold</b>"));
    assert!(html.contains(r#"class="dot failure""#));
    assert!(
        html.contains(&format!(
            "connection refused: nothing listens on 127.0.0.1:{port} · "
        )),
        "the reason for the status"
    );
    // One action per row; the others are on the service's page.
    assert!(html.contains(">Visit</a>"));
    for elsewhere in ["Check now", "Edit", "Delete"] {
        assert!(!html.contains(elsewhere), "{elsewhere} is on the row");
    }
    let page = hub.get_text(&format!("/services/{id}")).await;
    for action in [r#"id="check-now""#, r#"id="edit""#, r#"id="delete""#] {
        assert!(page.contains(action), "the service page lacks {action}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_load_nothing_from_other_origins() {
    let hub = spawn_hub().await;
    for page in ["/", "/services/new", "/scan"] {
        let html = hub.get_text(page).await;
        for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(!html.contains(attr), "{page} loads {attr}");
        }
        assert!(!html.contains("<script>"), "{page} has inline script");
    }
    for asset in ["/static/app.css", "/static/app.js", "/static/favicon.svg"] {
        assert_eq!(hub.get(asset).await.status(), 200, "{asset}");
    }
    let css = hub.get_text("/static/app.css").await;
    assert!(css.contains("prefers-color-scheme: dark"));
    assert!(css.contains("@media (max-width"));
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_page_says_plainly_when_systemd_is_off() {
    let hub = spawn_hub().await; // in-process test hubs run with --systemd none
    let r = hub.get("/scan").await;
    assert_eq!(r.status(), 200, "nothing is wrong: systemd is off");
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"id="scan-off""#));
    assert!(html.contains("<code>--systemd none</code>"));
    assert!(!html.contains(r#"id="scan-error""#));
    assert!(!html.contains(r#"id="retry""#), "nothing to retry");
    assert!(
        !html.contains("No unregistered service"),
        "no scan, no verdict"
    );
    // Off is not a failure: a 404 naming the setting, not a 503.
    let r = hub.post("/api/scan").await;
    assert_eq!(r.status(), 404);
    let body = r.json::<serde_json::Value>().await.unwrap();
    assert_eq!(body["code"], "not_found");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--systemd none"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_form_creates_edits_and_deletes_without_javascript() {
    let hub = spawn_hub().await;
    let r = form_post(
        &hub,
        "/services/new",
        &[
            ("name", "web"),
            ("description", "site"),
            ("base_url", "http://127.0.0.1:8080"),
            ("health_endpoint", ""),
            ("port", "8080"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/?notice=created");
    let list = hub.get_json("/api/services").await;
    let s = &list[0];
    assert_eq!(
        (
            s["name"].as_str(),
            s["port"].as_u64(),
            s["health_endpoint"].is_null()
        ),
        (Some("web"), Some(8080), true)
    );
    let id = s["id"].as_i64().unwrap();

    let html = hub.get_text(&format!("/services/{id}/edit")).await;
    assert!(
        html.contains(r#"value="http://127.0.0.1:8080""#),
        "edit form is pre-filled"
    );
    let r = form_post(
        &hub,
        &format!("/services/{id}/edit"),
        &[
            ("name", "web"),
            ("description", ""),
            ("base_url", "http://127.0.0.1:8080"),
            ("port", "8081"),
            ("start_period_secs", "45"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let s = hub.service(id).await;
    assert_eq!(s["port"], 8081);
    assert_eq!(
        s["start_period_secs"], 45,
        "the start period is set from the form"
    );
    let html = hub.get_text(&format!("/services/{id}/edit")).await;
    assert!(html.contains(r#"value="45""#), "and shown in it");
    assert!(s["description"].is_null(), "an emptied field is cleared");

    let r = form_post(&hub, &format!("/services/{id}/delete"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(hub.get_json("/api/services").await, json!([]));
    assert_eq!(
        form_post(&hub, &format!("/services/{id}/delete"), &[])
            .await
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn form_errors_appear_next_to_their_fields_and_keep_the_input() {
    let hub = spawn_hub().await;
    let r = form_post(
        &hub,
        "/services/new",
        &[
            ("name", "web"),
            ("base_url", "http://local host:80"),
            ("port", "99999"),
            ("health_endpoint", "health"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    for (field, text) in [
        (
            "base_url",
            "Has a host name with characters a host name cannot have",
        ),
        ("port", "Must be an integer from 1 to 65535"),
        ("health_endpoint", "Must start with"),
    ] {
        let at = html
            .find(&format!(r#"id="{field}-error""#))
            .unwrap_or_else(|| panic!("no error for {field}"));
        assert!(html[at..].contains(text), "{field}: {text}");
    }
    assert!(
        html.contains(r#"value="http://local host:80""#),
        "input kept"
    );
    assert_eq!(
        hub.get_json("/api/services").await,
        json!([]),
        "nothing written"
    );

    hub.create_service(json!({"name": "taken"})).await;
    let r = form_post(&hub, "/services/new", &[("name", "taken")]).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("already taken"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_pages_and_services_are_404_pages() {
    let hub = spawn_hub().await;
    assert_eq!(hub.get("/nope").await.status(), 404);
    assert_eq!(hub.get("/services/42/edit").await.status(), 404);
    assert_eq!(hub.get("/services/abc/edit").await.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_carries_the_security_headers() {
    let hub = spawn_hub().await;
    for path in [
        "/",
        "/services/new",
        "/scan",
        "/api/services",
        "/api/nope",
        "/static/app.js",
    ] {
        let r = hub.get(path).await;
        let h = r.headers();
        let csp = h
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
    }
}
