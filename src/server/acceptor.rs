//! One config generation's connection settings, and serving one client connection with them:
//! the PROXY header from listed balancers, the slow-read guard, the TLS handshake under the header
//! timeout, the framing watch, then HTTP/1.1 or HTTP/2.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::framing::{self, FramingWatch};
use super::idle::{Activity, IdleClose};
use super::proxy_protocol;
use super::stall::WriteStall;
use crate::admin::metrics;
use crate::body::GatewayBody;
use crate::config::{Config, Limits, listed};
use crate::proxy::CurrentGateway;
use crate::proxy::client_address::Peer;

/// Connection settings of one config generation, shared by the connections accepted under it.
pub(super) struct Acceptor {
    pub(super) tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    handshake_timeout: Duration,
    max_header_bytes: usize,
    /// A peer that reads nothing for this long is disconnected (slow-read guard).
    write_stall_timeout: Duration,
    /// Peers that must open with a PROXY protocol header (`listen.proxy_protocol_from`).
    proxy_protocol_from: Vec<ipnet::IpNet>,
    /// A connection with nothing in flight for this long is closed.
    idle_timeout: Duration,
}

impl Acceptor {
    pub(super) fn for_config(config: &Config) -> Acceptor {
        Acceptor {
            tls: config.listen.tls.clone().map(TlsAcceptor::from),
            builder: http_builder(&config.limits),
            handshake_timeout: config.limits.header_read_timeout,
            max_header_bytes: config.limits.max_header_bytes,
            write_stall_timeout: config.limits.body_read_timeout,
            proxy_protocol_from: config.listen.client_address.proxy_protocol_from.clone(),
            idle_timeout: config.limits.idle_timeout,
        }
    }

    /// Reads a PROXY header (from listed peers), handshakes (when TLS) and serves one
    /// connection; returns when it closes. Each request on it is handled by the gateway current
    /// when the request arrives.
    pub(super) async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        gateway: CurrentGateway,
        graceful: Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        let (stream, ip) = if listed(&self.proxy_protocol_from, peer.ip()) {
            let header = proxy_protocol::accept(stream);
            match tokio::time::timeout(self.handshake_timeout, header).await {
                Ok(Ok((stream, source))) => (stream, source.unwrap_or(peer.ip())),
                Ok(Err(error)) => {
                    ::metrics::counter!(metrics::PROXY_PROTOCOL_ERRORS).increment(1);
                    tracing::debug!(msg = "proxy protocol header refused", error = %error);
                    return;
                }
                Err(_) => {
                    ::metrics::counter!(metrics::PROXY_PROTOCOL_ERRORS).increment(1);
                    tracing::debug!(msg = "proxy protocol header timed out");
                    return;
                }
            }
        } else {
            (proxy_protocol::Rewind::new(stream, Bytes::new()), peer.ip())
        };
        let stream = WriteStall::new(stream, self.write_stall_timeout);
        let ambiguous = framing::AmbiguousFlag::default();
        let peer = |client_cert| Peer {
            ip,
            tls: self.tls.is_some(),
            ambiguous_framing: ambiguous.clone(),
            client_cert,
        };
        match &self.tls {
            Some(tls) => {
                let stream =
                    match tokio::time::timeout(self.handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            ::metrics::counter!(metrics::TLS_HANDSHAKE_ERRORS).increment(1);
                            tracing::debug!(msg = "tls handshake failed", error = %error);
                            return;
                        }
                        Err(_) => {
                            ::metrics::counter!(metrics::TLS_HANDSHAKE_ERRORS).increment(1);
                            tracing::debug!(msg = "tls handshake timed out");
                            return;
                        }
                    };
                let client_cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| crate::tls::forwarded_client_cert(leaf));
                let peer = peer(client_cert);
                self.serve_http(stream, peer, ambiguous, gateway, graceful)
                    .await;
            }
            None => {
                let peer = peer(None);
                self.serve_http(stream, peer, ambiguous, gateway, graceful)
                    .await;
            }
        }
    }

    /// Serves HTTP/1.1 or HTTP/2 on `stream` (a TLS session, or the plain stream) until it
    /// closes, goes idle, or the drain ends it.
    async fn serve_http<IO>(
        &self,
        stream: IO,
        peer: Peer,
        ambiguous: framing::AmbiguousFlag,
        gateway: CurrentGateway,
        graceful: Watcher,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let service = service(gateway, peer, activity.clone());
        // The first request must arrive as promptly as a head must be read.
        let first_request = self.handshake_timeout;
        let stream = IdleClose::new(stream, activity, first_request, self.idle_timeout);
        let io = TokioIo::new(FramingWatch::new(stream, self.max_header_bytes, ambiguous));
        let connection = self
            .builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let _ = graceful.watch(connection).await;
    }
}

/// A request's answer, as hyper awaits it.
type Answer = Pin<Box<dyn Future<Output = Result<Response<GatewayBody>, Infallible>> + Send>>;

/// The service hyper calls for each request on one connection: the gateway current when the
/// request arrives answers it (a reload never changes a request's config midway), and the
/// request counts as in flight until its response body is gone.
///
/// The request's future is boxed once: hyper keeps a connection's request future for the
/// connection's whole life, so unboxed its kilobytes would be held by every idle connection.
fn service(
    gateway: CurrentGateway,
    peer: Peer,
    activity: Activity,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<GatewayBody>,
    Error = Infallible,
    Future = Answer,
> + Clone {
    hyper::service::service_fn(move |request| -> Answer {
        let busy = activity.begin();
        let gateway = gateway();
        let peer = peer.clone();
        Box::pin(async move { Ok(busy.answered(gateway.handle(request, peer).await)) })
    })
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        // Rapid reset (CVE-2023-44487): a client resetting streams faster than they are
        // accepted gets GOAWAY; streams the gateway itself resets for errors are bounded too.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}
