//! Notification channels as the API names them.

use serde::Serialize;

/// The kinds of notification channel; each takes its own `config` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Webhook,
    Ntfy,
    Gotify,
    Discord,
    Slack,
    Email,
    Mqtt,
    /// Web Push to the browsers people subscribed on their account page.
    #[serde(rename = "webpush")]
    WebPush,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 8] = [
        ChannelKind::Webhook,
        ChannelKind::Ntfy,
        ChannelKind::Gotify,
        ChannelKind::Discord,
        ChannelKind::Slack,
        ChannelKind::Email,
        ChannelKind::Mqtt,
        ChannelKind::WebPush,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Ntfy => "ntfy",
            ChannelKind::Gotify => "gotify",
            ChannelKind::Discord => "discord",
            ChannelKind::Slack => "slack",
            ChannelKind::Email => "email",
            ChannelKind::Mqtt => "mqtt",
            ChannelKind::WebPush => "webpush",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The config keys this kind takes, required first.
    pub fn config_keys(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            ChannelKind::Webhook | ChannelKind::Discord | ChannelKind::Slack => (&["url"], &[]),
            ChannelKind::Ntfy => (&["topic"], &["url", "token"]),
            ChannelKind::Gotify => (&["url", "token"], &[]),
            ChannelKind::Email => (
                &["host", "from", "to"],
                &["port", "security", "username", "password"],
            ),
            ChannelKind::Mqtt => (&["host"], &["port", "topic", "username", "password"]),
            ChannelKind::WebPush => (&[], &["users", "contact"]),
        }
    }
}
