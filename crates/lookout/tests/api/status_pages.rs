//! Status pages and badges on a hub that requires sign-in: readable signed
//! out, showing names, states, uptime and incidents of real checks against
//! real HTTP targets on loopback, and nothing of the services' addresses,
//! hosts, ports, descriptions or error messages; cached, with `ETag`s.

use std::time::Duration;

use lookout_testkit::{closed_port, Target, TestHub};
use serde_json::{json, Value};

use crate::auth::{hub_with_accounts, tokens, ADMIN_PASSWORD};

const SOON: Duration = Duration::from_secs(20);

/// A hub that requires sign-in, its admin's bearer token.
async fn hub() -> (TestHub, String) {
    let hub = hub_with_accounts().await;
    let (token, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    (hub, token)
}

async fn send(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = hub.client.request(method, hub.url(path)).bearer_auth(token);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn state_of(hub: &TestHub, token: &str, id: i64) -> String {
    let (_, s) = send(
        hub,
        reqwest::Method::GET,
        &format!("/api/services/{id}"),
        token,
        None,
    )
    .await;
    s["state"].as_str().unwrap_or_default().to_owned()
}

async fn wait_state(hub: &TestHub, token: &str, id: i64, want: &str) {
    let deadline = tokio::time::Instant::now() + SOON;
    while state_of(hub, token, id).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "service {id} never {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The public page, signed out; waits past the render cache until `pred`
/// holds of it.
async fn public_until(hub: &TestHub, path: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let r = hub.get(path).await;
        assert_eq!(r.status(), 200, "{path} is public");
        let text = r.text().await.unwrap();
        if pred(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never showed it:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_page_is_public_and_leaks_nothing_but_names_and_states() {
    let (hub, token) = hub().await;
    let up = Target::start(200).await;
    let down = Target::start(200).await;
    let dead_port = closed_port();
    let create = |body: Value| {
        let (hub, token) = (&hub, token.clone());
        async move {
            let (status, s) = send(
                hub,
                reqwest::Method::POST,
                "/api/services",
                &token,
                Some(body),
            )
            .await;
            assert_eq!(status, 201, "{s}");
            s["id"].as_i64().unwrap()
        }
    };
    let jellyfin = create(json!({"name": "Jellyfin", "base_url": up.url(),
        "health_endpoint": "/secret-path/health", "check_interval_secs": 1,
        "description": "in the attic, admin password on a sticky note"}))
    .await;
    let nas = create(json!({"name": "NAS", "base_url": down.url(),
        "health_endpoint": "/secret-path", "check_interval_secs": 1, "tags": ["family"]}))
    .await;
    let printer = create(json!({"name": "Printer",
        "base_url": format!("http://localhost:{dead_port}/secret-path"), "check_interval_secs": 1,
        "tags": ["family"]}))
    .await;
    let hidden =
        create(json!({"name": "Router admin", "base_url": up.url(), "check_interval_secs": 1}))
            .await;

    // Made by an admin: services by name and by id, and a tag.
    let (status, page) = send(
        &hub,
        reqwest::Method::POST,
        "/api/status-pages",
        &token,
        Some(
            json!({"slug": "home", "title": "Home services", "description": "For the family",
                    "services": ["jellyfin", nas], "tags": ["family"],
                    "notice": "New router on Sunday"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{page}");
    assert_eq!(
        page["services"],
        json!([jellyfin, nas]),
        "names kept as ids"
    );
    wait_state(&hub, &token, printer, "FAILURE").await;
    down.set_status(500);
    wait_state(&hub, &token, nas, "FAILURE").await;
    wait_state(&hub, &token, jellyfin, "OK").await;

    let html = public_until(&hub, "/status/home", |t| {
        t.matches("data-state=\"down\"").count() == 2 && t.contains("data-state=\"operational\"")
    })
    .await;
    for shown in [
        "Home services",
        "For the family",
        "New router on Sunday",
        "Jellyfin",
        "NAS",
        "Printer",
        "2 services are down",
        "ongoing",
    ] {
        assert!(html.contains(shown), "the page shows {shown:?}");
    }
    assert!(
        !html.contains("Router admin"),
        "a service not chosen is not shown"
    );
    let mut forbidden = vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "http://".to_owned(),
        "https://".to_owned(),
        "secret-path".to_owned(),
        "attic".to_owned(),
        "sticky".to_owned(),
        "500".to_owned(),
        "refused".to_owned(),
        "HTTP".to_owned(),
        "/services/".to_owned(),
        "/api/".to_owned(),
        "<script".to_owned(),
        up.url()
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned(),
        down.url()
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned(),
        dead_port.to_string(),
    ];
    let host = machine_hostname();
    if host.len() >= 3 {
        forbidden.push(host);
    }
    for word in &forbidden {
        assert!(
            !html.contains(word.as_str()),
            "the page leaks {word:?}:\n{html}"
        );
    }
    let _ = hidden;

    // A maintenance window shows as such, with its end, and not as down.
    let (status, _) = send(
        &hub,
        reqwest::Method::PUT,
        &format!("/api/services/{nas}"),
        &token,
        Some(json!({"maintenance_until": "2099-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 200);
    let html = public_until(&hub, "/status/home", |t| {
        t.contains("data-maintenance=\"NAS\"")
    })
    .await;
    assert!(
        html.contains("NAS is under maintenance until 2099-01-01"),
        "{html}"
    );
    assert_eq!(html.matches("data-state=\"down\"").count(), 1, "{html}");

    // No such page: a page of its own, without the dashboard's navigation.
    let r = hub.get("/status/nothing-here").await;
    assert_eq!(r.status(), 404);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("No status page here") && !text.contains("/services"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_and_badges_are_cached_and_only_shown_services_have_badges() {
    let (hub, token) = hub().await;
    let up = Target::start(200).await;
    let (_, web) = send(
        &hub,
        reqwest::Method::POST,
        "/api/services",
        &token,
        Some(json!({"name": "web", "base_url": up.url(), "check_interval_secs": 1})),
    )
    .await;
    let (_, other) = send(
        &hub,
        reqwest::Method::POST,
        "/api/services",
        &token,
        Some(json!({"name": "other", "base_url": up.url(), "check_interval_secs": 1})),
    )
    .await;
    let (web, other) = (web["id"].as_i64().unwrap(), other["id"].as_i64().unwrap());
    wait_state(&hub, &token, web, "OK").await;

    // Before any page shows it, a service has no public badge.
    let r = hub.get(&format!("/badge/{web}/health")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");

    let (status, page) = send(
        &hub,
        reqwest::Method::POST,
        "/api/status-pages",
        &token,
        Some(json!({"slug": "ops", "title": "Ops", "services": [web]})),
    )
    .await;
    assert_eq!(status, 201);
    let page_id = page["id"].as_i64().unwrap();

    let r = hub.get("/status/ops").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=30");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let again = hub.get("/status/ops").await;
    assert_eq!(
        again.headers()["etag"].to_str().unwrap(),
        etag,
        "served from the cache"
    );
    let r = hub
        .client
        .get(hub.url("/status/ops"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
    // Compressed once per render, not per reader.
    let plain = hub.get_text("/status/ops").await;
    let r = hub
        .client
        .get(hub.url("/status/ops"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "accept-encoding");
    let gz_tag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(gz_tag, etag);
    let packed = r.bytes().await.unwrap();
    let mut unpacked = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut unpacked,
    )
    .unwrap();
    assert_eq!(unpacked, plain);
    assert!(
        packed.len() * 3 < plain.len(),
        "{} of {}",
        packed.len(),
        plain.len()
    );

    // Badges: by id and by name, shields.io-style SVG, cacheable.
    for path in [
        format!("/badge/{web}/health"),
        "/badge/web/health".to_owned(),
    ] {
        let r = hub.get(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
        assert_eq!(r.headers()["cache-control"], "public, max-age=30");
        let svg = r.text().await.unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("web: operational"),
            "{svg}"
        );
    }
    let r = hub.get(&format!("/badge/{web}/uptime/7d")).await;
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(r.text().await.unwrap().contains("uptime 7d: 100%"));
    let r = hub
        .client
        .get(hub.url(&format!("/badge/{web}/uptime/7d")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let svg = hub
        .get_text(&format!("/badge/{web}/response-time/24h?label=latency"))
        .await;
    assert!(svg.contains("latency: ") && svg.contains(" ms"), "{svg}");
    assert_eq!(
        hub.get(&format!("/badge/{web}/uptime/1y")).await.status(),
        404
    );
    assert_eq!(
        hub.get(&format!("/badge/{other}/health")).await.status(),
        404,
        "not on a page"
    );
    let svg = hub.get_text("/status/ops/badge").await;
    assert!(svg.contains("status: operational"), "{svg}");

    // An edit on this hub shows at once: the cache is forgotten.
    let (status, _) = send(
        &hub,
        reqwest::Method::PUT,
        &format!("/api/status-pages/{page_id}"),
        &token,
        Some(json!({"slug": "ops", "title": "Operations", "services": [web, other]})),
    )
    .await;
    assert_eq!(status, 200);
    let html = hub.get_text("/status/ops").await;
    assert!(
        html.contains("Operations") && html.contains("other"),
        "{html}"
    );
    assert_eq!(
        hub.get(&format!("/badge/{other}/health")).await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_status_pages_are_refused_with_every_field_named_and_nothing_written() {
    let (hub, token) = hub().await;
    let post = |body: Value| {
        let (hub, token) = (&hub, token.clone());
        async move {
            send(
                hub,
                reqwest::Method::POST,
                "/api/status-pages",
                &token,
                Some(body),
            )
            .await
        }
    };
    let (status, body) = post(json!({"slug": "Not A Slug", "title": "", "services": "all",
                                     "colour": "red"}))
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "validation_failed");
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    let mut fields = fields;
    fields.sort_unstable();
    assert_eq!(fields, ["colour", "services", "slug", "title"]);
    // Of the right shape, what the schema cannot say is named too.
    let (status, body) = post(json!({"slug": "new", "title": "New"})).await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["slug"], "{body}");
    let (status, body) =
        post(json!({"slug": "home", "title": "Home", "services": ["no-such"]})).await;
    assert_eq!(status, 422);
    assert!(
        body["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"no-such\""),
        "{body}"
    );
    let (status, _) = post(json!({"slug": "home", "title": "Home", "tags": ["media"]})).await;
    assert_eq!(status, 201);
    let (status, body) = post(json!({"slug": "home", "title": "Again", "tags": ["media"]})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["fields"][0]["field"], "slug");
    let (_, list) = send(
        &hub,
        reqwest::Method::GET,
        "/api/status-pages",
        &token,
        None,
    )
    .await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "nothing half-written: {list}"
    );
    let (status, body) = send(
        &hub,
        reqwest::Method::DELETE,
        "/api/status-pages/999",
        &token,
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = send(
        &hub,
        reqwest::Method::GET,
        "/api/status-pages/abc",
        &token,
        None,
    )
    .await;
    assert_eq!(status, 400);
    // Signed out, the API of pages is closed; the page itself is not.
    assert_eq!(hub.get("/api/status-pages").await.status(), 401);
    assert_eq!(hub.get("/status/home").await.status(), 200);
}

/// `lookout ARGS` against the hub's data directory (or its PostgreSQL
/// database): whether it succeeded, its output and its error output.
fn cli(hub: &TestHub, args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"));
    command
        .args(args)
        .env("LOOKOUT_DATA_DIR", hub.data_dir())
        .env_remove("LOOKOUT_DATABASE");
    if let Some(url) = hub.database() {
        command.args(["--database", url]);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn status_pages_from_the_command_line() {
    let (hub, token) = hub().await;
    let up = Target::start(200).await;
    for (name, tags) in [("web", json!([])), ("photos", json!(["family"]))] {
        let (status, _) = send(
            &hub,
            reqwest::Method::POST,
            "/api/services",
            &token,
            Some(json!({"name": name, "base_url": up.url(), "tags": tags})),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (ok, out, err) = cli(
        &hub,
        &[
            "status-page",
            "add",
            "home",
            "--title",
            "Home",
            "--service",
            "web",
            "--tag",
            "family",
            "--notice",
            "Back soon",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "saved /status/home");
    let html = public_until(&hub, "/status/home", |t| t.contains("photos")).await;
    assert!(html.contains("web") && html.contains("Back soon"), "{html}");
    let (ok, out, _) = cli(&hub, &["status-page", "list"]);
    assert!(ok);
    assert!(out.lines().nth(1).unwrap().starts_with("home "), "{out}");
    assert!(out.contains("family"), "{out}");

    // Mistakes: one line naming the problem, a failing exit, nothing written.
    for (args, said) in [
        (
            vec![
                "status-page",
                "add",
                "home",
                "--title",
                "Home",
                "--service",
                "nope",
            ],
            "no such service: \"nope\"",
        ),
        (
            vec!["status-page", "add", "Not Ok", "--title", "X", "--tag", "a"],
            "invalid slug: must be 1 to 64",
        ),
        (
            vec!["status-page", "add", "empty", "--title", "X"],
            "invalid services: name at least one",
        ),
        (
            vec!["status-page", "remove", "nowhere"],
            "no status page at /status/nowhere",
        ),
    ] {
        let (ok, _, err) = cli(&hub, &args);
        assert!(!ok, "{args:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("lookout: ") && err.contains(said),
            "{args:?}: {err}"
        );
    }
    let (_, list) = send(
        &hub,
        reqwest::Method::GET,
        "/api/status-pages",
        &token,
        None,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        list[0]["notice"], "Back soon",
        "the failed add changed nothing"
    );
    let (ok, out, _) = cli(&hub, &["status-page", "remove", "home"]);
    assert!(ok);
    assert_eq!(out.trim(), "removed /status/home");
}
