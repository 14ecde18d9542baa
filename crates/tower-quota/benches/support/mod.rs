//! What the quota bench and `examples/uncontended.rs` share: a no-op
//! service, a quota no call waits on, and the requests and limits of the
//! uncontended cases.

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Method, Request, Response};
use tower::Service;
use tower_quota::{Cost, KeyBy, Limits, Quota, Rate, Route};

/// Polls a future that must be ready at once (every path here is uncontended).
pub(crate) fn now<F: Future>(f: F) -> F::Output {
    f.now_or_never().expect("uncontended path never waits")
}

/// One request through `svc`, as a caller does it: readiness, then the call.
pub(crate) fn ready_and_call<S>(svc: &mut S, req: Request<String>) -> S::Response
where
    S: Service<Request<String>>,
    S::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    now(svc.call(req)).unwrap()
}

/// A ready service that answers an empty 200 at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Noop;

impl Service<Request<String>> for Noop {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        std::future::ready(Ok(Response::new(String::new())))
    }
}

/// A quota so generous (a billion a second) that no call ever waits.
fn huge() -> Quota {
    let billion = NonZeroU32::new(1_000_000_000).unwrap();
    Quota::new(Rate::new(billion, Duration::from_secs(1)).unwrap()).burst(billion)
}

/// A small chat body.
pub(crate) const CHAT: &str = r#"{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{"role":"user","content":"Say hi"}],"max_tokens":16}"#;

/// Issue 13's case: a 1 KB chat body (a long user message).
pub(crate) fn long_chat() -> String {
    let long = format!(
        r#"{{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{}"}}],"max_tokens":16,"temperature":0.2}}"#,
        "Summarize: the quick brown fox jumps over the lazy dog. ".repeat(16)
    );
    assert!((1000..1100).contains(&long.len()), "{}", long.len());
    long
}

/// A chat completion request with `body`.
pub(crate) fn chat(body: &str) -> Request<String> {
    Request::post("/v1/chat/completions")
        .body(body.to_owned())
        .unwrap()
}

/// One request quota on the chat route.
pub(crate) fn one_quota() -> Limits {
    Limits::builder()
        .quota("q", huge())
        .route(Route::new(Method::POST, "/v1/chat/completions").quota("q"))
        .build()
        .unwrap()
}

/// A request quota keyed by the body's model and a token quota on the chat route.
pub(crate) fn per_model_and_tokens() -> Limits {
    Limits::builder()
        .quota("q", huge().keyed_by(KeyBy::model()))
        .quota("tokens", huge().cost(Cost::Tokens(Default::default())))
        .route(
            Route::new(Method::POST, "/v1/chat/completions")
                .quota("q")
                .quota("tokens"),
        )
        .build()
        .unwrap()
}
