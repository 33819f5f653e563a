//! Hostile clients over real sockets: HTTP/1.1 smuggling and resource attacks, and HTTP/2 frames
//! written by hand (a client library would refuse to send them): content-length mismatches,
//! connection-specific headers, rapid reset and CONTINUATION floods. Each attack must fail
//! cleanly, forward nothing it should not, keep memory bounded and leave a well-behaved client
//! served.

mod common;

use std::time::{Duration, Instant};

use common::{
    client::{read_until_close, tls_connect, write_all},
    config::{KEY_ACME, PLAIN_ROUTES, SHIPPED_RULES},
    gateway::TestGateway,
    harness::rss_bytes,
};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Plain routes plus an inspected one in front of the mock upstream.
fn routes() -> String {
    format!(
        r#"{PLAIN_ROUTES}
[[route]]
name = "echo"
path_prefix = "/echo"
upstream = "mock"
records = ["$"]
recipient = "recipient"
recipient_identifiers = ["email"]
rules = ["{SHIPPED_RULES}/recipient.toml"]
"#
    )
}

// ---------- HTTP/1.1 ----------

#[tokio::test]
async fn a_request_pipelined_after_a_body_is_its_own_request() {
    let gw = TestGateway::start(&routes()).await;
    let mut raw = gw.raw().await;
    let auth = format!("Authorization: Bearer {KEY_ACME}\r\n");
    let pipelined = format!(
        "POST /api/upload HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\n\r\nhello\
         GET /api/second HTTP/1.1\r\nHost: x\r\n{auth}\r\n\
         POST /echo/x HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}\
         GET /api/third HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    );
    write_all(&mut raw, pipelined.as_bytes()).await;
    let answer = String::from_utf8_lossy(&read_until_close(&mut raw, Duration::from_secs(5)).await)
        .into_owned();
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 4, "{answer}");
    let seen: Vec<(String, u64)> = gw
        .upstream
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap().to_string(),
                v["body_len"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("/api/upload".to_string(), 5),
            ("/api/second".to_string(), 0),
            ("/echo/x".to_string(), 2),
            ("/api/third".to_string(), 0)
        ]
    );
}

#[tokio::test]
async fn expect_100_continue_without_credentials_gets_401_and_no_continue() {
    let gw = TestGateway::start(&routes()).await;
    let mut raw = gw.raw().await;
    write_all(
        &mut raw,
        b"POST /api/upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await;
    let answer = String::from_utf8_lossy(&read_until_close(&mut raw, Duration::from_secs(2)).await)
        .into_owned();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert_eq!(gw.upstream.count(), 0);
    // With a valid key the client is invited to send its body.
    let mut raw = gw.raw().await;
    let head = format!(
        "POST /api/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_ACME}\r\n\
         Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    );
    write_all(&mut raw, head.as_bytes()).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), raw.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 100 Continue"));
}

#[tokio::test]
async fn h2c_upgrade_smuggling_is_refused_and_nothing_is_forwarded() {
    let gw = TestGateway::start(&routes()).await;
    let mut raw = gw.raw().await;
    let request = format!(
        "GET /api/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_ACME}\r\n\
         Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n\
         PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    );
    write_all(&mut raw, request.as_bytes()).await;
    let answer = String::from_utf8_lossy(&read_until_close(&mut raw, Duration::from_secs(2)).await)
        .into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(!answer.contains("HTTP/1.1 101"), "{answer}");
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let gw = TestGateway::start(&routes()).await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let large = format!("X-Big: {}\r\n", "a".repeat(64 * 1024));
    for extra in [many, large] {
        let mut raw = gw.raw().await;
        let request = format!(
            "GET /api/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_ACME}\r\n{extra}\r\n"
        );
        let _ = raw.write_all(request.as_bytes()).await;
        let _ = raw.flush().await;
        let answer =
            String::from_utf8_lossy(&read_until_close(&mut raw, Duration::from_secs(2)).await)
                .into_owned();
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    }
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let gw = TestGateway::start(&routes()).await;
    let mut raw = gw.raw().await;
    let request = format!(
        "GET /api/download/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_ACME}\r\n\r\n",
        512u64 << 20
    );
    write_all(&mut raw, request.as_bytes()).await;
    // Read nothing until the gateway gives up on this client (the test config's body timeout is
    // 1 s) and lets go of the download it was relaying.
    gw.upstream.wait_closed(1, Duration::from_secs(10)).await;
    let started = Instant::now();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => total += n as u64,
            Err(_) => break false,
        }
    };
    assert!(closed, "the gateway closed the stalled connection");
    assert!(
        total < 64 << 20,
        "only what was buffered arrived: {total} bytes"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Others are still served.
    let mut client = gw.h1().await;
    assert_eq!(
        client.get("/api/x", Some(KEY_ACME)).await.status,
        StatusCode::OK
    );
}

// ---------- HTTP/2 frames by hand ----------

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Header fields as HPACK literals without indexing, no Huffman: what any decoder must accept.
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn request_fields<'a>(method: &'a str, path: &'a str, auth: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", method),
        (":scheme", "https"),
        (":path", path),
        (":authority", "localhost"),
        ("authorization", auth),
    ]
}

/// A TLS connection that spoke the HTTP/2 preface and an empty SETTINGS frame.
async fn h2_raw(gw: &TestGateway) -> TlsStream<TcpStream> {
    let mut stream = tls_connect(gw.addr, &gw.dir.ca(), vec![b"h2".to_vec()]).await;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.unwrap();
    stream
}

/// Frames read until `until` matches one, the connection ends, or `timeout`: (kind, flags,
/// stream, payload).
async fn read_frames(
    stream: &mut TlsStream<TcpStream>,
    timeout: Duration,
    until: impl Fn(u8, u32, &[u8]) -> bool,
) -> (Vec<(u8, u8, u32, Vec<u8>)>, bool) {
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while buf.len() >= 9 {
            let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let flags = buf[4];
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            let done = until(kind, stream, &payload);
            frames.push((kind, flags, stream, payload));
            if done {
                return (frames, false);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (frames, true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (frames, false),
        }
    }
}

/// The stream was refused: RST_STREAM on it, or the connection's GOAWAY.
fn refused(frames: &[(u8, u8, u32, Vec<u8>)], stream: u32) -> bool {
    frames
        .iter()
        .any(|(kind, _, id, _)| (*kind == RST_STREAM && *id == stream) || *kind == GOAWAY)
}

#[tokio::test]
async fn h2_content_length_mismatch_is_refused_before_an_h1_upstream_sees_a_body() {
    let gw = TestGateway::start(&routes()).await;
    let auth = format!("Bearer {KEY_ACME}");
    for (path, inspected) in [("/echo/x", true), ("/api/upload", false)] {
        let mut h2 = h2_raw(&gw).await;
        let mut fields = request_fields("POST", path, &auth);
        fields.push(("content-type", "application/json"));
        fields.push(("content-length", "10"));
        let mut out = frame(HEADERS, END_HEADERS, 1, &hpack(&fields));
        out.extend(frame(DATA, END_STREAM, 1, b"{}   "));
        h2.write_all(&out).await.unwrap();
        let (frames, _) = read_frames(&mut h2, Duration::from_secs(3), |kind, id, _| {
            (kind == RST_STREAM && id == 1) || kind == GOAWAY || (kind == HEADERS && id == 1)
        })
        .await;
        let reset = refused(&frames, 1);
        let answered_400 = frames
            .iter()
            .any(|(kind, _, id, p)| *kind == HEADERS && *id == 1 && !p.is_empty());
        assert!(reset || answered_400, "{path}: {frames:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if inspected {
            assert_eq!(gw.upstream.count(), 0, "nothing of it was forwarded");
        } else {
            // Streamed: the upstream may have seen the head, never a complete 10-byte body.
            let complete = gw
                .upstream
                .seen
                .lock()
                .unwrap()
                .iter()
                .any(|v| v["body_len"] == 10);
            assert!(
                !complete,
                "a mismatched body never reaches the upstream whole"
            );
        }
    }
}

#[tokio::test]
async fn h2_connection_specific_headers_are_refused() {
    let gw = TestGateway::start(&routes()).await;
    let auth = format!("Bearer {KEY_ACME}");
    for (name, value) in [
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("keep-alive", "timeout=5"),
        ("te", "gzip"),
    ] {
        let mut h2 = h2_raw(&gw).await;
        let mut fields = request_fields("GET", "/api/x", &auth);
        fields.push((name, value));
        h2.write_all(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &hpack(&fields),
        ))
        .await
        .unwrap();
        let (frames, closed) = read_frames(&mut h2, Duration::from_secs(3), |kind, id, _| {
            (kind == RST_STREAM && id == 1) || kind == GOAWAY
        })
        .await;
        assert!(refused(&frames, 1) || closed, "{name}: {frames:?}");
    }
    assert_eq!(gw.upstream.count(), 0);
}

/// Resident memory of this process (the gateway runs in it).
fn rss_mib() -> u64 {
    rss_bytes() >> 20
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_stopped_and_others_are_still_served() {
    let gw = TestGateway::start(&routes()).await;
    let before = rss_mib();
    let auth = format!("Bearer {KEY_ACME}");
    let mut h2 = h2_raw(&gw).await;
    let fields = hpack(&request_fields("GET", "/api/slow", &auth));
    let mut flood = Vec::new();
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &fields));
        flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let attack = tokio::spawn(async move {
        let _ = h2.write_all(&flood).await;
        read_frames(&mut h2, Duration::from_secs(5), |kind, _, _| kind == GOAWAY).await
    });
    // A well-behaved client keeps working meanwhile.
    let mut good = gw.h2().await;
    for _ in 0..5 {
        assert_eq!(
            good.get("/api/x", Some(KEY_ACME)).await.status,
            StatusCode::OK
        );
    }
    let (frames, closed) = attack.await.unwrap();
    let goaway = frames.iter().any(|f| f.0 == GOAWAY);
    assert!(goaway || closed, "the flooding connection is shut down");
    let growth = rss_mib().saturating_sub(before);
    eprintln!("rapid reset: GOAWAY {goaway}, RSS growth {growth} MiB");
    assert!(growth < 64, "memory stayed bounded: +{growth} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_off_and_others_are_still_served() {
    let gw = TestGateway::start(&routes()).await;
    let before = rss_mib();
    let auth = format!("Bearer {KEY_ACME}");
    let mut h2 = h2_raw(&gw).await;
    h2.write_all(&frame(
        HEADERS,
        0,
        1,
        &hpack(&request_fields("GET", "/api/x", &auth)),
    ))
    .await
    .unwrap();
    let block = hpack(&[("x-flood", &"a".repeat(8 * 1024))]);
    let attack = tokio::spawn(async move {
        let mut sent = 0usize;
        // Up to 64 MiB of header block that never ends.
        for _ in 0..8 * 1024 {
            if h2
                .write_all(&frame(CONTINUATION, 0, 1, &block))
                .await
                .is_err()
            {
                break;
            }
            sent += block.len();
        }
        let (frames, closed) =
            read_frames(&mut h2, Duration::from_secs(3), |kind, _, _| kind == GOAWAY).await;
        (sent, frames.iter().any(|f| f.0 == GOAWAY) || closed)
    });
    let mut good = gw.h2().await;
    for _ in 0..5 {
        assert_eq!(
            good.get("/api/x", Some(KEY_ACME)).await.status,
            StatusCode::OK
        );
    }
    let (sent, stopped) = attack.await.unwrap();
    let growth = rss_mib().saturating_sub(before);
    eprintln!(
        "CONTINUATION flood: {} KiB accepted before the cut, RSS growth {growth} MiB",
        sent >> 10
    );
    assert!(stopped, "the flooding connection is shut down");
    assert!(sent < 16 << 20, "cut off early, after {sent} bytes");
    assert!(growth < 64, "memory stayed bounded: +{growth} MiB");
    assert_eq!(
        gw.upstream.count(),
        5,
        "only the good client's requests were forwarded"
    );
}
