//! What an operator sees in a real Prometheus (Debian's `prometheus`) scraping the gateway every
//! second with the project's alert rules: every dashboard query has a series on an idle gateway,
//! and the first rejected reload, the first dead-lettered webhook and the first upstream error
//! after a start each show (alerts pending or firing, the panel's rate above 0), because their
//! series exist at 0 from the start.
//!
//! `harness = false`: without `prometheus` on the `PATH` the test shows as ignored, never as
//! passed; `.ci/run` installs it and sets `GATEWAY_TEST_REQUIRE_PROMETHEUS`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    client::post_json,
    config::{KEY_ACME, unused_addr},
    harness::{Needs, run_tests},
    privacy::{PrivacySetup, privacy_setup},
};
use http::StatusCode;
use serde_json::{Value, json};

fn main() -> std::process::ExitCode {
    run_tests(&[(
        "first_failures_alert_and_every_panel_has_series",
        Needs::Prometheus,
        || Box::pin(first_failures_alert_and_every_panel_has_series()),
    )])
}

/// A Prometheus server on a free port, scraping `target` every second with the alert rules.
struct Prometheus {
    process: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: recipient-gateway\n    static_configs:\n      \
             - targets: ['{target}']\n",
            rules = rules.display()
        );
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        let port = unused_addr().port();
        let process = Command::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            process,
            port,
            _dir: dir,
        }
    }

    /// The result vector of an instant query (empty when Prometheus does not answer yet).
    async fn query(&self, expr: &str) -> Vec<Value> {
        let url = format!(
            "/api/v1/query?query={}",
            form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
        );
        let Some(body) = self.get(&url).await else {
            return Vec::new();
        };
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The body of a 200 answer to `GET url`; `None` while Prometheus is not listening yet.
    async fn get(&self, url: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let request = format!("GET {url} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n")?;
        let status = head.lines().next()?;
        status.contains(" 200 ").then(|| body.to_string())
    }

    /// Waits until `expr` has a series for which `accept` holds; panics after `limit`.
    async fn wait_for(&self, expr: &str, limit: Duration, accept: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let result = self.query(expr).await;
            if result.iter().any(&accept) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{expr}` never showed: {result:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The value of an instant-vector sample.
fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every query of the shipped Grafana dashboard, with its variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/recipient-gateway.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((
                    panel["title"].as_str().unwrap_or_default().to_string(),
                    expr.replace("$job", "recipient-gateway")
                        .replace("$__rate_interval", "1m"),
                ));
            }
        }
    }
    queries
}

async fn first_failures_alert_and_every_panel_has_series() {
    let PrivacySetup {
        gw,
        receiver,
        _sample,
    } = privacy_setup("rate_limit_per_minute = 1000\ndelivery_max_attempts = 1").await;
    let prometheus = Prometheus::start(gw.admin);
    prometheus
        .wait_for(
            "up{job=\"recipient-gateway\"}",
            Duration::from_secs(30),
            |s| value(s) == 1.0,
        )
        .await;
    // Rates need two samples of each series: wait until the gateway has been scraped twice.
    prometheus
        .wait_for(
            "count_over_time(up{job=\"recipient-gateway\"}[5m])",
            Duration::from_secs(30),
            |s| value(s) >= 2.0,
        )
        .await;

    // An idle gateway: every panel's query returns a series.
    let mut empty = Vec::new();
    for (panel, expr) in dashboard_queries() {
        if prometheus.query(&expr).await.is_empty() {
            empty.push(format!("{panel}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "queries with no series:\n{}",
        empty.join("\n")
    );

    // The first rejected reload after a start raises its alert.
    let path = gw.dir.path().join("gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\nnot valid toml = = =\n")).unwrap();
    let (status, _) = gw.reload(None).await;
    assert_eq!(status, 422);
    prometheus
        .wait_for(
            "ALERTS{alertname=\"GatewayConfigReloadFailed\"}",
            Duration::from_secs(20),
            |_| true,
        )
        .await;

    // The first dead-lettered webhook raises its alert.
    receiver.answer(500, None, None);
    let seeded = gw.h1().await.get("/v1/shipments", Some(KEY_ACME)).await;
    assert_eq!(seeded.status, StatusCode::OK);
    let filed = post_json(
        &mut gw.h1().await,
        "/privacy/requests",
        None,
        &json!({"type": "access", "email": "jane.doe@example.com"}),
    )
    .await;
    assert_eq!(filed.status, StatusCode::ACCEPTED);
    prometheus
        .wait_for(
            "ALERTS{alertname=\"GatewayWebhookDeliveriesDead\"}",
            Duration::from_secs(30),
            |_| true,
        )
        .await;

    // The first upstream error shows in the upstream errors panel: a route to an upstream
    // nothing listens on, added by a reload.
    std::fs::write(
        &path,
        format!(
            "{text}\n[[route]]\nname = \"broken\"\npath_prefix = \"/broken\"\nupstream = \"down\"\n"
        ),
    )
    .unwrap();
    let (status, body) = gw.reload(None).await;
    assert_eq!(status, 200, "{body}");
    let broken = gw.h1().await.get("/broken/x", Some(KEY_ACME)).await;
    assert_eq!(broken.status, StatusCode::BAD_GATEWAY);
    let (_, upstream_errors) = dashboard_queries()
        .into_iter()
        .find(|(panel, _)| panel == "Upstream errors")
        .expect("the dashboard has an upstream errors panel");
    prometheus
        .wait_for(&upstream_errors, Duration::from_secs(20), |s| {
            s["metric"]["kind"] == "connect" && value(s) > 0.0
        })
        .await;
}
