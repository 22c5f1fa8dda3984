//! Notification channels: what each kind needs, how it is validated, and the
//! request it sends.

use serde::Serialize;
use serde_json::{json, Map, Value};
use url::Url;

use lookout_proto::FieldError;

use super::{DeliveryError, Receiver};

pub use lookout_proto::notify::ChannelKind;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    Alert,
    Recovery,
    Reminder,
    Test,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Alert => "alert",
            NoticeKind::Recovery => "recovery",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Test => "test",
        }
    }
}

/// One notification, before it is shaped for a channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub service_id: Option<i64>,
    pub service: String,
    pub url: Option<String>,
    pub status: String,
    pub previous: Option<String>,
    pub reason: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// How long it has been failing: on a recovery, the outage; on a
    /// reminder, so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_for_secs: Option<i64>,
    /// The service's page on the hub, when the hub knows its public address
    /// (`--public-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// On an alert, the services that depend on this one, which wait on it
    /// and send nothing of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<String>,
}

impl Notice {
    pub fn title(&self) -> String {
        let down = self.down_for_secs.map(span_words);
        match (self.kind, down) {
            (NoticeKind::Alert, _) => format!("{} is failing", self.service),
            (NoticeKind::Recovery, Some(d)) => format!("{} recovered after {d}", self.service),
            (NoticeKind::Recovery, None) => format!("{} recovered", self.service),
            (NoticeKind::Reminder, Some(d)) => {
                format!("{} is still failing, for {d} now", self.service)
            }
            (NoticeKind::Reminder, None) => format!("{} is still failing", self.service),
            (NoticeKind::Test, _) => "lookout test notification".to_owned(),
        }
    }

    pub fn text(&self) -> String {
        let text = self.plain_text();
        match self.affected.len() {
            0 => text,
            1 => format!("{text}; 1 service depends on it: {}", self.affected[0]),
            n => format!(
                "{text}; {n} services depend on it: {}",
                self.affected.join(", ")
            ),
        }
    }

    fn plain_text(&self) -> String {
        match (self.kind, &self.previous) {
            (NoticeKind::Test, _) => "This is a test from lookout: this channel works.".to_owned(),
            (NoticeKind::Alert, Some(was)) => {
                format!(
                    "{}: {} ({}, was {was})",
                    self.title(),
                    self.reason,
                    self.status
                )
            }
            _ => format!("{}: {} ({})", self.title(), self.reason, self.status),
        }
    }

    /// [`Notice::text`] with the link to the service's page on a line of its
    /// own, when there is one (chat messages and e-mail).
    pub fn text_with_link(&self) -> String {
        match &self.link {
            Some(link) => format!("{}\n{link}", self.text()),
            None => self.text(),
        }
    }
}

pub use crate::history::span_words;

/// Validates a channel's config for its kind; returns it trimmed to known keys.
pub fn validate_config(
    kind: ChannelKind,
    config: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let (required, optional) = kind.config_keys();
    let mut errors = Vec::new();
    let mut out = Map::new();
    for key in config
        .keys()
        .filter(|k| !required.contains(&k.as_str()) && !optional.contains(&k.as_str()))
    {
        errors.push(FieldError::new(
            format!("config.{key}"),
            format!("is not a setting of a {} channel", kind.as_str()),
        ));
    }
    for key in required.iter().chain(optional) {
        let field = format!("config.{key}");
        let value = match config.get(*key) {
            // Ports may come as numbers.
            Some(Value::Number(n)) if *key == "port" => Some(Value::String(n.to_string())),
            other => other.cloned(),
        };
        match value.as_ref() {
            None | Some(Value::Null) if required.contains(key) => {
                errors.push(FieldError::new(field, "is required"))
            }
            None | Some(Value::Null) => {}
            Some(Value::String(v)) => {
                let v = v.trim();
                match check_value(kind, key, v) {
                    Some(problem) => errors.push(FieldError::new(field, problem)),
                    None => {
                        out.insert((*key).to_owned(), Value::String(v.to_owned()));
                    }
                }
            }
            Some(_) => errors.push(FieldError::new(field, "must be a string")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// What is wrong with one config value, if anything.
fn check_value(kind: ChannelKind, key: &str, v: &str) -> Option<String> {
    let fail = |bad: bool, why: &str| bad.then(|| why.to_owned());
    match (kind, key) {
        (_, "url") => check_url(v).err().map(String::from),
        (ChannelKind::Mqtt, "topic") => fail(
            !(1..=200).contains(&v.len())
                || v.contains(['+', '#'])
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c)),
            "must be 1-200 letters, digits, '-', '_' or '/', without wildcards",
        ),
        (_, "topic") => fail(
            !(1..=64).contains(&v.len())
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "must be 1-64 letters, digits, '-' or '_'",
        ),
        (_, "port") => fail(
            v.parse::<u16>().ok().filter(|p| *p > 0).is_none(),
            "must be a port from 1 to 65535",
        ),
        (_, "host") => fail(
            v.is_empty()
                || v.len() > 253
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)),
            "must be a host name or an IP address (no scheme, no port)",
        ),
        (_, "security") => fail(
            !["starttls", "tls", "none"].contains(&v),
            "must be starttls (default), tls or none",
        ),
        (_, "users") => fail(
            !v.is_empty() && v.len() > 1000
                || !v.is_empty()
                    && v.split(',').map(str::trim).any(|u| {
                        u.is_empty()
                            || !u.chars().all(|c| c.is_alphanumeric() || "._-@".contains(c))
                    }),
            "must be account names separated by commas (empty: every account's devices)",
        ),
        (_, "contact") => fail(
            !(v.starts_with("mailto:") && v.contains('@') || v.starts_with("https://"))
                || v.len() > 200
                || v.contains(char::is_whitespace),
            "must be a mailto: or https: address push services may contact you at",
        ),
        (_, "from" | "to") => fail(
            v.parse::<lettre::message::Mailbox>().is_err(),
            "must be an e-mail address, e.g. lookout@example.org",
        ),
        _ => fail(
            v.is_empty() || v.len() > 512 || v.contains(['\r', '\n']),
            "must be one line of at most 512 characters",
        ),
    }
}

fn check_url(raw: &str) -> Result<Url, lookout_proto::error::Invalid> {
    let url =
        Url::parse(raw).map_err(|e| format!("must be an absolute http or https URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an absolute http or https URL".into());
    }
    Ok(url)
}

/// The config as the API shows it: URLs cut to scheme and host, tokens hidden.
pub fn masked(config: &Map<String, Value>) -> Map<String, Value> {
    config
        .iter()
        .map(|(k, v)| {
            let shown = match (k.as_str(), v.as_str()) {
                ("url", Some(u)) => Url::parse(u)
                    .ok()
                    .map(|u| format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or_default()))
                    .unwrap_or_default()
                    .into(),
                ("token" | "password", Some(_)) => "••••••".into(),
                _ => v.clone(),
            };
            (k.clone(), shown)
        })
        .collect()
}

/// An edited channel's config with the secrets the edit did not change
/// kept: a `token` or `password` left out, empty, or sent back as masked,
/// and a `url` sent back as masked, are the stored ones (a form never shows
/// them, and the API masks them, so a read–edit–write keeps them).
pub fn keep_secrets(old: &Map<String, Value>, new: &mut Map<String, Value>) {
    let shown = masked(old);
    for key in ["token", "password", "url"] {
        let Some(stored) = old.get(key) else { continue };
        let unchanged = match new.get(key) {
            None => key != "url",
            Some(Value::String(s)) if s.is_empty() => key != "url",
            Some(v) => shown.get(key) == Some(v),
        };
        if unchanged {
            new.insert(key.to_owned(), stored.clone());
        }
    }
}

/// Sends `notice` through a channel once. The error text never contains the
/// channel's URL or token.
pub async fn send(
    client: &reqwest::Client,
    store: &dyn crate::store::Store,
    kind: ChannelKind,
    config: &Map<String, Value>,
    notice: &Notice,
) -> Result<(), DeliveryError> {
    let get = |k: &str| config.get(k).and_then(Value::as_str).unwrap_or_default();
    let failing = matches!(notice.kind, NoticeKind::Alert | NoticeKind::Reminder);
    let request = match kind {
        ChannelKind::WebPush => {
            return super::webpush::deliver(client, store, config, notice).await
        }
        ChannelKind::Email => return send_email(config, notice).await,
        ChannelKind::Mqtt => return send_mqtt(config, notice).await,
        ChannelKind::Webhook => client.post(get("url")).json(&json!({
            "event": notice.kind,
            "service": {"id": notice.service_id, "name": notice.service, "url": notice.url},
            "status": notice.status,
            "previous": notice.previous,
            "reason": notice.reason,
            "at": notice.at,
            "down_for_secs": notice.down_for_secs,
            "link": notice.link,
            "affected": notice.affected,
            "title": notice.title(),
            "message": notice.text(),
        })),
        ChannelKind::Ntfy => {
            let base = if get("url").is_empty() { "https://ntfy.sh" } else { get("url") };
            let mut r = client
                .post(format!("{}/{}", base.trim_end_matches('/'), get("topic")))
                .header("Title", notice.title())
                .header("Priority", if failing { "high" } else { "default" })
                .header("Tags", if failing { "rotating_light" } else { "white_check_mark" })
                .body(notice.text());
            if !get("token").is_empty() {
                r = r.bearer_auth(get("token"));
            }
            if let Some(link) = &notice.link {
                r = r.header("Click", link);
            }
            r
        }
        ChannelKind::Gotify => client
            .post(format!("{}/message", get("url").trim_end_matches('/')))
            .header("X-Gotify-Key", get("token"))
            .json(&json!({
                "title": notice.title(), "message": notice.text(), "priority": if failing { 8 } else { 4 },
                "extras": {"client::notification": {"click": {"url": notice.link}}},
            })),
        ChannelKind::Discord => client.post(get("url")).json(&json!({"content": format!("**{}**\n{}", notice.title(), notice.text_with_link())})),
        ChannelKind::Slack => client.post(get("url")).json(&json!({"text": format!("*{}*\n{}", notice.title(), notice.text_with_link())})),
    };
    match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(DeliveryError::Answered(Receiver::Http, r.status().as_u16())),
        Err(e) => Err(DeliveryError::request(Receiver::Http, e)),
    }
}

async fn send_email(config: &Map<String, Value>, notice: &Notice) -> Result<(), DeliveryError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let get = |k: &str| config.get(k).and_then(Value::as_str).unwrap_or_default();
    let message = Message::builder()
        .from(
            get("from")
                .parse()
                .map_err(|e| DeliveryError::Address("sender", e))?,
        )
        .to(get("to")
            .parse()
            .map_err(|e| DeliveryError::Address("recipient", e))?)
        .subject(format!("[lookout] {}", notice.title()))
        .body(format!(
            "{}\n\nStatus: {}\nAt: {}\n{}",
            notice.text(),
            notice.status,
            notice.at.to_rfc3339(),
            notice
                .link
                .as_ref()
                .map(|l| format!("Details: {l}\n"))
                .unwrap_or_default()
        ))
        .map_err(DeliveryError::Message)?;
    let host = get("host");
    let builder = match get("security") {
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| DeliveryError::Security("TLS", e))?,
        "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| DeliveryError::Security("STARTTLS", e))?,
    };
    let mut builder = builder.timeout(Some(std::time::Duration::from_secs(10)));
    if let Ok(port) = get("port").parse::<u16>() {
        builder = builder.port(port);
    }
    if !get("username").is_empty() {
        builder = builder.credentials(Credentials::new(
            get("username").to_owned(),
            get("password").to_owned(),
        ));
    }
    builder
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(DeliveryError::mail)
}

/// Publishes the notice as JSON to `<topic>/<service>` (QoS 1, retained, so
/// Home Assistant or a dashboard sees the last state on connect) and waits for
/// the broker's acknowledgement.
async fn send_mqtt(config: &Map<String, Value>, notice: &Notice) -> Result<(), DeliveryError> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let get = |k: &str| config.get(k).and_then(Value::as_str).unwrap_or_default();
    let port = get("port").parse::<u16>().unwrap_or(1883);
    let mut id = [0u8; 6];
    let _ = getrandom::fill(&mut id);
    let mut options = MqttOptions::new(format!("lookout-{}", hex::encode(id)), get("host"), port);
    options.set_keep_alive(std::time::Duration::from_secs(10));
    if !get("username").is_empty() {
        options.set_credentials(get("username"), get("password"));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let base = if get("topic").is_empty() {
        "lookout"
    } else {
        get("topic")
    };
    let slug: String = notice
        .service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let payload = json!({
        "event": notice.kind, "service": notice.service, "service_id": notice.service_id,
        "status": notice.status, "previous": notice.previous, "reason": notice.reason,
        "at": notice.at, "down_for_secs": notice.down_for_secs, "link": notice.link,
        "affected": notice.affected,
    })
    .to_string();
    client
        .publish(
            format!("{}/{}", base.trim_end_matches('/'), slug),
            QoS::AtLeastOnce,
            true,
            payload,
        )
        .await
        .map_err(DeliveryError::MqttQueue)?;
    let acked = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(Event::Incoming(Packet::ConnAck(ack)))
                    if ack.code != rumqttc::ConnectReturnCode::Success =>
                {
                    return Err(DeliveryError::MqttRefused(ack.code))
                }
                Ok(_) => {}
                Err(e) => return Err(DeliveryError::MqttConnect(Box::new(e))),
            }
        }
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), acked)
        .await
        .unwrap_or_else(|_| Err(DeliveryError::MqttTimeout));
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), eventloop.poll()).await;
    outcome
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_edit_keeps_the_secrets_it_does_not_change() {
        let old = serde_json::json!({"url": "https://ntfy.example/x?auth=1", "topic": "a", "token": "tk"});
        let old = old.as_object().unwrap();
        // Sent back as the API shows it, the token left empty: both kept.
        let mut new = masked(old);
        new.insert("token".into(), "".into());
        new.insert("topic".into(), "b".into());
        keep_secrets(old, &mut new);
        assert_eq!(new["url"], old["url"]);
        assert_eq!(
            (new["token"].as_str(), new["topic"].as_str()),
            (Some("tk"), Some("b"))
        );
        // Given anew: replaced.
        let mut new = masked(old);
        new.insert("url".into(), "https://other.example".into());
        new.insert("token".into(), "tk2".into());
        keep_secrets(old, &mut new);
        assert_eq!(
            (new["url"].as_str(), new["token"].as_str()),
            (Some("https://other.example"), Some("tk2"))
        );
    }

    use super::*;

    #[test]
    fn lengths_of_time_in_words() {
        assert_eq!(span_words(42), "42 s");
        assert_eq!(span_words(12 * 60 + 5), "12 min");
        assert_eq!(span_words(3600 + 30), "1 h");
        assert_eq!(span_words(3 * 3600 + 5 * 60), "3 h 5 min");
        assert_eq!(span_words(2 * 86_400 + 4 * 3600), "2 d 4 h");
        assert_eq!(span_words(-3), "0 s");
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn configs_are_checked_per_kind() {
        assert!(validate_config(
            ChannelKind::Webhook,
            &obj(json!({"url": "https://hooks.example/x"}))
        )
        .is_ok());
        let e = validate_config(
            ChannelKind::Webhook,
            &obj(json!({"url": "ftp://x", "topic": "t"})),
        )
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["config.topic", "config.url"]);
        assert!(validate_config(ChannelKind::Ntfy, &obj(json!({"topic": "home-lab"}))).is_ok());
        assert!(validate_config(ChannelKind::Ntfy, &obj(json!({"topic": "a b"}))).is_err());
        assert!(
            validate_config(ChannelKind::Gotify, &obj(json!({"url": "http://g"}))).is_err(),
            "token required"
        );
    }

    #[test]
    fn secrets_are_masked() {
        let m = masked(&obj(
            json!({"url": "https://hooks.slack.com/services/T0/B0/SECRET", "token": "abc", "topic": "t"}),
        ));
        assert_eq!(m["url"], "https://hooks.slack.com/…");
        assert_eq!(m["token"], "••••••");
        assert_eq!(m["topic"], "t");
    }
}
