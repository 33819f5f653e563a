//! Test harness: the real gateway on port 0 over TLS, an in-process mock upstream, and clients
//! that speak HTTP/1.1 and HTTP/2 (or raw bytes) over real sockets. One module per part; a test
//! imports the parts it uses by name.
//!
//! - [`config`]: the base config every test starts from, the clients' keys, the shipped rules, and
//!   edits that must find what they replace.
//! - [`dir`]: a temporary folder with the development certificates copied in, removed when dropped.
//! - [`gateway`]: the real gateway serving in this process on port 0, and its admin listener.
//! - [`client`]: clients over real TLS sockets: HTTP/1.1, HTTP/2, or raw bytes.
//! - [`upstream`]: the in-process mock upstream: echoes what it received, and answers scripted,
//!   slow, streamed and upgraded requests.
//! - [`process`]: the gateway binary run as a separate process, as operators run it, and its log
//!   lines.
//! - [`receiver`]: a customer's webhook receiver: records each delivery, checks its signature,
//!   answers as scripted.
//! - [`harness`]: tests run under their own harness (`harness = false`): what each needs
//!   (PostgreSQL, a browser, Prometheus), reported as ignored when it is missing; fixed
//!   property-test runners; this process's memory.
//! - [`wait`]: a condition polled with a deadline, for events a test cannot be told of.
//! - [`privacy`]: a gateway with the privacy desk wired to a webhook receiver, the setup privacy
//!   tests share.

// Each test binary compiles every part and uses some of them.
#![allow(dead_code)]

pub mod client;
pub mod config;
pub mod dir;
pub mod gateway;
pub mod harness;
pub mod privacy;
pub mod process;
pub mod receiver;
pub mod upstream;
pub mod wait;
