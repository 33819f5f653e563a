//! Who the client is, over real sockets: `X-Forwarded-For` holds the peer only unless hops are
//! trusted, a PROXY protocol header (v1 or v2) from a listed balancer names the client for the
//! upstream and the privacy intake's rate limit, nobody else's PROXY header is read, and a
//! verified client certificate reaches the upstream as Envoy's `X-Forwarded-Client-Cert`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::{
    client::empty,
    config::{KEY_ACME, PLAIN_ROUTES},
    gateway::TestGateway,
    upstream::MockUpstream,
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// Starts a gateway over the mock upstream with `listen` keys added and the plain routes plus
/// the privacy intake limited to one request a minute.
async fn gateway(listen: &str) -> TestGateway {
    let listen = listen.to_string();
    TestGateway::start_with(MockUpstream::start().await, move |base| {
        format!(
            "{}\n[privacy]\nrate_limit_per_minute = 1\n{PLAIN_ROUTES}",
            base.replacen("[listen]\n", &format!("[listen]\n{listen}\n"), 1)
        )
    })
    .await
}

/// A TCP connection from `source` (a loopback address) to the gateway, with `preface` written
/// first (a PROXY header, or nothing).
async fn connect_from(source: &str, gw: &TestGateway, preface: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{source}:0").parse::<SocketAddr>().unwrap())
        .unwrap();
    let mut stream = socket.connect(gw.addr).await.unwrap();
    stream.write_all(preface).await.unwrap();
    stream
}

/// Sends one request over TLS on `tcp`, presenting `client_cert` if given; `None` when the TLS
/// handshake or the request fails.
async fn request_over(
    tcp: TcpStream,
    gw: &TestGateway,
    request: Request<Full<Bytes>>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Option<(u16, Value)> {
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(gw.dir.ca()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// `GET /api/public/x` with client claims about its address, from `source` after `preface`.
async fn public_get(gw: &TestGateway, source: &str, preface: &[u8]) -> Option<(u16, Value)> {
    let tcp = connect_from(source, gw, preface).await;
    request_over(tcp, gw, get("/api/public/x"), None).await
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .body(Full::default())
        .unwrap()
}

fn intake() -> Request<Full<Bytes>> {
    Request::post("/privacy/requests")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({"type": "access", "email": "someone@example.com"}).to_string(),
        )))
        .unwrap()
}

fn proxy_v2(source: &str) -> Vec<u8> {
    use ppp::v2;
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (
            format!("{source}:40000").parse::<SocketAddr>().unwrap(),
            "127.0.0.1:8443".parse::<SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_is_the_edge_unless_hops_are_trusted() {
    let gw = gateway("").await;
    let (status, echo) = public_get(&gw, "127.0.0.1", b"").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(echo["headers"]["x-forwarded-for"], json!(["127.0.0.1"]));
    for claim in ["x-real-ip", "forwarded"] {
        assert!(echo["headers"].get(claim).is_none(), "{claim} forwarded");
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"gateway_request_headers_removed_total{reason="client_address"}"#),
        "{metrics}"
    );

    // One trusted hop (an L7 balancer that appends the client): its entry is kept, the
    // client's own claims before it are not.
    let gw = gateway("xff_trusted_hops = 1").await;
    let request = Request::get("/api/public/x")
        .header("host", "localhost")
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.7")
        .body(Full::default())
        .unwrap();
    let (_, echo) = request_over(
        connect_from("127.0.0.1", &gw, b"").await,
        &gw,
        request,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        echo["headers"]["x-forwarded-for"],
        json!(["203.0.113.7, 127.0.0.1"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_balancer_names_the_client_with_the_proxy_protocol() {
    let gw = gateway(r#"proxy_protocol_from = ["127.0.0.2"]"#).await;
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8443\r\n";
    let (status, echo) = public_get(&gw, "127.0.0.2", v1)
        .await
        .expect("served after a v1 header");
    assert_eq!(status, 200);
    assert_eq!(echo["headers"]["x-forwarded-for"], json!(["203.0.113.7"]));

    let (_, echo) = public_get(&gw, "127.0.0.2", &proxy_v2("198.51.100.9"))
        .await
        .expect("served after a v2 header");
    assert_eq!(echo["headers"]["x-forwarded-for"], json!(["198.51.100.9"]));

    // The intake's rate limit (one a minute here) keys on the named client, not the balancer.
    let intake_from = |source: &'static str| {
        let gw = &gw;
        async move {
            let header = format!("PROXY TCP4 {source} 127.0.0.1 40000 8443\r\n");
            let tcp = connect_from("127.0.0.2", gw, header.as_bytes()).await;
            request_over(tcp, gw, intake(), None).await.unwrap().0
        }
    };
    assert_eq!(intake_from("203.0.113.10").await, 202);
    assert_eq!(intake_from("203.0.113.10").await, 429);
    assert_eq!(intake_from("203.0.113.11").await, 202);

    // A listed balancer that sends no header is cut off, and counted.
    let bare = public_get(&gw, "127.0.0.2", b"").await;
    assert!(bare.is_none(), "served without a PROXY header: {bare:?}");
    // Anyone else's PROXY header is never read: it is garbage before the TLS handshake.
    let forged = public_get(&gw, "127.0.0.1", v1).await;
    assert!(
        forged.is_none(),
        "an unlisted peer's PROXY header was honoured: {forged:?}"
    );
    // An unlisted peer without one is served as sent.
    let (status, echo) = public_get(&gw, "127.0.0.1", b"").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(echo["headers"]["x-forwarded-for"], json!(["127.0.0.1"]));
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_proxy_protocol_errors_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_client_certificate_reaches_the_upstream_as_xfcc() {
    let gw = gateway(r#"client_ca = "certs/ca.crt""#).await;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(gw.dir.path().join("certs/localhost.crt"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(gw.dir.path().join("certs/localhost.key")).unwrap();
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(chain[0].as_ref()))
    };
    let mut request = get("/api/public/x");
    request.headers_mut().insert(
        "x-forwarded-client-cert",
        "Hash=00;Subject=\"CN=admin\"".parse().unwrap(),
    );
    let (status, echo) = request_over(
        connect_from("127.0.0.1", &gw, b"").await,
        &gw,
        request,
        Some((chain, key)),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        echo["headers"]["x-forwarded-client-cert"],
        json!([format!(
            "Hash={hash};Subject=\"CN=localhost\";DNS=localhost"
        )])
    );
}

/// Every vendor's spelling of the client's address, the original host and URL, another method and
/// a client certificate is removed before the upstream sees it, whatever its case or
/// underscores, and counted by meaning; a route may let one through by name. A route with
/// `forward_headers = "listed"` forwards only RFC 9110's headers, the gateway's own and its
/// `allow_headers`.
#[tokio::test]
async fn forwarding_headers_are_screened_by_meaning_and_listed_routes_deny_by_default() {
    let routes = r#"
[[route]]
name = "screened"
path_prefix = "/screened"
upstream = "mock"
allow_headers = ["x-original-host"]

[[route]]
name = "listed"
path_prefix = "/listed"
upstream = "mock"
forward_headers = "listed"
allow_headers = ["x-tenant"]
"#;
    let gw = TestGateway::start(routes).await;
    let spellings = [
        "X-Original-Host",
        "X-Azure-ClientIP",
        "Fly-Client-IP",
        "CF-Visitor",
        "X-Forwarded-Prefix",
        "X-Original-URI",
        "X-Forwarded-Method",
        "X-Amzn-Mtls-Clientcert",
        "X-Client-Cert-Chain-Verified",
        "MS-ASPNETCORE-CLIENTCERT",
        "X-Envoy-Original-Path",
        "X-Envoy-Internal",
    ];
    let send = |path: &'static str| {
        let mut request = Request::get(path)
            .header("accept", "application/json")
            .header("x-api-key", KEY_ACME)
            .header("x-tenant", "acme-eu")
            .header("x-debug-user", "admin");
        for name in spellings {
            request = request.header(name, "1.2.3.4");
        }
        request.body(empty()).unwrap()
    };
    let mut client = gw.h1().await;
    assert_eq!(
        client.send(send("/screened/x")).await.status,
        StatusCode::OK
    );
    let seen = gw.upstream.last()["headers"].clone();
    for name in spellings.iter().filter(|n| **n != "X-Original-Host") {
        assert!(
            seen.get(name.to_ascii_lowercase()).is_none(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(
        seen["x-original-host"],
        json!(["1.2.3.4"]),
        "allowed by name"
    );
    assert_eq!(
        seen["x-debug-user"],
        json!(["admin"]),
        "not a forwarding header"
    );

    assert_eq!(client.send(send("/listed/x")).await.status, StatusCode::OK);
    let seen = gw.upstream.last()["headers"].clone();
    let mut names: Vec<&String> = seen.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "accept",
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-gateway-client",
            "x-request-id",
            "x-tenant"
        ]
    );

    let metrics = gw.metrics().await;
    for reason in [
        "client_address",
        "original_host",
        "original_url",
        "method_override",
        "client_certificate",
        "proxy_control",
        "not_listed",
    ] {
        assert!(
            metrics.contains(&format!(
                "gateway_request_headers_removed_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
}
