//! The sightings waiting for the store, in three classes that degrade differently under load.
//!
//! - **Durable:** tags that cannot be learnt again (a customer's create, answered with the
//!   record's only mention of its controller; the recipients a customer sent). The writer takes
//!   them first, and the response that taught them waits until they are committed: group commit,
//!   so one transaction carries every create waiting at that moment.
//! - **New:** first sightings and additions (a record or recipient the store may not hold, a new
//!   recipient of a record). Never dropped: a privacy request for that recipient depends on them.
//! - **Refreshes:** a later last-seen of a tag the store holds. Coalesced, one per tag: the
//!   latest replaces what is waiting.
//!
//! When new sightings and refreshes together reach the limit, responses that add to them wait
//! for room (the gateway slows down) instead of anything being dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{Digest, TagWrite};

/// The class of a sighting that changes what the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Durable,
    New,
    Refresh,
}

/// What identifies a tag, so that refreshes of it coalesce.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TagId {
    Record(Digest),
    Recipient(Digest, Arc<str>),
}

impl TagId {
    fn of(write: &TagWrite) -> TagId {
        match write {
            TagWrite::Record { digest, .. } => TagId::Record(*digest),
            TagWrite::Recipient {
                digest, controller, ..
            } => TagId::Recipient(*digest, controller.clone()),
        }
    }
}

/// The queue itself; [`super::Tags`] holds it under a mutex.
#[derive(Default)]
pub(super) struct Queue {
    durable: VecDeque<TagWrite>,
    /// Number of durable writes ever queued: the sequence number of the latest.
    durable_queued: u64,
    new: VecDeque<TagWrite>,
    refreshes: HashMap<TagId, TagWrite>,
}

/// One batch taken for the store, and what to do once it is written or failed.
pub(super) struct Batch {
    pub writes: Vec<TagWrite>,
    durable: usize,
    new: usize,
    /// Sequence number of the last durable write in the batch (0: none).
    pub durable_upto: u64,
}

impl Queue {
    /// Adds a sighting; returns the sequence number to wait for when it is durable. A refresh
    /// that replaces a waiting one returns `Coalesced`.
    pub fn push(&mut self, class: Class, write: TagWrite) -> Pushed {
        match class {
            Class::Durable => {
                self.durable.push_back(write);
                self.durable_queued += 1;
                Pushed::Durable(self.durable_queued)
            }
            Class::New => {
                self.new.push_back(write);
                Pushed::Queued
            }
            Class::Refresh => match self.refreshes.insert(TagId::of(&write), write) {
                Some(_) => Pushed::Coalesced,
                None => Pushed::Queued,
            },
        }
    }

    /// Sightings that count against the limit (durable ones are bounded by the requests waiting
    /// for them).
    pub fn backlog(&self) -> usize {
        self.new.len() + self.refreshes.len()
    }

    /// Everything waiting.
    pub fn len(&self) -> usize {
        self.durable.len() + self.backlog()
    }

    /// Takes up to `limit` sightings: durable first, then new, then refreshes.
    pub fn take(&mut self, limit: usize) -> Batch {
        let durable = self.durable.len().min(limit);
        let mut writes: Vec<TagWrite> = self.durable.drain(..durable).collect();
        let durable_upto = if durable > 0 {
            self.durable_queued - self.durable.len() as u64
        } else {
            0
        };
        let new = self.new.len().min(limit - writes.len());
        writes.extend(self.new.drain(..new));
        let room = limit - writes.len();
        if room > 0 && !self.refreshes.is_empty() {
            let ids: Vec<TagId> = self.refreshes.keys().take(room).cloned().collect();
            for id in ids {
                writes.extend(self.refreshes.remove(&id));
            }
        }
        Batch {
            writes,
            durable,
            new,
            durable_upto,
        }
    }

    /// Puts back a batch the store refused, ahead of what came meanwhile; a refresh that a newer
    /// one replaced meanwhile stays replaced.
    pub fn put_back(&mut self, batch: Batch) {
        let mut writes = batch.writes.into_iter();
        let durable: Vec<TagWrite> = writes.by_ref().take(batch.durable).collect();
        let new: Vec<TagWrite> = writes.by_ref().take(batch.new).collect();
        for write in durable.into_iter().rev() {
            self.durable.push_front(write);
        }
        for write in new.into_iter().rev() {
            self.new.push_front(write);
        }
        for write in writes {
            self.refreshes.entry(TagId::of(&write)).or_insert(write);
        }
    }
}

/// What [`Queue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Queued as durable write number N.
    Durable(u64),
    Queued,
    /// Replaced a waiting refresh of the same tag.
    Coalesced,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(digest: u8, seen: u64) -> TagWrite {
        TagWrite::Recipient {
            digest: [digest; 32],
            controller: "acme".into(),
            seen,
        }
    }

    #[test]
    fn durable_first_then_new_then_refreshes_coalesced() {
        let mut queue = Queue::default();
        assert_eq!(queue.push(Class::Refresh, recipient(1, 10)), Pushed::Queued);
        assert_eq!(queue.push(Class::New, recipient(2, 10)), Pushed::Queued);
        assert_eq!(
            queue.push(Class::Refresh, recipient(1, 20)),
            Pushed::Coalesced
        );
        assert_eq!(
            queue.push(Class::Durable, recipient(3, 10)),
            Pushed::Durable(1)
        );
        assert_eq!(
            queue.push(Class::Durable, recipient(4, 10)),
            Pushed::Durable(2)
        );
        assert_eq!((queue.len(), queue.backlog()), (4, 2));

        let batch = queue.take(3);
        assert_eq!(
            batch.writes,
            vec![recipient(3, 10), recipient(4, 10), recipient(2, 10)]
        );
        assert_eq!(batch.durable_upto, 2);
        let rest = queue.take(10);
        assert_eq!(rest.writes, vec![recipient(1, 20)], "the latest refresh");
        assert_eq!(rest.durable_upto, 0);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn a_refused_batch_goes_back_in_front_and_keeps_newer_refreshes() {
        let mut queue = Queue::default();
        queue.push(Class::Durable, recipient(1, 10));
        queue.push(Class::New, recipient(2, 10));
        queue.push(Class::Refresh, recipient(3, 10));
        let batch = queue.take(10);
        assert_eq!(batch.durable_upto, 1);
        queue.push(Class::Durable, recipient(4, 10));
        queue.push(Class::New, recipient(5, 10));
        queue.push(Class::Refresh, recipient(3, 30));
        queue.put_back(batch);

        let again = queue.take(10);
        assert_eq!(again.durable_upto, 2);
        assert_eq!(
            &again.writes[..4],
            &[
                recipient(1, 10),
                recipient(4, 10),
                recipient(2, 10),
                recipient(5, 10)
            ]
        );
        assert_eq!(&again.writes[4..], &[recipient(3, 30)], "not the older one");
    }
}
