//! Tag store figures, printed as a table (not criterion: these are throughput and scale runs).
//!
//!     cargo bench --bench tags                      # writes/s per backend (memory, sqlite)
//!     GATEWAY_TEST_POSTGRES_URL=... cargo bench --bench tags      # postgres elsewhere than
//!                                                   # the local default
//!     TAG_SCALE=10000000 cargo bench --bench tags   # also: N recipient tags in SQLite, then
//!                                                   # cache-hit and cache-miss lookup cost, RSS
//!
//! It also prints what a previous tag key (a rotation) costs controller resolution when the
//! records are in the cache: the same body resolved with and without one, alternating.
//!
//! Writes go through `Store::write` in batches of 1,000, as the write-behind queue sends them;
//! each sighting is one recipient tag plus, every other one, a record tag listing it.

use std::sync::Arc;
use std::time::Instant;

use recipient_gateway::config::{Config, DEFAULT_TAG_CACHE_ENTRIES as CACHE};
use recipient_gateway::json::Document;
use recipient_gateway::proxy::resolve::{Asking, resolve};
use recipient_gateway::store::memory::MemoryStore;
use recipient_gateway::store::postgres::PostgresStore;
use recipient_gateway::store::sqlite::SqliteStore;
use recipient_gateway::store::test_postgres::{probe, scratch_url};
use recipient_gateway::store::{Digest, Store, TagWrite};
use recipient_gateway::tags::{KeyRing, Tags};
use recipient_gateway::vocabulary::Direction;

fn digest(kind: u8, i: u64) -> Digest {
    let mut d = [kind; 32];
    d[..8].copy_from_slice(&i.to_le_bytes());
    d
}

fn batch(start: u64, n: u64, controller: &Arc<str>) -> Vec<TagWrite> {
    let mut writes = Vec::with_capacity(n as usize * 2);
    for i in start..start + n {
        writes.push(TagWrite::Recipient {
            digest: digest(1, i),
            controller: controller.clone(),
            seen: 1_000 + i,
        });
        if i % 2 == 0 {
            writes.push(TagWrite::Record {
                digest: digest(2, i),
                controller: controller.clone(),
                recipients: vec![digest(1, i)],
                seen: 1_000 + i,
            });
        }
    }
    writes
}

/// Sightings per second written through `store` in batches of 1,000.
async fn writes_per_second(store: &dyn Store, total: u64) -> f64 {
    let controller: Arc<str> = "acme".into();
    let started = Instant::now();
    let mut written = 0;
    for start in (0..total).step_by(1_000) {
        let writes = batch(start, 1_000, &controller);
        written += writes.len();
        store.write(writes).await.unwrap();
    }
    written as f64 / started.elapsed().as_secs_f64()
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let dir = tempfile::tempdir().unwrap();
    println!("{:<10} {:>14}", "backend", "sightings/s");
    let memory = MemoryStore::new();
    println!(
        "{:<10} {:>14.0}",
        "memory",
        writes_per_second(&memory, 200_000).await
    );
    let sqlite = SqliteStore::open(&dir.path().join("bench.db")).unwrap();
    println!(
        "{:<10} {:>14.0}",
        "sqlite",
        writes_per_second(&sqlite, 200_000).await
    );
    match probe().await {
        Ok(()) => {
            let postgres = PostgresStore::open(&scratch_url().await, None)
                .await
                .unwrap();
            println!(
                "{:<10} {:>14.0}",
                "postgres",
                writes_per_second(&postgres, 50_000).await
            );
        }
        Err(why) => println!("postgres   not measured: {why}"),
    }

    rotation_cost().await;

    let Some(scale) = std::env::var("TAG_SCALE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let path = dir.path().join("scale.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let controller: Arc<str> = "acme".into();
    let started = Instant::now();
    for start in (0..scale).step_by(10_000) {
        let writes = (start..(start + 10_000).min(scale))
            .map(|i| TagWrite::Recipient {
                digest: digest(1, i),
                controller: controller.clone(),
                seen: 1_000,
            })
            .collect();
        store.write(writes).await.unwrap();
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "\n{scale} recipient tags written to SQLite in {:.1} s ({:.0} MiB on disk)",
        started.elapsed().as_secs_f64(),
        size as f64 / (1 << 20) as f64
    );
    let tags = Tags::new(KeyRing::new(b"bench-tag-key-0123456789", []), CACHE, store);
    let rss_before = rss_mib();
    // Recipient lists are trusted for half a second, so hits are measured right after warming.
    let warm = 1_000u64.min(scale);
    let started = Instant::now();
    for i in 0..warm {
        let found = tags.recipient(&digest(1, i * (scale / warm))).await;
        assert_eq!(found.len(), 1);
    }
    let miss_cost = started.elapsed() / warm as u32;
    let started = Instant::now();
    let rounds = 10;
    for _ in 0..rounds {
        for i in 0..warm {
            std::hint::black_box(tags.recipient(&digest(1, i * (scale / warm))).await);
        }
    }
    let hit_cost = started.elapsed() / (warm * rounds) as u32;
    println!(
        "lookups: cache miss (read from SQLite) {miss_cost:?}, cache hit {hit_cost:?}; \
         RSS {rss_before:.0} MiB before warming {warm} entries, {:.0} MiB after",
        rss_mib()
    );
}

/// Controller resolution of a 40-record list whose tags are all cached, with no previous tag key
/// and with one, in alternating rounds: the median time per body of each, and their ratio.
async fn rotation_cost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        r#"
[listen]
address = "127.0.0.1:0"
tls = false
[keys]
tag_key = "bench-tag-key-0123456789"
[[client]]
id = "acme"
kind = "customer"
name = "Acme"
api_key_sha256 = ["8649cdebee753898fd50e01408a9e438aa5090249bc3e51b65f33dce973b0873"]
[[upstream]]
name = "api"
url = "http://127.0.0.1:9"
[[route]]
name = "shipments"
path_prefix = "/v1/shipments"
upstream = "api"
records = ["$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email"]
controller_member = "customer_id"
"#,
    )
    .unwrap();
    let config = Config::load_with_env(&path, &|_| None).unwrap();
    let route = config.routes[0].clone();
    let records: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"id":"shp_{i}","tracking_number":"1Z{i:08}","customer_id":"acme","recipient":{{"email":"r{i}@example.com"}}}}"#
            )
        })
        .collect();
    let body = format!(r#"{{"shipments":[{}]}}"#, records.join(","));
    let doc = Document::parse(body.as_bytes()).unwrap();
    let nodes = route.plan.find_records(&doc).unwrap();
    let asking = Asking {
        config: &config,
        route: &route,
        caller: config.client("acme").map(|c| &**c),
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let plain = Tags::new(
        KeyRing::new(b"bench-tag-key-0123456789", []),
        CACHE,
        store.clone(),
    );
    let rotated = Tags::new(
        KeyRing::new(
            b"bench-tag-key-0123456789",
            [b"an-earlier-bench-key-0123".as_slice()],
        ),
        CACHE,
        store,
    );
    for tags in [&plain, &rotated] {
        let resolved = resolve(tags, &asking, &doc, &nodes, Direction::Response, false).await;
        tags.write(
            &resolved,
            Direction::Response,
            recipient_gateway::tags::now(),
        );
        tags.flush().await.unwrap();
    }
    let mut times = [Vec::new(), Vec::new()];
    for _round in 0..30 {
        for (which, tags) in [&plain, &rotated].into_iter().enumerate() {
            let started = Instant::now();
            for _ in 0..200 {
                let resolved =
                    resolve(tags, &asking, &doc, &nodes, Direction::Response, false).await;
                assert!(
                    resolved
                        .iter()
                        .all(|r| r.controller.is_some() && !r.rekeyed)
                );
            }
            times[which].push(started.elapsed().as_secs_f64() / 200.0);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (without, with) = (median(&mut times[0]), median(&mut times[1]));
    println!(
        "\nresolving 40 cached records: {:.1} µs without a previous tag key, {:.1} µs with one \
         ({:.3}×)",
        without * 1e6,
        with * 1e6,
        with / without
    );
}
