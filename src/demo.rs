//! `recipient-gateway demo`, and the sample shipping API: what a platform's upstream looks like
//! behind the gateway.
//!
//! [`run`] starts the sample API on a free loopback port, a webhook receiver for each customer
//! whose webhook points at loopback, and the gateway in front of them. The integration tests use
//! the sample API as their realistic upstream. Its data is made up.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /v1/shipments` | every shipment, all customers mixed: `{"shipments": [...]}` |
//! | `GET /v1/shipments/{id}` | one shipment, or 404 |
//! | `POST /v1/shipments` | creates a shipment for `X-Gateway-Client`; 201 with the record |
//! | `GET /v1/analytics/shipments` | the same list, for the analytics route |
//! | `GET /v1/labels/{id}` | a PDF label (a passthrough media type) |
//!
//! It also has a webhook receiver standing in for a customer's privacy endpoint: it checks each
//! delivery's Standard Webhooks signature and prints one line per delivery.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, Upstream};
use crate::{server, tls};

/// The demo's API keys, by client id. Their SHA-256 digests are in `config/gateway.toml`.
pub const DEMO_KEYS: &[(&str, &str)] = &[
    ("acme", "demo-key-acme"),
    ("globex", "demo-key-globex"),
    ("analytics", "demo-key-analytics"),
];

/// A running sample API; stops when dropped.
pub struct SampleApi {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for SampleApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The shipments it serves, shared by its connections.
struct Shipments {
    records: Mutex<Vec<Value>>,
}

/// Starts the sample API on `addr` (use port 0 for a free port).
pub async fn start_sample_api(addr: SocketAddr) -> std::io::Result<SampleApi> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(Shipments {
        records: Mutex::new(seed()),
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(state.handle(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(SampleApi { addr, task })
}

impl Shipments {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method().clone(), segments.as_slice()) {
            (Method::GET, ["v1", "shipments"] | ["v1", "analytics", "shipments"]) => {
                let records = self.records.lock().expect("not poisoned").clone();
                json_response(StatusCode::OK, &json!({ "shipments": records }))
            }
            (Method::GET, ["v1", "shipments", id]) => {
                let records = self.records.lock().expect("not poisoned");
                match records.iter().find(|r| r["id"] == *id) {
                    Some(record) => json_response(StatusCode::OK, record),
                    None => not_found(),
                }
            }
            (Method::POST, ["v1", "shipments"]) => self.create(req).await,
            (Method::GET, ["v1", "labels", id]) => {
                let mut response = Response::new(Full::new(Bytes::from(format!(
                    "%PDF-1.4\n% demo label for {id}\n%%EOF\n"
                ))));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/pdf"),
                );
                response
            }
            _ => not_found(),
        }
    }

    async fn create(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let customer = req
            .headers()
            .get("x-gateway-client")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Ok(body) = Limited::new(req.into_body(), 1 << 20).collect().await else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "unreadable body"}),
            );
        };
        let Ok(Value::Object(mut record)) = serde_json::from_slice::<Value>(&body.to_bytes())
        else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "expected an object"}),
            );
        };
        let mut records = self.records.lock().expect("not poisoned");
        let n = records.len() + 1;
        record.insert("id".into(), json!(format!("shp_{n:04}")));
        record.insert("tracking_number".into(), json!(format!("1ZDEMO{n:010}")));
        record.insert("status".into(), json!("label_created"));
        if let Some(customer) = customer {
            record.insert("customer_id".into(), json!(customer));
        }
        let record = Value::Object(record);
        records.push(record.clone());
        json_response(StatusCode::CREATED, &record)
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn not_found() -> Response<Full<Bytes>> {
    json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"}))
}

fn seed() -> Vec<Value> {
    vec![
        json!({
            "id": "shp_0001", "tracking_number": "1ZACME0000000001", "customer_id": "acme",
            "status": "in_transit", "weight_kg": 2.5, "service": "ground",
            "recipient": {
                "name": "Jane Doe", "email": "jane.doe@example.com", "phone": "+1 415 555 0101",
                "address": {"street": "1 Market St", "city": "San Francisco", "postal_code": "94105", "country": "US"}
            }
        }),
        json!({
            "id": "shp_0002", "tracking_number": "1ZGLBX0000000002", "customer_id": "globex",
            "status": "delivered", "weight_kg": 0.8, "service": "express",
            "recipient": {
                "name": "Rahul Mehta", "email": "rahul@example.org", "phone": "+44 20 7946 0958",
                "address": {"street": "221B Baker St", "city": "London", "postal_code": "NW1 6XE", "country": "GB"}
            }
        }),
        json!({
            "id": "shp_0003", "tracking_number": "1ZACME0000000003", "customer_id": "acme",
            "status": "label_created", "weight_kg": 12.0, "service": "freight",
            "recipient": {
                "name": "Ana Lima", "email": "ana.lima@example.net", "phone": "+55 11 5555 0199",
                "address": {"street": "Av. Paulista 1000", "city": "São Paulo", "postal_code": "01310-100", "country": "BR"}
            }
        }),
    ]
}

/// A running webhook receiver; stops when dropped.
pub struct WebhookReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a receiver on `addr` that verifies deliveries with `secret` (`whsec_…`), answers 204
/// to valid ones (401 otherwise) and prints a line per delivery to stderr: request id, type,
/// whether it is verified and whether the signature checks. The subject is not printed.
pub async fn start_webhook_receiver(
    addr: SocketAddr,
    secret: String,
) -> std::io::Result<WebhookReceiver> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let secret = Arc::new(secret);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let secret = secret.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let secret = secret.clone();
                    async move { Ok::<_, Infallible>(receive(&secret, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(WebhookReceiver { addr, task })
}

async fn receive(secret: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let Ok(body) = Limited::new(req.into_body(), 1 << 20).collect().await else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "unreadable body"}),
        );
    };
    let body = body.to_bytes();
    let checked = crate::privacy::signature::verify(
        secret,
        &id,
        &timestamp,
        &signature,
        &body,
        crate::tags::now(),
        300,
    );
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    eprintln!(
        "webhook: privacy request {} ({}, verified: {}) delivered; signature {}",
        payload["request_id"].as_str().unwrap_or("?"),
        payload["request_type"].as_str().unwrap_or("?"),
        payload["verified"],
        match checked {
            Ok(()) => "valid".to_string(),
            Err(error) => format!("INVALID: {error}"),
        }
    );
    let status = if checked.is_ok() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Points every upstream of `config` at the sample API on `addr` (plain HTTP on loopback): the
/// shipped config's upstream is a placeholder, and the API binds a free port.
fn point_upstreams_at(config: &mut Config, addr: SocketAddr) {
    let authority: http::uri::Authority = addr
        .to_string()
        .parse()
        .expect("a socket address is an authority");
    config.upstreams = config
        .upstreams
        .iter()
        .map(|upstream| {
            Arc::new(Upstream {
                scheme: http::uri::Scheme::HTTP,
                authority: authority.clone(),
                tls: None,
                ..(**upstream).clone()
            })
        })
        .collect();
}

/// `recipient-gateway demo`: the sample API and a webhook receiver on loopback, and the gateway
/// with `config` in front of them, until `shutdown` resolves. Prints where everything is and
/// ready-to-paste `curl` lines on stderr.
pub async fn run(
    mut config: Config,
    config_path: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let api = start_sample_api(([127, 0, 0, 1], 0).into())
        .await
        .context("cannot start the sample API")?;
    point_upstreams_at(&mut config, api.addr);
    // One receiver per distinct loopback webhook address, standing in for the customers.
    let mut receivers = Vec::new();
    for client in &config.clients {
        let Some(webhook) = &client.webhook else {
            continue;
        };
        let Some(addr) = webhook
            .url
            .authority()
            .and_then(|a| a.as_str().parse::<std::net::SocketAddr>().ok())
            .filter(|a| a.ip().is_loopback())
        else {
            continue;
        };
        let secret = format!(
            "whsec_{}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                webhook.key.expose()
            )
        );
        let receiver = start_webhook_receiver(addr, secret)
            .await
            .with_context(|| format!("cannot start the demo webhook receiver on {addr}"))?;
        receivers.push((client.id.clone(), receiver));
    }
    let tls = config.listen.tls.is_some();
    let server = server::Server::bind(Arc::new(config)).await?;
    let base = format!(
        "{}://localhost:{}",
        if tls { "https" } else { "http" },
        server.local_addr().port()
    );
    let ca = tidy(
        &config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("../certs/dev")
            .join(tls::DEV_CA_CERT),
    );
    let cacert = if tls {
        format!("--cacert {} ", ca.display())
    } else {
        String::new()
    };
    let key = |id: &str| {
        DEMO_KEYS
            .iter()
            .find(|(client, _)| *client == id)
            .map_or("", |(_, key)| *key)
    };
    eprintln!(
        "\nrecipient-gateway demo\n\
         \x20 gateway     {base}\n\
         \x20 sample API  http://{api}\n\
         \x20 admin       http://{admin}/metrics\n\
         \x20 privacy     {base}/privacy/requests (the recipients' page, for a browser)\n\
         {hooks}\n\
         Acme sees its own recipients; Globex's records come back redacted:\n\
         \x20 curl {cacert}-H 'Authorization: Bearer {acme}' {base}/v1/shipments\n\
         Globex sees the opposite:\n\
         \x20 curl {cacert}-H 'Authorization: Bearer {globex}' {base}/v1/shipments\n\
         Platform analytics sees only per-customer pseudonyms (h:...):\n\
         \x20 curl {cacert}-H 'Authorization: Bearer {analytics}' {base}/v1/analytics/shipments\n\
         Acme creates a shipment (the date of birth never reaches the upstream):\n\
         \x20 curl {cacert}-H 'Authorization: Bearer {acme}' -H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"recipient\":{{\"name\":\"Ada\",\"email\":\"ada@example.com\",\"date_of_birth\":\"1990-01-01\"}}}}' {base}/v1/shipments\n\
         Without a key:\n\
         \x20 curl {cacert}{base}/v1/shipments\n\
         A recipient files a privacy request, proven by her tracking number (after Acme's list\n\
         above has tagged the records); it is delivered, signed, to Acme's webhook below:\n\
         \x20 curl {cacert}-H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"type\":\"delete\",\"email\":\"jane.doe@example.com\",\"tracking_number\":\"1ZACME0000000001\"}}' {base}/privacy/requests\n\
         Its public status, and Acme's privacy inbox:\n\
         \x20 curl {cacert}{base}/privacy/requests/<request_id>\n\
         \x20 curl {cacert}-H 'Authorization: Bearer {acme}' {base}/v1/privacy/requests\n\
         Metrics:\n\
         \x20 curl http://{admin}/metrics\n\n\
         Ctrl-C stops the demo.\n",
        api = api.addr,
        hooks = receivers
            .iter()
            .map(|(client, receiver)| {
                format!(
                    "  webhook     http://{} ({client}'s receiver)\n",
                    receiver.addr
                )
            })
            .collect::<String>(),
        admin = server.admin_addr(),
        acme = key("acme"),
        globex = key("globex"),
        analytics = key("analytics"),
    );
    server.serve(shutdown).await;
    drop(receivers);
    Ok(())
}

/// `config/../certs/dev/ca.crt` as `certs/dev/ca.crt`: `..` folded lexically, for curl lines a
/// reader can paste.
fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
