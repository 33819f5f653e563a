//! The privacy-request outbox: requests, one delivery per controller, and their states.
//!
//! A request and its deliveries are committed in one transaction before the requester hears
//! `202` (a transactional outbox), so a crash loses nothing. Deliveries are claimed for an attempt
//! with a lease: the claim sets `lease_until` and a fresh claim token, and only the holder of the
//! token can record the attempt's outcome. With several gateways on one PostgreSQL, each attempt
//! is claimed by exactly one of them (`FOR UPDATE SKIP LOCKED`); a gateway that dies mid-attempt
//! lets its lease run out and another retries, so every delivery is made at least once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Digest, StoreError, StoreFuture};

/// A request id: 128 random bits, shown as 32 lower-case hex digits.
pub type RequestId = [u8; 16];

/// What the requester asks the controller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestType {
    /// A copy of their data.
    Access,
    /// Deletion of their data.
    Delete,
    /// Correction of their data.
    Correct,
    /// No sale or sharing of their data.
    OptOut,
    /// Limited use of their sensitive data.
    LimitSensitive,
}

impl RequestType {
    /// Every type, for registering each metric series at 0.
    pub const ALL: [RequestType; 5] = [
        RequestType::Access,
        RequestType::Delete,
        RequestType::Correct,
        RequestType::OptOut,
        RequestType::LimitSensitive,
    ];

    /// The contract's name (payloads, metric label, store column).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Access => "access",
            RequestType::Delete => "delete",
            RequestType::Correct => "correct",
            RequestType::OptOut => "opt_out",
            RequestType::LimitSensitive => "limit_sensitive",
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<RequestType> {
        RequestType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// The personal data a request carries: kept only until retention (reference §5), then erased while
/// the audit row stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The requester's e-mail address.
    pub email: Option<String>,
    /// The requester's phone number.
    pub phone: Option<String>,
    /// The tracking number they gave to prove a shipment.
    pub tracking_number: Option<String>,
    /// Free text from the requester.
    pub details: Option<String>,
    /// Where they want the answer.
    pub reply_to: Option<String>,
}

/// Where one controller's copy of a request stands (reference §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet delivered by webhook, or (no webhook) not yet acknowledged.
    Pending,
    /// The webhook answered 2xx.
    Delivered,
    /// Attempts or age ran out; kept in the inbox.
    Dead,
    /// The controller acknowledged it.
    Acknowledged,
}

impl DeliveryStatus {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Acknowledged => "acknowledged",
        }
    }

    /// Reads a stored or query-string name.
    pub fn parse(name: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
            DeliveryStatus::Acknowledged,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// A request to commit, with its deliveries.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Random id.
    pub id: RequestId,
    /// What is asked.
    pub kind: RequestType,
    /// Unix seconds of intake.
    pub received_at: u64,
    /// The personal data, kept for delivery (and, unmatched, until a match or the window ends).
    pub subject: Option<Subject>,
    /// One per controller.
    pub deliveries: Vec<NewDelivery>,
    /// What to match it by later, when no controller was found.
    pub unmatched: Option<MatchKeys>,
}

/// What an unmatched request is matched by: keyed digests, as tags are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchKeys {
    /// Digests of the requester's e-mail and phone, as recipient tags key them.
    pub identifiers: Vec<Digest>,
    /// Digests of the tracking number, as record tags key it (one per tag key at intake; the
    /// store keeps the first, the current key's).
    pub tracking: Vec<Digest>,
}

/// An unmatched request still within its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The request.
    pub id: RequestId,
    /// Unix seconds of intake.
    pub received_at: u64,
    /// What to match it by, as digested at intake.
    pub keys: MatchKeys,
    /// The requester's identifiers, while kept: matched under the tag keys in force now, so a
    /// request that waits across a key rotation still finds tags written under the new key.
    pub subject: Option<Subject>,
}

/// An unmatched request as the platform's privacy team sees it: no personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmatchedEntry {
    /// The request.
    pub id: RequestId,
    /// What is asked.
    pub kind: RequestType,
    /// Unix seconds of intake.
    pub received_at: u64,
    /// Past `[privacy] unmatched_days`: its fields and digests are deleted, no match will come.
    pub expired: bool,
}

/// Unmatched requests, for the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnmatchedCounts {
    /// Still being matched.
    pub waiting: u64,
    /// Past the window, for the privacy team.
    pub expired: u64,
}

/// One controller's copy of a new request.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The controlling client id.
    pub controller: Arc<str>,
    /// Whether the tracking number names this controller's record of the requester.
    pub verified: bool,
    /// The Standard Webhooks message id: the same on every attempt.
    pub webhook_id: String,
}

/// One delivery's state, for the public status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    /// Whether it is verified.
    pub verified: bool,
    /// Where it stands.
    pub status: DeliveryStatus,
}

/// What the public status answer is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestState {
    /// Unix seconds of intake.
    pub received_at: u64,
    /// Its deliveries (none when no controller was found).
    pub deliveries: Vec<DeliveryState>,
}

/// A delivery claimed for one webhook attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The request.
    pub request_id: RequestId,
    /// The controller it goes to.
    pub controller: Arc<str>,
    /// Stable message id.
    pub webhook_id: String,
    /// What is asked.
    pub kind: RequestType,
    /// Unix seconds of intake.
    pub received_at: u64,
    /// Whether it is verified for this controller.
    pub verified: bool,
    /// The personal data (`None` only if already erased).
    pub subject: Option<Subject>,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// Proof of the claim: the outcome is recorded only with it.
    pub claim: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The webhook answered 2xx at this time.
    Delivered {
        /// Unix seconds.
        at: u64,
    },
    /// Failed; try again no earlier than `next`.
    Retry {
        /// Unix seconds of the failure.
        at: u64,
        /// Unix seconds of the next attempt.
        next: u64,
        /// Why, without personal data (e.g. `status 503`).
        error: String,
    },
    /// Failed and out of attempts or time.
    Dead {
        /// Unix seconds.
        at: u64,
        /// Why, without personal data.
        error: String,
    },
}

/// One entry of a customer's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// The request.
    pub request_id: RequestId,
    /// What is asked.
    pub kind: RequestType,
    /// This customer's delivery status.
    pub status: DeliveryStatus,
    /// Unix seconds of intake.
    pub received_at: u64,
    /// Whether it is verified for this customer.
    pub verified: bool,
    /// The personal data (`None` after retention).
    pub subject: Option<Subject>,
}

/// Deliveries waiting, for the outbox gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Pending deliveries.
    pub pending: u64,
    /// Unix seconds of intake of the oldest pending one.
    pub oldest: Option<u64>,
}

/// Privacy requests in the same store as the tags.
pub trait Outbox: Send + Sync + 'static {
    /// Commits a request and its deliveries in one durable transaction.
    fn insert(&self, request: NewRequest) -> StoreFuture<'_, ()>;

    /// A request's intake time and delivery states, if it exists.
    fn state(&self, id: RequestId) -> StoreFuture<'_, Option<RequestState>>;

    /// Claims up to `limit` pending deliveries to `controllers` due at `now` whose lease is free,
    /// counting an attempt on each and leasing them until `lease_until`.
    fn claim(
        &self,
        controllers: Vec<Arc<str>>,
        now: u64,
        lease_until: u64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Claimed>>;

    /// Records an attempt's outcome; false when the claim was lost (lease taken over, or the
    /// delivery acknowledged meanwhile) and nothing was changed.
    fn finish(
        &self,
        request_id: RequestId,
        controller: Arc<str>,
        claim: u64,
        attempt: Attempt,
    ) -> StoreFuture<'_, bool>;

    /// A controller's deliveries, oldest first, optionally of one status.
    fn inbox(
        &self,
        controller: Arc<str>,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<InboxItem>>;

    /// Marks a controller's delivery acknowledged (idempotent); false when it has none.
    fn acknowledge(
        &self,
        request_id: RequestId,
        controller: Arc<str>,
        at: u64,
    ) -> StoreFuture<'_, bool>;

    /// Erases the subject of up to `limit` requests whose deliveries all settled (delivered or
    /// acknowledged) before `before`; returns how many. Audit rows stay.
    fn expire_subjects(&self, before: u64, limit: u32) -> StoreFuture<'_, u64>;

    /// Pending deliveries and the oldest one's age.
    fn backlog(&self) -> StoreFuture<'_, Backlog>;

    /// Unmatched requests within their window, by id after `after`, at most `limit`.
    fn waiting(&self, after: Option<RequestId>, limit: u32) -> StoreFuture<'_, Vec<Waiting>>;

    /// Gives a waiting request its deliveries (due at `at`) and ends its wait, in one
    /// transaction; false when it was no longer waiting (matched elsewhere, or expired).
    fn matched(
        &self,
        id: RequestId,
        deliveries: Vec<NewDelivery>,
        at: u64,
    ) -> StoreFuture<'_, bool>;

    /// Ends the wait of up to `limit` requests received before `before`: their subject and
    /// digests are deleted, the audit row stays, listed as expired. Returns how many.
    fn expire_unmatched(&self, before: u64, limit: u32) -> StoreFuture<'_, u64>;

    /// Unmatched requests, waiting and expired, oldest first.
    fn unmatched(&self, limit: u32) -> StoreFuture<'_, Vec<UnmatchedEntry>>;

    /// How many are waiting and how many expired.
    fn unmatched_counts(&self) -> StoreFuture<'_, UnmatchedCounts>;

    /// Counts an intake request against the rate limit shared by every gateway on this store,
    /// as a GCRA: `key` is a keyed digest of the client address, `now` unix seconds, `interval`
    /// the seconds one request costs and `burst` how far ahead of now the budget may run.
    /// `Some(Ok(()))` admits, `Some(Err(wait))` refuses for `wait` seconds; `None` when the store
    /// is not shared (the gateway's own limiter applies).
    fn admit(
        &self,
        _key: [u8; 32],
        _now: f64,
        _interval: f64,
        _burst: f64,
    ) -> Option<StoreFuture<'_, Result<(), f64>>> {
        None
    }
}

// Reading stored rows back, shared by the SQL backends: a row the gateway did not write (or a
// newer gateway wrote) is an error, never a guess.

pub(super) fn request_id_from(bytes: Vec<u8>) -> Result<RequestId, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::new("a stored request id is not 16 bytes"))
}

pub(super) fn subject_from(text: Option<String>) -> Result<Option<Subject>, StoreError> {
    // serde_json's message may quote the value it choked on: a requester's e-mail or phone.
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|_| StoreError::new("a stored privacy subject is not readable"))
    })
    .transpose()
}

/// Digests stored side by side in one byte string (a record's recipients, a request's
/// identifiers), read back.
pub(super) fn digests_from_bytes(bytes: &[u8]) -> Result<Vec<Digest>, StoreError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(StoreError::new("stored digests are not whole"));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect())
}

pub(super) fn digest_from(bytes: Vec<u8>) -> Result<Digest, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::new("a stored digest is not 32 bytes"))
}

pub(super) fn kind_from(name: &str) -> Result<RequestType, StoreError> {
    RequestType::parse(name).ok_or_else(|| StoreError::new("a stored request has an unknown type"))
}

pub(super) fn status_from(name: &str) -> Result<DeliveryStatus, StoreError> {
    DeliveryStatus::parse(name)
        .ok_or_else(|| StoreError::new("a stored delivery has an unknown status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored subject the store cannot read is named in the error, never quoted: serde_json's
    /// own message would carry the requester's e-mail into the log.
    #[test]
    fn an_unreadable_subject_is_named_not_quoted() {
        let stored = serde_json::to_string("jane.doe@example.com").unwrap();
        let parsed: Result<Subject, _> = serde_json::from_str(&stored);
        let parser_says = parsed.unwrap_err().to_string();
        assert!(parser_says.contains("jane.doe"), "the case: {parser_says}");
        let error = subject_from(Some(stored)).unwrap_err();
        assert!(!error.to_string().contains("jane"), "{error}");
        assert!(!format!("{error:?}").contains("jane"), "{error:?}");
    }
}
