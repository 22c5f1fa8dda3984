//! Restart survival: services and their history outlive the hub process state.

use std::time::Duration;

use lookout_testkit::{spawn_hub, Target};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn services_and_history_survive_a_restart() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let a = hub
        .create_service(
            json!({"name": "kept", "description": "survives", "base_url": target.url(),
                               "health_endpoint": "/", "check_interval_secs": 3600}),
        )
        .await;
    let id = a["id"].as_i64().unwrap();
    hub.wait_for_service(id, Duration::from_secs(5), |s| {
        s["health_status"] == "healthy"
    })
    .await;
    hub.get_json(&format!("/api/services/{id}/health")).await;
    let b = hub
        .create_service(json!({"name": "second", "port": 22}))
        .await;
    let before_list = hub.get_json("/api/services").await;
    let before_history = hub.get_json(&format!("/api/services/{id}/checks")).await;
    assert_eq!(before_history.as_array().unwrap().len(), 2);

    let hub = hub.restart().await;
    assert_eq!(hub.get_json("/api/services").await, before_list);
    assert_eq!(
        hub.get_json(&format!("/api/services/{id}/checks")).await,
        before_history
    );
    // Ids keep counting; a deleted id is never reused.
    assert_eq!(
        hub.delete(&format!("/api/services/{}", b["id"]))
            .await
            .status(),
        204
    );
    let c: Value = hub.create_service(json!({"name": "third"})).await;
    assert!(c["id"].as_i64().unwrap() > b["id"].as_i64().unwrap());
    // The hub does not re-check a service checked within its interval on start.
    // (Asserting an absence needs a window; a loopback check takes a few ms.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hub.get_json(&format!("/api/services/{id}/checks")).await,
        before_history
    );
}
