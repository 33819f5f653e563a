//! The operators' listener: `/metrics`, `/healthz`, `/readyz` (listeners bound, not draining, tag
//! store answering), `POST /admin/reload` and `GET /admin/privacy/unmatched` (the privacy
//! requests no controller was found for, for the platform's privacy team).
//!
//! Plain HTTP/1.1 on its own address so that it can stay on a private interface while the main
//! listener faces customers. With `[admin] token_env` set, `/admin/*` requires
//! `Authorization: Bearer <token>` (compared in constant time); the read-only endpoints stay open
//! for probes and scrapers.

pub mod meters;
pub mod metrics;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
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

/// What `/admin/*` acts on: the running server's config.
pub trait Control: Send + Sync + 'static {
    /// The bearer token `/admin/*` requires now, if any.
    fn admin_token(&self) -> Option<crate::config::Secret>;

    /// Reloads the config; the error is one sentence safe to show an operator.
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;

    /// `GET /admin/privacy/unmatched`: the privacy requests no controller was found for, oldest
    /// first, as a JSON body (ids, types and ages; never personal data). The error is one
    /// sentence safe to show an operator.
    fn unmatched(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>>;
}

/// Serves the admin listener until `stop` resolves; open admin connections are dropped then.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    control: Arc<dyn Control>,
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
        let (health, control) = (health.clone(), control.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (health, control) = (health.clone(), control.clone());
                async move { Ok::<_, Infallible>(respond(&req, &health, &*control).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn respond(
    req: &Request<Incoming>,
    health: &Health,
    control: &dyn Control,
) -> Response<Full<Bytes>> {
    if req.uri().path().starts_with("/admin/") && !authorized(req, control) {
        let mut response = json(
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"code":"unauthorized","message":"/admin/* requires Authorization: Bearer <admin token>."}}"#,
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"recipient-gateway-admin\""),
        );
        return response;
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/admin/reload") => match control.reload().await {
            Ok(()) => json(StatusCode::OK, r#"{"status":"reloaded"}"#),
            Err(error) => text(
                StatusCode::UNPROCESSABLE_ENTITY,
                "application/json",
                serde_json::json!({
                    "error": {"code": "reload_rejected", "message": error}
                })
                .to_string(),
            ),
        },
        (&Method::GET, "/admin/privacy/unmatched") => match control.unmatched().await {
            Ok(body) => text(StatusCode::OK, "application/json", body),
            Err(error) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                serde_json::json!({
                    "error": {"code": "store_unavailable", "message": error}
                })
                .to_string(),
            ),
        },
        (_, "/admin/privacy/unmatched") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":{"code":"method_not_allowed","message":"Use GET."}}"#,
        ),
        (_, "/admin/reload") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":{"code":"method_not_allowed","message":"Use POST."}}"#,
        ),
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
            r#"{"error":{"code":"not_found","message":"The admin listener serves /metrics, /healthz, /readyz, POST /admin/reload and GET /admin/privacy/unmatched."}}"#,
        ),
    }
}

/// Whether the request carries the admin token (always, when none is configured).
fn authorized(req: &Request<Incoming>, control: &dyn Control) -> bool {
    use subtle::ConstantTimeEq;
    let Some(token) = control.admin_token() else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| bool::from(given.ct_eq(token.expose())))
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
