//! Everything a privacy endpoint can refuse, and its single mapping to an HTTP answer, as
//! [`crate::proxy::error::ProxyError`] is for the proxy.

use http::{HeaderValue, Method, Response, StatusCode, header};

use super::body::BodyError;
use super::page;
use crate::config::PageSettings;
use crate::vocabulary::{GatewayBody, error_response};

/// A privacy-endpoint request the gateway refuses. Messages never hold personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyError {
    /// The endpoint takes another method (the one carried here).
    #[error("This endpoint accepts {0} only.")]
    MethodNotAllowed(Method),
    /// An inbox, acknowledgement or erasure call from a client that is not a customer.
    #[error("Only customers (controllers) have privacy requests and erasures.")]
    CustomersOnly,
    /// The client address filed more intake requests than `rate_limit_per_minute`.
    #[error("Too many privacy requests from this address (limit {per_minute} per minute).")]
    RateLimited {
        /// The configured limit.
        per_minute: u32,
        /// Seconds until the next request is accepted (`Retry-After`).
        retry_after_secs: u64,
    },
    /// The body is not declared as JSON.
    #[error(
        "The body must be JSON (Content-Type: application/json), or the recipient page's form."
    )]
    UnsupportedMediaType,
    /// The body did not arrive within `body_read_timeout_ms`.
    #[error("The request body did not arrive in time.")]
    BodyTimeout,
    /// The body is larger than the endpoint reads (bytes).
    #[error("The body is larger than {0} bytes.")]
    BodyTooLarge(usize),
    /// The body broke off or its framing was malformed.
    #[error("The request body could not be read (malformed or cut off).")]
    BadBody,
    /// The JSON does not have the endpoint's shape; the message names the member, never a value.
    #[error("{0}")]
    InvalidBody(String),
    /// The inbox's query string is not understood.
    #[error("{0}")]
    InvalidQuery(&'static str),
    /// No privacy request with this id (for this customer).
    #[error("No such privacy request.")]
    NotFound,
    /// The store could not record or read; nothing was kept.
    #[error("The request could not be recorded; nothing was kept. Try again later.")]
    StoreUnavailable,
}

impl PrivacyError {
    /// A store failure: logged here (without personal data), answered as 503.
    pub fn store(error: crate::store::StoreError) -> PrivacyError {
        tracing::error!(msg = "privacy store failed", error = %error);
        PrivacyError::StoreUnavailable
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            PrivacyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            PrivacyError::CustomersOnly => StatusCode::FORBIDDEN,
            PrivacyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            PrivacyError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PrivacyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            PrivacyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PrivacyError::BadBody
            | PrivacyError::InvalidBody(_)
            | PrivacyError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            PrivacyError::NotFound => StatusCode::NOT_FOUND,
            PrivacyError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable snake_case code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            PrivacyError::MethodNotAllowed(_) => "method_not_allowed",
            PrivacyError::CustomersOnly => "customers_only",
            PrivacyError::RateLimited { .. } => "rate_limited",
            PrivacyError::UnsupportedMediaType => "unsupported_media_type",
            PrivacyError::BodyTimeout => "request_body_timeout",
            PrivacyError::BodyTooLarge(_) => "body_too_large",
            PrivacyError::BadBody => "bad_request_body",
            PrivacyError::InvalidBody(_) => "invalid_body",
            PrivacyError::InvalidQuery(_) => "invalid_query",
            PrivacyError::NotFound => "not_found",
            PrivacyError::StoreUnavailable => "store_unavailable",
        }
    }

    /// Whether the connection closes after the answer: a body that stalled or broke leaves the
    /// connection at an unknown point of the stream, as the proxy's own body errors do.
    pub fn closes_connection(&self) -> bool {
        matches!(self, PrivacyError::BodyTimeout | PrivacyError::BadBody)
    }

    /// The JSON answer, with `Retry-After`, `Allow` and `Connection: close` where they apply.
    pub fn into_response(self, request_id: &str) -> Response<GatewayBody> {
        let response = error_response(self.status(), self.code(), &self.to_string(), request_id);
        self.with_headers(response)
    }

    /// The same refusal as a page for a person at the recipient page: the same status and
    /// headers, in plain words.
    pub fn into_page(self, settings: &PageSettings, form_href: &str) -> Response<GatewayBody> {
        let (title, message) = match &self {
            PrivacyError::RateLimited { .. } => (
                "Please wait a moment",
                "Too many privacy requests came from your network in the last minute. Please wait \
                 a minute and send your request again.",
            ),
            PrivacyError::NotFound => (
                "Request not found",
                "There is no privacy request with this number. Check the link or the number you \
                 were given.",
            ),
            PrivacyError::StoreUnavailable => (
                "Please try again later",
                "Your request could not be recorded just now, and nothing was kept. Please try \
                 again in a few minutes.",
            ),
            PrivacyError::BodyTooLarge(_) => (
                "Your request is too long",
                "What you typed is too long to send. Please shorten the details and try again.",
            ),
            PrivacyError::BodyTimeout | PrivacyError::BadBody => (
                "Your request did not arrive",
                "Your request did not arrive completely. Please send it again.",
            ),
            PrivacyError::MethodNotAllowed(_)
            | PrivacyError::CustomersOnly
            | PrivacyError::UnsupportedMediaType
            | PrivacyError::InvalidBody(_)
            | PrivacyError::InvalidQuery(_) => (
                "This page cannot answer that",
                "Please go back to the privacy request form and use it to send your request.",
            ),
        };
        let response = page::html_response(
            self.status(),
            page::problem(settings, form_href, title, message),
        );
        self.with_headers(response)
    }

    fn with_headers(&self, mut response: Response<GatewayBody>) -> Response<GatewayBody> {
        let headers = response.headers_mut();
        match self {
            PrivacyError::RateLimited {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            PrivacyError::MethodNotAllowed(method) => {
                if let Ok(allow) = HeaderValue::from_str(method.as_str()) {
                    headers.insert(header::ALLOW, allow);
                }
            }
            _ => {}
        }
        if self.closes_connection() {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<BodyError> for PrivacyError {
    fn from(error: BodyError) -> PrivacyError {
        PrivacyError::InvalidBody(error.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_one_status_code_and_connection_policy() {
        let cases = [
            (
                PrivacyError::MethodNotAllowed(Method::POST),
                405,
                "method_not_allowed",
                false,
            ),
            (PrivacyError::CustomersOnly, 403, "customers_only", false),
            (
                PrivacyError::RateLimited {
                    per_minute: 20,
                    retry_after_secs: 3,
                },
                429,
                "rate_limited",
                false,
            ),
            (
                PrivacyError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
                false,
            ),
            (PrivacyError::BodyTimeout, 408, "request_body_timeout", true),
            (
                PrivacyError::BodyTooLarge(16384),
                413,
                "body_too_large",
                false,
            ),
            (PrivacyError::BadBody, 400, "bad_request_body", true),
            (
                PrivacyError::InvalidBody("`type` is required".into()),
                400,
                "invalid_body",
                false,
            ),
            (
                PrivacyError::InvalidQuery("unknown"),
                400,
                "invalid_query",
                false,
            ),
            (PrivacyError::NotFound, 404, "not_found", false),
            (
                PrivacyError::StoreUnavailable,
                503,
                "store_unavailable",
                false,
            ),
        ];
        for (error, status, code, closes) in cases {
            let response = error.clone().into_response("r1");
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code);
            assert_eq!(
                response.headers().get(header::CONNECTION).is_some(),
                closes,
                "{error:?}"
            );
        }
        let limited = PrivacyError::RateLimited {
            per_minute: 20,
            retry_after_secs: 3,
        }
        .into_response("r1");
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");
        let method = PrivacyError::MethodNotAllowed(Method::GET).into_response("r1");
        assert_eq!(method.headers()[header::ALLOW], "GET");
    }
}
