//! Fuzz harnesses, shared by the cargo-fuzz targets in `fuzz/` and the corpus replay test that
//! `cargo test` runs. Each takes arbitrary bytes and panics only on a real bug. [`upstreams`]
//! holds the upstream models that the request-target harness and the differential test share.

pub mod upstreams;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use crate::config::Config;
use crate::json::{Document, JsonError, Kind, NodeId};
use crate::redact::{Action, Purpose, Rule};
use crate::redact::{HashKeys, Plan, Record, Relation};
use crate::vocabulary::Direction;

/// Rules the JSON harness applies: every `email` redacted, every `phone` removed, wherever they
/// are in the record.
static PLAN: LazyLock<Plan> = LazyLock::new(|| {
    let rules = vec![
        Arc::new(Rule::new("fuzz-email", "$..email", Action::Redact).expect("valid path")),
        Arc::new(Rule::new("fuzz-phone", "$..phone", Action::Remove).expect("valid path")),
    ];
    let records = vec![crate::redact::path::Path::compile("$").expect("valid path")];
    Plan::new(&records, None, &rules, Purpose::Fulfillment)
});

/// The strict reader and the redactor on arbitrary bytes, with two oracles. serde_json judges the
/// grammar ([`agrees_with_serde_json`]). The canaries judge the redaction: in the output no
/// `email` member keeps a value other than `"[REDACTED]"`, no `phone` member is left, the output
/// is strict JSON again, and redacting it again changes nothing.
pub fn json_redact(data: &[u8]) {
    let parsed = Document::parse(data);
    agrees_with_serde_json(data, &parsed);
    let Ok(doc) = parsed else {
        return;
    };
    let Ok(records) = PLAN.find_records(&doc).map(as_strangers) else {
        return;
    };
    let keys = HashKeys::default();
    let applied = PLAN.apply(
        &doc,
        Direction::Response,
        &records,
        Relation::NotController,
        &keys,
    );
    let output = if applied.edits.is_empty() {
        data.to_vec()
    } else {
        doc.render(&applied.edits)
    };
    let again = Document::parse(&output).expect("the redacted output is strict JSON");
    if !records.is_empty() {
        check_canaries(&again, 0);
    }
    let records = as_strangers(
        PLAN.find_records(&again)
            .expect("the output keeps the record shape"),
    );
    let second = PLAN.apply(
        &again,
        Direction::Response,
        &records,
        Relation::NotController,
        &keys,
    );
    let rerendered = if second.edits.is_empty() {
        output.clone()
    } else {
        again.render(&second.edits)
    };
    assert_eq!(rerendered, output, "redaction is idempotent");
}

/// serde_json, an independent reader, as the oracle of the strict reader's grammar. Read into
/// `IgnoredAny` (no values built, so numbers of any size and any nesting pass), it must accept
/// every document the strict reader accepts; where it accepts one the strict reader refuses, the
/// refusal must be one of the reader's deliberate extras (duplicate or control-character member
/// names, lone surrogates, bad UTF-8 inside strings, nesting deeper than the limit).
fn agrees_with_serde_json(data: &[u8], ours: &Result<Document<'_>, JsonError>) {
    let theirs = serde_json::from_slice::<serde::de::IgnoredAny>(data);
    match (ours, theirs) {
        (Ok(_), Err(error)) => panic!("serde_json refuses what the strict reader accepts: {error}"),
        (Err(refusal), Ok(_)) => assert!(
            matches!(
                refusal,
                JsonError::DuplicateKey(_)
                    | JsonError::ControlInKey(_)
                    | JsonError::LoneSurrogate(_)
                    | JsonError::InvalidUtf8(_)
                    | JsonError::TooDeep
            ),
            "the strict reader refuses what serde_json reads, for a reason of grammar: {refusal}"
        ),
        _ => {}
    }
}

/// Records as a caller who controls none of them sees them.
fn as_strangers(nodes: Vec<NodeId>) -> Vec<Record<'static>> {
    nodes
        .into_iter()
        .map(|node| Record {
            node,
            relation: Relation::NotController,
            controller: None,
        })
        .collect()
}

/// Walks the whole document: every `email` is redacted, no `phone` is left.
fn check_canaries(doc: &Document<'_>, node: NodeId) {
    if let Some(key) = doc.key(node) {
        assert_ne!(
            key,
            "phone",
            "a phone member survived at {}",
            doc.path_of(node)
        );
        if key == "email" {
            assert_eq!(
                doc.raw(node),
                b"\"[REDACTED]\"",
                "an email survived at {}",
                doc.path_of(node)
            );
            return;
        }
    }
    if matches!(doc.node(node).kind, Kind::Object | Kind::Array) {
        for child in doc.children(node) {
            check_canaries(doc, child);
        }
    }
}

/// The config loader on arbitrary text: it answers a config or one error sentence, never panics,
/// and never puts a secret into an error.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env =
        |name: &str| (name == "FUZZ_SECRET").then(|| "fuzz-secret-value-0123456789".to_string());
    match Config::from_toml(Path::new("/nonexistent/fuzz/gateway.toml"), text, &env) {
        Ok(config) => {
            let shown = format!("{config:?}");
            assert!(
                !shown.contains("fuzz-secret-value"),
                "a secret in Debug output"
            );
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty());
            assert!(!message.contains("fuzz-secret-value"), "{message}");
        }
    }
}

/// The route table the request-target harness judges against: an inspected route, passthrough
/// and unauthenticated routes beside it, a catch-all, a route with path parameters, one that
/// allows routing overrides and one whose upstream matches paths case-sensitively.
const TARGET_CONFIG: &str = r#"
[listen]
address = "127.0.0.1:0"
tls = false
[keys]
tag_key = "fuzz-tag-key-0123456789"
[store]
backend = "memory"
[[upstream]]
name = "api"
url = "http://127.0.0.1:9"
[[upstream]]
name = "exact"
url = "http://127.0.0.1:9"
path_case = "sensitive"
[[route]]
name = "root"
path_prefix = "/"
upstream = "api"
auth = "none"
[[route]]
name = "public"
path_prefix = "/v1/public"
upstream = "api"
auth = "none"
[[route]]
name = "shipments"
path_prefix = "/v1/shipments"
upstream = "api"
records = ["$"]
[[route]]
name = "labels"
path_prefix = "/v1/labels"
upstream = "api"
path_parameters = true
[[route]]
name = "legacy"
path_prefix = "/v1/legacy"
upstream = "api"
allow_override_headers = ["x-original-url", "x-http-method-override"]
[[route]]
name = "exact"
path_prefix = "/v1/Exact"
upstream = "exact"
"#;

static TARGET_CONFIGS: LazyLock<[Config; 3]> = LazyLock::new(|| {
    let load = |underscores: &str| {
        let text = TARGET_CONFIG.replace(
            "tls = false",
            &format!("tls = false\nheaders_with_underscores = \"{underscores}\""),
        );
        Config::from_toml(Path::new("/nonexistent/fuzz/gateway.toml"), &text, &|_| {
            None
        })
        .expect("the harness config loads")
    };
    [load("drop"), load("refuse"), load("allow")]
});

/// The request-target and header normalisation on an arbitrary request head, with the upstream
/// models of [`upstreams`] as the oracle. The first line is the path, each further line a
/// `name: value` header; the first byte picks the underscore policy. Whatever the gateway would
/// forward, every model must route to the route it judged, believe the identity it set and act
/// on the method it saw.
pub fn request_target(data: &[u8]) {
    let Some((&policy, data)) = data.split_first() else {
        return;
    };
    let config = &TARGET_CONFIGS[usize::from(policy % 3)];
    let mut lines = data.split(|b| *b == b'\n');
    let Ok(target) = http::uri::PathAndQuery::try_from(lines.next().unwrap_or_default()) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            return;
        };
        headers.append(name, value);
    }
    let path = target.path();
    let Ok(Some(route)) = config.judge(path) else {
        return;
    };
    if crate::proxy::screen_request(config, route, &mut headers).is_err() {
        return;
    }
    let peer = crate::proxy::client_address::Peer {
        ip: std::net::Ipv4Addr::LOCALHOST.into(),
        tls: true,
        ambiguous_framing: Arc::default(),
        client_cert: None,
    };
    let forwarding = crate::proxy::client_address::client_address(
        &headers,
        peer.ip,
        &config.listen.client_address,
    );
    let request_id = http::HeaderValue::from_static("fuzz");
    crate::proxy::forwarding::forward_request_headers(
        &mut headers,
        Some("acme"),
        &request_id,
        &peer,
        &forwarding,
        None,
    );
    let forwarded = upstreams::Forwarded {
        method: "GET".into(),
        path: path.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    let prefixes: Vec<&str> = config
        .routes
        .iter()
        .map(|r| r.path_prefix.as_str())
        .collect();
    let overrides_method = !route.allowed_overrides.is_empty();
    for model in upstreams::MODELS {
        let Some(reading) = (model.read)(&forwarded) else {
            continue;
        };
        if reading.fold_case && !route.fold_case {
            continue;
        }
        assert_eq!(
            upstreams::route_of(&prefixes, &reading),
            Some(route.path_prefix.as_str()),
            "{}: {path:?} read as {:?}",
            model.name,
            reading.path
        );
        assert_eq!(
            reading.identity,
            upstreams::Identity::One("acme".into()),
            "{}: {path:?}",
            model.name
        );
        if !overrides_method {
            assert_eq!(reading.method, "GET", "{}: {path:?}", model.name);
        }
    }
}
