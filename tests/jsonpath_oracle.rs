//! Differential property test: the compiled one-pass matcher selects exactly the nodes that
//! jsonpath-rust (the RFC 9535 reference used to validate paths) selects, on generated documents
//! and generated paths, filters included where jsonpath-rust follows the RFC ([`FILTERS`]; the
//! compliance suite, `tests/jsonpath_cts.rs`, is the authority on the rest). Fixed seed and
//! bounded cases so CI is repeatable.

use std::collections::BTreeSet;

use jsonpath_rust::JsonPath;
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, RngAlgorithm, TestRng, TestRunner,
};
use recipient_gateway::json::Document;
use recipient_gateway::redact::matcher::Matcher;
use recipient_gateway::redact::path::Path;
use serde_json::Value;

const NAMES: &[&str] = &["a", "b", "email", "it's", "é"];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..50).prop_map(Value::from),
        "[a-z@.]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(NAMES), inner, 0..5).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn quoted(name: &str) -> String {
    format!("'{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Filters on which jsonpath-rust follows the RFC: existence, comparisons with literals and
/// between members, logic, and the functions.
const FILTERS: &[&str] = &[
    "?@.a",
    "?!@.a",
    "?@.a == 1",
    "?@.a != 1",
    "?@.b > 2",
    "?@.b <= 3",
    "?@.email == 'x'",
    "?@.a && @.b",
    "?@.a || @.email",
    "?@.a == @.b",
    "?@ == 'a'",
    "?@ > 10",
    "?length(@) > 2",
    "?count(@.*) > 1",
    "?match(@, '[a-z]+')",
    "?search(@.email, '@')",
    "?@.a == null",
    "?@.b == true",
];

fn selector() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(FILTERS).prop_map(str::to_string),
        prop::sample::select(NAMES).prop_map(quoted),
        Just("*".to_string()),
        (-4i64..5).prop_map(|i| i.to_string()),
        (
            prop::option::of(-4i64..5),
            prop::option::of(-4i64..5),
            prop::option::of(prop_oneof![-2i64..0, 1i64..3])
        )
            .prop_map(|(s, e, st)| {
                let f = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
                match st {
                    Some(st) => format!("{}:{}:{st}", f(s), f(e)),
                    None => format!("{}:{}", f(s), f(e)),
                }
            }),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&["a", "b", "email"][..]).prop_map(|n| format!(".{n}")),
        2 => prop::collection::vec(selector(), 1..3).prop_map(|s| format!("[{}]", s.join(","))),
        1 => Just(".*".to_string()),
        1 => prop::sample::select(&["a", "b", "email"][..]).prop_map(|n| format!("..{n}")),
        1 => Just("..*".to_string()),
        1 => selector().prop_map(|s| format!("..[{s}]")),
    ]
}

fn json_path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..4).prop_map(|segments| format!("${}", segments.concat()))
}

#[test]
fn matcher_selects_exactly_what_jsonpath_rust_selects() {
    let config = ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    // Several paths at once, so prefix sharing in the matcher's trie is exercised too.
    runner
        .run(
            &(json_value(), prop::collection::vec(json_path(), 1..5)),
            |(value, paths)| {
                let text = serde_json::to_string(&value).unwrap();
                let mut compiled = Vec::new();
                let mut expected = Vec::new();
                for path in &paths {
                    match value.query_only_path(path) {
                        Ok(found) => {
                            compiled.push(Path::compile(path).map_err(TestCaseError::fail)?);
                            expected.push(found.into_iter().collect::<BTreeSet<String>>());
                        }
                        // Paths the reference rejects must be rejected at load time too.
                        Err(_) => prop_assert!(
                            Path::compile(path).is_err(),
                            "{path} compiled but the reference rejects it"
                        ),
                    }
                }
                let doc = Document::parse(text.as_bytes()).unwrap();
                let mut got = vec![BTreeSet::new(); compiled.len()];
                Matcher::new(compiled).run(&doc, 0, &|_| false, &mut |index, node| {
                    got[index].insert(doc.path_of(node));
                });
                prop_assert_eq!(got, expected, "paths {:?} on {}", paths, text);
                Ok(())
            },
        )
        .unwrap();
}
