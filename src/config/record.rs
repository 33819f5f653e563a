//! What a record is made of, by its route's definition: the values of its `record_keys`, its
//! recipient's identifiers, and the customer its `controller_member` names. One definition for
//! live traffic (controller resolution) and `tags import` alike.

use std::borrow::Cow;
use std::sync::Arc;

use super::{ClientKind, Config, Route};
use crate::json::{Document, Kind, NodeId};

impl Route {
    /// The values of a record's `record_keys` members (strings, or numbers as written).
    pub fn record_key_values<'d, 'a>(
        &'d self,
        doc: &'d Document<'a>,
        record: NodeId,
    ) -> impl Iterator<Item = Cow<'a, str>> + 'd {
        self.record_keys
            .iter()
            .filter_map(move |name| doc.member(record, name))
            .filter_map(|value| scalar_text(doc, value))
    }

    /// The values of the `recipient_identifiers` of a record's `recipient`, blanks left out.
    pub fn recipient_identifier_values<'d, 'a>(
        &'d self,
        doc: &'d Document<'a>,
        record: NodeId,
    ) -> impl Iterator<Item = Cow<'a, str>> + 'd {
        let recipient = self
            .recipient
            .as_deref()
            .and_then(|name| doc.member(record, name));
        recipient
            .into_iter()
            .flat_map(move |recipient| {
                self.recipient_identifiers
                    .iter()
                    .filter_map(move |name| doc.member(recipient, name))
            })
            .filter_map(|value| doc.str_value(value))
            .filter(|value| !value.trim().is_empty())
    }
}

impl Config {
    /// The customer a record's `controller_member` names, if its route has one and it names a
    /// known customer (anything else names nobody).
    pub fn member_controller(
        &self,
        route: &Route,
        doc: &Document<'_>,
        record: NodeId,
    ) -> Option<Arc<str>> {
        let name = route.controller_member.as_deref()?;
        let value = doc.str_value(doc.member(record, name)?)?;
        self.known_customer(&value)
    }

    /// The id of the customer `id` names, if it is one (not an internal client, not unknown).
    pub fn known_customer(&self, id: &str) -> Option<Arc<str>> {
        self.client(id)
            .filter(|c| c.kind == ClientKind::Customer)
            .map(|c| c.id.clone())
    }
}

/// A string's value or a number's text: what a record key can be.
fn scalar_text<'a>(doc: &Document<'a>, node: NodeId) -> Option<Cow<'a, str>> {
    match doc.node(node).kind {
        Kind::String => doc.str_value(node),
        Kind::Number => std::str::from_utf8(doc.raw(node)).ok().map(Cow::Borrowed),
        _ => None,
    }
}
