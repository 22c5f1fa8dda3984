//! Web Push end to end: a "browser" (keys made here, as a browser makes
//! them) subscribes through the API, a `webpush` channel sends a test and a
//! real alert, and a push service on loopback (a real HTTP server) receives
//! them; the test decrypts each payload with the subscription's own keys
//! (RFC 8291) and checks the VAPID signature (RFC 8292) against the hub's
//! public key. A subscription the push service says is gone is forgotten.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use lookout_testkit::{spawn_hub_with, Receiver, Target, TestHub};
use p256::ecdsa::signature::Verifier as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(20);

/// A browser's side of a subscription: its key pair and auth secret.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new(seed: u8) -> Browser {
        Browser {
            secret: p256::SecretKey::from_slice(&[seed; 32]).unwrap(),
            auth: [seed.wrapping_add(1); 16],
        }
    }

    /// `PushSubscription.toJSON()` for `endpoint`.
    fn subscription(&self, endpoint: &str) -> Value {
        let public = self.secret.public_key().to_encoded_point(false);
        json!({"endpoint": endpoint, "expirationTime": null, "keys": {
            "p256dh": URL_SAFE_NO_PAD.encode(public.as_bytes()),
            "auth": URL_SAFE_NO_PAD.encode(self.auth),
        }})
    }

    /// What the push service relayed, decrypted as the browser does.
    fn read(&self, body: &[u8]) -> Value {
        let auth = web_push_native::Auth::clone_from_slice(&self.auth);
        let plain = web_push_native::decrypt(body.to_vec(), &self.secret, &auth)
            .expect("the payload decrypts with the subscription's keys");
        serde_json::from_slice(&plain).unwrap()
    }
}

/// Checks the `Authorization: vapid t=…, k=…` header: `k` is the hub's
/// public key, the token is signed by it for the push service's origin.
fn check_vapid(header: &str, hub_key: &str, origin: &str) {
    let rest = header.strip_prefix("vapid t=").expect(header);
    let (token, k) = rest.split_once(", k=").expect(header);
    assert_eq!(k, hub_key);
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
    let signature =
        p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    key.verify(signed.as_bytes(), &signature)
        .expect("signed with the hub's key");
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(signed.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], origin);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(claims["exp"].as_u64().unwrap() > now, "not expired");
}

async fn hub(web_push_http: bool) -> TestHub {
    spawn_hub_with(move |c| {
        c.notify.web_push_http = web_push_http;
        c.notify.retry_base = Duration::from_millis(50);
        c.notify.attempts = 2;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_and_an_alert_reach_a_subscribed_browser_encrypted_for_it_alone() {
    let hub = hub(true).await;
    let push = Receiver::start().await;
    let phone = Browser::new(7);
    let laptop = Browser::new(9);
    let hub_key = hub.get_json("/api/v1/push/key").await["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(URL_SAFE_NO_PAD.decode(&hub_key).unwrap().len(), 65);

    for (browser, path, name) in [
        (&phone, "/push/phone", "Pixel"),
        (&laptop, "/push/laptop", ""),
    ] {
        let mut body = browser.subscription(&push.url(path));
        if !name.is_empty() {
            body["device"] = json!(name);
        }
        let r = hub
            .client
            .post(hub.url("/api/v1/users/me/devices"))
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let devices = hub.get_json("/api/v1/users/me/devices").await;
    let names: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Pixel", "Firefox on Linux"]);
    assert!(
        devices[0].get("endpoint").is_none(),
        "the endpoint is a capability: never shown"
    );

    let r = hub
        .post_json(
            "/api/notifications/channels",
            &json!({"name": "phones", "kind": "webpush", "config": {"contact": "mailto:me@example.org"}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let channel = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let r = hub
        .post(&format!("/api/notifications/channels/{channel}/test"))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));
    let got = push.wait_for("/push/phone", 1, SOON).await;
    let origin = format!("http://{}", push.addr);
    let test = &got[0];
    assert_eq!(
        test.header("content-encoding").as_deref(),
        Some("aes128gcm")
    );
    assert!(test.header("ttl").is_some());
    check_vapid(&test.header("authorization").unwrap(), &hub_key, &origin);
    let shown = phone.read(&test.raw);
    assert_eq!(shown["title"], "lookout test notification");
    assert!(shown["body"]
        .as_str()
        .unwrap()
        .contains("this channel works"));
    // Encrypted for each browser alone: the phone's key cannot read the
    // laptop's copy.
    let laptop_copy = &push.wait_for("/push/laptop", 1, SOON).await[0];
    assert_eq!(
        laptop.read(&laptop_copy.raw)["title"],
        "lookout test notification"
    );
    let auth = web_push_native::Auth::clone_from_slice(&phone.auth);
    assert!(web_push_native::decrypt(laptop_copy.raw.to_vec(), &phone.secret, &auth).is_err());

    // A real alert: a service that stops answering.
    let target = Target::start(200).await;
    let service = hub
        .create_service(
            json!({"name": "nas", "base_url": target.url(), "check_interval_secs": 1,
                               "notify_after": 1}),
        )
        .await;
    let id = service["id"].as_i64().unwrap();
    hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
    target.set_status(503);
    let got = push.wait_for("/push/phone", 2, SOON).await;
    let alert = phone.read(&got[1].raw);
    assert_eq!(alert["title"], "nas is failing", "{alert}");
    assert_eq!(alert["url"], format!("/services/{id}"));
    assert_eq!(alert["tag"], format!("lookout-service-{id}"));
    assert_eq!(got[1].header("urgency").as_deref(), Some("high"));
    let devices = hub.get_json("/api/v1/users/me/devices").await;
    assert!(devices[0]["last_sent_at"].is_string(), "{devices}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gone_subscription_is_forgotten_and_bad_ones_are_refused() {
    let hub = hub(true).await;
    let push = Receiver::start().await;
    let browser = Browser::new(11);
    let r = hub
        .post_json(
            "/api/v1/users/me/devices",
            &browser.subscription(&push.url("/gone/abc")),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = hub
        .post_json(
            "/api/notifications/channels",
            &json!({"name": "p", "kind": "webpush", "config": {}}),
        )
        .await;
    let channel = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let r = hub
        .post(&format!("/api/notifications/channels/{channel}/test"))
        .await;
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(outcome["ok"], false);
    assert!(
        outcome["error"].as_str().unwrap().contains("unsubscribed"),
        "{outcome}"
    );
    assert_eq!(
        hub.get_json("/api/v1/users/me/devices").await,
        json!([]),
        "forgotten"
    );
    let r = hub
        .post(&format!("/api/notifications/channels/{channel}/test"))
        .await;
    let outcome: Value = r.json().await.unwrap();
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("no device has subscribed"),
        "{outcome}"
    );

    // A field the document does not name is refused first, with every
    // other departure from its schema.
    let r = hub
        .post_json(
            "/api/v1/users/me/devices",
            &json!({"endpoint": "ftp://x", "keys": {"p256dh": "AAAA"}, "colour": 1}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    let mut fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["colour", "keys.auth"], "{body}");
    // Every bad field of the right shape at once; nothing stored.
    let r = hub
        .post_json(
            "/api/v1/users/me/devices",
            &json!({"endpoint": "ftp://x", "keys": {"p256dh": "AAAA", "auth": "!!"}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["endpoint", "keys.p256dh", "keys.auth"], "{body}");
    let r = hub
        .post_json(
            "/api/v1/users/me/devices",
            &json!({"endpoint": "https://push.example"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(hub.get_json("/api/v1/users/me/devices").await, json!([]));
    assert_eq!(
        hub.delete("/api/v1/users/me/devices/999").await.status(),
        404
    );

    // Plain HTTP push services only where the hub allows them.
    let strict = self::hub(false).await;
    let r = strict
        .post_json(
            "/api/v1/users/me/devices",
            &browser.subscription(&push.url("/push/x")),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("https"),
        "{body}"
    );
    let r = strict
        .post_json(
            "/api/v1/users/me/devices",
            &browser.subscription("https://push.example.net/wpush/v2/abc"),
        )
        .await;
    assert_eq!(r.status(), 201);
}
