//! Where tags and privacy requests are kept: the [`Store`] and [`Outbox`] traits and their
//! backends (each backend implements both over one database).
//!
//! The request path never talks to a store directly: [`crate::tags::Tags`] keeps an in-memory
//! cache in front of it, writes behind in batches, and loads on a cache miss. A store only has to
//! apply batches idempotently (first controller of a record wins), answer lookups, and delete
//! expired rows in bounded batches, so several gateways may share one; deletions are announced to
//! the others ([`listen`]). The [`outbox`] holds privacy requests until every controller has them.

#[cfg(test)]
pub mod faulty;
pub mod listen;
pub mod memory;
pub mod outbox;
pub mod postgres;
pub mod rows;
pub mod sqlite;
#[cfg(feature = "test-support")]
pub mod test_postgres;

use crate::config::StoreBackend;
pub use outbox::Outbox;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// HMAC-SHA-256 of a record key or a normalised recipient identifier.
pub type Digest = [u8; 32];

/// A boxed future, so stores can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store operation failed: what failed, in words, and the driver's error when there is one.
///
/// Its text already names every cause (some drivers say why only in their sources: a failed TLS
/// handshake), so [`std::error::Error::source`] is empty and a chain printed by the caller says
/// each cause once; the driver's error itself is kept for code that inspects it ([`Self::cause`]).
/// Neither holds a value read from a row: what the store cannot decode is named, not quoted.
#[derive(Debug, Clone)]
pub struct StoreError {
    message: String,
    /// Shared, so that a failed batch's error can be both returned and recorded.
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A failure the store itself found (a row it cannot read, a URL it cannot use).
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            cause: None,
        }
    }

    /// A driver's failure: the message is its text and every cause's, the error kept whole.
    pub fn caused_by(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        let mut message = error.to_string();
        let mut cause = error.source();
        while let Some(next) = cause {
            let text = next.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            cause = next.source();
        }
        StoreError {
            message,
            cause: Some(Arc::new(error)),
        }
    }

    /// The driver's error this failure came from, if it came from one.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tag store: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// One tag sighting to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagWrite {
    /// A record key seen with `controller`; tags it unless it belongs to another controller,
    /// refreshes last-seen and adds `recipients` when it is `controller`'s.
    Record {
        /// The record key digest.
        digest: Digest,
        /// The controlling client id.
        controller: Arc<str>,
        /// Recipient digests seen in the record.
        recipients: Vec<Digest>,
        /// Unix seconds of the sighting.
        seen: u64,
    },
    /// A recipient identifier seen under `controller`.
    Recipient {
        /// The identifier digest.
        digest: Digest,
        /// The controlling client id.
        controller: Arc<str>,
        /// Unix seconds of the sighting.
        seen: u64,
    },
}

/// A record's controller and the recipients it was seen with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTag {
    /// Controlling client id.
    pub controller: Arc<str>,
    /// Unix seconds of the first sighting.
    pub first_seen: u64,
    /// Unix seconds of the latest sighting (retention counts from here).
    pub last_seen: u64,
    /// Recipient digests seen in this record (verification of privacy requests).
    pub recipients: Vec<Digest>,
}

/// One controller of a recipient (a person may ship with several customers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientTag {
    /// Controlling client id.
    pub controller: Arc<str>,
    /// Unix seconds of the first sighting.
    pub first_seen: u64,
    /// Unix seconds of the latest sighting.
    pub last_seen: u64,
}

/// Where an import stands, committed with each of its batches: `tags import --resume` starts
/// after `line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportMark {
    /// The import's name: its route and input (`shipments:history.jsonl`).
    pub name: String,
    /// The last input line whose tags the batch holds.
    pub line: u64,
}

/// Rows deleted by one retention pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Record tags deleted.
    pub records: u64,
    /// Recipient tags deleted.
    pub recipients: u64,
}

/// One opened database, seen as a tag store and as the privacy outbox.
#[derive(Clone)]
pub struct Opened {
    /// Tags.
    pub tags: Arc<dyn Store>,
    /// Privacy requests and their deliveries.
    pub outbox: Arc<dyn Outbox>,
}

impl Opened {
    fn of<S: Store + Outbox>(store: S) -> Opened {
        let store = Arc::new(store);
        Opened {
            tags: store.clone(),
            outbox: store,
        }
    }
}

/// Opens the configured backend, creating or migrating its schema as needed.
pub async fn open(config: &crate::config::StoreSettings) -> Result<Opened, StoreError> {
    open_for(config, sqlite::Purpose::Serve).await
}

/// [`open`] for `tags import`: SQLite gets the import's tuning ([`sqlite::Purpose::Import`]).
pub async fn open_for_import(config: &crate::config::StoreSettings) -> Result<Opened, StoreError> {
    open_for(config, sqlite::Purpose::Import).await
}

async fn open_for(
    config: &crate::config::StoreSettings,
    purpose: sqlite::Purpose,
) -> Result<Opened, StoreError> {
    match config.backend {
        StoreBackend::Memory => Ok(Opened::of(memory::MemoryStore::new())),
        StoreBackend::Sqlite => Ok(Opened::of(sqlite::SqliteStore::open_for(
            &config.path,
            purpose,
        )?)),
        StoreBackend::Postgres => {
            let url = config.url.as_ref().expect("validated: postgres has a URL");
            let url = std::str::from_utf8(url.expose())
                .map_err(|_| StoreError::new("the PostgreSQL URL is not UTF-8"))?;
            let tls = config.postgres_tls.clone();
            Ok(Opened::of(postgres::PostgresStore::open(url, tls).await?))
        }
    }
}

/// A tag store backend.
pub trait Store: Send + Sync + 'static {
    /// Applies a batch of sightings in order, in one transaction where the backend has them.
    fn write(&self, batch: Vec<TagWrite>) -> StoreFuture<'_, ()>;

    /// Applies a batch of imported history through the same path as [`Store::write`] (rows
    /// made by [`rows::Rows::from_writes`]), except that tags already held keep their times,
    /// and records `mark` in the same transaction. Returns what it added: nothing, for a batch
    /// imported before.
    fn import(&self, rows: rows::Rows, mark: ImportMark) -> StoreFuture<'_, rows::Added>;

    /// The last line an import of this name committed, if it ever did.
    fn import_mark(&self, name: String) -> StoreFuture<'_, Option<u64>>;

    /// The tag of a record key, if any.
    fn record(&self, digest: Digest) -> StoreFuture<'_, Option<RecordTag>>;

    /// The tags of several record keys at once (absent keys are left out): a list response's
    /// records are looked up in one round trip.
    fn records(&self, digests: Vec<Digest>) -> StoreFuture<'_, Vec<(Digest, RecordTag)>>;

    /// The controllers of a recipient identifier.
    fn recipient(&self, digest: Digest) -> StoreFuture<'_, Vec<RecipientTag>>;

    /// Deletes up to `limit` record and `limit` recipient tags last seen before `before` (unix
    /// seconds). Idempotent: callers repeat until nothing is left.
    fn delete_expired(&self, before: u64, limit: u32) -> StoreFuture<'_, Deleted>;

    /// Number of record and recipient tags.
    fn counts(&self) -> StoreFuture<'_, (u64, u64)>;

    /// Whether the store answers (for `/readyz`).
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// Erasure on a controller's instruction: deletes `controller`'s tags of these recipients and
    /// its record tags that list any of them (other controllers' tags stay).
    fn erase(&self, controller: Arc<str>, recipients: Vec<Digest>) -> StoreFuture<'_, Deleted>;

    /// What other gateways sharing this store delete, as it happens, for the tag cache to drop
    /// (PostgreSQL: `LISTEN`/`NOTIFY`). `None` for a store no other gateway writes to. Each call
    /// starts a listener of its own; the gateway makes one.
    fn invalidations(&self) -> Option<tokio::sync::mpsc::Receiver<listen::Invalidation>> {
        None
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
