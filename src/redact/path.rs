//! JSONPath as the rule engine walks it: the steps from `$` to the selected values, and what
//! each selector selects (RFC 9535 §2.3).
//!
//! Paths are compiled once at load time (`compile.rs`, from jsonpath-rust's parse, so a path means
//! here what it means there). A filter selector (`[?…]`) is held as a [`ChildTest`]: selectors
//! know that a filter tests each child, not the filter language, which itself reads paths.

use std::fmt;
use std::sync::Arc;

use super::context::FilterContext;
use crate::json::NodeId;

/// A compiled JSONPath: the steps from the root (`$`) to the selected values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The path as written, for reports, errors and `--explain`.
    pub source: String,
    /// Steps in order; an empty list selects the root itself.
    pub steps: Vec<Step>,
}

/// One segment of a path: `.name`, `[…]` or `..[…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `..`: the selectors apply to the current node and every descendant.
    pub descendant: bool,
    /// Union of selectors (`['a','b']`); a node is selected once per matching selector, in order.
    pub selectors: Vec<Sel>,
}

/// A selector of RFC 9535 §2.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sel {
    /// A member by (unescaped) name.
    Name(String),
    /// Every member or element.
    Wildcard,
    /// An element by index; negative counts from the end.
    Index(i64),
    /// `[start:end:step]` of an array.
    Slice(Option<i64>, Option<i64>, Option<i64>),
    /// `[?…]`: the members or elements for which the filter holds.
    Filter(Arc<dyn ChildTest>),
}

/// A filter selector as a path sees it: a test each member or element passes or fails.
pub trait ChildTest: fmt::Debug + Send + Sync {
    /// Whether the test holds for `child` (`@`).
    fn holds(&self, context: &FilterContext<'_, '_>, child: NodeId) -> bool;
    /// The expression as written (reports; two filters are equal when written the same).
    fn source(&self) -> &str;
    /// The expression in words, for reviewers: `` `@.type` is "residential" ``.
    fn in_words(&self) -> String;
}

impl PartialEq for dyn ChildTest {
    fn eq(&self, other: &dyn ChildTest) -> bool {
        self.source() == other.source()
    }
}

impl Eq for dyn ChildTest {}

impl Path {
    /// Each filter of the path in words, in order (empty without filters).
    pub fn filters_in_words(&self) -> Vec<String> {
        self.steps
            .iter()
            .flat_map(|step| &step.selectors)
            .filter_map(|sel| match sel {
                Sel::Filter(filter) => Some(filter.in_words()),
                _ => None,
            })
            .collect()
    }
}

/// Whether a wildcard, index or slice selects the `index`-th of `len` children (filters are
/// evaluated by the walk); a filter's queries pick indexes with it too.
pub(crate) fn selects(sel: &Sel, is_array: bool, index: i64, len: i64) -> bool {
    match sel {
        Sel::Wildcard => true,
        Sel::Name(_) | Sel::Filter(_) => false,
        Sel::Index(i) => is_array && (if *i < 0 { len + i } else { *i }) == index,
        Sel::Slice(start, end, step) => is_array && in_slice(index, len, *start, *end, *step),
    }
}

/// RFC 9535 §2.3.4.2.2: whether element `i` of an array of `len` is in `[start:end:step]`.
fn in_slice(i: i64, len: i64, start: Option<i64>, end: Option<i64>, step: Option<i64>) -> bool {
    let step = step.unwrap_or(1);
    let normalize = |v: i64| if v >= 0 { v } else { len + v };
    match step {
        0 => false,
        s if s > 0 => {
            let lower = normalize(start.unwrap_or(0)).clamp(0, len);
            let upper = normalize(end.unwrap_or(len)).clamp(0, len);
            lower <= i && i < upper && (i - lower) % s == 0
        }
        s => {
            let upper = normalize(start.unwrap_or(len - 1)).clamp(-1, len - 1);
            let lower = end.map_or(-1, |e| normalize(e).clamp(-1, len - 1));
            lower < i && i <= upper && (upper - i) % (-s) == 0
        }
    }
}

/// The indexes `[start:end:step]` selects from an array of `len`, in the slice's order
/// (descending for a negative step), as a query inside a filter lists them.
pub(crate) fn slice_indexes(
    len: i64,
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
) -> Vec<i64> {
    let mut indexes: Vec<i64> = (0..len)
        .filter(|&i| in_slice(i, len, start, end, step))
        .collect();
    if step.unwrap_or(1) < 0 {
        indexes.reverse();
    }
    indexes
}

/// jsonpath-rust keeps bracketed names and string literals with their quotes (`'email'`); dot
/// names come bare.
pub(crate) fn unquote(name: &str) -> String {
    let bytes = name.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'\'' || bytes[0] == b'"')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        name[1..name.len() - 1].to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Sel {
        Sel::Name(s.into())
    }

    #[test]
    fn compiles_the_selectors_rules_use() {
        let cases: &[(&str, Vec<Step>)] = &[
            ("$", vec![]),
            (
                "$.recipient.email",
                vec![
                    Step {
                        descendant: false,
                        selectors: vec![name("recipient")],
                    },
                    Step {
                        descendant: false,
                        selectors: vec![name("email")],
                    },
                ],
            ),
            (
                "$.recipient['email','phone']",
                vec![
                    Step {
                        descendant: false,
                        selectors: vec![name("recipient")],
                    },
                    Step {
                        descendant: false,
                        selectors: vec![name("email"), name("phone")],
                    },
                ],
            ),
            (
                "$..email",
                vec![Step {
                    descendant: true,
                    selectors: vec![name("email")],
                }],
            ),
            (
                "$.shipments[*]",
                vec![
                    Step {
                        descendant: false,
                        selectors: vec![name("shipments")],
                    },
                    Step {
                        descendant: false,
                        selectors: vec![Sel::Wildcard],
                    },
                ],
            ),
            (
                "$.a[-1]",
                vec![
                    Step {
                        descendant: false,
                        selectors: vec![name("a")],
                    },
                    Step {
                        descendant: false,
                        selectors: vec![Sel::Index(-1)],
                    },
                ],
            ),
        ];
        for (source, steps) in cases {
            let path = Path::compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(&path.steps, steps, "{source}");
        }
    }

    #[test]
    fn refuses_bad_and_ill_typed_paths() {
        let cases = [
            ("$.recipient[", "invalid JSONPath"),
            ("recipient.email", "invalid JSONPath"),
            ("$[?length(@.a)]", "is a value, not a test"),
            ("$[?match(@.a, 'x') == true]", "invalid JSONPath"),
            ("$[?nope(@.a)]", "invalid JSONPath"),
            ("$[?length(@.*) > 1]", "singular query"),
            ("$[?match(@.a, '\\\\d+')]", "not an I-Regexp"),
            ("$[?search(@.a, '(?i)x')]", "not an I-Regexp"),
        ];
        for (path, error) in cases {
            let got = Path::compile(path).unwrap_err();
            assert!(got.contains(error), "{path}: {got}");
        }
        assert!(Path::compile("$.items[?@.kind == 'x']").is_ok());
    }
}
