//! A local Together-compatible HTTP server that enforces Together's rate
//! limits, for tests, benchmarks and demos of clients.
//!
//! It serves chat, completions, embeddings, images, models, fine-tunes,
//! files and batches with deterministic fake content; enforces request,
//! token and image rates per key, route and model (`sliding` or `gcra`
//! mode, per 1-second window as Together does) or Together's [dynamic
//! limits](dynamic) (a rate per key and model following recent successful
//! usage, between a base and a cap); answers errors in
//! Together's shape; injects faults from a seeded RNG; compresses time by
//! [`time_scale`](config::SimConfig::time_scale); and records what it saw
//! in [`Stats`] (served at `GET /sim/stats` too).
//!
//! # Endpoints
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /v1/chat/completions`, `/v1/completions` | OpenAI shapes, a short deterministic reply echoing the input (or [`completion_tokens`](config::AnswerConfig::completion_tokens) of filler), `n` choices, `finish_reason` `length` when `max_tokens` cuts it; with `"stream": true`, server-sent events (below) |
//! | `POST /v1/embeddings` | one unit vector per input (string or array), in order, stable for the same text; `encoding_format: "base64"` gives little-endian f32 |
//! | `POST /v1/images/generations` | `n` fake images (`url`, or `b64_json`) |
//! | `GET /v1/models` | a bare JSON array, as Together answers |
//! | `POST/GET /v1/fine-tunes`, `GET /v1/fine-tunes/{id}`, `POST /v1/fine-tunes/{id}/cancel` | `pending` -> `queued` -> `running` -> `completed` on simulated durations; cancel -> `cancelled`; list is `{"data": [...]}` |
//! | `POST /v1/files` | a JSON body `{"purpose": "batch-api", "filename": "in.jsonl", "content": "<jsonl text>"}` (multipart is not accepted) |
//! | `GET /v1/files`, `/v1/files/{id}`, `/v1/files/{id}/content` | metadata, raw content |
//! | `POST/GET /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel` | create answers `{"job": {...}}` as together-python expects, list a bare array; `VALIDATING` -> `IN_PROGRESS` -> `COMPLETED` (cancel -> `CANCELLED`); when completed, `output_file_id` holds one line per input line: `{"id", "custom_id", "response": {"status_code", "body"}}` |
//! | `GET /sim/stats` | [`Stats`] as JSON (no key needed, not counted) |
//!
//! # Errors
//!
//! Always `{"error": {"message", "type", "param", "code"}}`: 401 missing or
//! unknown key, 404 unknown route or model (the message names it), 400
//! malformed JSON or missing fields, 403 input + `max_tokens` over the
//! model's `context_length`, 413 body over `max_body_bytes`, 409 (type
//! `conflict`) a fine-tune create while `max_concurrent` jobs are
//! non-terminal, 400 a batch over `max_requests_per_batch`, 429 (type
//! `batch_limit_exceeded`) a batch create while `max_in_flight` run, 429
//! (type `dynamic_request_limited` or `dynamic_token_limited`) a rate limit.
//!
//! # Limits
//!
//! Per API key, per route, and per model where a model has an override in
//! `model_limits` (or the route sets `per_model`). Request limits count 1
//! a request; token limits count input characters / 4 + `max_tokens`
//! (default `default_max_tokens`) x `n`; image limits count `n`. A cost
//! above a window's capacity is charged as the full capacity. A refused
//! request is charged nothing. `x-ratelimit-reset` (and `retry-after-ms`,
//! `retry-after`) on a 429 is the real time until enough of the window
//! frees, rounded up to the millisecond (to the second for `retry-after`).
//! Faults apply after the limits: a faulted request was charged.
//!
//! With [`token_charge = "usage"`](config::TokenCharge::Usage) token
//! limits admit a request when its input fits and charge its real usage
//! when the answer is complete (a stream at its end).
//!
//! # Streams
//!
//! `"stream": true` answers `text/event-stream`: a role chunk, content
//! deltas of [`chunk_tokens`](config::AnswerConfig::chunk_tokens) tokens,
//! the finish chunk, the usage when `stream_options.include_usage` asks
//! (on the finish chunk with a top-level `cached_tokens`, as Together sends
//! it, or a separate chunk with empty `choices`, as OpenAI does:
//! [`usage_style`](config::AnswerConfig::usage_style)), then `data: [DONE]`,
//! [`chunk_interval`](config::AnswerConfig::chunk_interval) apart. The
//! `cut` fault aborts a stream after half its events.
//!
//! With `[dynamic]` set, its routes follow the [dynamic rule](dynamic)
//! instead: a rate per key and model of `multiple` x the successful rate
//! over `window`, between `base` and `cap`, strict per 1-second window,
//! with optional capacity 503s and `-dynamic` rate headers in real units.
//!
//! # Time
//!
//! Windows, job durations, added latency and hints are simulated time:
//! with `time_scale = 20.0` a 1 s window lasts 50 ms, and a 1 s wait is
//! hinted as `0.05`.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::rt::TokioIo;
//! use together_sim::{Rate, Sim, config::EMBEDDINGS};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Sim::builder()
//!     .requests(EMBEDDINGS, Rate::per_second(5))
//!     .time_scale(20.0)
//!     .spawn()
//!     .await?;
//!
//! let stream = tokio::net::TcpStream::connect(sim.addr()).await?;
//! let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
//! tokio::spawn(conn);
//! let req = http::Request::post(format!("{}/v1/embeddings", sim.base_url()))
//!     .header("authorization", "Bearer test-key")
//!     .header("content-type", "application/json")
//!     .body(Full::new(Bytes::from(
//!         r#"{"model":"BAAI/bge-large-en-v1.5","input":["hello","world"]}"#,
//!     )))?;
//! let resp = sender.send_request(req).await?;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(resp.headers()["x-ratelimit-limit"], "5");
//! let body: serde_json::Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
//! assert_eq!(body["data"].as_array().unwrap().len(), 2);
//!
//! let stats = sim.stats();
//! assert_eq!(stats.count(EMBEDDINGS, 200), 1);
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//!
//! Everything is settable from [`SimBuilder`] or loadable from TOML with
//! [`SimConfig::load`](config::SimConfig::load):
//!
//! ```toml
//! time_scale = 20.0
//! mode = "sliding"            # or "gcra"
//! api_keys = ["test-key"]
//! max_body_bytes = 1048576
//!
//! [headers]
//! retry_after = "seconds"     # "none" | "seconds" | "http-date"
//! retry_after_ms = true
//! success_headers = true
//!
//! [routes."/v1/chat/completions"]
//! requests = "600/min"        # enforced as 10 per 1-second window
//! tokens = "180000 tokens/min"
//!
//! [model_limits."black-forest-labs/FLUX.1-schnell"]
//! images = "9/min"
//!
//! [fine_tunes]
//! max_concurrent = 3
//! running = "10s"
//!
//! [batches]
//! max_requests_per_batch = 100
//! max_in_flight = 10
//!
//! [faults]
//! seed = 7
//! [[faults.rules]]
//! kind = "503"                # "503" | "500" | "502" | "close" | "latency"
//! from = 5
//! to = 8
//!
//! [dynamic]                   # optional; replaces the static limits of its routes
//! multiple = 2.0
//! window = "10s"
//! base = 1.0                  # requests per second
//! cap = 40.0
//! [[dynamic.cap_schedule]]
//! at = "60s"
//! cap = 10.0
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod dynamic;
mod fake;
mod faults;
mod jobs;
pub mod limits;
mod multipart;
mod reply;
mod server;
pub mod stats;
mod wire;

pub use config::{ConfigError, DynamicLimits, Mode, Rate, SimBuilder, SimConfig};
pub use limits::{LimitKind, LimiterStats};
pub use server::{SimHandle, SpawnError};
pub use stats::Stats;

/// Entry point: [`Sim::builder`].
#[derive(Debug, Clone, Copy)]
pub struct Sim;

impl Sim {
    /// A builder with the default configuration (the seed's table, key
    /// `test-key`, `127.0.0.1:0`).
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }
}
