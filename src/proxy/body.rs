//! The proxy's bodies: the slow-body guard, and request-body errors marked as the client's.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use crate::vocabulary::{BoxBody, BoxError};

/// A body that fails when its peer pauses longer than `idle` between two frames.
pub fn with_idle_timeout<B>(body: B, idle: Duration) -> BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    IdleTimeout {
        inner: body,
        idle,
        sleep: Box::pin(tokio::time::sleep(idle)),
    }
    .boxed_unsync()
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

/// The client's request body, with the slow-body guard and its errors marked as the client's.
pub fn client_body<B>(body: B, idle: Duration) -> BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    with_idle_timeout(body, idle)
        .map_err(|e| Box::new(ClientBodyError(e)) as BoxError)
        .boxed_unsync()
}

pin_project_lite::pin_project! {
    struct IdleTimeout<B> {
        #[pin]
        inner: B,
        idle: Duration,
        sleep: Pin<Box<Sleep>>,
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(this.sleep.as_mut().poll(cx));
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
        let mut body = with_idle_timeout(ChannelBody(rx), Duration::from_secs(1));
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        tokio::time::advance(Duration::from_millis(900)).await;
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        // Nothing more arrives: after a full idle period the body fails.
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTimeout>());
    }
}
