//! Who is asking: the client address a request is accounted to (dry-run rate limit) and whether a caller
//! is trusted with HyperBEAM's hbu route.
//!
//! Forwarding headers are believed only from configured proxies ([`TrustedProxies`]): anyone can write an
//! `X-Forwarded-For`, so from any other peer the socket address is the client. Behind a trusted proxy the
//! client is the right-most `X-Forwarded-For` hop that is not itself a trusted proxy (each proxy appends
//! the address it saw), else `X-Real-IP`, else the proxy's own address.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// A set of proxy addresses (`10.0.0.0/8`, `::1`, `127.0.0.1/32`, ...) whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// No proxy is trusted: clients are their socket addresses.
    pub fn none() -> Self {
        TrustedProxies(Vec::new())
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|&(net, bits)| in_network(ip, net, bits))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of addresses or CIDR networks; empty = none.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (addr, bits) = match part.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (part, None),
            };
            let ip = canonical(
                addr.parse::<IpAddr>()
                    .map_err(|_| format!("{part:?} is not an IP address or CIDR network"))?,
            );
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|&b| b <= max)
                    .ok_or_else(|| format!("{part:?}: the prefix length must be 0 to {max}"))?,
            };
            nets.push((ip, bits));
        }
        Ok(TrustedProxies(nets))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The client address a request is accounted to (see the module docs); `"unknown"` without a socket
/// address (a router served without connect info, as in tests).
pub(crate) fn client_ip(headers: &HeaderMap, socket: Option<SocketAddr>, proxies: &TrustedProxies) -> String {
    let Some(peer) = socket.map(|s| canonical(s.ip())) else {
        return "unknown".to_owned();
    };
    if !proxies.contains(peer) {
        return peer.to_string();
    }
    let header_str = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(forwarded) = header_str("x-forwarded-for") {
        let hops: Vec<IpAddr> = forwarded
            .split(',')
            .filter_map(|h| h.trim().parse::<IpAddr>().ok())
            .map(canonical)
            .collect();
        if let Some(client) = hops.iter().rev().find(|h| !proxies.contains(**h)) {
            return client.to_string();
        }
    }
    if let Some(ip) = header_str("x-real-ip").and_then(|v| v.parse::<IpAddr>().ok()) {
        return canonical(ip).to_string();
    }
    peer.to_string()
}

/// Whether the peer is on this host (loopback), the default trust of the hbu route.
pub(crate) fn is_loopback(socket: Option<SocketAddr>) -> bool {
    socket.is_some_and(|s| canonical(s.ip()).is_loopback())
}

/// Compares two secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn sock(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40_000))
    }

    #[test]
    fn forwarding_headers_are_ignored_from_untrusted_peers() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(client_ip(&h, sock("9.9.9.9"), &TrustedProxies::none()), "9.9.9.9");
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        assert_eq!(client_ip(&h, sock("9.9.9.9"), &proxies), "9.9.9.9");
        assert_eq!(client_ip(&h, None, &proxies), "unknown");
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let proxies: TrustedProxies = "10.0.0.0/8, 192.168.1.7".parse().unwrap();
        // A client-supplied first hop (spoofed) is skipped: the last proxy saw 203.0.113.5.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.5, 10.1.2.3")]);
        assert_eq!(client_ip(&h, sock("192.168.1.7"), &proxies), "203.0.113.5");
        let h = headers(&[("x-real-ip", "198.51.100.2")]);
        assert_eq!(client_ip(&h, sock("::ffff:10.0.0.1"), &proxies), "198.51.100.2");
        assert_eq!(
            client_ip(&HeaderMap::new(), sock("10.0.0.1"), &proxies),
            "10.0.0.1"
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let p: TrustedProxies = "127.0.0.1, 10.0.0.0/8, fd00::/8, ::1".parse().unwrap();
        for yes in ["127.0.0.1", "10.255.0.1", "fd12::1", "::1", "::ffff:10.0.0.9"] {
            assert!(p.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in ["127.0.0.2", "11.0.0.1", "fe80::1"] {
            assert!(!p.contains(no.parse().unwrap()), "{no}");
        }
        assert!(
            "0.0.0.0/0"
                .parse::<TrustedProxies>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/x"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
    }

    #[test]
    fn loopback_and_secrets() {
        assert!(is_loopback(sock("127.0.0.1")));
        assert!(is_loopback(sock("::1")));
        assert!(is_loopback(sock("::ffff:127.0.0.1")));
        assert!(!is_loopback(sock("10.0.0.1")));
        assert!(!is_loopback(None));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
