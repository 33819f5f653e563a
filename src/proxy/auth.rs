//! API-key authentication: the credential a request presents (`Authorization: Bearer` or
//! `X-Api-Key`, one key however often repeated), and the client owning it by SHA-256, compared
//! in constant time.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Client;

/// `X-Api-Key`: the second accepted credential header.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The API key a request presents.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No credential header at all.
    Absent,
    /// One key (possibly repeated identically).
    Key(&'a [u8]),
    /// Different keys, or a credential header that cannot be read: refused with 400.
    Ambiguous,
}

/// Reads `Authorization: Bearer <key>` and `X-Api-Key: <key>`. A non-Bearer `Authorization` is
/// not a credential of ours (it is still removed before forwarding).
pub fn credential(headers: &HeaderMap) -> Credential<'_> {
    let mut found: Option<&[u8]> = None;
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| {
            let bytes = v.as_bytes();
            let scheme_end = bytes.iter().position(|b| *b == b' ')?;
            bytes[..scheme_end]
                .eq_ignore_ascii_case(b"bearer")
                .then(|| trim(&bytes[scheme_end + 1..]))
        });
    let api_keys = headers
        .get_all(&X_API_KEY)
        .iter()
        .map(|v| trim(v.as_bytes()));
    for key in bearer.chain(api_keys) {
        if key.is_empty() {
            return Credential::Ambiguous;
        }
        match found {
            Some(previous) if previous != key => return Credential::Ambiguous,
            _ => found = Some(key),
        }
    }
    found.map_or(Credential::Absent, Credential::Key)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The client owning `key`, if any. Every configured digest is compared, with no early exit, so
/// the time taken does not depend on which client (if any) matched.
pub fn authenticate(clients: &[Arc<Client>], key: &[u8]) -> Option<Arc<Client>> {
    let digest: [u8; 32] = Sha256::digest(key).into();
    let mut found = None;
    for client in clients {
        for candidate in &client.key_digests {
            if bool::from(candidate.ct_eq(&digest)) {
                found = Some(client.clone());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientKind;
    use crate::proxy::header_map as map;

    #[test]
    fn credentials_table() {
        let cases: &[(&[(&str, &str)], Credential<'_>)] = &[
            (&[], Credential::Absent),
            (&[("authorization", "Bearer k1")], Credential::Key(b"k1")),
            (&[("authorization", "bearer  k1 ")], Credential::Key(b"k1")),
            (&[("x-api-key", "k1")], Credential::Key(b"k1")),
            (
                &[("authorization", "Bearer k1"), ("x-api-key", "k1")],
                Credential::Key(b"k1"),
            ),
            (
                &[("authorization", "Bearer k1"), ("x-api-key", "k2")],
                Credential::Ambiguous,
            ),
            (
                &[("x-api-key", "k1"), ("x-api-key", "k2")],
                Credential::Ambiguous,
            ),
            (
                &[
                    ("authorization", "Bearer k1"),
                    ("authorization", "Bearer k2"),
                ],
                Credential::Ambiguous,
            ),
            (
                &[("authorization", "Basic dXNlcjpwYXNz")],
                Credential::Absent,
            ),
            (&[("x-api-key", "")], Credential::Ambiguous),
        ];
        for (headers, expected) in cases {
            assert_eq!(&credential(&map(headers)), expected, "{headers:?}");
        }
    }

    fn client(id: &str, keys: &[&str]) -> Arc<Client> {
        Arc::new(Client {
            id: id.into(),
            index: 0,
            kind: ClientKind::Customer,
            name: id.into(),
            key_digests: keys
                .iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
            privacy_contact: None,
            webhook: None,
        })
    }

    #[test]
    fn finds_the_owner_of_a_key() {
        let clients = [client("acme", &["a1", "a2"]), client("globex", &["g1"])];
        assert_eq!(&*authenticate(&clients, b"a2").unwrap().id, "acme");
        assert_eq!(&*authenticate(&clients, b"g1").unwrap().id, "globex");
        assert!(authenticate(&clients, b"a3").is_none());
        assert!(authenticate(&clients, b"").is_none());
    }
}
