//! Metric names (part of the contract, reference §6) and the Prometheus recorder.
//!
//! Label values are always bounded: route, client and upstream names from config, rule ids,
//! status codes and fixed reason words; never paths or anything from a body.

use std::sync::{OnceLock, RwLock};

use hashbrown::{Equivalent, HashMap};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `route`, `client`, `status`.
pub const REQUESTS: &str = "gateway_requests_total";
/// Time from request head to response head, by `route`.
pub const REQUEST_DURATION: &str = "gateway_request_duration_seconds";
/// Time for the upstream to answer with its response head, by `upstream`.
pub const UPSTREAM_DURATION: &str = "gateway_upstream_duration_seconds";
/// Upstream failures, by `upstream` and `kind` (connect, timeout, protocol).
pub const UPSTREAM_ERRORS: &str = "gateway_upstream_errors_total";
/// Missing or wrong credentials, by `route`.
pub const AUTH_FAILURES: &str = "gateway_auth_failures_total";
/// Failed TLS handshakes.
pub const TLS_HANDSHAKE_ERRORS: &str = "gateway_tls_handshake_errors_total";
/// Connections open now.
pub const CONNECTIONS_ACTIVE: &str = "gateway_connections_active";

/// Values changed by redaction rules, by `route`, `rule`, `action`.
pub const REDACTIONS: &str = "gateway_redactions_total";
/// Requests refused before anything was forwarded (a path or header the upstream could read
/// differently, an upgrade, ambiguous framing) and bodies refused by the fail-closed table, by
/// `route` and `reason`.
pub const BLOCKED: &str = "gateway_blocked_total";
/// Request headers removed before forwarding, by `reason` (`header_name`, `folded_name`,
/// `forwarding`, `routing_override`, `httpoxy`).
pub const HEADERS_REMOVED: &str = "gateway_request_headers_removed_total";
/// Connections closed because a peer listed in `proxy_protocol_from` sent no valid PROXY
/// protocol header.
pub const PROXY_PROTOCOL_ERRORS: &str = "gateway_proxy_protocol_errors_total";
/// Tags written (created or refreshed), by `kind` (record, recipient).
pub const TAGS_WRITTEN: &str = "gateway_tags_written_total";

/// Tags in the store, by `kind` (record, recipient).
pub const TAG_STORE_ENTRIES: &str = "gateway_tag_store_entries";
/// Deleted by retention, by `kind` (record, recipient, privacy_subject).
pub const RETENTION_DELETED: &str = "gateway_retention_deleted_total";
/// Cache invalidations announced by the shared store, by `kind` (erased, expired, everything).
pub const TAG_INVALIDATIONS: &str = "gateway_tag_invalidations_total";
/// Tunnels opened (an upgrade the route allows, answered 101 by the upstream), by `route`.
pub const TUNNELS: &str = "gateway_tunnels_total";
/// Client connections closed after idling past `idle_timeout_ms` (or sending no first request).
pub const IDLE_CONNECTIONS_CLOSED: &str = "gateway_idle_connections_closed_total";
/// Tag sightings waiting for the store.
pub const TAG_QUEUE_LENGTH: &str = "gateway_tag_queue_length";
/// Last-seen refreshes merged into one already waiting for the same tag.
pub const TAG_REFRESHES_COALESCED: &str = "gateway_tag_refreshes_coalesced_total";
/// Responses held until the store made room in the tag queue (the gateway slowing down).
pub const TAG_QUEUE_WAITS: &str = "gateway_tag_queue_waits_total";
/// Creates answered 503 because their record's tag was not committed before the deadline.
pub const TAG_COMMIT_TIMEOUTS: &str = "gateway_tag_commit_timeouts_total";
/// Times a full tag cache table evicted entries.
pub const TAG_CACHE_EVICTIONS: &str = "gateway_tag_cache_evictions_total";
/// Record keys looked up under a previous tag key (the cost of keeping one after a rotation).
pub const TAG_PREVIOUS_KEY_LOOKUPS: &str = "gateway_tag_previous_key_lookups_total";
/// Records found only under a previous tag key and tagged again under the current one.
pub const TAGS_REKEYED: &str = "gateway_tags_rekeyed_total";

/// Privacy requests filed, by `type` and `verified`.
pub const PRIVACY_REQUESTS: &str = "gateway_privacy_requests_total";
/// Privacy requests filed with no controller found yet, by `type`: kept and matched again.
pub const PRIVACY_UNMATCHED: &str = "gateway_privacy_requests_unmatched_total";
/// Unmatched requests a later match handed to their controllers.
pub const PRIVACY_MATCHED_LATE: &str = "gateway_privacy_requests_matched_late_total";
/// Unmatched requests by `state`: `waiting` (matched again until `unmatched_days`) and
/// `expired` (past it, fields deleted, for the platform's privacy team).
pub const PRIVACY_UNMATCHED_NOW: &str = "gateway_privacy_requests_unmatched";
/// Webhook delivery attempts, by `outcome` (delivered, retry, dead).
pub const WEBHOOK_DELIVERIES: &str = "gateway_webhook_deliveries_total";
/// Deliveries not yet delivered or acknowledged (across every gateway sharing the store).
pub const PRIVACY_OUTBOX_PENDING: &str = "gateway_privacy_outbox_pending";
/// Age in seconds of the oldest pending delivery (0 when none): what the outbox-age alert watches.
pub const PRIVACY_OUTBOX_OLDEST_AGE: &str = "gateway_privacy_outbox_oldest_age_seconds";
/// 1 while the store answers its health pings, 0 otherwise (what the store alert watches).
pub const STORE_UP: &str = "gateway_store_up";
/// Config reloads, by `outcome` (ok, error).
pub const CONFIG_RELOADS: &str = "gateway_config_reloads_total";
/// Answers' bodies by how they ended (`outcome`: `ok`, `upstream_body_error`, `client_closed`,
/// `timeout`).
pub const RESPONSE_BODIES: &str = "gateway_response_bodies_total";

/// Latency buckets from 100 µs to 30 s: proxying adds sub-millisecond, upstreams take seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use. Every server in the process (tests start
/// several) reports into it, as a process exports one `/metrics`.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), DURATION_BUCKETS)
            .expect("buckets are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by an embedding application); this
        // handle then renders only our own metrics, which is still correct for `/metrics`.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Requests answered by the gateway.");
    describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from request head to response head."
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Time for the upstream to send its response head."
    );
    describe_counter!(UPSTREAM_ERRORS, "Upstream failures by kind.");
    describe_counter!(
        AUTH_FAILURES,
        "Requests refused for missing or wrong credentials."
    );
    describe_counter!(TLS_HANDSHAKE_ERRORS, "Failed TLS handshakes.");
    describe_counter!(
        HEADERS_REMOVED,
        "Request headers removed before forwarding, by reason."
    );
    describe_counter!(
        PROXY_PROTOCOL_ERRORS,
        "Connections from PROXY protocol peers without a valid header."
    );
    describe_gauge!(CONNECTIONS_ACTIVE, "Client connections open now.");
    describe_counter!(REDACTIONS, "Values changed by redaction rules.");
    describe_counter!(
        BLOCKED,
        "Requests and bodies refused before anything was forwarded, by reason."
    );
    describe_counter!(TAGS_WRITTEN, "Record and recipient tags written.");
    describe_gauge!(TAG_STORE_ENTRIES, "Tags in the store.");
    describe_counter!(
        RETENTION_DELETED,
        "Expired tags and settled request subjects deleted by retention."
    );
    describe_gauge!(TAG_QUEUE_LENGTH, "Tag sightings waiting for the store.");
    describe_counter!(TUNNELS, "Tunnels opened on routes that allow upgrades.");
    describe_counter!(
        TAG_INVALIDATIONS,
        "Tag cache invalidations announced by the shared store."
    );
    describe_counter!(
        IDLE_CONNECTIONS_CLOSED,
        "Client connections closed for idling."
    );
    describe_counter!(
        TAG_REFRESHES_COALESCED,
        "Tag last-seen refreshes merged into one already waiting."
    );
    describe_counter!(
        TAG_QUEUE_WAITS,
        "Responses held until the tag queue had room."
    );
    describe_counter!(
        TAG_COMMIT_TIMEOUTS,
        "Creates refused because their tag was not committed in time."
    );
    describe_counter!(
        TAG_CACHE_EVICTIONS,
        "Evictions from a full tag cache table."
    );
    describe_counter!(
        TAG_PREVIOUS_KEY_LOOKUPS,
        "Record keys looked up under a previous tag key."
    );
    describe_counter!(
        TAGS_REKEYED,
        "Records found under a previous tag key and tagged again under the current one."
    );
    describe_counter!(PRIVACY_REQUESTS, "Privacy requests filed.");
    describe_counter!(
        RESPONSE_BODIES,
        "Answers by how their body ended: ok, upstream_body_error, client_closed, timeout."
    );
    describe_counter!(
        PRIVACY_UNMATCHED,
        "Privacy requests filed with no controller found, kept for a later match."
    );
    describe_counter!(
        PRIVACY_MATCHED_LATE,
        "Unmatched privacy requests later matched to a controller."
    );
    describe_gauge!(
        PRIVACY_UNMATCHED_NOW,
        "Unmatched privacy requests by state (waiting, expired)."
    );
    describe_counter!(CONFIG_RELOADS, "Config reloads by outcome.");
    describe_gauge!(
        STORE_UP,
        "1 while the tag and privacy store answers, else 0."
    );
    describe_counter!(WEBHOOK_DELIVERIES, "Webhook delivery attempts by outcome.");
    describe_gauge!(
        PRIVACY_OUTBOX_PENDING,
        "Privacy deliveries not yet delivered or acknowledged."
    );
    describe_gauge!(
        PRIVACY_OUTBOX_OLDEST_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest pending privacy delivery."
    );
}

/// Handles of one labelled metric, registered once per distinct label values.
///
/// `metrics::counter!(name, "route" => ..)` builds owned labels, hashes the key and looks it up in
/// the recorder's registry on every call; on the request path that was several allocations per
/// request. A series handle is looked up here by borrowed label values instead. Label values are
/// bounded (see the module docs), so the table is too.
pub struct Series<const N: usize, M> {
    name: &'static str,
    labels: [&'static str; N],
    register: fn(&'static str, Vec<metrics::Label>) -> M,
    handles: RwLock<HashMap<[Box<str>; N], M>>,
}

/// Borrowed label values that hash and compare like the owned key they look up.
#[derive(Hash)]
struct Values<'a, const N: usize>(&'a [&'a str; N]);

impl<const N: usize> Equivalent<[Box<str>; N]> for Values<'_, N> {
    fn equivalent(&self, key: &[Box<str>; N]) -> bool {
        self.0.iter().zip(key).all(|(a, b)| *a == &**b)
    }
}

impl<const N: usize, M: Clone> Series<N, M> {
    fn new(
        name: &'static str,
        labels: [&'static str; N],
        register: fn(&'static str, Vec<metrics::Label>) -> M,
    ) -> Self {
        Series {
            name,
            labels,
            register,
            handles: RwLock::new(HashMap::new()),
        }
    }

    /// The handle of the series with these label values (in the order of `labels`).
    pub fn get(&self, values: [&str; N]) -> M {
        let lookup = Values(&values);
        if let Some(handle) = self.handles.read().expect("not poisoned").get(&lookup) {
            return handle.clone();
        }
        // A handle registered before the recorder exists would count nowhere, for good.
        handle();
        let labels = self
            .labels
            .iter()
            .zip(values)
            .map(|(key, value)| metrics::Label::new(*key, value.to_string()))
            .collect();
        let handle = (self.register)(self.name, labels);
        self.handles
            .write()
            .expect("not poisoned")
            .entry(values.map(Box::from))
            .or_insert(handle)
            .clone()
    }
}

/// A counter series.
pub type Counters<const N: usize> = Series<N, metrics::Counter>;

impl<const N: usize> Counters<N> {
    /// `name` with these label keys.
    pub fn counters(name: &'static str, labels: [&'static str; N]) -> Self {
        Series::new(name, labels, |name, labels| metrics::counter!(name, labels))
    }
}

/// A histogram series.
pub type Histograms<const N: usize> = Series<N, metrics::Histogram>;

impl<const N: usize> Histograms<N> {
    /// `name` with these label keys.
    pub fn histograms(name: &'static str, labels: [&'static str; N]) -> Self {
        Series::new(name, labels, |name, labels| {
            metrics::histogram!(name, labels)
        })
    }
}

/// `gateway_requests_total` by route, client and status.
pub fn requests() -> &'static Counters<3> {
    static SERIES: OnceLock<Counters<3>> = OnceLock::new();
    SERIES.get_or_init(|| Counters::counters(REQUESTS, ["route", "client", "status"]))
}

/// `gateway_request_duration_seconds` by route.
pub fn request_duration() -> &'static Histograms<1> {
    static SERIES: OnceLock<Histograms<1>> = OnceLock::new();
    SERIES.get_or_init(|| Histograms::histograms(REQUEST_DURATION, ["route"]))
}

/// `gateway_upstream_duration_seconds` by upstream.
pub fn upstream_duration() -> &'static Histograms<1> {
    static SERIES: OnceLock<Histograms<1>> = OnceLock::new();
    SERIES.get_or_init(|| Histograms::histograms(UPSTREAM_DURATION, ["upstream"]))
}

/// `gateway_request_headers_removed_total` by reason (behind a proxy that sends
/// `X-Forwarded-For`, nearly every request removes one).
pub fn headers_removed() -> &'static Counters<1> {
    static SERIES: OnceLock<Counters<1>> = OnceLock::new();
    SERIES.get_or_init(|| Counters::counters(HEADERS_REMOVED, ["reason"]))
}

/// `gateway_response_bodies_total` by outcome (one per answer).
pub fn response_bodies() -> &'static Counters<1> {
    static SERIES: OnceLock<Counters<1>> = OnceLock::new();
    SERIES.get_or_init(|| Counters::counters(RESPONSE_BODIES, ["outcome"]))
}

/// `gateway_redactions_total` by route, rule and action.
pub fn redactions() -> &'static Counters<3> {
    static SERIES: OnceLock<Counters<3>> = OnceLock::new();
    SERIES.get_or_init(|| Counters::counters(REDACTIONS, ["route", "rule", "action"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_register_each_label_set_once_and_count_into_it() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let series = Counters::counters("test_requests_total", ["route", "status"]);
            series.get(["orders", "200"]).increment(1);
            series.get(["orders", "200"]).increment(2);
            series.get(["orders", "404"]).increment(1);
            // Values that would collide if joined naively stay apart.
            series.get(["a", "bc"]).increment(5);
            series.get(["ab", "c"]).increment(7);
            assert_eq!(series.handles.read().unwrap().len(), 4);
            let histograms = Histograms::histograms("test_duration_seconds", ["route"]);
            histograms.get(["orders"]).record(0.5);
        });
        let text = handle.render();
        for line in [
            r#"test_requests_total{route="orders",status="200"} 3"#,
            r#"test_requests_total{route="orders",status="404"} 1"#,
            r#"test_requests_total{route="a",status="bc"} 5"#,
            r#"test_requests_total{route="ab",status="c"} 7"#,
            r#"test_duration_seconds_count{route="orders"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
