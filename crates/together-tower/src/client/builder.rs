//! [`TogetherBuilder`]: the stack's layers from a preset, and the client over them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_jobs::JobLimitLayer;
use tower_layer::Layer;
use tower_quota::RateLimitLayer;
use tower_retry_after::RetryPolicy;
use tower_service::Service;

use crate::BoxError;
use crate::error::Error;
use crate::key::{ApiKey, InvalidApiKey};
use crate::preset::Preset;
use crate::retry::ErrorFilter;
use crate::service::{DEFAULT_BASE_URL, TogetherLayer};
use crate::transport::DEFAULT_TIMEOUT;

use super::stack::TogetherLayers;
use super::{ClientState, TogetherClient};
use crate::body::BodyLimits;

/// Builds a [`TogetherClient`] (or just its [`TogetherLayers`]); start from
/// [`TogetherClient::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`api_key`](Self::api_key) | `TOGETHER_API_KEY` |
/// | [`base_url`](Self::base_url) | [`DEFAULT_BASE_URL`] |
/// | [`preset`](Self::preset) | [`Preset::together`] (learned per model) |
/// | [`retry`](Self::retry) | [`retry_policy`](crate::retry_policy) |
/// | [`rate_limit`](Self::rate_limit) | from the preset |
/// | [`job_limit`](Self::job_limit) | from the preset, 409s waited on for up to 10 min |
/// | [`timeout`](Self::timeout) | [`DEFAULT_TIMEOUT`] per attempt (default client only) |
/// | [`poll_interval`](Self::poll_interval) | 5 s between job status reads |
/// | [`body_limits`](Self::body_limits) | 256 MiB per response, 60 s between chunks |
pub struct TogetherBuilder {
    key: Option<Result<ApiKey, InvalidApiKey>>,
    key_env: String,
    base_url: String,
    user_agent: Option<HeaderValue>,
    preset: Preset,
    retry: Option<RetryPolicy<ErrorFilter>>,
    rate: Option<RateLimitLayer>,
    jobs: Option<JobLimitLayer>,
    timeout: Duration,
    poll_interval: Duration,
    body_limits: BodyLimits,
    fallbacks: HashMap<String, Vec<String>>,
}

impl fmt::Debug for TogetherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TogetherBuilder")
            .field("base_url", &self.base_url)
            .field(
                "key",
                &self.key.as_ref().map(|k| k.as_ref().map(|_| "<redacted>")),
            )
            .field("preset", &self.preset.name())
            .field("fallbacks", &self.fallbacks)
            .finish_non_exhaustive()
    }
}

impl TogetherBuilder {
    fn new() -> Self {
        TogetherBuilder {
            key: None,
            key_env: crate::key::API_KEY_ENV.to_owned(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            user_agent: None,
            preset: Preset::together(),
            retry: None,
            rate: None,
            jobs: None,
            timeout: DEFAULT_TIMEOUT,
            poll_interval: Duration::from_secs(5),
            body_limits: BodyLimits::default(),
            fallbacks: HashMap::new(),
        }
    }

    /// The API key (instead of `TOGETHER_API_KEY`).
    pub fn api_key(mut self, key: impl AsRef<str>) -> Self {
        self.key = Some(ApiKey::new(key));
        self
    }

    /// Reads the key from another environment variable (e.g. `OPENAI_API_KEY`).
    pub fn api_key_env(mut self, var: impl Into<String>) -> Self {
        self.key_env = var.into();
        self
    }

    /// The API's base URL, `scheme://host[:port][/prefix]`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The `User-Agent`.
    pub fn user_agent(mut self, value: HeaderValue) -> Self {
        self.user_agent = Some(value);
        self
    }

    /// The rate limits, job caps and sizes (default [`Preset::together`]: learned per model).
    pub fn preset(mut self, preset: Preset) -> Self {
        self.preset = preset;
        self
    }

    /// Replaces the retry policy (build one from [`retry_policy`](crate::retry_policy)).
    pub fn retry(mut self, policy: RetryPolicy<ErrorFilter>) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Replaces the rate-limit layer built from the preset (e.g. one shared
    /// with other clients).
    pub fn rate_limit(mut self, layer: RateLimitLayer) -> Self {
        self.rate = Some(layer);
        self
    }

    /// Replaces the job-limit layer built from the preset (build one
    /// from [`Preset::job_limit`]).
    pub fn job_limit(mut self, layer: JobLimitLayer) -> Self {
        self.jobs = Some(layer);
        self
    }

    /// The per-attempt timeout of the default client.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How much of a response the typed helpers read, and how long they
    /// wait between its chunks (default [`BodyLimits::default`]); a larger or
    /// stalled answer is an [`Error`] of kind `TooLarge` or `Timeout`.
    pub fn body_limits(mut self, limits: BodyLimits) -> Self {
        self.body_limits = limits;
        self
    }

    /// How often `wait_*` helpers read a job's status (default 5 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// When `model` answers 503 (overloaded) after the retries, send the
    /// request again with each of `fallbacks` in turn.
    pub fn fallback<I, S>(mut self, model: impl Into<String>, fallbacks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fallbacks.insert(
            model.into(),
            fallbacks.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// The layers of the stack, to wrap your own client service.
    pub fn layers(&self) -> Result<TogetherLayers, Error> {
        let key = match &self.key {
            Some(k) => k.clone(),
            None => ApiKey::from_env_var(&self.key_env),
        }
        .map_err(Error::config)?;
        let mut together = TogetherLayer::new(&self.base_url, Some(key)).map_err(Error::config)?;
        if let Some(ua) = &self.user_agent {
            together = together.user_agent(ua.clone());
        }
        let rate = match &self.rate {
            Some(r) => r.clone(),
            None => RateLimitLayer::new(self.preset.limits().map_err(Error::config)?),
        };
        let jobs = match &self.jobs {
            Some(j) => j.clone(),
            None => self.preset.job_limit().build().map_err(Error::config)?,
        };
        let retry = match &self.retry {
            Some(r) => r.clone(),
            None => self.preset.retry_policy().build().map_err(Error::config)?,
        };
        Ok(TogetherLayers {
            retry,
            rate,
            jobs,
            together,
        })
    }

    /// The client over the default HTTP client (hyper-util over hyper-rustls).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[cfg(feature = "rustls")]
    pub fn build(self) -> Result<TogetherClient, Error> {
        let http = crate::transport::default_http_client(self.timeout);
        self.build_with(http)
    }

    /// The client over any client service `C`.
    pub fn build_with<C, B>(self, client: C) -> Result<TogetherClient, Error>
    where
        C: Service<Request<String>, Response = Response<B>> + Clone + Send + Sync + 'static,
        C::Future: Send + 'static,
        C::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let layers = self.layers()?;
        let key = match self.key {
            Some(k) => k.ok(),
            None => ApiKey::from_env_var(&self.key_env).ok(),
        };
        let stack = layers.layer(client);
        let service = BoxCloneSyncService::new(stack.map_response(
            |res: Response<tower_quota::ResponseBody<tower_jobs::ResponseBody<B>>>| {
                res.map(BodyExt::boxed_unsync)
            },
        ));
        Ok(TogetherClient {
            service,
            shared: Arc::new(ClientState {
                base_url: layers.together.base_url().to_owned(),
                key,
                preset: self.preset,
                rate: layers.rate,
                jobs: layers.jobs.handle(),
                fallbacks: self.fallbacks,
                poll_interval: self.poll_interval,
                body_limits: self.body_limits,
                models: tokio::sync::Mutex::new(None),
            }),
        })
    }
}

impl TogetherClient {
    /// A builder with the defaults (see [`TogetherBuilder`]).
    pub fn builder() -> TogetherBuilder {
        TogetherBuilder::new()
    }
}
