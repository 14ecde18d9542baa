//! The stack's layers, and the types of the stack they make.

use http::{Request, Response};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_jobs::{JobLimit, JobLimitLayer, JobsHandle};
use tower_layer::Layer;
use tower_quota::{RateLimit, RateLimitLayer};
use tower_retry_after::{Retry, RetryLayer, RetryPolicy};

use crate::BoxError;
use crate::preset::Preset;
use crate::retry::ErrorFilter;
use crate::service::{Together, TogetherLayer};
use crate::transport::HttpBody;

/// The whole stack over a client `C`: Retry -> RateLimit -> JobLimit -> Together -> `C`.
pub type Stack<C> = Retry<RateLimit<JobLimit<Together<C>>>, ErrorFilter>;

/// The service inside a [`TogetherClient`](crate::TogetherClient): the [`Stack`] with its body boxed.
pub type ClientService = BoxCloneSyncService<Request<String>, Response<HttpBody>, BoxError>;

/// The default retry policy: [`Preset::retry_policy`] of
/// [`Preset::together`] (tower-retry-after's defaults, OpenAI-compatible
/// route classes, [`is_transient`](crate::is_transient) as the error classifier). Start from
/// here, or from your preset's, to change it.
pub fn retry_policy() -> tower_retry_after::Builder<ErrorFilter> {
    Preset::together().retry_policy()
}

/// The layers of the stack, to wrap any client service:
/// Retry -> RateLimit -> JobLimit -> Together.
///
/// ```
/// use http::{Request, Response};
/// use tower::{Layer, ServiceExt, service_fn};
/// use together_tower::TogetherClient;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let layers = TogetherClient::builder().api_key("k").layers()?;
/// let stack = layers.layer(service_fn(|req: Request<String>| async move {
///     assert_eq!(req.uri(), "https://api.together.xyz/v1/models");
///     Ok::<_, tower::BoxError>(Response::new(String::from("[]")))
/// }));
/// let res = stack.oneshot(Request::get("/v1/models").body(String::new())?).await?;
/// assert!(res.status().is_success());
/// # Ok(())
/// # }
/// ```
///
/// # Spawning
///
/// The stack moves into `tokio::spawn`ed tasks as it is (the error
/// classifier is the named type [`ErrorFilter`], not a higher-ranked
/// `fn(&BoxError) -> bool`, which rustc could not prove `Send` inside an
/// `async` block). If your inner service's future is an `async` block that
/// rustc again cannot prove `Send`, name it (`impl Future + Send`) or box
/// the stack with [`BoxCloneSyncService::new`], as
/// [`TogetherBuilder::build_with`](crate::TogetherBuilder::build_with) does.
#[derive(Clone, Debug)]
pub struct TogetherLayers {
    pub(super) retry: RetryPolicy<ErrorFilter>,
    pub(super) rate: RateLimitLayer,
    pub(super) jobs: JobLimitLayer,
    pub(super) together: TogetherLayer,
}

impl TogetherLayers {
    /// The rate-limit layer (its [`snapshot`](RateLimitLayer::snapshot) for metrics).
    pub fn rate_limit(&self) -> &RateLimitLayer {
        &self.rate
    }

    /// A handle on the job slots.
    pub fn jobs(&self) -> JobsHandle {
        self.jobs.handle()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy<ErrorFilter> {
        &self.retry
    }

    /// The Together layer (base URL, key, headers).
    pub fn together(&self) -> &TogetherLayer {
        &self.together
    }
}

impl<C> Layer<C> for TogetherLayers {
    type Service = Stack<C>;

    fn layer(&self, client: C) -> Stack<C> {
        ServiceBuilder::new()
            .layer(RetryLayer::new(self.retry.clone()))
            .layer(self.rate.clone())
            .layer(self.jobs.clone())
            .layer(self.together.clone())
            .service(client)
    }
}
