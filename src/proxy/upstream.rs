//! Keep-alive connections to upstreams, and the classification of their failures.
//!
//! Each serving thread has its own [`Upstreams`] (one [`Gateway`](super::Gateway) per thread), so
//! a pool is only ever used by the thread that owns it. A request drives its upstream exchange
//! with hyper's [`client::conn`](hyper::client::conn) directly: it takes a ready connection from
//! its thread's pool, or opens one, and the connection's own task runs on the same thread. No
//! request crosses to another thread or waits behind a shared pool.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::HOST;
use http::uri::{PathAndQuery, Uri};
use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::ProxyError;
use crate::admin::metrics;
use crate::body::ClientBodyError;
use crate::config::{Config, Upstream};
use crate::vocabulary::GatewayBody;

/// The `kind` labels of `gateway_upstream_errors_total`: no connection, a broken exchange, no
/// answer in time.
pub const ERROR_KINDS: [&str; 3] = ["connect", "protocol", "timeout"];

/// How long an unused connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest TCP connect and TLS handshake (also bounded by the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keep-alive probes on upstream connections, so a dead peer is noticed while idle.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Connections one serving thread keeps per upstream, busy or idle. Past it, a connection
/// closes after its response instead of returning to the pool, as nginx's `keepalive N`.
const POOL_CAPACITY: usize = 1024;

/// One connection pool per upstream, owned by one serving thread.
pub struct Upstreams {
    pools: Vec<Pool>,
}

struct Pool {
    upstream: Arc<Upstream>,
    /// `Host` of every request: the upstream's authority (the client's goes in
    /// `X-Forwarded-Host`).
    host: HeaderValue,
    /// TLS for https upstreams, with the server name to verify.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// Every connection this thread holds to the upstream. Only this thread locks it, so the
    /// lock is never contended.
    connections: Mutex<Connections>,
    connect_timeout: Duration,
    /// `gateway_upstream_duration_seconds{upstream}`, resolved once.
    duration: ::metrics::Histogram,
}

/// A pool's connections: those ready for a request, and those still answering one.
#[derive(Default)]
struct Connections {
    /// Ready for a request; the most recently used last, taken first (its socket is warm).
    idle: Vec<Pooled>,
    /// Put back as soon as their response head arrived: ready again once hyper has read the
    /// response to its end. Moved to `idle` all at once when `idle` runs dry, so a request
    /// does not walk the busy ones.
    busy: Vec<Pooled>,
}

impl Connections {
    /// Moves the busy connections that are ready again to `idle` and forgets closed ones;
    /// returns whether any became idle.
    fn reclaim(&mut self) -> bool {
        let before = self.idle.len();
        let mut index = 0;
        while index < self.busy.len() {
            let pooled = &self.busy[index];
            if pooled.sender.is_closed() {
                self.busy.swap_remove(index);
            } else if pooled.sender.is_ready() {
                self.idle.push(self.busy.swap_remove(index));
            } else {
                index += 1;
            }
        }
        self.idle.len() > before
    }

    fn len(&self) -> usize {
        self.idle.len() + self.busy.len()
    }
}

struct Pooled {
    sender: SendRequest<GatewayBody>,
    last_used: Instant,
}

/// Why no connection could be opened (logged; never shown to the client).
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("connect: {0}")]
    Tcp(std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("HTTP handshake: {0}")]
    Http(hyper::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl Upstreams {
    /// Builds the (empty) pools for every upstream of `config`.
    pub fn new(config: &Config) -> Upstreams {
        let pools = config
            .upstreams
            .iter()
            .map(|upstream| Pool::new(upstream.clone(), config.limits.request_timeout))
            .collect();
        Upstreams { pools }
    }

    /// Sends `request` (origin-form URI) to the upstream at `upstream` (its position in the
    /// config, `Route::upstream_index`) and waits until `deadline` for its response head.
    pub async fn send(
        &self,
        upstream: usize,
        mut request: Request<GatewayBody>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Incoming>, ProxyError> {
        let pool = self.pool(upstream);
        pool.address(&mut request);
        pool.until(deadline, pool.exchange(request)).await
    }

    /// Sends an upgrade request (`Upgrade` kept) over a connection of its own, which becomes the
    /// tunnel when the upstream answers 101; never a pooled one.
    pub async fn upgrade(
        &self,
        upstream: usize,
        mut request: Request<GatewayBody>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Incoming>, ProxyError> {
        let pool = self.pool(upstream);
        pool.address(&mut request);
        let exchange = async {
            let mut sender = pool
                .connect(Upgrades::Allowed)
                .await
                .map_err(Failure::Connect)?;
            sender
                .send_request(request)
                .await
                .map_err(Failure::Exchange)
        };
        pool.until(deadline, exchange).await
    }

    fn pool(&self, upstream: usize) -> &Pool {
        &self.pools[upstream]
    }

    /// Closes connections unused for 90 s and forgets closed ones, for threads
    /// that see no request to do it on the way.
    pub fn sweep(&self) {
        for pool in &self.pools {
            let mut connections = pool.connections.lock().expect("pool lock");
            connections.reclaim();
            connections.idle.retain(usable);
        }
    }
}

/// How one exchange failed.
enum Failure {
    Connect(ConnectError),
    Exchange(hyper::Error),
}

/// Whether a pooled connection may still serve: open, and if idle, not idle for too long.
fn usable(pooled: &Pooled) -> bool {
    let idle_too_long = pooled.sender.is_ready() && pooled.last_used.elapsed() > POOL_IDLE_TIMEOUT;
    !pooled.sender.is_closed() && !idle_too_long
}

/// The client-side cause of a failed upstream request, if its request body broke.
fn client_body_failure(error: &(dyn std::error::Error + 'static)) -> Option<ProxyError> {
    let mut source = Some(error);
    while let Some(err) = source {
        if let Some(body) = err.downcast_ref::<ClientBodyError>() {
            return Some(if body.is_timeout() {
                ProxyError::RequestBodyTimeout
            } else {
                ProxyError::BadRequestBody
            });
        }
        source = err.source();
    }
    None
}

impl Pool {
    /// Runs one exchange (pooled or an upgrade's own connection) until `deadline` for its
    /// response head, records its duration and maps its failure to the client's answer,
    /// counting upstream errors.
    async fn until(
        &self,
        deadline: tokio::time::Instant,
        exchange: impl Future<Output = Result<Response<Incoming>, Failure>>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let started = Instant::now();
        let result = tokio::time::timeout_at(deadline, exchange).await;
        self.duration.record(started.elapsed().as_secs_f64());
        let label = &self.upstream.name;
        let (kind, error) = match result {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(Failure::Connect(error))) => {
                tracing::warn!(msg = "upstream connect failed", upstream = %label, error = %error);
                ("connect", ProxyError::UpstreamConnect)
            }
            Ok(Err(Failure::Exchange(error))) => {
                if let Some(client_fault) = client_body_failure(&error) {
                    // The client's fault, not the upstream's: no upstream error is counted.
                    return Err(client_fault);
                }
                tracing::warn!(msg = "upstream request failed", upstream = %label, error = %error);
                ("protocol", ProxyError::UpstreamProtocol)
            }
            Err(_) => ("timeout", ProxyError::UpstreamTimeout),
        };
        debug_assert!(ERROR_KINDS.contains(&kind));
        ::metrics::counter!(metrics::UPSTREAM_ERRORS, "upstream" => label.clone(), "kind" => kind)
            .increment(1);
        Err(error)
    }

    fn new(upstream: Arc<Upstream>, request_timeout: Duration) -> Pool {
        let host = HeaderValue::from_str(upstream.authority.as_str())
            .expect("an authority is a valid header value");
        let tls = upstream.tls.as_ref().map(|config| {
            let (host, _) = upstream.host_and_port();
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .expect("an upstream URL's host is a DNS name or an IP address");
            (tokio_rustls::TlsConnector::from(config.clone()), name)
        });
        Pool {
            duration: metrics::upstream_duration().get([&upstream.name]),
            upstream,
            host,
            tls,
            connections: Mutex::new(Connections::default()),
            connect_timeout: CONNECT_TIMEOUT.min(request_timeout),
        }
    }

    /// One request and its response head, over a ready pooled connection or a new one. A request
    /// a pooled connection refused before sending a byte (it closed meanwhile) goes out again on a
    /// new connection; once sent, it never is.
    async fn exchange(&self, request: Request<GatewayBody>) -> Result<Response<Incoming>, Failure> {
        let request = match self.ready_connection() {
            Some(mut sender) => match sender.try_send_request(request).await {
                Ok(response) => {
                    self.put_back(sender);
                    return Ok(response);
                }
                Err(mut refused) => match refused.take_message() {
                    Some(request) => request,
                    None => return Err(Failure::Exchange(refused.into_error())),
                },
            },
            None => request,
        };
        // Boxed: opening a connection (TCP, TLS, handshake) is rare next to reusing one, and its
        // future is the larger part of the request's, which each client connection keeps.
        let mut sender = Box::pin(self.connect(Upgrades::Refused))
            .await
            .map_err(Failure::Connect)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(Failure::Exchange)?;
        self.put_back(sender);
        Ok(response)
    }

    /// A pooled connection ready for a request, dropping closed and long-idle ones met on the way.
    fn ready_connection(&self) -> Option<SendRequest<GatewayBody>> {
        let mut connections = self.connections.lock().expect("pool lock");
        loop {
            while let Some(pooled) = connections.idle.pop() {
                if usable(&pooled) && pooled.sender.is_ready() {
                    return Some(pooled.sender);
                }
            }
            if !connections.reclaim() {
                return None;
            }
        }
    }

    /// Returns a connection whose request is under way; it serves again once its response ends.
    fn put_back(&self, sender: SendRequest<GatewayBody>) {
        let mut connections = self.connections.lock().expect("pool lock");
        if connections.len() < POOL_CAPACITY {
            connections.busy.push(Pooled {
                sender,
                last_used: Instant::now(),
            });
        }
    }

    /// Opens a connection (TCP, TLS for https, the HTTP/1.1 handshake) and starts its task on
    /// this thread.
    async fn connect(&self, upgrades: Upgrades) -> Result<SendRequest<GatewayBody>, ConnectError> {
        tokio::time::timeout(self.connect_timeout, self.open(upgrades))
            .await
            .unwrap_or(Err(ConnectError::Timeout(self.connect_timeout)))
    }

    async fn open(&self, upgrades: Upgrades) -> Result<SendRequest<GatewayBody>, ConnectError> {
        let tcp = TcpStream::connect(self.upstream.host_and_port())
            .await
            .map_err(ConnectError::Tcp)?;
        tcp.set_nodelay(true).map_err(ConnectError::Tcp)?;
        socket2::SockRef::from(&tcp)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE))
            .map_err(ConnectError::Tcp)?;
        let mut sender = match &self.tls {
            None => handshake(tcp, upgrades).await?,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(ConnectError::Tls)?;
                handshake(tls, upgrades).await?
            }
        };
        sender.ready().await.map_err(ConnectError::Http)?;
        Ok(sender)
    }

    /// Addresses `request` to the upstream: its target, HTTP/1.1 and the upstream's `Host`.
    fn address(&self, request: &mut Request<GatewayBody>) {
        *request.uri_mut() = self.target(request.uri());
        *request.version_mut() = Version::HTTP_11;
        request.headers_mut().insert(HOST, self.host.clone());
    }

    /// The origin-form target for the upstream: its base path, then the client's path and query.
    fn target(&self, original: &Uri) -> Uri {
        let path_and_query = original
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if self.upstream.base_path.is_empty() {
            return Uri::from(path_and_query);
        }
        let joined = format!("{}{}", self.upstream.base_path, path_and_query);
        Uri::try_from(joined).expect("a base path and a validated path make a URI")
    }
}

/// Whether a connection may become a tunnel (only the dedicated connection of an upgrade).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upgrades {
    Allowed,
    Refused,
}

/// The HTTP/1.1 handshake over `io`; the connection's task runs on the current thread.
async fn handshake<T>(io: T, upgrades: Upgrades) -> Result<SendRequest<GatewayBody>, ConnectError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(ConnectError::Http)?;
    tokio::spawn(async move {
        let result = match upgrades {
            Upgrades::Allowed => connection.with_upgrades().await,
            Upgrades::Refused => connection.await,
        };
        if let Err(error) = result {
            tracing::debug!(msg = "upstream connection closed", error = %error);
        }
    });
    Ok(sender)
}
