//! recipient-gateway: a TLS reverse proxy that enforces processor-only use of shipment recipients'
//! personal data in the traffic itself.
//!
//! Customers (controllers) send their recipients' names, addresses, e-mails and phones through the
//! gateway to a shipping platform (the processor). The gateway authenticates callers, routes by
//! path prefix to upstreams, and on inspected routes redacts what a caller does not control. The
//! contract is `SPEC.md` of the project; this crate is its implementation.
//!
//! # Layout
//!
//! A request's path through the modules: [`server`] accepts and handshakes → [`proxy`] matches the
//! route, authenticates, cleans headers and forwards over pooled connections → the answer goes
//! back the same way, ending in one log line ([`logging`]) and the metrics ([`admin`]).
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | the file schema (`deny_unknown_fields`), validation into a runtime [`config::Config`], rules compiled once |
//! | [`tls`] | rustls server/client configs from PEM files; development certificates |
//! | [`server`] | accept loop, connection limit, TLS handshake, HTTP/1.1 + HTTP/2, graceful drain |
//! | [`proxy`] | the tower service: route match, auth, header hygiene, upstream pools, error → status |
//! | [`redact`] | the JSONPath rule engine |
//! | [`admin`] | metric names and recorder, `/metrics`, `/healthz`, `/readyz` |
//! | [`logging`] | the JSON-lines log format |
//! | [`demo`] | the sample shipping API behind `recipient-gateway demo` (also the tests' upstream) |
//!
//! `src/main.rs` is only the command line: it loads the config, installs logging, and calls
//! [`server::run`] with a shutdown future.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod demo;
pub mod json;
pub mod logging;
pub mod proxy;
pub mod redact;
pub mod server;
pub mod tls;
