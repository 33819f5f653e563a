//! Header hygiene: what the upstream and the client are allowed to see.
//!
//! The upstream must read the same request the gateway judged, so before anything is forwarded
//! [`screen`] removes what some upstream stack would read differently or take as the gateway's
//! word:
//! - names that are not letters, digits and `-` (`X_Gateway_Client`): CGI, WSGI, PHP-FPM and
//!   Rack fold `_` and `-` into one variable, so such a header can shadow a real one. Dropped by
//!   default, refused or allowed by `listen.headers_with_underscores`; a name that folds into a
//!   protected one ([`is_protected`]) is dropped even when allowed;
//! - routing overrides (`X-Original-URL`, `X-HTTP-Method-Override`…) unless the route allows
//!   them;
//! - `Proxy` (httpoxy: CGI stacks turn it into `HTTP_PROXY`);
//! - every header whose name says it carries the client's address, the original host, scheme,
//!   port, path or URL, another method, or a client certificate, in any vendor's spelling
//!   ([`header_meaning`]), and proxies' control headers (`X-Envoy-*`): the gateway is the edge, so
//!   only it says who the client is ([`client_address`], [`forward_request_headers`]); a route
//!   may allow such a header by name;
//! - with `forward_headers = "listed"`, every header but RFC 9110's ([`LISTED`]), the gateway's
//!   own and the route's `allow_headers`.
//!
//! Then, in [`forward_request_headers`], order matters: hop-by-hop headers, including those a
//! client names in `Connection`, are removed first, then credentials and every incoming
//! `X-Gateway-*`, and only then does the gateway add its own headers. A client therefore cannot
//! make the gateway drop `X-Gateway-Client` or `X-Request-Id` by naming them in `Connection`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::header_meaning;
use crate::admin::metrics;
use crate::config::{ClientAddress, GATEWAY_HEADERS, ROUTING_OVERRIDES, UnderscoreAction, listed};

/// `X-Gateway-Client`: the authenticated client id, set by the gateway only.
pub static X_GATEWAY_CLIENT: HeaderName = HeaderName::from_static("x-gateway-client");
/// `X-Request-Id`: kept from the client when sane, else generated; echoed on the response.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Api-Key`: the second accepted credential header.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
// The forwarding headers the gateway writes, made at compile time rather than per request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
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

/// Names that credentials, framing, routing or the gateway's own word travel in: a header that
/// folds into one of them is never forwarded. `name` is lower-case with every byte other than
/// letters and digits turned into `-`, as CGI-style stacks compare them.
pub fn is_protected(name: &str) -> bool {
    const EXACT: [&str; 12] = [
        "authorization",
        "proxy",
        "proxy-authorization",
        "x-api-key",
        "x-request-id",
        "host",
        "content-length",
        "transfer-encoding",
        "content-type",
        "content-encoding",
        "connection",
        "upgrade",
    ];
    EXACT.contains(&name)
        || ROUTING_OVERRIDES.contains(&name)
        || name.starts_with("x-gateway-")
        || header_meaning::classify(name).is_some()
}

/// A request refused for its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFlaw {
    /// A name other than letters, digits and `-`, with `headers_with_underscores = "refuse"`.
    Name,
    /// An allowed routing override whose value is not a plain method, or a URL that would take
    /// another route than the request's path.
    RoutingOverride,
}

impl HeaderFlaw {
    /// Every flaw, for registering each metric series at 0.
    pub const ALL: [HeaderFlaw; 2] = [HeaderFlaw::Name, HeaderFlaw::RoutingOverride];

    /// The `reason` label of `gateway_blocked_total`.
    pub fn reason(self) -> &'static str {
        match self {
            HeaderFlaw::Name => "header_name",
            HeaderFlaw::RoutingOverride => "routing_override",
        }
    }

    /// The sentence the client reads (never a header's value).
    pub fn message(self) -> &'static str {
        match self {
            HeaderFlaw::Name => {
                "A request header name contains a character other than letters, digits and `-`."
            }
            HeaderFlaw::RoutingOverride => {
                "A routing-override header names another method or path than the request's own."
            }
        }
    }
}

/// The `reason` labels of `gateway_request_headers_removed_total` besides the meanings'
/// ([`header_meaning::Meaning::reason`]).
pub const REMOVAL_REASONS: [&str; 5] = [
    "header_name",
    "folded_name",
    "httpoxy",
    "routing_override",
    "not_listed",
];

/// What a route lets through: the listener's rule for odd names, the routing overrides and
/// other headers it allows by name, and whether only listed headers go.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPolicy<'r> {
    /// Names that are not letters, digits and `-`.
    pub underscores: UnderscoreAction,
    /// Routing overrides the route allows (judged by the caller).
    pub overrides: &'r [HeaderName],
    /// Headers the route allows by name.
    pub allowed: &'r [HeaderName],
    /// `forward_headers = "listed"`: only [`LISTED`], the gateway's and the allowed go.
    pub listed: bool,
}

/// The end-to-end request headers of RFC 9110 (and 9111's `Cache-Control`) that APIs use: what
/// `forward_headers = "listed"` forwards besides the gateway's own and a route's
/// `allow_headers`.
pub const LISTED: [&str; 19] = [
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "content-encoding",
    "content-language",
    "content-location",
    "content-range",
    "content-type",
    "date",
    "from",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "range",
    "referer",
    "user-agent",
];

/// Removes, or refuses, what an upstream could read differently (see the module docs). Allowed
/// URL overrides are left for the caller to judge against the route table.
pub fn screen(headers: &mut HeaderMap, policy: HeaderPolicy<'_>) -> Result<(), HeaderFlaw> {
    let HeaderPolicy {
        underscores,
        overrides: allowed_overrides,
        allowed,
        listed,
    } = policy;
    let mut removals: Vec<(HeaderName, &'static str)> = Vec::new();
    for name in headers.keys() {
        if allowed.contains(name) {
            continue;
        }
        let text = name.as_str();
        let canonical = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !canonical {
            let folded: String = text
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        b as char
                    } else {
                        '-'
                    }
                })
                .collect();
            match underscores {
                UnderscoreAction::Refuse => return Err(HeaderFlaw::Name),
                _ if is_protected(&folded) => removals.push((name.clone(), "folded_name")),
                UnderscoreAction::Drop => removals.push((name.clone(), "header_name")),
                UnderscoreAction::Allow => {}
            }
        } else if text == "proxy" {
            // httpoxy: CGI turns it into `HTTP_PROXY`, which HTTP clients take as their proxy.
            removals.push((name.clone(), "httpoxy"));
        } else if text.starts_with("x-") && ROUTING_OVERRIDES.contains(&text) {
            if !allowed_overrides.contains(name) {
                removals.push((name.clone(), "routing_override"));
            }
        } else if let Some(meaning) = header_meaning::classify(text) {
            removals.push((name.clone(), meaning.reason()));
        } else if listed
            && !LISTED.contains(&text)
            // Credentials, framing and hop-by-hop headers: the stages after this one handle them.
            && !GATEWAY_HEADERS.contains(&text)
            && !text.starts_with("x-gateway-")
        {
            removals.push((name.clone(), "not_listed"));
        }
    }
    for (name, reason) in removals {
        headers.remove(&name);
        metrics::headers_removed().get([reason]).increment(1);
    }
    for name in allowed_overrides {
        let method_override = !matches!(name.as_str(), "x-original-url" | "x-rewrite-url");
        for value in headers.get_all(name) {
            let plain = matches!(
                value.as_bytes(),
                b"GET" | b"HEAD" | b"POST" | b"PUT" | b"PATCH" | b"DELETE" | b"OPTIONS"
            );
            if method_override && !plain {
                return Err(HeaderFlaw::RoutingOverride);
            }
        }
    }
    Ok(())
}

/// The URL overrides an allowed header carries, for the caller to judge (each must take the
/// request's route).
pub fn url_overrides<'h>(
    headers: &'h HeaderMap,
    allowed_overrides: &'h [HeaderName],
) -> impl Iterator<Item = Result<&'h str, HeaderFlaw>> + 'h {
    allowed_overrides
        .iter()
        .filter(|name| matches!(name.as_str(), "x-original-url" | "x-rewrite-url"))
        .flat_map(|name| headers.get_all(name))
        .map(|value| {
            value
                .to_str()
                .map(|url| url.split_once('?').map_or(url, |(path, _)| path))
                .map_err(|_| HeaderFlaw::RoutingOverride)
        })
}

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
    fn screening_table() {
        use UnderscoreAction::*;
        let override_url = [HeaderName::from_static("x-original-url")];
        // (headers, policy, allowed overrides, names left, or None when refused)
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            UnderscoreAction,
            &'a [HeaderName],
            Option<&'a [&'a str]>,
        );
        let cases: &[Case<'_>] = &[
            (
                &[("x_gateway_client", "globex"), ("accept", "*/*")],
                Drop,
                &[],
                Some(&["accept"]),
            ),
            (&[("x-gateway_client", "globex")], Allow, &[], Some(&[])),
            (&[("x_api_key", "k")], Allow, &[], Some(&[])),
            (&[("x_forwarded_for", "1.2.3.4")], Allow, &[], Some(&[])),
            (&[("x.original.url", "/admin")], Allow, &[], Some(&[])),
            (&[("x_custom", "1")], Allow, &[], Some(&["x_custom"])),
            (&[("x_custom", "1")], Drop, &[], Some(&[])),
            (&[("x_custom", "1")], Refuse, &[], None),
            (&[("x_gateway_client", "globex")], Refuse, &[], None),
            (
                &[
                    ("forwarded", "for=1.2.3.4"),
                    ("x-real-ip", "1.2.3.4"),
                    ("x-forwarded-host", "evil"),
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-port", "80"),
                    ("x-forwarded-prefix", "/admin"),
                    ("x-forwarded-client-cert", "Hash=00"),
                    ("x-client-cert", "x"),
                    ("x-ssl-client-cert", "x"),
                    ("x-ssl-client-verify", "SUCCESS"),
                    ("x-envoy-internal", "true"),
                    ("proxy", "http://evil.example:3128"),
                    ("true-client-ip", "1.2.3.4"),
                ],
                Drop,
                &[],
                Some(&[]),
            ),
            (
                &[
                    ("x-original-url", "/admin"),
                    ("x-rewrite-url", "/admin"),
                    ("x-http-method-override", "DELETE"),
                    ("x-http-method", "DELETE"),
                    ("x-method-override", "DELETE"),
                ],
                Drop,
                &[],
                Some(&[]),
            ),
            (
                &[("x-original-url", "/v1/x")],
                Drop,
                &override_url,
                Some(&["x-original-url"]),
            ),
            (
                &[("x-http-method-override", "PATCH")],
                Drop,
                &[HeaderName::from_static("x-http-method-override")],
                Some(&["x-http-method-override"]),
            ),
            (
                &[("x-http-method-override", "CONNECT")],
                Drop,
                &[HeaderName::from_static("x-http-method-override")],
                None,
            ),
        ];
        for (pairs, underscores, overrides, expected) in cases {
            let mut headers = map(pairs);
            let policy = HeaderPolicy {
                underscores: *underscores,
                overrides,
                allowed: &[],
                listed: false,
            };
            let result = screen(&mut headers, policy);
            match expected {
                None => assert!(result.is_err(), "{pairs:?} {underscores:?}"),
                Some(left) => {
                    assert!(result.is_ok(), "{pairs:?} {underscores:?}");
                    let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
                    assert_eq!(&names, left, "{pairs:?} {underscores:?}");
                }
            }
        }
    }

    /// Vendor spellings of the screened meanings are removed, each counted by its class; a route
    /// may allow one by name; in listed mode only RFC 9110's headers, the gateway's and the
    /// allowed ones remain.
    #[test]
    fn headers_are_screened_by_meaning_and_listed_mode_denies_by_default() {
        let sent = [
            ("accept", "application/json"),
            ("authorization", "Bearer k"),
            ("content-type", "application/json"),
            ("x-original-host", "admin.internal"),
            ("x-azure-clientip", "1.2.3.4"),
            ("cf-visitor", "{\"scheme\":\"https\"}"),
            ("x-amzn-mtls-clientcert", "MII"),
            ("x-forwarded-method", "DELETE"),
            ("x-tenant", "acme"),
            ("idempotency-key", "k-1"),
        ];
        let screened = |allowed: &[HeaderName], listed: bool| {
            let mut headers = map(&sent);
            let policy = HeaderPolicy {
                underscores: UnderscoreAction::Drop,
                overrides: &[],
                allowed,
                listed,
            };
            screen(&mut headers, policy).unwrap();
            let mut names: Vec<String> = headers.keys().map(|k| k.to_string()).collect();
            names.sort();
            names
        };
        assert_eq!(
            screened(&[], false),
            [
                "accept",
                "authorization",
                "content-type",
                "idempotency-key",
                "x-tenant"
            ]
        );
        let host = HeaderName::from_static("x-original-host");
        assert_eq!(
            screened(std::slice::from_ref(&host), false),
            [
                "accept",
                "authorization",
                "content-type",
                "idempotency-key",
                "x-original-host",
                "x-tenant"
            ]
        );
        let tenant = HeaderName::from_static("x-tenant");
        assert_eq!(
            screened(std::slice::from_ref(&tenant), true),
            ["accept", "authorization", "content-type", "x-tenant"]
        );
    }

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
