//! Header hygiene (SPEC §4.1): what the upstream and the client are allowed to see.
//!
//! Order matters: hop-by-hop headers, including those a client names in `Connection`, are removed
//! first, then credentials and every incoming `X-Gateway-*`, and only then does the gateway add its
//! own headers. A client therefore cannot make the gateway drop `X-Gateway-Client` or
//! `X-Request-Id` by naming them in `Connection`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Gateway-Client`: the authenticated client id, set by the gateway only.
pub static X_GATEWAY_CLIENT: HeaderName = HeaderName::from_static("x-gateway-client");
/// `X-Request-Id`: kept from the client when sane, else generated; echoed on the response.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Api-Key`: the second accepted credential header.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

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
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether a name is reserved for the gateway (`X-Gateway-*`).
fn is_gateway_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-gateway-")
}

/// The client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's IP address, for `X-Forwarded-For`.
    pub ip: IpAddr,
    /// Whether it reached us over TLS, for `X-Forwarded-Proto`.
    pub tls: bool,
    /// Raised by the server's framing watch when a request head on this connection had both
    /// `Content-Length` and `Transfer-Encoding` (hyper hides the conflict from services).
    pub ambiguous_framing: Arc<AtomicBool>,
}

/// Rewrites client request headers for the upstream, in the order the module docs explain.
pub fn forward_request_headers(
    headers: &mut HeaderMap,
    client_id: Option<&str>,
    request_id: &HeaderValue,
    peer: &Peer,
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
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    let forwarded_for = match headers
        .get(HeaderName::from_static("x-forwarded-for"))
        .and_then(|v| v.to_str().ok())
    {
        Some(previous) => format!("{previous}, {}", peer.ip),
        None => peer.ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if peer.tls { "https" } else { "http" }),
    );
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
    HeaderValue::from_str(&hex::encode(id)).expect("hex is a valid header value")
}

/// The API key a request presents.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No credential header at all.
    Absent,
    /// One key (possibly repeated identically).
    Key(&'a [u8]),
    /// Different keys, or a credential header that cannot be read: refused with 400.
    Ambiguous,
}

/// Reads `Authorization: Bearer <key>` and `X-Api-Key: <key>`. A non-Bearer `Authorization` is
/// not a credential of ours (it is still removed before forwarding).
pub fn credential(headers: &HeaderMap) -> Credential<'_> {
    let mut found: Option<&[u8]> = None;
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| {
            let bytes = v.as_bytes();
            let scheme_end = bytes.iter().position(|b| *b == b' ')?;
            bytes[..scheme_end]
                .eq_ignore_ascii_case(b"bearer")
                .then(|| trim(&bytes[scheme_end + 1..]))
        });
    let api_keys = headers
        .get_all(&X_API_KEY)
        .iter()
        .map(|v| trim(v.as_bytes()));
    for key in bearer.chain(api_keys) {
        if key.is_empty() {
            return Credential::Ambiguous;
        }
        match found {
            Some(previous) if previous != key => return Credential::Ambiguous,
            _ => found = Some(key),
        }
    }
    found.map_or(Credential::Absent, Credential::Key)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn credentials_table() {
        let cases: &[(&[(&str, &str)], Credential<'_>)] = &[
            (&[], Credential::Absent),
            (&[("authorization", "Bearer k1")], Credential::Key(b"k1")),
            (&[("authorization", "bearer  k1 ")], Credential::Key(b"k1")),
            (&[("x-api-key", "k1")], Credential::Key(b"k1")),
            (
                &[("authorization", "Bearer k1"), ("x-api-key", "k1")],
                Credential::Key(b"k1"),
            ),
            (
                &[("authorization", "Bearer k1"), ("x-api-key", "k2")],
                Credential::Ambiguous,
            ),
            (
                &[("x-api-key", "k1"), ("x-api-key", "k2")],
                Credential::Ambiguous,
            ),
            (
                &[
                    ("authorization", "Bearer k1"),
                    ("authorization", "Bearer k2"),
                ],
                Credential::Ambiguous,
            ),
            (
                &[("authorization", "Basic dXNlcjpwYXNz")],
                Credential::Absent,
            ),
            (&[("x-api-key", "")], Credential::Ambiguous),
        ];
        for (headers, expected) in cases {
            assert_eq!(&credential(&map(headers)), expected, "{headers:?}");
        }
    }

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
        forward_request_headers(
            &mut headers,
            Some("acme"),
            &rid,
            &Peer {
                ip: "192.0.2.7".parse().unwrap(),
                tls: true,
                ambiguous_framing: Arc::default(),
            },
        );
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
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
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
