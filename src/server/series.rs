//! Every metric series whose labels the config or a closed set determines, registered at 0 when
//! a config is taken (at start and on every reload).
//!
//! A counter that appears only when it first counts is born at its first value: Prometheus'
//! `increase()` needs two samples, so the first rejected reload or the first dead-lettered
//! webhook after a start would never raise its alert, and dashboard panels would show "no data"
//! instead of 0. Prometheus' instrumentation guidance: avoid missing metrics. Cardinality stays
//! what traffic would make anyway: per route, client, upstream and rule, and the fixed words of
//! outcomes, reasons and kinds. Request statuses are not a closed set: 200, 400 and 502 are
//! registered per route and caller so the error-ratio panels have series; others appear when
//! they first happen.

use crate::admin::metrics;
use crate::config::Config;
use crate::inspect::Reason;
use crate::privacy::delivery::OUTCOMES as WEBHOOK_OUTCOMES;
use crate::proxy::header_meaning::Meaning;
use crate::proxy::headers::{HeaderFlaw, REMOVAL_REASONS};
use crate::proxy::upstream::ERROR_KINDS;
use crate::redact::Action;
use crate::store::outbox::RequestType;
use crate::target::PathFlaw;

/// Statuses registered per route and caller.
const STATUSES: [&str; 3] = ["200", "400", "502"];

/// Registers `config`'s series at 0 (a series already counting keeps its value).
pub(super) fn register(config: &Config) {
    use ::metrics::{counter, gauge, histogram};
    let blocked: Vec<&'static str> = PathFlaw::ALL
        .iter()
        .map(|f| f.reason())
        .chain(HeaderFlaw::ALL.iter().map(|f| f.reason()))
        .chain(Reason::ALL.iter().map(|r| r.label()))
        .chain(["upgrade", "ambiguous_framing"])
        .collect();
    let callers: Vec<String> = config
        .clients
        .iter()
        .map(|c| c.id.to_string())
        .chain(["anonymous".to_string()])
        .collect();
    for route in &config.routes {
        let name = route.name.clone();
        let _ = histogram!(metrics::REQUEST_DURATION, "route" => name.clone());
        counter!(metrics::AUTH_FAILURES, "route" => name.clone()).increment(0);
        for client in &callers {
            for status in STATUSES {
                counter!(metrics::REQUESTS, "route" => name.clone(), "client" => client.clone(), "status" => status)
                    .increment(0);
            }
        }
        for reason in &blocked {
            counter!(metrics::BLOCKED, "route" => name.clone(), "reason" => *reason).increment(0);
        }
        for rule in &route.rules {
            let mut actions = vec![rule.action];
            // A pseudonym needs a known controller; without one the value is redacted.
            if rule.action == Action::Hash {
                actions.push(Action::Redact);
            }
            for action in actions {
                metrics::redactions()
                    .get([&route.name, &rule.id, action.as_str()])
                    .increment(0);
            }
        }
    }
    for upstream in &config.upstreams {
        let _ = histogram!(metrics::UPSTREAM_DURATION, "upstream" => upstream.name.clone());
        for kind in ERROR_KINDS {
            counter!(metrics::UPSTREAM_ERRORS, "upstream" => upstream.name.clone(), "kind" => kind)
                .increment(0);
        }
    }
    for reason in Meaning::ALL
        .iter()
        .map(|m| m.reason())
        .chain(REMOVAL_REASONS)
    {
        metrics::headers_removed().get([reason]).increment(0);
    }
    for outcome in ["ok", "error"] {
        counter!(metrics::CONFIG_RELOADS, "outcome" => outcome).increment(0);
    }
    for outcome in WEBHOOK_OUTCOMES {
        counter!(metrics::WEBHOOK_DELIVERIES, "outcome" => outcome).increment(0);
    }
    for kind in RequestType::ALL {
        for verified in ["true", "false"] {
            counter!(metrics::PRIVACY_REQUESTS, "type" => kind.as_str(), "verified" => verified)
                .increment(0);
        }
        counter!(metrics::PRIVACY_UNMATCHED, "type" => kind.as_str()).increment(0);
    }
    for kind in ["record", "recipient"] {
        counter!(metrics::TAGS_WRITTEN, "kind" => kind).increment(0);
        counter!(metrics::RETENTION_DELETED, "kind" => kind).increment(0);
        gauge!(metrics::TAG_STORE_ENTRIES, "kind" => kind).increment(0.0);
    }
    counter!(metrics::RETENTION_DELETED, "kind" => "privacy_subject").increment(0);
    for outcome in crate::body::EndOutcome::ALL {
        metrics::response_bodies()
            .get([outcome.as_str()])
            .increment(0);
    }
    counter!(metrics::TLS_HANDSHAKE_ERRORS).increment(0);
    counter!(metrics::PRIVACY_MATCHED_LATE).increment(0);
    gauge!(metrics::CONNECTIONS_ACTIVE).increment(0.0);
    gauge!(metrics::PRIVACY_OUTBOX_PENDING).increment(0.0);
}
