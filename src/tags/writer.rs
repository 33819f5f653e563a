//! The write side: each sighting updates the cache at once (a tag is honoured from the moment
//! the response that created it is sent) and reaches the store in batches, from a queue whose
//! classes `queue.rs` describes. A tag that cannot be learnt again is committed before the
//! response that taught it is released (group commit); other sightings are written behind the
//! response and never dropped; refreshes coalesce.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::cache::Cached;
use super::queue::{Class, Pushed};
use super::{Resolved, Source, Tags};
use crate::admin::metrics;
use crate::store::{Digest, RecipientTag, RecordTag, StoreError, TagWrite};
use crate::vocabulary::Direction;

/// New sightings and refreshes waiting for the store past which responses that add to them wait
/// for room.
pub(super) const QUEUE_LIMIT: usize = 100_000;
/// Most sightings written in one store transaction. Tag keys are random, so each insert dirties
/// its own page; a larger transaction lets more inserts share a page before it is written
/// (1,000 → 5,000 raised fresh-record throughput by 38% on SQLite, 5,000 → 20,000 by another
/// 44% with sorted multi-row writes), while a create waits at most for one batch in flight
/// (about half a second at the store's pace).
const BATCH: usize = 20_000;
/// A tag's last-seen time is refreshed in the store at most this often (seconds): retention counts
/// in days, and refreshing on every sighting would cost a store write per record per request.
const REFRESH_SECS: u64 = 3600;

/// What a sighting changes in what the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Novelty {
    /// Nothing: the store has it, with a recent enough last-seen.
    Known,
    /// A later last-seen.
    Refresh,
    /// A tag, or a recipient of a record, the store may not hold.
    New,
}

/// What one body's sightings did: the tags counted, and what its response must wait for
/// ([`Tags::settle`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Record tags written (new or refreshed).
    pub records: usize,
    /// Recipient tags written (new or refreshed).
    pub recipients: usize,
    /// The number of its last durable write, to wait for.
    pub(super) durable: Option<u64>,
    /// Whether the queue was over its limit after these sightings.
    pub(super) crowded: bool,
}

impl Written {
    /// (record, recipient) tags written.
    pub fn counts(&self) -> (usize, usize) {
        (self.records, self.recipients)
    }
}

/// A tag that could not be learnt again was not committed before the request's deadline.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the tag store did not commit a created record's tag in time")]
pub struct NotCommitted;

impl Tags {
    /// Writes the tags of resolved records: recipients in both directions, record keys only from
    /// responses (where the upstream assigned them). The cache is updated now; the store gets
    /// them through the queue. [`Tags::settle`] then waits for what the response must wait for.
    pub fn write(&self, resolved: &[Resolved], direction: Direction, now: u64) -> Written {
        // Only sightings that change what the store holds are queued: a new tag, a new recipient
        // of a record, or a last-seen more than REFRESH_SECS old. The rest cost a cache check.
        let mut writes = Vec::new();
        let mut written = Written::default();
        let instant = Instant::now();
        for record in resolved {
            let Some(controller) = &record.controller else {
                continue;
            };
            // The caller's own word is the only source of these tags: nothing will teach them
            // again if they are lost.
            let durable = record.source == Source::Caller;
            let class = |novelty| match novelty {
                Novelty::New if durable => Some(Class::Durable),
                Novelty::New => Some(Class::New),
                Novelty::Refresh => Some(Class::Refresh),
                Novelty::Known => None,
            };
            // Record keys come from responses (the upstream assigned them), and from any body
            // whose record was found only under a previous key: written again under this one.
            if direction == Direction::Response || record.rekeyed {
                for key in &record.keys {
                    let novelty =
                        self.cache_record(key, controller, &record.recipients, now, instant);
                    if let Some(class) = class(novelty) {
                        written.records += 1;
                        if record.rekeyed {
                            ::metrics::counter!(metrics::TAGS_REKEYED).increment(1);
                        }
                        writes.push((
                            class,
                            TagWrite::Record {
                                digest: *key,
                                controller: controller.clone(),
                                recipients: record.recipients.clone(),
                                seen: now,
                            },
                        ));
                    }
                }
            }
            for digest in &record.recipients {
                let novelty = self.cache_recipient(digest, controller, now, instant);
                if let Some(class) = class(novelty) {
                    written.recipients += 1;
                    writes.push((
                        class,
                        TagWrite::Recipient {
                            digest: *digest,
                            controller: controller.clone(),
                            seen: now,
                        },
                    ));
                }
            }
        }
        // Only a write that changed something can have added entries: the common case (records
        // the cache already knows) skips counting the tables, which locks every shard.
        if !writes.is_empty() {
            self.bound(&self.records);
            self.bound(&self.recipients);
        }
        self.enqueue(writes, &mut written);
        written
    }

    /// Queues a body's writes in one lock, notes in `written` what its response must wait for,
    /// and wakes the writer.
    pub(super) fn enqueue(&self, writes: Vec<(Class, TagWrite)>, written: &mut Written) {
        if writes.is_empty() {
            return;
        }
        let mut coalesced = 0;
        {
            let mut queue = self.queue.lock().expect("not poisoned");
            for (class, write) in writes {
                match queue.push(class, write) {
                    Pushed::Durable(number) => written.durable = Some(number),
                    Pushed::Coalesced => coalesced += 1,
                    Pushed::Queued => {}
                }
            }
            written.crowded = queue.backlog() >= QUEUE_LIMIT;
        }
        if coalesced > 0 {
            ::metrics::counter!(metrics::TAG_REFRESHES_COALESCED).increment(coalesced);
        }
        self.wake.notify_one();
    }

    /// Waits until a response may be released: while the queue is over its limit, until the
    /// writer makes room (the gateway slows down rather than drop a sighting), and until the
    /// durable tags it taught are committed. At `deadline` the wait for room ends (the sightings
    /// stay queued); a durable tag not committed by then is an error: the response must not
    /// claim a record the store may forget.
    pub async fn settle(
        &self,
        written: &Written,
        deadline: tokio::time::Instant,
    ) -> Result<(), NotCommitted> {
        let mut progress = self.committed.subscribe();
        if written.crowded {
            ::metrics::counter!(metrics::TAG_QUEUE_WAITS).increment(1);
            while self.queue.lock().expect("not poisoned").backlog() >= QUEUE_LIMIT {
                if tokio::time::timeout_at(deadline, progress.changed())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        if let Some(number) = written.durable {
            let committed = tokio::time::timeout_at(deadline, progress.wait_for(|c| *c >= number));
            if !matches!(committed.await, Ok(Ok(_))) {
                ::metrics::counter!(metrics::TAG_COMMIT_TIMEOUTS).increment(1);
                return Err(NotCommitted);
            }
        }
        Ok(())
    }

    /// Applies a record sighting to the cache (first controller wins): what the store needs to
    /// hear of it.
    fn cache_record(
        &self,
        digest: &Digest,
        controller: &Arc<str>,
        recipients: &[Digest],
        seen: u64,
        loaded: Instant,
    ) -> Novelty {
        let mut entry = self.records.entry(*digest).or_insert_with(|| Cached {
            value: None,
            loaded,
        });
        let Some(tag) = &mut entry.value else {
            entry.value = Some(RecordTag {
                controller: controller.clone(),
                first_seen: seen,
                last_seen: seen,
                recipients: recipients.to_vec(),
            });
            return Novelty::New;
        };
        if tag.controller != *controller {
            return Novelty::Known;
        }
        let mut novelty = Novelty::Known;
        for r in recipients {
            if !tag.recipients.contains(r) {
                tag.recipients.push(*r);
                novelty = Novelty::New;
            }
        }
        if seen >= tag.last_seen + REFRESH_SECS {
            tag.last_seen = seen;
            if novelty == Novelty::Known {
                novelty = Novelty::Refresh;
            }
        }
        novelty
    }

    /// Applies a recipient sighting to the cache: what the store needs to hear of it.
    fn cache_recipient(
        &self,
        digest: &Digest,
        controller: &Arc<str>,
        seen: u64,
        loaded: Instant,
    ) -> Novelty {
        let mut entry = self.recipients.entry(*digest).or_insert_with(|| Cached {
            value: Vec::new(),
            loaded,
        });
        match entry.value.iter_mut().find(|t| t.controller == *controller) {
            Some(tag) if seen >= tag.last_seen + REFRESH_SECS => {
                tag.last_seen = seen;
                Novelty::Refresh
            }
            Some(_) => Novelty::Known,
            None => {
                entry.value.push(RecipientTag {
                    controller: controller.clone(),
                    first_seen: seen,
                    last_seen: seen,
                });
                Novelty::New
            }
        }
    }

    /// Sightings waiting for the store.
    pub fn pending(&self) -> usize {
        self.queue.lock().expect("not poisoned").len()
    }

    /// Writes everything queued now, in batches of one transaction each, durable tags first; on
    /// a store failure the batch goes back to the front of the queue and the error is returned.
    pub async fn flush(&self) -> Result<(), StoreError> {
        loop {
            let batch = self.queue.lock().expect("not poisoned").take(BATCH);
            if batch.writes.is_empty() {
                return Ok(());
            }
            if let Err(error) = self.store.write(batch.writes.clone()).await {
                self.outcome::<()>(Err(error.clone()));
                self.queue.lock().expect("not poisoned").put_back(batch);
                return Err(error);
            }
            self.healthy.store(true, Ordering::Relaxed);
            if batch
                .writes
                .iter()
                .any(|w| matches!(w, TagWrite::Recipient { .. }))
            {
                self.recipients_committed.notify_one();
            }
            ::metrics::gauge!(metrics::TAG_QUEUE_LENGTH).set(self.pending() as f64);
            let upto = batch.durable_upto;
            self.committed
                .send_modify(|committed| *committed = (*committed).max(upto));
        }
    }

    /// The write-behind loop: flushes when woken or every 100 ms, backing off while the store
    /// fails. Runs until the task is dropped.
    pub async fn run_writer(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            match self.flush().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
