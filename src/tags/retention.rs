//! Retention: tags not seen for `[store] retention_days` are deleted from the store in bounded
//! batches (several gateways may run it at once) and dropped from the cache.

use super::Tags;
use crate::admin::metrics;
use crate::store::{Deleted, StoreError};

/// Rows deleted per retention statement.
const RETENTION_BATCH: u32 = 1_000;

impl Tags {
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
    pub(super) fn forget_expired(&self, cutoff: u64) {
        self.records
            .retain(|_, c| c.value.as_ref().is_none_or(|t| t.last_seen >= cutoff));
        self.recipients.retain(|_, c| {
            c.value.retain(|t| t.last_seen >= cutoff);
            !c.value.is_empty()
        });
    }
}
