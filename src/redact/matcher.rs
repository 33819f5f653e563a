//! Evaluates many compiled paths in one walk of a document.
//!
//! The paths are merged into a trie: paths with a common prefix (`$.recipient.email` and
//! `$.recipient.phone`) share their first steps, so a record is tested against each distinct
//! member name once, not once per rule. A `..` step becomes a "sticky" state that follows the walk
//! into every descendant. Each node of the document carries the set of trie states that reached
//! it; a subtree is entered only while some state is alive, so rules like `$.recipient.email`
//! touch three nodes however large the record is, and ten rules cost one walk.

use super::context::FilterContext;
use super::path::{Path, Sel, selects};
use crate::json::{Document, Kind, NONE, NodeId};

/// Several paths evaluated together.
#[derive(Debug, Clone)]
pub struct Matcher {
    states: Vec<State>,
    /// Number of paths (for [`Matcher::is_empty`]).
    paths: usize,
}

/// A trie state.
#[derive(Debug, Clone, Default)]
struct State {
    /// Paths that select a node in this state.
    accepts: Vec<usize>,
    /// Member-name transitions, one per distinct name.
    names: Vec<(Box<str>, Vec<u32>)>,
    /// Wildcard, index and slice transitions.
    others: Vec<(Sel, u32)>,
    /// The `..` loop entered from this state without consuming a node (descendant-or-self).
    descend: Option<u32>,
    /// A `..` loop: stays active in every descendant.
    sticky: bool,
    /// Reached by a single-name step only, so later paths with the same prefix may share it.
    shareable: bool,
}

impl Matcher {
    /// A matcher for `paths`; hits report the index in this list.
    pub fn new(paths: Vec<Path>) -> Matcher {
        let mut matcher = Matcher {
            states: vec![State::default()],
            paths: paths.len(),
        };
        for (index, path) in paths.iter().enumerate() {
            let mut current = 0u32;
            for step in &path.steps {
                if step.descendant {
                    current = match matcher.states[current as usize].descend {
                        Some(loop_state) => loop_state,
                        None => {
                            let loop_state = matcher.add(State {
                                sticky: true,
                                ..State::default()
                            });
                            matcher.states[current as usize].descend = Some(loop_state);
                            loop_state
                        }
                    };
                }
                current = matcher.transition(current, &step.selectors);
            }
            matcher.states[current as usize].accepts.push(index);
        }
        matcher
    }

    fn add(&mut self, state: State) -> u32 {
        self.states.push(state);
        (self.states.len() - 1) as u32
    }

    /// The state reached from `from` by a step with `selectors`. A single name reuses an existing
    /// edge (shared prefixes); other steps get a fresh target shared by all their selectors.
    fn transition(&mut self, from: u32, selectors: &[Sel]) -> u32 {
        if let [Sel::Name(name)] = selectors {
            let existing = self.states[from as usize]
                .names
                .iter()
                .find(|(n, targets)| **n == **name && targets.len() == 1)
                .map(|(_, targets)| targets[0]);
            if let Some(target) = existing.filter(|t| self.states[*t as usize].shareable) {
                return target;
            }
        }
        let target = self.add(State {
            shareable: matches!(selectors, [Sel::Name(_)]),
            ..State::default()
        });
        for sel in selectors {
            let state = &mut self.states[from as usize];
            match sel {
                Sel::Name(name) => match state.names.iter_mut().find(|(n, _)| **n == **name) {
                    Some((_, targets)) => {
                        if !targets.contains(&target) {
                            targets.push(target);
                        }
                    }
                    None => state.names.push((name.as_str().into(), vec![target])),
                },
                other => state.others.push((other.clone(), target)),
            }
        }
        target
    }

    /// True when there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.paths == 0
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
        self.run_in(&mut Vec::new(), doc, root, fence, hit)
    }

    /// [`Matcher::run`] with the walk's state set kept in `stack`, so that a caller walking
    /// many records allocates it once.
    pub fn run_in(
        &self,
        stack: &mut Vec<u32>,
        doc: &Document<'_>,
        root: NodeId,
        fence: &dyn Fn(NodeId) -> bool,
        hit: &mut dyn FnMut(usize, NodeId),
    ) {
        if self.paths == 0 {
            return;
        }
        stack.clear();
        self.enter(stack, 0, 0);
        let top = stack.len();
        let walk = Walk {
            doc,
            filters: FilterContext::new(doc, root),
            fence,
        };
        self.visit(&walk, root, 0, top, stack, hit);
    }

    /// Adds `state` (and the `..` loop it opens) to the set that starts at `base`.
    fn enter(&self, stack: &mut Vec<u32>, base: usize, state: u32) {
        if stack[base..].contains(&state) {
            return;
        }
        stack.push(state);
        if let Some(loop_state) = self.states[state as usize].descend {
            self.enter(stack, base, loop_state);
        }
    }

    fn visit(
        &self,
        walk: &Walk<'_, '_>,
        node: NodeId,
        lo: usize,
        hi: usize,
        stack: &mut Vec<u32>,
        hit: &mut dyn FnMut(usize, NodeId),
    ) {
        let doc = walk.doc;
        for &state in &stack[lo..hi] {
            for &path in &self.states[state as usize].accepts {
                hit(path, node);
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
            // A scalar has nothing below it: the states it reaches only report it (a `..` loop
            // state accepts nothing itself), so none is entered and no walk goes into it.
            let scalar = !matches!(doc.node(child).kind, Kind::Array | Kind::Object);
            let base = stack.len();
            let mut reached = |stack: &mut Vec<u32>, target: u32| {
                if scalar {
                    if !(walk.fence)(child) {
                        for &path in &self.states[target as usize].accepts {
                            hit(path, child);
                        }
                    }
                } else {
                    self.enter(stack, base, target);
                }
            };
            for s in lo..hi {
                let state = &self.states[stack[s] as usize];
                if state.sticky && !scalar {
                    self.enter(stack, base, stack[s]);
                }
                if !is_array {
                    for (name, targets) in &state.names {
                        if doc.key_is(child, name) {
                            for &target in targets {
                                reached(stack, target);
                            }
                        }
                    }
                }
                for (sel, target) in &state.others {
                    let selected = match sel {
                        Sel::Filter(filter) => filter.holds(&walk.filters, child),
                        other => selects(other, is_array, index, len),
                    };
                    if selected {
                        reached(stack, *target);
                    }
                }
            }
            if stack.len() > base && !(walk.fence)(child) {
                let top = stack.len();
                self.visit(walk, child, base, top, stack, hit);
            }
            stack.truncate(base);
            child = doc.node(child).next_sibling;
            index += 1;
        }
    }
}

/// What one walk shares: the document, what filters read (`$` and its queries' results), and
/// the nodes not to enter.
struct Walk<'w, 'a> {
    doc: &'w Document<'a>,
    filters: FilterContext<'w, 'a>,
    fence: &'w dyn Fn(NodeId) -> bool,
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
            ("$..d..b", &["2", "3"]),
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
    fn many_paths_report_their_index_and_share_prefixes() {
        let doc = Document::parse(br#"{"a":1,"b":2,"r":{"e":3,"p":4}}"#).unwrap();
        let paths = [
            "$.b",
            "$.a",
            "$.*",
            "$.r.e",
            "$.r.p",
            "$.r['e','p']",
            "$..p",
        ];
        let matcher = Matcher::new(paths.iter().map(|p| Path::compile(p).unwrap()).collect());
        let mut hits = Vec::new();
        matcher.run(&doc, 0, &|_| false, &mut |p, n| {
            hits.push((p, String::from_utf8(doc.raw(n).to_vec()).unwrap()))
        });
        hits.sort();
        hits.dedup();
        let expected: Vec<(usize, String)> = [
            (0, "2"),
            (1, "1"),
            (2, "1"),
            (2, "2"),
            (2, r#"{"e":3,"p":4}"#),
            (3, "3"),
            (4, "4"),
            (5, "3"),
            (5, "4"),
            (6, "4"),
        ]
        .iter()
        .map(|(p, s)| (*p, s.to_string()))
        .collect();
        assert_eq!(hits, expected);
        // `$.r.e` and `$.r.p` share the `r` state: root, b, a, `*`, r, e, p, the union target,
        // the `..` loop and its p.
        assert_eq!(matcher.states.len(), 10);
        // A later path through a union target does not leak into the union's other names.
        let doc = Document::parse(br#"{"r":{"e":{"x":1},"p":{"x":2}}}"#).unwrap();
        let matcher = Matcher::new(vec![
            Path::compile("$.r['e','p']").unwrap(),
            Path::compile("$.r.e.x").unwrap(),
        ]);
        let mut hits = Vec::new();
        matcher.run(&doc, 0, &|_| false, &mut |p, n| {
            hits.push((p, String::from_utf8(doc.raw(n).to_vec()).unwrap()))
        });
        hits.sort();
        assert_eq!(
            hits,
            vec![
                (0, r#"{"x":1}"#.to_string()),
                (0, r#"{"x":2}"#.to_string()),
                (1, "1".to_string())
            ]
        );
    }
}
