//! `test-rules DIR` (reference §7.3): each `*.json` in DIR is a case
//! `{"name", "route", "direction", "caller", "controller", "input", "expect"}`; it passes when the
//! body the gateway would forward equals `expect` as JSON.
//!
//! Cases run through [`super::dry_run`]: the proxy's strict parser, record selection and shape
//! checks, relations, the route's compiled plan and rendering, with `controller` standing in for
//! what tags would say. The `input` member's bytes are taken from the case file as written, so
//! number spellings, key order and escapes reach the engine exactly as a client would send them.

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use super::{DryRunError, dry_run};
use crate::config::Config;
use crate::json::{Document, Kind};
use crate::vocabulary::Direction;

/// How a case ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The output equals `expect`.
    Passed,
    /// The output differs from `expect` at these places.
    Failed(Vec<Difference>),
    /// The case could not run (malformed file, unknown route or client, body refused).
    Broken(String),
}

/// One place where output and expectation differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// JSONPath of the place.
    pub path: String,
    /// What the case expects there (`None`: nothing).
    pub expected: Option<Value>,
    /// What the gateway produced there (`None`: nothing).
    pub got: Option<Value>,
}

/// One case's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The file name.
    pub file: String,
    /// The case's `name` (the file name when unreadable).
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// Runs every `*.json` case in `dir`, sorted by file name.
pub fn run_dir(config: &Config, dir: &Path) -> std::io::Result<Vec<CaseResult>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"));
    files.sort();
    let mut results = Vec::with_capacity(files.len());
    for path in files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&path)?;
        let (name, outcome) = run_case(config, &bytes);
        results.push(CaseResult {
            name: name.unwrap_or_else(|| file.clone()),
            file,
            outcome,
        });
    }
    Ok(results)
}

/// The fields of a case file.
struct Case<'a> {
    name: String,
    route: String,
    direction: Direction,
    caller: String,
    controller: Option<String>,
    input: &'a [u8],
    expect: &'a [u8],
}

const MEMBERS: [&str; 7] = [
    "name",
    "route",
    "direction",
    "caller",
    "controller",
    "input",
    "expect",
];

fn parse_case(bytes: &[u8]) -> Result<Case<'_>, String> {
    let doc = Document::parse(bytes).map_err(|e| format!("the case file: {e}"))?;
    if doc.node(0).kind != Kind::Object {
        return Err("the case file must be a JSON object".into());
    }
    for member in doc.children(0) {
        let key = doc.key(member).unwrap_or_default();
        if !MEMBERS.contains(&key.as_ref()) {
            return Err(format!(
                "unknown member `{key}` (a case has {})",
                MEMBERS.join(", ")
            ));
        }
    }
    let string = |name: &str| -> Result<String, String> {
        let node = doc
            .member(0, name)
            .ok_or_else(|| format!("member `{name}` is missing"))?;
        doc.str_value(node)
            .map(|s| s.into_owned())
            .ok_or_else(|| format!("member `{name}` must be a string"))
    };
    let raw = |name: &str| -> Result<&[u8], String> {
        doc.member(0, name)
            .map(|node| doc.raw(node))
            .ok_or_else(|| format!("member `{name}` is missing"))
    };
    let direction = match string("direction")?.as_str() {
        "request" => Direction::Request,
        "response" => Direction::Response,
        _ => return Err("member `direction` must be \"request\" or \"response\"".into()),
    };
    let controller = match doc.member(0, "controller") {
        None => return Err("member `controller` is missing (null for unknown)".into()),
        Some(node) if doc.node(node).kind == Kind::Null => None,
        Some(_) => Some(string("controller")?),
    };
    Ok(Case {
        name: string("name")?,
        route: string("route")?,
        direction,
        caller: string("caller")?,
        controller,
        input: raw("input")?,
        expect: raw("expect")?,
    })
}

/// Runs one case file; returns its name (when readable) and outcome.
pub fn run_case(config: &Config, bytes: &[u8]) -> (Option<String>, Outcome) {
    let case = match parse_case(bytes) {
        Ok(case) => case,
        Err(error) => return (None, Outcome::Broken(error)),
    };
    let name = Some(case.name.clone());
    let output = match dry_run(
        config,
        &case.route,
        case.direction,
        &case.caller,
        case.controller.as_deref(),
        case.input,
    ) {
        Ok(result) => result.body,
        Err(error @ DryRunError::Refused(_)) => {
            return (name, Outcome::Broken(format!("{error}: check `input`")));
        }
        Err(error) => return (name, Outcome::Broken(error.to_string())),
    };
    let got: Value = serde_json::from_slice(&output).expect("the gateway renders valid JSON");
    let expected: Value =
        serde_json::from_slice(case.expect).expect("validated by the strict parser");
    let mut differences = Vec::new();
    diff("$", Some(&expected), Some(&got), &mut differences);
    if differences.is_empty() {
        (name, Outcome::Passed)
    } else {
        (name, Outcome::Failed(differences))
    }
}

/// Collects the places where `expected` and `got` differ, most specific first.
fn diff(path: &str, expected: Option<&Value>, got: Option<&Value>, out: &mut Vec<Difference>) {
    match (expected, got) {
        (Some(Value::Object(e)), Some(Value::Object(g))) => {
            for (key, value) in e {
                diff(&member_path(path, key), Some(value), g.get(key), out);
            }
            for (key, value) in g.iter().filter(|(k, _)| !e.contains_key(*k)) {
                diff(&member_path(path, key), None, Some(value), out);
            }
        }
        (Some(Value::Array(e)), Some(Value::Array(g))) => {
            for i in 0..e.len().max(g.len()) {
                diff(&format!("{path}[{i}]"), e.get(i), g.get(i), out);
            }
        }
        (e, g) if e != g => out.push(Difference {
            path: path.to_string(),
            expected: e.cloned(),
            got: g.cloned(),
        }),
        _ => {}
    }
}

fn member_path(parent: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{parent}.{key}")
    } else {
        format!(
            "{parent}[{}]",
            serde_json::to_string(key).expect("a string serialises")
        )
    }
}

/// The report: one block per failing case, then `N passed, M failed`.
pub fn render(results: &[CaseResult]) -> String {
    let mut out = String::new();
    let show = |v: &Option<Value>| v.as_ref().map_or("nothing".to_string(), Value::to_string);
    for result in results {
        match &result.outcome {
            Outcome::Passed => {}
            Outcome::Failed(differences) => {
                let _ = writeln!(out, "FAIL {} ({})", result.file, result.name);
                for d in differences {
                    let _ = writeln!(
                        out,
                        "  at {}: expected {}, got {}",
                        d.path,
                        show(&d.expected),
                        show(&d.got)
                    );
                }
            }
            Outcome::Broken(error) => {
                let _ = writeln!(out, "FAIL {} ({}): {error}", result.file, result.name);
            }
        }
    }
    let passed = results
        .iter()
        .filter(|r| r.outcome == Outcome::Passed)
        .count();
    let _ = writeln!(out, "{passed} passed, {} failed", results.len() - passed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_the_path_and_both_sides() {
        let expected =
            json!({"a": {"email": "[REDACTED]", "b": [1, 2]}, "gone": true, "we ird": 1});
        let got = json!({"a": {"email": "x@y.z", "b": [1]}, "extra": null, "we ird": 1});
        let mut out = Vec::new();
        diff("$", Some(&expected), Some(&got), &mut out);
        let shown: Vec<(String, Option<Value>, Option<Value>)> = out
            .into_iter()
            .map(|d| (d.path, d.expected, d.got))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("$.a.b[1]".into(), Some(json!(2)), None),
                (
                    "$.a.email".into(),
                    Some(json!("[REDACTED]")),
                    Some(json!("x@y.z"))
                ),
                ("$.gone".into(), Some(json!(true)), None),
                ("$.extra".into(), None, Some(Value::Null)),
            ]
        );
    }
}
