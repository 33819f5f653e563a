//! Who the client is: the connection a request arrived on ([`Peer`]), and the client's address
//! by the configured trust in `X-Forwarded-For` ([`client_address`]). The gateway is the edge:
//! without trusted hops or proxies only the peer counts, and an entry that is not an address ends
//! the trust, so a client can never inject one.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{ClientAddress, listed};

/// `X-Forwarded-For`: read here when trusted, written by the gateway on every forwarded request.
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The address the connection came from: the TCP peer, or the source a trusted PROXY
    /// protocol header named.
    pub ip: IpAddr,
    /// Whether it reached us over TLS, for `X-Forwarded-Proto`.
    pub tls: bool,
    /// Raised by the server's framing watch when a request head on this connection had both
    /// `Content-Length` and `Transfer-Encoding` (hyper hides the conflict from services).
    pub ambiguous_framing: Arc<AtomicBool>,
    /// `X-Forwarded-Client-Cert` for the certificate the client presented and the gateway
    /// verified (`listen.client_ca`), computed once per connection.
    pub client_cert: Option<HeaderValue>,
}

/// Who the client is, as far as the gateway can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// The client's address: the privacy intake's rate limit keys on it.
    pub client: IpAddr,
    /// The trusted `X-Forwarded-For` entries to keep, leftmost first; the peer follows them.
    pub chain: Vec<IpAddr>,
}

/// The client's address and the `X-Forwarded-For` entries worth keeping, by `trust`. Without
/// trusted hops or proxies only the peer counts; any entry that is not an address ends the
/// trust, so a client can never inject one.
pub fn client_address(headers: &HeaderMap, peer: IpAddr, trust: &ClientAddress) -> Forwarding {
    let untrusted = Forwarding {
        client: peer,
        chain: Vec::new(),
    };
    let hops = trust.xff_trusted_hops;
    if hops == 0 && (trust.trusted_proxies.is_empty() || !listed(&trust.trusted_proxies, peer)) {
        return untrusted;
    }
    let mut entries: Vec<Option<IpAddr>> = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        let Ok(text) = value.to_str() else {
            return untrusted;
        };
        entries.extend(
            text.split(',')
                .map(|entry| parse_forwarded_ip(entry.trim())),
        );
    }
    let mut chain = Vec::new();
    if hops > 0 {
        if entries.len() < hops {
            return untrusted;
        }
        for entry in &entries[entries.len() - hops..] {
            match entry {
                Some(ip) => chain.push(*ip),
                None => return untrusted,
            }
        }
        return Forwarding {
            client: chain[0],
            chain,
        };
    }
    for entry in entries.iter().rev() {
        let Some(ip) = entry else { break };
        chain.push(*ip);
        if !listed(&trust.trusted_proxies, *ip) {
            break;
        }
    }
    chain.reverse();
    Forwarding {
        client: chain.first().copied().unwrap_or(peer),
        chain,
    }
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`192.0.2.1:80`, `[::1]:80`).
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::header_map as map;

    #[test]
    fn client_address_table() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let hops = |n| ClientAddress {
            xff_trusted_hops: n,
            ..ClientAddress::default()
        };
        let proxies = ClientAddress {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..ClientAddress::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // (X-Forwarded-For, trust, client, kept chain)
        let cases: Vec<(Option<&str>, ClientAddress, &str, Vec<&str>)> = vec![
            (
                Some("1.1.1.1"),
                ClientAddress::default(),
                "10.0.0.9",
                vec![],
            ),
            (None, hops(1), "10.0.0.9", vec![]),
            (
                Some("6.6.6.6, 1.1.1.1"),
                hops(1),
                "1.1.1.1",
                vec!["1.1.1.1"],
            ),
            (
                Some("6.6.6.6, 1.1.1.1, 10.0.0.2"),
                hops(2),
                "1.1.1.1",
                vec!["1.1.1.1", "10.0.0.2"],
            ),
            (Some("not-an-ip, 1.1.1.1"), hops(2), "10.0.0.9", vec![]),
            (
                Some("[2001:db8::1]:443"),
                hops(1),
                "2001:db8::1",
                vec!["2001:db8::1"],
            ),
            (
                Some("6.6.6.6, 1.1.1.1, 10.1.1.1"),
                proxies.clone(),
                "1.1.1.1",
                vec!["1.1.1.1", "10.1.1.1"],
            ),
            (
                Some("10.2.2.2, 10.1.1.1"),
                proxies.clone(),
                "10.2.2.2",
                vec!["10.2.2.2", "10.1.1.1"],
            ),
            (
                Some("6.6.6.6, junk, 10.1.1.1"),
                proxies.clone(),
                "10.1.1.1",
                vec!["10.1.1.1"],
            ),
        ];
        for (xff, trust, client, chain) in cases {
            let headers = map(&xff
                .map(|v| vec![("x-forwarded-for", v)])
                .unwrap_or_default());
            let got = client_address(&headers, peer, &trust);
            assert_eq!(got.client, ip(client), "{xff:?}");
            assert_eq!(
                got.chain,
                chain.iter().map(|s| ip(s)).collect::<Vec<_>>(),
                "{xff:?}"
            );
        }
        // An untrusted peer's header is not believed even with trusted proxies configured.
        let headers = map(&[("x-forwarded-for", "1.1.1.1")]);
        let outsider = client_address(&headers, ip("192.0.2.1"), &proxies);
        assert_eq!(outsider.client, ip("192.0.2.1"));
    }
}
