//! One attempt bounded as a whole: from the call to the body's last byte.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::BoxError;

/// An attempt (head and body) took longer than its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimeout(pub Duration);

impl fmt::Display for AttemptTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the attempt took longer than {:?} (head and body)",
            self.0
        )
    }
}

impl std::error::Error for AttemptTimeout {}

/// Bounds each attempt as a whole: its response body fails with
/// [`AttemptTimeout`] once `limit` has passed since the call (put it under a
/// head timeout, as [`default_http_client`](crate::default_http_client)
/// does, for a client of your own).
#[derive(Debug, Clone, Copy)]
pub struct AttemptDeadlineLayer(Duration);

impl AttemptDeadlineLayer {
    /// Attempts bounded by `limit`, head and body.
    pub fn new(limit: Duration) -> Self {
        AttemptDeadlineLayer(limit)
    }
}

impl<S> Layer<S> for AttemptDeadlineLayer {
    type Service = AttemptDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptDeadline {
            inner,
            limit: self.0,
        }
    }
}

/// The service of [`AttemptDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct AttemptDeadline<S> {
    inner: S,
    limit: Duration,
}

impl<S, R, B> Service<R> for AttemptDeadline<S>
where
    S: Service<R, Response = Response<B>>,
{
    type Response = Response<TimedBody<B>>;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        DeadlineFuture {
            inner: self.inner.call(req),
            deadline: Instant::now() + self.limit,
            limit: self.limit,
        }
    }
}

pin_project! {
    /// The future of [`AttemptDeadline`].
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        deadline: Instant,
        limit: Duration,
    }
}

impl<F, B, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TimedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        let (deadline, limit) = (*this.deadline, *this.limit);
        Poll::Ready(Ok(res.map(|inner| TimedBody {
            inner,
            sleep: tokio::time::sleep_until(deadline),
            limit,
        })))
    }
}

pin_project! {
    /// A body that fails with [`AttemptTimeout`] once its attempt's deadline passes.
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        limit: Duration,
    }
}

impl<B> Body for TimedBody<B>
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
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(this.sleep.poll(cx));
        Poll::Ready(Some(Err(Box::new(AttemptTimeout(*this.limit)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
