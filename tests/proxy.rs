//! The proxy core over real TLS sockets: routing, auth, header hygiene, protocols, upstream
//! failures, limits, streaming and drain.

mod common;

use std::time::{Duration, Instant};

use common::{
    client::{Alpn, Client, empty, read_until_close, write_all},
    config::{Edit, KEY_ACME, KEY_GLOBEX, PLAIN_ROUTES},
    dir::TestDir,
    gateway::TestGateway,
    harness::rss_bytes,
    upstream::{Canned, MockUpstream, streamed_body},
    wait::eventually,
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_longest_prefix_at_segment_boundaries() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut client = gw.h1().await;

    // `/api/public/...` takes the longer, unauthenticated prefix.
    let answer = client.get("/api/public/status?x=1", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["path"], "/api/public/status");
    assert_eq!(answer.json()["query"], "x=1");

    // `/api/...` needs a key.
    let answer = client.get("/api/shipments", Some(KEY_ACME)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["path"], "/api/shipments");
    let answer = client.get("/api", Some(KEY_ACME)).await;
    assert_eq!(answer.status, StatusCode::OK);

    // No route: `/apix` is not under `/api`, and `/nothing` matches nothing.
    for path in ["/apix", "/nothing", "/"] {
        let before = gw.upstream.count();
        let answer = client.get(path, Some(KEY_ACME)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.error_code(), "no_route");
        assert_eq!(gw.upstream.count(), before, "nothing forwarded for {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_and_encoded_slashes_are_refused() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut client = gw.h1().await;
    for path in [
        "/api/public/../shipments",
        "/api/public/%2e%2e/shipments",
        "/api/public%2Fx",
        "/api/./x",
    ] {
        let answer = client.get(path, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(answer.error_code(), "invalid_path");
    }
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn both_credential_headers_authenticate_and_bad_ones_get_401() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut client = gw.h1().await;

    let bearer = client.get("/api/a", Some(KEY_GLOBEX)).await;
    assert_eq!(bearer.status, StatusCode::OK);
    assert_eq!(bearer.json()["headers"]["x-gateway-client"][0], "globex");

    let api_key = client
        .send(
            Request::get("/api/b")
                .header("x-api-key", KEY_ACME)
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(api_key.status, StatusCode::OK);
    assert_eq!(api_key.json()["headers"]["x-gateway-client"][0], "acme");

    let seen = gw.upstream.count();
    for (name, value) in [
        (None, ""),
        (Some("authorization"), "Bearer wrong-key"),
        (Some("x-api-key"), "wrong-key"),
        (Some("authorization"), "Basic YWNtZTprZXk="),
    ] {
        let mut request = Request::get("/api/c");
        if let Some(name) = name {
            request = request.header(name, value);
        }
        let answer = client.send(request.body(empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name:?} {value}");
        assert_eq!(answer.error_code(), "unauthorized");
        assert!(answer.header("www-authenticate").is_some());
        assert!(
            !String::from_utf8_lossy(&answer.body).contains("wrong-key"),
            "the key is not echoed"
        );
    }
    // A wrong key is refused even on a public route.
    let answer = client.get("/api/public/x", Some("wrong-key")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        gw.upstream.count(),
        seen,
        "no refused request reached the upstream"
    );

    // Two different credentials: 400.
    let answer = client
        .send(
            Request::get("/api/d")
                .header("authorization", format!("Bearer {KEY_ACME}"))
                .header("x-api-key", KEY_GLOBEX)
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "ambiguous_credentials");

    let metrics = gw.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gateway_auth_failures_total{route=\"api\"}")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn header_hygiene() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut client = gw.h1().await;
    let answer = client
        .send(
            Request::get("/api/echo")
                .header("authorization", format!("Bearer {KEY_ACME}"))
                .header("x-api-key", KEY_ACME)
                .header(
                    "connection",
                    "x-gateway-client, x-request-id, x-private, keep-alive",
                )
                .header("x-private", "named in Connection")
                .header("keep-alive", "timeout=5")
                .header("te", "trailers")
                .header("proxy-authorization", "Basic eA==")
                .header("x-gateway-client", "globex")
                .header("x-gateway-role", "admin")
                .header("x-request-id", "client-chosen-id.1")
                .header("accept", "application/json")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen = answer.json();
    let headers = seen["headers"].as_object().unwrap();
    for gone in [
        "authorization",
        "x-api-key",
        "x-private",
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-gateway-role",
    ] {
        assert!(!headers.contains_key(gone), "{gone} was forwarded: {seen}");
    }
    // The gateway's own headers survive the client naming them in Connection, and a spoofed
    // X-Gateway-Client is replaced, not appended to.
    assert_eq!(
        seen["headers"]["x-gateway-client"],
        serde_json::json!(["acme"])
    );
    assert_eq!(
        seen["headers"]["x-request-id"],
        serde_json::json!(["client-chosen-id.1"])
    );
    assert_eq!(seen["headers"]["accept"][0], "application/json");
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(seen["headers"]["x-forwarded-for"][0], "127.0.0.1");
    // The response carries the request id; the upstream's hop-by-hop headers are dropped.
    assert_eq!(answer.header("x-request-id"), Some("client-chosen-id.1"));
    assert_eq!(answer.header("x-upstream-public"), Some("visible"));
    assert!(answer.header("x-upstream-private").is_none());
    assert!(answer.header("keep-alive").is_none());

    // An insane request id is replaced by a generated one, the same up and down.
    let answer = client
        .send(
            Request::get("/api/echo")
                .header("x-api-key", KEY_ACME)
                .header("x-request-id", "bad id with spaces")
                .body(empty())
                .unwrap(),
        )
        .await;
    let id = answer.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(answer.json()["headers"]["x-request-id"][0], id.as_str());

    // A public route forwards no client header at all.
    let answer = client.get("/api/public/echo", None).await;
    assert!(answer.json()["headers"].get("x-gateway-client").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_is_negotiated_by_alpn_and_proxied_to_an_h1_upstream() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut h2 = gw.h2().await;
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    let answer = h2.get("/api/over-h2", Some(KEY_ACME)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen = answer.json();
    assert_eq!(seen["path"], "/api/over-h2");
    assert_eq!(seen["headers"]["x-gateway-client"][0], "acme");
    assert!(seen["headers"].get("authorization").is_none());
    // Several concurrent streams on one connection.
    let mut handles = Vec::new();
    for i in 0..8 {
        let mut client = gw.h2().await;
        handles.push(tokio::spawn(async move {
            client
                .get(&format!("/api/s{i}"), Some(KEY_ACME))
                .await
                .status
        }));
    }
    for handle in handles {
        assert_eq!(handle.await.unwrap(), StatusCode::OK);
    }
    let h1 = gw.h1().await;
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

/// A TLS 1.1 ClientHello (no supported_versions extension, TLS 1.0/1.1 suites only).
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0, 0, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02, 0, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_1_1_is_refused() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    write_all(&mut tcp, &tls11_client_hello()).await;
    let reply = read_until_close(&mut tcp, Duration::from_secs(3)).await;
    // A fatal alert record (21) — protocol_version (70) or handshake_failure (40) — never a
    // ServerHello (22).
    assert_eq!(reply.len(), 7, "one alert record, got {reply:?}");
    assert_eq!((reply[0], reply[5]), (21, 2), "fatal alert, got {reply:?}");
    assert!([40, 70].contains(&reply[6]), "refusal alert, got {reply:?}");
    // The connection is closed and the failure counted.
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_tls_handshake_errors_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_is_502_and_slow_is_504() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut client = gw.h1().await;

    let answer = client.get("/broken/x", Some(KEY_ACME)).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.error_code(), "upstream_unavailable");

    let started = Instant::now();
    let answer = client.get("/api/slow", Some(KEY_ACME)).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.error_code(), "upstream_timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_millis(2900),
        "{waited:?}"
    );

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"gateway_upstream_errors_total{upstream="down",kind="connect"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_upstream_errors_total{upstream="mock",kind="timeout"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_requests_total{route="broken",client="acme",status="502"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_upstream_duration_seconds_bucket{upstream=\"mock\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_request_duration_seconds_bucket{route=\"api\""),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_headers_are_cut_off() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut stream = gw.raw().await;
    write_all(
        &mut stream,
        b"GET /api/public/x HTTP/1.1\r\nHost: localhost\r\n",
    )
    .await;
    let started = Instant::now();
    // Trickle a header byte every 300 ms; the 1 s header timeout still ends it.
    let mut closed = false;
    for _ in 0..20 {
        if tokio::io::AsyncWriteExt::write_all(&mut stream, b"X")
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let reply = read_until_close(&mut stream, Duration::from_millis(300)).await;
        if !reply.is_empty() {
            let text = String::from_utf8_lossy(&reply);
            assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "connection still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_and_connect_are_refused() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut stream = gw.raw().await;
    write_all(
        &mut stream,
        b"GET /api/public/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    let reply =
        String::from_utf8_lossy(&read_until_close(&mut stream, Duration::from_secs(2)).await)
            .into_owned();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("upgrade_refused"), "{reply}");
    let mut stream = gw.raw().await;
    write_all(
        &mut stream,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .await;
    let reply =
        String::from_utf8_lossy(&read_until_close(&mut stream, Duration::from_secs(2)).await)
            .into_owned();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_is_400_and_closes() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    for request in [
        &b"POST /api/public/x HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST /api/public/x HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /api/public/x HTTP/1.1\r\nHost: l\r\nContent-Length: +5\r\n\r\nhello",
    ] {
        let mut stream = gw.raw().await;
        write_all(&mut stream, request).await;
        let reply = String::from_utf8_lossy(&read_until_close(&mut stream, Duration::from_secs(2)).await).into_owned();
        assert!(reply.starts_with("HTTP/1.1 400"), "{}: {reply}", String::from_utf8_lossy(request));
        assert!(!reply.contains("\r\n\r\nHTTP/1.1"), "one answer, then the connection closed: {reply}");
    }
    assert_eq!(
        gw.upstream.count(),
        0,
        "nothing ambiguous reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_stream_both_ways_in_bounded_memory() {
    const SIZE: u64 = 256 * 1024 * 1024;
    // `request_timeout_ms` covers the whole request, upload included: give a debug build on a
    // busy machine time to move 256 MiB (the test is about memory, not speed).
    let gw = TestGateway::start_with(MockUpstream::start().await, |base| {
        format!(
            "{}{PLAIN_ROUTES}",
            base.edit("request_timeout_ms = 1500", "request_timeout_ms = 60000")
        )
    })
    .await;
    let mut client = gw.h1().await;
    // Warm up pools and buffers before measuring.
    assert_eq!(
        client.get("/api/public/warm", None).await.status,
        StatusCode::OK
    );
    let baseline = rss_bytes();

    let upload = client
        .send(
            Request::post("/api/public/upload")
                .body(streamed_body(SIZE / (64 * 1024), 64 * 1024))
                .unwrap(),
        )
        .await;
    assert_eq!(upload.status, StatusCode::OK);
    assert_eq!(upload.json()["bytes"], SIZE);

    let response = client
        .send_streaming(
            Request::get(format!("/api/public/download/{SIZE}"))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut peak = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
        if received % (16 * 1024 * 1024) < 16 * 1024 {
            peak = peak.max(rss_bytes());
        }
    }
    assert_eq!(received, SIZE);
    let growth = peak.max(rss_bytes()).saturating_sub(baseline);
    assert!(
        growth < 48 * 1024 * 1024,
        "RSS grew by {} MiB for a {} MiB body",
        growth >> 20,
        SIZE >> 20
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let upstream = MockUpstream::start().await;
    // A request timeout long enough for the 3 s `/slow` answer.
    let mut gw = TestGateway::start_with(upstream, |base| {
        format!(
            "{}{PLAIN_ROUTES}",
            base.edit("request_timeout_ms = 1500", "request_timeout_ms = 5000")
        )
    })
    .await;
    let mut client = gw.h1().await;
    let seen = gw.upstream.count();
    let in_flight = tokio::spawn(async move { client.get("/api/public/slow", None).await });
    gw.upstream.wait_seen(seen + 1).await;
    let serve = gw.begin_stop();
    // New connections are no longer accepted while the old request finishes.
    let refused = async || tokio::net::TcpStream::connect(gw.addr).await.err();
    eventually(Duration::from_secs(2), refused, || {
        "the listener still accepts during the drain".into()
    })
    .await;
    assert!(
        !in_flight.is_finished(),
        "the slow request is still in flight"
    );
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), serve)
        .await
        .expect("drained")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_health_and_metrics() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut client = gw.h1().await;
    client.get("/api/public/m", None).await;
    let metrics = gw.metrics().await;
    for name in [
        "gateway_requests_total{route=\"api-public\",client=\"anonymous\",status=\"200\"}",
        "gateway_connections_active",
        "# TYPE gateway_request_duration_seconds histogram",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    // Labels come from config, never from paths, queries or keys.
    client
        .get(
            "/api/public/jane@example.com?email=ann%40example.org",
            Some(KEY_ACME),
        )
        .await;
    client
        .get("/nothing/bob@example.net", Some("wrong-key"))
        .await;
    let metrics = gw.metrics().await;
    for secret in ["jane", "example.", "ann%40", "bob@", KEY_ACME, "wrong-key"] {
        assert!(!metrics.contains(secret), "`{secret}` reached /metrics");
    }
    for (path, status) in [("/healthz", 200), ("/readyz", 200), ("/nope", 404)] {
        assert_eq!(gw.admin(path).await.0, status, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_or_stalled_request_bodies_are_the_clients_fault() {
    // Its own upstream name, so metrics of other tests in this process cannot interfere.
    let gw = TestGateway::start_with(MockUpstream::start().await, |base| {
        format!("{base}{PLAIN_ROUTES}").edit("\"mock\"", "\"mock-body\"")
    })
    .await;
    let mut stream = gw.raw().await;
    write_all(
        &mut stream,
        b"POST /api/public/upload HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await;
    let reply =
        String::from_utf8_lossy(&read_until_close(&mut stream, Duration::from_secs(3)).await)
            .into_owned();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("bad_request_body"), "{reply}");

    // A body that stops arriving: 408 after the 1 s body read timeout (before the 1.5 s request
    // timeout), and not counted against the upstream.
    let mut stream = gw.raw().await;
    write_all(
        &mut stream,
        b"POST /api/public/upload HTTP/1.1\r\nHost: l\r\nContent-Length: 100\r\n\r\nonly-part",
    )
    .await;
    let started = Instant::now();
    let reply =
        String::from_utf8_lossy(&read_until_close(&mut stream, Duration::from_secs(6)).await)
            .into_owned();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request_body_timeout"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let metrics = gw.metrics().await;
    // Its series exist from the start, at 0, and stay there.
    let upstream_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with(r#"gateway_upstream_errors_total{upstream="mock-body""#))
        .collect();
    assert!(!upstream_errors.is_empty(), "{metrics}");
    assert!(
        upstream_errors.iter().all(|l| l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"gateway_requests_total{route="api-public",client="anonymous",status="408"}"#
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_get_431_and_nothing_is_forwarded() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    let mut stream = gw.raw().await;
    let big = "x".repeat(70 * 1024);
    write_all(
        &mut stream,
        format!("GET /api/public/x HTTP/1.1\r\nHost: l\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    let reply =
        String::from_utf8_lossy(&read_until_close(&mut stream, Duration::from_secs(3)).await)
            .into_owned();
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert_eq!(gw.upstream.count(), 0);
    // Just under the limit is fine.
    let mut client = gw.h1().await;
    let answer = client
        .send(
            Request::get("/api/public/x")
                .header("x-big", "y".repeat(40 * 1024))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_wait_until_one_closes() {
    let gw = TestGateway::start_with(MockUpstream::start().await, |base| {
        format!(
            "{}{PLAIN_ROUTES}",
            base.edit("[limits]\n", "[limits]\nmax_connections = 2\n")
        )
    })
    .await;
    let mut first = gw.h1().await;
    let mut second = gw.h1().await;
    assert_eq!(
        first.get("/api/public/1", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        second.get("/api/public/2", None).await.status,
        StatusCode::OK
    );
    // A third connection is not served while two are open...
    let addr = gw.addr;
    let ca = gw.dir.ca();
    let third = tokio::spawn(async move {
        let mut client = Client::connect(addr, &ca, Alpn::Http1).await;
        client.get("/api/public/3", None).await.status
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "the third connection was served past the limit"
    );
    // ...and is once one of them closes.
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(3), third)
        .await
        .expect("served after a close")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    drop(second);
}

/// Upstream connections are kept alive and reused by later requests, over plain HTTP and over
/// TLS verified against the upstream's own CA. An upstream whose certificate does not verify is
/// a 502 and never sees the request.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_reused_and_https_upstreams_verified() {
    // Its own folder, so its certificate comes from another CA than the gateway's.
    let upstream_dir = TestDir::new();
    let secure = MockUpstream::start_tls(&upstream_dir).await;
    let port = secure.addr.port();
    let ca = upstream_dir.ca();
    let gw = TestGateway::start_with(MockUpstream::start().await, |base| {
        format!(
            r#"{base}
[[upstream]]
name = "secure"
url = "https://localhost:{port}/base"
ca_file = "{ca}"

[[upstream]]
name = "untrusted"
url = "https://localhost:{port}"
# The gateway's own development CA, which did not sign the upstream's certificate.
ca_file = "certs/ca.crt"
{PLAIN_ROUTES}
[[route]]
name = "secure"
path_prefix = "/secure"
upstream = "secure"

[[route]]
name = "untrusted"
path_prefix = "/untrusted"
upstream = "untrusted"
"#,
            ca = ca.display()
        )
    })
    .await;
    let mut client = gw.h1().await;

    for i in 0..10 {
        let answer = client.get(&format!("/api/x?{i}"), Some(KEY_ACME)).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(gw.upstream.connections(), 1, "one keep-alive connection");

    for i in 0..10 {
        let answer = client.get(&format!("/secure/x?{i}"), Some(KEY_ACME)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json()["path"], "/base/secure/x");
    }
    assert_eq!(secure.connections(), 1, "one keep-alive TLS connection");
    let seen = secure.last();
    assert_eq!(seen["headers"]["host"][0], format!("localhost:{port}"));
    assert_eq!(
        seen["headers"]["x-forwarded-host"][0], "localhost",
        "the client's Host"
    );

    let answer = client.get("/untrusted/x", Some(KEY_ACME)).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.error_code(), "upstream_unavailable");
    assert_eq!(secure.count(), 10, "the request never reached the upstream");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"gateway_upstream_errors_total{upstream="untrusted",kind="connect"}"#),
        "{metrics}"
    );
}

/// An upstream that closes its connection after each response (`Connection: close`) costs a
/// new connection per request, never a failed request.
#[tokio::test(flavor = "multi_thread")]
async fn upstreams_that_close_after_each_response_are_reconnected() {
    let gw = TestGateway::start(PLAIN_ROUTES).await;
    gw.upstream
        .set_canned(Canned::json(r#"{"ok":true}"#).header("connection", "close"));
    let mut client = gw.h1().await;
    for _ in 0..5 {
        let answer = client.get("/api/canned", Some(KEY_ACME)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json()["ok"], true);
    }
    assert_eq!(gw.upstream.connections(), 5);
}

/// HTTP/2 connections that never send a request, or that stop sending, are closed after their
/// deadlines even though they answer keep-alive pings; a client that keeps sending is served
/// throughout.
#[tokio::test(flavor = "multi_thread")]
async fn idle_h2_connections_are_closed_and_busy_ones_keep_being_served() {
    // The base config's header_read_timeout_ms (1 s) bounds the wait for a first request.
    let gw = TestGateway::start_with(MockUpstream::start().await, |base| {
        let base = base.edit("[limits]\n", "[limits]\nidle_timeout_ms = 1500\n");
        format!("{base}{PLAIN_ROUTES}")
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(gw.h2().await);
    }
    let mut quiet = gw.h2().await;
    assert_eq!(
        quiet.get("/api/public/x", None).await.status,
        StatusCode::OK
    );

    let mut busy = gw.h2().await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let answer = busy.get("/api/public/x", None).await;
        assert_eq!(answer.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        !busy.is_closed(),
        "a client that keeps sending stays connected"
    );
    let open = silent.iter().filter(|c| !c.is_closed()).count();
    assert_eq!(open, 0, "connections that never sent a request are closed");
    assert!(
        quiet.is_closed(),
        "a connection idle past idle_timeout_ms is closed"
    );
    let metrics = gw.metrics().await;
    let closed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_idle_connections_closed_total "))
        .expect("the counter is exported")
        .parse()
        .unwrap();
    assert!(closed >= 201.0, "{closed}");
}

/// Reads a response head from a raw stream (up to the blank line).
async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("a response head in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "the connection closed: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A route with `allow_upgrade` tunnels a WebSocket upgrade after authentication: bytes go both
/// ways untouched and the tunnel is counted. The same upgrade without a key, or on a route
/// without `allow_upgrade`, is refused and reaches nothing.
#[tokio::test(flavor = "multi_thread")]
async fn upgrades_are_tunnelled_only_where_allowed() {
    use tokio::io::AsyncReadExt;
    let gw = TestGateway::start_with(MockUpstream::start().await, |base| {
        format!(
            "{base}{PLAIN_ROUTES}\n[[route]]\nname = \"live\"\npath_prefix = \"/live\"\n\
             upstream = \"mock\"\nallow_upgrade = true\n"
        )
    })
    .await;
    let upgrade = |path: &str, key: Option<&str>| {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
    };

    let mut stream = gw.raw().await;
    write_all(&mut stream, upgrade("/live/ws", Some(KEY_ACME)).as_bytes()).await;
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for message in ["hello tunnel", "tracking update 2"] {
        write_all(&mut stream, message.as_bytes()).await;
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
            .await
            .expect("echoed in time")
            .unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
    let seen = gw.upstream.last();
    assert_eq!(seen["path"], "/live/ws");
    assert_eq!(seen["headers"]["upgrade"][0], "websocket");
    assert_eq!(seen["headers"]["x-gateway-client"][0], "acme");
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    assert!(seen["headers"]["sec-websocket-key"][0].as_str().is_some());
    drop(stream);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"gateway_tunnels_total{route="live"} 1"#),
        "{metrics}"
    );

    let before = gw.upstream.count();
    for (path, key, status) in [
        ("/live/ws", None, "401"),
        ("/api/ws", Some(KEY_ACME), "400"),
    ] {
        let mut stream = gw.raw().await;
        write_all(&mut stream, upgrade(path, key).as_bytes()).await;
        let head = read_head(&mut stream).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {head}"
        );
    }
    assert_eq!(
        gw.upstream.count(),
        before,
        "refused upgrades reach nothing"
    );
}
