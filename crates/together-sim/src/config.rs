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
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::dynamic::{CapChange, DynamicLimits};

/// Route pattern of `POST /v1/chat/completions`.
pub const CHAT: &str = "/v1/chat/completions";
/// Route pattern of `POST /v1/completions`.
pub const COMPLETIONS: &str = "/v1/completions";
/// Route pattern of `POST /v1/embeddings`.
pub const EMBEDDINGS: &str = "/v1/embeddings";
/// Route pattern of `POST /v1/images/generations`.
pub const IMAGES: &str = "/v1/images/generations";

/// An amount per period, written `"600/min"`, `"10/s"`, `"180000 tokens/min"`,
/// `"100/10s"`. Units: `ms`, `s`/`sec`/`second`, `min`/`minute`, `h`/`hour`
/// (plural forms too). A word between the number and the slash is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    amount: u64,
    per: Duration,
}

impl Rate {
    /// `amount` per `per`; fails when either is zero.
    pub fn new(amount: u64, per: Duration) -> Result<Self, ConfigError> {
        if amount == 0 || per.is_zero() {
            return Err(ConfigError::new(format!(
                "rate {amount} per {per:?}: amount and period must be above zero"
            )));
        }
        Ok(Self { amount, per })
    }

    /// `amount` per second (at least 1).
    pub fn per_second(amount: u64) -> Self {
        Self {
            amount: amount.max(1),
            per: Duration::from_secs(1),
        }
    }

    /// `amount` per minute (at least 1).
    pub fn per_minute(amount: u64) -> Self {
        Self {
            amount: amount.max(1),
            per: Duration::from_secs(60),
        }
    }

    /// The amount allowed per period.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The enforcement window and the limit inside it.
    ///
    /// With `per_second` (Together's behaviour: "we measure rate limits in
    /// seconds, but display them in minutes") the window is the shortest one
    /// of at least 1 second holding a whole number of requests at the
    /// configured rate: `600/min` is 10 per 1 s, `180000/min` is 3000 per
    /// 1 s, `90/min` is 2 per 1.33 s, and a rate below 1 per second is 1 per
    /// `period / amount` (`9/min`: 1 per 6.67 s). Without `per_second` the
    /// configured period and amount are used as they are.
    pub fn window(&self, per_second: bool) -> (Duration, u64) {
        if !per_second {
            return (self.per, self.amount);
        }
        let per_ns = self.per.as_nanos();
        let amount = u128::from(self.amount);
        let k = (amount * 1_000_000_000).div_ceil(per_ns).max(1);
        let window_ns = per_ns * k / amount;
        (
            Duration::from_nanos(u64::try_from(window_ns).unwrap_or(u64::MAX)),
            u64::try_from(k).unwrap_or(u64::MAX),
        )
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = self.per;
        if per == Duration::from_secs(60) {
            write!(f, "{}/min", self.amount)
        } else if per == Duration::from_secs(1) {
            write!(f, "{}/s", self.amount)
        } else if per == Duration::from_secs(3600) {
            write!(f, "{}/h", self.amount)
        } else {
            write!(f, "{}/{}ms", self.amount, per.as_millis())
        }
    }
}

impl FromStr for Rate {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError::new(format!(
                "invalid rate {s:?}: write e.g. \"600/min\", \"10/s\" or \"180000 tokens/min\""
            ))
        };
        let (left, right) = s.split_once('/').ok_or_else(bad)?;
        let amount_str = left.split_whitespace().next().ok_or_else(bad)?;
        let amount: u64 = amount_str.replace('_', "").parse().map_err(|_| bad())?;
        let right = right.trim();
        let split = right
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(right.len());
        let (num, unit) = right.split_at(split);
        let mult: f64 = if num.is_empty() {
            1.0
        } else {
            num.parse().map_err(|_| bad())?
        };
        let unit_len = unit_duration(unit.trim()).ok_or_else(bad)?;
        Rate::new(amount, unit_len.mul_f64(mult)).map_err(|_| bad())
    }
}

fn unit_duration(unit: &str) -> Option<Duration> {
    Some(match unit {
        "ms" => Duration::from_millis(1),
        "s" | "sec" | "secs" | "second" | "seconds" => Duration::from_secs(1),
        "m" | "min" | "mins" | "minute" | "minutes" => Duration::from_secs(60),
        "h" | "hour" | "hours" => Duration::from_secs(3600),
        _ => return None,
    })
}

/// Parses a duration written `"500ms"`, `"2s"`, `"1.5s"`, `"1min"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        ConfigError::new(format!(
            "invalid duration {s:?}: write e.g. \"500ms\" or \"2s\""
        ))
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit_duration(unit.trim()).ok_or_else(bad)?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok(unit.mul_f64(n))
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub(crate) mod duration_str {
    use super::parse_duration;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}ms", d.as_millis()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

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

/// Limits of one route (or, in [`SimConfig::model_limits`], of one model,
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

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// 503 with Together's overloaded body.
    #[serde(rename = "503")]
    Overloaded,
    /// 500 server error.
    #[serde(rename = "500")]
    ServerError,
    /// 502 bad gateway.
    #[serde(rename = "502")]
    BadGateway,
    /// The connection is closed before any response.
    Close,
    /// The answer is delayed by `latency` + uniform `[0, jitter]`
    /// (simulated time, so scaled like everything else).
    Latency,
}

/// One fault rule. A request matching the scope (`route`, `model`) is
/// counted by the rule (1-based); the fault applies when the count is in
/// `from..=to` (if either is set) and a draw from the seeded RNG falls
/// below `probability` (default 1). Faults apply after a request passed the
/// rate limits, so a faulted request still counts against them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// What happens.
    pub kind: FaultKind,
    /// Probability in `[0, 1]` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// First matching request number affected (1-based, inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Last matching request number affected (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    /// Only requests to this route pattern (e.g. `/v1/chat/completions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only requests for this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Fixed added latency (for `latency`).
    #[serde(default, with = "duration_str")]
    pub latency: Duration,
    /// Maximum random extra latency (for `latency`).
    #[serde(default, with = "duration_str")]
    pub jitter: Duration,
}

impl FaultRule {
    /// A rule of the given kind hitting every request (probability 1).
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            probability: None,
            from: None,
            to: None,
            route: None,
            model: None,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
        }
    }

    /// Applies with this probability.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    /// Applies to matching requests number `from..=to` (1-based).
    pub fn requests(mut self, from: u64, to: u64) -> Self {
        self.from = Some(from);
        self.to = Some(to);
        self
    }

    /// Only on this route pattern.
    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// Only for this model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Latency to add (with [`FaultKind::Latency`]).
    pub fn latency(mut self, fixed: Duration, jitter: Duration) -> Self {
        self.latency = fixed;
        self.jitter = jitter;
        self
    }
}

/// Fault injection settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the RNG (`SmallRng::seed_from_u64`).
    pub seed: u64,
    /// Rules, checked in order; the first status/close fault that fires wins,
    /// latency rules add up.
    pub rules: Vec<FaultRule>,
}

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
            .field("headers", &self.headers)
            .field("routes", &self.routes)
            .field("model_limits", &self.model_limits)
            .field("models", &self.models)
            .field("fine_tunes", &self.fine_tunes)
            .field("batches", &self.batches)
            .field("faults", &self.faults)
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
            headers: HeaderConfig::default(),
            routes,
            model_limits: BTreeMap::new(),
            models: default_models(),
            fine_tunes: FineTuneConfig::default(),
            batches: BatchConfig::default(),
            faults: FaultConfig::default(),
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
        Ok(())
    }
}

/// Builds and spawns a simulator: start from [`Sim::builder`](crate::Sim::builder),
/// set what differs from the defaults, then
/// [`spawn`](SimBuilder::spawn).
#[derive(Debug, Clone)]
pub struct SimBuilder {
    pub(crate) config: SimConfig,
    pub(crate) addr: std::net::SocketAddr,
}

impl Default for SimBuilder {
    fn default() -> Self {
        Self {
            config: SimConfig::default(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl SimBuilder {
    /// Replaces the whole configuration (e.g. one read with [`SimConfig::load`]).
    pub fn config(mut self, config: SimConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration as built so far.
    pub fn config_ref(&self) -> &SimConfig {
        &self.config
    }

    /// Address to bind (default `127.0.0.1:0`, a free port).
    pub fn bind(mut self, addr: std::net::SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Port to bind on the configured host (0: a free port).
    pub fn port(mut self, port: u16) -> Self {
        self.addr.set_port(port);
        self
    }

    /// Speed-up of simulated time (see [`SimConfig::time_scale`]).
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.config.time_scale = scale;
        self
    }

    /// Enforcement mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Enforce per 1-second windows (default true), or over each rate's own
    /// period.
    pub fn enforce_per_second(mut self, yes: bool) -> Self {
        self.config.enforce_per_second = yes;
        self
    }

    /// Replaces the accepted API keys.
    pub fn api_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.config.api_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an accepted API key (the default list holds `test-key`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_keys.push(key.into());
        self
    }

    /// Replaces the limits of a route pattern.
    pub fn route_limits(mut self, route: impl Into<String>, limits: RouteLimits) -> Self {
        self.config.routes.insert(route.into(), limits);
        self
    }

    /// Removes every route limit (then add the ones a test needs).
    pub fn no_limits(mut self) -> Self {
        self.config.routes.clear();
        self.config.model_limits.clear();
        self
    }

    fn route_mut(&mut self, route: impl Into<String>) -> &mut RouteLimits {
        self.config.routes.entry(route.into()).or_default()
    }

    /// Sets the request rate of a route.
    pub fn requests(mut self, route: impl Into<String>, rate: Rate) -> Self {
        self.route_mut(route).requests = Some(rate);
        self
    }

    /// Sets the token rate of a route.
    pub fn tokens(mut self, route: impl Into<String>, rate: Rate) -> Self {
        self.route_mut(route).tokens = Some(rate);
        self
    }

    /// Sets the image rate of a route.
    pub fn images(mut self, route: impl Into<String>, rate: Rate) -> Self {
        self.route_mut(route).images = Some(rate);
        self
    }

    /// Sets the GCRA burst of a route's limits.
    pub fn burst(mut self, route: impl Into<String>, burst: u64) -> Self {
        self.route_mut(route).burst = Some(burst);
        self
    }

    /// Overrides limits for one model (kinds set here replace the route's).
    pub fn model_limits(mut self, model: impl Into<String>, limits: RouteLimits) -> Self {
        self.config.model_limits.insert(model.into(), limits);
        self
    }

    /// Adds (or replaces) a model of the catalog.
    pub fn model(mut self, spec: ModelSpec) -> Self {
        self.config.models.retain(|m| m.id != spec.id);
        self.config.models.push(spec);
        self
    }

    /// Serve any model name instead of answering 404.
    pub fn accept_unknown_models(mut self, yes: bool) -> Self {
        self.config.accept_unknown_models = yes;
        self
    }

    /// Largest accepted body in bytes (413 beyond).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_body_bytes = bytes;
        self
    }

    /// `max_tokens` assumed when a request has none.
    pub fn default_max_tokens(mut self, tokens: u64) -> Self {
        self.config.default_max_tokens = tokens;
        self
    }

    /// Length of fake embeddings.
    pub fn embedding_dims(mut self, dims: usize) -> Self {
        self.config.embedding_dims = dims;
        self
    }

    /// Which rate-limit headers are sent.
    pub fn headers(mut self, headers: HeaderConfig) -> Self {
        self.config.headers = headers;
        self
    }

    /// Fine-tune settings.
    pub fn fine_tunes(mut self, config: FineTuneConfig) -> Self {
        self.config.fine_tunes = config;
        self
    }

    /// Batch settings.
    pub fn batches(mut self, config: BatchConfig) -> Self {
        self.config.batches = config;
        self
    }

    /// Seed of the fault RNG.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.faults.seed = seed;
        self
    }

    /// Adds a fault rule.
    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.config.faults.rules.push(rule);
        self
    }

    /// Turns on [dynamic limits](crate::dynamic) on their routes.
    pub fn dynamic(mut self, limits: DynamicLimits) -> Self {
        self.config.dynamic = Some(limits);
        self
    }

    /// Arrival log capacity.
    pub fn arrival_log_capacity(mut self, capacity: usize) -> Self {
        self.config.arrival_log_capacity = capacity;
        self
    }
}

/// An invalid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_api_keys() {
        let config = SimConfig {
            api_keys: vec!["sk-very-secret".into()],
            ..SimConfig::default()
        };
        let text = format!("{config:?}");
        assert!(!text.contains("sk-very-secret"), "{text}");
        assert!(text.contains("[1 redacted]"), "{text}");
    }

    #[test]
    fn parses_rates() {
        let r: Rate = "600/min".parse().unwrap();
        assert_eq!(r.window(true), (Duration::from_secs(1), 10));
        assert_eq!(r.window(false), (Duration::from_secs(60), 600));
        let r: Rate = "180000 tokens/min".parse().unwrap();
        assert_eq!(r.window(true), (Duration::from_secs(1), 3000));
        let r: Rate = "10/s".parse().unwrap();
        assert_eq!(r.window(true), (Duration::from_secs(1), 10));
        let r: Rate = "100/10s".parse().unwrap();
        assert_eq!(r.per(), Duration::from_secs(10));
        let r: Rate = "9/min".parse().unwrap();
        assert_eq!(r.window(true), (Duration::from_nanos(6_666_666_666), 1));
        let r: Rate = "90/min".parse().unwrap();
        assert_eq!(r.window(true), (Duration::from_nanos(1_333_333_333), 2));
        let r: Rate = "60/h".parse().unwrap();
        assert_eq!(r.window(true), (Duration::from_secs(60), 1));
        assert!("abc".parse::<Rate>().is_err());
        assert!("0/min".parse::<Rate>().is_err());
        assert!("5/fortnight".parse::<Rate>().is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn empty_toml_is_default() {
        assert_eq!(SimConfig::from_toml_str("").unwrap(), SimConfig::default());
        assert!(SimConfig::from_toml_str("time_scale = 0.0").is_err());
        assert!(SimConfig::from_toml_str("nonsense = 1").is_err());
    }

    #[test]
    fn full_toml() {
        let c = SimConfig::from_toml_str(
            r#"
            mode = "gcra"
            [headers]
            retry_after = "http-date"
            [fine_tunes]
            max_concurrent = 2
            running = "300ms"
            [[faults.rules]]
            kind = "503"
            from = 5
            to = 8
            route = "/v1/chat/completions"
            [[faults.rules]]
            kind = "latency"
            latency = "10ms"
            jitter = "5ms"
            probability = 0.5
            "#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Gcra);
        assert_eq!(c.headers.retry_after, RetryAfter::HttpDate);
        assert_eq!(c.fine_tunes.running, Duration::from_millis(300));
        assert_eq!(c.faults.rules[0].kind, FaultKind::Overloaded);
        assert_eq!(c.faults.rules[1].jitter, Duration::from_millis(5));
    }
}
