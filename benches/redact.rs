//! Engine throughput: strict parse + record selection + 10 rules + byte-faithful render, on
//! shipment lists of 1 KB, 16 KB and 256 KB with mixed controllers, beside a serde_json
//! parse+serialize round trip of the same bytes. Also the cost curve from 1 to 50 rules, and a
//! rule with a filter beside a plain rule of the same depth.
//!
//!     cargo bench --bench redact

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use recipient_gateway::json::Document;
use recipient_gateway::redact::path::Path;
use recipient_gateway::redact::{
    self, Action, CallerFilter, DirectionFilter, HashKeys, Plan, Purpose, Record, Relation, Rule,
};
use recipient_gateway::vocabulary::Direction;

fn rule(id: &str, path: &str, action: Action) -> Arc<Rule> {
    Arc::new(Rule {
        mask: (2, 0),
        direction: DirectionFilter::Response,
        caller: CallerFilter::NotController,
        ..Rule::new(id, path, action).unwrap()
    })
}

/// The ten rules a realistic non-controller response sees.
fn ten_rules() -> Vec<Arc<Rule>> {
    vec![
        rule("email", "$.recipient.email", Action::Redact),
        rule("phone", "$.recipient.phone", Action::Redact),
        rule("name", "$.recipient.name", Action::Redact),
        rule("street", "$.recipient.address.street", Action::Redact),
        rule("street2", "$.recipient.address.street2", Action::Redact),
        rule("postal", "$.recipient.address.postal_code", Action::Mask),
        rule("company", "$.recipient.company", Action::Redact),
        rule("notes", "$.delivery_notes", Action::Redact),
        rule("dob", "$..date_of_birth", Action::Remove),
        rule("geo", "$.recipient.address.geo", Action::Remove),
    ]
}

/// `n` rules: the ten above, then variations on other members.
fn n_rules(n: usize) -> Vec<Arc<Rule>> {
    let mut rules = ten_rules();
    rules.truncate(n);
    for i in rules.len()..n {
        rules.push(rule(
            &format!("extra-{i}"),
            &format!("$.recipient.extra_{i}"),
            Action::Redact,
        ));
    }
    rules
}

fn shipment(i: usize) -> String {
    let customer = if i.is_multiple_of(2) {
        "acme"
    } else {
        "globex"
    };
    format!(
        r#"{{"id":"shp_{i:06}","tracking_number":"1ZBENCH{i:010}","customer_id":"{customer}","status":"in_transit","service":"ground","weight_kg":{w}.25,"declared_value":12345678901234567890.12,"created_at":"2026-11-29T12:00:00Z","delivery_notes":"Leave at the back door","recipient":{{"name":"Jane Doe {i}","company":"Acme Outdoor","email":"jane{i}@example.com","phone":"+1 415 555 {p:04}","address":{{"street":"{i} Market St","street2":"Apt 4","city":"San Francisco","postal_code":"94105","country":"US","geo":{{"lat":37.79,"lon":-122.39}}}}}},"parcels":[{{"weight_kg":1.5,"dims_cm":[30,20,10]}},{{"weight_kg":0.75,"dims_cm":[10,10,10]}}]}}"#,
        w = i % 20,
        p = i % 10_000
    )
}

fn payload(target: usize) -> Vec<u8> {
    let mut body = String::from(r#"{"shipments":["#);
    let mut i = 0;
    while body.len() + 2 < target {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&shipment(i));
        i += 1;
    }
    body.push_str("]}");
    body.into_bytes()
}

fn plan(rules: &[Arc<Rule>]) -> Plan {
    Plan::new(
        &[
            Path::compile("$").unwrap(),
            Path::compile("$.shipments[*]").unwrap(),
        ],
        Some("recipient"),
        rules,
        Purpose::Fulfillment,
    )
}

/// The engine as the proxy runs it: parse, find records, apply (every other record belongs to
/// the caller), render.
fn engine(plan: &Plan, keys: &HashKeys, body: &[u8]) -> usize {
    let doc = Document::parse(body).unwrap();
    let nodes = plan.find_records(&doc).unwrap();
    let records: Vec<Record> = nodes
        .iter()
        .enumerate()
        .map(|(i, &node)| Record {
            node,
            relation: if i.is_multiple_of(2) {
                Relation::Controller
            } else {
                Relation::NotController
            },
            controller: Some(if i.is_multiple_of(2) {
                "acme"
            } else {
                "globex"
            }),
        })
        .collect();
    let applied = plan.apply(
        &doc,
        Direction::Response,
        &records,
        Relation::NotController,
        keys,
    );
    redact::render_if_changed(&doc, &applied).map_or(body.len(), |out| out.len())
}

fn serde_round_trip(body: &[u8]) -> usize {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    serde_json::to_vec(&value).unwrap().len()
}

fn throughput(c: &mut Criterion) {
    let keys = HashKeys::derive(b"bench-tag-key-0123456789", ["acme", "globex"]);
    let plan = plan(&ten_rules());
    let mut group = c.benchmark_group("redact");
    for (label, size) in [("1KB", 1024), ("16KB", 16 * 1024), ("256KB", 256 * 1024)] {
        let body = payload(size);
        assert!(engine(&plan, &keys, &body) > 0);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("engine_10_rules", label),
            &body,
            |b, body| b.iter(|| engine(&plan, &keys, black_box(body))),
        );
        group.bench_with_input(
            BenchmarkId::new("serde_json_round_trip", label),
            &body,
            |b, body| b.iter(|| serde_round_trip(black_box(body))),
        );
    }
    group.finish();
}

fn rule_count(c: &mut Criterion) {
    let keys = HashKeys::derive(b"bench-tag-key-0123456789", ["acme", "globex"]);
    let body = payload(16 * 1024);
    let mut group = c.benchmark_group("rules_16KB");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for n in [1, 5, 10, 25, 50] {
        let plan = plan(&n_rules(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &body, |b, body| {
            b.iter(|| engine(&plan, &keys, black_box(body)))
        });
    }
    group.finish();
}

/// Where the time goes at 16 KB: parsing alone, parsing and finding records, the whole engine.
fn stages(c: &mut Criterion) {
    let keys = HashKeys::derive(b"bench-tag-key-0123456789", ["acme", "globex"]);
    let plan = plan(&ten_rules());
    let body = payload(16 * 1024);
    let mut group = c.benchmark_group("stages_16KB");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| Document::parse(black_box(&body)).unwrap().nodes.len())
    });
    group.bench_function("parse_find_records", |b| {
        b.iter(|| {
            let doc = Document::parse(black_box(&body)).unwrap();
            plan.find_records(&doc).unwrap().len()
        })
    });
    group.bench_function("engine", |b| {
        b.iter(|| engine(&plan, &keys, black_box(&body)))
    });
    group.finish();
}

/// A filter's cost at 16 KB: one rule with a filter (`$.parcels[?@.weight_kg > 1].dims_cm`)
/// against a plain rule of the same depth (`$.parcels[*].dims_cm`), and a filtered rule among 10
/// and 50 plain ones against the same counts without it.
fn filters(c: &mut Criterion) {
    let keys = HashKeys::derive(b"bench-tag-key-0123456789", ["acme", "globex"]);
    let body = payload(16 * 1024);
    let plain = || rule("dims", "$.parcels[*].dims_cm", Action::Redact);
    let filtered = || {
        rule(
            "heavy-dims",
            "$.parcels[?@.weight_kg > 1].dims_cm",
            Action::Redact,
        )
    };
    let mut group = c.benchmark_group("filter_16KB");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for (name, rules) in [
        ("plain_rule".to_string(), vec![plain()]),
        ("filtered_rule".to_string(), vec![filtered()]),
        ("plain_10".to_string(), [n_rules(9), vec![plain()]].concat()),
        (
            "filtered_10".to_string(),
            [n_rules(9), vec![filtered()]].concat(),
        ),
        (
            "plain_50".to_string(),
            [n_rules(49), vec![plain()]].concat(),
        ),
        (
            "filtered_50".to_string(),
            [n_rules(49), vec![filtered()]].concat(),
        ),
    ] {
        let plan = plan(&rules);
        group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| engine(&plan, &keys, black_box(body)))
        });
    }
    group.finish();
}

criterion_group!(benches, throughput, rule_count, stages, filters);
criterion_main!(benches);
