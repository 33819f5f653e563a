//! The read side: record and recipient tags served from a bounded cache, read through from the
//! store on a miss. A miss is trusted for [`MISS_TTL`] only, a hit for a minute, so a tag another
//! gateway wrote to a shared store is honoured here within a second.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::time::Instant;

use super::{DigestHash, MISS_TTL, Tags};
use crate::admin::metrics;
use crate::store::{Digest, RecipientTag, RecordTag};

/// How long a found tag is trusted before it is read again (erasure and retention elsewhere).
const HIT_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// A cached answer and when it was read: the store's answers age, this gateway's writes do not
/// until they are read again.
pub(super) struct Cached<T> {
    pub(super) value: T,
    pub(super) loaded: Instant,
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

impl Tags {
    /// A whole record tag, read like [`Tags::record_controller`]: what the cache's tests look at.
    #[cfg(test)]
    pub(super) async fn record(&self, digest: &Digest) -> Option<RecordTag> {
        self.read_record(digest, RecordTag::clone).await
    }

    /// The controller of a record key: from the cache, else from the store. A store failure
    /// answers with what the cache had (possibly nothing: the record then has no known
    /// controller).
    pub(super) async fn record_controller(&self, digest: &Digest) -> Option<Arc<str>> {
        self.read_record(digest, |tag| tag.controller.clone()).await
    }

    /// The controller the first tagged key of `keys` names, in key order: from the cache when it
    /// is fresh, else from the store. The clock is read once for all keys.
    pub async fn controller_of(&self, keys: &[Digest]) -> Option<Arc<str>> {
        let now = Instant::now();
        for key in keys {
            let controller = match self.cached_controller(key, now) {
                Some(cached) => cached,
                None => self.record_controller(key).await,
            };
            if controller.is_some() {
                return controller;
            }
        }
        None
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
    pub(super) fn fresh(&self, digest: &Digest, now: Instant) -> bool {
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

    /// Loads the tags of the record keys the cache cannot answer for, in one store round trip
    /// (a body's records are looked up together, not one by one).
    pub async fn preload(&self, digests: &[Digest]) {
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

    /// The controllers of a recipient digest: from the cache within [`MISS_TTL`] of reading
    /// them, else from the store; a store failure answers with what the cache had.
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
    pub(super) fn bound<T>(&self, table: &DashMap<Digest, Cached<T>, DigestHash>) {
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
}
