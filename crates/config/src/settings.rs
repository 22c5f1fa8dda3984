//! The settings types the hub's parts are configured with, parsed here so the
//! whole path from a config file to a `Config` needs nothing of the hub.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;

/// Whether the hub asks for credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Nobody logs in; every request is the local administrator.
    Off,
    /// Every protected route needs a session or a token.
    Required,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::Required => "required",
        }
    }
}

/// Settings of authentication.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// A browser session ends this long after login.
    pub session_ttl: Duration,
    /// An API access token expires this long after it was issued.
    pub access_ttl: Duration,
    /// A refresh token expires this long after it was issued.
    pub refresh_ttl: Duration,
    /// Reverse proxies whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    pub rate_limits: RateLimits,
    /// The hub terminates TLS itself (cookies are then `Secure`).
    pub tls: bool,
    /// The hub listens on a loopback address only: with authentication off,
    /// requests must then name it by a loopback host (no DNS rebinding).
    pub loopback: bool,
    /// Admins must sign in with a second factor: until they set it up, a
    /// password sign-in gives them a viewer's session.
    pub two_factor_admins: bool,
    /// Single sign-on through a reverse proxy that authenticates (Authelia,
    /// Authentik, oauth2-proxy): `None` when off.
    pub forward: Option<ForwardAuth>,
}

/// Who a trusted reverse proxy says is signed in, and what that makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuth {
    /// The header naming the user (`Remote-User`).
    pub user_header: String,
    /// The header with their e-mail address (`Remote-Email`).
    pub email_header: String,
    /// The header with their groups, comma-separated (`Remote-Groups`).
    pub groups_header: String,
    /// Members of these groups are admins; everyone else is a viewer.
    pub admin_groups: Vec<String>,
    /// A user the proxy names who has no account gets one.
    pub create_accounts: bool,
    /// Where Log out sends the browser: the proxy's own logout.
    pub logout_url: Option<String>,
}

impl Default for ForwardAuth {
    fn default() -> Self {
        Self {
            user_header: "Remote-User".into(),
            email_header: "Remote-Email".into(),
            groups_header: "Remote-Groups".into(),
            admin_groups: vec!["admins".into()],
            create_accounts: false,
            logout_url: None,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Off,
            session_ttl: Duration::from_secs(7 * 86_400),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            trusted_proxies: Vec::new(),
            rate_limits: RateLimits::default(),
            tls: false,
            loopback: true,
            two_factor_admins: false,
            forward: None,
        }
    }
}

/// A limit as configured: `per_minute` requests a minute, all of which may
/// come at once after a quiet minute. `None` turns the bucket off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: NonZeroU32,
}

impl Rate {
    pub const fn per_minute(n: u32) -> Option<Rate> {
        match NonZeroU32::new(n) {
            Some(per_minute) => Some(Rate { per_minute }),
            None => None,
        }
    }

    /// Parses `10/min`, `10/m`, `10` (a minute implied) or `off`.
    pub fn parse(s: &str) -> Result<Option<Rate>, lookout_proto::error::Invalid> {
        let s = s.trim();
        if s == "off" {
            return Ok(None);
        }
        let n = s
            .strip_suffix("/min")
            .or_else(|| s.strip_suffix("/m"))
            .unwrap_or(s);
        n.trim()
            .parse::<u32>()
            .ok()
            .and_then(Rate::per_minute)
            .map(Some)
            .ok_or_else(|| "expected requests per minute such as 10/min, or off".into())
    }
}

/// The configured limits; the defaults are (control 10/min, logs
/// 30/min), 10 login attempts and 60 agent connections a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub login: Option<Rate>,
    pub control: Option<Rate>,
    pub logs: Option<Rate>,
    pub agents: Option<Rate>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login: Rate::per_minute(10),
            control: Rate::per_minute(10),
            logs: Rate::per_minute(30),
            agents: Rate::per_minute(60),
        }
    }
}

/// How notifications are repeated and retried.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Reminder interval while a service stays failing; `None` for none.
    pub reminder: Option<Duration>,
    /// First retry delay; doubled each time.
    pub retry_base: Duration,
    /// Tries per notice and channel.
    pub attempts: u32,
    /// The hub's address as people reach it: notices link to
    /// `{public_url}/services/{id}`.
    pub public_url: Option<String>,
    /// Browsers may subscribe through push services reached over plain
    /// HTTP (else HTTPS only, as every public push service is).
    pub web_push_http: bool,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            reminder: Some(Duration::from_secs(3600)),
            retry_base: Duration::from_secs(2),
            attempts: 4,
            public_url: None,
            web_push_http: false,
        }
    }
}

/// Ports that mark a web service (80, 443, 3000-9999 by default), as inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebPorts(pub Vec<(u16, u16)>);

impl Default for WebPorts {
    fn default() -> Self {
        Self(vec![(80, 80), (443, 443), (3000, 9999)])
    }
}

impl WebPorts {
    /// Parses `80,443,3000-9999`.
    pub fn parse(s: &str) -> Result<Self, lookout_proto::error::Invalid> {
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let parse = |p: &str| {
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{part:?} is not a port or a range such as 3000-9999"))
            };
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo > hi {
                return Err(format!("{part:?} is an empty range").into());
            }
            ranges.push((lo, hi));
        }
        if ranges.is_empty() {
            return Err("names no port".into());
        }
        Ok(Self(ranges))
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&port))
    }
}

/// Parses `10.0.0.1, 192.168.0.0/16, ::1`.
pub fn parse_trusted(s: &str) -> Result<Vec<IpNet>, lookout_proto::error::Invalid> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{p:?} is not an IP address or a CIDR range").into())
        })
        .collect()
}
