//! What every backend must do, as one scenario each backend's tests run.

use std::sync::Arc;

use super::{Deleted, RecordTag, Store, TagWrite};

fn record(digest: u8, controller: &Arc<str>, recipients: &[u8], seen: u64) -> TagWrite {
    TagWrite::Record {
        digest: [digest; 32],
        controller: controller.clone(),
        recipients: recipients.iter().map(|r| [*r; 32]).collect(),
        seen,
    }
}

fn recipient(digest: u8, controller: &Arc<str>, seen: u64) -> TagWrite {
    TagWrite::Recipient {
        digest: [digest; 32],
        controller: controller.clone(),
        seen,
    }
}

/// Runs the scenario against an empty store.
pub(crate) async fn run(store: &dyn Store) {
    let (acme, globex): (Arc<str>, Arc<str>) = ("acme".into(), "globex".into());
    store.ping().await.unwrap();
    assert_eq!(store.record([1; 32]).await.unwrap(), None);

    // First controller wins; its later sightings refresh and add recipients.
    store
        .write(vec![record(1, &acme, &[11], 100)])
        .await
        .unwrap();
    store
        .write(vec![record(1, &globex, &[12], 200)])
        .await
        .unwrap();
    store
        .write(vec![
            record(1, &acme, &[13], 300),
            record(1, &acme, &[13], 250),
        ])
        .await
        .unwrap();
    let tag = store.record([1; 32]).await.unwrap().unwrap();
    assert_eq!(&*tag.controller, "acme");
    assert_eq!((tag.first_seen, tag.last_seen), (100, 300));
    let mut recipients = tag.recipients.clone();
    recipients.sort();
    assert_eq!(
        recipients,
        vec![[11; 32], [13; 32]],
        "globex's recipient is not linked"
    );
    // The same, several keys at once; absent keys are left out.
    let mut many = store.records(vec![[9; 32], [1; 32]]).await.unwrap();
    assert_eq!(many.len(), 1);
    let (digest, mut batch_tag) = many.pop().unwrap();
    batch_tag.recipients.sort();
    assert_eq!(digest, [1; 32]);
    assert_eq!(batch_tag, RecordTag { recipients, ..tag });

    // A recipient may have several controllers.
    store
        .write(vec![
            recipient(11, &acme, 100),
            recipient(11, &globex, 150),
            recipient(11, &acme, 400),
        ])
        .await
        .unwrap();
    let mut tags = store.recipient([11; 32]).await.unwrap();
    tags.sort_by(|a, b| a.controller.cmp(&b.controller));
    assert_eq!(tags.len(), 2);
    assert_eq!(
        (&*tags[0].controller, tags[0].first_seen, tags[0].last_seen),
        ("acme", 100, 400)
    );
    assert_eq!((&*tags[1].controller, tags[1].last_seen), ("globex", 150));
    assert_eq!(store.counts().await.unwrap(), (1, 2));

    // Retention deletes exactly what was last seen before the cut, and is idempotent.
    let deleted = store.delete_expired(350, 100).await.unwrap();
    assert_eq!(
        deleted,
        Deleted {
            records: 1,
            recipients: 1
        }
    );
    assert_eq!(store.record([1; 32]).await.unwrap(), None);
    let left = store.recipient([11; 32]).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(&*left[0].controller, "acme");
    assert_eq!(
        store.delete_expired(350, 100).await.unwrap(),
        Deleted::default()
    );
    // The deleted record's recipient links went with it: tagged anew, it lists none.
    store
        .write(vec![record(1, &globex, &[], 10)])
        .await
        .unwrap();
    let retagged = store.record([1; 32]).await.unwrap().unwrap();
    assert_eq!(
        (&*retagged.controller, retagged.recipients.len()),
        ("globex", 0)
    );
    assert_eq!(
        store.delete_expired(20, 100).await.unwrap(),
        Deleted {
            records: 1,
            recipients: 0
        }
    );

    // Deletion goes in bounded batches.
    let batch: Vec<TagWrite> = (20..25).map(|d| record(d, &acme, &[], 10)).collect();
    store.write(batch).await.unwrap();
    let mut passes = Vec::new();
    loop {
        let deleted = store.delete_expired(20, 2).await.unwrap();
        if deleted.records == 0 {
            break;
        }
        passes.push(deleted.records);
    }
    assert_eq!(passes, vec![2, 2, 1]);
    assert_eq!(store.counts().await.unwrap(), (0, 1));
}
