//! Inspected routes: bodies collected whole, checked against the fail-closed table, redacted per
//! record, tagged, and only then sent on.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::Gateway;
use super::error::ProxyError;
use super::forwarding;
use super::resolve::{Asking, resolve};
use crate::admin::metrics;
use crate::body::ClientBodyError;
use crate::config::{Client, ClientKind, Route};
use crate::inspect::{self, Blocked, CollectError, Reason, Treatment};
use crate::json::Document;
use crate::redact;
use crate::tags::{self, Resolved, Source};
use crate::vocabulary::{Direction, GatewayBody, full};

/// Headers that describe a body's exact bytes and are wrong once the body changes.
const REPRESENTATION_HEADERS: &[&str] = &[
    "content-length",
    "content-encoding",
    "etag",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
];

/// One request/response exchange on an inspected route.
pub(super) struct Exchange<'g> {
    pub gateway: &'g Gateway,
    pub route: &'g Route,
    pub caller: Option<Arc<Client>>,
    /// When the whole exchange must be done (`request_timeout_ms` from the request head).
    pub deadline: tokio::time::Instant,
}

/// What the request side leaves for the response side.
pub(super) struct Sent {
    /// Values changed in the request body.
    pub redactions: usize,
    /// The request body was a single record with no known record key: a create.
    created: bool,
    /// Request records whose recipient tags are written once the upstream accepts (2xx).
    pending_tags: Vec<Resolved>,
}

/// An inspected body: the bytes to send and what changed.
struct Inspected {
    /// `None` when nothing changed (the original bytes go on untouched).
    rendered: Option<Vec<u8>>,
    redactions: usize,
    resolved: Vec<Resolved>,
}

impl Exchange<'_> {
    /// Prepares the upstream request: streams passthrough bodies, refuses uninspectable ones,
    /// inspects JSON.
    pub async fn request(
        &self,
        mut parts: http::request::Parts,
        body: Incoming,
    ) -> Result<(Request<GatewayBody>, Sent), ProxyError> {
        // The full body is fetched and inspected; a range of it could not be.
        parts.headers.remove(header::RANGE);
        parts.headers.remove(header::IF_RANGE);
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let body = GatewayBody::client(body, self.gateway.config.limits.body_read_timeout);
        let (body, inspected) = self
            .body(Direction::Request, &mut parts.headers, body, false)
            .await?;
        let sent = match inspected {
            Some(inspected) => Sent {
                redactions: inspected.redactions,
                // Only a POST creates: a PUT or PATCH naming a record the gateway has no tag for
                // must not hand it to the caller.
                created: parts.method == Method::POST
                    && inspected.resolved.len() == 1
                    && inspected.resolved[0].source != Source::Tag
                    && self
                        .caller
                        .as_ref()
                        .is_some_and(|c| c.kind == ClientKind::Customer),
                pending_tags: inspected.resolved,
            },
            None => Sent {
                redactions: 0,
                created: false,
                pending_tags: Vec::new(),
            },
        };
        Ok((Request::from_parts(parts, body), sent))
    }

    /// Checks, inspects, tags and redacts the upstream's answer.
    pub async fn response(
        &self,
        method: &Method,
        response: Response<Incoming>,
        sent: Sent,
        request_id: &HeaderValue,
    ) -> Result<(Response<GatewayBody>, usize), ProxyError> {
        let (mut parts, body) = response.into_parts();
        forwarding::forward_response_headers(&mut parts.headers, request_id);
        let now = tags::now();
        if parts.status.is_success() {
            self.write_tags(&sent.pending_tags, Direction::Request, now)
                .await?;
        }
        if parts.status == StatusCode::PARTIAL_CONTENT {
            return Err(ProxyError::Blocked(Blocked::response(
                Reason::PartialContent,
            )));
        }
        // Vary: the same URL answers differently per caller.
        parts.headers.append(
            header::VARY,
            HeaderValue::from_static("authorization, x-api-key"),
        );
        let bodiless = *method == Method::HEAD
            || parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        if bodiless {
            return Ok((Response::from_parts(parts, full(Bytes::new())), 0));
        }
        let body = GatewayBody::upstream(body, self.gateway.config.limits.body_read_timeout);
        // A create is a POST answered 201 Created with the one record.
        let created = sent.created && parts.status == StatusCode::CREATED;
        let (body, inspected) = self
            .body(Direction::Response, &mut parts.headers, body, created)
            .await?;
        let redactions = match inspected {
            Some(inspected) => {
                if parts.status.is_success() {
                    self.write_tags(&inspected.resolved, Direction::Response, now)
                        .await?;
                }
                inspected.redactions
            }
            None => 0,
        };
        Ok((Response::from_parts(parts, body), redactions))
    }

    /// One body through the fail-closed table: streamed (passthrough type), refused, or collected,
    /// decoded and inspected. Returns the body to send and, when inspected, what was found. When
    /// the body changed, the headers describing its bytes are dropped.
    async fn body(
        &self,
        direction: Direction,
        headers: &mut http::HeaderMap,
        body: GatewayBody,
        created: bool,
    ) -> Result<(GatewayBody, Option<Inspected>), ProxyError> {
        let limit = self.gateway.config.limits.max_body_bytes;
        let blocked = |reason| ProxyError::Blocked(Blocked { direction, reason });
        let codings = match inspect::treatment(headers, self.route) {
            Treatment::Passthrough => return Ok((body, None)),
            Treatment::RefuseUnlessEmpty(reason) => {
                self.collect(direction, body, headers, 0, reason).await?;
                return Ok((full(Bytes::new()), None));
            }
            Treatment::Inspect(codings) => codings,
        };
        let raw = self
            .collect(direction, body, headers, limit, Reason::TooLarge)
            .await?;
        if raw.is_empty() {
            return Ok((full(raw), None));
        }
        let decoded = inspect::decode(&raw, &codings, limit).map_err(blocked)?;
        let mut inspected = self
            .inspect(&decoded, direction, created)
            .await
            .map_err(blocked)?;
        let body = match inspected.rendered.take() {
            Some(bytes) => {
                strip_representation_headers(headers);
                Bytes::from(bytes)
            }
            None => raw,
        };
        Ok((full(body), Some(inspected)))
    }

    /// Collects a whole body before anything of it goes on; past `limit` bytes it is refused for
    /// `over_limit`. Failures are the client's (request) or the upstream's (response).
    async fn collect(
        &self,
        direction: Direction,
        body: GatewayBody,
        headers: &http::HeaderMap,
        limit: u64,
        over_limit: Reason,
    ) -> Result<Bytes, ProxyError> {
        let blocked = |reason| ProxyError::Blocked(Blocked { direction, reason });
        let collected =
            tokio::time::timeout_at(self.deadline, inspect::collect(body, headers, limit)).await;
        match (direction, collected) {
            (_, Ok(Ok(bytes))) => Ok(bytes),
            (_, Ok(Err(CollectError::Blocked(Reason::TooLarge)))) => Err(blocked(over_limit)),
            (_, Ok(Err(CollectError::Blocked(reason)))) => Err(blocked(reason)),
            (Direction::Request, Err(_)) => Err(ProxyError::RequestBodyTimeout),
            (Direction::Request, Ok(Err(CollectError::Body(e)))) => Err(
                if e.downcast_ref::<ClientBodyError>()
                    .is_some_and(ClientBodyError::is_timeout)
                {
                    ProxyError::RequestBodyTimeout
                } else {
                    ProxyError::BadRequestBody
                },
            ),
            (Direction::Response, Err(_)) => Err(ProxyError::UpstreamTimeout),
            (Direction::Response, Ok(Err(CollectError::Body(_)))) => {
                Err(ProxyError::UpstreamProtocol)
            }
        }
    }

    /// Parses, finds records and controllers, applies the rules.
    async fn inspect(
        &self,
        body: &[u8],
        direction: Direction,
        created: bool,
    ) -> Result<Inspected, Reason> {
        let doc = Document::parse(body)?;
        let plan = &self.route.plan;
        let nodes = plan.find_records(&doc)?;
        let caller = self.caller.as_deref();
        let asking = Asking {
            config: &self.gateway.config,
            route: self.route,
            caller,
        };
        let resolved = resolve(
            &self.gateway.tags,
            &asking,
            &doc,
            &nodes,
            direction,
            created,
        )
        .await;
        let applied = redact::redact_records(
            &self.route.plan,
            &doc,
            direction,
            self.route.caller(caller),
            resolved.iter().map(|r| (r.node, r.controller.as_deref())),
            &self.gateway.hash_keys,
        );
        // One counter update per (rule, action), not per value: a list can change hundreds.
        let mut counts: Vec<(&str, crate::redact::Action, u64)> = Vec::new();
        for change in &applied.changes {
            match counts
                .iter_mut()
                .find(|(id, action, _)| *id == change.rule.id && *action == change.action)
            {
                Some(entry) => entry.2 += 1,
                None => counts.push((&change.rule.id, change.action, 1)),
            }
        }
        for (rule, action, n) in counts {
            metrics::redactions()
                .get([&self.route.name, rule, action.as_str()])
                .increment(n);
        }
        Ok(Inspected {
            rendered: redact::render_if_changed(&doc, &applied),
            redactions: applied.changes.len(),
            resolved,
        })
    }

    /// Tags what a body taught, and holds the response until its durable tags are committed and
    /// the queue has room ([`tags::Tags::settle`]).
    async fn write_tags(
        &self,
        resolved: &[Resolved],
        direction: Direction,
        now: u64,
    ) -> Result<(), ProxyError> {
        let written = self.gateway.tags.write(resolved, direction, now);
        let (records, recipients) = written.counts();
        if records > 0 {
            ::metrics::counter!(metrics::TAGS_WRITTEN, "kind" => "record")
                .increment(records as u64);
        }
        if recipients > 0 {
            ::metrics::counter!(metrics::TAGS_WRITTEN, "kind" => "recipient")
                .increment(recipients as u64);
        }
        self.gateway
            .tags
            .settle(&written, self.deadline)
            .await
            .map_err(|_| ProxyError::TagNotCommitted)
    }
}

fn strip_representation_headers(headers: &mut http::HeaderMap) {
    for name in REPRESENTATION_HEADERS {
        headers.remove(*name);
    }
}
