//! Authentication against a real hub: every route of the router is walked
//! without credentials and as a viewer; login, refresh rotation, expiry with an
//! injected clock, revocation, CSRF, cross-origin writes, brute-force limits,
//! the audit log, TLS, and the `lookout user` commands.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::DateTime;
use lookout_hub::auth::guard::Rule;
use lookout_hub::auth::{Access, AuthMode};
use lookout_hub::clock::ManualClock;
use lookout_hub::routes::table::RouteInfo;
use lookout_hub::Config;
use lookout_testkit::{spawn_hub_with, spawn_hub_with_clock, TestHub};
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
pub const ADMIN_PASSWORD: &str = "correct horse battery";
const VIEWER_PASSWORD: &str = "viewer's own secret";

fn required(c: &mut Config) {
    c.auth.mode = AuthMode::Required;
}

/// `lookout user add NAME [--admin]` against the hub's data directory, the
/// password piped on standard input, as a person would script it.
pub fn add_user(hub: &TestHub, name: &str, password: &str, admin: bool) {
    add_user_in(hub.data_dir(), hub.database(), name, password, admin);
}

/// `lookout user add` against a data directory, or the PostgreSQL database
/// the suite runs on.
pub fn add_user_in(
    data_dir: &std::path::Path,
    database: Option<&str>,
    name: &str,
    password: &str,
    admin: bool,
) {
    let mut args = vec!["user", "add", name];
    if admin {
        args.push("--admin");
    }
    let mut database_args = vec![];
    if let Some(url) = database {
        database_args = vec!["--database", url];
    }
    args.extend(database_args);
    let (ok, stdout, stderr) = run_cli(data_dir, &args, Some(password));
    assert!(ok, "user add {name}: {stderr}");
    assert!(stdout.starts_with("created "), "{stdout}");
}

/// Runs `lookout ARGS` and waits for it. Tests that call it while a hub runs
/// in-process use the multi-threaded runtime, so the hub keeps serving (and
/// finishes its transactions) while this thread waits.
fn run_cli(
    data_dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("LOOKOUT_DATA_DIR", data_dir)
        .env_remove("LOOKOUT_DATABASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        writeln!(input, "{text}").unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A hub with authentication on, an admin `ada` and a viewer `vic`. Rate
/// limits are off: these tests make more calls a minute than a person
/// would; the limits have tests of their own.
pub(crate) async fn hub_with_accounts() -> TestHub {
    let hub = spawn_hub_with(|c| {
        c.auth.mode = AuthMode::Required;
        c.auth.rate_limits = lookout_hub::auth::RateLimits {
            login: None,
            control: None,
            logs: None,
            agents: None,
        };
    })
    .await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    add_user(&hub, "vic", VIEWER_PASSWORD, false);
    hub
}

async fn login(hub: &TestHub, username: &str, password: &str) -> reqwest::Response {
    hub.post_json(
        "/api/v1/users/login",
        &json!({"username": username, "password": password}),
    )
    .await
}

/// Logs in over the API and returns the token pair.
pub(crate) async fn tokens(hub: &TestHub, username: &str, password: &str) -> (String, String) {
    let r = login(hub, username, password).await;
    assert_eq!(r.status(), 200, "login {username}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// POSTs `body` as JSON to `path` with a bearer `token`.
async fn post_as(hub: &TestHub, path: &str, token: &str, body: &Value) -> reqwest::Response {
    hub.client
        .post(hub.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get_as(hub: &TestHub, path: &str, token: &str) -> reqwest::Response {
    hub.client
        .get(hub.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn refresh(hub: &TestHub, refresh_token: &str) -> reqwest::Response {
    hub.post_json(
        "/api/v1/users/refresh",
        &json!({"refresh_token": refresh_token}),
    )
    .await
}

async fn error_code(r: reqwest::Response) -> String {
    let body: Value = r.json().await.expect("a JSON error body");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// A concrete path for a route's pattern.
fn concrete(path: &str) -> String {
    path.replace("{action}", "restart")
        .replace("{token}", "0000")
        .replace("{name}", "nothing-here")
        .replace("{id}", "999")
        .replace("{slug}", "nothing-here")
        .replace("{service}", "999")
        .replace("{window}", "7d")
}

fn is_write(route: &RouteInfo) -> bool {
    route.method != Method::GET
}

/// The routes anyone may call: the way in, static assets, push URLs (whose
/// token is the credential), the agents' claim and connection (their
/// claim token and key are the credential), and the liveness and readiness
/// probes (which say only that). A new public route must be added here on
/// purpose.
const PUBLIC: &[&str] = &[
    // The API's description and its explorer: the shape of the API, no data.
    "GET /api/openapi.json",
    "GET /api/docs",
    "GET /api/docs/explorer.js",
    "GET /login",
    "POST /login",
    "GET /login/code",
    "POST /login/code",
    "POST /logout",
    "GET /setup",
    "POST /setup",
    "GET /static/app.css",
    "GET /static/app.js",
    "GET /static/favicon.svg",
    // The installable app's manifest, icons and service worker.
    "GET /manifest.webmanifest",
    "GET /sw.js",
    "GET /static/icon-192.png",
    "GET /static/icon-512.png",
    "GET /static/icon-maskable-512.png",
    "GET /api/push/{token}",
    "POST /api/push/{token}",
    "GET /api/push/{token}/{signal}",
    "POST /api/push/{token}/{signal}",
    "POST /api/v1/users/login",
    "POST /api/v1/users/refresh",
    "POST /api/v1/users/register",
    "POST /api/v1/agents/claim",
    "GET /api/v1/agent/connect",
    "GET /healthz",
    "GET /readyz",
    // Status pages and badges: names, states and uptime of the services
    // an administrator chose to show, nothing more.
    "GET /status/{slug}",
    "GET /status/{slug}/badge",
    "GET /badge/{service}/health",
    "GET /badge/{service}/uptime/{window}",
    "GET /badge/{service}/response-time/{window}",
];

/// The writes a viewer may make: to their own account only, and checking
/// conditions (a POST that writes nothing).
const VIEWER_WRITES: &[&str] = &[
    "POST /account/tokens",
    "POST /account/tokens/{id}/revoke",
    "POST /account/two-factor",
    "POST /account/two-factor/off",
    "POST /api/v1/users/me/two-factor",
    "POST /api/v1/users/me/two-factor/key",
    "POST /api/v1/users/me/two-factor/off",
    "POST /api/v1/users/logout",
    "POST /api/v1/tokens",
    "DELETE /api/v1/tokens/{id}",
    "POST /api/conditions/check",
    // A person's own devices that get Web Push notifications.
    "POST /api/v1/users/me/devices",
    "DELETE /api/v1/users/me/devices/{id}",
    "POST /account/devices/{id}/delete",
];

fn key(route: &RouteInfo) -> String {
    format!("{} {}", route.method, route.path)
}

async fn call(hub: &TestHub, route: &RouteInfo, token: Option<&str>) -> reqwest::Response {
    let mut request = hub
        .client
        .request(route.method.clone(), hub.url(&concrete(&route.path)));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if is_write(route) && !route.rule.page {
        request = request.json(&json!({}));
    }
    request.send().await.unwrap()
}

#[test]
fn the_route_table_declares_every_public_route_and_viewer_write_on_purpose() {
    let table = lookout_hub::routes::route_table();
    assert!(
        table.len() > 60,
        "the table lists every route: {}",
        table.len()
    );
    let public: BTreeSet<String> = table
        .iter()
        .filter(|r| r.rule.access == Access::Public)
        .map(key)
        .collect();
    let expected: BTreeSet<String> = PUBLIC.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(public, expected, "public routes changed");
    let viewer_writes: BTreeSet<String> = table
        .iter()
        .filter(|r| r.rule.access == Access::Viewer && is_write(r))
        .map(key)
        .collect();
    let expected: BTreeSet<String> = VIEWER_WRITES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(viewer_writes, expected, "writes open to viewers changed");
    // Every unit control action counts against the control limit; every log
    // read against the log limit; every way in against the login limit.
    for r in &table {
        let Rule { bucket, .. } = r.rule;
        use lookout_hub::auth::Bucket;
        if r.path.ends_with("/start") || r.path.ends_with("/stop") || r.path.ends_with("/restart") {
            assert_eq!(bucket, Some(Bucket::Control), "{}", key(r));
        }
        if r.path.starts_with("/api/") && r.path.ends_with("/logs") {
            assert_eq!(bucket, Some(Bucket::Logs), "{}", key(r));
        }
        if r.path == "/api/v1/agent/connect" {
            assert_eq!(bucket, Some(Bucket::Agents), "{}", key(r));
        }
        if r.method == Method::POST
            && [
                "/login",
                "/login/code",
                "/account/two-factor",
                "/account/two-factor/off",
                "/api/v1/users/me/two-factor",
                "/api/v1/users/me/two-factor/off",
                "/setup",
                "/api/v1/users/login",
                "/api/v1/users/refresh",
            ]
            .contains(&r.path.as_str())
        {
            assert_eq!(bucket, Some(Bucket::Login), "{}", key(r));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_strangers_and_viewers_cannot_write() {
    let hub = hub_with_accounts().await;
    let (viewer, _) = tokens(&hub, "vic", VIEWER_PASSWORD).await;
    let (admin, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let heartbeat = heartbeat_token(&hub, &admin).await;
    let table = lookout_hub::routes::route_table();
    let mut checked = 0;
    for route in table.iter().filter(|r| r.rule.access != Access::Public) {
        let what = key(route);
        // Without credentials: 401 with a JSON body on the API, a redirect to
        // the login page on the dashboard.
        let r = call(&hub, route, None).await;
        if route.rule.page {
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{what}");
            let to = r.headers()[LOCATION].to_str().unwrap();
            assert!(to.starts_with("/login?next="), "{what} -> {to}");
        } else {
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
            assert!(r.headers().contains_key(WWW_AUTHENTICATE), "{what}");
            assert_eq!(error_code(r).await, "unauthorized", "{what}");
        }
        // A token that is not one: refused the same way on the API.
        if !route.rule.page {
            let r = call(&hub, route, Some("lk_not_a_token")).await;
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{what} with a bad token"
            );
        }
        // A heartbeat token: 403 everywhere but the heartbeat routes.
        let r = call(&hub, route, Some(&heartbeat)).await;
        if route.rule.access == Access::Heartbeat {
            assert!(
                ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&r.status()),
                "{what} with a heartbeat token: {}",
                r.status()
            );
        } else {
            assert_eq!(
                r.status(),
                StatusCode::FORBIDDEN,
                "{what} with a heartbeat token"
            );
            if !route.rule.page {
                assert_eq!(error_code(r).await, "forbidden", "{what}");
            }
        }
        // A viewer: 403 on every write that is not their own account.
        if matches!(route.rule.access, Access::Admin | Access::Heartbeat) {
            let r = call(&hub, route, Some(&viewer)).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what} as a viewer");
            if !route.rule.page {
                assert_eq!(error_code(r).await, "forbidden", "{what}");
            }
        }
        // Reads are the viewer's, admin reads the admin's (a live stream
        // answers with its headers, then this side hangs up).
        if !is_write(route) {
            let token = if route.rule.access == Access::Admin {
                &admin
            } else {
                &viewer
            };
            let r = call(&hub, route, Some(token)).await;
            assert!(
                ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&r.status()),
                "{what}: {}",
                r.status()
            );
        }
        checked += 1;
    }
    assert!(checked > 50, "walked {checked} routes");
}

/// A token that may only send heartbeats, made by the admin `token`.
async fn heartbeat_token(hub: &TestHub, admin: &str) -> String {
    let r = post_as(
        hub,
        "/api/v1/tokens",
        admin,
        &json!({"name": "nas heartbeat", "scope": "heartbeat"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["scope"], "heartbeat");
    created["token"].as_str().unwrap().to_owned()
}

/// Opens a live stream with `token` (and `origin`); the status it got.
async fn open_stream(
    hub: &TestHub,
    path: &str,
    token: Option<&str>,
    origin: Option<&str>,
) -> StatusCode {
    let mut request = hub.client.get(hub.url(path));
    if path.ends_with("/ws") {
        request = request
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    } else {
        // As a browser's EventSource asks.
        request = request.header("accept", "text/event-stream");
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let r = request.send().await.unwrap();
    if r.status() == StatusCode::OK {
        assert_eq!(r.headers()["content-type"], "text/event-stream", "{path}");
    }
    r.status()
}

#[tokio::test(flavor = "multi_thread")]
async fn live_streams_and_token_scopes_follow_the_route_rules() {
    let hub = hub_with_accounts().await;
    let (viewer, _) = tokens(&hub, "vic", VIEWER_PASSWORD).await;
    let (admin, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let heartbeat = heartbeat_token(&hub, &admin).await;
    let own = format!("http://{}", hub.addr);
    for (path, opened) in [
        ("/api/events", StatusCode::OK),
        ("/api/services/ws", StatusCode::SWITCHING_PROTOCOLS),
    ] {
        let status = |token, origin| open_stream(&hub, path, token, origin);
        assert_eq!(status(None, None).await, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            status(Some("lk_not_a_token"), None).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            status(Some(&heartbeat), None).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
        assert_eq!(status(Some(&viewer), None).await, opened, "{path}");
        assert_eq!(status(Some(&viewer), Some(&own)).await, opened, "{path}");
        assert_eq!(
            status(Some(&viewer), Some("https://evil.example")).await,
            StatusCode::FORBIDDEN,
            "{path} from another origin"
        );
    }

    // The heartbeat token does what a heartbeat script needs.
    let send = |path: &'static str, body: Value| {
        hub.client
            .post(hub.url(path))
            .bearer_auth(&heartbeat)
            .json(&body)
            .send()
    };
    let r = send(
        "/register",
        json!({"name": "nas-backup", "ip": "127.0.0.1"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = send("/refresh/nas-backup", json!({})).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = send("/refresh_all", json!({})).await.unwrap();
    assert_eq!(r.status(), 200);
    // ... and nothing else: not even reading the list it just wrote to.
    let r = get_as(&hub, "/services", &heartbeat).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("only send heartbeats"),
        "{body}"
    );
    let r = get_as(&hub, "/services", &viewer).await;
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["services"][0]["name"], "nas-backup", "{listed}");

    // Listed with its scope; a viewer cannot make one; a scope is one of two.
    let list: Vec<Value> = get_as(&hub, "/api/v1/tokens", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["scope"], "heartbeat", "{list:?}");
    for (token, body, field) in [
        (&viewer, json!({"name": "x", "scope": "heartbeat"}), "scope"),
        (&admin, json!({"name": "x", "scope": "everything"}), "scope"),
        (
            &admin,
            json!({"name": "x", "role": "viewer", "scope": "heartbeat"}),
            "scope",
        ),
    ] {
        let r = post_as(&hub, "/api/v1/tokens", token, &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let refused: Value = r.json().await.unwrap();
        assert_eq!(refused["fields"][0]["field"], field, "{refused}");
    }

    // Revoked, it sends nothing more.
    let id = list[0]["id"].as_i64().unwrap();
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = send("/refresh_all", json!({})).await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_without_accounts_sends_pages_to_setup_and_api_clients_to_the_cli() {
    let hub = spawn_hub_with(required).await;
    let r = hub.get("/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/setup");
    let r = hub.get("/api/services").await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("lookout user add"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refresh_rotation_and_replay() {
    let hub = hub_with_accounts().await;
    // Wrong password, unknown user: the same 401, nothing else said.
    for (user, password) in [("ada", "wrong password"), ("nobody", "whatever1")] {
        let r = login(&hub, user, password).await;
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
        assert_eq!(body["message"], "wrong username or password");
    }
    // Missing fields are named.
    let r = hub
        .post_json("/api/v1/users/login", &json!({"username": "ada"}))
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "password");

    let (access, refresh_1) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let r = get_as(&hub, "/api/v1/users/me", &access).await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(
        (me["username"].as_str(), me["role"].as_str()),
        (Some("ada"), Some("admin"))
    );
    // The README's curl examples work with the token.
    let service = json!({"name": "user-service", "base_url": "http://127.0.0.1:9", "health_endpoint": "/health"});
    let r = post_as(&hub, "/api/services", &access, &service).await;
    assert_eq!(r.status(), 201);

    // Rotation: the new pair works, the spent refresh token is refused.
    let r = refresh(&hub, &refresh_1).await;
    assert_eq!(r.status(), 200);
    let pair: Value = r.json().await.unwrap();
    let access_2 = pair["access_token"].as_str().unwrap().to_owned();
    let refresh_2 = pair["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(access_2, access);
    assert_eq!(get_as(&hub, "/api/services", &access_2).await.status(), 200);
    let r = refresh(&hub, &refresh_1).await;
    assert_eq!(r.status(), 401, "a spent refresh token is refused");
    // A replay means the token leaked: the whole login is revoked.
    assert_eq!(get_as(&hub, "/api/services", &access_2).await.status(), 401);
    assert_eq!(refresh(&hub, &refresh_2).await.status(), 401);

    // Login by e-mail works too; a fresh login is a fresh family.
    let r = hub
        .post_json(
            "/api/v1/users",
            &json!({"username": "eve", "email": "eve@example.org", "password": "eve's password", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status(), 401, "creating users needs a token");
    let (access_3, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let eve = json!({"username": "eve", "email": "eve@example.org", "password": "eve's password", "role": "viewer"});
    let r = post_as(&hub, "/api/v1/users", &access_3, &eve).await;
    assert_eq!(r.status(), 201);
    let r = hub
        .post_json(
            "/api/v1/users/login",
            &json!({"email": "eve@example.org", "password": "eve's password"}),
        )
        .await;
    assert_eq!(r.status(), 200);

    // Logout ends the login: its access and refresh tokens.
    let (access_4, refresh_4) = tokens(&hub, "vic", VIEWER_PASSWORD).await;
    let r = hub
        .client
        .post(hub.url("/api/v1/users/logout"))
        .bearer_auth(&access_4)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get_as(&hub, "/api/services", &access_4).await.status(), 401);
    assert_eq!(refresh(&hub, &refresh_4).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_sessions_expire_on_the_hubs_clock() {
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(required, clock.clone()).await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    let (access, refresh_token) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let session = browser_login(&hub, "ada", ADMIN_PASSWORD).await;

    clock.advance(Duration::from_secs(14 * 60));
    assert_eq!(get_as(&hub, "/api/services", &access).await.status(), 200);
    assert_eq!(session.get(&hub, "/").await.status(), 200);
    clock.advance(Duration::from_secs(2 * 60));
    assert_eq!(
        get_as(&hub, "/api/services", &access).await.status(),
        401,
        "access tokens last 15 minutes"
    );
    // The refresh token outlives it and gives a new pair.
    let r = refresh(&hub, &refresh_token).await;
    assert_eq!(r.status(), 200);
    let pair: Value = r.json().await.unwrap();
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh_token = pair["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(get_as(&hub, "/api/services", &access).await.status(), 200);

    // Sessions last 7 days, refresh tokens 30.
    clock.advance(Duration::from_secs(7 * 86_400));
    let r = session.get(&hub, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the session expired");
    assert!(r.headers()[LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/login"));
    clock.advance(Duration::from_secs(23 * 86_400));
    assert_eq!(refresh(&hub, &refresh_token).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_api_tokens_work_until_revoked_and_never_exceed_their_owner() {
    let hub = hub_with_accounts().await;
    let (viewer, _) = tokens(&hub, "vic", VIEWER_PASSWORD).await;
    // A viewer cannot mint an admin token.
    let r = post_as(
        &hub,
        "/api/v1/tokens",
        &viewer,
        &json!({"name": "ci", "role": "admin"}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "role");

    let (admin, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let r = post_as(
        &hub,
        "/api/v1/tokens",
        &admin,
        &json!({"name": "backup script", "role": "admin"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let script_token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_i64().unwrap();

    // The script uses it like the README's curl examples.
    let r = hub
        .client
        .post(hub.url("/api/services"))
        .header("Authorization", format!("Bearer {script_token}"))
        .json(&json!({"name": "payment-service", "base_url": "http://127.0.0.1:9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Listed without the secret, stored hashed.
    let list: Value = get_as(&hub, "/api/v1/tokens", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "backup script");
    assert!(!list.to_string().contains(&script_token));
    let db = std::fs::read(hub.db_path()).unwrap_or_default();
    let wal = std::fs::read(hub.db_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes
                .windows(script_token.len())
                .any(|w| w == script_token.as_bytes()),
            "the token is stored in clear"
        );
    }

    // A viewer cannot revoke someone else's token.
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        get_as(&hub, "/api/services", &script_token).await.status(),
        200
    );
    // Revoked by its owner: refused from then on.
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = get_as(&hub, "/api/services", &script_token).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("invalid_token"));

    // Everything above is in the audit log, with no secret in it.
    let audit: Value = get_as(&hub, "/api/v1/audit", &admin)
        .await
        .json()
        .await
        .unwrap();
    let text = audit.to_string();
    for action in ["login", "token.create", "token.revoke"] {
        assert!(
            text.contains(&format!("\"{action}\"")),
            "{action} not audited: {text}"
        );
    }
    assert!(!text.contains(ADMIN_PASSWORD) && !text.contains(&script_token));
}

/// A browser: a cookie jar by hand, so the test sees exactly what is sent.
struct Session {
    cookies: Vec<(String, String)>,
}

impl Session {
    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, r: &reqwest::Response) {
        for value in r.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() && !text.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
    }

    fn csrf(&self) -> String {
        self.cookies
            .iter()
            .find(|(k, _)| k == "lookout_csrf")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    async fn get(&self, hub: &TestHub, path: &str) -> reqwest::Response {
        hub.client
            .get(hub.url(path))
            .header(COOKIE, self.header())
            .send()
            .await
            .unwrap()
    }

    async fn post_form(
        &mut self,
        hub: &TestHub,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let r = hub
            .client
            .post(hub.url(path))
            .header(COOKIE, self.header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.absorb(&r);
        r
    }
}

/// Loads the login page (which sets the CSRF cookie) and signs in.
async fn browser_login(hub: &TestHub, username: &str, password: &str) -> Session {
    let mut s = Session { cookies: vec![] };
    let r = s.get(hub, "/login").await;
    assert_eq!(r.status(), 200);
    s.absorb(&r);
    let csrf = s.csrf();
    assert!(!csrf.is_empty(), "the login page sets a CSRF cookie");
    let r = s
        .post_form(
            hub,
            "/login",
            &[
                ("username", username),
                ("password", password),
                ("_csrf", &csrf),
                ("next", "/"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {username}");
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn session_cookies_are_httponly_samesite_and_forms_need_their_csrf_token() {
    let hub = hub_with_accounts().await;
    let mut s = Session { cookies: vec![] };
    let r = s.get(&hub, "/login").await;
    s.absorb(&r);
    let csrf = s.csrf();
    // A login form without the token is refused, and signs nobody in.
    let r = s
        .post_form(
            &hub,
            "/login",
            &[("username", "ada"), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(!s.header().contains("lookout_session"));
    let r = hub
        .client
        .post(hub.url("/login"))
        .header(COOKIE, s.header())
        .form(&[
            ("username", "ada"),
            ("password", ADMIN_PASSWORD),
            ("_csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("lookout_session="))
        .expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}"
    );
    s.absorb(&r);
    assert_eq!(s.get(&hub, "/").await.status(), 200);

    // A form post with the session but a forged token changes nothing.
    let service = [("name", "csrf-victim"), ("base_url", "http://127.0.0.1:9")];
    let mut forged = service.to_vec();
    forged.push(("_csrf", "forged"));
    let r = s.post_form(&hub, "/services/new", &forged).await;
    assert_eq!(r.status(), 403);
    let r = s.post_form(&hub, "/services/new", &service).await;
    assert_eq!(r.status(), 403, "no token at all");
    // Another site's page posting with the user's cookies is refused too.
    let r = hub
        .client
        .post(hub.url("/services/new"))
        .header(COOKIE, s.header())
        .header("Origin", "http://evil.example")
        .form(&[
            ("name", "csrf-victim"),
            ("base_url", "http://127.0.0.1:9"),
            ("_csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (admin, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let list: Value = get_as(&hub, "/api/services", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    // With its token the same form works.
    let mut good = service.to_vec();
    good.push(("_csrf", &csrf));
    let r = s.post_form(&hub, "/services/new", &good).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let list: Value = get_as(&hub, "/api/services", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "csrf-victim");

    // Logout ends the session on the hub, not only in the browser.
    let stolen = s.header();
    let r = s.post_form(&hub, "/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");
    let r = hub
        .client
        .get(hub.url("/"))
        .header(COOKIE, stolen)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the old cookie is dead");
}

async fn login_from(hub: &TestHub, client_ip: &str, password: &str) -> reqwest::Response {
    hub.client
        .post(hub.url("/api/v1/users/login"))
        .header("X-Forwarded-For", client_ip)
        .json(&json!({"username": "ada", "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_logins_are_limited_per_client_with_retry_after() {
    // The hub sits behind a reverse proxy on 127.0.0.1 that names the client.
    let hub = spawn_hub_with(|c| {
        c.auth.mode = AuthMode::Required;
        c.auth.trusted_proxies = lookout_hub::auth::client::parse_trusted("127.0.0.1").unwrap();
    })
    .await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    let attacker = "203.0.113.5";
    for _ in 0..10 {
        assert_eq!(login_from(&hub, attacker, "guess").await.status(), 401);
    }
    let r = login_from(&hub, attacker, ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 429, "even the right password waits");
    let wait: u64 = r.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    assert_eq!(error_code(r).await, "too_many_requests");
    // The login form counts against the same limit.
    let r = hub
        .client
        .post(hub.url("/login"))
        .header("X-Forwarded-For", attacker)
        .form(&[("username", "ada"), ("password", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Someone else is not locked out by it.
    assert_eq!(
        login_from(&hub, "203.0.113.6", ADMIN_PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_are_ignored_from_untrusted_peers() {
    let hub = spawn_hub_with(required).await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    // A client that invents a new address for every attempt is still one client.
    for i in 0..10 {
        let r = login_from(&hub, &format!("198.51.100.{i}"), "guess").await;
        assert_eq!(r.status(), 401);
    }
    let r = login_from(&hub, "198.51.100.99", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn control_actions_and_log_reads_are_limited_too() {
    let hub = spawn_hub_with(|c| {
        c.auth.rate_limits.control = lookout_hub::auth::limit::Rate::per_minute(3);
        c.auth.rate_limits.logs = lookout_hub::auth::limit::Rate::per_minute(2);
    })
    .await;
    for _ in 0..2 {
        let r = hub.get("/api/services/nothing-here/logs").await;
        assert_ne!(r.status(), 429);
    }
    let r = hub.get("/api/services/nothing-here/logs").await;
    assert_eq!(r.status(), 429);
    assert_eq!(error_code(r).await, "too_many_requests");
    // Without systemd the action fails, but it still counts.
    for _ in 0..3 {
        let r = hub.post("/api/services/nothing-here/restart").await;
        assert_ne!(r.status(), 429);
    }
    let r = hub.post("/api/services/nothing-here/restart").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key(RETRY_AFTER));
    // Each attempt is in the audit log, with its outcome.
    let audit: Value = hub.get_json("/api/v1/audit").await;
    let restarts = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "unit.restart")
        .count();
    assert_eq!(restarts, 3, "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_commands_manage_accounts_with_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run_cli(
        dir.path(),
        &["user", "add", "ada", "--admin"],
        Some("short"),
    );
    assert!(!ok);
    assert!(stderr.starts_with("lookout: invalid password"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let (ok, _, stderr) = run_cli(dir.path(), &["user", "add", "ada", "--admin"], None);
    assert!(!ok);
    assert!(stderr.contains("no password on standard input"), "{stderr}");
    let (ok, _, stderr) = run_cli(
        dir.path(),
        &["user", "add", "bad name!"],
        Some(ADMIN_PASSWORD),
    );
    assert!(!ok);
    assert!(stderr.contains("invalid username"), "{stderr}");

    add_user_in(dir.path(), None, "ada", ADMIN_PASSWORD, true);
    let (ok, _, stderr) = run_cli(dir.path(), &["user", "add", "ada"], Some(ADMIN_PASSWORD));
    assert!(!ok);
    assert!(stderr.contains("already taken"), "{stderr}");
    add_user_in(dir.path(), None, "vic", VIEWER_PASSWORD, false);
    let (ok, out, _) = run_cli(dir.path(), &["user", "list"], None);
    assert!(ok);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows.iter().map(|r| (r[0], r[1])).collect::<Vec<_>>(),
        [("ada", "admin"), ("vic", "viewer")]
    );
    // The last admin cannot be removed; a viewer can.
    let (ok, _, stderr) = run_cli(dir.path(), &["user", "remove", "ada"], None);
    assert!(!ok);
    assert!(stderr.contains("last admin"), "{stderr}");
    let (ok, _, _) = run_cli(dir.path(), &["user", "remove", "vic"], None);
    assert!(ok);

    // The account works against a hub on the same data directory, and a new
    // password takes effect there.
    let data_dir = dir.path().to_path_buf();
    let hub = spawn_hub_with(move |c| {
        c.auth.mode = AuthMode::Required;
        c.data_dir = data_dir.clone();
        c.database =
            lookout_hub::config::DatabaseUrl::Sqlite(data_dir.join(lookout_hub::config::DB_FILE));
    })
    .await;
    assert_eq!(login(&hub, "ada", ADMIN_PASSWORD).await.status(), 200);
    assert_eq!(login(&hub, "vic", VIEWER_PASSWORD).await.status(), 401);
    let (access, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let (ok, _, stderr) = run_cli(
        dir.path(),
        &["user", "passwd", "ada"],
        Some("a brand new one"),
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        get_as(&hub, "/api/services", &access).await.status(),
        401,
        "signed out everywhere"
    );
    assert_eq!(login(&hub, "ada", ADMIN_PASSWORD).await.status(), 401);
    assert_eq!(login(&hub, "ada", "a brand new one").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_is_closed_until_an_admin_opens_it() {
    let hub = hub_with_accounts().await;
    let new = json!({"email": "sam@example.org", "password": "sam's password"});
    let r = hub.post_json("/api/v1/users/register", &new).await;
    assert_eq!(r.status(), 403);
    let (admin, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let r = hub
        .client
        .put(hub.url("/api/v1/settings"))
        .bearer_auth(&admin)
        .json(&json!({"open_registration": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = hub.post_json("/api/v1/users/register", &new).await;
    assert_eq!(r.status(), 201);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["role"], "viewer", "self-registered accounts only look");
    assert!(user.get("password_hash").is_none());
    let r = hub
        .post_json(
            "/api/v1/users/login",
            &json!({"email": "sam@example.org", "password": "sam's password"}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// A self-signed certificate for 127.0.0.1 / localhost.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let pem = cert.cert.pem();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, &pem).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path, pem.into_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_https_with_secure_host_only_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(dir.path());
    let hub = spawn_hub_with(move |c| {
        c.auth.mode = AuthMode::Required;
        c.tls = Some(lookout_hub::config::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
        c.auth.tls = true;
    })
    .await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("https://localhost:{}{p}", hub.addr.port());
    let r = client.get(url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csrf_cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        csrf_cookie.starts_with("__Host-lookout_csrf=") && csrf_cookie.contains("Secure"),
        "{csrf_cookie}"
    );
    let r = client
        .post(url("/api/v1/users/login"))
        .json(&json!({"username": "ada", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP on the TLS port gets nothing useful.
    let plain = hub.client.get(hub.url("/api/services")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_sees_the_dashboard_without_the_buttons_that_change_things() {
    let hub = hub_with_accounts().await;
    let (admin, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let r = post_as(
        &hub,
        "/api/services",
        &admin,
        &json!({"name": "shown-to-all", "base_url": "http://127.0.0.1:9"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let service_page = format!("/services/{id}");
    let viewer = browser_login(&hub, "vic", VIEWER_PASSWORD).await;
    let page = viewer.get(&hub, "/").await.text().await.unwrap();
    assert!(page.contains("shown-to-all"));
    assert!(
        !page.contains("id=\"add-button\""),
        "a viewer is offered to add"
    );
    // The service's page, where its actions are.
    let viewed = viewer.get(&hub, &service_page).await.text().await.unwrap();
    for control in ["/delete\"", "/edit\"", "/check\"", "/alerts\""] {
        assert!(!viewed.contains(control), "a viewer is offered {control}");
    }
    assert!(
        page.contains("id=\"account-link\">vic<"),
        "signed in as vic"
    );
    assert!(
        !page.contains("href=\"/users\""),
        "user admin is for admins"
    );
    let ada = browser_login(&hub, "ada", ADMIN_PASSWORD).await;
    let admin_page = ada.get(&hub, "/").await.text().await.unwrap();
    for control in ["id=\"add-button\"", "href=\"/users\""] {
        assert!(admin_page.contains(control), "the admin misses {control}");
    }
    let managed = ada.get(&hub, &service_page).await.text().await.unwrap();
    for control in ["/delete\"", "/edit\"", "/check\"", "/alerts\""] {
        assert!(managed.contains(control), "the admin misses {control}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_authentication_the_hub_answers_only_to_its_loopback_names() {
    let hub = lookout_testkit::spawn_hub().await;
    let port = hub.addr.port();
    let with_host = |host: String, method: Method| {
        hub.client
            .request(method, hub.url("/api/services"))
            .header("Host", host)
            .json(&json!({"name": "rebound", "base_url": "http://127.0.0.1:9"}))
            .send()
    };
    // A page whose name was re-pointed at 127.0.0.1 (DNS rebinding) is
    // same-origin to the browser: the Host header gives it away.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        format!("192.168.1.5:{port}"),
    ] {
        for method in [Method::GET, Method::POST] {
            let r = with_host(host.clone(), method.clone()).await.unwrap();
            assert_eq!(r.status(), 403, "{method} with Host {host}");
            assert_eq!(error_code(r).await, "forbidden");
        }
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "app.localhost".into(),
    ] {
        let r = with_host(host.clone(), Method::GET).await.unwrap();
        assert_eq!(r.status(), 200, "Host {host}");
    }
    let list: Value = hub.get_json("/api/services").await;
    assert_eq!(list, json!([]), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_redirects_stay_on_the_hub() {
    let hub = hub_with_accounts().await;
    let s = browser_login(&hub, "ada", ADMIN_PASSWORD).await;
    for next in [
        "/%09/evil.example",
        "//evil.example",
        "/%0Aevil",
        "https://evil.example",
        "/\\evil.example",
    ] {
        let r = s.get(&hub, &format!("/login?next={next}")).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(r.headers()[LOCATION], "/", "{next}");
    }
    let r = s.get(&hub, "/login?next=/scan%3Fx%3D1").await;
    assert_eq!(r.headers()[LOCATION], "/scan?x=1");
}

/// A refused sign-in is audited without what was typed: people type their
/// password into the name field. The row names the account when the name is
/// one, else "unknown user", and no audit text is longer than the log keeps.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_sign_in_is_audited_without_echoing_what_was_typed() {
    let hub = spawn_hub_with(required).await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    let (admin, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let typed_secret = format!("hunter2-{}", "x".repeat(10_000));
    assert_eq!(login(&hub, &typed_secret, "whatever").await.status(), 401);
    assert_eq!(login(&hub, "ADA", "wrong password").await.status(), 401);
    let r = hub
        .post_form(
            "/login",
            &[("username", "my-secret-passphrase"), ("password", "x")],
        )
        .await;
    assert_eq!(r.status(), 401);

    let audit: Value = get_as(&hub, "/api/v1/audit", &admin)
        .await
        .json()
        .await
        .unwrap();
    let text = audit.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("my-secret-passphrase"),
        "{text}"
    );
    let denied: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login" && e["outcome"] == "denied")
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["target"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        denied.len(),
        3,
        "each refused sign-in is audited: {denied:?}"
    );
    assert!(denied.contains(&("unknown user", "")), "{denied:?}");
    assert!(denied.contains(&("unknown user", "session")), "{denied:?}");
    // A wrong password for a real account names it, as it is spelled.
    assert!(denied.contains(&("ada", "")), "{denied:?}");
    assert!(audit.as_array().unwrap().iter().all(|e| e["actor"]
        .as_str()
        .unwrap_or("")
        .chars()
        .count()
        <= 200));
}

/// A flood of wrong passwords, each from its own address (so each within
/// its per-address limit): the hub hashes a bounded number at a time and
/// refuses the rest with 503 and `Retry-After`, so its memory stays small and
/// its other routes answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_sign_ins_is_bounded_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    add_user_in(dir.path(), None, "ada", ADMIN_PASSWORD, true);
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--systemd", "none", "--auth", "required"])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path());
    let hub = lookout_testkit::spawn_hub_process(cmd, dir);
    let pid = hub.pid().unwrap();
    let url = hub.url("/api/v1/users/login");
    let logins = (0..100u8).map(|i| {
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 1, i + 1]))
            .build()
            .unwrap();
        let url = url.clone();
        async move {
            let r = client
                .post(url)
                .json(&json!({"username": "ada", "password": format!("wrong {i}")}))
                .send()
                .await
                .unwrap();
            let retry = r.headers().get(RETRY_AFTER).is_some();
            (r.status(), retry)
        }
    });
    let probes = async {
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            assert_eq!(hub.get("/healthz").await.status(), 200);
            slowest = slowest.max(started.elapsed());
        }
        slowest
    };
    let (outcomes, slowest) = tokio::join!(futures::future::join_all(logins), probes);
    let refused = outcomes
        .iter()
        .filter(|(s, retry)| *s == StatusCode::SERVICE_UNAVAILABLE && *retry)
        .count();
    let wrong = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(refused + wrong, 100, "{outcomes:?}");
    assert!(refused > 0, "nothing was refused: {outcomes:?}");
    let peak_kib = lookout_testkit::bench::status_kib(pid, "VmHWM");
    eprintln!(
        "100 wrong passwords at once: {refused} refused (503), {wrong} checked (401); \
         hub peak RSS {peak_kib} KiB; slowest /healthz meanwhile {slowest:?}"
    );
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz took {slowest:?}"
    );
    // The flood over, the right password signs in.
    assert_eq!(login(&hub, "ada", ADMIN_PASSWORD).await.status(), 200);
}

/// A live stream lasts as long as the credential that opened it: revoking a
/// token ends its event stream, and deleting a user closes their WebSocket.
#[tokio::test(flavor = "multi_thread")]
async fn live_streams_end_with_their_credential() {
    use futures::StreamExt as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let hub = spawn_hub_with(required).await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    let (admin, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;

    // An event stream opened with a personal token, then the token revoked.
    let r = post_as(
        &hub,
        "/api/v1/tokens",
        &admin,
        &json!({"name": "dashboard on the wall", "role": "viewer"}),
    )
    .await;
    let created: Value = r.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let mut events =
        lookout_testkit::SseClient::connect(&client, &hub.url("/api/events"), None).await;
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/tokens/{}", created["id"])))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        events.ended(Duration::from_secs(10)).await,
        "the event stream ended after its token was revoked"
    );

    // A viewer's WebSocket, then the viewer deleted.
    let r = post_as(
        &hub,
        "/api/v1/users",
        &admin,
        &json!({"username": "kiosk", "password": VIEWER_PASSWORD, "role": "viewer"}),
    )
    .await;
    let kiosk: Value = r.json().await.unwrap();
    let (viewer, _) = tokens(&hub, "kiosk", VIEWER_PASSWORD).await;
    let mut request = format!("ws://{}/api/services/ws", hub.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {viewer}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/users/{}", kiosk["id"])))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let closed = async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                    return frame.map(|f| u16::from(f.code));
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    };
    let code = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the WebSocket closed after its user was deleted");
    assert_eq!(code, Some(1008));
}

/// What the page at `path` shows between `id="ID">` and the next `<`.
fn element_text(page: &str, id: &str) -> String {
    let start = page
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id} in {page}"))
        + id.len()
        + 6;
    page[start..].split('<').next().unwrap().trim().to_owned()
}

/// The code an authenticator app shows at the hub's clock.
fn app_code(secret: &str, clock: &ManualClock) -> String {
    use lookout_hub::clock::Clock as _;
    let now = u64::try_from(clock.now().timestamp()).unwrap();
    lookout_hub::auth::totp::code_at(secret, now).unwrap()
}

/// Turns two-factor sign-in on from the account page, as a person does:
/// the key under the QR code typed into an app, the app's code sent back.
/// The key and the recovery codes shown once.
async fn enrol(hub: &TestHub, s: &mut Session, clock: &ManualClock) -> (String, Vec<String>) {
    let page = s
        .get(hub, "/account/two-factor")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<svg"), "a QR code");
    let secret = element_text(&page, "totp-secret").replace(' ', "");
    let csrf = s.csrf();
    // A wrong code turns nothing on.
    let r = s
        .post_form(
            hub,
            "/account/two-factor",
            &[("secret", &secret), ("code", "000000"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("is not the app"));
    let code = app_code(&secret, clock);
    let r = s
        .post_form(
            hub,
            "/account/two-factor",
            &[("secret", &secret), ("code", &code), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let codes: Vec<String> = page
        .split("<li><code>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{page}");
    (secret, codes)
}

/// Signs in with the password, then the code: the session, or the refusal.
async fn sign_in_with_code(
    hub: &TestHub,
    password: &str,
    code: &str,
) -> (reqwest::Response, Session) {
    let mut s = browser_login(hub, "ada", password).await;
    assert!(
        !s.header().contains("lookout_session"),
        "the password alone signs nobody in"
    );
    assert!(s.header().contains("lookout_challenge="));
    let page = s.get(hub, "/login/code?next=/account").await;
    assert_eq!(page.status(), 200);
    let csrf = s.csrf();
    let r = s
        .post_form(
            hub,
            "/login/code",
            &[("code", code), ("next", "/account"), ("_csrf", &csrf)],
        )
        .await;
    (r, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_factor_sign_in_takes_a_code_once_or_a_recovery_code_once() {
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(
        |c| {
            required(c);
            c.auth.rate_limits.login = None;
        },
        clock.clone(),
    )
    .await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    let mut s = browser_login(&hub, "ada", ADMIN_PASSWORD).await;
    let account = s.get(&hub, "/account").await.text().await.unwrap();
    assert!(element_text(&account, "two-factor-state").starts_with("Off."));
    let (secret, recovery) = enrol(&hub, &mut s, &clock).await;
    let account = s.get(&hub, "/account").await.text().await.unwrap();
    assert!(account.contains("10 recovery codes left"), "{account}");

    // The code that turned it on is spent: the same step does not sign in.
    let (r, _) = sign_in_with_code(&hub, ADMIN_PASSWORD, &app_code(&secret, &clock)).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("wrong or already used"));

    // The next step's code does, once.
    clock.advance(Duration::from_secs(30));
    let code = app_code(&secret, &clock);
    let (r, mut signed_in) = sign_in_with_code(&hub, ADMIN_PASSWORD, &code).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/account");
    signed_in.absorb(&r);
    assert!(signed_in.header().contains("lookout_session="));
    assert!(!signed_in.header().contains("lookout_challenge="));
    assert_eq!(signed_in.get(&hub, "/account").await.status(), 200);
    let (r, _) = sign_in_with_code(&hub, ADMIN_PASSWORD, &code).await;
    assert_eq!(r.status(), 401, "a code is good once");

    // Without a challenge (the password skipped), no code signs in.
    let mut stranger = Session { cookies: vec![] };
    let r = stranger.get(&hub, "/login").await;
    stranger.absorb(&r);
    let csrf = stranger.csrf();
    clock.advance(Duration::from_secs(30));
    let r = stranger
        .post_form(
            &hub,
            "/login/code",
            &[("code", &app_code(&secret, &clock)), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 401);
    assert!(!stranger.header().contains("lookout_session"));
    // A challenge expires after five minutes.
    let mut late = browser_login(&hub, "ada", ADMIN_PASSWORD).await;
    clock.advance(Duration::from_secs(301));
    let csrf = late.csrf();
    let r = late
        .post_form(
            &hub,
            "/login/code",
            &[("code", &app_code(&secret, &clock)), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("took too long"));

    // A recovery code, typed in capitals, signs in once.
    let (r, _) = sign_in_with_code(&hub, ADMIN_PASSWORD, &recovery[3].to_uppercase()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (r, _) = sign_in_with_code(&hub, ADMIN_PASSWORD, &recovery[3]).await;
    assert_eq!(r.status(), 401);
    let account = signed_in.get(&hub, "/account").await.text().await.unwrap();
    assert!(account.contains("9 recovery codes left"), "{account}");

    // The API asks for the code too; personal API tokens need none.
    let r = login(&hub, "ada", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("`code`"),
        "{body}"
    );
    let with_code = |code: String| {
        let hub = &hub;
        async move {
            hub.post_json(
                "/api/v1/users/login",
                &json!({"username": "ada", "password": ADMIN_PASSWORD, "code": code}),
            )
            .await
            .status()
        }
    };
    assert_eq!(with_code("123456".into()).await, 401);
    clock.advance(Duration::from_secs(30));
    assert_eq!(with_code(app_code(&secret, &clock)).await, 200);
    assert_eq!(with_code(app_code(&secret, &clock)).await, 401);
    assert_eq!(with_code(recovery[0].clone()).await, 200);

    // Each refusal is in the audit log, without the code.
    let (access, _) = {
        clock.advance(Duration::from_secs(30));
        let r = hub
            .post_json(
                "/api/v1/users/login",
                &json!({"username": "ada", "password": ADMIN_PASSWORD,
                        "code": app_code(&secret, &clock)}),
            )
            .await;
        let body: Value = r.json().await.unwrap();
        (body["access_token"].as_str().unwrap().to_owned(), ())
    };
    // A personal API token works without a code, as scripts need.
    let r = post_as(
        &hub,
        "/api/v1/tokens",
        &access,
        &json!({"name": "backup script", "role": "viewer"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let script: Value = r.json().await.unwrap();
    let script = script["token"].as_str().unwrap();
    assert_eq!(get_as(&hub, "/api/services", script).await.status(), 200);
    let audit = get_as(&hub, "/api/v1/audit", &access)
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains("second factor"), "{audit}");
    assert!(audit.contains("user.2fa.on"), "{audit}");
    assert!(!audit.contains(&recovery[1]) && !audit.contains(&secret));

    // Turned off from the account page with a code: the password alone
    // signs in again.
    clock.advance(Duration::from_secs(30));
    let csrf = signed_in.csrf();
    let r = signed_in
        .post_form(
            &hub,
            "/account/two-factor/off",
            &[("code", "999999"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 422, "a wrong code leaves it on");
    let r = signed_in
        .post_form(
            &hub,
            "/account/two-factor/off",
            &[("code", &app_code(&secret, &clock)), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(login(&hub, "ada", ADMIN_PASSWORD).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_count_against_the_login_limit_and_the_cli_resets_two_factor() {
    // Behind a reverse proxy on 127.0.0.1 that names the client.
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(
        |c| {
            required(c);
            c.auth.trusted_proxies = lookout_hub::auth::client::parse_trusted("127.0.0.1").unwrap();
        },
        clock.clone(),
    )
    .await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    let mut s = browser_login(&hub, "ada", ADMIN_PASSWORD).await;
    let (secret, _) = enrol(&hub, &mut s, &clock).await;

    // An attacker with the password guesses codes: the login limit stops
    // the guessing, the right code included.
    let attacker = browser_login(&hub, "ada", ADMIN_PASSWORD).await;
    let csrf = attacker.csrf();
    let guess = |code: String| {
        let hub = &hub;
        let header = attacker.header();
        let csrf = csrf.clone();
        async move {
            hub.client
                .post(hub.url("/login/code"))
                .header("X-Forwarded-For", "203.0.113.9")
                .header(COOKIE, header)
                .form(&[("code", code.as_str()), ("_csrf", csrf.as_str())])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let mut statuses = Vec::new();
    for n in 0..12 {
        statuses.push(guess(format!("{:06}", 100_000 + n)).await);
    }
    assert!(statuses.contains(&StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        guess(app_code(&secret, &clock)).await,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right code waits"
    );

    // The admin who lost their phone: `lookout user reset-2fa`.
    let reset = |name: &str| {
        let mut args = vec!["user", "reset-2fa", name];
        if let Some(url) = hub.database() {
            args.extend(["--database", url]);
        }
        run_cli(hub.data_dir(), &args, None)
    };
    let (ok, out, stderr) = reset("ada");
    assert!(ok, "{stderr}");
    assert!(out.contains("two-factor sign-in is off for ada"), "{out}");
    let (ok, _, stderr) = reset("ada");
    assert!(!ok);
    assert_eq!(
        stderr.trim_end(),
        "lookout: ada does not use two-factor sign-in"
    );
    let (ok, _, stderr) = reset("nobody");
    assert!(!ok && stderr.contains("no user \"nobody\""), "{stderr}");
    assert_eq!(
        hub.client
            .post(hub.url("/api/v1/users/login"))
            .header("X-Forwarded-For", "203.0.113.10")
            .json(&json!({"username": "ada", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_factor_required_of_admins_an_admin_is_a_viewer_until_it_is_on() {
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(
        |c| {
            required(c);
            c.auth.rate_limits.login = None;
            c.auth.two_factor_admins = true;
        },
        clock.clone(),
    )
    .await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    add_user(&hub, "vic", VIEWER_PASSWORD, false);
    // Viewers are not asked.
    assert_eq!(login(&hub, "vic", VIEWER_PASSWORD).await.status(), 200);
    // The admin's password alone gets no tokens...
    let r = login(&hub, "ada", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "forbidden");
    // ...and in a browser a viewer's session, sent to the setup page.
    let mut s = Session { cookies: vec![] };
    let r = s.get(&hub, "/login").await;
    s.absorb(&r);
    let csrf = s.csrf();
    let r = s
        .post_form(
            &hub,
            "/login",
            &[
                ("username", "ada"),
                ("password", ADMIN_PASSWORD),
                ("_csrf", &csrf),
                ("next", "/users"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/account/two-factor");
    let page = s
        .get(&hub, "/account/two-factor")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"two-factor-required\""), "{page}");
    assert_eq!(
        s.get(&hub, "/users").await.status(),
        403,
        "a viewer meanwhile"
    );
    assert_eq!(s.get(&hub, "/").await.status(), 200);

    // Set up: the session becomes an admin's.
    enrol(&hub, &mut s, &clock).await;
    let users = s.get(&hub, "/users").await;
    assert_eq!(users.status(), 200);
    let users = users.text().await.unwrap();
    let row = |name: &str| {
        let start = users.find(&format!("data-user=\"{name}\"")).unwrap();
        users[start..].split("</tr>").next().unwrap().to_owned()
    };
    assert!(row("ada").contains(">on<"), "{}", row("ada"));
    assert!(row("vic").contains(">off<"), "{}", row("vic"));
    // The API now takes the password and a code.
    clock.advance(Duration::from_secs(30));
    assert_eq!(login(&hub, "ada", ADMIN_PASSWORD).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_factor_is_set_up_and_turned_off_over_the_api_too() {
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(
        |c| {
            required(c);
            c.auth.rate_limits.login = None;
        },
        clock.clone(),
    )
    .await;
    add_user(&hub, "ada", ADMIN_PASSWORD, true);
    let (access, _) = tokens(&hub, "ada", ADMIN_PASSWORD).await;
    let state = || async {
        get_as(&hub, "/api/v1/users/me/two-factor", &access)
            .await
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(state().await["enabled"], false);

    let r = post_as(&hub, "/api/v1/users/me/two-factor/key", &access, &json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let key: Value = r.json().await.unwrap();
    let secret = key["secret"].as_str().unwrap();
    assert!(key["otpauth_url"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/lookout:ada?"));
    // Bad input: each problem named, nothing turned on.
    let r = post_as(&hub, "/api/v1/users/me/two-factor", &access, &json!({})).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["secret", "code"], "{body}");
    for (bad, field) in [
        (json!({"secret": "not base32!", "code": "123456"}), "secret"),
        (json!({"secret": secret, "code": "000000"}), "code"),
    ] {
        let r = post_as(&hub, "/api/v1/users/me/two-factor", &access, &bad).await;
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["fields"][0]["field"], field, "{body}");
    }
    assert_eq!(state().await["enabled"], false);

    let r = post_as(
        &hub,
        "/api/v1/users/me/two-factor",
        &access,
        &json!({"secret": secret, "code": app_code(secret, &clock)}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let on: Value = r.json().await.unwrap();
    let codes = on["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let state_now = state().await;
    assert_eq!(
        (&state_now["enabled"], &state_now["recovery_codes_left"]),
        (&json!(true), &json!(10))
    );
    let users: Value = get_as(&hub, "/api/v1/users", &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(users[0]["two_factor"], true, "{users}");
    assert!(
        !users.to_string().contains(secret),
        "the key is never shown again"
    );
    // A second key is refused while one is on.
    let r = post_as(
        &hub,
        "/api/v1/users/me/two-factor",
        &access,
        &json!({"secret": secret, "code": app_code(secret, &clock)}),
    )
    .await;
    assert_eq!(r.status(), 409);

    // Off: a recovery code does it.
    let r = post_as(
        &hub,
        "/api/v1/users/me/two-factor/off",
        &access,
        &json!({"code": "zzzzz-zzzzz"}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = post_as(
        &hub,
        "/api/v1/users/me/two-factor/off",
        &access,
        &json!({"code": codes[0]}),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(state().await["enabled"], false);
    assert_eq!(login(&hub, "ada", ADMIN_PASSWORD).await.status(), 200);
}
