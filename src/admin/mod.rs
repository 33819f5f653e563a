//! The operators' listener: `/metrics`, `/healthz`, `/readyz` (listeners bound, not draining, tag
//! store answering).
//!
//! Plain HTTP/1.1 on its own address so that it can stay on a private interface while the main
//! listener faces customers.

pub mod metrics;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What the admin endpoints report on.
#[derive(Debug)]
pub struct Health {
    /// Listeners bound and not draining.
    pub ready: AtomicBool,
    /// The tag store answered its last ping.
    pub store_ok: AtomicBool,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            ready: AtomicBool::new(false),
            store_ok: AtomicBool::new(true),
        }
    }
}

/// Serves the admin listener until `stop` resolves; open admin connections are dropped then.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(msg = "admin accept failed", error = %error);
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let health = health.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let health = health.clone();
                async move { Ok::<_, Infallible>(respond(&req, &health)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn respond(req: &Request<Incoming>, health: &Health) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let body = metrics::handle().render();
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        }
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET, "/readyz") => {
            if health.ready.load(Ordering::Acquire) && health.store_ok.load(Ordering::Acquire) {
                json(StatusCode::OK, r#"{"status":"ready"}"#)
            } else {
                json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not_ready"}"#)
            }
        }
        (_, "/metrics" | "/healthz" | "/readyz") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":{"code":"method_not_allowed","message":"Use GET."}}"#,
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"not_found","message":"The admin listener serves /metrics, /healthz and /readyz."}}"#,
        ),
    }
}

fn json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    text(status, "application/json", body.to_string())
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
