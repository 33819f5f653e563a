//! The `memory` backend: tags in process maps, lost on exit. For tests and single-run demos.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::outbox::{
    Attempt, Backlog, Claimed, DeliveryState, DeliveryStatus, InboxItem, MatchKeys, NewDelivery,
    NewRequest, Outbox, RequestId, RequestState, RequestType, Subject, UnmatchedCounts,
    UnmatchedEntry, Waiting,
};
use super::rows::{Added, OnConflict, Rows};
use super::{Deleted, Digest, ImportMark, RecipientTag, RecordTag, Store, StoreFuture, TagWrite};

/// Tags and privacy requests in memory.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    outbox: Mutex<OutboxTables>,
}

#[derive(Default)]
struct OutboxTables {
    requests: HashMap<RequestId, RequestRow>,
    /// Keyed by (request, controller); ordered so claims are deterministic.
    deliveries: BTreeMap<(RequestId, Arc<str>), DeliveryRow>,
    /// Requests no controller was found for; `None` once expired.
    unmatched: BTreeMap<RequestId, Option<MatchKeys>>,
}

struct RequestRow {
    kind: RequestType,
    received_at: u64,
    subject: Option<Subject>,
}

struct DeliveryRow {
    webhook_id: String,
    verified: bool,
    status: DeliveryStatus,
    attempts: u32,
    next_attempt: u64,
    lease_until: u64,
    claim: u64,
    settled_at: Option<u64>,
}

#[derive(Default)]
struct Tables {
    records: HashMap<Digest, RecordTag>,
    recipients: HashMap<Digest, Vec<RecipientTag>>,
    imports: HashMap<String, u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Tables {
    /// Applies a batch's rows as the SQL stores do (`store/rows.rs`): the first controller of a
    /// record wins, its owner's sightings add recipients, and a live sighting (`Refresh`) moves
    /// last-seen on where an import (`Keep`) leaves it.
    fn apply(&mut self, rows: Rows, conflict: OnConflict) -> Added {
        let refresh = conflict == OnConflict::Refresh;
        let mut added = Added::default();
        for row in rows.records {
            let mut changed = false;
            let tag = self.records.entry(row.digest).or_insert_with(|| {
                changed = true;
                RecordTag {
                    controller: row.controller.clone(),
                    first_seen: row.first,
                    last_seen: row.last,
                    recipients: Vec::new(),
                }
            });
            if tag.controller == row.controller {
                if refresh {
                    tag.last_seen = tag.last_seen.max(row.last);
                }
                for r in &row.recipients {
                    if !tag.recipients.contains(r) {
                        tag.recipients.push(*r);
                        changed = true;
                    }
                }
            }
            added.records += u64::from(changed);
        }
        for row in rows.recipients {
            let tags = self.recipients.entry(row.digest).or_default();
            match tags.iter_mut().find(|t| t.controller == row.controller) {
                Some(tag) if refresh => tag.last_seen = tag.last_seen.max(row.last),
                Some(_) => {}
                None => {
                    added.recipients += 1;
                    tags.push(RecipientTag {
                        controller: row.controller,
                        first_seen: row.first,
                        last_seen: row.last,
                    });
                }
            }
        }
        added
    }
}

/// A delivery as intake or a later match creates it: pending, due at `at`.
fn pending(delivery: NewDelivery, at: u64) -> DeliveryRow {
    DeliveryRow {
        webhook_id: delivery.webhook_id,
        verified: delivery.verified,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt: at,
        lease_until: 0,
        claim: 0,
        settled_at: None,
    }
}

impl Store for MemoryStore {
    fn write(&self, batch: Vec<TagWrite>) -> StoreFuture<'_, ()> {
        let rows = Rows::from_writes(&batch);
        self.tables
            .lock()
            .expect("not poisoned")
            .apply(rows, OnConflict::Refresh);
        Box::pin(std::future::ready(Ok(())))
    }

    fn import(&self, rows: Rows, mark: ImportMark) -> StoreFuture<'_, Added> {
        let mut tables = self.tables.lock().expect("not poisoned");
        let added = tables.apply(rows, OnConflict::Keep);
        tables.imports.insert(mark.name, mark.line);
        Box::pin(std::future::ready(Ok(added)))
    }

    fn import_mark(&self, name: String) -> StoreFuture<'_, Option<u64>> {
        let line = self
            .tables
            .lock()
            .expect("not poisoned")
            .imports
            .get(&name)
            .copied();
        Box::pin(std::future::ready(Ok(line)))
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

    fn erase(&self, controller: Arc<str>, recipients: Vec<Digest>) -> StoreFuture<'_, Deleted> {
        let mut tables = self.tables.lock().expect("not poisoned");
        let mut deleted = Deleted::default();
        for digest in &recipients {
            if let Some(tags) = tables.recipients.get_mut(digest) {
                let before = tags.len();
                tags.retain(|t| t.controller != controller);
                deleted.recipients += (before - tags.len()) as u64;
                if tags.is_empty() {
                    tables.recipients.remove(digest);
                }
            }
        }
        let before = tables.records.len();
        tables.records.retain(|_, tag| {
            tag.controller != controller || !tag.recipients.iter().any(|r| recipients.contains(r))
        });
        deleted.records = (before - tables.records.len()) as u64;
        Box::pin(std::future::ready(Ok(deleted)))
    }
}

impl Outbox for MemoryStore {
    fn insert(&self, request: NewRequest) -> StoreFuture<'_, ()> {
        let mut outbox = self.outbox.lock().expect("not poisoned");
        for delivery in request.deliveries {
            let key = (request.id, delivery.controller.clone());
            outbox
                .deliveries
                .insert(key, pending(delivery, request.received_at));
        }
        if let Some(keys) = request.unmatched {
            outbox.unmatched.insert(request.id, Some(keys));
        }
        outbox.requests.insert(
            request.id,
            RequestRow {
                kind: request.kind,
                received_at: request.received_at,
                subject: request.subject,
            },
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn state(&self, id: RequestId) -> StoreFuture<'_, Option<RequestState>> {
        let outbox = self.outbox.lock().expect("not poisoned");
        let state = outbox.requests.get(&id).map(|request| RequestState {
            received_at: request.received_at,
            deliveries: outbox
                .deliveries
                .range((id, Arc::from(""))..)
                .take_while(|((r, _), _)| *r == id)
                .map(|(_, d)| DeliveryState {
                    verified: d.verified,
                    status: d.status,
                })
                .collect(),
        });
        Box::pin(std::future::ready(Ok(state)))
    }

    fn claim(
        &self,
        controllers: Vec<Arc<str>>,
        now: u64,
        lease_until: u64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Claimed>> {
        let mut outbox = self.outbox.lock().expect("not poisoned");
        let OutboxTables {
            requests,
            deliveries,
            ..
        } = &mut *outbox;
        let mut due: Vec<(&(RequestId, Arc<str>), &mut DeliveryRow)> = deliveries
            .iter_mut()
            .filter(|((_, controller), d)| {
                d.status == DeliveryStatus::Pending
                    && d.next_attempt <= now
                    && d.lease_until <= now
                    && controllers.contains(controller)
            })
            .collect();
        due.sort_by_key(|(_, d)| d.next_attempt);
        let claim: u64 = rand::random();
        let claimed = due
            .into_iter()
            .take(limit as usize)
            .map(|((request_id, controller), d)| {
                d.attempts += 1;
                d.lease_until = lease_until;
                d.claim = claim;
                let request = &requests[request_id];
                Claimed {
                    request_id: *request_id,
                    controller: controller.clone(),
                    webhook_id: d.webhook_id.clone(),
                    kind: request.kind,
                    received_at: request.received_at,
                    verified: d.verified,
                    subject: request.subject.clone(),
                    attempts: d.attempts,
                    claim,
                }
            })
            .collect();
        Box::pin(std::future::ready(Ok(claimed)))
    }

    fn finish(
        &self,
        request_id: RequestId,
        controller: Arc<str>,
        claim: u64,
        attempt: Attempt,
    ) -> StoreFuture<'_, bool> {
        let mut outbox = self.outbox.lock().expect("not poisoned");
        let held = match outbox.deliveries.get_mut(&(request_id, controller)) {
            Some(d) if d.claim == claim && d.status == DeliveryStatus::Pending => {
                d.lease_until = 0;
                match attempt {
                    Attempt::Delivered { at } => {
                        d.status = DeliveryStatus::Delivered;
                        d.settled_at = Some(at);
                    }
                    Attempt::Retry { next, .. } => d.next_attempt = next,
                    Attempt::Dead { .. } => d.status = DeliveryStatus::Dead,
                }
                true
            }
            _ => false,
        };
        Box::pin(std::future::ready(Ok(held)))
    }

    fn inbox(
        &self,
        controller: Arc<str>,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<InboxItem>> {
        let outbox = self.outbox.lock().expect("not poisoned");
        let mut items: Vec<InboxItem> = outbox
            .deliveries
            .iter()
            .filter(|((_, c), d)| *c == controller && status.is_none_or(|s| s == d.status))
            .map(|((id, _), d)| {
                let request = &outbox.requests[id];
                InboxItem {
                    request_id: *id,
                    kind: request.kind,
                    status: d.status,
                    received_at: request.received_at,
                    verified: d.verified,
                    subject: request.subject.clone(),
                }
            })
            .collect();
        items.sort_by_key(|i| (i.received_at, i.request_id));
        items.truncate(limit as usize);
        Box::pin(std::future::ready(Ok(items)))
    }

    fn acknowledge(
        &self,
        request_id: RequestId,
        controller: Arc<str>,
        at: u64,
    ) -> StoreFuture<'_, bool> {
        let mut outbox = self.outbox.lock().expect("not poisoned");
        let found = match outbox.deliveries.get_mut(&(request_id, controller)) {
            Some(d) => {
                if d.status != DeliveryStatus::Acknowledged {
                    d.status = DeliveryStatus::Acknowledged;
                    d.settled_at = Some(at);
                    d.lease_until = 0;
                }
                true
            }
            None => false,
        };
        Box::pin(std::future::ready(Ok(found)))
    }

    fn expire_subjects(&self, before: u64, limit: u32) -> StoreFuture<'_, u64> {
        let mut outbox = self.outbox.lock().expect("not poisoned");
        let OutboxTables {
            requests,
            deliveries,
            unmatched,
        } = &mut *outbox;
        let mut erased = 0;
        for (id, request) in requests.iter_mut() {
            if erased >= u64::from(limit) {
                break;
            }
            if request.subject.is_none() || unmatched.contains_key(id) {
                continue;
            }
            let settled = deliveries
                .range((*id, Arc::from(""))..)
                .take_while(|((r, _), _)| r == id)
                .all(|(_, d)| d.settled_at.is_some_and(|at| at < before));
            if settled {
                request.subject = None;
                erased += 1;
            }
        }
        Box::pin(std::future::ready(Ok(erased)))
    }

    fn backlog(&self) -> StoreFuture<'_, Backlog> {
        let outbox = self.outbox.lock().expect("not poisoned");
        let mut backlog = Backlog::default();
        for ((id, _), d) in &outbox.deliveries {
            if d.status == DeliveryStatus::Pending {
                backlog.pending += 1;
                let at = outbox.requests[id].received_at;
                backlog.oldest = Some(backlog.oldest.map_or(at, |o| o.min(at)));
            }
        }
        Box::pin(std::future::ready(Ok(backlog)))
    }

    fn waiting(&self, after: Option<RequestId>, limit: u32) -> StoreFuture<'_, Vec<Waiting>> {
        let outbox = self.outbox.lock().expect("not poisoned");
        let waiting = outbox
            .unmatched
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| **id > a))
            .filter_map(|(id, keys)| {
                Some(Waiting {
                    id: *id,
                    received_at: outbox.requests[id].received_at,
                    keys: keys.clone()?,
                    subject: outbox.requests[id].subject.clone(),
                })
            })
            .take(limit as usize)
            .collect();
        Box::pin(std::future::ready(Ok(waiting)))
    }

    fn matched(
        &self,
        id: RequestId,
        deliveries: Vec<NewDelivery>,
        at: u64,
    ) -> StoreFuture<'_, bool> {
        let mut outbox = self.outbox.lock().expect("not poisoned");
        let waited = matches!(outbox.unmatched.get(&id), Some(Some(_)));
        if waited {
            outbox.unmatched.remove(&id);
            for delivery in deliveries {
                let key = (id, delivery.controller.clone());
                outbox.deliveries.insert(key, pending(delivery, at));
            }
        }
        Box::pin(std::future::ready(Ok(waited)))
    }

    fn expire_unmatched(&self, before: u64, limit: u32) -> StoreFuture<'_, u64> {
        let mut outbox = self.outbox.lock().expect("not poisoned");
        let OutboxTables {
            requests,
            unmatched,
            ..
        } = &mut *outbox;
        let mut expired = 0;
        for (id, keys) in unmatched.iter_mut() {
            let request = requests.get_mut(id).expect("an unmatched request exists");
            if expired < u64::from(limit) && keys.is_some() && request.received_at < before {
                *keys = None;
                request.subject = None;
                expired += 1;
            }
        }
        Box::pin(std::future::ready(Ok(expired)))
    }

    fn unmatched(&self, limit: u32) -> StoreFuture<'_, Vec<UnmatchedEntry>> {
        let outbox = self.outbox.lock().expect("not poisoned");
        let mut entries: Vec<UnmatchedEntry> = outbox
            .unmatched
            .iter()
            .map(|(id, keys)| {
                let request = &outbox.requests[id];
                UnmatchedEntry {
                    id: *id,
                    kind: request.kind,
                    received_at: request.received_at,
                    expired: keys.is_none(),
                }
            })
            .collect();
        entries.sort_by_key(|e| (e.received_at, e.id));
        entries.truncate(limit as usize);
        Box::pin(std::future::ready(Ok(entries)))
    }

    fn unmatched_counts(&self) -> StoreFuture<'_, UnmatchedCounts> {
        let outbox = self.outbox.lock().expect("not poisoned");
        let mut counts = UnmatchedCounts::default();
        for keys in outbox.unmatched.values() {
            match keys {
                Some(_) => counts.waiting += 1,
                None => counts.expired += 1,
            }
        }
        Box::pin(std::future::ready(Ok(counts)))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conforms() {
        let store = super::MemoryStore::new();
        super::super::conformance::run(&store).await;
        super::super::conformance::run_outbox(&super::MemoryStore::new()).await;
    }
}
