//! Everything the proxy layer can refuse or fail with, and its single mapping to an HTTP answer.

use http::{HeaderValue, Response, StatusCode, header};

use super::headers::HeaderFlaw;
use crate::inspect::Blocked;
use crate::target::PathFlaw;
use crate::vocabulary::{GatewayBody, error_response};

/// A request the gateway answers itself instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No route's prefix matches the path.
    #[error("No route matches this path.")]
    NoRoute,
    /// A path that is not canonical, or that a lenient upstream would route elsewhere.
    #[error("{}", .0.message())]
    InvalidPath(PathFlaw),
    /// A header an upstream could read as another name, method or path.
    #[error("{}", .0.message())]
    InvalidHeader(HeaderFlaw),
    /// `Upgrade` or `CONNECT`: a tunnel the gateway could not inspect.
    #[error("Protocol upgrades and CONNECT are not supported.")]
    UpgradeRefused,
    /// Content-Length together with Transfer-Encoding: the body's end is ambiguous.
    #[error("The request has both Content-Length and Transfer-Encoding; its framing is ambiguous.")]
    AmbiguousFraming,
    /// The client's body broke off or was malformed while being read.
    #[error("The request body could not be read (malformed or cut off).")]
    BadRequestBody,
    /// The client paused its body longer than `body_read_timeout_ms`.
    #[error("The request body stalled for longer than the body read timeout.")]
    RequestBodyTimeout,
    /// The credential headers carry different keys, or an unreadable one.
    #[error("The request carries conflicting or malformed credentials.")]
    AmbiguousCredentials,
    /// No key on a route that needs one, or a key no client has.
    #[error("A valid API key is required (Authorization: Bearer <key> or X-Api-Key).")]
    Unauthorized,
    /// A body on an inspected route was refused (reference §4.3).
    #[error("{}", .0.message())]
    Blocked(Blocked),
    /// The upstream could not be reached.
    #[error("The upstream service could not be reached.")]
    UpstreamConnect,
    /// The upstream did not answer within `request_timeout_ms`.
    #[error("The upstream service did not answer in time.")]
    UpstreamTimeout,
    /// The upstream broke the protocol or the connection.
    #[error("The upstream service sent an invalid response.")]
    UpstreamProtocol,
    /// The upstream created a record, but the tag naming its controller was not committed
    /// before the deadline: answering 201 could let the record lose its controller.
    #[error(
        "The record was created upstream, but the gateway could not yet record who controls it; read it again before retrying the create."
    )]
    TagNotCommitted,
}

impl ProxyError {
    /// The stable snake_case code clients can match on.
    pub fn code(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::InvalidPath(_) => "invalid_path",
            ProxyError::InvalidHeader(_) => "invalid_header",
            ProxyError::UpgradeRefused => "upgrade_refused",
            ProxyError::AmbiguousFraming => "ambiguous_framing",
            ProxyError::BadRequestBody => "bad_request_body",
            ProxyError::RequestBodyTimeout => "request_body_timeout",
            ProxyError::AmbiguousCredentials => "ambiguous_credentials",
            ProxyError::Unauthorized => "unauthorized",
            ProxyError::Blocked(blocked) => blocked.code(),
            ProxyError::UpstreamConnect => "upstream_unavailable",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamProtocol => "upstream_protocol_error",
            ProxyError::TagNotCommitted => "store_unavailable",
        }
    }

    /// The `reason` label of `gateway_blocked_total` for a refusal counted there.
    pub fn blocked_reason(self) -> Option<&'static str> {
        match self {
            ProxyError::InvalidPath(flaw) => Some(flaw.reason()),
            ProxyError::InvalidHeader(flaw) => Some(flaw.reason()),
            ProxyError::Blocked(blocked) => Some(blocked.reason.label()),
            ProxyError::UpgradeRefused => Some("upgrade"),
            ProxyError::AmbiguousFraming => Some("ambiguous_framing"),
            _ => None,
        }
    }

    /// Whether the client's connection should close after this answer (the request's framing or
    /// intent cannot be trusted for the next request on it).
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ProxyError::UpgradeRefused
                | ProxyError::AmbiguousFraming
                | ProxyError::BadRequestBody
                | ProxyError::RequestBodyTimeout
        )
    }

    /// The JSON answer, `{"error": {"code", "message", "request_id"}}`.
    pub fn into_response(self, request_id: &str) -> Response<GatewayBody> {
        let status = StatusCode::from(self);
        let mut response = error_response(status, self.code(), &self.to_string(), request_id);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"recipient-gateway\""),
            );
        }
        if self.closes_connection() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<ProxyError> for StatusCode {
    fn from(err: ProxyError) -> StatusCode {
        match err {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::InvalidPath(_)
            | ProxyError::InvalidHeader(_)
            | ProxyError::UpgradeRefused
            | ProxyError::AmbiguousFraming
            | ProxyError::BadRequestBody
            | ProxyError::AmbiguousCredentials => StatusCode::BAD_REQUEST,
            ProxyError::Unauthorized => StatusCode::UNAUTHORIZED,
            ProxyError::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Blocked(blocked) => blocked.status(),
            ProxyError::UpstreamConnect | ProxyError::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::TagNotCommitted => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
