//! Listeners, connections and graceful drain.
//!
//! The accept loop takes a connection-limit permit before it accepts, so past `max_connections`
//! new clients wait in the kernel's backlog instead of costing memory here. Each connection does
//! its TLS handshake under the header timeout, then hyper-util's auto builder serves HTTP/1.1 or
//! HTTP/2 (ALPN, or the h2c preface in plaintext mode). Shutdown is a future passed in: when it
//! resolves, accepting stops, `/readyz` turns 503, in-flight requests finish (bounded by the
//! request timeout) and `serve` returns.
//!
//! Files: this one is the accept loop and the drain; `acceptor.rs` serves one connection with a
//! generation's settings; [`live`] swaps generations on reload; `upkeep.rs` looks after the store
//! and the upstreams in the background; `framing.rs`, `stall.rs` and [`proxy_protocol`] are the
//! guards a connection's bytes pass through.

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
pub mod live;
pub mod proxy_protocol;
mod stall;
mod upkeep;

use crate::admin::{self, Health, metrics};
use crate::config::Config;
use crate::privacy::delivery::Deliverer;
use crate::privacy::{Clock, Desk};
use crate::tags::Tags;

use acceptor::Acceptor;
use live::Live;
use upkeep::{announce_unreachable_upstreams, store_upkeep};

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
            live.current_config(),
        )));
        let deliverer = Arc::new(Deliverer::new(self.desk.clone(), live.current_config()));
        // Stopped with the process: an attempt cut short is retried when its lease runs out.
        let _deliverer = AbortOnDrop(tokio::spawn(deliverer.run()));
        let gateway = live.current_gateway();
        let graceful = GracefulShutdown::new();
        tracing::info!(
            msg = "listening",
            address = %local_addr,
            admin = %admin_addr,
            tls = live.acceptor().tls.is_some(),
        );
        health.ready.store(true, Ordering::Release);
        let _probe = AbortOnDrop(tokio::spawn(announce_unreachable_upstreams(
            self.config.clone(),
        )));

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
                    .serve(stream, peer, gateway.clone(), graceful.watcher());
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
