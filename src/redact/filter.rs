//! RFC 9535 filter selectors (`[?…]`), compiled at load time and evaluated over the parsed
//! document.
//!
//! A filter tests each child of the node the walk is at: comparisons with the RFC's type rules,
//! `&&`, `||`, `!`, existence tests, relative (`@`) and absolute (`$`) queries, and the function
//! extensions `length`, `count`, `match`, `search` and `value`. Well-typedness (§2.4.3) is
//! checked when the rule loads: a function of the wrong type where it is used, a non-singular
//! query compared, an unknown function, are config errors. `match` and `search` take I-Regexp
//! (RFC 9485): a pattern is checked against I-Regexp's grammar, then translated for the `regex`
//! crate (`.` matches anything but a line break).
//!
//! `$` in a filter is the node the rule's query starts from: the record for a record-scoped rule,
//! the body for a body-scoped one. Evaluation reads the document as parsed, never a second parse;
//! numbers compare by value while the document keeps their literals.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use jsonpath_rust::parser::model as m;

use super::path::{Sel, Step, compile_segments};
use crate::json::{Document, Kind, NodeId};

/// What a filter reads while one document is walked: the document, the node `$` stands for, and
/// the results of absolute queries (`$..x` is the same for every candidate, so it is evaluated
/// once per walk: a filter under `..` stays linear in the body, not quadratic).
pub struct Scope<'s, 'a> {
    /// The document.
    pub doc: &'s Document<'a>,
    /// `$`.
    pub root: NodeId,
    memo: RefCell<Vec<(usize, Rc<Vec<NodeId>>)>>,
}

impl<'s, 'a> Scope<'s, 'a> {
    /// A scope for one walk of `doc` from `root`.
    pub fn new(doc: &'s Document<'a>, root: NodeId) -> Scope<'s, 'a> {
        Scope {
            doc,
            root,
            memo: RefCell::new(Vec::new()),
        }
    }
}

/// A compiled filter expression; equal when written the same.
pub struct Filter {
    /// The expression as written (reports, equality).
    pub source: String,
    expr: Logical,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[?{}]", self.source)
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        self.source == other.source
    }
}

impl Eq for Filter {}

/// A logical expression (LogicalType).
enum Logical {
    Or(Vec<Logical>),
    And(Vec<Logical>),
    Not(Box<Logical>),
    /// A query that selects at least one node.
    Exists(Query),
    Compare(Op, Operand, Operand),
    /// `match` (whole string) or `search` (a substring).
    Regex {
        subject: Operand,
        pattern: Pattern,
        whole: bool,
    },
}

#[derive(Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A value (ValueType): a literal, a singular query, or a function that yields a value.
enum Operand {
    Literal(Literal),
    Singular(Query),
    Length(Box<Operand>),
    Count(Query),
    Value(Query),
}

enum Literal {
    Number(f64),
    String(String),
    Bool(bool),
    Null,
}

/// A regular expression: compiled at load when written as a literal (a literal outside I-Regexp
/// is a config error), or read from the document (outside I-Regexp: never matches, as the RFC
/// says).
enum Pattern {
    Fixed {
        /// As written, for reviewers.
        source: String,
        /// Whole-string and substring forms.
        compiled: (regex::Regex, regex::Regex),
    },
    Dynamic(Box<Operand>),
}

/// A query inside a filter: from `@` or from `$`.
struct Query {
    absolute: bool,
    steps: Vec<Step>,
    /// Names and indexes only: selects at most one node, found without building a nodelist.
    singular: bool,
}

impl Query {
    fn new(absolute: bool, steps: Vec<Step>) -> Query {
        let singular = steps.iter().all(|step| {
            !step.descendant && matches!(step.selectors.as_slice(), [Sel::Name(_) | Sel::Index(_)])
        });
        Query {
            absolute,
            steps,
            singular,
        }
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

impl Filter {
    /// Compiles jsonpath-rust's model of a filter, checking well-typedness.
    pub fn compile(filter: &m::Filter) -> Result<Filter, String> {
        Ok(Filter {
            source: filter.to_string(),
            expr: logical(filter)?,
        })
    }

    /// The filter in words, for reviewers: `` `@.type` is "residential" ``.
    pub fn in_words(&self) -> String {
        self.expr.words()
    }

    /// Whether the filter holds for `current` (`@`).
    pub fn test(&self, scope: &Scope<'_, '_>, current: NodeId) -> bool {
        self.expr.eval(scope, current)
    }
}

fn logical(filter: &m::Filter) -> Result<Logical, String> {
    Ok(match filter {
        m::Filter::Or(items) => Logical::Or(items.iter().map(logical).collect::<Result<_, _>>()?),
        m::Filter::And(items) => Logical::And(items.iter().map(logical).collect::<Result<_, _>>()?),
        m::Filter::Atom(atom) => match atom {
            m::FilterAtom::Filter { expr, not } => negated(logical(expr)?, *not),
            m::FilterAtom::Test { expr, not } => negated(test(expr)?, *not),
            m::FilterAtom::Comparison(comparison) => {
                let (op, (left, right)) = match &**comparison {
                    m::Comparison::Eq(..) => (Op::Eq, comparison.vals()),
                    m::Comparison::Ne(..) => (Op::Ne, comparison.vals()),
                    m::Comparison::Lt(..) => (Op::Lt, comparison.vals()),
                    m::Comparison::Lte(..) => (Op::Le, comparison.vals()),
                    m::Comparison::Gt(..) => (Op::Gt, comparison.vals()),
                    m::Comparison::Gte(..) => (Op::Ge, comparison.vals()),
                };
                Logical::Compare(op, comparable(left)?, comparable(right)?)
            }
        },
    })
}

fn negated(expr: Logical, not: bool) -> Logical {
    if not {
        Logical::Not(Box::new(expr))
    } else {
        expr
    }
}

/// A test expression: an existence query, or a function of LogicalType.
fn test(test: &m::Test) -> Result<Logical, String> {
    match test {
        m::Test::RelQuery(segments) => Ok(Logical::Exists(query(false, segments)?)),
        m::Test::AbsQuery(q) => Ok(Logical::Exists(query(true, &q.segments)?)),
        m::Test::Function(function) => match &**function {
            m::TestFunction::Match(subject, pattern) => regex_function(subject, pattern, true),
            m::TestFunction::Search(subject, pattern) => regex_function(subject, pattern, false),
            m::TestFunction::Length(_) | m::TestFunction::Count(_) | m::TestFunction::Value(_) => {
                Err(format!(
                    "`{function}` is a value, not a test: compare it (`{function} > 0`)"
                ))
            }
            m::TestFunction::Custom(name, _) => Err(unknown(name)),
        },
    }
}

fn unknown(name: &str) -> String {
    format!("unknown function `{name}` (RFC 9535 has length, count, match, search and value)")
}

fn regex_function(subject: &m::FnArg, pattern: &m::FnArg, whole: bool) -> Result<Logical, String> {
    let subject = value_arg(subject)?;
    let pattern = match pattern {
        m::FnArg::Literal(m::Literal::String(text)) => {
            let text = super::path::unquote(text);
            let compiled = compile_regex(&text).ok_or_else(|| {
                format!(
                    "`{text}` is not an I-Regexp (RFC 9485): write classes such as `[0-9]` for \
                     `\\d`; no lookaround, lazy quantifiers or `(?` groups"
                )
            })?;
            Pattern::Fixed {
                source: text,
                compiled,
            }
        }
        other => Pattern::Dynamic(Box::new(value_arg(other)?)),
    };
    Ok(Logical::Regex {
        subject,
        pattern,
        whole,
    })
}

/// A comparison's operand: a literal, a singular query, or a ValueType function.
fn comparable(comparable: &m::Comparable) -> Result<Operand, String> {
    match comparable {
        m::Comparable::Literal(literal) => Ok(Operand::Literal(lit(literal))),
        m::Comparable::SingularQuery(q) => Ok(Operand::Singular(singular(q))),
        m::Comparable::Function(function) => value_function(function),
    }
}

fn value_function(function: &m::TestFunction) -> Result<Operand, String> {
    match function {
        m::TestFunction::Length(arg) => Ok(Operand::Length(Box::new(value_arg(arg)?))),
        m::TestFunction::Count(arg) => Ok(Operand::Count(nodes_arg(arg, "count")?)),
        m::TestFunction::Value(arg) => Ok(Operand::Value(nodes_arg(arg, "value")?)),
        m::TestFunction::Match(..) | m::TestFunction::Search(..) => Err(format!(
            "`{function}` is a test, not a value: it cannot be compared"
        )),
        m::TestFunction::Custom(name, _) => Err(unknown(name)),
    }
}

/// A ValueType argument: a literal, a singular query, or a function yielding a value.
fn value_arg(arg: &m::FnArg) -> Result<Operand, String> {
    match arg {
        m::FnArg::Literal(literal) => Ok(Operand::Literal(lit(literal))),
        m::FnArg::Test(test) => match &**test {
            m::Test::RelQuery(segments) => singular_query(query(false, segments)?),
            m::Test::AbsQuery(q) => singular_query(query(true, &q.segments)?),
            m::Test::Function(function) => value_function(function),
        },
        m::FnArg::Filter(_) => Err("a logical expression cannot be a function's value".into()),
    }
}

/// A NodesType argument: a query.
fn nodes_arg(arg: &m::FnArg, function: &str) -> Result<Query, String> {
    match arg {
        m::FnArg::Test(test) => match &**test {
            m::Test::RelQuery(segments) => query(false, segments),
            m::Test::AbsQuery(q) => query(true, &q.segments),
            m::Test::Function(_) => Err(format!("`{function}` takes a query, not a function")),
        },
        _ => Err(format!("`{function}` takes a query")),
    }
}

fn singular_query(query: Query) -> Result<Operand, String> {
    if query.singular {
        Ok(Operand::Singular(query))
    } else {
        Err("only a singular query (names and indexes) can be a value".into())
    }
}

fn query(absolute: bool, segments: &[m::Segment]) -> Result<Query, String> {
    Ok(Query::new(absolute, compile_segments(segments)?))
}

fn singular(q: &m::SingularQuery) -> Query {
    let (absolute, segments) = match q {
        m::SingularQuery::Current(segments) => (false, segments),
        m::SingularQuery::Root(segments) => (true, segments),
    };
    let steps = segments
        .iter()
        .map(|segment| Step {
            descendant: false,
            selectors: vec![match segment {
                m::SingularQuerySegment::Name(name) => Sel::Name(super::path::unquote(name)),
                m::SingularQuerySegment::Index(i) => Sel::Index(*i),
            }],
        })
        .collect();
    Query::new(absolute, steps)
}

fn lit(literal: &m::Literal) -> Literal {
    match literal {
        m::Literal::Int(i) => Literal::Number(*i as f64),
        m::Literal::Float(f) => Literal::Number(*f),
        m::Literal::String(s) => Literal::String(super::path::unquote(s)),
        m::Literal::Bool(b) => Literal::Bool(*b),
        m::Literal::Null => Literal::Null,
    }
}

impl Logical {
    fn eval(&self, scope: &Scope<'_, '_>, current: NodeId) -> bool {
        let doc = scope.doc;
        match self {
            Logical::Or(items) => items.iter().any(|l| l.eval(scope, current)),
            Logical::And(items) => items.iter().all(|l| l.eval(scope, current)),
            Logical::Not(inner) => !inner.eval(scope, current),
            Logical::Exists(q) if q.singular => q.one(scope, current).is_some(),
            Logical::Exists(q) => !q.select(scope, current).is_empty(),
            Logical::Compare(op, left, right) => {
                let left = left.eval(scope, current).resolve(doc);
                let right = right.eval(scope, current).resolve(doc);
                compare(doc, *op, &left, &right)
            }
            Logical::Regex {
                subject,
                pattern,
                whole,
            } => {
                let Val::String(text) = subject.eval(scope, current).resolve(doc) else {
                    return false;
                };
                let dynamic;
                let compiled = match pattern {
                    Pattern::Fixed { compiled, .. } => Some(compiled),
                    Pattern::Dynamic(operand) => {
                        let Val::String(source) = operand.eval(scope, current).resolve(doc) else {
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

impl Logical {
    fn words(&self) -> String {
        let joined = |items: &[Logical], with: &str| {
            items
                .iter()
                .map(|l| match l {
                    Logical::Or(_) | Logical::And(_) => format!("({})", l.words()),
                    _ => l.words(),
                })
                .collect::<Vec<_>>()
                .join(with)
        };
        match self {
            Logical::Or(items) => joined(items, " or "),
            Logical::And(items) => joined(items, " and "),
            Logical::Not(inner) => match &**inner {
                Logical::Exists(q) => format!("{} does not exist", q.words()),
                other => format!("not ({})", other.words()),
            },
            Logical::Exists(q) => format!("{} exists", q.words()),
            Logical::Compare(op, left, right) => {
                let op = match op {
                    Op::Eq => "is",
                    Op::Ne => "is not",
                    Op::Lt => "is less than",
                    Op::Le => "is at most",
                    Op::Gt => "is greater than",
                    Op::Ge => "is at least",
                };
                format!("{} {op} {}", left.words(), right.words())
            }
            Logical::Regex {
                subject,
                pattern,
                whole,
            } => {
                let pattern = match pattern {
                    Pattern::Fixed { source, .. } => format!("/{source}/"),
                    Pattern::Dynamic(operand) => format!("the pattern in {}", operand.words()),
                };
                if *whole {
                    format!("{} matches {pattern} in full", subject.words())
                } else {
                    format!("{} contains a match of {pattern}", subject.words())
                }
            }
        }
    }
}

impl Operand {
    fn words(&self) -> String {
        match self {
            Operand::Literal(Literal::Number(n)) => n.to_string(),
            Operand::Literal(Literal::String(s)) => serde_json::Value::from(s.as_str()).to_string(),
            Operand::Literal(Literal::Bool(b)) => b.to_string(),
            Operand::Literal(Literal::Null) => "null".into(),
            Operand::Singular(q) => q.words(),
            Operand::Length(arg) => format!("the length of {}", arg.words()),
            Operand::Count(q) => format!("the number of {}", q.words()),
            Operand::Value(q) => format!("the value of {}", q.words()),
        }
    }

    fn eval<'v>(&'v self, scope: &Scope<'_, 'v>, current: NodeId) -> Val<'v> {
        let doc = scope.doc;
        match self {
            Operand::Literal(literal) => match literal {
                Literal::Number(n) => Val::Number(*n),
                Literal::String(s) => Val::String(Cow::Borrowed(s)),
                Literal::Bool(b) => Val::Bool(*b),
                Literal::Null => Val::Null,
            },
            Operand::Singular(q) => q.one(scope, current).map_or(Val::Nothing, Val::Node),
            Operand::Length(arg) => match arg.eval(scope, current).resolve(doc) {
                Val::String(s) => Val::Number(s.chars().count() as f64),
                Val::Node(node) => Val::Number(f64::from(doc.node(node).len)),
                _ => Val::Nothing,
            },
            Operand::Count(q) => Val::Number(q.select(scope, current).len() as f64),
            Operand::Value(q) => match q.select(scope, current).as_slice() {
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
    /// The query as a path: `` `@.type` ``.
    fn words(&self) -> String {
        let mut text = String::from(if self.absolute { "$" } else { "@" });
        for step in &self.steps {
            if step.descendant {
                text.push_str("..");
            }
            let one = |sel: &Sel| match sel {
                Sel::Name(name) => format!("[{}]", serde_json::Value::from(name.as_str())),
                Sel::Wildcard => "[*]".into(),
                Sel::Index(i) => format!("[{i}]"),
                Sel::Slice(a, b, c) => {
                    let n = |v: &Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
                    format!("[{}:{}:{}]", n(a), n(b), n(c))
                }
                Sel::Filter(filter) => format!("[?{}]", filter.source),
            };
            match step.selectors.as_slice() {
                [Sel::Name(name)]
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_alphanumeric() || c == '_') =>
                {
                    if !step.descendant {
                        text.push('.');
                    }
                    text.push_str(name);
                }
                selectors => text.push_str(&selectors.iter().map(one).collect::<String>()),
            }
        }
        format!("`{text}`")
    }

    /// The node a singular query selects, if any: followed member by member, no nodelist built.
    fn one(&self, scope: &Scope<'_, '_>, current: NodeId) -> Option<NodeId> {
        let start = if self.absolute { scope.root } else { current };
        self.steps.iter().try_fold(start, |node, step| {
            child(scope.doc, node, &step.selectors[0])
        })
    }

    /// The nodelist the query selects, in document order, repeats included.
    fn select(&self, scope: &Scope<'_, '_>, current: NodeId) -> Rc<Vec<NodeId>> {
        if !self.absolute {
            return Rc::new(select_steps(scope, vec![current], &self.steps));
        }
        let key = self as *const Query as usize;
        if let Some((_, found)) = scope.memo.borrow().iter().find(|(k, _)| *k == key) {
            return found.clone();
        }
        let found = Rc::new(select_steps(scope, vec![scope.root], &self.steps));
        scope.memo.borrow_mut().push((key, found.clone()));
        found
    }
}

/// Applies `steps` to the nodelist `nodes`.
fn select_steps(scope: &Scope<'_, '_>, mut nodes: Vec<NodeId>, steps: &[Step]) -> Vec<NodeId> {
    let doc = scope.doc;
    for step in steps {
        let mut next = Vec::new();
        for &node in &nodes {
            if step.descendant {
                let mut stack = vec![node];
                while let Some(at) = stack.pop() {
                    for sel in &step.selectors {
                        apply(scope, at, sel, &mut next);
                    }
                    let mut children: Vec<NodeId> = doc.children(at).collect();
                    children.reverse();
                    stack.extend(children);
                }
            } else {
                for sel in &step.selectors {
                    apply(scope, node, sel, &mut next);
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
                .find(|(index, _)| super::matcher::selects(sel, true, *index, len))
                .map(|(_, child)| child)
        }
        _ => None,
    }
}

/// The children of `node` one selector selects, in the selector's order.
fn apply(scope: &Scope<'_, '_>, node: NodeId, sel: &Sel, out: &mut Vec<NodeId>) {
    let doc = scope.doc;
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
            let indexes = super::matcher::slice_indexes(len, *start, *end, *step);
            out.extend(indexes.into_iter().map(|i| children[i as usize]));
        }
        Sel::Filter(filter) if matches!(kind, Kind::Object | Kind::Array) => out.extend(
            doc.children(node)
                .filter(|&child| filter.test(scope, child)),
        ),
        _ => {}
    }
}

/// Checks `pattern` against I-Regexp (RFC 9485) and translates it for the `regex` crate: the
/// whole-string form (`match`) and the substring form (`search`). `None`: not an I-Regexp.
fn compile_regex(pattern: &str) -> Option<(regex::Regex, regex::Regex)> {
    let translated = i_regexp(pattern)?;
    let anchored = regex::Regex::new(&format!(r"\A(?:{translated})\z")).ok()?;
    let unanchored = regex::Regex::new(&translated).ok()?;
    Some((anchored, unanchored))
}

/// RFC 9485 §5.3's grammar, checked as the pattern is rewritten: `.` becomes "anything but CR
/// and LF", and anything outside the grammar (`\d`, `\w`, `\b`, `(?:`, lazy quantifiers, back
/// references) refuses the pattern. `^` and `$` anchor the start and end, as the compliance suite
/// reads them (a no-op under `match`).
fn i_regexp(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    // Whether the last piece can take a quantifier (an atom with none yet).
    let mut quantifiable = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '.' => {
                out.push_str("[^\\n\\r]");
                quantifiable = true;
            }
            '^' | '$' => {
                out.push(c);
                quantifiable = false;
            }
            '\\' => {
                let (escape, used) = escape(&chars[i + 1..])?;
                out.push_str(&escape);
                i += used;
                quantifiable = true;
            }
            '[' => {
                let (class, used) = class(&chars[i + 1..])?;
                out.push_str(&class);
                i += used;
                quantifiable = true;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    return None;
                }
                out.push('(');
                quantifiable = false;
            }
            ')' => {
                out.push(')');
                quantifiable = true;
            }
            '|' => {
                out.push('|');
                quantifiable = false;
            }
            '*' | '+' | '?' => {
                if !quantifiable {
                    return None;
                }
                out.push(c);
                quantifiable = false;
            }
            '{' => {
                if !quantifiable {
                    return None;
                }
                let close = chars[i..].iter().position(|&c| c == '}')? + i;
                let body: String = chars[i + 1..close].iter().collect();
                let valid = match body.split_once(',') {
                    None => !body.is_empty() && body.chars().all(|c| c.is_ascii_digit()),
                    Some((lo, hi)) => {
                        !lo.is_empty()
                            && lo.chars().all(|c| c.is_ascii_digit())
                            && hi.chars().all(|c| c.is_ascii_digit())
                    }
                };
                if !valid {
                    return None;
                }
                out.push_str(&format!("{{{body}}}"));
                i = close;
                quantifiable = false;
            }
            '}' | ']' => return None,
            c => {
                push_literal(&mut out, c);
                quantifiable = true;
            }
        }
        i += 1;
    }
    Some(out)
}

fn push_literal(out: &mut String, c: char) {
    if regex_syntax_meta(c) {
        out.push('\\');
    }
    out.push(c);
}

fn regex_syntax_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

/// A single-character escape or a `\p{…}` category after a backslash: the translation and the
/// number of characters read after the backslash.
fn escape(rest: &[char]) -> Option<(String, usize)> {
    let c = *rest.first()?;
    match c {
        '(' | ')' | '*' | '+' | '-' | '.' | '?' | '[' | '\\' | ']' | '^' | '{' | '|' | '}' => {
            Some((format!("\\{c}"), 1))
        }
        'n' => Some(("\\n".into(), 1)),
        'r' => Some(("\\r".into(), 1)),
        't' => Some(("\\t".into(), 1)),
        'p' | 'P' => {
            if rest.get(1) != Some(&'{') {
                return None;
            }
            let close = rest.iter().position(|&c| c == '}')?;
            let name: String = rest[2..close].iter().collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphabetic()) {
                return None;
            }
            Some((format!("\\{c}{{{name}}}"), close + 1))
        }
        _ => None,
    }
}

/// A character class after `[`: the translation and the characters read, `]` included.
fn class(rest: &[char]) -> Option<(String, usize)> {
    let mut out = String::from("[");
    let mut i = 0;
    if rest.first() == Some(&'^') {
        out.push('^');
        i = 1;
    }
    let start = i;
    loop {
        let c = *rest.get(i)?;
        match c {
            ']' if i > start => {
                out.push(']');
                return Some((out, i + 1));
            }
            '\\' => {
                let (escape, used) = escape(&rest[i + 1..])?;
                out.push_str(&escape);
                i += used;
            }
            '[' => return None,
            '-' => {
                // A range's dash, or a literal dash at the class's edges.
                let edge = i == start || rest.get(i + 1) == Some(&']');
                if edge {
                    out.push_str("\\-");
                } else {
                    out.push('-');
                }
            }
            c => push_literal(&mut out, c),
        }
        i += 1;
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
        let scope = Scope::new(&doc, 0);
        let selected = select_steps(&scope, vec![0], &path.steps);
        // The children of every descendant of the root: 500 items and their 500 `a`s.
        assert_eq!(selected.len(), 1000);
        assert_eq!(scope.memo.borrow().len(), 1);
    }

    #[test]
    fn i_regexp_is_checked_and_translated() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a.c", Some("a[^\\n\\r]c")),
            ("^ab$", Some("^ab$")),
            ("[a-z]+", Some("[a-z]+")),
            ("\\p{Lu}", Some("\\p{Lu}")),
            ("a{2,3}", Some("a{2,3}")),
            ("\\d", None),
            ("\\w+", None),
            ("(?:a)", None),
            ("a*?", None),
            ("a{,3}", None),
            ("[", None),
            ("a)", Some("a)")),
        ];
        for (pattern, want) in cases {
            assert_eq!(i_regexp(pattern).as_deref(), *want, "{pattern}");
        }
    }
}
