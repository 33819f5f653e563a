//! What every backend must do, as one scenario each backend's tests run.

use std::sync::Arc;

use super::outbox::{
    Attempt, DeliveryStatus, MatchKeys, NewDelivery, NewRequest, Outbox, RequestType, Subject,
    UnmatchedCounts,
};
use super::rows::{Added, Rows};
use super::{Deleted, ImportMark, RecordTag, Store, TagWrite};

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
pub async fn run(store: &dyn Store) {
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

    // Erasure: only the instructing controller's tags of the person, and its records listing them.
    store
        .write(vec![
            record(30, &acme, &[31], 1000),
            record(32, &acme, &[33], 1000),
            record(34, &globex, &[31], 1000),
            recipient(31, &acme, 1000),
            recipient(31, &globex, 1000),
            recipient(33, &acme, 1000),
        ])
        .await
        .unwrap();
    let erased = store.erase(acme.clone(), vec![[31; 32]]).await.unwrap();
    assert_eq!(
        erased,
        Deleted {
            records: 1,
            recipients: 1
        }
    );
    assert_eq!(store.record([30; 32]).await.unwrap(), None);
    assert!(store.record([32; 32]).await.unwrap().is_some());
    assert_eq!(
        &*store.record([34; 32]).await.unwrap().unwrap().controller,
        "globex"
    );
    let left = store.recipient([31; 32]).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(&*left[0].controller, "globex");
    assert_eq!(
        store.erase(acme.clone(), vec![[31; 32]]).await.unwrap(),
        Deleted::default()
    );
    run_import(store).await;
}

/// Imports write what live sightings would, keep what the store holds, and say what they added.
async fn run_import(store: &dyn Store) {
    let (acme, globex): (Arc<str>, Arc<str>) = ("acme".into(), "globex".into());
    let mark = |line| ImportMark {
        name: "shipments:history.jsonl".into(),
        line,
    };
    assert_eq!(store.import_mark(mark(0).name).await.unwrap(), None);
    // Record 60 is globex's already; the import's claim on it changes nothing.
    store
        .write(vec![record(60, &globex, &[70], 5)])
        .await
        .unwrap();
    let batch = vec![
        record(62, &acme, &[71, 72], 50),
        record(61, &acme, &[71], 50),
        record(60, &acme, &[73], 50),
        recipient(71, &acme, 50),
        recipient(72, &acme, 50),
    ];
    let added = store
        .import(Rows::from_writes(&batch), mark(3))
        .await
        .unwrap();
    assert_eq!(
        added,
        Added {
            records: 2,
            recipients: 2
        }
    );
    assert_eq!(store.import_mark(mark(0).name).await.unwrap(), Some(3));
    let tag = store.record([62; 32]).await.unwrap().unwrap();
    assert_eq!((&*tag.controller, tag.recipients.len()), ("acme", 2));
    let held = store.record([60; 32]).await.unwrap().unwrap();
    assert_eq!((&*held.controller, held.last_seen), ("globex", 5));
    assert_eq!(held.recipients, vec![[70; 32]]);
    // The same batch again adds nothing and keeps every time as it was.
    let again = store
        .import(Rows::from_writes(&batch), mark(3))
        .await
        .unwrap();
    assert_eq!(again, Added::default());
    assert_eq!(store.record([62; 32]).await.unwrap().unwrap().last_seen, 50);
    // A new recipient of a record the import tagged is linked.
    let more = store
        .import(Rows::from_writes(&[record(61, &acme, &[72], 60)]), mark(4))
        .await
        .unwrap();
    assert_eq!(more.records, 1, "the record learnt a recipient");
    let mut listed = store.record([61; 32]).await.unwrap().unwrap().recipients;
    listed.sort();
    assert_eq!(listed, vec![[71; 32], [72; 32]]);
    assert_eq!(store.import_mark(mark(0).name).await.unwrap(), Some(4));
}

fn request(id: u8, at: u64, deliveries: &[(&Arc<str>, bool)]) -> NewRequest {
    NewRequest {
        id: [id; 16],
        kind: RequestType::Delete,
        received_at: at,
        // As the desk files them: no controller, no subject kept.
        subject: (!deliveries.is_empty()).then(|| Subject {
            email: Some(format!("person{id}@example.com")),
            ..Subject::default()
        }),
        deliveries: deliveries
            .iter()
            .map(|(c, verified)| NewDelivery {
                controller: (*c).clone(),
                verified: *verified,
                webhook_id: format!("msg_{id}_{c}"),
            })
            .collect(),
        unmatched: None,
    }
}

/// Runs the outbox scenario against an empty store.
pub async fn run_outbox(outbox: &dyn Outbox) {
    let (acme, globex, initech): (Arc<str>, Arc<str>, Arc<str>) =
        ("acme".into(), "globex".into(), "initech".into());
    assert_eq!(outbox.state([1; 16]).await.unwrap(), None);
    outbox
        .insert(request(1, 100, &[(&acme, true), (&globex, false)]))
        .await
        .unwrap();
    outbox
        .insert(request(2, 110, &[(&acme, false)]))
        .await
        .unwrap();
    outbox.insert(request(3, 120, &[])).await.unwrap();
    outbox
        .insert(request(4, 130, &[(&initech, false)]))
        .await
        .unwrap();
    let state = outbox.state([1; 16]).await.unwrap().unwrap();
    assert_eq!(state.received_at, 100);
    assert_eq!(state.deliveries.len(), 2);
    assert!(
        state
            .deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Pending)
    );
    assert!(
        outbox
            .state([3; 16])
            .await
            .unwrap()
            .unwrap()
            .deliveries
            .is_empty()
    );
    let backlog = outbox.backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.oldest), (4, Some(100)));

    // Claims: only listed controllers, only due ones, each once while leased.
    let with_webhooks = vec![acme.clone(), globex.clone()];
    assert!(
        outbox
            .claim(with_webhooks.clone(), 99, 200, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = outbox
        .claim(with_webhooks.clone(), 150, 200, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(
        claimed
            .iter()
            .all(|c| c.attempts == 1 && &*c.controller != "initech")
    );
    let first = claimed
        .iter()
        .find(|c| c.request_id == [1; 16] && &*c.controller == "acme");
    let first = first.unwrap().clone();
    assert!(first.verified);
    assert_eq!(first.webhook_id, "msg_1_acme");
    assert_eq!(first.kind, RequestType::Delete);
    assert_eq!(first.received_at, 100);
    assert_eq!(
        first.subject.as_ref().unwrap().email.as_deref(),
        Some("person1@example.com")
    );
    assert!(
        outbox
            .claim(with_webhooks.clone(), 150, 200, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased deliveries are not claimed twice"
    );

    // Outcomes need the claim; a retry comes back when due, with the same message id.
    assert!(
        !outbox
            .finish(
                [1; 16],
                acme.clone(),
                first.claim.wrapping_add(1),
                Attempt::Delivered { at: 151 }
            )
            .await
            .unwrap()
    );
    assert!(
        outbox
            .finish(
                [1; 16],
                acme.clone(),
                first.claim,
                Attempt::Retry {
                    at: 151,
                    next: 300,
                    error: "status 503".into()
                }
            )
            .await
            .unwrap()
    );
    for c in claimed
        .iter()
        .filter(|c| c.request_id != [1; 16] || &*c.controller != "acme")
    {
        let done = if c.request_id == [2; 16] {
            Attempt::Dead {
                at: 152,
                error: "status 410".into(),
            }
        } else {
            Attempt::Delivered { at: 152 }
        };
        assert!(
            outbox
                .finish(c.request_id, c.controller.clone(), c.claim, done)
                .await
                .unwrap()
        );
    }
    assert!(
        outbox
            .claim(with_webhooks.clone(), 299, 400, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = outbox
        .claim(with_webhooks.clone(), 300, 400, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].webhook_id.as_str(), again[0].attempts),
        ("msg_1_acme", 2)
    );
    // An expired lease is claimed again (the first claimer died).
    let retaken = outbox
        .claim(with_webhooks.clone(), 401, 500, 10)
        .await
        .unwrap();
    assert_eq!(retaken.len(), 1);
    assert_eq!(retaken[0].attempts, 3);
    assert!(
        !outbox
            .finish(
                [1; 16],
                acme.clone(),
                again[0].claim,
                Attempt::Delivered { at: 402 }
            )
            .await
            .unwrap(),
        "the first claimer lost its claim"
    );

    // Inbox: one controller's deliveries, filtered by status.
    let inbox = outbox.inbox(acme.clone(), None, 10).await.unwrap();
    let ids: Vec<_> = inbox.iter().map(|i| (i.request_id[0], i.status)).collect();
    assert_eq!(
        ids,
        vec![(1, DeliveryStatus::Pending), (2, DeliveryStatus::Dead)]
    );
    let dead = outbox
        .inbox(acme.clone(), Some(DeliveryStatus::Dead), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(!dead[0].verified);
    assert_eq!(
        outbox.inbox(globex.clone(), None, 10).await.unwrap().len(),
        1
    );
    assert_eq!(outbox.inbox(acme.clone(), None, 1).await.unwrap().len(), 1);

    // Acknowledgement: idempotent, stops retries, and unknown pairs are refused.
    assert!(
        outbox
            .acknowledge([1; 16], acme.clone(), 450)
            .await
            .unwrap()
    );
    assert!(
        outbox
            .acknowledge([1; 16], acme.clone(), 460)
            .await
            .unwrap()
    );
    assert!(
        !outbox
            .acknowledge([1; 16], initech.clone(), 450)
            .await
            .unwrap()
    );
    assert!(
        !outbox
            .acknowledge([9; 16], acme.clone(), 450)
            .await
            .unwrap()
    );
    assert!(
        !outbox
            .finish(
                [1; 16],
                acme.clone(),
                retaken[0].claim,
                Attempt::Delivered { at: 470 }
            )
            .await
            .unwrap(),
        "an acknowledged delivery is not touched by a late attempt"
    );
    let state = outbox.state([1; 16]).await.unwrap().unwrap();
    let mut statuses: Vec<_> = state.deliveries.iter().map(|d| d.status).collect();
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(
        statuses,
        vec![DeliveryStatus::Acknowledged, DeliveryStatus::Delivered]
    );
    assert_eq!(outbox.backlog().await.unwrap().pending, 1);

    // Retention erases subjects of settled requests only; the audit rows stay.
    assert_eq!(outbox.expire_subjects(450, 10).await.unwrap(), 0);
    assert_eq!(outbox.expire_subjects(461, 10).await.unwrap(), 1);
    let inbox = outbox.inbox(acme.clone(), None, 10).await.unwrap();
    assert_eq!(inbox[0].subject, None);
    assert_eq!(inbox[0].status, DeliveryStatus::Acknowledged);
    assert!(
        inbox[1].subject.is_some(),
        "a dead delivery keeps its subject"
    );
    assert_eq!(outbox.expire_subjects(10_000, 10).await.unwrap(), 0);
    run_unmatched(outbox).await;
}

/// Unmatched requests wait with their digests, get deliveries once matched, and expire.
async fn run_unmatched(outbox: &dyn Outbox) {
    let acme: Arc<str> = "acme".into();
    let keys = |n: u8| MatchKeys {
        identifiers: vec![[n; 32], [n + 1; 32]],
        tracking: if n.is_multiple_of(2) {
            vec![[n + 2; 32]]
        } else {
            Vec::new()
        },
    };
    for (id, at) in [(40u8, 1_000), (41, 2_000), (42, 3_000)] {
        let mut new = request(id, at, &[]);
        new.subject = Some(Subject {
            email: Some(format!("person{id}@example.com")),
            ..Subject::default()
        });
        new.unmatched = Some(keys(id));
        outbox.insert(new).await.unwrap();
    }
    assert_eq!(
        outbox.unmatched_counts().await.unwrap(),
        UnmatchedCounts {
            waiting: 3,
            expired: 0
        }
    );
    // Subject retention leaves a waiting request's fields alone.
    assert_eq!(outbox.expire_subjects(100_000, 10).await.unwrap(), 0);
    let waiting = outbox.waiting(None, 2).await.unwrap();
    assert_eq!(waiting.len(), 2);
    assert_eq!((waiting[0].id[0], waiting[0].received_at), (40, 1_000));
    assert_eq!(waiting[0].keys, keys(40));
    assert_eq!(waiting[1].keys, keys(41));
    let rest = outbox.waiting(Some(waiting[1].id), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id[0], 42);

    // A match hands the request to its controller, once.
    let delivery = || NewDelivery {
        controller: acme.clone(),
        verified: true,
        webhook_id: "msg_late".into(),
    };
    assert!(
        outbox
            .matched([41; 16], vec![delivery()], 5_000)
            .await
            .unwrap()
    );
    assert!(
        !outbox
            .matched([41; 16], vec![delivery()], 5_001)
            .await
            .unwrap()
    );
    let claimed = outbox
        .claim(vec![acme.clone()], 5_000, 5_100, 50)
        .await
        .unwrap();
    let late = claimed.iter().find(|c| c.request_id == [41; 16]).unwrap();
    assert!(late.verified);
    assert_eq!(
        late.subject.as_ref().unwrap().email.as_deref(),
        Some("person41@example.com")
    );

    // Past the window: fields and digests go, the entry stays for the privacy team.
    assert_eq!(outbox.expire_unmatched(2_500, 10).await.unwrap(), 1);
    assert_eq!(outbox.expire_unmatched(2_500, 10).await.unwrap(), 0);
    assert!(
        !outbox
            .matched([40; 16], vec![delivery()], 5_002)
            .await
            .unwrap()
    );
    let waiting = outbox.waiting(None, 10).await.unwrap();
    assert_eq!(waiting.iter().map(|w| w.id[0]).collect::<Vec<_>>(), [42]);
    let listed = outbox.unmatched(10).await.unwrap();
    let listed: Vec<_> = listed.iter().map(|e| (e.id[0], e.expired)).collect();
    assert_eq!(listed, [(40, true), (42, false)]);
    assert_eq!(
        outbox.unmatched_counts().await.unwrap(),
        UnmatchedCounts {
            waiting: 1,
            expired: 1
        }
    );
    assert_eq!(
        outbox.state([40; 16]).await.unwrap().unwrap().received_at,
        1_000
    );
}
