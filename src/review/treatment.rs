//! What a route does to one field for one caller: the answer the change review compares.
//!
//! A field is named by a path from a rule or a record selector. To learn how a route treats it,
//! the review does not reason about paths: it builds a *witness*, the smallest body in which that
//! path selects a value, and runs the route's compiled plan on it as the proxy would (strict
//! parse, record selection and shape checks, relations, rules). So a rule `$..email` in one
//! config and `$.recipient.email` in the other are compared by what each does to the same bodies,
//! and the answer cannot disagree with the traffic.
//!
//! A witness takes one reading of each step: a name is that member (a union gives a witness per
//! name); `..` goes one member deeper than the step before (so `$..x` and `$.x` differ); a
//! wildcard is the middle element of three (so `[0]` or `[-1]` in its place select less); an
//! index or slice is an element of an array long enough to hold it. A filter has no witness.

use std::fmt;

use crate::config::{Route, UnknownController};
use crate::json::{Document, Kind, NodeId};
use crate::redact::path::{Path, Sel};
use crate::redact::{self, Action, Caller, HashKeys, Relation};
use crate::vocabulary::Direction;

/// How a caller receives a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Unchanged.
    Visible,
    /// Masked, keeping (first, last) characters.
    Masked(usize, usize),
    /// Replaced by a per-controller pseudonym.
    Pseudonymised,
    /// Replaced by `"[REDACTED]"`.
    Redacted,
    /// Taken out of the body.
    Removed,
    /// The whole body is refused (its shape breaks the route's record or recipient rules).
    Refused,
}

impl Treatment {
    fn rank(self) -> u8 {
        match self {
            Treatment::Visible => 0,
            Treatment::Masked(..) => 1,
            Treatment::Pseudonymised => 2,
            Treatment::Redacted => 3,
            Treatment::Removed => 4,
            Treatment::Refused => 5,
        }
    }

    /// Whether a caller who got `self` gets more with `after`: a weaker treatment (the engine's
    /// order, remove > redact > hash > mask, as when rules compete), or a mask keeping more
    /// characters at either end.
    pub fn widened_by(self, after: Treatment) -> bool {
        match (self, after) {
            (Treatment::Masked(f0, l0), Treatment::Masked(f1, l1)) => f1 > f0 || l1 > l0,
            _ => after.rank() < self.rank(),
        }
    }

    /// The class name in the HTML matrix.
    pub fn class(self) -> &'static str {
        match self {
            Treatment::Visible => "visible",
            Treatment::Masked(..) => "masked",
            Treatment::Pseudonymised => "pseudonymised",
            Treatment::Redacted => "redacted",
            Treatment::Removed => "removed",
            Treatment::Refused => "refused",
        }
    }

    /// What a rule's action does.
    pub fn of(action: Action, mask: (usize, usize)) -> Treatment {
        match action {
            Action::Remove => Treatment::Removed,
            Action::Redact => Treatment::Redacted,
            Action::Hash => Treatment::Pseudonymised,
            Action::Mask => Treatment::Masked(mask.0, mask.1),
        }
    }
}

impl fmt::Display for Treatment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Treatment::Masked(first, last) => {
                write!(f, "masked (keeps first {first}, last {last})")
            }
            other => f.write_str(other.class()),
        }
    }
}

/// Who calls, as the rules see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerClass {
    /// The customer that controls the record.
    Controller,
    /// Another customer.
    OtherCustomer,
    /// A platform service (never a controller), under the route's purpose.
    Internal,
    /// A customer reading a record whose controller is unknown (`unknown_controller` decides).
    UnknownController,
}

impl CallerClass {
    /// Every class, in report order.
    pub const ALL: [CallerClass; 4] = [
        CallerClass::Controller,
        CallerClass::OtherCustomer,
        CallerClass::Internal,
        CallerClass::UnknownController,
    ];

    /// The label in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerClass::Controller => "controller",
            CallerClass::OtherCustomer => "other_customer",
            CallerClass::Internal => "internal",
            CallerClass::UnknownController => "unknown_controller",
        }
    }

    /// The label in words, for the HTML matrix.
    pub fn words(self) -> &'static str {
        match self {
            CallerClass::Controller => "the record's controller",
            CallerClass::OtherCustomer => "another customer",
            CallerClass::Internal => "an internal service",
            CallerClass::UnknownController => "a customer, controller unknown",
        }
    }

    /// The relation the rules see for this class on `route`.
    pub fn relation(self, route: &Route) -> Relation {
        let (caller, controller) = self.parties(route, "customer");
        redact::relation(caller.customer, controller, caller.unknown_is_caller)
    }

    /// The caller and each record's controller the engine is given for this class, with
    /// `customer` (one the hash keys know, so pseudonyms are made as in traffic) as the
    /// controller.
    fn parties<'c>(self, route: &Route, customer: &'c str) -> (Caller<'c>, Option<&'c str>) {
        let unknown_is_caller = route.unknown_controller == UnknownController::Caller;
        let (customer, controller) = match self {
            CallerClass::Controller => (Some(customer), Some(customer)),
            CallerClass::OtherCustomer => (Some(OTHER_CUSTOMER), Some(customer)),
            CallerClass::Internal => (None, Some(customer)),
            CallerClass::UnknownController => (Some(customer), None),
        };
        (
            Caller {
                customer,
                unknown_is_caller,
            },
            controller,
        )
    }
}

/// The customer id of the "another customer" class: not a client id (those are lower-case).
const OTHER_CUSTOMER: &str = "Another customer";

/// One step of a witness.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hop {
    /// A member of an object.
    Member(String),
    /// Element `at` of an array of `len`.
    Element { at: usize, len: usize },
}

/// The smallest body in which a path selects a value, with the path in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    hops: Vec<Hop>,
    /// The value is a record (an object), not a field (a string).
    record: bool,
    /// The field as a reviewer reads it: `$.shipments[*].recipient.email`.
    pub label: String,
}

/// The member a witness nests a `..` step under: not a name an API uses.
const NESTED: &str = "(nested)";
/// Longest array a witness builds for an index.
const MAX_INDEX: usize = 64;
/// Most witnesses one path expands to (unions and wildcards multiply).
const MAX_WITNESSES: usize = 16;

impl Witness {
    /// The root of the body.
    pub fn root() -> Witness {
        Witness {
            hops: Vec::new(),
            record: false,
            label: "$".to_string(),
        }
    }

    /// The records a record selector takes: its witnesses, each holding an object.
    pub fn records(selector: &Path) -> Vec<Witness> {
        let mut found = Witness::root().extend(selector);
        for witness in &mut found {
            witness.record = true;
        }
        found
    }

    /// Whether `route` takes the witness's value for a record.
    pub fn is_record(&self, route: &Route) -> bool {
        let body = self.body();
        let doc = Document::parse(&body).expect("a witness is strict JSON");
        let target = self.target(&doc).expect("a witness holds its value");
        route
            .plan
            .find_records(&doc)
            .is_ok_and(|records| records.contains(&target))
    }

    /// The witnesses of `path` below this one; empty when the path has a filter, selects
    /// nothing, or would need an array longer than 64 elements.
    pub fn extend(&self, path: &Path) -> Vec<Witness> {
        let mut out = vec![self.clone()];
        for step in &path.steps {
            let mut next = Vec::new();
            for witness in &out {
                let mut base = witness.clone();
                if step.descendant {
                    base.hops.push(Hop::Member(NESTED.to_string()));
                    base.label.push('.');
                }
                for sel in &step.selectors {
                    let hops: Vec<(Hop, String)> = match sel {
                        Sel::Name(name) => vec![(Hop::Member(name.clone()), member_label(name))],
                        Sel::Wildcard => vec![(Hop::Element { at: 1, len: 3 }, "[*]".to_string())],
                        Sel::Index(i) => element(*i).into_iter().collect(),
                        Sel::Slice(start, end, by) => {
                            let len = 4;
                            crate::redact::path::slice_indexes(len, *start, *end, *by)
                                .first()
                                .map(|&at| {
                                    let label = format!(
                                        "[{}:{}{}]",
                                        start.map_or(String::new(), |s| s.to_string()),
                                        end.map_or(String::new(), |e| e.to_string()),
                                        by.map_or(String::new(), |b| format!(":{b}"))
                                    );
                                    (
                                        Hop::Element {
                                            at: at as usize,
                                            len: len as usize,
                                        },
                                        label,
                                    )
                                })
                                .into_iter()
                                .collect()
                        }
                        Sel::Filter(_) => return Vec::new(),
                    };
                    for (hop, label) in hops {
                        let mut w = base.clone();
                        if step.descendant && label.starts_with('[') {
                            w.label.push('.');
                        }
                        w.hops.push(hop);
                        w.record = false;
                        w.label.push_str(&label);
                        next.push(w);
                    }
                }
            }
            next.truncate(MAX_WITNESSES);
            out = next;
        }
        out
    }

    /// The witness body: a string (an empty object for a record) at the end of the hops, and
    /// copies of it beside it in arrays.
    fn body(&self) -> Vec<u8> {
        let mut value = if self.record {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::Value::String("witness value".to_string())
        };
        for hop in self.hops.iter().rev() {
            value = match hop {
                Hop::Member(name) => {
                    let mut object = serde_json::Map::new();
                    object.insert(name.clone(), value);
                    serde_json::Value::Object(object)
                }
                // The other elements are copies, so a record selector finds only records.
                Hop::Element { len, .. } => serde_json::Value::Array(vec![value; *len]),
            };
        }
        serde_json::to_vec(&value).expect("a witness serialises")
    }

    /// The witness's value in its parsed body.
    fn target(&self, doc: &Document<'_>) -> Option<NodeId> {
        let mut node: NodeId = 0;
        for hop in &self.hops {
            node = match hop {
                Hop::Member(name) => doc.member(node, name)?,
                Hop::Element { at, .. } => {
                    (doc.node(node).kind == Kind::Array).then_some(())?;
                    doc.children(node).nth(*at)?
                }
            };
        }
        Some(node)
    }
}

fn element(i: i64) -> Option<(Hop, String)> {
    let (at, len) = if i >= 0 {
        (i as usize, i as usize + 1)
    } else {
        (0, i.unsigned_abs() as usize)
    };
    (len <= MAX_INDEX).then(|| (Hop::Element { at, len }, format!("[{i}]")))
}

/// `.name` where that reads unambiguously, else `['name']` with `'` and `\` escaped.
fn member_label(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!(".{name}")
    } else {
        format!("['{}']", name.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// How `route` treats a field for a caller class, and the rule responsible (`None`: no rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What the caller gets.
    pub treatment: Treatment,
    /// The rule that decided it, or the reason the body is refused.
    pub because: Option<String>,
}

/// Whom a change review evaluates rules for: the hash keys, and the customer that controls the
/// witnesses' records (one the keys know).
pub struct Parties<'k> {
    /// The hash keys of the config under review.
    pub keys: &'k HashKeys,
    /// A customer id the keys know, or any id when the config has no customer.
    pub customer: &'k str,
}

impl Outcome {
    /// The rule responsible, in words (`no rule` when none is).
    pub fn cause(&self) -> &str {
        self.because.as_deref().unwrap_or("no rule")
    }
}

/// What `route` does to the value at `witness` in `direction` for `class`.
pub fn outcome(
    route: &Route,
    witness: &Witness,
    direction: Direction,
    class: CallerClass,
    parties: &Parties<'_>,
) -> Outcome {
    let body = witness.body();
    let doc = Document::parse(&body).expect("a witness is strict JSON");
    let target = witness.target(&doc).expect("a witness holds its value");
    outcomes(route, &doc, direction, class, parties).swap_remove(target as usize)
}

/// What `route` does to every node of `doc` (a sample body) in `direction` for `class`, indexed
/// like the document's nodes: each node gets the edit on itself or on the nearest ancestor that
/// holds it.
pub fn outcomes(
    route: &Route,
    doc: &Document<'_>,
    direction: Direction,
    class: CallerClass,
    parties: &Parties<'_>,
) -> Vec<Outcome> {
    let visible = Outcome {
        treatment: Treatment::Visible,
        because: None,
    };
    if !route.inspected() {
        return vec![visible; doc.nodes.len()];
    }
    let records = match route.plan.find_records(doc) {
        Ok(records) => records,
        Err(shape) => {
            let refused = Outcome {
                treatment: Treatment::Refused,
                because: Some(format!("the body is refused: {shape}")),
            };
            return vec![refused; doc.nodes.len()];
        }
    };
    let (caller, controller) = class.parties(route, parties.customer);
    let applied = redact::redact_records(
        &route.plan,
        doc,
        direction,
        caller,
        records.iter().map(|&node| (node, controller)),
        parties.keys,
    );
    // Nodes come parents first, so each inherits its parent's answer unless edited itself.
    let mut out: Vec<Outcome> = Vec::with_capacity(doc.nodes.len());
    for (id, node) in doc.nodes.iter().enumerate() {
        let own = applied.changes.iter().find(|c| c.node as usize == id);
        let outcome = match own {
            Some(change) => Outcome {
                treatment: Treatment::of(change.action, change.rule.mask),
                because: Some(format!("rule `{}`", change.rule.id)),
            },
            None if node.parent == crate::json::NONE => visible.clone(),
            None => out[node.parent as usize].clone(),
        };
        out.push(outcome);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn witnesses(path: &str) -> Vec<String> {
        Witness::root()
            .extend(&Path::compile(path).unwrap())
            .iter()
            .map(|w| format!("{} {}", w.label, String::from_utf8(w.body()).unwrap()))
            .collect()
    }

    #[test]
    fn witnesses_are_the_smallest_bodies_a_path_selects_in() {
        assert_eq!(
            witnesses("$.a['b','c d']"),
            [
                r#"$.a.b {"a":{"b":"witness value"}}"#,
                r#"$.a['c d'] {"a":{"c d":"witness value"}}"#
            ]
        );
        assert_eq!(
            witnesses("$..x"),
            [r#"$..x {"(nested)":{"x":"witness value"}}"#]
        );
        assert_eq!(
            witnesses("$.p[*]"),
            [r#"$.p[*] {"p":["witness value","witness value","witness value"]}"#]
        );
        assert_eq!(
            witnesses("$.p[-2]"),
            [r#"$.p[-2] {"p":["witness value","witness value"]}"#]
        );
        assert_eq!(
            witnesses("$..[0]"),
            [r#"$..[0] {"(nested)":["witness value"]}"#]
        );
        assert_eq!(witnesses("$.p[?@.x == 1]"), Vec::<String>::new());
        assert_eq!(witnesses("$.p[1000]"), Vec::<String>::new());
    }

    #[test]
    fn masks_widen_by_what_they_keep() {
        let mask = Treatment::Masked(2, 0);
        assert!(mask.widened_by(Treatment::Masked(3, 0)));
        assert!(mask.widened_by(Treatment::Masked(0, 1)));
        assert!(!mask.widened_by(Treatment::Masked(1, 0)));
        assert!(Treatment::Removed.widened_by(Treatment::Redacted));
        assert!(Treatment::Redacted.widened_by(mask));
        assert!(!mask.widened_by(Treatment::Pseudonymised));
        assert!(Treatment::Refused.widened_by(Treatment::Removed));
    }
}
