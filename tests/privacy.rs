//! Privacy requests over real TLS sockets: intake, verification without an enumeration oracle,
//! signed webhook delivery with retries and dead letters, the customers' inbox, public status,
//! erasure and the intake rate limit. Tags come from real traffic through the demo API.

mod common;

use std::time::{Duration, Instant};

use common::{
    client::{Answer, TestBody, body, empty, post_json, read_until_close, write_all},
    config::{Edit, KEY_ACME, KEY_ANALYTICS, KEY_GLOBEX, WEBHOOK_SECRET, shipments_route},
    dir::TestDir,
    gateway::TestGateway,
    privacy::{PrivacySetup, privacy_setup},
    receiver::WebhookReceiver,
    upstream::MockUpstream,
};
use http::{Request, StatusCode};
use serde_json::{Value, json};

const JANE: &str = "jane.doe@example.com";
const JANE_TRACKING: &str = "1ZACME0000000001";

/// Lists the shipments once, so the gateway tags every record and recipient.
async fn seed(gw: &TestGateway) {
    let answer = gw.h1().await.get("/v1/shipments", Some(KEY_ACME)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

/// Globex creates a shipment to Jane through the gateway: globex now holds her too.
async fn jane_also_ships_with_globex(gw: &TestGateway) {
    let created = post_json(
        &mut gw.h1().await,
        "/v1/shipments",
        Some(KEY_GLOBEX),
        &json!({"recipient": {"name": "Jane Doe", "email": JANE}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
}

async fn file(gw: &TestGateway, body: Value) -> Answer {
    post_json(&mut gw.h1().await, "/privacy/requests", None, &body).await
}

fn id_of(answer: &Answer) -> String {
    answer.json()["request_id"].as_str().unwrap().to_string()
}

/// Every key of a JSON object, sorted.
fn shape(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

async fn inbox(gw: &TestGateway, key: &str, query: &str) -> Vec<Value> {
    let answer = gw
        .h1()
        .await
        .get(&format!("/v1/privacy/requests{query}"), Some(key))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.json()["requests"].as_array().unwrap().clone()
}

async fn public_status(gw: &TestGateway, id: &str) -> Value {
    let answer = gw
        .h1()
        .await
        .get(&format!("/privacy/requests/{id}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.json()
}

#[tokio::test]
async fn unverified_answers_do_not_tell_whether_data_is_held() {
    let PrivacySetup {
        gw,
        receiver: _receiver,
        _sample,
    } = privacy_setup("rate_limit_per_minute = 1000").await;
    seed(&gw).await;

    let verified = file(
        &gw,
        json!({"type": "access", "email": JANE, "tracking_number": JANE_TRACKING}),
    )
    .await;
    assert_eq!(verified.status, StatusCode::ACCEPTED);
    let verified = verified.json();
    assert_eq!(verified["status"], "received");
    assert_eq!(
        verified["controllers"],
        json!([{"name": "Acme", "privacy_contact": "privacy@acme.example"}])
    );

    // Held without proof, held with the wrong proof, not held at all: one answer.
    let cases = [
        json!({"type": "access", "email": JANE}),
        json!({"type": "access", "email": JANE, "tracking_number": "1ZGLBX0000000002"}),
        json!({"type": "access", "email": "nobody@example.com", "tracking_number": JANE_TRACKING}),
        json!({"type": "access", "email": "nobody@example.com"}),
    ];
    let mut answers = Vec::new();
    for case in &cases {
        let answer = file(&gw, case.clone()).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        answers.push(answer.json());
    }
    for answer in &answers {
        assert_eq!(
            shape(answer),
            ["message", "request_id", "status"],
            "{answer}"
        );
        assert_eq!(answer["status"], answers[0]["status"]);
        assert_eq!(answer["message"], answers[0]["message"]);
        assert_eq!(answer["request_id"].as_str().unwrap().len(), 32);
    }
    assert_eq!(verified["message"], answers[0]["message"]);

    // Timing: held vs not held, unverified, 8 requests each, interleaved.
    let (mut held, mut absent) = (Vec::new(), Vec::new());
    for i in 0..8 {
        let mut client = gw.h1().await;
        let started = Instant::now();
        let answer = post_json(
            &mut client,
            "/privacy/requests",
            None,
            &json!({"type": "delete", "email": JANE}),
        )
        .await;
        held.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        let mut client = gw.h1().await;
        let started = Instant::now();
        let body = json!({"type": "delete", "email": format!("n{i}@example.com")});
        let answer = post_json(&mut client, "/privacy/requests", None, &body).await;
        absent.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (held, absent) = (mean(&held), mean(&absent));
    eprintln!(
        "intake timing: data held {held:.2} ms, not held {absent:.2} ms, difference {:.2} ms",
        (held - absent).abs()
    );
    assert!(
        held >= 100.0 && absent >= 100.0,
        "the floor applies to both"
    );
    assert!(
        (held - absent).abs() < 10.0,
        "held {held:.2} ms vs absent {absent:.2} ms"
    );

    // Nothing personal reaches the public status; unverified requests stay `received`.
    let status = public_status(&gw, answers[0]["request_id"].as_str().unwrap()).await;
    assert_eq!(shape(&status), ["received_at", "request_id", "status"]);
    assert_eq!(status["status"], "received");
}

#[tokio::test]
async fn a_request_filed_before_traffic_tags_its_recipient_reaches_the_controller_once_it_does() {
    let PrivacySetup {
        gw,
        receiver,
        _sample,
    } = privacy_setup("").await;
    // Nothing has been tagged yet: the request finds nobody, and its answer says no more than
    // an unverified one.
    let filed = file(
        &gw,
        json!({"type": "access", "email": JANE, "tracking_number": JANE_TRACKING}),
    )
    .await;
    assert_eq!(filed.status, StatusCode::ACCEPTED);
    assert!(filed.json().get("controllers").is_none());
    let id = id_of(&filed);
    // (The gauges are the process's, shared by the tests running beside this one: the admin
    // listing is this gateway's own.)
    let (status, listed) = admin_get_json(&gw, "/admin/privacy/unmatched").await;
    assert_eq!(status, 200);
    assert_eq!(listed["requests"][0]["id"], id.as_str(), "{listed}");
    assert!(receiver.got().is_empty());

    // Acme lists its shipments: the gateway tags Jane for acme, and the waiting request goes
    // to acme's webhook, verified by its tracking number.
    seed(&gw).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].body["request_id"], id.as_str());
    assert_eq!(got[0].body["verified"], true);
    assert_eq!(got[0].body["subject"]["email"], JANE);
    assert!(got[0].signed);
    let (_, listed) = admin_get_json(&gw, "/admin/privacy/unmatched").await;
    assert_eq!(listed["waiting"], 0, "{listed}");
    assert_eq!(listed["requests"], json!([]), "{listed}");
}

/// `GET path` on the admin listener, as JSON.
async fn admin_get_json(gw: &TestGateway, path: &str) -> (u16, Value) {
    let (status, body) = gw.admin(path).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn each_controller_gets_one_signed_delivery() {
    let PrivacySetup {
        gw,
        receiver,
        _sample,
    } = privacy_setup("").await;
    seed(&gw).await;
    jane_also_ships_with_globex(&gw).await;

    let filed = file(
        &gw,
        json!({"type": "delete", "email": " Jane.Doe@Example.com ", "tracking_number": JANE_TRACKING,
               "details": "Please delete everything.", "reply_to": JANE}),
    )
    .await;
    let id = id_of(&filed);
    assert_eq!(filed.json()["controllers"].as_array().unwrap().len(), 1);

    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "only acme has a webhook");
    let delivery = &got[0];
    assert!(
        delivery.signed,
        "signature verifies: {}",
        delivery.signature
    );
    assert!(delivery.webhook_id.starts_with("msg_"));
    assert!(
        delivery.timestamp.abs_diff(recipient_gateway::tags::now()) <= 5,
        "fresh timestamp"
    );
    let body = &delivery.body;
    assert_eq!(body["type"], "privacy_request.created");
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(body["request_type"], "delete");
    assert_eq!(body["verified"], true);
    assert_eq!(
        body["subject"],
        json!({"email": " Jane.Doe@Example.com ", "phone": null})
    );
    assert_eq!(body["tracking_number"], JANE_TRACKING);
    assert_eq!(body["details"], "Please delete everything.");
    assert_eq!(body["reply_to"], JANE);
    assert!(body["received_at"].as_str().unwrap().ends_with('Z'));

    gw.attempts_recorded(1).await;
    let acme = inbox(&gw, KEY_ACME, "").await;
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0]["status"], "delivered");
    assert_eq!(acme[0]["verified"], true);
    // Globex has no webhook: its copy waits in its inbox, unverified (the tracking number is
    // acme's record).
    let globex = inbox(&gw, KEY_GLOBEX, "?status=pending").await;
    assert_eq!(globex.len(), 1);
    assert_eq!(globex[0]["request_id"], id.as_str());
    assert_eq!(globex[0]["verified"], false);
    assert_eq!(globex[0]["subject"]["email"], " Jane.Doe@Example.com ");
    assert_eq!(
        shape(&globex[0]),
        [
            "details",
            "received_at",
            "reply_to",
            "request_id",
            "request_type",
            "status",
            "subject",
            "tracking_number",
            "verified"
        ]
    );

    // Verified: `received` until every copy is delivered or acknowledged.
    assert_eq!(public_status(&gw, &id).await["status"], "received");
    let ack = post_json(
        &mut gw.h1().await,
        &format!("/v1/privacy/requests/{id}/ack"),
        Some(KEY_GLOBEX),
        &json!({}),
    )
    .await;
    assert_eq!(ack.status, StatusCode::OK);
    assert_eq!(
        ack.json(),
        json!({"request_id": id, "status": "acknowledged"})
    );
    assert_eq!(public_status(&gw, &id).await["status"], "forwarded");
    let ack = post_json(
        &mut gw.h1().await,
        &format!("/v1/privacy/requests/{id}/ack"),
        Some(KEY_ACME),
        &json!({}),
    )
    .await;
    assert_eq!(ack.status, StatusCode::OK);
    assert_eq!(public_status(&gw, &id).await["status"], "acknowledged");

    let metrics = gw.metrics().await;
    assert!(metrics.contains(r#"gateway_privacy_requests_total{type="delete",verified="true"}"#));
    assert!(metrics.contains(r#"gateway_webhook_deliveries_total{outcome="delivered"}"#));
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_id_until_delivered() {
    let PrivacySetup {
        gw,
        receiver,
        _sample,
    } = privacy_setup("").await;
    seed(&gw).await;
    receiver.answer(503, Some("7200"), None);
    receiver.answer(500, None, None);
    receiver.answer(302, None, Some("http://127.0.0.1:9/elsewhere"));
    let id = id_of(&file(&gw, json!({"type": "access", "email": JANE})).await);

    let first = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(first[0].answered, 503);
    // Retry-After: 7200 is honoured: an hour later nothing is attempted, past two hours it is.
    gw.attempts_recorded(1).await;
    gw.clock.advance(Duration::from_secs(3600));
    gw.delivery_round().await;
    assert_eq!(receiver.got().len(), 1, "Retry-After honoured");
    gw.clock.advance(Duration::from_secs(3601));
    receiver.wait_for(2, Duration::from_secs(5)).await;
    // Backoff after the 500 is at most 10 s; after the redirect (not followed) at most 20 s.
    gw.attempts_recorded(2).await;
    gw.clock.advance(Duration::from_secs(11));
    receiver.wait_for(3, Duration::from_secs(5)).await;
    gw.attempts_recorded(3).await;
    gw.clock.advance(Duration::from_secs(21));
    let got = receiver.wait_for(4, Duration::from_secs(5)).await;

    assert_eq!(
        got.iter().map(|d| d.answered).collect::<Vec<_>>(),
        [503, 500, 302, 200]
    );
    assert!(got.iter().all(|d| d.signed));
    assert!(
        got.iter().all(|d| d.webhook_id == got[0].webhook_id),
        "same webhook-id"
    );
    let mut stamps: Vec<u64> = got.iter().map(|d| d.timestamp).collect();
    stamps.dedup();
    assert_eq!(stamps.len(), 4, "a fresh timestamp per attempt");
    assert!(got.iter().all(|d| d.body["request_id"] == id.as_str()));
    gw.attempts_recorded(4).await;
    assert_eq!(inbox(&gw, KEY_ACME, "?status=delivered").await.len(), 1);
    let metrics = gw.metrics().await;
    assert!(metrics.contains(r#"gateway_webhook_deliveries_total{outcome="retry"}"#));
}

#[tokio::test]
async fn deliveries_die_after_the_attempt_limit() {
    let PrivacySetup {
        gw,
        receiver,
        _sample,
    } = privacy_setup("delivery_max_attempts = 3").await;
    seed(&gw).await;
    for _ in 0..5 {
        receiver.answer(500, None, None);
    }
    let id = id_of(
        &file(
            &gw,
            json!({"type": "access", "email": JANE, "tracking_number": JANE_TRACKING}),
        )
        .await,
    );
    receiver.wait_for(1, Duration::from_secs(5)).await;
    for n in 2..=3 {
        gw.attempts_recorded(n - 1).await;
        gw.clock.advance(Duration::from_secs(3600));
        receiver.wait_for(n as usize, Duration::from_secs(5)).await;
    }
    gw.attempts_recorded(3).await;
    gw.clock.advance(Duration::from_secs(48 * 3600));
    gw.delivery_round().await;
    assert_eq!(receiver.got().len(), 3, "no attempt after the third");
    let dead = inbox(&gw, KEY_ACME, "?status=dead").await;
    assert_eq!(dead.len(), 1, "dead letters stay in the inbox");
    assert_eq!(dead[0]["request_id"], id.as_str());
    assert_eq!(public_status(&gw, &id).await["status"], "dead");
    assert!(
        gw.metrics()
            .await
            .contains(r#"gateway_webhook_deliveries_total{outcome="dead"}"#)
    );
}

#[tokio::test]
async fn deliveries_die_after_the_age_limit() {
    let PrivacySetup {
        gw,
        receiver,
        _sample,
    } = privacy_setup("delivery_max_age_hours = 1").await;
    seed(&gw).await;
    for _ in 0..5 {
        receiver.answer(500, None, None);
    }
    id_of(&file(&gw, json!({"type": "access", "email": JANE})).await);
    receiver.wait_for(1, Duration::from_secs(5)).await;
    // Two hours on: one last attempt at the deadline, then dead.
    gw.attempts_recorded(1).await;
    gw.clock.advance(Duration::from_secs(2 * 3600));
    receiver.wait_for(2, Duration::from_secs(5)).await;
    gw.attempts_recorded(2).await;
    gw.clock.advance(Duration::from_secs(3600));
    gw.delivery_round().await;
    assert_eq!(receiver.got().len(), 2);
    assert_eq!(inbox(&gw, KEY_ACME, "?status=dead").await.len(), 1);
}

#[tokio::test]
async fn customers_see_only_their_own_requests() {
    let PrivacySetup {
        gw,
        receiver: _receiver,
        _sample,
    } = privacy_setup("").await;
    seed(&gw).await;
    // Rahul ships with globex only.
    let id = id_of(
        &file(
            &gw,
            json!({"type": "opt_out", "email": "rahul@example.org", "tracking_number": "1ZGLBX0000000002"}),
        )
        .await,
    );
    assert_eq!(inbox(&gw, KEY_GLOBEX, "").await.len(), 1);
    assert!(inbox(&gw, KEY_ACME, "").await.is_empty());
    // Acme cannot acknowledge globex's request; unknown and malformed ids are 404 too.
    for (path, key) in [
        (format!("/v1/privacy/requests/{id}/ack"), KEY_ACME),
        (
            "/v1/privacy/requests/00000000000000000000000000000000/ack".to_string(),
            KEY_GLOBEX,
        ),
        ("/v1/privacy/requests/nope/ack".to_string(), KEY_GLOBEX),
    ] {
        let answer = post_json(&mut gw.h1().await, &path, Some(key), &json!({})).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.error_code(), "not_found");
    }
    let mut client = gw.h1().await;
    let answer = client.get("/v1/privacy/requests", None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = client.get("/v1/privacy/requests", Some("wrong-key")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = client
        .get("/v1/privacy/requests", Some(KEY_ANALYTICS))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.error_code(), "customers_only");
    let answer = client
        .get("/v1/privacy/requests?status=lost", Some(KEY_GLOBEX))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "invalid_query");
    // Unknown and malformed status ids: 404, with nothing else said.
    for path in [
        "/privacy/requests/00000000000000000000000000000000",
        "/privacy/requests/not-an-id",
    ] {
        let answer = client.get(path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn erasure_removes_only_the_instructing_customers_tags() {
    let PrivacySetup {
        gw,
        receiver,
        _sample,
    } = privacy_setup("").await;
    seed(&gw).await;
    jane_also_ships_with_globex(&gw).await;

    let erased = post_json(
        &mut gw.h1().await,
        "/v1/privacy/erasures",
        Some(KEY_ACME),
        &json!({"email": JANE}),
    )
    .await;
    assert_eq!(erased.status, StatusCode::OK);
    assert_eq!(
        erased.json(),
        json!({"recipients_deleted": 1, "records_deleted": 2}),
        "jane's tag and acme's record, by id and by tracking number"
    );
    // Jane's request now reaches globex only, and acme's tracking number no longer verifies.
    let filed = file(
        &gw,
        json!({"type": "access", "email": JANE, "tracking_number": JANE_TRACKING}),
    )
    .await;
    assert!(filed.json().get("controllers").is_none());
    assert_eq!(inbox(&gw, KEY_GLOBEX, "").await.len(), 1);
    assert!(inbox(&gw, KEY_ACME, "").await.is_empty());
    gw.delivery_round().await;
    assert!(receiver.got().is_empty(), "nothing for acme");
    // Again: nothing left to delete. Internal clients cannot erase.
    let again = post_json(
        &mut gw.h1().await,
        "/v1/privacy/erasures",
        Some(KEY_ACME),
        &json!({"email": JANE}),
    )
    .await;
    assert_eq!(
        again.json(),
        json!({"recipients_deleted": 0, "records_deleted": 0})
    );
    let internal = post_json(
        &mut gw.h1().await,
        "/v1/privacy/erasures",
        Some(KEY_ANALYTICS),
        &json!({"email": JANE}),
    )
    .await;
    assert_eq!(internal.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn intake_is_rate_limited_per_address() {
    let PrivacySetup {
        gw,
        receiver: _receiver,
        _sample,
    } = privacy_setup("rate_limit_per_minute = 3").await;
    for _ in 0..3 {
        let answer = file(&gw, json!({"type": "access", "email": "a@example.com"})).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    let limited = file(&gw, json!({"type": "access", "email": "a@example.com"})).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.error_code(), "rate_limited");
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // Status lookups are not intake: still answered.
    let answer = gw
        .h1()
        .await
        .get("/privacy/requests/00000000000000000000000000000000", None)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_intake_requests_get_clear_errors_and_nothing_is_kept() {
    let PrivacySetup {
        gw,
        receiver: _receiver,
        _sample,
    } = privacy_setup("").await;
    let mut client = gw.h1().await;
    let cases: Vec<(Request<TestBody>, StatusCode, &str)> = vec![
        (
            Request::post("/privacy/requests")
                .header("content-type", "application/json")
                .body(body(r#"{"type": "access"}"#))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Request::post("/privacy/requests")
                .header("content-type", "application/json")
                .body(body(
                    r#"{"type": "access", "email": "a@b.co", "name": "Jane"}"#,
                ))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Request::post("/privacy/requests")
                .header("content-type", "text/plain")
                .body(body(r#"{"type": "access", "email": "a@b.co"}"#))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Request::post("/privacy/requests")
                .header("content-type", "application/json")
                .body(body(vec![b' '; 17 * 1024]))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            Request::get("/privacy/requests").body(empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in cases {
        let answer = client.send(request).await;
        assert_eq!(answer.status, status, "{:?}", answer.body);
        assert_eq!(answer.error_code(), code);
        assert!(
            !String::from_utf8_lossy(&answer.body).contains("Jane"),
            "errors never echo values"
        );
    }
    let answer = client
        .send(Request::get("/privacy/requests").body(empty()).unwrap())
        .await;
    assert_eq!(answer.header("allow"), Some("POST"));
    let metrics = gw.metrics().await;
    for status in ["400", "405", "413", "415"] {
        let status = format!(r#"status="{status}""#);
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("gateway_requests_total{")
                    && l.contains(r#"route="privacy_intake""#)
                    && l.contains(&status)),
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_stalled_or_broken_intake_body_closes_the_connection_as_the_proxy_does() {
    let PrivacySetup {
        gw,
        receiver: _receiver,
        _sample,
    } = privacy_setup("").await;
    // A body that stops arriving: 408 after the 1 s body read timeout, and the connection closes
    // (it stopped at an unknown point of the stream).
    let mut stream = gw.raw().await;
    write_all(
        &mut stream,
        b"POST /privacy/requests HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"type\":",
    )
    .await;
    let reply = String::from_utf8_lossy(
        &read_until_close(&mut stream, std::time::Duration::from_secs(6)).await,
    )
    .into_owned();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request_body_timeout"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );

    // A malformed chunked body: 400, and the connection closes too.
    let mut stream = gw.raw().await;
    write_all(
        &mut stream,
        b"POST /privacy/requests HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    let reply = String::from_utf8_lossy(
        &read_until_close(&mut stream, std::time::Duration::from_secs(6)).await,
    )
    .into_owned();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
}

/// HTTPS receivers: acme's, behind a private CA named in `webhook_ca_file`, gets its signed
/// delivery over TLS; globex's, whose certificate no trusted root signed, is never sent a byte:
/// the attempt fails, is retried and is counted as `outcome="tls_error"`.
#[tokio::test]
async fn https_webhooks_are_verified_against_the_receivers_ca() {
    let (acme_dir, globex_dir) = (TestDir::new(), TestDir::new());
    let acme = WebhookReceiver::start_tls(WEBHOOK_SECRET, &acme_dir).await;
    let globex = WebhookReceiver::start_tls(WEBHOOK_SECRET, &globex_dir).await;
    let sample = recipient_gateway::demo::start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (acme_port, globex_port, api) = (acme.addr.port(), globex.addr.port(), sample.addr);
    let acme_ca = acme_dir.ca().display().to_string();
    let gw = TestGateway::start_with(MockUpstream::start().await, move |base| {
        let base = base
            .edit(
                "name = \"Acme\"\n",
                &format!(
                    "name = \"Acme\"\nwebhook_url = \"https://localhost:{acme_port}/hooks\"\n\
                     webhook_secret = \"{WEBHOOK_SECRET}\"\nwebhook_ca_file = \"{acme_ca}\"\n"
                ),
            )
            .edit(
                "name = \"Globex\"\n",
                &format!(
                    "name = \"Globex\"\nwebhook_url = \"https://localhost:{globex_port}/hooks\"\n\
                     webhook_secret = \"{WEBHOOK_SECRET}\"\n"
                ),
            );
        let route = shipments_route(api, "controller_member = \"customer_id\"");
        format!("{base}{route}")
    })
    .await;
    seed(&gw).await;
    jane_also_ships_with_globex(&gw).await;
    let id = id_of(&file(&gw, json!({"type": "access", "email": JANE})).await);

    let delivered = acme.wait_for(1, Duration::from_secs(5)).await;
    assert!(delivered[0].signed);
    assert_eq!(delivered[0].body["request_id"], id.as_str());
    // Acme's delivery and globex's failed attempt, both recorded.
    gw.attempts_recorded(2).await;
    assert!(
        gw.metrics()
            .await
            .contains(r#"gateway_webhook_deliveries_total{outcome="tls_error"}"#),
        "globex's failed attempt is counted as a certificate problem"
    );
    assert!(
        globex.got().is_empty(),
        "nothing reached an unverified receiver"
    );
    let pending = inbox(&gw, KEY_GLOBEX, "").await;
    assert_eq!(pending.len(), 1, "kept for retry: {pending:?}");
}

// The recipient page: the same intake for people with a browser.

/// A form's fields, as posted.
type Fields<'a> = &'a [(&'a str, &'a str)];

/// What a browser sends as `Accept` for a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn page(gw: &TestGateway, path: &str) -> Answer {
    let request = Request::get(path)
        .header("accept", BROWSER_ACCEPT)
        .body(empty())
        .unwrap();
    gw.h1().await.send(request).await
}

/// Posts the recipient page's form, as a browser does.
async fn post_form(gw: &TestGateway, fields: &[(&str, &str)]) -> Answer {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let request = Request::post("/privacy/requests")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", BROWSER_ACCEPT)
        .body(common::client::body(body))
        .unwrap();
    gw.h1().await.send(request).await
}

fn text(answer: &Answer) -> String {
    String::from_utf8(answer.body.to_vec()).unwrap()
}

/// The headers every page carries: a page that can load nothing, frame nothing, leak no
/// referrer, and is never cached.
fn assert_page_headers(answer: &Answer) {
    assert_eq!(
        answer.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = answer.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(answer.header("x-frame-options"), Some("DENY"));
    assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
}

/// The value of `attribute` on the element with `id="{id}"`.
fn attribute(html: &str, id: &str, attribute: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let from = tag.find(&format!(" {attribute}=\""))? + attribute.len() + 3;
    Some(tag[from..from + tag[from..].find('"')?].to_string())
}

#[tokio::test]
async fn the_recipient_page_is_an_accessible_form_with_strict_headers() {
    let PrivacySetup {
        gw,
        receiver: _receiver,
        _sample,
    } = privacy_setup(
        "platform_name = \"ParcelNet\"\npage_text = \"Questions: help@parcelnet.example\"",
    )
    .await;
    let answer = page(&gw, "/privacy/requests").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_page_headers(&answer);
    let html = text(&answer);
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("name=\"viewport\" content=\"width=device-width"));
    assert!(html.contains("ParcelNet"), "the configured platform name");
    assert!(html.contains("Questions: help@parcelnet.example"));
    assert!(
        html.contains("on their behalf"),
        "the processor's role, as the policy says"
    );
    // Nothing external and nothing to run: no scripts, no sources, no links off the page.
    for forbidden in ["<script", " src=", "http://", "https://", "<img", "<link"] {
        assert!(!html.contains(forbidden), "{forbidden}");
    }
    assert!(html.contains("<form method=\"post\" action=\"/privacy/requests\""));
    // Every text field has a label naming it, and a hint tied to it.
    for field in ["email", "phone", "tracking_number", "details", "reply_to"] {
        assert!(
            html.contains(&format!("<label for=\"{field}\">")),
            "{field}"
        );
        assert_eq!(
            attribute(&html, field, "name").as_deref(),
            Some(field),
            "{field}"
        );
        assert!(
            attribute(&html, field, "aria-describedby")
                .is_some_and(|d| d.contains(&format!("{field}-hint"))),
            "{field}"
        );
    }
    // The request types are radio buttons in a labelled group, each in its own label.
    assert!(html.contains("<fieldset id=\"type\""));
    assert!(html.contains("<legend>"));
    for kind in ["access", "delete", "correct", "opt_out", "limit_sensitive"] {
        assert!(
            html.contains(&format!(
                "<label><input type=\"radio\" name=\"type\" value=\"{kind}\">"
            )),
            "{kind}"
        );
    }
    assert!(
        html.contains("proves that the parcel is yours"),
        "the tracking number explained"
    );
    // Scripts keep the contract: JSON (or no Accept at all) still gets 405 on GET.
    for accept in [None, Some("application/json"), Some("*/*")] {
        let mut request = Request::get("/privacy/requests");
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let answer = gw.h1().await.send(request.body(empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{accept:?}");
        assert_eq!(answer.error_code(), "method_not_allowed");
    }
}

#[tokio::test]
async fn the_form_files_requests_with_the_json_intakes_semantics() {
    let PrivacySetup {
        gw,
        receiver,
        _sample,
    } = privacy_setup("rate_limit_per_minute = 1000").await;
    seed(&gw).await;

    let verified = post_form(
        &gw,
        &[
            ("type", "delete"),
            ("email", JANE),
            ("phone", ""),
            ("tracking_number", JANE_TRACKING),
            ("details", "Please delete\r\neverything."),
            ("reply_to", ""),
        ],
    )
    .await;
    assert_eq!(verified.status, StatusCode::ACCEPTED);
    assert_page_headers(&verified);
    let html = text(&verified);
    assert!(
        html.contains("<strong class=\"controller-name\">Acme</strong>"),
        "{html}"
    );
    assert!(html.contains("privacy@acme.example"));

    // Delivered like a JSON request: signed, to Acme, verified, with what the form said.
    let deliveries = receiver.wait_for(1, Duration::from_secs(10)).await;
    let payload = &deliveries[0].body;
    assert_eq!(payload["request_type"], "delete", "{payload}");
    assert_eq!(payload["verified"], true);
    assert_eq!(payload["subject"]["email"], JANE);
    assert_eq!(payload["details"], "Please delete\neverything.");
    assert!(deliveries[0].signed);

    // Held without proof, held with the wrong proof, not held at all: one page but the id.
    let cases: [&[(&str, &str)]; 4] = [
        &[("type", "access"), ("email", JANE)],
        &[
            ("type", "access"),
            ("email", JANE),
            ("tracking_number", "1ZGLBX0000000002"),
        ],
        &[
            ("type", "access"),
            ("email", "nobody@example.com"),
            ("tracking_number", JANE_TRACKING),
        ],
        &[("type", "access"), ("email", "nobody@example.com")],
    ];
    let mut pages = Vec::new();
    for fields in cases {
        let answer = post_form(&gw, fields).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        let html = text(&answer);
        let marker = "id=\"request-id\">";
        let at = html.find(marker).expect("a request id") + marker.len();
        let id = html[at..at + 32].to_string();
        assert!(!html.contains("controller-name"), "{html}");
        pages.push((id.clone(), html.replace(&id, "<id>")));
    }
    for (_, html) in &pages {
        assert_eq!(html, &pages[0].1);
    }

    // The status link answers HTML to a browser and the contract's JSON to a script.
    let (id, _) = &pages[0];
    let status_href = format!("/privacy/requests/{id}");
    assert!(pages[0].1.contains("href=\"/privacy/requests/<id>\""));
    let status_page = page(&gw, &status_href).await;
    assert_eq!(status_page.status, StatusCode::OK);
    assert_page_headers(&status_page);
    assert!(text(&status_page).contains("data-status=\"received\""));
    assert_eq!(public_status(&gw, id).await["status"], "received");
    let missing = page(&gw, "/privacy/requests/00000000000000000000000000000000").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_page_headers(&missing);
    assert!(text(&missing).contains("Request not found"));
}

#[tokio::test]
async fn bad_form_input_gets_a_friendly_page_naming_the_field() {
    let PrivacySetup {
        gw,
        receiver,
        _sample,
    } = privacy_setup("rate_limit_per_minute = 1000").await;
    let long = "x".repeat(4001);
    // The fields posted, the field marked, the words that explain it.
    let cases: &[(Fields, &str, &str)] = &[
        (
            &[("email", JANE)],
            "type",
            "Choose what you are asking for.",
        ),
        (
            &[("type", "erase"), ("email", JANE)],
            "type",
            "Choose one of the requests listed.",
        ),
        (
            &[("type", "access"), ("details", "hello")],
            "email",
            "Enter your e-mail address or your phone number",
        ),
        (
            &[("type", "access"), ("email", "<script>alert(1)</script>")],
            "email",
            "Enter an e-mail address like name@example.com.",
        ),
        (
            &[("type", "access"), ("phone", "call me")],
            "phone",
            "Enter a phone number",
        ),
        (
            &[("type", "access"), ("email", JANE), ("details", &long)],
            "details",
            "This is too long: at most 4000 characters.",
        ),
        (
            &[
                ("type", "access"),
                ("email", JANE),
                ("email", "x@example.com"),
            ],
            "email",
            "This field was sent twice.",
        ),
    ];
    for (fields, field, words) in cases {
        let answer = post_form(&gw, fields).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{fields:?}");
        assert_page_headers(&answer);
        let html = text(&answer);
        assert!(!html.contains("{\"error\""), "no raw JSON: {html}");
        assert!(html.contains(words), "{field}: {html}");
        assert!(html.contains("role=\"alert\""));
        assert!(html.contains(&format!("href=\"#{field}\"")), "{field}");
        if *field != "type" {
            assert!(html.contains(&format!("id=\"{field}-error\"")), "{field}");
            assert_eq!(
                attribute(&html, field, "aria-invalid").as_deref(),
                Some("true"),
                "{field}"
            );
        }
        // What was typed is kept for the next try, escaped.
        assert!(!html.contains("<script>"), "{html}");
    }
    let answer = post_form(&gw, cases[3].0).await;
    assert!(text(&answer).contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
    // Every wrong field at once: no type, a malformed e-mail, a malformed phone, each in the
    // summary as a link to its field and marked at the field.
    let answer = post_form(&gw, &[("email", "jane"), ("phone", "call me")]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let html = text(&answer);
    let summary = &html[html.find("role=\"alert\"").unwrap()..html.find("</ul>").unwrap()];
    for (field, words) in [
        ("type", "Choose what you are asking for."),
        ("email", "Enter an e-mail address like name@example.com."),
        ("phone", "Enter a phone number"),
    ] {
        assert!(
            summary.contains(&format!("href=\"#{field}\"")),
            "{field}: {summary}"
        );
        assert!(summary.contains(words), "{field}: {summary}");
        assert!(html.contains(&format!("id=\"{field}-error\"")), "{field}");
    }
    assert!(
        summary.find("#type") < summary.find("#email")
            && summary.find("#email") < summary.find("#phone"),
        "in the form's order: {summary}"
    );
    assert!(
        inbox(&gw, KEY_ACME, "").await.is_empty(),
        "nothing was filed"
    );
    assert!(receiver.got().is_empty());
}

#[tokio::test]
async fn form_posts_share_the_intakes_rate_limit() {
    let PrivacySetup {
        gw,
        receiver: _receiver,
        _sample,
    } = privacy_setup("rate_limit_per_minute = 2").await;
    let fields = [("type", "access"), ("email", "a@example.com")];
    assert_eq!(post_form(&gw, &fields).await.status, StatusCode::ACCEPTED);
    assert_eq!(
        file(&gw, json!({"type": "access", "email": "a@example.com"}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let limited = post_form(&gw, &fields).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_page_headers(&limited);
    assert!(limited.header("retry-after").is_some());
    assert!(text(&limited).contains("Please wait a moment"));
    let json_limited = file(&gw, json!({"type": "access", "email": "a@example.com"})).await;
    assert_eq!(json_limited.error_code(), "rate_limited");
}
