//! Properties of the strict JSON reader and the engine on generated input (fixed seed, bounded):
//! never a panic on arbitrary bytes; what serde_json writes is accepted and re-rendered byte for
//! byte; a redaction rule leaves no canary behind and changes nothing else.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, RngAlgorithm, TestRng, TestRunner,
};
use recipient_gateway::json::{Document, Edits};
use recipient_gateway::redact::path::Path;
use recipient_gateway::redact::{
    self, Action, CallerFilter, HashKeys, Plan, Purpose, Record, Relation, Rule,
};
use recipient_gateway::vocabulary::Direction;
use serde_json::Value;

fn runner(cases: u32) -> TestRunner {
    let config = ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            // Member names without control characters: the reader refuses those on purpose.
            prop::collection::btree_map("[^\\x00-\\x1f]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn arbitrary_bytes_never_panic() {
    runner(3000)
        .run(&prop::collection::vec(any::<u8>(), 0..200), |bytes| {
            let _ = Document::parse(&bytes);
            Ok(())
        })
        .unwrap();
    // Near-JSON: valid documents with one byte changed.
    runner(3000)
        .run(
            &(json_value(), any::<prop::sample::Index>(), any::<u8>()),
            |(value, at, byte)| {
                let mut text = serde_json::to_vec(&value).unwrap();
                let i = at.index(text.len());
                text[i] = byte;
                let _ = Document::parse(&text);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn valid_json_is_accepted_and_re_rendered_byte_for_byte() {
    runner(2000)
        .run(&(json_value(), any::<bool>()), |(value, pretty)| {
            let text = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            let doc = Document::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(doc.render(&Edits::new(&doc)), text);
            Ok(())
        })
        .unwrap();
}

const CANARY: &str = "canary.person@example.test";

/// Shipment-like records where e-mails sit at random depths, some of them canaries.
fn shipments() -> impl Strategy<Value = Value> {
    // Canaries only ever sit under `email` members, at any depth.
    let nested = json_value().prop_recursive(3, 24, 4, move |inner| {
        prop::collection::btree_map(
            prop::sample::select(&["email", "note", "x"][..]),
            (inner, any::<bool>()),
            0..4,
        )
        .prop_map(|m| {
            Value::Object(
                m.into_iter()
                    .map(|(k, (v, canary))| {
                        let v = if k == "email" && canary {
                            Value::String(CANARY.into())
                        } else {
                            v
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
            )
        })
    });
    prop::collection::vec(nested, 0..6).prop_map(|records| {
        let records: Vec<Value> = records
            .into_iter()
            .map(|r| match r {
                Value::Object(mut m) => {
                    m.insert("email".into(), Value::String(CANARY.into()));
                    Value::Object(m)
                }
                other => serde_json::json!({ "email": CANARY, "data": other }),
            })
            .collect();
        serde_json::json!({ "shipments": records })
    })
}

#[test]
fn a_descendant_rule_leaves_no_canary_and_changes_nothing_else() {
    let rule = Arc::new(Rule {
        caller: CallerFilter::NotController,
        ..Rule::new("emails", "$..email", Action::Redact).unwrap()
    });
    let plan = Plan::new(
        &[Path::compile("$.shipments[*]").unwrap()],
        None,
        &[rule],
        Purpose::Fulfillment,
    );
    let keys = HashKeys::default();
    runner(1000)
        .run(&shipments(), |body| {
            let text = serde_json::to_vec(&body).unwrap();
            let doc = Document::parse(&text).unwrap();
            let nodes = plan.find_records(&doc).unwrap();
            let records: Vec<Record> = nodes
                .iter()
                .map(|&node| Record {
                    node,
                    relation: Relation::NotController,
                    controller: None,
                })
                .collect();
            let applied = plan.apply(
                &doc,
                Direction::Response,
                &records,
                Relation::NotController,
                &keys,
            );
            let out = redact::render_if_changed(&doc, &applied).unwrap_or(text.clone());
            let out_text = String::from_utf8(out.clone()).unwrap();
            prop_assert!(!out_text.contains(CANARY), "{}", out_text);
            // With every e-mail blanked, output and input are the same document: nothing else
            // moved. (Both are read by serde_json, whose float parsing is not exact.)
            let mut expected: Value = serde_json::from_slice(&text).unwrap();
            restore(&mut expected);
            let mut got: Value = serde_json::from_slice(&out).unwrap();
            restore(&mut got);
            prop_assert_eq!(got, expected);
            Ok(())
        })
        .unwrap();
}

/// Sets every `email` member to a fixed value, so redacted and original documents compare equal.
fn restore(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "email" {
                    *v = Value::Null;
                } else {
                    restore(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(restore),
        _ => {}
    }
}
