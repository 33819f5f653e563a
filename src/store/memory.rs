//! The `memory` backend: tags in process maps, lost on exit. For tests and single-run demos.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Deleted, Digest, RecipientTag, RecordTag, Store, StoreFuture, TagWrite};

/// Tags in memory.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    records: HashMap<Digest, RecordTag>,
    recipients: HashMap<Digest, Vec<RecipientTag>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

/// Applies one sighting: the first controller of a record wins.
fn apply(
    records: &mut HashMap<Digest, RecordTag>,
    recipients: &mut HashMap<Digest, Vec<RecipientTag>>,
    write: &TagWrite,
) {
    match write {
        TagWrite::Record {
            digest,
            controller,
            recipients: seen_with,
            seen,
        } => {
            let tag = records.entry(*digest).or_insert_with(|| RecordTag {
                controller: controller.clone(),
                first_seen: *seen,
                last_seen: *seen,
                recipients: Vec::new(),
            });
            if tag.controller == *controller {
                tag.last_seen = tag.last_seen.max(*seen);
                for r in seen_with {
                    if !tag.recipients.contains(r) {
                        tag.recipients.push(*r);
                    }
                }
            }
        }
        TagWrite::Recipient {
            digest,
            controller,
            seen,
        } => {
            let tags = recipients.entry(*digest).or_default();
            match tags.iter_mut().find(|t| t.controller == *controller) {
                Some(tag) => tag.last_seen = tag.last_seen.max(*seen),
                None => tags.push(RecipientTag {
                    controller: controller.clone(),
                    first_seen: *seen,
                    last_seen: *seen,
                }),
            }
        }
    }
}

impl Store for MemoryStore {
    fn write(&self, batch: Vec<TagWrite>) -> StoreFuture<'_, ()> {
        let mut tables = self.tables.lock().expect("not poisoned");
        let Tables {
            records,
            recipients,
        } = &mut *tables;
        for write in &batch {
            apply(records, recipients, write);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn record(&self, digest: Digest) -> StoreFuture<'_, Option<RecordTag>> {
        let tag = self
            .tables
            .lock()
            .expect("not poisoned")
            .records
            .get(&digest)
            .cloned();
        Box::pin(std::future::ready(Ok(tag)))
    }

    fn records(&self, digests: Vec<Digest>) -> StoreFuture<'_, Vec<(Digest, RecordTag)>> {
        let tables = self.tables.lock().expect("not poisoned");
        let found = digests
            .into_iter()
            .filter_map(|d| tables.records.get(&d).map(|t| (d, t.clone())))
            .collect();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn recipient(&self, digest: Digest) -> StoreFuture<'_, Vec<RecipientTag>> {
        let tags = self
            .tables
            .lock()
            .expect("not poisoned")
            .recipients
            .get(&digest)
            .cloned()
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(tags)))
    }

    fn delete_expired(&self, before: u64, limit: u32) -> StoreFuture<'_, Deleted> {
        let mut tables = self.tables.lock().expect("not poisoned");
        let expired: Vec<Digest> = tables
            .records
            .iter()
            .filter(|(_, t)| t.last_seen < before)
            .map(|(d, _)| *d)
            .take(limit as usize)
            .collect();
        for digest in &expired {
            tables.records.remove(digest);
        }
        let mut recipients = 0u64;
        tables.recipients.retain(|_, tags| {
            tags.retain(|t| {
                let keep = t.last_seen >= before || recipients >= u64::from(limit);
                if !keep {
                    recipients += 1;
                }
                keep
            });
            !tags.is_empty()
        });
        let deleted = Deleted {
            records: expired.len() as u64,
            recipients,
        };
        Box::pin(std::future::ready(Ok(deleted)))
    }

    fn counts(&self) -> StoreFuture<'_, (u64, u64)> {
        let tables = self.tables.lock().expect("not poisoned");
        let recipients = tables.recipients.values().map(|t| t.len() as u64).sum();
        let counts = (tables.records.len() as u64, recipients);
        Box::pin(std::future::ready(Ok(counts)))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conforms() {
        super::super::conformance::run(&super::MemoryStore::new()).await;
    }
}
