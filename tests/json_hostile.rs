//! Parser differentials, JSONTestSuite style: a generated corpus of accepted (`y_`) and refused
//! (`n_`) bodies, each placed at several depths of a shipment record, checked against the strict
//! reader and pushed through the real proxy in both directions. A refused body gets 400 (request)
//! or 502 (response) and nothing of it reaches the other side; an accepted one is forwarded with
//! every value no rule names byte for byte.

mod common;

use common::{
    config::{KEY_ACME, KEY_GLOBEX, SHIPPED_RULES},
    gateway::TestGateway,
    upstream::Canned,
};
use http::{Request, StatusCode};
use recipient_gateway::json::Document;

/// A hostile fragment: a JSON value (or broken text) to embed, and whether it is valid JSON the
/// gateway accepts.
struct Fragment {
    name: &'static str,
    text: String,
    accepted: bool,
}

fn fragment(name: &'static str, text: impl Into<String>, accepted: bool) -> Fragment {
    Fragment {
        name,
        text: text.into(),
        accepted,
    }
}

/// The corpus: every class the issue names, written as data.
fn fragments() -> Vec<Fragment> {
    vec![
        // Accepted: odd but valid, and kept byte for byte.
        fragment("y_number_huge_exponent", "1e400", true),
        fragment(
            "y_number_beyond_u64",
            "123456789012345678901234567890",
            true,
        ),
        fragment("y_number_tiny", "-0.0000000000000000000000000001", true),
        fragment("y_number_neg_zero", "-0", true),
        fragment("y_string_escapes", r#""tab\tnl\nq\"bs\\sl\/""#, true),
        fragment("y_string_surrogate_pair", r#""\ud83d\ude00""#, true),
        fragment("y_string_nul_value", r#""a\u0000b""#, true),
        fragment("y_string_utf8", "\"Zoë 東京 🚚\"", true),
        fragment("y_empty_key", r#"{"": 1}"#, true),
        fragment("y_case_differs", r#"{"email": 1, "Email": 2}"#, true),
        fragment("y_nested_100", "[".repeat(100) + &"]".repeat(100), true),
        fragment("y_whitespace", " \t\r\n{ \"a\" : [ 1 , 2 ] } \n", true),
        fragment("y_array_top", "[1, {\"a\": null}, \"x\"]", true),
        // Refused: what lenient readers take differently.
        fragment("n_duplicate_key", r#"{"a": 1, "a": 2}"#, false),
        fragment(
            "n_duplicate_escaped_key",
            r#"{"email": 1, "\u0065mail": 2}"#,
            false,
        ),
        fragment(
            "n_duplicate_escaped_slash",
            r#"{"a/b": 1, "a\/b": 2}"#,
            false,
        ),
        fragment("n_nul_in_key", r#"{"email\u0000": "x"}"#, false),
        fragment("n_control_in_key", r#"{"e\u001fmail": "x"}"#, false),
        fragment("n_lone_high_surrogate", r#""\ud800""#, false),
        fragment("n_lone_low_surrogate", r#""\udc00x""#, false),
        fragment("n_reversed_surrogates", r#""\ude00\ud83d""#, false),
        fragment("n_nan", "NaN", false),
        fragment("n_infinity", "Infinity", false),
        fragment("n_neg_infinity", "-Infinity", false),
        fragment("n_comment_line", "// c\n1", false),
        fragment("n_comment_block", "/* c */ 1", false),
        fragment("n_trailing_comma_object", r#"{"a": 1,}"#, false),
        fragment("n_trailing_comma_array", "[1,]", false),
        fragment("n_single_quotes", "{'a': 1}", false),
        fragment("n_unquoted_key", "{a: 1}", false),
        fragment("n_leading_zero", "012", false),
        fragment("n_plus_number", "+1", false),
        fragment("n_hex_number", "0x10", false),
        fragment("n_dot_number", ".5", false),
        fragment("n_raw_tab_in_string", "\"a\tb\"", false),
        fragment("n_raw_newline_in_string", "\"a\nb\"", false),
        fragment("n_bad_escape", r#""\x41""#, false),
        fragment("n_short_unicode_escape", r#""\u12""#, false),
        fragment("n_unclosed_string", "\"abc", false),
        fragment("n_unclosed_array", "[1, 2", false),
        fragment("n_true_prefix", "tru", false),
        fragment(
            "n_deep_10000_arrays",
            "[".repeat(10_000) + &"]".repeat(10_000),
            false,
        ),
        fragment(
            "n_deep_10000_objects",
            "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000),
            false,
        ),
        fragment("n_deep_129", "[".repeat(129) + &"]".repeat(129), false),
    ]
}

/// Where a fragment goes: the whole body, a member of the record, inside the recipient, in an
/// array. `{}` marks the spot.
const PLACES: &[(&str, &str)] = &[
    ("body", "{}"),
    ("member", r#"{"id": "s1", "extra": {}}"#),
    (
        "recipient",
        r#"{"id": "s1", "recipient": {"email": "jane@example.com", "note": {}}}"#,
    ),
    ("array", r#"{"id": "s1", "items": [1, {}, 3]}"#),
];

/// Whole bodies the issue lists that are not fragments.
fn whole_bodies() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        ("n_bom", b"\xEF\xBB\xBF{\"id\": \"s1\"}".to_vec(), false),
        ("n_invalid_utf8", b"{\"id\": \"s\xff1\"}".to_vec(), false),
        ("n_overlong_utf8", b"{\"id\": \"\xc0\xaf\"}".to_vec(), false),
        (
            "n_concatenated",
            b"{\"id\": \"s1\"}{\"id\": \"s2\"}".to_vec(),
            false,
        ),
        (
            "n_concatenated_ws",
            b"{\"id\": \"s1\"} \n {}".to_vec(),
            false,
        ),
        ("n_empty", b"".to_vec(), false),
        (
            "y_top_scalar_string",
            b"\"jane@example.com\"".to_vec(),
            true,
        ),
        ("y_top_scalar_number", b"42".to_vec(), true),
        ("y_top_null", b"null".to_vec(), true),
    ]
}

/// Every (name, body, accepted) case of the corpus.
fn corpus() -> Vec<(String, Vec<u8>, bool)> {
    let mut cases = Vec::new();
    for f in fragments() {
        for (place, template) in PLACES {
            let body = template.replacen("{}", &f.text, 1);
            cases.push((format!("{}@{place}", f.name), body.into_bytes(), f.accepted));
        }
    }
    for (name, body, accepted) in whole_bodies() {
        cases.push((name.to_string(), body, accepted));
    }
    cases
}

#[test]
fn the_strict_reader_agrees_with_the_corpus() {
    let cases = corpus();
    assert!(cases.len() > 150);
    for (name, body, accepted) in &cases {
        let parsed = Document::parse(body);
        assert_eq!(parsed.is_ok(), *accepted, "{name}: {:?}", parsed.err());
        // Anything accepted is JSON to a standard reader too, except numbers beyond f64, which
        // serde_json refuses and the gateway keeps as written.
        if *accepted && !name.starts_with("y_number_huge") {
            serde_json::from_slice::<serde_json::Value>(body)
                .unwrap_or_else(|e| panic!("{name}: accepted but serde_json says {e}"));
        }
    }
}

/// Two inspected routes (echo for requests, canned for responses) whose records are the body
/// itself, with the shipped rules, in front of the mock upstream.
fn routes() -> String {
    ["echo", "canned"]
        .map(|name| {
            format!(
                r#"
[[route]]
name = "{name}"
path_prefix = "/{name}"
upstream = "mock"
records = ["$"]
record_keys = ["id"]
recipient = "recipient"
recipient_identifiers = ["email"]
rules = ["{SHIPPED_RULES}/recipient.toml", "{SHIPPED_RULES}/sensitive.toml"]
"#
            )
        })
        .concat()
}

#[tokio::test]
async fn the_proxy_refuses_every_invalid_body_in_both_directions_and_keeps_valid_ones_intact() {
    let gw = TestGateway::start(&routes()).await;
    let mut client = gw.h1().await;
    let mut refused = 0;
    for (name, body, parsed) in corpus() {
        // The route's record is the body itself: a top-level array or scalar is schema drift.
        // An empty body has nothing to inspect and is forwarded as is.
        let accepted = body.is_empty()
            || parsed
                && Document::parse(&body)
                    .is_ok_and(|d| d.node(0).kind == recipient_gateway::json::Kind::Object);
        // Request: the acme customer sends it; refused bodies never reach the upstream.
        let seen = gw.upstream.count();
        let answer = client
            .send(
                Request::post("/echo/x")
                    .header("authorization", format!("Bearer {KEY_ACME}"))
                    .header("content-type", "application/json")
                    .body(common::client::body(body.clone()))
                    .unwrap(),
            )
            .await;
        if accepted {
            assert_eq!(answer.status, StatusCode::OK, "{name} (request)");
            let forwarded = gw.upstream.last()["body"].as_str().unwrap().to_string();
            assert_eq!(
                forwarded.as_bytes(),
                &body[..],
                "{name}: no rule applies to the controller's own request, bytes are kept"
            );
        } else {
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name} (request)");
            assert_eq!(gw.upstream.count(), seen, "{name}: nothing forwarded");
            refused += 1;
            client = gw.h1().await;
        }

        // Response: globex reads it (not the controller: unknown record).
        gw.upstream.set_canned(Canned::json(body.clone()));
        let answer = client.get("/canned/x", Some(KEY_GLOBEX)).await;
        if accepted {
            assert_eq!(answer.status, StatusCode::OK, "{name} (response)");
            let out = String::from_utf8(answer.body.to_vec()).unwrap();
            assert!(!out.contains("jane@example.com"), "{name}: leaked {out}");
        } else {
            assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{name} (response)");
            let text = String::from_utf8_lossy(&answer.body);
            assert!(text.contains("\"error\""), "{name}: {text}");
            assert!(
                !text.contains("jane"),
                "{name}: nothing of the body: {text}"
            );
        }
    }
    assert!(refused > 100);
    // Still serving after 10,000-deep bodies.
    assert_eq!(
        client.get("/canned/x", Some(KEY_GLOBEX)).await.status,
        StatusCode::BAD_GATEWAY
    );
    let blocked = gw.metrics().await;
    assert!(blocked.contains(r#"gateway_blocked_total{route="echo",reason="too_deep"}"#));
    assert!(blocked.contains(r#"gateway_blocked_total{route="canned",reason="duplicate_key"}"#));
}

#[tokio::test]
async fn numbers_beyond_f64_survive_redaction_digit_for_digit() {
    let gw = TestGateway::start(&routes()).await;
    let body = r#"{"id":"s9","weight":1e400,"big":123456789012345678901234567890,"tiny":-0.0000000000000000000000000001,"neg":-0,"recipient":{"email":"jane@example.com","name":"Jane"}}"#;
    gw.upstream
        .set_canned(Canned::json(body.as_bytes().to_vec()));
    let answer = gw.h1().await.get("/canned/x", Some(KEY_GLOBEX)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let out = String::from_utf8(answer.body.to_vec()).unwrap();
    assert_eq!(
        out,
        r#"{"id":"s9","weight":1e400,"big":123456789012345678901234567890,"tiny":-0.0000000000000000000000000001,"neg":-0,"recipient":{"email":"[REDACTED]","name":"[REDACTED]"}}"#
    );
}
