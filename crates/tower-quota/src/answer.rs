//! The response body of [`RateLimit`](crate::RateLimit): the inner body's
//! frames passed through as they come, read on the way for the answer's
//! token usage when a quota settles by it.

use std::fmt;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::engine::{Draw, Engine};
use crate::usage::UsageScan;

pin_project! {
    /// The body of a response that went through [`RateLimit`](crate::RateLimit).
    ///
    /// Frames pass through untouched and unbuffered: a stream's first event
    /// reaches the caller when the server sends it. When a quota of the
    /// request is [reconciled](crate::Charging::Reconciled), the body is
    /// read on the way for its last `"usage"` object (a JSON answer's, or
    /// a stream's usage event), in bounded memory; at its end (or when it
    /// is dropped) the charge is settled by it. A body cut before any usage
    /// keeps the estimate.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        settlement: Option<Box<Settlement>>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, settlement: Option<Box<Settlement>>) -> Self {
        ResponseBody { inner, settlement }
    }

    /// The inner body (a settlement still due is made now, by what was read).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("settling", &self.settlement.is_some())
            .finish()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(scan) = this.settlement.as_mut().map(|s| &mut s.scan)
                    && let Some(data) = frame.data_ref()
                {
                    let mut slices = [IoSlice::new(&[]); 16];
                    let n = data.chunks_vectored(&mut slices);
                    let seen: usize = slices[..n].iter().map(|s| s.len()).sum();
                    if seen == data.remaining() {
                        for slice in &slices[..n] {
                            scan.feed(slice);
                        }
                    } else {
                        // A buffer that shows only part of itself: what is
                        // read would be a guess, so the estimate stays.
                        scan.lose();
                    }
                }
            }
            // The end: settle now, so queued requests need not wait for the drop.
            None => drop(this.settlement.take()),
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a response head announces a stream of server-sent events.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().as_bytes();
            v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream")
        })
}

/// What is due when an answer's body ends: its usage settled on the
/// reconciled cells.
pub(crate) struct Settlement {
    pub(crate) engine: Arc<Engine>,
    pub(crate) settle: Vec<Draw>,
    pub(crate) scan: UsageScan,
}

impl Drop for Settlement {
    fn drop(&mut self) {
        if let Some(used) = self.scan.found() {
            self.engine.settle(&self.settle, used);
        }
    }
}
