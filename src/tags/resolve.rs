//! Controller resolution (reference §4.2): for each record of a body, who controls it and which
//! digests to tag. Reads the tag cache; writes nothing.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use super::{Digest, Tags};
use crate::config::{Client, ClientKind, Config, Route};
use crate::json::{Document, Kind, NodeId};
use crate::vocabulary::Direction;

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
}

/// Who asks, on which route, under which config: what controller resolution depends on.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    /// The config (for the known clients).
    pub config: &'a Config,
    /// The route (record keys, recipient, controller member).
    pub route: &'a Route,
    /// The authenticated caller, if any.
    pub caller: Option<&'a Client>,
}

impl Tags {
    /// Finds each record's controller in reference §4.2 order and the digests to tag.
    /// `created` marks a response to a create: its single record is the caller's.
    pub async fn resolve(
        &self,
        scope: &Scope<'_>,
        doc: &Document<'_>,
        records: &[NodeId],
        direction: Direction,
        created: bool,
    ) -> Vec<Resolved> {
        let Scope {
            config,
            route,
            caller,
        } = *scope;
        let customer = caller.filter(|c| c.kind == ClientKind::Customer);
        let known_customer = |id: &str| {
            config
                .client(id)
                .filter(|c| c.kind == ClientKind::Customer)
                .map(|c| c.id.clone())
        };
        let keys_of: Vec<Vec<Digest>> = records
            .iter()
            .map(|&node| {
                record_key_values(route, doc, node)
                    .map(|value| self.key.record(&value))
                    .collect()
            })
            .collect();
        self.preload(&keys_of.concat()).await;
        let now = Instant::now();
        let mut resolved = Vec::with_capacity(records.len());
        for (&node, keys) in records.iter().zip(keys_of) {
            let mut tagged = None;
            for key in &keys {
                let controller = match self.cached_controller(key, now) {
                    Some(cached) => cached,
                    None => self.record_controller(key).await,
                };
                if let Some(controller) = controller {
                    tagged = known_customer(&controller);
                    break;
                }
            }
            let member = || member_controller(config, route, doc, node);
            let caller_owned = match direction {
                Direction::Request => customer.is_some(),
                Direction::Response => created && records.len() == 1 && customer.is_some(),
            };
            let (controller, source) = if let Some(id) = tagged {
                (Some(id), Source::Tag)
            } else if let Some(id) = member() {
                (Some(id), Source::Member)
            } else if caller_owned {
                (customer.map(|c| c.id.clone()), Source::Caller)
            } else {
                (None, Source::Unknown)
            };
            let recipients = match controller {
                Some(_) => recipient_identifier_values(route, doc, node)
                    .map(|value| self.key.recipient(&value))
                    .collect(),
                None => Vec::new(),
            };
            resolved.push(Resolved {
                node,
                controller,
                source,
                keys,
                recipients,
            });
        }
        resolved
    }
}

// What a record is made of, for live traffic and `tags import` alike: one definition of a
// record's keys, recipient and controller member.

/// The values of a record's `record_keys` members (strings, or numbers as written).
pub fn record_key_values<'d, 'a>(
    route: &'d Route,
    doc: &'d Document<'a>,
    record: NodeId,
) -> impl Iterator<Item = Cow<'a, str>> + 'd {
    route
        .record_keys
        .iter()
        .filter_map(move |name| doc.member(record, name))
        .filter_map(|value| scalar_text(doc, value))
}

/// The values of the `recipient_identifiers` of a record's `recipient`, blanks left out.
pub fn recipient_identifier_values<'d, 'a>(
    route: &'d Route,
    doc: &'d Document<'a>,
    record: NodeId,
) -> impl Iterator<Item = Cow<'a, str>> + 'd {
    let recipient = route
        .recipient
        .as_deref()
        .and_then(|name| doc.member(record, name));
    recipient
        .into_iter()
        .flat_map(move |recipient| {
            route
                .recipient_identifiers
                .iter()
                .filter_map(move |name| doc.member(recipient, name))
        })
        .filter_map(|value| doc.str_value(value))
        .filter(|value| !value.trim().is_empty())
}

/// The customer a record's `controller_member` names, if the route has one and it names a known
/// customer (anything else names nobody).
pub fn member_controller(
    config: &Config,
    route: &Route,
    doc: &Document<'_>,
    record: NodeId,
) -> Option<Arc<str>> {
    let name = route.controller_member.as_deref()?;
    let value = doc.str_value(doc.member(record, name)?)?;
    config
        .client(&value)
        .filter(|c| c.kind == ClientKind::Customer)
        .map(|c| c.id.clone())
}

/// A string's value or a number's text: what a record key can be.
fn scalar_text<'a>(doc: &Document<'a>, node: NodeId) -> Option<Cow<'a, str>> {
    match doc.node(node).kind {
        Kind::String => doc.str_value(node),
        Kind::Number => std::str::from_utf8(doc.raw(node)).ok().map(Cow::Borrowed),
        _ => None,
    }
}
