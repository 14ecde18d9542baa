//! Per-route, per-key GCRA quotas for HTTP clients built on tower: callers
//! wait their turn (FIFO) instead of meeting 429s.
//!
//! [`RateLimitLayer`] matches each request to a [`Route`] (method and path
//! pattern), draws on the route's [`Quota`]s (requests per period, tokens per
//! period, optionally per model or per API key), and holds the request until
//! every quota has room. Server feedback (a 429, a `retry-after`, an
//! `x-ratelimit-remaining: 0` with a reset) holds the route for every queued
//! caller until the server's hint passes.
//!
//! The GCRA engine is [governor]; time comes from tokio, so tests run under
//! `tokio::time::pause()`.
//!
//! # Example
//!
//! ```
//! use http::{Method, Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_quota::{KeyBy, Limits, Quota, RateLimitLayer, Route};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower_quota::BoxError> {
//! let limits = Limits::builder()
//!     // 600/min is paced as one request every 100 ms (burst 1), 1% under the rate.
//!     .quota("chat", Quota::new("600/min".parse()?).keyed_by(KeyBy::model()))
//!     .quota("tokens", Quota::new("180000 tokens/min".parse()?))
//!     .route(Route::new(Method::POST, "/v1/chat/completions").quota("chat").quota("tokens"))
//!     .build()?;
//!
//! let client = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limits))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("{}")))
//!     }));
//!
//! let start = tokio::time::Instant::now();
//! for _ in 0..3 {
//!     let req = Request::post("/v1/chat/completions")
//!         .body(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_string())?;
//!     client.clone().oneshot(req).await?;
//! }
//! // The 1st went at once, the 2nd and 3rd one interval (100 ms / 0.99) apart.
//! assert!(start.elapsed() >= std::time::Duration::from_millis(202));
//! # Ok(())
//! # }
//! ```
//!
//! # Streams and token usage
//!
//! Responses come back as [`ResponseBody`]: the inner body's frames pass
//! through as they arrive (a server-sent event stream is never buffered).
//! A token quota charges its estimate at admission; with
//! [`Charging::Reconciled`] the answer's `usage` (a JSON body's, or a
//! stream's usage event) settles it when the body ends: an over-estimate
//! is refunded and queued callers go sooner.
//!
//! # Metrics (feature `metrics`)
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade, so any exporter
//! works; without the feature nothing is recorded and nothing is paid.
//!
//! Handles are registered once (per route when the layer is built, per
//! cell when it is made), so recording is an atomic add: install the
//! recorder (your exporter) before building the layer.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `tower_quota_grants_total` | counter | `route` | requests granted |
//! | `tower_quota_wait_seconds` | histogram | `route` | time from admission to grant |
//! | `tower_quota_refused_total` | counter | `route`, `reason` (`max_wait`, `cost_too_high`, `store_unavailable`) | requests failed fast |
//! | `tower_quota_queue_depth` | gauge | `quota`, `key` | requests waiting on the cell |
//! | `tower_quota_hold_seconds` | histogram | `quota`, `key` | each hold a server's answer put on the cell (its count is the number of holds) |
//! | `tower_quota_pace` | gauge | `quota`, `key` | the units per second the cell paces at (static or learned, after the margin) |
//! | `tower_quota_pace_source` | gauge | `quota`, `key`, `source` (`static`, `start`, `saved`, `header`, `probe`) | 1 on where the pace in force comes from, 0 on the other sources the cell can have (a static cell has only `static`) |
//! | `tower_quota_decided_locally_total` | counter | | decisions made locally because the shared store failed |
//!
//! `key` is the cell's key: a model name (keyed by a body field) as it
//! is, a header's value (an API key, say) only as the hash the quota keys
//! by, empty for an unkeyed quota.
//!
//! # Configuration from TOML
//!
//! [`Limits::from_toml`] reads the same configuration from a file; see
//! [`LimitsFile`] for the format.
//!
//! # Defaults
//!
//! - Request quotas have **burst 1**: a strict server (Together enforces per
//!   second) accepts evenly paced requests, not a minute's worth at once.
//! - Every quota runs a **safety margin** (1%) under its rate, because
//!   scheduling and network jitter turn exact pacing at the limit into
//!   occasional 429s against a strict sliding window.
//!
//! [governor]: https://docs.rs/governor
#![forbid(unsafe_code)]

pub mod adaptive;
mod answer;
mod body;
mod config;
mod cost;
mod engine;
pub mod error;
mod fields;
pub mod future;
mod layer;
mod learn;
mod metrics;
mod rate;
mod route;
mod service;
pub mod shared;
mod snapshot;
mod usage;

pub use adaptive::{Adaptive, PaceSource, RateHeaders};
pub use answer::ResponseBody;
pub use body::PeekBody;
#[cfg(feature = "toml")]
pub use config::{
    AUTO_START, AUTO_START_TOKENS, HeadersFile, LearnFile, LimitsFile, OverrideFile, QuotaFile,
    RateFile, RouteFile, UnmatchedFile,
};
pub use config::{
    Charging, DEFAULT_CATCH_UP, DEFAULT_HOLD, DEFAULT_MAX_HOLD, DEFAULT_SAFETY_MARGIN,
    InvalidConfig, LimitRow, Limits, LimitsBuilder, Quota, Route, Unmatched,
};
pub use cost::{Cost, CostFn, FieldsFn, KeyBy, TokenEstimate};
pub use fields::BodyFields;
pub use layer::RateLimitLayer;
pub use rate::{Rate, RateParseError, parse_duration};
pub use service::RateLimit;
pub use shared::{
    OnStoreFailure, PaceNews, SharedCell, SharedDecision, SharedNews, SharedOptions, SharedStore,
    SharingStats,
};
pub use snapshot::{CellSnapshot, Snapshot};

/// The error type of [`RateLimit`]: errors of this crate (see [`error`]) or of the inner service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
