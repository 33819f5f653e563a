//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA-256(key, "{id}.{timestamp}.{body}")).
//!
//! The key is the decoded part of the customer's `whsec_…` secret, so any Standard Webhooks
//! library verifies these deliveries. [`verify`] is what such a library does; the tests and the
//! `verify_webhook` example use it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The signature header value for one attempt.
pub fn sign(key: &[u8], webhook_id: &str, timestamp: u64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(mac(key, webhook_id, timestamp, body))
    )
}

fn mac(key: &[u8], webhook_id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Why a delivery does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The secret is not `whsec_` + base64.
    #[error("the secret is not `whsec_` followed by base64")]
    BadSecret,
    /// The timestamp is not a number.
    #[error("the webhook-timestamp header is not a number")]
    BadTimestamp,
    /// The timestamp is further from now than the tolerance (a replay).
    #[error("the webhook-timestamp is outside the tolerance")]
    Stale,
    /// No `v1` signature matches.
    #[error("no signature matches")]
    Mismatch,
}

/// Checks a delivery the way a Standard Webhooks library does: `secret` is the `whsec_…` string,
/// `signatures` the header (space-separated `v1,<base64>` entries), `now` and `tolerance` in
/// seconds.
pub fn verify(
    secret: &str,
    webhook_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: u64,
    tolerance: u64,
) -> Result<(), VerifyError> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| STANDARD.decode(b).ok())
        .ok_or(VerifyError::BadSecret)?;
    let timestamp: u64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if timestamp.abs_diff(now) > tolerance {
        return Err(VerifyError::Stale);
    }
    let expected = mac(&key, webhook_id, timestamp, body);
    let matches = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .any(|given| {
            use subtle::ConstantTimeEq;
            bool::from(given.ct_eq(&expected))
        });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its reference libraries sign it so).
    #[test]
    fn matches_the_standard_webhooks_reference_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let ok = verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            &format!("v1,bm9ub3RoZXJzaWduYXR1cmU= {signature}"),
            body,
            1614265330 + 60,
            300,
        );
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn refuses_tampering_replays_and_bad_input() {
        let secret = "whsec_c2VjcmV0LWJ5dGVz";
        let key = b"secret-bytes";
        let signature = sign(key, "msg_1", 1000, b"{}");
        let check = |id: &str, ts: &str, sig: &str, body: &[u8], now: u64| {
            verify(secret, id, ts, sig, body, now, 300)
        };
        assert_eq!(check("msg_1", "1000", &signature, b"{}", 1000), Ok(()));
        let cases = [
            (
                check("msg_1", "1000", &signature, b"{ }", 1000),
                VerifyError::Mismatch,
            ),
            (
                check("msg_2", "1000", &signature, b"{}", 1000),
                VerifyError::Mismatch,
            ),
            (
                check("msg_1", "1001", &signature, b"{}", 1000),
                VerifyError::Mismatch,
            ),
            (
                check("msg_1", "1000", &signature, b"{}", 1301),
                VerifyError::Stale,
            ),
            (
                check("msg_1", "x", &signature, b"{}", 1000),
                VerifyError::BadTimestamp,
            ),
            (
                check("msg_1", "1000", "v2,abc", b"{}", 1000),
                VerifyError::Mismatch,
            ),
            (
                verify("secret", "msg_1", "1000", &signature, b"{}", 1000, 300),
                VerifyError::BadSecret,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, Err(want));
        }
    }
}
