//! The rule engine: which rules apply to which record, and what they do to the values they select.
//!
//! A route's rules are compiled at config load into a [`Plan`]: one [`Matcher`] per body
//! direction and caller relation, holding only the rules whose `when` admits that combination and
//! the route's purpose. At run time each record is walked once by the matcher for its relation;
//! body-scoped rules are walked once from the root. The result is a set of [`crate::json::Edit`]s on the parsed
//! [`Document`], so everything no rule touched is re-emitted byte for byte.
//!
//! Applying a plan is a pure function of the document, the records' relations and controllers, and
//! the hash keys: the proxy, `redact` and `test-rules` all call [`Plan::apply`]. The engine takes
//! plain parameters (a plan, a caller's customer id, whether an unknown controller counts as the
//! caller) and owns the rule vocabulary ([`rule`]): it knows nothing of config files.

pub mod actions;
mod compile;
pub mod context;
mod expr;
mod filter;
mod iregexp;
pub mod matcher;
pub mod path;
pub mod rule;
mod words;

use std::sync::Arc;

use crate::json::{Document, Edits, Kind, NONE, NodeId};
use crate::vocabulary::Direction;
use matcher::Matcher;
use path::Path;

pub use actions::HashKeys;
pub use rule::{Action, CallerFilter, DirectionFilter, Purpose, Rule, RuleScope};

/// The caller's relation to a record's controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The caller controls the record.
    Controller,
    /// Anyone else (other customers, internal services, anonymous callers, unknown controller).
    NotController,
}

impl Relation {
    /// Both, controller first.
    pub const ALL: [Relation; 2] = [Relation::Controller, Relation::NotController];

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Controller => "controller",
            Relation::NotController => "not_controller",
        }
    }

    fn index(self) -> usize {
        match self {
            Relation::Controller => 0,
            Relation::NotController => 1,
        }
    }
}

/// The rules that apply in one situation, and a matcher over their paths (same order).
#[derive(Debug, Clone)]
struct RuleSet {
    rules: Vec<Arc<Rule>>,
    matcher: Matcher,
}

impl RuleSet {
    fn new(rules: Vec<Arc<Rule>>) -> RuleSet {
        let matcher = Matcher::new(rules.iter().map(|r| r.path.clone()).collect());
        RuleSet { rules, matcher }
    }
}

/// A route's compiled rules and record selectors.
#[derive(Debug, Clone)]
pub struct Plan {
    records: Matcher,
    recipient: Option<String>,
    /// Record-scoped rules by `[direction][relation]`.
    record_rules: [[RuleSet; 2]; 2],
    /// Body-scoped rules by direction; their relation filter is checked per match.
    body_rules: [RuleSet; 2],
}

/// Why a body does not have the shape the route's config describes (fail closed: 400/502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A `records` selector matched something that is not an object.
    #[error("a record selector matched a value that is not an object")]
    RecordNotObject,
    /// The recipient member occurs outside a record, or holds neither an object nor null.
    #[error("the recipient member appears where the route does not expect it")]
    StrayRecipient,
}

/// One record found in a body, with what the engine needs to treat it.
#[derive(Debug, Clone)]
pub struct Record<'c> {
    /// The record's object node.
    pub node: NodeId,
    /// The caller's relation to its controller.
    pub relation: Relation,
    /// The controlling client id, when known (borrowed: a list has many records of the same few
    /// controllers, and cloning their `Arc`s made the worker threads contend).
    pub controller: Option<&'c str>,
}

/// A change the engine made, for `--explain`, metrics and the access log.
#[derive(Debug, Clone)]
pub struct Change<'p> {
    /// The rule that made it (borrowed from the plan: cloning an `Arc` per change made the
    /// worker threads contend for each rule's reference count).
    pub rule: &'p Rule,
    /// The node changed.
    pub node: NodeId,
    /// What was done (a `mask` of a non-string or a `hash` without a controller is a `redact`).
    pub action: Action,
}

/// The edits to apply and the changes they represent.
pub struct Applied<'p> {
    /// Edits for [`Document::render`].
    pub edits: Edits,
    /// One entry per edited node, in document order.
    pub changes: Vec<Change<'p>>,
}

impl Plan {
    /// Compiles the rules of a route for its purpose.
    pub fn new(
        records: &[Path],
        recipient: Option<&str>,
        rules: &[Arc<Rule>],
        purpose: Purpose,
    ) -> Plan {
        let applies = |rule: &Rule, direction: Direction| {
            rule.purposes.contains(&purpose)
                && match rule.direction {
                    DirectionFilter::Both => true,
                    DirectionFilter::Request => direction == Direction::Request,
                    DirectionFilter::Response => direction == Direction::Response,
                }
        };
        let set = |direction: Direction, relation: Option<Relation>, scope: RuleScope| {
            RuleSet::new(
                rules
                    .iter()
                    .filter(|r| r.scope == scope && applies(r, direction))
                    .filter(|r| relation.is_none_or(|rel| admits(r.caller, rel)))
                    .cloned()
                    .collect(),
            )
        };
        let by_relation = |direction| {
            [
                set(direction, Some(Relation::Controller), RuleScope::Record),
                set(direction, Some(Relation::NotController), RuleScope::Record),
            ]
        };
        Plan {
            records: Matcher::new(records.to_vec()),
            recipient: recipient.map(str::to_string),
            record_rules: [
                by_relation(Direction::Request),
                by_relation(Direction::Response),
            ],
            body_rules: [
                set(Direction::Request, None, RuleScope::Body),
                set(Direction::Response, None, RuleScope::Body),
            ],
        }
    }

    /// The rules that apply in `direction` to a caller with `relation`: record-scoped rules, then
    /// body-scoped ones that admit the relation. What the review report lists.
    pub fn rules_for(&self, direction: Direction, relation: Relation) -> Vec<Arc<Rule>> {
        let record = &self.record_rules[direction.index()][relation.index()].rules;
        let body = self.body_rules[direction.index()]
            .rules
            .iter()
            .filter(|rule| admits(rule.caller, relation));
        record.iter().chain(body).cloned().collect()
    }

    /// Finds the records of a body (objects selected by `records`, in document order) and checks
    /// the body's shape against the config.
    pub fn find_records(&self, doc: &Document<'_>) -> Result<Vec<NodeId>, ShapeError> {
        let mut records = Vec::new();
        self.records
            .run(doc, 0, &|_| false, &mut |_, node| records.push(node));
        records.sort_unstable();
        records.dedup();
        if records.iter().any(|&r| doc.node(r).kind != Kind::Object) {
            return Err(ShapeError::RecordNotObject);
        }
        if let Some(recipient) = &self.recipient {
            for (id, node) in doc.nodes.iter().enumerate() {
                if node.key_start == NONE || !doc.key_is(id as NodeId, recipient) {
                    continue;
                }
                let in_record = records.binary_search(&node.parent).is_ok();
                if !in_record || !matches!(node.kind, Kind::Object | Kind::Null) {
                    return Err(ShapeError::StrayRecipient);
                }
            }
        }
        Ok(records)
    }

    /// Computes the edits for a body in `direction` whose records are `records` (document
    /// order). `outside` is the relation for body-scoped matches outside every record.
    pub fn apply(
        &self,
        doc: &Document<'_>,
        direction: Direction,
        records: &[Record],
        outside: Relation,
        keys: &HashKeys,
    ) -> Applied<'_> {
        let mut is_record = vec![false; doc.nodes.len()];
        for record in records {
            is_record[record.node as usize] = true;
        }
        // (node, strength, rule, record index or NONE)
        let mut hits: Vec<(NodeId, u8, &Arc<Rule>, u32)> = Vec::new();
        let mut stack = Vec::with_capacity(16);
        for (index, record) in records.iter().enumerate() {
            let set = &self.record_rules[direction.index()][record.relation.index()];
            set.matcher.run_in(
                &mut stack,
                doc,
                record.node,
                &|n| is_record[n as usize],
                &mut |rule, node| {
                    let rule = &set.rules[rule];
                    hits.push((node, strength(rule.action), rule, index as u32));
                },
            );
        }
        let body = &self.body_rules[direction.index()];
        if !body.matcher.is_empty() {
            body.matcher.run(doc, 0, &|_| false, &mut |rule, node| {
                let rule = &body.rules[rule];
                let owner = enclosing_record(doc, node, &is_record, records);
                let relation = owner.map_or(outside, |i| records[i as usize].relation);
                if admits(rule.caller, relation) {
                    hits.push((node, strength(rule.action), rule, owner.unwrap_or(NONE)));
                }
            });
        }
        // Ancestors come first in document order; per node the strongest action wins; anything
        // below an edited node is already covered by it.
        hits.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut edits = Edits::new(doc);
        let mut changes = Vec::new();
        for (node, _, rule, owner) in hits {
            if edits.covered(doc, node) {
                continue;
            }
            let controller = (owner != NONE)
                .then(|| records[owner as usize].controller)
                .flatten();
            let (edit, action) = actions::edit(rule, doc, node, controller, keys);
            edits.set(doc, node, edit);
            changes.push(Change { rule, node, action });
        }
        Applied { edits, changes }
    }
}

/// The relation to a record controlled by `controller` (reference §4.2) of a caller that is the
/// customer `customer` (`None`: an internal service or no caller, never a controller). An
/// unknown controller counts as the caller only when `unknown_is_caller` (the route says so).
pub fn relation(
    customer: Option<&str>,
    controller: Option<&str>,
    unknown_is_caller: bool,
) -> Relation {
    let Some(customer) = customer else {
        return Relation::NotController;
    };
    match controller {
        Some(id) if id == customer => Relation::Controller,
        None if unknown_is_caller => Relation::Controller,
        _ => Relation::NotController,
    }
}

/// Who asks, for [`redact_records`]: the caller's customer id (`None` for an internal service or
/// no caller) and whether the route counts an unknown controller as the caller.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The customer id of the caller, if it is a customer.
    pub customer: Option<&'a str>,
    /// `unknown_controller = "caller"` on the route.
    pub unknown_is_caller: bool,
}

/// Applies `plan` to a parsed body whose records (from [`Plan::find_records`]) have the given
/// controllers, for `caller`: relations per reference §4.2, then [`Plan::apply`]. The proxy, the
/// `redact` dry run and `test-rules` all go through here.
pub fn redact_records<'p, 'c>(
    plan: &'p Plan,
    doc: &Document<'_>,
    direction: Direction,
    caller: Caller<'_>,
    records: impl IntoIterator<Item = (NodeId, Option<&'c str>)>,
    keys: &HashKeys,
) -> Applied<'p> {
    let records: Vec<Record> = records
        .into_iter()
        .map(|(node, controller)| Record {
            node,
            relation: relation(caller.customer, controller, caller.unknown_is_caller),
            controller,
        })
        .collect();
    let outside = relation(caller.customer, None, caller.unknown_is_caller);
    plan.apply(doc, direction, &records, outside, keys)
}

/// Whether a rule's caller filter admits `relation`.
fn admits(filter: CallerFilter, relation: Relation) -> bool {
    match filter {
        CallerFilter::Any => true,
        CallerFilter::Controller => relation == Relation::Controller,
        CallerFilter::NotController => relation == Relation::NotController,
    }
}

/// Remove beats redact beats hash beats mask: the most protective action wins a tie.
fn strength(action: Action) -> u8 {
    match action {
        Action::Remove => 3,
        Action::Redact => 2,
        Action::Hash => 1,
        Action::Mask => 0,
    }
}

/// Index (in `records`) of the innermost record containing `node`.
fn enclosing_record(
    doc: &Document<'_>,
    mut node: NodeId,
    is_record: &[bool],
    records: &[Record],
) -> Option<u32> {
    while node != NONE {
        if is_record[node as usize] {
            return records
                .iter()
                .position(|r| r.node == node)
                .map(|i| i as u32);
        }
        node = doc.node(node).parent;
    }
    None
}

/// Convenience for callers that only need the output bytes: `None` when nothing changed.
pub fn render_if_changed(doc: &Document<'_>, applied: &Applied<'_>) -> Option<Vec<u8>> {
    (!applied.edits.is_empty()).then(|| doc.render(&applied.edits))
}

#[cfg(test)]
mod tests;
