//! The in-process mock upstream: echoes what it received, and answers scripted, slow, streamed and
//! upgraded requests.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::client::TestBody;
use super::dir::TestDir;
use super::wait::eventually;

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
        let closed = async || (self.closed.load(Ordering::SeqCst) >= n).then_some(());
        eventually(timeout, closed, || {
            format!("{n} upstream connections not closed")
        })
        .await
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
        let seen = async || (self.count() >= n).then_some(());
        eventually(Duration::from_secs(5), seen, || {
            format!("the upstream saw {} of {n} requests", self.count())
        })
        .await
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
