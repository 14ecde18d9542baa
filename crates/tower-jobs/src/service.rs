use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::BoxError;
use crate::body::ResponseBody;
use crate::flow;
use crate::future::ResponseFuture;
use crate::handle::JobsHandle;
use crate::state::JobSlots;

/// Waits for a free job slot before each job-creating request and frees
/// slots as responses show jobs finished; see the [crate docs](crate).
///
/// Requests on routes of no [`JobKind`](crate::JobKind) pass through
/// untouched (their bodies are not buffered). Responses of job routes are
/// buffered to read their JSON and handed back as the same bytes.
///
/// # Backpressure
///
/// `poll_ready` is the inner service's. A job request is sent by its own
/// clone of the inner service, readied after the slot is granted, so no
/// inner capacity is held while a create waits for a slot.
///
/// # Clone
///
/// Clones share the slots. The inner service is cloned once per job request.
pub struct JobLimit<S> {
    inner: S,
    shared: Arc<JobSlots>,
}

impl<S> JobLimit<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<JobSlots>) -> Self {
        JobLimit { inner, shared }
    }

    /// A handle on the slots.
    pub fn handle(&self) -> JobsHandle {
        JobsHandle::new(self.shared.clone())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for JobLimit<S> {
    fn clone(&self) -> Self {
        JobLimit {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for JobLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobLimit")
            .field("inner", &self.inner)
            .field("running", &self.handle().running())
            .finish()
    }
}

impl<S, B, ResBody> Service<Request<B>> for JobLimit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Clone + Default + Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.shared.route(req.method(), req.uri().path()) {
            None => ResponseFuture::passthrough(self.inner.call(req)),
            Some((kind, role)) => {
                let svc = self.inner.clone();
                ResponseFuture::job(Box::pin(flow::run(
                    self.shared.clone(),
                    kind,
                    role,
                    svc,
                    req,
                )))
            }
        }
    }
}
