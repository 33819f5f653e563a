//! Deciding whether a body can be inspected, and collecting it under limits (reference §4.3).
//!
//! On inspected routes every body is either inspected whole or refused: nothing of a body the
//! gateway cannot read (wrong media type, unknown encoding, too large, not strict JSON, unexpected
//! shape) is forwarded, not even a prefix, because bodies are collected completely before anything
//! is sent on. Each refusal is a [`Blocked`] with a reason that becomes a JSON error and a count in
//! `gateway_blocked_total{route,reason}`.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body::Body;
use http_body_util::BodyExt;

use crate::config::Route;
use crate::json::JsonError;
use crate::redact::ShapeError;
use crate::vocabulary::{BoxError, Direction, is_json_media, media_type};

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not JSON and not a passthrough type, with a non-empty body.
    MediaType,
    /// A `Content-Encoding` other than gzip, deflate or br.
    Encoding,
    /// Declared gzip/deflate/br but not decodable.
    CorruptEncoding,
    /// Larger than `max_body_bytes`, encoded or decoded.
    TooLarge,
    /// Not strict JSON.
    InvalidJson,
    /// A duplicate member name.
    DuplicateKey,
    /// Nested deeper than the limit.
    TooDeep,
    /// Records or the recipient member are not where the config says.
    UnexpectedShape,
    /// A 206 answer: a partial body cannot be inspected.
    PartialContent,
}

impl Reason {
    /// Every reason, for registering each metric series at 0.
    pub const ALL: [Reason; 9] = [
        Reason::MediaType,
        Reason::Encoding,
        Reason::CorruptEncoding,
        Reason::TooLarge,
        Reason::InvalidJson,
        Reason::DuplicateKey,
        Reason::TooDeep,
        Reason::UnexpectedShape,
        Reason::PartialContent,
    ];

    /// The `reason` label of `gateway_blocked_total`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::MediaType => "media_type",
            Reason::Encoding => "encoding",
            Reason::CorruptEncoding => "corrupt_encoding",
            Reason::TooLarge => "too_large",
            Reason::InvalidJson => "invalid_json",
            Reason::DuplicateKey => "duplicate_key",
            Reason::TooDeep => "too_deep",
            Reason::UnexpectedShape => "unexpected_shape",
            Reason::PartialContent => "partial_content",
        }
    }
}

impl From<JsonError> for Reason {
    fn from(err: JsonError) -> Reason {
        match err {
            JsonError::DuplicateKey(_) => Reason::DuplicateKey,
            JsonError::TooDeep => Reason::TooDeep,
            JsonError::TooLarge => Reason::TooLarge,
            _ => Reason::InvalidJson,
        }
    }
}

impl From<ShapeError> for Reason {
    fn from(_: ShapeError) -> Reason {
        Reason::UnexpectedShape
    }
}

/// A refused body: which direction and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// The body's direction (decides the status: 4xx for clients, 502 for upstreams).
    pub direction: Direction,
    /// Why.
    pub reason: Reason,
}

impl Blocked {
    /// A request body refused for `reason`.
    pub fn request(reason: Reason) -> Blocked {
        Blocked {
            direction: Direction::Request,
            reason,
        }
    }

    /// A response body refused for `reason`.
    pub fn response(reason: Reason) -> Blocked {
        Blocked {
            direction: Direction::Response,
            reason,
        }
    }

    /// The answer's status code.
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode;
        match (self.direction, self.reason) {
            (Direction::Response, _) => StatusCode::BAD_GATEWAY,
            (_, Reason::MediaType | Reason::Encoding) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            (_, Reason::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The error code in the JSON answer.
    pub fn code(self) -> &'static str {
        match (self.direction, self.reason) {
            (_, Reason::UnexpectedShape) => "unexpected_shape",
            (Direction::Response, _) => "uninspectable_response",
            (_, Reason::MediaType) => "unsupported_media_type",
            (_, Reason::Encoding) => "unsupported_encoding",
            (_, Reason::CorruptEncoding) => "invalid_encoding",
            (_, Reason::TooLarge) => "body_too_large",
            (_, Reason::PartialContent) => "partial_content",
            _ => "invalid_json",
        }
    }

    /// The sentence in the JSON answer; never quotes the body.
    pub fn message(self) -> &'static str {
        match (self.direction, self.reason) {
            (Direction::Request, Reason::MediaType) => {
                "This route accepts only JSON bodies (application/json or application/*+json)."
            }
            (Direction::Request, Reason::Encoding) => {
                "The Content-Encoding is not supported; use gzip, deflate, br or none."
            }
            (Direction::Request, Reason::CorruptEncoding) => {
                "The body could not be decoded with its Content-Encoding."
            }
            (Direction::Request, Reason::TooLarge) => {
                "The body is larger than this gateway inspects."
            }
            (Direction::Request, Reason::DuplicateKey) => {
                "The body is not accepted: an object repeats a member name."
            }
            (Direction::Request, Reason::TooDeep) => {
                "The body is not accepted: it nests too deeply."
            }
            (Direction::Request, Reason::UnexpectedShape) => {
                "The body's records or recipient are not where this route expects them."
            }
            (Direction::Request, _) => {
                "The body is not strict JSON (no comments, NaN, trailing commas, BOM or concatenated documents)."
            }
            (Direction::Response, Reason::UnexpectedShape) => {
                "The upstream's answer does not have the shape this route inspects; it was withheld."
            }
            (Direction::Response, Reason::MediaType) => {
                "The upstream's answer could not be inspected: its media type is neither JSON nor \
                 one this route passes uninspected; it was withheld."
            }
            (Direction::Response, Reason::Encoding) => {
                "The upstream's answer could not be inspected: its Content-Encoding is not one the \
                 gateway decodes; it was withheld."
            }
            (Direction::Response, Reason::CorruptEncoding) => {
                "The upstream's answer could not be inspected: it does not decode with its \
                 Content-Encoding; it was withheld."
            }
            (Direction::Response, Reason::TooLarge) => {
                "The upstream's answer could not be inspected: it is larger than this gateway \
                 inspects; it was withheld."
            }
            (Direction::Response, Reason::PartialContent) => {
                "The upstream's answer could not be inspected: it is a part of a body (206); it was \
                 withheld."
            }
            (Direction::Response, Reason::DuplicateKey) => {
                "The upstream's answer could not be inspected: an object repeats a member name; it \
                 was withheld."
            }
            (Direction::Response, Reason::TooDeep) => {
                "The upstream's answer could not be inspected: it nests too deeply; it was withheld."
            }
            (Direction::Response, Reason::InvalidJson) => {
                "The upstream's answer could not be inspected: it is not strict JSON; it was \
                 withheld."
            }
        }
    }
}

/// How a body will be treated, decided from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Treatment {
    /// JSON: collect, decode these codings (outermost last), inspect.
    Inspect(Vec<Coding>),
    /// A `passthrough_content_types` media type: streamed as is, on purpose.
    Passthrough,
    /// Not inspectable: refused unless the body turns out to be empty.
    RefuseUnlessEmpty(Reason),
}

/// A content coding the gateway can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// gzip (also `x-gzip`).
    Gzip,
    /// zlib-wrapped deflate (raw deflate accepted too).
    Deflate,
    /// Brotli.
    Brotli,
}

/// Most codings stacked on one body that are decoded.
const MAX_CODINGS: usize = 2;

/// Decides the treatment of a body from `Content-Type` and `Content-Encoding`.
pub fn treatment(headers: &HeaderMap, route: &Route) -> Treatment {
    match media_type(headers).as_deref() {
        Some(m) if is_json_media(m) => {}
        Some(m) if route.passthrough_content_types.iter().any(|p| p == m) => {
            return Treatment::Passthrough;
        }
        _ => return Treatment::RefuseUnlessEmpty(Reason::MediaType),
    }
    match codings(headers) {
        Some(codings) => Treatment::Inspect(codings),
        None => Treatment::RefuseUnlessEmpty(Reason::Encoding),
    }
}

/// The decodable codings of `Content-Encoding`, or `None` if any is unknown or too many stack.
fn codings(headers: &HeaderMap) -> Option<Vec<Coding>> {
    let mut out = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        for token in value.to_str().ok()?.split(',') {
            match token.trim().to_ascii_lowercase().as_str() {
                "" | "identity" => {}
                "gzip" | "x-gzip" => out.push(Coding::Gzip),
                "deflate" => out.push(Coding::Deflate),
                "br" => out.push(Coding::Brotli),
                _ => return None,
            }
        }
    }
    (out.len() <= MAX_CODINGS).then_some(out)
}

/// Why collecting a body failed.
#[derive(Debug)]
pub enum CollectError {
    /// The body was refused.
    Blocked(Reason),
    /// Reading the body failed (peer error or stall).
    Body(BoxError),
}

/// Reads a whole body, refusing it once it passes `limit` bytes (a declared larger
/// `Content-Length` is refused before reading anything).
pub async fn collect<B>(body: B, headers: &HeaderMap, limit: u64) -> Result<Bytes, CollectError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    if declared.is_some_and(|n| n > limit) {
        drain(&mut body).await;
        return Err(CollectError::Blocked(Reason::TooLarge));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(8192).min(limit) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CollectError::Body(e.into()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                drain(&mut body).await;
                return Err(CollectError::Blocked(Reason::TooLarge));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Most of a refused body read and thrown away so the client sees the answer.
const DRAIN_BYTES: usize = 1 << 20;
/// Longest time spent draining a refused body.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and discards what remains of a refused body (bounded in bytes and time), so a client
/// still sending gets the error instead of a reset connection, as nginx's lingering close does.
/// Nothing read here goes anywhere.
async fn drain<B>(body: &mut B)
where
    B: Body<Data = Bytes> + Unpin,
{
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => drained += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    })
    .await;
}

/// Decodes `raw` through `codings` (applied in order by the sender, so undone in reverse), never
/// producing more than `limit` bytes: a decompression bomb is refused after `limit` bytes of work.
pub fn decode(raw: &Bytes, codings: &[Coding], limit: u64) -> Result<Bytes, Reason> {
    let mut data = raw.clone();
    for coding in codings.iter().rev() {
        let mut out = Vec::with_capacity((data.len() * 4).min(limit as usize));
        let read = match coding {
            Coding::Gzip => flate2::read::MultiGzDecoder::new(&data[..])
                .take(limit + 1)
                .read_to_end(&mut out),
            Coding::Deflate => {
                let zlib = flate2::read::ZlibDecoder::new(&data[..])
                    .take(limit + 1)
                    .read_to_end(&mut out);
                if zlib.is_err() {
                    out.clear();
                    flate2::read::DeflateDecoder::new(&data[..])
                        .take(limit + 1)
                        .read_to_end(&mut out)
                } else {
                    zlib
                }
            }
            Coding::Brotli => brotli::Decompressor::new(&data[..], 4096)
                .take(limit + 1)
                .read_to_end(&mut out),
        };
        read.map_err(|_| Reason::CorruptEncoding)?;
        if out.len() as u64 > limit {
            return Err(Reason::TooLarge);
        }
        data = Bytes::from(out);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn route(passthrough: &[&str]) -> Route {
        Route {
            forward_headers: crate::config::ForwardHeaders::Screened,
            allowed_headers: vec![],
            name: "r".into(),
            index: 0,
            upstream_index: 0,
            path_prefix: "/r".into(),
            upstream: "u".into(),
            auth: crate::config::RouteAuth::Client,
            purpose: crate::redact::Purpose::Fulfillment,
            records: vec![],
            record_keys: vec![],
            recipient: None,
            recipient_identifiers: vec![],
            controller_member: None,
            unknown_controller: crate::config::UnknownController::NotController,
            rules: vec![],
            passthrough_content_types: passthrough.iter().map(|s| s.to_string()).collect(),
            plan: crate::redact::Plan::new(&[], None, &[], crate::redact::Purpose::Fulfillment),
            path_parameters: false,
            allowed_overrides: vec![],
            allow_upgrade: false,
            fold_case: true,
            folded_prefix: "/r".into(),
        }
    }

    #[test]
    fn treatment_table() {
        let r = route(&["application/pdf"]);
        let cases: &[(&[(&str, &str)], Treatment)] = &[
            (
                &[("content-type", "application/json")],
                Treatment::Inspect(vec![]),
            ),
            (
                &[("content-type", "Application/JSON; charset=utf-8")],
                Treatment::Inspect(vec![]),
            ),
            (
                &[("content-type", "application/vnd.api+json")],
                Treatment::Inspect(vec![]),
            ),
            (
                &[("content-type", "application/pdf")],
                Treatment::Passthrough,
            ),
            (
                &[("content-type", "text/plain")],
                Treatment::RefuseUnlessEmpty(Reason::MediaType),
            ),
            (
                &[("content-type", "application/jsonp")],
                Treatment::RefuseUnlessEmpty(Reason::MediaType),
            ),
            (&[], Treatment::RefuseUnlessEmpty(Reason::MediaType)),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip"),
                ],
                Treatment::Inspect(vec![Coding::Gzip]),
            ),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "br"),
                ],
                Treatment::Inspect(vec![Coding::Brotli]),
            ),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "identity"),
                ],
                Treatment::Inspect(vec![]),
            ),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip, br"),
                ],
                Treatment::Inspect(vec![Coding::Gzip, Coding::Brotli]),
            ),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "zstd"),
                ],
                Treatment::RefuseUnlessEmpty(Reason::Encoding),
            ),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip, zstd"),
                ],
                Treatment::RefuseUnlessEmpty(Reason::Encoding),
            ),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip, gzip, gzip"),
                ],
                Treatment::RefuseUnlessEmpty(Reason::Encoding),
            ),
        ];
        for (h, expected) in cases {
            assert_eq!(&treatment(&headers(h), &r), expected, "{h:?}");
        }
    }

    #[test]
    fn decoding_and_bombs() {
        let json = br#"{"a":"hello"}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        assert_eq!(decode(&gz, &[Coding::Gzip], 1024).unwrap(), &json[..]);

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(json).unwrap();
        assert_eq!(
            decode(&Bytes::from(z.finish().unwrap()), &[Coding::Deflate], 1024).unwrap(),
            &json[..]
        );

        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(json).unwrap();
        assert_eq!(
            decode(
                &Bytes::from(raw.finish().unwrap()),
                &[Coding::Deflate],
                1024
            )
            .unwrap(),
            &json[..]
        );

        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
            .write_all(json)
            .unwrap();
        let br = Bytes::from(br);
        assert_eq!(decode(&br, &[Coding::Brotli], 1024).unwrap(), &json[..]);

        // Stacked: gzip applied first, then br.
        let mut stacked = Vec::new();
        brotli::CompressorWriter::new(&mut stacked, 4096, 5, 22)
            .write_all(&gz)
            .unwrap();
        assert_eq!(
            decode(&Bytes::from(stacked), &[Coding::Gzip, Coding::Brotli], 1024).unwrap(),
            &json[..]
        );

        // 64 MiB of zeros compress to ~64 KiB: refused after 1 MiB of output.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            bomb.write_all(&zeros).unwrap();
        }
        let bomb = Bytes::from(bomb.finish().unwrap());
        assert!(bomb.len() < 1 << 20);
        assert_eq!(
            decode(&bomb, &[Coding::Gzip], 1 << 20),
            Err(Reason::TooLarge)
        );

        assert_eq!(
            decode(&Bytes::from_static(b"not gzip"), &[Coding::Gzip], 1024),
            Err(Reason::CorruptEncoding)
        );
    }

    #[test]
    fn statuses_and_codes() {
        use http::StatusCode;
        let cases = [
            (
                Blocked::request(Reason::MediaType),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                Blocked::request(Reason::Encoding),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
            ),
            (
                Blocked::request(Reason::TooLarge),
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
            ),
            (
                Blocked::request(Reason::DuplicateKey),
                StatusCode::BAD_REQUEST,
                "invalid_json",
            ),
            (
                Blocked::request(Reason::UnexpectedShape),
                StatusCode::BAD_REQUEST,
                "unexpected_shape",
            ),
            (
                Blocked::response(Reason::MediaType),
                StatusCode::BAD_GATEWAY,
                "uninspectable_response",
            ),
            (
                Blocked::response(Reason::UnexpectedShape),
                StatusCode::BAD_GATEWAY,
                "unexpected_shape",
            ),
            (
                Blocked::response(Reason::PartialContent),
                StatusCode::BAD_GATEWAY,
                "uninspectable_response",
            ),
        ];
        for (blocked, status, code) in cases {
            assert_eq!(
                (blocked.status(), blocked.code()),
                (status, code),
                "{blocked:?}"
            );
        }
    }
}
