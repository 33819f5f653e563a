//! What judging a request head costs per request: the canonical-path check with its lenient
//! readings, the client address and the header screening, beside the plain longest-prefix route
//! match they replaced (both copy the same eight headers, so the difference is the judging).
//!
//!     cargo bench --bench request_target

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use recipient_gateway::config::Config;
use recipient_gateway::proxy::client_address::client_address;
use recipient_gateway::proxy::header_meaning;

const CONFIG: &str = r#"
[listen]
address = "127.0.0.1:0"
tls = false
[keys]
tag_key = "bench-tag-key-0123456789"
[store]
backend = "memory"
[[upstream]]
name = "api"
url = "http://127.0.0.1:9"
[[route]]
name = "root"
path_prefix = "/"
upstream = "api"
auth = "none"
[[route]]
name = "shipments"
path_prefix = "/v1/shipments"
upstream = "api"
records = ["$"]
[[route]]
name = "public"
path_prefix = "/v1/public"
upstream = "api"
auth = "none"
"#;

/// The headers a typical API client sends.
fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        ("user-agent", "shipping-client/2.3"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip"),
        ("authorization", "Bearer bench-key"),
        ("content-type", "application/json"),
        ("x-request-id", "0123456789abcdef"),
        ("x-forwarded-for", "203.0.113.7"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

fn judge(c: &mut Criterion) {
    let config =
        Config::from_toml(Path::new("/nonexistent/gateway.toml"), CONFIG, &|_| None).unwrap();
    let mut group = c.benchmark_group("request head");
    for path in [
        "/v1/shipments",
        "/v1/shipments/1ZACME0000000001",
        "/v1/public/r/jane%40example.com",
    ] {
        group.bench_function(format!("route match + header copy {path}"), |b| {
            let template = headers();
            b.iter(|| black_box((config.route_for(black_box(path)), template.clone())))
        });
        group.bench_function(format!("judge + screen {path}"), |b| {
            let template = headers();
            b.iter(|| {
                let route = config.judge(black_box(path)).unwrap().unwrap();
                let mut headers = template.clone();
                let forwarding = client_address(
                    &headers,
                    std::net::Ipv4Addr::LOCALHOST.into(),
                    &config.listen.client_address,
                );
                recipient_gateway::proxy::screen_request(&config, route, &mut headers).unwrap();
                black_box((forwarding, headers))
            })
        });
    }
    // What reading header names by meaning costs on its own, for the same eight names.
    group.bench_function("header meanings of the eight names", |b| {
        let template = headers();
        b.iter(|| {
            template
                .keys()
                .filter(|name| header_meaning::classify(black_box(name.as_str())).is_some())
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, judge);
criterion_main!(benches);
