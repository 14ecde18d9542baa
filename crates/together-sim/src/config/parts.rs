//! The parts of a configuration: modes, routes, headers, models, job caps.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::rate::{Rate, duration_str};

/// How limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// GCRA (rate + burst): lenient, a full burst may follow a drained window.
    Gcra,
    /// Sliding window: never more than the limit accepted in any window of
    /// the window's length. The strict one, and the default.
    #[default]
    Sliding,
}

impl FromStr for Mode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gcra" => Ok(Mode::Gcra),
            "sliding" => Ok(Mode::Sliding),
            _ => Err(ConfigError::new(format!(
                "invalid mode {s:?}: use \"sliding\" or \"gcra\""
            ))),
        }
    }
}

/// Limits of one route (or, in [`SimConfig::model_limits`](crate::SimConfig::model_limits), of one model,
/// overriding the route's limit of the same kind).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimits {
    /// Requests per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Rate>,
    /// Estimated tokens per period (input chars / 4 + `max_tokens` x `n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Rate>,
    /// Images per period (each request costs its `n`, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Rate>,
    /// GCRA burst for every limit of this route (default: the window limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Give each model its own buckets on this route (default: one bucket
    /// per key and route; models with overrides always get their own).
    #[serde(default)]
    pub per_model: bool,
}

/// Which rate-limit headers are sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderConfig {
    /// `retry-after` on 429: `"none"`, `"seconds"` (default) or `"http-date"`.
    pub retry_after: RetryAfter,
    /// `retry-after-ms` on 429 (default true).
    pub retry_after_ms: bool,
    /// `x-ratelimit-reset` on 429 (default true).
    pub reset_on_429: bool,
    /// `x-ratelimit-limit/remaining/reset` and `x-tokenlimit-limit/remaining`
    /// (limits per second, as Together reports them; per simulated second
    /// under a time scale, like the counts)
    /// on successes (default true).
    pub success_headers: bool,
}

impl Default for HeaderConfig {
    fn default() -> Self {
        Self {
            retry_after: RetryAfter::Seconds,
            retry_after_ms: true,
            reset_on_429: true,
            success_headers: true,
        }
    }
}

/// The form of the `retry-after` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryAfter {
    /// Not sent.
    None,
    /// Whole seconds, rounded up.
    Seconds,
    /// An HTTP-date (IMF-fixdate), rounded up to the next second.
    HttpDate,
}

/// A model of the catalog served by `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Model id, e.g. `meta-llama/Llama-3.3-70B-Instruct-Turbo`.
    pub id: String,
    /// `chat`, `language`, `code`, `image`, `embedding` or `rerank`.
    #[serde(rename = "type", default = "default_model_type")]
    pub kind: String,
    /// Context length in tokens (input + `max_tokens` above it answers 403).
    #[serde(default = "default_context")]
    pub context_length: u64,
}

fn default_model_type() -> String {
    "chat".into()
}
fn default_context() -> u64 {
    8192
}

impl ModelSpec {
    /// A model of the given id, type and context length.
    pub fn new(id: impl Into<String>, kind: impl Into<String>, context_length: u64) -> Self {
        Self {
            id: id.into(),
            kind: kind.into(),
            context_length,
        }
    }
}

/// Fine-tune job settings. Durations are simulated time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FineTuneConfig {
    /// Jobs per key in a non-terminal state; a create beyond answers 409.
    pub max_concurrent: usize,
    /// Time spent `pending`.
    #[serde(with = "duration_str")]
    pub pending: Duration,
    /// Time spent `queued`.
    #[serde(with = "duration_str")]
    pub queued: Duration,
    /// Time spent `running` before `completed`.
    #[serde(with = "duration_str")]
    pub running: Duration,
}

impl Default for FineTuneConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 3,
            pending: Duration::from_secs(1),
            queued: Duration::from_secs(1),
            running: Duration::from_secs(10),
        }
    }
}

/// Batch settings. Durations are simulated time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Maximum requests (lines) per batch; more answers 400.
    pub max_requests_per_batch: usize,
    /// Batches per key in a non-terminal state; a create beyond answers 429.
    pub max_in_flight: usize,
    /// Time spent `VALIDATING`.
    #[serde(with = "duration_str")]
    pub validating: Duration,
    /// Time spent `IN_PROGRESS` before `COMPLETED`.
    #[serde(with = "duration_str")]
    pub in_progress: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_requests_per_batch: 100,
            max_in_flight: 10,
            validating: Duration::from_secs(1),
            in_progress: Duration::from_secs(5),
        }
    }
}
