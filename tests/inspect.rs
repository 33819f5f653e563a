//! Inspected routes over real TLS sockets: per-record controllers and redaction with the shipped
//! rules, analytics pseudonyms, and every row of the fail-closed table in both directions.

mod common;

use std::io::Write;

use common::{
    client::{Answer, Client, empty},
    config::{Edit, KEY_ACME, KEY_ANALYTICS, KEY_GLOBEX, SHIPPED_RULES, shipments_route},
    gateway::TestGateway,
    upstream::{Canned, MockUpstream},
};
use http::{Request, StatusCode};
use recipient_gateway::demo::{SampleApi, start_sample_api};
use serde_json::{Value, json};

fn routes(sample: std::net::SocketAddr, controller_member: bool) -> String {
    let member = if controller_member {
        "controller_member = \"customer_id\""
    } else {
        ""
    };
    let rules = format!(
        r#"rules = ["{SHIPPED_RULES}/recipient.toml", "{SHIPPED_RULES}/sensitive.toml", "{SHIPPED_RULES}/analytics.toml"]"#
    );
    let shipments = shipments_route(sample, &format!("{member}\n{rules}"));
    format!(
        r#"{shipments}
[[route]]
name = "analytics"
path_prefix = "/v1/analytics"
upstream = "sample"
purpose = "analytics"
records = ["$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
{member}
{rules}

[[route]]
name = "canned"
path_prefix = "/canned"
upstream = "mock"
records = ["$", "$.shipments[*]"]
record_keys = ["id"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
passthrough_content_types = ["application/pdf"]
{rules}

[[route]]
name = "echo"
path_prefix = "/echo"
upstream = "mock"
records = ["$"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
passthrough_content_types = ["application/pdf"]
{rules}
"#
    )
}

struct Setup {
    gw: TestGateway,
    _sample: SampleApi,
}

async fn setup(controller_member: bool) -> Setup {
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = sample.addr;
    let gw = TestGateway::start_with(MockUpstream::start().await, move |base| {
        let base = base.edit("[limits]\n", "[limits]\nmax_body_bytes = 65536\n");
        format!("{base}{}", routes(addr, controller_member))
    })
    .await;
    Setup {
        gw,
        _sample: sample,
    }
}

fn shipment(email: &str, name: &str) -> Value {
    json!({
        "service": "ground",
        "weight_kg": 1.25,
        "recipient": {
            "name": name,
            "email": email,
            "phone": "+1 415 555 0199",
            "date_of_birth": "1990-01-01",
            "address": {"street": "9 Test Way", "city": "Oakland", "postal_code": "94607", "country": "US"}
        }
    })
}

async fn create(client: &mut Client, key: &str, body: &Value) -> Answer {
    client
        .send(
            Request::post("/v1/shipments")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(common::client::body(body.to_string()))
                .unwrap(),
        )
        .await
}

fn redacted(record: &Value) -> bool {
    let r = &record["recipient"];
    r["email"] == "[REDACTED]"
        && r["phone"] == "[REDACTED]"
        && r["name"] == "[REDACTED]"
        && r["address"]["street"] == "[REDACTED]"
}

fn whole(record: &Value) -> bool {
    let r = &record["recipient"];
    [
        &r["email"],
        &r["phone"],
        &r["name"],
        &r["address"]["street"],
    ]
    .iter()
    .all(|v| v.as_str().is_some_and(|s| !s.contains("REDACTED")))
}

fn by_id<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["shipments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn controllers_see_their_records_whole_and_others_redacted_record_by_record() {
    let s = setup(false).await;
    let mut client = s.gw.h1().await;

    // A create: the caller controls the record it sends and the one the upstream returns.
    let created = create(
        &mut client,
        KEY_ACME,
        &shipment("ann@acme-buyers.test", "Ann Acme"),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let acme_record = created.json();
    assert!(whole(&acme_record), "{acme_record}");
    // Data minimisation: the date of birth never reached the upstream.
    assert!(
        acme_record["recipient"].get("date_of_birth").is_none(),
        "{acme_record}"
    );
    let acme_id = acme_record["id"].as_str().unwrap().to_string();

    let created = create(
        &mut client,
        KEY_GLOBEX,
        &shipment("gus@globex-buyers.test", "Gus Globex"),
    )
    .await;
    let globex_id = created.json()["id"].as_str().unwrap().to_string();

    // The mixed list, as each customer: own record whole, the other's redacted, and the seeded
    // records (no tag, no controller member on this route) redacted for everyone.
    for (key, own, other) in [
        (KEY_ACME, &acme_id, &globex_id),
        (KEY_GLOBEX, &globex_id, &acme_id),
    ] {
        let list = client.get("/v1/shipments", Some(key)).await;
        assert_eq!(list.status, StatusCode::OK);
        let list = list.json();
        assert!(whole(by_id(&list, own)), "{list}");
        assert!(redacted(by_id(&list, other)), "{list}");
        for seeded in ["shp_0001", "shp_0002", "shp_0003"] {
            let record = by_id(&list, seeded);
            assert!(
                redacted(record),
                "untagged {seeded} must fail closed: {record}"
            );
            let postal = record["recipient"]["address"]["postal_code"]
                .as_str()
                .unwrap();
            assert!(
                postal.chars().skip(2).all(|c| c == '*') && postal.len() > 4,
                "{postal}"
            );
            // What no rule names is untouched.
            assert!(
                record["weight_kg"].is_number()
                    && record["recipient"]["address"]["city"].is_string()
            );
        }
    }

    // A single record by id: the tag decides.
    let other = client
        .get(&format!("/v1/shipments/{acme_id}"), Some(KEY_GLOBEX))
        .await
        .json();
    assert!(redacted(&other), "{other}");
    let own = client
        .get(&format!("/v1/shipments/{acme_id}"), Some(KEY_ACME))
        .await
        .json();
    assert!(whole(&own), "{own}");

    // An internal client is never a controller.
    let internal = client
        .get(&format!("/v1/shipments/{acme_id}"), Some(KEY_ANALYTICS))
        .await
        .json();
    assert!(redacted(&internal), "{internal}");

    let metrics = s.gw.metrics().await;
    assert!(
        metrics.contains(r#"gateway_redactions_total{route="shipments",rule="recipient-contact-other-customer",action="redact"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_tags_written_total{kind="record"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_tags_written_total{kind="recipient"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_cannot_claim_a_record_by_sending_its_id() {
    let s = setup(false).await;
    let mut client = s.gw.h1().await;
    let created = create(
        &mut client,
        KEY_ACME,
        &shipment("ann@acme-buyers.test", "Ann"),
    )
    .await
    .json();
    let id = created["id"].as_str().unwrap();
    // Globex sends a body naming acme's record id; record keys are tagged only from responses,
    // and the tag is acme's already, so globex still sees it redacted.
    let mut claim = shipment("x@globex.test", "X");
    claim["id"] = json!(id);
    create(&mut client, KEY_GLOBEX, &claim).await;
    let seen = client
        .get(&format!("/v1/shipments/{id}"), Some(KEY_GLOBEX))
        .await
        .json();
    assert!(redacted(&seen), "{seen}");
}

/// Only a POST answered 201 Created makes its caller the controller of the record it returns: a
/// PUT, or a POST answered 200, echoing a record the gateway holds no tag for claims nothing.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_post_answered_201_claims_the_record_it_returns() {
    let s = setup(false).await;
    let mut client = s.gw.h1().await;
    let send = |method: &str, id: &str| {
        let mut record = shipment(&format!("{id}@buyers.test"), "Pat");
        record["id"] = json!(id);
        Request::builder()
            .method(method)
            .uri("/canned/shipments")
            .header("authorization", format!("Bearer {KEY_GLOBEX}"))
            .header("content-type", "application/json")
            .body(common::client::body(record.to_string()))
            .unwrap()
    };
    for (method, status, id, claimed) in [
        ("PUT", 200, "shp_put", false),
        ("PATCH", 201, "shp_patch", false),
        ("POST", 200, "shp_post_200", false),
        ("POST", 201, "shp_post_201", true),
    ] {
        let mut record = shipment(&format!("{id}@buyers.test"), "Pat");
        record["id"] = json!(id);
        s.gw.upstream
            .set_canned(Canned::json(record.to_string()).status(status));
        let answer = client.send(send(method, id)).await;
        assert_eq!(answer.status.as_u16(), status, "{method} {id}");
        let read = client
            .get("/canned/shipments", Some(KEY_GLOBEX))
            .await
            .json();
        assert_eq!(whole(&read), claimed, "{method} answered {status}: {read}");
        assert_eq!(
            redacted(&read),
            !claimed,
            "{method} answered {status}: {read}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_member_names_the_controller() {
    let s = setup(true).await;
    let mut client = s.gw.h1().await;
    let list = client.get("/v1/shipments", Some(KEY_ACME)).await.json();
    assert!(
        whole(by_id(&list, "shp_0001")),
        "acme's seeded record: {list}"
    );
    assert!(whole(by_id(&list, "shp_0003")));
    assert!(
        redacted(by_id(&list, "shp_0002")),
        "globex's seeded record: {list}"
    );
    let list = client.get("/v1/shipments", Some(KEY_GLOBEX)).await.json();
    assert!(whole(by_id(&list, "shp_0002")));
    assert!(redacted(by_id(&list, "shp_0001")));
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_sees_per_controller_pseudonyms_only() {
    let s = setup(true).await;
    let mut client = s.gw.h1().await;
    let email = "same.person@example.com";
    let a1 = create(&mut client, KEY_ACME, &shipment(email, "Sam"))
        .await
        .json()["id"]
        .clone();
    let a2 = create(&mut client, KEY_ACME, &shipment(email, "Sam"))
        .await
        .json()["id"]
        .clone();
    let g1 = create(&mut client, KEY_GLOBEX, &shipment(email, "Sam"))
        .await
        .json()["id"]
        .clone();

    let answer = client
        .get("/v1/analytics/shipments", Some(KEY_ANALYTICS))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    for secret in [
        email,
        "Sam",
        "9 Test Way",
        "+1 415 555 0199",
        "jane.doe@example.com",
        "1 Market St",
    ] {
        assert!(
            !text.contains(secret),
            "`{secret}` reached analytics: {text}"
        );
    }
    let list = answer.json();
    let pseudonym = |id: &Value| {
        let record = by_id(&list, id.as_str().unwrap());
        assert!(record["recipient"].get("name").is_none(), "{record}");
        assert!(
            record["recipient"]["address"].get("street").is_none(),
            "{record}"
        );
        assert_eq!(record["recipient"]["address"]["postal_code"], "946**");
        let p = record["recipient"]["email"].as_str().unwrap().to_string();
        assert!(p.starts_with("h:") && p.len() == 34, "{p}");
        p
    };
    assert_eq!(pseudonym(&a1), pseudonym(&a2), "equal within a controller");
    assert_ne!(
        pseudonym(&a1),
        pseudonym(&g1),
        "unlinkable across controllers"
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::CompressorWriter::new(&mut out, 4096, 5, 22)
        .write_all(data)
        .unwrap();
    out
}

fn bomb() -> Vec<u8> {
    gzip(&vec![b' '; 4 << 20])
}

async fn post_echo(client: &mut Client, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut request =
        Request::post("/echo/x").header("authorization", format!("Bearer {KEY_ACME}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    client
        .send(request.body(common::client::body(body)).unwrap())
        .await
}

const SENSITIVE: &str = r#"{"recipient":{"email":"a@b.c","date_of_birth":"1990-01-01"},"n":1e400}"#;
const STRIPPED: &str = r#"{"recipient":{"email":"a@b.c"},"n":1e400}"#;

/// A refused request body: (name, headers, body, status, code, metric reason).
type RefusedRequest = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    u16,
    &'static str,
    &'static str,
);

fn refused_requests() -> Vec<RefusedRequest> {
    let json = vec![("content-type", "application/json")];
    let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
    vec![
        (
            "text/plain",
            vec![("content-type", "text/plain")],
            b"hello".to_vec(),
            415,
            "unsupported_media_type",
            "media_type",
        ),
        (
            "no media type",
            vec![],
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
            "media_type",
        ),
        (
            "unknown encoding",
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "zstd"),
            ],
            b"x".to_vec(),
            415,
            "unsupported_encoding",
            "encoding",
        ),
        (
            "stacked unknown encoding",
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "gzip, compress"),
            ],
            gzip(b"{}"),
            415,
            "unsupported_encoding",
            "encoding",
        ),
        (
            "too large",
            json.clone(),
            format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000)).into_bytes(),
            413,
            "body_too_large",
            "too_large",
        ),
        (
            "compression bomb",
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            bomb(),
            413,
            "body_too_large",
            "too_large",
        ),
        (
            "corrupt gzip",
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            b"not gzip".to_vec(),
            400,
            "invalid_encoding",
            "corrupt_encoding",
        ),
        (
            "not JSON",
            json.clone(),
            b"hello".to_vec(),
            400,
            "invalid_json",
            "invalid_json",
        ),
        (
            "invalid UTF-8",
            json.clone(),
            b"{\"a\":\"\xff\"}".to_vec(),
            400,
            "invalid_json",
            "invalid_json",
        ),
        (
            "duplicate member",
            json.clone(),
            br#"{"a":1,"a":2}"#.to_vec(),
            400,
            "invalid_json",
            "duplicate_key",
        ),
        (
            "escaped duplicate",
            json.clone(),
            br#"{"recipient":{"email":"x","\u0065mail":"y"}}"#.to_vec(),
            400,
            "invalid_json",
            "duplicate_key",
        ),
        (
            "lone surrogate",
            json.clone(),
            br#"{"a":"\ud800"}"#.to_vec(),
            400,
            "invalid_json",
            "invalid_json",
        ),
        (
            "byte-order mark",
            json.clone(),
            b"\xEF\xBB\xBF{}".to_vec(),
            400,
            "invalid_json",
            "invalid_json",
        ),
        (
            "NaN",
            json.clone(),
            br#"{"a":NaN}"#.to_vec(),
            400,
            "invalid_json",
            "invalid_json",
        ),
        (
            "Infinity",
            json.clone(),
            br#"{"a":-Infinity}"#.to_vec(),
            400,
            "invalid_json",
            "invalid_json",
        ),
        (
            "comment",
            json.clone(),
            b"{\"a\":1 /* c */}".to_vec(),
            400,
            "invalid_json",
            "invalid_json",
        ),
        (
            "trailing comma",
            json.clone(),
            br#"{"a":1,}"#.to_vec(),
            400,
            "invalid_json",
            "invalid_json",
        ),
        (
            "two documents",
            json.clone(),
            br#"{"a":1}{"a":2}"#.to_vec(),
            400,
            "invalid_json",
            "invalid_json",
        ),
        (
            "too deep",
            json.clone(),
            deep.into_bytes(),
            400,
            "invalid_json",
            "too_deep",
        ),
        (
            "record not an object",
            json.clone(),
            b"[1]".to_vec(),
            400,
            "unexpected_shape",
            "unexpected_shape",
        ),
        (
            "recipient elsewhere",
            json.clone(),
            br#"{"data":{"recipient":{"email":"a@b"}}}"#.to_vec(),
            400,
            "unexpected_shape",
            "unexpected_shape",
        ),
        (
            "recipient not an object",
            json,
            br#"{"recipient":"Jane Doe"}"#.to_vec(),
            400,
            "unexpected_shape",
            "unexpected_shape",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_request_bodies_never_reach_the_upstream() {
    let s = setup(false).await;
    let mut client = s.gw.h1().await;
    for (name, headers, body, status, code, reason) in refused_requests() {
        let before = s.gw.upstream.count();
        let answer = post_echo(&mut client, &headers, body).await;
        assert_eq!(answer.status.as_u16(), status, "{name}: {:?}", answer.body);
        assert_eq!(answer.error_code(), code, "{name}");
        assert_eq!(
            s.gw.upstream.count(),
            before,
            "{name}: nothing reached the upstream"
        );
        let metrics = s.gw.metrics().await;
        let line = format!(r#"gateway_blocked_total{{route="echo",reason="{reason}"}}"#);
        assert!(metrics.contains(&line), "{name}: {line} missing");
        // A refused request may close the connection; carry on with a fresh one.
        client = s.gw.h1().await;
    }
    // Upgrade on an inspected route.
    let answer = client
        .send(
            Request::get("/echo/ws")
                .header("x-api-key", KEY_ACME)
                .header("upgrade", "websocket")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        s.gw.metrics()
            .await
            .contains(r#"gateway_blocked_total{route="echo",reason="upgrade"}"#)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_request_bodies_are_inspected_decoded_or_passed_on_purpose() {
    let s = setup(false).await;
    let mut client = s.gw.h1().await;
    let seen_body = |gw: &TestGateway| gw.upstream.last()["body"].as_str().unwrap().to_string();

    // JSON media types with parameters and +json are inspected: the sensitive member is removed,
    // the rest byte for byte (1e400 intact).
    for media in [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.shipment+json",
    ] {
        let answer = post_echo(
            &mut client,
            &[("content-type", media)],
            SENSITIVE.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{media}");
        assert_eq!(seen_body(&s.gw), STRIPPED, "{media}");
    }
    // Encoded bodies are decoded and inspected; the upstream gets the identity body.
    for (coding, encoded) in [
        ("gzip", gzip(SENSITIVE.as_bytes())),
        ("deflate", deflate(SENSITIVE.as_bytes())),
        ("br", brotli(SENSITIVE.as_bytes())),
    ] {
        let answer = post_echo(
            &mut client,
            &[
                ("content-type", "application/json"),
                ("content-encoding", coding),
            ],
            encoded,
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{coding}");
        let seen = s.gw.upstream.last();
        assert_eq!(seen["body"], STRIPPED, "{coding}");
        assert!(
            seen["headers"].get("content-encoding").is_none(),
            "{coding}: {seen}"
        );
    }
    // Nothing to change: the original bytes go on, still encoded, formatting and all.
    let original =
        b"{ \"recipient\" : { \"email\" : \"a@b.c\" } ,\n \"n\": 12345678901234567890.12345 }";
    let answer = post_echo(
        &mut client,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        gzip(original),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen = s.gw.upstream.last();
    assert_eq!(seen["headers"]["content-encoding"][0], "gzip");
    assert_eq!(seen["body_len"], gzip(original).len());
    let answer = post_echo(
        &mut client,
        &[("content-type", "application/json")],
        original.to_vec(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(seen_body(&s.gw).as_bytes(), original);

    // A passthrough media type goes on as is, unread.
    let pdf = b"%PDF-1.4 {\"recipient\":{\"date_of_birth\":\"x\"}}".to_vec();
    let answer = post_echo(
        &mut client,
        &[("content-type", "application/pdf")],
        pdf.clone(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(seen_body(&s.gw).as_bytes(), &pdf[..]);

    // No body and no media type: nothing to inspect. Range is removed, identity requested.
    let answer = client
        .send(
            Request::get("/echo/r")
                .header("x-api-key", KEY_ACME)
                .header("range", "bytes=0-10")
                .header("accept-encoding", "gzip, br")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen = s.gw.upstream.last();
    assert!(seen["headers"].get("range").is_none(), "{seen}");
    assert_eq!(seen["headers"]["accept-encoding"], json!(["identity"]));
}

/// Refused upstream answers: (name, canned answer, code, metric reason).
fn refused_responses() -> Vec<(&'static str, Canned, &'static str, &'static str)> {
    let record = br#"{"id":"c1","recipient":{"email":"a@b.c"}}"#;
    let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
    vec![
        (
            "text/html",
            Canned::json(&b"<html>jane@example.com</html>"[..]).header("content-type", "text/html"),
            "uninspectable_response",
            "media_type",
        ),
        (
            "no media type",
            Canned {
                status: 200,
                headers: vec![],
                body: record.to_vec(),
            },
            "uninspectable_response",
            "media_type",
        ),
        (
            "unknown encoding",
            Canned::json(&record[..]).header("content-encoding", "zstd"),
            "uninspectable_response",
            "encoding",
        ),
        (
            "stacked unknown encoding",
            Canned::json(gzip(record)).header("content-encoding", "gzip, snappy"),
            "uninspectable_response",
            "encoding",
        ),
        (
            "too large",
            Canned::json(format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000))),
            "uninspectable_response",
            "too_large",
        ),
        (
            "compression bomb",
            Canned::json(bomb()).header("content-encoding", "gzip"),
            "uninspectable_response",
            "too_large",
        ),
        (
            "partial content",
            Canned::json(&record[..]).status(206),
            "uninspectable_response",
            "partial_content",
        ),
        (
            "not JSON",
            Canned::json(&b"jane@example.com"[..]),
            "uninspectable_response",
            "invalid_json",
        ),
        (
            "duplicate member",
            Canned::json(&br#"{"id":"c1","recipient":{"email":"a@b","email":"c@d"}}"#[..]),
            "uninspectable_response",
            "duplicate_key",
        ),
        (
            "lone surrogate",
            Canned::json(&br#"{"a":"\udc00"}"#[..]),
            "uninspectable_response",
            "invalid_json",
        ),
        (
            "byte-order mark",
            Canned::json(&b"\xEF\xBB\xBF{}"[..]),
            "uninspectable_response",
            "invalid_json",
        ),
        (
            "NaN",
            Canned::json(&b"{\"a\":NaN}"[..]),
            "uninspectable_response",
            "invalid_json",
        ),
        (
            "comment",
            Canned::json(&b"{} // c"[..]),
            "uninspectable_response",
            "invalid_json",
        ),
        (
            "trailing comma",
            Canned::json(&b"[1,2,]"[..]),
            "uninspectable_response",
            "invalid_json",
        ),
        (
            "two documents",
            Canned::json(&b"{}{}"[..]),
            "uninspectable_response",
            "invalid_json",
        ),
        (
            "too deep",
            Canned::json(deep),
            "uninspectable_response",
            "too_deep",
        ),
        (
            "renamed container",
            Canned::json(&br#"{"data":[{"recipient":{"email":"a@b"}}]}"#[..]),
            "unexpected_shape",
            "unexpected_shape",
        ),
        (
            "records not objects",
            Canned::json(&br#"{"shipments":["jane@example.com"]}"#[..]),
            "unexpected_shape",
            "unexpected_shape",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn uninspectable_upstream_answers_are_withheld() {
    let s = setup(false).await;
    let mut client = s.gw.h1().await;
    for (name, canned, code, reason) in refused_responses() {
        s.gw.upstream.set_canned(canned);
        let answer = client.get("/canned/x", Some(KEY_ACME)).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{name}");
        assert_eq!(answer.error_code(), code, "{name}");
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            !text.contains("example.com") && !text.contains("a@b"),
            "{name}: nothing of the body: {text}"
        );
        let line = format!(r#"gateway_blocked_total{{route="canned",reason="{reason}"}}"#);
        assert!(
            s.gw.metrics().await.contains(&line),
            "{name}: {line} missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_answers_are_decoded_redacted_and_byte_faithful() {
    let s = setup(false).await;
    let mut client = s.gw.h1().await;
    // The canned record has no tag: its controller is unknown, so every caller gets it redacted.
    let record = br#"{"id":"c1","big":1e400,"precise":12345678901234567890.12345,"recipient":{"email":"a@b.c","name":"Jane"},"z":[1.0,2.50]}"#;
    let expected = r#"{"id":"c1","big":1e400,"precise":12345678901234567890.12345,"recipient":{"email":"[REDACTED]","name":"[REDACTED]"},"z":[1.0,2.50]}"#;
    for (coding, body) in [
        ("identity", record.to_vec()),
        ("gzip", gzip(record)),
        ("deflate", deflate(record)),
        ("br", brotli(record)),
    ] {
        s.gw.upstream.set_canned(
            Canned::json(body)
                .header("content-encoding", coding)
                .header("etag", "\"v1\""),
        );
        let answer = client.get("/canned/x", Some(KEY_ACME)).await;
        assert_eq!(answer.status, StatusCode::OK, "{coding}");
        assert_eq!(String::from_utf8_lossy(&answer.body), expected, "{coding}");
        assert!(answer.header("content-encoding").is_none(), "{coding}");
        assert!(
            answer.header("etag").is_none(),
            "{coding}: a changed body keeps no strong ETag"
        );
        assert_eq!(
            answer.header("content-length"),
            Some(expected.len().to_string().as_str())
        );
    }
    // `\u0065mail` is `email`: the rule still applies.
    s.gw.upstream.set_canned(Canned::json(
        &br#"{"id":"c2","recipient":{"\u0065mail":"a@b.c"}}"#[..],
    ));
    let answer = client.get("/canned/x", Some(KEY_ACME)).await;
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        r#"{"id":"c2","recipient":{"\u0065mail":"[REDACTED]"}}"#
    );

    // Nothing to change: the exact bytes and headers, encoding included.
    let untouched = b"{ \"id\" : \"c3\",\n  \"recipient\": null, \"n\": -0.0e-0 }";
    s.gw.upstream.set_canned(
        Canned::json(gzip(untouched))
            .header("content-encoding", "gzip")
            .header("etag", "\"v2\""),
    );
    let answer = client.get("/canned/x", Some(KEY_ACME)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-encoding"), Some("gzip"));
    assert_eq!(answer.header("etag"), Some("\"v2\""));
    assert_eq!(answer.body.to_vec(), gzip(untouched));

    // Passthrough and empty bodies.
    s.gw.upstream.set_canned(Canned {
        status: 200,
        headers: vec![("content-type".into(), "application/pdf".into())],
        body: b"%PDF jane@example.com".to_vec(),
    });
    let answer = client.get("/canned/label", Some(KEY_ACME)).await;
    assert_eq!(answer.body.as_ref(), b"%PDF jane@example.com");
    s.gw.upstream.set_canned(Canned {
        status: 204,
        headers: vec![],
        body: vec![],
    });
    assert_eq!(
        client.get("/canned/x", Some(KEY_ACME)).await.status,
        StatusCode::NO_CONTENT
    );
    s.gw.upstream.set_canned(Canned {
        status: 200,
        headers: vec![],
        body: vec![],
    });
    assert_eq!(
        client.get("/canned/x", Some(KEY_ACME)).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_clients_get_the_same_treatment() {
    let s = setup(false).await;
    let mut h2 = s.gw.h2().await;
    s.gw.upstream.set_canned(Canned::json(
        &br#"{"shipments":[{"id":"x","recipient":{"phone":"+1 555"}}]}"#[..],
    ));
    let answer = h2.get("/canned/list", Some(KEY_GLOBEX)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json()["shipments"][0]["recipient"]["phone"],
        "[REDACTED]"
    );
}
