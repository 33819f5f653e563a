//! Durable tags: what a gateway learned survives its restart (SQLite), and the store's health
//! shows in `/readyz`.

mod common;

use common::*;
use http::{Request, StatusCode};
use recipient_gateway::demo::start_sample_api;
use serde_json::{Value, json};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules");

fn routes(sample: std::net::SocketAddr) -> String {
    format!(
        r#"
[[upstream]]
name = "sample"
url = "http://{sample}"

[[route]]
name = "shipments"
path_prefix = "/v1/shipments"
upstream = "sample"
records = ["$", "$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
rules = ["{RULES}/recipient.toml"]
"#
    )
}

async fn admin_status(gw: &TestGateway, path: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", "a")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_survive_a_restart_with_sqlite() {
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("tags.db");
    let config = |base: String| {
        let base = base.replace(
            "backend = \"memory\"",
            &format!("backend = \"sqlite\"\npath = \"{}\"", db.display()),
        );
        format!("{base}{}", routes(sample.addr))
    };

    let gw = TestGateway::start_with(MockUpstream::start().await, &config).await;
    let mut client = gw.h1().await;
    let created = client
        .send(
            Request::post("/v1/shipments")
                .header("x-api-key", KEY_ACME)
                .header("content-type", "application/json")
                .body(body(
                    json!({"recipient": {"name": "Ann", "email": "ann@example.com"}}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(admin_status(&gw, "/readyz").await, 200);
    // A graceful stop flushes the write-behind queue.
    gw.stop().await;

    let gw = TestGateway::start_with(MockUpstream::start().await, &config).await;
    let mut client = gw.h1().await;
    let own: Value = client
        .get(&format!("/v1/shipments/{id}"), Some(KEY_ACME))
        .await
        .json();
    assert_eq!(
        own["recipient"]["email"], "ann@example.com",
        "acme's tag came back from SQLite: {own}"
    );
    let other: Value = client
        .get(&format!("/v1/shipments/{id}"), Some(KEY_GLOBEX))
        .await
        .json();
    assert_eq!(other["recipient"]["email"], "[REDACTED]");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_tag_store_entries{kind=\"record\"}"),
        "{metrics}"
    );
}
