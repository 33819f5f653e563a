//! recipient-gateway: a TLS reverse proxy that enforces processor-only use of shipment recipients'
//! personal data in the traffic itself.
//!
//! Customers (controllers) send their recipients' names, addresses, e-mails and phones through the
//! gateway to a shipping platform (the processor). The gateway authenticates callers, routes by
//! path prefix to upstreams, and on inspected routes redacts what a caller does not control. The
//! contract is `docs/reference.md`; this crate is its implementation.
//!
//! # Layout
//!
//! A request's path through the modules: [`server`] accepts and handshakes → [`proxy`] matches the
//! route, authenticates and cleans headers → on inspected routes [`inspect`] decides whether the
//! body can be read, [`json`] parses it strictly, the proxy finds each record's controller in
//! [`tags`] and [`redact`] applies the rules → the request is forwarded over pooled connections →
//! the answer takes the same stages back, ending in one log line ([`logging`]) and the metrics ([`admin`]).
//! The privacy endpoints are answered by the gateway itself ([`privacy`]) before any route match;
//! a background worker delivers the requests to the customers' webhooks.
//!
//! `json` is a module of its own rather than part of `inspect` because both `inspect` (strictness)
//! and `redact` (spans and rendering) depend on it.
//!
//! | module | owns |
//! | --- | --- |
//! | [`body`] | the ground floor: the one body type, [`body::GatewayBody`] (held bytes, or a peer's stream under the slow-body guard) |
//! | [`vocabulary`] | the ground floor: the gateway's JSON answers and errors, media types, [`vocabulary::Direction`] |
//! | [`target`] | the request target read once: canonical-path rules and the lenient readings of upstreams (ground floor: `config`, `proxy` and `review` use it) |
//! | [`config`] | the file schema (`deny_unknown_fields`), validation into a runtime [`config::Config`], rules compiled once |
//! | [`tls`] | rustls server/client configs from PEM files; development certificates |
//! | [`server`] | accept loop, connection limit, TLS handshake, HTTP/1.1 + HTTP/2, graceful drain, the framing watch and slow-read guard, hot reload ([`server::live`]), store upkeep |
//! | [`proxy`] | the request path: route match, auth, header hygiene, controller resolution, upstream pools, error → status |
//! | [`inspect`] | the fail-closed table: media types, encodings, body collection under limits |
//! | [`json`] | strict JSON parsing into spans, byte-faithful rendering around edits |
//! | [`redact`] | the JSONPath rule engine (all of RFC 9535, filters included): one pass for all rules per record |
//! | [`tags`] | HMAC tags (memoised), the tag cache with write-behind and retention |
//! | [`import`] | `tags import`: a platform's history loaded into the tag store before go-live |
//! | [`store`] | the `Store` and `Outbox` traits: memory, sqlite (default), postgres |
//! | [`privacy`] | privacy requests: intake, verification, the outbox, signed webhook delivery, inbox, erasure |
//! | [`review`] | reviewer tools: the `check` report, coverage from samples, `test-rules`, the `redact` dry run |
//! | [`admin`] | metric names and recorder, `/metrics`, `/healthz`, `/readyz`, `POST /admin/reload` |
//! | [`logging`] | the JSON-lines log format |
//! | [`demo`] | the sample shipping API and webhook receiver behind `recipient-gateway demo` (also the tests' upstream) |
//!
//! `src/main.rs` is only the command line: it loads the config, installs logging, and calls
//! [`server::run`] with a shutdown future.

#![warn(missing_docs)]

pub mod admin;
pub mod body;
pub mod config;
pub mod demo;
#[cfg(feature = "test-support")]
pub mod fuzzing;
pub mod import;
pub mod inspect;
pub mod json;
pub mod logging;
pub mod privacy;
pub mod proxy;
pub mod redact;
pub mod review;
pub mod server;
pub mod store;
pub mod tags;
pub mod target;
pub mod tls;
pub mod vocabulary;
