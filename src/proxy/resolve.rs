//! Controller resolution (reference §4.2): for each record of a body, who controls it and which
//! digests to tag. Policy over the config, the body and the tag cache: it reads tags and writes
//! none.

use std::sync::Arc;

use crate::admin::metrics;
use crate::config::{Client, ClientKind, Config, Route};
use crate::json::{Document, NodeId};
use crate::tags::{Digest, KeyRing, Resolved, Source, Tags};
use crate::vocabulary::Direction;

/// Who asks, on which route, under which config: what controller resolution depends on.
#[derive(Clone, Copy)]
pub struct Asking<'a> {
    /// The config (for the known clients).
    pub config: &'a Config,
    /// The route (record keys, recipient, controller member).
    pub route: &'a Route,
    /// The authenticated caller, if any.
    pub caller: Option<&'a Client>,
}

/// Finds each record's controller in reference §4.2 order and the digests to tag. `created`
/// marks a response to a create: its single record is the caller's.
pub async fn resolve(
    tags: &Tags,
    asking: &Asking<'_>,
    doc: &Document<'_>,
    records: &[NodeId],
    direction: Direction,
    created: bool,
) -> Vec<Resolved> {
    let Asking {
        config,
        route,
        caller,
    } = *asking;
    let customer = caller.filter(|c| c.kind == ClientKind::Customer);
    let ring = tags.keys();
    let keys_of: Vec<Vec<Digest>> = records
        .iter()
        .map(|&node| {
            route
                .record_key_values(doc, node)
                .map(|value| ring.record(&value))
                .collect()
        })
        .collect();
    tags.preload(&keys_of.concat()).await;
    let mut tags_of = Vec::with_capacity(records.len());
    for keys in &keys_of {
        let tagged = tags.controller_of(keys).await;
        tags_of.push(
            tagged
                .and_then(|id| config.known_customer(&id))
                .map(|id| (id, false)),
        );
    }
    if !ring.previous.is_empty() && tags_of.iter().any(Option::is_none) {
        tagged_before_rotation(tags, config, &ring, route, doc, records, &mut tags_of).await;
    }
    let mut resolved = Vec::with_capacity(records.len());
    for ((&node, keys), tag) in records.iter().zip(keys_of).zip(tags_of) {
        let (tagged, rekeyed) = match tag {
            Some((id, rekeyed)) => (Some(id), rekeyed),
            None => (None, false),
        };
        let member = || config.member_controller(route, doc, node);
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
            Some(_) => route
                .recipient_identifier_values(doc, node)
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

/// For the records no current-key tag names: their keys under each previous key, newest first,
/// loaded in one store round trip per key. Each digest looked up is counted.
async fn tagged_before_rotation(
    tags: &Tags,
    config: &Config,
    ring: &KeyRing,
    route: &Route,
    doc: &Document<'_>,
    records: &[NodeId],
    tags_of: &mut [Option<(Arc<str>, bool)>],
) {
    for previous in &ring.previous {
        let untagged: Vec<(usize, Vec<Digest>)> = records
            .iter()
            .enumerate()
            .filter(|(i, _)| tags_of[*i].is_none())
            .map(|(i, &node)| {
                let keys: Vec<Digest> = route
                    .record_key_values(doc, node)
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
        tags.preload(&digests).await;
        for (i, keys) in untagged {
            let tagged = tags.controller_of(&keys).await;
            tags_of[i] = tagged
                .and_then(|id| config.known_customer(&id))
                .map(|id| (id, true));
        }
    }
}
