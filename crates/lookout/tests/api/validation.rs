//! Every validation rule and every error status: a JSON body with a code, a
//! message and the offending fields, a 4xx status, and nothing written.

use lookout_testkit::{spawn_hub, TestHub};
use serde_json::{json, Value};

/// Asserts the error contract and returns the body.
async fn expect_error(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status, "wrong status");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"), "content type {ct}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty());
    assert!(body["fields"].is_array());
    body
}

fn fields(body: &Value) -> Vec<String> {
    body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn count(hub: &TestHub) -> usize {
    hub.get_json("/api/services?status=all")
        .await
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_field_rule_is_enforced_on_create() {
    let hub = spawn_hub().await;
    let long = "n".repeat(256);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"description": "no name"}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": long}), "name"),
        (json!({"name": 42}), "name"),
        (json!({"name": null}), "name"),
        (json!({"name": "x", "base_url": "not a url"}), "base_url"),
        (
            json!({"name": "x", "base_url": "/relative/path"}),
            "base_url",
        ),
        (
            json!({"name": "x", "base_url": "ftp://files.example"}),
            "base_url",
        ),
        (
            json!({"name": "x", "base_url": "http://user:secret@host"}),
            "base_url",
        ),
        (json!({"name": "x", "url": "localhost:8080"}), "url"),
        (json!({"name": "x", "port": 0}), "port"),
        (json!({"name": "x", "port": 65536}), "port"),
        (json!({"name": "x", "port": -1}), "port"),
        (json!({"name": "x", "port": "8080"}), "port"),
        (json!({"name": "x", "port": 80.5}), "port"),
        (
            json!({"name": "x", "health_endpoint": "health"}),
            "health_endpoint",
        ),
        (
            json!({"name": "x", "health_endpoint": "//evil.example/h"}),
            "health_endpoint",
        ),
        (
            json!({"name": "x", "health_endpoint": 7}),
            "health_endpoint",
        ),
        (json!({"name": "x", "status": "running"}), "status"),
        (json!({"name": "x", "description": ["a"]}), "description"),
        (
            json!({"name": "x", "check_interval_secs": 0}),
            "check_interval_secs",
        ),
        (
            json!({"name": "x", "check_timeout_ms": 10}),
            "check_timeout_ms",
        ),
        (
            json!({"name": "x", "helth_endpoint": "/h"}),
            "helth_endpoint",
        ),
    ];
    for (body, field) in cases {
        let r = hub.post_json("/api/services", &body).await;
        let err = expect_error(r, 422, "validation_failed").await;
        assert_eq!(fields(&err), [field], "for {body}");
        assert!(
            err["message"].as_str().unwrap().contains(field),
            "message names the field: {err}"
        );
    }
    assert_eq!(count(&hub).await, 0, "nothing was written");

    let ok = [1, 65535];
    for (i, port) in ok.iter().enumerate() {
        hub.create_service(json!({"name": format!("edge-{i}"), "port": port}))
            .await;
    }
    hub.create_service(json!({"name": "n".repeat(255)})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_bad_fields_are_reported_together() {
    let hub = spawn_hub().await;
    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "", "base_url": "ftp://x", "port": 0, "health_endpoint": "h"}),
        )
        .await;
    let err = expect_error(r, 422, "validation_failed").await;
    let mut f = fields(&err);
    f.sort();
    assert_eq!(f, ["base_url", "health_endpoint", "name", "port"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_names_are_409_on_create_and_rename() {
    let hub = spawn_hub().await;
    hub.create_service(json!({"name": "dup", "port": 1})).await;
    let r = hub
        .post_json("/api/services", &json!({"name": "dup", "port": 2}))
        .await;
    let err = expect_error(r, 409, "conflict").await;
    assert_eq!(fields(&err), ["name"]);
    let other = hub.create_service(json!({"name": "other"})).await;
    let r = hub
        .put_json(
            &format!("/api/services/{}", other["id"]),
            &json!({"name": "dup"}),
        )
        .await;
    expect_error(r, 409, "conflict").await;
    let list = hub.get_json("/api/services").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["port"], 1, "the first one is intact");
    assert_eq!(
        hub.service(other["id"].as_i64().unwrap()).await["name"],
        "other"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_rules_match_create_rules_and_change_nothing_on_failure() {
    let hub = spawn_hub().await;
    let s = hub
        .create_service(json!({"name": "u", "port": 80, "base_url": "http://127.0.0.1"}))
        .await;
    let path = format!("/api/services/{}", s["id"]);
    for (body, field) in [
        (json!({"port": 0}), "port"),
        (json!({"name": null}), "name"),
        (json!({"base_url": "nope"}), "base_url"),
        (
            json!({"port": 81, "health_endpoint": "x"}),
            "health_endpoint",
        ),
    ] {
        let err = expect_error(hub.put_json(&path, &body).await, 422, "validation_failed").await;
        assert_eq!(fields(&err), [field]);
    }
    assert_eq!(
        hub.service(s["id"].as_i64().unwrap()).await,
        s,
        "a failed update changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_mistyped_bodies() {
    let hub = spawn_hub().await;
    let send = |body: &'static str, ct: Option<&'static str>| {
        let mut req = hub.client.post(hub.url("/api/services")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    expect_error(
        send("{\"name\": ", Some("application/json")).await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    expect_error(
        send("", Some("application/json")).await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    expect_error(
        send("not json", Some("application/json")).await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    let err = expect_error(
        send("[1,2]", Some("application/json")).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&err), ["body"]);
    expect_error(
        send("{\"name\":\"x\"}", Some("text/plain")).await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    expect_error(
        send("{\"name\":\"x\"}", None).await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    expect_error(
        send("name=x", Some("application/x-www-form-urlencoded"))
            .await
            .unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    assert_eq!(count(&hub).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_413() {
    let hub = spawn_hub_with_small_limit().await;
    let big = json!({"name": "big", "description": "x".repeat(8 * 1024)});
    expect_error(
        hub.post_json("/api/services", &big).await,
        413,
        "payload_too_large",
    )
    .await;
    let s = hub.create_service(json!({"name": "small"})).await;
    expect_error(
        hub.put_json(&format!("/api/services/{}", s["id"]), &big)
            .await,
        413,
        "payload_too_large",
    )
    .await;
    assert_eq!(count(&hub).await, 1);
}

async fn spawn_hub_with_small_limit() -> TestHub {
    lookout_testkit::spawn_hub_with(|c| c.max_body_bytes = 4096).await
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_invalid_ids() {
    let hub = spawn_hub().await;
    for path in [
        "/api/services/999",
        "/api/services/999/health",
        "/api/services/999/checks",
    ] {
        expect_error(hub.get(path).await, 404, "not_found").await;
    }
    expect_error(
        hub.put_json("/api/services/999", &json!({"port": 1})).await,
        404,
        "not_found",
    )
    .await;
    expect_error(hub.delete("/api/services/999").await, 404, "not_found").await;
    for bad in ["abc", "0", "-3", "1.5", "99999999999999999999999"] {
        let err = expect_error(
            hub.get(&format!("/api/services/{bad}")).await,
            400,
            "bad_request",
        )
        .await;
        assert_eq!(fields(&err), ["id"]);
    }
    expect_error(
        hub.get("/api/services/1/checks?limit=0").await,
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_answer_json() {
    let hub = spawn_hub().await;
    expect_error(hub.get("/api/nope").await, 404, "not_found").await;
    let r = hub
        .client
        .patch(hub.url("/api/services"))
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "method_not_allowed").await;
    let r = hub.post("/api/services/1").await;
    expect_error(r, 405, "method_not_allowed").await;
}

/// A NUL character is refused at the door on every engine (PostgreSQL cannot
/// store one, and a 500 must never be the answer), naming the field, before
/// any credential is looked at, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn nul_in_any_text_is_refused_and_names_the_field() {
    let hub = lookout_testkit::spawn_hub_with(|c| {
        c.auth.mode = lookout_hub::auth::AuthMode::Required;
    })
    .await;
    // Unauthenticated, on the public sign-in route: a 422 naming the field,
    // not a 500 from the database.
    let r = hub
        .post_json(
            "/api/v1/users/login",
            &json!({"username": "ada\u{0}", "password": "x"}),
        )
        .await;
    let body = expect_error(r, 422, "validation_failed").await;
    assert_eq!(fields(&body), ["username"]);

    let hub = spawn_hub().await;
    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "web", "description": "a\u{0}b", "tags": ["ok", "x\u{0}"]}),
        )
        .await;
    let body = expect_error(r, 422, "validation_failed").await;
    assert_eq!(fields(&body), ["description", "tags[1]"]);
    assert_eq!(count(&hub).await, 0, "nothing is written");
    // In a query and in a path.
    let r = hub.get("/api/services?q=we%00b").await;
    expect_error(r, 422, "validation_failed").await;
    let r = hub.get("/api/services/we%00b").await;
    expect_error(r, 422, "validation_failed").await;
    // A backslash before the letters u0000 is text, and is kept.
    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "api", "description": "C:\\u0000"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["description"], "C:\\u0000");
    // A form: a 400 page, and nothing written.
    let r = hub.post_form("/services/new", &[("name", "a\u{0}b")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(count(&hub).await, 1);
}

/// Every API error has one shape, whatever refused the request: a body too
/// large for a route that reads raw bytes, a URI too long to read.
#[tokio::test(flavor = "multi_thread")]
async fn every_api_error_is_an_error_body() {
    let hub = spawn_hub_with_small_limit().await;
    let s = hub.create_service(json!({"name": "cron"})).await;
    let r = hub
        .client
        .post(hub.url(&format!("/api/services/{}/push-token", s["id"])))
        .header("content-type", "text/plain")
        .body("x".repeat(64 * 1024))
        .send()
        .await
        .unwrap();
    // The body was not read to its end: the client must not reuse the
    // connection (it would write into a closed socket).
    assert_eq!(r.headers()["connection"], "close");
    let body = expect_error(r, 413, "payload_too_large").await;
    assert!(body["message"].as_str().unwrap().contains("4096"), "{body}");

    let r = hub
        .get(&format!("/api/services?q={}", "a".repeat(16 * 1024)))
        .await;
    let body = expect_error(r, 414, "bad_request").await;
    assert!(
        body["message"].as_str().unwrap().contains("limit"),
        "{body}"
    );
    assert_eq!(count(&hub).await, 1);
}
