//! JSONPath compiled once at load time into the steps the rule engine walks.
//!
//! Parsing is jsonpath-rust's (RFC 9535), so a path means here what it means there; the engine only
//! needs the selectors that address members and elements. Filter expressions (`[?…]`) are refused
//! at load time: a redaction rule that depends on values it may itself rewrite is hard to review.

use jsonpath_rust::parser::model::{Segment, Selector};

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

/// A selector of RFC 9535 §2.3 other than filters.
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
}

impl Path {
    /// Parses and compiles `source`; the error is one sentence suitable for a config error.
    pub fn compile(source: &str) -> Result<Path, String> {
        let query = jsonpath_rust::parser::parse_json_path(source)
            .map_err(|e| format!("invalid JSONPath `{source}`: {e}"))?;
        let steps = query
            .segments
            .iter()
            .map(|segment| compile_segment(segment, false))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("unsupported JSONPath `{source}`: {e}"))?;
        Ok(Path {
            source: source.to_string(),
            steps,
        })
    }
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
        Selector::Filter(_) => {
            return Err(
                "filter selectors ([?…]) are not supported in rules; name the members".into(),
            );
        }
    })
}

/// jsonpath-rust keeps bracketed names with their quotes (`'email'`); dot names come bare.
fn unquote(name: &str) -> String {
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
    fn refuses_bad_and_filter_paths() {
        assert!(
            Path::compile("$.recipient[")
                .unwrap_err()
                .contains("invalid JSONPath")
        );
        assert!(Path::compile("recipient.email").is_err());
        assert!(
            Path::compile("$.items[?@.kind == 'x']")
                .unwrap_err()
                .contains("filter selectors")
        );
    }
}
