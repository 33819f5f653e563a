//! Tunnels: HTTP/1.1 upgrades (WebSocket) on routes that allow them (`allow_upgrade`).
//!
//! The upgrade request goes through the same judgement, authentication and header handling as
//! any other, over a connection of its own to the upstream. When the upstream answers
//! `101 Switching Protocols`, both connections become one tunnel: bytes are copied both ways,
//! uninspected (only routes with nothing to inspect may allow upgrades), until either side closes
//! or nothing moves for `limits.idle_timeout_ms`. Each tunnel is counted when it opens and
//! logged once when it closes, with its byte counts and duration.

use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admin::metrics;

/// Bytes read per turn from either side.
const CHUNK: usize = 16 * 1024;

/// Why a tunnel ended (a log field).
#[derive(Debug, Clone, Copy)]
enum End {
    ClientClosed,
    UpstreamClosed,
    Idle,
    Error,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::UpstreamClosed => "upstream_closed",
            End::Idle => "idle",
            End::Error => "error",
        }
    }
}

/// Joins the two upgraded connections and copies between them until the tunnel ends.
pub(super) async fn run(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle: Duration,
    route: String,
    request_id: String,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(msg = "tunnel not opened", route, request_id, error = %error);
            return;
        }
    };
    ::metrics::counter!(metrics::TUNNELS, "route" => route.clone()).increment(1);
    let started = Instant::now();
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    let (mut from_client, mut from_upstream) = (vec![0; CHUNK], vec![0; CHUNK]);
    let (mut sent, mut received) = (0u64, 0u64);
    let end = loop {
        // Each turn waits for either side; the idle timer starts again after any bytes.
        tokio::select! {
            read = client.read(&mut from_client) => match read {
                Ok(0) => break End::ClientClosed,
                Ok(n) => {
                    if upstream.write_all(&from_client[..n]).await.is_err() {
                        break End::Error;
                    }
                    sent += n as u64;
                }
                Err(_) => break End::Error,
            },
            read = upstream.read(&mut from_upstream) => match read {
                Ok(0) => break End::UpstreamClosed,
                Ok(n) => {
                    if client.write_all(&from_upstream[..n]).await.is_err() {
                        break End::Error;
                    }
                    received += n as u64;
                }
                Err(_) => break End::Error,
            },
            _ = tokio::time::sleep(idle) => break End::Idle,
        }
    };
    let _ = client.shutdown().await;
    let _ = upstream.shutdown().await;
    tracing::info!(
        msg = "tunnel closed",
        route,
        request_id,
        reason = end.as_str(),
        bytes_from_client = sent,
        bytes_from_upstream = received,
        duration_ms = started.elapsed().as_millis() as u64,
    );
}
