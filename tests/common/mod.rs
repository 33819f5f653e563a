//! Test harness: the real gateway on port 0 over TLS, an in-process mock upstream, and clients
//! that speak HTTP/1.1 and HTTP/2 (or raw bytes) over real sockets.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use recipient_gateway::config::Config;
use recipient_gateway::server::Server;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// API keys of the test clients (their digests are in [`base_config`]).
pub const KEY_ACME: &str = "key-acme";
pub const KEY_GLOBEX: &str = "key-globex";
pub const KEY_ANALYTICS: &str = "key-analytics";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A temporary folder with development certificates and whatever files a test adds.
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::tempdir().expect("temp dir");
        recipient_gateway::tls::write_dev_certs(&dir.path().join("certs"), true)
            .expect("dev certs");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn ca(&self) -> PathBuf {
        self.path().join("certs/ca.crt")
    }

    /// A TLS acceptor with this folder's `localhost` certificate (signed by its own CA).
    pub fn localhost_tls(&self) -> tokio_rustls::TlsAcceptor {
        let certs = self.path().join("certs");
        let config = recipient_gateway::tls::server_config(
            &certs.join("localhost.crt"),
            &certs.join("localhost.key"),
            None,
        )
        .unwrap();
        tokio_rustls::TlsAcceptor::from(config)
    }
}

/// The shared part of every test config: TLS listener on port 0, three clients, and the
/// `[[upstream]]`s `mock` (at `upstream`) and `down` (a port nothing listens on).
pub fn base_config(upstream: SocketAddr, down: SocketAddr) -> String {
    format!(
        r#"
[listen]
address = "127.0.0.1:0"
tls_cert = "certs/localhost.crt"
tls_key = "certs/localhost.key"

[admin]
address = "127.0.0.1:0"

[limits]
header_read_timeout_ms = 1000
body_read_timeout_ms = 1000
request_timeout_ms = 1500

[keys]
tag_key = "test-tag-key-0123456789abcdef"

[store]
backend = "memory"

[[client]]
id = "acme"
kind = "customer"
name = "Acme"
api_key_sha256 = ["{acme}"]

[[client]]
id = "globex"
kind = "customer"
name = "Globex"
api_key_sha256 = ["{globex}"]

[[client]]
id = "analytics"
kind = "internal"
name = "Analytics"
api_key_sha256 = ["{analytics}"]

[[upstream]]
name = "mock"
url = "http://{upstream}"

[[upstream]]
name = "down"
url = "http://{down}"
"#,
        acme = sha256_hex(KEY_ACME),
        globex = sha256_hex(KEY_GLOBEX),
        analytics = sha256_hex(KEY_ANALYTICS),
    )
}

/// The shipped rule files.
pub const SHIPPED_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules");

/// The demo API as upstream `sample` and an inspected `shipments` route in front of it; `extra`
/// adds route keys (rules, controller member).
pub fn shipments_route(sample: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "sample"
url = "http://{sample}"

[[route]]
name = "shipments"
path_prefix = "/v1/shipments"
upstream = "sample"
records = ["$", "$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
{extra}
"#
    )
}

/// Plain (streamed) routes used by the proxy-core tests.
pub const PLAIN_ROUTES: &str = r#"
[[route]]
name = "api"
path_prefix = "/api"
upstream = "mock"

[[route]]
name = "api-public"
path_prefix = "/api/public"
upstream = "mock"
auth = "none"

[[route]]
name = "broken"
path_prefix = "/broken"
upstream = "down"
"#;

/// An address nothing listens on.
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A gateway serving in this process; shuts down and drains when dropped or on [`stop`].
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The gateway's privacy clock: tests move it to reach retry and expiry deadlines.
    pub clock: recipient_gateway::privacy::Clock,
    /// The privacy desk, whose delivery progress tests wait on.
    pub desk: Arc<recipient_gateway::privacy::Desk>,
    pub dir: TestDir,
    pub upstream: MockUpstream,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestGateway {
    /// Starts the mock upstream and a gateway with `base_config` + `routes`.
    pub async fn start(routes: &str) -> TestGateway {
        let upstream = MockUpstream::start().await;
        TestGateway::start_with(upstream, |base| format!("{base}{routes}")).await
    }

    /// Starts a gateway whose config text `build` makes from the base config.
    pub async fn start_with(
        upstream: MockUpstream,
        build: impl FnOnce(String) -> String,
    ) -> TestGateway {
        let dir = TestDir::new();
        let text = build(base_config(upstream.addr, unused_addr()));
        let path = dir.write("gateway.toml", &text);
        let config = Config::load_with_env(&path, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        let server = Server::bind(Arc::new(config)).await.expect("bind");
        let (addr, admin) = (server.local_addr(), server.admin_addr());
        let clock = server.clock();
        let desk = server.desk();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        TestGateway {
            addr,
            admin,
            clock,
            desk,
            dir,
            upstream,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Signals shutdown without waiting; returns the serve task.
    pub fn begin_stop(&mut self) -> JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("not stopped yet")
    }

    pub async fn h1(&self) -> Client {
        Client::connect(self.addr, &self.dir.ca(), Alpn::Http1).await
    }

    pub async fn h2(&self) -> Client {
        Client::connect(self.addr, &self.dir.ca(), Alpn::H2).await
    }

    /// A TLS stream for writing raw HTTP/1.1 bytes.
    pub async fn raw(&self) -> TlsStream<TcpStream> {
        tls_connect(self.addr, &self.dir.ca(), vec![b"http/1.1".to_vec()]).await
    }

    /// `GET path` on the admin listener: status and body.
    pub async fn admin(&self, path: &str) -> (u16, String) {
        admin_get(self.admin, path).await
    }

    /// `GET /metrics` from the admin listener.
    /// Waits until `n` webhook attempts have their outcome recorded: only then may the privacy
    /// clock move, since the next attempt is scheduled from when the outcome is recorded.
    pub async fn attempts_recorded(&self, n: u64) {
        let mut progress = self.desk.delivery_progress();
        let recorded = progress.wait_for(|p| p.attempts >= n);
        tokio::time::timeout(Duration::from_secs(5), recorded)
            .await
            .unwrap_or_else(|_| panic!("{n} attempts not recorded in 5 s"))
            .unwrap();
    }

    /// Runs a delivery round that starts after this call and waits until it ends: whatever it
    /// did not attempt was not due. A round under way when this is called may have looked before
    /// the caller's change, so two rounds are waited for, each started on demand.
    pub async fn delivery_round(&self) {
        let mut progress = self.desk.delivery_progress();
        let start = progress.borrow().rounds;
        let rounds = async {
            for n in 1..=2 {
                self.desk.deliver_now();
                progress.wait_for(|p| p.rounds >= start + n).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(5), rounds)
            .await
            .expect("two delivery rounds within 5 s");
    }

    pub async fn metrics(&self) -> String {
        self.admin("/metrics").await.1
    }

    /// `POST /admin/reload`, with a bearer token if given: status and body.
    pub async fn reload(&self, token: Option<&str>) -> (u16, Value) {
        admin_post(self.admin, "/admin/reload", token).await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Which protocol a client offers by ALPN.
#[derive(Clone, Copy)]
pub enum Alpn {
    Http1,
    H2,
}

pub fn tls_client_config(ca: &Path, alpn: Vec<Vec<u8>>) -> Arc<rustls::ClientConfig> {
    let mut config = (*recipient_gateway::tls::client_config(Some(ca)).unwrap()).clone();
    config.alpn_protocols = alpn;
    Arc::new(config)
}

pub async fn tls_connect(addr: SocketAddr, ca: &Path, alpn: Vec<Vec<u8>>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(tls_client_config(ca, alpn))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn empty() -> TestBody {
    Full::new(Bytes::new()).boxed()
}

pub fn body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// A connected HTTP client over TLS.
pub struct Client {
    sender: Sender,
    /// The protocol ALPN settled on.
    pub alpn: Option<Vec<u8>>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

/// A response read to the end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the gateway's JSON error shape and returns its code.
    pub fn error_code(&self) -> String {
        let json = self.json();
        let error = &json["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
        assert_eq!(
            error["request_id"].as_str(),
            self.header("x-request-id"),
            "error names the request id: {json}"
        );
        error["code"].as_str().expect("error code").to_string()
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr, ca: &Path, alpn: Alpn) -> Client {
        let protocols = match alpn {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::H2 => vec![b"h2".to_vec()],
        };
        let stream = tls_connect(addr, ca, protocols).await;
        let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(stream);
        let sender = match alpn {
            Alpn::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                Sender::H1(sender)
            }
            Alpn::H2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                Sender::H2(sender)
            }
        };
        Client {
            sender,
            alpn: negotiated,
        }
    }

    /// Sends a request and returns the response head with its streaming body.
    pub async fn send_streaming(
        &mut self,
        mut request: Request<TestBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match &mut self.sender {
            Sender::H1(sender) => {
                if !request.headers().contains_key("host") {
                    request
                        .headers_mut()
                        .insert("host", "localhost".parse().unwrap());
                }
                sender.ready().await?;
                sender.send_request(request).await
            }
            Sender::H2(sender) => {
                if request.uri().authority().is_none() {
                    let uri = format!("https://localhost{}", request.uri());
                    *request.uri_mut() = uri.parse().unwrap();
                }
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }

    /// Whether the gateway has closed the connection.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(sender) => sender.is_closed(),
            Sender::H2(sender) => sender.is_closed(),
        }
    }

    pub async fn send(&mut self, request: Request<TestBody>) -> Answer {
        let response = self.send_streaming(request).await.expect("response");
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("body").to_bytes(),
        }
    }

    pub async fn get(&mut self, path: &str, key: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.send(request.body(empty()).unwrap()).await
    }
}

/// Reads from a raw stream until EOF or `timeout`, returning what arrived.
pub async fn read_until_close<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

pub async fn write_all<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
}

/// The mock upstream: echoes what it received, or behaves as the path asks.
///
/// | path contains | behaviour |
/// | --- | --- |
/// | `/slow` | waits 3 s, then answers 200 |
/// | `/download/N` | streams N bytes of `x` |
/// | `/upload` | reads the body and answers `{"bytes": n}` |
/// | anything else | `{"method", "path", "query", "headers", "body_len"}` |
pub struct MockUpstream {
    pub addr: SocketAddr,
    /// Every request seen, as the echo JSON, in order.
    pub seen: Arc<std::sync::Mutex<Vec<Value>>>,
    /// The answer to requests whose path contains `/canned`.
    pub canned: Arc<std::sync::Mutex<Canned>>,
    connections: Arc<AtomicUsize>,
    /// Of those, the connections that have since closed.
    closed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// A scripted upstream answer.
#[derive(Clone, Default)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn json(body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn status(mut self, status: u16) -> Canned {
        self.status = status;
        self
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    pub async fn start() -> MockUpstream {
        MockUpstream::serve(None).await
    }

    /// The mock upstream over TLS, with the certificate and key of `dir` (`localhost`).
    pub async fn start_tls(dir: &TestDir) -> MockUpstream {
        MockUpstream::serve(Some(dir.localhost_tls())).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
        let canned: Arc<std::sync::Mutex<Canned>> = Arc::default();
        let connections: Arc<AtomicUsize> = Arc::default();
        let closed: Arc<AtomicUsize> = Arc::default();
        let log = seen.clone();
        let script = canned.clone();
        let accepted = connections.clone();
        let ended = closed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                let script = script.clone();
                let tls = tls.clone();
                let accepted = accepted.clone();
                let ended = ended.clone();
                let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
                let carried = first.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        if first.swap(false, Ordering::SeqCst) {
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        let log = log.clone();
                        let script = script.clone();
                        async move { Ok::<_, Infallible>(mock_handle(req, log, script).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => {
                            http.serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await
                        }
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                    };
                    if !carried.load(Ordering::SeqCst) {
                        ended.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        MockUpstream {
            addr,
            seen,
            canned,
            connections,
            closed,
            task,
        }
    }

    /// Connections that carried at least one request (the gateway's startup probe opens one that
    /// carries none).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits (up to `timeout`) until `n` connections that carried a request have closed: the
    /// gateway has let go of what it was fetching.
    pub async fn wait_closed(&self, n: usize, timeout: Duration) {
        let started = std::time::Instant::now();
        while self.closed.load(Ordering::SeqCst) < n {
            assert!(
                started.elapsed() < timeout,
                "{n} upstream connections not closed within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Scripts the answer to `/canned` requests.
    pub fn set_canned(&self, canned: Canned) {
        *self.canned.lock().unwrap() = canned;
    }

    pub fn last(&self) -> Value {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream saw a request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits (up to 5 s) until the upstream has seen `n` requests in all: a request in flight
    /// has reached it.
    pub async fn wait_seen(&self, n: usize) {
        let started = std::time::Instant::now();
        while self.count() < n {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the upstream saw {} of {n} requests",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn mock_handle(
    mut req: Request<Incoming>,
    log: Arc<std::sync::Mutex<Vec<Value>>>,
    canned: Arc<std::sync::Mutex<Canned>>,
) -> Response<MockBody> {
    let path = req.uri().path().to_string();
    // `/ws` with `Upgrade`: switches protocols and echoes every byte back (a WebSocket echo
    // server's transport, without the framing).
    let upgrade = (path.contains("/ws") && req.headers().contains_key("upgrade"))
        .then(|| hyper::upgrade::on(&mut req));
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_string);
    let mut body = req.into_body();
    let mut body_len = 0u64;
    // The first 64 KiB are kept so tests can see exactly what the upstream received.
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_len += data.len() as u64;
                    if kept.len() < 65536 {
                        kept.extend_from_slice(&data[..data.len().min(65536 - kept.len())]);
                    }
                }
            }
            Err(_) => break,
        }
    }
    let echo = json!({
        "method": method, "path": path, "query": query, "headers": headers, "body_len": body_len,
        "body": String::from_utf8_lossy(&kept),
    });
    log.lock().unwrap().push(echo.clone());

    if let Some(upgrade) = upgrade {
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 4096];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()).boxed());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        response
            .headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return response;
    }
    if path.contains("/canned") {
        let canned = canned.lock().unwrap().clone();
        let mut response = Response::new(Full::new(Bytes::from(canned.body)).boxed());
        *response.status_mut() = StatusCode::from_u16(canned.status).unwrap();
        for (name, value) in canned.headers {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        return response;
    }
    if path.contains("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if let Some(n) = path
        .split("/download/")
        .nth(1)
        .and_then(|n| n.parse::<u64>().ok())
    {
        return download(n);
    }
    if path.contains("/upload") {
        return json_response(&json!({ "bytes": body_len }));
    }
    let mut response = json_response(&echo);
    // Hop-by-hop headers an upstream might send; the gateway must not pass them on.
    response.headers_mut().insert(
        "connection",
        "keep-alive, x-upstream-private".parse().unwrap(),
    );
    response
        .headers_mut()
        .insert("x-upstream-private", "secret".parse().unwrap());
    response
        .headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    response
        .headers_mut()
        .insert("x-upstream-public", "visible".parse().unwrap());
    response
}

fn json_response(value: &Value) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// A body of `n` bytes sent in 64 KiB chunks, never held whole in memory.
fn download(n: u64) -> Response<MockBody> {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
    let stream = futures_stream(n.div_ceil(CHUNK), move |i| {
        let len = CHUNK.min(n - i * CHUNK) as usize;
        Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response
        .headers_mut()
        .insert("content-type", "application/octet-stream".parse().unwrap());
    response
}

/// A generated body of `count` frames.
pub fn streamed_body(count: u64, chunk: usize) -> TestBody {
    let data = Bytes::from(vec![b'y'; chunk]);
    StreamBody::new(futures_stream(count, move |_| {
        Ok::<_, Infallible>(Frame::data(data.clone()))
    }))
    .boxed()
}

/// A `Stream` of `count` items made by `make`, without pulling in a streams crate.
fn futures_stream<T, F: FnMut(u64) -> T + Send + Unpin + 'static>(
    count: u64,
    make: F,
) -> impl futures_core::Stream<Item = T> + Send + Unpin {
    struct Gen<F> {
        next: u64,
        count: u64,
        make: F,
    }
    impl<T, F: FnMut(u64) -> T + Unpin> futures_core::Stream for Gen<F> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            if self.next == self.count {
                return std::task::Poll::Ready(None);
            }
            let i = self.next;
            self.next += 1;
            std::task::Poll::Ready(Some((self.make)(i)))
        }
    }
    Gen {
        next: 0,
        count,
        make,
    }
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The gateway binary run as a separate process, as operators run it.
pub struct GatewayProcess {
    child: std::process::Child,
    /// The main listener, read from the `listening` log line.
    pub addr: SocketAddr,
    /// The admin listener, from the same line.
    pub admin: SocketAddr,
    logs: std::sync::mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl GatewayProcess {
    /// Starts `recipient-gateway run --config path` and waits for its `listening` line.
    pub fn spawn(config: &Path) -> GatewayProcess {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_recipient-gateway"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let (addr, admin) = loop {
            let line = logs
                .recv_timeout(Duration::from_secs(20))
                .expect("the gateway logs `listening`");
            seen.push(line.clone());
            if line["msg"] == "listening" {
                break (
                    line["address"].as_str().unwrap().parse().unwrap(),
                    line["admin"].as_str().unwrap().parse().unwrap(),
                );
            }
        };
        GatewayProcess {
            child,
            addr,
            admin,
            logs,
            seen,
        }
    }

    /// Sends a signal (`-TERM`, `-KILL`, …) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (up to 10 s) for the next log line whose `msg` is `msg`; earlier lines are kept.
    pub fn wait_for_log(&mut self, msg: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .logs
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `{msg}` log line within 10 s"));
            self.seen.push(line.clone());
            if line["msg"] == msg {
                return line;
            }
        }
    }

    /// Waits for exit; returns the status and every log line.
    pub fn wait(mut self) -> (std::process::ExitStatus, Vec<Value>) {
        let status = self.child.wait().unwrap();
        let mut lines = std::mem::take(&mut self.seen);
        lines.extend(self.logs.try_iter());
        (status, lines)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One webhook request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub timestamp: u64,
    pub signature: String,
    /// Whether the signature verifies with the receiver's secret (as a Standard Webhooks library
    /// checks it, the timestamp tolerance aside: tests move the gateway's clock).
    pub signed: bool,
    pub body: Value,
    /// The body as sent, which the signatures cover.
    pub raw_body: Vec<u8>,
    /// The status the receiver answered.
    pub answered: u16,
}

/// A planned receiver answer: status, `Retry-After`, `Location`.
type Planned = (u16, Option<String>, Option<String>);

/// An in-process webhook receiver that verifies signatures and answers as planned.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    pub deliveries: Arc<std::sync::Mutex<Vec<Delivery>>>,
    /// Answers to give, in order; 200 once empty.
    plan: Arc<std::sync::Mutex<std::collections::VecDeque<Planned>>>,
    task: JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookReceiver {
    /// Starts on a free port.
    pub async fn start(secret: &str) -> WebhookReceiver {
        WebhookReceiver::start_on("127.0.0.1:0".parse().unwrap(), secret).await
    }

    /// Starts on `addr` (a port a gateway already points at).
    pub async fn start_on(addr: SocketAddr, secret: &str) -> WebhookReceiver {
        WebhookReceiver::serve(addr, secret, None).await
    }

    /// Starts over TLS on a free port, with the `localhost` certificate of `dir` (signed by
    /// `dir`'s own development CA).
    pub async fn start_tls(secret: &str, dir: &TestDir) -> WebhookReceiver {
        let tls = dir.localhost_tls();
        WebhookReceiver::serve("127.0.0.1:0".parse().unwrap(), secret, Some(tls)).await
    }

    async fn serve(
        addr: SocketAddr,
        secret: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> WebhookReceiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let deliveries = Arc::new(std::sync::Mutex::new(Vec::new()));
        let plan = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let secret = secret.to_string();
        let (seen, planned) = (deliveries.clone(), plan.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, planned, secret) = (seen.clone(), planned.clone(), secret.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (seen, planned, secret) =
                            (seen.clone(), planned.clone(), secret.clone());
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string()
                            };
                            let (id, ts, sig) = (
                                header("webhook-id"),
                                header("webhook-timestamp"),
                                header("webhook-signature"),
                            );
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let timestamp: u64 = ts.parse().unwrap_or(0);
                            let signed = recipient_gateway::privacy::signature::verify(
                                &secret, &id, &ts, &sig, &body, timestamp, 0,
                            )
                            .is_ok();
                            let (status, retry_after, location) = planned
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or((200, None, None));
                            seen.lock().unwrap().push(Delivery {
                                webhook_id: id,
                                timestamp,
                                signature: sig,
                                signed,
                                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                raw_body: body.to_vec(),
                                answered: status,
                            });
                            let mut response = Response::builder().status(status);
                            if let Some(wait) = retry_after {
                                response = response.header("retry-after", wait);
                            }
                            if let Some(location) = location {
                                response = response.header("location", location);
                            }
                            Ok::<_, Infallible>(response.body(Full::<Bytes>::default()).unwrap())
                        }
                    });
                    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            // A client that does not trust the certificate: no HTTP at all.
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        WebhookReceiver {
            addr,
            deliveries,
            plan,
            task,
        }
    }

    /// Queues answers for the next deliveries.
    pub fn answer(&self, status: u16, retry_after: Option<&str>, location: Option<&str>) {
        self.plan.lock().unwrap().push_back((
            status,
            retry_after.map(str::to_string),
            location.map(str::to_string),
        ));
    }

    pub fn got(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Waits until at least `n` deliveries arrived (or panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let started = std::time::Instant::now();
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < timeout,
                "{} of {n} deliveries after {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A `whsec_` secret for test receivers.
pub const WEBHOOK_SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC1ieXRlcw==";

/// Sends a JSON POST with an optional API key.
pub async fn post_json(client: &mut Client, path: &str, key: Option<&str>, body: &Value) -> Answer {
    let mut request = Request::post(path).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    client
        .send(request.body(self::body(body.to_string())).unwrap())
        .await
}

/// `GET path` on an admin listener: status and body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(admin).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get(path)
                .header("host", "admin")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A POST to an admin listener: status and JSON body.
pub async fn admin_post(admin: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let stream = TcpStream::connect(admin).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = Request::post(path).header("host", "admin");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Asserts that a log line is an access line with every field of reference §6.
pub fn assert_access_line(line: &Value) {
    assert_eq!(line["msg"], "request", "{line}");
    for field in [
        "ts",
        "level",
        "request_id",
        "route",
        "client",
        "method",
        "path",
        "status",
        "bytes",
        "outcome",
        "duration_ms",
        "redactions",
    ] {
        assert!(line.get(field).is_some(), "`{field}` missing: {line}");
    }
    assert!(!line["path"].as_str().unwrap().contains('?'), "{line}");
    let duration = line["duration_ms"].to_string();
    let decimals = duration.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(decimals <= 3, "duration_ms in whole microseconds: {line}");
}

/// A proptest runner with a fixed seed (a failure reproduces) and no persistence, for the
/// differential tests: `cases` from the environment variable `env`, else `default`.
pub fn fixed_runner(env: &str, default: u32) -> (proptest::test_runner::TestRunner, u32) {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let cases = std::env::var(env)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    (runner, cases)
}

/// A test of a `harness = false` file: its name, whether it needs PostgreSQL, and its body.
pub type Test = (
    &'static str,
    Needs,
    fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
);

/// What a [`Test`] needs beyond the gateway itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    Postgres,
    /// PostgreSQL with TLS on, its CA in `GATEWAY_TEST_POSTGRES_CA` (`.ci/run` sets both up).
    PostgresTls,
    /// Chromium and chromedriver on the `PATH` (`.ci/run` installs Debian's), and axe-core
    /// where [`axe_core`] finds it (`.ci/run` installs it from npm).
    Browser,
    /// Debian's `prometheus` server on the `PATH` (`.ci/run` installs it).
    Prometheus,
}

/// axe-core's script: `GATEWAY_TEST_AXE`, else where `.ci/run` installs it
/// (`target/axe/node_modules/axe-core/axe.min.js`).
pub fn axe_core() -> PathBuf {
    std::env::var_os("GATEWAY_TEST_AXE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/axe/node_modules/axe-core/axe.min.js")
        },
        PathBuf::from,
    )
}

/// Where `name` is on the `PATH`, if anywhere.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| file.is_file())
}

/// Whether Chromium and chromedriver are on the `PATH` and axe-core is installed.
pub fn browser_installed() -> bool {
    on_path("chromium").is_some() && on_path("chromedriver").is_some() && axe_core().is_file()
}

/// The `main` of the test files whose tests need PostgreSQL (`harness = false`): the tests run
/// under libtest-mimic, each on its own multi-threaded runtime, and those that need PostgreSQL
/// are reported as *ignored* when it does not answer, so a skipped test never counts as passed.
/// With `GATEWAY_TEST_REQUIRE_POSTGRES` they run regardless and fail on an unusable server.
pub fn run_tests(tests: &[Test]) -> std::process::ExitCode {
    use recipient_gateway::store::test_postgres;
    let args = libtest_mimic::Arguments::from_args();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    };
    let postgres = if tests
        .iter()
        .any(|(_, needs, _)| matches!(needs, Needs::Postgres | Needs::PostgresTls))
    {
        runtime().block_on(test_postgres::probe())
    } else {
        Ok(())
    };
    let skip_postgres = postgres.is_err() && !test_postgres::required();
    if let (true, Err(why)) = (skip_postgres, &postgres) {
        eprintln!("PostgreSQL tests are ignored: {why}");
    }
    let no_ca = std::env::var_os("GATEWAY_TEST_POSTGRES_CA").is_none();
    if no_ca
        && tests
            .iter()
            .any(|(_, needs, _)| *needs == Needs::PostgresTls)
    {
        eprintln!("PostgreSQL TLS tests are ignored: GATEWAY_TEST_POSTGRES_CA is not set");
    }
    let skip_browser =
        !browser_installed() && std::env::var_os("GATEWAY_TEST_REQUIRE_BROWSER").is_none();
    if skip_browser && tests.iter().any(|(_, needs, _)| *needs == Needs::Browser) {
        eprintln!(
            "browser tests are ignored: chromium and chromedriver are not both on the PATH, or \
             axe-core is not at {} (.ci/run installs them)",
            axe_core().display()
        );
    }
    let skip_prometheus = on_path("prometheus").is_none()
        && std::env::var_os("GATEWAY_TEST_REQUIRE_PROMETHEUS").is_none();
    if skip_prometheus
        && tests
            .iter()
            .any(|(_, needs, _)| *needs == Needs::Prometheus)
    {
        eprintln!(
            "Prometheus tests are ignored: `prometheus` is not on the PATH (.ci/run installs it)"
        );
    }
    let trials = tests
        .iter()
        .map(|&(name, needs, test)| {
            libtest_mimic::Trial::test(name, move || {
                runtime().block_on(test());
                Ok(())
            })
            .with_ignored_flag(match needs {
                Needs::Nothing => false,
                Needs::Postgres => skip_postgres,
                Needs::PostgresTls => skip_postgres || no_ca,
                Needs::Browser => skip_browser,
                Needs::Prometheus => skip_prometheus,
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// `base` with acme's privacy contact and a webhook at `hook` (signed with
/// [`WEBHOOK_SECRET`]), and globex's privacy contact (no webhook: its inbox only).
pub fn with_privacy_contacts(base: &str, hook: SocketAddr) -> String {
    let edited = base
        .replace(
            "name = \"Acme\"\n",
            &format!(
                "name = \"Acme\"\nprivacy_contact = \"privacy@acme.example\"\n\
                 webhook_url = \"http://{hook}/hooks/privacy\"\n\
                 webhook_secret = \"{WEBHOOK_SECRET}\"\n"
            ),
        )
        .replace(
            "name = \"Globex\"\n",
            "name = \"Globex\"\nprivacy_contact = \"dpo@globex.example\"\n",
        );
    assert_eq!(edited.matches("privacy_contact").count(), 2, "{edited}");
    edited
}

pub struct PrivacySetup {
    pub gw: TestGateway,
    pub receiver: WebhookReceiver,
    pub _sample: recipient_gateway::demo::SampleApi,
}

/// A gateway whose `acme` has a webhook at a receiver and `globex` only an inbox, in front of the
/// demo API (controllers named by `customer_id`), with `privacy` as its `[privacy]` section.
pub async fn privacy_setup(privacy: &str) -> PrivacySetup {
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await;
    let sample = recipient_gateway::demo::start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (hook, api) = (receiver.addr, sample.addr);
    let privacy = privacy.to_string();
    let gw = TestGateway::start_with(MockUpstream::start().await, move |base| {
        let base = with_privacy_contacts(&base, hook);
        let route = shipments_route(
            api,
            &format!(
                "controller_member = \"customer_id\"\nrules = [\"{SHIPPED_RULES}/recipient.toml\"]"
            ),
        );
        format!("{base}{route}\n[privacy]\n{privacy}\n")
    })
    .await;
    PrivacySetup {
        gw,
        receiver,
        _sample: sample,
    }
}
