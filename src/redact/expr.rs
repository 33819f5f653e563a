//! A filter expression (`[?…]`, RFC 9535 §2.3.5) as the engine holds it once compiled: logical
//! operators, comparisons, existence tests, function calls, and the queries inside them.
//! Compiled by `compile.rs`, evaluated by `filter.rs`, put in words by `words.rs`.

use super::path::{Sel, Step};

/// A logical expression (LogicalType).
pub(super) enum Logical {
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
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A value (ValueType): a literal, a singular query, or a function that yields a value.
pub(super) enum Operand {
    Literal(Literal),
    Singular(Query),
    Length(Box<Operand>),
    Count(Query),
    Value(Query),
}

pub(super) enum Literal {
    Number(f64),
    String(String),
    Bool(bool),
    Null,
}

/// A regular expression: compiled at load when written as a literal (a literal outside I-Regexp
/// is a config error), or read from the document (outside I-Regexp: never matches, as the RFC
/// says).
pub(super) enum Pattern {
    Fixed {
        /// As written, for reviewers.
        source: String,
        /// Whole-string and substring forms.
        compiled: (regex::Regex, regex::Regex),
    },
    Dynamic(Box<Operand>),
}

/// A query inside a filter: from `@` or from `$`.
pub(super) struct Query {
    /// From `$` rather than `@`.
    pub(super) absolute: bool,
    pub(super) steps: Vec<Step>,
    /// Names and indexes only: selects at most one node, found without building a nodelist.
    pub(super) singular: bool,
}

impl Query {
    pub(super) fn new(absolute: bool, steps: Vec<Step>) -> Query {
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
