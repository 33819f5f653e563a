//! Who controls what: record and recipient tags, keyed by HMACs, and controller resolution.
//!
//! A tag never holds personal data: record keys (ids, tracking numbers) and recipient identifiers
//! (normalised e-mail, phone) are stored as HMAC-SHA-256 under the tag key, with the controlling
//! client's id and first/last-seen times. Tags live in an in-memory map (the `memory` backend);
//! they are written before the response that creates them is sent, so the gateway honours a tag
//! from that moment on. The first controller of a record wins; traffic never moves a record to
//! another controller.

use std::sync::Arc;

use dashmap::DashMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::{Client, ClientKind, Config, Route};
use crate::json::{Document, Kind, NodeId};
use crate::redact::Direction;

/// HMAC-SHA-256 of a record key or a normalised recipient identifier.
pub type Digest = [u8; 32];

type HmacSha256 = Hmac<Sha256>;

/// The keyed hash that turns identifiers into tag digests.
#[derive(Clone)]
pub struct TagKey(HmacSha256);

impl TagKey {
    /// Keys digests with the configured tag key.
    pub fn new(key: &[u8]) -> TagKey {
        TagKey(HmacSha256::new_from_slice(key).expect("HMAC takes any key length"))
    }

    fn digest(&self, domain: &[u8], value: &str) -> Digest {
        let mut mac = self.0.clone();
        mac.update(domain);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Digest of a record key value (an id or tracking number).
    pub fn record(&self, value: &str) -> Digest {
        self.digest(b"record\0", value)
    }

    /// Digest of a recipient identifier, normalised first.
    pub fn recipient(&self, identifier: &str) -> Digest {
        self.digest(b"recipient\0", &normalize_identifier(identifier))
    }
}

/// E-mail addresses are trimmed and lower-cased; phone numbers reduced to `+` and digits; other
/// identifiers trimmed and lower-cased. The kind is read from the value, so any member name works.
pub fn normalize_identifier(value: &str) -> String {
    let trimmed = value.trim();
    let digits = trimmed.chars().filter(char::is_ascii_digit).count();
    let phone_like = trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if !trimmed.contains('@') && phone_like && digits >= 5 {
        trimmed
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect()
    } else {
        trimmed.to_lowercase()
    }
}

/// A record's controller and the recipients it was seen with.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
pub struct RecipientTag {
    /// Controlling client id.
    pub controller: Arc<str>,
    /// Unix seconds of the first sighting.
    pub first_seen: u64,
    /// Unix seconds of the latest sighting.
    pub last_seen: u64,
}

/// The tag tables.
pub struct Tags {
    key: TagKey,
    records: DashMap<Digest, RecordTag>,
    recipients: DashMap<Digest, Vec<RecipientTag>>,
}

/// How a record's controller was found (SPEC §4.2 order).
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

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tags {
    /// Empty tables keyed by `key`.
    pub fn new(key: &[u8]) -> Tags {
        Tags {
            key: TagKey::new(key),
            records: DashMap::new(),
            recipients: DashMap::new(),
        }
    }

    /// The digest function.
    pub fn key(&self) -> &TagKey {
        &self.key
    }

    /// The controller a record digest is tagged to.
    pub fn record_controller(&self, digest: &Digest) -> Option<Arc<str>> {
        self.records.get(digest).map(|t| t.controller.clone())
    }

    /// A record tag.
    pub fn record(&self, digest: &Digest) -> Option<RecordTag> {
        self.records.get(digest).map(|t| t.clone())
    }

    /// The controllers of a recipient digest.
    pub fn recipient(&self, digest: &Digest) -> Vec<RecipientTag> {
        self.recipients
            .get(digest)
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Number of record and recipient tags.
    pub fn counts(&self) -> (usize, usize) {
        (self.records.len(), self.recipients.len())
    }

    /// Tags each record key to `controller` unless it is tagged already (first controller wins),
    /// refreshing last-seen and adding `recipients` when it is `controller`'s. Returns how many
    /// tags were written.
    pub fn tag_record(
        &self,
        keys: &[Digest],
        controller: &Arc<str>,
        recipients: &[Digest],
        now: u64,
    ) -> usize {
        let mut written = 0;
        for key in keys {
            let mut entry = self.records.entry(*key).or_insert_with(|| RecordTag {
                controller: controller.clone(),
                first_seen: now,
                last_seen: now,
                recipients: Vec::new(),
            });
            if entry.controller != *controller {
                continue;
            }
            entry.last_seen = entry.last_seen.max(now);
            for r in recipients {
                if !entry.recipients.contains(r) {
                    entry.recipients.push(*r);
                }
            }
            written += 1;
        }
        written
    }

    /// Tags each recipient digest to `controller` (adding it beside other controllers). Returns
    /// how many tags were written.
    pub fn tag_recipients(&self, recipients: &[Digest], controller: &Arc<str>, now: u64) -> usize {
        for digest in recipients {
            let mut entry = self.recipients.entry(*digest).or_default();
            match entry.iter_mut().find(|t| t.controller == *controller) {
                Some(tag) => tag.last_seen = tag.last_seen.max(now),
                None => entry.push(RecipientTag {
                    controller: controller.clone(),
                    first_seen: now,
                    last_seen: now,
                }),
            }
        }
        recipients.len()
    }

    /// Finds each record's controller in SPEC §4.2 order and the digests to tag.
    /// `created` marks a response to a create: its single record is the caller's.
    pub fn resolve(
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
        records
            .iter()
            .map(|&node| {
                let keys: Vec<Digest> = route
                    .record_keys
                    .iter()
                    .filter_map(|name| doc.member(node, name))
                    .filter_map(|value| scalar_text(doc, value))
                    .map(|value| self.key.record(&value))
                    .collect();
                let recipients = self.recipient_digests(route, doc, node);
                let tagged = keys
                    .iter()
                    .find_map(|k| self.record_controller(k))
                    .and_then(|id| known_customer(&id));
                let member = || {
                    let name = route.controller_member.as_deref()?;
                    let value = doc.str_value(doc.member(node, name)?)?;
                    known_customer(&value)
                };
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
                Resolved {
                    node,
                    controller,
                    source,
                    keys,
                    recipients,
                }
            })
            .collect()
    }

    fn recipient_digests(&self, route: &Route, doc: &Document<'_>, record: NodeId) -> Vec<Digest> {
        let Some(recipient) = route
            .recipient
            .as_deref()
            .and_then(|name| doc.member(record, name))
        else {
            return Vec::new();
        };
        route
            .recipient_identifiers
            .iter()
            .filter_map(|name| doc.member(recipient, name))
            .filter_map(|value| doc.str_value(value))
            .filter(|value| !value.trim().is_empty())
            .map(|value| self.key.recipient(&value))
            .collect()
    }

    /// Writes the tags of resolved records: recipients in both directions, record keys only from
    /// responses (where the upstream assigned them). Returns (record, recipient) tags written.
    pub fn write(&self, resolved: &[Resolved], direction: Direction, now: u64) -> (usize, usize) {
        let mut written = (0, 0);
        for record in resolved {
            let Some(controller) = &record.controller else {
                continue;
            };
            if direction == Direction::Response {
                written.0 += self.tag_record(&record.keys, controller, &record.recipients, now);
            }
            written.1 += self.tag_recipients(&record.recipients, controller, now);
        }
        written
    }
}

/// A string's value or a number's text: what a record key can be.
fn scalar_text<'a>(doc: &Document<'a>, node: NodeId) -> Option<std::borrow::Cow<'a, str>> {
    match doc.node(node).kind {
        Kind::String => doc.str_value(node),
        Kind::Number => std::str::from_utf8(doc.raw(node))
            .ok()
            .map(std::borrow::Cow::Borrowed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_normalise_by_shape() {
        let cases = [
            ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
            ("+1 (415) 555-0101", "+14155550101"),
            ("+44 20 7946 0958", "+442079460958"),
            ("0049.30.1234", "0049301234"),
            ("1234", "1234"),
            ("Customer-REF-9", "customer-ref-9"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_identifier(input), expected, "{input}");
        }
        let key = TagKey::new(b"k");
        assert_eq!(key.recipient("JANE@x.com "), key.recipient("jane@x.com"));
        assert_ne!(
            key.recipient("jane@x.com"),
            key.record("jane@x.com"),
            "domains are separate"
        );
    }

    #[test]
    fn first_controller_wins_and_recipients_accumulate() {
        let tags = Tags::new(b"key");
        let (acme, globex): (Arc<str>, Arc<str>) = ("acme".into(), "globex".into());
        let k = tags.key().record("shp_1");
        let r1 = tags.key().recipient("a@x");
        let r2 = tags.key().recipient("b@x");
        assert_eq!(tags.tag_record(&[k], &acme, &[r1], 100), 1);
        assert_eq!(
            tags.tag_record(&[k], &globex, &[r2], 200),
            0,
            "no re-tagging by traffic"
        );
        assert_eq!(tags.tag_record(&[k], &acme, &[r2], 300), 1);
        let tag = tags.record(&k).unwrap();
        assert_eq!(&*tag.controller, "acme");
        assert_eq!((tag.first_seen, tag.last_seen), (100, 300));
        assert_eq!(tag.recipients, vec![r1, r2]);

        tags.tag_recipients(&[r1], &acme, 100);
        tags.tag_recipients(&[r1], &globex, 150);
        tags.tag_recipients(&[r1], &acme, 400);
        let controllers = tags.recipient(&r1);
        assert_eq!(controllers.len(), 2);
        assert_eq!(controllers[0].last_seen, 400);
        assert_eq!(tags.counts(), (1, 1));
    }
}
