//! Invalidation: what the cache drops when tags are deleted, here (an erasure) or by another
//! gateway sharing the store (its announcements).

use std::sync::Arc;

use super::Tags;
use crate::admin::metrics;
use crate::store::Digest;
use crate::store::listen::Invalidation;

impl Tags {
    /// Drops from the cache what any gateway sharing the store deleted, as the store announces
    /// it (PostgreSQL's `LISTEN`/`NOTIFY`); for a store nobody else writes to, returns at once.
    /// Without announcements (the channel down), cached tags still expire after
    /// [`MISS_TTL`](super::MISS_TTL) when absent and 60 s when present.
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
}
