//! [`DynamicLimits`] and [`CapChange`]: the `[dynamic]` table.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{CHAT, COMPLETIONS, ConfigError, EMBEDDINGS, IMAGES, duration_str};

/// Dynamic limits per (API key, model), as Together has enforced them
/// since 2026: the rate follows recent successful usage, between a base
/// and a cap. See [the module docs](crate::dynamic) for the exact rule.
///
/// Rates are per *simulated* second and durations are simulated time, so
/// [`time_scale`](crate::SimConfig::time_scale) compresses them like every
/// other limit. Every field has a default, so an empty `[dynamic]` table
/// turns the mode on with Together's documented base (60 RPM).
///
/// ```
/// use std::time::Duration;
/// use together_sim::config::{CapChange, DynamicLimits};
///
/// let limits = DynamicLimits {
///     cap: 10.0,
///     cap_schedule: vec![CapChange { at: Duration::from_secs(30), cap: 4.0 }],
///     ..DynamicLimits::default()
/// };
/// assert!(limits.validate().is_ok());
/// assert_eq!(limits.cap_at(Duration::from_secs(31)), 4.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicLimits {
    /// The rate is this multiple of the successful rate over `window`
    /// (default 2).
    pub multiple: f64,
    /// The history window successes are counted over (default 10 s; in
    /// TOML a string such as `"10s"`).
    #[serde(with = "duration_str")]
    pub window: Duration,
    /// Lowest request rate, requests per second (default 1, Together's
    /// documented 60 RPM base). At least 1, or no request could pass.
    pub base: f64,
    /// Highest request rate, requests per second (default 40), until a
    /// [`cap_schedule`](Self::cap_schedule) entry replaces it.
    pub cap: f64,
    /// Lowest token rate, tokens per second. Token limiting is on when both
    /// this and [`token_cap`](Self::token_cap) are set (default: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_base: Option<f64>,
    /// Highest token rate, tokens per second (see
    /// [`token_base`](Self::token_base)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_cap: Option<f64>,
    /// Probability in `[0, 1]` that a request within its dynamic limit is
    /// answered 503 for lack of platform capacity (default 0). Drawn from a
    /// `SmallRng` seeded with [`faults.seed`](crate::config::FaultConfig::seed).
    pub capacity_503: f64,
    /// Send the rate headers (`x-ratelimit-*`, `x-tokenlimit-*` and their
    /// `-dynamic` variants) on every answer of a dynamic route (default
    /// true). When false, only a 429 carries `x-ratelimit-reset`, as
    /// Together's current rate-limits page describes.
    pub headers: bool,
    /// Changes of the request cap at given simulated times since start
    /// (a drop or a rise); the latest one reached is in force.
    pub cap_schedule: Vec<CapChange>,
    /// Route patterns governed by the dynamic rule instead of
    /// [`SimConfig::routes`](crate::SimConfig::routes) (default: chat,
    /// completions, embeddings and images).
    pub routes: Vec<String>,
}

impl Default for DynamicLimits {
    fn default() -> Self {
        Self {
            multiple: 2.0,
            window: Duration::from_secs(10),
            base: 1.0,
            cap: 40.0,
            token_base: None,
            token_cap: None,
            capacity_503: 0.0,
            headers: true,
            cap_schedule: Vec::new(),
            routes: [CHAT, COMPLETIONS, EMBEDDINGS, IMAGES]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// A change of the request cap at a simulated time, in
/// [`DynamicLimits::cap_schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapChange {
    /// Simulated time since the server started (in TOML a string such as
    /// `"30s"`).
    #[serde(with = "duration_str")]
    pub at: Duration,
    /// The request cap from then on, requests per second (at least 1). It
    /// wins over [`DynamicLimits::base`] when lower.
    pub cap: f64,
}

impl DynamicLimits {
    /// Whether token limiting is on (both token bounds set).
    pub fn tokens_limited(&self) -> bool {
        self.token_base.is_some() && self.token_cap.is_some()
    }

    /// The request cap in force at simulated time `t` since start: the
    /// last [`cap_schedule`](Self::cap_schedule) entry whose `at` is at
    /// or before `t` (by `at`, then by position), else [`cap`](Self::cap).
    pub fn cap_at(&self, t: Duration) -> f64 {
        self.cap_schedule
            .iter()
            .enumerate()
            .filter(|(_, c)| c.at <= t)
            .max_by_key(|(i, c)| (c.at, *i))
            .map_or(self.cap, |(_, c)| c.cap)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn positive(name: &str, v: f64, min: f64) -> Result<(), ConfigError> {
            if v.is_finite() && v >= min && v > 0.0 {
                Ok(())
            } else if min > 0.0 {
                Err(ConfigError::new(format!(
                    "{name} must be a finite number of at least {min}, got {v}"
                )))
            } else {
                Err(ConfigError::new(format!(
                    "{name} must be a finite number above zero, got {v}"
                )))
            }
        }
        positive("dynamic.multiple", self.multiple, 0.0)?;
        if self.window.is_zero() {
            return Err(ConfigError::new("dynamic.window must be above zero"));
        }
        // Below 1 request per second, "accepted in the last second + 1 <=
        // rate" never holds.
        positive("dynamic.base", self.base, 1.0)?;
        positive("dynamic.cap", self.cap, 1.0)?;
        if self.base > self.cap {
            return Err(ConfigError::new(format!(
                "dynamic.base ({}) is above dynamic.cap ({})",
                self.base, self.cap
            )));
        }
        match (self.token_base, self.token_cap) {
            (None, None) => {}
            (Some(b), Some(c)) => {
                positive("dynamic.token_base", b, 0.0)?;
                positive("dynamic.token_cap", c, 0.0)?;
                if b > c {
                    return Err(ConfigError::new(format!(
                        "dynamic.token_base ({b}) is above dynamic.token_cap ({c})"
                    )));
                }
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::new(
                    "dynamic.token_base and dynamic.token_cap must be set together \
                     (or neither, to leave tokens unlimited)",
                ));
            }
        }
        if !(self.capacity_503.is_finite() && (0.0..=1.0).contains(&self.capacity_503)) {
            return Err(ConfigError::new(format!(
                "dynamic.capacity_503 must be a probability in [0, 1], got {}",
                self.capacity_503
            )));
        }
        for c in &self.cap_schedule {
            positive("dynamic.cap_schedule cap", c.cap, 1.0)?;
        }
        for r in &self.routes {
            if ![CHAT, COMPLETIONS, EMBEDDINGS, IMAGES].contains(&r.as_str()) {
                return Err(ConfigError::new(format!(
                    "dynamic.routes: {r:?} is not an inference route \
                     ({CHAT}, {COMPLETIONS}, {EMBEDDINGS} or {IMAGES})"
                )));
            }
        }
        Ok(())
    }
}
