//! The real gateway serving in this process on port 0, and its admin listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use recipient_gateway::config::Config;
use recipient_gateway::server::Server;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use super::client::{Alpn, Client, tls_connect};
use super::config::{base_config, unused_addr};
use super::dir::TestDir;
use super::upstream::MockUpstream;

/// A gateway serving in this process; shuts down and drains when dropped or on [`stop`].
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The gateway's privacy clock: tests move it to reach retry and expiry deadlines.
    pub clock: recipient_gateway::privacy::Clock,
    /// The privacy desk, whose delivery progress tests wait on.
    pub desk: Arc<recipient_gateway::privacy::Desk>,
    /// The tag cache, whose queue tests flush to the store.
    pub tags: Arc<recipient_gateway::tags::Tags>,
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
        let tags = server.tags();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        TestGateway {
            addr,
            admin,
            clock,
            desk,
            tags,
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

    /// `GET /metrics` from the admin listener.
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
