//! What the upstream and the client receive of each other's headers. In
//! [`forward_request_headers`] order matters: hop-by-hop headers, including those a client names
//! in `Connection`, are removed first, then credentials and every incoming `X-Gateway-*`, and
//! only then does the gateway add its own (`X-Forwarded-*`, `X-Gateway-Client`, `X-Request-Id`).
//! A client therefore cannot make the gateway drop `X-Gateway-Client` or `X-Request-Id` by naming
//! them in `Connection`.

use std::fmt::Write as _;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::auth::X_API_KEY;
use super::client_address::{Forwarding, Peer, X_FORWARDED_FOR};

/// `X-Gateway-Client`: the authenticated client id, set by the gateway only.
pub static X_GATEWAY_CLIENT: HeaderName = HeaderName::from_static("x-gateway-client");
/// `X-Request-Id`: kept from the client when sane, else generated; echoed on the response.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
// The forwarding headers the gateway writes, made at compile time rather than per request.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
const HTTPS: HeaderValue = HeaderValue::from_static("https");
const HTTP: HeaderValue = HeaderValue::from_static("http");

/// RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies also drop. Names,
/// not strings: removing by `&str` parses the name again on every request.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The comma-separated tokens of every `Connection` header, trimmed.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether a name is reserved for the gateway (`X-Gateway-*`).
fn is_gateway_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-gateway-")
}

/// Rewrites client request headers for the upstream, in the order the module docs explain.
pub fn forward_request_headers(
    headers: &mut HeaderMap,
    client_id: Option<&str>,
    request_id: &HeaderValue,
    peer: &Peer,
    forwarding: &Forwarding,
    authority: Option<&http::uri::Authority>,
) {
    strip_hop_by_hop(headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(&X_API_KEY);
    // The client's 100-continue was settled by the gateway; the upstream gets the whole body.
    headers.remove(header::EXPECT);
    let reserved: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_gateway_header(n))
        .cloned()
        .collect();
    for name in reserved {
        headers.remove(name);
    }
    let host = headers
        .remove(header::HOST)
        .or_else(|| authority.and_then(|authority| HeaderValue::from_str(authority.as_str()).ok()));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    let mut forwarded_for = String::with_capacity(48);
    for ip in forwarding.chain.iter().chain(std::iter::once(&peer.ip)) {
        if !forwarded_for.is_empty() {
            forwarded_for.push_str(", ");
        }
        let _ = write!(forwarded_for, "{ip}");
    }
    headers.insert(
        X_FORWARDED_FOR,
        HeaderValue::from_str(&forwarded_for).expect("addresses are valid header text"),
    );
    match &peer.client_cert {
        Some(cert) => headers.insert(X_FORWARDED_CLIENT_CERT, cert.clone()),
        None => headers.remove(X_FORWARDED_CLIENT_CERT),
    };
    headers.insert(X_FORWARDED_PROTO, if peer.tls { HTTPS } else { HTTP });
    if let Some(id) = client_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert(X_GATEWAY_CLIENT.clone(), id);
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

/// Rewrites upstream response headers for the client.
pub fn forward_response_headers(headers: &mut HeaderMap, request_id: &HeaderValue) {
    strip_hop_by_hop(headers);
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

/// The client's `X-Request-Id` when it is a sane token (1-128 of `A-Za-z0-9-_.:`), else a fresh
/// random 128-bit id in hex.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(value), None) = (values.next(), values.next()) {
        let bytes = value.as_bytes();
        if (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        {
            return value.clone();
        }
    }
    let id: [u8; 16] = rand::random();
    let mut text = [0u8; 32];
    hex::encode_to_slice(id, &mut text).expect("32 hex digits for 16 bytes");
    HeaderValue::from_bytes(&text).expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::ClientAddress;
    use crate::proxy::client_address::client_address;
    use crate::proxy::header_map as map;

    #[test]
    fn request_headers_are_cleaned_before_gateway_headers_are_added() {
        let mut headers = map(&[
            (
                "connection",
                "keep-alive, x-gateway-client, x-request-id, x-custom",
            ),
            ("x-custom", "dropped because Connection names it"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("authorization", "Bearer secret"),
            ("x-api-key", "secret"),
            ("x-gateway-client", "spoofed"),
            ("x-gateway-anything", "spoofed"),
            ("host", "gw.example"),
            ("expect", "100-continue"),
            ("x-forwarded-for", "10.0.0.1"),
            ("accept", "application/json"),
        ]);
        let rid = HeaderValue::from_static("rid-1");
        let peer = Peer {
            ip: "192.0.2.7".parse().unwrap(),
            tls: true,
            ambiguous_framing: Arc::default(),
            client_cert: None,
        };
        let forwarding = client_address(&headers, peer.ip, &ClientAddress::default());
        forward_request_headers(&mut headers, Some("acme"), &rid, &peer, &forwarding, None);
        let mut names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "accept",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-gateway-client",
                "x-request-id"
            ]
        );
        assert_eq!(headers["x-gateway-client"], "acme");
        assert_eq!(headers["x-request-id"], "rid-1");
        // The gateway is the edge: a client's own `X-Forwarded-For` is not believed.
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "gw.example");
    }

    #[test]
    fn request_ids() {
        assert_eq!(
            request_id(&map(&[("x-request-id", "abc-123_x.y:z")])),
            "abc-123_x.y:z"
        );
        for bad in ["has space", "quote\"", &"x".repeat(129)] {
            let id = request_id(&map(&[("x-request-id", bad)]));
            assert_eq!(id.len(), 32, "{bad}");
            assert_ne!(id, bad);
        }
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        // Two values: ambiguous, so a fresh id.
        assert_eq!(
            request_id(&map(&[("x-request-id", "a"), ("x-request-id", "b")])).len(),
            32
        );
    }
}
