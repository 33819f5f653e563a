//! The webhook worker: claims due deliveries, POSTs them signed, records each attempt's outcome.
//!
//! Any 2xx is delivered. Anything else (3xx included: redirects are not followed, since a
//! delivery must reach the configured URL and no other), a timeout or a connection failure is
//! retried with exponential backoff and jitter, later if the receiver sent `Retry-After`, until
//! `delivery_max_attempts` attempts or `delivery_max_age_hours` have passed; then the delivery is
//! `dead` and stays in the customer's inbox. Every attempt carries the same `webhook-id` and a
//! fresh timestamp and signature. An https receiver's certificate is verified against the
//! system's web roots or the client's `webhook_ca_file`; one that fails is retried like any
//! failure and counted as `outcome="tls_error"`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::json;
use tokio::task::JoinSet;

use super::{Desk, format_id, rfc3339, signature};
use crate::admin::metrics;
use crate::config::CurrentConfig;
use crate::store::outbox::{Attempt, Claimed};

/// The `outcome` labels of `gateway_webhook_deliveries_total`.
pub const OUTCOMES: [&str; 4] = ["delivered", "retry", "tls_error", "dead"];

/// Longest wait for a receiver's response head.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim is held: past it, another worker (or gateway) may retry. Well above the
/// attempt timeout, so a live attempt is never duplicated.
const LEASE: Duration = Duration::from_secs(30);
/// How often the outbox is polled when nothing wakes the worker (other gateways' requests, due
/// retries).
const POLL: Duration = Duration::from_secs(1);
/// Deliveries claimed (and attempted concurrently) at once.
const BATCH: u32 = 32;
/// First retry delay; doubled per attempt.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest delay between attempts (from backoff; `Retry-After` may ask for more).
const BACKOFF_MAX: Duration = Duration::from_secs(6 * 3600);

/// Posts deliveries to the webhooks of the current config.
pub struct Deliverer {
    desk: Arc<Desk>,
    /// The current config (webhook URLs, secrets and limits follow reloads).
    config: CurrentConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Deliverer {
    /// A worker for the webhooks of the config in `config` over `desk`'s outbox.
    pub fn new(desk: Arc<Desk>, config: CurrentConfig) -> Deliverer {
        let tls = crate::tls::client_config(None).expect("built-in roots load");
        Deliverer {
            desk,
            config,
            client: webhook_client(&tls),
        }
    }

    /// Delivers until dropped: a round whenever a request is filed, or every second.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.clone().round().await;
            tokio::select! {
                _ = self.desk.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Claims and attempts due deliveries until none is left.
    pub async fn round(self: Arc<Self>) {
        self.attempt_due().await;
        self.desk.progress.send_modify(|p| p.rounds += 1);
    }

    async fn attempt_due(self: &Arc<Self>) {
        let controllers: Vec<Arc<str>> = (self.config)()
            .clients
            .iter()
            .filter(|c| c.webhook.is_some())
            .map(|c| c.id.clone())
            .collect();
        if controllers.is_empty() {
            return;
        }
        loop {
            let now = self.desk.clock.now();
            let claimed = match self
                .desk
                .outbox
                .claim(controllers.clone(), now, now + LEASE.as_secs(), BATCH)
                .await
            {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::error!(msg = "outbox claim failed", error = %error);
                    return;
                }
            };
            if claimed.is_empty() {
                return;
            }
            let mut attempts = JoinSet::new();
            for delivery in claimed {
                attempts.spawn(self.clone().deliver(delivery));
            }
            while attempts.join_next().await.is_some() {}
        }
    }

    /// One attempt, recorded.
    async fn deliver(self: Arc<Self>, delivery: Claimed) {
        let failure = self.post(&delivery).await.err();
        let now = self.desk.clock.now();
        let config = (self.config)();
        let privacy = &config.privacy;
        let deadline = delivery.received_at + privacy.delivery_max_age.as_secs();
        let (attempt, outcome) = match failure {
            None => (Attempt::Delivered { at: now }, "delivered"),
            Some(failure)
                if delivery.attempts >= privacy.delivery_max_attempts || now >= deadline =>
            {
                let error = failure.error;
                (Attempt::Dead { at: now, error }, "dead")
            }
            Some(failure) => {
                let wait = backoff(delivery.attempts).max(failure.retry_after.unwrap_or_default());
                let next = (now + wait.as_secs().max(1)).min(deadline);
                // Retried like any failure, but counted apart: a certificate that does not
                // verify is a configuration problem, not a busy receiver.
                let outcome = if failure.tls { "tls_error" } else { "retry" };
                let error = failure.error;
                (
                    Attempt::Retry {
                        at: now,
                        next,
                        error,
                    },
                    outcome,
                )
            }
        };
        let error = match &attempt {
            Attempt::Retry { error, .. } | Attempt::Dead { error, .. } => Some(error.clone()),
            Attempt::Delivered { .. } => None,
        };
        let kept = self
            .desk
            .outbox
            .finish(
                delivery.request_id,
                delivery.controller.clone(),
                delivery.claim,
                attempt,
            )
            .await;
        ::metrics::counter!(metrics::WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
        if matches!(kept, Ok(true)) {
            self.desk.progress.send_modify(|p| p.attempts += 1);
        }
        let request_id = format_id(&delivery.request_id);
        match kept {
            Ok(true) => tracing::info!(
                msg = "webhook attempt",
                privacy_request_id = %request_id,
                controller = %delivery.controller,
                attempt = delivery.attempts,
                outcome,
                error = error.as_deref().unwrap_or(""),
            ),
            // Acknowledged meanwhile, or the lease ran out and another worker took over.
            Ok(false) => tracing::warn!(
                msg = "webhook attempt outcome not recorded: claim lost",
                privacy_request_id = %request_id,
                controller = %delivery.controller,
                outcome,
            ),
            // The lease runs out and the delivery is attempted again: at least once.
            Err(store) => tracing::error!(
                msg = "webhook attempt outcome not recorded",
                privacy_request_id = %request_id,
                controller = %delivery.controller,
                outcome,
                error = %store,
            ),
        }
    }

    /// POSTs the signed payload; `Err` for anything but a 2xx in time.
    async fn post(&self, delivery: &Claimed) -> Result<(), Failure> {
        let config = (self.config)();
        let Some(webhook) = config
            .clients
            .iter()
            .find(|c| c.id == delivery.controller)
            .and_then(|c| c.webhook.as_ref())
        else {
            return Err(Failure::new("no webhook configured"));
        };
        let body = Bytes::from(payload(delivery));
        let timestamp = self.desk.clock.now();
        // During a secret rotation, one signature per secret, space-separated: a Standard
        // Webhooks receiver accepts the delivery if any matches.
        let signature = std::iter::once(&webhook.key)
            .chain(&webhook.previous_key)
            .map(|key| signature::sign(key.expose(), &delivery.webhook_id, timestamp, &body))
            .collect::<Vec<_>>()
            .join(" ");
        let request = Request::post(webhook.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("recipient-gateway/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", &delivery.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(body))
            .map_err(|_| Failure::new("invalid request"))?;
        // A receiver behind a private CA gets a client trusting it; connections are not pooled
        // across attempts then, which at webhook rates costs nothing that matters.
        let client = match &webhook.tls {
            Some(tls) => webhook_client(tls),
            None => self.client.clone(),
        };
        let response = match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request)).await {
            Err(_) => return Err(Failure::new("timeout")),
            Ok(Err(error)) if error.is_connect() => {
                return Err(match tls_failure(&error) {
                    Some(why) => Failure {
                        tls: true,
                        ..Failure::new(&why)
                    },
                    None => Failure::new("connect"),
                });
            }
            Ok(Err(_)) => return Err(Failure::new("protocol")),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(Failure {
            error: format!("status {}", status.as_u16()),
            retry_after: retry_after(response.headers().get(header::RETRY_AFTER)),
            tls: false,
        })
    }
}

/// An HTTP/1.1 client for webhook receivers, trusting the roots of `tls`.
fn webhook_client(
    tls: &rustls::ClientConfig,
) -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// The TLS error under a failed connect, when the receiver's certificate (or handshake) failed.
/// The connector nests it in `io::Error`s, whose `source()` skips a level, so those are opened
/// with `get_ref()`.
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(format!("tls: {tls}"));
        }
        current = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// A failed attempt: why (no personal data) and any wait the receiver asked for.
struct Failure {
    error: String,
    retry_after: Option<Duration>,
    /// The receiver's certificate or TLS handshake failed (`outcome="tls_error"`).
    tls: bool,
}

impl Failure {
    fn new(error: &str) -> Failure {
        Failure {
            error: error.to_string(),
            retry_after: None,
            tls: false,
        }
    }
}

/// The webhook body (reference §5).
pub fn payload(delivery: &Claimed) -> Vec<u8> {
    let subject = delivery.subject.clone().unwrap_or_default();
    json!({
        "type": "privacy_request.created",
        "request_id": format_id(&delivery.request_id),
        "request_type": delivery.kind.as_str(),
        "received_at": rfc3339(delivery.received_at),
        "verified": delivery.verified,
        "subject": { "email": subject.email, "phone": subject.phone },
        "tracking_number": subject.tracking_number,
        "details": subject.details,
        "reply_to": subject.reply_to,
    })
    .to_string()
    .into_bytes()
}

/// The delay before attempt `attempts + 1`: 5 s doubling per attempt up to 6 h, with "equal
/// jitter" (between half and all of it) so receivers coming back are not hit by a herd.
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    let full = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// The wait a failed answer's `Retry-After` header asks for (seconds or an HTTP date), capped at
/// a day so a misconfigured receiver cannot park deliveries for long.
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for (attempts, full) in [
            (1, 5),
            (2, 10),
            (3, 20),
            (10, 2560),
            (13, 20_480),
            (14, 21_600),
        ] {
            for _ in 0..50 {
                let wait = backoff(attempts).as_secs_f64();
                let full = full as f64;
                assert!(wait >= full / 2.0 && wait <= full, "{attempts}: {wait}");
            }
        }
        assert!(backoff(u32::MAX) <= BACKOFF_MAX);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(120));
        let cases = [
            (Some(v("30")), Some(30)),
            (Some(v(" 7 ")), Some(7)),
            (Some(v("999999")), Some(86_400)),
            (Some(v(&past)), Some(0)),
            (Some(v("soon")), None),
            (Some(v("-5")), None),
            (None, None),
        ];
        for (value, want) in cases {
            let got = retry_after(value.as_ref()).map(|d| d.as_secs());
            assert_eq!(got, want, "{value:?}");
        }
        let dated = retry_after(Some(&v(&soon))).unwrap();
        assert!((110..=120).contains(&dated.as_secs()), "{dated:?}");
    }
}
