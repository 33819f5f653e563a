//! Who controls what: record and recipient tags, keyed by HMACs.
//!
//! A tag never holds personal data: record keys (ids, tracking numbers) and recipient identifiers
//! (normalised e-mail, phone) are stored as HMAC-SHA-256 under the tag key, with the controlling
//! client's id and first/last-seen times. The first controller of a record wins; traffic never
//! moves a record to another controller. Which records a body holds and who controls them is
//! decided above this module (the proxy's controller resolution, `tags import`); this one keeps
//! what they decided.
//!
//! [`Tags`] is a cache in front of a [`Store`], one job per file:
//! - `key.rs` turns identifiers into digests (the tag key, previous keys during a rotation, and a
//!   per-thread memo);
//! - `cache.rs` answers lookups from the bounded cache, reading through to the store;
//! - `writer.rs` applies sightings to the cache and writes them behind in batches, committing a
//!   tag that cannot be learnt again before its response is released; `queue.rs` orders what
//!   waits for the store;
//! - `retention.rs` deletes what was not seen for the retention period;
//! - `invalidation.rs` drops from the cache what this or another gateway deleted;
//! - `health.rs` says whether the store answers;
//! - `resolved.rs` is the vocabulary between resolution and the writer.
//!
//! Timestamps of cached answers are tokio's [`tokio::time::Instant`], so tests run on a paused
//! clock.

use std::hash::BuildHasherDefault;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tokio::sync::{Notify, watch};

mod cache;
mod health;
mod invalidation;
mod key;
mod queue;
mod resolved;
mod retention;
#[cfg(test)]
mod tests;
mod writer;

use cache::Cached;
use queue::Queue;

pub use key::{KeyRing, PrehashedHasher, TagKey, normalize_identifier};
pub use resolved::{Resolved, Source};
pub use writer::{NotCommitted, Written};

use crate::store::Store;

pub use crate::store::{Deleted, Digest, RecipientTag, RecordTag, TagWrite};

/// How long a lookup that found nothing is trusted: with the 100 ms write-behind interval, a tag
/// written through another gateway is honoured here within a second.
pub const MISS_TTL: Duration = Duration::from_millis(500);

/// Digests are HMAC outputs: their bytes are already a good hash.
type DigestHash = BuildHasherDefault<PrehashedHasher>;

/// The tag cache, its store and the queue of sightings on their way to it.
pub struct Tags {
    /// The current tag key and the previous ones; swapped whole when a reload rotates them.
    keys: ArcSwap<KeyRing>,
    store: Arc<dyn Store>,
    records: DashMap<Digest, Cached<Option<RecordTag>>, DigestHash>,
    recipients: DashMap<Digest, Cached<Vec<RecipientTag>>, DigestHash>,
    /// Most entries per cache table: memory stays bounded whatever the traffic.
    cache_entries: usize,
    /// Sightings on their way to the store, by class.
    queue: Mutex<Queue>,
    /// The number of the last durable write committed, sent after every batch written: responses
    /// waiting for a commit, or for room in the queue, watch it.
    committed: watch::Sender<u64>,
    /// Wakes the writer when a sighting is queued.
    wake: Notify,
    /// Signalled after a batch holding recipient tags is committed: privacy requests waiting
    /// for a controller may match now.
    recipients_committed: Notify,
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
    /// A cache over `store`, digests under `keys`, each table bounded to `cache_entries`
    /// (`[store] cache_entries`).
    pub fn new(keys: KeyRing, cache_entries: usize, store: Arc<dyn Store>) -> Tags {
        Tags {
            keys: ArcSwap::from_pointee(keys),
            store,
            records: DashMap::default(),
            recipients: DashMap::default(),
            cache_entries,
            queue: Mutex::new(Queue::default()),
            committed: watch::Sender::new(0),
            wake: Notify::new(),
            recipients_committed: Notify::new(),
            healthy: AtomicBool::new(true),
        }
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
}
