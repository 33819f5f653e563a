//! Who controls what: record and recipient tags, keyed by HMACs, and controller resolution.
//!
//! A tag never holds personal data: record keys (ids, tracking numbers) and recipient identifiers
//! (normalised e-mail, phone) are stored as HMAC-SHA-256 under the tag key, with the controlling
//! client's id and first/last-seen times. The first controller of a record wins; traffic never
//! moves a record to another controller.
//!
//! [`Tags`] is a cache in front of a [`Store`]. Lookups are served from the cache and read through
//! on a miss; a miss is trusted for [`MISS_TTL`] only, so a tag another gateway wrote to a shared
//! store is honoured here within a second. Writes update the cache at once (a tag is honoured from
//! the moment the response that created it is sent) and reach the store in batches, from a queue
//! whose classes are described in `queue.rs`: a tag that cannot be learnt again is committed
//! before the response that taught it is released; other sightings are written behind the
//! response and never dropped; refreshes coalesce. A store that fails never turns into a leak: an
//! unknown controller is treated as not the caller's.
//!
//! Five files: `key.rs` turns identifiers into digests (the tag key and its per-thread memo),
//! `resolve.rs` decides each record's controller and says what a record is made of, `queue.rs`
//! orders what waits for the store, [`import`] loads a platform's history (`tags import`), and
//! this one holds the cache, the writer and retention.

use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tokio::sync::{Notify, watch};

pub mod import;
mod key;
mod queue;
mod resolve;

use queue::{Class, Pushed, Queue};

pub use key::{KeyRing, PrehashedHasher, TagKey, normalize_identifier};
pub use resolve::{Resolved, Scope, Source};

use crate::admin::metrics;
use crate::store::listen::Invalidation;
use crate::store::{Store, StoreError};
use crate::vocabulary::Direction;

pub use crate::store::{Deleted, Digest, RecipientTag, RecordTag, TagWrite};

/// How long a lookup that found nothing is trusted: with the 100 ms write-behind interval, a tag
/// written through another gateway is honoured here within a second.
pub const MISS_TTL: Duration = Duration::from_millis(500);
/// How long a found tag is trusted before it is read again (erasure and retention elsewhere).
const HIT_TTL: Duration = Duration::from_secs(60);
/// New sightings and refreshes waiting for the store past which responses that add to them wait
/// for room.
const QUEUE_LIMIT: usize = 100_000;
/// Most sightings written in one store transaction. Tag keys are random, so each insert dirties
/// its own page; a larger transaction lets more inserts share a page before it is written
/// (1,000 → 5,000 raised fresh-record throughput by 38% on SQLite, 5,000 → 20,000 by another
/// 44% with sorted multi-row writes), while a create waits at most for one batch in flight
/// (about half a second at the store's pace).
const BATCH: usize = 20_000;
/// A tag's last-seen time is refreshed in the store at most this often (seconds): retention counts
/// in days, and refreshing on every sighting would cost a store write per record per request.
const REFRESH_SECS: u64 = 3600;
/// Rows deleted per retention statement.
const RETENTION_BATCH: u32 = 1_000;

/// Digests are HMAC outputs: their bytes are already a good hash.
type DigestHash = BuildHasherDefault<PrehashedHasher>;

struct Cached<T> {
    value: T,
    loaded: Instant,
}

impl Cached<Option<RecordTag>> {
    /// Whether a record key's cached answer is recent enough: hits live longer than misses.
    fn fresh(&self, now: Instant) -> bool {
        let ttl = if self.value.is_some() {
            HIT_TTL
        } else {
            MISS_TTL
        };
        now.saturating_duration_since(self.loaded) < ttl
    }
}

/// The tag cache, its store and the queue of sightings on their way to it.
pub struct Tags {
    /// The current tag key and the previous ones; swapped whole when a reload rotates them.
    keys: ArcSwap<KeyRing>,
    store: Arc<dyn Store>,
    records: DashMap<Digest, Cached<Option<RecordTag>>, DigestHash>,
    recipients: DashMap<Digest, Cached<Vec<RecipientTag>>, DigestHash>,
    /// Most entries per cache table: memory stays bounded whatever the traffic.
    cache_entries: usize,
    queue: Mutex<Queue>,
    /// The number of the last durable write committed, sent after every batch written: responses
    /// waiting for a commit, or for room in the queue, watch it.
    committed: watch::Sender<u64>,
    wake: Notify,
    /// Signalled after a batch holding recipient tags is committed: privacy requests waiting
    /// for a controller may match now.
    recipients_committed: Notify,
    /// Whether the last store operation succeeded (`/readyz`).
    healthy: AtomicBool,
}

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
    durable: Option<u64>,
    /// Whether the queue was over its limit after these sightings.
    crowded: bool,
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

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tags {
    /// A cache over `store`, keyed by `key`.
    pub fn new(key: &[u8], store: Arc<dyn Store>) -> Tags {
        Tags {
            keys: ArcSwap::from_pointee(KeyRing::new(key, [])),
            store,
            records: DashMap::default(),
            recipients: DashMap::default(),
            cache_entries: crate::config::DEFAULT_TAG_CACHE_ENTRIES,
            queue: Mutex::new(Queue::default()),
            committed: watch::Sender::new(0),
            wake: Notify::new(),
            recipients_committed: Notify::new(),
            healthy: AtomicBool::new(true),
        }
    }

    /// Bounds each cache table to `entries` (`[store] cache_entries`).
    pub fn with_cache_entries(mut self, entries: usize) -> Tags {
        self.cache_entries = entries;
        self
    }

    /// Also honours tags written under `previous` keys, newest first (a rotation).
    pub fn with_previous_keys<'k>(self, previous: impl IntoIterator<Item = &'k [u8]>) -> Tags {
        let current = self.keys.load();
        let ring = KeyRing {
            current: current.current.clone(),
            previous: previous.into_iter().map(TagKey::new).collect(),
        };
        drop(current);
        self.keys.store(Arc::new(ring));
        self
    }

    /// The tag keys as `config` sets them (`[keys]`).
    pub fn keys_of(config: &crate::config::Config) -> KeyRing {
        KeyRing::new(
            config.tag_key.expose(),
            config.previous_tag_keys.iter().map(|k| k.expose()),
        )
    }

    /// The digest functions: the current key and the previous ones.
    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.load_full()
    }

    /// Takes a reload's keys: a new current key (the old one among the previous), or previous
    /// keys added or removed. Cached tags stay valid: they are keyed by digest, and a digest
    /// under a key no longer in the ring is never computed again.
    pub fn rotate(&self, keys: KeyRing) {
        self.keys.store(Arc::new(keys));
    }

    /// Signalled after recipient tags reach the store (one waiter: the privacy desk's matcher).
    pub fn recipients_committed(&self) -> &Notify {
        &self.recipients_committed
    }

    /// Whether the last store operation succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn outcome<T>(&self, result: Result<T, StoreError>) -> Option<T> {
        match result {
            Ok(value) => {
                self.healthy.store(true, Ordering::Relaxed);
                Some(value)
            }
            Err(error) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::error!(msg = "tag store failed", error = %error);
                }
                None
            }
        }
    }

    /// A record tag: from the cache, else from the store. A store failure answers with what the
    /// cache had (possibly nothing: the record then has no known controller).
    pub async fn record(&self, digest: &Digest) -> Option<RecordTag> {
        self.read_record(digest, RecordTag::clone).await
    }

    /// The controller of a record key (what resolution needs, without copying the recipients).
    pub async fn record_controller(&self, digest: &Digest) -> Option<Arc<str>> {
        self.read_record(digest, |tag| tag.controller.clone()).await
    }

    /// Reads a record tag through the cache and projects it with `view`.
    async fn read_record<T>(&self, digest: &Digest, view: impl Fn(&RecordTag) -> T) -> Option<T> {
        if !self.fresh(digest, Instant::now()) {
            let loaded = Instant::now();
            if let Some(value) = self.outcome(self.store.record(*digest).await) {
                self.remember(*digest, value, loaded);
            }
        }
        self.records
            .get(digest)
            .and_then(|c| c.value.as_ref().map(&view))
    }

    /// Whether the cache's answer for a record key can be used without asking the store. `now`
    /// is taken once per body: reading the clock per record showed in profiles.
    fn fresh(&self, digest: &Digest, now: Instant) -> bool {
        self.records.get(digest).is_some_and(|c| c.fresh(now))
    }

    /// The cache's answer for a record key's controller when it is fresh (`None`: ask the store).
    /// One map lookup, where [`Tags::record_controller`] takes three and reads the clock.
    fn cached_controller(&self, digest: &Digest, now: Instant) -> Option<Option<Arc<str>>> {
        let cached = self.records.get(digest)?;
        cached
            .fresh(now)
            .then(|| cached.value.as_ref().map(|tag| tag.controller.clone()))
    }

    /// Caches what the store said of a record key. A tag this gateway wrote meanwhile is kept
    /// over a "not found" that was read before it.
    fn remember(&self, digest: Digest, value: Option<RecordTag>, loaded: Instant) {
        self.bound(&self.records);
        match self.records.entry(digest) {
            dashmap::Entry::Occupied(mut entry) => {
                if value.is_some() || entry.get().value.is_none() {
                    entry.insert(Cached { value, loaded });
                }
            }
            dashmap::Entry::Vacant(entry) => {
                entry.insert(Cached { value, loaded });
            }
        }
    }

    /// Loads the tags of the record keys the cache cannot answer for, in one store round trip.
    async fn preload(&self, digests: &[Digest]) {
        let now = Instant::now();
        let mut stale: Vec<Digest> = digests
            .iter()
            .filter(|d| !self.fresh(d, now))
            .copied()
            .collect();
        stale.sort_unstable();
        stale.dedup();
        if stale.is_empty() {
            return;
        }
        let loaded = Instant::now();
        if let Some(found) = self.outcome(self.store.records(stale.clone()).await) {
            let mut found: std::collections::HashMap<Digest, RecordTag> =
                found.into_iter().collect();
            for digest in stale {
                self.remember(digest, found.remove(&digest), loaded);
            }
        }
    }

    /// The controllers of a recipient digest, read through the cache like [`Tags::record`].
    pub async fn recipient(&self, digest: &Digest) -> Vec<RecipientTag> {
        if let Some(cached) = self.recipients.get(digest)
            && cached.loaded.elapsed() < MISS_TTL
        {
            return cached.value.clone();
        }
        match self.outcome(self.store.recipient(*digest).await) {
            Some(value) => {
                self.bound(&self.recipients);
                self.recipients.insert(
                    *digest,
                    Cached {
                        value: value.clone(),
                        loaded: Instant::now(),
                    },
                );
                value
            }
            None => self
                .recipients
                .get(digest)
                .map(|c| c.value.clone())
                .unwrap_or_default(),
        }
    }

    /// Keeps a cache table under `cache_entries`: when full, entries older than [`MISS_TTL`] go;
    /// if that frees too little (fresh records on every response), a quarter of the table goes,
    /// whatever its age. The store holds everything evicted, or will once the queue is written
    /// (a tag still queued is honoured again after at most [`MISS_TTL`]).
    fn bound<T>(&self, table: &DashMap<Digest, Cached<T>, DigestHash>) {
        if table.len() < self.cache_entries {
            return;
        }
        let now = Instant::now();
        table.retain(|_, c| now.saturating_duration_since(c.loaded) < MISS_TTL);
        let keep = self.cache_entries - self.cache_entries / 4;
        if table.len() > keep {
            let mut kept = 0;
            table.retain(|_, _| {
                kept += 1;
                kept <= keep
            });
        }
        ::metrics::counter!(metrics::TAG_CACHE_EVICTIONS).increment(1);
    }

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

    fn enqueue(&self, writes: Vec<(Class, TagWrite)>, written: &mut Written) {
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

    /// Deletes tags last seen before `cutoff` (unix seconds) from the store, in batches, and from
    /// the cache. Safe to run on several gateways at once.
    pub async fn expire(&self, cutoff: u64) -> Result<Deleted, StoreError> {
        let mut total = Deleted::default();
        loop {
            let deleted = self.store.delete_expired(cutoff, RETENTION_BATCH).await?;
            total.records += deleted.records;
            total.recipients += deleted.recipients;
            if deleted.records < u64::from(RETENTION_BATCH)
                && deleted.recipients < u64::from(RETENTION_BATCH)
            {
                break;
            }
        }
        self.forget_expired(cutoff);
        ::metrics::counter!(metrics::RETENTION_DELETED, "kind" => "record")
            .increment(total.records);
        ::metrics::counter!(metrics::RETENTION_DELETED, "kind" => "recipient")
            .increment(total.recipients);
        Ok(total)
    }

    /// Drops cached tags last seen before `cutoff`, after retention deleted them from the store.
    fn forget_expired(&self, cutoff: u64) {
        self.records
            .retain(|_, c| c.value.as_ref().is_none_or(|t| t.last_seen >= cutoff));
        self.recipients.retain(|_, c| {
            c.value.retain(|t| t.last_seen >= cutoff);
            !c.value.is_empty()
        });
    }

    /// Drops from the cache what any gateway sharing the store deleted, as the store announces
    /// it (PostgreSQL's `LISTEN`/`NOTIFY`); for a store nobody else writes to, returns at once.
    /// Without announcements (the channel down), cached tags still expire after [`MISS_TTL`]
    /// when absent and 60 s when present.
    pub async fn follow_invalidations(self: Arc<Self>) {
        let Some(mut invalidations) = self.store.invalidations() else {
            return;
        };
        while let Some(invalidation) = invalidations.recv().await {
            let kind = match invalidation {
                Invalidation::Erased {
                    controller,
                    recipients,
                } => {
                    self.forget(&controller, &recipients);
                    "erased"
                }
                Invalidation::Expired { before } => {
                    self.forget_expired(before);
                    "expired"
                }
                Invalidation::Everything => {
                    self.records.clear();
                    self.recipients.clear();
                    "everything"
                }
            };
            ::metrics::counter!(metrics::TAG_INVALIDATIONS, "kind" => kind).increment(1);
        }
    }

    /// Drops `controller`'s cached tags of these recipients and its cached records listing them,
    /// after an erasure deleted them from the store.
    pub fn forget(&self, controller: &Arc<str>, recipients: &[Digest]) {
        for digest in recipients {
            if let Some(mut cached) = self.recipients.get_mut(digest) {
                cached.value.retain(|t| t.controller != *controller);
            }
        }
        self.records.retain(|_, cached| {
            !cached.value.as_ref().is_some_and(|t| {
                t.controller == *controller && t.recipients.iter().any(|r| recipients.contains(r))
            })
        });
    }

    /// Sets `gateway_tag_store_entries` from the store's counts.
    pub async fn report_size(&self) {
        if let Some((records, recipients)) = self.outcome(self.store.counts().await) {
            ::metrics::gauge!(metrics::TAG_STORE_ENTRIES, "kind" => "record").set(records as f64);
            ::metrics::gauge!(metrics::TAG_STORE_ENTRIES, "kind" => "recipient")
                .set(recipients as f64);
        }
    }

    /// Asks the store whether it answers, updating [`Tags::healthy`].
    pub async fn check(&self) -> bool {
        self.outcome(self.store.ping().await).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::memory::MemoryStore;

    fn resolved(keys: &[Digest], controller: &str, recipients: &[Digest]) -> Resolved {
        Resolved {
            node: 0,
            controller: Some(controller.into()),
            source: Source::Caller,
            keys: keys.to_vec(),
            recipients: recipients.to_vec(),
            rekeyed: false,
        }
    }

    #[tokio::test]
    async fn first_controller_wins_in_cache_and_store() {
        let store = Arc::new(MemoryStore::new());
        let tags = Tags::new(b"key", store.clone());
        let k = tags.keys().record("shp_1");
        let (r1, r2) = (tags.keys().recipient("a@x"), tags.keys().recipient("b@x"));
        assert_eq!(
            tags.write(&[resolved(&[k], "acme", &[r1])], Direction::Response, 100)
                .counts(),
            (1, 1)
        );
        // Globex's sighting of acme's record changes nothing in the store but tags r2 to globex.
        assert_eq!(
            tags.write(&[resolved(&[k], "globex", &[r2])], Direction::Response, 200)
                .counts(),
            (0, 1)
        );
        // Acme again within the refresh period: nothing new, nothing written.
        assert_eq!(
            tags.write(&[resolved(&[k], "acme", &[r1])], Direction::Response, 300)
                .counts(),
            (0, 0)
        );
        // A new recipient, and later a stale last-seen, are written.
        assert_eq!(
            tags.write(&[resolved(&[k], "acme", &[r2])], Direction::Response, 400)
                .counts(),
            (1, 1)
        );
        tags.write(
            &[resolved(&[k], "acme", &[r2])],
            Direction::Response,
            10_000,
        );
        // Request bodies never tag record keys.
        assert_eq!(
            tags.write(&[resolved(&[k], "globex", &[])], Direction::Request, 20_000)
                .counts(),
            (0, 0)
        );
        let cached = tags.record(&k).await.unwrap();
        assert_eq!(&*cached.controller, "acme");
        assert_eq!((cached.first_seen, cached.last_seen), (100, 10_000));
        assert_eq!(cached.recipients, vec![r1, r2]);
        assert_eq!(tags.recipient(&r2).await.len(), 2, "acme and globex");

        // The store gets the same after a flush.
        assert!(tags.pending() > 0);
        tags.flush().await.unwrap();
        assert_eq!(tags.pending(), 0);
        let stored = store.record(k).await.unwrap().unwrap();
        assert_eq!((&*stored.controller, stored.last_seen), ("acme", 10_000));
    }

    #[tokio::test]
    async fn misses_are_read_through_and_expire_quickly() {
        let store = Arc::new(MemoryStore::new());
        let tags = Tags::new(b"key", store.clone());
        let k = tags.keys().record("shp_9");
        assert!(tags.record(&k).await.is_none());
        // Another gateway writes the tag to the shared store.
        store
            .write(vec![TagWrite::Record {
                digest: k,
                controller: "acme".into(),
                recipients: vec![],
                seen: 1,
            }])
            .await
            .unwrap();
        assert!(
            tags.record(&k).await.is_none(),
            "the miss is trusted briefly"
        );
        tokio::time::sleep(MISS_TTL + Duration::from_millis(50)).await;
        assert_eq!(&*tags.record(&k).await.unwrap().controller, "acme");
    }

    #[tokio::test]
    async fn a_rotated_out_key_leaves_tags_nothing_refreshes_and_retention_purges_them() {
        let store = Arc::new(MemoryStore::new());
        let tags = Tags::new(b"first-tag-key-0123", store.clone());
        let before = tags.keys().record("shp_old");
        tags.write(
            &[resolved(&[before], "acme", &[])],
            Direction::Response,
            1_000,
        );
        tags.flush().await.unwrap();
        // Rotated: the old key is a previous one, so its tag is still found by its digest.
        tags.rotate(KeyRing::new(
            b"second-tag-key-0123",
            [b"first-tag-key-0123".as_slice()],
        ));
        let ring = tags.keys();
        assert_ne!(ring.record("shp_old"), before);
        assert_eq!(ring.record_all("shp_old")[1], before);
        // Removed: no digest the ring computes names that tag any more; nothing refreshes its
        // last-seen, and retention deletes it like any tag not seen for the period.
        tags.rotate(KeyRing::new(b"second-tag-key-0123", []));
        assert!(!tags.keys().record_all("shp_old").contains(&before));
        let deleted = tags.expire(2_000).await.unwrap();
        assert_eq!(deleted.records, 1);
        assert_eq!(store.counts().await.unwrap().0, 0);
    }

    #[tokio::test]
    async fn expiry_deletes_exactly_the_old_tags_from_store_and_cache() {
        let store = Arc::new(MemoryStore::new());
        let tags = Tags::new(b"key", store.clone());
        let (old, fresh) = (tags.keys().record("old"), tags.keys().record("fresh"));
        tags.write(&[resolved(&[old], "acme", &[])], Direction::Response, 1_000);
        tags.write(
            &[resolved(&[fresh], "acme", &[])],
            Direction::Response,
            5_000,
        );
        tags.flush().await.unwrap();
        let deleted = tags.expire(3_000).await.unwrap();
        assert_eq!(deleted.records, 1);
        assert!(tags.record(&old).await.is_none());
        assert!(tags.record(&fresh).await.is_some());
        assert_eq!(store.counts().await.unwrap().0, 1);
    }

    /// A memory store that counts lookups.
    #[derive(Default)]
    struct Counting {
        inner: MemoryStore,
        single: std::sync::atomic::AtomicUsize,
        batched: std::sync::atomic::AtomicUsize,
    }
    impl Store for Counting {
        fn write(&self, batch: Vec<TagWrite>) -> crate::store::StoreFuture<'_, ()> {
            self.inner.write(batch)
        }
        fn import(
            &self,
            rows: crate::store::rows::Rows,
            mark: crate::store::ImportMark,
        ) -> crate::store::StoreFuture<'_, crate::store::rows::Added> {
            self.inner.import(rows, mark)
        }
        fn import_mark(&self, name: String) -> crate::store::StoreFuture<'_, Option<u64>> {
            self.inner.import_mark(name)
        }
        fn record(&self, d: Digest) -> crate::store::StoreFuture<'_, Option<RecordTag>> {
            self.single.fetch_add(1, Ordering::Relaxed);
            self.inner.record(d)
        }
        fn records(
            &self,
            d: Vec<Digest>,
        ) -> crate::store::StoreFuture<'_, Vec<(Digest, RecordTag)>> {
            self.batched.fetch_add(1, Ordering::Relaxed);
            self.inner.records(d)
        }
        fn recipient(&self, d: Digest) -> crate::store::StoreFuture<'_, Vec<RecipientTag>> {
            self.inner.recipient(d)
        }
        fn delete_expired(&self, b: u64, l: u32) -> crate::store::StoreFuture<'_, Deleted> {
            self.inner.delete_expired(b, l)
        }
        fn counts(&self) -> crate::store::StoreFuture<'_, (u64, u64)> {
            self.inner.counts()
        }
        fn ping(&self) -> crate::store::StoreFuture<'_, ()> {
            self.inner.ping()
        }
        fn erase(&self, c: Arc<str>, r: Vec<Digest>) -> crate::store::StoreFuture<'_, Deleted> {
            self.inner.erase(c, r)
        }
    }

    #[tokio::test]
    async fn a_list_is_looked_up_in_one_round_trip() {
        let store = Arc::new(Counting::default());
        let keys: Vec<Digest> = (0..40u8).map(|i| [i; 32]).collect();
        store
            .write(vec![TagWrite::Record {
                digest: keys[3],
                controller: "acme".into(),
                recipients: vec![],
                seen: 1,
            }])
            .await
            .unwrap();
        let tags = Tags::new(b"key", store.clone());
        tags.preload(&keys).await;
        for key in &keys {
            let expected = (*key == keys[3]).then(|| Arc::<str>::from("acme"));
            assert_eq!(tags.record_controller(key).await, expected);
        }
        assert_eq!(store.batched.load(Ordering::Relaxed), 1);
        assert_eq!(
            store.single.load(Ordering::Relaxed),
            0,
            "every answer came from the preload"
        );
        // Fresh answers are not asked again.
        tags.preload(&keys).await;
        assert_eq!(store.batched.load(Ordering::Relaxed), 1);
    }

    /// A store that always fails.
    struct Down;
    impl Store for Down {
        fn write(&self, _: Vec<TagWrite>) -> crate::store::StoreFuture<'_, ()> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn import(
            &self,
            _: crate::store::rows::Rows,
            _: crate::store::ImportMark,
        ) -> crate::store::StoreFuture<'_, crate::store::rows::Added> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn import_mark(&self, _: String) -> crate::store::StoreFuture<'_, Option<u64>> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn record(&self, _: Digest) -> crate::store::StoreFuture<'_, Option<RecordTag>> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn records(
            &self,
            _: Vec<Digest>,
        ) -> crate::store::StoreFuture<'_, Vec<(Digest, RecordTag)>> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn recipient(&self, _: Digest) -> crate::store::StoreFuture<'_, Vec<RecipientTag>> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn delete_expired(&self, _: u64, _: u32) -> crate::store::StoreFuture<'_, Deleted> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn counts(&self) -> crate::store::StoreFuture<'_, (u64, u64)> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn ping(&self) -> crate::store::StoreFuture<'_, ()> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn erase(&self, _: Arc<str>, _: Vec<Digest>) -> crate::store::StoreFuture<'_, Deleted> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_nothing_and_holds_responses_until_there_is_room() {
        let tags = Arc::new(Tags::new(b"key", Arc::new(MemoryStore::new())));
        let controller: Arc<str> = "acme".into();
        let mut queue = Vec::new();
        for i in 0..QUEUE_LIMIT as u32 + 5 {
            let mut digest = [0; 32];
            digest[..4].copy_from_slice(&i.to_be_bytes());
            queue.push((
                Class::New,
                TagWrite::Recipient {
                    digest,
                    controller: controller.clone(),
                    seen: 1,
                },
            ));
        }
        let mut written = Written::default();
        tags.enqueue(queue, &mut written);
        assert!(written.crowded);
        assert_eq!(tags.pending(), QUEUE_LIMIT + 5, "nothing dropped");

        // The response waits until the writer makes room.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let settle = tokio::spawn({
            let tags = tags.clone();
            async move { tags.settle(&written, deadline).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!settle.is_finished(), "held while the queue is full");
        tags.flush().await.unwrap();
        settle.await.unwrap().unwrap();
        assert_eq!(tags.store.counts().await.unwrap().1, QUEUE_LIMIT as u64 + 5);
    }

    #[tokio::test]
    async fn a_created_record_is_committed_before_its_response_is_released() {
        let tags = Arc::new(Tags::new(b"key", Arc::new(MemoryStore::new())));
        let k = tags.keys().record("shp_new");
        let created = tags.write(&[resolved(&[k], "acme", &[])], Direction::Response, 1);
        assert_eq!(created.counts(), (1, 0));
        assert!(created.durable.is_some());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let settle = tokio::spawn({
            let tags = tags.clone();
            async move { tags.settle(&created, deadline).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!settle.is_finished(), "held until committed");
        tags.flush().await.unwrap();
        settle.await.unwrap().unwrap();
        assert!(tags.store.record(k).await.unwrap().is_some());

        // A controller_member sighting is written behind: nothing to wait for.
        let mut member = resolved(&[tags.keys().record("shp_seen")], "acme", &[]);
        member.source = Source::Member;
        let seen = tags.write(&[member], Direction::Response, 1);
        assert_eq!(seen.durable, None);
        tags.settle(&seen, deadline).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_the_store_cannot_commit_is_an_error_at_the_deadline() {
        let tags = Tags::new(b"key", Arc::new(Down));
        let created = tags.write(
            &[resolved(&[tags.keys().record("shp_new")], "acme", &[])],
            Direction::Response,
            1,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        assert!(tags.flush().await.is_err());
        assert!(tags.settle(&created, deadline).await.is_err());
        assert_eq!(tags.pending(), 1, "still queued for when the store is back");
    }

    #[tokio::test]
    async fn a_failing_store_means_unknown_controllers_and_kept_writes() {
        let tags = Tags::new(b"key", Arc::new(Down));
        let k = tags.keys().record("x");
        assert!(
            tags.record(&k).await.is_none(),
            "unknown: treated as not the caller's"
        );
        assert!(!tags.healthy());
        assert!(!tags.check().await);
        tags.write(&[resolved(&[k], "acme", &[])], Direction::Response, 1);
        assert!(tags.flush().await.is_err());
        assert_eq!(
            tags.pending(),
            1,
            "the batch waits for the store to come back"
        );
        // Tags written through this gateway are still honoured from its cache.
        assert_eq!(&*tags.record(&k).await.unwrap().controller, "acme");
    }
}
