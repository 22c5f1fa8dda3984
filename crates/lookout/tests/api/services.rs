//! The CRUD contract of `/api/services`, with both payload shapes (`base_url`, and `url` with `status`).

use lookout_testkit::spawn_hub;
use serde_json::{json, Value};

const REQUIRED_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "base_url",
    "url",
    "port",
    "health_endpoint",
    "status",
    "systemd_state",
    "health_status",
    "last_health_check",
    "last_scanned_at",
    "created_at",
    "updated_at",
];

#[tokio::test(flavor = "multi_thread")]
async fn create_with_a_base_url_payload() {
    let hub = spawn_hub().await;
    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "grafana.service", "description": "Dashboards",
                    "base_url": "http://127.0.0.1:3000", "port": 3000, "health_endpoint": "/api/health"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let s: Value = r.json().await.unwrap();
    assert_eq!(location, format!("/api/services/{}", s["id"]));
    for field in REQUIRED_FIELDS {
        assert!(s.get(*field).is_some(), "missing {field} in {s}");
    }
    assert_eq!(s["name"], "grafana.service");
    assert_eq!(s["description"], "Dashboards");
    assert_eq!(s["base_url"], "http://127.0.0.1:3000");
    assert_eq!(s["url"], s["base_url"]);
    assert_eq!(s["port"], 3000);
    assert_eq!(s["health_endpoint"], "/api/health");
    assert_eq!(s["status"], "configured");
    assert_eq!(s["health_status"], "unknown");
    assert_eq!(s["last_health_check"], Value::Null);
    // The background check may have run meanwhile: compare what was stored.
    let stored = hub.service(s["id"].as_i64().unwrap()).await;
    for field in [
        "name",
        "description",
        "base_url",
        "port",
        "health_endpoint",
        "status",
        "created_at",
    ] {
        assert_eq!(stored[field], s[field], "{field}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_with_a_url_payload_keeps_status_as_reported_state() {
    let hub = spawn_hub().await;
    for (i, state) in ["active", "inactive", "failed"].iter().enumerate() {
        let s = hub
            .create_service(
                json!({"name": format!("api-{i}"), "url": "http://192.168.1.100:8080",
                                   "status": state, "port": 8080}),
            )
            .await;
        assert_eq!(s["status"], "configured", "registry status");
        assert_eq!(s["reported_state"], *state);
        assert_eq!(s["base_url"], "http://192.168.1.100:8080");
        assert_eq!(s["url"], "http://192.168.1.100:8080");
    }
    let s = hub
        .create_service(json!({"name": "implicit", "url": "https://example.org"}))
        .await;
    assert_eq!(s["reported_state"], "active", "the default reported state");
    assert_eq!(s["port"], 443, "port implied by the URL");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_returns_configured_services_in_name_order() {
    let hub = spawn_hub().await;
    assert_eq!(hub.get_json("/api/services").await, json!([]));
    for name in ["zeta", "alpha", "mid"] {
        hub.create_service(json!({"name": name})).await;
    }
    let list = hub.get_json("/api/services").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    for s in list.as_array().unwrap() {
        for field in REQUIRED_FIELDS {
            assert!(s.get(*field).is_some(), "missing {field}");
        }
    }
    assert_eq!(
        hub.get_json("/api/services?status=all")
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        hub.get_json("/api/services?status=discovered").await,
        json!([])
    );
    assert_eq!(hub.get("/api/services?status=bogus").await.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_changes_only_the_fields_sent() {
    let hub = spawn_hub().await;
    let s = hub
        .create_service(
            json!({"name": "web", "description": "d", "base_url": "http://127.0.0.1:8080",
                               "port": 8080, "health_endpoint": "/health"}),
        )
        .await;
    let id = s["id"].as_i64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = hub
        .put_json(&format!("/api/services/{id}"), &json!({"port": 9090}))
        .await;
    assert_eq!(r.status(), 200);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["port"], 9090);
    for same in [
        "name",
        "description",
        "base_url",
        "health_endpoint",
        "created_at",
    ] {
        assert_eq!(u[same], s[same], "{same} changed");
    }
    assert_ne!(u["updated_at"], s["updated_at"]);

    // The update shape with `url`.
    let u: Value = hub
        .put_json(
            &format!("/api/services/{id}"),
            &json!({"name": "web2", "url": "http://127.0.0.1:8081", "status": "inactive"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            u["name"].as_str(),
            u["base_url"].as_str(),
            u["reported_state"].as_str()
        ),
        (
            Some("web2"),
            Some("http://127.0.0.1:8081"),
            Some("inactive")
        )
    );

    // null clears an optional field.
    let u: Value = hub
        .put_json(
            &format!("/api/services/{id}"),
            &json!({"description": null}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(u["description"], Value::Null);
    let stored = hub.service(id).await;
    for field in [
        "name",
        "description",
        "base_url",
        "port",
        "health_endpoint",
        "reported_state",
    ] {
        assert_eq!(stored[field], u[field], "{field} as stored");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_modify_put_round_trip_works() {
    let hub = spawn_hub().await;
    let mut s = hub
        .create_service(json!({"name": "rt", "base_url": "http://127.0.0.1:1"}))
        .await;
    s["description"] = json!("edited");
    let r = hub
        .put_json(&format!("/api/services/{}", s["id"]), &s)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["description"], "edited");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_answers_204_then_404() {
    let hub = spawn_hub().await;
    let s = hub.create_service(json!({"name": "gone"})).await;
    let path = format!("/api/services/{}", s["id"]);
    let r = hub.delete(&path).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(hub.get(&path).await.status(), 404);
    assert_eq!(hub.delete(&path).await.status(), 404);
    assert_eq!(hub.get_json("/api/services").await, json!([]));
    // The name is free again.
    hub.create_service(json!({"name": "gone"})).await;
}
