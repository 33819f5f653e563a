//! Inspected routes: bodies collected whole, checked against the fail-closed table, redacted per
//! record, tagged, and only then sent on.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::Gateway;
use super::body::{BoxBody, ClientBodyError, client_body, full, with_idle_timeout};
use super::error::ProxyError;
use super::headers;
use crate::admin::metrics;
use crate::config::{Client, ClientKind, Route};
use crate::inspect::{self, Blocked, CollectError, Reason, Treatment};
use crate::json::Document;
use crate::redact::{self, Direction};
use crate::tags::{self, Resolved, Source};

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
    ) -> Result<(Request<BoxBody>, Sent), ProxyError> {
        // The full body is fetched and inspected; a range of it could not be.
        parts.headers.remove(header::RANGE);
        parts.headers.remove(header::IF_RANGE);
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let limits = &self.gateway.config.limits;
        let mut sent = Sent {
            redactions: 0,
            created: false,
            pending_tags: Vec::new(),
        };
        let body = client_body(body, limits.body_read_timeout);
        let codings = match inspect::treatment(&parts.headers, self.route) {
            Treatment::Passthrough => return Ok((Request::from_parts(parts, body), sent)),
            Treatment::RefuseUnlessEmpty(reason) => {
                self.collect_request(body, &parts.headers, 0, reason)
                    .await?;
                return Ok((Request::from_parts(parts, full(Bytes::new())), sent));
            }
            Treatment::Inspect(codings) => codings,
        };
        let raw = self
            .collect_request(
                body,
                &parts.headers,
                limits.max_body_bytes,
                Reason::TooLarge,
            )
            .await?;
        if raw.is_empty() {
            return Ok((Request::from_parts(parts, full(raw)), sent));
        }
        let decoded = inspect::decode(&raw, &codings, limits.max_body_bytes)
            .map_err(|reason| ProxyError::Blocked(Blocked::request(reason)))?;
        let inspected = self
            .inspect(&decoded, Direction::Request, false)
            .map_err(|reason| ProxyError::Blocked(Blocked::request(reason)))?;
        sent.redactions = inspected.redactions;
        sent.created = inspected.resolved.len() == 1
            && inspected.resolved[0].source != Source::Tag
            && self
                .caller
                .as_ref()
                .is_some_and(|c| c.kind == ClientKind::Customer);
        sent.pending_tags = inspected.resolved;
        let body = match inspected.rendered {
            Some(bytes) => {
                strip_representation_headers(&mut parts.headers);
                Bytes::from(bytes)
            }
            None => raw,
        };
        Ok((Request::from_parts(parts, full(body)), sent))
    }

    /// Collects a client body; past `limit` bytes the body is refused for `over_limit`.
    async fn collect_request(
        &self,
        body: BoxBody,
        headers: &http::HeaderMap,
        limit: u64,
        over_limit: Reason,
    ) -> Result<Bytes, ProxyError> {
        let collected =
            tokio::time::timeout_at(self.deadline, inspect::collect(body, headers, limit))
                .await
                .map_err(|_| ProxyError::RequestBodyTimeout)?;
        collected.map_err(|error| match error {
            CollectError::Blocked(Reason::TooLarge) => {
                ProxyError::Blocked(Blocked::request(over_limit))
            }
            CollectError::Blocked(reason) => ProxyError::Blocked(Blocked::request(reason)),
            CollectError::Body(e)
                if e.downcast_ref::<ClientBodyError>()
                    .is_some_and(ClientBodyError::is_timeout) =>
            {
                ProxyError::RequestBodyTimeout
            }
            CollectError::Body(_) => ProxyError::BadRequestBody,
        })
    }

    /// Checks, inspects, tags and redacts the upstream's answer.
    pub async fn response(
        &self,
        method: &Method,
        response: Response<Incoming>,
        sent: Sent,
        request_id: &HeaderValue,
    ) -> Result<(Response<BoxBody>, usize), ProxyError> {
        let (mut parts, body) = response.into_parts();
        headers::forward_response_headers(&mut parts.headers, request_id);
        let limits = &self.gateway.config.limits;
        let now = tags::now();
        if parts.status.is_success() {
            self.write_tags(&sent.pending_tags, Direction::Request, now);
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
        let codings = match inspect::treatment(&parts.headers, self.route) {
            Treatment::Passthrough => {
                let body = with_idle_timeout(body, limits.body_read_timeout);
                return Ok((Response::from_parts(parts, body), 0));
            }
            Treatment::RefuseUnlessEmpty(reason) => {
                self.collect_response(body, &parts.headers, 0, reason)
                    .await?;
                return Ok((Response::from_parts(parts, full(Bytes::new())), 0));
            }
            Treatment::Inspect(codings) => codings,
        };
        let raw = self
            .collect_response(
                body,
                &parts.headers,
                limits.max_body_bytes,
                Reason::TooLarge,
            )
            .await?;
        if raw.is_empty() {
            return Ok((Response::from_parts(parts, full(raw)), 0));
        }
        let decoded = inspect::decode(&raw, &codings, limits.max_body_bytes)
            .map_err(|reason| ProxyError::Blocked(Blocked::response(reason)))?;
        let inspected = self
            .inspect(&decoded, Direction::Response, sent.created)
            .map_err(|reason| ProxyError::Blocked(Blocked::response(reason)))?;
        if parts.status.is_success() {
            self.write_tags(&inspected.resolved, Direction::Response, now);
        }
        let body = match inspected.rendered {
            Some(bytes) => {
                strip_representation_headers(&mut parts.headers);
                Bytes::from(bytes)
            }
            None => raw,
        };
        Ok((
            Response::from_parts(parts, full(body)),
            inspected.redactions,
        ))
    }

    async fn collect_response(
        &self,
        body: Incoming,
        headers: &http::HeaderMap,
        limit: u64,
        over_limit: Reason,
    ) -> Result<Bytes, ProxyError> {
        let body = with_idle_timeout(body, self.gateway.config.limits.body_read_timeout);
        let collected =
            tokio::time::timeout_at(self.deadline, inspect::collect(body, headers, limit))
                .await
                .map_err(|_| ProxyError::UpstreamTimeout)?;
        collected.map_err(|error| match error {
            CollectError::Blocked(Reason::TooLarge) => {
                ProxyError::Blocked(Blocked::response(over_limit))
            }
            CollectError::Blocked(reason) => ProxyError::Blocked(Blocked::response(reason)),
            CollectError::Body(_) => ProxyError::UpstreamProtocol,
        })
    }

    /// Parses, finds records and controllers, applies the rules.
    fn inspect(
        &self,
        body: &[u8],
        direction: Direction,
        created: bool,
    ) -> Result<Inspected, Reason> {
        let doc = Document::parse(body)?;
        let plan = &self.route.plan;
        let nodes = plan.find_records(&doc)?;
        let caller = self.caller.as_deref();
        let scope = tags::Scope {
            config: &self.gateway.config,
            route: self.route,
            caller,
        };
        let resolved = self
            .gateway
            .tags
            .resolve(&scope, &doc, &nodes, direction, created);
        let applied = redact::redact_records(
            self.route,
            &doc,
            direction,
            caller,
            resolved.iter().map(|r| (r.node, r.controller.clone())),
            &self.gateway.hash_keys,
        );
        // One counter update per (rule, action), not per value: a list can change hundreds.
        let mut counts: Vec<(&str, crate::config::Action, u64)> = Vec::new();
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
            ::metrics::counter!(
                metrics::REDACTIONS,
                "route" => self.route.name.clone(),
                "rule" => rule.to_string(),
                "action" => action.as_str()
            )
            .increment(n);
        }
        Ok(Inspected {
            rendered: redact::render_if_changed(&doc, &applied),
            redactions: applied.changes.len(),
            resolved,
        })
    }

    fn write_tags(&self, resolved: &[Resolved], direction: Direction, now: u64) {
        let (records, recipients) = self.gateway.tags.write(resolved, direction, now);
        if records > 0 {
            ::metrics::counter!(metrics::TAGS_WRITTEN, "kind" => "record")
                .increment(records as u64);
        }
        if recipients > 0 {
            ::metrics::counter!(metrics::TAGS_WRITTEN, "kind" => "recipient")
                .increment(recipients as u64);
        }
    }
}

fn strip_representation_headers(headers: &mut http::HeaderMap) {
    for name in REPRESENTATION_HEADERS {
        headers.remove(*name);
    }
}
