//! What a check reaches and how: the target, chosen by the URL's scheme as
//! Gatus does, and the settings of each kind of probe.
//!
//! | URL | probe |
//! |---|---|
//! | `http://host[:port]/path`, `https://...` | an HTTP request (method, headers, body, redirects, accepted codes) |
//! | `tcp://host:port` | a TCP connection |
//! | `tls://host:port` | a TLS handshake and the server's certificate |
//! | `icmp://host` | one ping (an ICMP echo through a datagram socket) |
//! | `dns://resolver[:port]` | one DNS query (`dns.name`, `dns.type`) to that resolver |
//! | `host://name` | a host's resource usage, as last sampled (`host://localhost`: the hub's own) |
//!
//! A unit service without a URL whose conditions read its usage
//! (`[MEMORY] < 1GiB`) is checked too: [`Target::Usage`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

/// The schemes a service's URL may use.
pub const SCHEMES: &[&str] = &["http", "https", "tcp", "tls", "icmp", "dns", "host"];

/// `host://localhost`: the hub's own host.
pub const OWN_HOST: &str = "localhost";

/// Where a check goes, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Http(Url),
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
    },
    Icmp {
        host: String,
    },
    Dns {
        host: String,
        port: u16,
    },
    /// A host's usage: the hub's own ([`OWN_HOST`]) or an agent's server's,
    /// by name.
    Host {
        name: String,
    },
    /// The service's own unit's usage (a unit service without a URL whose
    /// conditions read it).
    Usage,
}

impl Target {
    /// The target a URL names; the message says what is wrong with it.
    pub fn from_url(url: &Url) -> Result<Self, crate::error::Invalid> {
        let host = || -> Result<String, crate::error::Invalid> {
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or("must name a host")?;
            // `[::1]` as the URL writes it; the address alone to connect.
            Ok(host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned())
        };
        let no_path = |kind: &str| -> Result<(), crate::error::Invalid> {
            if !matches!(url.path(), "" | "/") {
                return Err(format!(
                    "a {kind}:// URL has no path, only a host{}",
                    if kind == "icmp" { "" } else { " and a port" }
                )
                .into());
            }
            Ok(())
        };
        match url.scheme() {
            "http" | "https" => Ok(Target::Http(url.clone())),
            scheme @ ("tcp" | "tls") => {
                no_path(scheme)?;
                let port = url.port().ok_or_else(|| {
                    format!("a {scheme}:// URL needs a port, e.g. {scheme}://host:5432")
                })?;
                let host = host()?;
                Ok(if scheme == "tcp" {
                    Target::Tcp { host, port }
                } else {
                    Target::Tls { host, port }
                })
            }
            "icmp" => {
                no_path("icmp")?;
                if url.port().is_some() {
                    return Err("an icmp:// URL has no port".into());
                }
                Ok(Target::Icmp { host: host()? })
            }
            "dns" => {
                no_path("dns")?;
                Ok(Target::Dns {
                    host: host()?,
                    port: url.port().unwrap_or(53),
                })
            }
            "host" => {
                if !matches!(url.path(), "" | "/") || url.port().is_some() {
                    return Err(
                        "a host:// URL names a host and nothing else, e.g. host://nas".into(),
                    );
                }
                Ok(Target::Host { name: host()? })
            }
            other => Err(format!("must use one of {}, not {other:?}", SCHEMES.join(", ")).into()),
        }
    }

    /// `http`, `tcp`, `tls`, `icmp`, `dns`, `host` or `usage` (HTTPS is
    /// `http`).
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Http(_) => "http",
            Target::Tcp { .. } => "tcp",
            Target::Tls { .. } => "tls",
            Target::Icmp { .. } => "icmp",
            Target::Dns { .. } => "dns",
            Target::Host { .. } => "host",
            Target::Usage => "usage",
        }
    }

    /// Why these conditions cannot be judged on this kind of check, if
    /// they cannot: a host's figures on a unit's check, a unit's on a
    /// host's.
    pub fn refuses(
        &self,
        conditions: &[crate::condition::Condition],
    ) -> Option<crate::error::Invalid> {
        use crate::condition::PlaceholderKind;
        let host = matches!(self, Target::Host { .. });
        conditions.iter().find_map(|c| {
            let kind = c.placeholders().find(|k| {
                if host {
                    k.is_unit_only() || !(k.is_usage() || *k == PlaceholderKind::Connected)
                } else {
                    k.is_host_only()
                }
            })?;
            Some(if host {
                format!(
                    "{} is not a host's figure: a host:// check reads [CONNECTED], [CPU_PERCENT], [MEMORY], [MEMORY_PERCENT], [DISK_PERCENT], [DISK_FULL_IN] and [LOAD]",
                    kind.name()
                )
                .into()
            } else {
                format!(
                    "{} is a host's figure: use it on a service with a host:// URL",
                    kind.name()
                )
                .into()
            })
        })
    }

    /// Whether the check has a server certificate to look at.
    pub fn has_certificate(&self) -> bool {
        match self {
            Target::Http(url) => url.scheme() == "https",
            Target::Tls { .. } => true,
            _ => false,
        }
    }
}

/// How a check is made beyond its URL. Stored with the service as JSON and
/// carried in the API as three optional objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsQuery>,
}

/// An HTTP check's request and what it accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpSettings {
    /// `GET` unless set: `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`, `OPTIONS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers, name to value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Follow redirects (up to 5); `true` unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
    /// The status codes that pass, as codes and ranges (`"200-299"`,
    /// `"301"`); 200–399 unless set. Conditions on `[STATUS]` replace them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_codes: Vec<String>,
}

/// How a TLS or HTTPS check verifies the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TlsSettings {
    /// A CA certificate (PEM) trusted for this service, beside the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Accept a certificate that fails verification (its expiry is still
    /// recorded).
    #[serde(default)]
    pub skip_verify: bool,
}

/// A DNS check's question.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DnsQuery {
    /// The name asked for, e.g. `example.org`.
    pub name: String,
    /// The record type: `A` unless set.
    #[serde(default = "record_a", rename = "type")]
    pub record_type: String,
}

fn record_a() -> String {
    "A".into()
}

/// The record types a DNS check may ask for.
pub const DNS_TYPES: &[&str] = &[
    "A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "CAA",
];

/// The methods an HTTP check may use.
pub const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Longest request body or CA certificate accepted, in bytes.
pub const SETTING_MAX_LEN: usize = 64 * 1024;

impl HttpSettings {
    pub fn validate(&mut self) -> Result<(), crate::error::Invalid> {
        if let Some(m) = &mut self.method {
            *m = m.trim().to_ascii_uppercase();
            if !HTTP_METHODS.contains(&m.as_str()) {
                return Err(format!("method must be one of {}", HTTP_METHODS.join(", ")).into());
            }
        }
        if self.headers.len() > 32 {
            return Err("at most 32 headers".into());
        }
        for (name, value) in &self.headers {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err(format!("header name {name:?} is not a valid HTTP header name").into());
            }
            if value.len() > 8192 || value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(format!(
                    "header {name}: the value must be at most 8192 bytes without control characters"
                )
                .into());
            }
        }
        if self
            .body
            .as_ref()
            .is_some_and(|b| b.len() > SETTING_MAX_LEN)
        {
            return Err(format!("body must be at most {SETTING_MAX_LEN} bytes").into());
        }
        if self.accepted_codes.len() > 32 {
            return Err("at most 32 accepted_codes".into());
        }
        for code in &self.accepted_codes {
            parse_code_range(code)?;
        }
        Ok(())
    }

    /// Whether `code` passes: one of the accepted codes, or 200–399.
    pub fn accepts(&self, code: u16) -> bool {
        if self.accepted_codes.is_empty() {
            return (200..400).contains(&code);
        }
        self.accepted_codes
            .iter()
            .filter_map(|c| parse_code_range(c).ok())
            .any(|r| r.contains(&code))
    }
}

/// `"200"` or `"200-299"` (or `"2xx"`).
fn parse_code_range(code: &str) -> Result<std::ops::RangeInclusive<u16>, crate::error::Invalid> {
    let bad = || {
        crate::error::Invalid::from(format!(
            "accepted code {code:?} is not a status code (100-599), a range such as 200-299, or 2xx"
        ))
    };
    let code = code.trim();
    let one = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(bad)
    };
    if let Some(class) = code.strip_suffix("xx") {
        let c = one(&format!("{class}00"))?;
        return Ok(c..=c + 99);
    }
    match code.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(bad());
            }
            Ok(a..=b)
        }
        None => one(code).map(|c| c..=c),
    }
}

impl TlsSettings {
    pub fn validate(&self) -> Result<(), crate::error::Invalid> {
        if let Some(pem) = &self.ca_pem {
            if pem.len() > SETTING_MAX_LEN {
                return Err(format!("ca_pem must be at most {SETTING_MAX_LEN} bytes").into());
            }
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(
                    "ca_pem must hold a PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                );
            }
        }
        Ok(())
    }
}

impl DnsQuery {
    pub fn validate(&mut self) -> Result<(), crate::error::Invalid> {
        self.record_type = self.record_type.trim().to_ascii_uppercase();
        if !DNS_TYPES.contains(&self.record_type.as_str()) {
            return Err(format!("type must be one of {}", DNS_TYPES.join(", ")).into());
        }
        let name = self.name.trim().trim_end_matches('.');
        if name.is_empty()
            || name.len() > 253
            || name.split('.').any(|l| {
                l.is_empty()
                    || l.len() > 63
                    || !l
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        {
            return Err(format!("name {:?} is not a domain name", self.name).into());
        }
        self.name = name.to_owned();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Result<Target, crate::error::Invalid> {
        Target::from_url(&Url::parse(s).unwrap())
    }

    #[test]
    fn the_scheme_chooses_the_probe() {
        assert_eq!(
            target("tcp://127.0.0.1:5432"),
            Ok(Target::Tcp {
                host: "127.0.0.1".into(),
                port: 5432
            })
        );
        assert_eq!(
            target("tls://[::1]:8443"),
            Ok(Target::Tls {
                host: "::1".into(),
                port: 8443
            })
        );
        assert_eq!(
            target("icmp://router.lan"),
            Ok(Target::Icmp {
                host: "router.lan".into()
            })
        );
        assert_eq!(
            target("dns://127.0.0.1"),
            Ok(Target::Dns {
                host: "127.0.0.1".into(),
                port: 53
            })
        );
        assert_eq!(target("dns://127.0.0.1:5353").unwrap().kind(), "dns");
        assert!(target("https://x").unwrap().has_certificate());
        assert!(target("tcp://h").unwrap_err().contains("needs a port"));
        assert!(target("icmp://h:5").unwrap_err().contains("no port"));
        assert!(target("tcp://h:5/x").unwrap_err().contains("no path"));
        assert!(target("ftp://h").unwrap_err().contains("must use one of"));
    }

    #[test]
    fn settings_are_checked_and_codes_read() {
        let mut http = HttpSettings {
            method: Some("post".into()),
            accepted_codes: vec!["200-299".into(), "418".into(), "3xx".into()],
            ..HttpSettings::default()
        };
        assert_eq!(http.validate(), Ok(()));
        assert_eq!(http.method.as_deref(), Some("POST"));
        assert!(http.accepts(204) && http.accepts(418) && http.accepts(302));
        assert!(!http.accepts(500) && !http.accepts(404));
        assert!(HttpSettings::default().accepts(301));
        assert!(!HttpSettings::default().accepts(404));
        for bad in ["99", "abc", "300-200", "600"] {
            let mut h = HttpSettings {
                accepted_codes: vec![bad.into()],
                ..HttpSettings::default()
            };
            assert!(h.validate().is_err(), "{bad}");
        }
        let mut h = HttpSettings {
            method: Some("TRACE".into()),
            ..HttpSettings::default()
        };
        assert!(h.validate().is_err());
        let mut h = HttpSettings::default();
        h.headers.insert("Bad Name".into(), "x".into());
        assert!(h.validate().is_err());
        let mut dns = DnsQuery {
            name: "Example.org.".into(),
            record_type: "aaaa".into(),
        };
        assert_eq!(dns.validate(), Ok(()));
        assert_eq!(
            (dns.name.as_str(), dns.record_type.as_str()),
            ("Example.org", "AAAA")
        );
        let mut dns = DnsQuery {
            name: "a..b".into(),
            record_type: "A".into(),
        };
        assert!(dns.validate().is_err());
        assert!(TlsSettings {
            ca_pem: Some("nope".into()),
            skip_verify: false
        }
        .validate()
        .is_err());
    }
}
