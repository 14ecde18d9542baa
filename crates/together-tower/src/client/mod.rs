//! [`TogetherClient`], its builder, and the layers of its stack.

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;
use tower_jobs::JobsHandle;
use tower_quota::RateLimitLayer;

use crate::error::Error;
use crate::key::ApiKey;
use crate::preset::Preset;
use crate::service::Attempts;
use crate::stream::{ChatStream, Chunk, CompletionStream, Streamed};
use crate::suggest::closest_models;
use crate::transport::HttpBody;
use crate::types::*;

mod builder;
mod embed;
mod stack;

pub use builder::TogetherBuilder;
pub use embed::{ChunkFailure, EmbedAll};
pub use stack::{ClientService, Stack, TogetherLayers, retry_policy};

pub(crate) struct ClientState {
    base_url: String,
    key: Option<ApiKey>,
    pub(crate) preset: Preset,
    rate: RateLimitLayer,
    jobs: JobsHandle,
    fallbacks: HashMap<String, Vec<String>>,
    pub(crate) poll_interval: Duration,
    pub(crate) body_limits: crate::body::BodyLimits,
    models: tokio::sync::Mutex<Option<Arc<Vec<String>>>>,
}

/// A client of Together's API (or another OpenAI-compatible one) with
/// typed helpers, over the stack Retry -> RateLimit -> JobLimit ->
/// Together -> HTTP client. See the [crate docs](crate) for an example.
///
/// # Clone
///
/// Clones share the stack: the quotas, the job slots, the retry budget,
/// the model cache.
#[derive(Clone)]
pub struct TogetherClient {
    service: ClientService,
    pub(crate) shared: Arc<ClientState>,
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

impl TogetherClient {
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
            Some(key) => key.scrub(&text),
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
        let (res, retries) = self.send(method, path, body, content_type).await?;
        let status = res.status();
        let scrub = self.scrub();
        crate::body::read_body(res.into_body(), self.shared.body_limits)
            .await
            .map_err(|e| Error::from_body(e, retries, &scrub).with_status(status))
    }

    /// Sends `method path` with `body` through the stack; a 2xx answer
    /// comes back with its body unread, any other is read into an
    /// [`Error`]. Also returns the retries made.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        content_type: Option<&str>,
    ) -> Result<(http::Response<HttpBody>, u32), Error> {
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
        if status.is_success() {
            return Ok((res, attempts.retries()));
        }
        let request_id = ["x-request-id", "request-id", "x-together-request-id"]
            .iter()
            .find_map(|h| res.headers().get(*h)?.to_str().ok().map(str::to_owned));
        let bytes = crate::body::read_body(res.into_body(), self.shared.body_limits)
            .await
            .map_err(|e| Error::from_body(e, attempts.retries(), &scrub).with_status(status))?;
        Err(Error::from_status(
            status,
            &bytes,
            request_id,
            attempts.retries(),
            &scrub,
        ))
    }

    /// POSTs `request` to `path` as a stream (`"stream": true`, and
    /// `stream_options.include_usage` unless the request sets
    /// `stream_options`); the answer's events as they come.
    async fn stream<C: Chunk>(
        &self,
        path: &str,
        request: &impl Serialize,
    ) -> Result<Streamed<C>, Error> {
        let mut body = serde_json::to_value(request).map_err(|e| Error::decode(e.to_string()))?;
        let model = body.get("model").and_then(Value::as_str).map(str::to_owned);
        if let Some(fields) = body.as_object_mut() {
            fields.insert("stream".into(), Value::Bool(true));
            fields
                .entry("stream_options")
                .or_insert_with(|| serde_json::json!({"include_usage": true}));
        }
        let sent = self
            .send(Method::POST, path, Some(body.to_string()), None)
            .await;
        let (res, _) = match (sent, model) {
            (Ok(sent), _) => sent,
            (Err(e), Some(model)) if e.is_unknown_model() => {
                let suggestions = self.closest_model_ids(&model).await;
                return Err(e.into_model_not_found(&model, suggestions));
            }
            (Err(e), Some(model)) => return Err(e.with_model(&model)),
            (Err(e), None) => return Err(e),
        };
        if !crate::stream::is_event_stream(res.headers()) {
            let kind = res
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no content type")
                .to_owned();
            return Err(Error::decode(format!(
                "{path}: asked to stream, the server answered {kind} instead of server-sent \
                 events (does this API stream?)"
            )));
        }
        let key = self.shared.key.clone();
        Ok(
            Streamed::new(res.into_body(), self.shared.body_limits).scrubbing(
                move |text| match &key {
                    Some(key) => key.scrub(&text),
                    None => text,
                },
            ),
        )
    }

    /// `POST /v1/chat/completions` streamed: the chunks as the server sends
    /// them, the assembled answer and its usage on the [`ChatStream`].
    /// Retries (429s, 503s) happen before the first chunk; a stream cut
    /// half-way ends with an [`ErrorKind::Interrupted`](crate::ErrorKind)
    /// error and is not sent again. Model fallbacks do not apply.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// use together_tower::{TogetherClient, types::{ChatRequest, Message}};
    ///
    /// # async fn run(client: TogetherClient) -> Result<(), together_tower::Error> {
    /// let request = ChatRequest::new("meta-llama/Llama-3.3-70B-Instruct-Turbo", vec![Message::user("Hi")]);
    /// let mut stream = client.chat_stream(&request).await?;
    /// while let Some(chunk) = stream.next().await {
    ///     for choice in chunk?.choices {
    ///         print!("{}", choice.delta.content.unwrap_or_default());
    ///     }
    /// }
    /// println!("\n{:?} tokens", stream.usage().map(|u| u.total_tokens));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, Error> {
        self.stream("/v1/chat/completions", request).await
    }

    /// `POST /v1/completions` streamed (see [`chat_stream`](Self::chat_stream)).
    pub async fn completions_stream(
        &self,
        request: &CompletionRequest,
    ) -> Result<CompletionStream, Error> {
        self.stream("/v1/completions", request).await
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
                    let suggestions = self.closest_model_ids(model).await;
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

    /// The listed model ids closest to `model`, best first (at most three;
    /// none when the list cannot be read): for an
    /// [`Error::into_model_not_found`].
    pub async fn closest_model_ids(&self, model: &str) -> Vec<String> {
        let ids = self.model_ids().await.unwrap_or_default();
        closest_models(model, &ids, 3)
            .into_iter()
            .map(str::to_owned)
            .collect()
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
