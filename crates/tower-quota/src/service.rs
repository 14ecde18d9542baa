use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::body::PeekBody;
use crate::config::Limits;
use crate::engine::{Admission, Ask, Engine, Few};
use crate::fields::BodyFields;
use crate::future::{Feedback, ResponseFuture};
use crate::{BoxError, ResponseBody, Snapshot};

/// Waits for each request's quotas before sending it; see the [crate docs](crate).
///
/// # Backpressure
///
/// `poll_ready` is always ready: the route, and so the quota, is only known
/// from the request. The wait happens in the response future, which then
/// drives its own clone of the inner service to readiness and calls it, so
/// an inner service is never called unready and no inner capacity (a
/// connection, a concurrency permit) is held while a request waits for quota.
/// `call` itself never polls or calls the inner service (tower's contract:
/// `call` may run off the task), so a request is sent from its future, under
/// whatever span that future runs in.
///
/// # Clone
///
/// Clones share the quotas (and the queues). The inner service is cloned once
/// per request.
///
/// # Cancellation
///
/// Dropping a response future while it waits leaves the queue and consumes
/// nothing; the next caller moves up.
pub struct RateLimit<S> {
    inner: S,
    engine: Arc<Engine>,
}

impl<S> RateLimit<S> {
    /// Wraps `inner` with its own quotas. Use [`RateLimitLayer`](crate::RateLimitLayer)
    /// to share quotas between several services.
    pub fn new(inner: S, limits: Limits) -> Self {
        Self::from_engine(inner, Arc::new(Engine::new(limits, None)))
    }

    pub(crate) fn from_engine(inner: S, engine: Arc<Engine>) -> Self {
        RateLimit { inner, engine }
    }

    /// The state of the quotas now, for metrics.
    pub fn snapshot(&self) -> Snapshot {
        self.engine.snapshot()
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

    /// Queues a request on route `route_index`'s cells, reading its head
    /// and body for the keys and costs (`call` comes here only when a
    /// quota reads the request; otherwise it admits without taking it apart).
    fn admit<B: PeekBody>(
        &self,
        route_index: usize,
        req: Request<B>,
    ) -> (Request<B>, Result<Admission, BoxError>) {
        let engine = &self.engine;
        let route = engine.route(route_index);
        let (parts, body) = req.into_parts();
        let bytes = if route.needs_body {
            body.peek_bytes()
        } else {
            None
        };
        let fields = bytes.and_then(|b| BodyFields::parse(b, &route.body_fields));
        let asks = Few::from_each(&route.quotas, |&quota| {
            let q = &engine.limits.quotas[quota];
            let key = q
                .key
                .as_ref()
                .and_then(|k| k.key_of(&parts, fields.as_ref()));
            let cost = q.cost.of(&parts, fields.as_ref(), bytes);
            let cost = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
            Ask { quota, key, cost }
        });
        let admission = engine.admit(route_index, &asks);
        (Request::from_parts(parts, body), admission)
    }

    /// The response future for what admission decided.
    #[inline]
    fn admitted<B>(
        &self,
        admission: Result<Admission, BoxError>,
        inner: S,
        req: Request<B>,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        match admission {
            Ok(Admission::Pass) => ResponseFuture::ready(inner, req, None),
            Ok(Admission::Queued(id)) => {
                ResponseFuture::waiting(self.engine.clone(), id, inner, req)
            }
            Ok(Admission::Granted(cells)) => {
                let feedback = Feedback::new(self.engine.clone(), cells);
                ResponseFuture::ready(inner, req, Some(feedback))
            }
            Err(error) => ResponseFuture::failed(error),
        }
    }
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limits", &self.engine.limits)
            .finish()
    }
}

impl<S, B, ResBody> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: PeekBody,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Take the service that was (or was not) readied and leave a clone:
        // the future readies its own copy after the grant.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let engine = &self.engine;
        let Some(route_index) = engine.route_for(req.method(), req.uri().path()) else {
            return ResponseFuture::ready(inner, req, None);
        };
        let route = engine.route(route_index);
        if route.needs_parts {
            let (req, admission) = self.admit(route_index, req);
            return self.admitted(admission, inner, req);
        }
        // Every quota counts one per request, unkeyed: nothing to read.
        let admission = engine.admit(route_index, engine.plain_asks(route_index));
        self.admitted(admission, inner, req)
    }
}
