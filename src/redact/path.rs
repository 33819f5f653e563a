//! JSONPath compiled once at load time into the steps the rule engine walks.
//!
//! Parsing is jsonpath-rust's (RFC 9535), so a path means here what it means there. Every selector
//! of the RFC compiles: names, wildcards, indexes, slices and filters ([`super::filter`], checked
//! for well-typedness here, at load time).

use std::sync::Arc;

use jsonpath_rust::parser::model::{Segment, Selector};

use super::filter::Filter;

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
    Filter(Arc<Filter>),
}

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
pub(crate) fn compile_segments(segments: &[Segment]) -> Result<Vec<Step>, String> {
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
        Selector::Filter(filter) => Sel::Filter(Arc::new(Filter::compile(filter)?)),
    })
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
