//! Small models of how common upstream stacks read a request they receive: which path they route,
//! with which method, and whom they take `X-Gateway-Client` to name.
//!
//! The gateway judges a request by its own reading. These models are the other side: the
//! differential test (`tests/upstream_equivalence.rs`) and the `request_target` fuzz target send
//! requests through the gateway and assert that every model routes what the gateway forwarded to
//! the route the gateway judged, with the identity the gateway authenticated, or that the gateway
//! refused. A new model is one entry in [`MODELS`]: a name and a function of the forwarded
//! request, built from the helpers below.

use unicode_normalization::UnicodeNormalization;

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The method on the request line.
    pub method: String,
    /// The request target's path (no query), byte for byte as sent.
    pub path: String,
    /// Header names (lower-case, as HTTP/1.1 and hyper deliver them) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl Forwarded {
    /// Every value of the header named exactly `name`.
    pub fn exact(&self, name: &str) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the header `name` as CGI, WSGI, PHP and Rack see it: names upper-cased with
    /// every character other than letters and digits turned into `_`, so `X-A_B` and `X_A-B`
    /// are one variable.
    pub fn folded(&self, name: &str) -> impl Iterator<Item = &str> {
        let key = cgi_name(name);
        self.headers
            .iter()
            .filter(move |(n, _)| cgi_name(n) == key)
            .map(|(_, v)| v.as_str())
    }
}

fn cgi_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// How one upstream reads a request: the path it routes, whether it routes ignoring case, the
/// method it acts on and the caller identity it takes from `X-Gateway-Client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The path the upstream's router sees.
    pub path: String,
    /// Whether it compares paths case-insensitively.
    pub fold_case: bool,
    /// The method it acts on.
    pub method: String,
    /// The client id it believes, if any. When a stack could pick either of several values,
    /// the model returns the one that differs from the gateway's, if any (the worst case).
    pub identity: Identity,
}

/// Whom an upstream takes the caller to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No `X-Gateway-Client` at all.
    None,
    /// Exactly one value.
    One(String),
    /// Several differing values: which one wins depends on the stack.
    Ambiguous,
}

/// One upstream stack.
pub struct Model {
    /// What it stands for.
    pub name: &'static str,
    /// Its reading of a request, or `None` when it would refuse the request itself.
    pub read: fn(&Forwarded) -> Option<Reading>,
}

/// The stacks the gateway is tested against.
pub const MODELS: &[Model] = &[
    Model {
        name: "strict (decodes once, exact names)",
        read: |r| Some(reading(decode(&r.path)?, false, r, exact_identity(r))),
    },
    Model {
        name: "servlet (Tomcat, Jetty: drops ;params, resolves dot segments, merges slashes)",
        read: |r| {
            let path = decode(&strip_parameters(&r.path))?;
            Some(reading(normalise(&path), false, r, exact_identity(r)))
        },
    },
    Model {
        name: "spring (decodes first, then drops ;params and resolves dots)",
        read: |r| {
            let path = strip_parameters(&decode(&r.path)?);
            Some(reading(normalise(&path), false, r, exact_identity(r)))
        },
    },
    Model {
        name: "iis/symfony (X-Original-URL, backslashes, double decoding, trailing dots, any case)",
        read: |r| {
            let target = r
                .exact("x-original-url")
                .chain(r.exact("x-rewrite-url"))
                .next()
                .map_or(r.path.as_str(), |url| url.split('?').next().unwrap_or(url));
            let once = decode(target)?;
            let twice = decode(&once).unwrap_or(once);
            let path = normalise(&twice.replace('\\', "/"));
            let path = segments_map(&path, |s| s.trim_end_matches(['.', ' ']).to_string());
            Some(reading(path, true, r, exact_identity(r)))
        },
    },
    Model {
        name: "cgi/wsgi/php (headers folded: `_` and `-` are one name)",
        read: |r| {
            let identity = identity_of(r.folded("x-gateway-client"));
            Some(reading(normalise(&decode(&r.path)?), false, r, identity))
        },
    },
    Model {
        name: "case-insensitive router (ASP.NET, Express, Java equalsIgnoreCase)",
        read: |r| Some(reading(decode(&r.path)?, true, r, exact_identity(r))),
    },
    Model {
        name: "format suffixes (Spring suffix patterns, Rails formats)",
        read: |r| {
            let path = decode(&r.path)?;
            let start = path.rfind('/').map_or(0, |i| i + 1);
            let path = match path[start..].rfind('.') {
                Some(dot) if dot > 0 => path[..start + dot].to_string(),
                _ => path,
            };
            Some(reading(path, false, r, exact_identity(r)))
        },
    },
    Model {
        name: "unicode-normalising (NFKC before routing)",
        read: |r| {
            let path: String = decode(&r.path)?.nfkc().collect();
            Some(reading(normalise(&path), true, r, exact_identity(r)))
        },
    },
    Model {
        name: "method override (Rails, Laravel, Express method-override)",
        read: |r| {
            let mut reading = reading(decode(&r.path)?, false, r, exact_identity(r));
            let overrides = [
                "x-http-method-override",
                "x-http-method",
                "x-method-override",
            ];
            if let Some(method) = overrides.iter().find_map(|name| r.folded(name).next()) {
                reading.method = method.to_ascii_uppercase();
            }
            Some(reading)
        },
    },
];

fn reading(path: String, fold_case: bool, request: &Forwarded, identity: Identity) -> Reading {
    Reading {
        path,
        fold_case,
        method: request.method.clone(),
        identity,
    }
}

fn exact_identity(request: &Forwarded) -> Identity {
    identity_of(request.exact("x-gateway-client"))
}

fn identity_of<'a>(values: impl Iterator<Item = &'a str>) -> Identity {
    let values: Vec<&str> = values.collect();
    match values.as_slice() {
        [] => Identity::None,
        [first, rest @ ..] if rest.iter().all(|v| v == first) => Identity::One(first.to_string()),
        _ => Identity::Ambiguous,
    }
}

/// Percent-decodes once; `None` for an invalid escape or non-UTF-8 (such a stack answers 400).
pub fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Drops `;…` from every segment.
pub fn strip_parameters(path: &str) -> String {
    segments_map(path, |s| {
        s.split(';').next().unwrap_or_default().to_string()
    })
}

/// Merges doubled slashes and resolves `.` and `..` (RFC 3986 §5.2.4), as nginx, servlet
/// containers and most routers do.
pub fn normalise(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            "" if !last => {}
            s => out.push(s),
        }
    }
    let trailing = matches!(segments.last(), Some(&"" | &"." | &".."));
    let mut path = format!("/{}", out.join("/"));
    if trailing && !path.ends_with('/') {
        path.push('/');
    }
    path
}

fn segments_map(path: &str, f: impl Fn(&str) -> String) -> String {
    path.split('/').map(f).collect::<Vec<_>>().join("/")
}

/// The route prefix (from `prefixes`, longest first wins) that `reading` falls under, compared
/// case-folded when the reader folds case.
pub fn route_of<'p>(prefixes: &[&'p str], reading: &Reading) -> Option<&'p str> {
    let fold = |s: &str| {
        if reading.fold_case {
            crate::target::fold(s)
        } else {
            s.to_string()
        }
    };
    let path = fold(&reading.path);
    let mut best: Option<&'p str> = None;
    for prefix in prefixes {
        let folded = fold(prefix);
        let under = match path.strip_prefix(folded.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/') || folded.ends_with('/'),
            None => false,
        };
        if under && best.is_none_or(|b| b.len() < prefix.len()) {
            best = Some(prefix);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, headers: &[(&str, &str)]) -> Forwarded {
        Forwarded {
            method: "GET".into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn model(name: &str) -> &'static Model {
        MODELS.iter().find(|m| m.name.starts_with(name)).unwrap()
    }

    #[test]
    fn the_models_reproduce_the_attacks_they_stand_for() {
        let prefixes = ["/", "/v1/public", "/v1/shipments"];
        let route = |name: &str, r: &Forwarded| {
            route_of(&prefixes, &(model(name).read)(r).unwrap()).unwrap()
        };
        let attack = request("/v1/public/..;/shipments/1", &[]);
        assert_eq!(route("strict", &attack), "/v1/public");
        assert_eq!(route("servlet", &attack), "/v1/shipments");
        assert_eq!(
            route("spring", &request("/v1/public/..%3b/shipments/1", &[])),
            "/v1/shipments"
        );
        assert_eq!(
            route(
                "iis",
                &request("/v1/public/x", &[("x-original-url", "/v1/shipments/1")])
            ),
            "/v1/shipments"
        );
        assert_eq!(
            route("iis", &request("/v1/public/%252e%252e/shipments", &[])),
            "/v1/shipments"
        );
        assert_eq!(
            route("case", &request("/V1/Shipments/1", &[])),
            "/v1/shipments"
        );
        assert_eq!(
            route("format", &request("/v1/shipments.json", &[])),
            "/v1/shipments"
        );
        assert_eq!(
            route("unicode", &request("/v1/%EF%BD%93hipments", &[])),
            "/v1/shipments"
        );
        let forged = request(
            "/v1/public",
            &[("x-gateway-client", "acme"), ("x_gateway_client", "globex")],
        );
        assert_eq!(
            (model("strict").read)(&forged).unwrap().identity,
            Identity::One("acme".into())
        );
        assert_eq!(
            (model("cgi").read)(&forged).unwrap().identity,
            Identity::Ambiguous
        );
        let overridden = request("/v1/public", &[("x-http-method-override", "delete")]);
        assert_eq!(
            (model("method").read)(&overridden).unwrap().method,
            "DELETE"
        );
    }

    #[test]
    fn normalise_table() {
        for (path, normalised) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../b", "/b"),
            ("/a/b/", "/a/b/"),
            ("/a/b/..", "/a/"),
        ] {
            assert_eq!(normalise(path), normalised, "{path}");
        }
    }
}
