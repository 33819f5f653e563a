//! Listeners, connections and graceful drain.
//!
//! The accept loop takes a connection-limit permit before it accepts, so past `max_connections`
//! new clients wait in the kernel's backlog instead of costing memory here. Each connection does
//! its TLS handshake under the header timeout, then hyper-util's auto builder serves HTTP/1.1 or
//! HTTP/2 (ALPN, or the h2c preface in plaintext mode). Shutdown is a future passed in: when it
//! resolves, accepting stops, `/readyz` turns 503, in-flight requests finish (bounded by the
//! request timeout) and `serve` returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

mod framing;
pub mod live;
pub mod proxy_protocol;
mod stall;

use crate::admin::{self, Health, metrics};
use crate::config::{Config, Limits, listed};
use crate::privacy::delivery::Deliverer;
use crate::privacy::{Clock, Desk};
use crate::proxy::headers::Peer;
use crate::proxy::{Gateway, ProxyService};
use crate::tags::Tags;
use arc_swap::ArcSwap;
use framing::FramingWatch;
use live::Live;
use stall::WriteStall;

/// A failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The tag store could not be opened.
    #[error("cannot open the tag store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A listener address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Extra time in-flight requests get to finish after shutdown, beyond the request timeout.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Bound listeners, ready to serve.
pub struct Server {
    config: Arc<Config>,
    listener: TcpListener,
    admin: TcpListener,
    /// The tag cache over the configured store, opened (and migrated) at bind time.
    tags: Arc<Tags>,
    /// Privacy requests, in the same store.
    desk: Arc<Desk>,
}

/// Binds the listeners of `config` and serves until `shutdown` resolves, then drains.
pub async fn run(
    config: Arc<Config>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::bind(config).await?.serve(shutdown).await;
    Ok(())
}

impl Server {
    /// Binds the main and admin listeners (port 0 picks free ports; see the `*_addr` methods).
    pub async fn bind(config: Arc<Config>) -> Result<Server, ServerError> {
        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| ServerError::Bind { address, source })
        };
        let store = crate::store::open(&config.store).await?;
        let tags = Arc::new(Tags::new(config.tag_key.expose(), store.tags.clone()));
        let desk = Arc::new(Desk::new(&store, tags.clone(), Clock::default()));
        let listener = bind(config.listen.address).await?;
        let admin = bind(config.admin.address).await?;
        Ok(Server {
            config,
            listener,
            admin,
            tags,
            desk,
        })
    }

    /// The main listener's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The privacy desk's clock (tests move it forward to reach retry and expiry deadlines).
    pub fn clock(&self) -> Clock {
        self.desk.clock().clone()
    }

    /// The admin listener's bound address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let metrics_handle = metrics::handle();
        let _upkeep = AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics_handle.run_upkeep();
            }
        }));
        for warning in &self.config.warnings {
            tracing::warn!(msg = "config warning", warning = %warning);
        }

        let (stop_tx, stop_rx) = watch::channel(false);
        let health = Arc::new(Health::default());
        let (local_addr, admin_addr) = (self.local_addr(), self.admin_addr());
        let live = Arc::new(Live::new(
            self.config.clone(),
            self.tags.clone(),
            self.desk.clone(),
        ));
        let admin_task = tokio::spawn(admin::serve(
            self.admin,
            health.clone(),
            live.clone(),
            wait_for_stop(stop_rx.clone()),
        ));
        let _hangup = AbortOnDrop(tokio::spawn(reload_on_hangup(live.clone())));

        let tags = self.tags.clone();
        let _writer = AbortOnDrop(tokio::spawn(tags.clone().run_writer()));
        let _upkeep_tags = AbortOnDrop(tokio::spawn(store_upkeep(
            tags.clone(),
            self.desk.clone(),
            health.clone(),
            live.config_cell(),
        )));
        let deliverer = Arc::new(Deliverer::new(self.desk.clone(), live.config_cell()));
        // Stopped with the process: an attempt cut short is retried when its lease runs out.
        let _deliverer = AbortOnDrop(tokio::spawn(deliverer.run()));
        let gateways = live.gateway_cell();
        let graceful = GracefulShutdown::new();
        tracing::info!(
            msg = "listening",
            address = %local_addr,
            admin = %admin_addr,
            tls = live.acceptor().tls.is_some(),
        );
        health.ready.store(true, Ordering::Release);

        let limit = Arc::new(Semaphore::new(self.config.limits.max_connections));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = limit.clone().acquire_owned() => permit.expect("semaphore never closes"),
                _ = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(msg = "accept failed", error = %error);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let connection =
                live.acceptor()
                    .serve(stream, peer, gateways.clone(), graceful.watcher());
            tokio::spawn(async move {
                let _permit = permit;
                let _active = ActiveConnection::open();
                connection.await;
            });
        }

        tracing::info!(msg = "draining");
        health.ready.store(false, Ordering::Release);
        drop(self.listener);
        let deadline = self.config.limits.request_timeout + DRAIN_GRACE;
        if tokio::time::timeout(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(msg = "drain deadline passed; closing remaining connections");
        }
        // Tags written by the last requests reach the store before the process exits.
        match tokio::time::timeout(DRAIN_GRACE, tags.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(msg = "tag writes lost at shutdown", error = %error, pending = tags.pending())
            }
            Err(_) => tracing::error!(
                msg = "tag store too slow at shutdown",
                pending = tags.pending()
            ),
        }
        let _ = stop_tx.send(true);
        let _ = admin_task.await;
        tracing::info!(msg = "stopped");
    }
}

/// How often the store is pinged (for `/readyz`).
const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How often the store's size is counted (a full count is not free on millions of rows).
const STORE_SIZE_INTERVAL: Duration = Duration::from_secs(30);
/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// Reloads the config on every SIGHUP (errors are logged and counted by [`Live::reload`]).
async fn reload_on_hangup(live: Arc<Live>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!(msg = "cannot watch SIGHUP; reload with POST /admin/reload");
        return;
    };
    while hangup.recv().await.is_some() {
        let _ = live.reload().await;
    }
}

/// Background store care: health for `/readyz`, the size and outbox gauges, and retention
/// (`retention_days` as currently configured).
async fn store_upkeep(
    tags: Arc<Tags>,
    desk: Arc<Desk>,
    health: Arc<Health>,
    config: Arc<ArcSwap<Config>>,
) {
    let mut check = tokio::time::interval(STORE_CHECK_INTERVAL);
    let mut size = tokio::time::interval(STORE_SIZE_INTERVAL);
    let mut expire = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tokio::select! {
            _ = check.tick() => {
                let up = tags.check().await;
                health.store_ok.store(up, Ordering::Release);
                ::metrics::gauge!(metrics::STORE_UP).set(if up { 1.0 } else { 0.0 });
                if let Err(error) = desk.report_backlog().await {
                    tracing::error!(msg = "outbox backlog unreadable", error = %error);
                }
            }
            _ = size.tick() => tags.report_size().await,
            _ = expire.tick() => {
                let retention = config.load().store.retention;
                let cutoff = desk.clock().now().saturating_sub(retention.as_secs());
                match tags.expire(cutoff).await {
                    Ok(deleted) => tracing::info!(msg = "retention", records = deleted.records, recipients = deleted.recipients),
                    Err(error) => tracing::error!(msg = "retention failed", error = %error),
                }
                match desk.expire(cutoff).await {
                    Ok(erased) => tracing::info!(msg = "retention", privacy_subjects = erased),
                    Err(error) => tracing::error!(msg = "privacy retention failed", error = %error),
                }
            }
        }
    }
}

async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Connection settings of one config generation, shared by the connections accepted under it.
struct Acceptor {
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    handshake_timeout: Duration,
    max_header_bytes: usize,
    /// A peer that reads nothing for this long is disconnected (slow-read guard).
    write_stall_timeout: Duration,
    /// Peers that must open with a PROXY protocol header (`listen.proxy_protocol_from`).
    proxy_protocol_from: Vec<ipnet::IpNet>,
}

impl Acceptor {
    fn for_config(config: &Config) -> Acceptor {
        Acceptor {
            tls: config.listen.tls.clone().map(TlsAcceptor::from),
            builder: http_builder(&config.limits),
            handshake_timeout: config.limits.header_read_timeout,
            max_header_bytes: config.limits.max_header_bytes,
            write_stall_timeout: config.limits.body_read_timeout,
            proxy_protocol_from: config.listen.client_address.proxy_protocol_from.clone(),
        }
    }

    /// Reads a PROXY header (from listed peers), handshakes (when TLS) and serves one
    /// connection; returns when it closes. Each request on it is handled by the gateway current
    /// when the request arrives.
    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        gateways: Arc<ArcSwap<Gateway>>,
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
        let max_head = self.max_header_bytes;
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
                let service =
                    TowerToHyperService::new(ProxyService::new(gateways, peer(client_cert)));
                let io = TokioIo::new(FramingWatch::new(stream, max_head, ambiguous.clone()));
                let connection = self.builder.serve_connection(io, service).into_owned();
                let _ = graceful.watch(connection).await;
            }
            None => {
                let service = TowerToHyperService::new(ProxyService::new(gateways, peer(None)));
                let io = TokioIo::new(FramingWatch::new(stream, max_head, ambiguous.clone()));
                let connection = self.builder.serve_connection(io, service).into_owned();
                let _ = graceful.watch(connection).await;
            }
        }
    }
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

/// Counts a client connection in `gateway_connections_active` for as long as it lives.
struct ActiveConnection;

impl ActiveConnection {
    fn open() -> ActiveConnection {
        ::metrics::gauge!(metrics::CONNECTIONS_ACTIVE).increment(1.0);
        ActiveConnection
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::CONNECTIONS_ACTIVE).decrement(1.0);
    }
}

/// Aborts a background task when its owner goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
