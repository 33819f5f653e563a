//! The request metrics' handles, resolved per route and caller when a serving thread's gateway is
//! built, so that counting a request takes no lock and hashes no label.
//!
//! `gateway_requests_total` has a series per route, caller and status. The route and the caller
//! are known by position (`Route::index`, `Client::index`); the statuses an API answers with
//! nearly always are few, and each gets a slot registered on its first use. Any other status, and
//! answers outside every route, go through the shared [`Series`](super::metrics::Series) table.

use std::sync::OnceLock;

use ::metrics::{Counter, Histogram};
use http::StatusCode;

use super::metrics;
use crate::config::{Client, Config, Route};

/// Statuses with a slot of their own, in slot order.
const SLOTTED: [u16; 24] = [
    200, 201, 202, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429,
    500, 502, 503, 504, 431,
];

/// The slot of a status, if it has one.
fn slot(status: u16) -> Option<usize> {
    SLOTTED.iter().position(|&s| s == status)
}

/// The request metrics of every route of one config, for one serving thread.
pub struct RequestMeters {
    routes: Box<[RouteMeters]>,
}

/// One route's request metrics.
struct RouteMeters {
    /// `gateway_request_duration_seconds{route}`.
    duration: Histogram,
    /// Per caller: index 0 is anonymous, then the clients in config order. Made on a caller's
    /// first request, so a config with many clients costs a pointer per client until then.
    callers: Box<[OnceLock<Box<StatusCounters>>]>,
}

/// `gateway_requests_total{route, client, status}` of one route and caller, per slotted status.
struct StatusCounters([OnceLock<Counter>; SLOTTED.len()]);

impl RequestMeters {
    /// Handles for the routes of `config` (durations registered now, request counts on first use).
    pub fn new(config: &Config) -> RequestMeters {
        let callers = config.clients.len() + 1;
        let routes = config
            .routes
            .iter()
            .map(|route| RouteMeters {
                duration: metrics::request_duration().get([&route.name]),
                callers: (0..callers).map(|_| OnceLock::new()).collect(),
            })
            .collect();
        RequestMeters { routes }
    }

    /// Counts an answer on `route` (by position) to `client` (`None`: anonymous) and records how
    /// long it took.
    pub fn answered(
        &self,
        route: &Route,
        client: Option<&Client>,
        status: StatusCode,
        seconds: f64,
    ) {
        let Some(meters) = self.routes.get(route.index) else {
            return answered_without_route(&route.name, client, status, seconds);
        };
        meters.duration.record(seconds);
        let caller = client.map_or(0, |c| c.index + 1);
        let (Some(counters), Some(slot)) = (meters.callers.get(caller), slot(status.as_u16()))
        else {
            return requests(&route.name, client, status).increment(1);
        };
        let counters = counters
            .get_or_init(|| Box::new(StatusCounters(std::array::from_fn(|_| OnceLock::new()))));
        counters.0[slot]
            .get_or_init(|| requests(&route.name, client, status))
            .increment(1);
    }
}

/// Counts an answer outside every route (the privacy endpoints, `none`) through the shared table.
pub fn answered_without_route(
    label: &str,
    client: Option<&Client>,
    status: StatusCode,
    seconds: f64,
) {
    requests(label, client, status).increment(1);
    metrics::request_duration().get([label]).record(seconds);
}

fn requests(route: &str, client: Option<&Client>, status: StatusCode) -> Counter {
    let client = client.map_or("anonymous", |c| &*c.id);
    metrics::requests().get([route, client, status.as_str()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    const CONFIG: &str = r#"
[listen]
address = "127.0.0.1:0"
tls = false

[keys]
tag_key = "meters-test-tag-key-0123456789"

[store]
backend = "memory"

[[client]]
id = "acme"
kind = "customer"
name = "Acme"
api_key_sha256 = ["8649cdebee753898fd50e01408a9e438aa5090249bc3e51b65f33dce973b0873"]

[[upstream]]
name = "shipping"
url = "http://127.0.0.1:9"

[[route]]
name = "meters-orders"
path_prefix = "/orders"
upstream = "shipping"
auth = "none"

[[route]]
name = "meters-labels"
path_prefix = "/labels"
upstream = "shipping"
auth = "none"
"#;

    #[test]
    fn answers_count_per_route_caller_and_status_with_a_slot_or_without() {
        let config =
            Config::from_toml(std::path::Path::new("meters.toml"), CONFIG, &|_| None).unwrap();
        let route = |name: &str| config.routes.iter().find(|r| r.name == name).unwrap();
        let acme = Some(&*config.clients[0]);
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            let meters = RequestMeters::new(&config);
            let orders = route("meters-orders");
            meters.answered(orders, acme, StatusCode::OK, 0.01);
            meters.answered(orders, acme, StatusCode::OK, 0.01);
            meters.answered(orders, None, StatusCode::OK, 0.01);
            // 418 has no slot: counted through the shared table, in the same series family.
            meters.answered(orders, acme, StatusCode::IM_A_TEAPOT, 0.01);
            meters.answered(route("meters-labels"), acme, StatusCode::NOT_FOUND, 0.01);
            answered_without_route("privacy_intake", None, StatusCode::ACCEPTED, 0.01);
        });
        let text = handle.render();
        for line in [
            r#"gateway_requests_total{route="meters-orders",client="acme",status="200"} 2"#,
            r#"gateway_requests_total{route="meters-orders",client="anonymous",status="200"} 1"#,
            r#"gateway_requests_total{route="meters-orders",client="acme",status="418"} 1"#,
            r#"gateway_requests_total{route="meters-labels",client="acme",status="404"} 1"#,
            r#"gateway_requests_total{route="privacy_intake",client="anonymous",status="202"} 1"#,
            r#"gateway_request_duration_seconds_count{route="meters-orders"} 4"#,
            r#"gateway_request_duration_seconds_count{route="meters-labels"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
