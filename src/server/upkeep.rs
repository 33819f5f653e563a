//! Background care while serving: the store's health, size and retention, and a first look at
//! the upstreams.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::admin::{Health, metrics};
use crate::config::{Config, CurrentConfig};
use crate::privacy::Desk;
use crate::tags::Tags;

/// How often the store is pinged (for `/readyz`).
const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How often the store's size is counted (a full count is not free on millions of rows).
const STORE_SIZE_INTERVAL: Duration = Duration::from_secs(30);
/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// How often waiting privacy requests are matched again with nothing to prompt it (imports by
/// another process, other gateways' sightings).
const REMATCH_INTERVAL: Duration = Duration::from_secs(60);
/// Least time between two matching runs prompted by new recipient tags: under a churn of
/// first sightings they come with every batch.
const REMATCH_SPACING: Duration = Duration::from_secs(1);

/// Background store care: health for `/readyz`, the size and outbox gauges, and retention
/// (`retention_days` as currently configured).
pub(super) async fn store_upkeep(
    tags: Arc<Tags>,
    desk: Arc<Desk>,
    health: Arc<Health>,
    config: CurrentConfig,
) {
    let mut check = tokio::time::interval(STORE_CHECK_INTERVAL);
    let mut size = tokio::time::interval(STORE_SIZE_INTERVAL);
    let mut expire = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tokio::select! {
            _ = check.tick() => {
                let up = tags.check().await;
                health.store_ok.store(up, Ordering::Release);
                ::metrics::gauge!(metrics::STORE_UP).set(if up { 1.0 } else { 0.0 });
                if let Err(error) = desk.report_backlog().await {
                    tracing::error!(msg = "outbox backlog unreadable", error = %error);
                }
            }
            _ = size.tick() => tags.report_size().await,
            _ = expire.tick() => {
                let retention = config().store.retention;
                let cutoff = desk.clock().now().saturating_sub(retention.as_secs());
                match tags.expire(cutoff).await {
                    Ok(deleted) => tracing::info!(msg = "retention", records = deleted.records, recipients = deleted.recipients),
                    Err(error) => tracing::error!(msg = "retention failed", error = %error),
                }
                match desk.expire(cutoff).await {
                    Ok(erased) => tracing::info!(msg = "retention", privacy_subjects = erased),
                    Err(error) => tracing::error!(msg = "privacy retention failed", error = %error),
                }
                let window = config().privacy.unmatched_window;
                let cutoff = desk.clock().now().saturating_sub(window.as_secs());
                if let Err(error) = desk.expire_unmatched(cutoff).await {
                    tracing::error!(msg = "unmatched privacy requests not expired", error = %error);
                }
            }
        }
    }
}

/// Matches waiting privacy requests again: at start, every [`REMATCH_INTERVAL`] (which also
/// counts what other gateways filed), and soon after recipient tags reach the store while any
/// request waits (under a churn of first sightings, that prompt comes with every batch).
pub(super) async fn rematch_unmatched(tags: Arc<Tags>, desk: Arc<Desk>) {
    loop {
        if let Err(error) = desk.rematch().await {
            tracing::error!(msg = "unmatched privacy requests not matched", error = %error);
        }
        tokio::time::sleep(REMATCH_SPACING).await;
        let interval = tokio::time::sleep(REMATCH_INTERVAL);
        tokio::pin!(interval);
        loop {
            tokio::select! {
                _ = tags.recipients_committed().notified() => {
                    if desk.anything_waiting() {
                        break;
                    }
                }
                _ = &mut interval => break,
            }
        }
    }
}

/// Logs, once at start, each upstream that does not accept a TCP connection: its routes will
/// answer 502 until it does, and an operator reading the first lines should know why.
pub(super) async fn announce_unreachable_upstreams(config: Arc<Config>) {
    for upstream in &config.upstreams {
        let connect = tokio::net::TcpStream::connect(upstream.host_and_port());
        if !matches!(
            tokio::time::timeout(Duration::from_secs(2), connect).await,
            Ok(Ok(_))
        ) {
            tracing::warn!(
                msg = "upstream not answering; its routes answer 502 until it does",
                upstream = %upstream.name,
            );
        }
    }
}
