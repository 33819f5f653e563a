//! Fuzz harnesses, shared by the cargo-fuzz targets in `fuzz/` and the corpus replay test that
//! `cargo test` runs. Each takes arbitrary bytes and panics only on a real bug.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use crate::config::{Action, Config, Purpose, Rule};
use crate::json::{Document, Kind, NodeId};
use crate::redact::{Direction, HashKeys, Plan, Record, Relation};

/// Rules the JSON harness applies: every `email` redacted, every `phone` removed, wherever they
/// are in the record.
static PLAN: LazyLock<Plan> = LazyLock::new(|| {
    let rules = vec![
        Arc::new(Rule::new("fuzz-email", "$..email", Action::Redact).expect("valid path")),
        Arc::new(Rule::new("fuzz-phone", "$..phone", Action::Remove).expect("valid path")),
    ];
    let records = vec![crate::redact::path::Path::compile("$").expect("valid path")];
    Plan::new(&records, None, &rules, Purpose::Fulfillment)
});

/// The strict reader and the redactor on arbitrary bytes, with a canary oracle: in the output no
/// `email` member keeps a value other than `"[REDACTED]"`, no `phone` member is left, the output
/// is strict JSON again, and redacting it again changes nothing.
pub fn json_redact(data: &[u8]) {
    let Ok(doc) = Document::parse(data) else {
        return;
    };
    let Ok(records) = PLAN.find_records(&doc).map(as_strangers) else {
        return;
    };
    let keys = HashKeys::default();
    let applied = PLAN.apply(
        &doc,
        Direction::Response,
        &records,
        Relation::NotController,
        &keys,
    );
    let output = if applied.edits.is_empty() {
        data.to_vec()
    } else {
        doc.render(&applied.edits)
    };
    let again = Document::parse(&output).expect("the redacted output is strict JSON");
    if !records.is_empty() {
        check_canaries(&again, 0);
    }
    let records = as_strangers(
        PLAN.find_records(&again)
            .expect("the output keeps the record shape"),
    );
    let second = PLAN.apply(
        &again,
        Direction::Response,
        &records,
        Relation::NotController,
        &keys,
    );
    let rerendered = if second.edits.is_empty() {
        output.clone()
    } else {
        again.render(&second.edits)
    };
    assert_eq!(rerendered, output, "redaction is idempotent");
}

/// Records as a caller who controls none of them sees them.
fn as_strangers(nodes: Vec<NodeId>) -> Vec<Record<'static>> {
    nodes
        .into_iter()
        .map(|node| Record {
            node,
            relation: Relation::NotController,
            controller: None,
        })
        .collect()
}

/// Walks the whole document: every `email` is redacted, no `phone` is left.
fn check_canaries(doc: &Document<'_>, node: NodeId) {
    if let Some(key) = doc.key(node) {
        assert_ne!(
            key,
            "phone",
            "a phone member survived at {}",
            doc.path_of(node)
        );
        if key == "email" {
            assert_eq!(
                doc.raw(node),
                b"\"[REDACTED]\"",
                "an email survived at {}",
                doc.path_of(node)
            );
            return;
        }
    }
    if matches!(doc.node(node).kind, Kind::Object | Kind::Array) {
        for child in doc.children(node) {
            check_canaries(doc, child);
        }
    }
}

/// The config loader on arbitrary text: it answers a config or one error sentence, never panics,
/// and never puts a secret into an error.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env =
        |name: &str| (name == "FUZZ_SECRET").then(|| "fuzz-secret-value-0123456789".to_string());
    match Config::from_toml(Path::new("/nonexistent/fuzz/gateway.toml"), text, &env) {
        Ok(config) => {
            let shown = format!("{config:?}");
            assert!(
                !shown.contains("fuzz-secret-value"),
                "a secret in Debug output"
            );
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty());
            assert!(!message.contains("fuzz-secret-value"), "{message}");
        }
    }
}
