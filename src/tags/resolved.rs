//! A record as controller resolution leaves it: its controller, how that was found, and the
//! digests to tag ([`super::Tags::write`] takes them).

use std::sync::Arc;

use super::Digest;
use crate::json::NodeId;

/// How a record's controller was found (reference §4.2 order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A record key was already tagged.
    Tag,
    /// The `controller_member` named a customer.
    Member,
    /// The calling customer sent it (request) or created it (single-record response).
    Caller,
    /// Nothing says who controls it.
    Unknown,
}

/// A record with its controller and the digests to tag.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The record's node.
    pub node: NodeId,
    /// Controlling client id, when known.
    pub controller: Option<Arc<str>>,
    /// How it was found.
    pub source: Source,
    /// Digests of the record's key values.
    pub keys: Vec<Digest>,
    /// Digests of the recipient's identifiers.
    pub recipients: Vec<Digest>,
    /// Its controller was found only under a previous tag key: its keys are tagged again under
    /// the current one, whichever the direction.
    pub rekeyed: bool,
}
