//! `check --samples DIR`: what the rules do to real payloads.
//!
//! `DIR/<route>/*.json` are sample bodies: response bodies, except files named `*.request.json`.
//! Each sample goes through the route's compiled plan (the proxy's code) once per caller relation,
//! with every record's controller unknown to the engine, and two things are reported:
//!
//! - **dead rules**: rules of the route that changed nothing in any sample of a direction they
//!   apply to (a path that no longer matches the API, or a rule always pre-empted by a stronger
//!   one). Rules for a direction with no samples are listed as not exercised, not as dead.
//! - **uncovered personal-data candidates**: values inside records that look like personal data
//!   of a category the privacy policy names ([`super::detect`]: contact data, names, government
//!   ids, precise locations, IP addresses, cards, dates of birth, signatures, photos, labels) and
//!   that a `not_controller` caller receives in a response unchanged. Only the path, the kind and
//!   its category are reported, never the value, with the rule that would cover it.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use super::detect::{self, Candidate, Context};
use crate::config::Route;
use crate::inspect::Reason;
use crate::json::{Document, Edits, Kind, NodeId};
use crate::redact::{HashKeys, Record, Relation};
use crate::vocabulary::Direction;

/// One sample body.
#[derive(Debug, Clone)]
pub struct Sample {
    /// File name, for findings.
    pub name: String,
    /// Which body it is.
    pub direction: Direction,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Reads `dir/<route>/*.json`, sorted by name; an absent folder is no samples.
pub fn load_samples(dir: &Path, route: &str) -> std::io::Result<Vec<Sample>> {
    let folder = dir.join(route);
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(&folder)? {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !name.ends_with(".json") || !path.is_file() {
            continue;
        }
        let direction = if name.ends_with(".request.json") {
            Direction::Request
        } else {
            Direction::Response
        };
        let bytes = std::fs::read(&path)?;
        samples.push(Sample {
            name,
            direction,
            bytes,
        });
    }
    samples.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(samples)
}

/// Subfolders of `dir` that name no route (a typo would silently leave a route unsampled).
pub fn unknown_folders(dir: &Path, routes: &[&str]) -> std::io::Result<Vec<String>> {
    let mut unknown = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !routes.contains(&name.as_str()) {
            unknown.push(name);
        }
    }
    unknown.sort();
    Ok(unknown)
}

/// A value a non-controller receives unchanged that looks like personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uncovered {
    /// The sample file.
    pub sample: String,
    /// Concrete JSONPath of the value in the sample.
    pub path: String,
    /// What it looks like.
    pub kind: Candidate,
    /// Its data category (fideslang).
    pub category: &'static str,
    /// The same place relative to its record, every array index a wildcard: the path a rule
    /// covering it would take (`$.recipient.dob`).
    pub record_path: String,
}

/// A sample the gateway would refuse (so it shows nothing about the rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// The sample file.
    pub sample: String,
    /// The fail-closed reason.
    pub reason: String,
}

/// Coverage of one route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteCoverage {
    /// Samples read.
    pub samples: usize,
    /// Directions with at least one sample.
    pub sampled_directions: Vec<&'static str>,
    /// Rules that changed nothing in any sample of their directions.
    pub dead_rules: Vec<String>,
    /// Rules that apply only in directions without samples.
    pub not_exercised: Vec<String>,
    /// Personal-data candidates a non-controller receives unchanged.
    pub uncovered: Vec<Uncovered>,
    /// Samples the gateway would refuse.
    pub refused: Vec<Refused>,
}

impl RouteCoverage {
    /// Findings that fail `--strict`.
    pub fn findings(&self) -> usize {
        self.dead_rules.len() + self.uncovered.len() + self.refused.len()
    }
}

/// Runs `samples` through `route`'s plan.
pub fn analyse(route: &Route, samples: &[Sample], keys: &HashKeys) -> RouteCoverage {
    let mut coverage = RouteCoverage {
        samples: samples.len(),
        ..RouteCoverage::default()
    };
    let sampled: BTreeSet<&'static str> = samples.iter().map(|s| s.direction.as_str()).collect();
    coverage.sampled_directions = Direction::ALL
        .iter()
        .map(|d| d.as_str())
        .filter(|d| sampled.contains(d))
        .collect();
    let mut changed: BTreeSet<String> = BTreeSet::new();
    for sample in samples {
        let doc = match Document::parse(&sample.bytes) {
            Ok(doc) => doc,
            Err(error) => {
                coverage.refused.push(Refused {
                    sample: sample.name.clone(),
                    reason: Reason::from(error).label().to_string(),
                });
                continue;
            }
        };
        let records = match route.plan.find_records(&doc) {
            Ok(records) => records,
            Err(error) => {
                coverage.refused.push(Refused {
                    sample: sample.name.clone(),
                    reason: Reason::from(error).label().to_string(),
                });
                continue;
            }
        };
        for relation in Relation::ALL {
            let records: Vec<Record> = records
                .iter()
                .map(|&node| Record {
                    node,
                    relation,
                    controller: None,
                })
                .collect();
            let applied = route
                .plan
                .apply(&doc, sample.direction, &records, relation, keys);
            changed.extend(applied.changes.iter().map(|c| c.rule.id.clone()));
            if relation == Relation::NotController && sample.direction == Direction::Response {
                let nodes: Vec<NodeId> = records.iter().map(|r| r.node).collect();
                for record in &records {
                    uncovered(
                        &doc,
                        (record.node, &nodes),
                        &applied.edits,
                        &sample.name,
                        &mut coverage,
                    );
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    for direction in Direction::ALL {
        for relation in Relation::ALL {
            for rule in route.plan.rules_for(direction, relation) {
                if !seen.insert(rule.id.clone()) || changed.contains(&rule.id) {
                    continue;
                }
                let directions: Vec<Direction> = Direction::ALL
                    .into_iter()
                    .filter(|d| {
                        Relation::ALL
                            .iter()
                            .any(|r| route.plan.rules_for(*d, *r).iter().any(|x| x.id == rule.id))
                    })
                    .collect();
                if directions.iter().any(|d| sampled.contains(d.as_str())) {
                    coverage.dead_rules.push(rule.id.clone());
                } else {
                    coverage.not_exercised.push(rule.id.clone());
                }
            }
        }
    }
    // Each relation's pass walks the same records.
    coverage
        .uncovered
        .sort_by(|a, b| (&a.sample, &a.path).cmp(&(&b.sample, &b.path)));
    coverage.uncovered.dedup();
    coverage
}

/// Adds every unchanged personal-data candidate under `record`; a record inside it (`$` and
/// `$.shipments[*]`) is left to its own walk, so each value is reported once, below the innermost
/// record, where a record-scoped rule would name it.
fn uncovered(
    doc: &Document<'_>,
    (record, records): (NodeId, &[NodeId]),
    edits: &Edits,
    sample: &str,
    coverage: &mut RouteCoverage,
) {
    // Each node with the kind of the detected object it is in, if any: that object is reported
    // whole, its other members (a signature image, an IP address beside the coordinates) each
    // on their own, and what made it that kind (its coordinates) not again.
    let mut stack = vec![(record, None)];
    while let Some((node, within)) = stack.pop() {
        if edits.covered(doc, node) || (node != record && records.contains(&node)) {
            continue;
        }
        let member = naming_member(doc, node);
        let parent = match doc.node(node).parent {
            crate::json::NONE => None,
            parent => naming_member(doc, parent),
        };
        let context = Context::new(member.as_deref(), parent.as_deref());
        let kind = match doc.node(node).kind {
            Kind::Object | Kind::Array => {
                let kind = container(doc, node, context);
                let mut children: Vec<NodeId> = doc.children(node).collect();
                children.reverse();
                stack.extend(children.into_iter().map(|child| (child, kind.or(within))));
                kind
            }
            Kind::String => doc
                .str_value(node)
                .and_then(|value| detect::classify(context, &value)),
            Kind::Number => std::str::from_utf8(doc.raw(node))
                .ok()
                .and_then(|text| detect::classify_number(context, text)),
            Kind::Null | Kind::Bool => None,
        };
        if let Some(kind) = kind.filter(|kind| Some(*kind) != within) {
            coverage.uncovered.push(Uncovered {
                sample: sample.to_string(),
                path: doc.path_of(node),
                kind,
                category: kind.category(),
                record_path: relative_path(doc, record, node),
            });
        }
    }
}

/// The member that names `node`: its key, or for an array element its array's key
/// (`"phones": [...]`).
fn naming_member(doc: &Document<'_>, node: NodeId) -> Option<String> {
    doc.key(node).map(|k| k.into_owned()).or_else(|| {
        let parent = doc.node(node).parent;
        (parent != crate::json::NONE)
            .then(|| doc.key(parent).map(|k| k.into_owned()))
            .flatten()
    })
}

/// An object or array that is personal data as a whole: a latitude/longitude object, a GeoJSON
/// point's coordinates, a `[lat, lng]` pair under a location member.
fn container(doc: &Document<'_>, node: NodeId, context: Context<'_>) -> Option<Candidate> {
    let number = |child: NodeId| -> Option<&str> {
        match doc.node(child).kind {
            Kind::Number => std::str::from_utf8(doc.raw(child)).ok(),
            _ => None,
        }
    };
    match doc.node(node).kind {
        Kind::Object => {
            let members: Vec<(String, &str)> = doc
                .children(node)
                .filter_map(|c| Some((doc.key(c)?.into_owned(), number(c)?)))
                .collect();
            let members: Vec<(&str, &str)> =
                members.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            detect::is_coordinate_object(&members).then_some(Candidate::PreciseLocation)
        }
        Kind::Array => {
            let numbers: Option<Vec<&str>> = doc.children(node).map(number).collect();
            let numbers = numbers?;
            let parent = doc.node(node).parent;
            let geojson_point = context.member == Some("coordinates")
                && parent != crate::json::NONE
                && doc.children(parent).any(|c| {
                    doc.key(c).as_deref() == Some("type")
                        && doc.str_value(c).as_deref() == Some("Point")
                });
            detect::is_coordinate_array(context, &numbers, geojson_point)
                .then_some(Candidate::PreciseLocation)
        }
        _ => None,
    }
}

/// `node`'s path below `record`, in dot notation where names allow, every index a wildcard.
fn relative_path(doc: &Document<'_>, record: NodeId, node: NodeId) -> String {
    let mut steps = Vec::new();
    let mut at = node;
    while at != record && at != crate::json::NONE {
        steps.push(match doc.key(at) {
            Some(key)
                if !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !key.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                format!(".{key}")
            }
            Some(key) => format!("['{}']", key.replace('\\', "\\\\").replace('\'', "\\'")),
            None => "[*]".to_string(),
        });
        at = doc.node(at).parent;
    }
    steps.reverse();
    format!("${}", steps.concat())
}
