//! Nothing lost: every create answered 201 keeps its controller across `kill -9` of the gateway,
//! on SQLite and on PostgreSQL. The route has no `controller_member`, so the create's answer is
//! the only moment the gateway learns who controls the record.
//!
//! `harness = false`: the test that needs PostgreSQL shows as ignored when it does not answer.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    client::{Alpn, Client},
    config::{Edit, KEY_ACME, KEY_GLOBEX, base_config, shipments_route, unused_addr},
    dir::TestDir,
    harness::{Needs, run_tests},
    process::GatewayProcess,
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use recipient_gateway::demo::start_sample_api;
use recipient_gateway::store::Store;
use recipient_gateway::tags::TagKey;
use serde_json::{Value, json};

fn main() -> std::process::ExitCode {
    run_tests(&[
        (
            "creates_answered_201_keep_their_controller_across_sigkill_on_sqlite",
            Needs::Nothing,
            || Box::pin(creates_survive_sigkill_on_sqlite()),
        ),
        (
            "creates_answered_201_keep_their_controller_across_sigkill_on_postgres",
            Needs::Postgres,
            || Box::pin(creates_survive_sigkill_on_postgres()),
        ),
    ])
}

/// The tag key of [`base_config`].
const TAG_KEY: &[u8] = b"test-tag-key-0123456789abcdef";

/// Creates that were answered 201: (record id, creator).
type Created = Arc<Mutex<Vec<(String, &'static str)>>>;

/// Runs a burst of creates by acme and globex against a gateway on `store`, kills it with
/// SIGKILL while the burst runs, and returns what was answered 201.
async fn burst_then_sigkill(store: &str) -> Vec<(String, &'static str)> {
    let dir = TestDir::new();
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = base_config(sample.addr, unused_addr()).edit("backend = \"memory\"\n", store);
    let path = dir.write(
        "gateway.toml",
        &format!("{base}{}", shipments_route(sample.addr, "")),
    );
    let gateway = GatewayProcess::spawn(&path);
    let created: Created = Arc::default();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (key, creator) = if worker % 2 == 0 {
            (KEY_ACME, "acme")
        } else {
            (KEY_GLOBEX, "globex")
        };
        let client = Client::connect(gateway.addr, &dir.ca(), Alpn::Http1).await;
        tasks.push(tokio::spawn(create_until_refused(
            client,
            key,
            creator,
            worker,
            created.clone(),
        )));
    }
    // Kill once the burst is well under way.
    while created.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gateway.signal("-KILL");
    let (status, _) = gateway.wait();
    assert!(!status.success(), "killed, not exited: {status}");
    for task in tasks {
        task.await.unwrap();
    }
    drop(sample);
    let created = created.lock().unwrap().clone();
    assert!(created.len() >= 300);
    created
}

/// POSTs creates on one connection until the gateway stops answering; records each 201.
async fn create_until_refused(
    mut client: Client,
    key: &'static str,
    creator: &'static str,
    worker: usize,
    created: Created,
) {
    for n in 0.. {
        let body = json!({"recipient": {"email": format!("r{worker}-{n}@example.com")}});
        let request = Request::post("/v1/shipments")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(common::client::body(body.to_string()))
            .unwrap();
        let Ok(response) = client.send_streaming(request).await else {
            return;
        };
        let status = response.status();
        let Ok(bytes) = response.into_body().collect().await else {
            return;
        };
        assert_eq!(status, StatusCode::CREATED, "{bytes:?}");
        let record: Value = serde_json::from_slice(&bytes.to_bytes()).unwrap();
        let id = record["id"].as_str().unwrap().to_string();
        created.lock().unwrap().push((id, creator));
    }
}

/// Every created id resolves to its creator in `store`.
async fn assert_every_create_kept_its_controller(
    store: &dyn Store,
    created: &[(String, &'static str)],
) {
    let key = TagKey::new(TAG_KEY);
    let mut lost = Vec::new();
    for (id, creator) in created {
        match store.record(key.record(id)).await.unwrap() {
            Some(tag) => assert_eq!(&*tag.controller, *creator, "{id}"),
            None => lost.push(id.clone()),
        }
    }
    eprintln!(
        "sigkill: {} creates answered 201, {} lost their controller",
        created.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
}

async fn creates_survive_sigkill_on_sqlite() {
    let dir = TestDir::new();
    let db = dir.path().join("tags.db");
    let store = format!("backend = \"sqlite\"\npath = \"{}\"\n", db.display());
    let created = burst_then_sigkill(&store).await;
    let store = recipient_gateway::store::sqlite::SqliteStore::open(&db).unwrap();
    assert_every_create_kept_its_controller(&store, &created).await;
}

async fn creates_survive_sigkill_on_postgres() {
    let url = recipient_gateway::store::test_postgres::scratch_url().await;
    let created = burst_then_sigkill(&format!("backend = \"postgres\"\nurl = \"{url}\"\n")).await;
    let store = recipient_gateway::store::postgres::PostgresStore::open(&url, None)
        .await
        .unwrap();
    assert_every_create_kept_its_controller(&store, &created).await;
}
