//! Rotating the tag key under traffic, as an operator does it: a reload makes the current key a
//! previous one and sets a new one. Records keep their controllers (tags are found under the
//! previous key and written again under the new one), an erasure reaches tags written under the
//! old key, and a tracking number tagged under the old key still verifies a privacy request. Once
//! the old key is removed, what only it could find is unreachable.

mod common;

use common::{
    client::{Alpn, Client, post_json},
    config::{
        Edit, KEY_ACME, KEY_GLOBEX, SHIPPED_RULES, WEBHOOK_SECRET, shipments_route,
        with_privacy_contacts,
    },
    gateway::TestGateway,
    receiver::WebhookReceiver,
    upstream::MockUpstream,
};
use http::StatusCode;
use serde_json::json;

const OLD_KEY: &str = "test-tag-key-0123456789abcdef";
const NEW_KEY: &str = "rotated-tag-key-0123456789abcdef";

/// A gateway in front of the demo API whose records get their controllers from tags only (no
/// controller member): what a customer creates is theirs because the gateway remembers it.
async fn start() -> (
    TestGateway,
    WebhookReceiver,
    recipient_gateway::demo::SampleApi,
) {
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await;
    let sample = recipient_gateway::demo::start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (hook, api) = (receiver.addr, sample.addr);
    let gw = TestGateway::start_with(MockUpstream::start().await, move |base| {
        let base = with_privacy_contacts(&base, hook);
        let route = shipments_route(
            api,
            &format!("rules = [\"{SHIPPED_RULES}/recipient.toml\"]"),
        );
        format!("{base}{route}\n[privacy]\nrate_limit_per_minute = 1000\n")
    })
    .await;
    (gw, receiver, sample)
}

/// Acme creates a shipment to `email`; its id and tracking number.
async fn create(gw: &TestGateway, email: &str) -> (String, String) {
    let created = post_json(
        &mut gw.h1().await,
        "/v1/shipments",
        Some(KEY_ACME),
        &json!({"recipient": {"name": "R. Cipient", "email": email}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let record = created.json();
    (
        record["id"].as_str().unwrap().to_string(),
        record["tracking_number"].as_str().unwrap().to_string(),
    )
}

/// The recipient e-mail `key`'s caller is shown for shipment `id`.
async fn shown_email(client: &mut Client, id: &str, key: &str) -> String {
    let answer = client.get(&format!("/v1/shipments/{id}"), Some(key)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.json()["recipient"]["email"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn edit_config(gw: &TestGateway, edit: impl FnOnce(String) -> String) {
    let path = gw.dir.path().join("gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

#[tokio::test]
async fn the_tag_key_rotates_under_traffic_and_nothing_loses_its_controller() {
    let (gw, _receiver, _sample) = start().await;
    let read_after = "read.after@example.com";
    let (read, _) = create(&gw, read_after).await;
    let (proven, proven_tracking) = create(&gw, "proven@example.com").await;
    let (_, _) = create(&gw, "erased@example.com").await;
    let mut client = gw.h1().await;
    assert_eq!(shown_email(&mut client, &read, KEY_ACME).await, read_after);
    assert_ne!(
        shown_email(&mut client, &read, KEY_GLOBEX).await,
        read_after
    );

    // Traffic while the key rotates: every answer shows the e-mail to acme and only to acme.
    let addr = gw.addr;
    let ca = gw.dir.ca();
    let id = read.clone();
    let traffic = tokio::spawn(async move {
        let mut client = Client::connect(addr, &ca, Alpn::Http1).await;
        let mut wrong = Vec::new();
        for i in 0..60 {
            let (key, should_see) = if i % 2 == 0 {
                (KEY_ACME, true)
            } else {
                (KEY_GLOBEX, false)
            };
            let shown = shown_email(&mut client, &id, key).await;
            if (shown == read_after) != should_see {
                wrong.push((i, shown));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        wrong
    });
    gw.dir
        .write("dev.env", &format!("ROTATION_OLD_TAG_KEY={OLD_KEY}\n"));
    edit_config(&gw, |text| {
        text.edit(
            &format!("tag_key = \"{OLD_KEY}\""),
            &format!("tag_key = \"{NEW_KEY}\"\nprevious_tag_keys_env = [\"ROTATION_OLD_TAG_KEY\"]"),
        )
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, body) = gw.reload(None).await;
    assert_eq!((status, &body), (200, &json!({"status": "reloaded"})));
    let wrong = traffic.await.unwrap();
    assert!(
        wrong.is_empty(),
        "answers that showed the wrong caller: {wrong:?}"
    );

    // Found under the previous key, written again under the new one.
    assert_eq!(shown_email(&mut client, &read, KEY_ACME).await, read_after);
    assert_ne!(
        shown_email(&mut client, &read, KEY_GLOBEX).await,
        read_after
    );
    let metrics = gw.metrics().await;
    assert!(
        counter(&metrics, "gateway_tags_rekeyed_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        counter(&metrics, "gateway_tag_previous_key_lookups_total") >= 1.0,
        "{metrics}"
    );

    // A tracking number tagged under the old key (that record was not read since) still proves
    // the parcel: the request is verified for acme.
    let filed = post_json(
        &mut gw.h1().await,
        "/privacy/requests",
        None,
        &json!({"type": "access", "email": "proven@example.com", "tracking_number": proven_tracking}),
    )
    .await;
    assert_eq!(filed.status, StatusCode::ACCEPTED);
    assert_eq!(
        filed.json()["controllers"],
        json!([{"name": "Acme", "privacy_contact": "privacy@acme.example"}])
    );

    // An erasure reaches the recipient tag written under the old key.
    let erased = post_json(
        &mut gw.h1().await,
        "/v1/privacy/erasures",
        Some(KEY_ACME),
        &json!({"email": "erased@example.com"}),
    )
    .await;
    assert_eq!(erased.status, StatusCode::OK);
    assert_eq!(
        erased.json()["recipients_deleted"],
        json!(1),
        "{:?}",
        erased.body
    );

    // A reload that drops the old key without keeping it is refused...
    edit_config(&gw, |text| {
        text.edit(
            &format!("tag_key = \"{NEW_KEY}\""),
            "tag_key = \"yet-another-tag-key-0123456789\"",
        )
        .edit("previous_tag_keys_env = [\"ROTATION_OLD_TAG_KEY\"]", "")
    });
    let (status, body) = gw.reload(None).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("previous_tag_keys_env"),
        "{body}"
    );

    // ...and removing the previous key after the retention period is accepted: what only it
    // could find is unreachable (the record read since rotation is not).
    edit_config(&gw, |text| {
        text.edit(
            "tag_key = \"yet-another-tag-key-0123456789\"",
            &format!("tag_key = \"{NEW_KEY}\""),
        )
    });
    let (status, body) = gw.reload(None).await;
    assert_eq!((status, &body), (200, &json!({"status": "reloaded"})));
    let mut client = gw.h1().await;
    assert_eq!(shown_email(&mut client, &read, KEY_ACME).await, read_after);
    assert_ne!(
        shown_email(&mut client, &proven, KEY_ACME).await,
        "proven@example.com",
        "tagged under the removed key only: no controller is known"
    );
}

/// A webhook secret rotates the Standard Webhooks way: with the secret being replaced named
/// too, each delivery carries a signature under each, so the receiver can switch whenever it
/// likes, and a receiver that knows only one of them accepts it.
#[tokio::test]
async fn a_rotating_webhook_secret_signs_each_delivery_under_both() {
    const NEW_SECRET: &str = "whsec_bmV3LXdlYmhvb2stc2VjcmV0LWJ5dGVz";
    let (gw, receiver, _sample) = start().await;
    // The receiver still knows the old secret; the gateway now signs under a new one as well.
    gw.dir.write(
        "dev.env",
        &format!(
            "ACME_NEW_WEBHOOK_SECRET={NEW_SECRET}\nACME_OLD_WEBHOOK_SECRET={WEBHOOK_SECRET}\n"
        ),
    );
    edit_config(&gw, |text| {
        text.edit(
            &format!("webhook_secret = \"{WEBHOOK_SECRET}\""),
            "webhook_secret_env = \"ACME_NEW_WEBHOOK_SECRET\"\n\
             previous_webhook_secret_env = \"ACME_OLD_WEBHOOK_SECRET\"",
        )
    });
    let (status, body) = gw.reload(None).await;
    assert_eq!((status, &body), (200, &json!({"status": "reloaded"})));
    let (_, tracking) = create(&gw, "hooked@example.com").await;
    let filed = post_json(
        &mut gw.h1().await,
        "/privacy/requests",
        None,
        &json!({"type": "access", "email": "hooked@example.com", "tracking_number": tracking}),
    )
    .await;
    assert_eq!(filed.status, StatusCode::ACCEPTED);
    let delivery = receiver
        .wait_for(1, std::time::Duration::from_secs(10))
        .await
        .remove(0);
    assert!(delivery.signed, "the old secret still verifies it");
    let signatures: Vec<&str> = delivery.signature.split(' ').collect();
    assert_eq!(signatures.len(), 2, "{}", delivery.signature);
    // Each secret verifies exactly one of the two signatures.
    for secret in [NEW_SECRET, WEBHOOK_SECRET] {
        let verifying: Vec<&&str> = signatures
            .iter()
            .filter(|one| {
                recipient_gateway::privacy::signature::verify(
                    secret,
                    &delivery.webhook_id,
                    &delivery.timestamp.to_string(),
                    one,
                    &delivery.raw_body,
                    delivery.timestamp,
                    0,
                )
                .is_ok()
            })
            .collect();
        assert_eq!(verifying.len(), 1, "{secret}");
    }
}
