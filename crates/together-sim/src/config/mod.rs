//! Simulator configuration: serde types loadable from TOML, rates such as
//! `"600/min"`, durations such as `"500ms"`, and the defaults (the seed's
//! table: chat 600/min, embeddings 300/min, images 60/min, 3 fine-tunes,
//! 100 requests per batch, 10 batches in flight).
//!
//! # Example
//!
//! ```
//! use together_sim::config::SimConfig;
//!
//! let config = SimConfig::from_toml_str(r#"
//!     time_scale = 20.0
//!     mode = "gcra"
//!     api_keys = ["k1"]
//!     [routes."/v1/chat/completions"]
//!     requests = "60/min"
//!     tokens = "6000 tokens/min"
//!     [model_limits."black-forest-labs/FLUX.1-schnell"]
//!     images = "9/min"
//! "#).unwrap();
//! assert_eq!(config.time_scale, 20.0);
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::dynamic::{CapChange, DynamicLimits};

mod answers;
mod builder;
mod error;
mod faults;
mod parts;
mod rate;

pub use answers::{AnswerConfig, TokenCharge, TokenRange, UsageStyle};
pub use builder::SimBuilder;
pub use error::ConfigError;
pub use faults::{FaultConfig, FaultKind, FaultRule};
pub use parts::{
    BatchConfig, FineTuneConfig, HeaderConfig, Mode, ModelSpec, RetryAfter, RouteLimits,
};
pub(crate) use rate::duration_str;
pub use rate::{Rate, parse_duration};

/// Route pattern of `POST /v1/chat/completions`.
pub const CHAT: &str = "/v1/chat/completions";
/// Route pattern of `POST /v1/completions`.
pub const COMPLETIONS: &str = "/v1/completions";
/// Route pattern of `POST /v1/embeddings`.
pub const EMBEDDINGS: &str = "/v1/embeddings";
/// Route pattern of `POST /v1/images/generations`.
pub const IMAGES: &str = "/v1/images/generations";

/// The whole simulator configuration. Every field has a default, so an
/// empty TOML file is a valid configuration.
///
/// `Debug` shows how many API keys there are, never the keys.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Speed-up of simulated time: 20.0 makes a 1 s window last 50 ms, and
    /// sends a 1 s wait hint as 0.05 s.
    pub time_scale: f64,
    /// Enforcement mode.
    pub mode: Mode,
    /// Enforce rates per 1-second window, as Together does (default true).
    pub enforce_per_second: bool,
    /// Accepted API keys (`Authorization: Bearer KEY`).
    pub api_keys: Vec<String>,
    /// Largest accepted request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// `max_tokens` assumed when a request has none.
    pub default_max_tokens: u64,
    /// Length of fake embeddings.
    pub embedding_dims: usize,
    /// Serve any model name (no 404 for unknown models).
    pub accept_unknown_models: bool,
    /// Arrival log capacity (oldest entries dropped beyond).
    pub arrival_log_capacity: usize,
    /// How long a connection may sit without a request before it is
    /// closed (`"30s"`); also bounds how long a request's head may take.
    #[serde(with = "duration_str")]
    pub idle_timeout: Duration,
    /// Rate-limit headers sent.
    pub headers: HeaderConfig,
    /// Limits by route pattern.
    pub routes: BTreeMap<String, RouteLimits>,
    /// Per-model overrides of the route limits (same kinds).
    pub model_limits: BTreeMap<String, RouteLimits>,
    /// The model catalog.
    pub models: Vec<ModelSpec>,
    /// Fine-tunes.
    pub fine_tunes: FineTuneConfig,
    /// Batches.
    pub batches: BatchConfig,
    /// Faults.
    pub faults: FaultConfig,
    /// How answers are made: completion lengths, streams, token charging.
    pub answers: AnswerConfig,
    /// Dynamic limits (TOML table `[dynamic]`; default off). When set, its
    /// routes follow the [dynamic rule](crate::dynamic) instead of
    /// [`routes`](Self::routes) and [`model_limits`](Self::model_limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicLimits>,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("time_scale", &self.time_scale)
            .field("mode", &self.mode)
            .field("enforce_per_second", &self.enforce_per_second)
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("max_body_bytes", &self.max_body_bytes)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("embedding_dims", &self.embedding_dims)
            .field("accept_unknown_models", &self.accept_unknown_models)
            .field("arrival_log_capacity", &self.arrival_log_capacity)
            .field("idle_timeout", &self.idle_timeout)
            .field("headers", &self.headers)
            .field("routes", &self.routes)
            .field("model_limits", &self.model_limits)
            .field("models", &self.models)
            .field("fine_tunes", &self.fine_tunes)
            .field("batches", &self.batches)
            .field("faults", &self.faults)
            .field("answers", &self.answers)
            .field("dynamic", &self.dynamic)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        let mut routes = BTreeMap::new();
        routes.insert(
            CHAT.to_string(),
            RouteLimits {
                requests: Some(Rate::per_minute(600)),
                tokens: Some(Rate::per_minute(180_000)),
                ..RouteLimits::default()
            },
        );
        routes.insert(
            COMPLETIONS.to_string(),
            RouteLimits {
                requests: Some(Rate::per_minute(600)),
                tokens: Some(Rate::per_minute(180_000)),
                ..RouteLimits::default()
            },
        );
        routes.insert(
            EMBEDDINGS.to_string(),
            RouteLimits {
                requests: Some(Rate::per_minute(300)),
                ..RouteLimits::default()
            },
        );
        routes.insert(
            IMAGES.to_string(),
            RouteLimits {
                images: Some(Rate::per_minute(60)),
                ..RouteLimits::default()
            },
        );
        Self {
            time_scale: 1.0,
            mode: Mode::Sliding,
            enforce_per_second: true,
            api_keys: vec!["test-key".into()],
            max_body_bytes: 1 << 20,
            default_max_tokens: 16,
            embedding_dims: 16,
            accept_unknown_models: false,
            arrival_log_capacity: 10_000,
            idle_timeout: Duration::from_secs(30),
            headers: HeaderConfig::default(),
            routes,
            model_limits: BTreeMap::new(),
            models: default_models(),
            fine_tunes: FineTuneConfig::default(),
            batches: BatchConfig::default(),
            faults: FaultConfig::default(),
            answers: AnswerConfig::default(),
            dynamic: None,
        }
    }
}

/// The default catalog.
pub fn default_models() -> Vec<ModelSpec> {
    vec![
        ModelSpec::new("meta-llama/Llama-3.3-70B-Instruct-Turbo", "chat", 131_072),
        ModelSpec::new(
            "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
            "chat",
            131_072,
        ),
        ModelSpec::new("mistralai/Mixtral-8x7B-Instruct-v0.1", "chat", 32_768),
        ModelSpec::new("Qwen/Qwen2.5-7B-Instruct-Turbo", "chat", 32_768),
        ModelSpec::new("meta-llama/Llama-2-70b-hf", "language", 4096),
        ModelSpec::new("sim/tiny-context", "chat", 64),
        ModelSpec::new(
            "togethercomputer/m2-bert-80M-8k-retrieval",
            "embedding",
            8192,
        ),
        ModelSpec::new("BAAI/bge-large-en-v1.5", "embedding", 512),
        ModelSpec::new("black-forest-labs/FLUX.1-schnell", "image", 0),
    ]
}

impl SimConfig {
    /// Parses a TOML document; missing fields take their defaults.
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        let c: SimConfig =
            toml::from_str(s).map_err(|e| ConfigError::new(format!("invalid TOML config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let s = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml_str(&s)
    }

    /// Checks what serde cannot: positive time scale, probabilities, keys,
    /// and [`DynamicLimits::validate`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(ConfigError::new(format!(
                "time_scale must be a positive number, got {}",
                self.time_scale
            )));
        }
        if self.api_keys.is_empty() {
            return Err(ConfigError::new("api_keys is empty: no request could pass"));
        }
        for r in &self.faults.rules {
            if let Some(p) = r.probability
                && !(0.0..=1.0).contains(&p)
            {
                return Err(ConfigError::new(format!(
                    "fault probability {p} is outside [0, 1]"
                )));
            }
        }
        for (name, l) in self.routes.iter().chain(self.model_limits.iter()) {
            if l.burst == Some(0) {
                return Err(ConfigError::new(format!(
                    "burst of {name} must be above zero"
                )));
            }
        }
        if let Some(d) = &self.dynamic {
            d.validate()?;
        }
        if let Some(r) = self.answers.completion_tokens
            && r.min > r.max
        {
            return Err(ConfigError::new(format!(
                "answers.completion_tokens: min {} is above max {}",
                r.min, r.max
            )));
        }
        if self.answers.chunk_tokens == 0 {
            return Err(ConfigError::new("answers.chunk_tokens must be above zero"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
