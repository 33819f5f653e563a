//! Idle connections are closed, on HTTP/2 as on HTTP/1.1.
//!
//! A connection is busy from the moment a request arrives until its response body has been sent
//! (or dropped). One that is not busy for `limits.idle_timeout_ms` is closed, and so is one whose
//! first request does not arrive within `limits.header_read_timeout_ms` of the handshake:
//! HTTP/2 keep-alive pings, which a client answers without sending anything, keep neither alive
//! (nginx's `keepalive_timeout` and `http2_recv_timeout`, Envoy's `idle_timeout`).
//!
//! A connection that became a tunnel (an upgrade the route allows) is left to the tunnel's own
//! idle limit, which counts bytes both ways.
//!
//! The close happens at the socket: when the deadline passes with nothing in flight, the
//! connection reads end-of-stream and hyper closes it, as if the client had hung up. Nothing is
//! cut short, because nothing is in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::admin::metrics;
use crate::body::{Finished, GatewayBody};

/// What a connection has in flight, shared by its service (which counts requests until their
/// response bodies are gone) and its socket (which closes it when idle).
#[derive(Clone)]
pub(super) struct Activity(Arc<Counts>);

struct Counts {
    /// Requests whose response body has not been sent or dropped yet.
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to when the last request finished (0: none yet).
    last_done_ms: AtomicU64,
    /// Requests seen, to tell the first-request deadline from the idle one.
    requests: AtomicU64,
    /// The connection became a tunnel (101): the tunnel's own idle limit, which counts bytes
    /// both ways, governs it from then on.
    tunnel: AtomicBool,
    opened: Instant,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity(Arc::new(Counts {
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            tunnel: AtomicBool::new(false),
            opened: Instant::now(),
        }))
    }

    /// A request arrived; the returned guard ends it when dropped with its response body.
    pub(super) fn begin(&self) -> Busy {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        Busy(Some(self.0.clone()))
    }

    /// When the connection becomes closable if nothing happens: `None` while busy.
    fn deadline(&self, first_request: Duration, idle: Duration) -> Option<Instant> {
        if self.0.in_flight.load(Ordering::Acquire) > 0 || self.0.tunnel.load(Ordering::Acquire) {
            return None;
        }
        if self.0.requests.load(Ordering::Relaxed) == 0 {
            return Some(self.0.opened + first_request);
        }
        let done = Duration::from_millis(self.0.last_done_ms.load(Ordering::Relaxed));
        Some(self.0.opened + done + idle)
    }
}

/// One request in flight, until its response body is gone.
pub(super) struct Busy(Option<Arc<Counts>>);

impl Busy {
    /// Hands the request's place in flight to its response body, which gives it up once sent
    /// or dropped; a `101` makes the connection a tunnel.
    pub(super) fn answered(mut self, response: Response<GatewayBody>) -> Response<GatewayBody> {
        let counts = self.0.take().expect("a request is answered once");
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            counts.tunnel.store(true, Ordering::Release);
        }
        response.map(|body| body.on_finished(counts))
    }
}

impl Drop for Busy {
    /// The request was dropped unanswered (its connection closed).
    fn drop(&mut self) {
        if let Some(counts) = self.0.take() {
            counts.done();
        }
    }
}

impl Counts {
    /// A request is no longer in flight.
    fn done(&self) {
        let done = self.opened.elapsed().as_millis() as u64;
        self.last_done_ms.fetch_max(done, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Finished for Counts {
    fn finished(&self, _: &crate::body::BodyEnd) {
        self.done();
    }
}

/// A socket that reads end-of-stream once its connection has been idle past its deadline.
pub(super) struct IdleClose<S> {
    inner: S,
    activity: Activity,
    first_request: Duration,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    closed: bool,
}

impl<S> IdleClose<S> {
    pub(super) fn new(
        inner: S,
        activity: Activity,
        first_request: Duration,
        idle: Duration,
    ) -> IdleClose<S> {
        let first = activity.0.opened + first_request;
        IdleClose {
            inner,
            activity,
            first_request,
            idle,
            timer: Box::pin(tokio::time::sleep_until(first)),
            closed: false,
        }
    }

    /// Whether the idle deadline has passed; re-arms the timer otherwise, so that the task is
    /// woken when it might.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let Some(deadline) = self.activity.deadline(self.first_request, self.idle) else {
                // Busy: the timer is left as it is (re-arming it on every read would cost a
                // timer-wheel update per request), unless it already fired; then it looks
                // again after one idle period.
                if self.timer.is_elapsed() {
                    self.timer.as_mut().reset(Instant::now() + self.idle);
                    let _ = self.timer.as_mut().poll(cx);
                }
                return false;
            };
            if deadline <= Instant::now() {
                return true;
            }
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleClose<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending if self.idle_expired(cx) => {
                self.closed = true;
                ::metrics::counter!(metrics::IDLE_CONNECTIONS_CLOSED).increment(1);
                // End of stream: hyper closes the connection as if the client had.
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleClose<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
