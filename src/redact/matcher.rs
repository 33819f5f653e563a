//! Evaluates many compiled paths in one walk of a document.
//!
//! Each node carries the set of (path, step) states that reached it; children receive the states
//! whose next selector they satisfy (plus, for `..` steps, the state itself, which keeps looking
//! deeper). A subtree is entered only while some state is alive, so rules like
//! `$.recipient.email` touch three nodes however large the record is, and ten rules cost one walk.

use super::path::{Path, Sel};
use crate::json::{Document, Kind, NONE, NodeId};

/// Several paths evaluated together.
#[derive(Debug, Clone)]
pub struct Matcher {
    paths: Vec<Path>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    path: u32,
    step: u32,
}

impl Matcher {
    /// A matcher for `paths`; hits report the index in this list.
    pub fn new(paths: Vec<Path>) -> Matcher {
        Matcher { paths }
    }

    /// True when there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Calls `hit(path_index, node)` for each node each path selects from `root` (a node selected
    /// twice by one path may be reported twice). Nodes for which `fence` is true, other than
    /// `root`, are neither reported nor entered.
    pub fn run(
        &self,
        doc: &Document<'_>,
        root: NodeId,
        fence: &dyn Fn(NodeId) -> bool,
        hit: &mut dyn FnMut(usize, NodeId),
    ) {
        if self.paths.is_empty() {
            return;
        }
        let mut stack: Vec<State> = (0..self.paths.len() as u32)
            .map(|path| State { path, step: 0 })
            .collect();
        let len = stack.len();
        self.visit(doc, root, 0, len, &mut stack, fence, hit);
    }

    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        doc: &Document<'_>,
        node: NodeId,
        lo: usize,
        hi: usize,
        stack: &mut Vec<State>,
        fence: &dyn Fn(NodeId) -> bool,
        hit: &mut dyn FnMut(usize, NodeId),
    ) {
        for state in &stack[lo..hi] {
            if state.step as usize == self.paths[state.path as usize].steps.len() {
                hit(state.path as usize, node);
            }
        }
        let parent = doc.node(node);
        if !matches!(parent.kind, Kind::Array | Kind::Object) {
            return;
        }
        let is_array = parent.kind == Kind::Array;
        let len = parent.len as i64;
        let mut child = parent.first_child;
        let mut index = 0i64;
        while child != NONE {
            let base = stack.len();
            for s in lo..hi {
                let state = stack[s];
                let steps = &self.paths[state.path as usize].steps;
                let Some(step) = steps.get(state.step as usize) else {
                    continue;
                };
                if step.descendant {
                    push_unique(stack, base, state);
                }
                if step
                    .selectors
                    .iter()
                    .any(|sel| selects(doc, sel, child, is_array, index, len))
                {
                    push_unique(
                        stack,
                        base,
                        State {
                            path: state.path,
                            step: state.step + 1,
                        },
                    );
                }
            }
            if stack.len() > base && !fence(child) {
                let top = stack.len();
                self.visit(doc, child, base, top, stack, fence, hit);
            }
            stack.truncate(base);
            child = doc.node(child).next_sibling;
            index += 1;
        }
    }
}

fn push_unique(stack: &mut Vec<State>, base: usize, state: State) {
    if !stack[base..].contains(&state) {
        stack.push(state);
    }
}

/// Whether `sel` selects `child`, the `index`-th of `len` children of an array or object.
fn selects(
    doc: &Document<'_>,
    sel: &Sel,
    child: NodeId,
    is_array: bool,
    index: i64,
    len: i64,
) -> bool {
    match sel {
        Sel::Wildcard => true,
        Sel::Name(name) => !is_array && doc.key_is(child, name),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn select(json: &str, path: &str) -> Vec<String> {
        let doc = Document::parse(json.as_bytes()).unwrap();
        let matcher = Matcher::new(vec![Path::compile(path).unwrap()]);
        let mut hits = Vec::new();
        matcher.run(&doc, 0, &|_| false, &mut |_, node| hits.push(node));
        hits.sort_unstable();
        hits.dedup();
        hits.iter()
            .map(|&n| String::from_utf8(doc.raw(n).to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn selector_table() {
        let doc = r#"{"a":{"b":1,"c":[10,11,12,13,14]},"d":[{"b":2},{"e":{"b":3}}],"b":0}"#;
        let cases: &[(&str, &[&str])] = &[
            ("$", &[doc]),
            ("$.a.b", &["1"]),
            ("$.b", &["0"]),
            ("$['a']['b','x']", &["1"]),
            ("$..b", &["1", "2", "3", "0"]),
            ("$.a.c[1]", &["11"]),
            ("$.a.c[-1]", &["14"]),
            ("$.a.c[9]", &[]),
            ("$.a.c[1:3]", &["11", "12"]),
            ("$.a.c[::2]", &["10", "12", "14"]),
            ("$.a.c[::-2]", &["10", "12", "14"]),
            ("$.a.c[-2:]", &["13", "14"]),
            ("$.a.c[3:1:-1]", &["12", "13"]),
            ("$.a.c[0:5:0]", &[]),
            ("$.d[*].b", &["2"]),
            ("$.d..b", &["2", "3"]),
            ("$.a[0]", &[]),
            ("$.d.b", &[]),
            ("$..[0]", &["10", r#"{"b":2}"#]),
        ];
        for (path, expected) in cases {
            let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            let mut got = select(doc, path);
            want.sort();
            got.sort();
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn fences_stop_descent() {
        let doc = Document::parse(br#"{"r":{"email":"a"},"inner":{"email":"b"}}"#).unwrap();
        let inner = doc.member(0, "inner").unwrap();
        let matcher = Matcher::new(vec![Path::compile("$..email").unwrap()]);
        let mut hits = Vec::new();
        matcher.run(&doc, 0, &|n| n == inner, &mut |_, n| hits.push(n));
        assert_eq!(hits.len(), 1);
        assert_eq!(doc.raw(hits[0]), b"\"a\"");
    }

    #[test]
    fn many_paths_report_their_index() {
        let doc = Document::parse(br#"{"a":1,"b":2}"#).unwrap();
        let matcher = Matcher::new(vec![
            Path::compile("$.b").unwrap(),
            Path::compile("$.a").unwrap(),
            Path::compile("$.*").unwrap(),
        ]);
        let mut hits = Vec::new();
        matcher.run(&doc, 0, &|_| false, &mut |p, n| hits.push((p, n)));
        hits.sort_unstable();
        assert_eq!(hits, vec![(0, 2), (1, 1), (2, 1), (2, 2)]);
    }
}
