//! Who is on the other end of a request: the peer address, or, when the peer is
//! a reverse proxy the operator trusts, the client it names in
//! `X-Forwarded-For` (and the scheme and host in `X-Forwarded-Proto`/`-Host`).
//! Headers from anyone else are ignored: they are trivially forged.

use std::net::IpAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

pub use lookout_core::auth::Client;

pub use lookout_config::parse_trusted;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The address the connection comes from.
fn peer(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<crate::tls::Peer>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0 .0.ip())
}

/// Whether the connection comes from one of the trusted proxies (not
/// whatever address a header names).
pub fn from_trusted_proxy(parts: &Parts, trusted: &[IpNet]) -> bool {
    let peer = peer(parts);
    trusted.iter().any(|net| net.contains(&peer))
}

/// Works out the client from the connection and, if the peer is trusted, its
/// forwarding headers. `tls` says whether this hub terminates TLS itself.
pub fn resolve(parts: &Parts, trusted: &[IpNet], tls: bool) -> Client {
    let peer = peer(parts);
    let host = header(&parts.headers, "host").map(str::to_owned);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Client {
            ip: peer,
            https: tls,
            host,
        };
    }
    // The right-most address that is not one of our proxies is the client:
    // everything left of it was written by the client itself.
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let ip = forwarded
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer);
    let https = match header(&parts.headers, "x-forwarded-proto") {
        Some(p) => p.split(',').next().is_some_and(|p| p.trim() == "https"),
        None => tls,
    };
    let host = header(&parts.headers, "x-forwarded-host")
        .and_then(|h| h.split(',').next())
        .map(|h| h.trim().to_owned())
        .or(host);
    Client { ip, https, host }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use std::net::SocketAddr;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder().uri("/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts.extensions.insert(ConnectInfo(crate::tls::Peer(
            peer.parse::<SocketAddr>().unwrap(),
        )));
        parts
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted = parse_trusted("10.0.0.0/8, ::1").unwrap();
        let spoof = [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("host", "hub.example"),
        ];
        let c = resolve(&parts("192.0.2.7:5000", &spoof), &trusted, false);
        assert_eq!(c.ip.to_string(), "192.0.2.7");
        assert!(!c.https);
        assert!(!from_trusted_proxy(
            &parts("192.0.2.7:5000", &spoof),
            &trusted
        ));
        assert!(from_trusted_proxy(
            &parts("10.1.2.3:5000", &spoof),
            &trusted
        ));
        // A forwarded address is never the proxy.
        let claim = [("x-forwarded-for", "10.0.0.9")];
        assert!(!from_trusted_proxy(
            &parts("192.0.2.7:5000", &claim),
            &trusted
        ));

        let c = resolve(&parts("10.1.2.3:5000", &spoof), &trusted, false);
        assert_eq!(c.ip.to_string(), "203.0.113.9");
        assert!(c.https);
        assert_eq!(c.host.as_deref(), Some("hub.example"));

        // A client cannot hide behind an address it writes itself.
        let chain = [("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.2")];
        let c = resolve(&parts("10.1.2.3:5000", &chain), &trusted, false);
        assert_eq!(c.ip.to_string(), "203.0.113.9");
    }

    #[test]
    fn trusted_lists_parse() {
        assert_eq!(parse_trusted("127.0.0.1, 10.0.0.0/8").unwrap().len(), 2);
        assert!(parse_trusted("").unwrap().is_empty());
        assert!(parse_trusted("proxy.lan").is_err());
    }
}
