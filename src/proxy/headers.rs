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
//!   only it says who the client is ([`super::client_address`], [`super::forwarding`]); a route
//!   may allow such a header by name;
//! - with `forward_headers = "listed"`, every header but RFC 9110's ([`LISTED`]), the gateway's
//!   own and the route's `allow_headers`.
//!

use http::header::{HeaderMap, HeaderName};

use super::header_meaning;
use crate::admin::metrics;
use crate::config::{GATEWAY_HEADERS, ROUTING_OVERRIDES, UnderscoreAction};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::header_map as map;

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
}
