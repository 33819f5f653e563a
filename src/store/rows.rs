//! A batch of sightings as the rows a SQL store writes: merged per tag and sorted by digest.
//!
//! Both the gateway's own writer and `tags import` write through this one shape. Tag digests are
//! random, so rows in arrival order land on random B-tree pages; sorted, a batch walks each
//! table's index once, in order, and neighbouring rows share the pages they dirty. Merging
//! matters for correctness too: an upsert cannot touch the same row twice in one statement.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Digest, TagWrite};

/// A record key's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    /// The record key digest.
    pub digest: Digest,
    /// The controller the batch saw it with first.
    pub controller: Arc<str>,
    /// Earliest sighting in the batch (unix seconds).
    pub first: u64,
    /// Latest sighting in the batch (unix seconds).
    pub last: u64,
}

/// A recipient seen in a record: linked only if `controller` owns the record once the batch's
/// record rows are applied (first controller wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// The record key digest.
    pub record: Digest,
    /// The recipient identifier digest.
    pub recipient: Digest,
    /// Who saw the recipient in the record.
    pub controller: Arc<str>,
}

/// A recipient identifier's tag under one controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientRow {
    /// The identifier digest.
    pub digest: Digest,
    /// The controller it was seen under.
    pub controller: Arc<str>,
    /// Earliest sighting in the batch.
    pub first: u64,
    /// Latest sighting in the batch.
    pub last: u64,
}

/// One batch, each table's rows unique and sorted by key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    /// `record_tags` rows, by digest.
    pub records: Vec<RecordRow>,
    /// `record_recipients` rows, by (record, recipient).
    pub links: Vec<LinkRow>,
    /// `recipient_tags` rows, by (digest, controller).
    pub recipients: Vec<RecipientRow>,
}

/// What an existing row does when a batch brings it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Live sightings: a later last-seen is kept (retention counts from it).
    Refresh,
    /// Imported history: the row stays as it is, so a second import writes nothing.
    Keep,
}

/// Rows a batch added (new tags and links); rows it only refreshed or found are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    /// Record tags added.
    pub records: u64,
    /// Recipients linked to records.
    pub links: u64,
    /// Recipient tags added.
    pub recipients: u64,
}

impl Added {
    /// Sums two counts.
    pub fn add(&mut self, other: Added) {
        self.records += other.records;
        self.links += other.links;
        self.recipients += other.recipients;
    }
}

impl Rows {
    /// Merges and sorts a batch. A record key sighted under two controllers keeps the first, as
    /// it would have won sighting by sighting.
    pub fn from_writes(batch: &[TagWrite]) -> Rows {
        let mut rows = Rows::default();
        let mut records: HashMap<Digest, usize> = HashMap::with_capacity(batch.len());
        let mut recipients: HashMap<(Digest, &str), usize> = HashMap::with_capacity(batch.len());
        for write in batch {
            match write {
                TagWrite::Record {
                    digest,
                    controller,
                    recipients: seen_with,
                    seen,
                } => {
                    match records.get(digest) {
                        Some(&i) if rows.records[i].controller != *controller => continue,
                        Some(&i) => {
                            let row = &mut rows.records[i];
                            row.first = row.first.min(*seen);
                            row.last = row.last.max(*seen);
                        }
                        None => {
                            records.insert(*digest, rows.records.len());
                            rows.records.push(RecordRow {
                                digest: *digest,
                                controller: controller.clone(),
                                first: *seen,
                                last: *seen,
                            });
                        }
                    }
                    rows.links.extend(seen_with.iter().map(|r| LinkRow {
                        record: *digest,
                        recipient: *r,
                        controller: controller.clone(),
                    }));
                }
                TagWrite::Recipient {
                    digest,
                    controller,
                    seen,
                } => match recipients.get(&(*digest, &**controller)) {
                    Some(&i) => {
                        let row = &mut rows.recipients[i];
                        row.first = row.first.min(*seen);
                        row.last = row.last.max(*seen);
                    }
                    None => {
                        recipients.insert((*digest, controller), rows.recipients.len());
                        rows.recipients.push(RecipientRow {
                            digest: *digest,
                            controller: controller.clone(),
                            first: *seen,
                            last: *seen,
                        });
                    }
                },
            }
        }
        rows.records.sort_unstable_by_key(|r| r.digest);
        rows.links.sort_unstable_by_key(|l| (l.record, l.recipient));
        // Links of one record under several controllers: only the owner's can be written, and
        // the statement joins on the owner, so duplicates of (record, recipient) may stay.
        rows.links.dedup();
        rows.recipients
            .sort_unstable_by(|a, b| (a.digest, &*a.controller).cmp(&(b.digest, &*b.controller)));
        rows
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.links.is_empty() && self.recipients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_merged_per_tag_and_sorted_and_the_first_controller_wins() {
        let (acme, globex): (Arc<str>, Arc<str>) = ("acme".into(), "globex".into());
        let record = |digest: u8, controller: &Arc<str>, seen| TagWrite::Record {
            digest: [digest; 32],
            controller: controller.clone(),
            recipients: vec![[9; 32]],
            seen,
        };
        let recipient = |digest: u8, controller: &Arc<str>, seen| TagWrite::Recipient {
            digest: [digest; 32],
            controller: controller.clone(),
            seen,
        };
        let rows = Rows::from_writes(&[
            record(3, &acme, 10),
            record(1, &globex, 5),
            record(3, &globex, 20),
            record(3, &acme, 30),
            recipient(7, &acme, 10),
            recipient(7, &acme, 2),
            recipient(4, &globex, 1),
        ]);
        let records: Vec<_> = rows
            .records
            .iter()
            .map(|r| (r.digest[0], &*r.controller, r.first, r.last))
            .collect();
        assert_eq!(records, [(1, "globex", 5, 5), (3, "acme", 10, 30)]);
        let recipients: Vec<_> = rows
            .recipients
            .iter()
            .map(|r| (r.digest[0], r.first, r.last))
            .collect();
        assert_eq!(recipients, [(4, 1, 1), (7, 2, 10)]);
        // Globex's sighting of acme's record 3 is dropped whole; acme's two sightings link once.
        assert_eq!(rows.links.len(), 2);
        assert!(rows.links.windows(2).all(|w| w[0].record <= w[1].record));
    }
}
