//! Privacy correctness, differentially: generated shipment lists with canary personal data,
//! random callers, controllers and route purposes, through the real proxy over TLS with the
//! shipped rules. For every record: a caller who does not control it never sees its canaries,
//! and no value changes that no rule names. Fixed seed and a bounded number of cases, so a
//! failure reproduces; `PRIVACY_CASES=1000` runs more.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

/// Routes over the mock upstream's canned answer, one per purpose, with the shipped rules.
fn routes() -> String {
    let rules = format!(
        r#"rules = ["{SHIPPED_RULES}/recipient.toml", "{SHIPPED_RULES}/sensitive.toml", "{SHIPPED_RULES}/analytics.toml"]"#
    );
    ["fulfillment", "support", "marketing", "analytics"]
        .iter()
        .map(|purpose| {
            format!(
                r#"
[[route]]
name = "{purpose}"
path_prefix = "/canned/{purpose}"
upstream = "mock"
purpose = "{purpose}"
records = ["$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
controller_member = "customer_id"
{rules}
"#
            )
        })
        .collect()
}

/// One generated record: who controls it and what it holds.
#[derive(Debug, Clone)]
struct Shipment {
    controller: Option<&'static str>,
    named: &'static str,
    extra: Vec<(String, Value)>,
    street2: bool,
    weight: String,
}

fn shipment() -> impl Strategy<Value = Shipment> {
    (
        prop_oneof![Just("acme"), Just("globex"), Just("initech"), Just("")],
        prop::collection::vec(
            (
                "[a-z]{1,8}",
                prop_oneof![
                    any::<i64>().prop_map(Value::from),
                    "[a-zA-Z0-9 ._-]{0,12}".prop_map(Value::from),
                    Just(Value::Null),
                    Just(json!({"nested": [1, "two", {"three": 3.5}]})),
                ],
            ),
            0..4,
        ),
        any::<bool>(),
        prop_oneof![
            Just("2.5".to_string()),
            Just("1e400".to_string()),
            Just("123456789012345678901234567890".to_string()),
            (0u32..100_000).prop_map(|n| format!("{n}.{:03}", n % 1000)),
        ],
    )
        .prop_map(|(named, extra, street2, weight)| Shipment {
            controller: match named {
                "acme" => Some("acme"),
                "globex" => Some("globex"),
                _ => None,
            },
            named,
            extra: extra
                .into_iter()
                .filter(|(k, _)| {
                    ![
                        "id",
                        "tracking_number",
                        "customer_id",
                        "recipient",
                        "weight",
                    ]
                    .contains(&k.as_str())
                })
                .collect(),
            street2,
            weight,
        })
}

/// Unique ids across cases: a record tagged in one case must not carry its tag into another.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// The record's JSON text and its canaries (personal values no non-controller may see).
fn render(s: &Shipment) -> (String, Vec<String>) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let canaries = vec![
        format!("Canary Person {n}"),
        format!("canary{n}@example.com"),
        format!("+1 555 {:04} {:04}", n % 10_000, (n * 7) % 10_000),
        format!("{n} Canary Street"),
        format!("Flat {n} Canary House"),
        format!("PC{n:06}"),
    ];
    let mut record = serde_json::Map::new();
    record.insert("id".into(), json!(format!("shp_{n}")));
    record.insert("tracking_number".into(), json!(format!("1ZDIFF{n:010}")));
    if !s.named.is_empty() {
        record.insert("customer_id".into(), json!(s.named));
    }
    let mut address = json!({"street": canaries[3], "city": "Springfield", "postal_code": canaries[5], "country": "US"});
    if s.street2 {
        address["street2"] = json!(canaries[4]);
    }
    record.insert(
        "recipient".into(),
        json!({"name": canaries[0], "email": canaries[1], "phone": canaries[2], "address": address}),
    );
    for (k, v) in &s.extra {
        record.insert(k.clone(), v.clone());
    }
    let text = serde_json::to_string(&Value::Object(record)).unwrap();
    // The weight goes in as written (serde_json would not keep 1e400).
    let text = format!("{},\"weight\":{}}}", &text[..text.len() - 1], s.weight);
    let canaries = if s.street2 {
        canaries
    } else {
        canaries
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, c)| c)
            .collect()
    };
    (text, canaries)
}

/// A record without the values the shipped rules name (the recipient's name, contact, street
/// and postal code), for comparing everything else.
fn unnamed(mut record: Value) -> Value {
    if let Some(recipient) = record.get_mut("recipient").and_then(Value::as_object_mut) {
        for key in ["name", "email", "phone"] {
            recipient.remove(key);
        }
        if let Some(address) = recipient.get_mut("address").and_then(Value::as_object_mut) {
            for key in ["street", "street2", "postal_code"] {
                address.remove(key);
            }
        }
    }
    record
}

#[test]
fn no_canary_reaches_a_non_controller_and_nothing_unnamed_changes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gw = runtime.block_on(TestGateway::start(&routes()));
    let cases: u32 = std::env::var("PRIVACY_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = (
        prop::collection::vec(shipment(), 1..6),
        prop_oneof![Just("acme"), Just("globex"), Just("analytics")],
        prop_oneof![
            Just("fulfillment"),
            Just("support"),
            Just("marketing"),
            Just("analytics")
        ],
    );
    let checked = AtomicU64::new(0);
    let result = runner.run(&strategy, |(shipments, caller, purpose)| {
        let rendered: Vec<(String, Vec<String>)> = shipments.iter().map(render).collect();
        let body = format!(
            "{{\"shipments\":[{}]}}",
            rendered
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        gw.upstream
            .set_canned(Canned::json(body.clone().into_bytes()));
        let key = match caller {
            "acme" => KEY_ACME,
            "globex" => KEY_GLOBEX,
            _ => KEY_ANALYTICS,
        };
        let answer = runtime.block_on(async {
            gw.h1()
                .await
                .get(&format!("/canned/{purpose}"), Some(key))
                .await
        });
        prop_assert_eq!(answer.status.as_u16(), 200);
        let text = String::from_utf8(answer.body.to_vec()).unwrap();
        // 1e400 is beyond serde_json: values are compared with it replaced on both sides (the
        // controller's check below compares the raw bytes).
        let output: Value = serde_json::from_str(&text.replace("1e400", "0")).unwrap();
        let out_records = output["shipments"].as_array().unwrap();
        prop_assert_eq!(out_records.len(), shipments.len());
        for (i, (shipment, (record_text, canaries))) in shipments.iter().zip(&rendered).enumerate()
        {
            let is_controller = shipment.controller == Some(caller) && purpose != "analytics";
            let out_text = out_records[i].to_string();
            if is_controller {
                // Its own recipient, whole: every byte of the record as the upstream sent it.
                prop_assert!(
                    text.contains(record_text.as_str()),
                    "the controller's record changed: {} -> {}",
                    record_text,
                    out_text
                );
            } else {
                for canary in canaries {
                    prop_assert!(
                        !out_text.contains(canary.as_str()),
                        "{} reached {} ({}) in {}",
                        canary,
                        caller,
                        purpose,
                        out_text
                    );
                }
            }
            let expected =
                unnamed(serde_json::from_str::<Value>(&record_text.replace("1e400", "0")).unwrap());
            let got = unnamed(out_records[i].clone());
            prop_assert_eq!(got, expected, "a value no rule names changed");
        }
        checked.fetch_add(shipments.len() as u64, Ordering::Relaxed);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    eprintln!(
        "privacy differential: {cases} cases, {} records checked",
        checked.load(Ordering::Relaxed)
    );
}
