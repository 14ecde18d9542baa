//! What every clone of a policy shares: its configuration, budget and jitter generator.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use rand::rngs::SmallRng;
use tower::retry::budget::Budget;

use crate::backoff::Backoff;
use crate::classify::{RequestClass, RouteRule};

/// Clock used to read HTTP-dates in `retry-after`.
pub(crate) type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Configuration and state shared by every clone of a policy.
pub(crate) struct Settings {
    pub(crate) max_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_wait_hint: Duration,
    pub(crate) hint_jitter: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) statuses: Vec<StatusCode>,
    pub(crate) rules: Vec<RouteRule>,
    pub(crate) unmatched: RequestClass,
    pub(crate) budget: Option<Arc<dyn Budget + Send + Sync>>,
    pub(crate) rng: Mutex<SmallRng>,
    pub(crate) wall_clock: Option<WallClock>,
    pub(crate) metrics: crate::metrics::RetryMetrics,
}
