//! Errors returned by [`RateLimit`](crate::RateLimit).
//!
//! The service's error type is [`BoxError`](crate::BoxError); these are
//! found with `downcast_ref`. Errors of the inner service pass through as they are.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// The earliest slot was further away than the route's maximum wait.
///
/// ```
/// # async fn f(err: tower_quota::BoxError) {
/// if let Some(timeout) = err.downcast_ref::<tower_quota::error::WaitTimeout>() {
///     println!("busy until {:?}", timeout.earliest());
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WaitTimeout {
    route: String,
    earliest: Instant,
    max_wait: Duration,
}

impl WaitTimeout {
    pub(crate) fn new(route: String, earliest: Instant, max_wait: Duration) -> Self {
        WaitTimeout {
            route,
            earliest,
            max_wait,
        }
    }

    /// The earliest instant the request could have been sent.
    pub fn earliest(&self) -> Instant {
        self.earliest
    }

    /// The route's maximum wait.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The route, as `METHOD /path`.
    pub fn route(&self) -> &str {
        &self.route
    }
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wait = self.earliest.saturating_duration_since(Instant::now());
        write!(
            f,
            "rate limit: {} has no free slot for {:.3?}, longer than its maximum wait of {:?}; \
             send later, or raise the route's max_wait",
            self.route, wait, self.max_wait
        )
    }
}

impl std::error::Error for WaitTimeout {}

/// A request costs more than its quota can ever allow at once (its burst).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostTooHigh {
    quota: String,
    key: Option<String>,
    cost: u32,
    capacity: u32,
}

impl CostTooHigh {
    pub(crate) fn new(quota: String, key: Option<String>, cost: u32, capacity: u32) -> Self {
        CostTooHigh {
            quota,
            key,
            cost,
            capacity,
        }
    }

    /// The request's cost.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The most the quota allows at once.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The quota's name.
    pub fn quota(&self) -> &str {
        &self.quota
    }
}

impl fmt::Display for CostTooHigh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit: this request costs {} against quota {:?}",
            self.cost, self.quota
        )?;
        if let Some(key) = &self.key {
            write!(f, " (key {key:?})")?;
        }
        write!(
            f,
            ", which allows at most {} at once: it can never be sent; split the request \
             or raise the quota's burst",
            self.capacity
        )
    }
}

impl std::error::Error for CostTooHigh {}

/// The shared store is failing and the layer is configured to fail closed
/// ([`OnStoreFailure::FailClosed`](crate::OnStoreFailure::FailClosed)).
#[derive(Debug, Clone)]
pub struct StoreUnavailable {
    retry_at: Instant,
}

impl StoreUnavailable {
    pub(crate) fn new(retry_at: Instant) -> Self {
        StoreUnavailable { retry_at }
    }

    /// When the layer will ask the store again.
    pub fn retry_at(&self) -> Instant {
        self.retry_at
    }
}

impl fmt::Display for StoreUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wait = self.retry_at.saturating_duration_since(Instant::now());
        write!(
            f,
            "rate limit: the shared quota store is unavailable and the layer fails closed; \
             it is tried again in {wait:.3?} (check the store, or choose a local share fallback)"
        )
    }
}

impl std::error::Error for StoreUnavailable {}
