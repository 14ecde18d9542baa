//! The client service under the stack: its types, and the default one.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use tower::util::BoxCloneSyncService;

use crate::BoxError;

#[cfg(feature = "rustls")]
mod rustls;
mod timed;

#[cfg(feature = "rustls")]
pub use rustls::default_http_client;
pub use timed::{AttemptDeadline, AttemptDeadlineLayer, AttemptTimeout, DeadlineFuture, TimedBody};

/// The response body type of [`HttpClient`] and of
/// [`TogetherClient::service`](crate::TogetherClient::service).
pub type HttpBody = UnsyncBoxBody<Bytes, BoxError>;

/// A type-erased HTTP client service with `String` request bodies.
pub type HttpClient = BoxCloneSyncService<Request<String>, Response<HttpBody>, BoxError>;

/// The default per-attempt timeout of [`default_http_client`]: 10 minutes
/// (long completions take minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
