//! Health: whether the store answered the last operation (`/readyz`), and the store's size for
//! the operators' gauge. While the store fails, lookups answer with what the cache has.

use std::sync::atomic::Ordering;

use super::Tags;
use crate::admin::metrics;
use crate::store::StoreError;

impl Tags {
    /// Whether the last store operation succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The value of a store call, recording whether the store answered. Only the change to
    /// failing is logged: a store that is down would otherwise log once per lookup.
    pub(super) fn outcome<T>(&self, result: Result<T, StoreError>) -> Option<T> {
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
