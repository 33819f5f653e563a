//! The PROXY protocol (v1 text and v2 binary) from L4 load balancers listed in
//! `listen.proxy_protocol_from`.
//!
//! Behind an L4 balancer every connection comes from the balancer's address, so the privacy
//! intake's rate limit and `X-Forwarded-For` would see one client. A listed peer must open each
//! connection with a PROXY header, whose source address then stands for the client's; a listed
//! peer that sends none is disconnected (it is misconfigured, and guessing would let one client
//! pass as another). An unlisted peer's bytes are never read as a PROXY header: they go to TLS or
//! HTTP as sent, where a header is just a malformed request. The `ppp` crate parses; this module
//! only buffers until a header is complete and hands the bytes after it on.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The longest header accepted: v2's fixed part plus the largest length it can announce.
const MAX_HEADER: usize = 16 + u16::MAX as usize;

/// Why a listed peer's connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The bytes are not a PROXY header.
    #[error("not a PROXY protocol header")]
    Invalid,
    /// The connection ended before a whole header arrived.
    #[error("the connection closed inside the PROXY protocol header")]
    Truncated,
    /// Reading failed.
    #[error("reading the PROXY protocol header failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads one PROXY header from `stream`. Returns the stream with any bytes read past the header
/// put back, and the source address it names (`None` for `LOCAL`/`UNKNOWN`: the balancer's own
/// health checks, which keep the peer address).
pub async fn accept<S: AsyncRead + Unpin>(
    mut stream: S,
) -> Result<(Rewind<S>, Option<IpAddr>), ProxyHeaderError> {
    let mut buffer = Vec::with_capacity(256);
    loop {
        let mut chunk = [0u8; 512];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(ProxyHeaderError::Truncated);
        }
        buffer.extend_from_slice(&chunk[..read]);
        let parsed = HeaderResult::parse(&buffer);
        if parsed.is_incomplete() {
            if buffer.len() > MAX_HEADER {
                return Err(ProxyHeaderError::Invalid);
            }
            continue;
        }
        let (length, source) = match parsed {
            HeaderResult::V1(Ok(header)) => (header.header.len(), v1_source(&header.addresses)),
            HeaderResult::V2(Ok(header)) => (header.len(), v2_source(&header)),
            _ => return Err(ProxyHeaderError::Invalid),
        };
        let rest = Bytes::copy_from_slice(&buffer[length..]);
        return Ok((Rewind::new(stream, rest), source));
    }
}

fn v1_source(addresses: &v1::Addresses) -> Option<IpAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
        v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
        v1::Addresses::Unknown => None,
    }
}

fn v2_source(header: &v2::Header<'_>) -> Option<IpAddr> {
    if header.command == v2::Command::Local {
        return None;
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => Some(IpAddr::V4(a.source_address)),
        v2::Addresses::IPv6(a) => Some(IpAddr::V6(a.source_address)),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

pin_project_lite::pin_project! {
    /// A stream with bytes already read from it put back in front.
    pub struct Rewind<S> {
        prefix: Bytes,
        #[pin]
        inner: S,
    }
}

impl<S> Rewind<S> {
    /// `inner`, whose next reads return `prefix` first.
    pub fn new(inner: S, prefix: Bytes) -> Rewind<S> {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8]) -> Result<(Option<IpAddr>, Vec<u8>), ProxyHeaderError> {
        let (mut stream, source) = accept(input).await?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await?;
        Ok((source, rest))
    }

    #[tokio::test]
    async fn v1_and_v2_headers_name_the_source_and_keep_what_follows() {
        let (source, rest) =
            read(b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nGET / HTTP/1.1\r\n")
                .await
                .unwrap();
        assert_eq!(source, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let (source, rest) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n\x16\x03")
            .await
            .unwrap();
        assert_eq!(source, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03");

        let (source, rest) = read(b"PROXY UNKNOWN\r\nx").await.unwrap();
        assert_eq!(source, None);
        assert_eq!(rest, b"x");

        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "198.51.100.9:40000"
                    .parse::<std::net::SocketAddr>()
                    .unwrap(),
                "192.0.2.1:443".parse::<std::net::SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let mut input = header.clone();
        input.extend_from_slice(b"\x16\x03\x01");
        let (source, rest) = read(&input).await.unwrap();
        assert_eq!(source, Some("198.51.100.9".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn anything_else_closes_the_connection() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PROXY TCP4 not-an-ip 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7",
            b"",
        ] {
            assert!(read(input).await.is_err(), "{input:?}");
        }
    }
}
