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
//! the moment the response that created it is sent) and reach the store behind the request path,
//! in batches, from a bounded queue that drops its oldest entries, counted, when a slow store lets
//! it fill. A store that fails never turns into a leak: an unknown controller is treated as not
//! the caller's.
//!
//! Three files: `key.rs` turns identifiers into digests (the tag key and its per-thread memo),
//! `resolve.rs` decides each record's controller, and this one holds the cache, the write-behind
//! queue and retention.

use std::collections::VecDeque;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Notify;

mod key;
mod resolve;

pub use key::{PrehashedHasher, TagKey, normalize_identifier};
pub use resolve::{Resolved, Scope, Source};

use crate::admin::metrics;
use crate::store::{Store, StoreError};
use crate::vocabulary::Direction;

pub use crate::store::{Deleted, Digest, RecipientTag, RecordTag, TagWrite};

/// How long a lookup that found nothing is trusted: with the 100 ms write-behind interval, a tag
/// written through another gateway is honoured here within a second.
pub const MISS_TTL: Duration = Duration::from_millis(500);
/// How long a found tag is trusted before it is read again (erasure and retention elsewhere).
const HIT_TTL: Duration = Duration::from_secs(60);
/// Most entries per cache table; past it, entries older than [`MISS_TTL`] are evicted.
const CACHE_LIMIT: usize = 1_000_000;
/// Most sightings waiting for the store; past it the oldest are dropped.
const QUEUE_LIMIT: usize = 100_000;

/// Keeps the queue within [`QUEUE_LIMIT`] the one way both its writers need: the oldest sightings
/// go first (a newer sighting of the same tag carries a later last-seen), each one counted in
/// `gateway_tag_writes_dropped_total`.
fn drop_oldest_beyond_limit(queue: &mut std::collections::VecDeque<TagWrite>) {
    let excess = queue.len().saturating_sub(QUEUE_LIMIT);
    if excess > 0 {
        queue.drain(..excess);
        ::metrics::counter!(metrics::TAG_WRITES_DROPPED).increment(excess as u64);
    }
}
/// Most sightings written in one store transaction.
const BATCH: usize = 1_000;
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

/// The tag cache, its store and the write-behind queue.
pub struct Tags {
    key: TagKey,
    store: Arc<dyn Store>,
    records: DashMap<Digest, Cached<Option<RecordTag>>, DigestHash>,
    recipients: DashMap<Digest, Cached<Vec<RecipientTag>>, DigestHash>,
    queue: Mutex<VecDeque<TagWrite>>,
    wake: Notify,
    /// Whether the last store operation succeeded (`/readyz`).
    healthy: AtomicBool,
}

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
            key: TagKey::new(key),
            store,
            records: DashMap::default(),
            recipients: DashMap::default(),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            healthy: AtomicBool::new(true),
        }
    }

    /// The digest function.
    pub fn key(&self) -> &TagKey {
        &self.key
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

    /// Keeps a cache table under [`CACHE_LIMIT`] by dropping entries older than [`MISS_TTL`].
    fn bound<T>(&self, table: &DashMap<Digest, Cached<T>, DigestHash>) {
        if table.len() >= CACHE_LIMIT {
            table.retain(|_, c| c.loaded.elapsed() < MISS_TTL);
        }
    }

    /// Writes the tags of resolved records: recipients in both directions, record keys only from
    /// responses (where the upstream assigned them). The cache is updated now; the store later.
    /// Returns (record, recipient) tags written.
    pub fn write(&self, resolved: &[Resolved], direction: Direction, now: u64) -> (usize, usize) {
        // Only sightings that change what the store holds are queued: a new tag, a new recipient
        // of a record, or a last-seen more than REFRESH_SECS old. The rest cost a cache check.
        let mut writes = Vec::new();
        let mut written = (0, 0);
        let instant = Instant::now();
        for record in resolved {
            let Some(controller) = &record.controller else {
                continue;
            };
            if direction == Direction::Response {
                for key in &record.keys {
                    if self.cache_record(key, controller, &record.recipients, now, instant) {
                        written.0 += 1;
                        writes.push(TagWrite::Record {
                            digest: *key,
                            controller: controller.clone(),
                            recipients: record.recipients.clone(),
                            seen: now,
                        });
                    }
                }
            }
            for digest in &record.recipients {
                if self.cache_recipient(digest, controller, now, instant) {
                    written.1 += 1;
                    writes.push(TagWrite::Recipient {
                        digest: *digest,
                        controller: controller.clone(),
                        seen: now,
                    });
                }
            }
        }
        self.enqueue(writes);
        written
    }

    /// Applies a record sighting to the cache (first controller wins); true when the store needs
    /// to hear of it.
    fn cache_record(
        &self,
        digest: &Digest,
        controller: &Arc<str>,
        recipients: &[Digest],
        seen: u64,
        loaded: Instant,
    ) -> bool {
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
            return true;
        };
        if tag.controller != *controller {
            return false;
        }
        let mut changed = false;
        for r in recipients {
            if !tag.recipients.contains(r) {
                tag.recipients.push(*r);
                changed = true;
            }
        }
        if seen >= tag.last_seen + REFRESH_SECS {
            tag.last_seen = seen;
            changed = true;
        }
        changed
    }

    /// Applies a recipient sighting to the cache; true when the store needs to hear of it.
    fn cache_recipient(
        &self,
        digest: &Digest,
        controller: &Arc<str>,
        seen: u64,
        loaded: Instant,
    ) -> bool {
        let mut entry = self.recipients.entry(*digest).or_insert_with(|| Cached {
            value: Vec::new(),
            loaded,
        });
        match entry.value.iter_mut().find(|t| t.controller == *controller) {
            Some(tag) if seen >= tag.last_seen + REFRESH_SECS => {
                tag.last_seen = seen;
                true
            }
            Some(_) => false,
            None => {
                entry.value.push(RecipientTag {
                    controller: controller.clone(),
                    first_seen: seen,
                    last_seen: seen,
                });
                true
            }
        }
    }

    fn enqueue(&self, writes: Vec<TagWrite>) {
        if writes.is_empty() {
            return;
        }
        {
            let mut queue = self.queue.lock().expect("not poisoned");
            queue.extend(writes);
            drop_oldest_beyond_limit(&mut queue);
        }
        self.wake.notify_one();
    }

    /// Sightings waiting for the store.
    pub fn pending(&self) -> usize {
        self.queue.lock().expect("not poisoned").len()
    }

    /// Writes everything queued now, in batches; on a store failure the batch goes back to the
    /// front of the queue and the error is returned.
    pub async fn flush(&self) -> Result<(), StoreError> {
        loop {
            let batch: Vec<TagWrite> = {
                let mut queue = self.queue.lock().expect("not poisoned");
                let n = queue.len().min(BATCH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                return Ok(());
            }
            if let Err(error) = self.store.write(batch.clone()).await {
                self.outcome::<()>(Err(error.clone()));
                let mut queue = self.queue.lock().expect("not poisoned");
                for write in batch.into_iter().rev() {
                    queue.push_front(write);
                }
                drop_oldest_beyond_limit(&mut queue);
                return Err(error);
            }
            self.healthy.store(true, Ordering::Relaxed);
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
        self.records
            .retain(|_, c| c.value.as_ref().is_none_or(|t| t.last_seen >= cutoff));
        self.recipients.retain(|_, c| {
            c.value.retain(|t| t.last_seen >= cutoff);
            !c.value.is_empty()
        });
        ::metrics::counter!(metrics::RETENTION_DELETED, "kind" => "record")
            .increment(total.records);
        ::metrics::counter!(metrics::RETENTION_DELETED, "kind" => "recipient")
            .increment(total.recipients);
        Ok(total)
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
        }
    }

    #[tokio::test]
    async fn first_controller_wins_in_cache_and_store() {
        let store = Arc::new(MemoryStore::new());
        let tags = Tags::new(b"key", store.clone());
        let k = tags.key().record("shp_1");
        let (r1, r2) = (tags.key().recipient("a@x"), tags.key().recipient("b@x"));
        assert_eq!(
            tags.write(&[resolved(&[k], "acme", &[r1])], Direction::Response, 100),
            (1, 1)
        );
        // Globex's sighting of acme's record changes nothing in the store but tags r2 to globex.
        assert_eq!(
            tags.write(&[resolved(&[k], "globex", &[r2])], Direction::Response, 200),
            (0, 1)
        );
        // Acme again within the refresh period: nothing new, nothing written.
        assert_eq!(
            tags.write(&[resolved(&[k], "acme", &[r1])], Direction::Response, 300),
            (0, 0)
        );
        // A new recipient, and later a stale last-seen, are written.
        assert_eq!(
            tags.write(&[resolved(&[k], "acme", &[r2])], Direction::Response, 400),
            (1, 1)
        );
        tags.write(
            &[resolved(&[k], "acme", &[r2])],
            Direction::Response,
            10_000,
        );
        // Request bodies never tag record keys.
        assert_eq!(
            tags.write(&[resolved(&[k], "globex", &[])], Direction::Request, 20_000),
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
        let k = tags.key().record("shp_9");
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
    async fn expiry_deletes_exactly_the_old_tags_from_store_and_cache() {
        let store = Arc::new(MemoryStore::new());
        let tags = Tags::new(b"key", store.clone());
        let (old, fresh) = (tags.key().record("old"), tags.key().record("fresh"));
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
    async fn a_full_queue_keeps_the_newest_sightings() {
        let tags = Tags::new(b"key", Arc::new(Down));
        let controller: Arc<str> = "acme".into();
        let writes = (0..QUEUE_LIMIT as u64 + 5)
            .map(|seen| TagWrite::Recipient {
                digest: [7; 32],
                controller: controller.clone(),
                seen,
            })
            .collect();
        tags.enqueue(writes);
        assert_eq!(tags.pending(), QUEUE_LIMIT);
        let queue = tags.queue.lock().unwrap();
        assert!(
            matches!(queue.front(), Some(TagWrite::Recipient { seen: 5, .. })),
            "the 5 oldest were dropped"
        );
        assert!(
            matches!(queue.back(), Some(TagWrite::Recipient { seen, .. }) if *seen == QUEUE_LIMIT as u64 + 4)
        );
    }

    #[tokio::test]
    async fn a_failing_store_means_unknown_controllers_and_kept_writes() {
        let tags = Tags::new(b"key", Arc::new(Down));
        let k = tags.key().record("x");
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
