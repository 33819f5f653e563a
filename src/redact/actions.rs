//! What each action writes in place of a selected value.

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::rule::{Action, Rule};
use crate::json::{Document, Edit, Kind, NodeId};

/// The JSON that `redact` writes.
pub const REDACTED: &[u8] = b"\"[REDACTED]\"";

type HmacSha256 = Hmac<Sha256>;

/// Per-controller keys for the `hash` action, derived from the tag key so that the same value
/// gets unrelated pseudonyms under two controllers (no linking across customers).
#[derive(Clone, Default)]
pub struct HashKeys {
    keys: HashMap<String, HmacSha256>,
}

impl std::fmt::Debug for HashKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashKeys")
            .field("controllers", &self.keys.len())
            .finish()
    }
}

impl HashKeys {
    /// Derives `HMAC(tag_key, "hash-key\0" + id)` for each controller id.
    pub fn derive<'a>(tag_key: &[u8], controllers: impl IntoIterator<Item = &'a str>) -> HashKeys {
        let keys = controllers
            .into_iter()
            .map(|id| {
                let mut mac =
                    HmacSha256::new_from_slice(tag_key).expect("HMAC takes any key length");
                mac.update(b"hash-key\0");
                mac.update(id.as_bytes());
                let derived = mac.finalize().into_bytes();
                let keyed =
                    HmacSha256::new_from_slice(&derived).expect("HMAC takes any key length");
                (id.to_string(), keyed)
            })
            .collect();
        HashKeys { keys }
    }

    /// `h:` + 32 hex digits of HMAC-SHA-256 under the controller's key, or `None` for a controller
    /// without a key.
    pub fn pseudonym(&self, controller: &str, value: &[u8]) -> Option<String> {
        let mut mac = self.keys.get(controller)?.clone();
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        Some(format!("h:{}", hex::encode(&digest[..16])))
    }
}

/// The edit `rule` makes to `node`, and the action it amounts to.
pub fn edit(
    rule: &Rule,
    doc: &Document<'_>,
    node: NodeId,
    controller: Option<&str>,
    keys: &HashKeys,
) -> (Edit, Action) {
    let redacted = (Edit::Replace(REDACTED.into()), Action::Redact);
    match rule.action {
        Action::Remove => (Edit::Remove, Action::Remove),
        Action::Redact => redacted,
        Action::Mask => match doc.str_value(node) {
            Some(value) => {
                let masked = mask(&value, rule.mask.0, rule.mask.1);
                (Edit::Replace(json_string(&masked).into()), Action::Mask)
            }
            None => redacted,
        },
        Action::Hash => {
            // Strings are hashed by their value, anything else by its JSON text.
            let value = match doc.node(node).kind {
                Kind::String => doc.str_value(node).map(|v| v.into_owned().into_bytes()),
                _ => Some(doc.raw(node).to_vec()),
            };
            match (controller, value) {
                (Some(controller), Some(value)) => match keys.pseudonym(controller, &value) {
                    Some(pseudonym) => {
                        (Edit::Replace(json_string(&pseudonym).into()), Action::Hash)
                    }
                    None => redacted,
                },
                _ => redacted,
            }
        }
    }
}

/// Keeps `first` leading and `last` trailing characters, the rest become `*`. A value too short
/// to hide anything between them is masked whole.
pub fn mask(value: &str, first: usize, last: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if first + last >= chars.len() {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i < first || i >= chars.len() - last {
                c
            } else {
                '*'
            }
        })
        .collect()
}

fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).expect("strings serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_table() {
        let cases = [
            ("94105", 3, 0, "941**"),
            ("94105", 0, 2, "***05"),
            ("94105", 2, 2, "94*05"),
            ("94105", 3, 2, "*****"),
            ("ab", 1, 1, "**"),
            ("", 2, 0, ""),
            ("Zürich", 2, 0, "Zü****"),
            ("anything", 0, 0, "********"),
        ];
        for (value, first, last, expected) in cases {
            assert_eq!(mask(value, first, last), expected, "{value} {first} {last}");
        }
    }

    #[test]
    fn pseudonyms_are_stable_per_controller_and_unlinkable_across() {
        let keys = HashKeys::derive(b"tag-key-0123456789", ["acme", "globex"]);
        let a1 = keys.pseudonym("acme", b"jane@example.com").unwrap();
        let a2 = keys.pseudonym("acme", b"jane@example.com").unwrap();
        let g = keys.pseudonym("globex", b"jane@example.com").unwrap();
        assert_eq!(a1, a2);
        assert_ne!(a1, g);
        assert_eq!(a1.len(), 34);
        assert!(a1.starts_with("h:") && a1[2..].chars().all(|c| c.is_ascii_hexdigit()));
        assert!(keys.pseudonym("unknown", b"x").is_none());
        let other = HashKeys::derive(b"another-tag-key-01", ["acme"]);
        assert_ne!(other.pseudonym("acme", b"jane@example.com").unwrap(), a1);
    }
}
