//! Durable tags: what a gateway learned survives its restart (SQLite), PostgreSQL conforms to the
//! store contract and is shared by replicas, and the store's health shows in `/readyz`.
//!
//! `harness = false`: the tests that need PostgreSQL show as ignored when it does not answer.

mod common;

use common::{
    client::{Alpn, Client, body, post_json},
    config::{
        Edit, KEY_ACME, KEY_GLOBEX, SHIPPED_RULES, base_config, shipments_route, unused_addr,
    },
    dir::TestDir,
    gateway::TestGateway,
    harness::{Needs, run_tests},
    process::GatewayProcess,
    upstream::MockUpstream,
};
use http::{Request, StatusCode};
use recipient_gateway::demo::start_sample_api;
use recipient_gateway::store::postgres::PostgresStore;
use recipient_gateway::store::test_postgres::scratch_url;
use serde_json::{Value, json};

fn main() -> std::process::ExitCode {
    run_tests(&[
        ("tags_survive_a_restart_with_sqlite", Needs::Nothing, || {
            Box::pin(tags_survive_a_restart_with_sqlite())
        }),
        (
            "postgres_conforms_to_the_store_contract",
            Needs::Postgres,
            || Box::pin(postgres_conforms_to_the_store_contract()),
        ),
        (
            "postgres_replicas_starting_together_migrate_once",
            Needs::Postgres,
            || Box::pin(postgres_replicas_starting_together_migrate_once()),
        ),
        (
            "a_postgres_database_from_before_in_row_recipients_keeps_every_tag",
            Needs::Postgres,
            || Box::pin(a_postgres_database_from_before_in_row_recipients_keeps_every_tag()),
        ),
        (
            "two_gateways_sharing_postgres_honour_each_others_tags_and_erasures_within_a_second",
            Needs::Postgres,
            || {
                Box::pin(
                    two_gateways_sharing_postgres_honour_each_others_tags_and_erasures_within_a_second(),
                )
            },
        ),
        (
            "a_store_outage_turns_readyz_red_and_leaks_nothing",
            Needs::Postgres,
            || Box::pin(a_store_outage_turns_readyz_red_and_leaks_nothing()),
        ),
        (
            "replicas_on_postgres_share_the_intake_rate_limit_without_storing_addresses",
            Needs::Postgres,
            || {
                Box::pin(
                    replicas_on_postgres_share_the_intake_rate_limit_without_storing_addresses(),
                )
            },
        ),
        (
            "postgres_over_tls_verifies_the_server_certificate_and_host_name",
            Needs::PostgresTls,
            || Box::pin(postgres_over_tls_verifies_the_server_certificate_and_host_name()),
        ),
    ])
}

fn routes(sample: std::net::SocketAddr) -> String {
    shipments_route(
        sample,
        &format!("rules = [\"{SHIPPED_RULES}/recipient.toml\"]"),
    )
}

async fn admin_status(gw: &TestGateway, path: &str) -> u16 {
    gw.admin(path).await.0
}

async fn tags_survive_a_restart_with_sqlite() {
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("tags.db");
    let config = |base: String| {
        let base = base.edit(
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
    // The tags are in the file itself, not only in a cache.
    let store = recipient_gateway::store::sqlite::SqliteStore::open(&db).unwrap();
    let (records, recipients) = recipient_gateway::store::Store::counts(&store)
        .await
        .unwrap();
    assert!(
        records >= 2 && recipients >= 1,
        "{records} record and {recipients} recipient tags"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_tag_store_entries{kind=\"record\"}"),
        "{metrics}"
    );
}

async fn two_gateways_sharing_postgres_honour_each_others_tags_and_erasures_within_a_second() {
    let url = scratch_url().await;
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = TestDir::new();
    let text = format!(
        "{}{}",
        base_config(unused_addr(), unused_addr()),
        routes(sample.addr)
    )
    .edit(
        "backend = \"memory\"",
        &format!("backend = \"postgres\"\nurl = \"{url}\""),
    );
    let path = dir.write("gateway.toml", &text);
    // Two gateway processes, each with its own cache and pool, sharing one database.
    let (one, two) = (GatewayProcess::spawn(&path), GatewayProcess::spawn(&path));
    let mut via_one = Client::connect(one.addr, &dir.ca(), Alpn::Http1).await;
    let mut via_two = Client::connect(two.addr, &dir.ca(), Alpn::Http1).await;

    let created = via_one
        .send(
            Request::post("/v1/shipments")
                .header("x-api-key", KEY_ACME)
                .header("content-type", "application/json")
                .body(body(
                    json!({"recipient": {"name": "Bo", "email": "bo@example.com"}}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    let id = created.json()["id"].as_str().unwrap().to_string();
    // Through the other gateway, acme sees its record once the tag arrives; globex never does.
    let took = within_a_second("tag honoured by the other gateway", async || {
        let other: Value = via_two
            .get(&format!("/v1/shipments/{id}"), Some(KEY_GLOBEX))
            .await
            .json();
        assert_eq!(other["recipient"]["email"], "[REDACTED]");
        let own: Value = via_two
            .get(&format!("/v1/shipments/{id}"), Some(KEY_ACME))
            .await
            .json();
        own["recipient"]["email"] == "bo@example.com"
    })
    .await;
    eprintln!("tag honoured by the other gateway after {took:?}");

    // Acme erases Bo through the first gateway. The second has the tag cached for a minute,
    // but PostgreSQL announces the erasure and it stops honouring the tag within a second.
    let erased = post_json(
        &mut via_one,
        "/v1/privacy/erasures",
        Some(KEY_ACME),
        &json!({"email": "bo@example.com"}),
    )
    .await;
    assert_eq!(erased.status, StatusCode::OK, "{:?}", erased.body);
    assert_eq!(
        erased.json()["records_deleted"],
        2,
        "by id and tracking number"
    );
    let took = within_a_second("the erased tag stops being honoured", async || {
        let own: Value = via_two
            .get(&format!("/v1/shipments/{id}"), Some(KEY_ACME))
            .await
            .json();
        own["recipient"]["email"] == "[REDACTED]"
    })
    .await;
    eprintln!("erasure honoured by the other gateway after {took:?}");
}

/// A TCP relay to PostgreSQL that a test can cut, to play a store outage.
struct Relay {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(addr: std::net::SocketAddr, target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { addr, task }
    }

    /// Closes the listener and every relayed connection.
    fn cut(self) -> std::net::SocketAddr {
        self.task.abort();
        self.addr
    }
}

async fn a_store_outage_turns_readyz_red_and_leaks_nothing() {
    let url = scratch_url().await;
    // postgres://user@HOST:PORT/db?...: route HOST:PORT through a relay we can cut.
    let authority_start = url.find('@').unwrap() + 1;
    let authority_end = authority_start + url[authority_start..].find('/').unwrap();
    let target = url[authority_start..authority_end].to_string();
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), target.clone()).await;
    let relayed = format!(
        "{}{}{}",
        &url[..authority_start],
        relay.addr,
        &url[authority_end..]
    );

    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gw = TestGateway::start_with(MockUpstream::start().await, |base| {
        let base = base.edit(
            "backend = \"memory\"",
            &format!("backend = \"postgres\"\nurl = \"{relayed}\""),
        );
        format!("{base}{}", routes(sample.addr))
    })
    .await;
    wait_until_ready(&gw).await;

    let addr = relay.cut();
    let started = std::time::Instant::now();
    while admin_status(&gw, "/readyz").await != 503 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(6),
            "/readyz stayed green"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        admin_status(&gw, "/healthz").await,
        200,
        "the process itself is up"
    );
    // Seeded records have no tag and the store cannot say otherwise: redacted for everyone.
    // (Connected only now: a connection must send its first request within the head timeout.)
    let mut client = gw.h1().await;
    let list: Value = client.get("/v1/shipments", Some(KEY_ACME)).await.json();
    for record in list["shipments"].as_array().unwrap() {
        assert_eq!(record["recipient"]["email"], "[REDACTED]", "{record}");
    }

    // The store comes back: so does readiness.
    let _relay = Relay::start(addr, target).await;
    let started = std::time::Instant::now();
    while admin_status(&gw, "/readyz").await != 200 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "/readyz stayed red"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The scenarios every store backend passes (memory and SQLite run them in their unit tests).
async fn postgres_conforms_to_the_store_contract() {
    let store = PostgresStore::open(&scratch_url().await, None)
        .await
        .unwrap();
    recipient_gateway::store::conformance::run(&store).await;
    recipient_gateway::store::conformance::run_outbox(&store).await;
}

/// Four replicas opening one fresh database at once apply each migration exactly once: the same
/// migrations one replica alone applies.
async fn postgres_replicas_starting_together_migrate_once() {
    let migrations = |url: String| async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT COUNT(*), MAX(version) FROM schema_migrations", &[])
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i32>(1))
    };
    let alone = scratch_url().await;
    PostgresStore::open(&alone, None).await.unwrap();
    let expected = migrations(alone).await;
    assert_eq!(expected.0, i64::from(expected.1), "versions 1 to the last");

    let url = scratch_url().await;
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        opens.spawn(async move { PostgresStore::open(&url, None).await.map(|_| ()) });
    }
    while let Some(opened) = opens.join_next().await {
        opened.unwrap().unwrap();
    }
    assert_eq!(migrations(url).await, expected);
}

/// A database whose tag tables are as they were before a record's recipients moved into its row
/// (one `record_recipients` row per record and recipient, migrations 1 to 4 applied) is migrated
/// at start without losing a tag or a recipient.
async fn a_postgres_database_from_before_in_row_recipients_keeps_every_tag() {
    use recipient_gateway::store::Store;
    let url = scratch_url().await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // The tag tables as migration 1 made them, and the versions applied.
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0), (3, 0), (4, 0);
             CREATE TABLE record_tags (digest BYTEA PRIMARY KEY, controller TEXT NOT NULL,
                 first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL);
             CREATE INDEX record_tags_last_seen ON record_tags (last_seen);
             CREATE TABLE record_recipients (record BYTEA NOT NULL, recipient BYTEA NOT NULL,
                 PRIMARY KEY (record, recipient));
             CREATE TABLE recipient_tags (digest BYTEA NOT NULL, controller TEXT NOT NULL,
                 first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL,
                 PRIMARY KEY (digest, controller));",
        )
        .await
        .unwrap();
    let (record, tagless, r1, r2) = ([1u8; 32], [4u8; 32], [2u8; 32], [3u8; 32]);
    for digest in [record, tagless] {
        client
            .execute(
                "INSERT INTO record_tags VALUES ($1, 'acme', 10, 20)",
                &[&&digest[..]],
            )
            .await
            .unwrap();
    }
    for recipient in [r1, r2] {
        client
            .execute(
                "INSERT INTO record_recipients VALUES ($1, $2)",
                &[&&record[..], &&recipient[..]],
            )
            .await
            .unwrap();
    }
    let store = PostgresStore::open(&url, None).await.unwrap();
    let tag = store.record(record).await.unwrap().unwrap();
    assert_eq!(
        (&*tag.controller, tag.first_seen, tag.last_seen),
        ("acme", 10, 20)
    );
    let mut recipients = tag.recipients;
    recipients.sort();
    assert_eq!(recipients, vec![r1, r2]);
    assert!(
        store
            .record(tagless)
            .await
            .unwrap()
            .unwrap()
            .recipients
            .is_empty(),
        "a record seen without recipients keeps an empty list"
    );
    // Erasure finds the record by a recipient in its list; the other record stays.
    let erased = store.erase("acme".into(), vec![r2]).await.unwrap();
    assert_eq!(erased.records, 1);
    assert!(store.record(tagless).await.unwrap().is_some());
}

/// `[store] tls = "verify-full"`: the gateway connects to PostgreSQL over TLS and serves; a CA
/// that did not sign the server's certificate, or a host name the certificate does not name,
/// fails at start with an error that says so.
async fn postgres_over_tls_verifies_the_server_certificate_and_host_name() {
    let ca = std::path::PathBuf::from(std::env::var("GATEWAY_TEST_POSTGRES_CA").unwrap());
    let url = scratch_url().await;
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = |url: &str, ca: &std::path::Path| {
        let url = url.to_string();
        let ca = ca.display().to_string();
        let routes = routes(sample.addr);
        move |base: String| {
            let store = format!(
                "backend = \"postgres\"\nurl = \"{url}\"\ntls = \"verify-full\"\nca_file = \"{ca}\""
            );
            format!("{}{routes}", base.edit("backend = \"memory\"", &store))
        }
    };

    let gw = TestGateway::start_with(MockUpstream::start().await, config(&url, &ca)).await;
    wait_until_ready(&gw).await;
    let answer = gw.h1().await.get("/v1/shipments", Some(KEY_ACME)).await;
    assert_eq!(answer.status, StatusCode::OK);
    gw.stop().await;

    // The session is encrypted: PostgreSQL says so of a connection made the same way.
    let tls = recipient_gateway::tls::client_config(Some(&ca)).unwrap();
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
    let mut settings: tokio_postgres::Config = url.parse().unwrap();
    settings.ssl_mode(tokio_postgres::config::SslMode::Require);
    let (client, connection) = settings.connect(connector).await.unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the connection is encrypted");

    // Another CA: refused, and the error names the certificate.
    let other = TestDir::new();
    let error = start_error(config(&url, &other.ca())).await;
    assert!(error.contains("certificate"), "{error}");
    eprintln!("wrong CA: {error}");

    // The right CA, but the certificate is for localhost and 127.0.0.1, not this name.
    assert!(url.contains("@127.0.0.1:"), "the default test URL: {url}");
    let wrong_host = url.replace("@127.0.0.1:", "@db.wrong.example:") + "&hostaddr=127.0.0.1";
    let error = start_error(config(&wrong_host, &ca)).await;
    assert!(
        error.contains("certificate") && error.contains("name"),
        "{error}"
    );
    eprintln!("wrong host name: {error}");
}

/// Waits (5 s at most) for `/readyz` to turn green once the serving threads are up.
async fn wait_until_ready(gw: &TestGateway) {
    let started = std::time::Instant::now();
    while admin_status(gw, "/readyz").await != 200 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "/readyz never turned green"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The error a gateway with this config fails to start with.
async fn start_error(build: impl FnOnce(String) -> String) -> String {
    let dir = TestDir::new();
    let text = build(base_config(unused_addr(), unused_addr()));
    let path = dir.write("gateway.toml", &text);
    let config = recipient_gateway::config::Config::load_with_env(&path, &|_| None).unwrap();
    match recipient_gateway::server::Server::bind(std::sync::Arc::new(config)).await {
        Ok(_) => panic!("the gateway started"),
        Err(error) => error.to_string(),
    }
}

/// With PostgreSQL the intake rate limit holds across replicas: 3 a minute means 3 in all, not 3
/// per replica. The store keeps a keyed digest per address, never the address.
async fn replicas_on_postgres_share_the_intake_rate_limit_without_storing_addresses() {
    let url = scratch_url().await;
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let text = |base: String| {
        format!(
            "{}{}\n[privacy]\nrate_limit_per_minute = 3\n",
            base.edit(
                "backend = \"memory\"",
                &format!("backend = \"postgres\"\nurl = \"{url}\""),
            ),
            routes(sample.addr)
        )
    };
    let a = TestGateway::start_with(MockUpstream::start().await, text).await;
    let b = TestGateway::start_with(MockUpstream::start().await, text).await;
    let request = json!({"type": "access", "email": "rate@example.com"});
    let mut statuses = Vec::new();
    for gw in [&a, &a, &b, &b, &a] {
        let answer = post_json(&mut gw.h1().await, "/privacy/requests", None, &request).await;
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(
        statuses,
        [202, 202, 202, 429, 429],
        "3 in all across both replicas"
    );

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let keys: Vec<Vec<u8>> = client
        .query("SELECT key FROM intake_rate", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(keys.len(), 1, "one client address");
    assert_eq!(keys[0].len(), 32, "a digest");
    let raw = b"127.0.0.1";
    assert!(
        !keys[0].windows(raw.len()).any(|w| w == raw),
        "never the address itself"
    );
}

/// Repeats `round` every 50 ms until it holds, failing once a second has passed: what a replica
/// promises about another's writes. Returns how long it took.
async fn within_a_second(what: &str, mut round: impl AsyncFnMut() -> bool) -> std::time::Duration {
    let started = std::time::Instant::now();
    while !round().await {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{what}: not within a second"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    started.elapsed()
}
