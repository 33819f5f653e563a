//! What a filter reads while one document is walked: the document, the node `$` stands for, and
//! the results of absolute queries. `$..x` is the same for every candidate, so it is evaluated
//! once per walk: a filter under `..` stays linear in the body, not quadratic.

use std::cell::RefCell;
use std::rc::Rc;

use crate::json::{Document, NodeId};

/// One walk's view for filters (`[?…]`).
pub struct FilterContext<'s, 'a> {
    /// The document.
    pub doc: &'s Document<'a>,
    /// `$`: the record for a record-scoped rule, the body for a body-scoped one.
    pub root: NodeId,
    /// Absolute queries' nodelists, keyed by the query's address (queries live as long as the
    /// plan, longer than any walk).
    memo: RefCell<Vec<(usize, Rc<Vec<NodeId>>)>>,
}

impl<'s, 'a> FilterContext<'s, 'a> {
    /// A context for one walk of `doc` from `root`.
    pub fn new(doc: &'s Document<'a>, root: NodeId) -> FilterContext<'s, 'a> {
        FilterContext {
            doc,
            root,
            memo: RefCell::new(Vec::new()),
        }
    }

    /// The nodelist of the absolute query at `key`: `select`ed on first use in this walk, then
    /// remembered.
    pub(super) fn absolute(
        &self,
        key: usize,
        select: impl FnOnce() -> Vec<NodeId>,
    ) -> Rc<Vec<NodeId>> {
        if let Some((_, found)) = self.memo.borrow().iter().find(|(k, _)| *k == key) {
            return found.clone();
        }
        let found = Rc::new(select());
        self.memo.borrow_mut().push((key, found.clone()));
        found
    }

    /// How many absolute queries this walk has evaluated.
    #[cfg(test)]
    pub(super) fn absolute_queries(&self) -> usize {
        self.memo.borrow().len()
    }
}
