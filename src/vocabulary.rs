//! The ground floor: words every stage shares, so that no stage imports a later one for them.
//!
//! - the one body type requests and responses travel in ([`GatewayBody`], from [`crate::body`],
//!   and [`full`]);
//! - the gateway's own JSON answers ([`error_response`], [`json_response`]);
//! - the media type of a message ([`media_type`], [`is_json_media`]);
//! - which way a body travels ([`Direction`]);
//! - text made safe inside HTML ([`escape_html`]).
//!
//! `proxy`, `inspect`, `tags`, `privacy`, `review` and `admin` all speak these; none of them
//! owns them.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::Value;

pub use crate::body::{BoxError, GatewayBody};

/// A complete in-memory body.
pub fn full(bytes: Bytes) -> GatewayBody {
    GatewayBody::full(bytes)
}

/// A JSON answer of the gateway's own: never cached, since it may be about one caller's data.
pub fn json_response(status: StatusCode, value: &Value) -> Response<GatewayBody> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A gateway error in the contract's shape (reference §4.4):
/// `{"error": {"code", "message", "request_id"}}`.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<GatewayBody> {
    json_response(
        status,
        &serde_json::json!({
            "error": { "code": code, "message": message, "request_id": request_id }
        }),
    )
}

/// The lower-cased `type/subtype` of a message's `Content-Type`, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// `application/json` and `application/*+json`, given a lower-cased `type/subtype`.
pub fn is_json_media(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Which way a body travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to upstream.
    Request,
    /// Upstream to client.
    Response,
}

impl Direction {
    /// Both, request first.
    pub const ALL: [Direction; 2] = [Direction::Request, Direction::Response];

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }

    /// A dense index (request 0, response 1) for tables kept per direction.
    pub fn index(self) -> usize {
        match self {
            Direction::Request => 0,
            Direction::Response => 1,
        }
    }
}

/// Escapes text for HTML element content and double-quoted attribute values (the recipient
/// page, the HTML review report).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_read_without_parameters_and_case() {
        let cases = [
            ("application/json", Some("application/json"), true),
            (
                "Application/JSON; charset=utf-8",
                Some("application/json"),
                true,
            ),
            (
                "application/problem+json",
                Some("application/problem+json"),
                true,
            ),
            ("text/json", Some("text/json"), false),
            ("application/jsonx", Some("application/jsonx"), false),
        ];
        for (value, media, json) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            let read = media_type(&headers);
            assert_eq!(read.as_deref(), media, "{value}");
            assert_eq!(is_json_media(read.as_deref().unwrap()), json, "{value}");
        }
        assert_eq!(media_type(&HeaderMap::new()), None);
    }

    #[test]
    fn errors_have_the_contract_shape() {
        let response = error_response(StatusCode::BAD_REQUEST, "invalid_path", "Bad.", "r1");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
