//! The request path: route match, authentication, header hygiene, inspection, forwarding, errors.
//!
//! [`Gateway`] holds what every request needs (config, upstream pools, tags, hash keys); the
//! server calls [`Gateway::handle`] for each request. Its stages are, in order:
//!
//! 1. refuse CONNECT and ambiguous framing; judge the path ([`crate::config::Config::judge`]:
//!    canonical, and every lenient reading takes the same route); refuse `Upgrade`;
//! 2. screen the headers an upstream could read differently ([`headers::screen`]);
//! 3. authenticate ([`auth`]), before any body is read (an unauthenticated client never gets
//!    `100 Continue`); find the client's address ([`client_address`]) and rewrite the request's
//!    headers for the upstream ([`forwarding`]);
//! 4. plain route: stream the body; inspected route: collect, inspect and redact it (`inspected`);
//! 5. forward over the upstream pool ([`upstream`]) under the request timeout;
//! 6. plain route: stream the answer back; inspected route: collect and inspect it, find each
//!    record's controller ([`resolve`]), tag and redact it.
//!
//! Every answer, forwarded or refused, is counted in the request metrics when its head is ready,
//! and ends in one access-log line when its body has ended ([`crate::body::Finished`]), saying
//! how many bytes went out and whether the body ended cleanly.

pub mod auth;
pub mod client_address;
pub mod error;
pub mod forwarding;
pub mod header_meaning;
pub mod headers;
mod inspected;
pub mod resolve;
mod tunnel;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;

use crate::admin::meters::{self, RequestMeters};
use crate::admin::metrics;
use crate::config::{Client, Config, Route, RouteAuth};
use crate::privacy::Desk;
use crate::privacy::http::{Call, Endpoint};
use crate::redact::HashKeys;
use crate::tags::Tags;
use crate::vocabulary::{GatewayBody, full};
use auth::Credential;
use client_address::Peer;
use error::ProxyError;
use headers::HeaderFlaw;
use upstream::Upstreams;

/// Everything a request needs, shared by all connections of one config generation.
pub struct Gateway {
    /// The validated config this gateway serves.
    pub config: Arc<Config>,
    /// Connection pools, one per upstream.
    upstreams: Upstreams,
    /// Record and recipient tags (outlive config generations).
    pub tags: Arc<Tags>,
    /// Per-controller keys of the `hash` action.
    hash_keys: HashKeys,
    /// Privacy requests (outlives config generations).
    desk: Arc<Desk>,
    /// Request metric handles per route and caller, resolved for this config.
    meters: RequestMeters,
}

/// What the access log and the metrics need to know about a request once it is answered.
struct Outcome<'a> {
    route: Option<&'a Route>,
    /// The `route` label of an answer the gateway gives itself (the privacy endpoints).
    endpoint: Option<&'static str>,
    client: Option<Arc<Client>>,
    /// Values the redaction engine changed, request and response together.
    redactions: usize,
    /// Why the gateway refused the request, as `gateway_blocked_total` counts it.
    reason: Option<&'static str>,
}

impl Outcome<'_> {
    /// The `route` label: the route's name, the gateway endpoint's, or `none`.
    fn label(&self) -> &str {
        match (self.route, self.endpoint) {
            (Some(route), _) => &route.name,
            (None, Some(endpoint)) => endpoint,
            (None, None) => "none",
        }
    }
}

impl Gateway {
    /// Builds the upstream pools and hash keys for `config`, over `tags` and `desk`.
    pub fn new(config: Arc<Config>, tags: Arc<Tags>, desk: Arc<Desk>) -> Gateway {
        Gateway {
            upstreams: Upstreams::new(&config),
            meters: RequestMeters::new(&config),
            hash_keys: config.hash_keys(),
            tags,
            desk,
            config,
        }
    }

    /// Closes upstream connections idle too long; the serving thread that owns them calls it.
    pub fn sweep_upstream_connections(&self) {
        self.upstreams.sweep();
    }

    /// Answers one request: forwarded, or refused with a JSON error.
    pub async fn handle(&self, request: Request<Incoming>, peer: Peer) -> Response<GatewayBody> {
        let started = Instant::now();
        let request_id = forwarding::request_id(request.headers());
        let method = request.method().clone();
        // The target as parsed (shared bytes, no copy), for the access line.
        let target = request.uri().clone();
        let mut outcome = Outcome {
            route: None,
            endpoint: None,
            client: None,
            redactions: 0,
            reason: None,
        };
        let mut response = match self.proxy(request, peer, &request_id, &mut outcome).await {
            Ok(response) => response,
            Err(error) => {
                let route = outcome.label().to_string();
                match error {
                    ProxyError::Unauthorized | ProxyError::AmbiguousCredentials => {
                        ::metrics::counter!(metrics::AUTH_FAILURES, "route" => route).increment(1);
                    }
                    _ => {
                        if let Some(reason) = error.blocked_reason() {
                            ::metrics::counter!(metrics::BLOCKED, "route" => route, "reason" => reason)
                                .increment(1);
                            outcome.reason = Some(reason);
                        }
                    }
                }
                error.into_response(request_id.to_str().unwrap_or_default())
            }
        };
        response
            .headers_mut()
            .insert(forwarding::X_REQUEST_ID.clone(), request_id.clone());
        self.record(&outcome, &response, started);
        // The access line is written when the answer's body ends, with how it ended.
        let line = AccessLine {
            request_id,
            // The config's own route (a reference count), or a gateway endpoint's fixed label:
            // nothing is copied per request.
            route: match (outcome.route, outcome.endpoint) {
                (Some(route), _) => RouteLabel::Route(self.config.routes[route.index].clone()),
                (None, Some(endpoint)) => RouteLabel::Fixed(endpoint),
                (None, None) => RouteLabel::Fixed("none"),
            },
            client: outcome.client.clone(),
            method: method.clone(),
            target,
            status: response.status().as_u16(),
            redactions: outcome.redactions,
            reason: outcome.reason,
            bodiless: method == Method::HEAD
                || matches!(response.status().as_u16(), 101 | 204 | 304),
            started,
        };
        response.map(|body| body.on_finished(Arc::new(line)))
    }

    async fn proxy<'a>(
        &'a self,
        request: Request<Incoming>,
        peer: Peer,
        request_id: &HeaderValue,
        outcome: &mut Outcome<'a>,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        if request.method() == Method::CONNECT {
            return Err(ProxyError::UpgradeRefused);
        }
        if peer.ambiguous_framing.load(Ordering::Acquire) {
            return Err(ProxyError::AmbiguousFraming);
        }
        let path = request.uri().path();
        let judged = self.config.judge(path).map_err(ProxyError::InvalidPath)?;
        let listen = &self.config.listen;
        let forwarding =
            client_address::client_address(request.headers(), peer.ip, &listen.client_address);
        if let Some(endpoint) = Endpoint::of(&self.config.privacy.path, path) {
            outcome.endpoint = Some(endpoint.label());
            if request.headers().contains_key(header::UPGRADE) {
                return Err(ProxyError::UpgradeRefused);
            }
            if endpoint.for_customers() {
                outcome.client = Some(
                    self.authenticate(request.headers())?
                        .ok_or(ProxyError::Unauthorized)?,
                );
            }
            let call = Call {
                desk: &self.desk,
                config: &self.config,
                ip: forwarding.client,
                caller: outcome.client.clone(),
                request_id: request_id.to_str().unwrap_or_default(),
            };
            // Boxed, as the inspected and upgrade paths below: a connection's request future
            // is kept for its whole life, so it is sized for the passthrough path alone.
            return Ok(Box::pin(call.serve(endpoint, request)).await);
        }
        let route = judged.ok_or(ProxyError::NoRoute)?;
        outcome.route = Some(route);
        let upgrade = match request.headers().get(header::UPGRADE) {
            None => None,
            Some(protocol)
                if route.allow_upgrade
                    && request.version() == Version::HTTP_11
                    && connection_asks_upgrade(request.headers()) =>
            {
                Some(protocol.clone())
            }
            Some(_) => return Err(ProxyError::UpgradeRefused),
        };
        let (mut parts, body) = request.into_parts();
        screen_request(&self.config, route, &mut parts.headers)?;
        outcome.client = self.authenticate(&parts.headers)?;
        if route.auth == RouteAuth::Client && outcome.client.is_none() {
            return Err(ProxyError::Unauthorized);
        }

        let authority = parts.uri.authority().cloned();
        forwarding::forward_request_headers(
            &mut parts.headers,
            outcome.client.as_ref().map(|c| &*c.id),
            request_id,
            &peer,
            &forwarding,
            authority.as_ref(),
        );
        let limits = &self.config.limits;
        let deadline = tokio::time::Instant::now() + limits.request_timeout;
        if let Some(protocol) = upgrade {
            return Box::pin(self.upgrade(route, parts, body, protocol, request_id, deadline))
                .await;
        }
        if !route.inspected() {
            let upstream_request =
                Request::from_parts(parts, GatewayBody::client(body, limits.body_read_timeout));
            let response = self
                .upstreams
                .send(route.upstream_index, upstream_request, deadline)
                .await?;
            return Ok(streamed(response, request_id, limits.body_read_timeout));
        }

        let exchange = inspected::Exchange {
            gateway: self,
            route,
            caller: outcome.client.clone(),
            deadline,
        };
        Box::pin(self.inspected(exchange, parts, body, request_id, &mut outcome.redactions)).await
    }

    /// An inspected route's exchange: the request body inspected and redacted, forwarded, and the
    /// answer inspected, tagged and redacted; the values redacted are added to `redactions` as
    /// each direction is done (a failed upstream still logs what the request had redacted).
    async fn inspected(
        &self,
        exchange: inspected::Exchange<'_>,
        parts: http::request::Parts,
        body: Incoming,
        request_id: &HeaderValue,
        redactions: &mut usize,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        let method = parts.method.clone();
        let (upstream_request, sent) = exchange.request(parts, body).await?;
        *redactions += sent.redactions;
        let response = self
            .upstreams
            .send(
                exchange.route.upstream_index,
                upstream_request,
                exchange.deadline,
            )
            .await?;
        let (response, answered) = exchange
            .response(&method, response, sent, request_id)
            .await?;
        *redactions += answered;
        Ok(response)
    }

    /// An upgrade on a route that allows it: forwarded over a connection of its own; on `101`
    /// the two connections become a tunnel ([`tunnel`]), otherwise the upstream's answer goes
    /// back as any other.
    async fn upgrade(
        &self,
        route: &Route,
        mut parts: http::request::Parts,
        body: Incoming,
        protocol: HeaderValue,
        request_id: &HeaderValue,
        deadline: tokio::time::Instant,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        let client = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or(ProxyError::UpgradeRefused)?;
        // The hop-by-hop pair the header hygiene removed, put back for this hop.
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
        let limits = &self.config.limits;
        let request =
            Request::from_parts(parts, GatewayBody::client(body, limits.body_read_timeout));
        let mut response = self
            .upstreams
            .upgrade(route.upstream_index, request, deadline)
            .await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(streamed(response, request_id, limits.body_read_timeout));
        }
        let upstream = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        let switched_to = parts.headers.get(header::UPGRADE).cloned();
        forwarding::forward_response_headers(&mut parts.headers, request_id);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(switched_to) = switched_to {
            parts.headers.insert(header::UPGRADE, switched_to);
        }
        tokio::spawn(tunnel::run(
            client,
            upstream,
            limits.idle_timeout,
            route.name.clone(),
            request_id.to_str().unwrap_or_default().to_string(),
        ));
        Ok(Response::from_parts(parts, full(Bytes::new())))
    }

    /// The caller named by the credential headers: `None` without any, an error for a key no
    /// client has or conflicting keys.
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Option<Arc<Client>>, ProxyError> {
        match auth::credential(headers) {
            Credential::Absent => Ok(None),
            Credential::Ambiguous => Err(ProxyError::AmbiguousCredentials),
            Credential::Key(key) => auth::authenticate(&self.config.clients, key)
                .map(Some)
                .ok_or(ProxyError::Unauthorized),
        }
    }

    /// The request metrics, when the answer's head is ready.
    fn record(&self, outcome: &Outcome<'_>, response: &Response<GatewayBody>, started: Instant) {
        let elapsed = started.elapsed();
        let route = outcome.label();
        let caller = outcome.client.as_deref();
        match outcome.route {
            Some(matched) => {
                self.meters
                    .answered(matched, caller, response.status(), elapsed.as_secs_f64())
            }
            None => meters::answered_without_route(
                route,
                caller,
                response.status(),
                elapsed.as_secs_f64(),
            ),
        }
    }
}

/// One request's access line, written when its answer's body ends: by then the line can say how
/// many bytes went out, whether the body ended cleanly, and how long it took to the last byte.
struct AccessLine {
    request_id: HeaderValue,
    route: RouteLabel,
    client: Option<Arc<Client>>,
    method: Method,
    /// The target as parsed (shared bytes); logged as [`loggable_path`] of its path.
    target: http::Uri,
    status: u16,
    redactions: usize,
    /// Why the gateway refused the request, as `gateway_blocked_total` counts it.
    reason: Option<&'static str>,
    /// An answer without a body (`HEAD`, 101, 204, 304): it ends with its head.
    bodiless: bool,
    started: Instant,
}

/// The `route` of an access line.
enum RouteLabel {
    /// A configured route.
    Route(Arc<Route>),
    /// A gateway endpoint, or `none`.
    Fixed(&'static str),
}

impl RouteLabel {
    fn as_str(&self) -> &str {
        match self {
            RouteLabel::Route(route) => &route.name,
            RouteLabel::Fixed(label) => label,
        }
    }
}

impl crate::body::Finished for AccessLine {
    fn finished(&self, end: &crate::body::BodyEnd) {
        let outcome = if self.bodiless {
            crate::body::EndOutcome::Ok
        } else {
            end.outcome
        };
        metrics::response_bodies()
            .get([outcome.as_str()])
            .increment(1);
        tracing::info!(
            msg = "request",
            request_id = self.request_id.to_str().unwrap_or_default(),
            route = self.route.as_str(),
            client = self.client.as_deref().map_or("anonymous", |c| &*c.id),
            method = self.method.as_str(),
            path = %loggable_path(self.target.path()),
            status = self.status,
            bytes = end.bytes,
            outcome = outcome.as_str(),
            // Whole microseconds: `0.456`, not the float noise of `0.45603499999999997`.
            duration_ms = self.started.elapsed().as_micros() as f64 / 1000.0,
            redactions = self.redactions as u64,
            reason = self.reason,
        );
    }
}

/// Screens the headers of a request judged to take `route` ([`headers::screen`]) and checks that
/// an allowed URL override takes the same route. After this, every upstream reading of the
/// request's head agrees with the gateway's.
pub fn screen_request(
    config: &Config,
    route: &Arc<Route>,
    headers: &mut http::HeaderMap,
) -> Result<(), ProxyError> {
    let policy = headers::HeaderPolicy {
        underscores: config.listen.underscores,
        overrides: &route.allowed_overrides,
        allowed: &route.allowed_headers,
        listed: route.forward_headers == crate::config::ForwardHeaders::Listed,
    };
    headers::screen(headers, policy).map_err(ProxyError::InvalidHeader)?;
    for url in headers::url_overrides(headers, &route.allowed_overrides) {
        let url = url.map_err(ProxyError::InvalidHeader)?;
        let same = config
            .judge(url)
            .is_ok_and(|other| other.is_some_and(|other| Arc::ptr_eq(other, route)));
        if !same {
            return Err(ProxyError::InvalidHeader(HeaderFlaw::RoutingOverride));
        }
    }
    Ok(())
}

/// The path for the access log: segments that look like an e-mail address are replaced, since an
/// API may put a recipient identifier in its path.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    let has_at = |segment: &str| {
        segment.contains('@')
            || segment
                .as_bytes()
                .windows(3)
                .any(|w| w.eq_ignore_ascii_case(b"%40"))
    };
    if !has_at(path) {
        return path.into();
    }
    path.split('/')
        .map(|segment| {
            if has_at(segment) {
                "[REDACTED]"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
        .into()
}

/// Whether `Connection` lists `upgrade`, as an HTTP/1.1 upgrade request must.
fn connection_asks_upgrade(headers: &http::HeaderMap) -> bool {
    forwarding::connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"))
}

/// An upstream answer passed on as it streams: response hygiene and the body's idle limit.
fn streamed(
    response: Response<Incoming>,
    request_id: &HeaderValue,
    body_read_timeout: std::time::Duration,
) -> Response<GatewayBody> {
    let (mut parts, body) = response.into_parts();
    forwarding::forward_response_headers(&mut parts.headers, request_id);
    Response::from_parts(parts, GatewayBody::upstream(body, body_read_timeout))
}

/// The request handler in force now: each call returns the current generation's gateway.
pub type CurrentGateway = Arc<dyn Fn() -> Arc<Gateway> + Send + Sync>;

/// A header map from name-value pairs, in order (repeats appended).
#[cfg(test)]
fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_segments_never_reach_the_log() {
        assert_eq!(loggable_path("/v1/shipments/42"), "/v1/shipments/42");
        assert_eq!(
            loggable_path("/v1/recipients/jane@example.com/orders"),
            "/v1/recipients/[REDACTED]/orders"
        );
        assert_eq!(
            loggable_path("/v1/r/jane%40example.com"),
            "/v1/r/[REDACTED]"
        );
    }
}
