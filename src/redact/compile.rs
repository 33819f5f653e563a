//! From jsonpath-rust's parse to the engine's paths: every selector of RFC 9535, and the filters
//! inside them checked for well-typedness (§2.4.3) when the rule loads: a function of the wrong
//! type where it is used, a non-singular query compared, an unknown function, are config errors.
//! `match` and `search` patterns written as literals are checked as I-Regexp here too.

use std::sync::Arc;

use jsonpath_rust::parser::model as m;
use jsonpath_rust::parser::model::{Segment, Selector};

use super::expr::{Literal, Logical, Op, Operand, Pattern, Query};
use super::filter::Filter;
use super::iregexp::compile_regex;
use super::path::{Path, Sel, Step, unquote};

impl Path {
    /// Parses and compiles `source`; the error is one sentence suitable for a config error.
    pub fn compile(source: &str) -> Result<Path, String> {
        let query = jsonpath_rust::parser::parse_json_path(source)
            .map_err(|e| format!("invalid JSONPath `{source}`: {e}"))?;
        let steps = compile_segments(&query.segments)
            .map_err(|e| format!("invalid JSONPath `{source}`: {e}"))?;
        Ok(Path {
            source: source.to_string(),
            steps,
        })
    }
}

/// Compiles a query's segments (the rule's path, or a query inside a filter).
fn compile_segments(segments: &[Segment]) -> Result<Vec<Step>, String> {
    segments
        .iter()
        .map(|segment| compile_segment(segment, false))
        .collect()
}

fn compile_segment(segment: &Segment, descendant: bool) -> Result<Step, String> {
    match segment {
        Segment::Descendant(inner) => {
            if descendant {
                return Err("nested descendant segments".into());
            }
            compile_segment(inner, true)
        }
        Segment::Selector(selector) => Ok(Step {
            descendant,
            selectors: vec![compile_selector(selector)?],
        }),
        Segment::Selectors(selectors) => Ok(Step {
            descendant,
            selectors: selectors
                .iter()
                .map(compile_selector)
                .collect::<Result<_, _>>()?,
        }),
    }
}

fn compile_selector(selector: &Selector) -> Result<Sel, String> {
    Ok(match selector {
        Selector::Name(name) => Sel::Name(unquote(name)),
        Selector::Wildcard => Sel::Wildcard,
        Selector::Index(i) => Sel::Index(*i),
        Selector::Slice(start, end, step) => Sel::Slice(*start, *end, *step),
        Selector::Filter(filter) => Sel::Filter(Arc::new(Filter {
            source: filter.to_string(),
            expr: logical(filter)?,
        })),
    })
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
            let text = unquote(text);
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
                m::SingularQuerySegment::Name(name) => Sel::Name(unquote(name)),
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
        m::Literal::String(s) => Literal::String(unquote(s)),
        m::Literal::Bool(b) => Literal::Bool(*b),
        m::Literal::Null => Literal::Null,
    }
}
