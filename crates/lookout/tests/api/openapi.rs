//! The API's description: complete (every API route of the table is in it),
//! served at `/api/openapi.json`, browsable at `/api/docs`, and true: a real
//! schemathesis run (from PyPI; `scripts/test` installs it) against a real
//! hub on a real systemd user manager finds no server error and no answer
//! that breaks the documented schemas.

use std::process::Command;
use std::time::Duration;

use fantoccini::Locator;
use lookout_testkit::spawn_hub;
use lookout_testkit::systemd::SystemdSandbox;
use serde_json::{json, Value};

#[test]
fn every_api_route_is_documented() {
    let table = lookout_hub::routes::route_table();
    let missing = lookout_hub::openapi::undocumented(&table);
    assert!(
        missing.is_empty(),
        "routes without a description: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_lists_every_operation_with_its_schemas() {
    let hub = spawn_hub().await;
    let r = hub.get("/api/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let table = lookout_hub::routes::route_table();
    let api: Vec<_> = table.iter().filter(|r| !r.rule.page).collect();
    for route in &api {
        let op = &doc["paths"][&route.path][route.method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{} {} missing", route.method, route.path);
        assert!(
            op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap()
                .ends_with("/ErrorBody")
        );
        // Path parameters are declared, one per placeholder.
        let placeholders = route.path.matches('{').count();
        let declared = op["parameters"]
            .as_array()
            .map_or(0, |p| p.iter().filter(|p| p["in"] == "path").count());
        assert_eq!(placeholders, declared, "{} {}", route.method, route.path);
    }
    // Parameters say what the routes read: ids are positive integers, but
    // the systemd routes also take a unit name and an app is named.
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no {name}"))["schema"]
            .clone()
    };
    let id = param("/api/services/{id}", "get", "id");
    assert_eq!(
        (&id["type"], &id["minimum"]),
        (&json!("integer"), &json!(1))
    );
    assert_eq!(
        param("/api/services/{id}/logs", "get", "id")["type"],
        "string"
    );
    assert_eq!(
        param("/api/services/{id}/start", "post", "id")["type"],
        "string"
    );
    let app = param("/api/apps/{id}", "delete", "id");
    assert_eq!(app["type"], "string");
    assert!(app["pattern"].is_string(), "{app}");
    // Counts are bounded as the hub bounds them: the largest is served, one
    // more is refused with the field named.
    let limit = param("/api/services/{id}/checks", "get", "limit");
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&json!(1), &json!(10000))
    );
    assert_eq!(
        param("/api/services/{id}/logs", "get", "lines")["maximum"],
        10000
    );
    // A body is required where the hub needs one; a push URL's settings
    // have defaults, so it may be left out, and the hub takes that.
    assert_eq!(
        doc["paths"]["/api/services"]["post"]["requestBody"]["required"],
        true
    );
    let push = &doc["paths"]["/api/services/{id}/push-token"]["post"]["requestBody"];
    assert_ne!(push["required"], true, "{push}");
    // The words a query takes are listed.
    assert_eq!(
        param("/api/services", "get", "status")["enum"],
        json!(["configured", "discovered", "raw", "all", ""])
    );
    assert_eq!(
        param("/api/push/{token}", "post", "status")["enum"],
        json!(["up", "down", "ok", "fail", "failure", "warning", "update"])
    );
    let web = hub
        .create_service(json!({"name": "web", "base_url": "http://127.0.0.1:9"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let r = hub.post(&format!("/api/services/{web}/push-token")).await;
    assert_eq!(r.status(), 201, "no body: the defaults");
    let r = hub
        .get(&format!("/api/services/{web}/checks?limit=10000"))
        .await;
    assert_eq!(r.status(), 200);
    let r = hub
        .get(&format!("/api/services/{web}/checks?limit=10001"))
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "limit", "{body}");
    // The API's own types, derived from the code.
    let service = &doc["components"]["schemas"]["ServiceView"];
    for field in ["id", "name", "base_url", "state", "health_status"] {
        assert!(
            service["properties"][field].is_object(),
            "ServiceView.{field}: {service}"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["Status"]["enum"],
        json!(["OK", "UPDATE", "WARNING", "FAILURE", "UNKNOWN"])
    );
    assert_eq!(
        doc["paths"]["/api/services"]["post"]["responses"]["201"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/ServiceView"
    );
    // A service's body: exactly the fields the hub accepts (and those it
    // shows, taken back and ignored), typed as shown, nothing else.
    assert_eq!(
        doc["paths"]["/api/services"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/NewService"
    );
    let body = &doc["components"]["schemas"]["NewService"];
    assert_eq!(body["required"], json!(["name"]));
    assert_eq!(body["additionalProperties"], false);
    let documented: Vec<&String> = body["properties"].as_object().unwrap().keys().collect();
    let mut accepted: Vec<&str> = lookout_proto::service::WRITABLE_FIELDS.to_vec();
    accepted.extend(lookout_proto::service::READ_ONLY_FIELDS);
    accepted.sort_unstable();
    let mut documented: Vec<&str> = documented.iter().map(|k| k.as_str()).collect();
    documented.sort_unstable();
    assert_eq!(documented, accepted);
    assert_eq!(body["properties"]["port"]["anyOf"][0]["minimum"], 1);
    assert_eq!(body["properties"]["name"], service["properties"]["name"]);
    assert_eq!(
        body["properties"]["reported_state"]["anyOf"][0]["$ref"],
        "#/components/schemas/ReportedState"
    );
    // Every request body is a schema of its own that refuses unknown
    // fields.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            if op["requestBody"].is_null() {
                continue;
            }
            let name = schema.as_str().unwrap().rsplit('/').next().unwrap();
            // A schema with a rule across fields is the fields' schema and
            // the rule, together.
            let component = &doc["components"]["schemas"][name];
            let fields = match component["allOf"].as_array() {
                Some(parts) => &parts[0],
                None => component,
            };
            assert_eq!(
                fields["additionalProperties"], false,
                "{method} {path}: {name}"
            );
        }
    }
    // Without sign-in a token is taken but none is needed; push URLs never
    // need one.
    assert_eq!(
        doc["paths"]["/api/services"]["post"]["security"],
        json!([{"bearer": []}, {}])
    );
    assert!(doc["paths"]["/api/push/{token}"]["post"]["security"].is_null());
    // With sign-in required, every non-public operation needs a token, and
    // the public ones (probes, push URLs, login) still need none.
    let guarded = lookout_testkit::spawn_hub_with(|c| {
        c.auth.mode = lookout_hub::auth::AuthMode::Required;
    })
    .await;
    let doc: Value = guarded.get("/api/openapi.json").await.json().await.unwrap();
    for route in &api {
        let security =
            &doc["paths"][&route.path][route.method.as_str().to_ascii_lowercase()]["security"];
        if route.rule.access == lookout_hub::auth::Access::Public {
            assert!(security.is_null(), "{} {}", route.method, route.path);
        } else {
            assert_eq!(
                security,
                &json!([{"bearer": []}]),
                "{} {}",
                route.method,
                route.path
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_browses_the_document_and_sends_requests() {
    let hub = spawn_hub().await;
    hub.create_service(json!({"name": "web", "base_url": "http://127.0.0.1:9"}))
        .await;
    let r = hub.get("/api/docs").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );
    let browser = lookout_testkit::browser::Browser::start().await;
    let c = &browser.client;
    c.goto(&hub.url("/api/docs")).await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("body[data-ready=true]"))
        .await
        .unwrap();
    let text = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "/api/services",
        "Register a service",
        "Prometheus HTTP service discovery",
    ] {
        assert!(text.contains(expected), "{expected} on the page:\n{text}");
    }
    // Try it: list the services from the page.
    let op = "details.api-op[data-search^='get /api/services list services']";
    let list = c.find(Locator::Css(op)).await.unwrap();
    list.find(Locator::Css("summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    list.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let result = loop {
        let t = list
            .find(Locator::Css(".api-result"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if t.starts_with("200") || tokio::time::Instant::now() > until {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(result.starts_with("200 OK"), "{result}");
    assert!(result.contains("\"name\": \"web\""), "{result}");
    browser.close().await;
}

/// The schemathesis command: `LOOKOUT_SCHEMATHESIS`, else the one
/// `scripts/test` installs under `target/schemathesis`.
fn schemathesis() -> String {
    if let Ok(st) = std::env::var("LOOKOUT_SCHEMATHESIS") {
        return st;
    }
    let st = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/schemathesis/bin/st"
    );
    assert!(
        std::path::Path::new(st).exists(),
        "schemathesis is not installed: scripts/test installs it (python3 -m venv target/schemathesis && target/schemathesis/bin/pip install schemathesis)"
    );
    st.to_owned()
}

/// Every check: no 5xx; every status, media type, body and header as
/// documented; schema-invalid requests refused with a 4xx and schema-valid
/// ones never refused as malformed (`schemathesis.toml` beside this file
/// names the operations whose bodies carry rules of meaning, answered 422);
/// no method answered that the document does not list; auth, deleted
/// resources and object-level access behaving as declared.
const CHECKS: &str = "all";

/// The configuration the run reads (see its comments).
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis.toml");

/// Schemathesis against `hub`'s document, on the operations `filter`
/// selects: its report, and how many operations it tested.
async fn schemathesis_run(
    hub: &lookout_testkit::TestHub,
    filter: &'static [&'static str],
) -> (String, Option<usize>) {
    let st = schemathesis();
    // Something to find: a service.
    hub.create_service(
        json!({"name": "web", "base_url": "http://127.0.0.1:9", "health_endpoint": "/"}),
    )
    .await;
    let seed = std::env::var("LOOKOUT_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("LOOKOUT_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "30".into());
    let out = tokio::task::spawn_blocking({
        let (schema, base) = (hub.url("/api/openapi.json"), hub.url(""));
        let seed = seed.clone();
        move || {
            Command::new(st)
                .args(["--config-file", CONFIG])
                .args(["run", &schema, "--url", base.trim_end_matches('/')])
                .args(["--checks", CHECKS])
                // Streams that never end: the SSE feeds and the WebSockets
                // (a followed journal answers until the request times out:
                // 20 s each, which made this test's length vary from half
                // a minute to over four).
                .args(["--exclude-path", "/api/events"])
                .args(["--exclude-path", "/api/services/{id}/logs/follow"])
                .args(["--exclude-path", "/api/services/ws"])
                .args(["--exclude-path", "/api/v1/agent/connect"])
                .args(filter)
                .args(["--max-examples", &examples, "--seed", &seed])
                .args(["--generation-database", "none", "--no-color"])
                .args(["--request-timeout", "20"])
                .env("SCHEMATHESIS_HOOKS", "")
                .output()
                .expect("run schemathesis")
        }
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "schemathesis found failures (seed {seed}, {filter:?}):\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tested = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    // The hub is still there and still sound after it all.
    assert_eq!(hub.get("/readyz").await.status(), 200);
    (said, tested)
}

/// How many of the document's operations carry the `systemd` tag, and how
/// many do not; together they are every API route of the table.
async fn operations_by_tag(hub: &lookout_testkit::TestHub) -> (usize, usize) {
    let doc = hub.get_json("/api/openapi.json").await;
    let (mut systemd, mut others) = (0, 0);
    for item in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            let tagged = op["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "systemd"));
            if tagged {
                systemd += 1;
            } else {
                others += 1;
            }
        }
    }
    let operations = lookout_hub::routes::route_table()
        .iter()
        .filter(|r| !r.rule.page)
        .count();
    assert_eq!(systemd + others, operations);
    (systemd, others)
}

/// The systemd operations, on a hub on a real user manager (the test kit's
/// one sandbox, which every systemd test waits for, is held only for
/// them; every other operation is the next test's, in parallel).
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_on_the_systemd_operations() {
    let sb = SystemdSandbox::start();
    // No rate limit, so every operation's logic is reached, not its 429.
    let hub = super::systemd::hub_in_with(
        &sb,
        &[
            "--self-check",
            "on",
            "--rate-login",
            "off",
            "--rate-control",
            "off",
            "--rate-logs",
            "off",
        ],
    );
    // A scan of the sandbox's units, for the routes that take one.
    assert_eq!(hub.post("/api/scan").await.status(), 200);
    let (systemd, _) = operations_by_tag(&hub).await;
    let (said, tested) = schemathesis_run(&hub, &["--include-tag", "systemd"]).await;
    assert!(systemd > 5);
    // Every one but the followed journal, a stream.
    assert_eq!(tested, Some(systemd - 1), "every systemd operation: {said}");
}

/// Every operation on a hub without systemd (its systemd operations answer
/// a documented 404) but with a real container engine (and a running
/// container, for the container routes).
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let podman = lookout_testkit::Podman::start();
    podman.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        lookout_testkit::podman::IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo up; sleep 1000 & wait",
    ]);
    let socket = podman.socket();
    let hub = lookout_testkit::spawn_hub_with(move |c| {
        c.containers = lookout_hub::config::ContainerEngine::Socket(socket.clone());
        // No rate limit, so every operation's logic is reached, not its 429.
        c.auth.rate_limits = lookout_hub::config::RateLimits {
            login: None,
            control: None,
            logs: None,
            agents: None,
        };
    })
    .await;
    let (systemd, others) = operations_by_tag(&hub).await;
    let (said, tested) = schemathesis_run(&hub, &[]).await;
    // Every operation was exercised, but the four streams and the document
    // itself (schemathesis leaves the schema it reads alone).
    assert_eq!(tested, Some(systemd + others - 5), "{said}");
}
