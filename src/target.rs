//! The request target, read once: the canonical-path rules and the lenient readings of upstreams.
//!
//! The gateway judges a request (route, authentication, inspection) by its path. The upstream then
//! routes the same bytes by its own reading, and real stacks read paths loosely: servlet containers
//! drop `;` path parameters and resolve `..`, IIS turns `\` into `/` and trims trailing dots,
//! frameworks decode twice, fold case or strip a `.json` suffix. Wherever two readings could
//! differ, every guarantee of the gateway is void. So a path is accepted only when it is already
//! canonical ([`check`]): each of those readings could only change it in ways [`lenient_readings`]
//! lists, and the route table checks that none of those changes the route
//! ([`crate::config::Config::judge`]).
//!
//! A double-encoded escape (`%252e`) is refused: decoded once it is the text `%2e`, which a
//! second decoder (a chained proxy, IIS with double escaping, a framework decoding what the
//! container already decoded) turns into a dot or a separator. Legitimate clients have no reason
//! to put a literal `%XX` in a path segment.
//!
//! Everything here is a pure function of the path, so it is table-tested below and fuzzed
//! (`fuzz/fuzz_targets/request_target.rs`).

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// Why a path is not canonical. Each becomes the `reason` label of `gateway_blocked_total`; the
/// client gets `invalid_path` with [`PathFlaw::message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathFlaw {
    /// Not origin-form (`*`, empty, or not starting with `/`).
    NotOrigin,
    /// A byte RFC 3986 does not allow raw in a path (`"`, `{`, `|`, non-ASCII…): it must be
    /// percent-encoded, and readers disagree on what they do with it raw.
    Character,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// Percent-decoded bytes that are not UTF-8 (overlong forms such as `%c0%ae` included).
    NonUtf8,
    /// A control character, raw or encoded (`%00`, `%0a`…).
    Control,
    /// `%2f` or `%5c`: a separator some readers decode and some do not.
    EncodedSeparator,
    /// A raw `\`, which Windows stacks read as `/`.
    Backslash,
    /// `.` or `..` in any disguise: encoded, with path parameters, trailing dots or spaces.
    DotSegment,
    /// `//`, or a segment some readers trim to nothing: readers that merge slashes differ.
    EmptySegment,
    /// A `;` path parameter, raw or encoded, on a route that does not allow them.
    Parameter,
    /// `%25` followed by two hex digits: an escape a second decoder would decode.
    DoubleEncoded,
    /// An encoded letter, digit or `-._~`: the canonical form has them raw, and a reader that
    /// decodes before routing would see another path than one that does not.
    EncodedUnreserved,
    /// A character whose Unicode compatibility form is a delimiter (fullwidth `．` or `／`…).
    CompatibilityForm,
    /// Canonical, but a lenient upstream (case folding, suffix stripping…) would route it to
    /// another route than the gateway does.
    Variant,
}

impl PathFlaw {
    /// Every flaw, for registering each metric series at 0.
    pub const ALL: [PathFlaw; 14] = [
        PathFlaw::NotOrigin,
        PathFlaw::Character,
        PathFlaw::BadEscape,
        PathFlaw::NonUtf8,
        PathFlaw::Control,
        PathFlaw::EncodedSeparator,
        PathFlaw::Backslash,
        PathFlaw::DotSegment,
        PathFlaw::EmptySegment,
        PathFlaw::Parameter,
        PathFlaw::DoubleEncoded,
        PathFlaw::EncodedUnreserved,
        PathFlaw::CompatibilityForm,
        PathFlaw::Variant,
    ];

    /// The `reason` label of `gateway_blocked_total`.
    pub fn reason(self) -> &'static str {
        match self {
            PathFlaw::NotOrigin => "path_not_origin",
            PathFlaw::Character => "path_character",
            PathFlaw::BadEscape => "path_bad_escape",
            PathFlaw::NonUtf8 => "path_non_utf8",
            PathFlaw::Control => "path_control",
            PathFlaw::EncodedSeparator => "path_encoded_separator",
            PathFlaw::Backslash => "path_backslash",
            PathFlaw::DotSegment => "path_dot_segment",
            PathFlaw::EmptySegment => "path_empty_segment",
            PathFlaw::Parameter => "path_parameter",
            PathFlaw::DoubleEncoded => "path_double_encoded",
            PathFlaw::EncodedUnreserved => "path_encoded_unreserved",
            PathFlaw::CompatibilityForm => "path_compatibility_form",
            PathFlaw::Variant => "path_variant",
        }
    }

    /// The sentence the client reads (never the path itself).
    pub fn message(self) -> &'static str {
        match self {
            PathFlaw::NotOrigin => "The request target must be an absolute path.",
            PathFlaw::Character => {
                "The request path contains a character that must be percent-encoded."
            }
            PathFlaw::BadEscape => "The request path contains an invalid percent-escape.",
            PathFlaw::NonUtf8 => "The request path does not decode to UTF-8.",
            PathFlaw::Control => "The request path contains a control character.",
            PathFlaw::EncodedSeparator => {
                "The request path contains an encoded slash or backslash."
            }
            PathFlaw::Backslash => "The request path contains a backslash.",
            PathFlaw::DotSegment => "The request path contains a `.` or `..` segment.",
            PathFlaw::EmptySegment => "The request path contains an empty segment (`//`).",
            PathFlaw::Parameter => "This route does not accept `;` path parameters.",
            PathFlaw::DoubleEncoded => "The request path contains a double-encoded escape.",
            PathFlaw::EncodedUnreserved => {
                "The request path percent-encodes a letter, digit or `-._~`; send it unencoded."
            }
            PathFlaw::CompatibilityForm => {
                "The request path contains a compatibility form of a delimiter (e.g. a fullwidth dot)."
            }
            PathFlaw::Variant => {
                "The request path differs from a protected route's only in case, a suffix or trailing \
                 dots; send the route's canonical path."
            }
        }
    }
}

/// Delimiters a compatibility form must not turn into (NFKC of `．` is `.`, of `／` is `/`).
const DELIMITERS: &[char] = &['.', '/', '\\', ';', '%', '?', '#'];

/// Checks that `path` is canonical; `parameters` allows `;` path parameters (the route's
/// `path_parameters`). On success returns the percent-decoded path, which every reader agrees on.
pub fn check(path: &str, parameters: bool) -> Result<Cow<'_, str>, PathFlaw> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathFlaw::NotOrigin);
    }
    let mut decoded: Option<Vec<u8>> = None;
    // Reported after the segment checks, so `%2e%2e` counts as the dot segment it is.
    let mut encoded_unreserved = false;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let value = if byte == b'%' {
            let (Some(high), Some(low)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) else {
                return Err(PathFlaw::BadEscape);
            };
            let value = high << 4 | low;
            match value {
                b'/' | b'\\' => return Err(PathFlaw::EncodedSeparator),
                b'%' if bytes.get(i + 3).is_some_and(|b| hex(*b).is_some())
                    && bytes.get(i + 4).is_some_and(|b| hex(*b).is_some()) =>
                {
                    return Err(PathFlaw::DoubleEncoded);
                }
                b';' if !parameters => return Err(PathFlaw::Parameter),
                _ => encoded_unreserved |= is_unreserved(value),
            }
            decoded.get_or_insert_with(|| bytes[..i].to_vec());
            i += 3;
            value
        } else {
            match byte {
                b'\\' => return Err(PathFlaw::Backslash),
                b';' if !parameters => return Err(PathFlaw::Parameter),
                _ if byte < 0x20 || byte == 0x7f => return Err(PathFlaw::Control),
                _ if !is_path_char(byte) => return Err(PathFlaw::Character),
                _ => {}
            }
            i += 1;
            byte
        };
        if value < 0x20 || value == 0x7f {
            return Err(PathFlaw::Control);
        }
        if let Some(decoded) = &mut decoded {
            decoded.push(value);
        }
    }
    let decoded = match decoded {
        None => Cow::Borrowed(path),
        Some(bytes) => Cow::Owned(String::from_utf8(bytes).map_err(|_| PathFlaw::NonUtf8)?),
    };
    if !decoded.is_ascii() {
        let disguised = decoded
            .chars()
            .filter(|c| !c.is_ascii())
            .any(|c| std::iter::once(c).nfkc().any(|n| DELIMITERS.contains(&n)));
        if disguised {
            return Err(PathFlaw::CompatibilityForm);
        }
    }
    let mut segments = decoded.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        // A path parameter is no part of the name servlet containers match.
        let name = segment.split(';').next().unwrap_or_default();
        let trimmed = name.trim_end_matches([' ', '.']);
        if trimmed.is_empty() {
            if name.contains('.') {
                return Err(PathFlaw::DotSegment);
            }
            // Only the last segment may be empty: a trailing slash.
            if segments.peek().is_some() || !segment.is_empty() {
                return Err(PathFlaw::EmptySegment);
            }
        }
    }
    if encoded_unreserved {
        return Err(PathFlaw::EncodedUnreserved);
    }
    Ok(decoded)
}

/// RFC 3986 `pchar` (less `%`, handled by the caller) and `/`.
fn is_path_char(byte: u8) -> bool {
    is_unreserved(byte) || b"!$&'()*+,;=:@/".contains(&byte)
}

/// RFC 3986 `unreserved`: the characters a canonical path never encodes.
pub fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// One way a lenient upstream reads a canonical, decoded path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The path as that upstream routes it.
    pub path: String,
    /// Whether it folded case, so route prefixes must be compared folded too.
    pub folded: bool,
}

/// The readings of `decoded` (a path [`check`] accepted) that differ from it, as lenient
/// upstreams make them: `;` parameters dropped (servlet containers, Spring), trailing dots and
/// spaces trimmed from segments (IIS and Windows), a format suffix dropped from the last segment
/// (Spring's suffix patterns, Rails formats), compatibility forms normalised (NFKC), case folded
/// (when `fold_case`: ASP.NET, Express, Java's `equalsIgnoreCase`, so `ſ` and the Kelvin sign
/// fold to `s` and `k`), and all of them at once. Without `fold_case`, empty for the plain paths
/// most APIs use.
pub fn lenient_readings(decoded: &str, fold_case: bool) -> Vec<Reading> {
    let mut readings: Vec<Reading> = Vec::new();
    // A folded reading counts even when folding leaves the path as it is: it is then compared
    // with folded route prefixes, and `/v1/exact` falls under a prefix `/v1/Exact`.
    let mut add = |path: String, folded: bool| {
        if (folded || path != decoded)
            && !readings
                .iter()
                .any(|r| r.path == path && r.folded == folded)
        {
            readings.push(Reading { path, folded });
        }
    };
    // Each reading only where it can change something: most API paths need none or one.
    let parameters = decoded.contains(';');
    let dots = decoded.contains(['.', ' ']);
    let unicode = !decoded.is_ascii();
    if parameters {
        add(
            map_segments(decoded, |s| s.split(';').next().unwrap_or_default()),
            false,
        );
    }
    if dots {
        add(
            map_segments(decoded, |s| s.trim_end_matches([' ', '.'])),
            false,
        );
        add(without_suffix(decoded), false);
    }
    let normalised: Cow<'_, str> = if unicode {
        let normalised: String = decoded.nfkc().collect();
        add(normalised.clone(), false);
        Cow::Owned(normalised)
    } else {
        Cow::Borrowed(decoded)
    };
    let all: Cow<'_, str> = if parameters || dots || unicode {
        let all = without_suffix(&map_segments(&normalised, |s| {
            s.split(';')
                .next()
                .unwrap_or_default()
                .trim_end_matches([' ', '.'])
        }));
        add(all.clone(), false);
        Cow::Owned(all)
    } else {
        Cow::Borrowed(decoded)
    };
    if fold_case {
        add(fold(decoded), true);
        add(fold(&all), true);
    }
    readings
}

/// Full case folding as case-insensitive routers apply it (upper, then lower).
pub fn fold(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        text.to_uppercase().to_lowercase()
    }
}

fn map_segments(path: &str, f: impl Fn(&str) -> &str) -> String {
    path.split('/').map(f).collect::<Vec<_>>().join("/")
}

/// The path without a `.ext` suffix on its last segment (kept when nothing precedes the dot).
fn without_suffix(path: &str) -> String {
    let start = path.rfind('/').map_or(0, |i| i + 1);
    match path[start..].rfind('.') {
        Some(dot) if dot > 0 => path[..start + dot].to_string(),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass_and_decode() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/v1/shipments", "/v1/shipments"),
            ("/v1/shipments/", "/v1/shipments/"),
            (
                "/v1/shipments/1ZACME0000000001",
                "/v1/shipments/1ZACME0000000001",
            ),
            ("/v1/r/jane%40example.com", "/v1/r/jane@example.com"),
            ("/v1/a%20b", "/v1/a b"),
            ("/v1/caf%C3%A9", "/v1/café"),
            ("/v1/x:batch", "/v1/x:batch"),
            ("/v1/.well-known", "/v1/.well-known"),
            ("/v1/file.json", "/v1/file.json"),
            ("/v1/a..b", "/v1/a..b"),
            ("/v1/%25", "/v1/%"),
            ("/v1/%25zz", "/v1/%zz"),
        ];
        for (path, decoded) in cases {
            assert_eq!(check(path, false).as_deref(), Ok(*decoded), "{path}");
        }
    }

    #[test]
    fn non_canonical_paths_are_refused_with_their_reason() {
        use PathFlaw::*;
        let cases: &[(&str, PathFlaw)] = &[
            ("", NotOrigin),
            ("*", NotOrigin),
            ("v1/x", NotOrigin),
            ("/v1/public/..;/shipments/1", Parameter),
            ("/v1/public/%2e%2E/shipments", DotSegment),
            ("/v1/public/%2E./x", DotSegment),
            ("/v1/public/../x", DotSegment),
            ("/v1/./x", DotSegment),
            ("/v1/x/..", DotSegment),
            ("/v1/.../x", DotSegment),
            ("/v1/..%20/x", DotSegment),
            ("/v1/. /x", Character),
            ("/v1/%2e%20/x", DotSegment),
            ("/v1/public/..%3b/x", Parameter),
            ("/v1/public/..%3B/x", Parameter),
            ("/v1/a;b", Parameter),
            ("/v1/public%2Fx", EncodedSeparator),
            ("/v1/public%2fx", EncodedSeparator),
            ("/v1/public%5c..%5cx", EncodedSeparator),
            ("/v1/public\\..\\x", Backslash),
            ("/v1//x", EmptySegment),
            ("//v1/x", EmptySegment),
            ("/v1/%20/x", EmptySegment),
            ("/v1/%00", Control),
            ("/v1/%0a", Control),
            ("/v1/%7f", Control),
            ("/v1/%", BadEscape),
            ("/v1/%2", BadEscape),
            ("/v1/%zz", BadEscape),
            ("/v1/%c0%ae%c0%ae/x", NonUtf8),
            ("/v1/%ff", NonUtf8),
            ("/v1/%252e%252e/x", DoubleEncoded),
            ("/v1/%252F", DoubleEncoded),
            ("/v1/%73hipments", EncodedUnreserved),
            ("/v1/%2E", DotSegment),
            ("/v1/a%2Ejson", EncodedUnreserved),
            ("/v1/%7e", EncodedUnreserved),
            ("/v1/%EF%BC%8E%EF%BC%8E/x", CompatibilityForm),
            ("/v1/%EF%BC%8Fx", CompatibilityForm),
            ("/v1/\"x\"", Character),
            ("/v1/{x}", Character),
            ("/v1/a|b", Character),
            ("/v1/é", Character),
        ];
        for (path, flaw) in cases {
            assert_eq!(check(path, false), Err(*flaw), "{path}");
        }
    }

    #[test]
    fn path_parameters_where_allowed_still_hide_no_dot_segment() {
        assert_eq!(check("/v1/a;v=1/b", true).as_deref(), Ok("/v1/a;v=1/b"));
        assert_eq!(check("/v1/a%3bv=1", true).as_deref(), Ok("/v1/a;v=1"));
        for path in ["/v1/..;/x", "/v1/..;x=1/x", "/v1/.%3b/x", "/v1/..%3Bx/y"] {
            assert_eq!(check(path, true), Err(PathFlaw::DotSegment), "{path}");
        }
        assert_eq!(check("/v1/;x/y", true), Err(PathFlaw::EmptySegment));
    }

    #[test]
    fn lenient_readings_table() {
        let paths = |decoded: &str, fold_case: bool| -> Vec<String> {
            lenient_readings(decoded, fold_case)
                .into_iter()
                .map(|r| r.path)
                .collect()
        };
        assert!(paths("/v1/shipments/123", false).is_empty());
        assert!(paths("/v1/shipments/ABC", false).is_empty());
        assert_eq!(paths("/v1/shipments/ABC", true), ["/v1/shipments/abc"]);
        // Folded, even though folding changes nothing: prefixes are compared folded too.
        assert_eq!(
            lenient_readings("/v1/exact/x", true),
            [Reading {
                path: "/v1/exact/x".into(),
                folded: true
            }]
        );
        assert_eq!(paths("/v1/shipments.json", false), ["/v1/shipments"]);
        assert_eq!(paths("/v1/shipments./1", false), ["/v1/shipments/1"]);
        assert_eq!(paths("/v1/shipments /1", false), ["/v1/shipments/1"]);
        assert_eq!(paths("/v1/shipments;v=2/1", false), ["/v1/shipments/1"]);
        assert!(
            paths("/V1/ſhipments/1", true).contains(&"/v1/shipments/1".to_string()),
            "long s folds to s"
        );
        assert!(
            paths("/v1/\u{212a}ey", true).contains(&"/v1/key".to_string()),
            "Kelvin sign folds to k"
        );
        assert!(paths("/v1/ｓhipments", false).contains(&"/v1/shipments".to_string()));
        assert_eq!(paths("/v1/.well-known", false), Vec::<String>::new());
    }
}
