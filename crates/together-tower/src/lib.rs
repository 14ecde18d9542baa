//! A thin tower service for Together AI's OpenAI-compatible API, with rate-limit
//! presets, typed helpers and the default stack Retry -> RateLimit ->
//! JobLimit -> Together -> hyper client, so work finishes as fast as the
//! limits allow with no 429 storms.
//!
//! # Example
//!
//! ```
//! use together_tower::types::{ChatRequest, Message};
//! use together_tower::{Preset, TogetherClient};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let sim = together_sim::Sim::builder().time_scale(10.0).spawn().await?;
//! let client = TogetherClient::builder()
//!     .api_key("test-key") // default: the TOGETHER_API_KEY environment variable
//!     .base_url(sim.base_url()) // default: https://api.together.xyz
//!     .preset(Preset::seed().time_scaled(10.0)) // the simulator runs 10x faster
//!     .build()?;
//!
//! let request = ChatRequest::new(
//!     "meta-llama/Llama-3.3-70B-Instruct-Turbo",
//!     vec![Message::user("Say hello")],
//! )
//! .max_tokens(16);
//! let answer = client.chat(&request).await?;
//! assert!(!answer.choices[0].message.content.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! # The stack
//!
//! [`TogetherClient::builder`] builds, outermost first:
//!
//! | layer | from | does |
//! |---|---|---|
//! | Retry | tower-retry-after, [`retry_policy`] | retries 429/5xx/transport errors, waits `retry-after`; never retries the rate limiter's own refusals ([`is_transient`]) |
//! | RateLimit | tower-quota, [`Preset::limits`] | waits for each route's (and model's) quota, paced per second |
//! | JobLimit | tower-jobs, [`Preset::job_limit`] | caps fine-tunes and batches running on the server |
//! | [`Together`] | this crate | base URL, `Authorization: Bearer` (sensitive), user agent, JSON headers |
//! | client | [`default_http_client`] | hyper-util over hyper-rustls (ring, webpki roots, HTTP/1.1 + HTTP/2), tower-http's sensitive headers, trace and timeout |
//!
//! Each layer can be configured or replaced on the builder;
//! [`TogetherBuilder::layers`] hands the same stack over to wrap your own
//! client service, and [`TogetherBuilder::build_with`] builds the client on it.
//!
//! # Presets
//!
//! [`Preset::together`], the default: Together's limits are dynamic, per
//! organization and per model, so every inference route learns its pace per
//! model (requests and tokens) from Together's rate headers, or by probing
//! when they are absent, starting from Together's documented base of 60
//! requests/min. Static tables pin the rates instead: [`Preset::seed`]
//! (chat 600/min, embeddings 300/min, images 60/min, fine-tunes 3 at once,
//! batches of 100 requests with 10 in flight), [`Preset::tier`] (Together's
//! historic Free and Tier 1-5 table). [`Preset::openai`] learns from
//! OpenAI's headers for other OpenAI-compatible APIs. Per-model overrides,
//! all overridable from TOML: see [`preset`].
//!
//! # Streaming
//!
//! [`TogetherClient::chat_stream`] and [`TogetherClient::completions_stream`]
//! send `"stream": true` (asking for the usage with
//! `stream_options.include_usage`) and return a [`stream::Streamed`]: a
//! `Stream` of typed chunks as the server sends them, the answer assembled
//! so far, and the usage once it comes (Together's shape, on the finish
//! chunk, or OpenAI's separate chunk). Every layer passes a stream through
//! unbuffered; retries happen only before its head, and a stream cut
//! half-way ends in an [`ErrorKind::Interrupted`] error, never in silence.
//! The [`sse`] parser is bounded and property-tested.
//!
//! With [`Preset::together`] token quotas charge their estimate at
//! admission and settle it by each answer's usage
//! ([`Charging::Reconciled`](tower_quota::Charging)): a chat asking for
//! 1,024 tokens that uses 60 gives the rest back to the queue.
//!
//! # Metrics
//!
//! Feature `metrics` turns on the three layers' metrics (tower-quota's,
//! tower-retry-after's and tower-jobs' `metrics` features; each documents
//! its names and labels) through the [`metrics`](https://docs.rs/metrics)
//! facade: install your exporter's recorder before building the client.
//!
//! # Errors
//!
//! Every helper returns [`Error`]: the status, Together's error type and
//! message, the request id, the retries made, and in `Display` what to do.
//! A 404 for a model names the closest listed ids; a 503 for a model with
//! a [fallback](TogetherBuilder::fallback) tries the next model.
//!
//! # The API key
//!
//! Read from `TOGETHER_API_KEY` unless given; sent as a sensitive header
//! value; never in `Debug`, `Display`, errors or traces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod body;
mod client;
pub mod error;
mod jobs;
mod key;
pub mod preset;
mod retry;
pub mod service;
pub mod sse;
pub mod stream;
mod suggest;
mod transport;
pub mod types;

pub use crate::client::{
    ChunkFailure, ClientService, EmbedAll, Served, Stack, TogetherBuilder, TogetherClient,
    TogetherLayers, retry_policy,
};
pub use crate::error::{Error, ErrorKind, MAX_QUOTED_BODY};
pub use crate::key::{API_KEY_ENV, ApiKey, InvalidApiKey};
pub use crate::preset::{
    InvalidPreset, JobPreset, LearnPreset, Preset, RouteLimit, Tier, UnknownPreset, UnknownTier,
};
pub use crate::retry::{ErrorFilter, is_transient};
pub use crate::service::{DEFAULT_BASE_URL, Together, TogetherLayer};
pub use crate::suggest::closest_models;
#[cfg(feature = "rustls")]
pub use crate::transport::default_http_client;
pub use crate::transport::{
    AttemptDeadline, AttemptDeadlineLayer, AttemptTimeout, DEFAULT_TIMEOUT, DeadlineFuture,
    HttpBody, HttpClient, TimedBody,
};

/// The error type of the services in the stack.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
