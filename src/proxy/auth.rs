//! API-key authentication: SHA-256 of the presented key, compared in constant time.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Client;

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
