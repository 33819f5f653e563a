//! Day one in front of an API with history: `tags import` loads 100,000 existing shipments of
//! two customers, then a gateway serves them as their controllers' (privacy requests route,
//! redaction follows the imported tags); an import while it serves is honoured at once, a
//! request filed before it reaches its controller; a malformed line stops an import and
//! `--resume` finishes it without doubling anything. On SQLite and on PostgreSQL, with the
//! real binary for both the import and the gateway.
//!
//! `harness = false`: the PostgreSQL test shows as ignored when nothing answers.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    client::{Alpn, Client, post_json},
    config::{
        Edit, KEY_ACME, KEY_GLOBEX, SHIPPED_RULES, WEBHOOK_SECRET, base_config, unused_addr,
        with_privacy_contacts,
    },
    dir::TestDir,
    gateway::admin_get,
    harness::{Needs, run_tests},
    process::GatewayProcess,
    receiver::WebhookReceiver,
};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use recipient_gateway::store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;

fn main() -> std::process::ExitCode {
    run_tests(&[
        ("day_one_on_sqlite", Needs::Nothing, || {
            Box::pin(day_one_on_sqlite())
        }),
        ("day_one_on_postgres", Needs::Postgres, || {
            Box::pin(day_one_on_postgres())
        }),
    ])
}

/// Historical shipments: even numbers are acme's, odd ones globex's.
const HISTORY: u64 = 100_000;
/// Shipments imported while the gateway serves (globex's).
const LATE: u64 = 1_000;
/// The line of globex's file that is malformed on the first run.
const BAD_LINE: u64 = 20_001;

/// A shipment as the platform's API answers it: `hist_N` (acme's when N is even) or `late_N`
/// (globex's).
fn shipment(id: &str) -> Option<Value> {
    let (kind, n) = id.split_once('_')?;
    let n: u64 = n.parse().ok()?;
    let tracking = match kind {
        "hist" => format!("1ZHIST{n:08}"),
        "late" => format!("1ZLATE{n:08}"),
        _ => return None,
    };
    Some(json!({
        "id": id,
        "tracking_number": tracking,
        "status": "delivered",
        "recipient": {
            "name": format!("Person {kind} {n}"),
            "email": format!("{kind}{n}@history.example"),
            "phone": format!("+1 415 7{n:07}"),
            "address": {"street": "1 Market St", "city": "San Francisco"}
        }
    }))
}

/// The platform's API: `GET /v1/history/{id}` answers the shipment.
async fn history_api() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let id = req.uri().path().rsplit('/').next().unwrap_or("");
                    let response = match shipment(id) {
                        Some(body) => Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string()))),
                        None => Response::builder().status(404).body(Full::default()),
                    };
                    Ok::<_, Infallible>(response.unwrap())
                });
                let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, task)
}

/// Writes `kind_N` shipments for `numbers` as JSON Lines; `bad` replaces that line (1-based).
fn write_lines(path: &Path, kind: &str, numbers: impl Iterator<Item = u64>, bad: Option<u64>) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (line, n) in (1..).zip(numbers) {
        if bad == Some(line) {
            writeln!(file, "{{\"id\": \"{kind}_{n}\", oops}}").unwrap();
        } else {
            writeln!(file, "{}", shipment(&format!("{kind}_{n}")).unwrap()).unwrap();
        }
    }
}

/// `recipient-gateway tags import --config CONFIG --route history --controller C ARGS…`.
fn import(config: &Path, controller: &str, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_recipient-gateway"))
        .args(["tags", "import", "--config"])
        .arg(config)
        .args(["--route", "history", "--controller", controller])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// A gateway config on `store`: acme has a webhook at `hook`, globex an inbox; the `history`
/// route has no `controller_member`, so only tags say who controls a record.
fn config(api: SocketAddr, hook: SocketAddr, store: &str) -> String {
    let base = base_config(api, unused_addr()).edit("backend = \"memory\"\n", store);
    assert!(base.contains(store), "{base}");
    let edited = with_privacy_contacts(&base, hook);
    format!(
        r#"{edited}
[[upstream]]
name = "history"
url = "http://{api}"

[[route]]
name = "history"
path_prefix = "/v1/history"
upstream = "history"
records = ["$"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
rules = ["{SHIPPED_RULES}/recipient.toml"]
"#
    )
}

/// The summary line's "imported N records" count.
fn imported(stdout: &str) -> u64 {
    let line = stdout.lines().next().unwrap_or_default();
    line.strip_prefix("imported ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line: {stdout}"))
}

async fn file_request(gateway: SocketAddr, dir: &TestDir, email: &str, tracking: &str) -> Value {
    let mut client = Client::connect(gateway, &dir.ca(), Alpn::Http1).await;
    let body = json!({"type": "delete", "email": email, "tracking_number": tracking});
    let answer = post_json(&mut client, "/privacy/requests", None, &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    answer.json()
}

/// Sums the series of a metric whose line starts with `prefix` on the admin listener.
async fn metric(admin: SocketAddr, prefix: &str) -> f64 {
    let (_, text) = admin_get(admin, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The unmatched requests the admin listener lists.
async fn unmatched(admin: SocketAddr) -> Value {
    let (status, body) = admin_get(admin, "/admin/privacy/unmatched").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn day_one(store: &str, open: impl AsyncFnOnce() -> Box<dyn Store>) {
    let dir = TestDir::new();
    let (api, _api_task) = history_api().await;
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await;
    let config_path = dir.write("gateway.toml", &config(api, receiver.addr, store));

    // 1 and 5: the history, acme's half in one file and globex's in another whose first run
    // stops at a malformed line.
    let (acme_file, globex_file) = (
        dir.path().join("acme.jsonl"),
        dir.path().join("globex.jsonl"),
    );
    write_lines(&acme_file, "hist", (0..HISTORY).step_by(2), None);
    write_lines(
        &globex_file,
        "hist",
        (1..HISTORY).step_by(2),
        Some(BAD_LINE),
    );
    let acme_path = acme_file.to_str().unwrap();
    let globex_path = globex_file.to_str().unwrap();
    let (ok, out, err) = import(&config_path, "acme", &[acme_path]);
    assert!(ok, "{out}{err}");
    assert_eq!(imported(&out), HISTORY / 2, "{out}");
    let (ok, out, err) = import(&config_path, "globex", &[globex_path]);
    assert!(!ok, "a malformed line stops the import: {out}{err}");
    assert!(
        err.contains(&format!("line {BAD_LINE}: it is not valid JSON")),
        "{err}"
    );
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(imported(&out), BAD_LINE - 1, "committed up to the bad line");
    write_lines(&globex_file, "hist", (1..HISTORY).step_by(2), None);
    let (ok, out, err) = import(&config_path, "globex", &["--resume", globex_path]);
    assert!(ok, "{out}{err}");
    assert_eq!(imported(&out), HISTORY / 2 - (BAD_LINE - 1), "{out}");
    assert!(
        out.contains(&format!("resumed after line {}", BAD_LINE - 1)),
        "{out}"
    );
    let (ok, out, err) = import(&config_path, "globex", &[globex_path]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("nothing new"),
        "importing again writes nothing: {out}"
    );
    {
        let store = open().await;
        let (records, recipients) = store.counts().await.unwrap();
        assert_eq!(
            (records, recipients),
            (2 * HISTORY, 2 * HISTORY),
            "two keys and two identifiers per shipment, none doubled"
        );
    }

    let gateway = GatewayProcess::spawn(&config_path);

    // 2: a historical recipient's request names her controller and reaches its webhook.
    let answer = file_request(
        gateway.addr,
        &dir,
        "hist42@history.example",
        "1ZHIST00000042",
    )
    .await;
    assert_eq!(answer["controllers"][0]["name"], "Acme", "{answer}");
    let deliveries = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(
        deliveries[0].body["request_type"], "delete",
        "{:?}",
        deliveries[0].body
    );
    assert!(deliveries[0].signed);

    // 3: through a route without controller_member, the tags alone decide.
    let mut client = Client::connect(gateway.addr, &dir.ca(), Alpn::Http1).await;
    let as_globex = client
        .get("/v1/history/hist_42", Some(KEY_GLOBEX))
        .await
        .json();
    assert_eq!(as_globex["recipient"]["email"], "[REDACTED]", "{as_globex}");
    let as_acme = client
        .get("/v1/history/hist_42", Some(KEY_ACME))
        .await
        .json();
    assert_eq!(as_acme["recipient"]["email"], "hist42@history.example");
    let own = client
        .get("/v1/history/hist_43", Some(KEY_GLOBEX))
        .await
        .json();
    assert_eq!(own["recipient"]["email"], "hist43@history.example");

    // 4: before the late import, globex reads its own record as a stranger's (looked up and not
    // found), and a recipient's request finds nobody: it waits.
    let before = client
        .get("/v1/history/late_7", Some(KEY_GLOBEX))
        .await
        .json();
    assert_eq!(before["recipient"]["email"], "[REDACTED]", "{before}");
    let waiting = file_request(
        gateway.addr,
        &dir,
        "late7@history.example",
        "1ZLATE00000007",
    )
    .await;
    assert!(waiting.get("controllers").is_none(), "{waiting}");
    let id = waiting["request_id"].as_str().unwrap().to_string();
    assert_eq!(
        metric(gateway.admin, "gateway_privacy_requests_unmatched_total").await,
        1.0
    );
    let listed = unmatched(gateway.admin).await;
    assert_eq!(listed["waiting"], 1, "{listed}");
    assert_eq!(listed["requests"][0]["id"], id.as_str());
    assert_eq!(listed["requests"][0]["state"], "waiting");
    assert!(
        !listed.to_string().contains("late7"),
        "no personal data: {listed}"
    );

    let late_file = dir.path().join("late.jsonl");
    write_lines(&late_file, "late", 0..LATE, None);
    let (ok, out, err) = import(&config_path, "globex", &[late_file.to_str().unwrap()]);
    let imported_at = Instant::now();
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 matched now"), "{out}");
    // Honoured within a second, although the gateway had looked it up and found nothing.
    loop {
        let now = client
            .get("/v1/history/late_7", Some(KEY_GLOBEX))
            .await
            .json();
        if now["recipient"]["email"] == "late7@history.example" {
            break;
        }
        assert!(
            imported_at.elapsed() < Duration::from_secs(1),
            "not honoured within 1 s: {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The waiting request is in globex's inbox, verified by its tracking number.
    let deadline = Instant::now() + Duration::from_secs(60);
    let entry = loop {
        let inbox = client
            .get("/v1/privacy/requests", Some(KEY_GLOBEX))
            .await
            .json();
        let found = inbox["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["request_id"] == id.as_str())
            .cloned();
        if let Some(entry) = found {
            break entry;
        }
        assert!(
            Instant::now() < deadline,
            "not in the inbox within a minute: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(entry["verified"], true, "{entry}");
    assert_eq!(
        entry["subject"]["email"], "late7@history.example",
        "{entry}"
    );
    let listed = unmatched(gateway.admin).await;
    assert_eq!(listed["waiting"], 0, "{listed}");
    drop(gateway);
}

async fn day_one_on_sqlite() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("tags.db");
    let store = format!("backend = \"sqlite\"\npath = \"{}\"\n", path.display());
    day_one(&store, async || {
        Box::new(recipient_gateway::store::sqlite::SqliteStore::open(&path).unwrap())
            as Box<dyn Store>
    })
    .await;
}

async fn day_one_on_postgres() {
    let url = recipient_gateway::store::test_postgres::scratch_url().await;
    let store = format!("backend = \"postgres\"\nurl = \"{url}\"\n");
    day_one(&store, async || {
        Box::new(
            recipient_gateway::store::postgres::PostgresStore::open(&url, None)
                .await
                .unwrap(),
        ) as Box<dyn Store>
    })
    .await;
}
