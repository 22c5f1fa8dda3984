//! Why a notification was not delivered. Every message is fit for the
//! delivery log and the dashboard: none names a channel's URL, token or
//! password, nor a push subscription's endpoint (reqwest's errors are kept
//! without their URL).

use lookout_proto::error::Invalid;

use super::webpush::WebPushError;
use crate::store::StoreError;

/// Who a delivery talks to, as the messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// A webhook, ntfy, Gotify, Discord or Slack endpoint.
    Http,
    /// A browser's push service.
    PushService,
}

impl std::fmt::Display for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http => "receiver",
            Self::PushService => "push service",
        })
    }
}

/// A delivery that failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the {0} answered HTTP {1}")]
    Answered(Receiver, u16),
    #[error("the {0} did not answer in time")]
    Timeout(Receiver),
    #[error("cannot connect to the {0}")]
    Connect(Receiver),
    #[error("the {0} answered with a redirect")]
    Redirect(Receiver),
    #[error("the request to the {0} failed")]
    Request(Receiver, #[source] reqwest::Error),
    #[error("invalid {0} address")]
    Address(&'static str, #[source] lettre::address::AddressError),
    #[error("cannot build the message")]
    Message(#[source] lettre::error::Error),
    #[error("cannot set up {0}")]
    Security(&'static str, #[source] lettre::transport::smtp::Error),
    #[error("the mail server refused the message")]
    MailRefused(#[source] lettre::transport::smtp::Error),
    #[error("the mail server did not answer in time")]
    MailTimeout(#[source] lettre::transport::smtp::Error),
    #[error("cannot deliver to the mail server")]
    Mail(#[source] lettre::transport::smtp::Error),
    #[error("cannot queue the MQTT message")]
    MqttQueue(#[source] rumqttc::ClientError),
    #[error("the MQTT broker refused the connection ({0:?})")]
    MqttRefused(rumqttc::ConnectReturnCode),
    #[error("cannot reach the MQTT broker")]
    MqttConnect(#[source] Box<rumqttc::ConnectionError>),
    #[error("the MQTT broker did not answer in time")]
    MqttTimeout,
    #[error("the subscription's endpoint {0}")]
    Endpoint(Invalid),
    #[error(transparent)]
    WebPush(#[from] WebPushError),
    #[error(
        "no device has subscribed to notifications yet (Account page, \"Notify this device\")"
    )]
    NoDevices,
    #[error("the subscribed devices cannot be read")]
    Devices(#[source] StoreError),
    #[error("the hub's push key cannot be read")]
    Keys(#[source] StoreError),
    #[error("{device}: unsubscribed")]
    Unsubscribed { device: String },
    #[error("{device}: {cause}")]
    Device {
        device: String,
        #[source]
        cause: Box<DeliveryError>,
    },
}

impl DeliveryError {
    /// A request that got no answer, or one that was not a success. The
    /// error keeps reqwest's account without the URL, which may hold a token.
    pub fn request(to: Receiver, error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout(to)
        } else if error.is_connect() {
            Self::Connect(to)
        } else if error.is_redirect() {
            Self::Redirect(to)
        } else {
            Self::Request(to, error.without_url())
        }
    }

    /// A mail server's failure, by kind.
    pub fn mail(error: lettre::transport::smtp::Error) -> Self {
        if error.is_permanent() {
            Self::MailRefused(error)
        } else if error.is_timeout() {
            Self::MailTimeout(error)
        } else {
            Self::Mail(error)
        }
    }
}
