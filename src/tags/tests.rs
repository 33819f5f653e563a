//! The cache and the writer over a memory store and a failing one.

use std::time::Duration;

use super::queue::Class;
use super::writer::QUEUE_LIMIT;
use super::*;
use crate::store::faulty::FaultyStore;
use crate::store::memory::MemoryStore;
use crate::vocabulary::Direction;

/// Entries per cache table: more than any test writes, as in production.
const CACHE: usize = 1_000_000;

fn resolved(keys: &[Digest], controller: &str, recipients: &[Digest]) -> Resolved {
    Resolved {
        node: 0,
        controller: Some(controller.into()),
        source: Source::Caller,
        keys: keys.to_vec(),
        recipients: recipients.to_vec(),
        rekeyed: false,
    }
}

#[tokio::test]
async fn first_controller_wins_in_cache_and_store() {
    let store = Arc::new(MemoryStore::new());
    let tags = Tags::new(KeyRing::new(b"key", []), CACHE, store.clone());
    let k = tags.keys().record("shp_1");
    let (r1, r2) = (tags.keys().recipient("a@x"), tags.keys().recipient("b@x"));
    assert_eq!(
        tags.write(&[resolved(&[k], "acme", &[r1])], Direction::Response, 100)
            .counts(),
        (1, 1)
    );
    // Globex's sighting of acme's record changes nothing in the store but tags r2 to globex.
    assert_eq!(
        tags.write(&[resolved(&[k], "globex", &[r2])], Direction::Response, 200)
            .counts(),
        (0, 1)
    );
    // Acme again within the refresh period: nothing new, nothing written.
    assert_eq!(
        tags.write(&[resolved(&[k], "acme", &[r1])], Direction::Response, 300)
            .counts(),
        (0, 0)
    );
    // A new recipient, and later a stale last-seen, are written.
    assert_eq!(
        tags.write(&[resolved(&[k], "acme", &[r2])], Direction::Response, 400)
            .counts(),
        (1, 1)
    );
    tags.write(
        &[resolved(&[k], "acme", &[r2])],
        Direction::Response,
        10_000,
    );
    // Request bodies never tag record keys.
    assert_eq!(
        tags.write(&[resolved(&[k], "globex", &[])], Direction::Request, 20_000)
            .counts(),
        (0, 0)
    );
    let cached = tags.record(&k).await.unwrap();
    assert_eq!(&*cached.controller, "acme");
    assert_eq!((cached.first_seen, cached.last_seen), (100, 10_000));
    assert_eq!(cached.recipients, vec![r1, r2]);
    assert_eq!(tags.recipient(&r2).await.len(), 2, "acme and globex");

    // The store gets the same after a flush.
    assert!(tags.pending() > 0);
    tags.flush().await.unwrap();
    assert_eq!(tags.pending(), 0);
    let stored = store.record(k).await.unwrap().unwrap();
    assert_eq!((&*stored.controller, stored.last_seen), ("acme", 10_000));
}

#[tokio::test(start_paused = true)]
async fn misses_are_read_through_and_expire_quickly() {
    let store = Arc::new(MemoryStore::new());
    let tags = Tags::new(KeyRing::new(b"key", []), CACHE, store.clone());
    let k = tags.keys().record("shp_9");
    assert!(tags.record(&k).await.is_none());
    // Another gateway writes the tag to the shared store.
    store
        .write(vec![TagWrite::Record {
            digest: k,
            controller: "acme".into(),
            recipients: vec![],
            seen: 1,
        }])
        .await
        .unwrap();
    assert!(
        tags.record(&k).await.is_none(),
        "the miss is trusted briefly"
    );
    tokio::time::advance(MISS_TTL + Duration::from_millis(1)).await;
    assert_eq!(&*tags.record(&k).await.unwrap().controller, "acme");
}

#[tokio::test]
async fn a_rotated_out_key_leaves_tags_nothing_refreshes_and_retention_purges_them() {
    let store = Arc::new(MemoryStore::new());
    let tags = Tags::new(
        KeyRing::new(b"first-tag-key-0123", []),
        CACHE,
        store.clone(),
    );
    let before = tags.keys().record("shp_old");
    tags.write(
        &[resolved(&[before], "acme", &[])],
        Direction::Response,
        1_000,
    );
    tags.flush().await.unwrap();
    // Rotated: the old key is a previous one, so its tag is still found by its digest.
    tags.rotate(KeyRing::new(
        b"second-tag-key-0123",
        [b"first-tag-key-0123".as_slice()],
    ));
    let ring = tags.keys();
    assert_ne!(ring.record("shp_old"), before);
    assert_eq!(ring.record_all("shp_old")[1], before);
    // Removed: no digest the ring computes names that tag any more; nothing refreshes its
    // last-seen, and retention deletes it like any tag not seen for the period.
    tags.rotate(KeyRing::new(b"second-tag-key-0123", []));
    assert!(!tags.keys().record_all("shp_old").contains(&before));
    let deleted = tags.expire(2_000).await.unwrap();
    assert_eq!(deleted.records, 1);
    assert_eq!(store.counts().await.unwrap().0, 0);
}

#[tokio::test]
async fn expiry_deletes_exactly_the_old_tags_from_store_and_cache() {
    let store = Arc::new(MemoryStore::new());
    let tags = Tags::new(KeyRing::new(b"key", []), CACHE, store.clone());
    let (old, fresh) = (tags.keys().record("old"), tags.keys().record("fresh"));
    tags.write(&[resolved(&[old], "acme", &[])], Direction::Response, 1_000);
    tags.write(
        &[resolved(&[fresh], "acme", &[])],
        Direction::Response,
        5_000,
    );
    tags.flush().await.unwrap();
    let deleted = tags.expire(3_000).await.unwrap();
    assert_eq!(deleted.records, 1);
    assert!(tags.record(&old).await.is_none());
    assert!(tags.record(&fresh).await.is_some());
    assert_eq!(store.counts().await.unwrap().0, 1);
}

#[tokio::test]
async fn a_list_is_looked_up_in_one_round_trip() {
    let store = Arc::new(FaultyStore::new());
    let keys: Vec<Digest> = (0..40u8).map(|i| [i; 32]).collect();
    store
        .write(vec![TagWrite::Record {
            digest: keys[3],
            controller: "acme".into(),
            recipients: vec![],
            seen: 1,
        }])
        .await
        .unwrap();
    let tags = Tags::new(KeyRing::new(b"key", []), CACHE, store.clone());
    tags.preload(&keys).await;
    for key in &keys {
        let expected = (*key == keys[3]).then(|| Arc::<str>::from("acme"));
        assert_eq!(tags.record_controller(key).await, expected);
    }
    assert_eq!(store.batched_lookups(), 1);
    assert_eq!(
        store.single_lookups(),
        0,
        "every answer came from the preload"
    );
    // Fresh answers are not asked again.
    tags.preload(&keys).await;
    assert_eq!(store.batched_lookups(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_nothing_and_holds_responses_until_there_is_room() {
    let tags = Arc::new(Tags::new(
        KeyRing::new(b"key", []),
        CACHE,
        Arc::new(MemoryStore::new()),
    ));
    let controller: Arc<str> = "acme".into();
    let mut queue = Vec::new();
    for i in 0..QUEUE_LIMIT as u32 + 5 {
        let mut digest = [0; 32];
        digest[..4].copy_from_slice(&i.to_be_bytes());
        queue.push((
            Class::New,
            TagWrite::Recipient {
                digest,
                controller: controller.clone(),
                seen: 1,
            },
        ));
    }
    let mut written = Written::default();
    tags.enqueue(queue, &mut written);
    assert!(written.crowded);
    assert_eq!(tags.pending(), QUEUE_LIMIT + 5, "nothing dropped");

    // The response waits until the writer makes room.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let settle = tokio::spawn({
        let tags = tags.clone();
        async move { tags.settle(&written, deadline).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!settle.is_finished(), "held while the queue is full");
    tags.flush().await.unwrap();
    settle.await.unwrap().unwrap();
    assert_eq!(tags.store.counts().await.unwrap().1, QUEUE_LIMIT as u64 + 5);
}

#[tokio::test(start_paused = true)]
async fn a_created_record_is_committed_before_its_response_is_released() {
    let tags = Arc::new(Tags::new(
        KeyRing::new(b"key", []),
        CACHE,
        Arc::new(MemoryStore::new()),
    ));
    let k = tags.keys().record("shp_new");
    let created = tags.write(&[resolved(&[k], "acme", &[])], Direction::Response, 1);
    assert_eq!(created.counts(), (1, 0));
    assert!(created.durable.is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let settle = tokio::spawn({
        let tags = tags.clone();
        async move { tags.settle(&created, deadline).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!settle.is_finished(), "held until committed");
    tags.flush().await.unwrap();
    settle.await.unwrap().unwrap();
    assert!(tags.store.record(k).await.unwrap().is_some());

    // A controller_member sighting is written behind: nothing to wait for.
    let mut member = resolved(&[tags.keys().record("shp_seen")], "acme", &[]);
    member.source = Source::Member;
    let seen = tags.write(&[member], Direction::Response, 1);
    assert_eq!(seen.durable, None);
    tags.settle(&seen, deadline).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_create_the_store_cannot_commit_is_an_error_at_the_deadline() {
    let tags = Tags::new(
        KeyRing::new(b"key", []),
        CACHE,
        Arc::new(FaultyStore::down()),
    );
    let created = tags.write(
        &[resolved(&[tags.keys().record("shp_new")], "acme", &[])],
        Direction::Response,
        1,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    assert!(tags.flush().await.is_err());
    assert!(tags.settle(&created, deadline).await.is_err());
    assert_eq!(tags.pending(), 1, "still queued for when the store is back");
}

#[tokio::test]
async fn a_failing_store_means_unknown_controllers_and_kept_writes() {
    let store = Arc::new(FaultyStore::down());
    let tags = Tags::new(KeyRing::new(b"key", []), CACHE, store.clone());
    let k = tags.keys().record("x");
    assert!(
        tags.record(&k).await.is_none(),
        "no controller known: the lookup answers with what the cache has"
    );
    assert!(!tags.healthy());
    assert!(!tags.check().await);
    tags.write(&[resolved(&[k], "acme", &[])], Direction::Response, 1);
    assert!(tags.flush().await.is_err());
    assert_eq!(
        tags.pending(),
        1,
        "the batch waits for the store to come back"
    );
    // Tags written through this gateway are still honoured from its cache.
    assert_eq!(&*tags.record(&k).await.unwrap().controller, "acme");

    // The store comes back: the kept batch is written, and the store is healthy again.
    store.set_down(false);
    tags.flush().await.unwrap();
    assert_eq!(tags.pending(), 0);
    assert!(tags.healthy());
    let stored = store.record(k).await.unwrap().unwrap();
    assert_eq!(&*stored.controller, "acme");
}
