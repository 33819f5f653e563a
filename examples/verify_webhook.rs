//! Verifying a privacy-request delivery, as a customer's webhook endpoint would.
//!
//! The gateway signs each delivery per Standard Webhooks: `webhook-signature` is
//! `v1,` + base64(HMAC-SHA-256(key, "{webhook-id}.{webhook-timestamp}.{body}")), where `key` is
//! the base64-decoded part of your `whsec_…` secret. Any Standard Webhooks library does this check;
//! this example does it with the gateway's own function.
//!
//! ```sh
//! # a delivery saved by your endpoint: the three headers as arguments, the raw body on stdin
//! cargo run --example verify_webhook -- "$SECRET" "$WEBHOOK_ID" "$WEBHOOK_TIMESTAMP" "$WEBHOOK_SIGNATURE" < body.json
//! # without arguments: a sample delivery, then the same delivery tampered with
//! cargo run --example verify_webhook
//! ```

use std::io::Read;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use recipient_gateway::privacy::signature::{sign, verify};

/// Deliveries older or newer than this are refused as replays.
const TOLERANCE_SECS: u64 = 5 * 60;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [secret, id, timestamp, signature] = args.as_slice() {
        let mut body = Vec::new();
        if std::io::stdin().read_to_end(&mut body).is_err() {
            eprintln!("cannot read the body from stdin");
            return ExitCode::FAILURE;
        }
        return match verify(
            secret,
            id,
            timestamp,
            signature,
            &body,
            now(),
            TOLERANCE_SECS,
        ) {
            Ok(()) => {
                println!("valid: process the request, answer 2xx quickly");
                ExitCode::SUCCESS
            }
            Err(error) => {
                println!("invalid ({error}): answer 401 and do not process it");
                ExitCode::FAILURE
            }
        };
    }
    if !args.is_empty() {
        eprintln!(
            "usage: verify_webhook [SECRET WEBHOOK_ID WEBHOOK_TIMESTAMP WEBHOOK_SIGNATURE < BODY]"
        );
        return ExitCode::from(2);
    }

    // The demo's secret for acme (config/dev.env): the key is the base64-decoded part.
    let secret = "whsec_ZGVtby1vbmx5LXdlYmhvb2stc2VjcmV0LWJ5dGVzISE=";
    let key = b"demo-only-webhook-secret-bytes!!";
    let id = "msg_2f1d0e7c9b8a4f6e8d7c6b5a49382716";
    let timestamp = now();
    let body = br#"{"type":"privacy_request.created","request_id":"87da6dd1ca1aafb0c4b8b3993a30d330","request_type":"delete","received_at":"2026-11-29T18:51:25Z","verified":true,"subject":{"email":"jane.doe@example.com","phone":null},"tracking_number":"1ZACME0000000001","details":null,"reply_to":null}"#;
    let signature = sign(key, id, timestamp, body);
    println!("webhook-id: {id}\nwebhook-timestamp: {timestamp}\nwebhook-signature: {signature}");

    let original = verify(
        secret,
        id,
        &timestamp.to_string(),
        &signature,
        body,
        now(),
        TOLERANCE_SECS,
    );
    println!(
        "sample delivery: {}",
        if original.is_ok() { "valid" } else { "INVALID" }
    );
    let mut tampered = body.to_vec();
    tampered.extend_from_slice(b" ");
    let changed = verify(
        secret,
        id,
        &timestamp.to_string(),
        &signature,
        &tampered,
        now(),
        TOLERANCE_SECS,
    );
    println!(
        "the same delivery with one byte added: {}",
        changed
            .err()
            .map_or("valid (!)".to_string(), |e| format!("refused ({e})"))
    );
    let replayed = verify(
        secret,
        id,
        &timestamp.to_string(),
        &signature,
        body,
        now() + 3600,
        TOLERANCE_SECS,
    );
    println!(
        "the same delivery an hour later: {}",
        replayed
            .err()
            .map_or("valid (!)".to_string(), |e| format!("refused ({e})"))
    );
    if original.is_ok() && changed.is_err() && replayed.is_err() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
