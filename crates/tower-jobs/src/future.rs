//! The response future of [`JobLimit`](crate::JobLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::body::ResponseBody;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// Passes the inner response through, or (on job routes) waits for a
    /// slot, sends the request, and reads the response for job states.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Passthrough {
            #[pin]
            fut: F,
        },
        Job {
            fut: BoxFuture<Result<Response<ResponseBody<B>>, BoxError>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn passthrough(fut: F) -> Self {
        ResponseFuture {
            state: State::Passthrough { fut },
        }
    }

    pub(crate) fn job(fut: BoxFuture<Result<Response<ResponseBody<B>>, BoxError>>) -> Self {
        ResponseFuture {
            state: State::Job { fut },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Passthrough { fut } => fut.poll(cx).map(|r| {
                r.map(|resp| resp.map(ResponseBody::inner))
                    .map_err(Into::into)
            }),
            StateProj::Job { fut } => fut.as_mut().poll(cx),
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
