//! A tag store that fails on demand and counts lookups, over a [`MemoryStore`]: for tests of
//! what the cache and the writer do when the store is down, or of how often they ask it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::memory::MemoryStore;
use super::rows::{Added, Rows};
use super::{
    Deleted, Digest, ImportMark, RecipientTag, RecordTag, Store, StoreError, StoreFuture, TagWrite,
};

/// A [`MemoryStore`] with a switch: while down, every operation fails.
#[derive(Default)]
pub struct FaultyStore {
    inner: MemoryStore,
    down: AtomicBool,
    single_lookups: AtomicUsize,
    batched_lookups: AtomicUsize,
}

impl FaultyStore {
    /// A store that answers until [`FaultyStore::set_down`].
    pub fn new() -> FaultyStore {
        FaultyStore::default()
    }

    /// A store that fails from the start.
    pub fn down() -> FaultyStore {
        let store = FaultyStore::default();
        store.set_down(true);
        store
    }

    /// Makes every operation fail (`true`) or answer again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Lookups of one record key ([`Store::record`]) so far.
    pub fn single_lookups(&self) -> usize {
        self.single_lookups.load(Ordering::Relaxed)
    }

    /// Lookups of a list of record keys ([`Store::records`]) so far.
    pub fn batched_lookups(&self) -> usize {
        self.batched_lookups.load(Ordering::Relaxed)
    }

    /// `answer`, or the failure a store that is down gives.
    fn unless_down<'a, T: Send + 'a>(&self, answer: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        if self.down.load(Ordering::Relaxed) {
            return Box::pin(async { Err(StoreError::new("the store is down (a test's fault)")) });
        }
        answer
    }
}

impl Store for FaultyStore {
    fn write(&self, batch: Vec<TagWrite>) -> StoreFuture<'_, ()> {
        self.unless_down(self.inner.write(batch))
    }
    fn import(&self, rows: Rows, mark: ImportMark) -> StoreFuture<'_, Added> {
        self.unless_down(self.inner.import(rows, mark))
    }
    fn import_mark(&self, name: String) -> StoreFuture<'_, Option<u64>> {
        self.unless_down(self.inner.import_mark(name))
    }
    fn record(&self, digest: Digest) -> StoreFuture<'_, Option<RecordTag>> {
        self.single_lookups.fetch_add(1, Ordering::Relaxed);
        self.unless_down(self.inner.record(digest))
    }
    fn records(&self, digests: Vec<Digest>) -> StoreFuture<'_, Vec<(Digest, RecordTag)>> {
        self.batched_lookups.fetch_add(1, Ordering::Relaxed);
        self.unless_down(self.inner.records(digests))
    }
    fn recipient(&self, digest: Digest) -> StoreFuture<'_, Vec<RecipientTag>> {
        self.unless_down(self.inner.recipient(digest))
    }
    fn delete_expired(&self, before: u64, limit: u32) -> StoreFuture<'_, Deleted> {
        self.unless_down(self.inner.delete_expired(before, limit))
    }
    fn counts(&self) -> StoreFuture<'_, (u64, u64)> {
        self.unless_down(self.inner.counts())
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.unless_down(self.inner.ping())
    }
    fn erase(&self, controller: Arc<str>, recipients: Vec<Digest>) -> StoreFuture<'_, Deleted> {
        self.unless_down(self.inner.erase(controller, recipients))
    }
}
