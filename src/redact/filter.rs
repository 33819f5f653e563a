//! RFC 9535 filter selectors (`[?…]`) evaluated over the parsed document.
//!
//! A filter tests each child of the node the walk is at: comparisons with the RFC's type rules,
//! `&&`, `||`, `!`, existence tests, relative (`@`) and absolute (`$`) queries, and the function
//! extensions `length`, `count`, `match`, `search` and `value`. `$` in a filter is the node the
//! rule's query starts from: the record for a record-scoped rule, the body for a body-scoped one.
//! Evaluation reads the document as parsed, never a second parse; numbers compare by value while
//! the document keeps their literals.

use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;

use super::context::FilterContext;
use super::expr::{Literal, Logical, Op, Operand, Pattern, Query};
use super::iregexp::compile_regex;
use super::path::{ChildTest, Sel, Step, selects, slice_indexes};
use crate::json::{Document, Kind, NodeId};

/// A compiled filter expression.
pub struct Filter {
    /// The expression as written (reports, equality).
    pub(super) source: String,
    pub(super) expr: Logical,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[?{}]", self.source)
    }
}

impl ChildTest for Filter {
    fn holds(&self, context: &FilterContext<'_, '_>, child: NodeId) -> bool {
        self.expr.eval(context, child)
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn in_words(&self) -> String {
        self.expr.words()
    }
}

/// A value during evaluation: nothing, a node of the document, or a literal.
enum Val<'v> {
    Nothing,
    Node(NodeId),
    Number(f64),
    String(Cow<'v, str>),
    Bool(bool),
    Null,
}

impl Logical {
    fn eval(&self, context: &FilterContext<'_, '_>, current: NodeId) -> bool {
        let doc = context.doc;
        match self {
            Logical::Or(items) => items.iter().any(|l| l.eval(context, current)),
            Logical::And(items) => items.iter().all(|l| l.eval(context, current)),
            Logical::Not(inner) => !inner.eval(context, current),
            Logical::Exists(q) if q.singular => q.one(context, current).is_some(),
            Logical::Exists(q) => !q.select(context, current).is_empty(),
            Logical::Compare(op, left, right) => {
                let left = left.eval(context, current).resolve(doc);
                let right = right.eval(context, current).resolve(doc);
                compare(doc, *op, &left, &right)
            }
            Logical::Regex {
                subject,
                pattern,
                whole,
            } => {
                let Val::String(text) = subject.eval(context, current).resolve(doc) else {
                    return false;
                };
                let dynamic;
                let compiled = match pattern {
                    Pattern::Fixed { compiled, .. } => Some(compiled),
                    Pattern::Dynamic(operand) => {
                        let Val::String(source) = operand.eval(context, current).resolve(doc)
                        else {
                            return false;
                        };
                        dynamic = compile_regex(&source);
                        dynamic.as_ref()
                    }
                };
                match compiled {
                    Some((anchored, unanchored)) => {
                        if *whole {
                            anchored.is_match(&text)
                        } else {
                            unanchored.is_match(&text)
                        }
                    }
                    None => false,
                }
            }
        }
    }
}

impl Operand {
    fn eval<'v>(&'v self, context: &FilterContext<'_, 'v>, current: NodeId) -> Val<'v> {
        let doc = context.doc;
        match self {
            Operand::Literal(literal) => match literal {
                Literal::Number(n) => Val::Number(*n),
                Literal::String(s) => Val::String(Cow::Borrowed(s)),
                Literal::Bool(b) => Val::Bool(*b),
                Literal::Null => Val::Null,
            },
            Operand::Singular(q) => q.one(context, current).map_or(Val::Nothing, Val::Node),
            Operand::Length(arg) => match arg.eval(context, current).resolve(doc) {
                Val::String(s) => Val::Number(s.chars().count() as f64),
                Val::Node(node) => Val::Number(f64::from(doc.node(node).len)),
                _ => Val::Nothing,
            },
            Operand::Count(q) => Val::Number(q.select(context, current).len() as f64),
            Operand::Value(q) => match q.select(context, current).as_slice() {
                [node] => Val::Node(*node),
                _ => Val::Nothing,
            },
        }
    }
}

impl<'v> Val<'v> {
    /// A node as the primitive it holds; objects and arrays stay nodes.
    fn resolve(self, doc: &Document<'v>) -> Val<'v> {
        let Val::Node(node) = self else { return self };
        match doc.node(node).kind {
            Kind::Null => Val::Null,
            Kind::Bool => Val::Bool(doc.raw(node) == b"true"),
            Kind::Number => std::str::from_utf8(doc.raw(node))
                .ok()
                .and_then(|t| t.parse().ok())
                .map_or(Val::Nothing, Val::Number),
            Kind::String => doc.str_value(node).map_or(Val::Nothing, Val::String),
            Kind::Object | Kind::Array => Val::Node(node),
        }
    }
}

/// RFC 9535 §2.3.5.2.2, on values already [resolved](Val::resolve).
fn compare(doc: &Document<'_>, op: Op, left: &Val<'_>, right: &Val<'_>) -> bool {
    match op {
        Op::Eq => equal(doc, left, right),
        Op::Ne => !equal(doc, left, right),
        Op::Lt => less(left, right),
        Op::Le => less(left, right) || equal(doc, left, right),
        Op::Gt => less(right, left),
        Op::Ge => less(right, left) || equal(doc, left, right),
    }
}

fn equal(doc: &Document<'_>, left: &Val<'_>, right: &Val<'_>) -> bool {
    match (left, right) {
        (Val::Nothing, Val::Nothing) | (Val::Null, Val::Null) => true,
        (Val::Number(a), Val::Number(b)) => a == b,
        (Val::String(a), Val::String(b)) => a == b,
        (Val::Bool(a), Val::Bool(b)) => a == b,
        (Val::Node(a), Val::Node(b)) => deep_equal(doc, *a, *b),
        _ => false,
    }
}

fn less(left: &Val<'_>, right: &Val<'_>) -> bool {
    match (left, right) {
        (Val::Number(a), Val::Number(b)) => a < b,
        (Val::String(a), Val::String(b)) => a < b,
        _ => false,
    }
}

/// Structural equality of two objects or arrays (member order aside).
fn deep_equal(doc: &Document<'_>, a: NodeId, b: NodeId) -> bool {
    let same =
        |x: NodeId, y: NodeId| equal(doc, &Val::Node(x).resolve(doc), &Val::Node(y).resolve(doc));
    let (na, nb) = (doc.node(a), doc.node(b));
    na.kind == nb.kind
        && na.len == nb.len
        && match na.kind {
            Kind::Array => doc
                .children(a)
                .zip(doc.children(b))
                .all(|(x, y)| same(x, y)),
            _ => doc.children(a).all(|x| {
                let key = doc.key(x).unwrap_or_default();
                doc.member(b, &key).is_some_and(|y| same(x, y))
            }),
        }
}

impl Query {
    /// The node a singular query selects, if any: followed member by member, no nodelist built.
    fn one(&self, context: &FilterContext<'_, '_>, current: NodeId) -> Option<NodeId> {
        let start = if self.absolute { context.root } else { current };
        self.steps.iter().try_fold(start, |node, step| {
            child(context.doc, node, &step.selectors[0])
        })
    }

    /// The nodelist the query selects, in document order, repeats included.
    fn select(&self, context: &FilterContext<'_, '_>, current: NodeId) -> Rc<Vec<NodeId>> {
        if !self.absolute {
            return Rc::new(select_steps(context, vec![current], &self.steps));
        }
        let key = self as *const Query as usize;
        context.absolute(key, || {
            select_steps(context, vec![context.root], &self.steps)
        })
    }
}

/// Applies `steps` to the nodelist `nodes`.
fn select_steps(
    context: &FilterContext<'_, '_>,
    mut nodes: Vec<NodeId>,
    steps: &[Step],
) -> Vec<NodeId> {
    let doc = context.doc;
    for step in steps {
        let mut next = Vec::new();
        for &node in &nodes {
            if step.descendant {
                let mut stack = vec![node];
                while let Some(at) = stack.pop() {
                    for sel in &step.selectors {
                        apply(context, at, sel, &mut next);
                    }
                    let mut children: Vec<NodeId> = doc.children(at).collect();
                    children.reverse();
                    stack.extend(children);
                }
            } else {
                for sel in &step.selectors {
                    apply(context, node, sel, &mut next);
                }
            }
        }
        nodes = next;
        if nodes.is_empty() {
            break;
        }
    }
    nodes
}

/// The child a name or index selector picks from `node`, if any.
fn child(doc: &Document<'_>, node: NodeId, sel: &Sel) -> Option<NodeId> {
    match sel {
        Sel::Name(name) => doc.member(node, name),
        Sel::Index(_) if doc.node(node).kind == Kind::Array => {
            let len = doc.node(node).len as i64;
            (0..)
                .zip(doc.children(node))
                .find(|(index, _)| selects(sel, true, *index, len))
                .map(|(_, child)| child)
        }
        _ => None,
    }
}

/// The children of `node` one selector selects, in the selector's order.
fn apply(context: &FilterContext<'_, '_>, node: NodeId, sel: &Sel, out: &mut Vec<NodeId>) {
    let doc = context.doc;
    let kind = doc.node(node).kind;
    match sel {
        Sel::Name(_) | Sel::Index(_) => out.extend(child(doc, node, sel)),
        Sel::Wildcard => {
            if matches!(kind, Kind::Object | Kind::Array) {
                out.extend(doc.children(node));
            }
        }
        Sel::Slice(start, end, step) if kind == Kind::Array => {
            let children: Vec<NodeId> = doc.children(node).collect();
            let len = children.len() as i64;
            let indexes = slice_indexes(len, *start, *end, *step);
            out.extend(indexes.into_iter().map(|i| children[i as usize]));
        }
        Sel::Filter(filter) if matches!(kind, Kind::Object | Kind::Array) => out.extend(
            doc.children(node)
                .filter(|&child| filter.holds(context, child)),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An absolute query inside a filter is evaluated once per walk, whatever the number of
    /// candidates: `$..*[?$..flag]` on a body of n nodes is linear, not quadratic.
    #[test]
    fn absolute_queries_are_evaluated_once_per_walk() {
        let body = format!(
            r#"{{"flag": true, "items": [{}]}}"#,
            vec![r#"{"a": 1}"#; 500].join(",")
        );
        let doc = Document::parse(body.as_bytes()).unwrap();
        let path = super::super::path::Path::compile("$..*[?$..flag]").unwrap();
        let context = FilterContext::new(&doc, 0);
        let selected = select_steps(&context, vec![0], &path.steps);
        // The children of every descendant of the root: 500 items and their 500 `a`s.
        assert_eq!(selected.len(), 1000);
        assert_eq!(context.absolute_queries(), 1);
    }
}
