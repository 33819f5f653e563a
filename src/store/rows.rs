//! A batch of sightings as the rows a SQL store writes: merged per tag and sorted by digest.
//!
//! Both the gateway's own writer and `tags import` write through this one shape. Tag digests are
//! random, so rows in arrival order land on random B-tree pages; sorted, a batch walks each
//! table's index once, in order, and neighbouring rows share the pages they dirty. Merging
//! matters for correctness too: an upsert cannot touch the same row twice in one statement.
//!
//! A record's recipients live in its own row, as 32-byte digests side by side: a first sighting
//! is one row per record key, not one more per key and recipient. The list helpers here are what
//! the SQL backends register as functions (SQLite) or define in SQL (PostgreSQL).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Digest, TagWrite};

/// A record key's tag, with the recipients seen in it.
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
    /// Recipient digests seen in it by that controller, sorted, each once. Stored side by side
    /// in the row itself: one row per record key instead of one per key and recipient.
    pub recipients: Vec<Digest>,
}

impl RecordRow {
    /// The recipients as stored: 32-byte digests side by side.
    pub fn recipient_bytes(&self) -> Vec<u8> {
        self.recipients.concat()
    }
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

/// Rows a batch added or grew; rows it only refreshed or found as they were are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    /// Record tags added, or given recipients they did not list.
    pub records: u64,
    /// Recipient tags added.
    pub recipients: u64,
}

impl Added {
    /// Sums two counts.
    pub fn add(&mut self, other: Added) {
        self.records += other.records;
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
                } => match records.get(digest) {
                    Some(&i) if rows.records[i].controller != *controller => continue,
                    Some(&i) => {
                        let row = &mut rows.records[i];
                        row.first = row.first.min(*seen);
                        row.last = row.last.max(*seen);
                        row.recipients.extend_from_slice(seen_with);
                    }
                    None => {
                        records.insert(*digest, rows.records.len());
                        rows.records.push(RecordRow {
                            digest: *digest,
                            controller: controller.clone(),
                            first: *seen,
                            last: *seen,
                            recipients: seen_with.clone(),
                        });
                    }
                },
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
        for row in &mut rows.records {
            row.recipients.sort_unstable();
            row.recipients.dedup();
        }
        rows.recipients
            .sort_unstable_by(|a, b| (a.digest, &*a.controller).cmp(&(b.digest, &*b.controller)));
        rows
    }

    /// Cuts the batch into `parts` batches of contiguous key ranges (for writers working side by
    /// side: no two of them touch the same row).
    pub fn split(self, parts: usize) -> Vec<Rows> {
        fn cut<T>(mut rows: Vec<T>, parts: usize) -> Vec<Vec<T>> {
            let size = rows.len().div_ceil(parts).max(1);
            let mut pieces = Vec::with_capacity(parts);
            while rows.len() > size {
                let rest = rows.split_off(size);
                pieces.push(std::mem::replace(&mut rows, rest));
            }
            pieces.push(rows);
            pieces.resize_with(parts, Vec::new);
            pieces
        }
        let parts = parts.max(1);
        cut(self.records, parts)
            .into_iter()
            .zip(cut(self.recipients, parts))
            .map(|(records, recipients)| Rows {
                records,
                recipients,
            })
            .collect()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.recipients.is_empty()
    }
}

/// Whether a stored recipient list (digests side by side) holds `digest` at a digest boundary.
pub fn list_contains(list: &[u8], digest: &[u8]) -> bool {
    list.chunks_exact(32).any(|d| d == digest)
}

/// A stored recipient list with the digests of `more` it does not hold appended, in `more`'s
/// order: what a record learns when it is seen with new recipients.
pub fn list_union(list: &[u8], more: &[u8]) -> Vec<u8> {
    let mut union = list.to_vec();
    for digest in more.chunks_exact(32) {
        if !list_contains(&union, digest) {
            union.extend_from_slice(digest);
        }
    }
    union
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
        // Globex's sighting of acme's record 3 is dropped whole; acme's two sightings list
        // their recipient once.
        assert_eq!(rows.records[1].recipients, vec![[9; 32]]);
    }

    #[test]
    fn a_split_keeps_every_row_once_in_key_order() {
        let acme: Arc<str> = "acme".into();
        let writes: Vec<TagWrite> = (0..7u8)
            .map(|d| TagWrite::Recipient {
                digest: [d; 32],
                controller: acme.clone(),
                seen: 1,
            })
            .collect();
        let parts = Rows::from_writes(&writes).split(2);
        assert_eq!(parts.len(), 2);
        let firsts: Vec<Vec<u8>> = parts
            .iter()
            .map(|p| p.recipients.iter().map(|r| r.digest[0]).collect())
            .collect();
        assert_eq!(firsts, [vec![0, 1, 2, 3], vec![4, 5, 6]]);
        assert_eq!(Rows::default().split(3).len(), 3);
    }

    #[test]
    fn recipient_lists_grow_by_whole_digests() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let list = [a, b].concat();
        assert!(list_contains(&list, &b));
        assert!(!list_contains(&list, &c));
        // Bytes that straddle two digests are no digest of the list.
        let straddle = [&a[16..], &b[..16]].concat();
        assert!(!list_contains(&list, &straddle));
        assert_eq!(list_union(&list, &[b, c].concat()), [a, b, c].concat());
        assert_eq!(list_union(&[], &[c, c].concat()), c.to_vec());
    }
}
