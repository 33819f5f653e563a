//! The tag keys: identifiers to HMAC digests, memoised per thread, under the current key and
//! the previous ones a rotation keeps.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::store::Digest;

type HmacSha256 = Hmac<Sha256>;

/// The keyed hash that turns identifiers into tag digests.
///
/// HMAC-SHA-256 costs two SHA-256 blocks per value, and a list response has several identifiers
/// per record, so digests of recently seen values are memoised. The memo is keyed by a 128-bit
/// fingerprint under this key's own random SipHash keys, never by the value itself: it holds no
/// more than the tags do.
#[derive(Clone)]
pub struct TagKey {
    mac: HmacSha256,
    /// Per-instance random SipHash keys for memo fingerprints. Since every `TagKey` has its own,
    /// one memo per thread serves them all: another key's fingerprints never match.
    fingerprint: (u64, u64),
}

/// Most memoised digests per thread (about 5 MB); past it the memo starts over.
const MEMO_LIMIT: usize = 50_000;

thread_local! {
    /// Recently computed digests by fingerprint. One per thread, not one shared map: every
    /// request of a busy route looks up the same values, and a shared map's locks made the
    /// worker threads contend for the same cache lines.
    static MEMO: RefCell<HashMap<u128, Digest, BuildHasherDefault<PrehashedHasher>>> =
        RefCell::new(HashMap::default());
}

impl TagKey {
    /// Keys digests with the configured tag key.
    pub fn new(key: &[u8]) -> TagKey {
        TagKey {
            mac: HmacSha256::new_from_slice(key).expect("HMAC takes any key length"),
            fingerprint: rand::random(),
        }
    }

    fn hmac(&self, domain: &[u8], value: &str) -> Digest {
        let mut mac = self.mac.clone();
        mac.update(domain);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The digest of `value` in `domain`, through the memo; `normalise` runs only on a miss.
    fn memoised(&self, domain: &[u8], value: &str, normalise: fn(&str) -> String) -> Digest {
        let mut hasher = SipHasher13::new_with_keys(self.fingerprint.0, self.fingerprint.1);
        hasher.write(domain);
        hasher.write(value.as_bytes());
        let key = hasher.finish128().as_u128();
        if let Some(digest) = MEMO.with_borrow(|memo| memo.get(&key).copied()) {
            return digest;
        }
        let digest = self.hmac(domain, &normalise(value));
        MEMO.with_borrow_mut(|memo| {
            if memo.len() >= MEMO_LIMIT {
                memo.clear();
            }
            memo.insert(key, digest);
        });
        digest
    }

    /// Digest of a record key value (an id or tracking number).
    pub fn record(&self, value: &str) -> Digest {
        self.memoised(b"record\0", value, str::to_string)
    }

    /// Digest of a recipient identifier, normalised first.
    pub fn recipient(&self, identifier: &str) -> Digest {
        self.memoised(b"recipient\0", identifier, normalize_identifier)
    }

    /// [`TagKey::record`] without the memo, for values seen once (an import's history).
    pub fn record_once(&self, value: &str) -> Digest {
        self.hmac(b"record\0", value)
    }

    /// [`TagKey::recipient`] without the memo, for values seen once.
    pub fn recipient_once(&self, identifier: &str) -> Digest {
        self.hmac(b"recipient\0", &normalize_identifier(identifier))
    }
}

/// The current tag key and the earlier ones still honoured: the unit a rotation changes.
///
/// Tags are written under `current` only. Lookups try `current` first and the previous keys
/// only when it finds nothing, so a record the cache knows costs no more with previous keys
/// configured; erasure and privacy requests use every key.
pub struct KeyRing {
    /// The key new tags are written under.
    pub current: TagKey,
    /// Earlier keys, newest first.
    pub previous: Vec<TagKey>,
}

impl KeyRing {
    /// A ring of `current` and the `previous` keys, newest first.
    pub fn new<'k>(current: &[u8], previous: impl IntoIterator<Item = &'k [u8]>) -> KeyRing {
        KeyRing {
            current: TagKey::new(current),
            previous: previous.into_iter().map(TagKey::new).collect(),
        }
    }

    /// [`TagKey::record`] under the current key.
    pub fn record(&self, value: &str) -> Digest {
        self.current.record(value)
    }

    /// [`TagKey::recipient`] under the current key.
    pub fn recipient(&self, identifier: &str) -> Digest {
        self.current.recipient(identifier)
    }

    /// The digests of a record key value under every key, current first.
    pub fn record_all(&self, value: &str) -> Vec<Digest> {
        self.keys().map(|key| key.record(value)).collect()
    }

    /// The digests of a recipient identifier under every key, current first.
    pub fn recipient_all(&self, identifier: &str) -> Vec<Digest> {
        self.keys().map(|key| key.recipient(identifier)).collect()
    }

    fn keys(&self) -> impl Iterator<Item = &TagKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

/// A hasher for keys that are already uniformly random (digests, fingerprints): it keeps their
/// first eight bytes instead of hashing them again.
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(head);
    }

    fn write_u128(&mut self, value: u128) {
        self.0 ^= value as u64;
    }

    // Length prefixes of slices and arrays carry no entropy.
    fn write_usize(&mut self, _: usize) {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memoised_digests_equal_the_hmac_and_normalise_identifiers() {
        let key = TagKey::new(b"memo-test-key-0123456789");
        let direct = key.hmac(b"recipient\0", "jane@example.com");
        // First computed, then from the memo: the same digest, normalised either way.
        assert_eq!(key.recipient("Jane@Example.com "), direct);
        assert_eq!(key.recipient("Jane@Example.com "), direct);
        assert_eq!(key.recipient("jane@example.com"), direct);
        assert_eq!(key.record("1ZACME"), key.hmac(b"record\0", "1ZACME"));
        assert_eq!(key.record_once("1ZACME"), key.record("1ZACME"));
        assert_eq!(key.recipient_once("Jane@Example.com "), direct);
        assert_ne!(key.record("jane@example.com"), direct, "domains stay apart");
        // Another key never shares a memo entry.
        let other = TagKey::new(b"memo-test-key-9876543210");
        assert_ne!(other.recipient("jane@example.com"), direct);
        for i in 0..MEMO_LIMIT + 10 {
            key.record(&i.to_string());
        }
        let size = MEMO.with_borrow(HashMap::len);
        assert!(size <= MEMO_LIMIT, "the memo stays bounded: {size}");
        assert_eq!(key.recipient("JANE@example.com"), direct);
    }

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
}
