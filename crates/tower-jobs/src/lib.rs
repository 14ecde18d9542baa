//! Caps on jobs running on the server (fine-tunes, batches), not on requests
//! in flight: a job-creating request waits (FIFO) for a free slot.
//! A server that runs long jobs (fine-tunes, batches) often caps how many
//! may be non-terminal at once and refuses more (409). [`JobLimitLayer`]
//! keeps a client under such a cap: each [`JobKind`] has `cap` slots; a
//! create waits, FIFO, for a free slot; the slot is bound to the job id of
//! the create's response and freed when a response through the layer shows
//! that job terminal (a `GET` of it, or a list), when a cancel of it
//! succeeds, or at once when the create fails. [`JobsHandle`] shows which
//! jobs hold slots and frees one by hand.
//!
//! Nothing here is specific to one API: a [`JobKind`] names the routes
//! (method and path pattern, `{id}` for the job id) and the JSON pointers to
//! the id, the status and the list's array.
//!
//! # Example
//!
//! ```
//! use std::num::NonZeroU32;
//! use std::sync::{Arc, Mutex};
//!
//! use bytes::Bytes;
//! use http::{Method, Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_jobs::{JobLimitLayer, JobKind};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower_jobs::BoxError> {
//! let layer = JobLimitLayer::builder()
//!     .kind(
//!         JobKind::new("train", NonZeroU32::new(1).unwrap(), Method::POST, "/v1/jobs")
//!             .get_route("/v1/jobs/{id}")
//!             .list_route("/v1/jobs", "/data")
//!             .cancel_route(Method::POST, "/v1/jobs/{id}/cancel")
//!             .terminal(["completed", "failed", "cancelled"]),
//!     )
//!     .build()?;
//! let jobs = layer.handle();
//!
//! // A tiny job server: every job is "running" until asked about twice.
//! let asked = Arc::new(Mutex::new(0));
//! let client = ServiceBuilder::new().layer(layer).service(service_fn(move |req: Request<String>| {
//!     let asked = asked.clone();
//!     async move {
//!         let body = match (req.method(), req.uri().path()) {
//!             (&Method::POST, "/v1/jobs") => r#"{"id":"job-1","status":"running"}"#,
//!             _ => {
//!                 let mut n = asked.lock().unwrap();
//!                 *n += 1;
//!                 if *n < 2 { r#"{"id":"job-1","status":"running"}"# }
//!                 else { r#"{"id":"job-1","status":"completed"}"# }
//!             }
//!         };
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
//!     }
//! }));
//!
//! let create = || Request::post("/v1/jobs").body(String::from(r#"{"model":"m"}"#)).unwrap();
//! client.clone().oneshot(create()).await?;
//! assert_eq!(jobs.running(), [("train".to_string(), "job-1".to_string())]);
//! assert_eq!(jobs.available("train"), Some(0)); // a second create would wait
//!
//! let get = || Request::get("/v1/jobs/job-1").body(String::new()).unwrap();
//! client.clone().oneshot(get()).await?; // still running: the slot is kept
//! client.clone().oneshot(get()).await?; // completed: the slot is freed
//! assert_eq!(jobs.available("train"), Some(1));
//! # Ok(())
//! # }
//! ```
//!
//! # Reconciling
//!
//! Jobs started by another process, or before a restart, count against the
//! server's cap too. With
//! [`reconcile_on_start`](JobLimitBuilder::reconcile_on_start), the
//! first create of a kind first `GET`s the kind's list route (on the create
//! request's scheme and authority, with its headers, such as
//! `Authorization`) and counts every non-terminal job it does not know. A
//! create answered with the conflict status (409) reconciles the same way,
//! then waits for a slot to free or for the
//! [poll interval](JobLimitBuilder::poll_interval), reconciles and
//! tries again, until the
//! [maximum wait](JobLimitBuilder::max_conflict_wait); then the 409
//! goes back to the caller. Any list response through the layer reconciles
//! too. Jobs counted this way hold slots until a response shows them
//! terminal, like any other. Counted jobs beyond the cap take the next slots
//! freed.
//!
//! # Requirements
//!
//! Request bodies must be `Clone` (a create is sent again after a 409) and
//! `Default` (the body of the list `GET`), e.g. `String` or
//! `http_body_util::Full<Bytes>`. Responses of job routes are buffered to
//! read their JSON and handed back, same bytes, as a [`ResponseBody`];
//! other responses stream through untouched. The inner service, its future
//! and bodies must be `Send + 'static`.
//!
//! # Cancellation
//!
//! - A create dropped while it waits for a slot leaves the queue and
//!   consumes nothing.
//! - A create dropped after it was sent keeps its slot: the job may exist on
//!   the server. The slot is freed by the next reconcile (a list whose
//!   request was sent after the create: the job, if any, is counted by id
//!   instead), or after [`orphan_timeout`](JobLimitBuilder::orphan_timeout)
//!   if set. [`JobsHandle::orphaned`] counts such slots.
//! - A create whose 2xx body fails to arrive is treated the same way.
//!
//! # Metrics (feature `metrics`)
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade (handles
//! registered when the layer is built: install the recorder first):
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `tower_jobs_slots_in_use` | gauge | `kind` | slots held by jobs running or being created |
//! | `tower_jobs_conflicts_absorbed_total` | counter | `kind` | creates the server refused with its conflict status (its cap reached) that waited and went again |
//!
//! # Events
//!
//! `tracing` events (target `tower_jobs`) on slot acquired, bound, released
//! (with the reason), on the server's conflict answers and on reconciles.
#![forbid(unsafe_code)]

mod body;
pub mod error;
mod flow;
pub mod future;
mod handle;
mod kind;
mod layer;
mod metrics;
mod service;
mod state;

pub use body::ResponseBody;
pub use error::InvalidConfig;
pub use handle::JobsHandle;
pub use kind::{DEFAULT_TERMINAL, JobKind};
pub use layer::{DEFAULT_MAX_CONFLICT_WAIT, DEFAULT_POLL_INTERVAL, JobLimitBuilder, JobLimitLayer};
pub use service::JobLimit;

/// The error type of [`JobLimit`]: errors of the inner service or of
/// reading a response body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
