//! A scripted server that records what it was sent, and small builders.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_retry_after::{Builder, RequestClass, Retry, RetryLayer, RetryPolicy};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type Reply = Result<Response<String>, io::Error>;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Paused time since the server was made.
    pub(crate) at: Duration,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// A request body the server can read back as bytes.
pub(crate) trait Record: Send + 'static {
    fn bytes(self) -> BoxFuture<Vec<u8>>;
}

impl Record for String {
    fn bytes(self) -> BoxFuture<Vec<u8>> {
        Box::pin(async move { self.into_bytes() })
    }
}

impl Record for Vec<u8> {
    fn bytes(self) -> BoxFuture<Vec<u8>> {
        Box::pin(async move { self })
    }
}

impl Record for Bytes {
    fn bytes(self) -> BoxFuture<Vec<u8>> {
        Box::pin(async move { self.to_vec() })
    }
}

impl Record for Full<Bytes> {
    fn bytes(self) -> BoxFuture<Vec<u8>> {
        Box::pin(async move { self.collect().await.unwrap().to_bytes().to_vec() })
    }
}

impl Record for BoxBody<Bytes, io::Error> {
    fn bytes(self) -> BoxFuture<Vec<u8>> {
        Box::pin(async move { self.collect().await.unwrap().to_bytes().to_vec() })
    }
}

/// Answers the `n`th request (from 0) with `respond(n)` and records it.
#[derive(Clone)]
pub(crate) struct Server {
    start: Instant,
    log: Arc<Mutex<Vec<Sent>>>,
    respond: Arc<dyn Fn(usize) -> Reply + Send + Sync>,
}

impl Server {
    pub(crate) fn new(respond: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        Server {
            start: Instant::now(),
            log: Arc::default(),
            respond: Arc::new(respond),
        }
    }

    pub(crate) fn sent(&self) -> Vec<Sent> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Paused time between consecutive requests.
    pub(crate) fn gaps(&self) -> Vec<Duration> {
        let sent = self.sent();
        sent.windows(2).map(|w| w[1].at - w[0].at).collect()
    }
}

impl<B: Record> Service<Request<B>> for Server {
    type Response = Response<String>;
    type Error = io::Error;
    type Future = BoxFuture<Reply>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        let at = self.start.elapsed();
        let (parts, body) = req.into_parts();
        Box::pin(async move {
            let body = body.bytes().await;
            let n = {
                let mut log = this.log.lock().unwrap();
                log.push(Sent {
                    at,
                    method: parts.method,
                    uri: parts.uri,
                    headers: parts.headers,
                    body,
                });
                log.len() - 1
            };
            (this.respond)(n)
        })
    }
}

/// A response with this status, these headers and the body `status {code}`.
pub(crate) fn reply(status: u16, headers: &[(&str, &str)]) -> Reply {
    let mut res = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (name, value) in headers {
        res = res.header(*name, *value);
    }
    Ok(res.body(format!("status {status}")).unwrap())
}

pub(crate) fn reset() -> Reply {
    Err(io::Error::from(io::ErrorKind::ConnectionReset))
}

/// Reproducible jitter, none at all, no budget, no route declared.
pub(crate) fn bare_policy() -> Builder {
    RetryPolicy::builder().seed(1).jitter(0.0).no_budget()
}

/// Defaults for tests: reproducible jitter, none at all, no budget, and
/// an OpenAI-like route table (as together-tower's preset declares it):
/// inference POSTs idempotent, job and file POSTs creating.
pub(crate) fn policy() -> Builder {
    let inference = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];
    let creating = ["/v1/fine-tunes", "/v1/batches", "/v1/files"];
    let builder = bare_policy();
    let builder = creating.iter().fold(builder, |b, p| {
        b.route_class(Method::POST, p, RequestClass::CreatesResource)
    });
    inference.iter().fold(builder, |b, p| {
        b.route_class(Method::POST, p, RequestClass::Idempotent)
    })
}

pub(crate) fn client<C: Clone>(policy: RetryPolicy<C>, server: &Server) -> Retry<Server, C> {
    RetryLayer::new(policy).layer(server.clone())
}

pub(crate) fn request(method: Method, uri: &str) -> Request<String> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(String::from("{}"))
        .unwrap()
}

pub(crate) fn chat() -> Request<String> {
    request(Method::POST, "/v1/chat/completions")
}

/// Sends `req` through a fresh client with `policy` over `server`.
pub(crate) async fn send<C, B>(policy: RetryPolicy<C>, server: &Server, req: Request<B>) -> Reply
where
    C: Clone + tower_retry_after::ClassifyError<io::Error>,
    B: Record + tower_retry_after::ReplayBody,
{
    client(policy, server).oneshot(req).await
}

pub(crate) fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

pub(crate) fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}
