//! Listeners, connections and graceful drain.
//!
//! Traffic is served as nginx serves it: `[runtime] workers` threads, each a single-threaded
//! runtime with its own listening socket on the shared address (`SO_REUSEPORT`) and its own
//! gateway, whose upstream pools keep their connections on that thread. A request never wakes
//! another thread. The main thread keeps the admin listener, reloads and background work.
//!
//! Each worker takes a connection-limit slot after it accepts and before it serves, so past
//! `max_connections` a worker holds one accepted connection and the rest wait in the kernel's
//! backlog instead of costing memory here. Each connection does
//! its TLS handshake under the header timeout, then hyper-util's auto builder serves HTTP/1.1 or
//! HTTP/2 (ALPN, or the h2c preface in plaintext mode). Shutdown is a future passed in: when it
//! resolves, accepting stops, `/readyz` turns 503, in-flight requests finish (bounded by the
//! request timeout) and `serve` returns.
//!
//! Files: this one is the accept loop and the drain; `acceptor.rs` serves one connection with a
//! generation's settings; [`live`] swaps generations on reload; `upkeep.rs` looks after the store
//! and the upstreams in the background; `series.rs` registers every metric series a config
//! determines at 0; `framing.rs`, `stall.rs` and [`proxy_protocol`] are the guards a
//! connection's bytes pass through.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

mod acceptor;
mod framing;
mod idle;
pub mod live;
pub mod proxy_protocol;
mod series;
mod stall;
mod upkeep;

use crate::admin::{self, Health, metrics};
use crate::config::Config;
use crate::privacy::delivery::Deliverer;
use crate::privacy::{Clock, Desk};
use crate::tags::{KeyRing, Tags};

use acceptor::Acceptor;
use live::Live;
use upkeep::{announce_unreachable_upstreams, rematch_unmatched, store_upkeep};

/// A failure to start serving. Its text names the cause, so it has no `source()`: an error
/// chain printed with `{:#}` says each cause once.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The tag store could not be opened.
    #[error("cannot open the tag store: {0}")]
    Store(crate::store::StoreError),
    /// A listener address could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

impl From<crate::store::StoreError> for ServerError {
    fn from(error: crate::store::StoreError) -> ServerError {
        ServerError::Store(error)
    }
}

/// Extra time in-flight requests get to finish after shutdown, beyond the request timeout.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How often a serving thread closes its upstream connections that have idled too long.
const UPSTREAM_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Bound listeners, ready to serve.
pub struct Server {
    config: Arc<Config>,
    /// One listening socket per serving thread, all on the same address (`SO_REUSEPORT`: the
    /// kernel spreads new connections over them). Registered with a runtime by the thread that
    /// serves it.
    listeners: Vec<std::net::TcpListener>,
    admin: TcpListener,
    /// The tag cache over the configured store, opened (and migrated) at bind time.
    tags: Arc<Tags>,
    /// Privacy requests, in the same store.
    desk: Arc<Desk>,
}

/// The tag keys `[keys]` sets: the current one and those of earlier rotations. Built here, where
/// the config meets the tag cache, so that neither needs the other.
pub fn tag_keys(config: &Config) -> KeyRing {
    KeyRing::new(
        config.tag_key.expose(),
        config.previous_tag_keys.iter().map(|k| k.expose()),
    )
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
                .map_err(|error| ServerError::Bind { address, error })
        };
        let store = crate::store::open(&config.store).await?;
        let tags = Arc::new(Tags::new(
            tag_keys(&config),
            config.store.cache_entries,
            store.tags.clone(),
        ));
        let desk = Arc::new(Desk::new(&store, tags.clone(), Clock::default()));
        let listeners = bind_shared(config.listen.address, config.runtime.workers)?;
        let admin = bind(config.admin.address).await?;
        Ok(Server {
            config,
            listeners,
            admin,
            tags,
            desk,
        })
    }

    /// The main listener's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0]
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The privacy desk's clock (tests move it forward to reach retry and expiry deadlines).
    pub fn clock(&self) -> Clock {
        self.desk.clock().clone()
    }

    /// The privacy desk: its delivery progress tells tests when an attempt's outcome is recorded.
    #[cfg(feature = "test-support")]
    pub fn desk(&self) -> Arc<Desk> {
        self.desk.clone()
    }

    /// The tag cache: tests flush its queue when what they check is the store's, not the timing
    /// of the write-behind.
    #[cfg(feature = "test-support")]
    pub fn tags(&self) -> Arc<Tags> {
        self.tags.clone()
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
        let _invalidations = AbortOnDrop(tokio::spawn(tags.clone().follow_invalidations()));
        let _upkeep_tags = AbortOnDrop(tokio::spawn(store_upkeep(
            tags.clone(),
            self.desk.clone(),
            health.clone(),
            live.current_config(),
        )));
        let _rematch = AbortOnDrop(tokio::spawn(rematch_unmatched(
            tags.clone(),
            self.desk.clone(),
        )));
        let deliverer = Arc::new(Deliverer::new(self.desk.clone(), live.current_config()));
        // Stopped with the process: an attempt cut short is retried when its lease runs out.
        let _deliverer = AbortOnDrop(tokio::spawn(deliverer.run()));
        let limit = Arc::new(Semaphore::new(self.config.limits.max_connections));
        let (accepting_tx, accepting_rx) = watch::channel(true);
        let drain_deadline = self.config.limits.request_timeout + DRAIN_GRACE;
        let mut workers = Vec::with_capacity(self.listeners.len());
        for (index, listener) in self.listeners.into_iter().enumerate() {
            let worker = Worker {
                index,
                listener,
                live: live.clone(),
                limit: limit.clone(),
                accepting: accepting_rx.clone(),
                drain_deadline,
            };
            workers.push(worker.start());
        }
        tracing::info!(
            msg = "listening",
            address = %local_addr,
            admin = %admin_addr,
            tls = live.acceptor().tls.is_some(),
            workers = workers.len(),
        );
        health.ready.store(true, Ordering::Release);
        let _probe = AbortOnDrop(tokio::spawn(announce_unreachable_upstreams(
            self.config.clone(),
        )));

        shutdown.await;
        tracing::info!(msg = "draining");
        health.ready.store(false, Ordering::Release);
        let _ = accepting_tx.send(false);
        for stopped in workers {
            let _ = stopped.await;
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

/// One serving thread: a single-threaded runtime with its own listening socket, serving the
/// connections it accepts with its own gateway (and so its own upstream pools). A request never
/// wakes another thread; only the connection limit, the tag cache, the store and the metrics are
/// shared.
struct Worker {
    index: usize,
    listener: std::net::TcpListener,
    live: Arc<Live>,
    /// `max_connections`, across all workers.
    limit: Arc<Semaphore>,
    /// Turns false when the gateway drains.
    accepting: watch::Receiver<bool>,
    drain_deadline: Duration,
}

impl Worker {
    /// Runs the worker on a thread of its own; the receiver resolves once it has drained.
    fn start(self) -> tokio::sync::oneshot::Receiver<()> {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("gateway-worker-{}", self.index))
            .spawn(move || {
                crate::logging::buffer_this_thread();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    // Out of work: the access lines of what it just did go out in one write.
                    .on_thread_park(crate::logging::flush_this_thread)
                    .build()
                    .expect("a single-threaded runtime builds");
                runtime.block_on(self.serve());
                drop(runtime);
                crate::logging::flush_this_thread();
                let _ = done_tx.send(());
            })
            .expect("the serving thread starts");
        done_rx
    }

    async fn serve(mut self) {
        let listener = TcpListener::from_std(self.listener).expect("a listening socket registers");
        let gateway = self.live.current_gateway(self.index);
        let graceful = GracefulShutdown::new();
        let mut sweep = tokio::time::interval(UPSTREAM_SWEEP_INTERVAL);
        loop {
            // Accept first, then wait for a slot: the kernel gives each listening socket its own
            // connections, so a slot freed elsewhere must reach a thread that holds one waiting.
            // Each thread holds at most one such connection; the rest wait in the backlog.
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(msg = "accept failed", error = %error);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.accepting.wait_for(|accepting| !accepting) => break,
                _ = sweep.tick() => {
                    gateway().sweep_upstream_connections();
                    continue;
                }
            };
            let permit = tokio::select! {
                permit = self.limit.clone().acquire_owned() => permit.expect("semaphore never closes"),
                _ = self.accepting.wait_for(|accepting| !accepting) => break,
            };
            let connection =
                self.live
                    .acceptor()
                    .serve(stream, peer, gateway.clone(), graceful.watcher());
            tokio::spawn(async move {
                let _permit = permit;
                let _active = ActiveConnection::open();
                connection.await;
            });
        }
        drop(listener);
        if tokio::time::timeout(self.drain_deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(msg = "drain deadline passed; closing remaining connections");
        }
    }
}

/// `workers` listening sockets on `address`, with `SO_REUSEPORT` so that each serving thread
/// accepts on its own. The first binds the configured address (port 0 picks a free port); the
/// others bind the address it got.
fn bind_shared(
    address: SocketAddr,
    workers: usize,
) -> Result<Vec<std::net::TcpListener>, ServerError> {
    use socket2::{Domain, Socket, Type};
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let address = listeners
            .first()
            .map_or(Ok(address), std::net::TcpListener::local_addr)
            .map_err(|error| ServerError::Bind { address, error })?;
        let socket = (|| {
            let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&address.into())?;
            socket.listen(1024)?;
            Ok(std::net::TcpListener::from(socket))
        })()
        .map_err(|error| ServerError::Bind { address, error })?;
        listeners.push(socket);
    }
    Ok(listeners)
}

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

async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
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
