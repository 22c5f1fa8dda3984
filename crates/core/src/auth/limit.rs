//! Rate limits per client: login attempts (brute force), control
//! actions and log reads. GCRA from the `governor` crate, one state per client
//! address; an exhausted client gets 429 with `Retry-After`.

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// What a route's requests count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Logins, token refreshes, registrations and first-run setup.
    Login,
    /// Starting, stopping and restarting units.
    Control,
    /// Reading logs.
    Logs,
    /// Agents connecting (each refused attempt is audited).
    Agents,
}

pub use lookout_config::{Rate, RateLimits};

/// The live limiters of a hub.
pub struct Limiters {
    login: Option<DefaultKeyedRateLimiter<IpAddr>>,
    control: Option<DefaultKeyedRateLimiter<IpAddr>>,
    logs: Option<DefaultKeyedRateLimiter<IpAddr>>,
    agents: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

fn limiter(rate: Option<Rate>) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    rate.map(|r| RateLimiter::keyed(Quota::per_minute(r.per_minute)))
}

impl Limiters {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            login: limiter(limits.login),
            control: limiter(limits.control),
            logs: limiter(limits.logs),
            agents: limiter(limits.agents),
        }
    }

    /// Counts one request of `client` against `bucket`; `Err` holds how long
    /// the client must wait. IPv6 clients are counted by their /64: one host
    /// is usually given a whole /64, and could otherwise change address at
    /// every request.
    pub fn check(&self, bucket: Bucket, client: IpAddr) -> Result<(), Duration> {
        let client = limit_key(client);
        let limiter = match bucket {
            Bucket::Login => &self.login,
            Bucket::Control => &self.control,
            Bucket::Logs => &self.logs,
            Bucket::Agents => &self.agents,
        };
        match limiter {
            None => Ok(()),
            Some(l) => l
                .check_key(&client)
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// Forgets clients whose limits have fully recovered (memory stays
    /// bounded by the clients of the last minute).
    pub fn forget_idle(&self) {
        for l in [&self.login, &self.control, &self.logs, &self.agents]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// What a client is counted as: its IPv4 address (an IPv4-mapped IPv6
/// address too), or the /64 network of its IPv6 address.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(segments))
            }
        },
    }
}

/// Whole seconds to wait, rounded up, at least 1 (the `Retry-After` value).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let l = Limiters::new(RateLimits {
            login: Rate::per_minute(2),
            control: None,
            logs: None,
            agents: None,
        });
        let one_host = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"];
        assert!(l.check(Bucket::Login, one_host[0].parse().unwrap()).is_ok());
        assert!(l.check(Bucket::Login, one_host[1].parse().unwrap()).is_ok());
        assert!(
            l.check(Bucket::Login, one_host[2].parse().unwrap())
                .is_err(),
            "a new address in the same /64 is the same client"
        );
        assert!(l
            .check(Bucket::Login, "2001:db8:1:3::1".parse().unwrap())
            .is_ok());
        assert_eq!(
            limit_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_client_is_limited_and_others_are_not() {
        let l = Limiters::new(RateLimits {
            login: Rate::per_minute(3),
            control: None,
            logs: Rate::per_minute(1),
            agents: None,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(Bucket::Login, a).is_ok());
        }
        let wait = l.check(Bucket::Login, a).unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(
            l.check(Bucket::Login, b).is_ok(),
            "another client is not affected"
        );
        assert!(l.check(Bucket::Logs, a).is_ok(), "buckets are separate");
        for _ in 0..100 {
            assert!(
                l.check(Bucket::Control, a).is_ok(),
                "an off bucket never limits"
            );
        }
    }

    #[test]
    fn rates_parse() {
        assert_eq!(Rate::parse("10/min").unwrap(), Rate::per_minute(10));
        assert_eq!(Rate::parse("5").unwrap(), Rate::per_minute(5));
        assert_eq!(Rate::parse("off").unwrap(), None);
        assert!(Rate::parse("0/min").is_err());
        assert!(Rate::parse("fast").is_err());
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(6001)), 7);
    }
}
