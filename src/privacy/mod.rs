//! Privacy requests from shipment recipients, routed to the customers who control their data.
//!
//! The platform is a processor: it does not answer a recipient's request itself, it hands it to
//! every controller that holds the person's data, reliably, and it never tells a stranger whose
//! data it holds. The parts:
//!
//! - [`body`]: the strict request bodies;
//! - [`Desk`]: filing (verification against tags, one delivery per controller, committed before
//!   the `202`), public status, the customers' inbox and acknowledgement, erasure;
//! - [`delivery`]: the webhook worker (claims, Standard Webhooks signatures, retries, dead letters);
//! - [`http`]: the endpoints on the main listener;
//! - [`limit`]: the per-IP intake rate limit; [`signature`]: signing and verifying deliveries.
//!
//! Nothing here logs or returns personal data: logs carry request ids (random), controller ids
//! and outcomes; the subject is stored for delivery and erased by retention once settled.
//!
//! A request no controller is found for (a shipment from before the gateway, not yet imported)
//! is never dropped: it waits with the keyed digests of its identifiers, is matched again after
//! imports, when traffic tags new recipients and every minute, and past `[privacy]
//! unmatched_days` loses its fields and is listed for the platform's privacy team.

pub mod body;
pub mod delivery;
pub mod error;
pub mod http;
pub mod limit;
pub mod page;
pub mod signature;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::admin::metrics;
use crate::store::outbox::{
    Backlog, DeliveryState, DeliveryStatus, InboxItem, MatchKeys, NewDelivery, NewRequest, Outbox,
    RequestId, Subject, UnmatchedCounts, UnmatchedEntry,
};
use crate::store::{Deleted, Digest, Opened, Store, StoreError};
use crate::tags::Tags;
use body::Intake;
use limit::RateLimiter;

/// Wall-clock time in unix seconds, with an offset tests can move forward to reach retry and
/// expiry deadlines without waiting for them.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicU64>,
}

impl Clock {
    /// Unix seconds now (plus any offset).
    pub fn now(&self) -> u64 {
        crate::tags::now() + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (and its clones) forward.
    pub fn advance(&self, by: Duration) {
        self.offset.fetch_add(by.as_secs(), Ordering::Relaxed);
    }
}

/// The outcome of filing a request.
#[derive(Debug, Clone)]
pub struct Filed {
    /// The new request's id.
    pub id: RequestId,
    /// Controllers of the record the tracking number names, when it proves the requester's
    /// shipment: the only ones the requester may be told about.
    pub verified: Vec<Arc<str>>,
}

/// Where a request stands for the public (reference §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicStatus {
    /// Filed; deliveries pending, or unverified (which never says more).
    Received,
    /// Every delivery delivered or acknowledged.
    Forwarded,
    /// Every delivery acknowledged.
    Acknowledged,
    /// A delivery is dead.
    Dead,
}

impl PublicStatus {
    /// The status of a request from its deliveries. An unverified request stays `received`:
    /// anything else would say whether anyone held the requester's data.
    pub fn of(deliveries: &[DeliveryState]) -> PublicStatus {
        if !deliveries.iter().any(|d| d.verified) {
            return PublicStatus::Received;
        }
        let all = |s: DeliveryStatus| deliveries.iter().all(|d| d.status == s);
        if deliveries.iter().any(|d| d.status == DeliveryStatus::Dead) {
            PublicStatus::Dead
        } else if all(DeliveryStatus::Acknowledged) {
            PublicStatus::Acknowledged
        } else if deliveries
            .iter()
            .any(|d| d.status == DeliveryStatus::Pending)
        {
            PublicStatus::Received
        } else {
            PublicStatus::Forwarded
        }
    }

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PublicStatus::Received => "received",
            PublicStatus::Forwarded => "forwarded",
            PublicStatus::Acknowledged => "acknowledged",
            PublicStatus::Dead => "dead",
        }
    }
}

/// Rows per subject-retention statement.
const RETENTION_BATCH: u32 = 1_000;
/// Waiting requests read per page when matching again.
const REMATCH_PAGE: u32 = 500;

/// Who a request goes to.
#[derive(Debug, Default)]
struct Found {
    /// Every controller holding the requester's data.
    controllers: BTreeSet<Arc<str>>,
    /// Those whose record the tracking number proves.
    verified: BTreeSet<Arc<str>>,
}

impl Found {
    /// One delivery per controller, each with its own message id.
    fn deliveries(&self) -> Vec<NewDelivery> {
        self.controllers
            .iter()
            .map(|controller| NewDelivery {
                verified: self.verified.contains(controller),
                webhook_id: format!("msg_{}", hex::encode(rand::random::<[u8; 16]>())),
                controller: controller.clone(),
            })
            .collect()
    }
}

/// What the delivery worker has done since the gateway started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryProgress {
    /// Rounds finished: each claimed every delivery due when it looked.
    pub rounds: u64,
    /// Attempts whose outcome is recorded in the outbox.
    pub attempts: u64,
}

/// The privacy desk: everything about requests except HTTP and webhooks.
pub struct Desk {
    /// Requests and deliveries.
    outbox: Arc<dyn Outbox>,
    /// Tags, read directly (not through the cache) when verifying, so the time an answer takes
    /// does not depend on whether the requester's tags happen to be cached.
    store: Arc<dyn Store>,
    /// The tag cache: its key digests identifiers, its queue is flushed before verifying (this
    /// gateway's latest sightings count) and its entries are dropped on erasure.
    tags: Arc<Tags>,
    /// Time for intake, retries and retention.
    clock: Clock,
    /// Intake requests per client IP.
    limiter: RateLimiter,
    /// Wakes the delivery worker when a request is filed.
    wake: Notify,
    /// What the delivery worker has done: rounds finished and attempts recorded. Whoever must
    /// know that an outcome is recorded (before moving the clock, say) watches it instead of
    /// waiting a while.
    progress: watch::Sender<DeliveryProgress>,
    /// Requests waiting for a controller, as the store last counted them plus this gateway's
    /// intake since: intake adds to it without a query, and matching prompted by new tags is
    /// skipped while it is 0.
    waiting: AtomicU64,
}

impl Desk {
    /// A desk over an opened store and its tag cache.
    pub fn new(store: &Opened, tags: Arc<Tags>, clock: Clock) -> Desk {
        Desk {
            outbox: store.outbox.clone(),
            store: store.tags.clone(),
            tags,
            clock,
            limiter: RateLimiter::default(),
            wake: Notify::new(),
            progress: watch::Sender::new(DeliveryProgress::default()),
            waiting: AtomicU64::new(0),
        }
    }

    /// The desk's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The delivery worker's progress, as it happens (for tests, which wait on it).
    #[cfg(feature = "test-support")]
    pub fn delivery_progress(&self) -> watch::Receiver<DeliveryProgress> {
        self.progress.subscribe()
    }

    /// Starts a delivery round now rather than at the next poll (for tests).
    #[cfg(feature = "test-support")]
    pub fn deliver_now(&self) {
        self.wake.notify_one();
    }

    /// The per-IP intake limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Verifies and commits a request; returns once it is durable. A request no controller is
    /// found for is kept with its keyed digests and matched again ([`Desk::rematch`]).
    pub async fn file(&self, intake: Intake) -> Result<Filed, StoreError> {
        self.tags.flush().await?;
        let subject = intake.subject;
        let keys = self.match_keys(&subject);
        let found = self.find(&keys).await?;
        let id: RequestId = rand::random();
        let verified: Vec<Arc<str>> = found.verified.iter().cloned().collect();
        let deliveries = found.deliveries();
        let unmatched = deliveries.is_empty();
        let request = NewRequest {
            id,
            kind: intake.kind,
            received_at: self.clock.now(),
            // Kept even with nobody to hand it to yet: deleted at `unmatched_days` if no match
            // comes (docs/privacy-requests.md weighs this against minimisation).
            subject: Some(subject),
            deliveries,
            unmatched: unmatched.then_some(keys),
        };
        self.outbox.insert(request).await?;
        ::metrics::counter!(
            metrics::PRIVACY_REQUESTS,
            "type" => intake.kind.as_str(),
            "verified" => if verified.is_empty() { "false" } else { "true" }
        )
        .increment(1);
        if unmatched {
            ::metrics::counter!(metrics::PRIVACY_UNMATCHED, "type" => intake.kind.as_str())
                .increment(1);
            let waiting = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
            ::metrics::gauge!(metrics::PRIVACY_UNMATCHED_NOW, "state" => "waiting")
                .set(waiting as f64);
        }
        self.wake.notify_one();
        Ok(Filed { id, verified })
    }

    /// What a requester's identifiers and tracking number are looked up by: their digests
    /// under every tag key, current and previous, so tags written before a rotation are found.
    fn match_keys(&self, subject: &Subject) -> MatchKeys {
        let ring = self.tags.keys();
        MatchKeys {
            identifiers: [&subject.email, &subject.phone]
                .into_iter()
                .flatten()
                .flat_map(|v| ring.recipient_all(v))
                .collect(),
            tracking: subject
                .tracking_number
                .as_deref()
                .map(|t| ring.record_all(t.trim()))
                .unwrap_or_default(),
        }
    }

    /// The controllers holding a requester's data, and those whose record the tracking number
    /// proves. Read from the store, not the cache (see [`Desk::store`]).
    async fn find(&self, keys: &MatchKeys) -> Result<Found, StoreError> {
        let mut found = Found::default();
        for digest in &keys.identifiers {
            for tag in self.store.recipient(*digest).await? {
                found.controllers.insert(tag.controller);
            }
        }
        for tracking in &keys.tracking {
            if let Some(tag) = self.store.record(*tracking).await?
                && tag.recipients.iter().any(|r| keys.identifiers.contains(r))
            {
                found.controllers.insert(tag.controller.clone());
                found.verified.insert(tag.controller);
            }
        }
        Ok(found)
    }

    /// Matches every waiting request again: those that now have a controller get their
    /// deliveries, exactly as if they had been found at intake. Runs after every import, when
    /// traffic tags new recipients, and every minute. Returns how many were matched.
    pub async fn rematch(&self) -> Result<u64, StoreError> {
        // This gateway's latest sightings count, as at intake.
        self.tags.flush().await?;
        let mut after = None;
        let mut matched = 0;
        loop {
            let page = self.outbox.waiting(after, REMATCH_PAGE).await?;
            for waiting in &page {
                // Digested again under today's keys while the identifiers are kept: a request
                // that waits across a rotation finds tags written under the new key.
                let keys = match &waiting.subject {
                    Some(subject) => self.match_keys(subject),
                    None => waiting.keys.clone(),
                };
                let found = self.find(&keys).await?;
                if found.controllers.is_empty() {
                    continue;
                }
                if self
                    .outbox
                    .matched(waiting.id, found.deliveries(), self.clock.now())
                    .await?
                {
                    matched += 1;
                }
            }
            match page.last() {
                Some(last) if page.len() == REMATCH_PAGE as usize => after = Some(last.id),
                _ => break,
            }
        }
        if matched > 0 {
            ::metrics::counter!(metrics::PRIVACY_MATCHED_LATE).increment(matched);
            tracing::info!(msg = "unmatched privacy requests matched", matched);
            self.wake.notify_one();
        }
        self.report_unmatched().await?;
        Ok(matched)
    }

    /// Ends the wait of requests received before `cutoff`: their fields and digests are
    /// deleted, and they stay listed for the platform's privacy team. Returns how many.
    pub async fn expire_unmatched(&self, cutoff: u64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let expired = self
                .outbox
                .expire_unmatched(cutoff, RETENTION_BATCH)
                .await?;
            total += expired;
            if expired < u64::from(RETENTION_BATCH) {
                break;
            }
        }
        if total > 0 {
            tracing::warn!(
                msg = "privacy requests unmatched past the window; see /admin/privacy/unmatched",
                expired = total
            );
        }
        self.report_unmatched().await?;
        Ok(total)
    }

    /// Unmatched requests, oldest first, for the platform's privacy team: the body of
    /// `GET /admin/privacy/unmatched`. Ids, types, times and states; no personal data.
    pub async fn unmatched_report(&self, limit: u32) -> Result<serde_json::Value, StoreError> {
        let entries: Vec<UnmatchedEntry> = self.outbox.unmatched(limit).await?;
        let counts = self.report_unmatched().await?;
        let now = self.clock.now();
        let listed: Vec<serde_json::Value> = entries
            .iter()
            .map(|entry| {
                serde_json::json!({
                    "id": format_id(&entry.id),
                    "type": entry.kind.as_str(),
                    "received_at": rfc3339(entry.received_at),
                    "age_days": now.saturating_sub(entry.received_at) / 86_400,
                    "state": if entry.expired { "expired" } else { "waiting" },
                })
            })
            .collect();
        Ok(serde_json::json!({
            "waiting": counts.waiting,
            "expired": counts.expired,
            "requests": listed,
        }))
    }

    /// Whether any request may be waiting for a controller (as last counted, or filed here
    /// since).
    pub fn anything_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Sets the unmatched gauges from the store.
    pub async fn report_unmatched(&self) -> Result<UnmatchedCounts, StoreError> {
        let counts = self.outbox.unmatched_counts().await?;
        self.waiting.store(counts.waiting, Ordering::Relaxed);
        ::metrics::gauge!(metrics::PRIVACY_UNMATCHED_NOW, "state" => "waiting")
            .set(counts.waiting as f64);
        ::metrics::gauge!(metrics::PRIVACY_UNMATCHED_NOW, "state" => "expired")
            .set(counts.expired as f64);
        Ok(counts)
    }

    /// A request's intake time and public status.
    pub async fn status(&self, id: RequestId) -> Result<Option<(u64, PublicStatus)>, StoreError> {
        Ok(self
            .outbox
            .state(id)
            .await?
            .map(|state| (state.received_at, PublicStatus::of(&state.deliveries))))
    }

    /// A customer's deliveries.
    pub async fn inbox(
        &self,
        controller: Arc<str>,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<InboxItem>, StoreError> {
        self.outbox.inbox(controller, status, limit).await
    }

    /// Marks a customer's delivery acknowledged; false when the customer has none for `id`.
    pub async fn acknowledge(
        &self,
        id: RequestId,
        controller: Arc<str>,
    ) -> Result<bool, StoreError> {
        self.outbox
            .acknowledge(id, controller, self.clock.now())
            .await
    }

    /// Erasure on `controller`'s instruction: its tags of the person, in the store and the cache.
    pub async fn erase(
        &self,
        controller: Arc<str>,
        identifiers: &[String],
    ) -> Result<Deleted, StoreError> {
        // Queued sightings first, or they would write the erased tags back.
        self.tags.flush().await?;
        // Under every tag key: tags written before a rotation are erased too.
        let ring = self.tags.keys();
        let digests: Vec<Digest> = identifiers
            .iter()
            .flat_map(|v| ring.recipient_all(v))
            .collect();
        let deleted = self
            .store
            .erase(controller.clone(), digests.clone())
            .await?;
        self.tags.forget(&controller, &digests);
        Ok(deleted)
    }

    /// Erases the subjects of requests settled before `cutoff`; returns how many.
    pub async fn expire(&self, cutoff: u64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let erased = self.outbox.expire_subjects(cutoff, RETENTION_BATCH).await?;
            total += erased;
            if erased < u64::from(RETENTION_BATCH) {
                break;
            }
        }
        ::metrics::counter!(metrics::RETENTION_DELETED, "kind" => "privacy_subject")
            .increment(total);
        Ok(total)
    }

    /// Sets the outbox gauges from the store.
    pub async fn report_backlog(&self) -> Result<Backlog, StoreError> {
        let backlog = self.outbox.backlog().await?;
        ::metrics::gauge!(metrics::PRIVACY_OUTBOX_PENDING).set(backlog.pending as f64);
        let age = backlog
            .oldest
            .map_or(0, |oldest| self.clock.now().saturating_sub(oldest));
        ::metrics::gauge!(metrics::PRIVACY_OUTBOX_OLDEST_AGE).set(age as f64);
        Ok(backlog)
    }
}

/// A request id as the API shows it.
pub fn format_id(id: &RequestId) -> String {
    hex::encode(id)
}

/// Reads an id from a path segment: exactly 32 lower-case hex digits.
pub fn parse_id(text: &str) -> Option<RequestId> {
    if text.len() != 32 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut id = [0; 16];
    hex::decode_to_slice(text, &mut id).ok()?;
    Some(id)
}

/// Unix seconds as RFC 3339 UTC (`2026-11-29T18:32:02Z`).
pub fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(verified: bool, status: DeliveryStatus) -> DeliveryState {
        DeliveryState { verified, status }
    }

    #[test]
    fn public_status_follows_the_deliveries_and_hides_unverified_ones() {
        use DeliveryStatus::*;
        let cases: &[(&[DeliveryState], PublicStatus)] = &[
            (&[], PublicStatus::Received),
            (&[d(false, Delivered)], PublicStatus::Received),
            (
                &[d(false, Dead), d(false, Acknowledged)],
                PublicStatus::Received,
            ),
            (&[d(true, Pending)], PublicStatus::Received),
            (
                &[d(true, Delivered), d(false, Pending)],
                PublicStatus::Received,
            ),
            (
                &[d(true, Delivered), d(false, Acknowledged)],
                PublicStatus::Forwarded,
            ),
            (
                &[d(true, Acknowledged), d(false, Acknowledged)],
                PublicStatus::Acknowledged,
            ),
            (&[d(true, Acknowledged), d(false, Dead)], PublicStatus::Dead),
            (&[d(true, Dead)], PublicStatus::Dead),
        ];
        for (deliveries, want) in cases {
            assert_eq!(PublicStatus::of(deliveries), *want, "{deliveries:?}");
        }
    }

    #[test]
    fn ids_and_times_have_one_spelling() {
        let id = [0xab; 16];
        assert_eq!(parse_id(&format_id(&id)), Some(id));
        assert_eq!(parse_id(&format_id(&id).to_uppercase()), None);
        assert_eq!(parse_id("abc"), None);
        assert_eq!(parse_id(&"g".repeat(32)), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_977_122), "2026-11-29T18:32:02Z");
    }
}
