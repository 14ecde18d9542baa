//! Which of an OpenAI-compatible API's requests are safe to send again:
//! the route classes the retry policy is given (tower-retry-after knows no
//! API's paths).

use http::Method;
use tower_retry_after::{Builder, RequestClass};

use super::Preset;
use crate::retry::ErrorFilter;

/// The inference routes of OpenAI-compatible APIs: a POST here is
/// [`RequestClass::Idempotent`] (a second answer costs tokens, not
/// correctness), so it is retried on every retryable status and on
/// transport errors.
pub const INFERENCE_ROUTES: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/images/generations",
    "/v1/rerank",
    "/v1/audio",
    "/v1/moderations",
];

/// The routes of OpenAI-compatible APIs that create jobs and files (and
/// their subpaths, such as `/v1/batches/{id}/cancel`): a POST here is
/// [`RequestClass::CreatesResource`], sent again only where the server
/// certainly did not act (429, 503) or with an `Idempotency-Key`.
pub const CREATING_ROUTES: &[&str] = &[
    "/v1/fine-tunes",
    "/v1/fine_tuning",
    "/v1/batches",
    "/v1/files",
];

impl Preset {
    /// The route classes for the retry policy: the inference routes and
    /// every POST route of this preset (a route it rate-limits is one it
    /// sends inference to) as [`RequestClass::Idempotent`], its job routes
    /// and [`CREATING_ROUTES`] as [`RequestClass::CreatesResource`]. Job
    /// routes come first, so a job path never reads as inference.
    pub fn retry_classes(&self) -> Vec<(Method, String, RequestClass)> {
        let creating = [self.fine_tunes.path(), self.batches.path()]
            .into_iter()
            .chain(CREATING_ROUTES.iter().copied());
        let inference = self
            .routes
            .values()
            .filter(|r| r.method == Method::POST)
            .map(|r| r.path.as_str())
            .chain(INFERENCE_ROUTES.iter().copied());
        let mut classes: Vec<(Method, String, RequestClass)> = Vec::new();
        for (path, class) in creating
            .map(|p| (p, RequestClass::CreatesResource))
            .chain(inference.map(|p| (p, RequestClass::Idempotent)))
        {
            if !classes.iter().any(|(_, p, _)| p == path) {
                classes.push((Method::POST, path.to_owned(), class));
            }
        }
        classes
    }

    /// tower-retry-after's defaults (4 retries, backoff 0.5 s to 8 s,
    /// server hints up to 60 s, a shared budget) with this preset's
    /// [route classes](Self::retry_classes) and
    /// [`is_transient`](crate::is_transient) as the error classifier.
    /// Start from here to change it.
    pub fn retry_policy(&self) -> Builder<ErrorFilter> {
        self.retry_classes().into_iter().fold(
            tower_retry_after::RetryPolicy::builder().classify_errors(ErrorFilter),
            |b, (method, path, class)| b.route_class(method, &path, class),
        )
    }
}
