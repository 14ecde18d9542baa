//! Scheduled and random faults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rate::duration_str;

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
    /// A streamed answer is cut half-way: the connection is aborted after
    /// half its chunks (an answer that does not stream is not affected).
    Cut,
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
