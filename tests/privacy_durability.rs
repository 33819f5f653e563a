//! Nothing lost: privacy requests answered 202 survive `kill -9` of the gateway while the
//! customer's receiver is down, and two gateways sharing PostgreSQL deliver each request once.
//!
//! `harness = false`: the test that needs PostgreSQL shows as ignored when it does not answer.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{
    client::{Alpn, Client, post_json},
    config::{Edit, KEY_ACME, WEBHOOK_SECRET, base_config, shipments_route, unused_addr},
    dir::TestDir,
    gateway::TestGateway,
    harness::{Needs, run_tests},
    process::GatewayProcess,
    receiver::WebhookReceiver,
    upstream::MockUpstream,
    wait::eventually,
};
use http::StatusCode;
use recipient_gateway::demo::start_sample_api;
use serde_json::json;

fn main() -> std::process::ExitCode {
    run_tests(&[
        (
            "requests_survive_sigkill_while_the_receiver_is_down",
            Needs::Nothing,
            || Box::pin(requests_survive_sigkill_while_the_receiver_is_down()),
        ),
        (
            "two_replicas_on_postgres_deliver_each_request_once",
            Needs::Postgres,
            || Box::pin(two_replicas_on_postgres_deliver_each_request_once()),
        ),
    ])
}

/// Jane ships with acme in the demo data; her e-mail routes every request to acme.
const JANE: &str = "jane.doe@example.com";

/// The test config with `store` as the `[store]` body and acme's webhook at `hook`.
fn config(api: SocketAddr, hook: SocketAddr, store: &str) -> String {
    let base = base_config(api, unused_addr())
        .edit("backend = \"memory\"\n", store)
        .edit(
            "name = \"Acme\"\n",
            &format!(
                "name = \"Acme\"\nwebhook_url = \"http://{hook}/hook\"\n\
                 webhook_secret = \"{WEBHOOK_SECRET}\"\n"
            ),
        );
    let route = shipments_route(api, "controller_member = \"customer_id\"");
    format!("{base}{route}\n[privacy]\nrate_limit_per_minute = 100000\n")
}

/// Files `count` requests for Jane at the gateways (address, CA) round robin, 10 at a time;
/// returns their ids. Each must be answered 202.
async fn file_many(gateways: &[(SocketAddr, &Path)], count: usize) -> Vec<String> {
    let gateways: Arc<Vec<(SocketAddr, PathBuf)>> = Arc::new(
        gateways
            .iter()
            .map(|(addr, ca)| (*addr, ca.to_path_buf()))
            .collect(),
    );
    let mut tasks = Vec::new();
    for worker in 0..10 {
        let gateways = gateways.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (worker..count).step_by(10) {
                let (addr, ca) = &gateways[n % gateways.len()];
                let mut client = Client::connect(*addr, ca, Alpn::Http1).await;
                let body = json!({"type": "delete", "email": JANE, "details": format!("n{n}")});
                let answer = post_json(&mut client, "/privacy/requests", None, &body).await;
                assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
                ids.push(answer.json()["request_id"].as_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids
}

/// Waits until every id in `ids` was delivered; returns deliveries per id.
async fn delivered(
    receiver: &WebhookReceiver,
    ids: &[String],
    timeout: Duration,
) -> HashMap<String, usize> {
    let per_id = || {
        let mut per_id: HashMap<String, usize> = HashMap::new();
        for delivery in receiver.got() {
            assert!(delivery.signed, "every delivery is signed");
            let id = delivery.body["request_id"].as_str().unwrap().to_string();
            *per_id.entry(id).or_default() += 1;
        }
        per_id
    };
    let missing =
        |per_id: &HashMap<String, usize>| ids.iter().filter(|id| !per_id.contains_key(*id)).count();
    let all = async || Some(per_id()).filter(|per_id| missing(per_id) == 0);
    eventually(timeout, all, || {
        format!(
            "{} of {} requests not delivered",
            missing(&per_id()),
            ids.len()
        )
    })
    .await
}

async fn requests_survive_sigkill_while_the_receiver_is_down() {
    const REQUESTS: usize = 100;
    let dir = TestDir::new();
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // The receiver's port, reserved and released: nothing listens there until the restart.
    let hook = unused_addr();
    let path = dir.write(
        "gateway.toml",
        &config(
            sample.addr,
            hook,
            "backend = \"sqlite\"\npath = \"data/gateway.db\"\n",
        ),
    );

    let gateway = GatewayProcess::spawn(&path);
    let mut client = Client::connect(gateway.addr, &dir.ca(), Alpn::Http1).await;
    let seen = client.get("/v1/shipments", Some(KEY_ACME)).await;
    assert_eq!(seen.status, StatusCode::OK);
    let ids = file_many(&[(gateway.addr, &dir.ca())], REQUESTS).await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), REQUESTS);
    gateway.signal("-KILL");
    let (status, _) = gateway.wait();
    assert!(!status.success(), "killed, not exited: {status}");

    let receiver = WebhookReceiver::start_on(hook, WEBHOOK_SECRET).await;
    let restarted = GatewayProcess::spawn(&path);
    // Attempts cut short by the kill wait out their lease (30 s) before they are retried.
    let per_id = delivered(&receiver, &ids, Duration::from_secs(90)).await;
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    eprintln!(
        "sigkill: {REQUESTS} requests answered 202, {} delivered after restart, 0 lost, \
         {duplicates} duplicate deliveries",
        per_id.len()
    );
    drop(restarted);
}

async fn two_replicas_on_postgres_deliver_each_request_once() {
    const REQUESTS: usize = 200;
    let url = recipient_gateway::store::test_postgres::scratch_url().await;
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await;
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let store = format!("backend = \"postgres\"\nurl = \"{url}\"\n");
    let text = config(sample.addr, receiver.addr, &store);
    let start = |text: String| async move {
        TestGateway::start_with(MockUpstream::start().await, move |_| text).await
    };
    let (a, b) = (start(text.clone()).await, start(text).await);

    let seen = a.h1().await.get("/v1/shipments", Some(KEY_ACME)).await;
    assert_eq!(seen.status, StatusCode::OK);
    // Replica a's tags reach the shared store behind the response; b verifies against the store.
    a.tags.flush().await.unwrap();
    let ids = file_many(&[(a.addr, &a.dir.ca()), (b.addr, &b.dir.ca())], REQUESTS).await;
    let per_id = delivered(&receiver, &ids, Duration::from_secs(60)).await;
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    eprintln!(
        "two replicas on PostgreSQL: {REQUESTS} requests, {} delivered, {duplicates} duplicates",
        per_id.len()
    );
    assert_eq!(duplicates, 0, "each attempt is claimed by one replica");
    assert_eq!(receiver.got().len(), REQUESTS);
}
