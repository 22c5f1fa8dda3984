//! Web Push, the delivery behind the hub's "web push" channel: a browser that
//! subscribed (through the Push API) gets notices from its push service even
//! with no lookout tab open.
//!
//! The pieces, each after its RFC:
//! - the hub's VAPID key pair ([`VapidKeys`]): one P-256 key that identifies
//!   the hub to every push service; its public half is the
//!   `applicationServerKey` a browser subscribes with;
//! - RFC 8291 message encryption ([`encrypt`]): a notice is encrypted for one
//!   browser subscription (`aes128gcm`), so the push service relays bytes it
//!   cannot read;
//! - RFC 8292 VAPID authorization ([`VapidKeys::authorization`]): a short-lived
//!   ES256 JWT for the push service's origin, signed with the hub's key;
//! - delivery ([`send`]): one POST to the subscription's endpoint, which tells
//!   a subscription that is gone (the browser unsubscribed, HTTP 404/410) from
//!   a failure worth retrying.
//!
//! A subscription's endpoint is a capability: whoever knows it can push to that
//! browser. Nothing here puts it, or any key material, in an error.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{DeliveryError, Receiver};

/// How long a VAPID token stays valid. RFC 8292 §2 caps it at 24 hours.
const VAPID_LIFETIME_SECS: i64 = 12 * 60 * 60;

/// Longest endpoint accepted; real ones are a few hundred characters.
const MAX_ENDPOINT_LEN: usize = 2048;

/// Largest payload one notice can carry: push services need only accept a
/// 4096-byte body (RFC 8030 §7.2), and RFC 8291 spends 86 bytes of it on the
/// header, 16 on the authentication tag and 1 on the padding delimiter.
pub const MAX_PAYLOAD: usize = 4096 - 86 - 16 - 1;

/// Length of an uncompressed SEC1 P-256 point: `0x04 || x || y`.
const POINT_LEN: usize = 65;

/// Length of a subscription's authentication secret (RFC 8291 §3.2).
const AUTH_LEN: usize = 16;

/// What can go wrong with keys, subscriptions and encryption. No message
/// carries key material or an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum WebPushError {
    #[error("the VAPID secret is not base64url")]
    SecretEncoding,
    #[error("the VAPID secret is not a P-256 private key (32 bytes)")]
    SecretKey,
    #[error("the subscription's {field} {message}")]
    Subscription {
        field: &'static str,
        message: String,
    },
    #[error("the notice is {len} bytes; Web Push carries at most {MAX_PAYLOAD}")]
    PayloadTooLarge { len: usize },
    #[error("the notice could not be encrypted")]
    Encryption(#[source] web_push_native::Error),
}

/// The hub's VAPID key pair (P-256). The secret is kept in the database as base64url.
#[derive(Clone)]
pub struct VapidKeys {
    signing: SigningKey,
}

impl std::fmt::Debug for VapidKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKeys")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl VapidKeys {
    /// A fresh key pair from the OS's random numbers.
    pub fn generate() -> Self {
        loop {
            let mut bytes = [0u8; 32];
            #[allow(
                clippy::expect_used,
                reason = "without the OS's random numbers no key can be made; stopping is safer"
            )]
            getrandom::fill(&mut bytes).expect("the OS random number generator is available");
            // Zero or a value of at least the group order is no key; the
            // chance of drawing one is about 2^-32, so draw again.
            if let Ok(signing) = SigningKey::from_slice(&bytes) {
                return Self { signing };
            }
        }
    }

    /// The key pair from its stored secret: the 32-byte private scalar as
    /// base64url, padded or not.
    pub fn from_secret(base64url: &str) -> Result<Self, WebPushError> {
        let bytes = decode_base64url(base64url).map_err(|_| WebPushError::SecretEncoding)?;
        // `from_slice` would also take shorter, left-padded scalars; a stored
        // secret is always the full 32 bytes.
        if bytes.len() != 32 {
            return Err(WebPushError::SecretKey);
        }
        let signing = SigningKey::from_slice(&bytes).map_err(|_| WebPushError::SecretKey)?;
        Ok(Self { signing })
    }

    /// The private scalar, base64url without padding: what the database keeps.
    pub fn secret(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.signing.to_bytes())
    }

    /// The public key as a 65-byte uncompressed point, base64url without
    /// padding: the browser's `applicationServerKey`.
    pub fn public_key(&self) -> String {
        let point = self.signing.verifying_key().to_encoded_point(false);
        URL_SAFE_NO_PAD.encode(point.as_bytes())
    }

    /// `Authorization` header value for a push to `endpoint`: `vapid t=<JWT>, k=<public key>` (RFC 8292 §3).
    ///
    /// The JWT is ES256-signed, for the endpoint's origin (`aud`), valid
    /// twelve hours from `now` (`exp`), and names whom the push service may
    /// contact about this hub (`sub`, a `mailto:` or `https:` URL).
    pub fn authorization(&self, endpoint: &Url, subject: &str, now: DateTime<Utc>) -> String {
        // The header is fixed; written out so its bytes are exactly these.
        let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": endpoint.origin().ascii_serialization(),
            "exp": now.timestamp().saturating_add(VAPID_LIFETIME_SECS),
            "sub": subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        // JWS ES256 (RFC 7518 §3.4): ECDSA over SHA-256, the signature as r || s.
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(signature.to_bytes());
        format!(
            "vapid t={signing_input}.{signature}, k={}",
            self.public_key()
        )
    }
}

/// A browser's push subscription as `PushSubscription.toJSON()` gives it.
///
/// On the wire it has the browser's shape,
/// `{"endpoint": …, "keys": {"p256dh": …, "auth": …}}`; other members
/// (`expirationTime`) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SubscriptionJson", into = "SubscriptionJson")]
pub struct Subscription {
    /// The push service URL for this browser; a capability, keep it private.
    pub endpoint: String,
    /// The browser's P-256 public key, uncompressed, base64url.
    pub p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    pub auth: String,
}

#[derive(Serialize, Deserialize)]
struct SubscriptionJson {
    endpoint: String,
    keys: SubscriptionKeys,
}

#[derive(Serialize, Deserialize)]
struct SubscriptionKeys {
    p256dh: String,
    auth: String,
}

impl From<SubscriptionJson> for Subscription {
    fn from(json: SubscriptionJson) -> Self {
        Self {
            endpoint: json.endpoint,
            p256dh: json.keys.p256dh,
            auth: json.keys.auth,
        }
    }
}

impl From<Subscription> for SubscriptionJson {
    fn from(subscription: Subscription) -> Self {
        Self {
            endpoint: subscription.endpoint,
            keys: SubscriptionKeys {
                p256dh: subscription.p256dh,
                auth: subscription.auth,
            },
        }
    }
}

impl Subscription {
    /// Checks the fields: endpoint an absolute http(s) URL with a host (at most 2048 chars), p256dh a base64url uncompressed P-256 point (65 bytes, valid point), auth 16 bytes base64url. Returns each offending field as (field name, message) — field names "endpoint", "keys.p256dh", "keys.auth".
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(message) = parse_endpoint(&self.endpoint) {
            problems.push(("endpoint", message.into()));
        }
        if let Err(message) = parse_p256dh(&self.p256dh) {
            problems.push(("keys.p256dh", message.into()));
        }
        if let Err(message) = parse_auth(&self.auth) {
            problems.push(("keys.auth", message.into()));
        }
        problems
    }
}

fn decode_base64url(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
}

fn parse_endpoint(endpoint: &str) -> Result<Url, lookout_proto::error::Invalid> {
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(format!(
            "is {} characters; at most {MAX_ENDPOINT_LEN} are accepted",
            endpoint.len()
        )
        .into());
    }
    let url = Url::parse(endpoint).map_err(|_| "is not an absolute URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(url)
}

fn parse_p256dh(p256dh: &str) -> Result<p256::PublicKey, lookout_proto::error::Invalid> {
    let bytes = decode_base64url(p256dh).map_err(|_| "is not base64url".to_string())?;
    if bytes.len() != POINT_LEN || bytes.first() != Some(&0x04) {
        return Err(format!(
            "must be an uncompressed P-256 point ({POINT_LEN} bytes starting 0x04), not {} bytes",
            bytes.len()
        )
        .into());
    }
    p256::PublicKey::from_sec1_bytes(&bytes).map_err(|_| "is not a point on P-256".into())
}

fn parse_auth(auth: &str) -> Result<web_push_native::Auth, lookout_proto::error::Invalid> {
    let bytes = decode_base64url(auth).map_err(|_| "is not base64url".to_string())?;
    if bytes.len() != AUTH_LEN {
        return Err(format!("must be {AUTH_LEN} bytes, not {}", bytes.len()).into());
    }
    Ok(web_push_native::Auth::clone_from_slice(&bytes))
}

/// RFC 8291 encryption of `payload` for one subscription (Content-Encoding aes128gcm).
///
/// Each call uses a fresh ephemeral key and salt, so two encryptions of the
/// same notice differ. The result is the whole request body: the `aes128gcm`
/// header (salt, record size, the ephemeral public key as `keyid`) and one
/// record.
pub fn encrypt(payload: &[u8], subscription: &Subscription) -> Result<Vec<u8>, WebPushError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(WebPushError::PayloadTooLarge { len: payload.len() });
    }
    let ua_public =
        parse_p256dh(&subscription.p256dh).map_err(|message| WebPushError::Subscription {
            field: "keys.p256dh",
            message: message.into(),
        })?;
    let auth = parse_auth(&subscription.auth).map_err(|message| WebPushError::Subscription {
        field: "keys.auth",
        message: message.into(),
    })?;
    web_push_native::encrypt(payload.to_vec(), &ua_public, &auth).map_err(WebPushError::Encryption)
}

/// What a delivery came to.
#[derive(Debug, PartialEq)]
pub enum Delivered {
    /// The push service took the notice.
    Sent,
    /// 404 or 410: the subscription is gone and should be removed
    Gone,
}

/// POSTs one encrypted notice to a subscription's endpoint (RFC 8030 §5).
///
/// Headers: `TTL` (how long, in seconds, the push service may hold it for
/// a browser that is offline), `Content-Encoding: aes128gcm`,
/// `Content-Type: application/octet-stream`, `Urgency` (`high` when `urgent`,
/// for alerts, else `normal`) and the VAPID `Authorization` for `subject`.
///
/// 2xx is [`Delivered::Sent`]; 404 and 410 are [`Delivered::Gone`]; anything
/// else, and a request that never got an answer, is an error whose message
/// never contains the endpoint.
#[allow(
    clippy::too_many_arguments,
    reason = "one delivery's inputs, each distinct; a struct would only rename them"
)]
pub async fn send(
    client: &reqwest::Client,
    keys: &VapidKeys,
    subject: &str,
    subscription: &Subscription,
    payload: &[u8],
    ttl_secs: u32,
    urgent: bool,
    now: DateTime<Utc>,
) -> Result<Delivered, DeliveryError> {
    let endpoint = parse_endpoint(&subscription.endpoint).map_err(DeliveryError::Endpoint)?;
    let body = encrypt(payload, subscription)?;
    let authorization = keys.authorization(&endpoint, subject, now);
    let response = client
        .post(endpoint)
        .header("TTL", ttl_secs.to_string())
        .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header("Urgency", if urgent { "high" } else { "normal" })
        .header(reqwest::header::AUTHORIZATION, authorization)
        .body(body)
        .send()
        .await
        .map_err(|e| DeliveryError::request(Receiver::PushService, e))?;
    let status = response.status();
    if status.is_success() {
        Ok(Delivered::Sent)
    } else if matches!(status.as_u16(), 404 | 410) {
        Ok(Delivered::Gone)
    } else {
        Err(DeliveryError::Answered(
            Receiver::PushService,
            status.as_u16(),
        ))
    }
}

/// Where the hub's VAPID secret is kept (`hub_state`).
const VAPID_STATE_KEY: &str = "vapid_secret";

/// The hub's VAPID key pair: made on first use and kept in the database, so
/// every hub sharing it signs with the same key (subscriptions were made
/// for its public half).
pub async fn hub_keys(store: &dyn crate::store::Store) -> Result<VapidKeys, DeliveryError> {
    let unreadable = DeliveryError::Keys;
    // Read first: only the first use of all writes.
    let kept = match store.get_state(VAPID_STATE_KEY).await.map_err(unreadable)? {
        Some(kept) => kept,
        None => store
            .state_or_insert(VAPID_STATE_KEY, &VapidKeys::generate().secret())
            .await
            .map_err(unreadable)?,
    };
    Ok(VapidKeys::from_secret(&kept)?)
}

/// What a browser's service worker receives: the notification to show.
fn payload(notice: &super::Notice) -> Vec<u8> {
    let mut body = notice.text();
    // Leave room for the rest of the JSON within what a push carries.
    if body.len() > MAX_PAYLOAD - 1024 {
        let mut cut = MAX_PAYLOAD - 1024;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push('…');
    }
    let url = match (&notice.link, notice.service_id) {
        (Some(link), _) => link.clone(),
        (None, Some(id)) => format!("/services/{id}"),
        (None, None) => "/".to_owned(),
    };
    serde_json::json!({
        "title": notice.title(),
        "body": body,
        "url": url,
        "tag": notice.service_id.map_or_else(|| "lookout".to_owned(), |id| format!("lookout-service-{id}")),
        "kind": notice.kind,
        "status": notice.status,
    })
    .to_string()
    .into_bytes()
}

/// Sends a notice to every device subscribed by the channel's accounts
/// (`users`, names separated by commas; none named: every device). A
/// subscription the push service says is gone is removed. Fails when no
/// device is subscribed or none could be reached.
pub async fn deliver(
    client: &reqwest::Client,
    store: &dyn crate::store::Store,
    config: &serde_json::Map<String, serde_json::Value>,
    notice: &super::Notice,
) -> Result<(), DeliveryError> {
    let get = |k: &str| {
        config
            .get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
    };
    let unreadable = DeliveryError::Devices;
    let mut subscriptions = store.push_subscriptions(None).await.map_err(unreadable)?;
    let named: Vec<&str> = get("users")
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if !named.is_empty() {
        let users = store.list_users().await.map_err(unreadable)?;
        let ids: Vec<i64> = users
            .iter()
            .filter(|u| named.contains(&u.username.as_str()))
            .map(|u| u.id)
            .collect();
        subscriptions.retain(|s| s.user_id.is_some_and(|id| ids.contains(&id)));
    }
    if subscriptions.is_empty() {
        return Err(DeliveryError::NoDevices);
    }
    let keys = hub_keys(store).await?;
    let contact = match get("contact") {
        "" => "mailto:lookout@localhost",
        c => c,
    };
    let body = payload(notice);
    let urgent = matches!(notice.kind, super::NoticeKind::Alert);
    #[allow(
        clippy::disallowed_methods,
        reason = "the push service checks the VAPID token's expiry against real time, whatever the hub's clock says"
    )]
    let now = Utc::now();
    // Every device at once: one slow push service delays no other.
    let outcomes = futures::future::join_all(subscriptions.iter().map(|s| {
        let subscription = Subscription {
            endpoint: s.endpoint.clone(),
            p256dh: s.p256dh.clone(),
            auth: s.auth.clone(),
        };
        let (keys, body) = (&keys, &body);
        async move {
            send(
                client,
                keys,
                contact,
                &subscription,
                body,
                86_400,
                urgent,
                now,
            )
            .await
        }
    }))
    .await;
    let (mut sent, mut last_error) = (0, None);
    for (s, outcome) in subscriptions.iter().zip(outcomes) {
        match outcome {
            Ok(Delivered::Sent) => {
                sent += 1;
                if let Err(e) = store.push_sent(s.id, now).await {
                    tracing::warn!(error = ?e, "cannot note a push as sent");
                }
            }
            Ok(Delivered::Gone) => {
                tracing::info!(device = %s.device, "a browser unsubscribed from notifications: forgotten");
                if let Err(e) = store.delete_push_subscription(s.id, None).await {
                    tracing::warn!(error = ?e, "cannot forget a push subscription");
                }
                last_error = Some(DeliveryError::Unsubscribed {
                    device: s.device.clone(),
                });
            }
            Err(e) => {
                last_error = Some(DeliveryError::Device {
                    device: s.device.clone(),
                    cause: Box::new(e),
                });
            }
        }
    }
    match (sent, last_error) {
        (0, Some(e)) => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test stops at its first surprise"
)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use chrono::TimeZone as _;
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::VerifyingKey;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).unwrap()
    }

    fn random_bytes<const N: usize>() -> [u8; N] {
        let mut bytes = [0u8; N];
        getrandom::fill(&mut bytes).unwrap();
        bytes
    }

    /// A browser's side of a subscription: the secret key stays here.
    fn browser(endpoint: &str) -> (p256::SecretKey, web_push_native::Auth, Subscription) {
        let secret = loop {
            if let Ok(secret) = p256::SecretKey::from_slice(&random_bytes::<32>()) {
                break secret;
            }
        };
        let auth = random_bytes::<16>();
        let subscription = Subscription {
            endpoint: endpoint.to_string(),
            p256dh: URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth),
        };
        (
            secret,
            web_push_native::Auth::clone_from_slice(&auth),
            subscription,
        )
    }

    /// The `aes128gcm` header (RFC 8188 §2.1): salt, record size, keyid.
    fn header(body: &[u8]) -> (&[u8], u32, &[u8]) {
        let rs = u32::from_be_bytes(body[16..20].try_into().unwrap());
        let idlen = usize::from(body[20]);
        (&body[..16], rs, &body[21..21 + idlen])
    }

    // RFC 8291 §5 and Appendix A, "Push Message Encryption Example".
    const RFC_PLAINTEXT: &[u8] = b"When I grow up, I want to be a watermelon";
    const RFC_UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const RFC_UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const RFC_AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const RFC_AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const RFC_AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const RFC_SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const RFC_BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    #[test]
    fn the_rfc_8291_example_decrypts_to_its_plaintext() {
        let ua_private = p256::SecretKey::from_slice(&b64(RFC_UA_PRIVATE)).unwrap();
        let as_private = p256::SecretKey::from_slice(&b64(RFC_AS_PRIVATE)).unwrap();
        let body = b64(RFC_BODY);

        // The vector is consistent with itself.
        assert_eq!(
            ua_private.public_key().to_encoded_point(false).as_bytes(),
            b64(RFC_UA_PUBLIC).as_slice()
        );
        assert_eq!(
            as_private.public_key().to_encoded_point(false).as_bytes(),
            b64(RFC_AS_PUBLIC).as_slice()
        );
        let (salt, rs, keyid) = header(&body);
        assert_eq!(salt, b64(RFC_SALT).as_slice());
        assert_eq!(rs, 4096);
        assert_eq!(keyid, b64(RFC_AS_PUBLIC).as_slice());

        // And the browser's side reads it.
        let auth = web_push_native::Auth::clone_from_slice(&b64(RFC_AUTH));
        let plaintext = web_push_native::decrypt(body, &ua_private, &auth).unwrap();
        assert_eq!(plaintext, RFC_PLAINTEXT);
    }

    #[test]
    fn an_encrypted_notice_decrypts_with_the_browsers_key_and_is_fresh_each_time() {
        let (secret, auth, subscription) = browser("https://push.example.net/push/abc");
        let payload = br#"{"title":"web is down"}"#;

        let first = encrypt(payload, &subscription).unwrap();
        let second = encrypt(payload, &subscription).unwrap();
        assert_eq!(
            web_push_native::decrypt(first.clone(), &secret, &auth).unwrap(),
            payload
        );
        assert_eq!(
            web_push_native::decrypt(second.clone(), &secret, &auth).unwrap(),
            payload
        );

        let (first_salt, _, first_keyid) = header(&first);
        let (second_salt, _, second_keyid) = header(&second);
        assert_eq!(first_keyid.len(), 65);
        assert_eq!(first_keyid[0], 0x04);
        assert!(p256::PublicKey::from_sec1_bytes(first_keyid).is_ok());
        assert_ne!(first_keyid, second_keyid, "a fresh ephemeral key each time");
        assert_ne!(first_salt, second_salt, "a fresh salt each time");
    }

    #[test]
    fn a_payload_too_large_for_a_push_service_is_refused() {
        let (_, _, subscription) = browser("https://push.example.net/push/abc");
        assert!(encrypt(&[b'x'; MAX_PAYLOAD], &subscription).is_ok());
        assert!(matches!(
            encrypt(&[b'x'; MAX_PAYLOAD + 1], &subscription),
            Err(WebPushError::PayloadTooLarge { .. })
        ));
    }

    /// The JWT's header and claims, verified against `k`.
    fn verified_claims(authorization: &str) -> (String, serde_json::Value) {
        let rest = authorization.strip_prefix("vapid ").unwrap();
        let (t, k) = rest.split_once(", ").unwrap();
        let jwt = t.strip_prefix("t=").unwrap();
        let k = k.strip_prefix("k=").unwrap();

        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&b64(parts[0])).unwrap();
        assert_eq!(header, serde_json::json!({"typ": "JWT", "alg": "ES256"}));

        let verifying = VerifyingKey::from_sec1_bytes(&b64(k)).unwrap();
        let signature_bytes = b64(parts[2]);
        assert_eq!(signature_bytes.len(), 64, "r || s");
        let signature = Signature::from_slice(&signature_bytes).unwrap();
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        verifying
            .verify(signing_input.as_bytes(), &signature)
            .unwrap();

        let claims = serde_json::from_slice(&b64(parts[1])).unwrap();
        (k.to_string(), claims)
    }

    #[test]
    fn the_vapid_authorization_is_a_signed_jwt_for_the_push_services_origin() {
        let keys = VapidKeys::generate();
        let now = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        let endpoint = Url::parse("https://push.example.net/push/abc?x=1").unwrap();

        let (k, claims) =
            verified_claims(&keys.authorization(&endpoint, "mailto:ops@example.org", now));
        assert_eq!(k, keys.public_key());
        assert_eq!(b64(&k).len(), 65);
        assert_eq!(
            claims,
            serde_json::json!({
                "aud": "https://push.example.net",
                "exp": now.timestamp() + 12 * 3600,
                "sub": "mailto:ops@example.org",
            })
        );

        let on_port = Url::parse("https://push.example.net:8443/push/abc").unwrap();
        let (_, claims) = verified_claims(&keys.authorization(&on_port, "mailto:a@b.c", now));
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        let default_port = Url::parse("https://push.example.net:443/push/abc").unwrap();
        let (_, claims) = verified_claims(&keys.authorization(&default_port, "mailto:a@b.c", now));
        assert_eq!(claims["aud"], "https://push.example.net");
    }

    #[test]
    fn vapid_keys_come_back_from_their_secret_and_do_not_show_it() {
        let keys = VapidKeys::generate();
        let secret = keys.secret();
        assert_eq!(b64(&secret).len(), 32);
        assert!(!secret.contains('='));

        assert_eq!(
            VapidKeys::from_secret(&secret).unwrap().public_key(),
            keys.public_key()
        );
        let padded = format!("{secret}=");
        assert_eq!(
            VapidKeys::from_secret(&padded).unwrap().public_key(),
            keys.public_key()
        );
        assert_ne!(VapidKeys::generate().public_key(), keys.public_key());

        let debug = format!("{keys:?}");
        assert!(!debug.contains(&secret), "{debug}");
        assert!(debug.contains(&keys.public_key()));

        assert!(matches!(
            VapidKeys::from_secret("not base64!"),
            Err(WebPushError::SecretEncoding)
        ));
        let short = URL_SAFE_NO_PAD.encode([7u8; 31]);
        assert!(matches!(
            VapidKeys::from_secret(&short),
            Err(WebPushError::SecretKey)
        ));
        let zero = URL_SAFE_NO_PAD.encode([0u8; 32]);
        let error = VapidKeys::from_secret(&zero).unwrap_err();
        assert!(matches!(error, WebPushError::SecretKey));
        assert!(!error.to_string().contains(&zero));
    }

    #[test]
    fn a_subscription_reads_the_browsers_json() {
        let json = serde_json::json!({
            "endpoint": "https://push.example.net/push/abc",
            "expirationTime": null,
            "keys": {"p256dh": RFC_UA_PUBLIC, "auth": RFC_AUTH},
        });
        let subscription: Subscription = serde_json::from_value(json).unwrap();
        assert_eq!(subscription.endpoint, "https://push.example.net/push/abc");
        assert_eq!(subscription.p256dh, RFC_UA_PUBLIC);
        assert_eq!(subscription.auth, RFC_AUTH);
        assert!(subscription.check().is_empty());
        assert_eq!(
            serde_json::to_value(&subscription).unwrap(),
            serde_json::json!({
                "endpoint": "https://push.example.net/push/abc",
                "keys": {"p256dh": RFC_UA_PUBLIC, "auth": RFC_AUTH},
            })
        );
    }

    #[test]
    fn check_reports_every_bad_field_at_once() {
        let mut not_a_point = vec![0x04];
        not_a_point.extend([0xff; 64]);
        let bad = Subscription {
            endpoint: "ftp://push.example.net/x".to_string(),
            p256dh: URL_SAFE_NO_PAD.encode(&not_a_point),
            auth: URL_SAFE_NO_PAD.encode([1u8; 15]),
        };
        let problems = bad.check();
        let fields: Vec<&str> = problems.iter().map(|(field, _)| *field).collect();
        assert_eq!(
            fields,
            ["endpoint", "keys.p256dh", "keys.auth"],
            "{problems:?}"
        );
        assert!(problems[1].1.contains("not a point"), "{problems:?}");

        let short_key = Subscription {
            endpoint: "not a url".to_string(),
            p256dh: URL_SAFE_NO_PAD.encode([4u8; 33]),
            auth: "%%%".to_string(),
        };
        let problems = short_key.check();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[1].1.contains("33 bytes"), "{problems:?}");

        let too_long = Subscription {
            endpoint: format!("https://push.example.net/{}", "a".repeat(2048)),
            ..browser("https://push.example.net/").2
        };
        let problems = too_long.check();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "endpoint");

        assert!(browser("http://127.0.0.1:8080/push").2.check().is_empty());
    }

    /// What the push service saw of one request.
    #[derive(Debug)]
    struct Recorded {
        request_line: String,
        headers: HashMap<String, String>,
        body: Vec<u8>,
    }

    /// A push service on loopback that answers one request with `status`
    /// and hands over what it received.
    async fn push_service(status: u16) -> (String, tokio::sync::oneshot::Receiver<Recorded>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at;
                }
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the connection closed before the headers ended");
                received.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8(received[..head_end].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap().to_string();
            let headers: HashMap<String, String> = lines
                .map(|line| {
                    let (name, value) = line.split_once(':').unwrap();
                    (name.trim().to_ascii_lowercase(), value.trim().to_string())
                })
                .collect();
            let length: usize = headers["content-length"].parse().unwrap();
            let mut body = received[head_end + 4..].to_vec();
            while body.len() < length {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the connection closed before the body ended");
                body.extend_from_slice(&chunk[..n]);
            }
            let response = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            let _ = tx.send(Recorded {
                request_line,
                headers,
                body,
            });
        });
        (format!("http://127.0.0.1:{port}/push/the-capability"), rx)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    async fn recorded(rx: tokio::sync::oneshot::Receiver<Recorded>) -> Recorded {
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("the push service saw a request in time")
            .unwrap()
    }

    #[tokio::test]
    async fn send_posts_an_encrypted_notice_with_the_web_push_headers() {
        let keys = VapidKeys::generate();
        let now = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        let (endpoint, rx) = push_service(201).await;
        let (secret, auth, subscription) = browser(&endpoint);
        let payload = br#"{"title":"web is down"}"#;

        let delivered = send(
            &client(),
            &keys,
            "mailto:ops@example.org",
            &subscription,
            payload,
            3600,
            true,
            now,
        )
        .await;
        assert!(matches!(delivered, Ok(Delivered::Sent)), "{delivered:?}");

        let request = recorded(rx).await;
        assert_eq!(request.request_line, "POST /push/the-capability HTTP/1.1");
        assert_eq!(request.headers["ttl"], "3600");
        assert_eq!(request.headers["content-encoding"], "aes128gcm");
        assert_eq!(request.headers["content-type"], "application/octet-stream");
        assert_eq!(request.headers["urgency"], "high");
        let (k, claims) = verified_claims(&request.headers["authorization"]);
        assert_eq!(k, keys.public_key());
        assert_eq!(claims["aud"], endpoint_origin(&endpoint));
        assert_eq!(claims["sub"], "mailto:ops@example.org");
        assert_eq!(
            web_push_native::decrypt(request.body, &secret, &auth).unwrap(),
            payload
        );

        let (endpoint, rx) = push_service(201).await;
        let (_, _, subscription) = browser(&endpoint);
        let delivered = send(
            &client(),
            &keys,
            "mailto:a@b.c",
            &subscription,
            b"x",
            60,
            false,
            now,
        )
        .await;
        assert!(matches!(delivered, Ok(Delivered::Sent)), "{delivered:?}");
        assert_eq!(recorded(rx).await.headers["urgency"], "normal");
    }

    fn endpoint_origin(endpoint: &str) -> String {
        Url::parse(endpoint).unwrap().origin().ascii_serialization()
    }

    #[tokio::test]
    async fn send_tells_a_gone_subscription_from_a_failure() {
        let keys = VapidKeys::generate();
        let now = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();

        for status in [404, 410] {
            let (endpoint, rx) = push_service(status).await;
            let (_, _, subscription) = browser(&endpoint);
            let delivered = send(
                &client(),
                &keys,
                "mailto:a@b.c",
                &subscription,
                b"x",
                60,
                true,
                now,
            )
            .await;
            assert!(
                matches!(delivered, Ok(Delivered::Gone)),
                "HTTP {status}: {delivered:?}"
            );
            recorded(rx).await;
        }

        let (endpoint, rx) = push_service(500).await;
        let (_, _, subscription) = browser(&endpoint);
        let error = send(
            &client(),
            &keys,
            "mailto:a@b.c",
            &subscription,
            b"x",
            60,
            true,
            now,
        )
        .await
        .unwrap_err()
        .to_string();
        recorded(rx).await;
        assert!(error.contains("500"), "{error}");
        assert!(!error.contains("the-capability"), "{error}");
        assert!(!error.contains("127.0.0.1"), "{error}");
    }

    #[tokio::test]
    async fn a_push_service_that_cannot_be_reached_is_an_error_without_the_endpoint() {
        let keys = VapidKeys::generate();
        let now = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        // A port that was just free: nothing listens there now.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let (_, _, subscription) = browser(&format!("http://127.0.0.1:{port}/push/the-capability"));

        let error = send(
            &client(),
            &keys,
            "mailto:a@b.c",
            &subscription,
            b"x",
            60,
            true,
            now,
        )
        .await
        .unwrap_err();
        // Neither its message nor its full account (as a log would show it).
        let error = format!("{error} {error:?}");
        assert!(!error.contains("the-capability"), "{error}");
        assert!(!error.contains("127.0.0.1"), "{error}");
        assert!(error.contains("push service"), "{error}");
    }
}
