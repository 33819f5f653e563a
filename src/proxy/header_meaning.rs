//! What an upstream framework trusts a request header for, read from its name.
//!
//! The gateway is the edge: only it may tell the upstream who the client is and how the request
//! reached it. A list of spellings always misses one (`X-Forwarded-Host` is stripped, and
//! `X-Original-Host` reaches a framework that honours it), so names are classified by meaning:
//! after case folding and `_`/`-` folding, a name is matched against the spellings frameworks and
//! load balancers document, then against the words those spellings are made of (`client-ip`,
//! `forwarded-`, `client-cert`, `original-url`…), so a vendor's new spelling of an old meaning
//! falls in its class too. The spellings and where each is documented are in this file's tests.

/// What a framework takes a header to say about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// The client's address (`X-Forwarded-For`, `X-Real-IP`, `CF-Connecting-IP`…).
    ClientAddress,
    /// The host the client asked for (`X-Forwarded-Host`, `X-Original-Host`…).
    OriginalHost,
    /// The scheme, port, path prefix, path or URL the client used (`X-Forwarded-Proto`,
    /// `X-Forwarded-Prefix`, `X-Original-URL`…).
    OriginalUrl,
    /// Another method than the request's (`X-HTTP-Method-Override`…).
    MethodOverride,
    /// The client's certificate or the result of verifying it (`X-SSL-Client-Verify`,
    /// `X-Forwarded-Client-Cert`, `X-Amzn-Mtls-Clientcert`…).
    ClientCertificate,
    /// A proxy's own control or trace header that a client has no business sending (`X-Envoy-*`).
    ProxyControl,
}

impl Meaning {
    /// Every meaning, for registering each metric series at 0.
    pub const ALL: [Meaning; 6] = [
        Meaning::ClientAddress,
        Meaning::OriginalHost,
        Meaning::OriginalUrl,
        Meaning::MethodOverride,
        Meaning::ClientCertificate,
        Meaning::ProxyControl,
    ];

    /// The `reason` label of `gateway_request_headers_removed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Meaning::ClientAddress => "client_address",
            Meaning::OriginalHost => "original_host",
            Meaning::OriginalUrl => "original_url",
            Meaning::MethodOverride => "method_override",
            Meaning::ClientCertificate => "client_certificate",
            Meaning::ProxyControl => "proxy_control",
        }
    }
}

/// Spellings documented by frameworks and load balancers, folded (lower case, `-`).
const EXACT: &[(&str, Meaning)] = &[
    ("forwarded", Meaning::ClientAddress),
    ("x-forwarded", Meaning::ClientAddress),
    ("x-real-ip", Meaning::ClientAddress),
    ("client-ip", Meaning::ClientAddress),
    ("true-client-ip", Meaning::ClientAddress),
    ("x-client-ip", Meaning::ClientAddress),
    ("x-cluster-client-ip", Meaning::ClientAddress),
    ("cf-connecting-ip", Meaning::ClientAddress),
    ("cf-connecting-ipv6", Meaning::ClientAddress),
    ("fastly-client-ip", Meaning::ClientAddress),
    ("fly-client-ip", Meaning::ClientAddress),
    ("x-azure-clientip", Meaning::ClientAddress),
    ("x-azure-socketip", Meaning::ClientAddress),
    ("x-appengine-user-ip", Meaning::ClientAddress),
    ("x-proxyuser-ip", Meaning::ClientAddress),
    ("x-original-for", Meaning::ClientAddress),
    ("x-host", Meaning::OriginalHost),
    ("x-original-host", Meaning::OriginalHost),
    ("x-forwarded-server", Meaning::OriginalHost),
    ("x-http-host-override", Meaning::OriginalHost),
    ("x-scheme", Meaning::OriginalUrl),
    ("x-url-scheme", Meaning::OriginalUrl),
    ("front-end-https", Meaning::OriginalUrl),
    ("cf-visitor", Meaning::OriginalUrl),
    ("x-original-proto", Meaning::OriginalUrl),
    ("x-original-prefix", Meaning::OriginalUrl),
    ("x-script-name", Meaning::OriginalUrl),
    ("x-original-url", Meaning::OriginalUrl),
    ("x-original-uri", Meaning::OriginalUrl),
    ("x-rewrite-url", Meaning::OriginalUrl),
    ("x-envoy-original-path", Meaning::OriginalUrl),
    ("x-http-method-override", Meaning::MethodOverride),
    ("x-http-method", Meaning::MethodOverride),
    ("x-method-override", Meaning::MethodOverride),
    ("x-arr-ssl", Meaning::ClientCertificate),
    ("ms-aspnetcore-clientcert", Meaning::ClientCertificate),
];

/// Words a spelling of each meaning is made of, checked in this order (the more specific
/// first): a name containing one falls in its class.
const WORDS: &[(&str, Meaning)] = &[
    ("client-cert", Meaning::ClientCertificate),
    ("clientcert", Meaning::ClientCertificate),
    ("ssl-client", Meaning::ClientCertificate),
    ("tls-client", Meaning::ClientCertificate),
    ("client-verify", Meaning::ClientCertificate),
    ("client-dn", Meaning::ClientCertificate),
    ("mtls", Meaning::ClientCertificate),
    ("method-override", Meaning::MethodOverride),
    ("forwarded-method", Meaning::MethodOverride),
    ("original-method", Meaning::MethodOverride),
    ("original-url", Meaning::OriginalUrl),
    ("original-uri", Meaning::OriginalUrl),
    ("original-path", Meaning::OriginalUrl),
    ("rewrite-url", Meaning::OriginalUrl),
    ("forwarded-uri", Meaning::OriginalUrl),
    ("forwarded-url", Meaning::OriginalUrl),
    ("forwarded-path", Meaning::OriginalUrl),
    ("forwarded-prefix", Meaning::OriginalUrl),
    ("forwarded-proto", Meaning::OriginalUrl),
    ("forwarded-scheme", Meaning::OriginalUrl),
    ("forwarded-ssl", Meaning::OriginalUrl),
    ("forwarded-port", Meaning::OriginalUrl),
    ("forwarded-host", Meaning::OriginalHost),
    ("original-host", Meaning::OriginalHost),
    ("host-override", Meaning::OriginalHost),
    ("client-ip", Meaning::ClientAddress),
    ("clientip", Meaning::ClientAddress),
    ("real-ip", Meaning::ClientAddress),
    ("connecting-ip", Meaning::ClientAddress),
    ("connection-ip", Meaning::ClientAddress),
    ("user-ip", Meaning::ClientAddress),
    ("remote-addr", Meaning::ClientAddress),
    ("remote-ip", Meaning::ClientAddress),
    ("originating-ip", Meaning::ClientAddress),
    ("socketip", Meaning::ClientAddress),
    ("forwarded-for", Meaning::ClientAddress),
    ("forwarded", Meaning::ClientAddress),
];

/// Every word above holds one of these (a test keeps it so): a name that holds none has no
/// meaning by its words, and most names (`accept`, `content-type`, `user-agent`) are done after
/// these few scans instead of one per word.
const ANCHORS: [&str; 9] = [
    "ip",
    "client",
    "mtls",
    "method",
    "original",
    "rewrite",
    "forwarded",
    "override",
    "remote",
];

/// The meaning of a header name, if it has one of these: `name` is folded first (lower case,
/// every byte other than a letter or digit as `-`), so `X_Forwarded_Host` is read as
/// `x-forwarded-host`, as CGI-style stacks read it. This runs for every header of every request.
pub fn classify(name: &str) -> Option<Meaning> {
    // Names arrive as the `http` crate keeps them, in lower case: only a name with `_` or other
    // punctuation needs a folded copy.
    let canonical = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let folded: std::borrow::Cow<'_, str> = match canonical {
        true => name.into(),
        false => name
            .bytes()
            .map(|b| match b.is_ascii_alphanumeric() {
                true => b.to_ascii_lowercase() as char,
                false => '-',
            })
            .collect::<String>()
            .into(),
    };
    let folded = &*folded;
    if let Some((_, meaning)) = EXACT.iter().find(|(n, _)| *n == folded) {
        return Some(*meaning);
    }
    if folded.starts_with("x-envoy-") {
        return Some(Meaning::ProxyControl);
    }
    if !ANCHORS.iter().any(|anchor| holds(folded, anchor)) {
        return None;
    }
    WORDS
        .iter()
        .find(|(word, _)| holds(folded, word))
        .map(|(_, meaning)| *meaning)
}

/// Whether `name` holds `word`. A header name is a few dozen bytes: a plain scan beats
/// `str::contains`, whose searcher costs more to set up than such a name takes to read.
fn holds(name: &str, word: &str) -> bool {
    let (name, word) = (name.as_bytes(), word.as_bytes());
    name.windows(word.len())
        .any(|window| window[0] == word[0] && window == word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_holds_an_anchor() {
        for (word, _) in WORDS {
            assert!(
                ANCHORS.iter().any(|anchor| word.contains(anchor)),
                "`{word}` holds none of the anchors: names made of it would be missed"
            );
        }
    }

    /// Every spelling frameworks and load balancers document for these meanings, with where.
    const DOCUMENTED: &[(&str, Meaning, &str)] = &[
        // Client address.
        (
            "Forwarded",
            Meaning::ClientAddress,
            "RFC 7239; Spring, Symfony, Laravel, gorilla/handlers",
        ),
        (
            "X-Forwarded-For",
            Meaning::ClientAddress,
            "Express, Rails, Django, ASP.NET Core, AWS ALB, Azure, Google Cloud LB, F5, nginx",
        ),
        (
            "X-Real-IP",
            Meaning::ClientAddress,
            "nginx realip, chi RealIP, Echo, Traefik",
        ),
        ("Client-IP", Meaning::ClientAddress, "Rails remote_ip"),
        (
            "True-Client-IP",
            Meaning::ClientAddress,
            "Akamai, Cloudflare Enterprise, chi RealIP",
        ),
        (
            "X-Client-IP",
            Meaning::ClientAddress,
            "Apache mod_remoteip setups, request-ip (Node)",
        ),
        (
            "X-Cluster-Client-IP",
            Meaning::ClientAddress,
            "Rackspace, Riverbed; request-ip (Node)",
        ),
        ("CF-Connecting-IP", Meaning::ClientAddress, "Cloudflare"),
        ("CF-Connecting-IPv6", Meaning::ClientAddress, "Cloudflare"),
        ("Fastly-Client-IP", Meaning::ClientAddress, "Fastly"),
        ("Fly-Client-IP", Meaning::ClientAddress, "Fly.io"),
        (
            "X-Azure-ClientIP",
            Meaning::ClientAddress,
            "Azure Front Door",
        ),
        (
            "X-Azure-SocketIP",
            Meaning::ClientAddress,
            "Azure Front Door",
        ),
        (
            "X-AppEngine-User-IP",
            Meaning::ClientAddress,
            "Google App Engine",
        ),
        ("X-ProxyUser-Ip", Meaning::ClientAddress, "Google Cloud"),
        (
            "X-Original-For",
            Meaning::ClientAddress,
            "ASP.NET Core ForwardedHeaders (the original value)",
        ),
        ("X-Envoy-External-Address", Meaning::ProxyControl, "Envoy"),
        ("X-Vercel-Forwarded-For", Meaning::ClientAddress, "Vercel"),
        (
            "X-NF-Client-Connection-IP",
            Meaning::ClientAddress,
            "Netlify",
        ),
        (
            "X-Original-Forwarded-For",
            Meaning::ClientAddress,
            "ingress-nginx",
        ),
        ("X-Forwarded", Meaning::ClientAddress, "request-ip (Node)"),
        ("Forwarded-For", Meaning::ClientAddress, "request-ip (Node)"),
        ("X-Remote-Addr", Meaning::ClientAddress, "PHP proxies"),
        (
            "X-Originating-IP",
            Meaning::ClientAddress,
            "Microsoft services",
        ),
        // Original host.
        (
            "X-Forwarded-Host",
            Meaning::OriginalHost,
            "Express, Rails, Django USE_X_FORWARDED_HOST, ASP.NET Core, Symfony, Laravel, Azure Front Door",
        ),
        ("X-Host", Meaning::OriginalHost, "Symfony (legacy), Laravel"),
        (
            "X-Original-Host",
            Meaning::OriginalHost,
            "ASP.NET Core ForwardedHeaders, IIS ARR",
        ),
        (
            "X-Forwarded-Server",
            Meaning::OriginalHost,
            "Traefik, Apache mod_proxy",
        ),
        (
            "X-HTTP-Host-Override",
            Meaning::OriginalHost,
            "Google Cloud Endpoints",
        ),
        // Scheme, port, prefix, path, URL.
        (
            "X-Forwarded-Proto",
            Meaning::OriginalUrl,
            "Express, Rails, Django SECURE_PROXY_SSL_HEADER, Spring, ASP.NET Core, AWS ALB, Google Cloud LB",
        ),
        ("X-Forwarded-Protocol", Meaning::OriginalUrl, "Echo"),
        (
            "X-Forwarded-Scheme",
            Meaning::OriginalUrl,
            "Rack, gorilla/handlers",
        ),
        (
            "X-Forwarded-Ssl",
            Meaning::OriginalUrl,
            "Rack, Spring, Echo",
        ),
        (
            "Front-End-Https",
            Meaning::OriginalUrl,
            "Rack, Microsoft ISA/TMG",
        ),
        ("X-Url-Scheme", Meaning::OriginalUrl, "Rack, Echo"),
        (
            "X-Scheme",
            Meaning::OriginalUrl,
            "nginx convention for Flask and Tornado",
        ),
        (
            "CF-Visitor",
            Meaning::OriginalUrl,
            "Cloudflare (the scheme, as JSON)",
        ),
        (
            "X-Forwarded-Port",
            Meaning::OriginalUrl,
            "Rails, Django USE_X_FORWARDED_PORT, Spring, Symfony, AWS ALB",
        ),
        (
            "X-Forwarded-Prefix",
            Meaning::OriginalUrl,
            "Spring, ASP.NET Core, Symfony, Werkzeug ProxyFix, Kong",
        ),
        (
            "X-Original-Prefix",
            Meaning::OriginalUrl,
            "ASP.NET Core ForwardedHeaders (the original value)",
        ),
        (
            "X-Original-Proto",
            Meaning::OriginalUrl,
            "ASP.NET Core ForwardedHeaders (the original value)",
        ),
        (
            "X-Script-Name",
            Meaning::OriginalUrl,
            "WSGI proxy setups (SCRIPT_NAME)",
        ),
        ("X-Forwarded-Path", Meaning::OriginalUrl, "Kong"),
        (
            "X-Forwarded-Uri",
            Meaning::OriginalUrl,
            "Traefik, nginx auth_request setups",
        ),
        (
            "X-Original-URL",
            Meaning::OriginalUrl,
            "IIS URL Rewrite, Symfony (legacy)",
        ),
        (
            "X-Original-URI",
            Meaning::OriginalUrl,
            "nginx auth_request setups",
        ),
        (
            "X-Rewrite-URL",
            Meaning::OriginalUrl,
            "IIS ISAPI Rewrite, Symfony (legacy)",
        ),
        ("X-Envoy-Original-Path", Meaning::OriginalUrl, "Envoy"),
        // Method override.
        (
            "X-HTTP-Method-Override",
            Meaning::MethodOverride,
            "Express method-override, Symfony, Laravel, ASP.NET Web API, Google APIs",
        ),
        ("X-HTTP-Method", Meaning::MethodOverride, "OData, ASP.NET"),
        (
            "X-Method-Override",
            Meaning::MethodOverride,
            "IBM, various REST frameworks",
        ),
        (
            "X-Forwarded-Method",
            Meaning::MethodOverride,
            "Traefik ForwardAuth",
        ),
        // Client certificate and its verification.
        (
            "X-Forwarded-Client-Cert",
            Meaning::ClientCertificate,
            "Envoy (XFCC), Istio",
        ),
        (
            "X-Forwarded-Tls-Client-Cert",
            Meaning::ClientCertificate,
            "Traefik",
        ),
        (
            "X-Forwarded-Tls-Client-Cert-Info",
            Meaning::ClientCertificate,
            "Traefik",
        ),
        (
            "X-SSL-Client-Cert",
            Meaning::ClientCertificate,
            "nginx convention, F5",
        ),
        (
            "X-SSL-Client-Verify",
            Meaning::ClientCertificate,
            "nginx convention",
        ),
        (
            "X-SSL-Client-DN",
            Meaning::ClientCertificate,
            "nginx convention",
        ),
        (
            "SSL-Client-Cert",
            Meaning::ClientCertificate,
            "Apache mod_ssl as a header",
        ),
        (
            "X-Client-Cert",
            Meaning::ClientCertificate,
            "ASP.NET Core CertificateForwarding, Spring",
        ),
        (
            "X-Client-Verify",
            Meaning::ClientCertificate,
            "nginx convention",
        ),
        (
            "X-Client-DN",
            Meaning::ClientCertificate,
            "nginx convention",
        ),
        (
            "X-ARR-ClientCert",
            Meaning::ClientCertificate,
            "IIS ARR, ASP.NET Core CertificateForwarding default",
        ),
        ("X-ARR-SSL", Meaning::ClientCertificate, "IIS ARR"),
        (
            "MS-ASPNETCORE-CLIENTCERT",
            Meaning::ClientCertificate,
            "ASP.NET Core Module for IIS",
        ),
        (
            "X-Amzn-Mtls-Clientcert",
            Meaning::ClientCertificate,
            "AWS ALB mutual TLS",
        ),
        (
            "X-Amzn-Mtls-Clientcert-Leaf",
            Meaning::ClientCertificate,
            "AWS ALB mutual TLS",
        ),
        (
            "X-Client-Cert-Chain-Verified",
            Meaning::ClientCertificate,
            "Google Cloud LB mutual TLS",
        ),
        (
            "X-Client-Cert-Present",
            Meaning::ClientCertificate,
            "Google Cloud LB mutual TLS",
        ),
        (
            "X-Azure-ClientCertificate",
            Meaning::ClientCertificate,
            "Azure Application Gateway (as configured)",
        ),
        // Proxy control.
        (
            "X-Envoy-Upstream-Rq-Timeout-Ms",
            Meaning::ProxyControl,
            "Envoy",
        ),
    ];

    #[test]
    fn every_documented_spelling_falls_in_its_class() {
        for (name, meaning, source) in DOCUMENTED {
            assert_eq!(classify(name), Some(*meaning), "{name} ({source})");
            // Underscores and case do not hide a meaning.
            let cgi = name.replace('-', "_").to_ascii_uppercase();
            assert_eq!(classify(&cgi), Some(*meaning), "{cgi} ({source})");
        }
    }

    #[test]
    fn ordinary_api_headers_have_no_such_meaning() {
        for name in [
            "accept",
            "accept-encoding",
            "accept-language",
            "authorization",
            "cache-control",
            "content-type",
            "content-length",
            "if-none-match",
            "if-match",
            "user-agent",
            "referer",
            "origin",
            "idempotency-key",
            "x-api-key",
            "x-request-id",
            "x-correlation-id",
            "traceparent",
            "tracestate",
            "prefer",
            "x-client-version",
            "x-client-name",
            "x-customer-ref",
        ] {
            assert_eq!(classify(name), None, "{name}");
        }
    }
}
