//! A [`tower::retry::Policy`] for HTTP clients that waits as long as the
//! server asked, backs off with jitter otherwise, and never repeats a request
//! that is not safe to repeat.
//!
//! [`RetryPolicy`] reads the wait hints servers send (`retry-after-ms`,
//! `retry-after` in every RFC 9110 form, `x-ratelimit-reset`; see [`hint`]),
//! and [`RetryLayer`] puts it in a [`tower::ServiceBuilder`] stack.
//!
//! # Example
//!
//! A server that answers 503 once, then 200: the caller only sees the 200.
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//!
//! use http::{Method, Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_retry_after::{RequestClass, RetryLayer, RetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let server = service_fn({
//!     let calls = calls.clone();
//!     move |_req: Request<String>| {
//!         let status = match calls.fetch_add(1, Ordering::SeqCst) {
//!             0 => StatusCode::SERVICE_UNAVAILABLE,
//!             _ => StatusCode::OK,
//!         };
//!         let response = Response::builder().status(status).body(String::new());
//!         async move { Ok::<_, Infallible>(response.unwrap()) }
//!     }
//! });
//!
//! let policy = RetryPolicy::builder()
//!     .max_retries(3)
//!     .backoff(Duration::from_millis(200), Duration::from_secs(5))
//!     .deadline(Duration::from_secs(30))
//!     .route_class(Method::POST, "/v1/chat/completions", RequestClass::Idempotent)
//!     .build()?;
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy))
//!     .service(server);
//!
//! let request = Request::post("/v1/chat/completions")
//!     .body(r#"{"model":"m","messages":[]}"#.to_string())?;
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # When a request is retried
//!
//! A response is retried when all of these hold:
//!
//! 1. Its status is 400 or above and either `x-should-retry: true` is set,
//!    or the status is in the retry set (408, 429, 500, 502, 503, 504 by
//!    default, see [`Builder::retry_statuses`]) and `x-should-retry: false`
//!    is not set. Other 4xx are never retried.
//! 2. The request is safe to repeat for that status (its [`RequestClass`]):
//!    idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and
//!    routes declared [`RequestClass::Idempotent`] (inference POSTs) always;
//!    other POSTs, taken to create something (a job, a file), only on 429
//!    and 503, where the server did not act, or when they carry an
//!    `Idempotency-Key`. `x-should-retry: true` does not lift this rule. The
//!    crate knows no API's paths: declare them with
//!    [`Builder::route_class`] (together-tower's preset declares the
//!    OpenAI-compatible ones).
//! 3. Its body can be replayed ([`ReplayBody`]): a streaming body is sent
//!    once.
//! 4. Retries are left ([`Builder::max_retries`], 4 by default).
//! 5. A server wait hint, if any, is at most [`Builder::max_wait_hint`]
//!    (60 s by default); a longer hint hands the response back untouched.
//! 6. The wait ends before the call's [`Builder::deadline`], if set.
//! 7. The shared retry budget ([`Builder::budget`]) can pay for it.
//!
//! A transport error (no response: refused or reset connection, timeout) is
//! retried under rules 3 to 7 when the request is
//! [`RequestClass::Idempotent`] and the error classifier
//! ([`Builder::retry_errors_if`]) says so (by default, for every error).
//!
//! # How long it waits
//!
//! The server's hint when there is one (`retry-after-ms`, else
//! `retry-after`, else `x-ratelimit-reset`; a past date means at once), plus
//! [`Builder::hint_jitter`] if set. Otherwise capped exponential backoff
//! with jitter: retry `n` (from 1) waits
//!
//! ```text
//! min(base * 2^(n-1), cap) * (1 - jitter * r),   r uniform in [0, 1)
//! ```
//!
//! which with the defaults (0.5 s, 8 s, 0.25) is about 0.5, 1, 2, 4 s. The
//! jitter comes from a [`rand::rngs::SmallRng`] shared by the policy's clones
//! ([`Builder::seed`] makes it reproducible). Waiting is
//! [`tokio::time::sleep`], so tests under paused time run instantly.
//!
//! # What the caller gets
//!
//! The first response that is not retried: the success, or after the last
//! retry the last response (a 429 or 503 with its headers and body) or the
//! last error. Nothing is swallowed or rewritten.
//!
//! # Budget
//!
//! Every call deposits into the budget and every retry withdraws from it;
//! it is shared by all clones of the policy (and of the services the layer
//! makes). The default [`TpsBudget`] allows 10 retries a second plus 20 % of
//! recent requests, so a server that is down sees a bounded share of extra
//! traffic, not `max_retries` times every call.
//!
//! # Tracing
//!
//! Each retry emits an `INFO` event "retrying request" with `method`,
//! `path`, `attempt` (the attempt about to be sent, 2 for the first retry),
//! `reason` (`status 503` or `transport error`), `delay_ms` and `source`
//! (the hint header name, or `backoff`). A decision not to retry an error
//! emits a `DEBUG` event saying why.
//!
//! # Metrics (feature `metrics`)
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade (handles
//! registered when the policy is built: install the recorder first):
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `tower_retry_retries_total` | counter | `reason` (`429`, `5xx`, `other`, `transport`) | retries decided |
//! | `tower_retry_budget_refusals_total` | counter | | retries the budget refused |
//!
//! # Panics
//!
//! The services must run inside a tokio runtime with the time driver
//! enabled, as [`tokio::time::sleep`] requires.
#![forbid(unsafe_code)]

mod backoff;
mod body;
mod builder;
mod classify;
pub mod error;
pub mod future;
mod layer;
mod metrics;
mod policy;
mod settings;

pub use body::ReplayBody;
pub use builder::{Builder, DEFAULT_RETRY_STATUSES};
pub use classify::{ClassifyError, RequestClass, RetryAllErrors};
pub use hint::{HintSource, WaitHint, parse_wait_hint};
pub use layer::{Retry, RetryLayer};
pub use limit_text::hint;
pub use policy::RetryPolicy;
pub use tower::retry::budget::{Budget, TpsBudget};

#[cfg(test)]
mod tests {
    /// Services built with the layer can be spawned and shared across threads.
    #[test]
    fn public_types_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::RetryPolicy>();
        send_sync::<crate::RetryLayer>();
        send_sync::<crate::Builder>();
        fn send<T: Send>() {}
        send::<crate::future::RetryWait>();
    }
}
