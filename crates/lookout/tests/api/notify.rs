//! Notifications delivered to a real HTTP receiver on loopback: every channel
//! format, flap damping, recovery, reminders, mute and maintenance windows,
//! and a broken channel that neither blocks the others nor fails silently.

use std::time::Duration;

use chrono::DateTime;
use lookout_hub::clock::ManualClock;
use lookout_hub::Config;
use lookout_testkit::{spawn_hub_with, spawn_hub_with_clock, Receiver, Target, TestHub};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(10);

fn fast(c: &mut Config) {
    c.notify.retry_base = Duration::from_millis(50);
    c.notify.attempts = 3;
}

/// A heartbeat from `name` at `ip` (registering it the first time); its id.
async fn beat(hub: &TestHub, name: &str, ip: &str) -> i64 {
    let r = hub
        .post_json("/register", &json!({"name": name, "ip": ip}))
        .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status} {body}");
    body["service"]["id"].as_i64().unwrap()
}

async fn channel(hub: &TestHub, name: &str, kind: &str, config: Value) -> i64 {
    let r = hub
        .post_json(
            "/api/notifications/channels",
            &json!({"name": name, "kind": kind, "config": config}),
        )
        .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_channel_kind_sends_its_own_format() {
    let hub = spawn_hub_with(fast).await;
    let rx = Receiver::start().await;
    let ids = [
        channel(&hub, "hook", "webhook", json!({"url": rx.url("/hook")})).await,
        channel(
            &hub,
            "phone",
            "ntfy",
            json!({"url": rx.url("/ntfy"), "topic": "home-lab", "token": "tk_secret"}),
        )
        .await,
        channel(
            &hub,
            "gotify",
            "gotify",
            json!({"url": rx.url("/gotify"), "token": "g_secret"}),
        )
        .await,
        channel(
            &hub,
            "discord",
            "discord",
            json!({"url": rx.url("/discord/webhooks/1/abc")}),
        )
        .await,
        channel(
            &hub,
            "slack",
            "slack",
            json!({"url": rx.url("/slack/services/T/B/x")}),
        )
        .await,
    ];
    for id in ids {
        let r: Value = hub
            .post(&format!("/api/notifications/channels/{id}/test"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(r["ok"], true, "{r}");
    }
    let hook = &rx.received("/hook")[0];
    assert_eq!(hook.json()["event"], "test");
    assert!(hook.json()["message"].as_str().unwrap().contains("test"));
    let ntfy = &rx.received("/ntfy/home-lab")[0];
    assert_eq!(
        ntfy.header("authorization").as_deref(),
        Some("Bearer tk_secret")
    );
    assert_eq!(
        ntfy.header("title").as_deref(),
        Some("lookout test notification")
    );
    assert!(ntfy.body.contains("this channel works"));
    let gotify = &rx.received("/gotify/message")[0];
    assert_eq!(gotify.header("x-gotify-key").as_deref(), Some("g_secret"));
    assert!(gotify.json()["priority"].is_u64());
    assert!(rx.received("/discord")[0].json()["content"]
        .as_str()
        .unwrap()
        .contains("lookout test notification"));
    assert!(rx.received("/slack")[0].json()["text"]
        .as_str()
        .unwrap()
        .contains("lookout test notification"));

    // Secrets are masked in the API.
    let list = hub
        .get_json("/api/notifications/channels")
        .await
        .to_string();
    assert!(
        !list.contains("tk_secret")
            && !list.contains("g_secret")
            && !list.contains("/services/T/B/x"),
        "{list}"
    );
    // Bad channels are refused with the field named.
    let r = hub
        .post_json(
            "/api/notifications/channels",
            &json!({"name": "x", "kind": "pager", "config": {}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = hub
        .post_json(
            "/api/notifications/channels",
            &json!({"name": "x", "kind": "webhook", "config": {"url": "file:///etc/passwd"}}),
        )
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "config.url");
    let r = hub
        .post_json(
            "/api/notifications/channels",
            &json!({"name": "hook", "kind": "webhook", "config": {"url": rx.url("/x")}}),
        )
        .await;
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_alert_after_three_failures_then_one_recovery() {
    let hub = spawn_hub_with(|c| {
        fast(c);
        c.notify.public_url = Some("https://lookout.home.lan".into());
    })
    .await;
    let rx = Receiver::start().await;
    channel(&hub, "hook", "webhook", json!({"url": rx.url("/hook")})).await;
    let target = Target::start(200).await;
    let s = hub
        .create_service(json!({"name": "site", "base_url": target.url(), "health_endpoint": "/", "check_interval_secs": 1}))
        .await;
    let id = s["id"].as_i64().unwrap();
    hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;

    target.set_status(500);
    let alert = rx.wait_for("/hook", 1, SOON).await;
    let failed_checks = hub
        .get_json(&format!("/api/services/{id}/checks"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .take_while(|c| c["status"] == "unhealthy")
        .count();
    assert!(
        failed_checks >= 3,
        "alerted after {failed_checks} failed checks, not 3"
    );
    let body = alert[0].json();
    assert_eq!(
        (body["event"].as_str(), body["status"].as_str()),
        (Some("alert"), Some("FAILURE"))
    );
    assert_eq!(body["service"]["name"], "site");
    assert!(body["reason"].as_str().unwrap().contains("HTTP 500"));
    // What it was before, in the data and in the message.
    assert_eq!(body["previous"], "OK");
    let message = body["message"].as_str().unwrap();
    assert!(message.ends_with("(FAILURE, was OK)"), "{message}");
    // A link to the service's page, at the hub's public address.
    assert_eq!(
        body["link"],
        format!("https://lookout.home.lan/services/{id}")
    );

    // Still failing: no second alert (the reminder is an hour away).
    tokio::time::sleep(Duration::from_millis(2500)).await; // asserting an absence needs a window
    assert_eq!(rx.received("/hook").len(), 1, "alerted more than once");

    target.set_status(200);
    let both = rx.wait_for("/hook", 2, SOON).await;
    let recovery = both[1].json();
    assert_eq!(recovery["event"], "recovery");
    // How long the outage lasted: since the status became FAILURE.
    let down = recovery["down_for_secs"].as_i64().unwrap();
    assert!((1..60).contains(&down), "{recovery}");
    assert_eq!(recovery["title"], format!("site recovered after {down} s"));
    // The hub notes a delivery once the receiver has answered: wait for it.
    let until = tokio::time::Instant::now() + SOON;
    let log = loop {
        let log = hub.get_json("/api/notifications/deliveries").await;
        if log.as_array().map_or(0, Vec::len) >= 2 || tokio::time::Instant::now() > until {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let kinds: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["recovery", "alert"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_blip_is_not_an_alert() {
    let hub = spawn_hub_with(fast).await;
    let rx = Receiver::start().await;
    channel(&hub, "hook", "webhook", json!({"url": rx.url("/hook")})).await;
    let target = Target::start(200).await;
    let s = hub
        .create_service(json!({"name": "blip", "base_url": target.url(), "health_endpoint": "/", "check_interval_secs": 1}))
        .await;
    let id = s["id"].as_i64().unwrap();
    hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
    target.set_status(500);
    hub.wait_for_service(id, SOON, |s| s["state"] == "FAILURE")
        .await;
    target.set_status(200);
    hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // asserting an absence needs a window
    assert!(rx.received("/hook").is_empty(), "one failed check alerted");
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_mute_and_maintenance_windows() {
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(fast, clock.clone()).await;
    let rx = Receiver::start().await;
    channel(&hub, "hook", "webhook", json!({"url": rx.url("/hook")})).await;

    // A heartbeat service goes silent: alert at once (its source confirms it).
    beat(&hub, "job", "10.0.0.5").await;
    clock.advance(Duration::from_secs(61));
    let got = rx.wait_for("/hook", 1, SOON).await;
    assert_eq!(got[0].json()["event"], "alert");
    // An hour later, still failing: one reminder.
    clock.advance(Duration::from_secs(3600));
    let got = rx.wait_for("/hook", 2, SOON).await;
    assert_eq!(got[1].json()["event"], "reminder");
    beat(&hub, "job", "10.0.0.5").await;
    let got = rx.wait_for("/hook", 3, SOON).await;
    assert_eq!(got[2].json()["event"], "recovery");

    // Muted: nothing.
    let muted = beat(&hub, "muted", "10.0.0.6").await;
    hub.put_json(&format!("/api/services/{muted}"), &json!({"muted": true}))
        .await;
    // In maintenance for two hours: nothing until the window ends.
    let maint = beat(&hub, "maint", "10.0.0.7").await;
    let until = (clock_now(&hub, maint).await + chrono::Duration::hours(2)).to_rfc3339();
    let r = hub
        .put_json(
            &format!("/api/services/{maint}"),
            &json!({"maintenance_until": until}),
        )
        .await;
    assert_eq!(r.status(), 200);
    clock.advance(Duration::from_secs(61));
    hub.wait_for_service(muted, SOON, |s| s["state"] == "FAILURE")
        .await;
    hub.wait_for_service(maint, SOON, |s| s["state"] == "FAILURE")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // asserting an absence needs a window
    let about = |name: &str| {
        rx.received("/hook")
            .iter()
            .filter(|r| r.json()["service"]["name"] == name)
            .map(|r| r.json()["event"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        about("muted").is_empty() && about("maint").is_empty(),
        "muted or maintenance service notified"
    );
    clock.advance(Duration::from_secs(2 * 3600));
    let until = tokio::time::Instant::now() + SOON;
    while about("maint").is_empty() {
        assert!(
            tokio::time::Instant::now() < until,
            "no alert after the maintenance window"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(about("maint"), ["alert"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(about("muted").is_empty(), "the muted service stayed quiet");
}

async fn clock_now(hub: &TestHub, id: i64) -> chrono::DateTime<chrono::Utc> {
    let s = hub.service(id).await;
    s["last_heartbeat"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_channel_is_retried_visible_and_blocks_nothing() {
    let hub = spawn_hub_with(fast).await;
    let rx = Receiver::start().await;
    let broken = channel(&hub, "broken", "webhook", json!({"url": rx.url("/fail")})).await;
    channel(&hub, "good", "webhook", json!({"url": rx.url("/good")})).await;
    // A failing HTTP target, alerting on its first failed check.
    let target = Target::start(500).await;
    let s = hub
        .create_service(json!({"name": "down", "base_url": target.url(), "health_endpoint": "/", "notify_after": 1}))
        .await;
    let got = rx.wait_for("/good", 1, SOON).await;
    assert_eq!(got[0].json()["service"]["name"], s["name"]);
    // The broken one was tried three times, then logged as failed, with its error on the channel.
    rx.wait_for("/fail", 3, SOON).await;
    let until = tokio::time::Instant::now() + SOON;
    loop {
        let log = hub.get_json("/api/notifications/deliveries").await;
        if let Some(d) = log
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["channel_id"] == broken)
        {
            assert_eq!(
                (d["status"].as_str(), d["attempts"].as_u64()),
                (Some("failed"), Some(3))
            );
            assert!(d["error"].as_str().unwrap().contains("HTTP 500"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no failed delivery logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let channels = hub.get_json("/api/notifications/channels").await;
    let b = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == broken)
        .unwrap();
    assert!(b["last_error"].as_str().unwrap().contains("HTTP 500"));
    // Counted for Prometheus: one sent, one given up (not one per attempt).
    for outcome in ["sent", "failed"] {
        let labels = [("channel", "webhook"), ("outcome", outcome)];
        let counted =
            super::prometheus::wait_for_metric(&hub, "lookout_notifications_total", &labels).await;
        assert_eq!(counted, 1.0, "{outcome}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_are_configured_and_tested_from_the_dashboard() {
    let hub = spawn_hub_with(fast).await;
    let rx = Receiver::start().await;
    let form = |fields: Vec<(&'static str, String)>| {
        let hub = &hub;
        async move { Ok::<_, std::convert::Infallible>(hub.post_form("/notifications", &fields).await) }
    };
    let r = form(vec![
        ("name", "phone".into()),
        ("kind", "ntfy".into()),
        ("url", rx.url("")),
        ("topic", "bad topic".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Topic: must be 1-64 letters"));
    let r = form(vec![
        ("name", "phone".into()),
        ("kind", "ntfy".into()),
        ("url", rx.url("")),
        ("topic", "alerts".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let page = hub.get_text("/notifications").await;
    assert!(page.contains(r#"data-channel="phone""#));
    let id = hub.get_json("/api/notifications/channels").await[0]["id"]
        .as_i64()
        .unwrap();
    let r = hub
        .post_form(
            &format!("/notifications/{id}/test"),
            lookout_testkit::NO_FIELDS,
        )
        .await;
    assert!(r.text().await.unwrap().contains("Test sent."));
    assert_eq!(
        rx.received("/alerts").len(),
        1,
        "the test reached ntfy's topic"
    );
    let r = hub
        .post_form(
            &format!("/notifications/{id}/delete"),
            lookout_testkit::NO_FIELDS,
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(hub.get_json("/api/notifications/channels").await, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn e_mail_reaches_a_real_smtp_server() {
    let smtp = lookout_testkit::SmtpSink::start();
    let hub = spawn_hub_with(fast).await;
    let id = channel(
        &hub,
        "mail",
        "email",
        json!({"host": "127.0.0.1", "port": smtp.port, "security": "none",
               "from": "lookout@home.example", "to": "me@home.example"}),
    )
    .await;
    let r: Value = hub
        .post(&format!("/api/notifications/channels/{id}/test"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r}");
    // And a real alert, from a failing target.
    let target = Target::start(503).await;
    hub.create_service(
        json!({"name": "nas", "base_url": target.url(), "health_endpoint": "/", "notify_after": 1}),
    )
    .await;
    let until = tokio::time::Instant::now() + SOON;
    while smtp.messages().len() < 2 {
        assert!(tokio::time::Instant::now() < until, "{:?}", smtp.messages());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let messages = smtp.messages();
    assert!(
        messages[0].contains("Subject: [lookout] lookout test notification"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("Subject: [lookout] nas is failing"),
        "{}",
        messages[1]
    );
    assert!(messages[1].contains("HTTP 503"));
    assert!(messages[1].contains("To: me@home.example"));
    let r = hub
        .post_json("/api/notifications/channels", &json!({"name": "bad", "kind": "email", "config": {"host": "smtp.example", "from": "not an address", "to": "me@x.org"}}))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "config.from");
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_messages_reach_a_real_broker() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let broker = lookout_testkit::Mosquitto::start();
    let mut options = MqttOptions::new("lookout-test-subscriber", "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(5));
    let (subscriber, mut events) = AsyncClient::new(options, 10);
    subscriber
        .subscribe("homelab/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send((
                    p.topic.clone(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                ));
            }
        }
    });
    // Wait for the subscription to be in place before publishing.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let hub = spawn_hub_with(fast).await;
    channel(
        &hub,
        "ha",
        "mqtt",
        json!({"host": "127.0.0.1", "port": broker.port, "topic": "homelab/lookout"}),
    )
    .await;
    let target = Target::start(500).await;
    hub.create_service(json!({"name": "printer", "base_url": target.url(), "health_endpoint": "/", "notify_after": 1})).await;
    let (topic, payload) = tokio::time::timeout(SOON, rx.recv())
        .await
        .expect("a message")
        .unwrap();
    assert_eq!(topic, "homelab/lookout/printer");
    let body: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["status"].as_str()),
        (Some("alert"), Some("FAILURE"))
    );
    let until = tokio::time::Instant::now() + SOON;
    while hub.get_json("/api/notifications/deliveries").await[0]["status"] != "sent" {
        assert!(
            tokio::time::Instant::now() < until,
            "the delivery was not logged as sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pausing a failing service sends no recovery, a paused heartbeat misses
/// no deadline, and once resumed it waits for its next beat.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_service_is_not_judged_and_sends_nothing() {
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(fast, clock.clone()).await;
    let rx = Receiver::start().await;
    channel(&hub, "hook", "webhook", json!({"url": rx.url("/hook")})).await;
    let id = beat(&hub, "backup", "10.0.0.8").await;
    clock.advance(Duration::from_secs(61));
    let got = rx.wait_for("/hook", 1, SOON).await;
    assert_eq!(got[0].json()["event"], "alert");

    let r = hub
        .put_json(&format!("/api/services/{id}"), &json!({"paused": true}))
        .await;
    assert_eq!(r.status(), 200);
    hub.wait_for_service(id, SOON, |s| s["state"] == "UNKNOWN")
        .await;
    clock.advance(Duration::from_secs(3 * 3600));
    tokio::time::sleep(Duration::from_millis(1500)).await; // an absence needs a window
    assert_eq!(
        rx.received("/hook").len(),
        1,
        "no recovery and no reminder while paused"
    );
    assert_eq!(hub.service(id).await["state_reason"], "paused");

    hub.put_json(&format!("/api/services/{id}"), &json!({"paused": false}))
        .await;
    clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = hub.service(id).await;
    assert_eq!(s["state"], "UNKNOWN", "waits for its next beat: {s}");
    beat(&hub, "backup", "10.0.0.8").await;
    hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
}

/// A channel is edited over the API: what the body gives is replaced, the
/// secrets it leaves out or sends back masked are kept, and mistakes are
/// named.
#[tokio::test(flavor = "multi_thread")]
async fn a_channel_is_edited_and_keeps_its_secrets() {
    let hub = spawn_hub_with(fast).await;
    let rx = Receiver::start().await;
    let id = channel(
        &hub,
        "phone",
        "ntfy",
        json!({"url": rx.url("/ntfy"), "topic": "home", "token": "tk_secret"}),
    )
    .await;
    channel(&hub, "other", "webhook", json!({"url": rx.url("/hook")})).await;
    // Read, change the topic, write back: the masked URL and token stand.
    let shown = hub.get_json("/api/notifications/channels").await;
    let mut body = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone();
    let body = body.as_object_mut().unwrap();
    body.retain(|k, _| ["name", "kind", "config", "enabled"].contains(&k.as_str()));
    body["config"]["topic"] = json!("lab");
    let r = hub
        .put_json(&format!("/api/notifications/channels/{id}"), &json!(body))
        .await;
    assert_eq!(r.status(), 200);
    let r: Value = hub
        .post(&format!("/api/notifications/channels/{id}/test"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r}");
    let got = &rx.received("/ntfy/lab")[0];
    assert_eq!(
        got.header("authorization").as_deref(),
        Some("Bearer tk_secret")
    );

    // Mistakes: a taken name, a bad setting, no such channel.
    let r = hub
        .put_json(
            &format!("/api/notifications/channels/{id}"),
            &json!({"name": "other", "kind": "ntfy", "config": {"topic": "x"}}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = hub
        .put_json(
            &format!("/api/notifications/channels/{id}"),
            &json!({"name": "phone", "kind": "webhook", "config": {"url": "file:///etc/passwd"}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "config.url");
    let r = hub
        .put_json(
            "/api/notifications/channels/999",
            &json!({"name": "x", "kind": "ntfy", "config": {"topic": "x"}}),
        )
        .await;
    assert_eq!(r.status(), 404);
    // Nothing of the refused edits stuck.
    let list = hub.get_json("/api/notifications/channels").await;
    let phone = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap();
    assert_eq!(
        (phone["name"].as_str(), phone["kind"].as_str()),
        (Some("phone"), Some("ntfy"))
    );
}

/// A service that names its channels notifies those alone; named none, it
/// notifies every channel; a channel that does not exist is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_notifies_the_channels_it_names() {
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(fast, clock.clone()).await;
    let rx = Receiver::start().await;
    let _ops = channel(&hub, "ops", "webhook", json!({"url": rx.url("/ops")})).await;
    let phone = channel(&hub, "phone", "webhook", json!({"url": rx.url("/phone")})).await;
    let id = beat(&hub, "nas", "10.0.0.9").await;
    let r = hub
        .put_json(
            &format!("/api/services/{id}"),
            &json!({"channels": [phone]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["channels"], json!([phone]));
    clock.advance(Duration::from_secs(61));
    rx.wait_for("/phone", 1, SOON).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // an absence needs a window
    assert!(rx.received("/ops").is_empty(), "ops is not named");

    // Every channel again: the recovery goes to both.
    hub.put_json(&format!("/api/services/{id}"), &json!({"channels": []}))
        .await;
    beat(&hub, "nas", "10.0.0.9").await;
    rx.wait_for("/phone", 2, SOON).await;
    rx.wait_for("/ops", 1, SOON).await;

    // Mistakes are named, and change nothing.
    for (body, field) in [
        (json!({"channels": [999]}), "channels[0]"),
        (json!({"channels": "phone"}), "channels"),
        (json!({"channels": [0]}), "channels"),
    ] {
        let r = hub.put_json(&format!("/api/services/{id}"), &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["fields"][0]["field"], field, "{error}");
    }
    assert!(
        hub.service(id).await.get("channels").is_none(),
        "every channel"
    );
}

/// A recurring maintenance window (a cron schedule, a zone, a length) holds
/// alerts back while it is open, every time it comes round; a window that
/// cannot be read is named by its part.
#[tokio::test(flavor = "multi_thread")]
async fn a_recurring_maintenance_window_holds_alerts_while_open() {
    // 2027-01-15 08:00:00 UTC.
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = spawn_hub_with_clock(fast, clock.clone()).await;
    let rx = Receiver::start().await;
    channel(&hub, "hook", "webhook", json!({"url": rx.url("/hook")})).await;
    let id = beat(&hub, "router", "10.0.0.1").await;
    let path = format!("/api/services/{id}");
    for (window, field) in [
        (
            json!({"schedule": "0 8 * *", "minutes": 60}),
            "maintenance_window.schedule",
        ),
        (
            json!({"schedule": "0 8 * * *", "tz": "Mars/Olympus", "minutes": 60}),
            "maintenance_window.tz",
        ),
        (
            json!({"schedule": "0 8 * * *", "minutes": 20000}),
            "maintenance_window.minutes",
        ),
        (json!("0 8 * * *"), "maintenance_window"),
    ] {
        let r = hub
            .put_json(&path, &json!({"maintenance_window": window}))
            .await;
        assert_eq!(r.status(), 422, "{window}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["fields"][0]["field"], field, "{error}");
    }
    // Every day 08:00–09:00 UTC: open now.
    let window = json!({"schedule": "0 8 * * *", "minutes": 60});
    let r = hub
        .put_json(&path, &json!({"maintenance_window": window}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["maintenance_window"],
        window
    );
    clock.advance(Duration::from_secs(61));
    hub.wait_for_service(id, SOON, |s| s["state"] == "FAILURE")
        .await;
    let page = hub.get_text("/").await;
    assert!(page.contains(r#"title="No alerts are sent for it now">maintenance</span>"#));
    tokio::time::sleep(Duration::from_millis(1500)).await; // an absence needs a window
    assert!(rx.received("/hook").is_empty(), "alerted inside the window");
    // 09:00: the window closes and the held alert goes out.
    clock.advance(Duration::from_secs(3600));
    let got = rx.wait_for("/hook", 1, SOON).await;
    assert_eq!(got[0].json()["event"], "alert");
    // Removed with null.
    let r = hub
        .put_json(&path, &json!({"maintenance_window": null}))
        .await;
    assert!(r
        .json::<Value>()
        .await
        .unwrap()
        .get("maintenance_window")
        .is_none());
}

/// A maintenance window planned ahead (`maintenance_from` with
/// `maintenance_until`) holds nothing back before it begins and alerts
/// after it ends; a start without an end, or after it, is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_planned_maintenance_window_holds_alerts_only_while_it_lasts() {
    let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let clock = ManualClock::new(t0);
    let hub = spawn_hub_with_clock(fast, clock.clone()).await;
    let rx = Receiver::start().await;
    channel(&hub, "hook", "webhook", json!({"url": rx.url("/hook")})).await;
    let id = beat(&hub, "router", "10.0.0.1").await;
    let path = format!("/api/services/{id}");
    let at = |secs: i64| (t0 + chrono::Duration::seconds(secs)).to_rfc3339();
    for body in [
        json!({"maintenance_from": at(600)}),
        json!({"maintenance_from": at(600), "maintenance_until": null}),
        json!({"maintenance_from": at(600), "maintenance_until": at(600)}),
    ] {
        let r = hub.put_json(&path, &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["fields"][0]["field"], "maintenance_from", "{error}");
    }
    assert!(
        hub.service(id).await.get("maintenance_from").is_none(),
        "nothing half-set"
    );

    // Planned for 10:00–11:00 from now (08:00): the failure at 08:01 alerts.
    let r = hub
        .put_json(
            &path,
            &json!({"maintenance_from": at(7200), "maintenance_until": at(10800)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["maintenance_from"], "2027-01-15T10:00:00Z");
    let page = hub.get_text(&format!("/services/{id}")).await;
    assert!(
        page.contains(
            r#"Maintenance planned</strong> from <time datetime="2027-01-15T10:00:00Z">"#
        ),
        "{page}"
    );
    clock.advance(Duration::from_secs(61));
    hub.wait_for_service(id, SOON, |s| s["state"] == "FAILURE")
        .await;
    let got = rx.wait_for("/hook", 1, SOON).await;
    assert_eq!(got[0].json()["event"], "alert");

    // Recovered, then failing again inside the window: held back.
    beat(&hub, "router", "10.0.0.1").await;
    rx.wait_for("/hook", 2, SOON).await;
    clock.advance(Duration::from_secs(7200));
    hub.wait_for_service(id, SOON, |s| s["state"] == "FAILURE")
        .await;
    let page = hub.get_text("/").await;
    assert!(page.contains(r#"title="No alerts are sent for it now">maintenance</span>"#));
    tokio::time::sleep(Duration::from_millis(1500)).await; // an absence needs a window
    assert_eq!(rx.received("/hook").len(), 2, "alerted inside the window");
    // 11:00: it ends and the held alert goes out; an end sent alone is a
    // window from now, so the planned start is gone.
    clock.advance(Duration::from_secs(3600));
    let got = rx.wait_for("/hook", 3, SOON).await;
    assert_eq!(got[2].json()["event"], "alert");
    let r = hub
        .put_json(&path, &json!({"maintenance_until": at(20000)}))
        .await;
    assert!(r
        .json::<Value>()
        .await
        .unwrap()
        .get("maintenance_from")
        .is_none());
}
