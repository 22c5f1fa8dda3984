//! Live status: the one status model over real HTTP targets, its history,
//! and the event stream over SSE and WebSocket, resumable without loss.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use lookout_testkit::{spawn_hub, SseClient, Target};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn sse_reports_a_real_failure_within_one_check_interval() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let mut events = SseClient::connect(&hub.client, &hub.url("/api/events"), None).await;
    let s = hub
        .create_service(
            json!({"name": "site", "base_url": target.url(), "health_endpoint": "/",
                               "check_interval_secs": 1}),
        )
        .await;
    let id = s["id"].as_i64().unwrap();
    let created = events
        .wait_for(SOON, |m| m.event == "service.created")
        .await;
    assert_eq!(created.data["id"], id);
    let up = events
        .wait_for(SOON, |m| m.event == "status" && m.data["service_id"] == id)
        .await;
    assert_eq!(
        (up.data["old"].as_str(), up.data["new"].as_str()),
        (Some("UNKNOWN"), Some("OK"))
    );
    assert_eq!(hub.service(id).await["state"], "OK");

    target.set_status(500);
    let went_down = Instant::now();
    let down = events
        .wait_for(SOON, |m| {
            m.event == "status" && m.data["service_id"] == id && m.data["new"] == "FAILURE"
        })
        .await;
    let latency = went_down.elapsed();
    assert!(
        latency < Duration::from_millis(2500),
        "took {latency:?} with a 1 s interval"
    );
    assert_eq!(down.data["old"], "OK");
    assert!(
        down.data["reason"].as_str().unwrap().contains("HTTP 500"),
        "{}",
        down.data
    );
    let s = hub.service(id).await;
    assert_eq!(
        (s["state"].as_str(), s["state_reason"].is_string()),
        (Some("FAILURE"), true)
    );

    // The history keeps each change once, newest first.
    let history = hub.get_json(&format!("/api/services/{id}/events")).await;
    let changes: Vec<(String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["old"].as_str().unwrap().to_owned(),
                e["new"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("OK".into(), "FAILURE".into()),
            ("UNKNOWN".into(), "OK".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn last_event_id_resumes_without_loss_or_repeats() {
    let hub = spawn_hub().await;
    let mut first = SseClient::connect(&hub.client, &hub.url("/api/events"), None).await;
    let a = hub.create_service(json!({"name": "a"})).await;
    let seen = first
        .wait_for(SOON, |m| {
            m.event == "service.created" && m.data["id"] == a["id"]
        })
        .await;
    let last_seen = seen.id.expect("events carry ids");
    drop(first); // the client goes away...

    // ...and misses these.
    let b = hub.create_service(json!({"name": "b"})).await;
    let c = hub.create_service(json!({"name": "c"})).await;
    assert_eq!(
        hub.delete(&format!("/api/services/{}", b["id"]))
            .await
            .status(),
        204
    );
    hub.put_json(
        &format!("/api/services/{}", c["id"]),
        &json!({"description": "changed"}),
    )
    .await;

    let mut resumed =
        SseClient::connect(&hub.client, &hub.url("/api/events"), Some(last_seen)).await;
    let mut got = Vec::new();
    while let Some(m) = resumed.next(Duration::from_millis(500)).await {
        got.push(m);
    }
    let ids: Vec<i64> = got.iter().map(|m| m.id.unwrap()).collect();
    let expected: Vec<i64> = (last_seen + 1..=last_seen + ids.len() as i64).collect();
    assert_eq!(
        ids, expected,
        "contiguous, in order, nothing before the resume point"
    );
    let kinds: Vec<(&str, i64)> = got
        .iter()
        .filter(|m| m.event.starts_with("service."))
        .map(|m| (m.event.as_str(), m.data["id"].as_i64().unwrap()))
        .collect();
    let (b, c) = (b["id"].as_i64().unwrap(), c["id"].as_i64().unwrap());
    assert_eq!(
        kinds,
        [
            ("service.created", b),
            ("service.created", c),
            ("service.deleted", b),
            ("service.updated", c)
        ]
    );

    // After the replay, live events follow on the same connection.
    let d = hub.create_service(json!({"name": "d"})).await;
    let live = resumed
        .wait_for(SOON, |m| m.event == "service.created")
        .await;
    assert_eq!(live.data["id"], d["id"]);
    assert!(live.id.unwrap() > *ids.last().unwrap());

    let bad = hub
        .client
        .get(hub.url("/api/events"))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_websocket_pushes_the_same_events() {
    let hub = spawn_hub().await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/services/ws", hub.addr))
            .await
            .expect("websocket");
    let s = hub.create_service(json!({"name": "pushed"})).await;
    let until = Instant::now() + SOON;
    loop {
        let message = tokio::time::timeout(SOON, ws.next())
            .await
            .expect("a message")
            .expect("open")
            .unwrap();
        let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap();
        assert!(event["id"].is_i64());
        if event["type"] == "service.created" {
            assert_eq!(event["data"]["id"], s["id"]);
            break;
        }
        assert!(Instant::now() < until);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_event_stream_does_not_hold_up_shutdown() {
    let mut hub = spawn_hub().await;
    let mut events = SseClient::connect(&hub.client, &hub.url("/api/events"), None).await;
    let (_ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/services/ws", hub.addr))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), hub.stop())
        .await
        .expect("the hub stopped with clients connected");
    assert!(
        events.ended(Duration::from_secs(2)).await,
        "the stream ended"
    );
}

/// A page on another site cannot read the live feed of a hub on localhost:
/// a WebSocket handshake or an event stream from a foreign `Origin` (or a
/// browser's `Sec-Fetch-Site: cross-site`) is refused; the hub's own pages
/// and tools without an `Origin` (agents, scripts) are not.
#[tokio::test(flavor = "multi_thread")]
async fn live_streams_from_another_site_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let hub = spawn_hub().await;
    let ws = |origin: Option<&str>| {
        let mut request = format!("ws://{}/api/services/ws", hub.addr)
            .into_client_request()
            .unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
    };
    match ws(Some("http://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("a foreign origin's WebSocket was not refused: {other:?}"),
    }
    let own = format!("http://{}", hub.addr);
    assert!(ws(Some(&own)).await.is_ok(), "the hub's own page");
    assert!(ws(None).await.is_ok(), "a tool without an Origin");

    let sse = |site: &'static str| {
        hub.client
            .get(hub.url("/api/events"))
            .header("accept", "text/event-stream")
            .header("sec-fetch-site", site)
            .send()
    };
    assert_eq!(sse("cross-site").await.unwrap().status(), 403);
    assert_eq!(sse("same-origin").await.unwrap().status(), 200);
}
