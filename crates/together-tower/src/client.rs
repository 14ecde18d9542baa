//! [`TogetherClient`], its builder, and the layers of its stack.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_jobs::{Concurrency, ConcurrencyLayer, JobsHandle};
use tower_layer::Layer;
use tower_quota::{RateLimit, RateLimitLayer};
use tower_retry_after::{Retry, RetryLayer, RetryPolicy};
use tower_service::Service;

use crate::BoxError;
use crate::error::Error;
use crate::key::{ApiKey, InvalidApiKey};
use crate::preset::Preset;
use crate::service::{Attempts, DEFAULT_BASE_URL, Together, TogetherLayer};
use crate::suggest::closest_models;
use crate::transport::{DEFAULT_TIMEOUT, HttpBody, default_http_client};
use crate::types::*;

/// The error classifier of the default retry policy: [`is_transient`] as a type.
///
/// A named type rather than a `fn(&BoxError) -> bool`, so the stack's
/// futures stay provably `Send` and the bare [`Stack`] can be spawned.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorFilter;

impl tower_retry_after::ClassifyError<BoxError> for ErrorFilter {
    fn is_retryable(&self, error: &BoxError) -> bool {
        is_transient(error)
    }
}

/// The whole stack over a client `C`: Retry -> RateLimit -> Concurrency -> Together -> `C`.
pub type Stack<C> = Retry<RateLimit<Concurrency<Together<C>>>, ErrorFilter>;

/// The service inside a [`TogetherClient`]: the [`Stack`] with its body boxed.
pub type ClientService = BoxCloneSyncService<Request<String>, Response<HttpBody>, BoxError>;

/// Whether an error from the stack is worth a retry: `false` for the
/// rate limiter's refusals ([`WaitTimeout`](tower_quota::error::WaitTimeout),
/// [`CostTooHigh`](tower_quota::error::CostTooHigh)) and for requests that
/// cannot be built ([`InvalidPath`](crate::service::InvalidPath)), `true`
/// for transport errors.
pub fn is_transient(err: &BoxError) -> bool {
    !(err.is::<tower_quota::error::WaitTimeout>()
        || err.is::<tower_quota::error::CostTooHigh>()
        || err.is::<tower_jobs::InvalidConfig>()
        || err.is::<crate::service::InvalidPath>())
}

/// The default retry policy: tower-retry-after's defaults (4 retries,
/// backoff 0.5 s to 8 s, server hints up to 60 s, a shared budget) with
/// [`is_transient`] as the error classifier. Start from here to change it.
pub fn retry_policy() -> tower_retry_after::Builder<ErrorFilter> {
    RetryPolicy::builder().classify_errors(ErrorFilter)
}

/// The layers of the stack, to wrap any client service:
/// Retry -> RateLimit -> Concurrency -> Together.
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
/// [`TogetherBuilder::build_with`] does.
#[derive(Clone, Debug)]
pub struct TogetherLayers {
    retry: RetryPolicy<ErrorFilter>,
    rate: RateLimitLayer,
    jobs: ConcurrencyLayer,
    together: TogetherLayer,
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

/// Builds a [`TogetherClient`] (or just its [`TogetherLayers`]); start from
/// [`TogetherClient::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`api_key`](Self::api_key) | `TOGETHER_API_KEY` |
/// | [`base_url`](Self::base_url) | [`DEFAULT_BASE_URL`] |
/// | [`preset`](Self::preset) | [`Preset::together`] (learned per model) |
/// | [`retry`](Self::retry) | [`retry_policy`] |
/// | [`rate_limit`](Self::rate_limit) | from the preset |
/// | [`concurrency`](Self::concurrency) | from the preset, 409s waited on for up to 10 min |
/// | [`timeout`](Self::timeout) | [`DEFAULT_TIMEOUT`] per attempt (default client only) |
/// | [`poll_interval`](Self::poll_interval) | 5 s between job status reads |
pub struct TogetherBuilder {
    key: Option<Result<ApiKey, InvalidApiKey>>,
    key_env: String,
    base_url: String,
    user_agent: Option<HeaderValue>,
    preset: Preset,
    retry: Option<RetryPolicy<ErrorFilter>>,
    rate: Option<RateLimitLayer>,
    jobs: Option<ConcurrencyLayer>,
    timeout: Duration,
    poll_interval: Duration,
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

    /// Replaces the retry policy (build one from [`retry_policy`]).
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

    /// Replaces the job concurrency layer built from the preset (build one
    /// from [`Preset::concurrency`]).
    pub fn concurrency(mut self, layer: ConcurrencyLayer) -> Self {
        self.jobs = Some(layer);
        self
    }

    /// The per-attempt timeout of the default client.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
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
            None => self.preset.concurrency().build().map_err(Error::config)?,
        };
        let retry = match &self.retry {
            Some(r) => r.clone(),
            None => retry_policy().build().map_err(Error::config)?,
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
    pub fn build(self) -> Result<TogetherClient, Error> {
        let http = default_http_client(self.timeout);
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
            |res: Response<tower_jobs::ResponseBody<B>>| res.map(BodyExt::boxed_unsync),
        ));
        Ok(TogetherClient {
            service,
            shared: Arc::new(Shared {
                base_url: layers.together.base_url().to_owned(),
                key,
                preset: self.preset,
                rate: layers.rate,
                jobs: layers.jobs.handle(),
                fallbacks: self.fallbacks,
                poll_interval: self.poll_interval,
                models: tokio::sync::Mutex::new(None),
            }),
        })
    }
}

pub(crate) struct Shared {
    base_url: String,
    key: Option<ApiKey>,
    pub(crate) preset: Preset,
    rate: RateLimitLayer,
    jobs: JobsHandle,
    fallbacks: HashMap<String, Vec<String>>,
    pub(crate) poll_interval: Duration,
    models: tokio::sync::Mutex<Option<Arc<Vec<String>>>>,
}

/// A client of Together's API (or another OpenAI-compatible one) with
/// typed helpers, over the stack Retry -> RateLimit -> Concurrency ->
/// Together -> HTTP client. See the [crate docs](crate) for an example.
///
/// # Clone
///
/// Clones share the stack: the quotas, the job slots, the retry budget,
/// the model cache.
#[derive(Clone)]
pub struct TogetherClient {
    service: ClientService,
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for TogetherClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TogetherClient")
            .field("base_url", &self.shared.base_url)
            .field("api_key", &self.shared.key)
            .field("preset", &self.shared.preset.name())
            .field("jobs", &self.shared.jobs)
            .finish_non_exhaustive()
    }
}

/// A response and the model that served it (after any fallback).
#[derive(Debug, Clone)]
pub struct Served<T> {
    model: String,
    fell_back_from: Vec<String>,
    value: T,
}

impl<T> Served<T> {
    /// The model that served the request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The models tried first that answered 503, in order.
    pub fn fell_back_from(&self) -> &[String] {
        &self.fell_back_from
    }

    /// The response.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for Served<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// What [`TogetherClient::embed_all`] returns: the embeddings in input
/// order (`None` where a chunk failed) and the failed chunks.
#[derive(Debug)]
pub struct EmbedAll {
    /// One entry per input, in input order.
    pub embeddings: Vec<Option<Vec<f32>>>,
    /// The chunks that failed, with the range of inputs each covered.
    pub failures: Vec<ChunkFailure>,
}

impl EmbedAll {
    /// Whether every input got its embedding.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// Every embedding, or the first failed chunk.
    pub fn complete(mut self) -> Result<Vec<Vec<f32>>, Box<ChunkFailure>> {
        if !self.failures.is_empty() {
            return Err(Box::new(self.failures.swap_remove(0)));
        }
        Ok(self
            .embeddings
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }
}

/// A chunk of [`TogetherClient::embed_all`] that failed.
#[derive(Debug)]
pub struct ChunkFailure {
    /// The inputs it covered.
    pub range: Range<usize>,
    /// Why.
    pub error: Error,
}

impl fmt::Display for ChunkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "inputs {}..{}: {}",
            self.range.start, self.range.end, self.error
        )
    }
}

impl std::error::Error for ChunkFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl TogetherClient {
    /// A builder with the defaults (see [`TogetherBuilder`]).
    pub fn builder() -> TogetherBuilder {
        TogetherBuilder::new()
    }

    /// The stack as a service, for requests the helpers do not cover.
    /// Relative URIs (`/v1/rerank`) go to the base URL.
    pub fn service(&self) -> ClientService {
        self.service.clone()
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The preset in force.
    pub fn preset(&self) -> &Preset {
        &self.shared.preset
    }

    /// The rate-limit layer (its [`snapshot`](RateLimitLayer::snapshot) for metrics).
    pub fn rate_limit(&self) -> &RateLimitLayer {
        &self.shared.rate
    }

    /// A handle on the job slots.
    pub fn jobs(&self) -> &JobsHandle {
        &self.shared.jobs
    }

    fn scrub(&self) -> impl Fn(String) -> String + '_ {
        move |text: String| match &self.shared.key {
            Some(key) => {
                let secret = key
                    .header_value()
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default();
                if secret.is_empty() {
                    text
                } else {
                    text.replace(secret, "<redacted>")
                }
            }
            None => text,
        }
    }

    /// Sends `method path` with `body` and returns the body of a 2xx answer.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Bytes, Error> {
        self.call_typed(method, path, body, None).await
    }

    /// [`call`](Self::call) with a content type other than JSON.
    pub(crate) async fn call_typed(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        content_type: Option<&str>,
    ) -> Result<Bytes, Error> {
        let attempts = Attempts::default();
        let mut req = Request::builder().method(method).uri(path);
        if let Some(content_type) = content_type {
            req = req.header(http::header::CONTENT_TYPE, content_type);
        }
        let mut req = req
            .body(body.unwrap_or_default())
            .map_err(|_| Error::config(crate::service::InvalidPath::new(path)))?;
        req.extensions_mut().insert(attempts.clone());
        let scrub = self.scrub();
        let res = self
            .service
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| Error::from_service(e, attempts.retries(), &scrub))?;
        let status = res.status();
        let request_id = ["x-request-id", "request-id", "x-together-request-id"]
            .iter()
            .find_map(|h| res.headers().get(*h)?.to_str().ok().map(str::to_owned));
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::from_service(e, attempts.retries(), &scrub))?
            .to_bytes();
        if !status.is_success() {
            return Err(Error::from_status(
                status,
                &bytes,
                request_id,
                attempts.retries(),
                &scrub,
            ));
        }
        Ok(bytes)
    }

    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, Error> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::decode(format!("{path}: {e}")))
    }

    /// POSTs a body naming a `model`: falls back on 503, suggests on 404.
    async fn infer<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Served<T>, Error> {
        let mut body = serde_json::to_value(body).map_err(|e| Error::decode(e.to_string()))?;
        let Some(first) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
            let value = self
                .json(Method::POST, path, Some(body.to_string()))
                .await?;
            return Ok(Served {
                model: String::new(),
                fell_back_from: Vec::new(),
                value,
            });
        };
        let mut chain = vec![first.clone()];
        chain.extend(
            self.shared
                .fallbacks
                .get(&first)
                .cloned()
                .unwrap_or_default(),
        );
        let mut tried = Vec::new();
        for (i, model) in chain.iter().enumerate() {
            if i > 0 {
                tracing::warn!(from = %chain[i - 1], to = %model, "model overloaded: falling back");
                body["model"] = Value::String(model.clone());
            }
            match self
                .json::<T>(Method::POST, path, Some(body.to_string()))
                .await
            {
                Ok(value) => {
                    return Ok(Served {
                        model: model.clone(),
                        fell_back_from: tried,
                        value,
                    });
                }
                Err(e)
                    if e.status() == Some(http::StatusCode::SERVICE_UNAVAILABLE)
                        && i + 1 < chain.len() =>
                {
                    tried.push(model.clone());
                }
                Err(e) if e.is_unknown_model() => {
                    let ids = self.model_ids().await.unwrap_or_default();
                    let suggestions = closest_models(model, &ids, 3)
                        .into_iter()
                        .map(str::to_owned)
                        .collect();
                    return Err(e.into_model_not_found(model, suggestions));
                }
                Err(e) => return Err(e.with_model(model)),
            }
        }
        unreachable!("the chain holds at least the first model")
    }

    /// `POST /v1/chat/completions`.
    pub async fn chat(&self, request: &ChatRequest) -> Result<Served<ChatResponse>, Error> {
        self.infer("/v1/chat/completions", request).await
    }

    /// `POST /v1/completions`.
    pub async fn completions(
        &self,
        request: &CompletionRequest,
    ) -> Result<Served<CompletionResponse>, Error> {
        self.infer("/v1/completions", request).await
    }

    /// `POST /v1/embeddings` (one request; see [`embed_all`](Self::embed_all) for many inputs).
    pub async fn embeddings(
        &self,
        request: &EmbeddingRequest,
    ) -> Result<Served<EmbeddingResponse>, Error> {
        self.infer("/v1/embeddings", request).await
    }

    /// `POST /v1/images/generations`.
    pub async fn images(&self, request: &ImageRequest) -> Result<Served<ImageResponse>, Error> {
        self.infer("/v1/images/generations", request).await
    }

    /// `GET /v1/models` (Together's bare array or OpenAI's list object).
    pub async fn models(&self) -> Result<Vec<Model>, Error> {
        let list: ModelList = self.json(Method::GET, "/v1/models", None).await?;
        let models = list.into_vec();
        *self.shared.models.lock().await =
            Some(Arc::new(models.iter().map(|m| m.id.clone()).collect()));
        Ok(models)
    }

    /// The model ids, from the cache or `GET /v1/models`.
    pub async fn model_ids(&self) -> Result<Arc<Vec<String>>, Error> {
        if let Some(ids) = self.shared.models.lock().await.clone() {
            return Ok(ids);
        }
        self.models().await?;
        Ok(self.shared.models.lock().await.clone().unwrap_or_default())
    }

    /// Embeds every text with `model`: requests of at most the preset's
    /// [`embed_inputs_per_request`](Preset::embed_inputs_per_request) inputs
    /// (20 by default), all sent at once through the rate limiter (which
    /// paces them), embeddings returned in input order. A chunk that fails
    /// is reported with its input range; the others are kept.
    pub async fn embed_all<S: AsRef<str>>(&self, model: &str, texts: &[S]) -> EmbedAll {
        let size = self.shared.preset.embed_inputs_per_request().max(1);
        let chunks = texts.chunks(size).enumerate().map(|(i, chunk)| {
            let range = i * size..i * size + chunk.len();
            let request = EmbeddingRequest::new(model, chunk.iter().map(|t| t.as_ref().to_owned()));
            async move { (range, self.embeddings(&request).await) }
        });
        let results = futures_util::future::join_all(chunks).await;
        let mut out = EmbedAll {
            embeddings: vec![None; texts.len()],
            failures: Vec::new(),
        };
        for (range, result) in results {
            match result {
                Ok(served) => {
                    let mut data = served.into_inner().data;
                    data.sort_by_key(|e| e.index);
                    let ok = data.len() == range.len()
                        && data.iter().enumerate().all(|(i, e)| e.index == i);
                    if !ok {
                        let error = Error::decode(format!(
                            "embeddings for inputs {}..{}: expected indices 0..{}, got {} items",
                            range.start,
                            range.end,
                            range.len(),
                            data.len()
                        ));
                        out.failures.push(ChunkFailure { range, error });
                        continue;
                    }
                    for (slot, e) in out.embeddings[range].iter_mut().zip(data) {
                        *slot = Some(e.embedding);
                    }
                }
                Err(error) => out.failures.push(ChunkFailure { range, error }),
            }
        }
        out
    }
}
