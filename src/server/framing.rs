//! A read-side watcher of HTTP/1.1 request framing.
//!
//! hyper resolves a request that carries both `Content-Length` and `Transfer-Encoding` the way
//! RFC 9112 §6.3 allows (chunked wins, the connection closes after) and hides the conflicting
//! `Content-Length` from the service. The contract is stricter: such a request is refused with 400.
//! This wrapper follows the byte stream hyper reads, finds each request head and its body's
//! framing, and raises a per-connection flag when a head carries both. It never alters bytes; on
//! anything it cannot follow (malformed input hyper will refuse anyway, an h2c preface, a head
//! over the limit) it simply stops watching.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared with the connection's service: set once a request head had ambiguous framing.
pub type AmbiguousFlag = Arc<AtomicBool>;

pin_project_lite::pin_project! {
    /// An IO stream whose reads are watched for ambiguous request framing.
    pub struct FramingWatch<S> {
        #[pin]
        inner: S,
        state: State,
        head: Vec<u8>,
        max_head: usize,
        flag: AmbiguousFlag,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a request head until the blank line.
    Head,
    /// Skipping a `Content-Length` body.
    Fixed(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// After the last chunk: trailer lines until a blank one.
    Trailers,
    /// Not following the stream any more.
    Stopped,
}

impl<S> FramingWatch<S> {
    /// Watches `inner`; heads longer than `max_head` bytes are left to hyper's own limit.
    pub fn new(inner: S, max_head: usize, flag: AmbiguousFlag) -> Self {
        FramingWatch {
            inner,
            state: State::Head,
            head: Vec::new(),
            max_head,
            flag,
        }
    }
}

impl<S: AsyncRead> AsyncRead for FramingWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let mut watcher = Watcher {
                state: this.state,
                head: this.head,
                max_head: *this.max_head,
                flag: this.flag,
            };
            watcher.feed(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite> AsyncWrite for FramingWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
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
}

struct Watcher<'a> {
    state: &'a mut State,
    head: &'a mut Vec<u8>,
    max_head: usize,
    flag: &'a AtomicBool,
}

impl Watcher<'_> {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match *self.state {
                State::Stopped => return,
                State::Fixed(remaining) => {
                    let n = remaining.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    *self.state = if n == remaining {
                        State::Head
                    } else {
                        State::Fixed(remaining - n)
                    };
                }
                State::ChunkData(remaining) => {
                    let n = remaining.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    *self.state = if n == remaining {
                        // The chunk's CRLF is read as an empty "size line".
                        State::ChunkSize
                    } else {
                        State::ChunkData(remaining - n)
                    };
                }
                State::Head | State::ChunkSize | State::Trailers => {
                    let (line_done, used) = self.take_until_terminator(bytes);
                    bytes = &bytes[used..];
                    if line_done {
                        self.finish_unit();
                        self.head.clear();
                    } else if self.head.len() > self.max_head {
                        *self.state = State::Stopped;
                    }
                }
            }
        }
    }

    /// Appends to the pending unit (head, size line or trailer block) up to its terminator.
    /// Every terminator ends in a line feed, so the bytes are taken a line at a time and only
    /// a line's end is looked at.
    fn take_until_terminator(&mut self, bytes: &[u8]) -> (bool, usize) {
        let terminator: &[u8] = match *self.state {
            State::ChunkSize => b"\n",
            _ => b"\r\n\r\n",
        };
        let mut used = 0;
        while let Some(at) = bytes[used..].iter().position(|&b| b == b'\n') {
            self.head.extend_from_slice(&bytes[used..=used + at]);
            used += at + 1;
            // A head may be preceded by stray CRLFs (RFC 9112 §2.2); they are not a blank line.
            if *self.state == State::Head && self.head == b"\r\n" {
                self.head.clear();
                continue;
            }
            // Trailers: a lone CRLF right after the last chunk ends them too.
            if *self.state == State::Trailers && self.head == b"\r\n" {
                return (true, used);
            }
            if self.head.ends_with(terminator) {
                return (true, used);
            }
        }
        self.head.extend_from_slice(&bytes[used..]);
        (false, bytes.len())
    }

    fn finish_unit(&mut self) {
        *self.state = match *self.state {
            State::Head => self.after_head(),
            State::ChunkSize => self.after_size_line(),
            State::Trailers => State::Head,
            other => other,
        };
    }

    fn after_head(&mut self) -> State {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(self.head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return State::Stopped,
        }
        if request.method == Some("PRI") {
            return State::Stopped;
        }
        let mut length = None;
        let mut chunked = false;
        let mut has_te = false;
        for header in request.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if length.is_none() {
                    return State::Stopped;
                }
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                has_te = true;
                chunked = header
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        }
        if has_te && length.is_some() {
            self.flag.store(true, Ordering::Release);
            return State::Stopped;
        }
        match (has_te, chunked, length) {
            (true, true, _) => State::ChunkSize,
            (true, false, _) => State::Stopped,
            (false, _, Some(0) | None) => State::Head,
            (false, _, Some(n)) => State::Fixed(n),
        }
    }

    fn after_size_line(&mut self) -> State {
        let line = self.head.trim_ascii();
        if line.is_empty() {
            // The CRLF that ends a chunk's data.
            return State::ChunkSize;
        }
        let digits = line
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        match std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u64::from_str_radix(d, 16).ok())
        {
            Some(0) => State::Trailers,
            Some(n) => State::ChunkData(n),
            None => State::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(chunks: &[&[u8]]) -> (bool, State) {
        let flag = AtomicBool::new(false);
        let mut state = State::Head;
        let mut head = Vec::new();
        for chunk in chunks {
            Watcher {
                state: &mut state,
                head: &mut head,
                max_head: 8192,
                flag: &flag,
            }
            .feed(chunk);
        }
        (flag.load(Ordering::Acquire), state)
    }

    #[test]
    fn framing_cases() {
        let cases: &[(&str, &[&[u8]], bool, State)] = &[
            ("plain get", &[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"], false, State::Head),
            (
                "cl then te",
                &[b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"],
                true,
                State::Stopped,
            ),
            (
                "te then cl, split across reads",
                &[b"POST / HTTP/1.1\r\nTransfer-Enc", b"oding: chunked\r\nContent-Length: 5\r\n", b"\r\n"],
                true,
                State::Stopped,
            ),
            (
                "fixed body then a second request",
                &[b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel", b"loGET / HTTP/1.1\r\n\r\n"],
                false,
                State::Head,
            ),
            (
                "smuggled head inside a fixed body is body, not a head",
                &[b"POST / HTTP/1.1\r\nContent-Length: 66\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"],
                false,
                State::Head,
            ),
            (
                "chunked body then ambiguous pipelined request",
                &[
                    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n",
                    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                ],
                true,
                State::Stopped,
            ),
            (
                "chunked with trailers",
                &[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n"],
                false,
                State::Head,
            ),
            ("malformed chunk size stops", &[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], false, State::Stopped),
            ("h2c preface stops", &[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], false, State::Stopped),
        ];
        for (name, chunks, ambiguous, state) in cases {
            assert_eq!(watch(chunks), (*ambiguous, *state), "{name}");
        }
    }
}
