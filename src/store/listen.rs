//! Cache invalidation across gateways sharing PostgreSQL, with `LISTEN`/`NOTIFY`.
//!
//! An erasure or a retention pass notifies the channel inside its own transaction, so the
//! notification goes out exactly when the deletion commits. Every gateway keeps one connection
//! listening and turns each notification into an [`Invalidation`] for its tag cache: an erased
//! tag stops being honoured everywhere within milliseconds instead of at its cache entry's expiry.
//! When the listening connection is lost, the gateway reconnects and, once listening again, drops
//! its whole cache (a notification may have been missed); meanwhile the cache's time-to-live is
//! the fallback. Payloads hold a controller id and HMAC digests, never personal data.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::Digest;

/// The notification channel.
pub(super) const CHANNEL: &str = "recipient_gateway_tags";
/// PostgreSQL refuses payloads of 8000 bytes or more; larger erasures say "everything".
const MAX_PAYLOAD: usize = 7900;
/// Wait before listening again after the connection was lost.
const RECONNECT: Duration = Duration::from_secs(1);

/// What another gateway (or this one) deleted from the shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// `controller`'s tags of these recipients, and its records listing them, were erased.
    Erased {
        /// The erasing controller.
        controller: Arc<str>,
        /// The erased recipient digests.
        recipients: Vec<Digest>,
    },
    /// Tags last seen before this time (unix seconds) were deleted by retention.
    Expired {
        /// The retention cutoff.
        before: u64,
    },
    /// Anything may have changed: a notification was too large, or may have been missed.
    Everything,
}

/// The payload announcing an erasure.
pub(super) fn erased_payload(controller: &str, recipients: &[Digest]) -> String {
    let payload = serde_json::json!({
        "erased": controller,
        "recipients": recipients.iter().map(hex::encode).collect::<Vec<_>>(),
    })
    .to_string();
    if payload.len() < MAX_PAYLOAD {
        payload
    } else {
        serde_json::json!({ "everything": true }).to_string()
    }
}

/// The payload announcing a retention pass.
pub(super) fn expired_payload(before: u64) -> String {
    serde_json::json!({ "expired": before }).to_string()
}

fn parse(payload: &str) -> Invalidation {
    let value: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    if let Some(controller) = value["erased"].as_str() {
        let recipients: Option<Vec<Digest>> = value["recipients"].as_array().and_then(|all| {
            all.iter()
                .map(|d| hex::decode(d.as_str()?).ok()?.try_into().ok())
                .collect()
        });
        if let Some(recipients) = recipients {
            return Invalidation::Erased {
                controller: controller.into(),
                recipients,
            };
        }
    }
    if let Some(before) = value["expired"].as_u64() {
        return Invalidation::Expired { before };
    }
    // Anything else, understood or not, is safest as "everything".
    Invalidation::Everything
}

/// Listens on [`CHANNEL`] for as long as `invalidations` has a receiver, reconnecting when the
/// connection is lost.
pub(super) async fn listen<T>(
    config: tokio_postgres::Config,
    tls: T,
    invalidations: mpsc::Sender<Invalidation>,
) where
    T: MakeTlsConnect<tokio_postgres::Socket> + Clone + Send + 'static,
    T::Stream: Send,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    while !invalidations.is_closed() {
        match listen_once(&config, tls.clone(), &invalidations).await {
            Ok(()) => tracing::warn!(msg = "tag invalidation channel closed; reconnecting"),
            Err(error) => {
                tracing::warn!(msg = "tag invalidation channel lost; reconnecting", error = %error);
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    invalidations: &mpsc::Sender<Invalidation>,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<tokio_postgres::Socket>,
{
    let (client, mut connection) = config.connect(tls).await?;
    // The client's LISTEN only makes progress while the connection is polled, so both run in
    // one loop.
    let statement = format!("LISTEN {CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            result = &mut listen, if !listening => {
                result?;
                listening = true;
                // Whatever was deleted while nobody listened is unknown: drop everything once.
                if invalidations.send(Invalidation::Everything).await.is_err() {
                    return Ok(());
                }
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    if invalidations.send(parse(notification.payload())).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_large_ones_say_everything() {
        let erased = erased_payload("acme", &[[1; 32], [2; 32]]);
        assert_eq!(
            parse(&erased),
            Invalidation::Erased {
                controller: "acme".into(),
                recipients: vec![[1; 32], [2; 32]],
            }
        );
        assert_eq!(
            parse(&expired_payload(42)),
            Invalidation::Expired { before: 42 }
        );
        let many = vec![[3; 32]; 200];
        assert_eq!(
            parse(&erased_payload("acme", &many)),
            Invalidation::Everything
        );
        assert_eq!(parse("not json"), Invalidation::Everything);
    }
}
