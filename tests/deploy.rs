//! The operator artifacts stay consistent with the product: the Grafana dashboard queries only
//! contract metrics and shows each of them, every alert has a runbook, the Kubernetes manifests
//! keep their safety settings, and the image builds what the crate needs. (`promtool` checks the
//! alert rules and the dashboard's PromQL in `scripts/check-alerts.sh`, run by `.ci/run`.)

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The metric names of reference §6.
const CONTRACT_METRICS: &[&str] = &[
    "gateway_requests_total",
    "gateway_request_duration_seconds",
    "gateway_upstream_duration_seconds",
    "gateway_upstream_errors_total",
    "gateway_auth_failures_total",
    "gateway_redactions_total",
    "gateway_blocked_total",
    "gateway_tags_written_total",
    "gateway_tag_store_entries",
    "gateway_retention_deleted_total",
    "gateway_privacy_requests_total",
    "gateway_webhook_deliveries_total",
    "gateway_privacy_outbox_pending",
    "gateway_config_reloads_total",
    "gateway_tls_handshake_errors_total",
    "gateway_connections_active",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `gateway_*` identifiers in a PromQL expression, histogram suffixes folded.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("gateway_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        found.push(base.to_string());
        rest = &tail[end..];
    }
    found
}

#[test]
fn the_dashboard_queries_only_contract_metrics_and_shows_them_all() {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/recipient-gateway.json"))
        .expect("the dashboard is valid JSON");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 30);
    assert_eq!(dashboard["uid"], "recipient-gateway");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut shown = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        assert!(panel["gridPos"]["w"].as_u64().unwrap() > 0);
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    CONTRACT_METRICS.contains(&name.as_str()),
                    "`{name}` is not a contract metric ({expr})"
                );
                shown.insert(name);
            }
        }
    }
    for metric in CONTRACT_METRICS {
        assert!(shown.contains(*metric), "no panel shows {metric}");
    }
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Requests by route",
        "Requests by client",
        "Error ratio",
        "Latency p50 / p95 / p99",
        "Upstream latency p99",
        "Upstream errors",
        "Redactions by rule and action",
        "Blocked bodies by route and reason",
        "Tag store size",
        "Privacy requests",
        "Webhook delivery outcomes",
        "Privacy outbox pending and age",
        "Config reloads",
    ] {
        assert!(titles.contains(&wanted), "missing panel {wanted}");
    }
}

#[test]
fn every_alert_has_a_runbook_and_the_required_ones_exist() {
    let alerts = read("deploy/prometheus/alerts.yml");
    let count = |needle: &str| alerts.matches(needle).count();
    assert_eq!(
        count("- alert:"),
        count("runbook:"),
        "one runbook per alert"
    );
    for alert in [
        "GatewayErrorRatioHigh",
        "GatewayLatencyP99High",
        "GatewayBlockedBodySurge",
        "GatewayWebhookDeliveriesDead",
        "GatewayPrivacyOutboxStale",
        "GatewayConfigReloadFailed",
        "GatewayStoreUnreachable",
    ] {
        assert!(alerts.contains(&format!("- alert: {alert}\n")), "{alert}");
    }
    let tests = read("deploy/prometheus/alerts.test.yml");
    assert!(tests.matches("alertname:").count() >= 3);
}

#[test]
fn the_kubernetes_manifests_keep_their_safety_settings() {
    let deployment = read("deploy/kubernetes/deployment.yaml");
    for setting in [
        "replicas: 2",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "path: /healthz",
        "path: /readyz",
        "requests:",
        "secretRef:",
    ] {
        assert!(deployment.contains(setting), "deployment lacks `{setting}`");
    }
    let config = read("deploy/kubernetes/configmap.yaml");
    assert!(config.contains("backend = \"postgres\""));
    assert!(
        !config.contains("tag_key =") && !config.contains("webhook_secret ="),
        "no inline secrets in the shipped manifests"
    );
    for (file, kind) in [
        ("service.yaml", "kind: Service"),
        ("hpa.yaml", "kind: HorizontalPodAutoscaler"),
        ("pdb.yaml", "kind: PodDisruptionBudget"),
        ("servicemonitor.yaml", "kind: ServiceMonitor"),
        ("configmap.yaml", "kind: ConfigMap"),
        ("secret.example.yaml", "kind: Secret"),
    ] {
        assert!(
            read(&format!("deploy/kubernetes/{file}")).contains(kind),
            "{file}"
        );
    }
    assert!(read("deploy/kubernetes/hpa.yaml").contains("minReplicas: 2"));
}

#[test]
fn the_image_is_non_root_with_a_healthcheck_and_no_build_tools() {
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .expect("a multi-stage build")
        .1;
    assert!(runtime.contains("USER 10001"));
    assert!(runtime.contains("HEALTHCHECK"));
    for tool in ["cargo", "build-essential", "gcc", "rustc"] {
        assert!(!runtime.contains(tool), "the runtime image mentions {tool}");
    }
    // Every file the crate embeds at build time is copied into the build stage.
    let mut embedded = Vec::new();
    collect_includes(&Path::new(ROOT).join("src"), &mut embedded);
    // Development secrets never reach an image: no command could fall back to them there.
    assert!(
        !dockerfile.contains("dev.env"),
        "the image build copies dev.env"
    );
    for path in embedded {
        let copied = path.starts_with("src/")
            || dockerfile.contains(&format!("COPY {path} "))
            || dockerfile.contains(&format!("COPY {path}\n"));
        assert!(copied, "the image build does not copy {path}");
    }
}

/// Paths (relative to the crate root) of every `include_str!`/`include_bytes!` under `dir`.
fn collect_includes(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_includes(&path, out);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for marker in ["include_str!(\"", "include_bytes!(\""] {
            for piece in text.split(marker).skip(1) {
                let relative = piece.split('"').next().unwrap();
                let resolved = path.parent().unwrap().join(relative);
                let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
                for component in resolved.strip_prefix(ROOT).unwrap().components() {
                    match component {
                        std::path::Component::ParentDir => {
                            parts.pop();
                        }
                        other => parts.push(other.as_os_str()),
                    }
                }
                let joined: Vec<String> = parts
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                out.push(joined.join("/"));
            }
        }
    }
}
