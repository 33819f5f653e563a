//! Pooled keep-alive connections to upstreams, and the classification of their failures.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::ClientBodyError;
use super::error::ProxyError;
use crate::admin::metrics;
use crate::config::{Config, Upstream};
use crate::vocabulary::BoxBody;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest TCP connect (also bounded by the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection pool per upstream (each has its own TLS roots).
pub struct Upstreams {
    pools: HashMap<String, Pool>,
}

struct Pool {
    upstream: Arc<Upstream>,
    client: Client<HttpsConnector<HttpConnector>, BoxBody>,
}

impl Upstreams {
    /// Builds the pools for every upstream of `config`.
    pub fn new(config: &Config) -> Upstreams {
        let pools = config
            .upstreams
            .iter()
            .map(|upstream| {
                (
                    upstream.name.clone(),
                    Pool::new(upstream.clone(), config.limits.request_timeout),
                )
            })
            .collect();
        Upstreams { pools }
    }

    /// Sends `request` (origin-form URI) to the named upstream and waits until `deadline` for its
    /// response head.
    pub async fn send(
        &self,
        upstream: &str,
        mut request: Request<BoxBody>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Incoming>, ProxyError> {
        let pool = self
            .pools
            .get(upstream)
            .expect("routes reference known upstreams");
        *request.uri_mut() = pool.target(request.uri());
        *request.version_mut() = Version::HTTP_11;
        let started = Instant::now();
        let result = tokio::time::timeout_at(deadline, pool.client.request(request)).await;
        metrics::upstream_duration()
            .get([&pool.upstream.name])
            .record(started.elapsed().as_secs_f64());
        let label = pool.upstream.name.clone();
        let error = match result {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(error)) if client_body_failure(&error).is_some() => {
                // The client's fault, not the upstream's: no upstream error is counted.
                return Err(client_body_failure(&error).expect("checked"));
            }
            Ok(Err(error)) if error.is_connect() => {
                tracing::warn!(msg = "upstream connect failed", upstream = %label, error = %error);
                ("connect", ProxyError::UpstreamConnect)
            }
            Ok(Err(error)) => {
                tracing::warn!(msg = "upstream request failed", upstream = %label, error = %error);
                ("protocol", ProxyError::UpstreamProtocol)
            }
            Err(_) => ("timeout", ProxyError::UpstreamTimeout),
        };
        ::metrics::counter!(metrics::UPSTREAM_ERRORS, "upstream" => label, "kind" => error.0)
            .increment(1);
        Err(error.1)
    }
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
    fn new(upstream: Arc<Upstream>, request_timeout: Duration) -> Pool {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT.min(request_timeout)));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = match &upstream.tls {
            Some(config) => (**config).clone(),
            // Never used for an http upstream, but the connector type wants one.
            None => rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Pool { upstream, client }
    }

    /// The absolute URI for the upstream: its scheme and authority, its base path, then the
    /// client's path and query.
    fn target(&self, original: &Uri) -> Uri {
        let path_and_query = original.path_and_query().map_or("/", PathAndQuery::as_str);
        let joined = format!("{}{}", self.upstream.base_path, path_and_query);
        Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(joined)
            .build()
            .expect("scheme, authority and a validated path make a URI")
    }
}
