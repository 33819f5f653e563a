//! The JSONPath Compliance Test Suite (RFC 9535), run through the engine's own API: every invalid
//! selector refused when a rule is compiled, every valid one selecting exactly the suite's result
//! paths. `tests/cts/cts.json` is the suite as published (jsonpath-standard/
//! jsonpath-compliance-test-suite, commit 7be7c1f, 2026-05-20; BSD-2, `tests/cts/LICENSE`).
//!
//! Documents the gateway's strict reader refuses by design are named in [`REFUSED_BY_DESIGN`]:
//! member names with control characters, which a redaction gateway never forwards.

use std::collections::BTreeSet;

use recipient_gateway::json::Document;
use recipient_gateway::redact::matcher::Matcher;
use recipient_gateway::redact::path::Path;
use serde_json::Value;

/// Cases whose document the strict reader refuses, on purpose: a member name holding a control
/// character (U+0000–U+001F) is refused in any body the gateway inspects.
const REFUSED_BY_DESIGN: &[&str] = &[
    "name selector, double quotes, escaped backspace",
    "name selector, double quotes, escaped form feed",
    "name selector, double quotes, escaped line feed",
    "name selector, double quotes, escaped carriage return",
    "name selector, double quotes, escaped tab",
    "name selector, single quotes, escaped backspace",
    "name selector, single quotes, escaped form feed",
    "name selector, single quotes, escaped line feed",
    "name selector, single quotes, escaped carriage return",
    "name selector, single quotes, escaped tab",
];

struct Outcome {
    passed: usize,
    failures: Vec<String>,
    refused: Vec<String>,
}

fn run_case(case: &Value, outcome: &mut Outcome) {
    let name = case["name"].as_str().unwrap().to_string();
    let selector = case["selector"].as_str().unwrap();
    let compiled = Path::compile(selector);
    if case["invalid_selector"] == true {
        match compiled {
            Err(_) => outcome.passed += 1,
            Ok(_) => outcome.failures.push(format!(
                "{name}: `{selector}` accepted, the suite says invalid"
            )),
        }
        return;
    }
    let path = match compiled {
        Ok(path) => path,
        Err(error) => {
            outcome.failures.push(format!("{name}: refused: {error}"));
            return;
        }
    };
    let bytes = serde_json::to_vec(&case["document"]).unwrap();
    let doc = match Document::parse(&bytes) {
        Ok(doc) => doc,
        Err(error) => {
            outcome.refused.push(format!("{name}: {error}"));
            return;
        }
    };
    let matcher = Matcher::new(vec![path]);
    let mut got = BTreeSet::new();
    matcher.run(&doc, 0, &|_| false, &mut |_, node| {
        got.insert(doc.path_of(node));
    });
    // Nodelists may repeat a node and, where member order is unspecified, come in several
    // orders; a redaction rule selects a set of nodes, so sets are compared.
    let alternatives: Vec<&Value> = match case.get("results_paths") {
        Some(all) => all.as_array().unwrap().iter().collect(),
        None => vec![&case["result_paths"]],
    };
    let matches = alternatives.iter().any(|paths| {
        let want: BTreeSet<String> = paths
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        want == got
    });
    if matches {
        outcome.passed += 1;
    } else {
        outcome.failures.push(format!(
            "{name}: `{selector}` selected {got:?}, want {}",
            alternatives[0]
        ));
    }
}

#[test]
fn every_case_of_the_compliance_suite() {
    let suite: Value =
        serde_json::from_str(include_str!("cts/cts.json")).expect("the suite is JSON");
    let cases = suite["tests"].as_array().unwrap();
    let mut outcome = Outcome {
        passed: 0,
        failures: Vec::new(),
        refused: Vec::new(),
    };
    for case in cases {
        run_case(case, &mut outcome);
    }
    eprintln!(
        "{} cases: {} pass, {} fail, {} documents refused by the strict reader",
        cases.len(),
        outcome.passed,
        outcome.failures.len(),
        outcome.refused.len()
    );
    for failure in &outcome.failures {
        eprintln!("FAIL {failure}");
    }
    let refused: Vec<&str> = outcome
        .refused
        .iter()
        .map(|r| r.split(':').next().unwrap())
        .collect();
    for r in &outcome.refused {
        eprintln!("REFUSED {r}");
    }
    assert_eq!(refused, REFUSED_BY_DESIGN, "documents refused");
    assert!(
        outcome.failures.is_empty(),
        "{} failures",
        outcome.failures.len()
    );
}
