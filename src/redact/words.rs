//! A filter in words, for the reviewer reading a `check` report: `` `@.type` is "residential" ``.

use super::expr::{Literal, Logical, Op, Operand, Pattern, Query};
use super::path::Sel;

impl Logical {
    pub(super) fn words(&self) -> String {
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
    pub(super) fn words(&self) -> String {
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
}

impl Query {
    /// The query as a path: `` `@.type` ``.
    pub(super) fn words(&self) -> String {
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
                Sel::Filter(filter) => format!("[?{}]", filter.source()),
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
}
