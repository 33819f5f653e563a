//! What operators rely on: every contract metric with its labels, hot reload by both triggers
//! (good, bad, restart-only, token, in-flight requests, certificates), and logs that never carry
//! bodies, query strings, credentials or recipient identifiers.

mod common;

use std::time::Duration;

use common::{
    client::{
        Alpn, Client, TestBody, body, empty, post_json, read_until_close, tls_client_config,
        write_all,
    },
    config::{
        Edit, KEY_ACME, KEY_GLOBEX, PLAIN_ROUTES, SHIPPED_RULES, WEBHOOK_SECRET, base_config,
        shipments_route, unused_addr,
    },
    dir::TestDir,
    gateway::{TestGateway, admin_get},
    process::{GatewayProcess, assert_access_line},
    receiver::WebhookReceiver,
    upstream::{Canned, MockUpstream},
    wait::eventually,
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use recipient_gateway::demo::start_sample_api;
use serde_json::json;

fn config_path(gw: &TestGateway) -> std::path::PathBuf {
    gw.dir.path().join("gateway.toml")
}

fn edit_config(gw: &TestGateway, edit: impl FnOnce(String) -> String) {
    let path = config_path(gw);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

const EXTRA_ROUTE: &str = r#"
[[route]]
name = "added"
path_prefix = "/added"
upstream = "mock"
"#;

#[tokio::test]
async fn a_valid_reload_applies_and_an_invalid_one_keeps_the_old_config() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut client = gw.h1().await;
    assert_eq!(
        client.get("/added/x", Some(KEY_ACME)).await.status,
        StatusCode::NOT_FOUND
    );

    edit_config(&gw, |text| format!("{text}{EXTRA_ROUTE}"));
    let (status, body) = gw.reload(None).await;
    assert_eq!((status, &body), (200, &json!({"status": "reloaded"})));
    assert_eq!(
        client.get("/added/x", Some(KEY_ACME)).await.status,
        StatusCode::OK,
        "the open connection serves the new route"
    );

    // Invalid: the old config keeps serving; the error names the file, key and line.
    edit_config(&gw, |text| {
        text.edit("name = \"added\"", "name = \"added\"\nupsteam = \"x\"")
    });
    let (status, body) = gw.reload(None).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "reload_rejected");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gateway.toml:") && message.contains("upsteam"),
        "{message}"
    );
    assert_eq!(
        client.get("/added/x", Some(KEY_ACME)).await.status,
        StatusCode::OK
    );

    // A change that needs a restart is refused as a whole.
    edit_config(&gw, |text| {
        text.edit("upsteam = \"x\"\n", "")
            .replacen("[limits]\n", "[limits]\nmax_connections = 7\n", 1)
            .edit(EXTRA_ROUTE, "")
            + "\n[runtime]\nworkers = 5\n"
    });
    let (status, body) = gw.reload(None).await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_connections, runtime.workers, which only a restart can apply"),
        "{body}"
    );
    assert_eq!(
        client.get("/added/x", Some(KEY_ACME)).await.status,
        StatusCode::OK,
        "nothing of the refused config was applied"
    );

    let metrics = gw.metrics().await;
    assert!(metrics.contains(r#"gateway_config_reloads_total{outcome="ok"}"#));
    assert!(metrics.contains(r#"gateway_config_reloads_total{outcome="error"}"#));
}

#[tokio::test]
async fn admin_endpoints_require_the_token_when_one_is_set() {
    let upstream = MockUpstream::start().await;
    let gw = TestGateway::start_with(upstream, |base| {
        let base = base.replacen(
            "[admin]\naddress = \"127.0.0.1:0\"\n",
            "[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"admin-secret-token\"\n",
            1,
        );
        format!("{base}{PLAIN_ROUTES}")
    })
    .await;
    assert_eq!(gw.reload(None).await.0, 401);
    assert_eq!(gw.reload(Some("wrong")).await.0, 401);
    assert_eq!(gw.reload(Some("admin-secret-token")).await.0, 200);
    // Probes and scrapers need no token.
    assert_eq!(gw.admin("/metrics").await.0, 200);
    assert_eq!(gw.admin("/readyz").await.0, 200);
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_config_they_started_with() {
    let upstream = MockUpstream::start().await;
    let gw = TestGateway::start_with(upstream, |base| {
        format!(
            "{}{PLAIN_ROUTES}",
            base.edit("request_timeout_ms = 1500", "request_timeout_ms = 8000")
        )
    })
    .await;
    let mut slow = gw.h1().await;
    let seen = gw.upstream.count();
    let in_flight = tokio::spawn(async move { slow.get("/api/slow", Some(KEY_ACME)).await });
    gw.upstream.wait_seen(seen + 1).await;
    // The new config sends /api to an upstream that is down.
    edit_config(&gw, |text| {
        text.edit(
            "name = \"api\"\npath_prefix = \"/api\"\nupstream = \"mock\"",
            "name = \"api\"\npath_prefix = \"/api\"\nupstream = \"down\"",
        )
    });
    assert_eq!(gw.reload(None).await.0, 200);
    let fresh = gw.h1().await.get("/api/now", Some(KEY_ACME)).await;
    assert_eq!(
        fresh.status,
        StatusCode::BAD_GATEWAY,
        "new requests use the new config"
    );
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the in-flight request finished on its config"
    );
}

#[tokio::test]
async fn a_reload_picks_up_new_certificates_for_new_connections() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let old_ca = gw.dir.path().join("old-ca.crt");
    std::fs::copy(gw.dir.ca(), &old_ca).unwrap();
    let kept = gw.h1().await;
    // New key pair from a new CA, written over the configured files.
    recipient_gateway::tls::write_dev_certs(&gw.dir.path().join("certs"), true).unwrap();
    assert_eq!(gw.reload(None).await.0, 200);

    let mut fresh = Client::connect(gw.addr, &gw.dir.ca(), Alpn::Http1).await;
    assert_eq!(
        fresh.get("/api/x", Some(KEY_ACME)).await.status,
        StatusCode::OK
    );
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(tls_client_config(&old_ca, vec![]))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await;
    assert!(
        refused.is_err(),
        "new connections present the new certificate"
    );
    drop(kept);
}

#[test]
fn sighup_reloads_the_binary_and_a_bad_config_keeps_serving() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = TestDir::new();
    let upstream = runtime.block_on(MockUpstream::start());
    let text = format!(
        "{}{PLAIN_ROUTES}",
        base_config(upstream.addr, unused_addr())
    );
    let path = dir.write("gateway.toml", &text);
    let mut gateway = GatewayProcess::spawn(&path);
    let addr = gateway.addr;
    let get = |path: &str| {
        runtime.block_on(async {
            let mut client = Client::connect(addr, &dir.ca(), Alpn::Http1).await;
            client.get(path, Some(KEY_ACME)).await.status
        })
    };
    assert_eq!(get("/added/x"), StatusCode::NOT_FOUND);

    std::fs::write(&path, format!("{text}{EXTRA_ROUTE}")).unwrap();
    gateway.signal("-HUP");
    gateway.wait_for_log("config reloaded");
    assert_eq!(get("/added/x"), StatusCode::OK);

    std::fs::write(
        &path,
        format!("{text}{EXTRA_ROUTE}\n[[route]]\nname = \"broken\"\n"),
    )
    .unwrap();
    gateway.signal("-HUP");
    let rejected = gateway.wait_for_log("config reload rejected; the old config keeps serving");
    assert!(
        rejected["error"].as_str().unwrap().contains("gateway.toml"),
        "{rejected}"
    );
    assert_eq!(get("/added/x"), StatusCode::OK);
    gateway.signal("-TERM");
    assert!(gateway.wait().0.success());
}

/// Every metric of reference §6, with exactly its labels, after traffic that exercises each.
#[tokio::test]
async fn every_contract_metric_is_exported_with_its_labels() {
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await;
    let sample = start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (hook, api) = (receiver.addr, sample.addr);
    let gw = TestGateway::start_with(MockUpstream::start().await, move |base| {
        let base = base.edit(
            "name = \"Acme\"\n",
            &format!(
                "name = \"Acme\"\nwebhook_url = \"http://{hook}/h\"\nwebhook_secret = \"{WEBHOOK_SECRET}\"\n"
            ),
        );
        let route = shipments_route(
            api,
            &format!("controller_member = \"customer_id\"\nrules = [\"{SHIPPED_RULES}/recipient.toml\"]"),
        );
        format!("{base}{PLAIN_ROUTES}{route}")
    })
    .await;
    let mut client = gw.h1().await;
    client.get("/api/x", Some(KEY_ACME)).await;
    client.get("/api/x", None).await;
    client.get("/broken/x", Some(KEY_ACME)).await;
    client.get("/v1/shipments", Some(KEY_GLOBEX)).await;
    let blocked = client
        .send(
            Request::post("/v1/shipments")
                .header("authorization", format!("Bearer {KEY_ACME}"))
                .header("content-type", "text/plain")
                .body(body("hello"))
                .unwrap(),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let filed = post_json(
        &mut gw.h1().await,
        "/privacy/requests",
        None,
        &json!({"type": "access", "email": "jane.doe@example.com"}),
    )
    .await;
    assert_eq!(filed.status, StatusCode::ACCEPTED);
    receiver.wait_for(1, Duration::from_secs(5)).await;
    // A TLS handshake that fails.
    let mut raw = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    write_all(&mut raw, b"GET / HTTP/1.1\r\n\r\n").await;
    read_until_close(&mut raw, Duration::from_secs(2)).await;
    assert_eq!(gw.reload(None).await.0, 200);
    // The webhook's outcome is counted once the outbox has it.
    gw.attempts_recorded(1).await;

    let metrics = gw.metrics().await;
    let expected: &[(&str, &[&str])] = &[
        ("gateway_requests_total", &["route", "client", "status"]),
        ("gateway_request_duration_seconds_bucket", &["route", "le"]),
        (
            "gateway_upstream_duration_seconds_bucket",
            &["upstream", "le"],
        ),
        ("gateway_upstream_errors_total", &["upstream", "kind"]),
        ("gateway_auth_failures_total", &["route"]),
        ("gateway_redactions_total", &["route", "rule", "action"]),
        ("gateway_blocked_total", &["route", "reason"]),
        ("gateway_tags_written_total", &["kind"]),
        ("gateway_tag_store_entries", &["kind"]),
        ("gateway_retention_deleted_total", &["kind"]),
        ("gateway_privacy_requests_total", &["type", "verified"]),
        ("gateway_webhook_deliveries_total", &["outcome"]),
        ("gateway_privacy_outbox_pending", &[]),
        ("gateway_config_reloads_total", &["outcome"]),
        ("gateway_tls_handshake_errors_total", &[]),
        ("gateway_connections_active", &[]),
    ];
    for (name, labels) in expected {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"));
        let found: Vec<&str> = match line.split_once('{') {
            Some((_, rest)) => rest
                .split_once('}')
                .unwrap()
                .0
                .split(',')
                .map(|pair| pair.split_once('=').unwrap().0)
                .collect(),
            None => Vec::new(),
        };
        assert_eq!(&found, labels, "{line}");
    }
    // Histograms are in seconds, with sub-millisecond and multi-second buckets.
    assert!(
        metrics.contains(r#"gateway_request_duration_seconds_bucket{route="api",le="0.0001"}"#)
    );
    assert!(metrics.contains(r#"gateway_request_duration_seconds_bucket{route="api",le="10"}"#));
    // Label values come from config and fixed words, never from paths.
    assert!(!metrics.contains("/api/x"));
}

/// A run of the binary that sends bodies, query strings, credentials and recipient identifiers:
/// none of them reaches stdout, and every request has one access line with the §6 fields.
#[test]
fn logs_carry_no_body_query_credential_or_identifier() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = TestDir::new();
    let sample = runtime
        .block_on(start_sample_api("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let route = shipments_route(
        sample.addr,
        &format!(
            "controller_member = \"customer_id\"\nrules = [\"{SHIPPED_RULES}/recipient.toml\"]"
        ),
    );
    let text = format!(
        "{}{PLAIN_ROUTES}{route}",
        base_config(sample.addr, unused_addr())
    );
    let path = dir.write("gateway.toml", &text);
    let gateway = GatewayProcess::spawn(&path);
    let canaries = [
        "canary-query-value",
        "canary.person@example.com",
        "+1 555 0100 4242",
        "15550100424",
        "Canary Person",
        "canary-body-text",
        "jane.doe@example.com",
        KEY_ACME,
        KEY_GLOBEX,
    ];
    let requests = runtime.block_on(async {
        let mut client = Client::connect(gateway.addr, &dir.ca(), Alpn::Http1).await;
        let mut sent = 0;
        let mut send = |request: Request<TestBody>| {
            sent += 1;
            request
        };
        let requests = vec![
            send(
                Request::get("/api/x?email=canary.person@example.com&q=canary-query-value")
                    .header("authorization", format!("Bearer {KEY_ACME}"))
                    .body(empty())
                    .unwrap(),
            ),
            send(
                Request::post("/v1/shipments")
                    .header("x-api-key", KEY_ACME)
                    .header("content-type", "application/json")
                    .body(body(
                        json!({"recipient": {"name": "Canary Person", "email": "canary.person@example.com",
                                             "phone": "+1 555 0100 4242"}, "note": "canary-body-text"})
                        .to_string(),
                    ))
                    .unwrap(),
            ),
            send(
                Request::get("/v1/shipments")
                    .header("authorization", format!("Bearer {KEY_GLOBEX}"))
                    .body(empty())
                    .unwrap(),
            ),
            send(
                Request::post("/v1/shipments")
                    .header("authorization", format!("Bearer {KEY_ACME}"))
                    .header("content-type", "application/json")
                    .body(body("{\"recipient\": {\"email\": \"canary.person@example.com\"}, \"x\": 1, \"x\": 2}"))
                    .unwrap(),
            ),
            send(
                Request::post("/privacy/requests")
                    .header("content-type", "application/json")
                    .body(body(
                        json!({"type": "delete", "email": "canary.person@example.com",
                               "phone": "+1 555 0100 4242", "details": "canary-body-text"})
                        .to_string(),
                    ))
                    .unwrap(),
            ),
            // The recipient page's form, filed and refused (a refusal writes the typed values
            // back into the page, never into the log).
            send(
                Request::post("/privacy/requests")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body(
                        "type=access&email=canary.person%40example.com&phone=%2B1+555+0100+4242\
                         &details=canary-body-text",
                    ))
                    .unwrap(),
            ),
            send(
                Request::post("/privacy/requests")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body("type=access&email=Canary+Person&details=canary-body-text"))
                    .unwrap(),
            ),
            send(
                Request::get("/v1/recipients/canary.person@example.com")
                    .header("authorization", "Bearer wrong-key-canary-query-value")
                    .body(empty())
                    .unwrap(),
            ),
        ];
        for request in requests {
            client.send(request).await;
        }
        sent
    });
    gateway.signal("-TERM");
    let (status, lines) = gateway.wait();
    assert!(status.success());
    let all = lines
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for canary in canaries {
        assert!(!all.contains(canary), "`{canary}` reached the log:\n{all}");
    }
    let access: Vec<_> = lines.iter().filter(|l| l["msg"] == "request").collect();
    assert_eq!(access.len(), requests, "one access line per request");
    for line in access {
        assert_access_line(line);
    }
}

/// A refusal says why, for the operator: an inspected route whose upstream answers
/// `application/octet-stream` gets 502 `uninspectable_response` whose message names the media
/// type, and the access line carries the same `reason` as `gateway_blocked_total`. Nothing of the
/// upstream's body goes in either.
#[test]
fn a_refusal_says_why_in_the_answer_and_in_the_access_line() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = TestDir::new();
    let upstream = runtime.block_on(MockUpstream::start());
    upstream.set_canned(
        Canned::json("binary-canary-bytes").header("content-type", "application/octet-stream"),
    );
    let text = format!(
        "{}\n[[route]]\nname = \"inspected\"\npath_prefix = \"/inspected\"\nupstream = \"mock\"\n\
         records = [\"$\"]\n",
        base_config(upstream.addr, unused_addr())
    );
    let path = dir.write("gateway.toml", &text);
    let gateway = GatewayProcess::spawn(&path);
    let answer = runtime.block_on(async {
        let mut client = Client::connect(gateway.addr, &dir.ca(), Alpn::Http1).await;
        client.get("/inspected/canned", Some(KEY_ACME)).await
    });
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.error_code(), "uninspectable_response");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("media type"), "{message}");
    assert!(!message.contains("binary-canary-bytes"), "{message}");
    gateway.signal("-TERM");
    let (_, lines) = gateway.wait();
    let access = lines
        .iter()
        .find(|l| l["msg"] == "request")
        .expect("an access line");
    assert_access_line(access);
    assert_eq!(access["status"], 502, "{access}");
    assert_eq!(access["reason"], "media_type", "{access}");
    assert!(
        !access.to_string().contains("binary-canary-bytes"),
        "{access}"
    );
}

/// The access line is written when the answer's body ends and says how it ended: `bytes` sent,
/// `outcome` (`ok`, `upstream_body_error`, `client_closed`, `timeout`) and `duration_ms` to the
/// last byte, each over real sockets; `gateway_response_bodies_total` counts the outcomes.
#[test]
fn the_access_line_tells_how_each_answer_ended() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = TestDir::new();
    let mock = runtime.block_on(MockUpstream::start());
    // An upstream that promises 100 bytes and sends 10: then it closes (`/cut`) or stalls
    // (`/stall`).
    let raw = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let raw_addr = raw.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let Ok((mut socket, _)) = raw.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 100\r\n\r\n0123456789")
                    .await;
                if head.windows(6).any(|w| w == b"/stall") {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            });
        }
    });
    let text = format!(
        "{}{PLAIN_ROUTES}\n[[upstream]]\nname = \"raw\"\nurl = \"http://{raw_addr}\"\n\n\
         [[route]]\nname = \"raw\"\npath_prefix = \"/raw\"\nupstream = \"raw\"\n",
        base_config(mock.addr, unused_addr())
    );
    let path = dir.write("gateway.toml", &text);
    let gateway = GatewayProcess::spawn(&path);
    let metrics = runtime.block_on(async {
        let get = |path: &str| {
            Request::get(path)
                .header("x-api-key", KEY_ACME)
                .body(empty())
                .unwrap()
        };
        let mut client = Client::connect(gateway.addr, &dir.ca(), Alpn::Http1).await;
        let ok = client.get("/api/download/5000", Some(KEY_ACME)).await;
        assert_eq!((ok.status, ok.body.len()), (StatusCode::OK, 5000));
        for path in ["/raw/cut", "/raw/stall"] {
            let mut client = Client::connect(gateway.addr, &dir.ca(), Alpn::Http1).await;
            let response = client.send_streaming(get(path)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let _ =
                tokio::time::timeout(Duration::from_secs(4), response.into_body().collect()).await;
        }
        // The client reads the head and one frame of 50 MB, then goes away.
        let mut client = Client::connect(gateway.addr, &dir.ca(), Alpn::Http1).await;
        let response = client
            .send_streaming(get("/api/download/50000000"))
            .await
            .unwrap();
        let mut body = response.into_body();
        let _ = body.frame().await;
        drop(body);
        drop(client);
        // The gateway counts the abandoned body when it notices the client gone.
        let counted = async || {
            let metrics = admin_get(gateway.admin, "/metrics").await.1;
            metrics
                .contains("gateway_response_bodies_total{outcome=\"client_closed\"} 1")
                .then_some(metrics)
        };
        eventually(Duration::from_secs(5), counted, || {
            "the abandoned body was not counted".into()
        })
        .await
    });
    for outcome in ["ok", "upstream_body_error", "client_closed", "timeout"] {
        assert!(
            metrics.contains(&format!(
                "gateway_response_bodies_total{{outcome=\"{outcome}\"}} 1"
            )),
            "{outcome}: {metrics}"
        );
    }
    gateway.signal("-TERM");
    let (_, lines) = gateway.wait();
    let line = |path: &str| {
        lines
            .iter()
            .find(|l| l["msg"] == "request" && l["path"] == path)
            .unwrap_or_else(|| panic!("no access line for {path}: {lines:?}"))
            .clone()
    };
    let ok = line("/api/download/5000");
    assert_access_line(&ok);
    assert_eq!((&ok["outcome"], &ok["bytes"]), (&json!("ok"), &json!(5000)));
    let cut = line("/raw/cut");
    assert_eq!(
        (&cut["status"], &cut["outcome"]),
        (&json!(200), &json!("upstream_body_error"))
    );
    assert_eq!(cut["bytes"], 10, "{cut}");
    let stalled = line("/raw/stall");
    assert_eq!(stalled["outcome"], "timeout", "{stalled}");
    assert!(
        stalled["duration_ms"].as_f64().unwrap() >= 1000.0,
        "to the last byte: {stalled}"
    );
    let closed = line("/api/download/50000000");
    assert_eq!(closed["outcome"], "client_closed", "{closed}");
    assert!(closed["bytes"].as_u64().unwrap() < 50_000_000, "{closed}");
}
