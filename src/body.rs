//! The one body type requests and responses travel in ([`GatewayBody`]): bytes the gateway
//! holds, or a peer's stream under the slow-body guard.
//!
//! A concrete enum rather than a boxed trait object: a passthrough request carries two bodies
//! (the client's request, the upstream's answer), and boxing each, its timer and the guard that
//! tells the connection when the answer has been sent cost several allocations and a timer-wheel
//! update per request. Here a body that never waits never touches the timer, and nothing is
//! allocated for it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Errors a body can fail with, boxed so hyper's and the gateway's errors travel the same way.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Told once when a body has been sent to its end or dropped: how a connection knows that an
/// answer is no longer in flight (its idle clock starts then), and when the access line of a
/// response is written (with how it ended).
pub trait Finished: Send + Sync {
    /// The body is gone, after `end`.
    fn finished(&self, end: &BodyEnd);
}

/// How a body ended, as the access line reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyEnd {
    /// Bytes of data sent.
    pub bytes: u64,
    /// How it ended.
    pub outcome: EndOutcome,
}

/// The `outcome` of a response's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    /// Sent to its end.
    Ok,
    /// The upstream's body broke off (a reset, a short body, malformed chunks).
    UpstreamBodyError,
    /// The client went away before the end.
    ClientClosed,
    /// The upstream paused longer than the body read timeout.
    Timeout,
}

impl EndOutcome {
    /// Every outcome, for registering each metric series at 0.
    pub const ALL: [EndOutcome; 4] = [
        EndOutcome::Ok,
        EndOutcome::UpstreamBodyError,
        EndOutcome::ClientClosed,
        EndOutcome::Timeout,
    ];

    /// The name in the access line and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            EndOutcome::Ok => "ok",
            EndOutcome::UpstreamBodyError => "upstream_body_error",
            EndOutcome::ClientClosed => "client_closed",
            EndOutcome::Timeout => "timeout",
        }
    }
}

/// A request or response body: complete bytes, or a peer's stream with the slow-body guard.
pub struct GatewayBody {
    inner: Inner,
    /// Told when the body is dropped (after its last frame, or cut short): the connection's idle
    /// tracking and the access line. A fixed pair, so nothing is allocated for them.
    finished: [Option<Arc<dyn Finished>>; 2],
    /// Data bytes sent so far.
    sent: u64,
    /// How the stream failed, if it did.
    failed: Option<EndOutcome>,
    /// The stream said it had no more frames.
    ended: bool,
}

enum Inner {
    Full(Option<Bytes>),
    Stream(Guarded<Incoming>, Side),
}

/// Whose stream a body is: a failure of the client's request body is marked as the client's, so
/// that the upstream error it causes is answered as the client's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

impl GatewayBody {
    /// A complete in-memory body.
    pub fn full(bytes: Bytes) -> GatewayBody {
        GatewayBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            finished: [None, None],
            sent: 0,
            failed: None,
            ended: false,
        }
    }

    /// The client's request body: fails with [`BodyTimeout`] when the client pauses longer
    /// than `idle` between two frames, and every failure is a [`ClientBodyError`].
    pub fn client(body: Incoming, idle: Duration) -> GatewayBody {
        GatewayBody {
            inner: Inner::Stream(Guarded::new(body, idle), Side::Client),
            finished: [None, None],
            sent: 0,
            failed: None,
            ended: false,
        }
    }

    /// An upstream's response body: fails with [`BodyTimeout`] when the upstream pauses longer
    /// than `idle` between two frames.
    pub fn upstream(body: Incoming, idle: Duration) -> GatewayBody {
        GatewayBody {
            inner: Inner::Stream(Guarded::new(body, idle), Side::Upstream),
            finished: [None, None],
            sent: 0,
            failed: None,
            ended: false,
        }
    }

    /// This body, telling `finished` when it has been sent or dropped.
    pub fn on_finished(mut self, finished: Arc<dyn Finished>) -> GatewayBody {
        // Two observers at most: the connection's idle tracking and the access line.
        if let Some(slot) = self.finished.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(finished);
        }
        self
    }

    /// How the body ended, when it is dropped now.
    fn end(&self) -> BodyEnd {
        let outcome = match self.failed {
            Some(failed) => failed,
            None if self.ended || self.is_end_stream() => EndOutcome::Ok,
            None => EndOutcome::ClientClosed,
        };
        BodyEnd {
            bytes: self.sent,
            outcome,
        }
    }
}

impl Drop for GatewayBody {
    fn drop(&mut self) {
        if self.finished.iter().all(Option::is_none) {
            return;
        }
        let end = self.end();
        for finished in self.finished.iter_mut().filter_map(Option::take) {
            finished.finished(&end);
        }
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match &mut this.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream(stream, side) => {
                let side = *side;
                Pin::new(stream).poll_frame(cx).map_err(|error| match side {
                    Side::Client => Box::new(ClientBodyError(error)) as BoxError,
                    Side::Upstream => error,
                })
            }
        };
        match &frame {
            Poll::Ready(Some(Ok(frame))) => {
                this.sent += frame.data_ref().map_or(0, |data| data.len() as u64);
            }
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Err(error))) => {
                this.failed = Some(if error.is::<BodyTimeout>() {
                    EndOutcome::Timeout
                } else {
                    EndOutcome::UpstreamBodyError
                });
            }
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(bytes) => bytes.is_none(),
            Inner::Stream(stream, _) => stream.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Stream(stream, _) => stream.size_hint(),
        }
    }
}

/// The peer stopped sending a body for longer than `body_read_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("body stalled for longer than the body read timeout")]
pub struct BodyTimeout;

/// A request body failed on the client's side (stalled, malformed chunking, reset). Marking it
/// lets the upstream error that results be answered as the client's fault, not the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
pub struct ClientBodyError(#[source] pub BoxError);

impl ClientBodyError {
    /// Whether the body stalled (408) rather than broke (400).
    pub fn is_timeout(&self) -> bool {
        self.0.is::<BodyTimeout>()
    }
}

/// A stream that fails when its peer pauses longer than `idle` between two frames. The timer
/// is made the first time the stream waits and armed each time it waits after a frame: a body
/// that arrives whole (most do) never registers one.
struct Guarded<B> {
    inner: B,
    idle: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current wait (cleared by every frame).
    armed: bool,
}

impl<B> Guarded<B> {
    /// `inner` under the slow-body guard.
    fn new(inner: B, idle: Duration) -> Guarded<B> {
        Guarded {
            inner,
            idle,
            sleep: None,
            armed: false,
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.idle;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    sleep.as_mut().reset(deadline);
                    this.armed = true;
                }
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyTimeout.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::mpsc;

    /// A body fed by a channel, so the test decides when frames arrive.
    struct ChannelBody(mpsc::Receiver<Bytes>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_body_times_out_and_a_steady_one_does_not() {
        let (tx, rx) = mpsc::channel(4);
        let mut body = Guarded::new(ChannelBody(rx), Duration::from_secs(1));
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        // Each wait gets the whole idle period, however long the body has been flowing.
        for _ in 0..3 {
            let sent = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(900)).await;
                sent.send(Bytes::from_static(b"b")).await.unwrap();
            });
            assert!(body.frame().await.unwrap().is_ok());
        }
        // Nothing more arrives: after a full idle period the body fails.
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTimeout>());
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    struct Count(AtomicUsize);

    impl Finished for Count {
        fn finished(&self, _: &BodyEnd) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn full_bodies_report_their_length_and_tell_when_they_are_gone() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let body = GatewayBody::full(Bytes::from_static(b"{}")).on_finished(count.clone());
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{}");
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let empty = GatewayBody::full(Bytes::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
