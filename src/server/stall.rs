//! The slow-read guard: a connection whose peer stops reading is closed.
//!
//! hyper has no write timeout. A client that sends requests but never reads the answers would
//! otherwise hold its connection, and the upstream response behind it, forever. This wrapper
//! starts a timer when a write cannot proceed (the socket's send buffer is full) and fails the
//! connection when the peer has read nothing for the whole timeout. Any progress resets the
//! timer, so a slow but live reader is never cut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pin_project_lite::pin_project! {
    /// An IO stream whose writes fail after stalling for `timeout`.
    pub struct WriteStall<S> {
        #[pin]
        inner: S,
        timeout: Duration,
        stalled: Option<Pin<Box<Sleep>>>,
    }
}

impl<S> WriteStall<S> {
    /// Guards `inner` with `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        WriteStall {
            inner,
            timeout,
            stalled: None,
        }
    }
}

/// Turns a pending write into an error once the stall timer has run out; clears the timer on
/// progress.
fn guard<T>(
    result: Poll<io::Result<T>>,
    stalled: &mut Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    if result.is_ready() {
        *stalled = None;
        return result;
    }
    let timer = stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
    match timer.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped reading",
        ))),
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead> AsyncRead for WriteStall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for WriteStall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        guard(result, this.stalled, *this.timeout, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        guard(result, this.stalled, *this.timeout, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = this.inner.poll_flush(cx);
        guard(result, this.stalled, *this.timeout, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_peer_that_stops_reading_is_cut_and_a_reader_is_not() {
        // A 64 KiB pipe whose far end never reads.
        let (near, _far) = tokio::io::duplex(64 * 1024);
        let mut guarded = WriteStall::new(near, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let chunk = vec![0u8; 16 * 1024];
        let error = loop {
            if let Err(error) = guarded.write_all(&chunk).await {
                break error;
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));

        // A slow but steady reader keeps the connection.
        let (near, mut far) = tokio::io::duplex(1024);
        let mut guarded = WriteStall::new(near, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 8 * 1024 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        guarded.write_all(&vec![1u8; 8 * 1024]).await.unwrap();
        assert!(reader.await.unwrap() >= 8 * 1024);
    }
}
