//! A customer's webhook receiver: records each delivery, checks its signature, answers as scripted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::dir::TestDir;
use super::wait::eventually;

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
        let arrived = async || Some(self.got()).filter(|got| got.len() >= n);
        eventually(timeout, arrived, || {
            format!("{} of {n} deliveries", self.got().len())
        })
        .await
    }
}
