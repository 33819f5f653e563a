//! Upstream equivalence, differentially: the upstream must read exactly the request the gateway
//! judged. Generated path and header mutations of requests to inspected, passthrough and public
//! routes go through the real gateway over TLS to a raw recording upstream. For every request
//! the gateway forwards, every upstream model of `recipient_gateway::fuzzing::upstreams`
//! (servlet, Spring, IIS/Symfony, CGI/WSGI, case-insensitive, format suffixes, NFKC, method
//! override) must route it to the route the gateway judged, believe the identity the gateway
//! authenticated and act on the method the gateway saw. A refused request must reach no upstream
//! and be a JSON error counted in `gateway_blocked_total`. Fixed seed and a bounded number of
//! cases; `EQUIVALENCE_CASES=5000` runs more.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    client::{empty, read_until_close, write_all},
    config::{Edit, KEY_ACME, KEY_GLOBEX, base_config},
    gateway::TestGateway,
    harness::fixed_runner,
    upstream::MockUpstream,
};
use http::Request;
use proptest::prelude::*;
use recipient_gateway::fuzzing::upstreams::{self, Forwarded, Identity, MODELS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The application's routes: name and prefix. Each has its own upstream base path
/// (`/_r/<name>`), so the recorder knows which route the gateway judged.
const ROUTES: [(&str, &str); 6] = [
    ("root", "/"),
    ("public", "/v1/public"),
    ("shipments", "/v1/shipments"),
    ("labels", "/v1/labels"),
    ("legacy", "/v1/legacy"),
    ("exact", "/v1/Exact"),
];

/// A request as the raw upstream recorded it, with the route the gateway sent it for.
#[derive(Debug, Clone)]
struct Recorded {
    route: String,
    forwarded: Forwarded,
}

/// An upstream that records every request head byte for byte (parsed with httparse, so nothing
/// that a stricter HTTP server would reject is missed) and answers `{}`.
struct Recorder {
    addr: SocketAddr,
    /// By `X-Request-Id`.
    seen: Arc<Mutex<HashMap<String, Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<HashMap<String, Recorded>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        while let Some(end) = find_head_end(&buffer) {
                            let head: Vec<u8> = buffer.drain(..end).collect();
                            record(&head, &log);
                            let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                          content-length: 2\r\n\r\n{}";
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Recorder { addr, seen, task }
    }

    fn take(&self, request_id: &str) -> Option<Recorded> {
        self.seen.lock().unwrap().remove(request_id)
    }
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn record(head: &[u8], log: &Mutex<HashMap<String, Recorded>>) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = request.parse(head) else {
        panic!("the gateway sent a request head httparse cannot read: {head:?}");
    };
    let target = request.path.unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    let (route, rest) = path
        .strip_prefix("/_r/")
        .and_then(|p| p.split_once('/').map(|(r, rest)| (r, format!("/{rest}"))))
        .expect("every upstream has a /_r/<route> base path");
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let id = headers
        .iter()
        .find(|(n, _)| n == "x-request-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    log.lock().unwrap().insert(
        id,
        Recorded {
            route: route.to_string(),
            forwarded: Forwarded {
                method: request.method.unwrap_or_default().to_string(),
                path: rest,
                headers,
            },
        },
    );
}

fn config(recorder: SocketAddr, underscores: &str) -> impl FnOnce(String) -> String {
    move |base| {
        let mut text = base.replacen(
            "[listen]\n",
            &format!("[listen]\nheaders_with_underscores = \"{underscores}\"\n"),
            1,
        );
        for (name, prefix) in ROUTES {
            let case = if name == "exact" {
                "path_case = \"sensitive\""
            } else {
                ""
            };
            let extra = match name {
                "root" | "public" => "auth = \"none\"",
                "shipments" => "records = [\"$\"]",
                "labels" => "path_parameters = true",
                "legacy" => "allow_override_headers = [\"x-original-url\"]",
                _ => "",
            };
            text.push_str(&format!(
                "\n[[upstream]]\nname = \"u-{name}\"\nurl = \"http://{recorder}/_r/{name}\"\n{case}\n\
                 \n[[route]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"u-{name}\"\n{extra}\n"
            ));
        }
        text
    }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    path: String,
    headers: Vec<(String, String)>,
    key: Option<&'static str>,
}

/// Segments an attacker inserts: dot segments in every disguise, separators, encodings.
const SEGMENTS: &[&str] = &[
    "..",
    ".",
    "%2e%2e",
    "%2E.",
    "..;",
    "..;x=1",
    "..%3b",
    "..%3B",
    "%252e%252e",
    "..%20",
    "...",
    "",
    "..%5c",
    "..\\",
    "a%2fb",
    "%00",
    "%c0%ae%c0%ae",
    "%EF%BC%8E%EF%BC%8E",
    "shipments",
    "v1",
    "%73hipments",
    "Shipments",
    "SHIPMENTS",
    "shipments.json",
    "shipments.",
    "%EF%BD%93hipments",
    "\u{17f}hipments",
    "%C5%BFhipments",
    "%25",
    "%zz",
    "1ZACME01",
    "Exact",
    "exact",
];

/// Headers an attacker adds: forged identities, routing overrides, forwarding claims.
const HEADERS: &[(&str, &str)] = &[
    ("X_Gateway_Client", "globex"),
    ("X-Gateway_Client", "globex"),
    ("x-gateway-client", "globex"),
    ("X.Gateway.Client", "globex"),
    ("X-Original-URL", "/v1/shipments/1ZACME01"),
    ("X-Rewrite-URL", "/v1/shipments/1ZACME01"),
    ("X_Original_URL", "/v1/shipments/1ZACME01"),
    ("X-Original-URL", "/v1/legacy/other"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Method-Override", "DELETE"),
    ("X_HTTP_Method_Override", "DELETE"),
    ("X-Forwarded-For", "6.6.6.6"),
    ("X_Forwarded_For", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6"),
    ("X-Real-IP", "6.6.6.6"),
    ("X-Forwarded-Client-Cert", "Hash=00;Subject=\"CN=admin\""),
    ("X_Api_Key", KEY_GLOBEX),
    ("X-Custom_Header", "1"),
];

fn case() -> impl Strategy<Value = Case> {
    let base = prop_oneof![
        Just("/v1/shipments/1ZACME01"),
        Just("/v1/public/status"),
        Just("/v1/labels/L1"),
        Just("/v1/legacy/a"),
        Just("/v1/Exact/a"),
        Just("/v1/exact/a"),
        Just("/other/x"),
    ];
    let mutation = prop_oneof![
        (0usize..4, prop::sample::select(SEGMENTS)).prop_map(|(at, s)| (0u8, at, s.to_string())),
        (0usize..4).prop_map(|at| (1u8, at, ";v=1".to_string())),
        (0usize..4).prop_map(|at| (2u8, at, String::new())),
        (
            0usize..4,
            prop::sample::select(&[".json", ".", "%20", ".%20"][..])
        )
            .prop_map(|(at, s)| (3u8, at, s.to_string())),
    ];
    (
        base,
        prop::collection::vec(mutation, 0..3),
        prop::collection::vec(prop::sample::select(HEADERS), 0..3),
        prop_oneof![Just(None), Just(Some(KEY_ACME)), Just(Some(KEY_GLOBEX))],
    )
        .prop_map(|(base, mutations, headers, key)| {
            let mut segments: Vec<String> = base.split('/').skip(1).map(str::to_string).collect();
            for (kind, at, text) in mutations {
                let at = at % segments.len();
                match kind {
                    0 => segments.insert(at, text),
                    2 => segments[at] = segments[at].to_uppercase(),
                    _ => segments[at].push_str(&text),
                }
            }
            Case {
                path: format!("/{}", segments.join("/")),
                headers: headers
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                key,
            }
        })
}

/// What the gateway answered: status and, for its own errors, the code.
struct Answer {
    status: u16,
    code: Option<String>,
}

async fn send(gw: &TestGateway, case: &Case, request_id: &str) -> Answer {
    let mut head = format!("GET {} HTTP/1.1\r\nHost: localhost\r\n", case.path);
    for (name, value) in &case.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(key) = case.key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    head.push_str(&format!(
        "X-Request-Id: {request_id}\r\nConnection: close\r\n\r\n"
    ));
    let mut stream = gw.raw().await;
    write_all(&mut stream, head.as_bytes()).await;
    let answer = read_until_close(&mut stream, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let code = text
        .split("\"code\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string);
    Answer { status, code }
}

/// Checks one forwarded request against every model.
fn check_models(case: &Case, recorded: &Recorded) -> Result<(), TestCaseError> {
    let prefixes: Vec<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    let judged = ROUTES
        .iter()
        .find(|(name, _)| *name == recorded.route)
        .map(|(_, prefix)| *prefix)
        .unwrap();
    let expected_identity = match case.key {
        Some(KEY_ACME) => Identity::One("acme".into()),
        Some(_) => Identity::One("globex".into()),
        None => Identity::None,
    };
    let forwarded = &recorded.forwarded;
    for model in MODELS {
        let Some(reading) = (model.read)(forwarded) else {
            continue;
        };
        // A case-sensitive upstream is, by its declaration, not a case-folding one.
        if reading.fold_case && recorded.route == "exact" {
            continue;
        }
        prop_assert_eq!(
            upstreams::route_of(&prefixes, &reading),
            Some(judged),
            "{}: {:?} forwarded as {:?} for route {}, read as {:?}",
            model.name,
            case,
            forwarded.path,
            recorded.route,
            reading.path
        );
        prop_assert_eq!(
            &reading.identity,
            &expected_identity,
            "{}: {:?}",
            model.name,
            case
        );
        prop_assert_eq!(&reading.method, "GET", "{}: {:?}", model.name, case);
    }
    // The gateway alone says who the client is.
    let forwarded_for: Vec<&str> = forwarded.exact("x-forwarded-for").collect();
    prop_assert_eq!(forwarded_for, vec!["127.0.0.1"]);
    for claim in ["forwarded", "x-real-ip", "x-forwarded-client-cert"] {
        prop_assert!(
            forwarded.folded(claim).next().is_none(),
            "{claim} forwarded"
        );
    }
    Ok(())
}

fn run_differential(underscores: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (recorder, gw) = runtime.block_on(async {
        let recorder = Recorder::start().await;
        let gw = TestGateway::start_with(
            MockUpstream::start().await,
            config(recorder.addr, underscores),
        )
        .await;
        (recorder, gw)
    });
    let (mut runner, cases) = fixed_runner("EQUIVALENCE_CASES", 400);
    let counter = AtomicU64::new(0);
    let forwarded: Mutex<HashMap<String, u64>> = Mutex::default();
    let refused: Mutex<HashMap<String, u64>> = Mutex::default();
    let count = |map: &Mutex<HashMap<String, u64>>, key: &str| {
        *map.lock().unwrap().entry(key.to_string()).or_default() += 1;
    };
    let result = runner.run(&case(), |case| {
        let id = format!(
            "eq-{underscores}-{}",
            counter.fetch_add(1, Ordering::Relaxed)
        );
        let answer = runtime.block_on(send(&gw, &case, &id));
        let recorded = recorder.take(&id);
        match (&answer.code, recorded) {
            (Some(code), None) => {
                // Refused: a JSON error, and nothing reached any upstream.
                prop_assert!(answer.status >= 400, "{:?}", case);
                count(&refused, code);
            }
            (None, None) if answer.status == 400 => {
                // hyper's own refusal of a request line it cannot parse.
                count(&refused, "http_parser");
            }
            (None, Some(recorded)) => {
                prop_assert_eq!(answer.status, 200);
                check_models(&case, &recorded)?;
                count(&forwarded, &recorded.route);
            }
            (code, recorded) => {
                prop_assert!(
                    false,
                    "{:?}: status {} code {:?} but upstream saw {:?}",
                    case,
                    answer.status,
                    code,
                    recorded
                );
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let (forwarded, refused) = (
        forwarded.into_inner().unwrap(),
        refused.into_inner().unwrap(),
    );
    eprintln!(
        "upstream equivalence ({underscores}): {cases} cases; forwarded by route {forwarded:?}; refused by code {refused:?}"
    );
    // The generator reaches both outcomes on every kind of route, or the test proves nothing.
    for (name, _) in ROUTES {
        assert!(forwarded.contains_key(name), "no case forwarded to {name}");
    }
    for code in ["invalid_path", "unauthorized"] {
        assert!(refused.contains_key(code), "no case refused with {code}");
    }
    let metrics = runtime.block_on(gw.metrics());
    for reason in ["path_dot_segment", "path_parameter", "path_variant"] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "gateway_blocked_total has no {reason}"
        );
    }
}

#[test]
fn every_upstream_model_reads_what_the_gateway_judged_with_underscores_dropped() {
    run_differential("drop");
}

#[test]
fn every_upstream_model_reads_what_the_gateway_judged_with_underscores_allowed() {
    run_differential("allow");
}

/// The routes of the attacks named in the hardening guide: an unauthenticated passthrough next
/// to an inspected route, a catch-all, and a route that allows one URL override.
fn attack_routes(catch_all_case: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "catch-all"
url = "http://{{mock}}"
path_case = "{catch_all_case}"

[[route]]
name = "root"
path_prefix = "/"
upstream = "catch-all"
auth = "none"

[[route]]
name = "public"
path_prefix = "/v1/public"
upstream = "mock"
auth = "none"

[[route]]
name = "shipments"
path_prefix = "/v1/shipments"
upstream = "mock"
records = ["$"]

[[route]]
name = "legacy"
path_prefix = "/v1/legacy"
upstream = "mock"
allow_override_headers = ["X-Original-URL"]
"#
    )
}

async fn attack_gateway(listen: &str, catch_all_case: &str) -> TestGateway {
    let (listen, routes) = (listen.to_string(), attack_routes(catch_all_case));
    let upstream = MockUpstream::start().await;
    let mock = upstream.addr;
    TestGateway::start_with(upstream, move |base| {
        format!(
            "{}{}",
            base.replacen("[listen]\n", &format!("[listen]\n{listen}\n"), 1),
            routes.edit("{mock}", &mock.to_string())
        )
    })
    .await
}

/// Sends a raw GET with extra header lines; returns the status and the error code, if any.
async fn raw_get(gw: &TestGateway, path: &str, headers: &str) -> (u16, Option<String>) {
    let case = Case {
        path: path.to_string(),
        headers: headers
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        key: None,
    };
    let answer = send(gw, &case, "attack").await;
    (answer.status, answer.code)
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_behind_path_parameters_never_reach_an_upstream() {
    let gw = attack_gateway("", "insensitive").await;
    for (path, reason) in [
        ("/v1/public/..;/shipments/1", "path_parameter"),
        ("/v1/public/..;x=1/shipments/1", "path_parameter"),
        ("/v1/public/..%3b/shipments/1", "path_parameter"),
        ("/v1/public/..%3B/shipments/1", "path_parameter"),
        ("/v1/public/%2e%2E/shipments/1", "path_dot_segment"),
        ("/v1/public/%252e%252e/shipments/1", "path_double_encoded"),
        ("/v1/public/..%5cshipments", "path_encoded_separator"),
        ("/v1/public\\..\\shipments", "path_backslash"),
        ("/v1/public//../shipments/1", "path_empty_segment"),
        ("/v1/public/%00/x", "path_control"),
        ("/v1/public/%c0%ae%c0%ae/shipments", "path_non_utf8"),
        (
            "/v1/public/%EF%BC%8E%EF%BC%8E/shipments",
            "path_compatibility_form",
        ),
        ("/v1/public/%73hipments", "path_encoded_unreserved"),
        ("/V1/Shipments/1", "path_variant"),
        ("/v1/shipments.json", "path_variant"),
        ("/v1/shipments./1", "path_variant"),
        ("/v1/%C5%BFhipments/1", "path_variant"),
    ] {
        let (status, code) = raw_get(&gw, path, "").await;
        assert_eq!(
            (status, code.as_deref()),
            (400, Some("invalid_path")),
            "{path}"
        );
        let metrics = gw.metrics().await;
        assert!(
            metrics.contains(&format!(
                r#"gateway_blocked_total{{route="none",reason="{reason}"}}"#
            )),
            "{path}: no {reason} in the metrics"
        );
    }
    assert_eq!(
        gw.upstream.count(),
        0,
        "a refused request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_sensitive_upstream_receives_case_variants_and_check_says_so() {
    let gw = attack_gateway("", "sensitive").await;
    let (status, _) = raw_get(&gw, "/V1/SHIPMENTS/1", "").await;
    assert_eq!(status, 200, "a sensitive upstream reads it as another path");
    assert_eq!(gw.upstream.last()["path"], "/V1/SHIPMENTS/1");
    // Suffixes are refused whatever the case setting.
    assert_eq!(raw_get(&gw, "/v1/shipments.json", "").await.0, 400);

    let config = |case: &str| {
        let text = format!(
            "{}{}",
            base_config(gw.upstream.addr, gw.upstream.addr),
            attack_routes(case).edit("{mock}", &gw.upstream.addr.to_string())
        );
        let path = gw.dir.write(&format!("check-{case}.toml"), &text);
        recipient_gateway::config::Config::load_with_env(&path, &|_| None).unwrap()
    };
    let warnings = |case: &str| {
        recipient_gateway::review::report::Report::build(&config(case), "gateway.toml", None)
            .unwrap()
            .warnings
            .into_iter()
            .filter(|w| w.contains("differs from inspected route"))
            .collect::<Vec<_>>()
    };
    let sensitive = warnings("sensitive");
    assert!(
        sensitive
            .iter()
            .any(|w| w.contains("route `root`") && w.contains("`/V1/SHIPMENTS`")),
        "{sensitive:?}"
    );
    let insensitive = warnings("insensitive");
    assert!(insensitive.is_empty(), "{insensitive:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_identities_and_routing_overrides_are_dropped_or_refused() {
    let gw = attack_gateway("", "insensitive").await;
    let mut client = gw.h1().await;
    let answer = client
        .send(
            Request::get("/v1/public/x")
                .header("authorization", format!("Bearer {KEY_ACME}"))
                .header("x_gateway_client", "globex")
                .header("x-gateway_client", "globex")
                .header("x_api_key", KEY_GLOBEX)
                .header("x-original-url", "/v1/shipments/1")
                .header("x-http-method-override", "DELETE")
                .header("x_custom", "1")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200);
    let headers = &answer.json()["headers"];
    assert_eq!(headers["x-gateway-client"], serde_json::json!(["acme"]));
    for dropped in [
        "x_gateway_client",
        "x-gateway_client",
        "x_api_key",
        "x-original-url",
        "x-http-method-override",
        "x_custom",
    ] {
        assert!(headers.get(dropped).is_none(), "{dropped} forwarded");
    }
    let metrics = gw.metrics().await;
    for reason in ["folded_name", "header_name", "routing_override"] {
        assert!(
            metrics.contains(&format!(
                r#"gateway_request_headers_removed_total{{reason="{reason}"}}"#
            )),
            "{reason}"
        );
    }

    // An allowed URL override must take the route the path takes.
    let seen = gw.upstream.count();
    assert_eq!(
        raw_get(&gw, "/v1/legacy/a", "X-Original-URL: /v1/legacy/b?x=1")
            .await
            .0,
        401,
        "judged, then authenticated like any request to the route"
    );
    let (status, code) = raw_get(&gw, "/v1/legacy/a", "X-Original-URL: /v1/shipments/1").await;
    assert_eq!((status, code.as_deref()), (400, Some("invalid_header")));
    assert_eq!(gw.upstream.count(), seen);

    // Refusing instead of dropping.
    let gw = attack_gateway("headers_with_underscores = \"refuse\"", "insensitive").await;
    let (status, code) = raw_get(&gw, "/v1/public/x", "X_Custom: 1").await;
    assert_eq!((status, code.as_deref()), (400, Some("invalid_header")));
    assert!(
        gw.metrics()
            .await
            .contains(r#"gateway_blocked_total{route="public",reason="header_name"}"#)
    );
    assert_eq!(gw.upstream.count(), 0);
}
