//! Controller resolution (reference §4.2): for each record of a body, who controls it and which
//! digests to tag. Reads the tag cache; writes nothing.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use super::{Digest, KeyRing, Tags};
use crate::admin::metrics;
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
    /// Its controller was found only under a previous tag key: its keys are tagged again under
    /// the current one, whichever the direction.
    pub rekeyed: bool,
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
        let ring = self.keys();
        let keys_of: Vec<Vec<Digest>> = records
            .iter()
            .map(|&node| {
                record_key_values(route, doc, node)
                    .map(|value| ring.record(&value))
                    .collect()
            })
            .collect();
        self.preload(&keys_of.concat()).await;
        let mut tags_of = Vec::with_capacity(records.len());
        for keys in &keys_of {
            tags_of.push(self.tagged(keys, &known_customer).await);
        }
        if !ring.previous.is_empty() && tags_of.iter().any(Option::is_none) {
            self.tagged_before_rotation(&ring, route, doc, records, &mut tags_of, &known_customer)
                .await;
        }
        let mut resolved = Vec::with_capacity(records.len());
        for ((&node, keys), tag) in records.iter().zip(keys_of).zip(tags_of) {
            let (tagged, rekeyed) = match tag {
                Some((id, rekeyed)) => (Some(id), rekeyed),
                None => (None, false),
            };
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
                    .map(|value| ring.recipient(&value))
                    .collect(),
                None => Vec::new(),
            };
            resolved.push(Resolved {
                node,
                controller,
                source,
                keys,
                recipients,
                rekeyed,
            });
        }
        resolved
    }

    /// The known customer that the first tagged key of a record names (`false`: found under
    /// the current key).
    async fn tagged(
        &self,
        keys: &[Digest],
        known_customer: &(dyn Fn(&str) -> Option<Arc<str>> + Sync),
    ) -> Option<(Arc<str>, bool)> {
        let now = Instant::now();
        for key in keys {
            let controller = match self.cached_controller(key, now) {
                Some(cached) => cached,
                None => self.record_controller(key).await,
            };
            if let Some(controller) = controller {
                return known_customer(&controller).map(|id| (id, false));
            }
        }
        None
    }

    /// For the records no current-key tag names: their keys under each previous key, newest
    /// first, loaded in one store round trip per key. Each digest looked up is counted.
    async fn tagged_before_rotation(
        &self,
        ring: &KeyRing,
        route: &Route,
        doc: &Document<'_>,
        records: &[NodeId],
        tags_of: &mut [Option<(Arc<str>, bool)>],
        known_customer: &(dyn Fn(&str) -> Option<Arc<str>> + Sync),
    ) {
        for previous in &ring.previous {
            let untagged: Vec<(usize, Vec<Digest>)> = records
                .iter()
                .enumerate()
                .filter(|(i, _)| tags_of[*i].is_none())
                .map(|(i, &node)| {
                    let keys: Vec<Digest> = record_key_values(route, doc, node)
                        .map(|value| previous.record(&value))
                        .collect();
                    (i, keys)
                })
                .filter(|(_, keys)| !keys.is_empty())
                .collect();
            if untagged.is_empty() {
                return;
            }
            let digests: Vec<Digest> = untagged.iter().flat_map(|(_, k)| k).copied().collect();
            ::metrics::counter!(metrics::TAG_PREVIOUS_KEY_LOOKUPS).increment(digests.len() as u64);
            self.preload(&digests).await;
            for (i, keys) in untagged {
                tags_of[i] = self
                    .tagged(&keys, known_customer)
                    .await
                    .map(|(id, _)| (id, true));
            }
        }
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
